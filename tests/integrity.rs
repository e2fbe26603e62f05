//! Nothing lost, nothing doubled: the places where a crash, a failed write or a duplicate
//! delivery used to lose a customer's message or send something twice, each replayed on
//! both wirings (SQLite, and DynamoDB with SQS on the local emulator). A crash is a future
//! dropped mid-flight or a fault injected around the real adapter; a redelivery is the same
//! job handled again.

mod common;
mod wirings;

#[path = "aws_harness/fake_opensearch.rs"]
#[allow(dead_code)]
mod fake_opensearch;

use helpdesk_core::domain::{
    self, derived_id, Channel, ChannelIdentity, InboundMessage, Message, MessageKind, Ticket,
    TicketStatus,
};
use helpdesk_core::flow;
use helpdesk_core::jobs::TicketChange;
use helpdesk_core::ports::{Queue, QueueName, Store};
use helpdesk_core::rules::Rules;
use helpdesk_core::survey_token::SurveySigner;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use wirings::{Fault, Wiring};

fn intake(w: &Wiring) -> intake::Deps {
    intake::Deps {
        store: w.store.clone(),
        queue: w.queue.clone(),
        whatsapp: None,
        telegram: None,
        survey_signer: None,
    }
}

fn router(w: &Wiring) -> router::Deps {
    router::Deps {
        store: w.store.clone(),
        queue: w.queue.clone(),
        rules: Rules::default(),
    }
}

fn telegram_message(chat: &str, text: &str) -> InboundMessage {
    InboundMessage::text(Channel::Telegram, chat.into(), text.into(), domain::now())
}

/// A crash after intake queued the message and before it recorded the provider's id:
/// the provider's retry must queue it again (under the same id), not be answered
/// "duplicate" for a message nobody queued.
async fn a_crash_between_queueing_and_recording_loses_nothing(w: Wiring) {
    let deps = intake(&w);
    let key = format!("whatsapp:wamid.{}", domain::new_id());
    w.queue.inject(QueueName::Inbound, Fault::Stall);
    let crashed = tokio::time::timeout(
        Duration::from_millis(300),
        intake::accept(&deps, Some(&key), telegram_message("1", "你好")),
    )
    .await;
    assert!(crashed.is_err(), "the first delivery dies in the send");
    assert!(w.queue.sent(QueueName::Inbound).is_empty());

    let id = intake::accept(&deps, Some(&key), telegram_message("1", "你好"))
        .await
        .unwrap();
    let queued = w.queue.sent(QueueName::Inbound);
    assert_eq!(queued.len(), 1, "{}: the retry is queued", w.name);
    assert_eq!(queued[0]["id"], id.as_str());

    // Once recorded, every further delivery is a duplicate with the same id.
    for _ in 0..3 {
        let again = intake::accept(&deps, Some(&key), telegram_message("1", "你好"))
            .await
            .unwrap();
        assert_eq!(again, id);
    }
    assert_eq!(w.queue.sent(QueueName::Inbound).len(), 1);

    // A failed send records nothing either: the retry goes through.
    let key = format!("telegram:{}", domain::new_id());
    w.queue.inject(QueueName::Inbound, Fault::Fail);
    assert!(
        intake::accept(&deps, Some(&key), telegram_message("2", "hi"))
            .await
            .is_err()
    );
    intake::accept(&deps, Some(&key), telegram_message("2", "hi"))
        .await
        .unwrap();
    assert_eq!(w.queue.sent(QueueName::Inbound).len(), 2);
}
both!(a_crash_between_queueing_and_recording_loses_nothing);

/// A claim given back while another delivery looks at it is taken again, never read as a
/// duplicate with an empty id.
async fn a_released_claim_never_reads_as_an_empty_duplicate(w: Wiring) {
    let store = w.store.clone();
    let key = format!("k{}", domain::new_id());
    let releaser = {
        let store = store.clone();
        let key = key.clone();
        tokio::spawn(async move {
            for _ in 0..40 {
                if let Ok(Some(value)) = store.claim(&key, "first", 60).await {
                    assert!(!value.is_empty(), "an empty duplicate id");
                }
                store.release(&key).await.unwrap();
            }
        })
    };
    for _ in 0..40 {
        match store.claim(&key, "second", 60).await {
            Ok(Some(value)) => assert!(!value.is_empty(), "{}: an empty duplicate id", w.name),
            Ok(None) => store.release(&key).await.unwrap(),
            // Taken and given back under every attempt: a failure to try again later,
            // never a wrong answer.
            Err(e) => assert_eq!(e.kind.status(), 500, "{e}"),
        }
    }
    releaser.await.unwrap();
}
both!(a_released_claim_never_reads_as_an_empty_duplicate);

async fn customer(store: &dyn Store, chat: &str) -> domain::Customer {
    store
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Telegram,
                external_id: chat.into(),
            },
            None,
            Some("zh"),
        )
        .await
        .unwrap()
}

fn handoffs_queued(w: &Wiring, message_id: &str) -> usize {
    let handoff = derived_id(message_id, "handoff");
    w.queue
        .sent(QueueName::Outbound)
        .iter()
        .filter(|j| j["message_id"] == handoff.as_str())
        .count()
}

/// Puts `message` on a ticket as a hand-off does ([`flow::open_ticket`]: general skill,
/// normal priority, no suggestions), `active` being the customer's active ticket as seen.
async fn hand_off(
    store: &dyn Store,
    queue: &dyn Queue,
    customer: &domain::Customer,
    message: &Message,
    active: Option<Ticket>,
) -> helpdesk_core::Result<Ticket> {
    flow::open_ticket(
        store,
        queue,
        customer,
        message,
        active,
        flow::Opening::default(),
    )
    .await
}

/// Six messages of `customer` (`text` and a number), stored, then handed off at once, each
/// on its own task: the messages, and the ticket each was put on.
async fn hand_offs_at_once(
    w: &Wiring,
    customer: &domain::Customer,
    text: &str,
) -> (Vec<Message>, Vec<Ticket>) {
    let chat = &customer.identities[0].external_id;
    let mut messages = Vec::new();
    for i in 0..6 {
        let m = Message::inbound(
            &telegram_message(chat, &format!("{text} {i}")),
            &customer.id,
        );
        w.store.append_message(&m).await.unwrap();
        messages.push(m);
    }
    let mut tasks = Vec::new();
    for m in messages.clone() {
        let (store, queue, c) = (w.store.clone(), w.queue.clone(), customer.clone());
        tasks.push(tokio::spawn(async move {
            hand_off(store.as_ref(), queue.as_ref(), &c, &m, None).await
        }));
    }
    let mut tickets = Vec::new();
    for t in tasks {
        tickets.push(t.await.unwrap().unwrap());
    }
    (messages, tickets)
}

/// A ticket of `customer_id` opened on Telegram by `text`, not yet stored.
fn telegram_ticket(
    customer_id: &str,
    text: &str,
    priority: domain::Priority,
    skill: domain::Skill,
) -> Ticket {
    Ticket::open(
        domain::NewTicket {
            customer_id: customer_id.into(),
            channel: Channel::Telegram,
            subject: None,
            description: text.into(),
            priority,
            skill,
        },
        domain::now(),
    )
}

/// Moves `t` to `status` as an agent's change does (a legal move).
fn set_status(t: &mut Ticket, status: TicketStatus) -> helpdesk_core::Result<()> {
    t.apply(
        &domain::TicketPatch {
            status: Some(status),
            ..Default::default()
        },
        domain::now(),
    )
}

/// The change feed's function, with the rules built in and a test signing key.
fn survey_deps(w: &Wiring) -> survey::Deps {
    survey::Deps {
        rules: Arc::new(Rules::default()),
        store: w.store.clone(),
        queue: w.queue.clone(),
        signer: SurveySigner::new("secret".to_string()),
        public_url: "https://help.example.com".into(),
    }
}

/// Dispatch with Telegram on, sending to `fake`.
fn telegram_dispatch(w: &Wiring, fake: &common::provider::FakeProvider) -> dispatch::Deps {
    let channels = helpdesk_core::channels::ChannelsConfig::from_lookup(|name| match name {
        "TELEGRAM_SECRET_TOKEN" => Some("secret".into()),
        "TELEGRAM_BOT_TOKEN" => Some("123:bot".into()),
        "TELEGRAM_API_BASE" => Some(fake.base.clone()),
        "TELEGRAM_RATE_PER_CHAT" => Some("1000".into()),
        _ => None,
    })
    .unwrap();
    dispatch::Deps::new(w.store.clone(), &channels, reqwest::Client::new(), None)
}

