//! WhatsApp and Telegram, both directions, against the real program and a fake provider:
//! signed webhooks in (real payloads from `tests/fixtures/`, and payloads built here for
//! the other types), requests out, failures of every kind, surveys in the channel.

mod common;

use common::provider::{FakeProvider, Plan};
use common::*;
use hmac::{Hmac, Mac};
use reqwest::Response;
use serde_json::{json, Value};
use sha2::Sha256;
use std::future::Future;
use std::time::Duration;

const APP_SECRET: &str = "wa-app-secret";
const VERIFY: &str = "wa-verify-token";
const WA_TOKEN: &str = "wa-access-token";
const PHONE_ID: &str = "1122334455667";
const TG_SECRET: &str = "tg-secret-token";
const BOT: &str = "123456:test-bot-token";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn start(dir: &TempDir, fake: &FakeProvider, extra: &[(&str, &str)]) -> Server {
    let wa_base = format!("{}/v21.0", fake.base);
    let mut env = vec![
        ("WHATSAPP_APP_SECRET", APP_SECRET),
        ("WHATSAPP_VERIFY_TOKEN", VERIFY),
        ("WHATSAPP_ACCESS_TOKEN", WA_TOKEN),
        ("WHATSAPP_PHONE_NUMBER_ID", PHONE_ID),
        ("WHATSAPP_API_BASE", &wa_base),
        ("WHATSAPP_TEMPLATE_NAME", "support_reply"),
        ("TELEGRAM_SECRET_TOKEN", TG_SECRET),
        ("TELEGRAM_BOT_TOKEN", BOT),
        ("TELEGRAM_API_BASE", &fake.base),
        ("HELPDESK_SEND_TIMEOUT_MS", "500"),
    ];
    env.extend_from_slice(extra);
    Server::start(&dir.0, &env).await
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn whatsapp(server: &Server, body: &[u8], signature: Option<String>) -> Response {
    let mut req = server
        .http
        .post(server.url("/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("X-Hub-Signature-256", sig);
    }
    req.send().await.unwrap()
}

async fn whatsapp_signed(server: &Server, body: &Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let r = whatsapp(server, &bytes, Some(sign(APP_SECRET, &bytes))).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn telegram(server: &Server, body: &[u8], secret: Option<&str>) -> Response {
    let mut req = server
        .http
        .post(server.url("/webhooks/telegram"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = secret {
        req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
    }
    req.send().await.unwrap()
}

async fn telegram_ok(server: &Server, body: &Value) {
    let r = telegram(server, &serde_json::to_vec(body).unwrap(), Some(TG_SECRET)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn tickets_on(server: &Server, channel: &str) -> Vec<Value> {
    let v: Value = server
        .get(&format!("/tickets?channel={channel}"), ADMIN)
        .await
        .json()
        .await
        .unwrap();
    v["tickets"].as_array().unwrap().clone()
}

/// Polls the ticket's conversation until `done` holds for it.
/// The ticket's conversation with the customer once `done` holds: its messages without the
/// ticket's history (its `activity` entries, which the change feed writes beside them).
async fn wait_messages(
    server: &Server,
    ticket: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    eventually(|| async {
        let (v, _) = server.ticket(ticket).await;
        let messages: Vec<Value> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] != "activity")
            .cloned()
            .collect();
        done(&messages).then_some(messages)
    })
    .await
}

async fn eventually<T, F, Fut>(f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn kinds(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect()
}

fn notification(messages: Value, statuses: Value) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550000000", "phone_number_id": PHONE_ID},
                  "contacts": [{"profile": {"name": "王芳"}, "wa_id": "972987654321"}],
                  "messages": messages, "statuses": statuses}}]}]})
}

