//! `?auth=frame`: the token as the client's first frame, out of the URL (and
//! so out of proxy logs and browser history).
//!
//! The handshake makes every check it can without the token (origin,
//! draining, `?types=` syntax, the node's and the address's limits) and
//! upgrades. Then, before the session starts and before anything is sent to
//! the client, the first data frame must be `{"type":"auth","token":"<JWT>"}`
//! within `HANDSHAKE_TIMEOUT_MS`. Its token is judged exactly as a `?token=`
//! is at the handshake (signature, `exp`, `nbf`, `aud`, `iss`; the `types`
//! claim against `?types=`; `sub` against `MAX_CONNECTIONS_PER_USER`), and
//! the session gets the same [`ClientParams`] it would have got from the
//! URL: the greeting follows as usual. With auth off the frame is still
//! expected (the client sends it either way) and its token is not looked at,
//! as a `?token=` is not.
//!
//! What the handshake refuses with a status is refused here with a close
//! code, counted under the same `gateway_handshakes_rejected_total` reason:
//!
//! | refusal | close |
//! |---|---|
//! | no auth frame by the deadline, a first data frame that is not one, a bad token | 4001 |
//! | `?types=` outside the token's `types` claim (403 at the handshake) | 1008 |
//! | `MAX_CONNECTIONS_PER_USER` reached (429 at the handshake) | 1013 |
//!
//! Control frames before the auth frame are answered (tungstenite owes a
//! pong) but do not count as the first frame; more than a few close with 1008.
//! A client waiting here holds its places (the node's count, its address's)
//! from the upgrade on, so it counts in `/ws/status` for at most the timeout;
//! `gateway_connections_opened_total` counts it once its session starts.

use std::sync::Arc;

use futures_util::StreamExt;
use shared::TypeFilter;
use shared::client::parse_auth;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Message;

use super::socket::{WebSocket, classify, closing_handshake};
use super::upgrade::Socket;
use crate::admission::{Admitted, AuthFailure, Refusal};
use crate::connect::{Awaiting, ClientParams, Resume, count_refusal, sees_analytics, within_claim};
use crate::session::ended::Ended;
use crate::state::AppState;
use crate::transport::outbox::Outbox;

/// Close code of a refused token (4000-4999: for applications, RFC 6455
/// §7.4.2); the same code closes a connection whose token expires.
const UNAUTHORIZED: u16 = 4001;
/// Close code for a `?types=` the token does not allow: a policy violation.
const POLICY: u16 = 1008;
/// Close code for a user at `MAX_CONNECTIONS_PER_USER`: try again later.
const AGAIN: u16 = 1013;
/// Control frames a client may send before its auth frame.
const MAX_CONTROL_FRAMES: usize = 8;
/// Messages read, at most, while waiting for the client's close reply.
const CLOSE_DRAIN_MESSAGES: usize = 16;

// Close reasons (at most 123 bytes: RFC 6455 §5.5). A bad token's is its
// failure's message, as in the handshake's 401.
const NO_FRAME: &str = "no auth frame within the handshake timeout";
const NOT_AN_AUTH_FRAME: &str = "the first frame must be {\"type\":\"auth\",\"token\":\"<JWT>\"}";
const FORBIDDEN_TYPE: &str = "?types= names a type your token does not allow";
const USER_FULL: &str = "too many connections for your user; retry later";

/// A client whose auth frame was accepted: what its session needs.
pub struct Accepted {
    pub socket: WebSocket,
    pub outbox: Arc<Outbox>,
    pub params: ClientParams,
    /// The places of [`Awaiting::admitted`], with the user's added.
    pub admitted: Admitted,
}

