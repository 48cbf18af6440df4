//! time: wall-clock timestamps as Docker prints them (RFC 3339, UTC, nanoseconds) and the
//! human durations of `ps` ("Up 3 seconds", "Exited (0) 2 minutes ago").
//!
//! Hand-written instead of a date crate: UTC formatting is one civil-from-days conversion
//! (docs/decisions.md). Must not read time zones: everything is UTC.

use std::time::{SystemTime, UNIX_EPOCH};

use capsa_runtime::state::civil_from_days;

/// Nanoseconds since the epoch, now.
pub fn now_nanos() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// `2026-11-29T20:55:18.123456789Z`; 0 prints Docker's zero time.
pub fn rfc3339(nanos: i128) -> String {
    if nanos == 0 {
        return "0001-01-01T00:00:00Z".to_string();
    }
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let frac = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Docker's `units.HumanDuration`: "Less than a second", "3 seconds", "About a minute", ...
pub fn human_duration(nanos: i128) -> String {
    let secs = (nanos / 1_000_000_000).max(0) as i64;
    let mins = secs / 60;
    let hours = mins / 60;
    match () {
        _ if secs < 1 => "Less than a second".to_string(),
        _ if secs == 1 => "1 second".to_string(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if mins == 1 => "About a minute".to_string(),
        _ if mins < 60 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(1_000_000_000), "1970-01-01T00:00:01.000000000Z");
        assert_eq!(
            rfc3339(1_795_985_718_000_000_005),
            "2026-11-29T20:55:18.000000005Z"
        );
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5_000_000_000), "5 seconds");
        assert_eq!(human_duration(90_000_000_000), "About a minute");
    }
}
