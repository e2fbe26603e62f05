//! The dispatch Lambda: consumes the outbound queue and delivers on each channel.

use helpdesk_core::aws::{self, events::run_sqs};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    let (channels, supervisor, agent_webhook) = tokio::try_join!(
        aws::channels(&wiring.config),
        aws::secret(&wiring.config, "SUPERVISOR_WEBHOOK_URL"),
        aws::secret(&wiring.config, "AGENT_WEBHOOK_URL"),
    )?;
    if supervisor.is_none() {
        tracing::warn!("SUPERVISOR_WEBHOOK_URL is not set: escalations will not notify anyone");
    }
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let dead_letters = aws::DeadLetters::from_env(&wiring.config);
    let deps = dispatch::Deps::new(wiring.store, &channels, http.clone(), supervisor)
        .with_agent_webhook(http, agent_webhook);
    // A record may wait out a provider's 429s in place, then one send's timeout, and write
    // before and after.
    let reserve = dispatch::provider::Retry::default().max_wait
        + channels.send_timeout
        + std::time::Duration::from_secs(5);
    run_sqs(&dead_letters, reserve, |job| dispatch::handle(&deps, job)).await
}
