//! The knowledge base on an OpenSearch domain: the index retrieves candidates, and the
//! shared [`Ranker`], trained from every article in the index, orders them, exactly as over
//! tantivy's. The function lists the articles at its first search, and again after a write
//! or when its copy is older than [`KNOWLEDGE_REFRESH`](super::KNOWLEDGE_REFRESH); nothing
//! is sent before a request needs it.
//!
//! With the sentence encoder, writes carry each article's vectors (made where the article
//! was written, or embedded here when missing), the ranker is trained with the question
//! vectors the listing brings back, and a search sends the message's vector for the `knn`
//! half of the candidate query: the message is embedded once, for both. Vectors the listing
//! finds stale (another model file) or missing are embedded by the training and written
//! back to their documents, each write conditioned on the version listed, so that the next
//! function to start finds them current and the `knn_vector` is this model's.
//!
//! Requests are built as data in [`crate::knowledge::opensearch`] and sent through the
//! `opensearch` crate's transport, which signs them with SigV4 (service `es`) from the SDK
//! configuration's credentials and region.

use super::KNOWLEDGE_REFRESH;
use crate::knowledge::opensearch::{
    error_reason, is_index_missing, parse_bulk_response, parse_get_response, parse_listing,
    parse_search_response, parse_write_back_response, DocVectors, Request, Version, WrittenBack,
    LIST_PAGE,
};
use crate::knowledge::semantic::Vectors;
use crate::knowledge::stored_vectors;
use crate::knowledge::{self, is_valid_id, Article, Hit, Ranker};
use crate::ports::KnowledgeIndex;
use crate::{Error, Result};
use async_trait::async_trait;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use opensearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use opensearch::http::{Method, Url};
use opensearch::OpenSearch;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Mutex, OnceCell};

/// The index name when `OPENSEARCH_INDEX` is not set.
pub const DEFAULT_INDEX: &str = "helpdesk-knowledge";
/// Credentials this close to their expiry are fetched again before signing.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(300);
/// A search is on the auto-reply path: better a hand-off than a queue that stalls.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A write-back request's body stays under this (one article larger goes alone): half the
/// 10 MiB that a domain of the smallest instance types accepts, as an article may carry up
/// to 256 question vectors (a third of a MiB in base64).
const WRITE_BACK_BYTES: usize = 5 << 20;

/// Every article of a listing, and those whose stored vectors were stale or missing (with
/// the version each was read at, where the domain gave it).
struct Loaded {
    articles: Vec<Article>,
    stale: Vec<(usize, Option<Version>)>,
}

/// Every article, and the ranker trained from them.
struct Trained {
    articles: HashMap<String, Article>,
    ranker: Ranker,
}

pub struct OpenSearchKnowledge {
    /// Built at the first request, not at cold start: building it reads the system's
    /// certificate store.
    client: OnceCell<OpenSearch>,
    base: Url,
    region: aws_config::Region,
    provider: SharedCredentialsProvider,
    index: String,
    trained: Mutex<Option<(Instant, Arc<Trained>)>>,
    /// Set once the index is known to exist, so writes check it once per process.
    index_ready: OnceCell<()>,
    /// The process's vectors (see [`super::vectors`]), looked up at the first use.
    vectors: OnceLock<Option<Arc<Vectors>>>,
}

