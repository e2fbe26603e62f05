//! Business hours and the durations that count only inside them: when the team is in, when
//! it is back, and what "30 minutes" means for an SLA target set on a Friday evening.

use crate::{Error, Result};
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
pub use chrono_tz::Tz;
use serde::Deserialize;

/// The team's week, as the rules file's `[business_hours]` gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursSpec {
    pub timezone: String,
    #[serde(default = "weekdays")]
    pub days: Vec<String>,
    pub open: String,
    pub close: String,
    #[serde(default)]
    pub holidays: Vec<String>,
}

fn weekdays() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri"]
        .map(String::from)
        .to_vec()
}

/// When the team works. Without a `[business_hours]` section it is always in.
#[derive(Debug, Clone, PartialEq)]
pub enum BusinessHours {
    Always,
    Weekly {
        tz: Tz,
        days: [bool; 7],
        open: NaiveTime,
        close: NaiveTime,
        holidays: Vec<NaiveDate>,
    },
}

fn invalid(message: String) -> Error {
    Error::bad_request(
        "invalid_rules",
        format!("rules file: business_hours: {message}"),
    )
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.trim().to_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    })
}

impl BusinessHours {
    /// The team's time zone: its days are what reports count by. UTC without
    /// `[business_hours]`.
    pub fn zone(&self) -> Tz {
        match self {
            BusinessHours::Always => Tz::UTC,
            BusinessHours::Weekly { tz, .. } => *tz,
        }
    }

