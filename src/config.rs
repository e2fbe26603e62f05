//! The local program's configuration, read once from the environment at start-up.

use anyhow::{anyhow, bail, Result};
use helpdesk_core::channels::ChannelsConfig;
use std::path::PathBuf;

pub struct Config {
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    pub admin_token: Option<String>,
    pub agents: Option<String>,
    pub survey_secret: Option<String>,
    pub rules_file: Option<PathBuf>,
    pub threshold: f64,
    pub supervisor_webhook_url: Option<String>,
    pub agent_webhook_url: Option<String>,
    /// How often the clock checks SLA targets and waiting tickets (`HELPDESK_SLA_CHECK_SECS`).
    pub sla_check: std::time::Duration,
    pub channels: ChannelsConfig,
    pub console: helpdesk_web::ConsoleConfig,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `HELPDESK_ADMIN_TOKEN`, the admin token chosen by the operator (none: `serve` makes one
/// and stores it). The agents' rule (`HELPDESK_AGENTS`): a token shorter than 8 characters
/// is a guess away. Read alike by `serve` and `admin-token`.
pub fn admin_token() -> Result<Option<String>> {
    match var("HELPDESK_ADMIN_TOKEN") {
        Some(t) if t.chars().count() < 8 => {
            bail!("HELPDESK_ADMIN_TOKEN needs 8 characters or more")
        }
        other => Ok(other),
    }
}

/// `HELPDESK_AUTO_REPLY_THRESHOLD`, or the default: shared by `serve` and `kb eval` so that
/// an evaluation measures the threshold the desk runs with (and the Lambda functions read
/// it the same way).
pub fn auto_reply_threshold() -> Result<f64> {
    helpdesk_core::knowledge::threshold_from_env().map_err(|e| anyhow!(e.message))
}

impl Config {
    pub fn from_env(data_dir: PathBuf) -> Result<Config> {
        let threshold = auto_reply_threshold()?;
        let webhook = |name: &str| -> Result<Option<String>> {
            match var(name) {
                Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                    bail!("{name} must be an http(s) URL, not {url:?}")
                }
                other => Ok(other),
            }
        };
        let supervisor_webhook_url = webhook("SUPERVISOR_WEBHOOK_URL")?;
        let agent_webhook_url = webhook("AGENT_WEBHOOK_URL")?;
        let sla_check = match var("HELPDESK_SLA_CHECK_SECS") {
            None => std::time::Duration::from_secs(10),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=3600).contains(&n) => std::time::Duration::from_secs(n),
                _ => {
                    bail!("HELPDESK_SLA_CHECK_SECS must be whole seconds from 1 to 3600, not {v:?}")
                }
            },
        };
        Ok(Config {
            data_dir,
            public_url: var("HELPDESK_PUBLIC_URL"),
            admin_token: admin_token()?,
            agents: var("HELPDESK_AGENTS"),
            survey_secret: var("HELPDESK_SURVEY_SECRET"),
            rules_file: var("HELPDESK_RULES").map(PathBuf::from),
            threshold,
            supervisor_webhook_url,
            agent_webhook_url,
            sla_check,
            channels: ChannelsConfig::from_env().map_err(|e| anyhow!(e))?,
            console: console(var)?,
        })
    }
}

/// The console's settings: its sign-in (`HELPDESK_CONSOLE_OIDC_*`, through `var`) and the
/// core's limits on an article ([`tickets::console_config`], as on AWS).
fn console(var: impl Fn(&str) -> Option<String>) -> Result<helpdesk_web::ConsoleConfig> {
    tickets::console_config(var).map_err(|e| anyhow!(e))
}

#[cfg(test)]
mod tests {
    use helpdesk_core::knowledge::{ANSWER_MAX_CHARS, MAX_QUESTIONS, TEXT_MAX_CHARS};
    use serde_json::json;

    /// The limits the console's editor shows are the ones the desk refuses an article by:
    /// `/console/config.json` as `serve` builds it carries the core's constants, and the web
    /// crate's own default (it cannot read the core) has not drifted from them either.
    #[test]
    fn the_console_is_told_the_cores_article_limits() {
        let core = json!({
            "questions": MAX_QUESTIONS,
            "text_chars": TEXT_MAX_CHARS,
            "answer_chars": ANSWER_MAX_CHARS,
        });
        let served: serde_json::Value =
            serde_json::from_str(&super::console(|_| None).unwrap().to_json()).unwrap();
        assert_eq!(served["article_limits"], core);
        let default = helpdesk_web::ArticleLimits::default();
        assert_eq!(
            json!({
                "questions": default.questions,
                "text_chars": default.text_chars,
                "answer_chars": default.answer_chars,
            }),
            core
        );
    }
}
