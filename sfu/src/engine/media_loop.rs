//! The media loop: one thread that owns the media sockets, every peer connection, every room's
//! forwarding state, and a timer heap. It reads a datagram, hands it to the peer connection its
//! source address (or STUN username) belongs to, routes the RTP that comes out through the
//! forwarding core into subscribers' connections, and writes what they produce.
//!
//! It must never block on anything but its own sockets, commands and timers, and it keeps the
//! per-packet path free of locks and of allocations of its own.

use super::ice;
use super::negotiate;
use super::offer_rate::OfferRate;
use super::peer;
use super::sdp::sending_track_ids;
use super::sockets::BoundSocket;
use super::timers::Timers;
use super::{Command, MediaEvent, PeerState, SubscribeOptions};
use crate::config::MediaConfig;
use crate::error::{Error, Result};
use crate::forward::{Forward, PublishedTrack};
use crate::stats::Stats;
use bytes::BytesMut;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use samtal_protocol::{MediaKind, PcKind, TrackDeclaration, TrackSource};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// How often keyframe retries and other slow bookkeeping run.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Datagrams read in one go before outputs are flushed.
const READ_BATCH: usize = 32;

/// A subscriber's sender: (subscribe peer index, sender id).
type Sink = (usize, RTCRtpSenderId);

struct Peer {
    participant: usize,
    kind: PcKind,
    pc: RTCPeerConnection,
    ufrag: String,
    deadline: Option<Instant>,
    /// (socket index, remote address) pairs routed to this peer.
    addrs: Vec<(usize, SocketAddr)>,
    dirty: bool,
    /// DTLS/SRTP is up: media can be written (before that, writes only produce warnings).
    connected: bool,
}

struct Participant {
    id: String,
    room: String,
    events: mpsc::UnboundedSender<MediaEvent>,
    options: SubscribeOptions,
    span: tracing::Span,
    publish: Option<usize>,
    subscribe: Option<usize>,
    /// Client track id (from `a=msid`) → source, from the publish offers.
    declared: HashMap<String, TrackSource>,
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
    /// Publish offers this participant may still make now.
    offers: OfferRate,
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
    forward: PublishedTrack<Sink>,
}

pub(crate) struct MediaLoop {
    bound: Vec<BoundSocket>,
    locals: Vec<SocketAddr>,
    candidates: Vec<SocketAddr>,
    failed_after: Duration,
    offers_per_second: f64,
    max_media_sections: usize,
    stats: Arc<Stats>,
    peers: Slab<Peer>,
    by_ufrag: HashMap<String, usize>,
    by_addr: HashMap<(usize, SocketAddr), usize>,
    participants: Slab<Participant>,
    participant_ids: HashMap<String, usize>,
    rooms: HashMap<String, Vec<usize>>,
    tracks: Slab<Track>,
    timers: Timers,
    dirty: Vec<usize>,
    forwards: Vec<Forward<Sink>>,
    due: Vec<(Instant, usize)>,
}

/// A vector of optional slots with reuse of freed indices: stable indices without hashing.
struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Self { slots: Vec::new(), free: Vec::new(), len: 0 }
    }
    fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(value);
                i
            }
            None => {
                self.slots.push(Some(value));
                self.slots.len() - 1
            }
        }
    }
    fn remove(&mut self, i: usize) -> Option<T> {
        let v = self.slots.get_mut(i)?.take();
        if v.is_some() {
            self.len -= 1;
            self.free.push(i);
        }
        v
    }
    fn get(&self, i: usize) -> Option<&T> {
        self.slots.get(i)?.as_ref()
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.slots.get_mut(i)?.as_mut()
    }
    fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|v| (i, v)))
    }
}

fn rtc_kind(kind: MediaKind) -> RtpCodecKind {
    match kind {
        MediaKind::Audio => RtpCodecKind::Audio,
        MediaKind::Video => RtpCodecKind::Video,
    }
}

