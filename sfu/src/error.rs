//! The SFU's one error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot bind media socket {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("media configuration: {0}")]
    Config(String),
    #[error("participant {0} is not known to the media server")]
    UnknownParticipant(String),
    #[error("participant {0} is already in a room")]
    AlreadyJoined(String),
    #[error("negotiation failed: {0}")]
    Negotiation(String),
    #[error("the offer has {sections} media sections, more than the {limit} allowed")]
    TooManySections { sections: usize, limit: usize },
    #[error("too many offers: at most {per_second} per second")]
    TooManyOffers { per_second: f64 },
    #[error("DTLS certificate: {0}")]
    Certificate(String),
    #[error("the media server has stopped")]
    Stopped,
    #[error("webrtc: {0}")]
    Rtc(#[from] rtc::shared::error::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
