//! Runs the real Lambda binaries against a local Lambda Runtime API and the AWS emulator.
//!
//! [`Runtime`] is a small implementation of the Runtime API (`/2018-06-01/runtime/...`)
//! on 127.0.0.1: a test queues an event, the binary polls for it, handles it and posts the
//! response back. [`Stack`] creates a fresh set of tables and queues on the emulator and the
//! environment each function needs. Every [`Runtime`] is audited ([`audit`]): each AWS call
//! its process makes must be granted to its function by `template.yaml`, or the test fails.
#![allow(dead_code)]

pub mod audit;
pub mod dynamo_proxy;
pub mod fake_opensearch;
#[path = "../template/mod.rs"]
pub mod template;

use aws_sdk_dynamodb::config::{Credentials, Region};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

const WAIT: Duration = Duration::from_secs(30);

/// Where cargo put the workspace's binaries: beside this test's own directory, or in
/// `HELPDESK_LAMBDA_BIN_DIR` (a measurement drives the release binaries from a debug build).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let beside = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target directory")
        .to_path_buf();
    let dir = std::env::var_os("HELPDESK_LAMBDA_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or(beside);
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

struct Pending {
    events: Mutex<mpsc::UnboundedReceiver<(String, Value)>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Result<Value, Value>>>>,
    init_error: Mutex<Option<Value>>,
    /// When the process first asked for an event: the end of its initialisation.
    first_poll: Mutex<Option<Instant>>,
}

/// A Lambda Runtime API serving one function process.
pub struct Runtime {
    pub addr: String,
    sender: mpsc::UnboundedSender<(String, Value)>,
    state: Arc<Pending>,
    child: Option<Child>,
    /// How long the process took from start to its first answered event.
    pub first_answer: Option<Duration>,
    started: Instant,
    /// The AWS calls of the process, checked against the template when the runtime goes.
    pub audit: audit::Audit,
}

async fn next(State(state): State<Arc<Pending>>) -> impl IntoResponse {
    state
        .first_poll
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    // Hold the lock only to take one event; the process polls again for the next.
    let event = {
        let mut rx = state.events.lock().unwrap();
        rx.try_recv().ok()
    };
    let (id, event) = match event {
        Some(e) => e,
        None => loop {
            tokio::time::sleep(Duration::from_millis(2)).await;
            if let Ok(e) = state.events.lock().unwrap().try_recv() {
                break e;
            }
        },
    };
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000;
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:test"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000".parse().unwrap(),
    );
    (headers, axum::Json(event))
}

/// Hands the function's answer (or reported error) to the test waiting on `id`.
fn settle(state: &Pending, id: &str, body: &[u8], ok: bool) -> StatusCode {
    let value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Some(tx) = state.waiting.lock().unwrap().remove(id) {
        let _ = tx.send(if ok { Ok(value) } else { Err(value) });
    }
    StatusCode::ACCEPTED
}

async fn respond(
    State(state): State<Arc<Pending>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    settle(&state, &id, &body, true)
}

async fn fail(
    State(state): State<Arc<Pending>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    settle(&state, &id, &body, false)
}

async fn init_error(State(state): State<Arc<Pending>>, body: axum::body::Bytes) -> StatusCode {
    *state.init_error.lock().unwrap() = Some(serde_json::from_slice(&body).unwrap_or(Value::Null));
    StatusCode::ACCEPTED
}

impl Runtime {
    /// Starts the Runtime API and the function `binary` with `env`, audited.
    pub async fn start(name: &str, env: &HashMap<String, String>) -> Runtime {
        Runtime::launch(name, env, audit::Audit::start(name, env).await).await
    }

    /// [`Runtime::start`] without the audit's proxies, for the cold-start measurements
    /// (`examples/`) alone: every test starts its functions audited.
    pub async fn start_unaudited(name: &str, env: &HashMap<String, String>) -> Runtime {
        Runtime::launch(name, env, audit::Audit::off(name, env)).await
    }

