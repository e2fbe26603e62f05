//! The ports: what the functions need from the world, as traits. Each has an adapter for AWS
//! and one for the local program; handlers see only these.

use crate::domain::{
    AgentProfile, CannedResponse, Channel, ChannelIdentity, Customer, DeliveryStatus, Direction,
    MergeKind, MergePlan, Message, Ticket, TicketFilter,
};
use crate::knowledge::{Article, Hit};
use crate::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A page of a list, with the cursor of the next page when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[async_trait]
pub trait TicketStore: Send + Sync {
    /// Stores a new ticket. A conflict `already_exists` when its id is taken (checked
    /// first: a retry of a create that succeeded is told so), and `active_ticket_exists`
    /// when it is active and the customer has another active ticket, whoever opened either
    /// (a customer's message or an agent by hand): however many creates race, the customer
    /// ends with one active ticket, which their next messages join.
    async fn create_ticket(&self, ticket: &Ticket) -> Result<()>;
    async fn get_ticket(&self, id: &str) -> Result<Option<Ticket>>;
    /// Saves `ticket` only if the stored version is still `expected_version`, else fails
    /// with a conflict. A reopen, or an active ticket moved to another customer by a merge
    /// ([`Ticket::became_active`]), is refused as a create is, with `active_ticket_exists`
    /// naming the customer's other active ticket, in the same write: of two tickets of one
    /// customer reopened (or moved to them) at once, one becomes active. Each saved change
    /// reaches the ticket change feed.
    async fn update_ticket(&self, ticket: &Ticket, expected_version: u64) -> Result<()>;
    /// Newest first, or oldest first as the filter asks; a page's cursor is its last id.
    async fn list_tickets(
        &self,
        filter: &TicketFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Ticket>>;
    /// How many tickets match the filter: the inbox's counts per view.
    async fn count_tickets(&self, filter: &TicketFilter) -> Result<u64>;
    /// The customer's ticket that new messages join (open, pending or escalated), if any.
    async fn active_ticket_for(&self, customer_id: &str) -> Result<Option<Ticket>>;
    /// Tickets whose survey was answered within [from, to).
    async fn rated_tickets(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Ticket>>;
    /// One page of [`TicketStore::rated_tickets`], by the time of the answer: at most `limit`
    /// after `after` (the `next_cursor` of the page before), so that a report reads any
    /// number of ratings in bounded memory. `next_cursor` is set while more remain.
    ///
    /// The default reads them all; each store answers from its index instead.
    async fn rated_tickets_page(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Ticket>> {
        let mut all = self.rated_tickets(from, to).await?;
        all.sort_by_key(rated_cursor);
        let start = after.map_or(0, |c| {
            all.partition_point(|t| rated_cursor(t).as_str() <= c)
        });
        let mut items: Vec<Ticket> = all.into_iter().skip(start).take(limit + 1).collect();
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(rated_cursor).unwrap_or_default()
        });
        Ok(Page { items, next_cursor })
    }
}

/// Where a page of rated tickets ends: the answer's time (RFC 3339, milliseconds, UTC, as
/// the stores keep it) and the ticket's id, in the order they sort.
pub fn rated_cursor(t: &Ticket) -> String {
    let at = t
        .survey
        .as_ref()
        .and_then(|s| s.answered_at)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    format!("{at}|{}", t.id)
}

/// The answer time and ticket id of a [`rated_cursor`].
pub fn parse_rated_cursor(cursor: &str) -> Result<(&str, &str)> {
    cursor
        .split_once('|')
        .ok_or_else(|| crate::Error::bad_request("invalid_cursor", "not a report cursor"))
}

/// Agents' profiles, and the write that gives a ticket to one within their capacity.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// The agent's profile with `open_tickets` filled in, if they have one.
    async fn get_agent(&self, id: &str) -> Result<Option<AgentProfile>>;
    /// Every profile, with `open_tickets` filled in, by id.
    async fn list_agents(&self) -> Result<Vec<AgentProfile>>;
    /// Saves a profile's name, skills, languages, capacity and availability (what it holds
    /// and when it was last given a ticket stay the store's).
    async fn put_agent(&self, agent: &AgentProfile) -> Result<()>;
    /// Makes the default profile of an agent who has none (their first sign-in); true when
    /// it was made now.
    async fn ensure_agent(&self, id: &str) -> Result<bool>;
    /// Saves `ticket`, which the desk's rule gave to its assignee, in one conditional write:
    /// only if the stored version is still `expected_version` (else a version conflict) and
    /// the assignee holds fewer than `capacity` tickets still being worked (else `false`).
    /// Two tickets racing for an agent's last slot do not both take it.
    async fn assign_ticket(
        &self,
        ticket: &Ticket,
        expected_version: u64,
        capacity: u32,
    ) -> Result<bool>;
    /// The agent's `open_tickets` counted again from the tickets themselves, letting go of
    /// any the count still holds that the agent no longer works (a write cut short between a
    /// ticket and its holder's count). A store that always counts from the tickets has
    /// nothing to let go of.
    async fn recount_agent(&self, id: &str) -> Result<u32>;
    /// Tickets still being worked that nobody holds, urgent first, then oldest first.
    async fn waiting_tickets(&self, limit: usize) -> Result<Vec<Ticket>>;
    /// Tickets whose [`Ticket::next_sla_due`] is at or before `now`, earliest first: an SLA
    /// target unmet, or a resolved ticket's time to close by itself.
    async fn sla_due_tickets(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Ticket>>;
}

#[async_trait]
pub trait CustomerStore: Send + Sync {
    /// The customer behind a channel identity, created on first contact. Two calls for one
    /// identity, even at once, give one customer.
    async fn resolve_customer(
        &self,
        identity: &ChannelIdentity,
        name: Option<&str>,
        locale: Option<&str>,
    ) -> Result<Customer>;
    async fn get_customer(&self, id: &str) -> Result<Option<Customer>>;
    /// One step of a merge the core planned ([`crate::flow::run_merge`]): moves at most
    /// `limit` of the things of `kind` that still belong to `plan.from` over to `plan.into`,
    /// and returns how many it moved; 0 once none are left. Tickets are not the store's to
    /// move: they change through the ticket path.
    async fn merge_step(&self, plan: &MergePlan, kind: MergeKind, limit: usize) -> Result<usize>;
    /// The last step of a merge: saves `merged` (the customer that stays) and removes
    /// customer `from`.
    async fn finish_merge(&self, merged: &Customer, from: &str) -> Result<()>;
}

#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Appends an entry; false when an entry with its id is already there (a redelivery).
    async fn append_message(&self, message: &Message) -> Result<bool>;
    async fn get_message(&self, id: &str) -> Result<Option<Message>>;
    /// The entry with this provider message id on `channel` (a WhatsApp `wamid`, a
    /// Telegram `chat:message_id`) going in `direction`: where receipts (about what the
    /// desk sent) and edits (of what the customer sent) are recorded. The caller names the
    /// direction because a customer's message and the desk's may carry one id.
    async fn message_by_provider_id(
        &self,
        channel: Channel,
        direction: Direction,
        provider_message_id: &str,
    ) -> Result<Option<Message>>;
    /// When the customer last wrote on `channel`: WhatsApp allows free-form replies only
    /// within 24 hours of it.
    async fn last_inbound_at(
        &self,
        customer_id: &str,
        channel: Channel,
    ) -> Result<Option<DateTime<Utc>>>;
    async fn set_message_ticket(&self, id: &str, ticket_id: &str) -> Result<()>;
    /// Takes the right to send a queued message for `lease_secs`: true for the one sender
    /// that gets it, false while another holds it or once the message left the queue. Queues
    /// deliver a job more than once, and two senders must not both send.
    async fn claim_delivery(&self, id: &str, lease_secs: i64) -> Result<bool>;
    /// Gives a claim back after a send that may succeed later, so the retry can claim it.
    async fn release_delivery(&self, id: &str) -> Result<()>;
    async fn set_delivery(
        &self,
        id: &str,
        status: DeliveryStatus,
        provider_message_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<()>;
    /// A ticket's messages, oldest first, notes included.
    async fn ticket_messages(&self, ticket_id: &str) -> Result<Vec<Message>>;
    /// One page of a ticket's messages, oldest first within it: the newest `limit` (1 to
    /// [`MAX_MESSAGE_PAGE`]), or with `before` (the `next_cursor` of the page after it) the
    /// `limit` just older than that message. `next_cursor` is set while older ones remain.
    /// A `before` that is not a message of the ticket is a 400 `invalid_cursor`.
    ///
    /// The default reads them all; each store answers from its index instead.
    async fn ticket_messages_page(
        &self,
        ticket_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Page<Message>> {
        let all = self.ticket_messages(ticket_id).await?;
        let end = match before {
            None => all.len(),
            Some(id) => all
                .iter()
                .position(|m| m.id == id)
                .ok_or_else(invalid_message_cursor)?,
        };
        Ok(message_page(all[..end].to_vec(), limit))
    }

    /// Messages to customers still queued that were made before `before`, oldest first, at
    /// most `limit`: what a failed queue send left behind ([`crate::flow::sweep_queued`]).
    async fn queued_before(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Message>>;
    /// A customer's conversation on one channel in its order, oldest first; internal notes
    /// are left out. Without `after`, its newest `limit` entries (what a chat shows on
    /// opening). With `after`, what a reader who holds that entry may not have seen: the
    /// entries from its [`Message::late_write_floor`] on, itself left out, so one stored
    /// late is not skipped. Those the reader holds come again; it skips them by id.
    async fn customer_messages(
        &self,
        customer_id: &str,
        channel: Channel,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Message>>;
    /// The customer's conversation on `before`'s channel just before it, newest first, at
    /// most `limit`; internal notes are left out.
    async fn customer_messages_before(
        &self,
        before: &Message,
        limit: usize,
    ) -> Result<Vec<Message>>;
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `value` for `ttl_secs`. Returns the value of an earlier claim when the
    /// key was already taken: the delivery is a duplicate. Never an empty value for a claim
    /// that was given back meanwhile: then the key is claimed again.
    async fn claim(&self, key: &str, value: &str, ttl_secs: i64) -> Result<Option<String>>;
    /// The value of the live claim on `key`, if any: whether what it records was done.
    async fn claimed(&self, key: &str) -> Result<Option<String>>;
    /// Gives a claim back, when what it guarded could not be done.
    async fn release(&self, key: &str) -> Result<()>;
    /// Adds one to the counter under `key`, made with a life of `ttl_secs`, and returns the
    /// count: what a rate limit ([`crate::rate`]) counts with.
    async fn count(&self, key: &str, ttl_secs: i64) -> Result<u64>;
}

/// A website visitor's chat session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebchatSession {
    pub id: String,
    /// SHA-256 of the bearer token, hex; the token itself is never stored.
    pub token_hash: String,
    /// The visitor's customer: [`crate::domain::Customer::webchat_id`] of the session, made
    /// at the first message (a merge may point it at another customer).
    pub customer_id: String,
    pub created_at: DateTime<Utc>,
    /// What the visitor gave when opening the session, for their customer record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// When it ends unless used again (Unix seconds; DynamoDB's TTL attribute, and what the
    /// local sweep removes). `None` for sessions made before sessions expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl WebchatSession {
    /// Whether the session has ended at `now` (Unix seconds). The stores remove ended
    /// sessions late (DynamoDB's TTL within days), so every read checks.
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether a use at `now` should push the end out to `now + idle_secs`: only once a
    /// tenth of the idle time has passed since the last push, so that a visitor's polling
    /// does not write on every request.
    pub fn needs_renewal(&self, now: i64, idle_secs: i64) -> bool {
        match self.expires_at {
            None => true,
            Some(at) => now + idle_secs - at >= (idle_secs / 10).max(1),
        }
    }
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &WebchatSession) -> Result<()>;
    async fn session_by_token_hash(&self, token_hash: &str) -> Result<Option<WebchatSession>>;
    /// Saves a renewed session (its new end) over the stored one, unless the stored one has
    /// moved to another customer since it was read (a merge's step): then nothing changes,
    /// and the session's next use renews it. A blind write would put the customer that
    /// went back on the session, and the visitor's next reads would find them gone.
    async fn update_session(&self, session: &WebchatSession) -> Result<()>;
}

/// Canned responses (saved replies), by their folded short code.
#[async_trait]
pub trait CannedStore: Send + Sync {
    /// Every canned response, ordered by short code (as the stores sort text: by code
    /// point, which is UTF-8's byte order).
    async fn list_canned(&self) -> Result<Vec<CannedResponse>>;
    /// Saves `canned` over the one with its short code, or as a new one; true when it was
    /// new. A new one when the desk already keeps
    /// [`crate::domain::canned::MAX_CANNED_RESPONSES`] is refused with
    /// [`crate::domain::canned::too_many`], however many PUTs race for the last place.
    async fn put_canned(&self, canned: &CannedResponse) -> Result<bool> {
        self.save_canned(canned, false).await
    }
    /// [`CannedStore::put_canned`], and with `create_only` a new one only: one with its
    /// short code already kept is refused with [`crate::domain::canned::exists`], in the
    /// write that would make it, so of two supervisors creating one code at once, the
    /// second hears of the first rather than replacing it.
    async fn save_canned(&self, canned: &CannedResponse, create_only: bool) -> Result<bool>;
    /// Removes the canned response with this short code; false when there was none.
    async fn delete_canned(&self, short_code: &str) -> Result<bool>;
}

/// All the stores; one adapter implements them together.
pub trait Store:
    TicketStore
    + AgentStore
    + CustomerStore
    + ConversationStore
    + IdempotencyStore
    + SessionStore
    + CannedStore
{
}
impl<T> Store for T where
    T: TicketStore
        + AgentStore
        + CustomerStore
        + ConversationStore
        + IdempotencyStore
        + SessionStore
        + CannedStore
{
}

/// The queues between the functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    /// intake → router; FIFO per customer.
    Inbound,
    /// router → auto-reply.
    AutoReply,
    /// everyone → dispatch.
    Outbound,
    /// ticket writes → the change handler (survey, supervisor notice). Locally a queue
    /// written in the ticket's own transaction; on AWS the tickets table's stream, which
    /// nothing sends to.
    TicketChanges,
}

impl QueueName {
    pub const fn as_str(self) -> &'static str {
        match self {
            QueueName::Inbound => "inbound",
            QueueName::AutoReply => "auto_reply",
            QueueName::Outbound => "outbound",
            QueueName::TicketChanges => "ticket_changes",
        }
    }
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends a JSON body. `group` keeps order among messages of one group (FIFO queues);
    /// `dedup_id` makes a resend of the same message a no-op where the queue supports it.
    async fn send(
        &self,
        queue: QueueName,
        body: String,
        group: Option<&str>,
        dedup_id: Option<&str>,
    ) -> Result<()>;
}

