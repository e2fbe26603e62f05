//! `helpdesk kb eval`: how well the knowledge base answers a set of labelled queries. It
//! builds an in-memory index the way the local program does (tantivy and the shared ranker)
//! and decides each query the way auto-reply does (the same `Decision` and threshold), so a
//! number here is a number the desk would show its customers.

use anyhow::{anyhow, bail, Context, Result};
use helpdesk_core::adapters::TantivyIndex;
use helpdesk_core::knowledge::semantic::{self, Vectors};
use helpdesk_core::knowledge::{parse_articles, Decision, LeaveOneOut};
use helpdesk_core::ports::KnowledgeIndex;
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// As many hits as auto-reply asks for: the best and two alternatives.
const TOP: usize = 3;

/// One row of the queries file: what a customer wrote, and the article that answers it
/// (`None` where the right outcome is a hand-off).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub text: String,
    pub expected: Option<String>,
    /// The line the row starts on, for error messages.
    pub line: usize,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
}

/// The report, with the keys API.md names, and which ranking ran.
#[derive(Debug, Serialize, PartialEq)]
pub struct Report {
    /// `lexical`, or `semantic` with the sentence encoder: a team sees the difference on
    /// its own data by running with and without the model file.
    pub ranking: &'static str,
    pub queries: usize,
    /// Top hit is the expected article, over the rows that expect one.
    pub accuracy_at_1: f64,
    /// Rows answered on their own, over all rows.
    pub auto_reply_rate: f64,
    /// Auto-replies with the expected article, over all auto-replies (a reply to a row that
    /// expects a hand-off is wrong); 1 when nothing was answered, as nothing wrong was said.
    pub auto_reply_precision: f64,
    /// Hand-offs over the rows that expect one; null when no row does.
    pub handoff_recall: Option<f64>,
    pub latency_ms: Latency,
}

pub async fn run(kb: &Path, queries: &Path, json: bool, threshold: f64) -> Result<()> {
    let text = std::fs::read_to_string(kb).with_context(|| format!("reading {}", kb.display()))?;
    let articles = parse_articles(&text).map_err(|e| anyhow!("{}: {}", kb.display(), e.message))?;
    let text = std::fs::read_to_string(queries)
        .with_context(|| format!("reading {}", queries.display()))?;
    let rows = parse_queries(&text).map_err(|e| anyhow!("{}: {e}", queries.display()))?;
    let known: HashSet<&str> = articles.iter().map(|a| a.id.as_str()).collect();
    if let Some(row) = rows
        .iter()
        .find(|r| r.expected.as_deref().is_some_and(|id| !known.contains(id)))
    {
        bail!(
            "{}: line {}: expected article {:?} is not in {}",
            queries.display(),
            row.line,
            row.expected.as_deref().unwrap_or_default(),
            kb.display()
        );
    }

    let ranking = semantic::start().map_err(|e| anyhow!(e.message))?;
    // HELPDESK_EVAL_VECTORS names a file that keeps the vectors of the questions and
    // queries between runs: tuning on one dataset then embeds it once.
    let vectors = semantic::encoder().map(|m| {
        Arc::new(match std::env::var_os("HELPDESK_EVAL_VECTORS") {
            Some(file) if !file.is_empty() => Vectors::in_file(m, Path::new(&file)),
            _ => Vectors::in_memory(m),
        })
    });
    if let Some(v) = &vectors {
        if std::env::var_os("HELPDESK_EVAL_VECTORS").is_some_and(|f| !f.is_empty()) {
            let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
            v.get(&texts);
        }
    }
    let started = Instant::now();
    let index = TantivyIndex::in_memory_with(vectors).map_err(|e| anyhow!(e.message))?;
    index
        .upsert(&articles)
        .await
        .map_err(|e| anyhow!("{}: {}", kb.display(), e.message))?;
    let build = started.elapsed();
    let model_bytes = index.model_bytes();
    let vote = index.neighbour_vote();

    let mut outcomes = Vec::with_capacity(rows.len());
    for row in &rows {
        let started = Instant::now();
        let hits = index
            .search_now(&row.text, TOP)
            .map_err(|e| anyhow!("line {}: {}", row.line, e.message))?;
        let answered = match Decision::decide(&hits, threshold) {
            Decision::Reply { hit, .. } => Some(hit.article_id.clone()),
            Decision::Handoff => None,
        };
        let latency = started.elapsed();
        outcomes.push(Outcome {
            expected: row.expected.clone(),
            top: hits.first().map(|h| h.article_id.clone()),
            answered,
            latency,
        });
    }
    let mut report = score(&outcomes);
    report.ranking = index.ranking().as_str();
    debug_assert_eq!(index.ranking(), ranking);
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report, articles.len(), build, model_bytes, threshold);
        if let Some(vote) = vote {
            print_vote(vote);
        }
    }
    Ok(())
}

