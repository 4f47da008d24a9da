//! A whole Samtal participant: the signaling connection plus its two peer connections.
//!
//! [`Participant::join`] joins a room and, when asked to publish, opens the `publish` peer
//! connection (the client offers) with synthetic Opus and/or VP8 tracks and waits until it is
//! connected. A background task answers every `subscribe` offer the server sends (the server
//! re-offers as tracks come and go), applies the publish answer and trickled candidates, and
//! hands everything else to the user as [`ParticipantEvent`]s. Every RTP packet received on the
//! subscribe connection arrives on a channel as a [`Received`].
//!
//! [`Participant::publish`] and [`Participant::unpublish`] add and remove tracks later (a screen
//! share, say) with a new publish offer on the same connection.
//!
//! Media is sent packet by packet ([`Participant::send_audio`], [`Participant::send_video_frame`])
//! or by pacing tasks ([`Participant::start_media`]: 50 audio packets/s and video at the configured
//! frame rate). Keyframe requests (PLI/FIR) from the server are counted and make the next video
//! frame a keyframe.
//!
//! ICE: the connections bind one UDP socket on [`ParticipantOptions::bind_ip`] (127.0.0.1 by
//! default), use only the ICE servers `joined` names, and send their SDP once gathering is
//! complete, so the host candidate is inside it; nothing is trickled.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::interceptor::Slot;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use samtal_protocol::{
    ClientMessage, IceServer, MediaKind, PcKind, ServerMessage, TrackDeclaration, TrackSource,
};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionState, RTCSessionDescription, Registry, register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::error::{Error, Result};
use crate::keyframe_requests::{KEYFRAME_REQUESTS_SLOT, KeyframeRequests, is_keyframe_request};
use crate::signal::{JoinOptions, Joined, SignalSender, SignalingClient};
use crate::synthetic::{
    OPUS_CLOCK_RATE, OPUS_FRAME_DURATION, OPUS_SAMPLES_PER_FRAME, OpusSynth, VIDEO_CLOCK_RATE,
    Vp8Config, Vp8Synth,
};

const MIME_OPUS: &str = "audio/opus";
const MIME_VP8: &str = "video/VP8";
/// Payload types `register_default_codecs` gives Opus and VP8; used until negotiation says.
const DEFAULT_OPUS_PT: u8 = 111;
const DEFAULT_VP8_PT: u8 = 96;

/// What to join and what to publish.
#[derive(Debug, Clone)]
pub struct ParticipantOptions {
    /// Room, name, token, hidden.
    pub join: JoinOptions,
    /// Publish a synthetic Opus microphone track.
    pub audio: bool,
    /// Publish a synthetic VP8 camera track.
    pub video: bool,
    /// With the `opus` feature: send a sine tone of this frequency instead of silence.
    pub audio_tone_hz: Option<f32>,
    /// Shape of the synthetic video.
    pub video_config: Vp8Config,
    /// Address the peer connections bind (port chosen by the system); loopback by default.
    pub bind_ip: IpAddr,
    /// Capacity of the received-media channel; packets beyond it are dropped and counted.
    pub media_capacity: usize,
    /// Limit for each step of joining: `joined`, ICE gathering, the publish answer, connecting.
    pub timeout: Duration,
}

impl ParticipantOptions {
    /// Join `room` as `name`, publishing nothing.
    pub fn new(room: impl Into<String>, name: impl Into<String>) -> Self {
        Self::from_join(JoinOptions::new(room, name))
    }

    /// The given join options, publishing nothing.
    pub fn from_join(join: JoinOptions) -> Self {
        ParticipantOptions {
            join,
            audio: false,
            video: false,
            audio_tone_hz: None,
            video_config: Vp8Config::default(),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            media_capacity: 4096,
            timeout: Duration::from_secs(10),
        }
    }

    /// Also publish audio.
    pub fn with_audio(mut self) -> Self {
        self.audio = true;
        self
    }

    /// Also publish video.
    pub fn with_video(mut self) -> Self {
        self.video = true;
        self
    }
}

/// One RTP packet received on the subscribe connection.
#[derive(Debug, Clone)]
pub struct Received {
    /// Whose it is: the track's stream id, which the server sets to the publisher's participant id.
    pub participant_id: String,
    /// The publisher's track id.
    pub track_id: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// RTP SSRC (the server's, for this subscriber).
    pub ssrc: u32,
    /// RTP payload type.
    pub payload_type: u8,
    /// RTP sequence number.
    pub sequence_number: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// RTP payload.
    pub payload: Bytes,
    /// When this client got it.
    pub arrival: Instant,
}