/// Serialises `job` and sends it.
pub async fn send_json<T: Serialize + Sync>(
    queue: &dyn Queue,
    name: QueueName,
    job: &T,
    group: Option<&str>,
) -> Result<()> {
    let body = serde_json::to_string(job)
        .map_err(|e| crate::Error::internal(format!("encoding a {} job: {e}", name.as_str())))?;
    queue.send(name, body, group, None).await
}

pub use crate::jobs::TicketChange;

/// The most messages one page of a ticket's conversation holds.
pub const MAX_MESSAGE_PAGE: usize = 200;

/// The answer to a message cursor that names no message of the ticket.
pub fn invalid_message_cursor() -> crate::Error {
    crate::Error::bad_request(
        "invalid_cursor",
        "cursor is not a message of this ticket: use the next_cursor of a page",
    )
}

/// The page of a ticket's messages from the ones before the cursor, oldest first: the
/// newest `limit` of `older`, and the cursor to the rest when some are left. Stores read
/// one more than `limit` so as to know.
pub fn message_page(mut older: Vec<Message>, limit: usize) -> Page<Message> {
    let limit = limit.clamp(1, MAX_MESSAGE_PAGE);
    let cut = older.len().saturating_sub(limit);
    let items = older.split_off(cut);
    Page {
        next_cursor: items.first().filter(|_| cut > 0).map(|m| m.id.clone()),
        items,
    }
}

