//! Agents as the assignment sees them: what they can take (skills, languages), how much
//! (capacity), whether they are in, and the rule that picks one for a ticket. No I/O: the
//! stores make the pick stick with one conditional write.

use super::{Skill, Ticket};
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The languages the desk tells apart in customers' messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Language {
    #[serde(rename = "zh")]
    Zh,
    #[serde(rename = "en")]
    En,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::Zh, Language::En];

    /// The language of a customer's text: Chinese when it has Chinese characters, English
    /// when it has other letters, else the customer's locale.
    pub fn detect(customer_locale: Option<&str>, text: &str) -> Language {
        match crate::format::locale_for(customer_locale, text) {
            "zh" => Language::Zh,
            _ => Language::En,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Zh => "zh",
            Language::En => "en",
        }
    }

    /// The language a code names exactly (`zh`, `en`).
    pub fn parse(code: &str) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.as_str() == code)
    }

    /// The language of a locale such as `zh`, `zh-CN`, `zh_TW` or `en-US` (any case), if it
    /// is one the desk speaks.
    pub fn from_locale(locale: &str) -> Option<Language> {
        let lower = locale.trim().to_ascii_lowercase();
        let code = lower.split(['-', '_']).next().unwrap_or_default();
        Language::parse(code)
    }
}

/// Why a ticket went to its assignee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentReason {
    /// The assignment rule, when the ticket was made.
    Rule,
    /// An agent chose (`PATCH`), which always wins.
    Manual,
    /// Capacity freed up (a ticket ended, an agent came back) and a waiting ticket moved.
    Rebalance,
}

/// How many open tickets an agent without a profile may hold.
pub const DEFAULT_CAPACITY: u32 = 10;
/// The most any profile may set.
pub const MAX_CAPACITY: u32 = 200;

/// An agent's profile. An agent without one is available, with every skill and language
/// and a capacity of [`DEFAULT_CAPACITY`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentProfile {
    pub id: String,
    pub name: String,
    pub skills: Vec<Skill>,
    pub languages: Vec<Language>,
    pub capacity: u32,
    pub available: bool,
    /// When the rule last gave them a ticket: a tie goes to whoever waited longest.
    #[serde(default)]
    pub last_assigned_at: Option<DateTime<Utc>>,
    /// Tickets they hold that are still being worked; the store fills it in when it lists.
    #[serde(default)]
    pub open_tickets: u32,
}

/// What `PUT /agents/{id}` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub name: Option<String>,
    pub skills: Option<Vec<Skill>>,
    pub languages: Option<Vec<Language>>,
    pub capacity: Option<u32>,
    pub available: Option<bool>,
}

impl AgentProfile {
    pub fn default_for(id: &str) -> AgentProfile {
        AgentProfile {
            id: id.to_string(),
            name: id.to_string(),
            skills: vec![Skill::Billing, Skill::Technical, Skill::General],
            languages: Language::ALL.to_vec(),
            capacity: DEFAULT_CAPACITY,
            available: true,
            last_assigned_at: None,
            open_tickets: 0,
        }
    }

    /// The profile as a store keeps it: without what the store tracks itself (the tickets
    /// held, and when the last was given), which a saved profile must not overwrite.
    pub fn as_stored(&self) -> AgentProfile {
        AgentProfile {
            open_tickets: 0,
            last_assigned_at: None,
            ..self.clone()
        }
    }

    /// The profile with a supervisor's changes; absent fields stay as they are.
    pub fn with_spec(mut self, spec: AgentSpec) -> Result<AgentProfile> {
        if let Some(name) = spec.name {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 100 {
                return Err(Error::unprocessable(
                    "invalid_agent",
                    "a name is 1 to 100 characters",
                ));
            }
            self.name = name.to_string();
        }
        if let Some(mut skills) = spec.skills {
            skills.sort_by_key(|s| s.as_str());
            skills.dedup();
            self.skills = skills;
        }
        if let Some(mut languages) = spec.languages {
            languages.sort();
            languages.dedup();
            self.languages = languages;
        }
        if let Some(capacity) = spec.capacity {
            if capacity > MAX_CAPACITY {
                return Err(Error::unprocessable(
                    "invalid_agent",
                    format!("capacity is 0 to {MAX_CAPACITY}"),
                ));
            }
            self.capacity = capacity;
        }
        if let Some(available) = spec.available {
            self.available = available;
        }
        Ok(self)
    }

    /// Whether they may take `ticket` now: in, with its skill and its language, and under
    /// capacity.
    pub fn can_take(&self, ticket: &Ticket) -> bool {
        self.open_tickets < self.capacity && self.would_take(ticket)
    }

    /// Whether they would take `ticket` with room for it: in, with its skill and its
    /// language.
    pub fn would_take(&self, ticket: &Ticket) -> bool {
        self.available
            && self.skills.contains(&ticket.skill)
            && self.languages.contains(&ticket.language)
    }
}

