//! The two wirings of the ports, for tests that must hold on both: SQLite with its own
//! queues, and DynamoDB with SQS on the local AWS emulator (moto, which `scripts/test`
//! starts and names in `AWS_ENDPOINT_URL`). Each call makes fresh tables and queues.
//!
//! The queue is wrapped in [`Recording`], which keeps what the real queue took and can be
//! told to fail or to stall (a process that dies mid-send) on its next sends: the faults
//! are injected around the real adapter, never in place of it.

#![allow(dead_code)]

use async_trait::async_trait;
use aws_sdk_dynamodb::config::{Credentials, Region};
use helpdesk_core::adapters::SqliteStore;
use helpdesk_core::aws::{schema, DynamoStore, QueueUrls, SqsQueue, Tables};
use helpdesk_core::domain::new_id;
use helpdesk_core::ports::{Queue, QueueName, Store};
use helpdesk_core::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct Wiring {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    pub queue: Arc<Recording>,
    /// The queues on the emulator, for a test that receives from them as Lambda would.
    pub sqs: Option<(aws_sdk_sqs::Client, QueueUrls)>,
}

pub fn sqlite() -> Wiring {
    let store = Arc::new(SqliteStore::in_memory().expect("an in-memory database"));
    Wiring {
        name: "sqlite",
        store: store.clone(),
        queue: Arc::new(Recording::new(store)),
        sqs: None,
    }
}

pub async fn emulator() -> aws_config::SdkConfig {
    config_for(emulator_url()).load().await
}

/// The emulator's address, as `scripts/test` names it.
fn emulator_url() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: run scripts/test, which starts the local AWS emulator")
    })
}

fn config_for(endpoint: String) -> aws_config::ConfigLoader {
    helpdesk_core::aws::config_loader()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(endpoint)
}

/// The settings for DynamoDB on the emulator, reached through a loopback proxy that hands
/// it one request at a time. DynamoDB applies each request atomically; moto does not: it
/// serves requests on threads with no lock, so two conditional writes to one item can both
/// pass their condition (8 concurrent claims of one item, 30 rounds: two winners in 2
/// rounds), and a transaction that fails puts its copy of the table back over writes made
/// meanwhile. A test of our races would then see the emulator's. Our own races, between
/// requests, are untouched: only each request is whole.
pub async fn dynamodb_config() -> aws_config::SdkConfig {
    config_for(one_at_a_time(emulator_url()).await).load().await
}

