//! What a client is sent before it is live: the replay of what it missed
//! (`?since=`) and its `recovery` frame, and the keyed state (`?state=1`)
//! with its `state` marker. Both are bounded by the node's permits, and
//! both move the session's seam, so the live stream starts right after
//! what they sent.

use std::time::Duration;

use chrono::Utc;
use metrics::counter;
use shared::client;
use shared::{EventId, Position};
use tokio::time::timeout;

use super::ended::Ended;
use super::{Session, SessionContext};
use crate::bus::{PAGE, Standing};
use crate::connect::Resume;
use crate::hub::View;
use crate::telemetry::{
    RECOVERIES_FAILED, REPLAYED_EVENTS, REPLAYS, REPLAYS_DEFERRED, STATE_EVENTS_SENT, STATE_READS,
    Throttle,
};
use crate::transport::{Encoding, Transport};

/// How long a resume waits for one of the node's replay permits before it
/// is told to come back (1013).
const REPLAY_QUEUE_WAIT: Duration = Duration::from_secs(5);
/// Keyed events written to a client between waits for its socket: a
/// client's state costs the node a page of frames at a time, however large.
const STATE_PAGE: usize = 512;
/// How long a client's socket may take a page while the client holds a
/// state permit.
const STATE_PAGE_HOLD: Duration = Duration::from_millis(50);

/// Failed replays are logged once per interval, with how many were not.
static REPLAY_FAILURES: Throttle = Throttle::new(Duration::from_secs(10));

impl<T: Transport> Session<T> {
    /// Sends the keyed state of the client's types (as of when it joined,
    /// current to `position`), page by page, then the marker
    /// `{"type":"state","data":{"complete":true,"count":N},"id":position}`.
    /// The live stream then starts right after `position`: the seam drops
    /// what the state holds already.
    ///
    /// The state is the node's own (no Redis read, whatever the number of
    /// clients asking at once); each event's frame is the one the fan-out
    /// made, shared, so a page costs reference counts, not copies. Over SSE
    /// the events carry no `id:` (theirs are old and in no order: a
    /// reconnect must not resume from one); the marker does.
    ///
    /// A page is written holding one of the node's state permits, and its
    /// socket given [`STATE_PAGE_HOLD`] to take it with the permit held: a
    /// client that reads is written its whole state in one turn, one that
    /// does not lets go of the permit and waits on its own (the replay
    /// rule: a socket that does not read holds nothing the others need).
    pub(super) async fn send_state(
        &mut self,
        state: View,
        position: Option<Position>,
        ring_seam: EventId,
    ) -> Result<(), Ended> {
        counter!(STATE_READS).increment(1);
        self.seam = position.map_or(EventId::ZERO, |p| p.id);
        self.ring_seam = Some(ring_seam);
        let filter = self.filter.clone();
        let ttl = self.ctx.hub.state_ttl();
        let (permits, shutdown) = (self.ctx.state_sends.clone(), self.ctx.shutdown.clone());
        let mut permit = None;
        let mut count = 0usize;
        for event in state.events(&filter, ttl) {
            if permit.is_none() {
                permit = tokio::select! {
                    permit = permits.acquire() => permit.ok(),
                    () = shutdown.cancelled() => return Err(Ended::Shutdown),
                };
            }
            let frame = match self.encoding {
                Encoding::Sse => self.encoding.encode(event.text(), None),
                encoding => event.wire(encoding).clone(),
            };
            self.feed(frame)?;
            count += 1;
            if count.is_multiple_of(STATE_PAGE) {
                match timeout(STATE_PAGE_HOLD, self.flush()).await {
                    Ok(flushed) => flushed?,
                    Err(_) => {
                        permit = None;
                        self.flush().await?;
                    }
                }
            }
        }
        drop(permit);
        counter!(STATE_EVENTS_SENT).increment(count as u64);
        let marker = client::state_complete(count, position, Utc::now());
        self.send_text(&marker, position).await
    }

    /// `joined`: where the node stood when the client joined. Whether every
    /// event after the client's `since` was sent.
    pub(super) async fn replay(
        &mut self,
        resume: Resume,
        joined: Option<Position>,
    ) -> Result<bool, Ended> {
        counter!(REPLAYS).increment(1);
        let (recovered, replayed) = match resume {
            // Nothing after it yet: what comes next is in the ring (while
            // the bus is up; without it, the history cannot vouch for it).
            Resume::Since(since) if Some(since) == joined && self.ctx.bus.is_ready() => {
                self.seam = self.seam.max(since.id);
                (true, 0)
            }
            Resume::Since(since) => self.replay_from(since).await?,
            Resume::Fresh | Resume::Malformed => (false, 0),
        };
        if !recovered {
            counter!(RECOVERIES_FAILED).increment(1);
        }
        counter!(REPLAYED_EVENTS).increment(replayed as u64);
        self.send_text(&client::recovery(recovered, replayed, Utc::now()), None)
            .await?;
        Ok(recovered)
    }

    /// Streams the history after `since` to the client, page by page, up to
    /// where it stood at the first read (the live ring has what follows).
    /// Returns whether every event after `since` was sent, and how many.
    pub(super) async fn replay_from(&mut self, since: Position) -> Result<(bool, usize), Ended> {
        let SessionContext {
            bus,
            replays,
            shutdown,
            ..
        } = &self.ctx;
        let (bus, replays, shutdown) = (bus.clone(), replays.clone(), shutdown.clone());
        let mut cursor = since;
        let mut until = None;
        let mut replayed = 0;
        loop {
            // The permit bounds concurrent reads of the history, and is let
            // go before the page is written: a client that does not read
            // holds none while the session waits on its socket.
            let read = async {
                let Ok(_permit) = timeout(REPLAY_QUEUE_WAIT, replays.acquire()).await else {
                    counter!(REPLAYS_DEFERRED).increment(1);
                    return Err(Ended::ReplayBusy);
                };
                Ok(bus.read_history(cursor, until, PAGE).await)
            };
            let page = tokio::select! {
                page = read => page?,
                () = shutdown.cancelled() => return Err(Ended::Shutdown),
            };
            let page = match page {
                Ok(page) => page,
                Err(err) => {
                    if let Some(suppressed) = REPLAY_FAILURES.allow() {
                        tracing::warn!(%since, suppressed, "replay failed: {err}");
                    }
                    return Ok((false, replayed));
                }
            };
            match page.standing {
                Standing::Intact { top } => {
                    if until.is_none() {
                        // The client holds everything up to `since` already.
                        self.seam = self.seam.max(since.id);
                        until = Some(top);
                    }
                }
                Standing::Gone | Standing::OtherEpoch(_) => return Ok((false, replayed)),
            }
            for event in page.events {
                self.seam = self.seam.max(event.id);
                if self.filter.allows(&event.kind) {
                    let position = Position::new(since.epoch, event.id);
                    let encoding = self.encoding.per_client();
                    self.feed(encoding.encode(&event.text, Some(position)))?;
                    replayed += 1;
                }
            }
            self.flush().await?;
            match page.last {
                Some(last) if !page.done => cursor.id = last,
                _ => return Ok((true, replayed)),
            }
        }
    }
}
