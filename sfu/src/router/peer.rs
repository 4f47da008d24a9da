//! Building one webrtc-rs (sans-IO) peer connection the way the SFU needs it: ICE-lite with its own
//! credentials, host candidates for the shared sockets, the default codecs, the audio-level header
//! extension, and only the interceptors its direction needs, since every interceptor costs every
//! packet a hop through the chain. A publish connection receives media: it asks for retransmissions
//! (NACK), reports reception (receiver reports) and arrival times (TWCC feedback). A subscribe
//! connection sends media: it retransmits, sends sender reports, numbers what it sends
//! (transport-wide sequence numbers), runs Google Congestion Control on the subscriber's TWCC
//! feedback (the downlink estimate the allocator spends), and hands inbound PLI/FIR to the
//! application so subscribers' keyframe requests reach the forwarding core.

use crate::error::Result;
use rtc::ice::tcp_type::TcpType;
use rtc::interceptor::{
    Attribute, BandwidthEstimator, CongestionControlBuilder, EstimatorStats, Gcc, Interceptor, NackGeneratorBuilder,
    NackResponderBuilder, Packet, PacketReport, ReceiverReportBuilder, Registry, SenderReportBuilder, Slot, StreamInfo,
    TaggedPacket,
};
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_simulcast_extension_headers, configure_twcc_receiver_only, configure_twcc_sender_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RTCRtpHeaderExtensionParameters,
    RtpCodecKind, TYPE_RTCP_FB_NACK,
};
use rtc::sansio::Protocol;
use rtc::shared::TransportProtocol;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// RFC 2198 redundant audio.
pub(crate) const MIME_TYPE_RED: &str = "audio/red";
pub(crate) const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Silence after which a connection counts as disconnected. Longer than the 4-6 s between some
/// peers' consent checks (aiortc), so those connections do not flap.
const ICE_DISCONNECTED: Duration = Duration::from_secs(10);

/// Where the downlink estimate starts before the first feedback: high enough that a subscriber on a
/// good link sees full quality at once; a thin link's feedback brings it down within a second or two.
const INITIAL_ESTIMATE_BPS: f64 = 2_500_000.0;
const MIN_ESTIMATE_BPS: f64 = 50_000.0;
const MAX_ESTIMATE_BPS: f64 = 50_000_000.0;

/// A subscribe connection's downlink estimate in bits per second, shared between its congestion
/// controller (inside the peer connection) and the router; 0 until the subscriber's first feedback.
#[derive(Debug, Clone, Default)]
pub(crate) struct Estimate(Arc<AtomicU64>);

impl Estimate {
    /// The estimate, once the subscriber has reported anything.
    pub(crate) fn bps(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&b| b > 0)
    }
}

/// Google Congestion Control, publishing its target where the router reads it.
struct Reporting {
    gcc: Gcc,
    out: Estimate,
}

impl BandwidthEstimator for Reporting {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.gcc.on_reports(now, reports);
        if !reports.is_empty() {
            self.out.0.store(self.gcc.target_bitrate() as u64, Ordering::Relaxed);
        }
    }
    fn target_bitrate(&self) -> f64 {
        self.gcc.target_bitrate()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.gcc.handle_timeout(now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.gcc.poll_timeout()
    }
    fn stats(&self) -> EstimatorStats {
        self.gcc.stats()
    }
}

