//! The real Lambda binaries, under a local Lambda Runtime API, against the AWS emulator:
//! an HTTP API event, SQS batches with a poisoned record, and the tickets stream, and the
//! whole flow from a webchat message through SQS and DynamoDB to a ticket and its survey.

mod aws_harness;
mod common;

use aws_harness::*;
use helpdesk_core::aws::DynamoKnowledge;
use helpdesk_core::knowledge::parse_articles;
use helpdesk_core::ports::KnowledgeIndex;
use serde_json::{json, Value};

const SAMPLE_KB: &str = include_str!("../infra/sample-kb.json");

struct Desk {
    intake: Runtime,
    router: Runtime,
    auto_reply: Runtime,
    dispatch: Runtime,
    tickets: Runtime,
    survey: Runtime,
}

impl Desk {
    async fn start(stack: &Stack) -> Desk {
        Desk::start_with(&stack.env).await
    }

    async fn start_with(env: &std::collections::HashMap<String, String>) -> Desk {
        Desk {
            intake: Runtime::start("intake", env).await,
            router: Runtime::start("router", env).await,
            auto_reply: Runtime::start("auto-reply", env).await,
            dispatch: Runtime::start("dispatch", env).await,
            tickets: Runtime::start("tickets", env).await,
            survey: Runtime::start("survey", env).await,
        }
    }

    /// Moves messages between the functions the way the event source mappings would,
    /// until every queue is empty.
    async fn pump(&mut self, stack: &Stack) {
        loop {
            let mut moved = false;
            for (var, function) in [
                ("INBOUND_QUEUE_URL", &mut self.router),
                ("AUTO_REPLY_QUEUE_URL", &mut self.auto_reply),
                ("OUTBOUND_QUEUE_URL", &mut self.dispatch),
            ] {
                let event = stack.drain(var).await;
                if event["Records"].as_array().is_some_and(|r| !r.is_empty()) {
                    moved = true;
                    let answer = function.invoke(event).await.expect("the batch is handled");
                    assert_eq!(answer["batchItemFailures"], json!([]), "{var}: {answer}");
                }
            }
            if !moved {
                return;
            }
        }
    }

    async fn http(
        &mut self,
        function: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value, Value) {
        let agent = (function == "tickets" && !path.starts_with("/surveys"))
            .then_some(("alice", "supervisor"));
        let event = http_event(method, path, headers, body, agent);
        let target = match function {
            "intake" => &mut self.intake,
            _ => &mut self.tickets,
        };
        let answer = target.invoke(event).await.expect("an HTTP answer");
        let (status, body) = http_answer(&answer);
        (status, body, answer["headers"].clone())
    }

    /// The ticket's version, from the ETag of `GET /tickets/{id}`.
    async fn version(&mut self, id: &str) -> String {
        let (_, _, headers) = self
            .http("tickets", "GET", &format!("/tickets/{id}"), &[], None)
            .await;
        headers["etag"]
            .as_str()
            .unwrap()
            .trim_matches('"')
            .to_string()
    }

    async fn close(&mut self, id: &str, version: &str) -> (u16, Value, Value) {
        let path = format!("/tickets/{id}");
        self.http(
            "tickets",
            "PATCH",
            &path,
            &[("if-match", version)],
            Some(json!({"status": "closed"})),
        )
        .await
    }

    /// Hands the survey function the same stream records twice, as a redelivery would.
    async fn survey_twice(&mut self, stream: &Value) {
        for _ in 0..2 {
            let answer = self
                .survey
                .invoke(stream.clone())
                .await
                .expect("the stream batch is handled");
            assert_eq!(answer["batchItemFailures"], json!([]));
        }
    }