/// The router made the ticket, then died before the hand-off went out (and, in the second
/// case, before the message was put on the ticket): the redelivered message finishes
/// opening its ticket, with its hand-off, instead of joining it in silence.
async fn a_crash_after_the_ticket_is_made_still_sends_the_handoff(w: Wiring) {
    let deps = router(&w);
    let store = w.store.as_ref();

    // The hand-off's send fails: the job fails and comes again.
    let chat = domain::new_id();
    let inbound = telegram_message(&chat, "我要投诉，转人工");
    w.queue.inject(QueueName::Outbound, Fault::Fail);
    assert!(router::handle(&deps, inbound.clone()).await.is_err());
    assert_eq!(handoffs_queued(&w, &inbound.id), 0);
    router::handle(&deps, inbound.clone()).await.unwrap();
    assert_eq!(handoffs_queued(&w, &inbound.id), 1, "{}", w.name);
    let c = customer(store, &chat).await;
    let ticket = store.active_ticket_for(&c.id).await.unwrap().unwrap();
    let stored = store.get_message(&inbound.id).await.unwrap().unwrap();
    assert_eq!(stored.ticket_id.as_deref(), Some(ticket.id.as_str()));

    // Dead right after the ticket was written: the state that crash leaves.
    let chat = domain::new_id();
    let inbound = telegram_message(&chat, "投诉");
    let c = customer(store, &chat).await;
    store
        .append_message(&Message::inbound(&inbound, &c.id))
        .await
        .unwrap();
    let mut ticket = Ticket::open(
        domain::NewTicket {
            customer_id: c.id.clone(),
            channel: Channel::Telegram,
            subject: None,
            description: inbound.text.clone(),
            priority: domain::Priority::Normal,
            skill: domain::Skill::General,
        },
        domain::now(),
    );
    ticket.opened_by = Some(inbound.id.clone());
    store.create_ticket(&ticket).await.unwrap();
    router::handle(&deps, inbound.clone()).await.unwrap();
    assert_eq!(handoffs_queued(&w, &inbound.id), 1, "{}", w.name);
    let handoff = store
        .get_message(&derived_id(&inbound.id, "handoff"))
        .await
        .unwrap()
        .expect("the hand-off is in the conversation");
    assert_eq!(handoff.ticket_id.as_deref(), Some(ticket.id.as_str()));
    assert_eq!(
        store
            .get_message(&inbound.id)
            .await
            .unwrap()
            .unwrap()
            .ticket_id
            .as_deref(),
        Some(ticket.id.as_str())
    );

    // A follow-up joins that ticket and sends no hand-off of its own.
    let follow_up = telegram_message(&chat, "还在吗");
    router::handle(&deps, follow_up.clone()).await.unwrap();
    assert_eq!(handoffs_queued(&w, &follow_up.id), 0);
    let joined = store.get_message(&follow_up.id).await.unwrap().unwrap();
    assert_eq!(joined.ticket_id.as_deref(), Some(ticket.id.as_str()));
}
both!(a_crash_after_the_ticket_is_made_still_sends_the_handoff);

/// Auto-reply's jobs for one customer run in parallel on AWS (a standard queue): hand-offs
/// of several messages at once make one ticket, one hand-off, and every message on it.
async fn hand_offs_at_once_make_one_ticket(w: Wiring) {
    let store = w.store.clone();
    let c = customer(store.as_ref(), &domain::new_id()).await;
    let (messages, tickets) = hand_offs_at_once(&w, &c, "问题").await;
    let mut ids: Vec<String> = tickets.into_iter().map(|t| t.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{}: one ticket, not {ids:?}", w.name);
    let page = store
        .list_tickets(
            &domain::TicketFilter {
                customer_id: Some(c.id.clone()),
                ..Default::default()
            },
            50,
            None,
        )
        .await
        .unwrap();
    // The customer index lags on DynamoDB; the ticket itself is read consistently.
    assert!(page.items.len() <= 1, "{}: {:?}", w.name, page.items);
    let handoffs: usize = messages.iter().map(|m| handoffs_queued(&w, &m.id)).sum();
    assert_eq!(handoffs, 1, "{}: one hand-off", w.name);
    for m in &messages {
        let stored = store.get_message(&m.id).await.unwrap().unwrap();
        assert_eq!(stored.ticket_id.as_deref(), Some(ids[0].as_str()));
    }
}
both!(hand_offs_at_once_make_one_ticket);

/// A follow-up read its customer's active ticket, and an agent closed that ticket before
/// the message joined it ("one more thing" as the agent closes): the message is not put on
/// the closed ticket, where no inbox shows it, but opens a new ticket with its hand-off;
/// the closed ticket is left as the agent left it. Handled again, it changes nothing more.
/// (Resolved rather than closed, the ticket is reopened: the next case.)
async fn a_follow_up_never_joins_a_ticket_that_ended_meanwhile(w: Wiring) {
    let store = w.store.as_ref();
    let chat = domain::new_id();
    let c = customer(store, &chat).await;
    let first = Message::inbound(&telegram_message(&chat, "我的订单没到"), &c.id);
    store.append_message(&first).await.unwrap();
    let old = hand_off(store, w.queue.as_ref(), &c, &first, None)
        .await
        .unwrap();
    let seen = store.active_ticket_for(&c.id).await.unwrap().unwrap();
    let (closed, _) = flow::update_ticket(store, &old.id, |t| {
        set_status(t, TicketStatus::Closed)?;
        Ok(true)
    })
    .await
    .unwrap();

    let follow_up = Message::inbound(&telegram_message(&chat, "谢谢，还有一个问题"), &c.id);
    store.append_message(&follow_up).await.unwrap();
    let new = hand_off(store, w.queue.as_ref(), &c, &follow_up, Some(seen))
        .await
        .unwrap();
    assert_ne!(new.id, old.id, "{}", w.name);
    assert_eq!(new.opened_by.as_deref(), Some(follow_up.id.as_str()));
    assert_eq!(handoffs_queued(&w, &follow_up.id), 1, "{}", w.name);
    // Handled again, as a redelivery is: it finishes what it opened, and opens nothing.
    let stored = store.get_message(&follow_up.id).await.unwrap().unwrap();
    assert_eq!(
        stored.ticket_id.as_deref(),
        Some(new.id.as_str()),
        "{}",
        w.name
    );
    flow::resume(store, w.queue.as_ref(), &c, &stored)
        .await
        .unwrap();
    assert_eq!(
        store.active_ticket_for(&c.id).await.unwrap().map(|t| t.id),
        Some(new.id.clone()),
        "{}",
        w.name
    );
    let left = store.get_ticket(&old.id).await.unwrap().unwrap();
    assert_eq!(
        (left.status, left.version),
        (TicketStatus::Closed, closed.version),
        "{}: the closed ticket is as the agent left it",
        w.name
    );
}
both!(a_follow_up_never_joins_a_ticket_that_ended_meanwhile);

/// Opens a ticket for `text` from a new Telegram customer through the router, and has an
/// agent resolve it (to close by itself in 4 days, as by default): the customer, their
/// ticket as resolved, and the first message.
async fn a_resolved_ticket(w: &Wiring, text: &str) -> (domain::Customer, Ticket, Message) {
    let store = w.store.as_ref();
    let chat = domain::new_id();
    let first = telegram_message(&chat, text);
    router::handle(&router(w), first.clone()).await.unwrap();
    let c = customer(store, &chat).await;
    let open = store.active_ticket_for(&c.id).await.unwrap().unwrap();
    let (resolved, _) = flow::update_ticket(store, &open.id, |t| {
        set_status(t, TicketStatus::Resolved)?;
        t.schedule_close(
            TicketStatus::Open,
            Some(chrono::Duration::days(4)),
            domain::now(),
        );
        Ok(true)
    })
    .await
    .unwrap();
    let first = store.get_message(&first.id).await.unwrap().unwrap();
    (c, resolved, first)
}

/// The customer writes again after their ticket was resolved: the follow-up reopens that
/// ticket (as Zendesk's solved tickets reopen on the requester's reply) and goes on it,
/// with no new ticket and no second hand-off, and the ticket no longer closes by itself.
/// The same follow-up delivered again changes nothing more. Once the ticket is closed, the
/// next message opens a new ticket, as before.
async fn a_follow_up_reopens_its_resolved_ticket(w: Wiring) {
    let store = w.store.as_ref();
    let deps = router(&w);
    let (c, resolved, _) = a_resolved_ticket(&w, "我要投诉，转人工").await;
    assert!(resolved.closes_at.is_some());

    let follow_up = telegram_message(&c.identities[0].external_id, "投诉：还是不行");
    router::handle(&deps, follow_up.clone()).await.unwrap();
    let reopened = store.get_ticket(&resolved.id).await.unwrap().unwrap();
    assert_eq!(reopened.status, TicketStatus::Open, "{}", w.name);
    assert_eq!(reopened.closes_at, None, "{}", w.name);
    assert_eq!(
        store.active_ticket_for(&c.id).await.unwrap().map(|t| t.id),
        Some(resolved.id.clone()),
        "{}",
        w.name
    );
    let on = store.get_message(&follow_up.id).await.unwrap().unwrap();
    assert_eq!(on.ticket_id.as_deref(), Some(resolved.id.as_str()));
    assert_eq!(handoffs_queued(&w, &follow_up.id), 0, "{}", w.name);

    router::handle(&deps, follow_up.clone()).await.unwrap();
    let again = store.get_ticket(&resolved.id).await.unwrap().unwrap();
    assert_eq!(again.version, reopened.version, "{}", w.name);
    let theirs = domain::TicketFilter {
        customer_id: Some(c.id.clone()),
        ..Default::default()
    };
    let listed = store.list_tickets(&theirs, 10, None).await.unwrap();
    assert_eq!(listed.items.len(), 1, "{}: {:?}", w.name, listed.items);

    // Closed, it stays closed: the next message opens a ticket of its own.
    flow::update_ticket(store, &resolved.id, |t| {
        set_status(t, TicketStatus::Closed)?;
        Ok(true)
    })
    .await
    .unwrap();
    let later = telegram_message(&c.identities[0].external_id, "投诉：新的问题");
    router::handle(&deps, later.clone()).await.unwrap();
    let new = store.active_ticket_for(&c.id).await.unwrap().unwrap();
    assert_ne!(new.id, resolved.id, "{}", w.name);
    assert_eq!(new.opened_by.as_deref(), Some(later.id.as_str()));
    assert_eq!(handoffs_queued(&w, &later.id), 1, "{}", w.name);
}
both!(a_follow_up_reopens_its_resolved_ticket);

/// Several follow-ups at once to a resolved ticket (auto-reply's jobs run in parallel on
/// AWS): one reopens it, the others join it; no new ticket, no hand-off, every message on
/// the reopened ticket.
async fn follow_ups_at_once_reopen_one_ticket(w: Wiring) {
    let store = w.store.clone();
    let (c, resolved, _) = a_resolved_ticket(&w, "我要投诉，转人工").await;
    let (messages, tickets) = hand_offs_at_once(&w, &c, "还有问题").await;
    for on in tickets {
        assert_eq!(on.id, resolved.id, "{}", w.name);
    }
    for m in &messages {
        let stored = store.get_message(&m.id).await.unwrap().unwrap();
        assert_eq!(stored.ticket_id.as_deref(), Some(resolved.id.as_str()));
        assert_eq!(handoffs_queued(&w, &m.id), 0, "{}", w.name);
    }
    let ticket = store.get_ticket(&resolved.id).await.unwrap().unwrap();
    assert_eq!(ticket.status, TicketStatus::Open, "{}", w.name);
}
both!(follow_ups_at_once_reopen_one_ticket);

/// Another message of customer `c` on `channel`, stored and put on a ticket as a hand-off
/// does ([`hand_off`]: it joins their active ticket, reopens a resolved one, or opens one);
/// returns the ticket and the stored message.
async fn hand_off_text(
    w: &Wiring,
    c: &domain::Customer,
    channel: Channel,
    text: &str,
) -> (Ticket, Message) {
    let inbound = InboundMessage::text(channel, "someone".into(), text.into(), domain::now());
    let m = Message::inbound(&inbound, &c.id);
    w.store.append_message(&m).await.unwrap();
    let on = hand_off(w.store.as_ref(), w.queue.as_ref(), c, &m, None)
        .await
        .unwrap();
    (on, m)
}

/// A reopened ticket goes back to its agent only if they take work now: set away (or no
/// longer configured, which sets them away), or a name with no profile, the ticket is
/// reopened with nobody on it, for the assignment to give it to someone who can. The conversation goes on where the
/// customer wrote: a follow-up on another channel (a customer merged across channels)
/// moves the ticket there, so the agent's reply reaches them.
async fn a_reopen_goes_to_an_available_agent_on_the_channel_the_customer_wrote_on(w: Wiring) {
    let store = w.store.as_ref();
    let (c, resolved, _) = a_resolved_ticket(&w, "我要投诉，转人工").await;
    let resolve_for = |agent: &'static str| {
        let id = resolved.id.clone();
        async move {
            flow::update_ticket(store, &id, |t| {
                t.apply(
                    &domain::TicketPatch {
                        status: Some(TicketStatus::Resolved),
                        assignee: Some(Some(agent.into())),
                        ..Default::default()
                    },
                    domain::now(),
                )?;
                t.schedule_close(
                    TicketStatus::Open,
                    Some(chrono::Duration::days(4)),
                    domain::now(),
                );
                Ok(true)
            })
            .await
            .unwrap()
        }
    };
    let mut amy = domain::AgentProfile::default_for("amy");
    store.put_agent(&amy).await.unwrap();
    resolve_for("amy").await;

    let (t, m) = hand_off_text(&w, &c, Channel::Webchat, "我换了网页聊天").await;
    assert_eq!(t.id, resolved.id, "{}", w.name);
    assert_eq!(
        (t.status, t.assignee.as_deref(), t.channel),
        (TicketStatus::Open, Some("amy"), Channel::Webchat),
        "{}: amy is available",
        w.name
    );
    assert_eq!(t.reopened_by.as_deref(), Some(m.id.as_str()));

    amy.available = false;
    store.put_agent(&amy).await.unwrap();
    resolve_for("amy").await;
    let (t, m) = hand_off_text(&w, &c, Channel::Telegram, "周末还在吗").await;
    let stored = store.get_ticket(&resolved.id).await.unwrap().unwrap();
    assert_eq!(t.id, resolved.id, "{}", w.name);
    assert_eq!(
        (stored.status, stored.assignee, stored.channel),
        (TicketStatus::Open, None, Channel::Telegram),
        "{}: amy is away",
        w.name
    );
    assert_eq!(stored.reopened_by.as_deref(), Some(m.id.as_str()));

    // A name with no profile (a mistyped assignee) takes no work either.
    resolve_for("amyy").await;
    hand_off_text(&w, &c, Channel::Telegram, "有人吗").await;
    let stored = store.get_ticket(&resolved.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.assignee),
        (TicketStatus::Open, None),
        "{}: nobody is amyy",
        w.name
    );
}
both!(a_reopen_goes_to_an_available_agent_on_the_channel_the_customer_wrote_on);

