//! The auto-reply Lambda: consumes the auto-reply queue; searches an in-memory index of the
//! articles table, built on first use.

use helpdesk_core::aws::{self, events::run_sqs, DynamoKnowledge};
use helpdesk_core::knowledge::threshold_from_env;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    let knowledge = Arc::new(DynamoKnowledge::new(
        &wiring.config,
        aws::env("ARTICLES_TABLE")?,
    ));
    let deps = auto_reply::Deps {
        store: wiring.store,
        queue: wiring.queue,
        knowledge,
        threshold: threshold_from_env()?,
    };
    run_sqs(|job| auto_reply::handle(&deps, job)).await
}
