//! The sentence encoder's place in the ranking: which model the process uses (loaded once,
//! from `HELPDESK_MODEL` or the user cache; none means lexical ranking), and the vectors of
//! the texts it has embedded, kept so that a change to the knowledge base embeds only the
//! questions that are new, and, where a file is given, kept across restarts.

use crate::{Error, Result};
use helpdesk_embed::{model_file, Model, NoModel, Role, DIM};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

pub use helpdesk_embed::cosine;

/// Which ranking runs: what `kb eval` reports and the start-up log says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    Lexical,
    Semantic,
}

impl Ranking {
    pub fn as_str(self) -> &'static str {
        match self {
            Ranking::Lexical => "lexical",
            Ranking::Semantic => "semantic",
        }
    }
}

static MODEL: OnceLock<std::result::Result<Option<Model>, String>> = OnceLock::new();

/// The model, loaded once: none when `HELPDESK_MODEL=off` or no file is where the desk looks
/// ([`model_file`], the one place that rule lives).
fn load() -> &'static std::result::Result<Option<Model>, String> {
    MODEL.get_or_init(|| match model_file() {
        Err(_) => Ok(None),
        Ok(path) => Model::load(&path).map(Some).map_err(|e| e.to_string()),
    })
}

/// Loads the model if there is one, once per process, and says which ranking runs. A model
/// file that is named (`HELPDESK_MODEL`) but missing, or that is there but unreadable, is an
/// error: someone meant it to be used.
pub fn start() -> Result<Ranking> {
    match load() {
        Ok(Some(_)) => Ok(Ranking::Semantic),
        Ok(None) => Ok(Ranking::Lexical),
        Err(e) => Err(Error::bad_request(
            "invalid_config",
            format!("sentence-encoder model: {e}"),
        )),
    }
}

/// A sentence the start-up log prints once.
pub fn describe(ranking: Ranking) -> String {
    match (ranking, model_file()) {
        (Ranking::Semantic, Ok(path)) => format!(
            "knowledge ranking: semantic (sentence encoder {}, {} kernel), with lexical features",
            path.display(),
            encoder().map_or("no", |model| model.kernel().name())
        ),
        (_, Err(NoModel::Off)) => format!("knowledge ranking: lexical only ({})", NoModel::Off),
        (_, Err(why)) => format!(
            "knowledge ranking: lexical only; {why} \
             (scripts/fetch-model fetches it, HELPDESK_MODEL names another place)"
        ),
        (Ranking::Lexical, Ok(path)) => format!(
            "knowledge ranking: lexical only; the model at {} is not loaded",
            path.display()
        ),
    }
}

/// The process's model, when there is a usable one.
pub fn encoder() -> Option<&'static Model> {
    load().as_ref().ok().and_then(|m| m.as_ref())
}

pub type Vector = Arc<[f32]>;

/// Texts' vectors (as queries: e5's advice for matching question to question), embedded
/// once each.
pub struct Vectors {
    model: &'static Model,
    known: Mutex<HashMap<String, Vector>>,
    file: Option<PathBuf>,
    /// Held while appending to the file.
    appending: Mutex<()>,
    /// How many texts are being embedded ([`Vectors::embedding`]).
    embedding: AtomicUsize,
    /// The last query and its vector: proposing candidates and ranking them read the same
    /// query, embedded once.
    last: Mutex<Option<(String, Vector)>>,
}

/// How much of a text the ranking reads: its first 128 tokens, `query: ` among them. Every
/// query and question of the benchmarks fits (the longest, a BANKING77 question, has 102),
/// while a customer's message may be 4,096 characters: in Chinese about 2,400 tokens in 5
/// of the encoder's windows, 5.5 s to embed whole on one core, and auto-reply answers one
/// message at a time. Its first 128 tokens take about 0.1 s. Questions are read the same
/// way, so a question asked word for word meets its own vector.
pub const TOKENS: usize = 128;

