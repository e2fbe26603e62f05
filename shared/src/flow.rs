//! Steps of the flow that more than one function takes: opening a ticket for a customer's
//! message, queueing a message to a customer, and changing a ticket safely while others may
//! change it too. They speak only to ports; each is safe to repeat, because queues
//! redeliver.

use crate::domain::{
    self, Customer, Direction, MergeKind, MergePlan, Message, MessageKind, NewTicket,
    OutboundMessage, Priority, Skill, Suggestion, SupervisorNotice, Ticket, TicketFilter,
    TicketStatus,
};
use crate::jobs::{self, TicketChange};
use crate::ports::{Queue, Store};
use crate::{format, Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

pub use crate::domain::derived_id;

/// How long an agent's `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;

/// Records `message` in the conversation and asks dispatch to deliver it. Repeating it is
/// harmless: dispatch delivers a message only while it is still queued.
pub async fn send_to_customer(
    store: &dyn Store,
    queue: &dyn Queue,
    message: &Message,
) -> Result<()> {
    store.append_message(message).await?;
    jobs::send(
        queue,
        &OutboundMessage::Customer {
            message_id: message.id.clone(),
        },
    )
    .await
}

/// The id of what an agent's request makes, taken once per `Idempotency-Key` (scoped by
/// `scope`, e.g. the agent and the route): the first request under the key records
/// `fresh`, a retry or a concurrent twin gets the first one's id. The caller then runs the
/// same steps again with that id, each a no-op once done, so a request cut short is
/// finished and a finished one changes nothing. Without a key, `fresh`.
pub async fn idempotent_id(
    store: &dyn Store,
    scope: &str,
    key: Option<&str>,
    fresh: String,
) -> Result<String> {
    let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) else {
        return Ok(fresh);
    };
    if key.chars().count() > 200 {
        return Err(Error::bad_request(
            "invalid_idempotency_key",
            "an Idempotency-Key is at most 200 characters",
        ));
    }
    let claim = format!("idem:{scope}:{key}");
    Ok(store
        .claim(&claim, &fresh, IDEMPOTENCY_TTL_SECS)
        .await?
        .unwrap_or(fresh))
}

/// An agent's reply on a ticket, under the message id `message_id` (from
/// [`idempotent_id`]): the message is stored, the ticket records the reply, and the message
/// is queued; an unassigned ticket becomes `agent`'s when they `takes` tickets. Run again
/// with the same id, it stores and sends nothing twice, and finishes
/// what a first run cut short. Returns the message as stored (the first request's, for a
/// retry).
pub async fn agent_reply(
    store: &dyn Store,
    queue: &dyn Queue,
    ticket: &Ticket,
    agent: &str,
    takes: bool,
    text: String,
    message_id: String,
) -> Result<Message> {
    let mut message = Message::outbound(
        &ticket.customer_id,
        ticket.channel,
        MessageKind::AgentReply,
        text,
        Some(ticket.id.clone()),
    );
    message.id = message_id;
    message.author = Some(agent.to_string());
    let first = store.append_message(&message).await?;
    let stored = match first {
        true => message,
        false => store.get_message(&message.id).await?.unwrap_or(message),
    };
    // The request that stored the message records the reply on the ticket; a retry does
    // only what is still missing (a first response, the end of a wait that began before
    // the reply was written, a taker), so twenty at once do not fight over the ticket.
    let written_at = stored.created_at;
    update_ticket(store, &ticket.id, |t| {
        let recorded = t.first_response_at.is_some() && !t.answers_wait(written_at);
        if !first && recorded && (t.assignee.is_some() || !takes) {
            return Ok(false);
        }
        t.agent_replied_at(takes.then_some(agent), written_at, domain::now());
        Ok(true)
    })
    .await?;
    send_to_customer(store, queue, &stored).await?;
    Ok(stored)
}

/// Keeps a ticket change in the ticket's history ([`domain::activity`]): an internal entry
/// of its conversation for its opening and each version that changed what the history tells, under an id
/// derived from the ticket's and the version, so a change delivered twice writes it once.
/// Written by the change feed, with the change (locally) or from the table's stream (on
/// AWS), so no path that changes a ticket can leave it out.
pub async fn record_activity(store: &dyn Store, change: &TicketChange) -> Result<()> {
    if let Some(entry) = domain::activity::entry(change.old.as_ref(), &change.new) {
        if store.append_message(&entry).await? {
            tracing::info!(ticket_id = %change.new.id, version = change.new.version, "ticket history: {}", entry.text);
        }
    }
    Ok(())
}

