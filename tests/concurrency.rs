//! Agents racing over HTTP, on both wirings: the real `helpdesk serve` (SQLite), and the
//! real `tickets` Lambda binary on DynamoDB (the local emulator), several instances at
//! once, since one Lambda instance takes one event at a time.
//!
//! - Fifty `PATCH /tickets/{id}` with one `If-Match`: one 200, 49 × 409 `version_conflict`,
//!   and the ticket holds the winner's change only.
//! - Twenty agent replies with one `Idempotency-Key`: one message stored, every answer the
//!   same 202 with its id, and every outbound job names that one message (dispatch sends a
//!   message once, however often it is queued).
//! - Twenty tickets made by hand for one customer at once: one 201, 19 × 409
//!   `active_ticket_exists` naming it (a customer has one active ticket).
//! - Ten resolved tickets of one customer reopened at once: one 200, nine × 409
//!   `active_ticket_exists` naming it; and what a reopen costs on DynamoDB, next to an
//!   ordinary save of an active ticket, which costs what it did before reopens were checked.
//! - An agent's count of held tickets on DynamoDB is never one short when its write fails
//!   beside an assignment or a reopen.
//! - A follow-up that joins a ticket while a merge folds it ends on the kept ticket, in
//!   either order of their writes.
//! - A list with a filter reads a bounded share of the index a request.

mod aws_harness;
mod common;

use aws_harness::{http_answer, http_event, Runtime, Stack};
use common::{Server, TempDir, ADMIN};
use helpdesk_core::aws::DynamoStore;
use helpdesk_core::domain::{
    Channel, ChannelIdentity, Message, NewTicket, Priority, Skill, Ticket, TicketPatch,
    TicketStatus,
};
use helpdesk_core::ports::{CustomerStore, TicketStore};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

const PATCHES: usize = 50;
const REPLIES: usize = 20;
const CREATES: usize = 20;
const REOPENS: usize = 10;
/// Lambda instances of the tickets function serving one test at once.
const INSTANCES: usize = 5;

/// What fifty racing PATCHes answered: (status, error code or the assignee set).
fn tally(answers: &[(u16, Value)]) -> (Vec<&Value>, usize) {
    let winners: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    let conflicts = answers
        .iter()
        .filter(|(status, body)| *status == 409 && body["error"]["code"] == "version_conflict")
        .count();
    (winners, conflicts)
}

