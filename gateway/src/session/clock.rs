//! A live session's timing: when to ping the client, when its pong is
//! overdue, when its token expires — one timer for all three, so an idle
//! connection holds one `Sleep` rather than three.

use std::time::Duration;

use tokio::time::Instant;

/// A live session's one timer: when to ping, when a ping's pong is
/// overdue, when the token expires. Any message from the client counts as
/// the pong (it is alive).
#[derive(Debug)]
pub struct Clock {
    ping_interval: Duration,
    pong_timeout: Duration,
    next_ping: Instant,
    /// Set while a ping waits for its answer.
    pong_due: Option<Instant>,
    expires: Option<Instant>,
}

/// What the timer found when it fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Nothing,
    Ping,
    PongOverdue,
    Expired,
}

impl Clock {
    pub fn new(
        now: Instant,
        ping_interval: Duration,
        pong_timeout: Duration,
        expires: Option<Instant>,
    ) -> Self {
        Self {
            ping_interval,
            pong_timeout,
            next_ping: now + ping_interval,
            pong_due: None,
            expires,
        }
    }

    /// When the timer should next fire.
    pub fn next(&self) -> Instant {
        let watch = self.pong_due.unwrap_or(self.next_ping);
        self.expires.map_or(watch, |at| at.min(watch))
    }

    /// The client sent something.
    pub fn heard(&mut self) {
        self.pong_due = None;
    }

    /// What is due at `now`; a ping found due is taken as sent.
    pub fn due(&mut self, now: Instant) -> Due {
        if self.expires.is_some_and(|at| at <= now) {
            return Due::Expired;
        }
        match self.pong_due {
            Some(at) if at <= now => Due::PongOverdue,
            Some(_) => Due::Nothing,
            None if self.next_ping <= now => {
                self.pong_due = Some(now + self.pong_timeout);
                self.next_ping = now + self.ping_interval;
                Due::Ping
            }
            None => Due::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pings every 30 s, a pong due within 10 s.
    fn new_clock(t0: Instant, expires: Option<Instant>) -> Clock {
        Clock::new(
            t0,
            Duration::from_secs(30),
            Duration::from_secs(10),
            expires,
        )
    }

    #[test]
    fn a_quiet_client_is_pinged_and_dropped_when_no_pong_comes() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = new_clock(t0, None);
        assert_eq!(clock.next(), t0 + s(30));
        assert_eq!(clock.due(t0 + s(29)), Due::Nothing);
        assert_eq!(clock.due(t0 + s(30)), Due::Ping);
        assert_eq!(clock.next(), t0 + s(40), "now the pong deadline");
        assert_eq!(clock.due(t0 + s(35)), Due::Nothing);
        assert_eq!(clock.due(t0 + s(40)), Due::PongOverdue);
    }

    #[test]
    fn an_answer_clears_the_deadline_and_the_next_ping_keeps_its_cadence() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = new_clock(t0, None);
        assert_eq!(clock.due(t0 + s(30)), Due::Ping);
        clock.heard();
        assert_eq!(clock.next(), t0 + s(60));
        assert_eq!(
            clock.due(t0 + s(45)),
            Due::Nothing,
            "woken early: nothing due"
        );
        assert_eq!(clock.due(t0 + s(60)), Due::Ping);
    }

    #[test]
    fn the_token_expiry_comes_first_when_it_is_sooner() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = new_clock(t0, Some(t0 + s(12)));
        assert_eq!(clock.next(), t0 + s(12));
        assert_eq!(clock.due(t0 + s(12)), Due::Expired);
        let mut late = new_clock(t0, Some(t0 + s(35)));
        assert_eq!(late.due(t0 + s(30)), Due::Ping);
        assert_eq!(late.next(), t0 + s(35), "expiry before the pong deadline");
        assert_eq!(late.due(t0 + s(35)), Due::Expired);
    }
}