/// What a ticket change causes besides itself: the supervisor's notice when it became
/// escalated. The change feed is written with the change (in its transaction locally, by
/// the table's stream on AWS), so the notice cannot be lost between the two; it is queued
/// under one id per escalation, and dispatch posts it once.
pub async fn escalation_notice(queue: &dyn Queue, change: &TicketChange) -> Result<()> {
    if !Ticket::became_escalated(change.old.as_ref(), &change.new) {
        return Ok(());
    }
    // An escalation saved without its agent ([`Ticket::escalate`] rather than
    // [`Ticket::escalate_by`]) comes from a caller that queues its own notice.
    if change.new.escalated_by.is_none() {
        return Ok(());
    }
    let notice = SupervisorNotice::escalation(&change.new);
    jobs::send(queue, &OutboundMessage::Supervisor(notice)).await?;
    tracing::info!(ticket_id = %change.new.id, "supervisor notice queued");
    Ok(())
}

/// Loads a ticket, lets `change` modify it, and saves it if `change` says it changed,
/// trying again from a fresh copy when someone else saved in between.
pub async fn update_ticket<F>(store: &dyn Store, id: &str, mut change: F) -> Result<(Ticket, bool)>
where
    F: FnMut(&mut Ticket) -> Result<bool> + Send,
{
    for _ in 0..5 {
        let mut ticket = store
            .get_ticket(id)
            .await?
            .ok_or_else(|| Error::not_found("ticket", id))?;
        let expected = ticket.version;
        if !change(&mut ticket)? {
            return Ok((ticket, false));
        }
        match store.update_ticket(&ticket, expected).await {
            Ok(()) => return Ok((ticket, true)),
            Err(e) if e.kind == ErrorKind::Conflict && e.code == "version_conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::conflict(
        "version_conflict",
        "the ticket kept changing; please try again",
    ))
}

/// What a ticket a message opens starts with: the rules' skill, priority and tags, and the
/// articles suggested to its agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Opening {
    pub skill: Skill,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub suggestions: Vec<Suggestion>,
}

