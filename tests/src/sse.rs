//! A Server-Sent Events reader over hyper's client: opens a stream and
//! yields its records as a browser's `EventSource` parses them (`id:`,
//! `event:`, `data:` lines joined with `\n`, comments).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::PATIENCE;

/// One record of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A comment line (a heartbeat).
    Comment(String),
    /// A message: its `id:`, `event:` and joined `data:`.
    Message {
        id: Option<String>,
        event: Option<String>,
        data: String,
    },
}

/// An open `GET` whose body is read as an event stream.
pub struct SseStream {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    body: hyper::body::Incoming,
    buf: String,
    /// Bytes of the body read so far.
    pub bytes_read: usize,
}

impl SseStream {
    /// Sends `GET path` with `headers`; returns at the response head,
    /// whatever its status.
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Self> {
        let mut sender = crate::http1(addr).await?;
        let mut request = hyper::Request::builder()
            .method("GET")
            .uri(path)
            .header("host", addr.to_string())
            .header("accept", "text/event-stream");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(http_body_util::Full::default())?;
        let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
            .await
            .context("SSE response timed out")??;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Ok(Self {
            status,
            headers,
            body: response.into_body(),
            buf: String::new(),
            bytes_read: 0,
        })
    }

    /// The whole body as text (a refusal's JSON).
    pub async fn text(self) -> String {
        let body = tokio::time::timeout(PATIENCE, self.body.collect())
            .await
            .expect("body in time")
            .expect("body")
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    /// The next record, or `None` when the stream ended or nothing came
    /// within `wait`.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Record> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return Some(parse(&block));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??
                .ok()?;
            if let Ok(data) = frame.into_data() {
                self.bytes_read += data.len();
                self.buf
                    .push_str(std::str::from_utf8(&data).expect("UTF-8"));
            }
        }
    }

    /// The next message (comments skipped) within `PATIENCE`.
    pub async fn next_message(&mut self) -> Record {
        loop {
            match self.try_next(PATIENCE).await {
                Some(Record::Comment(_)) => continue,
                Some(message) => return message,
                None => panic!("the stream ended or stalled before a message"),
            }
        }
    }

    /// The next envelope (a message without `event:`) as JSON, with its
    /// `id:`.
    pub async fn next_json(&mut self) -> (Option<String>, Value) {
        match self.next_message().await {
            Record::Message {
                id,
                event: None,
                data,
            } => {
                let value = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("data is not JSON ({e}): {data}"));
                (id, value)
            }
            other => panic!("expected an envelope, got {other:?}"),
        }
    }

    /// Reads until the stream ends: the `event: close` record's data, if
    /// one came (`None`: the stream just ended).
    pub async fn ended(&mut self) -> Option<Value> {
        let mut close = None;
        while let Some(record) = self.try_next(PATIENCE).await {
            if let Record::Message {
                event: Some(event),
                data,
                ..
            } = record
                && event == "close"
            {
                close = Some(serde_json::from_str(&data).expect("close data is JSON"));
            }
        }
        close
    }
}

fn parse(block: &str) -> Record {
    let (mut id, mut event, mut data, mut comment) = (None, None, Vec::new(), None);
    for line in block.lines().filter(|l| !l.is_empty()) {
        if let Some(text) = line.strip_prefix(':') {
            comment = Some(text.trim().to_owned());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    match comment {
        Some(text) if data.is_empty() && id.is_none() => Record::Comment(text),
        _ => Record::Message {
            id,
            event,
            data: data.join("\n"),
        },
    }
}
