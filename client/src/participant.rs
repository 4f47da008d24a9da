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
//! Simulcast ([`ParticipantOptions::with_simulcast`]): the camera goes as three encodings `q`, `h`,
//! `f` (320×180, 640×360, 1280×720 by default), each with its own SSRC and synthetic encoder; the
//! server's `publish_layers` switches layers off and on. A receiving participant reports how large
//! it shows each remote video track (`video_tile`, [`ParticipantOptions::with_video_tile`],
//! [`Participant::set_video_tiles`]), from which the server chooses the layer it forwards.
//!
//! ICE: the connections bind one UDP socket on [`ParticipantOptions::bind_ip`] (127.0.0.1 by
//! default), use only the ICE servers `joined` names, and send their SDP once gathering is
//! complete, so the host candidate is inside it; nothing is trickled.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use samtal_protocol::{ClientMessage, MediaKind, PcKind, ServerMessage, TrackDeclaration, TrackSource};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};

use crate::connection::{Connection, MediaSink};
use crate::dispatch::{PublishSlot, SignalLoop, signal_loop};
use crate::error::{Error, Result};
use crate::local_track::{
    AudioState, LocalAudio, LocalTrack, LocalVideo, RtpState, SimulcastSlot, audio_synth, read_keyframe_requests,
};
use crate::signal::{JoinOptions, Joined, SignalSender, SignalingClient};
use crate::stats::{Counters, ParticipantStats};
use crate::synthetic::{AudioLevel, OPUS_FRAME_DURATION, SimulcastLayer, Vp8Config, simulcast_layers};
use crate::tiles::VideoTiles;

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
    /// Shape of the synthetic video (of a plain track; see `simulcast` for the camera's layers).
    pub video_config: Vp8Config,
    /// Publish the camera as simulcast with these layers (lowest first, at most three, each half
    /// the width and height of the next); `None`: one encoding of `video_config`. Screen shares are
    /// always one encoding.
    pub simulcast: Option<Vec<SimulcastLayer>>,
    /// Report every received video track as shown in a tile of this size (width, height in device
    /// pixels) with `video_tile`; `None`: report nothing (the server then forwards the top layer).
    pub video_tile: Option<(u32, u32)>,
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
            simulcast: None,
            video_tile: None,
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

    /// Publish the camera as simulcast: layers `q`, `h`, `f` of 320×180, 640×360 and 1280×720 at
    /// 1/10, 3/10 and all of `video_config`'s bit rate (100 kbit/s, 300 kbit/s, 1 Mbit/s by
    /// default), with `video_config`'s frame rate and keyframe spacing.
    pub fn with_simulcast(mut self) -> Self {
        let top = Vp8Config {
            width: 1280,
            height: 720,
            ..self.video_config.clone()
        };
        self.simulcast = Some(simulcast_layers(&top));
        self
    }

    /// Report every received video track as shown in a `width` × `height` tile.
    pub fn with_video_tile(mut self, width: u32, height: u32) -> Self {
        self.video_tile = Some((width, height));
        self
    }
}

/// One RTP packet received on the subscribe connection.
#[derive(Debug, Clone)]
pub struct Received {
    /// Whose it is: the track's stream id, which the server sets to the publisher's participant id.
    pub participant_id: String,
    /// The track's id in the subscribe connection: the server's id for it, as announced in
    /// `track_published` (not necessarily the id the publisher declared).
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
    /// `mute_request`, `removed`, `error`, and `pong`; also `publish_layers`, after it was applied
    /// to our simulcast camera.
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
    /// The simulcast ones among `videos`, for `publish_layers`.
    simulcast: SimulcastSlot,
    tiles: Arc<VideoTiles>,
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
        let tiles = Arc::new(VideoTiles::new(signal.clone(), options.video_tile));
        let subscribe = Connection::build(
            PcKind::Subscribe,
            options.bind_ip,
            &joined.ice_servers,
            events_tx.clone(),
            Some(MediaSink {
                tx: media_tx,
                counters: Arc::clone(&counters),
                tiles: Arc::downgrade(&tiles),
            }),
        )
        .await?;
        let subscribe_pc = Arc::clone(&subscribe.pc);
        let publish_slot = PublishSlot::default();
        let simulcast = SimulcastSlot::default();
        let (answers_tx, answers_rx) = mpsc::unbounded_channel();
        tiles.participants_seen(&joined.participants);
        let signal_task = tokio::spawn(signal_loop(
            signal_rx,
            SignalLoop {
                signal: signal.clone(),
                subscribe,
                publish: Arc::clone(&publish_slot),
                publish_answers: answers_tx,
                events: events_tx.clone(),
                timeout: options.timeout,
                simulcast: Arc::clone(&simulcast),
                tiles: Arc::clone(&tiles),
                counters: Arc::clone(&counters),
            },
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
            simulcast,
            tiles,
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
            None => self
                .videos
                .iter()
                .find(|v| v.track.source == TrackSource::Camera)
                .or(self.videos.first()),
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
        let stream_id = self.joined.participant_id.clone();
        let (audio, video) = match kind {
            MediaKind::Audio => {
                let synth = audio_synth(self.options.audio_tone_hz)?;
                let audio = LocalAudio {
                    track: LocalTrack::new(&stream_id, kind, source),
                    state: Mutex::new(AudioState {
                        rtp: RtpState::random(),
                        synth,
                    }),
                };
                (Some(Arc::new(audio)), None)
            }
            MediaKind::Video => {
                let video = match (&self.options.simulcast, source) {
                    (Some(layers), TrackSource::Camera) if !layers.is_empty() => {
                        if layers.len() > 3 {
                            return Err(Error::Usage("at most three simulcast layers".into()));
                        }
                        LocalVideo::simulcast(&stream_id, source, layers)
                    }
                    _ => LocalVideo::plain(&stream_id, source, self.options.video_config.clone()),
                };
                (None, Some(Arc::new(video)))
            }
        };
        let track = match (&audio, &video) {
            (Some(a), _) => &a.track,
            (None, Some(v)) => &v.track,
            (None, None) => return Err(Error::Usage(format!("nothing to publish for {source:?}"))),
        };
        // Send-only: nothing ever comes back on the publish connection.
        let init = RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec![stream_id],
            send_encodings: vec![],
        };
        let transceiver = pc
            .add_transceiver_from_track(Arc::clone(&track.track) as Arc<dyn TrackLocal>, Some(init))
            .await?;
        let sender = transceiver.sender().await?;
        if let Ok(mut slot) = track.sender.lock() {
            *slot = sender;
        }
        if let Ok(mut slot) = track.transceiver.lock() {
            *slot = Some(transceiver);
        }
        let track_id = track.track_id.clone();
        if let Some(audio) = audio {
            self.audio = Some(audio);
        }
        if let Some(video) = video {
            if video.is_simulcast()
                && let Ok(mut slot) = self.simulcast.lock()
            {
                slot.insert(track_id.clone(), Arc::clone(&video));
            }
            self.videos.push(video);
        }
        Ok(track_id)
    }