/// Puts a customer's message on a ticket: the customer's active ticket if there is one,
/// else their resolved ticket, reopened ([`reopen_resolved`]), else a new ticket as
/// `opening` says, announced to the customer with a hand-off message. `active` is
/// the customer's active ticket as the caller found it.
///
/// Safe to run again for the same message, at any point it was cut short: a ticket this
/// message opened is finished (its hand-off sent) rather than joined, a ticket it reopened
/// is active and is joined, and two hand-offs of one customer at once make one ticket (the
/// store refuses a second active one, new or reopened, and the loser joins the winner's).
/// An active ticket that ends before the message joins it is not joined: resolved meanwhile,
/// the message reopens it; closed, the message opens a new one.
pub async fn open_ticket(
    store: &dyn Store,
    queue: &dyn Queue,
    customer: &Customer,
    message: &Message,
    mut active: Option<Ticket>,
    opening: Opening,
) -> Result<Ticket> {
    let Opening {
        skill,
        priority,
        tags,
        suggestions,
    } = opening;
    for _ in 0..3 {
        if let Some(found) = active.take() {
            match settle(store, queue, customer, &found, message).await? {
                Some(ticket) => return Ok(ticket),
                None => continue,
            }
        }
        match reopen_resolved(store, queue, customer, message).await {
            Ok(Some(ticket)) => return Ok(ticket),
            Ok(None) => {}
            // Another message of this customer made a ticket active first: join it.
            Err(e) if e.code == "active_ticket_exists" => {
                active = store.active_ticket_for(&customer.id).await?;
                continue;
            }
            Err(e) => return Err(e),
        }
        let mut ticket = Ticket::open(
            NewTicket {
                customer_id: customer.id.clone(),
                channel: message.channel,
                subject: None,
                description: message.text.clone(),
                priority,
                skill,
            },
            domain::now(),
        );
        ticket.suggestions = suggestions.clone();
        ticket.tags = tags.clone();
        ticket.opened_by = Some(message.id.clone());
        match store.create_ticket(&ticket).await {
            Ok(()) => {
                tracing::info!(ticket_id = %ticket.id, skill = skill.as_str(), priority = priority.as_str(), "ticket opened");
                finish_opening(store, queue, customer, &ticket, message).await?;
                return Ok(ticket);
            }
            // Another hand-off of this customer won: join theirs.
            Err(e) if e.code == "active_ticket_exists" => {
                active = store.active_ticket_for(&customer.id).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::internal(
        "the customer's active ticket kept changing; trying again",
    ))
}

/// How many of the customer's newest tickets [`reopen_resolved`] looks through for the one
/// their conversation is on (past those a merge folded into another).
const NEWEST_TICKETS: usize = 5;

/// The customer's ticket resolved last (of their newest, [`last_worked`]), when it is still
/// waiting to close, reopened by `message` and with the message on it
/// ([`Ticket::reopen_for_customer`]): a follow-up to a solved problem goes back to the
/// agent who solved it, if they are available, with the conversation so far, instead of
/// starting a ticket of its own. No hand-off is sent: the customer is in a conversation
/// they know (out of hours, the assignment tells them when the team is back). Tickets a
/// merge folded into another are passed over: the conversation went on on the other.
///
/// `None` when that ticket is not resolved as the ticket itself reads (closed, or reopened
/// by another message of the customer, which the caller then finds active), or has no time
/// to close, or that time has come. The tickets are found by the customer alone, not by
/// status: on DynamoDB the index is eventually consistent, and a status just changed may
/// not be in it yet; the ticket read to change it is, and so is one the list shows active.
///
/// The reopen is the write that makes the ticket active, refused with
/// `active_ticket_exists` while the customer has another active ticket; cut short after it,
/// a repeat finds the ticket active and joins it. A message that opened the ticket it
/// finds (its first run stopped before the hand-off, and an agent resolved the ticket
/// meanwhile) finishes opening it, and reopens nothing; closed meanwhile, as before, the
/// message opens a new ticket.
async fn reopen_resolved(
    store: &dyn Store,
    queue: &dyn Queue,
    customer: &Customer,
    message: &Message,
) -> Result<Option<Ticket>> {
    let theirs = TicketFilter {
        customer_id: Some(customer.id.clone()),
        ..TicketFilter::default()
    };
    let newest = store.list_tickets(&theirs, NEWEST_TICKETS, None).await?;
    let mut listed = Vec::new();
    for t in newest.items.into_iter().filter(|t| t.merged_into.is_none()) {
        // The customer had no active ticket a moment ago: one listed as active is as it
        // was before a change the index has not caught up with (resolved just now, say),
        // or another message's; the ticket itself says which.
        if t.status.is_active() {
            listed.extend(store.get_ticket(&t.id).await?);
        } else {
            listed.push(t);
        }
    }
    let Some(listed) = last_worked(&listed, message) else {
        return Ok(None);
    };
    // The list may lag (DynamoDB's index); what is decided below reads the ticket itself.
    let Some(found) = store.get_ticket(&listed.id).await? else {
        return Ok(None);
    };
    if found.opened_by.as_deref() == Some(message.id.as_str())
        && found.status != TicketStatus::Closed
    {
        finish_opening(store, queue, customer, &found, message).await?;
        return Ok(Some(found));
    }
    // Back to its agent only if they take work now (a name with no profile takes none);
    // else to whoever can. Past their capacity too, as a person's assignment may go: the
    // customer gets the agent who knows the case.
    let agent_available = match found.assignee.as_deref() {
        Some(agent) => store.get_agent(agent).await?.is_some_and(|p| p.available),
        None => true,
    };
    let (ticket, reopened) = update_ticket(store, &found.id, |t| {
        // Reassigned since it was read: that choice stands.
        let keep_agent = agent_available || t.assignee != found.assignee;
        Ok(t.customer_id == customer.id
            && t.merged_into.is_none()
            && t.reopen_for_customer(message, keep_agent, domain::now()))
    })
    .await?;
    if !reopened {
        return Ok(None);
    }
    put_on_ticket(store, message, &ticket.id).await?;
    tracing::info!(ticket_id = %ticket.id, message_id = %message.id, assignee = ticket.assignee.as_deref().unwrap_or(""), "the customer's message reopened their resolved ticket");
    Ok(Some(ticket))
}

/// Of a customer's newest tickets (newest first), the one a follow-up `message` is about:
/// the one it opened, if any (its first run stopped before the hand-off), else the one
/// resolved last, waiting to close (the conversation last worked on: an agent may have
/// reopened and resolved an older ticket after a newer one, or a merge brought over
/// another customer's newer one), else the newest, which the caller reads to decide.
fn last_worked<'a>(newest_first: &'a [Ticket], message: &Message) -> Option<&'a Ticket> {
    let newest = newest_first.first()?;
    if newest.opened_by.as_deref() == Some(message.id.as_str()) {
        return Some(newest);
    }
    let resolved_last = newest_first
        .iter()
        .filter(|t| t.status == TicketStatus::Resolved)
        .filter_map(|t| Some((t.closes_at?, t)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, t)| t);
    Some(resolved_last.unwrap_or(newest))
}

/// A message meets its customer's active ticket: finishes opening it when this message
/// opened it, else joins it ([`join_ticket`]). `None` when the ticket ended before the
/// message could join it.
pub async fn settle(
    store: &dyn Store,
    queue: &dyn Queue,
    customer: &Customer,
    active: &Ticket,
    message: &Message,
) -> Result<Option<Ticket>> {
    if active.opened_by.as_deref() == Some(message.id.as_str()) {
        finish_opening(store, queue, customer, active, message).await?;
        return Ok(Some(active.clone()));
    }
    join_ticket(store, active, message).await
}

