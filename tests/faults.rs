//! The promise under faults: every port fails a fifth of the time while webchat messages
//! and signed WhatsApp notifications pour in, a tenth of them delivered twice, on both
//! wirings (SQLite with its own queues; DynamoDB and SQS on the local AWS emulator).
//!
//! The faults are injected at the real adapters' edges, never in place of them: a wrapper
//! (this file, compiled into this test only) around the real store fails a write before it
//! is made or after it is made (a timeout whose write went through); one around the real
//! queue fails a send before or after it; one around the real knowledge index fails or
//! times out a search; and the fake provider on loopback answers a send with a 500, a 429
//! or, having taken it, nothing at all. Senders retry what was not answered 2xx, as browsers
//! and Meta do; failed jobs are retried by the queue and end as dead letters with their
//! reason. After a drain:
//!
//! - every message answered 2xx is stored exactly once;
//! - each has exactly one outcome: an auto-reply, or a ticket it opened (with one hand-off)
//!   or joined (with none), or it is a dead letter with its reason;
//! - no customer has two active tickets;
//! - the provider took no message twice.
//!
//! The local wiring takes the crash test's load: 2,000 webchat messages and 500 WhatsApp
//! notifications from 200 visitors and 100 phones. The emulator is slower, and the AWS
//! wiring takes 80 messages from 10 visitors and 5 phones. `HELPDESK_FAULT_SCALE=4` sends
//! four times as much; `HELPDESK_FAULT_RATE=0.3` changes the share of failed calls. The
//! figures are printed with `--nocapture`.
//!
//! On the AWS wiring the batches go through the Lambda functions' own batch runner
//! ([`helpdesk_core::aws::events::sqs_batch`]), with an event source mapping played by this
//! test. The ticket change stream is left out there: the load opens tickets and closes none,
//! and the local wiring's change feed runs.

mod common;
mod wirings;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::provider::FakeProvider;
use helpdesk_core::adapters::{run_worker, SqliteStore, TantivyIndex, WorkerConfig, CHANGE_FEED};
use helpdesk_core::channels::ChannelsConfig;
use helpdesk_core::domain::{
    derived_id, AgentProfile, CannedResponse, Channel, ChannelIdentity, Customer, DeliveryStatus,
    Direction, MergeKind, MergePlan, Message, Ticket, TicketFilter,
};
use helpdesk_core::jobs::decode;
use helpdesk_core::knowledge::{parse_articles, Article, Hit};
use helpdesk_core::ports::{
    AgentStore, CannedStore, ChannelSender, ConversationStore, CustomerStore, IdempotencyStore,
    KnowledgeIndex, Page, Queue, QueueName, SessionStore, Store, TicketStore, WebchatSession,
};
use helpdesk_core::rules::Rules;
use helpdesk_core::survey_token::SurveySigner;
use helpdesk_core::{Error, Result};
use hmac::{Hmac, Mac};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const APP_SECRET: &str = "wa-app-secret";
const PHONE_ID: &str = "1122334455667";
const SAMPLE_KB: &str = include_str!("../infra/sample-kb.json");
/// How often a queue tries a job before it is a dead letter, on both wirings here.
const MAX_ATTEMPTS: u32 = 10;

// ---------------------------------------------------------------------------------------
// The faults
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Port {
    Store,
    Queue,
    Knowledge,
}

/// Rolls the dice for every call at a port, and counts what it injected.
struct Faults {
    rate: f64,
    injected: Mutex<HashMap<Port, usize>>,
    /// Messages whose delivery record (after a send) failed and was never made after: the
    /// one window in which a provider without idempotency keys could be sent a message
    /// twice.
    unrecorded_sends: Mutex<HashSet<String>>,
}

enum When {
    /// The call fails and does nothing.
    Before,
    /// The call does its work, then fails (a timeout whose request went through).
    After,
}

impl Faults {
    fn new(rate: f64) -> Arc<Faults> {
        Arc::new(Faults {
            rate,
            injected: Mutex::new(HashMap::new()),
            unrecorded_sends: Mutex::new(HashSet::new()),
        })
    }

    fn roll(&self, port: Port) -> Option<When> {
        if rand::random::<f64>() >= self.rate {
            return None;
        }
        *self.injected.lock().unwrap().entry(port).or_default() += 1;
        Some(if rand::random::<bool>() {
            When::Before
        } else {
            When::After
        })
    }

    async fn around<T>(
        &self,
        port: Port,
        what: &str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.roll(port) {
            None => call.await,
            Some(When::Before) => Err(Error::internal(format!("injected: {what} failed"))),
            Some(When::After) => {
                let _ = call.await;
                Err(Error::internal(format!("injected: {what} timed out")))
            }
        }
    }

    fn count(&self, port: Port) -> usize {
        self.injected
            .lock()
            .unwrap()
            .get(&port)
            .copied()
            .unwrap_or(0)
    }
}

/// The real store, whose writes fail at the rate of [`Faults`]. Reads go through.
struct FaultyStore {
    inner: Arc<dyn Store>,
    faults: Arc<Faults>,
}

