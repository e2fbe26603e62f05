//! A fake OpenSearch domain on 127.0.0.1 for the knowledge functions: it keeps documents in
//! memory and answers the handful of REST calls the adapter makes (index check and
//! creation, `_bulk`, `_doc` get and delete, `_search`) in OpenSearch's own shapes. A
//! request without a SigV4 signature is refused, as a domain would. Candidate retrieval is
//! not modelled: a free-text search returns every document, and the shared ranker orders
//! them as it orders a real domain's candidates. What the mapping keeps out of `_source`
//! (the `knn_vector`) is kept apart, as the k-NN index keeps it, and a `knn` clause is
//! checked against the mapping (a `knn_vector` field of the vector's dimension) as a domain
//! checks it. Each write gives the document the next sequence number (primary term 1): a
//! search that asks for them (`seq_no_primary_term`) returns them, and a bulk write
//! conditioned on them (`if_seq_no`, `if_primary_term`) answers a version conflict when the
//! document has been written since, as a domain does.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Domain {
    /// Index name → (its mapping as created, its documents by id).
    pub indexes: BTreeMap<String, (Value, BTreeMap<String, Value>)>,
    /// How many of the next requests answer 503.
    pub fail_next: usize,
    /// Every request, as "METHOD path".
    pub requests: Vec<String>,
    /// Searches refused for having more clauses than a domain allows.
    pub refused_as_too_large: usize,
    /// While set, each search waits here (a search that takes its time), for a test that
    /// must act while a function is inside its search.
    pub hold: Option<Arc<Hold>>,
    /// Index name → document id → the fields its mapping keeps out of `_source`.
    pub excluded: BTreeMap<String, BTreeMap<String, Value>>,
    /// The `knn` clauses of the searches, as sent.
    pub knn_searches: Vec<Value>,
    /// The last sequence number given, and index name → document id → its sequence number.
    pub seq_no: u64,
    pub seq_nos: BTreeMap<String, BTreeMap<String, u64>>,
    /// Run at the start of the next `_bulk`: another writer's write that lands first.
    pub before_bulk: Option<Write>,
}

/// A write a test makes to the domain directly.
pub type Write = Box<dyn FnOnce(&mut Domain) + Send>;

/// Every document's primary term here.
pub const PRIMARY_TERM: u64 = 1;

impl Domain {
    /// Writes `doc` under `id` as a bulk `index` action does: the fields the mapping keeps
    /// out of `_source` are kept apart, and the document gets the next sequence number.
    /// Answers whether it was new, or `None` without the index.
    pub fn index_doc(&mut self, index: &str, id: &str, mut doc: Value) -> Option<bool> {
        let (mapping, docs) = self.indexes.get_mut(index)?;
        let mut apart = serde_json::Map::new();
        for field in mapping["mappings"]["_source"]["excludes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Some(v) = doc.as_object_mut().and_then(|o| o.remove(field)) {
                apart.insert(field.to_string(), v);
            }
        }
        let created = docs.insert(id.to_string(), doc).is_none();
        let excluded = self.excluded.entry(index.to_string()).or_default();
        if apart.is_empty() {
            excluded.remove(id);
        } else {
            excluded.insert(id.to_string(), Value::Object(apart));
        }
        self.seq_no += 1;
        self.seq_nos
            .entry(index.to_string())
            .or_default()
            .insert(id.to_string(), self.seq_no);
        Some(created)
    }

    /// The sequence number of `id`'s document, if there is one.
    pub fn seq_no_of(&self, index: &str, id: &str) -> Option<u64> {
        self.seq_nos.get(index)?.get(id).copied()
    }
}

/// Searches held: each adds a permit to `arrived`, then waits for one of `release`.
pub struct Hold {
    pub arrived: tokio::sync::Semaphore,
    pub release: tokio::sync::Semaphore,
}

impl Default for Hold {
    fn default() -> Hold {
        Hold {
            arrived: tokio::sync::Semaphore::new(0),
            release: tokio::sync::Semaphore::new(0),
        }
    }
}

impl Hold {
    /// Waits until a search is held.
    pub async fn arrived(&self) {
        self.arrived
            .acquire()
            .await
            .expect("the semaphore stays open")
            .forget();
    }

    /// Lets one held search go on.
    pub fn release_one(&self) {
        self.release.add_permits(1);
    }

    /// Lets every held search go on, and those to come (stop holding with
    /// `domain.hold = None` first).
    pub fn release_all(&self) {
        self.release
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }
}

pub type Shared = Arc<Mutex<Domain>>;

pub struct FakeOpenSearch {
    pub url: String,
    pub domain: Shared,
}

