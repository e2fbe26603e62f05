//! Canned responses (saved replies): text an agent puts in a reply by typing `/` and its
//! short code, as Chatwoot's canned responses and Zendesk's macros. Supervisors keep them.
//! The rules on a code and its text live here, for both stores and the API.

use crate::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest short code, in characters.
pub const SHORT_CODE_MAX_CHARS: usize = 32;
/// The longest content, in characters (Unicode scalar values) after trimming.
pub const CONTENT_MAX_CHARS: usize = 2_000;
/// How many canned responses the desk keeps: a new one past this is refused (a change to
/// one that exists never is). With [`CONTENT_MAX_CHARS`], the whole list, which every
/// agent's reply box reads in one answer, stays under a Lambda answer's 6 MB at worst
/// (a test holds it there).
pub const MAX_CANNED_RESPONSES: usize = 500;

/// A saved reply, as the API and the stores keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CannedResponse {
    /// What the agent types after `/`: a [`short_code`], folded.
    pub short_code: String,
    /// The text put in the reply: trimmed, 1 to [`CONTENT_MAX_CHARS`] characters.
    pub content: String,
    pub updated_at: DateTime<Utc>,
    /// The supervisor (or administrator) who saved it last.
    pub updated_by: String,
}

impl CannedResponse {
    /// A canned response from what a supervisor sent: the code checked and folded
    /// ([`short_code`]), the content checked and trimmed ([`content`]).
    pub fn new(
        code: &str,
        text: &str,
        updated_by: &str,
        updated_at: DateTime<Utc>,
    ) -> Result<CannedResponse> {
        Ok(CannedResponse {
            short_code: short_code(code)?,
            content: content(text)?,
            updated_at,
            updated_by: updated_by.to_string(),
        })
    }
}

/// The short code `raw` names, checked: a [`super::word`] of 1 to
/// [`SHORT_CODE_MAX_CHARS`] characters (`Refund` and `refund` are one code), so a code is
/// one path segment as it is typed (no `.` or `..` for the URL to resolve away). Else 422
/// `invalid_short_code`.
pub fn short_code(raw: &str) -> Result<String> {
    super::word(raw, SHORT_CODE_MAX_CHARS).ok_or_else(|| {
        Error::unprocessable(
            "invalid_short_code",
            format!(
                "short code {} is not allowed: a short code is 1 to {SHORT_CODE_MAX_CHARS} \
                 characters, with no space, no / and no punctuation but - and _",
                super::quoted(raw)
            ),
        )
    })
}

/// The content `raw` gives, trimmed: 1 to [`CONTENT_MAX_CHARS`] characters, lines and tabs
/// but no other control character. Else 422 `empty_content`, `invalid_content` or
/// `content_too_long`.
pub fn content(raw: &str) -> Result<String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(Error::unprocessable(
            "empty_content",
            "a canned response's content is 1 or more characters besides spaces",
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Error::unprocessable(
            "invalid_content",
            "a canned response's content holds no control characters but line breaks and tabs",
        ));
    }
    let count = text.chars().count();
    if count > CONTENT_MAX_CHARS {
        return Err(Error::unprocessable(
            "content_too_long",
            format!(
                "a canned response's content is at most {CONTENT_MAX_CHARS} characters; \
                 this one has {count}"
            ),
        ));
    }
    Ok(text.to_string())
}

/// Why a new canned response is refused when one with its short code is kept already
/// (a PUT with `If-None-Match: *`).
pub fn exists(short_code: &str) -> Error {
    Error::conflict(
        "canned_response_exists",
        format!("there is already a canned response /{short_code}: edit it instead"),
    )
}

