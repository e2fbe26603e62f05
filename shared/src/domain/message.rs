//! Messages in and out, and the conversation entry every one of them becomes.

use super::Channel;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// A customer's message as intake accepted it, before anyone knows who the customer is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// Our id for the message; the conversation entry gets the same one.
    pub id: String,
    pub channel: Channel,
    /// The customer's id on the channel: a webchat session's customer, a WhatsApp number or
    /// business-scoped user id, a Telegram user id.
    pub external_id: String,
    /// Set when intake already knows the customer (webchat sessions do).
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// The provider's id for the message, what duplicates are recognised by.
    #[serde(default)]
    pub provider_message_id: Option<String>,
    pub text: String,
    #[serde(default)]
    pub locale: Option<String>,
    pub received_at: DateTime<Utc>,
    /// What the customer sent: text, media, an edit, a button press, or something the desk
    /// does not understand (kept all the same).
    #[serde(default)]
    pub kind: MessageKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// For an edit: the provider's id of the message it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<ButtonPress>,
}

impl InboundMessage {
    /// A plain text message; the channel parsers fill in the rest where there is more.
    pub fn text(
        channel: Channel,
        external_id: String,
        text: String,
        received_at: DateTime<Utc>,
    ) -> Self {
        InboundMessage {
            id: super::new_id(),
            channel,
            external_id,
            customer_id: None,
            display_name: None,
            provider_message_id: None,
            text,
            locale: None,
            received_at,
            kind: MessageKind::Text,
            attachment: None,
            edit_of: None,
            button: None,
        }
    }
}

/// Media, a location or a contact card sent by a customer. The file stays with the
/// provider; `media_id` is what fetches it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// `image`, `audio`, `voice`, `video`, `document`, `sticker`, `location`, `contacts`,
    /// or the provider's own name for a type the desk does not know.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

/// A button the customer pressed: its payload, and, on Telegram, the callback query that
/// must be answered so the customer's app stops waiting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ButtonPress {
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
    /// Agents' notes: kept with the ticket, never sent.
    Internal,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    #[default]
    Text,
    /// A photo, voice note, video, file, sticker, location or contact card; see the
    /// entry's `attachment`.
    Media,
    /// A customer's edit of an earlier message (`edit_of`); it opens no ticket.
    Edit,
    /// A button the customer pressed (a reply button, a list choice, a survey rating).
    Button,
    /// A type the desk does not understand, kept so an agent can see it; it opens no ticket.
    Unsupported,
    AutoReply,
    AgentReply,
    Handoff,
    Survey,
    Note,
    /// A change of the ticket (status, assignee, tags…), kept for agents and never sent;
    /// see the entry's `activity`.
    Activity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryStatus {
    /// Whether a receipt saying `to` should replace this status. Providers deliver
    /// receipts out of order and more than once, so a status only moves forward: a late
    /// "delivered" never hides a "read". A failure is always news.
    pub fn may_become(self, to: DeliveryStatus) -> bool {
        fn rank(s: DeliveryStatus) -> u8 {
            match s {
                DeliveryStatus::Queued => 0,
                DeliveryStatus::Sent => 1,
                DeliveryStatus::Delivered => 2,
                DeliveryStatus::Read => 3,
                DeliveryStatus::Failed => 4,
            }
        }
        to == DeliveryStatus::Failed && self != DeliveryStatus::Failed || rank(to) > rank(self)
    }
}

/// One entry of a customer's conversation, in either direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub customer_id: String,
    pub channel: Channel,
    pub direction: Direction,
    pub kind: MessageKind,
    pub text: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub ticket_id: Option<String>,
    /// Delivery state of an outbound message.
    #[serde(default)]
    pub status: Option<DeliveryStatus>,
    /// The agent who wrote a reply or a note.
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub provider_message_id: Option<String>,
    /// Why a delivery failed, as the provider said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// For an edit: our id of the entry it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_of: Option<String>,
    /// A link the message offers (a survey's page), which channels with buttons show as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// For an `activity` entry: what the change did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activity: Vec<super::activity::Activity>,
}

/// How long after its time a message may still be stored: it is made, then written, and
/// the store's client retries a write for a few seconds. See [`Message::late_write_floor`].
pub const LATE_WRITE_SECS: i64 = 30;

