//! Classification and priority rules, read from a TOML file the operator can edit
//! (`shared/rules/default.toml` is the built-in default).

use crate::domain::hours::{parse_duration, HoursSpec};
use crate::domain::sla::PolicySpec;
use crate::domain::{BusinessHours, Priority, Skill, SlaPolicies, Tier};
use crate::text::is_cjk;
use crate::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

/// The rules file as written. Each section left out takes the built-in default's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    handoff: WordList,
    skills: SkillWords,
    priority: PriorityWords,
    #[serde(default)]
    business_hours: Option<HoursSpec>,
    #[serde(default)]
    sla: BTreeMap<Priority, PolicySpec>,
    #[serde(default)]
    assignment: AssignmentRules,
    #[serde(default)]
    tickets: TicketRules,
    /// `[tags]`: a tag for each list of words; a ticket opened from a message with any of
    /// them carries the tag, as a Zendesk trigger or a Chatwoot automation adds one.
    #[serde(default)]
    tags: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Rules {
    handoff: WordList,
    skills: SkillWords,
    priority: PriorityWords,
    hours: BusinessHours,
    sla: SlaPolicies,
    assignment: AssignmentRules,
    close_resolved_after: Option<chrono::Duration>,
    /// Each tag (checked and folded) with its words (lower case), in the tags' order
    /// (a TOML table has none of its own).
    tags: Vec<(String, Vec<String>)>,
}

/// `[tickets]`: how long a resolved ticket waits for the customer before it closes by
/// itself (its survey goes out then), as Zendesk closes solved tickets: a duration in
/// calendar time (`4d`, `12h`), or `off` to leave them resolved until an agent closes them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketRules {
    #[serde(default = "four_days")]
    close_resolved_after: String,
}

fn four_days() -> String {
    "4d".into()
}

impl Default for TicketRules {
    fn default() -> Self {
        TicketRules {
            close_resolved_after: four_days(),
        }
    }
}

/// `[assignment]`: whether the desk gives new tickets to agents itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentRules {
    /// On by default; off, tickets wait for agents to take them (or a supervisor to assign).
    #[serde(default = "yes")]
    pub auto: bool,
}

