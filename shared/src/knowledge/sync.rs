//! Keeping a search index in step with where the articles are kept. On AWS with an
//! OpenSearch domain, the articles table stays the source of truth (the agent API reads and
//! writes it), the table's stream carries every change to the indexer function, and the
//! indexer applies them here. A full [`reindex`] copies the table into an index that is new
//! or was switched on for an existing install (a stream only keeps a day of changes).

use super::{Article, Hit};
use crate::ports::KnowledgeIndex;
use crate::Result;
use async_trait::async_trait;
use serde::Serialize;
use std::collections::HashSet;

/// Articles per bulk write: a large knowledge base goes in several requests, each well
/// under the request size an OpenSearch domain accepts.
pub const BULK: usize = 500;

/// One article's change, as the articles table's stream reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum ArticleChange {
    Upsert(Article),
    Delete(String),
}

impl ArticleChange {
    pub fn id(&self) -> &str {
        match self {
            ArticleChange::Upsert(a) => &a.id,
            ArticleChange::Delete(id) => id,
        }
    }
}

/// What a sync did to the search index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Synced {
    /// Articles written (new or replaced).
    pub written: usize,
    /// Articles removed that were there.
    pub deleted: usize,
}

/// Applies a batch of changes in order: the last change of each article wins, so a batch
/// with an edit and then a removal removes it. Every step is idempotent, so a batch the
/// stream delivers again changes nothing more.
pub async fn apply(index: &dyn KnowledgeIndex, changes: Vec<ArticleChange>) -> Result<Synced> {
    // From the last change back, the first seen of each article is its latest.
    let mut seen = HashSet::new();
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    for change in changes.into_iter().rev() {
        if !seen.insert(change.id().to_string()) {
            continue;
        }
        match change {
            ArticleChange::Upsert(a) => upserts.push(a),
            ArticleChange::Delete(id) => deletes.push(id),
        }
    }
    let mut synced = Synced::default();
    for chunk in upserts.chunks(BULK) {
        index.upsert(chunk).await?;
        synced.written += chunk.len();
    }
    for id in deletes {
        if index.delete(&id).await? {
            synced.deleted += 1;
        }
    }
    Ok(synced)
}

/// Makes `index` hold exactly the articles of `source`: writes every one of them and
/// removes what the source no longer has.
pub async fn reindex(source: &dyn KnowledgeIndex, index: &dyn KnowledgeIndex) -> Result<Synced> {
    let articles = source.list().await?;
    let keep: HashSet<&str> = articles.iter().map(|a| a.id.as_str()).collect();
    let mut changes: Vec<ArticleChange> = index
        .list()
        .await?
        .into_iter()
        .filter(|a| !keep.contains(a.id.as_str()))
        .map(|a| ArticleChange::Delete(a.id))
        .collect();
    changes.extend(articles.iter().cloned().map(ArticleChange::Upsert));
    apply(index, changes).await
}

/// A knowledge base whose articles are read and written in one place and searched in
/// another that an indexer keeps in step: a write shows in search once the indexer has
/// applied it (on AWS, a second or so after the table's stream carries it).
pub struct Indexed {
    pub articles: Box<dyn KnowledgeIndex>,
    pub search: Box<dyn KnowledgeIndex>,
}

#[async_trait]
impl KnowledgeIndex for Indexed {
    async fn search(&self, query: &str, limit: usize) -> Result<Vec<Hit>> {
        self.search.search(query, limit).await
    }

    async fn get(&self, id: &str) -> Result<Option<Article>> {
        self.articles.get(id).await
    }

    async fn list(&self) -> Result<Vec<Article>> {
        self.articles.list().await
    }

    async fn upsert(&self, articles: &[Article]) -> Result<usize> {
        self.articles.upsert(articles).await
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        self.articles.delete(id).await
    }
}

#[cfg(all(test, feature = "search"))]
mod tests {
    use super::*;
    use crate::adapters::TantivyIndex;

    fn article(id: &str, question: &str) -> Article {
        Article {
            id: id.into(),
            title: question.into(),
            questions: vec![question.into()],
            answer: format!("answer {id}"),
            locale: None,
            tags: vec![],
            answers: Default::default(),
        }
    }

    fn ids(articles: &[Article]) -> Vec<&str> {
        articles.iter().map(|a| a.id.as_str()).collect()
    }

    #[tokio::test]
    async fn the_last_change_of_an_article_wins_and_a_second_delivery_changes_nothing() {
        let index = TantivyIndex::in_memory().unwrap();
        index.upsert(&[article("gone", "旧的问题")]).await.unwrap();
        let batch = vec![
            ArticleChange::Upsert(article("pw", "忘记密码怎么办")),
            ArticleChange::Upsert(article("hours", "what are your hours")),
            ArticleChange::Delete("hours".into()),
            ArticleChange::Delete("gone".into()),
            ArticleChange::Upsert(article("pw", "如何重置密码")),
        ];
        let synced = apply(&index, batch.clone()).await.unwrap();
        assert_eq!(
            synced,
            Synced {
                written: 1,
                deleted: 1
            }
        );
        let listed = index.list().await.unwrap();
        assert_eq!(ids(&listed), ["pw"]);
        assert_eq!(listed[0].questions, ["如何重置密码"]);

        let again = apply(&index, batch).await.unwrap();
        assert_eq!(again.deleted, 0);
        assert_eq!(index.list().await.unwrap(), listed);
        let hits = index.search("怎么重置密码", 3).await.unwrap();
        assert_eq!(hits[0].article_id, "pw");
    }

    #[tokio::test]
    async fn reindex_copies_the_source_and_drops_what_it_no_longer_has() {
        let source = TantivyIndex::in_memory().unwrap();
        let many: Vec<Article> = (0..BULK + 7)
            .map(|n| article(&format!("a{n:04}"), &format!("问题 {n}")))
            .collect();
        source.upsert(&many).await.unwrap();
        let index = TantivyIndex::in_memory().unwrap();
        index
            .upsert(&[article("stale", "old question"), article("a0001", "old")])
            .await
            .unwrap();
        let synced = reindex(&source, &index).await.unwrap();
        assert_eq!(
            synced,
            Synced {
                written: BULK + 7,
                deleted: 1
            }
        );
        assert_eq!(index.list().await.unwrap(), source.list().await.unwrap());
    }

    #[tokio::test]
    async fn indexed_reads_and_writes_the_articles_and_searches_the_index() {
        let kb = Indexed {
            articles: Box::new(TantivyIndex::in_memory().unwrap()),
            search: Box::new(TantivyIndex::in_memory().unwrap()),
        };
        kb.upsert(&[article("pw", "How do I reset my password?")])
            .await
            .unwrap();
        assert!(kb.get("pw").await.unwrap().is_some());
        assert_eq!(ids(&kb.list().await.unwrap()), ["pw"]);
        // Not searchable until the indexer has applied the change.
        assert!(kb.search("reset password", 3).await.unwrap().is_empty());
        reindex(kb.articles.as_ref(), kb.search.as_ref())
            .await
            .unwrap();
        assert_eq!(
            kb.search("reset password", 3).await.unwrap()[0].article_id,
            "pw"
        );
        assert!(kb.delete("pw").await.unwrap());
        assert!(kb.get("pw").await.unwrap().is_none());
    }
}