/// What happened to one query.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub expected: Option<String>,
    pub top: Option<String>,
    pub answered: Option<String>,
    pub latency: Duration,
}

pub fn score(outcomes: &[Outcome]) -> Report {
    let answerable = outcomes.iter().filter(|o| o.expected.is_some()).count();
    let top_right = outcomes
        .iter()
        .filter(|o| o.expected.is_some() && o.top == o.expected)
        .count();
    let replies = outcomes.iter().filter(|o| o.answered.is_some()).count();
    let right_replies = outcomes
        .iter()
        .filter(|o| o.answered.is_some() && o.answered == o.expected)
        .count();
    let unanswerable = outcomes.len() - answerable;
    let handed_off = outcomes
        .iter()
        .filter(|o| o.expected.is_none() && o.answered.is_none())
        .count();
    let mut ms: Vec<f64> = outcomes
        .iter()
        .map(|o| o.latency.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    Report {
        ranking: "lexical",
        queries: outcomes.len(),
        accuracy_at_1: ratio(top_right, answerable, 0.0),
        auto_reply_rate: ratio(replies, outcomes.len(), 0.0),
        auto_reply_precision: ratio(right_replies, replies, 1.0),
        handoff_recall: (unanswerable > 0).then(|| ratio(handed_off, unanswerable, 0.0)),
        latency_ms: Latency {
            p50: percentile(&ms, 0.50),
            p99: percentile(&ms, 0.99),
        },
    }
}

fn ratio(n: usize, d: usize, empty: f64) -> f64 {
    if d == 0 {
        empty
    } else {
        n as f64 / d as f64
    }
}

/// Nearest-rank percentile of sorted values; 0 when there are none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print_report(r: &Report, articles: usize, build: Duration, model: usize, threshold: f64) {
    println!(
        "{} queries against {articles} articles, {} ranking (index and ranking model built \
         in {:.0} ms; model {:.1} MB; threshold {threshold})",
        r.queries,
        r.ranking,
        build.as_secs_f64() * 1000.0,
        model as f64 / 1e6
    );
    println!("accuracy@1            {:.4}", r.accuracy_at_1);
    println!("auto-reply rate       {:.4}", r.auto_reply_rate);
    println!("auto-reply precision  {:.4}", r.auto_reply_precision);
    match r.handoff_recall {
        Some(v) => println!("hand-off recall       {v:.4}"),
        None => println!("hand-off recall       n/a (no row expects a hand-off)"),
    }
    println!(
        "search latency        p50 {:.3} ms, p99 {:.3} ms",
        r.latency_ms.p50, r.latency_ms.p99
    );
}

/// Whether the nearest questions vote in the order, and why: how often the knowledge base's
/// own questions, each left out, are put in their article by the vote and by the means.
fn print_vote((check, weight): (LeaveOneOut, f64)) {
    let verdict = if weight > 0.0 {
        format!("on, weight {weight:.3}")
    } else {
        "off".to_string()
    };
    println!(
        "nearest-question vote {verdict} (of {} questions each left out, {:.1}% put in their \
         article by their nearest, {:.1}% by the articles' means)",
        check.checked,
        check.by_neighbours * 100.0,
        check.by_mean * 100.0
    );
}