#[async_trait]
pub trait KnowledgeIndex: Send + Sync {
    /// The best articles for `query`, ranked, each with its confidence.
    async fn search(&self, query: &str, limit: usize) -> Result<Vec<Hit>>;
    async fn get(&self, id: &str) -> Result<Option<Article>>;
    async fn list(&self) -> Result<Vec<Article>>;
    /// Adds or replaces articles; returns how many were new.
    async fn upsert(&self, articles: &[Article]) -> Result<usize>;
    /// Removes an article; false when there was none.
    async fn delete(&self, id: &str) -> Result<bool>;
}

/// What a channel answered when it took a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub provider_message_id: Option<String>,
    pub status: DeliveryStatus,
}

/// Why a send failed, which decides whether it is tried again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later (5xx, timeouts, rate limits).
    #[error("temporary failure: {reason}")]
    Temporary {
        reason: String,
        retry_after_secs: Option<u64>,
    },
    /// Will fail again (4xx): goes to the dead letters with the reason.
    #[error("permanent failure: {reason}")]
    Permanent { reason: String },
    /// No answer (a timeout after the request went out): the provider may have taken the
    /// message. Sending it again could deliver it twice, so it is not sent again.
    #[error("outcome unknown: {reason}")]
    Ambiguous { reason: String },
}

#[async_trait]
pub trait ChannelSender: Send + Sync {
    async fn send(
        &self,
        customer: &Customer,
        message: &Message,
    ) -> std::result::Result<Receipt, SendError>;

    /// Answers a button press the channel waits on (Telegram's callback queries); channels
    /// without such a thing have nothing to do.
    async fn acknowledge(
        &self,
        _callback_id: &str,
        _text: &str,
    ) -> std::result::Result<(), SendError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_when_idle_and_is_renewed_sparingly() {
        let s = |expires_at| WebchatSession {
            id: "s".into(),
            token_hash: "h".into(),
            customer_id: "c".into(),
            created_at: Utc::now(),
            name: None,
            locale: None,
            expires_at,
        };
        assert!(!s(None).is_expired(1_000));
        assert!(s(Some(1_000)).is_expired(1_000));
        assert!(!s(Some(1_001)).is_expired(1_000));
        // Idle time 1,000 s: renewed once a hundred seconds have passed since the last.
        assert!(!s(Some(2_000)).needs_renewal(1_050, 1_000));
        assert!(s(Some(2_000)).needs_renewal(1_100, 1_000));
        assert!(s(None).needs_renewal(1_000, 1_000));
    }
}
