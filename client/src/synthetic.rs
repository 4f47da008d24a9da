//! Synthetic media payloads for load generation and tests: Opus audio and VP8 video.
//!
//! Every packet carries a [`Stamp`] — a magic, a per-track packet counter and the send time in
//! microseconds since the Unix epoch — in its **last [`STAMP_LEN`] bytes**, so a receiver can
//! check integrity (gaps, reordering, duplicates) and measure one-way delay on the same host.
//! The stamp sits at the end rather than after the codec header so that the audio stays a valid
//! Opus packet: it is carried as Opus padding (RFC 6716 §3.2.5), which decoders skip.
//!
//! * [`OpusSynth`] makes one 20 ms packet per call (50 packets/s when paced): a fixed CELT frame
//!   that decodes to silence, or with the `opus` feature a sine tone encoded by libopus.
//! * [`Vp8Synth`] makes whole frames split into packets with a VP8 payload descriptor
//!   (RFC 7741, with a 15-bit picture id); the first packet of each frame starts with a VP8 frame
//!   header whose key-frame bit is set for keyframes, and a keyframe's header carries the start
//!   code and the picture size (RFC 6386 §9.1), which an SFU reads to size simulcast layers.
//!   Frame sizes follow a target bit rate; keyframes come every N frames and whenever
//!   [`Vp8Synth::request_keyframe`] asks.
//! * [`simulcast_layers`] describes a simulcast camera: three encodings `q`, `h`, `f` (lowest
//!   first), each half the width and height of the next, at about 1/10, 3/10 and all of the top
//!   layer's bit rate. Each layer is a [`Vp8Synth`] of its own whose stamps carry the layer
//!   ([`Stamp::layer`]), so a receiver can tell which layer an SFU forwarded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// The first bytes of every stamp.
pub const STAMP_MAGIC: [u8; 4] = *b"SMTL";
/// Length of a stamp: magic, u64 counter, u64 send time (both big-endian).
pub const STAMP_LEN: usize = 20;
/// The top byte of a stamp's counter says which simulcast layer sent it (0 for a plain track);
/// the low 56 bits count that layer's packets.
const STAMP_LAYER_SHIFT: u32 = 56;

/// Microseconds since the Unix epoch, now.
pub fn unix_micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What the sender wrote into a packet so the receiver can check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Per-track packet counter, starting at 0, one per packet.
    pub counter: u64,
    /// When the packet was made, in microseconds since the Unix epoch.
    pub sent_micros: u64,
}

impl Stamp {
    /// A stamp for packet `counter`, sent now.
    pub fn now(counter: u64) -> Self {
        Stamp {
            counter,
            sent_micros: unix_micros_now(),
        }
    }

    /// The stamp's wire form.
    pub fn encode(&self) -> [u8; STAMP_LEN] {
        let mut out = [0u8; STAMP_LEN];
        out[..4].copy_from_slice(&STAMP_MAGIC);
        out[4..12].copy_from_slice(&self.counter.to_be_bytes());
        out[12..20].copy_from_slice(&self.sent_micros.to_be_bytes());
        out
    }

    /// Reads the stamp from the last [`STAMP_LEN`] bytes of an RTP payload, if it has one.
    pub fn from_payload(payload: &[u8]) -> Option<Stamp> {
        let tail = payload.len().checked_sub(STAMP_LEN).map(|start| &payload[start..])?;
        if tail[..4] != STAMP_MAGIC {
            return None;
        }
        Some(Stamp {
            counter: u64::from_be_bytes(tail[4..12].try_into().ok()?),
            sent_micros: u64::from_be_bytes(tail[12..20].try_into().ok()?),
        })
    }

    /// The send time.
    pub fn sent_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.sent_micros)
    }

    /// Time since the packet was made (zero if the clock went backwards).
    pub fn age(&self) -> Duration {
        Duration::from_micros(unix_micros_now().saturating_sub(self.sent_micros))
    }

    /// The simulcast layer that sent the packet (index, lowest first; 0 for a plain track).
    pub fn layer(&self) -> u8 {
        (self.counter >> STAMP_LAYER_SHIFT) as u8
    }

    /// The packet's number within its layer.
    pub fn sequence(&self) -> u64 {
        self.counter & ((1 << STAMP_LAYER_SHIFT) - 1)
    }
}

