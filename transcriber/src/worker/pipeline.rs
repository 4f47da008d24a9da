//! The audio thread of one room: every speaker's [`SpeakerPipeline`], fed packet by packet.
//!
//! Decoding and VAD are cheap but synchronous (a VAD call every 512 ms of audio per speaker), so they run
//! on one dedicated OS thread per room rather than on the async runtime. The thread takes
//! [`PipelineInput`]s in order and emits [`PipelineOutput`]s: finished utterances, optional interim requests,
//! and `Synced` markers that tell the room task everything before them has been emitted. It flushes a
//! speaker that has sent nothing for `idle_flush` (muted, stopped talking with DTX off, left).
//!
//! This thread must never recognise speech or block on anything but its input channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use samtal_client::Received;
use samtal_protocol::MediaKind;
use tokio::sync::{mpsc, oneshot};

use super::speaker::{SpeakerConfig, SpeakerPipeline, TimedUtterance, WallClock};
use super::stats::Counters;
use crate::audio::SAMPLE_RATE;
use crate::vad::SileroVad;

/// What the room task tells its audio thread.
pub(crate) enum PipelineInput {
    Packet(Received),
    /// A speaker's track ended: flush and forget it.
    EndTrack {
        participant_id: String,
        track_id: String,
    },
    /// A participant left: flush and forget all their tracks.
    EndParticipant(String),
    /// The room connection is gone (or the job stops): flush every speaker and forget them all, since a new
    /// connection brings new streams.
    Reset,
    /// Answered once everything before it has been processed and emitted.
    Sync(oneshot::Sender<()>),
}

/// What the audio thread hands on.
#[derive(Debug)]
pub(crate) enum PipelineOutput {
    Final {
        participant_id: String,
        utterance: TimedUtterance,
    },
    Interim {
        participant_id: String,
        start_ms: i64,
        pcm: Vec<f32>,
    },
    Synced(oneshot::Sender<()>),
}

/// Settings of the audio thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PipelineConfig {
    pub speaker: SpeakerConfig,
    pub idle_flush: Duration,
    /// Interim requests for an utterance in progress at most this often (None: no interims).
    pub interim_interval: Option<Duration>,
}

/// Shortest audio worth an interim decode.
const MIN_INTERIM_AUDIO: Duration = Duration::from_millis(700);
/// How often the thread wakes up without input to check for idle speakers and interims.
const TICK: Duration = Duration::from_millis(50);

struct Speaker {
    pipeline: SpeakerPipeline,
    last_interim: Option<Instant>,
}

/// Runs until the input channel closes (after flushing nothing: a closed channel means the room is gone).
pub(crate) fn run(
    room: String,
    input: Receiver<PipelineInput>,
    output: mpsc::UnboundedSender<PipelineOutput>,
    vad: SileroVad,
    clock: WallClock,
    config: PipelineConfig,
    counters: Arc<Counters>,
) {
    let span = tracing::info_span!("audio", %room);
    let _entered = span.enter();
    let mut speakers: HashMap<(String, String), Speaker> = HashMap::new();
    let emit = |participant_id: &str, done: Vec<TimedUtterance>| {
        for utterance in done {
            counters.utterances.fetch_add(1, Ordering::Relaxed);
            let _ = output.send(PipelineOutput::Final {
                participant_id: participant_id.to_owned(),
                utterance,
            });
        }
    };
    let mut last_tick = Instant::now();
    loop {
        let message = input.recv_timeout(TICK);
        match message {
            Ok(PipelineInput::Packet(packet)) => {
                counters.packets_processed.fetch_add(1, Ordering::Relaxed);
                if packet.kind != MediaKind::Audio {
                    continue;
                }
                let key = (packet.participant_id.clone(), packet.track_id.clone());
                let speaker = match speakers.entry(key) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        match SpeakerPipeline::new(&packet.participant_id, vad.clone(), clock, config.speaker) {
                            Ok(pipeline) => {
                                tracing::info!(speaker = %packet.participant_id, track = %packet.track_id, "new speaker");
                                e.insert(Speaker {
                                    pipeline,
                                    last_interim: None,
                                })
                            }
                            Err(err) => {
                                tracing::error!(speaker = %packet.participant_id, "cannot start a speaker pipeline: {err}");
                                continue;
                            }
                        }
                    }
                };
                match speaker.pipeline.push(&packet) {
                    Ok(done) => emit(&packet.participant_id, done),
                    Err(err) => {
                        counters.pipeline_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(speaker = %packet.participant_id, "audio pipeline: {err}");
                    }
                }
            }
            Ok(PipelineInput::EndTrack {
                participant_id,
                track_id,
            }) => {
                if let Some(mut s) = speakers.remove(&(participant_id.clone(), track_id)) {
                    emit(&participant_id, flush(&mut s.pipeline, &counters));
                }
            }
            Ok(PipelineInput::EndParticipant(participant_id)) => {
                let keys: Vec<_> = speakers.keys().filter(|(p, _)| *p == participant_id).cloned().collect();
                for key in keys {
                    if let Some(mut s) = speakers.remove(&key) {
                        emit(&participant_id, flush(&mut s.pipeline, &counters));
                    }
                }
            }
            Ok(PipelineInput::Reset) => {
                for ((participant_id, _), mut s) in speakers.drain() {
                    emit(&participant_id, flush(&mut s.pipeline, &counters));
                }
            }
            Ok(PipelineInput::Sync(done)) => {
                let _ = output.send(PipelineOutput::Synced(done));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if now.duration_since(last_tick) < TICK {
            continue;
        }
        last_tick = now;
        for ((participant_id, _), s) in speakers.iter_mut() {
            match s.pipeline.flush_if_idle(now, config.idle_flush) {
                Ok(done) => emit(participant_id, done),
                Err(err) => {
                    tracing::warn!(speaker = %participant_id, "flushing an idle speaker: {err}")
                }
            }
            let Some(interval) = config.interim_interval else {
                continue;
            };
            if s.last_interim.is_some_and(|t| now.duration_since(t) < interval) {
                continue;
            }
            if let Some((start_ms, pcm)) = s.pipeline.in_progress()
                && pcm.len() as f64 >= MIN_INTERIM_AUDIO.as_secs_f64() * SAMPLE_RATE as f64
            {
                s.last_interim = Some(now);
                let _ = output.send(PipelineOutput::Interim {
                    participant_id: participant_id.clone(),
                    start_ms,
                    pcm: pcm.to_vec(),
                });
            }
        }
    }
    tracing::debug!("audio thread ends");
}

fn flush(pipeline: &mut SpeakerPipeline, counters: &Counters) -> Vec<TimedUtterance> {
    pipeline.flush().unwrap_or_else(|err| {
        counters.pipeline_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(speaker = %pipeline.participant_id(), "flushing: {err}");
        Vec::new()
    })
}
