//! Dispatch: delivers what the desk says. Customer messages go out on their channel; notices
//! to supervisors go to their webhook. A message is delivered only while it is still
//! queued, so a redelivered job sends nothing twice.

mod pacer;
mod parts;
pub mod provider;
mod senders;
mod telegram;
mod whatsapp;

pub use pacer::Pacer;
pub use provider::{Caller, Retry};
pub use senders::{SupervisorWebhook, WebchatSender};
pub use telegram::TelegramSender;
pub use whatsapp::WhatsappSender;

use helpdesk_core::domain::{
    AgentNotice, Channel, DeliveryStatus, OutboundMessage, SupervisorNotice,
};
use helpdesk_core::ports::{ChannelSender, SendError, Store};
use helpdesk_core::{flow, Error, Result};
use std::sync::Arc;

pub struct Deps {
    pub store: Arc<dyn Store>,
    pub webchat: Arc<dyn ChannelSender>,
    pub whatsapp: Option<Arc<dyn ChannelSender>>,
    pub telegram: Option<Arc<dyn ChannelSender>>,
    pub supervisor: Option<SupervisorWebhook>,
    /// `AGENT_WEBHOOK_URL`: told when a ticket is given to an agent.
    pub agent: Option<SupervisorWebhook>,
    /// How long a sender holds a message it sends: longer than a send with its retries
    /// takes, shorter than the outbound queue's visibility timeout.
    pub send_lease_secs: i64,
}

impl Deps {
    /// The senders of the configured channels, sharing one HTTP client; the same wiring
    /// for the local program and the Lambda function.
    pub fn new(
        store: Arc<dyn Store>,
        channels: &helpdesk_core::channels::ChannelsConfig,
        http: reqwest::Client,
        supervisor_webhook_url: Option<String>,
    ) -> Deps {
        let caller = Caller {
            http: http.clone(),
            timeout: channels.send_timeout,
            retry: Retry::default(),
        };
        Deps {
            webchat: Arc::new(WebchatSender),
            whatsapp: channels.whatsapp.clone().map(|c| {
                Arc::new(WhatsappSender::new(c, caller.clone(), store.clone()))
                    as Arc<dyn ChannelSender>
            }),
            telegram: channels.telegram.clone().map(|c| {
                Arc::new(TelegramSender::new(c, caller.clone(), store.clone()))
                    as Arc<dyn ChannelSender>
            }),
            supervisor: supervisor_webhook_url.map(|url| SupervisorWebhook::new(http.clone(), url)),
            agent: None,
            send_lease_secs: channels.send_lease.as_secs() as i64,
            store,
        }
    }

    /// Posts assignment notices to `url` too.
    pub fn with_agent_webhook(mut self, http: reqwest::Client, url: Option<String>) -> Deps {
        self.agent = url.map(|url| SupervisorWebhook::new(http, url));
        self
    }

    fn sender(&self, channel: Channel) -> Option<&Arc<dyn ChannelSender>> {
        match channel {
            Channel::Webchat => Some(&self.webchat),
            Channel::Whatsapp => self.whatsapp.as_ref(),
            Channel::Telegram => self.telegram.as_ref(),
        }
    }
}

pub async fn handle(deps: &Deps, job: OutboundMessage) -> Result<()> {
    match job {
        OutboundMessage::Customer { message_id } => deliver(deps, &message_id).await,
        OutboundMessage::Supervisor(notice) => notify_supervisor(deps, &notice).await,
        OutboundMessage::Agent(notice) => notify_agent(deps, &notice).await,
        OutboundMessage::Acknowledge {
            channel,
            callback_id,
            text,
        } => {
            let Some(sender) = deps.sender(channel) else {
                return Ok(());
            };
            match sender.acknowledge(&callback_id, &text).await {
                Ok(()) => Ok(()),
                Err(SendError::Temporary { reason, .. } | SendError::Ambiguous { reason }) => {
                    Err(Error::internal(reason))
                }
                // An old or already answered query: the customer's app gave up waiting.
                Err(SendError::Permanent { reason }) => {
                    tracing::info!(reason, "button press not acknowledged");
                    Ok(())
                }
            }
        }
    }
}

