//! Acceptance test 3: jfk.wav upsampled to 48 kHz, Opus-encoded as a browser sends it (20 ms frames,
//! ~24 kbit/s, in-band FEC), carried as RTP-like (seq, timestamp, payload), decoded by `audio`, segmented by
//! the streaming VAD: the same four utterances within 0.25 s — also with packets dropped (FEC/PLC path).

mod common;

use std::time::Duration;

use common::{assert_matches_reference, max_deviation, read_wav_16k, test_data};
use opus::{Application, Bitrate, Channels, Encoder};
use samtal_transcriber::audio::{DecoderConfig, SpeakerDecoder};
use samtal_transcriber::fixtures::upsample_3x;
use samtal_transcriber::vad::{Segmenter, SegmenterConfig, SileroConfig, SileroVad};

struct Packet {
    seq: u16,
    timestamp: u32,
    payload: Vec<u8>,
}

/// 48 kHz mono Opus in 20 ms frames, sequence numbers and timestamps starting near their wrap-around.
fn encode_jfk() -> Vec<Packet> {
    encode_jfk_with(24_000, false)
}

/// `dtx`: the encoder's discontinuous transmission; like a WebRTC sender, packets of ≤ 2 bytes (DTX frames)
/// are not sent while sequence numbers stay contiguous, so only the RTP timestamp shows the pause.
fn encode_jfk_with(bitrate: i32, dtx: bool) -> Vec<Packet> {
    let pcm48 = upsample_3x(&read_wav_16k("audio/jfk.wav"));
    assert_eq!(pcm48.len(), 528_000);
    let mut enc = Encoder::new(48_000, Channels::Mono, Application::Voip).unwrap();
    enc.set_bitrate(Bitrate::Bits(bitrate)).unwrap();
    enc.set_inband_fec(true).unwrap();
    enc.set_packet_loss_perc(10).unwrap();
    enc.set_dtx(dtx).unwrap();
    let mut seq = 65_500u16;
    let mut packets = Vec::new();
    for (i, frame) in pcm48.chunks(960).enumerate() {
        let mut frame = frame.to_vec();
        frame.resize(960, 0.0);
        let payload = enc.encode_vec_float(&frame, 4000).unwrap();
        if dtx && payload.len() <= 2 {
            continue;
        }
        packets.push(Packet {
            seq,
            timestamp: 4_294_900_000u32.wrapping_add(960 * i as u32),
            payload,
        });
        seq = seq.wrapping_add(1);
    }
    packets
}

/// Decodes the packets not in `dropped`, segments with min_silence 300 ms; returns spans and decoder stats.
fn decode_and_segment(
    packets: &[Packet],
    dropped: &[usize],
    expected_samples: usize,
) -> (Vec<(f64, f64)>, samtal_transcriber::audio::DecoderStats, usize) {
    let vad = SileroVad::load(&SileroConfig::new(test_data("models/ggml-silero-v6.2.0-for-tests.bin"))).unwrap();
    let cfg = SegmenterConfig {
        min_silence: Duration::from_millis(300),
        ..SegmenterConfig::default()
    };
    let mut seg = Segmenter::new(vad, cfg).unwrap();
    let mut decoder = SpeakerDecoder::new(DecoderConfig::default()).unwrap();
    let mut spans = Vec::new();
    let mut decoded = 0;
    for (i, p) in packets.iter().enumerate() {
        if dropped.contains(&i) {
            continue;
        }
        let out = decoder.push(p.seq, p.timestamp, &p.payload);
        assert_eq!(out.silence_before, 0);
        decoded += out.samples.len();
        spans.extend(
            seg.push(&out.samples)
                .unwrap()
                .iter()
                .map(|u| (u.start_secs(), u.end_secs())),
        );
    }
    // A DTX pause at the very end leaves no packet behind it: the timeline is complete up to the last one.
    let missing_tail = expected_samples.saturating_sub(decoded);
    spans.extend(
        seg.push_silence(missing_tail as u64)
            .unwrap()
            .iter()
            .map(|u| (u.start_secs(), u.end_secs())),
    );
    spans.extend(seg.finish().unwrap().iter().map(|u| (u.start_secs(), u.end_secs())));
    (spans, decoder.stats(), decoded)
}

#[test]
fn opus_round_trip_keeps_the_utterances() {
    let packets = encode_jfk();
    assert_eq!(packets.len(), 550);
    let bytes: usize = packets.iter().map(|p| p.payload.len()).sum();
    let kbps = bytes as f64 * 8.0 / 11.0 / 1000.0;
    assert!((15.0..35.0).contains(&kbps), "bitrate {kbps:.1} kbit/s");

    let (spans, stats, decoded) = decode_and_segment(&packets, &[], 176_000);
    eprintln!(
        "opus {kbps:.1} kbit/s: {spans:.3?}, max deviation {:.3} s",
        max_deviation(&spans)
    );
    assert_eq!(decoded, 176_000, "16 kHz timeline of 11 s");
    assert_eq!((stats.packets, stats.lost_packets), (550, 0));
    assert_matches_reference(&spans, 0.25, "after Opus");
}

#[test]
fn opus_with_lost_packets_keeps_the_utterances() {
    let packets = encode_jfk();
    // 22 packets lost (4 %): single losses inside speech and a burst of three.
    let mut dropped: Vec<usize> = (13..550).step_by(29).collect();
    dropped.extend([200, 201, 202]);
    let (spans, stats, decoded) = decode_and_segment(&packets, &dropped, 176_000);
    eprintln!(
        "opus with {} lost: {spans:.3?}, max deviation {:.3} s, {} FEC frames, {} PLC samples",
        dropped.len(),
        max_deviation(&spans),
        stats.fec_frames,
        stats.concealed_samples
    );
    assert_eq!(decoded, 176_000, "losses are concealed on the timeline");
    assert_eq!(stats.lost_packets, dropped.len() as u64);
    assert!(
        stats.fec_frames >= 15,
        "in-band FEC should rebuild most single losses, got {}",
        stats.fec_frames
    );
    assert!(stats.concealed_samples >= 2 * 320, "the burst needs PLC");
    assert_matches_reference(&spans, 0.25, "after Opus with losses");
}

#[test]
fn other_bitrates_keep_the_utterances() {
    for bitrate in [16_000, 32_000] {
        let (spans, _, decoded) = decode_and_segment(&encode_jfk_with(bitrate, false), &[], 176_000);
        eprintln!(
            "opus {} kbit/s: max deviation {:.3} s",
            bitrate / 1000,
            max_deviation(&spans)
        );
        assert_eq!(decoded, 176_000);
        assert_matches_reference(&spans, 0.25, &format!("after Opus at {bitrate} bit/s"));
    }
}

#[test]
fn dtx_pauses_keep_the_timeline_and_the_utterances() {
    let packets = encode_jfk_with(24_000, true);
    let unsent = 550 - packets.len();
    let last = packets.last().unwrap();
    let last_end = (last.timestamp.wrapping_sub(4_294_900_000) / 3) as usize + 320;
    let (spans, stats, decoded) = decode_and_segment(&packets, &[], 176_000);
    eprintln!(
        "opus DTX: {unsent} frames not sent, max deviation {:.3} s",
        max_deviation(&spans)
    );
    assert_eq!(stats.lost_packets, 0, "DTX is not loss");
    assert_eq!(decoded, last_end, "every DTX pause is on the timeline as silence");
    assert_eq!(stats.silence_samples as usize, last_end - 320 * packets.len());
    assert_matches_reference(&spans, 0.25, "after Opus with DTX");
}
