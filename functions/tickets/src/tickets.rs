//! `/tickets`: the inbox (lists with filters, counts per view, revalidated with ETags), one
//! ticket with its conversation, creation by hand and changes under optimistic concurrency.

use crate::auth::Agent;
use crate::Deps;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use helpdesk_core::domain::{
    self, parse_enum, Channel, Customer, Message, NewTicket, Priority, Skill, Ticket, TicketFilter,
    TicketPatch, TicketStatus,
};
use helpdesk_core::flow;
use helpdesk_core::http::{self, ApiJson, ApiPath, ApiQuery};
use helpdesk_core::text::check_text;
use helpdesk_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new()
        .route("/tickets", get(list).post(create))
        .route("/tickets/counts", get(counts))
        .route("/tickets/{id}", get(show).patch(patch))
}

pub(crate) async fn load(deps: &Deps, id: &str) -> Result<Ticket> {
    deps.store
        .get_ticket(id)
        .await?
        .ok_or_else(|| Error::not_found("ticket", id))
}

/// A ticket with its version as the ETag.
pub(crate) fn with_etag<T: Serialize>(status: StatusCode, version: u64, body: T) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// A list answered with a hash of its content as the ETag, and 304 with no body when the
/// client's copy (`If-None-Match`) is current: a console polling an idle desk moves a few
/// bytes a poll.
fn revalidated<T: Serialize>(headers: &HeaderMap, body: &T) -> Result<Response> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| Error::internal(format!("could not write the list: {e}")))?;
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&bytes)[..12]));
    let current = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if current {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    // Kept by the browser alone (it lists customers' names and words), and checked with the
    // ETag before each use.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    priority: Option<String>,
    skill: Option<String>,
    assignee: Option<String>,
    channel: Option<String>,
    customer_id: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    tag: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    /// `newest` (the default) or `oldest` first.
    order: Option<String>,
}

/// A ticket as the API answers with it: the stored ticket, and what the desk's rules
/// derive from it, so that no client restates a rule: `waiting_since`
/// ([`Ticket::waiting_since`]), since when the customer has waited for the agents.
#[derive(Serialize)]
pub(crate) struct TicketOut<'a> {
    #[serde(flatten)]
    ticket: &'a Ticket,
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_since: Option<chrono::DateTime<chrono::Utc>>,
}

impl<'a> From<&'a Ticket> for TicketOut<'a> {
    fn from(ticket: &'a Ticket) -> Self {
        TicketOut {
            ticket,
            waiting_since: ticket.waiting_since(),
        }
    }
}

#[derive(Serialize)]
struct TicketList<'a> {
    tickets: Vec<TicketOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The filter a list query asks for. `status=active` is open, pending or escalated;
/// `assignee=me` is the caller and `assignee=none` nobody; `ref` is the reference the
/// customer was told, as they quote it.
fn filter_of(q: &ListQuery, agent: &Agent) -> Result<TicketFilter> {
    let mut filter = TicketFilter {
        priority: nonempty(&q.priority)
            .map(|s| parse_enum("priority", s))
            .transpose()?,
        skill: nonempty(&q.skill)
            .map(|s| parse_enum("skill", s))
            .transpose()?,
        channel: nonempty(&q.channel)
            .map(str::parse::<Channel>)
            .transpose()?,
        customer_id: nonempty(&q.customer_id).map(str::to_string),
        reference: nonempty(&q.reference)
            .map(domain::parse_ticket_ref)
            .transpose()?,
        tag: domain::tag::filter(q.tag.as_deref())?,
        ..TicketFilter::default()
    };
    match nonempty(&q.status) {
        None => {}
        Some("active") => filter.active = true,
        Some(s) => filter.status = Some(parse_enum::<TicketStatus>("status", s)?),
    }
    match nonempty(&q.assignee) {
        None => {}
        Some("none") => filter.unassigned = true,
        Some("me") => filter.assignee = Some(agent.name.clone()),
        Some(a) => filter.assignee = Some(a.to_string()),
    }
    filter.oldest_first = match nonempty(&q.order) {
        None | Some("newest") => false,
        Some("oldest") => true,
        Some(other) => {
            return Err(Error::bad_request(
                "bad_request",
                format!(
                    "order is newest or oldest, not {:?}",
                    helpdesk_core::text::truncate_chars(other, 40)
                ),
            ))
        }
    };
    filter.check()?;
    Ok(filter)
}

