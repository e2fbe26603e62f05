//! Steps of the flow that more than one function takes: opening a ticket for a customer's
//! message, queueing a message to a customer, and changing a ticket safely while others may
//! change it too. They speak only to ports; each is safe to repeat, because queues
//! redeliver.

use crate::domain::{
    self, Customer, Message, MessageKind, NewTicket, OutboundMessage, Priority, Skill, Suggestion,
    Ticket,
};
use crate::ports::{send_json, Queue, QueueName, Store};
use crate::{format, Error, ErrorKind, Result};

/// An id derived from another one, the same every time: a redelivered message produces the
/// same reply id, and the store takes it once.
pub fn derived_id(parent: &str, purpose: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{parent}/{purpose}").as_bytes(),
    )
    .to_string()
}

/// Records `message` in the conversation and asks dispatch to deliver it. Repeating it is
/// harmless: dispatch delivers a message only while it is still queued.
pub async fn send_to_customer(
    store: &dyn Store,
    queue: &dyn Queue,
    message: &Message,
) -> Result<()> {
    store.append_message(message).await?;
    send_json(
        queue,
        QueueName::Outbound,
        &OutboundMessage::Customer {
            message_id: message.id.clone(),
        },
        None,
    )
    .await
}

/// Loads a ticket, lets `change` modify it, and saves it if `change` says it changed,
/// trying again from a fresh copy when someone else saved in between.
pub async fn update_ticket<F>(store: &dyn Store, id: &str, mut change: F) -> Result<(Ticket, bool)>
where
    F: FnMut(&mut Ticket) -> Result<bool> + Send,
{
    for _ in 0..5 {
        let mut ticket = store
            .get_ticket(id)
            .await?
            .ok_or_else(|| Error::not_found("ticket", id))?;
        let expected = ticket.version;
        if !change(&mut ticket)? {
            return Ok((ticket, false));
        }
        match store.update_ticket(&ticket, expected).await {
            Ok(()) => return Ok((ticket, true)),
            Err(e) if e.kind == ErrorKind::Conflict => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::conflict(
        "version_conflict",
        "the ticket kept changing; please try again",
    ))
}

/// Puts a customer's message on a ticket: the customer's active ticket if there is one,
/// else a new ticket with the given skill and priority, announced to the customer with a
/// hand-off message.
pub async fn open_ticket(
    store: &dyn Store,
    queue: &dyn Queue,
    customer: &Customer,
    message: &Message,
    skill: Skill,
    priority: Priority,
    suggestions: Vec<Suggestion>,
) -> Result<Ticket> {
    if let Some(active) = store.active_ticket_for(&customer.id).await? {
        return join_ticket(store, &active, message).await;
    }
    let now = domain::now();
    let mut ticket = Ticket::open(
        NewTicket {
            customer_id: customer.id.clone(),
            channel: message.channel,
            subject: None,
            description: message.text.clone(),
            priority,
            skill,
        },
        now,
    );
    ticket.suggestions = suggestions;
    store.create_ticket(&ticket).await?;
    store.set_message_ticket(&message.id, &ticket.id).await?;
    let locale = format::locale_for(customer.locale.as_deref(), &message.text);
    let mut handoff = Message::outbound(
        &customer.id,
        message.channel,
        MessageKind::Handoff,
        format::handoff(locale, &ticket.id),
        Some(ticket.id.clone()),
    );
    handoff.id = derived_id(&message.id, "handoff");
    send_to_customer(store, queue, &handoff).await?;
    tracing::info!(ticket_id = %ticket.id, skill = skill.as_str(), priority = priority.as_str(), "ticket opened");
    Ok(ticket)
}

/// Adds a customer's follow-up to their active ticket.
pub async fn join_ticket(store: &dyn Store, ticket: &Ticket, message: &Message) -> Result<Ticket> {
    store.set_message_ticket(&message.id, &ticket.id).await?;
    let (ticket, _) = update_ticket(store, &ticket.id, |t| {
        t.customer_replied(domain::now());
        Ok(true)
    })
    .await?;
    tracing::info!(ticket_id = %ticket.id, message_id = %message.id, "message joined its ticket");
    Ok(ticket)
}
