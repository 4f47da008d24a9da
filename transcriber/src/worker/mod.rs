//! The meeting side of the transcriber: a worker that takes transcription jobs from a Samtal server, joins
//! each room as a hidden participant and sends back recognised `segment`s.
//!
//! ```text
//!  control (websocket, `worker`)  ──jobs──▶ manager ──spawns──▶ room task per job (hidden participant)
//!                                                               │ packets
//!                                                               ▼
//!                                                  audio thread per room: SpeakerPipeline per speaker
//!                                                  (Opus decode → VAD → wall-clock utterances)
//!                                                               │ utterances
//!                                                               ▼
//!                       router ◀──results── RecognitionPool (shared, bounded, OS threads)
//!                         │
//!                         └──▶ room task: `segment` messages, outbox until `segment_stored` names them
//! ```
//!
//! * [`control`]: reconnects with backoff and re-registers after a server restart; the server re-sends
//!   `start` for the rooms it gives us. Jobs the server does not re-send within
//!   [`WorkerConfig::reregister_grace`] of a re-registration are stopped (another worker has them now).
//! * [`room`]: one job; survives room connection drops (flush, requeue unacknowledged finals, rejoin).
//! * [`speaker`] / [`pipeline`]: per-speaker decode + VAD with the wall-clock mapping, on a thread per room.
//! * [`outbox`]: finals until the server acknowledges them.
//! * [`stats`]: [`WorkerStats`], logged every [`WorkerConfig::stats_interval`]; [`metrics`] serves them to Prometheus.
//!
//! [`Worker::spawn`] runs all of it on the caller's tokio runtime, with whatever [`Recognizer`] the factory
//! makes (Whisper in production, `ScriptedRecognizer` in tests). Nothing here runs recognition on the
//! runtime: that is the pool's job.

mod control;
pub mod metrics;
mod outbox;
mod pipeline;
mod room;
mod speaker;
mod stats;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use samtal_protocol::JobAction;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

pub use metrics::StatsReader;
pub use outbox::Outbox;
pub use room::utterance_id;
pub use samtal_protocol::retry::{Backoff, BackoffConfig};
pub use speaker::{SpeakerConfig, SpeakerPipeline, SpeakerStats, TimedUtterance, WallClock};
pub use stats::{RoomStats, WorkerStats};

use crate::error::Result;
use crate::pool::{PoolConfig, RecognitionPool, Recognized};
use crate::recognize::Recognizer;
use crate::vad::{SileroConfig, SileroVad};
use control::{ControlConfig, ControlEvent};
use room::{Recognition, RoomInput, Ticket};
use stats::Counters;

/// Everything a worker needs to know. [`WorkerConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The server's websocket endpoint, `ws://HOST:PORT/ws`.
    pub server: String,
    /// Service token for the `worker` registration; `None` for a server that runs open.
    pub token: Option<String>,
    /// Rooms this worker takes at once (the server never gives it more).
    pub capacity: u32,
    /// Display name in `join` (hidden participants are listed nowhere; the server may use the token's).
    pub name: String,
    /// The Silero VAD model.
    pub vad: SileroConfig,
    /// Per-speaker decoding, segmentation and wall-clock mapping.
    pub speaker: SpeakerConfig,
    /// Recognition threads and queue sizes.
    pub pool: PoolConfig,
    /// Language when a job names none; `None` lets Whisper detect it.
    pub language: Option<String>,
    /// Send interim captions of utterances in progress this often; `None`: finals only.
    pub interim_interval: Option<Duration>,
    /// A speaker silent (no packets) this long has the utterance in progress closed.
    pub idle_flush: Duration,
    /// A room connection whose media (ICE) stays disconnected this long is dropped and rejoined.
    /// Longer than the server waits before it restarts ICE on a silent subscribe connection (16 s),
    /// so that a blip or a network change is mended by that restart and the session kept.
    pub media_timeout: Duration,
    /// Backoff of the control and room connections.
    pub reconnect: BackoffConfig,
    /// After re-registering, jobs the server has not re-sent within this time are stopped.
    pub reregister_grace: Duration,
    /// How long a stopping job may take to flush its last segments.
    pub stop_timeout: Duration,
    /// Heartbeat on the control connection.
    pub ping_interval: Duration,
    /// Log [`WorkerStats`] this often; `None`: never.
    pub stats_interval: Option<Duration>,
    /// Local address of the room connections' UDP sockets.
    pub bind_ip: IpAddr,
}