/// How many of the customer's messages before the one that opened a ticket its agent is
/// shown ([`exchange_before`]).
const EXCHANGE_MESSAGES: usize = 20;
/// How far back, before the message that opened a ticket, the exchange its agent is shown
/// goes.
const EXCHANGE_HOURS: i64 = 24;

/// The steps after a ticket is created: the message is put on it, and the customer is told
/// with the hand-off message, whose id is derived from the message's.
async fn finish_opening(
    store: &dyn Store,
    queue: &dyn Queue,
    customer: &Customer,
    ticket: &Ticket,
    message: &Message,
) -> Result<()> {
    if message.ticket_id.as_deref() != Some(ticket.id.as_str()) {
        put_on_ticket(store, message, &ticket.id).await?;
    }
    let locale = format::locale_for(customer.locale.as_deref(), &message.text);
    let mut handoff = Message::outbound(
        &customer.id,
        message.channel,
        MessageKind::Handoff,
        format::handoff(locale, &ticket.id),
        Some(ticket.id.clone()),
    );
    handoff.id = derived_id(&message.id, "handoff");
    send_to_customer(store, queue, &handoff).await
}

/// The customer's exchange with the knowledge base just before the message that opened
/// `ticket`, oldest first: the questions it answered and its answers, which are on no
/// ticket, so that the agent reads what was said before the hand-off (as Chatwoot shows an
/// agent the bot's conversation) instead of only "转人工". Back to the first message on a
/// ticket (an earlier ticket's conversation is that ticket's), at most
/// [`EXCHANGE_MESSAGES`], none older than [`EXCHANGE_HOURS`] before it, and a question only
/// with its answer (one not answered is still being decided, or went unanswered). Read,
/// not moved: each message keeps its one outcome. Empty for a ticket no customer's message
/// opened.
pub async fn exchange_before(store: &dyn Store, ticket: &Ticket) -> Result<Vec<Message>> {
    let Some(opening) = ticket.opened_by.as_deref() else {
        return Ok(Vec::new());
    };
    let Some(message) = store.get_message(opening).await? else {
        return Ok(Vec::new());
    };
    let since = message.created_at - chrono::Duration::hours(EXCHANGE_HOURS);
    let earlier = store
        .customer_messages_before(&message, EXCHANGE_MESSAGES)
        .await?;
    // The answers seen so far (newest first, so an answer before its question).
    let mut answers = std::collections::HashSet::new();
    let mut exchange = Vec::new();
    for m in earlier {
        if m.created_at < since || m.ticket_id.is_some() {
            break;
        }
        let answered = match m.direction {
            Direction::Outbound => {
                let answer = m.kind == MessageKind::AutoReply;
                if answer {
                    answers.insert(m.id.clone());
                }
                answer
            }
            _ => answers.contains(&derived_id(&m.id, "auto_reply")),
        };
        if answered {
            exchange.push(m);
        }
    }
    exchange.reverse();
    Ok(exchange)
}

/// A message that already has a ticket, seen again: when it opened that ticket, the
/// hand-off is sent (again: dispatch sends it once); a message that joined has nothing left.
pub async fn resume(
    store: &dyn Store,
    queue: &dyn Queue,
    customer: &Customer,
    message: &Message,
) -> Result<()> {
    let Some(ticket_id) = &message.ticket_id else {
        return Ok(());
    };
    match store.get_ticket(ticket_id).await? {
        Some(t) if t.opened_by.as_deref() == Some(message.id.as_str()) => {
            finish_opening(store, queue, customer, &t, message).await
        }
        _ => Ok(()),
    }
}

/// Adds a customer's follow-up to their active ticket: the ticket takes the reply first,
/// on the condition that it is still active, then the message goes on it. `None`, with
/// the message left as it was, when the ticket ended since it was read (an agent resolved
/// or closed it, or a merge folded it): a follow-up never lands on a ticket no inbox shows.
/// Cut short between the two writes, a repeat finds the message on no ticket and joins
/// again, which only touches the ticket once more.
pub async fn join_ticket(
    store: &dyn Store,
    ticket: &Ticket,
    message: &Message,
) -> Result<Option<Ticket>> {
    let (ticket, joined) = update_ticket(store, &ticket.id, |t| {
        if !t.status.is_active() {
            return Ok(false);
        }
        t.customer_replied(message.created_at, domain::now());
        Ok(true)
    })
    .await?;
    if !joined {
        tracing::info!(ticket_id = %ticket.id, message_id = %message.id, status = ticket.status.as_str(), "the ticket ended before the message joined it");
        return Ok(None);
    }
    put_on_ticket(store, message, &ticket.id).await?;
    tracing::info!(ticket_id = %ticket.id, message_id = %message.id, "message joined its ticket");
    Ok(Some(ticket))
}

