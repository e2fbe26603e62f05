//! SQLite behind every store port, and behind the local queues. Everything a request
//! accepted is in this one file before the request is answered, so a restart loses nothing.
//!
//! Tickets, customers and messages are kept as JSON documents beside the columns the
//! filters need. A ticket change is written to the `ticket_changes` queue in the same
//! transaction as the ticket itself: the local stand-in for a DynamoDB stream.

use crate::domain::canned::{self, CannedResponse};
use crate::domain::{
    ticket_ref, AgentProfile, Channel, ChannelIdentity, Customer, DeliveryStatus, Direction,
    MergeKind, MergePlan, Message, Ticket, TicketFilter, TicketStatus,
};
use crate::jobs::Job;
use crate::ports::{
    AgentStore, CannedStore, ConversationStore, CustomerStore, IdempotencyStore, Page, Queue,
    QueueName, SessionStore, TicketChange, TicketStore, WebchatSession,
};
use crate::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::watch;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    channel TEXT NOT NULL, external_id TEXT NOT NULL, customer_id TEXT NOT NULL,
    PRIMARY KEY (channel, external_id));
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL,
    priority TEXT NOT NULL, skill TEXT NOT NULL, assignee TEXT, channel TEXT NOT NULL,
    version INTEGER NOT NULL, rated_at TEXT, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tickets_by_customer ON tickets (customer_id, status);
CREATE INDEX IF NOT EXISTS tickets_by_status ON tickets (status, id);
CREATE INDEX IF NOT EXISTS tickets_by_assignee ON tickets (assignee, id);
CREATE INDEX IF NOT EXISTS tickets_by_rated_at ON tickets (rated_at);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL, channel TEXT NOT NULL, direction TEXT NOT NULL,
    ticket_id TEXT, body TEXT NOT NULL, send_lease INTEGER);
CREATE INDEX IF NOT EXISTS messages_by_ticket ON messages (ticket_id, seq);
CREATE INDEX IF NOT EXISTS messages_by_provider_id
    ON messages (channel, json_extract(body, '$.provider_message_id'));
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, id TEXT NOT NULL, customer_id TEXT NOT NULL,
    body TEXT NOT NULL, expires_at INTEGER);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, group_key TEXT,
    dedup_id TEXT, body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    visible_at INTEGER NOT NULL, dead INTEGER NOT NULL DEFAULT 0, last_error TEXT,
    created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS queue_next ON queue (queue, dead, seq);
CREATE UNIQUE INDEX IF NOT EXISTS queue_dedup ON queue (queue, dedup_id)
    WHERE dedup_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY, body TEXT NOT NULL, last_assigned_at TEXT);
CREATE TABLE IF NOT EXISTS canned_responses (short_code TEXT PRIMARY KEY, body TEXT NOT NULL);
"#;

/// Indexes on columns added after a data directory may have been made.
const LATE_INDEXES: &str = r#"
CREATE INDEX IF NOT EXISTS tickets_by_sla_due ON tickets (sla_due) WHERE sla_due IS NOT NULL;
CREATE INDEX IF NOT EXISTS tickets_waiting ON tickets (status, assignee, priority, id);
CREATE INDEX IF NOT EXISTS tickets_by_ref ON tickets (ref, id);
CREATE INDEX IF NOT EXISTS messages_by_ticket_order ON messages (ticket_id, sk, seq);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (customer_id, channel, sk, seq);
-- The conversation index above serves what this one did.
DROP INDEX IF EXISTS messages_by_customer;
"#;

/// The statuses of tickets still being worked, as SQL.
const ACTIVE_SQL: &str = "('open', 'pending', 'escalated')";

/// The name of the change-feed queue that ticket writes feed.
pub(crate) const CHANGE_QUEUE: &str = QueueName::TicketChanges.as_str();

/// A message that failed too often, or for good.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub queue: String,
    pub body: String,
    pub attempts: u32,
    pub error: Option<String>,
}

/// A message taken from a queue, to be acknowledged or failed.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub seq: i64,
    pub body: String,
    pub attempts: u32,
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Bumped on every enqueue, so that idle workers wake at once.
    wake: watch::Sender<u64>,
}

