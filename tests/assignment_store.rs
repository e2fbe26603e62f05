//! The assignment against both stores (SQLite, and DynamoDB on the local AWS emulator):
//! capacity holds under a race, freed capacity takes the next waiting ticket in order, and
//! the SLA check finds what is due (a first response, a next reply, a close) through the
//! store's index.

mod wirings;

use helpdesk_core::assignment;
use helpdesk_core::aws::{schema, DynamoStore, Tables};
use helpdesk_core::domain::*;
use helpdesk_core::ports::Store;
use helpdesk_core::rules::Rules;
use std::collections::HashMap;
use std::sync::Arc;
use wirings::Wiring;

fn ticket(text: &str, skill: Skill, priority: Priority) -> Ticket {
    Ticket::open(
        NewTicket {
            customer_id: format!("c-{}", new_id()),
            channel: Channel::Webchat,
            subject: None,
            description: text.into(),
            priority,
            skill,
        },
        now(),
    )
}

async fn profile(store: &dyn Store, id: &str, capacity: u32, skills: &[Skill]) {
    let p = AgentProfile {
        capacity,
        skills: skills.to_vec(),
        ..AgentProfile::default_for(id)
    };
    store.put_agent(&p).await.unwrap();
}

/// Tickets still being worked per assignee, counted from the tickets themselves.
async fn holdings(store: &dyn Store) -> HashMap<String, u32> {
    let mut held = HashMap::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_tickets(
                &TicketFilter {
                    active: true,
                    ..Default::default()
                },
                100,
                cursor.as_deref(),
            )
            .await
            .unwrap();
        for t in &page.items {
            if let Some(a) = &t.assignee {
                *held.entry(a.clone()).or_insert(0) += 1;
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return held,
        }
    }
}

async fn two_hundred_tickets_never_overfill_five_agents(w: Wiring) {
    let store = w.store.clone();
    for i in 0..5 {
        profile(store.as_ref(), &format!("agent{i}"), 10, &[Skill::General]).await;
    }
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let t = ticket(&format!("第{i}个问题"), Skill::General, Priority::Normal);
            store.create_ticket(&t).await.unwrap();
            assignment::assign(store.as_ref(), &t.id, AssignmentReason::Rule, None)
                .await
                .unwrap()
        }));
    }
    let mut assigned = 0;
    for t in tasks {
        if t.await.unwrap().is_some() {
            assigned += 1;
        }
    }
    let held = holdings(store.as_ref()).await;
    assert!(
        held.values().all(|n| *n <= 10),
        "{}: an agent went over capacity: {held:?}",
        w.name
    );
    assert_eq!(assigned, 50, "{}: every slot is taken: {held:?}", w.name);
    assert_eq!(held.values().sum::<u32>(), 50, "{}", w.name);
    let waiting = store.waiting_tickets(1000).await.unwrap();
    assert_eq!(waiting.len(), 150, "{}: the rest wait", w.name);
    for agent in store.list_agents().await.unwrap() {
        assert_eq!(agent.open_tickets, 10, "{}: {}", w.name, agent.id);
        assert!(agent.last_assigned_at.is_some());
    }
}

