//! The survey Lambda: the tickets table's change handler. It consumes the table's stream
//! (ticket records only; the handler decides what each change asks for: a survey, a
//! notice, an assignment, SLA due times).

use helpdesk_core::aws::{self, events::run_stream, ticket_change};
use helpdesk_core::survey_token::SurveySigner;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    let secret = aws::secret(&wiring.config, "HELPDESK_SURVEY_SECRET")
        .await?
        .ok_or("HELPDESK_SURVEY_SECRET (or HELPDESK_SURVEY_SECRET_PARAM) is not set")?;
    let dead_letters = aws::DeadLetters::from_env(&wiring.config);
    let deps = survey::Deps {
        store: wiring.store,
        queue: wiring.queue,
        rules: std::sync::Arc::new(aws::rules(&wiring.config).await?),
        signer: SurveySigner::new(secret),
        public_url: aws::env("HELPDESK_PUBLIC_URL")?,
    };
    run_stream(&dead_letters, |new, old| {
        let deps = &deps;
        async move {
            match ticket_change(&new, &old)? {
                Some(change) => survey::handle_change(deps, change).await,
                None => Ok(()),
            }
        }
    })
    .await
}
