//! The knowledge base on AWS without a search cluster: articles live in a DynamoDB table,
//! and each function that searches holds a tantivy index in memory, built from the table at
//! its first search and rebuilt when it is older than [`KNOWLEDGE_REFRESH`]. A knowledge
//! base of a few thousand articles builds in well under a second, and nothing runs while
//! idle.

use super::{sdk_message, KNOWLEDGE_REFRESH};
use crate::adapters::TantivyIndex;
use crate::knowledge::{Article, Hit};
use crate::ports::KnowledgeIndex;
use crate::{Error, Result};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

pub struct DynamoKnowledge {
    client: Client,
    table: String,
    cache: Mutex<Option<(Instant, Arc<TantivyIndex>)>>,
}

impl DynamoKnowledge {
    pub fn new(config: &aws_config::SdkConfig, table: String) -> DynamoKnowledge {
        DynamoKnowledge {
            client: Client::new(config),
            table,
            cache: Mutex::new(None),
        }
    }

    async fn load_all(&self) -> Result<Vec<Article>> {
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
                        Ok(a) => articles.push(a),
                        Err(e) => {
                            tracing::error!(error = %e, "an article that does not decode was skipped")
                        }
                    }
                }
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(articles),
            }
        }
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
        let articles = self.load_all().await?;
        let index = TantivyIndex::in_memory()?;
        index.upsert(&articles).await?;
        tracing::info!(
            articles = articles.len(),
            ms = started.elapsed().as_millis() as u64,
            "knowledge index built"
        );
        let index = Arc::new(index);
        *cache = Some((Instant::now(), index.clone()));
        Ok(index)
    }

    async fn forget(&self) {
        *self.cache.lock().await = None;
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
        let mut all = self.load_all().await?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn upsert(&self, articles: &[Article]) -> Result<usize> {
        let mut created = 0;
        for a in articles {
            a.validate()?;
            let body = serde_json::to_string(a)
                .map_err(|e| Error::internal(format!("encoding an article: {e}")))?;
            let out = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("id", AttributeValue::S(a.id.clone()))
                .item("body", AttributeValue::S(body))
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
