//! What the knowledge index on AWS says to OpenSearch and how its answers are read, as
//! plain data: the adapter that sends these bodies (SigV4, retries) stays thin, and the
//! bodies are tested here byte for byte. The index's mapping is
//! `infra/opensearch/knowledge-index.json`; OpenSearch only retrieves candidates, and the
//! shared [`Ranker`](super::Ranker) orders them exactly as it does tantivy's.
//!
//! With the sentence encoder, each article's document carries two more fields: `vector`,
//! the normalised mean of its question vectors, in a `knn_vector` field (HNSW, Lucene,
//! cosine), and `question_vectors`, the packed vectors of each question
//! ([`stored_vectors`](super::stored_vectors)), kept in `_source` only so that a function
//! starting cold trains the ranker without embedding the knowledge base. One mean vector a
//! document rather than a nested field of question vectors: the mean is what tells articles
//! apart best (the ranker's own finding on MASSIVE), one vector per article keeps `k` a
//! count of articles, and a top-level field works with every 2.x engine. Candidates then
//! come from one `bool` query that `should`-combines the lexical `multi_match` and a `knn`
//! clause on the message's vector: it runs on any Amazon OpenSearch Service 2.x domain with
//! no search pipeline to create (the `hybrid` query needs one, with a normalisation
//! processor), and how the two scores add up matters little, since the shared ranker
//! orders the candidates.

use super::stored_vectors::Stored;
use super::{Article, ANSWER_BOOST, CANDIDATES, QUESTIONS_BOOST, TITLE_BOOST};
use crate::{Error, Result};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The document field holding an article's mean question vector (a `knn_vector`).
pub const VECTOR_FIELD: &str = "vector";
/// How many nearest articles the `knn` clause adds.
pub const KNN_K: usize = CANDIDATES;
/// The `knn` clause's weight in the `bool` sum: its scores ((1 + cosine) / 2 with the
/// `cosinesimil` space) lie in [0, 1], BM25's in the tens, and a knn-only candidate should
/// not fall below the `size` cut for want of shared words.
pub const KNN_BOOST: f32 = 10.0;

/// At most this many terms of a message go into one search. Each term becomes a clause on
/// each of the six fields, two on the Chinese ones (a character and its pair), and a domain
/// refuses a query over 1,024 clauses (`indices.query.bool.max_clause_count`): 100 terms
/// stay under 900. The start of a long message says what it is about.
pub const MAX_QUERY_TERMS: usize = 100;

/// The start of `query` with at most `max` terms, counted as the index's analyzers count
/// them at most: a Chinese (CJK) character alone, any other run of letters or digits as one.
pub fn cap_terms(query: &str, max: usize) -> &str {
    let (mut terms, mut in_word) = (0, false);
    for (i, c) in query.char_indices() {
        let cjk = crate::text::is_cjk(c);
        let word = c.is_alphanumeric() && !cjk;
        if cjk || (word && !in_word) {
            terms += 1;
            if terms > max {
                return &query[..i];
            }
        }
        in_word = word;
    }
    query
}

/// The `_search` body that retrieves candidates for one customer message: the same fields
/// and weights as the tantivy index, on both the English and the Chinese analysis of each,
/// for the message's first [`MAX_QUERY_TERMS`] terms; with the message's `vector`, joined by
/// its [`KNN_K`] nearest articles (see the module's note).
pub fn search_body(query: &str, vector: Option<&[f32]>) -> Value {
    let mut body = lexical_search_body(query);
    if let Some(vector) = vector {
        let lexical = body["query"].take();
        body["query"] = json!({
            "bool": {
                "should": [
                    lexical,
                    { "knn": { VECTOR_FIELD: { "vector": vector, "k": KNN_K, "boost": KNN_BOOST } } }
                ]
            }
        });
    }
    body
}

fn lexical_search_body(query: &str) -> Value {
    let query = cap_terms(query, MAX_QUERY_TERMS);
    let mut fields = Vec::new();
    for (field, boost) in [
        ("questions", QUESTIONS_BOOST),
        ("title", TITLE_BOOST),
        ("answer", ANSWER_BOOST),
    ] {
        fields.push(format!("{field}^{boost}"));
        fields.push(format!("{field}.zh^{boost}"));
    }
    json!({
        "size": CANDIDATES,
        "_source": ["id", "title", "questions", "answer", "locale", "tags", "answers"],
        "query": {
            "multi_match": {
                "query": query,
                "type": "most_fields",
                "fields": fields,
            }
        }
    })
}

