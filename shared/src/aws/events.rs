//! Lambda event batches, decoded record by record so that one bad record never fails or
//! drops its batch: SQS batches answer with the ids of the records that failed
//! (`ReportBatchItemFailures`), and stream batches with the first failed sequence number.
//! A record that can never succeed goes to the function's dead letters at once, with its
//! reason, by the one policy of [`crate::jobs::disposition`].

use super::DeadLetters;
use crate::jobs::{self, Disposition, Job};
use crate::Result;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

/// Serves a Lambda fed by an SQS queue: each record's body is decoded as the job `T` and
/// handed to `handler`; poison goes to `dead_letters`, and the other failures are reported.
/// A record is started only while `reserve` (the longest one record may take) is left before
/// the invocation's deadline; the records not started are reported as failures, untried, so
/// that a slow batch ends in time rather than being cut off by the timeout, which would
/// return the whole batch to the queue and leave the record under way half done.
pub async fn run_sqs<T, F, Fut>(
    dead_letters: &DeadLetters,
    reserve: Duration,
    handler: F,
) -> std::result::Result<(), lambda_runtime::Error>
where
    T: Job,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let handler = &handler;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| async move {
            let last_start = last_start(event.context.deadline, reserve);
            let out = sqs_batch_until(
                &event.payload,
                last_start,
                |body| async move { handler(jobs::decode(&body)?).await },
                |body, reason| async move { dead_letters.send(&body, &reason).await },
                |record, secs| async move { dead_letters.put_off(&record, secs).await },
            )
            .await;
            Ok::<_, lambda_runtime::Error>(out)
        },
    ))
    .await
}

/// Serves a Lambda fed by a DynamoDB stream, with `handler` taking each record's new and
/// old images; a record that can never succeed goes to `dead_letters` (as the record's
/// JSON) and the stream goes on.
pub async fn run_stream<F, Fut>(
    dead_letters: &DeadLetters,
    handler: F,
) -> std::result::Result<(), lambda_runtime::Error>
where
    F: Fn(Value, Value) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let handler = &handler;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| async move {
            Ok::<_, lambda_runtime::Error>(
                stream_batch(&event.payload, handler, |body, reason| async move {
                    dead_letters.send(&body, &reason).await
                })
                .await,
            )
        },
    ))
    .await
}

/// Whether a failed record was put aside for good: a poison one that reached the dead
/// letters. Anything else (or a dead-letter queue that would not take it) is retried.
async fn put_aside<D, DFut>(e: &crate::Error, body: String, dead_letter: &D) -> bool
where
    D: Fn(String, String) -> DFut,
    DFut: Future<Output = Result<()>>,
{
    if jobs::disposition(e) != Disposition::DeadLetter {
        return false;
    }
    match dead_letter(body, e.to_string()).await {
        Ok(()) => {
            tracing::error!(error = %e, "record moved to the dead letters");
            true
        }
        Err(dl) => {
            tracing::error!(error = %e, dead_letters = %dl, "poison record kept for the queue's redrive");
            false
        }
    }
}

fn failures(ids: Vec<String>) -> Value {
    json!({
        "batchItemFailures": ids.into_iter().map(|id| json!({"itemIdentifier": id})).collect::<Vec<_>>()
    })
}

/// Runs `handler` on the body of each SQS record and reports the failures. On a FIFO
/// queue, a record whose message group already failed in this batch is not tried and is
/// reported too, so the group's order holds when SQS delivers them again.
pub async fn sqs_batch<F, Fut, D, DFut>(event: &Value, handler: F, dead_letter: D) -> Value
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<()>>,
    D: Fn(String, String) -> DFut,
    DFut: Future<Output = Result<()>>,
{
    sqs_batch_until(event, None, handler, dead_letter, |_, _| async { Ok(()) }).await
}

/// The instant after which no record of an invocation is started: `reserve` before its
/// deadline (milliseconds since the epoch, as the Runtime API gives it).
fn last_start(deadline_ms: u64, reserve: Duration) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Instant::now() + left.saturating_sub(reserve)
}

