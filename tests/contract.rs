//! The store contract: the same cases against every adapter, `SqliteStore` and the
//! DynamoDB store on the local AWS emulator. What one adapter promises, the other keeps.

mod wirings;

use futures_like::join_all;
use helpdesk_core::domain::*;
use helpdesk_core::ports::Store;
use std::sync::Arc;
use wirings::Wiring;

/// `join_all` without a dependency: spawn, then await in order.
mod futures_like {
    pub async fn join_all<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("the task ran"));
        }
        out
    }
}

fn ticket(customer: &str) -> Ticket {
    Ticket::open(
        NewTicket {
            customer_id: customer.into(),
            channel: Channel::Webchat,
            subject: None,
            description: "我的订单没有到".into(),
            priority: Priority::Normal,
            skill: Skill::Billing,
        },
        now(),
    )
}

async fn claims_are_taken_once(w: Wiring) {
    let s = w.store.as_ref();
    let k = format!("whatsapp:wamid.{}", new_id());
    assert_eq!(s.claimed(&k).await.unwrap(), None);
    assert_eq!(s.claim(&k, "m1", 60).await.unwrap(), None);
    assert_eq!(s.claim(&k, "m2", 60).await.unwrap().as_deref(), Some("m1"));
    assert_eq!(s.claimed(&k).await.unwrap().as_deref(), Some("m1"));
    s.release(&k).await.unwrap();
    assert_eq!(s.claimed(&k).await.unwrap(), None);
    assert_eq!(
        s.claim(&k, "m3", 60).await.unwrap(),
        None,
        "released, it is free"
    );
    let e = format!("e{}", new_id());
    assert_eq!(s.claim(&e, "v", -1).await.unwrap(), None);
    assert_eq!(s.claimed(&e).await.unwrap(), None, "{}: expired", w.name);
    assert_eq!(
        s.claim(&e, "v2", 60).await.unwrap(),
        None,
        "{}: an expired claim is free",
        w.name
    );
}
both!(claims_are_taken_once);

async fn a_stale_version_is_a_conflict_and_loses_nothing(w: Wiring) {
    let s = w.store.as_ref();
    let t = ticket("c1");
    s.create_ticket(&t).await.unwrap();
    let mut a = t.clone();
    a.agent_replied(Some("alice"), now());
    s.update_ticket(&a, 1).await.unwrap();
    let mut b = t.clone();
    b.agent_replied(Some("bob"), now());
    let err = s.update_ticket(&b, 1).await.unwrap_err();
    assert_eq!((err.kind.status(), err.code), (409, "version_conflict"));
    let stored = s.get_ticket(&t.id).await.unwrap().unwrap();
    assert_eq!(stored.assignee.as_deref(), Some("alice"));
    assert_eq!(stored.version, 2);
    let ghost = ticket("c1");
    assert_eq!(
        s.update_ticket(&ghost, 1).await.unwrap_err().kind.status(),
        404
    );
    let again = s.create_ticket(&t).await.unwrap_err();
    assert_eq!((again.kind.status(), again.code), (409, "already_exists"));
}
both!(a_stale_version_is_a_conflict_and_loses_nothing);

/// Fifty agents save one ticket at once, all from the same version: one wins, 49 are
/// told the version moved on, and the winner's change is the one stored.
async fn fifty_saves_of_one_version_make_one_winner(w: Wiring) {
    let store: Arc<dyn Store> = w.store.clone();
    let t = ticket(&new_id());
    store.create_ticket(&t).await.unwrap();
    let tasks = (0..50)
        .map(|i| {
            let (store, mut mine) = (store.clone(), t.clone());
            tokio::spawn(async move {
                mine.agent_replied(Some(&format!("agent{i}")), now());
                store
                    .update_ticket(&mine, t.version)
                    .await
                    .map(|()| format!("agent{i}"))
            })
        })
        .collect();
    let outcomes = join_all(tasks).await;
    let winners: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{}: {outcomes:?}", w.name);
    for o in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert_eq!((o.kind.status(), o.code), (409, "version_conflict"));
    }
    let stored = store.get_ticket(&t.id).await.unwrap().unwrap();
    assert_eq!(stored.assignee.as_ref(), Some(winners[0]));
    assert_eq!(stored.version, t.version + 1);
}
both!(fifty_saves_of_one_version_make_one_winner);

/// A customer has at most one active ticket, whether their message or an agent by hand
/// opened it, and the refusal names the one they have; a retry of a create that succeeded is
/// told the id is taken; once the ticket is closed, the next one may open.
async fn a_customer_has_one_active_ticket(w: Wiring) {
    let s = w.store.as_ref();
    let customer = new_id();
    let mut first = ticket(&customer);
    first.opened_by = Some(new_id());
    s.create_ticket(&first).await.unwrap();
    let mut second = ticket(&customer);
    second.opened_by = Some(new_id());
    let err = s.create_ticket(&second).await.unwrap_err();
    assert_eq!((err.kind.status(), err.code), (409, "active_ticket_exists"));
    assert_eq!(
        s.active_ticket_for(&customer).await.unwrap().map(|t| t.id),
        Some(first.id.clone()),
        "{}: read at once, not after an index catches up",
        w.name
    );
    let err = s.create_ticket(&ticket(&customer)).await.unwrap_err();
    assert_eq!(
        (err.kind.status(), err.code),
        (409, "active_ticket_exists"),
        "{}: by hand too",
        w.name
    );
    assert!(err.message.contains(&first.id), "{}: {err}", w.name);
    let again = s.create_ticket(&first).await.unwrap_err();
    assert_eq!(again.code, "already_exists", "{}", w.name);
    let mut closed = first.clone();
    closed
        .apply(
            &TicketPatch {
                status: Some(TicketStatus::Closed),
                ..Default::default()
            },
            now(),
        )
        .unwrap();
    s.update_ticket(&closed, first.version).await.unwrap();
    let by_hand = ticket(&customer);
    s.create_ticket(&by_hand).await.unwrap();
    let mut third = ticket(&customer);
    third.opened_by = Some(new_id());
    let err = s.create_ticket(&third).await.unwrap_err();
    assert_eq!(
        (
            err.code,
            s.active_ticket_for(&customer).await.unwrap().map(|t| t.id)
        ),
        ("active_ticket_exists", Some(by_hand.id.clone())),
        "{}: a message meets the ticket made by hand",
        w.name
    );
}
both!(a_customer_has_one_active_ticket);

/// Twenty tickets for one customer made at once, half by their messages and half by hand:
/// one is stored, and each of the others is refused naming it.
async fn racing_creates_leave_one_active_ticket(w: Wiring) {
    let store: Arc<dyn Store> = w.store.clone();
    let customer = new_id();
    let tasks = (0..20)
        .map(|i| {
            let store = store.clone();
            let mut t = ticket(&customer);
            if i % 2 == 0 {
                t.opened_by = Some(new_id());
            }
            tokio::spawn(async move { store.create_ticket(&t).await.map(|()| t.id) })
        })
        .collect();
    let outcomes = join_all(tasks).await;
    let made: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(made.len(), 1, "{}: {outcomes:?}", w.name);
    for e in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert_eq!(e.code, "active_ticket_exists", "{}: {e}", w.name);
        assert!(e.message.contains(made[0].as_str()), "{}: {e}", w.name);
    }
    let active = TicketFilter {
        customer_id: Some(customer.clone()),
        active: true,
        ..Default::default()
    };
    assert_eq!(store.count_tickets(&active).await.unwrap(), 1, "{}", w.name);
}
both!(racing_creates_leave_one_active_ticket);