impl Received {
    /// The synthetic stamp in the payload, if the sender was a synthetic source.
    pub fn stamp(&self) -> Option<crate::synthetic::Stamp> {
        crate::synthetic::Stamp::from_payload(&self.payload)
    }
}

/// Something that happened, other than media.
#[derive(Debug, Clone)]
pub enum ParticipantEvent {
    /// A server message the participant does not consume itself: `participant_joined`,
    /// `participant_left`, `track_published`, `track_unpublished`, `mute_changed`,
    /// `mute_request`, `removed`, `error`, and `pong`.
    Server(ServerMessage),
    /// A peer connection changed state.
    ConnectionState {
        /// Which connection.
        pc: PcKind,
        /// Its new state.
        state: RTCPeerConnectionState,
    },
    /// The first packet of a remote track arrived.
    TrackStarted {
        /// The publisher (the track's stream id).
        participant_id: String,
        /// The publisher's track id.
        track_id: String,
        /// Audio or video.
        kind: MediaKind,
    },
    /// A remote track ended (removed by renegotiation, or the connection closed).
    TrackEnded {
        /// The publisher.
        participant_id: String,
        /// The track.
        track_id: String,
    },
    /// The server asked for a keyframe (PLI or FIR) on one of our tracks.
    KeyframeRequested {
        /// Our track id.
        track_id: String,
    },
    /// An offer or answer could not be applied.
    NegotiationFailed {
        /// Which connection.
        pc: PcKind,
        /// What went wrong.
        message: String,
    },
    /// The signaling websocket closed.
    SignalingClosed,
}

/// Counters of a participant, cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParticipantStats {
    /// Audio RTP packets handed to the publish connection.
    pub audio_packets_sent: u64,
    /// Video RTP packets handed to the publish connection.
    pub video_packets_sent: u64,
    /// Video frames sent.
    pub video_frames_sent: u64,
    /// Keyframes sent.
    pub keyframes_sent: u64,
    /// PLI/FIR packets received about our tracks.
    pub keyframe_requests: u64,
    /// Writes the WebRTC stack refused.
    pub send_errors: u64,
    /// RTP packets received on the subscribe connection and delivered.
    pub media_received: u64,
    /// RTP packets received but dropped because the media channel was full.
    pub media_dropped: u64,
}

