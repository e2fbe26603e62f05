//! Reading JSON from outside: a body that is not JSON, or whose object names a key twice,
//! is a 400, JSON of the wrong shape a 422, and each says where it went wrong. A provider's
//! signed webhook is the exception to the repeated key (see [`parse_from_provider`]).

use crate::{Error, Result};
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;

/// Parses a JSON document: syntax first (an object may name each key once), then shape.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    if bytes.is_empty() {
        return Err(Error::bad_request(
            "invalid_json",
            "the body is empty; JSON was expected",
        ));
    }
    serde_json::from_slice::<NoDuplicateKeys>(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "the body names a key twice",
            _ => "the body is not valid JSON",
        };
        Error::bad_request("invalid_json", format!("{what}: {e}"))
    })?;
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    serde_json::from_value(value).map_err(|e| {
        Error::unprocessable(
            "invalid_body",
            format!("the body does not fit this route: {e}"),
        )
    })
}

/// Parses a provider's webhook body, whose signature or secret was checked first. It is not
/// JSON: 400, as [`parse`]. But an object that names a key twice is taken, the last one
/// winning, and logged: a 400 there would not reach whoever wrote the API call, as it does for
/// our own clients, but make the provider retry the same delivery until it gives up, and lose
/// the customer's message it carries.
pub fn parse_from_provider(bytes: &[u8]) -> Result<serde_json::Value> {
    let value = serde_json::from_slice(bytes).map_err(|e| {
        Error::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    if let Err(e) = serde_json::from_slice::<NoDuplicateKeys>(bytes) {
        tracing::warn!("a provider's webhook names a key twice; taken with the last one: {e}");
    }
    Ok(value)
}

/// A JSON document walked only to find an object that names a key twice. Parsed straight to
/// a `Value` (or a struct), the last of the two would win silently: `{"rating": 5,
/// "rating": 1}` would record 1, while the form post refuses a repeated `rating`. I-JSON
/// (RFC 7493) makes such a document invalid, and so does this desk.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicateKeys)
    }
}

/// The longest stretch of a repeated key the error repeats back.
const KEY_SHOWN_CHARS: usize = 40;

impl<'de> Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self, E> {
        Ok(self)
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self, E> {
        Ok(self)
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<Self, E> {
        Ok(self)
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self, E> {
        Ok(self)
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<Self, E> {
        Ok(self)
    }

    fn visit_unit<E>(self) -> std::result::Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format_args!(
                    "{:?} appears more than once in one object",
                    crate::text::truncate_chars(&key, KEY_SHOWN_CHARS)
                )));
            }
            map.next_value::<NoDuplicateKeys>()?;
            seen.insert(key);
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[derive(Debug, Deserialize)]
    struct Rating {
        rating: u8,
    }

    #[test]
    fn a_key_named_twice_is_refused_at_any_depth() {
        for body in [
            r#"{"rating": 5, "rating": 1}"#,
            r#"{"a": [{"x": 1}, {"x": 1, "y": 2, "x": 3}], "rating": 5}"#,
            r#"{"rating": 5, "评分": 1, "评分": 2}"#,
        ] {
            let e = parse::<serde_json::Value>(body.as_bytes()).unwrap_err();
            assert_eq!((e.kind, e.code), (ErrorKind::BadRequest, "invalid_json"));
            assert!(e.message.contains("twice"), "{}", e.message);
        }
        let e = parse::<Rating>(br#"{"rating": 5, "rating": 1}"#).unwrap_err();
        assert!(e.message.contains("\"rating\""), "{}", e.message);
    }

    #[test]
    fn the_same_key_in_different_objects_and_plain_documents_pass() {
        let v: serde_json::Value =
            parse(br#"{"x": {"k": 1}, "y": {"k": 2}, "z": [{"k": 3}, {"k": 4}], "n": null}"#)
                .unwrap();
        assert_eq!(v["z"][1]["k"], 4);
        assert_eq!(parse::<Rating>(br#"{"rating": 4}"#).unwrap().rating, 4);
        assert_eq!(
            parse::<Vec<f64>>(b"[1.5, -2, 3]").unwrap(),
            vec![1.5, -2.0, 3.0]
        );
    }

    #[test]
    fn a_long_repeated_key_is_shown_cut_on_characters() {
        let key = "键".repeat(1000);
        let body = format!("{{\"{key}\": 1, \"{key}\": 2}}");
        let e = parse::<serde_json::Value>(body.as_bytes()).unwrap_err();
        assert!(e.message.contains(&"键".repeat(KEY_SHOWN_CHARS)));
        assert!(!e.message.contains(&"键".repeat(KEY_SHOWN_CHARS + 1)));
    }

    #[test]
    fn a_providers_repeated_key_is_taken_with_the_last_one_and_broken_json_is_not() {
        let v = parse_from_provider(br#"{"update_id": 1, "message": {"text": "a", "text": "b"}}"#)
            .unwrap();
        assert_eq!(v["message"]["text"], "b");
        for body in [&b""[..], b"{\"update_id\": ", b"not json"] {
            let e = parse_from_provider(body).unwrap_err();
            assert_eq!((e.kind, e.code), (ErrorKind::BadRequest, "invalid_json"));
        }
    }

    #[test]
    fn syntax_and_shape_keep_their_answers() {
        let e = parse::<Rating>(b"{\"rating\": ").unwrap_err();
        assert_eq!(e.code, "invalid_json");
        assert!(e.message.starts_with("the body is not valid JSON"));
        let e = parse::<Rating>(br#"{"rating": "five"}"#).unwrap_err();
        assert_eq!((e.kind, e.code), (ErrorKind::Unprocessable, "invalid_body"));
    }
}
