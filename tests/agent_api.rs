//! The agent API end to end: closing and the survey, escalation, replies and notes,
//! listing, the knowledge-base routes, the CSAT report, and a restart.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A visitor whose question became a ticket; returns the ticket id.
async fn ticket_for(visitor: &Visitor<'_>, text: &str) -> String {
    visitor.say(text).await;
    let handoff = visitor.wait_for("handoff").await;
    handoff["ticket_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn closing_sends_one_survey_whose_link_takes_one_rating() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let id = ticket_for(&visitor, "我的订单显示已付款但商家说没收到钱").await;
    let (_, version) = server.ticket(&id).await;

    let stale = server
        .patch(&id, Some(version + 7), json!({"status": "closed"}))
        .await;
    assert_eq!(error_code(stale, 409).await, "version_conflict");
    let r = server
        .patch(&id, Some(version), json!({"status": "closed"}))
        .await;
    assert_eq!(r.status(), 200);
    let closed: Value = r.json().await.unwrap();
    assert_eq!(closed["status"], "closed");
    assert!(closed["closed_at"].is_string());
    let again = server
        .patch(&id, Some(version), json!({"status": "closed"}))
        .await;
    assert_eq!(error_code(again, 409).await, "version_conflict");

    let survey = visitor.wait_for("survey").await;
    assert_eq!(survey["ticket_id"], id.as_str());
    let text = survey["text"].as_str().unwrap();
    assert!(
        text.contains("打分"),
        "a Chinese customer gets a Chinese survey: {text}"
    );
    let link = text
        .split_whitespace()
        .chain(text.split('：'))
        .find_map(|w| w.find("http").map(|i| w[i..].to_string()))
        .unwrap();
    assert!(link.starts_with(&server.base), "{link}");
    // The survey went out once, however long we wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        visitor
            .conversation()
            .await
            .iter()
            .filter(|m| m["kind"] == "survey")
            .count(),
        1
    );
    let (view, _) = server.ticket(&id).await;
    assert!(view["ticket"]["survey"]["sent_at"].is_string());

    let page = server.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("name=\"rating\""));

    let bad = server
        .http
        .post(&link)
        .json(&json!({"rating": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bad, 422).await, "invalid_rating");
    let ok = server
        .http
        .post(&link)
        .json(&json!({"rating": 5, "comment": "很满意"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let second = server
        .http
        .post(&link)
        .json(&json!({"rating": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(second, 409).await, "already_answered");

    let (view, _) = server.ticket(&id).await;
    assert_eq!(view["ticket"]["survey"]["rating"], 5);
    assert_eq!(view["ticket"]["survey"]["comment"], "很满意");
    let json_view: Value = server
        .http
        .get(&link)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json_view["rating"], 5);

    let forged = link.replace("/surveys/", "/surveys/x");
    let r = server
        .http
        .post(&forged)
        .json(&json!({"rating": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");

    let report: Value = server.get("/reports/csat", BOB).await.json().await.unwrap();
    assert_eq!(report["count"], 1);
    assert_eq!(report["average"], 5.0);
    assert_eq!(report["distribution"]["5"], 1);
    assert_eq!(report["by_channel"]["webchat"]["count"], 1);
    assert_eq!(
        error_code(server.get("/reports/csat", ALICE).await, 403).await,
        "forbidden"
    );
    let empty: Value = server
        .get("/reports/csat?from=2000-01-01&to=2000-02-01", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty["count"], 0);
}

#[tokio::test]
async fn a_survey_form_post_records_the_rating() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let id = ticket_for(&visitor, "The app crashes when I open settings").await;
    let (_, version) = server.ticket(&id).await;
    assert_eq!(
        server
            .patch(&id, Some(version), json!({"status": "closed"}))
            .await
            .status(),
        200
    );
    let survey = visitor.wait_for("survey").await;
    let text = survey["text"].as_str().unwrap();
    let link = &text[text.find("http").unwrap()..];
    let http = &server.http;
    let read = |url: String| async move {
        let r = http.get(url).send().await.unwrap();
        r.text().await.unwrap()
    };
    let form = read(link.to_string()).await;
    // In the customer's language (the ticket's), with a link to the other.
    assert!(
        form.contains("5 = excellent") && !form.contains("5 分最好"),
        "{form}"
    );
    assert!(form.contains("href=\"?lang=zh\""), "{form}");
    let other = read(format!("{link}?lang=zh")).await;
    assert!(other.contains("1 分最差，5 分最好"), "{other}");
    let r = server
        .http
        .post(link)
        .form(&[("rating", "4"), ("comment", "fine")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let thanks = r.text().await.unwrap();
    assert!(
        thanks.contains("Your rating was recorded") && thanks.contains("href=\"?lang=zh\""),
        "in the customer's language, with a link to the other: {thanks}"
    );
    let (view, _) = server.ticket(&id).await;
    assert_eq!(view["ticket"]["survey"]["rating"], 4);
    let page = read(link.to_string()).await;
    assert!(
        page.contains("You rated us 4 of 5") && !page.contains("您的评分"),
        "{page}"
    );
    let zh = read(format!("{link}?lang=zh")).await;
    assert!(zh.contains("您的评分：4 分"), "{zh}");

    // A browser that sends the form again, or follows a forged link, reads a page, not JSON;
    // the first answer stands.
    let r = server
        .http
        .post(link)
        .form(&[("rating", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("already answered"));
    let forged = format!("{}x", link.trim_end());
    for r in [
        server.http.get(&forged).send().await.unwrap(),
        server
            .http
            .post(&forged)
            .form(&[("rating", "5")])
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(r.status(), 404);
        assert!(r.text().await.unwrap().contains("Survey not found"));
    }
    // A program asking for JSON still gets the API's error form.
    let r = server
        .http
        .post(link)
        .json(&json!({"rating": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 409).await, "already_answered");
    let (view, _) = server.ticket(&id).await;
    assert_eq!(view["ticket"]["survey"]["rating"], 4);
}

#[tokio::test]
async fn escalation_records_reason_and_time_and_notifies_the_supervisor() {
    let hook = FakeWebhook::start().await;
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[("SUPERVISOR_WEBHOOK_URL", &hook.url)]).await;
    let visitor = server.visitor().await;
    let id = ticket_for(&visitor, "Your courier lost my parcel and nobody answers").await;
    let r = server
        .post(
            &format!("/tickets/{id}/escalate"),
            ALICE,
            json!({"reason": "客户第三次来信，需要主管处理"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["status"], "escalated");
    assert_eq!(t["escalation_reason"], "客户第三次来信，需要主管处理");
    assert!(t["escalated_at"].is_string());
    let got = hook.wait_for(1).await;
    assert_eq!(got.len(), 1, "the supervisor webhook got no POST");
    assert_eq!(got[0]["ticket_id"], id.as_str());
    assert_eq!(got[0]["reason"], "客户第三次来信，需要主管处理");
    assert_eq!(got[0]["escalated_by"], "alice");
    assert_eq!(got[0]["event"], "ticket.escalated");
    let twice = server
        .post(
            &format!("/tickets/{id}/escalate"),
            ALICE,
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(error_code(twice, 409).await, "already_escalated");
    let list: Value = server
        .get("/tickets?status=escalated", ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn replies_reach_the_customer_and_notes_do_not() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let id = ticket_for(&visitor, "My discount code SAVE10 is rejected at checkout").await;
    let note = server
        .post(
            &format!("/tickets/{id}/notes"),
            ALICE,
            json!({"text": "查一下优惠码是否过期"}),
        )
        .await;
    assert_eq!(note.status(), 201);
    let r = server
        .post(
            &format!("/tickets/{id}/replies"),
            ALICE,
            json!({"text": "您好，优惠码已为您重新激活，请再试一次。"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let reply = visitor.wait_for("agent_reply").await;
    assert_eq!(reply["text"], "您好，优惠码已为您重新激活，请再试一次。");
    // Who wrote it is the desk's business: the agent's view has it, the visitor's does not.
    assert!(reply.get("author").is_none(), "{reply}");
    assert!(
        visitor
            .conversation()
            .await
            .iter()
            .all(|m| m["kind"] != "note"),
        "a note leaked to the customer"
    );
    let (view, _) = server.ticket(&id).await;
    assert!(view["ticket"]["first_response_at"].is_string());
    assert_eq!(view["ticket"]["assignee"], "alice");
    assert!(
        view["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["kind"] == "agent_reply" && m["author"] == "alice"),
        "{view}"
    );
    let kinds: Vec<&str> = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"note") && kinds.contains(&"agent_reply"),
        "{kinds:?}"
    );
    let first = view["ticket"]["first_response_at"].clone();
    server
        .post(
            &format!("/tickets/{id}/replies"),
            ALICE,
            json!({"text": "second"}),
        )
        .await;
    let (view, _) = server.ticket(&id).await;
    assert_eq!(
        view["ticket"]["first_response_at"], first,
        "first_response_at is set once"
    );
    let mine: Value = server
        .get("/tickets?assignee=me", ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["tickets"][0]["id"], id.as_str());
}

#[tokio::test]
async fn tickets_are_listed_newest_first_in_pages_and_filtered() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    // A visitor becomes a customer at their first message; an answered question opens no
    // ticket.
    visitor.say("请问营业时间？").await;
    visitor.wait_for("auto_reply").await;
    assert!(server.tickets_of(&visitor.customer_id).await.is_empty());
    // A customer has one active ticket: each is resolved before the next is made.
    let mut ids: Vec<String> = Vec::new();
    for (i, skill) in ["billing", "technical", "billing"].iter().enumerate() {
        if let Some(last) = ids.last() {
            let (_, version) = server.ticket(last).await;
            let r = server
                .patch(last, Some(version), json!({"status": "resolved"}))
                .await;
            assert_eq!(r.status(), 200);
        }
        let r = server.post("/tickets", ALICE, json!({"customer_id": visitor.customer_id, "description": format!("问题 {i}"), "skill": skill, "priority": "high"})).await;
        assert_eq!(r.status(), 201);
        let t: Value = r.json().await.unwrap();
        assert_eq!(t["subject"], format!("问题 {i}"));
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    let p1: Value = server
        .get("/tickets?limit=2", ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p1["tickets"][0]["id"], ids[2].as_str());
    assert_eq!(p1["tickets"][1]["id"], ids[1].as_str());
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2: Value = server
        .get(&format!("/tickets?limit=2&cursor={cursor}"), ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p2["tickets"].as_array().unwrap().len(), 1);
    assert_eq!(p2["tickets"][0]["id"], ids[0].as_str());
    assert!(p2.get("next_cursor").is_none());
    let billing: Value = server
        .get(
            "/tickets?skill=billing&priority=high&channel=webchat",
            ALICE,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(billing["tickets"].as_array().unwrap().len(), 2);
    let open: Value = server
        .get(
            "/tickets?skill=billing&priority=high&channel=webchat&status=open",
            ALICE,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(open["tickets"].as_array().unwrap().len(), 1);
    assert_eq!(open["tickets"][0]["id"], ids[2].as_str());
    let unknown = server
        .post(
            "/tickets",
            ALICE,
            json!({"customer_id": "nobody", "description": "x"}),
        )
        .await;
    assert_eq!(error_code(unknown, 404).await, "not_found");
}

#[tokio::test]
async fn a_ticket_is_found_by_the_reference_its_customer_was_told() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    // What each customer was told, read from the hand-off message they got.
    let told = |handoff: &Value, label: &str| {
        let text = handoff["text"].as_str().unwrap();
        let r = text.split(label).nth(1).unwrap_or_else(|| panic!("{text}"));
        r.trim().to_string()
    };
    let zh = server.visitor().await;
    zh.say("我的订单显示已付款但商家说没收到钱").await;
    let handoff = zh.wait_for("handoff").await;
    let (zh_ticket, zh_ref) = (handoff["ticket_id"].clone(), told(&handoff, "工单号："));
    let en = server.visitor().await;
    en.say("The app crashes when I open settings").await;
    let handoff = en.wait_for("handoff").await;
    let (en_ticket, en_ref) = (handoff["ticket_id"].clone(), told(&handoff, "Ticket: "));
    let listed = |query: String| {
        let server = &server;
        async move {
            let r = server.get(&format!("/tickets?{query}"), ALICE).await;
            assert_eq!(r.status(), 200, "{query}");
            let v: Value = r.json().await.unwrap();
            let ids: Vec<Value> = v["tickets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].clone())
                .collect();
            ids
        }
    };
    for typed in [
        zh_ref.clone(),
        zh_ref.to_lowercase(),
        format!("%23{zh_ref}"),
        format!("%20%23{}%20", zh_ref.to_lowercase()),
    ] {
        assert_eq!(
            listed(format!("ref={typed}")).await,
            vec![zh_ticket.clone()],
            "{typed}"
        );
    }
    assert_eq!(listed(format!("ref={en_ref}")).await, vec![en_ticket]);
    assert_eq!(
        listed(format!("ref={zh_ref}&status=open&channel=webchat")).await,
        vec![zh_ticket]
    );
    assert!(listed(format!("ref={zh_ref}&status=closed"))
        .await
        .is_empty());
    for bad in [
        "xyz",
        "%23%23ABCD1234",
        "ABCD12345",
        "%E5%B7%A5%E5%8D%95%E5%8F%B7",
    ] {
        let r = server.get(&format!("/tickets?ref={bad}"), ALICE).await;
        assert_eq!(error_code(r, 422).await, "invalid_reference", "{bad}");
    }
}

#[tokio::test]
async fn an_article_answers_each_customer_in_their_language() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let put = |body: Value| {
        let s = &server;
        async move {
            s.http
                .put(s.url("/kb/articles/store-address"))
                .bearer_auth(BOB)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let article = json!({
        "title": "Store address",
        "questions": ["Where is your store?", "What is your store address?", "你们的门店在哪里", "线下门店地址"],
        "answer": "Our store is at 100 West Nanjing Road, Shanghai.",
        "locale": "en",
        "answers": {"zh": "我们的门店位于上海市南京西路 100 号。"}
    });
    assert_eq!(put(article).await.status(), 201);
    let got: Value = server
        .get("/kb/articles/store-address", ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        got["answers"]["zh"],
        "我们的门店位于上海市南京西路 100 号。"
    );

    let chinese = server.visitor().await;
    chinese.say("请问门店在哪里？").await;
    let reply = chinese.wait_for("auto_reply").await;
    assert!(
        reply["text"].as_str().unwrap().contains("南京西路 100 号"),
        "{reply}"
    );
    let english = server.visitor().await;
    english.say("Where is your store?").await;
    let reply = english.wait_for("auto_reply").await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("West Nanjing Road"),
        "{reply}"
    );

    // Answers are keyed by a language the desk speaks, and none is empty.
    for answers in [json!({"fr": "Notre magasin"}), json!({"zh": " "})] {
        let bad = json!({
            "title": "Store address",
            "questions": ["Where is your store?"],
            "answer": "Our store is at 100 West Nanjing Road, Shanghai.",
            "answers": answers
        });
        assert_eq!(error_code(put(bad).await, 422).await, "invalid_article");
    }
}

#[tokio::test]
async fn knowledge_base_articles_can_be_added_searched_and_removed() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let article = json!({
        "title": "门店地址",
        "questions": ["你们的门店在哪里", "线下门店地址", "Where is your store?"],
        "answer": "我们的门店位于上海市南京西路 100 号。",
        "locale": "zh"
    });
    let put = |token: &'static str, body: Value| {
        let s = &server;
        async move {
            s.http
                .put(s.url("/kb/articles/store-address"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        error_code(put(ALICE, article.clone()).await, 403).await,
        "forbidden"
    );
    assert_eq!(put(BOB, article.clone()).await.status(), 201);
    assert_eq!(put(BOB, article.clone()).await.status(), 200);
    let got: Value = server
        .get("/kb/articles/store-address", ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["answer"], "我们的门店位于上海市南京西路 100 号。");
    let found: Value = server
        .get("/kb/search?q=%E9%97%A8%E5%BA%97%E5%9C%A8%E5%93%AA", ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["hits"][0]["article_id"], "store-address");
    assert_eq!(found["auto_reply"], true);
    let visitor = server.visitor().await;
    visitor.say("请问门店在哪里？").await;
    let reply = visitor.wait_for("auto_reply").await;
    assert!(reply["text"].as_str().unwrap().contains("南京西路"));
    let del = server
        .http
        .delete(server.url("/kb/articles/store-address"))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(
        error_code(server.get("/kb/articles/store-address", ALICE).await, 404).await,
        "not_found"
    );
    let all: Value = server
        .get("/kb/articles", ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        all["articles"].as_array().unwrap().len() >= 6,
        "the sample knowledge base is loaded"
    );
}

#[tokio::test]
async fn everything_is_still_there_after_a_hard_restart() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    visitor.say("What are your working hours?").await;
    visitor.wait_for("auto_reply").await;
    let id = ticket_for(&visitor, "My package was delivered to the wrong address").await;
    let (_, version) = server.ticket(&id).await;
    server
        .patch(
            &id,
            Some(version),
            json!({"priority": "urgent", "assignee": "alice"}),
        )
        .await;
    let token = visitor.token.clone();
    let customer = visitor.customer_id.clone();
    let before = visitor.conversation().await;
    let articles: Value = server
        .get("/kb/articles", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    server.kill().await;

    let server = Server::start(&dir.0, &[]).await;
    let r = server.get("/webchat/messages", &token).await;
    assert_eq!(r.status(), 200, "the session survives a restart");
    let after: Value = r.json().await.unwrap();
    assert_eq!(after["messages"].as_array().unwrap(), &before);
    let (view, _) = server.ticket(&id).await;
    assert_eq!(view["ticket"]["priority"], "urgent");
    assert_eq!(view["ticket"]["assignee"], "alice");
    assert_eq!(view["ticket"]["customer_id"], customer.as_str());
    let again: Value = server
        .get("/kb/articles", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again, articles,
        "the knowledge base is the same, not loaded twice"
    );
    // The flow still runs after the restart, on the same ticket.
    let visitor = Visitor {
        server: &server,
        token,
        customer_id: customer,
    };
    visitor.say("any news?").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (view, _) = server.ticket(&id).await;
        if view["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["text"] == "any news?")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follow-up never joined the ticket"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn kb_import_loads_articles_that_serve_then_answers_from() {
    let dir = TempDir::new();
    let file = dir.0.join("faq.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"id": "parking", "title": "停车", "questions": ["可以在哪里停车", "Is there parking?"], "answer": "地下车库 B2 可免费停车两小时。", "locale": "zh"}"#,
            "\n",
            r#"{"id": "wifi", "title": "Wi-Fi", "questions": ["What is the wifi password?"], "answer": "The guest network is Helpdesk-Guest, no password."}"#,
            "\n"
        ),
    )
    .unwrap();
    let import = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_helpdesk"))
            .args(["kb", "import"])
            .arg(path)
            .arg("--data-dir")
            .arg(&dir.0)
            .env("HELPDESK_LOG", "error")
            .output()
            .unwrap()
    };
    let out = import(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 2 articles (2 new"));
    let bad = dir.0.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": \"a\", \"title\": \"t\", \"questions\": [\"q\"], \"answer\": \"a\"}\n{oops\n",
    )
    .unwrap();
    let out = import(&bad);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = Server::start(&dir.0, &[]).await;
    let got: Value = server
        .get("/kb/articles/parking", ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["answer"], "地下车库 B2 可免费停车两小时。");
    let visitor = server.visitor().await;
    visitor.say("请问可以在哪里停车？").await;
    let reply = visitor.wait_for("auto_reply").await;
    assert!(reply["text"].as_str().unwrap().contains("B2"));
}

#[tokio::test]
async fn the_inbox_views_count_and_revalidate_with_etags() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let first = ticket_for(&visitor, "我要投诉，快递三天了还没到").await;
    let other = server.visitor().await;
    let second = ticket_for(&other, "I want to speak to a human about my invoice").await;

    let me: Value = server.get("/me", ALICE).await.json().await.unwrap();
    assert_eq!(
        (&me["name"], &me["role"]),
        (&json!("alice"), &json!("agent"))
    );
    assert_eq!(me["profile"]["available"], true, "{me}");
    assert_eq!(me["profile"]["capacity"], 10, "the default profile");
    assert_eq!(server.get("/me", "wrong-token").await.status(), 401);

    let counts = |token: &'static str| {
        let server = &server;
        async move {
            server
                .get("/tickets/counts", token)
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        counts(ALICE).await,
        json!({"mine": 0, "unassigned": 2, "all": 2})
    );
    let (_, version) = server.ticket(&first).await;
    let r = server
        .patch(&first, Some(version), json!({"assignee": "alice"}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        counts(ALICE).await,
        json!({"mine": 1, "unassigned": 1, "all": 2})
    );
    // Under the list's filters, each count is the size of its view's list.
    let (_, version) = server.ticket(&first).await;
    let r = server
        .patch(&first, Some(version), json!({"priority": "urgent"}))
        .await;
    assert_eq!(r.status(), 200);
    let urgent: Value = server
        .get("/tickets/counts?priority=urgent&channel=webchat", ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(urgent, json!({"mine": 1, "unassigned": 0, "all": 1}));
    let listed: Value = server
        .get(
            "/tickets?status=active&priority=urgent&channel=webchat",
            ALICE,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["tickets"].as_array().unwrap().len(), 1, "{listed}");
    let r = server.get("/tickets/counts?priority=soon", ALICE).await;
    assert_eq!(error_code(r, 400).await, "bad_request");

    let unassigned: Value = server
        .get("/tickets?status=active&assignee=none", ALICE)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = unassigned["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str()]);

    // An unchanged list answers 304 to the ETag it gave; a change gives a new one.
    let url = server.url("/tickets?status=active");
    let first_load = server
        .http
        .get(&url)
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(first_load.status(), 200);
    let etag = first_load.headers()["etag"].to_str().unwrap().to_string();
    let again = server
        .http
        .get(&url)
        .bearer_auth(ALICE)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let (_, version) = server.ticket(&second).await;
    let r = server
        .patch(&second, Some(version), json!({"status": "pending"}))
        .await;
    assert_eq!(r.status(), 200);
    let changed = server
        .http
        .get(&url)
        .bearer_auth(ALICE)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);

    let bad = server.get("/tickets?status=sleeping", ALICE).await;
    assert_eq!(error_code(bad, 400).await, "bad_request");

    // The ticket view names the customer and how they reached us.
    let view: Value = server
        .get(&format!("/tickets/{first}"), ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["customer"]["identities"][0]["channel"], "webchat");
}

#[tokio::test]
async fn the_volume_report_counts_tickets_per_day_and_the_first_response() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let id = ticket_for(&visitor, "我要人工客服").await;
    let r = server
        .post(
            &format!("/tickets/{id}/replies"),
            ALICE,
            json!({"text": "您好，我来帮您看看"}),
        )
        .await;
    assert_eq!(r.status(), 202);

    let forbidden = server.get("/reports/volume", ALICE).await;
    assert_eq!(error_code(forbidden, 403).await, "forbidden");
    let report: Value = server
        .get("/reports/volume", BOB)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["opened"], 1);
    assert_eq!(report["closed"], 0);
    assert_eq!(report["answered"], 1);
    assert!(report["median_first_response_secs"].as_i64().unwrap() >= 0);
    let days = report["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days.last().unwrap()["opened"], 1);
    let bad = server
        .get("/reports/volume?from=2026-11-20&to=2026-11-01", BOB)
        .await;
    assert_eq!(error_code(bad, 422).await, "invalid_period");
}

/// A team in another time zone counts its own days: a date in the period is the start of
/// that day there, and a ticket opened now lands on the team's today.
#[tokio::test]
async fn the_volume_report_counts_the_teams_days() {
    use helpdesk_core::domain::hours::Tz;
    let dir = TempDir::new();
    let rules = dir.0.join("kiribati.toml");
    std::fs::write(
        &rules,
        "[assignment]\nauto = false\n\n[business_hours]\ntimezone = \"Pacific/Kiritimati\"\n\
         days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         open = \"00:00\"\nclose = \"23:59\"\n",
    )
    .unwrap();
    let server = Server::start(&dir.0, &[("HELPDESK_RULES", rules.to_str().unwrap())]).await;
    let visitor = server.visitor().await;
    ticket_for(&visitor, "我要人工客服").await;

    let zone: Tz = "Pacific/Kiritimati".parse().unwrap();
    let today = chrono::Utc::now().with_timezone(&zone).date_naive();
    let report: Value = server
        .get("/reports/volume", BOB)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["timezone"], "Pacific/Kiritimati");
    let last = report["days"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["date"], &last["opened"]),
        (&json!(today.to_string()), &json!(1))
    );

    // The team's today, asked by its dates: [today, tomorrow) there, 14 hours ahead of UTC.
    let tomorrow = today.succ_opt().unwrap();
    let report: Value = server
        .get(&format!("/reports/volume?from={today}&to={tomorrow}"), BOB)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["opened"], 1, "{report}");
    assert_eq!(report["days"].as_array().unwrap().len(), 1, "{report}");
    // The UTC day that ends when the team's today begins holds nothing.
    let report: Value = server
        .get(
            &format!(
                "/reports/volume?from={}T10:00:00Z&to={today}",
                today.pred_opt().unwrap().pred_opt().unwrap()
            ),
            BOB,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["opened"], 0, "{report}");
}

#[tokio::test]
async fn one_idempotency_key_makes_one_reply_and_one_ticket() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let id = ticket_for(&visitor, "我要人工客服").await;

    // Twenty agents' retries of one reply, at once.
    let path = format!("/tickets/{id}/replies");
    let reply = json!({"text": "已为您办理退款"});
    let sends = (0..20).map(|_| server.keyed_post(&path, ALICE, "reply-7f3a", &reply).send());
    let answers = futures_join(sends).await;
    let mut ids = std::collections::BTreeSet::new();
    for r in answers {
        let r = r.unwrap();
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        ids.insert(body["message_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one message for one key: {ids:?}");
    let replies = visitor.wait_for_count("agent_reply", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all: Vec<Value> = visitor
        .conversation()
        .await
        .into_iter()
        .filter(|m| m["kind"] == "agent_reply")
        .collect();
    assert_eq!(all.len(), 1, "{replies:?}");

    // Without a key, a second reply is a second reply.
    let r = server
        .post(&path, ALICE, json!({"text": "还有别的问题吗？"}))
        .await;
    assert_eq!(r.status(), 202);

    // A note sent three times under one key (a send whose answer was lost, then retried) is
    // one note, and each answer is that note.
    let notes = format!("/tickets/{id}/notes");
    let note = json!({"text": "客户要求开发票，已转财务"});
    let mut noted = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let r = server
            .keyed_post(&notes, ALICE, "note-1", &note)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["text"], note["text"]);
        noted.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(noted.len(), 1, "one note for one key: {noted:?}");
    let (view, _) = server.ticket(&id).await;
    let stored = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "note")
        .count();
    assert_eq!(stored, 1, "{view}");

    // Its ticket resolved, a ticket made by hand, sent twice under one key, is one ticket.
    let (_, version) = server.ticket(&id).await;
    let r = server
        .patch(&id, Some(version), json!({"status": "resolved"}))
        .await;
    assert_eq!(r.status(), 200);
    let call = json!({"customer_id": visitor.customer_id, "description": "电话来电：发票抬头要改"});
    let make = || {
        server
            .keyed_post("/tickets", ALICE, "phone-call-42", &call)
            .send()
    };
    let first: Value = make().await.unwrap().json().await.unwrap();
    let second = make().await.unwrap();
    assert_eq!(second.status(), 201);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    let long_key = "k".repeat(201);
    let bad = server
        .keyed_post(&path, ALICE, &long_key, &json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bad, 400).await, "invalid_idempotency_key");
}

/// Checks that `r` is the 409 `active_ticket_exists` naming `ticket`, the customer's active
/// ticket, where the agent should go.
async fn refused_naming(r: reqwest::Response, ticket: &str) {
    assert_eq!(r.status(), 409);
    let refused: Value = r.json().await.unwrap();
    assert_eq!(
        refused["error"]["code"], "active_ticket_exists",
        "{refused}"
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(ticket),
        "names the ticket to go to: {refused}"
    );
}

/// A visitor's hand-off opened a ticket; an agent who then makes one by hand for the same
/// customer is told which ticket they have (409), and the visitor's next message joins the
/// ticket being worked. Once it is closed, a ticket made by hand goes through, and a retry
/// under its `Idempotency-Key` still answers with it.
#[tokio::test]
async fn a_customer_with_an_active_ticket_gets_no_second_one_by_hand() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let first = ticket_for(
        &visitor,
        "Why was I charged twice this month? I want to speak to a human",
    )
    .await;
    let by_hand = json!({"customer_id": visitor.customer_id, "description": "manual follow-up"});
    let r = server.post("/tickets", ALICE, by_hand.clone()).await;
    refused_naming(r, &first).await;

    let news = visitor.say("any news?").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (view, _) = server.ticket(&first).await;
        if view["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == news.as_str())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follow-up did not join {first}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tickets = server.tickets_of(&visitor.customer_id).await;
    assert_eq!(
        tickets.iter().map(|t| &t["id"]).collect::<Vec<_>>(),
        vec![&json!(first)],
        "one ticket"
    );

    let (_, version) = server.ticket(&first).await;
    let r = server
        .patch(&first, Some(version), json!({"status": "closed"}))
        .await;
    assert_eq!(r.status(), 200);
    let make = || {
        server
            .keyed_post("/tickets", ALICE, "call-back-1", &by_hand)
            .send()
    };
    let made = make().await.unwrap();
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    let again = make().await.unwrap();
    assert_eq!(
        again.status(),
        201,
        "a retry answers as the first request did"
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], made["id"]);
    let r = server.post("/tickets", ALICE, by_hand).await;
    assert_eq!(error_code(r, 409).await, "active_ticket_exists");
}

/// A visitor's ticket was resolved, and an agent then made a second one by hand for the same
/// customer: the first reopened by an agent is refused with 409 naming the second, and stays
/// as it was, its version too. Once the second is resolved, the reopen goes through.
#[tokio::test]
async fn a_reopen_beside_the_customers_active_ticket_is_refused() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let first = ticket_for(&visitor, "我的订单显示已付款但商家说没收到钱，转人工").await;
    let (_, version) = server.ticket(&first).await;
    let r = server
        .patch(&first, Some(version), json!({"status": "resolved"}))
        .await;
    assert_eq!(r.status(), 200);
    let by_hand = json!({"customer_id": visitor.customer_id, "description": "回电：退款"});
    let r = server.post("/tickets", ALICE, by_hand).await;
    assert_eq!(r.status(), 201);
    let second = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let (before, version) = server.ticket(&first).await;
    let r = server
        .patch(&first, Some(version), json!({"status": "open"}))
        .await;
    refused_naming(r, &second).await;
    let (after, after_version) = server.ticket(&first).await;
    assert_eq!(after_version, version, "the version did not move");
    assert_eq!(after["ticket"], before["ticket"], "the ticket is unchanged");
    assert_eq!(after["ticket"]["status"], "resolved");

    let (_, second_version) = server.ticket(&second).await;
    let r = server
        .patch(&second, Some(second_version), json!({"status": "resolved"}))
        .await;
    assert_eq!(r.status(), 200);
    let r = server
        .patch(&first, Some(version), json!({"status": "open"}))
        .await;
    assert_eq!(r.status(), 200);
    let reopened: Value = r.json().await.unwrap();
    assert_eq!(reopened["status"], "open");
    assert_eq!(reopened["version"], version + 1);
}

/// Runs the requests at once, each on its own task.
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Starts `helpdesk serve` with no HELPDESK_ADMIN_TOKEN; returns the child, its base URL
/// and what it printed before it listened.
async fn serve_without_admin_token(dir: &TempDir) -> (tokio::process::Child, String, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_helpdesk"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir.0)
        .env_remove("HELPDESK_ADMIN_TOKEN")
        .env_remove("HELPDESK_AGENTS")
        .env("HELPDESK_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let base = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("helpdesk listening on ") {
                return url.trim().to_string();
            }
            printed.push_str(&line);
            printed.push('\n');
        }
        panic!("helpdesk exited before listening");
    })
    .await
    .unwrap();
    (child, base, printed)
}

/// What `helpdesk admin-token` says of a data directory.
async fn admin_token_of(dir: &TempDir) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_helpdesk"))
        .args(["admin-token", "--data-dir"])
        .arg(&dir.0)
        .env_remove("HELPDESK_ADMIN_TOKEN")
        .output()
        .await
        .unwrap()
}

/// What a person at the command line meets: `admin-token` shows the token the desk takes
/// (the variable's, when it is set); a short chosen admin token is refused as an agent's
/// is; `--addr` takes a host name; an error is one line, with no backtrace even under
/// `RUST_BACKTRACE`, and the log written to a file has no colour codes.
#[tokio::test]
async fn the_command_line_says_what_the_desk_takes_in_plain_lines() {
    let dir = TempDir::new();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_helpdesk"));
        c.args(args)
            .arg("--data-dir")
            .arg(&dir.0)
            .env_remove("HELPDESK_ADMIN_TOKEN")
            .env("RUST_BACKTRACE", "1")
            .env("HELPDESK_LOG", "info");
        for (k, v) in env {
            c.env(k, v);
        }
        c.kill_on_drop(true);
        c
    };
    let out = run(
        &["admin-token"],
        &[("HELPDESK_ADMIN_TOKEN", "chosen-admin-令牌")],
    )
    .output()
    .await
    .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "chosen-admin-令牌\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("HELPDESK_ADMIN_TOKEN is set"));

    let out = run(
        &["serve", "--addr", "127.0.0.1:0"],
        &[("HELPDESK_ADMIN_TOKEN", "短令牌")],
    )
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HELPDESK_ADMIN_TOKEN needs 8 characters"),
        "{stderr}"
    );
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "colour codes in a log that is not a terminal: {stderr}"
    );

    let missing = dir.0.join("no-such-file.json");
    let out = run(&["kb", "import", missing.to_str().unwrap()], &[])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: reading"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");

    // A host name and port: the desk listens, and says where; its log, in a pipe, is plain.
    let mut child = run(
        &["serve", "--addr", "localhost:0"],
        &[("HELPDESK_ADMIN_TOKEN", ADMIN)],
    )
    .stderr(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let mut listening = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("listening on http://") {
            listening = Some(line);
            break;
        }
    }
    child.kill().await.unwrap();
    let mut log = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut log)
        .await
        .unwrap();
    assert!(listening.is_some(), "{log}");
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "colour codes in a log that is not a terminal: {log}"
    );
}

/// A start stopped by a bad `HELPDESK_AGENTS` has made and printed no admin token: the
/// token shown "this once" is the one of the start that runs.
#[tokio::test]
async fn a_start_refused_for_its_agents_makes_no_admin_token() {
    let dir = TempDir::new();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_helpdesk"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir.0)
        .env_remove("HELPDESK_ADMIN_TOKEN")
        .env("HELPDESK_AGENTS", "李雷:agent:short")
        .env("HELPDESK_LOG", "error")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stderr.contains("HELPDESK_AGENTS") && stderr.contains("8 characters"),
        "{stderr}"
    );
    assert!(!stdout.contains("admin token"), "{stdout}");
    let shown = admin_token_of(&dir).await;
    assert!(!shown.status.success());
    assert!(String::from_utf8_lossy(&shown.stderr).contains("no admin token yet"));
}

#[tokio::test]
async fn a_generated_admin_token_is_printed_once_and_shown_on_request() {
    let dir = TempDir::new();
    let (mut first, _, printed) = serve_without_admin_token(&dir).await;
    let token = printed
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "admin token (printed this once; set HELPDESK_ADMIN_TOKEN to choose your own): ",
            )
        })
        .unwrap_or_else(|| panic!("no token in {printed:?}"))
        .to_string();
    first.kill().await.unwrap();
    let _ = first.wait().await;

    let (mut second, base, printed) = serve_without_admin_token(&dir).await;
    assert!(!printed.contains(&token), "printed again: {printed}");
    assert!(printed.contains("helpdesk admin-token"), "{printed}");
    let me = reqwest::Client::new()
        .get(format!("{base}/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "the first start's token still signs in");

    let shown = admin_token_of(&dir).await;
    assert!(shown.status.success());
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), token);
    second.kill().await.unwrap();

    let empty = TempDir::new();
    let none = admin_token_of(&empty).await;
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no admin token yet"));
}

