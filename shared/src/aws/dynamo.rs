//! DynamoDB behind every store port. Each record is kept as JSON in a `body` attribute, the
//! same document the SQLite adapter keeps, beside the key attributes that the indexes need;
//! no list is ever a scan.
//!
//! Tickets: key `id`; global secondary indexes `by_status`, `by_skill`, `by_assignee`,
//! `by_customer`, `by_ref` (on `ticket_ref`, the reference the customer was told: `REF` is a
//! reserved word) and `all` (constant `kind`), each sorted by `id` (UUID v7, so by creation
//! time), and `rated` (`rated_pk`, `rated_at`) for the CSAT report. A ticket is saved with
//! the condition that its stored `version` is the one the writer read. Two sparse indexes
//! serve the assignment and the SLA check: `waiting` (`waiting_pk`, `waiting_sk`: priority
//! rank, then id) holds the tickets still being worked that nobody holds, and `sla_due`
//! (`sla_pk`, `sla_due`) those with a target to watch. A customer's active ticket holds
//! the customer's marker (`active#CUSTOMER`, outside every index), taken in the transaction
//! that creates or reopens it: a customer has one active ticket.
//!
//! Agents' profiles are items of the tickets table too (`agent#ID`, `kind` = `agent`, so
//! the `all` index lists them; no `body`, so the stream's readers pass them by). Each keeps
//! the set of tickets it holds (`holding`): the assignment adds a ticket to it in one
//! transaction with the ticket, on the condition that the set is smaller than the capacity.
//! Any other save that gives a ticket a holder (an agent's assignment, a reopen) adds it to
//! the set before the ticket, and one that takes it away removes it after: a save cut short
//! between the two leaves the set one over, which heals, never one short.

use super::sdk_message;
use crate::domain::canned::{self, CannedResponse};
use crate::domain::{
    ticket_ref, AgentProfile, Channel, ChannelIdentity, Customer, DeliveryStatus, Direction,
    MergeKind, MergePlan, Message, Priority, Ticket, TicketFilter, TicketStatus,
};
use crate::ports::{
    AgentStore, CannedStore, ConversationStore, CustomerStore, IdempotencyStore, Page,
    SessionStore, TicketStore, WebchatSession,
};
use crate::{Error, Result};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;

type Item = HashMap<String, AttributeValue>;

/// The table names, from the environment the template sets.
#[derive(Debug, Clone)]
pub struct Tables {
    pub tickets: String,
    pub customers: String,
    pub identities: String,
    pub messages: String,
    pub idempotency: String,
    pub sessions: String,
    pub canned_responses: String,
}

impl Tables {
    /// From `TICKETS_TABLE`, `CUSTOMERS_TABLE`, `IDENTITIES_TABLE`, `MESSAGES_TABLE`,
    /// `IDEMPOTENCY_TABLE`, `SESSIONS_TABLE` and `CANNED_RESPONSES_TABLE`.
    pub fn from_env() -> Result<Tables> {
        Ok(Tables {
            tickets: super::env("TICKETS_TABLE")?,
            customers: super::env("CUSTOMERS_TABLE")?,
            identities: super::env("IDENTITIES_TABLE")?,
            messages: super::env("MESSAGES_TABLE")?,
            idempotency: super::env("IDEMPOTENCY_TABLE")?,
            sessions: super::env("SESSIONS_TABLE")?,
            canned_responses: super::env("CANNED_RESPONSES_TABLE")?,
        })
    }

    /// Names with a common prefix, as the tests create them.
    pub fn with_prefix(prefix: &str) -> Tables {
        Tables {
            tickets: format!("{prefix}tickets"),
            customers: format!("{prefix}customers"),
            identities: format!("{prefix}identities"),
            messages: format!("{prefix}messages"),
            idempotency: format!("{prefix}idempotency"),
            sessions: format!("{prefix}sessions"),
            canned_responses: format!("{prefix}canned-responses"),
        }
    }
}

pub struct DynamoStore {
    client: Client,
    tables: Tables,
    /// How many items a filtered list reads from an index, at most, before it answers.
    list_read_budget: usize,
}

/// How many items a list of tickets with a filter (a tag, a priority, a channel) reads from
/// an index at most before it answers: a page of what it found, maybe short or empty, and a
/// cursor to go on from. Without a bound, a filter that few tickets match walked the whole
/// index in one request (a tag on three tickets of a million read all million, past the
/// Lambda's and the API's time limits); at this bound a request reads at most about 8 MB.
pub const LIST_READ_BUDGET: usize = 2_000;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::internal(format!("encoding a record: {e}")))
}

/// A number attribute of `item`, when it is there and reads as a `T`.
fn number<T: std::str::FromStr>(item: &Item, attr: &str) -> Option<T> {
    item.get(attr)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn body_of<T: DeserializeOwned>(item: &Item) -> Result<T> {
    let body = item
        .get("body")
        .and_then(|b| b.as_s().ok())
        .ok_or_else(|| Error::internal("a DynamoDB item without its body"))?;
    serde_json::from_str(body).map_err(|e| Error::internal(format!("decoding a record: {e}")))
}

fn db_err<E, R>(what: &str, e: aws_sdk_dynamodb::error::SdkError<E, R>) -> Error
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    Error::internal(format!("DynamoDB {what}: {}", sdk_message(&e)))
}

/// Whether an SDK error is a failed condition (the only error a caller acts on).
/// How often a message update is read and tried again when another write got there first.
const MESSAGE_UPDATE_ATTEMPTS: usize = 8;

pub(crate) fn condition_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| {
            c == "ConditionalCheckFailedException" || c == "TransactionCanceledException"
        })
}

/// The attributes of a ticket: its document and what the indexes need.
fn ticket_item(t: &Ticket) -> Result<Item> {
    let mut item: Item = HashMap::from([
        ("id".into(), s(&t.id)),
        ("kind".into(), s("ticket")),
        ("customer_id".into(), s(&t.customer_id)),
        ("status".into(), s(t.status.as_str())),
        ("priority".into(), s(t.priority.as_str())),
        ("skill".into(), s(t.skill.as_str())),
        ("channel".into(), s(t.channel.as_str())),
        ("ticket_ref".into(), s(ticket_ref(&t.id))),
        ("version".into(), n(t.version)),
        ("body".into(), s(to_json(t)?)),
    ]);
    if let Some(a) = &t.assignee {
        item.insert("assignee".into(), s(a));
    }
    // A string set, for a list's filter (`contains`); DynamoDB keeps no empty set.
    if !t.tags.is_empty() {
        item.insert("tags".into(), AttributeValue::Ss(t.tags.clone()));
    }
    if let Some(at) = t.survey.as_ref().and_then(|s| s.answered_at) {
        item.insert("rated_pk".into(), s("rated"));
        item.insert("rated_at".into(), s(ts(at)));
    }
    if t.status.is_active() && t.assignee.is_none() {
        let rank = match t.priority {
            Priority::Urgent => 0,
            Priority::High => 1,
            Priority::Normal => 2,
            Priority::Low => 3,
        };
        item.insert("waiting_pk".into(), s("waiting"));
        item.insert("waiting_sk".into(), s(format!("{rank}#{}", t.id)));
    }
    if let Some(due) = t.next_sla_due() {
        item.insert("sla_pk".into(), s("due"));
        item.insert("sla_due".into(), s(ts(due)));
    }
    Ok(item)
}

type TicketQuery = aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;

/// The longest partition key DynamoDB takes.
const MAX_PARTITION_KEY_BYTES: usize = 2048;

/// The key of an agent's profile item in the tickets table.
fn agent_key(id: &str) -> String {
    format!("agent#{id}")
}