/// A ticket is found by the reference its customer was told, however an agent types it,
/// alone or with other filters, before and after a change; another ticket is not.
async fn a_ticket_is_found_by_its_reference(w: Wiring) {
    let s = w.store.as_ref();
    let (t, other) = (ticket(&new_id()), ticket(&new_id()));
    s.create_ticket(&t).await.unwrap();
    s.create_ticket(&other).await.unwrap();
    let told = ticket_ref(&t.id);
    let by = |typed: &str, status: Option<TicketStatus>| TicketFilter {
        reference: Some(parse_ticket_ref(typed).unwrap()),
        status,
        ..Default::default()
    };
    let ids = |page: helpdesk_core::ports::Page<Ticket>| {
        page.items.into_iter().map(|t| t.id).collect::<Vec<_>>()
    };
    for typed in [told.clone(), told.to_lowercase(), format!(" #{told}")] {
        let found = s.list_tickets(&by(&typed, None), 10, None).await.unwrap();
        assert_eq!(ids(found), vec![t.id.clone()], "{}: {typed}", w.name);
    }
    assert_eq!(s.count_tickets(&by(&told, None)).await.unwrap(), 1);
    let theirs = s
        .list_tickets(&by(&ticket_ref(&other.id), None), 10, None)
        .await
        .unwrap();
    assert_eq!(ids(theirs), vec![other.id.clone()], "{}", w.name);
    let open = by(&told, Some(TicketStatus::Open));
    let resolved = by(&told, Some(TicketStatus::Resolved));
    assert_eq!(
        ids(s.list_tickets(&open, 10, None).await.unwrap()),
        vec![t.id.clone()]
    );
    assert!(s
        .list_tickets(&resolved, 10, None)
        .await
        .unwrap()
        .items
        .is_empty());
    s.update_ticket(&moved(&t, TicketStatus::Resolved), t.version)
        .await
        .unwrap();
    assert!(s
        .list_tickets(&open, 10, None)
        .await
        .unwrap()
        .items
        .is_empty());
    let found = s.list_tickets(&resolved, 10, None).await.unwrap();
    assert_eq!(
        ids(found),
        vec![t.id.clone()],
        "{}: kept by a change",
        w.name
    );
    let nobody = by(&ticket_ref(&new_id()), None);
    assert!(s
        .list_tickets(&nobody, 10, None)
        .await
        .unwrap()
        .items
        .is_empty());
}
both!(a_ticket_is_found_by_its_reference);

/// A list pages oldest first as it pages newest first, the same tickets in the opposite
/// order, through one index or across the queries of the active statuses.
async fn a_list_pages_oldest_first_as_it_pages_newest_first(w: Wiring) {
    let s = w.store.as_ref();
    let mut made = Vec::new();
    for n in 0..7 {
        let t = ticket(&new_id());
        s.create_ticket(&t).await.unwrap();
        if n % 3 == 1 {
            s.update_ticket(&moved(&t, TicketStatus::Pending), t.version)
                .await
                .unwrap();
        }
        made.push(t.id);
    }
    let walk = |filter: TicketFilter| async move {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = s.list_tickets(&filter, 3, cursor.as_deref()).await.unwrap();
            assert!(page.items.len() <= 3);
            seen.extend(page.items.into_iter().map(|t| t.id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return seen,
            }
        }
    };
    for base in [
        TicketFilter::default(),
        TicketFilter {
            active: true,
            ..Default::default()
        },
    ] {
        let oldest = walk(TicketFilter {
            oldest_first: true,
            ..base.clone()
        })
        .await;
        assert_eq!(oldest, made, "{}: {base:?}", w.name);
        let mut newest = walk(base.clone()).await;
        newest.reverse();
        assert_eq!(newest, made, "{}: {base:?}", w.name);
    }
}
both!(a_list_pages_oldest_first_as_it_pages_newest_first);

/// Tickets are listed and counted by a tag, alone, with a status, across the active
/// statuses' queries and page by page; a tag taken off no longer finds its ticket.
async fn tickets_are_listed_and_counted_by_a_tag(w: Wiring) {
    let s = w.store.as_ref();
    let id = new_id();
    let mine = format!("vip-{}", &id[id.len() - 12..]);
    let tagged = |tags: &[&str]| {
        let mut t = ticket(&new_id());
        t.apply(
            &TicketPatch {
                tags: Some(tags.iter().map(|t| t.to_string()).collect()),
                ..Default::default()
            },
            now(),
        )
        .expect("tags");
        t
    };
    let a = tagged(&[&mine, "退款"]);
    let b = tagged(&[&mine.to_uppercase()]);
    let c = tagged(&["退款"]);
    assert_eq!(b.tags, vec![mine.clone()], "folded");
    for t in [&a, &b, &c] {
        s.create_ticket(t).await.unwrap();
    }
    let by = |tag: &str| TicketFilter {
        tag: Some(tag.to_string()),
        ..Default::default()
    };
    let ids = |page: helpdesk_core::ports::Page<Ticket>| {
        page.items.into_iter().map(|t| t.id).collect::<Vec<_>>()
    };
    let found = s.list_tickets(&by(&mine), 10, None).await.unwrap();
    assert_eq!(ids(found), vec![b.id.clone(), a.id.clone()], "{}", w.name);
    assert_eq!(s.count_tickets(&by(&mine)).await.unwrap(), 2, "{}", w.name);
    let first = s.list_tickets(&by(&mine), 1, None).await.unwrap();
    let cursor = first.next_cursor.clone().expect("a second page");
    assert_eq!(ids(first), vec![b.id.clone()]);
    let second = s.list_tickets(&by(&mine), 1, Some(&cursor)).await.unwrap();
    assert_eq!(ids(second), vec![a.id.clone()], "{}", w.name);

    s.update_ticket(&moved(&b, TicketStatus::Resolved), b.version)
        .await
        .unwrap();
    let active = TicketFilter {
        active: true,
        ..by(&mine)
    };
    assert_eq!(
        ids(s.list_tickets(&active, 10, None).await.unwrap()),
        vec![a.id.clone()]
    );
    assert_eq!(s.count_tickets(&active).await.unwrap(), 1, "{}", w.name);
    let resolved = TicketFilter {
        status: Some(TicketStatus::Resolved),
        ..by(&mine)
    };
    assert_eq!(
        ids(s.list_tickets(&resolved, 10, None).await.unwrap()),
        vec![b.id.clone()]
    );

    let theirs = TicketFilter {
        customer_id: Some(c.customer_id.clone()),
        ..by("退款")
    };
    assert_eq!(
        ids(s.list_tickets(&theirs, 10, None).await.unwrap()),
        vec![c.id.clone()]
    );

    let mut untagged = a.clone();
    untagged
        .apply(
            &TicketPatch {
                tags: Some(vec!["退款".into()]),
                ..Default::default()
            },
            now(),
        )
        .unwrap();
    s.update_ticket(&untagged, a.version).await.unwrap();
    let found = s.list_tickets(&by(&mine), 10, None).await.unwrap();
    assert_eq!(ids(found), vec![b.id.clone()], "{}: taken off", w.name);
    let stored = s.get_ticket(&a.id).await.unwrap().expect("stored");
    assert_eq!(stored.tags, ["退款"], "{}", w.name);
}
both!(tickets_are_listed_and_counted_by_a_tag);

