//! Publishing through a gateway node's `POST /api/publish` instead of Redis.
//!
//! For a node that has no Redis to reach (`gateway --demo` runs an
//! in-process bus) or a job that may not talk to Redis: one HTTP/1.1 request,
//! `{"type": ..., "data": ...}` with the data's bytes as the caller wrote
//! them, `Authorization: Bearer <key>`. The node answers 202 `{"id": ...}`
//! once the event is on its bus; anything else becomes an [`HttpError`] that
//! says what to fix. A batch is a JSON array of such objects, answered with
//! `{"ids": [...]}` in the same order ([`HttpPublisher::publish_many`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::value::RawValue;
use thiserror::Error;

/// How long connecting, sending and reading the answer may take in all.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The route a node publishes on, below the URL it was given.
pub const PUBLISH_PATH: &str = "/api/publish";

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("invalid gateway URL {url:?}: {why}")]
    Url { url: String, why: String },
    #[error("the publish key cannot be sent in an HTTP header (control characters?)")]
    Key,
    #[error("no gateway at {url} (connection refused); is `gateway` running there?")]
    Refused { url: String },
    #[error("cannot reach the gateway at {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("the gateway at {url} did not answer within {}s", HTTP_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("HTTP exchange with {url} failed: {source}")]
    Exchange { url: String, source: hyper::Error },
    #[error(
        "the gateway refused the publish key (401 Unauthorized): {}",
        if *.key_given { "the key is wrong; pass the node's PUBLISH_API_KEY with --key" }
        else { "it needs one; pass the node's PUBLISH_API_KEY with --key or PUBLISH_API_KEY" }
    )]
    Unauthorized { key_given: bool },
    #[error("the gateway answered {status}: {message}")]
    Rejected { status: StatusCode, message: String },
    #[error(
        "the gateway at {url} accepted the batch but did not answer {expected} ids (is it an older node that takes one event per request?): {message}"
    )]
    Answer {
        url: String,
        expected: usize,
        message: String,
    },
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
    data: &'a RawValue,
}

/// The body `POST /api/publish` takes; `data` is copied in byte for byte.
pub fn publish_body(kind: &str, data: &RawValue) -> String {
    serde_json::to_string(&Body {
        kind,
        key: None,
        removed: false,
        data,
    })
    .expect("a str and a RawValue serialize")
}

/// The body of a batch: a JSON array of [`publish_body`] objects, in order.
pub fn batch_body<K: AsRef<str>, D: AsRef<RawValue>>(events: &[(K, D)]) -> String {
    let bodies: Vec<Body<'_>> = events
        .iter()
        .map(|(kind, data)| Body {
            kind: kind.as_ref(),
            key: None,
            removed: false,
            data: data.as_ref(),
        })
        .collect();
    serde_json::to_string(&bodies).expect("strs and RawValues serialize")
}

fn line_body(line: &crate::lines::Line) -> Body<'_> {
    Body {
        kind: &line.kind,
        key: line.key.as_deref(),
        removed: line.removed,
        data: &line.data,
    }
}

/// The body of a batch of lines (`send --stdin`): their keys and removals
/// too.
pub fn lines_body(lines: &[crate::lines::Line]) -> String {
    let bodies: Vec<Body<'_>> = lines.iter().map(line_body).collect();
    serde_json::to_string(&bodies).expect("strs and RawValues serialize")
}

/// Publishes one event through the node at `gateway` (`http://host:port`,
/// optionally with a path prefix a proxy strips). Returns the event's id, as
/// the node reported it.
pub async fn publish(
    gateway: &str,
    key: Option<&str>,
    kind: &str,
    data: &RawValue,
) -> Result<String, HttpError> {
    HttpPublisher::new(gateway, key)?.publish(kind, data).await
}

/// Publishes through one node over a kept-alive connection (the load tool
/// sends thousands a second this way); a connection found broken is
/// replaced once per publish.
pub struct HttpPublisher {
    target: Target,
    /// `Bearer <key>`, checked once.
    authorization: Option<HeaderValue>,
    key_given: bool,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpPublisher {
    pub fn new(gateway: &str, key: Option<&str>) -> Result<Self, HttpError> {
        let authorization = key
            .map(|key| HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| HttpError::Key))
            .transpose()?;
        Ok(Self {
            target: Target::parse(gateway)?,
            authorization,
            key_given: key.is_some(),
            sender: None,
        })
    }

    pub async fn publish(&mut self, kind: &str, data: &RawValue) -> Result<String, HttpError> {
        self.publish_object(publish_body(kind, data)).await
    }

    /// Publishes `events` as one batch (one request; the node publishes them
    /// in order in one bus round trip): their ids, in order.
    pub async fn publish_many<K, D>(&mut self, events: &[(K, D)]) -> Result<Vec<String>, HttpError>
    where
        K: AsRef<str>,
        D: AsRef<RawValue>,
    {
        self.publish_body(batch_body(events), events.len()).await
    }

    /// Publishes one line (`send`), with its key: one object, as for
    /// [`Self::publish`].
    pub async fn publish_line(&mut self, line: &crate::lines::Line) -> Result<String, HttpError> {
        let body = serde_json::to_string(&line_body(line)).expect("a str and a RawValue serialize");
        self.publish_object(body).await
    }

