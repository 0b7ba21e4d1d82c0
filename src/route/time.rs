//! Time: the injectable clock and a strict RFC 3339 parser.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time, injectable so that ramps run instantly in tests.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_unix_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// A clock that tests set by hand.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock showing `unix_ms`.
    #[must_use]
    pub fn new(unix_ms: i64) -> Self {
        ManualClock(std::sync::atomic::AtomicI64::new(unix_ms))
    }
    /// Sets the time.
    pub fn set(&self, unix_ms: i64) {
        self.0.store(unix_ms, std::sync::atomic::Ordering::Release);
    }
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now_unix_ms(&self) -> i64 {
        (**self).now_unix_ms()
    }
}

/// Parses an RFC 3339 date-time (`2026-12-01T09:00:00Z`, `2026-12-01T09:00:00.250+02:00`) into
/// milliseconds since the Unix epoch. A time zone (`Z` or an offset) is required; `t` and a
/// space are accepted as the separator, as RFC 3339 allows.
///
/// # Errors
/// A message saying which part is malformed.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, String> {
    let b = text.as_bytes();
    let bad = |what: &str| {
        format!("`{text}` is not an RFC 3339 time ({what}); write e.g. 2026-12-01T09:00:00Z")
    };
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(range)?;
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        s.iter()
            .try_fold(0i64, |acc, d| Some(acc * 10 + i64::from(d - b'0')))
    };
    if b.len() == 19 {
        // `2026-01-02T00:00:00`: a date and time without an offset.
        return Err(bad("a time zone, `Z` or `+hh:mm`, is required"));
    }
    if b.len() < 20 {
        return Err(bad("too short"));
    }
    let year = num(0..4).ok_or_else(|| bad("year"))?;
    let month = num(5..7).ok_or_else(|| bad("month"))?;
    let day = num(8..10).ok_or_else(|| bad("day"))?;
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad("separators"));
    }
    let hour = num(11..13).ok_or_else(|| bad("hour"))?;
    let minute = num(14..16).ok_or_else(|| bad("minute"))?;
    let second = num(17..19).ok_or_else(|| bad("second"))?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad("date out of range"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("time out of range"));
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err(bad("fraction"));
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3).ok_or_else(|| bad("offset"))?;
            let om = num(i + 4..i + 6).ok_or_else(|| bad("offset"))?;
            if oh > 23 || om > 59 {
                return Err(bad("offset out of range"));
            }
            let m = oh * 60 + om;
            if sign == b'+' { m } else { -m }
        }
        _ => return Err(bad("a time zone, `Z` or `+hh:mm`, is required")),
    };
    let days = days_from_civil(year, month, day);
    let second = second.min(59); // a leap second counts as the last second of its minute
    Ok(((days * 24 + hour) * 60 + minute - offset_minutes) * 60_000 + second * 1000 + millis)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's civil algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339_ms("2000-03-01T00:00:00Z"),
            Ok(951_868_800_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-01T09:00:00.250+02:00"),
            Ok(1_796_108_400_250)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-01 07:00:00.25Z"),
            Ok(1_796_108_400_250)
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-12-01T00:00:00",
            "2026-12-01T25:00:00Z",
            "yesterday",
            "2026-12-01T00:00:00+0200",
            "2026-12-01T00:00:00.Z",
        ] {
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad}");
        }
    }
}
