//! The texts the desk writes to customers, in the customer's language.

/// The locale to write in: the language of the customer's text, or, for text with no
/// letters (an emoji, a number), the customer's own locale.
pub fn locale_for(customer_locale: Option<&str>, text: &str) -> &'static str {
    if text.chars().any(crate::text::is_cjk) {
        return "zh";
    }
    if text.chars().any(char::is_alphabetic) {
        return "en";
    }
    match customer_locale {
        Some(l) if l.to_lowercase().starts_with("zh") => "zh",
        _ => "en",
    }
}

/// Tells the customer a person will take over.
pub fn handoff(locale: &str, ticket_id: &str) -> String {
    let r = crate::domain::ticket_ref(ticket_id);
    if locale == "zh" {
        format!("您的问题已转交人工客服，我们会尽快在这里回复您。工单号：{r}")
    } else {
        format!("Thanks, we've passed your question to our support team and will reply here soon. Ticket: {r}")
    }
}

/// Tells a customer who wrote out of hours when the team will reply: the team's next
/// opening, in the team's time zone.
pub fn after_hours(locale: &str, day: chrono::Weekday, time: chrono::NaiveTime) -> String {
    use chrono::Weekday::*;
    let clock = time.format("%-H:%M");
    if locale == "zh" {
        let day = match day {
            Mon => "周一",
            Tue => "周二",
            Wed => "周三",
            Thu => "周四",
            Fri => "周五",
            Sat => "周六",
            Sun => "周日",
        };
        format!("我们已下班，将于{day} {clock} 后回复您。")
    } else {
        let day = match day {
            Mon => "Monday",
            Tue => "Tuesday",
            Wed => "Wednesday",
            Thu => "Thursday",
            Fri => "Friday",
            Sat => "Saturday",
            Sun => "Sunday",
        };
        format!("Our team is away now. We'll reply after {clock} on {day}.")
    }
}

/// The survey invitation with its link.
pub fn survey(locale: &str, link: &str) -> String {
    if locale == "zh" {
        format!("您的工单已关闭。请为本次服务打分（1-5 分）：{link}")
    } else {
        format!("Your ticket is closed. How did we do? Rate us from 1 to 5: {link}")
    }
}

/// The short notice shown when a customer presses a button.
pub fn button_thanks(locale: &str) -> &'static str {
    if locale == "zh" {
        "谢谢！"
    } else {
        "Thank you!"
    }
}

/// An auto-reply: the article's answer, with "did you mean" choices when a second article
/// was nearly as likely.
pub fn auto_reply(locale: &str, answer: &str, alternatives: &[&str]) -> String {
    if alternatives.is_empty() {
        return answer.to_string();
    }
    let list = alternatives
        .iter()
        .map(|t| format!("• {t}"))
        .collect::<Vec<_>>()
        .join("\n");
    if locale == "zh" {
        format!("{answer}\n\n{DID_YOU_MEAN_ZH}\n{list}")
    } else {
        format!("{answer}\n\n{DID_YOU_MEAN_EN}\n{list}")
    }
}

const DID_YOU_MEAN_EN: &str = "Did you mean:";
const DID_YOU_MEAN_ZH: &str = "您是不是想问：";

/// The parts of an [`auto_reply`] text: the answer and the "did you mean" titles, for a
/// channel that shows the choices as buttons. A text with no choices is all answer.
pub fn split_auto_reply(text: &str) -> (&str, Vec<&str>) {
    for heading in [DID_YOU_MEAN_EN, DID_YOU_MEAN_ZH] {
        if let Some((answer, list)) = text.rsplit_once(&format!("\n\n{heading}\n")) {
            let choices: Vec<&str> = list
                .lines()
                .filter_map(|l| l.strip_prefix("• "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect();
            if !choices.is_empty() {
                return (answer, choices);
            }
        }
    }
    (text, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_follow_the_language() {
        assert!(handoff("zh", "0190-abcd-1234").contains("工单号：ABCD1234"));
        assert!(handoff("en", "x").starts_with("Thanks"));
        assert!(survey("zh", "http://l").ends_with("http://l"));
        assert_eq!(locale_for(None, "你好"), "zh");
        assert_eq!(locale_for(Some("zh-CN"), "123"), "zh");
        assert_eq!(locale_for(Some("en"), "hello"), "en");
    }

    #[test]
    fn auto_reply_choices_read_back_in_both_languages() {
        for locale in ["en", "zh"] {
            let text = auto_reply(locale, "答案", &["退款政策", "Shipping times"]);
            assert_eq!(
                split_auto_reply(&text),
                ("答案", vec!["退款政策", "Shipping times"])
            );
        }
        let plain = auto_reply("en", "Just the answer.", &[]);
        assert_eq!(split_auto_reply(&plain), ("Just the answer.", vec![]));
    }
}