    /// One event's body: the id the node answered.
    async fn publish_object(&mut self, body: String) -> Result<String, HttpError> {
        let body = self.post(Bytes::from(body)).await?;
        Ok(serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_default())
    }

    /// Publishes lines (`send --stdin`) as one batch, with their keys.
    pub async fn publish_lines(
        &mut self,
        lines: &[crate::lines::Line],
    ) -> Result<Vec<String>, HttpError> {
        self.publish_body(lines_body(lines), lines.len()).await
    }

    async fn publish_body(
        &mut self,
        body: String,
        events: usize,
    ) -> Result<Vec<String>, HttpError> {
        let body = self.post(Bytes::from(body)).await?;
        let ids: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v["ids"]
                    .as_array()?
                    .iter()
                    .map(|id| id.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if ids.len() != events {
            return Err(HttpError::Answer {
                url: self.target.url.clone(),
                expected: events,
                message: error_message(&body),
            });
        }
        Ok(ids)
    }

    /// One POST; the body of a 202, or the error the status means.
    async fn post(&mut self, body: Bytes) -> Result<Bytes, HttpError> {
        let url = self.target.url.clone();
        let (status, body) = tokio::time::timeout(HTTP_TIMEOUT, self.exchange(body))
            .await
            .map_err(|_| HttpError::Timeout { url })??;
        match status {
            StatusCode::ACCEPTED => Ok(body),
            StatusCode::UNAUTHORIZED => Err(HttpError::Unauthorized {
                key_given: self.key_given,
            }),
            status => Err(HttpError::Rejected {
                status,
                message: error_message(&body),
            }),
        }
    }

    fn request(&self, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::post(self.target.path.as_str())
            .header(HOST, self.target.authority.as_str())
            .header(CONTENT_TYPE, "application/json");
        if let Some(value) = &self.authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        request
            .body(Full::new(body))
            .expect("method, path and headers were checked")
    }

    /// One request on the kept connection, or on a new one when there is
    /// none or it broke before the request went out.
    async fn exchange(&mut self, body: Bytes) -> Result<(StatusCode, Bytes), HttpError> {
        let url = self.target.url.clone();
        let exchange = |source| HttpError::Exchange {
            url: url.clone(),
            source,
        };
        for attempt in 0..2 {
            let request = self.request(body.clone());
            let sender = match &mut self.sender {
                Some(sender) if sender.is_ready() => sender,
                _ => self.sender.insert(self.target.connect().await?),
            };
            match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(exchange)?
                        .to_bytes();
                    return Ok((status, body));
                }
                // Closed under us (a keep-alive timeout): once more, anew.
                Err(err) if attempt == 0 && err.is_closed() => self.sender = None,
                Err(err) => return Err(exchange(err)),
            }
        }
        unreachable!("the second attempt returns")
    }
}

/// The `message` of the node's JSON error (`{"error": {"code", "message"}}`),
/// else the start of whatever the body was.
fn error_message(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(message) = json["error"]["message"].as_str()
    {
        return message.to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    text.chars().take(200).collect()
}

/// Where the request goes: a host and port to connect to, the `Host`
/// header, the request path.
struct Target {
    url: String,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |why: &str| HttpError::Url {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported; use the node's own http:// address",
                ));
            }
            _ => return Err(bad("expected http://host:port")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if uri.query().is_some() {
            return Err(bad("a query string has no place here"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Ok(Self {
            url: url.to_owned(),
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            path: format!("{}{PUBLISH_PATH}", uri.path().trim_end_matches('/')),
        })
    }

    /// A new HTTP/1.1 connection, driven by its own task.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::ConnectionRefused => HttpError::Refused {
                    url: self.url.clone(),
                },
                _ => HttpError::Connect {
                    url: self.url.clone(),
                    source,
                },
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| HttpError::Exchange {
                url: self.url.clone(),
                source,
            })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_data_as_written() {
        let data = RawValue::from_string(r#"{"b": 1.50, "a":[1e3]}"#.to_owned()).unwrap();
        assert_eq!(
            publish_body("alert", &data),
            r#"{"type":"alert","data":{"b": 1.50, "a":[1e3]}}"#
        );
    }

    #[test]
    fn a_batch_body_is_an_array_of_event_bodies_in_order() {
        let a = RawValue::from_string(r#"{"b": 1.50}"#.to_owned()).unwrap();
        let b = RawValue::from_string("null".to_owned()).unwrap();
        assert_eq!(
            batch_body(&[("alert", a), ("test_message", b)]),
            r#"[{"type":"alert","data":{"b": 1.50}},{"type":"test_message","data":null}]"#
        );
    }

    #[test]
    fn urls_become_a_host_a_port_and_the_publish_path() {
        let t = Target::parse("http://localhost:8000").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            ("localhost", 8000, "localhost:8000", "/api/publish")
        );
        let t = Target::parse("http://[::1]/gw/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        assert_eq!(t.path, "/gw/api/publish");
        for bad in [
            "localhost:8000",
            "https://gw.example.com",
            "http://h/?x=1",
            "ws://h",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_messages_come_from_the_nodes_json_error() {
        assert_eq!(
            error_message(br#"{"error":{"code":"bad_type","message":"invalid type"}}"#),
            "invalid type"
        );
        assert_eq!(error_message(b"Bad Gateway\n"), "Bad Gateway");
        assert_eq!(error_message(b""), "(empty body)");
    }
}