fn agent_of(item: &Item) -> Result<AgentProfile> {
    let profile = item
        .get("profile")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| Error::internal("an agent item without its profile"))?;
    let mut agent: AgentProfile = serde_json::from_str(profile)
        .map_err(|e| Error::internal(format!("decoding an agent profile: {e}")))?;
    agent.last_assigned_at = item
        .get("last_assigned_at")
        .and_then(|v| v.as_s().ok())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    agent.open_tickets = holding_of(item).len() as u32;
    Ok(agent)
}

fn holding_of(item: &Item) -> Vec<String> {
    item.get("holding")
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default()
}

/// A profile as stored: what the store keeps of its own is left out.
fn profile_json(agent: &AgentProfile) -> Result<String> {
    to_json(&agent.as_stored())
}

/// The key of a customer's active-ticket marker, an item of the tickets table outside every
/// index (it has none of their key attributes).
fn marker_key(customer_id: &str) -> String {
    format!("active#{customer_id}")
}

/// The condition that the status attribute, named `name`, is one of
/// [`TicketStatus::ACTIVE`], with the values it names.
fn active_statuses(name: &str) -> (String, Vec<(String, AttributeValue)>) {
    let values: Vec<(String, AttributeValue)> = TicketStatus::ACTIVE
        .iter()
        .map(|st| (format!(":active_{}", st.as_str()), s(st.as_str())))
        .collect();
    let keys: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
    (format!("{name} IN ({})", keys.join(", ")), values)
}

fn marker_item(ticket: &Ticket) -> Item {
    HashMap::from([
        ("id".into(), s(marker_key(&ticket.customer_id))),
        ("ticket_id".into(), s(&ticket.id)),
    ])
}

/// A message's sort key on the ticket and customer indexes: [`Message::order_key`].
fn message_sk(m: &Message) -> String {
    m.order_key()
}

fn identity_key(identity: &ChannelIdentity) -> String {
    format!("{}#{}", identity.channel.as_str(), identity.external_id)
}

fn provider_key(channel: Channel, provider_message_id: &str) -> String {
    format!("{}#{provider_message_id}", channel.as_str())
}

fn session_item(session: &WebchatSession) -> Result<Item> {
    let mut item = HashMap::from([
        ("token_hash".into(), s(&session.token_hash)),
        ("customer_id".into(), s(&session.customer_id)),
        ("body".into(), s(to_json(session)?)),
    ]);
    // The table's TTL attribute: DynamoDB removes the session some time after it ends.
    if let Some(at) = session.expires_at {
        item.insert("expires_at".into(), n(at));
    }
    Ok(item)
}

/// The one partition of the messages' `queued` index.
const QUEUED_PK: &str = "queued";

fn message_item(m: &Message) -> Result<Item> {
    let mut item: Item = HashMap::from([
        ("id".into(), s(&m.id)),
        ("sk".into(), s(message_sk(m))),
        (
            "conversation".into(),
            s(format!("{}#{}", m.customer_id, m.channel.as_str())),
        ),
        ("direction".into(), s(m.direction.as_str())),
        ("body".into(), s(to_json(m)?)),
    ]);
    if let Some(t) = &m.ticket_id {
        item.insert("ticket_id".into(), s(t));
    }
    if let Some(p) = &m.provider_message_id {
        item.insert("provider_key".into(), s(provider_key(m.channel, p)));
    }
    if m.status == Some(DeliveryStatus::Queued) {
        // What a sender's claim is conditioned on (the body is opaque to conditions), and
        // the key of the sparse index the sweep reads.
        item.insert("queued".into(), AttributeValue::Bool(true));
        item.insert("queued_pk".into(), s(QUEUED_PK));
    }
    Ok(item)
}

impl DynamoStore {
    pub fn new(config: &aws_config::SdkConfig, tables: Tables) -> DynamoStore {
        DynamoStore {
            client: Client::new(config),
            tables,
            list_read_budget: LIST_READ_BUDGET,
        }
    }

    /// The same store, with filtered lists reading at most `items` from an index a request
    /// instead of [`LIST_READ_BUDGET`] (for tests, which cannot make thousands of tickets
    /// quickly).
    pub fn with_list_read_budget(mut self, items: usize) -> DynamoStore {
        self.list_read_budget = items.max(1);
        self
    }

    /// A put of the customer's active-ticket marker, naming `ticket`, on the condition that
    /// no other ticket holds it.
    fn marker_put(&self, ticket: &Ticket) -> Result<Put> {
        Put::builder()
            .table_name(&self.tables.tickets)
            .set_item(Some(marker_item(ticket)))
            .condition_expression("attribute_not_exists(id) OR ticket_id = :ticket")
            .expression_attribute_values(":ticket", s(&ticket.id))
            .build()
            .map_err(|e| Error::internal(format!("building a put: {e}")))
    }

