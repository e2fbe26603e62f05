//! Who gets the work, and the clock on it: the flow steps that give tickets to agents and
//! watch their SLA targets. The rule itself is [`crate::domain::agent::choose`]; the store
//! makes each pick stick with one conditional write, so two tickets racing for an agent's
//! last slot do not both take it.
//!
//! [`on_change`] runs on the ticket change feed (the tickets table's stream on AWS, the
//! change queue locally): a new ticket gets its SLA targets and an agent; a ticket that
//! ends or moves frees its holder, who takes the next waiting ticket they can. [`tick`]
//! runs on a clock (an EventBridge schedule on AWS, a timer locally): it records the targets
//! that passed unmet and retries the tickets still waiting. Every step is safe to repeat.

use crate::domain::agent::choose;
use crate::domain::{
    self, AgentNotice, AgentProfile, AssignmentReason, OutboundMessage, SupervisorNotice, Ticket,
};
use crate::domain::{Message, MessageKind, TicketStatus};
use crate::flow::{derived_id, send_to_customer, update_ticket};
use crate::format;
use crate::jobs::{self, TicketChange};
use crate::ports::{Queue, Store};
use crate::rules::Rules;
use crate::{ErrorKind, Result};
use chrono::{DateTime, Utc};

/// How many times a pick is tried again when the chosen agent filled up or the ticket
/// changed meanwhile.
const ATTEMPTS: usize = 5;
/// How many waiting tickets one pass looks at.
const WAITING_PAGE: usize = 200;

/// What a ticket change asks of the desk besides itself.
pub async fn on_change(
    store: &dyn Store,
    queue: &dyn Queue,
    rules: &Rules,
    change: &TicketChange,
) -> Result<()> {
    let (old, new) = (change.old.as_ref(), &change.new);
    for breach in Ticket::new_breaches(old, new) {
        let notice = SupervisorNotice::sla_breach(new, breach);
        jobs::send(queue, &OutboundMessage::Supervisor(notice)).await?;
        tracing::info!(ticket_id = %new.id, target = breach.target.as_str(), "SLA breach: supervisor notice queued");
    }
    if new.assignee.is_some() && old.is_none_or(|o| o.assigned_at != new.assigned_at) {
        if let Some(notice) = AgentNotice::assignment(new) {
            jobs::send(queue, &OutboundMessage::Agent(notice)).await?;
        }
    }
    if old.is_none() && new.opened_by.is_some() {
        let id = derived_id(&new.id, "after_hours");
        after_hours(store, queue, rules, new, new.created_at, id).await?;
    }
    if let Some(message_id) = Ticket::reopened_now(old, new) {
        // A customer's follow-up reopened it: they get no hand-off, so out of hours they are
        // told when the team is back, once per reopening message; and its agent, if it went
        // back to them, is told it is back.
        let id = derived_id(message_id, "after_hours");
        after_hours(store, queue, rules, new, new.updated_at, id).await?;
        if let Some(notice) = AgentNotice::reopened(new, message_id) {
            jobs::send(queue, &OutboundMessage::Agent(notice)).await?;
        }
    }
    // Due times follow the priority; the next reply's, the customer's wait (which began,
    // or ended with a reply, pending, a resolve or a close), on an ended ticket too.
    if new.status.is_active() && old.is_none_or(|o| o.priority != new.priority) {
        update_ticket(store, &new.id, |t| Ok(t.stamp_sla(rules.sla()))).await?;
    } else if old.is_some_and(|o| o.awaiting_reply_since != new.awaiting_reply_since) {
        update_ticket(store, &new.id, |t| Ok(t.stamp_next_reply(rules.sla()))).await?;
    }
    if !rules.auto_assign() {
        return Ok(());
    }
    let freed = Ticket::freed(old, new);
    if new.status.is_active() && new.assignee.is_none() {
        // A new ticket, one its holder let go, or one that became active again with nobody
        // holding it (a customer's reopen, a merge's move): to someone who can take it.
        let reason = match old {
            None => AssignmentReason::Rule,
            Some(_) => AssignmentReason::Rebalance,
        };
        let again = old.is_some_and(|o| Ticket::became_active(o, new));
        if old.is_none() || freed.is_some() || again {
            assign(store, &new.id, reason, freed).await?;
        }
    }
    if let Some(agent) = freed {
        fill(store, agent, Some(&new.id)).await?;
    }
    Ok(())
}

/// A customer's message that opened (or reopened) a ticket `at` a time out of hours: they
/// are told when the team is back, in their language, right after the hand-off. Once for
/// each `id` (derived from the ticket's, or the reopening message's), as dispatch sends a
/// message once.
async fn after_hours(
    store: &dyn Store,
    queue: &dyn Queue,
    rules: &Rules,
    ticket: &Ticket,
    at: DateTime<Utc>,
    id: String,
) -> Result<()> {
    let hours = rules.hours();
    if hours.is_open(at) {
        return Ok(());
    }
    let Some((day, time)) = hours.local_open(at) else {
        return Ok(());
    };
    let mut message = Message::outbound(
        &ticket.customer_id,
        ticket.channel,
        MessageKind::Handoff,
        format::after_hours(ticket.language.as_str(), day, time),
        Some(ticket.id.clone()),
    );
    message.id = id;
    send_to_customer(store, queue, &message).await?;
    tracing::info!(ticket_id = %ticket.id, "out of hours: the customer is told when the team is back");
    Ok(())
}

