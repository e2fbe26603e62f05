//! The AWS adapters against a local AWS emulator (moto server), which `scripts/test` starts
//! and names in `AWS_ENDPOINT_URL`. Each test makes its own tables and queues.

use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use helpdesk_core::aws::{schema, DynamoStore, QueueUrls, SqsQueue, Tables};
use helpdesk_core::domain::*;
use helpdesk_core::flow::{run_merge, MergeProgress};
use helpdesk_core::ports::*;

async fn emulator() -> aws_config::SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: run scripts/test, which starts the local AWS emulator")
    });
    helpdesk_core::aws::config_loader()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(endpoint)
        .load()
        .await
}

async fn store() -> DynamoStore {
    let config = emulator().await;
    let tables = Tables::with_prefix(&format!("t{}-", new_id()));
    let store = DynamoStore::new(&config, tables.clone());
    schema::create_tables(store.client(), &tables)
        .await
        .unwrap();
    store
}

fn ticket(customer: &str, skill: Skill) -> Ticket {
    Ticket::open(
        NewTicket {
            customer_id: customer.into(),
            channel: Channel::Webchat,
            subject: None,
            description: "我的订单没有到".into(),
            priority: Priority::Normal,
            skill,
        },
        now(),
    )
}

#[tokio::test]
async fn a_duplicate_delivery_is_stored_once() {
    // Claims are in the store contract (tests/contract.rs), run on every adapter.
    let s = store().await;
    let c = s
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Webchat,
                external_id: "v1".into(),
            },
            Some("李雷"),
            None,
        )
        .await
        .unwrap();
    let mut inbound = InboundMessage::text(Channel::Webchat, "v1".into(), "你好".into(), now());
    inbound.customer_id = Some(c.id.clone());
    let m = Message::inbound(&inbound, &c.id);
    assert!(s.append_message(&m).await.unwrap());
    assert!(!s.append_message(&m).await.unwrap());
    let convo = s
        .customer_messages(&c.id, Channel::Webchat, None, 100)
        .await
        .unwrap();
    assert_eq!(convo, vec![m]);
}

#[tokio::test]
async fn tickets_are_listed_through_indexes_newest_first() {
    let s = store().await;
    let mut ids = Vec::new();
    for (i, (customer, skill)) in [
        ("c1", Skill::Billing),
        ("c1", Skill::Technical),
        ("c3", Skill::Billing),
        ("c2", Skill::Billing),
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = ticket(customer, skill);
        if i == 0 {
            t.assignee = Some("alice".into());
        }
        // A customer has one active ticket (the store contract): c1's second is resolved.
        if i == 1 {
            t.status = TicketStatus::Resolved;
        }
        s.create_ticket(&t).await.unwrap();
        ids.push(t.id);
    }
    let all = TicketFilter::default();
    let p1 = s.list_tickets(&all, 3, None).await.unwrap();
    assert_eq!(
        p1.items.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [&ids[3], &ids[2], &ids[1]].map(|s| s.as_str())
    );
    let p2 = s
        .list_tickets(&all, 3, p1.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.next_cursor, None);
    let c1 = TicketFilter {
        customer_id: Some("c1".into()),
        ..Default::default()
    };
    let got = s.list_tickets(&c1, 10, None).await.unwrap();
    assert_eq!(
        got.items.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [ids[1].as_str(), ids[0].as_str()]
    );
    let billing_c1 = TicketFilter {
        skill: Some(Skill::Billing),
        ..c1.clone()
    };
    let got = s.list_tickets(&billing_c1, 10, None).await.unwrap();
    assert_eq!(
        got.items.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [ids[0].as_str()]
    );
    let alice = TicketFilter {
        assignee: Some("alice".into()),
        ..Default::default()
    };
    assert_eq!(
        s.list_tickets(&alice, 10, None).await.unwrap().items.len(),
        1
    );
    let open = TicketFilter {
        status: Some(TicketStatus::Open),
        priority: Some(Priority::Normal),
        ..Default::default()
    };
    assert_eq!(
        s.list_tickets(&open, 10, None).await.unwrap().items.len(),
        3
    );
    assert_eq!(s.active_ticket_for("c2").await.unwrap().unwrap().id, ids[3]);
    assert_eq!(s.active_ticket_for("c1").await.unwrap().unwrap().id, ids[0]);
    assert!(s.active_ticket_for("nobody").await.unwrap().is_none());

    // The inbox's views: still being worked, and nobody's; a ticket that stops being
    // worked leaves them.
    let mut resolved = s.get_ticket(&ids[2]).await.unwrap().unwrap();
    let expected = resolved.version;
    resolved.status = TicketStatus::Resolved;
    resolved.version += 1;
    s.update_ticket(&resolved, expected).await.unwrap();
    let active = TicketFilter {
        active: true,
        ..Default::default()
    };
    let waiting = TicketFilter {
        unassigned: true,
        ..active.clone()
    };
    let mine = TicketFilter {
        assignee: Some("alice".into()),
        ..active.clone()
    };
    assert_eq!(s.count_tickets(&all).await.unwrap(), 4);
    assert_eq!(s.count_tickets(&active).await.unwrap(), 2);
    assert_eq!(s.count_tickets(&waiting).await.unwrap(), 1);
    assert_eq!(s.count_tickets(&mine).await.unwrap(), 1);
    assert_eq!(
        s.list_tickets(&waiting, 10, None)
            .await
            .unwrap()
            .items
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        [ids[3].as_str()]
    );
}