async fn freed_capacity_takes_the_urgent_ticket_first(w: Wiring) {
    let store = w.store.as_ref();
    profile(store, "carol", 1, &[Skill::General]).await;
    let first = ticket("你好", Skill::General, Priority::Normal);
    store.create_ticket(&first).await.unwrap();
    assert_eq!(
        assignment::assign(store, &first.id, AssignmentReason::Rule, None)
            .await
            .unwrap()
            .as_deref(),
        Some("carol")
    );
    let second = ticket("还在吗", Skill::General, Priority::Normal);
    store.create_ticket(&second).await.unwrap();
    let urgent = ticket("紧急！", Skill::General, Priority::Urgent);
    store.create_ticket(&urgent).await.unwrap();
    for t in [&second, &urgent] {
        assert_eq!(
            assignment::assign(store, &t.id, AssignmentReason::Rule, None)
                .await
                .unwrap(),
            None,
            "{}: carol is full",
            w.name
        );
    }
    let waiting: Vec<String> = store
        .waiting_tickets(10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        waiting,
        vec![urgent.id.clone(), second.id.clone()],
        "{}: urgent first, then by age",
        w.name
    );
    // Carol closes her ticket: her slot is free, and the urgent one is hers.
    helpdesk_core::flow::update_ticket(store, &first.id, |t| {
        t.apply(
            &TicketPatch {
                status: Some(TicketStatus::Closed),
                ..Default::default()
            },
            now(),
        )?;
        Ok(true)
    })
    .await
    .unwrap();
    assert_eq!(assignment::fill(store, "carol", None).await.unwrap(), 1);
    let got = store.get_ticket(&urgent.id).await.unwrap().unwrap();
    assert_eq!(got.assignee.as_deref(), Some("carol"), "{}", w.name);
    assert_eq!(
        got.assignment.map(|a| a.reason),
        Some(AssignmentReason::Rebalance)
    );
    assert!(got.assigned_at.is_some());
    assert_eq!(
        store
            .get_ticket(&second.id)
            .await
            .unwrap()
            .unwrap()
            .assignee,
        None,
        "{}: capacity 1 holds",
        w.name
    );
    // A manual assignment always wins, even past capacity.
    helpdesk_core::flow::update_ticket(store, &second.id, |t| {
        t.apply(
            &TicketPatch {
                assignee: Some(Some("carol".into())),
                by: Some("bob".into()),
                ..Default::default()
            },
            now(),
        )?;
        Ok(true)
    })
    .await
    .unwrap();
    let manual = store.get_ticket(&second.id).await.unwrap().unwrap();
    assert_eq!(
        manual.assignment,
        Some(Assignment {
            by: Some("bob".into()),
            reason: AssignmentReason::Manual
        })
    );
    assert_eq!(
        store
            .get_agent("carol")
            .await
            .unwrap()
            .unwrap()
            .open_tickets,
        2,
        "{}",
        w.name
    );
}

async fn the_clock_finds_due_targets_through_the_store(w: Wiring) {
    let store = w.store.as_ref();
    let rules = Rules::parse(
        "[sla.urgent]\nfirst_response = \"1s\"\nescalate_on_breach = true\n[assignment]\nauto = false\n",
    )
    .unwrap();
    let mut late = ticket("紧急！系统打不开", Skill::Technical, Priority::Urgent);
    late.created_at = now() - chrono::Duration::seconds(5);
    late.stamp_sla(rules.sla());
    store.create_ticket(&late).await.unwrap();
    let mut answered = ticket("紧急！付款失败", Skill::Billing, Priority::Urgent);
    answered.created_at = now() - chrono::Duration::seconds(5);
    answered.stamp_sla(rules.sla());
    answered.agent_replied(Some("alice"), now());
    store.create_ticket(&answered).await.unwrap();
    let due = store.sla_due_tickets(now(), 10).await.unwrap();
    assert_eq!(
        due.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec![late.id.as_str()],
        "{}",
        w.name
    );
    let tick = assignment::tick(store, &rules, now()).await.unwrap();
    assert_eq!(tick.breached, 1, "{}", w.name);
    let after = store.get_ticket(&late.id).await.unwrap().unwrap();
    assert_eq!(after.status, TicketStatus::Escalated);
    assert_eq!(
        after.escalation_reason.as_deref(),
        Some("sla_breach:first_response")
    );
    assert!(store.sla_due_tickets(now(), 10).await.unwrap().is_empty());
    assert_eq!(
        assignment::tick(store, &rules, now())
            .await
            .unwrap()
            .breached,
        0,
        "{}: once",
        w.name
    );
}

