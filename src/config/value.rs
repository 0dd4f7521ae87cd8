//! How a setting's text becomes a value, and back into a report: what the
//! helper's settings and the notification settings share.

use std::time::Duration;

use serde::Serializer;

/// A duration as the number of seconds it is (for JSON).
pub fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A number of seconds (fractions allowed), above 0 unless `zero_ok`.
pub fn parse_seconds(value: &str, zero_ok: bool) -> Result<Duration, String> {
    let what = if zero_ok {
        "expected a number of seconds, e.g. 5 or 2.5"
    } else {
        "expected a number of seconds above 0, e.g. 30 or 2.5"
    };
    let (int, frac) = value.split_once('.').unwrap_or((value, "0"));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return Err(what.into());
    }
    let d = value
        .parse::<f64>()
        .ok()
        .and_then(|f| Duration::try_from_secs_f64(f).ok())
        .ok_or(what)?;
    if d.is_zero() && !zero_ok {
        return Err(what.into());
    }
    Ok(d)
}
