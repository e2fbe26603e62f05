//! Article question vectors kept beside the articles where a function reads them (the
//! articles table on AWS, the OpenSearch documents), so that a function that starts cold
//! reads them instead of embedding the whole knowledge base. One rule, here: which texts of
//! an article are embedded, how their vectors are packed (f16, little-endian, in the texts'
//! order), and when packed vectors may be used: only when they come from the same model
//! file and from exactly the article's texts as they are now. Anything else is stale: it is
//! embedded again where the article is read, and the adapter that read it writes the new
//! vectors back.

use super::semantic::{self, Vector, Vectors};
use super::Article;
use helpdesk_embed::DIM;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, OnceLock};

/// The most texts whose vectors one article keeps (768 bytes each): 256 take 192 KiB,
/// leaving half of a DynamoDB item's 400 KB for the article itself (a larger article keeps
/// fewer: [`make_within`]). An article's texts past these are embedded where it is read, as
/// stale ones are.
pub const MAX_STORED_TEXTS: usize = 256;

/// One article's packed vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The model file's fingerprint ([`model_id`]).
    pub model: String,
    /// The fingerprint of the texts embedded ([`texts_hash`]).
    pub texts: String,
    /// The vectors, [`DIM`] little-endian f16 each, in the order of [`texts`].
    pub f16: Vec<u8>,
}

/// The texts of an article the ranking embeds: its questions, then its title, each once, in
/// that order.
pub fn texts(article: &Article) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::with_capacity(article.questions.len() + 1);
    for t in article
        .questions
        .iter()
        .chain(std::iter::once(&article.title))
    {
        if !out.contains(&t.as_str()) {
            out.push(t);
        }
    }
    out
}

/// The fingerprint of a list of texts: the first 32 hex digits of the SHA-256 of each
/// text's byte length (u32, little-endian) and bytes.
pub fn texts_hash(texts: &[&str]) -> String {
    let mut h = Sha256::new();
    for t in texts {
        h.update((t.len() as u32).to_le_bytes());
        h.update(t.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// The fingerprint of the model file the process uses, when it uses one: its size and the
/// SHA-256 of its first and last MiB (a different file of the same name differs there: the
/// header lists the tensors, the end holds the last layer's weights). Hashing all 72 MB
/// would add a quarter of a second to every cold start.
pub fn model_id() -> Option<&'static str> {
    semantic::encoder()?;
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        let path = helpdesk_embed::model_path().path;
        match fingerprint(&path) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot fingerprint the model file; stored vectors are not used");
                None
            }
        }
    })
    .as_deref()
}

fn fingerprint(path: &std::path::Path) -> std::io::Result<String> {
    const PART: u64 = 1 << 20;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut h = Sha256::new();
    h.update(len.to_le_bytes());
    let mut buf = Vec::new();
    (&mut f).take(PART).read_to_end(&mut buf)?;
    h.update(&buf);
    buf.clear();
    f.seek(SeekFrom::Start(len.saturating_sub(PART)))?;
    f.take(PART).read_to_end(&mut buf)?;
    h.update(&buf);
    Ok(format!(
        "{}:{}",
        helpdesk_embed::MODEL_FILE,
        hex::encode(&h.finalize()[..8])
    ))
}

/// The bytes one text's packed vector takes.
pub const BYTES_PER_TEXT: usize = DIM * 2;

/// The packed vectors of `article`'s texts (its first [`MAX_STORED_TEXTS`]), embedding those
/// `vectors` does not hold yet. `None` without a model.
pub fn make(article: &Article, vectors: &Vectors) -> Option<Stored> {
    make_within(article, vectors, usize::MAX)
}

/// [`make`], keeping only as many texts as `room` bytes hold (where the article and its
/// vectors share a size limit): the rest are embedded where the article is read, as texts
/// past [`MAX_STORED_TEXTS`] are.
pub fn make_within(article: &Article, vectors: &Vectors, room: usize) -> Option<Stored> {
    let model = model_id()?;
    let mut texts = texts(article);
    texts.truncate(MAX_STORED_TEXTS.min(room / BYTES_PER_TEXT));
    let made = vectors.get(&texts);
    let mut f16 = Vec::with_capacity(texts.len() * BYTES_PER_TEXT);
    for v in &made {
        for x in v.iter() {
            f16.extend_from_slice(&f32_to_f16(*x).to_le_bytes());
        }
    }
    Some(Stored {
        model: model.to_string(),
        texts: texts_hash(&texts),
        f16,
    })
}

/// The article's texts with their vectors from `stored`, when those are current: made by
/// this process's model from exactly these texts. `None` when stale (or without a model).
pub fn read<'a>(article: &'a Article, stored: &Stored) -> Option<Vec<(&'a str, Vector)>> {
    if Some(stored.model.as_str()) != model_id() {
        return None;
    }
    let mut texts = texts(article);
    let n = stored.f16.len() / BYTES_PER_TEXT;
    if stored.f16.len() != n * BYTES_PER_TEXT || n > texts.len() {
        return None;
    }
    texts.truncate(n);
    if texts_hash(&texts) != stored.texts {
        return None;
    }
    Some(
        texts
            .into_iter()
            .zip(stored.f16.chunks_exact(BYTES_PER_TEXT))
            .map(|(t, raw)| {
                let v: Vec<f32> = raw
                    .chunks_exact(2)
                    .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                    .collect();
                (t, Arc::from(v))
            })
            .collect(),
    )
}

