//! The reports: customer satisfaction from answered surveys, and ticket volume with the
//! first-response time.

use crate::domain::hours::Tz;
use crate::domain::Ticket;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Group {
    pub count: u64,
    pub average: Option<f64>,
    #[serde(skip)]
    sum: u64,
}

impl Group {
    fn add(&mut self, rating: u8) {
        self.count += 1;
        self.sum += u64::from(rating);
        self.average = Some(round2(self.sum as f64 / self.count as f64));
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[derive(Debug, Serialize, PartialEq)]
pub struct CsatReport {
    pub count: u64,
    pub average: Option<f64>,
    /// Ratings 1 to 5, each with its count.
    pub distribution: BTreeMap<String, u64>,
    pub by_channel: BTreeMap<String, Group>,
    pub by_agent: BTreeMap<String, Group>,
    /// Set when the period held more ratings than one report reads
    /// ([`CSAT_SCAN_LIMIT`]): the figures are those of the earliest of them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// How many ratings one CSAT report reads, a page at a time, before it stops and says so.
pub const CSAT_SCAN_LIMIT: usize = 100_000;
/// How many rated tickets one page of the CSAT report holds.
pub const CSAT_PAGE: usize = 500;

/// Summarises the rated tickets given; unassigned tickets count under `unassigned`.
pub fn csat<'a>(tickets: impl IntoIterator<Item = &'a Ticket>) -> CsatReport {
    let mut tally = CsatTally::default();
    for t in tickets {
        tally.add(t);
    }
    tally.report()
}

/// The CSAT report's running totals, fed one page of rated tickets at a time: what a
/// report over any number of ratings keeps in memory is these sums, never the tickets.
#[derive(Debug, Default)]
pub struct CsatTally {
    all: Group,
    distribution: BTreeMap<String, u64>,
    by_channel: BTreeMap<String, Group>,
    by_agent: BTreeMap<String, Group>,
    truncated: bool,
}

impl CsatTally {
    /// Counts a ticket's rating; a ticket without one counts nothing.
    pub fn add(&mut self, t: &Ticket) {
        let Some(rating) = t.survey.as_ref().and_then(|s| s.rating) else {
            return;
        };
        self.all.add(rating);
        *self.distribution.entry(rating.to_string()).or_default() += 1;
        self.by_channel
            .entry(t.channel.as_str().to_string())
            .or_default()
            .add(rating);
        self.by_agent
            .entry(t.assignee.clone().unwrap_or_else(|| "unassigned".into()))
            .or_default()
            .add(rating);
    }

    /// Notes that the report stopped reading before the end of the period.
    pub fn cut_short(&mut self) {
        self.truncated = true;
    }

    pub fn report(self) -> CsatReport {
        let mut distribution: BTreeMap<String, u64> =
            (1..=5).map(|r: u8| (r.to_string(), 0)).collect();
        distribution.extend(self.distribution);
        CsatReport {
            count: self.all.count,
            average: self.all.average,
            distribution,
            by_channel: self.by_channel,
            by_agent: self.by_agent,
            truncated: self.truncated,
        }
    }
}

/// Tickets opened and closed on one day (UTC).
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Day {
    pub date: NaiveDate,
    pub opened: u64,
    pub closed: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct VolumeReport {
    /// The time zone whose days `days` are: the team's (`[business_hours] timezone`), or UTC.
    pub timezone: String,
    pub opened: u64,
    pub closed: u64,
    /// Every day of the period, oldest first, including days with nothing.
    pub days: Vec<Day>,
    /// The median time from a ticket's opening to its first agent reply, over the tickets
    /// opened in the period that have one.
    pub median_first_response_secs: Option<i64>,
    pub answered: u64,
}

/// The longest period the volume report lists day by day.
pub const MAX_REPORT_DAYS: i64 = 366;

/// A report's period, refused (422 `invalid_period`) when it ends before it starts; both
/// stores get only periods that make sense (DynamoDB refuses a reversed range outright).
pub fn check_period(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> crate::Result<()> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => Err(crate::Error::unprocessable(
            "invalid_period",
            "from must not be after to",
        )),
        _ => Ok(()),
    }
}

/// When `date` starts in `zone`, as a UTC time. A day whose midnight a clock change skips
/// starts at its first hour that exists.
pub fn day_start(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    (0..24)
        .find_map(|h| {
            zone.from_local_datetime(&date.and_hms_opt(h, 0, 0)?)
                .earliest()
        })
        .map_or_else(
            || date.and_time(NaiveTime::MIN).and_utc(),
            |t| t.with_timezone(&Utc),
        )
}

/// Counts what happened within [from, to): tickets opened (by `created_at`) and closed (by
/// `closed_at`), day by day, the days being `zone`'s.
pub fn volume<'a>(
    tickets: impl IntoIterator<Item = &'a Ticket>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    zone: Tz,
) -> VolumeReport {
    let local = |t: DateTime<Utc>| t.with_timezone(&zone).date_naive();
    let first = local(from);
    let last = local(to - chrono::Duration::nanoseconds(1));
    let mut days: Vec<Day> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .take(MAX_REPORT_DAYS as usize)
        .map(|date| Day {
            date,
            ..Day::default()
        })
        .collect();
    let within = |t: DateTime<Utc>| t >= from && t < to;
    let slot = |t: DateTime<Utc>| (local(t) - first).num_days() as usize;
    let mut responses = Vec::new();
    let (mut opened, mut closed) = (0, 0);
    for t in tickets {
        if within(t.created_at) {
            opened += 1;
            if let Some(d) = days.get_mut(slot(t.created_at)) {
                d.opened += 1;
            }
            if let Some(r) = t.first_response_at {
                responses.push((r - t.created_at).num_seconds().max(0));
            }
        }
        if let Some(c) = t.closed_at.filter(|c| within(*c)) {
            closed += 1;
            if let Some(d) = days.get_mut(slot(c)) {
                d.closed += 1;
            }
        }
    }
    responses.sort_unstable();
    let median_first_response_secs = match responses.len() {
        0 => None,
        n if n % 2 == 1 => Some(responses[n / 2]),
        n => Some((responses[n / 2 - 1] + responses[n / 2]) / 2),
    };
    VolumeReport {
        timezone: zone.name().to_string(),
        opened,
        closed,
        days,
        median_first_response_secs,
        answered: responses.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;

    fn rated(rating: u8, channel: Channel, agent: Option<&str>) -> Ticket {
        let mut t = Ticket::open(
            NewTicket {
                customer_id: "c".into(),
                channel,
                subject: None,
                description: "x".into(),
                priority: Priority::Normal,
                skill: Skill::General,
            },
            now(),
        );
        t.assignee = agent.map(str::to_string);
        t.status = crate::domain::TicketStatus::Closed;
        t.mark_survey_sent(now());
        t.rate(None, rating.into(), None, now()).unwrap();
        t
    }

    #[test]
    fn averages_and_distribution() {
        let ts = [
            rated(5, Channel::Webchat, Some("alice")),
            rated(4, Channel::Telegram, Some("alice")),
            rated(1, Channel::Webchat, None),
        ];
        let r = csat(&ts);
        assert_eq!(r.count, 3);
        assert_eq!(r.average, Some(3.33));
        assert_eq!(r.distribution["5"], 1);
        assert_eq!(r.distribution["2"], 0);
        assert_eq!(r.by_agent["alice"].average, Some(4.5));
        assert_eq!(r.by_channel["webchat"].count, 2);
        assert_eq!(r.by_agent["unassigned"].count, 1);
        assert_eq!(csat(&[]).average, None);
    }

    #[test]
    fn volume_counts_days_and_the_median_first_response() {
        let day = |d: u32, h: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 11, d)
                .and_then(|x| x.and_hms_opt(h, 0, 0))
                .map(|x| x.and_utc())
                .unwrap()
        };
        let mut a = rated(5, Channel::Webchat, None);
        a.created_at = day(2, 9);
        a.first_response_at = Some(day(2, 10));
        a.closed_at = Some(day(3, 9));
        let mut b = rated(5, Channel::Webchat, None);
        b.created_at = day(2, 12);
        b.first_response_at = Some(day(2, 15));
        let mut old = rated(5, Channel::Webchat, None);
        old.created_at = day(1, 0) - chrono::Duration::days(30);
        old.closed_at = Some(day(4, 8));
        let r = volume(&[a, b, old], day(1, 0), day(5, 0), Tz::UTC);
        assert_eq!((r.opened, r.closed), (2, 2));
        assert_eq!(r.days.len(), 4);
        assert_eq!(r.days[1].opened, 2);
        assert_eq!(r.days[2].closed, 1);
        assert_eq!(r.days[3].closed, 1);
        assert_eq!(r.median_first_response_secs, Some(2 * 3600));
        assert_eq!(r.answered, 2);
    }