/// [`sqs_batch`], and two more things. A failed record whose failure said when to try
/// again (a provider's 429, see [`jobs::retry_after_secs`]) is handed to `put_off` with that
/// many seconds, to be made visible again only then, instead of waiting inside the function.
/// And no record is started after `last_start` but the batch's first (so every invocation
/// moves the queue on): the rest are reported as failures, untried.
pub async fn sqs_batch_until<F, Fut, D, DFut, P, PFut>(
    event: &Value,
    last_start: impl Into<Option<Instant>>,
    handler: F,
    dead_letter: D,
    put_off: P,
) -> Value
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<()>>,
    D: Fn(String, String) -> DFut,
    DFut: Future<Output = Result<()>>,
    P: Fn(Value, u64) -> PFut,
    PFut: Future<Output = Result<()>>,
{
    let last_start = last_start.into();
    let mut failed = Vec::new();
    let mut failed_groups: HashSet<String> = HashSet::new();
    let mut not_started = 0;
    for (n, record) in event["Records"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let id = record["messageId"].as_str().unwrap_or_default().to_string();
        let group = record["attributes"]["MessageGroupId"]
            .as_str()
            .map(str::to_string);
        if group.as_ref().is_some_and(|g| failed_groups.contains(g)) {
            failed.push(id);
            continue;
        }
        if n > 0 && last_start.is_some_and(|at| Instant::now() > at) {
            not_started += 1;
            if let Some(g) = group {
                failed_groups.insert(g);
            }
            failed.push(id);
            continue;
        }
        let body = record["body"].as_str().map(str::to_string);
        let outcome = match &body {
            Some(body) => handler(body.clone()).await,
            None => Err(crate::Error::unprocessable(
                "invalid_record",
                "an SQS record without a body",
            )),
        };
        if let Err(e) = outcome {
            let body = body.unwrap_or_else(|| record.to_string());
            if put_aside(&e, body, &dead_letter).await {
                continue;
            }
            tracing::error!(message_id = %id, error = %e, "record failed");
            if let Some(secs) = jobs::retry_after_secs(&e) {
                // Not putting it off only means an earlier retry, within the queue's limits.
                if let Err(pe) = put_off(record.clone(), secs).await {
                    tracing::warn!(message_id = %id, error = %pe, "could not put the record off");
                }
            }
            if let Some(g) = group {
                failed_groups.insert(g);
            }
            failed.push(id);
        }
    }
    if not_started > 0 {
        tracing::warn!(
            records = not_started,
            "records left untried for the next delivery: too little of the invocation was left"
        );
    }
    failures(failed)
}

