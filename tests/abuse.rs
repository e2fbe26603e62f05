//! The public webchat routes under abuse, against the real program: a flood of sessions
//! from one address, a flood of messages in one session (and the retries and refused posts
//! that must not count in it), and sessions left idle.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// A client whose requests come from another loopback address: another visitor.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .unwrap()
}

async fn open_session(http: &reqwest::Client, server: &Server) -> reqwest::Response {
    http.post(server.url("/webchat/sessions"))
        .json(&json!({"name": "访客"}))
        .send()
        .await
        .unwrap()
}

/// Asserts a 429 in the error form with a `Retry-After` of at most a minute.
async fn assert_rate_limited(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    assert_eq!(error_code(r, 429).await, "rate_limited");
}

#[tokio::test]
async fn a_thousand_sessions_from_one_address_mostly_get_429_and_others_are_still_served() {
    let dir = TempDir::new();
    // The default limit (the harness raises it for the other tests).
    let server = Server::start(
        &dir.0,
        &[
            ("WEBCHAT_SESSIONS_PER_MINUTE", ""),
            ("WEBCHAT_MESSAGES_PER_MINUTE", ""),
        ],
    )
    .await;
    let flood = client_from(1);
    let started = Instant::now();
    let mut created = 0;
    let mut limited = None;
    let mut refused = 0;
    let url = server.url("/webchat/sessions");
    for batch in 0..50 {
        // Twenty at a time, as a script would.
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let (http, url) = (flood.clone(), url.clone());
                tokio::spawn(async move { http.post(url).json(&json!({})).send().await })
            })
            .collect();
        let mut answers = Vec::new();
        for h in handles {
            answers.push(h.await.unwrap().unwrap());
        }
        for r in answers {
            match r.status() {
                StatusCode::CREATED => created += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    refused += 1;
                    if limited.is_none() {
                        limited = Some(r);
                    }
                }
                other => panic!("batch {batch}: {other}"),
            }
        }
    }
    let took = started.elapsed();
    eprintln!(
        "1,000 session creations from one address in {took:?}: {created} made, {refused} refused"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(created + refused, 1000);
    // 20 a minute; a flood that spans the turn of a minute meets two windows.
    assert!(created <= 40, "{created} sessions made");
    assert_rate_limited(limited.expect("some were refused")).await;

    // Meanwhile another visitor opens a session and is answered.
    let other = client_from(2);
    let r = open_session(&other, &server).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let token = v["token"].as_str().unwrap();
    let r = other
        .post(server.url("/webchat/messages"))
        .bearer_auth(token)
        .json(&json!({"text": "你好，我想查询订单"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn one_session_may_send_only_so_many_messages_a_minute() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[("WEBCHAT_MESSAGES_PER_MINUTE", "3")]).await;
    let visitor = server.visitor().await;
    let mut answers = Vec::new();
    for i in 0..5 {
        let r = server
            .post(
                "/webchat/messages",
                &visitor.token,
                json!({"text": format!("消息 {i}")}),
            )
            .await;
        answers.push(r);
    }
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    // Three taken; unless the minute turned meanwhile, the rest refused.
    let taken = statuses.iter().filter(|s| **s == 202).count();
    assert!((3..=4).contains(&taken), "{statuses:?}");
    assert!(statuses[..3].iter().all(|s| *s == 202), "{statuses:?}");
    let refused = answers.pop().unwrap();
    if refused.status() == StatusCode::TOO_MANY_REQUESTS {
        assert_rate_limited(refused).await;
    }
    // Another session is not slowed by this one.
    let other = server.visitor().await;
    other.say("我也有个问题").await;
    // What was taken became a conversation; nothing refused was stored.
    let inbound = visitor
        .conversation()
        .await
        .into_iter()
        .filter(|m| m["direction"] == "inbound")
        .count();
    assert_eq!(inbound, taken);
}

#[tokio::test]
async fn an_idle_session_ends_and_a_used_one_lives_on() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[("WEBCHAT_SESSION_IDLE_SECS", "2")]).await;
    let idle = server.visitor().await;
    let busy = server.visitor().await;
    // The busy visitor polls every half second; the idle one does nothing.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = server.get("/webchat/messages", &busy.token).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = server
        .post("/webchat/messages", &idle.token, json!({"text": "还在吗"}))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");
    assert!(v["error"]["message"].as_str().unwrap().contains("ended"));
    let r = server.get("/webchat/messages", &idle.token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    busy.say("我还在").await;
}

#[tokio::test]
async fn a_page_view_makes_no_customer_until_the_visitor_writes() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let customer = format!("/customers/{}", visitor.customer_id);
    // The session is open and its conversation empty, but there is no customer yet.
    assert!(visitor.conversation().await.is_empty());
    assert_eq!(
        error_code(server.get(&customer, ADMIN).await, 404).await,
        "not_found"
    );
    visitor.say("请问营业时间？").await;
    let r = server.get(&customer, ADMIN).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    // Made with what the visitor gave when the session opened.
    assert_eq!(
        (v["name"].as_str(), v["locale"].as_str()),
        (Some("访客"), Some("zh-CN")),
        "{v}"
    );
    // The flow behind intake finds the customer it was handed.
    let reply = visitor.wait_for("auto_reply").await;
    assert!(reply["text"].as_str().unwrap().contains("9:00"), "{reply}");
    let tickets_before = server.tickets_of(&visitor.customer_id).await.len();
    visitor.say("我要转人工").await;
    visitor.wait_for("handoff").await;
    assert_eq!(
        server.tickets_of(&visitor.customer_id).await.len(),
        tickets_before + 1
    );
}