async fn deliver(deps: &Deps, message_id: &str) -> Result<()> {
    let store = deps.store.as_ref();
    let message = store
        .get_message(message_id)
        .await?
        .ok_or_else(|| Error::internal(format!("dispatch of unknown message {message_id}")))?;
    if message.status != Some(DeliveryStatus::Queued) {
        return Ok(());
    }
    let Some(sender) = deps.sender(message.channel) else {
        let reason = format!("the {} channel is not configured", message.channel.as_str());
        store
            .set_delivery(message_id, DeliveryStatus::Failed, None, Some(&reason))
            .await?;
        return Err(Error::unprocessable("channel_disabled", reason));
    };
    // A message written under a customer merged away since (an agent's reply to a ticket
    // read before the merge) goes to the customer that stays, who has their identities.
    let customer = flow::customer_for_job(store, &message.customer_id)
        .await?
        .ok_or_else(|| Error::internal(format!("message {message_id} for an unknown customer")))?;
    // A second copy of this job, here or in another process, finds the claim taken and
    // leaves the message to the first; if the first dies, the lease runs out and the
    // second copy, tried again, sends it.
    if !store
        .claim_delivery(message_id, deps.send_lease_secs)
        .await?
    {
        // Tried again later: by then it was sent (and this job ends), or the holder died and
        // its lease ran out (and this job sends it). Acknowledging now would lose it then.
        return Err(Error::unavailable(
            "in_flight",
            format!("another sender holds message {message_id}"),
        ));
    }
    match sender.send(&customer, &message).await {
        Ok(receipt) => {
            record(
                store,
                message_id,
                receipt.status,
                receipt.provider_message_id.as_deref(),
                None,
            )
            .await
        }
        Err(SendError::Temporary {
            reason,
            retry_after_secs,
        }) => {
            store.release_delivery(message_id).await?;
            let reason = format!(
                "sending on {} failed for now: {reason}",
                message.channel.as_str()
            );
            // The provider said when: the queue brings the job back then (the wait in place
            // is capped below the function's timeout, see `Retry::max_wait`).
            Err(match retry_after_secs {
                Some(secs) => Error::too_many_requests(secs, reason),
                None => Error::internal(reason),
            })
        }
        Err(SendError::Permanent { reason }) => {
            record(
                store,
                message_id,
                DeliveryStatus::Failed,
                None,
                Some(&reason),
            )
            .await?;
            Err(Error::unprocessable("send_failed", reason))
        }
        // The claim is not given back: a retry would send a second copy of a message the
        // customer may have. Failed with the reason, for the agent to see and decide.
        Err(SendError::Ambiguous { reason }) => {
            let reason = format!(
                "{reason}; the {} provider may have taken it, so it is not sent again",
                message.channel.as_str()
            );
            record(
                store,
                message_id,
                DeliveryStatus::Failed,
                None,
                Some(&reason),
            )
            .await?;
            Err(Error::unprocessable("send_outcome_unknown", reason))
        }
    }
}

/// Records what became of a send, trying again in place while the store fails: until it is
/// recorded, the message looks unsent, and the next lease would send it again. A store's
/// hiccup is short; a lease is long.
async fn record(
    store: &dyn Store,
    message_id: &str,
    status: DeliveryStatus,
    provider_message_id: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    in_place(message_id, || {
        store.set_delivery(message_id, status, provider_message_id, error)
    })
    .await
}

/// Tries to record what was sent until it is recorded, or [`RECORD_TRIES`] times: once a
/// provider took something, a record that failed for a moment must not send it again.
pub(crate) async fn in_place<T, F, Fut>(message_id: &str, mut write: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut delay = std::time::Duration::from_millis(20);
    let mut tries = 1;
    loop {
        match write().await {
            Ok(out) => return Ok(out),
            Err(e) if tries >= RECORD_TRIES => return Err(e),
            Err(e) => {
                tracing::warn!(message_id, error = %e, "recording a send failed; trying again");
                tokio::time::sleep(delay).await;
                delay *= 2;
                tries += 1;
            }
        }
    }
}

/// How often the outcome of a send is tried to be recorded before the job fails.
const RECORD_TRIES: u32 = 6;

/// Posts a notice once per escalation: the notice is recorded as posted right after the
/// webhook took it, and a notice already recorded is not posted again. Between the two is
/// the one window (a crash right after the post) in which it could go twice; the notice
/// carries its id in the `Idempotency-Key` header for a receiver that wants to drop that.
async fn notify_supervisor(deps: &Deps, notice: &SupervisorNotice) -> Result<()> {
    let Some(webhook) = &deps.supervisor else {
        tracing::warn!(ticket_id = %notice.ticket_id, "escalated, but SUPERVISOR_WEBHOOK_URL is not set");
        return Ok(());
    };
    post_once(webhook, deps, notice, &notice.id()).await
}

/// Posts an assignment notice to the agents' webhook once, the way
/// [`notify_supervisor`] does.
async fn notify_agent(deps: &Deps, notice: &AgentNotice) -> Result<()> {
    let Some(webhook) = &deps.agent else {
        return Ok(());
    };
    post_once(webhook, deps, notice, &notice.id()).await
}

async fn post_once<N: serde::Serialize + Sync>(
    webhook: &SupervisorWebhook,
    deps: &Deps,
    notice: &N,
    id: &str,
) -> Result<()> {
    let key = format!("notice:{id}");
    if deps.store.claimed(&key).await?.is_some() {
        tracing::info!(notice = id, "already posted");
        return Ok(());
    }
    match webhook.post(notice, id).await {
        Ok(()) => {
            deps.store.claim(&key, "posted", NOTICE_TTL_SECS).await?;
            Ok(())
        }
        // Told twice beats never told: an unanswered post is tried again.
        Err(SendError::Temporary { reason, .. } | SendError::Ambiguous { reason }) => {
            Err(Error::internal(reason))
        }
        Err(SendError::Permanent { reason }) => Err(Error::unprocessable("send_failed", reason)),
    }
}

/// How long a posted notice is remembered: longer than any redelivery of its job.
const NOTICE_TTL_SECS: i64 = 8 * 24 * 3600;
