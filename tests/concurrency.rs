//! Agents racing over HTTP, on both wirings: the real `helpdesk serve` (SQLite), and the
//! real `tickets` Lambda binary on DynamoDB (the local emulator), several instances at
//! once, since one Lambda instance takes one event at a time.
//!
//! - Fifty `PATCH /tickets/{id}` with one `If-Match`: one 200, 49 × 409 `version_conflict`,
//!   and the ticket holds the winner's change only.
//! - Twenty agent replies with one `Idempotency-Key`: one message stored, every answer the
//!   same 202 with its id, and every outbound job names that one message (dispatch sends a
//!   message once, however often it is queued).
//! - Twenty tickets made by hand for one customer at once: one 201, 19 × 409
//!   `active_ticket_exists` naming it (a customer has one active ticket).

mod aws_harness;
mod common;

use aws_harness::{http_answer, http_event, Runtime, Stack};
use common::{Server, TempDir, ADMIN};
use helpdesk_core::aws::DynamoStore;
use helpdesk_core::domain::{Channel, ChannelIdentity};
use helpdesk_core::ports::CustomerStore;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

const PATCHES: usize = 50;
const REPLIES: usize = 20;
const CREATES: usize = 20;
/// Lambda instances of the tickets function serving one test at once.
const INSTANCES: usize = 5;

/// What fifty racing PATCHes answered: (status, error code or the assignee set).
fn tally(answers: &[(u16, Value)]) -> (Vec<&Value>, usize) {
    let winners: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    let conflicts = answers
        .iter()
        .filter(|(status, body)| *status == 409 && body["error"]["code"] == "version_conflict")
        .count();
    (winners, conflicts)
}

