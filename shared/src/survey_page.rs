//! The survey page: `GET` shows the form (or JSON), `POST` takes the rating, once. It lives
//! in the core so that whichever function serves it (the tickets function on AWS, the local
//! program) needs no other function's crate.

use crate::domain::{self, Language, Ticket};
use crate::flow;
use crate::http::{body_bytes, cors_for_visitors, no_store_by_default, parse_json, ApiPath};
use crate::ports::Store;
use crate::survey_token::SurveySigner;
use crate::{Error, ErrorKind, Result};
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the page needs: the tickets, and the signer that checks its links.
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub signer: SurveySigner,
}

pub fn router(deps: Arc<Deps>) -> Router {
    Router::new()
        .route("/surveys/{token}", get(show).post(answer))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::map_response(no_store_by_default))
        .layer(axum::middleware::from_fn(cors_for_visitors))
        .with_state(deps)
}

/// The page's own stylesheet, inline: the policy names it by its hash.
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;\
padding:0 1rem}label{margin-right:1rem}textarea{width:100%}button{margin-top:1rem;\
padding:.5rem 1.5rem}";

/// The survey page's policy: no script at all, its one inline stylesheet by hash, a form
/// that posts only back to itself, and never inside another site's frame (a framing page
/// could trick a customer into a rating).
pub fn content_security_policy() -> String {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Headers on every answer of the survey routes: the policy, no MIME sniffing, and no
/// referrer, since the page's address is the customer's credential.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(&content_security_policy()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    response
}

/// A link that names no open survey: forged, expired, or not even text (`%FF`), it is the
/// same 404 to the customer.
fn not_a_survey() -> Error {
    Error::new(
        ErrorKind::NotFound,
        "not_found",
        "this survey link is not valid or has expired",
    )
}

