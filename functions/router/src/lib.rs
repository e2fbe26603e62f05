//! Router: the first look at a customer's message. It finds the customer, writes the
//! message into their conversation, and decides where it goes: onto the customer's open
//! ticket, straight to an agent, or to auto-reply to try the knowledge base first.

use helpdesk_core::domain::{ChannelIdentity, InboundMessage, Message, Priority, Skill};
use helpdesk_core::flow;
use helpdesk_core::ports::{send_json, Queue, QueueName, Store};
use helpdesk_core::rules::{Route, Rules};
use helpdesk_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub struct Deps {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub rules: Rules,
}

/// What auto-reply is asked to do: answer this message, or hand it to an agent with this
/// skill and priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoReplyJob {
    pub message_id: String,
    pub customer_id: String,
    pub skill: Skill,
    pub priority: Priority,
}

/// Handles one inbound message. Safe to repeat: a redelivered message that already has a
/// ticket, or was already passed on, changes nothing.
pub async fn handle(deps: &Deps, inbound: InboundMessage) -> Result<()> {
    let store = deps.store.as_ref();
    let customer = match &inbound.customer_id {
        Some(id) => store
            .get_customer(id)
            .await?
            .ok_or_else(|| Error::internal(format!("message for unknown customer {id}")))?,
        None => {
            let identity = ChannelIdentity {
                channel: inbound.channel,
                external_id: inbound.external_id.clone(),
            };
            store
                .resolve_customer(
                    &identity,
                    inbound.display_name.as_deref(),
                    inbound.locale.as_deref(),
                )
                .await?
        }
    };
    let entry = Message::inbound(&inbound, &customer.id);
    if !store.append_message(&entry).await? {
        let stored = store.get_message(&entry.id).await?;
        if stored.is_some_and(|m| m.ticket_id.is_some()) {
            tracing::info!(message_id = %entry.id, "redelivered message already handled");
            return Ok(());
        }
    }
    if let Some(ticket) = store.active_ticket_for(&customer.id).await? {
        flow::join_ticket(store, &ticket, &entry).await?;
        return Ok(());
    }
    let class = deps.rules.classify(&entry.text, customer.tier);
    match class.route {
        Route::Agent => {
            flow::open_ticket(
                store,
                deps.queue.as_ref(),
                &customer,
                &entry,
                class.skill,
                class.priority,
            )
            .await?;
        }
        Route::AutoReply => {
            let job = AutoReplyJob {
                message_id: entry.id.clone(),
                customer_id: customer.id.clone(),
                skill: class.skill,
                priority: class.priority,
            };
            send_json(
                deps.queue.as_ref(),
                QueueName::AutoReply,
                &job,
                Some(&customer.id),
            )
            .await?;
        }
    }
    Ok(())
}