/// Reads the queries CSV: a `text,expected` header, then one row per query. Fields may be
/// quoted (RFC 4180: `""` is a quote inside a quoted field, which may span lines); an empty
/// `expected` means the query should be handed off.
pub fn parse_queries(text: &str) -> std::result::Result<Vec<Query>, String> {
    let text = text.trim_start_matches('\u{feff}');
    let mut records = csv_records(text)?.into_iter();
    let Some((_, header)) = records.next() else {
        return Err("empty file; expected a `text,expected` header".into());
    };
    let header: Vec<&str> = header.iter().map(|h| h.trim()).collect();
    if header != ["text", "expected"] {
        return Err(format!(
            "line 1: the header must be `text,expected`, not `{}`",
            header.join(",")
        ));
    }
    let mut rows = Vec::new();
    for (line, fields) in records {
        if fields.len() == 1 && fields[0].trim().is_empty() {
            continue;
        }
        let [text, expected] = <[String; 2]>::try_from(fields).map_err(|f| {
            format!(
                "line {line}: expected 2 fields (text,expected), found {}",
                f.len()
            )
        })?;
        if text.trim().is_empty() {
            return Err(format!("line {line}: the query text is empty"));
        }
        let expected = expected.trim();
        rows.push(Query {
            text,
            expected: (!expected.is_empty()).then(|| expected.to_string()),
            line,
        });
    }
    if rows.is_empty() {
        return Err("no queries after the header".into());
    }
    Ok(rows)
}

/// Splits CSV text into records, each with the line it starts on.
fn csv_records(text: &str) -> std::result::Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start = 1;
    let mut quoted = false;
    let mut quote_opened = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                quoted = true;
                quote_opened = line;
            }
            ',' => fields.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                records.push((start, std::mem::take(&mut fields)));
                line += 1;
                start = line;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(format!(
            "line {quote_opened}: a quoted field is never closed"
        ));
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        records.push((start, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_chinese_and_empty_expected() {
        let rows = parse_queries(
            "text,expected\r\n我忘记密码了，怎么重置？,reset-password-zh\n\"Hello, \"\"world\"\"\nagain\",\nlast,x",
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].text, "我忘记密码了，怎么重置？");
        assert_eq!(rows[0].expected.as_deref(), Some("reset-password-zh"));
        assert_eq!(rows[1].text, "Hello, \"world\"\nagain");
        assert_eq!(rows[1].expected, None);
        assert_eq!(rows[2].line, 5);
    }

    #[test]
    fn malformed_files_name_the_line() {
        let err = parse_queries("text,expected\na,b\nc,d,e\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
        let err = parse_queries("question,answer\na,b\n").unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
        let err = parse_queries("text,expected\na,b\n\"open\n,b\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
        assert!(parse_queries("").is_err());
        assert!(parse_queries("text,expected\n").is_err());
    }

    fn outcome(expected: Option<&str>, top: Option<&str>, answered: bool, ms: u64) -> Outcome {
        Outcome {
            expected: expected.map(String::from),
            top: top.map(String::from),
            answered: if answered {
                top.map(String::from)
            } else {
                None
            },
            latency: Duration::from_millis(ms),
        }
    }

    #[test]
    fn scores_replies_and_handoffs_apart() {
        let report = score(&[
            outcome(Some("a"), Some("a"), true, 1),
            outcome(Some("a"), Some("b"), true, 2),
            outcome(Some("b"), Some("b"), false, 3),
            outcome(None, Some("a"), true, 4),
            outcome(None, Some("a"), false, 100),
        ]);
        assert_eq!(report.queries, 5);
        assert!((report.accuracy_at_1 - 2.0 / 3.0).abs() < 1e-9);
        assert!((report.auto_reply_rate - 0.6).abs() < 1e-9);
        assert!((report.auto_reply_precision - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(report.handoff_recall, Some(0.5));
        assert_eq!(
            report.latency_ms,
            Latency {
                p50: 3.0,
                p99: 100.0
            }
        );
        let only_answerable = score(&[outcome(Some("a"), Some("a"), false, 1)]);
        assert_eq!(only_answerable.handoff_recall, None);
        assert_eq!(only_answerable.auto_reply_precision, 1.0);
    }
}
