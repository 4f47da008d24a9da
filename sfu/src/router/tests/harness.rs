//! An in-memory network for the router: participants are webrtc-rs (`rtc`, sans-IO) peer
//! connections on made-up addresses, datagrams are handed between them and the router directly,
//! and time is a fake clock that only the test advances (quinn-proto's `Pair`, for an SFU).
//! ICE, DTLS and SRTP run for real; nothing touches a socket.

use crate::config::MediaConfig;
use crate::router::peer::{AUDIO_LEVEL_URI, SubscriberFeedback, add_host_candidate};
use crate::router::{MediaEvent, PeerState, Router, SubscribeOptions};
use crate::stats::Stats;
use bytes::Bytes;
use rtc::interceptor::{Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use samtal_protocol::{MediaKind, PcKind, TrackDeclaration, TrackSource};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The router's media address (never bound: nothing here is a socket).
pub const SERVER: &str = "192.0.2.1:10000";
/// One step of the fake clock.
pub const STEP: Duration = Duration::from_millis(5);

/// A participant's end: its two peer connections and what reached it.
pub struct Client {
    pub id: String,
    publish_addr: SocketAddr,
    subscribe_addr: SocketAddr,
    pub publish: Option<RTCPeerConnection>,
    pub subscribe: Option<RTCPeerConnection>,
    /// Senders of the published tracks, by source.
    pub senders: Vec<(TrackSource, RTCRtpSenderId, u32)>,
    /// Events the router emitted for this participant.
    pub events: Vec<MediaEvent>,
    /// RTP received on the subscribe connection: (receiving track id, packet).
    pub received: Vec<(String, rtp::Packet)>,
    /// Keyframe requests (PLI/FIR) received on the publish connection.
    pub keyframe_requests: usize,
    pub publish_connected: bool,
    pub subscribe_connected: bool,
    /// A client that stopped answering (its datagrams are neither sent nor received).
    pub silent: bool,
    sequence: u16,
}

pub struct Net {
    pub now: Instant,
    pub router: Router,
    pub stats: Arc<Stats>,
    pub clients: Vec<Client>,
    server: SocketAddr,
}

/// A browser-like peer connection (full ICE, default codecs and interceptors) at `addr`.
fn client_pc(addr: SocketAddr, now: Instant) -> RTCPeerConnection {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs().expect("codecs");
    // As browsers do, the client offers to mark its audio packets with their level.
    media_engine
        .register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: AUDIO_LEVEL_URI.to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )
        .expect("audio level extension");
    // As a browser's decoder does, the client sees the keyframe requests for its own tracks.
    let registry = Registry::new().with(Slot::from(14_000), SubscriberFeedback::default());
    let registry = register_default_interceptors(registry, &mut media_engine).expect("interceptors");
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(SettingEngineBuilder::new().build())
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .build(now)
        .expect("a client peer connection");
    add_host_candidate(&mut pc, addr, TransportProtocol::UDP).expect("a host candidate");
    pc
}

fn codec(kind: MediaKind) -> RTCRtpCodec {
    match kind {
        MediaKind::Audio => RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        MediaKind::Video => RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
    }
}

impl Net {
    pub fn new() -> Self {
        Self::with_config(MediaConfig::default())
    }

    pub fn with_config(config: MediaConfig) -> Self {
        let now = Instant::now();
        let server: SocketAddr = SERVER.parse().expect("address");
        let stats = Arc::new(Stats::default());
        let router = Router::new(&config, &[server], &[], stats.clone(), now).expect("a router");
        Self {
            now,
            router,
            stats,
            clients: Vec::new(),
            server,
        }
    }

    /// A participant joins `room`; returns its index in `clients`.
    pub fn join(&mut self, room: &str, options: SubscribeOptions) -> usize {
        let n = self.clients.len() as u8 + 1;
        let id = format!("p{n}");
        self.router.join(room, &id, options, self.now).expect("join");
        self.clients.push(Client {
            id,
            publish_addr: SocketAddr::from(([198, 51, 100, n], 5000)),
            subscribe_addr: SocketAddr::from(([198, 51, 100, n], 5001)),
            publish: None,
            subscribe: None,
            senders: Vec::new(),
            events: Vec::new(),
            received: Vec::new(),
            keyframe_requests: 0,
            publish_connected: false,
            subscribe_connected: false,
            silent: false,
            sequence: 0,
        });
        self.clients.len() - 1
    }

