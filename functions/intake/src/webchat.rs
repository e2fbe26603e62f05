//! The website chat: a visitor opens a session, writes, and polls for the conversation.
//! The widget (`/widget.js`) calls these routes from the embedding site's origin, so they
//! answer CORS; what a poll returns is the visitor's own view of the conversation
//! ([`VisitorMessage`]), never the desk's internal fields.
//!
//! Anyone may call these routes, so each is bounded ([`WebchatLimits`]): sessions made per
//! client address, new messages per session, and a session ends after an idle time.

use crate::{accept_new, taken_as, Deps};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use helpdesk_core::domain::{
    self, Channel, ChannelIdentity, Customer, Direction, InboundMessage, Message, MessageKind,
};
use helpdesk_core::http::{
    bearer_token, body_bytes, cors_for_visitors, parse_json, ApiJson, ApiQuery,
};
use helpdesk_core::ports::WebchatSession;
use helpdesk_core::rate::{self, RateLimit};
use helpdesk_core::{format, text, Error, Result};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The webchat routes, with the visitor view and the limits configured from the
/// environment. A limit that does not parse is named in the log and its default kept: the
/// chat stays up.
pub fn routes() -> Router<Arc<Deps>> {
    let limits = WebchatLimits::from_env().unwrap_or_else(|e| {
        tracing::error!("{e}; the webchat limits keep their defaults");
        WebchatLimits::default()
    });
    routes_with(VisitorView::from_env(), limits)
}

/// The webchat routes, with the given visitor view and limits.
pub fn routes_with(view: VisitorView, limits: WebchatLimits) -> Router<Arc<Deps>> {
    Router::new()
        .route("/webchat/sessions", post(create_session))
        .route("/webchat/messages", post(post_message).get(list_messages))
        .layer(Extension(view))
        .layer(Extension(limits))
        .layer(axum::middleware::from_fn(cors_for_visitors))
}

/// What one visitor may do on the public webchat routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebchatLimits {
    /// Sessions one client address may open a minute (`WEBCHAT_SESSIONS_PER_MINUTE`).
    pub sessions_per_address: RateLimit,
    /// Messages one session may send a minute (`WEBCHAT_MESSAGES_PER_MINUTE`).
    pub messages_per_session: RateLimit,
    /// Seconds a session lives without being used (`WEBCHAT_SESSION_IDLE_SECS`).
    pub session_idle_secs: i64,
}

impl Default for WebchatLimits {
    fn default() -> WebchatLimits {
        WebchatLimits {
            // A page view opens one session; a family or an office behind one address still
            // fits, a script does not.
            sessions_per_address: RateLimit::per_minute(20),
            // Faster than anyone types, slower than a flood.
            messages_per_session: RateLimit::per_minute(20),
            session_idle_secs: 24 * 3600,
        }
    }
}

impl WebchatLimits {
    /// Reads the three variables (each optional) once, at start-up.
    pub fn from_env() -> std::result::Result<WebchatLimits, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<WebchatLimits, String> {
        let number = |name: &str, default: i64| -> std::result::Result<i64, String> {
            match get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
            {
                None => Ok(default),
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!("{name}={v:?} is not a positive whole number")),
                },
            }
        };
        let d = WebchatLimits::default();
        Ok(WebchatLimits {
            sessions_per_address: RateLimit::per_minute(number(
                "WEBCHAT_SESSIONS_PER_MINUTE",
                d.sessions_per_address.limit as i64,
            )? as u64),
            messages_per_session: RateLimit::per_minute(number(
                "WEBCHAT_MESSAGES_PER_MINUTE",
                d.messages_per_session.limit as i64,
            )? as u64),
            session_idle_secs: number("WEBCHAT_SESSION_IDLE_SECS", d.session_idle_secs)?,
        })
    }
}

/// The caller's address: the TCP peer locally, API Gateway's `sourceIp` on AWS (not
/// `X-Forwarded-For`, which a caller can write), as the limits count it ([`counted_as`]).
fn client_address(req: &axum::extract::Request) -> String {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>() {
        return counted_as(peer.ip());
    }
    use lambda_http::request::RequestContext;
    match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => match ctx.http.source_ip.as_deref() {
            Some(ip) => ip
                .parse::<std::net::IpAddr>()
                .map_or_else(|_| ip.to_string(), counted_as),
            None => "unknown".into(),
        },
        _ => "unknown".into(),
    }
}

