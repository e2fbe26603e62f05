//! Telegram Bot API sender: `sendMessage`, texts over 4096 characters split on character
//! boundaries, paced per chat and overall; surveys as an inline keyboard of 1-5, whose
//! presses come back as callback queries that are answered with `answerCallbackQuery`.

use crate::pacer::Pacer;
use crate::provider::{Caller, Failure};
use async_trait::async_trait;
use helpdesk_core::channels::TelegramConfig;
use helpdesk_core::domain::{Channel, Customer, DeliveryStatus, Message, MessageKind};
use helpdesk_core::ports::{ChannelSender, Receipt, SendError, Store};
use std::sync::Arc;

use crate::parts::Parts;
use helpdesk_core::{survey_token, text};
use serde_json::{json, Value};

/// The longest text `sendMessage` takes.
pub const MAX_CHARS: usize = 4096;

pub struct TelegramSender {
    config: TelegramConfig,
    caller: Caller,
    pacer: Pacer,
    /// Where each part of a split text is recorded as it goes out.
    store: Arc<dyn Store>,
}

fn describe(body: &Value) -> (Option<i64>, Option<String>, Option<u64>) {
    (
        body.get("error_code").and_then(Value::as_i64),
        body.get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        body.get("parameters")
            .and_then(|p| p.get("retry_after"))
            .and_then(Value::as_u64),
    )
}

pub(crate) fn send_error(f: Failure) -> SendError {
    if f.ambiguous {
        SendError::Ambiguous { reason: f.reason }
    } else if f.permanent {
        SendError::Permanent { reason: f.reason }
    } else {
        SendError::Temporary {
            reason: f.reason,
            retry_after_secs: f.retry_after_secs,
        }
    }
}

/// The customer's chat on a channel: the identity they last wrote from there.
pub(crate) fn identity(customer: &Customer, channel: Channel) -> Result<&str, SendError> {
    customer
        .identities
        .iter()
        .rev()
        .find(|i| i.channel == channel)
        .map(|i| i.external_id.as_str())
        .ok_or_else(|| SendError::Permanent {
            reason: format!("the customer has no {} identity", channel.as_str()),
        })
}

impl TelegramSender {
    pub fn new(config: TelegramConfig, caller: Caller, store: Arc<dyn Store>) -> Self {
        let pacer = Pacer::new(config.per_chat_per_sec, config.overall_per_sec);
        TelegramSender {
            config,
            caller,
            pacer,
            store,
        }
    }

    fn url(&self, method: &str) -> String {
        format!(
            "{}/bot{}/{method}",
            self.config.api_base, self.config.bot_token
        )
    }
}

/// The survey's five star buttons, each carrying the proof of its signed link (see
/// [`survey_token::button_data`]); None when the message has no link to build them from.
fn survey_keyboard(message: &Message) -> Option<Value> {
    let token = message.link.as_deref()?.rsplit('/').next()?;
    let row = (1..=5u8)
        .map(|n| {
            let data = survey_token::button_data(token, n)?;
            Some(json!({"text": "★".repeat(n as usize), "callback_data": data}))
        })
        .collect::<Option<Vec<Value>>>()?;
    // Five stars do not fit one row on a phone; 1-3 above 4-5.
    Some(json!({"inline_keyboard": [row[..3].to_vec(), row[3..].to_vec()]}))
}

#[async_trait]
impl ChannelSender for TelegramSender {
    async fn send(&self, customer: &Customer, message: &Message) -> Result<Receipt, SendError> {
        let chat = identity(customer, Channel::Telegram)?;
        // Numeric ids go as numbers, as the Bot API documents them; anything else as given.
        let chat_id = chat
            .parse::<i64>()
            .map_or_else(|_| json!(chat), |n| json!(n));
        let parts = text::split_chars(&message.text, MAX_CHARS);
        let last = parts.len().saturating_sub(1);
        let mut first_id = None;
        let sent_parts = Parts::new(self.store.as_ref(), &message.id, parts.len());
        for (i, part) in parts.iter().enumerate() {
            if let Some(sent) = sent_parts.sent(i).await? {
                if first_id.is_none() {
                    first_id = sent.parse::<i64>().ok();
                }
                continue;
            }
            let mut body = json!({"chat_id": chat_id, "text": part});
            if i == last && message.kind == MessageKind::Survey {
                if let Some(keyboard) = survey_keyboard(message) {
                    body["reply_markup"] = keyboard;
                }
            }
            self.pacer.wait(chat).await;
            let answer = self
                .caller
                .post(&self.url("sendMessage"), None, &body, describe)
                .await
                .map_err(send_error)?;
            self.pacer.sent(chat);
            let id = answer
                .get("result")
                .and_then(|r| r.get("message_id"))
                .and_then(Value::as_i64);
            sent_parts
                .record(i, id.map(|n| n.to_string()).as_deref())
                .await?;
            if first_id.is_none() {
                first_id = id;
            }
        }
        Ok(Receipt {
            provider_message_id: first_id.map(|id| format!("{chat}:{id}")),
            status: DeliveryStatus::Sent,
        })
    }

    async fn acknowledge(&self, callback_id: &str, text: &str) -> Result<(), SendError> {
        let body = json!({"callback_query_id": callback_id, "text": text});
        self.caller
            .post(&self.url("answerCallbackQuery"), None, &body, describe)
            .await
            .map(drop)
            .map_err(send_error)
    }
}