impl OpenSearchKnowledge {
    /// An adapter for the domain at `url`, signing with `config`'s region and credentials.
    /// Sends nothing.
    pub fn new(
        config: &aws_config::SdkConfig,
        url: &str,
        index: impl Into<String>,
    ) -> Result<OpenSearchKnowledge> {
        let base = url.trim().trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::internal(format!(
                "OPENSEARCH_URL {base:?} is not an http(s) URL"
            )));
        }
        let base = Url::parse(base)
            .map_err(|e| Error::internal(format!("OPENSEARCH_URL {base:?}: {e}")))?;
        let region = config
            .region()
            .cloned()
            .ok_or_else(|| Error::internal("OpenSearch needs a region (AWS_REGION)"))?;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| Error::internal("OpenSearch needs AWS credentials to sign with"))?;
        let provider = SharedCredentialsProvider::new(KeptCredentials {
            provider,
            kept: Mutex::new(None),
        });
        Ok(OpenSearchKnowledge {
            client: OnceCell::new(),
            base,
            region,
            provider,
            index: index.into(),
            trained: Mutex::new(None),
            index_ready: OnceCell::new(),
            vectors: OnceLock::new(),
        })
    }

    /// With these vectors (`None`: the lexical ranking and lexical candidates, and no
    /// vectors written).
    pub fn with_vectors(mut self, vectors: Option<Arc<Vectors>>) -> OpenSearchKnowledge {
        self.vectors = OnceLock::from(vectors);
        self
    }

    fn vectors(&self) -> Option<Arc<Vectors>> {
        self.vectors.get_or_init(super::vectors).clone()
    }

    /// The adapter for `OPENSEARCH_URL`, on the index `OPENSEARCH_INDEX` (or
    /// [`DEFAULT_INDEX`]).
    pub fn from_env(config: &aws_config::SdkConfig) -> Result<OpenSearchKnowledge> {
        let index = std::env::var("OPENSEARCH_INDEX")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_INDEX.to_string());
        OpenSearchKnowledge::new(config, &super::env("OPENSEARCH_URL")?, index)
    }

    /// The client, built at the first request.
    async fn client(&self) -> Result<&OpenSearch> {
        self.client
            .get_or_try_init(|| async {
                install_ring();
                let transport =
                    TransportBuilder::new(SingleNodeConnectionPool::new(self.base.clone()))
                        .auth(opensearch::auth::Credentials::AwsSigV4(
                            self.provider.clone(),
                            self.region.clone(),
                        ))
                        .service_name("es")
                        .timeout(REQUEST_TIMEOUT)
                        .build()
                        .map_err(|e| Error::internal(format!("OpenSearch HTTP client: {e}")))?;
                Ok(OpenSearch::new(transport))
            })
            .await
    }

    /// Sends one request, signed by the transport; answers the status and the body, whatever
    /// the status.
    async fn send(&self, request: &Request) -> Result<(u16, String)> {
        let what = || format!("OpenSearch {} {}", request.method, request.path);
        let method = match request.method {
            "GET" => Method::Get,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            other => {
                return Err(Error::internal(format!(
                    "{}: no such method {other}",
                    what()
                )))
            }
        };
        // The transport joins the path, already percent-encoded, to the domain's URL as it
        // is, and encodes the query from pairs: the query goes separately, decoded.
        let (path, query) = match request.path.split_once('?') {
            Some((path, query)) => (path, query_pairs(query)),
            None => (request.path.as_str(), Vec::new()),
        };
        let mut headers = HeaderMap::new();
        if let Some(ct) = request.content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        let body = (!request.body.is_empty()).then_some(request.body.as_bytes());
        let response = self
            .client()
            .await?
            .transport()
            .send(
                method,
                path,
                headers,
                (!query.is_empty()).then_some(query.as_slice()),
                body,
                None,
            )
            .await
            .map_err(|e| Error::internal(format!("{}: {e}", what())))?;
        let status = response.status_code().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| Error::internal(format!("{}: reading the answer: {e}", what())))?;
        Ok((status, body))
    }

    /// Sends `request` and fails on any status outside 2xx, with OpenSearch's reason.
    async fn send_ok(&self, request: &Request) -> Result<String> {
        let (status, body) = self.send(request).await?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(Error::internal(format!(
                "OpenSearch {} {}: {status}: {}",
                request.method,
                request.path,
                error_reason(&body)
            )))
        }
    }

    /// Creates the index with the mapping from `infra/opensearch/` if it is not there.
    async fn ensure_index(&self) -> Result<()> {
        self.index_ready
            .get_or_try_init(|| async {
                let (status, body) = self.send(&Request::index_exists(&self.index)).await?;
                match status {
                    200 => return Ok(()),
                    404 => {}
                    // An unavailable domain is not a missing index.
                    _ => {
                        return Err(Error::internal(format!(
                            "checking OpenSearch index {}: {status}: {}",
                            self.index,
                            error_reason(&body)
                        )))
                    }
                }
                let create = Request::create_index(&self.index);
                let (status, body) = self.send(&create).await?;
                // Another function may have created it between the check and here.
                if (200..300).contains(&status) || body.contains("resource_already_exists") {
                    tracing::info!(index = %self.index, "OpenSearch knowledge index created");
                    Ok(())
                } else {
                    Err(Error::internal(format!(
                        "creating OpenSearch index {}: {status}: {}",
                        self.index,
                        error_reason(&body)
                    )))
                }
            })
            .await
            .map(|_| ())
    }

    /// Every article, page by page in id order; none when the index does not exist yet.
    /// With `vectors`, the question vectors the documents carry go into them, and those
    /// that are stale or missing are noted. A listing passes `None`: it needs no vectors,
    /// so it neither loads the model nor decodes them.
    async fn load_all(&self, vectors: Option<Arc<Vectors>>) -> Result<Loaded> {
        let mut articles: Vec<Article> = Vec::new();
        let mut stale = Vec::new();
        loop {
            let after = articles.last().map(|a| a.id.as_str());
            let request = Request::list_page(&self.index, after, vectors.is_some());
            let (status, body) = self.send(&request).await?;
            if status == 404 && is_index_missing(&body) {
                return Ok(Loaded {
                    articles: Vec::new(),
                    stale: Vec::new(),
                });
            }
            if !(200..300).contains(&status) {
                return Err(Error::internal(format!(
                    "listing the articles: {status}: {}",
                    error_reason(&body)
                )));
            }
            let page = parse_listing(&body)?;
            let full = page.len() == LIST_PAGE;
            for listed in page {
                if let Some(vectors) = &vectors {
                    if !stored_vectors::preload(&listed.article, listed.stored.as_ref(), vectors) {
                        stale.push((articles.len(), listed.version));
                    }
                }
                articles.push(listed.article);
            }
            if !full {
                return Ok(Loaded { articles, stale });
            }
        }
    }

    /// The articles and their ranker, listed and trained again when stale. Training embeds
    /// the question vectors the listing found stale or missing; they are then written back
    /// ([`Self::write_back`]), so that the next function to start finds them current.
    async fn trained(&self) -> Result<Arc<Trained>> {
        let mut kept = self.trained.lock().await;
        if let Some((at, trained)) = kept.as_ref() {
            if at.elapsed() < KNOWLEDGE_REFRESH {
                return Ok(trained.clone());
            }
        }
        let started = Instant::now();
        let vectors = self.vectors();
        let Loaded { articles, stale } = self.load_all(vectors.clone()).await?;
        let ranker = Ranker::with_vectors(&articles, vectors);
        let stale: Vec<(Article, Option<Version>)> = stale
            .into_iter()
            .map(|(at, version)| (articles[at].clone(), version))
            .collect();
        let trained = Arc::new(Trained {
            articles: articles.into_iter().map(|a| (a.id.clone(), a)).collect(),
            ranker,
        });
        tracing::info!(
            articles = trained.articles.len(),
            ms = started.elapsed().as_millis() as u64,
            "knowledge ranker trained from OpenSearch"
        );
        *kept = Some((Instant::now(), trained.clone()));
        // Searches of this process go on with the new ranker meanwhile.
        drop(kept);
        self.write_back(stale).await;
        Ok(trained)
    }

    /// Writes the vectors of articles listed stale back to their documents (the packed
    /// question vectors and the `knn_vector` mean), each conditioned on the version listed,
    /// in bulk requests of at most [`WRITE_BACK_BYTES`] one after another. A document written since
    /// is left to its writer; a failure is logged and left for the next listing to find
    /// again: the search goes on either way. Nothing without a model.
    async fn write_back(&self, stale: Vec<(Article, Option<Version>)>) {
        if stale.is_empty() || self.vectors().is_none() {
            return;
        }
        // A domain that gives no version cannot guard the write: such documents stay stale.
        let (stale, unversioned): (Vec<_>, Vec<_>) =
            stale.into_iter().partition(|(_, v)| v.is_some());
        if !unversioned.is_empty() {
            tracing::debug!(
                articles = unversioned.len(),
                "stale question vectors not written back: the listing gave no version"
            );
        }
        let articles: Vec<Article> = stale.iter().map(|(a, _)| a.clone()).collect();
        let made = match self.doc_vectors(&articles).await {
            Ok(made) => made,
            Err(e) => {
                tracing::warn!(articles = articles.len(), error = %e.message, "stale question vectors not written back");
                return;
            }
        };
        let ready: Vec<(&Article, Version, &DocVectors)> = stale
            .iter()
            .zip(&made)
            .filter_map(|((a, version), v)| Some((a, (*version)?, v.as_ref()?)))
            .collect();
        let size = |item: &(&Article, Version, &DocVectors)| {
            Request::write_back(&self.index, std::slice::from_ref(item)).map_or(0, |r| r.body.len())
        };
        let mut done = WrittenBack::default();
        for chunk in chunks_under(&ready, size, WRITE_BACK_BYTES) {
            let sent = match Request::write_back(&self.index, chunk) {
                Ok(request) => self.send_ok(&request).await,
                Err(e) => Err(e),
            };
            match sent.and_then(|body| parse_write_back_response(&body)) {
                Ok(n) => {
                    done.written += n.written;
                    done.raced += n.raced;
                    done.failed +=
                        n.failed + chunk.len().saturating_sub(n.written + n.raced + n.failed);
                    done.first_error = done.first_error.or(n.first_error);
                }
                Err(e) => {
                    // The domain is unwell: the rest waits for the next listing too.
                    done.failed = ready.len() - done.written - done.raced;
                    done.first_error = done.first_error.or(Some(e.message));
                    break;
                }
            }
        }
        // `raced`: written since they were listed, with their writer's own vectors.
        if done.failed > 0 {
            tracing::warn!(
                written = done.written,
                raced = done.raced,
                failed = done.failed,
                error = done.first_error.unwrap_or_default(),
                "stale question vectors written back to OpenSearch, some not: the next listing tries again"
            );
        } else {
            tracing::info!(
                written = done.written,
                raced = done.raced,
                "stale question vectors written back to OpenSearch"
            );
        }
    }

    async fn forget(&self) {
        *self.trained.lock().await = None;
    }

    /// Each article's document vectors (none without a model): those that came with the
    /// article (preloaded from the table or the stream record) are used as they are, the
    /// rest embedded off the async threads.
    async fn doc_vectors(&self, articles: &[Article]) -> Result<Vec<Option<DocVectors>>> {
        let Some(vectors) = self.vectors() else {
            return Ok(Vec::new());
        };
        let articles = articles.to_vec();
        tokio::task::spawn_blocking(move || {
            articles
                .iter()
                .map(|a| {
                    let stored = stored_vectors::make(a, &vectors)?;
                    let mean = stored_vectors::mean(a, &vectors);
                    Some(DocVectors { mean, stored })
                })
                .collect()
        })
        .await
        .map_err(|e| Error::internal(format!("embedding article questions: {e}")))
    }
}