/// `t` moved to `status` by an agent's patch, as the API does it.
fn moved(t: &Ticket, status: TicketStatus) -> Ticket {
    let mut next = t.clone();
    next.apply(
        &TicketPatch {
            status: Some(status),
            ..Default::default()
        },
        now(),
    )
    .expect("a legal move");
    next
}

/// A customer whose ticket was resolved has a second ticket since (made by hand, or the
/// resolved one's time to close came before they wrote): the first reopened beside it is
/// refused, naming the second, and left as it was; the customer's messages still join the
/// second. A stale version or an unknown ticket is told so first,
/// as for any save, and the second's own changes go through.
async fn a_reopen_beside_another_active_ticket_is_refused(w: Wiring) {
    let s = w.store.as_ref();
    let customer = new_id();
    let first = ticket(&customer);
    s.create_ticket(&first).await.unwrap();
    let resolved = moved(&first, TicketStatus::Resolved);
    s.update_ticket(&resolved, first.version).await.unwrap();
    let mut second = ticket(&customer);
    second.opened_by = Some(new_id());
    s.create_ticket(&second).await.unwrap();

    let reopened = moved(&resolved, TicketStatus::Open);
    let err = s
        .update_ticket(&reopened, resolved.version)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind.status(), err.code),
        (409, "active_ticket_exists"),
        "{}: {err}",
        w.name
    );
    assert!(err.message.contains(&second.id), "{}: {err}", w.name);
    let stored = s.get_ticket(&first.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.version),
        (TicketStatus::Resolved, resolved.version),
        "{}: the ticket is unchanged",
        w.name
    );
    assert_eq!(
        s.active_ticket_for(&customer).await.unwrap().map(|t| t.id),
        Some(second.id.clone()),
        "{}",
        w.name
    );

    let stale = s.update_ticket(&reopened, first.version).await.unwrap_err();
    assert_eq!(
        (stale.kind.status(), stale.code),
        (409, "version_conflict"),
        "{}: a stale version is told first",
        w.name
    );
    let ghost = moved(
        &moved(&ticket(&customer), TicketStatus::Resolved),
        TicketStatus::Open,
    );
    assert_eq!(
        s.update_ticket(&ghost, 2).await.unwrap_err().kind.status(),
        404,
        "{}",
        w.name
    );
    let pending = moved(&second, TicketStatus::Pending);
    s.update_ticket(&pending, second.version).await.unwrap();
    let mut replied = pending.clone();
    replied.customer_replied(now(), now());
    s.update_ticket(&replied, pending.version).await.unwrap();
    assert_eq!(
        s.get_ticket(&second.id).await.unwrap().unwrap().status,
        TicketStatus::Open,
        "{}: an active ticket's changes are no reopen",
        w.name
    );
}
both!(a_reopen_beside_another_active_ticket_is_refused);

/// Once the customer's other ticket has ended (resolved, or closed), the reopen goes through
/// and the reopened ticket is the one their messages join: a new ticket, or a reopen of the
/// other, is then refused naming it.
async fn a_reopen_goes_through_once_the_other_ticket_has_ended(w: Wiring) {
    let s = w.store.as_ref();
    let customer = new_id();
    let first = ticket(&customer);
    s.create_ticket(&first).await.unwrap();
    let first_resolved = moved(&first, TicketStatus::Resolved);
    s.update_ticket(&first_resolved, first.version)
        .await
        .unwrap();
    let second = ticket(&customer);
    s.create_ticket(&second).await.unwrap();
    let second_resolved = moved(&second, TicketStatus::Resolved);
    s.update_ticket(&second_resolved, second.version)
        .await
        .unwrap();
    let third = ticket(&customer);
    s.create_ticket(&third).await.unwrap();
    let third_closed = moved(&third, TicketStatus::Closed);
    s.update_ticket(&third_closed, third.version).await.unwrap();

    let reopened = moved(&first_resolved, TicketStatus::Open);
    s.update_ticket(&reopened, first_resolved.version)
        .await
        .unwrap();
    let stored = s.get_ticket(&first.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.version, stored.closed_at),
        (TicketStatus::Open, reopened.version, None),
        "{}",
        w.name
    );
    assert_eq!(
        s.active_ticket_for(&customer).await.unwrap().map(|t| t.id),
        Some(first.id.clone()),
        "{}",
        w.name
    );
    let err = s.create_ticket(&ticket(&customer)).await.unwrap_err();
    assert_eq!(err.code, "active_ticket_exists", "{}", w.name);
    assert!(err.message.contains(&first.id), "{}: {err}", w.name);
    let err = s
        .update_ticket(
            &moved(&second_resolved, TicketStatus::Open),
            second_resolved.version,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, "active_ticket_exists", "{}", w.name);
    assert!(err.message.contains(&first.id), "{}: {err}", w.name);

    // Resolved again, it makes way: the second one reopens.
    let again = moved(&reopened, TicketStatus::Resolved);
    s.update_ticket(&again, reopened.version).await.unwrap();
    s.update_ticket(
        &moved(&second_resolved, TicketStatus::Open),
        second_resolved.version,
    )
    .await
    .unwrap();
    assert_eq!(
        s.active_ticket_for(&customer).await.unwrap().map(|t| t.id),
        Some(second.id.clone()),
        "{}",
        w.name
    );
}
both!(a_reopen_goes_through_once_the_other_ticket_has_ended);

/// Ten resolved tickets of one customer reopened at once, with `creates` new tickets made at
/// the same time: one ends active, and each of the others is refused naming it.
async fn race_reopens(w: Wiring, creates: usize) {
    let store: Arc<dyn Store> = w.store.clone();
    let customer = new_id();
    let mut resolved = Vec::new();
    for _ in 0..10 {
        let t = ticket(&customer);
        store.create_ticket(&t).await.unwrap();
        let done = moved(&t, TicketStatus::Resolved);
        store.update_ticket(&done, t.version).await.unwrap();
        resolved.push(done);
    }
    let reopens = resolved.into_iter().map(|t| {
        let store = store.clone();
        tokio::spawn(async move {
            let reopened = moved(&t, TicketStatus::Open);
            store
                .update_ticket(&reopened, t.version)
                .await
                .map(|()| t.id)
        })
    });
    let creates = (0..creates).map(|_| {
        let (store, mut t) = (store.clone(), ticket(&customer));
        t.opened_by = Some(new_id());
        tokio::spawn(async move { store.create_ticket(&t).await.map(|()| t.id) })
    });
    let outcomes = join_all(reopens.chain(creates).collect()).await;
    let won: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{}: {outcomes:?}", w.name);
    for e in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert_eq!(e.code, "active_ticket_exists", "{}: {e}", w.name);
        assert!(e.message.contains(won[0].as_str()), "{}: {e}", w.name);
    }
    let active = TicketFilter {
        customer_id: Some(customer.clone()),
        active: true,
        ..Default::default()
    };
    assert_eq!(store.count_tickets(&active).await.unwrap(), 1, "{}", w.name);
    assert_eq!(
        store
            .active_ticket_for(&customer)
            .await
            .unwrap()
            .map(|t| t.id)
            .as_ref(),
        Some(won[0]),
        "{}",
        w.name
    );
}