/// RFC 6464 audio level of a packet, as the client-to-mixer header extension carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// Whether the sender thinks this is voice.
    pub voice: bool,
    /// Level in −dBov: 0 is loudest, 127 is silence.
    pub level: u8,
}

impl AudioLevel {
    /// Silence.
    pub const SILENCE: AudioLevel = AudioLevel {
        voice: false,
        level: 127,
    };

    /// The extension's one byte.
    pub fn to_byte(self) -> u8 {
        (u8::from(self.voice) << 7) | self.level.min(127)
    }

    /// Parses the extension's byte.
    pub fn from_byte(byte: u8) -> Self {
        AudioLevel {
            voice: byte & 0x80 != 0,
            level: byte & 0x7F,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Opus
// ---------------------------------------------------------------------------------------------

/// Duration of one Opus packet.
pub const OPUS_FRAME_DURATION: Duration = Duration::from_millis(20);
/// RTP clock rate of Opus.
pub const OPUS_CLOCK_RATE: u32 = 48_000;
/// RTP timestamp increment per 20 ms packet.
pub const OPUS_SAMPLES_PER_FRAME: u32 = 960;

/// A 20 ms CELT-only fullband mono frame (TOC config 31, code 0) that decodes to silence.
const SILENT_OPUS_FRAME: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// Turns a one-frame Opus packet (TOC code 0) into a code-3 packet carrying `padding` as Opus
/// padding, which decoders ignore (RFC 6716 §3.2.5). `None` for packets of other codes.
pub fn opus_with_padding(packet: &[u8], padding: &[u8]) -> Option<Vec<u8>> {
    let (&toc, frame) = packet.split_first()?;
    if toc & 0x03 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(packet.len() + padding.len() + 2 + padding.len() / 254);
    out.push(toc | 0x03);
    // Frame count byte: CBR (v=0), padding present (p=1), one frame (M=1).
    out.push(0b0100_0001);
    let mut left = padding.len();
    while left >= 255 {
        out.push(255);
        left -= 254;
    }
    out.push(left as u8);
    out.extend_from_slice(frame);
    out.extend_from_slice(padding);
    Some(out)
}

/// The Opus frame inside a packet made by [`opus_with_padding`] (or the packet itself when it is
/// not padded): what a decoder would see without the stamp.
pub fn opus_strip_padding(packet: &[u8]) -> Option<&[u8]> {
    let (&toc, rest) = packet.split_first()?;
    if toc & 0x03 != 3 {
        return Some(packet);
    }
    let (&count, mut rest) = rest.split_first()?;
    if count & 0x80 != 0 || count & 0x3F != 1 {
        return None; // VBR or several frames: not made by us.
    }
    let mut padding = 0usize;
    if count & 0x40 != 0 {
        loop {
            let (&b, r) = rest.split_first()?;
            rest = r;
            if b == 255 {
                padding += 254;
            } else {
                padding += b as usize;
                break;
            }
        }
    }
    let frame_len = rest.len().checked_sub(padding)?;
    Some(&rest[..frame_len])
}

/// Makes 20 ms Opus packets, each stamped.
pub struct OpusSynth {
    counter: u64,
    #[cfg(feature = "opus")]
    tone: Option<ToneEncoder>,
}

#[cfg(feature = "opus")]
struct ToneEncoder {
    encoder: opus::Encoder,
    frequency: f32,
    phase: f32,
}

impl Default for OpusSynth {
    fn default() -> Self {
        Self::silence()
    }
}

impl OpusSynth {
    /// Silence: a fixed valid frame, no encoder needed.
    pub fn silence() -> Self {
        OpusSynth {
            counter: 0,
            #[cfg(feature = "opus")]
            tone: None,
        }
    }

    /// A sine tone of `frequency` Hz at a moderate level, encoded by libopus (mono, 32 kbit/s).
    #[cfg(feature = "opus")]
    pub fn tone(frequency: f32) -> Result<Self, opus::Error> {
        let mut encoder = opus::Encoder::new(OPUS_CLOCK_RATE, opus::Channels::Mono, opus::Application::Audio)?;
        encoder.set_bitrate(opus::Bitrate::Bits(32_000))?;
        Ok(OpusSynth {
            counter: 0,
            tone: Some(ToneEncoder {
                encoder,
                frequency,
                phase: 0.0,
            }),
        })
    }

    /// How many packets were made so far (the next packet's stamp counter).
    pub fn packets_made(&self) -> u64 {
        self.counter
    }

    /// The audio level of what this makes: silence, or a tone at about −13 dBov (RMS of a sine at
    /// 0.3 of full scale) marked as voice.
    pub fn audio_level(&self) -> AudioLevel {
        #[cfg(feature = "opus")]
        if self.tone.is_some() {
            return AudioLevel { voice: true, level: 13 };
        }
        AudioLevel::SILENCE
    }

    /// The next packet's payload.
    pub fn next_payload(&mut self) -> Bytes {
        let stamp = Stamp::now(self.counter).encode();
        self.counter += 1;
        #[cfg(feature = "opus")]
        if let Some(tone) = &mut self.tone {
            let step = 2.0 * std::f32::consts::PI * tone.frequency / OPUS_CLOCK_RATE as f32;
            let pcm: Vec<f32> = (0..OPUS_SAMPLES_PER_FRAME)
                .map(|_| {
                    let v = 0.3 * tone.phase.sin();
                    tone.phase = (tone.phase + step) % (2.0 * std::f32::consts::PI);
                    v
                })
                .collect();
            match tone.encoder.encode_vec_float(&pcm, 1275) {
                Ok(packet) => {
                    if let Some(stamped) = opus_with_padding(&packet, &stamp) {
                        return Bytes::from(stamped);
                    }
                    tracing::debug!("libopus made a multi-frame packet; sending it unstamped");
                    return Bytes::from(packet);
                }
                Err(e) => tracing::warn!(error = %e, "opus encode failed; sending silence"),
            }
        }
        // SILENT_OPUS_FRAME is a code-0 packet, so padding always applies.
        Bytes::from(opus_with_padding(&SILENT_OPUS_FRAME, &stamp).unwrap_or_default())
    }
}

// ---------------------------------------------------------------------------------------------
// VP8
// ---------------------------------------------------------------------------------------------

/// RTP clock rate of video.
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// Shape of the synthetic VP8 stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vp8Config {
    /// Target average bit rate of RTP payloads, bits per second.
    pub bitrate_bps: u32,
    /// Frames per second.
    pub fps: u32,
    /// A keyframe every this many frames (0: only the first frame and on request).
    pub keyframe_interval: u32,
    /// How many times larger a keyframe is than a delta frame.
    pub keyframe_factor: u32,
    /// Largest RTP payload, bytes.
    pub max_payload: usize,
    /// Picture size written into keyframe headers.
    pub width: u16,
    /// Picture size written into keyframe headers.
    pub height: u16,
}

impl Default for Vp8Config {
    fn default() -> Self {
        Vp8Config {
            bitrate_bps: 1_000_000,
            fps: 30,
            keyframe_interval: 150,
            keyframe_factor: 4,
            max_payload: 1100,
            width: 640,
            height: 480,
        }
    }
}

impl Vp8Config {
    /// Time between frames.
    pub fn frame_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.fps.max(1) as f64)
    }