/// An address as a limit counts it: an IPv4 address as it is (an IPv4 address written as
/// IPv6 too), and an IPv6 address by its /64, the block one home or one host is given, so
/// that a caller cannot open a fresh count with each of its 2⁶⁴ addresses.
fn counted_as(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// What the team lets visitors see of the desk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VisitorView {
    /// Whether an agent's reply carries the agent's display name (off by default: on AWS
    /// an agent's name may be their email address).
    pub agent_names: bool,
}

/// The variable that turns agents' names on in the visitor's view.
pub const AGENT_NAMES_VAR: &str = "WEBCHAT_SHOW_AGENT_NAMES";

impl VisitorView {
    /// Reads [`AGENT_NAMES_VAR`] (`true` or `false`, unset is `false`) once, at start-up.
    pub fn from_env() -> VisitorView {
        let value = std::env::var(AGENT_NAMES_VAR).unwrap_or_default();
        VisitorView {
            agent_names: match value.trim().to_ascii_lowercase().as_str() {
                "" | "0" | "false" | "no" | "off" => false,
                "1" | "true" | "yes" | "on" => true,
                other => {
                    tracing::warn!(
                        "{AGENT_NAMES_VAR}={other:?} is neither true nor false; agents' names stay hidden from visitors"
                    );
                    false
                }
            },
        }
    }
}

/// One entry of the conversation as the visitor sees it: no author ids or emails, no
/// customer id, no provider message id, no delivery details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisitorMessage {
    pub id: String,
    pub direction: Direction,
    /// For an auto-reply with choices, the answer alone; the choices are in `choices`.
    pub text: String,
    pub kind: MessageKind,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    /// "Did you mean" titles, which the visitor may send back as their next message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// The survey's signed link: `POST` the rating to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The replying agent's display name, when the team shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
}

/// The longest agent display name shown to a visitor, in characters.
const AGENT_NAME_CHARS: usize = 40;

/// An agent's name as a visitor may see it: an email address shows only its local part.
fn display_name(author: &str) -> Option<String> {
    let name = author.split('@').next().unwrap_or("").trim();
    (!name.is_empty()).then(|| text::truncate_chars(name, AGENT_NAME_CHARS).to_string())
}

impl VisitorMessage {
    /// The visitor's view of an entry; `None` for what a visitor never sees (notes).
    pub fn from_message(m: &Message, view: VisitorView) -> Option<VisitorMessage> {
        if m.direction == Direction::Internal || m.kind == MessageKind::Note {
            return None;
        }
        let (text, choices) = if m.kind == MessageKind::AutoReply {
            let (answer, choices) = format::split_auto_reply(&m.text);
            (
                answer.to_string(),
                choices.into_iter().map(str::to_string).collect(),
            )
        } else {
            (m.text.clone(), Vec::new())
        };
        let agent_name = match (view.agent_names, m.kind, m.author.as_deref()) {
            (true, MessageKind::AgentReply, Some(author)) => display_name(author),
            _ => None,
        };
        Some(VisitorMessage {
            id: m.id.clone(),
            direction: m.direction,
            text,
            kind: m.kind,
            created_at: m.created_at,
            ticket_id: m.ticket_id.clone(),
            choices,
            link: m.link.clone(),
            agent_name,
        })
    }
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
    Extension(limits): Extension<WebchatLimits>,
    req: axum::extract::Request,
) -> Result<(StatusCode, Json<SessionCreated>)> {
    let address = client_address(&req);
    let now = domain::now();
    rate::check(
        deps.store.as_ref(),
        "webchat sessions from one address",
        &address,
        limits.sessions_per_address,
        now.timestamp(),
    )
    .await?;
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
    // No customer yet: most page views never write, and a customer is made at the first
    // message (`post_message`), under the id the session already knows.
    let customer_id = Customer::webchat_id(&session_id);
    deps.store
        .create_session(&WebchatSession {
            id: session_id.clone(),
            token_hash: token_hash(&token),
            customer_id: customer_id.clone(),
            created_at: now,
            name,
            locale,
            expires_at: Some(now.timestamp() + limits.session_idle_secs),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionCreated {
            session_id,
            token,
            customer_id,
        }),
    ))
}

