//! Text helpers that respect characters: customer text is often Chinese, and a cut in the
//! middle of a UTF-8 sequence would corrupt it.

use unicode_segmentation::UnicodeSegmentation;

/// The longest message text taken from a customer or an agent, in characters: Telegram's
/// limit, and far more than a chat message needs.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Checks a message text from outside: not blank (422), not over [`MAX_TEXT_CHARS`] (413).
pub fn check_text(text: &str) -> crate::Result<()> {
    if text.trim().is_empty() {
        return Err(crate::Error::unprocessable(
            "empty_text",
            "the text is empty",
        ));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(crate::Error::too_large(
            "text_too_long",
            format!("the text has {chars} characters; at most {MAX_TEXT_CHARS} are taken"),
        ));
    }
    Ok(())
}

/// The first `max` characters of `text` (not bytes), ending on a whole grapheme: a cut
/// never parts an emoji sequence (👨‍👩‍👧), a flag or a letter from its accent. Only a
/// single grapheme longer than `max` is cut inside.
pub fn truncate_chars(text: &str, max: usize) -> &str {
    let mut chars = 0;
    for (at, grapheme) in text.grapheme_indices(true) {
        chars += grapheme.chars().count();
        if chars > max {
            return match at {
                0 => by_chars(text, max),
                _ => &text[..at],
            };
        }
    }
    text
}

fn by_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((byte, _)) => &text[..byte],
        None => text,
    }
}

/// Splits `text` into pieces of at most `max` characters, each of whole graphemes (as
/// [`truncate_chars`] cuts), preferring to break after a newline or a space when one falls
/// in the last fifth of a piece.
pub fn split_chars(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut piece = truncate_chars(rest, max);
        if piece.len() < rest.len() {
            let floor = piece
                .char_indices()
                .nth(max * 4 / 5)
                .map_or(piece.len(), |(byte, _)| byte);
            if let Some(pos) = piece[floor..].rfind(['\n', ' ']) {
                piece = &piece[..floor + pos + 1];
            }
        }
        parts.push(piece.to_string());
        rest = &rest[piece.len()..];
    }
    parts
}

/// Whether a character is a CJK ideograph (or kana/hangul), the scripts written without
/// spaces between words.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF
        | 0x20000..=0x2FA1F)
}

/// `zh` when the text contains Chinese characters, `en` otherwise.
pub fn detect_locale(text: &str) -> &'static str {
    if text.chars().any(is_cjk) {
        "zh"
    } else {
        "en"
    }
}

/// The subject of a ticket: the first 100 characters of the message, on one line.
pub fn subject_of(text: &str) -> String {
    truncate_chars(text.trim(), 100)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_chinese_on_characters() {
        let text = "密码".repeat(150);
        let cut = truncate_chars(&text, 100);
        assert_eq!(cut.chars().count(), 100);
        assert!(text.starts_with(cut));
        assert_eq!(truncate_chars("短", 100), "短");
    }

    #[test]
    fn subject_is_first_hundred_characters() {
        let text: String = "我的订单一直没有到货".repeat(30);
        assert_eq!(text.chars().count(), 300);
        let subject = subject_of(&text);
        assert_eq!(subject.chars().count(), 100);
        assert_eq!(subject, text.chars().take(100).collect::<String>());
    }

    #[test]
    fn splits_on_characters_and_keeps_everything() {
        let text = "你好 ".repeat(3000);
        let parts = split_chars(&text, 4096);
        assert!(parts.iter().all(|p| p.chars().count() <= 4096));
        assert_eq!(parts.concat(), text);
        assert!(parts[0].ends_with(' '));
    }

    #[test]
    fn a_cut_never_parts_a_grapheme() {
        let family = "👨\u{200d}👩\u{200d}👧"; // 5 characters, one grapheme
        let text = format!("{}{family}后面", "好".repeat(98));
        let subject = subject_of(&text);
        assert_eq!(subject, "好".repeat(98), "the family is left out whole");
        let flag = "🇨🇳"; // 2 characters, one grapheme
        assert_eq!(truncate_chars(&format!("中{flag}"), 2), "中");
        assert_eq!(
            truncate_chars("e\u{301}", 1),
            "e",
            "alone longer than max: cut inside"
        );
        let text = format!("{}{family}", "a".repeat(8)).repeat(50);
        let parts = split_chars(&text, 10);
        assert_eq!(parts.concat(), text);
        assert!(parts.iter().all(|p| p.chars().count() <= 10));
        assert!(parts
            .iter()
            .all(|p| !p.starts_with('\u{200d}') && !p.ends_with('\u{200d}')));
        assert_eq!(split_chars("", 10), Vec::<String>::new());
    }

    #[test]
    fn detects_chinese() {
        assert_eq!(detect_locale("我忘记密码了"), "zh");
        assert_eq!(detect_locale("forgot password"), "en");
    }
}
