//! Knowledge-base articles and the ranking step shared by every index: the index retrieves
//! candidate articles, and [`Ranker`] orders them and gives each a confidence in [0, 1]
//! that one threshold turns into "answer" or "hand off".

mod features;
mod model;
pub mod opensearch;
mod ranker;
pub mod semantic;
pub mod stored_vectors;
pub mod sync;
mod tokenize;

/// The check behind the nearest-question vote, as `kb eval` reports it.
pub use helpdesk_embed::neighbours::LeaveOneOut;
pub use ranker::{Decision, Hit, Ranker, CROSS_LINGUAL_CONFIDENCE, DEFAULT_THRESHOLD};
pub use tokenize::tokenize;

use crate::{Error, Result};

/// How many candidates an index hands the ranker.
pub const CANDIDATES: usize = 20;
/// How many of the ranking model's own likeliest articles join an index's candidates: a
/// paraphrase may share no indexed term with its article.
pub const PROPOSED: usize = 3;
/// How much a match counts in each field, in every index: the ways customers ask most, the
/// answer least (it is long, and most of its words are not what the article is about).
pub const QUESTIONS_BOOST: f32 = 3.0;
pub const TITLE_BOOST: f32 = 2.0;
pub const ANSWER_BOOST: f32 = 0.5;
use crate::domain::Language;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The terms an index's term query looks for in `query`. None ("Who are you?" is all stop
/// words): the index skips its term query, and [`hits`] still ranks the ranker's own
/// proposals.
pub fn query_terms(query: &str) -> Vec<String> {
    tokenize(query)
}

