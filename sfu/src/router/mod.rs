//! The SFU's routing state, sans-IO: every peer connection (webrtc-rs `rtc`), the demultiplexing
//! of datagrams to them (by ICE ufrag, then by address), rooms, participants, published tracks and
//! their subscribers, negotiation, and consent withholding.
//!
//! A [`Router`] never touches a socket or a clock. Datagrams, commands and timeouts go in with the
//! time `now`; datagrams to send ([`Router::poll_transmit`]), events for participants
//! ([`Router::poll_event`]) and the next deadline ([`Router::poll_timeout`]) come out. The media loop
//! (`crate::engine`) feeds it from sockets and a timer; the unit tests feed it from in-memory peers
//! and a fake clock.
//!
//! Per packet it keeps to what it must: a hash lookup of the source address, the peer connection's
//! own processing, the forwarding core's decision, and one write per subscriber.

mod ice;
mod identity;
mod negotiate;
mod peer;
mod sdp;
mod slab;
#[cfg(test)]
mod tests;
mod timers;

use self::sdp::{AudioPreferences, sending_track_ids, simulcast_rids};
use self::slab::Slab;
use self::timers::Timers;
use crate::config::MediaConfig;
use crate::error::{Error, Result};
use crate::forward::allocate::{self, Want};
use crate::forward::codec::abs_send_time;
use crate::forward::codec::audio_level;
use crate::forward::dynacast::Dynacast;
use crate::forward::last_n;
use crate::forward::layers::MAX_LAYERS;
use crate::forward::probe::Probe;
use crate::forward::red;
use crate::forward::{ExtensionIds, Forward, Incoming, PublishedTrack, RedFormat, SpeakerDetector};
use crate::rate::TokenBucket;
use crate::stats::{Share, Stats};
use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::configuration::RTCOfferOptions;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use samtal_protocol::{Candidate, MediaKind, PcKind, TrackDeclaration, TrackSource};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// RFC 8285 one-byte header extensions (the profile browsers use for ids 1-14).
const ONE_BYTE_EXTENSIONS: u16 = 0xBEDE;

/// How often keyframe retries and other slow bookkeeping run.
const HOUSEKEEPING: Duration = Duration::from_millis(100);

/// How often each subscriber's downlink estimate is spent anew on layers.
const ALLOCATION: Duration = Duration::from_millis(500);

/// How long a subscribe connection stays interrupted (after the 10 s of silence that interrupt it)
/// before the server restarts its ICE; it fails 15 s after the interruption.
const ICE_RESTART_AFTER: Duration = Duration::from_secs(6);

/// Share of a downlink estimate the allocator spends: the rest absorbs keyframes, retransmissions
/// and the estimate's own error.
const SPEND_PERCENT: u64 = 85;

/// Offers one participant may make at once, in seconds of its rate: renegotiation stays cheap for
/// everyone else on the media thread.
const OFFER_BURST_SECONDS: f64 = 4.0;

/// What a participant wants to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    pub audio: bool,
    pub video: bool,
    /// Receive nothing from participants who opted out of transcription (the transcription service).
    pub withhold_opted_out: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            audio: true,
            video: true,
            withhold_opted_out: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    Connected,
    /// Nothing heard from the peer for a while (ICE disconnected); it may come back before it fails.
    Interrupted,
    Failed,
    Closed,
}

/// Something the media server tells signaling about one participant.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A new offer for the participant's subscribe connection; answer with [`Router::subscribe_answer`].
    SubscribeOffer { sdp: String },
    /// One of the participant's own tracks started arriving and is now forwarded to the room.
    TrackPublished {
        track_id: String,
        kind: MediaKind,
        source: TrackSource,
        muted: bool,
    },
    /// One of the participant's own tracks went away.
    TrackUnpublished { track_id: String },
    /// A peer connection changed state; `Failed` means the participant should be dropped.
    PeerState { pc: PcKind, state: PeerState },
    /// The participant became its room's dominant speaker (tell the whole room).
    DominantSpeaker,
    /// Whose cameras the participant now receives (by participant id), when last-N leaves some out.
    VideoForwarded { participants: Vec<String> },
    /// Dynacast: of its simulcast track `track_id` (the client's id), the publisher should send only
    /// the layers with these rids.
    PublishLayers { track_id: String, active: Vec<String> },
}

/// A datagram to send: from which local address, to whom.
#[derive(Debug)]
pub struct Transmit {
    pub local: SocketAddr,
    pub to: SocketAddr,
    /// UDP (a datagram from `local`), or TCP (a frame on the ICE-TCP connection `local`–`to`).
    pub protocol: TransportProtocol,
    pub data: BytesMut,
}

/// A subscriber's sender: (subscribe peer index, sender id).
type Sink = (usize, RTCRtpSenderId);

/// Where a peer connection's packets come from: (protocol, our address, theirs).
type PeerAddr = (TransportProtocol, SocketAddr, SocketAddr);

struct Peer {
    participant: usize,
    kind: PcKind,
    pc: RTCPeerConnection,
    /// Our ICE ufrags, one per ICE generation (a restart adds one): STUN naming any of them is routed here.
    ufrags: Vec<String>,
    deadline: Option<Instant>,
    /// (protocol, local address, remote address) routed to this peer.
    addrs: Vec<PeerAddr>,
    dirty: bool,
    /// DTLS/SRTP is up: media can be written (before that, writes only produce warnings).
    connected: bool,
    /// The downlink estimate of a subscribe connection.
    estimate: Option<peer::Estimate>,
    /// Probing on a receiver-side estimate (REMB), for a subscribe connection.
    probe: Probe,
}

struct Participant {
    id: String,
    room: String,
    options: SubscribeOptions,
    span: tracing::Span,
    publish: Option<usize>,
    subscribe: Option<usize>,
    /// Client track id (from `a=msid`) → source, from applied publish offers.
    declared: HashMap<String, TrackSource>,
    /// Client track id → simulcast rids (lowest first), from applied publish offers.
    simulcast: HashMap<String, Vec<String>>,
    /// Declared client track ids set inactive (`track_active`): not published, packets dropped.
    inactive: HashSet<String>,
    /// Server track id → height of the tile it is shown in (0: not shown), for received video.
    tiles: HashMap<String, u32>,
    muted: HashSet<TrackSource>,
    /// Opted out of transcription: withheld from subscribers with `withhold_opted_out`.
    opted_out: bool,
    /// Client track id → index in `tracks`.
    published: HashMap<String, usize>,
    track_counter: u32,
    /// Server track id → (track index, sender on the subscribe connection).
    down: HashMap<String, (usize, RTCRtpSenderId)>,
    offer_in_flight: bool,
    needs_offer: bool,
    /// The next subscribe offer restarts ICE.
    ice_restart: bool,
    /// Since when the subscribe connection has been interrupted (nothing heard from it), until it
    /// is connected again.
    interrupted_since: Option<Instant>,
    /// Its ICE restart for this interruption was offered.
    restart_offered: bool,
    /// Publish offers this participant may still make now.
    offers: TokenBucket,
    /// Publishers whose cameras it receives under last-N, as last told (`None`: not told yet).
    forwarded_video: Option<Vec<usize>>,
}

struct Track {
    id: String,
    publisher: usize,
    peer: usize,
    receiver: RTCRtpReceiverId,
    media_ssrc: u32,
    kind: MediaKind,
    source: TrackSource,
    codec: RTCRtpCodec,
    /// The id of the RFC 6464 audio-level header extension on the publish connection, if negotiated.
    audio_level_id: Option<u8>,
    /// Simulcast rids, lowest layer first (empty: one plain stream).
    rids: Vec<String>,
    /// Each layer's SSRC, learnt from its packets.
    layer_ssrcs: [Option<u32>; MAX_LAYERS],
    /// The client's id of the track (its `a=msid`), which dynacast messages name.
    client_id: String,
    dynacast: Dynacast,
    /// Layers some subscriber's tile needs, from the last allocation round (bit `i`: layer `i`).
    needed: u8,
    forward: PublishedTrack<Sink>,
}

