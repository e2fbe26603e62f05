//! `/canned-responses`: saved replies agents put in a reply by typing `/` and a short code.
//! Every signed-in agent reads them; supervisors (and the administrator) keep them. The
//! rules on a code and its content are the core's ([`helpdesk_core::domain::canned`]).

use crate::auth::{Agent, Supervisor};
use crate::Deps;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router};
use helpdesk_core::domain::canned::{self, CannedResponse};
use helpdesk_core::http::{ApiJson, ApiPath};
use helpdesk_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new()
        .route("/canned-responses", get(list))
        .route("/canned-responses/{short_code}", put(save).delete(remove))
}

#[derive(Serialize)]
struct CannedList {
    items: Vec<CannedResponse>,
}

async fn list(State(deps): State<Arc<Deps>>, _agent: Agent) -> Result<Json<CannedList>> {
    Ok(Json(CannedList {
        items: deps.store.list_canned().await?,
    }))
}

/// A canned response as PUT sends it: the code comes from the path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CannedBody {
    content: String,
}

/// Creates (201) or replaces (200) the response; each PUT saves, so a repeated one moves
/// `updated_at` and `updated_by` to it. With `If-None-Match: *` it only creates: a code
/// kept already is a 409 `canned_response_exists` (the console's New form sends it, so two
/// supervisors creating one code at once do not replace each other's).
async fn save(
    State(deps): State<Arc<Deps>>,
    Supervisor(by): Supervisor,
    ApiPath(code): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CannedBody>,
) -> Result<(StatusCode, Json<CannedResponse>)> {
    let create_only = create_only(&headers)?;
    let canned = CannedResponse::new(&code, &body.content, &by.name, helpdesk_core::domain::now())?;
    let created = deps.store.save_canned(&canned, create_only).await?;
    tracing::info!(short_code = %canned.short_code, by = %by.name, created, "canned response saved");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(canned)))
}

/// Whether the PUT may only create: `If-None-Match: *`, the one value it takes.
fn create_only(headers: &HeaderMap) -> Result<bool> {
    match headers.get(header::IF_NONE_MATCH) {
        None => Ok(false),
        Some(v) if v.to_str().is_ok_and(|v| v.trim() == "*") => Ok(true),
        Some(_) => Err(Error::bad_request(
            "bad_request",
            "If-None-Match on a canned response takes only * (create it only if its short \
             code is free)",
        )),
    }
}

async fn remove(
    State(deps): State<Arc<Deps>>,
    Supervisor(by): Supervisor,
    ApiPath(code): ApiPath<String>,
) -> Result<StatusCode> {
    let code = canned::short_code(&code)?;
    if deps.store.delete_canned(&code).await? {
        tracing::info!(short_code = %code, by = %by.name, "canned response deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found("canned response", &code))
    }
}
