//! The AWS adapters: DynamoDB behind the store ports, SQS behind the queue port, and the
//! decoding of the tickets table's stream into ticket changes. Clients are built once per
//! cold start by [`connect`] and shared by every request.
//!
//! The SDK finds a local emulator through `AWS_ENDPOINT_URL`, as it finds the real
//! services without it; nothing here knows the difference.

mod dynamo;
pub mod events;
#[cfg(feature = "search")]
mod knowledge;
#[cfg(feature = "opensearch")]
mod opensearch;
pub mod schema;
mod sqs;
mod stream;

pub use dynamo::{DynamoStore, Tables};
#[cfg(feature = "search")]
pub use knowledge::{stored_of, vector_attributes, DynamoKnowledge};
#[cfg(feature = "opensearch")]
pub use opensearch::{OpenSearchKnowledge, DEFAULT_INDEX as DEFAULT_OPENSEARCH_INDEX};
pub use sqs::{DeadLetters, QueueUrls, SqsQueue};
pub use stream::{article_change, article_vectors, ticket_change};

use crate::{Error, Result};

/// How long a warm function trusts its copy of the knowledge base (and the ranker trained
/// from it): another function's write shows up here within this time.
pub const KNOWLEDGE_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// The process's article and query vectors, when it has the sentence encoder: one store
/// shared by every knowledge adapter in the process, so that vectors read with the articles
/// (or from a stream record) are embedded by none of them again. Loads the model at the
/// first call, and logs once which ranking runs (a model file that `HELPDESK_MODEL` names
/// but that is missing or unreadable is an error in the log; the function goes on lexical).
pub fn vectors() -> Option<std::sync::Arc<crate::knowledge::semantic::Vectors>> {
    use crate::knowledge::semantic::{describe, encoder, start, Vectors};
    static SHARED: std::sync::OnceLock<Option<std::sync::Arc<Vectors>>> =
        std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            match start() {
                Ok(ranking) => tracing::info!("{}", describe(ranking)),
                Err(e) => tracing::error!(error = %e.message, "knowledge ranking: lexical only"),
            }
            encoder().map(|m| std::sync::Arc::new(Vectors::in_memory(m)))
        })
        .clone()
}

/// The knowledge index the functions use. The articles always live in the articles table
/// (`ARTICLES_TABLE`). Search runs on the OpenSearch domain when `OPENSEARCH_URL` is set and
/// not empty (the indexer function keeps it in step through the table's stream), else on an
/// in-memory index built from the table. Sends nothing.
#[cfg(all(feature = "search", feature = "opensearch"))]
pub fn knowledge(
    config: &aws_config::SdkConfig,
) -> Result<std::sync::Arc<dyn crate::ports::KnowledgeIndex>> {
    let url = std::env::var("OPENSEARCH_URL").unwrap_or_default();
    if url.trim().is_empty() {
        Ok(std::sync::Arc::new(DynamoKnowledge::new(
            config,
            env("ARTICLES_TABLE")?,
        )))
    } else {
        tracing::info!("knowledge search on OpenSearch");
        Ok(std::sync::Arc::new(crate::knowledge::sync::Indexed {
            articles: Box::new(DynamoKnowledge::new(config, env("ARTICLES_TABLE")?)),
            search: Box::new(OpenSearchKnowledge::from_env(config)?),
        }))
    }
}

/// The SDK's shared configuration, with an HTTPS client on rustls/ring (no OpenSSL, no
/// C build of a crypto library).
pub async fn connect() -> aws_config::SdkConfig {
    config_loader().load().await
}

/// The loader [`connect`] uses, for callers that set more (tests set a region and
/// static credentials for the emulator).
pub fn config_loader() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http)
}

/// What most functions need: the SDK configuration, the stores and the queues, built once
/// at cold start.
pub struct Wiring {
    pub config: aws_config::SdkConfig,
    pub store: std::sync::Arc<DynamoStore>,
    pub queue: std::sync::Arc<SqsQueue>,
}