/// A resolved ticket closes by itself when its time comes (as an agent's close, so the
/// change feed sends its survey), found through the clock's index like a due SLA target;
/// one reopened meanwhile, or resolved under `off`, is left alone, and a repeat closes
/// nothing twice.
async fn a_resolved_ticket_closes_by_itself_when_its_time_comes(w: Wiring) {
    let store = w.store.as_ref();
    let rules = Rules::parse("[assignment]\nauto = false\n").unwrap();
    let after = rules.close_resolved_after();
    assert_eq!(after, Some(chrono::Duration::days(4)), "the default");
    let t0 = now();
    let resolve = |text: &str, after| {
        let mut t = ticket(text, Skill::Billing, Priority::Normal);
        let was = t.status;
        t.apply(
            &TicketPatch {
                status: Some(TicketStatus::Resolved),
                ..TicketPatch::default()
            },
            t0,
        )
        .unwrap();
        t.schedule_close(was, after, t0);
        t
    };
    let quiet = resolve("发票已经开好了，谢谢", after);
    assert_eq!(quiet.closes_at, Some(t0 + chrono::Duration::days(4)));
    let kept = resolve("我再确认一下", None);
    assert_eq!(kept.closes_at, None);
    let mut reopened = resolve("还是不行", after);
    for t in [&quiet, &kept, &reopened] {
        store.create_ticket(t).await.unwrap();
    }
    // Reopened before its time: no longer resolved, no longer closing.
    let v = reopened.version;
    reopened
        .apply(
            &TicketPatch {
                status: Some(TicketStatus::Open),
                ..TicketPatch::default()
            },
            t0,
        )
        .unwrap();
    reopened.schedule_close(TicketStatus::Resolved, after, t0);
    assert_eq!(reopened.closes_at, None);
    store.update_ticket(&reopened, v).await.unwrap();

    let day = |d: i64| t0 + chrono::Duration::days(d);
    let tick = assignment::tick(store, &rules, day(3)).await.unwrap();
    assert_eq!(tick.closed, 0, "{}: not yet", w.name);
    assert_eq!(
        store.sla_due_tickets(day(5), 10).await.unwrap().len(),
        1,
        "{}: the one resolved with a time, through the index",
        w.name
    );
    let tick = assignment::tick(store, &rules, day(5)).await.unwrap();
    assert_eq!(tick.closed, 1, "{}", w.name);
    let closed = store.get_ticket(&quiet.id).await.unwrap().unwrap();
    assert_eq!(closed.status, TicketStatus::Closed, "{}", w.name);
    assert_eq!(closed.closed_at, Some(day(5)));
    for (t, status) in [
        (&kept, TicketStatus::Resolved),
        (&reopened, TicketStatus::Open),
    ] {
        let now_is = store.get_ticket(&t.id).await.unwrap().unwrap();
        assert_eq!(now_is.status, status, "{}", w.name);
    }
    assert!(store.sla_due_tickets(day(9), 10).await.unwrap().is_empty());
    let tick = assignment::tick(store, &rules, day(9)).await.unwrap();
    assert_eq!(tick.closed, 0, "{}: once", w.name);
}

/// A resolved ticket nobody held (resolved unassigned, or its agent let it go) that its
/// customer reopens is given to an agent by the rule when the change is seen, as a new
/// ticket is, rather than waiting for the clock's next turn.
async fn a_reopened_ticket_nobody_holds_is_assigned_at_once(w: Wiring) {
    let store = w.store.as_ref();
    profile(store, "dora", 2, &[Skill::Billing]).await;
    let t = ticket("发票开错了", Skill::Billing, Priority::Normal);
    store.create_ticket(&t).await.unwrap();
    let (resolved, _) = helpdesk_core::flow::update_ticket(store, &t.id, |t| {
        t.apply(
            &TicketPatch {
                status: Some(TicketStatus::Resolved),
                ..Default::default()
            },
            now(),
        )?;
        t.schedule_close(TicketStatus::Open, Some(chrono::Duration::days(4)), now());
        Ok(true)
    })
    .await
    .unwrap();
    assert_eq!(resolved.assignee, None);
    let inbound = InboundMessage::text(Channel::Webchat, "v1".into(), "发票还是不对".into(), now());
    let follow_up = Message::inbound(&inbound, &t.customer_id);
    let (reopened, changed) = helpdesk_core::flow::update_ticket(store, &t.id, |t| {
        Ok(t.reopen_for_customer(&follow_up, true, now()))
    })
    .await
    .unwrap();
    assert!(changed);
    let change = helpdesk_core::jobs::TicketChange {
        old: Some(resolved),
        new: reopened,
    };
    assignment::on_change(store, w.queue.as_ref(), &Rules::default(), &change)
        .await
        .unwrap();
    let got = store.get_ticket(&t.id).await.unwrap().unwrap();
    assert_eq!(got.assignee.as_deref(), Some("dora"), "{}", w.name);
    assert_eq!(
        got.assignment.map(|a| a.reason),
        Some(AssignmentReason::Rebalance)
    );
}