pub struct Router {
    /// Host candidates every peer connection offers.
    candidates: Vec<(SocketAddr, TransportProtocol)>,
    failed_after: Duration,
    offers_per_second: f64,
    max_media_sections: usize,
    last_n: usize,
    /// What the answers ask of publishers' audio.
    audio: AudioPreferences,
    stats: Arc<Stats>,
    identity: identity::DtlsIdentity,
    peers: Slab<Peer>,
    by_ufrag: HashMap<String, usize>,
    by_addr: HashMap<PeerAddr, usize>,
    participants: Slab<Participant>,
    participant_ids: HashMap<String, usize>,
    rooms: HashMap<String, Vec<usize>>,
    /// Each room's dominant speaker, from its participants' audio levels.
    speakers: HashMap<String, SpeakerDetector<usize>>,
    tracks: Slab<Track>,
    timers: Timers,
    /// Peers with datagrams to send or a deadline to reschedule.
    dirty: Vec<usize>,
    forwards: Vec<Forward<Sink>>,
    due: Vec<(Instant, usize)>,
    events: VecDeque<(String, MediaEvent)>,
    next_housekeeping: Instant,
    next_allocation: Instant,
    /// This router's part of the gauges in `stats`, which several media loops share.
    shares: Shares,
    /// Packets this router forwarded (the shared counter also counts other loops').
    forwarded: u64,
    /// When the router started: the origin of the abs-send-time it writes.
    started: Instant,
}

#[derive(Default)]
struct Shares {
    rooms: Share,
    participants: Share,
    peer_connections: Share,
    published_tracks: Share,
    declared_tracks: Share,
    estimated_subscribers: Share,
}

/// Refuses an offer with more than `limit` media sections, counted without parsing it: the cost of
/// applying an offer grows with its sections. The engine checks this before the offer reaches the
/// media thread.
pub fn check_offer_size(sdp: &str, limit: usize, stats: &Stats) -> Result<()> {
    let sections = sdp::media_sections(sdp);
    if sections > limit {
        Stats::add(&stats.refused_offers, 1);
        return Err(Error::TooManySections { sections, limit });
    }
    Ok(())
}

fn rtc_kind(kind: MediaKind) -> RtpCodecKind {
    match kind {
        MediaKind::Audio => RtpCodecKind::Audio,
        MediaKind::Video => RtpCodecKind::Video,
    }
}

impl Router {
    /// A router whose peer connections announce `udp` and `tcp` (the bound media addresses: UDP
    /// sockets and ICE-TCP listeners) and the configured public addresses as host candidates.
    pub fn new(
        config: &MediaConfig,
        udp: &[SocketAddr],
        tcp: &[SocketAddr],
        stats: Arc<Stats>,
        now: Instant,
    ) -> Result<Self> {
        if udp.is_empty() {
            return Err(Error::Config("no media socket".into()));
        }
        let mut candidates = Vec::new();
        for (locals, protocol) in [(udp, TransportProtocol::UDP), (tcp, TransportProtocol::TCP)] {
            candidates.extend(locals.iter().map(|&a| (a, protocol)));
            if let Some(port) = locals.first().map(|a| a.port()) {
                candidates.extend(
                    config
                        .public_ips
                        .iter()
                        .map(|&ip| (SocketAddr::new(ip, port), protocol)),
                );
            }
        }
        Ok(Self {
            candidates,
            failed_after: Duration::from_secs(config.disconnect_timeout_secs),
            offers_per_second: config.offers_per_second,
            max_media_sections: config.max_media_sections,
            last_n: config.last_n,
            audio: AudioPreferences {
                red: config.opus_red,
                dtx: config.opus_dtx,
            },
            stats,
            identity: identity::DtlsIdentity::generate()?,
            peers: Slab::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            participants: Slab::new(),
            participant_ids: HashMap::new(),
            rooms: HashMap::new(),
            speakers: HashMap::new(),
            tracks: Slab::new(),
            timers: Timers::default(),
            dirty: Vec::new(),
            forwards: Vec::new(),
            due: Vec::new(),
            events: VecDeque::new(),
            next_housekeeping: now + HOUSEKEEPING,
            next_allocation: now + ALLOCATION,
            shares: Shares::default(),
            forwarded: 0,
            started: now,
        })
    }

    // ---- outputs ---------------------------------------------------------------------------

    /// Packets forwarded so far by this router.
    pub fn forwarded(&self) -> u64 {
        self.forwarded
    }