/// `items` cut into runs in order, each of total `size` at most `max`, save an item larger
/// than `max`, which goes alone.
fn chunks_under<T>(items: &[T], size: impl Fn(&T) -> usize, max: usize) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let (mut start, mut total) = (0, 0);
    for (n, item) in items.iter().enumerate() {
        let bytes = size(item);
        if n > start && total + bytes > max {
            chunks.push(&items[start..n]);
            (start, total) = (n, 0);
        }
        total += bytes;
    }
    if start < items.len() {
        chunks.push(&items[start..]);
    }
    chunks
}

/// The pairs of a query string, decoded: the transport encodes them again.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The reqwest under the `opensearch` crate has rustls without a crypto provider of its own
/// (no aws-lc, no OpenSSL) and takes rustls' process default: ring, as the SDK's clients use.
/// One already installed stays.
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The SDK's credentials, kept until near their expiry: the transport asks for them before
/// every request, and a provider chain outside Lambda (IMDS, SSO) may make a network call per
/// fetch.
#[derive(Debug)]
struct KeptCredentials {
    provider: SharedCredentialsProvider,
    kept: Mutex<Option<Credentials>>,
}

impl ProvideCredentials for KeptCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            let mut kept = self.kept.lock().await;
            if let Some(c) = kept.as_ref() {
                let fresh = c
                    .expiry()
                    .is_none_or(|at| at > SystemTime::now() + CREDENTIALS_MARGIN);
                if fresh {
                    return Ok(c.clone());
                }
            }
            let c = self.provider.provide_credentials().await?;
            *kept = Some(c.clone());
            Ok(c)
        })
    }
}