/// How many folds in a row [`put_on_ticket`] follows (a ticket folded into one that was
/// folded in turn, by merges one after the other).
const FOLDS_FOLLOWED: usize = 4;

/// Puts a customer's `message` on the ticket it joined, reopened or opened, its last write
/// there. A merge may have folded that ticket into another after it took the message and
/// before this write (the fold moves the ticket's messages first, and this one was not on it
/// yet): then the message goes on the ticket it was folded into, which owes the reply, so a
/// customer's message never stays on a ticket no inbox shows. One more read of the ticket.
/// Returns the ticket the message is on.
pub async fn put_on_ticket(
    store: &dyn Store,
    message: &Message,
    ticket_id: &str,
) -> Result<String> {
    let mut on = ticket_id.to_string();
    store.set_message_ticket(&message.id, &on).await?;
    for _ in 0..FOLDS_FOLLOWED {
        let Some(into) = store.get_ticket(&on).await?.and_then(|t| t.merged_into) else {
            break;
        };
        owes_reply(store, &into, message).await?;
        store.set_message_ticket(&message.id, &into).await?;
        tracing::info!(folded = %on, ticket_id = %into, message_id = %message.id, "the message's ticket was folded meanwhile; it went on the kept one");
        on = into;
    }
    Ok(on)
}

/// The ticket `ticket_id` takes the wait of the customer's `message`, which came to it from
/// a folded ticket: the customer waits for a reply from it, if it is still being worked.
async fn owes_reply(store: &dyn Store, ticket_id: &str, message: &Message) -> Result<()> {
    if message.direction != Direction::Inbound {
        return Ok(());
    }
    update_ticket(store, ticket_id, |k| {
        if !k.status.is_active() || k.answers_wait(message.created_at) {
            return Ok(false);
        }
        k.customer_replied(message.created_at, domain::now());
        Ok(true)
    })
    .await?;
    Ok(())
}

/// How long the outcome of a customer's message is remembered: longer than any queue
/// keeps a job (SQS keeps one 14 days at most).
pub const OUTCOME_TTL_SECS: i64 = 14 * 24 * 3600;

/// What becomes of a customer's message that auto-reply decides on: an answer from the
/// knowledge base, or a ticket (the customer's active one, else their resolved one reopened,
/// else a new one). One message has one outcome, whatever runs of its job overlap: the first
/// run to claim one ([`claim_outcome`]) decides, and every run, the first one too, carries
/// out that one ([`carry_out`]), each step a no-op once done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Answered with this text, as it goes to the customer.
    Reply { text: String },
    /// On a ticket: the customer's active one, else their resolved one reopened, else a new
    /// one with this skill and priority, and these articles suggested to its agent.
    Ticket {
        skill: Skill,
        priority: Priority,
        #[serde(default)]
        suggestions: Vec<Suggestion>,
        /// The rules' tags for the message, which a new ticket carries.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags: Vec<String>,
    },
}

fn outcome_key(message_id: &str) -> String {
    format!("outcome:{message_id}")
}

fn parse_outcome(message_id: &str, raw: &str) -> Result<Outcome> {
    serde_json::from_str(raw).map_err(|e| {
        Error::internal(format!(
            "the outcome claimed for message {message_id} does not read: {e}"
        ))
    })
}

/// The outcome claimed for message `message_id`, if a run of its job claimed one.
pub async fn claimed_outcome(store: &dyn Store, message_id: &str) -> Result<Option<Outcome>> {
    match store.claimed(&outcome_key(message_id)).await? {
        Some(raw) => parse_outcome(message_id, &raw).map(Some),
        None => Ok(None),
    }
}

/// Claims `chosen` as the outcome of message `message_id`, before anything of it is done,
/// and returns the outcome that stands: `chosen`, or the one a concurrent or earlier run
/// claimed first. A run that crashed after claiming leaves its choice, so the redelivery
/// finishes the same outcome and never picks another.
pub async fn claim_outcome(
    store: &dyn Store,
    message_id: &str,
    chosen: Outcome,
) -> Result<Outcome> {
    let raw = serde_json::to_string(&chosen)
        .map_err(|e| Error::internal(format!("encoding an outcome: {e}")))?;
    match store
        .claim(&outcome_key(message_id), &raw, OUTCOME_TTL_SECS)
        .await?
    {
        None => Ok(chosen),
        Some(first) => {
            let first = parse_outcome(message_id, &first)?;
            if first != chosen {
                tracing::info!(
                    message_id,
                    "another run decided this message first; following it"
                );
            }
            Ok(first)
        }
    }
}