/// The `Cache-Control` of an answer.
fn cache_control(r: &reqwest::Response) -> String {
    r.headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// What holds customers' words or a person's details is kept by no cache (`no-store`): a
/// ticket, a customer, the signed-in agent, the visitor's conversation and the survey, as
/// JSON and as a page, errors included. The lists and counts keep `no-cache`, so the
/// console's polls still revalidate with their ETags (304).
#[tokio::test]
async fn answers_holding_customers_words_are_not_stored() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let id = ticket_for(&visitor, "我的订单显示已付款但商家说没收到钱").await;

    let ticket = server.get(&format!("/tickets/{id}"), ADMIN).await;
    assert_eq!(ticket.status(), 200);
    assert_eq!(cache_control(&ticket), "no-store");
    let view: Value = ticket.json().await.unwrap();
    let customer = view["ticket"]["customer_id"].as_str().unwrap().to_string();
    for path in [
        format!("/customers/{customer}"),
        "/me".to_string(),
        "/agents/alice".to_string(),
        "/reports/volume".to_string(),
        "/tickets/no-such-ticket".to_string(),
    ] {
        let r = server.get(&path, BOB).await;
        assert!(r.status() == 200 || r.status() == 404, "{path}");
        assert_eq!(cache_control(&r), "no-store", "{path}");
    }
    let poll = server.get("/webchat/messages", &visitor.token).await;
    assert_eq!(poll.status(), 200);
    assert_eq!(cache_control(&poll), "no-store");
    let refused = server.get("/webchat/messages", "forged-token").await;
    assert_eq!(cache_control(&refused), "no-store");

    for path in ["/tickets", "/tickets/counts"] {
        let r = server.get(path, ALICE).await;
        assert_eq!(cache_control(&r), "private, no-cache", "{path}");
        let etag = r.headers()["etag"].clone();
        let again = server
            .http
            .get(server.url(path))
            .bearer_auth(ALICE)
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(cache_control(&again), "private, no-cache", "{path}");
    }

    let (_, version) = server.ticket(&id).await;
    let r = server
        .patch(&id, Some(version), json!({"status": "closed"}))
        .await;
    assert_eq!(r.status(), 200);
    let link = visitor.survey_link().await;
    let page = server.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(cache_control(&page), "no-store");
    let json_view = server
        .http
        .get(&link)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(json_view.status(), 200);
    assert_eq!(cache_control(&json_view), "no-store");
    let answered = server
        .http
        .post(&link)
        .json(&json!({"rating": 5, "comment": "很满意"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(cache_control(&answered), "no-store");
}

/// Starts `serve` on `data_dir` with its warnings logged, stops it once it listens, and
/// returns what it logged.
async fn log_of_a_start(data_dir: &std::path::Path) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_helpdesk"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("HELPDESK_ADMIN_TOKEN", ADMIN)
        .env_remove("HELPDESK_AGENTS")
        .env("HELPDESK_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log).await;
        log
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("helpdesk listening on ") {
                return;
            }
        }
        panic!("helpdesk exited before listening");
    })
    .await
    .unwrap();
    child.kill().await.unwrap();
    let _ = child.wait().await;
    log.await.unwrap()
}

