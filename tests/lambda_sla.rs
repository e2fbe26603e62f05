//! The `sla` and `survey` Lambda binaries against the AWS emulator: the schedule's turn
//! records a missed target, escalates and assigns, and closes a resolved ticket whose time
//! came; the tickets' stream, handed to the
//! change handler twice as a redelivery would, yields one breach notice and one
//! assignment notice; and a customer left waiting for a next reply is breached and told
//! of once.

mod aws_harness;

use aws_harness::*;
use helpdesk_core::aws::DynamoStore;
use helpdesk_core::domain::*;
use helpdesk_core::ports::{AgentStore, CustomerStore, TicketStore};
use helpdesk_core::rules::Rules;
use serde_json::{json, Value};
use std::collections::HashSet;

const RULES: &str =
    "[sla.urgent]\nfirst_response = \"1s\"\nresolution = \"4h\"\nescalate_on_breach = true\n";

#[tokio::test]
async fn the_schedule_escalates_a_missed_target_and_the_stream_notifies_once() {
    let stack = Stack::new().await;
    let store = DynamoStore::new(&stack.config, stack.tables.clone());
    let rules = Rules::parse(RULES).unwrap();
    store
        .put_agent(&AgentProfile {
            skills: vec![Skill::Technical],
            languages: vec![Language::Zh],
            ..AgentProfile::default_for("alice")
        })
        .await
        .unwrap();
    let mut late = Ticket::open(
        NewTicket {
            customer_id: "c1".into(),
            channel: Channel::Webchat,
            subject: None,
            description: "紧急！系统打不开".into(),
            priority: Priority::Urgent,
            skill: Skill::Technical,
        },
        now() - chrono::Duration::seconds(30),
    );
    late.stamp_sla(rules.sla());
    store.create_ticket(&late).await.unwrap();
    // And a ticket resolved 4 days ago, whose time to close by itself has come (its
    // customer's survey follows through the stream).
    let customer = store
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Webchat,
                external_id: new_id(),
            },
            Some("王芳"),
            Some("zh"),
        )
        .await
        .unwrap();
    let mut done = Ticket::open(
        NewTicket {
            customer_id: customer.id.clone(),
            channel: Channel::Webchat,
            subject: None,
            description: "发票已经收到了".into(),
            priority: Priority::Normal,
            skill: Skill::Billing,
        },
        now() - chrono::Duration::days(5),
    );
    let resolved_at = now() - chrono::Duration::days(4);
    done.apply(
        &TicketPatch {
            status: Some(TicketStatus::Resolved),
            ..TicketPatch::default()
        },
        resolved_at,
    )
    .unwrap();
    done.schedule_close(
        TicketStatus::Open,
        rules.close_resolved_after(),
        resolved_at,
    );
    store.create_ticket(&done).await.unwrap();

    let mut env = stack.env.clone();
    // The rules in SSM, as the template gives them (RulesParameter).
    env.insert(
        "HELPDESK_RULES_TOML_PARAM".into(),
        stack.parameter("rules", RULES).await,
    );
    let mut sla = Runtime::start("sla", &env).await;
    let scheduled = json!({
        "version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
        "time": "2026-11-29T10:00:00Z", "region": "us-east-1", "resources": [], "detail": {}
    });
    let turn = sla.invoke(scheduled.clone()).await.expect("the turn runs");
    assert_eq!(turn, json!({"breached": 1, "assigned": 1, "closed": 1}));
    let again = sla.invoke(scheduled).await.expect("the next turn runs");
    assert_eq!(
        again,
        json!({"breached": 0, "assigned": 0, "closed": 0}),
        "once"
    );
    sla.stop().await;

    let closed = store.get_ticket(&done.id).await.unwrap().unwrap();
    assert_eq!(closed.status, TicketStatus::Closed);
    assert_eq!(closed.closes_at, None);
    let t = store.get_ticket(&late.id).await.unwrap().unwrap();
    assert_eq!(t.status, TicketStatus::Escalated);
    assert_eq!(
        t.escalation_reason.as_deref(),
        Some("sla_breach:first_response")
    );
    assert_eq!(t.assignee.as_deref(), Some("alice"));
    assert_eq!(
        store
            .get_agent("alice")
            .await
            .unwrap()
            .unwrap()
            .open_tickets,
        1
    );
    assert!(store.sla_due_tickets(now(), 10).await.unwrap().is_empty());

    // The change handler gets the stream twice: the notices it queues carry one id each,
    // which dispatch posts once.
    let mut survey = Runtime::start("survey", &env).await;
    let stream = stack.stream_event().await;
    for _ in 0..2 {
        handled(&mut survey, stream.clone()).await;
    }
    survey.stop().await;
    let outbound = stack.drain("OUTBOUND_QUEUE_URL").await;
    let jobs: Vec<Value> = outbound["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        .collect();
    let ids = |kind: &str| -> HashSet<String> {
        jobs.iter()
            .filter(|j| j["type"] == kind)
            .map(|j| match kind {
                "supervisor" => {
                    let notice: SupervisorNotice = serde_json::from_value(j.clone()).unwrap();
                    assert_eq!(notice.event, "ticket.sla_breached");
                    assert_eq!(notice.reason, "sla_breach:first_response");
                    notice.id()
                }
                _ => {
                    let notice: AgentNotice = serde_json::from_value(j.clone()).unwrap();
                    assert_eq!(notice.agent, "alice");
                    notice.id()
                }
            })
            .collect()
    };
    assert_eq!(ids("supervisor").len(), 1, "{jobs:#?}");
    assert_eq!(ids("agent").len(), 1, "{jobs:#?}");
    let surveys: Vec<&Value> = jobs.iter().filter(|j| j["type"] == "customer").collect();
    assert!(!surveys.is_empty(), "the closed ticket's survey: {jobs:#?}");
}

