//! One speaker's audio in a meeting: RTP packets as the room connection receives them → decoded 16 kHz
//! audio → VAD utterances stamped with wall-clock times.
//!
//! The speaker's timeline is the decoder's: samples since the speaker's first packet, DTX pauses and losses
//! included, driven by RTP timestamps (so network jitter does not stretch it). It is tied to the wall clock
//! once, at the first packet (its arrival minus its own duration), and re-tied only when the two drift apart
//! by more than [`SpeakerConfig::resync_threshold`] (an SFU that rewrote timestamps, a sender that restarted):
//! then the utterance in progress is closed first so no utterance straddles two anchors. A new SSRC (the
//! sender restarted its stream) gets a fresh decoder on the same terms.
//!
//! This module is synchronous and does no I/O: the room's pipeline thread calls it. It must never recognise
//! speech or talk to the network.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use samtal_client::Received;

use crate::audio::{DecoderConfig, DecoderStats, SAMPLE_RATE, SpeakerDecoder};
use crate::error::Result;
use crate::vad::{Segmenter, SegmenterConfig, SileroVad, Utterance};

/// Settings of one speaker's pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakerConfig {
    pub decoder: DecoderConfig,
    pub segmenter: SegmenterConfig,
    /// Re-tie the timeline to the wall clock when it differs from packet arrival by more than this.
    pub resync_threshold: Duration,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        Self {
            decoder: DecoderConfig::default(),
            // Live captions: a 300 ms pause ends an utterance (captions come sooner; on jfk.wav it cuts
            // exactly whisper.cpp's four reference segments, where 500 ms merges the last two).
            segmenter: SegmenterConfig {
                min_silence: Duration::from_millis(300),
                ..SegmenterConfig::default()
            },
            resync_threshold: Duration::from_secs(2),
        }
    }
}

/// Converts `Instant`s (packet arrival) to Unix milliseconds, from one reading of both clocks.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    instant: Instant,
    unix_ms: f64,
}

impl WallClock {
    /// Reads both clocks now.
    pub fn now() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        Self::at(Instant::now(), unix_ms)
    }

    /// `instant` was `unix_ms` (tests use this to pin the clock).
    pub fn at(instant: Instant, unix_ms: f64) -> Self {
        Self { instant, unix_ms }
    }

    /// Unix milliseconds of `t`.
    pub fn unix_ms(&self, t: Instant) -> f64 {
        if t >= self.instant {
            self.unix_ms + (t - self.instant).as_secs_f64() * 1000.0
        } else {
            self.unix_ms - (self.instant - t).as_secs_f64() * 1000.0
        }
    }
}

/// An utterance with its place on the wall clock.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedUtterance {
    /// Unix ms of its first sample (padding included).
    pub start_ms: i64,
    /// Unix ms one past its last sample.
    pub end_ms: i64,
    pub utterance: Utterance,
}

/// Where the timeline meets the wall clock: timeline sample `sample` is Unix time `unix_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Anchor {
    sample: u64,
    unix_ms: f64,
}

impl Anchor {
    fn unix_ms(&self, sample: u64) -> f64 {
        self.unix_ms + (sample as f64 - self.sample as f64) * 1000.0 / SAMPLE_RATE as f64
    }
}

/// Counters of one speaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpeakerStats {
    pub decoder: DecoderStats,
    pub utterances: u64,
    /// Times the timeline was re-tied to the wall clock (first anchor not counted).
    pub resyncs: u64,
    /// Times a new SSRC restarted the decoder.
    pub stream_restarts: u64,
}

/// Decoder, segmenter and wall-clock mapping of one speaker's audio track.
pub struct SpeakerPipeline {
    participant_id: String,
    config: SpeakerConfig,
    clock: WallClock,
    decoder: SpeakerDecoder,
    /// Decoder counters of earlier streams (before SSRC changes).
    earlier_decoders: DecoderStats,
    segmenter: Segmenter<SileroVad>,
    ssrc: Option<u32>,
    anchor: Option<Anchor>,
    last_arrival: Option<Instant>,
    /// Whether audio arrived since the last flush (so idle flushing happens once per pause).
    dirty: bool,
    stats: SpeakerStats,
}

impl SpeakerPipeline {
    pub fn new(
        participant_id: impl Into<String>,
        vad: SileroVad,
        clock: WallClock,
        config: SpeakerConfig,
    ) -> Result<Self> {
        Ok(Self {
            participant_id: participant_id.into(),
            config,
            clock,
            decoder: SpeakerDecoder::new(config.decoder)?,
            earlier_decoders: DecoderStats::default(),
            segmenter: Segmenter::new(vad, config.segmenter)?,
            ssrc: None,
            anchor: None,
            last_arrival: None,
            dirty: false,
            stats: SpeakerStats::default(),
        })
    }

