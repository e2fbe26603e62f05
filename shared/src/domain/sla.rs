//! Service-level targets: when a ticket's first response, its next reply and its resolution
//! are due, which targets passed unmet, and the policy per priority that sets them.

use super::hours::{parse_duration, BusinessHours};
use super::{Priority, Ticket, TicketStatus};
use crate::Result;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What an SLA promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaTarget {
    FirstResponse,
    /// The agents' reply to a customer who wrote again after the first response: one wait
    /// per unanswered turn of the customer ([`Ticket::awaiting_reply_since`]), as Zendesk's
    /// "next reply time". Each wait may be breached once.
    NextReply,
    Resolution,
}

/// The targets, in the order a ticket meets them.
const TARGETS: [SlaTarget; 3] = [
    SlaTarget::FirstResponse,
    SlaTarget::NextReply,
    SlaTarget::Resolution,
];

impl SlaTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaTarget::FirstResponse => "first_response",
            SlaTarget::NextReply => "next_reply",
            SlaTarget::Resolution => "resolution",
        }
    }

    /// The escalation reason of a breach of this target.
    pub fn breach_reason(self) -> String {
        format!("sla_breach:{}", self.as_str())
    }
}

/// A target that passed unmet, recorded once (a next reply: once per wait).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    pub target: SlaTarget,
    /// When it was due.
    pub due: DateTime<Utc>,
    /// When the desk noticed.
    pub at: DateTime<Utc>,
    /// For a next reply, the wait it belongs to (when the customer began to wait): a
    /// priority change may move the due time, never make the same wait breach twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

/// A ticket's targets and its breaches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sla {
    pub first_response_due: Option<DateTime<Utc>>,
    /// When the agents' next reply is due, while the customer waits (since
    /// `next_reply_since`, the ticket's `awaiting_reply_since` when it was stamped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_reply_due: Option<DateTime<Utc>>,
    /// The last wait stamped (and counted in `next_reply_waits`); kept after it ends, so a
    /// wait is counted once however often it is stamped again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_reply_since: Option<DateTime<Utc>>,
    /// How many of the customer's waits for a next reply had a target: what the report
    /// counts the next-reply breaches against.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub next_reply_waits: u32,
    pub resolution_due: Option<DateTime<Utc>>,
    #[serde(default)]
    pub breaches: Vec<Breach>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A ticket's waits for a next reply, by how they fared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitTally {
    pub met: u64,
    pub breached: u64,
    pub pending: u64,
}

/// One priority's targets, as `[sla.PRIORITY]` of the rules file writes them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub first_response: Option<String>,
    pub next_reply: Option<String>,
    pub resolution: Option<String>,
    #[serde(default)]
    pub escalate_on_breach: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlaPolicy {
    pub first_response: Option<Duration>,
    pub next_reply: Option<Duration>,
    pub resolution: Option<Duration>,
    pub escalate_on_breach: bool,
}

/// The policies per priority, and the hours their durations count in.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaPolicies {
    pub by_priority: BTreeMap<Priority, SlaPolicy>,
    pub hours: BusinessHours,
}

impl Default for SlaPolicies {
    fn default() -> Self {
        SlaPolicies {
            by_priority: BTreeMap::new(),
            hours: BusinessHours::Always,
        }
    }
}

impl SlaPolicies {
    pub fn from_specs(
        specs: &BTreeMap<Priority, PolicySpec>,
        hours: BusinessHours,
    ) -> Result<SlaPolicies> {
        let mut by_priority = BTreeMap::new();
        for (priority, spec) in specs {
            let duration =
                |d: &Option<String>| d.as_deref().map(|d| parse_duration(d, &hours)).transpose();
            by_priority.insert(
                *priority,
                SlaPolicy {
                    first_response: duration(&spec.first_response)?,
                    next_reply: duration(&spec.next_reply)?,
                    resolution: duration(&spec.resolution)?,
                    escalate_on_breach: spec.escalate_on_breach,
                },
            );
        }
        Ok(SlaPolicies { by_priority, hours })
    }