async fn racing_reopens_leave_one_active_ticket(w: Wiring) {
    race_reopens(w, 0).await
}
both!(racing_reopens_leave_one_active_ticket);

async fn reopens_racing_creates_leave_one_active_ticket(w: Wiring) {
    race_reopens(w, 10).await
}
both!(reopens_racing_creates_leave_one_active_ticket);

async fn one_sender_claims_a_queued_message(w: Wiring) {
    let s = w.store.as_ref();
    let m = Message::outbound(
        "c1",
        Channel::Telegram,
        MessageKind::Survey,
        "请打分".into(),
        None,
    );
    s.append_message(&m).await.unwrap();
    assert!(s.claim_delivery(&m.id, 60).await.unwrap());
    assert!(
        !s.claim_delivery(&m.id, 60).await.unwrap(),
        "a second sender waits"
    );
    s.release_delivery(&m.id).await.unwrap();
    assert!(
        s.claim_delivery(&m.id, -1).await.unwrap(),
        "released, it can be claimed again"
    );
    assert!(
        s.claim_delivery(&m.id, 60).await.unwrap(),
        "an expired lease is free"
    );
    s.set_delivery(&m.id, DeliveryStatus::Sent, Some("p1"), None)
        .await
        .unwrap();
    s.release_delivery(&m.id).await.unwrap();
    assert!(
        !s.claim_delivery(&m.id, 60).await.unwrap(),
        "{}: a sent message is never claimed",
        w.name
    );
}
both!(one_sender_claims_a_queued_message);

/// A provider's message id is looked up with the direction it must have: a receipt is about
/// a message the desk sent, an edit about one the customer sent. Here both carry one id (as
/// the WhatsApp fixtures' message and receipt do), the customer's stored first, and each
/// lookup finds its own; the desk's got its id when it was sent, as dispatch records it.
async fn a_provider_id_is_found_in_the_direction_asked_for(w: Wiring) {
    let s = w.store.as_ref();
    let customer = new_id();
    let wamid = format!("wamid.{}", new_id());
    let mut inbound = InboundMessage::text(
        Channel::Whatsapp,
        "972987654321".into(),
        "我的订单没有到".into(),
        now(),
    );
    inbound.provider_message_id = Some(wamid.clone());
    let theirs = Message::inbound(&inbound, &customer);
    s.append_message(&theirs).await.unwrap();
    let ours = Message::outbound(
        &customer,
        Channel::Whatsapp,
        MessageKind::Handoff,
        "已为您转接人工客服".into(),
        None,
    );
    s.append_message(&ours).await.unwrap();
    let find = |channel, direction| s.message_by_provider_id(channel, direction, &wamid);
    assert!(
        find(Channel::Whatsapp, Direction::Outbound)
            .await
            .unwrap()
            .is_none(),
        "{}: not sent yet",
        w.name
    );
    s.set_delivery(&ours.id, DeliveryStatus::Sent, Some(&wamid), None)
        .await
        .unwrap();
    let found = |m: Option<Message>| m.map(|m| m.id);
    assert_eq!(
        found(find(Channel::Whatsapp, Direction::Outbound).await.unwrap()),
        Some(ours.id.clone()),
        "{}",
        w.name
    );
    assert_eq!(
        found(find(Channel::Whatsapp, Direction::Inbound).await.unwrap()),
        Some(theirs.id.clone()),
        "{}",
        w.name
    );
    assert_eq!(
        found(find(Channel::Telegram, Direction::Outbound).await.unwrap()),
        None,
        "{}: another channel's",
        w.name
    );
}
both!(a_provider_id_is_found_in_the_direction_asked_for);

/// A merge the core planned, run in rounds of one step as if the process died after every
/// step, on each adapter: everything of the customer that goes ends with the customer that
/// stays (identities, 60 conversation entries, 3 active tickets through the ticket path, of
/// which one moves and two are folded into it, a webchat session), the rounds add up to
/// more than one, and a merge run again changes nothing.
async fn a_merge_cut_after_every_step_resumes_and_a_repeat_changes_nothing(w: Wiring) {
    use helpdesk_core::flow::{run_merge, MergeProgress};
    let s = w.store.as_ref();
    let tg = ChannelIdentity {
        channel: Channel::Telegram,
        external_id: format!("tg{}", new_id()),
    };
    let wa = ChannelIdentity {
        channel: Channel::Whatsapp,
        external_id: format!("wa{}", new_id()),
    };
    let into = s.resolve_customer(&tg, Some("王芳"), None).await.unwrap();
    let from = s.resolve_customer(&wa, None, Some("zh")).await.unwrap();
    for i in 0..60 {
        let mut m = Message::outbound(
            &from.id,
            Channel::Whatsapp,
            MessageKind::Text,
            format!("第 {i} 条"),
            None,
        );
        m.provider_message_id = Some(format!("wamid.{}.{i}", from.id));
        s.append_message(&m).await.unwrap();
    }
    // Three tickets: one active, and two resolved before it (the store refuses a second
    // active one, at create and at reopen alike; folding is
    // `a_merge_folds_the_other_active_ticket_into_the_kept_one`).
    let mut tickets = Vec::new();
    for i in 0..3 {
        let mut t = ticket(&from.id);
        if i > 0 {
            t.status = TicketStatus::Resolved;
        }
        s.create_ticket(&t).await.unwrap();
        tickets.push(t);
    }
    s.create_session(&helpdesk_core::ports::WebchatSession {
        id: new_id(),
        token_hash: format!("h{}", new_id()),
        customer_id: from.id.clone(),
        created_at: now(),
        name: None,
        locale: None,
        expires_at: None,
    })
    .await
    .unwrap();

    let plan = MergePlan::new(&into.id, &from.id, "alice");
    let mut rounds = 0;
    let merged = loop {
        rounds += 1;
        assert!(rounds < 100, "{}: the merge never finished", w.name);
        match run_merge(s, &plan, 1).await.unwrap() {
            MergeProgress::Done(c) => break c,
            MergeProgress::Unfinished => {}
        }
    };
    // Identities, sessions, 3 pages of messages, tickets: a round each, then the last.
    assert_eq!(rounds, 7, "{}", w.name);
    assert_eq!(merged.identities.len(), 2, "{}", w.name);
    assert_eq!(merged.name.as_deref(), Some("王芳"));
    assert_eq!(merged.locale.as_deref(), Some("zh"));
    assert!(s.get_customer(&from.id).await.unwrap().is_none());
    assert_eq!(
        s.resolve_customer(&wa, None, None).await.unwrap().id,
        into.id
    );
    let moved = s
        .customer_messages(&into.id, Channel::Whatsapp, None, 100)
        .await
        .unwrap();
    assert_eq!(moved.len(), 60, "{}", w.name);
    for t in &tickets {
        let stored = s.get_ticket(&t.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.customer_id.as_str(), stored.version),
            (into.id.as_str(), t.version + 1),
            "{}: moved once, through the ticket path",
            w.name
        );
    }
    let still_active: Vec<Ticket> = {
        let mut out = Vec::new();
        for t in &tickets {
            out.push(s.get_ticket(&t.id).await.unwrap().unwrap());
        }
        out.into_iter().filter(|t| t.status.is_active()).collect()
    };
    assert_eq!(still_active.len(), 1, "{}: one active ticket", w.name);

    // Run again, whole or in rounds: nothing changes.
    assert_eq!(
        run_merge(s, &plan, usize::MAX).await.unwrap(),
        MergeProgress::Done(merged.clone())
    );
    for t in &tickets {
        assert_eq!(
            s.get_ticket(&t.id).await.unwrap().unwrap().version,
            t.version + 1
        );
    }
    // A customer is not merged into itself, nor into one that is not there.
    let e = run_merge(s, &MergePlan::new(&into.id, &into.id, "alice"), 10)
        .await
        .unwrap_err();
    assert_eq!(e.kind.status(), 422);
    let e = run_merge(s, &MergePlan::new("nobody", &into.id, "alice"), 10)
        .await
        .unwrap_err();
    assert_eq!(e.kind.status(), 404);
    assert_eq!(
        s.get_customer(&into.id).await.unwrap().unwrap(),
        merged,
        "{}: untouched",
        w.name
    );
}
both!(a_merge_cut_after_every_step_resumes_and_a_repeat_changes_nothing);

