//! The local stand-in for an SQS event source mapping: a loop per queue that hands each
//! message to its handler, deletes it on success, and on failure brings it back later with
//! exponential backoff, until it has failed `max_attempts` times and becomes a dead letter.
//! A message that can never succeed (it does not decode) is a dead letter at once; one that
//! waits on another's lease is tried again until the lease ends ([`crate::jobs::disposition`]).

use super::sqlite::{SqliteStore, CHANGE_QUEUE};
use crate::jobs::{disposition, Disposition};
use crate::Result;
use rand::Rng;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The queue that carries ticket changes to the survey handler (the stream, locally).
pub const CHANGE_FEED: &str = CHANGE_QUEUE;

#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    pub max_attempts: u32,
    pub base_delay_ms: i64,
    pub max_delay_ms: i64,
    /// How often an idle worker looks for delayed messages that came due.
    pub idle_poll_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_attempts: 5,
            base_delay_ms: 500,
            max_delay_ms: 60_000,
            idle_poll_ms: 1_000,
        }
    }
}

/// Runs until `shutdown` turns true.
pub async fn run_worker<F, Fut>(
    store: Arc<SqliteStore>,
    queue: &'static str,
    config: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
    handler: F,
) where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut wake = store.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        wake.borrow_and_update();
        match store.receive(queue) {
            Ok(Some(delivery)) => {
                let outcome = handler(delivery.body.clone()).await;
                let result = match outcome {
                    Ok(()) => store.ack(delivery.seq),
                    Err(e) => {
                        let attempts = delivery.attempts + 1;
                        let (dead, delay) = match disposition(&e) {
                            Disposition::DeadLetter => (true, 0),
                            Disposition::Retry => (
                                attempts >= config.max_attempts,
                                crate::jobs::retry_after_secs(&e).map_or_else(
                                    || backoff(&config, attempts),
                                    |s| s as i64 * 1000,
                                ),
                            ),
                            // A lease ends: waiting on it is no failure of the job's own.
                            Disposition::Wait => (false, backoff(&config, 1)),
                        };
                        if dead {
                            tracing::error!(queue, attempts, error = %e, "message moved to the dead letters");
                        } else {
                            tracing::warn!(queue, attempts, retry_in_ms = delay, error = %e, "message failed; will retry");
                        }
                        store.fail(delivery.seq, &e.to_string(), delay, dead)
                    }
                };
                if let Err(e) = result {
                    tracing::error!(queue, error = %e, "queue bookkeeping failed");
                    tokio::time::sleep(Duration::from_millis(config.idle_poll_ms)).await;
                }
            }
            Ok(None) => {
                let due = store
                    .next_visible_in(queue)
                    .ok()
                    .flatten()
                    .map_or(config.idle_poll_ms, |ms| {
                        (ms as u64).clamp(1, config.idle_poll_ms)
                    });
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(due)) => {}
                }
            }
            Err(e) => {
                tracing::error!(queue, error = %e, "reading the queue failed");
                tokio::time::sleep(Duration::from_millis(config.idle_poll_ms)).await;
            }
        }
    }
}

/// Exponential backoff with full jitter on its upper half.
fn backoff(config: &WorkerConfig, attempts: u32) -> i64 {
    let exp = config
        .base_delay_ms
        .saturating_mul(1i64 << attempts.min(20))
        .min(config.max_delay_ms);
    exp / 2 + rand::rng().random_range(0..=exp / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{Queue, QueueName};
    use crate::Error;
    use std::sync::Mutex;

    #[tokio::test]
    async fn retries_then_dead_letters_and_poison_goes_at_once() {
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        store
            .send(QueueName::Outbound, "flaky".into(), None, None)
            .await
            .unwrap();
        store
            .send(QueueName::Outbound, "poison".into(), None, None)
            .await
            .unwrap();
        store
            .send(QueueName::Outbound, "fine".into(), None, None)
            .await
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, rx) = watch::channel(false);
        let config = WorkerConfig {
            max_attempts: 3,
            base_delay_ms: 1,
            max_delay_ms: 5,
            idle_poll_ms: 5,
        };
        let seen2 = seen.clone();
        let worker = tokio::spawn(run_worker(
            store.clone(),
            "outbound",
            config,
            rx,
            move |body| {
                let seen = seen2.clone();
                async move {
                    seen.lock().unwrap().push(body.clone());
                    match body.as_str() {
                        "flaky" => Err(Error::internal("provider down")),
                        "poison" => Err(Error::bad_request("invalid_json", "cannot decode")),
                        _ => Ok(()),
                    }
                }
            },
        ));
        for _ in 0..200 {
            if store.dead_letters("outbound").unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();
        worker.await.unwrap();
        let dead = store.dead_letters("outbound").unwrap();
        assert_eq!(dead.len(), 2);
        let flaky = dead.iter().find(|d| d.body == "flaky").unwrap();
        assert_eq!(flaky.attempts, 3);
        assert!(flaky.error.as_deref().unwrap().contains("provider down"));
        assert_eq!(
            dead.iter().find(|d| d.body == "poison").unwrap().attempts,
            1
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.iter().filter(|b| *b == "fine").count(), 1);
    }
}