    pub fn policy(&self, priority: Priority) -> Option<&SlaPolicy> {
        self.by_priority.get(&priority)
    }

    /// The first-response and resolution targets of a ticket created at `created_at` with
    /// `priority`, counted in business hours; `None` when its priority has no policy.
    pub fn due(&self, priority: Priority, created_at: DateTime<Utc>) -> Option<Sla> {
        let policy = self.policy(priority)?;
        Some(Sla {
            first_response_due: policy.first_response.map(|d| self.hours.add(created_at, d)),
            resolution_due: policy.resolution.map(|d| self.hours.add(created_at, d)),
            ..Sla::default()
        })
    }
}

impl Ticket {
    /// Sets the ticket's due times from the policy of its priority, keeping the breaches
    /// already recorded. True when they changed: a new ticket, or a new priority.
    pub fn stamp_sla(&mut self, policies: &SlaPolicies) -> bool {
        let before = self.sla.clone();
        let old = self.sla.take().unwrap_or_default();
        let sla = policies
            .due(self.priority, self.created_at)
            .unwrap_or_default();
        self.sla = Some(Sla {
            breaches: old.breaches,
            next_reply_due: old.next_reply_due,
            next_reply_since: old.next_reply_since,
            next_reply_waits: old.next_reply_waits,
            ..sla
        })
        .filter(|s| *s != Sla::default());
        self.stamp_next_reply(policies);
        self.sla != before
    }

    /// Sets when the next reply is due for the customer's current wait, or takes the due
    /// time off when none goes on: what a wait that began or ended changes, and nothing
    /// else (the other due times stay as they were stamped). True when it changed.
    pub fn stamp_next_reply(&mut self, policies: &SlaPolicies) -> bool {
        let before = self.sla.clone();
        let mut sla = self.sla.take().unwrap_or_default();
        let wait = self
            .awaiting_reply_since
            .filter(|_| self.status.is_active());
        let target = policies.policy(self.priority).and_then(|p| p.next_reply);
        match wait.zip(target) {
            Some((since, d)) => {
                if sla.next_reply_since != Some(since) {
                    sla.next_reply_since = Some(since);
                    sla.next_reply_waits += 1;
                }
                sla.next_reply_due = Some(policies.hours.add(since, d));
            }
            None => sla.next_reply_due = None,
        }
        self.sla = Some(sla).filter(|s| *s != Sla::default());
        self.sla != before
    }

    /// Whether `target` has been met: for the next reply, whether the customer waits for
    /// none now.
    pub fn sla_met(&self, target: SlaTarget) -> bool {
        let ended = matches!(self.status, TicketStatus::Resolved | TicketStatus::Closed);
        match target {
            SlaTarget::FirstResponse => self.first_response_at.is_some(),
            SlaTarget::NextReply => self.awaiting_reply_since.is_none() || ended,
            SlaTarget::Resolution => ended,
        }
    }

    /// Whether `target` was breached: for the next reply, in the customer's current wait.
    fn breached(&self, target: SlaTarget) -> bool {
        let Some(sla) = &self.sla else { return false };
        sla.breaches
            .iter()
            .any(|b| b.target == target && b.since == self.wait_of(target))
    }

    /// The wait a breach of `target` now would belong to: the customer's current one for a
    /// next reply, none for the other targets.
    fn wait_of(&self, target: SlaTarget) -> Option<DateTime<Utc>> {
        match target {
            SlaTarget::NextReply => self.awaiting_reply_since,
            _ => None,
        }
    }

    /// When `target` is due; for the next reply, only once it is stamped for the customer's
    /// current wait (the change feed stamps it soon after the wait begins).
    fn target_due(&self, target: SlaTarget) -> Option<DateTime<Utc>> {
        let sla = self.sla.as_ref()?;
        match target {
            SlaTarget::FirstResponse => sla.first_response_due,
            SlaTarget::NextReply => sla
                .next_reply_due
                .filter(|_| sla.next_reply_since == self.awaiting_reply_since),
            SlaTarget::Resolution => sla.resolution_due,
        }
    }