    /// Saves a change of a stored ticket in one request: on the condition that the stored
    /// version is `expected`, that an active ticket was active already and its customer's,
    /// and, with `holder`, that the stored ticket names that holder already. Gives the
    /// ticket as it was, or `None` when a condition failed.
    async fn save_ticket(
        &self,
        ticket: &Ticket,
        expected: u64,
        holder: Option<&str>,
    ) -> Result<Option<Option<Ticket>>> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.tables.tickets)
            .set_item(Some(ticket_item(ticket)?))
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(expected))
            .return_values(ReturnValue::AllOld);
        let mut condition = String::from("attribute_exists(id) AND #version = :expected");
        if ticket.status.is_active() {
            let (active, values) = active_statuses("#status");
            for (k, v) in values {
                put = put.expression_attribute_values(k, v);
            }
            put = put
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":customer", s(&ticket.customer_id));
            condition.push_str(&format!(" AND {active} AND customer_id = :customer"));
        }
        if let Some(holder) = holder {
            put = put.expression_attribute_values(":holder", s(holder));
            condition.push_str(" AND assignee = :holder");
        }
        match put.condition_expression(condition).send().await {
            Ok(out) => Ok(Some(out.attributes.as_ref().map(body_of).transpose()?)),
            Err(e) if condition_failed(&e) => Ok(None),
            Err(e) => Err(db_err("update ticket", e)),
        }
    }

    /// Writes `ticket`, new (`expected` is `None`: its id must be free) or reopened (the
    /// stored version is `expected`), and, when it is active, in one transaction with its
    /// customer's marker, which only one active ticket holds: however many creates and
    /// reopens race, one ticket of the customer ends active, where a look at the
    /// (eventually consistent) customer index first would let several through. Refused with
    /// `active_ticket_exists` while another active ticket holds the marker; a marker left by
    /// a ticket no longer active is cleared, and the write tried again.
    async fn write_marked(&self, ticket: &Ticket, expected: Option<u64>) -> Result<()> {
        for _ in 0..3 {
            let put_ticket = Put::builder()
                .table_name(&self.tables.tickets)
                .set_item(Some(ticket_item(ticket)?));
            let put_ticket = match expected {
                None => put_ticket.condition_expression("attribute_not_exists(id)"),
                Some(version) => put_ticket
                    .condition_expression("attribute_exists(id) AND #version = :expected")
                    .expression_attribute_names("#version", "version")
                    .expression_attribute_values(":expected", n(version)),
            }
            .build()
            .map_err(|e| Error::internal(format!("building a put: {e}")))?;
            let mut write = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_ticket).build());
            if ticket.status.is_active() {
                write = write.transact_items(
                    TransactWriteItem::builder()
                        .put(self.marker_put(ticket)?)
                        .build(),
                );
            }
            match write.send().await {
                Ok(_) => return Ok(()),
                Err(e) if condition_failed(&e) => {
                    match (expected, self.get_ticket(&ticket.id).await?) {
                        (None, Some(_)) => return Err(Error::ticket_exists(&ticket.id)),
                        (Some(_), None) => return Err(Error::not_found("ticket", &ticket.id)),
                        (Some(version), Some(stored)) if stored.version != version => {
                            return Err(Error::version_conflict(stored.version, version))
                        }
                        _ => {}
                    }
                    if !ticket.status.is_active() {
                        continue;
                    }
                    match self.marked_ticket(&ticket.customer_id).await? {
                        (_, Some(active)) if active.id != ticket.id => {
                            return Err(Error::active_ticket_exists(
                                &ticket.customer_id,
                                &active.id,
                            ))
                        }
                        (Some(stale), None) => {
                            self.clear_marker(&ticket.customer_id, &stale).await?
                        }
                        _ => {}
                    }
                }
                Err(e) => return Err(db_err("write ticket", e)),
            }
        }
        Err(Error::internal(format!(
            "could not write ticket {}: the customer's marker kept changing",
            ticket.id
        )))
    }

    /// The ticket the customer's marker names, and that ticket when it is still the
    /// customer's and active.
    async fn marked_ticket(&self, customer_id: &str) -> Result<(Option<String>, Option<Ticket>)> {
        let Some(item) = self
            .get(&self.tables.tickets, "id", &marker_key(customer_id))
            .await?
        else {
            return Ok((None, None));
        };
        let id = item
            .get("ticket_id")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| Error::internal("an active-ticket marker without its ticket"))?;
        let ticket = self
            .get_ticket(&id)
            .await?
            .filter(|t| t.customer_id == customer_id && t.status.is_active());
        Ok((Some(id), ticket))
    }

    /// Makes the customer's marker name `ticket` if no ticket holds it.
    async fn take_free_marker(&self, ticket: &Ticket) -> Result<()> {
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.tickets)
            .set_item(Some(marker_item(ticket)))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(db_err("mark active ticket", e)),
        }
    }

    /// Removes the customer's marker if it still names `ticket_id`.
    async fn clear_marker(&self, customer_id: &str, ticket_id: &str) -> Result<()> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.tickets)
            .key("id", s(marker_key(customer_id)))
            .condition_expression("ticket_id = :t")
            .expression_attribute_values(":t", s(ticket_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(db_err("clear active-ticket marker", e)),
        }
    }

    /// Adds `ticket_id` to the set of an agent with a profile (a manual assignment, which
    /// may go past capacity).
    async fn hold(&self, agent: &str, ticket_id: &str) -> Result<()> {
        self.change_holding("ADD", agent, ticket_id).await
    }

    /// Takes `ticket_id` out of an agent's set.
    async fn release(&self, agent: &str, ticket_id: &str) -> Result<()> {
        self.change_holding("DELETE", agent, ticket_id).await
    }

    /// `ADD` or `DELETE` of one ticket in the set of an agent who has a profile; nothing for
    /// an agent without one.
    async fn change_holding(&self, action: &str, agent: &str, ticket_id: &str) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.tickets)
            .key("id", s(agent_key(agent)))
            .update_expression(format!("{action} holding :t"))
            .condition_expression("attribute_exists(profile)")
            .expression_attribute_values(":t", AttributeValue::Ss(vec![ticket_id.to_string()]))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(db_err("change an agent's held tickets", e)),
        }
    }

    /// Clears from an agent's set the tickets they no longer hold (a release a crash cut
    /// short); returns how many.
    async fn prune_holding(&self, agent: &str) -> Result<usize> {
        let Some(item) = self
            .get(&self.tables.tickets, "id", &agent_key(agent))
            .await?
        else {
            return Ok(0);
        };
        let mut pruned = 0;
        for id in holding_of(&item) {
            let held = self
                .get_ticket(&id)
                .await?
                .is_some_and(|t| t.holder() == Some(agent));
            if !held {
                self.release(agent, &id).await?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    async fn get(&self, table: &str, key: &str, value: &str) -> Result<Option<Item>> {
        // DynamoDB refuses an empty key or one over 2,048 bytes, and holds no item under
        // either: not found, as SQLite answers (an id from a path or a cursor is anyone's).
        if value.is_empty() || value.len() > MAX_PARTITION_KEY_BYTES {
            return Ok(None);
        }
        let out = self
            .client
            .get_item()
            .table_name(table)
            .key(key, s(value))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| db_err("get", e))?;
        Ok(out.item)
    }

    /// A query of `index` for the items whose `attr` equals `value`.
    fn query_eq(
        &self,
        table: &str,
        index: &str,
        attr: &str,
        value: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(table)
            .index_name(index)
            .key_condition_expression("#key = :key")
            .expression_attribute_names("#key", attr)
            .expression_attribute_values(":key", s(value))
    }

    /// The queries that together answer `filter`: one, or, for the active tickets that no
    /// customer or reference keys (the inbox's views and their counts), one per active
    /// status on the status index. The active tickets are the desk's working set; every
    /// other index an inbox view could read (all tickets, an agent's, a skill's) holds the
    /// whole history, which a filter expression reads in full, and pays for, before it
    /// drops what ended: each poll of the console's counts would read every ticket ever
    /// made.
    fn ticket_queries(&self, filter: &TicketFilter, cursor: Option<&str>) -> Vec<TicketQuery> {
        let by_status = filter.active
            && filter.status.is_none()
            && filter.reference.is_none()
            && filter.customer_id.is_none();
        if !by_status {
            return vec![self.ticket_query(filter, cursor)];
        }
        TicketStatus::ACTIVE
            .iter()
            .map(|status| {
                let one = TicketFilter {
                    status: Some(*status),
                    active: false,
                    ..filter.clone()
                };
                self.ticket_query_keyed(&one, cursor, Some("status"))
            })
            .collect()
    }

    /// The query for a ticket filter, in its order (newest first, or oldest): the most
    /// selective index carries the key condition and the other filters narrow it.
    fn ticket_query(&self, filter: &TicketFilter, cursor: Option<&str>) -> TicketQuery {
        self.ticket_query_keyed(filter, cursor, None)
    }

    /// [`Self::ticket_query`], keyed by the condition `by` names (one of the filter's
    /// indexed conditions) rather than the most selective one.
    fn ticket_query_keyed(
        &self,
        filter: &TicketFilter,
        cursor: Option<&str>,
        by: Option<&str>,
    ) -> TicketQuery {
        let mut conditions: Vec<(&str, String)> = Vec::new();
        if let Some(r) = &filter.reference {
            conditions.push(("ticket_ref", r.clone()));
        }
        if let Some(c) = &filter.customer_id {
            conditions.push(("customer_id", c.clone()));
        }
        if let Some(a) = &filter.assignee {
            conditions.push(("assignee", a.clone()));
        }
        if let Some(st) = filter.status {
            conditions.push(("status", st.as_str().into()));
        }
        if let Some(sk) = filter.skill {
            conditions.push(("skill", sk.as_str().into()));
        }
        if let Some(p) = filter.priority {
            conditions.push(("priority", p.as_str().into()));
        }
        if let Some(ch) = filter.channel {
            conditions.push(("channel", ch.as_str().into()));
        }
        let indexed = ["ticket_ref", "customer_id", "assignee", "status", "skill"];
        let keyed = |a: &str| match by {
            Some(k) => a == k,
            None => indexed.contains(&a),
        };
        let (index, key_attr, key_value) = match conditions.iter().position(|(a, _)| keyed(a)) {
            Some(i) => {
                let (attr, value) = conditions.remove(i);
                let index = match attr {
                    "ticket_ref" => "by_ref",
                    "customer_id" => "by_customer",
                    "assignee" => "by_assignee",
                    "status" => "by_status",
                    _ => "by_skill",
                };
                (index, attr, value)
            }
            None => ("all", "kind", "ticket".to_string()),
        };
        let mut key = "#k = :k".to_string();
        let mut req = self
            .client
            .query()
            .table_name(&self.tables.tickets)
            .index_name(index)
            .scan_index_forward(filter.oldest_first)
            .expression_attribute_names("#k", key_attr)
            .expression_attribute_values(":k", s(key_value));
        if let Some(c) = cursor {
            key.push_str(if filter.oldest_first {
                " AND id > :cursor"
            } else {
                " AND id < :cursor"
            });
            req = req.expression_attribute_values(":cursor", s(c));
        }
        let mut filters = Vec::new();
        for (i, (attr, value)) in conditions.iter().enumerate() {
            filters.push(format!("#f{i} = :f{i}"));
            req = req
                .expression_attribute_names(format!("#f{i}"), *attr)
                .expression_attribute_values(format!(":f{i}"), s(value.clone()));
        }
        if filter.active {
            let (active, values) = active_statuses("#active_status");
            for (k, v) in values {
                req = req.expression_attribute_values(k, v);
            }
            filters.push(active);
            req = req.expression_attribute_names("#active_status", "status");
        }
        if filter.unassigned {
            filters.push("attribute_not_exists(#unassigned)".into());
            req = req.expression_attribute_names("#unassigned", "assignee");
        }
        if let Some(tag) = &filter.tag {
            filters.push("contains(#tags, :tag)".into());
            req = req
                .expression_attribute_names("#tags", "tags")
                .expression_attribute_values(":tag", s(tag.clone()));
        }
        if !filters.is_empty() {
            req = req.filter_expression(filters.join(" AND "));
        }
        req.key_condition_expression(key)
    }

    /// Runs a query to the end or until `want` items are in, following pages.
    async fn query_all(
        &self,
        mut req: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        want: usize,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        loop {
            let out = req.clone().send().await.map_err(|e| db_err("query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if items.len() < want => req = req.set_exclusive_start_key(Some(key)),
                _ => return Ok(items),
            }
        }
    }

    /// Runs a filtered query until `want` items are in, the query ends, or it has read
    /// `budget` items (what DynamoDB bills, before the filter drops any). Gives the items,
    /// and, when the budget ran out first, the `id` of the last item read.
    async fn query_within(
        &self,
        mut req: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        want: usize,
        budget: usize,
    ) -> Result<(Vec<Item>, Option<String>)> {
        let mut items = Vec::new();
        let mut left = budget;
        loop {
            let out = req
                .clone()
                .limit(i32::try_from(left).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| db_err("query", e))?;
            left = left.saturating_sub(usize::try_from(out.scanned_count).unwrap_or(0).max(1));
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(_) if items.len() >= want => return Ok((items, None)),
                Some(key) if left == 0 => {
                    let id = key
                        .get("id")
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .ok_or_else(|| Error::internal("a query's last key without an id"))?;
                    return Ok((items, Some(id)));
                }
                Some(key) => req = req.set_exclusive_start_key(Some(key)),
                None => return Ok((items, None)),
            }
        }
    }

    /// Writes an item whatever was there.
    async fn put(&self, table: &str, item: Item, what: &str) -> Result<()> {
        self.client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| db_err(what, e))?;
        Ok(())
    }

    /// Changes a stored message with `f`, as a compare-and-swap: the write holds only if the
    /// message (and a sender's lease on it) is still as read, else it is read and changed
    /// again. Two receipts for one message, or a receipt and its ticket being set, handled at
    /// once by two functions, then both count; a blind write would drop one of them.
    async fn update_message(&self, id: &str, f: impl Fn(&mut Message)) -> Result<()> {
        for _ in 0..MESSAGE_UPDATE_ATTEMPTS {
            let item = self
                .get(&self.tables.messages, "id", id)
                .await?
                .ok_or_else(|| Error::not_found("message", id))?;
            let before = item
                .get("body")
                .and_then(|b| b.as_s().ok())
                .cloned()
                .ok_or_else(|| Error::internal(format!("message {id} has no body")))?;
            let mut m: Message = body_of(&item)?;
            f(&mut m);
            let mut after = message_item(&m)?;
            if after.get("body").and_then(|b| b.as_s().ok()) == Some(&before) {
                return Ok(()); // a duplicate receipt: nothing to write
            }
            let mut put = self
                .client
                .put_item()
                .table_name(&self.tables.messages)
                .expression_attribute_names("#body", "body")
                .expression_attribute_values(":before", s(before));
            put = match item.get("lease_until") {
                Some(lease) => {
                    after.insert("lease_until".into(), lease.clone());
                    put.condition_expression("#body = :before AND lease_until = :lease")
                        .expression_attribute_values(":lease", lease.clone())
                }
                None => put
                    .condition_expression("#body = :before AND attribute_not_exists(lease_until)"),
            };
            match put.set_item(Some(after)).send().await {
                Ok(_) => return Ok(()),
                Err(e) if condition_failed(&e) => continue,
                Err(e) => return Err(db_err("update message", e)),
            }
        }
        Err(Error::internal(format!(
            "message {id} changed under every one of {MESSAGE_UPDATE_ATTEMPTS} attempts to update it"
        )))
    }
}