impl Default for AssignmentRules {
    fn default() -> Self {
        AssignmentRules { auto: true }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
struct WordList {
    #[serde(default)]
    words: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SkillWords {
    #[serde(default)]
    billing: Vec<String>,
    #[serde(default)]
    technical: Vec<String>,
    #[serde(default)]
    general: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct PriorityWords {
    #[serde(default)]
    urgent: Vec<String>,
    #[serde(default)]
    high: Vec<String>,
    #[serde(default)]
    low: Vec<String>,
    #[serde(default = "yes")]
    raise_for_vip: bool,
}

fn yes() -> bool {
    true
}

/// Where a message goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Try the knowledge base; hand off if it is not confident.
    AutoReply,
    /// Straight to an agent.
    Agent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub route: Route,
    pub skill: Skill,
    pub priority: Priority,
    /// The `[tags]` whose words the text has, at most [`crate::domain::tag::MAX_TAGS`].
    pub tags: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        // The built-in file is part of the binary, not outside input, and a test parses it.
        Rules::parse(DEFAULT_RULES).expect("the built-in rules parse")
    }
}

impl Rules {
    pub fn parse(toml_text: &str) -> Result<Rules> {
        let invalid =
            |e: toml::de::Error| Error::bad_request("invalid_rules", format!("rules file: {e}"));
        let mut table: toml::Table = toml::from_str(toml_text).map_err(invalid)?;
        let defaults: toml::Table = toml::from_str(DEFAULT_RULES).map_err(invalid)?;
        for (section, value) in defaults {
            table.entry(section).or_insert(value);
        }
        let file: RulesFile = toml::Value::Table(table).try_into().map_err(invalid)?;
        let hours = match &file.business_hours {
            Some(spec) => BusinessHours::from_spec(spec)?,
            None => BusinessHours::Always,
        };
        let close_resolved_after = match file.tickets.close_resolved_after.trim() {
            "off" => None,
            // Calendar time: the customer's days, not the team's working hours.
            after => Some(parse_duration(after, &BusinessHours::Always).map_err(|e| {
                Error::bad_request(
                    "invalid_rules",
                    format!(
                        "{} ([tickets] close_resolved_after: a duration, or \"off\")",
                        e.message
                    ),
                )
            })?),
        };
        let mut tags = Vec::new();
        for (raw, words) in &file.tags {
            let tag = crate::domain::tag::tag(raw).map_err(|e| {
                Error::bad_request("invalid_rules", format!("[tags] {raw:?}: {}", e.message))
            })?;
            if tags.iter().any(|(t, _): &(String, Vec<String>)| *t == tag) {
                return Err(Error::bad_request(
                    "invalid_rules",
                    format!("[tags] {raw:?}: the tag {tag:?} is named twice"),
                ));
            }
            tags.push((tag, words.clone()));
        }
        tags.sort();
        let mut rules = Rules {
            handoff: file.handoff,
            skills: file.skills,
            priority: file.priority,
            sla: SlaPolicies::from_specs(&file.sla, hours.clone())?,
            hours,
            assignment: file.assignment,
            close_resolved_after,
            tags,
        };
        let tag_words = rules.tags.iter_mut().map(|(_, words)| words);
        for list in [
            &mut rules.handoff.words,
            &mut rules.skills.billing,
            &mut rules.skills.technical,
            &mut rules.skills.general,
            &mut rules.priority.urgent,
            &mut rules.priority.high,
            &mut rules.priority.low,
        ]
        .into_iter()
        .chain(tag_words)
        {
            for w in list.iter_mut() {
                *w = w.to_lowercase();
            }
            list.retain(|w| !w.trim().is_empty());
        }
        Ok(rules)
    }

    /// The team's hours (always open without a `[business_hours]` section).
    pub fn hours(&self) -> &BusinessHours {
        &self.hours
    }

    /// The SLA policies per priority, counted in [`Rules::hours`].
    pub fn sla(&self) -> &SlaPolicies {
        &self.sla
    }

    /// Whether the desk assigns new tickets itself.
    pub fn auto_assign(&self) -> bool {
        self.assignment.auto
    }

    /// How long a resolved ticket stays resolved before it closes by itself; `None`: until
    /// an agent closes it.
    pub fn close_resolved_after(&self) -> Option<chrono::Duration> {
        self.close_resolved_after
    }

    /// The rules the functions run with: the file `HELPDESK_RULES` names, else the built-in.
    pub fn from_env() -> Result<Rules> {
        match std::env::var("HELPDESK_RULES") {
            Ok(path) if !path.is_empty() => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::internal(format!("reading HELPDESK_RULES file {path}: {e}"))
                })?;
                Rules::parse(&text)
            }
            _ => Ok(Rules::default()),
        }
    }

    pub fn classify(&self, text: &str, tier: Tier) -> Classification {
        let text = text.to_lowercase();
        let route = if count(&text, &self.handoff.words) > 0 {
            Route::Agent
        } else {
            Route::AutoReply
        };
        let scores = [
            (Skill::Billing, count(&text, &self.skills.billing)),
            (Skill::Technical, count(&text, &self.skills.technical)),
            (Skill::General, count(&text, &self.skills.general)),
        ];
        let skill = scores
            .iter()
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(_, n)| *n)
            .map(|(s, _)| *s)
            .unwrap_or(Skill::General);
        let mut priority = if count(&text, &self.priority.urgent) > 0 {
            Priority::Urgent
        } else if count(&text, &self.priority.high) > 0 {
            Priority::High
        } else if count(&text, &self.priority.low) > 0 {
            Priority::Low
        } else {
            Priority::Normal
        };
        if tier == Tier::Vip && self.priority.raise_for_vip {
            priority = priority.raised();
        }
        let tags = self
            .tags
            .iter()
            .filter(|(_, words)| count(&text, words) > 0)
            .map(|(tag, _)| tag.clone())
            .take(crate::domain::tag::MAX_TAGS)
            .collect();
        Classification {
            route,
            skill,
            priority,
            tags,
        }
    }
}