    pub fn participant_id(&self) -> &str {
        &self.participant_id
    }

    /// Feeds one received RTP packet; returns the utterances that ended.
    pub fn push(&mut self, packet: &Received) -> Result<Vec<TimedUtterance>> {
        let mut done = Vec::new();
        if self.ssrc.is_some_and(|s| s != packet.ssrc) {
            // The sender restarted its stream: sequence numbers and timestamps start over.
            done.extend(self.flush()?);
            self.add_decoder_stats();
            self.decoder = SpeakerDecoder::new(self.config.decoder)?;
            self.anchor = None;
            self.stats.stream_restarts += 1;
        }
        self.ssrc = Some(packet.ssrc);
        self.last_arrival = Some(packet.arrival);
        let before = self.segmenter.samples_received();
        let out = self
            .decoder
            .push(packet.sequence_number, packet.timestamp, &packet.payload);
        let end = before + out.silence_before + out.samples.len() as u64;
        let arrived = self.clock.unix_ms(packet.arrival);
        match self.anchor {
            None => {
                self.anchor = Some(Anchor {
                    sample: end,
                    unix_ms: arrived,
                })
            }
            Some(anchor) => {
                let drift = arrived - anchor.unix_ms(end);
                if drift.abs() > self.config.resync_threshold.as_secs_f64() * 1000.0 {
                    tracing::debug!(speaker = %self.participant_id, drift_ms = drift as i64, "re-tying the timeline to the wall clock");
                    done.extend(self.flush()?);
                    self.anchor = Some(Anchor {
                        sample: end,
                        unix_ms: arrived,
                    });
                    self.stats.resyncs += 1;
                }
            }
        }
        let mut cut = self.segmenter.push_silence(out.silence_before)?;
        cut.extend(self.segmenter.push(&out.samples)?);
        if !out.samples.is_empty() || out.silence_before > 0 {
            self.dirty = true;
        }
        done.extend(self.stamp(cut));
        Ok(done)
    }

    /// Closes the utterance in progress (the speaker went quiet, muted, left, or the job stops).
    pub fn flush(&mut self) -> Result<Vec<TimedUtterance>> {
        self.dirty = false;
        let cut = self.segmenter.finish()?;
        Ok(self.stamp(cut))
    }

    /// Flushes if no packet arrived for `idle` and audio came since the last flush.
    pub fn flush_if_idle(&mut self, now: Instant, idle: Duration) -> Result<Vec<TimedUtterance>> {
        match self.last_arrival {
            Some(last) if self.dirty && now.saturating_duration_since(last) >= idle => self.flush(),
            _ => Ok(Vec::new()),
        }
    }

    /// The utterance in progress: its wall-clock start and the audio so far (for interim captions).
    pub fn in_progress(&self) -> Option<(i64, &[f32])> {
        let anchor = self.anchor?;
        let (start, samples) = self.segmenter.in_progress()?;
        Some((anchor.unix_ms(start).round() as i64, samples))
    }

    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    pub fn stats(&self) -> SpeakerStats {
        let mut s = self.stats;
        s.decoder = sum_decoder_stats(self.earlier_decoders, self.decoder.stats());
        s
    }

    fn add_decoder_stats(&mut self) {
        self.earlier_decoders = sum_decoder_stats(self.earlier_decoders, self.decoder.stats());
    }

    fn stamp(&mut self, cut: Vec<Utterance>) -> Vec<TimedUtterance> {
        let Some(anchor) = self.anchor else {
            return Vec::new();
        };
        self.stats.utterances += cut.len() as u64;
        cut.into_iter()
            .map(|utterance| TimedUtterance {
                start_ms: anchor.unix_ms(utterance.start_sample).round() as i64,
                end_ms: anchor.unix_ms(utterance.end_sample).round() as i64,
                utterance,
            })
            .collect()
    }
}

fn sum_decoder_stats(a: DecoderStats, b: DecoderStats) -> DecoderStats {
    DecoderStats {
        packets: a.packets + b.packets,
        lost_packets: a.lost_packets + b.lost_packets,
        fec_frames: a.fec_frames + b.fec_frames,
        concealed_samples: a.concealed_samples + b.concealed_samples,
        silence_samples: a.silence_samples + b.silence_samples,
        late_or_duplicate: a.late_or_duplicate + b.late_or_duplicate,
        corrupt_packets: a.corrupt_packets + b.corrupt_packets,
        empty_payloads: a.empty_payloads + b.empty_payloads,
        samples_out: a.samples_out + b.samples_out,
    }
}
