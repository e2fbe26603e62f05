//! Telegram Bot API webhooks. Telegram proves itself with the secret given to setWebhook;
//! each update has an `update_id`, which is what redeliveries are recognised by.
//!
//! The updates that matter are `message` (of any content type), `edited_message` (recorded
//! against the original, never a new ticket) and `callback_query` (a button press). Others
//! are acknowledged and dropped: they come from no customer.

use crate::{accept, Deps};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use helpdesk_core::domain::{self, Attachment, ButtonPress, Channel, InboundMessage, MessageKind};
use helpdesk_core::http::body_bytes;
use helpdesk_core::json::parse_from_provider;
use helpdesk_core::{Error, ErrorKind, Result};
use serde_json::Value;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new().route("/webhooks/telegram", post(update))
}

async fn update(State(deps): State<Arc<Deps>>, req: Request) -> Result<Response> {
    let config = deps.telegram.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Unavailable,
            "channel_disabled",
            "the telegram channel is off: TELEGRAM_SECRET_TOKEN and TELEGRAM_BOT_TOKEN are not set",
        )
    })?;
    let given = req
        .headers()
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes().to_vec())
        .ok_or_else(|| {
            Error::unauthorized("the X-Telegram-Bot-Api-Secret-Token header is missing")
        })?;
    if !crate::whatsapp::constant_time_eq(&given, config.secret_token.as_bytes()) {
        return Err(Error::unauthorized(
            "X-Telegram-Bot-Api-Secret-Token does not match",
        ));
    }
    let body = body_bytes(req, &()).await?;
    let payload = parse_from_provider(&body)?;
    match parse_update(&payload) {
        Some(message) if !crate::genuine_button(&deps, &message) => {}
        Some(message) => {
            let key = payload
                .get("update_id")
                .and_then(Value::as_i64)
                .map(|id| format!("telegram:{id}"));
            accept(&deps, key.as_deref(), message).await?;
        }
        // Ids and kinds only: an update's body carries customers' names and words.
        None => {
            let update_id = payload.get("update_id").and_then(serde_json::Value::as_i64);
            let kinds: Vec<&String> = payload
                .as_object()
                .map(|o| o.keys().filter(|k| *k != "update_id").collect())
                .unwrap_or_default();
            tracing::info!(
                update_id,
                ?kinds,
                "telegram update with nothing for the desk"
            )
        }
    }
    Ok("ok".into_response())
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn id(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_i64).map(|n| n.to_string())
}