#[derive(Default)]
struct Counters {
    audio_packets_sent: AtomicU64,
    video_packets_sent: AtomicU64,
    video_frames_sent: AtomicU64,
    keyframes_sent: AtomicU64,
    keyframe_requests: AtomicU64,
    send_errors: AtomicU64,
    media_received: AtomicU64,
    media_dropped: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ParticipantStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ParticipantStats {
            audio_packets_sent: get(&self.audio_packets_sent),
            video_packets_sent: get(&self.video_packets_sent),
            video_frames_sent: get(&self.video_frames_sent),
            keyframes_sent: get(&self.keyframes_sent),
            keyframe_requests: get(&self.keyframe_requests),
            send_errors: get(&self.send_errors),
            media_received: get(&self.media_received),
            media_dropped: get(&self.media_dropped),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------
// Local tracks
// ---------------------------------------------------------------------------------------------

/// RTP sequencing of one outgoing stream.
struct RtpState {
    sequence_number: u16,
    timestamp: u32,
}

impl RtpState {
    fn random() -> Self {
        RtpState { sequence_number: rand::random(), timestamp: rand::random() }
    }
}

/// A published track and what it needs to write RTP.
struct LocalTrack {
    track_id: String,
    source: TrackSource,
    ssrc: u32,
    track: Arc<TrackLocalStaticRTP>,
    payload_type: AtomicU8,
    muted: AtomicBool,
    sender: std::sync::Mutex<Option<Arc<dyn RtpSender>>>,
}

impl LocalTrack {
    fn new(stream_id: &str, kind: MediaKind, source: TrackSource) -> Self {
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
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
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
            muted: AtomicBool::new(false),
            sender: std::sync::Mutex::new(None),
        }
    }

    /// After negotiation: use the payload type the answer settled on.
    async fn learn_payload_type(&self) {
        let sender = self.sender.lock().ok().and_then(|s| s.clone());
        let Some(sender) = sender else { return };
        let mime = match self.track.kind().await {
            RtpCodecKind::Audio => MIME_OPUS,
            _ => MIME_VP8,
        };
        match sender.get_parameters().await {
            Ok(params) => {
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

    async fn write(&self, rtp: &mut RtpState, payload: Bytes, marker: bool) -> Result<()> {
        let packet = rtc::rtp::Packet {
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
        rtp.sequence_number = rtp.sequence_number.wrapping_add(1);
        self.track.write_rtp(packet).await?;
        Ok(())
    }

    fn declaration(&self) -> TrackDeclaration {
        TrackDeclaration { track_id: self.track_id.clone(), source: self.source }
    }
}

struct AudioState {
    rtp: RtpState,
    synth: OpusSynth,
}

struct LocalAudio {
    track: LocalTrack,
    state: Mutex<AudioState>,
}

impl LocalAudio {
    async fn send_payload(&self, counters: &Counters, payload: Bytes, samples: u32) -> Result<()> {
        let mut state = self.state.lock().await;
        let result = self.track.write(&mut state.rtp, payload, false).await;
        state.rtp.timestamp = state.rtp.timestamp.wrapping_add(samples);
        match &result {
            Ok(()) => bump(&counters.audio_packets_sent, 1),
            Err(_) => bump(&counters.send_errors, 1),
        }
        result
    }

    async fn send_synthetic(&self, counters: &Counters) -> Result<()> {
        let payload = self.state.lock().await.synth.next_payload();
        self.send_payload(counters, payload, OPUS_SAMPLES_PER_FRAME).await
    }
}

struct VideoState {
    rtp: RtpState,
    synth: Vp8Synth,
}

struct LocalVideo {
    track: LocalTrack,
    state: Mutex<VideoState>,
    keyframe_requested: AtomicBool,
}

impl LocalVideo {
    async fn send_frame(&self, counters: &Counters) -> Result<bool> {
        let mut state = self.state.lock().await;
        if self.keyframe_requested.swap(false, Ordering::Relaxed) {
            state.synth.request_keyframe();
        }
        let frame = state.synth.next_frame();
        let step = state.synth.config().timestamp_step();
        let last = frame.packets.len().saturating_sub(1);
        let mut result = Ok(());
        for (i, payload) in frame.packets.into_iter().enumerate() {
            match self.track.write(&mut state.rtp, payload, i == last).await {
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

// ---------------------------------------------------------------------------------------------
// Peer connection plumbing
// ---------------------------------------------------------------------------------------------

/// Where the subscribe connection's media goes.
#[derive(Clone)]
struct MediaSink {
    tx: mpsc::Sender<Received>,
    counters: Arc<Counters>,
}

struct Handler {
    pc: PcKind,
    gathering: watch::Sender<RTCIceGatheringState>,
    state: watch::Sender<RTCPeerConnectionState>,
    events: mpsc::UnboundedSender<ParticipantEvent>,
    media: Option<MediaSink>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        debug!(pc = ?self.pc, ?state, "ICE gathering");
        self.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        debug!(pc = ?self.pc, %state, "connection state");
        self.state.send_replace(state);
        let _ = self.events.send(ParticipantEvent::ConnectionState { pc: self.pc, state });
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // This runs on the connection's driver task: read the track in a task of its own.
        let Some(sink) = self.media.clone() else { return };
        let events = self.events.clone();
        tokio::spawn(read_remote_track(track, sink, events));
    }
}

async fn read_remote_track(
    track: Arc<dyn TrackRemote>,
    sink: MediaSink,
    events: mpsc::UnboundedSender<ParticipantEvent>,
) {
    let participant_id = track.stream_id().await;
    let track_id = track.track_id().await;
    let kind = match track.kind().await {
        RtpCodecKind::Video => MediaKind::Video,
        _ => MediaKind::Audio,
    };
    debug!(%participant_id, %track_id, ?kind, "remote track started");
    let _ = events.send(ParticipantEvent::TrackStarted {
        participant_id: participant_id.clone(),
        track_id: track_id.clone(),
        kind,
    });
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let received = Received {
                    participant_id: participant_id.clone(),
                    track_id: track_id.clone(),
                    kind,
                    ssrc: packet.header.ssrc,
                    payload_type: packet.header.payload_type,
                    sequence_number: packet.header.sequence_number,
                    timestamp: packet.header.timestamp,
                    marker: packet.header.marker,
                    payload: packet.payload,
                    arrival: Instant::now(),
                };
                match sink.tx.try_send(received) {
                    Ok(()) => bump(&sink.counters.media_received, 1),
                    // Nobody reads (or not fast enough): keep draining the track regardless.
                    Err(_) => bump(&sink.counters.media_dropped, 1),
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    debug!(%participant_id, %track_id, "remote track ended");
    let _ = events.send(ParticipantEvent::TrackEnded { participant_id, track_id });
}

/// A peer connection with the watches its handler feeds.
struct Connection {
    pc: Arc<dyn PeerConnection>,
    gathering: watch::Receiver<RTCIceGatheringState>,
    state: watch::Receiver<RTCPeerConnectionState>,
}

impl Connection {
    async fn build(
        kind: PcKind,
        bind_ip: IpAddr,
        ice_servers: &[IceServer],
        events: mpsc::UnboundedSender<ParticipantEvent>,
        media: Option<MediaSink>,
    ) -> Result<Connection> {
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs()?;
        let mut registry = register_default_interceptors(Registry::new(), &mut media_engine)?;
        if kind == PcKind::Publish {
            registry = registry.with(Slot::from(KEYFRAME_REQUESTS_SLOT), KeyframeRequests::default());
        }
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(
                ice_servers
                    .iter()
                    .map(|s| RTCIceServer {
                        urls: s.urls.clone(),
                        username: s.username.clone().unwrap_or_default(),
                        credential: s.credential.clone().unwrap_or_default(),
                    })
                    .collect(),
            )
            .build();
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let handler = Arc::new(Handler { pc: kind, gathering: gathering_tx, state: state_tx, events, media });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec![format!("{}:0", SocketIp(bind_ip))])
            .build()
            .await?;
        Ok(Connection { pc: Arc::new(pc), gathering, state })
    }

    /// The local description once gathering is complete, so it holds our candidates.
    async fn gathered_local_sdp(&mut self, timeout: Duration) -> Result<String> {
        tokio::time::timeout(timeout, self.gathering.wait_for(|s| *s == RTCIceGatheringState::Complete))
            .await
            .map_err(|_| Error::Timeout("ICE gathering"))?
            .map_err(|_| Error::Closed)?;
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| Error::Protocol("no local description after set_local_description".into()))
    }

    async fn wait_connected(&mut self, timeout: Duration) -> Result<()> {
        let state = tokio::time::timeout(
            timeout,
            self.state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                )
            }),
        )
        .await
        .map_err(|_| Error::Timeout("the publish connection to connect"))?
        .map_err(|_| Error::Closed)?;
        match *state {
            RTCPeerConnectionState::Connected => Ok(()),
            other => Err(Error::Protocol(format!("publish connection {other}"))),
        }
    }
}

/// Formats an IP for `ip:port` (brackets for IPv6).
struct SocketIp(IpAddr);

impl std::fmt::Display for SocketIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}"),
            IpAddr::V6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// Answers a subscribe offer; returns the answer SDP with our candidates.
async fn answer_subscribe(conn: &mut Connection, sdp: String, timeout: Duration) -> Result<String> {
    conn.pc.set_remote_description(RTCSessionDescription::offer(sdp)?).await?;
    let answer = conn.pc.create_answer(None).await?;
    conn.pc.set_local_description(answer).await?;
    conn.gathered_local_sdp(timeout).await
}

/// The publish connection, once there is one, shared with the signaling task.
type PublishSlot = Arc<std::sync::Mutex<Option<Arc<dyn PeerConnection>>>>;

/// Applies what the server sends; forwards the rest as events.
async fn signal_loop(
    mut rx: mpsc::UnboundedReceiver<ServerMessage>,
    signal: SignalSender,
    mut subscribe: Connection,
    publish: PublishSlot,
    publish_answers: mpsc::UnboundedSender<Result<()>>,
    events: mpsc::UnboundedSender<ParticipantEvent>,
    timeout: Duration,
) {
    while let Some(message) = rx.recv().await {
        let publish = publish.lock().ok().and_then(|p| p.clone());
        match message {
            ServerMessage::Offer { pc: PcKind::Subscribe, sdp } => {
                match answer_subscribe(&mut subscribe, sdp, timeout).await {
                    Ok(sdp) => {
                        debug!("answering subscribe offer");
                        if signal.send(ClientMessage::Answer { pc: PcKind::Subscribe, sdp }).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "could not answer the subscribe offer");
                        let _ = events.send(ParticipantEvent::NegotiationFailed {
                            pc: PcKind::Subscribe,
                            message: e.to_string(),
                        });
                    }
                }
            }
            ServerMessage::Answer { pc: PcKind::Publish, sdp } => {
                let result = match &publish {
                    Some(pc) => match RTCSessionDescription::answer(sdp) {
                        Ok(desc) => pc.set_remote_description(desc).await.map_err(Error::from),
                        Err(e) => Err(e.into()),
                    },
                    None => Err(Error::Protocol("publish answer without a publish offer".into())),
                };
                if let Err(e) = &result {
                    warn!(error = %e, "could not apply the publish answer");
                    let _ = events.send(ParticipantEvent::NegotiationFailed {
                        pc: PcKind::Publish,
                        message: e.to_string(),
                    });
                }
                let _ = publish_answers.send(result);
            }
            ServerMessage::Candidate { pc, candidate } => {
                if candidate.candidate.is_empty() {
                    continue; // end of candidates
                }
                let target = match pc {
                    PcKind::Subscribe => Some(&subscribe.pc),
                    PcKind::Publish => publish.as_ref(),
                };
                if let Some(target) = target {
                    let init = RTCIceCandidateInit {
                        candidate: candidate.candidate,
                        sdp_mid: candidate.sdp_mid,
                        sdp_mline_index: candidate.sdp_mline_index,
                        ..Default::default()
                    };
                    if let Err(e) = target.add_ice_candidate(init).await {
                        warn!(?pc, error = %e, "could not add a server candidate");
                    }
                }
            }
            ServerMessage::Offer { pc: PcKind::Publish, .. }
            | ServerMessage::Answer { pc: PcKind::Subscribe, .. } => {
                warn!("server sent an offer/answer for the wrong connection; ignored");
                let _ = events.send(ParticipantEvent::NegotiationFailed {
                    pc: PcKind::Publish,
                    message: "server offer/answer for the wrong connection".into(),
                });
            }
            ServerMessage::Error { code, message, ref_type, fatal } => {
                warn!(?code, %message, ?ref_type, fatal, "server error");
                if ref_type.as_deref() == Some("offer") {
                    let _ = publish_answers.send(Err(Error::Server { code, message: message.clone() }));
                }
                let _ = events.send(ParticipantEvent::Server(ServerMessage::Error {
                    code,
                    message,
                    ref_type,
                    fatal,
                }));
            }
            other => {
                let _ = events.send(ParticipantEvent::Server(other));
            }
        }
    }
    debug!("signaling closed");
    let _ = events.send(ParticipantEvent::SignalingClosed);
}

/// Reads RTCP our publish connection lets through (only PLI/FIR) for one local track.
async fn read_keyframe_requests(
    track: Arc<TrackLocalStaticRTP>,
    track_id: String,
    video: Option<Arc<LocalVideo>>,
    counters: Arc<Counters>,
    events: mpsc::UnboundedSender<ParticipantEvent>,
) {
    while let Some(event) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else { continue };
        let requests = packets.iter().filter(|p| is_keyframe_request(p.as_ref())).count() as u64;
        if requests == 0 {
            continue;
        }
        bump(&counters.keyframe_requests, requests);
        if let Some(video) = &video {
            video.keyframe_requested.store(true, Ordering::Relaxed);
        }
        debug!(%track_id, requests, "keyframe requested");
        let _ = events.send(ParticipantEvent::KeyframeRequested { track_id: track_id.clone() });
    }
}

// ---------------------------------------------------------------------------------------------
// Participant
// ---------------------------------------------------------------------------------------------


/// A joined participant. Drop closes it abruptly; [`Participant::close`] leaves cleanly.
pub struct Participant {
    joined: Joined,
    options: ParticipantOptions,
    signal: SignalSender,
    subscribe: Arc<dyn PeerConnection>,
    publish: Option<Connection>,
    publish_slot: PublishSlot,
    publish_answers: mpsc::UnboundedReceiver<Result<()>>,
    audio: Option<Arc<LocalAudio>>,
    videos: Vec<Arc<LocalVideo>>,
    counters: Arc<Counters>,
    events_tx: mpsc::UnboundedSender<ParticipantEvent>,
    media_rx: Option<mpsc::Receiver<Received>>,
    events_rx: Option<mpsc::UnboundedReceiver<ParticipantEvent>>,
    tasks: Vec<JoinHandle<()>>,
    /// Keyframe-request readers, by our track id.
    track_tasks: Vec<(String, JoinHandle<()>)>,
    pacers: Vec<JoinHandle<()>>,
    pacing: bool,
}

impl Participant {
    /// Joins the room behind `ws_url` (e.g. `ws://127.0.0.1:8080/ws`). Returns once joined and,
    /// when publishing, once the publish connection is connected.
    pub async fn join(ws_url: &str, options: ParticipantOptions) -> Result<Participant> {
        let (client, joined) = SignalingClient::connect(ws_url, options.join.clone()).await?;
        let (signal, signal_rx) = client.into_parts();
        match Self::set_up(joined, signal.clone(), signal_rx, options).await {
            Ok(participant) => Ok(participant),
            Err(e) => {
                signal.close().await;
                Err(e)
            }
        }
    }