    #[test]
    fn a_teams_days_are_its_own() {
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        let date = |m: u32, d: u32| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(day_start(shanghai, date(12, 1)), at("2026-11-30T16:00:00Z"));
        // 07:30 in Shanghai on the 1st is still the 30th in UTC: it counts on the 1st.
        let mut early = rated(5, Channel::Webchat, None);
        early.created_at = at("2026-11-30T23:30:00Z");
        let r = volume(
            &[early],
            day_start(shanghai, date(11, 30)),
            day_start(shanghai, date(12, 2)),
            shanghai,
        );
        assert_eq!(r.timezone, "Asia/Shanghai");
        assert_eq!(r.days.len(), 2);
        assert_eq!((r.days[0].opened, r.days[1].opened), (0, 1));
        assert_eq!(r.days[1].date, date(12, 1));
        // Where a clock change skips midnight (Chile, spring), the day starts at 01:00.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        assert_eq!(day_start(santiago, date(9, 6)), at("2026-09-06T04:00:00Z"));
        assert_eq!(day_start(santiago, date(9, 7)), at("2026-09-07T03:00:00Z"));
    }
}

/// How one SLA target fared over a period's tickets.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TargetOutcome {
    pub met: u64,
    pub breached: u64,
    /// Neither yet: still open and not due.
    pub pending: u64,
    /// met / (met + breached), when anything was decided.
    pub attainment: Option<f64>,
}