impl FakeOpenSearch {
    pub async fn start() -> FakeOpenSearch {
        let domain: Shared = Arc::default();
        let app = axum::Router::new()
            .route("/_bulk", post(bulk))
            .route("/{index}", any(index))
            .route("/{index}/_search", post(search))
            .route("/{index}/_doc/{id}", any(doc))
            .layer(axum::middleware::from_fn_with_state(domain.clone(), gate))
            .with_state(domain.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeOpenSearch { url, domain }
    }

    /// The documents of `index`, by id.
    pub fn docs(&self, index: &str) -> BTreeMap<String, Value> {
        let domain = self.domain.lock().unwrap();
        domain
            .indexes
            .get(index)
            .map(|(_, docs)| docs.clone())
            .unwrap_or_default()
    }

    /// Holds every search from now on until the test lets it go ([`Hold`]).
    pub fn hold_searches(&self) -> Arc<Hold> {
        let hold = Arc::new(Hold::default());
        self.domain.lock().unwrap().hold = Some(hold.clone());
        hold
    }

    /// The fields `index`'s mapping kept out of each document's `_source` (its vector).
    pub fn excluded(&self, index: &str) -> BTreeMap<String, Value> {
        let domain = self.domain.lock().unwrap();
        domain.excluded.get(index).cloned().unwrap_or_default()
    }

    pub fn fail_next(&self, n: usize) {
        self.domain.lock().unwrap().fail_next = n;
    }
}

/// Records the request, refuses an unsigned one, and fails on demand.
async fn gate(
    State(domain): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    {
        let mut d = domain.lock().unwrap();
        d.requests
            .push(format!("{} {}", request.method(), request.uri()));
        let signed = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 Credential="))
            && request.headers().contains_key("x-amz-date");
        if !signed {
            return (StatusCode::FORBIDDEN, r#"{"message":"unsigned"}"#).into_response();
        }
        if d.fail_next > 0 {
            d.fail_next -= 1;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":{"type":"unavailable","reason":"try again"},"status":503}"#,
            )
                .into_response();
        }
    }
    next.run(request).await
}

fn missing(index: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": {"type": "index_not_found_exception", "reason": format!("no such index [{index}]")}, "status": 404})),
    )
        .into_response()
}