async fn ticket_for(deps: &Deps, token: Result<ApiPath<String>>) -> Result<Ticket> {
    let ApiPath(token) = token.map_err(|_| not_a_survey())?;
    let id = deps
        .signer
        .verify(&token, domain::now())
        .ok_or_else(not_a_survey)?;
    deps.store.get_ticket(&id).await?.ok_or_else(not_a_survey)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

#[derive(Serialize)]
struct SurveyView {
    ticket_id: String,
    subject: String,
    rating: Option<u8>,
    comment: Option<String>,
    answered: bool,
}

fn view(t: &Ticket) -> SurveyView {
    let survey = t.survey.clone().unwrap_or_default();
    SurveyView {
        ticket_id: t.id.clone(),
        subject: t.subject.clone(),
        rating: survey.rating,
        comment: survey.comment,
        answered: survey.rating.is_some(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A text in English, then in Chinese marked as such, so that a screen reader reads each in
/// its own voice (the page is `lang="en"`).
fn both(en: &str, zh: &str) -> String {
    format!("{en} · <span lang=\"zh-CN\">{zh}</span>")
}

fn page(lang: &str, title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>{body}</body></html>"
    ))
}

/// The survey's language: the one asked for with the page's switch (`?lang=zh` or
/// `?lang=en`), else the ticket's, which is the language the customer wrote in. Anything
/// else in the query is no reason to refuse the page, and is passed over.
fn language_of(query: Option<&str>, ticket: &Ticket) -> Language {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| match pair {
            "lang=zh" => Some(Language::Zh),
            "lang=en" => Some(Language::En),
            _ => None,
        })
        .unwrap_or(ticket.language)
}

/// The text in the page's language.
fn tr<'a>(lang: Language, en: &'a str, zh: &'a str) -> &'a str {
    match lang {
        Language::En => en,
        Language::Zh => zh,
    }
}

/// A page in one language, with a link to the same page in the other (the form posts back
/// to the address it was shown at, so the answer's thanks keep the language).
fn page_in(lang: Language, title: &str, body: &str) -> Html<String> {
    let (code, other) = match lang {
        Language::En => (
            "en",
            "<a href=\"?lang=zh\" hreflang=\"zh-CN\" lang=\"zh-CN\">中文</a>",
        ),
        Language::Zh => (
            "zh-CN",
            "<a href=\"?lang=en\" hreflang=\"en\" lang=\"en\">English</a>",
        ),
    };
    page(code, title, &format!("<p>{other}</p>{body}"))
}

/// A refusal as the page a person reads: a browser following the link or sending the form
/// gets a page in both languages with the status, not the API's JSON.
fn refusal_page(e: Error) -> Response {
    let status = axum::http::StatusCode::from_u16(e.kind.status())
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let body = match (e.kind, e.code) {
        (ErrorKind::Conflict, "already_answered") => {
            format!(
                "<h1>{}</h1><p>{}</p>",
                both("Thank you", "谢谢"),
                both(
                    "This survey was already answered; the first answer counts.",
                    "您已经评价过了，以第一次的评价为准。"
                )
            )
        }
        (ErrorKind::NotFound, _) => format!(
            "<h1>{}</h1><p>{}</p>",
            both("Survey not found", "找不到该调查"),
            both(
                "This survey link is not valid or has expired.",
                "该链接无效或已过期。"
            )
        ),
        (ErrorKind::Internal | ErrorKind::Unavailable, _) => {
            tracing::error!(code = e.code, error = %e.message, "survey page failed");
            format!(
                "<h1>{}</h1><p>{}</p>",
                both("Please try again", "请稍后再试"),
                both("Something went wrong on our side.", "我们这边出了问题。")
            )
        }
        _ => format!(
            "<h1>{}</h1><p>{}</p>",
            both("Your answer was not taken", "未能提交"),
            escape(&e.message)
        ),
    };
    (status, page("en", "Survey · 满意度调查", &body)).into_response()
}

async fn show(
    State(deps): State<Arc<Deps>>,
    token: Result<ApiPath<String>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let json = wants_json(&headers);
    match show_survey(&deps, token, query.as_deref(), json).await {
        Ok(r) => r,
        Err(e) if json => e.into_response(),
        Err(e) => refusal_page(e),
    }
}

async fn show_survey(
    deps: &Deps,
    token: Result<ApiPath<String>>,
    query: Option<&str>,
    json: bool,
) -> Result<Response> {
    let ticket = ticket_for(deps, token).await?;
    if json {
        return Ok(Json(view(&ticket)).into_response());
    }
    let lang = language_of(query, &ticket);
    let v = view(&ticket);
    let body = if let Some(rating) = v.rating {
        format!(
            "<h1>{}</h1><p>{}</p>",
            tr(lang, "Thank you", "谢谢"),
            match lang {
                Language::En => format!("You rated us {rating} of 5."),
                Language::Zh => format!("您的评分：{rating} 分（满分 5 分）。"),
            }
        )
    } else {
        let options: String = (1..=5)
            .map(|n| format!("<label><input type=\"radio\" name=\"rating\" value=\"{n}\" required> {n}</label>"))
            .collect();
        format!(
            "<h1>{}</h1><p>{}</p>\
             <form method=\"post\"><fieldset><legend>{}</legend>{options}</fieldset>\
             <p><label for=\"comment\">{}</label></p>\
             <textarea id=\"comment\" name=\"comment\" rows=\"4\" maxlength=\"2000\"></textarea>\
             <button type=\"submit\">{}</button></form>",
            tr(lang, "How did we do?", "请为我们的服务打分"),
            escape(&v.subject),
            tr(lang, "1 = poor, 5 = excellent", "1 分最差，5 分最好"),
            tr(lang, "Anything to add?", "其他意见"),
            tr(lang, "Send", "提交"),
        )
    };
    Ok(page_in(lang, tr(lang, "Survey", "满意度调查"), &body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    rating: serde_json::Value,
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FormAnswer {
    rating: String,
    comment: Option<String>,
}

async fn answer(
    State(deps): State<Arc<Deps>>,
    token: Result<ApiPath<String>>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    match take_answer(&deps, token, query.as_deref(), req, is_form).await {
        Ok(r) => r,
        Err(e) if is_form => refusal_page(e),
        Err(e) => e.into_response(),
    }
}

async fn take_answer(
    deps: &Deps,
    token: Result<ApiPath<String>>,
    query: Option<&str>,
    req: Request,
    is_form: bool,
) -> Result<Response> {
    let ticket = ticket_for(deps, token).await?;
    let bytes = body_bytes(req, &()).await?;
    let (rating, comment) = if is_form {
        let form: FormAnswer = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            Error::bad_request("bad_request", format!("the form is not valid: {e}"))
        })?;
        let rating = form.rating.trim().parse::<i64>().map_err(|_| {
            Error::unprocessable("invalid_rating", "a rating is a whole number from 1 to 5")
        })?;
        (rating, form.comment)
    } else {
        let a: Answer = parse_json(&bytes)?;
        let rating = a.rating.as_i64().ok_or_else(|| {
            Error::unprocessable("invalid_rating", "a rating is a whole number from 1 to 5")
        })?;
        (rating, a.comment)
    };
    let (ticket, _) = flow::update_ticket(deps.store.as_ref(), &ticket.id, |t| {
        t.rate(None, rating, comment.clone(), domain::now())?;
        Ok(true)
    })
    .await?;
    tracing::info!(ticket_id = %ticket.id, rating, "survey answered");
    let v = view(&ticket);
    if is_form {
        let lang = language_of(query, &ticket);
        return Ok(page_in(
            lang,
            tr(lang, "Thank you", "谢谢"),
            &format!(
                "<h1>{}</h1><p>{}</p>",
                tr(lang, "Thank you", "谢谢"),
                tr(lang, "Your rating was recorded.", "您的评分已收到。")
            ),
        )
        .into_response());
    }
    Ok(Json(
        serde_json::json!({"ticket_id": v.ticket_id, "rating": v.rating, "comment": v.comment}),
    )
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::Digest;

    #[test]
    fn the_page_speaks_the_customers_language_unless_the_switch_asks_for_the_other() {
        let mut ticket = Ticket::open(
            domain::NewTicket {
                customer_id: "c".into(),
                channel: domain::Channel::Webchat,
                subject: None,
                description: "我要投诉".into(),
                priority: domain::Priority::Normal,
                skill: domain::Skill::General,
            },
            domain::now(),
        );
        assert_eq!(ticket.language, Language::Zh);
        assert_eq!(language_of(None, &ticket), Language::Zh);
        assert_eq!(language_of(Some("lang=en"), &ticket), Language::En);
        assert_eq!(language_of(Some("x=1&lang=fr"), &ticket), Language::Zh);
        ticket.language = Language::En;
        assert_eq!(language_of(Some("lang=zh"), &ticket), Language::Zh);
        let Html(html) = page_in(Language::Zh, "满意度调查", "<h1>请为我们的服务打分</h1>");
        assert!(html.contains("<html lang=\"zh-CN\">"), "{html}");
        assert!(html.contains("href=\"?lang=en\""), "{html}");
        assert!(!html.contains("How did we do"), "{html}");
    }

    #[test]
    fn the_policy_allows_exactly_the_pages_own_style_and_no_script() {
        let Html(html) = page("zh-CN", "Survey", "<h1>请为我们的服务打分</h1>");
        let style = html
            .split_once("<style>")
            .and_then(|(_, rest)| rest.split_once("</style>"))
            .map(|(style, _)| style)
            .unwrap();
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style));
        let policy = content_security_policy();
        assert!(
            policy.contains(&format!("style-src 'sha256-{hash}'")),
            "{policy}"
        );
        assert!(policy.contains("default-src 'none'"));
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains("script-src") && !html.contains("<script"));
    }
}
