//! One transcription job: a hidden participant in one room, from `start` to `stop`.
//!
//! The room task joins the room with the job's service token (hidden: the server sends it every speaker's
//! audio and lists it nowhere), forwards received packets to the room's audio thread (`pipeline`), hands the
//! utterances it cuts to the shared recognition pool (`submit_loop`), turns results into `segment` messages
//! and keeps finals in the [`Outbox`] until the server has acknowledged them. When the room connection drops
//! it flushes the speakers, puts unacknowledged finals back in the queue and rejoins with backoff (a new
//! token from a re-sent `start` job makes it retry at once). On `stop` it flushes every speaker, waits for
//! the last recognitions and acknowledgements (at most `stop_timeout`), then leaves.
//!
//! Segment ids are `{meeting_id}:{participant_id}:{start_ms}`: stable, and unique per speaker because one
//! speaker's utterances never overlap. This module must never run recognition or VAD on the async runtime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use samtal_client::samtal_protocol::{ClientMessage, ErrorCode, Job, PcKind, Segment, ServerMessage};
use samtal_client::{JoinOptions, Participant, ParticipantEvent, ParticipantOptions, RTCPeerConnectionState};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::Shared;
use super::outbox::Outbox;
use super::pipeline::{self, PipelineConfig, PipelineInput, PipelineOutput};
use super::stats::RoomStats;
use crate::pool;
use crate::recognize::{Language, Options};
use samtal_protocol::retry::Backoff;

/// What reaches a room task.
#[derive(Debug)]
pub(crate) enum RoomInput {
    /// The server (re)sent `start` for this room: maybe a new token, language or prompt.
    Update(Job),
    /// The server sent `stop`, or the worker shuts down.
    Stop,
    /// A recognition result of this room.
    Recognized(Recognition),
}

/// A recognition result on its way back to its room.
#[derive(Debug)]
pub(crate) struct Recognition {
    pub is_final: bool,
    pub participant_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// `None` when recognition failed; empty when it found no speech.
    pub text: Option<String>,
    pub language: Option<String>,
    pub confidence: Option<f32>,
}

/// Where a pool job's result goes (the pool's `utterance` field carries the ticket number).
pub(crate) struct Ticket {
    pub reply: mpsc::UnboundedSender<RoomInput>,
    pub is_final: bool,
    pub participant_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub language: Option<String>,
}

/// Recognition options of a job: the job's language, else the worker's default, else automatic.
fn options_for(job: &Job, default_language: Option<&str>) -> Options {
    let language = job
        .language
        .as_deref()
        .or(default_language)
        .filter(|l| !l.is_empty() && *l != "auto");
    Options {
        language: language.map_or(Language::Auto, |l| Language::Code(l.to_owned())),
        initial_prompt: job.prompt.clone().filter(|p| !p.trim().is_empty()),
    }
}

/// The stable id of a speaker's utterance.
pub fn utterance_id(meeting_id: &str, participant_id: &str, start_ms: i64) -> String {
    format!("{meeting_id}:{participant_id}:{start_ms}")
}

struct Conn {
    participant: Participant,
    events: mpsc::UnboundedReceiver<ParticipantEvent>,
    guard: ConnGuard,
}

