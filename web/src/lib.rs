//! The web pages of the desk: the agent console (`/console/`) and the website chat widget
//! (`/widget.js`). The files are embedded in the binary at compile time, so the local
//! program and the Lambda functions serve them with no build step, no CDN and no file
//! system. Each answer carries a content hash as its `ETag` and is gzipped when the browser
//! takes gzip; the console's API calls keep their own authentication.

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::{Arc, OnceLock};

/// One embedded file.
struct Asset {
    path: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, body: include_bytes!(concat!("../", $path)) }),*]
    };
}

/// Every file the pages load. A file not listed here is not served.
static ASSETS: &[Asset] = assets![
    "console/index.html",
    "console/style.css",
    "console/app.js",
    "console/ui.js",
    "console/api.js",
    "console/i18n.js",
    "console/auth.js",
    "console/inbox.js",
    "console/ticket.js",
    "console/kb.js",
    "console/reports.js",
    "console/agents.js",
    "console/canned.js",
    "console/assignment.js",
    "console/history.js",
    "console/availability.js",
    "console/bulk.js",
    "console/tags.js",
    "console/vendor/preact.module.js",
    "console/vendor/hooks.module.js",
    "console/vendor/htm.module.js",
    "widget/widget.js",
];

/// What a file is served as, computed once: its gzip form and its hash.
struct Prepared {
    gzip: Vec<u8>,
    etag: String,
}

fn prepared(index: usize) -> &'static Prepared {
    static CACHE: OnceLock<Vec<OnceLock<Prepared>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| ASSETS.iter().map(|_| OnceLock::new()).collect());
    cache[index].get_or_init(|| {
        let body = ASSETS[index].body;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing to a Vec cannot fail; an empty gzip is still served correctly if it did.
        let gzip = enc
            .write_all(body)
            .and_then(|_| enc.finish())
            .unwrap_or_default();
        let hash = Sha256::digest(body);
        Prepared {
            gzip,
            etag: format!("\"{}\"", hex::encode(&hash[..8])),
        }
    })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| e.split(';').next().map(str::trim) == Some("gzip"))
}

/// The answer for one embedded file: 304 when the browser's copy is current.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.path == path) else {
        return not_found();
    };
    let asset = &ASSETS[index];
    let prepared = prepared(index);
    let etag = HeaderValue::from_str(&prepared.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == prepared.etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(headers) && !prepared.gzip.is_empty() {
        let mut r = prepared.gzip.as_slice().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        asset.body.into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(header::ETAG, etag);
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    // Revalidate every time: the ETag makes that a 304 of a few bytes, and a new release
    // is never hidden behind a stale cache.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"error":{"code":"not_found","message":"no such file"}}"#,
    )
        .into_response()
}

/// The console page's policy: its own scripts and the one inline import map (by hash),
/// calls to its own origin and the sign-in issuer's token endpoint, and never inside
/// another site's frame, since it holds agent data.
fn content_security_policy(config: &ConsoleConfig) -> String {
    let page = ASSETS
        .iter()
        .find(|a| a.path == "console/index.html")
        .map(|a| String::from_utf8_lossy(a.body).into_owned())
        .unwrap_or_default();
    let import_map = page
        .split_once("<script type=\"importmap\">")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map(|(map, _)| map)
        .unwrap_or("");
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(import_map));
    let mut connect = "'self'".to_string();
    if let Some(oidc) = &config.oidc {
        if let Some(origin) = origin_of(&oidc.token_url) {
            connect.push(' ');
            connect.push_str(origin);
        }
    }
    format!(
        "default-src 'self'; script-src 'self' 'sha256-{hash}'; style-src 'self'; \
         img-src 'self' data:; connect-src {connect}; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
}

/// `https://id.example.com` of `https://id.example.com/oauth2/token`.
fn origin_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let end = rest.find('/').unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

