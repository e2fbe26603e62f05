//! `/me`: who the console is signed in as.

use crate::auth::Agent;
use crate::Deps;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new().route("/me", get(me))
}

async fn me(agent: Agent) -> Json<Agent> {
    Json(agent)
}
