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

/// What a merge moves, in the order it moves it: the identities first, so that whatever a
/// channel brings from now on reaches the customer that stays; the webchat sessions; the
/// conversation; the tickets (through the ticket path, so versions move and the change feed
/// sees them); and last the customer record, which takes over the other's identities, name,
/// locale and tier while the other is removed. Until that last step the customer that goes
/// is still there, so a merge cut short anywhere is resumed by running it again. Two things
/// come with it ([`crate::flow::run_merge`]): before anything moves, the customer that goes
/// is made to lead to the one that stays, for jobs still naming it; and the customer that
/// stays keeps one active ticket, the other's being folded into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeKind {
    Identities,
    Sessions,
    Messages,
    Tickets,
}

/// A merge of customer `from` into customer `into`, as the core plans it: which things
/// move ([`MergePlan::ORDER`]), in pages of [`MergePlan::PAGE`], always from `from` to
/// `into`. A step moves a page of what still belongs to `from`, so it needs no cursor: a
/// repeat finds nothing left to move, and a merge run twice changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergePlan {
    /// The same for every request to merge `from` into `into`.
    pub id: String,
    pub into: String,
    pub from: String,
    /// Who asked for it.
    pub by: String,
}

impl MergePlan {
    pub const ORDER: [MergeKind; 4] = [
        MergeKind::Identities,
        MergeKind::Sessions,
        MergeKind::Messages,
        MergeKind::Tickets,
    ];
    /// How many things one step moves: a step is one bounded unit of work, well within a
    /// request's or a function's time (a page of tickets is two writes each on DynamoDB).
    pub const PAGE: usize = 25;

    pub fn new(into: &str, from: &str, by: &str) -> MergePlan {
        MergePlan {
            id: super::derived_id(&format!("{from}>{into}"), "merge"),
            into: into.to_string(),
            from: from.to_string(),
            by: by.to_string(),
        }
    }

    /// The customer a finished merge leaves: `into`, having absorbed `from`.
    pub fn merged(&self, mut into: Customer, from: Customer) -> Customer {
        into.absorb(from);
        into
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