#[async_trait]
impl KnowledgeIndex for OpenSearchKnowledge {
    async fn search(&self, query: &str, limit: usize) -> Result<Vec<Hit>> {
        let trained = self.trained().await?;
        if trained.articles.is_empty() {
            return Ok(Vec::new());
        }
        // A query without terms ("Who are you?") is not sent: the ranker's own proposals
        // are its candidates.
        let found = if knowledge::query_terms(query).is_empty() {
            Vec::new()
        } else {
            // The ranker reads the same vector again: embedded once.
            let vector = self.vectors().map(|v| v.query(query));
            let request = Request::search(&self.index, query, vector.as_deref());
            let body = self.send_ok(&request).await?;
            parse_search_response(&body)?
        };
        let found = found.iter().map(|(a, s)| (a, *s)).collect();
        Ok(knowledge::hits(
            &trained.ranker,
            &trained.articles,
            query,
            found,
            limit,
        ))
    }

    async fn get(&self, id: &str) -> Result<Option<Article>> {
        // Every write checks the id, so an id that fails the rule names no article here;
        // and sent, `..` would address the index itself.
        if !is_valid_id(id) {
            return Ok(None);
        }
        let (status, body) = self.send(&Request::get(&self.index, id)).await?;
        if status == 200 || status == 404 {
            parse_get_response(&body)
        } else {
            Err(Error::internal(format!(
                "reading article {id}: {status}: {}",
                error_reason(&body)
            )))
        }
    }

    async fn list(&self) -> Result<Vec<Article>> {
        Ok(self.load_all(None).await?.articles)
    }