/// Threads for embedding a batch of new questions.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Vectors {
    /// Vectors kept in memory only.
    pub fn in_memory(model: &'static Model) -> Vectors {
        Vectors {
            model,
            known: Mutex::new(HashMap::new()),
            file: None,
            appending: Mutex::new(()),
            embedding: AtomicUsize::new(0),
            last: Mutex::new(None),
        }
    }

    /// Vectors kept in `file` too (appended as they are made, read back here). A record cut
    /// short at the end (a crash or a full disk mid-append) is cut off the file, and the
    /// whole records before it are kept; a file that cannot be read at all is started
    /// afresh: it only saves work.
    pub fn in_file(model: &'static Model, file: &Path) -> Vectors {
        Vectors {
            model,
            known: Mutex::new(open_file(file)),
            file: Some(file.to_path_buf()),
            appending: Mutex::new(()),
            embedding: AtomicUsize::new(0),
            last: Mutex::new(None),
        }
    }

    pub fn model(&self) -> &'static Model {
        self.model
    }

    /// The vectors of `texts`, embedding (on every core) those not seen before. The texts'
    /// store is locked only to look them up and to add the new ones, never while embedding:
    /// searches, which read it, go on while a large article is embedded.
    pub fn get(&self, texts: &[&str]) -> Vec<Vector> {
        let mut missing: Vec<&str> = {
            let known = self.known();
            texts
                .iter()
                .copied()
                .filter(|t| !known.contains_key(*t))
                .collect()
        };
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            self.embedding.fetch_add(missing.len(), Ordering::SeqCst);
            let made = self
                .model
                .embed_batch_start(&missing, Role::Query, threads(), TOKENS);
            self.embedding.fetch_sub(missing.len(), Ordering::SeqCst);
            self.keep(missing.into_iter().zip(made).collect());
        }
        let known = self.known();
        texts
            .iter()
            .map(|t| {
                known
                    .get(*t)
                    .cloned()
                    .unwrap_or_else(|| Arc::from(vec![0.0; DIM]))
            })
            .collect()
    }

    /// How many texts are being embedded now: what a test reads to know that a write's
    /// embedding is under way.
    pub fn embedding(&self) -> usize {
        self.embedding.load(Ordering::SeqCst)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vector>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps new texts' vectors, those another caller has not kept meanwhile, and appends
    /// them to the file (under the file's own lock, not the texts').
    fn keep(&self, made: Vec<(&str, Vec<f32>)>) {
        let fresh: Vec<(&str, Vec<f32>)> = {
            let mut known = self.known();
            made.into_iter()
                .filter(|(t, v)| {
                    let new = !known.contains_key(*t);
                    if new {
                        known.insert((*t).to_string(), Arc::from(v.as_slice()));
                    }
                    new
                })
                .collect()
        };
        if let (Some(file), false) = (&self.file, fresh.is_empty()) {
            let _appending = self.appending.lock().unwrap_or_else(|p| p.into_inner());
            let (texts, vectors): (Vec<&str>, Vec<Vec<f32>>) = fresh.into_iter().unzip();
            if let Err(e) = append_file(file, &texts, &vectors) {
                tracing::warn!(file = %file.display(), error = %e, "could not store embeddings");
            }
        }
    }

    /// Takes vectors made earlier by the same model, in the store file's form (what
    /// [`Vectors::in_file`] writes): texts that ship with the program, such as the sample
    /// knowledge base, are then not embedded at every first start. One of them is embedded
    /// again as a check, and from another model (cosine under 0.999) nothing is taken.
    /// Returns how many vectors were taken; those not known yet are stored in the file too.
    pub fn seed(&self, bytes: &[u8]) -> usize {
        let Ok(records) = read_records(bytes) else {
            tracing::warn!("shipped embeddings unreadable; they are made again");
            return 0;
        };
        let Some((text, stored)) = records.iter().min_by(|a, b| a.0.cmp(b.0)) else {
            return 0;
        };
        let fresh = self.model.embed_start(text, Role::Query, TOKENS);
        if cosine(&fresh, stored) < 0.999 {
            tracing::warn!("shipped embeddings come from another model; they are made again");
            return 0;
        }
        let mut new: Vec<(&str, Vec<f32>)> = {
            let known = self.known();
            records
                .iter()
                .filter(|(t, _)| !known.contains_key(t.as_str()))
                .map(|(t, v)| (t.as_str(), v.to_vec()))
                .collect()
        };
        new.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.keep(new);
        records.len()
    }

    /// One query's vector, kept only until the next query (queries are many and seldom
    /// repeat).
    pub fn query(&self, text: &str) -> Vector {
        if let Some(v) = self.known().get(text) {
            return v.clone();
        }
        // Not embedded under the lock: other queries are embedded meanwhile.
        let last = || self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, v)) = last().as_ref() {
            if t == text {
                return v.clone();
            }
        }
        let v: Vector = self.model.embed_start(text, Role::Query, TOKENS).into();
        *last() = Some((text.to_string(), v.clone()));
        v
    }
}

