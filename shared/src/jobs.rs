//! The jobs that travel between the functions, typed once. Each knows its queue, its message
//! group (what keeps one customer's jobs in order on a FIFO queue) and its deduplication id
//! (what makes a resend of the same job a no-op where the queue can tell). The local worker
//! and the SQS/stream runners decode them here, and both dispose of a failed job by one
//! policy, [`disposition`].
//!
//! How a job is made safe to deliver twice is the same everywhere: every effect of a job has
//! an id derived from its cause ([`crate::flow::derived_id`]), a redelivered job runs every
//! step again, and each step is a no-op once it is done. A state change made outside a queue
//! (an agent's escalation) reaches its message through the ticket change feed, which is
//! written with the change itself.

use crate::ports::{Queue, QueueName};
use crate::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::domain::{InboundMessage, OutboundMessage};
use crate::domain::{MergePlan, Priority, Skill, Ticket};

/// What auto-reply is asked to do: answer this message, or hand it to an agent with this
/// skill and priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoReplyJob {
    pub message_id: String,
    pub customer_id: String,
    pub skill: Skill,
    pub priority: Priority,
    /// The rules' tags for the message, for the ticket it may open. Jobs queued before
    /// tags existed read as none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A change of one ticket, as the change feed (the DynamoDB stream) delivers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketChange {
    pub old: Option<Ticket>,
    pub new: Ticket,
}

/// A customer merge to go on with ([`crate::flow::run_merge`]), round after round: each
/// round runs a bounded number of steps and, unfinished, queues the next round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeJob {
    pub merge: MergePlan,
    pub round: u32,
    /// The message whose job met the merge and asked for this round
    /// ([`crate::flow::follow_merge`]): its own round, not a resend of the merge's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// What the inbound queue carries: customers' messages, and merges of customers, which
/// travel in the group of the customer that stays, so that they and that customer's
/// messages take turns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InboundJob {
    Merge(MergeJob),
    Message(Box<InboundMessage>),
}

impl Job for InboundJob {
    const QUEUE: QueueName = QueueName::Inbound;
    fn group(&self) -> Option<String> {
        match self {
            InboundJob::Merge(job) => Some(job.merge.into.clone()),
            InboundJob::Message(m) => m.group(),
        }
    }
    fn dedup_id(&self) -> Option<String> {
        match self {
            InboundJob::Merge(job) => Some(match &job.cause {
                Some(cause) => format!("{}:{}:{cause}", job.merge.id, job.round),
                None => format!("{}:{}", job.merge.id, job.round),
            }),
            InboundJob::Message(m) => m.dedup_id(),
        }
    }
}

/// A job that crosses a queue.
pub trait Job: Serialize + DeserializeOwned + Sync {
    const QUEUE: QueueName;
    /// The FIFO message group: jobs of one group are handled in order, one at a time.
    fn group(&self) -> Option<String>;
    /// Two sends with one id are taken once while the first is still queued.
    fn dedup_id(&self) -> Option<String>;
}

impl Job for InboundMessage {
    const QUEUE: QueueName = QueueName::Inbound;
    fn group(&self) -> Option<String> {
        Some(
            self.customer_id
                .clone()
                .unwrap_or_else(|| format!("{}:{}", self.channel.as_str(), self.external_id)),
        )
    }
    fn dedup_id(&self) -> Option<String> {
        Some(self.id.clone())
    }
}

impl Job for AutoReplyJob {
    const QUEUE: QueueName = QueueName::AutoReply;
    fn group(&self) -> Option<String> {
        Some(self.customer_id.clone())
    }
    fn dedup_id(&self) -> Option<String> {
        Some(self.message_id.clone())
    }
}

impl Job for OutboundMessage {
    const QUEUE: QueueName = QueueName::Outbound;
    fn group(&self) -> Option<String> {
        None
    }
    fn dedup_id(&self) -> Option<String> {
        match self {
            OutboundMessage::Customer { message_id } => Some(message_id.clone()),
            OutboundMessage::Supervisor(notice) => Some(notice.id()),
            OutboundMessage::Agent(notice) => Some(notice.id()),
            OutboundMessage::Acknowledge { callback_id, .. } => Some(callback_id.clone()),
        }
    }
}

impl Job for TicketChange {
    const QUEUE: QueueName = QueueName::TicketChanges;
    fn group(&self) -> Option<String> {
        Some(self.new.id.clone())
    }
    fn dedup_id(&self) -> Option<String> {
        None
    }
}

/// Sends `job` to its queue.
pub async fn send<J: Job>(queue: &dyn Queue, job: &J) -> Result<()> {
    let body = serde_json::to_string(job)
        .map_err(|e| Error::internal(format!("encoding a {} job: {e}", J::QUEUE.as_str())))?;
    queue
        .send(
            J::QUEUE,
            body,
            job.group().as_deref(),
            job.dedup_id().as_deref(),
        )
        .await
}

