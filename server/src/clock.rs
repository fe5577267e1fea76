//! The server's one clock: wall time as a [`Timestamp`] (unix milliseconds), read in one place.
//!
//! Stored columns keep the unit their name says: `*_ms` and the job queue's `run_at`, `locked_until`
//! and `updated_at` in milliseconds, every other time column in seconds (ARCHITECTURE.md lists
//! them). Code converts at the edge with [`Timestamp::secs`] and [`Timestamp::millis`], never by
//! multiplying by hand.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A moment in wall-clock time, in unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Now, by the system clock (a clock before 1970 reads as 1970).
    pub fn now() -> Timestamp {
        let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Timestamp(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
    }

    pub const fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    pub const fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Unix milliseconds.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Unix seconds (rounded down).
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// `self + duration`, saturating.
    pub fn after(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)))
    }

    /// `self - duration`, saturating.
    pub fn before(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)))
    }
}

/// Unix seconds now: the unit of most stored times and of Kommo's and the tokens' own.
pub fn unix_secs() -> i64 {
    Timestamp::now().secs()
}

/// Unix milliseconds now: the unit of the job queue and of request pacing.
pub fn unix_millis() -> i64 {
    Timestamp::now().millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_are_one_moment() {
        let at = Timestamp::from_secs(1_700_000_000);
        assert_eq!(at.millis(), 1_700_000_000_000);
        assert_eq!(Timestamp::from_millis(1_700_000_000_999).secs(), 1_700_000_000);
        assert_eq!(at.after(Duration::from_millis(1500)).millis(), 1_700_000_001_500);
        assert_eq!(at.before(Duration::from_secs(1)).secs(), 1_699_999_999);
        assert!(Timestamp::now() > at);
    }
}