#[tokio::test]
async fn fifty_patches_with_one_if_match_make_one_winner_on_the_local_server() {
    let dir = TempDir::new();
    // Each PATCH gives the ticket to another agent, and locally a ticket goes only to an
    // agent the tokens name.
    let team = (0..PATCHES)
        .map(|i| format!("坐席{i}:agent:agent-token-{i:02}"))
        .collect::<Vec<_>>()
        .join(",");
    let server = Server::start(&dir.0, &[("HELPDESK_AGENTS", team.as_str())]).await;
    let visitor = server.visitor().await;
    visitor.say("我要人工客服，订单一直没有发货").await;
    let id = visitor.wait_for("handoff").await["ticket_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, version) = server.ticket(&id).await;

    let url = server.url(&format!("/tickets/{id}"));
    let sends: Vec<_> = (0..PATCHES)
        .map(|i| {
            let req = server
                .http
                .patch(&url)
                .bearer_auth(ADMIN)
                .header("If-Match", version.to_string())
                .json(&json!({"assignee": format!("坐席{i}"), "priority": "high"}));
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for s in sends {
        answers.push(s.await.unwrap());
    }
    let (winners, conflicts) = tally(&answers);
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert_eq!(conflicts, PATCHES - 1, "{answers:?}");
    let winner = winners[0]["assignee"].as_str().unwrap().to_string();

    let (stored, now_at) = server.ticket(&id).await;
    assert_eq!(now_at, version + 1, "one change saved");
    assert_eq!(stored["ticket"]["assignee"], json!(winner));
    assert_eq!(stored["ticket"]["priority"], "high");
    server.kill().await;
}

/// Fifty PATCHes, ten to each of five instances of the tickets Lambda, all queued at once.
#[tokio::test]
async fn fifty_patches_with_one_if_match_make_one_winner_on_lambda_and_dynamodb() {
    let stack = Stack::new().await;
    let (instances, id) = ticket_on_lambda(&stack).await;
    let version = version_on_lambda(&instances[0], &id).await;

    let path = format!("/tickets/{id}");
    let version_header = version.to_string();
    let events = (0..PATCHES).map(|i| {
        http_event(
            "PATCH",
            &path,
            &[("if-match", &version_header)],
            Some(json!({"assignee": format!("坐席{i}"), "priority": "urgent"})),
            Some(("alice", "supervisor")),
        )
    });
    let answers = at_once(&instances, events).await;
    let (winners, conflicts) = tally(&answers);
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert_eq!(conflicts, PATCHES - 1, "{answers:?}");
    let winner = winners[0]["assignee"].as_str().unwrap().to_string();

    let (status, stored) = http_answer(
        &instances[0]
            .call(http_event(
                "GET",
                &path,
                &[],
                None,
                Some(("alice", "supervisor")),
            ))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200);
    assert_eq!(stored["ticket"]["assignee"], json!(winner));
    assert_eq!(stored["ticket"]["priority"], "urgent");
    assert_eq!(version_on_lambda(&instances[0], &id).await, version + 1);
    stop(instances).await;
}

/// Twenty retries of one agent reply with one `Idempotency-Key`, four to each of five
/// instances of the tickets Lambda, all queued at once.
#[tokio::test]
async fn twenty_replies_with_one_idempotency_key_queue_one_message_on_lambda_and_dynamodb() {
    let stack = Stack::new().await;
    let (instances, id) = ticket_on_lambda(&stack).await;
    let path = format!("/tickets/{id}/replies");
    let events = (0..REPLIES).map(|_| {
        http_event(
            "POST",
            &path,
            &[("idempotency-key", "reply-7f3a")],
            Some(json!({"text": "已为您办理退款，请留意账户"})),
            Some(("alice", "supervisor")),
        )
    });
    let mut ids = BTreeSet::new();
    for (status, body) in at_once(&instances, events).await {
        assert_eq!(status, 202, "{body}");
        ids.insert(body["message_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one message for one key: {ids:?}");
    let message_id = ids.into_iter().next().unwrap();

    let (status, body) = http_answer(
        &instances[0]
            .call(http_event(
                "GET",
                &format!("/tickets/{id}"),
                &[],
                None,
                Some(("alice", "supervisor")),
            ))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let replies: Vec<&Value> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "agent_reply")
        .collect();
    assert_eq!(replies.len(), 1, "{body}");
    assert_eq!(replies[0]["id"], json!(message_id));

    // The outbound queue may hold the job more than once (a standard queue, and each
    // retry queues it again); every job names the one message.
    let jobs = stack.drain("OUTBOUND_QUEUE_URL").await;
    let named: BTreeSet<String> = jobs["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            body["message_id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(named, BTreeSet::from([message_id]), "{jobs}");
    stop(instances).await;
}

/// Twenty tickets made by hand for one customer, four to each of five instances of the
/// tickets Lambda, all queued at once: the customer's marker, written in one transaction
/// with the ticket, lets one through.
#[tokio::test]
async fn twenty_tickets_by_hand_for_one_customer_make_one_on_lambda_and_dynamodb() {
    let stack = Stack::new().await;
    let customer = customer_on_dynamodb(&stack).await;
    let instances = tickets_instances(&stack).await;
    let events = (0..CREATES).map(|i| {
        http_event(
            "POST",
            "/tickets",
            &[],
            Some(json!({"customer_id": customer, "description": format!("来电 {i}：退款没到账")})),
            Some(("alice", "supervisor")),
        )
    });
    let answers = at_once(&instances, events).await;
    one_active(&answers, 201);
    let (status, list) = http_answer(
        &instances[0]
            .call(http_event(
                "GET",
                &format!("/tickets?customer_id={customer}"),
                &[],
                None,
                Some(("alice", "supervisor")),
            ))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1, "{list}");
    stop(instances).await;
}

/// Ten resolved tickets of one customer, reopened at once over five instances of the
/// tickets Lambda: the reopen takes the customer's marker in its write, so one goes through
/// and each other is refused naming it, with its ticket left resolved at its version.
#[tokio::test]
async fn ten_reopens_for_one_customer_make_one_active_on_lambda_and_dynamodb() {
    let stack = Stack::new().await;
    let store = DynamoStore::new(&stack.config, stack.tables.clone());
    let customer = customer_on_dynamodb(&stack).await;
    let mut resolved = Vec::new();
    for i in 0..REOPENS {
        let t = resolved_ticket(&store, &customer, &format!("第 {i} 次：退款没到账")).await;
        resolved.push(t);
    }
    let instances = tickets_instances(&stack).await;
    let events = resolved.iter().map(|t| {
        http_event(
            "PATCH",
            &format!("/tickets/{}", t.id),
            &[("if-match", &t.version.to_string())],
            Some(json!({"status": "open"})),
            Some(("alice", "supervisor")),
        )
    });
    let answers = at_once(&instances, events).await;
    let id = one_active(&answers, 200);
    for t in &resolved {
        let stored = store.get_ticket(&t.id).await.unwrap().unwrap();
        if stored.id != id {
            assert_eq!((stored.status, stored.version), (t.status, t.version));
        }
    }
    assert_eq!(
        store
            .active_ticket_for(&customer)
            .await
            .unwrap()
            .map(|t| t.id),
        Some(id.to_string())
    );
    stop(instances).await;
}

/// The DynamoDB requests of a save, counted at a proxy: an ordinary save of an active
/// ticket is the conditional put and the marker's take, as before reopens were checked (no
/// read, no transaction); a reopen pays for its check (its put refused, one read, one
/// transaction); a refused reopen reads what it names.
#[tokio::test]
async fn an_active_tickets_save_costs_no_more_and_a_reopen_pays_for_its_check() {
    let stack = Stack::new().await;
    let proxy = aws_harness::dynamo_proxy::DynamoProxy::start(&stack.config).await;
    let store = DynamoStore::new(&proxy.config, stack.tables.clone());
    let customer = customer_on_dynamodb(&stack).await;
    let first = resolved_ticket(&store, &customer, "发票开错了").await;
    let second = resolved_ticket(&store, &customer, "还是开错了").await;
    let counted = |proxy: &aws_harness::dynamo_proxy::DynamoProxy| {
        ["PutItem", "GetItem", "TransactWriteItems", "Query"].map(|op| proxy.count(op))
    };
    let delta = |before: [usize; 4], after: [usize; 4]| [0, 1, 2, 3].map(|i| after[i] - before[i]);

    let before = counted(&proxy);
    let reopened = status(&first, TicketStatus::Open);
    store.update_ticket(&reopened, first.version).await.unwrap();
    assert_eq!(
        delta(before, counted(&proxy)),
        [1, 1, 1, 0],
        "a reopen: put refused, the ticket read, the transaction with the marker"
    );

    let before = counted(&proxy);
    let pending = status(&reopened, TicketStatus::Pending);
    store
        .update_ticket(&pending, reopened.version)
        .await
        .unwrap();
    let mut urgent = pending.clone();
    urgent
        .apply(
            &TicketPatch {
                priority: Some(Priority::Urgent),
                ..Default::default()
            },
            helpdesk_core::domain::now(),
        )
        .unwrap();
    store.update_ticket(&urgent, pending.version).await.unwrap();
    assert_eq!(
        delta(before, counted(&proxy)),
        [4, 0, 0, 0],
        "two saves of an active ticket: each its put and the marker's take, nothing else"
    );

    let before = counted(&proxy);
    let refused = store
        .update_ticket(&status(&second, TicketStatus::Open), second.version)
        .await
        .unwrap_err();
    assert_eq!(refused.code, "active_ticket_exists");
    assert_eq!(
        delta(before, counted(&proxy)),
        [1, 4, 1, 0],
        "a refused reopen: put and transaction refused, the ticket read twice, the marker and \
         the ticket it names"
    );
}

/// On DynamoDB an agent's held tickets are a set beside the tickets, and the set may be
/// written while the ticket is not (DynamoDB throttles one, a Lambda times out between the
/// two). A set one over heals (the next assignment that finds the agent full counts them
/// again); one short never did, and let the agent take a ticket past their capacity. So the
/// new holder takes the ticket into their set before the ticket names them: when that write
/// fails, neither a manual assignment nor a reopen of an assigned ticket is saved, and their
/// retry saves both. A save that keeps the holder costs its one put, as before.
#[tokio::test]
async fn a_holders_count_is_never_one_short_when_its_write_fails() {
    use aws_harness::dynamo_proxy::OnUpdate;
    use helpdesk_core::domain::AgentProfile;
    use helpdesk_core::ports::AgentStore;
    let stack = Stack::new().await;
    let proxy = aws_harness::dynamo_proxy::DynamoProxy::start(&stack.config).await;
    let store = DynamoStore::new(&proxy.config, stack.tables.clone());
    store
        .put_agent(&AgentProfile {
            capacity: 1,
            ..AgentProfile::default_for("dora")
        })
        .await
        .unwrap();
    let held_by_dora = || async {
        let dora = store.get_agent("dora").await.unwrap().unwrap();
        dora.open_tickets
    };
    let customer = customer_on_dynamodb(&stack).await;
    let t = Ticket::open(
        NewTicket {
            customer_id: customer,
            channel: Channel::Telegram,
            subject: None,
            description: "退款一直没有到账".into(),
            priority: Priority::Normal,
            skill: Skill::Billing,
        },
        helpdesk_core::domain::now(),
    );
    store.create_ticket(&t).await.unwrap();
    let mut to_dora = t.clone();
    to_dora
        .apply(
            &TicketPatch {
                assignee: Some(Some("dora".into())),
                ..Default::default()
            },
            helpdesk_core::domain::now(),
        )
        .unwrap();

    // The assignment: the set's write fails, and nothing is saved.
    proxy.on_update(OnUpdate::Throttle).await;
    assert!(store.update_ticket(&to_dora, t.version).await.is_err());
    proxy.on_update(OnUpdate::Forward).await;
    let stored = store.get_ticket(&t.id).await.unwrap().unwrap();
    assert_eq!(stored.assignee, None, "the ticket is not dora's");
    assert_eq!(stored.version, t.version);
    assert_eq!(held_by_dora().await, 0);
    // Its retry saves both.
    store.update_ticket(&to_dora, t.version).await.unwrap();
    assert_eq!(held_by_dora().await, 1);

    // A save that keeps the holder: its one put, and no write of the set.
    let (puts, updates) = (proxy.count("PutItem"), proxy.count("UpdateItem"));
    let pending = status(&to_dora, TicketStatus::Pending);
    store
        .update_ticket(&pending, to_dora.version)
        .await
        .unwrap();
    assert_eq!(proxy.count("UpdateItem"), updates, "the set is not written");
    assert_eq!(
        proxy.count("PutItem") - puts,
        2,
        "the ticket's put, and the customer's marker taken if free"
    );

    // Resolved, the slot is let go; reopened, dora takes the ticket back.
    let resolved = status(&pending, TicketStatus::Resolved);
    store
        .update_ticket(&resolved, pending.version)
        .await
        .unwrap();
    assert_eq!(held_by_dora().await, 0);
    let reopened = status(&resolved, TicketStatus::Open);
    assert_eq!(reopened.holder(), Some("dora"));
    proxy.on_update(OnUpdate::Throttle).await;
    assert!(store
        .update_ticket(&reopened, resolved.version)
        .await
        .is_err());
    proxy.on_update(OnUpdate::Forward).await;
    let stored = store.get_ticket(&t.id).await.unwrap().unwrap();
    assert_eq!(stored.status, TicketStatus::Resolved, "not reopened");
    assert_eq!(held_by_dora().await, 0);
    store
        .update_ticket(&reopened, resolved.version)
        .await
        .unwrap();
    assert_eq!(
        store.get_ticket(&t.id).await.unwrap().unwrap().status,
        TicketStatus::Open
    );
    assert_eq!(held_by_dora().await, 1);
}

/// A merge about to fold a ticket on DynamoDB: two customers of one person, each with an
/// active ticket, the one that stays (`into`, its ticket `kept`) and the one merged into it
/// (`from`, its ticket `folded`), and a new message of `from` on no ticket yet. `via`
/// reaches DynamoDB through `proxy`, `direct` not.
struct FoldRace {
    stack: Stack,
    direct: DynamoStore,
    proxy: aws_harness::dynamo_proxy::DynamoProxy,
    via: DynamoStore,
    plan: helpdesk_core::domain::MergePlan,
    kept: Ticket,
    folded: Ticket,
    message: Message,
}

impl FoldRace {
    async fn new() -> FoldRace {
        use helpdesk_core::domain::{InboundMessage, MergePlan};
        use helpdesk_core::ports::ConversationStore;
        let stack = Stack::new().await;
        let direct = DynamoStore::new(&stack.config, stack.tables.clone());
        let proxy = aws_harness::dynamo_proxy::DynamoProxy::start(&stack.config).await;
        let via = DynamoStore::new(&proxy.config, stack.tables.clone());
        let into = customer_on_dynamodb(&stack).await;
        let from = customer_on_dynamodb(&stack).await;
        let open = |customer: &str, text: &str| {
            Ticket::open(
                NewTicket {
                    customer_id: customer.into(),
                    channel: Channel::Telegram,
                    subject: None,
                    description: text.into(),
                    priority: Priority::Normal,
                    skill: Skill::Billing,
                },
                helpdesk_core::domain::now(),
            )
        };
        let kept = open(&into, "发票开错了");
        let folded = open(&from, "另一个号码：发票开错了");
        direct.create_ticket(&kept).await.unwrap();
        direct.create_ticket(&folded).await.unwrap();
        let inbound = InboundMessage::text(
            Channel::Telegram,
            "tg-late".into(),
            "还有一个问题".into(),
            helpdesk_core::domain::now(),
        );
        let message = Message::inbound(&inbound, &from);
        direct.append_message(&message).await.unwrap();
        FoldRace {
            plan: MergePlan::new(&into, &from, "alice"),
            stack,
            direct,
            proxy,
            via,
            kept,
            folded,
            message,
        }
    }

    /// Another store on the stack, not through the proxy: the other side of the race.
    fn other(&self) -> DynamoStore {
        DynamoStore::new(&self.stack.config, self.stack.tables.clone())
    }

    /// The ticket was folded into the kept one, and the message is on the kept ticket: the
    /// folded one holds nothing but its history.
    async fn assert_the_message_followed_the_fold(&self) {
        use helpdesk_core::domain::MessageKind;
        use helpdesk_core::ports::ConversationStore;
        let stored = self
            .direct
            .get_ticket(&self.folded.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.merged_into.as_deref(),
            Some(self.kept.id.as_str()),
            "folded"
        );
        let on = self
            .direct
            .get_message(&self.message.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            on.ticket_id.as_deref(),
            Some(self.kept.id.as_str()),
            "on the kept ticket"
        );
        let left = self
            .direct
            .ticket_messages(&self.folded.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.kind != MessageKind::Activity)
            .count();
        assert_eq!(left, 0, "nothing left on the folded ticket");
    }
}

/// A merge folded the customer's ticket while a follow-up was joining it, between the
/// join's two writes (the ticket took the reply; the message was not on it yet, so the
/// fold did not move it): the message follows the fold to the kept ticket, where an inbox
/// shows it, instead of staying on a closed ticket.
#[tokio::test]
async fn a_follow_up_joining_a_ticket_a_merge_folds_meanwhile_follows_it() {
    use helpdesk_core::flow;
    let race = FoldRace::new().await;
    // The join's second write, the message put on the ticket, waits for the whole merge.
    let (merger, plan) = (race.other(), race.plan.clone());
    race.proxy
        .before_call("PutItem", &race.stack.tables.messages, move || async move {
            flow::run_merge(&merger, &plan, 100).await.unwrap();
        })
        .await;
    let joined = flow::join_ticket(&race.via, &race.folded, &race.message)
        .await
        .unwrap();
    assert_eq!(joined.map(|t| t.id), Some(race.folded.id.clone()));
    race.assert_the_message_followed_the_fold().await;
}

/// The other order: the follow-up joined the ticket after the merge had moved its messages
/// and before it closed it (the message went on the ticket the merge was about to close).
/// The fold moves what came meanwhile once it has closed the ticket.
#[tokio::test]
async fn a_follow_up_joining_between_a_folds_move_and_its_close_is_moved_too() {
    use helpdesk_core::flow;
    let race = FoldRace::new().await;
    // The fold's first write to the tickets table, after it moved the messages: the kept
    // ticket takes the folded one's wait. The follow-up joins before it.
    let (joiner, seen, late) = (race.other(), race.folded.clone(), race.message.clone());
    race.proxy
        .before_call("PutItem", &race.stack.tables.tickets, move || async move {
            let joined = flow::join_ticket(&joiner, &seen, &late).await.unwrap();
            assert_eq!(joined.map(|t| t.id), Some(seen.id.clone()));
        })
        .await;
    flow::run_merge(&race.via, &race.plan, 100).await.unwrap();
    race.assert_the_message_followed_the_fold().await;
}

/// Of racing requests that each would make a ticket of one customer active, the one that
/// did (answered `won`), whose id each other answer, a 409 `active_ticket_exists`, names.
fn one_active(answers: &[(u16, Value)], won: u16) -> &str {
    let winners: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == won)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    let id = winners[0]["id"].as_str().unwrap();
    for (status, body) in answers.iter().filter(|(status, _)| *status != won) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["error"]["code"], "active_ticket_exists", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(id),
            "names the ticket: {body}"
        );
    }
    id
}

/// `t` moved to `to`, as an agent's PATCH moves it.
fn status(t: &Ticket, to: TicketStatus) -> Ticket {
    let mut next = t.clone();
    next.apply(
        &TicketPatch {
            status: Some(to),
            ..Default::default()
        },
        helpdesk_core::domain::now(),
    )
    .unwrap();
    next
}

/// A ticket of `customer`, made and then resolved.
async fn resolved_ticket(store: &DynamoStore, customer: &str, text: &str) -> Ticket {
    let t = Ticket::open(
        NewTicket {
            customer_id: customer.into(),
            channel: Channel::Telegram,
            subject: None,
            description: text.into(),
            priority: Priority::Normal,
            skill: Skill::Billing,
        },
        helpdesk_core::domain::now(),
    );
    store.create_ticket(&t).await.unwrap();
    let done = status(&t, TicketStatus::Resolved);
    store.update_ticket(&done, t.version).await.unwrap();
    done
}

/// A new customer, as a Telegram message makes one.
async fn customer_on_dynamodb(stack: &Stack) -> String {
    let store = DynamoStore::new(&stack.config, stack.tables.clone());
    store
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Telegram,
                external_id: format!("tg-{}", helpdesk_core::domain::new_id()),
            },
            Some("王芳"),
            Some("zh"),
        )
        .await
        .unwrap()
        .id
}

async fn tickets_instances(stack: &Stack) -> Vec<Arc<Runtime>> {
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        instances.push(Arc::new(Runtime::start("tickets", &stack.env).await));
    }
    instances
}

