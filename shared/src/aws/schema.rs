//! The tables as the adapters expect them, for tests against a local emulator and for
//! development stacks. `template.yaml` declares the same tables for AWS; a test checks that
//! the two name the same indexes.

use super::{sdk_message, Tables};
use crate::{Error, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_dynamodb::Client;

/// The tickets table's indexes: (name, partition key, sort key).
pub const TICKET_INDEXES: &[(&str, &str, &str)] = &[
    ("by_status", "status", "id"),
    ("by_skill", "skill", "id"),
    ("by_assignee", "assignee", "id"),
    ("by_customer", "customer_id", "id"),
    ("by_ref", "ticket_ref", "id"),
    ("all", "kind", "id"),
    ("rated", "rated_pk", "rated_at"),
    ("waiting", "waiting_pk", "waiting_sk"),
    ("sla_due", "sla_pk", "sla_due"),
];

/// The messages table's indexes.
pub const MESSAGE_INDEXES: &[(&str, &str, &str)] = &[
    ("by_conversation", "conversation", "sk"),
    ("by_ticket", "ticket_id", "sk"),
    ("by_provider_id", "provider_key", "sk"),
    // Sparse: only messages still queued carry `queued_pk`, so the sweep of those left
    // queued reads them alone, however long the history.
    ("queued", "queued_pk", "sk"),
];

/// The canned responses table's key: (partition key, sort key). One partition holds them
/// all, sorted by code, and a counter item.
pub const CANNED_KEY: (&str, &str) = ("pk", "short_code");

/// The sessions table's index, for moving a customer's sessions in a merge.
pub const SESSION_INDEXES: &[(&str, &str, &str)] = &[("by_customer", "customer_id", "token_hash")];

fn build<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| Error::internal(format!("building a table definition: {e}")))
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement> {
    build(
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build(),
    )
}

fn attr(name: &str) -> Result<AttributeDefinition> {
    build(
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build(),
    )
}

async fn create(
    client: &Client,
    table: &str,
    (hash, range): (&str, Option<&str>),
    indexes: &[(&str, &str, &str)],
    stream: bool,
) -> Result<()> {
    let mut names: Vec<&str> = vec![hash];
    names.extend(range);
    for (_, pk, sk) in indexes {
        for a in [pk, sk] {
            if !names.contains(a) {
                names.push(a);
            }
        }
    }
    let mut req = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(hash, KeyType::Hash)?);
    if let Some(range) = range {
        req = req.key_schema(key(range, KeyType::Range)?);
    }
    for a in names {
        req = req.attribute_definitions(attr(a)?);
    }
    for (name, pk, sk) in indexes {
        req = req.global_secondary_indexes(build(
            GlobalSecondaryIndex::builder()
                .index_name(*name)
                .key_schema(key(pk, KeyType::Hash)?)
                .key_schema(key(sk, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build(),
        )?);
    }
    if stream {
        req = req.stream_specification(build(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build(),
        )?);
    }
    req.send()
        .await
        .map_err(|e| Error::internal(format!("creating table {table}: {}", sdk_message(&e))))?;
    Ok(())
}

/// Creates every table (on an emulator: AWS gets them from the template).
pub async fn create_tables(client: &Client, t: &Tables) -> Result<()> {
    create(client, &t.tickets, ("id", None), TICKET_INDEXES, true).await?;
    create(client, &t.customers, ("id", None), &[], false).await?;
    create(client, &t.identities, ("identity", None), &[], false).await?;
    create(client, &t.messages, ("id", None), MESSAGE_INDEXES, false).await?;
    create(client, &t.idempotency, ("key", None), &[], false).await?;
    create(
        client,
        &t.sessions,
        ("token_hash", None),
        SESSION_INDEXES,
        false,
    )
    .await?;
    let (pk, sk) = CANNED_KEY;
    create(client, &t.canned_responses, (pk, Some(sk)), &[], false).await?;
    Ok(())
}
