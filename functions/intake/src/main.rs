//! The intake Lambda: the channel routes behind API Gateway's HTTP API, and the website
//! chat widget's script (`GET /widget.js`), which visitors' browsers load with the webchat
//! routes it calls.

use helpdesk_core::aws;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    // Only the receiving half's secrets: intake's role may read no others.
    let channels =
        aws::channels_for(&wiring.config, helpdesk_core::channels::Side::Receive).await?;
    for line in channels.describe() {
        tracing::info!("{line}");
    }
    let deps = Arc::new(intake::Deps {
        store: wiring.store,
        queue: wiring.queue,
        whatsapp: channels.whatsapp,
        telegram: channels.telegram,
    });
    let app = intake::router(deps).merge(helpdesk_web::widget());
    lambda_http::run(app).await
}
