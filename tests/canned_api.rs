//! Canned responses over HTTP on `helpdesk serve`: every signed-in agent reads them,
//! supervisors and the administrator keep them, and each rule on a code or its content is
//! a 422 in the API's error form.

mod common;

use common::*;
use reqwest::Response;
use serde_json::{json, Value};

async fn put(server: &Server, code: &str, token: &str, body: Value) -> Response {
    server
        .http
        .put(server.url(&format!("/canned-responses/{code}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn delete(server: &Server, code: &str, token: &str) -> Response {
    server
        .http
        .delete(server.url(&format!("/canned-responses/{code}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn list(server: &Server, token: &str) -> Vec<Value> {
    let r = server.get("/canned-responses", token).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["items"].as_array().expect("items").clone()
}

/// `退款`, as a path segment.
const REFUND_ZH: &str = "%E9%80%80%E6%AC%BE";

#[tokio::test]
async fn supervisors_keep_canned_responses_and_every_agent_reads_them() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    assert_eq!(list(&server, ALICE).await, Vec::<Value>::new(), "none yet");
    assert_eq!(
        error_code(server.get("/canned-responses", "not-a-token").await, 401).await,
        "unauthorized"
    );

    // An agent may not write them.
    let body = json!({"content": "  您好，退款将在 3 个工作日内原路退回。 "});
    assert_eq!(
        error_code(put(&server, REFUND_ZH, ALICE, body.clone()).await, 403).await,
        "forbidden"
    );
    // A supervisor makes one (201), then the same PUT replaces it (200).
    let r = put(&server, REFUND_ZH, BOB, body.clone()).await;
    assert_eq!(r.status(), 201);
    let made: Value = r.json().await.unwrap();
    assert_eq!(made["short_code"], "退款");
    assert_eq!(
        made["content"], "您好，退款将在 3 个工作日内原路退回。",
        "trimmed"
    );
    assert_eq!(made["updated_by"], "bob");
    assert!(made["updated_at"].is_string());
    assert_eq!(put(&server, REFUND_ZH, BOB, body).await.status(), 200);
    // The administrator too; `Reset-PW` is folded to `reset-pw`.
    let r = put(
        &server,
        "Reset-PW",
        ADMIN,
        json!({"content": "Open Settings, then Reset password."}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = put(
        &server,
        "RESET-pw",
        BOB,
        json!({"content": "Settings › Security › Reset password."}),
    )
    .await;
    assert_eq!(r.status(), 200, "the same code, folded");

    // Any agent reads them, by code.
    let items = list(&server, ALICE).await;
    let codes: Vec<&str> = items
        .iter()
        .map(|c| c["short_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["reset-pw", "退款"]);
    assert_eq!(items[0]["content"], "Settings › Security › Reset password.");
    assert_eq!(items[0]["updated_by"], "bob");
    let fields: Vec<&String> = items[0].as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        ["content", "short_code", "updated_at", "updated_by"],
        "a CannedResponse is these four fields"
    );

    // An agent may not delete; a supervisor deletes (204), then there is none (404).
    assert_eq!(
        error_code(delete(&server, REFUND_ZH, ALICE).await, 403).await,
        "forbidden"
    );
    assert_eq!(delete(&server, REFUND_ZH, BOB).await.status(), 204);
    assert_eq!(
        error_code(delete(&server, REFUND_ZH, BOB).await, 404).await,
        "not_found"
    );
    // A delete folds the code as a PUT does.
    assert_eq!(delete(&server, "RESET-PW", ADMIN).await.status(), 204);
    assert_eq!(list(&server, ALICE).await, Vec::<Value>::new());
}

#[tokio::test]
async fn each_rule_on_a_code_or_its_content_is_a_422_naming_it() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let ok = json!({"content": "Hello"});
    // Codes: a space, a dot, a slash (encoded), a percent sign (encoded), 33 characters
    // (Chinese: 99 bytes).
    let long_zh = "码".repeat(33);
    for code in [
        "a%20b",
        "re.fund",
        "a%2Fb",
        "a%25b",
        &"a".repeat(33),
        &long_zh,
    ] {
        assert_eq!(
            error_code(put(&server, code, BOB, ok.clone()).await, 422).await,
            "invalid_short_code",
            "{code}"
        );
    }
    // 32 Chinese characters are allowed: characters, not bytes.
    let most_zh = "码".repeat(32);
    assert_eq!(put(&server, &most_zh, BOB, ok.clone()).await.status(), 201);
    assert_eq!(
        error_code(delete(&server, "a%20b", BOB).await, 422).await,
        "invalid_short_code"
    );

    // Content: nothing but spaces, a control character, more than 2,000 characters; 2,000
    // Chinese ones are fine.
    assert_eq!(
        error_code(
            put(&server, "hi", BOB, json!({"content": " \n\t "})).await,
            422
        )
        .await,
        "empty_content"
    );
    assert_eq!(
        error_code(
            put(&server, "hi", BOB, json!({"content": "响铃\u{7}"})).await,
            422
        )
        .await,
        "invalid_content"
    );
    let most = "好".repeat(2_000);
    let r = put(&server, "hi", BOB, json!({"content": format!("{most}好")})).await;
    assert_eq!(error_code(r, 422).await, "content_too_long");
    assert_eq!(
        put(&server, "hi", BOB, json!({"content": most}))
            .await
            .status(),
        201
    );

    // The body's form: the API's error form, never a 500.
    for bad in [
        json!({}),
        json!({"content": 5}),
        json!({"content": "x", "extra": 1}),
    ] {
        let r = put(&server, "hi", BOB, bad.clone()).await;
        assert_eq!(error_code(r, 422).await, "invalid_body", "{bad}");
    }
    let r = server
        .http
        .put(server.url("/canned-responses/hi"))
        .bearer_auth(BOB)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "invalid_json");
    // Nothing refused was saved.
    let codes: Vec<String> = list(&server, ALICE)
        .await
        .iter()
        .map(|c| c["short_code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes, ["hi", most_zh.as_str()]);
}

/// The console's New form sends `If-None-Match: *`: the first PUT of a code makes it (201);
/// another for a code kept already, however it is spelled, is a 409
/// `canned_response_exists` that leaves the kept one as it was. Any other value of the
/// header is a 400, and without it a PUT replaces (200), as before.
#[tokio::test]
async fn a_put_with_if_none_match_star_only_creates() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let create = |code: &str, content: &str, header: &str| {
        server
            .http
            .put(server.url(&format!("/canned-responses/{code}")))
            .bearer_auth(BOB)
            .header("If-None-Match", header)
            .json(&json!({ "content": content }))
            .send()
    };
    let r = create(REFUND_ZH, "退款将在 3 个工作日内到账。", "*")
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = create(REFUND_ZH, "另一位主管写的", "*").await.unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "canned_response_exists");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("/退款"),
        "{body}"
    );
    let r = create("Hello", "Hello!", "*").await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        error_code(create("HELLO", "Hi!", " * ").await.unwrap(), 409).await,
        "canned_response_exists"
    );
    assert_eq!(
        error_code(create("hello", "Hi!", "\"1\"").await.unwrap(), 400).await,
        "bad_request"
    );
    let kept = list(&server, ALICE).await;
    let contents: Vec<&str> = kept
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["Hello!", "退款将在 3 个工作日内到账。"]);
    // Without the header a PUT replaces.
    assert_eq!(
        put(&server, "hello", BOB, json!({"content": "Hi!"}))
            .await
            .status(),
        200
    );
}
