//! A ticket's history, as Chatwoot's activity messages and Zendesk's events show it: how it
//! was opened, what each change of a ticket did (its status, priority, skill, assignee,
//! tags, an escalation, a customer's reopen, a merge) and who did it, kept in its conversation as an internal
//! entry that agents see and customers never do. The change feed writes one entry per
//! version that changed any of these ([`Activity::between`]), under an id derived from the
//! ticket's and the version, so a redelivered change writes nothing twice.

use super::{
    AssignmentReason, Channel, Direction, Message, MessageKind, Priority, Skill, Ticket,
    TicketStatus,
};
use serde::{Deserialize, Serialize};

/// One thing a change did to a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Activity {
    /// Opened on a channel: by the customer's message (`by_customer`), or by an agent (the
    /// entry's author) or the desk.
    Opened {
        channel: Channel,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_customer: bool,
    },
    /// The status moved (an escalation, a customer's reopen and a merge's close are told by
    /// their own entries instead).
    Status {
        from: TicketStatus,
        to: TicketStatus,
    },
    Priority {
        from: Priority,
        to: Priority,
    },
    Skill {
        from: Skill,
        to: Skill,
    },
    /// Given to an agent (`to`), or to nobody, and why.
    Assigned {
        to: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<AssignmentReason>,
    },
    Tags {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        added: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removed: Vec<String>,
    },
    /// Escalated to a supervisor, with the reason given.
    Escalated {
        reason: String,
    },
    /// The customer wrote while it was resolved, and it is open again.
    Reopened,
    /// Closed into the ticket of the customer that stayed after a merge.
    Merged {
        into: String,
    },
}

impl Activity {
    /// What opening `new` did: where it came from, and the tags it started with (the
    /// rules').
    pub fn opened(new: &Ticket) -> Vec<Activity> {
        let mut out = vec![Activity::Opened {
            channel: new.channel,
            by_customer: new.opened_by.is_some(),
        }];
        if !new.tags.is_empty() {
            out.push(Activity::Tags {
                added: new.tags.clone(),
                removed: Vec::new(),
            });
        }
        out
    }

    /// What the change from `old` to `new` did, in a fixed order; empty for a change that
    /// did none of these (the desk's own bookkeeping: SLA due times, a survey sent).
    pub fn between(old: &Ticket, new: &Ticket) -> Vec<Activity> {
        let mut out = Vec::new();
        let escalated = Ticket::became_escalated(Some(old), new);
        let reopened = Ticket::reopened_now(Some(old), new).is_some();
        let merged = old.merged_into.is_none() && new.merged_into.is_some();
        if old.status != new.status && !escalated && !reopened && !merged {
            out.push(Activity::Status {
                from: old.status,
                to: new.status,
            });
        }
        if escalated {
            out.push(Activity::Escalated {
                reason: new.escalation_reason.clone().unwrap_or_default(),
            });
        }
        if reopened {
            out.push(Activity::Reopened);
        }
        if let (true, Some(into)) = (merged, &new.merged_into) {
            out.push(Activity::Merged { into: into.clone() });
        }
        if old.priority != new.priority {
            out.push(Activity::Priority {
                from: old.priority,
                to: new.priority,
            });
        }
        if old.skill != new.skill {
            out.push(Activity::Skill {
                from: old.skill,
                to: new.skill,
            });
        }
        if old.assignee != new.assignee {
            out.push(Activity::Assigned {
                to: new.assignee.clone(),
                reason: new.assignment.as_ref().map(|a| a.reason),
            });
        }
        let missing_from = |from: &[String], of: &[String]| -> Vec<String> {
            of.iter().filter(|t| !from.contains(t)).cloned().collect()
        };
        let added = missing_from(&old.tags, &new.tags);
        let removed = missing_from(&new.tags, &old.tags);
        if !added.is_empty() || !removed.is_empty() {
            out.push(Activity::Tags { added, removed });
        }
        out
    }

