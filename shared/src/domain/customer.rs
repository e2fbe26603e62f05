//! Customers and the channel identities that lead to them. One person is one customer,
//! whichever channel they write on.

use super::Channel;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    #[default]
    Standard,
    Vip,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChannelIdentity {
    pub channel: Channel,
    pub external_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub tier: Tier,
    pub identities: Vec<ChannelIdentity>,
    pub created_at: DateTime<Utc>,
}

impl Customer {
    pub fn new(identity: ChannelIdentity, name: Option<String>, locale: Option<String>) -> Self {
        Customer {
            id: super::new_id(),
            name,
            locale,
            tier: Tier::Standard,
            identities: vec![identity],
            created_at: super::now(),
        }
    }
}
