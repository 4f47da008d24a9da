//! The writing half of a session: sends the session's outbound queue in order on the current
//! websocket, keeps the last messages it took from the queue so that a resumed session can send
//! again what the client missed, and moves to the new websocket when the session resumes.
//!
//! While the session has no websocket (it dropped and the client has not resumed yet) the queue
//! is still drained into the replay log, so nothing queued for the participant is lost or blocks
//! the room; if more is queued than the log keeps, the resume fails and the client joins again.

use crate::rooms::Outbound;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use samtal_protocol::ServerMessage;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};

pub type WsSink = SplitSink<WebSocket, Message>;

/// Messages a session keeps for a resume, at most (and at most [`REPLAY_BYTES`] of them).
pub const REPLAY_MESSAGES: usize = 512;
pub const REPLAY_BYTES: usize = 1 << 20;

/// A resumed session's new websocket: the writer sends what the client has not received (it
/// received `received` messages) and goes on there. `reply` says whether that was possible.
pub struct Attach {
    pub sink: WsSink,
    pub received: u64,
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// The last text frames taken from the queue, numbered from 1 in the session.
#[derive(Debug, Default)]
pub struct Replay {
    frames: VecDeque<Utf8Bytes>,
    bytes: usize,
    /// Number of the newest frame (frames taken so far).
    taken: u64,
}

impl Replay {
    pub fn push(&mut self, text: Utf8Bytes) {
        self.taken += 1;
        self.bytes += text.len();
        self.frames.push_back(text);
        while self.frames.len() > REPLAY_MESSAGES || (self.bytes > REPLAY_BYTES && self.frames.len() > 1) {
            if let Some(old) = self.frames.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// The frames after the first `received`, or why a client that received that many cannot have them.
    pub fn after(&self, received: u64) -> Result<impl Iterator<Item = &Utf8Bytes>, String> {
        if received > self.taken {
            return Err(format!(
                "the client says it received {received} messages, but the server sent only {}",
                self.taken
            ));
        }
        let missing = usize::try_from(self.taken - received).unwrap_or(usize::MAX);
        if missing > self.frames.len() {
            return Err(format!(
                "{missing} messages were missed, more than the server keeps for a resume"
            ));
        }
        Ok(self.frames.iter().skip(self.frames.len() - missing))
    }
}

/// Starts the writer on the session's first websocket. It stops after a close (fatal error,
/// removal, the session's end), when the queue closes, or when the session is gone while it has
/// no websocket. `removed` is set when it delivered a moderator's removal.
pub fn spawn(
    sink: WsSink,
    out_rx: mpsc::Receiver<Outbound>,
    removed: Arc<AtomicBool>,
) -> (mpsc::Sender<Attach>, tokio::task::JoinHandle<()>) {
    let (attach_tx, attach_rx) = mpsc::channel(1);
    let task = tokio::spawn(run(sink, out_rx, attach_rx, removed));
    (attach_tx, task)
}

/// What one queued item becomes on the wire.
enum Frame {
    /// A message, and the close frame to send after it, if the session ends with it.
    Text(Utf8Bytes, Option<(u16, String)>),
    Close(u16, String),
}

fn frame(outbound: Outbound, removed: &AtomicBool) -> Frame {
    let (message, close) = match outbound {
        Outbound::Message(m) => {
            let close = match &m {
                ServerMessage::Error { fatal: true, code, .. } => {
                    Some((super::close::FATAL_ERROR, super::code_name(*code)))
                }
                _ => None,
            };
            (m, close)
        }
        Outbound::Removed { by } => {
            removed.store(true, Ordering::Relaxed);
            (
                ServerMessage::Removed { by },
                Some((super::close::REMOVED, "removed".to_owned())),
            )
        }
        Outbound::Close { code, reason } => return Frame::Close(code, reason.to_owned()),
    };
    let text = serde_json::to_string(&message).expect("server messages serialise");
    Frame::Text(text.into(), close)
}

async fn send_close(sink: &mut WsSink, code: u16, reason: String) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

async fn run(
    sink: WsSink,
    mut out_rx: mpsc::Receiver<Outbound>,
    mut attach_rx: mpsc::Receiver<Attach>,
    removed: Arc<AtomicBool>,
) {
    let mut sink = Some(sink);
    let mut replay = Replay::default();
    let mut attach_open = true;
    loop {
        tokio::select! {
            biased;
            attach = attach_rx.recv(), if attach_open => match attach {
                Some(attach) => sink = attach_to(&replay, attach).await,
                None => {
                    attach_open = false;
                    if sink.is_none() {
                        return;
                    }
                }
            },
            outbound = out_rx.recv() => {
                let Some(outbound) = outbound else { return };
                let (text, close) = match frame(outbound, &removed) {
                    Frame::Close(code, reason) => {
                        if let Some(s) = sink.as_mut() {
                            send_close(s, code, reason).await;
                        }
                        return;
                    }
                    Frame::Text(text, close) => (text, close),
                };
                replay.push(text.clone());
                if let Some(s) = sink.as_mut() {
                    // A new websocket may arrive while this write hangs on a dead one.
                    tokio::select! {
                        biased;
                        attach = attach_rx.recv(), if attach_open => match attach {
                            // The frame is in the replay log: the new websocket gets it if the client lacks it.
                            Some(attach) => sink = attach_to(&replay, attach).await,
                            None => attach_open = false,
                        },
                        written = s.send(Message::Text(text)) => if written.is_err() {
                            sink = None;
                        },
                    }
                }
                if let Some((code, reason)) = close {
                    if let Some(s) = sink.as_mut() {
                        send_close(s, code, reason).await;
                    }
                    return;
                }
                if sink.is_none() && !attach_open {
                    return;
                }
            }
        }
    }
}

/// Sends a resumed client what it missed on its new websocket, which becomes the writer's; on
/// failure the new websocket gets a fatal `resume_failed` and is closed.
async fn attach_to(replay: &Replay, attach: Attach) -> Option<WsSink> {
    let Attach {
        mut sink,
        received,
        reply,
    } = attach;
    let missed = match replay.after(received) {
        Ok(missed) => missed,
        Err(why) => {
            super::resume::refuse(&mut sink, &why).await;
            let _ = reply.send(Err(why));
            return None;
        }
    };
    for text in missed {
        if sink.send(Message::Text(text.clone())).await.is_err() {
            // That websocket is gone too: wait for the next.
            let _ = reply.send(Ok(()));
            return None;
        }
    }
    let _ = reply.send(Ok(()));
    Some(sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: usize) -> Replay {
        let mut replay = Replay::default();
        for i in 1..=n {
            replay.push(Utf8Bytes::from(format!("m{i}")));
        }
        replay
    }

    fn after(replay: &Replay, received: u64) -> Result<Vec<String>, String> {
        replay
            .after(received)
            .map(|frames| frames.map(|f| f.as_str().to_owned()).collect())
    }

    #[test]
    fn a_client_gets_exactly_the_messages_after_those_it_received() {
        let replay = log(5);
        assert_eq!(after(&replay, 3).unwrap(), ["m4", "m5"]);
        assert_eq!(after(&replay, 5).unwrap(), Vec::<String>::new());
        assert_eq!(after(&replay, 0).unwrap(), ["m1", "m2", "m3", "m4", "m5"]);
    }

    #[test]
    fn a_count_beyond_what_was_sent_is_refused() {
        assert!(after(&log(5), 6).unwrap_err().contains("sent only 5"));
    }

    #[test]
    fn messages_no_longer_kept_make_the_resume_fail() {
        let replay = log(REPLAY_MESSAGES + 10);
        assert!(after(&replay, 9).unwrap_err().contains("more than the server keeps"));
        let kept = after(&replay, 10).unwrap();
        assert_eq!(kept.len(), REPLAY_MESSAGES);
        assert_eq!(kept[0], "m11");
    }

    #[test]
    fn the_log_is_bounded_in_bytes_too() {
        let mut replay = Replay::default();
        let big = "x".repeat(REPLAY_BYTES / 4 + 1);
        for _ in 0..8 {
            replay.push(Utf8Bytes::from(big.clone()));
        }
        assert_eq!(replay.frames.len(), 3);
        assert!(replay.bytes <= REPLAY_BYTES);
        assert!(after(&replay, 4).is_err() && after(&replay, 5).is_ok());
    }
}
