//! The intake Lambda: the channel routes behind API Gateway's HTTP API.

use helpdesk_core::aws;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    let deps = Arc::new(intake::Deps {
        store: wiring.store,
        queue: wiring.queue,
    });
    lambda_http::run(intake::router(deps)).await
}
