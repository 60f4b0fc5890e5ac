//! The token bucket behind every rate limit (handshakes per IP, messages
//! per client): `rate` tokens a second, holding at most `burst`.

use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(burst: f64) -> Self {
        Self {
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: f64, burst: f64) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full again at `now` (an idle entry that
    /// can be forgotten without changing any answer).
    pub fn refilled_by(&self, now: Instant, rate: f64, burst: f64) -> bool {
        self.tokens + now.duration_since(self.at).as_secs_f64() * rate >= burst
    }
}

/// The burst allowed for a per-second `rate`: two seconds' worth, at least 1.
pub fn burst_for(rate: f64) -> f64 {
    (rate * 2.0).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut bucket = Bucket::full(2.0);
        assert!(bucket.take(1.0, 2.0));
        assert!(bucket.take(1.0, 2.0));
        assert!(!bucket.take(1.0, 2.0));
    }
}
