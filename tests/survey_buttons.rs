//! Survey buttons pressed in Telegram, against the real program and a fake Bot API. A
//! Telegram client can send any `callback_data`, so only a genuine button of a survey the
//! desk sent records a rating, and only from the customer it was sent to; the survey page
//! follows the same rule.

mod common;

use common::provider::FakeProvider;
use common::*;
use helpdesk_core::domain::now;
use helpdesk_core::survey_token::{button_data, SurveySigner};
use serde_json::{json, Value};
use std::time::Duration;

const TG_SECRET: &str = "tg-secret-token";
const BOT: &str = "123456:test-bot-token";
const SURVEY_SECRET: &str = "survey-secret-for-button-tests";
const CHAT: i64 = 408258968;

async fn telegram_ok(server: &Server, body: &Value) {
    let r = server
        .http
        .post(server.url("/webhooks/telegram"))
        .header("X-Telegram-Bot-Api-Secret-Token", TG_SECRET)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

fn press(update_id: u64, user: i64, data: &str) -> Value {
    let someone =
        json!({"id": user, "is_bot": false, "first_name": "Hirrolot", "language_code": "zh-hans"});
    json!({"update_id": update_id, "callback_query": {
        "id": format!("cq-{update_id}"), "from": someone, "chat_instance": "1",
        "message": {"message_id": 200, "date": 1, "chat": {"id": user, "type": "private"}},
        "data": data}})
}

/// The router answers a press (the acknowledgement the fake sees) and then records it: a
/// moment for the second half.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// The ticket's survey, its status and version, as an agent sees them.
async fn state(server: &Server, ticket: &str) -> (Value, String, u64) {
    let (v, version) = server.ticket(ticket).await;
    let status = v["ticket"]["status"].as_str().unwrap().to_string();
    (v["ticket"]["survey"].clone(), status, version)
}

#[tokio::test]
async fn only_a_genuine_button_of_a_sent_survey_records_a_rating() {
    let dir = TempDir::new();
    let fake = FakeProvider::start().await;
    let server = Server::start(
        &dir.0,
        &[
            ("TELEGRAM_SECRET_TOKEN", TG_SECRET),
            ("TELEGRAM_BOT_TOKEN", BOT),
            ("TELEGRAM_API_BASE", &fake.base),
            ("HELPDESK_SURVEY_SECRET", SURVEY_SECRET),
        ],
    )
    .await;
    telegram_ok(
        &server,
        &json!({"update_id": 1, "message": {"message_id": 154, "date": 1,
            "chat": {"id": CHAT, "type": "private"},
            "from": {"id": CHAT, "is_bot": false, "first_name": "Hirrolot"},
            "text": "转人工：我的订单被取消了"}}),
    )
    .await;
    fake.wait_for("/sendMessage", 1).await;
    let tickets: Value = server
        .get("/tickets?channel=telegram", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    let ticket = tickets["tickets"][0]["id"].as_str().unwrap().to_string();
    let signer = SurveySigner::new(SURVEY_SECRET);
    let (_, _, version) = state(&server, &ticket).await;

    // The ticket is open. Unsigned presses, of the old form or made up, are dropped at the
    // door; a button signed with the desk's own key reaches the desk, which refuses it.
    telegram_ok(&server, &press(2, CHAT, &format!("survey:{ticket}:5"))).await;
    telegram_ok(
        &server,
        &press(3, CHAT, &format!("s:{ticket}:5:9999999999:AAAAAAAAAAA")),
    )
    .await;
    let keyed = button_data(&signer.sign(&ticket, now()), 5).unwrap();
    telegram_ok(&server, &press(4, CHAT, &keyed)).await;
    let acks = fake.wait_for("/answerCallbackQuery", 1).await;
    assert_eq!(
        acks[0].body["callback_query_id"], "cq-4",
        "only the keyed press got in"
    );
    settle().await;
    // The survey page refuses the same, in the error form.
    let r = server
        .http
        .post(server.url(&format!("/surveys/{}", signer.sign(&ticket, now()))))
        .json(&json!({"rating": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 422).await, "survey_not_open");
    let (survey, status, now_version) = state(&server, &ticket).await;
    assert_eq!((survey, status.as_str()), (Value::Null, "open"));
    assert_eq!(now_version, version, "the open ticket did not change");

    // Closed: the survey's buttons carry their signature.
    let r = server
        .patch(&ticket, Some(version), json!({"status": "closed"}))
        .await;
    assert_eq!(r.status(), 200);
    let sent = fake.wait_for("/sendMessage", 2).await;
    let buttons: Vec<String> = sent[1].body["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|b| b["callback_data"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(buttons.len(), 5);
    assert!(buttons.iter().all(|b| b.len() <= 64), "{buttons:?}");
    let four = buttons[3].clone();
    let (head, mac) = four.rsplit_once(':').unwrap();
    let (front, expires) = head.rsplit_once(':').unwrap();
    let other_ticket = four.replace(&ticket, "0190a5d2-0000-7000-8000-000000000000");
    let tampered = [
        other_ticket,
        format!("{head}:{}", mac.chars().rev().collect::<String>()),
        format!("{front}:{}:{mac}", expires.parse::<i64>().unwrap() + 1),
        format!("survey:{ticket}:1"),
        button_data(&SurveySigner::new("a guess").sign(&ticket, now()), 1).unwrap(),
    ];
    for (i, data) in tampered.iter().enumerate() {
        telegram_ok(&server, &press(10 + i as u64, CHAT, data)).await;
    }
    // Someone else pressing a genuine button: it gets in, and is refused.
    telegram_ok(&server, &press(20, 777, &buttons[0])).await;
    let acks = fake.wait_for("/answerCallbackQuery", 2).await;
    assert_eq!(acks[1].body["callback_query_id"], "cq-20");
    settle().await;
    let (survey, _, _) = state(&server, &ticket).await;
    assert!(survey["sent_at"].is_string(), "{survey}");
    assert_eq!(survey["rating"], Value::Null, "no forged or foreign rating");

    // The customer's own press of a genuine button counts, once.
    telegram_ok(&server, &press(30, CHAT, &four)).await;
    telegram_ok(&server, &press(31, CHAT, &buttons[0])).await;
    fake.wait_for("/answerCallbackQuery", 4).await;
    settle().await;
    let (survey, _, _) = state(&server, &ticket).await;
    assert_eq!(survey["rating"], 4, "{survey}");
    assert_eq!(
        fake.sent()
            .iter()
            .filter(|s| s.path.ends_with("/answerCallbackQuery"))
            .count(),
        4,
        "the tampered presses never reached the desk"
    );
    let tickets: Value = server
        .get("/tickets?channel=telegram", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        tickets["tickets"].as_array().unwrap().len(),
        1,
        "no press opened a ticket"
    );
}

#[tokio::test]
async fn the_survey_page_is_served_with_its_security_headers() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[("HELPDESK_SURVEY_SECRET", SURVEY_SECRET)]).await;
    let visitor = server.visitor().await;
    visitor.say("转人工：我要投诉").await;
    visitor.wait_for("handoff").await;
    let ticket = server.tickets_of(&visitor.customer_id).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let link = format!(
        "/surveys/{}",
        SurveySigner::new(SURVEY_SECRET).sign(&ticket, now())
    );
    let forged = "/surveys/forged".to_string();
    for (path, accept, status) in [
        (&link, "text/html", 200),
        (&link, "application/json", 200),
        (&forged, "text/html", 404),
    ] {
        let r = server
            .http
            .get(server.url(path))
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path} {accept}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("script-src"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-frame-options"], "DENY");
    }
}

const WA_SECRET: &str = "wa-app-secret";
const PHONE_ID: &str = "1122334455667";

/// A signed WhatsApp notification carrying one message from the customer.
async fn whatsapp(server: &Server, message: Value) {
    use hmac::{Hmac, Mac};
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": PHONE_ID},
            "contacts": [{"profile": {"name": "王芳"}, "wa_id": "972987654321"}],
            "messages": [message]}}]}]});
    let bytes = serde_json::to_vec(&body).unwrap();
    let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(WA_SECRET.as_bytes()).unwrap();
    mac.update(&bytes);
    let r = server
        .http
        .post(server.url("/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .header(
            "X-Hub-Signature-256",
            format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        )
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn list_reply(wamid: &str, id: &str) -> Value {
    json!({"from": "972987654321", "id": wamid, "timestamp": "1697043223", "type": "interactive",
           "interactive": {"type": "list_reply", "list_reply": {"id": id, "title": "★"}}})
}

#[tokio::test]
async fn a_whatsapp_survey_row_with_a_made_up_signature_is_dropped() {
    let dir = TempDir::new();
    let fake = FakeProvider::start().await;
    let wa_base = format!("{}/v21.0", fake.base);
    let server = Server::start(
        &dir.0,
        &[
            ("WHATSAPP_APP_SECRET", WA_SECRET),
            ("WHATSAPP_VERIFY_TOKEN", "verify"),
            ("WHATSAPP_ACCESS_TOKEN", "wa-token"),
            ("WHATSAPP_PHONE_NUMBER_ID", PHONE_ID),
            ("WHATSAPP_API_BASE", &wa_base),
            ("HELPDESK_SURVEY_SECRET", SURVEY_SECRET),
        ],
    )
    .await;
    whatsapp(
        &server,
        json!({"from": "972987654321", "id": "wamid.q1", "timestamp": "1697043223",
               "type": "text", "text": {"body": "转人工：退款还没到"}}),
    )
    .await;
    fake.wait_for("/messages", 1).await;
    let tickets: Value = server
        .get("/tickets?channel=whatsapp", ADMIN)
        .await
        .json()
        .await
        .unwrap();
    let ticket = tickets["tickets"][0]["id"].as_str().unwrap().to_string();
    let (_, version) = server.ticket(&ticket).await;
    let r = server
        .patch(&ticket, Some(version), json!({"status": "closed"}))
        .await;
    assert_eq!(r.status(), 200);
    let sent = fake.wait_for("/messages", 2).await;
    let rows: Vec<String> = sent[1].body["interactive"]["action"]["sections"][0]["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("a list survey: {}", sent[1].body))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|id| SurveySigner::new(SURVEY_SECRET)
        .verify_button(id, now())
        .is_some()));

    // A made-up signature first (a 1), then the customer's own choice (rows run 5 to 1).
    whatsapp(
        &server,
        list_reply("wamid.f1", &format!("s:{ticket}:1:9999999999:AAAAAAAAAAA")),
    )
    .await;
    whatsapp(&server, list_reply("wamid.r4", &rows[1])).await;
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (v, _) = server.ticket(&ticket).await;
        if !v["ticket"]["survey"]["rating"].is_null() {
            assert_eq!(v["ticket"]["survey"]["rating"], 4, "{}", v["ticket"]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rating arrived");
        settle().await;
    }
}
