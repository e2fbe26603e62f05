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
    /// The store file, and the key its header carries ([`store_key`]).
    file: Option<(PathBuf, String)>,
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

    /// Vectors kept in `file` too (appended as they are made, read back here). The file's
    /// header names what made its vectors ([`store_key`]: the model file, the role, the
    /// token cut); a file made otherwise, or without a header, is started afresh. A record
    /// cut short at the end (a crash or a full disk mid-append) is cut off the file, and the
    /// whole records before it are kept; a file that cannot be read at all is started
    /// afresh: it only saves work.
    pub fn in_file(model: &'static Model, file: &Path) -> Vectors {
        let Some(key) = store_key() else {
            tracing::warn!(file = %file.display(), "the model file has no fingerprint; embeddings are not stored");
            return Vectors::in_memory(model);
        };
        Vectors {
            model,
            known: Mutex::new(open_file(file, &key)),
            file: Some((file.to_path_buf(), key)),
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
        if let (Some((file, key)), false) = (&self.file, fresh.is_empty()) {
            let _appending = self.appending.lock().unwrap_or_else(|p| p.into_inner());
            let (texts, vectors): (Vec<&str>, Vec<Vec<f32>>) = fresh.into_iter().unzip();
            if let Err(e) = append_file(file, key, &texts, &vectors) {
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
        // NaN, from a damaged file, is not at least anything: not taken either.
        let same_model = cosine(&fresh, stored) >= 0.999;
        if !same_model {
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

/// What makes a stored vector the one this process would make: the model file's
/// fingerprint ([`stored_vectors::model_id`]), the role texts are embedded in and how many
/// of their tokens are read ([`TOKENS`]). None when the model file cannot be fingerprinted.
fn store_key() -> Option<String> {
    super::stored_vectors::model_id()
        .map(|id| format!("model {id}; role query; first {TOKENS} tokens"))
}

/// A store file begins with this, then the key's length (u32) and the key.
const MAGIC: &[u8] = b"helpdesk embedding store 1\n";

fn header(key: &str) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&(key.len() as u32).to_le_bytes());
    h.extend_from_slice(key.as_bytes());
    h
}

/// The key a store's header names, and where its records begin; none without a header.
fn read_header(bytes: &[u8]) -> Option<(&str, usize)> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let key = std::str::from_utf8(rest.get(4..4 + len)?).ok()?;
    Some((key, MAGIC.len() + 4 + len))
}

/// The records of a store file made under `key` (see [`parse_records`]); the whole ones
/// are kept, and a file whose end cannot be read is cut back to them. A file made under
/// another key (another model, role or token cut), or without a header, is started afresh.
fn open_file(file: &Path, key: &str) -> HashMap<String, Vector> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "embedding store unreadable; starting it afresh");
            let _ = std::fs::remove_file(file);
            return HashMap::new();
        }
    };
    let start = match read_header(&bytes) {
        Some((made, start)) if made == key => start,
        made => {
            tracing::warn!(
                file = %file.display(),
                made_by = made.map_or("an unknown model (no header)", |(k, _)| k),
                now = key,
                "embedding store made by another model or setting; starting it afresh"
            );
            let _ = std::fs::remove_file(file);
            return HashMap::new();
        }
    };
    let (known, whole, unread) = parse_records(&bytes[start..]);
    if let Some(why) = unread {
        let cut = std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .and_then(|f| f.set_len((start + whole) as u64));
        match cut {
            Ok(()) => tracing::warn!(
                file = %file.display(),
                kept = known.len(),
                dropped_bytes = bytes.len() - start - whole,
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

/// All the records of `bytes` (after a header, if it has one: shipped vectors are checked
/// against the model itself, see [`Vectors::seed`]), or an error if any cannot be read.
fn read_records(bytes: &[u8]) -> std::io::Result<HashMap<String, Vector>> {
    let start = read_header(bytes).map_or(0, |(_, start)| start);
    match parse_records(&bytes[start..]) {
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

/// Appends records to the store, beginning a new (or emptied) file with `key`'s header.
fn append_file(
    file: &Path,
    key: &str,
    texts: &[&str],
    vectors: &[Vec<f32>],
) -> std::io::Result<()> {
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
    if f.metadata()?.len() == 0 {
        buf.splice(0..0, header(key));
    }
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

    const KEY: &str = "model test; role query; first 128 tokens";

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
        append_file(
            &file,
            KEY,
            &["退款", "refund"],
            &[vector(0.5), vector(-0.25)],
        )
        .unwrap();
        let whole = std::fs::metadata(&file).unwrap().len();
        append_file(&file, KEY, &["half written"], &[vector(1.0)]).unwrap();
        let full = std::fs::metadata(&file).unwrap().len();
        for cut in [whole + 2, whole + 4 + 5, full - 1] {
            let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
            f.set_len(cut).unwrap();
            let known = open_file(&file, KEY);
            assert_eq!(known.len(), 2, "cut at {cut}");
            assert_eq!(&known["退款"][..], &vector(0.5)[..]);
            assert_eq!(&known["refund"][..], &vector(-0.25)[..]);
            assert_eq!(
                std::fs::metadata(&file).unwrap().len(),
                whole,
                "cut at {cut}"
            );
            // What is appended next reads back after them.
            append_file(&file, KEY, &["half written"], &[vector(1.0)]).unwrap();
            assert_eq!(open_file(&file, KEY).len(), 3);
        }
        // A length no text has: the records before it are kept.
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.truncate(whole as usize);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 64]);
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(open_file(&file, KEY).len(), 2);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), whole);
        // Shipped vectors are taken whole or not at all.
        assert_eq!(read_store(&bytes[..whole as usize]).unwrap().len(), 2);
        bytes.truncate(whole as usize + 2);
        assert!(read_store(&bytes).is_err());
        // A text the reader would refuse is not written.
        let huge = "x".repeat(RECORD_TEXT_MAX + 1);
        append_file(&file, KEY, &[huge.as_str()], &[vector(0.0)]).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), whole);
        std::fs::remove_file(&file).ok();
    }

    /// A store made by another model, or with another role or token cut (its header's key),
    /// or with no header, is started afresh rather than read as this model's vectors.
    #[test]
    fn a_store_made_otherwise_is_started_afresh() {
        let file = temp_file("vectors");
        append_file(&file, KEY, &["退款"], &[vec![0.5; DIM]]).unwrap();
        assert_eq!(open_file(&file, KEY).len(), 1);
        let other = "model other; role query; first 128 tokens";
        assert!(open_file(&file, other).is_empty());
        assert!(!file.exists());
        // The next append begins the file with the new key.
        append_file(&file, other, &["refund"], &[vec![0.5; DIM]]).unwrap();
        assert_eq!(open_file(&file, other).len(), 1);
        assert!(open_file(&file, KEY).is_empty());
        // A file of records alone, as stores were written before they had a header.
        let mut bare = Vec::new();
        bare.extend_from_slice(&2u32.to_le_bytes());
        bare.extend_from_slice(b"hi");
        bare.extend_from_slice(&[0; DIM * 4]);
        std::fs::write(&file, &bare).unwrap();
        assert!(open_file(&file, KEY).is_empty());
        assert!(!file.exists());
        // The key names what changes a vector.
        if let Some(key) = store_key() {
            let id = crate::knowledge::stored_vectors::model_id().unwrap_or_default();
            assert!(
                key.contains(id) && key.contains("query") && key.contains("128"),
                "{key}"
            );
        }
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
