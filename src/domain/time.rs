//! Time as tally counts it: whole unix seconds, UTC hours and days, and
//! the two text forms the API speaks (RFC 3339 timestamps and dates).
//! The calendar code is small enough that a date-time dependency would not
//! pay for itself.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 10000-01-01T00:00:00Z: instants stay in years 1970 to 9999, so every
/// one is written with a four-digit year, as RFC 3339 requires.
pub const END_OF_TIME: i64 = 253_402_300_800;

/// Days since 1970-01-01, UTC.
pub type Day = i64;

pub fn today() -> Day {
    day_of(SystemTime::now())
}

pub fn day_of(t: SystemTime) -> Day {
    unix(t).max(0) / 86_400
}

/// The start of the UTC hour `t` is in.
pub fn hour_start(t: SystemTime) -> SystemTime {
    let secs = unix(t).max(0);
    at(secs - secs % 3600)
}

pub fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

pub fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix.max(0).unsigned_abs())
}

/// `2026-11-23T01:00:00Z`
pub fn format_timestamp(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `2026-11-23`
pub fn format_date(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// An RFC 3339 timestamp (`2026-11-23T01:00:00Z`, `…+02:00`, fractions
/// ignored) or a date (`2026-11-23`, its midnight UTC), in years 1970 to
/// 9999, as unix seconds.
pub fn parse_instant(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month as u32)
    {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    if b.len() == 10 {
        return Some(days * 86_400);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 20 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    // A leap second (:60) is taken as the second before it.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let d = |i: usize| i64::from(digits[i] - b'0');
            let (h, m) = (d(0) * 10 + d(1), d(2) * 10 + d(3));
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let t = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset * 60;
    (0..END_OF_TIME).contains(&t).then_some(t)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date. The year is shifted
/// to start in March, so the leap day is the last day of its year and the
/// month lengths from March on follow a fixed 153-days-per-5-months cycle.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (m + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let d = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let m = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let y = year_of_era + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;
    const D: i64 = 86_400;

    #[test]
    fn hour_start_truncates_to_the_hour() {
        let t = UNIX_EPOCH + Duration::from_secs(3 * 3600 + 59 * 60 + 59);
        assert_eq!(hour_start(t), UNIX_EPOCH + Duration::from_secs(3 * 3600));
        let exact = UNIX_EPOCH + Duration::from_secs(7200);
        assert_eq!(hour_start(exact), exact);
    }

    #[test]
    fn days_count_from_1970_in_utc() {
        assert_eq!(day_of(UNIX_EPOCH + Duration::from_secs(86_399)), 0);
        assert_eq!(day_of(UNIX_EPOCH + Duration::from_secs(86_400)), 1);
        assert_eq!(day_of(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn calendar_round_trips_and_matches_humantime() {
        for days in (0..END_OF_TIME / D).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            let t = days * D + 3723;
            assert_eq!(
                format_timestamp(t),
                humantime::format_rfc3339_seconds(at(t)).to_string()
            );
        }
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_date(END_OF_TIME - 1), "9999-12-31");
    }

    #[test]
    fn instants_parse_as_rfc3339_or_dates() {
        let t = 1_795_395_600; // 2026-11-23T01:00:00Z
        assert_eq!(format_timestamp(t), "2026-11-23T01:00:00Z");
        assert_eq!(parse_instant("2026-11-23T01:00:00Z"), Some(t));
        assert_eq!(parse_instant("2026-11-23t01:00:00z"), Some(t));
        assert_eq!(parse_instant("2026-11-23 01:00:00Z"), Some(t));
        assert_eq!(parse_instant("2026-11-23T01:00:00.999Z"), Some(t));
        assert_eq!(parse_instant("2026-11-23T03:30:00+02:30"), Some(t));
        assert_eq!(parse_instant("2026-11-22T23:00:00-02:00"), Some(t));
        assert_eq!(parse_instant("2026-11-23"), Some(t - H));
        assert_eq!(parse_instant("1970-01-01"), Some(0));
        assert_eq!(parse_instant("2024-02-29"), Some(1_709_164_800));
        for bad in [
            "",
            "yesterday",
            "2026-11-23T01:00:00",
            "2026-11-23T01:00Z",
            "2026-11-23T24:00:00Z",
            "2026-13-01",
            "2026-02-29",
            "2026-11-31",
            "2026-11-23T01:00:00.Z",
            "2026-11-23T01:00:00+2:00",
            "2026-11-23T01:00:00+02:60",
            "1969-12-31",
            "10000-01-01",
            "+2026-11-23",
            "2026-1-23",
            "２０２６-11-23",
            "1970-01-01T00:00:00+00:01",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad:?}");
        }
    }
}