/// The data directory's database holds the generated admin token and the survey secret: a
/// new one is its owner's alone (0700), and one that others can read is warned about at
/// start and left as it is.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_its_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = TempDir::new();
    let data = dir.0.join("new").join("data");
    let log = log_of_a_start(&data).await;
    assert_eq!(mode(&data), 0o700, "{:o}", mode(&data));
    assert!(data.join("helpdesk.sqlite3").exists());
    assert!(!log.contains("chmod 700"), "{log}");

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = log_of_a_start(&data).await;
    assert!(log.contains("WARN") && log.contains("chmod 700"), "{log}");
    assert_eq!(mode(&data), 0o755, "a start changes no one's modes");

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let log = log_of_a_start(&data).await;
    assert!(!log.contains("chmod 700"), "{log}");
}

/// A ticket an agent resolves says when it will close by itself (4 days on, by default, and
/// the survey goes out then), and no longer once it is reopened.
#[tokio::test]
async fn a_resolved_ticket_says_when_it_closes_by_itself() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let id = ticket_for(&visitor, "Why was I charged twice this month?").await;
    let (_, version) = server.ticket(&id).await;
    // The desk's clock keeps milliseconds.
    let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    let r = server
        .patch(&id, Some(version), json!({"status": "resolved"}))
        .await;
    assert_eq!(r.status(), 200);
    let resolved: Value = r.json().await.unwrap();
    let closes_at: chrono::DateTime<chrono::Utc> =
        resolved["closes_at"].as_str().unwrap().parse().unwrap();
    let four_days = chrono::Duration::days(4);
    assert!(closes_at >= before + four_days, "{resolved}");
    assert!(closes_at <= chrono::Utc::now() + four_days, "{resolved}");
    let r = server
        .patch(&id, resolved["version"].as_u64(), json!({"status": "open"}))
        .await;
    assert_eq!(r.status(), 200);
    let reopened: Value = r.json().await.unwrap();
    assert!(reopened.get("closes_at").is_none(), "{reopened}");
}