/// What an article's document keeps of its vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct DocVectors {
    /// The normalised mean of its question vectors: the `knn_vector` field.
    pub mean: Vec<f32>,
    /// Each question's vector, packed, for the ranker.
    pub stored: Stored,
}

/// `question_vectors` in a document: [`Stored`] with the vectors in base64.
#[derive(Debug, Serialize, Deserialize)]
struct PackedVectors {
    model: String,
    texts: String,
    f16: String,
}

impl From<&Stored> for PackedVectors {
    fn from(s: &Stored) -> PackedVectors {
        PackedVectors {
            model: s.model.clone(),
            texts: s.texts.clone(),
            f16: base64::engine::general_purpose::STANDARD.encode(&s.f16),
        }
    }
}

impl PackedVectors {
    fn unpack(self) -> Option<Stored> {
        Some(Stored {
            f16: base64::engine::general_purpose::STANDARD
                .decode(self.f16)
                .ok()?,
            model: self.model,
            texts: self.texts,
        })
    }
}

/// The field of a document that holds its packed question vectors: [`Document`]'s field
/// of that name, which a listing leaves out.
const QUESTION_VECTORS: &str = "question_vectors";

#[derive(Serialize)]
struct Document<'a> {
    #[serde(flatten)]
    article: &'a Article,
    vector: &'a [f32],
    question_vectors: PackedVectors,
}

/// The `_bulk` body (NDJSON) that writes `articles`, each under its own id, so that a
/// second write of the same article replaces it; each with its vectors where `vectors`
/// (in the same order, or empty) has them.
pub fn bulk_upsert_body(
    index: &str,
    articles: &[Article],
    vectors: &[Option<DocVectors>],
) -> Result<String> {
    let mut body = String::new();
    for (n, a) in articles.iter().enumerate() {
        let action = json!({ "index": { "_index": index, "_id": a.id } });
        push_document(
            &mut body,
            &action,
            a,
            vectors.get(n).and_then(Option::as_ref),
        )?;
    }
    Ok(body)
}

/// The `_bulk` body (NDJSON) that writes back an article's current vectors where a listing
/// found them stale: the article as listed, with its vectors, each write conditioned on the
/// version the listing read (`if_seq_no`, `if_primary_term`), so that an article written
/// since (by the indexer, with its own vectors) is left as it is and answers a conflict.
pub fn bulk_write_back_body(
    index: &str,
    articles: &[(&Article, Version, &DocVectors)],
) -> Result<String> {
    let mut body = String::new();
    for (a, version, vectors) in articles {
        let action = json!({ "index": {
            "_index": index,
            "_id": a.id,
            "if_seq_no": version.seq_no,
            "if_primary_term": version.primary_term,
        } });
        push_document(&mut body, &action, a, Some(vectors))?;
    }
    Ok(body)
}

/// One action line and its document line.
fn push_document(
    body: &mut String,
    action: &Value,
    a: &Article,
    vectors: Option<&DocVectors>,
) -> Result<()> {
    body.push_str(&action.to_string());
    body.push('\n');
    let doc = match vectors {
        None => serde_json::to_string(a),
        Some(v) => serde_json::to_string(&Document {
            article: a,
            vector: &v.mean,
            question_vectors: PackedVectors::from(&v.stored),
        }),
    }
    .map_err(|e| Error::internal(format!("article {:?}: {e}", a.id)))?;
    body.push_str(&doc);
    body.push('\n');
    Ok(())
}

/// The index's settings and mapping, sent when the first write finds no index.
pub const INDEX_MAPPING: &str = include_str!("../../../infra/opensearch/knowledge-index.json");

/// How many articles one page of a full listing reads; OpenSearch's default ceiling on
/// `from + size` is 10,000, so pages move on with `search_after` instead of `from`.
pub const LIST_PAGE: usize = 1000;

