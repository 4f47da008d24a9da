//! Building one webrtc-rs (sans-IO) peer connection the way the SFU needs it: ICE-lite with its own
//! credentials, host candidates for the shared sockets, the default codecs, the audio-level header
//! extension, and only the interceptors its direction needs, since every interceptor costs every
//! packet a hop through the chain. A publish connection receives media: it asks for retransmissions
//! (NACK), reports reception (receiver reports) and arrival times (TWCC feedback). A subscribe
//! connection sends media: it retransmits, sends sender reports, numbers what it sends
//! (transport-wide sequence numbers), runs Google Congestion Control on the subscriber's TWCC
//! feedback (the downlink estimate the allocator spends), and hands inbound PLI/FIR to the
//! application so subscribers' keyframe requests reach the forwarding core. A subscriber that does
//! not do TWCC but estimates on its own side (REMB, e.g. aiortc) gets abs-send-time on its video,
//! and its REMB reports are the estimate instead.

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
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RTCRtpHeaderExtensionParameters,
    RtpCodecKind, TYPE_RTCP_FB_NACK,
};
use rtc::sansio::Protocol;
use rtc::sdp::extmap::{ABS_SEND_TIME_URI, TRANSPORT_CC_URI};
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

/// A subscribe connection's downlink estimate in bits per second, shared between the peer
/// connection's interceptors and the router: Google Congestion Control's target from the
/// subscriber's TWCC feedback, or else the subscriber's own latest REMB; each 0 until its first
/// report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Estimate(Arc<EstimateInner>);

#[derive(Debug, Default)]
struct EstimateInner {
    twcc: AtomicU64,
    remb: AtomicU64,
    /// The highest fraction lost (of 256) the subscriber's receiver reports gave since last read.
    loss: AtomicU64,
}

impl Estimate {
    /// The estimate, once the subscriber has reported anything. TWCC feedback wins: the sender
    /// side's estimate sees every packet's timing, REMB only the receiver's summary of it.
    pub(crate) fn bps(&self) -> Option<u64> {
        [&self.0.twcc, &self.0.remb]
            .into_iter()
            .map(|a| a.load(Ordering::Relaxed))
            .find(|&b| b > 0)
    }

    /// Whether the estimate is the subscriber's own (REMB): capped by what it receives, so the
    /// allocator must probe to climb (forward::probe).
    pub(crate) fn receiver_side(&self) -> bool {
        self.0.twcc.load(Ordering::Relaxed) == 0 && self.0.remb.load(Ordering::Relaxed) > 0
    }

    /// The highest fraction lost (of 256) the subscriber reported since the last call; `None` when
    /// it sent no receiver report meanwhile (no news is not news of no loss).
    pub(crate) fn take_loss(&self) -> Option<u8> {
        // Stored plus one, so that 0 means no report.
        let stored = self.0.loss.swap(0, Ordering::Relaxed);
        stored.checked_sub(1).map(|l| l as u8)
    }

    fn add_loss(&self, fraction_lost: u8) {
        self.0.loss.fetch_max(u64::from(fraction_lost) + 1, Ordering::Relaxed);
    }

    fn set_twcc(&self, bps: f64) {
        self.0.twcc.store(bps as u64, Ordering::Relaxed);
    }

