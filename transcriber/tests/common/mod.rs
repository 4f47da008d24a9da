//! Shared helpers of the transcriber's integration tests: test data lookup (samtal-models'), WAV reading, 16→48 kHz
//! upsampling, and the reference speech segments of jfk.wav. Must never skip a test for missing data.
#![allow(dead_code)]

/// whisper.cpp's Silero VAD v6.2.0 segments of jfk.wav (its test-vad; default parameters), in seconds.
pub const JFK_REFERENCE: [(f64, f64); 4] = [(0.32, 2.27), (3.27, 4.41), (5.38, 7.68), (8.16, 10.62)];

pub use samtal_models::test_data::test_data;

/// Reads `$SAMTAL_TEST_DATA/<relative>`, a 16 kHz mono 16-bit WAV, as f32 in -1..1.
pub fn read_wav_16k(relative: &str) -> Vec<f32> {
    samtal_transcriber::fixtures::read_wav_16k(&test_data(relative)).expect("readable 16 kHz WAV")
}

/// Asserts that `got` (seconds) matches the jfk reference within `tolerance`, segment by segment.
pub fn assert_matches_reference(got: &[(f64, f64)], tolerance: f64, what: &str) {
    assert_eq!(
        got.len(),
        JFK_REFERENCE.len(),
        "{what}: expected 4 utterances, got {got:.2?}"
    );
    for (i, ((s, e), (rs, re))) in got.iter().zip(JFK_REFERENCE).enumerate() {
        assert!(
            (s - rs).abs() <= tolerance && (e - re).abs() <= tolerance,
            "{what}: utterance {i} is {s:.2}–{e:.2} s, reference {rs:.2}–{re:.2} s (tolerance {tolerance} s); all: {got:.2?}"
        );
    }
}

/// Largest deviation from the reference, for reporting.
pub fn max_deviation(got: &[(f64, f64)]) -> f64 {
    got.iter()
        .zip(JFK_REFERENCE)
        .map(|((s, e), (rs, re))| (s - rs).abs().max((e - re).abs()))
        .fold(0.0, f64::max)
}

/// 16 kHz mono audio as 48 kHz Opus payloads of 20 ms, as a browser sends them.
pub fn opus_20ms(pcm16k: &[f32]) -> Vec<Vec<u8>> {
    samtal_transcriber::fixtures::opus_20ms(pcm16k).expect("opus encoding")
}
