//! The intake Lambda: the channel routes behind API Gateway's HTTP API.

use helpdesk_core::aws;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    let channels = aws::channels(&wiring.config).await?;
    for line in channels.describe() {
        tracing::info!("{line}");
    }
    let deps = Arc::new(intake::Deps {
        store: wiring.store,
        queue: wiring.queue,
        whatsapp: channels.whatsapp,
        telegram: channels.telegram,
    });
    lambda_http::run(intake::router(deps)).await
}
