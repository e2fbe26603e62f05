//! The features the learned ranking model sees. Retrieval terms (`tokenize`) drop stop words
//! and keep only stems; a classifier does better with more: every word's stem (stop words
//! too: "why" and "how" ask different things), pairs of neighbouring words, character
//! n-grams inside words (typos, inflections the stemmer misses), and for Chinese, which has
//! no spaces, single characters, pairs and triples.

use super::tokenize::stem;
use crate::text::is_cjk;

/// The distinct features of `text`, as strings with a one-letter kind prefix so that a word
/// and a character n-gram never collide.
pub fn features(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut han: Vec<char> = Vec::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if is_cjk(c) {
            end_word(&mut word, &mut words, &mut out);
            han.push(c);
        } else if c.is_alphanumeric() || (c == '\'' && !word.is_empty()) {
            end_han(&mut han, &mut out);
            word.push(c);
        } else {
            end_word(&mut word, &mut words, &mut out);
            end_han(&mut han, &mut out);
        }
    }
    end_word(&mut word, &mut words, &mut out);
    end_han(&mut han, &mut out);
    for pair in words.windows(2) {
        out.push(format!("b{} {}", pair[0], pair[1]));
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn end_word(word: &mut String, words: &mut Vec<String>, out: &mut Vec<String>) {
    let w: String = word.trim_end_matches('\'').replace('\'', "");
    word.clear();
    if w.is_empty() {
        return;
    }
    let s = stem(&w);
    out.push(format!("w{s}"));
    // Character n-grams of the word with its boundaries marked, as in fastText.
    let chars: Vec<char> = std::iter::once('<')
        .chain(w.chars())
        .chain(std::iter::once('>'))
        .collect();
    grams('c', &chars, 3..=5, out);
    words.push(s);
}

fn end_han(han: &mut Vec<char>, out: &mut Vec<String>) {
    grams('h', han, 1..=3, out);
    han.clear();
}

/// Every run of `sizes` consecutive characters, behind the feature-kind prefix.
fn grams(
    kind: char,
    chars: &[char],
    sizes: std::ops::RangeInclusive<usize>,
    out: &mut Vec<String>,
) {
    for n in sizes {
        for gram in chars.windows(n) {
            out.push(std::iter::once(kind).chain(gram.iter().copied()).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_pairs_and_grams() {
        let f = features("Cards arrive");
        for want in ["wcard", "warriv", "bcard arriv", "c<ca", "crds>", "c<card"] {
            assert!(f.contains(&want.to_string()), "{want} missing from {f:?}");
        }
    }

    #[test]
    fn chinese_characters_pairs_and_triples() {
        let f = features("忘记密码");
        for want in ["h忘", "h密码", "h忘记密", "h记密码"] {
            assert!(f.contains(&want.to_string()), "{want} missing from {f:?}");
        }
        assert!(!f.iter().any(|x| x.starts_with('w')));
    }
}