/// Which resolved ticket a follow-up reopens, if any: not one that a merge folded into
/// another (the conversation went on there: the ticket it was folded into is reopened),
/// and not one with no time to close (`close_resolved_after = "off"`, or resolved before
/// tickets closed by themselves): the follow-up opens a new ticket, with its hand-off. A
/// message that opened the resolved ticket (its first run stopped before its hand-off)
/// finishes opening it and reopens nothing.
async fn a_follow_up_reopens_only_the_ticket_its_conversation_is_on(w: Wiring) {
    let store = w.store.as_ref();
    // Folded since: a newer ticket of the customer, closed into the resolved one.
    let (c, kept, _) = a_resolved_ticket(&w, "我要投诉，转人工").await;
    let mut folded = telegram_ticket(
        &c.id,
        "另一个号码的问题",
        domain::Priority::Normal,
        domain::Skill::General,
    );
    folded.fold_into(&kept, &c.id, domain::now()).unwrap();
    store.create_ticket(&folded).await.unwrap();
    let (t, m) = hand_off_text(&w, &c, Channel::Telegram, "投诉：还是不行").await;
    assert_eq!(t.id, kept.id, "{}", w.name);
    assert_eq!(handoffs_queued(&w, &m.id), 0, "{}", w.name);

    // No time to close: a new ticket.
    let (c, resolved, _) = a_resolved_ticket(&w, "我要投诉，转人工").await;
    flow::update_ticket(store, &resolved.id, |t| {
        t.closes_at = None;
        Ok(true)
    })
    .await
    .unwrap();
    let (t, m) = hand_off_text(&w, &c, Channel::Telegram, "投诉：一年后又坏了").await;
    assert_ne!(t.id, resolved.id, "{}", w.name);
    assert_eq!(t.opened_by.as_deref(), Some(m.id.as_str()));
    assert_eq!(handoffs_queued(&w, &m.id), 1, "{}", w.name);
    let left = store.get_ticket(&resolved.id).await.unwrap().unwrap();
    assert_eq!(left.status, TicketStatus::Resolved, "{}", w.name);

    // The message that opened it, seen again after an agent resolved it.
    let chat = domain::new_id();
    let c = customer(store, &chat).await;
    let first = Message::inbound(&telegram_message(&chat, "投诉"), &c.id);
    store.append_message(&first).await.unwrap();
    let mut opened = telegram_ticket(
        &c.id,
        "投诉",
        domain::Priority::Normal,
        domain::Skill::General,
    );
    opened.opened_by = Some(first.id.clone());
    set_status(&mut opened, TicketStatus::Resolved).unwrap();
    opened.schedule_close(
        TicketStatus::Open,
        Some(chrono::Duration::days(4)),
        domain::now(),
    );
    store.create_ticket(&opened).await.unwrap();
    let on = hand_off(store, w.queue.as_ref(), &c, &first, None)
        .await
        .unwrap();
    assert_eq!(on.id, opened.id, "{}", w.name);
    let left = store.get_ticket(&opened.id).await.unwrap().unwrap();
    assert_eq!(
        (left.status, left.version),
        (TicketStatus::Resolved, opened.version),
        "{}: not reopened by its own first message",
        w.name
    );
    let stored = store.get_message(&first.id).await.unwrap().unwrap();
    assert_eq!(stored.ticket_id.as_deref(), Some(opened.id.as_str()));
    assert_eq!(handoffs_queued(&w, &first.id), 1, "{}", w.name);
}
both!(a_follow_up_reopens_only_the_ticket_its_conversation_is_on);

