//! WhatsApp Cloud API sender. Within 24 hours of the customer's last message the desk may
//! write freely; after that only an approved template goes through (error 131047 says so),
//! so the sender picks the form from the conversation, and falls back to the template when
//! WhatsApp refuses the text anyway. Surveys are an interactive list of 1-5 inside the
//! window (reply buttons stop at three) and a template with a URL button outside it.

use crate::parts::Parts;
use crate::provider::{Caller, Failure};
use crate::telegram::{identity, send_error};
use async_trait::async_trait;
use chrono::Duration;
use helpdesk_core::channels::{Template, WhatsappConfig};
use helpdesk_core::domain::{self, Channel, Customer, DeliveryStatus, Message, MessageKind};
use helpdesk_core::ports::{ChannelSender, Receipt, SendError, Store};
use helpdesk_core::{survey_token, text};
use serde_json::{json, Value};
use std::sync::Arc;

/// The longest text body the Cloud API takes.
pub const MAX_CHARS: usize = 4096;
/// WhatsApp's error for a free-form message outside the customer-service window.
pub const OUTSIDE_WINDOW: i64 = 131047;

pub struct WhatsappSender {
    config: WhatsappConfig,
    caller: Caller,
    store: Arc<dyn Store>,
}

fn describe(body: &Value) -> (Option<i64>, Option<String>, Option<u64>) {
    let e = body.get("error").unwrap_or(&Value::Null);
    let message = e.get("message").and_then(Value::as_str);
    let details = e
        .get("error_data")
        .and_then(|d| d.get("details"))
        .and_then(Value::as_str);
    let code = e.get("code").and_then(Value::as_i64);
    let reason = match (code, message, details) {
        (_, None, None) => None,
        (c, m, d) => Some(
            [
                c.map(|c| c.to_string()),
                m.map(str::to_string),
                d.map(str::to_string),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
        ),
    };
    (code, reason, None)
}

impl WhatsappSender {
    pub fn new(config: WhatsappConfig, caller: Caller, store: Arc<dyn Store>) -> Self {
        WhatsappSender {
            config,
            caller,
            store,
        }
    }

    async fn post(&self, to: &str, content: Value) -> Result<Option<String>, Failure> {
        let mut body =
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to});
        if let (Some(b), Some(c)) = (body.as_object_mut(), content.as_object()) {
            b.extend(c.clone());
        }
        let url = format!(
            "{}/{}/messages",
            self.config.api_base, self.config.phone_number_id
        );
        let answer = self
            .caller
            .post(&url, Some(&self.config.access_token), &body, describe)
            .await?;
        Ok(answer
            .get("messages")
            .and_then(|m| m.get(0))
            .and_then(|m| m.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    async fn within_window(&self, customer: &Customer) -> Result<bool, SendError> {
        let last = self
            .store
            .last_inbound_at(&customer.id, Channel::Whatsapp)
            .await
            .map_err(|e| SendError::Temporary {
                reason: e.message,
                retry_after_secs: None,
            })?;
        // A little margin: a reply that leaves at 23:59:59 may arrive after the window.
        Ok(last.is_some_and(|t| domain::now() - t < Duration::hours(24) - Duration::minutes(1)))
    }

    /// The configured template, carrying the text as its one body variable (which may not
    /// hold newlines and is at most 1024 characters).
    async fn send_template(&self, to: &str, text_body: &str) -> Result<Option<String>, SendError> {
        let Some(t) = &self.config.template else {
            return Err(SendError::Permanent {
                reason: format!(
                    "{OUTSIDE_WINDOW}: the customer last wrote more than 24 hours ago and no \
                     template is configured (WHATSAPP_TEMPLATE_NAME)"
                ),
            });
        };
        let flat: String = text_body
            .chars()
            .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
            .collect();
        let param = text::truncate_chars(flat.trim(), 1024);
        let content = template(
            t,
            json!([{"type": "body", "parameters": [{"type": "text", "text": param}]}]),
        );
        self.post(to, content).await.map_err(send_error)
    }

    async fn send_text(&self, to: &str, message: &Message) -> Result<Option<String>, SendError> {
        let parts = text::split_chars(&message.text, MAX_CHARS);
        let sent_parts = Parts::new(self.store.as_ref(), &message.id, parts.len());
        let mut first = None;
        for (i, part) in parts.iter().enumerate() {
            if let Some(sent) = sent_parts.sent(i).await? {
                first = first.or(Some(sent).filter(|id| !id.is_empty()));
                continue;
            }
            let content = json!({"type": "text", "text": {"preview_url": message.link.is_some(), "body": part}});
            match self.post(to, content).await {
                Ok(id) => {
                    sent_parts.record(i, id.as_deref()).await?;
                    first = first.or(id);
                }
                // WhatsApp knows the window better than our clock: do what it says.
                Err(f) if f.code == Some(OUTSIDE_WINDOW) && i == 0 => {
                    return self.send_template(to, &message.text).await
                }
                Err(f) => return Err(send_error(f)),
            }
        }
        Ok(first)
    }

    async fn send_survey(
        &self,
        to: &str,
        message: &Message,
        within: bool,
    ) -> Result<Option<String>, SendError> {
        let token = message.link.as_deref().and_then(|l| l.rsplit('/').next());
        // Each row carries the proof of the signed link, as Telegram's buttons do.
        let rows: Option<Vec<Value>> = token.and_then(|token| {
            (1..=5u8)
                .rev()
                .map(|n| {
                    let id = survey_token::button_data(token, n)?;
                    Some(json!({"id": id, "title": format!("{n} {}", "★".repeat(n as usize))}))
                })
                .collect()
        });
        if within {
            let Some(rows) = rows else {
                return self.send_text(to, message).await;
            };
            let body = text::truncate_chars(&message.text, 1024);
            let content = json!({"type": "interactive", "interactive": {
                "type": "list",
                "body": {"text": body},
                "action": {"button": "1-5 ★", "sections": [{"title": "1-5", "rows": rows}]}}});
            return self.post(to, content).await.map_err(send_error);
        }
        match (&self.config.survey_template, token) {
            (Some(t), Some(token)) => {
                let content = template(
                    t,
                    json!([{"type": "button", "sub_type": "url", "index": "0",
                    "parameters": [{"type": "text", "text": token}]}]),
                );
                self.post(to, content).await.map_err(send_error)
            }
            _ => self.send_template(to, &message.text).await,
        }
    }
}

fn template(t: &Template, components: Value) -> Value {
    json!({"type": "template", "template": {"name": t.name, "language": {"code": t.language}, "components": components}})
}

#[async_trait]
impl ChannelSender for WhatsappSender {
    async fn send(&self, customer: &Customer, message: &Message) -> Result<Receipt, SendError> {
        let to = identity(customer, Channel::Whatsapp)?;
        let within = self.within_window(customer).await?;
        let id = match (&message.ticket_id, message.kind) {
            (Some(_), MessageKind::Survey) => self.send_survey(to, message, within).await?,
            _ if within => self.send_text(to, message).await?,
            _ => self.send_template(to, &message.text).await?,
        };
        Ok(Receipt {
            provider_message_id: id,
            status: DeliveryStatus::Sent,
        })
    }
}
