//! Tickets and their state machine. Every change of status goes through
//! [`TicketStatus::can_become`]; nothing else in the code decides what is legal.

use super::agent::{AssignmentReason, Language};
use super::sla::Sla;
use super::Channel;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Open,
    Pending,
    Escalated,
    Resolved,
    Closed,
}

impl TicketStatus {
    /// The legal moves. `closed` is final, as in Zendesk: a customer who writes again gets a
    /// new ticket. A resolved ticket may be reopened (by an agent, or by the customer writing
    /// again: [`Ticket::reopen_for_customer`]) or closed.
    pub fn can_become(self, to: TicketStatus) -> bool {
        use TicketStatus::*;
        match (self, to) {
            (Closed, _) => false,
            (from, to) if from == to => false,
            (Resolved, Open | Closed) => true,
            (Resolved, _) => false,
            (Open | Pending | Escalated, _) => true,
        }
    }

    /// The statuses of a ticket still being worked, which new customer messages join.
    pub const ACTIVE: [TicketStatus; 3] = [
        TicketStatus::Open,
        TicketStatus::Pending,
        TicketStatus::Escalated,
    ];

    /// Whether new customer messages still join this ticket.
    pub fn is_active(self) -> bool {
        TicketStatus::ACTIVE.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::Pending => "pending",
            TicketStatus::Escalated => "escalated",
            TicketStatus::Resolved => "resolved",
            TicketStatus::Closed => "closed",
        }
    }
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn raised(self) -> Priority {
        match self {
            Priority::Low => Priority::Normal,
            Priority::Normal => Priority::High,
            Priority::High | Priority::Urgent => Priority::Urgent,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skill {
    Technical,
    Billing,
    #[default]
    General,
}

impl Skill {
    pub fn as_str(self) -> &'static str {
        match self {
            Skill::Technical => "technical",
            Skill::Billing => "billing",
            Skill::General => "general",
        }
    }
}

/// The satisfaction survey of a closed ticket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Survey {
    pub sent_at: Option<DateTime<Utc>>,
    pub rating: Option<u8>,
    pub comment: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
}

/// A knowledge-base article the search found for a ticket's first message, kept for the
/// agent's view when auto-reply was not confident enough to answer with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub article_id: String,
    pub title: String,
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: String,
    pub customer_id: String,
    pub channel: Channel,
    pub subject: String,
    pub description: String,
    pub status: TicketStatus,
    pub priority: Priority,
    pub skill: Skill,
    pub assignee: Option<String>,
    /// The customer's language, from the message that opened it: what the assignment
    /// matches against agents' languages. Tickets stored before it existed read as English.
    #[serde(default = "english")]
    pub language: Language,
    /// When the current assignee got it.
    #[serde(default)]
    pub assigned_at: Option<DateTime<Utc>>,
    /// Who gave it to them and why, while it is assigned.
    #[serde(default)]
    pub assignment: Option<Assignment>,
    /// Its service-level targets, when its priority has a policy, and their breaches.
    #[serde(default)]
    pub sla: Option<Sla>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    /// Since when the customer waits for the agents' next reply: their first message after
    /// the first response that no agent has answered yet ([`Ticket::customer_replied`]).
    /// What the next-reply SLA target counts from; none while nobody waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_reply_since: Option<DateTime<Utc>>,
    pub escalated_at: Option<DateTime<Utc>>,
    pub escalation_reason: Option<String>,
    /// Who escalated it, when an agent did: the supervisor's notice names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_by: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub survey: Option<Survey>,
    /// The best articles for the first message (at most three), when auto-reply handed it
    /// off: what the agent can answer from. Tickets stored before it existed read as empty.
    #[serde(default)]
    pub suggestions: Vec<Suggestion>,
    /// The customer message that opened it, when one did: a redelivery of that message
    /// finishes opening it (its hand-off) instead of joining it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_by: Option<String>,
    /// The active ticket of the customer that stayed, when a merge of customers folded this
    /// one into it ([`Ticket::fold_into`]): its messages are there, and it was closed for
    /// it, with no survey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// When this ticket, resolved, closes by itself (and its survey goes out), unless it is
    /// reopened or closed first: set as it is resolved, by the rules' `[tickets]
    /// close_resolved_after` ([`Ticket::schedule_close`]); read only while it stays resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<DateTime<Utc>>,
    /// The customer message that last reopened it, resolved ([`Ticket::reopen_for_customer`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopened_by: Option<String>,
    /// The agents' tags on it, each a [`super::tag::tag`], in the order given (at most
    /// [`super::tag::MAX_TAGS`]). Tickets stored before tags existed read as none.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The agent whose change made this version (an agent's patch or escalation); none
    /// for the desk's own changes and the customer's. What the ticket's history names
    /// ([`super::activity`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    pub version: u64,
}

/// Who assigned a ticket (an agent's id; none when the desk's rule did) and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub by: Option<String>,
    pub reason: AssignmentReason,
}

