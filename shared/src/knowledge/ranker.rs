//! The ranking step. Each article is represented by its questions and its title; a query's
//! similarity to one of them is the cosine of their term sets weighted by inverse document
//! frequency, and an article scores its best-matching question. That similarity is the
//! confidence: 1 for a question asked word for word, near 0 for a question about something
//! else.

use super::{tokenize, Article};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// Confidence at or above which the desk answers on its own.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// How close (in confidence) a second article must be to be offered as "did you mean".
const CLOSE_MARGIN: f64 = 0.08;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hit {
    pub article_id: String,
    pub title: String,
    pub answer: String,
    /// The index's own retrieval score (BM25 for tantivy), for tuning.
    pub score: f32,
    pub confidence: f64,
}

/// What auto-reply does with a query's hits.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<'a> {
    Reply {
        hit: &'a Hit,
        /// Close runners-up, offered as "did you mean".
        alternatives: Vec<&'a Hit>,
    },
    Handoff,
}

impl Decision<'_> {
    pub fn decide(hits: &[Hit], threshold: f64) -> Decision<'_> {
        match hits.first() {
            Some(top) if top.confidence >= threshold => Decision::Reply {
                hit: top,
                alternatives: hits[1..]
                    .iter()
                    .filter(|h| {
                        h.confidence >= threshold && top.confidence - h.confidence < CLOSE_MARGIN
                    })
                    .take(2)
                    .collect(),
            },
            _ => Decision::Handoff,
        }
    }
}

/// Term statistics over the whole knowledge base.
#[derive(Debug, Clone, Default)]
pub struct Ranker {
    df: HashMap<String, u32>,
    docs: u32,
}

impl Ranker {
    /// Document frequencies count articles, not questions: a word an article's questions
    /// share is that article's topic, and must not look common for it.
    pub fn new<'a>(articles: impl IntoIterator<Item = &'a Article>) -> Ranker {
        let mut ranker = Ranker::default();
        for a in articles {
            let terms: HashSet<String> = a
                .questions
                .iter()
                .chain(std::iter::once(&a.title))
                .flat_map(|text| tokenize(text))
                .collect();
            if terms.is_empty() {
                continue;
            }
            ranker.docs += 1;
            for t in terms {
                *ranker.df.entry(t).or_default() += 1;
            }
        }
        ranker
    }

    fn idf(&self, term: &str) -> f64 {
        let df = f64::from(self.df.get(term).copied().unwrap_or(0));
        let n = f64::from(self.docs);
        ((n + 1.0) / (df + 1.0)).ln() + 1.0
    }

    /// Orders `candidates` (each with the index's retrieval score) by confidence.
    pub fn rank(&self, query: &str, candidates: Vec<(Article, f32)>) -> Vec<Hit> {
        let q: HashSet<String> = tokenize(query).into_iter().collect();
        let q_weights: HashMap<&str, f64> = q
            .iter()
            .map(|t| (t.as_str(), self.idf(t).powi(2)))
            .collect();
        let q_norm: f64 = q_weights.values().sum::<f64>().sqrt();
        let mut hits: Vec<Hit> = candidates
            .into_iter()
            .map(|(article, score)| {
                let confidence = if q_norm == 0.0 {
                    0.0
                } else {
                    article
                        .questions
                        .iter()
                        .chain(std::iter::once(&article.title))
                        .map(|text| self.similarity(&q_weights, q_norm, text))
                        .fold(0.0, f64::max)
                };
                Hit {
                    article_id: article.id,
                    title: article.title,
                    answer: article.answer,
                    score,
                    confidence,
                }
            })
            .collect();
        hits.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(b.score.total_cmp(&a.score))
        });
        hits
    }

    fn similarity(&self, q: &HashMap<&str, f64>, q_norm: f64, text: &str) -> f64 {
        let d: HashSet<String> = tokenize(text).into_iter().collect();
        let mut shared = 0.0;
        let mut d_norm = 0.0;
        for t in &d {
            let w = self.idf(t).powi(2);
            d_norm += w;
            if q.contains_key(t.as_str()) {
                shared += w;
            }
        }
        if d_norm == 0.0 {
            return 0.0;
        }
        (shared / (q_norm * d_norm.sqrt())).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(id: &str, questions: &[&str]) -> Article {
        Article {
            id: id.into(),
            title: questions[0].into(),
            questions: questions.iter().map(|q| q.to_string()).collect(),
            answer: format!("answer {id}"),
            locale: None,
            tags: vec![],
        }
    }

    fn kb() -> Vec<Article> {
        vec![
            article(
                "pw",
                &[
                    "How do I reset my password?",
                    "I forgot my password",
                    "忘记密码怎么办",
                    "如何重置密码",
                ],
            ),
            article(
                "hours",
                &[
                    "What are your working hours?",
                    "When are you open?",
                    "你们几点上班",
                    "客服工作时间",
                ],
            ),
            article(
                "refund",
                &[
                    "What is your refund policy?",
                    "Can I get my money back?",
                    "怎么申请退款",
                    "退款政策是什么",
                ],
            ),
        ]
    }

    fn rank(q: &str) -> Vec<Hit> {
        let kb = kb();
        let ranker = Ranker::new(&kb);
        ranker.rank(q, kb.into_iter().map(|a| (a, 1.0)).collect())
    }

    #[test]
    fn exact_question_is_fully_confident() {
        let hits = rank("How do I reset my password?");
        assert_eq!(hits[0].article_id, "pw");
        assert!((hits[0].confidence - 1.0).abs() < 1e-9);
    }

    #[test]
    fn paraphrases_in_both_languages_pass_the_threshold() {
        for q in [
            "I forgot my password, how can I reset it?",
            "我忘记密码了，怎么重置？",
            "退款政策",
            "what time are you open",
        ] {
            let hits = rank(q);
            let Decision::Reply { hit, .. } = Decision::decide(&hits, DEFAULT_THRESHOLD) else {
                panic!("no reply for {q}: {hits:?}");
            };
            assert_ne!(hit.confidence, 0.0, "{q}");
        }
    }

    #[test]
    fn unrelated_questions_hand_off() {
        for q in [
            "Why was I charged twice for my subscription?",
            "我的快递三天了还没到",
            "",
        ] {
            let hits = rank(q);
            assert_eq!(
                Decision::decide(&hits, DEFAULT_THRESHOLD),
                Decision::Handoff,
                "{q}: {hits:?}"
            );
        }
    }
}