/// A customer who writes again after an agent's reply waits for the next reply: the change
/// feed stamps when it is due, the clock finds it through the store's index and records
/// its breach once, and the agent's reply ends the wait and takes the due time off.
async fn a_customer_waiting_for_a_next_reply_is_on_the_clock(w: Wiring) {
    use helpdesk_core::flow;
    use helpdesk_core::jobs::TicketChange;
    let (store, queue) = (w.store.as_ref(), w.queue.as_ref());
    let rules =
        Rules::parse("[sla.high]\nnext_reply = \"1h\"\n[assignment]\nauto = false\n").unwrap();
    let feed = |old: &Ticket, new: &Ticket| TicketChange {
        old: Some(old.clone()),
        new: new.clone(),
    };
    let t = ticket("退款还没到账", Skill::Billing, Priority::High);
    store.create_ticket(&t).await.unwrap();
    flow::agent_reply(
        store,
        queue,
        &t,
        "alice",
        false,
        "我们查一下".into(),
        new_id(),
    )
    .await
    .unwrap();
    let answered = store.get_ticket(&t.id).await.unwrap().unwrap();
    assert_eq!(answered.awaiting_reply_since, None, "{}", w.name);

    let inbound = InboundMessage::text(Channel::Webchat, "v1".into(), "还是没到".into(), now());
    let follow_up = Message::inbound(&inbound, &t.customer_id);
    store.append_message(&follow_up).await.unwrap();
    let joined = flow::join_ticket(store, &answered, &follow_up)
        .await
        .unwrap()
        .expect("joined");
    assert_eq!(joined.awaiting_reply_since, Some(follow_up.created_at));
    assignment::on_change(store, queue, &rules, &feed(&answered, &joined))
        .await
        .unwrap();
    let stamped = store.get_ticket(&t.id).await.unwrap().unwrap();
    let due = follow_up.created_at + chrono::Duration::hours(1);
    assert_eq!(
        stamped.sla.as_ref().and_then(|s| s.next_reply_due),
        Some(due),
        "{}",
        w.name
    );
    assert!(store.sla_due_tickets(now(), 10).await.unwrap().is_empty());

    let late = due + chrono::Duration::seconds(1);
    let found = store.sla_due_tickets(late, 10).await.unwrap();
    assert_eq!(
        found.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec![t.id.as_str()],
        "{}",
        w.name
    );
    let tick = assignment::tick(store, &rules, late).await.unwrap();
    assert_eq!(tick.breached, 1, "{}", w.name);
    let breached = store.get_ticket(&t.id).await.unwrap().unwrap();
    let new = Ticket::new_breaches(Some(&stamped), &breached);
    assert_eq!(new.len(), 1, "{}", w.name);
    assert_eq!((new[0].target, new[0].due), (SlaTarget::NextReply, due));
    let tick = assignment::tick(store, &rules, late).await.unwrap();
    assert_eq!(tick.breached, 0, "{}: once a wait", w.name);

    flow::agent_reply(
        store,
        queue,
        &breached,
        "alice",
        false,
        "已经退了".into(),
        new_id(),
    )
    .await
    .unwrap();
    let replied = store.get_ticket(&t.id).await.unwrap().unwrap();
    assert_eq!(replied.awaiting_reply_since, None, "{}", w.name);
    assignment::on_change(store, queue, &rules, &feed(&breached, &replied))
        .await
        .unwrap();
    let after = store.get_ticket(&t.id).await.unwrap().unwrap();
    assert_eq!(
        after.sla.as_ref().and_then(|s| s.next_reply_due),
        None,
        "{}",
        w.name
    );
    assert_eq!(after.next_reply_waits().breached, 1);
    assert!(store
        .sla_due_tickets(late + chrono::Duration::days(30), 10)
        .await
        .unwrap()
        .is_empty());
}