#[tokio::test]
async fn conversations_page_in_order_and_sessions_resolve() {
    let s = store().await;
    let identity = ChannelIdentity {
        channel: Channel::Webchat,
        external_id: "s1".into(),
    };
    let c = s
        .resolve_customer(&identity, None, Some("zh"))
        .await
        .unwrap();
    assert_eq!(
        s.resolve_customer(&identity, None, None).await.unwrap().id,
        c.id
    );
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut m = Message::outbound(
            &c.id,
            Channel::Webchat,
            MessageKind::AgentReply,
            format!("回复 {i}"),
            None,
        );
        m.id = format!("derived-{}", 9 - i); // ids that do not sort by time
        m.created_at = now() + chrono::Duration::milliseconds(i);
        s.append_message(&m).await.unwrap();
        ids.push(m.id);
    }
    let after = s
        .customer_messages(&c.id, Channel::Webchat, Some(&ids[0]), 10)
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        [ids[1].as_str(), ids[2].as_str()]
    );
    s.set_delivery(
        &ids[1],
        DeliveryStatus::Failed,
        Some("p-1"),
        Some("400: bad chat"),
    )
    .await
    .unwrap();
    let m = s.get_message(&ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (m.status, m.error.as_deref()),
        (Some(DeliveryStatus::Failed), Some("400: bad chat"))
    );
    let mut session = WebchatSession {
        id: "s1".into(),
        token_hash: "abc".into(),
        customer_id: c.id.clone(),
        created_at: now(),
        name: None,
        locale: None,
        expires_at: Some(now().timestamp() + 60),
    };
    s.create_session(&session).await.unwrap();
    assert_eq!(
        s.session_by_token_hash("abc").await.unwrap(),
        Some(session.clone())
    );
    // A use pushes the end out; the table's TTL attribute follows it.
    session.expires_at = Some(now().timestamp() + 3600);
    s.update_session(&session).await.unwrap();
    assert_eq!(
        s.session_by_token_hash("abc").await.unwrap(),
        Some(session.clone())
    );
    let item = s
        .client()
        .get_item()
        .table_name(&s.tables().sessions)
        .key(
            "token_hash",
            aws_sdk_dynamodb::types::AttributeValue::S("abc".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(
        item["expires_at"].as_n().unwrap(),
        &session.expires_at.unwrap().to_string()
    );
}

#[tokio::test]
async fn rate_counters_count_across_callers_and_expire() {
    let s = store().await;
    let mut counts = Vec::new();
    for _ in 0..3 {
        counts.push(s.count("rate:test:1.2.3.4:1", 120).await.unwrap());
    }
    assert_eq!(counts, [1, 2, 3]);
    assert_eq!(s.count("rate:test:5.6.7.8:1", 120).await.unwrap(), 1);
    // The counter carries the TTL attribute, set once at the first count.
    let item = s
        .client()
        .get_item()
        .table_name(&s.tables().idempotency)
        .key(
            "key",
            aws_sdk_dynamodb::types::AttributeValue::S("rate:test:1.2.3.4:1".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert!((expires - now().timestamp() - 120).abs() <= 5, "{expires}");

    // The limit itself, as the webchat applies it: the fourth in a window of three is 429.
    let limit = helpdesk_core::rate::RateLimit::per_minute(3);
    let at = now().timestamp();
    for _ in 0..3 {
        helpdesk_core::rate::check(&s, "tries", "k", limit, at)
            .await
            .unwrap();
    }
    let err = helpdesk_core::rate::check(&s, "tries", "k", limit, at)
        .await
        .unwrap_err();
    assert_eq!((err.kind.status(), err.code), (429, "rate_limited"));
}

#[tokio::test]
async fn one_customers_messages_keep_their_order_on_the_fifo_queue() {
    let config = emulator().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let name = format!("inbound-{}.fifo", new_id());
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue = SqsQueue::new(
        &config,
        QueueUrls {
            inbound: url.clone(),
            auto_reply: String::new(),
            outbound: String::new(),
        },
    );
    for i in 0..6 {
        let group = if i % 2 == 0 {
            "customer-a"
        } else {
            "customer-b"
        };
        queue
            .send(
                QueueName::Inbound,
                format!("{group} {i}"),
                Some(group),
                Some(&format!("d{i}")),
            )
            .await
            .unwrap();
    }
    // A resend with the same deduplication id is dropped.
    queue
        .send(
            QueueName::Inbound,
            "customer-a 0".into(),
            Some("customer-a"),
            Some("d0"),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            got.push(m.body.unwrap_or_default());
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle.unwrap_or_default())
                .send()
                .await
                .unwrap();
        }
        if got.len() >= 6 {
            break;
        }
    }
    let a: Vec<&str> = got
        .iter()
        .filter(|b| b.starts_with("customer-a"))
        .map(String::as_str)
        .collect();
    let b: Vec<&str> = got
        .iter()
        .filter(|b| b.starts_with("customer-b"))
        .map(String::as_str)
        .collect();
    assert_eq!(a, ["customer-a 0", "customer-a 2", "customer-a 4"]);
    assert_eq!(b, ["customer-b 1", "customer-b 3", "customer-b 5"]);
    let err = SqsQueue::new(
        &config,
        QueueUrls {
            inbound: String::new(),
            auto_reply: String::new(),
            outbound: String::new(),
        },
    )
    .send(QueueName::Outbound, "x".into(), None, None)
    .await
    .unwrap_err();
    assert!(err.message.contains("OUTBOUND_QUEUE_URL"));
}

#[tokio::test]
async fn secrets_come_from_ssm_and_a_missing_one_is_off() {
    let config = emulator().await;
    let ssm = aws_sdk_ssm::Client::new(&config);
    let name = format!("/helpdesk-test/{}/telegram-secret", new_id());
    ssm.put_parameter()
        .name(&name)
        .value("秘密-token")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    std::env::set_var("HELPDESK_TEST_SECRET_PARAM", &name);
    let got = helpdesk_core::aws::secret(&config, "HELPDESK_TEST_SECRET")
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("秘密-token"));
    std::env::set_var("HELPDESK_TEST_MISSING_PARAM", "/helpdesk-test/not-there");
    assert_eq!(
        helpdesk_core::aws::secret(&config, "HELPDESK_TEST_MISSING")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn merging_customers_moves_everything_and_receipts_find_their_message() {
    let s = store().await;
    let web = s
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Webchat,
                external_id: "w1".into(),
            },
            Some("王芳"),
            None,
        )
        .await
        .unwrap();
    let tg = s
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Telegram,
                external_id: "42".into(),
            },
            None,
            Some("zh"),
        )
        .await
        .unwrap();
    let mut inbound = InboundMessage::text(Channel::Telegram, "42".into(), "在吗".into(), now());
    inbound.customer_id = Some(tg.id.clone());
    inbound.provider_message_id = Some("42:7".into());
    let m = Message::inbound(&inbound, &tg.id);
    s.append_message(&m).await.unwrap();
    assert_eq!(
        s.message_by_provider_id(Channel::Telegram, Direction::Inbound, "42:7")
            .await
            .unwrap()
            .unwrap()
            .id,
        m.id
    );
    assert!(s
        .message_by_provider_id(Channel::Whatsapp, Direction::Inbound, "42:7")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.last_inbound_at(&tg.id, Channel::Telegram).await.unwrap(),
        Some(m.created_at)
    );
    let t = ticket(&tg.id, Skill::General);
    s.create_ticket(&t).await.unwrap();
    s.create_session(&WebchatSession {
        id: "sess".into(),
        token_hash: "h1".into(),
        customer_id: tg.id.clone(),
        created_at: now(),
        name: None,
        locale: None,
        expires_at: None,
    })
    .await
    .unwrap();

    let plan = MergePlan::new(&web.id, &tg.id, "alice");
    let MergeProgress::Done(merged) = run_merge(&s, &plan, usize::MAX).await.unwrap() else {
        panic!("an unbounded merge finishes");
    };
    assert_eq!(merged.identities.len(), 2);
    assert_eq!(merged.name.as_deref(), Some("王芳"));
    assert_eq!(merged.locale.as_deref(), Some("zh"));
    assert!(s.get_customer(&tg.id).await.unwrap().is_none());
    let again = s
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Telegram,
                external_id: "42".into(),
            },
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        again.id, web.id,
        "the Telegram identity now leads to the merged customer"
    );
    let moved = s.get_ticket(&t.id).await.unwrap().unwrap();
    assert_eq!(
        (moved.customer_id.as_str(), moved.version),
        (web.id.as_str(), 2)
    );
    assert_eq!(
        s.customer_messages(&web.id, Channel::Telegram, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.session_by_token_hash("h1")
            .await
            .unwrap()
            .unwrap()
            .customer_id,
        web.id
    );
    // A repeat changes nothing; nothing moves towards a customer that is not there.
    assert_eq!(
        run_merge(&s, &plan, usize::MAX).await.unwrap(),
        MergeProgress::Done(merged)
    );
    assert_eq!(
        run_merge(&s, &MergePlan::new("nobody", &web.id, "alice"), usize::MAX)
            .await
            .unwrap_err()
            .kind
            .status(),
        404
    );
}

