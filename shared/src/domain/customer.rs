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
    /// The id of the customer behind webchat session `session_id`, the same every time: a
    /// session knows its customer's id from the start, and the customer is made only when
    /// the visitor first writes, not on every page view that opens a session.
    pub fn webchat_id(session_id: &str) -> String {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("webchat/{session_id}/customer").as_bytes(),
        )
        .to_string()
    }

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
        let id = match identity.channel {
            Channel::Webchat => Customer::webchat_id(&identity.external_id),
            _ => super::new_id(),
        };
        Customer {
            id,
            name,
            locale,
            tier: Tier::Standard,
            identities: vec![identity],
            created_at: super::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webchat_customer_id_is_known_from_its_session_and_others_are_new() {
        let web = |session: &str| ChannelIdentity {
            channel: Channel::Webchat,
            external_id: session.into(),
        };
        let a = Customer::new(web("s-1"), None, None);
        assert_eq!(a.id, Customer::webchat_id("s-1"));
        assert_eq!(Customer::new(web("s-1"), None, None).id, a.id);
        assert_ne!(Customer::webchat_id("s-2"), a.id);
        let tg = ChannelIdentity {
            channel: Channel::Telegram,
            external_id: "42".into(),
        };
        assert_ne!(
            Customer::new(tg.clone(), None, None).id,
            Customer::new(tg, None, None).id
        );
    }
}