impl Message {
    /// When the message sits in its conversation: its time to the millisecond, written the
    /// same length every time, so that the times sort as text. Both stores order a
    /// conversation by it, so that ids that are not time-ordered (derived replies) and
    /// entries written after the fact (the ticket's history) sort by when they happened;
    /// within one millisecond, DynamoDB by id ([`Message::order_key`]) and SQLite as
    /// written.
    pub fn order_time(&self) -> String {
        self.created_at.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// [`Message::order_time`], then the id: a key that sorts a conversation as text.
    pub fn order_key(&self) -> String {
        format!("{}#{}", self.order_time(), self.id)
    }

    /// Where a read of the conversation after this message starts, as an order key: this
    /// message's time less [`LATE_WRITE_SECS`]. A message is stored a little after its
    /// time, and two writers race (an auto-reply and an agent's reply), so one ordered just
    /// before this message may have been stored after this one was read; a reader who
    /// holds this message looks back that far and skips the ids it already holds.
    pub fn late_write_floor(&self) -> String {
        (self.created_at - chrono::Duration::seconds(LATE_WRITE_SECS))
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Records what a channel said of the delivery. The status only moves forward (see
    /// [`DeliveryStatus::may_become`]); the provider's id is kept whenever it comes.
    pub fn record_delivery(
        &mut self,
        status: DeliveryStatus,
        provider_message_id: Option<&str>,
        error: Option<&str>,
    ) {
        if let Some(p) = provider_message_id {
            self.provider_message_id = Some(p.to_string());
        }
        if self.status.is_none_or(|current| current.may_become(status)) {
            self.status = Some(status);
            self.error = error.map(str::to_string);
        }
    }

    /// The conversation entry of an accepted inbound message.
    pub fn inbound(msg: &InboundMessage, customer_id: &str) -> Self {
        Message {
            id: msg.id.clone(),
            customer_id: customer_id.to_string(),
            channel: msg.channel,
            direction: Direction::Inbound,
            kind: msg.kind,
            text: msg.text.clone(),
            created_at: msg.received_at,
            ticket_id: None,
            status: None,
            author: None,
            provider_message_id: msg.provider_message_id.clone(),
            error: None,
            attachment: msg.attachment.clone(),
            edit_of: None,
            link: None,
            activity: Vec::new(),
        }
    }

    /// A message to the customer, queued for dispatch.
    pub fn outbound(
        customer_id: &str,
        channel: Channel,
        kind: MessageKind,
        text: String,
        ticket_id: Option<String>,
    ) -> Self {
        Message {
            id: super::new_id(),
            customer_id: customer_id.to_string(),
            channel,
            direction: Direction::Outbound,
            kind,
            text,
            created_at: super::now(),
            ticket_id,
            status: Some(DeliveryStatus::Queued),
            author: None,
            provider_message_id: None,
            error: None,
            attachment: None,
            edit_of: None,
            link: None,
            activity: Vec::new(),
        }
    }
}

/// What dispatch is asked to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutboundMessage {
    /// A conversation entry to send to its customer on its channel.
    Customer { message_id: String },
    /// A notice to the supervisor's webhook.
    Supervisor(SupervisorNotice),
    /// A notice to the agents' webhook: a ticket was given to one of them.
    Agent(AgentNotice),
    /// The answer to a button press the channel waits for (Telegram's answerCallbackQuery),
    /// shown to the customer as a short notice.
    Acknowledge {
        channel: Channel,
        callback_id: String,
        text: String,
    },
}

/// The JSON posted to `SUPERVISOR_WEBHOOK_URL` when a ticket is escalated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupervisorNotice {
    pub event: String,
    pub ticket_id: String,
    pub subject: String,
    pub priority: super::Priority,
    pub skill: super::Skill,
    pub reason: String,
    pub escalated_by: String,
    pub escalated_at: DateTime<Utc>,
    pub customer_id: String,
    pub channel: Channel,
}

impl SupervisorNotice {
    /// The notice of a ticket's escalation, as the ticket records it.
    pub fn escalation(ticket: &super::Ticket) -> SupervisorNotice {
        SupervisorNotice {
            event: "ticket.escalated".into(),
            ticket_id: ticket.id.clone(),
            subject: ticket.subject.clone(),
            priority: ticket.priority,
            skill: ticket.skill,
            reason: ticket.escalation_reason.clone().unwrap_or_default(),
            escalated_by: ticket
                .escalated_by
                .clone()
                .or_else(|| ticket.assignee.clone())
                .unwrap_or_default(),
            escalated_at: ticket.escalated_at.unwrap_or(ticket.updated_at),
            customer_id: ticket.customer_id.clone(),
            channel: ticket.channel,
        }
    }

