//! The HTTP pieces every route shares: the error form of API.md as a response, and
//! extractors that turn bad input into that form instead of axum's plain-text rejections.

use crate::{Error, ErrorKind};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;

/// The largest request body any route takes. Larger ones answer 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if self.kind == ErrorKind::Internal {
            tracing::error!(code = self.code, error = %self.message, "internal error");
            "something went wrong on our side; please try again".to_string()
        } else {
            self.message
        };
        let body = serde_json::json!({"error": {"code": self.code, "message": message}});
        let mut response = (status, axum::Json(body)).into_response();
        if let ErrorKind::TooManyRequests { retry_after_secs } = self.kind {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs),
            );
        }
        response
    }
}

/// The error for a route that does not exist.
pub async fn not_found() -> Error {
    Error::new(ErrorKind::NotFound, "not_found", "no such route")
}

/// `app` with the API's error form for what no route answers: 404 for an unknown path, and
/// 405 for a known path asked with a method it does not take. axum answers the latter
/// itself, after each route's own layers (a preflight for the visitors' routes is answered
/// there), with an empty body and an `Allow` header; this gives it the error form and keeps
/// its headers (`Allow`, and a visitors' route's CORS ones). Called on the whole app, after
/// every merge.
pub fn answering_misses<S: Clone + Send + Sync + 'static>(app: Router<S>) -> Router<S> {
    app.fallback(not_found)
        .layer(axum::middleware::map_response(method_not_allowed))
}

async fn method_not_allowed(response: Response) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response
            .headers()
            .contains_key(axum::http::header::CONTENT_TYPE)
    {
        return response;
    }
    let mut answer = Error::new(
        ErrorKind::MethodNotAllowed,
        "method_not_allowed",
        "this route does not take this method; see the Allow header",
    )
    .into_response();
    for (name, value) in response.headers() {
        if name != axum::http::header::CONTENT_LENGTH {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

/// A JSON body, read whole (within [`MAX_BODY_BYTES`]) and parsed with serde.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// How much of an oversized body is read and dropped before answering 413, so that the
/// client, still sending, gets the answer instead of a broken connection.
const DRAIN_LIMIT_BYTES: usize = 16 * 1024 * 1024;

/// The raw body, for routes that check a signature over the exact bytes.
pub async fn body_bytes<S: Send + Sync>(req: Request, _state: &S) -> Result<bytes::Bytes, Error> {
    use http_body_util::BodyExt;
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Error::bad_request("bad_request", format!("could not read the body: {e}"))
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        total += chunk.len();
        if total <= MAX_BODY_BYTES {
            buf.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT_BYTES {
            break;
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(Error::too_large(
            "payload_too_large",
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    Ok(buf.freeze())
}

pub use crate::json::parse as parse_json;

/// Query parameters, parsed with serde, with the error form on failure.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded_like(query).map(ApiQuery)
    }
}

fn serde_urlencoded_like<T: DeserializeOwned>(query: &str) -> Result<T, Error> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| Error::bad_request("bad_request", "the query string is malformed"))?,
    )
    .map(|q| q.0)
    .map_err(|e| Error::bad_request("bad_request", format!("bad query parameters: {e}")))
}

/// Path parameters, with the error form on failure: a segment that is not UTF-8 (`%FF`), or
/// that does not parse as `T`, is a 400 `bad_request` instead of axum's plain-text answer.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            // A route whose handler asks for parameters it does not have: our mistake.
            Err(PathRejection::MissingPathParams(e)) => Err(Error::internal(e.body_text())),
            Err(e) => Err(Error::bad_request(
                "bad_request",
                format!("bad path: {}", e.body_text()),
            )),
        }
    }
}

/// `Cache-Control: no-store` on an answer that chose no caching of its own, as a layer
/// (`axum::middleware::map_response`) on the routes whose answers hold customers' words or
/// a person's details: neither a shared cache nor the browser keeps a copy on disk. A
/// list revalidated with an ETag sets its own `no-cache` and keeps it.
pub async fn no_store_by_default(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(axum::http::header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-store"));
    response
}

/// The bearer token of an `Authorization` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// The `Idempotency-Key` header, when the client sent one; its length is checked where it
/// is taken ([`crate::flow::idempotent_id`]).
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            Error::bad_request(
                "invalid_idempotency_key",
                "an Idempotency-Key is visible ASCII text",
            )
        }),
    }
}

/// CORS for the routes a visitor's browser calls from the site that embeds the chat widget
/// (`/webchat/...`, `/surveys/{token}`): preflights are answered here, and every answer,
/// errors included, may be read by any origin. These routes authenticate with a token in
/// a header or in the path, never a cookie, so an open origin gives a page nothing it could
/// not do with the token itself. On AWS the HTTP API's CORS configuration answers first and
/// narrows the origins to `WebchatAllowedOrigins`.
pub async fn cors_for_visitors(req: Request, next: axum::middleware::Next) -> Response {
    use axum::http::{header, HeaderValue, Method};
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        r
    } else {
        next.run(req).await
    };
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}