/// How many of `words` occur in `text` (both lower-case).
fn count(text: &str, words: &[String]) -> usize {
    words.iter().filter(|w| contains_word(text, w)).count()
}

/// Chinese words match anywhere; others only between non-alphanumeric characters.
fn contains_word(text: &str, word: &str) -> bool {
    if word.chars().any(is_cjk) {
        return text.contains(word);
    }
    let mut from = 0;
    while let Some(pos) = text[from..].find(word) {
        let start = from + pos;
        let end = start + word.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric() || is_cjk(c));
        if boundary(before) && boundary(after) {
            return true;
        }
        from = start + word.chars().next().map_or(1, char::len_utf8);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_tickets_close_after_four_days_unless_the_file_says_otherwise() {
        let days = |d: i64| Some(chrono::Duration::days(d));
        assert_eq!(Rules::default().close_resolved_after(), days(4));
        let r = Rules::parse("[tickets]\nclose_resolved_after = \"12h\"\n").unwrap();
        assert_eq!(r.close_resolved_after(), Some(chrono::Duration::hours(12)));
        // Calendar days, even with business hours set.
        let r = Rules::parse(
            "[business_hours]\ntimezone = \"Asia/Shanghai\"\nopen = \"09:00\"\nclose = \"18:00\"\n\
             [tickets]\nclose_resolved_after = \"2d\"\n",
        )
        .unwrap();
        assert_eq!(r.close_resolved_after(), days(2));
        let r = Rules::parse("[tickets]\nclose_resolved_after = \"off\"\n").unwrap();
        assert_eq!(r.close_resolved_after(), None);
        for bad in ["soon", "0d", "-1h", ""] {
            let e =
                Rules::parse(&format!("[tickets]\nclose_resolved_after = {bad:?}\n")).unwrap_err();
            assert_eq!(e.code, "invalid_rules");
            assert!(e.message.contains("close_resolved_after"), "{}", e.message);
        }
    }

    #[test]
    fn a_tickets_tags_come_from_the_tags_words_in_either_language() {
        let r = Rules::parse(
            "[tags]\nRefund = [\"退款\", \"Money Back\"]\n\"#登录\" = [\"登录不了\", \"log in\"]\n\
             quiet = []\n",
        )
        .unwrap();
        let tags = |text: &str| r.classify(text, Tier::Standard).tags;
        assert_eq!(tags("我要退款，人工"), ["refund"]);
        assert_eq!(tags("I want my MONEY BACK"), ["refund"]);
        assert_eq!(
            tags("退款以后登录不了了"),
            ["refund", "登录"],
            "in the tags' order"
        );
        assert_eq!(
            tags("登录不了，要退款"),
            ["refund", "登录"],
            "whatever the text's"
        );
        assert_eq!(tags("I cannot log in"), ["登录"]);
        assert!(
            tags("the login page is blue").is_empty(),
            "whole English words only"
        );
        assert!(tags("hello").is_empty());
        assert!(Rules::default()
            .classify("我要退款", Tier::Standard)
            .tags
            .is_empty());
        for (bad, names) in [
            ("[tags]\n\"two words\" = [\"x\"]\n", "two words"),
            ("[tags]\nVIP = [\"a\"]\nvip = [\"b\"]\n", "named twice"),
            ("[tags]\nrefund = \"退款\"\n", "tags"),
        ] {
            let e = Rules::parse(bad).unwrap_err();
            assert_eq!(e.code, "invalid_rules", "{bad}");
            assert!(e.message.contains(names), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn default_rules_parse() {
        assert!(Rules::parse(DEFAULT_RULES).is_ok());
    }

    #[test]
    fn billing_and_technical_in_both_languages() {
        let r = Rules::default();
        let c = r.classify("Why was I charged twice this month?", Tier::Standard);
        assert_eq!((c.route, c.skill), (Route::AutoReply, Skill::Billing));
        assert_eq!(
            r.classify("我被多扣款了两次", Tier::Standard).skill,
            Skill::Billing
        );
        assert_eq!(
            r.classify("The app crashes when I upload a photo", Tier::Standard)
                .skill,
            Skill::Technical
        );
        assert_eq!(
            r.classify("上传照片时应用闪退", Tier::Standard).skill,
            Skill::Technical
        );
        assert_eq!(
            r.classify("hello there", Tier::Standard).skill,
            Skill::General
        );
    }

    #[test]
    fn words_match_whole_in_english() {
        let r = Rules::default();
        assert_eq!(
            r.classify("a billion thanks", Tier::Standard).skill,
            Skill::General
        );
        assert_eq!(
            r.classify("my bill is wrong", Tier::Standard).skill,
            Skill::Billing
        );
    }

    #[test]
    fn urgency_and_tier_raise_priority() {
        let r = Rules::default();
        assert_eq!(
            r.classify("紧急！系统打不开", Tier::Standard).priority,
            Priority::Urgent
        );
        assert_eq!(
            r.classify("This is URGENT", Tier::Standard).priority,
            Priority::Urgent
        );
        assert_eq!(
            r.classify("我要投诉", Tier::Standard).priority,
            Priority::High
        );
        assert_eq!(r.classify("我要投诉", Tier::Standard).route, Route::Agent);
        assert_eq!(r.classify("hello", Tier::Vip).priority, Priority::High);
        assert_eq!(
            r.classify("hello", Tier::Standard).priority,
            Priority::Normal
        );
    }

    #[test]
    fn an_operator_file_replaces_the_defaults() {
        let r = Rules::parse(
            "[handoff]\nwords=[\"Manager\"]\n[skills]\nbilling=[\"发票\"]\n[priority]\nurgent=[\"now\"]\n",
        )
        .unwrap();
        let c = r.classify("I want the manager now", Tier::Standard);
        assert_eq!((c.route, c.priority), (Route::Agent, Priority::Urgent));
        assert!(Rules::parse("[handoff\n").is_err());
    }

    #[test]
    fn a_partial_file_takes_the_defaults_for_the_rest() {
        let r = Rules::parse(
            "[business_hours]\ntimezone = \"Asia/Shanghai\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\nopen = \"09:00\"\nclose = \"18:00\"\nholidays = [\"2026-10-01\"]\n\n[sla.urgent]\nfirst_response = \"30m\"\nnext_reply = \"2h\"\nresolution = \"4h\"\nescalate_on_breach = true\n",
        )
        .unwrap();
        // The classification is the built-in one.
        let c = r.classify("我被多扣款了两次，紧急", Tier::Standard);
        assert_eq!((c.skill, c.priority), (Skill::Billing, Priority::Urgent));
        assert_eq!(r.classify("转人工", Tier::Standard).route, Route::Agent);
        assert!(!r.hours().is_open("2026-11-28T02:00:00Z".parse().unwrap()));
        let urgent = r.sla().policy(Priority::Urgent).unwrap();
        assert_eq!(urgent.first_response, Some(chrono::Duration::minutes(30)));
        assert_eq!(urgent.next_reply, Some(chrono::Duration::hours(2)));
        assert!(urgent.escalate_on_breach);
        assert!(r.sla().policy(Priority::High).is_none());
        assert!(r.auto_assign());
        assert!(Rules::default()
            .hours()
            .is_open("2026-11-28T02:00:00Z".parse().unwrap()));
        assert!(!Rules::parse("[assignment]\nauto = false\n")
            .unwrap()
            .auto_assign());
    }

    #[test]
    fn bad_sections_are_clear_errors() {
        for bad in [
            "[sla.urgent]\nfirst_response = \"soon\"\n",
            "[sla.someday]\nfirst_response = \"1h\"\n",
            "[sla.urgent]\nfirst_respons = \"1h\"\n",
            "[business_hours]\ntimezone = \"Nowhere/City\"\nopen = \"09:00\"\nclose = \"18:00\"\n",
            "[routing]\nx = 1\n",
        ] {
            let e = Rules::parse(bad).unwrap_err();
            assert_eq!((e.code, e.kind.status()), ("invalid_rules", 400), "{bad}");
        }
    }
}