#[async_trait]
impl TicketStore for DynamoStore {
    /// An active ticket is written in one transaction with its customer's marker
    /// ([`DynamoStore::write_marked`]): two hand-offs, or a hand-off and an agent's ticket
    /// made by hand, at once make one ticket.
    async fn create_ticket(&self, ticket: &Ticket) -> Result<()> {
        self.write_marked(ticket, None).await
    }

    async fn get_ticket(&self, id: &str) -> Result<Option<Ticket>> {
        self.get(&self.tables.tickets, "id", id)
            .await?
            .map(|i| body_of(&i))
            .transpose()
    }

    /// An active ticket is saved on the condition that it was active already, and its
    /// customer's, in one request as any other save. A reopen, or an active ticket moved to
    /// another customer by a merge ([`Ticket::became_active`]), fails that condition, and is
    /// written with its customer's marker instead ([`DynamoStore::write_marked`]).
    ///
    /// The holders' sets follow the ticket, so that a write cut short between them leaves
    /// an agent's set one over, never one short: a set one over is cleared by the next
    /// assignment that finds it full, where one short would let the agent take a ticket
    /// past their capacity for good. A ticket's new holder takes it into their set before
    /// the ticket names them (the first save is on the condition that the holder is
    /// unchanged, the common case, and costs one request), and the holder it leaves lets it
    /// go after.
    async fn update_ticket(&self, ticket: &Ticket, expected_version: u64) -> Result<()> {
        let holder = ticket.holder();
        let (old, reopened): (Option<Ticket>, bool) =
            match self.save_ticket(ticket, expected_version, holder).await? {
                Some(old) => (old, false),
                None => {
                    let stored = self
                        .get_ticket(&ticket.id)
                        .await?
                        .ok_or_else(|| Error::not_found("ticket", &ticket.id))?;
                    if stored.version != expected_version {
                        return Err(Error::version_conflict(stored.version, expected_version));
                    }
                    if let Some(holder) = holder {
                        self.hold(holder, &ticket.id).await?;
                    }
                    if Ticket::became_active(&stored, ticket) {
                        self.write_marked(ticket, Some(expected_version)).await?;
                        (Some(stored), true)
                    } else {
                        match self.save_ticket(ticket, expected_version, None).await? {
                            Some(old) => (old, false),
                            None => {
                                let version = self
                                    .get_ticket(&ticket.id)
                                    .await?
                                    .map_or(expected_version, |t| t.version);
                                return Err(Error::version_conflict(version, expected_version));
                            }
                        }
                    }
                }
            };
        // A crash in between leaves the ticket in a set it left, which the next assignment
        // that finds the set full clears.
        if let Some(freed) = Ticket::freed(old.as_ref(), ticket) {
            self.release(freed, &ticket.id).await?;
        }
        // The marker follows the ticket: a reopened ticket took it with its write; an active
        // one takes it when it is free (one made before every active ticket took it), and
        // gives it back when it stops being active. A crash in between leaves a marker that
        // the next create or reopen finds stale and clears.
        if reopened {
            // A ticket merged away leaves its first customer's marker to it.
            match old.as_ref() {
                Some(o) if o.customer_id != ticket.customer_id => {
                    self.clear_marker(&o.customer_id, &ticket.id).await
                }
                _ => Ok(()),
            }
        } else if ticket.status.is_active() {
            self.take_free_marker(ticket).await
        } else {
            self.clear_marker(&ticket.customer_id, &ticket.id).await
        }
    }

