//! The knowledge indexer Lambda, deployed when the OpenSearch domain is on. The articles
//! table stays the source of truth; its stream carries each write and removal here, and the
//! indexer applies them to the search index. Invoked with `{"reindex": true}`, it copies the
//! whole table instead: for a domain switched on under an existing knowledge base, or to
//! mend an index after the stream's day of history has passed.

use helpdesk_core::aws;
use helpdesk_core::aws::{article_change, article_vectors};
use helpdesk_core::knowledge::stored_vectors;
use helpdesk_core::knowledge::sync::{apply, reindex, ArticleChange};
use helpdesk_core::ports::KnowledgeIndex;
use helpdesk_core::{Error, Result};
use serde_json::{json, Value};

pub struct Deps {
    /// Where the articles are kept: the articles table.
    pub articles: Box<dyn KnowledgeIndex>,
    /// What is kept in step: the OpenSearch index.
    pub search: Box<dyn KnowledgeIndex>,
}

/// Handles one invocation: a batch of the articles table's stream, or a reindex request.
pub async fn handle(deps: &Deps, event: &Value) -> Result<Value> {
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        return Ok(stream_batch(deps, records).await);
    }
    if event.get("reindex").and_then(Value::as_bool) == Some(true) {
        let synced = reindex(deps.articles.as_ref(), deps.search.as_ref()).await?;
        tracing::info!(
            written = synced.written,
            deleted = synced.deleted,
            "knowledge index rebuilt from the articles table"
        );
        return Ok(json!({ "reindexed": synced }));
    }
    Err(Error::unprocessable(
        "unknown_event",
        "expected a DynamoDB stream batch (\"Records\") or {\"reindex\": true}",
    ))
}

/// Applies a stream batch as one sync. Any failure reports the batch's first record, so the
/// stream delivers the whole batch again: every step is idempotent, and an article's later
/// change is never applied before an earlier one. A record that does not decode is logged
/// and passed over; delivering it again could not mend it.
async fn stream_batch(deps: &Deps, records: &[Value]) -> Value {
    let mut changes = Vec::with_capacity(records.len());
    for record in records {
        let change = &record["dynamodb"];
        match article_change(&change["NewImage"], &change["OldImage"]) {
            Ok(Some(c)) => {
                // The vectors made where the article was written come with it: the index
                // gets them without embedding anything again.
                if let (ArticleChange::Upsert(a), Some(vectors)) = (&c, aws::vectors()) {
                    let stored = article_vectors(&change["NewImage"]);
                    stored_vectors::preload(a, stored.as_ref(), &vectors);
                }
                changes.push(c)
            }
            Ok(None) => {}
            Err(e) => tracing::error!(
                sequence = change["SequenceNumber"].as_str().unwrap_or_default(),
                error = %e,
                "skipped a stream record"
            ),
        }
    }
    match apply(deps.search.as_ref(), changes).await {
        Ok(synced) => {
            tracing::info!(
                records = records.len(),
                written = synced.written,
                deleted = synced.deleted,
                "knowledge index updated"
            );
            json!({ "batchItemFailures": [] })
        }
        Err(e) => {
            tracing::error!(error = %e, "knowledge index update failed; the batch will be retried");
            let first = records
                .first()
                .and_then(|r| r["dynamodb"]["SequenceNumber"].as_str())
                .unwrap_or_default();
            json!({ "batchItemFailures": [{ "itemIdentifier": first }] })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helpdesk_core::adapters::TantivyIndex;
    use helpdesk_core::knowledge::Article;

    fn article(id: &str, question: &str) -> Article {
        Article {
            id: id.into(),
            title: question.into(),
            questions: vec![question.into()],
            answer: format!("answer {id}"),
            locale: Some("zh".into()),
            tags: vec![],
            answers: Default::default(),
        }
    }

    fn record(seq: &str, new: Option<&Article>, old_id: Option<&str>) -> Value {
        let image = |a: &Article| json!({"id": {"S": a.id}, "body": {"S": serde_json::to_string(a).unwrap()}});
        json!({"dynamodb": {
            "SequenceNumber": seq,
            "NewImage": new.map(image).unwrap_or(json!({})),
            "OldImage": old_id.map(|id| json!({"id": {"S": id}})).unwrap_or(json!({})),
        }})
    }

    fn deps() -> Deps {
        Deps {
            articles: Box::new(TantivyIndex::in_memory().unwrap()),
            search: Box::new(TantivyIndex::in_memory().unwrap()),
        }
    }

    #[tokio::test]
    async fn a_stream_batch_reaches_the_index_and_a_bad_record_does_not_hold_it() {
        let deps = deps();
        let pw = article("pw", "忘记密码怎么办");
        let refund = article("refund", "怎么申请退款");
        let event = json!({"Records": [
            record("1", Some(&pw), None),
            record("2", Some(&refund), None),
            json!({"dynamodb": {"SequenceNumber": "3", "NewImage": {"body": {"S": "{"}}}}),
            record("4", None, Some("refund")),
        ]});
        let out = handle(&deps, &event).await.unwrap();
        assert_eq!(out, json!({"batchItemFailures": []}));
        let listed = deps.search.list().await.unwrap();
        assert_eq!(listed, vec![pw.clone()]);
        // Delivered again: nothing changes.
        handle(&deps, &event).await.unwrap();
        assert_eq!(deps.search.list().await.unwrap(), listed);
        let hits = deps.search.search("我忘记密码了", 3).await.unwrap();
        assert_eq!(hits[0].article_id, "pw");
    }

    #[tokio::test]
    async fn reindex_copies_the_articles_and_other_events_are_refused() {
        let deps = deps();
        deps.articles
            .upsert(&[article("pw", "忘记密码怎么办")])
            .await
            .unwrap();
        deps.search
            .upsert(&[article("stale", "旧问题")])
            .await
            .unwrap();
        let out = handle(&deps, &json!({"reindex": true})).await.unwrap();
        assert_eq!(out, json!({"reindexed": {"written": 1, "deleted": 1}}));
        assert_eq!(
            deps.search.list().await.unwrap(),
            deps.articles.list().await.unwrap()
        );
        let err = handle(&deps, &json!({"hello": 1})).await.unwrap_err();
        assert_eq!(err.kind.status(), 422);
    }
}