/// A merge where both customers have an active ticket: the customer that stays keeps
/// theirs, and the other's active ticket is folded into it (its messages moved onto the
/// kept ticket, itself closed with `merged_into`), while an older closed ticket simply
/// moves. Afterwards the customer that stays has one active ticket, and every message is
/// still there. Cut after every step, and run again, it ends the same.
async fn a_merge_folds_the_other_active_ticket_into_the_kept_one(w: Wiring) {
    use helpdesk_core::flow::{run_merge, MergeProgress};
    let s = w.store.as_ref();
    let identity = |channel, id: &str| ChannelIdentity {
        channel,
        external_id: format!("{id}{}", new_id()),
    };
    let into = s
        .resolve_customer(&identity(Channel::Telegram, "tg"), Some("王芳"), None)
        .await
        .unwrap();
    let from = s
        .resolve_customer(&identity(Channel::Whatsapp, "wa"), None, Some("zh"))
        .await
        .unwrap();
    let opened = |customer: &Customer| {
        let mut t = ticket(&customer.id);
        t.opened_by = Some(new_id());
        t
    };
    let kept = opened(&into);
    s.create_ticket(&kept).await.unwrap();
    let folded = opened(&from);
    s.create_ticket(&folded).await.unwrap();
    let mut old = ticket(&from.id);
    old.apply(
        &TicketPatch {
            status: Some(TicketStatus::Closed),
            ..Default::default()
        },
        now(),
    )
    .unwrap();
    s.create_ticket(&old).await.unwrap();
    let mut on_folded = Vec::new();
    for i in 0..3 {
        let mut m = Message::outbound(
            &from.id,
            Channel::Whatsapp,
            MessageKind::Text,
            format!("还没有到账 {i}"),
            Some(folded.id.clone()),
        );
        m.provider_message_id = Some(format!("wamid.{}.{i}", folded.id));
        s.append_message(&m).await.unwrap();
        on_folded.push(m.id);
    }

    let plan = MergePlan::new(&into.id, &from.id, "alice");
    let mut rounds = 0;
    while run_merge(s, &plan, 1).await.unwrap() == MergeProgress::Unfinished {
        rounds += 1;
        assert!(rounds < 50, "{}: the merge never finished", w.name);
    }
    run_merge(s, &plan, usize::MAX).await.unwrap();

    let k = s.get_ticket(&kept.id).await.unwrap().unwrap();
    assert_eq!((k.status, k.version), (TicketStatus::Open, kept.version));
    let f = s.get_ticket(&folded.id).await.unwrap().unwrap();
    assert_eq!(f.status, TicketStatus::Closed, "{}", w.name);
    assert_eq!(f.customer_id, into.id);
    assert_eq!(f.merged_into.as_deref(), Some(kept.id.as_str()));
    assert_eq!(f.version, folded.version + 1, "{}: one change", w.name);
    let o = s.get_ticket(&old.id).await.unwrap().unwrap();
    assert_eq!(
        (o.customer_id.as_str(), o.status, o.merged_into.as_deref()),
        (into.id.as_str(), TicketStatus::Closed, None)
    );
    let on_kept: Vec<String> = s
        .ticket_messages(&kept.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    for id in &on_folded {
        assert!(
            on_kept.contains(id),
            "{}: {id} moved to the kept ticket",
            w.name
        );
    }
    assert!(s.ticket_messages(&folded.id).await.unwrap().is_empty());
    let active = TicketFilter {
        customer_id: Some(into.id.clone()),
        active: true,
        ..Default::default()
    };
    let page = s.list_tickets(&active, 10, None).await.unwrap();
    assert_eq!(
        page.items.iter().map(|t| &t.id).collect::<Vec<_>>(),
        vec![&kept.id],
        "{}: one active ticket",
        w.name
    );
    assert_eq!(
        s.active_ticket_for(&into.id).await.unwrap().map(|t| t.id),
        Some(kept.id.clone())
    );

    // The customer that went leads to the one that stays, for jobs still naming it; a
    // merge of it into a third customer is refused.
    assert_eq!(
        helpdesk_core::flow::customer_for_job(s, &from.id)
            .await
            .unwrap()
            .map(|c| c.id),
        Some(into.id.clone())
    );
    let third = s
        .resolve_customer(&identity(Channel::Telegram, "tg"), None, None)
        .await
        .unwrap();
    let e = run_merge(s, &MergePlan::new(&third.id, &from.id, "alice"), 10)
        .await
        .unwrap_err();
    assert_eq!((e.kind.status(), e.code), (409, "already_merged"));
}
both!(a_merge_folds_the_other_active_ticket_into_the_kept_one);

/// When only the customer that goes has an active ticket, it moves over and stays active:
/// the customer that stays goes on with it.
async fn a_merge_moves_the_only_active_ticket(w: Wiring) {
    use helpdesk_core::flow::run_merge;
    let s = w.store.as_ref();
    let tg = ChannelIdentity {
        channel: Channel::Telegram,
        external_id: format!("tg{}", new_id()),
    };
    let wa = ChannelIdentity {
        channel: Channel::Whatsapp,
        external_id: format!("wa{}", new_id()),
    };
    let into = s.resolve_customer(&tg, None, None).await.unwrap();
    let from = s.resolve_customer(&wa, None, None).await.unwrap();
    let mut t = ticket(&from.id);
    t.opened_by = Some(new_id());
    s.create_ticket(&t).await.unwrap();
    run_merge(s, &MergePlan::new(&into.id, &from.id, "alice"), usize::MAX)
        .await
        .unwrap();
    let moved = s.get_ticket(&t.id).await.unwrap().unwrap();
    assert_eq!(
        (moved.customer_id.as_str(), moved.status, moved.merged_into),
        (into.id.as_str(), TicketStatus::Open, None),
        "{}",
        w.name
    );
    assert_eq!(
        s.active_ticket_for(&into.id).await.unwrap().map(|t| t.id),
        Some(t.id.clone()),
        "{}",
        w.name
    );
}
both!(a_merge_moves_the_only_active_ticket);

/// An active ticket moved to a customer who has one (a merge that read them before their
/// ticket was opened) is refused as a reopen is, naming theirs, and left as it was; once
/// theirs has ended the move goes through, the moved ticket is the one their messages join,
/// and the customer it left may open another.
async fn an_active_ticket_merged_beside_another_is_refused(w: Wiring) {
    let s = w.store.as_ref();
    let (into, from) = (new_id(), new_id());
    let theirs = ticket(&into);
    s.create_ticket(&theirs).await.unwrap();
    let moving = ticket(&from);
    s.create_ticket(&moving).await.unwrap();

    let mut merged = moving.clone();
    merged.move_to_customer(&into, now());
    let err = s.update_ticket(&merged, moving.version).await.unwrap_err();
    assert_eq!(
        (err.kind.status(), err.code),
        (409, "active_ticket_exists"),
        "{}: {err}",
        w.name
    );
    assert!(err.message.contains(&theirs.id), "{}: {err}", w.name);
    let stored = s.get_ticket(&moving.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.customer_id.as_str(), stored.version),
        (from.as_str(), moving.version),
        "{}: the ticket is unchanged",
        w.name
    );

    let ended = moved(&theirs, TicketStatus::Resolved);
    s.update_ticket(&ended, theirs.version).await.unwrap();
    s.update_ticket(&merged, moving.version).await.unwrap();
    assert_eq!(
        s.active_ticket_for(&into).await.unwrap().map(|t| t.id),
        Some(moving.id.clone()),
        "{}",
        w.name
    );
    assert_eq!(
        s.active_ticket_for(&from).await.unwrap(),
        None,
        "{}",
        w.name
    );
    s.create_ticket(&ticket(&from)).await.unwrap();
    let again = ticket(&into);
    assert_eq!(
        s.create_ticket(&again).await.unwrap_err().code,
        "active_ticket_exists",
        "{}",
        w.name
    );
}
both!(an_active_ticket_merged_beside_another_is_refused);