/// Carries out `outcome` for `message` of `customer`: sends the answer (under an id
/// derived from the message's, so dispatch sends it once), or puts the message on a ticket
/// ([`open_ticket`], which joins the active ticket, reopens a resolved one, or finishes
/// opening the one this message opened). Safe to run again, from any point a run was cut
/// short.
pub async fn carry_out(
    store: &dyn Store,
    queue: &dyn Queue,
    customer: &Customer,
    message: &Message,
    outcome: Outcome,
) -> Result<()> {
    match outcome {
        Outcome::Reply { text } => {
            let mut reply = Message::outbound(
                &customer.id,
                message.channel,
                MessageKind::AutoReply,
                text,
                None,
            );
            reply.id = derived_id(&message.id, "auto_reply");
            send_to_customer(store, queue, &reply).await
        }
        Outcome::Ticket {
            skill,
            priority,
            suggestions,
            tags,
        } => {
            let active = store.active_ticket_for(&customer.id).await?;
            let opening = Opening {
                skill,
                priority,
                tags,
                suggestions,
            };
            open_ticket(store, queue, customer, message, active, opening)
                .await
                .map(drop)
        }
    }
}

/// Where a merge stands after [`run_merge`].
#[derive(Debug, Clone, PartialEq)]
pub enum MergeProgress {
    /// Finished: the customer that stays, with everything of the other.
    Done(Customer),
    /// The step budget ran out first; running the plan again goes on from where it is.
    Unfinished,
}

/// How long a merged customer's id still leads to the customer that stayed: longer than
/// any queue keeps a job that names it.
pub const MERGE_REDIRECT_TTL_SECS: i64 = 30 * 24 * 3600;

fn redirect_key(customer_id: &str) -> String {
    format!("merged:{customer_id}")
}

/// The customer a job names, following merges: a customer merged away (or being merged
/// away) leads to the one that stays, so a message queued before a merge ends on the
/// customer that stays. None when there is no such customer.
pub async fn customer_for_job(store: &dyn Store, customer_id: &str) -> Result<Option<Customer>> {
    let mut id = customer_id.to_string();
    // A chain of merges is short; a bound keeps a bad record from looping.
    for _ in 0..8 {
        match store.claimed(&redirect_key(&id)).await? {
            Some(into) if into != id => id = into,
            _ => break,
        }
    }
    store.get_customer(&id).await
}

/// What a job does last for each customer it wrote under: when a merge took that customer
/// away while the job ran (it looked before the merge began), a round of the merge is
/// queued, which moves what the job left behind (its message, a ticket it opened) to the
/// customer that stays. Nothing when the customer was not merged. `cause` is the job's
/// message: the round is its own, never taken for a resend of another.
pub async fn follow_merge(
    store: &dyn Store,
    queue: &dyn Queue,
    customer_id: &str,
    cause: &str,
) -> Result<()> {
    let Some(into) = store.claimed(&redirect_key(customer_id)).await? else {
        return Ok(());
    };
    if into == customer_id {
        return Ok(());
    }
    let job = jobs::InboundJob::Merge(jobs::MergeJob {
        merge: MergePlan::new(&into, customer_id, "follow"),
        round: 0,
        cause: Some(cause.to_string()),
    });
    jobs::send(queue, &job).await?;
    tracing::info!(from = %customer_id, into = %into, "a job met a merge; its round is queued");
    Ok(())
}

/// How long an unfinished merge holds its two customers: its rounds follow each other
/// within seconds, and a merge abandoned (its job a dead letter) frees them after this.
pub const MERGE_HOLD_TTL_SECS: i64 = 24 * 3600;

fn merge_hold_key(customer_id: &str) -> String {
    format!("merging:{customer_id}")
}

/// Holds both customers of `plan` for it until it finishes: a customer takes part in one
/// merge at a time. Without it, a customer still receiving a merge could be merged away
/// (the identities moving to it would be left naming a customer that is gone, and that
/// person's next message would fail for good), and two merges into one customer could
/// each write its record without the other's identities. The same plan, run again or
/// resumed by its next round, holds them already. A conflict `merge_in_progress` otherwise,
/// holding nothing.
async fn hold_for_merge(store: &dyn Store, plan: &MergePlan) -> Result<()> {
    let mut held = Vec::new();
    for customer in [&plan.into, &plan.from] {
        match store
            .claim(&merge_hold_key(customer), &plan.id, MERGE_HOLD_TTL_SECS)
            .await?
        {
            None => held.push(customer),
            Some(holder) if holder == plan.id => {}
            Some(_) => {
                for customer in held {
                    store.release(&merge_hold_key(customer)).await?;
                }
                return Err(Error::conflict(
                    "merge_in_progress",
                    format!(
                        "customer {customer} is in another merge that has not finished; \
                         try again when it has"
                    ),
                ));
            }
        }
    }
    Ok(())
}

async fn release_merge_holds(store: &dyn Store, plan: &MergePlan) -> Result<()> {
    for customer in [&plan.into, &plan.from] {
        store.release(&merge_hold_key(customer)).await?;
    }
    Ok(())
}

