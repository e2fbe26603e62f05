//! One provider request, tried until it succeeds or clearly will not: a request that never
//! reached the provider and a 5xx are retried with exponential backoff and jitter, a 429
//! waits as long as the provider asks, and any other 4xx is final at once, with the
//! provider's own reason. A request that went out and got no answer (a timeout) is not
//! tried again: the provider may have taken it, and a second try could deliver it twice.

use rand::Rng;
use serde_json::Value;
use std::time::Duration;

/// How hard one request is tried before the failure goes back to the queue, which tries
/// the whole delivery again later.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub base_delay: Duration,
    /// How long one request waits in place for 429s, all told. A `retry_after` beyond what
    /// is left goes back to the queue, which brings the job back after it: dispatch's
    /// function must end within its timeout (30 s on AWS) whatever the provider asks.
    pub max_wait: Duration,
    /// How many 429s in a row are waited out before giving the job back to the queue.
    pub max_throttled: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            base_delay: Duration::from_millis(200),
            max_wait: Duration::from_secs(5),
            max_throttled: 5,
        }
    }
}

/// Why a request failed, with what the provider said.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub permanent: bool,
    /// The request may have been taken: no answer came.
    pub ambiguous: bool,
    /// The provider's error code (WhatsApp's 131047, Telegram's `error_code`).
    pub code: Option<i64>,
    pub reason: String,
    pub retry_after_secs: Option<u64>,
}

/// What a provider's error body says: its code, its reason, and how long to wait.
pub type Describe = fn(&Value) -> (Option<i64>, Option<String>, Option<u64>);

#[derive(Clone)]
pub struct Caller {
    pub http: reqwest::Client,
    pub timeout: Duration,
    pub retry: Retry,
}

impl Caller {
    pub async fn post(
        &self,
        url: &str,
        bearer: Option<&str>,
        body: &Value,
        describe: Describe,
    ) -> Result<Value, Failure> {
        let mut failed = 0;
        let mut throttled = 0;
        let mut waited = Duration::ZERO;
        loop {
            let mut request = self.http.post(url).timeout(self.timeout).json(body);
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            let failure = match request.send().await {
                Err(e) => Failure {
                    permanent: false,
                    // Refused before it was sent is clearly not delivered; anything after
                    // the request went out may have been.
                    ambiguous: !e.is_connect() && !e.is_builder(),
                    code: None,
                    reason: if e.is_timeout() {
                        format!("no answer within {} ms", self.timeout.as_millis())
                    } else {
                        format!("request failed: {e}")
                    },
                    retry_after_secs: None,
                },
                Ok(response) => {
                    let status = response.status();
                    let header_wait = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    let text = response.text().await.unwrap_or_default();
                    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if status.is_success() {
                        return Ok(json);
                    }
                    let (code, reason, wait) = describe(&json);
                    let reason = reason.unwrap_or_else(|| {
                        helpdesk_core::text::truncate_chars(&text, 300).to_string()
                    });
                    Failure {
                        ambiguous: false,
                        permanent: !(status.is_server_error()
                            || status == reqwest::StatusCode::TOO_MANY_REQUESTS),
                        code,
                        reason: format!("{}: {reason}", status.as_u16()),
                        retry_after_secs: wait
                            .or(header_wait)
                            .or((status == reqwest::StatusCode::TOO_MANY_REQUESTS).then_some(1)),
                    }
                }
            };
            if failure.permanent || failure.ambiguous {
                return Err(failure);
            }
            if let Some(secs) = failure.retry_after_secs {
                let wait = Duration::from_secs(secs);
                if waited + wait > self.retry.max_wait || throttled >= self.retry.max_throttled {
                    return Err(failure);
                }
                throttled += 1;
                waited += wait;
                tracing::warn!(url = %redact(url), retry_after_secs = secs, "provider asks us to slow down");
                tokio::time::sleep(wait).await;
                continue;
            }
            failed += 1;
            if failed >= self.retry.attempts {
                return Err(failure);
            }
            let delay = backoff(self.retry.base_delay, failed);
            tracing::warn!(url = %redact(url), error = %failure.reason, retry_in_ms = delay.as_millis() as u64, "provider request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Exponential backoff with jitter over its upper half, so that senders which failed
/// together do not come back together.
fn backoff(base: Duration, failed: u32) -> Duration {
    let exp = base.saturating_mul(1 << failed.min(10));
    let half = exp / 2;
    half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis() as u64))
}

/// A URL for the log: Telegram puts the bot token in the path.
fn redact(url: &str) -> String {
    match url.find("/bot") {
        Some(i) => format!("{}/bot…", &url[..i]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_jittered() {
        let base = Duration::from_millis(100);
        for failed in 1..5 {
            let d = backoff(base, failed);
            let exp = base * (1 << failed);
            assert!(d >= exp / 2 && d <= exp, "{d:?} for {failed}");
        }
        assert_eq!(redact("http://x/bot123:abc/sendMessage"), "http://x/bot…");
    }
}
