//! Property tests of what reads outside input: the WhatsApp and Telegram webhook parsers
//! (their real payloads, mutated), the webhooks and the webchat route over HTTP, text
//! cutting on character boundaries (Chinese above all), the rules file, and the decoding
//! of queued jobs. Whatever comes in, nothing panics, and a refusal is the API's error form
//! (`{"error": {"code", "message"}}`) with a 4xx status, or for a job, a dead letter.
//!
//! The normal run tries 64 cases a property (a few seconds). A longer run:
//! `HELPDESK_PROPTEST_CASES=20000 cargo test --release --test props -- --nocapture`.

mod common;

use helpdesk_core::domain::{Channel, InboundMessage, OutboundMessage};
use helpdesk_core::jobs::{self, decode, AutoReplyJob, Disposition, Job, TicketChange};
use helpdesk_core::rules::Rules;
use helpdesk_core::text::{split_chars, subject_of, truncate_chars};
use helpdesk_core::ErrorKind;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::{Arc, OnceLock};
use unicode_segmentation::UnicodeSegmentation;

const WHATSAPP: &str = include_str!("fixtures/whatsapp/text_message.json");
const WHATSAPP_STATUS: &str = include_str!("fixtures/whatsapp/status_sent.json");
const TELEGRAM: &str = include_str!("fixtures/telegram/text_message.json");
const RULES: &str = include_str!("../shared/rules/default.toml");
const APP_SECRET: &str = "wa-app-secret";
const PHONE_ID: &str = "1122334455667";
const TG_SECRET: &str = "tg-secret";

fn cases() -> u32 {
    std::env::var("HELPDESK_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(64)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Shrinking a failure is what a failure is for; a passing run does none.
        max_shrink_iters: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text as customers write it: Chinese, emoji, combining marks, controls, and ASCII.
fn text() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        4 => proptest::char::range('\u{4e00}', '\u{9fff}'),
        2 => proptest::char::range(' ', '~'),
        1 => proptest::char::range('\u{1f600}', '\u{1f64f}'),
        1 => proptest::char::range('\u{0300}', '\u{036f}'),
        1 => prop_oneof![Just('\n'), Just(' '), Just('\u{0}'), Just('\u{feff}'), Just('\u{200b}')],
        1 => any::<char>(),
    ];
    proptest::collection::vec(c, 0..300).prop_map(|v| v.into_iter().collect())
}

/// A JSON value of any shape, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change to a JSON document: a value somewhere replaced, removed, or given a new key.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(u32, Value),
    Remove(u32),
    Insert(u32, String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<u32>(), json_value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        any::<u32>().prop_map(Mutation::Remove),
        (
            any::<u32>(),
            prop_oneof![
                Just("text".to_string()),
                Just("from".to_string()),
                Just("id".to_string()),
                Just("message".to_string()),
                Just("edited_message".to_string()),
                Just("callback_query".to_string()),
                Just("type".to_string()),
                text()
            ],
            json_value()
        )
            .prop_map(|(at, k, v)| Mutation::Insert(at, k, v)),
    ]
}

