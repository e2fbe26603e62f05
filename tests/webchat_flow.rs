//! The flow of a customer message through the local program: answered from the knowledge
//! base, or turned into a ticket, and followed up on the same ticket.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn faq_paraphrases_get_the_right_auto_reply_in_both_languages_and_no_ticket() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let cases = [
        ("我忘记密码了，怎么重置？", "链接"),
        ("密码忘了怎么找回", "重置"),
        ("你们客服几点上班？", "9:00"),
        ("退款政策是怎样的", "30"),
        ("I forgot my password, how can I reset it?", "reset link"),
        ("what time does your support open", "Monday to Friday"),
        ("Can I get a refund for my order?", "30 days"),
    ];
    for (question, expected) in cases {
        let visitor = server.visitor().await;
        visitor.say(question).await;
        let reply = visitor.wait_for("auto_reply").await;
        let text = reply["text"].as_str().unwrap();
        assert!(
            text.contains(expected),
            "{question:?} was answered with {text:?}"
        );
        assert_eq!(reply["direction"], "outbound");
        assert!(
            server.tickets_of(&visitor.customer_id).await.is_empty(),
            "{question:?} made a ticket"
        );
        assert!(visitor
            .conversation()
            .await
            .iter()
            .all(|m| m["kind"] != "handoff"));
    }
}

#[tokio::test]
async fn unanswerable_questions_become_tickets_with_their_skill() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let cases = [
        (
            "Why was I charged twice for my subscription this month?",
            "billing",
        ),
        ("我这个月被重复扣款了两次，请帮我查一下", "billing"),
        (
            "The app crashes with error 502 every time I upload a photo",
            "technical",
        ),
        ("上传照片时应用一直闪退，还报错", "technical"),
    ];
    for (text, skill) in cases {
        let visitor = server.visitor().await;
        let message_id = visitor.say(text).await;
        let handoff = visitor.wait_for("handoff").await;
        let tickets = server.tickets_of(&visitor.customer_id).await;
        assert_eq!(tickets.len(), 1, "{text}");
        let ticket = &tickets[0];
        assert_eq!(ticket["skill"], skill, "{text}");
        assert_eq!(ticket["status"], "open");
        assert_eq!(ticket["channel"], "webchat");
        assert_eq!(ticket["description"], text);
        assert_eq!(handoff["ticket_id"], ticket["id"]);
        assert!(visitor
            .conversation()
            .await
            .iter()
            .all(|m| m["kind"] != "auto_reply"));
        let (view, _) = server.ticket(ticket["id"].as_str().unwrap()).await;
        assert_eq!(view["messages"][0]["id"], message_id.as_str());
    }
}

#[tokio::test]
async fn a_hand_off_keeps_the_best_three_articles_for_the_agent() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    // Close to two articles (shipping and invoices) and confident of neither.
    for (text, wanted) in [
        ("我需要订单的收据", "invoice-download-zh"),
        (
            "I need proof of payment for my order",
            "invoice-download-en",
        ),
    ] {
        let visitor = server.visitor().await;
        visitor.say(text).await;
        visitor.wait_for("handoff").await;
        let tickets = server.tickets_of(&visitor.customer_id).await;
        let (view, _) = server.ticket(tickets[0]["id"].as_str().unwrap()).await;
        let suggestions = view["ticket"]["suggestions"]
            .as_array()
            .expect("suggestions");
        assert!(
            (1..=3).contains(&suggestions.len()),
            "{text}: {suggestions:?}"
        );
        assert!(
            suggestions.iter().any(|s| s["article_id"] == wanted),
            "{text}: {suggestions:?}"
        );
        let confidences: Vec<f64> = suggestions
            .iter()
            .map(|s| s["confidence"].as_f64().unwrap())
            .collect();
        assert!(
            confidences.iter().all(|c| (0.0..=1.0).contains(c)),
            "{confidences:?}"
        );
        assert!(
            confidences[0] < helpdesk_core::knowledge::DEFAULT_THRESHOLD,
            "handed off, so below the threshold"
        );
        assert!(suggestions
            .iter()
            .all(|s| s["title"].as_str().is_some_and(|t| !t.is_empty())));
    }
}

