//! The worker's per-speaker pipeline on packets as the room connection delivers them (`samtal_client::Received`):
//! jfk.wav as 48 kHz Opus in 20 ms RTP packets → utterances with wall-clock times. Checks the cuts against
//! whisper.cpp's reference (relative to the first packet, within 0.25 s), that jitter does not move them
//! (the timeline follows RTP timestamps), and the idle flush, SSRC restart and clock re-tie paths.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{JFK_REFERENCE, assert_matches_reference, opus_20ms, read_wav_16k, test_data};
use samtal_client::Received;
use samtal_client::samtal_protocol::MediaKind;
use samtal_transcriber::vad::{CutReason, SileroConfig, SileroVad};
use samtal_transcriber::worker::{SpeakerConfig, SpeakerPipeline, TimedUtterance, WallClock, utterance_id};

/// Unix ms the tests pin the first packet's capture time to.
const T0_MS: f64 = 1_763_856_000_000.0;

fn vad() -> SileroVad {
    SileroVad::load(&SileroConfig::new(test_data("models/ggml-silero-v6.2.0-for-tests.bin"))).unwrap()
}

/// jfk.wav as Opus payloads, 20 ms each (550 of them).
fn jfk_payloads() -> Vec<Bytes> {
    opus_20ms(&read_wav_16k("audio/jfk.wav"))
        .into_iter()
        .map(Bytes::from)
        .collect()
}

/// One sender's RTP stream: who, SSRC, first sequence number and timestamp, and when frame 0 was captured.
struct Stream<'a> {
    speaker: &'a str,
    ssrc: u32,
    seq0: u16,
    ts0: u32,
    capture_start: Instant,
}

impl Stream<'_> {
    /// Packet `i`, arriving 20 ms after its capture start (+ `delay`).
    fn packet(&self, i: usize, payload: &Bytes, delay: Duration) -> Received {
        Received {
            participant_id: self.speaker.into(),
            track_id: format!("{}-mic", self.speaker),
            kind: MediaKind::Audio,
            ssrc: self.ssrc,
            payload_type: 111,
            sequence_number: self.seq0.wrapping_add(i as u16),
            timestamp: self.ts0.wrapping_add(960 * i as u32),
            marker: false,
            payload: payload.clone(),
            arrival: self.capture_start + Duration::from_millis(20 * (i as u64 + 1)) + delay,
        }
    }
}

fn stream(speaker: &str, ssrc: u32, seq0: u16, ts0: u32, capture_start: Instant) -> Stream<'_> {
    Stream {
        speaker,
        ssrc,
        seq0,
        ts0,
        capture_start,
    }
}

/// Utterance spans in seconds relative to T0.
fn spans(done: &[TimedUtterance]) -> Vec<(f64, f64)> {
    done.iter()
        .map(|u| ((u.start_ms as f64 - T0_MS) / 1000.0, (u.end_ms as f64 - T0_MS) / 1000.0))
        .collect()
}

#[test]
fn jfk_packets_give_the_reference_utterances_on_the_wall_clock() {
    let t0 = Instant::now();
    let clock = WallClock::at(t0, T0_MS);
    let mut pipeline = SpeakerPipeline::new("p-alice", vad(), clock, SpeakerConfig::default()).unwrap();
    let payloads = jfk_payloads();
    assert_eq!(payloads.len(), 550);
    let mut done = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        done.extend(
            pipeline
                .push(&stream("p-alice", 7, 65_000, 4_294_000_000, t0).packet(i, p, Duration::ZERO))
                .unwrap(),
        );
    }
    // The speaker stops sending: after a second without packets the pipeline closes what is open.
    let last = t0 + Duration::from_millis(20 * 550);
    assert!(
        pipeline
            .flush_if_idle(last + Duration::from_millis(500), Duration::from_secs(1))
            .unwrap()
            .is_empty()
    );
    done.extend(
        pipeline
            .flush_if_idle(last + Duration::from_secs(1), Duration::from_secs(1))
            .unwrap(),
    );
    assert!(
        pipeline
            .flush_if_idle(last + Duration::from_secs(2), Duration::from_secs(1))
            .unwrap()
            .is_empty(),
        "one flush per pause"
    );

    let got = spans(&done);
    eprintln!("wall-clock spans relative to the first packet: {got:.3?}");
    assert_matches_reference(&got, 0.25, "speaker pipeline");
    // Ordered, non-overlapping, indices 0..4, times consistent with the sample offsets.
    for (k, u) in done.iter().enumerate() {
        assert_eq!(u.utterance.index, k as u64);
        let from_samples = T0_MS + u.utterance.start_sample as f64 / 16.0;
        assert!(
            (u.start_ms as f64 - from_samples).abs() <= 1.0,
            "start_ms follows the timeline"
        );
        assert_eq!(
            u.utterance.samples.len() as u64,
            u.utterance.end_sample - u.utterance.start_sample
        );
        if k > 0 {
            assert!(u.start_ms >= done[k - 1].end_ms, "utterances do not overlap");
        }
    }
    // Ids are stable and distinct per utterance.
    let ids: Vec<String> = done.iter().map(|u| utterance_id("m1", "p-alice", u.start_ms)).collect();
    assert_eq!(ids[0], format!("m1:p-alice:{}", done[0].start_ms));
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), 4);
    let stats = pipeline.stats();
    assert_eq!((stats.decoder.packets, stats.utterances, stats.resyncs), (550, 4, 0));
}