fn console_index(headers: &HeaderMap, csp: &str) -> Response {
    let mut r = serve("console/index.html", headers);
    r.headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(csp) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

async fn widget_js(headers: HeaderMap) -> Response {
    let mut r = serve("widget/widget.js", &headers);
    // Any site may embed the widget.
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// The console's settings, served as `/console/config.json`: how it signs agents in (with a
/// token by default, or through an OIDC issuer, Cognito's hosted UI on AWS, with the
/// authorization-code flow and PKCE), and the desk's limits on an article, which its editor
/// shows before it sends one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsoleConfig {
    pub oidc: Option<Oidc>,
    pub article_limits: ArticleLimits,
}

/// The desk's limits on an article, as the core checks them (`Article::validate`): this
/// crate does not depend on the core, so whoever builds a [`ConsoleConfig`] passes the
/// core's constants, and the default is their values today. Characters are Unicode scalar
/// values, as Rust's `chars()` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArticleLimits {
    /// The most questions an article has.
    pub questions: usize,
    /// The longest title or question, in characters.
    pub text_chars: usize,
    /// The longest answer, each language's, in characters.
    pub answer_chars: usize,
}

impl Default for ArticleLimits {
    fn default() -> Self {
        ArticleLimits {
            questions: 255,
            text_chars: 500,
            answer_chars: 20_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Oidc {
    pub authorize_url: String,
    pub token_url: String,
    pub client_id: String,
    pub scope: String,
}

/// The variables that switch the console to OIDC sign-in; all three or none.
pub const OIDC_VARIABLES: [&str; 3] = [
    "HELPDESK_CONSOLE_OIDC_AUTHORIZE_URL",
    "HELPDESK_CONSOLE_OIDC_TOKEN_URL",
    "HELPDESK_CONSOLE_OIDC_CLIENT_ID",
];

impl ConsoleConfig {
    /// The console with `article_limits` (the core's) and its sign-in read from
    /// [`OIDC_VARIABLES`] (and `HELPDESK_CONSOLE_OIDC_SCOPE`, default `openid email
    /// profile`) through `var`; an error names the missing ones when only some are set.
    pub fn from_vars(
        article_limits: ArticleLimits,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<ConsoleConfig, String> {
        let values: Vec<Option<String>> = OIDC_VARIABLES
            .iter()
            .map(|k| var(k).filter(|v| !v.trim().is_empty()))
            .collect();
        match values.as_slice() {
            [Some(authorize_url), Some(token_url), Some(client_id)] => Ok(ConsoleConfig {
                oidc: Some(Oidc {
                    authorize_url: authorize_url.clone(),
                    token_url: token_url.clone(),
                    client_id: client_id.clone(),
                    scope: var("HELPDESK_CONSOLE_OIDC_SCOPE")
                        .filter(|v| !v.trim().is_empty())
                        .unwrap_or_else(|| "openid email profile".into()),
                }),
                article_limits,
            }),
            [None, None, None] => Ok(ConsoleConfig {
                oidc: None,
                article_limits,
            }),
            _ => {
                let missing: Vec<&str> = OIDC_VARIABLES
                    .iter()
                    .zip(&values)
                    .filter(|(_, v)| v.is_none())
                    .map(|(k, _)| *k)
                    .collect();
                Err(format!(
                    "console sign-in through OIDC needs all of {}; missing {}",
                    OIDC_VARIABLES.join(", "),
                    missing.join(", ")
                ))
            }
        }
    }

    /// The body of `/console/config.json`.
    pub fn to_json(&self) -> String {
        let mut json = match &self.oidc {
            None => serde_json::json!({"auth": "token"}),
            Some(o) => serde_json::json!({
                "auth": "oidc",
                "authorize_url": o.authorize_url,
                "token_url": o.token_url,
                "client_id": o.client_id,
                "scope": o.scope,
            }),
        };
        let limits = &self.article_limits;
        json["article_limits"] = serde_json::json!({
            "questions": limits.questions,
            "text_chars": limits.text_chars,
            "answer_chars": limits.answer_chars,
        });
        json.to_string()
    }
}

/// `/console/` and its files. Public: the page signs in before it calls the API.
pub fn console<S: Clone + Send + Sync + 'static>(config: &ConsoleConfig) -> Router<S> {
    let csp = Arc::new(content_security_policy(config));
    let config = config.to_json();
    let index_csp = csp.clone();
    Router::new()
        // Someone opening the desk's own address (a first-timer following "listening on
        // http://…") is sent to the console rather than a JSON 404.
        .route("/", get(|| async { Redirect::temporary("/console/") }))
        .route(
            "/console/config.json",
            get(move || {
                let config = config.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::CACHE_CONTROL, "no-cache"),
                        ],
                        config,
                    )
                }
            }),
        )
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(move |headers: HeaderMap| {
                let csp = index_csp.clone();
                async move { console_index(&headers, &csp) }
            }),
        )
        .route(
            "/console/{*path}",
            // A path that is not UTF-8 (`%FF`) names no file: 404, like any other.
            get(
                move |path: Result<Path<String>, PathRejection>, headers: HeaderMap| {
                    let csp = csp.clone();
                    async move {
                        let Ok(Path(path)) = path else {
                            return not_found();
                        };
                        if path.is_empty() {
                            console_index(&headers, &csp)
                        } else {
                            serve(&format!("console/{path}"), &headers)
                        }
                    }
                },
            ),
        )
}

