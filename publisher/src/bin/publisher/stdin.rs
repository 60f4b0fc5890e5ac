//! `publisher send --stdin`: newline-delimited `{"type","data"}` objects from
//! standard input, published in batches (one round trip each, to Redis or to
//! a node's `/api/publish`), each event's id printed in input order.
//!
//! Lines are read as they come (a job may pipe 20,000 events, or a stream):
//! a batch goes out when it is full ([`publisher::batch::DEFAULT_BATCH_EVENTS`]
//! events, `--batch-size`, or [`publisher::batch::MAX_BATCH_BYTES`]) and at the
//! end. A bad line stops the run: what came before it is published (the
//! batch it would have joined included), nothing from it on, and the message
//! says which lines made it, so a re-run can start at the bad line.

use std::io::Write;
use std::ops::RangeInclusive;

use anyhow::{Context, Result, anyhow};
use publisher::http::HttpPublisher;
use publisher::lines::{self, LineError};
use publisher::{Batch, Publisher, WireFormat};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Where batches go.
pub enum Sink {
    Redis(Publisher),
    Http(HttpPublisher),
}

impl Sink {
    /// Publishes one batch; the ids, in order.
    async fn publish(&mut self, pending: &Pending) -> Result<Vec<String>> {
        Ok(match self {
            Sink::Redis(publisher) => publisher
                .publish_batch(&pending.batch)
                .await?
                .iter()
                .map(ToString::to_string)
                .collect(),
            Sink::Http(publisher) => publisher.publish_lines(&pending.raw).await?,
        })
    }
}

/// The batch being filled: the events checked and encoded (what Redis gets),
/// their data as written (what a node gets), and the lines they came from.
#[derive(Default)]
struct Pending {
    batch: Batch,
    raw: Vec<lines::Line>,
    lines: Option<RangeInclusive<u64>>,
}

/// What went out so far, for the message when a run stops early.
#[derive(Default)]
struct Published {
    events: u64,
    /// The last line whose event is published (blank lines before it count).
    through_line: u64,
}

impl Published {
    fn summary(&self) -> String {
        match self.events {
            0 => "nothing was published".to_owned(),
            n => format!(
                "{} published ({n} event{}, their ids on standard output)",
                match self.through_line {
                    1 => "line 1 was".to_owned(),
                    last => format!("lines 1-{last} were"),
                },
                if n == 1 { "" } else { "s" }
            ),
        }
    }
}

/// Reads standard input to its end and publishes every event on it.
///
/// Errors are shown with `{}` (not anyhow's `{:#}` chain): the crate's and
/// the HTTP client's errors already say their cause in their own message.
pub async fn send(mut sink: Sink, wire: &WireFormat, batch_size: usize) -> Result<()> {
    let mut input = BufReader::new(tokio::io::stdin());
    let mut out = std::io::stdout().lock();
    let max_line = lines::max_line_bytes(wire.max_event_bytes());
    let mut pending = Pending::default();
    let mut published = Published::default();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        // One byte past the longest line worth reading: a longer one is an
        // error, not a line held in memory whole.
        let read = (&mut input)
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await
            .context("reading standard input")?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let event = if buf.len() > max_line {
            Err(anyhow!(LineError::TooLong { max: max_line }))
        } else {
            checked(wire, &buf)
        };
        let (encoded, line) = match event {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(err) => {
                // Everything before the bad line goes out, then the run stops.
                flush(&mut sink, &mut pending, &mut published, &mut out).await?;
                return Err(anyhow!(
                    "line {line_no}: {err}\npublisher: {}; nothing from line {line_no} on was published",
                    published.summary()
                ));
            }
        };
        if !pending.batch.has_room(&encoded, batch_size) {
            flush(&mut sink, &mut pending, &mut published, &mut out).await?;
        }
        pending
            .batch
            .push(encoded)
            .expect("has_room said the event fits");
        pending.raw.push(line);
        let first = pending
            .lines
            .as_ref()
            .map_or(line_no, |lines| *lines.start());
        pending.lines = Some(first..=line_no);
    }
    flush(&mut sink, &mut pending, &mut published, &mut out).await
}

/// One line as an event checked against the wire format (type,
/// `MAX_EVENT_BYTES`); `None` for a blank line.
#[allow(clippy::type_complexity)]
fn checked(wire: &WireFormat, line: &[u8]) -> Result<Option<(publisher::Encoded, lines::Line)>> {
    let Some(line) = lines::parse(line)? else {
        return Ok(None);
    };
    let encoded = wire.encode_item(&line.item())?;
    Ok(Some((encoded, line)))
}

/// Publishes the pending batch, if any, and prints its ids.
async fn flush(
    sink: &mut Sink,
    pending: &mut Pending,
    published: &mut Published,
    out: &mut impl Write,
) -> Result<()> {
    let Some(lines) = pending.lines.clone() else {
        return Ok(());
    };
    let (from, to) = (*lines.start(), *lines.end());
    let ids = sink.publish(pending).await.map_err(|err| {
        anyhow!(
            "lines {from}-{to} (a batch of {}): {err}\npublisher: {}; the batch of lines {from}-{to} \
             was published whole or not at all (if the connection broke with it in flight, look for \
             its events in the history); nothing after line {to} was sent",
            pending.batch.len(),
            published.summary(),
        )
    })?;
    for id in &ids {
        writeln!(out, "{id}")?;
    }
    out.flush()?;
    published.events += ids.len() as u64;
    published.through_line = *lines.end();
    *pending = Pending::default();
    Ok(())
}