    /// The next datagram to send. Drain it (until `None`) after every input, before asking
    /// [`poll_timeout`](Self::poll_timeout).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            let &idx = self.dirty.last()?;
            if let Some(peer) = self.peers.get_mut(idx) {
                if let Some(out) = peer.pc.poll_write() {
                    return Some(Transmit {
                        local: out.transport.local_addr,
                        to: out.transport.peer_addr,
                        protocol: out.transport.transport_protocol,
                        data: out.message,
                    });
                }
                peer.dirty = false;
                if let Some(at) = peer.pc.poll_timeout()
                    && peer.deadline != Some(at)
                {
                    peer.deadline = Some(at);
                    self.timers.schedule(at, idx);
                }
            }
            self.dirty.pop();
        }
    }

    /// The next event for a participant (by id).
    pub fn poll_event(&mut self) -> Option<(String, MediaEvent)> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next.
    pub fn poll_timeout(&self) -> Instant {
        self.timers
            .next()
            .map_or(self.next_housekeeping, |t| t.min(self.next_housekeeping))
    }

    /// Runs the peer connections' timers that are due, and the periodic bookkeeping.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.fire_timers(now);
        if now >= self.next_housekeeping {
            self.housekeeping(now);
            self.next_housekeeping = now + HOUSEKEEPING;
        }
    }

    fn emit(&mut self, participant: usize, event: MediaEvent) {
        if let Some(p) = self.participants.get(participant) {
            self.events.push_back((p.id.clone(), event));
        }
    }

    fn mark_dirty(&mut self, peer: usize) {
        if let Some(p) = self.peers.get_mut(peer)
            && !p.dirty
        {
            p.dirty = true;
            self.dirty.push(peer);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        self.timers.pop_due(now, &mut due);
        for (at, idx) in due.drain(..) {
            let Some(peer) = self.peers.get_mut(idx) else { continue };
            if peer.deadline != Some(at) {
                continue; // stale entry
            }
            peer.deadline = None;
            if let Err(e) = peer.pc.handle_timeout(now) {
                tracing::debug!("peer timeout handling: {e}");
            }
            self.process(idx, now);
        }
        self.due = due;
    }

    fn housekeeping(&mut self, now: Instant) {
        let due: Vec<usize> = self
            .tracks
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, t)| t.as_mut()?.forward.poll_keyframe(now).then_some(i))
            .collect();
        for t in due {
            self.send_keyframe_request(t, now);
        }
        for (_, t) in self.tracks.iter_mut() {
            t.forward.rates_mut().roll(now);
        }
        if now >= self.next_allocation {
            self.next_allocation = now + ALLOCATION;
            self.allocate_all(now);
            self.dynacast(now);
            self.restart_silent_subscribers(now);
        }
        let changes: Vec<(String, usize)> = self
            .speakers
            .iter_mut()
            .filter_map(|(room, d)| Some((room.clone(), d.poll(now)?)))
            .collect();
        for (room, speaker) in changes {
            Stats::add(&self.stats.speaker_changes, 1);
            if let Some(p) = self.participants.get(speaker) {
                p.span.in_scope(|| tracing::debug!("dominant speaker"));
            }
            self.emit(speaker, MediaEvent::DominantSpeaker);
            self.apply_last_n(&room, now);
        }
        if self.timers.len() > 4 * self.peers.len + 64 {
            let peers = &self.peers;
            self.timers
                .compact(|at, key| peers.get(key).is_some_and(|p| p.deadline == Some(at)));
        }
    }

    /// A subscribe connection interrupted for [`ICE_RESTART_AFTER`] is offered an ICE restart: its
    /// network may have changed, and new addresses need new ICE credentials to be tried. A shorter
    /// silence (a congested link) usually heals by itself, and a restart renegotiates. One still
    /// not connected `failed_after` after the interruption has failed, restart or not. The publish
    /// connection is the client's to restart.
    fn restart_silent_subscribers(&mut self, now: Instant) {
        let failed_after = self.failed_after;
        let mut restart = Vec::new();
        let mut failed = Vec::new();
        for (idx, p) in self.participants.iter_mut() {
            let Some(since) = p.interrupted_since else { continue };
            let silent = now.saturating_duration_since(since);
            if silent >= failed_after {
                p.interrupted_since = None;
                failed.push(idx);
            } else if silent >= ICE_RESTART_AFTER && !p.restart_offered {
                p.restart_offered = true;
                p.ice_restart = true;
                p.needs_offer = true;
                restart.push(idx);
            }
        }
        for participant in restart {
            Stats::add(&self.stats.ice_restarts, 1);
            self.offer_if_needed(participant, now);
        }
        for participant in failed {
            if let Some(p) = self.participants.get(participant) {
                p.span.in_scope(
                    || tracing::info!(pc = ?PcKind::Subscribe, "peer connection failed: no ICE restart helped"),
                );
            }
            self.emit(
                participant,
                MediaEvent::PeerState {
                    pc: PcKind::Subscribe,
                    state: PeerState::Failed,
                },
            );
        }
    }

    // ---- datagrams -------------------------------------------------------------------------

    /// A datagram (or an ICE-TCP frame) that arrived on `local` from `from`: routed to its peer
    /// connection by address, or for a new address by the ICE username of a STUN binding request;
    /// anything else is dropped. Returns whether it reached a peer connection.
    pub fn handle_datagram(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        protocol: TransportProtocol,
        data: &[u8],
        now: Instant,
    ) -> bool {
        let key = (protocol, local, from);
        let idx = match self.by_addr.get(&key) {
            Some(&idx) => idx,
            None => {
                let Some(ufrag) = ice::local_ufrag(data) else {
                    return false;
                };
                let Some(&idx) = self.by_ufrag.get(&ufrag) else {
                    return false;
                };
                self.by_addr.insert(key, idx);
                self.peers.get_mut(idx).expect("routed peer exists").addrs.push(key);
                idx
            }
        };
        let local_addr = local;
        let Some(peer) = self.peers.get_mut(idx) else {
            return false;
        };
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr,
                peer_addr: from,
                ecn: None,
                transport_protocol: protocol,
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = peer.pc.handle_read(message) {
            tracing::trace!(peer = %from, "dropped datagram: {e}");
        }
        self.process(idx, now);
        true
    }

    /// Drains a peer's events and received media until it has nothing more to say.
    fn process(&mut self, idx: usize, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.peers.get_mut(idx).and_then(|p| p.pc.poll_event()) {
                progressed = true;
                self.on_peer_event(idx, event, now);
            }
            while let Some(msg) = self.peers.get_mut(idx).and_then(|p| p.pc.poll_read()) {
                progressed = true;
                match msg.message {
                    RTCMessage::RtpPacket(track_id, packet) => self.on_rtp(idx, &track_id, packet, now),
                    RTCMessage::RtcpPacket(track_id, packets) => self.on_rtcp(idx, &track_id, &packets, now),
                    _ => {}
                }
            }
            if !progressed {
                break;
            }
        }
        self.mark_dirty(idx);
    }

    fn on_peer_event(&mut self, idx: usize, event: RTCPeerConnectionEvent, now: Instant) {
        let Some(peer) = self.peers.get(idx) else { return };
        let (participant, pc_kind) = (peer.participant, peer.kind);
        match event {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                if let Some(peer) = self.peers.get_mut(idx) {
                    peer.connected = state == RTCPeerConnectionState::Connected;
                }
                if pc_kind == PcKind::Subscribe {
                    self.refresh_payload_types(participant);
                }
                let state = match state {
                    RTCPeerConnectionState::Connected => PeerState::Connected,
                    RTCPeerConnectionState::Disconnected => PeerState::Interrupted,
                    RTCPeerConnectionState::Failed => PeerState::Failed,
                    RTCPeerConnectionState::Closed => PeerState::Closed,
                    _ => return,
                };
                if let Some(p) = self.participants.get(participant) {
                    p.span
                        .in_scope(|| tracing::info!(pc = ?pc_kind, ?state, "peer connection state"));
                }
                self.emit(participant, MediaEvent::PeerState { pc: pc_kind, state });
                if pc_kind == PcKind::Subscribe
                    && let Some(p) = self.participants.get_mut(participant)
                {
                    // Still silent ICE_RESTART_AFTER from now: restarted (housekeeping). A
                    // restart starts the ICE agent's timers afresh, so the failure is the router's
                    // to call; a new generation's checking is not a recovery.
                    match state {
                        PeerState::Interrupted => {
                            p.interrupted_since.get_or_insert(now);
                        }
                        PeerState::Connected => {
                            p.interrupted_since = None;
                            p.restart_offered = false;
                        }
                        _ => {}
                    }
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id)) if pc_kind == PcKind::Publish => {
                let track = self
                    .participants
                    .get(participant)
                    .and_then(|p| p.published.get(&track_id).copied());
                if let Some(track) = track {
                    self.unpublish(track, now);
                }
            }
            _ => {}
        }
    }

    fn on_rtp(&mut self, idx: usize, track_id: &str, packet: rtp::Packet, now: Instant) {
        let participant = self.peers.get(idx).map(|p| p.participant).unwrap_or(usize::MAX);
        let Some(p) = self.participants.get(participant) else {
            return;
        };
        let track = match p.published.get(track_id) {
            Some(&t) => t,
            None => match self.open_track(idx, track_id, packet.header.payload_type, now) {
                Some(t) => t,
                None => return,
            },
        };
        let Some(layer) = self.layer_of(track, packet.header.ssrc) else {
            return;
        };
        Stats::add(&self.stats.received_packets, 1);
        Stats::add(&self.stats.received_bytes, packet.payload.len() as u64);
        self.record_audio_level(track, &packet.header, now);
        let mut forwards = std::mem::take(&mut self.forwards);
        forwards.clear();
        let h = &packet.header;
        let t = self.tracks.get_mut(track).expect("published track exists");
        let level = t.audio_level_id.and_then(|id| h.get_extension(id));
        let incoming = Incoming {
            layer,
            seq: h.sequence_number,
            ts: h.timestamp,
            payload_type: h.payload_type,
            payload: &packet.payload,
        };
        let duplicate = t.forward.route(incoming, now, &mut forwards);
        if duplicate {
            Stats::add(&self.stats.duplicates_dropped, 1);
        }
        let (mut sent, mut bytes, mut unwrapped, mut recovered) = (0u64, 0u64, 0u64, 0u64);
        for f in &forwards {
            let Some(sub) = self.peers.get_mut(f.sink.0) else {
                continue;
            };
            let mut out = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: h.marker && !f.recovered,
                    payload_type: f.payload_type,
                    sequence_number: f.header.sequence_number,
                    timestamp: f.header.timestamp,
                    ssrc: f.header.ssrc,
                    ..Default::default()
                },
                payload: match f.vp8 {
                    // New picture numbers for this subscriber: a copy of its own.
                    Some(patch) => {
                        let mut copy = BytesMut::from(&packet.payload[f.payload_start..f.payload_end]);
                        patch.apply(&mut copy);
                        copy.freeze()
                    }
                    None => packet.payload.slice(f.payload_start..f.payload_end),
                },
            };
            let len = out.payload.len() as u64;
            // The publisher's audio level and our send time, under the subscriber's extension ids.
            if let (Some(id), Some(level)) = (f.extensions.audio_level, &level) {
                set_extension(&mut out.header, id, level.clone());
            }
            if let Some(id) = f.extensions.abs_send_time {
                let send_time = abs_send_time(now.saturating_duration_since(self.started));
                set_extension(&mut out.header, id, Bytes::copy_from_slice(&send_time));
            }
            match sub.pc.rtp_sender(f.sink.1).map(|mut s| s.write_rtp(now, out)) {
                Some(Ok(())) => {
                    sent += 1;
                    bytes += len;
                    unwrapped += u64::from(f.payload_start > 0 && !f.recovered);
                    recovered += u64::from(f.recovered);
                }
                Some(Err(e)) => {
                    Stats::add(&self.stats.errors, 1);
                    tracing::trace!("forward failed: {e}");
                }
                None => {}
            }
            self.mark_dirty(f.sink.0);
        }
        if sent > 0 {
            Stats::add(&self.stats.forwarded_packets, sent);
            self.forwarded += sent;
            Stats::add(&self.stats.forwarded_bytes, bytes);
            Stats::add(&self.stats.red_unwrapped, unwrapped);
            Stats::add(&self.stats.red_recovered, recovered);
        }
        self.forwards = forwards;
    }

    /// The simulcast layer a packet of `track` belongs to (0 for a plain track); a new SSRC is
    /// matched by the rid webrtc-rs read from its header extension. `None`: not a layer we take.
    fn layer_of(&mut self, track: usize, ssrc: u32) -> Option<u8> {
        let t = self.tracks.get_mut(track)?;
        if t.rids.is_empty() {
            return Some(0);
        }
        if let Some(layer) = t.layer_ssrcs.iter().position(|&s| s == Some(ssrc)) {
            return Some(layer as u8);
        }
        let receiver = self.peers.get_mut(t.peer)?.pc.rtp_receiver(t.receiver)?;
        let rid = receiver.track().rid(ssrc)?;
        let layer = t.rids.iter().position(|r| r.as_str() == rid.as_str())?;
        t.layer_ssrcs[layer] = Some(ssrc);
        Some(layer as u8)
    }

    /// Feeds the room's speaker detector with an unmuted audio packet's level.
    fn record_audio_level(&mut self, track: usize, header: &rtp::header::Header, now: Instant) {
        let Some(t) = self.tracks.get(track) else { return };
        let Some(id) = t.audio_level_id.filter(|_| !t.forward.is_muted()) else {
            return;
        };
        let Some((_, dbov)) = header.get_extension(id).as_deref().and_then(audio_level) else {
            return;
        };
        let Some(room) = self.participants.get(t.publisher).map(|p| &p.room) else {
            return;
        };
        if let Some(detector) = self.speakers.get_mut(room) {
            detector.level(t.publisher, dbov, now);
        }
    }

    fn on_rtcp(&mut self, idx: usize, track_id: &str, packets: &[Box<dyn rtc::rtcp::Packet>], now: Instant) {
        let Some(peer) = self.peers.get(idx) else { return };
        if peer.kind != PcKind::Subscribe || !peer::asks_for_keyframe(packets) {
            return;
        }
        let track = self
            .participants
            .get(peer.participant)
            .and_then(|p| p.down.get(track_id))
            .map(|(t, _)| *t);
        if let Some(t) = track
            && self
                .tracks
                .get_mut(t)
                .is_some_and(|t| t.forward.keyframe_requested(now))
        {
            self.send_keyframe_request(t, now);
        }
    }

    /// Asks the publisher for a keyframe: of a plain track, or of the simulcast layers that
    /// subscribers wait for (else of every layer someone receives).
    fn send_keyframe_request(&mut self, track: usize, now: Instant) {
        let Some(t) = self.tracks.get(track) else { return };
        let (peer, receiver) = (t.peer, t.receiver);
        let plis: Vec<Box<dyn rtc::rtcp::Packet>> = if t.rids.is_empty() {
            vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: t.media_ssrc,
            })]
        } else {
            let mask = Some(t.forward.keyframe_layers())
                .filter(|&m| m != 0)
                .unwrap_or_else(|| t.forward.wanted_layers());
            t.layer_ssrcs
                .iter()
                .enumerate()
                .filter(|&(layer, _)| mask & (1 << layer) != 0)
                .filter_map(|(_, ssrc)| *ssrc)
                .map(|media_ssrc| {
                    Box::new(PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc,
                    }) as Box<dyn rtc::rtcp::Packet>
                })
                .collect()
        };
        if plis.is_empty() {
            return;
        }
        let count = plis.len() as u64;
        if let Some(mut r) = self.peers.get_mut(peer).and_then(|p| p.pc.rtp_receiver(receiver))
            && r.write_rtcp(now, plis).is_ok()
        {
            Stats::add(&self.stats.keyframe_requests, count);
        }
        self.mark_dirty(peer);
    }

    // ---- tracks ----------------------------------------------------------------------------

    /// The first packet of a new incoming track: find its receiver and codec, publish it to the room.
    /// Nothing for a track its publisher set inactive.
    fn open_track(&mut self, idx: usize, track_id: &str, payload_type: u8, now: Instant) -> Option<usize> {
        let peer = self.peers.get_mut(idx)?;
        let participant = peer.participant;
        if self.participants.get(participant)?.inactive.contains(track_id) {
            return None;
        }
        let receivers: Vec<RTCRtpReceiverId> = peer.pc.get_receivers().collect();
        let (receiver, kind, ssrc, codec, red, audio_level_id) = receivers.into_iter().find_map(|rid| {
            let mut r = peer.pc.rtp_receiver(rid)?;
            if r.track().track_id() != track_id {
                return None;
            }
            let kind = match r.track().kind() {
                RtpCodecKind::Audio => MediaKind::Audio,
                RtpCodecKind::Video => MediaKind::Video,
                _ => return None,
            };
            let ssrc = r.track().ssrcs().next().unwrap_or(0);
            let parameters = &r.get_parameters().rtp_parameters;
            // Audio sent as RED is the codec its blocks carry; both kinds of packet may come.
            let red = parameters
                .codecs
                .iter()
                .filter(|_| kind == MediaKind::Audio)
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(peer::MIME_TYPE_RED))
                .and_then(|c| {
                    Some(RedFormat {
                        red: c.payload_type,
                        primary: red::block_payload_type(&c.rtp_codec.sdp_fmtp_line)?,
                    })
                });
            let codec_payload_type = match red {
                Some(f) if f.red == payload_type => f.primary,
                _ => payload_type,
            };
            let codec = parameters
                .codecs
                .iter()
                .find(|c| c.payload_type == codec_payload_type)?
                .rtp_codec
                .clone();
            let audio_level_id = peer::audio_level_id(&parameters.header_extensions);
            Some((rid, kind, ssrc, codec, red, audio_level_id))
        })?;
        let p = self.participants.get_mut(participant)?;
        p.track_counter += 1;
        let id = format!("{}-t{}", p.id, p.track_counter);
        let source = p
            .declared
            .get(track_id)
            .copied()
            .unwrap_or(TrackSource::default_for(kind));
        let mut forward = PublishedTrack::new(kind, &codec.mime_type, codec.clock_rate);
        let rids = match kind {
            MediaKind::Video => p.simulcast.get(track_id).cloned().unwrap_or_default(),
            MediaKind::Audio => Vec::new(),
        };
        forward.set_layers(rids.len().max(1) as u8);
        forward.set_red(red);
        let muted = p.muted.contains(&source);
        forward.set_muted(muted, now);
        p.span
            .in_scope(|| tracing::info!(track = %id, ?kind, ?source, codec = %codec.mime_type, red = red.is_some(), "track published"));
        let room = p.room.clone();
        self.emit(
            participant,
            MediaEvent::TrackPublished {
                track_id: id.clone(),
                kind,
                source,
                muted,
            },
        );
        let track = self.tracks.insert(Track {
            id,
            publisher: participant,
            peer: idx,
            receiver,
            media_ssrc: ssrc,
            kind,
            source,
            codec,
            audio_level_id: audio_level_id.filter(|_| kind == MediaKind::Audio),
            dynacast: Dynacast::new(rids.len().max(1) as u8),
            rids,
            layer_ssrcs: [None; MAX_LAYERS],
            client_id: track_id.to_owned(),
            needed: 0,
            forward,
        });
        self.participants
            .get_mut(participant)?
            .published
            .insert(track_id.to_owned(), track);
        self.report_holdings();
        let others: Vec<usize> = self
            .rooms
            .get(&room)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&o| o != participant)
            .collect();
        for other in others {
            self.subscribe(other, track, now);
        }
        Some(track)
    }

    /// Adds a published track to a participant's subscribe connection.
    fn subscribe(&mut self, participant: usize, track: usize, now: Instant) {
        let Some(t) = self.tracks.get(track) else { return };
        let Some(p) = self.participants.get(participant) else {
            return;
        };
        let wanted = match t.kind {
            MediaKind::Audio => p.options.audio,
            MediaKind::Video => p.options.video,
        };
        if !wanted || p.down.contains_key(&t.id) {
            return;
        }
        let stream_id = self
            .participants
            .get(t.publisher)
            .map(|p| p.id.clone())
            .unwrap_or_default();
        let (track_id, kind, codec) = (t.id.clone(), t.kind, t.codec.clone());
        let Some(peer) = self.ensure_peer(participant, PcKind::Subscribe, now) else {
            return;
        };
        let ssrc: u32 = rand::random();
        let local = MediaStreamTrack::new(
            stream_id,
            track_id.clone(),
            track_id.clone(),
            rtc_kind(kind),
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                active: true,
                codec,
                ..Default::default()
            }],
        );
        let sender = match self.peers.get_mut(peer).map(|p| p.pc.add_track(local)) {
            Some(Ok(sender)) => sender,
            Some(Err(e)) => {
                Stats::add(&self.stats.errors, 1);
                tracing::warn!(track = %track_id, "cannot add track to subscriber: {e}");
                return;
            }
            None => return,
        };
        let p = self.participants.get_mut(participant).expect("checked above");
        p.down.insert(track_id, (track, sender));
        p.needs_offer = true;
        let withheld = self.withheld(participant, track);
        let t = self.tracks.get_mut(track).expect("checked above");
        let request = t.forward.add_subscriber((peer, sender), ssrc, now);
        t.forward.set_withheld((peer, sender), withheld);
        let camera = t.source == TrackSource::Camera;
        if request {
            self.send_keyframe_request(track, now);
        }
        self.offer_if_needed(participant, now);
        if camera && let Some(room) = self.participants.get(participant).map(|p| p.room.clone()) {
            self.apply_last_n(&room, now);
        }
    }

    /// Pauses and resumes cameras so that each participant in `room` receives at most `last_n`,
    /// those of the most recent speakers; tells a participant when its selection changes.
    fn apply_last_n(&mut self, room: &str, now: Instant) {
        if self.last_n == 0 {
            return;
        }
        let Some(members) = self.rooms.get(room).cloned() else {
            return;
        };
        let recent = self.speakers.get(room).map(|d| d.recent().to_vec()).unwrap_or_default();
        let cameras: Vec<(usize, usize)> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.source == TrackSource::Camera && members.contains(&t.publisher))
            .map(|(i, t)| (i, t.publisher))
            .collect();
        let has_camera = |k: usize| cameras.iter().any(|&(_, publisher)| publisher == k);
        let mut requests = Vec::new();
        for &subscriber in &members {
            let Some(p) = self.participants.get(subscriber) else {
                continue;
            };
            if !p.options.video {
                continue;
            }
            let chosen = last_n::selected(self.last_n, &recent, &members, has_camera, subscriber);
            let sinks: Vec<(usize, Sink, bool)> = p
                .subscribe
                .map(|peer| {
                    cameras
                        .iter()
                        .filter_map(|&(track, publisher)| {
                            let &(_, sender) = p.down.get(&self.tracks.get(track)?.id)?;
                            Some((track, (peer, sender), !chosen.contains(&publisher)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let changed = p.forwarded_video.as_ref() != Some(&chosen);
            for (track, sink, paused) in sinks {
                let Some(t) = self.tracks.get_mut(track) else { continue };
                if paused && !t.forward.is_paused(sink) {
                    Stats::add(&self.stats.video_pauses, 1);
                }
                if t.forward.set_paused(sink, paused, now) {
                    requests.push(track);
                }
            }
            if changed {
                let participants = chosen
                    .iter()
                    .filter_map(|&k| self.participants.get(k).map(|p| p.id.clone()))
                    .collect();
                if let Some(p) = self.participants.get_mut(subscriber) {
                    p.forwarded_video = Some(chosen);
                }
                self.emit(subscriber, MediaEvent::VideoForwarded { participants });
            }
        }
        requests.sort_unstable();
        requests.dedup();
        for track in requests {
            self.send_keyframe_request(track, now);
        }
    }

    /// Tells publishers which simulcast layers someone receives or a tile needs (whether or not
    /// the layer arrives yet): the others are switched off.
    fn dynacast(&mut self, now: Instant) {
        let mut told = Vec::new();
        for (_, t) in self.tracks.iter_mut().filter(|(_, t)| !t.rids.is_empty()) {
            if let Some(active) = t.dynacast.update(t.forward.wanted_layers() | t.needed, now) {
                let rids = t
                    .rids
                    .iter()
                    .enumerate()
                    .filter(|&(layer, _)| active & (1 << layer) != 0)
                    .map(|(_, rid)| rid.clone())
                    .collect();
                told.push((t.publisher, t.client_id.clone(), rids));
            }
        }
        for (publisher, track_id, active) in told {
            Stats::add(&self.stats.dynacast_updates, 1);
            self.emit(publisher, MediaEvent::PublishLayers { track_id, active });
        }
    }

    /// Spends every subscriber's downlink estimate anew.
    fn allocate_all(&mut self, now: Instant) {
        for (_, t) in self.tracks.iter_mut() {
            t.needed = 0;
        }
        let subscribers: Vec<usize> = self.participants.iter().map(|(i, _)| i).collect();
        let mut estimated = 0;
        for p in subscribers {
            estimated += u64::from(self.allocate(p, now));
        }
        self.shares
            .estimated_subscribers
            .report(&self.stats.estimated_subscribers, estimated);
    }

    /// Chooses the layer of every camera and screen share the participant receives, from its
    /// downlink estimate, its tiles and who speaks (see [`allocate`]). Returns whether the
    /// participant has an estimate.
    fn allocate(&mut self, participant: usize, now: Instant) -> bool {
        let Some(p) = self.participants.get(participant) else {
            return false;
        };
        let Some(peer) = p.subscribe.filter(|_| p.options.video) else {
            return false;
        };
        let (estimate, receiver_side, loss) = self
            .peers
            .get(peer)
            .and_then(|x| x.estimate.as_ref())
            .map_or((None, false, None), |e| (e.bps(), e.receiver_side(), e.take_loss()));
        let dominant = self.speakers.get(&p.room).and_then(SpeakerDetector::dominant);
        let mut audio = 0;
        let mut wants = Vec::new();
        // The layer each want receives now.
        let mut current = Vec::new();
        for (track_id, &(track, sender)) in &p.down {
            let Some(t) = self.tracks.get_mut(track) else { continue };
            let sink = (peer, sender);
            if t.kind == MediaKind::Audio {
                audio += t.forward.rates().measured(0).unwrap_or(0);
                continue;
            }
            if t.forward.is_paused(sink) || t.forward.is_muted() {
                continue; // outside last-N, or nothing to send: costs nothing
            }
            let priority = match t.source {
                TrackSource::ScreenShare => allocate::SCREEN,
                _ if Some(t.publisher) == dominant => allocate::SPEAKER,
                _ => allocate::CAMERA,
            };
            let max_layer = match p.tiles.get(track_id) {
                Some(&height) => t.forward.layer_for_tile(height),
                None => Some(t.forward.layers() - 1),
            };
            if let Some(layer) = max_layer {
                t.needed |= 1 << layer;
            }
            // A layer we switched off comes back when chosen.
            let mut costs = t.forward.rates().costs(t.forward.layers(), !t.dynacast.active());
            let now_receiving = t.forward.target(sink).and_then(|(target, _)| target);
            allocate::favour_current(&mut costs, now_receiving);
            current.push(now_receiving);
            wants.push(Want {
                key: (track, sink),
                priority,
                max_layer,
                costs,
            });
        }
        let mut probe = self.peers.get_mut(peer).map(|x| &mut x.probe).filter(|_| receiver_side);
        // A receiver-side estimate is trusted only so far after congestion (see forward::probe).
        let trusted = estimate.map(|bps| probe.as_ref().map_or(bps, |p| p.trusted(bps)));
        let mut budget = trusted.map(|bps| (bps * SPEND_PERCENT / 100).saturating_sub(audio));
        if let (Some(b), Some(probe)) = (&mut budget, &mut probe) {
            *b = probe.budget(*b, allocate::first_lowest(&wants));
            if probe.borrowed() {
                allocate::at_most_one_step_up(&mut wants, &current);
            }
        }
        let mut chosen = Vec::with_capacity(wants.len());
        let needed = allocate::allocate(budget, &wants, &mut chosen);
        tracing::trace!(?estimate, receiver_side, ?loss, ?budget, ?needed, ?chosen, "allocation");
        if let (Some(estimate), Some(probe)) = (estimate, probe) {
            let (tries, failures) = (probe.tries, probe.failures);
            probe.round(estimate, loss, needed, now);
            Stats::add(&self.stats.bandwidth_probes, probe.tries - tries);
            Stats::add(&self.stats.bandwidth_probe_failures, probe.failures - failures);
        }
        let mut requests = Vec::new();
        for ((track, sink), layer) in chosen {
            let Some(t) = self.tracks.get_mut(track) else { continue };
            let before = t.forward.target(sink).and_then(|(target, _)| target);
            if before == layer {
                continue;
            }
            Stats::add(&self.stats.layer_changes, 1);
            if layer.is_none() {
                Stats::add(&self.stats.bandwidth_pauses, 1);
            }
            if t.forward.set_target(sink, layer, now) {
                requests.push(track);
            }
        }
        for track in requests {
            self.send_keyframe_request(track, now);
        }
        estimate.is_some()
    }

    /// How the participant shows one video track it receives: the tile's size in device pixels
    /// (0 × 0: not shown). Tracks it does not receive are ignored. A tile shown or hidden applies at
    /// once, a resize at the next allocation.
    pub fn set_video_tile(&mut self, participant: &str, track_id: &str, width: u32, height: u32, now: Instant) {
        let Ok(p) = self.participant_index(participant) else {
            return;
        };
        let part = self.participants.get_mut(p).expect("indexed participant exists");
        if !part.down.contains_key(track_id) {
            return;
        }
        // The height 16:9 video needs to fill the tile, whichever way it is fitted.
        let needed = if width == 0 || height == 0 {
            0
        } else {
            height.max(width.saturating_mul(9) / 16)
        };
        let before = part.tiles.insert(track_id.to_owned(), needed);
        if before.map(|h| h == 0) != Some(needed == 0) {
            self.allocate(p, now);
        }
    }

    /// Whether `track` is withheld from `subscriber`: its publisher opted out of transcription and the
    /// subscriber is the transcription service.
    fn withheld(&self, subscriber: usize, track: usize) -> bool {
        let wants_consent = self
            .participants
            .get(subscriber)
            .is_some_and(|s| s.options.withhold_opted_out);
        let opted_out = self
            .tracks
            .get(track)
            .and_then(|t| self.participants.get(t.publisher))
            .is_some_and(|p| p.opted_out);
        wants_consent && opted_out
    }

    /// A participant opted out of transcription or back in: (re)applies withholding on its tracks.
    fn set_opted_out(&mut self, participant: usize, opted_out: bool) {
        let Some(p) = self.participants.get_mut(participant) else {
            return;
        };
        p.opted_out = opted_out;
        p.span
            .in_scope(|| tracing::info!(opted_out, "transcription consent changed"));
        let tracks: Vec<usize> = p.published.values().copied().collect();
        for track in tracks {
            let sinks: Vec<(usize, RTCRtpSenderId)> = self
                .tracks
                .get(track)
                .map(|t| t.forward.subscribers().collect())
                .unwrap_or_default();
            for sink in sinks {
                let subscriber = self
                    .peers
                    .get(sink.0)
                    .map(|peer| peer.participant)
                    .unwrap_or(usize::MAX);
                let withheld = self.withheld(subscriber, track);
                if let Some(t) = self.tracks.get_mut(track) {
                    t.forward.set_withheld(sink, withheld);
                }
            }
        }
    }

    /// Removes a published track from the room and from every subscriber.
    fn unpublish(&mut self, track: usize, now: Instant) {
        let Some(t) = self.tracks.remove(track) else { return };
        let room = (t.source == TrackSource::Camera)
            .then(|| self.participants.get(t.publisher).map(|p| p.room.clone()))
            .flatten();
        self.report_holdings();
        if let Some(p) = self.participants.get_mut(t.publisher) {
            p.published.retain(|_, &mut v| v != track);
            p.span.in_scope(|| tracing::info!(track = %t.id, "track unpublished"));
        }
        self.emit(t.publisher, MediaEvent::TrackUnpublished { track_id: t.id.clone() });
        for (peer, sender) in t.forward.subscribers().collect::<Vec<_>>() {
            let Some(subscriber) = self.peers.get_mut(peer) else {
                continue;
            };
            if let Err(e) = subscriber.pc.remove_track(sender) {
                tracing::debug!("remove_track: {e}");
            }
            let participant = subscriber.participant;
            if let Some(p) = self.participants.get_mut(participant) {
                p.down.remove(&t.id);
                p.tiles.remove(&t.id);
                p.needs_offer = true;
            }
            self.offer_if_needed(participant, now);
        }
        if let Some(room) = room {
            self.apply_last_n(&room, now);
        }
    }

    // ---- negotiation -----------------------------------------------------------------------

    /// The participant's publish or subscribe peer connection, created on first use.
    fn ensure_peer(&mut self, participant: usize, kind: PcKind, now: Instant) -> Option<usize> {
        let p = self.participants.get(participant)?;
        let existing = match kind {
            PcKind::Publish => p.publish,
            PcKind::Subscribe => p.subscribe,
        };
        if existing.is_some() {
            return existing;
        }
        let estimate = (kind == PcKind::Subscribe).then(peer::Estimate::default);
        // X.509 validity is wall-clock time, the one input here not from the caller's clock.
        let pc = match self
            .identity
            .certificate(std::time::SystemTime::now())
            .and_then(|certificate| {
                peer::build(&self.candidates, self.failed_after, certificate, estimate.clone(), now)
            }) {
            Ok(pc) => pc,
            Err(e) => {
                tracing::error!("cannot create peer connection: {e}");
                return None;
            }
        };
        let idx = self.peers.insert(Peer {
            participant,
            kind,
            pc,
            ufrags: Vec::new(),
            deadline: None,
            addrs: Vec::new(),
            dirty: false,
            connected: false,
            estimate,
            probe: Probe::new(now),
        });
        let p = self.participants.get_mut(participant)?;
        match kind {
            PcKind::Publish => p.publish = Some(idx),
            PcKind::Subscribe => p.subscribe = Some(idx),
        }
        self.report_holdings();
        Some(idx)
    }

    /// Sends a subscribe offer if something changed and no offer is waiting for its answer.
    fn offer_if_needed(&mut self, participant: usize, now: Instant) {
        let Some(p) = self.participants.get(participant) else {
            return;
        };
        if p.offer_in_flight || !p.needs_offer {
            return;
        }
        let Some(idx) = p.subscribe else { return };
        let restart = p.ice_restart;
        let Some(peer) = self.peers.get_mut(idx) else { return };
        let options = restart.then_some(RTCOfferOptions { ice_restart: true });
        let offer = peer
            .pc
            .create_offer(options)
            .and_then(|offer| peer.pc.set_local_description(now, offer));
        let sdp = match offer.map(|_| peer.pc.local_description()) {
            Ok(Some(desc)) => desc.sdp,
            Ok(None) | Err(_) => {
                Stats::add(&self.stats.errors, 1);
                p.span.in_scope(|| tracing::error!("cannot create subscribe offer"));
                return;
            }
        };
        self.learn_ufrag(idx, &sdp);
        let p = self.participants.get_mut(participant).expect("checked above");
        p.offer_in_flight = true;
        p.needs_offer = false;
        if restart {
            p.ice_restart = false;
            p.span
                .in_scope(|| tracing::info!("subscribe connection: ICE restart offered"));
        }
        self.emit(participant, MediaEvent::SubscribeOffer { sdp });
        self.mark_dirty(idx);
    }

    /// Applies a publish offer and answers it. Over its offer rate a participant is refused before
    /// anything is parsed; a failed offer is rolled back so the next good one applies; track
    /// declarations count only from an applied offer, and only for tracks it sends.
    fn on_publish(
        &mut self,
        participant: usize,
        sdp: String,
        tracks: Vec<TrackDeclaration>,
        now: Instant,
    ) -> Result<String> {
        let p = self
            .participants
            .get_mut(participant)
            .ok_or_else(|| Error::UnknownParticipant(String::new()))?;
        if !p.offers.allow(now) {
            Stats::add(&self.stats.refused_offers, 1);
            return Err(Error::TooManyOffers {
                per_second: p.offers.per_second(),
            });
        }
        let idx = self
            .ensure_peer(participant, PcKind::Publish, now)
            .ok_or_else(|| Error::Negotiation("no peer connection".into()))?;
        let sending = sending_track_ids(&sdp);
        let simulcast = simulcast_rids(&sdp);
        let pc = &mut self.peers.get_mut(idx).expect("just ensured").pc;
        let answer = negotiate::answer_offer(pc, sdp, self.audio, now)?;
        // A new ICE generation (the publisher restarted ICE) comes with new credentials of ours.
        self.learn_ufrag(idx, &answer);
        let max = self.max_media_sections;
        let p = self.participants.get_mut(participant).expect("checked above");
        p.declared.retain(|id, _| sending.contains(id));
        p.inactive.retain(|id| sending.contains(id));
        // Bounded by the offer's sections, which are bounded before it is applied.
        p.simulcast = simulcast;
        for t in tracks {
            if sending.contains(&t.track_id) && (p.declared.len() < max || p.declared.contains_key(&t.track_id)) {
                p.declared.insert(t.track_id, t.source);
            }
        }
        let stopped: Vec<usize> = p
            .published
            .iter()
            .filter(|(id, _)| !sending.contains(*id))
            .map(|(_, &t)| t)
            .collect();
        self.report_holdings();
        for track in stopped {
            self.unpublish(track, now);
        }
        self.process(idx, now);
        Ok(answer)
    }

    /// Reports what this router holds to the gauges it shares with the other media loops.
    fn report_holdings(&mut self) {
        let declared: usize = self.participants.iter().map(|(_, p)| p.declared.len()).sum();
        let (shares, stats) = (&mut self.shares, &self.stats);
        shares.rooms.report(&stats.rooms, self.rooms.len() as u64);
        shares
            .participants
            .report(&stats.participants, self.participants.len as u64);
        shares
            .peer_connections
            .report(&stats.peer_connections, self.peers.len as u64);
        shares
            .published_tracks
            .report(&stats.published_tracks, self.tracks.len as u64);
        shares.declared_tracks.report(&stats.declared_tracks, declared as u64);
    }

    fn on_subscribe_answer(&mut self, participant: usize, sdp: String, now: Instant) -> Result<()> {
        let p = self
            .participants
            .get_mut(participant)
            .ok_or_else(|| Error::UnknownParticipant(String::new()))?;
        let idx = p
            .subscribe
            .filter(|_| p.offer_in_flight)
            .ok_or_else(|| Error::Negotiation("no subscribe offer is waiting for an answer".into()))?;
        p.offer_in_flight = false;
        let pc = &mut self.peers.get_mut(idx).expect("subscribe peer exists").pc;
        let applied = negotiate::apply_answer(pc, sdp, now);
        if applied.is_err() {
            // Our offer was rolled back: what it carried is offered again.
            self.participants
                .get_mut(participant)
                .expect("checked above")
                .needs_offer = true;
        }
        self.refresh_payload_types(participant);
        self.process(idx, now);
        self.offer_if_needed(participant, now);
        applied
    }

    /// Gives each track forwarded to this participant the payload type its codec has on the
    /// subscribe connection, or none while that connection is not connected (nothing is sent then).
    fn refresh_payload_types(&mut self, participant: usize) {
        let Some(p) = self.participants.get(participant) else {
            return;
        };
        let Some(idx) = p.subscribe else { return };
        let down: Vec<(usize, RTCRtpSenderId)> = p.down.values().copied().collect();
        let Some(peer) = self.peers.get_mut(idx) else { return };
        for (track, sender) in down {
            let Some(t) = self.tracks.get_mut(track) else { continue };
            let negotiated = if !peer.connected {
                None
            } else {
                peer.pc.rtp_sender(sender).map(|mut s| {
                    let parameters = &s.get_parameters().rtp_parameters;
                    let codecs = &parameters.codecs;
                    let same_mime = |c: &&rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters| {
                        c.rtp_codec.mime_type.eq_ignore_ascii_case(&t.codec.mime_type)
                    };
                    let payload_type = codecs
                        .iter()
                        .filter(same_mime)
                        .find(|c| c.rtp_codec.sdp_fmtp_line == t.codec.sdp_fmtp_line)
                        .or_else(|| codecs.iter().find(same_mime))
                        .map(|c| c.payload_type);
                    // RED goes through as it is where its blocks keep their payload type (Opus
                    // under the same number at both ends).
                    let red = codecs
                        .iter()
                        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(peer::MIME_TYPE_RED))
                        .filter(|c| red::block_payload_type(&c.rtp_codec.sdp_fmtp_line) == payload_type)
                        .filter(|_| t.forward.red().map(|f| f.primary) == payload_type)
                        .map(|c| c.payload_type);
                    let extensions = ExtensionIds {
                        audio_level: peer::audio_level_id(&parameters.header_extensions),
                        abs_send_time: peer::abs_send_time_id(&parameters.header_extensions),
                    };
                    (payload_type, red, extensions)
                })
            };
            let (payload_type, red, extensions) = negotiated.unwrap_or_default();
            t.forward.set_payload_type((idx, sender), payload_type);
            t.forward.set_red_payload_type((idx, sender), red);
            t.forward.set_extension_ids((idx, sender), extensions);
        }
    }

    // ---- commands --------------------------------------------------------------------------

    fn participant_index(&self, id: &str) -> Result<usize> {
        self.participant_ids
            .get(id)
            .copied()
            .ok_or_else(|| Error::UnknownParticipant(id.to_owned()))
    }

    /// Adds a participant to a room (created on first join); it subscribes to every track there.
    pub fn join(&mut self, room: &str, participant: &str, options: SubscribeOptions, now: Instant) -> Result<()> {
        self.on_join(room.to_owned(), participant.to_owned(), options, now)
    }

    /// Applies the participant's publish offer; returns the answer SDP.
    pub fn publish(
        &mut self,
        participant: &str,
        sdp: String,
        tracks: Vec<TrackDeclaration>,
        now: Instant,
    ) -> Result<String> {
        check_offer_size(&sdp, self.max_media_sections, &self.stats)?;
        let p = self.participant_index(participant)?;
        self.on_publish(p, sdp, tracks, now)
    }

    /// Applies the participant's answer to the last subscribe offer.
    pub fn subscribe_answer(&mut self, participant: &str, sdp: String, now: Instant) -> Result<()> {
        let p = self.participant_index(participant)?;
        self.on_subscribe_answer(p, sdp, now)
    }

    /// A trickled ICE candidate of the participant's (an empty one ends the trickle and is ignored).
    pub fn add_candidate(&mut self, participant: &str, pc: PcKind, candidate: Candidate, now: Instant) {
        let Ok(p) = self.participant_index(participant) else {
            return;
        };
        let Some(idx) = self.ensure_peer(p, pc, now) else {
            return;
        };
        if candidate.candidate.is_empty() {
            return;
        }
        let init = RTCIceCandidateInit {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_mline_index,
            ..Default::default()
        };
        if let Some(peer) = self.peers.get_mut(idx)
            && let Err(e) = peer.pc.add_remote_candidate(init)
        {
            tracing::debug!("remote candidate ignored: {e}");
        }
        self.process(idx, now);
    }

    /// Stops (or resumes) forwarding the participant's tracks of this source.
    pub fn set_muted(&mut self, participant: &str, source: TrackSource, muted: bool, now: Instant) {
        let Ok(p) = self.participant_index(participant) else {
            return;
        };
        let part = self.participants.get_mut(p).expect("indexed participant exists");
        if muted {
            part.muted.insert(source);
        } else {
            part.muted.remove(&source);
        }
        let tracks: Vec<usize> = part.published.values().copied().collect();
        for t in tracks {
            let request = self
                .tracks
                .get_mut(t)
                .is_some_and(|t| t.source == source && t.forward.set_muted(muted, now));
            if request {
                self.send_keyframe_request(t, now);
            }
        }
    }

    /// Whether a declared publish track carries media (`track_active`): inactive unpublishes it
    /// and drops its packets; active again lets its next packet publish it as a new server track.
    /// Only declared tracks count, which bounds what a participant can make us hold; a change costs
    /// as much of the participant's offer rate as an offer, since it renegotiates every subscriber.
    pub fn set_track_active(&mut self, participant: &str, track_id: &str, active: bool, now: Instant) {
        let Ok(idx) = self.participant_index(participant) else {
            return;
        };
        let Some(p) = self.participants.get_mut(idx) else {
            return;
        };
        if !p.declared.contains_key(track_id) || p.inactive.contains(track_id) != active {
            return;
        }
        if !p.offers.allow(now) {
            Stats::add(&self.stats.refused_offers, 1);
            return;
        }
        if active {
            p.inactive.remove(track_id);
            return;
        }
        p.inactive.insert(track_id.to_owned());
        if let Some(&track) = p.published.get(track_id) {
            self.unpublish(track, now);
        }
    }

    /// The participant opted out of transcription (or back in): its tracks are withheld from
    /// subscribers that joined with [`SubscribeOptions::withhold_opted_out`].
    pub fn set_transcription_opt_out(&mut self, participant: &str, opted_out: bool) {
        if let Ok(p) = self.participant_index(participant) {
            self.set_opted_out(p, opted_out);
        }
    }

    /// Removes the participant, closes its connections and unpublishes its tracks.
    pub fn leave(&mut self, participant: &str, now: Instant) {
        if let Ok(p) = self.participant_index(participant) {
            self.on_leave(p, now);
        }
    }

    fn on_join(&mut self, room: String, id: String, options: SubscribeOptions, now: Instant) -> Result<()> {
        if self.participant_ids.contains_key(&id) {
            return Err(Error::AlreadyJoined(id));
        }
        let span = tracing::info_span!("participant", room = %room, participant = %id);
        let idx = self.participants.insert(Participant {
            id: id.clone(),
            room: room.clone(),
            options,
            span,
            publish: None,
            subscribe: None,
            declared: HashMap::new(),
            inactive: HashSet::new(),
            simulcast: HashMap::new(),
            tiles: HashMap::new(),
            muted: HashSet::new(),
            opted_out: false,
            published: HashMap::new(),
            track_counter: 0,
            down: HashMap::new(),
            offer_in_flight: false,
            needs_offer: false,
            ice_restart: false,
            interrupted_since: None,
            restart_offered: false,
            offers: TokenBucket::new(self.offers_per_second, OFFER_BURST_SECONDS, now),
            forwarded_video: None,
        });
        self.participant_ids.insert(id, idx);
        self.speakers.entry(room.clone()).or_default();
        let members = self.rooms.entry(room).or_default();
        members.push(idx);
        let existing: Vec<usize> = self
            .tracks
            .iter()
            .filter(|(_, t)| members.contains(&t.publisher))
            .map(|(i, _)| i)
            .collect();
        self.report_holdings();
        for t in existing {
            self.subscribe(idx, t, now);
        }
        Ok(())
    }

    fn on_leave(&mut self, participant: usize, now: Instant) {
        let Some(p) = self.participants.get(participant) else {
            return;
        };
        p.span.in_scope(|| tracing::info!("left the media server"));
        let published: Vec<usize> = p.published.values().copied().collect();
        let down: Vec<(usize, RTCRtpSenderId)> = p.down.values().copied().collect();
        let peers: Vec<usize> = p.publish.into_iter().chain(p.subscribe).collect();
        for t in published {
            self.unpublish(t, now);
        }
        for (track, sender) in down {
            if let (Some(t), Some(peer)) = (
                self.tracks.get_mut(track),
                self.participants.get(participant).and_then(|p| p.subscribe),
            ) {
                t.forward.remove_subscriber((peer, sender));
            }
        }
        for idx in peers {
            self.close_peer(idx);
        }
        let Some(p) = self.participants.remove(participant) else {
            return;
        };
        self.participant_ids.remove(&p.id);
        if let Some(detector) = self.speakers.get_mut(&p.room) {
            detector.remove(participant);
        }
        if let Some(members) = self.rooms.get_mut(&p.room) {
            members.retain(|&m| m != participant);
            if members.is_empty() {
                self.rooms.remove(&p.room);
                self.speakers.remove(&p.room);
                tracing::info!(room = %p.room, "room closed");
            }
        }
        self.apply_last_n(&p.room, now);
        self.report_holdings();
    }

    /// Routes STUN naming the ufrag of our local description `sdp` to peer `idx`.
    fn learn_ufrag(&mut self, idx: usize, sdp: &str) {
        let Some(ufrag) = ice::description_ufrag(sdp) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(idx) else { return };
        if !peer.ufrags.contains(&ufrag) {
            // Bounded: a generation needs an applied offer, and offers are rate-limited.
            peer.ufrags.push(ufrag.clone());
            self.by_ufrag.insert(ufrag, idx);
        }
    }

    fn close_peer(&mut self, idx: usize) {
        let Some(mut peer) = self.peers.remove(idx) else { return };
        if let Err(e) = peer.pc.close() {
            tracing::debug!("closing peer connection: {e}");
        }
        for ufrag in &peer.ufrags {
            self.by_ufrag.remove(ufrag);
        }
        for key in &peer.addrs {
            self.by_addr.remove(key);
        }
        self.dirty.retain(|&d| d != idx);
        self.report_holdings();
    }
}

/// Entry points for the fuzz targets (`tests/fuzz`): the publish path's SDP handling without
/// sockets. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::{Duration, Instant};

    /// A publish offer as the router handles it: the size bound, a fresh ICE-lite peer connection,
    /// offer → answer (rolled back when it fails), and the scan for sending tracks. Panics if a
    /// failed offer leaves the connection unable to take the next one.
    pub fn publish_offer(sdp: &str) {
        let _ = super::sdp::sending_track_ids(sdp);
        let _ = super::sdp::simulcast_rids(sdp);
        if super::sdp::media_sections(sdp) > crate::MediaConfig::default().max_media_sections {
            return;
        }
        static IDENTITY: std::sync::OnceLock<std::sync::Mutex<super::identity::DtlsIdentity>> =
            std::sync::OnceLock::new();
        let now = Instant::now();
        let candidates = [(
            "127.0.0.1:10000".parse().expect("valid address"),
            rtc::shared::TransportProtocol::UDP,
        )];
        let certificate = IDENTITY
            .get_or_init(|| std::sync::Mutex::new(super::identity::DtlsIdentity::generate().expect("a certificate")))
            .lock()
            .expect("not poisoned")
            .certificate(std::time::SystemTime::now())
            .expect("a certificate");
        let Ok(mut pc) = super::peer::build(&candidates, Duration::from_secs(5), certificate, None, now) else {
            return;
        };
        let audio = super::sdp::AudioPreferences { red: true, dtx: true };
        if super::negotiate::answer_offer(&mut pc, sdp.to_owned(), audio, now).is_err() {
            assert!(
                pc.pending_remote_description().is_none(),
                "a failed offer was not rolled back"
            );
        }
    }
}

/// Adds a one-byte header extension to a forwarded packet's header (nothing when it does not fit).
fn set_extension(header: &mut rtp::header::Header, id: u8, value: Bytes) {
    let had = header.extension;
    header.extension = true;
    header.extension_profile = ONE_BYTE_EXTENSIONS;
    if header.set_extension(id, value).is_err() {
        header.extension = had;
    }
}
