//! The model's own tokenizer: XLM-R's SentencePiece unigram model. A text is normalised
//! character by character (the model's map: full-width forms to ASCII and the like), runs
//! of spaces become one, every space becomes the word marker `▁` (and one leads the text),
//! then the most probable split into the vocabulary's pieces is found by dynamic
//! programming over characters. A character no piece covers is `<unk>`.

use crate::format::File;
use crate::{Error, Result};
use std::collections::HashMap;

/// SentencePiece's word marker, U+2581.
const MARKER: char = '\u{2581}';

pub struct Tokenizer {
    pieces: HashMap<Box<[u8]>, u32>,
    scores: Vec<f32>,
    normalize: HashMap<char, Box<[char]>>,
    unk: u32,
    unk_score: f32,
    longest: usize,
}

impl Tokenizer {
    pub(crate) fn from_file(file: &File) -> Result<Tokenizer> {
        let v = &file.vocab;
        let mut pieces = HashMap::with_capacity(v.scores.len());
        let mut longest = 1;
        for (id, w) in v.offsets.windows(2).enumerate() {
            let bytes = &v.text[w[0] as usize..w[1] as usize];
            if bytes.is_empty() {
                continue;
            }
            longest = longest.max(bytes.len());
            // The first of two equal pieces wins, as a lookup would find it.
            pieces.entry(bytes.into()).or_insert(id as u32);
        }
        let min = v.scores.iter().copied().fold(f32::INFINITY, f32::min);
        let mut normalize = HashMap::with_capacity(v.normalize.len());
        for (cp, out) in &v.normalize {
            let chars = |cp: u32| {
                char::from_u32(cp)
                    .ok_or_else(|| Error::Format(format!("normaliser code point {cp:#x}")))
            };
            let out = out
                .iter()
                .map(|c| chars(*c))
                .collect::<Result<Vec<char>>>()?;
            normalize.insert(chars(*cp)?, out.into_boxed_slice());
        }
        Ok(Tokenizer {
            pieces,
            scores: v.scores.clone(),
            normalize,
            unk: v.unk,
            unk_score: min - 10.0,
            longest,
        })
    }

    /// How many pieces the vocabulary has.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The text as the pieces see it: normalised, spaces collapsed and marked.
    fn normalized(&self, text: &str) -> Vec<char> {
        let mut chars: Vec<char> = Vec::with_capacity(text.len() + 1);
        for c in text.chars() {
            let mapped: &[char] = match self.normalize.get(&c) {
                Some(out) => out,
                None => std::slice::from_ref(&c),
            };
            for &m in mapped {
                if m == ' ' && chars.last() == Some(&' ') {
                    continue;
                }
                chars.push(m);
            }
        }
        if chars.first() != Some(&' ') {
            chars.insert(0, MARKER);
        }
        for c in &mut chars {
            if *c == ' ' {
                *c = MARKER;
            }
        }
        chars
    }

    /// The piece ids of `text`, without `<s>` and `</s>`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let chars = self.normalized(text);
        let mut bytes = String::with_capacity(chars.len() * 3);
        // Byte offset of each character's start, and of the end.
        let mut starts = Vec::with_capacity(chars.len() + 1);
        for c in &chars {
            starts.push(bytes.len());
            bytes.push(*c);
        }
        starts.push(bytes.len());
        let bytes = bytes.as_bytes();

        let n = chars.len();
        // best[i]: score of the best split of the first i characters; from[i]: where its
        // last piece starts, and which piece it is (None: an unknown character).
        let mut best = vec![f32::NEG_INFINITY; n + 1];
        let mut from: Vec<(usize, Option<u32>)> = vec![(0, None); n + 1];
        best[0] = 0.0;
        for i in 0..n {
            let here = best[i];
            for e in i + 1..=n {
                let piece = &bytes[starts[i]..starts[e]];
                if piece.len() > self.longest {
                    break;
                }
                if let Some(&id) = self.pieces.get(piece) {
                    if id == self.unk {
                        continue;
                    }
                    let score = here + self.scores[id as usize];
                    if score > best[e] {
                        best[e] = score;
                        from[e] = (i, Some(id));
                    }
                }
            }
            let score = here + self.unk_score;
            if score > best[i + 1] {
                best[i + 1] = score;
                from[i + 1] = (i, None);
            }
        }
        let mut ids = Vec::new();
        let mut at = n;
        while at > 0 {
            let (start, id) = from[at];
            ids.push(id.unwrap_or(self.unk));
            at = start;
        }
        ids.reverse();
        ids
    }
}