    async fn set_up(
        joined: Joined,
        signal: SignalSender,
        signal_rx: mpsc::UnboundedReceiver<ServerMessage>,
        options: ParticipantOptions,
    ) -> Result<Participant> {
        let counters = Arc::new(Counters::default());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (media_tx, media_rx) = mpsc::channel(options.media_capacity.max(1));
        let subscribe = Connection::build(
            PcKind::Subscribe,
            options.bind_ip,
            &joined.ice_servers,
            events_tx.clone(),
            Some(MediaSink { tx: media_tx, counters: Arc::clone(&counters) }),
        )
        .await?;
        let subscribe_pc = Arc::clone(&subscribe.pc);
        let publish_slot = PublishSlot::default();
        let (answers_tx, answers_rx) = mpsc::unbounded_channel();
        let signal_task = tokio::spawn(signal_loop(
            signal_rx,
            signal.clone(),
            subscribe,
            Arc::clone(&publish_slot),
            answers_tx,
            events_tx.clone(),
            options.timeout,
        ));
        let mut participant = Participant {
            joined,
            options,
            signal,
            subscribe: subscribe_pc,
            publish: None,
            publish_slot,
            publish_answers: answers_rx,
            audio: None,
            videos: Vec::new(),
            counters,
            events_tx,
            media_rx: Some(media_rx),
            events_rx: Some(events_rx),
            tasks: vec![signal_task],
            track_tasks: Vec::new(),
            pacers: Vec::new(),
            pacing: false,
        };
        if participant.options.audio {
            participant.add_local(TrackSource::Microphone).await?;
        }
        if participant.options.video {
            participant.add_local(TrackSource::Camera).await?;
        }
        if participant.publish.is_some() {
            participant.negotiate_publish().await?;
        }
        Ok(participant)
    }

