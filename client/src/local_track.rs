//! Our published tracks: RTP sequencing, synthetic payloads, and keyframe requests from the server.
//!
//! Each [`LocalTrack`] is a `TrackLocalStaticRTP` with a random SSRC and a room-unique track id;
//! it writes RTP with the payload type negotiated in the publish answer. [`LocalAudio`] paces Opus,
//! [`LocalVideo`] whole VP8 frames, and [`read_keyframe_requests`] turns PLI/FIR into keyframes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use samtal_protocol::{MediaKind, TrackDeclaration, TrackSource};
use tokio::sync::{Mutex, mpsc};
use tracing::{debug, warn};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::rtp_transceiver::RtpSender;

use crate::error::{Error, Result};
use crate::keyframe_requests::is_keyframe_request;
use crate::participant::ParticipantEvent;
use crate::stats::{Counters, bump};
use crate::synthetic::{AudioLevel, OPUS_CLOCK_RATE, OPUS_SAMPLES_PER_FRAME, OpusSynth, VIDEO_CLOCK_RATE, Vp8Synth};

const MIME_OPUS: &str = "audio/opus";
const MIME_VP8: &str = "video/VP8";
/// Payload types `register_default_codecs` gives Opus and VP8; used until negotiation says.
const DEFAULT_OPUS_PT: u8 = 111;
const DEFAULT_VP8_PT: u8 = 96;
/// RFC 6464 client-to-mixer audio level, which the SFU reads for active-speaker detection.
pub(crate) const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// RTP sequencing of one outgoing stream.
pub(crate) struct RtpState {
    pub(crate) sequence_number: u16,
    pub(crate) timestamp: u32,
}

impl RtpState {
    pub(crate) fn random() -> Self {
        RtpState {
            sequence_number: rand::random(),
            timestamp: rand::random(),
        }
    }
}

/// A published track and what it needs to write RTP.
pub(crate) struct LocalTrack {
    pub(crate) track_id: String,
    pub(crate) source: TrackSource,
    pub(crate) ssrc: u32,
    pub(crate) track: Arc<TrackLocalStaticRTP>,
    pub(crate) payload_type: AtomicU8,
    /// Negotiated id of the RFC 6464 audio-level header extension; 0 when not negotiated.
    pub(crate) audio_level_id: AtomicU8,
    pub(crate) muted: AtomicBool,
    pub(crate) sender: std::sync::Mutex<Option<Arc<dyn RtpSender>>>,
}

impl LocalTrack {
    pub(crate) fn new(stream_id: &str, kind: MediaKind, source: TrackSource) -> Self {
        let (codec_kind, codec, pt) = match kind {
            MediaKind::Audio => (
                RtpCodecKind::Audio,
                RTCRtpCodec {
                    mime_type: MIME_OPUS.to_owned(),
                    clock_rate: OPUS_CLOCK_RATE,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                    rtcp_feedback: vec![],
                },
                DEFAULT_OPUS_PT,
            ),
            MediaKind::Video => (
                RtpCodecKind::Video,
                RTCRtpCodec {
                    mime_type: MIME_VP8.to_owned(),
                    clock_rate: VIDEO_CLOCK_RATE,
                    channels: 0,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![],
                },
                DEFAULT_VP8_PT,
            ),
        };
        let kind_name = match kind {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        };
        // Track ids must be unique in the room: subscribers' webrtc stacks key tracks by them.
        let track_id = format!("{kind_name}-{:016x}", rand::random::<u64>());
        let ssrc = rand::random::<u32>() | 1;
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream_id.to_owned(),
            track_id.clone(),
            format!("samtal-synthetic-{kind_name}"),
            codec_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                active: true,
                codec,
                ..Default::default()
            }],
        )));
        LocalTrack {
            track_id,
            source,
            ssrc,
            track,
            payload_type: AtomicU8::new(pt),
            audio_level_id: AtomicU8::new(0),
            muted: AtomicBool::new(false),
            sender: std::sync::Mutex::new(None),
        }
    }

    /// After negotiation: use the payload type the answer settled on.
    /// After negotiation: use the payload type (and audio-level extension id) the answer settled on.
    pub(crate) async fn learn_negotiated(&self) {
        let sender = self.sender.lock().ok().and_then(|s| s.clone());
        let Some(sender) = sender else { return };
        let mime = match self.track.kind().await {
            RtpCodecKind::Audio => MIME_OPUS,
            _ => MIME_VP8,
        };
        match sender.get_parameters().await {
            Ok(params) => {
                if let Some(ext) = params
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == AUDIO_LEVEL_URI)
                {
                    self.audio_level_id.store(ext.id as u8, Ordering::Relaxed);
                }
                if let Some(codec) = params
                    .rtp_parameters
                    .codecs
                    .iter()
                    .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
                {
                    self.payload_type.store(codec.payload_type, Ordering::Relaxed);
                    debug!(track_id = %self.track_id, pt = codec.payload_type, "negotiated payload type");
                } else {
                    warn!(track_id = %self.track_id, "{mime} not among the negotiated codecs");
                }
            }
            Err(e) => warn!(track_id = %self.track_id, error = %e, "no sender parameters"),
        }
    }

    async fn write(
        &self,
        rtp: &mut RtpState,
        payload: Bytes,
        marker: bool,
        audio_level: Option<AudioLevel>,
    ) -> Result<()> {
        let mut packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker,
                payload_type: self.payload_type.load(Ordering::Relaxed),
                sequence_number: rtp.sequence_number,
                timestamp: rtp.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload,
        };
        let level_id = self.audio_level_id.load(Ordering::Relaxed);
        if let Some(level) = audio_level
            && level_id != 0
        {
            packet.header.extension = true;
            packet.header.extension_profile = rtc::rtp::header::EXTENSION_PROFILE_ONE_BYTE;
            packet
                .header
                .set_extension(level_id, Bytes::copy_from_slice(&[level.to_byte()]))
                .map_err(Error::from)?;
        }
        rtp.sequence_number = rtp.sequence_number.wrapping_add(1);
        self.track.write_rtp(packet).await?;
        Ok(())
    }

    pub(crate) fn declaration(&self) -> TrackDeclaration {
        TrackDeclaration {
            track_id: self.track_id.clone(),
            source: self.source,
        }
    }
}