/// Runs a merge plan for at most `budget` steps that move something, each moving at most
/// [`MergePlan::PAGE`] things (see [`MergeKind`] for the order). Safe to cut short and to
/// repeat: a step moves only what still belongs to `plan.from`, and a plan whose `from`
/// is gone is finished. Not found when `plan.into` is unknown; a conflict
/// `already_merged` when `plan.from` is being merged into another customer, or `plan.into`
/// is itself being merged away; a conflict `merge_in_progress` while either customer is in
/// another, unfinished merge ([`hold_for_merge`]).
///
/// Before anything moves, `plan.from` is made to lead to `plan.into`
/// ([`customer_for_job`]): jobs that start from then on act on the customer that stays,
/// and a job already under way moves what it left at its end ([`follow_merge`]).
pub async fn run_merge(
    store: &dyn Store,
    plan: &MergePlan,
    budget: usize,
) -> Result<MergeProgress> {
    if plan.into == plan.from {
        return Err(Error::unprocessable(
            "invalid_merge",
            "a customer cannot be merged into itself",
        ));
    }
    // Nothing moves towards a customer that is not there.
    if store.get_customer(&plan.into).await?.is_none() {
        return Err(Error::not_found("customer", &plan.into));
    }
    if let Some(next) = store.claimed(&redirect_key(&plan.into)).await? {
        return Err(Error::conflict(
            "already_merged",
            format!("customer {} is being merged into {next}", plan.into),
        ));
    }
    hold_for_merge(store, plan).await?;
    if let Some(other) = store
        .claim(
            &redirect_key(&plan.from),
            &plan.into,
            MERGE_REDIRECT_TTL_SECS,
        )
        .await?
    {
        if other != plan.into {
            release_merge_holds(store, plan).await?;
            return Err(Error::conflict(
                "already_merged",
                format!("customer {} is being merged into {other}", plan.from),
            ));
        }
    }
    // A step that finds nothing left to move costs a read, and does not count.
    let mut spent = 0;
    for kind in MergePlan::ORDER {
        loop {
            if spent >= budget {
                return Ok(MergeProgress::Unfinished);
            }
            let moved = match kind {
                MergeKind::Tickets => move_tickets(store, plan).await?,
                _ => store.merge_step(plan, kind, MergePlan::PAGE).await?,
            };
            if moved == 0 {
                break;
            }
            spent += 1;
        }
    }
    let into = store
        .get_customer(&plan.into)
        .await?
        .ok_or_else(|| Error::not_found("customer", &plan.into))?;
    let Some(from) = store.get_customer(&plan.from).await? else {
        release_merge_holds(store, plan).await?;
        return Ok(MergeProgress::Done(into));
    };
    let merged = plan.merged(into, from);
    store.finish_merge(&merged, &plan.from).await?;
    release_merge_holds(store, plan).await?;
    tracing::info!(merge_id = %plan.id, into = %plan.into, from = %plan.from, by = %plan.by, "customers merged");
    Ok(MergeProgress::Done(merged))
}

/// Moves a page of `plan.from`'s tickets to `plan.into` through the ticket path: the
/// version moves (an agent's stale copy cannot put the old customer back) and the change
/// feed sees it. A customer keeps one active ticket: when `plan.into` has one (or one of
/// `plan.from`'s moved first), each other active ticket of `plan.from` is folded into it
/// ([`fold_ticket`]) rather than moved. Returns how many changed.
async fn move_tickets(store: &dyn Store, plan: &MergePlan) -> Result<usize> {
    let filter = TicketFilter {
        customer_id: Some(plan.from.clone()),
        ..Default::default()
    };
    let page = store.list_tickets(&filter, MergePlan::PAGE, None).await?;
    if page.items.is_empty() {
        return Ok(0);
    }
    // The ticket the customer that stays goes on with: theirs, else the one the other's
    // messages joined, which moves over first.
    let mut moved = 0;
    let mut kept = store.active_ticket_for(&plan.into).await?;
    if kept.is_none() {
        if let Some(active) = store.active_ticket_for(&plan.from).await? {
            moved += usize::from(place_ticket(store, plan, &active, &mut kept).await?);
        }
    }
    for ticket in page.items {
        moved += usize::from(place_ticket(store, plan, &ticket, &mut kept).await?);
    }
    Ok(moved)
}

