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
    /// Takes over another customer's identities, and their name, locale and tier where this
    /// one has none (a VIP stays a VIP): what a merge keeps of the customer that goes.
    pub fn absorb(&mut self, other: Customer) {
        for identity in other.identities {
            if !self.identities.contains(&identity) {
                self.identities.push(identity);
            }
        }
        self.name = self.name.take().or(other.name);
        self.locale = self.locale.take().or(other.locale);
        if other.tier == Tier::Vip {
            self.tier = Tier::Vip;
        }
    }

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
