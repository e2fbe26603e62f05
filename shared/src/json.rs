//! Reading JSON from outside: a body that is not JSON is a 400, JSON of the wrong shape a
//! 422, and both say where they went wrong.

use crate::{Error, Result};
use serde::de::DeserializeOwned;

/// Parses a JSON document: syntax first, then shape.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    if bytes.is_empty() {
        return Err(Error::bad_request(
            "invalid_json",
            "the body is empty; JSON was expected",
        ));
    }
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