async fn index(
    State(domain): State<Shared>,
    method: Method,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let mut d = domain.lock().unwrap();
    match method {
        Method::HEAD if d.indexes.contains_key(&name) => StatusCode::OK.into_response(),
        Method::HEAD => StatusCode::NOT_FOUND.into_response(),
        Method::PUT if d.indexes.contains_key(&name) => (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": {"type": "resource_already_exists_exception", "reason": "exists"}}),
            ),
        )
            .into_response(),
        Method::PUT => {
            let mapping: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            d.indexes.insert(name.clone(), (mapping, BTreeMap::new()));
            axum::Json(json!({"acknowledged": true, "index": name})).into_response()
        }
        Method::DELETE => {
            d.indexes.remove(&name);
            axum::Json(json!({"acknowledged": true})).into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn bulk(State(domain): State<Shared>, body: String) -> Response {
    let mut d = domain.lock().unwrap();
    if let Some(first) = d.before_bulk.take() {
        first(&mut d);
    }
    let mut items = Vec::new();
    let mut errors = false;
    let mut lines = body.lines().filter(|l| !l.trim().is_empty());
    while let Some(action) = lines.next() {
        let action: Value = serde_json::from_str(action).unwrap();
        let target = &action["index"];
        let (index, id) = (
            target["_index"].as_str().unwrap().to_string(),
            target["_id"].as_str().unwrap().to_string(),
        );
        let doc: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        if !d.indexes.contains_key(&index) {
            return missing(&index);
        }
        if let Some(wanted) = target["if_seq_no"].as_u64() {
            let current = d.seq_no_of(&index, &id);
            if current != Some(wanted) || target["if_primary_term"].as_u64() != Some(PRIMARY_TERM) {
                errors = true;
                items.push(json!({"index": {"_index": index, "_id": id, "status": 409, "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": format!("[{id}]: version conflict, required seqNo [{wanted}], primary term [{}]. current document has seqNo [{}] and primary term [{PRIMARY_TERM}]",
                        target["if_primary_term"], current.map_or(-1, |n| n as i64)),
                }}}));
                continue;
            }
        }
        let created = d.index_doc(&index, &id, doc).unwrap_or_default();
        let result = if created { "created" } else { "updated" };
        let seq_no = d.seq_no;
        items.push(
            json!({"index": {"_index": index, "_id": id, "result": result, "status": 200,
            "_seq_no": seq_no, "_primary_term": PRIMARY_TERM}}),
        );
    }
    axum::Json(json!({"took": 1, "errors": errors, "items": items})).into_response()
}

async fn doc(
    State(domain): State<Shared>,
    method: Method,
    Path((index, id)): Path<(String, String)>,
) -> Response {
    let mut d = domain.lock().unwrap();
    let Some((_, docs)) = d.indexes.get_mut(&index) else {
        return missing(&index);
    };
    match method {
        Method::GET => match docs.get(&id) {
            Some(doc) => {
                axum::Json(json!({"_index": index, "_id": id, "found": true, "_source": doc}))
                    .into_response()
            }
            None => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"_index": index, "_id": id, "found": false})),
            )
                .into_response(),
        },
        Method::DELETE => match docs.remove(&id) {
            Some(_) => {
                if let Some(seq_nos) = d.seq_nos.get_mut(&index) {
                    seq_nos.remove(&id);
                }
                d.seq_no += 1;
                axum::Json(json!({"_id": id, "result": "deleted"})).into_response()
            }
            None => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"_id": id, "result": "not_found"})),
            )
                .into_response(),
        },
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn search(State(domain): State<Shared>, Path(index): Path<String>, body: String) -> Response {
    let hold = domain.lock().unwrap().hold.clone();
    if let Some(hold) = hold {
        hold.arrived.add_permits(1);
        hold.release
            .acquire()
            .await
            .expect("the semaphore stays open")
            .forget();
    }
    let mut d = domain.lock().unwrap();
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    // The lexical query alone, or `should`-combined with a `knn` clause.
    let clauses_of = |kind: &str| -> Vec<Value> {
        let direct = request["query"].get(kind).cloned();
        let combined = request["query"]["bool"]["should"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.get(kind).cloned());
        direct.into_iter().chain(combined).collect()
    };
    for knn in clauses_of("knn") {
        let mapping = d.indexes.get(&index).map(|(m, _)| m.clone());
        let fine = knn.as_object().is_some_and(|o| {
            o.iter().all(|(field, q)| {
                let declared = mapping
                    .as_ref()
                    .map(|m| m["mappings"]["properties"][field].clone())
                    .unwrap_or(Value::Null);
                declared["type"] == "knn_vector"
                    && q["vector"].as_array().map(Vec::len)
                        == declared["dimension"].as_u64().map(|n| n as usize)
                    && q["k"].as_u64().is_some_and(|k| (1..=10_000).contains(&k))
            })
        });
        if !fine {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {"type": "query_shard_exception",
                    "reason": "knn query does not match the index's knn_vector field"}, "status": 400})),
            )
                .into_response();
        }
        d.knn_searches.push(knn);
    }
    if let Some(m) = clauses_of("multi_match").first() {
        let clauses = clauses(m["query"].as_str().unwrap_or_default(), &m["fields"]);
        if clauses > MAX_CLAUSES {
            d.refused_as_too_large += 1;
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {"root_cause": [{"type": "too_many_clauses",
                    "reason": format!("maxClauseCount is set to {MAX_CLAUSES}")}],
                    "type": "search_phase_execution_exception", "reason": "all shards failed"},
                    "status": 400})),
            )
                .into_response();
        }
    }
    let Some((_, docs)) = d.indexes.get(&index) else {
        return missing(&index);
    };
    let size = request["size"].as_u64().unwrap_or(10) as usize;
    let after = request["search_after"][0].as_str().map(str::to_string);
    let versions = request["seq_no_primary_term"] == true;
    // Top-level fields the request leaves out of `_source`.
    let excluded: Vec<&str> = request["_source"]["excludes"]
        .as_array()
        .map(|fields| fields.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let hits: Vec<Value> = docs
        .iter()
        .filter(|(id, _)| after.as_ref().is_none_or(|a| id.as_str() > a.as_str()))
        .take(size)
        .map(|(id, doc)| {
            let mut doc = doc.clone();
            if let Some(fields) = doc.as_object_mut() {
                for field in &excluded {
                    fields.remove(*field);
                }
            }
            let mut hit = json!({"_index": index, "_id": id, "_score": 1.0, "_source": doc});
            if versions {
                hit["_seq_no"] = json!(d.seq_no_of(&index, id));
                hit["_primary_term"] = json!(PRIMARY_TERM);
            }
            hit
        })
        .collect();
    axum::Json(json!({"took": 1, "hits": {"total": {"value": hits.len()}, "hits": hits}}))
        .into_response()
}

/// A domain's `indices.query.bool.max_clause_count`.
const MAX_CLAUSES: usize = 1024;

/// The clauses a `multi_match` makes, as the index's analyzers would: a term per word, a
/// term per Chinese character, and on the Chinese (`.zh`) fields its pair with the next one.
fn clauses(query: &str, fields: &Value) -> usize {
    let han = query
        .chars()
        .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
        .count();
    let words = query
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .count();
    let fields = fields.as_array().map(Vec::as_slice).unwrap_or_default();
    fields
        .iter()
        .map(|f| match f.as_str().unwrap_or_default().contains(".zh") {
            true => words + 2 * han,
            false => words + han,
        })
        .sum()
}
