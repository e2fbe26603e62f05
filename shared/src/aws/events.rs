//! Lambda event batches, decoded record by record so that one bad record never fails or
//! drops its batch: SQS batches answer with the ids of the records that failed
//! (`ReportBatchItemFailures`), and stream batches with the first failed sequence number.

use crate::Result;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::future::Future;

/// Serves a Lambda fed by an SQS queue: each record's body is decoded as `T` and handed
/// to `handler`; the failed ones are reported.
pub async fn run_sqs<T, F, Fut>(handler: F) -> std::result::Result<(), lambda_runtime::Error>
where
    T: serde::de::DeserializeOwned,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let handler = &handler;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| async move {
            let out = sqs_batch(&event.payload, |body| async move {
                handler(crate::json::parse(body.as_bytes())?).await
            })
            .await;
            Ok::<_, lambda_runtime::Error>(out)
        },
    ))
    .await
}

/// Serves a Lambda fed by a DynamoDB stream, with `handler` taking each record's new and
/// old images.
pub async fn run_stream<F, Fut>(handler: F) -> std::result::Result<(), lambda_runtime::Error>
where
    F: Fn(Value, Value) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let handler = &handler;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| async move {
            Ok::<_, lambda_runtime::Error>(stream_batch(&event.payload, handler).await)
        },
    ))
    .await
}

fn failures(ids: Vec<String>) -> Value {
    json!({
        "batchItemFailures": ids.into_iter().map(|id| json!({"itemIdentifier": id})).collect::<Vec<_>>()
    })
}

/// Runs `handler` on the body of each SQS record and reports the failures. On a FIFO
/// queue, a record whose message group already failed in this batch is not tried and is
/// reported too, so the group's order holds when SQS delivers them again.
pub async fn sqs_batch<F, Fut>(event: &Value, handler: F) -> Value
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut failed = Vec::new();
    let mut failed_groups: HashSet<String> = HashSet::new();
    for record in event["Records"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let id = record["messageId"].as_str().unwrap_or_default().to_string();
        let group = record["attributes"]["MessageGroupId"]
            .as_str()
            .map(str::to_string);
        if group.as_ref().is_some_and(|g| failed_groups.contains(g)) {
            failed.push(id);
            continue;
        }
        let outcome = match record["body"].as_str() {
            Some(body) => handler(body.to_string()).await,
            None => Err(crate::Error::unprocessable(
                "invalid_record",
                "an SQS record without a body",
            )),
        };
        if let Err(e) = outcome {
            tracing::error!(message_id = %id, error = %e, "record failed");
            if let Some(g) = group {
                failed_groups.insert(g);
            }
            failed.push(id);
        }
    }
    failures(failed)
}

/// Runs `handler` on each DynamoDB stream record (`NewImage`, `OldImage`) in order, and on
/// the first failure stops and reports its sequence number: the stream retries from there,
/// so later records are not lost and order holds.
pub async fn stream_batch<F, Fut>(event: &Value, handler: F) -> Value
where
    F: Fn(Value, Value) -> Fut,
    Fut: Future<Output = Result<()>>,
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

    fn sqs(records: &[(&str, &str, Option<&str>)]) -> Value {
        json!({"Records": records.iter().map(|(id, body, group)| {
            let mut r = json!({"messageId": id, "body": body, "attributes": {}});
            if let Some(g) = group { r["attributes"]["MessageGroupId"] = json!(g); }
            r
        }).collect::<Vec<_>>()})
    }

    async fn handle(body: String) -> Result<()> {
        if body == "poison" {
            Err(Error::unprocessable("invalid_json", "poison"))
        } else {
            Ok(())
        }
    }

    #[tokio::test]
    async fn one_poisoned_record_is_reported_alone() {
        let out = sqs_batch(
            &sqs(&[("1", "ok", None), ("2", "poison", None), ("3", "ok", None)]),
            handle,
        )
        .await;
        assert_eq!(out, json!({"batchItemFailures": [{"itemIdentifier": "2"}]}));
    }

    #[tokio::test]
    async fn a_failed_fifo_group_holds_its_later_records() {
        let event = sqs(&[
            ("1", "poison", Some("a")),
            ("2", "ok", Some("a")),
            ("3", "ok", Some("b")),
        ]);
        let out = sqs_batch(&event, handle).await;
        assert_eq!(
            out,
            json!({"batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": "2"}]})
        );
    }

    #[tokio::test]
    async fn a_stream_stops_at_its_first_failure() {
        let event = json!({"Records": [
            {"dynamodb": {"SequenceNumber": "100", "NewImage": {"ok": true}}},
            {"dynamodb": {"SequenceNumber": "200", "NewImage": {"ok": false}}},
            {"dynamodb": {"SequenceNumber": "300", "NewImage": {"ok": true}}}
        ]});
        let out = stream_batch(&event, |new, _| async move {
            if new["ok"] == true {
                Ok(())
            } else {
                Err(Error::internal("down"))
            }
        })
        .await;
        assert_eq!(
            out,
            json!({"batchItemFailures": [{"itemIdentifier": "200"}]})
        );
        assert_eq!(
            stream_batch(&json!({}), |_, _| async { Ok(()) }).await,
            json!({"batchItemFailures": []})
        );
    }
}