    /// The targets still watched, with their due times: neither met nor breached.
    fn watched(&self) -> impl Iterator<Item = (SlaTarget, DateTime<Utc>)> + '_ {
        TARGETS
            .into_iter()
            .filter(|t| !self.sla_met(*t) && !self.breached(*t))
            .filter_map(|t| self.target_due(t).map(|d| (t, d)))
    }

    /// The earliest due time still to watch: of a target neither met nor breached, on a
    /// ticket still being worked; or, on a resolved ticket, when it closes by itself. What
    /// the clock's index is ordered by.
    pub fn next_sla_due(&self) -> Option<DateTime<Utc>> {
        if self.status == TicketStatus::Resolved {
            return self.closes_at;
        }
        if !self.status.is_active() {
            return None;
        }
        self.watched().map(|(_, due)| due).min()
    }

    /// Records each target that is due at `now` and unmet, once, and escalates the ticket
    /// for it when the policy says so. Returns the targets breached now.
    pub fn check_sla(&mut self, policies: &SlaPolicies, now: DateTime<Utc>) -> Vec<SlaTarget> {
        if !self.status.is_active() {
            return Vec::new();
        }
        let due: Vec<(SlaTarget, DateTime<Utc>)> =
            self.watched().filter(|(_, d)| *d <= now).collect();
        if due.is_empty() {
            return Vec::new();
        }
        let escalate = policies
            .policy(self.priority)
            .is_some_and(|p| p.escalate_on_breach);
        let waits: Vec<_> = due.iter().map(|(t, _)| self.wait_of(*t)).collect();
        let sla = self.sla.get_or_insert_with(Sla::default);
        for ((target, due), since) in due.iter().zip(waits) {
            sla.breaches.push(Breach {
                target: *target,
                due: *due,
                at: now,
                since,
            });
        }
        if escalate && self.status != TicketStatus::Escalated {
            // The escalation carries no agent: the breach's own notice tells the supervisor.
            let _ = self.escalate(&due[0].0.breach_reason(), now);
        }
        self.updated_at = now;
        self.version += 1;
        due.into_iter().map(|(t, _)| t).collect()
    }

    /// How the customer's waits for a next reply that had a target fared: met, breached,
    /// or the one going on (neither yet).
    pub fn next_reply_waits(&self) -> WaitTally {
        let Some(sla) = &self.sla else {
            return WaitTally::default();
        };
        let target = SlaTarget::NextReply;
        let breached = sla.breaches.iter().filter(|b| b.target == target).count() as u64;
        let pending = u64::from(
            self.target_due(target).is_some() && !self.sla_met(target) && !self.breached(target),
        );
        WaitTally {
            met: u64::from(sla.next_reply_waits).saturating_sub(breached + pending),
            breached,
            pending,
        }
    }

    /// The breaches this change recorded: what notifies the supervisor, once per breach.
    pub fn new_breaches<'a>(old: Option<&Ticket>, new: &'a Ticket) -> Vec<&'a Breach> {
        let before = |b: &Breach| {
            old.and_then(|o| o.sla.as_ref()).is_some_and(|s| {
                s.breaches
                    .iter()
                    .any(|o| o.target == b.target && o.since == b.since)
            })
        };
        new.sla
            .as_ref()
            .map(|s| s.breaches.iter().filter(|b| !before(b)).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::hours::HoursSpec;
    use super::super::{Channel, NewTicket, Skill, TicketPatch};
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn policies(escalate: bool) -> SlaPolicies {
        let specs = BTreeMap::from([(
            Priority::Urgent,
            PolicySpec {
                first_response: Some("30m".into()),
                resolution: Some("4h".into()),
                escalate_on_breach: escalate,
                ..Default::default()
            },
        )]);
        SlaPolicies::from_specs(&specs, BusinessHours::Always).unwrap()
    }

    fn ticket(priority: Priority, at: &str) -> Ticket {
        Ticket::open(
            NewTicket {
                customer_id: "c".into(),
                channel: Channel::Webchat,
                subject: None,
                description: "系统打不开".into(),
                priority,
                skill: Skill::Technical,
            },
            utc(at),
        )
    }

    fn with_next_reply() -> SlaPolicies {
        let specs = BTreeMap::from([(
            Priority::Urgent,
            PolicySpec {
                first_response: Some("30m".into()),
                next_reply: Some("1h".into()),
                resolution: Some("24h".into()),
                escalate_on_breach: false,
            },
        )]);
        SlaPolicies::from_specs(&specs, BusinessHours::Always).unwrap()
    }

    /// Stamps as the change feed does after each change.
    fn stamped(t: &mut Ticket, p: &SlaPolicies) -> Option<DateTime<Utc>> {
        t.stamp_sla(p);
        t.sla.as_ref().and_then(|s| s.next_reply_due)
    }

    #[test]
    fn each_wait_for_a_next_reply_has_its_own_target() {
        let p = with_next_reply();
        let at = |hm: &str| utc(&format!("2026-11-27T{hm}:00Z"));
        let mut t = ticket(Priority::Urgent, "2026-11-27T02:00:00Z");
        t.stamp_sla(&p);
        // Before the first response, a follow-up is the first response's to meet.
        t.customer_replied(at("02:05"), at("02:05"));
        assert_eq!(t.awaiting_reply_since, None);
        assert_eq!(stamped(&mut t, &p), None);
        t.agent_replied(Some("alice"), at("02:10"));
        // The wait runs from the first message no agent answered.
        t.customer_replied(at("03:00"), at("03:00"));
        t.customer_replied(at("03:20"), at("03:21"));
        assert_eq!(t.awaiting_reply_since, Some(at("03:00")));
        assert_eq!(stamped(&mut t, &p), Some(at("04:00")));
        assert_eq!(t.next_sla_due(), Some(at("04:00")));
        // Waiting on the customer (pending), the agents owe no reply.
        let pending = TicketPatch {
            status: Some(TicketStatus::Pending),
            ..Default::default()
        };
        let mut paused = t.clone();
        paused.apply(&pending, at("03:30")).unwrap();
        assert_eq!(paused.next_sla_due(), Some(utc("2026-11-28T02:00:00Z")));
        assert!(paused.check_sla(&p, at("04:30")).is_empty());
        // Breached once for this wait.
        let before = t.clone();
        assert_eq!(t.check_sla(&p, at("04:01")), vec![SlaTarget::NextReply]);
        assert!(t.check_sla(&p, at("04:02")).is_empty());
        assert_eq!(Ticket::new_breaches(Some(&before), &t).len(), 1);
        assert_eq!(t.next_sla_due(), Some(utc("2026-11-28T02:00:00Z")));
        // A reply ends the wait; the next wait is met in time.
        t.agent_replied(Some("alice"), at("04:30"));
        assert_eq!(stamped(&mut t, &p), None);
        t.customer_replied(at("05:00"), at("05:00"));
        assert_eq!(stamped(&mut t, &p), Some(at("06:00")));
        assert_eq!(
            t.next_reply_waits(),
            WaitTally {
                met: 0,
                breached: 1,
                pending: 1
            }
        );
        t.agent_replied(Some("alice"), at("05:30"));
        stamped(&mut t, &p);
        // A third wait can be breached again: a breach of its own, notified once.
        t.customer_replied(at("06:00"), at("06:00"));
        assert_eq!(stamped(&mut t, &p), Some(at("07:00")));
        let before = t.clone();
        assert_eq!(t.check_sla(&p, at("07:00")), vec![SlaTarget::NextReply]);
        let new = Ticket::new_breaches(Some(&before), &t);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].due, at("07:00"));
        assert_eq!(
            t.next_reply_waits(),
            WaitTally {
                met: 1,
                breached: 2,
                pending: 0
            }
        );
        // Resolved, the ticket owes no reply; a customer's reopen starts a wait at once.
        let resolve = TicketPatch {
            status: Some(TicketStatus::Resolved),
            ..Default::default()
        };
        t.apply(&resolve, at("08:00")).unwrap();
        assert_eq!(t.awaiting_reply_since, None);
        assert_eq!(stamped(&mut t, &p), None);
        t.closes_at = Some(utc("2026-12-01T08:00:00Z"));
        let inbound = super::super::InboundMessage::text(
            Channel::Webchat,
            "v1".into(),
            "还是不行".into(),
            at("09:00"),
        );
        let follow_up = super::super::Message::inbound(&inbound, "c");
        assert!(t.reopen_for_customer(&follow_up, true, at("09:00")));
        assert_eq!(t.awaiting_reply_since, Some(at("09:00")));
        assert_eq!(stamped(&mut t, &p), Some(at("10:00")));
        assert_eq!(t.next_sla_due(), Some(at("10:00")));
    }

    /// A priority change moves a wait's due time, never makes the same wait breach again,
    /// nor counts it twice (even through a priority without the target and back); the
    /// supervisor's notice of each wait's breach has an id of its own.
    #[test]
    fn a_wait_breaches_once_whatever_its_priority_becomes() {
        let specs = BTreeMap::from([
            (
                Priority::Urgent,
                PolicySpec {
                    next_reply: Some("1h".into()),
                    ..Default::default()
                },
            ),
            (
                Priority::High,
                PolicySpec {
                    next_reply: Some("4h".into()),
                    ..Default::default()
                },
            ),
        ]);
        let p = SlaPolicies::from_specs(&specs, BusinessHours::Always).unwrap();
        let at = |hm: &str| utc(&format!("2026-11-27T{hm}:00Z"));
        let mut t = ticket(Priority::Urgent, "2026-11-27T02:00:00Z");
        t.agent_replied(Some("alice"), at("02:10"));
        t.customer_replied(at("03:00"), at("03:00"));
        assert_eq!(stamped(&mut t, &p), Some(at("04:00")));
        let before = t.clone();
        assert_eq!(t.check_sla(&p, at("04:01")), vec![SlaTarget::NextReply]);
        let first = Ticket::new_breaches(Some(&before), &t)[0].clone();
        assert_eq!(first.since, Some(at("03:00")));
        for priority in [Priority::High, Priority::Normal, Priority::High] {
            let patch = TicketPatch {
                priority: Some(priority),
                ..Default::default()
            };
            t.apply(&patch, at("04:05")).unwrap();
            t.stamp_sla(&p);
        }
        assert_eq!(t.sla.as_ref().unwrap().next_reply_due, Some(at("07:00")));
        assert!(t.check_sla(&p, at("07:01")).is_empty(), "breached once");
        assert_eq!(t.next_sla_due(), None);
        assert_eq!(
            t.next_reply_waits(),
            WaitTally {
                met: 0,
                breached: 1,
                pending: 0
            }
        );
        // The next wait's breach is a notice of its own.
        t.agent_replied(Some("alice"), at("07:30"));
        t.customer_replied(at("08:00"), at("08:00"));
        stamped(&mut t, &p);
        let before = t.clone();
        assert_eq!(t.check_sla(&p, at("12:00")), vec![SlaTarget::NextReply]);
        let second = Ticket::new_breaches(Some(&before), &t)[0].clone();
        let notice = |b: &Breach| super::super::SupervisorNotice::sla_breach(&t, b).id();
        assert_ne!(notice(&first), notice(&second));
        assert_eq!(
            notice(&second),
            notice(&second.clone()),
            "a repeat is the same notice"
        );
    }

    /// A reply ends only a wait that began before it was written; pending ends the wait (the
    /// ticket waits on the customer), and their next message starts one of its own.
    #[test]
    fn a_reply_ends_the_waits_it_answered_and_pending_ends_any() {
        let p = with_next_reply();
        let at = |hm: &str| utc(&format!("2026-11-27T{hm}:00Z"));
        let mut t = ticket(Priority::Urgent, "2026-11-27T02:00:00Z");
        t.agent_replied(Some("alice"), at("02:10"));
        t.customer_replied(at("03:00"), at("03:00"));
        // A reply written at 02:50 and recorded only now (a retry) answers nothing later.
        t.agent_replied_at(Some("alice"), at("02:50"), at("03:05"));
        assert_eq!(t.awaiting_reply_since, Some(at("03:00")));
        t.agent_replied_at(Some("alice"), at("03:10"), at("03:10"));
        assert_eq!(t.awaiting_reply_since, None);
        t.customer_replied(at("04:00"), at("04:00"));
        let pending = TicketPatch {
            status: Some(TicketStatus::Pending),
            ..Default::default()
        };
        t.apply(&pending, at("04:05")).unwrap();
        assert_eq!(t.awaiting_reply_since, None);
        assert_eq!(stamped(&mut t, &p), None);
        assert_eq!(t.waiting_since(), None);
        t.customer_replied(at("09:00"), at("09:00"));
        assert_eq!(t.status, TicketStatus::Open);
        assert_eq!(t.awaiting_reply_since, Some(at("09:00")));
        assert_eq!(stamped(&mut t, &p), Some(at("10:00")));
    }

    /// A merge folds a ticket whose customer waited into the kept one: the kept ticket owes
    /// the reply from the earlier wait.
    #[test]
    fn a_folded_tickets_wait_goes_to_the_kept_ticket() {
        let at = |hm: &str| utc(&format!("2026-11-27T{hm}:00Z"));
        let mut kept = ticket(Priority::Urgent, "2026-11-27T02:00:00Z");
        let folded = ticket(Priority::Urgent, "2026-11-27T03:00:00Z");
        assert!(
            !kept.absorb_wait(&folded, at("04:00")),
            "no first response yet"
        );
        kept.agent_replied(Some("alice"), at("02:10"));
        assert!(kept.absorb_wait(&folded, at("04:00")));
        assert_eq!(kept.awaiting_reply_since, Some(at("03:00")));
        assert!(!kept.absorb_wait(&folded, at("04:01")), "once");
    }

    #[test]
    fn due_times_follow_the_priority() {
        let mut t = ticket(Priority::Urgent, "2026-11-27T02:00:00Z");
        assert!(t.stamp_sla(&policies(false)));
        assert!(
            !t.stamp_sla(&policies(false)),
            "stamping again changes nothing"
        );
        let sla = t.sla.clone().unwrap();
        assert_eq!(sla.first_response_due, Some(utc("2026-11-27T02:30:00Z")));
        assert_eq!(sla.resolution_due, Some(utc("2026-11-27T06:00:00Z")));
        assert_eq!(t.next_sla_due(), Some(utc("2026-11-27T02:30:00Z")));
        let mut normal = ticket(Priority::Normal, "2026-11-27T02:00:00Z");
        assert!(!normal.stamp_sla(&policies(false)), "no policy, no SLA");
        assert_eq!(normal.next_sla_due(), None);
    }

    #[test]
    fn business_hours_push_the_due_time() {
        let hours = BusinessHours::from_spec(&HoursSpec {
            timezone: "Asia/Shanghai".into(),
            days: vec![
                "mon".into(),
                "tue".into(),
                "wed".into(),
                "thu".into(),
                "fri".into(),
            ],
            open: "09:00".into(),
            close: "18:00".into(),
            holidays: vec![],
        })
        .unwrap();
        let specs = BTreeMap::from([(
            Priority::Urgent,
            PolicySpec {
                first_response: Some("30m".into()),
                ..Default::default()
            },
        )]);
        let p = SlaPolicies::from_specs(&specs, hours).unwrap();
        // Friday 17:50 in Shanghai: due Monday 09:20.
        let mut t = ticket(Priority::Urgent, "2026-11-27T09:50:00Z");
        t.stamp_sla(&p);
        assert_eq!(
            t.sla.unwrap().first_response_due,
            Some(utc("2026-11-30T01:20:00Z"))
        );
    }

    #[test]
    fn a_breach_is_recorded_once_and_escalates_when_asked() {
        let p = policies(true);
        let mut t = ticket(Priority::Urgent, "2026-11-27T02:00:00Z");
        t.stamp_sla(&p);
        let before = t.clone();
        assert!(t.check_sla(&p, utc("2026-11-27T02:29:59Z")).is_empty());
        assert_eq!(
            t.check_sla(&p, utc("2026-11-27T02:31:00Z")),
            vec![SlaTarget::FirstResponse]
        );
        assert_eq!(t.status, TicketStatus::Escalated);
        assert_eq!(
            t.escalation_reason.as_deref(),
            Some("sla_breach:first_response")
        );
        assert_eq!(t.escalated_by, None);
        assert!(t.check_sla(&p, utc("2026-11-27T02:32:00Z")).is_empty());
        assert_eq!(Ticket::new_breaches(Some(&before), &t).len(), 1);
        let after = t.clone();
        assert!(Ticket::new_breaches(Some(&after), &t).is_empty());
        // Then the resolution target, on an escalated ticket: recorded, not escalated again.
        assert_eq!(
            t.check_sla(&p, utc("2026-11-27T06:00:00Z")),
            vec![SlaTarget::Resolution]
        );
        assert_eq!(t.next_sla_due(), None);
    }

    #[test]
    fn a_ticket_answered_in_time_is_not_breached() {
        let p = policies(true);
        let mut t = ticket(Priority::Urgent, "2026-11-27T02:00:00Z");
        t.stamp_sla(&p);
        t.agent_replied(Some("alice"), utc("2026-11-27T02:10:00Z"));
        assert_eq!(t.next_sla_due(), Some(utc("2026-11-27T06:00:00Z")));
        assert!(t.check_sla(&p, utc("2026-11-27T03:00:00Z")).is_empty());
        assert_eq!(t.status, TicketStatus::Open);
    }

    /// As Zendesk re-activates its resolution metric on a reopen: a ticket resolved in time
    /// and reopened by its customer after the resolution target counts that target as
    /// breached once the clock looks, and escalates when the policy says so.
    #[test]
    fn a_ticket_reopened_after_its_resolution_target_is_breached() {
        let p = policies(true);
        let mut t = ticket(Priority::Urgent, "2026-11-27T02:00:00Z");
        t.stamp_sla(&p);
        t.agent_replied(Some("alice"), utc("2026-11-27T02:10:00Z"));
        let resolve = TicketPatch {
            status: Some(TicketStatus::Resolved),
            ..Default::default()
        };
        t.apply(&resolve, utc("2026-11-27T05:00:00Z")).unwrap();
        let closes = utc("2026-12-01T05:00:00Z");
        t.schedule_close(
            TicketStatus::Open,
            Some(closes - utc("2026-11-27T05:00:00Z")),
            utc("2026-11-27T05:00:00Z"),
        );
        assert_eq!(
            t.next_sla_due(),
            Some(closes),
            "resolved in time: only its close is due"
        );
        assert!(t.check_sla(&p, utc("2026-11-27T07:00:00Z")).is_empty());
        let inbound = super::super::InboundMessage::text(
            Channel::Webchat,
            "v1".into(),
            "还是打不开".into(),
            utc("2026-11-27T07:00:00Z"),
        );
        let follow_up = super::super::Message::inbound(&inbound, "c");
        assert!(t.reopen_for_customer(&follow_up, true, utc("2026-11-27T07:00:00Z")));
        assert_eq!(t.next_sla_due(), Some(utc("2026-11-27T06:00:00Z")));
        assert_eq!(
            t.check_sla(&p, utc("2026-11-27T07:01:00Z")),
            vec![SlaTarget::Resolution]
        );
        assert_eq!(t.status, TicketStatus::Escalated);
    }
}