/// A customer who wrote again after the first response, on AWS: the change handler stamps
/// the next reply's due time from the stream, the schedule's turn records its breach, the
/// stream (handed over twice) yields one `sla_breach:next_reply` notice, and the agent's
/// reply takes the due time off.
#[tokio::test]
async fn a_customer_left_waiting_for_a_next_reply_is_breached_on_aws() {
    const WAITING: &str = "[sla.high]\nnext_reply = \"1s\"\n[assignment]\nauto = false\n";
    let stack = Stack::new().await;
    let store = DynamoStore::new(&stack.config, stack.tables.clone());
    let mut waiting = Ticket::open(
        NewTicket {
            customer_id: "c2".into(),
            channel: Channel::Telegram,
            subject: None,
            description: "退款什么时候到账？".into(),
            priority: Priority::High,
            skill: Skill::Billing,
        },
        now() - chrono::Duration::minutes(10),
    );
    waiting.agent_replied(Some("alice"), now() - chrono::Duration::minutes(5));
    let asked = now() - chrono::Duration::minutes(1);
    waiting.customer_replied(asked, asked);
    store.create_ticket(&waiting).await.unwrap();

    let mut env = stack.env.clone();
    env.insert(
        "HELPDESK_RULES_TOML_PARAM".into(),
        stack.parameter("rules", WAITING).await,
    );
    let mut survey = Runtime::start("survey", &env).await;
    handled(&mut survey, stack.stream_event().await).await;
    let stamped = store.get_ticket(&waiting.id).await.unwrap().unwrap();
    let due = asked + chrono::Duration::seconds(1);
    assert_eq!(
        stamped.sla.as_ref().and_then(|s| s.next_reply_due),
        Some(due)
    );

    let mut sla = Runtime::start("sla", &env).await;
    let scheduled = json!({
        "version": "0", "id": "e2", "detail-type": "Scheduled Event", "source": "aws.events",
        "time": "2026-11-29T10:00:00Z", "region": "us-east-1", "resources": [], "detail": {}
    });
    let turn = sla.invoke(scheduled).await.expect("the turn runs");
    assert_eq!(turn["breached"], json!(1), "{turn}");
    sla.stop().await;

    for _ in 0..2 {
        handled(&mut survey, stack.stream_event().await).await;
    }
    let outbound = stack.drain("OUTBOUND_QUEUE_URL").await;
    let notices: HashSet<String> = outbound["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap())
        .filter(|j| j["type"] == "supervisor")
        .map(|j| {
            let notice: SupervisorNotice = serde_json::from_value(j).unwrap();
            assert_eq!(notice.reason, "sla_breach:next_reply");
            notice.id()
        })
        .collect();
    assert_eq!(notices.len(), 1, "{outbound:#?}");

    // The agent answers: the wait ends, and the handler takes the due time off.
    let (answered, _) = helpdesk_core::flow::update_ticket(&store, &waiting.id, |t| {
        t.agent_replied(Some("alice"), now());
        Ok(true)
    })
    .await
    .unwrap();
    assert_eq!(answered.awaiting_reply_since, None);
    handled(&mut survey, stack.stream_event().await).await;
    survey.stop().await;
    let after = store.get_ticket(&waiting.id).await.unwrap().unwrap();
    assert_eq!(after.sla.as_ref().and_then(|s| s.next_reply_due), None);
    assert_eq!(after.next_reply_waits().breached, 1);
}

/// The change handler takes a batch of the stream whole.
async fn handled(survey: &mut Runtime, stream: Value) {
    let answer = survey.invoke(stream).await.expect("the batch is handled");
    assert!(
        answer
            .get("batchItemFailures")
            .is_none_or(|f| f == &json!([])),
        "{answer}"
    );
}
