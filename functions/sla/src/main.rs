//! The sla Lambda: the desk's clock on AWS, run by an EventBridge schedule (every minute).
//! Each turn records the SLA targets that passed unmet (found through the tickets table's
//! `sla_due` index, never a scan; the tickets' stream then notifies the supervisor once per
//! breach, and the policy may escalate), closes the resolved tickets whose time to close by
//! themselves came (the stream then sends their surveys), and gives waiting tickets to agents
//! with room, in case a change was missed. Locally, `helpdesk serve` runs the same turn on a
//! timer.

use helpdesk_core::assignment;
use helpdesk_core::aws;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    let rules = aws::rules(&wiring.config).await?;
    let (store, rules) = (&wiring.store, &rules);
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let turn = assignment::tick(store.as_ref(), rules, helpdesk_core::domain::now()).await?;
        tracing::info!(
            breached = turn.breached,
            assigned = turn.assigned,
            closed = turn.closed,
            "clock"
        );
        Ok::<_, lambda_runtime::Error>(json!({
            "breached": turn.breached,
            "assigned": turn.assigned,
            "closed": turn.closed,
        }))
    }))
    .await
}
