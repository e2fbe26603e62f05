//! A customer merge over HTTP on the real `helpdesk serve`: two webchat visitors turn out to
//! be one person, each with an active ticket. After `POST /customers/{id}/merge` the
//! customer that stays has one active ticket: the other's is folded into it (its messages
//! moved, itself closed with `merged_into`, and no survey sent for it; its customer's wait
//! for a reply goes with them), and what the merged visitor writes next joins the kept
//! ticket.

mod common;

use common::{Server, TempDir, ADMIN, BOB, PATIENCE};
use serde_json::{json, Value};
use std::time::Duration;

async fn ticket_for(visitor: &common::Visitor<'_>, text: &str) -> String {
    visitor.say(text).await;
    visitor.wait_for("handoff").await["ticket_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A ticket's messages, as the agent API shows them.
async fn messages_on(server: &Server, id: &str) -> Vec<Value> {
    let (view, _) = server.ticket(id).await;
    view["messages"].as_array().cloned().unwrap_or_default()
}

/// The texts of a ticket's messages.
async fn texts_on(server: &Server, id: &str) -> Vec<String> {
    messages_on(server, id)
        .await
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_string))
        .collect()
}

/// What the entries of a ticket's history say, in order (each entry's `activity`, flattened).
async fn history_of(server: &Server, id: &str) -> Vec<Value> {
    messages_on(server, id)
        .await
        .iter()
        .filter(|m| m["kind"] == "activity")
        .flat_map(|m| m["activity"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_merge_folds_the_other_active_ticket_into_the_kept_one_over_http() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let stays = server.visitor().await;
    let goes = server.visitor().await;
    let kept = ticket_for(&stays, "我要人工客服，订单没有发货").await;
    let folded = ticket_for(&goes, "我要人工客服，退款没有到账").await;
    // The kept ticket was answered; the folded one's customer still waits.
    let r = server
        .post(
            &format!("/tickets/{kept}/replies"),
            BOB,
            json!({"text": "已经安排发货"}),
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let (view, version) = server.ticket(&folded).await;
    let folded_at = view["ticket"]["created_at"].clone();
    // Both are tagged: the folded one's tags come along, after the kept one's own.
    let r = server
        .patch(&folded, Some(version), json!({"tags": ["退款", "vip"]}))
        .await;
    assert_eq!(r.status(), 200);
    let (_, version) = server.ticket(&kept).await;
    let r = server
        .patch(&kept, Some(version), json!({"tags": ["发货", "vip"]}))
        .await;
    assert_eq!(r.status(), 200);
    // The folded ticket's history says it was tagged (the change feed writes it).
    let tagged = json!({"what": "tags", "added": ["退款", "vip"]});
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !history_of(&server, &folded).await.contains(&tagged) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the folded ticket's tags never reached its history"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (view, _) = server.ticket(&kept).await;
    assert!(
        view["ticket"].get("awaiting_reply_since").is_none(),
        "{view}"
    );

    let r = server
        .post(
            &format!("/customers/{}/merge", stays.customer_id),
            BOB,
            json!({"from": goes.customer_id}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let (view, _) = server.ticket(&folded).await;
    let t = &view["ticket"];
    assert_eq!(t["status"], "closed", "{view}");
    assert_eq!(t["merged_into"], json!(kept));
    assert_eq!(t["customer_id"], json!(stays.customer_id));
    let on_kept = texts_on(&server, &kept).await;
    assert!(
        on_kept.iter().any(|t| t == "我要人工客服，退款没有到账"),
        "the folded ticket's messages are on the kept one: {on_kept:?}"
    );
    let active: Vec<Value> = server
        .tickets_of(&stays.customer_id)
        .await
        .into_iter()
        .filter(|t| ["open", "pending", "escalated"].contains(&t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0]["id"], json!(kept));
    // The folded customer's question came unanswered: the kept ticket owes its reply, from
    // when they first asked.
    let (view, _) = server.ticket(&kept).await;
    assert_eq!(view["ticket"]["awaiting_reply_since"], folded_at, "{view}");
    // Its history stayed with it: the kept ticket was never tagged so by an agent.
    assert!(history_of(&server, &folded).await.contains(&tagged));
    assert!(
        !history_of(&server, &kept).await.contains(&tagged),
        "{:?}",
        history_of(&server, &kept).await
    );
    assert_eq!(
        view["ticket"]["tags"],
        json!(["发货", "vip", "退款"]),
        "{view}"
    );
    let r = server
        .get(&format!("/customers/{}", goes.customer_id), ADMIN)
        .await;
    assert_eq!(r.status(), 404);

    // The merged visitor writes again: the message joins the kept ticket.
    goes.say("还有一个问题：发票怎么开").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !texts_on(&server, &kept)
        .await
        .iter()
        .any(|t| t == "还有一个问题：发票怎么开")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follow-up never joined the kept ticket"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Closing the kept ticket sends its survey; the folded one never had one.
    let (_, version) = server.ticket(&kept).await;
    let r = server
        .patch(&kept, Some(version), json!({"status": "closed"}))
        .await;
    assert_eq!(r.status(), 200);
    let surveys = stays.wait_for_count("survey", 1).await;
    assert!(surveys
        .iter()
        .all(|m| m["ticket_id"] == json!(kept) || m["ticket_id"].is_null()));
    let all: Vec<Value> = goes
        .conversation()
        .await
        .into_iter()
        .filter(|m| m["kind"] == "survey")
        .collect();
    assert_eq!(all.len(), 1, "one survey, for the kept ticket: {all:?}");
    server.kill().await;
}
