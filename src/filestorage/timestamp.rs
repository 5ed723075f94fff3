//! ZODB's TimeStamp: a transaction id read as the UTC moment it was
//! committed, and a moment turned into the last tid at or before it.
//!
//! A tid's first 4 bytes count minutes since 1900-01-01 00:00 UTC in a
//! calendar of 31-day months (`((y-1900)*12 + m-1)*31 + d-1` days, then
//! hours and minutes); the last 4 are the fraction of that minute in units
//! of 60/2^32 seconds, truncated when ZODB makes one from the clock. Times
//! are shown, and compared, rounded to the nearest microsecond, as ZODB's
//! `str(TimeStamp)` shows them: `--at` with a time as `--transactions`
//! shows it includes that transaction.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

const FRACTION_UNITS: u128 = 1 << 32;
const MICROS_PER_MINUTE: u128 = 60_000_000;

/// `0x` and the tid's 16 hex digits.
pub fn tid_hex(tid: u64) -> String {
    format!("0x{tid:016x}")
}

/// The moment `tid` names, to the nearest microsecond; `None` for a tid
/// whose minutes name no real date (a 31st of a 30-day month).
pub fn tid_time(tid: u64) -> Option<NaiveDateTime> {
    let mut a = tid >> 32;
    let minute = a % 60;
    a /= 60;
    let hour = a % 24;
    a /= 24;
    let day = a % 31 + 1;
    a /= 31;
    let month = a % 12 + 1;
    let year = a / 12 + 1900;
    let micros = (u128::from(tid & 0xffff_ffff) * MICROS_PER_MINUTE * 2 + FRACTION_UNITS)
        / (FRACTION_UNITS * 2);
    let micros = u64::try_from(micros).ok()?;
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        u32::try_from(month).ok()?,
        u32::try_from(day).ok()?,
    )?;
    let start = date.and_hms_opt(u32::try_from(hour).ok()?, u32::try_from(minute).ok()?, 0)?;
    start.checked_add_signed(chrono::Duration::microseconds(i64::try_from(micros).ok()?))
}

/// `tid`'s time as `2024-03-05T14:02:59.250000Z`, or `None` as for
/// [`tid_time`].
pub fn tid_time_text(tid: u64) -> Option<String> {
    tid_time(tid).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

/// The greatest tid whose time, rounded to the microsecond, is at or
/// before `t`; `None` when `t` is before 1900, where no tid is.
pub fn last_tid_at(t: NaiveDateTime) -> Option<u64> {
    let year = u64::try_from(t.year() - 1900).ok()?;
    let days = (year * 12 + u64::from(t.month0())) * 31 + u64::from(t.day0());
    let minutes = (days * 24 + u64::from(t.hour())) * 60 + u64::from(t.minute());
    if minutes > u64::from(u32::MAX) {
        return Some(u64::MAX);
    }
    // Every fraction that rounds to t's microsecond or before: those
    // below its half past.
    // A leap second (`:60`, which chrono keeps as a 59th second of more
    // than a second) is the end of its minute.
    let micros = if t.nanosecond() >= 1_000_000_000 {
        59_999_999
    } else {
        u128::from(t.second()) * 1_000_000 + u128::from(t.nanosecond() / 1000)
    };
    let fraction = ((2 * micros + 1) * FRACTION_UNITS - 1) / (2 * MICROS_PER_MINUTE);
    let fraction = u64::try_from(fraction.min(u128::from(u32::MAX))).unwrap_or(u64::from(u32::MAX));
    Some(minutes << 32 | fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn at(s: &str) -> NaiveDateTime {
        DateTime::parse_from_rfc3339(s).unwrap().naive_utc()
    }

    /// ZODB: `TimeStamp(2024, 3, 5, 14, 2, 59.25).raw()`.
    const TID: u64 = 0x03f7_048a_fccc_cccc;

    #[test]
    fn a_tid_reads_as_zodb_writes_it() {
        // 2024-03-05 14:02: ((124*12 + 2)*31 + 4)*24*60 + 14*60 + 2.
        let minutes: u64 = (((124 * 12 + 2) * 31 + 4) * 24 + 14) * 60 + 2;
        let fraction = (59.25f64 * (1u64 << 32) as f64 / 60.0) as u64;
        assert_eq!(minutes << 32 | fraction, TID);
        assert_eq!(tid_time_text(TID).unwrap(), "2024-03-05T14:02:59.250000Z");
        assert_eq!(tid_hex(TID), "0x03f7048afccccccc");
        // A 31st of April is no date.
        let april_31: u64 = ((124 * 12 + 3) * 31 + 30) * 24 * 60;
        assert_eq!(tid_time(april_31 << 32), None);
    }

    /// The last tid shown within 2016-12-31T23:59:59.999999Z.
    fn end_of(year: i32) -> u64 {
        last_tid_at(at(&format!("{year}-12-31T23:59:59.999999Z"))).unwrap()
    }

    #[test]
    fn the_last_tid_at_a_time_includes_its_microsecond() {
        let bound = last_tid_at(at("2024-03-05T14:02:59.250000Z")).unwrap();
        assert!(bound >= TID);
        assert_eq!(tid_time_text(bound).unwrap(), "2024-03-05T14:02:59.250000Z");
        assert_eq!(
            tid_time_text(bound + 1).unwrap(),
            "2024-03-05T14:02:59.250001Z"
        );
        assert!(last_tid_at(at("2024-03-05T14:02:59.249999Z")).unwrap() < TID);
        // The last fractions of a minute round to the next one.
        let end = last_tid_at(at("2024-03-05T14:02:59.999999Z")).unwrap();
        assert_eq!(tid_time_text(end).unwrap(), "2024-03-05T14:02:59.999999Z");
        assert_eq!(
            tid_time_text(end + 1).unwrap(),
            "2024-03-05T14:03:00.000000Z"
        );
        assert_eq!(last_tid_at(at("1899-12-31T00:00:00Z")), None);
        // A leap second ends its minute, and does not wrap to its start.
        assert_eq!(last_tid_at(at("2016-12-31T23:59:60Z")), Some(end_of(2016)));
        assert_eq!(
            last_tid_at(at("2016-12-31T23:59:60.5Z")),
            Some(end_of(2016))
        );
        assert_eq!(last_tid_at(at("1900-01-01T00:00:00Z")), Some(35));
    }
}
