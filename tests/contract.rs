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
    a.agent_replied("alice", now());
    s.update_ticket(&a, 1).await.unwrap();
    let mut b = t.clone();
    b.agent_replied("bob", now());
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
                mine.agent_replied(&format!("agent{i}"), now());
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

/// A customer's message opens at most one active ticket; agents may add more by hand; once
/// the ticket is closed, the next message opens a new one.
async fn a_customer_has_one_ticket_their_messages_opened(w: Wiring) {
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
    s.create_ticket(&ticket(&customer))
        .await
        .expect("by hand, an agent may open another");
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
    let mut third = ticket(&customer);
    third.opened_by = Some(new_id());
    s.create_ticket(&third).await.unwrap();
}
both!(a_customer_has_one_ticket_their_messages_opened);

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
