//! The router Lambda: consumes the inbound FIFO queue, reporting failed records so that
//! SQS retries only those.

use helpdesk_core::aws::{self, events::run_sqs};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    let rules = aws::rules(&wiring.config).await?;
    let deps = router::Deps {
        store: wiring.store,
        queue: wiring.queue,
        rules,
    };
    let dead_letters = aws::DeadLetters::from_env(&wiring.config);
    run_sqs(&dead_letters, |message| router::handle(&deps, message)).await
}
