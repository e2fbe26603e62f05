//! `/customers`: who a customer is across channels, and merging two records that turn out
//! to be one person (the same customer writing on WhatsApp and on Telegram).

use crate::auth::{Agent, Supervisor};
use crate::Deps;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use helpdesk_core::domain::{Customer, MergePlan};
use helpdesk_core::flow::{self, MergeProgress};
use helpdesk_core::http::{ApiJson, ApiPath};
use helpdesk_core::jobs::{self, InboundJob, MergeJob};
use helpdesk_core::{Error, Result};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new()
        .route("/customers/{id}", get(show))
        .route("/customers/{id}/merge", post(merge))
}

async fn show(
    State(deps): State<Arc<Deps>>,
    _agent: Agent,
    ApiPath(id): ApiPath<String>,
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

/// How many steps of a merge run inside the request: a small merge is finished before the
/// answer; a bigger one goes on as a job (in the inbound queue, in the group of the customer
/// that stays) and is answered 202.
const STEPS_IN_REQUEST: usize = 8;

/// Moves everything of `from` into `id`. Supervisors only: it cannot be undone. The core
/// plans the merge and runs it in bounded steps ([`flow::run_merge`]): 200 with the merged
/// customer when it finished within the request, else 202 with the merge's id while a job
/// finishes it (`GET /customers/{from}` answers 404 once it is done). Asking again is safe:
/// it goes on from where the merge stands.
async fn merge(
    State(deps): State<Arc<Deps>>,
    Supervisor(agent): Supervisor,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<MergeBody>,
) -> Result<Response> {
    let from = body.from.trim();
    if from.is_empty() || from == id {
        return Err(Error::unprocessable(
            "invalid_merge",
            "\"from\" must name another customer",
        ));
    }
    if deps.store.get_customer(from).await?.is_none() {
        return Err(Error::not_found("customer", from));
    }
    let plan = MergePlan::new(&id, from, &agent.name);
    match flow::run_merge(deps.store.as_ref(), &plan, STEPS_IN_REQUEST).await? {
        MergeProgress::Done(merged) => Ok(Json(merged).into_response()),
        MergeProgress::Unfinished => {
            let job = InboundJob::Merge(MergeJob {
                merge: plan.clone(),
                round: 1,
                cause: None,
            });
            jobs::send(deps.queue.as_ref(), &job).await?;
            tracing::info!(merge_id = %plan.id, into = %id, from, by = %agent.name, "merge goes on as a job");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"merge_id": plan.id, "into": id, "from": from, "status": "running"})),
            )
                .into_response())
        }
    }
}