    pub fn from_spec(spec: &HoursSpec) -> Result<BusinessHours> {
        let tz: Tz = spec
            .timezone
            .parse()
            .map_err(|_| invalid(format!("unknown timezone {:?}", spec.timezone)))?;
        let mut days = [false; 7];
        for d in &spec.days {
            let w = weekday(d).ok_or_else(|| invalid(format!("unknown day {d:?}")))?;
            days[w.num_days_from_monday() as usize] = true;
        }
        let time = |s: &str| {
            NaiveTime::parse_from_str(s.trim(), "%H:%M")
                .map_err(|_| invalid(format!("{s:?} is not a time like 09:00")))
        };
        let (open, close) = (time(&spec.open)?, time(&spec.close)?);
        if open >= close {
            return Err(invalid("open must be before close".into()));
        }
        if !days.contains(&true) {
            return Err(invalid("days names no day".into()));
        }
        let holidays = spec
            .holidays
            .iter()
            .map(|h| {
                NaiveDate::parse_from_str(h.trim(), "%Y-%m-%d")
                    .map_err(|_| invalid(format!("{h:?} is not a date like 2026-10-01")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BusinessHours::Weekly {
            tz,
            days,
            open,
            close,
            holidays,
        })
    }

    /// The length of a working day: what a `d` of an SLA target counts inside business hours.
    pub fn day_length(&self) -> Duration {
        match self {
            BusinessHours::Always => Duration::days(1),
            BusinessHours::Weekly { open, close, .. } => *close - *open,
        }
    }

    /// The working span of `date`, in UTC, if the team works that day.
    fn span(&self, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let BusinessHours::Weekly {
            tz,
            days,
            open,
            close,
            holidays,
        } = self
        else {
            return None;
        };
        if !days[date.weekday().num_days_from_monday() as usize] || holidays.contains(&date) {
            return None;
        }
        // A time that a clock change skips is taken an hour later; a repeated one, the first.
        let at = |t: NaiveTime| {
            let local = date.and_time(t);
            tz.from_local_datetime(&local)
                .earliest()
                .or_else(|| {
                    tz.from_local_datetime(&(local + Duration::hours(1)))
                        .earliest()
                })
                .map(|d| d.with_timezone(&Utc))
        };
        Some((at(*open)?, at(*close)?))
    }

    fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        match self {
            BusinessHours::Always => t.date_naive(),
            BusinessHours::Weekly { tz, .. } => t.with_timezone(tz).date_naive(),
        }
    }

    /// Whether the team is in at `t`.
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        match self {
            BusinessHours::Always => true,
            _ => self
                .span(self.local_date(t))
                .is_some_and(|(open, close)| open <= t && t < close),
        }
    }

    /// The first moment from `t` on when the team is in: `t` itself when it is.
    pub fn next_open(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        if self.is_open(t) {
            return t;
        }
        let mut date = self.local_date(t);
        // A year of days off at most (a list of holidays cannot close every day for longer).
        for _ in 0..400 {
            if let Some((open, _)) = self.span(date) {
                if open > t {
                    return open;
                }
            }
            date = date.succ_opt().unwrap_or(date);
        }
        t
    }

    /// `t` plus `d` of working time: the moment an SLA target set at `t` falls due.
    pub fn add(&self, t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
        if *self == BusinessHours::Always {
            return t + d;
        }
        let mut left = d;
        let mut at = t;
        let mut date = self.local_date(t);
        for _ in 0..(400 + d.num_days().max(0) * 2) {
            if let Some((open, close)) = self.span(date) {
                let from = at.max(open);
                if from < close {
                    if from + left <= close {
                        return from + left;
                    }
                    left -= close - from;
                    at = close;
                }
            }
            date = match date.succ_opt() {
                Some(next) => next,
                None => break,
            };
        }
        at + left
    }

    /// The team's next opening in its own time zone, for the customer: e.g. (Mon, 09:00).
    pub fn local_open(&self, t: DateTime<Utc>) -> Option<(Weekday, NaiveTime)> {
        match self {
            BusinessHours::Always => None,
            BusinessHours::Weekly { tz, .. } => {
                let local = self.next_open(t).with_timezone(tz);
                Some((local.weekday(), local.time()))
            }
        }
    }
}

/// A duration as the rules file writes it: a whole number and `s`, `m`, `h` or `d`.
/// A `d` is a day of working time when business hours are set.
pub fn parse_duration(text: &str, hours: &BusinessHours) -> Result<Duration> {
    let text = text.trim();
    let bad = || {
        Error::bad_request(
            "invalid_rules",
            format!("rules file: {text:?} is not a duration like 30m, 4h or 1d"),
        )
    };
    let unit = text.chars().last().ok_or_else(bad)?;
    let number: i64 = text[..text.len() - unit.len_utf8()]
        .trim()
        .parse()
        .map_err(|_| bad())?;
    if number <= 0 || number > 10_000 {
        return Err(bad());
    }
    Ok(match unit {
        's' => Duration::seconds(number),
        'm' => Duration::minutes(number),
        'h' => Duration::hours(number),
        'd' => hours.day_length() * number as i32,
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai() -> BusinessHours {
        BusinessHours::from_spec(&HoursSpec {
            timezone: "Asia/Shanghai".into(),
            days: weekdays(),
            open: "09:00".into(),
            close: "18:00".into(),
            holidays: vec!["2026-10-01".into(), "2026-10-02".into()],
        })
        .unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn open_within_the_day_and_closed_at_weekends_and_holidays() {
        let h = shanghai();
        // Friday 2026-11-27 10:00 in Shanghai is 02:00 UTC.
        assert!(h.is_open(utc("2026-11-27T02:00:00Z")));
        assert!(!h.is_open(utc("2026-11-27T10:00:00Z")), "18:00 is closed");
        assert!(!h.is_open(utc("2026-11-28T02:00:00Z")), "Saturday");
        assert!(!h.is_open(utc("2026-10-01T02:00:00Z")), "a holiday");
        assert!(BusinessHours::Always.is_open(utc("2026-11-28T02:00:00Z")));
    }

    #[test]
    fn the_next_opening_skips_the_weekend() {
        let h = shanghai();
        let friday_evening = utc("2026-11-27T11:00:00Z");
        assert_eq!(h.next_open(friday_evening), utc("2026-11-30T01:00:00Z"));
        assert_eq!(
            h.local_open(friday_evening),
            Some((Weekday::Mon, NaiveTime::from_hms_opt(9, 0, 0).unwrap()))
        );
        // Before opening on a working day: the same morning.
        assert_eq!(
            h.next_open(utc("2026-11-26T23:00:00Z")),
            utc("2026-11-27T01:00:00Z")
        );
        // The National Day holidays (Thursday and Friday) push it to Monday 5 October.
        assert_eq!(
            h.next_open(utc("2026-09-30T12:00:00Z")),
            utc("2026-10-05T01:00:00Z")
        );
    }

    #[test]
    fn durations_count_only_working_time() {
        let h = shanghai();
        let thirty = Duration::minutes(30);
        // 17:50 on Friday + 30 minutes of work = Monday 09:20.
        assert_eq!(
            h.add(utc("2026-11-27T09:50:00Z"), thirty),
            utc("2026-11-30T01:20:00Z")
        );
        // Saturday: the clock starts on Monday morning.
        assert_eq!(
            h.add(utc("2026-11-28T05:00:00Z"), Duration::hours(4)),
            utc("2026-11-30T05:00:00Z")
        );
        assert_eq!(
            BusinessHours::Always.add(utc("2026-11-28T05:00:00Z"), thirty),
            utc("2026-11-28T05:30:00Z")
        );
        // A day of work is 9 hours here.
        assert_eq!(parse_duration("1d", &h).unwrap(), Duration::hours(9));
        assert_eq!(
            parse_duration("1d", &BusinessHours::Always).unwrap(),
            Duration::hours(24)
        );
        assert_eq!(parse_duration("20s", &h).unwrap(), Duration::seconds(20));
        for bad in ["", "m", "30", "-5m", "5w", "三十分钟", "5分"] {
            assert_eq!(
                parse_duration(bad, &h).unwrap_err().code,
                "invalid_rules",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_bad_spec_is_a_clear_error() {
        let spec = |tz: &str, open: &str, close: &str, day: &str| HoursSpec {
            timezone: tz.into(),
            days: vec![day.into()],
            open: open.into(),
            close: close.into(),
            holidays: vec![],
        };
        for s in [
            spec("Mars/Olympus", "09:00", "18:00", "mon"),
            spec("UTC", "18:00", "09:00", "mon"),
            spec("UTC", "9am", "18:00", "mon"),
            spec("UTC", "09:00", "18:00", "someday"),
        ] {
            let e = BusinessHours::from_spec(&s).unwrap_err();
            assert_eq!((e.code, e.kind.status()), ("invalid_rules", 400));
        }
    }
}