/// What is needed to open a ticket.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub customer_id: String,
    pub channel: Channel,
    pub subject: Option<String>,
    pub description: String,
    pub priority: Priority,
    pub skill: Skill,
}

/// An agent's change to a ticket; absent fields stay as they are. `assignee: Some(None)`
/// unassigns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TicketPatch {
    pub status: Option<TicketStatus>,
    pub priority: Option<Priority>,
    pub skill: Option<Skill>,
    pub assignee: Option<Option<String>>,
    /// The ticket's tags from now on, all of them ([`super::tag::tags`] checks them).
    pub tags: Option<Vec<String>>,
    /// The agent making the change: recorded as who assigned, when it assigns.
    pub by: Option<String>,
}

/// The agent API's list filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TicketFilter {
    pub status: Option<TicketStatus>,
    pub priority: Option<Priority>,
    pub skill: Option<Skill>,
    pub assignee: Option<String>,
    pub channel: Option<Channel>,
    pub customer_id: Option<String>,
    /// Only tickets still being worked ([`TicketStatus::ACTIVE`]).
    pub active: bool,
    /// Only tickets nobody is assigned to.
    pub unassigned: bool,
    /// Only the tickets with this reference, as [`parse_ticket_ref`] gives it.
    pub reference: Option<String>,
    /// Only the tickets with this tag, as [`super::tag::tag`] gives it.
    pub tag: Option<String>,
    /// The list's order: oldest first (the customer who has waited longest), else newest
    /// first. Counts ignore it.
    pub oldest_first: bool,
}

/// How many letters and digits a ticket reference has.
pub const REF_LEN: usize = 8;

/// The reference a customer is told for a ticket ("Ticket: A86531F8"): the last
/// [`REF_LEN`] letters and digits of its id, upper case. Ids are UUID v7, whose tail is
/// random, so a reference names one ticket in practice. The stores keep it beside each ticket,
/// as computed here, to find a ticket by the reference a customer quotes.
pub fn ticket_ref(ticket_id: &str) -> String {
    let tail: String = ticket_id
        .chars()
        .rev()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(REF_LEN)
        .collect();
    tail.chars().rev().collect::<String>().to_uppercase()
}

/// A reference as an agent types or pastes it (" #a86531f8 "), in the form
/// [`ticket_ref`] gives: surrounding spaces and one leading `#` are ignored, and case does
/// not matter. Anything that cannot be a reference is 422 `invalid_reference`.
pub fn parse_ticket_ref(input: &str) -> Result<String> {
    let trimmed = input.trim();
    let bare = trimmed.strip_prefix(['#', '＃']).unwrap_or(trimmed).trim();
    if bare.len() == REF_LEN && bare.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(bare.to_ascii_uppercase())
    } else {
        Err(Error::unprocessable(
            "invalid_reference",
            format!("a ticket reference is {REF_LEN} letters or digits, like A86531F8"),
        ))
    }
}

/// The longest agent name, in bytes, a ticket is assigned to or a list is filtered by (and
/// the longest customer id a list is filtered by): DynamoDB keys an index by each and refuses
/// a key over 2,048 bytes, so both stores take this one limit, with room to spare.
pub const MAX_KEY_BYTES: usize = 1024;

