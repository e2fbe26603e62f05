//! Bounded work per request, on both stores: the agent API's routes, served on loopback over
//! the SQLite store and over DynamoDB on the local AWS emulator (moto), refuse what no store
//! can answer with a 422 in the error form (never a 500), and read a long conversation and
//! the satisfaction report page by page.

mod wirings;

use helpdesk_core::adapters::TantivyIndex;
use helpdesk_core::domain::{self, Channel, ChannelIdentity, NewTicket, Priority, Skill, Ticket};
use helpdesk_core::knowledge::semantic::{self, Vectors};
use helpdesk_core::knowledge::Article;
use helpdesk_core::ports::{KnowledgeIndex, Store};
use reqwest::Client;
use serde_json::{json, Value};
use std::sync::Arc;
use wirings::Wiring;

const ADMIN: &str = "bounded-admin-token";

/// The most questions an article has.
const MAX_QUESTIONS: usize = 255;

/// 900 bytes of Chinese: an agent's name that fits in an index key.
fn long_name() -> String {
    "张".repeat(300)
}

/// The agent API over the wiring's store, on a free loopback port.
async fn serve(w: &Wiring) -> String {
    serve_with(w, TantivyIndex::in_memory().unwrap()).await
}

/// [`serve`] with the given knowledge index.
async fn serve_with(w: &Wiring, knowledge: TantivyIndex) -> String {
    let deps = Arc::new(tickets::Deps {
        store: w.store.clone(),
        queue: w.queue.clone(),
        knowledge: Arc::new(knowledge),
        // The long name of the test below is an agent's: locally a ticket goes only to an
        // agent a token names.
        agents: tickets::Agents::parse(
            Some(ADMIN),
            Some(&format!("{}:agent:long-name-token", long_name())),
        )
        .unwrap(),
        threshold: 0.57,
        auto_assign: false,
        close_resolved_after: None,
        zone: helpdesk_core::domain::hours::Tz::UTC,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, tickets::router(deps)).await });
    base
}

async fn customer(store: &dyn Store) -> domain::Customer {
    store
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Telegram,
                external_id: domain::new_id(),
            },
            None,
            Some("zh"),
        )
        .await
        .unwrap()
}

async fn ticket(store: &dyn Store) -> Ticket {
    let c = customer(store).await;
    let t = Ticket::open(
        NewTicket {
            customer_id: c.id,
            channel: Channel::Telegram,
            subject: None,
            description: "退款".into(),
            priority: Priority::Normal,
            skill: Skill::Billing,
        },
        domain::now(),
    );
    store.create_ticket(&t).await.unwrap();
    t
}

/// Asserts the error form with `status`, and returns the code.
async fn error_of(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status().as_u16(), status);
    let v: Value = r.json().await.unwrap();
    assert!(!v["error"]["message"].as_str().unwrap().is_empty(), "{v}");
    v["error"]["code"].as_str().unwrap().to_string()
}

