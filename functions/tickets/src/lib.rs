//! Tickets: the agent API. Agents list and read tickets with their conversations, change
//! status, priority, skill and assignee under optimistic concurrency, reply, write internal
//! notes and escalate; supervisors read the satisfaction report and keep the knowledge base
//! and the canned responses.

mod agents;
pub mod auth;
mod canned;
mod conversation;
mod customers;
mod kb;
mod me;
mod reports;
mod tickets;

pub use auth::{Agent, Agents, Role};

use helpdesk_core::ports::{KnowledgeIndex, Queue, Store};
use std::sync::Arc;

pub struct Deps {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub knowledge: Arc<dyn KnowledgeIndex>,
    pub agents: Agents,
    /// The auto-reply threshold, shown by `/kb/search` for tuning.
    pub threshold: f64,
    /// Whether the desk gives tickets to agents itself (`[assignment] auto` of the rules):
    /// an agent who comes back or gains a skill then takes waiting tickets at once.
    pub auto_assign: bool,
    /// How long a ticket an agent resolves waits before it closes by itself
    /// (`[tickets] close_resolved_after`); `None`: until an agent closes it.
    pub close_resolved_after: Option<chrono::Duration>,
    /// The team's time zone (`[business_hours] timezone`, else UTC): a report's days, and
    /// the dates of its period, are the team's.
    pub zone: helpdesk_core::domain::hours::Tz,
}

/// The agent API's routes. Their answers hold customers' words and people's details, so
/// none is kept by a cache (`no-store`), except where a route chose otherwise: the lists
/// and counts revalidate with their ETags (`no-cache`).
pub fn router(deps: Arc<Deps>) -> axum::Router {
    tickets::routes()
        .merge(conversation::routes())
        .merge(reports::routes())
        .merge(me::routes())
        .merge(agents::routes())
        .merge(canned::routes())
        .merge(kb::routes())
        .merge(customers::routes())
        .layer(axum::middleware::map_response(
            helpdesk_core::http::no_store_by_default,
        ))
        .with_state(deps)
}

/// The console's settings, for both wirings (`helpdesk serve` and this function): its
/// sign-in, read through `var` ([`helpdesk_web::ConsoleConfig::from_vars`]), and the core's
/// limits on an article, which its editor shows before it sends one.
pub fn console_config(
    var: impl Fn(&str) -> Option<String>,
) -> Result<helpdesk_web::ConsoleConfig, String> {
    use helpdesk_core::knowledge::{ANSWER_MAX_CHARS, MAX_QUESTIONS, TEXT_MAX_CHARS};
    let limits = helpdesk_web::ArticleLimits {
        questions: MAX_QUESTIONS,
        text_chars: TEXT_MAX_CHARS,
        answer_chars: ANSWER_MAX_CHARS,
    };
    helpdesk_web::ConsoleConfig::from_vars(limits, var)
}
