//! Tickets' tags: words agents put on tickets ("refund", "bug", "退款") to find them again, as
//! Zendesk's tags and Chatwoot's labels. Any agent sets them; a list filters by one. The
//! rules on a tag live here, for both stores and the API.

use crate::{Error, Result};

/// The longest tag, in characters.
pub const TAG_MAX_CHARS: usize = 40;
/// How many tags one ticket carries at most.
pub const MAX_TAGS: usize = 20;

/// The tag `raw` names, checked: spaces around it and one leading `#` are ignored, and the
/// rest is a [`super::word`] of 1 to [`TAG_MAX_CHARS`] characters (`Refund` and `#refund`
/// are the tag `refund`). Else 422 `invalid_tag`.
pub fn tag(raw: &str) -> Result<String> {
    let trimmed = raw.trim();
    let bare = trimmed.strip_prefix(['#', '＃']).unwrap_or(trimmed);
    super::word(bare, TAG_MAX_CHARS).ok_or_else(|| {
        Error::unprocessable(
            "invalid_tag",
            format!(
                "tag {} is not allowed: a tag is 1 to {TAG_MAX_CHARS} characters, with no \
                 space and no punctuation but - and _",
                super::quoted(raw)
            ),
        )
    })
}

/// The tag a query filters by (a list's, a count's, a report's `tag`): none when it is
/// absent or blank, else [`tag`].
pub fn filter(raw: Option<&str>) -> Result<Option<String>> {
    raw.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(tag)
        .transpose()
}

/// A ticket's tags from what an agent sent: each checked ([`tag`]), each kept once in the
/// order first given, at most [`MAX_TAGS`] (else 422 `too_many_tags`, as soon as one more
/// is met: a long list costs no more than the limit).
pub fn tags(raw: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for r in raw {
        let t = tag(r)?;
        if out.contains(&t) {
            continue;
        }
        if out.len() == MAX_TAGS {
            return Err(Error::unprocessable(
                "too_many_tags",
                format!("a ticket carries at most {MAX_TAGS} tags; this change gives it more"),
            ));
        }
        out.push(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<String>) -> &'static str {
        r.expect_err("refused").code
    }

    #[test]
    fn a_tag_is_one_word_of_any_script_folded() {
        assert_eq!(tag("Refund").unwrap(), "refund");
        assert_eq!(tag("  #VIP ").unwrap(), "vip");
        assert_eq!(tag("＃退款").unwrap(), "退款");
        // A Chinese input method's full-width mode types the same tag.
        assert_eq!(tag("ＶＩＰ").unwrap(), "vip");
        assert_eq!(tag("＃Ｒｅｆｕｎｄ－２０２６").unwrap(), "refund-2026");
        assert_eq!(
            code(tag("退款！")),
            "invalid_tag",
            "full-width punctuation is punctuation"
        );
        assert_eq!(tag("payment-failed_2").unwrap(), "payment-failed_2");
        assert_eq!(
            tag(&"标".repeat(TAG_MAX_CHARS)).unwrap(),
            "标".repeat(TAG_MAX_CHARS)
        );
        for bad in [
            "",
            " ",
            "#",
            "two words",
            "a/b",
            "a.b",
            "tab\there",
            "new\nline",
            "vip\u{200B}",
            "\u{202E}vip",
            "\u{FEFF}vip",
            "soft\u{AD}hyphen",
        ] {
            assert_eq!(code(tag(bad)), "invalid_tag", "{bad:?}");
        }
        assert_eq!(
            code(tag(&"标".repeat(TAG_MAX_CHARS + 1))),
            "invalid_tag",
            "cut on characters: 41 Chinese characters are too many"
        );
        let long = "x".repeat(500);
        let message = tag(&long).expect_err("too long").message;
        assert!(
            message.chars().count() < 200,
            "the message quotes a cut: {message}"
        );
    }

    #[test]
    fn a_folded_tickets_tags_join_the_kept_ones_within_the_limit() {
        use crate::domain::{now, Channel, NewTicket, Priority, Skill, Ticket, TicketPatch};
        let tagged = |tags: Vec<String>| {
            let mut t = Ticket::open(
                NewTicket {
                    customer_id: "c".into(),
                    channel: Channel::Webchat,
                    subject: None,
                    description: "x".into(),
                    priority: Priority::Normal,
                    skill: Skill::General,
                },
                now(),
            );
            t.apply(
                &TicketPatch {
                    tags: Some(tags),
                    ..Default::default()
                },
                now(),
            )
            .unwrap();
            t
        };
        let mut kept = tagged(vec!["a".into(), "b".into()]);
        let folded = tagged(vec!["b".into(), "退款".into()]);
        let version = kept.version;
        assert!(kept.absorb_tags(&folded, now()));
        assert_eq!(kept.tags, ["a", "b", "退款"]);
        assert_eq!(kept.version, version + 1);
        assert!(
            !kept.absorb_tags(&folded, now()),
            "a repeat changes nothing"
        );
        let mut full = tagged((0..MAX_TAGS).map(|i| format!("t{i}")).collect());
        assert!(!full.absorb_tags(&folded, now()), "never past the limit");
        assert_eq!(full.tags.len(), MAX_TAGS);
    }

    #[test]
    fn a_tickets_tags_are_kept_once_in_their_order_and_counted() {
        let given: Vec<String> = ["Bug", "退款", "bug", "#BUG", "vip"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(tags(&given).unwrap(), ["bug", "退款", "vip"]);
        assert_eq!(tags(&[]).unwrap(), Vec::<String>::new());
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(tags(&many).expect_err("21 tags").code, "too_many_tags");
        assert_eq!(filter(None).unwrap(), None);
        assert_eq!(filter(Some("  ")).unwrap(), None);
        assert_eq!(filter(Some(" #VIP ")).unwrap().as_deref(), Some("vip"));
        assert_eq!(filter(Some("a b")).unwrap_err().code, "invalid_tag");
        let repeated: Vec<String> = (0..100).map(|_| "same".to_string()).collect();
        assert_eq!(
            tags(&repeated).unwrap(),
            ["same"],
            "a repeat is not counted twice"
        );
    }
}
