//! `/tickets` and `/reports`.

use crate::auth::Role;
use crate::Deps;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use helpdesk_core::domain::{
    self, parse_enum, Channel, Direction, Message, MessageKind, NewTicket, OutboundMessage,
    Priority, Skill, SupervisorNotice, Ticket, TicketFilter, TicketPatch,
};
use helpdesk_core::flow;
use helpdesk_core::http::{ApiJson, ApiQuery};
use helpdesk_core::ports::{send_json, QueueName};
use helpdesk_core::{report, Error, ErrorKind, Result};
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new()
        .route("/tickets", get(list).post(create))
        .route("/tickets/{id}", get(show).patch(patch))
        .route("/tickets/{id}/replies", post(reply))
        .route("/tickets/{id}/notes", post(note))
        .route("/tickets/{id}/escalate", post(escalate))
        .route("/reports/csat", get(csat))
}

use helpdesk_core::text::check_text;

async fn load(deps: &Deps, id: &str) -> Result<Ticket> {
    deps.store
        .get_ticket(id)
        .await?
        .ok_or_else(|| Error::not_found("ticket", id))
}

/// A ticket with its version as the ETag.
fn with_etag<T: Serialize>(status: StatusCode, version: u64, body: T) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    priority: Option<String>,
    skill: Option<String>,
    assignee: Option<String>,
    channel: Option<String>,
    customer_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct TicketList {
    tickets: Vec<Ticket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

async fn list(
    State(deps): State<Arc<Deps>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<TicketList>> {
    let agent = deps.agents.authenticate(&headers)?;
    let filter = TicketFilter {
        status: nonempty(&q.status)
            .map(|s| parse_enum("status", s))
            .transpose()?,
        priority: nonempty(&q.priority)
            .map(|s| parse_enum("priority", s))
            .transpose()?,
        skill: nonempty(&q.skill)
            .map(|s| parse_enum("skill", s))
            .transpose()?,
        assignee: nonempty(&q.assignee).map(|a| {
            if a == "me" {
                agent.name.clone()
            } else {
                a.to_string()
            }
        }),
        channel: nonempty(&q.channel)
            .map(str::parse::<Channel>)
            .transpose()?,
        customer_id: nonempty(&q.customer_id).map(str::to_string),
    };
    let limit = match nonempty(&q.limit) {
        None => 25,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(Error::bad_request(
                    "bad_request",
                    "limit is a whole number from 1 to 100",
                ))
            }
        },
    };
    let cursor = nonempty(&q.cursor);
    if let Some(c) = cursor {
        if uuid::Uuid::parse_str(c).is_err() {
            return Err(Error::bad_request(
                "invalid_cursor",
                "the cursor is not one this API gave out",
            ));
        }
    }
    let page = deps.store.list_tickets(&filter, limit, cursor).await?;
    Ok(Json(TicketList {
        tickets: page.items,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTicket {
    customer_id: String,
    subject: Option<String>,
    description: String,
    priority: Option<Priority>,
    skill: Option<Skill>,
}

async fn create(
    State(deps): State<Arc<Deps>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateTicket>,
) -> Result<Response> {
    deps.agents.authenticate(&headers)?;
    check_text(&body.description)?;
    let customer = deps
        .store
        .get_customer(&body.customer_id)
        .await?
        .ok_or_else(|| Error::not_found("customer", &body.customer_id))?;
    let channel = customer
        .identities
        .first()
        .map_or(Channel::Webchat, |i| i.channel);
    let ticket = Ticket::open(
        NewTicket {
            customer_id: customer.id,
            channel,
            subject: body.subject,
            description: body.description,
            priority: body.priority.unwrap_or_default(),
            skill: body.skill.unwrap_or_default(),
        },
        domain::now(),
    );
    deps.store.create_ticket(&ticket).await?;
    Ok(with_etag(StatusCode::CREATED, ticket.version, &ticket))
}

#[derive(Serialize)]
struct TicketView {
    ticket: Ticket,
    messages: Vec<Message>,
}

async fn show(
    State(deps): State<Arc<Deps>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    deps.agents.authenticate(&headers)?;
    let ticket = load(&deps, &id).await?;
    let messages = deps.store.ticket_messages(&id).await?;
    Ok(with_etag(
        StatusCode::OK,
        ticket.version,
        TicketView { ticket, messages },
    ))
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn explicit_null<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    status: Option<domain::TicketStatus>,
    priority: Option<Priority>,
    skill: Option<Skill>,
    #[serde(default, deserialize_with = "explicit_null")]
    assignee: Option<Option<String>>,
}

fn if_match(headers: &HeaderMap) -> Result<u64> {
    let raw = headers.get(header::IF_MATCH).ok_or_else(|| {
        Error::new(
            ErrorKind::PreconditionRequired,
            "precondition_required",
            "send the ticket's version as If-Match (it is the ETag of GET /tickets/{id})",
        )
    })?;
    raw.to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Error::bad_request(
                "bad_request",
                "If-Match must be the ticket's version number",
            )
        })
}

async fn patch(
    State(deps): State<Arc<Deps>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> Result<Response> {
    deps.agents.authenticate(&headers)?;
    let expected = if_match(&headers)?;
    let mut ticket = load(&deps, &id).await?;
    if ticket.version != expected {
        return Err(Error::conflict(
            "version_conflict",
            format!(
                "the ticket is at version {}, not {expected}; reload it and try again",
                ticket.version
            ),
        ));
    }
    let assignee = match body.assignee {
        Some(Some(a)) if a.trim().is_empty() => Some(None),
        other => other,
    };
    let patch = TicketPatch {
        status: body.status,
        priority: body.priority,
        skill: body.skill,
        assignee,
    };
    ticket.apply(&patch, domain::now())?;
    deps.store.update_ticket(&ticket, expected).await?;
    tracing::info!(ticket_id = %id, status = ticket.status.as_str(), version = ticket.version, "ticket updated");
    Ok(with_etag(StatusCode::OK, ticket.version, &ticket))
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
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<(StatusCode, Json<Accepted>)> {
    let agent = deps.agents.authenticate(&headers)?;
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
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TextBody>,
) -> Result<(StatusCode, Json<Message>)> {
    let agent = deps.agents.authenticate(&headers)?;
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
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EscalateBody>,
) -> Result<Response> {
    let agent = deps.agents.authenticate(&headers)?;
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

#[derive(Debug, Deserialize)]
struct CsatQuery {
    from: Option<String>,
    to: Option<String>,
}

fn parse_time(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
                })
                .map_err(|_| {
                    Error::bad_request(
                        "bad_request",
                        format!("{name} is not a date (2026-11-24) or RFC 3339 time"),
                    )
                })
        })
        .transpose()
}

async fn csat(
    State(deps): State<Arc<Deps>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<CsatQuery>,
) -> Result<Json<report::CsatReport>> {
    deps.agents
        .authenticate(&headers)?
        .require(Role::Supervisor)?;
    let from = parse_time("from", q.from.as_deref())?;
    let to = parse_time("to", q.to.as_deref())?;
    let tickets = deps.store.rated_tickets(from, to).await?;
    Ok(Json(report::csat(&tickets)))
}