/// What must not outlive a room connection however it ends.
struct ConnGuard {
    /// Moves received packets to the audio thread; stopped once the job stops (nothing new is cut then).
    forwarder: tokio::task::AbortHandle,
    /// Dropping a participant leaves its peer connection's driver task (and UDP socket) running: closed here.
    subscribe: Arc<dyn webrtc::peer_connection::PeerConnection>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.forwarder.abort();
        let pc = self.subscribe.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// Runs one job until it is stopped and flushed (or abandoned after `stop_timeout`).
pub(crate) async fn run(
    shared: Arc<Shared>,
    job: Job,
    mut inputs: mpsc::UnboundedReceiver<RoomInput>,
    reply: mpsc::UnboundedSender<RoomInput>,
) {
    let span = tracing::info_span!("job", room = %job.room, meeting = %job.meeting_id);
    let task = RoomTask::new(shared, &job, reply);
    tracing::Instrument::instrument(task.run(&mut inputs), span).await;
}

struct RoomTask {
    shared: Arc<Shared>,
    room: String,
    meeting_id: String,
    token: String,
    options: Arc<Mutex<Options>>,
    /// Finals submitted to the pool whose result this task has not received yet.
    outstanding: Arc<AtomicU64>,
    audio: std::sync::mpsc::Sender<PipelineInput>,
    audio_thread: Option<std::thread::JoinHandle<()>>,
    /// Forwarders and the submitter: aborted with this task.
    tasks: JoinSet<()>,
    outbox: Outbox,
    /// Start of the latest final per speaker: older interims are not sent any more.
    last_final_start: HashMap<String, i64>,
    stats: RoomStats,
    /// Rejoin backoff.
    backoff: Backoff,
    /// Resend backoff after the server failed to store segments.
    store_backoff: Backoff,
    /// No segments are sent before this (after a store failure).
    send_after: Instant,
    /// The job is stopping: no new audio is taken in.
    stopping: bool,
    /// Since when the media connection has been disconnected (ICE), if it is.
    media_lost_since: Option<Instant>,
}

impl RoomTask {
    fn new(shared: Arc<Shared>, job: &Job, reply: mpsc::UnboundedSender<RoomInput>) -> Self {
        let (audio_tx, audio_rx) = std::sync::mpsc::channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let config = PipelineConfig {
            speaker: shared.config.speaker,
            idle_flush: shared.config.idle_flush,
            interim_interval: shared.config.interim_interval,
        };
        let (vad, clock, counters, room) = (
            shared.vad.clone(),
            shared.clock,
            shared.counters.clone(),
            job.room.clone(),
        );
        let audio_thread = std::thread::Builder::new()
            .name(format!("audio-{}", job.room))
            .spawn(move || pipeline::run(room, audio_rx, out_tx, vad, clock, config, counters))
            .map_err(|e| tracing::error!("cannot start the audio thread: {e}"))
            .ok();
        let options = Arc::new(Mutex::new(options_for(job, shared.config.language.as_deref())));
        let outstanding = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        tasks.spawn(submit_loop(
            shared.clone(),
            job.room.clone(),
            out_rx,
            reply,
            options.clone(),
            outstanding.clone(),
        ));
        let stats = RoomStats {
            room: job.room.clone(),
            meeting_id: job.meeting_id.clone(),
            ..RoomStats::default()
        };
        Self {
            backoff: Backoff::new(shared.config.reconnect),
            store_backoff: Backoff::new(shared.config.reconnect),
            send_after: Instant::now(),
            stopping: false,
            media_lost_since: None,
            shared,
            room: job.room.clone(),
            meeting_id: job.meeting_id.clone(),
            token: job.token.clone(),
            options,
            outstanding,
            audio: audio_tx,
            audio_thread,
            tasks,
            outbox: Outbox::new(),
            last_final_start: HashMap::new(),
            stats,
        }
    }

