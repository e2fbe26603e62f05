//! The promise under crashes: `helpdesk serve` is killed with SIGKILL at moments chosen at
//! random while webchat messages and signed WhatsApp notifications pour in, a tenth of
//! them delivered twice, and restarted on the same data each time. Senders retry what was
//! not answered 2xx, as browsers and Meta do. After the last restart and a drain:
//!
//! - every message answered 2xx is stored exactly once;
//! - each has exactly one outcome: an auto-reply, or a ticket it opened (with one hand-off)
//!   or joined (with none), or it is a dead letter with its reason;
//! - no customer has two active tickets;
//! - the provider got no more sends than there are messages, save one per kill (the
//!   documented window between a provider's answer and its record).
//!
//! The size (2,000 webchat messages and 500 WhatsApp notifications from 200 visitors
//! and 100 phones) runs in about 15 s in a debug build on two cores; `HELPDESK_CRASH_SCALE=4`
//! sends four times as much.

mod common;

use common::provider::FakeProvider;
use common::*;
use helpdesk_core::adapters::SqliteStore;
use helpdesk_core::domain::{
    derived_id, Channel, DeliveryStatus, Direction, Message, TicketFilter,
};
use helpdesk_core::ports::{ConversationStore, TicketStore};
use hmac::{Hmac, Mac};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const APP_SECRET: &str = "wa-app-secret";
const PHONE_ID: &str = "1122334455667";
const KILLS: usize = 6;
const VISITORS: usize = 200;
const PHONES: usize = 100;
const SENDERS: usize = 8;

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
    let kb: Vec<Value> =
        serde_json::from_str(include_str!("../infra/sample-kb.json")).expect("the sample KB");
    let mut texts: Vec<String> = kb
        .iter()
        .filter_map(|a| a["questions"][0].as_str().map(str::to_string))
        .collect();
    texts.push("我要投诉，转人工".into());
    texts.push("I want to talk to an agent".into());
    texts
}