/// Decodes a job from a queue message body. A body that does not decode never will: its
/// error is a poison one (see [`disposition`]).
pub fn decode<J: Job>(body: &str) -> Result<J> {
    crate::json::parse(body.as_bytes())
}

/// What becomes of a job whose handler failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Worth another attempt (a store or a provider was down): retried with backoff until
    /// the queue's attempts run out, then a dead letter.
    Retry,
    /// Will fail the same way every time (it does not decode, or the desk refuses it): a
    /// dead letter at once, with its reason.
    DeadLetter,
    /// Waits on another's lease (a sender that may have died mid-send): tried again later,
    /// and never a dead letter for having waited, since the lease ends.
    Wait,
}

/// How long a failed job should wait before its next attempt, when the failure said (a
/// provider's 429 `retry_after`): both runners bring it back then, rather than after their
/// own backoff.
pub fn retry_after_secs(e: &Error) -> Option<u64> {
    match e.kind {
        ErrorKind::TooManyRequests { retry_after_secs } => Some(retry_after_secs),
        _ => None,
    }
}

/// The one failure policy, for the local worker and the Lambda runners alike.
pub fn disposition(e: &Error) -> Disposition {
    match e.kind {
        ErrorKind::BadRequest | ErrorKind::Unprocessable => Disposition::DeadLetter,
        ErrorKind::Unavailable => Disposition::Wait,
        _ => Disposition::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, SupervisorNotice};

    #[test]
    fn each_job_knows_its_queue_group_and_dedup_id() {
        let inbound = InboundMessage::text(
            Channel::Telegram,
            "42".into(),
            "你好".into(),
            crate::domain::now(),
        );
        assert_eq!(inbound.group().as_deref(), Some("telegram:42"));
        assert_eq!(inbound.dedup_id(), Some(inbound.id.clone()));
        let job = AutoReplyJob {
            message_id: "m1".into(),
            customer_id: "c1".into(),
            skill: Skill::General,
            priority: Priority::Normal,
            tags: Vec::new(),
        };
        assert_eq!(job.group().as_deref(), Some("c1"));
        let decoded: AutoReplyJob = decode(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(decoded, job);
        let notice = SupervisorNotice {
            event: "ticket.escalated".into(),
            ticket_id: "t1".into(),
            subject: "退款".into(),
            priority: Priority::High,
            skill: Skill::Billing,
            reason: "angry".into(),
            escalated_by: "alice".into(),
            escalated_at: crate::domain::now(),
            customer_id: "c1".into(),
            channel: Channel::Webchat,
        };
        let job = OutboundMessage::Supervisor(notice.clone());
        assert_eq!(job.dedup_id(), Some(notice.id()));
        let mut again = notice.clone();
        again.escalated_at += chrono::Duration::seconds(1);
        assert_ne!(
            again.id(),
            notice.id(),
            "a second escalation is a second notice"
        );
    }

    #[test]
    fn the_inbound_queue_carries_messages_and_merges() {
        let message = InboundMessage::text(
            Channel::Whatsapp,
            "8613800000000".into(),
            "你好".into(),
            crate::domain::now(),
        );
        let body = serde_json::to_string(&message).unwrap();
        assert_eq!(
            decode::<InboundJob>(&body).unwrap(),
            InboundJob::Message(Box::new(message))
        );
        let job = MergeJob {
            merge: MergePlan::new("c1", "c2", "alice"),
            round: 3,
            cause: None,
        };
        let decoded: InboundJob = decode(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(decoded.group().as_deref(), Some("c1"));
        assert_eq!(decoded.dedup_id(), Some(format!("{}:3", job.merge.id)));
        assert_eq!(decoded, InboundJob::Merge(job));
        assert_eq!(
            disposition(&decode::<InboundJob>("{\"merge\": 1}").unwrap_err()),
            Disposition::DeadLetter
        );
    }

    #[test]
    fn poison_is_a_dead_letter_at_once_and_the_rest_is_retried() {
        let bad = decode::<AutoReplyJob>("{").unwrap_err();
        assert_eq!(disposition(&bad), Disposition::DeadLetter);
        let shape = decode::<AutoReplyJob>("{\"message_id\": 1}").unwrap_err();
        assert_eq!(disposition(&shape), Disposition::DeadLetter);
        assert_eq!(
            disposition(&Error::internal("the store is down")),
            Disposition::Retry
        );
        assert_eq!(
            disposition(&Error::conflict("version_conflict", "moved on")),
            Disposition::Retry
        );
        assert_eq!(
            disposition(&Error::unavailable("in_flight", "another sender holds it")),
            Disposition::Wait
        );
    }
}
