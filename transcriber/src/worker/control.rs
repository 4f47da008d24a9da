//! The worker's control connection: a websocket to the server's `/ws` that registers with
//! `{"type":"worker","token":…,"capacity":N}` instead of joining, then receives `job`s.
//!
//! It reconnects with exponential backoff whenever the connection fails or ends (server restart, network),
//! registers again, and reports each registration so the manager can tell which running jobs the server
//! re-sent. It sends `ping` every `ping_interval` (the server drops silent connections after 30 s).
//! This module must never touch media or rooms: it only turns the websocket into [`ControlEvent`]s.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use samtal_protocol::{ClientMessage, ErrorCode, Job, ServerMessage};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::stats::Counters;
use samtal_protocol::retry::{Backoff, BackoffConfig};

/// What the control connection reports to the manager.
#[derive(Debug)]
pub(crate) enum ControlEvent {
    /// `worker` was sent on a fresh connection; the server re-sends `start` for the rooms it gives us.
    Registered,
    /// The connection ended.
    Lost,
    Job(Job),
}

/// Settings of the control connection.
#[derive(Debug, Clone)]
pub(crate) struct ControlConfig {
    pub server: String,
    pub token: Option<String>,
    pub capacity: u32,
    pub reconnect: BackoffConfig,
    pub ping_interval: Duration,
}

/// A connection that lived this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps the control connection up until `stop` turns true.
pub(crate) async fn run(
    config: ControlConfig,
    events: mpsc::UnboundedSender<ControlEvent>,
    mut stop: watch::Receiver<bool>,
    counters: Arc<Counters>,
) {
    let mut backoff = Backoff::new(config.reconnect);
    loop {
        // A dropped sender (the handle is gone) also means stop.
        if *stop.borrow() || stop.has_changed().is_err() {
            return;
        }
        let began = Instant::now();
        let outcome = serve(&config, &events, &mut stop, &counters).await;
        counters.connected.store(false, Ordering::Relaxed);
        let _ = events.send(ControlEvent::Lost);
        match outcome {
            Ended::Stopped => return,
            Ended::Failed(why) => {
                counters.control_failures.fetch_add(1, Ordering::Relaxed);
                if began.elapsed() >= STABLE_AFTER {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(server = %config.server, retry_in_ms = delay.as_millis() as u64, "control connection: {why}");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

enum Ended {
    Stopped,
    Failed(String),
}

async fn serve(
    config: &ControlConfig,
    events: &mpsc::UnboundedSender<ControlEvent>,
    stop: &mut watch::Receiver<bool>,
    counters: &Counters,
) -> Ended {
    let connect = tokio_tungstenite::connect_async(config.server.as_str());
    let ws = tokio::select! {
        r = tokio::time::timeout(CONNECT_TIMEOUT, connect) => match r {
            Err(_) => return Ended::Failed("connecting timed out".into()),
            Ok(Err(e)) => return Ended::Failed(format!("cannot connect: {e}")),
            Ok(Ok((ws, _))) => ws,
        },
        _ = stop.changed() => return Ended::Stopped,
    };
    let (mut sink, mut stream) = ws.split();
    let register = ClientMessage::Worker {
        token: config.token.clone(),
        capacity: Some(config.capacity),
    };
    if let Err(e) = send(&mut sink, &register).await {
        return Ended::Failed(format!("cannot register: {e}"));
    }
    counters.registrations.fetch_add(1, Ordering::Relaxed);
    counters.connected.store(true, Ordering::Relaxed);
    tracing::info!(server = %config.server, capacity = config.capacity, "registered as a transcription worker");
    let _ = events.send(ControlEvent::Registered);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + config.ping_interval, config.ping_interval);
    let mut nonce = 0u64;
    loop {
        tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => return Ended::Failed(format!("server closed the connection ({frame:?})")),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Ended::Failed(format!("websocket: {e}")),
                    None => return Ended::Failed("server closed the connection".into()),
                };
                match serde_json::from_str::<ServerMessage>(text.as_str()) {
                    Ok(ServerMessage::Job(job)) => {
                        tracing::info!(action = ?job.action, room = %job.room, meeting = %job.meeting_id, "job");
                        let _ = events.send(ControlEvent::Job(job));
                    }
                    Ok(ServerMessage::Error { code, message, fatal, .. }) => {
                        if code == ErrorCode::Unauthorized {
                            tracing::error!(%message, "the server refused the worker token");
                        } else {
                            tracing::warn!(?code, %message, "server error on the control connection");
                        }
                        if fatal {
                            return Ended::Failed(format!("server error {code:?}: {message}"));
                        }
                    }
                    Ok(ServerMessage::Pong { .. }) => {}
                    Ok(other) => tracing::debug!(?other, "ignored on the control connection"),
                    Err(e) => tracing::warn!(error = %e, text = %text.as_str(), "unparseable server message"),
                }
            }
            _ = ping.tick() => {
                nonce += 1;
                if let Err(e) = send(&mut sink, &ClientMessage::Ping { nonce: Some(format!("w{nonce}")) }).await {
                    return Ended::Failed(format!("websocket send: {e}"));
                }
            }
            _ = stop.changed() => {
                let _ = sink.send(Message::Close(None)).await;
                let _ = sink.close().await;
                return Ended::Stopped;
            }
        }
    }
}

async fn send<S>(sink: &mut S, message: &ClientMessage) -> Result<(), String>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let text = serde_json::to_string(message).map_err(|e| e.to_string())?;
    sink.send(Message::text(text)).await.map_err(|e| e.to_string())
}