    async fn conversation(&mut self, token: &str) -> Vec<Value> {
        let auth = format!("Bearer {token}");
        let (status, body, _) = self
            .http(
                "intake",
                "GET",
                "/webchat/messages",
                &[("authorization", &auth)],
                None,
            )
            .await;
        assert_eq!(status, 200);
        body["messages"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn a_message_goes_from_intake_through_sqs_and_dynamodb_to_a_ticket_and_its_survey() {
    let stack = Stack::new().await;
    let kb = DynamoKnowledge::new(&stack.config, stack.env["ARTICLES_TABLE"].clone());
    kb.upsert(&parse_articles(SAMPLE_KB).unwrap())
        .await
        .unwrap();
    let mut desk = Desk::start(&stack).await;

    // The chat widget's script comes from the function that serves the routes it calls,
    // gzipped (so base64 in the Lambda answer) when the browser takes gzip.
    let plain = desk
        .intake
        .invoke(http_event("GET", "/widget.js", &[], None, None))
        .await
        .expect("an HTTP answer");
    assert_eq!(plain["statusCode"], 200);
    assert!(
        plain["body"]
            .as_str()
            .is_some_and(|b| b.contains("HelpdeskWidget")),
        "{plain}"
    );
    let gzipped = desk
        .intake
        .invoke(http_event(
            "GET",
            "/widget.js",
            &[("accept-encoding", "gzip")],
            None,
            None,
        ))
        .await
        .expect("an HTTP answer");
    assert_eq!(gzipped["statusCode"], 200);
    assert_eq!(gzipped["isBase64Encoded"], true, "{gzipped}");
    assert_eq!(gzipped["headers"]["content-encoding"], "gzip");

    // An HTTP API event: a visitor opens a session.
    let (status, session, _) = desk
        .http(
            "intake",
            "POST",
            "/webchat/sessions",
            &[],
            Some(json!({"locale": "zh-CN"})),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let token = session["token"].as_str().unwrap().to_string();
    let auth = format!("Bearer {token}");

    // A question the knowledge base answers: auto-reply, no ticket.
    let (status, _, _) = desk
        .http(
            "intake",
            "POST",
            "/webchat/messages",
            &[("authorization", &auth)],
            Some(json!({"text": "我忘记密码了，怎么重置？"})),
        )
        .await;
    assert_eq!(status, 202);
    desk.pump(&stack).await;
    let convo = desk.conversation(&token).await;
    let reply = convo
        .iter()
        .find(|m| m["kind"] == "auto_reply")
        .expect("an auto-reply");
    assert!(reply["text"].as_str().unwrap().contains("链接"), "{reply}");
    for internal in ["status", "author", "customer_id", "provider_message_id"] {
        assert!(reply.get(internal).is_none(), "{internal} in {reply}");
    }

    // One it cannot answer: a billing ticket, and a hand-off message.
    let (status, _, _) = desk.http("intake", "POST", "/webchat/messages", &[("authorization", &auth)], Some(json!({"text": "我这个月被重复扣款了两次，请帮我查一下", "client_message_id": "c-2"}))).await;
    assert_eq!(status, 202);
    // A retry by the browser is taken once.
    desk.http(
        "intake",
        "POST",
        "/webchat/messages",
        &[("authorization", &auth)],
        Some(json!({"text": "我这个月被重复扣款了两次，请帮我查一下", "client_message_id": "c-2"})),
    )
    .await;
    desk.pump(&stack).await;
    let customer = session["customer_id"].as_str().unwrap();
    let (status, list, _) = desk
        .http(
            "tickets",
            "GET",
            &format!("/tickets?customer_id={customer}"),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let tickets = list["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0]["skill"], "billing");
    let id = tickets[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        desk.conversation(&token)
            .await
            .iter()
            .filter(|m| m["kind"] == "handoff")
            .count(),
        1
    );

    // Close it with the right version; the stream carries the close to the survey function,
    // which is handed the same records twice and still sends one survey.
    let etag = desk.version(&id).await;
    let (status, _, _) = desk.close(&id, "99").await;
    assert_eq!(status, 409);
    let (status, closed, _) = desk.close(&id, &etag).await;
    assert_eq!(status, 200, "{closed}");
    let stream = stack.stream_event().await;
    assert!(stream["Records"].as_array().unwrap().len() >= 2, "{stream}");
    desk.survey_twice(&stream).await;
    desk.pump(&stack).await;
    let surveys: Vec<Value> = desk
        .conversation(&token)
        .await
        .into_iter()
        .filter(|m| m["kind"] == "survey")
        .collect();
    assert_eq!(surveys.len(), 1, "{surveys:?}");
    // The visitor's view has no delivery details; the agent's view of the ticket does.
    assert!(surveys[0].get("status").is_none(), "{surveys:?}");
    let (_, view, _) = desk
        .http("tickets", "GET", &format!("/tickets/{id}"), &[], None)
        .await;
    let sent: Vec<&Value> = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "survey")
        .collect();
    assert_eq!(sent.len(), 1, "{view}");
    assert_eq!(sent[0]["status"], "delivered");
    let text = surveys[0]["text"].as_str().unwrap();
    let link = &text[text.find("https://help.example.com").unwrap()..];
    assert_eq!(surveys[0]["link"], link);
    let path = link.trim_start_matches("https://help.example.com");
    let (status, answered, _) = desk
        .http("tickets", "POST", path, &[], Some(json!({"rating": 5})))
        .await;
    assert_eq!(status, 200, "{answered}");
    let (status, _, _) = desk
        .http("tickets", "POST", path, &[], Some(json!({"rating": 4})))
        .await;
    assert_eq!(status, 409);
    let (_, view, _) = desk
        .http("tickets", "GET", &format!("/tickets/{id}"), &[], None)
        .await;
    assert_eq!(view["ticket"]["survey"]["rating"], 5);

    eprintln!(
        "time to first answer (debug build, emulator): intake {:?}, router {:?}, auto-reply {:?}, dispatch {:?}, tickets {:?}, survey {:?}",
        desk.intake.first_answer, desk.router.first_answer, desk.auto_reply.first_answer,
        desk.dispatch.first_answer, desk.tickets.first_answer, desk.survey.first_answer
    );
}

#[tokio::test]
async fn a_telegram_update_goes_from_the_webhook_to_a_ticket_and_its_survey_goes_out() {
    let stack = Stack::new().await;
    let telegram = common::provider::FakeProvider::start().await;
    let mut env = stack.env.clone();
    // The bot's secrets in SSM, as the template names them: intake reads the receiving
    // half, dispatch the sending half, each through its own grant.
    let secret_token = stack.parameter("telegram-secret-token", "tg-secret").await;
    let bot_token = stack.parameter("telegram-bot-token", "123:bot").await;
    for (k, v) in [
        ("TELEGRAM_SECRET_TOKEN_PARAM", secret_token.as_str()),
        ("TELEGRAM_BOT_TOKEN_PARAM", bot_token.as_str()),
        ("TELEGRAM_API_BASE", telegram.base.as_str()),
        ("TELEGRAM_RATE_PER_CHAT", "50"),
    ] {
        env.insert(k.into(), v.into());
    }
    let mut desk = Desk::start_with(&env).await;
    let update = json!({
        "update_id": 9001,
        "message": {
            "message_id": 11, "date": 1_800_000_000,
            "chat": {"id": 4242, "type": "private", "first_name": "丽"},
            "from": {"id": 4242, "is_bot": false, "first_name": "丽", "language_code": "zh-hans"},
            "text": "我这个月被重复扣款了两次，请帮我查一下"
        }
    });
    let wrong = http_event(
        "POST",
        "/webhooks/telegram",
        &[("x-telegram-bot-api-secret-token", "nope")],
        Some(update.clone()),
        None,
    );
    assert_eq!(
        http_answer(&desk.intake.invoke(wrong).await.unwrap()).0,
        401
    );
    // Telegram delivers the same update twice: one ticket, one hand-off.
    for _ in 0..2 {
        let event = http_event(
            "POST",
            "/webhooks/telegram",
            &[("x-telegram-bot-api-secret-token", "tg-secret")],
            Some(update.clone()),
            None,
        );
        assert_eq!(
            http_answer(&desk.intake.invoke(event).await.unwrap()).0,
            200
        );
    }
    desk.pump(&stack).await;
    let (_, list, _) = desk
        .http("tickets", "GET", "/tickets?skill=billing", &[], None)
        .await;
    let tickets = list["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 1, "{list}");
    assert_eq!(tickets[0]["channel"], "telegram");
    let id = tickets[0]["id"].as_str().unwrap().to_string();
    let handoff = telegram.wait_for("sendMessage", 1).await;
    assert_eq!(handoff[0].body["chat_id"], 4242);
    assert!(handoff[0].body["text"]
        .as_str()
        .unwrap()
        .contains("人工客服"));

    let etag = desk.version(&id).await;
    let (status, _, _) = desk.close(&id, &etag).await;
    assert_eq!(status, 200);
    let stream = stack.stream_event().await;
    desk.survey_twice(&stream).await;
    desk.pump(&stack).await;
    let sent = telegram.wait_for("sendMessage", 2).await;
    assert_eq!(sent.len(), 2, "one hand-off and one survey: {sent:#?}");
    assert!(
        sent[1].body["reply_markup"]["inline_keyboard"].is_array(),
        "{:?}",
        sent[1].body
    );

    // The buttons are signed: intake drops a press whose signature is made up (here a 1,
    // pressed first), and the customer's genuine 5 is the rating.
    let buttons: Vec<String> = sent[1].body["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|b| b["callback_data"].as_str().unwrap().to_string())
        .collect();
    for (update_id, data) in [
        (9002, format!("s:{id}:1:9999999999:AAAAAAAAAAA")),
        (9003, buttons[4].clone()),
    ] {
        let press = json!({"update_id": update_id, "callback_query": {
            "id": format!("cq-{update_id}"), "chat_instance": "1", "data": data,
            "from": {"id": 4242, "is_bot": false, "first_name": "丽"},
            "message": {"message_id": 12, "date": 1, "chat": {"id": 4242, "type": "private"}}}});
        let event = http_event(
            "POST",
            "/webhooks/telegram",
            &[("x-telegram-bot-api-secret-token", "tg-secret")],
            Some(press),
            None,
        );
        assert_eq!(
            http_answer(&desk.intake.invoke(event).await.unwrap()).0,
            200
        );
    }
    desk.pump(&stack).await;
    let (_, view, _) = desk
        .http("tickets", "GET", &format!("/tickets/{id}"), &[], None)
        .await;
    assert_eq!(view["ticket"]["survey"]["rating"], 5, "{view}");
}

#[tokio::test]
async fn a_poisoned_record_goes_to_the_dead_letters_with_its_reason_and_its_batch_is_kept() {
    let stack = Stack::new().await;
    let mut intake = Runtime::start("intake", &stack.env).await;
    let mut router = Runtime::start("router", &stack.env).await;
    let (status, session) = http_answer(
        &intake
            .invoke(http_event("POST", "/webchat/sessions", &[], None, None))
            .await
            .unwrap(),
    );
    assert_eq!(status, 201);
    let auth = format!("Bearer {}", session["token"].as_str().unwrap());
    let answer = intake
        .invoke(http_event(
            "POST",
            "/webchat/messages",
            &[("authorization", &auth)],
            Some(json!({"text": "hello"})),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(http_answer(&answer).0, 202);
    let mut event = stack.drain("INBOUND_QUEUE_URL").await;
    let records = event["Records"].as_array_mut().unwrap();
    assert_eq!(records.len(), 1);
    records.insert(0, json!({"messageId": "poison-1", "body": "{\"not\": \"a message\"", "attributes": {"MessageGroupId": "someone-else"}}));
    let answer = router.invoke(event).await.unwrap();
    // A record that can never succeed is not received again and again: it goes to the
    // dead letters at once, with its reason, as the local worker does with it.
    assert_eq!(answer["batchItemFailures"], json!([]));
    let dead = stack
        .sqs
        .receive_message()
        .queue_url(&stack.env["DEAD_LETTER_QUEUE_URL"])
        .message_attribute_names("All")
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("{\"not\": \"a message\""));
    let reason = dead[0]
        .message_attributes()
        .and_then(|a| a.get("error"))
        .and_then(|v| v.string_value())
        .unwrap_or_default();
    assert!(reason.contains("invalid_json"), "{reason}");
    // The good record was handled: the message is in the conversation.
    let answer = intake
        .invoke(http_event(
            "GET",
            "/webchat/messages",
            &[("authorization", &auth)],
            None,
            None,
        ))
        .await
        .unwrap();
    let (_, convo) = http_answer(&answer);
    assert_eq!(convo["messages"][0]["text"], "hello");
    // Bad input over HTTP gets the error form, not a crash of the function.
    let answer = intake
        .invoke(http_event(
            "POST",
            "/webchat/messages",
            &[("authorization", &auth)],
            Some(json!({"text": 5})),
            None,
        ))
        .await
        .unwrap();
    let (status, body) = http_answer(&answer);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_body"))
    );
    intake.stop().await;
    router.stop().await;
}

#[test]
fn the_template_declares_the_indexes_the_adapters_query() {
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    let indexes = helpdesk_core::aws::schema::TICKET_INDEXES
        .iter()
        .chain(helpdesk_core::aws::schema::MESSAGE_INDEXES);
    for (name, pk, sk) in indexes {
        let line = format!(
            "- IndexName: {name}\n          KeySchema: [{{AttributeName: {pk}, KeyType: HASH}}, {{AttributeName: {sk}, KeyType: RANGE}}]"
        );
        assert!(
            template.contains(&line),
            "template.yaml lacks the index {name} ({pk}, {sk})"
        );
    }
    // The canned responses' table is keyed on a partition and the code, as the emulator's.
    let (pk, sk) = helpdesk_core::aws::schema::CANNED_KEY;
    let key = format!(
        "  CannedResponsesTable:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      BillingMode: PAY_PER_REQUEST\n      PointInTimeRecoverySpecification: {{PointInTimeRecoveryEnabled: true}}\n      AttributeDefinitions:\n        - {{AttributeName: {pk}, AttributeType: S}}\n        - {{AttributeName: {sk}, AttributeType: S}}\n      KeySchema:\n        - {{AttributeName: {pk}, KeyType: HASH}}\n        - {{AttributeName: {sk}, KeyType: RANGE}}\n"
    );
    assert!(
        template.contains(&key),
        "template.yaml's CannedResponsesTable is not keyed ({pk}, {sk})"
    );
    for var in [
        "TICKETS_TABLE",
        "CUSTOMERS_TABLE",
        "IDENTITIES_TABLE",
        "MESSAGES_TABLE",
        "IDEMPOTENCY_TABLE",
        "SESSIONS_TABLE",
        "CANNED_RESPONSES_TABLE",
        "INBOUND_QUEUE_URL",
        "AUTO_REPLY_QUEUE_URL",
        "OUTBOUND_QUEUE_URL",
        "ARTICLES_TABLE",
    ] {
        assert!(
            template.contains(&format!("{var}: !Ref")),
            "template.yaml does not set {var}"
        );
    }
}

/// A supervisor's call to the tickets function.
async fn supervisor(
    tickets: &mut Runtime,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let event = http_event(method, path, &[], body, Some(("alice", "supervisor")));
    http_answer(&tickets.invoke(event).await.expect("an HTTP answer"))
}

#[tokio::test]
async fn the_indexer_keeps_opensearch_in_step_with_the_articles_table() {
    use aws_harness::fake_opensearch::FakeOpenSearch;
    let stack = Stack::new().await;
    let domain = FakeOpenSearch::start().await;
    let mut env = stack.env.clone();
    env.insert("OPENSEARCH_URL".into(), domain.url.clone());
    env.insert("OPENSEARCH_INDEX".into(), "kb".into());
    // The documents as articles alone: tests/lambda_semantic.rs checks them with vectors.
    env.insert("HELPDESK_MODEL".into(), "off".into());
    let mut tickets = Runtime::start("tickets", &env).await;
    let mut indexer = Runtime::start("kb-indexer", &env).await;

    // Supervisors write through the agent API: the articles land in the table, and nothing
    // reaches the domain until the indexer applies the stream.
    let articles = parse_articles(SAMPLE_KB).unwrap();
    for a in &articles {
        let (status, _) = supervisor(
            &mut tickets,
            "PUT",
            &format!("/kb/articles/{}", a.id),
            Some(serde_json::to_value(a).unwrap()),
        )
        .await;
        assert_eq!(status, 201, "{}", a.id);
    }
    let mut edited = articles[1].clone();
    edited.questions.push("密码忘了登录不上".into());
    let (status, _) = supervisor(
        &mut tickets,
        "PUT",
        &format!("/kb/articles/{}", edited.id),
        Some(serde_json::to_value(&edited).unwrap()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = supervisor(
        &mut tickets,
        "DELETE",
        "/kb/articles/working-hours-en",
        None,
    )
    .await;
    assert_eq!(status, 204);
    // `..` would leave `/kb/_doc/` on the domain. `..` and `%2E%2E` are resolved by the
    // Lambda adapter before routing (no route, no article); any other id outside the rule
    // is the core's 422.
    let body = json!({"title": "t", "questions": ["q"], "answer": "a"});
    for path in ["/kb/articles/..", "/kb/articles/%2E%2E"] {
        let (status, _) = supervisor(&mut tickets, "PUT", path, Some(body.clone())).await;
        assert_eq!(status, 404, "{path}");
    }
    for path in ["/kb/articles/a.b", "/kb/articles/a%2Fb", "/kb/articles/.x"] {
        let (status, answer) = supervisor(&mut tickets, "PUT", path, Some(body.clone())).await;
        assert_eq!(status, 422, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_article", "{path}");
    }
    assert!(domain.docs("kb").is_empty());
    let (status, body) =
        supervisor(&mut tickets, "GET", "/kb/articles/working-hours-zh", None).await;
    assert_eq!(
        (status, body["id"].as_str()),
        (200, Some("working-hours-zh"))
    );

    let table = DynamoKnowledge::new(&stack.config, stack.env["ARTICLES_TABLE"].clone());
    let expected: std::collections::BTreeMap<String, Value> = table
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.id.clone(), serde_json::to_value(a).unwrap()))
        .collect();
    assert_eq!(expected.len(), articles.len() - 1);

    // The domain fails: the batch is reported from its first record, to be delivered again.
    let stream = stack.articles_stream_event().await;
    let records = stream["Records"].as_array().unwrap();
    assert_eq!(records.len(), articles.len() + 2, "{stream}");
    domain.fail_next(1);
    let answer = indexer.invoke(stream.clone()).await.unwrap();
    assert_eq!(
        answer["batchItemFailures"],
        json!([{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}])
    );
    // Delivered again, twice: the index holds exactly the table, created with the mapping.
    for _ in 0..2 {
        let answer = indexer.invoke(stream.clone()).await.unwrap();
        assert_eq!(answer["batchItemFailures"], json!([]));
        assert_eq!(domain.docs("kb"), expected);
    }
    let mapping: Value =
        serde_json::from_str(include_str!("../infra/opensearch/knowledge-index.json")).unwrap();
    assert_eq!(domain.domain.lock().unwrap().indexes["kb"].0, mapping);

    // Search through the agent API goes to the domain, and the edit counts.
    let url = reqwest::Url::parse_with_params("http://api/kb/search", [("q", "密码忘了登录不上")])
        .unwrap();
    let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let (status, body) = supervisor(&mut tickets, "GET", &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hits"][0]["article_id"], "reset-password-zh", "{body}");
    assert_eq!(body["auto_reply"], true, "{body}");
    assert!(domain
        .domain
        .lock()
        .unwrap()
        .requests
        .iter()
        .any(|r| r == "POST /kb/_search"));

    // The domain lost an article and holds one the table no longer has: a reindex mends both.
    {
        let mut d = domain.domain.lock().unwrap();
        let docs = &mut d.indexes.get_mut("kb").unwrap().1;
        docs.remove("refund-policy-zh");
        docs.insert(
            "stale".into(),
            json!({"id": "stale", "title": "old", "questions": ["old"], "answer": "old"}),
        );
    }
    let answer = indexer.invoke(json!({"reindex": true})).await.unwrap();
    assert_eq!(
        answer,
        json!({"reindexed": {"written": expected.len(), "deleted": 1}})
    );
    assert_eq!(domain.docs("kb"), expected);

    // An event that is neither is refused, not taken for an empty batch.
    assert!(indexer.invoke(json!({"hello": "world"})).await.is_err());
    // The domain's calls went through the audit (the access policy grants them by role).
    let domain_calls: Vec<String> = indexer
        .audit
        .resolved()
        .into_iter()
        .filter(|(action, _)| action.starts_with("es:"))
        .map(|(action, _)| action)
        .collect();
    assert!(
        domain_calls.contains(&"es:ESHttpPost".to_string()),
        "{domain_calls:?}"
    );
    tickets.stop().await;
    indexer.stop().await;
}

#[tokio::test]
async fn the_tickets_function_serves_the_console_and_knows_cognito_agents_by_sub() {
    let stack = Stack::new().await;
    let mut env = stack.env.clone();
    for (k, v) in [
        (
            "HELPDESK_CONSOLE_OIDC_AUTHORIZE_URL",
            "https://desk.auth.example/oauth2/authorize",
        ),
        (
            "HELPDESK_CONSOLE_OIDC_TOKEN_URL",
            "https://desk.auth.example/oauth2/token",
        ),
        ("HELPDESK_CONSOLE_OIDC_CLIENT_ID", "console-client"),
    ] {
        env.insert(k.into(), v.into());
    }
    let mut tickets = Runtime::start("tickets", &env).await;

    let page = tickets
        .invoke(http_event("GET", "/console/", &[], None, None))
        .await
        .expect("an HTTP answer");
    assert_eq!(page["statusCode"], 200);
    assert!(page["headers"]["content-type"]
        .as_str()
        .unwrap()
        .starts_with("text/html"));
    let (status, config) = http_answer(
        &tickets
            .invoke(http_event("GET", "/console/config.json", &[], None, None))
            .await
            .expect("an HTTP answer"),
    );
    assert_eq!(status, 200);
    assert_eq!(config["auth"], "oidc");
    assert_eq!(config["client_id"], "console-client");
    // The article editor's limits are the core's, as `helpdesk serve` gives them.
    assert_eq!(
        config["article_limits"],
        json!({
            "questions": helpdesk_core::knowledge::MAX_QUESTIONS,
            "text_chars": helpdesk_core::knowledge::TEXT_MAX_CHARS,
            "answer_chars": helpdesk_core::knowledge::ANSWER_MAX_CHARS,
        })
    );

    // A Cognito access token: the agent is its sub, the role its highest group; a claim the
    // user can edit (email) names nobody.
    let mut event = http_event("GET", "/me", &[], None, None);
    event["requestContext"]["authorizer"] = json!({"jwt": {"claims": {
        "sub": "7d2f-sub", "email": "wang@example.com", "cognito:groups": "[agent supervisor]"
    }, "scopes": null}});
    let (status, me) = http_answer(&tickets.invoke(event).await.expect("an HTTP answer"));
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (&me["name"], &me["role"]),
        (&json!("7d2f-sub"), &json!("supervisor"))
    );
    // The first sign-in makes the agent's default profile, so the desk assigns to them.
    assert_eq!(me["profile"]["id"], "7d2f-sub", "{me}");
    assert_eq!(me["profile"]["available"], true);
}

#[tokio::test]
async fn the_intake_function_limits_sessions_per_source_address_on_dynamodb() {
    let stack = Stack::new().await;
    let mut env = stack.env.clone();
    env.insert("WEBCHAT_SESSIONS_PER_MINUTE".into(), "2".into());
    let mut intake = Runtime::start("intake", &env).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        // Every event comes from API Gateway's sourceIp 127.0.0.1 (see http_event).
        let event = http_event("POST", "/webchat/sessions", &[], Some(json!({})), None);
        answers.push(intake.invoke(event).await.expect("an HTTP answer"));
    }
    let statuses: Vec<u16> = answers.iter().map(|a| http_answer(a).0).collect();
    // Two a minute; the minute may turn during the three calls.
    assert!(
        statuses == [201, 201, 429] || statuses == [201, 201, 201],
        "{statuses:?}"
    );
    if statuses[2] == 429 {
        let (_, body) = http_answer(&answers[2]);
        assert_eq!(body["error"]["code"], "rate_limited");
        let wait: u64 = answers[2]["headers"]["retry-after"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("a Retry-After header");
        assert!((1..=60).contains(&wait));
    }
    // The session's end is stored as the table's TTL attribute.
    let (_, created) = http_answer(&answers[0]);
    let session_id = created["session_id"].as_str().unwrap();
    let client = aws_sdk_dynamodb::Client::new(&stack.config);
    let items = client
        .scan()
        .table_name(&stack.env["SESSIONS_TABLE"])
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let item = items
        .iter()
        .find(|i| i["body"].as_s().is_ok_and(|b| b.contains(session_id)))
        .expect("the session is stored");
    let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    let day = helpdesk_core::domain::now().timestamp() + 24 * 3600;
    assert!((expires - day).abs() < 60, "{expires}");
}

/// A visitor's session on the intake function: its bearer header and customer id.
async fn session(intake: &mut Runtime) -> (String, String) {
    let (status, session) = http_answer(
        &intake
            .invoke(http_event(
                "POST",
                "/webchat/sessions",
                &[],
                Some(json!({"locale": "zh-CN"})),
                None,
            ))
            .await
            .expect("an HTTP answer"),
    );
    assert_eq!(status, 201, "{session}");
    (
        format!("Bearer {}", session["token"].as_str().unwrap()),
        session["customer_id"].as_str().unwrap().to_string(),
    )
}

async fn say(intake: &mut Runtime, auth: &str, text: &str, client_id: &str) {
    let answer = intake
        .invoke(http_event(
            "POST",
            "/webchat/messages",
            &[("authorization", auth)],
            Some(json!({"text": text, "client_message_id": client_id})),
            None,
        ))
        .await
        .expect("an HTTP answer");
    assert_eq!(http_answer(&answer).0, 202, "{answer}");
}

fn failed_ids(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("a batch answer: {answer}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

/// The same auto-reply batch, handled at once by two instances of the function (the queue
/// is a standard one, and SQS delivers twice), then delivered a third time with a record
/// whose message is not stored yet: the customer's two hand-offs make one ticket with one
/// hand-off message, the redelivery changes nothing, and the batch answer names only the
/// record that failed.
#[tokio::test]
async fn redelivered_auto_reply_batches_make_one_ticket_and_report_only_the_failed_record() {
    use helpdesk_core::aws::DynamoStore;
    use helpdesk_core::domain::MessageKind;
    use helpdesk_core::ports::{ConversationStore, TicketStore};
    let stack = Stack::new().await;
    let mut intake = Runtime::start("intake", &stack.env).await;
    let mut router = Runtime::start("router", &stack.env).await;
    let mut first = Runtime::start("auto-reply", &stack.env).await;
    let mut second = Runtime::start("auto-reply", &stack.env).await;
    let (auth, customer) = session(&mut intake).await;
    // The knowledge base is empty: auto-reply hands both messages to an agent.
    say(&mut intake, &auth, "请问一下你们的营业时间", "a").await;
    say(&mut intake, &auth, "还有一个问题想咨询", "b").await;
    let answer = router
        .invoke(stack.drain("INBOUND_QUEUE_URL").await)
        .await
        .unwrap();
    assert_eq!(failed_ids(&answer), Vec::<String>::new());
    let batch = stack.drain("AUTO_REPLY_QUEUE_URL").await;
    assert_eq!(batch["Records"].as_array().unwrap().len(), 2, "{batch}");

    let (a, b) = tokio::join!(first.invoke(batch.clone()), second.invoke(batch.clone()));
    let ids: Vec<&str> = batch["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["messageId"].as_str().unwrap())
        .collect();
    for answer in [a.unwrap(), b.unwrap()] {
        // A copy that lost a race may be reported, to come again; nothing else is.
        for id in failed_ids(&answer) {
            assert!(ids.contains(&id.as_str()), "{answer}");
        }
    }

    // The third delivery, with a record for a message not stored yet: only it is reported.
    let mut again = batch.clone();
    let missing = json!({"message_id": "not-stored-yet", "customer_id": customer,
        "skill": "general", "priority": "normal"});
    again["Records"].as_array_mut().unwrap().insert(
        1,
        json!({"messageId": "missing-1", "body": missing.to_string(), "attributes": {}}),
    );
    let answer = first.invoke(again).await.unwrap();
    assert_eq!(failed_ids(&answer), ["missing-1"], "{answer}");

    let store = DynamoStore::new(&stack.config, stack.tables.clone());
    let ticket = store
        .active_ticket_for(&customer)
        .await
        .unwrap()
        .expect("a ticket");
    let theirs = tickets_of(&store, &customer).await;
    assert_eq!(theirs.len(), 1, "one ticket: {theirs:?}");
    let on_ticket = store.ticket_messages(&ticket.id).await.unwrap();
    let count = |kind: MessageKind| on_ticket.iter().filter(|m| m.kind == kind).count();
    assert_eq!(count(MessageKind::Text), 2, "{on_ticket:?}");
    assert_eq!(count(MessageKind::Handoff), 1, "{on_ticket:?}");
    // However often it was queued, one hand-off message is queued for dispatch.
    let outbound = stack.drain("OUTBOUND_QUEUE_URL").await;
    let queued: std::collections::HashSet<String> = outbound["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(queued.len(), 1, "{queued:?}");
    first.stop().await;
    second.stop().await;
}

/// A customer's follow-up to their resolved ticket reopens it on AWS, whichever function
/// decides: auto-reply (the knowledge base has no answer) or the router (words that go to
/// an agent straight away). The ticket's agent holds it again, and each function stays
/// within its grants (the audit, at each runtime's stop).
#[tokio::test]
async fn a_follow_up_reopens_the_resolved_ticket_through_either_function_with_its_grants() {
    use helpdesk_core::aws::DynamoStore;
    use helpdesk_core::domain::TicketStatus;
    use helpdesk_core::ports::{AgentStore, ConversationStore, TicketStore};
    let stack = Stack::new().await;
    let mut intake = Runtime::start("intake", &stack.env).await;
    let mut router = Runtime::start("router", &stack.env).await;
    let mut auto_reply = Runtime::start("auto-reply", &stack.env).await;
    let mut tickets = Runtime::start("tickets", &stack.env).await;
    let store = DynamoStore::new(&stack.config, stack.tables.clone());
    let (status, bob) = supervisor(
        &mut tickets,
        "PUT",
        "/agents/bob",
        Some(json!({"capacity": 5})),
    )
    .await;
    assert_eq!(status, 200, "{bob}");
    let (auth, customer) = session(&mut intake).await;
    say(&mut intake, &auth, "我要投诉，转人工", "first").await;
    let answer = router
        .invoke(stack.drain("INBOUND_QUEUE_URL").await)
        .await
        .unwrap();
    assert_eq!(failed_ids(&answer), Vec::<String>::new());
    let id = store
        .active_ticket_for(&customer)
        .await
        .unwrap()
        .unwrap()
        .id;

    for (round, text) in [(1, "请问一下进展如何"), (2, "投诉：还是不行，转人工")]
    {
        let version = version_of(&mut tickets, &id).await;
        let (status, resolved) = supervisor_with(
            &mut tickets,
            "PATCH",
            &format!("/tickets/{id}"),
            &[("if-match", &version)],
            Some(json!({"status": "resolved", "assignee": "bob"})),
        )
        .await;
        assert_eq!(status, 200, "{resolved}");
        let held = store.get_agent("bob").await.unwrap().unwrap().open_tickets;
        assert_eq!(held, 0, "round {round}: a resolved ticket is not held");

        say(&mut intake, &auth, text, &format!("follow-up-{round}")).await;
        let answer = router
            .invoke(stack.drain("INBOUND_QUEUE_URL").await)
            .await
            .unwrap();
        assert_eq!(failed_ids(&answer), Vec::<String>::new());
        if round == 1 {
            let batch = stack.drain("AUTO_REPLY_QUEUE_URL").await;
            assert_eq!(batch["Records"].as_array().unwrap().len(), 1, "{batch}");
            let answer = auto_reply.invoke(batch).await.unwrap();
            assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{answer}");
        }
        let ticket = store.get_ticket(&id).await.unwrap().unwrap();
        assert_eq!(ticket.status, TicketStatus::Open, "round {round}");
        assert_eq!(ticket.assignee.as_deref(), Some("bob"));
        assert_eq!(ticket.closes_at, None);
        let held = store.get_agent("bob").await.unwrap().unwrap().open_tickets;
        assert_eq!(held, 1, "round {round}: bob holds the reopened ticket");
        let on_ticket = store.ticket_messages(&id).await.unwrap();
        assert!(
            on_ticket.iter().any(|m| m.text == text),
            "round {round}: {on_ticket:?}"
        );
    }
    let theirs = tickets_of(&store, &customer).await;
    assert_eq!(theirs.len(), 1, "one ticket: {theirs:?}");
    intake.stop().await;
    router.stop().await;
    auto_reply.stop().await;
    tickets.stop().await;
}

/// The customer's tickets (at most 10), newest first.
async fn tickets_of(
    store: &helpdesk_core::aws::DynamoStore,
    customer: &str,
) -> Vec<helpdesk_core::domain::Ticket> {
    let theirs = helpdesk_core::domain::TicketFilter {
        customer_id: Some(customer.to_string()),
        ..Default::default()
    };
    helpdesk_core::ports::TicketStore::list_tickets(store, &theirs, 10, None)
        .await
        .unwrap()
        .items
}

/// A ticket made by a customer's hand-off words, through intake and the router.
async fn ticket_for(stack: &Stack, intake: &mut Runtime, router: &mut Runtime) -> (String, String) {
    let (auth, customer) = session(intake).await;
    say(intake, &auth, "我要投诉，转人工", "complaint").await;
    let answer = router
        .invoke(stack.drain("INBOUND_QUEUE_URL").await)
        .await
        .unwrap();
    assert_eq!(failed_ids(&answer), Vec::<String>::new());
    let store = helpdesk_core::aws::DynamoStore::new(&stack.config, stack.tables.clone());
    let ticket = helpdesk_core::ports::TicketStore::active_ticket_for(&store, &customer)
        .await
        .unwrap()
        .expect("the router opened a ticket");
    (ticket.id, customer)
}

/// The ticket's version, from the ETag of `GET /tickets/{id}`.
async fn version_of(tickets: &mut Runtime, id: &str) -> String {
    let answer = tickets
        .invoke(http_event(
            "GET",
            &format!("/tickets/{id}"),
            &[],
            None,
            Some(("alice", "supervisor")),
        ))
        .await
        .unwrap();
    answer["headers"]["etag"]
        .as_str()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// The survey function queues the survey, and the mark after it never happens (the queue
/// is gone): the batch answer names the close's record alone. The customer rates; the
/// stream delivers the records again, twice: the survey is marked sent and the rating and
/// comment stay.
#[tokio::test]
async fn a_redelivered_close_never_erases_the_rating_given_in_between() {
    let stack = Stack::new().await;
    let mut intake = Runtime::start("intake", &stack.env).await;
    let mut router = Runtime::start("router", &stack.env).await;
    let mut tickets = Runtime::start("tickets", &stack.env).await;
    let mut broken_env = stack.env.clone();
    let endpoint = &stack.env["AWS_ENDPOINT_URL"];
    broken_env.insert(
        "OUTBOUND_QUEUE_URL".into(),
        format!("{endpoint}/123456789012/no-such-queue"),
    );
    let mut broken = Runtime::start("survey", &broken_env).await;
    let mut survey = Runtime::start("survey", &stack.env).await;
    let (id, _) = ticket_for(&stack, &mut intake, &mut router).await;
    let version = version_of(&mut tickets, &id).await;
    let (status, closed) = supervisor_with(
        &mut tickets,
        "PATCH",
        &format!("/tickets/{id}"),
        &[("if-match", &version)],
        Some(json!({"status": "closed"})),
    )
    .await;
    assert_eq!(status, 200, "{closed}");

    let stream = stack.stream_event().await;
    let records = stream["Records"].as_array().unwrap();
    let close = records
        .iter()
        .find(|r| {
            r["dynamodb"]["NewImage"]["body"]["S"]
                .as_str()
                .is_some_and(|b| b.contains("\"status\":\"closed\""))
        })
        .expect("the close is on the stream");
    let answer = broken.invoke(stream.clone()).await.unwrap();
    assert_eq!(
        failed_ids(&answer),
        [close["dynamodb"]["SequenceNumber"].as_str().unwrap()],
        "{answer}"
    );

    // The survey message was stored before its send failed: its link is the customer's.
    let (_, view) = supervisor(&mut tickets, "GET", &format!("/tickets/{id}"), None).await;
    let link = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "survey")
        .and_then(|m| m["link"].as_str())
        .unwrap_or_else(|| panic!("a survey message with its link: {view}"))
        .to_string();
    let path = link.trim_start_matches("https://help.example.com");
    let (status, _) = http_answer(
        &tickets
            .invoke(http_event(
                "POST",
                path,
                &[],
                Some(json!({"rating": 5, "comment": "很满意"})),
                None,
            ))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200);

    for _ in 0..2 {
        let answer = survey.invoke(stream.clone()).await.unwrap();
        assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{answer}");
    }
    let (_, view) = supervisor(&mut tickets, "GET", &format!("/tickets/{id}"), None).await;
    let survey_record = &view["ticket"]["survey"];
    assert!(survey_record["sent_at"].is_string(), "{view}");
    assert_eq!(survey_record["rating"], 5, "{view}");
    assert_eq!(survey_record["comment"], "很满意", "{view}");
    let surveys = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "survey")
        .count();
    assert_eq!(surveys, 1, "{view}");
    broken.stop().await;
    survey.stop().await;
}

/// The tickets function saves an escalation and queues nothing (the process could die
/// right after): the stream's records, delivered to the change function twice, queue the
/// notice, and the dispatch function, handed that batch twice, posts it once.
#[tokio::test]
async fn a_crash_after_an_escalation_still_notifies_the_supervisor_once() {
    let stack = Stack::new().await;
    let webhook = common::FakeWebhook::start().await;
    let mut env = stack.env.clone();
    // In SSM, as the template gives it to dispatch.
    env.insert(
        "SUPERVISOR_WEBHOOK_URL_PARAM".into(),
        stack.parameter("supervisor-webhook", &webhook.url).await,
    );
    let mut intake = Runtime::start("intake", &env).await;
    let mut router = Runtime::start("router", &env).await;
    let mut tickets = Runtime::start("tickets", &env).await;
    let mut changes = Runtime::start("survey", &env).await;
    let mut dispatch = Runtime::start("dispatch", &env).await;
    let (id, _) = ticket_for(&stack, &mut intake, &mut router).await;
    // The hand-off is on its way; what follows is the escalation's alone.
    stack.drain("OUTBOUND_QUEUE_URL").await;
    let (status, body) = supervisor(
        &mut tickets,
        "POST",
        &format!("/tickets/{id}/escalate"),
        Some(json!({"reason": "客户要求退款并投诉"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let queued = stack.drain("OUTBOUND_QUEUE_URL").await;
    assert_eq!(
        queued["Records"],
        json!([]),
        "the route queues nothing itself"
    );

    let stream = stack.stream_event().await;
    for _ in 0..2 {
        let answer = changes.invoke(stream.clone()).await.unwrap();
        assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{answer}");
    }
    let notices = stack.drain("OUTBOUND_QUEUE_URL").await;
    let records = notices["Records"].as_array().unwrap();
    assert!(!records.is_empty(), "the change feed queued the notice");
    for _ in 0..2 {
        let answer = dispatch.invoke(notices.clone()).await.unwrap();
        assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{answer}");
    }
    // Dispatch answers once the webhook answered: what it posted is there now.
    let posted = webhook.received.lock().unwrap().clone();
    assert_eq!(posted.len(), 1, "posted once: {posted:?}");
    assert_eq!(posted[0]["ticket_id"], id.as_str());
    assert_eq!(posted[0]["reason"], "客户要求退款并投诉");
}

/// A supervisor's call to the tickets function, with headers.
async fn supervisor_with(
    tickets: &mut Runtime,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let event = http_event(method, path, headers, body, Some(("alice", "supervisor")));
    http_answer(&tickets.invoke(event).await.expect("an HTTP answer"))
}

/// An agent's reply whose queue send failed (the outbound queue is gone for the tickets
/// function) is stored and left queued; the router's schedule queues it again.
#[tokio::test]
async fn the_schedule_queues_again_a_reply_left_queued() {
    let stack = Stack::new().await;
    let mut intake = Runtime::start("intake", &stack.env).await;
    let mut router = Runtime::start("router", &stack.env).await;
    let (id, _) = ticket_for(&stack, &mut intake, &mut router).await;
    stack.drain("OUTBOUND_QUEUE_URL").await;
    let mut broken_env = stack.env.clone();
    let endpoint = &stack.env["AWS_ENDPOINT_URL"];
    broken_env.insert(
        "OUTBOUND_QUEUE_URL".into(),
        format!("{endpoint}/123456789012/no-such-queue"),
    );
    let mut broken = Runtime::start("tickets", &broken_env).await;
    let (status, _) = supervisor(
        &mut broken,
        "POST",
        &format!("/tickets/{id}/replies"),
        Some(json!({"text": "我们马上为您处理"})),
    )
    .await;
    assert_eq!(status, 500);
    let (_, view) = supervisor(&mut broken, "GET", &format!("/tickets/{id}"), None).await;
    let reply = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "agent_reply")
        .unwrap_or_else(|| panic!("the reply is stored: {view}"))
        .clone();
    assert_eq!(reply["status"], "queued");
    assert_eq!(
        stack.drain("OUTBOUND_QUEUE_URL").await["Records"],
        json!([])
    );

    let mut env = stack.env.clone();
    env.insert("HELPDESK_QUEUED_GRACE_SECS".into(), "0".into());
    let mut sweeper = Runtime::start("router", &env).await;
    let scheduled = json!({"version": "0", "id": "e1", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-29T17:00:00Z",
        "region": "us-east-1", "resources": [], "detail": {}});
    let answer = sweeper.invoke(scheduled).await.unwrap();
    assert!(
        answer["queued_again"].as_u64().unwrap_or(0) >= 1,
        "{answer}"
    );
    let queued = stack.drain("OUTBOUND_QUEUE_URL").await;
    assert!(
        queued["Records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["body"]
                .as_str()
                .unwrap_or_default()
                .contains(reply["id"].as_str().unwrap())),
        "{queued}"
    );
}

/// Two instances of the auto-reply function take the same job at once (SQS delivers
/// twice), and a ticket of the customer opens between their looks: the first is held
/// inside its search of the knowledge base (which has a confident answer), the ticket
/// opens, the second puts the message on it, then the first goes on. The message has one
/// outcome, the ticket: no auto-reply is stored or queued.
#[tokio::test]
async fn two_auto_reply_instances_on_one_job_give_its_message_one_outcome() {
    use aws_harness::fake_opensearch::FakeOpenSearch;
    use helpdesk_core::aws::{DynamoStore, OpenSearchKnowledge, QueueUrls, SqsQueue};
    use helpdesk_core::domain::{self, derived_id, Channel, ChannelIdentity, Message};
    use helpdesk_core::flow;
    use helpdesk_core::ports::{ConversationStore, CustomerStore, TicketStore};
    let stack = Stack::new().await;
    let domain_fake = FakeOpenSearch::start().await;
    let knowledge = OpenSearchKnowledge::new(&stack.config, &domain_fake.url, "kb").unwrap();
    knowledge
        .upsert(&parse_articles(SAMPLE_KB).unwrap())
        .await
        .unwrap();
    let mut env = stack.env.clone();
    env.insert("OPENSEARCH_URL".into(), domain_fake.url.clone());
    env.insert("OPENSEARCH_INDEX".into(), "kb".into());
    let first = Runtime::start("auto-reply", &env).await;
    let second = Runtime::start("auto-reply", &env).await;

    let store = DynamoStore::new(&stack.config, stack.tables.clone());
    let queue = SqsQueue::new(
        &stack.config,
        QueueUrls {
            inbound: stack.env["INBOUND_QUEUE_URL"].clone(),
            auto_reply: stack.env["AUTO_REPLY_QUEUE_URL"].clone(),
            outbound: stack.env["OUTBOUND_QUEUE_URL"].clone(),
        },
    );
    let chat = format!("tg-{}", domain::new_id());
    let customer = store
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Telegram,
                external_id: chat.clone(),
            },
            None,
            Some("en"),
        )
        .await
        .unwrap();
    let said = |text: &str| {
        Message::inbound(
            &helpdesk_core::domain::InboundMessage::text(
                Channel::Telegram,
                chat.clone(),
                text.into(),
                domain::now(),
            ),
            &customer.id,
        )
    };
    let batch_for = |message: &Message, customer: &str| {
        let job = json!({"message_id": message.id, "customer_id": customer,
            "skill": "general", "priority": "normal"});
        json!({"Records": [{"messageId": format!("copy-{}", message.id), "body": job.to_string(),
            "attributes": {}, "eventSource": "aws:sqs"}]})
    };
    // The same question asked earlier, first: the knowledge base answers it (the held run
    // would answer too), and the instance has its ranker trained, so that the search held
    // below is the question's own.
    let warm = Message::inbound(
        &helpdesk_core::domain::InboundMessage::text(
            Channel::Telegram,
            "warm-up".into(),
            "How do I reset my password?".into(),
            domain::now(),
        ),
        &customer.id,
    );
    store.append_message(&warm).await.unwrap();
    let answer = first.call(batch_for(&warm, &customer.id)).await.unwrap();
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{answer}");
    assert!(store
        .get_message(&derived_id(&warm.id, "auto_reply"))
        .await
        .unwrap()
        .is_some());
    let message = said("How do I reset my password?");
    store.append_message(&message).await.unwrap();
    let batch = batch_for(&message, &customer.id);

    let hold = domain_fake.hold_searches();
    let (held, ()) = tokio::join!(first.call(batch.clone()), async {
        hold.arrived().await;
        let other = said("我要人工客服");
        store.append_message(&other).await.unwrap();
        flow::open_ticket(
            &store,
            &queue,
            &customer,
            &other,
            None,
            flow::Opening::default(),
        )
        .await
        .unwrap();
        let answer = second.call(batch.clone()).await.unwrap();
        assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{answer}");
        domain_fake.domain.lock().unwrap().hold = None;
        hold.release_all();
    });
    assert_eq!(failed_ids(&held.unwrap()), Vec::<String>::new());

    let reply = derived_id(&message.id, "auto_reply");
    assert!(
        store.get_message(&reply).await.unwrap().is_none(),
        "no answer besides the ticket"
    );
    let ticket = store
        .active_ticket_for(&customer.id)
        .await
        .unwrap()
        .expect("the ticket");
    let stored = store.get_message(&message.id).await.unwrap().unwrap();
    assert_eq!(stored.ticket_id.as_deref(), Some(ticket.id.as_str()));
    let outbound = stack.drain("OUTBOUND_QUEUE_URL").await;
    assert!(
        outbound["Records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r["body"].as_str().unwrap().contains(&reply)),
        "{outbound}"
    );
    first.stop().await;
    second.stop().await;
}

/// Hands the router what waits on the inbound queue until nothing does: a merge's rounds.
async fn run_rounds(stack: &Stack, router: &mut Runtime) -> usize {
    let mut rounds = 0;
    loop {
        let event = stack.drain("INBOUND_QUEUE_URL").await;
        if event["Records"].as_array().is_none_or(|r| r.is_empty()) {
            return rounds;
        }
        let answer = router.invoke(event).await.expect("the batch is handled");
        assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{answer}");
        rounds += 1;
    }
}

/// Customer merges on AWS, with the grants they need: a small merge finishes inside the
/// tickets function's request (its holds released there); a big one goes on as a round
/// through the router, which folds the other customer's active ticket into the kept one
/// (releasing its agent's hold), removes the customer that went and releases the holds; and
/// a close made before the merge, reaching the survey function after it, surveys the
/// customer that stays (found through the merge's redirect). Each runtime's audit checks
/// that the template grants every call; this test checks that those paths ran.
#[tokio::test]
async fn merges_through_the_route_and_the_router_and_a_later_survey_run_with_their_grants() {
    use helpdesk_core::aws::DynamoStore;
    use helpdesk_core::domain::{AgentProfile, Channel, Message, MessageKind};
    use helpdesk_core::ports::{AgentStore, ConversationStore, TicketStore};

    let stack = Stack::new().await;
    let store = DynamoStore::new(&stack.config, stack.tables.clone());
    store
        .put_agent(&AgentProfile::default_for("alice"))
        .await
        .unwrap();
    let mut intake = Runtime::start("intake", &stack.env).await;
    let mut router = Runtime::start("router", &stack.env).await;
    let mut tickets = Runtime::start("tickets", &stack.env).await;
    let mut survey = Runtime::start("survey", &stack.env).await;

    // The customer that stays, with an active ticket; a small customer merged into it.
    let (kept, stays) = ticket_for(&stack, &mut intake, &mut router).await;
    let (_, small) = ticket_for(&stack, &mut intake, &mut router).await;
    let (status, merged) = supervisor(
        &mut tickets,
        "POST",
        &format!("/customers/{stays}/merge"),
        Some(json!({"from": small})),
    )
    .await;
    assert_eq!(status, 200, "{merged}");

    // The big one: a ticket closed (its survey not yet sent), then an active one held by an
    // agent, and more conversation than one request moves.
    let (auth, goes) = session(&mut intake).await;
    say(&mut intake, &auth, "我要投诉，转人工", "first").await;
    assert_eq!(run_rounds(&stack, &mut router).await, 1);
    let closed = store.active_ticket_for(&goes).await.unwrap().unwrap().id;
    let version = version_of(&mut tickets, &closed).await;
    let (status, body) = supervisor_with(
        &mut tickets,
        "PATCH",
        &format!("/tickets/{closed}"),
        &[("if-match", &version)],
        Some(json!({"status": "closed"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    say(&mut intake, &auth, "还是不行，转人工", "second").await;
    assert_eq!(run_rounds(&stack, &mut router).await, 1);
    let held = store.active_ticket_for(&goes).await.unwrap().unwrap().id;
    assert_ne!(held, closed);
    let version = version_of(&mut tickets, &held).await;
    let (status, body) = supervisor_with(
        &mut tickets,
        "PATCH",
        &format!("/tickets/{held}"),
        &[("if-match", &version)],
        Some(json!({"assignee": "alice"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for i in 0..200 {
        let mut m = Message::outbound(
            &goes,
            Channel::Webchat,
            MessageKind::AgentReply,
            format!("第 {i} 条"),
            None,
        );
        m.status = None;
        store.append_message(&m).await.unwrap();
    }
    let (status, running) = supervisor(
        &mut tickets,
        "POST",
        &format!("/customers/{stays}/merge"),
        Some(json!({"from": goes})),
    )
    .await;
    assert_eq!(status, 202, "{running}");
    assert!(run_rounds(&stack, &mut router).await >= 1);
    let (status, _) = supervisor(&mut tickets, "GET", &format!("/customers/{goes}"), None).await;
    assert_eq!(status, 404, "the merge finished");
    let folded = store.get_ticket(&held).await.unwrap().unwrap();
    assert_eq!(folded.customer_id, stays);
    assert!(!folded.status.is_active(), "{folded:?}");
    assert_eq!(
        store
            .get_agent("alice")
            .await
            .unwrap()
            .unwrap()
            .open_tickets,
        0,
        "the fold released the agent's hold"
    );

    // The stream brings the close, made under the customer that went, after the merge.
    let answer = survey
        .invoke(stack.stream_event().await)
        .await
        .expect("the stream batch is handled");
    assert!(
        answer
            .get("batchItemFailures")
            .is_none_or(|f| f == &json!([])),
        "{answer}"
    );
    let mut surveyed = Vec::new();
    for record in stack.drain("OUTBOUND_QUEUE_URL").await["Records"]
        .as_array()
        .unwrap()
    {
        let job: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
        let Some(id) = job["message_id"].as_str() else {
            continue;
        };
        let m = store.get_message(id).await.unwrap().unwrap();
        if m.kind == MessageKind::Survey {
            surveyed.push((m.ticket_id.clone(), m.customer_id.clone()));
        }
    }
    assert!(
        surveyed.contains(&(Some(closed.clone()), stays.clone())),
        "{surveyed:?}"
    );
    assert!(!surveyed.iter().any(|(t, _)| t.as_ref() == Some(&kept)));

    // The paths the review found without grants ran, each in its own function.
    let ran = |runtime: &Runtime, action: &str, resource: &str| {
        let calls = runtime.audit.resolved();
        assert!(
            calls.contains(&(action.to_string(), resource.to_string())),
            "{}: no {action} on {resource} in {calls:#?}",
            runtime.audit.binary
        );
    };
    ran(&tickets, "dynamodb:DeleteItem", "${IdempotencyTable.Arn}");
    ran(&tickets, "sqs:SendMessage", "${InboundQueue.Arn}");
    ran(&router, "dynamodb:DeleteItem", "${IdempotencyTable.Arn}");
    ran(&router, "dynamodb:DeleteItem", "${CustomersTable.Arn}");
    ran(&router, "dynamodb:UpdateItem", "${TicketsTable.Arn}");
    ran(&survey, "dynamodb:GetItem", "${IdempotencyTable.Arn}");
    let survey_key = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${SurveySecretParameter}";
    ran(&survey, "ssm:GetParameter", survey_key);
    ran(&tickets, "ssm:GetParameter", survey_key);
    ran(&intake, "ssm:GetParameter", survey_key);
}

/// The audit itself: a call is mapped through the environment to the template's resource
/// and must be granted to the function; what is not, or what the template's environment
/// for the function does not name, is a finding that names the function and the call.
#[test]
fn the_audit_names_each_call_the_template_does_not_grant() {
    use aws_harness::audit::{findings, Call, On};
    let env: std::collections::HashMap<String, String> = [
        ("TICKETS_TABLE", "t-tickets"),
        ("IDEMPOTENCY_TABLE", "t-idempotency"),
        ("ARTICLES_TABLE", "t-articles"),
        ("OUTBOUND_QUEUE_URL", "http://emulator/1/outbound"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let call = |action: &str, on: On| Call {
        action: action.into(),
        on,
    };
    let granted = [
        call("dynamodb:GetItem", On::Table("t-tickets".into())),
        call(
            "dynamodb:Query",
            On::Index("t-tickets".into(), "sla_due".into()),
        ),
    ];
    assert_eq!(
        findings("sla", &env, &granted.iter().cloned().collect()),
        Vec::<String>::new()
    );
    let not = [
        // The review's kind of miss: a table the function is not granted.
        call("dynamodb:GetItem", On::Table("t-idempotency".into())),
        // An action not granted on a table that is.
        call("dynamodb:Scan", On::Table("t-tickets".into())),
        // A query on an index, granted only on the table itself.
        call("dynamodb:Query", On::Table("t-tickets".into())),
        call(
            "sqs:SendMessage",
            On::Queue("http://emulator/1/outbound".into()),
        ),
        // A table the template does not give the function at all.
        call("dynamodb:GetItem", On::Table("t-articles".into())),
        call("dynamodb:GetItem", On::Unread("?".into())),
    ];
    let found = findings("sla", &env, &not.iter().cloned().collect());
    assert_eq!(found.len(), not.len(), "{found:#?}");
    assert!(found.iter().all(|f| f.starts_with("SlaFunction: ")));
    assert!(found
        .iter()
        .any(|f| f.contains("dynamodb:GetItem on ${IdempotencyTable.Arn}")));
    assert!(found
        .iter()
        .any(|f| f.contains("sqs:SendMessage on ${OutboundQueue.Arn}")));
    assert!(found
        .iter()
        .any(|f| f.contains("t-articles") && f.contains("ARTICLES_TABLE")));
    // The SAM policy template's wildcard, on the queue it names; the router's own
    // dead-letter queue, which the template sets per function.
    let mut router_env = env.clone();
    router_env.insert(
        "DEAD_LETTER_QUEUE_URL".into(),
        "http://emulator/1/dl".into(),
    );
    let sends = [
        call(
            "sqs:SendMessage",
            On::Queue("http://emulator/1/outbound".into()),
        ),
        call("sqs:SendMessage", On::Queue("http://emulator/1/dl".into())),
    ];
    assert_eq!(
        findings("router", &router_env, &sends.iter().cloned().collect()),
        Vec::<String>::new()
    );
    // Dispatch's dead-letter queue is its own (OutboundDeadLetters, granted); the queue it
    // takes its jobs from is not one it may send to.
    let dispatch = findings("dispatch", &router_env, &sends.iter().cloned().collect());
    assert_eq!(
        dispatch,
        vec![
            "DispatchFunction: sqs:SendMessage on ${OutboundQueue.Arn} (queue \
              http://emulator/1/outbound): not granted by the function's Policies"
        ]
    );
}

/// What the proxy reads from a request: a transaction as each item's own action on its
/// table, a batch by table, an SQS call in either protocol, an SSM read by name.
#[test]
fn the_audit_reads_each_call_as_iam_checks_it() {
    use aws_harness::audit::{aws_calls, Call, On};
    use axum::http::HeaderMap;
    let headers = |target: &str| {
        let mut h = HeaderMap::new();
        h.insert("x-amz-target", target.parse().unwrap());
        h
    };
    let calls = |h: &HeaderMap, body: Value| -> Vec<(String, On)> {
        aws_calls(h, body.to_string().as_bytes())
            .into_iter()
            .map(|Call { action, on }| (action, on))
            .collect()
    };
    assert_eq!(
        calls(
            &headers("DynamoDB_20120810.TransactWriteItems"),
            json!({"TransactItems": [
                {"Put": {"TableName": "customers", "Item": {}}},
                {"Update": {"TableName": "tickets", "Key": {}}},
                {"Delete": {"TableName": "idempotency", "Key": {}}},
                {"ConditionCheck": {"TableName": "tickets", "Key": {}}}
            ]})
        ),
        vec![
            ("dynamodb:PutItem".into(), On::Table("customers".into())),
            ("dynamodb:UpdateItem".into(), On::Table("tickets".into())),
            (
                "dynamodb:DeleteItem".into(),
                On::Table("idempotency".into())
            ),
            (
                "dynamodb:ConditionCheckItem".into(),
                On::Table("tickets".into())
            ),
        ]
    );
    assert_eq!(
        calls(
            &headers("DynamoDB_20120810.BatchGetItem"),
            json!({"RequestItems": {"articles": {"Keys": []}}})
        ),
        vec![("dynamodb:BatchGetItem".into(), On::Table("articles".into()))]
    );
    assert_eq!(
        calls(
            &headers("DynamoDB_20120810.Query"),
            json!({"TableName": "tickets", "IndexName": "waiting"})
        ),
        vec![(
            "dynamodb:Query".into(),
            On::Index("tickets".into(), "waiting".into())
        )]
    );
    assert_eq!(
        calls(
            &headers("AmazonSQS.SendMessageBatch"),
            json!({"QueueUrl": "http://q/1/outbound", "Entries": []})
        ),
        vec![(
            "sqs:SendMessage".into(),
            On::Queue("http://q/1/outbound".into())
        )]
    );
    assert_eq!(
        calls(
            &headers("AmazonSSM.GetParameter"),
            json!({"Name": "/helpdesk/survey-secret", "WithDecryption": true})
        ),
        vec![(
            "ssm:GetParameter".into(),
            On::Parameter("/helpdesk/survey-secret".into())
        )]
    );
    let mut query = HeaderMap::new();
    query.insert(
        "authorization",
        "AWS4-HMAC-SHA256 Credential=test/20261130/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0"
            .parse()
            .unwrap(),
    );
    assert_eq!(
        aws_calls(
            &query,
            b"Action=ChangeMessageVisibility&QueueUrl=http%3A%2F%2Fq%2F1%2Fout&VisibilityTimeout=5"
        ),
        vec![Call {
            action: "sqs:ChangeMessageVisibility".into(),
            on: On::Queue("http://q/1/out".into())
        }]
    );
    // What the audit cannot read is kept, and never granted.
    assert!(matches!(
        calls(&headers("AmazonKMS.Decrypt"), json!({}))[0].1,
        On::Unread(_)
    ));
}

/// Canned responses through the tickets function, with the template's grants (the audit, at
/// the runtime's stop): a create and a delete are transactions with the counter item, a
/// replace a conditional put, the list a query of the table itself.
#[tokio::test]
async fn canned_responses_are_kept_through_the_tickets_function_with_its_grants() {
    let stack = Stack::new().await;
    let mut tickets = Runtime::start("tickets", &stack.env).await;
    let refund = "/canned-responses/%E9%80%80%E6%AC%BE";
    let body = json!({"content": "您好，退款将在 3 个工作日内原路退回。"});
    let (status, made) = supervisor(&mut tickets, "PUT", refund, Some(body.clone())).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["short_code"], "退款");
    let (status, _) = supervisor(&mut tickets, "PUT", refund, Some(body)).await;
    assert_eq!(status, 200);
    let (status, _) = supervisor(
        &mut tickets,
        "PUT",
        "/canned-responses/Hello",
        Some(json!({"content": "Hello! How can I help?"})),
    )
    .await;
    assert_eq!(status, 201);
    // An agent reads them, in order of code, and may not write.
    let event = http_event(
        "GET",
        "/canned-responses",
        &[],
        None,
        Some(("wang", "agent")),
    );
    let (status, list) = http_answer(&tickets.invoke(event).await.expect("an HTTP answer"));
    assert_eq!(status, 200, "{list}");
    let codes: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["short_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["hello", "退款"]);
    let event = http_event("DELETE", refund, &[], None, Some(("wang", "agent")));
    let (status, refused) = http_answer(&tickets.invoke(event).await.expect("an HTTP answer"));
    assert_eq!(
        (status, &refused["error"]["code"]),
        (403, &json!("forbidden"))
    );
    let (status, _) = supervisor(&mut tickets, "DELETE", refund, None).await;
    assert_eq!(status, 204);
    let (status, gone) = supervisor(&mut tickets, "DELETE", refund, None).await;
    assert_eq!((status, &gone["error"]["code"]), (404, &json!("not_found")));
    tickets.stop().await;
}
