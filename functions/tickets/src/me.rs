//! `/me`: who the console is signed in as, with their profile; agents set their own
//! availability here.

use crate::auth::{Agent, Role};
use crate::Deps;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use helpdesk_core::domain::{AgentProfile, AgentSpec};
use helpdesk_core::http::ApiJson;
use helpdesk_core::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new().route("/me", get(me).patch(patch_me))
}

#[derive(Serialize)]
struct Me {
    #[serde(flatten)]
    agent: Agent,
    /// The profile the assignment uses; none for the admin token.
    profile: Option<AgentProfile>,
}

/// The signed-in agent. An agent's first visit makes their default profile, so that the
/// desk assigns to them from then on (on AWS, agents are known only once they sign in).
async fn me(State(deps): State<Arc<Deps>>, agent: Agent) -> Result<Json<Me>> {
    let profile = profile_of(&deps, &agent).await?;
    Ok(Json(Me { agent, profile }))
}

async fn profile_of(deps: &Deps, agent: &Agent) -> Result<Option<AgentProfile>> {
    if agent.role == Role::Admin {
        return deps.store.get_agent(&agent.name).await;
    }
    if deps.store.ensure_agent(&agent.name).await? {
        tracing::info!(agent = %agent.name, "agent profile made at first sign-in");
    }
    deps.store.get_agent(&agent.name).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MePatch {
    available: bool,
}

/// Sets the agent available or away. Back from away, they take waiting tickets at once.
/// The administrator has no profile (as `GET /me` shows), so nothing to set: 403.
async fn patch_me(
    State(deps): State<Arc<Deps>>,
    agent: Agent,
    ApiJson(body): ApiJson<MePatch>,
) -> Result<Json<Me>> {
    // By role, not only by name: on AWS the tokens do not name the administrators.
    if agent.role == Role::Admin {
        return Err(crate::agents::no_profile_for_admin(&agent.name));
    }
    let spec = AgentSpec {
        name: None,
        skills: None,
        languages: None,
        capacity: None,
        available: Some(body.available),
    };
    let profile = crate::agents::change(&deps, &agent.name, spec).await?;
    tracing::info!(agent = %agent.name, available = body.available, "availability set");
    Ok(Json(Me {
        agent,
        profile: Some(profile),
    }))
}
