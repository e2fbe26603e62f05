//! The senders: one per channel, plus the supervisor webhook. Provider base URLs are
//! configurable, so tests point them at a local fake provider.

use async_trait::async_trait;
use helpdesk_core::domain::{Customer, DeliveryStatus, Message};
use helpdesk_core::ports::{ChannelSender, Receipt, SendError};
use std::time::Duration;

/// Webchat has no provider: the visitor's browser polls the conversation, so a message is
/// delivered once it is in the store.
pub struct WebchatSender;

#[async_trait]
impl ChannelSender for WebchatSender {
    async fn send(&self, _: &Customer, _: &Message) -> Result<Receipt, SendError> {
        Ok(Receipt {
            provider_message_id: None,
            status: DeliveryStatus::Delivered,
        })
    }
}

/// Classifies an HTTP answer: 2xx done, 429 and 5xx worth retrying, other 4xx final.
pub(crate) fn classify(status: reqwest::StatusCode, body: &str) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let reason = format!(
        "{status}: {}",
        helpdesk_core::text::truncate_chars(body, 500)
    );
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(SendError::Temporary {
            reason,
            retry_after_secs: None,
        })
    } else {
        Err(SendError::Permanent { reason })
    }
}

pub(crate) fn transport_error(e: reqwest::Error) -> SendError {
    SendError::Temporary {
        reason: format!("request failed: {e}"),
        retry_after_secs: None,
    }
}

/// Posts escalation notices as JSON to `SUPERVISOR_WEBHOOK_URL`.
#[derive(Clone)]
pub struct SupervisorWebhook {
    client: reqwest::Client,
    url: String,
}

impl SupervisorWebhook {
    pub fn new(client: reqwest::Client, url: String) -> Self {
        SupervisorWebhook { client, url }
    }

    /// Posts `notice`, with its `id` as the `Idempotency-Key` header.
    pub async fn post<N: serde::Serialize + Sync>(
        &self,
        notice: &N,
        id: &str,
    ) -> Result<(), SendError> {
        let response = self
            .client
            .post(&self.url)
            .timeout(Duration::from_secs(10))
            .header("Idempotency-Key", id)
            .json(notice)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        classify(status, &body)
    }
}
