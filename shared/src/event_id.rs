//! Event ids: `"<milliseconds>-<sequence>"`, the form of a Redis stream id.
//!
//! Clients treat ids as opaque strings; the gateway compares them to replay
//! "everything after" and to drop duplicates at the seam between replay and
//! live. Ids increase in publish order across all types.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub ms: u64,
    pub seq: u64,
}

impl EventId {
    /// Before every event: the position of a client that connected while the
    /// history was still empty.
    pub const ZERO: EventId = EventId { ms: 0, seq: 0 };

    pub fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The id that follows `self` for an event published at `now_ms`: time
    /// never goes backwards, and two events in one millisecond differ in seq.
    pub fn next(self, now_ms: u64) -> Self {
        if now_ms > self.ms {
            Self::new(now_ms, 0)
        } else {
            Self::new(self.ms, self.seq + 1)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed event id {0:?}: expected <milliseconds>-<sequence>")]
pub struct ParseEventIdError(pub String);

impl FromStr for EventId {
    type Err = ParseEventIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseEventIdError(s.chars().take(64).collect());
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        let digits = |part: &str| {
            (!part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
        };
        Ok(Self::new(
            digits(ms).ok_or_else(bad)?,
            digits(seq).ok_or_else(bad)?,
        ))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_order_by_time_then_sequence() {
        let a: EventId = "1764064800123-0".parse().unwrap();
        let b: EventId = "1764064800123-7".parse().unwrap();
        let c: EventId = "1764064800124-0".parse().unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1764064800123-7");
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "", "-", "12", "12-", "-3", "a-1", "1-b", "1-2-3", " 1-2", "1-+2",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn next_is_strictly_increasing_even_when_the_clock_stalls_or_steps_back() {
        let id = EventId::new(100, 0);
        assert_eq!(id.next(100), EventId::new(100, 1));
        assert_eq!(id.next(99), EventId::new(100, 1));
        assert_eq!(id.next(101), EventId::new(101, 0));
    }
}
