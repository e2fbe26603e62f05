//! The customer-satisfaction report, computed from answered surveys.

use crate::domain::Ticket;
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
}

/// Summarises the rated tickets given; unassigned tickets count under `unassigned`.
pub fn csat<'a>(tickets: impl IntoIterator<Item = &'a Ticket>) -> CsatReport {
    let mut all = Group::default();
    let mut distribution: BTreeMap<String, u64> = (1..=5).map(|r: u8| (r.to_string(), 0)).collect();
    let mut by_channel: BTreeMap<String, Group> = BTreeMap::new();
    let mut by_agent: BTreeMap<String, Group> = BTreeMap::new();
    for t in tickets {
        let Some(rating) = t.survey.as_ref().and_then(|s| s.rating) else {
            continue;
        };
        all.add(rating);
        *distribution.entry(rating.to_string()).or_default() += 1;
        by_channel
            .entry(t.channel.as_str().to_string())
            .or_default()
            .add(rating);
        by_agent
            .entry(t.assignee.clone().unwrap_or_else(|| "unassigned".into()))
            .or_default()
            .add(rating);
    }
    CsatReport {
        count: all.count,
        average: all.average,
        distribution,
        by_channel,
        by_agent,
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
        t.rate(rating.into(), None, now()).unwrap();
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
}