/// One priority's SLA attainment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrioritySla {
    pub priority: crate::domain::Priority,
    /// Tickets of this priority opened in the period with an SLA.
    pub tickets: u64,
    pub first_response: TargetOutcome,
    /// Counted per wait of a customer for a next reply, not per ticket: a ticket may have
    /// several.
    pub next_reply: TargetOutcome,
    pub resolution: TargetOutcome,
    pub median_first_response_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Urgent first; only priorities with tickets.
    pub priorities: Vec<PrioritySla>,
}

/// SLA attainment per priority over the tickets opened within [from, to) that had targets.
pub fn sla<'a>(
    tickets: impl IntoIterator<Item = &'a Ticket>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> SlaReport {
    use crate::domain::SlaTarget;
    let mut rows: Vec<(PrioritySla, Vec<i64>)> = Vec::new();
    for t in tickets {
        let Some(sla) = &t.sla else { continue };
        if t.created_at < from || t.created_at >= to {
            continue;
        }
        let i = match rows.iter().position(|(r, _)| r.priority == t.priority) {
            Some(i) => i,
            None => {
                rows.push((
                    PrioritySla {
                        priority: t.priority,
                        tickets: 0,
                        first_response: TargetOutcome::default(),
                        next_reply: TargetOutcome::default(),
                        resolution: TargetOutcome::default(),
                        median_first_response_secs: None,
                    },
                    Vec::new(),
                ));
                rows.len() - 1
            }
        };
        let (row, responses) = &mut rows[i];
        row.tickets += 1;
        for (target, due, outcome) in [
            (
                SlaTarget::FirstResponse,
                sla.first_response_due,
                &mut row.first_response,
            ),
            (
                SlaTarget::Resolution,
                sla.resolution_due,
                &mut row.resolution,
            ),
        ] {
            if due.is_none() {
                continue;
            }
            if sla.breaches.iter().any(|b| b.target == target) {
                outcome.breached += 1;
            } else if t.sla_met(target) {
                outcome.met += 1;
            } else {
                outcome.pending += 1;
            }
        }
        let waits = t.next_reply_waits();
        row.next_reply.met += waits.met;
        row.next_reply.breached += waits.breached;
        row.next_reply.pending += waits.pending;
        if let Some(r) = t.first_response_at {
            responses.push((r - t.created_at).num_seconds().max(0));
        }
    }
    let mut priorities: Vec<PrioritySla> = rows
        .into_iter()
        .map(|(mut row, mut responses)| {
            responses.sort_unstable();
            row.median_first_response_secs = median(&responses);
            for o in [
                &mut row.first_response,
                &mut row.next_reply,
                &mut row.resolution,
            ] {
                let decided = o.met + o.breached;
                o.attainment = (decided > 0).then(|| o.met as f64 / decided as f64);
            }
            row
        })
        .collect();
    priorities.sort_by_key(|r| std::cmp::Reverse(r.priority));
    SlaReport {
        from,
        to,
        priorities,
    }
}

fn median(sorted: &[i64]) -> Option<i64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}