    async fn list_tickets(
        &self,
        filter: &TicketFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Ticket>> {
        let limit = limit.clamp(1, 100);
        let mut tickets: Vec<Ticket> = Vec::new();
        // Where each query that ran out of its share of the read budget stopped: the id of
        // the last item it read. Each query has read everything from the list's start to
        // there.
        let mut stops: Vec<String> = Vec::new();
        let queries = self.ticket_queries(filter, cursor);
        let share = (self.list_read_budget / queries.len().max(1)).max(1);
        for req in queries {
            let (items, stop) = if req.get_filter_expression().is_none() {
                // Without a filter every item read is listed: the page's limit bounds it.
                let req = req.limit((limit + 1) as i32);
                (self.query_all(req, limit + 1).await?, None)
            } else {
                // A page's limit counts what it reads, before a filter drops any, so a
                // filtered query reads pages up to its share of the budget.
                self.query_within(req, limit + 1, share).await?
            };
            for item in items {
                tickets.push(body_of(&item)?);
            }
            stops.extend(stop);
        }
        // In the list's order across the queries; a ticket that changed status between two
        // of them is read twice, and kept once.
        if filter.oldest_first {
            tickets.sort_by(|a, b| a.id.cmp(&b.id));
        } else {
            tickets.sort_by(|a, b| b.id.cmp(&a.id));
        }
        tickets.dedup_by(|a, b| a.id == b.id);
        // What every query has read: up to the stop nearest the list's start. Past it, a
        // query that stopped may still hold tickets, so the page ends there.
        let read_to = if filter.oldest_first {
            stops.into_iter().min()
        } else {
            stops.into_iter().max()
        };
        if let Some(to) = &read_to {
            tickets.retain(|t| {
                if filter.oldest_first {
                    t.id <= *to
                } else {
                    t.id >= *to
                }
            });
        }
        let next_cursor = if tickets.len() > limit {
            tickets.truncate(limit);
            tickets.last().map(|t| t.id.clone())
        } else {
            read_to
        };
        Ok(Page {
            items: tickets,
            next_cursor,
        })
    }

    async fn count_tickets(&self, filter: &TicketFilter) -> Result<u64> {
        let mut total = 0u64;
        for req in self.ticket_queries(filter, None) {
            let mut req = req.select(aws_sdk_dynamodb::types::Select::Count);
            loop {
                let out = req
                    .clone()
                    .send()
                    .await
                    .map_err(|e| db_err("count tickets", e))?;
                total += out.count.max(0) as u64;
                match out.last_evaluated_key {
                    Some(key) => req = req.set_exclusive_start_key(Some(key)),
                    None => break,
                }
            }
        }
        Ok(total)
    }

    async fn active_ticket_for(&self, customer_id: &str) -> Result<Option<Ticket>> {
        // The marker is read consistently; the index only for tickets made before markers.
        match self.marked_ticket(customer_id).await? {
            (_, Some(active)) => return Ok(Some(active)),
            (Some(_), None) => return Ok(None),
            (None, None) => {}
        }
        let (active, values) = active_statuses("#s");
        let mut req = self
            .client
            .query()
            .table_name(&self.tables.tickets)
            .index_name("by_customer")
            .key_condition_expression("customer_id = :c")
            .filter_expression(active)
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":c", s(customer_id))
            .scan_index_forward(false);
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        let items = self.query_all(req, 1).await?;
        // The index is eventually consistent: confirm against the table.
        match items
            .first()
            .and_then(|i| i.get("id"))
            .and_then(|v| v.as_s().ok())
        {
            Some(id) => Ok(self.get_ticket(id).await?.filter(|t| t.status.is_active())),
            None => Ok(None),
        }
    }

    async fn rated_tickets(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Ticket>> {
        let from = from.map(ts).unwrap_or_else(|| "0".into());
        let to = to.map(ts).unwrap_or_else(|| "9999".into());
        let req = self
            .client
            .query()
            .table_name(&self.tables.tickets)
            .index_name("rated")
            .key_condition_expression("rated_pk = :r AND rated_at BETWEEN :from AND :to")
            .filter_expression("rated_at < :to")
            .expression_attribute_values(":r", s("rated"))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to));
        let items = self.query_all(req, usize::MAX).await?;
        items.iter().map(body_of).collect()
    }

    async fn rated_tickets_page(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Ticket>> {
        let from = from.map(ts).unwrap_or_else(|| "0".into());
        let to = to.map(ts).unwrap_or_else(|| "9999".into());
        let mut req = self
            .client
            .query()
            .table_name(&self.tables.tickets)
            .index_name("rated")
            .key_condition_expression("rated_pk = :r AND rated_at BETWEEN :from AND :to")
            .filter_expression("rated_at < :to")
            .expression_attribute_values(":r", s("rated"))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to))
            .limit((limit + 1) as i32);
        if let Some(cursor) = after {
            let (at, id) = crate::ports::parse_rated_cursor(cursor)?;
            req = req.set_exclusive_start_key(Some(HashMap::from([
                ("rated_pk".into(), s("rated")),
                ("rated_at".into(), s(at)),
                ("id".into(), s(id)),
            ])));
        }
        let items = self.query_all(req, limit + 1).await?;
        let mut tickets: Vec<Ticket> = items
            .iter()
            .take(limit + 1)
            .map(body_of)
            .collect::<Result<_>>()?;
        let next_cursor = (tickets.len() > limit).then(|| {
            tickets.truncate(limit);
            tickets
                .last()
                .map(crate::ports::rated_cursor)
                .unwrap_or_default()
        });
        Ok(Page {
            items: tickets,
            next_cursor,
        })
    }
}

#[async_trait]
impl AgentStore for DynamoStore {
    async fn get_agent(&self, id: &str) -> Result<Option<AgentProfile>> {
        self.get(&self.tables.tickets, "id", &agent_key(id))
            .await?
            .map(|i| agent_of(&i))
            .transpose()
    }

    async fn list_agents(&self) -> Result<Vec<AgentProfile>> {
        let req = self.query_eq(&self.tables.tickets, "all", "kind", "agent");
        let items = self.query_all(req, usize::MAX).await?;
        items.iter().map(agent_of).collect()
    }

    /// Clears from the agent's set the tickets they no longer hold, then reads it again.
    async fn recount_agent(&self, id: &str) -> Result<u32> {
        self.prune_holding(id).await?;
        Ok(self.get_agent(id).await?.map_or(0, |a| a.open_tickets))
    }

