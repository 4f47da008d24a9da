//! Samtal's control plane: the websocket signaling protocol, tokens and roles, rooms as
//! participants see them, the web client, health and metrics. It drives the media plane
//! (`samtal-sfu`) in-process and never touches media packets itself.

pub mod api;
pub mod auth;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod drain;
pub mod error;
pub mod meetings;
pub mod metrics;
pub mod rooms;
pub mod serve;
pub mod server;
pub mod session;
pub mod summary;
pub mod transcription;
pub mod turn;
pub mod webhooks;

/// The transcript archive (`samtal-records`), under the paths the server has always used.
pub use samtal_records::{compliance, export, store};

pub use config::Config;
pub use error::{Error, Result};
pub use server::{RunningServer, start};
