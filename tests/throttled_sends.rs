//! A provider's 429 with a long `retry_after` is not waited out inside dispatch: the job goes
//! back to the queue for that long, so dispatch stays within its function's timeout and
//! delivers everyone else's messages meanwhile. The real program, a fake Bot API.

mod common;

use common::provider::{FakeProvider, Plan};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TG_SECRET: &str = "tg-secret-token";
const BOT: &str = "123456:test-bot-token";

#[tokio::test]
async fn a_long_retry_after_requeues_the_send_and_others_go_meanwhile() {
    let dir = TempDir::new();
    let fake = FakeProvider::start().await;
    let server = Server::start(
        &dir.0,
        &[
            ("TELEGRAM_SECRET_TOKEN", TG_SECRET),
            ("TELEGRAM_BOT_TOKEN", BOT),
            ("TELEGRAM_API_BASE", &fake.base),
        ],
    )
    .await;
    let r = server
        .http
        .post(server.url("/webhooks/telegram"))
        .header("X-Telegram-Bot-Api-Secret-Token", TG_SECRET)
        .json(
            &json!({"update_id": 1, "message": {"message_id": 1, "date": 1,
            "chat": {"id": 4242, "type": "private"},
            "from": {"id": 4242, "is_bot": false, "first_name": "李"},
            "text": "转人工，快递丢了"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    fake.wait_for("/sendMessage", 1).await;
    let tickets: Value = server
        .get("/tickets?channel=telegram", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    let telegram_ticket = tickets["tickets"][0]["id"].as_str().unwrap().to_string();
    let visitor = server.visitor().await;
    visitor.say("转人工：发票开错了").await;
    visitor.wait_for("handoff").await;
    let webchat_ticket = server.tickets_of(&visitor.customer_id).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Telegram asks for 7 s, more than dispatch waits in place.
    fake.plan([Plan::Fail(
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7",
               "parameters": {"retry_after": 7}}),
    )]);
    let start = Instant::now();
    let r = server
        .post(
            &format!("/tickets/{telegram_ticket}/replies"),
            ADMIN,
            json!({"text": "我们正在查快递"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    // The throttled send is back in the queue, not holding dispatch: the visitor's reply,
    // sent after it, arrives long before Telegram's wait is over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = server
        .post(
            &format!("/tickets/{webchat_ticket}/replies"),
            ADMIN,
            json!({"text": "发票马上重开"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    visitor.wait_for("agent_reply").await;
    println!(
        "the webchat reply arrived {:?} after the throttled send",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "the webchat reply waited {:?} behind the throttled send",
        start.elapsed()
    );
    let (view, _) = server.ticket(&telegram_ticket).await;
    let waiting = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == "我们正在查快递")
        .unwrap()
        .clone();
    assert_eq!(waiting["status"], "queued", "{waiting}");

    // It goes out once Telegram's 7 s are over, and only then.
    let sent = fake.wait_for("/sendMessage", 2).await;
    let elapsed = start.elapsed();
    println!("the throttled send went out {elapsed:?} after it was queued");
    assert_eq!(sent[1].body["text"], "我们正在查快递");
    assert!(
        elapsed >= Duration::from_millis(6_500),
        "sent again after {elapsed:?}, before the 7 s Telegram asked for"
    );
}
