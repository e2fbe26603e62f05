//! Bad input gets the error form of API.md with the right status, never a panic or a 500,
//! and loses nothing that was already accepted.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn bad_input_is_refused_clearly_and_loses_nothing() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let visitor = server.visitor().await;
    visitor.say("Why was I charged twice this month?").await;
    let handoff = visitor.wait_for("handoff").await;
    let id = handoff["ticket_id"].as_str().unwrap().to_string();
    let before = visitor.conversation().await;
    let http = &server.http;

    // Malformed JSON, on each kind of route.
    let r = http
        .post(server.url("/webchat/messages"))
        .bearer_auth(&visitor.token)
        .header("content-type", "application/json")
        .body("{\"text\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "invalid_json");
    let r = http
        .post(server.url("/webchat/sessions"))
        .body("[1,")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "invalid_json");
    let r = http
        .patch(server.url(&format!("/tickets/{id}")))
        .bearer_auth(ADMIN)
        .header("If-Match", "1")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "invalid_json");
    let r = http
        .post(server.url(&format!("/tickets/{id}/escalate")))
        .bearer_auth(ADMIN)
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "invalid_json");
    // Well-formed but the wrong shape.
    let r = server
        .post("/webchat/messages", &visitor.token, json!({"txet": "hi"}))
        .await;
    assert_eq!(error_code(r, 422).await, "invalid_body");
    let r = server
        .post("/webchat/messages", &visitor.token, json!({"text": "   "}))
        .await;
    assert_eq!(error_code(r, 422).await, "empty_text");

    // Missing and wrong tokens.
    let r = http
        .post(server.url("/webchat/messages"))
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let r = server
        .post("/webchat/messages", "forged-token", json!({"text": "hi"}))
        .await;
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let r = http.get(server.url("/tickets")).send().await.unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let r = server.get("/tickets", &visitor.token).await;
    assert_eq!(
        error_code(r, 401).await,
        "unauthorized",
        "a visitor's token is no agent's"
    );
    let r = http
        .get(server.url("/tickets"))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    let r = http
        .delete(server.url("/kb/articles/reset-password-en"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 403).await, "forbidden");

    // Unknown ids and routes.
    assert_eq!(
        error_code(server.get("/tickets/no-such-ticket", ADMIN).await, 404).await,
        "not_found"
    );
    let r = server
        .post(
            "/tickets/no-such-ticket/replies",
            ADMIN,
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = server
        .post(
            "/tickets/no-such-ticket/escalate",
            ADMIN,
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(error_code(r, 404).await, "not_found");
    assert_eq!(
        error_code(server.get("/kb/articles/nope", ADMIN).await, 404).await,
        "not_found"
    );
    assert_eq!(
        error_code(server.get("/no/such/route", ADMIN).await, 404).await,
        "not_found"
    );
    // A route asked with a method it does not take: 405 in the error form, with `Allow`.
    for (method, path, allowed) in [
        (reqwest::Method::DELETE, "/tickets/no-such-ticket", "PATCH"),
        (reqwest::Method::PUT, "/webchat/messages", "POST"),
        (reqwest::Method::DELETE, "/surveys/a-token", "POST"),
        (
            reqwest::Method::GET,
            "/tickets/no-such-ticket/escalate",
            "POST",
        ),
    ] {
        let r = http
            .request(method.clone(), server.url(path))
            .bearer_auth(ADMIN)
            .header("origin", "https://shop.example")
            .send()
            .await
            .unwrap();
        // A visitors' route keeps its CORS headers, so the widget can read why.
        let cors = r.headers().get("access-control-allow-origin").is_some();
        assert_eq!(cors, !path.starts_with("/tickets"), "{method} {path}");
        let allow = r
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(allow.contains(allowed), "{method} {path}: Allow {allow:?}");
        assert_eq!(
            error_code(r, 405).await,
            "method_not_allowed",
            "{method} {path}"
        );
    }
    // The survey page answers a program asking for JSON in the error form, and a browser
    // with a page (see agent_api's survey test).
    let r = http
        .get(server.url("/surveys/not-a-token"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");

    // Bad filters and cursors.
    assert_eq!(
        error_code(server.get("/tickets?status=maybe", ADMIN).await, 400).await,
        "bad_request"
    );
    assert_eq!(
        error_code(server.get("/tickets?limit=0", ADMIN).await, 400).await,
        "bad_request"
    );
    assert_eq!(
        error_code(server.get("/tickets?limit=abc", ADMIN).await, 400).await,
        "bad_request"
    );
    assert_eq!(
        error_code(
            server.get("/tickets?cursor=%27%20OR%201=1", ADMIN).await,
            400
        )
        .await,
        "invalid_cursor"
    );
    assert_eq!(
        error_code(server.get("/tickets?channel=fax", ADMIN).await, 400).await,
        "bad_request"
    );
    let long_chinese = "工单".repeat(300);
    for bad in ["%27%20OR%201=1--", "A86531F%00", long_chinese.as_str()] {
        assert_eq!(
            error_code(server.get(&format!("/tickets?ref={bad}"), ADMIN).await, 422).await,
            "invalid_reference",
            "{bad:.20}"
        );
    }
    assert_eq!(
        error_code(server.get("/reports/csat?from=yesterday", ADMIN).await, 400).await,
        "bad_request"
    );

    // Status changes: If-Match required, illegal moves refused.
    let (_, version) = server.ticket(&id).await;
    assert_eq!(
        error_code(
            server.patch(&id, None, json!({"status": "pending"})).await,
            428
        )
        .await,
        "precondition_required"
    );
    let r = http
        .patch(server.url(&format!("/tickets/{id}")))
        .bearer_auth(ADMIN)
        .header("If-Match", "abc")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "bad_request");
    assert_eq!(
        error_code(
            server
                .patch(&id, Some(version), json!({"status": "escalated"}))
                .await,
            422
        )
        .await,
        "illegal_status_change"
    );
    assert_eq!(
        error_code(
            server
                .patch(&id, Some(version), json!({"status": "reopened"}))
                .await,
            422
        )
        .await,
        "invalid_body"
    );
    assert_eq!(
        error_code(
            server
                .patch(&id, Some(version), json!({"priority": "whenever"}))
                .await,
            422
        )
        .await,
        "invalid_body"
    );
    let r = server
        .patch(&id, Some(version), json!({"status": "closed"}))
        .await;
    assert_eq!(r.status(), 200);
    // Sending the survey moves the version on; wait for it, so the next 422 is about the
    // status and not the version.
    visitor.wait_for("survey").await;
    let v = loop {
        let (view, v) = server.ticket(&id).await;
        if view["ticket"]["survey"]["sent_at"].is_string() {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        error_code(
            server.patch(&id, Some(v), json!({"status": "open"})).await,
            422
        )
        .await,
        "illegal_status_change"
    );
    let r = server
        .post(
            &format!("/tickets/{id}/escalate"),
            ADMIN,
            json!({"reason": "late"}),
        )
        .await;
    assert_eq!(error_code(r, 422).await, "illegal_status_change");
    let r = server
        .post(
            &format!("/tickets/{id}/replies"),
            ADMIN,
            json!({"text": "hello"}),
        )
        .await;
    assert_eq!(error_code(r, 422).await, "ticket_closed");

    // Too large: a 1 MB body, and a text over the channel's limit.
    let huge = "字".repeat(350_000);
    let r = server
        .post("/webchat/messages", &visitor.token, json!({"text": huge}))
        .await;
    assert_eq!(error_code(r, 413).await, "payload_too_large");
    let r = http
        .post(server.url("/webchat/messages"))
        .bearer_auth(&visitor.token)
        .body(vec![b'x'; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 413).await, "payload_too_large");
    let long = "长".repeat(4097);
    let r = server
        .post("/webchat/messages", &visitor.token, json!({"text": long}))
        .await;
    assert_eq!(error_code(r, 413).await, "text_too_long");
    let article = json!({"title": "t", "questions": [], "answer": "a"});
    let r = http
        .put(server.url("/kb/articles/x"))
        .bearer_auth(ADMIN)
        .json(&article)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 422).await, "invalid_article");

    // Nothing accepted earlier was lost, and the server still answers.
    let after = visitor.conversation().await;
    // What was said stays; a message's delivery status may still move on meanwhile.
    let said = |m: &serde_json::Value| (m["id"].clone(), m["kind"].clone(), m["text"].clone());
    assert!(after.len() >= before.len());
    assert_eq!(
        after[..before.len()].iter().map(said).collect::<Vec<_>>(),
        before.iter().map(said).collect::<Vec<_>>()
    );
    let tickets = server.tickets_of(&visitor.customer_id).await;
    assert_eq!(tickets.len(), 1);
    let health = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn article_ids_that_could_leave_their_path_are_refused() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let article = json!({"title": "t", "questions": ["q"], "answer": "a"});
    for path in [
        "/kb/articles/..",
        "/kb/articles/%2E%2E",
        "/kb/articles/.",
        "/kb/articles/a.b",
        "/kb/articles/a%2Fb",
        "/kb/articles/%E9%80%80%E6%AC%BE",
    ] {
        let (status, body) = raw_request(&server, "PUT", path, BOB, &article).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_article", "{path}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("A-Z, a-z, 0-9, _ and -")));
    }
    let long = format!("/kb/articles/{}", "x".repeat(129));
    let (status, _) = raw_request(&server, "PUT", &long, BOB, &article).await;
    assert_eq!(status, 422);
    let ok = format!("/kb/articles/{}", "x".repeat(128));
    let (status, body) = raw_request(&server, "PUT", &ok, BOB, &article).await;
    assert_eq!(status, 201, "{body}");
    // The sample articles are all still there.
    let r = server.get("/kb/articles", ADMIN).await;
    let list: serde_json::Value = r.json().await.unwrap();
    let ids: Vec<&str> = list["articles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"reset-password-en") && ids.len() > 2,
        "{ids:?}"
    );

    // The command line says which article and why.
    let bad = dir.0.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": \"ok\", \"title\": \"t\", \"questions\": [\"q\"], \"answer\": \"a\"}\n\
         {\"id\": \"../etc\", \"title\": \"t\", \"questions\": [\"q\"], \"answer\": \"a\"}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_helpdesk"))
        .args(["kb", "import"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.0.join("import"))
        .env("HELPDESK_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("article 2: article id \"../etc\" is not allowed"),
        "{stderr}"
    );
}

