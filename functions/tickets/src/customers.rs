//! `/customers`: who a customer is across channels, and merging two records that turn out
//! to be one person (the same customer writing on WhatsApp and on Telegram).

use crate::auth::{Agent, Supervisor};
use crate::Deps;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use helpdesk_core::domain::Customer;
use helpdesk_core::http::ApiJson;
use helpdesk_core::{Error, Result};
use serde::Deserialize;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new()
        .route("/customers/{id}", get(show))
        .route("/customers/{id}/merge", post(merge))
}

async fn show(
    State(deps): State<Arc<Deps>>,
    _agent: Agent,
    Path(id): Path<String>,
) -> Result<Json<Customer>> {
    deps.store
        .get_customer(&id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::not_found("customer", &id))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    from: String,
}

/// Moves everything of `from` into `id`. Supervisors only: it cannot be undone.
async fn merge(
    State(deps): State<Arc<Deps>>,
    Supervisor(agent): Supervisor,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MergeBody>,
) -> Result<Json<Customer>> {
    let from = body.from.trim();
    if from.is_empty() || from == id {
        return Err(Error::unprocessable(
            "invalid_merge",
            "\"from\" must name another customer",
        ));
    }
    let merged = deps.store.merge_customers(&id, from).await?;
    tracing::info!(into = %id, from, by = %agent.name, "customers merged");
    Ok(Json(merged))
}
