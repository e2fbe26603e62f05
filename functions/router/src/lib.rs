//! Router: the first look at a customer's message. It finds the customer, writes the
//! message into their conversation, and decides where it goes: onto the customer's open
//! ticket, straight to an agent, or to auto-reply to try the knowledge base first.

use helpdesk_core::domain::{
    self, ChannelIdentity, Customer, Direction, InboundMessage, Message, MessageKind,
};
use helpdesk_core::flow;
use helpdesk_core::flow::MergeProgress;
use helpdesk_core::jobs::{self, InboundJob, MergeJob, OutboundMessage};
use helpdesk_core::ports::{Queue, Store};
use helpdesk_core::rules::{Route, Rules};
use helpdesk_core::{format, survey_token};
use helpdesk_core::{Error, ErrorKind, Result};
use std::sync::Arc;

pub use helpdesk_core::jobs::AutoReplyJob;

pub struct Deps {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub rules: Rules,
}

/// How many steps of a customer merge one job runs before it queues the next round: a
/// round stays well within the function's time.
pub const MERGE_STEPS_PER_ROUND: usize = 40;

/// Handles one job of the inbound queue: a customer's message, or a round of a merge.
pub async fn handle_job(deps: &Deps, job: InboundJob) -> Result<()> {
    match job {
        InboundJob::Message(message) => handle(deps, *message).await,
        InboundJob::Merge(job) => merge_round(deps, job).await,
    }
}

/// Runs a round of a customer merge, and queues the next when it is not finished. A round
/// cut short is run again from where the data stands; a finished merge run again changes
/// nothing.
async fn merge_round(deps: &Deps, job: MergeJob) -> Result<()> {
    match flow::run_merge(deps.store.as_ref(), &job.merge, MERGE_STEPS_PER_ROUND).await? {
        MergeProgress::Done(_) => Ok(()),
        MergeProgress::Unfinished => {
            tracing::info!(merge_id = %job.merge.id, round = job.round, "merge goes on");
            let next = InboundJob::Merge(MergeJob {
                merge: job.merge,
                round: job.round + 1,
                cause: job.cause,
            });
            jobs::send(deps.queue.as_ref(), &next).await
        }
    }
}