    async fn run(mut self, inputs: &mut mpsc::UnboundedReceiver<RoomInput>) {
        let mut conn: Option<Conn> = None;
        let mut reconnect_at = Instant::now();
        let mut stop_deadline: Option<Instant> = None;
        let mut synced: Option<oneshot::Receiver<()>> = None;
        let mut flushed = false;
        let mut removed = false;
        loop {
            if let Some(deadline) = stop_deadline {
                let done = flushed && self.outstanding.load(Ordering::Relaxed) == 0 && self.outbox.is_empty();
                if done || removed {
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        unacked = self.outbox.len(),
                        recognizing = self.outstanding.load(Ordering::Relaxed),
                        "stop timeout: giving up on the rest"
                    );
                    break;
                }
            } else if removed {
                break;
            }
            if conn.is_none() && Instant::now() >= reconnect_at && !removed {
                match self.join().await {
                    Ok(c) => {
                        conn = Some(c);
                        self.send_pending(&conn);
                    }
                    Err(e) => {
                        let delay = self.backoff.next_delay();
                        tracing::warn!(retry_in_ms = delay.as_millis() as u64, "joining the room failed: {e}");
                        reconnect_at = Instant::now() + delay;
                    }
                }
            }
            if conn.is_some()
                && self
                    .media_lost_since
                    .is_some_and(|t| t.elapsed() >= self.shared.config.media_timeout)
            {
                tracing::warn!(
                    "media connection lost for {:?}: rejoining",
                    self.shared.config.media_timeout
                );
                self.disconnect(&mut conn);
                reconnect_at = Instant::now();
            }
            self.publish_stats(&conn, stop_deadline.is_some());

            let mut wake = Instant::now() + Duration::from_secs(1);
            if conn.is_none() {
                wake = wake.min(reconnect_at);
            }
            if let Some(t) = self.media_lost_since {
                wake = wake.min(t + self.shared.config.media_timeout);
            }
            if let Some(deadline) = stop_deadline {
                wake = wake.min(deadline);
            }
            if conn.is_some() && self.outbox.has_unsent() {
                wake = wake.min(self.send_after.max(Instant::now()));
            }
            tokio::select! {
                input = inputs.recv() => match input {
                    None => break,
                    Some(RoomInput::Stop) => {
                        if stop_deadline.is_none() {
                            tracing::info!("stopping: flushing speakers");
                            self.stopping = true;
                            if let Some(c) = &conn {
                                c.guard.forwarder.abort();
                            }
                            stop_deadline = Some(Instant::now() + self.shared.config.stop_timeout);
                            let (tx, rx) = oneshot::channel();
                            let _ = self.audio.send(PipelineInput::Reset);
                            let _ = self.audio.send(PipelineInput::Sync(tx));
                            synced = Some(rx);
                        }
                    }
                    Some(RoomInput::Update(new)) => {
                        if new.token != self.token {
                            self.token = new.token.clone();
                            // A fresh token (the server restarted, say): retry joining now.
                            reconnect_at = Instant::now();
                            self.backoff.reset();
                        }
                        if new.meeting_id != self.meeting_id {
                            tracing::info!(meeting = %new.meeting_id, "new meeting id");
                            self.meeting_id = new.meeting_id.clone();
                            self.stats.meeting_id = new.meeting_id.clone();
                        }
                        if let Ok(mut o) = self.options.lock() {
                            *o = options_for(&new, self.shared.config.language.as_deref());
                        }
                    }
                    Some(RoomInput::Recognized(r)) => self.on_recognized(r, &conn),
                },
                event = next_event(&mut conn) => {
                    match self.on_event(event) {
                        EventOutcome::Continue => {}
                        EventOutcome::Disconnected => {
                            self.disconnect(&mut conn);
                            let delay = self.backoff.next_delay();
                            reconnect_at = Instant::now() + delay;
                        }
                        EventOutcome::Removed => {
                            self.disconnect(&mut conn);
                            removed = true;
                        }
                    }
                }
                r = async { synced.as_mut().expect("guarded").await }, if synced.is_some() => {
                    let _ = r;
                    synced = None;
                    flushed = true;
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            self.send_pending(&conn);
        }
        let abandoned = self.outbox.len() as u64;
        if abandoned > 0 {
            self.shared
                .counters
                .finals_abandoned
                .fetch_add(abandoned, Ordering::Relaxed);
            tracing::warn!(ids = ?self.outbox.pending_ids(), "final segments never acknowledged");
        }
        if let Some(c) = conn.take() {
            c.participant.close().await;
        }
        self.shared.counters.remove_room(&self.room);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        // The last sender goes: the audio thread ends; wait for it (it may be inside a VAD call).
        self.audio = std::sync::mpsc::channel().0;
        if let Some(thread) = self.audio_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        tracing::info!("job ended");
    }

    async fn join(&mut self) -> samtal_client::Result<Conn> {
        let join = JoinOptions::new(&self.room, &self.shared.config.name)
            .with_token(self.token.clone())
            .hidden(true)
            // A network blip between worker and server must not cost the meeting its transcriber.
            .resumable(true);
        let mut options = ParticipantOptions::from_join(join);
        options.media_capacity = 16_384;
        options.bind_ip = self.shared.config.bind_ip;
        let mut participant = Participant::join(&self.shared.config.server, options).await?;
        let events = participant.take_events().ok_or(samtal_client::Error::Closed)?;
        let mut media = participant.take_media().ok_or(samtal_client::Error::Closed)?;
        let audio = self.audio.clone();
        let counters = self.shared.counters.clone();
        let forwarder = self.tasks.spawn(async move {
            while let Some(packet) = media.recv().await {
                counters.packets_received.fetch_add(1, Ordering::Relaxed);
                if audio.send(PipelineInput::Packet(packet)).is_err() {
                    break;
                }
            }
        });
        self.stats.joins += 1;
        self.stats.participant_id = Some(participant.id().to_owned());
        tracing::info!(participant = %participant.id(), joins = self.stats.joins, "joined the room hidden");
        if self.stopping {
            forwarder.abort();
        }
        Ok(Conn {
            guard: ConnGuard {
                forwarder,
                subscribe: participant.subscribe_connection().clone(),
            },
            participant,
            events,
        })
    }

    /// The room connection is gone: flush speakers, resend what was not acknowledged after rejoining.
    fn disconnect(&mut self, conn: &mut Option<Conn>) {
        self.media_lost_since = None;
        if conn.take().is_none() {
            return;
        }
        tracing::warn!(unacked = self.outbox.len(), "room connection lost");
        let _ = self.audio.send(PipelineInput::Reset);
        let before = self.outbox.resent();
        self.outbox.requeue();
        self.shared
            .counters
            .finals_resent
            .fetch_add(self.outbox.resent() - before, Ordering::Relaxed);
    }

    fn on_event(&mut self, event: Option<ParticipantEvent>) -> EventOutcome {
        let Some(event) = event else {
            return EventOutcome::Disconnected;
        };
        match event {
            ParticipantEvent::Server(ServerMessage::SegmentStored { utterance_id })
                if self.outbox.stored(&utterance_id) =>
            {
                self.backoff.reset();
                self.store_backoff.reset();
                self.shared.counters.finals_acked.fetch_add(1, Ordering::Relaxed);
            }
            ParticipantEvent::Server(ServerMessage::SegmentRefused {
                utterance_id,
                code,
                message,
                retry,
            }) => {
                tracing::warn!(%utterance_id, ?code, %message, retry, "segment refused");
                if self.outbox.refused(&utterance_id, retry) && retry {
                    // Not stored (the server's store failed): send it again, later.
                    self.shared.counters.finals_resent.fetch_add(1, Ordering::Relaxed);
                    self.send_after = Instant::now() + self.store_backoff.next_delay();
                }
            }
            ParticipantEvent::Server(ServerMessage::Removed { by }) => {
                tracing::warn!(%by, "a moderator removed the transcriber from the room");
                return EventOutcome::Removed;
            }
            ParticipantEvent::Server(ServerMessage::Error {
                code,
                message,
                ref_type,
                fatal,
            }) => {
                tracing::warn!(?code, %message, ?ref_type, fatal, "server error in the room");
                if fatal || code == ErrorCode::Unauthorized {
                    return EventOutcome::Disconnected;
                }
            }
            ParticipantEvent::Server(ServerMessage::ParticipantLeft { participant_id, .. }) => {
                let _ = self.audio.send(PipelineInput::EndParticipant(participant_id));
            }
            ParticipantEvent::TrackEnded {
                participant_id,
                track_id,
            } => {
                let _ = self.audio.send(PipelineInput::EndTrack {
                    participant_id,
                    track_id,
                });
            }
            ParticipantEvent::SignalingClosed => return EventOutcome::Disconnected,
            ParticipantEvent::ConnectionState {
                pc: PcKind::Subscribe,
                state,
            } => match state {
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    return EventOutcome::Disconnected;
                }
                RTCPeerConnectionState::Disconnected => {
                    tracing::warn!("no media from the server; rejoining unless it comes back");
                    self.media_lost_since.get_or_insert_with(Instant::now);
                }
                RTCPeerConnectionState::Connected => self.media_lost_since = None,
                _ => {}
            },
            _ => {}
        }
        EventOutcome::Continue
    }