/// The longest text a store file's record holds, in bytes: no article's question or title
/// comes near it (500 characters at most), and the reader refuses a longer one as damage.
const RECORD_TEXT_MAX: usize = 1 << 20;

/// The records of a store file (see [`parse_records`]); the whole ones are kept, and a
/// file whose end cannot be read is cut back to them.
fn open_file(file: &Path) -> HashMap<String, Vector> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "embedding store unreadable; starting it afresh");
            let _ = std::fs::remove_file(file);
            return HashMap::new();
        }
    };
    let (known, whole, unread) = parse_records(&bytes);
    if let Some(why) = unread {
        let cut = std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .and_then(|f| f.set_len(whole as u64));
        match cut {
            Ok(()) => tracing::warn!(
                file = %file.display(),
                kept = known.len(),
                dropped_bytes = bytes.len() - whole,
                "embedding store ends in {why}; cut back to the whole records before it"
            ),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "embedding store ends in {why} and cannot be cut back; starting it afresh");
                let _ = std::fs::remove_file(file);
                return HashMap::new();
            }
        }
    }
    known
}

/// The texts and vectors of a store file's bytes.
pub fn read_store(bytes: &[u8]) -> Result<HashMap<String, Vector>> {
    read_records(bytes).map_err(|e| Error::internal(format!("embedding store: {e}")))
}

/// All the records of `bytes`, or an error if any cannot be read.
fn read_records(bytes: &[u8]) -> std::io::Result<HashMap<String, Vector>> {
    match parse_records(bytes) {
        (known, _, None) => Ok(known),
        (_, _, Some(why)) => Err(std::io::Error::other(why)),
    }
}

/// The store file's records: the text's length (u32), the text, and DIM f32s. Returns the
/// whole records from the start, the bytes they take, and, when the rest cannot be read,
/// why.
fn parse_records(bytes: &[u8]) -> (HashMap<String, Vector>, usize, Option<&'static str>) {
    let mut known = HashMap::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(len) = bytes.get(at..at + 4) else {
            return (known, at, Some("a record cut short"));
        };
        let n = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if n > RECORD_TEXT_MAX {
            return (known, at, Some("a record longer than a text can be"));
        }
        let Some(record) = bytes.get(at + 4..at + 4 + n + DIM * 4) else {
            return (known, at, Some("a record cut short"));
        };
        let Ok(text) = std::str::from_utf8(&record[..n]) else {
            return (known, at, Some("a record whose text is not UTF-8"));
        };
        let v: Vec<f32> = record[n..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        known.insert(text.to_string(), v.into());
        at += 4 + n + DIM * 4;
    }
    (known, at, None)
}