    async fn upsert(&self, articles: &[Article]) -> Result<usize> {
        for a in articles {
            a.validate()?;
        }
        if articles.is_empty() {
            return Ok(0);
        }
        self.ensure_index().await?;
        let vectors = self.doc_vectors(articles).await?;
        let body = self
            .send_ok(&Request::upsert(&self.index, articles, &vectors)?)
            .await?;
        self.forget().await;
        parse_bulk_response(&body)
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        // As in `get`: deleting `..` would delete the whole index.
        if !is_valid_id(id) {
            return Ok(false);
        }
        let (status, body) = self.send(&Request::delete(&self.index, id)).await?;
        self.forget().await;
        match status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(Error::internal(format!(
                "deleting article {id}: {status}: {}",
                error_reason(&body)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::{Region, SdkConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn config() -> SdkConfig {
        SdkConfig::builder()
            .region(Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            )))
            .build()
    }

    /// Reads one HTTP/1.1 request: its head (lower-cased) and its body.
    async fn read_request(socket: &mut tokio::net::TcpStream) -> (String, String) {
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let head = text[..end].to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if data.len() >= end + 4 + length || n == 0 {
                    let body = String::from_utf8_lossy(&data[end + 4..]).to_string();
                    return (head, body);
                }
            }
        }
    }

    /// Every request a fake domain saw: its head (lower-cased) and body.
    type Seen = Arc<std::sync::Mutex<Vec<(String, String)>>>;

    /// The request lines of what a fake domain saw (`post /_bulk http/1.1`).
    fn request_lines(seen: &[(String, String)]) -> Vec<&str> {
        seen.iter()
            .map(|(head, _)| head.lines().next().unwrap_or_default())
            .collect()
    }

    /// A fake domain on 127.0.0.1 that answers each request with `answer(head, body)`.
    async fn fake_domain(
        answer: impl Fn(&str, &str) -> (u16, String) + Send + 'static,
    ) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Seen::default();
        let kept = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (head, body) = read_request(&mut socket).await;
                let (status, text) = answer(&head, &body);
                kept.lock().unwrap().push((head, body));
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                socket.write_all(response.as_bytes()).await.unwrap();
            }
        });
        (url, seen)
    }

    fn sample_listing() -> String {
        let articles: Vec<Article> =
            serde_json::from_str(include_str!("../../../infra/sample-kb.json")).unwrap();
        let hits: Vec<_> = articles
            .iter()
            .map(|a| serde_json::json!({"_id": a.id, "_score": null, "_source": a}))
            .collect();
        serde_json::json!({"hits": {"hits": hits}}).to_string()
    }

    #[tokio::test]
    async fn signed_requests_and_a_recorded_search_go_through_the_ranker() {
        let listing = sample_listing();
        let recorded = include_str!("../../testdata/opensearch-search-response.json");
        // A listing trains the ranker; any other search gets the recorded answer.
        let (url, seen) = fake_domain(move |_, body| {
            if body.contains("match_all") {
                (200, listing.clone())
            } else {
                (200, recorded.to_string())
            }
        })
        .await;
        let index = OpenSearchKnowledge::new(&config(), &url, DEFAULT_INDEX)
            .unwrap()
            .with_vectors(None);
        let hits = index.search("我忘记密码了，怎么重置？", 3).await.unwrap();
        assert_eq!(hits[0].article_id, "reset-password-zh", "{hits:?}");
        assert!(
            hits[0].answer.contains("重置密码链接"),
            "{}",
            hits[0].answer
        );

        let seen = seen.lock().unwrap();
        // One listing to train the ranker, then the search itself.
        assert_eq!(seen.len(), 2, "{seen:?}");
        for (head, _) in seen.iter() {
            assert!(
                head.contains("authorization: aws4-hmac-sha256 credential=akidexample/"),
                "{head}"
            );
            assert!(head.contains("/eu-west-1/es/aws4_request"), "{head}");
            assert!(head.contains("x-amz-date: "), "{head}");
        }
        assert!(
            seen[1].0.starts_with("post /helpdesk-knowledge/_search "),
            "{}",
            seen[1].0
        );
    }

    /// A question made only of stop words has no terms to send: no `_search` goes to the
    /// domain, and the ranker's own proposals still find the article that asks it.
    #[tokio::test]
    async fn a_query_of_stop_words_alone_still_finds_its_article() {
        let mut articles: Vec<Article> =
            serde_json::from_str(include_str!("../../../infra/sample-kb.json")).unwrap();
        articles.push(Article {
            id: "who".into(),
            title: "About us".into(),
            questions: vec!["Who are you?".into()],
            answer: "We are the help desk.".into(),
            locale: Some("en".into()),
            tags: vec![],
            answers: Default::default(),
        });
        let hits: Vec<_> = articles
            .iter()
            .map(|a| serde_json::json!({"_id": a.id, "_score": null, "_source": a}))
            .collect();
        let listing = serde_json::json!({"hits": {"hits": hits}}).to_string();
        let (url, seen) = fake_domain(move |_, body| {
            if body.contains("match_all") {
                (200, listing.clone())
            } else {
                (500, r#"{"error":"no term query was expected"}"#.to_string())
            }
        })
        .await;
        let index = OpenSearchKnowledge::new(&config(), &url, DEFAULT_INDEX)
            .unwrap()
            .with_vectors(None);
        assert!(knowledge::query_terms("Who are you?").is_empty());
        let hits = index.search("Who are you?", 3).await.unwrap();
        assert_eq!(hits[0].article_id, "who", "{hits:?}");
        assert!(
            hits[0].confidence >= knowledge::DEFAULT_THRESHOLD,
            "{hits:?}"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(request_lines(&seen).len(), 1, "{seen:?}");
        assert!(seen[0].1.contains("match_all"), "{seen:?}");
    }

    #[tokio::test]
    async fn the_first_write_creates_the_index_with_the_mapping() {
        let (url, seen) = fake_domain(|head, _| match head.split(' ').next() {
            Some("head") => (404, String::new()),
            Some("put") => (200, r#"{"acknowledged":true}"#.to_string()),
            _ => (
                200,
                r#"{"errors":false,"items":[{"index":{"_id":"refunds","result":"created","status":201}}]}"#
                    .to_string(),
            ),
        })
        .await;
        let index = OpenSearchKnowledge::new(&config(), &url, DEFAULT_INDEX)
            .unwrap()
            .with_vectors(None);
        let article = Article {
            id: "refunds".into(),
            title: "Refunds".into(),
            questions: vec!["How do I get a refund?".into()],
            answer: "Within 14 days.".into(),
            locale: None,
            tags: vec![],
            answers: Default::default(),
        };
        assert_eq!(
            index.upsert(std::slice::from_ref(&article)).await.unwrap(),
            1
        );
        // The index is checked once per process, not before every write.
        index.upsert(std::slice::from_ref(&article)).await.unwrap();

        let seen = seen.lock().unwrap();
        let lines = request_lines(&seen);
        assert_eq!(
            lines,
            [
                "head /helpdesk-knowledge http/1.1",
                "put /helpdesk-knowledge http/1.1",
                "post /_bulk?refresh=wait_for http/1.1",
                "post /_bulk?refresh=wait_for http/1.1",
            ]
        );
        assert_eq!(seen[1].1, crate::knowledge::opensearch::INDEX_MAPPING);
        assert!(seen[2].0.contains("content-type: application/x-ndjson"));
    }

    /// With the model file (skipped, saying so, without it): a write carries the article's
    /// mean vector and packed question vectors, a listing's vectors train the ranker with
    /// nothing embedded again, and a search sends the lexical query and the message's vector.
    #[tokio::test]
    async fn with_the_encoder_documents_carry_vectors_and_searches_are_hybrid() {
        let Some(model) = crate::knowledge::semantic::encoder() else {
            helpdesk_embed::say_skipped("OpenSearch documents with vectors and hybrid searches");
            return;
        };
        let articles: Vec<Article> =
            serde_json::from_str(include_str!("../../../infra/sample-kb.json")).unwrap();
        let docs: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
        let kept = docs.clone();
        let (url, seen) = fake_domain(move |head, body| match head.split(' ').next() {
            Some("head") => (200, String::new()),
            _ if head.starts_with("post /_bulk") => {
                let mut items = Vec::new();
                let mut lines = body.lines();
                while let (Some(_), Some(doc)) = (lines.next(), lines.next()) {
                    let doc: serde_json::Value = serde_json::from_str(doc).unwrap();
                    items.push(
                        serde_json::json!({"index": {"_id": doc["id"], "result": "created"}}),
                    );
                    kept.lock().unwrap().push(doc);
                }
                (
                    200,
                    serde_json::json!({"errors": false, "items": items}).to_string(),
                )
            }
            _ => {
                // A listing or a search: every document, as a domain's `_source` keeps them
                // (without the excluded `vector`).
                let hits: Vec<_> = kept
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|d| {
                        let mut d = d.clone();
                        d.as_object_mut().unwrap().remove("vector");
                        serde_json::json!({"_id": d["id"], "_score": 1.0, "_source": d})
                    })
                    .collect();
                (200, serde_json::json!({"hits": {"hits": hits}}).to_string())
            }
        })
        .await;
        let writer = OpenSearchKnowledge::new(&config(), &url, DEFAULT_INDEX)
            .unwrap()
            .with_vectors(Some(Arc::new(Vectors::in_memory(model))));
        writer.upsert(&articles).await.unwrap();
        for (doc, a) in docs.lock().unwrap().iter().zip(&articles) {
            let mean: Vec<f32> = serde_json::from_value(doc["vector"].clone()).unwrap();
            assert_eq!(mean.len(), helpdesk_embed::DIM, "{}", a.id);
            assert_eq!(
                doc["question_vectors"]["model"].as_str(),
                stored_vectors::model_id()
            );
        }

        // A function starting cold: the listing's vectors fill its store.
        let vectors = Arc::new(Vectors::in_memory(model));
        let reader = OpenSearchKnowledge::new(&config(), &url, DEFAULT_INDEX)
            .unwrap()
            .with_vectors(Some(vectors.clone()));
        let before = seen.lock().unwrap().len();
        let hits = reader.search("我想退款", 3).await.unwrap();
        assert!(hits[0].article_id.starts_with("refund-policy"), "{hits:?}");
        let texts: std::collections::HashSet<&str> =
            articles.iter().flat_map(stored_vectors::texts).collect();
        assert_eq!(
            vectors.kept(),
            texts.len(),
            "no article text embedded again"
        );
        let seen = seen.lock().unwrap();
        let search = &seen[seen.len() - 1];
        assert_eq!(seen.len() - before, 2, "a listing, then the search");
        let body: serde_json::Value = serde_json::from_str(&search.1).unwrap();
        let should = &body["query"]["bool"]["should"];
        assert_eq!(should[0]["multi_match"]["query"], "我想退款");
        let sent: Vec<f32> =
            serde_json::from_value(should[1]["knn"]["vector"]["vector"].clone()).unwrap();
        let expected = model.embed("我想退款", helpdesk_embed::Role::Query);
        assert!(crate::knowledge::semantic::cosine(&sent, &expected) > 0.9999);
    }

    /// A listing of four articles as a domain answers it (with each document's version):
    /// the first with current vectors, the second with another model's, the third with
    /// none, the fourth with another model's.
    fn listing_with_stale_vectors(
        articles: &[Article],
        current: &stored_vectors::Stored,
    ) -> String {
        use base64::Engine;
        let packed = |s: &stored_vectors::Stored| {
            serde_json::json!({"model": s.model, "texts": s.texts,
                "f16": base64::engine::general_purpose::STANDARD.encode(&s.f16)})
        };
        let other = stored_vectors::Stored {
            model: "another-model.bin:00".into(),
            ..current.clone()
        };
        let hits: Vec<_> = articles
            .iter()
            .enumerate()
            .map(|(n, a)| {
                let mut source = serde_json::to_value(a).unwrap();
                match n {
                    0 => source["question_vectors"] = packed(current),
                    2 => {}
                    _ => source["question_vectors"] = packed(&other),
                }
                serde_json::json!({"_id": a.id, "_score": null, "_seq_no": 10 + n, "_primary_term": 3,
                    "_source": source})
            })
            .collect();
        serde_json::json!({"hits": {"hits": hits}}).to_string()
    }

    /// With the model file (skipped, saying so, without it): a listing that finds stale or
    /// missing vectors writes back exactly those articles, each on the condition of the
    /// version listed; a conflict (written since) and a refused item are logged, and the
    /// search that listed answers all the same. A domain failing the write-back does not
    /// fail the search either.
    #[tokio::test]
    async fn stale_vectors_are_written_back_on_the_version_listed() {
        let Some(model) = crate::knowledge::semantic::encoder() else {
            helpdesk_embed::say_skipped("stale OpenSearch vectors written back");
            return;
        };
        let all: Vec<Article> =
            serde_json::from_str(include_str!("../../../infra/sample-kb.json")).unwrap();
        let articles: Vec<Article> = all.into_iter().take(4).collect();
        let made = Vectors::in_memory(model);
        let current = stored_vectors::make(&articles[0], &made).unwrap();
        let listing = listing_with_stale_vectors(&articles, &current);
        let bulk_fails = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fails = bulk_fails.clone();
        let (url, seen) = fake_domain(move |head, _| {
            if head.starts_with("post /_bulk") {
                if fails.load(std::sync::atomic::Ordering::SeqCst) {
                    return (503, r#"{"error":{"type":"unavailable","reason":"try again"},"status":503}"#.to_string());
                }
                // The second article's write goes through, the third was written since it
                // was listed, the fourth is refused.
                return (
                    200,
                    serde_json::json!({"took": 3, "errors": true, "items": [
                        {"index": {"_id": "reset-password-zh", "result": "updated", "status": 200}},
                        {"index": {"_id": "working-hours-en", "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "version conflict"}}},
                        {"index": {"_id": "working-hours-zh", "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "rejected"}}},
                    ]})
                    .to_string(),
                );
            }
            (200, listing.clone())
        })
        .await;

        let vectors = Arc::new(Vectors::in_memory(model));
        let reader = OpenSearchKnowledge::new(&config(), &url, DEFAULT_INDEX)
            .unwrap()
            .with_vectors(Some(vectors.clone()));
        let hits = reader
            .search("How do I reset my password?", 3)
            .await
            .unwrap();
        assert!(!hits.is_empty());
        {
            let seen = seen.lock().unwrap();
            let lines = request_lines(&seen);
            assert_eq!(
                lines,
                [
                    "post /helpdesk-knowledge/_search http/1.1",
                    "post /_bulk http/1.1",
                    "post /helpdesk-knowledge/_search http/1.1",
                ]
            );
            assert_eq!(
                seen[0].1,
                Request::list_page(DEFAULT_INDEX, None, true).body
            );
            assert!(seen[1].0.contains("content-type: application/x-ndjson"));
            // The stale three, each as listed, with the vectors this model makes for it and
            // the version it was listed at; the current one is left alone.
            let expected: Vec<(Article, Version, DocVectors)> = articles[1..]
                .iter()
                .enumerate()
                .map(|(n, a)| {
                    let v = DocVectors {
                        stored: stored_vectors::make(a, &made).unwrap(),
                        mean: stored_vectors::mean(a, &made),
                    };
                    (
                        a.clone(),
                        Version {
                            seq_no: 11 + n as u64,
                            primary_term: 3,
                        },
                        v,
                    )
                })
                .collect();
            let expected: Vec<(&Article, Version, &DocVectors)> =
                expected.iter().map(|(a, v, d)| (a, *v, d)).collect();
            assert_eq!(
                seen[1].1,
                Request::write_back(DEFAULT_INDEX, &expected).unwrap().body
            );
        }

        // A domain that fails the write-back: the search answers all the same.
        bulk_fails.store(true, std::sync::atomic::Ordering::SeqCst);
        let reader = OpenSearchKnowledge::new(&config(), &url, DEFAULT_INDEX)
            .unwrap()
            .with_vectors(Some(Arc::new(Vectors::in_memory(model))));
        let again = reader
            .search("How do I reset my password?", 3)
            .await
            .unwrap();
        assert_eq!(again[0].article_id, hits[0].article_id);
        let seen = seen.lock().unwrap();
        let bulks = seen
            .iter()
            .filter(|(h, _)| h.starts_with("post /_bulk"))
            .count();
        assert_eq!(
            (seen.len(), bulks),
            (6, 2),
            "a listing, one write-back, the search"
        );
    }

    /// Without a model nothing is written back, however stale the listed vectors.
    #[tokio::test]
    async fn without_a_model_nothing_is_written_back() {
        let all: Vec<Article> =
            serde_json::from_str(include_str!("../../../infra/sample-kb.json")).unwrap();
        let articles: Vec<Article> = all.into_iter().take(4).collect();
        let stale = stored_vectors::Stored {
            model: "another-model.bin:00".into(),
            texts: "00".into(),
            f16: vec![0; 4],
        };
        let listing = listing_with_stale_vectors(&articles, &stale);
        let (url, seen) = fake_domain(move |_, _| (200, listing.clone())).await;
        let reader = OpenSearchKnowledge::new(&config(), &url, DEFAULT_INDEX)
            .unwrap()
            .with_vectors(None);
        reader
            .search("How do I reset my password?", 3)
            .await
            .unwrap();
        let seen = seen.lock().unwrap();
        let lines = request_lines(&seen);
        assert_eq!(
            lines,
            [
                "post /helpdesk-knowledge/_search http/1.1",
                "post /helpdesk-knowledge/_search http/1.1",
            ]
        );
    }

    #[test]
    fn write_backs_are_cut_into_requests_under_the_size() {
        let sizes = [3, 4, 2, 9, 1, 1, 5];
        let chunks = chunks_under(&sizes, |n| *n, 7);
        assert_eq!(chunks, [&[3, 4][..], &[2], &[9], &[1, 1, 5]]);
        assert!(chunks_under(&[0usize; 0], |n| *n, 7).is_empty());
    }

    #[tokio::test]
    async fn a_knowledge_base_without_an_index_is_empty_not_broken() {
        let (url, _) = fake_domain(|_, _| {
            (
                404,
                r#"{"error":{"type":"index_not_found_exception","reason":"no such index"},"status":404}"#
                    .to_string(),
            )
        })
        .await;
        let index = OpenSearchKnowledge::new(&config(), &url, DEFAULT_INDEX).unwrap();
        assert!(index.search("refund", 3).await.unwrap().is_empty());
        assert!(index.list().await.unwrap().is_empty());
        assert_eq!(index.get("refunds").await.unwrap(), None);
        assert!(!index.delete("refunds").await.unwrap());
    }

    #[tokio::test]
    async fn encoded_ids_and_the_query_reach_the_domain_as_built() {
        let (url, seen) = fake_domain(|_, _| (404, r#"{"found":false}"#.to_string())).await;
        let index = OpenSearchKnowledge::new(&config(), &url, DEFAULT_INDEX).unwrap();
        // An id no write would take never reaches the domain: deleting `..` would otherwise
        // address `/helpdesk-knowledge` itself.
        for bad in ["..", ".", "退款 a?b#c%d+e", "a/../.."] {
            assert_eq!(index.get(bad).await.unwrap(), None);
            assert!(!index.delete(bad).await.unwrap());
        }
        let id = "refund_policy-2";
        assert_eq!(index.get(id).await.unwrap(), None);
        assert!(!index.delete(id).await.unwrap());

        let seen = seen.lock().unwrap();
        let lines = request_lines(&seen);
        let get = Request::get(DEFAULT_INDEX, id);
        let delete = Request::delete(DEFAULT_INDEX, id);
        assert!(
            delete.path.ends_with("?refresh=wait_for"),
            "{}",
            delete.path
        );
        assert_eq!(
            lines,
            [
                format!("get {} http/1.1", get.path.to_lowercase()),
                format!("delete {} http/1.1", delete.path.to_lowercase()),
            ]
        );
    }

    #[test]
    fn a_url_that_is_not_http_is_refused_at_start() {
        let err = OpenSearchKnowledge::new(&config(), "search-domain.example", "kb")
            .err()
            .map(|e| e.message);
        assert!(err.is_some_and(|m| m.contains("OPENSEARCH_URL")));
    }

    /// Against a real domain when `OPENSEARCH_URL` is set (see `infra/opensearch/README.md`):
    /// writes, finds, reads and deletes an article in a throwaway index.
    #[tokio::test]
    async fn live_round_trip_when_opensearch_url_is_set() {
        let Some(url) = std::env::var("OPENSEARCH_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
        else {
            eprintln!("OPENSEARCH_URL is not set: the live OpenSearch test did not run");
            return;
        };
        let config = crate::aws::connect().await;
        let name = format!("helpdesk-knowledge-test-{}", uuid::Uuid::new_v4().simple());
        let index = OpenSearchKnowledge::new(&config, &url, name.clone()).unwrap();
        let articles: Vec<Article> =
            serde_json::from_str(include_str!("../../../infra/sample-kb.json")).unwrap();
        assert_eq!(index.upsert(&articles).await.unwrap(), articles.len());
        assert_eq!(index.upsert(&articles[..1]).await.unwrap(), 0);
        let hits = index.search("我忘记密码了，怎么重置？", 3).await.unwrap();
        assert!(hits[0].article_id.starts_with("reset-password"), "{hits:?}");
        assert_eq!(index.list().await.unwrap().len(), articles.len());
        let first = &articles[0].id;
        assert_eq!(
            index.get(first).await.unwrap().map(|a| a.id),
            Some(first.clone())
        );
        assert!(index.delete(first).await.unwrap());
        assert!(!index.delete(first).await.unwrap());
        assert_eq!(index.get(first).await.unwrap(), None);
        index.send_ok(&Request::delete_index(&name)).await.unwrap();
    }
}