/// One HTTP request to the cluster, as data: the adapter signs and sends it, the tests read
/// it. `path` is already percent-encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub content_type: Option<&'static str>,
    pub body: String,
}

impl Request {
    fn json(method: &'static str, path: String, body: &Value) -> Request {
        Request {
            method,
            path,
            content_type: Some("application/json"),
            body: body.to_string(),
        }
    }

    fn bare(method: &'static str, path: String) -> Request {
        Request {
            method,
            path,
            content_type: None,
            body: String::new(),
        }
    }

    /// Whether the index exists (200) or not (404).
    pub fn index_exists(index: &str) -> Request {
        Request::bare("HEAD", format!("/{}", encode(index)))
    }

    /// Creates the index with [`INDEX_MAPPING`].
    pub fn create_index(index: &str) -> Request {
        Request {
            method: "PUT",
            path: format!("/{}", encode(index)),
            content_type: Some("application/json"),
            body: INDEX_MAPPING.to_string(),
        }
    }

    /// Removes the whole index (the live test's throwaway index).
    pub fn delete_index(index: &str) -> Request {
        Request::bare("DELETE", format!("/{}", encode(index)))
    }

    /// The candidates for one customer message ([`search_body`]).
    pub fn search(index: &str, query: &str, vector: Option<&[f32]>) -> Request {
        Request::json(
            "POST",
            format!("/{}/_search", encode(index)),
            &search_body(query, vector),
        )
    }

    /// One page of every article, in id order, after the id `after`. With `vectors`, each
    /// with its stored question vectors and the version it was read at, which a write-back
    /// of its vectors is conditioned on; without (a listing), the articles alone.
    pub fn list_page(index: &str, after: Option<&str>, vectors: bool) -> Request {
        let mut body = json!({
            "size": LIST_PAGE,
            "query": { "match_all": {} },
            "sort": [{ "id": "asc" }],
        });
        if vectors {
            body["seq_no_primary_term"] = json!(true);
        } else {
            body["_source"] = json!({ "excludes": [QUESTION_VECTORS] });
        }
        if let Some(after) = after {
            body["search_after"] = json!([after]);
        }
        Request::json("POST", format!("/{}/_search", encode(index)), &body)
    }

    /// Writes articles ([`bulk_upsert_body`]). `refresh=wait_for` answers once the change is
    /// searchable, so the ranker retrained right after it sees the change.
    pub fn upsert(
        index: &str,
        articles: &[Article],
        vectors: &[Option<DocVectors>],
    ) -> Result<Request> {
        Ok(Request {
            method: "POST",
            path: "/_bulk?refresh=wait_for".to_string(),
            content_type: Some("application/x-ndjson"),
            body: bulk_upsert_body(index, articles, vectors)?,
        })
    }

    /// Writes back vectors found stale ([`bulk_write_back_body`]). Without `refresh`: no
    /// one waits to see them, the next listing does.
    pub fn write_back(
        index: &str,
        articles: &[(&Article, Version, &DocVectors)],
    ) -> Result<Request> {
        Ok(Request {
            method: "POST",
            path: "/_bulk".to_string(),
            content_type: Some("application/x-ndjson"),
            body: bulk_write_back_body(index, articles)?,
        })
    }

    pub fn get(index: &str, id: &str) -> Request {
        Request::bare("GET", format!("/{}/_doc/{}", encode(index), encode(id)))
    }

    pub fn delete(index: &str, id: &str) -> Request {
        Request::bare(
            "DELETE",
            format!("/{}/_doc/{}?refresh=wait_for", encode(index), encode(id)),
        )
    }
}

/// Percent-encodes one path segment: every byte but `A-Z a-z 0-9 _ -`, the characters of
/// an article id ([`super::is_valid_id`]). Dots are encoded too, though URL parsers may
/// still read `%2E%2E` as `..`: the id rule is what keeps dot segments out; this keeps any
/// other character (a `?`, a `#`, a `/`) from changing the request.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether an error answer says the index does not exist: before the first write, the
/// knowledge base is empty rather than broken.
pub fn is_index_missing(body: &str) -> bool {
    serde_json::from_str::<Value>(body).is_ok_and(|v| {
        v.pointer("/error/type").and_then(Value::as_str) == Some("index_not_found_exception")
    })
}