    /// The entry in plain English, for the API's readers and the logs (the console says it
    /// in the reader's language from the fields).
    fn describe(&self) -> String {
        match self {
            Activity::Opened {
                channel,
                by_customer,
            } => format!(
                "opened on {}{}",
                channel.as_str(),
                if *by_customer { " by the customer" } else { "" }
            ),
            Activity::Status { from, to } => {
                format!("status {} → {}", from.as_str(), to.as_str())
            }
            Activity::Priority { from, to } => {
                format!("priority {} → {}", from.as_str(), to.as_str())
            }
            Activity::Skill { from, to } => format!("skill {} → {}", from.as_str(), to.as_str()),
            Activity::Assigned { to: Some(a), .. } => format!("assigned to {a}"),
            Activity::Assigned { to: None, .. } => "unassigned".into(),
            Activity::Tags { added, removed } => {
                let mut parts: Vec<String> = added.iter().map(|t| format!("+{t}")).collect();
                parts.extend(removed.iter().map(|t| format!("−{t}")));
                format!("tags {}", parts.join(" "))
            }
            Activity::Escalated { reason } => format!("escalated: {reason}"),
            Activity::Reopened => "reopened by the customer".into(),
            Activity::Merged { into } => format!("merged into {}", super::ticket_ref(into)),
        }
    }
}

/// Who made the change from `old` (none: `new` was made) to `new`: the agent whose change
/// it was, or who assigned it; none for the desk's own changes and the customer's.
fn actor(old: Option<&Ticket>, new: &Ticket) -> Option<String> {
    new.changed_by.clone().or_else(|| {
        (old?.assignee != new.assignee)
            .then(|| new.assignment.as_ref().and_then(|a| a.by.clone()))
            .flatten()
    })
}

