//! Time as Unix seconds, read through an injectable [`Clock`] so that expiry is testable without sleeping.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// China Standard Time is UTC+8 all year (no daylight saving), so day boundaries are arithmetic.
pub const CST_OFFSET_SECONDS: i64 = 8 * 3600;
const SECONDS_PER_DAY: i64 = 86_400;

/// A point in time, whole seconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The timestamp `seconds` after the Unix epoch.
    pub const fn from_unix(seconds: i64) -> Self {
        Self(seconds)
    }

    /// Seconds since the Unix epoch.
    pub const fn unix(self) -> i64 {
        self.0
    }

    /// This instant plus `seconds` (saturating).
    pub const fn plus(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds))
    }

    /// 24:00 China Standard Time of the CST calendar day that contains `self`.
    pub const fn end_of_cst_day(self) -> Self {
        let local = self.0 + CST_OFFSET_SECONDS;
        Self((local.div_euclid(SECONDS_PER_DAY) + 1) * SECONDS_PER_DAY - CST_OFFSET_SECONDS)
    }

    /// Parses exactly the RFC 3339 form `YYYY-MM-DDThh:mm:ss` followed by `Z` or `±hh:mm`
    /// (docs/code-format.md §6): upper-case `T` and `Z`, whole seconds. Fractions (even
    /// `.000`), a space for `T` and leap seconds are rejected rather than silently adjusted.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimeParseError> {
        const SHAPE: &[u8; 19] = b"dddd-dd-ddTdd:dd:dd";
        let bytes = text.as_bytes();
        let fits = |pattern: &[u8], text: &[u8]| {
            pattern.len() == text.len()
                && pattern
                    .iter()
                    .zip(text)
                    .all(|(want, got)| if *want == b'd' { got.is_ascii_digit() } else { want == got })
        };
        let (date_time, zone) = bytes.split_at(bytes.len().min(19));
        if !fits(SHAPE, date_time) || !(zone == b"Z" || fits(b"+dd:dd", zone) || fits(b"-dd:dd", zone)) {
            return Err(TimeParseError);
        }
        let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| TimeParseError)?;
        Ok(Self(parsed.unix_timestamp()))
    }

    /// RFC 3339 in China Standard Time, e.g. `2026-11-26T23:59:59+08:00`. A time whose CST
    /// date has no four-digit year (a signed code may be issued at 9999-12-31T23:59:59Z, which
    /// is 10000-01-01 in CST) is written in UTC (`…Z`), and one beyond even that as
    /// `@<unix seconds>`, which nothing parses back: display only.
    pub fn to_rfc3339_cst(self) -> String {
        let offset = time::UtcOffset::from_whole_seconds(CST_OFFSET_SECONDS as i32).expect("UTC+8 is a valid offset");
        let Ok(utc) = OffsetDateTime::from_unix_timestamp(self.0) else { return format!("@{}", self.0) };
        utc.checked_to_offset(offset)
            .and_then(|cst| cst.format(&Rfc3339).ok())
            .or_else(|| utc.format(&Rfc3339).ok())
            .unwrap_or_else(|| format!("@{}", self.0))
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimeParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse_rfc3339(text)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_rfc3339_cst())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339_cst())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339_cst())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_rfc3339(&text).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{text}` is not an RFC 3339 time in whole seconds such as 2026-11-26T09:30:00+08:00"
            ))
        })
    }
}

/// The text was not an RFC 3339 time in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 time in whole seconds (e.g. 2026-11-26T09:30:00+08:00)")]
pub struct TimeParseError;

/// Where the current time comes from.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX))
    }
}

/// A clock that shows a set time until told otherwise; for tests and reproducible tools.
#[derive(Debug)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    /// A clock stopped at `at`.
    pub fn new(at: Timestamp) -> Self {
        Self(AtomicI64::new(at.0))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, Ordering::SeqCst);
    }

    /// Moves the clock forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn end_of_cst_day_is_midnight_beijing_time() {
        assert_eq!(t("2026-11-26T09:30:00+08:00").end_of_cst_day(), t("2026-11-27T00:00:00+08:00"));
        // 23:30 UTC on the 25th is already 07:30 on the 26th in Beijing.
        assert_eq!(t("2026-11-25T23:30:00Z").end_of_cst_day(), t("2026-11-27T00:00:00+08:00"));
        // Midnight itself starts a new day.
        assert_eq!(t("2026-11-27T00:00:00+08:00").end_of_cst_day(), t("2026-11-28T00:00:00+08:00"));
        assert_eq!(t("2026-11-26T23:59:59+08:00").end_of_cst_day(), t("2026-11-27T00:00:00+08:00"));
    }

    #[test]
    fn rfc3339_round_trips_in_cst_and_rejects_fractions() {
        let at = t("2026-11-26T01:02:03Z");
        assert_eq!(at.to_rfc3339_cst(), "2026-11-26T09:02:03+08:00");
        assert_eq!(t(&at.to_rfc3339_cst()), at);
        assert_eq!(t("2026-11-26T09:02:03+08:00"), at);
        assert_eq!(t("2026-11-26T01:02:03-00:00"), at);
        for not_exact in [
            "2026-11-26T01:02:03.5Z",
            "2026-11-26T01:02:03.000Z",
            "2026-11-26T01:02:03.0000000001Z",
            "2026-11-26 01:02:03Z",
            "2026-11-26t01:02:03Z",
            "2026-11-26T01:02:03z",
            "2026-11-26T01:02:60Z",
            "2026-11-26T01:02:03+0800",
            "2026-11-26T01:02:03",
            "2026-02-30T01:02:03Z",
            "yesterday",
            "",
        ] {
            assert!(Timestamp::parse_rfc3339(not_exact).is_err(), "{not_exact}");
        }
    }

    #[test]
    fn every_time_displays_without_panicking() {
        // 9999-12-31T23:59:59Z, the latest issue time the format allows, is 10000-01-01 in CST.
        assert_eq!(Timestamp::from_unix(253_402_300_799).to_rfc3339_cst(), "9999-12-31T23:59:59Z");
        assert_eq!(Timestamp::from_unix(253_402_300_800).to_rfc3339_cst(), "@253402300800");
        assert_eq!(Timestamp::from_unix(253_402_271_999).to_rfc3339_cst(), "9999-12-31T23:59:59+08:00");
        for unix in [i64::MIN, -1, 0, 253_402_300_799 + 86_400, i64::MAX] {
            let _ = Timestamp::from_unix(unix).to_rfc3339_cst();
        }
    }

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let clock = FixedClock::new(Timestamp::from_unix(100));
        assert_eq!(clock.now().unix(), 100);
        clock.advance(5);
        assert_eq!(clock.now().unix(), 105);
        clock.set(Timestamp::from_unix(7));
        assert_eq!(clock.now().unix(), 7);
    }
}