async fn reversed_periods_and_oversized_keys_are_422s(w: Wiring) {
    let base = serve(&w).await;
    let http = Client::new();
    let get = |path: String| http.get(format!("{base}{path}")).bearer_auth(ADMIN).send();

    let r = get("/reports/csat?from=2026-02-01&to=2026-01-01".into())
        .await
        .unwrap();
    assert_eq!(error_of(r, 422).await, "invalid_period", "{}", w.name);
    let r = get("/reports/csat?from=2026-01-01&to=2026-02-01".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", w.name);

    // 2,100 bytes: more than DynamoDB takes as an index key.
    let long = "张".repeat(700);
    let r = get(format!("/tickets?assignee={long}")).await.unwrap();
    assert_eq!(error_of(r, 422).await, "too_long", "{}", w.name);
    let r = get(format!("/tickets?customer_id={long}")).await.unwrap();
    assert_eq!(error_of(r, 422).await, "too_long", "{}", w.name);
    let t = ticket(w.store.as_ref()).await;
    let r = http
        .patch(format!("{base}/tickets/{}", t.id))
        .bearer_auth(ADMIN)
        .header("If-Match", "1")
        .json(&json!({"assignee": long}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r, 422).await, "too_long", "{}", w.name);
    // A name that fits is taken, Chinese included.
    let name = long_name();
    let r = http
        .patch(format!("{base}/tickets/{}", t.id))
        .bearer_auth(ADMIN)
        .header("If-Match", "1")
        .json(&json!({"assignee": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", w.name);
    let r = get(format!("/tickets?assignee={name}")).await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tickets"][0]["id"], t.id.as_str(), "{}", w.name);

    // An id longer than any key DynamoDB takes, or none, names nothing: 404 on both
    // stores, never the store's refusal as a 500.
    let huge = "x".repeat(3000);
    for path in [format!("/tickets/{huge}"), format!("/customers/{huge}")] {
        let r = get(path).await.unwrap();
        assert_eq!(error_of(r, 404).await, "not_found", "{}", w.name);
    }
    let r = http
        .post(format!("{base}/tickets"))
        .bearer_auth(ADMIN)
        .json(&json!({"customer_id": "", "description": "电话来电"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}: {}", w.name, r.status());
}
both!(reversed_periods_and_oversized_keys_are_422s);

/// A conversation of 120 entries comes 50 at a time, newest page first, each page oldest
/// first; the cursors walk back to the first entry and stop there.
async fn a_long_conversation_is_read_page_by_page(w: Wiring) {
    let base = serve(&w).await;
    let http = Client::new();
    let t = ticket(w.store.as_ref()).await;
    for i in 0..120 {
        let m = domain::Message::outbound(
            &t.customer_id,
            Channel::Telegram,
            domain::MessageKind::AgentReply,
            format!("第 {i} 条"),
            Some(t.id.clone()),
        );
        w.store.append_message(&m).await.unwrap();
    }
    let page = |query: String| {
        let http = http.clone();
        let url = format!("{base}/tickets/{}{query}", t.id);
        async move {
            let r = http.get(url).bearer_auth(ADMIN).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let texts = |v: &Value| -> Vec<String> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect()
    };
    let expected = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|i| format!("第 {i} 条")).collect()
    };

    let (status, newest) = page(String::new()).await;
    assert_eq!(status, 200, "{}: {newest}", w.name);
    assert_eq!(newest["ticket"]["id"], t.id.as_str());
    assert_eq!(texts(&newest), expected(70..120), "{}", w.name);
    let cursor = newest["next_cursor"].as_str().unwrap().to_string();
    let (_, middle) = page(format!("?cursor={cursor}&limit=60")).await;
    assert_eq!(texts(&middle), expected(10..70), "{}", w.name);
    let cursor = middle["next_cursor"].as_str().unwrap().to_string();
    let (_, first) = page(format!("?cursor={cursor}")).await;
    assert_eq!(texts(&first), expected(0..10), "{}", w.name);
    assert!(first.get("next_cursor").is_none(), "{}: {first}", w.name);

    // Bad paging is the caller's error, in the error form, on both stores.
    let long = "游".repeat(700);
    for (query, code) in [
        ("?limit=0".to_string(), "bad_request"),
        ("?limit=201".to_string(), "bad_request"),
        ("?limit=十".to_string(), "bad_request"),
        (format!("?cursor={}", domain::new_id()), "invalid_cursor"),
        (format!("?cursor={long}"), "invalid_cursor"),
    ] {
        let (status, v) = page(query.clone()).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{}: {query}",
            w.name
        );
    }
    // Another ticket's message is no cursor here.
    let other = ticket(w.store.as_ref()).await;
    let m = domain::Message::outbound(
        &other.customer_id,
        Channel::Telegram,
        domain::MessageKind::AgentReply,
        "别的".into(),
        Some(other.id.clone()),
    );
    w.store.append_message(&m).await.unwrap();
    let (status, _) = page(format!("?cursor={}", m.id)).await;
    assert_eq!(status, 400, "{}", w.name);
}
both!(a_long_conversation_is_read_page_by_page);

/// `n` closed tickets rated 1 to 5 in turn, a few milliseconds apart, by three agents on two
/// channels; the count of each rating.
async fn rated(store: &dyn Store, n: u32) -> [u64; 5] {
    let now = domain::now();
    let agents = ["王芳", "alice", "bob"];
    let mut counts = [0u64; 5];
    for i in 0..n {
        let mut t = Ticket::open(
            NewTicket {
                customer_id: format!("c{i}"),
                channel: if i % 2 == 0 {
                    Channel::Webchat
                } else {
                    Channel::Telegram
                },
                subject: None,
                description: "评分".into(),
                priority: Priority::Normal,
                skill: Skill::General,
            },
            now,
        );
        t.assignee = Some(agents[i as usize % 3].to_string());
        t.status = domain::TicketStatus::Closed;
        let at = now - chrono::Duration::milliseconds(i64::from(i) * 7);
        t.mark_survey_sent(at);
        let rating = i % 5 + 1;
        t.rate(None, i64::from(rating), None, at).unwrap();
        counts[rating as usize - 1] += 1;
        store.create_ticket(&t).await.unwrap();
    }
    counts
}

/// The report over every rating of the period, as a supervisor reads it.
async fn csat_report(base: &str) -> Value {
    let now = domain::now();
    let day = chrono::Duration::days(1);
    let url = format!(
        "{base}/reports/csat?from={}&to={}",
        (now - day).date_naive(),
        (now + day).date_naive()
    );
    let r = Client::new()
        .get(url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// 520 ratings, more than one page of the report's scan: every one is counted once. (On
/// SQLite: the emulator takes a second per ten tickets; the store's paging is checked on
/// both below.)
#[tokio::test]
async fn the_csat_report_reads_its_ratings_page_by_page() {
    let w = wirings::sqlite();
    let base = serve(&w).await;
    let counts = rated(w.store.as_ref(), 520).await;
    let v = csat_report(&base).await;
    assert_eq!(v["count"], 520, "{v}");
    for (i, n) in counts.iter().enumerate() {
        assert_eq!(v["distribution"][(i + 1).to_string()], *n);
    }
    assert_eq!(v["by_channel"]["webchat"]["count"], 260);
    assert_eq!(v["by_agent"]["王芳"]["count"], 174);
    assert_eq!(v["average"], 3.0);
    assert!(v.get("truncated").is_none());
}

/// Each store pages its ratings in the order they were given, with no rating twice or
/// left out, whatever the page size; the report over them counts each once.
async fn rated_tickets_come_page_by_page(w: Wiring) {
    let base = serve(&w).await;
    let counts = rated(w.store.as_ref(), 23).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = w
            .store
            .rated_tickets_page(None, None, cursor.as_deref(), 5)
            .await
            .unwrap();
        assert!(page.items.len() <= 5, "{}", w.name);
        seen.extend(page.items.iter().map(|t| t.id.clone()));
        pages += 1;
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!((seen.len(), pages), (23, 5), "{}", w.name);
    let unique: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 23, "{}: a rating read twice", w.name);
    let v = csat_report(&base).await;
    assert_eq!(v["count"], 23, "{}: {v}", w.name);
    assert_eq!(v["distribution"]["1"], counts[0], "{}", w.name);
}
both!(rated_tickets_come_page_by_page);

/// On SQS, a record a provider throttled is put off for as long as the provider asked:
/// invisible until then, and back at once when the wait is over.
#[tokio::test]
async fn a_throttled_record_is_put_off_on_sqs() {
    let config = wirings::emulator().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let name = format!("t{}-outbound", domain::new_id());
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    sqs.send_message()
        .queue_url(&url)
        .message_body(r#"{"customer":{"message_id":"m1"}}"#)
        .send()
        .await
        .unwrap();
    let receive = |visibility: i32| {
        sqs.receive_message()
            .queue_url(&url)
            .visibility_timeout(visibility)
            .send()
    };
    let first = receive(1).await.unwrap().messages.unwrap_or_default();
    assert_eq!(first.len(), 1);
    let record = json!({
        "messageId": first[0].message_id,
        "receiptHandle": first[0].receipt_handle,
        "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{name}"),
    });
    let dead_letters =
        helpdesk_core::aws::DeadLetters::new(&config, String::new(), vec![url.clone()]);
    dead_letters.put_off(&record, 60).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let during = receive(1).await.unwrap().messages.unwrap_or_default();
    assert!(
        during.is_empty(),
        "visible again before the wait: {during:?}"
    );
    // A record from a queue it does not know is refused, not guessed at.
    let stranger = json!({"receiptHandle": "x", "eventSourceARN": "arn:aws:sqs:us-east-1:1:other"});
    assert!(dead_letters.put_off(&stranger, 5).await.is_err());
    dead_letters.put_off(&record, 0).await.unwrap();
    let after = receive(30).await.unwrap().messages.unwrap_or_default();
    assert_eq!(after.len(), 1, "back once the wait is over");
}

/// Writing an article embeds its new questions, seconds of work for many: the desk answers
/// everyone else meanwhile. A search (which reads the vectors the write is adding to) and
/// another route both answer while it embeds, on a runtime of one thread.
#[tokio::test]
async fn a_search_and_another_route_answer_while_a_large_article_is_written() {
    let Some(model) = semantic::encoder() else {
        helpdesk_embed::say_skipped("searching while a large article is embedded");
        return;
    };
    let w = wirings::sqlite();
    let vectors = Arc::new(Vectors::in_memory(model));
    let index = TantivyIndex::in_memory_with(Some(vectors.clone())).unwrap();
    index
        .upsert(&[Article {
            id: "hours".into(),
            title: "Opening hours".into(),
            questions: vec!["When are you open?".into()],
            answer: "From 9 to 6.".into(),
            locale: None,
            tags: vec![],
            answers: Default::default(),
        }])
        .await
        .unwrap();
    let base = serve_with(&w, index).await;
    let http = Client::new();
    let questions: Vec<String> = (0..MAX_QUESTIONS)
        .map(|n| {
            format!(
                "Question number {n} about parcel {}: where is my order, when does it arrive, \
                 and can the courier leave it with a neighbour at house {}?",
                n * 7,
                n * 13
            )
        })
        .collect();
    let put = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.put(format!("{base}/kb/articles/parcels"))
                .bearer_auth(ADMIN)
                .json(&json!({"title": "Parcels", "questions": questions, "answer": "Track it."}))
                .send()
                .await
                .unwrap()
        }
    });
    // The write's embedding is under way (a runtime it held up would let this loop run only
    // once the write had finished).
    while vectors.embedding() == 0 {
        assert!(
            !put.is_finished(),
            "the write ran to its end before anything else ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let r = http
        .get(format!("{base}/kb/search?q=when%20are%20you%20open"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["hits"][0]["article_id"], "hours", "{v}");
    assert!(
        vectors.embedding() > 0,
        "the search waited for the write's embedding"
    );
    let r = http
        .get(format!("{base}/me"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        vectors.embedding() > 0,
        "GET /me waited for the write's embedding"
    );
    assert_eq!(put.await.unwrap().status(), 201);
    let r = http
        .get(format!("{base}/kb/search?q=where%20is%20my%20order"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["hits"][0]["article_id"], "parcels", "{v}");
}