/// Waits, if the minute is about to turn, until the next one starts: the limits count in
/// fixed windows of a Unix minute, and a test that must meet the limit within one window
/// needs the whole of it.
async fn start_of_a_fresh_minute() {
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if into > 45 {
        tokio::time::sleep(Duration::from_secs(61 - into)).await;
    }
}

#[tokio::test]
async fn a_retry_of_a_taken_message_is_never_refused_and_only_new_messages_count() {
    let dir = TempDir::new();
    // The default limit, 20 messages a minute.
    let server = Server::start(&dir.0, &[("WEBCHAT_MESSAGES_PER_MINUTE", "")]).await;
    let visitor = server.visitor().await;
    let (server, token) = (&server, visitor.token.as_str());
    let post = move |client_message_id: &str, text: &str| {
        server.post(
            "/webchat/messages",
            token,
            json!({"text": text, "client_message_id": client_message_id}),
        )
    };
    let accepted = |r: reqwest::Response| async move {
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        v["message_id"].as_str().unwrap().to_string()
    };
    start_of_a_fresh_minute().await;

    // The widget sends c1, retries it (the answer was lost), then goes on with c2..c19.
    let first = accepted(post("c1", "我的订单没有到").await).await;
    assert_eq!(accepted(post("c1", "我的订单没有到").await).await, first);
    for i in 2..=19 {
        accepted(post(&format!("c{i}"), &format!("消息 {i}")).await).await;
    }
    // A late retry of c1 is the message already taken, not a 21st request to refuse.
    assert_eq!(accepted(post("c1", "我的订单没有到").await).await, first);

    // Posts refused for what they hold store nothing and take none of the visitor's quota.
    for _ in 0..5 {
        assert_eq!(
            error_code(post("blank", "  ").await, 422).await,
            "empty_text"
        );
    }
    let long = "长".repeat(helpdesk_core::text::MAX_TEXT_CHARS + 1);
    assert_eq!(
        error_code(post("long", &long).await, 413).await,
        "text_too_long"
    );

    // So c20 is the 20th new message and is taken; c21 is one too many.
    accepted(post("c20", "消息 20").await).await;
    assert_rate_limited(post("c21", "消息 21").await).await;
    // Past the limit, a retry of a taken message is still answered with its id.
    assert_eq!(accepted(post("c1", "我的订单没有到").await).await, first);

    // Twenty messages reached the conversation, each once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let inbound = loop {
        let inbound: Vec<Value> = visitor
            .conversation()
            .await
            .into_iter()
            .filter(|m| m["direction"] == "inbound")
            .collect();
        if inbound.len() >= 20 || Instant::now() > deadline {
            break inbound;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let texts: Vec<&str> = inbound.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(inbound.len(), 20, "{texts:?}");
    assert_eq!(
        texts.iter().filter(|t| **t == "我的订单没有到").count(),
        1,
        "{texts:?}"
    );
}
