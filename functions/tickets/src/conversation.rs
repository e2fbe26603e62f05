//! What agents write on a ticket: replies to the customer on the ticket's channel, internal
//! notes, and escalations to a supervisor.

use crate::auth::{Agent, Role};
use crate::tickets::{load, with_etag};
use crate::Deps;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use helpdesk_core::domain::{self, Direction, Message, MessageKind};
use helpdesk_core::flow;
use helpdesk_core::http::{self, ApiJson, ApiPath};
use helpdesk_core::text::check_text;
use helpdesk_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new()
        .route("/tickets/{id}/replies", post(reply))
        .route("/tickets/{id}/notes", post(note))
        .route("/tickets/{id}/escalate", post(escalate))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextBody {
    text: String,
}

#[derive(Serialize)]
struct Accepted {
    message_id: String,
}

/// A reply on the ticket's channel. With an `Idempotency-Key`, a retry (or a twin sent at
/// once) answers with the first request's message and sends nothing again.
async fn reply(
    State(deps): State<Arc<Deps>>,
    agent: Agent,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<(StatusCode, Json<Accepted>)> {
    check_text(&body.text)?;
    let ticket = load(&deps, &id).await?;
    if ticket.status == domain::TicketStatus::Closed {
        return Err(Error::unprocessable(
            "ticket_closed",
            "a closed ticket takes no replies",
        ));
    }
    let message_id = flow::idempotent_id(
        deps.store.as_ref(),
        &format!("replies:{}:{}", agent.name, ticket.id),
        http::idempotency_key(&headers)?,
        domain::new_id(),
    )
    .await?;
    let message = flow::agent_reply(
        deps.store.as_ref(),
        deps.queue.as_ref(),
        &ticket,
        &agent.name,
        // An administrator's reply leaves an unassigned ticket unassigned: by role, as on
        // AWS the tokens do not name the administrators.
        agent.role != Role::Admin,
        body.text,
        message_id,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            message_id: message.id,
        }),
    ))
}

/// An internal note. With an `Idempotency-Key`, a retry (or a twin sent at once) answers
/// with the first request's note and stores nothing again.
async fn note(
    State(deps): State<Arc<Deps>>,
    agent: Agent,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<(StatusCode, Json<Message>)> {
    check_text(&body.text)?;
    let ticket = load(&deps, &id).await?;
    let note_id = flow::idempotent_id(
        deps.store.as_ref(),
        &format!("notes:{}:{}", agent.name, ticket.id),
        http::idempotency_key(&headers)?,
        domain::new_id(),
    )
    .await?;
    let note = Message {
        id: note_id,
        customer_id: ticket.customer_id,
        channel: ticket.channel,
        direction: Direction::Internal,
        kind: MessageKind::Note,
        text: body.text,
        created_at: domain::now(),
        ticket_id: Some(ticket.id),
        status: None,
        author: Some(agent.name),
        provider_message_id: None,
        error: None,
        attachment: None,
        edit_of: None,
        link: None,
        activity: Vec::new(),
    };
    if !deps.store.append_message(&note).await? {
        // The key's first request stored it: answer as that request did.
        let first = deps
            .store
            .get_message(&note.id)
            .await?
            .ok_or_else(|| Error::internal(format!("note {} went away", note.id)))?;
        return Ok((StatusCode::CREATED, Json(first)));
    }
    Ok((StatusCode::CREATED, Json(note)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalateBody {
    reason: String,
}

/// Escalation to a supervisor. The notice is not queued here: the change feed carries the
/// escalated ticket to the survey function, which queues one notice per escalation, so a
/// crash between the change and the notice cannot lose it.
async fn escalate(
    State(deps): State<Arc<Deps>>,
    agent: Agent,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EscalateBody>,
) -> Result<Response> {
    let (ticket, _) = flow::update_ticket(deps.store.as_ref(), &id, |t| {
        t.escalate_by(&agent.name, &body.reason, domain::now())?;
        Ok(true)
    })
    .await?;
    tracing::info!(ticket_id = %id, by = %agent.name, "ticket escalated");
    Ok(with_etag(
        StatusCode::OK,
        ticket.version,
        crate::tickets::TicketOut::from(&ticket),
    ))
}
