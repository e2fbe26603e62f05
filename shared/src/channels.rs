//! The messaging channels' settings, read once from the environment at start-up. A channel
//! whose secrets are not set is off; one with only some of them set is a mistake worth
//! refusing to start over, so the message names what is missing.

use std::time::Duration;

/// An approved WhatsApp message template, the only thing WhatsApp lets a business send
/// more than 24 hours after the customer last wrote.
#[derive(Clone, PartialEq)]
pub struct Template {
    pub name: String,
    pub language: String,
}

#[derive(Clone)]
pub struct WhatsappConfig {
    /// Signs the webhook bodies (`X-Hub-Signature-256`).
    pub app_secret: String,
    /// Answers Meta's verification handshake.
    pub verify_token: String,
    pub access_token: String,
    pub phone_number_id: String,
    /// The Graph API base with its version, e.g. `https://graph.facebook.com/v21.0`.
    pub api_base: String,
    /// Sent instead of text outside the 24-hour window; its body has one variable, the text.
    pub template: Option<Template>,
    /// The survey outside the window; its URL button's variable is the survey token.
    pub survey_template: Option<Template>,
}

#[derive(Clone)]
pub struct TelegramConfig {
    /// The secret given to setWebhook, echoed in `X-Telegram-Bot-Api-Secret-Token`.
    pub secret_token: String,
    pub bot_token: String,
    /// `https://api.telegram.org` unless a test points it elsewhere.
    pub api_base: String,
    /// Messages per second to one chat (Telegram allows about 1).
    pub per_chat_per_sec: f64,
    /// Messages per second over all chats (Telegram allows about 30).
    pub overall_per_sec: f64,
}

/// The channels and the settings their senders share.
#[derive(Clone)]
pub struct ChannelsConfig {
    pub whatsapp: Option<WhatsappConfig>,
    pub telegram: Option<TelegramConfig>,
    /// How long one provider request may take before it counts as a timeout.
    pub send_timeout: Duration,
    /// How long a sender holds a message it is sending (`HELPDESK_SEND_LEASE_SECS`, 120 by
    /// default): longer than a send with its retries takes. A sender that dies mid-send
    /// keeps it that long; then the message's job sends it again.
    pub send_lease: Duration,
}

// Secrets never reach a log through `{:?}`.
impl std::fmt::Debug for ChannelsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelsConfig")
            .field("whatsapp", &self.whatsapp.is_some())
            .field("telegram", &self.telegram.is_some())
            .field("send_timeout", &self.send_timeout)
            .field("send_lease", &self.send_lease)
            .finish()
    }
}

const WHATSAPP_SECRETS: [&str; 4] = [
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
    "WHATSAPP_ACCESS_TOKEN",
    "WHATSAPP_PHONE_NUMBER_ID",
];
const TELEGRAM_SECRETS: [&str; 2] = ["TELEGRAM_SECRET_TOKEN", "TELEGRAM_BOT_TOKEN"];

/// All of `names` set, none set, or an error naming the missing ones.
fn all_or_none(
    names: &[&str],
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Vec<String>>, String> {
    let values: Vec<Option<String>> = names.iter().map(|n| get(n)).collect();
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let missing: Vec<&str> = names
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} set but {} not: set all of them to turn the channel on, or none to leave it off",
            names
                .iter()
                .zip(&values)
                .filter(|(_, v)| v.is_some())
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
            missing.join(", ")
        ));
    }
    Ok(Some(values.into_iter().flatten().collect()))
}

fn rate(get: &dyn Fn(&str) -> Option<String>, name: &str, default: f64) -> Result<f64, String> {
    match get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
            _ => Err(format!(
                "{name}={v:?} is not a positive number of messages per second"
            )),
        },
    }
}

fn url(get: &dyn Fn(&str) -> Option<String>, name: &str, default: &str) -> Result<String, String> {
    let v = get(name).unwrap_or_else(|| default.to_string());
    if !(v.starts_with("http://") || v.starts_with("https://")) {
        return Err(format!("{name} must be an http(s) URL, not {v:?}"));
    }
    Ok(v.trim_end_matches('/').to_string())
}

fn template(
    get: &dyn Fn(&str) -> Option<String>,
    name_var: &str,
    language: &str,
) -> Option<Template> {
    get(name_var).map(|name| Template {
        name,
        language: language.to_string(),
    })
}