    async fn put_agent(&self, agent: &AgentProfile) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.tables.tickets)
            .key("id", s(agent_key(&agent.id)))
            .update_expression("SET profile = :p, kind = :k")
            .expression_attribute_values(":p", s(profile_json(agent)?))
            .expression_attribute_values(":k", s("agent"))
            .send()
            .await
            .map_err(|e| db_err("put agent", e))?;
        Ok(())
    }

    async fn ensure_agent(&self, id: &str) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.tickets)
            .item("id", s(agent_key(id)))
            .item("kind", s("agent"))
            .item("profile", s(profile_json(&AgentProfile::default_for(id))?))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(db_err("ensure agent", e)),
        }
    }

    async fn assign_ticket(
        &self,
        ticket: &Ticket,
        expected_version: u64,
        capacity: u32,
    ) -> Result<bool> {
        let agent = ticket
            .assignee
            .as_deref()
            .ok_or_else(|| Error::internal("assign_ticket needs an assignee"))?;
        let at = ticket.assigned_at.unwrap_or(ticket.updated_at);
        for attempt in 0..2 {
            let put = Put::builder()
                .table_name(&self.tables.tickets)
                .set_item(Some(ticket_item(ticket)?))
                .condition_expression("attribute_exists(id) AND #version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(expected_version))
                .build()
                .map_err(|e| Error::internal(format!("building a put: {e}")))?;
            let take = Update::builder()
                .table_name(&self.tables.tickets)
                .key("id", s(agent_key(agent)))
                .update_expression("ADD holding :t SET last_assigned_at = :at")
                .condition_expression(
                    "attribute_exists(profile) AND \
                     (attribute_not_exists(holding) OR size(holding) < :cap)",
                )
                .expression_attribute_values(":t", AttributeValue::Ss(vec![ticket.id.clone()]))
                .expression_attribute_values(":at", s(ts(at)))
                .expression_attribute_values(":cap", n(capacity))
                .build()
                .map_err(|e| Error::internal(format!("building an update: {e}")))?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put).build())
                .transact_items(TransactWriteItem::builder().update(take).build())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(true),
                Err(e) if condition_failed(&e) => {
                    match self.get_ticket(&ticket.id).await? {
                        None => return Err(Error::not_found("ticket", &ticket.id)),
                        Some(t) if t.version != expected_version => {
                            return Err(Error::version_conflict(t.version, expected_version))
                        }
                        // The agent's set is full: of tickets they hold, or also of some
                        // they left (a release cut short), which are cleared once.
                        Some(_) => {
                            if attempt > 0 || self.prune_holding(agent).await? == 0 {
                                return Ok(false);
                            }
                        }
                    }
                }
                Err(e) => return Err(db_err("assign ticket", e)),
            }
        }
        Ok(false)
    }

    async fn waiting_tickets(&self, limit: usize) -> Result<Vec<Ticket>> {
        let limit = limit.clamp(1, 1000);
        let req = self
            .query_eq(&self.tables.tickets, "waiting", "waiting_pk", "waiting")
            .scan_index_forward(true);
        let items = self.query_all(req, limit).await?;
        let mut tickets: Vec<Ticket> = items.iter().map(body_of).collect::<Result<_>>()?;
        tickets.truncate(limit);
        Ok(tickets)
    }

    async fn sla_due_tickets(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Ticket>> {
        let limit = limit.clamp(1, 1000);
        let req = self
            .client
            .query()
            .table_name(&self.tables.tickets)
            .index_name("sla_due")
            .key_condition_expression("sla_pk = :due AND sla_due <= :now")
            .expression_attribute_values(":due", s("due"))
            .expression_attribute_values(":now", s(ts(now)))
            .scan_index_forward(true);
        let items = self.query_all(req, limit).await?;
        let mut tickets: Vec<Ticket> = items.iter().map(body_of).collect::<Result<_>>()?;
        tickets.truncate(limit);
        Ok(tickets)
    }
}

#[async_trait]
impl CustomerStore for DynamoStore {
    async fn resolve_customer(
        &self,
        identity: &ChannelIdentity,
        name: Option<&str>,
        locale: Option<&str>,
    ) -> Result<Customer> {
        let key = identity_key(identity);
        for _ in 0..3 {
            if let Some(item) = self.get(&self.tables.identities, "identity", &key).await? {
                let customer_id = item
                    .get("customer_id")
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| Error::internal("an identity without its customer"))?;
                if let Some(c) = self.get_customer(customer_id).await? {
                    return Ok(c);
                }
            }
            let customer = Customer::new(
                identity.clone(),
                name.map(str::to_string),
                locale.map(str::to_string),
            );
            let put_identity = Put::builder()
                .table_name(&self.tables.identities)
                .item("identity", s(&key))
                .item("customer_id", s(&customer.id))
                .condition_expression("attribute_not_exists(#identity)")
                .expression_attribute_names("#identity", "identity")
                .build()
                .map_err(|e| Error::internal(format!("building a put: {e}")))?;
            let put_customer = Put::builder()
                .table_name(&self.tables.customers)
                .item("id", s(&customer.id))
                .item("body", s(to_json(&customer)?))
                .build()
                .map_err(|e| Error::internal(format!("building a put: {e}")))?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_identity).build())
                .transact_items(TransactWriteItem::builder().put(put_customer).build())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(customer),
                // Someone else created this identity at the same moment: use theirs.
                Err(e) if condition_failed(&e) => continue,
                Err(e) => return Err(db_err("create customer", e)),
            }
        }
        Err(Error::internal(format!(
            "could not resolve the customer of {key}"
        )))
    }

    async fn get_customer(&self, id: &str) -> Result<Option<Customer>> {
        self.get(&self.tables.customers, "id", id)
            .await?
            .map(|i| body_of(&i))
            .transpose()
    }

    async fn merge_step(&self, plan: &MergePlan, kind: MergeKind, limit: usize) -> Result<usize> {
        let (into, from) = (plan.into.as_str(), plan.from.as_str());
        let mut moved = 0;
        match kind {
            MergeKind::Identities => {
                let Some(source) = self.get_customer(from).await? else {
                    return Ok(0);
                };
                for identity in source.identities.iter().take(limit) {
                    let key = identity_key(identity);
                    let out = self
                        .client
                        .put_item()
                        .table_name(&self.tables.identities)
                        .item("identity", s(&key))
                        .item("customer_id", s(into))
                        .condition_expression("customer_id = :from")
                        .expression_attribute_values(":from", s(from))
                        .send()
                        .await;
                    match out {
                        Ok(_) => moved += 1,
                        Err(e) if condition_failed(&e) => {}
                        Err(e) => return Err(db_err("move identity", e)),
                    }
                }
            }
            MergeKind::Sessions => {
                let req = self
                    .query_eq(&self.tables.sessions, "by_customer", "customer_id", from)
                    .limit(limit as i32);
                let out = req.send().await.map_err(|e| db_err("query", e))?;
                for item in out.items.unwrap_or_default() {
                    let mut session: WebchatSession = body_of(&item)?;
                    session.customer_id = into.to_string();
                    self.put(
                        &self.tables.sessions,
                        session_item(&session)?,
                        "move session",
                    )
                    .await?;
                    moved += 1;
                }
            }
            MergeKind::Messages => {
                for channel in [Channel::Webchat, Channel::Whatsapp, Channel::Telegram] {
                    let conversation = format!("{from}#{}", channel.as_str());
                    let req = self
                        .query_eq(
                            &self.tables.messages,
                            "by_conversation",
                            "conversation",
                            &conversation,
                        )
                        .limit((limit - moved) as i32);
                    let out = req.send().await.map_err(|e| db_err("query", e))?;
                    for item in out.items.unwrap_or_default() {
                        let m: Message = body_of(&item)?;
                        // A compare-and-swap that keeps a sender's lease and a receipt
                        // recorded meanwhile.
                        self.update_message(&m.id, |m| m.customer_id = into.to_string())
                            .await?;
                        moved += 1;
                    }
                    if moved >= limit {
                        break;
                    }
                }
            }
            MergeKind::Tickets => {
                return Err(Error::internal(
                    "tickets move through the ticket path, not a merge step",
                ))
            }
        }
        Ok(moved)
    }

    async fn finish_merge(&self, merged: &Customer, from: &str) -> Result<()> {
        let item = HashMap::from([
            ("id".to_string(), s(&merged.id)),
            ("body".to_string(), s(to_json(merged)?)),
        ]);
        self.put(&self.tables.customers, item, "save merged customer")
            .await?;
        self.client
            .delete_item()
            .table_name(&self.tables.customers)
            .key("id", s(from))
            .send()
            .await
            .map_err(|e| db_err("remove merged customer", e))?;
        Ok(())
    }
}