/// Why no session starts.
enum Verdict {
    /// Refused as the handshake would have refused it.
    Refused(Refusal, &'static str),
    /// Ended otherwise (a close frame, a read error, shutdown, a flood).
    Ended(Ended),
}

/// Waits for the client's auth frame and judges it; `None` when the client
/// was refused (and sent its close frame) or went away.
pub async fn accept(
    mut socket: WebSocket,
    outbox: Arc<Outbox>,
    state: Arc<AppState>,
    awaiting: Awaiting,
) -> Option<Accepted> {
    let Awaiting {
        asked,
        resume,
        state: wants_state,
        mut admitted,
        ..
    } = awaiting;
    let deadline = Instant::now() + state.config.handshake_timeout();
    let judged = tokio::select! {
        judged = judge(&mut socket.socket, &state, deadline, asked, resume, &mut admitted) => judged,
        () = state.shutdown.cancelled() => Err(Verdict::Ended(Ended::Shutdown)),
    };
    match judged {
        Ok(params) => Some(Accepted {
            socket,
            outbox,
            params: ClientParams {
                state: wants_state,
                ..params
            },
            admitted,
        }),
        Err(verdict) => {
            refuse(&mut socket.socket, &outbox, verdict).await;
            None
        }
    }
}

/// Ends a client that gets no session: the close frame its verdict calls
/// for, if it can still read one; counted like the handshake's refusals.
async fn refuse(socket: &mut Socket, outbox: &Outbox, verdict: Verdict) {
    let ours = match verdict {
        Verdict::Refused(refusal, reason) => {
            count_refusal(&refusal);
            tracing::debug!(reason, "auth frame refused");
            Some((close_code(&refusal), reason))
        }
        Verdict::Ended(Ended::ClientClose) => None,
        Verdict::Ended(ended) => match ended.close_code() {
            Some(frame) => Some(frame),
            None => return,
        },
    };
    closing_handshake(socket, outbox, ours, CLOSE_DRAIN_MESSAGES).await;
}

/// Reads the first data frame by `deadline` and judges its token: the
/// session's parameters, as the handshake makes them from a `?token=`.
async fn judge(
    socket: &mut Socket,
    state: &AppState,
    deadline: Instant,
    asked: TypeFilter,
    resume: Resume,
    admitted: &mut Admitted,
) -> Result<ClientParams, Verdict> {
    let token = first_frame_token(socket, deadline).await?;
    // An empty token is no token, as an empty `?token=` is.
    let token = Some(token.as_str()).filter(|t| !t.is_empty());
    let identity = state
        .admission
        .authenticate(token)
        .await
        .map_err(|refusal| {
            let reason = match &refusal {
                Refusal::Unauthorized(failure) => failure.message(),
                _ => NOT_AN_AUTH_FRAME,
            };
            Verdict::Refused(refusal, reason)
        })?;
    let filter = within_claim(asked, identity.types.as_deref())
        .map_err(|refusal| Verdict::Refused(refusal, FORBIDDEN_TYPE))?;
    state
        .admission
        .admit_user(admitted, identity.sub.as_deref())
        .map_err(|refusal| Verdict::Refused(refusal, USER_FULL))?;
    Ok(ClientParams {
        filter,
        resume,
        good_until: identity.good_until,
        sees_analytics: sees_analytics(identity.types.as_deref()),
        state: false,
    })
}

/// The token of the client's first data frame, which must be an auth frame.
async fn first_frame_token(socket: &mut Socket, deadline: Instant) -> Result<String, Verdict> {
    let missing = |reason| Verdict::Refused(Refusal::Unauthorized(AuthFailure::Missing), reason);
    let mut control = 0;
    loop {
        let Ok(next) = timeout_at(deadline, socket.next()).await else {
            return Err(missing(NO_FRAME));
        };
        match next {
            None => return Err(Verdict::Ended(Ended::ClientGone)),
            Some(Err(err)) => return Err(Verdict::Ended(classify(err))),
            Some(Ok(Message::Close(_))) => return Err(Verdict::Ended(Ended::ClientClose)),
            // tungstenite answers pings itself; they are not the first frame.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                control += 1;
                if control > MAX_CONTROL_FRAMES {
                    return Err(Verdict::Ended(Ended::RateLimited));
                }
            }
            Some(Ok(Message::Text(text))) => {
                return parse_auth(&text).ok_or_else(|| missing(NOT_AN_AUTH_FRAME));
            }
            Some(Ok(Message::Binary(_))) => return Err(missing(NOT_AN_AUTH_FRAME)),
        }
    }
}

/// The close code standing in for the status the handshake would answer.
fn close_code(refusal: &Refusal) -> u16 {
    match refusal {
        Refusal::Unauthorized(_) => UNAUTHORIZED,
        Refusal::ForbiddenType(_) => POLICY,
        // 429/503 at the handshake; only the user's limit is judged here.
        Refusal::UserFull | Refusal::NodeFull | Refusal::IpFull | Refusal::RateLimited => AGAIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_close_with_the_code_standing_for_their_status() {
        assert_eq!(
            close_code(&Refusal::Unauthorized(AuthFailure::Expired)),
            4001
        );
        assert_eq!(close_code(&Refusal::ForbiddenType("alert".into())), 1008);
        assert_eq!(close_code(&Refusal::UserFull), 1013);
    }

    #[test]
    fn every_close_reason_fits_a_close_frame() {
        // RFC 6455 §5.5: a control frame's payload is at most 125 bytes,
        // two of them the code.
        for failure in [
            AuthFailure::Missing,
            AuthFailure::Malformed,
            AuthFailure::NoExpiry,
            AuthFailure::Expired,
            AuthFailure::NotYetValid,
            AuthFailure::BadSignature,
            AuthFailure::Algorithm,
            AuthFailure::UnknownKey,
            AuthFailure::Audience,
            AuthFailure::Issuer,
        ] {
            assert!(failure.message().len() <= 123, "{failure:?}");
        }
        for reason in [NO_FRAME, NOT_AN_AUTH_FRAME, FORBIDDEN_TYPE, USER_FULL] {
            assert!(reason.len() <= 123, "{reason}");
        }
    }
}