/// The conversation entry that records the change from `old` to `new` (with no `old`, the
/// ticket's opening: [`Activity::opened`]), if it did anything [`Activity::between`] tells;
/// its id is the same for every delivery of that change.
pub fn entry(old: Option<&Ticket>, new: &Ticket) -> Option<Message> {
    let activity = match old {
        Some(old) => Activity::between(old, new),
        None => Activity::opened(new),
    };
    if activity.is_empty() {
        return None;
    }
    let text = activity
        .iter()
        .map(Activity::describe)
        .collect::<Vec<_>>()
        .join("; ");
    let mut m = Message::outbound(
        &new.customer_id,
        new.channel,
        MessageKind::Activity,
        text,
        Some(new.id.clone()),
    );
    m.id = super::derived_id(&new.id, &format!("activity/{}", new.version));
    m.direction = Direction::Internal;
    m.status = None;
    m.created_at = new.updated_at;
    m.author = actor(old, new);
    m.activity = activity;
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{now, Channel, NewTicket, TicketPatch};

    fn ticket() -> Ticket {
        Ticket::open(
            NewTicket {
                customer_id: "c1".into(),
                channel: Channel::Webchat,
                subject: None,
                description: "我要退款".into(),
                priority: Priority::Normal,
                skill: Skill::Billing,
            },
            now(),
        )
    }

    fn patched(t: &Ticket, patch: TicketPatch) -> Ticket {
        let mut next = t.clone();
        next.apply(&patch, now()).expect("a legal change");
        next
    }

    #[test]
    fn an_opening_is_told_with_its_channel_its_first_tags_and_who() {
        let mut t = ticket();
        t.tags = vec!["vip".into(), "退款".into()];
        t.opened_by = Some("m-1".into());
        let m = entry(None, &t).expect("an entry");
        assert_eq!(
            m.activity,
            vec![
                Activity::Opened {
                    channel: Channel::Webchat,
                    by_customer: true
                },
                Activity::Tags {
                    added: vec!["vip".into(), "退款".into()],
                    removed: vec![]
                }
            ]
        );
        assert_eq!(m.text, "opened on webchat by the customer; tags +vip +退款");
        assert_eq!(m.author, None);
        assert_eq!(m.direction, Direction::Internal);
        assert_eq!(entry(None, &t).unwrap().id, m.id, "one id per opening");
        let json = serde_json::to_value(&m.activity[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"what": "opened", "channel": "webchat", "by_customer": true})
        );

        // By hand: the agent is its author, and the flag is left out.
        let mut by_hand = ticket();
        by_hand.changed_by = Some("alice".into());
        let m = entry(None, &by_hand).unwrap();
        assert_eq!(m.author.as_deref(), Some("alice"));
        assert_eq!(m.text, "opened on webchat");
        assert_eq!(
            serde_json::to_value(&m.activity).unwrap(),
            serde_json::json!([{"what": "opened", "channel": "webchat"}])
        );
    }

    #[test]
    fn an_agents_change_is_told_with_who_made_it() {
        let t = ticket();
        let next = patched(
            &t,
            TicketPatch {
                status: Some(TicketStatus::Pending),
                priority: Some(Priority::Urgent),
                tags: Some(vec!["退款".into(), "VIP".into()]),
                assignee: Some(Some("bob".into())),
                by: Some("alice".into()),
                ..Default::default()
            },
        );
        let m = entry(Some(&t), &next).expect("an entry");
        assert_eq!(
            m.activity,
            [
                Activity::Status {
                    from: TicketStatus::Open,
                    to: TicketStatus::Pending
                },
                Activity::Priority {
                    from: Priority::Normal,
                    to: Priority::Urgent
                },
                Activity::Assigned {
                    to: Some("bob".into()),
                    reason: Some(AssignmentReason::Manual)
                },
                Activity::Tags {
                    added: vec!["退款".into(), "vip".into()],
                    removed: vec![]
                },
            ]
        );
        assert_eq!(m.author.as_deref(), Some("alice"));
        assert_eq!(m.direction, Direction::Internal);
        assert_eq!(m.kind, MessageKind::Activity);
        assert_eq!(m.status, None, "never sent");
        assert_eq!(m.ticket_id.as_deref(), Some(t.id.as_str()));
        assert_eq!(m.created_at, next.updated_at);
        assert!(m.text.contains("tags +退款 +vip"), "{}", m.text);
        assert_eq!(
            entry(Some(&t), &next).unwrap().id,
            m.id,
            "one id per change"
        );

        let untagged = patched(
            &next,
            TicketPatch {
                tags: Some(vec!["vip".into()]),
                by: Some("bob".into()),
                ..Default::default()
            },
        );
        let m2 = entry(Some(&next), &untagged).unwrap();
        assert_eq!(
            m2.activity,
            [Activity::Tags {
                added: vec![],
                removed: vec!["退款".into()]
            }]
        );
        assert_eq!(m2.author.as_deref(), Some("bob"));
        assert_ne!(m2.id, m.id, "each version its own entry");
    }

    #[test]
    fn the_desks_own_changes_and_bookkeeping_are_told_rightly() {
        let t = ticket();
        // Given by the rule: no agent made it.
        let mut given = t.clone();
        assert!(given.assign("bob", AssignmentReason::Rule, now()));
        let m = entry(Some(&t), &given).unwrap();
        assert_eq!(m.author, None);
        assert_eq!(
            m.activity,
            [Activity::Assigned {
                to: Some("bob".into()),
                reason: Some(AssignmentReason::Rule)
            }]
        );
        // A change that touches none of the told fields writes nothing.
        let mut waited = given.clone();
        waited.customer_replied(now(), now());
        assert!(entry(Some(&given), &waited).is_none());
        // An escalation is told once, with its reason, not as a status change too.
        let mut escalated = given.clone();
        escalated.escalate_by("bob", "客户要求退款", now()).unwrap();
        let m = entry(Some(&given), &escalated).unwrap();
        assert_eq!(
            m.activity,
            [Activity::Escalated {
                reason: "客户要求退款".into()
            }]
        );
        assert_eq!(m.author.as_deref(), Some("bob"));
    }

    #[test]
    fn a_reopen_by_the_customer_is_told_as_one() {
        let t = ticket();
        let mut resolved = patched(
            &t,
            TicketPatch {
                status: Some(TicketStatus::Resolved),
                by: Some("alice".into()),
                ..Default::default()
            },
        );
        resolved.schedule_close(TicketStatus::Open, Some(chrono::Duration::days(4)), now());
        let inbound = crate::domain::InboundMessage::text(
            Channel::Webchat,
            "v1".into(),
            "还是没收到".into(),
            now(),
        );
        let follow_up = Message::inbound(&inbound, "c1");
        let mut reopened = resolved.clone();
        assert!(reopened.reopen_for_customer(&follow_up, true, now()));
        let m = entry(Some(&resolved), &reopened).unwrap();
        assert_eq!(m.activity, [Activity::Reopened]);
        assert_eq!(
            m.author, None,
            "the customer, not the agent who resolved it"
        );
    }
}