/// `/widget.js`. Public, for any origin.
pub fn widget<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/widget.js", get(widget_js))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_type_and_compresses() {
        for (i, a) in ASSETS.iter().enumerate() {
            assert_ne!(
                content_type(a.path),
                "application/octet-stream",
                "{}",
                a.path
            );
            assert!(!prepared(i).gzip.is_empty(), "{}", a.path);
        }
    }

    #[test]
    fn the_console_policy_allows_its_import_map_and_the_token_endpoint_only() {
        let local = content_security_policy(&ConsoleConfig::default());
        assert!(local.contains("script-src 'self' 'sha256-"), "{local}");
        assert!(local.contains("connect-src 'self';"), "{local}");
        assert!(local.contains("frame-ancestors 'none'"), "{local}");
        let oidc = ConsoleConfig::from_vars(ArticleLimits::default(), |k| {
            Some(match k {
                "HELPDESK_CONSOLE_OIDC_TOKEN_URL" => "https://id.example.com/oauth2/token".into(),
                _ => "https://id.example.com/x".into(),
            })
        })
        .unwrap();
        assert!(
            content_security_policy(&oidc).contains("connect-src 'self' https://id.example.com;")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:9/t"),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(origin_of("javascript:alert(1)"), None);
    }

    #[test]
    fn oidc_is_all_or_nothing() {
        let limits = ArticleLimits::default();
        let none = ConsoleConfig::from_vars(limits, |_| None).unwrap();
        assert_eq!(none.oidc, None);
        let all =
            ConsoleConfig::from_vars(limits, |k| Some(format!("https://id.example/{k}"))).unwrap();
        assert!(all.to_json().contains(r#""auth":"oidc""#));
        let err = ConsoleConfig::from_vars(limits, |k| {
            (k == "HELPDESK_CONSOLE_OIDC_CLIENT_ID").then(|| "abc".to_string())
        })
        .unwrap_err();
        assert!(err.contains("HELPDESK_CONSOLE_OIDC_TOKEN_URL"), "{err}");
    }

    #[test]
    fn the_config_carries_the_article_limits_it_is_given_whatever_the_sign_in() {
        let limits = ArticleLimits {
            questions: 3,
            text_chars: 40,
            answer_chars: 1000,
        };
        let served = |config: ConsoleConfig| -> serde_json::Value {
            serde_json::from_str(&config.to_json()).unwrap()
        };
        let limits_json =
            serde_json::json!({"questions": 3, "text_chars": 40, "answer_chars": 1000});
        assert_eq!(
            served(ConsoleConfig::from_vars(limits, |_| None).unwrap()),
            serde_json::json!({"auth": "token", "article_limits": limits_json})
        );
        let oidc = served(
            ConsoleConfig::from_vars(limits, |k| Some(format!("https://id.example/{k}"))).unwrap(),
        );
        assert_eq!(oidc["auth"], "oidc");
        assert_eq!(oidc["article_limits"], limits_json);
    }

    #[test]
    fn gzip_is_chosen_only_when_offered() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.8"),
        );
        assert!(accepts_gzip(&h));
    }

    #[test]
    fn unknown_and_escaping_paths_are_not_found() {
        let h = HeaderMap::new();
        assert_eq!(
            serve("console/../Cargo.toml", &h).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(serve("console/nope.js", &h).status(), StatusCode::NOT_FOUND);
        assert_eq!(serve("console/app.js", &h).status(), StatusCode::OK);
    }
}
