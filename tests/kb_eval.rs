//! `helpdesk kb eval` on the sample knowledge base, with paraphrases the tests write in
//! English and, meaning for meaning, in Chinese: the report has the keys API.md promises, and
//! Chinese customers are answered as reliably as English ones.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// These tests hold today's figures for the lexical ranking: the model is switched off.
/// `semantic_ranking_meets_the_same_bars` runs them with it.
fn eval(kb: &Path, queries: &Path, json: bool) -> Output {
    eval_with(kb, queries, json, Some("off"))
}

fn eval_with(kb: &Path, queries: &Path, json: bool, model: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_helpdesk"));
    if let Some(m) = model {
        cmd.env("HELPDESK_MODEL", m);
    }
    cmd.args(["kb", "eval", "--kb"])
        .arg(kb)
        .arg("--queries")
        .arg(queries)
        .env_remove("HELPDESK_AUTO_REPLY_THRESHOLD")
        .env("HELPDESK_LOG", "warn");
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

fn report(queries: &str) -> Value {
    report_with(queries, Some("off"))
}

fn report_with(queries: &str, model: Option<&str>) -> Value {
    let out = eval_with(
        &repo("infra/sample-kb.json"),
        &repo(&format!("tests/fixtures/{queries}")),
        true,
        model,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn chinese_paraphrases_are_answered_as_reliably_as_english_ones() {
    let en = report("sample-queries-en.csv");
    let zh = report("sample-queries-zh.csv");
    for (lang, r) in [("en", &en), ("zh", &zh)] {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "accuracy_at_1",
                "auto_reply_precision",
                "auto_reply_rate",
                "handoff_recall",
                "latency_ms",
                "queries",
                "ranking"
            ],
            "{lang}"
        );
        assert_eq!(r["queries"], 28, "{lang}");
        assert_eq!(r["ranking"], "lexical", "{lang}");
        // No customer gets a wrong answer, and every question the base cannot answer goes
        // to a person.
        assert_eq!(r["auto_reply_precision"], 1.0, "{lang}: {r}");
        assert_eq!(r["handoff_recall"], 1.0, "{lang}: {r}");
        assert!(r["accuracy_at_1"].as_f64().unwrap() >= 0.9, "{lang}: {r}");
        assert!(r["latency_ms"]["p99"].as_f64().unwrap() >= 0.0);
    }
    // 24 of the 28 rows are answerable; at most three paraphrases per language go to a
    // person (measured at the default threshold: 21 of 24 answered in each language), and
    // Chinese is answered at least as often as English, less one question.
    let rate = |r: &Value| r["auto_reply_rate"].as_f64().unwrap();
    assert!(rate(&en) >= 21.0 / 28.0 - 1e-9, "en: {en}");
    assert!(
        rate(&zh) >= rate(&en) - 1.0 / 28.0 - 1e-9,
        "zh {zh} vs en {en}"
    );
}

/// A second set of paraphrases, written after the ranking was settled and never tuned on:
/// three more per topic and language, meaning for meaning, and four more questions the base
/// cannot answer.
#[test]
fn chinese_is_as_reliable_on_paraphrases_the_ranking_was_never_tuned_on() {
    let en = report("sample-queries-more-en.csv");
    let zh = report("sample-queries-more-zh.csv");
    for (lang, r) in [("en", &en), ("zh", &zh)] {
        assert_eq!(r["queries"], 28, "{lang}");
        assert_eq!(r["auto_reply_precision"], 1.0, "{lang}: {r}");
        assert_eq!(r["handoff_recall"], 1.0, "{lang}: {r}");
        assert!(r["accuracy_at_1"].as_f64().unwrap() >= 0.9, "{lang}: {r}");
    }
    // Measured at the default threshold: English 20 of 24 answered, Chinese 22 of 24.
    let answered = |r: &Value| (r["auto_reply_rate"].as_f64().unwrap() * 28.0).round();
    assert!(answered(&en) >= 19.0, "en: {en}");
    assert!(answered(&zh) >= answered(&en) - 1.0, "zh {zh} vs en {en}");
}

/// Whether this run has the sentence encoder: `HELPDESK_MODEL` naming a file (as
/// scripts/test does) or the model in the user cache, and not `HELPDESK_MODEL=off`. A named
/// file that is missing fails the test rather than quietly running the lexical ranking.
fn model_present() -> bool {
    let Ok(path) = helpdesk_embed::model_file() else {
        return false;
    };
    assert!(
        path.exists(),
        "HELPDESK_MODEL names {}, which is not there",
        path.display()
    );
    true
}

/// The same bars as the lexical ranking's on the sample paraphrases, with the model the
/// process finds (scripts/test fetches it): no wrong answer, every question the base cannot
/// answer handed off, and most answered. Without a model the report says the lexical
/// ranking ran, and the bars are those above (and this says the semantic ones were skipped).
#[test]
fn semantic_ranking_meets_the_same_bars() {
    let semantic = model_present();
    if !semantic {
        helpdesk_embed::say_skipped(
            "the semantic ranking's bars on the sample paraphrases (the lexical ones ran)",
        );
    }
    for queries in [
        "sample-queries-en.csv",
        "sample-queries-zh.csv",
        "sample-queries-more-en.csv",
        "sample-queries-more-zh.csv",
    ] {
        let r = report_with(queries, None);
        let want = if semantic { "semantic" } else { "lexical" };
        assert_eq!(r["ranking"], want, "{queries}");
        assert!(
            r["accuracy_at_1"].as_f64().unwrap() >= 0.95,
            "{queries}: {r}"
        );
        assert_eq!(r["auto_reply_precision"], 1.0, "{queries}: {r}");
        assert_eq!(r["handoff_recall"], 1.0, "{queries}: {r}");
        // The lexical ranking's answer rate has its own bar above.
        if semantic {
            assert!(
                r["auto_reply_rate"].as_f64().unwrap() >= 0.75,
                "{queries}: {r}"
            );
        }
    }
}

/// The sample knowledge base ships its questions' and titles' vectors
/// (`infra/sample-kb-vectors.bin`), so that a first start with the model embeds nothing:
/// the file holds exactly the sample's texts, and, with the model, each vector is the one
/// the model makes. `HELPDESK_WRITE_SAMPLE_VECTORS=1` with the model writes it afresh, after
/// a change to the sample.
#[test]
fn the_sample_knowledge_base_ships_its_vectors() {
    use helpdesk_core::knowledge::semantic::{self, Vectors};
    let file = repo("infra/sample-kb-vectors.bin");
    let kb = std::fs::read_to_string(repo("infra/sample-kb.json")).unwrap();
    let articles = helpdesk_core::knowledge::parse_articles(&kb).unwrap();
    let mut texts: Vec<&str> = articles
        .iter()
        .flat_map(|a| a.questions.iter().chain(std::iter::once(&a.title)))
        .map(String::as_str)
        .filter(|t| !t.trim().is_empty())
        .collect();
    texts.sort_unstable();
    texts.dedup();
    let model = if model_present() {
        semantic::encoder()
    } else {
        helpdesk_embed::say_skipped(
            "the shipped sample vectors against the model (their texts were checked)",
        );
        None
    };
    if let (Some(model), Ok("1")) = (
        model,
        std::env::var("HELPDESK_WRITE_SAMPLE_VECTORS").as_deref(),
    ) {
        std::fs::remove_file(&file).ok();
        Vectors::in_file(model, &file).get(&texts);
    }
    let stored = semantic::read_store(&std::fs::read(&file).unwrap()).unwrap();
    let mut shipped: Vec<&str> = stored.keys().map(String::as_str).collect();
    shipped.sort_unstable();
    assert_eq!(
        shipped, texts,
        "infra/sample-kb-vectors.bin is stale: HELPDESK_WRITE_SAMPLE_VECTORS=1 cargo test --test kb_eval"
    );
    if let Some(model) = model {
        let fresh = model.embed_batch(&texts, helpdesk_embed::Role::Query, 2);
        for (t, v) in texts.iter().zip(fresh) {
            let c = semantic::cosine(&v, &stored[*t]);
            assert!(c >= 0.999, "{t}: cosine {c} to the shipped vector");
        }
    }
}

#[test]
fn the_table_names_each_measure() {
    let out = eval(
        &repo("infra/sample-kb.json"),
        &repo("tests/fixtures/sample-queries-zh.csv"),
        false,
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for measure in [
        "accuracy@1",
        "auto-reply rate",
        "auto-reply precision",
        "hand-off recall",
        "p99",
    ] {
        assert!(text.contains(measure), "{measure} missing from {text}");
    }
}

/// With the model, the table says whether the nearest questions vote in the order, and the
/// leave-one-out check behind it: on the sample knowledge base, with a handful of questions
/// an article, they do not (the articles' means place its questions better).
#[test]
fn the_table_says_whether_the_nearest_questions_vote() {
    if !model_present() {
        helpdesk_embed::say_skipped("the nearest-question vote's line (it needs the model)");
        return;
    }
    let out = eval_with(
        &repo("infra/sample-kb.json"),
        &repo("tests/fixtures/sample-queries-en.csv"),
        false,
        None,
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("nearest-question vote "))
        .unwrap_or_else(|| panic!("no vote line in {text}"));
    assert!(line.starts_with("nearest-question vote off (of "), "{line}");
    let percent = |after: &str| -> f64 {
        let at = line
            .find(after)
            .unwrap_or_else(|| panic!("{after} in {line}"));
        let start = line[..at].rfind(", ").map_or(0, |i| i + 2);
        line[start..at].trim_end_matches('%').parse().unwrap()
    };
    let (nearest, means) = (
        percent("% put in their article by their nearest"),
        percent("% by the articles' means"),
    );
    assert!(means > nearest, "{line}");
    // Off without the model: no line.
    let out = eval(
        &repo("infra/sample-kb.json"),
        &repo("tests/fixtures/sample-queries-en.csv"),
        false,
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("nearest-question vote"));
}

#[test]
fn a_malformed_queries_file_is_refused_naming_its_line() {
    let dir = std::env::temp_dir().join(format!("helpdesk-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "text,expected\n忘记密码怎么办,reset-password-zh\n太多,字段,了\n",
    )
    .unwrap();
    let out = eval(&repo("infra/sample-kb.json"), &bad, true);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3"), "{err}");
    assert!(out.stdout.is_empty());

    std::fs::write(&bad, "text,expected\n忘记密码怎么办,no-such-article\n").unwrap();
    let out = eval(&repo("infra/sample-kb.json"), &bad, true);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("no-such-article"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A weights file whose header is damaged where no length shows it (here its layer-norm
/// epsilon is NaN, which used to load and make every vector NaN) stops the local desk at
/// start, saying what is wrong with which file; `kb eval` too.
#[test]
fn a_damaged_model_file_stops_the_desk_at_start_saying_why() {
    let dir = std::env::temp_dir().join(format!("helpdesk-damaged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("e5-small-q4.bin");
    let mut header = b"E5S1".to_vec();
    header.extend_from_slice(&1u32.to_le_bytes());
    for v in [384i32, 12, 12, 1536, 250_037, 512, 2] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    header.extend_from_slice(&f32::NAN.to_le_bytes());
    header.extend_from_slice(&32i32.to_le_bytes());
    std::fs::write(&file, &header).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_helpdesk"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .env("HELPDESK_MODEL", &file)
        .env("HELPDESK_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A desk that took the file would serve on: it is stopped rather than waited for.
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if child.try_wait().unwrap().is_none() {
        child.kill().unwrap();
    }
    let serve = child.wait_with_output().unwrap();
    let eval = eval_with(
        &repo("infra/sample-kb.json"),
        &repo("tests/fixtures/sample-queries-en.csv"),
        false,
        Some(file.to_str().unwrap()),
    );
    for out in [serve, eval] {
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(
                "the model file is not a usable e5-small-q4.bin: its layer-norm epsilon is NaN"
            ),
            "{stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