    /// RTP timestamp increment per frame.
    pub fn timestamp_step(&self) -> u32 {
        VIDEO_CLOCK_RATE / self.fps.max(1)
    }

    /// (delta frame, keyframe) sizes in bytes keeping the average at the target bit rate.
    fn frame_sizes(&self) -> (usize, usize) {
        let average = self.bitrate_bps as f64 / 8.0 / self.fps.max(1) as f64;
        let factor = self.keyframe_factor.max(1) as f64;
        let delta = match self.keyframe_interval {
            0 => average,
            n => average * n as f64 / (n as f64 - 1.0 + factor),
        };
        let min = VP8_DESCRIPTOR_LEN + VP8_KEYFRAME_HEADER_LEN + STAMP_LEN;
        ((delta as usize).max(min), ((delta * factor) as usize).max(min))
    }
}

// ---------------------------------------------------------------------------------------------
// Simulcast
// ---------------------------------------------------------------------------------------------

/// Rids of the three simulcast encodings, lowest first (as `a=simulcast:send q;h;f` lists them).
pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

/// Share of the top layer's bit rate each layer gets, lowest first, as (numerator, denominator):
/// the lower layers have 1/16 and 1/4 of the pixels but, as with real encoders, more bits per
/// pixel (browsers send roughly 150 kbit/s, 500 kbit/s and 1.5 Mbit/s at 720p).
pub const SIMULCAST_BITRATE_SHARE: [(u32, u32); 3] = [(1, 10), (3, 10), (1, 1)];

