//! Per-speaker Opus decoding: RTP packets of one audio track (48 kHz Opus, any frame size) in, 16 kHz mono
//! f32 out — the rate Whisper and Silero VAD take — on a gap-free timeline.
//!
//! Lost packets (a gap in sequence numbers) are concealed: the last lost frame is recovered from the next
//! packet's in-band FEC when it carries one, the rest by Opus packet-loss concealment. DTX pauses (the RTP
//! timestamp jumps while sequence numbers do not) become digital silence. Gaps longer than
//! [`DecoderConfig::max_materialised_gap`] are not written out as samples but reported as
//! [`Decoded::silence_before`], so a speaker unmuting after an hour costs nothing.
//!
//! This module must never resample, mix speakers, or block: one decoder per track, called from that track's
//! task. Malformed packets are concealed and counted, never fatal.

use std::time::Duration;

use opus::{Channels, Decoder};

use crate::error::{Error, Result};

/// Output sample rate: what Whisper and Silero VAD expect.
pub const SAMPLE_RATE: u32 = 16_000;
/// RTP clock rate of Opus (RFC 7587), whatever the real audio bandwidth.
pub const RTP_CLOCK: u32 = 48_000;
const RTP_TICKS_PER_SAMPLE: u32 = RTP_CLOCK / SAMPLE_RATE;
/// Longest Opus packet (120 ms) at 16 kHz.
const MAX_PACKET_SAMPLES: usize = 1920;
/// Opus conceals in multiples of 2.5 ms: 40 samples at 16 kHz.
const PLC_QUANTUM: usize = 40;

/// Settings of one speaker's decoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecoderConfig {
    /// Concealment (PLC) is generated for at most this much of a loss gap; the rest is zeros
    /// (PLC fades out after a few frames anyway).
    pub max_concealment: Duration,
    /// Gaps up to this long are written out as samples; longer ones are reported in `silence_before`.
    pub max_materialised_gap: Duration,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_concealment: Duration::from_millis(120),
            max_materialised_gap: Duration::from_secs(2),
        }
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Packets accepted (in order, not duplicates).
    pub packets: u64,
    /// Packets missing from the sequence.
    pub lost_packets: u64,
    /// Lost frames rebuilt from in-band FEC of the following packet.
    pub fec_frames: u64,
    /// Samples produced by packet-loss concealment.
    pub concealed_samples: u64,
    /// Samples of silence inserted for DTX pauses and long losses (materialised or not).
    pub silence_samples: u64,
    /// Packets that arrived after a later one, or twice; dropped.
    pub late_or_duplicate: u64,
    /// Packets the decoder rejected; concealed instead.
    pub corrupt_packets: u64,
    /// Packets with an empty payload (no audio, timeline kept).
    pub empty_payloads: u64,
    /// Samples returned in `Decoded::samples`.
    pub samples_out: u64,
}

/// What one packet yields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// Silence that precedes `samples` on the timeline but is not included in them (long gaps only).
    pub silence_before: u64,
    /// 16 kHz mono samples, concealment and short silences included.
    pub samples: Vec<f32>,
}

/// Decodes one speaker's Opus packets.
pub struct SpeakerDecoder {
    decoder: Decoder,
    config: DecoderConfig,
    /// Sequence number of the last accepted packet and the RTP timestamp where its audio ended.
    last: Option<(u16, u32)>,
    stats: DecoderStats,
    scratch: Vec<f32>,
}