    async fn launch(name: &str, env: &HashMap<String, String>, audit: audit::Audit) -> Runtime {
        let (sender, receiver) = mpsc::unbounded_channel();
        let state = Arc::new(Pending {
            events: Mutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
            first_poll: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut command = Command::new(binary(name));
        for bypass in audit::Audit::bypasses() {
            command.env_remove(bypass);
        }
        let started = Instant::now();
        let child = command
            .envs(env)
            .envs(audit.endpoints().iter().cloned())
            .env("AWS_LAMBDA_RUNTIME_API", &addr)
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the function");
        Runtime {
            addr,
            sender,
            state,
            child: Some(child),
            first_answer: None,
            started,
            audit,
        }
    }

    /// Sends one event and waits for the function's answer (`Err` for a reported error).
    pub async fn invoke(&mut self, event: Value) -> Result<Value, Value> {
        let answer = self.call(event).await;
        if self.first_answer.is_none() {
            self.first_answer = Some(self.started.elapsed());
        }
        answer
    }

    /// [`Runtime::invoke`] through a shared reference, for a test that queues many events
    /// at once: the process takes them one at a time, as one Lambda instance does.
    pub async fn call(&self, event: Value) -> Result<Value, Value> {
        let id = format!("req-{}", helpdesk_core::domain::new_id());
        let (tx, rx) = oneshot::channel();
        self.state.waiting.lock().unwrap().insert(id.clone(), tx);
        self.sender.send((id, event)).unwrap();
        match tokio::time::timeout(WAIT, rx).await {
            Ok(Ok(answer)) => answer,
            _ => panic!(
                "no answer from the function; init error: {:?}",
                self.state.init_error.lock().unwrap()
            ),
        }
    }

    /// How long the process took from its start to its first request for an event (its
    /// initialisation, as Lambda's "Init Duration" counts it), once it has asked.
    pub fn ready_after(&self) -> Option<Duration> {
        let at = *self.state.first_poll.lock().unwrap();
        at.map(|at| at - self.started)
    }

    /// The process's peak resident memory so far (`VmHWM`), in KiB, where /proc has it.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The CPU time (user and system) the process has used so far, where /proc has it.
    pub fn cpu_time(&self) -> Option<Duration> {
        let pid = self.child.as_ref()?.id()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command name (which is in parentheses and may hold spaces):
        // utime and stime are the 12th and 13th, in clock ticks (100 a second on Linux).
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    /// Stops the process, and checks its AWS calls against the template (as dropping the
    /// runtime does).
    pub async fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}

/// However a test ends with its runtimes, their calls are checked: a call that the template
/// does not grant fails the test, naming the function, the call and the grant it lacks
/// (only told, not raised, while the test is already failing: a second panic would abort
/// the run).
impl Drop for Runtime {
    fn drop(&mut self) {
        self.audit.assert_granted();
    }
}

/// An API Gateway HTTP API (payload 2.0) event, with JWT claims when `agent` is given.
pub fn http_event(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
    agent: Option<(&str, &str)>,
) -> Value {
    let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut h: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_lowercase(), json!(v)))
        .collect();
    h.insert("content-type".into(), json!("application/json"));
    let mut context = json!({
        "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
        "domainPrefix": "api", "requestId": helpdesk_core::domain::new_id(), "routeKey": "$default",
        "stage": "$default", "time": "24/Nov/2026:07:00:00 +0000", "timeEpoch": 0,
        "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"}
    });
    if let Some((name, role)) = agent {
        context["authorizer"] = json!({"jwt": {"claims": {"sub": "u-1", "email": name, "email_verified": "true", "helpdesk_role": role}, "scopes": null}});
    }
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": query,
        "headers": h, "requestContext": context,
        "body": body.map(|b| b.to_string()), "isBase64Encoded": false
    })
}