/// Moves one of `plan.from`'s tickets to `plan.into`, or folds it into `kept` when it is
/// active and `kept` is another. An active ticket that moves becomes `kept`. When the store
/// refuses the move because `plan.into` has an active ticket that `kept` did not know of
/// (one opened since it was read), that ticket becomes `kept` and this one is folded into
/// it: the customer that stays never ends with two.
async fn place_ticket(
    store: &dyn Store,
    plan: &MergePlan,
    ticket: &Ticket,
    kept: &mut Option<Ticket>,
) -> Result<bool> {
    for _ in 0..3 {
        if let Some(k) = kept.as_ref().filter(|k| k.id != ticket.id) {
            if ticket.status.is_active() {
                return fold_ticket(store, plan, ticket, k).await;
            }
        }
        match move_ticket(store, plan, &ticket.id).await {
            Ok((now, changed)) => {
                if kept.is_none() && now.customer_id == plan.into && now.status.is_active() {
                    *kept = Some(now);
                }
                return Ok(changed);
            }
            Err(e) if e.code == "active_ticket_exists" => {
                *kept = store.active_ticket_for(&plan.into).await?;
                tracing::info!(ticket_id = %ticket.id, into = %plan.into, "the customer that stays opened a ticket during the merge; the moving one folds into it");
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::conflict(
        "version_conflict",
        format!("the active tickets of customer {} kept changing during the merge; it goes on at its next round", plan.into),
    ))
}

async fn move_ticket(store: &dyn Store, plan: &MergePlan, id: &str) -> Result<(Ticket, bool)> {
    update_ticket(store, id, |t| {
        if t.customer_id != plan.from {
            return Ok(false);
        }
        t.move_to_customer(&plan.into, domain::now());
        Ok(true)
    })
    .await
}

/// Folds `ticket`, an active ticket of the customer that goes, into `kept`: its messages
/// (not its history) go onto `kept` first, then it is closed with `merged_into` (no survey
/// follows). Cut short, a repeat moves what is left and closes it; a ticket already folded
/// is left.
async fn fold_ticket(
    store: &dyn Store,
    plan: &MergePlan,
    ticket: &Ticket,
    kept: &Ticket,
) -> Result<bool> {
    // The history stays with the ticket it tells of: the kept ticket was not resolved or
    // escalated when this one was.
    for m in store.ticket_messages(&ticket.id).await? {
        if m.kind != MessageKind::Activity {
            store.set_message_ticket(&m.id, &kept.id).await?;
        }
    }
    // Its customer's unanswered messages came with them (the kept ticket owes the reply),
    // and so did its tags: before the fold, so a repeat after a crash in between does it
    // again.
    if ticket.waiting_since().is_some() || ticket.tags.iter().any(|t| !kept.tags.contains(t)) {
        update_ticket(store, &kept.id, |k| {
            let now = domain::now();
            let waits = k.absorb_wait(ticket, now);
            let tags = k.absorb_tags(ticket, now);
            Ok(waits || tags)
        })
        .await?;
    }
    let (folded, changed) = update_ticket(store, &ticket.id, |t| {
        if t.customer_id != plan.from || !t.status.is_active() {
            return Ok(false);
        }
        t.fold_into(kept, &plan.into, domain::now())?;
        Ok(true)
    })
    .await?;
    if changed {
        tracing::info!(ticket_id = %ticket.id, kept = %kept.id, "a merged customer's active ticket was folded into the kept one");
    }
    // A customer's message that joined this ticket between the move above and the fold was
    // put on it after the move: it goes now, and the kept ticket owes its reply. One put on
    // it after this follows the fold by itself ([`put_on_ticket`]).
    if folded.merged_into.as_deref() == Some(kept.id.as_str()) {
        for m in store.ticket_messages(&ticket.id).await? {
            if m.kind != MessageKind::Activity {
                owes_reply(store, &kept.id, &m).await?;
                store.set_message_ticket(&m.id, &kept.id).await?;
            }
        }
    }
    Ok(changed)
}

/// How long a message may stay queued before [`sweep_queued`] queues it again: far longer
/// than a queue takes to deliver, even with retries.
pub const QUEUED_GRACE_SECS: i64 = 300;

/// Queues again the messages to customers that stayed queued longer than `grace_secs`: a request
/// without an `Idempotency-Key` whose queue send failed leaves its message stored and
/// queued, and no retry of that request will send it. Dispatch sends a message only while
/// it is queued and holds it while sending, so queueing one that is on its way changes
/// nothing. Returns how many were queued again.
pub async fn sweep_queued(
    store: &dyn Store,
    queue: &dyn Queue,
    now: chrono::DateTime<chrono::Utc>,
    grace_secs: i64,
    limit: usize,
) -> Result<usize> {
    let before = now - chrono::Duration::seconds(grace_secs);
    let stale = store.queued_before(before, limit).await?;
    for m in &stale {
        jobs::send(
            queue,
            &OutboundMessage::Customer {
                message_id: m.id.clone(),
            },
        )
        .await?;
        tracing::warn!(message_id = %m.id, "a message left queued is queued again");
    }
    Ok(stale.len())
}