/// Merges racing the customer that stays: each round, the customer that goes has an active
/// ticket and the one that stays has none when the merge starts, and opens one while it
/// runs. Whichever comes first, the customer that stays ends with one active ticket (the
/// other folded into it, or their own refused), and the merge finishes.
async fn a_merge_racing_a_new_ticket_leaves_one_active(w: Wiring) {
    use helpdesk_core::flow::{run_merge, MergeProgress};
    let store: Arc<dyn Store> = w.store.clone();
    for round in 0..8 {
        let into = store
            .resolve_customer(&identity(Channel::Telegram), None, None)
            .await
            .unwrap();
        let from = store
            .resolve_customer(&identity(Channel::Whatsapp), None, None)
            .await
            .unwrap();
        let moving = ticket(&from.id);
        store.create_ticket(&moving).await.unwrap();
        let plan = MergePlan::new(&into.id, &from.id, "alice");
        let merge = {
            let store = store.clone();
            tokio::spawn(async move { run_merge(store.as_ref(), &plan, usize::MAX).await })
        };
        let create = {
            let (store, t) = (store.clone(), ticket(&into.id));
            tokio::spawn(async move {
                // Each round starts the new ticket a little later, across the merge's steps.
                tokio::time::sleep(std::time::Duration::from_millis(round * 3)).await;
                store.create_ticket(&t).await.map(|()| t.id)
            })
        };
        let merged = merge.await.unwrap();
        assert!(
            matches!(merged, Ok(MergeProgress::Done(_))),
            "{} round {round}: {merged:?}",
            w.name
        );
        if let Err(e) = create.await.unwrap() {
            assert_eq!(e.code, "active_ticket_exists", "{}: {e}", w.name);
        }
        let active = TicketFilter {
            customer_id: Some(into.id.clone()),
            active: true,
            ..Default::default()
        };
        assert_eq!(
            store.count_tickets(&active).await.unwrap(),
            1,
            "{} round {round}: the customer that stays has one active ticket",
            w.name
        );
        let left = TicketFilter {
            customer_id: Some(from.id.clone()),
            ..Default::default()
        };
        assert_eq!(
            store.count_tickets(&left).await.unwrap(),
            0,
            "{} round {round}: nothing is left with the customer that went",
            w.name
        );
    }
}
both!(a_merge_racing_a_new_ticket_leaves_one_active);

fn identity(channel: Channel) -> ChannelIdentity {
    ChannelIdentity {
        channel,
        external_id: format!("{}{}", channel.as_str(), new_id()),
    }
}

/// A customer takes part in one merge at a time. While a merge into C is unfinished, C
/// cannot be merged away into D (the identities moving to C would be left naming a customer
/// that is gone), and a second customer cannot be merged into C (each merge would write
/// C's record without the other's identities): both are 409 `merge_in_progress`, and move
/// nothing. The unfinished merge goes on, and once it is done both go through, with every
/// identity ending on the customer that stays.
async fn a_customer_takes_part_in_one_merge_at_a_time(w: Wiring) {
    use helpdesk_core::flow::{customer_for_job, run_merge, MergeProgress};
    let s = w.store.as_ref();
    let f1_id = identity(Channel::Whatsapp);
    let f2_id = identity(Channel::Telegram);
    let f1 = s.resolve_customer(&f1_id, None, None).await.unwrap();
    let f2 = s.resolve_customer(&f2_id, None, None).await.unwrap();
    let c = s
        .resolve_customer(&identity(Channel::Telegram), None, None)
        .await
        .unwrap();
    let d = s
        .resolve_customer(&identity(Channel::Whatsapp), None, None)
        .await
        .unwrap();
    let first = MergePlan::new(&c.id, &f1.id, "alice");
    assert_eq!(
        run_merge(s, &first, 1).await.unwrap(),
        MergeProgress::Unfinished,
        "{}",
        w.name
    );

    for (plan, what) in [
        (MergePlan::new(&d.id, &c.id, "bob"), "C merged away"),
        (
            MergePlan::new(&c.id, &f2.id, "bob"),
            "a second merge into C",
        ),
    ] {
        let e = run_merge(s, &plan, usize::MAX).await.unwrap_err();
        assert_eq!(
            (e.kind.status(), e.code),
            (409, "merge_in_progress"),
            "{}: {what}: {e}",
            w.name
        );
        // Nothing moved, and no job is sent anywhere else.
        let from = customer_for_job(s, &plan.from).await.unwrap().unwrap();
        assert_eq!(from.id, plan.from, "{}: {what}", w.name);
    }

    while run_merge(s, &first, 1).await.unwrap() == MergeProgress::Unfinished {}
    run_merge(s, &MergePlan::new(&c.id, &f2.id, "bob"), usize::MAX)
        .await
        .unwrap();
    let MergeProgress::Done(merged) =
        run_merge(s, &MergePlan::new(&d.id, &c.id, "bob"), usize::MAX)
            .await
            .unwrap()
    else {
        panic!("{}: the merge into D finished", w.name)
    };
    for id in [&f1_id, &f2_id] {
        assert!(merged.identities.contains(id), "{}: {id:?}", w.name);
        let found = s.resolve_customer(id, None, None).await.unwrap();
        assert_eq!(found.id, d.id, "{}: {id:?} leads to D", w.name);
    }
    for gone in [&f1.id, &f2.id, &c.id] {
        assert!(s.get_customer(gone).await.unwrap().is_none(), "{}", w.name);
    }
}
both!(a_customer_takes_part_in_one_merge_at_a_time);