/// The JSON body of an HTTP API response, with its status.
pub fn http_answer(answer: &Value) -> (u16, Value) {
    let status = answer["statusCode"].as_u64().unwrap_or(0) as u16;
    let body = answer["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// Tables, queues and the environment of one test's functions on the emulator.
pub struct Stack {
    pub config: aws_config::SdkConfig,
    pub env: HashMap<String, String>,
    pub sqs: aws_sdk_sqs::Client,
    pub tables: helpdesk_core::aws::Tables,
    /// What names this stack's tables, queues and parameters apart from other tests'.
    prefix: String,
}

/// Puts a SecureString parameter `/{prefix}helpdesk/{name}`, and answers its name.
async fn put_parameter(
    config: &aws_config::SdkConfig,
    prefix: &str,
    name: &str,
    value: &str,
) -> String {
    let path = format!("/{prefix}helpdesk/{name}");
    aws_sdk_ssm::Client::new(config)
        .put_parameter()
        .name(&path)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    path
}

impl Stack {
    pub async fn new() -> Stack {
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .unwrap_or_else(|_| panic!("AWS_ENDPOINT_URL is not set: run scripts/test, which starts the local AWS emulator"));
        let config = helpdesk_core::aws::config_loader()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .endpoint_url(&endpoint)
            .load()
            .await;
        let prefix = format!("s{}-", helpdesk_core::domain::new_id());
        let tables = helpdesk_core::aws::Tables::with_prefix(&prefix);
        let dynamo = aws_sdk_dynamodb::Client::new(&config);
        helpdesk_core::aws::schema::create_tables(&dynamo, &tables)
            .await
            .unwrap();
        let articles = format!("{prefix}articles");
        dynamo
            .create_table()
            .table_name(&articles)
            .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
            .key_schema(
                aws_sdk_dynamodb::types::KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                aws_sdk_dynamodb::types::AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            // As template.yaml declares it when the OpenSearch domain is on.
            .stream_specification(
                aws_sdk_dynamodb::types::StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let sqs = aws_sdk_sqs::Client::new(&config);
        let queue = |name: String, fifo: bool| {
            let sqs = sqs.clone();
            async move {
                let mut req = sqs.create_queue().queue_name(name);
                if fifo {
                    req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
                }
                req.send().await.unwrap().queue_url.unwrap()
            }
        };
        let inbound = queue(format!("{prefix}inbound.fifo"), true).await;
        let auto_reply = queue(format!("{prefix}auto-reply"), false).await;
        let outbound = queue(format!("{prefix}outbound"), false).await;
        // One dead-letter queue for every function here (the template gives each its own).
        let dead_letters = queue(format!("{prefix}dead-letters"), false).await;
        // The survey key in SSM, as the template gives it: the functions read it there, so
        // their roles' grant on the parameter is audited too.
        let survey_secret =
            put_parameter(&config, &prefix, "survey-secret", "survey-secret-for-tests").await;
        let env: HashMap<String, String> = [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("TICKETS_TABLE", &tables.tickets),
            ("CUSTOMERS_TABLE", &tables.customers),
            ("IDENTITIES_TABLE", &tables.identities),
            ("MESSAGES_TABLE", &tables.messages),
            ("IDEMPOTENCY_TABLE", &tables.idempotency),
            ("SESSIONS_TABLE", &tables.sessions),
            ("CANNED_RESPONSES_TABLE", &tables.canned_responses),
            ("ARTICLES_TABLE", &articles),
            ("INBOUND_QUEUE_URL", &inbound),
            ("AUTO_REPLY_QUEUE_URL", &auto_reply),
            ("OUTBOUND_QUEUE_URL", &outbound),
            ("DEAD_LETTER_QUEUE_URL", &dead_letters),
            ("HELPDESK_SURVEY_SECRET_PARAM", &survey_secret),
            ("HELPDESK_PUBLIC_URL", "https://help.example.com"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Stack {
            config,
            env,
            sqs,
            tables,
            prefix,
        }
    }

    /// Puts `value` in SSM as a SecureString under this stack's own path, and answers the
    /// parameter's name: for a test to give a function `NAME_PARAM` rather than `NAME`, as
    /// the template does, so that the read and its grant run.
    pub async fn parameter(&self, name: &str, value: &str) -> String {
        put_parameter(&self.config, &self.prefix, name, value).await
    }

    /// Takes what is waiting on a queue as the SQS event Lambda would get, deleting it.
    pub async fn drain(&self, url_var: &str) -> Value {
        let url = &self.env[url_var];
        let mut records = Vec::new();
        for _ in 0..3 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
                )
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() && !records.is_empty() {
                break;
            }
            for m in messages {
                let mut attributes = json!({});
                if let Some(g) = m.attributes.as_ref().and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                }) {
                    attributes["MessageGroupId"] = json!(g);
                }
                records.push(json!({
                    "messageId": m.message_id.clone().unwrap_or_default(),
                    "receiptHandle": m.receipt_handle.clone().unwrap_or_default(),
                    "body": m.body.clone().unwrap_or_default(),
                    "attributes": attributes,
                    "eventSource": "aws:sqs",
                }));
                self.sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle.unwrap_or_default())
                    .send()
                    .await
                    .unwrap();
            }
        }
        json!({"Records": records})
    }

    /// The tickets table's stream records so far, as the event Lambda would get.
    pub async fn stream_event(&self) -> Value {
        self.stream_event_of(&self.tables.tickets).await
    }

    /// The articles table's stream records so far.
    pub async fn articles_stream_event(&self) -> Value {
        self.stream_event_of(&self.env["ARTICLES_TABLE"]).await
    }

    async fn stream_event_of(&self, table: &str) -> Value {
        let dynamo = aws_sdk_dynamodb::Client::new(&self.config);
        let arn = dynamo
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap()
            .table
            .and_then(|t| t.latest_stream_arn)
            .unwrap_or_else(|| panic!("{table} has a stream"));
        let streams = aws_sdk_dynamodbstreams::Client::new(&self.config);
        let shards = streams
            .describe_stream()
            .stream_arn(&arn)
            .send()
            .await
            .unwrap()
            .stream_description
            .and_then(|d| d.shards)
            .unwrap_or_default();
        let mut records = Vec::new();
        for shard in shards {
            let iterator = streams
                .get_shard_iterator()
                .stream_arn(&arn)
                .shard_id(shard.shard_id.unwrap_or_default())
                .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap()
                .shard_iterator;
            let out = streams
                .get_records()
                .set_shard_iterator(iterator)
                .send()
                .await
                .unwrap();
            for r in out.records.unwrap_or_default() {
                let Some(change) = r.dynamodb else { continue };
                let image = |img: Option<
                    HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>,
                >| {
                    let mut out = serde_json::Map::new();
                    for (k, v) in img.unwrap_or_default() {
                        match v {
                            aws_sdk_dynamodbstreams::types::AttributeValue::S(s) => {
                                out.insert(k, json!({"S": s}));
                            }
                            aws_sdk_dynamodbstreams::types::AttributeValue::N(n) => {
                                out.insert(k, json!({"N": n}));
                            }
                            // Lambda's stream events carry binary as base64.
                            aws_sdk_dynamodbstreams::types::AttributeValue::B(b) => {
                                out.insert(k, json!({"B": base64_of(b.as_ref())}));
                            }
                            _ => {}
                        }
                    }
                    Value::Object(out)
                };
                records.push(json!({
                    "eventName": r.event_name.map(|e| e.as_str().to_string()),
                    "dynamodb": {
                        "SequenceNumber": change.sequence_number,
                        "NewImage": image(change.new_image),
                        "OldImage": image(change.old_image),
                    }
                }));
            }
        }
        json!({"Records": records})
    }
}

/// Standard base64 with padding, as Lambda's DynamoDB stream events encode binary.
pub fn base64_of(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
