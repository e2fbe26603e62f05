//! WhatsApp Cloud API webhooks: Meta's verification handshake, and signed notifications
//! that carry customers' messages and the receipts of ours.
//!
//! Parsing is tolerant on purpose: Meta adds types and leaves out fields, and a
//! notification answered with anything but 200 is retried for days. What is understood is
//! taken; what is not is recorded as `unsupported` for an agent to see.

use crate::{accept, Deps};
use axum::extract::{Query, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use helpdesk_core::channels::WhatsappConfig;
use helpdesk_core::domain::{
    self, Attachment, ButtonPress, Channel, DeliveryStatus, Direction, InboundMessage, MessageKind,
};
use helpdesk_core::http::body_bytes;
use helpdesk_core::json::parse_from_provider;
use helpdesk_core::{Error, ErrorKind, Result};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new().route("/webhooks/whatsapp", get(verify).post(notify))
}

fn config(deps: &Deps) -> Result<&WhatsappConfig> {
    deps.whatsapp.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Unavailable,
            "channel_disabled",
            "the whatsapp channel is off: WHATSAPP_APP_SECRET, WHATSAPP_VERIFY_TOKEN, \
             WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID are not set",
        )
    })
}

/// Meta's handshake: the bare challenge back when the verify token matches.
async fn verify(
    State(deps): State<Arc<Deps>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response> {
    let config = config(&deps)?;
    let mode = q.get("hub.mode").map(String::as_str);
    let token = q.get("hub.verify_token").map(String::as_str);
    match (mode, token, q.get("hub.challenge")) {
        (Some("subscribe"), Some(token), Some(challenge))
            if constant_time_eq(token.as_bytes(), config.verify_token.as_bytes()) =>
        {
            Ok(challenge.clone().into_response())
        }
        _ => Err(Error::forbidden(
            "hub.mode must be subscribe and hub.verify_token must match WHATSAPP_VERIFY_TOKEN",
        )),
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Comparing MACs of both sides keeps the time independent of where they differ.
    let mac = |v: &[u8]| {
        let mut m = <Hmac<Sha256>>::new_from_slice(b"verify-token")
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        m.update(v);
        m.finalize().into_bytes()
    };
    mac(a) == mac(b)
}

/// Checks `X-Hub-Signature-256: sha256=<hex>` over the exact bytes received, in constant
/// time.
pub fn check_signature(app_secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<()> {
    let header = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::unauthorized("the X-Hub-Signature-256 header is missing"))?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or_else(|| Error::unauthorized("X-Hub-Signature-256 must start with sha256="))?;
    let sig = hex::decode(hex_sig)
        .map_err(|_| Error::unauthorized("X-Hub-Signature-256 is not hexadecimal"))?;
    let mut mac = <Hmac<Sha256>>::new_from_slice(app_secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| Error::unauthorized("the X-Hub-Signature-256 signature does not match"))
}

async fn notify(State(deps): State<Arc<Deps>>, req: Request) -> Result<Response> {
    let config = config(&deps)?;
    let headers = req.headers().clone();
    let body = body_bytes(req, &()).await?;
    check_signature(&config.app_secret, &headers, &body)?;
    let payload = parse_from_provider(&body)?;
    let events = parse_notification(&payload, &config.phone_number_id);
    for event in events {
        match event {
            Event::Message(message) if !crate::genuine_button(&deps, &message) => {}
            Event::Message(message) => {
                let key = message
                    .provider_message_id
                    .as_ref()
                    .map(|id| format!("whatsapp:{id}"));
                accept(&deps, key.as_deref(), *message).await?;
            }
            Event::Status {
                provider_message_id,
                status,
                error,
            } => record_status(&deps, &provider_message_id, status, error.as_deref()).await?,
        }
    }
    Ok("ok".into_response())
}

/// Records a receipt on the message it is about, which is one the desk sent: a receipt is
/// never applied to a customer's message, even one under the same id. Receipts for
/// messages the desk did not send (another tool on the same number) are ignored.
async fn record_status(
    deps: &Deps,
    provider_message_id: &str,
    status: DeliveryStatus,
    error: Option<&str>,
) -> Result<()> {
    let store = deps.store.as_ref();
    let Some(message) = store
        .message_by_provider_id(Channel::Whatsapp, Direction::Outbound, provider_message_id)
        .await?
    else {
        tracing::info!(provider_message_id, "receipt for a message we do not know");
        return Ok(());
    };
    store.set_delivery(&message.id, status, None, error).await?;
    if status == DeliveryStatus::Failed {
        tracing::warn!(message_id = %message.id, error, "whatsapp reports a failed delivery");
    }
    Ok(())
}

/// What one notification carries.
#[derive(Debug, PartialEq)]
pub enum Event {
    Message(Box<InboundMessage>),
    Status {
        provider_message_id: String,
        status: DeliveryStatus,
        error: Option<String>,
    },
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// Every message and receipt of a notification for our number, in order.
///
/// One Meta app can serve several phone numbers, and its webhook receives all of them: a
/// change whose `metadata.phone_number_id` is another number's is not the desk's to take
/// in (its customers would be answered from the wrong number), so it is skipped with a
/// log line. A change without metadata is taken, as Meta always sends it and older test
/// tools do not.
pub fn parse_notification(payload: &Value, phone_number_id: &str) -> Vec<Event> {
    let mut events = Vec::new();
    for entry in items(payload, "entry") {
        for change in items(entry, "changes") {
            let Some(value) = change.get("value") else {
                continue;
            };
            if let Some(other) = value
                .get("metadata")
                .and_then(|m| s(m, "phone_number_id"))
                .filter(|id| *id != phone_number_id)
            {
                tracing::info!(
                    phone_number_id = other,
                    "whatsapp notification for another phone number; ignored"
                );
                continue;
            }
            let contacts: Vec<&Value> = items(value, "contacts").collect();
            for m in items(value, "messages") {
                match parse_message(m, &contacts) {
                    Some(message) => events.push(Event::Message(Box::new(message))),
                    None => {
                        // Its id and type only: the body carries the customer's words.
                        let id = m.get("id").and_then(serde_json::Value::as_str);
                        let kind = m.get("type").and_then(serde_json::Value::as_str);
                        tracing::warn!(id, kind, "a whatsapp message with no sender; skipped")
                    }
                }
            }
            for st in items(value, "statuses") {
                if let Some(event) = parse_status(st) {
                    events.push(event);
                }
            }
        }
    }
    events
}

fn parse_status(st: &Value) -> Option<Event> {
    let status = match s(st, "status")? {
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "read" => DeliveryStatus::Read,
        "failed" => DeliveryStatus::Failed,
        other => {
            tracing::info!(status = other, "whatsapp status not tracked");
            return None;
        }
    };
    let error = items(st, "errors")
        .map(|e| {
            let code = e.get("code").map(|c| c.to_string()).unwrap_or_default();
            let title = s(e, "title").or_else(|| s(e, "message")).unwrap_or("error");
            match e.get("error_data").and_then(|d| s(d, "details")) {
                Some(details) => format!("{code} {title}: {details}"),
                None => format!("{code} {title}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(Event::Status {
        provider_message_id: s(st, "id")?.to_string(),
        status,
        error: (!error.is_empty()).then_some(error),
    })
}

/// The sender: the phone number, or, for users who hide it behind a username, the
/// business-scoped user id.
fn sender<'a>(m: &'a Value, contacts: &[&'a Value]) -> Option<&'a str> {
    s(m, "from")
        .or_else(|| s(m, "from_user_id"))
        .or_else(|| contacts.iter().find_map(|c| s(c, "wa_id")))
        .or_else(|| contacts.iter().find_map(|c| s(c, "user_id")))
}

fn media(kind: &str, obj: &Value) -> Attachment {
    Attachment {
        kind: kind.to_string(),
        media_id: s(obj, "id").map(str::to_string),
        mime_type: s(obj, "mime_type").map(str::to_string),
        file_name: s(obj, "filename").map(str::to_string),
    }
}

fn parse_message(m: &Value, contacts: &[&Value]) -> Option<InboundMessage> {
    let from = sender(m, contacts)?;
    let contact = contacts
        .iter()
        .find(|c| s(c, "wa_id") == Some(from) || s(c, "user_id") == Some(from))
        .or(contacts.first());
    let kind_name = s(m, "type").unwrap_or("unknown");
    let body = m.get(kind_name).unwrap_or(&Value::Null);
    let mut msg = InboundMessage::text(
        Channel::Whatsapp,
        from.to_string(),
        String::new(),
        domain::now(),
    );
    msg.provider_message_id = s(m, "id").map(str::to_string);
    msg.display_name = contact
        .and_then(|c| c.get("profile"))
        .and_then(|p| s(p, "name"))
        .map(|n| helpdesk_core::text::truncate_chars(n, 100).to_string());
    match kind_name {
        "text" => msg.text = s(body, "body").unwrap_or_default().to_string(),
        "image" | "audio" | "video" | "document" | "sticker" => {
            let kind = if kind_name == "audio" && body.get("voice") == Some(&Value::Bool(true)) {
                "voice"
            } else {
                kind_name
            };
            msg.kind = MessageKind::Media;
            msg.attachment = Some(media(kind, body));
            msg.text = s(body, "caption")
                .map(str::to_string)
                .unwrap_or_else(|| format!("[{kind}]"));
        }
        "location" => {
            msg.kind = MessageKind::Media;
            msg.attachment = Some(Attachment {
                kind: "location".into(),
                ..Attachment::default()
            });
            let place: Vec<&str> = [s(body, "name"), s(body, "address")]
                .into_iter()
                .flatten()
                .collect();
            let coords = match (body.get("latitude"), body.get("longitude")) {
                (Some(la), Some(lo)) => format!(" ({la}, {lo})"),
                _ => String::new(),
            };
            msg.text = format!("[location] {}{coords}", place.join(", "));
        }
        "contacts" => {
            msg.kind = MessageKind::Media;
            msg.attachment = Some(Attachment {
                kind: "contacts".into(),
                ..Attachment::default()
            });
            let cards: Vec<String> = body
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let name = c
                        .get("name")
                        .and_then(|n| s(n, "formatted_name"))
                        .unwrap_or("?");
                    let phones: Vec<&str> =
                        items(c, "phones").filter_map(|p| s(p, "phone")).collect();
                    format!("{name} {}", phones.join(", ")).trim().to_string()
                })
                .collect();
            msg.text = format!("[contacts] {}", cards.join("; "));
        }
        "interactive" => {
            let reply_type = s(body, "type").unwrap_or_default();
            let reply = body.get(reply_type).unwrap_or(&Value::Null);
            msg.kind = MessageKind::Button;
            let title = s(reply, "title").unwrap_or(reply_type);
            msg.text = title.to_string();
            msg.button = s(reply, "id").map(|id| ButtonPress {
                data: id.to_string(),
                callback_id: None,
            });
        }
        "button" => {
            // A quick-reply button of a template.
            msg.kind = MessageKind::Button;
            msg.text = s(body, "text")
                .or_else(|| s(body, "payload"))
                .unwrap_or("[button]")
                .to_string();
            msg.button = s(body, "payload").map(|p| ButtonPress {
                data: p.to_string(),
                callback_id: None,
            });
        }
        "reaction" => {
            msg.kind = MessageKind::Unsupported;
            msg.text = format!("[reaction] {}", s(body, "emoji").unwrap_or("(removed)"));
        }
        other => {
            msg.kind = MessageKind::Unsupported;
            let why = items(m, "errors")
                .find_map(|e| s(e, "title").or_else(|| s(e, "message")))
                .map(|t| format!(": {t}"))
                .unwrap_or_default();
            msg.text = format!("[{other}{why}]");
            msg.attachment = Some(Attachment {
                kind: other.to_string(),
                ..Attachment::default()
            });
        }
    }
    if msg.text.trim().is_empty() {
        msg.text = format!("[{kind_name}]");
    }
    msg.text = helpdesk_core::text::truncate_chars(&msg.text, crate::MAX_TEXT_CHARS).to_string();
    Some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(message: Value) -> InboundMessage {
        let payload = json!({"entry": [{"changes": [{"value": {
            "contacts": [{"profile": {"name": "李雷"}, "wa_id": "8613800000000"}],
            "messages": [message]}}]}]});
        match parse_notification(&payload, "1").pop() {
            Some(Event::Message(m)) => *m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn media_keep_type_id_and_caption() {
        let m = one(
            json!({"from": "8613800000000", "id": "wamid.1", "type": "image",
            "image": {"id": "media-9", "mime_type": "image/jpeg", "caption": "屏幕碎了"}}),
        );
        assert_eq!(m.kind, MessageKind::Media);
        assert_eq!(m.text, "屏幕碎了");
        let a = m.attachment.unwrap();
        assert_eq!(
            (a.kind.as_str(), a.media_id.as_deref()),
            ("image", Some("media-9"))
        );
        assert_eq!(m.display_name.as_deref(), Some("李雷"));
        let v = one(json!({"from": "1", "type": "audio", "audio": {"id": "a", "voice": true}}));
        assert_eq!(
            (v.text.as_str(), v.attachment.unwrap().kind.as_str()),
            ("[voice]", "voice")
        );
    }

    #[test]
    fn a_message_without_from_uses_the_business_scoped_id() {
        let payload = json!({"entry": [{"changes": [{"value": {
            "contacts": [{"profile": {"name": "x"}, "user_id": "US.1349120865530274"}],
            "messages": [{"id": "wamid.2", "type": "text", "text": {"body": "hi"}}]}}]}]});
        let Some(Event::Message(m)) = parse_notification(&payload, "1").pop() else {
            panic!()
        };
        assert_eq!(m.external_id, "US.1349120865530274");
    }

    #[test]
    fn unknown_types_and_broken_shapes_are_kept_not_fatal() {
        let m = one(json!({"from": "1", "id": "w", "type": "order", "order": {}}));
        assert_eq!(m.kind, MessageKind::Unsupported);
        assert_eq!(m.text, "[order]");
        assert!(parse_notification(&json!({"entry": "nope"}), "1").is_empty());
        assert!(parse_notification(&json!([1, 2]), "1").is_empty());
        let m = one(json!({"from": "1", "type": "text", "text": 5}));
        assert_eq!(m.text, "[text]");
    }

    #[test]
    fn changes_for_another_number_are_skipped() {
        let change = |id: &str, wamid: &str| {
            json!({"value": {"metadata": {"phone_number_id": id},
                "messages": [{"from": "1", "id": wamid, "type": "text", "text": {"body": "hi"}}]}})
        };
        let payload = json!({"entry": [{"changes": [change("999", "wamid.other"), change("1", "wamid.ours")]}]});
        let ids: Vec<_> = parse_notification(&payload, "1")
            .into_iter()
            .map(|e| match e {
                Event::Message(m) => m.provider_message_id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, vec![Some("wamid.ours".to_string())]);
    }

    #[test]
    fn failed_receipts_carry_the_providers_reason() {
        let payload = json!({"entry": [{"changes": [{"value": {"statuses": [
            {"id": "wamid.9", "status": "failed", "errors": [{"code": 131047,
              "title": "Re-engagement message", "error_data": {"details": "more than 24 hours"}}]},
            {"id": "wamid.9", "status": "deleted"}]}}]}]});
        assert_eq!(
            parse_notification(&payload, "1"),
            vec![Event::Status {
                provider_message_id: "wamid.9".into(),
                status: DeliveryStatus::Failed,
                error: Some("131047 Re-engagement message: more than 24 hours".into()),
            }]
        );
    }
}
