//! The knowledge base on AWS without a search cluster: articles live in a DynamoDB table,
//! and each function that searches holds a tantivy index in memory, built from the table at
//! its first search and rebuilt when it is older than [`KNOWLEDGE_REFRESH`]. A knowledge
//! base of a few thousand articles builds in well under a second, and nothing runs while
//! idle.
//!
//! With the sentence encoder, each article's item also keeps its question vectors
//! ([`stored_vectors`]), made where articles are written (here, on the agent API's upsert
//! path), so that a function starting cold reads them with the articles and embeds only
//! the customer's message. Vectors that are stale (another model file, edited questions) or
//! missing are embedded when the index is built, logged, and written back to their items
//! (only the vector attributes, and only if the item's `body` is still the one read), so
//! that the next cold start finds them current. An article written meanwhile keeps its
//! writer's vectors; a write-back that fails leaves the search alone and is tried again at
//! the next build.

use super::{sdk_message, KNOWLEDGE_REFRESH};
use crate::adapters::TantivyIndex;
use crate::knowledge::semantic::Vectors;
use crate::knowledge::stored_vectors::{self, Stored};
use crate::knowledge::{Article, Hit};
use crate::ports::KnowledgeIndex;
use crate::{Error, Result};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// How many stale articles' vectors are written back at once: enough to heal a large
/// knowledge base in seconds, few enough not to eat an on-demand table's burst.
const WRITE_BACK_CONCURRENCY: usize = 8;

/// DynamoDB's largest item: 400 KB, attribute names and values together, read as 400,000
/// bytes (the smaller reading; the service takes a little more).
const ITEM_LIMIT: usize = 400_000;
/// What an item holds besides its body and vectors, generously: the attribute names, the
/// key, and the two fingerprints.
const ITEM_OVERHEAD: usize = 1024;

/// The bytes of question vectors an article's item has room for beside `body` (its article
/// as JSON); an error when the body alone does not fit in an item.
fn vector_room(id: &str, body: &str) -> Result<usize> {
    ITEM_LIMIT
        .checked_sub(body.len() + id.len() + ITEM_OVERHEAD)
        .ok_or_else(|| {
            Error::too_large(
                "article_too_large",
                format!(
                    "article {id:?} takes {} KiB as JSON; an article is kept in one item of at most {} KiB",
                    body.len() / 1024,
                    (ITEM_LIMIT - ITEM_OVERHEAD) / 1024
                ),
            )
        })
}

/// The item attributes that keep an article's question vectors: the packed vectors
/// (binary), the model's fingerprint and the texts' fingerprint.
pub const VECTORS_ATTR: &str = "vectors";
pub const VECTORS_MODEL_ATTR: &str = "vectors_model";
pub const VECTORS_TEXTS_ATTR: &str = "vectors_texts";

pub struct DynamoKnowledge {
    client: Client,
    table: String,
    cache: Mutex<Option<(Instant, Arc<TantivyIndex>)>>,
    /// The process's vectors (see [`super::vectors`]), looked up at the first use: the
    /// model file is read then, not at cold start.
    vectors: OnceLock<Option<Arc<Vectors>>>,
}

/// An article's stored vectors as item attributes.
pub fn vector_attributes(stored: &Stored) -> [(&'static str, AttributeValue); 3] {
    [
        (
            VECTORS_ATTR,
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(stored.f16.clone())),
        ),
        (VECTORS_MODEL_ATTR, AttributeValue::S(stored.model.clone())),
        (VECTORS_TEXTS_ATTR, AttributeValue::S(stored.texts.clone())),
    ]
}

/// The articles of a scan, and those whose stored vectors were stale or missing: each by
/// its place in `articles`, with the `body` it was read with (the version a write-back is
/// conditioned on).
struct Loaded {
    articles: Vec<Article>,
    stale: Vec<(usize, String)>,
}

/// What became of one write-back.
enum WriteBack {
    Written,
    /// The item changed since it was read: its writer stored its own vectors.
    Raced,
    Failed(String),
}

/// An item's stored vectors, when it has them all.
pub fn stored_of(item: &HashMap<String, AttributeValue>) -> Option<Stored> {
    Some(Stored {
        f16: item.get(VECTORS_ATTR)?.as_b().ok()?.as_ref().to_vec(),
        model: item.get(VECTORS_MODEL_ATTR)?.as_s().ok()?.clone(),
        texts: item.get(VECTORS_TEXTS_ATTR)?.as_s().ok()?.clone(),
    })
}

impl DynamoKnowledge {
    /// The knowledge base in `table`, ranked with the process's sentence encoder when there
    /// is one.
    pub fn new(config: &aws_config::SdkConfig, table: String) -> DynamoKnowledge {
        DynamoKnowledge {
            client: Client::new(config),
            table,
            cache: Mutex::new(None),
            vectors: OnceLock::new(),
        }
    }