/// A webchat session read just before a merge moved it to the customer that stays, then
/// renewed by the visitor's next use: the renewal keeps the session with the customer that
/// stays (the visitor goes on reading their conversation), and a session that is gone is
/// not brought back by a renewal.
async fn a_session_renewed_across_a_merge_stays_with_the_customer_that_stays(w: Wiring) {
    use helpdesk_core::flow::run_merge;
    use helpdesk_core::ports::WebchatSession;
    let s = w.store.as_ref();
    let visitor = new_id();
    let from = s
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Webchat,
                external_id: visitor.clone(),
            },
            None,
            None,
        )
        .await
        .unwrap();
    let into = s
        .resolve_customer(&identity(Channel::Telegram), None, None)
        .await
        .unwrap();
    let session = WebchatSession {
        id: visitor,
        token_hash: format!("hash-{}", new_id()),
        customer_id: from.id.clone(),
        created_at: now(),
        name: None,
        locale: Some("zh".into()),
        expires_at: Some(now().timestamp() + 60),
    };
    s.create_session(&session).await.unwrap();
    let read = s
        .session_by_token_hash(&session.token_hash)
        .await
        .unwrap()
        .unwrap();
    run_merge(s, &MergePlan::new(&into.id, &from.id, "alice"), usize::MAX)
        .await
        .unwrap();
    let mut renewed = read;
    renewed.expires_at = Some(now().timestamp() + 3600);
    s.update_session(&renewed).await.unwrap();
    let stored = s
        .session_by_token_hash(&session.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.customer_id, into.id, "{}", w.name);

    let mut ghost = renewed.clone();
    ghost.token_hash = format!("hash-{}", new_id());
    s.update_session(&ghost).await.unwrap();
    assert!(
        s.session_by_token_hash(&ghost.token_hash)
            .await
            .unwrap()
            .is_none(),
        "{}",
        w.name
    );
}
both!(a_session_renewed_across_a_merge_stays_with_the_customer_that_stays);

fn canned(code: &str, content: &str, by: &str) -> CannedResponse {
    CannedResponse::new(code, content, by, now()).expect("a valid canned response")
}

async fn canned_responses_are_saved_replaced_listed_in_order_and_deleted(w: Wiring) {
    let s = w.store.as_ref();
    assert_eq!(
        s.list_canned().await.unwrap(),
        vec![],
        "{}: none yet",
        w.name
    );
    // Made out of order, with a Chinese code and content and a code with capitals.
    assert!(s
        .put_canned(&canned("退款", "您好，退款将在3个工作日内到账。", "alice"))
        .await
        .unwrap());
    assert!(s
        .put_canned(&canned(
            "Reset-PW",
            "Open Settings, then Reset password.",
            "alice"
        ))
        .await
        .unwrap());
    assert!(s
        .put_canned(&canned("hello_2", "Hello! How can I help?", "alice"))
        .await
        .unwrap());
    let codes = |list: &[CannedResponse]| {
        list.iter()
            .map(|c| c.short_code.clone())
            .collect::<Vec<_>>()
    };
    let listed = s.list_canned().await.unwrap();
    // By code point: ASCII digits and letters before Chinese.
    assert_eq!(
        codes(&listed),
        ["hello_2", "reset-pw", "退款"],
        "{}",
        w.name
    );
    assert_eq!(listed[2].content, "您好，退款将在3个工作日内到账。");
    assert_eq!(listed[2].updated_by, "alice");

    // `RESET-pw` folds to the same code: a replace, not a second one.
    let replaced = canned("RESET-pw", "Go to Settings › Security › Reset.", "bob");
    assert!(
        !s.put_canned(&replaced).await.unwrap(),
        "{}: replaced",
        w.name
    );
    let listed = s.list_canned().await.unwrap();
    assert_eq!(listed.len(), 3, "{}", w.name);
    assert_eq!(listed[1], replaced, "{}", w.name);
    // The same PUT again changes nothing but is still a replace.
    assert!(!s.put_canned(&replaced).await.unwrap());
    assert_eq!(s.list_canned().await.unwrap()[1], replaced);

    assert!(s.delete_canned("退款").await.unwrap(), "{}", w.name);
    assert!(!s.delete_canned("退款").await.unwrap(), "{}: gone", w.name);
    assert!(!s.delete_canned("nothing").await.unwrap());
    assert_eq!(
        codes(&s.list_canned().await.unwrap()),
        ["hello_2", "reset-pw"]
    );
    // Deleted, the code can be made again.
    assert!(s
        .put_canned(&canned("退款", "退款说明", "bob"))
        .await
        .unwrap());
    assert_eq!(s.list_canned().await.unwrap().len(), 3);
}
both!(canned_responses_are_saved_replaced_listed_in_order_and_deleted);

async fn racing_creates_for_the_last_canned_places_never_pass_the_cap(w: Wiring) {
    use helpdesk_core::domain::canned::MAX_CANNED_RESPONSES;
    let s = w.store.clone();
    // All but three places taken, eight at a time.
    let mut made = 0;
    while made < MAX_CANNED_RESPONSES - 3 {
        let batch = (MAX_CANNED_RESPONSES - 3 - made).min(8);
        let tasks = (made..made + batch)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.put_canned(&canned(&format!("c{i:04}"), "text", "a"))
                        .await
                })
            })
            .collect();
        for r in join_all(tasks).await {
            assert!(r.unwrap(), "{}: a new one", w.name);
        }
        made += batch;
    }
    // Ten new codes race for the last three places; a replace is never refused.
    let tasks = (0..10)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.put_canned(&canned(&format!("race{i}"), "text", "b"))
                    .await
            })
        })
        .collect();
    let results = join_all(tasks).await;
    let won = results.iter().filter(|r| matches!(r, Ok(true))).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code == "too_many_canned_responses" && e.kind.status() == 422))
        .count();
    assert_eq!((won, refused), (3, 7), "{}: {results:?}", w.name);
    assert_eq!(s.list_canned().await.unwrap().len(), MAX_CANNED_RESPONSES);
    assert!(!s
        .put_canned(&canned("c0000", "changed", "b"))
        .await
        .unwrap());
    // A delete frees a place.
    assert!(s.delete_canned("c0001").await.unwrap());
    assert!(s.put_canned(&canned("late", "text", "b")).await.unwrap());
    assert_eq!(
        s.put_canned(&canned("later", "text", "b"))
            .await
            .unwrap_err()
            .code,
        "too_many_canned_responses"
    );
}
both!(racing_creates_for_the_last_canned_places_never_pass_the_cap);