/// Five instances of the tickets function, and a ticket made by hand for a new customer.
async fn ticket_on_lambda(stack: &Stack) -> (Vec<Arc<Runtime>>, String) {
    let customer = customer_on_dynamodb(stack).await;
    let instances = tickets_instances(stack).await;
    let (status, created) = http_answer(
        &instances[0]
            .call(http_event(
                "POST",
                "/tickets",
                &[],
                Some(json!({"customer_id": customer, "description": "退款一直没有到账"})),
                Some(("alice", "supervisor")),
            ))
            .await
            .unwrap(),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    (instances, id)
}

async fn version_on_lambda(tickets: &Runtime, id: &str) -> u64 {
    let answer = tickets
        .call(http_event(
            "GET",
            &format!("/tickets/{id}"),
            &[],
            None,
            Some(("alice", "supervisor")),
        ))
        .await
        .unwrap();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    answer["headers"]["etag"]
        .as_str()
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap()
}

/// Queues every event at once, each on its own task, spread over the instances in turn;
/// their answers (status, body) in the events' order.
async fn at_once(
    instances: &[Arc<Runtime>],
    events: impl Iterator<Item = Value>,
) -> Vec<(u16, Value)> {
    let calls: Vec<_> = events
        .enumerate()
        .map(|(i, event)| {
            let instance = instances[i % instances.len()].clone();
            tokio::spawn(
                async move { http_answer(&instance.call(event).await.expect("an answer")) },
            )
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    answers
}

async fn stop(instances: Vec<Arc<Runtime>>) {
    for r in instances {
        if let Ok(r) = Arc::try_unwrap(r) {
            r.stop().await;
        }
    }
}

/// What the inbox's counts and views read on DynamoDB: the active tickets, not the history.
/// With 40 closed tickets and 3 active ones (one pending, one of them alice's), the counts
/// of "all", "mine" and "unassigned" and their lists read the 3 active tickets, where a
/// filter over the index of every ticket (or every ticket alice ever held) read all 43 at
/// each poll of an open console.
#[tokio::test]
async fn the_inbox_counts_read_the_active_tickets_not_the_history() {
    use helpdesk_core::domain::TicketFilter;
    let stack = Stack::new().await;
    let proxy = aws_harness::dynamo_proxy::DynamoProxy::start(&stack.config).await;
    let store = DynamoStore::new(&proxy.config, stack.tables.clone());
    let with_alice = |t: &Ticket| {
        let mut next = t.clone();
        next.apply(
            &TicketPatch {
                assignee: Some(Some("alice".into())),
                ..Default::default()
            },
            helpdesk_core::domain::now(),
        )
        .unwrap();
        next
    };
    for i in 0..40 {
        let t = resolved_ticket(&store, &format!("c-old-{i}"), "早就解决了").await;
        let held = with_alice(&t);
        store.update_ticket(&held, t.version).await.unwrap();
        let closed = status(&held, TicketStatus::Closed);
        store.update_ticket(&closed, held.version).await.unwrap();
    }
    let mut active = Vec::new();
    for i in 0..3 {
        let t = Ticket::open(
            NewTicket {
                customer_id: format!("c-now-{i}"),
                channel: Channel::Telegram,
                subject: None,
                description: "还没解决".into(),
                priority: Priority::Normal,
                skill: Skill::Billing,
            },
            helpdesk_core::domain::now(),
        );
        store.create_ticket(&t).await.unwrap();
        let mut now = t.clone();
        match i {
            1 => now = status(&t, TicketStatus::Pending),
            2 => now
                .escalate("客户要求经理处理", helpdesk_core::domain::now())
                .unwrap(),
            _ => {}
        }
        if now.version != t.version {
            store.update_ticket(&now, t.version).await.unwrap();
        }
        active.push(now);
    }
    let mine = with_alice(&active[1]);
    store.update_ticket(&mine, active[1].version).await.unwrap();

    let all = TicketFilter {
        active: true,
        ..Default::default()
    };
    let alices = TicketFilter {
        assignee: Some("alice".into()),
        ..all.clone()
    };
    let unassigned = TicketFilter {
        unassigned: true,
        ..all.clone()
    };
    let before = proxy.scanned();
    let counts = [
        store.count_tickets(&all).await.unwrap(),
        store.count_tickets(&alices).await.unwrap(),
        store.count_tickets(&unassigned).await.unwrap(),
    ];
    assert_eq!(counts, [3, 1, 2]);
    assert_eq!(
        proxy.scanned() - before,
        9,
        "three counts of the 3 active tickets"
    );

    let before = proxy.scanned();
    let page = store.list_tickets(&all, 2, None).await.unwrap();
    let ids: Vec<&str> = page.items.iter().map(|t| t.id.as_str()).collect();
    let mut by_id: Vec<&str> = active.iter().map(|t| t.id.as_str()).collect();
    by_id.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, by_id[..2], "newest first across the statuses");
    let rest = store
        .list_tickets(&all, 2, page.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].id, by_id[2]);
    assert_eq!(rest.next_cursor, None);
    let theirs = store.list_tickets(&alices, 25, None).await.unwrap();
    assert_eq!(theirs.items.len(), 1);
    assert_eq!(theirs.items[0].id, mine.id);
    assert!(
        proxy.scanned() - before <= 9,
        "three lists of at most the 3 active tickets: {}",
        proxy.scanned() - before
    );
}

/// A list with a filter that few tickets match (a tag on 2 tickets of 27, ended and so on
/// the index of every ticket) reads the index up to a budget a request, and answers with
/// what it found and a cursor to go on from: a page may be short, or empty, but following
/// the cursors finds each tagged ticket once, in order. Before, one request walked the
/// whole index, however long the desk's history.
#[tokio::test]
async fn a_filtered_list_reads_a_bounded_share_of_the_index_a_request() {
    use helpdesk_core::domain::TicketFilter;
    use helpdesk_core::ports::Page;
    const BUDGET: u64 = 10;
    let stack = Stack::new().await;
    let proxy = aws_harness::dynamo_proxy::DynamoProxy::start(&stack.config).await;
    let store = DynamoStore::new(&proxy.config, stack.tables.clone())
        .with_list_read_budget(BUDGET as usize);
    let mut tagged = Vec::new();
    for i in 0..27 {
        let mut t = Ticket::open(
            NewTicket {
                customer_id: format!("c-history-{i}"),
                channel: Channel::Webchat,
                subject: None,
                description: format!("第 {i} 个老问题"),
                priority: Priority::Normal,
                skill: Skill::General,
            },
            helpdesk_core::domain::now(),
        );
        t.status = TicketStatus::Closed;
        if i == 0 || i == 26 {
            t.tags = vec!["vip".into(), "退款".into()];
            tagged.push(t.id.clone());
        }
        store.create_ticket(&t).await.unwrap();
    }
    for (oldest_first, tag) in [(false, "vip"), (true, "退款")] {
        let filter = TicketFilter {
            tag: Some(tag.into()),
            oldest_first,
            ..Default::default()
        };
        let mut found = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let before = proxy.scanned();
            let page: Page<Ticket> = store
                .list_tickets(&filter, 25, cursor.as_deref())
                .await
                .unwrap();
            let read = proxy.scanned() - before;
            assert!(read <= BUDGET, "a request read {read} items");
            pages += 1;
            found.extend(page.items.into_iter().map(|t| t.id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
            assert!(pages < 10, "the cursors go on");
        }
        let mut expected = tagged.clone();
        if !oldest_first {
            expected.reverse();
        }
        assert_eq!(found, expected, "{tag}: each tagged ticket once, in order");
        assert!(pages >= 3, "27 tickets at 10 a request: {pages} pages");
    }
}

/// The sweep of messages left queued runs every 5 minutes on AWS, busy or idle: it reads the
/// sparse `queued` index, the messages still queued and nothing else, where it once scanned
/// the whole messages table, every message ever sent, at every run.
#[tokio::test]
async fn the_sweep_of_messages_left_queued_reads_only_those() {
    use helpdesk_core::domain::{DeliveryStatus, Message, MessageKind};
    use helpdesk_core::ports::ConversationStore;
    let stack = Stack::new().await;
    let proxy = aws_harness::dynamo_proxy::DynamoProxy::start(&stack.config).await;
    let store = DynamoStore::new(&proxy.config, stack.tables.clone());
    let customer = customer_on_dynamodb(&stack).await;
    let mut queued: Vec<String> = Vec::new();
    for n in 0..32 {
        let m = Message::outbound(
            &customer,
            Channel::Telegram,
            MessageKind::AgentReply,
            format!("第 {n} 条回复"),
            None,
        );
        store.append_message(&m).await.unwrap();
        if n % 16 == 0 {
            queued.push(m.id);
        } else {
            store
                .set_delivery(&m.id, DeliveryStatus::Sent, Some(&format!("42:{n}")), None)
                .await
                .unwrap();
        }
    }
    let later = helpdesk_core::domain::now() + chrono::Duration::seconds(1);
    let (scans, read) = (proxy.count("Scan"), proxy.scanned());
    let found = store.queued_before(later, 100).await.unwrap();
    let found: Vec<String> = found.into_iter().map(|m| m.id).collect();
    assert_eq!(found, queued, "the queued ones, oldest first");
    assert_eq!(proxy.count("Scan"), scans, "no scan of the table");
    assert_eq!(
        proxy.scanned() - read,
        2,
        "the 2 queued messages, not the 30 sent"
    );
    // Up to the limit, the oldest first.
    let one = store.queued_before(later, 1).await.unwrap();
    assert_eq!(one.iter().map(|m| &m.id).collect::<Vec<_>>(), [&queued[0]]);
}
