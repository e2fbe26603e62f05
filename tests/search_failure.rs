//! Knowledge search on OpenSearch, from the auto-reply step: a very long Chinese message
//! must not build a query over the domain's clause limit, and a search that fails for any
//! reason hands the customer to an agent instead of leaving the message in the dead
//! letters. The real SQLite store and the real OpenSearch adapter, against a fake domain on
//! loopback that refuses what a real one refuses.

#[path = "aws_harness/fake_opensearch.rs"]
#[allow(dead_code)]
mod fake_opensearch;

use aws_sdk_dynamodb::config::{Credentials, Region};
use fake_opensearch::FakeOpenSearch;
use helpdesk_core::adapters::SqliteStore;
use helpdesk_core::aws::OpenSearchKnowledge;
use helpdesk_core::domain::{
    self, derived_id, Channel, ChannelIdentity, InboundMessage, Message, MessageKind, Priority,
    Skill, TicketStatus,
};
use helpdesk_core::knowledge::parse_articles;
use helpdesk_core::ports::{ConversationStore, CustomerStore, KnowledgeIndex, TicketStore};
use std::sync::Arc;

const SAMPLE_KB: &str = include_str!("../infra/sample-kb.json");

/// The auto-reply step over SQLite and the domain at `fake`, with the sample articles in it.
async fn desk(fake: &FakeOpenSearch) -> (Arc<SqliteStore>, auto_reply::Deps) {
    let config = helpdesk_core::aws::config_loader()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    // The lexical ranking: these tests are about what reaches the domain and what a failure
    // does (tests/lambda_semantic.rs sends the long message with its vector).
    let knowledge = OpenSearchKnowledge::new(&config, &fake.url, "kb")
        .unwrap()
        .with_vectors(None);
    knowledge
        .upsert(&parse_articles(SAMPLE_KB).unwrap())
        .await
        .unwrap();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let deps = auto_reply::Deps {
        store: store.clone(),
        queue: store.clone(),
        knowledge: Arc::new(knowledge),
        threshold: 0.57,
    };
    (store, deps)
}

/// A customer's message, stored as the router stores it, and run through auto-reply.
async fn ask(store: &SqliteStore, deps: &auto_reply::Deps, text: &str) -> (String, String) {
    let chat = domain::new_id();
    let customer = store
        .resolve_customer(
            &ChannelIdentity {
                channel: Channel::Telegram,
                external_id: chat.clone(),
            },
            None,
            Some("zh"),
        )
        .await
        .unwrap();
    let inbound = InboundMessage::text(Channel::Telegram, chat, text.into(), domain::now());
    let message = Message::inbound(&inbound, &customer.id);
    store.append_message(&message).await.unwrap();
    let job = auto_reply::AutoReplyJob {
        message_id: message.id.clone(),
        customer_id: customer.id.clone(),
        skill: Skill::General,
        priority: Priority::Normal,
        tags: Vec::new(),
    };
    auto_reply::handle(deps, job)
        .await
        .expect("auto-reply does not fail, so nothing goes to the dead letters");
    (customer.id, message.id)
}

/// The customer has an open ticket, and was sent the hand-off message.
async fn assert_handed_off(store: &SqliteStore, customer_id: &str, message_id: &str) {
    let ticket = store
        .active_ticket_for(customer_id)
        .await
        .unwrap()
        .expect("a ticket for the customer");
    assert_eq!(ticket.status, TicketStatus::Open);
    let handoff = store
        .get_message(&derived_id(message_id, "handoff"))
        .await
        .unwrap()
        .expect("the hand-off message");
    assert_eq!(handoff.kind, MessageKind::Handoff);
    assert_eq!(handoff.ticket_id.as_deref(), Some(ticket.id.as_str()));
}

#[tokio::test]
async fn a_five_thousand_character_chinese_message_becomes_a_ticket() {
    let fake = FakeOpenSearch::start().await;
    let (store, deps) = desk(&fake).await;
    let text = "我上个月买的东西到现在还没有收到而且客服电话一直打不通请尽快帮我处理".repeat(150);
    let text: String = text.chars().take(5000).collect();
    assert_eq!(text.chars().count(), 5000);
    let (customer, message) = ask(&store, &deps, &text).await;
    assert_handed_off(&store, &customer, &message).await;
    // The domain searched it, and did not refuse the query as too large.
    let searches = fake
        .domain
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.as_str() == "POST /kb/_search")
        .count();
    assert!(searches >= 1);
    assert_eq!(fake.domain.lock().unwrap().refused_as_too_large, 0);
}

#[tokio::test]
async fn a_failing_search_hands_off_to_an_agent() {
    let fake = FakeOpenSearch::start().await;
    let (store, deps) = desk(&fake).await;
    // Every request fails from now on, retries included.
    fake.fail_next(usize::MAX);
    let (customer, message) = ask(&store, &deps, "我的快递到哪里了？").await;
    assert_handed_off(&store, &customer, &message).await;
}