/// One encoding of a simulcast track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulcastLayer {
    /// RTP stream id (`a=rid`), sent in the rid header extension of every packet.
    pub rid: String,
    /// What the layer's encoder makes.
    pub video: Vp8Config,
}

/// The three layers of a simulcast camera whose top layer is `top` (e.g. 1280×720 at 1 Mbit/s):
/// `q` a quarter of its width and height at 1/10 of its bit rate, `h` half its size at 3/10, and
/// `f` = `top`. Frame rate and keyframe spacing are `top`'s for all three.
pub fn simulcast_layers(top: &Vp8Config) -> Vec<SimulcastLayer> {
    let steps = SIMULCAST_RIDS.len() as u32;
    SIMULCAST_RIDS
        .iter()
        .zip(SIMULCAST_BITRATE_SHARE)
        .enumerate()
        .map(|(i, (rid, (num, den)))| {
            let down = 1u16 << (steps - 1 - i as u32);
            SimulcastLayer {
                rid: (*rid).to_owned(),
                video: Vp8Config {
                    bitrate_bps: (top.bitrate_bps as u64 * num as u64 / den.max(1) as u64) as u32,
                    width: top.width / down,
                    height: top.height / down,
                    ..top.clone()
                },
            }
        })
        .collect()
}

/// One synthetic frame, packetized.
#[derive(Debug, Clone)]
pub struct Vp8Frame {
    /// Whether this is a keyframe.
    pub keyframe: bool,
    /// Frame number, from 0.
    pub frame_number: u64,
    /// The frame's RTP payloads in order; the last one gets the marker bit.
    pub packets: Vec<Bytes>,
}

/// Length of the payload descriptor this generator writes (X, I, M: 15-bit picture id).
const VP8_DESCRIPTOR_LEN: usize = 4;
/// Frame tag (3) + start code (3) + width and height (4).
const VP8_KEYFRAME_HEADER_LEN: usize = 10;

/// Makes a stamped VP8-shaped stream.
pub struct Vp8Synth {
    config: Vp8Config,
    frame_number: u64,
    picture_id: u16,
    packet_counter: u64,
    keyframe_pending: bool,
    keyframes_made: u64,
    layer: u8,
}

impl Vp8Synth {
    /// A new stream; its first frame is a keyframe.
    pub fn new(config: Vp8Config) -> Self {
        Vp8Synth {
            config,
            frame_number: 0,
            picture_id: 0,
            packet_counter: 0,
            keyframe_pending: true,
            keyframes_made: 0,
            layer: 0,
        }
    }

    /// A new stream for simulcast layer `layer` (0 = lowest): its stamps say so ([`Stamp::layer`]).
    pub fn for_layer(config: Vp8Config, layer: u8) -> Self {
        Vp8Synth {
            layer,
            ..Self::new(config)
        }
    }

    /// The stream's configuration.
    pub fn config(&self) -> &Vp8Config {
        &self.config
    }

    /// Makes the next frame a keyframe (a PLI or FIR arrived).
    pub fn request_keyframe(&mut self) {
        self.keyframe_pending = true;
    }

    /// Keyframes made so far.
    pub fn keyframes_made(&self) -> u64 {
        self.keyframes_made
    }

    /// Packets made so far (the next packet's stamp counter).
    pub fn packets_made(&self) -> u64 {
        self.packet_counter
    }

