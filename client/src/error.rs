//! The crate's one error type.

use samtal_protocol::ErrorCode;

/// Everything that can go wrong in a Samtal client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The websocket could not be opened, or failed while in use.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// A message could not be encoded as JSON.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The WebRTC stack refused an operation.
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    /// The server answered with an `error` message.
    #[error("server error {code:?}: {message}")]
    Server {
        /// The protocol's error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The signaling connection is closed.
    #[error("signaling connection closed")]
    Closed,
    /// Something did not happen in time; the text says what.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The call does not fit how the participant was set up (e.g. sending video without a video track).
    #[error("not possible here: {0}")]
    Usage(String),
    /// The server sent something the protocol does not allow at that point.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