    /// Offers the publish connection's current tracks and applies the answer.
    async fn negotiate_publish(&mut self) -> Result<()> {
        let timeout = self.options.timeout;
        let tracks = self.published_tracks();
        let conn = self
            .publish
            .as_mut()
            .ok_or_else(|| Error::Usage("nothing published".into()))?;
        while self.publish_answers.try_recv().is_ok() {} // stale results of an earlier failure
        let offer = conn.pc.create_offer(None).await?;
        conn.pc.set_local_description(offer).await?;
        let sdp = conn.gathered_local_sdp(timeout).await?;
        self.signal.send(ClientMessage::Offer {
            pc: PcKind::Publish,
            sdp,
            tracks,
        })?;
        match tokio::time::timeout(timeout, self.publish_answers.recv()).await {
            Err(_) => return Err(Error::Timeout("the publish answer")),
            Ok(None) => return Err(Error::Closed),
            Ok(Some(result)) => result?,
        }
        conn.wait_connected(timeout).await?;
        info!(participant_id = %self.joined.participant_id, tracks = self.local_tracks().len(), "publishing");
        for local in self.local_tracks() {
            local.learn_negotiated().await;
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
            new.push((
                Arc::clone(&video.track.track),
                video.track.track_id.clone(),
                Some(Arc::clone(video)),
            ));
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
        // The pacers stop, and have stopped, before the sender goes: a paced packet written after
        // `remove_track` would meet an unbound track and count as a send error.
        let pacing = self.pacing;
        self.stop_media_and_wait().await;
        if self.audio.as_ref().is_some_and(|a| a.track.track_id == track_id) {
            self.audio = None;
        }
        self.videos.retain(|v| v.track.track_id != track_id);
        if let Ok(mut slot) = self.simulcast.lock() {
            slot.remove(&track_id);
        }
        self.track_tasks.retain(|(id, task)| {
            if *id == track_id {
                task.abort();
            }
            *id != track_id
        });
        let removed = match (&self.publish, sender) {
            (Some(conn), Some(sender)) => conn.pc.remove_track(&sender).await.map_err(Error::from),
            _ => Ok(()),
        };
        if pacing {
            self.start_media();
        }
        removed?;
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
        let audio = self
            .audio
            .as_ref()
            .ok_or_else(|| Error::Usage("not publishing audio".into()))?;
        audio.send_synthetic(&self.counters).await
    }

    /// Sends an Opus payload of your own (e.g. encoded speech) covering `samples` 48 kHz samples,
    /// with its RFC 6464 audio level if you know it.
    pub async fn send_audio_payload(&self, payload: Bytes, samples: u32, level: Option<AudioLevel>) -> Result<()> {
        let audio = self
            .audio
            .as_ref()
            .ok_or_else(|| Error::Usage("not publishing audio".into()))?;
        audio.send_payload(&self.counters, payload, samples, level).await
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

    /// Makes the next frame of every video track (every layer) a keyframe.
    pub fn request_keyframe(&self) {
        for video in &self.videos {
            video.request_keyframe();
        }
    }

    /// The rids of the simulcast layers of our camera being sent now (the server may have
    /// switched some off with `publish_layers`); empty when the camera is not simulcast.
    pub fn active_layers(&self) -> Vec<String> {
        self.video(Some(TrackSource::Camera))
            .map(|v| v.active_rids())
            .unwrap_or_default()
    }

    /// Reports every received video track, now and from now on, as shown in a `width` × `height`
    /// tile (device pixels; 0 × 0: not shown) with `video_tile`.
    pub fn set_video_tiles(&self, width: u32, height: u32) {
        self.tiles.set_all(width, height);
    }

    /// Reports one received video track (the server's track id, as in `track_published` and
    /// [`Received::track_id`]) as shown in a `width` × `height` tile.
    pub fn set_video_tile(&self, track_id: &str, width: u32, height: u32) {
        self.tiles.set_one(track_id, width, height);
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
            let interval = video.frame_interval();
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

    /// Stops the pacing tasks and waits until none is still inside a send.
    async fn stop_media_and_wait(&mut self) {
        self.pacing = false;
        let pacers: Vec<_> = self.pacers.drain(..).collect();
        for pacer in &pacers {
            pacer.abort();
        }
        for pacer in pacers {
            let _ = pacer.await;
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