/// Connects and reads the table names and queue URLs from the environment.
pub async fn wire() -> Result<Wiring> {
    let config = connect().await;
    let store = std::sync::Arc::new(DynamoStore::new(&config, Tables::from_env()?));
    let queue = std::sync::Arc::new(SqsQueue::new(&config, QueueUrls::from_env()));
    Ok(Wiring {
        config,
        store,
        queue,
    })
}

/// A required environment variable, with an error naming it.
pub fn env(name: &str) -> Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Error::internal(format!("the environment variable {name} is not set")))
}

/// The rules the desk runs with on AWS: the TOML text in the SSM parameter that
/// `HELPDESK_RULES_TOML_PARAM` names (or in `HELPDESK_RULES_TOML`), else the file
/// `HELPDESK_RULES` names, else the built-in rules. A file may hold only some sections.
pub async fn rules(config: &aws_config::SdkConfig) -> Result<crate::rules::Rules> {
    match secret(config, "HELPDESK_RULES_TOML").await? {
        Some(text) => crate::rules::Rules::parse(&text),
        None => crate::rules::Rules::from_env(),
    }
}

/// Reads a secret: from SSM Parameter Store (decrypted) when `{name}_PARAM` names a
/// parameter, else from the variable `name` itself (for local runs), else `None`.
pub async fn secret(config: &aws_config::SdkConfig, name: &str) -> Result<Option<String>> {
    if let Ok(param) = std::env::var(format!("{name}_PARAM")) {
        if !param.trim().is_empty() {
            let client = aws_sdk_ssm::Client::new(config);
            let out = client
                .get_parameter()
                .name(param.trim())
                .with_decryption(true)
                .send()
                .await;
            return match out {
                Ok(out) => Ok(out
                    .parameter
                    .and_then(|p| p.value)
                    .filter(|v| !v.trim().is_empty())),
                // No parameter: what it configures is off, as with an unset variable.
                Err(e)
                    if e.as_service_error().is_some_and(|s| {
                        use aws_sdk_ssm::error::ProvideErrorMetadata;
                        s.is_parameter_not_found() || s.code() == Some("ParameterNotFound")
                    }) =>
                {
                    tracing::info!(parameter = %param, "SSM parameter not found; {name} is not set");
                    Ok(None)
                }
                Err(e) => Err(Error::internal(format!(
                    "reading SSM parameter {param}: {}",
                    sdk_message(&e)
                ))),
            };
        }
    }
    Ok(std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// The channels' settings of the sending side (dispatch): see [`channels_for`].
pub async fn channels(config: &aws_config::SdkConfig) -> Result<crate::channels::ChannelsConfig> {
    channels_for(config, crate::channels::Side::Send).await
}

/// The channels' settings of one side, its secrets read from SSM where `NAME_PARAM` names a
/// parameter (see [`secret`]) and the rest from the environment. Only that side's secrets
/// are read: each function's role may read no others.
pub async fn channels_for(
    config: &aws_config::SdkConfig,
    side: crate::channels::Side,
) -> Result<crate::channels::ChannelsConfig> {
    // Read at once rather than one after another: this is on the cold-start path.
    let mut reads = tokio::task::JoinSet::new();
    for name in side.secrets() {
        let config = config.clone();
        reads.spawn(async move { (name, secret(&config, name).await) });
    }
    let mut found = std::collections::HashMap::new();
    while let Some(read) = reads.join_next().await {
        let (name, value) =
            read.map_err(|e| Error::internal(format!("reading the channel secrets: {e}")))?;
        if let Some(v) = value? {
            found.insert(name, v);
        }
    }
    crate::channels::ChannelsConfig::for_side(side, |name| {
        found
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    })
    .map_err(|e| Error::internal(format!("channel configuration: {e}")))
}

/// The service's own message of an SDK error, where there is one.
pub(crate) fn sdk_message<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
