//! Cold start and memory of the auto-reply Lambda with and without the sentence encoder:
//! the real binary under the local Runtime API the tests use, against the AWS emulator
//! named by `AWS_ENDPOINT_URL`, with a knowledge base whose items keep their question
//! vectors. For each round a fresh process gets one real auto-reply job (a webchat message
//! taken through the intake and router functions), and the example reports the time from
//! process start to its first request for an event (initialisation), the first event's
//! duration (which loads the model, reads the articles with their vectors, builds the index
//! and answers), and the process's peak resident memory. Build the binaries first:
//!
//! ```sh
//! cargo build --release -p intake -p router -p auto-reply
//! HELPDESK_MODEL=/path/to/e5-small-q4.bin AWS_ENDPOINT_URL=http://127.0.0.1:5000 \
//!     HELPDESK_LAMBDA_BIN_DIR=target/release \
//!     cargo run --example cold_start_semantic -- 300
//! ```
//!
//! (The example itself may be a debug build: it only seeds the table and drives the
//! functions; `HELPDESK_LAMBDA_BIN_DIR` points it at the release binaries.)
//!
//! The argument is how many articles to add to the sample knowledge base (8 questions
//! each, default 0). With a second argument `stale`, every article's stored vectors are
//! made another model's before the rounds, as when a new model file is deployed, and only
//! the semantic ranking runs: the first round embeds every article's texts and writes their
//! vectors back, and each round's first event is reported on its own, with how many items
//! hold current vectors after it. With `list` instead, each round is a fresh tickets
//! function answering one `GET /kb/articles` (the console's knowledge page), with and
//! without the model file: a listing needs no question vectors, so it should cost the same.

#[path = "../tests/aws_harness/mod.rs"]
mod aws_harness;

use aws_harness::*;
use aws_sdk_dynamodb::types::AttributeValue;
use helpdesk_core::aws::DynamoKnowledge;
use helpdesk_core::knowledge::{parse_articles, Article};
use helpdesk_core::ports::KnowledgeIndex;
use serde_json::json;
use std::time::{Duration, Instant};

const SAMPLE_KB: &str = include_str!("../infra/sample-kb.json");
const ROUNDS: usize = 5;

