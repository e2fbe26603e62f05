//! The auto-reply Lambda: consumes the auto-reply queue; searches the knowledge base
//! (OpenSearch, or an in-memory index of the articles table), loaded on first use.

use helpdesk_core::aws::{self, events::run_sqs};
use helpdesk_core::knowledge::threshold_from_env;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    // OpenSearch when `OPENSEARCH_URL` is set, else the articles table; neither sends
    // anything before the first request that needs the knowledge base.
    let knowledge = aws::knowledge(&wiring.config)?;
    let dead_letters = aws::DeadLetters::from_env(&wiring.config);
    let deps = auto_reply::Deps {
        store: wiring.store,
        queue: wiring.queue,
        knowledge,
        threshold: threshold_from_env()?,
    };
    // A record is one search and a few writes.
    let reserve = std::time::Duration::from_secs(3);
    run_sqs(&dead_letters, reserve, |job| auto_reply::handle(&deps, job)).await
}