    /// The next frame.
    pub fn next_frame(&mut self) -> Vp8Frame {
        let interval = self.config.keyframe_interval as u64;
        let keyframe = self.keyframe_pending || (interval > 0 && self.frame_number.is_multiple_of(interval));
        self.keyframe_pending = false;
        if keyframe {
            self.keyframes_made += 1;
        }
        let (delta_size, key_size) = self.config.frame_sizes();
        let size = if keyframe { key_size } else { delta_size };
        let max = self
            .config
            .max_payload
            .max(VP8_DESCRIPTOR_LEN + VP8_KEYFRAME_HEADER_LEN + STAMP_LEN + 1);
        let count = size.div_ceil(max);
        let mut packets = Vec::with_capacity(count);
        let sent_micros = unix_micros_now();
        for index in 0..count {
            let len = size / count + usize::from(index < size % count);
            let first = index == 0;
            let mut buf = BytesMut::with_capacity(len);
            // Payload descriptor: X=1, S only on the frame's first packet, partition 0;
            // then I=1 and a 15-bit picture id (M=1).
            buf.put_u8(0x80 | if first { 0x10 } else { 0 });
            buf.put_u8(0x80);
            buf.put_u16(0x8000 | (self.picture_id & 0x7FFF));
            if first {
                // Frame tag: P (bit 0) is 0 for a keyframe; version 0; show_frame; first
                // partition size (19 bits) covering the whole synthetic frame.
                let partition = (size.min(0x7FFFF) as u32) << 5;
                let tag = (if keyframe { 0 } else { 1 }) | 0x10 | partition;
                buf.put_slice(&tag.to_le_bytes()[..3]);
                if keyframe {
                    buf.put_slice(&[0x9D, 0x01, 0x2A]);
                    buf.put_u16_le(self.config.width & 0x3FFF);
                    buf.put_u16_le(self.config.height & 0x3FFF);
                }
            }
            let stamp = Stamp {
                counter: (u64::from(self.layer) << STAMP_LAYER_SHIFT) | self.packet_counter,
                sent_micros,
            }
            .encode();
            self.packet_counter += 1;
            let filler = len.saturating_sub(buf.len() + STAMP_LEN);
            let seed = self.frame_number as u8;
            buf.extend((0..filler).map(|i| seed.wrapping_add(i as u8)));
            buf.put_slice(&stamp);
            packets.push(buf.freeze());
        }
        let frame = Vp8Frame {
            keyframe,
            frame_number: self.frame_number,
            packets,
        };
        self.frame_number += 1;
        self.picture_id = (self.picture_id + 1) & 0x7FFF;
        frame
    }
}

/// The parts of a VP8 RTP payload descriptor (RFC 7741 §4.2) a receiver cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// S: the packet starts a partition.
    pub start: bool,
    /// Partition index.
    pub partition: u8,
    /// Picture id, 7 or 15 bits, when present.
    pub picture_id: Option<u16>,
    /// Descriptor length; the VP8 payload follows.
    pub len: usize,
}

/// Parses a VP8 payload descriptor.
pub fn parse_vp8_descriptor(payload: &[u8]) -> Option<Vp8Descriptor> {
    let first = *payload.first()?;
    let mut len = 1;
    let mut picture_id = None;
    if first & 0x80 != 0 {
        let ext = *payload.get(1)?;
        len = 2;
        if ext & 0x80 != 0 {
            let b = *payload.get(len)?;
            if b & 0x80 != 0 {
                picture_id = Some((((b & 0x7F) as u16) << 8) | *payload.get(len + 1)? as u16);
                len += 2;
            } else {
                picture_id = Some((b & 0x7F) as u16);
                len += 1;
            }
        }
        if ext & 0x40 != 0 {
            len += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            len += 1; // TID/KEYIDX
        }
    }
    (payload.len() >= len).then_some(Vp8Descriptor {
        start: first & 0x10 != 0,
        partition: first & 0x07,
        picture_id,
        len,
    })
}