    fn set_remb(&self, bps: f64) {
        let bps = bps.clamp(MIN_ESTIMATE_BPS, MAX_ESTIMATE_BPS);
        self.0.remb.store(bps as u64, Ordering::Relaxed);
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
            self.out.set_twcc(self.gcc.target_bitrate());
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
    if estimate.is_some() {
        // Where the subscriber estimates its downlink itself (REMB), it needs our send times.
        media_engine.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: ABS_SEND_TIME_URI.to_owned(),
            },
            RtpCodecKind::Video,
            None,
        )?;
    }
    let registry = match estimate {
        // No pacer: the allocator keeps what is forwarded under the estimate, and a pacer would
        // only add delay and drops on top.
        Some(out) => {
            let gcc = Gcc::new(INITIAL_ESTIMATE_BPS, MIN_ESTIMATE_BPS, MAX_ESTIMATE_BPS);
            let feedback = SubscriberFeedback::new(out.clone());
            configure_twcc_sender_only(Registry::new(), &mut media_engine)?
                .with(
                    Slot::CongestionControl,
                    CongestionControlBuilder::new(Reporting { gcc, out }).build(),
                )
                .with(Slot::NackResponder, NackResponderBuilder::new().build())
                .with(Slot::SenderReport, SenderReportBuilder::new().build())
                .with(Slot::from(14_000), feedback)
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

/// The negotiated id of the header extension `uri` among `extensions`.
fn extension_id(extensions: &[RTCRtpHeaderExtensionParameters], uri: &str) -> Option<u8> {
    extensions
        .iter()
        .find(|e| e.uri == uri)
        .and_then(|e| u8::try_from(e.id).ok())
}

/// The negotiated id of the RFC 6464 audio-level header extension among `extensions`.
pub(crate) fn audio_level_id(extensions: &[RTCRtpHeaderExtensionParameters]) -> Option<u8> {
    extension_id(extensions, AUDIO_LEVEL_URI)
}

/// The id under which a subscriber wants abs-send-time: where it negotiated that and not
/// transport-wide sequence numbers (with those, its TWCC feedback serves and the send times would
/// be bytes for nothing).
pub(crate) fn abs_send_time_id(extensions: &[RTCRtpHeaderExtensionParameters]) -> Option<u8> {
    extension_id(extensions, ABS_SEND_TIME_URI).filter(|_| extension_id(extensions, TRANSPORT_CC_URI).is_none())
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

/// The lowest bitrate any REMB in an RTCP compound packet reports (one per compound in practice).
pub(crate) fn remb_bps(packets: &[Box<dyn rtc::rtcp::Packet>]) -> Option<f64> {
    packets
        .iter()
        .filter_map(|p| p.as_any().downcast_ref::<ReceiverEstimatedMaximumBitrate>())
        .map(|r| f64::from(r.bitrate))
        .filter(|b| b.is_finite() && *b > 0.0)
        .reduce(f64::min)
}

/// The highest fraction lost (of 256) the receiver reports in an RTCP compound packet give.
pub(crate) fn fraction_lost(packets: &[Box<dyn rtc::rtcp::Packet>]) -> Option<u8> {
    packets
        .iter()
        .filter_map(|p| p.as_any().downcast_ref::<ReceiverReport>())
        .flat_map(|r| r.reports.iter().map(|b| b.fraction_lost))
        .max()
}

/// On a subscribe connection: marks inbound PLI/FIR for the application, and takes the
/// subscriber's REMB reports as its downlink estimate (webrtc-rs reads REMB but does nothing with
/// it); everything else stays with the interceptor chain.
#[derive(Default)]
pub(crate) struct SubscriberFeedback {
    remb: Estimate,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl SubscriberFeedback {
    fn new(remb: Estimate) -> Self {
        Self {
            remb,
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for SubscriberFeedback {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if let Some(bps) = remb_bps(packets) {
                self.remb.set_remb(bps);
            }
            if let Some(lost) = fraction_lost(packets) {
                self.remb.add_loss(lost);
            }
            if asks_for_keyframe(packets) {
                msg.message.add(Attribute::DeliverToApplication);
            }
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

impl Interceptor for SubscriberFeedback {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extensions(uris: &[&str]) -> Vec<RTCRtpHeaderExtensionParameters> {
        uris.iter()
            .enumerate()
            .map(|(i, uri)| RTCRtpHeaderExtensionParameters {
                uri: (*uri).to_owned(),
                id: i as u16 + 1,
                encrypted: false,
            })
            .collect()
    }

    #[test]
    fn send_times_go_only_where_there_is_no_transport_wide_feedback() {
        assert_eq!(
            abs_send_time_id(&extensions(&[AUDIO_LEVEL_URI, ABS_SEND_TIME_URI])),
            Some(2)
        );
        assert_eq!(
            abs_send_time_id(&extensions(&[ABS_SEND_TIME_URI, TRANSPORT_CC_URI])),
            None
        );
        assert_eq!(abs_send_time_id(&extensions(&[TRANSPORT_CC_URI])), None);
        assert_eq!(
            audio_level_id(&extensions(&[ABS_SEND_TIME_URI, AUDIO_LEVEL_URI])),
            Some(2)
        );
    }

    #[test]
    fn the_estimate_is_twcc_first_then_remb() {
        let e = Estimate::default();
        assert_eq!(e.bps(), None, "nothing reported yet");
        let remb: Vec<Box<dyn rtc::rtcp::Packet>> = vec![
            Box::new(PictureLossIndication::default()),
            Box::new(ReceiverEstimatedMaximumBitrate {
                sender_ssrc: 1,
                bitrate: 400_000.0,
                ssrcs: vec![2],
            }),
        ];
        assert_eq!(remb_bps(&remb), Some(400_000.0));
        assert_eq!(remb_bps(&remb[..1]), None);
        e.set_remb(400_000.0);
        assert_eq!(e.bps(), Some(400_000));
        e.set_remb(1.0);
        assert_eq!(e.bps(), Some(MIN_ESTIMATE_BPS as u64), "a silly low report is bounded");
        e.set_twcc(1_500_000.0);
        assert_eq!(e.bps(), Some(1_500_000), "TWCC wins once it reports");
    }

    #[test]
    fn loss_is_the_highest_reported_since_last_read() {
        use rtc::rtcp::reception_report::ReceptionReport;
        let report = |lost: &[u8]| -> Vec<Box<dyn rtc::rtcp::Packet>> {
            let reports = lost
                .iter()
                .map(|&fraction_lost| ReceptionReport {
                    fraction_lost,
                    ..Default::default()
                })
                .collect();
            vec![Box::new(ReceiverReport {
                reports,
                ..Default::default()
            })]
        };
        assert_eq!(fraction_lost(&report(&[3, 40, 7])), Some(40));
        assert_eq!(fraction_lost(&report(&[])), None);
        let e = Estimate::default();
        e.add_loss(40);
        e.add_loss(7);
        assert_eq!((e.take_loss(), e.take_loss()), (Some(40), None));
        e.add_loss(0);
        assert_eq!(e.take_loss(), Some(0), "a report of no loss is one");
    }
}