    /// With these vectors (`None`: the lexical ranking, and no vectors written): a test
    /// reads what a search embedded.
    pub fn with_vectors(
        config: &aws_config::SdkConfig,
        table: String,
        vectors: Option<Arc<Vectors>>,
    ) -> DynamoKnowledge {
        let kb = DynamoKnowledge::new(config, table);
        let _ = kb.vectors.set(vectors);
        kb
    }

    fn vectors(&self) -> Option<Arc<Vectors>> {
        self.vectors.get_or_init(super::vectors).clone()
    }

    /// Every article; with `vectors`, each item's stored vectors are read into them, and
    /// the articles whose vectors are stale or missing are named. A listing passes `None`:
    /// it needs no vectors, so it neither loads the model nor decodes them.
    async fn load_all(&self, vectors: Option<Arc<Vectors>>) -> Result<Loaded> {
        let mut stale = Vec::new();
        let mut stored = 0usize;
        let mut articles = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| {
                    Error::internal(format!("reading the articles: {}", sdk_message(&e)))
                })?;
            for item in out.items.unwrap_or_default() {
                if let Some(body) = item.get("body").and_then(|b| b.as_s().ok()) {
                    match serde_json::from_str::<Article>(body) {
                        Ok(a) => {
                            if let Some(vectors) = &vectors {
                                let found = stored_of(&item);
                                if stored_vectors::preload(&a, found.as_ref(), vectors) {
                                    stored += 1;
                                } else {
                                    stale.push((articles.len(), body.clone()));
                                }
                            }
                            articles.push(a)
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "an article that does not decode was skipped")
                        }
                    }
                }
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        if !stale.is_empty() {
            // Embedded when the index is built, which writes them back.
            tracing::warn!(
                stale = stale.len(),
                stored,
                "articles without current question vectors (another model, or written without one)"
            );
        }
        Ok(Loaded { articles, stale })
    }

    /// The in-memory index, rebuilt when stale.
    async fn index(&self) -> Result<Arc<TantivyIndex>> {
        let mut cache = self.cache.lock().await;
        if let Some((at, index)) = cache.as_ref() {
            if at.elapsed() < KNOWLEDGE_REFRESH {
                return Ok(index.clone());
            }
        }
        let started = Instant::now();
        let vectors = self.vectors();
        let Loaded { articles, stale } = self.load_all(vectors.clone()).await?;
        let index = TantivyIndex::in_memory_with(vectors)?;
        // Embeds the stale articles' texts too.
        index.upsert(&articles).await?;
        tracing::info!(
            articles = articles.len(),
            ms = started.elapsed().as_millis() as u64,
            "knowledge index built"
        );
        let index = Arc::new(index);
        *cache = Some((Instant::now(), index.clone()));
        // Searches of this process go on with the new index meanwhile.
        drop(cache);
        let stale = stale
            .into_iter()
            .map(|(at, body)| (articles[at].clone(), body))
            .collect();
        self.write_back(stale).await;
        Ok(index)
    }

    /// Writes the current vectors of articles read stale back to their items, at most
    /// [`WRITE_BACK_CONCURRENCY`] at once, each an update of the vector attributes alone on
    /// the condition that the item's `body` is still the one read. Logs what it did; never
    /// fails: an article that could not be written stays stale, and the next build tries
    /// again. Nothing without a model.
    async fn write_back(&self, stale: Vec<(Article, String)>) {
        if stale.is_empty() || self.vectors().is_none() {
            return;
        }
        let articles: Vec<(Article, usize)> = stale
            .iter()
            .map(|(a, body)| (a.clone(), vector_room(&a.id, body).unwrap_or(0)))
            .collect();
        let made = match self.embed(articles).await {
            Ok(made) => made,
            Err(e) => {
                tracing::warn!(articles = stale.len(), error = %e.message, "stale question vectors not written back");
                return;
            }
        };
        let (mut written, mut raced, mut failed) = (0usize, 0usize, 0usize);
        let mut first_error = None;
        let mut tally = |done: std::result::Result<WriteBack, tokio::task::JoinError>| {
            let error = match done {
                Ok(WriteBack::Written) => return written += 1,
                Ok(WriteBack::Raced) => return raced += 1,
                Ok(WriteBack::Failed(e)) => e,
                Err(e) => e.to_string(),
            };
            failed += 1;
            first_error.get_or_insert(error);
        };
        let mut running = JoinSet::new();
        for ((article, body), stored) in stale.into_iter().zip(made) {
            let Some(stored) = stored else { continue };
            while running.len() >= WRITE_BACK_CONCURRENCY {
                if let Some(done) = running.join_next().await {
                    tally(done);
                }
            }
            let (client, table) = (self.client.clone(), self.table.clone());
            running.spawn(async move {
                write_vectors(&client, &table, &article.id, body, &stored).await
            });
        }
        while let Some(done) = running.join_next().await {
            tally(done);
        }
        // `raced`: written since they were read, with their writer's own vectors.
        if failed > 0 {
            tracing::warn!(
                written,
                raced,
                failed,
                error = first_error.unwrap_or_default(),
                "stale question vectors written back, some not: the next build tries again"
            );
        } else {
            tracing::info!(written, raced, "stale question vectors written back");
        }
    }

    async fn forget(&self) {
        *self.cache.lock().await = None;
    }

    /// The stored vectors of each article (none without a model), as many as its item has
    /// room for (the bytes beside each article), embedded off the async threads: all the
    /// articles' new texts in one batch, on every core.
    async fn embed(&self, articles: Vec<(Article, usize)>) -> Result<Vec<Option<Stored>>> {
        let Some(vectors) = self.vectors() else {
            return Ok(vec![None; articles.len()]);
        };
        tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = articles
                .iter()
                .flat_map(|(a, _)| stored_vectors::texts(a))
                .collect();
            vectors.get(&texts);
            articles
                .iter()
                .map(|(a, room)| stored_vectors::make_within(a, &vectors, *room))
                .collect()
        })
        .await
        .map_err(|e| Error::internal(format!("embedding article questions: {e}")))
    }
}

