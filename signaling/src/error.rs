//! The signaling crate's one error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("token rejected: {0}")]
    Token(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("media server: {0}")]
    Media(#[from] samtal_sfu::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error(transparent)]
    Records(#[from] samtal_records::Error),
    #[error("summary: {0}")]
    Summary(String),
}

pub type Result<T> = std::result::Result<T, Error>;