/// Why a new canned response is refused when the desk keeps [`MAX_CANNED_RESPONSES`].
pub fn too_many() -> Error {
    Error::unprocessable(
        "too_many_canned_responses",
        format!(
            "the desk keeps at most {MAX_CANNED_RESPONSES} canned responses: delete one \
             before adding another"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_letters_of_any_script_digits_dashes_and_underscores_folded() {
        assert_eq!(short_code("Refund").unwrap(), "refund");
        assert_eq!(short_code("退款").unwrap(), "退款");
        // Typed in an input method's full-width mode: the same code, and its full-width
        // slash or dot is as refused as the ASCII one (a code is one path segment).
        assert_eq!(short_code("Ｒｅｆｕｎｄ").unwrap(), "refund");
        for bad in ["ａ／ｂ", "．．"] {
            assert_eq!(
                short_code(bad).unwrap_err().code,
                "invalid_short_code",
                "{bad}"
            );
        }
        assert_eq!(short_code("reset-PW_2").unwrap(), "reset-pw_2");
        // Only ASCII is folded: a code is what the agent typed otherwise.
        assert_eq!(short_code("Ärger").unwrap(), "Ärger");
        assert_eq!(short_code(&"码".repeat(32)).unwrap(), "码".repeat(32));
        // Combining marks belong to the word they are in.
        for word in ["नमस्ते", "ค่ะ", "cafe\u{301}", "退款-2", "😀"] {
            assert_eq!(short_code(word).unwrap(), word);
        }
        for bad in [
            "", "a b", "/refund", "re.fund", ".", "..", "a\u{0}", "a\tb", "%2F",
        ] {
            let e = short_code(bad).unwrap_err();
            assert_eq!(
                (e.kind.status(), e.code),
                (422, "invalid_short_code"),
                "{bad:?}"
            );
        }
        // 33 characters, however few bytes or many.
        assert!(short_code(&"a".repeat(33)).is_err());
        assert!(short_code(&"码".repeat(33)).is_err());
    }

    #[test]
    fn content_is_trimmed_and_counted_in_characters() {
        assert_eq!(content("  您好！\n").unwrap(), "您好！");
        assert_eq!(content(" \n\t ").unwrap_err().code, "empty_content");
        // 2,000 Chinese characters are 6,000 bytes and allowed; one more is not.
        let most = "好".repeat(CONTENT_MAX_CHARS);
        assert_eq!(content(&format!(" {most} ")).unwrap(), most);
        let e = content(&format!("{most}好")).unwrap_err();
        assert_eq!((e.kind.status(), e.code), (422, "content_too_long"));
        assert_eq!(content("a\u{7}b").unwrap_err().code, "invalid_content");
        assert_eq!(content("第一行\r\n\t第二行").unwrap(), "第一行\r\n\t第二行");
    }

    /// The reply boxes read every canned response in one answer: at the desk's limits, and
    /// of the characters that grow most as JSON (a quote is 4 bytes once the answer is a
    /// string in Lambda's envelope; an emoji 4), the list stays under a Lambda answer's
    /// 6 MB.
    #[test]
    fn the_whole_list_fits_in_one_lambda_answer() {
        let at = crate::domain::now();
        for worst in ["\"", "😀", "\\"] {
            let items: Vec<CannedResponse> = (0..MAX_CANNED_RESPONSES)
                .map(|i| CannedResponse {
                    short_code: format!("{i:0>32}"),
                    content: worst.repeat(CONTENT_MAX_CHARS),
                    updated_at: at,
                    updated_by: "a".repeat(200),
                })
                .collect();
            let body = serde_json::to_string(&serde_json::json!({ "items": items })).unwrap();
            let envelope = serde_json::to_string(&serde_json::json!({ "body": body })).unwrap();
            assert!(
                envelope.len() < 6 * 1024 * 1024,
                "{worst:?}: {}",
                envelope.len()
            );
        }
    }

    #[test]
    fn a_new_response_is_checked_whole() {
        let at = crate::domain::now();
        let c = CannedResponse::new("Hi", " Hello! ", "alice", at).unwrap();
        assert_eq!(
            (
                c.short_code.as_str(),
                c.content.as_str(),
                c.updated_by.as_str()
            ),
            ("hi", "Hello!", "alice")
        );
        assert!(CannedResponse::new("h i", "Hello", "alice", at).is_err());
        assert!(CannedResponse::new("hi", "", "alice", at).is_err());
        assert_eq!(too_many().code, "too_many_canned_responses");
    }
}
