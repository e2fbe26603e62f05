//! Messages in and out, and the conversation entry every one of them becomes.

use super::Channel;
use chrono::{DateTime, Utc};
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
    /// Agents' notes: kept with the ticket, never sent.
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Text,
    AutoReply,
    AgentReply,
    Handoff,
    Survey,
    Note,
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
}

impl Message {
    /// The conversation entry of an accepted inbound message.
    pub fn inbound(msg: &InboundMessage, customer_id: &str) -> Self {
        Message {
            id: msg.id.clone(),
            customer_id: customer_id.to_string(),
            channel: msg.channel,
            direction: Direction::Inbound,
            kind: MessageKind::Text,
            text: msg.text.clone(),
            created_at: msg.received_at,
            ticket_id: None,
            status: None,
            author: None,
            provider_message_id: msg.provider_message_id.clone(),
            error: None,
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