impl SpeakerDecoder {
    pub fn new(config: DecoderConfig) -> Result<Self> {
        let decoder = Decoder::new(SAMPLE_RATE, Channels::Mono).map_err(|e| Error::Opus(e.to_string()))?;
        Ok(Self {
            decoder,
            config,
            last: None,
            stats: DecoderStats::default(),
            scratch: vec![0.0; MAX_PACKET_SAMPLES],
        })
    }

    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Feeds one RTP packet: its sequence number, RTP timestamp (48 kHz clock) and Opus payload.
    pub fn push(&mut self, seq: u16, rtp_timestamp: u32, payload: &[u8]) -> Decoded {
        let mut out = Decoded::default();
        if let Some((last_seq, last_end)) = self.last {
            let step = seq.wrapping_sub(last_seq) as i16;
            if step <= 0 {
                self.stats.late_or_duplicate += 1;
                return out;
            }
            let lost = (step - 1) as u64;
            // Negative gaps (an encoder that restarts its clock) are treated as none.
            let gap_ticks = (rtp_timestamp.wrapping_sub(last_end) as i32).max(0) as u32;
            let gap = (gap_ticks / RTP_TICKS_PER_SAMPLE) as usize;
            self.stats.lost_packets += lost;
            if gap > 0 {
                self.fill_gap(gap, lost > 0, payload, &mut out);
            }
        }
        self.stats.packets += 1;

        let decoded = if payload.is_empty() {
            self.stats.empty_payloads += 1;
            0
        } else {
            match self.decoder.decode_float(payload, &mut self.scratch, false) {
                Ok(n) => {
                    out.samples.extend_from_slice(&self.scratch[..n]);
                    n
                }
                Err(_) => {
                    self.stats.corrupt_packets += 1;
                    // Unknown duration: assume the common 20 ms and conceal it.
                    let n = 320;
                    self.conceal(n, &mut out.samples);
                    n
                }
            }
        };
        self.last = Some((seq, rtp_timestamp.wrapping_add(decoded as u32 * RTP_TICKS_PER_SAMPLE)));
        self.stats.samples_out += out.samples.len() as u64;
        out
    }

    /// Fills `gap` samples before `next_payload`: FEC + PLC after a loss, silence after DTX.
    fn fill_gap(&mut self, gap: usize, after_loss: bool, next_payload: &[u8], out: &mut Decoded) {
        let max_out = duration_samples(self.config.max_materialised_gap);
        if !after_loss || gap > max_out {
            // DTX, or a loss so long that concealment is meaningless: silence.
            self.stats.silence_samples += gap as u64;
            if gap > max_out {
                out.silence_before += gap as u64;
                self.decoder.reset_state().ok();
            } else {
                out.samples.resize(out.samples.len() + gap, 0.0);
            }
            return;
        }
        // The next packet's FEC describes the frame just before it, of the same duration as the packet.
        let fec_len = if next_payload.is_empty() {
            0
        } else {
            opus::packet::get_nb_samples(next_payload, SAMPLE_RATE)
                .unwrap_or(0)
                .min(gap)
        };
        let plc_budget = duration_samples(self.config.max_concealment);
        let before_fec = gap - fec_len;
        let plc_len = before_fec.min(plc_budget) / PLC_QUANTUM * PLC_QUANTUM;
        self.conceal(plc_len, &mut out.samples);
        out.samples.resize(out.samples.len() + (before_fec - plc_len), 0.0);
        self.stats.silence_samples += (before_fec - plc_len) as u64;
        if fec_len > 0 {
            match self
                .decoder
                .decode_float(next_payload, &mut self.scratch[..fec_len], true)
            {
                Ok(n) if n == fec_len => {
                    out.samples.extend_from_slice(&self.scratch[..n]);
                    self.stats.fec_frames += 1;
                }
                _ => self.conceal(fec_len, &mut out.samples),
            }
        }
    }

    /// Appends `n` samples of Opus packet-loss concealment (zeros if the decoder refuses).
    fn conceal(&mut self, n: usize, out: &mut Vec<f32>) {
        let mut left = n;
        while left > 0 {
            let chunk = left.min(320);
            let chunk = if chunk >= PLC_QUANTUM {
                chunk / PLC_QUANTUM * PLC_QUANTUM
            } else {
                chunk
            };
            match self.decoder.decode_float(&[], &mut self.scratch[..chunk], false) {
                Ok(got) if got == chunk => out.extend_from_slice(&self.scratch[..chunk]),
                _ => out.resize(out.len() + chunk, 0.0),
            }
            self.stats.concealed_samples += chunk as u64;
            left -= chunk;
        }
    }
}

