//! Shared helpers of the transcriber's integration tests: test data lookup, WAV reading, 16→48 kHz
//! upsampling, and the reference speech segments of jfk.wav. Must never skip a test for missing data.
#![allow(dead_code)]

use std::path::PathBuf;

/// whisper.cpp's Silero VAD v6.2.0 segments of jfk.wav (its test-vad; default parameters), in seconds.
pub const JFK_REFERENCE: [(f64, f64); 4] =
    [(0.32, 2.27), (3.27, 4.41), (5.38, 7.68), (8.16, 10.62)];

/// `$SAMTAL_TEST_DATA/<relative>`, default `<repo>/../shared/<relative>`; fails with instructions if absent.
pub fn test_data(relative: &str) -> PathBuf {
    let root = std::env::var_os("SAMTAL_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    let path = root.join(relative);
    assert!(
        path.is_file(),
        "test data missing: {} (looked in SAMTAL_TEST_DATA or <repo>/../shared). \
         Run scripts/fetch-test-data.sh on a machine with internet, or set SAMTAL_TEST_DATA to its folder.",
        path.display()
    );
    path
}

/// Reads a 16 kHz mono 16-bit WAV as f32 in -1..1.
pub fn read_wav_16k(relative: &str) -> Vec<f32> {
    let mut reader = hound::WavReader::open(test_data(relative)).expect("readable WAV");
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (16_000, 1, 16),
        "{relative}: unexpected format"
    );
    reader
        .samples::<i16>()
        .map(|s| s.expect("sample") as f32 / 32_768.0)
        .collect()
}

/// 16 kHz → 48 kHz: zero-stuffing and a 96-tap windowed-sinc low-pass at 7.6 kHz (gain 3).
pub fn upsample_3x(input: &[f32]) -> Vec<f32> {
    const TAPS: usize = 96;
    let cutoff = 7_600.0 / 48_000.0;
    let taps: Vec<f32> = (0..TAPS)
        .map(|n| {
            let x = n as f64 - (TAPS as f64 - 1.0) / 2.0;
            let sinc = if x == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f64::consts::PI * cutoff * x).sin() / (std::f64::consts::PI * x)
            };
            let hann =
                0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / (TAPS as f64 - 1.0)).cos();
            (3.0 * sinc * hann) as f32
        })
        .collect();
    let delay = TAPS / 2;
    let stuffed_len = input.len() * 3;
    (0..stuffed_len)
        .map(|i| {
            let t = i + delay;
            // Only every third stuffed sample is non-zero.
            let mut acc = 0.0f32;
            for (k, &h) in taps.iter().enumerate() {
                if t >= k
                    && (t - k).is_multiple_of(3)
                    && let Some(&x) = input.get((t - k) / 3)
                {
                    acc += h * x;
                }
            }
            acc
        })
        .collect()
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

/// 16 kHz mono audio as 48 kHz Opus payloads of 20 ms (960 samples at 48 kHz), as a browser sends them
/// (~24 kbit/s, in-band FEC). The last frame is zero-padded.
pub fn opus_20ms(pcm16k: &[f32]) -> Vec<Vec<u8>> {
    use opus::{Application, Bitrate, Channels, Encoder};
    let pcm48 = upsample_3x(pcm16k);
    let mut enc = Encoder::new(48_000, Channels::Mono, Application::Voip).expect("opus encoder");
    enc.set_bitrate(Bitrate::Bits(24_000)).expect("bitrate");
    enc.set_inband_fec(true).expect("fec");
    pcm48
        .chunks(960)
        .map(|frame| {
            let mut frame = frame.to_vec();
            frame.resize(960, 0.0);
            enc.encode_vec_float(&frame, 4000).expect("opus encode")
        })
        .collect()
}