/// A new peer connection with a host candidate for each address and the server's DTLS
/// `certificate`; it fails after `failed_after` without any ICE traffic. With an `estimate` it is
/// a subscribe connection (it sends media and estimates the downlink); without, a publish
/// connection (it receives media). Its ICE credentials are random, new at every ICE
/// restart (as RFC 8839 asks of both sides); the router learns them from its local descriptions.
pub(crate) fn build(
    candidates: &[(SocketAddr, TransportProtocol)],
    failed_after: Duration,
    certificate: RTCCertificate,
    estimate: Option<Estimate>,
    now: Instant,
) -> Result<RTCPeerConnection> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs()?;
    // RED over Opus (what browsers offer): received from publishers that send it, forwarded as it
    // is to subscribers that take it and unwrapped for the others (forward::red).
    media_engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_RED.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "111/111".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: 63,
        },
        RtpCodecKind::Audio,
    )?;
    media_engine.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    for parameter in ["", "pli"] {
        media_engine.register_feedback(
            RTCPFeedback {
                typ: TYPE_RTCP_FB_NACK.to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    configure_simulcast_extension_headers(&mut media_engine)?;
    let registry = match estimate {
        // No pacer: the allocator keeps what is forwarded under the estimate, and a pacer would
        // only add delay and drops on top.
        Some(out) => {
            let gcc = Gcc::new(INITIAL_ESTIMATE_BPS, MIN_ESTIMATE_BPS, MAX_ESTIMATE_BPS);
            configure_twcc_sender_only(Registry::new(), &mut media_engine)?
                .with(
                    Slot::CongestionControl,
                    CongestionControlBuilder::new(Reporting { gcc, out }).build(),
                )
                .with(Slot::NackResponder, NackResponderBuilder::new().build())
                .with(Slot::SenderReport, SenderReportBuilder::new().build())
                .with(Slot::from(14_000), DeliverKeyframeRequests::default())
        }
        None => configure_twcc_receiver_only(Registry::new(), &mut media_engine)?
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
            .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build()),
    };
    let setting_engine = SettingEngineBuilder::new()
        .with_lite(true)
        // The ICE agent counts the failed timeout from the end of the disconnected one: failed after
        // ICE_DISCONNECTED + failed_after of silence, as documented (zero would mean never).
        .with_ice_timeouts(
            Some(ICE_DISCONNECTED),
            Some(failed_after.max(Duration::from_secs(1))),
            None,
        )
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_certificates(vec![certificate])
                .build(),
        )
        .with_setting_engine(setting_engine)
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .build(now)?;
    for &(addr, protocol) in candidates {
        add_host_candidate(&mut pc, addr, protocol)?;
    }
    Ok(pc)
}

/// The negotiated id of the RFC 6464 audio-level header extension among `extensions`.
pub(crate) fn audio_level_id(extensions: &[RTCRtpHeaderExtensionParameters]) -> Option<u8> {
    extensions
        .iter()
        .find(|e| e.uri == AUDIO_LEVEL_URI)
        .and_then(|e| u8::try_from(e.id).ok())
}

/// Offers `addr` as a host candidate of the connection (UDP, or passive ICE-TCP).
pub(crate) fn add_host_candidate(
    pc: &mut RTCPeerConnection,
    addr: SocketAddr,
    protocol: TransportProtocol,
) -> Result<()> {
    // A TCP candidate is passive (RFC 6544): the peer connects to us. Its priority is below UDP's.
    let (network, tcp_type) = match protocol {
        TransportProtocol::TCP => ("tcp", TcpType::Passive),
        _ => ("udp", TcpType::Unspecified),
    };
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: network.to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        tcp_type,
    }
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
    Ok(())
}

/// True when an RTCP compound packet asks for a keyframe.
pub(crate) fn asks_for_keyframe(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets.iter().any(|p| {
        let any = p.as_any();
        any.downcast_ref::<PictureLossIndication>().is_some() || any.downcast_ref::<FullIntraRequest>().is_some()
    })
}

/// Marks inbound PLI/FIR for the application; everything else stays with the interceptor chain.
#[derive(Default)]
pub(crate) struct DeliverKeyframeRequests {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for DeliverKeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet
            && asks_for_keyframe(packets)
        {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read_queue.pop_front()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write_queue.pop_front()
    }
    fn handle_timeout(&mut self, _now: Instant) -> std::result::Result<(), Self::Error> {
        Ok(())
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl Interceptor for DeliverKeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
