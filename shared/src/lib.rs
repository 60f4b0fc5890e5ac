//! The wire contract of the dashboard gateway, shared by the `gateway` that
//! serves browsers and the `publisher` that backend jobs link to.
//!
//! Everything here is pure: no sockets, no Redis, no async runtime. What a
//! byte on the wire means is decided in this crate and nowhere else, so the
//! two sides cannot drift apart.
//!
//! # Layout
//! - [`envelope`]: the JSON envelope every frame and every Redis payload is,
//!   how to encode one, and how the gateway decodes (and validates) one.
//! - [`kind`]: message type names, their validation, and [`kind::TypeFilter`]
//!   for `?types=`.
//! - [`event_id`]: history positions (`<epoch>:<ms>-<seq>`), the opaque
//!   event ids used for resume (`?since=`).
//! - [`keys`]: Redis channel and key names under a `CHANNEL_PREFIX`.
//! - [`client`]: what a browser may send, and the frames the server answers
//!   with (pong, error, recovery).
//! - [`state`]: keyed state: which events a publisher keys
//!   (`STATE_KEYS`), which remove their key (`STATE_TOMBSTONES`), its bounds.
//! - [`status`]: a node's line in the cluster count ([`status::NodeStatus`],
//!   its TTL), as nodes write it and `/ws/status` and the Python package read
//!   it.

pub mod client;
pub mod envelope;
pub mod event_id;
pub mod keys;
pub mod kind;
pub mod state;
pub mod status;

pub use envelope::{DecodeError, Decoded, encode, encode_with_id, insert_id};
pub use event_id::{Epoch, EventId, Position};
pub use kind::{KindError, TypeFilter, validate_kind};