impl MediaLoop {
    pub fn new(config: &MediaConfig, bound: Vec<BoundSocket>, stats: Arc<Stats>) -> Result<Self> {
        let locals: Vec<SocketAddr> = bound.iter().map(|s| s.local).collect();
        let port = locals.first().map(|a| a.port()).ok_or_else(|| Error::Config("no media socket".into()))?;
        let mut candidates = locals.clone();
        candidates.extend(config.public_ips.iter().map(|ip| SocketAddr::new(*ip, port)));
        Ok(Self {
            bound,
            locals,
            candidates,
            failed_after: Duration::from_secs(config.disconnect_timeout_secs),
            offers_per_second: config.offers_per_second,
            max_media_sections: config.max_media_sections,
            stats,
            peers: Slab::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            participants: Slab::new(),
            participant_ids: HashMap::new(),
            rooms: HashMap::new(),
            tracks: Slab::new(),
            timers: Timers::default(),
            dirty: Vec::new(),
            forwards: Vec::new(),
            due: Vec::new(),
        })
    }

    /// Runs until shutdown or until every `MediaServer` handle is gone.
    pub fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("media loop cannot start its runtime: {e}");
                return;
            }
        };
        runtime.block_on(async move {
            let sockets: Vec<UdpSocket> = match std::mem::take(&mut self.bound)
                .into_iter()
                .map(|b| UdpSocket::from_std(b.socket))
                .collect::<std::io::Result<_>>()
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("media sockets unusable: {e}");
                    return;
                }
            };
            let mut buf = vec![0u8; 2048];
            let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
            loop {
                let now = Instant::now();
                self.fire_timers(now);
                if now >= next_housekeeping {
                    self.housekeeping(now);
                    next_housekeeping = now + HOUSEKEEPING;
                }
                self.flush(&sockets);
                let wake = self.timers.next().map_or(next_housekeeping, |t| t.min(next_housekeeping));
                // Unbiased: a participant flooding commands cannot keep datagrams waiting, nor the reverse.
                tokio::select! {
                    command = commands.recv() => match command {
                        None | Some(Command::Shutdown) => break,
                        Some(command) => self.on_command(command, Instant::now()),
                    },
                    received = recv_any(&sockets, &mut buf) => {
                        if let Ok((sock, len, from)) = received {
                            let at = Instant::now();
                            self.on_datagram(sock, from, &buf[..len], at);
                            for _ in 1..READ_BATCH {
                                match try_recv_any(&sockets, &mut buf) {
                                    Some((sock, len, from)) => self.on_datagram(sock, from, &buf[..len], Instant::now()),
                                    None => break,
                                }
                            }
                            self.flush(&sockets);
                        }
                    },
                    _ = tokio::time::sleep_until(wake.into()) => {}
                }
            }
            tracing::info!("media loop stopped");
        });
    }

    fn mark_dirty(&mut self, peer: usize) {
        if let Some(p) = self.peers.get_mut(peer)
            && !p.dirty
        {
            p.dirty = true;
            self.dirty.push(peer);
        }
    }

    /// Writes every dirty peer's pending datagrams and reschedules its timer.
    fn flush(&mut self, sockets: &[UdpSocket]) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for idx in dirty.drain(..) {
            let Some(peer) = self.peers.get_mut(idx) else { continue };
            peer.dirty = false;
            while let Some(out) = peer.pc.poll_write() {
                let sock = self.locals.iter().position(|a| *a == out.transport.local_addr).unwrap_or(0);
                if let Err(e) = sockets[sock].try_send_to(&out.message, out.transport.peer_addr) {
                    Stats::add(&self.stats.errors, 1);
                    tracing::debug!(peer = %out.transport.peer_addr, "media send failed: {e}");
                }
            }
            if let Some(at) = peer.pc.poll_timeout()
                && peer.deadline != Some(at)
            {
                peer.deadline = Some(at);
                self.timers.schedule(at, idx);
            }
        }
        self.dirty = dirty;
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
        let due: Vec<usize> =
            self.tracks.slots.iter_mut().enumerate().filter_map(|(i, t)| t.as_mut()?.forward.poll_keyframe(now).then_some(i)).collect();
        for t in due {
            self.send_keyframe_request(t, now);
        }
        if self.timers.len() > 4 * self.peers.len + 64 {
            let peers = &self.peers;
            self.timers.compact(|at, key| peers.get(key).is_some_and(|p| p.deadline == Some(at)));
        }
    }

    // ---- datagrams -------------------------------------------------------------------------

    fn on_datagram(&mut self, sock: usize, from: SocketAddr, data: &[u8], now: Instant) {
        let idx = match self.by_addr.get(&(sock, from)) {
            Some(&idx) => idx,
            None => {
                let Some(ufrag) = ice::local_ufrag(data) else { return };
                let Some(&idx) = self.by_ufrag.get(&ufrag) else { return };
                self.by_addr.insert((sock, from), idx);
                self.peers.get_mut(idx).expect("routed peer exists").addrs.push((sock, from));
                idx
            }
        };
        let local_addr = self.locals[sock];
        let Some(peer) = self.peers.get_mut(idx) else { return };
        let message = TaggedBytesMut {
            now,
            transport: TransportContext { local_addr, peer_addr: from, ecn: None, transport_protocol: TransportProtocol::UDP },
            message: BytesMut::from(data),
        };
        if let Err(e) = peer.pc.handle_read(message) {
            tracing::trace!(peer = %from, "dropped datagram: {e}");
        }
        self.process(idx, now);
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
                    RTCPeerConnectionState::Failed => PeerState::Failed,
                    RTCPeerConnectionState::Closed => PeerState::Closed,
                    _ => return,
                };
                if let Some(p) = self.participants.get(participant) {
                    p.span.in_scope(|| tracing::info!(pc = ?pc_kind, ?state, "peer connection state"));
                    let _ = p.events.send(MediaEvent::PeerState { pc: pc_kind, state });
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id)) if pc_kind == PcKind::Publish => {
                let track = self.participants.get(participant).and_then(|p| p.published.get(&track_id).copied());
                if let Some(track) = track {
                    self.unpublish(track, now);
                }
            }
            _ => {}
        }
    }

    fn on_rtp(&mut self, idx: usize, track_id: &str, packet: rtp::Packet, now: Instant) {
        let participant = self.peers.get(idx).map(|p| p.participant).unwrap_or(usize::MAX);
        let Some(p) = self.participants.get(participant) else { return };
        let track = match p.published.get(track_id) {
            Some(&t) => t,
            None => match self.open_track(idx, track_id, packet.header.payload_type, now) {
                Some(t) => t,
                None => return,
            },
        };
        Stats::add(&self.stats.received_packets, 1);
        Stats::add(&self.stats.received_bytes, packet.payload.len() as u64);
        let mut forwards = std::mem::take(&mut self.forwards);
        forwards.clear();
        let h = &packet.header;
        self.tracks.get_mut(track).expect("published track exists").forward.route(
            h.sequence_number,
            h.timestamp,
            &packet.payload,
            now,
            &mut forwards,
        );
        let mut sent = 0u64;
        for f in &forwards {
            let Some(sub) = self.peers.get_mut(f.sink.0) else { continue };
            let out = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: h.marker,
                    payload_type: f.payload_type,
                    sequence_number: f.header.sequence_number,
                    timestamp: f.header.timestamp,
                    ssrc: f.header.ssrc,
                    ..Default::default()
                },
                payload: packet.payload.clone(),
            };
            match sub.pc.rtp_sender(f.sink.1).map(|mut s| s.write_rtp(now, out)) {
                Some(Ok(())) => sent += 1,
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
            Stats::add(&self.stats.forwarded_bytes, sent * packet.payload.len() as u64);
            let delay = now.elapsed().as_nanos() as u64;
            Stats::add(&self.stats.forward_delay_nanos, delay * sent);
        }
        self.forwards = forwards;
    }

    fn on_rtcp(&mut self, idx: usize, track_id: &str, packets: &[Box<dyn rtc::rtcp::Packet>], now: Instant) {
        let Some(peer) = self.peers.get(idx) else { return };
        if peer.kind != PcKind::Subscribe || !peer::asks_for_keyframe(packets) {
            return;
        }
        let track = self.participants.get(peer.participant).and_then(|p| p.down.get(track_id)).map(|(t, _)| *t);
        if let Some(t) = track
            && self.tracks.get_mut(t).is_some_and(|t| t.forward.keyframe_requested(now))
        {
            self.send_keyframe_request(t, now);
        }
    }

    fn send_keyframe_request(&mut self, track: usize, now: Instant) {
        let Some(t) = self.tracks.get(track) else { return };
        let (peer, receiver, media_ssrc) = (t.peer, t.receiver, t.media_ssrc);
        if let Some(mut r) = self.peers.get_mut(peer).and_then(|p| p.pc.rtp_receiver(receiver)) {
            let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
            if r.write_rtcp(now, vec![Box::new(pli)]).is_ok() {
                Stats::add(&self.stats.keyframe_requests, 1);
            }
        }
        self.mark_dirty(peer);
    }

    // ---- tracks ----------------------------------------------------------------------------

    /// The first packet of a new incoming track: find its receiver and codec, publish it to the room.
    fn open_track(&mut self, idx: usize, track_id: &str, payload_type: u8, now: Instant) -> Option<usize> {
        let peer = self.peers.get_mut(idx)?;
        let participant = peer.participant;
        let receivers: Vec<RTCRtpReceiverId> = peer.pc.get_receivers().collect();
        let (receiver, kind, ssrc, codec) = receivers.into_iter().find_map(|rid| {
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
            let codec = r.get_parameters().rtp_parameters.codecs.iter().find(|c| c.payload_type == payload_type)?.rtp_codec.clone();
            Some((rid, kind, ssrc, codec))
        })?;
        let p = self.participants.get_mut(participant)?;
        p.track_counter += 1;
        let id = format!("{}-t{}", p.id, p.track_counter);
        let source = p.declared.get(track_id).copied().unwrap_or(TrackSource::default_for(kind));
        let mut forward = PublishedTrack::new(kind, &codec.mime_type, codec.clock_rate);
        let muted = p.muted.contains(&source);
        forward.set_muted(muted, now);
        p.span.in_scope(|| tracing::info!(track = %id, ?kind, ?source, codec = %codec.mime_type, "track published"));
        let _ = p.events.send(MediaEvent::TrackPublished { track_id: id.clone(), kind, source, muted });
        let room = p.room.clone();
        let track = self.tracks.insert(Track { id, publisher: participant, peer: idx, receiver, media_ssrc: ssrc, kind, source, codec, forward });
        self.participants.get_mut(participant)?.published.insert(track_id.to_owned(), track);
        Stats::set(&self.stats.published_tracks, self.tracks.len as u64);
        let others: Vec<usize> = self.rooms.get(&room).into_iter().flatten().copied().filter(|&o| o != participant).collect();
        for other in others {
            self.subscribe(other, track, now);
        }
        Some(track)
    }

    /// Adds a published track to a participant's subscribe connection.
    fn subscribe(&mut self, participant: usize, track: usize, now: Instant) {
        let Some(t) = self.tracks.get(track) else { return };
        let Some(p) = self.participants.get(participant) else { return };
        let wanted = match t.kind {
            MediaKind::Audio => p.options.audio,
            MediaKind::Video => p.options.video,
        };
        if !wanted || p.down.contains_key(&t.id) {
            return;
        }
        let stream_id = self.participants.get(t.publisher).map(|p| p.id.clone()).unwrap_or_default();
        let (track_id, kind, codec) = (t.id.clone(), t.kind, t.codec.clone());
        let Some(peer) = self.ensure_peer(participant, PcKind::Subscribe, now) else { return };
        let ssrc: u32 = rand::random();
        let local = MediaStreamTrack::new(
            stream_id,
            track_id.clone(),
            track_id.clone(),
            rtc_kind(kind),
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
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
        if request {
            self.send_keyframe_request(track, now);
        }
        self.offer_if_needed(participant, now);
    }

    /// Whether `track` is withheld from `subscriber`: its publisher opted out of transcription and the
    /// subscriber is the transcription service.
    fn withheld(&self, subscriber: usize, track: usize) -> bool {
        let wants_consent = self.participants.get(subscriber).is_some_and(|s| s.options.withhold_opted_out);
        let opted_out = self.tracks.get(track).and_then(|t| self.participants.get(t.publisher)).is_some_and(|p| p.opted_out);
        wants_consent && opted_out
    }

    /// A participant opted out of transcription or back in: (re)applies withholding on its tracks.
    fn set_opted_out(&mut self, participant: usize, opted_out: bool) {
        let Some(p) = self.participants.get_mut(participant) else { return };
        p.opted_out = opted_out;
        p.span.in_scope(|| tracing::info!(opted_out, "transcription consent changed"));
        let tracks: Vec<usize> = p.published.values().copied().collect();
        for track in tracks {
            let sinks: Vec<(usize, RTCRtpSenderId)> = self.tracks.get(track).map(|t| t.forward.subscribers().collect()).unwrap_or_default();
            for sink in sinks {
                let subscriber = self.peers.get(sink.0).map(|peer| peer.participant).unwrap_or(usize::MAX);
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
        Stats::set(&self.stats.published_tracks, self.tracks.len as u64);
        if let Some(p) = self.participants.get_mut(t.publisher) {
            p.published.retain(|_, &mut v| v != track);
            p.span.in_scope(|| tracing::info!(track = %t.id, "track unpublished"));
            let _ = p.events.send(MediaEvent::TrackUnpublished { track_id: t.id.clone() });
        }
        for (peer, sender) in t.forward.subscribers().collect::<Vec<_>>() {
            let Some(subscriber) = self.peers.get_mut(peer) else { continue };
            if let Err(e) = subscriber.pc.remove_track(sender) {
                tracing::debug!("remove_track: {e}");
            }
            let participant = subscriber.participant;
            if let Some(p) = self.participants.get_mut(participant) {
                p.down.remove(&t.id);
                p.needs_offer = true;
            }
            self.offer_if_needed(participant, now);
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
        let ufrag = ice::random_credential(16);
        let pwd = ice::random_credential(32);
        let pc = match peer::build(&ufrag, &pwd, &self.candidates, self.failed_after, now) {
            Ok(pc) => pc,
            Err(e) => {
                tracing::error!("cannot create peer connection: {e}");
                return None;
            }
        };
        let idx = self.peers.insert(Peer { participant, kind, pc, ufrag: ufrag.clone(), deadline: None, addrs: Vec::new(), dirty: false, connected: false });
        self.by_ufrag.insert(ufrag, idx);
        let p = self.participants.get_mut(participant)?;
        match kind {
            PcKind::Publish => p.publish = Some(idx),
            PcKind::Subscribe => p.subscribe = Some(idx),
        }
        Stats::set(&self.stats.peer_connections, self.peers.len as u64);
        Some(idx)
    }

    /// Sends a subscribe offer if something changed and no offer is waiting for its answer.
    fn offer_if_needed(&mut self, participant: usize, now: Instant) {
        let Some(p) = self.participants.get(participant) else { return };
        if p.offer_in_flight || !p.needs_offer {
            return;
        }
        let Some(idx) = p.subscribe else { return };
        let Some(peer) = self.peers.get_mut(idx) else { return };
        let offer = peer.pc.create_offer(None).and_then(|offer| peer.pc.set_local_description(now, offer));
        let sdp = match offer.map(|_| peer.pc.local_description()) {
            Ok(Some(desc)) => desc.sdp,
            Ok(None) | Err(_) => {
                Stats::add(&self.stats.errors, 1);
                p.span.in_scope(|| tracing::error!("cannot create subscribe offer"));
                return;
            }
        };
        let p = self.participants.get_mut(participant).expect("checked above");
        p.offer_in_flight = true;
        p.needs_offer = false;
        let _ = p.events.send(MediaEvent::SubscribeOffer { sdp });
        self.mark_dirty(idx);
    }

    /// Applies a publish offer and answers it. Over its offer rate a participant is refused before
    /// anything is parsed; a failed offer is rolled back so the next good one applies; track
    /// declarations count only from an applied offer, and only for tracks it sends.
    fn on_publish(&mut self, participant: usize, sdp: String, tracks: Vec<TrackDeclaration>, now: Instant) -> Result<String> {
        let p = self.participants.get_mut(participant).ok_or_else(|| Error::UnknownParticipant(String::new()))?;
        if !p.offers.allow(now) {
            Stats::add(&self.stats.refused_offers, 1);
            return Err(Error::TooManyOffers { per_second: p.offers.per_second() });
        }
        let idx = self.ensure_peer(participant, PcKind::Publish, now).ok_or_else(|| Error::Negotiation("no peer connection".into()))?;
        let sending = sending_track_ids(&sdp);
        let pc = &mut self.peers.get_mut(idx).expect("just ensured").pc;
        let answer = negotiate::answer_offer(pc, sdp, now)?;
        let max = self.max_media_sections;
        let p = self.participants.get_mut(participant).expect("checked above");
        p.declared.retain(|id, _| sending.contains(id));
        for t in tracks {
            if sending.contains(&t.track_id) && (p.declared.len() < max || p.declared.contains_key(&t.track_id)) {
                p.declared.insert(t.track_id, t.source);
            }
        }
        let stopped: Vec<usize> = p.published.iter().filter(|(id, _)| !sending.contains(*id)).map(|(_, &t)| t).collect();
        self.count_declarations();
        for track in stopped {
            self.unpublish(track, now);
        }
        self.process(idx, now);
        Ok(answer)
    }

    fn count_declarations(&self) {
        let held: usize = self.participants.iter().map(|(_, p)| p.declared.len()).sum();
        Stats::set(&self.stats.declared_tracks, held as u64);
    }

    fn on_subscribe_answer(&mut self, participant: usize, sdp: String, now: Instant) -> Result<()> {
        let p = self.participants.get_mut(participant).ok_or_else(|| Error::UnknownParticipant(String::new()))?;
        let idx = p.subscribe.filter(|_| p.offer_in_flight).ok_or_else(|| Error::Negotiation("no subscribe offer is waiting for an answer".into()))?;
        p.offer_in_flight = false;
        let pc = &mut self.peers.get_mut(idx).expect("subscribe peer exists").pc;
        let answer = RTCSessionDescription::answer(sdp).map_err(|e| Error::Negotiation(format!("bad answer: {e}")))?;
        let applied = pc.set_remote_description(now, answer).map_err(|e| Error::Negotiation(format!("answer rejected: {e}")));
        self.refresh_payload_types(participant);
        self.process(idx, now);
        self.offer_if_needed(participant, now);
        applied
    }

    /// Gives each track forwarded to this participant the payload type its codec has on the
    /// subscribe connection, or none while that connection is not connected (nothing is sent then).
    fn refresh_payload_types(&mut self, participant: usize) {
        let Some(p) = self.participants.get(participant) else { return };
        let Some(idx) = p.subscribe else { return };
        let down: Vec<(usize, RTCRtpSenderId)> = p.down.values().copied().collect();
        let Some(peer) = self.peers.get_mut(idx) else { return };
        for (track, sender) in down {
            let Some(t) = self.tracks.get_mut(track) else { continue };
            let pt = if !peer.connected {
                None
            } else {
                peer.pc.rtp_sender(sender).and_then(|mut s| {
                    let codecs = &s.get_parameters().rtp_parameters.codecs;
                    let same_mime = |c: &&rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters| {
                        c.rtp_codec.mime_type.eq_ignore_ascii_case(&t.codec.mime_type)
                    };
                    codecs
                        .iter()
                        .filter(same_mime)
                        .find(|c| c.rtp_codec.sdp_fmtp_line == t.codec.sdp_fmtp_line)
                        .or_else(|| codecs.iter().find(same_mime))
                        .map(|c| c.payload_type)
                })
            };
            t.forward.set_payload_type((idx, sender), pt);
        }
    }

    // ---- commands --------------------------------------------------------------------------

    fn participant_index(&self, id: &str) -> Result<usize> {
        self.participant_ids.get(id).copied().ok_or_else(|| Error::UnknownParticipant(id.to_owned()))
    }

    fn on_command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Join { room, participant, options, events, reply } => {
                let _ = reply.send(self.on_join(room, participant, options, events, now));
            }
            Command::Publish { participant, sdp, tracks, reply } => {
                let result = self.participant_index(&participant).and_then(|p| self.on_publish(p, sdp, tracks, now));
                let _ = reply.send(result);
            }
            Command::SubscribeAnswer { participant, sdp, reply } => {
                let result = self.participant_index(&participant).and_then(|p| self.on_subscribe_answer(p, sdp, now));
                let _ = reply.send(result);
            }
            Command::Candidate { participant, pc, candidate } => {
                let Ok(p) = self.participant_index(&participant) else { return };
                let Some(idx) = self.ensure_peer(p, pc, now) else { return };
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
            Command::Mute { participant, source, muted } => {
                let Ok(p) = self.participant_index(&participant) else { return };
                let part = self.participants.get_mut(p).expect("indexed participant exists");
                if muted {
                    part.muted.insert(source);
                } else {
                    part.muted.remove(&source);
                }
                let tracks: Vec<usize> = part.published.values().copied().collect();
                for t in tracks {
                    let request = self.tracks.get_mut(t).is_some_and(|t| t.source == source && t.forward.set_muted(muted, now));
                    if request {
                        self.send_keyframe_request(t, now);
                    }
                }
            }
            Command::OptOut { participant, opted_out } => {
                if let Ok(p) = self.participant_index(&participant) {
                    self.set_opted_out(p, opted_out);
                }
            }
            Command::Leave { participant, reply } => {
                if let Ok(p) = self.participant_index(&participant) {
                    self.on_leave(p, now);
                }
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Command::Shutdown => {}
        }
    }

    fn on_join(
        &mut self,
        room: String,
        id: String,
        options: SubscribeOptions,
        events: mpsc::UnboundedSender<MediaEvent>,
        now: Instant,
    ) -> Result<()> {
        if self.participant_ids.contains_key(&id) {
            return Err(Error::AlreadyJoined(id));
        }
        let span = tracing::info_span!("participant", room = %room, participant = %id);
        let idx = self.participants.insert(Participant {
            id: id.clone(),
            room: room.clone(),
            events,
            options,
            span,
            publish: None,
            subscribe: None,
            declared: HashMap::new(),
            muted: HashSet::new(),
            opted_out: false,
            published: HashMap::new(),
            track_counter: 0,
            down: HashMap::new(),
            offer_in_flight: false,
            needs_offer: false,
            offers: OfferRate::new(self.offers_per_second, now),
        });
        self.participant_ids.insert(id, idx);
        let members = self.rooms.entry(room).or_default();
        members.push(idx);
        let existing: Vec<usize> = self.tracks.iter().filter(|(_, t)| members.contains(&t.publisher)).map(|(i, _)| i).collect();
        Stats::set(&self.stats.participants, self.participants.len as u64);
        Stats::set(&self.stats.rooms, self.rooms.len() as u64);
        for t in existing {
            self.subscribe(idx, t, now);
        }
        Ok(())
    }

    fn on_leave(&mut self, participant: usize, now: Instant) {
        let Some(p) = self.participants.get(participant) else { return };
        p.span.in_scope(|| tracing::info!("left the media server"));
        let published: Vec<usize> = p.published.values().copied().collect();
        let down: Vec<(usize, RTCRtpSenderId)> = p.down.values().copied().collect();
        let peers: Vec<usize> = p.publish.into_iter().chain(p.subscribe).collect();
        for t in published {
            self.unpublish(t, now);
        }
        for (track, sender) in down {
            if let (Some(t), Some(peer)) = (self.tracks.get_mut(track), self.participants.get(participant).and_then(|p| p.subscribe)) {
                t.forward.remove_subscriber((peer, sender));
            }
        }
        for idx in peers {
            self.close_peer(idx);
        }
        let Some(p) = self.participants.remove(participant) else { return };
        self.participant_ids.remove(&p.id);
        if let Some(members) = self.rooms.get_mut(&p.room) {
            members.retain(|&m| m != participant);
            if members.is_empty() {
                self.rooms.remove(&p.room);
                tracing::info!(room = %p.room, "room closed");
            }
        }
        Stats::set(&self.stats.participants, self.participants.len as u64);
        Stats::set(&self.stats.rooms, self.rooms.len() as u64);
        self.count_declarations();
    }

    fn close_peer(&mut self, idx: usize) {
        let Some(mut peer) = self.peers.remove(idx) else { return };
        if let Err(e) = peer.pc.close() {
            tracing::debug!("closing peer connection: {e}");
        }
        self.by_ufrag.remove(&peer.ufrag);
        for key in &peer.addrs {
            self.by_addr.remove(key);
        }
        self.dirty.retain(|&d| d != idx);
        Stats::set(&self.stats.peer_connections, self.peers.len as u64);
    }
}

/// Waits for a datagram on any of the sockets.
async fn recv_any(sockets: &[UdpSocket], buf: &mut [u8]) -> std::io::Result<(usize, usize, SocketAddr)> {
    std::future::poll_fn(|cx| {
        for (i, socket) in sockets.iter().enumerate() {
            let mut read = tokio::io::ReadBuf::new(buf);
            match socket.poll_recv_from(cx, &mut read) {
                std::task::Poll::Ready(Ok(from)) => return std::task::Poll::Ready(Ok((i, read.filled().len(), from))),
                std::task::Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => {}
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// A datagram that is already waiting, without blocking.
fn try_recv_any(sockets: &[UdpSocket], buf: &mut [u8]) -> Option<(usize, usize, SocketAddr)> {
    sockets.iter().enumerate().find_map(|(i, s)| s.try_recv_from(buf).ok().map(|(n, from)| (i, n, from)))
}