/// More articles, each with eight questions made from the sample's, so that the reading
/// and the index building have some weight.
fn more_articles(n: usize, sample: &[Article]) -> Vec<Article> {
    (0..n)
        .map(|i| {
            let base = &sample[i % sample.len()];
            Article {
                id: format!("extra-{i:04}"),
                title: format!("{} ({i})", base.title),
                questions: (0..8)
                    .map(|q| format!("{} #{i}-{q}", base.questions[q % base.questions.len()]))
                    .collect(),
                answer: format!("{} ({i})", base.answer),
                locale: base.locale.clone(),
                tags: vec![],
                answers: Default::default(),
            }
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(mut xs: Vec<f64>) -> String {
    xs.sort_by(f64::total_cmp);
    format!(
        "{:.0} ({:.0}-{:.0})",
        xs[xs.len() / 2],
        xs[0],
        xs[xs.len() - 1]
    )
}

#[tokio::main]
async fn main() {
    let extra: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a number of articles"))
        .unwrap_or(0);
    let model = helpdesk_core::knowledge::semantic::encoder()
        .map(|_| helpdesk_embed_path())
        .expect("HELPDESK_MODEL names the model file");
    let stack = Stack::new().await;
    let sample = parse_articles(SAMPLE_KB).expect("sample kb");
    let mut articles = sample.clone();
    articles.extend(more_articles(extra, &sample));
    let started = Instant::now();
    // Written as the agent API writes them: with their vectors.
    DynamoKnowledge::new(&stack.config, stack.env["ARTICLES_TABLE"].clone())
        .upsert(&articles)
        .await
        .expect("seed kb");
    eprintln!(
        "{} articles written with their vectors in {:.1} s",
        articles.len(),
        started.elapsed().as_secs_f64()
    );

    if std::env::args().nth(2).as_deref() == Some("list") {
        listings(&stack, articles.len(), &model).await;
        return;
    }
    let stale = std::env::args().nth(2).as_deref() == Some("stale");
    if stale {
        let dynamo = aws_sdk_dynamodb::Client::new(&stack.config);
        for a in &articles {
            dynamo
                .update_item()
                .table_name(&stack.env["ARTICLES_TABLE"])
                .key("id", AttributeValue::S(a.id.clone()))
                .update_expression("SET vectors_model = :m")
                .expression_attribute_values(":m", AttributeValue::S("another-model:0".into()))
                .send()
                .await
                .expect("made stale");
        }
        eprintln!("every article's vectors made another model's");
    }

    let mut intake = Runtime::start_unaudited("intake", &stack.env).await;
    let mut router = Runtime::start_unaudited("router", &stack.env).await;
    if stale {
        println!(
            "| auto-reply, {} articles stale | first event | CPU time, start to answer | items with current vectors after |",
            articles.len()
        );
        println!("| --- | --- | --- | --- |");
    } else {
        println!(
        "| auto-reply, {} articles | start → ready for the first event | first event | CPU time, start to answer | peak RSS |",
        articles.len()
    );
        println!("| --- | --- | --- | --- | --- |");
    }
    let settings = [
        ("lexical (HELPDESK_MODEL=off)", "off".to_string()),
        ("semantic (model)", model.clone()),
    ];
    for (label, setting) in settings.into_iter().skip(usize::from(stale)) {
        let (mut ready, mut first, mut rss, mut cpu) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // One real job: a visitor's question through intake and router.
            let (status, session) = http_answer(
                &intake
                    .invoke(http_event(
                        "POST",
                        "/webchat/sessions",
                        &[],
                        Some(json!({"locale": "zh-CN"})),
                        None,
                    ))
                    .await
                    .expect("a session"),
            );
            assert_eq!(status, 201, "{session}");
            let auth = format!("Bearer {}", session["token"].as_str().unwrap_or_default());
            let said = intake
                .invoke(http_event(
                    "POST",
                    "/webchat/messages",
                    &[("authorization", &auth)],
                    Some(json!({"text": "我忘记密码了，怎么重置？", "client_message_id": format!("m-{round}")})),
                    None,
                ))
                .await
                .expect("taken");
            assert_eq!(http_answer(&said).0, 202);
            let inbound = stack.drain("INBOUND_QUEUE_URL").await;
            router.invoke(inbound).await.expect("routed");
            let job = stack.drain("AUTO_REPLY_QUEUE_URL").await;
            assert_eq!(job["Records"].as_array().map(Vec::len), Some(1), "{job}");

            let mut env = stack.env.clone();
            env.insert("HELPDESK_MODEL".into(), setting.clone());
            let mut f = Runtime::start_unaudited("auto-reply", &env).await;
            let init = loop {
                if let Some(d) = f.ready_after() {
                    break d;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            let at = Instant::now();
            let answer = f.invoke(job).await.expect("handled");
            let took = at.elapsed();
            assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
            rss.push(f.peak_rss_kib().unwrap_or(0) as f64 / 1024.0);
            cpu.push(ms(f.cpu_time().unwrap_or_default()));
            f.stop().await;
            if stale {
                println!(
                    "| round {} | {:.0} ms | {:.0} ms | {} of {} |",
                    round + 1,
                    ms(took),
                    cpu[cpu.len() - 1],
                    current_items(&stack, &articles).await,
                    articles.len()
                );
            }
            ready.push(ms(init));
            first.push(ms(took));
            // The reply goes nowhere here.
            stack.drain("OUTBOUND_QUEUE_URL").await;
        }
        if stale {
            continue;
        }
        println!(
            "| {label} | {} ms | {} ms | {} ms | {} MiB |",
            summary(ready),
            summary(first),
            summary(cpu),
            summary(rss)
        );
    }
    intake.stop().await;
    router.stop().await;
}

/// Rounds of a fresh tickets function listing the articles, as the console's knowledge
/// page does, without and with the model file.
async fn listings(stack: &Stack, articles: usize, model: &str) {
    println!(
        "| tickets, `GET /kb/articles`, {articles} articles | first event | CPU time, start to answer | peak RSS |"
    );
    println!("| --- | --- | --- | --- |");
    for (label, setting) in [
        ("lexical (HELPDESK_MODEL=off)", "off"),
        ("semantic (model)", model),
    ] {
        let (mut first, mut rss, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let mut env = stack.env.clone();
            env.insert("HELPDESK_MODEL".into(), setting.to_string());
            let mut f = Runtime::start_unaudited("tickets", &env).await;
            let at = Instant::now();
            let answer = f
                .invoke(http_event(
                    "GET",
                    "/kb/articles",
                    &[],
                    None,
                    Some(("alice", "supervisor")),
                ))
                .await
                .expect("listed");
            let took = at.elapsed();
            let (status, body) = http_answer(&answer);
            assert_eq!(status, 200, "{body}");
            first.push(ms(took));
            rss.push(f.peak_rss_kib().unwrap_or(0) as f64 / 1024.0);
            cpu.push(ms(f.cpu_time().unwrap_or_default()));
            f.stop().await;
        }
        println!(
            "| {label} | {} ms | {} ms | {} MiB |",
            summary(first),
            summary(cpu),
            summary(rss)
        );
    }
}

/// How many of `articles` have vectors of this process's model in their items.
async fn current_items(stack: &Stack, articles: &[Article]) -> usize {
    let dynamo = aws_sdk_dynamodb::Client::new(&stack.config);
    let mut current = 0;
    for a in articles {
        let item = dynamo
            .get_item()
            .table_name(&stack.env["ARTICLES_TABLE"])
            .key("id", AttributeValue::S(a.id.clone()))
            .send()
            .await
            .expect("read")
            .item
            .unwrap_or_default();
        let fresh = helpdesk_core::aws::stored_of(&item)
            .and_then(|s| helpdesk_core::knowledge::stored_vectors::read(a, &s));
        current += usize::from(fresh.is_some());
    }
    current
}

/// The model file this example measures with; without one (`HELPDESK_MODEL=off`, or none
/// where the desk looks) there is nothing to measure.
fn helpdesk_embed_path() -> String {
    match helpdesk_embed::model_file() {
        Ok(path) => path.to_string_lossy().into_owned(),
        Err(why) => {
            eprintln!("this example measures the sentence encoder, and there is none: {why}");
            std::process::exit(2)
        }
    }
}