#[tokio::test]
async fn urgent_complaints_skip_the_knowledge_base_with_high_priority() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    visitor.say("紧急！我要投诉，忘记密码了也没人管").await;
    visitor.wait_for("handoff").await;
    let tickets = server.tickets_of(&visitor.customer_id).await;
    assert_eq!(tickets[0]["priority"], "urgent");
    // Never searched: nothing to suggest.
    assert_eq!(tickets[0]["suggestions"], serde_json::json!([]));
    assert!(visitor
        .conversation()
        .await
        .iter()
        .all(|m| m["kind"] != "auto_reply"));
}

#[tokio::test]
async fn subject_is_the_first_hundred_characters_of_a_long_chinese_message() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let text: String = "我的包裹显示已签收但是我根本没有收到任何东西请尽快帮我核实物流"
        .chars()
        .cycle()
        .take(300)
        .collect();
    assert_eq!(text.chars().count(), 300);
    visitor.say(&text).await;
    visitor.wait_for("handoff").await;
    let tickets = server.tickets_of(&visitor.customer_id).await;
    let subject = tickets[0]["subject"].as_str().unwrap();
    assert_eq!(subject.chars().count(), 100);
    assert_eq!(subject, text.chars().take(100).collect::<String>());
    assert_eq!(tickets[0]["description"], text.as_str());
}

#[tokio::test]
async fn a_follow_up_joins_the_open_ticket() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    visitor
        .say("My order arrived damaged and the box was crushed")
        .await;
    visitor.wait_for("handoff").await;
    let second = visitor.say("我的账号邮箱是 zhang@example.com，谢谢").await;
    // Even a question the knowledge base could answer joins the open ticket.
    let third = visitor.say("How do I reset my password?").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let tickets = loop {
        let tickets = server.tickets_of(&visitor.customer_id).await;
        let (view, _) = server.ticket(tickets[0]["id"].as_str().unwrap()).await;
        let inbound = view["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["direction"] == "inbound")
            .count();
        if inbound == 3 || tokio::time::Instant::now() > deadline {
            break tickets;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(tickets.len(), 1);
    let (view, _) = server.ticket(tickets[0]["id"].as_str().unwrap()).await;
    let ids: Vec<&str> = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "inbound")
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[1..], [second.as_str(), third.as_str()]);
    let convo = visitor.conversation().await;
    assert_eq!(convo.iter().filter(|m| m["kind"] == "handoff").count(), 1);
    assert_eq!(
        convo.iter().filter(|m| m["kind"] == "auto_reply").count(),
        0
    );
}

#[tokio::test]
async fn a_repeated_client_message_id_is_taken_once() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let body = json!({"text": "What are your working hours?", "client_message_id": "m-1"});
    let first: serde_json::Value = server
        .post("/webchat/messages", &visitor.token, body.clone())
        .await
        .json()
        .await
        .unwrap();
    let again = server.post("/webchat/messages", &visitor.token, body).await;
    assert_eq!(again.status(), 202);
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(first["message_id"], again["message_id"]);
    visitor.wait_for("auto_reply").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let convo = visitor.conversation().await;
    assert_eq!(
        convo.iter().filter(|m| m["direction"] == "inbound").count(),
        1
    );
    assert_eq!(
        convo.iter().filter(|m| m["kind"] == "auto_reply").count(),
        1
    );
}

#[tokio::test]
async fn polling_after_a_message_returns_only_newer_ones() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let first = visitor.say("What are your working hours?").await;
    visitor.wait_for("auto_reply").await;
    let r = server
        .get(&format!("/webchat/messages?after={first}"), &visitor.token)
        .await;
    let v: serde_json::Value = r.json().await.unwrap();
    let kinds: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["auto_reply"]);
    let other = server.visitor().await;
    let r = server
        .get(&format!("/webchat/messages?after={first}"), &other.token)
        .await;
    assert_eq!(
        error_code(r, 404).await,
        "not_found",
        "one visitor cannot page through another's conversation"
    );
}