/// How every index ends a search: `found`, the candidates its own query retrieved (none for
/// a query without terms), joined by the [`PROPOSED`] articles `ranker` finds likeliest
/// (a paraphrase, or a question made only of stop words, may share no indexed term with its
/// article), ordered by the ranker and cut to `limit`.
pub fn hits<'a>(
    ranker: &Ranker,
    articles: &'a HashMap<String, Article>,
    query: &str,
    mut found: Vec<(&'a Article, f32)>,
    limit: usize,
) -> Vec<Hit> {
    for id in ranker.propose(query, PROPOSED) {
        if !found.iter().any(|(a, _)| a.id == id) {
            if let Some(article) = articles.get(id) {
                found.push((article, 0.0));
            }
        }
    }
    let mut hits = ranker.rank(query, found);
    hits.truncate(limit);
    hits
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Article {
    pub id: String,
    pub title: String,
    /// The ways customers ask it: what search matches against first.
    pub questions: Vec<String>,
    /// The answer; in the language `locale` names, when it names one.
    pub answer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// The answer in other languages, by language (`zh`, `en`): a customer who writes in
    /// one of them is answered in it ([`Article::answer_for`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub answers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The longest article id, in characters.
pub const ID_MAX_CHARS: usize = 128;

/// The most questions an article has: they and its title are the texts whose vectors it
/// keeps ([`stored_vectors::MAX_STORED_TEXTS`]). The benchmarks' largest article, a
/// BANKING77 intent with all its training queries, has 187.
pub const MAX_QUESTIONS: usize = stored_vectors::MAX_STORED_TEXTS - 1;
/// The longest question or title, in characters: the ranking reads only the first
/// [`semantic::TOKENS`] tokens of one anyway. The benchmarks' longest has 433.
pub const TEXT_MAX_CHARS: usize = 500;
/// The longest answer, each language's, in characters.
pub const ANSWER_MAX_CHARS: usize = 20_000;

/// Whether `id` may name an article: 1 to [`ID_MAX_CHARS`] of `A-Z a-z 0-9 _ -`.
///
/// The id goes into URLs (the agent API's, an OpenSearch domain's) as a path segment, so
/// nothing that a URL could read as structure gets in: no `/`, and no `.`, so neither `.`
/// nor `..` can step out of `/{index}/_doc/` (URL parsers undo `%2E%2E` too).
pub fn is_valid_id(id: &str) -> bool {
    (1..=ID_MAX_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// [`is_valid_id`] as the API's error: 422 `invalid_article`, naming the id.
pub fn check_id(id: &str) -> Result<()> {
    if is_valid_id(id) {
        return Ok(());
    }
    let shown = crate::text::truncate_chars(id, 40);
    let more = if shown.len() < id.len() { "…" } else { "" };
    Err(Error::unprocessable(
        "invalid_article",
        format!(
            "article id {shown:?}{more} is not allowed: an id is 1 to {ID_MAX_CHARS} \
             characters of A-Z, a-z, 0-9, _ and -"
        ),
    ))
}

impl Article {
    /// Checks what an index needs: a valid id ([`is_valid_id`]), a title, an answer, and at
    /// least one question; and the limits on size: at most [`MAX_QUESTIONS`] questions, of
    /// [`TEXT_MAX_CHARS`] each as the title, and answers of [`ANSWER_MAX_CHARS`].
    pub fn validate(&self) -> Result<()> {
        check_id(&self.id)?;
        let over = |what: String, limit: String| {
            Err(Error::unprocessable(
                "invalid_article",
                format!("article {:?}: {what}; {limit}", self.id),
            ))
        };
        if self.questions.len() > MAX_QUESTIONS {
            return over(
                format!("it has {} questions", self.questions.len()),
                format!("an article has at most {MAX_QUESTIONS}"),
            );
        }
        let long = |text: &str| text.chars().count() > TEXT_MAX_CHARS;
        if long(&self.title) {
            return over(
                format!("its title has {} characters", self.title.chars().count()),
                format!("a title has at most {TEXT_MAX_CHARS}"),
            );
        }
        if let Some(n) = self.questions.iter().position(|q| long(q)) {
            return over(
                format!(
                    "its question {} has {} characters",
                    n + 1,
                    self.questions[n].chars().count()
                ),
                format!("a question has at most {TEXT_MAX_CHARS}"),
            );
        }
        for (language, answer) in std::iter::once(("", &self.answer)).chain(
            self.answers
                .iter()
                .map(|(language, answer)| (language.as_str(), answer)),
        ) {
            let n = answer.chars().count();
            if n > ANSWER_MAX_CHARS {
                let which = match language {
                    "" => "its answer".to_string(),
                    l => format!("its {} answer", crate::text::truncate_chars(l, 20)),
                };
                return over(
                    format!("{which} has {n} characters"),
                    format!("an answer has at most {ANSWER_MAX_CHARS}"),
                );
            }
        }
        if self.title.trim().is_empty() || self.answer.trim().is_empty() {
            return Err(Error::unprocessable(
                "invalid_article",
                format!("article {:?} needs a title and an answer", self.id),
            ));
        }
        if !self.questions.iter().any(|q| !q.trim().is_empty()) {
            return Err(Error::unprocessable(
                "invalid_article",
                format!("article {:?} needs at least one question", self.id),
            ));
        }
        for (language, answer) in &self.answers {
            if Language::parse(language).is_none() {
                return Err(Error::unprocessable(
                    "invalid_article",
                    format!(
                        "article {:?}: answers are keyed by language, zh or en, not {:?}",
                        self.id,
                        crate::text::truncate_chars(language, 20)
                    ),
                ));
            }
            if answer.trim().is_empty() {
                return Err(Error::unprocessable(
                    "invalid_article",
                    format!("article {:?}: its {language} answer is empty", self.id),
                ));
            }
        }
        Ok(())
    }

    /// The language of [`Article::answer`]: the one `locale` names (`zh`, `zh-CN`, `en-US`,
    /// ...), else unknown.
    pub fn answer_language(&self) -> Option<Language> {
        self.locale.as_deref().and_then(Language::from_locale)
    }

    /// The answer for a customer who writes in `language`, and whether it is in another
    /// language than theirs: their language's answer from `answers`, else `answer` (in
    /// another language only when `locale` says so).
    pub fn answer_for(&self, language: Language) -> (&str, bool) {
        if let Some(answer) = self.answers.get(language.as_str()) {
            return (answer, false);
        }
        let other = self.answer_language().is_some_and(|l| l != language);
        (&self.answer, other)
    }
}

/// Reads `HELPDESK_AUTO_REPLY_THRESHOLD`: a confidence from 0 to 1, or the default when the
/// variable is unset.
pub fn threshold_from_env() -> Result<f64> {
    match std::env::var("HELPDESK_AUTO_REPLY_THRESHOLD") {
        Err(_) => Ok(DEFAULT_THRESHOLD),
        Ok(v) if v.trim().is_empty() => Ok(DEFAULT_THRESHOLD),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(t) if (0.0..=1.0).contains(&t) => Ok(t),
            _ => Err(Error::bad_request(
                "invalid_config",
                format!("HELPDESK_AUTO_REPLY_THRESHOLD must be a number from 0 to 1, not {v:?}"),
            )),
        },
    }
}

/// Reads an import file: a JSON array of articles, or JSON Lines.
pub fn parse_articles(text: &str) -> Result<Vec<Article>> {
    // Only a byte-order mark is cut: errors name the lines of the file as it is.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let articles: Vec<Article> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
            .map_err(|e| Error::bad_request("invalid_json", format!("article array: {e}")))?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l)
                    .map_err(|e| Error::bad_request("invalid_json", format!("line {}: {e}", n + 1)))
            })
            .collect::<Result<_>>()?
    };
    let mut first_at = std::collections::HashMap::with_capacity(articles.len());
    for (n, a) in articles.iter().enumerate() {
        a.validate().map_err(|e| Error {
            message: format!("article {}: {}", n + 1, e.message),
            ..e
        })?;
        // Two articles with one id would be one, the second replacing the first: the file
        // has a mistake, and nothing of it is taken.
        if let Some(first) = first_at.insert(a.id.as_str(), n) {
            return Err(Error::unprocessable(
                "invalid_article",
                format!(
                    "article {}: its id {:?} is article {}'s too; ids are unique",
                    n + 1,
                    a.id,
                    first + 1
                ),
            ));
        }
    }
    Ok(articles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article_with_answers(answers: &[(&str, &str)]) -> Article {
        Article {
            id: "pw".into(),
            title: "Reset your password".into(),
            questions: vec!["I forgot my password".into()],
            answer: "Click \"Forgot password\".".into(),
            locale: Some("en".into()),
            tags: vec![],
            answers: answers
                .iter()
                .map(|(l, a)| (l.to_string(), a.to_string()))
                .collect(),
        }
    }

    #[test]
    fn answers_are_keyed_by_a_language_the_desk_speaks_and_not_empty() {
        assert!(article_with_answers(&[("zh", "点击“忘记密码”。")])
            .validate()
            .is_ok());
        for bad in [
            &[("fr", "Cliquez")][..],
            &[("zh-CN", "点击")],
            &[("zh", "  ")],
        ] {
            let e = article_with_answers(bad).validate().unwrap_err();
            assert_eq!(
                (e.kind.status(), e.code),
                (422, "invalid_article"),
                "{bad:?}"
            );
        }
        // Read from an import file as from the API.
        let parsed = parse_articles(
            r#"[{"id":"pw","title":"T","questions":["q"],"answer":"A","answers":{"zh":"答"}}]"#,
        )
        .unwrap();
        assert_eq!(parsed[0].answers["zh"], "答");
        assert!(parse_articles(
            r#"[{"id":"pw","title":"T","questions":["q"],"answer":"A","answers":{"xx":"?"}}]"#
        )
        .is_err());
    }

    #[test]
    fn the_answer_for_a_language_is_its_own_else_the_article_s() {
        let a = article_with_answers(&[("zh", "点击“忘记密码”。")]);
        assert_eq!(a.answer_for(Language::Zh), ("点击“忘记密码”。", false));
        assert_eq!(
            a.answer_for(Language::En),
            ("Click \"Forgot password\".", false)
        );
        let a = article_with_answers(&[]);
        assert_eq!(
            a.answer_for(Language::Zh),
            ("Click \"Forgot password\".", true)
        );
        let unknown = Article {
            locale: None,
            ..article_with_answers(&[])
        };
        assert!(!unknown.answer_for(Language::Zh).1);
        assert_eq!(Language::from_locale("zh_TW"), Some(Language::Zh));
        assert_eq!(Language::from_locale("EN-us"), Some(Language::En));
        assert_eq!(Language::from_locale("fr"), None);
    }

    #[test]
    fn an_article_over_a_size_limit_is_refused_naming_the_limit_and_the_article() {
        let ok = article_with_answers(&[("zh", "答")]);
        let at_limits = Article {
            title: "题".repeat(TEXT_MAX_CHARS),
            questions: (0..MAX_QUESTIONS)
                .map(|n| format!("{n}{}", "问".repeat(TEXT_MAX_CHARS - 3)))
                .collect(),
            answer: "答".repeat(ANSWER_MAX_CHARS),
            answers: [("zh".to_string(), "答".repeat(ANSWER_MAX_CHARS))].into(),
            ..ok.clone()
        };
        assert!(at_limits.validate().is_ok());
        assert_eq!(MAX_QUESTIONS + 1, stored_vectors::MAX_STORED_TEXTS);
        let cases = [
            (
                Article {
                    questions: vec!["q".into(); MAX_QUESTIONS + 1],
                    ..ok.clone()
                },
                "article \"pw\": it has 256 questions; an article has at most 255",
            ),
            (
                Article {
                    title: "题".repeat(TEXT_MAX_CHARS + 1),
                    ..ok.clone()
                },
                "article \"pw\": its title has 501 characters; a title has at most 500",
            ),
            (
                Article {
                    questions: vec!["q".into(), "问".repeat(TEXT_MAX_CHARS + 1)],
                    ..ok.clone()
                },
                "article \"pw\": its question 2 has 501 characters; a question has at most 500",
            ),
            (
                Article {
                    answer: "a".repeat(ANSWER_MAX_CHARS + 1),
                    ..ok.clone()
                },
                "article \"pw\": its answer has 20001 characters; an answer has at most 20000",
            ),
            (
                Article {
                    answers: [("zh".to_string(), "答".repeat(ANSWER_MAX_CHARS + 1))].into(),
                    ..ok.clone()
                },
                "article \"pw\": its zh answer has 20001 characters; an answer has at most 20000",
            ),
        ];
        for (article, message) in cases {
            let e = article.validate().unwrap_err();
            assert_eq!((e.kind.status(), e.code), (422, "invalid_article"));
            assert_eq!(e.message, message);
        }
    }

    #[test]
    fn reads_arrays_and_json_lines() {
        let one = r#"{"id":"a","title":"T","questions":["q"],"answer":"A"}"#;
        let two = r#"{"id":"b","title":"T","questions":["q"],"answer":"A"}"#;
        assert_eq!(parse_articles(&format!("[{one}]")).unwrap().len(), 1);
        assert_eq!(
            parse_articles(&format!("{one}\n\n{two}\n")).unwrap().len(),
            2
        );
        let err = parse_articles(&format!("{one}\n{{bad")).unwrap_err();
        assert!(err.message.contains("line 2"), "{}", err.message);
        // Lines are the file's own: blank lines before, a byte-order mark, CRLF endings.
        let err = parse_articles(&format!("\u{feff}\n \r\n\n{one}\r\n{{bad\r\n")).unwrap_err();
        assert!(err.message.starts_with("line 5:"), "{}", err.message);
        let err = parse_articles(&format!("\n\n[{one},\n{{bad]")).unwrap_err();
        assert!(err.message.contains("line 4"), "{}", err.message);
        let no_q = r#"[{"id":"a","title":"T","questions":[" "],"answer":"A"}]"#;
        assert_eq!(parse_articles(no_q).unwrap_err().kind.status(), 422);
    }

    #[test]
    fn ids_are_letters_digits_underscores_and_hyphens() {
        for ok in ["a", "reset-password_en", "A1", &"x".repeat(ID_MAX_CHARS)] {
            assert!(is_valid_id(ok), "{ok}");
        }
        let too_long = "x".repeat(ID_MAX_CHARS + 1);
        for bad in [
            "", ".", "..", "a/b", "a.b", " a", "a b", "退款", "a?b", "a#b", "%2E%2E", "a\\b",
            &too_long,
        ] {
            assert!(!is_valid_id(bad), "{bad:?}");
            let err = check_id(bad).unwrap_err();
            assert_eq!((err.kind.status(), err.code), (422, "invalid_article"));
        }
        // A long id in the message is cut on a character, not a byte.
        let err = check_id(&"退".repeat(200)).unwrap_err();
        assert!(
            err.message.contains(&format!("{}\"…", "退".repeat(40))),
            "{}",
            err.message
        );
    }

    #[test]
    fn an_import_with_one_id_twice_is_refused_and_names_both() {
        let first = r#"{"id":"wifi","title":"Wi-Fi","questions":["密码是多少"],"answer":"A"}"#;
        let other = r#"{"id":"b","title":"T","questions":["q"],"answer":"A"}"#;
        let again = r#"{"id":"wifi","title":"Wi-Fi","questions":["q"],"answer":"dup"}"#;
        for text in [
            format!("[{first},{other},{again}]"),
            format!("{first}\n{other}\n{again}\n"),
        ] {
            let err = parse_articles(&text).unwrap_err();
            assert_eq!((err.kind.status(), err.code), (422, "invalid_article"));
            assert_eq!(
                err.message,
                "article 3: its id \"wifi\" is article 1's too; ids are unique"
            );
        }
    }

    #[test]
    fn an_import_names_the_article_with_a_bad_id() {
        let good = r#"{"id":"a","title":"T","questions":["q"],"answer":"A"}"#;
        let bad = r#"{"id":"..","title":"T","questions":["q"],"answer":"A"}"#;
        let err = parse_articles(&format!("{good}\n{bad}\n")).unwrap_err();
        assert_eq!(err.kind.status(), 422);
        assert!(
            err.message.starts_with("article 2: article id \"..\""),
            "{}",
            err.message
        );
    }
}
