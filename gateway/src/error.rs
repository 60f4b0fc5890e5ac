//! How a refusal leaves the node: an HTTP status and a small JSON body
//! `{"error":{"code","message"}}`, never internals. Every route and the
//! WebSocket handshake answer through [`AppError`].

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct AppError {
    pub(crate) status: StatusCode,
    code: &'static str,
    message: String,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: &str) -> Self {
        Self {
            status,
            code,
            message: message.to_owned(),
        }
    }

    /// The refusal of one event of a batch, as the batch's: the message
    /// names the event (`events[3]: ...`).
    pub fn in_event(mut self, index: usize) -> Self {
        self.message = format!("events[{index}]: {}", self.message);
        self
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
