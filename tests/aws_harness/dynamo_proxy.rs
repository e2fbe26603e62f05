//! A proxy on 127.0.0.1 in front of the AWS emulator's DynamoDB: every request goes through
//! to the emulator as it came, and the proxy notes each one's operation (`X-Amz-Target`).
//! A test may have it act on `UpdateItem` calls: answer them as throttled, or run a step of
//! its own (another writer's edit) before the first one goes through, holding the others
//! until that step is done; or run a step before the first call of any operation on a
//! given table (another function's work landing between two of the adapter's writes). The adapter under test talks to it as to DynamoDB.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

type Step = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What the proxy does with an `UpdateItem`.
pub enum OnUpdate {
    /// Lets it through.
    Forward,
    /// Answers every one as DynamoDB does when the table's throughput is exceeded.
    Throttle,
    /// Runs the step before the first one goes through (the others wait for it), then lets
    /// them all through.
    Before(Step),
}

/// A step to run before the first call of an operation on a table.
struct Armed {
    operation: String,
    table: String,
    step: Step,
}

struct Inner {
    upstream: String,
    client: reqwest::Client,
    on_update: tokio::sync::Mutex<OnUpdate>,
    before: tokio::sync::Mutex<Option<Armed>>,
    operations: Mutex<Vec<String>>,
    /// The items the queries read (their `ScannedCount`), what DynamoDB bills them by.
    scanned: Mutex<u64>,
}

pub struct DynamoProxy {
    /// An SDK configuration that reaches DynamoDB through the proxy.
    pub config: aws_config::SdkConfig,
    inner: Arc<Inner>,
}

impl DynamoProxy {
    /// A proxy to the emulator `config` points at, letting everything through.
    pub async fn start(config: &aws_config::SdkConfig) -> DynamoProxy {
        let upstream = std::env::var("AWS_ENDPOINT_URL").expect("the emulator's address");
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            on_update: tokio::sync::Mutex::new(OnUpdate::Forward),
            before: tokio::sync::Mutex::new(None),
            operations: Mutex::default(),
            scanned: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = config.to_builder().endpoint_url(url).build();
        DynamoProxy { config, inner }
    }

    /// From now on, `UpdateItem` calls get `on`.
    pub async fn on_update(&self, on: OnUpdate) {
        *self.inner.on_update.lock().await = on;
    }

    /// Runs `step` before the first `UpdateItem` from now on goes through.
    pub async fn before_update<F>(&self, step: impl FnOnce() -> F + Send + 'static)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.on_update(OnUpdate::Before(Box::new(move || Box::pin(step()))))
            .await;
    }

    /// Runs `step` before the first call of `operation` (`"PutItem"`) on the table whose
    /// name is `table` goes through; calls that come meanwhile wait for it. The step should
    /// reach DynamoDB some other way than through this proxy.
    pub async fn before_call<F>(
        &self,
        operation: &str,
        table: &str,
        step: impl FnOnce() -> F + Send + 'static,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        *self.inner.before.lock().await = Some(Armed {
            operation: operation.to_string(),
            table: table.to_string(),
            step: Box::new(move || Box::pin(step())),
        });
    }

    /// How many items the queries that came through so far read, filtered out or not.
    pub fn scanned(&self) -> u64 {
        *self.inner.scanned.lock().unwrap()
    }

    /// How many calls of `operation` (`"UpdateItem"`, `"Scan"`) came through so far,
    /// counting those the proxy answered itself.
    pub fn count(&self, operation: &str) -> usize {
        self.inner
            .operations
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.as_str() == operation)
            .count()
    }
}

async fn forward(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_string();
    inner.operations.lock().unwrap().push(operation.clone());
    {
        let mut before = inner.before.lock().await;
        let hit = before.as_ref().is_some_and(|armed| {
            armed.operation == operation
                && serde_json::from_slice::<serde_json::Value>(&body)
                    .is_ok_and(|b| b["TableName"] == armed.table.as_str())
        });
        if hit {
            if let Some(armed) = before.take() {
                // Run while the lock is held: the other calls wait for the step.
                (armed.step)().await;
            }
        }
    }
    if operation == "UpdateItem" {
        let mut on = inner.on_update.lock().await;
        match std::mem::replace(&mut *on, OnUpdate::Forward) {
            OnUpdate::Forward => {}
            OnUpdate::Throttle => {
                *on = OnUpdate::Throttle;
                return (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/x-amz-json-1.0")],
                    r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#,
                )
                    .into_response();
            }
            // Run while the lock is held: the other updates wait for the step.
            OnUpdate::Before(step) => step().await,
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut to = inner
        .client
        .request(parts.method, format!("{}{path}", inner.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length") {
            to = to.header(name, value);
        }
    }
    let answer = to.send().await.unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap();
    if operation == "Query" {
        let read = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["ScannedCount"].as_u64())
            .unwrap_or(0);
        *inner.scanned.lock().unwrap() += read;
    }
    let mut response = (status, bytes).into_response();
    for (name, value) in &headers {
        let skip: [HeaderName; 3] = [
            axum::http::header::CONTENT_LENGTH,
            axum::http::header::TRANSFER_ENCODING,
            axum::http::header::CONNECTION,
        ];
        if !skip.contains(name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}