fn display_name(from: &Value) -> Option<String> {
    let full = [s(from, "first_name"), s(from, "last_name")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let name = if full.is_empty() {
        s(from, "username")?.to_string()
    } else {
        full
    };
    Some(helpdesk_core::text::truncate_chars(&name, 100).to_string())
}

/// The desk's message for an update, or None when it is not one a customer sent.
pub fn parse_update(update: &Value) -> Option<InboundMessage> {
    if let Some(m) = update.get("message") {
        return parse_message(m);
    }
    if let Some(m) = update.get("edited_message") {
        let mut msg = parse_message(m)?;
        msg.edit_of = msg.provider_message_id.take();
        msg.kind = MessageKind::Edit;
        return Some(msg);
    }
    let q = update.get("callback_query")?;
    let from = q.get("from").unwrap_or(&Value::Null);
    // Replies go to the chat the button was in; an inline-mode button has none, so the
    // presser's own chat.
    let chat = q
        .get("message")
        .and_then(|m| m.get("chat"))
        .and_then(|c| id(c, "id"))
        .or_else(|| id(from, "id"))?;
    let data = s(q, "data").unwrap_or_default();
    let mut msg = InboundMessage::text(
        Channel::Telegram,
        chat,
        if data.is_empty() {
            "[button]".into()
        } else {
            data.to_string()
        },
        domain::now(),
    );
    msg.kind = MessageKind::Button;
    msg.display_name = display_name(from);
    msg.locale = s(from, "language_code").map(str::to_string);
    msg.button = Some(ButtonPress {
        data: data.to_string(),
        callback_id: s(q, "id").map(str::to_string),
    });
    Some(msg)
}

/// Content keys of a Telegram message that carry a file, in the order they are looked for.
const MEDIA: [&str; 8] = [
    "photo",
    "voice",
    "audio",
    "video",
    "video_note",
    "animation",
    "document",
    "sticker",
];

/// Keys every message may have that say nothing about its content.
const META: [&str; 22] = [
    "message_id",
    "message_thread_id",
    "from",
    "sender_chat",
    "date",
    "chat",
    "edit_date",
    "forward_origin",
    "forward_from",
    "forward_from_chat",
    "forward_date",
    "reply_to_message",
    "via_bot",
    "entities",
    "caption_entities",
    "has_protected_content",
    "author_signature",
    "media_group_id",
    "link_preview_options",
    "reply_markup",
    "is_topic_message",
    "business_connection_id",
];

fn parse_message(m: &Value) -> Option<InboundMessage> {
    let chat = m.get("chat").and_then(|c| id(c, "id"))?;
    let from = m.get("from").unwrap_or(&Value::Null);
    if from.get("is_bot") == Some(&Value::Bool(true)) {
        return None;
    }
    let mut msg = InboundMessage::text(
        Channel::Telegram,
        chat.clone(),
        String::new(),
        domain::now(),
    );
    msg.provider_message_id = id(m, "message_id").map(|mid| format!("{chat}:{mid}"));
    msg.display_name = display_name(from).or_else(|| m.get("chat").and_then(display_name));
    msg.locale = s(from, "language_code").map(str::to_string);
    let caption = s(m, "caption").map(str::to_string);
    if let Some(text) = s(m, "text") {
        msg.text = text.to_string();
    } else if let Some(kind) = MEDIA.iter().find(|k| m.get(**k).is_some()) {
        let obj = m.get(*kind).unwrap_or(&Value::Null);
        // A photo comes in several sizes, smallest first.
        let file = match obj.as_array() {
            Some(sizes) => sizes.last().unwrap_or(&Value::Null),
            None => obj,
        };
        msg.kind = MessageKind::Media;
        msg.attachment = Some(Attachment {
            kind: if *kind == "photo" { "image" } else { kind }.to_string(),
            media_id: s(file, "file_id").map(str::to_string),
            mime_type: s(file, "mime_type").map(str::to_string),
            file_name: s(file, "file_name").map(str::to_string),
        });
        msg.text = caption
            .or_else(|| s(file, "emoji").map(str::to_string))
            .unwrap_or_else(|| format!("[{kind}]"));
    } else if let Some(loc) = m.get("venue").or_else(|| m.get("location")) {
        let place = loc.get("location").unwrap_or(loc);
        msg.kind = MessageKind::Media;
        msg.attachment = Some(Attachment {
            kind: "location".into(),
            ..Attachment::default()
        });
        let name = [s(loc, "title"), s(loc, "address")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
        let coords = match (place.get("latitude"), place.get("longitude")) {
            (Some(la), Some(lo)) => format!(" ({la}, {lo})"),
            _ => String::new(),
        };
        msg.text = format!("[location] {name}{coords}");
    } else if let Some(c) = m.get("contact") {
        msg.kind = MessageKind::Media;
        msg.attachment = Some(Attachment {
            kind: "contacts".into(),
            ..Attachment::default()
        });
        let name = display_name(c).unwrap_or_default();
        msg.text = format!(
            "[contacts] {name} {}",
            s(c, "phone_number").unwrap_or_default()
        )
        .trim()
        .to_string();
    } else {
        let other = m
            .as_object()
            .and_then(|o| o.keys().find(|k| !META.contains(&k.as_str())))
            .map_or("unknown", String::as_str)
            .to_string();
        msg.kind = MessageKind::Unsupported;
        msg.text = format!("[{other}]");
        msg.attachment = Some(Attachment {
            kind: other,
            ..Attachment::default()
        });
    }
    msg.text = helpdesk_core::text::truncate_chars(&msg.text, crate::MAX_TEXT_CHARS).to_string();
    Some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(content: Value) -> InboundMessage {
        let mut m = json!({"message_id": 7, "date": 1, "chat": {"id": -100, "type": "private"},
                           "from": {"id": 5, "is_bot": false, "first_name": "韩", "last_name": "梅梅"}});
        for (k, v) in content.as_object().unwrap() {
            m[k] = v.clone();
        }
        parse_update(&json!({"update_id": 1, "message": m})).unwrap()
    }

    #[test]
    fn every_content_type_becomes_an_entry() {
        let p = message(
            json!({"photo": [{"file_id": "small"}, {"file_id": "big"}], "caption": "发票"}),
        );
        assert_eq!((p.kind, p.text.as_str()), (MessageKind::Media, "发票"));
        assert_eq!(p.attachment.unwrap().media_id.as_deref(), Some("big"));
        assert_eq!(p.display_name.as_deref(), Some("韩 梅梅"));
        assert_eq!(p.provider_message_id.as_deref(), Some("-100:7"));
        let d = message(json!({"document": {"file_id": "f", "file_name": "a.pdf"}}));
        assert_eq!(d.text, "[document]");
        let l = message(json!({"location": {"latitude": 31.2, "longitude": 121.5}}));
        assert_eq!(l.text, "[location]  (31.2, 121.5)");
        let poll = message(json!({"poll": {"id": "p"}}));
        assert_eq!(
            (poll.kind, poll.text.as_str()),
            (MessageKind::Unsupported, "[poll]")
        );
    }

    #[test]
    fn edits_point_at_the_original_and_buttons_keep_their_query() {
        let e = parse_update(&json!({"update_id": 2, "edited_message": {
            "message_id": 7, "chat": {"id": 42}, "text": "改一下"}}))
        .unwrap();
        assert_eq!(
            (e.kind, e.edit_of.as_deref()),
            (MessageKind::Edit, Some("42:7"))
        );
        let b = parse_update(&json!({"update_id": 3, "callback_query": {
            "id": "cq1", "from": {"id": 42}, "data": "s:t:5:1:AAAAAAAAAAA"}}))
        .unwrap();
        assert_eq!(b.external_id, "42");
        assert_eq!(b.button.unwrap().callback_id.as_deref(), Some("cq1"));
        assert!(parse_update(&json!({"update_id": 4, "my_chat_member": {}})).is_none());
        assert!(parse_update(&json!({"update_id": 5, "message": {"text": "no chat"}})).is_none());
    }
}
