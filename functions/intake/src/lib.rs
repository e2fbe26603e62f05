//! Intake: where customer messages enter. It checks who is writing, drops what it has
//! already taken, and puts the message on the inbound queue, answering fast; everything
//! slower happens behind the queue.
//!
//! Routes: the webchat channel (`/webchat/...`) and the provider webhooks
//! (`/webhooks/whatsapp`, `/webhooks/telegram`).

pub mod telegram;
pub mod webchat;
pub mod whatsapp;

use helpdesk_core::channels::{TelegramConfig, WhatsappConfig};
use helpdesk_core::domain::{self, derived_id, InboundMessage};
use helpdesk_core::jobs;
use helpdesk_core::ports::{Queue, Store};
use helpdesk_core::survey_token::{self, SurveySigner};
use helpdesk_core::Result;
use std::sync::Arc;

/// WhatsApp retries a delivery for up to 7 days; a duplicate must be recognised that long.
pub const DEDUPE_TTL_SECS: i64 = 8 * 24 * 3600;

pub use helpdesk_core::text::MAX_TEXT_CHARS;

pub struct Deps {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    /// None when the channel is off: its webhook answers 503.
    pub whatsapp: Option<WhatsappConfig>,
    pub telegram: Option<TelegramConfig>,
    /// Checks the signature survey buttons carry; None lets no survey button through.
    pub survey_signer: Option<SurveySigner>,
}

/// Whether a message may go on: anything but a survey button, or a survey button whose
/// signature holds. Clients can send any button payload, so a forged, tampered, unsigned or
/// expired one is dropped here, logged by its ids only, and never reaches a ticket.
pub fn genuine_button(deps: &Deps, message: &InboundMessage) -> bool {
    let Some(data) = message.button.as_ref().map(|b| b.data.as_str()) else {
        return true;
    };
    if !survey_token::is_survey_button(data) {
        return true;
    }
    let verified = deps
        .survey_signer
        .as_ref()
        .and_then(|s| s.verify_button(data, domain::now()));
    if verified.is_none() {
        tracing::warn!(
            channel = message.channel.as_str(),
            provider_message_id = message.provider_message_id.as_deref(),
            "survey button with a bad, missing or expired signature; ignored"
        );
    }
    verified.is_some()
}

/// Takes an inbound message once: the first delivery under `dedupe_key` is queued and its
/// message id returned; a repeat returns the same id and queues nothing.
pub async fn accept(
    deps: &Deps,
    dedupe_key: Option<&str>,
    message: InboundMessage,
) -> Result<String> {
    if let Some(key) = dedupe_key {
        if let Some(first) = taken_as(deps, key).await? {
            return Ok(first);
        }
    }
    accept_new(deps, dedupe_key, message).await
}

/// The message id the first delivery under `dedupe_key` was taken as, if one was: a repeat
/// is answered with it and changes nothing.
pub async fn taken_as(deps: &Deps, dedupe_key: &str) -> Result<Option<String>> {
    let first = deps.store.claimed(dedupe_key).await?;
    if let Some(first) = &first {
        tracing::info!(key = dedupe_key, message_id = %first, "duplicate delivery ignored");
    }
    Ok(first)
}

/// Queues a message that [`taken_as`] found no earlier delivery of, and records it under
/// `dedupe_key`; for a caller that has a step between the two (webchat counts only new
/// messages against its limit).
///
/// The key is recorded only after the message is queued, and the message's id is derived
/// from the key: a crash between the two leaves no record, so the provider's retry queues
/// the message again, under the same id, and the router takes it once. Recording first
/// would answer every retry "duplicate" for a message that was never queued.
pub async fn accept_new(
    deps: &Deps,
    dedupe_key: Option<&str>,
    mut message: InboundMessage,
) -> Result<String> {
    if let Some(key) = dedupe_key {
        message.id = derived_id(key, "inbound");
    }
    jobs::send(deps.queue.as_ref(), &message).await?;
    if let Some(key) = dedupe_key {
        deps.store.claim(key, &message.id, DEDUPE_TTL_SECS).await?;
    }
    tracing::info!(message_id = %message.id, channel = message.channel.as_str(), "message accepted");
    Ok(message.id)
}

/// The intake routes. None of their answers is kept by a cache (`no-store`): the webchat
/// poll holds the visitor's conversation.
pub fn router(deps: Arc<Deps>) -> axum::Router {
    webchat::routes()
        .merge(whatsapp::routes())
        .merge(telegram::routes())
        .layer(axum::middleware::map_response(
            helpdesk_core::http::no_store_by_default,
        ))
        .with_state(deps)
}