fn db_err(e: rusqlite::Error) -> Error {
    Error::internal(format!("sqlite: {e}"))
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("encoding a record: {e}")))
}

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("decoding a record: {e}")))
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl SqliteStore {
    /// Opens (or creates) the database file.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = Connection::open(path).map_err(|e| {
            Error::internal(format!("opening the database {}: {e}", path.display()))
        })?;
        Self::init(conn)
    }

    /// A private database in memory, for tests.
    pub fn in_memory() -> Result<SqliteStore> {
        Self::init(Connection::open_in_memory().map_err(db_err)?)
    }

    fn init(mut conn: Connection) -> Result<SqliteStore> {
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
        )
        .map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        // Columns added after a data directory may have been made.
        for column in [
            "ALTER TABLE messages ADD COLUMN send_lease INTEGER",
            "ALTER TABLE sessions ADD COLUMN expires_at INTEGER",
            "ALTER TABLE tickets ADD COLUMN sla_due TEXT",
            "ALTER TABLE tickets ADD COLUMN ref TEXT",
            "ALTER TABLE messages ADD COLUMN sk TEXT",
        ] {
            match conn.execute(column, []) {
                Ok(_) => {}
                Err(e) if e.to_string().contains("duplicate column") => {}
                Err(e) => return Err(db_err(e)),
            }
        }
        conn.execute_batch(LATE_INDEXES).map_err(db_err)?;
        Self::backfill_refs(&mut conn)?;
        Self::backfill_message_order(&mut conn)?;
        let (wake, _) = watch::channel(0);
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            wake,
        })
    }

    /// Gives the tickets written before the `ref` column their reference, once: later
    /// writes keep it.
    fn backfill_refs(conn: &mut Connection) -> Result<()> {
        let tx = conn.transaction().map_err(db_err)?;
        let ids: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT id FROM tickets WHERE ref IS NULL")
                .map_err(db_err)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(db_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db_err)?
        };
        for id in &ids {
            tx.execute(
                "UPDATE tickets SET ref = ?2 WHERE id = ?1",
                [id, &ticket_ref(id)],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Gives the messages written before the `sk` column their place in the conversation
    /// ([`Message::order_time`]), once: later writes keep it.
    fn backfill_message_order(conn: &mut Connection) -> Result<()> {
        let tx = conn.transaction().map_err(db_err)?;
        let rows: Vec<(i64, String)> = {
            let mut stmt = tx
                .prepare("SELECT seq, body FROM messages WHERE sk IS NULL")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db_err)?
        };
        for (seq, body) in &rows {
            let m: Message = serde_json::from_str(body).map_err(|e| {
                Error::internal(format!("a stored message that does not decode: {e}"))
            })?;
            tx.execute(
                "UPDATE messages SET sk = ?2 WHERE seq = ?1",
                params![seq, m.order_time()],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolled back.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tx<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let out = f(&tx)?;
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// A receiver that changes whenever something is enqueued.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    fn wake_workers(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A value kept across restarts (secrets generated on first start, markers).
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(db_err)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(drop)
            .map_err(db_err)
    }

    fn enqueue(
        tx: &Transaction,
        queue: &str,
        body: &str,
        group: Option<&str>,
        dedup_id: Option<&str>,
    ) -> Result<()> {
        let now = now_ms();
        tx.execute(
            "INSERT INTO queue (queue, group_key, dedup_id, body, visible_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT DO NOTHING",
            params![queue, group, dedup_id, body, now],
        )
        .map(drop)
        .map_err(db_err)
    }

    /// The oldest visible message of `queue` whose group has nothing older still waiting.
    pub(crate) fn receive(&self, queue: &str) -> Result<Option<Delivery>> {
        self.conn()
            .query_row(
                "SELECT seq, body, attempts FROM queue q
                 WHERE queue = ?1 AND dead = 0 AND visible_at <= ?2
                   AND (group_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM queue p WHERE p.queue = q.queue AND p.dead = 0
                          AND p.group_key = q.group_key AND p.seq < q.seq))
                 ORDER BY seq LIMIT 1",
                params![queue, now_ms()],
                |r| {
                    Ok(Delivery {
                        seq: r.get(0)?,
                        body: r.get(1)?,
                        attempts: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(db_err)
    }

    /// Milliseconds until the next delayed message of `queue` becomes visible.
    pub(crate) fn next_visible_in(&self, queue: &str) -> Result<Option<i64>> {
        let at: Option<i64> = self
            .conn()
            .query_row(
                "SELECT MIN(visible_at) FROM queue WHERE queue = ?1 AND dead = 0",
                [queue],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        Ok(at.map(|at| (at - now_ms()).max(0)))
    }

    pub(crate) fn ack(&self, seq: i64) -> Result<()> {
        self.conn()
            .execute("DELETE FROM queue WHERE seq = ?1", [seq])
            .map(drop)
            .map_err(db_err)
    }

    /// Records a failed attempt: the message comes back after `delay_ms`, or, when `dead`,
    /// moves to the dead letters.
    pub(crate) fn fail(&self, seq: i64, error: &str, delay_ms: i64, dead: bool) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE queue SET attempts = attempts + 1, last_error = ?2,
                        visible_at = ?3, dead = ?4 WHERE seq = ?1",
                params![seq, error, now_ms() + delay_ms, dead],
            )
            .map(drop)
            .map_err(db_err)
    }

    /// How many messages of `queue` wait to be handled (dead letters not counted): zero
    /// when the pipeline is drained.
    pub fn queue_depth(&self, queue: &str) -> Result<usize> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM queue WHERE queue = ?1 AND dead = 0",
                [queue],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(db_err)
    }

    /// The dead letters of one queue, oldest first.
    pub fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT queue, body, attempts, last_error FROM queue
                 WHERE queue = ?1 AND dead = 1 ORDER BY seq",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([queue], |r| {
                Ok(DeadLetter {
                    queue: r.get(0)?,
                    body: r.get(1)?,
                    attempts: r.get(2)?,
                    error: r.get(3)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err)
    }

    fn load_ticket(conn: &Connection, id: &str) -> Result<Option<Ticket>> {
        let body: Option<String> = conn
            .query_row("SELECT body FROM tickets WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        body.map(|b| from_json(&b)).transpose()
    }

    fn active_ticket(conn: &Connection, customer_id: &str) -> Result<Option<Ticket>> {
        let statuses: Vec<&str> = TicketStatus::ACTIVE.iter().map(|s| s.as_str()).collect();
        let mut found: Vec<Ticket> = Self::query_json(
            conn,
            "SELECT body FROM tickets WHERE customer_id = ?1
               AND status IN (?2, ?3, ?4) ORDER BY id DESC LIMIT 1",
            &[&customer_id, &statuses[0], &statuses[1], &statuses[2]],
        )?;
        Ok(found.pop())
    }

    fn write_ticket(tx: &Transaction, t: &Ticket, insert: bool) -> Result<()> {
        let rated_at = t.survey.as_ref().and_then(|s| s.answered_at).map(ts);
        let body = to_json(t)?;
        let sla_due = t.next_sla_due().map(ts);
        let sql = if insert {
            "INSERT INTO tickets (id, customer_id, status, priority, skill, assignee, channel,
                                  version, rated_at, body, sla_due, ref)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        } else {
            "UPDATE tickets SET customer_id = ?2, status = ?3, priority = ?4, skill = ?5,
                    assignee = ?6, channel = ?7, version = ?8, rated_at = ?9, body = ?10,
                    sla_due = ?11, ref = ?12
             WHERE id = ?1"
        };
        tx.execute(
            sql,
            params![
                t.id,
                t.customer_id,
                t.status.as_str(),
                t.priority.as_str(),
                t.skill.as_str(),
                t.assignee,
                t.channel.as_str(),
                t.version as i64,
                rated_at,
                body,
                sla_due,
                ticket_ref(&t.id)
            ],
        )
        .map(drop)
        .map_err(db_err)
    }

    fn record_change(tx: &Transaction, old: Option<Ticket>, new: &Ticket) -> Result<()> {
        let change = TicketChange {
            old,
            new: new.clone(),
        };
        let group = change.group();
        Self::enqueue(tx, CHANGE_QUEUE, &to_json(&change)?, group.as_deref(), None)
    }

    fn load_message(conn: &Connection, id: &str) -> Result<Option<Message>> {
        let body: Option<String> = conn
            .query_row("SELECT body FROM messages WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)?;
        body.map(|b| from_json(&b)).transpose()
    }

    fn update_message(&self, id: &str, f: impl FnOnce(&mut Message)) -> Result<()> {
        self.tx(|tx| {
            let mut m =
                Self::load_message(tx, id)?.ok_or_else(|| Error::not_found("message", id))?;
            f(&mut m);
            tx.execute(
                "UPDATE messages SET ticket_id = ?2, body = ?3 WHERE id = ?1",
                params![id, m.ticket_id, to_json(&m)?],
            )
            .map_err(db_err)?;
            Ok(())
        })
    }

    /// How many tickets still being worked `agent` holds, leaving out `except`.
    fn holding(conn: &Connection, agent: &str, except: &str) -> Result<u32> {
        conn.query_row(
            &format!(
                "SELECT COUNT(*) FROM tickets WHERE assignee = ?1 AND id != ?2
                   AND status IN {ACTIVE_SQL}"
            ),
            [agent, except],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n.max(0) as u32)
        .map_err(db_err)
    }

    fn load_agents(conn: &Connection, id: Option<&str>) -> Result<Vec<AgentProfile>> {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT a.body, a.last_assigned_at,
                        (SELECT COUNT(*) FROM tickets t WHERE t.assignee = a.id
                           AND t.status IN {ACTIVE_SQL})
                 FROM agents a WHERE ?1 IS NULL OR a.id = ?1 ORDER BY a.id"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (body, last, open) = row.map_err(db_err)?;
            let mut agent: AgentProfile = from_json(&body)?;
            agent.last_assigned_at = last
                .and_then(|l| DateTime::parse_from_rfc3339(&l).ok())
                .map(|d| d.with_timezone(&Utc));
            agent.open_tickets = open.max(0) as u32;
            out.push(agent);
        }
        Ok(out)
    }

    fn query_json<T: DeserializeOwned>(
        conn: &Connection,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<T>> {
        let mut stmt = conn.prepare(sql).map_err(db_err)?;
        let rows = stmt
            .query_map(args, |r| r.get::<_, String>(0))
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(from_json(&row.map_err(db_err)?)?);
        }
        Ok(out)
    }
}

/// `SELECT <what> FROM tickets WHERE ...` for the filter, with its arguments.
fn ticket_filter_sql(what: &str, filter: &TicketFilter) -> (String, Vec<String>) {
    let mut sql = format!("{what} FROM tickets WHERE 1 = 1");
    let mut args: Vec<String> = Vec::new();
    let mut add = |condition: &str, value: Option<&str>| {
        if let Some(v) = value {
            args.push(v.to_string());
            sql.push_str(&format!(" AND {condition} ?{}", args.len()));
        }
    };
    add("status =", filter.status.map(|s| s.as_str()));
    add("priority =", filter.priority.map(|p| p.as_str()));
    add("skill =", filter.skill.map(|s| s.as_str()));
    add("assignee =", filter.assignee.as_deref());
    add("channel =", filter.channel.map(|c| c.as_str()));
    add("customer_id =", filter.customer_id.as_deref());
    add("ref =", filter.reference.as_deref());
    if let Some(tag) = &filter.tag {
        args.push(tag.clone());
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM json_each(body, '$.tags') WHERE value = ?{})",
            args.len()
        ));
    }
    if filter.active {
        let list: Vec<String> = TicketStatus::ACTIVE
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        sql.push_str(&format!(" AND status IN ({})", list.join(", ")));
    }
    if filter.unassigned {
        sql.push_str(" AND assignee IS NULL");
    }
    (sql, args)
}