/// Makes the visitor's customer at their first message; a no-op read after that.
async fn ensure_customer(deps: &Deps, session: &WebchatSession) -> Result<()> {
    if deps
        .store
        .get_customer(&session.customer_id)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let identity = ChannelIdentity {
        channel: Channel::Webchat,
        external_id: session.id.clone(),
    };
    deps.store
        .resolve_customer(
            &identity,
            session.name.as_deref(),
            session.locale.as_deref(),
        )
        .await?;
    Ok(())
}

/// The caller's session, still open; its end is pushed out by this use.
async fn session(
    deps: &Deps,
    headers: &HeaderMap,
    limits: &WebchatLimits,
) -> Result<WebchatSession> {
    let token = bearer_token(headers).ok_or_else(|| {
        Error::unauthorized("send the session token as 'Authorization: Bearer <token>'")
    })?;
    let mut session = deps
        .store
        .session_by_token_hash(&token_hash(token))
        .await?
        .ok_or_else(|| Error::unauthorized("unknown session token"))?;
    let now = domain::now().timestamp();
    if session.is_expired(now) {
        return Err(Error::unauthorized(
            "this chat session has ended after a time without use; open a new one",
        ));
    }
    if session.needs_renewal(now, limits.session_idle_secs) {
        session.expires_at = Some(now + limits.session_idle_secs);
        deps.store.update_session(&session).await?;
    }
    Ok(session)
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

/// Takes a visitor's message. The order of the steps is what the limit counts:
///
/// - A post refused for what it holds (a blank or too long text, a too long
///   `client_message_id`) is not counted: it costs one read (the session) and writes and
///   queues nothing, like a post with an unknown token or a body that is not JSON, which
///   the limit cannot count either. Counting it would add a write to each such post, not
///   spare one; the edge throttle bounds a flood of them on AWS.
/// - A repeat of a `client_message_id` already taken is answered with the first message's
///   id and not counted: the widget retries what it could not confirm, and a retry of
///   something accepted must never be refused.
/// - Only a new message counts against the session's limit.
async fn post_message(
    State(deps): State<Arc<Deps>>,
    Extension(limits): Extension<WebchatLimits>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewMessage>,
) -> Result<(StatusCode, Json<Accepted>)> {
    let session = session(&deps, &headers, &limits).await?;
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
    if let Some(key) = &dedupe_key {
        if let Some(message_id) = taken_as(&deps, key).await? {
            return Ok((StatusCode::ACCEPTED, Json(Accepted { message_id })));
        }
    }
    rate::check(
        deps.store.as_ref(),
        "messages in one chat session",
        &session.id,
        limits.messages_per_session,
        domain::now().timestamp(),
    )
    .await?;
    ensure_customer(&deps, &session).await?;
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
    let message_id = accept_new(&deps, dedupe_key.as_deref(), message).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message_id })))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct Conversation {
    messages: Vec<VisitorMessage>,
}

