//! The desk's vocabulary: channels, messages, customers and tickets. Plain data and the rules
//! that change it; nothing here touches storage or the network.

pub mod activity;
pub mod agent;
pub mod canned;
mod customer;
pub mod hours;
mod message;
pub mod sla;
pub mod tag;
mod ticket;

pub use agent::{AgentProfile, AgentSpec, AssignmentReason, Language};
pub use canned::CannedResponse;
pub use customer::{ChannelIdentity, Customer, MergeKind, MergePlan, Tier};
pub use hours::BusinessHours;
pub use message::{
    AgentNotice, Attachment, ButtonPress, DeliveryStatus, Direction, InboundMessage, Message,
    MessageKind, OutboundMessage, SupervisorNotice, LATE_WRITE_SECS,
};
pub use sla::{Breach, Sla, SlaPolicies, SlaTarget, WaitTally};
pub use ticket::{parse_ticket_ref, ticket_ref, MAX_KEY_BYTES, REF_LEN};
pub use ticket::{
    Assignment, NewTicket, Priority, Skill, Suggestion, Survey, Ticket, TicketFilter, TicketPatch,
    TicketStatus,
};

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

/// The time in whole milliseconds, as stored and compared everywhere.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// A new time-ordered id (UUID v7): sorting ids sorts by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// An id derived from another one, the same every time: a redelivered job produces the same
/// reply, ticket or notice id, and the store takes it once.
pub fn derived_id(parent: &str, purpose: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{parent}/{purpose}").as_bytes(),
    )
    .to_string()
}

/// Where a customer writes from and where replies go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Webchat,
    Whatsapp,
    Telegram,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webchat => "webchat",
            Channel::Whatsapp => "whatsapp",
            Channel::Telegram => "telegram",
        }
    }
}

impl std::str::FromStr for Channel {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "webchat" => Ok(Channel::Webchat),
            "whatsapp" => Ok(Channel::Whatsapp),
            "telegram" => Ok(Channel::Telegram),
            other => Err(crate::Error::bad_request(
                "bad_request",
                format!("unknown channel {other:?}: use webchat, whatsapp or telegram"),
            )),
        }
    }
}

/// Whether `c` may be in a [`word`]: anything but a space, a control character, an
/// invisible format character (a zero-width space, a direction mark or override, a soft
/// hyphen, a byte-order mark: two words that look the same would differ by one), `/` and
/// the other ASCII punctuation (`-` and `_` excepted). So a word of any script is one, its
/// combining marks too (`नमस्ते`, `ค่ะ`, a decomposed `café`).
pub fn is_word_char(c: char) -> bool {
    let invisible = matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{FEFF}');
    !(invisible
        || c.is_whitespace()
        || c.is_control()
        || (c.is_ascii_punctuation() && c != '-' && c != '_'))
}

/// A name of one word that people type, checked and folded, as canned responses' short
/// codes and tickets' tags are: 1 to `max_chars` characters that are [`is_word_char`], with
/// full-width ASCII (what a Chinese input method types in its full-width mode: `ＶＩＰ`,
/// `２０２６`) read as ASCII, and ASCII letters folded to lower case (`Refund`, `refund` and
/// `ｒｅｆｕｎｄ` are one name). None when `raw` is not one. The console mirrors the fold
/// (`fold` in `web/console/canned.js`).
pub fn word(raw: &str, max_chars: usize) -> Option<String> {
    let half: String = raw.chars().map(half_width).collect();
    let count = half.chars().count();
    ((1..=max_chars).contains(&count) && half.chars().all(is_word_char))
        .then(|| half.to_ascii_lowercase())
}

/// A full-width ASCII form (U+FF01 to U+FF5E) as the ASCII character it stands for; any
/// other character as it is.
fn half_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// `raw` quoted for an error message, cut to 40 characters (with "…" when cut).
pub(crate) fn quoted(raw: &str) -> String {
    let shown = crate::text::truncate_chars(raw, 40);
    let more = if shown.len() < raw.len() { "…" } else { "" };
    format!("{shown:?}{more}")
}

/// Parses a snake_case enum value the way serde spells it, with an error naming the field.
pub fn parse_enum<T: serde::de::DeserializeOwned>(field: &str, value: &str) -> crate::Result<T> {
    serde_json::from_value(serde_json::Value::String(value.to_string())).map_err(|_| {
        crate::Error::bad_request("bad_request", format!("{value:?} is not a valid {field}"))
    })
}