fn check_key(name: &str, value: &str) -> Result<()> {
    if value.len() > MAX_KEY_BYTES {
        return Err(Error::unprocessable(
            "too_long",
            format!("{name} is longer than {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(())
}

impl TicketFilter {
    /// Refuses a filter no store can answer (a key longer than [`MAX_KEY_BYTES`], a
    /// reference not in the form [`parse_ticket_ref`] gives).
    pub fn check(&self) -> Result<()> {
        if let Some(a) = &self.assignee {
            check_key("assignee", a)?;
        }
        if let Some(c) = &self.customer_id {
            check_key("customer_id", c)?;
        }
        if let Some(r) = &self.reference {
            // Stored references are in one form: a filter in another would find nothing.
            if parse_ticket_ref(r)? != *r {
                return Err(Error::unprocessable(
                    "invalid_reference",
                    "a reference filter is upper case, as the stores keep it",
                ));
            }
        }
        if let Some(t) = &self.tag {
            // Stored tags are folded: a filter in another form would find nothing.
            if super::tag::tag(t)? != *t {
                return Err(Error::unprocessable(
                    "invalid_tag",
                    "a tag filter is folded, as the stores keep tags",
                ));
            }
        }
        Ok(())
    }
}

fn english() -> Language {
    Language::En
}

impl Ticket {
    pub fn open(new: NewTicket, now: DateTime<Utc>) -> Ticket {
        let subject = match new.subject {
            Some(s) if !s.trim().is_empty() => crate::text::subject_of(&s),
            _ => crate::text::subject_of(&new.description),
        };
        let language = Language::detect(None, &new.description);
        Ticket {
            id: super::new_id(),
            customer_id: new.customer_id,
            channel: new.channel,
            subject,
            description: new.description,
            status: TicketStatus::Open,
            priority: new.priority,
            skill: new.skill,
            assignee: None,
            language,
            assigned_at: None,
            assignment: None,
            sla: None,
            created_at: now,
            updated_at: now,
            first_response_at: None,
            awaiting_reply_since: None,
            escalated_at: None,
            escalation_reason: None,
            escalated_by: None,
            closed_at: None,
            survey: None,
            suggestions: Vec::new(),
            opened_by: None,
            merged_into: None,
            closes_at: None,
            reopened_by: None,
            tags: Vec::new(),
            changed_by: None,
            version: 1,
        }
    }

    /// After a status change from `was`: a ticket just resolved closes by itself `after`
    /// from `now` (never, for `None`); a ticket no longer resolved has no such time.
    pub fn schedule_close(
        &mut self,
        was: TicketStatus,
        after: Option<chrono::Duration>,
        now: DateTime<Utc>,
    ) {
        if self.status != TicketStatus::Resolved {
            self.closes_at = None;
        } else if was != TicketStatus::Resolved {
            self.closes_at = after.map(|d| now + d);
        }
    }

    /// Closes a resolved ticket whose time to close by itself has come, as an agent's
    /// close would (its survey follows). False when it is not due, or not resolved now.
    pub fn close_if_due(&mut self, now: DateTime<Utc>) -> Result<bool> {
        let due =
            self.status == TicketStatus::Resolved && self.closes_at.is_some_and(|at| at <= now);
        if due {
            let close = TicketPatch {
                status: Some(TicketStatus::Closed),
                ..TicketPatch::default()
            };
            self.apply(&close, now)?;
            self.closes_at = None;
        }
        Ok(due)
    }

    /// A new version, made by the desk or the customer until a caller says which agent.
    fn touch(&mut self, now: DateTime<Utc>) {
        self.updated_at = now;
        self.version += 1;
        self.changed_by = None;
    }

    fn illegal(&self, to: TicketStatus) -> Error {
        Error::unprocessable(
            "illegal_status_change",
            format!(
                "a {} ticket cannot become {}",
                self.status.as_str(),
                to.as_str()
            ),
        )
    }

    /// Applies an agent's patch. Escalation needs a reason, so it has its own route.
    pub fn apply(&mut self, patch: &TicketPatch, now: DateTime<Utc>) -> Result<()> {
        if let Some(Some(a)) = &patch.assignee {
            check_key("assignee", a)?;
        }
        let tags = patch.tags.as_deref().map(super::tag::tags).transpose()?;
        if let Some(to) = patch.status {
            if to == TicketStatus::Escalated && self.status != TicketStatus::Escalated {
                return Err(Error::unprocessable(
                    "illegal_status_change",
                    "escalate with POST /tickets/{id}/escalate and a reason",
                ));
            }
            if to != self.status {
                if !self.status.can_become(to) {
                    return Err(self.illegal(to));
                }
                self.status = to;
                match to {
                    TicketStatus::Closed => self.closed_at = Some(now),
                    TicketStatus::Open => self.closed_at = None,
                    _ => {}
                }
                // Resolved or closed, the ticket owes no next reply (as a solve fulfils
                // Zendesk's "next reply time"); pending, it waits on the customer, and their
                // next message starts a wait of its own.
                if !to.is_active() || to == TicketStatus::Pending {
                    self.awaiting_reply_since = None;
                }
            }
        }
        if self.status == TicketStatus::Closed
            && (patch.priority.is_some()
                || patch.skill.is_some()
                || patch.assignee.is_some()
                || tags.is_some())
            && patch.status != Some(TicketStatus::Closed)
        {
            return Err(Error::unprocessable(
                "ticket_closed",
                "a closed ticket cannot be changed",
            ));
        }
        if let Some(p) = patch.priority {
            self.priority = p;
        }
        if let Some(s) = patch.skill {
            self.skill = s;
        }
        if let Some(t) = tags {
            self.tags = t;
        }
        if let Some(a) = &patch.assignee {
            if *a != self.assignee {
                self.set_assignee(a.clone(), patch.by.clone(), AssignmentReason::Manual, now);
            }
        }
        self.touch(now);
        self.changed_by = patch.by.clone();
        Ok(())
    }

    fn set_assignee(
        &mut self,
        agent: Option<String>,
        by: Option<String>,
        reason: AssignmentReason,
        now: DateTime<Utc>,
    ) {
        let assigned = agent.is_some();
        self.assignee = agent;
        self.assigned_at = assigned.then_some(now);
        self.assignment = assigned.then_some(Assignment { by, reason });
    }

    /// Gives the ticket to `agent` by the desk's rule (when it was made, or when capacity
    /// freed up). Only an unassigned ticket still being worked is given: a person's choice
    /// made meanwhile wins.
    pub fn assign(&mut self, agent: &str, reason: AssignmentReason, now: DateTime<Utc>) -> bool {
        if self.assignee.is_some() || !self.status.is_active() {
            return false;
        }
        self.set_assignee(Some(agent.to_string()), None, reason, now);
        self.touch(now);
        true
    }

    /// Who holds the ticket against their capacity: its assignee while it is being worked.
    pub fn holder(&self) -> Option<&str> {
        self.assignee.as_deref().filter(|_| self.status.is_active())
    }

    /// Whether this change let go of its holder's slot (the ticket ended, or moved to
    /// someone else): that agent may take a waiting ticket.
    pub fn freed<'a>(old: Option<&'a Ticket>, new: &Ticket) -> Option<&'a str> {
        let was = old?.holder()?;
        (new.holder() != Some(was)).then_some(was)
    }

    /// Whether this change makes the ticket an active ticket of its customer that it was not
    /// before: an ended ticket made active again (a resolved ticket reopened), or an active
    /// ticket moved to another customer (a merge). Like a new ticket, it may not stand beside
    /// another active ticket of that customer, and the stores refuse it in the write that
    /// saves it. Any other change of a ticket already active needs no such check.
    pub fn became_active(old: &Ticket, new: &Ticket) -> bool {
        new.status.is_active() && (!old.status.is_active() || old.customer_id != new.customer_id)
    }

    /// Escalates to a supervisor with a reason, naming the agent who did it: the change
    /// feed turns it into the supervisor's notice (see [`Ticket::became_escalated`]).
    pub fn escalate_by(&mut self, agent: &str, reason: &str, now: DateTime<Utc>) -> Result<()> {
        self.escalate(reason, now)?;
        self.escalated_by = Some(agent.to_string());
        self.changed_by = Some(agent.to_string());
        Ok(())
    }

    /// Whether this change is the one that escalated the ticket: what notifies the
    /// supervisor, once per escalation.
    pub fn became_escalated(old: Option<&Ticket>, new: &Ticket) -> bool {
        new.status == TicketStatus::Escalated
            && new.escalated_at.is_some()
            && old.is_none_or(|o| o.escalated_at != new.escalated_at)
    }

    /// Escalates to a supervisor with a reason.
    pub fn escalate(&mut self, reason: &str, now: DateTime<Utc>) -> Result<()> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::unprocessable(
                "reason_required",
                "an escalation needs a reason",
            ));
        }
        if self.status == TicketStatus::Escalated {
            return Err(Error::conflict(
                "already_escalated",
                "the ticket is already escalated",
            ));
        }
        if !self.status.can_become(TicketStatus::Escalated) {
            return Err(self.illegal(TicketStatus::Escalated));
        }
        self.status = TicketStatus::Escalated;
        self.escalated_at = Some(now);
        self.escalation_reason = Some(crate::text::truncate_chars(reason, 1000).to_string());
        self.escalated_by = None;
        self.touch(now);
        Ok(())
    }

    /// The customer wrote again (`message`) after the ticket was resolved, while it waits to
    /// close by itself: it is open once more and no longer closes by itself, as a solved
    /// ticket in Zendesk reopens on the requester's reply. The conversation goes on where
    /// the customer wrote (the ticket's channel becomes the message's), and `reopened_by`
    /// names the message. The ticket stays with its agent when `keep_agent` (the caller
    /// found them available), else it has none, for the assignment to give it to someone
    /// who is.
    ///
    /// False, with nothing changed, when it is not resolved, or has no time to close (with
    /// `close_resolved_after = "off"`, or resolved before tickets closed by themselves: a
    /// resolved ticket is not reopened months on), or that time has come (the clock closes
    /// it); the customer's message then goes on a new ticket, as after any close.
    pub fn reopen_for_customer(
        &mut self,
        message: &super::Message,
        keep_agent: bool,
        now: DateTime<Utc>,
    ) -> bool {
        let waiting = self.status == TicketStatus::Resolved
            && self.status.can_become(TicketStatus::Open)
            && self.closes_at.is_some_and(|at| at > now);
        if !waiting {
            return false;
        }
        self.status = TicketStatus::Open;
        self.closed_at = None;
        self.closes_at = None;
        self.channel = message.channel;
        self.reopened_by = Some(message.id.clone());
        self.await_reply(message.created_at.min(now));
        if !keep_agent {
            self.set_assignee(None, None, AssignmentReason::Manual, now);
        }
        self.touch(now);
        true
    }

    /// Whether this change is a customer's reopen ([`Ticket::reopen_for_customer`]): the
    /// message that reopened it, once per reopen.
    pub fn reopened_now<'a>(old: Option<&Ticket>, new: &'a Ticket) -> Option<&'a str> {
        let by = new.reopened_by.as_deref()?;
        (new.status.is_active() && old.is_some_and(|o| o.reopened_by.as_deref() != Some(by)))
            .then_some(by)
    }

    /// A customer wrote again (a message written `at`): a ticket waiting on them is open
    /// once more, and, after the first response, they wait for the next reply.
    pub fn customer_replied(&mut self, at: DateTime<Utc>, now: DateTime<Utc>) {
        if self.status == TicketStatus::Pending {
            self.status = TicketStatus::Open;
        }
        self.await_reply(at.min(now));
        self.touch(now);
    }

    /// The customer waits for a next reply from `at`, unless they already wait (from their
    /// first unanswered message) or the first response has not come (its own target).
    fn await_reply(&mut self, at: DateTime<Utc>) {
        if self.first_response_at.is_some() && self.awaiting_reply_since.is_none() {
            self.awaiting_reply_since = Some(at);
        }
    }

    /// Whether a reply written at `written_at` ends the customer's wait: one began, before.
    pub fn answers_wait(&self, written_at: DateTime<Utc>) -> bool {
        self.awaiting_reply_since
            .is_some_and(|since| since <= written_at)
    }

    /// Since when the customer has waited for the agents, on a ticket still being worked
    /// and not waiting on them: from its start until the first response, then from their
    /// first unanswered message.
    pub fn waiting_since(&self) -> Option<DateTime<Utc>> {
        if !self.status.is_active() || self.status == TicketStatus::Pending {
            return None;
        }
        match self.first_response_at {
            None => Some(self.created_at),
            Some(_) => self.awaiting_reply_since,
        }
    }

    /// The customer's messages of a ticket folded into this one ([`Ticket::fold_into`])
    /// came here unanswered: after this ticket's first response, the customer waits for a
    /// next reply from the earlier of the two waits. False when nothing changed.
    pub fn absorb_wait(&mut self, folded: &Ticket, now: DateTime<Utc>) -> bool {
        let Some(since) = folded.waiting_since() else {
            return false;
        };
        if !self.status.is_active() || self.first_response_at.is_none() {
            return false;
        }
        if self.awaiting_reply_since.is_some_and(|mine| mine <= since) {
            return false;
        }
        self.awaiting_reply_since = Some(since);
        self.touch(now);
        true
    }

    /// The tags of a ticket folded into this one ([`Ticket::fold_into`]) come with its
    /// conversation: those this ticket lacks are added after its own, as many as
    /// [`super::tag::MAX_TAGS`] allows. False when nothing changed.
    pub fn absorb_tags(&mut self, folded: &Ticket, now: DateTime<Utc>) -> bool {
        let before = self.tags.len();
        for tag in &folded.tags {
            if self.tags.len() < super::tag::MAX_TAGS && !self.tags.contains(tag) {
                self.tags.push(tag.clone());
            }
        }
        let changed = self.tags.len() != before;
        if changed {
            self.touch(now);
        }
        changed
    }

    /// Someone replied, now: see [`Ticket::agent_replied_at`].
    pub fn agent_replied(&mut self, taker: Option<&str>, now: DateTime<Utc>) {
        self.agent_replied_at(taker, now, now);
    }

    /// Someone's reply, written at `written_at`, is recorded at `now`: the first reply sets
    /// `first_response_at`, a reply ends the customer's wait for the next one if the wait
    /// began before it was written (a retried reply does not answer a message that came
    /// after it), and an unassigned ticket becomes `taker`'s, the replying agent (none for
    /// an administrator, who takes no tickets).
    pub fn agent_replied_at(
        &mut self,
        taker: Option<&str>,
        written_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        if self.first_response_at.is_none() {
            self.first_response_at = Some(now);
        }
        if self.answers_wait(written_at) {
            self.awaiting_reply_since = None;
        }
        if let Some(agent) = taker.filter(|_| self.assignee.is_none()) {
            self.set_assignee(
                Some(agent.to_string()),
                Some(agent.to_string()),
                AssignmentReason::Manual,
                now,
            );
        }
        self.touch(now);
    }

    /// Moves the ticket to another customer (a merge), as a change like any other.
    pub fn move_to_customer(&mut self, customer_id: &str, now: DateTime<Utc>) {
        self.customer_id = customer_id.to_string();
        self.touch(now);
    }

    /// Closes the ticket into `kept`, the active ticket of the customer `customer_id` that
    /// stays after a merge: a customer keeps one active ticket. The messages go first (the
    /// merge moves them); this is the change that ends it, with `merged_into` naming where
    /// they went. No survey follows it ([`Ticket::survey_due`]).
    pub fn fold_into(
        &mut self,
        kept: &Ticket,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if !self.status.can_become(TicketStatus::Closed) {
            return Err(self.illegal(TicketStatus::Closed));
        }
        self.customer_id = customer_id.to_string();
        self.status = TicketStatus::Closed;
        self.closed_at = Some(now);
        self.awaiting_reply_since = None;
        self.merged_into = Some(kept.id.clone());
        self.touch(now);
        Ok(())
    }

    /// Records that the survey went out. Returns false when it already had, so that a
    /// redelivered close sends nothing.
    pub fn mark_survey_sent(&mut self, now: DateTime<Utc>) -> bool {
        if self.survey.as_ref().and_then(|s| s.sent_at).is_some() {
            return false;
        }
        // Only the time is set: an answer given before this mark is kept (the survey goes
        // out before it is marked, and the customer may be quicker than a retried mark).
        self.survey.get_or_insert_with(Survey::default).sent_at = Some(now);
        self.touch(now);
        true
    }

    /// The customer's answer to the survey, taken once, and only where a survey was asked:
    /// the ticket is closed, its survey went out, and the answer comes from the customer it
    /// went to. `from_customer` is the customer a channel identified (a button press); None
    /// for the holder of the signed link, which only the ticket's customer was sent.
    pub fn rate(
        &mut self,
        from_customer: Option<&str>,
        rating: i64,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if self.status != TicketStatus::Closed {
            return Err(Error::unprocessable(
                "survey_not_open",
                "this ticket is not closed, so there is no survey to answer",
            ));
        }
        if self.survey.as_ref().and_then(|s| s.sent_at).is_none() {
            return Err(Error::unprocessable(
                "survey_not_sent",
                "no survey was sent for this ticket",
            ));
        }
        if from_customer.is_some_and(|c| c != self.customer_id) {
            return Err(Error::new(
                crate::ErrorKind::Forbidden,
                "not_your_survey",
                "this survey was sent to someone else",
            ));
        }
        if !(1..=5).contains(&rating) {
            return Err(Error::unprocessable(
                "invalid_rating",
                format!("a rating is a whole number from 1 to 5, not {rating}"),
            ));
        }
        let survey = self.survey.get_or_insert_with(Survey::default);
        if survey.rating.is_some() {
            return Err(Error::conflict(
                "already_answered",
                "this survey has already been answered",
            ));
        }
        survey.rating = Some(rating as u8);
        survey.comment = comment
            .map(|c| crate::text::truncate_chars(c.trim(), 2000).to_string())
            .filter(|c| !c.is_empty());
        survey.answered_at = Some(now);
        self.touch(now);
        Ok(())
    }

    /// Whether this change is the one that closed the ticket.
    pub fn became_closed(old: Option<&Ticket>, new: &Ticket) -> bool {
        new.status == TicketStatus::Closed && old.is_none_or(|o| o.status != TicketStatus::Closed)
    }

    /// Whether this change asks the customer for a survey: it closed the ticket, and not by
    /// folding it into another in a merge (the customer's conversation goes on there).
    pub fn survey_due(old: Option<&Ticket>, new: &Ticket) -> bool {
        Ticket::became_closed(old, new) && new.merged_into.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_is_read_as_the_customer_was_told_it() {
        let id = super::super::new_id();
        let told = ticket_ref(&id);
        assert_eq!(told.len(), REF_LEN);
        assert_eq!(told, id.replace('-', "")[24..].to_uppercase());
        for typed in [
            told.clone(),
            told.to_lowercase(),
            format!("  #{told} "),
            format!("# {}", told.to_lowercase()),
            format!("＃{told}"),
        ] {
            assert_eq!(parse_ticket_ref(&typed).unwrap(), told, "{typed:?}");
        }
        for bad in [
            "",
            "#",
            "xyz",
            "A86531F",
            "A86531F89",
            "A8653 1F8",
            "##A86531F8",
            "工单号A86531F8",
            "A86531F８",
            "工单号工单号工单号工",
        ] {
            let e = parse_ticket_ref(bad).unwrap_err();
            assert_eq!(
                (e.kind.status(), e.code),
                (422, "invalid_reference"),
                "{bad:?}"
            );
        }
        // A fixed reference with letters: a random one is all digits one time in 43, and
        // then its lower case is no different.
        let lower = TicketFilter {
            reference: Some("a86531f8".into()),
            ..Default::default()
        };
        assert_eq!(lower.check().unwrap_err().code, "invalid_reference");
        let stored = TicketFilter {
            reference: Some(told),
            ..Default::default()
        };
        stored.check().unwrap();
    }

    fn ticket() -> Ticket {
        Ticket::open(
            NewTicket {
                customer_id: "c1".into(),
                channel: Channel::Webchat,
                subject: None,
                description: "订单没有到".into(),
                priority: Priority::Normal,
                skill: Skill::General,
            },
            super::super::now(),
        )
    }

    #[test]
    fn closed_is_final() {
        let mut t = ticket();
        let now = super::super::now();
        t.apply(
            &TicketPatch {
                status: Some(TicketStatus::Closed),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert!(t.closed_at.is_some());
        let err = t
            .apply(
                &TicketPatch {
                    status: Some(TicketStatus::Open),
                    ..Default::default()
                },
                now,
            )
            .unwrap_err();
        assert_eq!(err.code, "illegal_status_change");
        assert_eq!(err.kind.status(), 422);
    }

    #[test]
    fn resolved_can_reopen_but_not_pend() {
        assert!(TicketStatus::Resolved.can_become(TicketStatus::Open));
        assert!(!TicketStatus::Resolved.can_become(TicketStatus::Pending));
        assert!(TicketStatus::Open.can_become(TicketStatus::Resolved));
    }

    #[test]
    fn only_a_reopen_becomes_active() {
        let now = super::super::now();
        let status = |t: &Ticket, to| {
            let mut next = t.clone();
            next.apply(
                &TicketPatch {
                    status: Some(to),
                    ..Default::default()
                },
                now,
            )
            .unwrap();
            next
        };
        let open = ticket();
        let pending = status(&open, TicketStatus::Pending);
        let resolved = status(&open, TicketStatus::Resolved);
        let reopened = status(&resolved, TicketStatus::Open);
        assert!(Ticket::became_active(&resolved, &reopened));
        assert!(!Ticket::became_active(&open, &pending), "active before");
        assert!(!Ticket::became_active(&open, &resolved), "it ended");
        let mut replied = pending.clone();
        replied.customer_replied(now, now);
        assert!(!Ticket::became_active(&pending, &replied));
        let closed = status(&resolved, TicketStatus::Closed);
        assert!(!Ticket::became_active(&resolved, &closed));
        let mut moved = open.clone();
        moved.move_to_customer("顾客-2", now);
        assert!(
            Ticket::became_active(&open, &moved),
            "an active ticket merged"
        );
        let mut moved = resolved.clone();
        moved.move_to_customer("顾客-2", now);
        assert!(
            !Ticket::became_active(&resolved, &moved),
            "an ended one merged"
        );
    }

    #[test]
    fn escalation_records_reason_and_time_once() {
        let mut t = ticket();
        let now = super::super::now();
        t.escalate("客户要求经理处理", now).unwrap();
        assert_eq!(t.status, TicketStatus::Escalated);
        assert_eq!(t.escalation_reason.as_deref(), Some("客户要求经理处理"));
        assert_eq!(t.escalated_at, Some(now));
        assert_eq!(
            t.escalate("again", now).unwrap_err().code,
            "already_escalated"
        );
        assert_eq!(ticket().escalate("  ", now).unwrap_err().kind.status(), 422);
    }

    #[test]
    fn every_change_moves_the_version() {
        let mut t = ticket();
        let now = super::super::now();
        t.apply(
            &TicketPatch {
                priority: Some(Priority::High),
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(t.version, 2);
        t.agent_replied(Some("alice"), now);
        assert_eq!(t.version, 3);
        assert_eq!(t.assignee.as_deref(), Some("alice"));
        assert_eq!(t.first_response_at, Some(now));
    }

    #[test]
    fn survey_is_sent_and_answered_once() {
        let mut t = ticket();
        let now = super::super::now();
        assert!(t.mark_survey_sent(now));
        assert!(!t.mark_survey_sent(now));
        t.status = TicketStatus::Closed;
        assert_eq!(t.rate(None, 7, None, now).unwrap_err().kind.status(), 422);
        t.rate(None, 5, Some("很好".into()), now).unwrap();
        assert_eq!(t.rate(None, 4, None, now).unwrap_err().kind.status(), 409);
        assert_eq!(t.survey.as_ref().unwrap().rating, Some(5));
    }

    #[test]
    fn keys_no_store_can_index_are_refused() {
        let long = "长".repeat(700);
        assert!(long.len() > 2048);
        let mut t = ticket();
        let e = t
            .apply(
                &TicketPatch {
                    status: Some(TicketStatus::Pending),
                    assignee: Some(Some(long.clone())),
                    ..Default::default()
                },
                super::super::now(),
            )
            .unwrap_err();
        assert_eq!((e.kind.status(), e.code), (422, "too_long"));
        assert_eq!(
            (t.status, t.version),
            (TicketStatus::Open, 1),
            "nothing applied"
        );
        let filter = TicketFilter {
            assignee: Some(long),
            ..Default::default()
        };
        assert_eq!(filter.check().unwrap_err().kind.status(), 422);
        let fits = "长".repeat(MAX_KEY_BYTES / 3);
        let filter = TicketFilter {
            assignee: Some(fits.clone()),
            customer_id: Some(fits),
            ..Default::default()
        };
        filter.check().unwrap();
    }

    #[test]
    fn only_a_closed_tickets_sent_survey_takes_its_customers_rating() {
        let now = super::super::now();
        let refused = |t: &mut Ticket, from: Option<&str>| {
            let e = t.rate(from, 5, None, now).unwrap_err();
            assert!(t.survey.as_ref().and_then(|s| s.rating).is_none());
            (e.kind.status(), e.code)
        };
        // Open, even with a survey marked: no survey to answer.
        let mut open = ticket();
        assert_eq!(refused(&mut open, None), (422, "survey_not_open"));
        open.mark_survey_sent(now);
        assert_eq!(refused(&mut open, Some("c1")), (422, "survey_not_open"));
        // Closed, but the survey has not gone out.
        let mut closed = ticket();
        closed
            .apply(
                &TicketPatch {
                    status: Some(TicketStatus::Closed),
                    ..Default::default()
                },
                now,
            )
            .unwrap();
        assert_eq!(refused(&mut closed, None), (422, "survey_not_sent"));
        // Sent, but pressed by another customer.
        closed.mark_survey_sent(now);
        assert_eq!(refused(&mut closed, Some("c2")), (403, "not_your_survey"));
        closed.rate(Some("c1"), 3, None, now).unwrap();
        assert_eq!(closed.survey.as_ref().unwrap().rating, Some(3));
    }

    #[test]
    fn close_detection_ignores_later_changes() {
        let mut open = ticket();
        let mut closed = open.clone();
        closed.status = TicketStatus::Closed;
        assert!(Ticket::became_closed(Some(&open), &closed));
        assert!(!Ticket::became_closed(Some(&closed), &closed));
        open.status = TicketStatus::Resolved;
        assert!(!Ticket::became_closed(None, &open));
    }

    #[test]
    fn a_ticket_folded_in_a_merge_is_closed_without_a_survey() {
        let now = super::super::now();
        let kept = ticket();
        let mut folded = ticket();
        let before = folded.clone();
        folded.fold_into(&kept, "c9", now).unwrap();
        assert_eq!(
            (folded.status, folded.customer_id.as_str()),
            (TicketStatus::Closed, "c9")
        );
        assert_eq!(folded.merged_into.as_deref(), Some(kept.id.as_str()));
        assert!(Ticket::became_closed(Some(&before), &folded));
        assert!(!Ticket::survey_due(Some(&before), &folded));
        let mut closed = before.clone();
        closed.status = TicketStatus::Closed;
        assert!(Ticket::survey_due(Some(&before), &closed));
        assert_eq!(
            folded.fold_into(&kept, "c9", now).unwrap_err().code,
            "illegal_status_change"
        );
    }

    #[test]
    fn a_customer_reopens_a_resolved_ticket_until_its_time_to_close() {
        let now = super::super::now();
        let resolve = |t: &mut Ticket| {
            t.apply(
                &TicketPatch {
                    status: Some(TicketStatus::Resolved),
                    ..Default::default()
                },
                now,
            )
            .unwrap();
            t.schedule_close(TicketStatus::Open, Some(chrono::Duration::days(4)), now);
        };
        let follow_up = |channel| {
            let inbound =
                super::super::InboundMessage::text(channel, "42".into(), "还是不行".into(), now);
            super::super::Message::inbound(&inbound, "c1")
        };
        let on_telegram = follow_up(Channel::Telegram);
        let mut t = ticket();
        t.assign("a1", AssignmentReason::Rule, now);
        resolve(&mut t);
        let version = t.version;
        let was = t.clone();
        assert!(t.reopen_for_customer(&on_telegram, true, now + chrono::Duration::days(1)));
        assert_eq!(t.status, TicketStatus::Open);
        assert_eq!((t.closes_at, t.closed_at), (None, None));
        assert_eq!(t.assignee.as_deref(), Some("a1"), "its agent keeps it");
        assert_eq!(
            t.channel,
            Channel::Telegram,
            "the conversation goes on where they wrote"
        );
        assert_eq!(t.version, version + 1);
        assert!(Ticket::became_active(&was, &t));
        assert_eq!(
            Ticket::reopened_now(Some(&was), &t),
            Some(on_telegram.id.as_str())
        );
        assert_eq!(Ticket::reopened_now(Some(&t), &t), None, "once per reopen");

        // Open, pending, escalated or closed: nothing to reopen.
        let before = t.clone();
        assert!(!t.reopen_for_customer(&on_telegram, true, now));
        assert_eq!(t, before);
        let mut closed = ticket();
        closed.status = TicketStatus::Closed;
        assert!(!closed.clone().reopen_for_customer(&on_telegram, true, now));

        // Its agent away: reopened for whoever can take it.
        let mut away = ticket();
        away.assign("a1", AssignmentReason::Rule, now);
        resolve(&mut away);
        assert!(away.reopen_for_customer(&on_telegram, false, now));
        assert_eq!(
            (away.assignee, away.assigned_at, away.assignment),
            (None, None, None)
        );

        // Its time to close by itself has come: the clock closes it, nothing reopens it.
        let mut due = ticket();
        resolve(&mut due);
        let before = due.clone();
        assert!(!due.reopen_for_customer(&on_telegram, true, now + chrono::Duration::days(4)));
        assert_eq!(due, before);

        // Resolved with no time to close (`close_resolved_after = "off"`, or resolved before
        // tickets closed by themselves): not reopened, however long ago.
        let mut kept = ticket();
        resolve(&mut kept);
        kept.closes_at = None;
        let before = kept.clone();
        assert!(!kept.reopen_for_customer(&on_telegram, true, now));
        assert_eq!(kept, before);
    }
}