    fn on_recognized(&mut self, r: Recognition, conn: &Option<Conn>) {
        let counters = &self.shared.counters;
        if r.is_final {
            self.outstanding.fetch_sub(1, Ordering::Relaxed);
            let last = self
                .last_final_start
                .entry(r.participant_id.clone())
                .or_insert(i64::MIN);
            *last = (*last).max(r.start_ms);
        }
        let Some(text) = r.text else {
            return; // failed; counted by the router
        };
        let text = text.trim().to_owned();
        if r.is_final {
            counters.finals_recognized.fetch_add(1, Ordering::Relaxed);
            if text.is_empty() {
                counters.empty_finals.fetch_add(1, Ordering::Relaxed);
                return;
            }
            counters.record_lag(now_unix_ms() - r.end_ms);
        }
        let segment = Segment {
            utterance_id: utterance_id(&self.meeting_id, &r.participant_id, r.start_ms),
            participant_id: r.participant_id.clone(),
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            text,
            language: r.language,
            confidence: r.confidence,
            is_final: r.is_final,
        };
        if r.is_final {
            self.outbox.push(segment, Instant::now());
            return;
        }
        let superseded = self
            .last_final_start
            .get(&r.participant_id)
            .is_some_and(|&last| r.start_ms <= last);
        match conn {
            Some(c) if !superseded && !segment.text.is_empty() => {
                if c.participant.signal().send(ClientMessage::Segment(segment)).is_ok() {
                    counters.interims_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                counters.interims_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends queued finals; each stays in the outbox until the server answers for its utterance id.
    fn send_pending(&mut self, conn: &Option<Conn>) {
        let Some(c) = conn else { return };
        if Instant::now() < self.send_after {
            return;
        }
        let segments = self.outbox.send_batch();
        if segments.is_empty() {
            return;
        }
        let signal = c.participant.signal();
        let n = segments.len() as u64;
        for segment in segments {
            if signal.send(ClientMessage::Segment(segment)).is_err() {
                return; // the drop shows up as an event; the batch is requeued then
            }
        }
        self.shared.counters.finals_sent.fetch_add(n, Ordering::Relaxed);
    }

    fn publish_stats(&mut self, conn: &Option<Conn>, stopping: bool) {
        self.stats.connected = conn.is_some();
        self.stats.unacked = self.outbox.len();
        self.stats.oldest_unacked = self.outbox.oldest_age(Instant::now());
        self.stats.acked = self.outbox.acked();
        self.stats.recognizing = self.outstanding.load(Ordering::Relaxed);
        self.stats.stopping = stopping;
        self.shared.counters.set_room(self.stats.clone());
    }
}

enum EventOutcome {
    Continue,
    Disconnected,
    Removed,
}

/// The next event of the room connection; pending forever while there is none. `None`: it closed.
async fn next_event(conn: &mut Option<Conn>) -> Option<ParticipantEvent> {
    match conn {
        Some(c) => c.events.recv().await,
        None => std::future::pending().await,
    }
}

pub(crate) use samtal_client::samtal_protocol::unix_ms as now_unix_ms;

/// Hands the audio thread's utterances to the recognition pool, in order. Finals wait for a slot (never
/// dropped); interims are best effort. A `Synced` marker is answered once every final before it is queued.
async fn submit_loop(
    shared: Arc<Shared>,
    room: String,
    mut from_audio: mpsc::UnboundedReceiver<PipelineOutput>,
    reply: mpsc::UnboundedSender<RoomInput>,
    options: Arc<Mutex<Options>>,
    outstanding: Arc<AtomicU64>,
) {
    let counters = shared.counters.clone();
    // The latest interim ticket per speaker: a newer one replaces it in the pool, so its ticket goes too.
    let mut interim_tickets: HashMap<String, u64> = HashMap::new();
    while let Some(output) = from_audio.recv().await {
        let current = options.lock().map(|o| o.clone()).unwrap_or_default();
        let language = match &current.language {
            Language::Code(c) => Some(c.clone()),
            Language::Auto => None,
        };
        match output {
            PipelineOutput::Final {
                participant_id,
                utterance,
            } => {
                let ticket = shared.register(Ticket {
                    reply: reply.clone(),
                    is_final: true,
                    participant_id: participant_id.clone(),
                    start_ms: utterance.start_ms,
                    end_ms: utterance.end_ms,
                    language,
                });
                outstanding.fetch_add(1, Ordering::Relaxed);
                counters.recognitions_in_progress.fetch_add(1, Ordering::Relaxed);
                let job = pool::Job {
                    speaker: format!("{room}/{participant_id}"),
                    utterance: ticket,
                    start_sample: utterance.utterance.start_sample,
                    pcm: utterance.utterance.samples,
                    options: current,
                };
                if let Err(e) = shared.pool.submit_final(job).await {
                    tracing::error!("recognition pool refused a final: {e}");
                    shared.unregister(ticket);
                    outstanding.fetch_sub(1, Ordering::Relaxed);
                    counters.recognitions_in_progress.fetch_sub(1, Ordering::Relaxed);
                    counters.recognition_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            PipelineOutput::Interim {
                participant_id,
                start_ms,
                pcm,
            } => {
                let end_ms = start_ms + (pcm.len() as i64 * 1000 / crate::audio::SAMPLE_RATE as i64);
                let ticket = shared.register(Ticket {
                    reply: reply.clone(),
                    is_final: false,
                    participant_id: participant_id.clone(),
                    start_ms,
                    end_ms,
                    language,
                });
                if let Some(old) = interim_tickets.insert(participant_id.clone(), ticket) {
                    shared.unregister(old);
                }
                let job = pool::Job {
                    speaker: format!("{room}/{participant_id}"),
                    utterance: ticket,
                    start_sample: 0,
                    pcm,
                    options: current,
                };
                if !matches!(shared.pool.submit_interim(job), Ok(true)) {
                    shared.unregister(ticket);
                    counters.interims_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            PipelineOutput::Synced(done) => {
                let _ = done.send(());
            }
        }
    }
    for (_, ticket) in interim_tickets {
        shared.unregister(ticket);
    }
}