impl WorkerConfig {
    /// Defaults for a worker of `server` (`ws://HOST:PORT/ws`) with the Silero model at `vad_model`.
    pub fn new(server: impl Into<String>, vad_model: impl Into<std::path::PathBuf>) -> Self {
        Self {
            server: server.into(),
            token: None,
            capacity: 4,
            name: "Transcriber".into(),
            vad: SileroConfig::new(vad_model),
            speaker: SpeakerConfig::default(),
            pool: PoolConfig::default(),
            language: None,
            interim_interval: None,
            idle_flush: Duration::from_millis(1000),
            media_timeout: Duration::from_secs(20),
            reconnect: BackoffConfig::default(),
            reregister_grace: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(20),
            ping_interval: Duration::from_secs(10),
            stats_interval: Some(Duration::from_secs(30)),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// What the worker's tasks share.
pub(crate) struct Shared {
    pub config: WorkerConfig,
    pub vad: SileroVad,
    pub pool: RecognitionPool,
    pub clock: WallClock,
    pub counters: Arc<Counters>,
    tickets: Mutex<HashMap<u64, Ticket>>,
    next_ticket: AtomicU64,
}

impl Shared {
    pub fn register(&self, ticket: Ticket) -> u64 {
        let n = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut t) = self.tickets.lock() {
            t.insert(n, ticket);
        }
        n
    }

    pub fn unregister(&self, n: u64) -> Option<Ticket> {
        self.tickets.lock().ok()?.remove(&n)
    }
}

/// Starts workers.
pub struct Worker;

impl Worker {
    /// Loads the VAD model, starts the recognition pool with recognizers from `make_recognizer(worker_index)`
    /// and starts the control connection on the current tokio runtime. Blocking while models load: call it
    /// at start-up (or from `spawn_blocking`). Fails on a bad VAD model or a recognizer that cannot be made.
    pub fn spawn<F>(config: WorkerConfig, make_recognizer: F) -> Result<WorkerHandle>
    where
        F: Fn(usize) -> Result<Box<dyn Recognizer>>,
    {
        let vad = SileroVad::load(&config.vad)?;
        let (results_tx, results_rx) = mpsc::channel(64);
        let pool = RecognitionPool::start(config.pool, results_tx, make_recognizer)?;
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            config,
            vad,
            pool,
            clock: WallClock::now(),
            counters: counters.clone(),
            tickets: Mutex::new(HashMap::new()),
            next_ticket: AtomicU64::new(0),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let control = tokio::spawn(control::run(
            ControlConfig {
                server: shared.config.server.clone(),
                token: shared.config.token.clone(),
                capacity: shared.config.capacity,
                reconnect: shared.config.reconnect,
                ping_interval: shared.config.ping_interval,
            },
            control_tx,
            stop_rx.clone(),
            counters,
        ));
        let manager = tokio::spawn(manage(shared.clone(), control_rx, stop_rx));
        let router = tokio::spawn(route_results(shared.clone(), results_rx));
        let logger = shared.config.stats_interval.map(|every| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    tick.tick().await;
                    shared.counters.snapshot(shared.pool.stats()).log();
                }
            })
        });
        Ok(WorkerHandle {
            shared: Some(shared),
            stop: stop_tx,
            control: Some(control),
            manager: Some(manager),
            router: Some(router),
            logger,
        })
    }
}

/// A running worker. Dropping it kills it like [`WorkerHandle::kill`].
pub struct WorkerHandle {
    /// `None` only while shutting down.
    shared: Option<Arc<Shared>>,
    stop: watch::Sender<bool>,
    control: Option<JoinHandle<()>>,
    manager: Option<JoinHandle<()>>,
    router: Option<JoinHandle<()>>,
    logger: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Lag, queues and counters now.
    pub fn stats(&self) -> WorkerStats {
        match &self.shared {
            Some(shared) => shared.counters.snapshot(shared.pool.stats()),
            None => WorkerStats::default(),
        }
    }

