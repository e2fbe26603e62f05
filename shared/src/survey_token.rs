//! Signed survey tokens: the link in a survey message is the customer's only credential, so
//! it names the ticket and an expiry, signed with HMAC-SHA256 under the desk's secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How long a survey link stays valid.
pub const VALIDITY_DAYS: i64 = 30;

#[derive(Clone)]
pub struct SurveySigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for SurveySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SurveySigner(..)")
    }
}

impl SurveySigner {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        SurveySigner {
            secret: secret.into(),
        }
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        // HMAC takes a key of any length.
        let mut mac = HmacSha256::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(payload.as_bytes());
        mac
    }

    /// A token for `ticket_id` that expires `VALIDITY_DAYS` after `now`.
    pub fn sign(&self, ticket_id: &str, now: DateTime<Utc>) -> String {
        let expires = (now + Duration::days(VALIDITY_DAYS)).timestamp();
        let payload = format!("{ticket_id}.{expires}");
        let sig = self.mac(&payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    /// The ticket id of a genuine, unexpired token.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<String> {
        let (payload_b64, sig_b64) = token.split_once('.')?;
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload_b64).ok()?).ok()?;
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).ok()?;
        self.mac(&payload).verify_slice(&sig).ok()?;
        let (ticket_id, expires) = payload.rsplit_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        (now.timestamp() < expires).then(|| ticket_id.to_string())
    }
}

/// The payload of a rating button in a channel's native survey (a Telegram inline
/// keyboard, a WhatsApp list). It needs no signature: only the channel's own webhook,
/// itself authenticated, brings it back, and the rating is taken only from the customer
/// whose ticket it is. Short enough for Telegram's 64-byte `callback_data`.
pub fn button_data(ticket_id: &str, rating: u8) -> String {
    format!("survey:{ticket_id}:{rating}")
}

/// The ticket and rating of a survey button's payload, if it is one.
pub fn parse_button(data: &str) -> Option<(&str, i64)> {
    let rest = data.strip_prefix("survey:")?;
    let (ticket_id, rating) = rest.rsplit_once(':')?;
    let rating = rating.parse().ok()?;
    (!ticket_id.is_empty()).then_some((ticket_id, rating))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let signer = SurveySigner::new("secret");
        let now = Utc::now();
        let token = signer.sign("t-1", now);
        assert_eq!(signer.verify(&token, now).as_deref(), Some("t-1"));
        assert_eq!(SurveySigner::new("other").verify(&token, now), None);
        let mut forged = token.clone();
        forged.replace_range(0..2, "AA");
        assert_eq!(signer.verify(&forged, now), None);
        assert_eq!(signer.verify("garbage", now), None);
        assert_eq!(signer.verify("ä.ö", now), None);
    }

    #[test]
    fn expires() {
        let signer = SurveySigner::new("secret");
        let now = Utc::now();
        let token = signer.sign("t-1", now);
        assert_eq!(
            signer.verify(&token, now + Duration::days(VALIDITY_DAYS + 1)),
            None
        );
    }

    #[test]
    fn survey_buttons_round_trip_and_fit_telegram() {
        let id = crate::domain::new_id();
        let data = button_data(&id, 5);
        assert!(data.len() <= 64);
        assert_eq!(parse_button(&data), Some((id.as_str(), 5)));
        assert_eq!(parse_button("survey::5"), None);
        assert_eq!(parse_button("menu:1"), None);
        assert_eq!(parse_button("survey:x:五"), None);
    }
}