/// Puts an article's current stored vectors into `vectors`; answers whether there were
/// any to take (`false`: stale or missing, and they will be embedded when needed).
pub fn preload(article: &Article, stored: Option<&Stored>, vectors: &Vectors) -> bool {
    match stored.and_then(|s| read(article, s)) {
        Some(found) => {
            vectors.preload(found);
            true
        }
        None => false,
    }
}

/// The normalised mean of an article's vectors (of its non-blank questions and title, as the
/// ranking takes them): the one vector a search cluster keeps of an article.
pub fn mean(article: &Article, vectors: &Vectors) -> Vec<f32> {
    let texts: Vec<&str> = texts(article)
        .into_iter()
        .filter(|t| !t.trim().is_empty())
        .collect();
    let mut sum = vec![0f32; DIM];
    for v in vectors.get(&texts) {
        for (s, x) in sum.iter_mut().zip(v.iter()) {
            *s += x;
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    sum.iter_mut().for_each(|x| *x /= norm);
    sum
}

/// IEEE half precision, rounded to nearest even. Embedding components lie in [-1, 1], where
/// f16 keeps 11 significant bits: a cosine moves by well under 0.001.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rounded = (m + half - 1 + ((m >> shift) & 1)) >> shift;
        return sign | rounded as u16;
    }
    let m = mant >> 13;
    let rest = mant & 0x1fff;
    let mut h = ((e as u32) << 10) | m;
    if rest > 0x1000 || (rest == 0x1000 && m & 1 == 1) {
        h += 1;
    }
    sign | h as u16
}

pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    match (exp, mant) {
        (0, 0) => f32::from_bits(sign),
        (0, m) => {
            let v = m as f32 / 16_777_216.0;
            if sign != 0 {
                -v
            } else {
                v
            }
        }
        (0x1f, m) => f32::from_bits(sign | 0x7f80_0000 | (m << 13)),
        (e, m) => f32::from_bits(sign | ((e + 112) << 23) | (m << 13)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article() -> Article {
        Article {
            id: "pw".into(),
            title: "重置密码".into(),
            questions: vec![
                "忘记密码怎么办".into(),
                "How do I reset my password?".into(),
                "忘记密码怎么办".into(),
            ],
            answer: "点击“忘记密码”".into(),
            locale: None,
            tags: vec![],
            answers: Default::default(),
        }
    }

    #[test]
    fn half_precision_round_trips_within_its_precision() {
        for x in [
            0.0f32, -0.0, 1.0, -1.0, 0.5, 0.0123, -0.0456, 0.333_333, 1e-5, -3e-7, 6e-8, 65504.0,
        ] {
            let back = f16_to_f32(f32_to_f16(x));
            assert!(
                (back - x).abs() <= x.abs() / 1024.0 + 6e-8,
                "{x} came back as {back}"
            );
        }
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(1e6), 0x7c00);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
    }

    #[test]
    fn texts_are_the_questions_then_the_title_each_once() {
        let a = article();
        assert_eq!(
            texts(&a),
            ["忘记密码怎么办", "How do I reset my password?", "重置密码"]
        );
        let h = texts_hash(&texts(&a));
        assert_eq!(h.len(), 32);
        // The texts' boundaries count: "ab" + "c" is not "a" + "bc".
        assert_ne!(texts_hash(&["ab", "c"]), texts_hash(&["a", "bc"]));
    }

    /// With the model file (skipped, saying so, without it): vectors made for an article
    /// read back for it, and not once a question changes.
    #[test]
    fn stored_vectors_read_back_only_for_the_texts_they_were_made_from() {
        let Some(model) = semantic::encoder() else {
            helpdesk_embed::say_skipped("stored vectors read back for their own texts only");
            return;
        };
        let vectors = Vectors::in_memory(model);
        let a = article();
        let stored = make(&a, &vectors).expect("a model");
        assert_eq!(stored.f16.len(), 3 * DIM * 2);
        let found = read(&a, &stored).expect("current");
        assert_eq!(found.len(), 3);
        let made = vectors.get(&texts(&a));
        for ((t, v), m) in found.iter().zip(&made) {
            assert!(
                semantic::cosine(v, m) > 0.9999,
                "{t}: {}",
                semantic::cosine(v, m)
            );
        }
        let mut edited = a.clone();
        edited.questions[1] = "I forgot my password".into();
        assert!(read(&edited, &stored).is_none());
        let other_model = Stored {
            model: "another:0000".into(),
            ..stored.clone()
        };
        assert!(read(&a, &other_model).is_none());
        let cut = Stored {
            f16: stored.f16[..stored.f16.len() - 1].to_vec(),
            ..stored
        };
        assert!(read(&a, &cut).is_none());
        let m = mean(&a, &vectors);
        let norm: f32 = m.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