    /// A reader of [`Self::stats`] for another task (the metrics endpoint); it does not keep the worker alive.
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader(self.shared.as_ref().map(Arc::downgrade).unwrap_or_default())
    }

    /// Graceful stop: unregisters (the server moves our rooms elsewhere), flushes every job (their last
    /// utterances are recognised, sent and acknowledged, each within `stop_timeout`), leaves the rooms,
    /// then stops the recognition threads.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(control) = self.control.take() {
            let _ = control.await;
        }
        if let Some(manager) = self.manager.take() {
            let _ = manager.await;
        }
        self.stats().log();
        for task in [self.router.take(), self.logger.take()].into_iter().flatten() {
            task.abort();
            let _ = task.await;
        }
        // Rooms are gone; once their last helpers have let go, wait for the recognition threads.
        let Some(mut shared) = self.shared.take() else {
            return;
        };
        for _ in 0..50 {
            match Arc::try_unwrap(shared) {
                Ok(shared) => {
                    shared.pool.shutdown().await;
                    return;
                }
                Err(still_shared) => shared = still_shared,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::debug!("recognition threads left to finish on their own");
    }

    /// Abrupt stop, as if the process died: connections drop, nothing is flushed.
    pub fn kill(self) {
        drop(self);
    }

    /// Waits until the worker ends by itself (it normally does not; use with `select!` and a signal).
    pub async fn wait(&mut self) {
        if let Some(manager) = &mut self.manager {
            let _ = manager.await;
            self.manager = None;
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        for task in [&self.control, &self.manager, &self.router, &self.logger]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

struct RoomEntry {
    tx: mpsc::UnboundedSender<RoomInput>,
    /// Registration during which the server last sent `start` for it.
    epoch: u64,
}

/// Turns jobs into room tasks; on shutdown stops them all and waits for their flush.
async fn manage(
    shared: Arc<Shared>,
    mut control: mpsc::UnboundedReceiver<ControlEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rooms: HashMap<String, RoomEntry> = HashMap::new();
    // Dropping (or aborting) the manager aborts every room task with it.
    let mut tasks = JoinSet::new();
    let mut epoch = 0u64;
    let mut grace: Option<Instant> = None;
    loop {
        let grace_at = grace.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            event = control.recv() => match event {
                None => break,
                Some(ControlEvent::Registered) => {
                    epoch += 1;
                    if !rooms.is_empty() {
                        grace = Some(Instant::now() + shared.config.reregister_grace);
                    }
                }
                Some(ControlEvent::Lost) => {}
                Some(ControlEvent::Job(job)) => match job.action {
                    JobAction::Start => {
                        if let Some(entry) = rooms.get_mut(&job.room).filter(|e| !e.tx.is_closed()) {
                            entry.epoch = epoch;
                            let _ = entry.tx.send(RoomInput::Update(job));
                        } else {
                            let (tx, rx) = mpsc::unbounded_channel();
                            rooms.insert(job.room.clone(), RoomEntry { tx: tx.clone(), epoch });
                            tasks.spawn(room::run(shared.clone(), job, rx, tx));
                        }
                    }
                    JobAction::Stop => {
                        if let Some(entry) = rooms.remove(&job.room) {
                            let _ = entry.tx.send(RoomInput::Stop);
                        }
                    }
                },
            },
            _ = tokio::time::sleep_until(grace_at.into()), if grace.is_some() => {
                grace = None;
                rooms.retain(|room, entry| {
                    let keep = entry.epoch == epoch;
                    if !keep {
                        tracing::info!(%room, "the server did not give this room back after re-registering; stopping it");
                        let _ = entry.tx.send(RoomInput::Stop);
                    }
                    keep
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    // The handle was dropped (killed): no flushing, the room tasks go with this one.
                    return;
                }
                break;
            }
        }
        rooms.retain(|_, entry| !entry.tx.is_closed());
    }
    for entry in rooms.values() {
        let _ = entry.tx.send(RoomInput::Stop);
    }
    while tasks.join_next().await.is_some() {}
}

/// Delivers each recognition result to the room that asked for it.
async fn route_results(shared: Arc<Shared>, mut results: mpsc::Receiver<Recognized>) {
    let counters = &shared.counters;
    while let Some(r) = results.recv().await {
        let Some(ticket) = shared.unregister(r.utterance) else {
            continue; // a superseded interim, or its room is gone
        };
        if ticket.is_final {
            counters.recognitions_in_progress.fetch_sub(1, Ordering::Relaxed);
        }
        let (text, language, confidence) = match r.result {
            Ok(segments) => {
                let text = segments
                    .iter()
                    .map(|s| s.text.trim())
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                let language = segments
                    .iter()
                    .find_map(|s| s.language.clone())
                    .or(ticket.language.clone());
                let confidence = mean_confidence(&segments);
                (Some(text), language, confidence)
            }
            Err(e) => {
                counters.recognition_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(speaker = %ticket.participant_id, "recognition failed: {e}");
                (None, ticket.language.clone(), None)
            }
        };
        let _ = ticket.reply.send(RoomInput::Recognized(Recognition {
            is_final: ticket.is_final,
            participant_id: ticket.participant_id,
            start_ms: ticket.start_ms,
            end_ms: ticket.end_ms,
            text,
            language,
            confidence,
        }));
    }
}

/// Mean confidence of the segments, weighted by their duration (plain mean if they have none).
fn mean_confidence(segments: &[crate::recognize::Segment]) -> Option<f32> {
    if segments.is_empty() {
        return None;
    }
    let weights: Vec<f64> = segments
        .iter()
        .map(|s| s.end.saturating_sub(s.start).as_secs_f64())
        .collect();
    let total: f64 = weights.iter().sum();
    let mean = if total > 0.0 {
        segments
            .iter()
            .zip(&weights)
            .map(|(s, w)| s.confidence as f64 * w)
            .sum::<f64>()
            / total
    } else {
        segments.iter().map(|s| s.confidence as f64).sum::<f64>() / segments.len() as f64
    };
    Some(mean.clamp(0.0, 1.0) as f32)
}