    fn local_tracks(&self) -> Vec<&LocalTrack> {
        let audio = self.audio.as_deref().map(|a| &a.track);
        audio.into_iter().chain(self.videos.iter().map(|v| &v.track)).collect()
    }

    fn video(&self, source: Option<TrackSource>) -> Result<&Arc<LocalVideo>> {
        let found = match source {
            Some(source) => self.videos.iter().find(|v| v.track.source == source),
            None => {
                self.videos.iter().find(|v| v.track.source == TrackSource::Camera).or(self.videos.first())
            }
        };
        found.ok_or_else(|| Error::Usage(format!("not publishing video from {source:?}")))
    }

    /// Adds a local track for `source` to the publish connection (made on first use), without
    /// negotiating.
    async fn add_local(&mut self, source: TrackSource) -> Result<String> {
        if self.local_tracks().iter().any(|t| t.source == source) {
            return Err(Error::Usage(format!("already publishing {source:?}")));
        }
        if self.publish.is_none() {
            let conn = Connection::build(
                PcKind::Publish,
                self.options.bind_ip,
                &self.joined.ice_servers,
                self.events_tx.clone(),
                None,
            )
            .await?;
            if let Ok(mut slot) = self.publish_slot.lock() {
                *slot = Some(Arc::clone(&conn.pc));
            }
            self.publish = Some(conn);
        }
        let pc = Arc::clone(&self.publish.as_ref().expect("publish connection just made").pc);
        let kind = match source {
            TrackSource::Microphone => MediaKind::Audio,
            TrackSource::Camera | TrackSource::ScreenShare => MediaKind::Video,
        };
        let track = LocalTrack::new(&self.joined.participant_id, kind, source);
        let sender = pc.add_track(Arc::clone(&track.track) as Arc<dyn TrackLocal>).await?;
        if let Ok(mut slot) = track.sender.lock() {
            *slot = Some(sender);
        }
        let track_id = track.track_id.clone();
        match kind {
            MediaKind::Audio => {
                let synth = audio_synth(self.options.audio_tone_hz)?;
                self.audio = Some(Arc::new(LocalAudio {
                    track,
                    state: Mutex::new(AudioState { rtp: RtpState::random(), synth }),
                }));
            }
            MediaKind::Video => self.videos.push(Arc::new(LocalVideo {
                track,
                state: Mutex::new(VideoState {
                    rtp: RtpState::random(),
                    synth: Vp8Synth::new(self.options.video_config.clone()),
                }),
                keyframe_requested: AtomicBool::new(false),
            })),
        }
        Ok(track_id)
    }