#[test]
fn network_jitter_does_not_move_the_utterances() {
    let t0 = Instant::now();
    let mut pipeline =
        SpeakerPipeline::new("p-bob", vad(), WallClock::at(t0, T0_MS), SpeakerConfig::default()).unwrap();
    let mut done = Vec::new();
    for (i, p) in jfk_payloads().iter().enumerate() {
        // 0–60 ms of extra delay, varying packet to packet; the first packet is on time.
        let jitter = Duration::from_millis(((i * 37) % 61) as u64 * u64::from(i > 0));
        done.extend(
            pipeline
                .push(&stream("p-bob", 9, 1, 0, t0).packet(i, p, jitter))
                .unwrap(),
        );
    }
    done.extend(pipeline.flush().unwrap());
    let got = spans(&done);
    eprintln!("with jitter: {got:.3?}");
    assert_matches_reference(&got, 0.25, "with jitter");
    assert_eq!(pipeline.stats().resyncs, 0, "jitter is not a clock jump");
}

#[test]
fn a_new_ssrc_restarts_the_stream_without_losing_the_clock() {
    // The first 5 s with one SSRC, the rest with another and fresh RTP bases (the sender restarted).
    let t0 = Instant::now();
    let mut pipeline =
        SpeakerPipeline::new("p-carl", vad(), WallClock::at(t0, T0_MS), SpeakerConfig::default()).unwrap();
    let mut done = Vec::new();
    for (i, p) in jfk_payloads().iter().enumerate() {
        let pk = if i < 250 {
            stream("p-carl", 1, 100, 5_000, t0).packet(i, p, Duration::ZERO)
        } else {
            // Same arrival times; sequence and timestamp start over.
            let mut pk = stream("p-carl", 2, 9_000, 123_456, t0).packet(i - 250, p, Duration::ZERO);
            pk.arrival = t0 + Duration::from_millis(20 * (i as u64 + 1));
            pk
        };
        done.extend(pipeline.push(&pk).unwrap());
    }
    done.extend(pipeline.flush().unwrap());
    let got = spans(&done);
    eprintln!("ssrc change at 5.0 s: {got:.3?}");
    assert_eq!(pipeline.stats().stream_restarts, 1);
    // 0.32–2.27 and 3.27–4.41 are untouched; the third (5.38–7.68) starts after the restart at 5.0 s;
    // the new stream is tied to the wall clock afresh, so the later ones stay in place.
    assert_matches_reference(&got, 0.25, "across an SSRC change");
}

#[test]
fn a_timestamp_jump_without_a_pause_re_ties_the_clock() {
    // An SFU that rewrote timestamps: 60 s forward in RTP time at packet 300 (6.0 s), no real pause.
    let t0 = Instant::now();
    let mut pipeline =
        SpeakerPipeline::new("p-dana", vad(), WallClock::at(t0, T0_MS), SpeakerConfig::default()).unwrap();
    let mut done = Vec::new();
    for (i, p) in jfk_payloads().iter().enumerate() {
        let mut pk = stream("p-dana", 5, 0, 0, t0).packet(i, p, Duration::ZERO);
        if i >= 300 {
            pk.timestamp = pk.timestamp.wrapping_add(48_000 * 60);
        }
        done.extend(pipeline.push(&pk).unwrap());
    }
    done.extend(pipeline.flush().unwrap());
    let got = spans(&done);
    eprintln!("timestamp jump at 6.0 s: {got:.3?}");
    assert_eq!(pipeline.stats().resyncs, 1);
    assert_eq!(got.len(), 5, "the utterance across the jump is cut in two: {got:.2?}");
    // Everything stays near real time: nothing is placed a minute late.
    for (s, e) in &got {
        assert!(*s > 0.0 && *e < 11.5, "{got:.2?}");
    }
    let (first, last) = (got[0], got[4]);
    assert!(
        (first.0 - JFK_REFERENCE[0].0).abs() <= 0.25 && (last.1 - JFK_REFERENCE[3].1).abs() <= 0.25,
        "{got:.2?}"
    );
    assert!(done.iter().any(|u| u.utterance.cut == CutReason::EndOfStream));
}
