//! Drives the real `helpdesk` binary over HTTP: each test starts its own server on a free
//! port with its own data directory, and a fake supervisor webhook when it needs one.
#![allow(dead_code)]

use axum::routing::post;
use axum::Json;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const ADMIN: &str = "test-admin-token";
pub const ALICE: &str = "alice-token-123";
pub const BOB: &str = "bob-supervisor-token";

/// How long to wait for the asynchronous part of the flow before failing.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "helpdesk-test-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos}-{}", N.fetch_add(1, Ordering::SeqCst))
}

pub struct Server {
    child: Child,
    pub base: String,
    pub http: Client,
}

/// What a server wrote to its log (stderr), for tests of what is and is not logged.
pub type Log = Arc<Mutex<String>>;

impl Server {
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_inner(data_dir, env, None).await
    }

    /// A server whose log is kept; `env` usually sets `HELPDESK_LOG`.
    pub async fn start_logged(data_dir: &Path, env: &[(&str, &str)]) -> (Server, Log) {
        let log = Log::default();
        let server = Server::start_inner(data_dir, env, Some(log.clone())).await;
        (server, log)
    }

    async fn start_inner(data_dir: &Path, env: &[(&str, &str)], log: Option<Log>) -> Server {
        // The desk assigns tickets itself only in the tests of assignment, which pass their
        // own rules: elsewhere an assignment racing a test's If-Match would make it flaky.
        let rules = data_dir.join("test-rules.toml");
        std::fs::write(&rules, "[assignment]\nauto = false\n").unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_helpdesk"));
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("HELPDESK_RULES", &rules)
            .env("HELPDESK_ADMIN_TOKEN", ADMIN)
            .env(
                "HELPDESK_AGENTS",
                format!("alice:agent:{ALICE},bob:supervisor:{BOB}"),
            )
            .env("HELPDESK_LOG", "error")
            // Tests open many sessions from one address; tests/abuse.rs checks the limits.
            .env("WEBCHAT_SESSIONS_PER_MINUTE", "100000")
            .env("WEBCHAT_MESSAGES_PER_MINUTE", "100000")
            .env_remove("SUPERVISOR_WEBHOOK_URL")
            .stdout(Stdio::piped())
            .stderr(if log.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start helpdesk");
        if let (Some(log), Some(stderr)) = (log, child.stderr.take()) {
            let mut lines = BufReader::new(stderr).lines();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("helpdesk listening on ") {
                    return url.trim().to_string();
                }
            }
            panic!("helpdesk exited before listening");
        })
        .await
        .expect("helpdesk did not start in time");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server {
            child,
            base,
            http: Client::new(),
        }
    }

    /// Stops the server the hard way: nothing gets a chance to flush.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
        let _ = self.child.wait().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A POST under an `Idempotency-Key`, as a client that retries builds it (send it as
    /// often as the test retries).
    pub fn keyed_post(
        &self,
        path: &str,
        token: &str,
        key: &str,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body)
    }

    /// A new webchat visitor.
    pub async fn visitor(&self) -> Visitor<'_> {
        let r = self
            .http
            .post(self.url("/webchat/sessions"))
            .json(&json!({"name": "访客", "locale": "zh-CN"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        Visitor {
            server: self,
            token: v["token"].as_str().unwrap().to_string(),
            customer_id: v["customer_id"].as_str().unwrap().to_string(),
        }
    }

    pub async fn tickets_of(&self, customer_id: &str) -> Vec<Value> {
        let r = self
            .get(&format!("/tickets?customer_id={customer_id}"), ADMIN)
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["tickets"].as_array().unwrap().clone()
    }

    pub async fn ticket(&self, id: &str) -> (Value, u64) {
        let r = self.get(&format!("/tickets/{id}"), ADMIN).await;
        assert_eq!(r.status(), StatusCode::OK);
        let etag = r.headers()["etag"]
            .to_str()
            .unwrap()
            .trim_matches('"')
            .parse()
            .unwrap();
        (r.json().await.unwrap(), etag)
    }

    /// `PATCH`es the ticket at the version it has now, reading it again after a 409: the
    /// desk's own work on a new ticket (its SLA stamps, an assignment) may change it between
    /// the read and the write, which is not the conflict a test means to make.
    pub async fn patch_current(&self, id: &str, body: Value) -> Response {
        for _ in 0..20 {
            let (_, version) = self.ticket(id).await;
            let r = self.patch(id, Some(version), body.clone()).await;
            if r.status() != StatusCode::CONFLICT {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("ticket {id} kept changing under PATCH {body}");
    }

    pub async fn patch(&self, id: &str, version: Option<u64>, body: Value) -> Response {
        let mut req = self
            .http
            .patch(self.url(&format!("/tickets/{id}")))
            .bearer_auth(ADMIN)
            .json(&body);
        if let Some(v) = version {
            req = req.header("If-Match", v.to_string());
        }
        req.send().await.unwrap()
    }
}

pub struct Visitor<'a> {
    pub server: &'a Server,
    pub token: String,
    pub customer_id: String,
}

impl Visitor<'_> {
    pub async fn say(&self, text: &str) -> String {
        let r = self
            .server
            .post("/webchat/messages", &self.token, json!({"text": text}))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::ACCEPTED,
            "{}",
            r.text().await.unwrap()
        );
        let v: Value = r.json().await.unwrap();
        v["message_id"].as_str().unwrap().to_string()
    }

    pub async fn conversation(&self) -> Vec<Value> {
        let r = self.server.get("/webchat/messages", &self.token).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["messages"].as_array().unwrap().clone()
    }

    /// Waits for the survey, and returns the link in its text.
    pub async fn survey_link(&self) -> String {
        let survey = self.wait_for("survey").await;
        let text = survey["text"].as_str().unwrap();
        text.split_whitespace()
            .chain(text.split('：'))
            .find_map(|w| w.find("http").map(|i| w[i..].to_string()))
            .expect("a link in the survey")
    }

    /// Waits until the conversation has a message of `kind`, and returns it.
    pub async fn wait_for(&self, kind: &str) -> Value {
        self.wait_for_count(kind, 1).await.pop().unwrap()
    }

    /// Waits until the conversation has `n` messages of `kind`.
    pub async fn wait_for_count(&self, kind: &str, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let found: Vec<Value> = self
                .conversation()
                .await
                .into_iter()
                .filter(|m| m["kind"] == kind)
                .collect();
            if found.len() >= n {
                return found;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "no {n} {kind} message(s) arrived; conversation: {:#?}",
                    self.conversation().await
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Sends one request as bytes, with the path exactly as given: HTTP clients resolve `..`
/// and `%2E%2E` before sending, and an attacker's client need not. Returns the status and
/// the body.
pub async fn raw_request(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// Asserts the error form of API.md and returns the code.
pub async fn error_code(r: Response, status: u16) -> String {
    assert_eq!(r.status().as_u16(), status, "expected {status}");
    let v: Value = r.json().await.expect("an error body in JSON");
    let message = v["error"]["message"].as_str().expect("error.message");
    assert!(!message.is_empty());
    v["error"]["code"].as_str().expect("error.code").to_string()
}

/// A fake supervisor webhook that records what it is sent.
pub struct FakeWebhook {
    pub url: String,
    pub received: Arc<Mutex<Vec<Value>>>,
}

impl FakeWebhook {
    pub async fn start() -> FakeWebhook {
        let received = Arc::new(Mutex::new(Vec::new()));
        let r2 = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |Json(body): Json<Value>| {
                let r = r2.clone();
                async move {
                    r.lock().unwrap().push(body);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeWebhook {
            url: format!("http://{addr}/hook"),
            received,
        }
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let got = self.received.lock().unwrap().clone();
            if got.len() >= n || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub mod provider;