/// A loopback proxy to `upstream` that forwards one request at a time.
///
/// Each request goes on a connection of its own (no pool): a kept-alive connection the
/// emulator's server has closed fails the next request sent on it, which the proxy can only
/// answer 502, and under a burst of those (a loaded machine) the SDK's retry quota runs out.
/// A connection the emulator refuses (nothing was sent) is tried again; whatever else fails
/// is answered 502 with its reason.
async fn one_at_a_time(upstream: String) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (lock, http, upstream) = (lock.clone(), http.clone(), upstream.clone());
            async move {
                let _turn = lock.lock().await;
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                let mut req = http.request(method, format!("{upstream}{path}"));
                for (k, v) in &headers {
                    if k != "host" && k != "content-length" {
                        req = req.header(k, v);
                    }
                }
                let req = req.body(body);
                let mut sent = req.try_clone().expect("a body of bytes").send().await;
                for attempt in 1..=3 {
                    match &sent {
                        Err(e) if e.is_connect() => {
                            tokio::time::sleep(std::time::Duration::from_millis(50 * attempt))
                                .await;
                            sent = req.try_clone().expect("a body of bytes").send().await;
                        }
                        _ => break,
                    }
                }
                match sent {
                    Ok(r) => {
                        let status = StatusCode::from_u16(r.status().as_u16())
                            .unwrap_or(StatusCode::BAD_GATEWAY);
                        let mut out = HeaderMap::new();
                        for (k, v) in r.headers() {
                            if k != "content-length" && k != "transfer-encoding" {
                                out.insert(k.clone(), v.clone());
                            }
                        }
                        match r.bytes().await {
                            Ok(body) => (status, out, body),
                            Err(e) => (
                                StatusCode::BAD_GATEWAY,
                                HeaderMap::new(),
                                Bytes::from(format!("the emulator's answer broke off: {e}")),
                            ),
                        }
                    }
                    Err(e) => (
                        StatusCode::BAD_GATEWAY,
                        HeaderMap::new(),
                        Bytes::from(format!("the emulator did not answer: {e}")),
                    ),
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// DynamoDB (one request at a time, [`dynamodb_config`]) and SQS on the emulator.
pub async fn dynamodb() -> Wiring {
    let config = emulator().await;
    let prefix = format!("t{}-", new_id());
    let tables = Tables::with_prefix(&prefix);
    let store = DynamoStore::new(&dynamodb_config().await, tables.clone());
    schema::create_tables(store.client(), &tables)
        .await
        .expect("the tables are made");
    let sqs = aws_sdk_sqs::Client::new(&config);
    let mut urls = Vec::new();
    for (name, fifo) in [
        ("inbound.fifo", true),
        ("auto-reply", false),
        ("outbound", false),
    ] {
        let mut req = sqs.create_queue().queue_name(format!("{prefix}{name}"));
        if fifo {
            req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
        }
        let url = req
            .send()
            .await
            .expect("the queue is made")
            .queue_url
            .unwrap_or_default();
        urls.push(url);
    }
    let urls = QueueUrls {
        inbound: urls[0].clone(),
        auto_reply: urls[1].clone(),
        outbound: urls[2].clone(),
    };
    let queue = SqsQueue::new(&config, urls.clone());
    Wiring {
        name: "dynamodb",
        store: Arc::new(store),
        queue: Arc::new(Recording::new(Arc::new(queue))),
        sqs: Some((sqs, urls)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// The send fails, and nothing is queued.
    Fail,
    /// The send never answers: the process died in it.
    Stall,
}

/// The real queue, keeping what it took, with faults to inject on the next sends.
pub struct Recording {
    inner: Arc<dyn Queue>,
    sent: Mutex<Vec<(QueueName, String)>>,
    faults: Mutex<HashMap<QueueName, Vec<Fault>>>,
}

impl Recording {
    pub fn new(inner: Arc<dyn Queue>) -> Recording {
        Recording {
            inner,
            sent: Mutex::new(Vec::new()),
            faults: Mutex::new(HashMap::new()),
        }
    }

    /// The next send to `queue` meets `fault`.
    pub fn inject(&self, queue: QueueName, fault: Fault) {
        self.faults
            .lock()
            .unwrap()
            .entry(queue)
            .or_default()
            .push(fault);
    }

    /// The bodies the real queue took for `queue`, in order.
    pub fn sent(&self, queue: QueueName) -> Vec<serde_json::Value> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(q, _)| *q == queue)
            .map(|(_, b)| serde_json::from_str(b).expect("jobs are JSON"))
            .collect()
    }

    pub fn forget(&self) {
        self.sent.lock().unwrap().clear();
    }
}

#[async_trait]
impl Queue for Recording {
    async fn send(
        &self,
        queue: QueueName,
        body: String,
        group: Option<&str>,
        dedup_id: Option<&str>,
    ) -> Result<()> {
        let fault = {
            let mut faults = self.faults.lock().unwrap();
            faults
                .get_mut(&queue)
                .and_then(|f| (!f.is_empty()).then(|| f.remove(0)))
        };
        match fault {
            Some(Fault::Fail) => return Err(Error::internal("injected: the queue is down")),
            Some(Fault::Stall) => std::future::pending::<()>().await,
            None => {}
        }
        self.inner
            .send(queue, body.clone(), group, dedup_id)
            .await?;
        self.sent.lock().unwrap().push((queue, body));
        Ok(())
    }
}

/// A test case run on both wirings: `both!(case)` makes `case::sqlite` and
/// `case::dynamodb`, each calling `case(wiring)`.
#[macro_export]
macro_rules! both {
    ($case:ident) => {
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                super::$case(super::wirings::sqlite()).await
            }
            #[tokio::test]
            async fn dynamodb() {
                super::$case(super::wirings::dynamodb().await).await
            }
        }
    };
}
