//! The dispatch Lambda: consumes the outbound queue and delivers on each channel.

use helpdesk_core::aws::{self, events::run_sqs};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let supervisor = aws::secret(&wiring.config, "SUPERVISOR_WEBHOOK_URL")
        .await?
        .map(|url| dispatch::SupervisorWebhook::new(http.clone(), url));
    if supervisor.is_none() {
        tracing::warn!("SUPERVISOR_WEBHOOK_URL is not set: escalations will not notify anyone");
    }
    let deps = dispatch::Deps {
        store: wiring.store,
        webchat: Arc::new(dispatch::WebchatSender),
        whatsapp: None,
        telegram: None,
        supervisor,
    };
    run_sqs(|job| dispatch::handle(&deps, job)).await
}
