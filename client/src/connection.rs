//! One peer connection of a participant: how it is built (loopback host candidates, default codecs
//! and interceptors, keyframe requests let through on the publish side), the watches its event
//! handler feeds, and the reading of received tracks into the media channel.

use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Slot;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpHeaderExtensionCapability, RtpCodecKind};
use samtal_protocol::{IceServer, MediaKind, PcKind};
use tokio::sync::{mpsc, watch};
use tracing::debug;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState, RTCSessionDescription, Registry,
    register_default_interceptors,
};

use crate::error::{Error, Result};
use crate::keyframe_requests::{KEYFRAME_REQUESTS_SLOT, KeyframeRequests};
use crate::local_track::AUDIO_LEVEL_URI;
use crate::participant::{ParticipantEvent, Received};
use crate::stats::{Counters, bump};
use crate::tiles::VideoTiles;

/// Where the subscribe connection's media goes.
#[derive(Clone)]
pub(crate) struct MediaSink {
    pub(crate) tx: mpsc::Sender<Received>,
    pub(crate) counters: Arc<Counters>,
    /// Where a started video track's tile is reported. Weak: the connection's tasks can outlive
    /// the participant, and the tiles hold the signaling sender, which must go with the participant
    /// (its websocket closes when the last sender is dropped).
    pub(crate) tiles: Weak<VideoTiles>,
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
        let _ = self
            .events
            .send(ParticipantEvent::ConnectionState { pc: self.pc, state });
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // This runs on the connection's driver task: read the track in a task of its own.
        let Some(sink) = self.media.clone() else {
            return;
        };
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
    if kind == MediaKind::Video
        && let Some(tiles) = sink.tiles.upgrade()
    {
        tiles.track_seen(&track_id);
    }
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
                    // The user reads too slowly: drop, count, keep draining the track.
                    Err(mpsc::error::TrySendError::Full(_)) => bump(&sink.counters.media_dropped, 1),
                    // Nobody reads any more: keep draining the track so the driver is not held up.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    debug!(%participant_id, %track_id, "remote track ended");
    let _ = events.send(ParticipantEvent::TrackEnded {
        participant_id,
        track_id,
    });
}

/// A peer connection with the watches its handler feeds.
pub(crate) struct Connection {
    pub(crate) pc: Arc<dyn PeerConnection>,
    pub(crate) gathering: watch::Receiver<RTCIceGatheringState>,
    pub(crate) state: watch::Receiver<RTCPeerConnectionState>,
}

impl Connection {
    pub(crate) async fn build(
        kind: PcKind,
        bind_ip: IpAddr,
        ice_servers: &[IceServer],
        events: mpsc::UnboundedSender<ParticipantEvent>,
        media: Option<MediaSink>,
    ) -> Result<Connection> {
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs()?;
        if kind == PcKind::Publish {
            media_engine.register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: AUDIO_LEVEL_URI.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )?;
        }
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
        let handler = Arc::new(Handler {
            pc: kind,
            gathering: gathering_tx,
            state: state_tx,
            events,
            media,
        });
        // No mDNS: the server's candidates are addresses, never `.local` names, and the multicast
        // socket mDNS opens fails (ENODEV) on a host without a multicast route, as a container or
        // namespace with no default route is, which would keep the client from connecting at all.
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_setting_engine(settings)
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec![format!("{}:0", SocketIp(bind_ip))])
            .build()
            .await?;
        Ok(Connection {
            pc: Arc::new(pc),
            gathering,
            state,
        })
    }

    /// The local description once gathering is complete, so it holds our candidates.
    pub(crate) async fn gathered_local_sdp(&mut self, timeout: Duration) -> Result<String> {
        tokio::time::timeout(
            timeout,
            self.gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
        )
        .await
        .map_err(|_| Error::Timeout("ICE gathering"))?
        .map_err(|_| Error::Closed)?;
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| Error::Protocol("no local description after set_local_description".into()))
    }

    pub(crate) async fn wait_connected(&mut self, timeout: Duration) -> Result<()> {
        let state = tokio::time::timeout(
            timeout,
            self.state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
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
pub(crate) async fn answer_subscribe(conn: &mut Connection, sdp: String, timeout: Duration) -> Result<String> {
    conn.pc
        .set_remote_description(RTCSessionDescription::offer(sdp)?)
        .await?;
    let answer = conn.pc.create_answer(None).await?;
    conn.pc.set_local_description(answer).await?;
    conn.gathered_local_sdp(timeout).await
}