    /// Offers the publish connection's current tracks and applies the answer.
    async fn negotiate_publish(&mut self) -> Result<()> {
        let timeout = self.options.timeout;
        let tracks = self.published_tracks();
        let conn = self.publish.as_mut().ok_or_else(|| Error::Usage("nothing published".into()))?;
        while self.publish_answers.try_recv().is_ok() {} // stale results of an earlier failure
        let offer = conn.pc.create_offer(None).await?;
        conn.pc.set_local_description(offer).await?;
        let sdp = conn.gathered_local_sdp(timeout).await?;
        self.signal.send(ClientMessage::Offer { pc: PcKind::Publish, sdp, tracks })?;
        match tokio::time::timeout(timeout, self.publish_answers.recv()).await {
            Err(_) => return Err(Error::Timeout("the publish answer")),
            Ok(None) => return Err(Error::Closed),
            Ok(Some(result)) => result?,
        }
        conn.wait_connected(timeout).await?;
        info!(participant_id = %self.joined.participant_id, tracks = self.local_tracks().len(), "publishing");
        for local in self.local_tracks() {
            local.learn_payload_type().await;
        }
        self.watch_keyframe_requests();
        Ok(())
    }

    /// Starts a keyframe-request reader for each local track that has none.
    fn watch_keyframe_requests(&mut self) {
        let mut new = Vec::new();
        if let Some(audio) = &self.audio {
            new.push((Arc::clone(&audio.track.track), audio.track.track_id.clone(), None));
        }
        for video in &self.videos {
            new.push((Arc::clone(&video.track.track), video.track.track_id.clone(), Some(Arc::clone(video))));
        }
        for (track, track_id, video) in new {
            if self.track_tasks.iter().any(|(id, _)| *id == track_id) {
                continue;
            }
            let task = tokio::spawn(read_keyframe_requests(
                track,
                track_id.clone(),
                video,
                Arc::clone(&self.counters),
                self.events_tx.clone(),
            ));
            self.track_tasks.push((track_id, task));
        }
    }