#[async_trait]
impl TicketStore for FaultyStore {
    async fn create_ticket(&self, ticket: &Ticket) -> Result<()> {
        self.faults
            .around(
                Port::Store,
                "create_ticket",
                self.inner.create_ticket(ticket),
            )
            .await
    }
    async fn get_ticket(&self, id: &str) -> Result<Option<Ticket>> {
        self.inner.get_ticket(id).await
    }
    async fn update_ticket(&self, ticket: &Ticket, expected_version: u64) -> Result<()> {
        self.faults
            .around(
                Port::Store,
                "update_ticket",
                self.inner.update_ticket(ticket, expected_version),
            )
            .await
    }
    async fn list_tickets(
        &self,
        filter: &TicketFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Ticket>> {
        self.inner.list_tickets(filter, limit, cursor).await
    }
    async fn count_tickets(&self, filter: &TicketFilter) -> Result<u64> {
        self.inner.count_tickets(filter).await
    }
    async fn active_ticket_for(&self, customer_id: &str) -> Result<Option<Ticket>> {
        self.inner.active_ticket_for(customer_id).await
    }
    async fn rated_tickets(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Ticket>> {
        self.inner.rated_tickets(from, to).await
    }
}

#[async_trait]
impl AgentStore for FaultyStore {
    async fn get_agent(&self, id: &str) -> Result<Option<AgentProfile>> {
        self.inner.get_agent(id).await
    }
    async fn list_agents(&self) -> Result<Vec<AgentProfile>> {
        self.inner.list_agents().await
    }
    async fn recount_agent(&self, id: &str) -> Result<u32> {
        self.faults
            .around(Port::Store, "recount_agent", self.inner.recount_agent(id))
            .await
    }
    async fn put_agent(&self, agent: &AgentProfile) -> Result<()> {
        self.faults
            .around(Port::Store, "put_agent", self.inner.put_agent(agent))
            .await
    }
    async fn ensure_agent(&self, id: &str) -> Result<bool> {
        self.faults
            .around(Port::Store, "ensure_agent", self.inner.ensure_agent(id))
            .await
    }
    async fn assign_ticket(
        &self,
        ticket: &Ticket,
        expected_version: u64,
        capacity: u32,
    ) -> Result<bool> {
        self.faults
            .around(
                Port::Store,
                "assign_ticket",
                self.inner.assign_ticket(ticket, expected_version, capacity),
            )
            .await
    }
    async fn waiting_tickets(&self, limit: usize) -> Result<Vec<Ticket>> {
        self.inner.waiting_tickets(limit).await
    }
    async fn sla_due_tickets(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Ticket>> {
        self.inner.sla_due_tickets(now, limit).await
    }
}

#[async_trait]
impl CustomerStore for FaultyStore {
    async fn resolve_customer(
        &self,
        identity: &ChannelIdentity,
        name: Option<&str>,
        locale: Option<&str>,
    ) -> Result<Customer> {
        self.faults
            .around(
                Port::Store,
                "resolve_customer",
                self.inner.resolve_customer(identity, name, locale),
            )
            .await
    }
    async fn get_customer(&self, id: &str) -> Result<Option<Customer>> {
        self.inner.get_customer(id).await
    }
    async fn merge_step(&self, plan: &MergePlan, kind: MergeKind, limit: usize) -> Result<usize> {
        self.faults
            .around(
                Port::Store,
                "merge_step",
                self.inner.merge_step(plan, kind, limit),
            )
            .await
    }
    async fn finish_merge(&self, merged: &Customer, from: &str) -> Result<()> {
        self.faults
            .around(
                Port::Store,
                "finish_merge",
                self.inner.finish_merge(merged, from),
            )
            .await
    }
}

#[async_trait]
impl ConversationStore for FaultyStore {
    async fn append_message(&self, message: &Message) -> Result<bool> {
        self.faults
            .around(
                Port::Store,
                "append_message",
                self.inner.append_message(message),
            )
            .await
    }
    async fn get_message(&self, id: &str) -> Result<Option<Message>> {
        self.inner.get_message(id).await
    }
    async fn message_by_provider_id(
        &self,
        channel: Channel,
        direction: Direction,
        provider_message_id: &str,
    ) -> Result<Option<Message>> {
        self.inner
            .message_by_provider_id(channel, direction, provider_message_id)
            .await
    }
    async fn last_inbound_at(
        &self,
        customer_id: &str,
        channel: Channel,
    ) -> Result<Option<DateTime<Utc>>> {
        self.inner.last_inbound_at(customer_id, channel).await
    }
    async fn set_message_ticket(&self, id: &str, ticket_id: &str) -> Result<()> {
        self.faults
            .around(
                Port::Store,
                "set_message_ticket",
                self.inner.set_message_ticket(id, ticket_id),
            )
            .await
    }
    async fn claim_delivery(&self, id: &str, lease_secs: i64) -> Result<bool> {
        self.faults
            .around(
                Port::Store,
                "claim_delivery",
                self.inner.claim_delivery(id, lease_secs),
            )
            .await
    }
    async fn release_delivery(&self, id: &str) -> Result<()> {
        self.faults
            .around(
                Port::Store,
                "release_delivery",
                self.inner.release_delivery(id),
            )
            .await
    }
    async fn set_delivery(
        &self,
        id: &str,
        status: DeliveryStatus,
        provider_message_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        let outcome = self
            .faults
            .around(
                Port::Store,
                "set_delivery",
                self.inner
                    .set_delivery(id, status, provider_message_id, error),
            )
            .await;
        let mut unrecorded = self.faults.unrecorded_sends.lock().unwrap();
        match outcome {
            Ok(()) => unrecorded.remove(id),
            Err(_) => unrecorded.insert(id.to_string()),
        };
        drop(unrecorded);
        outcome
    }
    async fn ticket_messages(&self, ticket_id: &str) -> Result<Vec<Message>> {
        self.inner.ticket_messages(ticket_id).await
    }
    async fn queued_before(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Message>> {
        self.inner.queued_before(before, limit).await
    }
    async fn customer_messages(
        &self,
        customer_id: &str,
        channel: Channel,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.inner
            .customer_messages(customer_id, channel, after, limit)
            .await
    }
    async fn customer_messages_before(
        &self,
        before: &Message,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.inner.customer_messages_before(before, limit).await
    }
}

#[async_trait]
impl IdempotencyStore for FaultyStore {
    async fn claim(&self, key: &str, value: &str, ttl_secs: i64) -> Result<Option<String>> {
        self.faults
            .around(Port::Store, "claim", self.inner.claim(key, value, ttl_secs))
            .await
    }
    async fn claimed(&self, key: &str) -> Result<Option<String>> {
        self.inner.claimed(key).await
    }
    async fn release(&self, key: &str) -> Result<()> {
        self.faults
            .around(Port::Store, "release", self.inner.release(key))
            .await
    }
    async fn count(&self, key: &str, ttl_secs: i64) -> Result<u64> {
        self.faults
            .around(Port::Store, "count", self.inner.count(key, ttl_secs))
            .await
    }
}

#[async_trait]
impl SessionStore for FaultyStore {
    async fn create_session(&self, session: &WebchatSession) -> Result<()> {
        self.faults
            .around(
                Port::Store,
                "create_session",
                self.inner.create_session(session),
            )
            .await
    }
    async fn session_by_token_hash(&self, token_hash: &str) -> Result<Option<WebchatSession>> {
        self.inner.session_by_token_hash(token_hash).await
    }
    async fn update_session(&self, session: &WebchatSession) -> Result<()> {
        self.faults
            .around(
                Port::Store,
                "update_session",
                self.inner.update_session(session),
            )
            .await
    }
}

/// Canned responses pass through: no flow under test writes them.
#[async_trait]
impl CannedStore for FaultyStore {
    async fn list_canned(&self) -> Result<Vec<CannedResponse>> {
        self.inner.list_canned().await
    }
    async fn save_canned(&self, canned: &CannedResponse, create_only: bool) -> Result<bool> {
        self.inner.save_canned(canned, create_only).await
    }
    async fn delete_canned(&self, short_code: &str) -> Result<bool> {
        self.inner.delete_canned(short_code).await
    }
}

/// The real queue, whose sends fail before or after they are made.
struct FaultyQueue {
    inner: Arc<dyn Queue>,
    faults: Arc<Faults>,
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn send(
        &self,
        queue: QueueName,
        body: String,
        group: Option<&str>,
        dedup_id: Option<&str>,
    ) -> Result<()> {
        self.faults
            .around(
                Port::Queue,
                "a queue send",
                self.inner.send(queue, body, group, dedup_id),
            )
            .await
    }
}

/// The real knowledge index, whose searches fail or time out.
struct FaultyIndex {
    inner: Arc<dyn KnowledgeIndex>,
    faults: Arc<Faults>,
}

#[async_trait]
impl KnowledgeIndex for FaultyIndex {
    async fn search(&self, query: &str, limit: usize) -> Result<Vec<Hit>> {
        match self.faults.roll(Port::Knowledge) {
            None => self.inner.search(query, limit).await,
            Some(When::Before) => Err(Error::internal("injected: the search failed")),
            Some(When::After) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(Error::internal("injected: the search timed out"))
            }
        }
    }
    async fn get(&self, id: &str) -> Result<Option<Article>> {
        self.inner.get(id).await
    }
    async fn list(&self) -> Result<Vec<Article>> {
        self.inner.list().await
    }
    async fn upsert(&self, articles: &[Article]) -> Result<usize> {
        self.inner.upsert(articles).await
    }
    async fn delete(&self, id: &str) -> Result<bool> {
        self.inner.delete(id).await
    }
}

// ---------------------------------------------------------------------------------------
// The desk, wired with the faulty ports
// ---------------------------------------------------------------------------------------

struct Desk {
    router: Arc<router::Deps>,
    auto_reply: Arc<auto_reply::Deps>,
    dispatch: Arc<dispatch::Deps>,
    survey: Arc<survey::Deps>,
    /// The intake routes, served on loopback.
    base: String,
    /// Jobs whose handler failed, to be tried again.
    failed_jobs: AtomicUsize,
}

async fn desk(
    real_store: Arc<dyn Store>,
    real_queue: Arc<dyn Queue>,
    faults: &Arc<Faults>,
    provider: &FakeProvider,
) -> Desk {
    let store: Arc<dyn Store> = Arc::new(FaultyStore {
        inner: real_store,
        faults: faults.clone(),
    });
    let queue: Arc<dyn Queue> = Arc::new(FaultyQueue {
        inner: real_queue,
        faults: faults.clone(),
    });
    let index = TantivyIndex::in_memory().expect("an index");
    index
        .upsert(&parse_articles(SAMPLE_KB).expect("the sample KB"))
        .await
        .expect("the sample KB is indexed");
    let knowledge: Arc<dyn KnowledgeIndex> = Arc::new(FaultyIndex {
        inner: Arc::new(index),
        faults: faults.clone(),
    });
    let wa_base = format!("{}/v21.0", provider.base);
    let channels = ChannelsConfig::from_lookup(|name| {
        let v = match name {
            "WHATSAPP_APP_SECRET" => APP_SECRET,
            "WHATSAPP_VERIFY_TOKEN" => "verify",
            "WHATSAPP_ACCESS_TOKEN" => "token",
            "WHATSAPP_PHONE_NUMBER_ID" => PHONE_ID,
            "WHATSAPP_API_BASE" => wa_base.as_str(),
            "WHATSAPP_TEMPLATE_NAME" => "support_reply",
            "HELPDESK_SEND_TIMEOUT_MS" => "150",
            "HELPDESK_SEND_LEASE_SECS" => "1",
            _ => return None,
        };
        Some(v.to_string())
    })
    .expect("the channels");
    let intake = Arc::new(intake::Deps {
        store: store.clone(),
        queue: queue.clone(),
        whatsapp: channels.whatsapp.clone(),
        telegram: None,
        survey_signer: None,
    });
    let limits = intake::webchat::WebchatLimits::from_lookup(|name| match name {
        "WEBCHAT_SESSIONS_PER_MINUTE" | "WEBCHAT_MESSAGES_PER_MINUTE" => Some("1000000".into()),
        _ => None,
    })
    .expect("the limits");
    let app = intake::webchat::routes_with(intake::webchat::VisitorView::default(), limits)
        .merge(intake::whatsapp::routes())
        .with_state(intake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    Desk {
        router: Arc::new(router::Deps {
            store: store.clone(),
            queue: queue.clone(),
            rules: Rules::default(),
        }),
        auto_reply: Arc::new(auto_reply::Deps {
            store: store.clone(),
            queue: queue.clone(),
            knowledge,
            threshold: helpdesk_core::knowledge::DEFAULT_THRESHOLD,
        }),
        dispatch: Arc::new(dispatch_deps(store.clone(), &channels)),
        survey: Arc::new(survey::Deps {
            store: store.clone(),
            queue: queue.clone(),
            signer: SurveySigner::new("survey-secret".to_string()),
            public_url: "https://help.example.com".into(),
            rules: Arc::new(Rules::default()),
        }),
        base: format!("http://{addr}"),
        failed_jobs: AtomicUsize::new(0),
    }
}

/// Dispatch as the desk wires it, with shorter waits in place: a 429's wait goes back to
/// the queue, so that the one outbound worker is not held for seconds.
fn dispatch_deps(store: Arc<dyn Store>, channels: &ChannelsConfig) -> dispatch::Deps {
    let mut deps = dispatch::Deps::new(store.clone(), channels, reqwest::Client::new(), None);
    let caller = dispatch::Caller {
        http: reqwest::Client::new(),
        timeout: channels.send_timeout,
        retry: dispatch::Retry {
            attempts: 3,
            base_delay: Duration::from_millis(10),
            max_wait: Duration::ZERO,
            max_throttled: 1,
        },
    };
    deps.whatsapp = channels.whatsapp.clone().map(|c| {
        Arc::new(dispatch::WhatsappSender::new(c, caller, store)) as Arc<dyn ChannelSender>
    });
    deps
}

impl Desk {
    /// Handles one job of `queue`, as the worker or the Lambda function would.
    async fn handle(&self, queue: QueueName, body: String) -> Result<()> {
        let outcome = self.run(queue, body).await;
        if outcome.is_err() {
            self.failed_jobs.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    async fn run(&self, queue: QueueName, body: String) -> Result<()> {
        match queue {
            QueueName::Inbound => router::handle_job(&self.router, decode(&body)?).await,
            QueueName::AutoReply => auto_reply::handle(&self.auto_reply, decode(&body)?).await,
            QueueName::Outbound => dispatch::handle(&self.dispatch, decode(&body)?).await,
            QueueName::TicketChanges => survey::handle_change(&self.survey, decode(&body)?).await,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The load
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Delivery {
    Webchat {
        token: String,
        customer_id: String,
        client_id: String,
        text: String,
    },
    Whatsapp {
        phone: String,
        wamid: String,
        text: String,
    },
}

/// What was answered 2xx.
#[derive(Default)]
struct Accepted {
    /// (customer, client_message_id) → message id
    webchat: HashMap<(String, String), String>,
    /// wamid → phone
    whatsapp: HashMap<String, String>,
    /// Deliveries answered 5xx (or not at all) and sent again.
    retried: usize,
}

fn sign(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn notification(phone: &str, wamid: &str, text: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"object": "whatsapp_business_account", "entry": [{"id": "1",
        "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": PHONE_ID},
            "contacts": [{"profile": {"name": "客户"}, "wa_id": phone}],
            "messages": [{"from": phone, "id": wamid, "timestamp": "1700000000",
                "type": "text", "text": {"body": text}}]}}]}]}),
    )
    .unwrap()
}

/// Questions the sample knowledge base answers, and words that go straight to an agent.
fn texts() -> Vec<String> {
    let kb: Vec<Value> = serde_json::from_str(SAMPLE_KB).expect("the sample KB");
    let mut texts: Vec<String> = kb
        .iter()
        .filter_map(|a| a["questions"][0].as_str().map(str::to_string))
        .collect();
    texts.push("我要投诉，转人工".into());
    texts.push("I want to talk to an agent".into());
    texts
}

/// Opens a webchat session, trying again while the desk answers 5xx.
async fn visitor(http: &reqwest::Client, base: &str) -> (String, String) {
    loop {
        let r = http
            .post(format!("{base}/webchat/sessions"))
            .json(&json!({"name": "访客", "locale": "zh-CN"}))
            .send()
            .await;
        if let Ok(r) = r {
            if r.status().as_u16() == 201 {
                let v: Value = r.json().await.unwrap();
                return (
                    v["token"].as_str().unwrap().to_string(),
                    v["customer_id"].as_str().unwrap().to_string(),
                );
            }
            assert!(r.status().is_server_error(), "{}", r.status());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Posts one delivery until it is answered 2xx; returns the message id and how many times
/// it had to be sent again.
async fn deliver(http: &reqwest::Client, base: &str, d: &Delivery) -> (Option<String>, usize) {
    let mut retries = 0;
    loop {
        let sent = match d {
            Delivery::Webchat {
                token,
                client_id,
                text,
                ..
            } => {
                http.post(format!("{base}/webchat/messages"))
                    .bearer_auth(token)
                    .json(&json!({"text": text, "client_message_id": client_id}))
                    .send()
                    .await
            }
            Delivery::Whatsapp { phone, wamid, text } => {
                let body = notification(phone, wamid, text);
                http.post(format!("{base}/webhooks/whatsapp"))
                    .header("content-type", "application/json")
                    .header("X-Hub-Signature-256", sign(&body))
                    .body(body)
                    .send()
                    .await
            }
        };
        match sent {
            Ok(r) if r.status().is_success() => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                return (v["message_id"].as_str().map(str::to_string), retries);
            }
            Ok(r) if r.status().is_client_error() => {
                panic!(
                    "{d:?} refused: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )
            }
            _ => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Builds the plan (each message once, a tenth twice) and posts it with `senders` at once.
async fn post_load(
    base: &str,
    visitors: usize,
    phones: usize,
    webchat_n: usize,
    whatsapp_n: usize,
) -> (Accepted, usize, usize) {
    let http = reqwest::Client::new();
    let mut people = Vec::new();
    for _ in 0..visitors {
        people.push(visitor(&http, base).await);
    }
    let texts = texts();
    let mut rng = rand::rng();
    let mut plan = Vec::new();
    for i in 0..webchat_n {
        let (token, customer_id) = people[i % visitors].clone();
        plan.push(Delivery::Webchat {
            token,
            customer_id,
            client_id: format!("c{i}"),
            text: format!("{} ({i})", texts[rng.random_range(0..texts.len())]),
        });
    }
    for i in 0..whatsapp_n {
        plan.push(Delivery::Whatsapp {
            phone: format!("86139000{:05}", i % phones),
            wamid: format!("wamid.fault.{i}"),
            text: format!("{} ({i})", texts[rng.random_range(0..texts.len())]),
        });
    }
    plan.shuffle(&mut rng);
    let twice: Vec<Delivery> = plan
        .iter()
        .filter(|_| rng.random_bool(0.1))
        .cloned()
        .collect();
    let duplicates = twice.len();
    for d in twice {
        let at = rng.random_range(0..=plan.len());
        plan.insert(at, d);
    }
    let total = plan.len();
    let plan = Arc::new(Mutex::new(plan));
    let accepted = Arc::new(Mutex::new(Accepted::default()));
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (plan, accepted, http, base) = (
            plan.clone(),
            accepted.clone(),
            http.clone(),
            base.to_string(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let Some(d) = plan.lock().unwrap().pop() else {
                    return;
                };
                let (id, retries) = deliver(&http, &base, &d).await;
                let mut a = accepted.lock().unwrap();
                a.retried += retries;
                match &d {
                    Delivery::Webchat {
                        customer_id,
                        client_id,
                        ..
                    } => {
                        let id = id.expect("a webchat message id");
                        let first = a
                            .webchat
                            .entry((customer_id.clone(), client_id.clone()))
                            .or_insert_with(|| id.clone());
                        assert_eq!(*first, id, "a repeat answers the first id");
                    }
                    Delivery::Whatsapp { phone, wamid, .. } => {
                        a.whatsapp.insert(wamid.clone(), phone.clone());
                    }
                }
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let accepted = Arc::try_unwrap(accepted)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();
    (accepted, total, duplicates)
}

/// What the check found.
#[derive(Debug, Default)]
struct Outcomes {
    messages: usize,
    auto: usize,
    opened: usize,
    joined: usize,
    dead: usize,
    provider_sends: usize,
    outbound_whatsapp: usize,
    /// Sends beyond one a message: at most the messages whose send was never recorded.
    doubled: usize,
}

/// The promise, checked on the real store (no faults) after the drain. `dead` are the
/// bodies of the dead letters, each with its reason.
async fn check(
    store: &dyn Store,
    accepted: &Accepted,
    dead: &[(String, String)],
    provider: &FakeProvider,
    unrecorded: &HashSet<String>,
) -> Outcomes {
    for (body, reason) in dead {
        assert!(
            !reason.is_empty(),
            "a dead letter without its reason: {body}"
        );
    }
    let mut inbound: Vec<Message> = Vec::new();
    let mut per_customer: HashMap<(String, Channel), usize> = HashMap::new();
    for ((customer, _), id) in &accepted.webchat {
        let m = store
            .get_message(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("accepted webchat message {id} is not stored"));
        assert_eq!(&m.customer_id, customer);
        *per_customer
            .entry((customer.clone(), Channel::Webchat))
            .or_default() += 1;
        inbound.push(m);
    }
    for wamid in accepted.whatsapp.keys() {
        let m = store
            .message_by_provider_id(Channel::Whatsapp, Direction::Inbound, wamid)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("accepted WhatsApp message {wamid} is not stored"));
        *per_customer
            .entry((m.customer_id.clone(), Channel::Whatsapp))
            .or_default() += 1;
        inbound.push(m);
    }
    let mut out = Outcomes {
        messages: inbound.len(),
        ..Default::default()
    };
    let mut customers = HashSet::new();
    let mut whatsapp_outbound: Vec<Message> = Vec::new();
    for ((customer, channel), n) in &per_customer {
        customers.insert(customer.clone());
        let convo = store
            .customer_messages(customer, *channel, None, 1000)
            .await
            .unwrap();
        let stored = convo
            .iter()
            .filter(|m| m.direction == Direction::Inbound)
            .count();
        assert_eq!(stored, *n, "{customer} on {channel:?}: stored once each");
        for m in convo.iter().filter(|m| m.direction == Direction::Outbound) {
            // An answer whose job died is a dead letter with its reason; every other one
            // went out or failed with its reason.
            match m.status {
                Some(DeliveryStatus::Failed) => assert!(m.error.is_some(), "{m:?}"),
                Some(DeliveryStatus::Queued) | None => assert!(
                    dead.iter().any(|(b, _)| b.contains(&m.id)),
                    "never delivered, and no dead letter: {m:?}"
                ),
                _ => {}
            }
        }
        if *channel == Channel::Whatsapp {
            whatsapp_outbound.extend(
                convo
                    .into_iter()
                    .filter(|m| m.direction == Direction::Outbound),
            );
        }
    }
    out.outbound_whatsapp = whatsapp_outbound.len();

    for m in &inbound {
        let reply = store
            .get_message(&derived_id(&m.id, "auto_reply"))
            .await
            .unwrap();
        let handoff = store
            .get_message(&derived_id(&m.id, "handoff"))
            .await
            .unwrap();
        let is_dead = dead.iter().any(|(b, _)| b.contains(&m.id));
        match (&m.ticket_id, reply) {
            (None, Some(_)) => {
                assert!(handoff.is_none(), "{}: an auto-reply and a hand-off", m.id);
                out.auto += 1;
            }
            (Some(ticket_id), None) => {
                let ticket = store.get_ticket(ticket_id).await.unwrap().unwrap();
                if ticket.opened_by.as_deref() == Some(m.id.as_str()) {
                    assert!(
                        handoff.is_some() || is_dead,
                        "{}: opened a ticket, no hand-off and no dead letter",
                        m.id
                    );
                    out.opened += 1;
                } else {
                    assert!(handoff.is_none(), "{}: joined, yet a hand-off", m.id);
                    out.joined += 1;
                }
            }
            (None, None) if is_dead => out.dead += 1,
            (ticket, reply) => panic!(
                "{}: no single outcome (ticket {ticket:?}, auto-reply {}, dead letter {is_dead})",
                m.id,
                reply.is_some()
            ),
        }
    }

    for c in &customers {
        let page = store
            .list_tickets(
                &TicketFilter {
                    customer_id: Some(c.clone()),
                    ..Default::default()
                },
                100,
                None,
            )
            .await
            .unwrap();
        let active = page.items.iter().filter(|t| t.status.is_active()).count();
        assert!(active <= 1, "{c} has {active} active tickets");
    }

    // The provider took each message at most once, save those whose record of the send
    // could not be made (the documented window; counted and shown).
    out.provider_sends = provider
        .sent()
        .iter()
        .filter(|s| s.path.ends_with("/messages"))
        .count();
    let windows = whatsapp_outbound
        .iter()
        .filter(|m| unrecorded.contains(&m.id))
        .count();
    assert!(
        out.provider_sends <= out.outbound_whatsapp + windows,
        "{} sends for {} messages, {windows} of them never recorded",
        out.provider_sends,
        out.outbound_whatsapp
    );
    out.doubled = out.provider_sends.saturating_sub(out.outbound_whatsapp);
    out
}

fn scale() -> usize {
    std::env::var("HELPDESK_FAULT_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

fn rate() -> f64 {
    std::env::var("HELPDESK_FAULT_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|r: &f64| (0.0..0.9).contains(r))
        .unwrap_or(0.2)
}

#[allow(clippy::too_many_arguments)]
fn report(
    wiring: &str,
    total: usize,
    duplicates: usize,
    accepted: &Accepted,
    faults: &Faults,
    provider: &FakeProvider,
    job_retries: usize,
    out: &Outcomes,
    took: Duration,
) {
    let p = provider.random_faults();
    eprintln!(
        "fault test ({wiring}, {:.0}% of calls): {total} deliveries ({duplicates} duplicates) of {} messages; \
         faults injected: store {}, queue {}, knowledge {}, provider {} (500 {}, 429 {}, no answer {}); \
         retries: deliveries {}, jobs {job_retries}; outcomes: auto-replies {}, tickets opened {}, joined {}, \
         dead letters {}; lost 0, doubled {}; WhatsApp sends {} for {} messages; {:.1} s",
        faults.rate * 100.0,
        out.messages,
        faults.count(Port::Store),
        faults.count(Port::Queue),
        faults.count(Port::Knowledge),
        p.server_errors + p.throttled + p.hung,
        p.server_errors,
        p.throttled,
        p.hung,
        accepted.retried,
        out.auto,
        out.opened,
        out.joined,
        out.dead,
        out.doubled,
        out.provider_sends,
        out.outbound_whatsapp,
        took.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// The local wiring: SQLite, its own queues and workers
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fifth_of_every_port_failing_loses_and_doubles_nothing_on_sqlite() {
    let started = Instant::now();
    let s = scale();
    let faults = Faults::new(rate());
    let provider = FakeProvider::start().await;
    provider.fail_at_random(faults.rate, Duration::from_millis(300));
    let dir = common::TempDir::new();
    let sqlite = Arc::new(SqliteStore::open(&dir.0.join("faults.sqlite3")).unwrap());
    let desk = Arc::new(desk(sqlite.clone(), sqlite.clone(), &faults, &provider).await);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let config = WorkerConfig {
        max_attempts: MAX_ATTEMPTS,
        base_delay_ms: 10,
        max_delay_ms: 200,
        idle_poll_ms: 20,
    };
    let mut workers = Vec::new();
    for (name, queue) in [
        (QueueName::Inbound.as_str(), QueueName::Inbound),
        (QueueName::AutoReply.as_str(), QueueName::AutoReply),
        (QueueName::Outbound.as_str(), QueueName::Outbound),
        (CHANGE_FEED, QueueName::TicketChanges),
    ] {
        let desk = desk.clone();
        workers.push(tokio::spawn(run_worker(
            sqlite.clone(),
            name,
            config,
            stopped.clone(),
            move |body| {
                let desk = desk.clone();
                async move { desk.handle(queue, body).await }
            },
        )));
    }

    let (accepted, total, duplicates) = post_load(&desk.base, 200, 100, 2000 * s, 500 * s).await;
    let posted = started.elapsed();

    let queues = ["inbound", "auto_reply", "outbound", CHANGE_FEED];
    let deadline = Instant::now() + Duration::from_secs(180);
    let drained = || async {
        loop {
            let depth: usize = queues.iter().map(|q| sqlite.queue_depth(q).unwrap()).sum();
            if depth == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "{depth} jobs never drained");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    drained().await;
    sweep_and_drain(sqlite.as_ref(), sqlite.as_ref(), drained).await;
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let mut dead = Vec::new();
    for q in queues {
        for d in sqlite.dead_letters(q).unwrap() {
            dead.push((d.body, d.error.unwrap_or_default()));
        }
    }
    let job_retries = desk.failed_jobs.load(Ordering::Relaxed);
    eprintln!(
        "posted in {:.1} s, drained in {:.1} s",
        posted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let unrecorded = faults.unrecorded_sends.lock().unwrap().clone();
    let out = check(sqlite.as_ref(), &accepted, &dead, &provider, &unrecorded).await;
    report(
        "sqlite",
        total,
        duplicates,
        &accepted,
        &faults,
        &provider,
        job_retries,
        &out,
        started.elapsed(),
    );
    assert_eq!(out.messages, 2500 * s);
    assert!(faults.count(Port::Store) > 0 && faults.count(Port::Queue) > 0);
    assert!(faults.count(Port::Knowledge) > 0 && provider.random_faults().hung > 0);
}

// ---------------------------------------------------------------------------------------
// The AWS wiring: DynamoDB and SQS on the emulator, batches handled as Lambda handles them
// ---------------------------------------------------------------------------------------

/// What an SQS event source mapping does for one function: receives batches, hands them
/// to the function's batch runner ([`helpdesk_core::aws::events::sqs_batch`], which the
/// Lambda binaries run), deletes what succeeded, makes the failed records visible again a
/// second later, and after [`MAX_ATTEMPTS`] receives moves a record to the dead letters
/// with its last error (the queue's redrive policy).
async fn event_source_mapping(
    desk: Arc<Desk>,
    sqs: aws_sdk_sqs::Client,
    url: String,
    queue: QueueName,
    dead: Arc<Mutex<Vec<(String, String)>>>,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    use aws_sdk_sqs::types::MessageSystemAttributeName as Attr;
    while !*stopped.borrow() {
        let received = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .visibility_timeout(20)
            .message_system_attribute_names(Attr::All)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut attributes = json!({});
                if let Some(g) = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&Attr::MessageGroupId))
                {
                    attributes["MessageGroupId"] = json!(g);
                }
                json!({"messageId": m.message_id, "body": m.body, "attributes": attributes,
                    "eventSource": "aws:sqs"})
            })
            .collect();
        let last_error: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
        let answer = helpdesk_core::aws::events::sqs_batch(
            &json!({ "Records": records }),
            |body| {
                let (desk, last_error) = (&desk, &last_error);
                async move {
                    let outcome = desk.handle(queue, body.clone()).await;
                    if let Err(e) = &outcome {
                        last_error.lock().unwrap().insert(body, e.to_string());
                    }
                    outcome
                }
            },
            |body, reason| {
                dead.lock().unwrap().push((body, reason));
                std::future::ready(Ok(()))
            },
        )
        .await;
        let failed: HashSet<String> = answer["batchItemFailures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
            .collect();
        for m in messages {
            let handle = m.receipt_handle.clone().unwrap_or_default();
            let body = m.body.clone().unwrap_or_default();
            let receives: u32 = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&Attr::ApproximateReceiveCount))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let again = failed.contains(m.message_id.as_deref().unwrap_or_default());
            if again && receives < MAX_ATTEMPTS {
                let _ = sqs
                    .change_message_visibility()
                    .queue_url(&url)
                    .receipt_handle(handle)
                    .visibility_timeout(1)
                    .send()
                    .await;
                continue;
            }
            if again {
                let reason = last_error
                    .lock()
                    .unwrap()
                    .get(&body)
                    .cloned()
                    .unwrap_or_else(|| "held behind its failed message group".into());
                dead.lock().unwrap().push((body, reason));
            }
            let _ = sqs
                .delete_message()
                .queue_url(&url)
                .receipt_handle(handle)
                .send()
                .await;
        }
    }
}

/// Messages waiting or in flight on the queue.
/// After the drain: a reply stored by a job that then died (its retries all failed) waits
/// for the sweep, which the program runs every minute (on AWS, the router's 5-minute
/// schedule) and which queues it again once its grace has passed. Here up to 3 sweep turns
/// at once, on the real store and queue, each followed by `drained`.
async fn sweep_and_drain<F, Fut>(store: &dyn Store, queue: &dyn Queue, drained: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..3 {
        let swept = helpdesk_core::flow::sweep_queued(
            store,
            queue,
            helpdesk_core::domain::now(),
            0,
            10_000,
        )
        .await
        .unwrap();
        if swept == 0 {
            break;
        }
        eprintln!("the sweep queued {swept} replies again");
        drained().await;
    }
}

async fn sqs_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await;
    let Ok(out) = out else { return usize::MAX };
    let attrs = out.attributes.unwrap_or_default();
    [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|a| {
        attrs
            .get(a)
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
    })
    .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fifth_of_every_port_failing_loses_and_doubles_nothing_on_dynamodb() {
    let started = Instant::now();
    let s = scale();
    let faults = Faults::new(rate());
    let provider = FakeProvider::start().await;
    provider.fail_at_random(faults.rate, Duration::from_millis(300));
    let w = wirings::dynamodb().await;
    let (sqs, urls) = w.sqs.clone().expect("the emulator's queues");
    let real_queue: Arc<dyn Queue> = w.queue.clone();
    let desk = Arc::new(desk(w.store.clone(), real_queue, &faults, &provider).await);
    let dead = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut mappings = Vec::new();
    // The FIFO queue has one consumer here, so that a group's order is the queue's to keep;
    // the standard queues have a few, as Lambda scales them out.
    for (url, queue, consumers) in [
        (&urls.inbound, QueueName::Inbound, 1),
        (&urls.auto_reply, QueueName::AutoReply, 4),
        (&urls.outbound, QueueName::Outbound, 4),
    ] {
        for _ in 0..consumers {
            mappings.push(tokio::spawn(event_source_mapping(
                desk.clone(),
                sqs.clone(),
                url.clone(),
                queue,
                dead.clone(),
                stopped.clone(),
            )));
        }
    }

    let (accepted, total, duplicates) = post_load(&desk.base, 10, 5, 60 * s, 20 * s).await;
    let posted = started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(180);
    let drained = || async {
        let mut quiet = 0;
        while quiet < 3 {
            let mut depth = 0;
            for url in [&urls.inbound, &urls.auto_reply, &urls.outbound] {
                depth += sqs_depth(&sqs, url).await;
            }
            quiet = if depth == 0 { quiet + 1 } else { 0 };
            assert!(Instant::now() < deadline, "{depth} jobs never drained");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    drained().await;
    sweep_and_drain(w.store.as_ref(), w.queue.as_ref(), drained).await;
    stop.send(true).unwrap();
    for m in mappings {
        m.await.unwrap();
    }
    let dead = dead.lock().unwrap().clone();
    eprintln!(
        "posted in {:.1} s, drained in {:.1} s",
        posted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let unrecorded = faults.unrecorded_sends.lock().unwrap().clone();
    let out = check(w.store.as_ref(), &accepted, &dead, &provider, &unrecorded).await;
    report(
        "dynamodb",
        total,
        duplicates,
        &accepted,
        &faults,
        &provider,
        desk.failed_jobs.load(Ordering::Relaxed),
        &out,
        started.elapsed(),
    );
    assert_eq!(out.messages, 80 * s);
    assert!(faults.count(Port::Store) > 0 && faults.count(Port::Queue) > 0);
}
