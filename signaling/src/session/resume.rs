//! Resumable sessions: the token a participant's client gets in `joined`, and the hand-over of a
//! new websocket (`/ws?resume=TOKEN&received=N`) to the session that token belongs to.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use samtal_protocol::{ErrorCode, ServerMessage};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// A new websocket for a session: the client received `received` messages of the session so far.
pub struct Resume {
    pub socket: WebSocket,
    pub received: u64,
    pub peer: SocketAddr,
    /// Whatever keeps the connection counted under the server's connection limit; it lives as
    /// long as the session uses the websocket.
    pub slot: Option<Box<dyn Send + Sync>>,
}

/// The sessions that can be resumed, by token.
#[derive(Default)]
pub struct Resumes {
    sessions: Mutex<HashMap<String, mpsc::Sender<Box<Resume>>>>,
    /// In a cluster, this node's id: tokens start with it (`NODE.RANDOM`), so that a resume that
    /// reaches another node is carried to this one.
    node: Option<String>,
}

impl Resumes {
    /// The resumable sessions of cluster node `node`.
    pub fn of_node(node: &str) -> Self {
        Self {
            node: Some(node.to_owned()),
            ..Default::default()
        }
    }

    /// The node a token was issued by, when it names one.
    pub fn node_of(token: &str) -> Option<&str> {
        token.split_once('.').map(|(node, _)| node)
    }

    /// A new token for the session that listens on `tx`.
    pub fn register(&self, tx: mpsc::Sender<Box<Resume>>) -> String {
        let random: String = rand::random::<[u8; 24]>().iter().map(|b| format!("{b:02x}")).collect();
        let token = match &self.node {
            Some(node) => format!("{node}.{random}"),
            None => random,
        };
        self.sessions.lock().expect("resumes lock").insert(token.clone(), tx);
        token
    }

    pub fn remove(&self, token: &str) {
        self.sessions.lock().expect("resumes lock").remove(token);
    }

    /// Gives the websocket to its session, or back when there is none (unknown token, the
    /// session ended, or it is taking another websocket this moment).
    pub fn hand_over(&self, token: &str, resume: Box<Resume>) -> Result<(), Box<Resume>> {
        let tx = self.sessions.lock().expect("resumes lock").get(token).cloned();
        match tx {
            Some(tx) => tx.try_send(resume).map_err(|e| e.into_inner()),
            None => Err(resume),
        }
    }
}

/// Answers a websocket whose resume was refused: a fatal `resume_failed`, then close.
pub async fn refuse<S: futures_util::Sink<Message> + Unpin>(socket: &mut S, why: &str) {
    let error = ServerMessage::error(ErrorCode::ResumeFailed, why, Some("resume"));
    let text = serde_json::to_string(&error).expect("server messages serialise");
    let _ = socket.send(Message::Text(text.into())).await;
    let frame = CloseFrame {
        code: super::close::FATAL_ERROR,
        reason: Utf8Bytes::from(super::code_name(ErrorCode::ResumeFailed)),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