/// Every node of `v`, depth first, as paths of keys and indexes.
fn paths(v: &Value, here: Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let mut p = here.clone();
                p.push(Step::Key(k.clone()));
                paths(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let mut p = here.clone();
                p.push(Step::Index(i));
                paths(child, p, out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn node<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let mut v = v;
    for s in path {
        v = match s {
            Step::Key(k) => v.get_mut(k.as_str())?,
            Step::Index(i) => v.get_mut(*i)?,
        };
    }
    Some(v)
}

fn mutate(doc: &Value, mutations: &[Mutation]) -> Value {
    let mut doc = doc.clone();
    for m in mutations {
        let mut all = Vec::new();
        paths(&doc, Vec::new(), &mut all);
        let pick = |at: u32| all[at as usize % all.len()].clone();
        match m {
            Mutation::Replace(at, v) => {
                if let Some(n) = node(&mut doc, &pick(*at)) {
                    *n = v.clone();
                }
            }
            Mutation::Remove(at) => {
                let path = pick(*at);
                if let Some((last, parent)) = path.split_last() {
                    match (node(&mut doc, parent), last) {
                        (Some(Value::Object(m)), Step::Key(k)) => {
                            m.remove(k);
                        }
                        (Some(Value::Array(a)), Step::Index(i)) if *i < a.len() => {
                            a.remove(*i);
                        }
                        _ => {}
                    }
                }
            }
            Mutation::Insert(at, k, v) => {
                if let Some(Value::Object(m)) = node(&mut doc, &pick(*at)) {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
    }
    doc
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("a fixture in JSON")
}

// ---------------------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// A mutated WhatsApp notification parses into events or nothing, never a panic; what
    /// it takes in has a sender and an id, and text within the limit.
    #[test]
    fn whatsapp_notifications_never_panic(
        which in any::<bool>(),
        mutations in proptest::collection::vec(mutation(), 0..6),
    ) {
        let doc = mutate(&fixture(if which { WHATSAPP } else { WHATSAPP_STATUS }), &mutations);
        for event in intake::whatsapp::parse_notification(&doc, PHONE_ID) {
            if let intake::whatsapp::Event::Message(m) = event {
                prop_assert!(!m.external_id.is_empty());
                prop_assert!(m.text.chars().count() <= helpdesk_core::text::MAX_TEXT_CHARS);
                prop_assert_eq!(m.channel, Channel::Whatsapp);
            }
        }
    }

    /// A mutated Telegram update parses into a message or nothing, never a panic.
    #[test]
    fn telegram_updates_never_panic(mutations in proptest::collection::vec(mutation(), 0..6)) {
        let doc = mutate(&fixture(TELEGRAM), &mutations);
        if let Some(m) = intake::telegram::parse_update(&doc) {
            prop_assert!(!m.external_id.is_empty());
            prop_assert_eq!(m.channel, Channel::Telegram);
        }
    }

    /// Any JSON at all, too.
    #[test]
    fn any_json_is_no_webhook_panic(doc in json_value()) {
        let _ = intake::whatsapp::parse_notification(&doc, PHONE_ID);
        let _ = intake::telegram::parse_update(&doc);
    }

    /// Cuts fall between graphemes: a truncation is the longest prefix of whole graphemes
    /// of at most `max` characters (inside a first grapheme only when that one alone is
    /// longer), and the parts of a split are each at most `max` and give back the text.
    #[test]
    fn text_is_cut_on_characters(text in text(), max in 0usize..400) {
        let cut = truncate_chars(&text, max);
        prop_assert!(text.starts_with(cut));
        let n = cut.chars().count();
        prop_assert!(n <= max);
        let starts: Vec<usize> = text.grapheme_indices(true).map(|(at, _)| at).collect();
        if let Some(next) = text[cut.len()..].graphemes(true).next() {
            if starts.contains(&cut.len()) {
                prop_assert!(n + next.chars().count() > max, "a whole grapheme more would fit");
            } else {
                prop_assert_eq!(n, max, "cut inside a grapheme only at max");
                prop_assert!(text.graphemes(true).next().unwrap_or("").chars().count() > max);
            }
        }
        let parts = split_chars(&text, max);
        prop_assert_eq!(parts.concat(), text.clone());
        for p in &parts {
            let n = p.chars().count();
            prop_assert!(n >= 1 && n <= max.max(1), "a part of {} characters", n);
        }
        let subject = subject_of(&text);
        prop_assert!(subject.chars().count() <= 100);
        prop_assert!(!subject.chars().any(char::is_control));
    }

    /// A rules file, valid and edited at random, or any text: parsed, or refused as a 400
    /// `invalid_rules` naming what is wrong; classifying with what parsed never panics.
    #[test]
    fn rules_files_parse_or_are_refused(
        edits in proptest::collection::vec((any::<u16>(), 0usize..8, text()), 0..4),
        message in text(),
    ) {
        let mut file = RULES.to_string();
        for (at, len, insert) in edits {
            let chars: Vec<char> = file.chars().collect();
            let at = at as usize % (chars.len() + 1);
            let end = (at + len).min(chars.len());
            file = chars[..at].iter().chain(insert.chars().collect::<Vec<_>>().iter())
                .chain(chars[end..].iter()).collect();
        }
        match Rules::parse(&file) {
            Ok(rules) => {
                let _ = rules.classify(&message, helpdesk_core::domain::Tier::Standard);
            }
            Err(e) => {
                prop_assert_eq!(e.kind, ErrorKind::BadRequest);
                prop_assert_eq!(e.code, "invalid_rules");
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    /// A queued job that does not decode is a dead letter at once, never a panic; one that
    /// decodes was a job of that queue.
    #[test]
    fn jobs_decode_or_are_dead_letters(
        which in 0usize..4,
        mutations in proptest::collection::vec(mutation(), 0..5),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
        raw in any::<bool>(),
    ) {
        let valid = valid_jobs();
        let body = if raw {
            String::from_utf8_lossy(&noise).into_owned()
        } else {
            mutate(&valid[which], &mutations).to_string()
        };
        fn check<J: Job>(body: &str) -> Result<(), TestCaseError> {
            match decode::<J>(body) {
                Ok(job) => {
                    // What decodes encodes and decodes the same again.
                    let again = serde_json::to_string(&job).expect("a job encodes");
                    prop_assert!(decode::<J>(&again).is_ok());
                }
                Err(e) => prop_assert_eq!(jobs::disposition(&e), Disposition::DeadLetter, "{}", e),
            }
            Ok(())
        }
        check::<InboundMessage>(&body)?;
        check::<AutoReplyJob>(&body)?;
        check::<OutboundMessage>(&body)?;
        check::<TicketChange>(&body)?;
    }
}

/// One valid job of each kind, as JSON.
fn valid_jobs() -> Vec<Value> {
    use helpdesk_core::domain::{self, NewTicket, Priority, Skill, Ticket};
    let inbound =
        InboundMessage::text(Channel::Telegram, "42".into(), "你好".into(), domain::now());
    let auto = AutoReplyJob {
        message_id: "m1".into(),
        customer_id: "c1".into(),
        skill: Skill::General,
        priority: Priority::Normal,
        tags: vec!["退款".into()],
    };
    let outbound = OutboundMessage::Customer {
        message_id: "m1".into(),
    };
    let ticket = Ticket::open(
        NewTicket {
            customer_id: "c1".into(),
            channel: Channel::Webchat,
            subject: None,
            description: "退款".into(),
            priority: Priority::High,
            skill: Skill::Billing,
        },
        domain::now(),
    );
    let change = TicketChange {
        old: None,
        new: ticket,
    };
    [
        serde_json::to_value(inbound),
        serde_json::to_value(auto),
        serde_json::to_value(outbound),
        serde_json::to_value(change),
    ]
    .into_iter()
    .map(|v| v.expect("a job encodes"))
    .collect()
}

// ---------------------------------------------------------------------------------------
// Over HTTP: the intake routes on the real SQLite store
// ---------------------------------------------------------------------------------------

struct Intake {
    runtime: tokio::runtime::Runtime,
    base: String,
    http: reqwest::Client,
    token: String,
}

/// The intake routes with both channels on, served on loopback, and one webchat visitor.
fn intake() -> &'static Intake {
    static INTAKE: OnceLock<Intake> = OnceLock::new();
    INTAKE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let (base, token) = runtime.block_on(async {
            let store = Arc::new(helpdesk_core::adapters::SqliteStore::in_memory().unwrap());
            let channels = helpdesk_core::channels::ChannelsConfig::from_lookup(|name| {
                let v = match name {
                    "WHATSAPP_APP_SECRET" => APP_SECRET,
                    "WHATSAPP_VERIFY_TOKEN" => "verify",
                    "WHATSAPP_ACCESS_TOKEN" => "token",
                    "WHATSAPP_PHONE_NUMBER_ID" => PHONE_ID,
                    "TELEGRAM_SECRET_TOKEN" => TG_SECRET,
                    "TELEGRAM_BOT_TOKEN" => "123:bot",
                    _ => return None,
                };
                Some(v.to_string())
            })
            .unwrap();
            let deps = Arc::new(intake::Deps {
                store: store.clone(),
                queue: store,
                whatsapp: channels.whatsapp,
                telegram: channels.telegram,
                survey_signer: None,
            });
            let limits = intake::webchat::WebchatLimits::from_lookup(|name| match name {
                "WEBCHAT_SESSIONS_PER_MINUTE" | "WEBCHAT_MESSAGES_PER_MINUTE" => {
                    Some("100000000".into())
                }
                _ => None,
            })
            .unwrap();
            let app = intake::webchat::routes_with(intake::webchat::VisitorView::default(), limits)
                .merge(intake::whatsapp::routes())
                .merge(intake::telegram::routes())
                .with_state(deps);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .await
                .unwrap()
            });
            let session: Value = reqwest::Client::new()
                .post(format!("{base}/webchat/sessions"))
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (base, session["token"].as_str().unwrap().to_string())
        });
        Intake {
            runtime,
            base,
            http: reqwest::Client::new(),
            token,
        }
    })
}

fn sign(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts `body` to `route` with its credentials; the answer is 2xx, or a 4xx in the error
/// form.
fn post(route: &str, body: Vec<u8>) -> Result<u16, TestCaseError> {
    let i = intake();
    let (status, answer) = i.runtime.block_on(async {
        let mut req = i
            .http
            .post(format!("{}{route}", i.base))
            .header("content-type", "application/json");
        req = match route {
            "/webhooks/whatsapp" => req.header("X-Hub-Signature-256", sign(&body)),
            "/webhooks/telegram" => req.header("X-Telegram-Bot-Api-Secret-Token", TG_SECRET),
            _ => req.bearer_auth(&i.token),
        };
        let r = req.body(body).send().await.expect("an answer");
        let status = r.status().as_u16();
        (status, r.bytes().await.unwrap_or_default())
    });
    prop_assert!(status < 500, "{} answered {}", route, status);
    if status >= 400 {
        let v: Value = serde_json::from_slice(&answer)
            .map_err(|e| TestCaseError::fail(format!("{route} {status}: not JSON: {e}")))?;
        prop_assert!(
            v["error"]["code"].as_str().is_some_and(|c| !c.is_empty())
                && v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
            "{} {}: not the error form: {}",
            route,
            status,
            v
        );
    }
    Ok(status)
}

#[test]
fn the_webhooks_and_the_webchat_route_answer_anything_in_the_error_form() {
    let mut runner = TestRunner::new(Config {
        // Each case is a round trip over loopback: a quarter of the parsers' count.
        cases: (cases() / 4).max(16),
        failure_persistence: None,
        ..Config::default()
    });
    let routes = [
        ("/webhooks/whatsapp", fixture(WHATSAPP)),
        ("/webhooks/telegram", fixture(TELEGRAM)),
        (
            "/webchat/messages",
            json!({"text": "你好", "client_message_id": "c1"}),
        ),
    ];
    let body = (
        0usize..3,
        proptest::collection::vec(mutation(), 0..5),
        proptest::collection::vec(any::<u8>(), 0..128),
        0u8..4,
    );
    runner
        .run(&body, |(route, mutations, noise, kind)| {
            let (path, doc) = &routes[route];
            let bytes = match kind {
                // Bytes that are not JSON, or are cut short.
                0 => noise,
                1 => {
                    let mut b = doc.to_string().into_bytes();
                    b.truncate(noise.len() % (b.len() + 1));
                    b
                }
                _ => mutate(doc, &mutations).to_string().into_bytes(),
            };
            post(path, bytes)?;
            Ok(())
        })
        .unwrap();
}
