//! One tokenizer for every index and for the ranker, so that what is indexed and what is
//! compared are the same terms. English words are lower-cased, stop words dropped and the
//! rest stemmed; Chinese, written without spaces, becomes its characters and overlapping
//! character pairs after its most common function characters are taken out. Pairs carry
//! most words; single characters let "退钱" still meet "退款". A dictionary segmenter (jieba)
//! was measured and not adopted: it answered fewer Chinese paraphrases and adds megabytes to
//! every Lambda that links the ranker (docs/benchmarks.md).

use crate::text::is_cjk;
use rust_stemmers::{Algorithm, Stemmer};
use std::sync::OnceLock;

const EN_STOP: &[&str] = &[
    "a", "an", "the", "i", "me", "my", "mine", "we", "our", "you", "your", "it", "its", "is", "am",
    "are", "was", "were", "be", "been", "being", "do", "does", "did", "to", "of", "in", "on", "at",
    "for", "with", "and", "or", "but", "so", "if", "this", "that", "these", "those", "there",
    "here", "what", "how", "can", "could", "would", "should", "will", "shall", "may", "might",
    "please", "hi", "hello", "hey", "thanks", "thank", "just", "get", "got", "im", "i'm", "any",
    "some", "from", "by", "as", "about", "into", "up", "out", "there", "when", "where", "which",
    "who", "why", "have", "has", "had", "s", "t", "don", "ve", "d", "ll",
];

/// Characters that carry grammar rather than topic in customer questions.
const ZH_STOP: &[char] = &[
    '我', '你', '您', '的', '了', '吗', '呢', '啊', '吧', '呀', '哦', '嗯', '请', '是', '在', '就',
    '都', '也', '还', '这', '那', '个', '们', '和', '与', '把', '被', '给', '得', '地', '着', '过',
];

fn stemmer() -> &'static Stemmer {
    static STEMMER: OnceLock<Stemmer> = OnceLock::new();
    STEMMER.get_or_init(|| Stemmer::create(Algorithm::English))
}

/// The terms of `text`: stems of English words, Chinese characters and their pairs.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut word = String::new();
    let mut han: Vec<char> = Vec::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if is_cjk(c) {
            flush_word(&mut word, &mut terms);
            if !ZH_STOP.contains(&c) {
                han.push(c);
            }
        } else if c.is_alphanumeric() || (c == '\'' && !word.is_empty()) {
            flush_han(&mut han, &mut terms);
            word.push(c);
        } else {
            flush_word(&mut word, &mut terms);
            flush_han(&mut han, &mut terms);
        }
    }
    flush_word(&mut word, &mut terms);
    flush_han(&mut han, &mut terms);
    terms
}

/// The English stem of a lower-cased word.
pub(super) fn stem(word: &str) -> String {
    stemmer().stem(word).into_owned()
}

fn flush_word(word: &mut String, terms: &mut Vec<String>) {
    let w = word.trim_end_matches('\'');
    if !w.is_empty() && !EN_STOP.contains(&w) {
        terms.push(stem(&w.replace('\'', "")));
    }
    word.clear();
}

fn flush_han(han: &mut Vec<char>, terms: &mut Vec<String>) {
    match han.len() {
        0 => {}
        1 => terms.push(han[0].to_string()),
        _ => {
            terms.extend(han.iter().map(char::to_string));
            terms.extend(han.windows(2).map(|p| p.iter().collect::<String>()));
        }
    }
    han.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_is_stemmed_without_stop_words() {
        assert_eq!(
            tokenize("How do I reset my Passwords?"),
            ["reset", "password"]
        );
        assert_eq!(tokenize("I can't log in"), ["cant", "log"]);
    }

    #[test]
    fn chinese_becomes_characters_and_pairs() {
        assert_eq!(
            tokenize("我忘记密码了"),
            ["忘", "记", "密", "码", "忘记", "记密", "密码"]
        );
        assert_eq!(
            tokenize("重置 密码"),
            ["重", "置", "重置", "密", "码", "密码"]
        );
        assert_eq!(tokenize("我 的"), Vec::<String>::new());
    }

    #[test]
    fn opensearch_drops_the_same_chinese_function_characters() {
        let mapping: serde_json::Value = serde_json::from_str(include_str!(
            "../../../infra/opensearch/knowledge-index.json"
        ))
        .unwrap();
        let words = &mapping["settings"]["analysis"]["filter"]["zh_stop"]["stopwords"];
        let theirs: Vec<char> = words
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|w| w.as_str().unwrap().chars())
            .collect();
        assert_eq!(theirs, ZH_STOP);
    }

    #[test]
    fn mixed_text_keeps_both() {
        assert_eq!(
            tokenize("App打不开 error 502"),
            ["app", "打", "不", "开", "打不", "不开", "error", "502"]
        );
    }
}
