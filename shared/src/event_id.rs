//! Positions in the history: what an event's `id` is, and what a client
//! resumes from.
//!
//! A [`Position`] is `"<epoch>:<milliseconds>-<sequence>"`: the [`Epoch`]
//! names one life of the history (a new one starts whenever the history is
//! created anew: first publish, Redis restarted empty, the stream deleted),
//! and the [`EventId`] is the Redis stream id inside it. Clients treat
//! positions as opaque strings; the gateway compares ids only within one
//! epoch, so a position from an earlier history is recognised as foreign
//! instead of being mistaken for a place in the current one. Ids increase in
//! publish order across all types.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// One life of the history: 8 lowercase hex digits, drawn at random by
/// whoever creates the history (the publish script, or a node that finds
/// none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(pub u32);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed history epoch {0:?}: expected 8 lowercase hex digits")]
pub struct ParseEpochError(pub String);

impl FromStr for Epoch {
    type Err = ParseEpochError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 8 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            u32::from_str_radix(s, 16)
                .map(Self)
                .map_err(|_| ParseEpochError(s.to_owned()))
        } else {
            Err(ParseEpochError(s.chars().take(64).collect()))
        }
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Where an event stands in the history: `"<epoch>:<ms>-<seq>"`.
///
/// Not `Ord`: positions of different epochs do not compare. Compare `id`s
/// after checking the epochs are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    pub epoch: Epoch,
    pub id: EventId,
}

impl Position {
    pub fn new(epoch: Epoch, id: EventId) -> Self {
        Self { epoch, id }
    }

    /// True when both are of one history and `self` comes after `other`.
    pub fn is_after(&self, other: &Position) -> bool {
        self.epoch == other.epoch && self.id > other.id
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed position {0:?}: expected <epoch>:<milliseconds>-<sequence>")]
pub struct ParsePositionError(pub String);

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParsePositionError(s.chars().take(64).collect());
        let (epoch, id) = s.split_once(':').ok_or_else(bad)?;
        Ok(Self::new(
            epoch.parse().map_err(|_| bad())?,
            id.parse().map_err(|_| bad())?,
        ))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_compare_only_within_one_epoch() {
        let a: Position = "0a1b2c3d:1764064800123-0".parse().unwrap();
        assert_eq!(a.epoch, Epoch(0x0a1b2c3d));
        assert_eq!(a.to_string(), "0a1b2c3d:1764064800123-0");
        let b = Position::new(a.epoch, EventId::new(1764064800123, 1));
        assert!(b.is_after(&a) && !a.is_after(&b));
        let other = Position::new(Epoch(1), EventId::new(u64::MAX, 0));
        assert!(
            !other.is_after(&a),
            "another history's position is not later"
        );
        for bad in [
            "1764064800123-0",
            "0A1B2C3D:1-0",
            "0a1b2c3:1-0",
            "0a1b2c3d1:1-0",
            "0a1b2c3d:1",
            ":1-0",
            "0a1b2c3d:1-0:1",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
    }

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