/// The visitor writes again after their ticket was resolved: the ticket opens again, with
/// the message on it and its time to close gone, as a Zendesk solved ticket reopens on the
/// customer's reply. No second ticket, and no second hand-off: the conversation goes on.
#[tokio::test]
async fn a_visitors_follow_up_reopens_their_resolved_ticket() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let id = ticket_for(&visitor, "退款一直没有到账，转人工").await;
    let (_, version) = server.ticket(&id).await;
    let r = server
        .patch(&id, Some(version), json!({"status": "resolved"}))
        .await;
    assert_eq!(r.status(), 200);

    let again = visitor.say("还是没有收到，转人工").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let view = loop {
        let (view, _) = server.ticket(&id).await;
        let on_it = view["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == again.as_str());
        if on_it {
            break view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follow-up did not reach {id}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(view["ticket"]["status"], "open", "{view}");
    assert!(view["ticket"].get("closes_at").is_none(), "{view}");
    let tickets = server.tickets_of(&visitor.customer_id).await;
    assert_eq!(tickets.len(), 1, "one ticket: {tickets:?}");
    let conversation = visitor.conversation().await;
    let handoffs = conversation.iter().filter(|m| m["kind"] == "handoff");
    assert_eq!(handoffs.count(), 1, "{conversation:?}");
}

/// `GET /tickets?order=oldest` lists the customer who waited longest first and pages on in
/// that order; another order is a 400 in the error form.
#[tokio::test]
async fn the_list_pages_oldest_first_when_asked() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let mut made = Vec::new();
    for n in 0..3 {
        let visitor = server.visitor().await;
        made.push(ticket_for(&visitor, &format!("Why was I charged twice? 第{n}次")).await);
    }
    let list = |q: &str| {
        let q = q.to_string();
        let server = &server;
        async move {
            let v: Value = server
                .get(&format!("/tickets?{q}"), ADMIN)
                .await
                .json()
                .await
                .unwrap();
            v
        }
    };
    let first = list("order=oldest&limit=2").await;
    let ids: Vec<&str> = first["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [made[0].as_str(), made[1].as_str()]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = list(&format!("order=oldest&limit=2&cursor={cursor}")).await;
    assert_eq!(rest["tickets"][0]["id"], made[2].as_str());
    assert!(rest.get("next_cursor").is_none(), "{rest}");
    let newest = list("limit=1").await;
    assert_eq!(newest["tickets"][0]["id"], made[2].as_str());
    let r = server.get("/tickets?order=sideways", ADMIN).await;
    assert_eq!(error_code(r, 400).await, "bad_request");
}

/// Agents tag a ticket (any script, folded, each once), a list and the views' counts filter
/// by a tag, and a tag or a filter that is not one is refused with its reason, as is a tag on
/// a closed ticket; the ticket keeps what it had.
#[tokio::test]
async fn agents_tag_tickets_and_find_them_by_a_tag() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let first = ticket_for(
        &server.visitor().await,
        "我的订单显示已付款但商家说没收到钱",
    )
    .await;
    let second = ticket_for(
        &server.visitor().await,
        "The app crashes when I open settings",
    )
    .await;
    let (_, v) = server.ticket(&first).await;
    let r = server
        .patch(
            &first,
            Some(v),
            json!({"tags": ["退款", "#VIP", "vip", " Bug "]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["tags"], json!(["退款", "vip", "bug"]));
    let (_, v2) = server.ticket(&second).await;
    let r = server
        .patch(&second, Some(v2), json!({"tags": ["vip"]}))
        .await;
    assert_eq!(r.status(), 200);

    let listed = |query: &'static str| {
        let server = &server;
        async move {
            let r = server.get(&format!("/tickets?{query}"), ALICE).await;
            assert_eq!(r.status(), 200, "{query}");
            let v: Value = r.json().await.unwrap();
            v["tickets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("tag=vip").await, [second.clone(), first.clone()]);
    assert_eq!(
        listed("tag=%23VIP&status=active").await,
        [second.clone(), first.clone()]
    );
    assert_eq!(
        listed("tag=%E9%80%80%E6%AC%BE").await,
        vec![first.clone()],
        "退款"
    );
    assert!(listed("tag=nothing-here").await.is_empty());
    let counts: Value = server
        .get("/tickets/counts?tag=bug", ALICE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(counts["all"], 1, "{counts}");

    for bad in ["two%20words", "a.b", "%2F"] {
        let r = server.get(&format!("/tickets?tag={bad}"), ALICE).await;
        assert_eq!(error_code(r, 422).await, "invalid_tag", "{bad}");
    }
    let (_, v) = server.ticket(&first).await;
    let r = server
        .patch(&first, Some(v), json!({"tags": ["no spaces please"]}))
        .await;
    assert_eq!(error_code(r, 422).await, "invalid_tag");
    let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let r = server.patch(&first, Some(v), json!({"tags": many})).await;
    assert_eq!(error_code(r, 422).await, "too_many_tags");
    let r = server.patch(&first, Some(v), json!({"tags": "vip"})).await;
    assert_eq!(r.status(), 422, "tags is a list");
    let (kept, same) = server.ticket(&first).await;
    assert_eq!(
        (kept["ticket"]["tags"].clone(), same),
        (json!(["退款", "vip", "bug"]), v)
    );

    let r = server.patch(&first, Some(v), json!({"tags": []})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(listed("tag=vip").await, vec![second.clone()]);
    let (_, v2) = server.ticket(&second).await;
    let r = server
        .patch(
            &second,
            Some(v2),
            json!({"status": "closed", "tags": ["done"]}),
        )
        .await;
    assert_eq!(r.status(), 200, "closing may tag it once more");
    // The close sends the survey, which marks the ticket (a new version): read the version
    // after that, so the refusal below is the closed ticket's and not a stale version's.
    let mut v2 = None;
    for _ in 0..200 {
        let (view, v) = server.ticket(&second).await;
        if view["ticket"]["survey"]["sent_at"].is_string() {
            v2 = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v2 = v2.expect("the closed ticket's survey goes out");
    let r = server
        .patch(&second, Some(v2), json!({"tags": ["later"]}))
        .await;
    assert_eq!(error_code(r, 422).await, "ticket_closed");
}

/// The rules' `[tags]` tag a ticket as it opens, whether the rules send the message
/// straight to an agent or auto-reply hands it off, and the inbox finds it by that tag.
#[tokio::test]
async fn the_rules_tag_a_ticket_as_it_opens() {
    let dir = TempDir::new();
    let rules = dir.0.join("tags.toml");
    std::fs::write(
        &rules,
        "[tags]\nRefund = [\"退款\", \"money back\"]\ncrash = [\"crashes\", \"闪退\"]\n",
    )
    .unwrap();
    let server = Server::start(&dir.0, &[("HELPDESK_RULES", rules.to_str().unwrap())]).await;
    // "人工" sends it to an agent at once; the second is auto-reply's hand-off.
    let straight = ticket_for(&server.visitor().await, "我要人工，退款还没到").await;
    let handed = ticket_for(
        &server.visitor().await,
        "The app crashes when I open settings",
    )
    .await;
    let (t, _) = server.ticket(&straight).await;
    assert_eq!(t["ticket"]["tags"], json!(["refund"]));
    let (t, _) = server.ticket(&handed).await;
    assert_eq!(t["ticket"]["tags"], json!(["crash"]));
    let r = server.get("/tickets?tag=crash", ALICE).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tickets"][0]["id"], json!(handed));
    assert_eq!(v["tickets"].as_array().unwrap().len(), 1);
}

/// A report a supervisor reads.
async fn report_of(server: &Server, path: &str) -> Value {
    let r = server.get(path, BOB).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json::<Value>().await.unwrap()
}

/// A supervisor narrows each report to the tickets with one tag: satisfaction, volume and
/// SLA attainment count only those, and each says the tag it counted, as the desk folded
/// it; a tag that cannot be one is refused.
#[tokio::test]
async fn the_reports_narrow_to_a_tag() {
    let dir = TempDir::new();
    let rules = dir.0.join("sla.toml");
    std::fs::write(&rules, "[sla.normal]\nfirst_response = \"1h\"\n").unwrap();
    let server = Server::start(&dir.0, &[("HELPDESK_RULES", rules.to_str().unwrap())]).await;
    let refund = server.visitor().await;
    let other = server.visitor().await;
    let tagged = ticket_for(&refund, "我的订单显示已付款但商家说没收到钱").await;
    let untagged = ticket_for(&other, "The app crashes when I open settings").await;
    let (_, v) = server.ticket(&tagged).await;
    let r = server
        .patch(&tagged, Some(v), json!({"tags": ["退款"]}))
        .await;
    assert_eq!(r.status(), 200);
    for (id, visitor, rating) in [(&tagged, &refund, 5), (&untagged, &other, 1)] {
        let (_, v) = server.ticket(id).await;
        let r = server.patch(id, Some(v), json!({"status": "closed"})).await;
        assert_eq!(r.status(), 200);
        let link = visitor.survey_link().await;
        let r = server
            .http
            .post(&link)
            .json(&json!({ "rating": rating }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let report = |path: &'static str| report_of(&server, path);
    let all = report("/reports/csat").await;
    let refunds = report("/reports/csat?tag=%E9%80%80%E6%AC%BE").await;
    assert_eq!(
        (all["count"].clone(), refunds["count"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(refunds["average"], json!(5.0), "{refunds}");
    assert_eq!(report("/reports/volume").await["opened"], 2);
    let volume = report("/reports/volume?tag=%23%E9%80%80%E6%AC%BE").await;
    assert_eq!(
        (volume["opened"].clone(), volume["closed"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(report("/reports/volume?tag=nothing").await["opened"], 0);
    // Each report says the tag it counted, as the desk folded it (`#退款` is `退款`,
    // full-width `ＮＯＴＨＩＮＧ` is `nothing`), and none when it is not narrowed.
    assert_eq!(volume["tag"], "退款");
    assert_eq!(refunds["tag"], "退款");
    assert_eq!(all.get("tag"), None);
    for path in ["/reports/csat", "/reports/volume", "/reports/sla"] {
        let folded = report_of(
            &server,
            &format!("{path}?tag=%EF%BC%AE%EF%BC%AF%EF%BC%B4%EF%BC%A8%EF%BC%A9%EF%BC%AE%EF%BC%A7"),
        )
        .await;
        assert_eq!(folded["tag"], "nothing", "{path}");
    }
    let counted = |sla: Value| -> u64 {
        sla["priorities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["tickets"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(counted(report("/reports/sla").await), 2);
    assert_eq!(
        counted(report("/reports/sla?tag=%E9%80%80%E6%AC%BE").await),
        1
    );
    for path in ["/reports/csat", "/reports/volume", "/reports/sla"] {
        let r = server.get(&format!("{path}?tag=two%20words"), BOB).await;
        assert_eq!(error_code(r, 422).await, "invalid_tag", "{path}");
    }
}

/// A ticket's history is kept in its conversation for agents: its opening (by the
/// customer's message, or by an agent's hand) and each change (status, priority, tags,
/// assignee, escalation) is one internal entry naming who made it, written once by the
/// change feed; the customer never sees one.
#[tokio::test]
async fn a_tickets_changes_are_kept_in_its_history_for_agents_only() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let id = ticket_for(&visitor, "我的订单显示已付款但商家说没收到钱").await;
    let (_, v) = server.ticket(&id).await;
    let r = server
        .patch(
            &id,
            Some(v),
            json!({"status": "pending", "priority": "urgent", "tags": ["退款"], "assignee": "alice"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = server
        .post(
            &format!("/tickets/{id}/escalate"),
            ALICE,
            json!({"reason": "客户要求退款"}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let mut entries: Vec<Value> = Vec::new();
    for _ in 0..100 {
        let (view, _) = server.ticket(&id).await;
        entries = view["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "activity")
            .cloned()
            .collect();
        if entries.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(entries.len(), 3, "{entries:#?}");
    let (opened, change, escalation) = (&entries[0], &entries[1], &entries[2]);
    assert_eq!(opened["direction"], "internal");
    assert_eq!(
        opened["author"],
        Value::Null,
        "the customer's message opened it"
    );
    assert_eq!(
        opened["activity"],
        json!([{"what": "opened", "channel": "webchat", "by_customer": true}])
    );
    assert_eq!(change["direction"], "internal");
    assert_eq!(change["author"], "admin", "the admin token made the change");
    assert_eq!(
        change["activity"],
        json!([
            {"what": "status", "from": "open", "to": "pending"},
            {"what": "priority", "from": "normal", "to": "urgent"},
            {"what": "assigned", "to": "alice", "reason": "manual"},
            {"what": "tags", "added": ["退款"]},
        ])
    );
    assert_eq!(escalation["author"], "alice");
    assert_eq!(
        escalation["activity"],
        json!([{"what": "escalated", "reason": "客户要求退款"}])
    );
    // Never the customer's: not in the webchat conversation.
    assert!(visitor
        .conversation()
        .await
        .iter()
        .all(|m| m["kind"] != "activity" && !m["text"].as_str().unwrap_or("").contains("status")));

    // A ticket an agent makes by hand names them (once the customer's is resolved: a
    // customer has one active ticket).
    let r = server
        .patch_current(&id, json!({"status": "resolved"}))
        .await;
    assert_eq!(r.status(), 200);
    let customer = server.ticket(&id).await.0["ticket"]["customer_id"].clone();
    let r = server
        .post(
            "/tickets",
            ALICE,
            json!({"customer_id": customer, "description": "电话里说的退款问题"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    let made = made["id"].as_str().unwrap().to_string();
    let mut first = Value::Null;
    for _ in 0..100 {
        let (view, _) = server.ticket(&made).await;
        if let Some(m) = view["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["kind"] == "activity")
        {
            first = m.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first["author"], "alice", "{first:#}");
    assert_eq!(
        first["activity"],
        json!([{"what": "opened", "channel": "webchat"}])
    );
}

/// Since when the customer has waited for the agents is the desk's to say (`waiting_since`),
/// on the ticket and on each row of a list, so that no client restates the rule: from the
/// ticket's start until the first response, none once answered, from the customer's next
/// unanswered message after that, and none while pending.
#[tokio::test]
async fn the_ticket_says_since_when_the_customer_has_waited() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    let id = ticket_for(&visitor, "我的订单显示已付款但商家说没收到钱").await;
    let waiting = |view: &Value| view["ticket"]["waiting_since"].clone();
    let listed = || async {
        let r = server.get("/tickets", ALICE).await;
        let list: Value = r.json().await.unwrap();
        list["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id.as_str())
            .map(|t| t["waiting_since"].clone())
            .unwrap()
    };
    let (view, _) = server.ticket(&id).await;
    assert_eq!(waiting(&view), view["ticket"]["created_at"], "{view}");
    assert_eq!(listed().await, view["ticket"]["created_at"]);

    let r = server
        .post(
            &format!("/tickets/{id}/replies"),
            ALICE,
            json!({"text": "您好，我们正在核实。"}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let (view, _) = server.ticket(&id).await;
    assert_eq!(waiting(&view), Value::Null, "answered: {view}");
    assert_eq!(listed().await, Value::Null);

    visitor.say("还没有到账").await;
    let mut view = Value::Null;
    for _ in 0..100 {
        view = server.ticket(&id).await.0;
        if !waiting(&view).is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        waiting(&view),
        view["ticket"]["awaiting_reply_since"],
        "{view}"
    );
    assert!(!waiting(&view).is_null());

    let r = server
        .patch_current(&id, json!({"status": "pending"}))
        .await;
    assert_eq!(r.status(), 200);
    let patched: Value = r.json().await.unwrap();
    assert_eq!(patched["status"], "pending");
    assert_eq!(patched.get("waiting_since"), None, "pending: {patched}");
}

/// `include=before_ticket` answers, with the ticket, the visitor's exchange with the
/// knowledge base before the message that opened it (the console asks for it once, not at
/// each poll); without it the answer is as before, and an unknown name is a 400.
#[tokio::test]
async fn a_ticket_answers_with_the_exchange_before_it_when_asked() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    visitor.say("我忘记密码了，怎么重置？").await;
    let answer = visitor.wait_for("auto_reply").await;
    let id = ticket_for(&visitor, "还是收不到邮件，转人工").await;
    let view = |query: &'static str| {
        let (server, id) = (&server, id.clone());
        async move {
            let r = server.get(&format!("/tickets/{id}{query}"), ALICE).await;
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, asked) = view("?include=before_ticket").await;
    assert_eq!(status, 200, "{asked}");
    let before: Vec<&str> = asked["before_ticket"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        before,
        ["我忘记密码了，怎么重置？", answer["text"].as_str().unwrap()]
    );
    let (_, plain) = view("").await;
    assert_eq!(plain.get("before_ticket"), None);
    let (status, refused) = view("?include=customer_history").await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "bad_request");
}
