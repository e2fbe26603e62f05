//! Auto-reply: answers from the knowledge base when it is confident, and hands the
//! message to an agent when it is not. A wrong answer costs more than a hand-off, so the
//! threshold errs on the side of a person.

use helpdesk_core::domain::{Message, MessageKind, Suggestion};
use helpdesk_core::flow::{self, derived_id};
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

pub async fn handle(deps: &Deps, job: AutoReplyJob) -> Result<()> {
    let store = deps.store.as_ref();
    let message = store.get_message(&job.message_id).await?.ok_or_else(|| {
        Error::internal(format!("auto-reply for unknown message {}", job.message_id))
    })?;
    let customer = store.get_customer(&job.customer_id).await?.ok_or_else(|| {
        Error::internal(format!(
            "auto-reply for unknown customer {}",
            job.customer_id
        ))
    })?;
    if message.ticket_id.is_some() {
        return flow::resume(store, deps.queue.as_ref(), &customer, &message).await;
    }
    // Answered already (this job came again): the same reply, which dispatch sends once.
    if let Some(reply) = store
        .get_message(&derived_id(&message.id, "auto_reply"))
        .await?
    {
        return flow::send_to_customer(store, deps.queue.as_ref(), &reply).await;
    }
    // A ticket opened since the router looked: the message belongs on it.
    if let Some(ticket) = store.active_ticket_for(&customer.id).await? {
        flow::settle(store, deps.queue.as_ref(), &customer, &ticket, &message).await?;
        return Ok(());
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
            let mut reply = Message::outbound(
                &customer.id,
                message.channel,
                MessageKind::AutoReply,
                format::auto_reply(locale, &hit.answer, &titles),
                None,
            );
            reply.id = derived_id(&message.id, "auto_reply");
            tracing::info!(
                message_id = %message.id,
                article_id = %hit.article_id,
                confidence = hit.confidence,
                "answered from the knowledge base"
            );
            flow::send_to_customer(store, deps.queue.as_ref(), &reply).await
        }
        Decision::Handoff => {
            tracing::info!(
                message_id = %message.id,
                best = hits.first().map_or(0.0, |h| h.confidence),
                "not confident; handing off"
            );
            flow::open_ticket(
                store,
                deps.queue.as_ref(),
                &customer,
                &message,
                None,
                job.skill,
                job.priority,
                hits.iter()
                    .filter(|h| h.confidence > 0.0)
                    .map(|h| Suggestion {
                        article_id: h.article_id.clone(),
                        title: h.title.clone(),
                        confidence: h.confidence,
                    })
                    .collect(),
            )
            .await
            .map(drop)
        }
    }
}
