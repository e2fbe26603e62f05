//! The router Lambda: consumes the inbound FIFO queue, reporting failed records so that
//! SQS retries only those. A schedule also invokes it every few minutes to queue again the
//! messages to customers that a failed queue send left queued.

use helpdesk_core::aws::{self, events::sqs_batch};
use helpdesk_core::jobs;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    let rules = aws::rules(&wiring.config).await?;
    let grace = match std::env::var("HELPDESK_QUEUED_GRACE_SECS") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("HELPDESK_QUEUED_GRACE_SECS={v:?} is not a number of seconds"))?,
        _ => helpdesk_core::flow::QUEUED_GRACE_SECS,
    };
    let deps = router::Deps {
        store: wiring.store,
        queue: wiring.queue,
        rules,
    };
    let dead_letters = aws::DeadLetters::from_env(&wiring.config);
    let (deps, dead_letters) = (&deps, &dead_letters);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if event.payload["detail-type"] == "Scheduled Event" {
            let swept = helpdesk_core::flow::sweep_queued(
                deps.store.as_ref(),
                deps.queue.as_ref(),
                helpdesk_core::domain::now(),
                grace,
                500,
            )
            .await?;
            return Ok::<_, lambda_runtime::Error>(json!({ "queued_again": swept }));
        }
        Ok(sqs_batch(
            &event.payload,
            |body| async move { router::handle_job(deps, jobs::decode(&body)?).await },
            |body, reason| async move { dead_letters.send(&body, &reason).await },
        )
        .await)
    }))
    .await
}
