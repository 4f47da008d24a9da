//! A bounded pool of dedicated recognition threads, fed from async code without ever blocking it.
//!
//! * Finals (completed utterances) are never dropped: `submit_final` waits (asynchronously) for one of
//!   `final_capacity` slots, which are held until the result has been delivered — backpressure reaches the
//!   producer instead of losing speech.
//! * Interims (partial decodes of an utterance in progress, for live captions) are best effort:
//!   `submit_interim` never waits; a newer interim of the same speaker replaces a queued older one, and when
//!   the interim queue is full the oldest is dropped. Workers always take finals first.
//! * Results go to a bounded channel; a slow consumer stalls the workers (not the runtime), which then stalls
//!   `submit_final`.
//! * [`PoolStats`] gives queue lengths, waiting time of the oldest job and queued audio for metrics.
//!
//! Each worker owns one `Recognizer` (a whisper state) and runs on its own OS thread. This module must never
//! run recognition on an async task, hold its lock while recognising, or drop a final.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::audio::SAMPLE_RATE;
use crate::error::{Error, Result};
use crate::recognize::{Options, Recognizer, Segment};

/// Pool sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Worker threads, each with its own recognizer. Workers × whisper threads ≤ free cores.
    pub workers: usize,
    /// Finals queued or in progress before `submit_final` waits.
    pub final_capacity: usize,
    /// Interims queued before the oldest is dropped.
    pub interim_capacity: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            final_capacity: 32,
            interim_capacity: 4,
        }
    }
}

/// Final or interim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Final,
    Interim,
}

/// One utterance to recognise.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Whose audio (track or participant id).
    pub speaker: String,
    /// The utterance index from the segmenter.
    pub utterance: u64,
    /// Offset of `pcm` in the speaker's stream (samples at 16 kHz).
    pub start_sample: u64,
    pub pcm: Vec<f32>,
    pub options: Options,
}

/// A finished job.
#[derive(Debug)]
pub struct Recognized {
    pub speaker: String,
    pub utterance: u64,
    pub start_sample: u64,
    pub priority: Priority,
    pub result: Result<Vec<Segment>>,
    /// Time spent queued.
    pub waited: Duration,
    /// Time spent recognising.
    pub took: Duration,
    /// Length of the audio.
    pub audio: Duration,
}

/// Numbers for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub workers: usize,
    pub busy_workers: usize,
    pub queued_finals: usize,
    pub queued_interims: usize,
    /// How long the oldest queued job has been waiting (the recognition lag).
    pub oldest_wait: Duration,
    /// Audio waiting in the queues.
    pub queued_audio: Duration,
    pub completed_finals: u64,
    pub completed_interims: u64,
    pub dropped_interims: u64,
}

struct Queued {
    job: Job,
    priority: Priority,
    enqueued: Instant,
    _slot: Option<OwnedSemaphorePermit>,
}

#[derive(Default)]
struct Queues {
    finals: VecDeque<Queued>,
    interims: VecDeque<Queued>,
    closed: bool,
}

