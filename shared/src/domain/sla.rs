//! Service-level targets: when a ticket's first response and its resolution are due, which
//! targets passed unmet, and the policy per priority that sets them.

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
    Resolution,
}

impl SlaTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaTarget::FirstResponse => "first_response",
            SlaTarget::Resolution => "resolution",
        }
    }

    /// The escalation reason of a breach of this target.
    pub fn breach_reason(self) -> String {
        format!("sla_breach:{}", self.as_str())
    }
}

/// A target that passed unmet, recorded once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    pub target: SlaTarget,
    /// When it was due.
    pub due: DateTime<Utc>,
    /// When the desk noticed.
    pub at: DateTime<Utc>,
}

/// A ticket's targets and its breaches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sla {
    pub first_response_due: Option<DateTime<Utc>>,
    pub resolution_due: Option<DateTime<Utc>>,
    #[serde(default)]
    pub breaches: Vec<Breach>,
}

/// One priority's targets, as `[sla.PRIORITY]` of the rules file writes them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub first_response: Option<String>,
    pub resolution: Option<String>,
    #[serde(default)]
    pub escalate_on_breach: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlaPolicy {
    pub first_response: Option<Duration>,
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

    /// The targets of a ticket created at `created_at` with `priority`, counted in business
    /// hours; `None` when its priority has no policy.
    pub fn due(&self, priority: Priority, created_at: DateTime<Utc>) -> Option<Sla> {
        let policy = self.policy(priority)?;
        Some(Sla {
            first_response_due: policy.first_response.map(|d| self.hours.add(created_at, d)),
            resolution_due: policy.resolution.map(|d| self.hours.add(created_at, d)),
            breaches: Vec::new(),
        })
    }
}

impl Ticket {
    /// Sets the ticket's due times from the policy of its priority, keeping the breaches
    /// already recorded. True when they changed: a new ticket, or a new priority.
    pub fn stamp_sla(&mut self, policies: &SlaPolicies) -> bool {
        let breaches = self
            .sla
            .as_ref()
            .map(|s| s.breaches.clone())
            .unwrap_or_default();
        let mut sla = policies
            .due(self.priority, self.created_at)
            .unwrap_or_default();
        sla.breaches = breaches;
        let sla = (sla != Sla::default()).then_some(sla);
        if sla == self.sla {
            return false;
        }
        self.sla = sla;
        true
    }

    /// Whether `target` has been met.
    pub fn sla_met(&self, target: SlaTarget) -> bool {
        match target {
            SlaTarget::FirstResponse => self.first_response_at.is_some(),
            SlaTarget::Resolution => {
                matches!(self.status, TicketStatus::Resolved | TicketStatus::Closed)
            }
        }
    }

    fn breached(&self, target: SlaTarget) -> bool {
        self.sla
            .as_ref()
            .is_some_and(|s| s.breaches.iter().any(|b| b.target == target))
    }

    fn target_due(&self, target: SlaTarget) -> Option<DateTime<Utc>> {
        let sla = self.sla.as_ref()?;
        match target {
            SlaTarget::FirstResponse => sla.first_response_due,
            SlaTarget::Resolution => sla.resolution_due,
        }
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
        [SlaTarget::FirstResponse, SlaTarget::Resolution]
            .into_iter()
            .filter(|t| !self.sla_met(*t) && !self.breached(*t))
            .filter_map(|t| self.target_due(t))
            .min()
    }

    /// Records each target that is due at `now` and unmet, once, and escalates the ticket
    /// for it when the policy says so. Returns the targets breached now.
    pub fn check_sla(&mut self, policies: &SlaPolicies, now: DateTime<Utc>) -> Vec<SlaTarget> {
        if !self.status.is_active() {
            return Vec::new();
        }
        let due: Vec<(SlaTarget, DateTime<Utc>)> =
            [SlaTarget::FirstResponse, SlaTarget::Resolution]
                .into_iter()
                .filter(|t| !self.sla_met(*t) && !self.breached(*t))
                .filter_map(|t| self.target_due(t).map(|d| (t, d)))
                .filter(|(_, d)| *d <= now)
                .collect();
        if due.is_empty() {
            return Vec::new();
        }
        let escalate = policies
            .policy(self.priority)
            .is_some_and(|p| p.escalate_on_breach);
        let sla = self.sla.get_or_insert_with(Sla::default);
        for (target, due) in &due {
            sla.breaches.push(Breach {
                target: *target,
                due: *due,
                at: now,
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

    /// The breaches this change recorded: what notifies the supervisor, once per breach.
    pub fn new_breaches<'a>(old: Option<&Ticket>, new: &'a Ticket) -> Vec<&'a Breach> {
        let before = |target: SlaTarget| old.is_some_and(|o| o.breached(target));
        new.sla
            .as_ref()
            .map(|s| s.breaches.iter().filter(|b| !before(b.target)).collect())
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