#[async_trait]
impl ConversationStore for DynamoStore {
    async fn append_message(&self, m: &Message) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.messages)
            .set_item(Some(message_item(m)?))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(db_err("append message", e)),
        }
    }

    async fn get_message(&self, id: &str) -> Result<Option<Message>> {
        self.get(&self.tables.messages, "id", id)
            .await?
            .map(|i| body_of(&i))
            .transpose()
    }

    async fn message_by_provider_id(
        &self,
        channel: Channel,
        direction: Direction,
        provider_message_id: &str,
    ) -> Result<Option<Message>> {
        let key = provider_key(channel, provider_message_id);
        // No `Limit`: DynamoDB applies it before the filter, so a limit of 1 would take a
        // request for each message under the id in the other direction.
        let req = self
            .query_eq(
                &self.tables.messages,
                "by_provider_id",
                "provider_key",
                &key,
            )
            .filter_expression("#direction = :direction")
            .expression_attribute_names("#direction", "direction")
            .expression_attribute_values(":direction", s(direction.as_str()));
        let items = self.query_all(req, 1).await?;
        items.first().map(body_of).transpose()
    }

    async fn last_inbound_at(
        &self,
        customer_id: &str,
        channel: Channel,
    ) -> Result<Option<DateTime<Utc>>> {
        let req = self
            .client
            .query()
            .table_name(&self.tables.messages)
            .index_name("by_conversation")
            .key_condition_expression("conversation = :c")
            .filter_expression("#direction = :inbound")
            .expression_attribute_names("#direction", "direction")
            .expression_attribute_values(":c", s(format!("{customer_id}#{}", channel.as_str())))
            .expression_attribute_values(":inbound", s("inbound"))
            .scan_index_forward(false);
        let items = self.query_all(req, 1).await?;
        Ok(items
            .first()
            .map(body_of::<Message>)
            .transpose()?
            .map(|m| m.created_at))
    }

    async fn claim_delivery(&self, id: &str, lease_secs: i64) -> Result<bool> {
        let now = Utc::now().timestamp();
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.messages)
            .key("id", s(id))
            .update_expression("SET lease_until = :until")
            .condition_expression(
                "queued = :yes AND (attribute_not_exists(lease_until) OR lease_until <= :now)",
            )
            .expression_attribute_values(":until", n(now + lease_secs))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(db_err("claim delivery", e)),
        }
    }

    async fn release_delivery(&self, id: &str) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.tables.messages)
            .key("id", s(id))
            .update_expression("REMOVE lease_until")
            .condition_expression("attribute_exists(id)")
            .send()
            .await
            .map_err(|e| db_err("release delivery", e))?;
        Ok(())
    }

    async fn set_message_ticket(&self, id: &str, ticket_id: &str) -> Result<()> {
        self.update_message(id, |m| m.ticket_id = Some(ticket_id.to_string()))
            .await
    }

    async fn set_delivery(
        &self,
        id: &str,
        status: DeliveryStatus,
        provider_message_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        // Receipts arrive out of order and more than once: a status only moves forward.
        self.update_message(id, |m| {
            m.record_delivery(status, provider_message_id, error)
        })
        .await
    }

    /// The messages still queued, oldest first, from the sparse `queued` index: it holds
    /// only those, so the sweep that runs every few minutes reads them alone, not the
    /// history. The index can lag a write, so each is checked as it reads.
    async fn queued_before(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Message>> {
        let req = self
            .client
            .query()
            .table_name(&self.tables.messages)
            .index_name("queued")
            .key_condition_expression("queued_pk = :q AND sk < :before")
            .expression_attribute_values(":q", s(QUEUED_PK))
            .expression_attribute_values(":before", s(ts(before)))
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000));
        let items = self.query_all(req, limit).await?;
        let mut queued = Vec::new();
        for item in &items {
            let m: Message = body_of(item)?;
            if m.status == Some(DeliveryStatus::Queued) && m.created_at < before {
                queued.push(m);
            }
        }
        queued.truncate(limit);
        Ok(queued)
    }

    async fn ticket_messages(&self, ticket_id: &str) -> Result<Vec<Message>> {
        let req = self.query_eq(&self.tables.messages, "by_ticket", "ticket_id", ticket_id);
        let items = self.query_all(req, usize::MAX).await?;
        items.iter().map(body_of).collect()
    }

    async fn ticket_messages_page(
        &self,
        ticket_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Page<Message>> {
        let limit = limit.clamp(1, crate::ports::MAX_MESSAGE_PAGE);
        // Newest first, one more than the page, to know whether older ones remain.
        let mut req = self
            .client
            .query()
            .table_name(&self.tables.messages)
            .index_name("by_ticket")
            .scan_index_forward(false)
            .limit((limit + 1) as i32)
            .expression_attribute_values(":t", s(ticket_id));
        match before {
            None => req = req.key_condition_expression("ticket_id = :t"),
            Some(id) => {
                let before = self
                    .get_message(id)
                    .await?
                    .filter(|m| m.ticket_id.as_deref() == Some(ticket_id))
                    .ok_or_else(crate::ports::invalid_message_cursor)?;
                req = req
                    .key_condition_expression("ticket_id = :t AND sk < :before")
                    .expression_attribute_values(":before", s(message_sk(&before)));
            }
        }
        let items = self.query_all(req, limit + 1).await?;
        let mut newest: Vec<Message> = items
            .iter()
            .take(limit + 1)
            .map(body_of)
            .collect::<Result<_>>()?;
        newest.reverse();
        Ok(crate::ports::message_page(newest, limit))
    }

    async fn customer_messages(
        &self,
        customer_id: &str,
        channel: Channel,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let limit = limit.clamp(1, 500);
        let mut req = self
            .client
            .query()
            .table_name(&self.tables.messages)
            .index_name("by_conversation")
            .filter_expression("#direction <> :internal")
            .expression_attribute_names("#direction", "direction")
            .expression_attribute_values(":c", s(format!("{customer_id}#{}", channel.as_str())))
            .expression_attribute_values(":internal", s("internal"));
        match after {
            None => {
                let req = req
                    .key_condition_expression("conversation = :c")
                    .scan_index_forward(false);
                let items = self.query_all(req, limit).await?;
                let mut newest: Vec<Message> = items
                    .iter()
                    .take(limit)
                    .map(body_of)
                    .collect::<Result<_>>()?;
                newest.reverse();
                return Ok(newest);
            }
            Some(id) => {
                let after = self
                    .get_message(id)
                    .await?
                    .filter(|m| m.customer_id == customer_id)
                    .ok_or_else(|| Error::not_found("message", id))?;
                req = req
                    .key_condition_expression("conversation = :c AND sk >= :floor")
                    .expression_attribute_values(":floor", s(after.late_write_floor()));
            }
        }
        let items = self.query_all(req, limit + 1).await?;
        let mut messages = Vec::with_capacity(limit);
        for item in &items {
            let m: Message = body_of(item)?;
            if Some(m.id.as_str()) != after && messages.len() < limit {
                messages.push(m);
            }
        }
        Ok(messages)
    }

    async fn customer_messages_before(
        &self,
        before: &Message,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let limit = limit.clamp(1, 500);
        let req = self
            .client
            .query()
            .table_name(&self.tables.messages)
            .index_name("by_conversation")
            .scan_index_forward(false)
            .key_condition_expression("conversation = :c AND sk < :before")
            .filter_expression("#direction <> :internal")
            .expression_attribute_names("#direction", "direction")
            .expression_attribute_values(
                ":c",
                s(format!(
                    "{}#{}",
                    before.customer_id,
                    before.channel.as_str()
                )),
            )
            .expression_attribute_values(":before", s(message_sk(before)))
            .expression_attribute_values(":internal", s("internal"));
        let items = self.query_all(req, limit).await?;
        items.iter().take(limit).map(body_of).collect()
    }
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(&self, key: &str, value: &str, ttl_secs: i64) -> Result<Option<String>> {
        for _ in 0..MESSAGE_UPDATE_ATTEMPTS {
            let now = Utc::now().timestamp();
            let result = self
                .client
                .put_item()
                .table_name(&self.tables.idempotency)
                .item("key", s(key))
                .item("value", s(value))
                .item("expires_at", n(now + ttl_secs))
                // An expired claim that DynamoDB's TTL has not yet removed is free.
                .condition_expression("attribute_not_exists(#key) OR expires_at <= :now")
                .expression_attribute_names("#key", "key")
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(None),
                Err(e) if condition_failed(&e) => {
                    if let Some(first) = self.claimed(key).await? {
                        return Ok(Some(first));
                    }
                    // Given back (or expired) between the put and the read: free again.
                }
                Err(e) => return Err(db_err("claim", e)),
            }
        }
        Err(Error::internal(format!(
            "the claim {key} was taken and given back under every attempt"
        )))
    }

    async fn claimed(&self, key: &str) -> Result<Option<String>> {
        let now = Utc::now().timestamp();
        let Some(item) = self.get(&self.tables.idempotency, "key", key).await? else {
            return Ok(None);
        };
        let live = number::<i64>(&item, "expires_at").is_some_and(|at| at > now);
        Ok(live
            .then(|| item.get("value").and_then(|v| v.as_s().ok()).cloned())
            .flatten())
    }

    async fn release(&self, key: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.tables.idempotency)
            .key("key", s(key))
            .send()
            .await
            .map_err(|e| db_err("release", e))?;
        Ok(())
    }

    async fn count(&self, key: &str, ttl_secs: i64) -> Result<u64> {
        let now = Utc::now().timestamp();
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.idempotency)
            .key("key", s(key))
            .update_expression("ADD #count :one SET expires_at = if_not_exists(expires_at, :exp)")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":exp", n(now + ttl_secs))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| db_err("count", e))?;
        Ok(out
            .attributes
            .as_ref()
            .and_then(|a| number(a, "count"))
            .unwrap_or(0))
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn create_session(&self, session: &WebchatSession) -> Result<()> {
        self.put(
            &self.tables.sessions,
            session_item(session)?,
            "create session",
        )
        .await
    }

    async fn session_by_token_hash(&self, token_hash: &str) -> Result<Option<WebchatSession>> {
        self.get(&self.tables.sessions, "token_hash", token_hash)
            .await?
            .map(|i| body_of(&i))
            .transpose()
    }

    async fn update_session(&self, session: &WebchatSession) -> Result<()> {
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.sessions)
            .set_item(Some(session_item(session)?))
            .condition_expression("customer_id = :customer")
            .expression_attribute_values(":customer", s(&session.customer_id))
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            // Gone, or moved to another customer by a merge since it was read.
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(db_err("save session", e)),
        }
    }
}