    /// Publishes one more synthetic track — `Microphone` is audio, `Camera` and `ScreenShare` are
    /// video — by renegotiating the publish connection. Returns its track id. Paced media, if
    /// started, includes it at once.
    pub async fn publish(&mut self, source: TrackSource) -> Result<String> {
        let track_id = self.add_local(source).await?;
        self.negotiate_publish().await?;
        if self.pacing {
            self.start_media();
        }
        Ok(track_id)
    }

    /// Stops publishing the track of `source` (`remove_track` and a new publish offer).
    pub async fn unpublish(&mut self, source: TrackSource) -> Result<()> {
        let track_id = self
            .local_tracks()
            .into_iter()
            .find(|t| t.source == source)
            .map(|t| t.track_id.clone())
            .ok_or_else(|| Error::Usage(format!("not publishing {source:?}")))?;
        let sender = self
            .local_tracks()
            .into_iter()
            .find(|t| t.track_id == track_id)
            .and_then(|t| t.sender.lock().ok().and_then(|s| s.clone()));
        if let (Some(conn), Some(sender)) = (&self.publish, sender) {
            conn.pc.remove_track(&sender).await?;
        }
        if self.audio.as_ref().is_some_and(|a| a.track.track_id == track_id) {
            self.audio = None;
        }
        self.videos.retain(|v| v.track.track_id != track_id);
        self.track_tasks.retain(|(id, task)| {
            if *id == track_id {
                task.abort();
            }
            *id != track_id
        });
        if self.pacing {
            self.start_media();
        }
        self.negotiate_publish().await
    }

    /// The server's `joined` answer.
    pub fn joined(&self) -> &Joined {
        &self.joined
    }

    /// Our participant id.
    pub fn id(&self) -> &str {
        &self.joined.participant_id
    }

    /// A handle to send raw protocol messages (`moderate`, ...).
    pub fn signal(&self) -> &SignalSender {
        &self.signal
    }

    /// The subscribe peer connection (for stats).
    pub fn subscribe_connection(&self) -> &Arc<dyn PeerConnection> {
        &self.subscribe
    }

    /// The publish peer connection, once something was published.
    pub fn publish_connection(&self) -> Option<&Arc<dyn PeerConnection>> {
        self.publish.as_ref().map(|c| &c.pc)
    }

    /// Our published tracks, as declared in the publish offer.
    pub fn published_tracks(&self) -> Vec<TrackDeclaration> {
        self.local_tracks().into_iter().map(LocalTrack::declaration).collect()
    }

    /// Takes the channel of received RTP packets (once).
    pub fn take_media(&mut self) -> Option<mpsc::Receiver<Received>> {
        self.media_rx.take()
    }

    /// Takes the channel of events (once).
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<ParticipantEvent>> {
        self.events_rx.take()
    }

    /// The next received packet, while the channel is not taken; `None` when taken or closed.
    pub async fn next_media(&mut self) -> Option<Received> {
        self.media_rx.as_mut()?.recv().await
    }