#[tokio::test]
async fn whatsapp_in_and_out() {
    let dir = TempDir::new();
    let fake = FakeProvider::start().await;
    let server = start(&dir, &fake, &[]).await;
    let http = &server.http;

    // Meta's handshake.
    let hook = server.url("/webhooks/whatsapp");
    let r = http
        .get(format!(
            "{hook}?hub.mode=subscribe&hub.verify_token={VERIFY}&hub.challenge=1158201444"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1158201444");
    let r = http
        .get(format!(
            "{hook}?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 403).await, "forbidden");

    // A wrong or missing signature stores nothing.
    let text = fixture("whatsapp/text_message.json");
    let r = whatsapp(&server, &text, None).await;
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let r = whatsapp(&server, &text, Some(sign("not-the-secret", &text))).await;
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let mut tampered = text.clone();
    tampered.extend_from_slice(b" ");
    let r = whatsapp(&server, &tampered, Some(sign(APP_SECRET, &text))).await;
    assert_eq!(error_code(r, 401).await, "unauthorized");
    assert!(tickets_on(&server, "whatsapp").await.is_empty());

    // The same delivery three times: one ticket, one reply, as a Cloud API request.
    for _ in 0..3 {
        let r = whatsapp(&server, &text, Some(sign(APP_SECRET, &text))).await;
        assert_eq!(r.status(), 200);
    }
    let sent = fake.wait_for("/messages", 1).await;
    let reply = &sent[0];
    assert_eq!(reply.path, format!("/v21.0/{PHONE_ID}/messages"));
    assert_eq!(reply.auth.as_deref(), Some(&*format!("Bearer {WA_TOKEN}")));
    assert_eq!(reply.body["messaging_product"], "whatsapp");
    assert_eq!(reply.body["to"], "972987654321");
    assert_eq!(reply.body["type"], "text");
    assert!(!reply.body["text"]["body"].as_str().unwrap().is_empty());
    let tickets = tickets_on(&server, "whatsapp").await;
    assert_eq!(tickets.len(), 1);
    let ticket = tickets[0]["id"].as_str().unwrap().to_string();
    let messages = wait_messages(&server, &ticket, |m| m.len() >= 2).await;
    assert_eq!(messages[0]["text"], "Body Text");
    assert_eq!(messages[0]["provider_message_id"], "wamid.xyzxyz");

    // Receipts land on the reply, and only move forward; unknown ones are fine.
    whatsapp_signed(
        &server,
        &notification(json!([]), json!([{"id": "wamid.out.1", "status": "read"}])),
    )
    .await;
    whatsapp_signed(
        &server,
        &notification(
            json!([]),
            json!([{"id": "wamid.out.1", "status": "delivered"}]),
        ),
    )
    .await;
    let status_fixture = fixture("whatsapp/status_sent.json");
    let r = whatsapp(
        &server,
        &status_fixture,
        Some(sign(APP_SECRET, &status_fixture)),
    )
    .await;
    assert_eq!(r.status(), 200);
    let (v, _) = server.ticket(&ticket).await;
    let handoff = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "handoff")
        .unwrap()
        .clone();
    assert_eq!(handoff["status"], "read");
    assert_eq!(handoff["provider_message_id"], "wamid.out.1");

    // Every other type, several in one notification, all on the customer's ticket.
    let m = |id: &str, kind: &str, body: Value| {
        let mut v =
            json!({"from": "972987654321", "id": id, "timestamp": "1697043223", "type": kind});
        v[kind] = body;
        v
    };
    whatsapp_signed(
        &server,
        &notification(
            json!([
                m(
                    "wamid.img",
                    "image",
                    json!({"id": "media-1", "mime_type": "image/jpeg", "caption": "屏幕坏了"})
                ),
                m(
                    "wamid.aud",
                    "audio",
                    json!({"id": "media-2", "voice": true})
                ),
                m("wamid.vid", "video", json!({"id": "media-3"})),
                m(
                    "wamid.doc",
                    "document",
                    json!({"id": "media-4", "filename": "发票.pdf"})
                ),
                m("wamid.stk", "sticker", json!({"id": "media-5"})),
                m(
                    "wamid.loc",
                    "location",
                    json!({"latitude": 31.23, "longitude": 121.47, "name": "外滩"})
                ),
                m(
                    "wamid.con",
                    "contacts",
                    json!([{"name": {"formatted_name": "张伟"}, "phones": [{"phone": "+86 138"}]}])
                ),
                m(
                    "wamid.int",
                    "interactive",
                    json!({"type": "button_reply", "button_reply": {"id": "yes", "title": "是的"}})
                ),
                m(
                    "wamid.lst",
                    "interactive",
                    json!({"type": "list_reply", "list_reply": {"id": "l1", "title": "退款"}})
                ),
                m(
                    "wamid.btn",
                    "button",
                    json!({"payload": "talk", "text": "联系客服"})
                ),
                m("wamid.new", "order", json!({"catalog_id": "c"})),
            ]),
            json!([]),
        ),
    )
    .await;
    let messages = wait_messages(&server, &ticket, |m| m.len() >= 13).await;
    let got = kinds(&messages[2..]);
    assert_eq!(
        got,
        [
            "media",
            "media",
            "media",
            "media",
            "media",
            "media",
            "media",
            "button",
            "button",
            "button",
            "unsupported"
        ]
    );
    assert_eq!(messages[2]["text"], "屏幕坏了");
    assert_eq!(messages[2]["attachment"]["media_id"], "media-1");
    assert_eq!(messages[3]["attachment"]["kind"], "voice");
    assert!(messages[7]["text"].as_str().unwrap().contains("外滩"));
    assert_eq!(tickets_on(&server, "whatsapp").await.len(), 1);

    // A permanent refusal: failed, with WhatsApp's reason, on the ticket.
    fake.plan([Plan::Fail(
        400,
        json!({"error": {"message": "(#131026) Message undeliverable", "code": 131026}}),
    )]);
    let r = server
        .post(
            &format!("/tickets/{ticket}/replies"),
            ADMIN,
            json!({"text": "您好"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let messages = wait_messages(&server, &ticket, |m| {
        m.iter().any(|x| x["status"] == "failed")
    })
    .await;
    let failed = messages.iter().find(|x| x["status"] == "failed").unwrap();
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("Message undeliverable"),
        "{failed}"
    );

    // A Telegram user turns out to be the same person: merge, nothing lost.
    telegram_ok(
        &server,
        &serde_json::from_slice(&fixture("telegram/text_message.json")).unwrap(),
    )
    .await;
    let tg_ticket = eventually(|| async { tickets_on(&server, "telegram").await.pop() }).await;
    let wa_customer = tickets[0]["customer_id"].as_str().unwrap();
    let tg_customer = tg_ticket["customer_id"].as_str().unwrap();
    let path = format!("/customers/{wa_customer}/merge");
    let r = server
        .post(&path, ALICE, json!({"from": tg_customer}))
        .await;
    assert_eq!(error_code(r, 403).await, "forbidden");
    let r = server.post(&path, BOB, json!({"from": tg_customer})).await;
    assert_eq!(r.status(), 200);
    let merged: Value = r.json().await.unwrap();
    assert_eq!(merged["identities"].as_array().unwrap().len(), 2);
    assert_eq!(server.tickets_of(wa_customer).await.len(), 2);
    let r = server
        .get(&format!("/customers/{tg_customer}"), ADMIN)
        .await;
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = server.post(&path, BOB, json!({"from": tg_customer})).await;
    assert_eq!(error_code(r, 404).await, "not_found");
}

#[tokio::test]
async fn telegram_in_and_out() {
    let dir = TempDir::new();
    let fake = FakeProvider::start().await;
    let server = start(&dir, &fake, &[]).await;
    let update = fixture("telegram/text_message.json");

    // A wrong or missing secret stores nothing.
    assert_eq!(
        error_code(telegram(&server, &update, None).await, 401).await,
        "unauthorized"
    );
    assert_eq!(
        error_code(telegram(&server, &update, Some("guess")).await, 401).await,
        "unauthorized"
    );
    assert!(tickets_on(&server, "telegram").await.is_empty());

    // Three deliveries of one update: one ticket, one sendMessage.
    for _ in 0..3 {
        assert_eq!(
            telegram(&server, &update, Some(TG_SECRET)).await.status(),
            200
        );
    }
    let sent = fake.wait_for("/sendMessage", 1).await;
    assert_eq!(sent[0].path, format!("/bot{BOT}/sendMessage"));
    assert_eq!(sent[0].body["chat_id"], 408258968);
    assert!(!sent[0].body["text"].as_str().unwrap().is_empty());
    let tickets = tickets_on(&server, "telegram").await;
    assert_eq!(tickets.len(), 1);
    let ticket = tickets[0]["id"].as_str().unwrap().to_string();

    // An edit is recorded against the original; a photo joins the ticket.
    let chat = json!({"id": 408258968, "type": "private", "first_name": "Hirrolot"});
    let from = json!({"id": 408258968, "is_bot": false, "first_name": "Hirrolot", "language_code": "zh-hans"});
    telegram_ok(&server, &json!({"update_id": 306197399, "edited_message": {
        "message_id": 154, "date": 1581448857, "edit_date": 1581448900, "chat": chat, "from": from, "text": "4（改）"}})).await;
    telegram_ok(&server, &json!({"update_id": 306197400, "message": {
        "message_id": 155, "date": 1581448901, "chat": chat, "from": from,
        "photo": [{"file_id": "small", "width": 90}, {"file_id": "large", "width": 800}], "caption": "截图"}})).await;
    telegram_ok(
        &server,
        &json!({"update_id": 306197401, "message": {
        "message_id": 156, "date": 1581448902, "chat": chat, "dice": {"emoji": "🎲", "value": 3}}}),
    )
    .await;
    let messages = wait_messages(&server, &ticket, |m| m.len() >= 5).await;
    assert_eq!(
        kinds(&messages),
        ["text", "handoff", "edit", "media", "unsupported"]
    );
    assert_eq!(messages[2]["edit_of"], messages[0]["id"]);
    assert_eq!(messages[2]["text"], "4（改）");
    assert_eq!(messages[3]["attachment"]["media_id"], "large");
    assert_eq!(tickets_on(&server, "telegram").await.len(), 1);

    // 429 with retry_after, then 500: the reply still arrives once.
    fake.plan([
        Plan::Fail(429, json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}})),
        Plan::Fail(500, json!({"ok": false, "error_code": 500, "description": "Internal Server Error"})),
    ]);
    let r = server
        .post(
            &format!("/tickets/{ticket}/replies"),
            ADMIN,
            json!({"text": "您好，我们正在处理"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let sent = fake.wait_for("/sendMessage", 2).await;
    assert_eq!(sent[1].body["text"], "您好，我们正在处理");
    wait_messages(&server, &ticket, |m| {
        m.iter()
            .any(|x| x["kind"] == "agent_reply" && x["status"] == "sent")
    })
    .await;

    // No answer at all: Telegram may have taken it, so it is not sent again; the agent
    // sees it failed, with why.
    fake.plan([Plan::Hang(Duration::from_secs(2))]);
    let r = server
        .post(
            &format!("/tickets/{ticket}/replies"),
            ADMIN,
            json!({"text": "请稍等"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let messages = wait_messages(&server, &ticket, |m| {
        m.iter()
            .any(|x| x["text"] == "请稍等" && x["status"] == "failed")
    })
    .await;
    let unknown = messages.iter().find(|x| x["text"] == "请稍等").unwrap();
    assert!(
        unknown["error"]
            .as_str()
            .unwrap()
            .contains("may have taken it"),
        "{unknown}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.sent().len(), 2, "an unanswered send is not repeated");

    // Closing sends the survey as an inline keyboard; a button press records the rating.
    let (_, version) = server.ticket(&ticket).await;
    let r = server
        .patch(&ticket, Some(version), json!({"status": "closed"}))
        .await;
    assert_eq!(r.status(), 200);
    let sent = fake.wait_for("/sendMessage", 3).await;
    let keyboard = &sent[2].body["reply_markup"]["inline_keyboard"];
    let buttons: Vec<&Value> = keyboard
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .collect();
    assert_eq!(buttons.len(), 5);
    let press = |n: usize, update_id: u64| {
        json!({"update_id": update_id, "callback_query": {"id": format!("cq-{update_id}"), "from": from, "chat_instance": "1",
            "message": {"message_id": 200, "date": 1, "chat": chat},
            "data": buttons[n - 1]["callback_data"]}})
    };
    telegram_ok(&server, &press(4, 306197402)).await;
    let answered = fake.wait_for("/answerCallbackQuery", 1).await;
    assert_eq!(answered[0].body["callback_query_id"], "cq-306197402");
    let rating = eventually(|| async {
        let (v, _) = server.ticket(&ticket).await;
        v["ticket"]["survey"]["rating"].as_u64()
    })
    .await;
    assert_eq!(rating, 4);
    // A second answer changes nothing.
    telegram_ok(&server, &press(1, 306197403)).await;
    fake.wait_for("/answerCallbackQuery", 2).await;
    let (v, _) = server.ticket(&ticket).await;
    assert_eq!(v["ticket"]["survey"]["rating"], 4);
    assert_eq!(tickets_on(&server, "telegram").await.len(), 1);
}

#[tokio::test]
async fn a_burst_to_one_telegram_chat_is_paced_without_429s() {
    let dir = TempDir::new();
    let fake = FakeProvider::start().await;
    // 20/s instead of Telegram's 1/s keeps the test short; the fake refuses anything faster
    // than 4/5 of the interval, as Telegram would with a 429.
    let server = start(&dir, &fake, &[("TELEGRAM_RATE_PER_CHAT", "20")]).await;
    fake.enforce_per_chat_interval(Duration::from_millis(40));
    telegram_ok(
        &server,
        &serde_json::from_slice(&fixture("telegram/text_message.json")).unwrap(),
    )
    .await;
    fake.wait_for("/sendMessage", 1).await;
    let ticket = tickets_on(&server, "telegram").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..30 {
        let r = server
            .post(
                &format!("/tickets/{ticket}/replies"),
                ADMIN,
                json!({"text": format!("第 {i} 条")}),
            )
            .await;
        assert_eq!(r.status(), 202);
    }
    let sent = fake.wait_for("/sendMessage", 31).await;
    assert_eq!(
        fake.throttled(),
        0,
        "the desk sent faster than the chat allows"
    );
    assert_eq!(sent[30].body["text"], "第 29 条");
}

#[tokio::test]
async fn a_channel_without_secrets_is_off_and_says_so() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let r = server
        .http
        .post(server.url("/webhooks/whatsapp"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 503).await, "channel_disabled");
    let r = server
        .http
        .get(server.url("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 503).await, "channel_disabled");
    let r = telegram(&server, b"{}", Some("x")).await;
    assert_eq!(error_code(r, 503).await, "channel_disabled");
}

#[tokio::test]
async fn a_notification_for_another_phone_number_stores_nothing() {
    let dir = TempDir::new();
    let fake = FakeProvider::start().await;
    let server = start(&dir, &fake, &[]).await;

    // Signed by the same Meta app, for another of its numbers: 200, so Meta does not retry,
    // and nothing taken in.
    let other = fixture("whatsapp/other_number.json");
    let r = whatsapp(&server, &other, Some(sign(APP_SECRET, &other))).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Intake queues what it takes before answering, so the other number's notification
    // has been fully handled by now; ours, sent after it, is the only one taken in.
    let ours = fixture("whatsapp/text_message.json");
    let r = whatsapp(&server, &ours, Some(sign(APP_SECRET, &ours))).await;
    assert_eq!(r.status(), 200);
    let sent = fake.wait_for("/messages", 1).await;
    let tickets = eventually(|| async {
        let t = tickets_on(&server, "whatsapp").await;
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0]["description"], "Body Text");
    assert!(sent.iter().all(|s| s.body["to"] == "972987654321"));
}

/// Receipts are about what the desk sent. The fixtures' customer message and receipt carry
/// one id (`wamid.xyzxyz`): the receipt must leave the customer's message as it came.
#[tokio::test]
async fn a_receipt_never_lands_on_the_customers_message() {
    let dir = TempDir::new();
    let fake = FakeProvider::start().await;
    let server = start(&dir, &fake, &[]).await;
    let text = fixture("whatsapp/text_message.json");
    let r = whatsapp(&server, &text, Some(sign(APP_SECRET, &text))).await;
    assert_eq!(r.status(), 200);
    fake.wait_for("/messages", 1).await;
    let tickets = eventually(|| async {
        let t = tickets_on(&server, "whatsapp").await;
        (!t.is_empty()).then_some(t)
    })
    .await;
    let ticket = tickets[0]["id"].as_str().unwrap().to_string();
    // The customer's message and the desk's answer, sent.
    wait_messages(&server, &ticket, |m| {
        m.iter()
            .any(|m| m["direction"] == "outbound" && m["status"] == "sent")
    })
    .await;

    let receipt = fixture("whatsapp/status_sent.json");
    let r = whatsapp(&server, &receipt, Some(sign(APP_SECRET, &receipt))).await;
    assert_eq!(r.status(), 200);
    whatsapp_signed(
        &server,
        &notification(
            json!([]),
            json!([{"id": "wamid.xyzxyz", "status": "failed",
            "errors": [{"code": 131047, "title": "Re-engagement message"}]}]),
        ),
    )
    .await;
    let (v, _) = server.ticket(&ticket).await;
    let messages = v["messages"].as_array().unwrap();
    let customers = messages
        .iter()
        .find(|m| m["provider_message_id"] == "wamid.xyzxyz")
        .unwrap();
    assert_eq!(customers["direction"], "inbound");
    assert!(customers["status"].is_null(), "{customers}");
    assert!(customers["error"].is_null(), "{customers}");
    // The desk's own answer is untouched by a receipt about another message.
    let answer = messages
        .iter()
        .find(|m| m["direction"] == "outbound")
        .unwrap();
    assert_eq!(answer["status"], "sent", "{answer}");
}

#[tokio::test]
async fn customers_words_never_reach_the_log() {
    let dir = TempDir::new();
    let fake = FakeProvider::start().await;
    let wa_base = format!("{}/v21.0", fake.base);
    let (server, log) = Server::start_logged(
        &dir.0,
        &[
            ("WHATSAPP_APP_SECRET", APP_SECRET),
            ("WHATSAPP_VERIFY_TOKEN", VERIFY),
            ("WHATSAPP_ACCESS_TOKEN", WA_TOKEN),
            ("WHATSAPP_PHONE_NUMBER_ID", PHONE_ID),
            ("WHATSAPP_API_BASE", &wa_base),
            ("TELEGRAM_SECRET_TOKEN", TG_SECRET),
            ("TELEGRAM_BOT_TOKEN", BOT),
            ("TELEGRAM_API_BASE", &fake.base),
            ("HELPDESK_LOG", "debug"),
        ],
    )
    .await;
    // A Telegram update with nothing for the desk: a member change naming a person.
    telegram_ok(
        &server,
        &json!({"update_id": 90001, "my_chat_member": {
            "chat": {"id": 5, "type": "private", "first_name": "王秘密"},
            "from": {"id": 5, "is_bot": false, "first_name": "王秘密", "phone_number": "13800138000"},
            "date": 1764400000,
            "old_chat_member": {"status": "member", "user": {"id": 7, "is_bot": true, "first_name": "bot"}},
            "new_chat_member": {"status": "kicked", "user": {"id": 7, "is_bot": true, "first_name": "bot"}}
        }}),
    )
    .await;
    // A WhatsApp message without a sender: skipped, with the customer's words in it.
    whatsapp_signed(
        &server,
        &json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550000000", "phone_number_id": PHONE_ID},
                "messages": [{"id": "wamid.NOSENDER", "timestamp": "1764400000", "type": "text",
                              "text": {"body": "我的银行卡号是 6222020000000000"}}]
            }
        }]}]}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = log.lock().unwrap().clone();
    assert!(log.contains("90001"), "the update's id is logged: {log}");
    assert!(
        log.contains("wamid.NOSENDER"),
        "the message's id is logged: {log}"
    );
    for secret in ["王秘密", "13800138000", "6222020000000000"] {
        assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
    }
}

/// Our own API refuses an object that names a key twice. A provider's signed delivery that
/// does is taken all the same (the last one wins): a 400 there would only make the provider
/// retry the same delivery until it gave up, and lose the customer's message.
#[tokio::test]
async fn a_signed_delivery_that_repeats_a_key_is_still_taken_once() {
    let dir = TempDir::new();
    let fake = FakeProvider::start().await;
    let server = start(&dir, &fake, &[]).await;

    let wa = String::from_utf8(fixture("whatsapp/text_message.json"))
        .unwrap()
        .replacen(
            r#""messaging_product": "whatsapp","#,
            r#""messaging_product": "whatsapp", "messaging_product": "whatsapp","#,
            1,
        );
    let tg = String::from_utf8(fixture("telegram/text_message.json"))
        .unwrap()
        .replacen(r#""update_id""#, r#""update_id": 0, "update_id""#, 1);
    for _ in 0..2 {
        let r = whatsapp(
            &server,
            wa.as_bytes(),
            Some(sign(APP_SECRET, wa.as_bytes())),
        )
        .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let r = telegram(&server, tg.as_bytes(), Some(TG_SECRET)).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    for channel in ["whatsapp", "telegram"] {
        let tickets = eventually(|| async {
            let t = tickets_on(&server, channel).await;
            (!t.is_empty()).then_some(t)
        })
        .await;
        assert_eq!(tickets.len(), 1, "{channel}");
        let ticket = tickets[0]["id"].as_str().unwrap();
        let messages = wait_messages(&server, ticket, |m| m.len() >= 2).await;
        assert_eq!(
            messages
                .iter()
                .filter(|m| m["direction"] == "inbound")
                .count(),
            1,
            "{channel}: {messages:?}"
        );
    }
    // Broken JSON, signed, is still a 400 in the error form.
    let broken = b"{\"object\": ";
    let r = whatsapp(&server, broken, Some(sign(APP_SECRET, broken))).await;
    assert_eq!(error_code(r, 400).await, "invalid_json");
}
