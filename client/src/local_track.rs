//! Our published tracks: RTP sequencing, synthetic payloads, and keyframe requests from the server.
//!
//! Each [`LocalTrack`] is a `TrackLocalStaticRTP` with a random SSRC and a room-unique track id;
//! it writes RTP with the payload type negotiated in the publish answer. [`LocalAudio`] paces Opus,
//! [`LocalVideo`] whole VP8 frames, and [`read_keyframe_requests`] turns PLI/FIR into keyframes.
//!
//! A simulcast video track has one encoding per layer (`a=rid` + `a=simulcast:send q;h;f` in the
//! offer), each with an SSRC and a synthetic encoder of its own; every packet of a layer carries
//! the MID and rid header extensions, by which the server's WebRTC stack maps the layer's SSRC to
//! the m-section and the rid. A layer the server switched off (`publish_layers`) sends nothing
//! until it is switched on again, and then starts with a keyframe.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use samtal_protocol::{MediaKind, TrackDeclaration, TrackSource};
use tokio::sync::{Mutex, mpsc};
use tracing::{debug, warn};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::rtp_transceiver::{RtpSender, RtpTransceiver};

use crate::error::{Error, Result};
use crate::keyframe_requests::{is_keyframe_request, keyframe_request_ssrcs};
use crate::participant::ParticipantEvent;
use crate::stats::{Counters, bump};
use crate::synthetic::{
    AudioLevel, OPUS_CLOCK_RATE, OPUS_SAMPLES_PER_FRAME, OpusSynth, SimulcastLayer, VIDEO_CLOCK_RATE, Vp8Config,
    Vp8Synth,
};

const MIME_OPUS: &str = "audio/opus";
const MIME_VP8: &str = "video/VP8";
/// Payload types `register_default_codecs` gives Opus and VP8; used until negotiation says.
const DEFAULT_OPUS_PT: u8 = 111;
const DEFAULT_VP8_PT: u8 = 96;
/// RFC 6464 client-to-mixer audio level, which the SFU reads for active-speaker detection.
pub(crate) const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// RFC 8843 MID header extension: which m-section an SSRC belongs to (needed with simulcast, whose
/// SSRCs the offer does not list).
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// RFC 8852 RTP stream id header extension: which simulcast encoding (rid) a packet belongs to.
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// Header extensions one packet carries besides the ones the stack adds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extensions<'a> {
    pub(crate) audio_level: Option<AudioLevel>,
    /// The rid of the simulcast layer; the MID goes with it.
    pub(crate) rid: Option<&'a str>,
}

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
    /// The SSRC of the track's (first) encoding.
    pub(crate) ssrc: u32,
    pub(crate) track: Arc<TrackLocalStaticRTP>,
    pub(crate) payload_type: AtomicU8,
    /// Negotiated id of the RFC 6464 audio-level header extension; 0 when not negotiated.
    pub(crate) audio_level_id: AtomicU8,
    /// Negotiated ids of the MID and rid header extensions (simulcast); 0 when not negotiated.
    mid_id: AtomicU8,
    rid_id: AtomicU8,
    /// The m-section's MID, once negotiated.
    mid: std::sync::Mutex<Option<Bytes>>,
    pub(crate) muted: AtomicBool,
    pub(crate) sender: std::sync::Mutex<Option<Arc<dyn RtpSender>>>,
    pub(crate) transceiver: std::sync::Mutex<Option<Arc<dyn RtpTransceiver>>>,
}

impl LocalTrack {
    /// A track of one encoding with a random SSRC.
    pub(crate) fn new(stream_id: &str, kind: MediaKind, source: TrackSource) -> Self {
        Self::with_encodings(stream_id, kind, source, &[(String::new(), rand::random::<u32>() | 1)])
    }

    /// A video track with one encoding per `(rid, ssrc)`, lowest layer first: simulcast.
    pub(crate) fn simulcast(stream_id: &str, source: TrackSource, encodings: &[(String, u32)]) -> Self {
        Self::with_encodings(stream_id, MediaKind::Video, source, encodings)
    }