/// An article over a size limit (questions, a question's or the title's characters, an
/// answer's) is a 422 naming the limit and the article, through the API and `kb import`
/// alike; one at the limits is taken.
#[tokio::test]
async fn an_article_over_a_size_limit_is_refused_naming_it() {
    let dir = TempDir::new();
    // The limits are the point, not the embedding of 255 questions.
    let server = Server::start(&dir.0, &[("HELPDESK_MODEL", "off")]).await;
    let questions = |n: usize| (0..n).map(|i| format!("问题 {i}")).collect::<Vec<_>>();
    let put = |body: serde_json::Value| {
        server
            .http
            .put(server.url("/kb/articles/big"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    for (body, limit) in [
        (
            json!({"title": "t", "questions": questions(256), "answer": "a"}),
            "it has 256 questions; an article has at most 255",
        ),
        (
            json!({"title": "t", "questions": ["q", "长".repeat(501)], "answer": "a"}),
            "its question 2 has 501 characters; a question has at most 500",
        ),
        (
            json!({"title": "题".repeat(501), "questions": ["q"], "answer": "a"}),
            "its title has 501 characters; a title has at most 500",
        ),
        (
            json!({"title": "t", "questions": ["q"], "answer": "a",
                   "answers": {"zh": "答".repeat(20_001)}}),
            "its zh answer has 20001 characters; an answer has at most 20000",
        ),
    ] {
        let r = put(body).await.unwrap();
        assert_eq!(r.status(), 422);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_article", "{v}");
        assert_eq!(
            v["error"]["message"],
            format!("article \"big\": {limit}"),
            "{v}"
        );
    }
    let at_limits = json!({
        "title": "题".repeat(500),
        "questions": questions(255),
        "answer": "答".repeat(20_000),
    });
    assert_eq!(put(at_limits).await.unwrap().status(), 201);

    let file = dir.0.join("big.jsonl");
    let ok = json!({"id": "ok", "title": "t", "questions": ["q"], "answer": "a"});
    let over =
        json!({"id": "long", "title": "t", "questions": ["q"], "answer": "a".repeat(20_001)});
    std::fs::write(&file, format!("{ok}\n{over}\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_helpdesk"))
        .args(["kb", "import"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.0.join("import"))
        .env("HELPDESK_LOG", "error")
        .env("HELPDESK_MODEL", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "article 2: article \"long\": its answer has 20001 characters; \
             an answer has at most 20000"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let routes = [
        ("/healthz", &["get"][..]),
        ("/webhooks/whatsapp", &["get", "post"]),
        ("/webhooks/telegram", &["post"]),
        ("/webchat/sessions", &["post"]),
        ("/webchat/messages", &["get", "post"]),
        ("/tickets", &["get", "post"]),
        ("/tickets/{id}", &["get", "patch"]),
        ("/tickets/{id}/replies", &["post"]),
        ("/tickets/{id}/notes", &["post"]),
        ("/tickets/{id}/escalate", &["post"]),
        ("/reports/csat", &["get"]),
        ("/kb/articles", &["get"]),
        ("/kb/articles/{id}", &["get", "put", "delete"]),
        ("/kb/search", &["get"]),
        ("/surveys/{token}", &["get", "post"]),
        ("/customers/{id}", &["get"]),
        ("/customers/{id}/merge", &["post"]),
        ("/tickets/counts", &["get"]),
        ("/me", &["get", "patch"]),
        ("/agents", &["get"]),
        ("/agents/{id}", &["get", "put"]),
        ("/reports/sla", &["get"]),
        ("/reports/volume", &["get"]),
        ("/console/", &["get"]),
        ("/console/config.json", &["get"]),
        ("/widget.js", &["get"]),
    ];
    for (path, methods) in routes {
        let start = spec
            .find(&format!("\n  {path}:\n"))
            .unwrap_or_else(|| panic!("{path} is missing from openapi.yaml"));
        let rest = &spec[start + path.len() + 4..];
        let end = rest.find("\n  /").unwrap_or(rest.len());
        for m in methods {
            assert!(
                rest[..end].contains(&format!("\n    {m}:")),
                "{m} {path} is missing from openapi.yaml"
            );
        }
    }
}

/// Report dates far outside the years a desk can mean, near the calendar's edge, used to
/// overflow the period's arithmetic and panic the handler: they are a 400 in the error form,
/// like any other bad date, on every report; the years within answer as before.
#[tokio::test]
async fn report_dates_outside_sane_years_are_refused() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    for report in ["volume", "sla", "csat"] {
        for query in [
            "to=-262143-01-01",
            "from=-262143-01-01&to=-262143-01-20",
            "from=262142-12-01&to=262142-12-31",
            "from=1969-12-01&to=1970-01-02",
            "from=9999-12-01&to=10000-01-01",
            "to=0001-01-01T00:00:00Z",
            "from=1969-12-31T23:00:00Z",
        ] {
            let r = server.get(&format!("/reports/{report}?{query}"), BOB).await;
            assert_eq!(error_code(r, 400).await, "bad_request", "{report}?{query}");
        }
        for query in [
            "to=1970-01-01",
            "from=1970-01-01&to=1970-01-31",
            "from=9999-12-01&to=9999-12-31",
            "to=9999-12-31T23:59:59Z",
        ] {
            let r = server.get(&format!("/reports/{report}?{query}"), BOB).await;
            assert_eq!(r.status(), 200, "{report}?{query}");
        }
    }
    let r = server.get("/reports/volume?to=-262143-01-01", BOB).await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1970 to 9999")),
        "{v}"
    );
    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// A path segment that is not UTF-8 is a 400 in the error form on every agent route that
/// takes an id, not axum's plain text; the survey link, which it cannot be, is the usual
/// 404 (a page for a browser); the console's files answer 404.
#[tokio::test]
async fn path_segments_that_are_not_utf8_get_the_error_form() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let http = &server.http;
    let body = json!({"text": "hi", "reason": "late", "from": "c"});
    for (method, path) in [
        (reqwest::Method::GET, "/tickets/%FF"),
        (reqwest::Method::PATCH, "/tickets/%FF"),
        (reqwest::Method::POST, "/tickets/%FF/replies"),
        (reqwest::Method::POST, "/tickets/%FF/notes"),
        (reqwest::Method::POST, "/tickets/%FF/escalate"),
        (reqwest::Method::GET, "/customers/%FF"),
        (reqwest::Method::POST, "/customers/%FF/merge"),
        (reqwest::Method::GET, "/kb/articles/%FF"),
        (reqwest::Method::DELETE, "/kb/articles/%FF"),
        (reqwest::Method::PUT, "/kb/articles/%FF"),
        (reqwest::Method::GET, "/agents/%FF"),
        (reqwest::Method::PUT, "/agents/%C0%AF"),
    ] {
        let r = http
            .request(method.clone(), server.url(path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let json = r.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("application/json"));
        assert!(json, "{method} {path}");
        assert_eq!(error_code(r, 400).await, "bad_request", "{method} {path}");
    }
    // Who asks is checked before what they ask for.
    let r = http.get(server.url("/tickets/%FF")).send().await.unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");

    let r = http
        .get(server.url("/surveys/%FF"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = http
        .post(server.url("/surveys/%FF"))
        .json(&json!({"rating": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = http.get(server.url("/surveys/%FF")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Survey not found") && page.contains("找不到该调查"),
        "{page}"
    );

    let r = http.get(server.url("/console/%FF")).send().await.unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = http
        .get(server.url("/console/%FF/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
}

/// An object that names a key twice is refused (400 `invalid_json`), as the survey form
/// refuses a repeated `rating`, instead of the last one silently winning; nothing changes.
#[tokio::test]
async fn a_json_key_named_twice_is_refused() {
    let dir = TempDir::new();
    let server = Server::start(&dir.0, &[]).await;
    let http = &server.http;
    let visitor = server.visitor().await;
    visitor.say("Why was I charged twice this month?").await;
    let handoff = visitor.wait_for("handoff").await;
    let id = handoff["ticket_id"].as_str().unwrap().to_string();

    let (before, version) = server.ticket(&id).await;
    let r = http
        .patch(server.url(&format!("/tickets/{id}")))
        .bearer_auth(ADMIN)
        .header("If-Match", version.to_string())
        .header("content-type", "application/json")
        .body(r#"{"priority": "urgent", "priority": "low"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "invalid_json");
    let (after, still) = server.ticket(&id).await;
    assert_eq!(still, version);
    assert_eq!(after["ticket"]["priority"], before["ticket"]["priority"]);
    // A visitor's message with two texts, likewise.
    let r = http
        .post(server.url("/webchat/messages"))
        .bearer_auth(&visitor.token)
        .header("content-type", "application/json")
        .body(r#"{"text": "还有一个问题", "text": "另一个"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 400).await, "invalid_json");

    let r = server
        .patch(&id, Some(version), json!({"status": "closed"}))
        .await;
    assert_eq!(r.status(), 200);
    let link = visitor.survey_link().await;
    let r = http
        .post(&link)
        .header("content-type", "application/json")
        .body(r#"{"rating": 5, "rating": 1}"#)
        .send()
        .await
        .unwrap();
    let message = {
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_json");
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(message.contains("\"rating\""), "{message}");
    // The form post answers a repeated rating the same way.
    let r = http
        .post(&link)
        .form(&[("rating", "5"), ("rating", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (view, _) = server.ticket(&id).await;
    assert!(view["ticket"]["survey"]["rating"].is_null(), "{view}");

    // The same key in two different objects is no repeat: this body is refused for its
    // shape (a comment is text), not as a repeat.
    let r = http
        .post(&link)
        .json(&json!({"rating": 4, "comment": {"a": 1, "b": {"a": 2}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 422).await, "invalid_body");
    let r = http
        .post(&link)
        .json(&json!({"rating": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (view, _) = server.ticket(&id).await;
    assert_eq!(view["ticket"]["survey"]["rating"], 4);
}