/// Runs `handler` on each DynamoDB stream record (`NewImage`, `OldImage`) in order, and on
/// the first failure stops and reports its sequence number: the stream retries from there,
/// so later records are not lost and order holds.
pub async fn stream_batch<F, Fut, D, DFut>(event: &Value, handler: F, dead_letter: D) -> Value
where
    F: Fn(Value, Value) -> Fut,
    Fut: Future<Output = Result<()>>,
    D: Fn(String, String) -> DFut,
    DFut: Future<Output = Result<()>>,
{
    for record in event["Records"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let change = &record["dynamodb"];
        let sequence = change["SequenceNumber"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let outcome = handler(change["NewImage"].clone(), change["OldImage"].clone()).await;
        if let Err(e) = outcome {
            if put_aside(&e, record.to_string(), &dead_letter).await {
                continue;
            }
            tracing::error!(sequence = %sequence, error = %e, "stream record failed");
            return failures(vec![sequence]);
        }
    }
    failures(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use std::sync::Mutex;

    fn sqs(records: &[(&str, &str, Option<&str>)]) -> Value {
        json!({"Records": records.iter().map(|(id, body, group)| {
            let mut r = json!({"messageId": id, "body": body, "attributes": {}});
            if let Some(g) = group { r["attributes"]["MessageGroupId"] = json!(g); }
            r
        }).collect::<Vec<_>>()})
    }

    async fn handle(body: String) -> Result<()> {
        match body.as_str() {
            "poison" => Err(Error::unprocessable("invalid_json", "poison")),
            "down" => Err(Error::internal("the store is down")),
            "throttled" => Err(Error::too_many_requests(30, "Telegram: retry after 30")),
            _ => Ok(()),
        }
    }

    /// A dead-letter queue that takes everything, and what it took.
    fn taking(
        taken: &Mutex<Vec<(String, String)>>,
    ) -> impl Fn(String, String) -> std::future::Ready<Result<()>> + '_ {
        move |body, reason| {
            taken.lock().unwrap().push((body, reason));
            std::future::ready(Ok(()))
        }
    }

    async fn refusing(_: String, _: String) -> Result<()> {
        Err(Error::internal("DEAD_LETTER_QUEUE_URL is not set"))
    }

    #[tokio::test]
    async fn poison_goes_to_the_dead_letters_at_once_and_the_rest_is_retried() {
        let taken = Mutex::new(Vec::new());
        let out = sqs_batch(
            &sqs(&[
                ("1", "ok", None),
                ("2", "poison", None),
                ("3", "down", None),
            ]),
            handle,
            taking(&taken),
        )
        .await;
        assert_eq!(out, json!({"batchItemFailures": [{"itemIdentifier": "3"}]}));
        let taken = taken.into_inner().unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, "poison");
        assert!(taken[0].1.contains("invalid_json"), "{taken:?}");
    }

    #[tokio::test]
    async fn past_the_last_start_only_the_first_record_runs_and_the_rest_wait_untried() {
        let ran = Mutex::new(Vec::new());
        let handler = |body: String| {
            ran.lock().unwrap().push(body);
            std::future::ready(Ok(()))
        };
        let batch = sqs(&[
            ("1", "a", Some("g1")),
            ("2", "b", Some("g2")),
            ("3", "c", Some("g1")),
        ]);
        let past = Instant::now();
        let out = sqs_batch_until(&batch, past, handler, refusing, |_, _| async { Ok(()) }).await;
        assert_eq!(
            out,
            json!({"batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": "3"}]})
        );
        assert_eq!(*ran.lock().unwrap(), ["a"]);
        // With time enough, all of them.
        let later = Instant::now() + Duration::from_secs(60);
        let out = sqs_batch_until(&batch, later, handler, refusing, |_, _| async { Ok(()) }).await;
        assert_eq!(out, json!({"batchItemFailures": []}));
        assert_eq!(ran.lock().unwrap().len(), 4);
    }

    #[test]
    fn the_last_start_is_the_reserve_before_the_deadline() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let at = last_start(now_ms + 30_000, Duration::from_secs(15));
        let left = at - Instant::now();
        assert!(
            left > Duration::from_secs(5) && left <= Duration::from_secs(15),
            "{left:?}"
        );
        // A deadline already past, or nearer than the reserve: now.
        assert!(last_start(now_ms - 5_000, Duration::from_secs(15)) <= Instant::now());
    }

    #[tokio::test]
    async fn a_record_the_provider_throttled_is_put_off_for_as_long_as_it_asked() {
        let put_off = Mutex::new(Vec::new());
        let out = sqs_batch_until(
            &sqs(&[
                ("1", "throttled", None),
                ("2", "down", None),
                ("3", "ok", None),
            ]),
            None,
            handle,
            refusing,
            |record: Value, secs| {
                put_off
                    .lock()
                    .unwrap()
                    .push((record["messageId"].clone(), secs));
                std::future::ready(Ok(()))
            },
        )
        .await;
        assert_eq!(
            out,
            json!({"batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": "2"}]})
        );
        assert_eq!(put_off.into_inner().unwrap(), vec![(json!("1"), 30)]);
    }

    #[tokio::test]
    async fn poison_that_no_dead_letter_queue_takes_is_reported() {
        let out = sqs_batch(
            &sqs(&[("1", "ok", None), ("2", "poison", None), ("3", "ok", None)]),
            handle,
            refusing,
        )
        .await;
        assert_eq!(out, json!({"batchItemFailures": [{"itemIdentifier": "2"}]}));
    }

    #[tokio::test]
    async fn a_failed_fifo_group_holds_its_later_records() {
        let event = sqs(&[
            ("1", "down", Some("a")),
            ("2", "ok", Some("a")),
            ("3", "ok", Some("b")),
        ]);
        let out = sqs_batch(&event, handle, refusing).await;
        assert_eq!(
            out,
            json!({"batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": "2"}]})
        );
        // A dead-lettered record is done with: its group goes on.
        let taken = Mutex::new(Vec::new());
        let event = sqs(&[("1", "poison", Some("a")), ("2", "ok", Some("a"))]);
        let out = sqs_batch(&event, handle, taking(&taken)).await;
        assert_eq!(out, json!({"batchItemFailures": []}));
    }

    #[tokio::test]
    async fn a_stream_stops_at_its_first_failure_and_sets_poison_aside() {
        let event = json!({"Records": [
            {"dynamodb": {"SequenceNumber": "100", "NewImage": {"ok": true}}},
            {"dynamodb": {"SequenceNumber": "150", "NewImage": {"ok": "poison"}}},
            {"dynamodb": {"SequenceNumber": "200", "NewImage": {"ok": false}}},
            {"dynamodb": {"SequenceNumber": "300", "NewImage": {"ok": true}}}
        ]});
        let taken = Mutex::new(Vec::new());
        let out = stream_batch(
            &event,
            |new, _| async move {
                if new["ok"] == true {
                    Ok(())
                } else if new["ok"] == "poison" {
                    Err(Error::unprocessable("invalid_record", "does not decode"))
                } else {
                    Err(Error::internal("down"))
                }
            },
            taking(&taken),
        )
        .await;
        assert_eq!(
            out,
            json!({"batchItemFailures": [{"itemIdentifier": "200"}]})
        );
        let taken = taken.into_inner().unwrap();
        assert_eq!(taken.len(), 1);
        assert!(taken[0].0.contains("\"150\""), "{taken:?}");
        assert_eq!(
            stream_batch(&json!({}), |_, _| async { Ok(()) }, refusing).await,
            json!({"batchItemFailures": []})
        );
    }
}
