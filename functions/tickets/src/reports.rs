//! `/reports`: customer satisfaction and ticket volume over a period, for supervisors.

use crate::auth::Supervisor;
use crate::Deps;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use helpdesk_core::domain::hours::Tz;
use helpdesk_core::domain::TicketFilter;
use helpdesk_core::http::ApiQuery;
use helpdesk_core::report::{self, MAX_REPORT_DAYS};
use helpdesk_core::{domain, Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Deps>> {
    Router::new()
        .route("/reports/csat", get(csat))
        .route("/reports/volume", get(volume))
        .route("/reports/sla", get(sla))
}

#[derive(Debug, Deserialize)]
struct PeriodQuery {
    from: Option<String>,
    to: Option<String>,
    /// Only the tickets with this tag.
    tag: Option<String>,
}

impl PeriodQuery {
    /// The tag the report is narrowed to, checked and folded as the list's filter is.
    fn tag(&self) -> Result<Option<String>> {
        domain::tag::filter(self.tag.as_deref())
    }
}

/// A report, and the tag it is narrowed to as the desk folded it (`ＶＩＰ` is `vip`), so a
/// reader says which tickets the figures are for as the desk counted them.
#[derive(Serialize)]
struct Narrowed<T> {
    #[serde(flatten)]
    report: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
}

/// Whether a report narrowed to `tag` (none: every ticket) counts `ticket`.
fn tagged(tag: Option<&String>, ticket: &domain::Ticket) -> bool {
    tag.is_none_or(|tag| ticket.tags.contains(tag))
}

/// The years a report's dates may name. A year outside is a typo or a probe, and a period
/// near the calendar's edge (`-262143-01-01`) would overflow the arithmetic that follows.
const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// A period's end: an RFC 3339 time, or a date, which is the start of that day in the
/// team's time zone. Its year, as written, is within [`YEARS`].
fn parse_time(name: &str, value: Option<&str>, zone: Tz) -> Result<Option<DateTime<Utc>>> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let within = |year: i32| {
        if YEARS.contains(&year) {
            Ok(())
        } else {
            Err(out_of_years(name))
        }
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        within(t.year())?;
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let date = NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| {
        Error::bad_request(
            "bad_request",
            format!("{name} is not a date (2026-11-24) or RFC 3339 time"),
        )
    })?;
    within(date.year())?;
    Ok(Some(report::day_start(zone, date)))
}

fn out_of_years(name: &str) -> Error {
    Error::bad_request(
        "bad_request",
        format!(
            "{name} must fall in the years {} to {}",
            YEARS.start(),
            YEARS.end()
        ),
    )
}

async fn csat(
    State(deps): State<Arc<Deps>>,
    _supervisor: Supervisor,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> Result<Json<Narrowed<report::CsatReport>>> {
    let from = parse_time("from", q.from.as_deref(), deps.zone)?;
    let to = parse_time("to", q.to.as_deref(), deps.zone)?;
    report::check_period(from, to)?;
    let tag = q.tag()?;
    // Page by page into running totals: memory holds one page, and the scan stops at
    // CSAT_SCAN_LIMIT ratings, saying so.
    let mut tally = report::CsatTally::default();
    let (mut cursor, mut read) = (None::<String>, 0);
    loop {
        let page = deps
            .store
            .rated_tickets_page(from, to, cursor.as_deref(), report::CSAT_PAGE)
            .await?;
        read += page.items.len();
        page.items
            .iter()
            .filter(|t| tagged(tag.as_ref(), t))
            .for_each(|t| tally.add(t));
        cursor = page.next_cursor;
        match cursor {
            None => break,
            Some(_) if read >= report::CSAT_SCAN_LIMIT => {
                tally.cut_short();
                break;
            }
            Some(_) => {}
        }
    }
    Ok(Json(Narrowed {
        report: tally.report(),
        tag,
    }))
}

/// The most tickets the volume report reads; beyond it the report says it was cut short.
const VOLUME_SCAN_LIMIT: usize = 20_000;

/// Tickets opened and closed per day within [from, to) (the last 30 days by default), and
/// the median first-response time.
async fn volume(
    State(deps): State<Arc<Deps>>,
    _supervisor: Supervisor,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> Result<Json<Narrowed<report::VolumeReport>>> {
    let (from, to) = period(&q, deps.zone)?;
    let tag = q.tag()?;
    let tickets = recent_tickets(&deps, from, to, tag.clone()).await?;
    Ok(Json(Narrowed {
        report: report::volume(&tickets, from, to, deps.zone),
        tag,
    }))
}

/// SLA attainment per priority over the tickets opened within [from, to) (the last 30 days
/// by default): targets met, breached and still pending, and the median first response.
async fn sla(
    State(deps): State<Arc<Deps>>,
    _supervisor: Supervisor,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> Result<Json<Narrowed<report::SlaReport>>> {
    let (from, to) = period(&q, deps.zone)?;
    let tag = q.tag()?;
    let tickets = recent_tickets(&deps, from, to, tag.clone()).await?;
    Ok(Json(Narrowed {
        report: report::sla(&tickets, from, to),
        tag,
    }))
}

/// A report's period: [from, to), by default the last 30 of the team's days up to today,
/// at most a year.
fn period(q: &PeriodQuery, zone: Tz) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let today = domain::now().with_timezone(&zone).date_naive();
    let to = match parse_time("to", q.to.as_deref(), zone)? {
        Some(to) => to,
        None => report::day_start(
            zone,
            today
                .checked_add_days(Days::new(1))
                .ok_or_else(|| out_of_years("to"))?,
        ),
    };
    let from = match parse_time("from", q.from.as_deref(), zone)? {
        Some(from) => from,
        None => report::day_start(
            zone,
            to.with_timezone(&zone)
                .date_naive()
                .checked_sub_days(Days::new(30))
                .ok_or_else(|| out_of_years("from"))?,
        ),
    };
    if from >= to || (to - from).num_days() > MAX_REPORT_DAYS {
        return Err(Error::unprocessable(
            "invalid_period",
            format!("from must be before to, and the period at most {MAX_REPORT_DAYS} days"),
        ));
    }
    Ok((from, to))
}

/// The tickets a report over [from, to) reads (those with `tag`, when one is given), newest
/// first: a ticket opened before `from` can still have closed within the period, so reading
/// stops only at tickets opened more than a period before it (or at [`VOLUME_SCAN_LIMIT`]
/// read). The tag is kept here, not asked of the store: a rare tag would have the store
/// walk back through every ticket for a page of it, past the period and the limit.
async fn recent_tickets(
    deps: &Deps,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tag: Option<String>,
) -> Result<Vec<helpdesk_core::domain::Ticket>> {
    let filter = TicketFilter::default();
    // The period is checked ([`period`]), so this stays far from the calendar's edge.
    let stop = from
        .checked_sub_signed(to - from)
        .ok_or_else(|| out_of_years("from"))?;
    let mut tickets = Vec::new();
    let (mut cursor, mut read): (Option<String>, usize) = (None, 0);
    loop {
        let page = deps
            .store
            .list_tickets(&filter, 100, cursor.as_deref())
            .await?;
        let older = page.items.last().is_none_or(|t| t.created_at < stop);
        read += page.items.len();
        tickets.extend(page.items.into_iter().filter(|t| tagged(tag.as_ref(), t)));
        cursor = page.next_cursor;
        if older || cursor.is_none() || read >= VOLUME_SCAN_LIMIT {
            return Ok(tickets);
        }
    }
}