/// What an error answer says went wrong: its `error.reason`, else the start of the body.
pub fn error_reason(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| Some(reason_of(v.get("error")?)));
    // Characters, not bytes: a reason may quote a Chinese article.
    from_json.unwrap_or_else(|| body.chars().take(300).collect())
}

/// An error object's `reason`, else the whole object.
fn reason_of(error: &Value) -> String {
    error
        .get("reason")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), str::to_string)
}

/// The result of each `index` action of a `_bulk` response, in order.
fn bulk_results(body: &str) -> Result<Vec<Value>> {
    let mut value: Value = serde_json::from_str(body)
        .map_err(|e| Error::internal(format!("OpenSearch bulk response: {e}")))?;
    let items = value
        .get_mut("items")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error::internal(format!("OpenSearch bulk: {}", error_reason(body))))?;
    Ok(items
        .iter_mut()
        .filter_map(|item| item.get_mut("index").map(Value::take))
        .collect())
}

/// Reads a `_bulk` response: how many articles were new, or the first item's error.
pub fn parse_bulk_response(body: &str) -> Result<usize> {
    let mut created = 0;
    for result in bulk_results(body)? {
        if let Some(error) = result.get("error") {
            let id = result.get("_id").and_then(Value::as_str).unwrap_or("?");
            return Err(Error::internal(format!(
                "OpenSearch did not save article {id:?}: {}",
                reason_of(error)
            )));
        }
        if result.get("result").and_then(Value::as_str) == Some("created") {
            created += 1;
        }
    }
    Ok(created)
}

/// What became of a write-back ([`bulk_write_back_body`]), article by article.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrittenBack {
    /// Articles whose vectors are now current.
    pub written: usize,
    /// Articles written since they were listed: their writer stored its own vectors.
    pub raced: usize,
    /// Articles the domain did not write for another reason.
    pub failed: usize,
    /// The reason the domain gave for the first of those.
    pub first_error: Option<String>,
}

/// Reads a write-back's `_bulk` response: a version conflict (409) is a lost race, any
/// other error a failure; neither stops the rest.
pub fn parse_write_back_response(body: &str) -> Result<WrittenBack> {
    let mut out = WrittenBack::default();
    for result in bulk_results(body)? {
        match result.get("error") {
            None => out.written += 1,
            Some(error) => {
                let conflict = result.get("status").and_then(Value::as_u64) == Some(409)
                    || error.get("type").and_then(Value::as_str)
                        == Some("version_conflict_engine_exception");
                if conflict {
                    out.raced += 1;
                } else {
                    out.failed += 1;
                    out.first_error.get_or_insert_with(|| reason_of(error));
                }
            }
        }
    }
    Ok(out)
}

/// Reads a `GET _doc` answer (200 or 404): the article, or `None` when there is none.
pub fn parse_get_response(body: &str) -> Result<Option<Article>> {
    if is_index_missing(body) {
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct Got {
        found: bool,
        #[serde(rename = "_source")]
        source: Option<Article>,
    }
    let got: Got = serde_json::from_str(body)
        .map_err(|e| Error::internal(format!("OpenSearch get: {e}: {}", error_reason(body))))?;
    Ok(if got.found { got.source } else { None })
}

#[derive(Deserialize)]
struct SearchResponse {
    hits: Hits,
}

#[derive(Deserialize)]
struct Hits {
    hits: Vec<RawHit>,
}

#[derive(Deserialize)]
struct RawHit {
    #[serde(rename = "_score")]
    score: Option<f32>,
    #[serde(rename = "_source")]
    source: Article,
}

#[derive(Deserialize)]
struct Listing {
    hits: ListedHits,
}

#[derive(Deserialize)]
struct ListedHits {
    hits: Vec<ListedHit>,
}

#[derive(Deserialize)]
struct ListedHit {
    #[serde(rename = "_source")]
    source: ListedSource,
    #[serde(rename = "_seq_no")]
    seq_no: Option<u64>,
    #[serde(rename = "_primary_term")]
    primary_term: Option<u64>,
}

/// The version a document was read at: a write conditioned on it fails once the document
/// has been written again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub seq_no: u64,
    pub primary_term: u64,
}