/// The keys a visitor's poll may show; anything else is the desk's own business.
const VISITOR_KEYS: [&str; 9] = [
    "id",
    "direction",
    "text",
    "kind",
    "created_at",
    "ticket_id",
    "choices",
    "link",
    "agent_name",
];

async fn hand_off_and_reply<'a>(server: &'a Server, agent_token: &str) -> (Visitor<'a>, String) {
    let visitor = server.visitor().await;
    visitor.say("我这个月被重复扣款了两次，请帮我查一下").await;
    visitor.wait_for("handoff").await;
    let tickets = server.tickets_of(&visitor.customer_id).await;
    let ticket_id = tickets[0]["id"].as_str().unwrap().to_string();
    // The agent takes the ticket first, so an agent's token may reply to it.
    let (_, version) = server.ticket(&ticket_id).await;
    let r = server
        .patch(&ticket_id, Some(version), json!({"assignee": "alice"}))
        .await;
    assert_eq!(r.status(), 200);
    let r = server
        .post(
            &format!("/tickets/{ticket_id}/replies"),
            agent_token,
            json!({"text": "您好，重复的扣款已经退回。"}),
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    visitor.wait_for("agent_reply").await;
    (visitor, ticket_id)
}

#[tokio::test]
async fn the_visitors_poll_holds_only_the_visitors_view() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let (visitor, ticket_id) = hand_off_and_reply(&server, ALICE).await;
    let r = server
        .post(
            &format!("/tickets/{ticket_id}/notes"),
            ALICE,
            json!({"text": "internal: refund approved by finance"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let (_, version) = server.ticket(&ticket_id).await;
    let r = server
        .patch(&ticket_id, Some(version), json!({"status": "closed"}))
        .await;
    assert_eq!(r.status(), 200);
    let survey = visitor.wait_for("survey").await;
    assert!(
        survey["link"]
            .as_str()
            .is_some_and(|l| l.contains("/surveys/")),
        "{survey}"
    );
    let convo = visitor.conversation().await;
    for m in &convo {
        for key in m.as_object().unwrap().keys() {
            assert!(VISITOR_KEYS.contains(&key.as_str()), "{key} in {m}");
        }
        assert_ne!(m["kind"], "note", "{m}");
    }
    let reply = convo.iter().find(|m| m["kind"] == "agent_reply").unwrap();
    assert_eq!(reply["text"], "您好，重复的扣款已经退回。");
    assert!(
        reply.get("agent_name").is_none(),
        "names are off by default"
    );
    let raw = server
        .get("/webchat/messages", &visitor.token)
        .await
        .text()
        .await
        .unwrap();
    assert!(!raw.contains("alice"), "{raw}");
    assert!(!raw.contains(&visitor.customer_id), "{raw}");
    assert!(!raw.contains("finance"), "{raw}");
}

#[tokio::test]
async fn the_team_may_show_agents_names_to_visitors() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[("WEBCHAT_SHOW_AGENT_NAMES", "true")]).await;
    let (visitor, _) = hand_off_and_reply(&server, ALICE).await;
    let reply = visitor.wait_for("agent_reply").await;
    assert_eq!(reply["agent_name"], "alice");
    let handoff = visitor.wait_for("handoff").await;
    assert!(handoff.get("agent_name").is_none(), "{handoff}");
}

#[tokio::test]
async fn a_browser_on_another_site_may_call_the_webchat_and_survey_routes() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    for path in [
        "/webchat/sessions",
        "/webchat/messages",
        "/surveys/some-token",
    ] {
        let r = server
            .http
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("Origin", "https://shop.example")
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{path}");
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "*", "{path}");
        let allowed = h["access-control-allow-headers"].to_str().unwrap();
        assert!(allowed.contains("authorization") && allowed.contains("content-type"));
        assert!(h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST"));
    }
    // Errors too, so the widget can read why (here: its session is gone).
    let r = server
        .http
        .get(server.url("/webchat/messages"))
        .header("Origin", "https://shop.example")
        .bearer_auth("no-such-session")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(error_code(r, 401).await, "unauthorized");
    // The agent API is not opened to other sites.
    let r = server
        .http
        .get(server.url("/tickets"))
        .header("Origin", "https://shop.example")
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