    /// The participant's publish offer for one track of `source` (added to what it publishes).
    pub fn publish(&mut self, client: usize, source: TrackSource) -> Result<(), crate::Error> {
        let now = self.now;
        let c = &mut self.clients[client];
        let pc = c.publish.get_or_insert_with(|| client_pc(c.publish_addr, now));
        let kind = if source == TrackSource::Microphone {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        let track_id = format!("{}-{source:?}", c.id).to_lowercase();
        let ssrc = 10_000 + c.senders.len() as u32 + 100 * client as u32;
        let rtc_kind = if kind == MediaKind::Audio {
            RtpCodecKind::Audio
        } else {
            RtpCodecKind::Video
        };
        let track = MediaStreamTrack::new(
            c.id.clone(),
            track_id.clone(),
            track_id.clone(),
            rtc_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                active: true,
                codec: codec(kind),
                ..Default::default()
            }],
        );
        let sender = pc.add_track(track).expect("add track");
        c.senders.push((source, sender, ssrc));
        let tracks = vec![TrackDeclaration { track_id, source }];
        self.offer(client, tracks)
    }

    /// Sends the publish connection's current offer; applies the answer.
    pub fn offer(&mut self, client: usize, tracks: Vec<TrackDeclaration>) -> Result<(), crate::Error> {
        let now = self.now;
        let c = &mut self.clients[client];
        let pc = c.publish.as_mut().expect("a publish connection");
        let offer = pc.create_offer(None).expect("offer");
        pc.set_local_description(now, offer.clone()).expect("local offer");
        let answer = self.router.publish(&c.id, offer.sdp, tracks, now)?;
        let pc = self.clients[client].publish.as_mut().expect("a publish connection");
        pc.set_remote_description(now, RTCSessionDescription::answer(answer).expect("answer"))
            .expect("remote answer");
        Ok(())
    }

    /// Sends one RTP packet on the client's track of `source`.
    pub fn send(&mut self, client: usize, source: TrackSource, payload: &[u8]) {
        self.send_packet(client, source, payload, None);
    }

    /// Sends one audio packet whose RFC 6464 audio-level extension says `dbov` (0 loud, 127 silent).
    pub fn send_level(&mut self, client: usize, payload: &[u8], dbov: u8) {
        self.send_packet(client, TrackSource::Microphone, payload, Some(dbov));
    }

    fn send_packet(&mut self, client: usize, source: TrackSource, payload: &[u8], level: Option<u8>) {
        let now = self.now;
        let c = &mut self.clients[client];
        let Some(&(_, sender, ssrc)) = c.senders.iter().find(|(s, _, _)| *s == source) else {
            panic!("{} publishes no {source:?}", c.id)
        };
        c.sequence = c.sequence.wrapping_add(1);
        let mut packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: if source == TrackSource::Microphone { 111 } else { 96 },
                sequence_number: c.sequence,
                timestamp: u32::from(c.sequence) * 960,
                ssrc,
                marker: true,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        let pc = c.publish.as_mut().expect("a publish connection");
        let mut sender = pc.rtp_sender(sender).expect("sender");
        if let Some(dbov) = level {
            let id = sender
                .get_parameters()
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|e| e.uri == AUDIO_LEVEL_URI)
                .map(|e| e.id as u8)
                .expect("the audio level extension is negotiated");
            packet.header.extension = true;
            packet.header.extension_profile = 0xBEDE;
            packet
                .header
                .set_extension(id, Bytes::copy_from_slice(&[0x80 | dbov]))
                .expect("extension");
        }
        sender.write_rtp(now, packet).expect("write rtp");
    }

    /// The client asks for a keyframe of every track it receives (as a decoder that lost one).
    pub fn request_keyframes(&mut self) {
        let now = self.now;
        for c in &mut self.clients {
            let Some(pc) = c.subscribe.as_mut() else { continue };
            let receivers: Vec<_> = pc.get_receivers().collect();
            for r in receivers {
                if let Some(mut receiver) = pc.rtp_receiver(r) {
                    let media_ssrc = receiver.track().ssrcs().next().unwrap_or(0);
                    let _ = receiver.write_rtcp(
                        now,
                        vec![Box::new(PictureLossIndication {
                            sender_ssrc: 1,
                            media_ssrc,
                        })],
                    );
                }
            }
        }
    }

    /// Hands every pending datagram and event on, then advances the clock one step.
    pub fn step(&mut self) {
        self.exchange();
        self.now += STEP;
        self.router.handle_timeout(self.now);
        let now = self.now;
        for c in &mut self.clients {
            for pc in [c.publish.as_mut(), c.subscribe.as_mut()].into_iter().flatten() {
                if pc.poll_timeout().is_some_and(|at| at <= now) {
                    let _ = pc.handle_timeout(now);
                }
            }
        }
        self.exchange();
    }

    /// Steps until `done` holds (true) or `limit` of fake time passes (false).
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Moves datagrams and events until nothing is left to move.
    fn exchange(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.router.poll_transmit() {
                moved = true;
                let now = self.now;
                let Some(c) = self
                    .clients
                    .iter_mut()
                    .find(|c| c.publish_addr == t.to || c.subscribe_addr == t.to)
                else {
                    continue;
                };
                if c.silent {
                    continue;
                }
                let pc = if c.publish_addr == t.to {
                    c.publish.as_mut()
                } else {
                    c.subscribe.as_mut()
                };
                if let Some(pc) = pc {
                    let message = TaggedBytesMut {
                        now,
                        transport: TransportContext {
                            local_addr: t.to,
                            peer_addr: t.local,
                            ecn: None,
                            transport_protocol: TransportProtocol::UDP,
                        },
                        message: t.data,
                    };
                    let _ = pc.handle_read(message);
                }
            }
            while let Some((id, event)) = self.router.poll_event() {
                moved = true;
                self.on_event(&id, event);
            }
            for i in 0..self.clients.len() {
                moved |= self.drain_client(i);
            }
            if !moved {
                break;
            }
        }
    }

    fn on_event(&mut self, id: &str, event: MediaEvent) {
        let now = self.now;
        let Some(i) = self.clients.iter().position(|c| c.id == id) else {
            return;
        };
        if let MediaEvent::SubscribeOffer { sdp } = &event {
            let c = &mut self.clients[i];
            let pc = c.subscribe.get_or_insert_with(|| client_pc(c.subscribe_addr, now));
            pc.set_remote_description(now, RTCSessionDescription::offer(sdp.clone()).expect("offer"))
                .expect("remote offer");
            let answer = pc.create_answer(None).expect("answer");
            pc.set_local_description(now, answer.clone()).expect("local answer");
            let id = c.id.clone();
            self.router
                .subscribe_answer(&id, answer.sdp, now)
                .expect("the router takes the answer");
        }
        self.clients[i].events.push(event);
    }

    /// Sends what the client's connections wrote and reads what they received; whether anything moved.
    fn drain_client(&mut self, i: usize) -> bool {
        let (now, server) = (self.now, self.server);
        let mut moved = false;
        let c = &mut self.clients[i];
        let silent = c.silent;
        for kind in [PcKind::Publish, PcKind::Subscribe] {
            let pc = match kind {
                PcKind::Publish => c.publish.as_mut(),
                PcKind::Subscribe => c.subscribe.as_mut(),
            };
            let Some(pc) = pc else { continue };
            while let Some(out) = pc.poll_write() {
                moved = true;
                if !silent && out.transport.peer_addr == server {
                    self.router.handle_datagram(
                        server,
                        out.transport.local_addr,
                        TransportProtocol::UDP,
                        &out.message,
                        now,
                    );
                }
            }
            while let Some(event) = pc.poll_event() {
                moved = true;
                if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                    let connected = state == RTCPeerConnectionState::Connected;
                    match kind {
                        PcKind::Publish => c.publish_connected = connected,
                        PcKind::Subscribe => c.subscribe_connected = connected,
                    }
                }
            }
            while let Some(message) = pc.poll_read() {
                moved = true;
                match message.message {
                    RTCMessage::RtpPacket(track, packet) if kind == PcKind::Subscribe => {
                        c.received.push((track, packet))
                    }
                    RTCMessage::RtcpPacket(_, packets) if kind == PcKind::Publish => {
                        c.keyframe_requests += packets
                            .iter()
                            .filter(|p| p.as_any().downcast_ref::<PictureLossIndication>().is_some())
                            .count();
                    }
                    _ => {}
                }
            }
        }
        moved
    }

    pub fn client(&self, i: usize) -> &Client {
        &self.clients[i]
    }

    /// Packets `receiver` got so far.
    pub fn received(&self, receiver: usize) -> usize {
        self.clients[receiver].received.len()
    }

    /// Whether the router reported a failed connection for the client.
    pub fn failed(&self, client: usize) -> bool {
        self.clients[client].events.iter().any(|e| {
            matches!(
                e,
                MediaEvent::PeerState {
                    state: PeerState::Failed,
                    ..
                }
            )
        })
    }
}