fn append_file(file: &Path, texts: &[&str], vectors: &[Vec<f32>]) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut buf = Vec::new();
    // A record the reader would refuse is not written: that text is embedded again.
    for (t, v) in texts
        .iter()
        .zip(vectors)
        .filter(|(t, v)| t.len() <= RECORD_TEXT_MAX && v.len() == DIM)
    {
        buf.extend_from_slice(&(t.len() as u32).to_le_bytes());
        buf.extend_from_slice(t.as_bytes());
        for x in v {
            buf.extend_from_slice(&x.to_le_bytes());
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    f.write_all(&buf)?;
    f.flush()
}

impl Vectors {
    /// Takes vectors made before (stored beside the articles: see
    /// [`super::stored_vectors`]) as if embedded here, so that building the ranking embeds
    /// none of those texts again. Answers how many were taken.
    pub fn preload<'a>(&self, texts: impl IntoIterator<Item = (&'a str, Vector)>) -> usize {
        let mut known = self.known();
        let mut taken = 0;
        for (text, vector) in texts {
            if vector.len() == DIM {
                known.insert(text.to_string(), vector);
                taken += 1;
            }
        }
        taken
    }

    /// How many texts' vectors are kept, preloaded or embedded: what a test reads to tell
    /// that a search embedded no article question.
    pub fn kept(&self) -> usize {
        self.known().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helpdesk_embed::Kernel;

    fn temp_file(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("helpdesk-{name}-{}.bin", crate::domain::new_id()))
    }

    /// A store whose last record was cut short (a crash or a full disk mid-append) keeps its
    /// whole records and is cut back to them, so appends go on after them; a damaged record
    /// in the middle keeps those before it.
    #[test]
    fn a_store_cut_short_keeps_its_whole_records() {
        let file = temp_file("vectors");
        let vector = |x: f32| vec![x; DIM];
        append_file(&file, &["退款", "refund"], &[vector(0.5), vector(-0.25)]).unwrap();
        let whole = std::fs::metadata(&file).unwrap().len();
        append_file(&file, &["half written"], &[vector(1.0)]).unwrap();
        let full = std::fs::metadata(&file).unwrap().len();
        for cut in [whole + 2, whole + 4 + 5, full - 1] {
            let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
            f.set_len(cut).unwrap();
            let known = open_file(&file);
            assert_eq!(known.len(), 2, "cut at {cut}");
            assert_eq!(&known["退款"][..], &vector(0.5)[..]);
            assert_eq!(&known["refund"][..], &vector(-0.25)[..]);
            assert_eq!(
                std::fs::metadata(&file).unwrap().len(),
                whole,
                "cut at {cut}"
            );
            // What is appended next reads back after them.
            append_file(&file, &["half written"], &[vector(1.0)]).unwrap();
            assert_eq!(open_file(&file).len(), 3);
        }
        // A length no text has: the records before it are kept.
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.truncate(whole as usize);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 64]);
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(open_file(&file).len(), 2);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), whole);
        // Shipped vectors are taken whole or not at all.
        bytes.truncate(whole as usize + 2);
        assert!(read_store(&bytes).is_err());
        // A text the reader would refuse is not written.
        let huge = "x".repeat(RECORD_TEXT_MAX + 1);
        append_file(&file, &[huge.as_str()], &[vector(0.0)]).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), whole);
        std::fs::remove_file(&file).ok();
    }

    /// A message of 4,096 Chinese characters is read from its first [`TOKENS`] tokens, as a
    /// question is: auto-reply, which answers one message at a time, is not held up by it.
    #[test]
    fn a_long_message_is_read_from_its_first_tokens() {
        let Some(model) = encoder() else {
            helpdesk_embed::say_skipped("reading a long message from its first tokens");
            return;
        };
        let vectors = Vectors::in_memory(model);
        let long: String = "我的退款为什么还没有到账？"
            .chars()
            .cycle()
            .take(4_096)
            .collect();
        let query = vectors.query(&long);
        assert_eq!(query, vectors.query(&format!("{long}再补充一句")));
        let as_question = vectors.get(&[long.as_str()]).remove(0);
        assert!(cosine(&query, &as_question) > 0.9999);
        let first = model.embed_start(&long, Role::Query, TOKENS);
        assert!(cosine(&query, &first) > 0.9999);
    }

    /// The line a process logs at start-up says which ranking runs, and with the model, which
    /// kernel its matrix products run on (on arm64 Lambda: whether it is the `sdot` one).
    #[test]
    fn the_start_up_line_names_the_ranking_and_the_kernel() {
        let ranking = start().expect("a model file that is named loads");
        let line = describe(ranking);
        match encoder() {
            Some(model) => {
                assert_eq!(ranking, Ranking::Semantic);
                assert!(line.starts_with("knowledge ranking: semantic ("), "{line}");
                let kernel = format!(", {} kernel), ", model.kernel().name());
                assert!(line.contains(&kernel), "{line}");
                assert_eq!(model.kernel(), Kernel::best());
            }
            None => {
                assert_eq!(ranking, Ranking::Lexical);
                assert!(
                    line.starts_with("knowledge ranking: lexical only"),
                    "{line}"
                );
                helpdesk_embed::say_skipped("the semantic start-up line, which names the kernel");
            }
        }
    }
}