/// Two supervisors creating one new code at once: with `create_only` (the console's New
/// form), one makes it and the others are refused with `canned_response_exists`, in the
/// write that would have replaced it; the one made is kept as its maker wrote it.
async fn racing_creates_of_one_canned_code_make_it_once_and_refuse_the_rest(w: Wiring) {
    let s = w.store.clone();
    let tasks = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.save_canned(&canned("发票", &format!("第 {i} 位主管写的"), "sup"), true)
                    .await
            })
        })
        .collect();
    let results: Vec<_> = join_all(tasks).await;
    let won: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Ok(true)))
        .map(|(i, _)| i)
        .collect();
    let refused = results
        .iter()
        .filter(
            |r| matches!(r, Err(e) if e.code == "canned_response_exists" && e.kind.status() == 409),
        )
        .count();
    assert_eq!((won.len(), refused), (1, 7), "{}: {results:?}", w.name);
    let kept = s.list_canned().await.unwrap();
    assert_eq!(kept.len(), 1, "{}", w.name);
    assert_eq!(
        kept[0].content,
        format!("第 {} 位主管写的", won[0]),
        "{}",
        w.name
    );
    // The code folds: `HELLO` is `hello`'s twin.
    assert!(s
        .save_canned(&canned("hello", "Hello!", "sup"), true)
        .await
        .unwrap());
    let twin = s
        .save_canned(&canned("HELLO", "Hi!", "sup"), true)
        .await
        .unwrap_err();
    assert_eq!(twin.code, "canned_response_exists", "{}", w.name);
    assert!(twin.message.contains("/hello"), "{}", twin.message);
    // Without it, a PUT replaces as before.
    assert!(!s
        .save_canned(&canned("HELLO", "Hi!", "sup"), false)
        .await
        .unwrap());
    assert_eq!(
        s.list_canned().await.unwrap()[0].content,
        "Hi!",
        "{}",
        w.name
    );
}
both!(racing_creates_of_one_canned_code_make_it_once_and_refuse_the_rest);

/// A ticket's conversation is in the order things happened, on both stores: an entry
/// written after the fact (the ticket's history, which the change feed writes after the
/// messages of its moment) sits where its time puts it, a time on a whole second sorts
/// before the same second's later times, and the pages follow that order.
async fn a_conversation_is_in_the_order_things_happened(w: Wiring) {
    use chrono::{Duration, Timelike};
    let s = w.store.as_ref();
    let customer = format!("c-order-{}", new_id());
    let t = Ticket::open(
        NewTicket {
            customer_id: customer.clone(),
            channel: Channel::Webchat,
            subject: None,
            description: "快递三天了还没到".into(),
            priority: Priority::Normal,
            skill: Skill::General,
        },
        now(),
    );
    s.create_ticket(&t).await.unwrap();
    let second = now().with_nanosecond(0).unwrap();
    // Written in this order; dated 0.5 s, 0 s, 1.5 s and 1 s after a whole second.
    for (ms, text) in [
        (500, "客户：在吗"),
        (0, "客户：快递没到"),
        (1500, "客服：在查"),
        (1000, "记录：已分配"),
    ] {
        let mut m = Message::outbound(
            &customer,
            Channel::Webchat,
            MessageKind::AgentReply,
            text.to_string(),
            Some(t.id.clone()),
        );
        m.created_at = second + Duration::milliseconds(ms);
        assert!(s.append_message(&m).await.unwrap());
    }
    let texts = |ms: &[Message]| ms.iter().map(|m| m.text.clone()).collect::<Vec<_>>();
    let in_order = ["客户：快递没到", "客户：在吗", "记录：已分配", "客服：在查"];
    assert_eq!(
        texts(&s.ticket_messages(&t.id).await.unwrap()),
        in_order,
        "{}",
        w.name
    );
    let newest = s.ticket_messages_page(&t.id, None, 3).await.unwrap();
    assert_eq!(texts(&newest.items), in_order[1..], "{}", w.name);
    let before = s
        .ticket_messages_page(&t.id, newest.next_cursor.as_deref(), 3)
        .await
        .unwrap();
    assert_eq!(texts(&before.items), in_order[..1], "{}", w.name);
    assert_eq!(before.next_cursor, None, "{}", w.name);
}
both!(a_conversation_is_in_the_order_things_happened);

/// The visitor's poll asks for what follows the last message it holds. A message stored a
/// little after its time (an agent's reply made just before the auto-reply the visitor
/// already read, and written just after it) is still given, on both stores: a read after
/// an entry starts [`LATE_WRITE_SECS`] before it. Those the reader holds come again, the
/// entry itself never; one ordered earlier than that is the reader's to find on a reload.
/// Read back from an entry, the conversation is in the same order.
async fn a_reader_after_a_message_is_given_one_stored_late_before_it(w: Wiring) {
    use chrono::Duration;
    let s = w.store.as_ref();
    let customer = format!("c-late-{}", new_id());
    let customer = customer.as_str();
    let at = now();
    let say = |text: &str, offset_ms: i64, kind: MessageKind| {
        let mut m = Message::outbound(customer, Channel::Webchat, kind, text.to_string(), None);
        m.created_at = at + Duration::milliseconds(offset_ms);
        m
    };
    let texts = |ms: &[Message]| ms.iter().map(|m| m.text.clone()).collect::<Vec<_>>();
    let read = move |after: Option<String>| async move {
        s.customer_messages(customer, Channel::Webchat, after.as_deref(), 100)
            .await
            .unwrap()
    };

    let auto = say("自动回复：请稍候", 0, MessageKind::AutoReply);
    assert!(s.append_message(&auto).await.unwrap());
    assert_eq!(texts(&read(None).await), ["自动回复：请稍候"], "{}", w.name);

    // Made 2 s before the auto-reply, stored after the visitor read it.
    let late = say("客服：您好，我来帮您", -2_000, MessageKind::AgentReply);
    assert!(s.append_message(&late).await.unwrap());
    let mut note = say("内部备注：VIP", -1_000, MessageKind::Note);
    note.direction = Direction::Internal;
    assert!(s.append_message(&note).await.unwrap());
    // Older than the look-back: a reload shows it, a poll does not.
    let old = say(
        "很早以前的消息",
        -(LATE_WRITE_SECS + 5) * 1_000,
        MessageKind::AgentReply,
    );
    assert!(s.append_message(&old).await.unwrap());
    assert_eq!(
        texts(&read(Some(auto.id.clone())).await),
        ["客服：您好，我来帮您"],
        "{}: the late reply, not the auto-reply the reader holds, nor the note",
        w.name
    );

    let next = say("客服：已为您退款", 1_000, MessageKind::AgentReply);
    assert!(s.append_message(&next).await.unwrap());
    assert_eq!(
        texts(&read(Some(auto.id.clone())).await),
        ["客服：您好，我来帮您", "客服：已为您退款"],
        "{}: in the conversation's order",
        w.name
    );
    assert_eq!(
        texts(&read(Some(next.id.clone())).await),
        ["客服：您好，我来帮您", "自动回复：请稍候"],
        "{}: the moments before the bookmark again, the bookmark itself not",
        w.name
    );
    assert_eq!(
        texts(&read(None).await),
        [
            "很早以前的消息",
            "客服：您好，我来帮您",
            "自动回复：请稍候",
            "客服：已为您退款"
        ],
        "{}: the whole conversation in its order",
        w.name
    );
    assert_eq!(
        texts(
            &s.customer_messages(customer, Channel::Webchat, None, 2)
                .await
                .unwrap()
        ),
        ["自动回复：请稍候", "客服：已为您退款"],
        "{}: a chat opens on its newest entries",
        w.name
    );
    assert_eq!(
        texts(&s.customer_messages_before(&next, 10).await.unwrap()),
        ["自动回复：请稍候", "客服：您好，我来帮您", "很早以前的消息"],
        "{}: and back from an entry, newest first",
        w.name
    );
    let unknown = s
        .customer_messages(customer, Channel::Webchat, Some("no-such-message"), 100)
        .await;
    assert!(
        unknown.is_err(),
        "{}: an unknown bookmark is refused",
        w.name
    );
}
both!(a_reader_after_a_message_is_given_one_stored_late_before_it);
