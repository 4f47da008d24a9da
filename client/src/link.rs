//! The signaling websocket's one task: writes what the caller queues, reads what the server sends,
//! pings, and — for a session whose `joined` offered resumption — carries the session over to a
//! new websocket when the old one drops (docs/protocol.md, "Resuming a session"): it counts the
//! messages each way, opens `?resume=TOKEN&received=N`, and sends again what the server missed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use samtal_protocol::{ClientMessage, ResumeInfo, ServerMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::{debug, info, trace, warn};

/// How often the client sends `ping` (the server drops clients silent for 30 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A websocket that brought nothing (not even a `pong`) for this long is taken as dead.
pub const SILENCE: Duration = Duration::from_secs(12);
/// How long one attempt to open a websocket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// Waits between resume attempts; the last repeats until the grace period ends.
const RETRY: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];
/// Messages kept for sending again after a resume.
const SENT_LOG_MAX: usize = 512;

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) enum Outgoing {
    Message(ClientMessage),
    Close(oneshot::Sender<()>),
}

/// What the link counts and keeps for a resume.
#[derive(Debug, Default)]
struct Counts {
    /// Text messages received from the server in this session.
    received: u64,
    /// Messages sent in this session, and the last [`SENT_LOG_MAX`] of them by number.
    sent: u64,
    log: VecDeque<(u64, String)>,
}

impl Counts {
    fn number(&mut self, text: &str) {
        self.sent += 1;
        self.log.push_back((self.sent, text.to_owned()));
        if self.log.len() > SENT_LOG_MAX {
            self.log.pop_front();
        }
    }

    /// The messages after the server's count `received`, or None when some are no longer kept.
    fn after(&self, received: u64) -> Option<Vec<String>> {
        let missing = usize::try_from(self.sent.checked_sub(received)?).ok()?;
        if missing > self.log.len() {
            return None;
        }
        Some(
            self.log
                .iter()
                .skip(self.log.len() - missing)
                .map(|(_, t)| t.clone())
                .collect(),
        )
    }
}

/// Why a websocket stopped.
enum Stop {
    /// The caller closed, or the server ended the session on purpose: the link is over.
    Over,
    /// It dropped (or went silent): resume, if the session can.
    Dropped,
}

/// Runs the link on `ws` until the session is over; messages go to `in_tx`.
pub(crate) async fn run(
    url: String,
    ws: WsStream,
    mut out_rx: mpsc::UnboundedReceiver<Outgoing>,
    in_tx: mpsc::UnboundedSender<ServerMessage>,
) {
    let mut counts = Counts::default();
    let mut resume: Option<ResumeInfo> = None;
    let mut ws = ws;
    // After a resume, new messages wait until `resumed` said which old ones to send again.
    let mut awaiting_resumed = false;
    loop {
        let stop = drive(
            &mut ws,
            &mut out_rx,
            &in_tx,
            &mut counts,
            &mut resume,
            &mut awaiting_resumed,
        )
        .await;
        match (stop, &resume) {
            (Stop::Dropped, Some(info)) => {
                let Some(next) = reconnect(&url, info, counts.received).await else {
                    warn!(
                        "the signaling session could not be resumed within {} s",
                        info.grace_secs
                    );
                    return;
                };
                ws = next;
                awaiting_resumed = true;
            }
            _ => return,
        }
    }
}

