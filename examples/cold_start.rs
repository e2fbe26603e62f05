//! Measures each Lambda binary's time from process start to its first handled event, under
//! the local Runtime API used by the tests, against the AWS emulator named by
//! `AWS_ENDPOINT_URL`. Build the binaries first:
//!
//! ```sh
//! cargo build --release --workspace --bins
//! AWS_ENDPOINT_URL=http://127.0.0.1:5000 cargo run --release --example cold_start
//! ```

#[path = "../tests/aws_harness/mod.rs"]
mod aws_harness;

use aws_harness::*;
use helpdesk_core::aws::DynamoKnowledge;
use helpdesk_core::knowledge::parse_articles;
use helpdesk_core::ports::KnowledgeIndex;
use serde_json::json;
use std::time::Duration;

const SAMPLE_KB: &str = include_str!("../infra/sample-kb.json");
const ROUNDS: usize = 7;

#[tokio::main]
async fn main() {
    let stack = Stack::new().await;
    let kb = DynamoKnowledge::new(&stack.config, stack.env["ARTICLES_TABLE"].clone());
    kb.upsert(&parse_articles(SAMPLE_KB).expect("sample kb"))
        .await
        .expect("seed kb");
    let empty_sqs = json!({"Records": []});
    let cases = [
        (
            "intake",
            http_event("POST", "/webchat/sessions", &[], None, None),
        ),
        ("router", empty_sqs.clone()),
        ("auto-reply", empty_sqs.clone()),
        ("dispatch", empty_sqs.clone()),
        ("survey", json!({"Records": []})),
        // The first search builds the in-memory index from the articles table.
        (
            "tickets",
            http_event(
                "GET",
                "/kb/search?q=reset%20password",
                &[],
                None,
                Some(("bench", "agent")),
            ),
        ),
    ];
    println!("| function | start → first handled event, median of {ROUNDS} (min-max) |");
    println!("| --- | --- |");
    for (name, event) in cases {
        let mut times: Vec<Duration> = Vec::new();
        for _ in 0..ROUNDS {
            let mut f = Runtime::start_unaudited(name, &stack.env).await;
            f.invoke(event.clone()).await.expect("handled");
            times.push(f.first_answer.expect("timed"));
            f.stop().await;
        }
        times.sort();
        println!(
            "| {name} | {:.1} ms ({:.1}-{:.1}) |",
            times[ROUNDS / 2].as_secs_f64() * 1000.0,
            times[0].as_secs_f64() * 1000.0,
            times[ROUNDS - 1].as_secs_f64() * 1000.0
        );
    }
}