#[tokio::test]
async fn receipts_and_a_ticket_written_at_once_all_count() {
    let s = std::sync::Arc::new(store().await);
    let m = Message::outbound(
        "c1",
        Channel::Whatsapp,
        MessageKind::AgentReply,
        "您好，已为您处理".into(),
        None,
    );
    s.append_message(&m).await.unwrap();
    // A sender holds a lease; the updates below must keep it.
    assert!(s.claim_delivery(&m.id, 60).await.unwrap());
    let mut tasks = Vec::new();
    for n in 0..12 {
        let (s, id) = (s.clone(), m.id.clone());
        tasks.push(tokio::spawn(async move {
            match n {
                0 => s.set_message_ticket(&id, "t-1").await,
                1 => {
                    s.set_delivery(&id, DeliveryStatus::Read, Some("wamid.1"), None)
                        .await
                }
                _ => {
                    s.set_delivery(&id, DeliveryStatus::Delivered, Some("wamid.1"), None)
                        .await
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stored = s.get_message(&m.id).await.unwrap().unwrap();
    assert_eq!(stored.ticket_id.as_deref(), Some("t-1"));
    assert_eq!(stored.status, Some(DeliveryStatus::Read));
    let raw = s
        .client()
        .get_item()
        .table_name(&s.tables().messages)
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S(m.id.clone()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(
        raw.contains_key("lease_until"),
        "the sender's lease is kept"
    );
}

/// A ticket's item carries its reference for the `by_ref` index, and its customer's
/// active-ticket marker does not: the index holds tickets only.
#[tokio::test]
async fn the_reference_index_holds_tickets_and_not_markers() {
    let s = store().await;
    let t = ticket(&new_id(), Skill::Technical);
    s.create_ticket(&t).await.unwrap();
    let item = |id: String| {
        s.client()
            .get_item()
            .table_name(&s.tables().tickets)
            .key("id", AttributeValue::S(id))
            .consistent_read(true)
            .send()
    };
    let stored = item(t.id.clone()).await.unwrap().item.unwrap();
    assert_eq!(stored["ticket_ref"], AttributeValue::S(ticket_ref(&t.id)));
    let marker = item(format!("active#{}", t.customer_id))
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(marker["ticket_id"], AttributeValue::S(t.id.clone()));
    assert!(!marker.contains_key("ticket_ref"), "{marker:?}");
    let indexed = s
        .client()
        .query()
        .table_name(&s.tables().tickets)
        .index_name("by_ref")
        .key_condition_expression("#r = :r")
        .expression_attribute_names("#r", "ticket_ref")
        .expression_attribute_values(":r", AttributeValue::S(ticket_ref(&t.id)))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let ids: Vec<_> = indexed.iter().map(|i| i["id"].clone()).collect();
    assert_eq!(ids, vec![AttributeValue::S(t.id.clone())]);
}

/// A customer's marker left naming a ticket that is no longer active (a crash between a
/// ticket's save and the marker's release leaves one) does not block a reopen: it is
/// cleared, and the reopened ticket takes it, so that the next create is refused naming it.
#[tokio::test]
async fn a_reopen_clears_a_marker_left_by_an_ended_ticket() {
    let s = store().await;
    let customer = new_id();
    let status = |t: &Ticket, to| {
        let mut next = t.clone();
        next.apply(
            &TicketPatch {
                status: Some(to),
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        next
    };
    let mut resolved = Vec::new();
    for _ in 0..2 {
        let t = ticket(&customer, Skill::Billing);
        s.create_ticket(&t).await.unwrap();
        let done = status(&t, TicketStatus::Resolved);
        s.update_ticket(&done, t.version).await.unwrap();
        resolved.push(done);
    }
    s.client()
        .put_item()
        .table_name(&s.tables().tickets)
        .item("id", AttributeValue::S(format!("active#{customer}")))
        .item("ticket_id", AttributeValue::S(resolved[1].id.clone()))
        .send()
        .await
        .unwrap();

    let reopened = status(&resolved[0], TicketStatus::Open);
    s.update_ticket(&reopened, resolved[0].version)
        .await
        .unwrap();
    assert_eq!(
        s.active_ticket_for(&customer).await.unwrap().map(|t| t.id),
        Some(reopened.id.clone())
    );
    let held = s
        .client()
        .get_item()
        .table_name(&s.tables().tickets)
        .key("id", AttributeValue::S(format!("active#{customer}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .and_then(|i| i.get("ticket_id").cloned());
    assert_eq!(held, Some(AttributeValue::S(reopened.id.clone())));
    let err = s
        .create_ticket(&ticket(&customer, Skill::Billing))
        .await
        .unwrap_err();
    assert_eq!(err.code, "active_ticket_exists");
    assert!(err.message.contains(&reopened.id), "{err}");
}