/// The partition of the canned responses, and that of their counter.
const CANNED_PK: &str = "canned";
const COUNT_PK: &str = "count";
/// How often a canned response's write is tried again when another write got in between.
const CANNED_ATTEMPTS: usize = 8;

fn canned_item(c: &CannedResponse) -> Result<Item> {
    Ok(HashMap::from([
        ("pk".into(), s(CANNED_PK)),
        ("short_code".into(), s(&c.short_code)),
        ("body".into(), s(to_json(c)?)),
    ]))
}

impl DynamoStore {
    fn canned_key(&self, short_code: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".into(), s(CANNED_PK)),
            ("short_code".into(), s(short_code)),
        ])
    }

    /// The counter's key: its own partition, beside the responses'.
    fn count_key(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".into(), s(COUNT_PK)),
            ("short_code".into(), s(CANNED_PK)),
        ])
    }

    /// One item of the canned responses' table, read strongly.
    async fn canned_get(&self, key: HashMap<String, AttributeValue>) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.canned_responses)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| db_err("read canned responses", e))?;
        Ok(out.item)
    }

    /// The counter's change by `by`, in a transaction; a raise only while it is below the
    /// cap.
    fn canned_count(&self, by: i64) -> Result<Update> {
        let mut update = Update::builder()
            .table_name(&self.tables.canned_responses)
            .set_key(Some(self.count_key()))
            .update_expression("ADD n :by")
            .expression_attribute_values(":by", n(by));
        if by > 0 {
            update = update
                .condition_expression("attribute_not_exists(n) OR n < :max")
                .expression_attribute_values(":max", n(canned::MAX_CANNED_RESPONSES));
        }
        update
            .build()
            .map_err(|e| Error::internal(format!("building an update: {e}")))
    }

    async fn canned_exists(&self, short_code: &str) -> Result<bool> {
        Ok(self
            .canned_get(self.canned_key(short_code))
            .await?
            .is_some())
    }

    /// How many canned responses the counter says there are.
    async fn canned_total(&self) -> Result<usize> {
        let counter = self.canned_get(self.count_key()).await?;
        Ok(counter.as_ref().and_then(|i| number(i, "n")).unwrap_or(0))
    }
}

/// A replace is a put on the condition that the response is there; a create, a put on the
/// condition that it is not, in one transaction with the counter's raise on the condition
/// that it is below the cap. When a condition fails (or the transaction met another), what
/// is stored now decides: the response is there (replace it), the count is at the cap
/// (refused), or neither (try again).
#[async_trait]
impl CannedStore for DynamoStore {
    async fn list_canned(&self) -> Result<Vec<CannedResponse>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.tables.canned_responses)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(CANNED_PK))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| db_err("list canned responses", e))?;
            for item in page.items() {
                out.push(body_of(item)?);
            }
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(out),
            }
        }
    }

    async fn save_canned(&self, c: &CannedResponse, create_only: bool) -> Result<bool> {
        let item = canned_item(c)?;
        for _ in 0..CANNED_ATTEMPTS {
            // A create only goes straight to the create, whose condition refuses a code
            // kept already.
            if !create_only {
                let replace = self
                    .client
                    .put_item()
                    .table_name(&self.tables.canned_responses)
                    .set_item(Some(item.clone()))
                    .condition_expression("attribute_exists(short_code)")
                    .send()
                    .await;
                match replace {
                    Ok(_) => return Ok(false),
                    Err(e) if condition_failed(&e) => {}
                    Err(e) => return Err(db_err("save canned response", e)),
                }
            }
            let put = Put::builder()
                .table_name(&self.tables.canned_responses)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(short_code)")
                .build()
                .map_err(|e| Error::internal(format!("building a put: {e}")))?;
            let create = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put).build())
                .transact_items(
                    TransactWriteItem::builder()
                        .update(self.canned_count(1)?)
                        .build(),
                )
                .send()
                .await;
            match create {
                Ok(_) => return Ok(true),
                Err(e) if condition_failed(&e) => {
                    let exists = self.canned_exists(&c.short_code).await?;
                    if exists && create_only {
                        return Err(canned::exists(&c.short_code));
                    }
                    if !exists && self.canned_total().await? >= canned::MAX_CANNED_RESPONSES {
                        return Err(canned::too_many());
                    }
                }
                Err(e) => return Err(db_err("create canned response", e)),
            }
        }
        Err(Error::conflict(
            "write_conflict",
            "other writes kept changing the canned responses: try again",
        ))
    }

    async fn delete_canned(&self, short_code: &str) -> Result<bool> {
        for _ in 0..CANNED_ATTEMPTS {
            let delete = Delete::builder()
                .table_name(&self.tables.canned_responses)
                .set_key(Some(self.canned_key(short_code)))
                .condition_expression("attribute_exists(short_code)")
                .build()
                .map_err(|e| Error::internal(format!("building a delete: {e}")))?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().delete(delete).build())
                .transact_items(
                    TransactWriteItem::builder()
                        .update(self.canned_count(-1)?)
                        .build(),
                )
                .send()
                .await;
            match result {
                Ok(_) => return Ok(true),
                Err(e) if condition_failed(&e) => {
                    if !self.canned_exists(short_code).await? {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(db_err("delete canned response", e)),
            }
        }
        Err(Error::conflict(
            "write_conflict",
            "other writes kept changing the canned responses: try again",
        ))
    }
}