impl ChannelsConfig {
    /// Reads the settings through `get`, which returns a variable's trimmed, non-empty value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<ChannelsConfig, String> {
        let get = &get as &dyn Fn(&str) -> Option<String>;
        let whatsapp = match all_or_none(&WHATSAPP_SECRETS, get)? {
            None => None,
            Some(v) => {
                let language = get("WHATSAPP_TEMPLATE_LANGUAGE").unwrap_or_else(|| "en".into());
                Some(WhatsappConfig {
                    app_secret: v[0].clone(),
                    verify_token: v[1].clone(),
                    access_token: v[2].clone(),
                    phone_number_id: v[3].clone(),
                    api_base: url(get, "WHATSAPP_API_BASE", "https://graph.facebook.com/v21.0")?,
                    template: template(get, "WHATSAPP_TEMPLATE_NAME", &language),
                    survey_template: template(get, "WHATSAPP_SURVEY_TEMPLATE_NAME", &language),
                })
            }
        };
        let telegram = match all_or_none(&TELEGRAM_SECRETS, get)? {
            None => None,
            Some(v) => Some(TelegramConfig {
                secret_token: v[0].clone(),
                bot_token: v[1].clone(),
                api_base: url(get, "TELEGRAM_API_BASE", "https://api.telegram.org")?,
                per_chat_per_sec: rate(get, "TELEGRAM_RATE_PER_CHAT", 1.0)?,
                overall_per_sec: rate(get, "TELEGRAM_RATE_OVERALL", 30.0)?,
            }),
        };
        let send_timeout = match get("HELPDESK_SEND_TIMEOUT_MS") {
            None => Duration::from_secs(10),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(format!(
                        "HELPDESK_SEND_TIMEOUT_MS={v:?} is not a positive number of milliseconds"
                    ))
                }
            },
        };
        let send_lease = match get("HELPDESK_SEND_LEASE_SECS") {
            None => Duration::from_secs(120),
            Some(v) => match v.parse::<u64>() {
                Ok(secs) if secs > 0 => Duration::from_secs(secs),
                _ => {
                    return Err(format!(
                        "HELPDESK_SEND_LEASE_SECS={v:?} is not a positive number of seconds"
                    ))
                }
            },
        };
        Ok(ChannelsConfig {
            whatsapp,
            telegram,
            send_timeout,
            send_lease,
        })
    }

    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<ChannelsConfig, String> {
        Self::from_lookup(|name| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        })
    }

    /// One line per channel for the start-up log: on, or off and why.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match &self.whatsapp {
            Some(w) => lines.push(format!(
                "whatsapp channel on (phone number id {}, template {})",
                w.phone_number_id,
                w.template
                    .as_ref()
                    .map_or("none: replies after 24 h will fail", |t| t.name.as_str())
            )),
            None => lines.push(format!(
                "whatsapp channel off: set {} to turn it on",
                WHATSAPP_SECRETS.join(", ")
            )),
        }
        match &self.telegram {
            Some(t) => lines.push(format!(
                "telegram channel on ({} msg/s per chat, {} msg/s overall)",
                t.per_chat_per_sec, t.overall_per_sec
            )),
            None => lines.push(format!(
                "telegram channel off: set {} to turn it on",
                TELEGRAM_SECRETS.join(", ")
            )),
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<ChannelsConfig, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ChannelsConfig::from_lookup(|n| map.get(n).cloned())
    }

    #[test]
    fn channels_without_secrets_are_off() {
        let c = config(&[]).unwrap();
        assert!(c.whatsapp.is_none() && c.telegram.is_none());
        assert!(c.describe()[1].contains("TELEGRAM_BOT_TOKEN"));
    }

    #[test]
    fn a_half_configured_channel_names_what_is_missing() {
        let err = config(&[("TELEGRAM_SECRET_TOKEN", "s")]).unwrap_err();
        assert!(err.contains("TELEGRAM_BOT_TOKEN"), "{err}");
        let err =
            config(&[("WHATSAPP_APP_SECRET", "s"), ("WHATSAPP_VERIFY_TOKEN", "v")]).unwrap_err();
        assert!(
            err.contains("WHATSAPP_ACCESS_TOKEN, WHATSAPP_PHONE_NUMBER_ID"),
            "{err}"
        );
    }

    #[test]
    fn settings_are_checked() {
        let tg = [("TELEGRAM_SECRET_TOKEN", "s"), ("TELEGRAM_BOT_TOKEN", "b")];
        let c = config(&tg).unwrap();
        let t = c.telegram.unwrap();
        assert_eq!((t.per_chat_per_sec, t.overall_per_sec), (1.0, 30.0));
        let mut bad = tg.to_vec();
        bad.push(("TELEGRAM_RATE_PER_CHAT", "-1"));
        assert!(config(&bad).unwrap_err().contains("TELEGRAM_RATE_PER_CHAT"));
        let mut bad = tg.to_vec();
        bad.push(("TELEGRAM_API_BASE", "ftp://x"));
        assert!(config(&bad).is_err());
    }
}
