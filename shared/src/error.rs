//! One error type for the whole desk. Each error carries the kind that decides its HTTP
//! status, a stable snake_case code for programs, and a message for people.

use std::fmt;

/// What went wrong, coarse enough to choose a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    /// The route exists, but not for this method.
    MethodNotAllowed,
    Conflict,
    PreconditionRequired,
    TooLarge,
    Unprocessable,
    /// Too many requests: try again after this many seconds (`Retry-After`).
    TooManyRequests {
        retry_after_secs: u64,
    },
    Unavailable,
    Internal,
}

impl ErrorKind {
    /// The HTTP status this kind answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::PreconditionRequired => 428,
            ErrorKind::TooLarge => 413,
            ErrorKind::Unprocessable => 422,
            ErrorKind::TooManyRequests { .. } => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Error {
            kind,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "not_found",
            format!("no {what} with id {id:?}"),
        )
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, code, message)
    }
    /// 429 `rate_limited`, answered with `Retry-After: retry_after_secs` (at least 1).
    pub fn too_many_requests(retry_after_secs: u64, message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::TooManyRequests {
                retry_after_secs: retry_after_secs.max(1),
            },
            "rate_limited",
            message,
        )
    }
    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, code, message)
    }
    /// Not now, but later: another holds what this needs (a sender's lease).
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, code, message)
    }
    /// A failure of our own storage, queue or network; the message goes to the log, and the
    /// caller sees a generic text.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }
    /// A ticket saved over a version that moved on: the one conflict every store reports
    /// alike.
    pub fn version_conflict(stored: u64, expected: u64) -> Self {
        Self::conflict(
            "version_conflict",
            format!("the ticket is at version {stored}, not {expected}; reload it and try again"),
        )
    }
    /// A new ticket whose id is taken.
    pub fn ticket_exists(id: &str) -> Self {
        Self::conflict("already_exists", format!("ticket {id} exists"))
    }
    /// A second active ticket for one customer. The message names the one they have, so
    /// that an agent who tried to open another goes to it.
    pub fn active_ticket_exists(customer_id: &str, ticket_id: &str) -> Self {
        Self::conflict(
            "active_ticket_exists",
            format!(
                "customer {customer_id} already has the active ticket {ticket_id}; \
                 carry on there, or resolve it before opening another"
            ),
        )
    }
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind == kind
    }
}