/// Handles one inbound message. Safe to repeat: a redelivered message that already has a
/// ticket, or was already passed on, changes nothing. A message that names a customer
/// merged away goes to the customer that stays; one whose customer was merged away while
/// it was handled follows the merge at the end ([`flow::follow_merge`]).
pub async fn handle(deps: &Deps, inbound: InboundMessage) -> Result<()> {
    let store = deps.store.as_ref();
    let customer = match &inbound.customer_id {
        Some(id) => flow::customer_for_job(store, id)
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
    let id = inbound.id.clone();
    handle_for(deps, inbound, &customer).await?;
    flow::follow_merge(store, deps.queue.as_ref(), &customer.id, &id).await
}

/// Handles an inbound message of `customer`.
async fn handle_for(deps: &Deps, inbound: InboundMessage, customer: &Customer) -> Result<()> {
    let store = deps.store.as_ref();
    let mut entry = Message::inbound(&inbound, &customer.id);
    if let Some(callback_id) = inbound.button.as_ref().and_then(|b| b.callback_id.clone()) {
        acknowledge(deps, &inbound, &callback_id).await?;
    }
    if let Some((ticket_id, rating)) = inbound
        .button
        .as_ref()
        .and_then(|b| survey_token::parse_button(&b.data))
    {
        entry.text = format!("{rating}/5");
        store.append_message(&entry).await?;
        return record_rating(store, &customer.id, &entry.id, ticket_id, rating).await;
    }
    if let Some(original) = &inbound.edit_of {
        let original = store
            .message_by_provider_id(inbound.channel, Direction::Inbound, original)
            .await?
            .filter(|m| m.customer_id == customer.id);
        entry.edit_of = original.as_ref().map(|m| m.id.clone());
        entry.ticket_id = original.and_then(|m| m.ticket_id);
    }
    let is_new = store.append_message(&entry).await?;
    if matches!(entry.kind, MessageKind::Edit | MessageKind::Unsupported) {
        // Kept for the agent, on the ticket it belongs to, but not a question to answer.
        if entry.ticket_id.is_none() {
            if let Some(ticket) = store.active_ticket_for(&customer.id).await? {
                store.set_message_ticket(&entry.id, &ticket.id).await?;
            }
        }
        return Ok(());
    }
    if !is_new {
        // A redelivery: what was stored the first time decides, not this copy.
        let stored = store
            .get_message(&entry.id)
            .await?
            .ok_or_else(|| Error::internal(format!("message {} went away", entry.id)))?;
        if stored.ticket_id.is_some() {
            tracing::info!(message_id = %entry.id, "redelivered message already on a ticket");
            return flow::resume(store, deps.queue.as_ref(), customer, &stored).await;
        }
        entry = stored;
        // A message for auto-reply may have been passed on by the first attempt, and may be
        // answered already: auto-reply decides its outcome, once, and this copy only passes
        // it on again. Deciding here too (a ticket opened since) could give it two outcomes.
        // One whose outcome auto-reply claimed goes back there even if the rules would now
        // route it elsewhere (a merge may have made the customer a VIP).
        let class = deps.rules.classify(&entry.text, customer.tier);
        if class.route == Route::AutoReply
            || flow::claimed_outcome(store, &entry.id).await?.is_some()
        {
            return pass_to_auto_reply(deps, &entry, &customer.id, class).await;
        }
    }
    if let Some(ticket) = store.active_ticket_for(&customer.id).await? {
        if flow::settle(store, deps.queue.as_ref(), customer, &ticket, &entry)
            .await?
            .is_some()
        {
            return Ok(());
        }
        // It ended since it was read: the message goes on as the customer's first.
    }
    let class = deps.rules.classify(&entry.text, customer.tier);
    match class.route {
        Route::Agent => {
            let opening = flow::Opening {
                skill: class.skill,
                priority: class.priority,
                tags: class.tags,
                suggestions: Vec::new(),
            };
            flow::open_ticket(store, deps.queue.as_ref(), customer, &entry, None, opening).await?;
        }
        Route::AutoReply => pass_to_auto_reply(deps, &entry, &customer.id, class).await?,
    }
    Ok(())
}

async fn pass_to_auto_reply(
    deps: &Deps,
    entry: &Message,
    customer_id: &str,
    class: helpdesk_core::rules::Classification,
) -> Result<()> {
    let job = AutoReplyJob {
        message_id: entry.id.clone(),
        customer_id: customer_id.to_string(),
        skill: class.skill,
        priority: class.priority,
        tags: class.tags,
    };
    jobs::send(deps.queue.as_ref(), &job).await
}

/// Stops the customer's app waiting on a button press, with a word of thanks.
async fn acknowledge(deps: &Deps, inbound: &InboundMessage, callback_id: &str) -> Result<()> {
    let locale = format::locale_for(inbound.locale.as_deref(), "");
    let job = OutboundMessage::Acknowledge {
        channel: inbound.channel,
        callback_id: callback_id.to_string(),
        text: format::button_thanks(locale).to_string(),
    };
    jobs::send(deps.queue.as_ref(), &job).await
}

/// A rating given with a survey button, whose signature intake checked. The ticket's rule
/// ([`domain::Ticket::rate`]) decides whether it is taken: only from the ticket's own
/// customer, once, after the survey went out. A refusal, a second press or a redelivery
/// changes nothing.
async fn record_rating(
    store: &dyn Store,
    customer_id: &str,
    entry_id: &str,
    ticket_id: &str,
    rating: i64,
) -> Result<()> {
    if store.get_ticket(ticket_id).await?.is_none() {
        tracing::warn!(ticket_id, "survey answer for an unknown ticket");
        return Ok(());
    }
    let outcome = flow::update_ticket(store, ticket_id, |t| {
        t.rate(Some(customer_id), rating, None, domain::now())?;
        Ok(true)
    })
    .await;
    match outcome {
        Ok(_) => tracing::info!(ticket_id, rating, "survey answered with a button"),
        // A second press, or a redelivery: the first answer stands.
        Err(e) if e.code == "already_answered" => {}
        // Not this customer's survey, not one that was sent, or a rating outside 1-5:
        // nothing to retry.
        Err(e) if matches!(e.kind, ErrorKind::Forbidden | ErrorKind::Unprocessable) => {
            tracing::warn!(ticket_id, customer_id, error = %e, "survey answer refused");
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    store.set_message_ticket(entry_id, ticket_id).await
}
