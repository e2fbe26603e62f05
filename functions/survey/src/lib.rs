//! Survey: when a ticket closes, the customer is asked how we did, once, on the ticket's
//! channel, with a signed link; the link's page takes one rating from 1 to 5.
//!
//! [`handle_change`] consumes the ticket change feed (the DynamoDB stream on AWS, the
//! store's change queue locally): the survey when a ticket closes, the supervisor's notice
//! when one is escalated (see [`flow::escalation_notice`]), and what the assignment and the
//! SLAs ask of a change ([`assignment::on_change`]); [`router`] serves the survey page.

use helpdesk_core::assignment;
use helpdesk_core::domain::{self, Message, MessageKind, Ticket};
use helpdesk_core::flow::{self, derived_id};
use helpdesk_core::format;
use helpdesk_core::jobs::TicketChange;
use helpdesk_core::ports::{Queue, Store};
use helpdesk_core::rules::Rules;
use helpdesk_core::survey_token::SurveySigner;
use helpdesk_core::{Error, Result};
use std::sync::Arc;

/// The survey page, served with the survey function's own deps (it lives in the core,
/// [`helpdesk_core::survey_page`], so that the tickets function serves it without this crate).
pub fn router(deps: Arc<Deps>) -> axum::Router {
    helpdesk_core::survey_page::router(Arc::new(helpdesk_core::survey_page::Deps {
        store: deps.store.clone(),
        signer: deps.signer.clone(),
    }))
}

pub struct Deps {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    /// The rules' assignment, business hours and SLA policies, for [`assignment::on_change`].
    pub rules: Arc<Rules>,
    pub signer: SurveySigner,
    /// Where the survey page is reached from outside, e.g. `https://help.example.com`.
    pub public_url: String,
}

/// Handles one ticket change: the supervisor's notice of an escalation, the assignment and
/// SLA steps, the survey of a close, and the ticket's history. Each step does its work once
/// however often the change is delivered. The history line comes last: it is for the
/// agents, and a failing write of it must not hold back what the customer and the team are
/// owed (on AWS a failed change holds its stream shard; locally it ends as a dead letter).
pub async fn handle_change(deps: &Deps, change: TicketChange) -> Result<()> {
    flow::escalation_notice(deps.queue.as_ref(), &change).await?;
    assignment::on_change(
        deps.store.as_ref(),
        deps.queue.as_ref(),
        &deps.rules,
        &change,
    )
    .await?;
    survey_if_due(deps, &change).await?;
    flow::record_activity(deps.store.as_ref(), &change).await
}

/// The change that closes a ticket yields one survey message however often it is
/// delivered: the message's id is derived from the ticket's, and dispatch sends a message
/// only once.
async fn survey_if_due(deps: &Deps, change: &TicketChange) -> Result<()> {
    if !Ticket::survey_due(change.old.as_ref(), &change.new) {
        return Ok(());
    }
    let ticket = &change.new;
    let store = deps.store.as_ref();
    // A close seen after its customer was merged away surveys the customer that stays.
    let customer = flow::customer_for_job(store, &ticket.customer_id)
        .await?
        .ok_or_else(|| Error::internal(format!("ticket {} has no customer", ticket.id)))?;
    let now = domain::now();
    let link = format!(
        "{}/surveys/{}",
        deps.public_url.trim_end_matches('/'),
        deps.signer.sign(&ticket.id, now)
    );
    let locale = format::locale_for(customer.locale.as_deref(), &ticket.description);
    let mut message = Message::outbound(
        &customer.id,
        ticket.channel,
        MessageKind::Survey,
        format::survey(locale, &link),
        Some(ticket.id.clone()),
    );
    message.id = derived_id(&ticket.id, "survey");
    // Channels with buttons rate in place; the link stays for the others and for comments.
    message.link = Some(link);
    // Marked before it goes out, so that a customer quick to answer finds the survey sent
    // (a rating is taken only then); a redelivery marks nothing and sends it at most once.
    flow::update_ticket(store, &ticket.id, |t| Ok(t.mark_survey_sent(now))).await?;
    flow::send_to_customer(store, deps.queue.as_ref(), &message).await?;
    tracing::info!(ticket_id = %ticket.id, "survey sent");
    Ok(())
}