/// One article of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub article: Article,
    /// The question vectors its document keeps, if any.
    pub stored: Option<Stored>,
    /// The version it was read at (a domain gives it when the listing asks).
    pub version: Option<Version>,
}

#[derive(Deserialize)]
struct ListedSource {
    #[serde(flatten)]
    article: Article,
    #[serde(default)]
    question_vectors: Option<PackedVectors>,
}

/// Reads one page of a full listing: each article with its stored question vectors, where
/// its document has them, and the version it was read at.
pub fn parse_listing(body: &str) -> Result<Vec<Listed>> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| Error::internal(format!("OpenSearch answered with no JSON: {e}")))?;
    if value.get("error").is_some() {
        return Err(Error::internal(format!(
            "OpenSearch: {}",
            error_reason(body)
        )));
    }
    let listing: Listing = serde_json::from_value(value)
        .map_err(|e| Error::internal(format!("OpenSearch listing: {e}")))?;
    Ok(listing
        .hits
        .hits
        .into_iter()
        .map(|h| Listed {
            stored: h.source.question_vectors.and_then(PackedVectors::unpack),
            article: h.source.article,
            version: h
                .seq_no
                .zip(h.primary_term)
                .map(|(seq_no, primary_term)| Version {
                    seq_no,
                    primary_term,
                }),
        })
        .collect())
}

