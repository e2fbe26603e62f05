//! Auto-reply: answers from the knowledge base when it is confident, and hands the
//! message to an agent when it is not. A wrong answer costs more than a hand-off, so the
//! threshold errs on the side of a person.

use helpdesk_core::domain::{Customer, Message, Suggestion};
use helpdesk_core::flow::{self, derived_id, Outcome};
use helpdesk_core::format;
pub use helpdesk_core::jobs::AutoReplyJob;
use helpdesk_core::knowledge::Decision;
use helpdesk_core::ports::{KnowledgeIndex, Queue, Store};
use helpdesk_core::{Error, Result};
use std::sync::Arc;

/// How many hits are considered: the best, and two alternatives for "did you mean".
const TOP: usize = 3;

pub struct Deps {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub knowledge: Arc<dyn KnowledgeIndex>,
    /// Confidence at or above which the desk answers on its own.
    pub threshold: f64,
}

/// Handles one auto-reply job. Two runs of one job may overlap (SQS delivers twice, a
/// local lease runs out): the message still gets one outcome, since each run claims one
/// before acting and carries out whichever was claimed first ([`flow::claim_outcome`]).
pub async fn handle(deps: &Deps, job: AutoReplyJob) -> Result<()> {
    let store = deps.store.as_ref();
    let message = store.get_message(&job.message_id).await?.ok_or_else(|| {
        Error::internal(format!("auto-reply for unknown message {}", job.message_id))
    })?;
    // A customer merged away leads to the one that stays.
    let customer = flow::customer_for_job(store, &job.customer_id)
        .await?
        .ok_or_else(|| {
            Error::internal(format!(
                "auto-reply for unknown customer {}",
                job.customer_id
            ))
        })?;
    decide(deps, &job, &customer, &message).await?;
    // What this run wrote under a customer that a merge took away meanwhile follows it.
    let queue = deps.queue.as_ref();
    flow::follow_merge(store, queue, &customer.id, &message.id).await?;
    if message.customer_id != customer.id {
        flow::follow_merge(store, queue, &message.customer_id, &message.id).await?;
    }
    Ok(())
}

/// Finds the message's outcome, the claimed one or a new choice, and carries it out.
async fn decide(
    deps: &Deps,
    job: &AutoReplyJob,
    customer: &Customer,
    message: &Message,
) -> Result<()> {
    let (store, queue) = (deps.store.as_ref(), deps.queue.as_ref());
    if message.ticket_id.is_some() {
        return flow::resume(store, queue, customer, message).await;
    }
    if let Some(outcome) = flow::claimed_outcome(store, &message.id).await? {
        return flow::carry_out(store, queue, customer, message, outcome).await;
    }
    // Answered before outcomes were claimed: the same reply, which dispatch sends once.
    if let Some(reply) = store
        .get_message(&derived_id(&message.id, "auto_reply"))
        .await?
    {
        return flow::send_to_customer(store, queue, &reply).await;
    }
    let chosen = choose(deps, job, customer, message).await?;
    let outcome = flow::claim_outcome(store, &message.id, chosen).await?;
    flow::carry_out(store, queue, customer, message, outcome).await
}

/// What this run would do with the message: join the customer's ticket opened since the
/// router looked, answer from the knowledge base, or hand it to an agent.
async fn choose(
    deps: &Deps,
    job: &AutoReplyJob,
    customer: &Customer,
    message: &Message,
) -> Result<Outcome> {
    let to_ticket = |suggestions| Outcome::Ticket {
        skill: job.skill,
        priority: job.priority,
        suggestions,
        tags: job.tags.clone(),
    };
    // A ticket opened since the router looked: the message belongs on it.
    if deps.store.active_ticket_for(&customer.id).await?.is_some() {
        return Ok(to_ticket(Vec::new()));
    }
    // A search that fails, whatever the reason, hands off: the customer gets an agent rather
    // than silence, and the message never waits in the dead letters.
    let hits = match deps.knowledge.search(&message.text, TOP).await {
        Ok(hits) => hits,
        Err(e) => {
            tracing::warn!(message_id = %message.id, error = %e, "knowledge search failed; handing off");
            Vec::new()
        }
    };
    match Decision::decide(&hits, deps.threshold) {
        Decision::Reply { hit, alternatives } => {
            let locale = format::locale_for(customer.locale.as_deref(), &message.text);
            let titles: Vec<&str> = alternatives.iter().map(|h| h.title.as_str()).collect();
            tracing::info!(
                message_id = %message.id,
                article_id = %hit.article_id,
                confidence = hit.confidence,
                "answered from the knowledge base"
            );
            Ok(Outcome::Reply {
                text: format::auto_reply(locale, &hit.answer, &titles),
            })
        }
        Decision::Handoff => {
            tracing::info!(
                message_id = %message.id,
                best = hits.first().map_or(0.0, |h| h.confidence),
                "not confident; handing off"
            );
            Ok(to_ticket(
                hits.iter()
                    .filter(|h| h.confidence > 0.0)
                    .map(|h| Suggestion {
                        article_id: h.article_id.clone(),
                        title: h.title.clone(),
                        confidence: h.confidence,
                    })
                    .collect(),
            ))
        }
    }
}
