//! A fake WhatsApp Cloud API and Telegram Bot API on 127.0.0.1: records every request the
//! desk sends and fails on demand (an HTTP status with a body, or no answer at all).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the fake answers to the next request.
#[derive(Clone)]
pub enum Plan {
    /// Answered as usual.
    Ok,
    Fail(u16, Value),
    Hang(Duration),
    /// Takes the message (it is recorded as sent), then answers nothing for this long.
    TakeThenHang(Duration),
}

#[derive(Clone, Debug)]
pub struct Sent {
    pub path: String,
    pub auth: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    sent: Vec<Sent>,
    plans: VecDeque<Plan>,
    /// Telegram's per-chat limit as the fake enforces it, and how often it had to.
    min_interval: Option<Duration>,
    last_by_chat: HashMap<String, Instant>,
    throttled: usize,
    next_id: u64,
    /// Random failures of sends with no plan: the share of them, how long a hang lasts, and
    /// how many were failed, by kind.
    random: Option<(f64, Duration)>,
    faults: RandomFaults,
}

/// What the fake's random failures did (see [`FakeProvider::fail_at_random`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomFaults {
    pub server_errors: usize,
    pub throttled: usize,
    /// Taken, and then no answer: the desk cannot tell whether it was delivered.
    pub hung: usize,
}

#[derive(Clone)]
pub struct FakeProvider {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(path): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let telegram = path.starts_with("bot");
    let plan = {
        let mut i = inner.lock().unwrap();
        let plan = i.plans.pop_front();
        if plan.is_none() && telegram && path.ends_with("sendMessage") {
            let chat = body["chat_id"].to_string();
            let now = Instant::now();
            if let (Some(min), Some(last)) = (i.min_interval, i.last_by_chat.get(&chat)) {
                if now.duration_since(*last) < min {
                    i.throttled += 1;
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        Json(json!({"ok": false, "error_code": 429,
                            "description": "Too Many Requests: retry after 1",
                            "parameters": {"retry_after": 1}})),
                    )
                        .into_response();
                }
            }
            i.last_by_chat.insert(chat, now);
        }
        let random = match (&plan, i.random) {
            (None, Some((rate, hang)))
                if (path.ends_with("/messages") || path.ends_with("sendMessage"))
                    && rand::random::<f64>() < rate =>
            {
                Some(hang)
            }
            _ => None,
        };
        match random {
            Some(hang) => match rand::random_range(0..3u8) {
                0 => {
                    i.faults.server_errors += 1;
                    Some(Plan::Fail(
                        500,
                        json!({"error": {"message": "injected: internal error", "code": 1}}),
                    ))
                }
                1 => {
                    i.faults.throttled += 1;
                    Some(Plan::Fail(
                        429,
                        json!({"ok": false, "error_code": 429,
                        "description": "Too Many Requests: retry after 1",
                        "parameters": {"retry_after": 1},
                        "error": {"message": "injected: rate limit hit", "code": 130429}}),
                    ))
                }
                _ => {
                    i.faults.hung += 1;
                    Some(Plan::TakeThenHang(hang))
                }
            },
            None => plan,
        }
    };
    match plan {
        Some(Plan::Fail(status, body)) => {
            return (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
        }
        Some(Plan::Ok) => {}
        Some(Plan::TakeThenHang(d)) => {
            {
                let mut i = inner.lock().unwrap();
                i.next_id += 1;
                i.sent.push(Sent {
                    path: format!("/{path}"),
                    auth: headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string()),
                    body,
                });
            }
            tokio::time::sleep(d).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Some(Plan::Hang(d)) => {
            // The desk gives up first; this request is not recorded as delivered.
            tokio::time::sleep(d).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        None => {}
    }
    let mut i = inner.lock().unwrap();
    i.next_id += 1;
    let id = i.next_id;
    i.sent.push(Sent {
        path: format!("/{path}"),
        auth: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string()),
        body,
    });
    if telegram {
        Json(json!({"ok": true, "result": {"message_id": id}})).into_response()
    } else {
        Json(json!({"messaging_product": "whatsapp",
            "messages": [{"id": format!("wamid.out.{id}")}]}))
        .into_response()
    }
}

impl FakeProvider {
    pub async fn start() -> FakeProvider {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::post(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeProvider {
            base: format!("http://{addr}"),
            inner,
        }
    }

    /// Failures for the next requests, in order.
    pub fn plan(&self, plans: impl IntoIterator<Item = Plan>) {
        self.inner.lock().unwrap().plans.extend(plans);
    }

    /// Fails this share of the sends that have no plan, at random: a 500, a 429 with
    /// `retry_after` 1, or a hang of `hang` after taking the message, a third each.
    pub fn fail_at_random(&self, rate: f64, hang: Duration) {
        self.inner.lock().unwrap().random = Some((rate, hang));
    }

    pub fn random_faults(&self) -> RandomFaults {
        self.inner.lock().unwrap().faults
    }

    pub fn enforce_per_chat_interval(&self, min: Duration) {
        self.inner.lock().unwrap().min_interval = Some(min);
    }

    pub fn throttled(&self) -> usize {
        self.inner.lock().unwrap().throttled
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.inner.lock().unwrap().sent.clone()
    }

    /// Waits until `n` requests whose path ends with `suffix` were taken, and returns them.
    pub async fn wait_for(&self, suffix: &str, n: usize) -> Vec<Sent> {
        let deadline = tokio::time::Instant::now() + super::PATIENCE;
        loop {
            let got: Vec<Sent> = self
                .sent()
                .into_iter()
                .filter(|s| s.path.ends_with(suffix))
                .collect();
            if got.len() >= n {
                return got;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "only {} of {n} {suffix} requests arrived: {got:#?}",
                    got.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
