//! SQS behind the queue port. The inbound queue is FIFO: its message group is the customer,
//! so one customer's messages are handled in order, and its deduplication id drops a
//! resend within SQS's five-minute window (intake's own dedupe covers the rest).

use super::sdk_message;
use crate::ports::{Queue, QueueName};
use crate::{Error, Result};
use async_trait::async_trait;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct QueueUrls {
    pub inbound: String,
    pub auto_reply: String,
    pub outbound: String,
}

impl QueueUrls {
    /// From `INBOUND_QUEUE_URL`, `AUTO_REPLY_QUEUE_URL` and `OUTBOUND_QUEUE_URL`; a function
    /// that never sends to a queue may leave its variable unset.
    pub fn from_env() -> QueueUrls {
        let get = |n: &str| std::env::var(n).unwrap_or_default();
        QueueUrls {
            inbound: get("INBOUND_QUEUE_URL"),
            auto_reply: get("AUTO_REPLY_QUEUE_URL"),
            outbound: get("OUTBOUND_QUEUE_URL"),
        }
    }

    fn url(&self, queue: QueueName) -> Result<&str> {
        let (url, var) = match queue {
            QueueName::Inbound => (&self.inbound, "INBOUND_QUEUE_URL"),
            QueueName::AutoReply => (&self.auto_reply, "AUTO_REPLY_QUEUE_URL"),
            QueueName::Outbound => (&self.outbound, "OUTBOUND_QUEUE_URL"),
            QueueName::TicketChanges => {
                return Err(Error::internal(
                    "ticket changes reach their handler through the tickets table's stream; nothing sends them",
                ))
            }
        };
        if url.is_empty() {
            return Err(Error::internal(format!(
                "{var} is not set for this function"
            )));
        }
        Ok(url)
    }
}

pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    urls: QueueUrls,
}

impl SqsQueue {
    pub fn new(config: &aws_config::SdkConfig, urls: QueueUrls) -> SqsQueue {
        SqsQueue {
            client: aws_sdk_sqs::Client::new(config),
            urls,
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(
        &self,
        queue: QueueName,
        body: String,
        group: Option<&str>,
        dedup_id: Option<&str>,
    ) -> Result<()> {
        let url = self.urls.url(queue)?;
        let mut req = self.client.send_message().queue_url(url);
        if url.ends_with(".fifo") {
            let dedup = match dedup_id {
                Some(d) => d.to_string(),
                None => hex::encode(Sha256::digest(body.as_bytes())),
            };
            req = req
                .message_group_id(group.unwrap_or("default"))
                .message_deduplication_id(dedup);
        }
        req.message_body(body).send().await.map_err(|e| {
            Error::internal(format!(
                "sending to the {} queue: {}",
                queue.as_str(),
                sdk_message(&e)
            ))
        })?;
        Ok(())
    }
}

/// A function's own dead-letter queue (`DEAD_LETTER_QUEUE_URL`): where a job that can
/// never succeed goes at once, with its reason, instead of being received again until the
/// queue's `maxReceiveCount` runs out. The same policy as the local worker's
/// ([`crate::jobs::disposition`]).
pub struct DeadLetters {
    client: aws_sdk_sqs::Client,
    url: String,
    /// The stack's queues a function may be fed from, for putting a record off.
    sources: Vec<String>,
}

impl DeadLetters {
    pub fn from_env(config: &aws_config::SdkConfig) -> DeadLetters {
        let sources = [
            "OUTBOUND_QUEUE_URL",
            "AUTO_REPLY_QUEUE_URL",
            "INBOUND_QUEUE_URL",
        ]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .filter(|url| !url.is_empty())
        .collect();
        DeadLetters::new(
            config,
            std::env::var("DEAD_LETTER_QUEUE_URL").unwrap_or_default(),
            sources,
        )
    }

    /// The dead-letter queue at `url`, for records from the queues at `sources`.
    pub fn new(config: &aws_config::SdkConfig, url: String, sources: Vec<String>) -> DeadLetters {
        DeadLetters {
            client: aws_sdk_sqs::Client::new(config),
            url,
            sources,
        }
    }

    /// Puts `body` on the dead-letter queue with `reason` as its `error` attribute. Fails
    /// when no queue is configured: the record is then left to the queue's own redrive.
    pub async fn send(&self, body: &str, reason: &str) -> Result<()> {
        if self.url.is_empty() {
            return Err(Error::internal(
                "DEAD_LETTER_QUEUE_URL is not set for this function",
            ));
        }
        let reason = crate::text::truncate_chars(reason, 1000);
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_attributes(
                "error",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(reason)
                    .build()
                    .map_err(|e| Error::internal(format!("building an attribute: {e}")))?,
            );
        if self.url.ends_with(".fifo") {
            req = req
                .message_group_id("dead-letters")
                .message_deduplication_id(hex::encode(Sha256::digest(body.as_bytes())));
        }
        req.send().await.map_err(|e| {
            Error::internal(format!(
                "sending to the dead-letter queue: {}",
                sdk_message(&e)
            ))
        })?;
        Ok(())
    }

    /// Makes a failed SQS record visible again only after `secs` (at most SQS's 12 hours),
    /// by `ChangeMessageVisibility` on the queue it came from: one of this stack's queues,
    /// whose URL the function's environment names (`*_QUEUE_URL`).
    pub async fn put_off(&self, record: &serde_json::Value, secs: u64) -> Result<()> {
        let arn = record["eventSourceARN"].as_str().unwrap_or_default();
        let name = arn.rsplit(':').next().unwrap_or_default();
        let handle = record["receiptHandle"].as_str().unwrap_or_default();
        let url = self
            .sources
            .iter()
            .find(|url| !name.is_empty() && url.rsplit('/').next() == Some(name))
            .ok_or_else(|| Error::internal(format!("no queue URL for {arn:?}")))?;
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(handle)
            .visibility_timeout(secs.min(43_200) as i32)
            .send()
            .await
            .map_err(|e| Error::internal(format!("putting a record off: {}", sdk_message(&e))))?;
        Ok(())
    }
}