    /// The notice of a missed SLA target: `reason` is `sla_breach:first_response`,
    /// `sla_breach:next_reply` or `sla_breach:resolution`, and `escalated_at` the time the
    /// desk saw it.
    pub fn sla_breach(ticket: &super::Ticket, breach: &super::Breach) -> SupervisorNotice {
        SupervisorNotice {
            event: "ticket.sla_breached".into(),
            reason: breach.target.breach_reason(),
            escalated_by: String::new(),
            escalated_at: breach.at,
            ..SupervisorNotice::escalation(ticket)
        }
    }

    /// One id per escalation of a ticket, and per breach (a target is breached once, a
    /// next reply once per wait: its breach by when the desk recorded it): however often
    /// its notice is queued, dispatch posts it once.
    pub fn id(&self) -> String {
        if self.event == "ticket.sla_breached" {
            if self.reason == super::SlaTarget::NextReply.breach_reason() {
                let wait = format!(
                    "{}/{}",
                    self.ticket_id,
                    self.escalated_at.timestamp_millis()
                );
                return super::derived_id(&wait, &self.reason);
            }
            return super::derived_id(&self.ticket_id, &self.reason);
        }
        super::derived_id(
            &format!(
                "{}/{}",
                self.ticket_id,
                self.escalated_at.timestamp_millis()
            ),
            "escalation",
        )
    }
}

/// The JSON posted to `AGENT_WEBHOOK_URL` when a ticket is given to an agent
/// (`ticket.assigned`), or comes back to them because its customer wrote again after it was
/// resolved (`ticket.reopened`), for teams that forward it to Slack, WeCom or DingTalk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentNotice {
    pub event: String,
    pub agent: String,
    pub ticket_id: String,
    pub subject: String,
    pub priority: super::Priority,
    pub skill: super::Skill,
    pub language: super::Language,
    pub reason: super::AssignmentReason,
    pub assigned_by: Option<String>,
    pub assigned_at: DateTime<Utc>,
    pub customer_id: String,
    pub channel: Channel,
    /// For `ticket.reopened`: the customer's message that reopened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopened_by: Option<String>,
}

impl AgentNotice {
    /// The notice of the ticket's current assignment, if it has one.
    pub fn assignment(ticket: &super::Ticket) -> Option<AgentNotice> {
        Some(AgentNotice {
            event: "ticket.assigned".into(),
            agent: ticket.assignee.clone()?,
            ticket_id: ticket.id.clone(),
            subject: ticket.subject.clone(),
            priority: ticket.priority,
            skill: ticket.skill,
            language: ticket.language,
            reason: ticket.assignment.as_ref()?.reason,
            assigned_by: ticket.assignment.as_ref()?.by.clone(),
            assigned_at: ticket.assigned_at?,
            customer_id: ticket.customer_id.clone(),
            channel: ticket.channel,
            reopened_by: None,
        })
    }

    /// The notice to the ticket's agent that its customer reopened it with `message_id`
    /// ([`super::Ticket::reopen_for_customer`]), if it still has its agent.
    pub fn reopened(ticket: &super::Ticket, message_id: &str) -> Option<AgentNotice> {
        Some(AgentNotice {
            event: "ticket.reopened".into(),
            reopened_by: Some(message_id.to_string()),
            ..AgentNotice::assignment(ticket)?
        })
    }

    /// One id per assignment, and per reopening message.
    pub fn id(&self) -> String {
        if let Some(message_id) = &self.reopened_by {
            return super::derived_id(&format!("{}/{message_id}", self.ticket_id), "reopened");
        }
        super::derived_id(
            &format!(
                "{}/{}/{}",
                self.ticket_id,
                self.agent,
                self.assigned_at.timestamp_millis()
            ),
            "assignment",
        )
    }
}