async fn list(
    State(deps): State<Arc<Deps>>,
    agent: Agent,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response> {
    let filter = filter_of(&q, &agent)?;
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
    revalidated(
        &headers,
        &TicketList {
            tickets: page.items.iter().map(TicketOut::from).collect(),
            next_cursor: page.next_cursor,
        },
    )
}

/// The inbox's views, each counting the tickets still being worked.
#[derive(Serialize)]
struct Counts {
    mine: u64,
    unassigned: u64,
    all: u64,
}

/// What the counts narrow by: the list's filters that the inbox sets beside its views, so
/// each view's count is the size of its list of active tickets under them.
#[derive(Debug, Deserialize)]
struct CountsQuery {
    priority: Option<String>,
    skill: Option<String>,
    channel: Option<String>,
    tag: Option<String>,
}

async fn counts(
    State(deps): State<Arc<Deps>>,
    agent: Agent,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<CountsQuery>,
) -> Result<Response> {
    // The list's own rule reads the filters, with the views' status: active.
    let as_listed = ListQuery {
        status: Some("active".to_string()),
        priority: q.priority,
        skill: q.skill,
        channel: q.channel,
        tag: q.tag,
        assignee: None,
        customer_id: None,
        reference: None,
        limit: None,
        cursor: None,
        order: None,
    };
    let active = filter_of(&as_listed, &agent)?;
    let mine = TicketFilter {
        assignee: Some(agent.name.clone()),
        ..active.clone()
    };
    let unassigned = TicketFilter {
        unassigned: true,
        ..active.clone()
    };
    let (mine, unassigned, all) = tokio::try_join!(
        deps.store.count_tickets(&mine),
        deps.store.count_tickets(&unassigned),
        deps.store.count_tickets(&active),
    )?;
    revalidated(
        &headers,
        &Counts {
            mine,
            unassigned,
            all,
        },
    )
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

/// A ticket made by hand. A customer has one active ticket at a time, which their messages
/// join: when they have one already, 409 `active_ticket_exists` names it. The store refuses
/// in the write itself, so a create racing a hand-off, or another create, leaves one. With
/// an `Idempotency-Key`, a retry answers with the first request's ticket and makes no
/// second one (the store tells a taken id before an active ticket).
async fn create(
    State(deps): State<Arc<Deps>>,
    agent: Agent,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateTicket>,
) -> Result<Response> {
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
    let mut ticket = Ticket::open(
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
    // The history says who opened it.
    ticket.changed_by = Some(agent.name.clone());
    ticket.id = flow::idempotent_id(
        deps.store.as_ref(),
        &format!("tickets:{}", agent.name),
        http::idempotency_key(&headers)?,
        ticket.id,
    )
    .await?;
    let ticket = match deps.store.create_ticket(&ticket).await {
        Ok(()) => ticket,
        // The key's first request made it: answer as that request did.
        Err(e) if e.code == "already_exists" => load(&deps, &ticket.id).await?,
        Err(e) => return Err(e),
    };
    Ok(with_etag(
        StatusCode::CREATED,
        ticket.version,
        TicketOut::from(&ticket),
    ))
}

#[derive(Serialize)]
struct TicketView<'a> {
    ticket: TicketOut<'a>,
    /// Who wrote: the name, the locale and the identities on each channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    customer: Option<Customer>,
    /// The newest page of the conversation, oldest first.
    messages: Vec<Message>,
    /// Where the older messages continue: `?cursor=` for the page before.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    /// With `include=before_ticket`, on the page that reaches the conversation's start: the
    /// customer's exchange with the knowledge base just before the message that opened the
    /// ticket ([`flow::exchange_before`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    before_ticket: Vec<Message>,
}

/// How many messages `GET /tickets/{id}` answers with when not told.
const MESSAGE_PAGE: usize = 50;

#[derive(Debug, Deserialize)]
struct ShowQuery {
    limit: Option<String>,
    cursor: Option<String>,
    /// What to answer with besides the ticket and its page, comma-separated, as Zendesk's
    /// sideloads: `before_ticket`.
    include: Option<String>,
}

impl ShowQuery {
    /// Whether `before_ticket` was asked for; another name is a 400.
    fn wants_before_ticket(&self) -> Result<bool> {
        let mut wants = false;
        for name in nonempty(&self.include).unwrap_or("").split(',') {
            match name.trim() {
                "" => {}
                "before_ticket" => wants = true,
                other => {
                    return Err(Error::bad_request(
                        "bad_request",
                        format!("include takes before_ticket, not {other:?}"),
                    ))
                }
            }
        }
        Ok(wants)
    }
}

async fn show(
    State(deps): State<Arc<Deps>>,
    _agent: Agent,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> Result<Response> {
    let max = helpdesk_core::ports::MAX_MESSAGE_PAGE;
    let limit = match nonempty(&q.limit) {
        None => MESSAGE_PAGE,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                Error::bad_request(
                    "bad_request",
                    format!("limit is a whole number from 1 to {max}"),
                )
            })?,
    };
    let wants_before = q.wants_before_ticket()?;
    let cursor = nonempty(&q.cursor);
    if cursor.is_some_and(|c| c.len() > domain::MAX_KEY_BYTES) {
        return Err(helpdesk_core::ports::invalid_message_cursor());
    }
    let ticket = load(&deps, &id).await?;
    let (customer, page) = tokio::try_join!(
        deps.store.get_customer(&ticket.customer_id),
        deps.store.ticket_messages_page(&id, cursor, limit),
    )?;
    // Asked for once by the console, not at each poll: two reads more.
    let before_ticket = match page.next_cursor {
        None if wants_before => flow::exchange_before(deps.store.as_ref(), &ticket).await?,
        _ => Vec::new(),
    };
    Ok(with_etag(
        StatusCode::OK,
        ticket.version,
        TicketView {
            ticket: TicketOut::from(&ticket),
            customer,
            messages: page.items,
            next_cursor: page.next_cursor,
            before_ticket,
        },
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
    /// All the ticket's tags from now on (`[]` takes them all off).
    tags: Option<Vec<String>>,
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
    agent: Agent,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> Result<Response> {
    let expected = if_match(&headers)?;
    let mut ticket = load(&deps, &id).await?;
    if ticket.version != expected {
        return Err(Error::version_conflict(ticket.version, expected));
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
        tags: body.tags,
        by: Some(agent.name.clone()),
    };
    let before = ticket.assignee.clone();
    let (was, now) = (ticket.status, domain::now());
    ticket.apply(&patch, now)?;
    ticket.schedule_close(was, deps.close_resolved_after, now);
    if let Some(to) = ticket
        .assignee
        .as_deref()
        .filter(|&to| before.as_deref() != Some(to))
    {
        // The body's field is what is wrong, not the route: 422.
        crate::agents::may_hold_tickets(&deps, to).map_err(|e| Error {
            kind: ErrorKind::Unprocessable,
            ..e
        })?;
    }
    deps.store.update_ticket(&ticket, expected).await?;
    tracing::info!(ticket_id = %id, status = ticket.status.as_str(), version = ticket.version, "ticket updated");
    Ok(with_etag(
        StatusCode::OK,
        ticket.version,
        TicketOut::from(&ticket),
    ))
}