    fn with_encodings(stream_id: &str, kind: MediaKind, source: TrackSource, encodings: &[(String, u32)]) -> Self {
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
        let ssrc = encodings.first().map_or(1, |(_, ssrc)| *ssrc);
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream_id.to_owned(),
            track_id.clone(),
            format!("samtal-synthetic-{kind_name}"),
            codec_kind,
            encodings
                .iter()
                .map(|(rid, ssrc)| RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        rid: rid.clone(),
                        ssrc: Some(*ssrc),
                        ..Default::default()
                    },
                    active: true,
                    codec: codec.clone(),
                    ..Default::default()
                })
                .collect(),
        )));
        LocalTrack {
            track_id,
            source,
            ssrc,
            track,
            payload_type: AtomicU8::new(pt),
            audio_level_id: AtomicU8::new(0),
            mid_id: AtomicU8::new(0),
            rid_id: AtomicU8::new(0),
            mid: std::sync::Mutex::new(None),
            muted: AtomicBool::new(false),
            sender: std::sync::Mutex::new(None),
            transceiver: std::sync::Mutex::new(None),
        }
    }

    /// After negotiation: use the payload type, the header extension ids and the MID the answer
    /// settled on.
    pub(crate) async fn learn_negotiated(&self) {
        let transceiver = self.transceiver.lock().ok().and_then(|t| t.clone());
        if let Some(transceiver) = transceiver
            && let Ok(Some(mid)) = transceiver.mid().await
            && let Ok(mut slot) = self.mid.lock()
        {
            *slot = Some(Bytes::from(mid.into_bytes()));
        }
        let sender = self.sender.lock().ok().and_then(|s| s.clone());
        let Some(sender) = sender else { return };
        let mime = match self.track.kind().await {
            RtpCodecKind::Audio => MIME_OPUS,
            _ => MIME_VP8,
        };
        match sender.get_parameters().await {
            Ok(params) => {
                let extensions = &params.rtp_parameters.header_extensions;
                for (uri, slot) in [
                    (AUDIO_LEVEL_URI, &self.audio_level_id),
                    (MID_URI, &self.mid_id),
                    (RID_URI, &self.rid_id),
                ] {
                    if let Some(ext) = extensions.iter().find(|e| e.uri == uri) {
                        slot.store(ext.id as u8, Ordering::Relaxed);
                    }
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
        ssrc: u32,
        rtp: &mut RtpState,
        payload: Bytes,
        marker: bool,
        extensions: Extensions<'_>,
    ) -> Result<()> {
        let mut packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker,
                payload_type: self.payload_type.load(Ordering::Relaxed),
                sequence_number: rtp.sequence_number,
                timestamp: rtp.timestamp,
                ssrc,
                ..Default::default()
            },
            payload,
        };
        let mut add = |id: u8, value: Bytes| -> Result<()> {
            packet.header.extension = true;
            packet.header.extension_profile = rtc::rtp::header::EXTENSION_PROFILE_ONE_BYTE;
            packet.header.set_extension(id, value).map_err(Error::from)
        };
        let level_id = self.audio_level_id.load(Ordering::Relaxed);
        if let Some(level) = extensions.audio_level
            && level_id != 0
        {
            add(level_id, Bytes::copy_from_slice(&[level.to_byte()]))?;
        }
        if let Some(rid) = extensions.rid {
            let (mid_id, rid_id) = (self.mid_id.load(Ordering::Relaxed), self.rid_id.load(Ordering::Relaxed));
            let mid = self.mid.lock().ok().and_then(|m| m.clone());
            match mid {
                Some(mid) if mid_id != 0 && rid_id != 0 => {
                    add(mid_id, mid)?;
                    add(rid_id, Bytes::copy_from_slice(rid.as_bytes()))?;
                }
                // Without them the server cannot tell which layer this is and drops it.
                _ => return Err(Error::Protocol("MID and rid header extensions not negotiated".into())),
            }
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
        let extensions = Extensions {
            audio_level: level,
            rid: None,
        };
        let result = self
            .track
            .write(self.track.ssrc, &mut state.rtp, payload, false, extensions)
            .await;
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

/// One encoding of a video track: the only one of a plain track, or a simulcast layer.
pub(crate) struct VideoLayer {
    /// The layer's rid; `None` for a plain track.
    pub(crate) rid: Option<String>,
    pub(crate) ssrc: u32,
    /// Whether the server wants this layer (`publish_layers`); a plain track is always active.
    pub(crate) active: AtomicBool,
    pub(crate) keyframe_requested: AtomicBool,
    pub(crate) state: Mutex<VideoState>,
}

impl VideoLayer {
    fn new(rid: Option<String>, ssrc: u32, synth: Vp8Synth) -> Self {
        VideoLayer {
            rid,
            ssrc,
            active: AtomicBool::new(true),
            keyframe_requested: AtomicBool::new(false),
            state: Mutex::new(VideoState {
                rtp: RtpState::random(),
                synth,
            }),
        }
    }
}

pub(crate) struct LocalVideo {
    pub(crate) track: LocalTrack,
    /// Lowest first; one for a plain track.
    pub(crate) layers: Vec<VideoLayer>,
    frame_interval: Duration,
}

impl LocalVideo {
    /// A plain (single-encoding) video track.
    pub(crate) fn plain(stream_id: &str, source: TrackSource, config: Vp8Config) -> Self {
        let track = LocalTrack::new(stream_id, MediaKind::Video, source);
        let frame_interval = config.frame_interval();
        let layer = VideoLayer::new(None, track.ssrc, Vp8Synth::new(config));
        LocalVideo {
            track,
            layers: vec![layer],
            frame_interval,
        }
    }

    /// A simulcast video track, one encoding per layer (lowest first), each with its own SSRC.
    pub(crate) fn simulcast(stream_id: &str, source: TrackSource, layers: &[SimulcastLayer]) -> Self {
        let encodings: Vec<(String, u32)> = layers
            .iter()
            .map(|l| (l.rid.clone(), rand::random::<u32>() | 1))
            .collect();
        let track = LocalTrack::simulcast(stream_id, source, &encodings);
        let frame_interval = layers
            .first()
            .map_or_else(|| Vp8Config::default().frame_interval(), |l| l.video.frame_interval());
        let layers = layers
            .iter()
            .zip(encodings)
            .enumerate()
            .map(|(index, (layer, (rid, ssrc)))| {
                VideoLayer::new(Some(rid), ssrc, Vp8Synth::for_layer(layer.video.clone(), index as u8))
            })
            .collect();
        LocalVideo {
            track,
            layers,
            frame_interval,
        }
    }

    /// Time between frames.
    pub(crate) fn frame_interval(&self) -> Duration {
        self.frame_interval
    }

    /// Whether this track is sent as simulcast.
    pub(crate) fn is_simulcast(&self) -> bool {
        self.layers.iter().any(|l| l.rid.is_some())
    }

    /// Makes the next frame of every layer a keyframe.
    pub(crate) fn request_keyframe(&self) {
        for layer in &self.layers {
            layer.keyframe_requested.store(true, Ordering::Relaxed);
        }
    }

    /// A keyframe request (PLI/FIR) named these media SSRCs: the layers they name make a
    /// keyframe next, or all layers when none is named.
    pub(crate) fn request_keyframe_for(&self, ssrcs: &[u32]) {
        let mut any = false;
        for layer in self.layers.iter().filter(|l| ssrcs.contains(&l.ssrc)) {
            layer.keyframe_requested.store(true, Ordering::Relaxed);
            any = true;
        }
        if !any {
            self.request_keyframe();
        }
    }

    /// Sends only the layers whose rid is in `active` (`publish_layers`); a layer switched back
    /// on starts with a keyframe. Returns whether anything changed. Plain tracks ignore this.
    pub(crate) fn set_active_layers(&self, active: &[String]) -> bool {
        let mut changed = false;
        for layer in &self.layers {
            let Some(rid) = &layer.rid else { continue };
            let on = active.iter().any(|a| a == rid);
            let was = layer.active.swap(on, Ordering::Relaxed);
            if on && !was {
                layer.keyframe_requested.store(true, Ordering::Relaxed);
            }
            changed |= on != was;
        }
        changed
    }

    /// The rids of the layers being sent (empty for a plain track).
    pub(crate) fn active_rids(&self) -> Vec<String> {
        self.layers
            .iter()
            .filter(|l| l.active.load(Ordering::Relaxed))
            .filter_map(|l| l.rid.clone())
            .collect()
    }

    /// Sends one frame on every active layer; returns whether any of them was a keyframe.
    pub(crate) async fn send_frame(&self, counters: &Counters) -> Result<bool> {
        let mut result = Ok(());
        let mut keyframe = false;
        let mut sent_any = false;
        for (index, layer) in self.layers.iter().enumerate() {
            let mut state = layer.state.lock().await;
            let step = state.synth.config().timestamp_step();
            if !layer.active.load(Ordering::Relaxed) {
                // The encoder is off, but the clock runs on: a layer switched back on continues at
                // the right timestamp.
                state.rtp.timestamp = state.rtp.timestamp.wrapping_add(step);
                continue;
            }
            if layer.keyframe_requested.swap(false, Ordering::Relaxed) {
                state.synth.request_keyframe();
            }
            let frame = state.synth.next_frame();
            let last = frame.packets.len().saturating_sub(1);
            let extensions = Extensions {
                audio_level: None,
                rid: layer.rid.as_deref(),
            };
            for (i, payload) in frame.packets.into_iter().enumerate() {
                match self
                    .track
                    .write(layer.ssrc, &mut state.rtp, payload, i == last, extensions)
                    .await
                {
                    Ok(()) => {
                        bump(&counters.video_packets_sent, 1);
                        if layer.rid.is_some()
                            && let Some(c) = counters.simulcast_packets_sent.get(index)
                        {
                            bump(c, 1);
                        }
                    }
                    Err(e) => {
                        bump(&counters.send_errors, 1);
                        result = Err(e);
                    }
                }
            }
            state.rtp.timestamp = state.rtp.timestamp.wrapping_add(step);
            sent_any = true;
            if frame.keyframe {
                keyframe = true;
                bump(&counters.keyframes_sent, 1);
            }
        }
        if sent_any {
            bump(&counters.video_frames_sent, 1);
        }
        result.map(|()| keyframe)
    }
}

/// Our simulcast video tracks by track id, shared with the signaling task, which applies
/// `publish_layers` to them.
pub(crate) type SimulcastSlot = Arc<std::sync::Mutex<HashMap<String, Arc<LocalVideo>>>>;

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
            let ssrcs: Vec<u32> = packets
                .iter()
                .flat_map(|p| keyframe_request_ssrcs(p.as_ref()))
                .collect();
            video.request_keyframe_for(&ssrcs);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::simulcast_layers;

    fn simulcast_camera() -> LocalVideo {
        let top = Vp8Config {
            width: 1280,
            height: 720,
            ..Vp8Config::default()
        };
        LocalVideo::simulcast("p1", TrackSource::Camera, &simulcast_layers(&top))
    }

    fn keyframes_pending(video: &LocalVideo) -> Vec<bool> {
        video
            .layers
            .iter()
            .map(|l| l.keyframe_requested.swap(false, Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn simulcast_layers_have_rids_and_ssrcs_of_their_own() {
        let video = simulcast_camera();
        assert!(video.is_simulcast());
        let rids: Vec<_> = video.layers.iter().map(|l| l.rid.clone().unwrap()).collect();
        assert_eq!(rids, ["q", "h", "f"]);
        let mut ssrcs: Vec<u32> = video.layers.iter().map(|l| l.ssrc).collect();
        assert_eq!(video.track.ssrc, ssrcs[0]);
        ssrcs.sort_unstable();
        ssrcs.dedup();
        assert_eq!(ssrcs.len(), 3);
        assert_eq!(video.active_rids(), ["q", "h", "f"]);
        let plain = LocalVideo::plain("p1", TrackSource::ScreenShare, Vp8Config::default());
        assert!(!plain.is_simulcast());
        assert_eq!(plain.layers.len(), 1);
        assert_eq!(plain.layers[0].ssrc, plain.track.ssrc);
    }

    #[test]
    fn publish_layers_switch_layers_and_a_layer_back_on_starts_with_a_keyframe() {
        let video = simulcast_camera();
        assert!(video.set_active_layers(&["q".to_owned()]));
        assert_eq!(video.active_rids(), ["q"]);
        assert_eq!(keyframes_pending(&video), [false, false, false]);
        assert!(!video.set_active_layers(&["q".to_owned()]), "no change");
        assert!(video.set_active_layers(&["q".to_owned(), "f".to_owned()]));
        assert_eq!(video.active_rids(), ["q", "f"]);
        assert_eq!(keyframes_pending(&video), [false, false, true]);
        assert!(video.set_active_layers(&[]));
        assert!(video.active_rids().is_empty());
        // A plain track ignores it.
        let plain = LocalVideo::plain("p1", TrackSource::Camera, Vp8Config::default());
        assert!(!plain.set_active_layers(&[]));
        assert!(plain.layers[0].active.load(Ordering::Relaxed));
    }

    #[test]
    fn keyframe_requests_go_to_the_layers_they_name() {
        let video = simulcast_camera();
        video.request_keyframe_for(&[video.layers[1].ssrc]);
        assert_eq!(keyframes_pending(&video), [false, true, false]);
        video.request_keyframe_for(&[video.layers[0].ssrc, video.layers[2].ssrc]);
        assert_eq!(keyframes_pending(&video), [true, false, true]);
        // A request naming none of ours (or nothing) asks every layer.
        video.request_keyframe_for(&[12345]);
        assert_eq!(keyframes_pending(&video), [true, true, true]);
        video.request_keyframe_for(&[]);
        assert_eq!(keyframes_pending(&video), [true, true, true]);
    }
}
