//! Recorded speech as a meeting carries it: a 16 kHz WAV read as samples, raised to 48 kHz and encoded
//! as 20 ms Opus frames the way a browser sends them. For tests and benchmarks that speak real audio
//! into the pipeline or a meeting.

use crate::error::{Error, Result};
use std::path::Path;

/// Reads a 16 kHz mono 16-bit WAV as f32 samples in -1..1.
pub fn read_wav_16k(path: &Path) -> Result<Vec<f32>> {
    let bad = |e: &dyn std::fmt::Display| Error::Audio(format!("{}: {e}", path.display()));
    let mut reader = hound::WavReader::open(path).map_err(|e| bad(&e))?;
    let spec = reader.spec();
    if (spec.sample_rate, spec.channels, spec.bits_per_sample) != (16_000, 1, 16) {
        return Err(bad(&format!(
            "need 16 kHz mono 16-bit PCM, found {} Hz, {} channel(s), {} bit",
            spec.sample_rate, spec.channels, spec.bits_per_sample
        )));
    }
    reader
        .samples::<i16>()
        .map(|s| s.map(|s| s as f32 / 32_768.0).map_err(|e| bad(&e)))
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
            let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / (TAPS as f64 - 1.0)).cos();
            (3.0 * sinc * hann) as f32
        })
        .collect();
    let delay = TAPS / 2;
    (0..input.len() * 3)
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

/// 16 kHz mono audio as 48 kHz Opus payloads of 20 ms (960 samples at 48 kHz), as a browser sends
/// them (~24 kbit/s, in-band FEC). The last frame is zero-padded.
pub fn opus_20ms(pcm16k: &[f32]) -> Result<Vec<Vec<u8>>> {
    use opus::{Application, Bitrate, Channels, Encoder};
    let fail = |e: opus::Error| Error::Audio(format!("Opus encoder: {e}"));
    let mut enc = Encoder::new(48_000, Channels::Mono, Application::Voip).map_err(fail)?;
    enc.set_bitrate(Bitrate::Bits(24_000)).map_err(fail)?;
    enc.set_inband_fec(true).map_err(fail)?;
    upsample_3x(pcm16k)
        .chunks(960)
        .map(|frame| {
            let mut frame = frame.to_vec();
            frame.resize(960, 0.0);
            enc.encode_vec_float(&frame, 4000).map_err(fail)
        })
        .collect()
}
