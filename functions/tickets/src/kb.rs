//! `/kb`: the knowledge-base articles and the search used for tuning.

use crate::auth::{Agent, Supervisor};
use crate::Deps;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use helpdesk_core::http::{ApiJson, ApiPath, ApiQuery};
use helpdesk_core::knowledge::{Article, Decision, Hit};
use helpdesk_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new()
        .route("/kb/articles", get(list))
        .route("/kb/articles/{id}", get(show).put(put).delete(delete))
        .route("/kb/search", get(search))
}

#[derive(Serialize)]
struct ArticleList {
    articles: Vec<Article>,
}

async fn list(State(deps): State<Arc<Deps>>, _agent: Agent) -> Result<Json<ArticleList>> {
    Ok(Json(ArticleList {
        articles: deps.knowledge.list().await?,
    }))
}

async fn show(
    State(deps): State<Arc<Deps>>,
    _agent: Agent,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Article>> {
    deps.knowledge
        .get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::not_found("article", &id))
}

/// An article as PUT sends it: the id comes from the path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArticleBody {
    id: Option<String>,
    title: String,
    questions: Vec<String>,
    answer: String,
    locale: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    answers: BTreeMap<String, String>,
}

async fn put(
    State(deps): State<Arc<Deps>>,
    _supervisor: Supervisor,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ArticleBody>,
) -> Result<(StatusCode, Json<Article>)> {
    if body.id.as_deref().is_some_and(|b| b != id) {
        return Err(Error::unprocessable(
            "id_mismatch",
            "the body's id differs from the path's",
        ));
    }
    let article = Article {
        id,
        title: body.title,
        questions: body.questions,
        answer: body.answer,
        locale: body.locale,
        tags: body.tags,
        answers: body.answers,
    };
    let created = deps
        .knowledge
        .upsert(std::slice::from_ref(&article))
        .await?;
    let status = if created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(article)))
}

async fn delete(
    State(deps): State<Arc<Deps>>,
    _supervisor: Supervisor,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    if deps.knowledge.delete(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found("article", &id))
    }
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct SearchResult {
    query: String,
    threshold: f64,
    hits: Vec<Hit>,
    auto_reply: bool,
}

async fn search(
    State(deps): State<Arc<Deps>>,
    _agent: Agent,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResult>> {
    let query = q.q.unwrap_or_default();
    if query.trim().is_empty() {
        return Err(Error::bad_request("bad_request", "give the query as q"));
    }
    let limit = match q.limit.as_deref() {
        None | Some("") => 3,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=20).contains(&n) => n,
            _ => {
                return Err(Error::bad_request(
                    "bad_request",
                    "limit is a whole number from 1 to 20",
                ))
            }
        },
    };
    let hits = deps.knowledge.search(&query, limit).await?;
    let auto_reply = matches!(
        Decision::decide(&hits, deps.threshold),
        Decision::Reply { .. }
    );
    Ok(Json(SearchResult {
        query,
        threshold: deps.threshold,
        hits,
        auto_reply,
    }))
}