#[async_trait]
impl TicketStore for SqliteStore {
    async fn create_ticket(&self, ticket: &Ticket) -> Result<()> {
        self.tx(|tx| {
            if Self::load_ticket(tx, &ticket.id)?.is_some() {
                return Err(Error::ticket_exists(&ticket.id));
            }
            // In the transaction that writes it: no other create comes in between.
            if ticket.status.is_active() {
                if let Some(active) = Self::active_ticket(tx, &ticket.customer_id)? {
                    return Err(Error::active_ticket_exists(&ticket.customer_id, &active.id));
                }
            }
            Self::write_ticket(tx, ticket, true)?;
            Self::record_change(tx, None, ticket)
        })?;
        self.wake_workers();
        Ok(())
    }

    async fn get_ticket(&self, id: &str) -> Result<Option<Ticket>> {
        Self::load_ticket(&self.conn(), id)
    }

    async fn update_ticket(&self, ticket: &Ticket, expected_version: u64) -> Result<()> {
        self.tx(|tx| {
            let old = Self::load_ticket(tx, &ticket.id)?
                .ok_or_else(|| Error::not_found("ticket", &ticket.id))?;
            if old.version != expected_version {
                return Err(Error::version_conflict(old.version, expected_version));
            }
            // A reopen, or an active ticket merged to another customer, is checked as a
            // create is, in the transaction that writes it: of two tickets of one customer
            // reopened at once, one becomes active.
            if Ticket::became_active(&old, ticket) {
                if let Some(active) = Self::active_ticket(tx, &ticket.customer_id)? {
                    return Err(Error::active_ticket_exists(&ticket.customer_id, &active.id));
                }
            }
            Self::write_ticket(tx, ticket, false)?;
            Self::record_change(tx, Some(old), ticket)
        })?;
        self.wake_workers();
        Ok(())
    }

