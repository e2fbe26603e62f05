//! What agents write on a ticket: replies to the customer on the ticket's channel, internal
//! notes, and escalations to a supervisor.

use crate::auth::Agent;
use crate::tickets::{load, with_etag};
use crate::Deps;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use helpdesk_core::domain::{
    self, Direction, Message, MessageKind, OutboundMessage, SupervisorNotice,
};
use helpdesk_core::flow;
use helpdesk_core::http::ApiJson;
use helpdesk_core::ports::{send_json, QueueName};
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

async fn reply(
    State(deps): State<Arc<Deps>>,
    agent: Agent,
    Path(id): Path<String>,
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
    let mut message = Message::outbound(
        &ticket.customer_id,
        ticket.channel,
        MessageKind::AgentReply,
        body.text,
        Some(ticket.id.clone()),
    );
    message.author = Some(agent.name.clone());
    flow::send_to_customer(deps.store.as_ref(), deps.queue.as_ref(), &message).await?;
    flow::update_ticket(deps.store.as_ref(), &id, |t| {
        t.agent_replied(&agent.name, domain::now());
        Ok(true)
    })
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            message_id: message.id,
        }),
    ))
}

async fn note(
    State(deps): State<Arc<Deps>>,
    agent: Agent,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<(StatusCode, Json<Message>)> {
    check_text(&body.text)?;
    let ticket = load(&deps, &id).await?;
    let note = Message {
        id: domain::new_id(),
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
    };
    deps.store.append_message(&note).await?;
    Ok((StatusCode::CREATED, Json(note)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalateBody {
    reason: String,
}

async fn escalate(
    State(deps): State<Arc<Deps>>,
    agent: Agent,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EscalateBody>,
) -> Result<Response> {
    let (ticket, _) = flow::update_ticket(deps.store.as_ref(), &id, |t| {
        t.escalate(&body.reason, domain::now())?;
        Ok(true)
    })
    .await?;
    let notice = SupervisorNotice {
        event: "ticket.escalated".into(),
        ticket_id: ticket.id.clone(),
        subject: ticket.subject.clone(),
        priority: ticket.priority,
        skill: ticket.skill,
        reason: ticket.escalation_reason.clone().unwrap_or_default(),
        escalated_by: agent.name,
        escalated_at: ticket.escalated_at.unwrap_or_else(domain::now),
        customer_id: ticket.customer_id.clone(),
        channel: ticket.channel,
    };
    send_json(
        deps.queue.as_ref(),
        QueueName::Outbound,
        &OutboundMessage::Supervisor(notice),
        None,
    )
    .await?;
    tracing::info!(ticket_id = %id, "ticket escalated");
    Ok(with_etag(StatusCode::OK, ticket.version, &ticket))
}