/// Gives the ticket to the agent the rule picks (never to `except`), if one can take it;
/// else it waits. Returns who got it.
pub async fn assign(
    store: &dyn Store,
    ticket_id: &str,
    reason: AssignmentReason,
    except: Option<&str>,
) -> Result<Option<String>> {
    for _ in 0..ATTEMPTS {
        let Some(ticket) = store.get_ticket(ticket_id).await? else {
            return Ok(None);
        };
        if ticket.assignee.is_some() || !ticket.status.is_active() {
            return Ok(None);
        }
        let agents: Vec<AgentProfile> = store
            .list_agents()
            .await?
            .into_iter()
            .filter(|a| Some(a.id.as_str()) != except)
            .collect();
        let Some(agent) = choose(&ticket, &agents) else {
            tracing::info!(
                ticket_id,
                skill = ticket.skill.as_str(),
                language = ticket.language.as_str(),
                "no agent can take the ticket now; it waits"
            );
            return Ok(None);
        };
        if take(store, &ticket, agent, reason).await? {
            return Ok(Some(agent.id.clone()));
        }
    }
    Ok(None)
}

/// One conditional write of `ticket` to `agent`: false when the agent filled up or the
/// ticket changed meanwhile (the caller looks again).
async fn take(
    store: &dyn Store,
    ticket: &Ticket,
    agent: &AgentProfile,
    reason: AssignmentReason,
) -> Result<bool> {
    let mut assigned = ticket.clone();
    if !assigned.assign(&agent.id, reason, domain::now()) {
        return Ok(false);
    }
    match store
        .assign_ticket(&assigned, ticket.version, agent.capacity)
        .await
    {
        Ok(true) => {
            tracing::info!(ticket_id = %ticket.id, agent = %agent.id, reason = ?reason, "ticket assigned");
            Ok(true)
        }
        Ok(false) => Ok(false),
        Err(e) if e.kind == ErrorKind::Conflict => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives `agent` waiting tickets they can take, urgent first, then oldest, until they are
/// full or none is left (never `except`, a ticket they just let go). Returns how many.
pub async fn fill(store: &dyn Store, agent: &str, except: Option<&str>) -> Result<usize> {
    let mut given = 0;
    let mut tries = 0;
    while tries < ATTEMPTS * 4 {
        tries += 1;
        let Some(profile) = store.get_agent(agent).await? else {
            return Ok(given);
        };
        if !profile.available || profile.open_tickets >= profile.capacity {
            return Ok(given);
        }
        let waiting = store.waiting_tickets(WAITING_PAGE).await?;
        let Some(ticket) = waiting
            .iter()
            .find(|t| Some(t.id.as_str()) != except && t.assignee.is_none() && profile.can_take(t))
        else {
            return Ok(given);
        };
        if take(store, ticket, &profile, AssignmentReason::Rebalance).await? {
            given += 1;
        }
    }
    Ok(given)
}

/// What one turn of the clock did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    pub breached: usize,
    pub assigned: usize,
    /// Resolved tickets closed by themselves, their time come.
    pub closed: usize,
}

/// One turn of the clock at `now`: records each SLA target that passed unmet (the change
/// feed then notifies the supervisor, and the policy may escalate), closes the resolved
/// tickets whose time to close by themselves came (the change feed then sends their
/// surveys), and gives waiting tickets to agents who have room, in case a change was missed.
pub async fn tick(store: &dyn Store, rules: &Rules, now: DateTime<Utc>) -> Result<Tick> {
    let mut done = Tick::default();
    for due in store.sla_due_tickets(now, WAITING_PAGE).await? {
        if due.status == TicketStatus::Resolved {
            let (_, closed) = update_ticket(store, &due.id, |t| t.close_if_due(now)).await?;
            if closed {
                done.closed += 1;
                tracing::info!(ticket_id = %due.id, "a resolved ticket closed by itself");
            }
            continue;
        }
        let (_, changed) = update_ticket(store, &due.id, |t| {
            Ok(!t.check_sla(rules.sla(), now).is_empty())
        })
        .await?;
        if changed {
            done.breached += 1;
            tracing::warn!(ticket_id = %due.id, "SLA target missed");
        }
    }
    if rules.auto_assign() {
        let mut agents = store.list_agents().await?;
        let waiting = store.waiting_tickets(WAITING_PAGE).await?;
        // A ticket about to wait for want of room: the full agents who could otherwise take
        // it are counted again, so that a count still holding tickets its agent left (a
        // write cut short) does not keep them from new work for good.
        if waiting
            .iter()
            .any(|t| !agents.iter().any(|a| a.can_take(t)))
        {
            for agent in agents.iter_mut() {
                if agent.open_tickets >= agent.capacity
                    && waiting.iter().any(|t| agent.would_take(t))
                {
                    agent.open_tickets = store.recount_agent(&agent.id).await?;
                }
            }
        }
        let has_room = |t: &Ticket| agents.iter().any(|a| a.can_take(t));
        for waiting in waiting {
            if has_room(&waiting)
                && assign(store, &waiting.id, AssignmentReason::Rebalance, None)
                    .await?
                    .is_some()
            {
                done.assigned += 1;
            }
        }
    }
    Ok(done)
}