    /// The next event, while the channel is not taken; `None` when taken or closed.
    pub async fn next_event(&mut self) -> Option<ParticipantEvent> {
        self.events_rx.as_mut()?.recv().await
    }

    /// Counters so far.
    pub fn stats(&self) -> ParticipantStats {
        self.counters.snapshot()
    }

    /// Sends one synthetic 20 ms audio packet now.
    pub async fn send_audio(&self) -> Result<()> {
        let audio = self.audio.as_ref().ok_or_else(|| Error::Usage("not publishing audio".into()))?;
        audio.send_synthetic(&self.counters).await
    }

    /// Sends an Opus payload of your own (e.g. encoded speech) covering `samples` 48 kHz samples.
    pub async fn send_audio_payload(&self, payload: Bytes, samples: u32) -> Result<()> {
        let audio = self.audio.as_ref().ok_or_else(|| Error::Usage("not publishing audio".into()))?;
        audio.send_payload(&self.counters, payload, samples).await
    }

    /// Sends one synthetic frame on the camera track (or the only video track) now; returns
    /// whether it was a keyframe.
    pub async fn send_video_frame(&self) -> Result<bool> {
        self.video(None)?.send_frame(&self.counters).await
    }

    /// Sends one synthetic frame on the video track of `source` now.
    pub async fn send_video_frame_on(&self, source: TrackSource) -> Result<bool> {
        self.video(Some(source))?.send_frame(&self.counters).await
    }

    /// Makes the next frame of every video track a keyframe.
    pub fn request_keyframe(&self) {
        for video in &self.videos {
            video.keyframe_requested.store(true, Ordering::Relaxed);
        }
    }

    /// Starts pacing tasks: audio at 50 packets/s, each video track at the configured frame
    /// rate. Muted tracks send nothing. Calling it again restarts them.
    pub fn start_media(&mut self) {
        self.stop_media();
        self.pacing = true;
        if let Some(audio) = &self.audio {
            let audio = Arc::clone(audio);
            let counters = Arc::clone(&self.counters);
            self.pacers.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(OPUS_FRAME_DURATION);
                loop {
                    tick.tick().await;
                    if audio.track.muted.load(Ordering::Relaxed) {
                        continue;
                    }
                    if let Err(e) = audio.send_synthetic(&counters).await {
                        debug!(error = %e, "audio send failed");
                    }
                }
            }));
        }
        for video in &self.videos {
            let video = Arc::clone(video);
            let counters = Arc::clone(&self.counters);
            let interval = self.options.video_config.frame_interval();
            self.pacers.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                loop {
                    tick.tick().await;
                    if video.track.muted.load(Ordering::Relaxed) {
                        continue;
                    }
                    if let Err(e) = video.send_frame(&counters).await {
                        debug!(error = %e, "video send failed");
                    }
                }
            }));
        }
    }

    /// Stops the pacing tasks.
    pub fn stop_media(&mut self) {
        self.pacing = false;
        for pacer in self.pacers.drain(..) {
            pacer.abort();
        }
    }

    /// Mutes or unmutes our track of `source`: tells the server (`mute`) and pauses its pacer.
    pub fn set_muted(&self, source: TrackSource, muted: bool) -> Result<()> {
        for local in self.local_tracks() {
            if local.source == source {
                local.muted.store(muted, Ordering::Relaxed);
            }
        }
        self.signal.send(ClientMessage::Mute { source, muted })
    }

    /// Sends `leave`, closes the websocket and both peer connections.
    pub async fn close(mut self) {
        self.stop_media();
        self.signal.close().await;
        if let Some(publish) = &self.publish
            && let Err(e) = publish.pc.close().await
        {
            debug!(error = %e, "closing the publish connection");
        }
        if let Err(e) = self.subscribe.close().await {
            debug!(error = %e, "closing the subscribe connection");
        }
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        let track_tasks = self.track_tasks.drain(..).map(|(_, task)| task);
        for task in self.pacers.drain(..).chain(self.tasks.drain(..)).chain(track_tasks) {
            task.abort();
        }
    }
}

fn audio_synth(tone_hz: Option<f32>) -> Result<OpusSynth> {
    match tone_hz {
        None => Ok(OpusSynth::silence()),
        #[cfg(feature = "opus")]
        Some(hz) => OpusSynth::tone(hz).map_err(|e| Error::Usage(format!("opus encoder: {e}"))),
        #[cfg(not(feature = "opus"))]
        Some(_) => Err(Error::Usage("a tone needs the `opus` feature".into())),
    }
}