struct Shared {
    queues: Mutex<Queues>,
    wake: Condvar,
    busy: AtomicUsize,
    completed_finals: AtomicU64,
    completed_interims: AtomicU64,
    dropped_interims: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The recognition worker pool.
pub struct RecognitionPool {
    shared: Arc<Shared>,
    final_slots: Arc<Semaphore>,
    interim_capacity: usize,
    workers: Vec<JoinHandle<()>>,
}

impl RecognitionPool {
    /// Starts `config.workers` threads with recognizers made by `make(worker_index)`, delivering results to
    /// `results`. Recognizers are created here, so a bad model fails this call. Blocking (model states take a
    /// moment): call at startup or from `spawn_blocking`.
    pub fn start<F>(config: PoolConfig, results: mpsc::Sender<Recognized>, make: F) -> Result<Self>
    where
        F: Fn(usize) -> Result<Box<dyn Recognizer>>,
    {
        if config.workers == 0 || config.final_capacity == 0 {
            return Err(Error::Config(
                "pool needs at least one worker and one final slot".into(),
            ));
        }
        let recognizers = (0..config.workers).map(&make).collect::<Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues::default()),
            wake: Condvar::new(),
            busy: AtomicUsize::new(0),
            completed_finals: AtomicU64::new(0),
            completed_interims: AtomicU64::new(0),
            dropped_interims: AtomicU64::new(0),
        });
        let mut workers = Vec::with_capacity(config.workers);
        for (i, recognizer) in recognizers.into_iter().enumerate() {
            let shared = shared.clone();
            let results = results.clone();
            let handle = std::thread::Builder::new()
                .name(format!("recognize-{i}"))
                .spawn(move || worker(shared, recognizer, results))
                .map_err(|e| Error::Config(format!("cannot start worker thread: {e}")))?;
            workers.push(handle);
        }
        Ok(Self {
            shared,
            final_slots: Arc::new(Semaphore::new(config.final_capacity)),
            interim_capacity: config.interim_capacity,
            workers,
        })
    }

    /// Queues a final; waits (asynchronously) while `final_capacity` finals are queued or in progress.
    pub async fn submit_final(&self, job: Job) -> Result<()> {
        let slot = self
            .final_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::PoolClosed)?;
        let mut q = self.shared.lock();
        if q.closed {
            return Err(Error::PoolClosed);
        }
        q.finals.push_back(Queued {
            job,
            priority: Priority::Final,
            enqueued: Instant::now(),
            _slot: Some(slot),
        });
        drop(q);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Queues an interim without waiting. Returns false when it was dropped at once (capacity 0); an older
    /// queued interim of the same speaker, or the oldest one when the queue is full, is dropped instead.
    pub fn submit_interim(&self, job: Job) -> Result<bool> {
        let mut q = self.shared.lock();
        if q.closed {
            return Err(Error::PoolClosed);
        }
        if self.interim_capacity == 0 {
            self.shared.dropped_interims.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        let before = q.interims.len();
        q.interims.retain(|queued| queued.job.speaker != job.speaker);
        let mut dropped = before - q.interims.len();
        while q.interims.len() >= self.interim_capacity {
            q.interims.pop_front();
            dropped += 1;
        }
        q.interims.push_back(Queued {
            job,
            priority: Priority::Interim,
            enqueued: Instant::now(),
            _slot: None,
        });
        drop(q);
        self.shared
            .dropped_interims
            .fetch_add(dropped as u64, Ordering::Relaxed);
        self.shared.wake.notify_one();
        Ok(true)
    }

    pub fn stats(&self) -> PoolStats {
        let q = self.shared.lock();
        let now = Instant::now();
        let all = q.finals.iter().chain(q.interims.iter());
        let oldest_wait = all.clone().map(|j| now - j.enqueued).max().unwrap_or_default();
        let queued_samples: usize = all.map(|j| j.job.pcm.len()).sum();
        PoolStats {
            workers: self.workers.len(),
            busy_workers: self.shared.busy.load(Ordering::Relaxed),
            queued_finals: q.finals.len(),
            queued_interims: q.interims.len(),
            oldest_wait,
            queued_audio: Duration::from_secs_f64(queued_samples as f64 / SAMPLE_RATE as f64),
            completed_finals: self.shared.completed_finals.load(Ordering::Relaxed),
            completed_interims: self.shared.completed_interims.load(Ordering::Relaxed),
            dropped_interims: self.shared.dropped_interims.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting jobs, lets the workers finish every queued final (queued interims are dropped), and
    /// waits for them without blocking the runtime.
    pub async fn shutdown(mut self) {
        self.close();
        let workers = std::mem::take(&mut self.workers);
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
    }

    fn close(&self) {
        let mut q = self.shared.lock();
        q.closed = true;
        let dropped = q.interims.len() as u64;
        q.interims.clear();
        drop(q);
        self.shared.dropped_interims.fetch_add(dropped, Ordering::Relaxed);
        self.final_slots.close();
        self.shared.wake.notify_all();
    }
}

impl Drop for RecognitionPool {
    /// Without `shutdown`, workers still finish the queued finals, then exit on their own.
    fn drop(&mut self) {
        self.close();
    }
}

fn worker(shared: Arc<Shared>, mut recognizer: Box<dyn Recognizer>, results: mpsc::Sender<Recognized>) {
    loop {
        let queued = {
            let mut q = shared.lock();
            loop {
                if let Some(job) = q.finals.pop_front() {
                    break job;
                }
                if let Some(job) = q.interims.pop_front() {
                    break job;
                }
                if q.closed {
                    return;
                }
                q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        shared.busy.fetch_add(1, Ordering::Relaxed);
        let waited = queued.enqueued.elapsed();
        let began = Instant::now();
        let result = recognizer.transcribe(&queued.job.pcm, &queued.job.options);
        let took = began.elapsed();
        shared.busy.fetch_sub(1, Ordering::Relaxed);
        let counter = match queued.priority {
            Priority::Final => &shared.completed_finals,
            Priority::Interim => &shared.completed_interims,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let Queued {
            job, priority, _slot, ..
        } = queued;
        let audio = Duration::from_secs_f64(job.pcm.len() as f64 / SAMPLE_RATE as f64);
        let message = Recognized {
            speaker: job.speaker,
            utterance: job.utterance,
            start_sample: job.start_sample,
            priority,
            result,
            waited,
            took,
            audio,
        };
        // Blocks this worker (never the runtime) while the consumer is behind; the final's slot is held
        // until delivery, so producers feel the backpressure. A gone consumer ends the worker.
        if results.blocking_send(message).is_err() {
            return;
        }
        drop(_slot);
    }
}
