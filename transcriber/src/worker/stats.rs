//! The worker's numbers: lag, queues and counters, as a [`WorkerStats`] snapshot and a periodic log line.
//!
//! Lag is measured per final segment when it is first sent: wall clock now minus the end of its audio
//! (`end_ms`): VAD's end-of-speech wait + queueing + recognition + delivery. Queues: utterances waiting for a
//! recognition slot, the pool's own queues, and segments the server has not acknowledged yet.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::pool::PoolStats;

/// Counters shared by the worker's tasks and threads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connected: AtomicBool,
    pub registrations: AtomicU64,
    pub control_failures: AtomicU64,
    pub packets_received: AtomicU64,
    pub packets_processed: AtomicU64,
    pub utterances: AtomicU64,
    pub pipeline_errors: AtomicU64,
    /// Utterances handed to the pool and not yet back.
    pub recognitions_in_progress: AtomicU64,
    pub finals_recognized: AtomicU64,
    pub empty_finals: AtomicU64,
    pub recognition_errors: AtomicU64,
    pub finals_sent: AtomicU64,
    pub finals_acked: AtomicU64,
    pub finals_resent: AtomicU64,
    pub finals_abandoned: AtomicU64,
    pub interims_sent: AtomicU64,
    pub interims_dropped: AtomicU64,
    pub last_lag_ms: AtomicU64,
    pub max_lag_ms: AtomicU64,
    pub lag_total_ms: AtomicU64,
    pub lag_samples: AtomicU64,
    pub rooms: Mutex<BTreeMap<String, RoomStats>>,
}

impl Counters {
    pub fn record_lag(&self, lag_ms: i64) {
        let lag = lag_ms.max(0) as u64;
        self.last_lag_ms.store(lag, Ordering::Relaxed);
        self.max_lag_ms.fetch_max(lag, Ordering::Relaxed);
        self.lag_total_ms.fetch_add(lag, Ordering::Relaxed);
        self.lag_samples.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_room(&self, stats: RoomStats) {
        if let Ok(mut rooms) = self.rooms.lock() {
            rooms.insert(stats.room.clone(), stats);
        }
    }

    pub fn remove_room(&self, room: &str) {
        if let Ok(mut rooms) = self.rooms.lock() {
            rooms.remove(room);
        }
    }

    pub fn snapshot(&self, pool: PoolStats) -> WorkerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rooms: Vec<RoomStats> = self
            .rooms
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        let lag_samples = get(&self.lag_samples);
        WorkerStats {
            connected: self.connected.load(Ordering::Relaxed),
            registrations: get(&self.registrations),
            control_failures: get(&self.control_failures),
            unacked_segments: rooms.iter().map(|r| r.unacked).sum(),
            oldest_unacked: rooms.iter().map(|r| r.oldest_unacked).max().unwrap_or_default(),
            rooms,
            pool,
            packets_received: get(&self.packets_received),
            packet_backlog: get(&self.packets_received).saturating_sub(get(&self.packets_processed)),
            utterances: get(&self.utterances),
            pipeline_errors: get(&self.pipeline_errors),
            recognitions_in_progress: get(&self.recognitions_in_progress),
            finals_recognized: get(&self.finals_recognized),
            empty_finals: get(&self.empty_finals),
            recognition_errors: get(&self.recognition_errors),
            finals_sent: get(&self.finals_sent),
            finals_acked: get(&self.finals_acked),
            finals_resent: get(&self.finals_resent),
            finals_abandoned: get(&self.finals_abandoned),
            interims_sent: get(&self.interims_sent),
            interims_dropped: get(&self.interims_dropped),
            last_lag: Duration::from_millis(get(&self.last_lag_ms)),
            max_lag: Duration::from_millis(get(&self.max_lag_ms)),
            mean_lag: Duration::from_millis(get(&self.lag_total_ms).checked_div(lag_samples).unwrap_or(0)),
        }
    }
}

/// One room being transcribed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomStats {
    pub room: String,
    pub meeting_id: String,
    /// Whether the room connection is up.
    pub connected: bool,
    /// Successful joins (1 + rejoins).
    pub joins: u64,
    /// Our participant id in the room (the latest join).
    pub participant_id: Option<String>,
    /// Final segments not yet acknowledged by the server.
    pub unacked: usize,
    pub oldest_unacked: Duration,
    /// Final segments acknowledged by the server.
    pub acked: u64,
    /// Utterances of this room in recognition.
    pub recognizing: u64,
    /// Whether the job is stopping (flushing).
    pub stopping: bool,
}

/// A snapshot of the worker (see [`crate::worker::WorkerHandle::stats`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkerStats {
    /// Whether the control connection is registered with the server.
    pub connected: bool,
    /// `worker` registrations sent (1 + reconnects).
    pub registrations: u64,
    /// Control connection attempts that failed or ended.
    pub control_failures: u64,
    pub rooms: Vec<RoomStats>,
    pub pool: PoolStats,
    /// RTP packets received over all rooms.
    pub packets_received: u64,
    /// Packets received but not yet through decode + VAD.
    pub packet_backlog: u64,
    /// Utterances cut by the VAD.
    pub utterances: u64,
    pub pipeline_errors: u64,
    /// Utterances submitted to the pool (queued or running) whose result has not come back.
    pub recognitions_in_progress: u64,
    pub finals_recognized: u64,
    /// Finals the recognizer found no text in (not sent).
    pub empty_finals: u64,
    pub recognition_errors: u64,
    /// Final segments sent (resends included).
    pub finals_sent: u64,
    pub finals_acked: u64,
    /// Finals put back for resending after a room connection dropped.
    pub finals_resent: u64,
    /// Finals given up on (the job stopped before the server acknowledged them).
    pub finals_abandoned: u64,
    pub interims_sent: u64,
    /// Interim results not sent (room not connected, or the final was already out).
    pub interims_dropped: u64,
    pub unacked_segments: usize,
    pub oldest_unacked: Duration,
    /// End of speech → first send, of the last final.
    pub last_lag: Duration,
    pub max_lag: Duration,
    pub mean_lag: Duration,
}

impl WorkerStats {
    /// Logs the numbers as one line.
    pub fn log(&self) {
        tracing::info!(
            connected = self.connected,
            rooms = self.rooms.len(),
            packets = self.packets_received,
            backlog = self.packet_backlog,
            utterances = self.utterances,
            recognizing = self.recognitions_in_progress,
            pool_queued = self.pool.queued_finals,
            pool_oldest_wait_ms = self.pool.oldest_wait.as_millis() as u64,
            pool_queued_audio_ms = self.pool.queued_audio.as_millis() as u64,
            sent = self.finals_sent,
            acked = self.finals_acked,
            unacked = self.unacked_segments,
            oldest_unacked_ms = self.oldest_unacked.as_millis() as u64,
            lag_ms = self.last_lag.as_millis() as u64,
            mean_lag_ms = self.mean_lag.as_millis() as u64,
            max_lag_ms = self.max_lag.as_millis() as u64,
            "transcriber stats"
        );
    }
}