/// Of a customer's tickets waiting to close, a follow-up reopens the one resolved last, the
/// conversation last worked on, not the one made last: here an agent reopened the older
/// ticket and resolved it again after the newer one was resolved. The newer one is left as
/// it was. And with the newest closed, a follow-up still reopens an older one waiting to
/// close, where it used to open a new ticket.
async fn a_follow_up_reopens_the_ticket_resolved_last(w: Wiring) {
    let store = w.store.as_ref();
    let (c, older, _) = a_resolved_ticket(&w, "我要投诉，转人工").await;
    let mut newer = telegram_ticket(
        &c.id,
        "发票抬头开错了",
        domain::Priority::Normal,
        domain::Skill::General,
    );
    set_status(&mut newer, TicketStatus::Resolved).unwrap();
    newer.closes_at = Some(domain::now() + chrono::Duration::days(1));
    store.create_ticket(&newer).await.unwrap();
    flow::update_ticket(store, &older.id, |t| {
        t.closes_at = Some(domain::now() + chrono::Duration::days(3));
        Ok(true)
    })
    .await
    .unwrap();
    let (t, m) = hand_off_text(&w, &c, Channel::Telegram, "投诉：还是不行").await;
    assert_eq!(t.id, older.id, "{}", w.name);
    assert_eq!(t.status, TicketStatus::Open, "{}", w.name);
    assert_eq!(handoffs_queued(&w, &m.id), 0, "{}", w.name);
    let left = store.get_ticket(&newer.id).await.unwrap().unwrap();
    assert_eq!(
        (left.status, left.version),
        (TicketStatus::Resolved, newer.version),
        "{}",
        w.name
    );

    // The newest closed, an older one waiting to close: the older one is reopened.
    let (c, older, _) = a_resolved_ticket(&w, "我要投诉，转人工").await;
    let mut closed = telegram_ticket(
        &c.id,
        "旧号码的问题",
        domain::Priority::Normal,
        domain::Skill::General,
    );
    set_status(&mut closed, TicketStatus::Resolved).unwrap();
    set_status(&mut closed, TicketStatus::Closed).unwrap();
    store.create_ticket(&closed).await.unwrap();
    let (t, m) = hand_off_text(&w, &c, Channel::Telegram, "投诉：又坏了").await;
    assert_eq!(t.id, older.id, "{}", w.name);
    assert_eq!(handoffs_queued(&w, &m.id), 0, "{}", w.name);
}
both!(a_follow_up_reopens_the_ticket_resolved_last);

/// A customer whose questions the knowledge base answered asks for a person: the agent of
/// the ticket their message opens is shown the exchange just before it (their questions and
/// the answers, in order), so they read what was said, not only "转人工". Not what is on an
/// earlier ticket, nor what is older than a day, nor another channel's, nor a question with
/// no answer (its job may be deciding it still). Nothing moves: each message keeps its one
/// outcome.
async fn the_exchange_before_a_ticket_is_shown_to_its_agent(w: Wiring) {
    let store = w.store.as_ref();
    let chat = domain::new_id();
    let c = customer(store, &chat).await;
    let ago = |minutes: i64| domain::now() - chrono::Duration::minutes(minutes);
    let say = |text: &str, at, channel| {
        let mut m = Message::inbound(&telegram_message(&chat, text), &c.id);
        m.created_at = at;
        m.channel = channel;
        m
    };
    let answer = |to: &Message, text: &str| {
        let mut m = Message::outbound(
            &to.customer_id,
            Channel::Telegram,
            domain::MessageKind::AutoReply,
            text.to_string(),
            None,
        );
        m.id = derived_id(&to.id, "auto_reply");
        m.created_at = to.created_at + chrono::Duration::seconds(1);
        m
    };
    let texts = |ms: Vec<Message>| ms.into_iter().map(|m| m.text).collect::<Vec<_>>();
    // Something asked before an earlier ticket's last words; then today's exchange.
    let old = say("更早的问题", ago(60), Channel::Telegram);
    let old_answer = answer(&old, "更早的回答");
    let mut on_earlier = say("上一个工单的话", ago(30), Channel::Telegram);
    let mut closed = telegram_ticket(
        &c.id,
        "上一个工单",
        domain::Priority::Normal,
        domain::Skill::General,
    );
    set_status(&mut closed, TicketStatus::Closed).unwrap();
    store.create_ticket(&closed).await.unwrap();
    on_earlier.ticket_id = Some(closed.id.clone());
    let question = say("怎么重置密码？", ago(5), Channel::Telegram);
    let reply = answer(&question, "在登录页点“忘记密码”。");
    let elsewhere = say("网页上问的", ago(4), Channel::Webchat);
    let unanswered = say("还是收不到邮件", ago(3), Channel::Telegram);
    for m in [
        &old,
        &old_answer,
        &on_earlier,
        &question,
        &reply,
        &elsewhere,
        &unanswered,
    ] {
        store.append_message(m).await.unwrap();
    }
    let (t, _) = hand_off_text(&w, &c, Channel::Telegram, "转人工").await;
    assert_ne!(t.id, closed.id);
    assert_eq!(
        texts(flow::exchange_before(store, &t).await.unwrap()),
        ["怎么重置密码？", "在登录页点“忘记密码”。"],
        "{}",
        w.name
    );
    for m in [&question, &reply, &unanswered] {
        let stored = store.get_message(&m.id).await.unwrap().unwrap();
        assert_eq!(stored.ticket_id, None, "{}: {} stays", w.name, m.text);
    }

    // With no earlier ticket, the exchange goes back a day at most.
    let chat = domain::new_id();
    let c = customer(store, &chat).await;
    let mut stale = Message::inbound(&telegram_message(&chat, "昨天之前问的"), &c.id);
    stale.created_at = ago(25 * 60);
    let mut fresh = Message::inbound(&telegram_message(&chat, "今天问的"), &c.id);
    fresh.created_at = ago(10);
    let (stale_answer, fresh_answer) = (answer(&stale, "旧的回答"), answer(&fresh, "新的回答"));
    for m in [&stale, &stale_answer, &fresh, &fresh_answer] {
        store.append_message(m).await.unwrap();
    }
    let (t, _) = hand_off_text(&w, &c, Channel::Telegram, "转人工").await;
    assert_eq!(
        texts(flow::exchange_before(store, &t).await.unwrap()),
        ["今天问的", "新的回答"],
        "{}",
        w.name
    );
    // A ticket an agent made by hand has none.
    let mut by_hand = t.clone();
    by_hand.opened_by = None;
    assert!(flow::exchange_before(store, &by_hand)
        .await
        .unwrap()
        .is_empty());
}
both!(the_exchange_before_a_ticket_is_shown_to_its_agent);

/// Cut short right after the reopen was written, before the follow-up was put on the
/// ticket: the redelivered message finds the ticket active and joins it, once.
async fn a_crash_after_the_reopen_still_puts_the_follow_up_on_it(w: Wiring) {
    let store = w.store.as_ref();
    let (c, resolved, _) = a_resolved_ticket(&w, "我要投诉，转人工").await;
    let follow_up = telegram_message(&c.identities[0].external_id, "投诉：又坏了");
    let stored = Message::inbound(&follow_up, &c.id);
    store.append_message(&stored).await.unwrap();
    let (reopened, _) = flow::update_ticket(store, &resolved.id, |t| {
        Ok(t.reopen_for_customer(&stored, true, domain::now()))
    })
    .await
    .unwrap();
    router::handle(&router(&w), follow_up.clone())
        .await
        .unwrap();
    let on = store.get_message(&follow_up.id).await.unwrap().unwrap();
    assert_eq!(
        on.ticket_id.as_deref(),
        Some(resolved.id.as_str()),
        "{}",
        w.name
    );
    assert_eq!(handoffs_queued(&w, &follow_up.id), 0, "{}", w.name);
    let ticket = store.get_ticket(&resolved.id).await.unwrap().unwrap();
    assert_eq!(
        (ticket.status, ticket.version),
        (TicketStatus::Open, reopened.version + 1),
        "{}: joined once",
        w.name
    );
}
both!(a_crash_after_the_reopen_still_puts_the_follow_up_on_it);

