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

/// Which half of a channel a process runs, and so which secrets it holds. On AWS each
/// function may read only the secrets of its half: intake, which receives, cannot send as
/// the business, and dispatch, which sends, cannot forge a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Webhooks in: WhatsApp's app secret and verify token, Telegram's secret token.
    Receive,
    /// Messages out: WhatsApp's access token, Telegram's bot token.
    Send,
    /// Both, as the local program runs them in one process.
    Both,
}

impl Side {
    fn holds(self, name: &str) -> bool {
        let send = matches!(name, "WHATSAPP_ACCESS_TOKEN" | "TELEGRAM_BOT_TOKEN");
        match self {
            Side::Both => true,
            Side::Send => send || name == "WHATSAPP_PHONE_NUMBER_ID",
            Side::Receive => !send,
        }
    }

    /// The secrets (and the WhatsApp phone number id) this side reads.
    pub fn secrets(self) -> Vec<&'static str> {
        WHATSAPP_SECRETS
            .into_iter()
            .chain(TELEGRAM_SECRETS)
            .filter(|n| self.holds(n))
            .collect()
    }
}

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
        Self::for_side(Side::Both, get)
    }

    /// Reads the settings of one [`Side`]: a channel is on when that side's secrets are all
    /// set, and the other side's secrets are left empty, never read.
    pub fn for_side(
        side: Side,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<ChannelsConfig, String> {
        let get = &get as &dyn Fn(&str) -> Option<String>;
        let needed = |names: &[&'static str]| -> Vec<&'static str> {
            names.iter().copied().filter(|n| side.holds(n)).collect()
        };
        // The side's values by name; the other side's are empty.
        let pick = |names: &[&'static str], values: &[String], name: &str| -> String {
            names
                .iter()
                .position(|n| *n == name)
                .and_then(|i| values.get(i).cloned())
                .unwrap_or_default()
        };
        let wa_names = needed(&WHATSAPP_SECRETS);
        let tg_names = needed(&TELEGRAM_SECRETS);
        let whatsapp = match all_or_none(&wa_names, get)? {
            None => None,
            Some(v) => {
                let language = get("WHATSAPP_TEMPLATE_LANGUAGE").unwrap_or_else(|| "en".into());
                let value = |name| pick(&wa_names, &v, name);
                Some(WhatsappConfig {
                    app_secret: value("WHATSAPP_APP_SECRET"),
                    verify_token: value("WHATSAPP_VERIFY_TOKEN"),
                    access_token: value("WHATSAPP_ACCESS_TOKEN"),
                    phone_number_id: value("WHATSAPP_PHONE_NUMBER_ID"),
                    api_base: url(get, "WHATSAPP_API_BASE", "https://graph.facebook.com/v21.0")?,
                    template: template(get, "WHATSAPP_TEMPLATE_NAME", &language),
                    survey_template: template(get, "WHATSAPP_SURVEY_TEMPLATE_NAME", &language),
                })
            }
        };
        let telegram = match all_or_none(&tg_names, get)? {
            None => None,
            Some(v) => Some(TelegramConfig {
                secret_token: pick(&tg_names, &v, "TELEGRAM_SECRET_TOKEN"),
                bot_token: pick(&tg_names, &v, "TELEGRAM_BOT_TOKEN"),
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

    #[test]
    fn each_side_needs_and_keeps_only_its_own_secrets() {
        let receive = [
            ("WHATSAPP_APP_SECRET", "app"),
            ("WHATSAPP_VERIFY_TOKEN", "verify"),
            ("WHATSAPP_PHONE_NUMBER_ID", "123"),
            ("TELEGRAM_SECRET_TOKEN", "tg-secret"),
        ];
        let map: HashMap<&str, &str> = receive.into_iter().collect();
        let c =
            ChannelsConfig::for_side(Side::Receive, |n| map.get(n).map(|v| v.to_string())).unwrap();
        let (w, t) = (c.whatsapp.unwrap(), c.telegram.unwrap());
        assert_eq!(
            (w.app_secret.as_str(), w.verify_token.as_str()),
            ("app", "verify")
        );
        assert_eq!(
            (w.access_token.as_str(), w.phone_number_id.as_str()),
            ("", "123")
        );
        assert_eq!(
            (t.secret_token.as_str(), t.bot_token.as_str()),
            ("tg-secret", "")
        );

        // The sending side never asks for (so never reads) the receiving side's secrets.
        let asked = std::cell::RefCell::new(Vec::new());
        let sending = [
            ("WHATSAPP_ACCESS_TOKEN", "access"),
            ("WHATSAPP_PHONE_NUMBER_ID", "123"),
            ("TELEGRAM_BOT_TOKEN", "bot"),
        ];
        let map: HashMap<&str, &str> = sending.into_iter().collect();
        let c = ChannelsConfig::for_side(Side::Send, |n| {
            asked.borrow_mut().push(n.to_string());
            map.get(n).map(|v| v.to_string())
        })
        .unwrap();
        assert_eq!(c.whatsapp.unwrap().access_token, "access");
        assert_eq!(c.telegram.unwrap().bot_token, "bot");
        for secret in [
            "WHATSAPP_APP_SECRET",
            "WHATSAPP_VERIFY_TOKEN",
            "TELEGRAM_SECRET_TOKEN",
        ] {
            assert!(
                !asked.borrow().iter().any(|n| n == secret),
                "{secret} was read"
            );
        }
        assert_eq!(
            Side::Receive.secrets(),
            [
                "WHATSAPP_APP_SECRET",
                "WHATSAPP_VERIFY_TOKEN",
                "WHATSAPP_PHONE_NUMBER_ID",
                "TELEGRAM_SECRET_TOKEN"
            ]
        );
        // Half a side is still a mistake worth naming.
        let err = ChannelsConfig::for_side(Side::Send, |n| {
            (n == "TELEGRAM_BOT_TOKEN")
                .then(|| "b".to_string())
                .or_else(|| (n == "WHATSAPP_ACCESS_TOKEN").then(|| "a".to_string()))
        })
        .err()
        .unwrap_or_default();
        assert!(err.contains("WHATSAPP_PHONE_NUMBER_ID"), "{err}");
    }
}
