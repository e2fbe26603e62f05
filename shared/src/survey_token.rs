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

/// The prefix of a survey button's payload.
const BUTTON_PREFIX: &str = "s:";
/// How much of the link's signature a button carries: 64 bits, which no one guesses through
/// a webhook, and short enough for Telegram's 64-byte `callback_data`.
const BUTTON_MAC_BYTES: usize = 8;
/// Telegram's limit on `callback_data`.
const BUTTON_MAX_BYTES: usize = 64;

/// The payload of rating button `rating` of a channel's native survey (a Telegram inline
/// keyboard, a WhatsApp list): `s:<ticket>:<rating>:<expiry>:<mac>`, the mac being the first
/// 8 bytes of the survey link's own signature. Telegram clients can send any
/// `callback_data`, so the payload carries this proof that the desk sent a survey for the
/// ticket; it needs no key to build (dispatch makes it from the link of the survey message),
/// only to check ([`SurveySigner::verify_button`]). The rating is not signed: the customer
/// was given all five. None when `link_token` is no survey token or the payload would not
/// fit 64 bytes; the survey then offers only its link.
pub fn button_data(link_token: &str, rating: u8) -> Option<String> {
    let (payload_b64, sig_b64) = link_token.split_once('.')?;
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload_b64).ok()?).ok()?;
    let sig = URL_SAFE_NO_PAD.decode(sig_b64).ok()?;
    let (ticket_id, expires) = payload.rsplit_once('.')?;
    let mac = URL_SAFE_NO_PAD.encode(sig.get(..BUTTON_MAC_BYTES)?);
    let data = format!("{BUTTON_PREFIX}{ticket_id}:{rating}:{expires}:{mac}");
    (data.len() <= BUTTON_MAX_BYTES).then_some(data)
}

/// Whether a button's payload claims to be a survey answer (signed or not, current or of
/// the unsigned form older surveys used): what must be verified before it is believed.
pub fn is_survey_button(data: &str) -> bool {
    data.starts_with(BUTTON_PREFIX) || data.starts_with("survey:")
}

/// The ticket and rating a survey button's payload names, without checking its signature:
/// for the router, behind intake, which let through only buttons that
/// [`SurveySigner::verify_button`] accepted.
pub fn parse_button(data: &str) -> Option<(&str, i64)> {
    let (ticket_id, rating, _, _) = split_button(data)?;
    Some((ticket_id, rating))
}

fn split_button(data: &str) -> Option<(&str, i64, &str, &str)> {
    let rest = data.strip_prefix(BUTTON_PREFIX)?;
    let mut parts = rest.rsplitn(4, ':');
    let mac = parts.next()?;
    let expires = parts.next()?;
    let rating = parts.next()?.parse().ok()?;
    let ticket_id = parts.next().filter(|t| !t.is_empty())?;
    Some((ticket_id, rating, expires, mac))
}

impl SurveySigner {
    /// The ticket and rating of a genuine, unexpired survey button's payload (see
    /// [`button_data`]); None for a forged, tampered, unsigned or expired one.
    pub fn verify_button(&self, data: &str, now: DateTime<Utc>) -> Option<(String, i64)> {
        let (ticket_id, rating, expires, mac) = split_button(data)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        if mac.len() != BUTTON_MAC_BYTES {
            return None;
        }
        let expiry: i64 = expires.parse().ok()?;
        self.mac(&format!("{ticket_id}.{expires}"))
            .verify_truncated_left(&mac)
            .ok()?;
        (now.timestamp() < expiry).then(|| (ticket_id.to_string(), rating))
    }
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
    fn survey_buttons_round_trip_fit_telegram_and_refuse_forgeries() {
        let signer = SurveySigner::new("secret");
        let now = Utc::now();
        let id = crate::domain::new_id();
        let token = signer.sign(&id, now);
        let data = button_data(&token, 5).unwrap();
        assert!(data.len() <= 64, "{} bytes", data.len());
        assert!(is_survey_button(&data));
        assert_eq!(parse_button(&data), Some((id.as_str(), 5)));
        assert_eq!(signer.verify_button(&data, now), Some((id.clone(), 5)));
        // Any of the five ratings verifies: the customer was given them all.
        let one = button_data(&token, 1).unwrap();
        assert_eq!(signer.verify_button(&one, now), Some((id.clone(), 1)));

        // Another key, another ticket, another expiry, a cut or altered mac: refused.
        assert_eq!(SurveySigner::new("other").verify_button(&data, now), None);
        let other = crate::domain::new_id();
        assert_eq!(signer.verify_button(&data.replace(&id, &other), now), None);
        let (head, mac) = data.rsplit_once(':').unwrap();
        let (front, expires) = head.rsplit_once(':').unwrap();
        let later: i64 = expires.parse::<i64>().unwrap() + 86_400;
        assert_eq!(
            signer.verify_button(&format!("{front}:{later}:{mac}"), now),
            None
        );
        assert_eq!(
            signer.verify_button(&format!("{head}:{}", &mac[..mac.len() - 1]), now),
            None
        );
        assert_eq!(
            signer.verify_button(&format!("{head}:AAAAAAAAAAA"), now),
            None
        );
        // Unsigned payloads, of the old form or made up.
        for forged in [
            format!("survey:{id}:5"),
            format!("s:{id}:5"),
            "s::5:1:AAAAAAAAAAA".to_string(),
            "s:工单:5:99999999999:AAAAAAAAAAA".to_string(),
        ] {
            assert!(is_survey_button(&forged));
            assert_eq!(signer.verify_button(&forged, now), None, "{forged}");
        }
        assert!(!is_survey_button("menu:1"));
        // Expired with the link.
        assert_eq!(
            signer.verify_button(&data, now + Duration::days(VALIDITY_DAYS + 1)),
            None
        );
        // What is not a token makes no button.
        assert_eq!(button_data("garbage", 5), None);
        assert_eq!(button_data(&signer.sign(&"工".repeat(30), now), 5), None);
    }
}