/// The survey is marked, its send fails, the customer rates (the link may already be out
/// from an earlier try), the change is delivered again: the redelivery keeps the rating and
/// the comment.
async fn a_failed_survey_mark_never_erases_a_rating(w: Wiring) {
    let store = w.store.clone();
    let chat = domain::new_id();
    let c = customer(store.as_ref(), &chat).await;
    let mut ticket = telegram_ticket(
        &c.id,
        "退款",
        domain::Priority::Normal,
        domain::Skill::Billing,
    );
    store.create_ticket(&ticket).await.unwrap();
    let old = ticket.clone();
    set_status(&mut ticket, TicketStatus::Closed).unwrap();
    store.update_ticket(&ticket, old.version).await.unwrap();
    let change = TicketChange {
        old: Some(old),
        new: ticket.clone(),
    };
    let deps = survey_deps(&w);
    // The survey is marked sent, then its job fails: the change will come again.
    w.queue.inject(QueueName::Outbound, Fault::Fail);
    assert!(survey::handle_change(&deps, change.clone()).await.is_err());
    flow::update_ticket(store.as_ref(), &ticket.id, |t| {
        t.rate(None, 5, Some("很满意".into()), domain::now())?;
        Ok(true)
    })
    .await
    .unwrap();
    survey::handle_change(&deps, change).await.unwrap();
    let stored = store.get_ticket(&ticket.id).await.unwrap().unwrap();
    let survey = stored.survey.expect("a survey record");
    assert!(survey.sent_at.is_some(), "{}: marked sent", w.name);
    assert_eq!(survey.rating, Some(5), "{}: the rating survives", w.name);
    assert_eq!(survey.comment.as_deref(), Some("很满意"));
}
both!(a_failed_survey_mark_never_erases_a_rating);

