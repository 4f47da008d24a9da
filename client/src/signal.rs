//! The signaling websocket: joining a room, sending and receiving protocol messages, heartbeats.
//!
//! [`SignalingClient::connect`] opens the websocket, sends `join` and waits for `joined` (or an
//! `error`). Afterwards one task (`crate::link`) sends what [`SignalSender::send`] queues plus a
//! `ping` every [`PING_INTERVAL`], parses every text frame into a [`ServerMessage`] delivered by
//! [`SignalingClient::recv`], and, when the join asked for it ([`JoinOptions::resumable`]), resumes
//! the session on a new websocket after the old one drops. The client answers nothing by itself:
//! offers, pongs and errors all reach the caller.

use std::time::Duration;

use samtal_protocol::{ClientMessage, IceServer, PROTOCOL_VERSION, ParticipantInfo, Role, ServerMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::error::{Error, Result};
pub(crate) use crate::link::Outgoing;
pub use crate::link::PING_INTERVAL;
/// How long [`SignalingClient::connect`] waits for `joined`.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`SignalSender::close`] waits for the websocket to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `join` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOptions {
    /// Room name, 1–64 of `[A-Za-z0-9_.-]`.
    pub room: String,
    /// Display name.
    pub name: String,
    /// JWT; `None` for a server running open.
    pub token: Option<String>,
    /// Join as a hidden service participant (needs role `service`).
    pub hidden: bool,
    /// Join opted out of transcription.
    pub transcription_opt_out: bool,
    /// Resume the session on a new websocket when the websocket drops, instead of leaving.
    pub resumable: bool,
}

impl JoinOptions {
    /// A visible participant without a token.
    pub fn new(room: impl Into<String>, name: impl Into<String>) -> Self {
        JoinOptions {
            room: room.into(),
            name: name.into(),
            token: None,
            hidden: false,
            transcription_opt_out: false,
            resumable: false,
        }
    }

    /// The same, resuming the session after a dropped websocket (within the server's grace period).
    pub fn resumable(mut self, resumable: bool) -> Self {
        self.resumable = resumable;
        self
    }

    /// The same, with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The same, opted out of transcription from the start.
    pub fn opted_out_of_transcription(mut self, opt_out: bool) -> Self {
        self.transcription_opt_out = opt_out;
        self
    }

    /// The same, hidden.
    pub fn hidden(mut self, hidden: bool) -> Self {
        self.hidden = hidden;
        self
    }

    fn to_message(&self) -> ClientMessage {
        ClientMessage::Join {
            room: self.room.clone(),
            name: self.name.clone(),
            token: self.token.clone(),
            hidden: self.hidden,
            protocol: Some(PROTOCOL_VERSION),
            matrix_room: None,
            transcription_opt_out: self.transcription_opt_out,
            resumable: self.resumable,
        }
    }
}

/// The server's `joined` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// Our participant id; it is also the stream id of our tracks at the other participants.
    pub participant_id: String,
    /// The room joined.
    pub room: String,
    /// The role the server gave us.
    pub role: Role,
    /// ICE servers to use (TURN), possibly none.
    pub ice_servers: Vec<IceServer>,
    /// Everyone already in the room, without ourselves.
    pub participants: Vec<ParticipantInfo>,
    /// Whether the meeting is being transcribed.
    pub transcription: samtal_protocol::TranscriptionStatus,
    /// How this session resumes after a dropped websocket, when the join asked and the server offers it.
    pub resume: Option<samtal_protocol::ResumeInfo>,
}

/// A cloneable handle that sends messages on the signaling websocket.
#[derive(Clone)]
pub struct SignalSender {
    tx: mpsc::UnboundedSender<Outgoing>,
}

impl SignalSender {
    /// Queues a message; fails only when the websocket is already closed.
    pub fn send(&self, message: ClientMessage) -> Result<()> {
        self.tx.send(Outgoing::Message(message)).map_err(|_| Error::Closed)
    }

    /// Sends `leave`, then closes the websocket and waits (briefly) until it is closed.
    pub async fn close(&self) {
        let _ = self.send(ClientMessage::Leave);
        let (done_tx, done_rx) = oneshot::channel();
        if self.tx.send(Outgoing::Close(done_tx)).is_ok() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, done_rx).await;
        }
    }

    /// Whether the websocket writer has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// A sender without a websocket: what it sends lands in the receiver (unit tests).
    #[cfg(test)]
    pub(crate) fn detached() -> (SignalSender, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (SignalSender { tx }, rx)
    }
}

/// A joined signaling connection.
pub struct SignalingClient {
    sender: SignalSender,
    rx: mpsc::UnboundedReceiver<ServerMessage>,
    reader: JoinHandle<()>,
}

impl SignalingClient {
    /// Opens the websocket at `ws_url` (e.g. `ws://127.0.0.1:8080/ws`), sends `join` and waits for
    /// `joined`. An `error` answer becomes [`Error::Server`].
    pub async fn connect(ws_url: &str, join: JoinOptions) -> Result<(SignalingClient, Joined)> {
        let (ws, _response) = tokio_tungstenite::connect_async(ws_url).await?;
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(crate::link::run(ws_url.to_owned(), ws, out_rx, in_tx));
        let mut client = SignalingClient {
            sender: SignalSender { tx: out_tx },
            rx: in_rx,
            reader,
        };
        client.send(join.to_message())?;

        let joined = tokio::time::timeout(JOIN_TIMEOUT, async {
            loop {
                match client.rx.recv().await {
                    None => return Err(Error::Closed),
                    Some(ServerMessage::Joined {
                        participant_id,
                        room,
                        role,
                        ice_servers,
                        participants,
                        transcription,
                        resume,
                    }) => {
                        return Ok(Joined {
                            participant_id,
                            room,
                            role,
                            ice_servers,
                            participants,
                            transcription,
                            resume,
                        });
                    }
                    Some(ServerMessage::Error { code, message, .. }) => {
                        return Err(Error::Server { code, message });
                    }
                    Some(ServerMessage::Pong { .. }) => {}
                    Some(other) => {
                        return Err(Error::Protocol(format!("expected joined, got {other:?}")));
                    }
                }
            }
        })
        .await
        .map_err(|_| Error::Timeout("joined"))?;
        match joined {
            Ok(joined) => {
                debug!(participant_id = %joined.participant_id, room = %joined.room, "joined");
                Ok((client, joined))
            }
            Err(e) => {
                client.close().await;
                Err(e)
            }
        }
    }

    /// Queues a message.
    pub fn send(&self, message: ClientMessage) -> Result<()> {
        self.sender.send(message)
    }

    /// A cloneable sending handle.
    pub fn sender(&self) -> SignalSender {
        self.sender.clone()
    }

    /// The next message from the server; `None` once the websocket is closed.
    pub async fn recv(&mut self) -> Option<ServerMessage> {
        self.rx.recv().await
    }

    /// Splits into the sending handle and the receiving channel (for use in separate tasks).
    pub fn into_parts(self) -> (SignalSender, mpsc::UnboundedReceiver<ServerMessage>) {
        (self.sender, self.rx)
    }

    /// Sends `leave` and closes the websocket.
    pub async fn close(self) {
        self.sender.close().await;
        self.reader.abort();
    }
}
