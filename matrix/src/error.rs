//! The crate's one error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The bot could not log in: wrong password or token, unknown user, homeserver refused.
    #[error("Matrix login as {user} failed: {reason}")]
    Login { user: String, reason: String },
    /// The homeserver could not be reached or answered with a server error; worth retrying.
    #[error("Matrix homeserver unreachable or failing: {0}")]
    Unavailable(String),
    /// The room id is not a valid Matrix room id.
    #[error("{0:?} is not a Matrix room id (it starts with '!')")]
    BadRoomId(String),
    /// The bot is not joined to the room and has no invitation to it.
    #[error("the bot is not in Matrix room {room}: invite it to the room ({reason})")]
    NotInRoom { room: String, reason: String },
    /// Another Matrix error (refused send, upload, encryption).
    #[error("Matrix: {0}")]
    Matrix(String),
    /// The crypto and state store in the data directory could not be opened.
    #[error("Matrix store: {0}")]
    Store(String),
    /// The summary could not be made.
    #[error(transparent)]
    Summary(#[from] samtal_summaries::Error),
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether trying again later may succeed (a homeserver that is down), as opposed to an error
    /// that needs an operator (bad credentials, the bot not in the room). Both are retried by the
    /// outbox, the second kind less often.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