fn duration_samples(d: Duration) -> usize {
    (d.as_secs_f64() * SAMPLE_RATE as f64).round() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use opus::{Application, Bitrate, Encoder};

    /// 20 ms packets of a 440 Hz tone at 48 kHz.
    fn packets(n: usize) -> Vec<Vec<u8>> {
        let mut enc = Encoder::new(48_000, Channels::Mono, Application::Voip).unwrap();
        enc.set_bitrate(Bitrate::Bits(24_000)).unwrap();
        enc.set_inband_fec(true).unwrap();
        enc.set_packet_loss_perc(20).unwrap();
        (0..n)
            .map(|i| {
                let frame: Vec<f32> = (0..960)
                    .map(|k| 0.3 * ((i * 960 + k) as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin())
                    .collect();
                enc.encode_vec_float(&frame, 1500).unwrap()
            })
            .collect()
    }

    #[test]
    fn in_order_packets_give_320_samples_each() {
        let mut d = SpeakerDecoder::new(DecoderConfig::default()).unwrap();
        let mut total = 0;
        for (i, p) in packets(50).iter().enumerate() {
            let out = d.push(1000 + i as u16, 5_000 + 960 * i as u32, p);
            assert_eq!(out.silence_before, 0);
            total += out.samples.len();
        }
        assert_eq!(total, 50 * 320);
        let s = d.stats();
        assert_eq!((s.packets, s.lost_packets, s.samples_out), (50, 0, 16_000));
    }

    #[test]
    fn losses_are_concealed_on_the_timeline_and_fec_is_used() {
        let pk = packets(60);
        let mut d = SpeakerDecoder::new(DecoderConfig::default()).unwrap();
        let mut total = 0;
        let dropped = [10usize, 11, 12, 30];
        for (i, p) in pk.iter().enumerate() {
            if dropped.contains(&i) {
                continue;
            }
            // Sequence numbers wrap around u16 on the way.
            let ts = (u32::MAX - 20_000).wrapping_add(960 * i as u32);
            total += d.push(65_530u16.wrapping_add(i as u16), ts, p).samples.len();
        }
        assert_eq!(total, 60 * 320, "timeline must keep its length through losses");
        let s = d.stats();
        assert_eq!(s.lost_packets, 4);
        assert_eq!(s.fec_frames, 2, "one FEC frame per loss burst");
        assert_eq!(s.concealed_samples, 2 * 320, "the other two lost frames by PLC");
    }

    #[test]
    fn dtx_gap_becomes_silence_and_long_gap_is_not_materialised() {
        let pk = packets(3);
        let mut d = SpeakerDecoder::new(DecoderConfig::default()).unwrap();
        assert_eq!(d.push(1, 0, &pk[0]).samples.len(), 320);
        // Contiguous sequence, timestamp 400 ms later: DTX.
        let out = d.push(2, 960 + 19_200, &pk[1]);
        assert_eq!(out.samples.len(), 6_400 + 320);
        assert!(out.samples[..6_400].iter().all(|&s| s == 0.0));
        // 60 s later: reported, not written out.
        let out = d.push(3, 960 * 2 + 19_200 + 48_000 * 60, &pk[2]);
        assert_eq!(out.silence_before, 16_000 * 60);
        assert_eq!(out.samples.len(), 320);
        assert_eq!(d.stats().silence_samples, 6_400 + 960_000);
    }

    #[test]
    fn duplicates_late_empty_and_corrupt_packets() {
        let pk = packets(4);
        let mut d = SpeakerDecoder::new(DecoderConfig::default()).unwrap();
        assert_eq!(d.push(10, 0, &pk[0]).samples.len(), 320);
        assert!(d.push(10, 0, &pk[0]).samples.is_empty());
        assert!(d.push(9, 0, &pk[0]).samples.is_empty());
        // Empty payload: no audio, but the next packet's timestamp gap becomes silence.
        assert!(d.push(11, 960, &[]).samples.is_empty());
        assert_eq!(d.push(12, 1920, &pk[1]).samples.len(), 960 / 3 + 320);
        // A corrupt packet (reserved TOC config with garbage) is concealed as 20 ms.
        assert_eq!(d.push(13, 2880, &[0xff, 0xff, 0xff]).samples.len(), 320);
        let s = d.stats();
        assert_eq!((s.late_or_duplicate, s.empty_payloads, s.corrupt_packets), (2, 1, 1));
    }
}