/// Posts one delivery to the server that is up now; retries until it is answered 2xx.
async fn deliver(http: &reqwest::Client, base: &RwLock<String>, d: &Delivery) -> Option<String> {
    loop {
        let url = base.read().unwrap().clone();
        let sent = match d {
            Delivery::Webchat {
                token,
                client_id,
                text,
                ..
            } => {
                http.post(format!("{url}/webchat/messages"))
                    .bearer_auth(token)
                    .json(&json!({"text": text, "client_message_id": client_id}))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
            }
            Delivery::Whatsapp { phone, wamid, text } => {
                let body = notification(phone, wamid, text);
                http.post(format!("{url}/webhooks/whatsapp"))
                    .header("content-type", "application/json")
                    .header("X-Hub-Signature-256", sign(&body))
                    .body(body)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
            }
        };
        match sent {
            Ok(r) if r.status().is_success() => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                return v["message_id"].as_str().map(str::to_string);
            }
            Ok(r) if r.status().is_client_error() => {
                panic!(
                    "{d:?} refused: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )
            }
            // Killed mid-request, or not up yet: the sender tries again, as providers do.
            _ => tokio::time::sleep(Duration::from_millis(30)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_moments_loses_and_doubles_nothing() {
    let scale: usize = std::env::var("HELPDESK_CRASH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let (webchat_n, whatsapp_n) = (2000 * scale, 500 * scale);
    let started = Instant::now();
    let dir = TempDir::new();
    let fake = FakeProvider::start().await;
    let wa_base = format!("{}/v21.0", fake.base);
    let env = [
        ("WHATSAPP_APP_SECRET", APP_SECRET),
        ("WHATSAPP_VERIFY_TOKEN", "verify"),
        ("WHATSAPP_ACCESS_TOKEN", "token"),
        ("WHATSAPP_PHONE_NUMBER_ID", PHONE_ID),
        ("WHATSAPP_API_BASE", wa_base.as_str()),
        ("WHATSAPP_TEMPLATE_NAME", "support_reply"),
        ("HELPDESK_SEND_TIMEOUT_MS", "3000"),
        // A sender killed mid-send holds its message this long before it is sent again.
        ("HELPDESK_SEND_LEASE_SECS", "2"),
    ];
    let mut server = Some(Server::start(&dir.0, &env).await);
    let base = Arc::new(RwLock::new(server.as_ref().unwrap().base.clone()));

    // Who writes, and what: each message once, a tenth of them twice.
    let mut visitors = Vec::new();
    for _ in 0..VISITORS {
        let v = server.as_ref().unwrap().visitor().await;
        visitors.push((v.token.clone(), v.customer_id.clone()));
    }
    let texts = texts();
    let mut rng = rand::rng();
    let mut plan = Vec::new();
    for i in 0..webchat_n {
        let (token, customer_id) = visitors[i % VISITORS].clone();
        plan.push(Delivery::Webchat {
            token,
            customer_id,
            client_id: format!("c{i}"),
            text: format!("{} ({i})", texts[rng.random_range(0..texts.len())]),
        });
    }
    for i in 0..whatsapp_n {
        plan.push(Delivery::Whatsapp {
            phone: format!("86138000{:05}", i % PHONES),
            wamid: format!("wamid.crash.{i}"),
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
    let done = Arc::new(AtomicUsize::new(0));

    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (plan, accepted, done, base) =
            (plan.clone(), accepted.clone(), done.clone(), base.clone());
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let Some(d) = plan.lock().unwrap().pop() else {
                    return;
                };
                let id = deliver(&http, &base, &d).await;
                let mut a = accepted.lock().unwrap();
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
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // Kills spread over the load, each at a random point of its stretch, with messages in
    // flight every time.
    let mut kills = 0;
    for k in 0..KILLS {
        let lo = total * (k + 1) / (KILLS + 2);
        let at = lo + rng.random_range(0..total / (KILLS + 2));
        while done.load(Ordering::SeqCst) < at {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
        server.take().unwrap().kill().await;
        kills += 1;
        let restarted = Server::start(&dir.0, &env).await;
        *base.write().unwrap() = restarted.base.clone();
        server = Some(restarted);
    }
    for s in senders {
        s.await.unwrap();
    }
    let posted = started.elapsed();

    // Drain: every queue empty (dead letters aside).
    let store = SqliteStore::open(&dir.0.join("helpdesk.sqlite3")).unwrap();
    let queues = ["inbound", "auto_reply", "outbound", "ticket_changes"];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let depth: usize = queues.iter().map(|q| store.queue_depth(q).unwrap()).sum();
        if depth == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{depth} jobs never drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = started.elapsed();
    server.take().unwrap().kill().await;

    let mut dead_bodies = Vec::new();
    for q in queues {
        for d in store.dead_letters(q).unwrap() {
            assert!(
                d.error.as_deref().is_some_and(|e| !e.is_empty()),
                "a dead letter without its reason: {d:?}"
            );
            dead_bodies.push(d.body);
        }
    }
    let accepted = Arc::try_unwrap(accepted)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap();

    // Stored exactly once.
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
    let mut outbound_whatsapp = 0;
    let mut customers = HashSet::new();
    for ((customer, channel), n) in &per_customer {
        customers.insert(customer.clone());
        let convo = store
            .customer_messages(customer, *channel, None, 500)
            .await
            .unwrap();
        let stored = convo
            .iter()
            .filter(|m| m.direction == Direction::Inbound)
            .count();
        assert_eq!(stored, *n, "{customer} on {channel:?}: stored once each");
        // Every answer went out, or failed with its reason; none is left queued.
        for m in convo.iter().filter(|m| m.direction == Direction::Outbound) {
            match m.status {
                Some(DeliveryStatus::Failed) => assert!(m.error.is_some(), "{m:?}"),
                Some(DeliveryStatus::Queued) | None => panic!("never delivered: {m:?}"),
                _ => {}
            }
        }
        if *channel == Channel::Whatsapp {
            outbound_whatsapp += convo
                .iter()
                .filter(|m| m.direction == Direction::Outbound)
                .count();
        }
    }

    // One outcome each.
    let (mut auto, mut opened, mut joined, mut dead) = (0, 0, 0, 0);
    for m in &inbound {
        let reply = store
            .get_message(&derived_id(&m.id, "auto_reply"))
            .await
            .unwrap();
        let handoff = store
            .get_message(&derived_id(&m.id, "handoff"))
            .await
            .unwrap();
        let is_dead = dead_bodies.iter().any(|b| b.contains(&m.id));
        match (&m.ticket_id, reply) {
            (None, Some(_)) => {
                assert!(handoff.is_none(), "{}: an auto-reply and a hand-off", m.id);
                auto += 1;
            }
            (Some(ticket_id), None) => {
                let ticket = store.get_ticket(ticket_id).await.unwrap().unwrap();
                if ticket.opened_by.as_deref() == Some(m.id.as_str()) {
                    assert!(handoff.is_some(), "{}: opened a ticket, no hand-off", m.id);
                    opened += 1;
                } else {
                    assert!(handoff.is_none(), "{}: joined, yet a hand-off", m.id);
                    joined += 1;
                }
            }
            (None, None) if is_dead => dead += 1,
            (ticket, reply) => panic!(
                "{}: no single outcome (ticket {ticket:?}, auto-reply {})",
                m.id,
                reply.is_some()
            ),
        }
    }

    // No customer with two active tickets.
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

    // Nothing doubled at the provider beyond the one documented window per kill.
    let provider_sends = fake
        .sent()
        .iter()
        .filter(|s| s.path.ends_with("/messages"))
        .count();
    assert!(
        provider_sends <= outbound_whatsapp + kills,
        "{provider_sends} sends for {outbound_whatsapp} messages and {kills} kills"
    );

    eprintln!(
        "crash test: {} deliveries ({duplicates} duplicates) of {} messages, {kills} kills; \
         auto-replies {auto}, tickets opened {opened}, joined {joined}, dead letters {dead}; \
         WhatsApp sends {provider_sends} for {outbound_whatsapp} messages; \
         posted in {:.1} s, drained in {:.1} s",
        total,
        inbound.len(),
        posted.as_secs_f64(),
        drained.as_secs_f64()
    );
    assert_eq!(inbound.len(), webchat_n + whatsapp_n);
    assert!(kills >= 5);
}