#[tokio::test]
async fn fifty_patches_with_one_if_match_make_one_winner_on_the_local_server() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    visitor.say("我要人工客服，订单一直没有发货").await;
    let id = visitor.wait_for("handoff").await["ticket_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, version) = server.ticket(&id).await;

    let url = server.url(&format!("/tickets/{id}"));
    let sends: Vec<_> = (0..PATCHES)
        .map(|i| {
            let req = server
                .http
                .patch(&url)
                .bearer_auth(ADMIN)
                .header("If-Match", version.to_string())
                .json(&json!({"assignee": format!("坐席{i}"), "priority": "high"}));
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for s in sends {
        answers.push(s.await.unwrap());
    }
    let (winners, conflicts) = tally(&answers);
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert_eq!(conflicts, PATCHES - 1, "{answers:?}");
    let winner = winners[0]["assignee"].as_str().unwrap().to_string();

    let (stored, now_at) = server.ticket(&id).await;
    assert_eq!(now_at, version + 1, "one change saved");
    assert_eq!(stored["ticket"]["assignee"], json!(winner));
    assert_eq!(stored["ticket"]["priority"], "high");
    server.kill().await;
}

/// Fifty PATCHes, ten to each of five instances of the tickets Lambda, all queued at once.
#[tokio::test]
async fn fifty_patches_with_one_if_match_make_one_winner_on_lambda_and_dynamodb() {
    let stack = Stack::new().await;
    let (instances, id) = ticket_on_lambda(&stack).await;
    let version = version_on_lambda(&instances[0], &id).await;

    let path = format!("/tickets/{id}");
    let version_header = version.to_string();
    let events = (0..PATCHES).map(|i| {
        http_event(
            "PATCH",
            &path,
            &[("if-match", &version_header)],
            Some(json!({"assignee": format!("坐席{i}"), "priority": "urgent"})),
            Some(("alice", "supervisor")),
        )
    });
    let answers = at_once(&instances, events).await;
    let (winners, conflicts) = tally(&answers);
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert_eq!(conflicts, PATCHES - 1, "{answers:?}");
    let winner = winners[0]["assignee"].as_str().unwrap().to_string();

    let (status, stored) = http_answer(
        &instances[0]
            .call(http_event(
                "GET",
                &path,
                &[],
                None,
                Some(("alice", "supervisor")),
            ))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200);
    assert_eq!(stored["ticket"]["assignee"], json!(winner));
    assert_eq!(stored["ticket"]["priority"], "urgent");
    assert_eq!(version_on_lambda(&instances[0], &id).await, version + 1);
    stop(instances).await;
}

/// Twenty retries of one agent reply with one `Idempotency-Key`, four to each of five
/// instances of the tickets Lambda, all queued at once.
#[tokio::test]
async fn twenty_replies_with_one_idempotency_key_queue_one_message_on_lambda_and_dynamodb() {
    let stack = Stack::new().await;
    let (instances, id) = ticket_on_lambda(&stack).await;
    let path = format!("/tickets/{id}/replies");
    let events = (0..REPLIES).map(|_| {
        http_event(
            "POST",
            &path,
            &[("idempotency-key", "reply-7f3a")],
            Some(json!({"text": "已为您办理退款，请留意账户"})),
            Some(("alice", "supervisor")),
        )
    });
    let mut ids = BTreeSet::new();
    for (status, body) in at_once(&instances, events).await {
        assert_eq!(status, 202, "{body}");
        ids.insert(body["message_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one message for one key: {ids:?}");
    let message_id = ids.into_iter().next().unwrap();

    let (status, body) = http_answer(
        &instances[0]
            .call(http_event(
                "GET",
                &format!("/tickets/{id}"),
                &[],
                None,
                Some(("alice", "supervisor")),
            ))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let replies: Vec<&Value> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "agent_reply")
        .collect();
    assert_eq!(replies.len(), 1, "{body}");
    assert_eq!(replies[0]["id"], json!(message_id));

    // The outbound queue may hold the job more than once (a standard queue, and each
    // retry queues it again); every job names the one message.
    let jobs = stack.drain("OUTBOUND_QUEUE_URL").await;
    let named: BTreeSet<String> = jobs["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            body["message_id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(named, BTreeSet::from([message_id]), "{jobs}");
    stop(instances).await;
}

/// Twenty tickets made by hand for one customer, four to each of five instances of the
/// tickets Lambda, all queued at once: the customer's marker, written in one transaction
/// with the ticket, lets one through.
#[tokio::test]
async fn twenty_tickets_by_hand_for_one_customer_make_one_on_lambda_and_dynamodb() {
    let stack = Stack::new().await;
    let customer = customer_on_dynamodb(&stack).await;
    let instances = tickets_instances(&stack).await;
    let events = (0..CREATES).map(|i| {
        http_event(
            "POST",
            "/tickets",
            &[],
            Some(json!({"customer_id": customer, "description": format!("来电 {i}：退款没到账")})),
            Some(("alice", "supervisor")),
        )
    });
    let answers = at_once(&instances, events).await;
    let made: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(made.len(), 1, "{answers:?}");
    let id = made[0]["id"].as_str().unwrap();
    for (status, body) in answers.iter().filter(|(status, _)| *status != 201) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["error"]["code"], "active_ticket_exists", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(id),
            "names the ticket: {body}"
        );
    }
    let (status, list) = http_answer(
        &instances[0]
            .call(http_event(
                "GET",
                &format!("/tickets?customer_id={customer}"),
                &[],
                None,
                Some(("alice", "supervisor")),
            ))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1, "{list}");
    stop(instances).await;
}

/// A new customer, as a Telegram message makes one.
async fn customer_on_dynamodb(stack: &Stack) -> String {
    let store = DynamoStore::new(&stack.config, stack.tables.clone());
    store
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Telegram,
                external_id: format!("tg-{}", helpdesk_core::domain::new_id()),
            },
            Some("王芳"),
            Some("zh"),
        )
        .await
        .unwrap()
        .id
}

async fn tickets_instances(stack: &Stack) -> Vec<Arc<Runtime>> {
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        instances.push(Arc::new(Runtime::start("tickets", &stack.env).await));
    }
    instances
}

/// Five instances of the tickets function, and a ticket made by hand for a new customer.
async fn ticket_on_lambda(stack: &Stack) -> (Vec<Arc<Runtime>>, String) {
    let customer = customer_on_dynamodb(stack).await;
    let instances = tickets_instances(stack).await;
    let (status, created) = http_answer(
        &instances[0]
            .call(http_event(
                "POST",
                "/tickets",
                &[],
                Some(json!({"customer_id": customer, "description": "退款一直没有到账"})),
                Some(("alice", "supervisor")),
            ))
            .await
            .unwrap(),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    (instances, id)
}

async fn version_on_lambda(tickets: &Runtime, id: &str) -> u64 {
    let answer = tickets
        .call(http_event(
            "GET",
            &format!("/tickets/{id}"),
            &[],
            None,
            Some(("alice", "supervisor")),
        ))
        .await
        .unwrap();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    answer["headers"]["etag"]
        .as_str()
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap()
}

/// Queues every event at once, each on its own task, spread over the instances in turn;
/// their answers (status, body) in the events' order.
async fn at_once(
    instances: &[Arc<Runtime>],
    events: impl Iterator<Item = Value>,
) -> Vec<(u16, Value)> {
    let calls: Vec<_> = events
        .enumerate()
        .map(|(i, event)| {
            let instance = instances[i % instances.len()].clone();
            tokio::spawn(
                async move { http_answer(&instance.call(event).await.expect("an answer")) },
            )
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    answers
}

async fn stop(instances: Vec<Arc<Runtime>>) {
    for r in instances {
        if let Ok(r) = Arc::try_unwrap(r) {
            r.stop().await;
        }
    }
}
