//! Rate limits on the public routes: at most `limit` requests a `window` under one key (a
//! client address, a webchat session), counted in fixed windows in the idempotency store,
//! so that every function instance and the local program count together.

use crate::ports::IdempotencyStore;
use crate::{Error, Result};

/// At most `limit` requests every `window_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u64,
    pub window_secs: i64,
}

impl RateLimit {
    /// `limit` a minute.
    pub fn per_minute(limit: u64) -> RateLimit {
        RateLimit {
            limit,
            window_secs: 60,
        }
    }

    /// The counter's key for `key` at `now` (Unix seconds), and the seconds left in its
    /// window.
    fn window(&self, what: &str, key: &str, now: i64) -> (String, i64) {
        let window = self.window_secs.max(1);
        let n = now.div_euclid(window);
        (format!("rate:{what}:{key}:{n}"), (n + 1) * window - now)
    }
}

/// Counts one request of kind `what` under `key`; 429 `rate_limited` with `Retry-After` (the
/// rest of the window) once the window holds more than the limit.
pub async fn check(
    store: &dyn IdempotencyStore,
    what: &str,
    key: &str,
    limit: RateLimit,
    now: i64,
) -> Result<()> {
    let (counter, left) = limit.window(what, key, now);
    // The counter outlives its window a little, for clocks that differ between instances.
    let count = store.count(&counter, limit.window_secs.max(1) * 2).await?;
    if count > limit.limit {
        tracing::info!(what, count, limit = limit.limit, "rate limit reached");
        return Err(Error::too_many_requests(
            left.max(1) as u64,
            format!(
                "too many {what}: at most {} every {} s; try again in {} s",
                limit.limit,
                limit.window_secs,
                left.max(1)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_fixed_and_say_how_long_is_left() {
        let l = RateLimit::per_minute(5);
        assert_eq!(
            l.window("sessions", "1.2.3.4", 120),
            ("rate:sessions:1.2.3.4:2".into(), 60)
        );
        assert_eq!(
            l.window("sessions", "1.2.3.4", 179),
            ("rate:sessions:1.2.3.4:2".into(), 1)
        );
        assert_eq!(
            l.window("sessions", "1.2.3.4", 180).0,
            "rate:sessions:1.2.3.4:3"
        );
    }

    #[test]
    fn the_error_is_429_with_the_wait() {
        let e = Error::too_many_requests(0, "slow down");
        assert_eq!(e.kind.status(), 429);
        assert_eq!(e.code, "rate_limited");
        assert_eq!(
            e.kind,
            crate::ErrorKind::TooManyRequests {
                retry_after_secs: 1
            }
        );
    }
}
