//! What the knowledge index on AWS says to OpenSearch and how its answers are read, as
//! plain data: the adapter that sends these bodies (SigV4, retries) stays thin, and the
//! bodies are tested here byte for byte. The index's mapping is
//! `infra/opensearch/knowledge-index.json`; OpenSearch only retrieves candidates, and the
//! shared [`Ranker`](super::Ranker) orders them exactly as it does tantivy's.

use super::{Article, ANSWER_BOOST, CANDIDATES, QUESTIONS_BOOST, TITLE_BOOST};
use crate::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Value};

/// The `_search` body that retrieves candidates for one customer message: the same fields
/// and weights as the tantivy index, on both the English and the Chinese analysis of each.
pub fn search_body(query: &str) -> Value {
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
        "_source": ["id", "title", "questions", "answer", "locale", "tags"],
        "query": {
            "multi_match": {
                "query": query,
                "type": "most_fields",
                "fields": fields,
            }
        }
    })
}

/// The `_bulk` body (NDJSON) that writes `articles`, each under its own id, so that a
/// second write of the same article replaces it.
pub fn bulk_upsert_body(index: &str, articles: &[Article]) -> Result<String> {
    let mut body = String::new();
    for a in articles {
        let action = json!({ "index": { "_index": index, "_id": a.id } });
        body.push_str(&action.to_string());
        body.push('\n');
        let doc = serde_json::to_string(a)
            .map_err(|e| Error::internal(format!("article {:?}: {e}", a.id)))?;
        body.push_str(&doc);
        body.push('\n');
    }
    Ok(body)
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

/// Reads a `_search` response into candidates for the ranker: each article with
/// OpenSearch's score. An error response (`{"error": ...}`) or a malformed one is an error
/// that says what came back.
pub fn parse_search_response(body: &str) -> Result<Vec<(Article, f32)>> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| Error::internal(format!("OpenSearch answered with no JSON: {e}")))?;
    if let Some(error) = value.get("error") {
        let reason = error
            .get("reason")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_string);
        return Err(Error::internal(format!("OpenSearch: {reason}")));
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
    fn the_search_body_is_the_documented_one() {
        let documented: Value = serde_json::from_str(include_str!(
            "../../../infra/opensearch/search-request.json"
        ))
        .unwrap();
        assert_eq!(search_body("我忘记密码了，怎么重置？"), documented);
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
        };
        assert_eq!(
            bulk_upsert_body("helpdesk-knowledge", &[a]).unwrap(),
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