/// Sets an item's vector attributes if its `body` is still `body`: an article edited or
/// removed since it was read is left as its writer left it.
async fn write_vectors(
    client: &Client,
    table: &str,
    id: &str,
    body: String,
    stored: &Stored,
) -> WriteBack {
    let mut update = client
        .update_item()
        .table_name(table)
        .key("id", AttributeValue::S(id.to_string()))
        .update_expression("SET #vectors = :vectors, #model = :model, #texts = :texts")
        .condition_expression("#body = :body")
        .expression_attribute_names("#body", "body")
        .expression_attribute_values(":body", AttributeValue::S(body));
    for ((name, value), (alias, placeholder)) in vector_attributes(stored).into_iter().zip([
        ("#vectors", ":vectors"),
        ("#model", ":model"),
        ("#texts", ":texts"),
    ]) {
        update = update
            .expression_attribute_names(alias, name)
            .expression_attribute_values(placeholder, value);
    }
    match update.send().await {
        Ok(_) => WriteBack::Written,
        Err(e) if super::dynamo::condition_failed(&e) => WriteBack::Raced,
        Err(e) => WriteBack::Failed(sdk_message(&e)),
    }
}

#[async_trait]
impl KnowledgeIndex for DynamoKnowledge {
    async fn search(&self, query: &str, limit: usize) -> Result<Vec<Hit>> {
        self.index().await?.search(query, limit).await
    }

    async fn get(&self, id: &str) -> Result<Option<Article>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_string()))
            .send()
            .await
            .map_err(|e| Error::internal(format!("reading article {id}: {}", sdk_message(&e))))?;
        match out
            .item
            .as_ref()
            .and_then(|i| i.get("body"))
            .and_then(|b| b.as_s().ok())
        {
            None => Ok(None),
            Some(body) => serde_json::from_str(body)
                .map(Some)
                .map_err(|e| Error::internal(format!("decoding article {id}: {e}"))),
        }
    }

    async fn list(&self) -> Result<Vec<Article>> {
        let mut all = self.load_all(None).await?.articles;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn upsert(&self, articles: &[Article]) -> Result<usize> {
        for a in articles {
            a.validate()?;
        }
        let mut bodies = Vec::with_capacity(articles.len());
        let mut rooms = Vec::with_capacity(articles.len());
        for a in articles {
            let body = serde_json::to_string(a)
                .map_err(|e| Error::internal(format!("encoding an article: {e}")))?;
            rooms.push((a.clone(), vector_room(&a.id, &body)?));
            bodies.push(body);
        }
        let stored = self.embed(rooms).await?;
        let mut created = 0;
        for ((a, body), stored) in articles.iter().zip(bodies).zip(stored) {
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("id", AttributeValue::S(a.id.clone()))
                .item("body", AttributeValue::S(body));
            for (name, value) in stored.as_ref().map(vector_attributes).into_iter().flatten() {
                put = put.item(name, value);
            }
            let out = put
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
                .await
                .map_err(|e| {
                    Error::internal(format!("saving article {}: {}", a.id, sdk_message(&e)))
                })?;
            if out.attributes.is_none() {
                created += 1;
            }
        }
        self.forget().await;
        Ok(created)
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| Error::internal(format!("deleting article {id}: {}", sdk_message(&e))))?;
        self.forget().await;
        Ok(out.attributes.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_has_room_for_vectors_beside_its_body_and_a_body_too_large_is_a_413() {
        let small = "{\"id\":\"a\"}";
        assert_eq!(
            vector_room("a", small).unwrap(),
            ITEM_LIMIT - small.len() - 1 - ITEM_OVERHEAD
        );
        // 256 vectors fit beside an article of up to about 200 KB, fewer beside a larger one.
        let room = vector_room("a", &"退".repeat(75_000)).unwrap();
        assert!(room / stored_vectors::BYTES_PER_TEXT < stored_vectors::MAX_STORED_TEXTS);
        let e = vector_room("a", &"退".repeat(140_000)).unwrap_err();
        assert_eq!((e.kind.status(), e.code), (413, "article_too_large"));
    }
}