/// One websocket's life in the session.
async fn drive(
    ws: &mut WsStream,
    out_rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    in_tx: &mpsc::UnboundedSender<ServerMessage>,
    counts: &mut Counts,
    resume: &mut Option<ResumeInfo>,
    awaiting_resumed: &mut bool,
) -> Stop {
    static NONCE: AtomicU64 = AtomicU64::new(1);
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    loop {
        let message = tokio::select! {
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => {
                        debug!(?frame, "server closed the websocket");
                        return Stop::Over;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        debug!(error = %e, "websocket read failed");
                        return Stop::Dropped;
                    }
                    None => return Stop::Dropped,
                };
                counts.received += 1;
                last_heard = Instant::now();
                trace!(text = %text.as_str(), "recv");
                let message = match serde_json::from_str::<ServerMessage>(text.as_str()) {
                    Ok(message) => message,
                    Err(e) => {
                        warn!(error = %e, text = %text.as_str(), "unparseable server message");
                        continue;
                    }
                };
                match &message {
                    ServerMessage::Joined { resume: Some(info), .. } => *resume = Some(info.clone()),
                    ServerMessage::Resumed { received } => {
                        let Some(missed) = counts.after(*received) else {
                            warn!("the server lacks messages this client no longer keeps; the session cannot go on");
                            return Stop::Over;
                        };
                        info!(resent = missed.len(), "signaling session resumed");
                        for text in missed {
                            if ws.send(Message::text(text)).await.is_err() {
                                return Stop::Dropped;
                            }
                        }
                        *awaiting_resumed = false;
                    }
                    ServerMessage::Error { fatal: true, .. } | ServerMessage::Removed { .. } => *resume = None,
                    _ => {}
                }
                if in_tx.send(message).is_err() {
                    return Stop::Over;
                }
                continue;
            }
            outgoing = out_rx.recv(), if !*awaiting_resumed => match outgoing {
                Some(Outgoing::Message(message)) => message,
                Some(Outgoing::Close(done)) => {
                    close(ws).await;
                    let _ = done.send(());
                    return Stop::Over;
                }
                // Every sender is gone: the owner is done with the session.
                None => {
                    close(ws).await;
                    return Stop::Over;
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE {
                    debug!("nothing from the server for {} s; the websocket is taken as dead", SILENCE.as_secs());
                    return Stop::Dropped;
                }
                if *awaiting_resumed {
                    continue;
                }
                ClientMessage::Ping {
                    nonce: Some(NONCE.fetch_add(1, Ordering::Relaxed).to_string()),
                }
            }
        };
        let text = match serde_json::to_string(&message) {
            Ok(text) => text,
            Err(e) => {
                warn!(error = %e, "could not encode {}", message.type_name());
                continue;
            }
        };
        trace!(%text, "send");
        counts.number(&text);
        if let Err(e) = ws.send(Message::text(text)).await {
            debug!(error = %e, "websocket send failed");
            return Stop::Dropped;
        }
    }
}

/// Closes with "normal closure": the server ends the session at once (no resume is waited for).
async fn close(ws: &mut WsStream) {
    let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    let _ = ws.close(Some(frame)).await;
}

/// Opens `url?resume=…` until one opens or the grace period ends.
async fn reconnect(url: &str, info: &ResumeInfo, received: u64) -> Option<WsStream> {
    let give_up = Instant::now() + Duration::from_secs(info.grace_secs);
    let sep = if url.contains('?') { '&' } else { '?' };
    let resume_url = format!("{url}{sep}resume={}&received={received}", info.token);
    info!("signaling websocket dropped; resuming");
    for attempt in 0.. {
        let wait = RETRY[attempt.min(RETRY.len() - 1)];
        if Instant::now() + wait >= give_up {
            return None;
        }
        tokio::time::sleep(wait).await;
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(resume_url.as_str())).await {
            Ok(Ok((ws, _))) => return Some(ws),
            Ok(Err(e)) => debug!(error = %e, attempt, "resume attempt failed"),
            Err(_) => debug!(attempt, "resume attempt timed out"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_after_the_servers_count_are_sent_again() {
        let mut counts = Counts::default();
        for i in 1..=5 {
            counts.number(&format!("m{i}"));
        }
        assert_eq!(counts.after(3).unwrap(), ["m4", "m5"]);
        assert!(counts.after(5).unwrap().is_empty());
        assert!(counts.after(6).is_none(), "a count above what was sent");
    }

    #[test]
    fn a_count_older_than_the_log_cannot_be_resumed() {
        let mut counts = Counts::default();
        for i in 0..SENT_LOG_MAX + 3 {
            counts.number(&i.to_string());
        }
        assert!(counts.after(2).is_none());
        assert_eq!(counts.after(3).unwrap().len(), SENT_LOG_MAX);
    }
}