/// Reads a `_search` response into candidates for the ranker: each article with
/// OpenSearch's score. An error response (`{"error": ...}`) or a malformed one is an error
/// that says what came back.
pub fn parse_search_response(body: &str) -> Result<Vec<(Article, f32)>> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| Error::internal(format!("OpenSearch answered with no JSON: {e}")))?;
    if let Some(error) = value.get("error") {
        return Err(Error::internal(format!("OpenSearch: {}", reason_of(error))));
    }
    let response: SearchResponse = serde_json::from_value(value)
        .map_err(|e| Error::internal(format!("OpenSearch search response: {e}")))?;
    Ok(response
        .hits
        .hits
        .into_iter()
        .map(|h| (h.source, h.score.unwrap_or(0.0)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::{Decision, Ranker, DEFAULT_THRESHOLD};

    #[test]
    fn a_long_message_searches_with_its_first_terms_only() {
        let chinese = "我的订单一直没有发货".repeat(500);
        assert_eq!(chinese.chars().count(), 5000);
        let body = search_body(&chinese, None);
        let query = body["query"]["multi_match"]["query"].as_str().unwrap();
        assert_eq!(query.chars().count(), MAX_QUERY_TERMS);
        assert!(chinese.starts_with(query));
        let english = "where is my parcel ".repeat(100);
        let capped = cap_terms(&english, MAX_QUERY_TERMS);
        assert_eq!(capped.split_whitespace().count(), MAX_QUERY_TERMS);
        assert_eq!(cap_terms("退款 refund 2024", 3), "退款 refund ");
        assert_eq!(cap_terms("短", MAX_QUERY_TERMS), "短");
    }

    #[test]
    fn the_search_body_is_the_documented_one() {
        let documented: Value = serde_json::from_str(include_str!(
            "../../../infra/opensearch/search-request.json"
        ))
        .unwrap();
        assert_eq!(search_body("我忘记密码了，怎么重置？", None), documented);
    }

    /// With the message's vector: the lexical query and a `knn` clause, `should`-combined.
    /// The documented body shows the vector as a placeholder; here it is checked apart.
    #[test]
    fn the_hybrid_search_body_is_the_documented_one() {
        let documented: Value = serde_json::from_str(include_str!(
            "../../../infra/opensearch/search-request-hybrid.json"
        ))
        .unwrap();
        let vector: Vec<f32> = (0..384).map(|n| (n as f32 - 192.0) / 1000.0).collect();
        let mut body = search_body("我忘记密码了，怎么重置？", Some(&vector));
        let sent = body["query"]["bool"]["should"][1]["knn"]["vector"]["vector"].take();
        let sent: Vec<f32> = serde_json::from_value(sent).unwrap();
        assert_eq!(sent, vector);
        body["query"]["bool"]["should"][1]["knn"]["vector"]["vector"] =
            json!("<the message's 384 floats>");
        assert_eq!(body, documented);
        // The lexical half is exactly the lexical body's query.
        assert_eq!(
            body["query"]["bool"]["should"][0],
            search_body("我忘记密码了，怎么重置？", None)["query"]
        );
    }

    #[test]
    fn the_mapping_has_a_cosine_knn_vector_of_the_models_dimension() {
        let mapping: Value = serde_json::from_str(INDEX_MAPPING).unwrap();
        assert_eq!(mapping["settings"]["index"]["knn"], true);
        let vector = &mapping["mappings"]["properties"][VECTOR_FIELD];
        assert_eq!(
            vector,
            &json!({"type": "knn_vector", "dimension": helpdesk_embed::DIM,
                "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene",
                    "parameters": {"ef_construction": 128, "m": 16}}})
        );
        // Kept out of `_source`: listings and hits do not carry 384 numbers an article.
        assert_eq!(
            mapping["mappings"]["_source"]["excludes"],
            json!([VECTOR_FIELD])
        );
        assert_eq!(
            mapping["mappings"]["properties"]["question_vectors"],
            json!({"type": "object", "enabled": false})
        );
    }

    #[test]
    fn documents_carry_the_mean_vector_and_the_packed_question_vectors() {
        let a = Article {
            id: "pw".into(),
            title: "重置密码".into(),
            questions: vec!["忘记密码怎么办".into()],
            answer: "点击“忘记密码”".into(),
            locale: None,
            tags: vec![],
            answers: Default::default(),
        };
        let v = DocVectors {
            mean: vec![0.5, -0.25],
            stored: Stored {
                model: "e5-small-q4.bin:00ff".into(),
                texts: "abc".into(),
                f16: vec![0, 0x3c, 0, 0xb8],
            },
        };
        let body =
            bulk_upsert_body("kb", &[a.clone(), a.clone()], &[Some(v.clone()), None]).unwrap();
        assert_eq!(
            body,
            concat!(
                r#"{"index":{"_id":"pw","_index":"kb"}}"#,
                "\n",
                r#"{"id":"pw","title":"重置密码","questions":["忘记密码怎么办"],"answer":"点击“忘记密码”","vector":[0.5,-0.25],"question_vectors":{"model":"e5-small-q4.bin:00ff","texts":"abc","f16":"ADwAuA=="}}"#,
                "\n",
                r#"{"index":{"_id":"pw","_index":"kb"}}"#,
                "\n",
                r#"{"id":"pw","title":"重置密码","questions":["忘记密码怎么办"],"answer":"点击“忘记密码”"}"#,
                "\n",
            )
        );
        // A listing gives the packed vectors back (the mean stays out of `_source`), with
        // the version each document was read at when the domain gives it.
        let listing = json!({"hits": {"hits": [
            {"_id": "pw", "_seq_no": 7, "_primary_term": 2, "_source": {"id": "pw", "title": "重置密码", "questions": ["忘记密码怎么办"],
                "answer": "点击“忘记密码”", "question_vectors": {"model": "e5-small-q4.bin:00ff", "texts": "abc", "f16": "ADwAuA=="}}},
            {"_id": "x", "_source": {"id": "x", "title": "T", "questions": ["q"], "answer": "A"}}
        ]}});
        let listed = parse_listing(&listing.to_string()).unwrap();
        assert_eq!(
            listed[0],
            Listed {
                article: a.clone(),
                stored: Some(v.stored.clone()),
                version: Some(Version {
                    seq_no: 7,
                    primary_term: 2
                }),
            }
        );
        assert_eq!((&listed[1].stored, listed[1].version), (&None, None));
        assert!(parse_listing(r#"{"error":{"reason":"boom"}}"#).is_err());

        // A write-back: the article as listed with its vectors, on the condition that the
        // document is still at the version listed.
        let version = Version {
            seq_no: 7,
            primary_term: 2,
        };
        let request = Request::write_back("kb", &[(&a, version, &v)]).unwrap();
        assert_eq!((request.method, request.path.as_str()), ("POST", "/_bulk"));
        assert_eq!(request.content_type, Some("application/x-ndjson"));
        assert_eq!(
            request.body,
            concat!(
                r#"{"index":{"_id":"pw","_index":"kb","if_primary_term":2,"if_seq_no":7}}"#,
                "\n",
                r#"{"id":"pw","title":"重置密码","questions":["忘记密码怎么办"],"answer":"点击“忘记密码”","vector":[0.5,-0.25],"question_vectors":{"model":"e5-small-q4.bin:00ff","texts":"abc","f16":"ADwAuA=="}}"#,
                "\n",
            )
        );
    }

    #[test]
    fn a_write_back_answer_tells_written_raced_and_failed_apart() {
        let answer = json!({"took": 2, "errors": true, "items": [
            {"index": {"_id": "a", "result": "updated", "status": 200, "_seq_no": 8, "_primary_term": 2}},
            {"index": {"_id": "b", "status": 409, "error": {"type": "version_conflict_engine_exception",
                "reason": "[b]: version conflict, required seqNo [3], primary term [1]. current document has seqNo [4] and primary term [1]"}}},
            {"index": {"_id": "c", "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"}}},
            {"index": {"_id": "d", "result": "updated", "status": 200}},
        ]});
        assert_eq!(
            parse_write_back_response(&answer.to_string()).unwrap(),
            WrittenBack {
                written: 2,
                raced: 1,
                failed: 1,
                first_error: Some("rejected execution".into()),
            }
        );
        assert!(parse_write_back_response(r#"{"error":{"reason":"boom"}}"#).is_err());
        assert!(parse_write_back_response("<html>502</html>").is_err());
    }

    #[test]
    fn bulk_writes_each_article_under_its_id() {
        let a = Article {
            id: "reset-password-zh".into(),
            title: "如何重置密码".into(),
            questions: vec!["忘记密码怎么办".into()],
            answer: "点击“忘记密码”".into(),
            locale: Some("zh".into()),
            tags: vec![],
            answers: Default::default(),
        };
        assert_eq!(
            bulk_upsert_body("helpdesk-knowledge", &[a], &[]).unwrap(),
            concat!(
                r#"{"index":{"_id":"reset-password-zh","_index":"helpdesk-knowledge"}}"#,
                "\n",
                r#"{"id":"reset-password-zh","title":"如何重置密码","questions":["忘记密码怎么办"],"answer":"点击“忘记密码”","locale":"zh"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn a_recorded_response_is_ranked_like_tantivy_candidates() {
        let candidates = parse_search_response(include_str!(
            "../../testdata/opensearch-search-response.json"
        ))
        .unwrap();
        assert_eq!(candidates.len(), 3);
        assert_eq!(candidates[0].0.id, "reset-password-zh");
        assert!((candidates[0].1 - 11.52).abs() < 1e-3);
        let articles: Vec<Article> =
            serde_json::from_str(include_str!("../../../infra/sample-kb.json")).unwrap();
        let ranker = Ranker::new(&articles);
        let hits = ranker.rank(
            "我忘记密码了，怎么重置？",
            candidates.iter().map(|(a, s)| (a, *s)).collect(),
        );
        let Decision::Reply { hit, .. } = Decision::decide(&hits, DEFAULT_THRESHOLD) else {
            panic!("no reply: {hits:?}");
        };
        assert!(hit.answer.contains("重置密码链接"), "{}", hit.answer);
    }

    #[test]
    fn requests_have_the_documented_paths_and_bodies() {
        let search = Request::search("helpdesk-knowledge", "reset password", None);
        assert_eq!(
            (search.method, search.path.as_str()),
            ("POST", "/helpdesk-knowledge/_search")
        );
        assert_eq!(search.content_type, Some("application/json"));
        let body: Value = serde_json::from_str(&search.body).unwrap();
        assert_eq!(body, search_body("reset password", None));

        // An id with Chinese, a space, a `?`, a slash or dots stays one path segment.
        let delete = Request::delete("helpdesk-knowledge", "退款 refund?/.");
        assert_eq!(delete.method, "DELETE");
        assert_eq!(
            delete.path,
            "/helpdesk-knowledge/_doc/%E9%80%80%E6%AC%BE%20refund%3F%2F%2E?refresh=wait_for"
        );
        assert_eq!(
            Request::get("helpdesk-knowledge", "..").path,
            "/helpdesk-knowledge/_doc/%2E%2E"
        );
        assert!(delete.body.is_empty());
        let get = Request::get("helpdesk-knowledge", "refunds");
        assert_eq!(
            (get.method, get.path.as_str()),
            ("GET", "/helpdesk-knowledge/_doc/refunds")
        );

        let a = Article {
            id: "refunds".into(),
            title: "Refunds".into(),
            questions: vec!["How do I get a refund?".into()],
            answer: "Within 14 days.".into(),
            locale: None,
            tags: vec![],
            answers: Default::default(),
        };
        let upsert = Request::upsert("helpdesk-knowledge", std::slice::from_ref(&a), &[]).unwrap();
        assert_eq!(
            (upsert.method, upsert.path.as_str()),
            ("POST", "/_bulk?refresh=wait_for")
        );
        assert_eq!(upsert.content_type, Some("application/x-ndjson"));
        assert_eq!(
            upsert.body,
            bulk_upsert_body("helpdesk-knowledge", &[a], &[]).unwrap()
        );

        let create = Request::create_index("helpdesk-knowledge");
        assert_eq!(
            (create.method, create.path.as_str()),
            ("PUT", "/helpdesk-knowledge")
        );
        let mapping: Value = serde_json::from_str(&create.body).unwrap();
        assert_eq!(mapping["mappings"]["properties"]["id"]["type"], "keyword");
    }

    #[test]
    fn listing_pages_on_in_id_order() {
        let first: Value =
            serde_json::from_str(&Request::list_page("kb", None, true).body).unwrap();
        assert_eq!(
            first,
            json!({"size": LIST_PAGE, "query": {"match_all": {}}, "sort": [{"id": "asc"}],
                "seq_no_primary_term": true})
        );
        let next: Value =
            serde_json::from_str(&Request::list_page("kb", Some("refunds"), true).body).unwrap();
        assert_eq!(next["search_after"], json!(["refunds"]));
        // A listing asks for the articles alone: no stored vectors, no versions.
        let listing: Value =
            serde_json::from_str(&Request::list_page("kb", Some("refunds"), false).body).unwrap();
        assert_eq!(
            listing,
            json!({"size": LIST_PAGE, "query": {"match_all": {}}, "sort": [{"id": "asc"}],
                "_source": {"excludes": ["question_vectors"]}, "search_after": ["refunds"]})
        );
    }

    #[test]
    fn bulk_and_get_answers_are_read() {
        let created = parse_bulk_response(
            r#"{"took":3,"errors":false,"items":[{"index":{"_id":"a","result":"created","status":201}},{"index":{"_id":"b","result":"updated","status":200}}]}"#,
        )
        .unwrap();
        assert_eq!(created, 1);
        let err = parse_bulk_response(
            r#"{"errors":true,"items":[{"index":{"_id":"a","status":400,"error":{"type":"strict_dynamic_mapping_exception","reason":"mapping set to strict"}}}]}"#,
        )
        .unwrap_err();
        assert!(
            err.message.contains("mapping set to strict"),
            "{}",
            err.message
        );

        assert_eq!(
            parse_get_response(r#"{"_index":"kb","_id":"x","found":false}"#).unwrap(),
            None
        );
        let got = parse_get_response(
            r#"{"_index":"kb","_id":"x","found":true,"_source":{"id":"x","title":"T","questions":["q"],"answer":"A"}}"#,
        )
        .unwrap();
        assert_eq!(got.map(|a| a.answer), Some("A".to_string()));
        assert_eq!(
            parse_get_response(
                r#"{"error":{"type":"index_not_found_exception","reason":"no such index"},"status":404}"#
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn error_and_malformed_responses_say_what_came_back() {
        let err = parse_search_response(
            r#"{"error":{"type":"index_not_found_exception","reason":"no such index [helpdesk-knowledge]"},"status":404}"#,
        )
        .unwrap_err();
        assert!(err.message.contains("no such index"), "{}", err.message);
        assert!(parse_search_response("<html>502</html>").is_err());
        assert!(parse_search_response(r#"{"hits":{"hits":[{"_score":1.0}]}}"#).is_err());
    }
}
