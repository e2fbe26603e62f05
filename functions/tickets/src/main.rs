//! The tickets Lambda: the agent API, the knowledge-base admin, the survey page and the agent
//! console's assets behind API Gateway's HTTP API. Agent routes sit behind its JWT
//! authorizer; the survey page is public and carries its own signed token; the console's
//! files are public and sign in before calling the API.

use axum::extract::Request;
use axum::http::HeaderValue;
use helpdesk_core::aws;
use helpdesk_core::knowledge::threshold_from_env;
use helpdesk_core::survey_page;
use helpdesk_core::survey_token::SurveySigner;
use lambda_http::request::RequestContext;
use std::sync::Arc;
use tickets::auth::{agent_from_claims, Agents, AGENT_HEADER, ROLE_HEADER};

/// Passes the authorizer's verified claims on as the agent headers, after removing any the
/// client sent; [`agent_from_claims`] decides who the claims name.
async fn agent_from_authorizer(mut req: Request) -> Request {
    req.headers_mut().remove(AGENT_HEADER);
    req.headers_mut().remove(ROLE_HEADER);
    let claims = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|j| j.claims.clone()),
        _ => None,
    };
    let agent = claims.and_then(|c| agent_from_claims(|k| c.get(k).cloned()));
    if let Some(agent) = agent {
        if let Ok(name) = HeaderValue::from_str(&agent.name) {
            req.headers_mut().insert(AGENT_HEADER, name);
            req.headers_mut()
                .insert(ROLE_HEADER, HeaderValue::from_static(agent.role.as_str()));
        }
    }
    req
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let wiring = aws::wire().await?;
    let (admin, secret) = tokio::try_join!(
        aws::secret(&wiring.config, "HELPDESK_ADMIN_TOKEN"),
        aws::secret(&wiring.config, "HELPDESK_SURVEY_SECRET"),
    )?;
    let agents = Agents::parse(admin.as_deref(), None)?.trusting_authorizer();
    // OpenSearch when `OPENSEARCH_URL` is set, else the articles table; neither sends
    // anything before the first request that needs the knowledge base.
    let knowledge = aws::knowledge(&wiring.config)?;
    let secret =
        secret.ok_or("HELPDESK_SURVEY_SECRET (or HELPDESK_SURVEY_SECRET_PARAM) is not set")?;
    // The page only verifies links; the survey function writes them.
    let survey = Arc::new(survey_page::Deps {
        store: wiring.store.clone(),
        signer: SurveySigner::new(secret),
    });
    let rules = aws::rules(&wiring.config).await?;
    let tickets = Arc::new(tickets::Deps {
        store: wiring.store,
        queue: wiring.queue,
        knowledge,
        agents,
        threshold: threshold_from_env()?,
        auto_assign: rules.auto_assign(),
        close_resolved_after: rules.close_resolved_after(),
        zone: rules.hours().zone(),
    });
    // The console's pages are public; they sign in (Cognito's hosted UI with PKCE) before
    // they call the agent routes, which the JWT authorizer guards.
    let console = tickets::console_config(|k| std::env::var(k).ok())?;
    let app = helpdesk_core::http::answering_misses(
        tickets::router(tickets)
            .layer(axum::middleware::map_request(agent_from_authorizer))
            .merge(survey_page::router(survey))
            .merge(helpdesk_web::console(&console)),
    );
    lambda_http::run(app).await
}