/// The picture size (width, height) a keyframe's first packet announces: the VP8 frame tag,
/// the start code `9d 01 2a`, then 14-bit width and height, little-endian (RFC 6386 §9.1).
/// `None` for any other packet.
pub fn vp8_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    let d = parse_vp8_descriptor(payload).filter(|d| d.start && d.partition == 0)?;
    let h = payload.get(d.len..d.len + VP8_KEYFRAME_HEADER_LEN)?;
    if h[0] & 0x01 != 0 || h[3..6] != [0x9D, 0x01, 0x2A] {
        return None;
    }
    Some((
        u16::from_le_bytes([h[6], h[7]]) & 0x3FFF,
        u16::from_le_bytes([h[8], h[9]]) & 0x3FFF,
    ))
}

/// Whether a VP8 RTP payload is the first packet of a keyframe.
pub fn vp8_is_keyframe_start(payload: &[u8]) -> bool {
    match parse_vp8_descriptor(payload) {
        Some(d) if d.start && d.partition == 0 => payload.get(d.len).is_some_and(|tag| tag & 0x01 == 0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_at_the_end_of_a_payload() {
        let stamp = Stamp {
            counter: 42,
            sent_micros: 1_700_000_000_000_000,
        };
        let mut payload = vec![1, 2, 3];
        payload.extend_from_slice(&stamp.encode());
        assert_eq!(Stamp::from_payload(&payload), Some(stamp));
        assert_eq!(Stamp::from_payload(&payload[..payload.len() - 1]), None);
        assert_eq!(Stamp::from_payload(&[0; 5]), None);
    }

    #[test]
    fn opus_packets_are_padded_silence_with_a_stamp() {
        let mut synth = OpusSynth::silence();
        for expected in 0..3u64 {
            let p = synth.next_payload();
            assert_eq!(p[0] & 0x03, 3, "code-3 packet");
            assert_eq!(p[0] >> 3, 31, "CELT fullband 20 ms");
            assert_eq!(Stamp::from_payload(&p).unwrap().counter, expected);
            assert_eq!(opus_strip_padding(&p), Some(&SILENT_OPUS_FRAME[1..]));
        }
        // Long padding uses 255-continuation bytes.
        let padded = opus_with_padding(&SILENT_OPUS_FRAME, &[7u8; 600]).unwrap();
        assert_eq!(opus_strip_padding(&padded), Some(&SILENT_OPUS_FRAME[1..]));
        assert!(opus_with_padding(&[0xFB, 1, 2], &[0]).is_none());
    }

    #[test]
    fn vp8_frames_follow_bitrate_keyframes_and_requests() {
        let config = Vp8Config {
            keyframe_interval: 10,
            ..Vp8Config::default()
        };
        let mut synth = Vp8Synth::new(config.clone());
        let mut bytes = 0usize;
        let mut counter = 0u64;
        for n in 0..30u64 {
            let frame = synth.next_frame();
            assert_eq!(frame.frame_number, n);
            assert_eq!(frame.keyframe, n % 10 == 0, "frame {n}");
            for (i, p) in frame.packets.iter().enumerate() {
                assert!(p.len() <= config.max_payload);
                let d = parse_vp8_descriptor(p).unwrap();
                assert_eq!(d.start, i == 0);
                assert_eq!(d.picture_id, Some(n as u16));
                assert_eq!(vp8_is_keyframe_start(p), frame.keyframe && i == 0);
                assert_eq!(Stamp::from_payload(p).unwrap().counter, counter);
                counter += 1;
                bytes += p.len();
            }
        }
        // 30 frames = 1 s at 30 fps: about 1 Mbit.
        let bits = bytes as f64 * 8.0;
        assert!((bits - 1_000_000.0).abs() < 50_000.0, "{bits} bits in a second");
        synth.request_keyframe();
        assert!(synth.next_frame().keyframe);
        assert!(!synth.next_frame().keyframe);
        assert_eq!(synth.keyframes_made(), 4);
    }

    #[test]
    fn keyframe_header_carries_start_code_and_size() {
        let mut synth = Vp8Synth::new(Vp8Config::default());
        let frame = synth.next_frame();
        let p = &frame.packets[0];
        let d = parse_vp8_descriptor(p).unwrap();
        assert_eq!(&p[d.len + 3..d.len + 6], &[0x9D, 0x01, 0x2A]);
        assert_eq!(u16::from_le_bytes([p[d.len + 6], p[d.len + 7]]), 640);
        assert_eq!(u16::from_le_bytes([p[d.len + 8], p[d.len + 9]]), 480);
    }

    #[test]
    fn keyframe_size_parses_only_keyframe_starts() {
        let mut synth = Vp8Synth::new(Vp8Config {
            width: 1280,
            height: 720,
            keyframe_interval: 3,
            ..Vp8Config::default()
        });
        let key = synth.next_frame();
        assert_eq!(vp8_keyframe_size(&key.packets[0]), Some((1280, 720)));
        assert!(key.packets[1..].iter().all(|p| vp8_keyframe_size(p).is_none()));
        let delta = synth.next_frame();
        assert!(!delta.keyframe);
        assert_eq!(vp8_keyframe_size(&delta.packets[0]), None);
        // A damaged start code is not a keyframe header.
        let mut bad = key.packets[0].to_vec();
        let d = parse_vp8_descriptor(&bad).unwrap();
        bad[d.len + 4] = 0;
        assert_eq!(vp8_keyframe_size(&bad), None);
        assert_eq!(vp8_keyframe_size(&[0x90]), None);
    }

    #[test]
    fn simulcast_layers_halve_size_and_share_the_bitrate() {
        let top = Vp8Config {
            width: 1280,
            height: 720,
            ..Vp8Config::default()
        };
        let layers = simulcast_layers(&top);
        let shape: Vec<(&str, u16, u16, u32)> = layers
            .iter()
            .map(|l| (l.rid.as_str(), l.video.width, l.video.height, l.video.bitrate_bps))
            .collect();
        assert_eq!(
            shape,
            vec![
                ("q", 320, 180, 100_000),
                ("h", 640, 360, 300_000),
                ("f", 1280, 720, 1_000_000)
            ]
        );
        assert!(
            layers
                .iter()
                .all(|l| l.video.fps == top.fps && l.video.keyframe_interval == top.keyframe_interval)
        );
        for (index, layer) in layers.iter().enumerate() {
            let mut synth = Vp8Synth::for_layer(layer.video.clone(), index as u8);
            let mut bytes = 0usize;
            let mut sequence = 0u64;
            // Five seconds, so that one keyframe per 150 frames averages out as configured.
            for n in 0..150u64 {
                let frame = synth.next_frame();
                if frame.keyframe {
                    assert_eq!(
                        vp8_keyframe_size(&frame.packets[0]),
                        Some((layer.video.width, layer.video.height)),
                        "{} keyframe {n}",
                        layer.rid
                    );
                }
                for p in &frame.packets {
                    let stamp = Stamp::from_payload(p).unwrap();
                    assert_eq!(stamp.layer(), index as u8);
                    assert_eq!(stamp.sequence(), sequence);
                    sequence += 1;
                    bytes += p.len();
                }
            }
            let bps = bytes as f64 * 8.0 / 5.0;
            let target = layer.video.bitrate_bps as f64;
            assert!(
                (bps - target).abs() < target * 0.05,
                "{}: {bps} bit/s for {target}",
                layer.rid
            );
        }
        // A plain track's stamps are layer 0 with the counter as it always was.
        let mut plain = Vp8Synth::new(Vp8Config::default());
        let stamp = Stamp::from_payload(&plain.next_frame().packets[0]).unwrap();
        assert_eq!((stamp.layer(), stamp.sequence(), stamp.counter), (0, 0, 0));
    }

    #[cfg(feature = "opus")]
    #[test]
    fn opus_payloads_decode() {
        let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; 960];
        let mut silence = OpusSynth::silence();
        let n = decoder.decode(&silence.next_payload(), &mut pcm, false).unwrap();
        assert_eq!(n, 960);
        assert!(pcm.iter().all(|s| s.unsigned_abs() < 10));
        let mut tone = OpusSynth::tone(440.0).unwrap();
        let mut energy = 0f64;
        for _ in 0..10 {
            let p = tone.next_payload();
            assert!(Stamp::from_payload(&p).is_some());
            let n = decoder.decode(&p, &mut pcm, false).unwrap();
            assert_eq!(n, 960);
            energy += pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>();
        }
        assert!(energy > 1e6, "tone decodes to sound: {energy}");
    }
}