async fn list_messages(
    State(deps): State<Arc<Deps>>,
    Extension(view): Extension<VisitorView>,
    Extension(limits): Extension<WebchatLimits>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Conversation>> {
    let session = session(&deps, &headers, &limits).await?;
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
    let messages = messages
        .iter()
        .filter_map(|m| VisitorMessage::from_message(m, view))
        .collect();
    Ok(Json(Conversation { messages }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_ipv6_caller_is_counted_by_its_64_block() {
        use super::counted_as;
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(counted_as(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(counted_as(ip("::ffff:203.0.113.7")), "203.0.113.7");
        let one = counted_as(ip("2001:db8:aa:bb:1:2:3:4"));
        assert_eq!(one, "2001:db8:aa:bb::/64");
        assert_eq!(
            counted_as(ip("2001:db8:aa:bb:ffff::9")),
            one,
            "the same block"
        );
        assert_ne!(counted_as(ip("2001:db8:aa:bc::1")), one, "the next block");
    }

    use super::*;

    fn agent_reply(author: &str) -> Message {
        let mut m = Message::outbound(
            "cust-1",
            Channel::Webchat,
            MessageKind::AgentReply,
            "您好，已为您处理。".to_string(),
            Some("ticket-1".to_string()),
        );
        m.author = Some(author.to_string());
        m.provider_message_id = Some("wamid.internal".to_string());
        m
    }

    #[test]
    fn the_visitor_view_holds_no_internal_fields() {
        let m = agent_reply("li.lei@example.com");
        let v = VisitorMessage::from_message(&m, VisitorView::default()).expect("visible");
        let json = serde_json::to_value(&v).expect("serialises");
        let keys: Vec<&str> = json
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        for internal in [
            "author",
            "customer_id",
            "provider_message_id",
            "status",
            "agent_name",
        ] {
            assert!(!keys.contains(&internal), "{internal} in {json}");
        }
        assert!(!json.to_string().contains("example.com"), "{json}");
        assert_eq!(json["text"], "您好，已为您处理。");
        assert_eq!(json["kind"], "agent_reply");
        assert_eq!(json["direction"], "outbound");
        assert_eq!(json["ticket_id"], "ticket-1");
    }

    #[test]
    fn agent_names_show_only_when_the_team_allows_and_never_as_an_email() {
        let shown = VisitorView { agent_names: true };
        let v = VisitorMessage::from_message(&agent_reply("li.lei@example.com"), shown)
            .expect("visible");
        assert_eq!(v.agent_name.as_deref(), Some("li.lei"));
        let v = VisitorMessage::from_message(&agent_reply("alice"), shown).expect("visible");
        assert_eq!(v.agent_name.as_deref(), Some("alice"));
        let long: String = "王".repeat(60);
        let v = VisitorMessage::from_message(&agent_reply(&long), shown).expect("visible");
        assert_eq!(
            v.agent_name.map(|n| n.chars().count()),
            Some(AGENT_NAME_CHARS)
        );
        // An auto-reply has no agent, whatever its author field says.
        let mut auto = agent_reply("bot");
        auto.kind = MessageKind::AutoReply;
        assert_eq!(
            VisitorMessage::from_message(&auto, shown).and_then(|v| v.agent_name),
            None
        );
    }

    #[test]
    fn limits_have_defaults_and_refuse_nonsense() {
        let limits = |vars: &[(&str, &str)]| {
            let vars: std::collections::HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            WebchatLimits::from_lookup(|n| vars.get(n).cloned())
        };
        assert_eq!(limits(&[]), Ok(WebchatLimits::default()));
        assert_eq!(
            limits(&[("WEBCHAT_SESSIONS_PER_MINUTE", " ")]),
            Ok(WebchatLimits::default())
        );
        let l = limits(&[
            ("WEBCHAT_SESSIONS_PER_MINUTE", "5"),
            ("WEBCHAT_SESSION_IDLE_SECS", "600"),
        ])
        .expect("valid");
        assert_eq!(
            (l.sessions_per_address.limit, l.session_idle_secs),
            (5, 600)
        );
        for bad in ["0", "-3", "many"] {
            let err = limits(&[("WEBCHAT_MESSAGES_PER_MINUTE", bad)]).expect_err(bad);
            assert!(err.contains("WEBCHAT_MESSAGES_PER_MINUTE"), "{err}");
        }
    }

    #[test]
    fn notes_are_never_shown_to_the_visitor() {
        let mut note = agent_reply("alice");
        note.kind = MessageKind::Note;
        note.direction = Direction::Internal;
        assert_eq!(
            VisitorMessage::from_message(&note, VisitorView { agent_names: true }),
            None
        );
    }

    #[test]
    fn did_you_mean_becomes_choices_and_the_survey_keeps_its_link() {
        let text = format::auto_reply("zh", "请在设置中重置密码。", &["修改账户绑定邮箱"]);
        let m = Message::outbound("c", Channel::Webchat, MessageKind::AutoReply, text, None);
        let v = VisitorMessage::from_message(&m, VisitorView::default()).expect("visible");
        assert_eq!(v.text, "请在设置中重置密码。");
        assert_eq!(v.choices, ["修改账户绑定邮箱"]);

        let link = "https://desk.example/surveys/tok".to_string();
        let mut survey = Message::outbound(
            "c",
            Channel::Webchat,
            MessageKind::Survey,
            format::survey("en", &link),
            Some("t".to_string()),
        );
        survey.link = Some(link.clone());
        let v = VisitorMessage::from_message(&survey, VisitorView::default()).expect("visible");
        assert_eq!(v.link, Some(link));
        assert!(v.choices.is_empty());
        let json = serde_json::to_value(&v).expect("serialises");
        assert!(json.get("choices").is_none(), "{json}");
    }
}