pub(crate) struct AudioState {
    pub(crate) rtp: RtpState,
    pub(crate) synth: OpusSynth,
}

pub(crate) struct LocalAudio {
    pub(crate) track: LocalTrack,
    pub(crate) state: Mutex<AudioState>,
}

impl LocalAudio {
    pub(crate) async fn send_payload(
        &self,
        counters: &Counters,
        payload: Bytes,
        samples: u32,
        level: Option<AudioLevel>,
    ) -> Result<()> {
        let mut state = self.state.lock().await;
        let result = self.track.write(&mut state.rtp, payload, false, level).await;
        state.rtp.timestamp = state.rtp.timestamp.wrapping_add(samples);
        match &result {
            Ok(()) => bump(&counters.audio_packets_sent, 1),
            Err(_) => bump(&counters.send_errors, 1),
        }
        result
    }

    pub(crate) async fn send_synthetic(&self, counters: &Counters) -> Result<()> {
        let (payload, level) = {
            let mut state = self.state.lock().await;
            (state.synth.next_payload(), state.synth.audio_level())
        };
        self.send_payload(counters, payload, OPUS_SAMPLES_PER_FRAME, Some(level))
            .await
    }
}

pub(crate) struct VideoState {
    pub(crate) rtp: RtpState,
    pub(crate) synth: Vp8Synth,
}

pub(crate) struct LocalVideo {
    pub(crate) track: LocalTrack,
    pub(crate) state: Mutex<VideoState>,
    pub(crate) keyframe_requested: AtomicBool,
}

impl LocalVideo {
    pub(crate) async fn send_frame(&self, counters: &Counters) -> Result<bool> {
        let mut state = self.state.lock().await;
        if self.keyframe_requested.swap(false, Ordering::Relaxed) {
            state.synth.request_keyframe();
        }
        let frame = state.synth.next_frame();
        let step = state.synth.config().timestamp_step();
        let last = frame.packets.len().saturating_sub(1);
        let mut result = Ok(());
        for (i, payload) in frame.packets.into_iter().enumerate() {
            match self.track.write(&mut state.rtp, payload, i == last, None).await {
                Ok(()) => bump(&counters.video_packets_sent, 1),
                Err(e) => {
                    bump(&counters.send_errors, 1);
                    result = Err(e);
                }
            }
        }
        state.rtp.timestamp = state.rtp.timestamp.wrapping_add(step);
        bump(&counters.video_frames_sent, 1);
        if frame.keyframe {
            bump(&counters.keyframes_sent, 1);
        }
        result.map(|()| frame.keyframe)
    }
}

/// Reads RTCP our publish connection lets through (only PLI/FIR) for one local track.
pub(crate) async fn read_keyframe_requests(
    track: Arc<TrackLocalStaticRTP>,
    track_id: String,
    video: Option<Arc<LocalVideo>>,
    counters: Arc<Counters>,
    events: mpsc::UnboundedSender<ParticipantEvent>,
) {
    while let Some(event) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        let requests = packets.iter().filter(|p| is_keyframe_request(p.as_ref())).count() as u64;
        if requests == 0 {
            continue;
        }
        bump(&counters.keyframe_requests, requests);
        if let Some(video) = &video {
            video.keyframe_requested.store(true, Ordering::Relaxed);
        }
        debug!(%track_id, requests, "keyframe requested");
        let _ = events.send(ParticipantEvent::KeyframeRequested {
            track_id: track_id.clone(),
        });
    }
}

pub(crate) fn audio_synth(tone_hz: Option<f32>) -> Result<OpusSynth> {
    match tone_hz {
        None => Ok(OpusSynth::silence()),
        #[cfg(feature = "opus")]
        Some(hz) => OpusSynth::tone(hz).map_err(|e| Error::Usage(format!("opus encoder: {e}"))),
        #[cfg(not(feature = "opus"))]
        Some(_) => Err(Error::Usage("a tone needs the `opus` feature".into())),
    }
}
