//! The router Lambda: consumes the inbound FIFO queue, reporting failed records so that
//! SQS retries only those.

use helpdesk_core::aws::{self, events::run_sqs};
use helpdesk_core::rules::Rules;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    let rules = match std::env::var("HELPDESK_RULES") {
        Ok(path) if !path.is_empty() => Rules::parse(&std::fs::read_to_string(&path)?)?,
        _ => Rules::default(),
    };
    let deps = router::Deps {
        store: wiring.store,
        queue: wiring.queue,
        rules,
    };
    let dead_letters = aws::DeadLetters::from_env(&wiring.config);
    run_sqs(&dead_letters, |job| router::handle_job(&deps, job)).await
}
