//! The intake Lambda: the channel routes behind API Gateway's HTTP API, and the website
//! chat widget's script (`GET /widget.js`), which visitors' browsers load with the webchat
//! routes it calls.

use helpdesk_core::aws;
use helpdesk_core::survey_token::SurveySigner;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    // Only the receiving half's secrets: intake's role may read no others. The survey key
    // checks the signature of survey buttons pressed in a channel.
    let (channels, survey_secret) = tokio::try_join!(
        aws::channels_for(&wiring.config, helpdesk_core::channels::Side::Receive),
        aws::secret(&wiring.config, "HELPDESK_SURVEY_SECRET"),
    )?;
    for line in channels.describe() {
        tracing::info!("{line}");
    }
    if survey_secret.is_none() {
        tracing::warn!("HELPDESK_SURVEY_SECRET is not set: survey buttons will be ignored");
    }
    let deps = Arc::new(intake::Deps {
        store: wiring.store,
        queue: wiring.queue,
        whatsapp: channels.whatsapp,
        telegram: channels.telegram,
        survey_signer: survey_secret.map(SurveySigner::new),
    });
    let app =
        helpdesk_core::http::answering_misses(intake::router(deps).merge(helpdesk_web::widget()));
    lambda_http::run(app).await
}
