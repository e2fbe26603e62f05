//! The knowledge indexer Lambda: the articles table's stream in, the OpenSearch index kept
//! in step (see the library). Clients are built once; nothing is sent before an event.

use helpdesk_core::aws;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = aws::connect().await;
    let deps = kb_indexer::Deps {
        articles: Box::new(aws::DynamoKnowledge::new(
            &config,
            aws::env("ARTICLES_TABLE")?,
        )),
        search: Box::new(aws::OpenSearchKnowledge::from_env(&config)?),
    };
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            kb_indexer::handle(deps, &event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