/// The agent the rule gives `ticket` to: of those who can take it, the one with the fewest
/// open tickets; a tie goes to whoever was assigned least recently (never first).
pub fn choose<'a>(ticket: &Ticket, agents: &'a [AgentProfile]) -> Option<&'a AgentProfile> {
    agents
        .iter()
        .filter(|a| a.can_take(ticket))
        .min_by_key(|a| (a.open_tickets, a.last_assigned_at, a.id.as_str()))
}

/// An agent id as the routes take it: what a token or a JWT names them by.
pub fn validate_agent_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control()) {
        return Err(Error::unprocessable(
            "invalid_agent",
            "an agent id is 1 to 256 bytes without control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Channel, NewTicket, Priority};
    use super::*;

    fn agent(id: &str, skills: &[Skill], languages: &[Language], capacity: u32) -> AgentProfile {
        AgentProfile {
            skills: skills.to_vec(),
            languages: languages.to_vec(),
            capacity,
            ..AgentProfile::default_for(id)
        }
    }

    fn ticket(text: &str, skill: Skill) -> Ticket {
        Ticket::open(
            NewTicket {
                customer_id: "c".into(),
                channel: Channel::Webchat,
                subject: None,
                description: text.into(),
                priority: Priority::Normal,
                skill,
            },
            super::super::now(),
        )
    }

    fn team() -> Vec<AgentProfile> {
        vec![
            agent("alice", &[Skill::Billing], &[Language::Zh], 5),
            agent("bob", &[Skill::Technical], &[Language::En], 5),
            agent("carol", &[Skill::General], &[Language::Zh, Language::En], 1),
        ]
    }

    #[test]
    fn skill_and_language_decide() {
        let team = team();
        let cases = [
            ("我被多扣款了两次", Skill::Billing, Some("alice")),
            ("The app crashes on start", Skill::Technical, Some("bob")),
            ("你好，在吗", Skill::General, Some("carol")),
            ("Hello there", Skill::General, Some("carol")),
            // Nobody speaks English about billing here.
            ("I was charged twice", Skill::Billing, None),
            ("应用闪退", Skill::Technical, None),
        ];
        for (text, skill, want) in cases {
            let t = ticket(text, skill);
            assert_eq!(choose(&t, &team).map(|a| a.id.as_str()), want, "{text}");
        }
    }

    #[test]
    fn away_or_full_agents_are_passed_over() {
        let mut team = team();
        let t = ticket("The app crashes on start", Skill::Technical);
        team[1].available = false;
        assert!(choose(&t, &team).is_none());
        team[1].available = true;
        team[1].open_tickets = 5;
        assert!(choose(&t, &team).is_none());
        team[2].open_tickets = 1;
        assert!(choose(&ticket("Hello", Skill::General), &team).is_none());
    }

    #[test]
    fn the_least_loaded_then_the_longest_waiting_wins() {
        let mut team = vec![
            AgentProfile::default_for("a"),
            AgentProfile::default_for("b"),
            AgentProfile::default_for("c"),
        ];
        let t = ticket("hello", Skill::General);
        team[0].open_tickets = 2;
        team[1].open_tickets = 1;
        team[2].open_tickets = 1;
        team[1].last_assigned_at = Some(super::super::now());
        team[2].last_assigned_at = Some(super::super::now() - chrono::Duration::minutes(5));
        assert_eq!(choose(&t, &team).unwrap().id, "c");
        team[2].open_tickets = 3;
        assert_eq!(choose(&t, &team).unwrap().id, "b");
        // Never assigned beats assigned a while ago.
        team[0].open_tickets = 1;
        team[0].last_assigned_at = None;
        assert_eq!(choose(&t, &team).unwrap().id, "a");
    }

    #[test]
    fn a_spec_changes_only_what_it_names() {
        let spec: AgentSpec =
            serde_json::from_str(r#"{"skills": ["billing", "billing"], "capacity": 3}"#).unwrap();
        let a = AgentProfile::default_for("alice").with_spec(spec).unwrap();
        assert_eq!(
            (a.skills, a.capacity, a.available),
            (vec![Skill::Billing], 3, true)
        );
        assert_eq!(a.languages, Language::ALL.to_vec());
        let too_many: AgentSpec = serde_json::from_str(r#"{"capacity": 100000}"#).unwrap();
        assert_eq!(
            AgentProfile::default_for("x")
                .with_spec(too_many)
                .unwrap_err()
                .kind
                .status(),
            422
        );
        assert!(serde_json::from_str::<AgentSpec>(r#"{"skills": ["cooking"]}"#).is_err());
        assert!(serde_json::from_str::<AgentSpec>(r#"{"languages": ["fr"]}"#).is_err());
    }
}
