//! Acceptance test 2: the streaming segmenter with the real Silero VAD v6.2.0 on jfk.wav, fed in 20 ms
//! chunks, finds whisper.cpp's four speech segments within 0.25 s.

mod common;

use std::time::{Duration, Instant};

use common::{JFK_REFERENCE, assert_matches_reference, max_deviation, read_wav_16k, test_data};
use samtal_transcriber::vad::{CutReason, Segmenter, SegmenterConfig, SileroConfig, SileroVad, SpeechDetector};

fn silero() -> SileroVad {
    SileroVad::load(&SileroConfig::new(test_data("models/ggml-silero-v6.2.0-for-tests.bin"))).expect("VAD loads")
}

/// min_silence 300 ms: the shortest pause between jfk's phrases is ~0.5 s (7.68 → 8.16 s with padding).
fn config() -> SegmenterConfig {
    SegmenterConfig {
        min_silence: Duration::from_millis(300),
        ..SegmenterConfig::default()
    }
}

#[test]
fn streaming_segmenter_matches_whisper_cpp_on_jfk() {
    let pcm = read_wav_16k("audio/jfk.wav");
    assert_eq!(pcm.len(), 176_000);
    let mut seg = Segmenter::new(silero(), config()).unwrap();
    let began = Instant::now();
    let mut utterances = Vec::new();
    for chunk in pcm.chunks(320) {
        utterances.extend(seg.push(chunk).unwrap());
    }
    utterances.extend(seg.finish().unwrap());
    let elapsed = began.elapsed();

    let spans: Vec<(f64, f64)> = utterances.iter().map(|u| (u.start_secs(), u.end_secs())).collect();
    eprintln!(
        "streaming VAD on jfk.wav: {spans:.3?}, max deviation {:.3} s, {:.0} ms for 11 s, detector saw {:.2}x the audio",
        max_deviation(&spans),
        elapsed.as_secs_f64() * 1000.0,
        seg.detector_samples() as f64 / seg.samples_received() as f64
    );
    assert_matches_reference(&spans, 0.25, "streaming VAD");
    for u in &utterances {
        assert_eq!(u.samples.len() as u64, u.end_sample - u.start_sample);
        assert_eq!(
            u.samples[..],
            pcm[u.start_sample as usize..u.end_sample as usize],
            "utterance {} samples",
            u.index
        );
    }
    assert!(utterances[..3].iter().all(|u| u.cut == CutReason::Pause));
    // 1 VAD thread: far faster than real time even in a debug build of our code.
    assert!(elapsed < Duration::from_secs(5), "VAD took {elapsed:?}");
}

#[test]
fn with_whisper_cpp_padding_the_sliding_window_is_within_a_few_windows() {
    // Same 30 ms padding as whisper.cpp: what remains is the sliding-window warm-up's effect on Silero.
    let pcm = read_wav_16k("audio/jfk.wav");
    let cfg = SegmenterConfig {
        padding: Duration::from_millis(30),
        ..config()
    };
    let mut seg = Segmenter::new(silero(), cfg).unwrap();
    let mut spans = Vec::new();
    for chunk in pcm.chunks(320) {
        spans.extend(seg.push(chunk).unwrap().iter().map(|u| (u.start_secs(), u.end_secs())));
    }
    spans.extend(seg.finish().unwrap().iter().map(|u| (u.start_secs(), u.end_secs())));
    eprintln!(
        "30 ms padding: {spans:.3?}, max deviation {:.3} s",
        max_deviation(&spans)
    );
    assert_matches_reference(&spans, 0.06, "streaming VAD, 30 ms padding");
}

#[test]
fn whole_file_detection_reproduces_the_reference_on_this_build() {
    // Guards the reference itself: whisper.cpp's own segmentation of the whole file through whisper-rs.
    let pcm = read_wav_16k("audio/jfk.wav");
    let mut vad = silero();
    let probs = vad.detect(&pcm).unwrap();
    assert_eq!(probs.len(), 344, "176000 samples / 512 rounded up");
    let mut ctx = whisper_rs::WhisperVadContext::new(
        test_data("models/ggml-silero-v6.2.0-for-tests.bin").to_str().unwrap(),
        {
            let mut p = whisper_rs::WhisperVadContextParams::default();
            p.set_n_threads(1);
            p
        },
    )
    .unwrap();
    let segments: Vec<(f64, f64)> = ctx
        .segments_from_samples(whisper_rs::WhisperVadParams::default(), &pcm)
        .unwrap()
        .map(|s| (s.start as f64 / 100.0, s.end as f64 / 100.0))
        .collect();
    assert_matches_reference(&segments, 0.011, "whole-file whisper.cpp VAD");
    assert_eq!(segments.len(), JFK_REFERENCE.len());
}

#[test]
fn a_long_monologue_is_cut_at_max_length() {
    // jfk.wav three times without pauses longer than 0.5 s → cut by max_utterance (8 s).
    let pcm = read_wav_16k("audio/jfk.wav");
    let looped: Vec<f32> = pcm.iter().chain(&pcm).chain(&pcm).copied().collect();
    let cfg = SegmenterConfig {
        min_silence: Duration::from_millis(1_200),
        max_utterance: Duration::from_secs(8),
        ..SegmenterConfig::default()
    };
    let mut seg = Segmenter::new(silero(), cfg).unwrap();
    let mut utterances = Vec::new();
    for chunk in looped.chunks(320) {
        utterances.extend(seg.push(chunk).unwrap());
    }
    utterances.extend(seg.finish().unwrap());
    assert!(
        utterances.iter().any(|u| u.cut == CutReason::MaxLength),
        "{utterances:?}"
    );
    for u in &utterances {
        assert!(
            u.end_secs() - u.start_secs() <= 8.0 + 1e-9,
            "utterance {} lasts {:.2} s",
            u.index,
            u.end_secs() - u.start_secs()
        );
    }
    // Nothing spoken is lost: together the utterances cover every reference segment of the three copies.
    for copy in 0..3 {
        for (rs, re) in JFK_REFERENCE {
            let (rs, re) = (rs + 11.0 * copy as f64 + 0.1, re + 11.0 * copy as f64 - 0.1);
            let covered: f64 = utterances
                .iter()
                .map(|u| (u.end_secs().min(re) - u.start_secs().max(rs)).max(0.0))
                .sum();
            assert!(
                covered >= (re - rs) - 0.3,
                "speech {rs:.2}–{re:.2} s covered only {covered:.2} s"
            );
        }
    }
}