/// The DynamoDB store on the emulator, reached one request at a time
/// ([`wirings::dynamodb_config`]): the race between our requests (read the agents, choose,
/// write) is untouched, only each request is whole.
async fn dynamodb() -> Wiring {
    let config = wirings::dynamodb_config().await;
    let tables = Tables::with_prefix(&format!("a{}-", new_id()));
    let store = DynamoStore::new(&config, tables.clone());
    schema::create_tables(store.client(), &tables)
        .await
        .expect("the tables are made");
    let sqlite = wirings::sqlite();
    Wiring {
        name: "dynamodb",
        store: Arc::new(store),
        queue: sqlite.queue,
        sqs: None,
    }
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::wirings::sqlite()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn dynamodb() {
                super::$name(super::dynamodb().await).await;
            }
        }
    };
}

both!(two_hundred_tickets_never_overfill_five_agents);
both!(freed_capacity_takes_the_urgent_ticket_first);
both!(the_clock_finds_due_targets_through_the_store);
both!(a_resolved_ticket_closes_by_itself_when_its_time_comes);
both!(a_reopened_ticket_nobody_holds_is_assigned_at_once);
both!(a_customer_waiting_for_a_next_reply_is_on_the_clock);

/// DynamoDB keeps each agent's held tickets as a set beside the tickets, and a write cut
/// short between a ticket and that set (a close whose release of the slot failed) leaves a
/// ticket in it that the agent no longer works: they look full. Only a refused assignment
/// used to clear the set, and none was tried for an agent who looked full, so every
/// waiting ticket waited for good. The clock now counts the full agents again when a
/// ticket would wait for want of room: the slot comes back, and the ticket is assigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_left_holding_a_closed_ticket_heals_at_the_next_tick() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let config = wirings::dynamodb_config().await;
    let tables = Tables::with_prefix(&format!("a{}-", new_id()));
    let dynamo = DynamoStore::new(&config, tables.clone());
    schema::create_tables(dynamo.client(), &tables)
        .await
        .expect("the tables are made");
    let store: &dyn Store = &dynamo;
    profile(store, "dora", 1, &[Skill::General]).await;
    let mut left = ticket("旧问题", Skill::General, Priority::Normal);
    left.status = TicketStatus::Closed;
    store.create_ticket(&left).await.unwrap();
    // The state the cut-short release leaves: the closed ticket still in dora's set.
    dynamo
        .client()
        .update_item()
        .table_name(&tables.tickets)
        .key("id", AttributeValue::S("agent#dora".into()))
        .update_expression("ADD holding :t")
        .expression_attribute_values(":t", AttributeValue::Ss(vec![left.id.clone()]))
        .send()
        .await
        .unwrap();
    let dora = store.get_agent("dora").await.unwrap().unwrap();
    assert_eq!(dora.open_tickets, 1, "she looks full");

    let waiting = ticket("新问题", Skill::General, Priority::Normal);
    store.create_ticket(&waiting).await.unwrap();
    let done = assignment::tick(store, &Rules::default(), now())
        .await
        .unwrap();
    assert_eq!(done.assigned, 1);
    let got = store.get_ticket(&waiting.id).await.unwrap().unwrap();
    assert_eq!(got.assignee.as_deref(), Some("dora"));
    let dora = store.get_agent("dora").await.unwrap().unwrap();
    assert_eq!(dora.open_tickets, 1, "the new ticket, not the closed one");
}