/// The escalation is saved, and the process dies before any notice is queued: the change
/// feed (written with the change) queues it, once per escalation however often the change
/// is delivered, under one id that dispatch posts once.
async fn an_escalation_notifies_through_the_change_feed(w: Wiring) {
    let store = w.store.clone();
    let chat = domain::new_id();
    let c = customer(store.as_ref(), &chat).await;
    let ticket = telegram_ticket(
        &c.id,
        "账户被盗",
        domain::Priority::High,
        domain::Skill::Technical,
    );
    store.create_ticket(&ticket).await.unwrap();
    let (escalated, _) = flow::update_ticket(store.as_ref(), &ticket.id, |t| {
        t.escalate_by("alice", "customer threatens to leave", domain::now())?;
        Ok(true)
    })
    .await
    .unwrap();
    let change = TicketChange {
        old: Some(ticket.clone()),
        new: escalated.clone(),
    };
    let deps = survey_deps(&w);
    survey::handle_change(&deps, change.clone()).await.unwrap();
    survey::handle_change(&deps, change).await.unwrap();
    let notices: Vec<_> = w
        .queue
        .sent(QueueName::Outbound)
        .into_iter()
        .filter(|j| j["type"] == "supervisor")
        .collect();
    assert_eq!(notices.len(), 2, "{}: queued on each delivery", w.name);
    assert_eq!(notices[0], notices[1], "the same notice, so one post");
    assert_eq!(notices[0]["escalated_by"], "alice");
    assert_eq!(notices[0]["reason"], "customer threatens to leave");
    // A later change of the escalated ticket is no new escalation.
    let (later, _) = flow::update_ticket(store.as_ref(), &ticket.id, |t| {
        t.agent_replied(Some("bob"), domain::now());
        Ok(true)
    })
    .await
    .unwrap();
    survey::handle_change(
        &deps,
        TicketChange {
            old: Some(escalated),
            new: later,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        w.queue
            .sent(QueueName::Outbound)
            .iter()
            .filter(|j| j["type"] == "supervisor")
            .count(),
        2
    );
}
both!(an_escalation_notifies_through_the_change_feed);

/// Twenty retries of one agent reply with one `Idempotency-Key`, all at once, store one
/// message and answer the first one's id every time.
async fn one_idempotency_key_one_reply(w: Wiring) {
    let store = w.store.clone();
    let chat = domain::new_id();
    let c = customer(store.as_ref(), &chat).await;
    let ticket = telegram_ticket(
        &c.id,
        "发票",
        domain::Priority::Normal,
        domain::Skill::Billing,
    );
    store.create_ticket(&ticket).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (store, queue, ticket) = (store.clone(), w.queue.clone(), ticket.clone());
        tasks.push(tokio::spawn(async move {
            let id = flow::idempotent_id(
                store.as_ref(),
                "replies:alice",
                Some("key-1"),
                domain::new_id(),
            )
            .await?;
            flow::agent_reply(
                store.as_ref(),
                queue.as_ref(),
                &ticket,
                "alice",
                true,
                "已为您开具".into(),
                id,
            )
            .await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{}: one message id", w.name);
    let replies: Vec<Message> = store
        .ticket_messages(&ticket.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::AgentReply)
        .collect();
    assert_eq!(replies.len(), 1, "{}: one reply stored", w.name);
    let stored = store.get_ticket(&ticket.id).await.unwrap().unwrap();
    assert!(stored.first_response_at.is_some());
    // Without a key, each request is its own reply.
    let fresh = flow::idempotent_id(store.as_ref(), "replies:alice", None, "x".into())
        .await
        .unwrap();
    assert_eq!(fresh, "x");
    let _ = Arc::clone(&store);
}
both!(one_idempotency_key_one_reply);

/// An agent's reply cut short after the message was stored, before the ticket heard of it:
/// the retry under the same key still ends the customer's wait for a next reply, or its
/// SLA target would run on (and breach) for a customer who was answered. A retry after the
/// customer wrote again ends nothing: that message was not answered.
async fn a_reply_cut_short_still_ends_the_customers_wait(w: Wiring) {
    let store = w.store.as_ref();
    let c = customer(store, &domain::new_id()).await;
    let mut ticket = telegram_ticket(
        &c.id,
        "发票抬头错了",
        domain::Priority::Normal,
        domain::Skill::Billing,
    );
    ticket.agent_replied(Some("alice"), domain::now());
    ticket.customer_replied(domain::now(), domain::now());
    assert!(ticket.awaiting_reply_since.is_some());
    store.create_ticket(&ticket).await.unwrap();
    // Times are kept to the millisecond: each step in a millisecond of its own, so that
    // which came first is never a tie on a fast machine.
    let tick = || tokio::time::sleep(std::time::Duration::from_millis(3));
    tick().await;
    let id = domain::new_id();
    // The first run stored the reply and stopped.
    let mut cut = Message::outbound(
        &c.id,
        Channel::Telegram,
        MessageKind::AgentReply,
        "已经改好了".into(),
        Some(ticket.id.clone()),
    );
    cut.id = id.clone();
    cut.author = Some("alice".into());
    assert!(store.append_message(&cut).await.unwrap());
    let sent = flow::agent_reply(
        store,
        w.queue.as_ref(),
        &ticket,
        "alice",
        true,
        "已经改好了".into(),
        id,
    )
    .await
    .unwrap();
    assert_eq!(sent.id, cut.id);
    let stored = store.get_ticket(&ticket.id).await.unwrap().unwrap();
    assert_eq!(stored.awaiting_reply_since, None, "{}", w.name);

    // The customer read it and wrote again; the agent, whose answer was lost, sends the
    // same reply again under its key: nothing new is sent, so the new wait goes on.
    tick().await;
    let inbound = InboundMessage::text(
        Channel::Telegram,
        c.id.clone(),
        "还是不对".into(),
        domain::now(),
    );
    let follow_up = Message::inbound(&inbound, &c.id);
    store.append_message(&follow_up).await.unwrap();
    let joined = flow::join_ticket(store, &stored, &follow_up)
        .await
        .unwrap()
        .expect("joined");
    let waiting = joined.awaiting_reply_since;
    assert!(waiting.is_some());
    flow::agent_reply(
        store,
        w.queue.as_ref(),
        &joined,
        "alice",
        true,
        "已经改好了".into(),
        cut.id.clone(),
    )
    .await
    .unwrap();
    let after = store.get_ticket(&ticket.id).await.unwrap().unwrap();
    assert_eq!(after.awaiting_reply_since, waiting, "{}", w.name);
}
both!(a_reply_cut_short_still_ends_the_customers_wait);

/// A text split in three for Telegram, whose second part is refused for now: the retry
/// sends the second and third parts only, and the first is not sent again.
async fn a_split_telegram_text_resends_only_its_unsent_parts(w: Wiring) {
    use common::provider::{FakeProvider, Plan};
    use helpdesk_core::domain::OutboundMessage;
    let fake = FakeProvider::start().await;
    let deps = telegram_dispatch(&w, &fake);
    let chat = format!("{}", rand::random::<u32>());
    let c = customer(w.store.as_ref(), &chat).await;
    let text: String = ["甲", "乙", "丙"].iter().map(|c| c.repeat(4000)).collect();
    let message = Message::outbound(
        &c.id,
        Channel::Telegram,
        MessageKind::AgentReply,
        text,
        None,
    );
    w.store.append_message(&message).await.unwrap();
    let job = OutboundMessage::Customer {
        message_id: message.id.clone(),
    };
    // The first part goes; the second meets a wait longer than is waited in place.
    fake.plan([
        Plan::Ok,
        Plan::Fail(
            429,
            serde_json::json!({"ok": false, "error_code": 429,
        "description": "Too Many Requests: retry after 300", "parameters": {"retry_after": 300}}),
        ),
    ]);
    let throttled = dispatch::handle(&deps, job.clone()).await.unwrap_err();
    assert_eq!(
        helpdesk_core::jobs::retry_after_secs(&throttled),
        Some(300),
        "{}: the job goes back to the queue for as long as Telegram asked",
        w.name
    );
    assert_eq!(fake.sent().len(), 1);
    dispatch::handle(&deps, job.clone()).await.unwrap();
    let texts: Vec<String> = fake
        .sent()
        .iter()
        .map(|s| {
            s.body["text"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(1)
                .collect()
        })
        .collect();
    assert_eq!(
        texts,
        ["甲", "乙", "丙"],
        "{}: each part once, in order",
        w.name
    );
    let stored = w.store.get_message(&message.id).await.unwrap().unwrap();
    assert_eq!(stored.status, Some(domain::DeliveryStatus::Sent));
    // Sent: a third delivery of the job sends nothing.
    dispatch::handle(&deps, job).await.unwrap();
    assert_eq!(fake.sent().len(), 3);
}
both!(a_split_telegram_text_resends_only_its_unsent_parts);

/// A text split in two for WhatsApp, whose second part fails (a 500, three times over, so
/// the job goes back to the queue): the retry sends the second part only. Before, WhatsApp
/// kept no record of its parts, and the customer got the first part twice.
async fn a_split_whatsapp_text_resends_only_its_unsent_parts(w: Wiring) {
    use common::provider::{FakeProvider, Plan};
    use helpdesk_core::domain::OutboundMessage;
    let fake = FakeProvider::start().await;
    let wa_base = format!("{}/v21.0", fake.base);
    let channels = helpdesk_core::channels::ChannelsConfig::from_lookup(|name| {
        let v = match name {
            "WHATSAPP_APP_SECRET" => "app-secret",
            "WHATSAPP_VERIFY_TOKEN" => "verify",
            "WHATSAPP_ACCESS_TOKEN" => "token",
            "WHATSAPP_PHONE_NUMBER_ID" => "1234",
            "WHATSAPP_API_BASE" => wa_base.as_str(),
            _ => return None,
        };
        Some(v.to_string())
    })
    .unwrap();
    let deps = dispatch::Deps::new(w.store.clone(), &channels, reqwest::Client::new(), None);
    let store = w.store.as_ref();
    let phone = format!("86{}", rand::random::<u32>());
    let c = store
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Whatsapp,
                external_id: phone.clone(),
            },
            None,
            Some("zh"),
        )
        .await
        .unwrap();
    // The customer wrote a minute ago: inside WhatsApp's window, so the text goes as text.
    let asked = InboundMessage::text(
        Channel::Whatsapp,
        phone.clone(),
        "怎么退货".into(),
        domain::now(),
    );
    store
        .append_message(&Message::inbound(&asked, &c.id))
        .await
        .unwrap();
    let text = format!("{}{}", "退".repeat(4096), "货".repeat(100));
    let message = Message::outbound(
        &c.id,
        Channel::Whatsapp,
        MessageKind::AgentReply,
        text,
        None,
    );
    store.append_message(&message).await.unwrap();
    let job = OutboundMessage::Customer {
        message_id: message.id.clone(),
    };
    let failed = json!({"error": {"message": "Service temporarily unavailable", "code": 2}});
    fake.plan([
        Plan::Ok,
        Plan::Fail(500, failed.clone()),
        Plan::Fail(500, failed.clone()),
        Plan::Fail(500, failed),
    ]);
    assert!(dispatch::handle(&deps, job.clone()).await.is_err());
    assert_eq!(fake.sent().len(), 1);
    dispatch::handle(&deps, job.clone()).await.unwrap();
    let firsts: Vec<String> = fake
        .sent()
        .iter()
        .map(|s| {
            s.body["text"]["body"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(1)
                .collect()
        })
        .collect();
    assert_eq!(firsts, ["退", "货"], "{}: each part once", w.name);
    let stored = store.get_message(&message.id).await.unwrap().unwrap();
    assert_eq!(
        stored.status,
        Some(domain::DeliveryStatus::Sent),
        "{}",
        w.name
    );
    assert_eq!(
        stored.provider_message_id.as_deref(),
        Some("wamid.out.1"),
        "{}: the first part's id",
        w.name
    );
    dispatch::handle(&deps, job).await.unwrap();
    assert_eq!(
        fake.sent().len(),
        2,
        "{}: a third delivery sends nothing",
        w.name
    );
}
both!(a_split_whatsapp_text_resends_only_its_unsent_parts);

/// What was written under a customer merged away after the merge moved their messages (an
/// agent's reply to a ticket read before the merge, a close seen after it) reaches the
/// customer that stays, at the Telegram chat that came with the merge: the reply is sent
/// once, and the close's survey is written to the customer that stays. Before, both failed
/// for an unknown customer until their jobs were dead letters.
async fn replies_and_surveys_of_a_customer_merged_away_reach_the_one_that_stays(w: Wiring) {
    use common::provider::FakeProvider;
    use helpdesk_core::domain::{MergePlan, OutboundMessage};
    let fake = FakeProvider::start().await;
    let deps = telegram_dispatch(&w, &fake);
    let store = w.store.as_ref();
    let into = store
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Whatsapp,
                external_id: format!("86{}", rand::random::<u32>()),
            },
            None,
            Some("zh"),
        )
        .await
        .unwrap();
    let chat = format!("{}", rand::random::<u32>());
    let from = customer(store, &chat).await;
    let mut ticket = telegram_ticket(
        &from.id,
        "发票",
        domain::Priority::Normal,
        domain::Skill::Billing,
    );
    store.create_ticket(&ticket).await.unwrap();
    flow::run_merge(
        store,
        &MergePlan::new(&into.id, &from.id, "alice"),
        usize::MAX,
    )
    .await
    .unwrap();
    assert!(store.get_customer(&from.id).await.unwrap().is_none());

    let reply = Message::outbound(
        &from.id,
        Channel::Telegram,
        MessageKind::AgentReply,
        "发票已经开好了".into(),
        Some(ticket.id.clone()),
    );
    store.append_message(&reply).await.unwrap();
    let job = OutboundMessage::Customer {
        message_id: reply.id.clone(),
    };
    dispatch::handle(&deps, job.clone()).await.unwrap();
    dispatch::handle(&deps, job).await.unwrap();
    let sent = fake.sent();
    assert_eq!(sent.len(), 1, "{}: sent once", w.name);
    assert_eq!(sent[0].body["chat_id"].to_string().trim_matches('"'), chat);
    let stored = store.get_message(&reply.id).await.unwrap().unwrap();
    assert_eq!(
        stored.status,
        Some(domain::DeliveryStatus::Sent),
        "{}",
        w.name
    );

    // The close, as a change read before the merge moved the ticket.
    let old = ticket.clone();
    set_status(&mut ticket, TicketStatus::Closed).unwrap();
    let survey_deps = survey_deps(&w);
    let moved = store.get_ticket(&ticket.id).await.unwrap().unwrap();
    flow::update_ticket(store, &ticket.id, |t| {
        set_status(t, TicketStatus::Closed)?;
        Ok(true)
    })
    .await
    .unwrap();
    assert_eq!(
        moved.customer_id, into.id,
        "{}: the merge moved the ticket",
        w.name
    );
    survey::handle_change(
        &survey_deps,
        TicketChange {
            old: Some(old),
            new: ticket.clone(),
        },
    )
    .await
    .unwrap();
    let survey = store
        .get_message(&derived_id(&ticket.id, "survey"))
        .await
        .unwrap()
        .expect("the survey is written");
    assert_eq!(survey.customer_id, into.id, "{}", w.name);
}
both!(replies_and_surveys_of_a_customer_merged_away_reach_the_one_that_stays);

/// A merge too big for one request: `POST /customers/{id}/merge` answers 202 with the
/// merge's id and queues its first round; the router runs the rounds, each queueing the
/// next, and a round delivered twice changes nothing. In the end everything of the customer
/// that went is with the one that stays.
async fn a_big_merge_goes_on_as_a_job_and_finishes(w: Wiring) {
    use helpdesk_core::jobs::{decode, InboundJob};
    let store = w.store.clone();
    let into = customer(store.as_ref(), &domain::new_id()).await;
    let from = customer(store.as_ref(), &domain::new_id()).await;
    // Ten pages of conversation: more than a request moves.
    for i in 0..250 {
        let m = Message::inbound(
            &telegram_message(&from.identities[0].external_id, &format!("消息 {i}")),
            &from.id,
        );
        store.append_message(&m).await.unwrap();
    }
    let deps = Arc::new(tickets::Deps {
        store: store.clone(),
        queue: w.queue.clone(),
        knowledge: Arc::new(helpdesk_core::adapters::TantivyIndex::in_memory().unwrap()),
        agents: tickets::Agents::parse(Some("admin-token"), None).unwrap(),
        threshold: 0.5,
        auto_assign: false,
        close_resolved_after: None,
        zone: helpdesk_core::domain::hours::Tz::UTC,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, tickets::router(deps)).await.unwrap() });
    let answer = reqwest::Client::new()
        .post(format!("{base}/customers/{}/merge", into.id))
        .bearer_auth("admin-token")
        .json(&serde_json::json!({"from": from.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202, "{}", w.name);
    let body: serde_json::Value = answer.json().await.unwrap();
    let merge_id = body["merge_id"].as_str().unwrap().to_string();
    assert_eq!(body["status"], "running");

    let deps = router(&w);
    let mut rounds = 0;
    loop {
        let queued = w.queue.sent(QueueName::Inbound);
        w.queue.forget();
        let Some(job) = queued.last() else { break };
        assert_eq!(job["merge"]["id"], merge_id.as_str());
        rounds += 1;
        assert!(rounds < 20, "{}: the merge never finished", w.name);
        let job: InboundJob = decode(&job.to_string()).unwrap();
        // Delivered twice: the second copy goes on from where the first left it.
        router::handle_job(&deps, job.clone()).await.unwrap();
        router::handle_job(&deps, job).await.unwrap();
    }
    assert!(rounds >= 1);
    assert!(
        store.get_customer(&from.id).await.unwrap().is_none(),
        "{}",
        w.name
    );
    let merged = store.get_customer(&into.id).await.unwrap().unwrap();
    assert_eq!(merged.identities.len(), 2);
    let moved = store
        .customer_messages(&into.id, Channel::Telegram, None, 500)
        .await
        .unwrap();
    assert_eq!(moved.len(), 250, "{}", w.name);
}
both!(a_big_merge_goes_on_as_a_job_and_finishes);

/// An agent's reply without an `Idempotency-Key` whose queue send fails is stored and left
/// queued (the agent got a 500, and a retry makes a reply of its own): the sweep queues it
/// again once it is older than the grace period, and leaves alone what is younger, or sent.
async fn a_message_left_queued_is_queued_again_after_the_grace_period(w: Wiring) {
    let store = w.store.clone();
    let c = customer(store.as_ref(), &domain::new_id()).await;
    let ticket = telegram_ticket(
        &c.id,
        "发票",
        domain::Priority::Normal,
        domain::Skill::Billing,
    );
    store.create_ticket(&ticket).await.unwrap();
    w.queue.inject(QueueName::Outbound, Fault::Fail);
    let id = flow::idempotent_id(store.as_ref(), "replies:alice", None, domain::new_id())
        .await
        .unwrap();
    assert!(flow::agent_reply(
        store.as_ref(),
        w.queue.as_ref(),
        &ticket,
        "alice",
        true,
        "已为您开具".into(),
        id.clone()
    )
    .await
    .is_err());
    let left = store.get_message(&id).await.unwrap().unwrap();
    assert_eq!(left.status, Some(domain::DeliveryStatus::Queued));
    assert!(w.queue.sent(QueueName::Outbound).is_empty());

    // Within the grace period: left alone (its job may still be on its way).
    let now = domain::now();
    let grace = flow::QUEUED_GRACE_SECS;
    assert_eq!(
        flow::sweep_queued(store.as_ref(), w.queue.as_ref(), now, grace, 100)
            .await
            .unwrap(),
        0
    );
    // Past it: queued again, once a sweep.
    let later = now + chrono::Duration::seconds(grace + 1);
    let swept = flow::sweep_queued(store.as_ref(), w.queue.as_ref(), later, grace, 1000)
        .await
        .unwrap();
    assert!(swept >= 1, "{}", w.name);
    let jobs: Vec<_> = w
        .queue
        .sent(QueueName::Outbound)
        .into_iter()
        .filter(|j| j["message_id"] == id.as_str())
        .collect();
    assert_eq!(jobs.len(), 1, "{}: {jobs:?}", w.name);
    // Once sent, it is no longer swept.
    store
        .set_delivery(&id, domain::DeliveryStatus::Sent, Some("42:1"), None)
        .await
        .unwrap();
    w.queue.forget();
    flow::sweep_queued(store.as_ref(), w.queue.as_ref(), later, grace, 1000)
        .await
        .unwrap();
    assert!(w
        .queue
        .sent(QueueName::Outbound)
        .iter()
        .all(|j| j["message_id"] != id.as_str()));
}
both!(a_message_left_queued_is_queued_again_after_the_grace_period);

const SAMPLE_KB: &str = include_str!("../infra/sample-kb.json");

/// Auto-reply over `w`, searching a fake OpenSearch domain (on loopback) that holds the
/// sample articles, through the real adapter: the domain can hold a search, so a test can
/// act while a run is inside it.
async fn auto_reply_on(w: &Wiring) -> (fake_opensearch::FakeOpenSearch, Arc<auto_reply::Deps>) {
    use aws_sdk_dynamodb::config::{Credentials, Region};
    use helpdesk_core::ports::KnowledgeIndex;
    let fake = fake_opensearch::FakeOpenSearch::start().await;
    let config = helpdesk_core::aws::config_loader()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let knowledge = helpdesk_core::aws::OpenSearchKnowledge::new(&config, &fake.url, "kb").unwrap();
    knowledge
        .upsert(&helpdesk_core::knowledge::parse_articles(SAMPLE_KB).unwrap())
        .await
        .unwrap();
    // The question the tests ask has a confident answer; asking it once also trains the
    // ranker, so that a held search is the question's own.
    let hits = knowledge
        .search("How do I reset my password?", 3)
        .await
        .unwrap();
    assert!(
        hits.first().is_some_and(|h| h.confidence >= 0.57),
        "{hits:?}"
    );
    let deps = Arc::new(auto_reply::Deps {
        store: w.store.clone(),
        queue: w.queue.clone(),
        knowledge: Arc::new(knowledge),
        threshold: 0.57,
    });
    (fake, deps)
}

/// A customer's message as the router stores it for auto-reply, and its job.
async fn auto_reply_job(
    store: &dyn Store,
    customer: &domain::Customer,
    text: &str,
) -> (Message, auto_reply::AutoReplyJob) {
    let chat = &customer.identities[0].external_id;
    let message = Message::inbound(&telegram_message(chat, text), &customer.id);
    store.append_message(&message).await.unwrap();
    let job = auto_reply::AutoReplyJob {
        message_id: message.id.clone(),
        customer_id: customer.id.clone(),
        skill: domain::Skill::General,
        priority: domain::Priority::Normal,
        tags: Vec::new(),
    };
    (message, job)
}

/// A customer with a resolved ticket asks what the knowledge base answers: the answer goes
/// out and the ticket stays resolved, untouched, to close at its time. What the knowledge
/// base cannot answer reopens it, with the message on it and no hand-off.
async fn a_follow_up_the_knowledge_base_answers_leaves_the_ticket_resolved(w: Wiring) {
    let store = w.store.clone();
    let (_fake, deps) = auto_reply_on(&w).await;
    let (c, resolved, _) = a_resolved_ticket(&w, "我要投诉，转人工").await;

    let (answered, job) = auto_reply_job(store.as_ref(), &c, "How do I reset my password?").await;
    auto_reply::handle(&deps, job).await.unwrap();
    let reply = derived_id(&answered.id, "auto_reply");
    assert!(
        store.get_message(&reply).await.unwrap().is_some(),
        "{}: answered",
        w.name
    );
    let left = store.get_ticket(&resolved.id).await.unwrap().unwrap();
    assert_eq!(
        (left.status, left.version),
        (TicketStatus::Resolved, resolved.version),
        "{}",
        w.name
    );
    let answered = store.get_message(&answered.id).await.unwrap().unwrap();
    assert_eq!(answered.ticket_id, None, "{}", w.name);

    let (handed, job) =
        auto_reply_job(store.as_ref(), &c, "上次那件事还没弄好，xq7 编号对不上").await;
    auto_reply::handle(&deps, job).await.unwrap();
    let reopened = store.get_ticket(&resolved.id).await.unwrap().unwrap();
    assert_eq!(reopened.status, TicketStatus::Open, "{}", w.name);
    let handed = store.get_message(&handed.id).await.unwrap().unwrap();
    assert_eq!(
        handed.ticket_id.as_deref(),
        Some(resolved.id.as_str()),
        "{}",
        w.name
    );
    assert_eq!(handoffs_queued(&w, &handed.id), 0, "{}", w.name);
}
both!(a_follow_up_the_knowledge_base_answers_leaves_the_ticket_resolved);

/// Two runs of one auto-reply job at once (SQS delivers twice; a local lease runs out), and
/// a ticket of the customer opened between their looks: the first run is held inside its
/// search (it found no ticket, and the knowledge base has a confident answer), the ticket
/// opens, the second run puts the message on it, then the first goes on. The message has
/// one outcome, the ticket; no auto-reply is stored or queued. The other order too: a
/// message answered first stays answered when a ticket opens and its job comes again.
async fn two_runs_of_one_auto_reply_job_give_its_message_one_outcome(w: Wiring) {
    let store = w.store.clone();
    let (fake, deps) = auto_reply_on(&w).await;
    let c = customer(store.as_ref(), &domain::new_id()).await;
    let (message, job) = auto_reply_job(store.as_ref(), &c, "How do I reset my password?").await;

    let hold = fake.hold_searches();
    let first = tokio::spawn({
        let (deps, job) = (deps.clone(), job.clone());
        async move { auto_reply::handle(&deps, job).await }
    });
    hold.arrived().await;
    // Another message of the customer opens a ticket meanwhile (the router sends "I want a
    // person" straight to an agent).
    let ticket = hand_off_text(&w, &c, Channel::Telegram, "我要人工客服")
        .await
        .0;
    auto_reply::handle(&deps, job.clone()).await.unwrap();
    fake.domain.lock().unwrap().hold = None;
    hold.release_all();
    first.await.unwrap().unwrap();

    let reply = derived_id(&message.id, "auto_reply");
    assert!(
        store.get_message(&reply).await.unwrap().is_none(),
        "{}: no answer besides the ticket",
        w.name
    );
    assert!(
        w.queue
            .sent(QueueName::Outbound)
            .iter()
            .all(|j| j["message_id"] != reply.as_str()),
        "{}",
        w.name
    );
    let stored = store.get_message(&message.id).await.unwrap().unwrap();
    assert_eq!(
        stored.ticket_id.as_deref(),
        Some(ticket.id.as_str()),
        "{}",
        w.name
    );
    let tickets = store
        .list_tickets(
            &domain::TicketFilter {
                customer_id: Some(c.id.clone()),
                ..Default::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(tickets.items.len(), 1, "{}", w.name);
    // Delivered a third time: nothing changes.
    auto_reply::handle(&deps, job).await.unwrap();
    assert!(store.get_message(&reply).await.unwrap().is_none());

    // The other order: answered first, then a ticket opens, then the job comes again.
    let (answered, job) = auto_reply_job(store.as_ref(), &c, "忘记密码怎么办").await;
    flow::update_ticket(store.as_ref(), &ticket.id, |t| {
        set_status(t, TicketStatus::Closed)?;
        Ok(true)
    })
    .await
    .unwrap();
    auto_reply::handle(&deps, job.clone()).await.unwrap();
    let reply = derived_id(&answered.id, "auto_reply");
    assert!(
        store.get_message(&reply).await.unwrap().is_some(),
        "{}: answered",
        w.name
    );
    hand_off_text(&w, &c, Channel::Telegram, "还是要人工").await;
    auto_reply::handle(&deps, job).await.unwrap();
    let stored = store.get_message(&answered.id).await.unwrap().unwrap();
    assert_eq!(
        stored.ticket_id, None,
        "{}: answered, not also joined",
        w.name
    );
}
both!(two_runs_of_one_auto_reply_job_give_its_message_one_outcome);

/// A job of a customer that a merge takes away while the job runs (it is held inside its
/// search, having loaded the customer before the merge began), and a message still queued
/// under the merged customer's id: the job's answer, written under the customer that went,
/// follows the merge through the round the job queues; the queued message is stored on the
/// customer that stays and joins that customer's ticket. Nothing is left on the customer
/// that went.
async fn jobs_of_a_customer_merged_away_follow_the_merge(w: Wiring) {
    use helpdesk_core::domain::MergePlan;
    use helpdesk_core::jobs::{decode, InboundJob};
    let store = w.store.clone();
    let (fake, deps) = auto_reply_on(&w).await;
    let into = customer(store.as_ref(), &domain::new_id()).await;
    let from = customer(store.as_ref(), &domain::new_id()).await;
    let (message, job) = auto_reply_job(store.as_ref(), &from, "How do I reset my password?").await;

    let hold = fake.hold_searches();
    let running = tokio::spawn({
        let (deps, job) = (deps.clone(), job.clone());
        async move { auto_reply::handle(&deps, job).await }
    });
    hold.arrived().await;
    let plan = MergePlan::new(&into.id, &from.id, "alice");
    assert!(matches!(
        flow::run_merge(store.as_ref(), &plan, usize::MAX)
            .await
            .unwrap(),
        flow::MergeProgress::Done(_)
    ));
    assert!(store.get_customer(&from.id).await.unwrap().is_none());
    fake.domain.lock().unwrap().hold = None;
    hold.release_all();
    running.await.unwrap().unwrap();

    // The job queued a round of the merge, which the router runs.
    let rounds: Vec<serde_json::Value> = w
        .queue
        .sent(QueueName::Inbound)
        .into_iter()
        .filter(|j| j.get("merge").is_some())
        .collect();
    assert_eq!(rounds.len(), 1, "{}: {rounds:?}", w.name);
    assert_eq!(rounds[0]["cause"], message.id.as_str());
    let router_deps = router(&w);
    router::handle_job(
        &router_deps,
        decode::<InboundJob>(&rounds[0].to_string()).unwrap(),
    )
    .await
    .unwrap();
    let reply = store
        .get_message(&derived_id(&message.id, "auto_reply"))
        .await
        .unwrap()
        .expect("answered");
    assert_eq!(reply.customer_id, into.id, "{}", w.name);
    let moved = store.get_message(&message.id).await.unwrap().unwrap();
    assert_eq!(moved.customer_id, into.id);

    // A message still queued under the merged id: stored on the customer that stays, and
    // on that customer's ticket.
    let ticket = hand_off_text(&w, &into, Channel::Telegram, "订单的问题")
        .await
        .0;
    let mut late = telegram_message(&from.identities[0].external_id, "我要人工客服");
    late.customer_id = Some(from.id.clone());
    router::handle(&router_deps, late.clone()).await.unwrap();
    let stored = store.get_message(&late.id).await.unwrap().unwrap();
    assert_eq!(stored.customer_id, into.id, "{}", w.name);
    assert_eq!(
        stored.ticket_id.as_deref(),
        Some(ticket.id.as_str()),
        "{}",
        w.name
    );
    for channel in [Channel::Telegram, Channel::Webchat, Channel::Whatsapp] {
        assert!(
            store
                .customer_messages(&from.id, channel, None, 10)
                .await
                .unwrap()
                .is_empty(),
            "{}: nothing left on the customer that went",
            w.name
        );
    }
    assert!(store.active_ticket_for(&from.id).await.unwrap().is_none());
}
both!(jobs_of_a_customer_merged_away_follow_the_merge);

/// A run of an auto-reply job that crashed right after it claimed its outcome (an answer),
/// before it stored or sent anything; a ticket of the customer opens; the job comes again.
/// The redelivery finishes the claimed outcome, the answer, and does not put the message on
/// the ticket instead. Likewise a claimed ticket is finished as a ticket.
async fn a_redelivery_finishes_the_outcome_a_crashed_run_claimed(w: Wiring) {
    let store = w.store.clone();
    let (_fake, deps) = auto_reply_on(&w).await;
    let c = customer(store.as_ref(), &domain::new_id()).await;
    let (message, job) = auto_reply_job(store.as_ref(), &c, "这个问题知识库里没有").await;
    let text = "您好，请在登录页点击“忘记密码”。".to_string();
    flow::claim_outcome(
        store.as_ref(),
        &message.id,
        flow::Outcome::Reply { text: text.clone() },
    )
    .await
    .unwrap();
    hand_off_text(&w, &c, Channel::Telegram, "我要人工客服").await;
    auto_reply::handle(&deps, job).await.unwrap();
    let reply = store
        .get_message(&derived_id(&message.id, "auto_reply"))
        .await
        .unwrap()
        .expect("the claimed answer is sent");
    assert_eq!(reply.text, text, "{}", w.name);
    assert!(w
        .queue
        .sent(QueueName::Outbound)
        .iter()
        .any(|j| j["message_id"] == reply.id.as_str()));
    let stored = store.get_message(&message.id).await.unwrap().unwrap();
    assert_eq!(stored.ticket_id, None, "{}: not also joined", w.name);

    // A claimed ticket, for a question the knowledge base answers: a ticket it is.
    let other_customer = customer(store.as_ref(), &domain::new_id()).await;
    let (asked, job) = auto_reply_job(
        store.as_ref(),
        &other_customer,
        "How do I reset my password?",
    )
    .await;
    flow::claim_outcome(
        store.as_ref(),
        &asked.id,
        flow::Outcome::Ticket {
            skill: domain::Skill::Technical,
            priority: domain::Priority::High,
            suggestions: Vec::new(),
            tags: Vec::new(),
        },
    )
    .await
    .unwrap();
    auto_reply::handle(&deps, job).await.unwrap();
    assert!(store
        .get_message(&derived_id(&asked.id, "auto_reply"))
        .await
        .unwrap()
        .is_none());
    let ticket = store
        .active_ticket_for(&other_customer.id)
        .await
        .unwrap()
        .expect("the claimed ticket");
    assert_eq!(
        (ticket.skill, ticket.priority, ticket.opened_by.as_deref()),
        (
            domain::Skill::Technical,
            domain::Priority::High,
            Some(asked.id.as_str())
        ),
        "{}",
        w.name
    );
}
both!(a_redelivery_finishes_the_outcome_a_crashed_run_claimed);