    async fn list_tickets(
        &self,
        filter: &TicketFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Ticket>> {
        let (mut sql, mut args) = ticket_filter_sql("SELECT body", filter);
        // Ids are UUID v7: their order is the order the tickets were made in.
        let (after, order) = if filter.oldest_first {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        if let Some(c) = cursor {
            args.push(c.to_string());
            sql.push_str(&format!(" AND id {after} ?{}", args.len()));
        }
        let limit = limit.clamp(1, 100);
        sql.push_str(&format!(" ORDER BY id {order} LIMIT {}", limit + 1));
        let conn = self.conn();
        let refs: Vec<&dyn rusqlite::ToSql> =
            args.iter().map(|a| a as &dyn rusqlite::ToSql).collect();
        let mut items: Vec<Ticket> = Self::query_json(&conn, &sql, &refs)?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|t| t.id.clone())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn count_tickets(&self, filter: &TicketFilter) -> Result<u64> {
        let (sql, args) = ticket_filter_sql("SELECT COUNT(*)", filter);
        let conn = self.conn();
        let refs: Vec<&dyn rusqlite::ToSql> =
            args.iter().map(|a| a as &dyn rusqlite::ToSql).collect();
        conn.query_row(&sql, refs.as_slice(), |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(db_err)
    }

    async fn active_ticket_for(&self, customer_id: &str) -> Result<Option<Ticket>> {
        Self::active_ticket(&self.conn(), customer_id)
    }

    async fn rated_tickets(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Ticket>> {
        let from = from.map(ts).unwrap_or_default();
        let to = to.map(ts).unwrap_or_else(|| "9999".to_string());
        Self::query_json(
            &self.conn(),
            "SELECT body FROM tickets WHERE rated_at IS NOT NULL
               AND rated_at >= ?1 AND rated_at < ?2",
            &[&from, &to],
        )
    }

    async fn rated_tickets_page(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Ticket>> {
        let from = from.map(ts).unwrap_or_default();
        let to = to.map(ts).unwrap_or_else(|| "9999".to_string());
        let (after_at, after_id) = match after {
            Some(c) => crate::ports::parse_rated_cursor(c)?,
            None => ("", ""),
        };
        let take = limit as i64 + 1;
        let mut items: Vec<Ticket> = Self::query_json(
            &self.conn(),
            "SELECT body FROM tickets WHERE rated_at IS NOT NULL
               AND rated_at >= ?1 AND rated_at < ?2
               AND (rated_at > ?3 OR (rated_at = ?3 AND id > ?4))
               ORDER BY rated_at, id LIMIT ?5",
            &[&from, &to, &after_at, &after_id, &take],
        )?;
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            items
                .last()
                .map(crate::ports::rated_cursor)
                .unwrap_or_default()
        });
        Ok(Page { items, next_cursor })
    }
}

#[async_trait]
impl AgentStore for SqliteStore {
    async fn get_agent(&self, id: &str) -> Result<Option<AgentProfile>> {
        Ok(Self::load_agents(&self.conn(), Some(id))?.pop())
    }

    async fn list_agents(&self) -> Result<Vec<AgentProfile>> {
        Self::load_agents(&self.conn(), None)
    }

    /// The count is made from the tickets at each read: nothing drifts.
    async fn recount_agent(&self, id: &str) -> Result<u32> {
        Ok(self.get_agent(id).await?.map_or(0, |a| a.open_tickets))
    }

    async fn put_agent(&self, agent: &AgentProfile) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO agents (id, body) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                [&agent.id, &to_json(&agent.as_stored())?],
            )
            .map(drop)
            .map_err(db_err)
    }

    async fn ensure_agent(&self, id: &str) -> Result<bool> {
        let profile = AgentProfile::default_for(id);
        self.conn()
            .execute(
                "INSERT INTO agents (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
                [id, &to_json(&profile)?],
            )
            .map(|n| n > 0)
            .map_err(db_err)
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
        let assigned = self.tx(|tx| {
            // One writer at a time: the count and the write see the same tickets.
            if Self::holding(tx, agent, &ticket.id)? >= capacity {
                return Ok(false);
            }
            let old = Self::load_ticket(tx, &ticket.id)?
                .ok_or_else(|| Error::not_found("ticket", &ticket.id))?;
            if old.version != expected_version {
                return Err(Error::version_conflict(old.version, expected_version));
            }
            Self::write_ticket(tx, ticket, false)?;
            Self::record_change(tx, Some(old), ticket)?;
            tx.execute(
                "UPDATE agents SET last_assigned_at = ?2 WHERE id = ?1",
                params![agent, ticket.assigned_at.map(ts)],
            )
            .map_err(db_err)?;
            Ok(true)
        })?;
        if assigned {
            self.wake_workers();
        }
        Ok(assigned)
    }

    async fn waiting_tickets(&self, limit: usize) -> Result<Vec<Ticket>> {
        Self::query_json(
            &self.conn(),
            &format!(
                "SELECT body FROM tickets WHERE assignee IS NULL AND status IN {ACTIVE_SQL}
                 ORDER BY CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1
                                        WHEN 'normal' THEN 2 ELSE 3 END, id
                 LIMIT {}",
                limit.clamp(1, 1000)
            ),
            &[],
        )
    }

    async fn sla_due_tickets(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Ticket>> {
        Self::query_json(
            &self.conn(),
            &format!(
                "SELECT body FROM tickets WHERE sla_due IS NOT NULL AND sla_due <= ?1
                 ORDER BY sla_due LIMIT {}",
                limit.clamp(1, 1000)
            ),
            &[&ts(now)],
        )
    }
}

#[async_trait]
impl CustomerStore for SqliteStore {
    async fn resolve_customer(
        &self,
        identity: &ChannelIdentity,
        name: Option<&str>,
        locale: Option<&str>,
    ) -> Result<Customer> {
        self.tx(|tx| {
            let existing: Option<String> = tx
                .query_row(
                    "SELECT c.body FROM identities i JOIN customers c ON c.id = i.customer_id
                     WHERE i.channel = ?1 AND i.external_id = ?2",
                    [identity.channel.as_str(), &identity.external_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            if let Some(body) = existing {
                return from_json(&body);
            }
            let customer = Customer::new(
                identity.clone(),
                name.map(str::to_string),
                locale.map(str::to_string),
            );
            tx.execute(
                "INSERT INTO customers (id, body) VALUES (?1, ?2)",
                params![customer.id, to_json(&customer)?],
            )
            .map_err(db_err)?;
            tx.execute(
                "INSERT INTO identities (channel, external_id, customer_id) VALUES (?1, ?2, ?3)",
                params![identity.channel.as_str(), identity.external_id, customer.id],
            )
            .map_err(db_err)?;
            Ok(customer)
        })
    }

    async fn get_customer(&self, id: &str) -> Result<Option<Customer>> {
        let mut found: Vec<Customer> = Self::query_json(
            &self.conn(),
            "SELECT body FROM customers WHERE id = ?1",
            &[&id],
        )?;
        Ok(found.pop())
    }

    async fn merge_step(&self, plan: &MergePlan, kind: MergeKind, limit: usize) -> Result<usize> {
        let limit = limit as i64;
        let (into, from) = (plan.into.as_str(), plan.from.as_str());
        let sql = match kind {
            MergeKind::Identities => {
                "UPDATE identities SET customer_id = ?1 WHERE rowid IN
                 (SELECT rowid FROM identities WHERE customer_id = ?2 LIMIT ?3)"
            }
            MergeKind::Sessions => {
                "UPDATE sessions SET customer_id = ?1, body = json_set(body, '$.customer_id', ?1)
                 WHERE rowid IN (SELECT rowid FROM sessions WHERE customer_id = ?2 LIMIT ?3)"
            }
            MergeKind::Messages => {
                "UPDATE messages SET customer_id = ?1, body = json_set(body, '$.customer_id', ?1)
                 WHERE seq IN (SELECT seq FROM messages WHERE customer_id = ?2 LIMIT ?3)"
            }
            MergeKind::Tickets => {
                return Err(Error::internal(
                    "tickets move through the ticket path, not a merge step",
                ))
            }
        };
        self.conn()
            .execute(sql, params![into, from, limit])
            .map_err(db_err)
    }

    async fn finish_merge(&self, merged: &Customer, from: &str) -> Result<()> {
        self.tx(|tx| {
            tx.execute(
                "UPDATE customers SET body = ?2 WHERE id = ?1",
                params![merged.id, to_json(merged)?],
            )
            .map_err(db_err)?;
            tx.execute("DELETE FROM customers WHERE id = ?1", [from])
                .map_err(db_err)?;
            Ok(())
        })
    }
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn append_message(&self, m: &Message) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "INSERT INTO messages (id, customer_id, channel, direction, ticket_id, body, sk)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
                params![
                    m.id,
                    m.customer_id,
                    m.channel.as_str(),
                    m.direction.as_str(),
                    m.ticket_id,
                    to_json(m)?,
                    m.order_time()
                ],
            )
            .map_err(db_err)?;
        Ok(n == 1)
    }

    async fn release_delivery(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("UPDATE messages SET send_lease = NULL WHERE id = ?1", [id])
            .map(drop)
            .map_err(db_err)
    }

    async fn get_message(&self, id: &str) -> Result<Option<Message>> {
        Self::load_message(&self.conn(), id)
    }

    async fn message_by_provider_id(
        &self,
        channel: Channel,
        direction: Direction,
        provider_message_id: &str,
    ) -> Result<Option<Message>> {
        let mut found: Vec<Message> = Self::query_json(
            &self.conn(),
            "SELECT body FROM messages
             WHERE channel = ?1 AND direction = ?2
               AND json_extract(body, '$.provider_message_id') = ?3
             ORDER BY seq LIMIT 1",
            &[&channel.as_str(), &direction.as_str(), &provider_message_id],
        )?;
        Ok(found.pop())
    }

    async fn last_inbound_at(
        &self,
        customer_id: &str,
        channel: Channel,
    ) -> Result<Option<DateTime<Utc>>> {
        let mut found: Vec<Message> = Self::query_json(
            &self.conn(),
            "SELECT body FROM messages
             WHERE customer_id = ?1 AND channel = ?2 AND direction = 'inbound'
             ORDER BY seq DESC LIMIT 1",
            &[&customer_id, &channel.as_str()],
        )?;
        Ok(found.pop().map(|m| m.created_at))
    }

    async fn set_message_ticket(&self, id: &str, ticket_id: &str) -> Result<()> {
        self.update_message(id, |m| m.ticket_id = Some(ticket_id.to_string()))
    }

    async fn claim_delivery(&self, id: &str, lease_secs: i64) -> Result<bool> {
        let now = Utc::now().timestamp();
        let n = self
            .conn()
            .execute(
                "UPDATE messages SET send_lease = ?2 WHERE id = ?1
                   AND json_extract(body, '$.status') = 'queued'
                   AND (send_lease IS NULL OR send_lease <= ?3)",
                params![id, now + lease_secs, now],
            )
            .map_err(db_err)?;
        Ok(n == 1)
    }

    async fn set_delivery(
        &self,
        id: &str,
        status: DeliveryStatus,
        provider_message_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        // Applied inside the transaction, so that a receipt racing the sender's own
        // record of the send cannot move the status backwards.
        self.update_message(id, |m| {
            m.record_delivery(status, provider_message_id, error)
        })
    }

    async fn ticket_messages(&self, ticket_id: &str) -> Result<Vec<Message>> {
        Self::query_json(
            &self.conn(),
            "SELECT body FROM messages WHERE ticket_id = ?1 ORDER BY sk, seq",
            &[&ticket_id],
        )
    }

    async fn ticket_messages_page(
        &self,
        ticket_id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Page<Message>> {
        let conn = self.conn();
        // In the conversation's order (its time, [`Message::order_time`], then as written);
        // past every message when no cursor is given (`~` sorts after the digits a time
        // starts with).
        let (before_time, before_seq): (String, i64) = match before {
            None => ("~".into(), i64::MAX),
            Some(id) => conn
                .query_row(
                    "SELECT sk, seq FROM messages WHERE id = ?1 AND ticket_id = ?2",
                    [id, ticket_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_err)?
                .ok_or_else(crate::ports::invalid_message_cursor)?,
        };
        // One more than the page, to know whether older ones remain.
        let take = (limit.clamp(1, crate::ports::MAX_MESSAGE_PAGE) + 1) as i64;
        let mut newest: Vec<Message> = Self::query_json(
            &conn,
            "SELECT body FROM messages WHERE ticket_id = ?1
               AND (sk < ?2 OR (sk = ?2 AND seq < ?3))
               ORDER BY sk DESC, seq DESC LIMIT ?4",
            &[&ticket_id, &before_time, &before_seq, &take],
        )?;
        newest.reverse();
        Ok(crate::ports::message_page(newest, limit))
    }

    async fn queued_before(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Message>> {
        let queued: Vec<Message> = Self::query_json(
            &self.conn(),
            "SELECT body FROM messages WHERE direction = 'outbound'
               AND json_extract(body, '$.status') = 'queued' ORDER BY seq",
            &[],
        )?;
        Ok(queued
            .into_iter()
            .filter(|m| m.created_at < before)
            .take(limit)
            .collect())
    }

    async fn customer_messages(
        &self,
        customer_id: &str,
        channel: Channel,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let conn = self.conn();
        let limit = limit.clamp(1, 500) as i64;
        let (floor, after) = match after {
            None => {
                return Self::query_json(
                    &conn,
                    "SELECT body FROM (SELECT body, sk, seq FROM messages
                       WHERE customer_id = ?1 AND channel = ?2 AND direction != 'internal'
                       ORDER BY sk DESC, seq DESC LIMIT ?3)
                     ORDER BY sk, seq",
                    &[&customer_id, &channel.as_str(), &limit],
                )
            }
            Some(id) => {
                let body: String = conn
                    .query_row(
                        "SELECT body FROM messages WHERE id = ?1 AND customer_id = ?2",
                        [id, customer_id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err)?
                    .ok_or_else(|| Error::not_found("message", id))?;
                (from_json::<Message>(&body)?.late_write_floor(), id)
            }
        };
        Self::query_json(
            &conn,
            "SELECT body FROM messages WHERE customer_id = ?1 AND channel = ?2
               AND direction != 'internal' AND sk >= ?3 AND id != ?4
             ORDER BY sk, seq LIMIT ?5",
            &[&customer_id, &channel.as_str(), &floor, &after, &limit],
        )
    }

    async fn customer_messages_before(
        &self,
        before: &Message,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let limit = limit.clamp(1, 500) as i64;
        Self::query_json(
            &self.conn(),
            "SELECT body FROM messages WHERE customer_id = ?1 AND channel = ?2
               AND direction != 'internal'
               AND (sk, seq) < (SELECT sk, seq FROM messages WHERE id = ?3)
             ORDER BY sk DESC, seq DESC LIMIT ?4",
            &[
                &before.customer_id,
                &before.channel.as_str(),
                &before.id,
                &limit,
            ],
        )
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim(&self, key: &str, value: &str, ttl_secs: i64) -> Result<Option<String>> {
        let now = Utc::now().timestamp();
        self.tx(|tx| {
            tx.execute(
                "DELETE FROM idempotency WHERE key = ?1 AND expires_at <= ?2",
                params![key, now],
            )
            .map_err(db_err)?;
            let existing: Option<String> = tx
                .query_row("SELECT value FROM idempotency WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db_err)?;
            if existing.is_none() {
                tx.execute(
                    "INSERT INTO idempotency (key, value, expires_at) VALUES (?1, ?2, ?3)",
                    params![key, value, now + ttl_secs],
                )
                .map_err(db_err)?;
            }
            Ok(existing)
        })
    }

    async fn claimed(&self, key: &str) -> Result<Option<String>> {
        self.conn()
            .query_row(
                "SELECT value FROM idempotency WHERE key = ?1 AND expires_at > ?2",
                params![key, Utc::now().timestamp()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)
    }

    async fn release(&self, key: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM idempotency WHERE key = ?1", [key])
            .map(drop)
            .map_err(db_err)
    }

    async fn count(&self, key: &str, ttl_secs: i64) -> Result<u64> {
        let now = Utc::now().timestamp();
        let count: i64 = self
            .conn()
            .query_row(
                "INSERT INTO idempotency (key, value, expires_at) VALUES (?1, '1', ?2)
                 ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1
                 RETURNING CAST(value AS INTEGER)",
                params![key, now + ttl_secs],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

impl SqliteStore {
    /// Removes what has ended by `now` (Unix seconds): idle webchat sessions, dedupe claims
    /// and rate counters. DynamoDB's TTL does the same on AWS. Returns how many sessions went.
    pub fn sweep_expired(&self, now: i64) -> Result<usize> {
        let conn = self.conn();
        let sessions = conn
            .execute(
                "DELETE FROM sessions WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                [now],
            )
            .map_err(db_err)?;
        conn.execute("DELETE FROM idempotency WHERE expires_at <= ?1", [now])
            .map_err(db_err)?;
        Ok(sessions)
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, s: &WebchatSession) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO sessions (token_hash, id, customer_id, body, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.token_hash, s.id, s.customer_id, to_json(s)?, s.expires_at],
            )
            .map(drop)
            .map_err(db_err)
    }

    async fn update_session(&self, s: &WebchatSession) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE sessions SET body = ?3, expires_at = ?4
                 WHERE token_hash = ?1 AND customer_id = ?2",
                params![s.token_hash, s.customer_id, to_json(s)?, s.expires_at],
            )
            .map(drop)
            .map_err(db_err)
    }

    async fn session_by_token_hash(&self, token_hash: &str) -> Result<Option<WebchatSession>> {
        let mut found: Vec<WebchatSession> = Self::query_json(
            &self.conn(),
            "SELECT body FROM sessions WHERE token_hash = ?1",
            &[&token_hash],
        )?;
        Ok(found.pop())
    }
}

/// Canned responses, by short code; the codes sort as SQLite compares text (`BINARY`: by
/// bytes, so by code point).
#[async_trait]
impl CannedStore for SqliteStore {
    async fn list_canned(&self) -> Result<Vec<CannedResponse>> {
        Self::query_json(
            &self.conn(),
            "SELECT body FROM canned_responses ORDER BY short_code",
            &[],
        )
    }

    /// The count and the write in one transaction, under the connection's lock: two PUTs
    /// for the last place do not both take it.
    async fn save_canned(&self, c: &CannedResponse, create_only: bool) -> Result<bool> {
        self.tx(|tx| {
            let exists = tx
                .query_row(
                    "SELECT 1 FROM canned_responses WHERE short_code = ?1",
                    [&c.short_code],
                    |_| Ok(()),
                )
                .optional()
                .map_err(db_err)?
                .is_some();
            if exists && create_only {
                return Err(canned::exists(&c.short_code));
            }
            if !exists {
                let count: i64 = tx
                    .query_row("SELECT COUNT(*) FROM canned_responses", [], |r| r.get(0))
                    .map_err(db_err)?;
                if usize::try_from(count).unwrap_or(usize::MAX) >= canned::MAX_CANNED_RESPONSES {
                    return Err(canned::too_many());
                }
            }
            tx.execute(
                "INSERT INTO canned_responses (short_code, body) VALUES (?1, ?2)
                 ON CONFLICT (short_code) DO UPDATE SET body = excluded.body",
                [&c.short_code, &to_json(c)?],
            )
            .map_err(db_err)?;
            Ok(!exists)
        })
    }

    async fn delete_canned(&self, short_code: &str) -> Result<bool> {
        self.conn()
            .execute(
                "DELETE FROM canned_responses WHERE short_code = ?1",
                [short_code],
            )
            .map(|n| n > 0)
            .map_err(db_err)
    }
}

#[async_trait]
impl Queue for SqliteStore {
    async fn send(
        &self,
        queue: QueueName,
        body: String,
        group: Option<&str>,
        dedup_id: Option<&str>,
    ) -> Result<()> {
        self.tx(|tx| Self::enqueue(tx, queue.as_str(), &body, group, dedup_id))?;
        self.wake_workers();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;

    fn ticket(customer: &str) -> Ticket {
        Ticket::open(
            NewTicket {
                customer_id: customer.into(),
                channel: Channel::Webchat,
                subject: None,
                description: "无法登录".into(),
                priority: Priority::Normal,
                skill: Skill::Technical,
            },
            now(),
        )
    }

    /// A data directory made before messages kept their place in the conversation (no
    /// `sk`): opening it gives each stored message its place, once, and the conversation
    /// reads in the order things happened.
    #[tokio::test]
    async fn messages_stored_before_their_order_key_get_it_when_opened() {
        let dir = std::env::temp_dir().join(format!("helpdesk-order-{}", new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("helpdesk.db");
        let t = ticket("c1");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.create_ticket(&t).await.unwrap();
            for (secs, text) in [(2, "后写的"), (1, "先发生的")] {
                let mut m = Message::outbound(
                    "c1",
                    Channel::Webchat,
                    MessageKind::AgentReply,
                    text.into(),
                    Some(t.id.clone()),
                );
                m.created_at = t.created_at + chrono::Duration::seconds(secs);
                s.append_message(&m).await.unwrap();
            }
            s.conn()
                .execute("UPDATE messages SET sk = NULL", [])
                .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let texts: Vec<String> = s
            .ticket_messages(&t.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(texts, ["先发生的", "后写的"]);
        let unset: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM messages WHERE sk IS NULL", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(unset, 0);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn listing_pages_newest_first() {
        let s = SqliteStore::in_memory().unwrap();
        let mut ids = Vec::new();
        // One customer each: a customer has one active ticket.
        for i in 0..5 {
            let t = ticket(&format!("c{i}"));
            ids.push(t.id.clone());
            s.create_ticket(&t).await.unwrap();
        }
        let f = TicketFilter::default();
        let p1 = s.list_tickets(&f, 2, None).await.unwrap();
        assert_eq!(p1.items[0].id, ids[4]);
        let p2 = s
            .list_tickets(&f, 2, p1.next_cursor.as_deref())
            .await
            .unwrap();
        let p3 = s
            .list_tickets(&f, 2, p2.next_cursor.as_deref())
            .await
            .unwrap();
        assert_eq!(p3.items.len(), 1);
        assert_eq!(p3.next_cursor, None);
        assert_eq!(p3.items[0].id, ids[0]);
        let none = TicketFilter {
            skill: Some(Skill::Billing),
            ..Default::default()
        };
        assert!(s
            .list_tickets(&none, 10, None)
            .await
            .unwrap()
            .items
            .is_empty());
    }

    /// A data directory made before tickets kept their reference: opening it gives the old
    /// tickets theirs, so they are found by it, and opening it again changes nothing.
    #[tokio::test]
    async fn an_older_data_directory_finds_its_tickets_by_reference() {
        let path = std::env::temp_dir().join(format!("helpdesk-before-ref-{}.db", new_id()));
        let old = ticket("老客户");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE tickets (
                    id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL,
                    priority TEXT NOT NULL, skill TEXT NOT NULL, assignee TEXT,
                    channel TEXT NOT NULL, version INTEGER NOT NULL, rated_at TEXT,
                    body TEXT NOT NULL, sla_due TEXT);",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO tickets (id, customer_id, status, priority, skill, channel, version,
                                      body)
                 VALUES (?1, ?2, 'open', 'normal', 'technical', 'webchat', 1, ?3)",
                params![old.id, old.customer_id, to_json(&old).unwrap()],
            )
            .unwrap();
        }
        let by_ref = |r: String| TicketFilter {
            reference: Some(r),
            ..Default::default()
        };
        for opening in 0..2 {
            let s = SqliteStore::open(&path).unwrap();
            let found = s
                .list_tickets(&by_ref(ticket_ref(&old.id)), 10, None)
                .await
                .unwrap();
            assert_eq!(found.items, vec![old.clone()]);
            let other = ticket(&format!("新客户{opening}"));
            s.create_ticket(&other).await.unwrap();
            let found = s
                .list_tickets(&by_ref(ticket_ref(&other.id)), 10, None)
                .await
                .unwrap();
            assert_eq!(found.items, vec![other]);
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }

    #[tokio::test]
    async fn one_identity_one_customer() {
        let s = SqliteStore::in_memory().unwrap();
        let id = ChannelIdentity {
            channel: Channel::Telegram,
            external_id: "42".into(),
        };
        let a = s.resolve_customer(&id, Some("张三"), None).await.unwrap();
        let b = s.resolve_customer(&id, None, None).await.unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(b.name.as_deref(), Some("张三"));
    }

    #[tokio::test]
    async fn merging_moves_identities_conversations_and_tickets() {
        let s = SqliteStore::in_memory().unwrap();
        let tg = ChannelIdentity {
            channel: Channel::Telegram,
            external_id: "42".into(),
        };
        let wa = ChannelIdentity {
            channel: Channel::Whatsapp,
            external_id: "8613800000000".into(),
        };
        let a = s.resolve_customer(&tg, Some("张三"), None).await.unwrap();
        let b = s.resolve_customer(&wa, None, Some("zh")).await.unwrap();
        let mut m = Message::outbound(
            &b.id,
            Channel::Whatsapp,
            MessageKind::Text,
            "你好".into(),
            None,
        );
        m.provider_message_id = Some("wamid.1".into());
        s.append_message(&m).await.unwrap();
        let t = ticket(&b.id);
        s.create_ticket(&t).await.unwrap();

        let plan = MergePlan::new(&a.id, &b.id, "alice");
        let merged = match crate::flow::run_merge(&s, &plan, usize::MAX).await.unwrap() {
            crate::flow::MergeProgress::Done(c) => c,
            crate::flow::MergeProgress::Unfinished => panic!("an unbounded merge finishes"),
        };
        assert_eq!(merged.identities.len(), 2);
        assert_eq!(merged.locale.as_deref(), Some("zh"));
        assert!(s.get_customer(&b.id).await.unwrap().is_none());
        assert_eq!(s.resolve_customer(&wa, None, None).await.unwrap().id, a.id);
        let moved = s
            .message_by_provider_id(Channel::Whatsapp, Direction::Outbound, "wamid.1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(moved.customer_id, a.id);
        let ticket = s.get_ticket(&t.id).await.unwrap().unwrap();
        assert_eq!(ticket.customer_id, a.id);
        assert_eq!(ticket.version, 2);
        // Run again, it changes nothing.
        crate::flow::run_merge(&s, &plan, usize::MAX).await.unwrap();
        assert_eq!(s.get_ticket(&t.id).await.unwrap().unwrap().version, 2);
    }

    #[tokio::test]
    async fn fifo_groups_wait_for_their_elders() {
        let s = SqliteStore::in_memory().unwrap();
        s.send(QueueName::Inbound, "a1".into(), Some("a"), None)
            .await
            .unwrap();
        s.send(QueueName::Inbound, "a2".into(), Some("a"), None)
            .await
            .unwrap();
        s.send(QueueName::Inbound, "b1".into(), Some("b"), None)
            .await
            .unwrap();
        let first = s.receive("inbound").unwrap().unwrap();
        assert_eq!(first.body, "a1");
        s.fail(first.seq, "boom", 60_000, false).unwrap();
        // a1 is delayed, so a2 must wait; b1 goes ahead.
        assert_eq!(s.receive("inbound").unwrap().unwrap().body, "b1");
    }

    #[tokio::test]
    async fn counters_count_and_the_sweep_removes_what_has_ended() {
        let s = SqliteStore::in_memory().unwrap();
        let counts = [
            s.count("rate:x:a:1", 120).await.unwrap(),
            s.count("rate:x:a:1", 120).await.unwrap(),
            s.count("rate:x:b:1", 120).await.unwrap(),
        ];
        assert_eq!(counts, [1, 2, 1]);

        let now = Utc::now().timestamp();
        let session = |hash: &str, expires_at| WebchatSession {
            id: format!("s-{hash}"),
            token_hash: hash.into(),
            customer_id: "c".into(),
            created_at: Utc::now(),
            name: None,
            locale: None,
            expires_at,
        };
        s.create_session(&session("ended", Some(now - 1)))
            .await
            .unwrap();
        s.create_session(&session("open", Some(now + 60)))
            .await
            .unwrap();
        s.create_session(&session("old", None)).await.unwrap();
        // A use moves the end of "ended" out before the sweep: it stays.
        let mut renewed = session("renewed", Some(now - 5));
        s.create_session(&renewed).await.unwrap();
        renewed.expires_at = Some(now + 60);
        s.update_session(&renewed).await.unwrap();

        assert_eq!(s.sweep_expired(now).unwrap(), 1);
        assert!(s.session_by_token_hash("ended").await.unwrap().is_none());
        for kept in ["open", "old", "renewed"] {
            assert!(
                s.session_by_token_hash(kept).await.unwrap().is_some(),
                "{kept}"
            );
        }
        assert_eq!(
            s.session_by_token_hash("renewed")
                .await
                .unwrap()
                .unwrap()
                .expires_at,
            Some(now + 60)
        );
        // Counters go once their life is over.
        s.sweep_expired(now + 121).unwrap();
        assert_eq!(s.count("rate:x:a:1", 120).await.unwrap(), 1);
    }
}
