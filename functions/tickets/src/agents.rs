//! `/agents`: who takes the work. Supervisors set each agent's skills, languages, capacity
//! and availability; agents set their own availability with `PATCH /me`. When an agent
//! gains room (back from away, a new skill, more capacity), waiting tickets they can take
//! are given to them at once.

use crate::auth::{Agent, Supervisor};
use crate::Deps;
use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use helpdesk_core::assignment;
use helpdesk_core::domain::agent::validate_agent_id;
use helpdesk_core::domain::{AgentProfile, AgentSpec};
use helpdesk_core::http::{ApiJson, ApiPath};
use helpdesk_core::{Error, ErrorKind, Result};
use serde::Serialize;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new()
        .route("/agents", get(list))
        .route("/agents/{id}", put(put_agent).get(show))
}

#[derive(Serialize)]
struct AgentList {
    agents: Vec<Shown>,
}

/// A profile as the reads answer it: with `removed` when no token names its agent any
/// more (or names them the administrator). The desk set such a profile away at start and
/// refuses to change it, so the console shows it as removed, not as editable.
#[derive(Serialize)]
struct Shown {
    #[serde(flatten)]
    profile: AgentProfile,
    removed: bool,
}

fn shown(deps: &Deps, profile: AgentProfile) -> Shown {
    let removed = may_hold_tickets(deps, &profile.id).is_err();
    Shown { profile, removed }
}

async fn list(State(deps): State<Arc<Deps>>, _agent: Agent) -> Result<Json<AgentList>> {
    let agents = deps.store.list_agents().await?;
    Ok(Json(AgentList {
        agents: agents.into_iter().map(|p| shown(&deps, p)).collect(),
    }))
}

async fn show(
    State(deps): State<Arc<Deps>>,
    _agent: Agent,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Shown>> {
    validate_agent_id(&id)?;
    let profile = match deps.store.get_agent(&id).await? {
        Some(profile) => profile,
        None => AgentProfile::default_for(&id),
    };
    Ok(Json(shown(&deps, profile)))
}

async fn put_agent(
    State(deps): State<Arc<Deps>>,
    Supervisor(by): Supervisor,
    ApiPath(id): ApiPath<String>,
    ApiJson(spec): ApiJson<AgentSpec>,
) -> Result<Json<AgentProfile>> {
    validate_agent_id(&id)?;
    let profile = change(&deps, &id, spec).await?;
    tracing::info!(agent = %id, by = %by.name, available = profile.available, capacity = profile.capacity, "agent profile saved");
    Ok(Json(profile))
}

/// Why an administrator gets no profile: a profile is what the assignment gives tickets
/// to, and the admin token has none and takes nothing.
pub(crate) fn no_profile_for_admin(id: &str) -> Error {
    Error::new(
        ErrorKind::Forbidden,
        "admin_has_no_profile",
        format!("{id} is the administrator: it has no agent profile and takes no tickets"),
    )
}

/// Why a profile is refused to an id no token names (locally, where the tokens are the
/// whole list of agents): the desk would give it tickets that no one can see.
fn unknown_agent(id: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "unknown_agent",
        format!("no agent is named {id:?}: add it to HELPDESK_AGENTS (name:role:token) and restart the desk"),
    )
}

/// Whether `id` may hold tickets, the one rule for a profile (`PUT /agents/{id}`,
/// `PATCH /me`) and for a ticket's `assignee`: not an administrator the tokens name (403),
/// and locally not an id no token names (404).
pub(crate) fn may_hold_tickets(deps: &Deps, id: &str) -> Result<()> {
    if deps.agents.is_admin(id) {
        return Err(no_profile_for_admin(id));
    }
    if deps.agents.is_unknown(id) {
        return Err(unknown_agent(id));
    }
    Ok(())
}

/// Saves `spec` over the agent's profile (the default one when they have none), then
/// gives them waiting tickets if they have room. Returns the profile as it now is. Only
/// for an id that [`may_hold_tickets`]: a saved profile makes an assignee.
pub(crate) async fn change(deps: &Deps, id: &str, spec: AgentSpec) -> Result<AgentProfile> {
    may_hold_tickets(deps, id)?;
    let current = deps
        .store
        .get_agent(id)
        .await?
        .unwrap_or_else(|| AgentProfile::default_for(id));
    let profile = current.with_spec(spec)?;
    deps.store.put_agent(&profile).await?;
    if deps.auto_assign && profile.available {
        assignment::fill(deps.store.as_ref(), id, None).await?;
    }
    Ok(deps.store.get_agent(id).await?.unwrap_or(profile))
}
