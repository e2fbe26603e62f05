//! The website chat: a visitor opens a session, writes, and polls for the conversation.

use crate::{accept, Deps};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use helpdesk_core::domain::{self, Channel, ChannelIdentity, InboundMessage, Message};
use helpdesk_core::http::{bearer_token, body_bytes, parse_json, ApiJson, ApiQuery};
use helpdesk_core::ports::WebchatSession;
use helpdesk_core::{text, Error, Result};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new()
        .route("/webchat/sessions", post(create_session))
        .route("/webchat/messages", post(post_message).get(list_messages))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSession {
    name: Option<String>,
    locale: Option<String>,
}

#[derive(Serialize)]
struct SessionCreated {
    session_id: String,
    token: String,
    customer_id: String,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

async fn create_session(
    State(deps): State<Arc<Deps>>,
    req: axum::extract::Request,
) -> Result<(StatusCode, Json<SessionCreated>)> {
    let bytes = body_bytes(req, &()).await?;
    // An empty body is a session with no name.
    let body: NewSession = if bytes.iter().all(u8::is_ascii_whitespace) {
        NewSession::default()
    } else {
        parse_json(&bytes)?
    };
    let name = body
        .name
        .map(|n| text::truncate_chars(n.trim(), 100).to_string())
        .filter(|n| !n.is_empty());
    let locale = body
        .locale
        .map(|l| text::truncate_chars(l.trim(), 16).to_string())
        .filter(|l| !l.is_empty());
    let session_id = domain::new_id();
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let identity = ChannelIdentity {
        channel: Channel::Webchat,
        external_id: session_id.clone(),
    };
    let customer = deps
        .store
        .resolve_customer(&identity, name.as_deref(), locale.as_deref())
        .await?;
    deps.store
        .create_session(&WebchatSession {
            id: session_id.clone(),
            token_hash: token_hash(&token),
            customer_id: customer.id.clone(),
            created_at: domain::now(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionCreated {
            session_id,
            token,
            customer_id: customer.id,
        }),
    ))
}

async fn session(deps: &Deps, headers: &HeaderMap) -> Result<WebchatSession> {
    let token = bearer_token(headers).ok_or_else(|| {
        Error::unauthorized("send the session token as 'Authorization: Bearer <token>'")
    })?;
    deps.store
        .session_by_token_hash(&token_hash(token))
        .await?
        .ok_or_else(|| Error::unauthorized("unknown session token"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMessage {
    text: String,
    client_message_id: Option<String>,
}

#[derive(Serialize)]
struct Accepted {
    message_id: String,
}

async fn post_message(
    State(deps): State<Arc<Deps>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewMessage>,
) -> Result<(StatusCode, Json<Accepted>)> {
    let session = session(&deps, &headers).await?;
    text::check_text(&body.text)?;
    let dedupe_key = match body.client_message_id.as_deref().map(str::trim) {
        Some("") | None => None,
        Some(id) if id.chars().count() > 200 => {
            return Err(Error::unprocessable(
                "invalid_client_message_id",
                "client_message_id is at most 200 characters",
            ))
        }
        Some(id) => Some(format!("webchat:{}:{id}", session.id)),
    };
    let message = InboundMessage {
        customer_id: Some(session.customer_id.clone()),
        provider_message_id: body.client_message_id,
        ..InboundMessage::text(
            Channel::Webchat,
            session.id.clone(),
            body.text,
            domain::now(),
        )
    };
    let message_id = accept(&deps, dedupe_key.as_deref(), message).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message_id })))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct Conversation {
    messages: Vec<Message>,
}

async fn list_messages(
    State(deps): State<Arc<Deps>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Conversation>> {
    let session = session(&deps, &headers).await?;
    let after = q.after.as_deref().filter(|a| !a.is_empty());
    let messages = deps
        .store
        .customer_messages(
            &session.customer_id,
            Channel::Webchat,
            after,
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(Conversation { messages }))
}
