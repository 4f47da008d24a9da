//! `/metrics`: Prometheus text exposition of signaling counters and the media server's statistics.
//! The SFU's counters are plain atomics; they are read at scrape time by a collector, so the packet
//! path never touches the metrics library.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use samtal_protocol::ErrorCode;
use samtal_sfu::Stats;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    /// Websockets that have not joined a room or registered as a worker yet.
    pub unjoined: Gauge,
    pub messages: Counter,
    /// Server messages dropped because the client did not read them fast enough.
    pub dropped: Counter,
    /// Sessions resumed on a new websocket after theirs dropped.
    pub resumes: Counter,
    pub errors: Family<CodeLabel, Counter>,
    /// 1 while this server drains (starts no new meetings).
    pub draining: Gauge,
    /// Webhook events lost before they reached the store (the queue was full).
    pub webhook_events_lost: Counter,
}

impl Metrics {
    pub fn new(stats: Arc<Stats>) -> Self {
        let mut registry = Registry::with_prefix("samtal");
        let connections = Gauge::default();
        let messages = Counter::default();
        let unjoined = Gauge::default();
        let dropped = Counter::default();
        let resumes = Counter::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let draining = Gauge::default();
        let webhook_events_lost = Counter::default();
        registry.register(
            "draining",
            "1 while this server drains: it starts no new meetings",
            draining.clone(),
        );
        registry.register(
            "webhook_events_lost",
            "Webhook events lost before they were stored, because the queue was full",
            webhook_events_lost.clone(),
        );
        registry.register(
            "websocket_connections",
            "Open signaling websockets",
            connections.clone(),
        );
        registry.register(
            "websocket_unjoined_connections",
            "Open signaling websockets that have not joined yet",
            unjoined.clone(),
        );
        registry.register("signaling_messages", "Signaling messages received", messages.clone());
        registry.register(
            "signaling_dropped_messages",
            "Messages to clients dropped because the client did not read",
            dropped.clone(),
        );
        registry.register(
            "signaling_resumes",
            "Sessions resumed on a new websocket after theirs dropped",
            resumes.clone(),
        );
        registry.register(
            "signaling_errors",
            "Protocol errors sent to clients, by code",
            errors.clone(),
        );
        registry.register_collector(Box::new(MediaCollector(stats)));
        Self {
            registry,
            connections,
            unjoined,
            messages,
            dropped,
            resumes,
            errors,
            draining,
            webhook_events_lost,
        }
    }

    pub fn error(&self, code: ErrorCode) {
        let code = serde_json::to_value(code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.errors.get_or_create(&CodeLabel { code }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

#[derive(Debug)]
struct MediaCollector(Arc<Stats>);

impl Collector for MediaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let gauges = [
            (
                "rooms",
                "Rooms with at least one participant in the media server",
                &s.rooms,
            ),
            ("participants", "Participants in the media server", &s.participants),
            ("peer_connections", "WebRTC peer connections", &s.peer_connections),
            ("tcp_connections", "ICE-TCP connections open", &s.tcp_connections),
            ("tracks", "Published tracks", &s.published_tracks),
            (
                "declared_tracks",
                "Track declarations held from publish offers",
                &s.declared_tracks,
            ),
            (
                "estimated_subscribers",
                "Subscribers whose downlink is estimated from transport-wide congestion feedback",
                &s.estimated_subscribers,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = ConstGauge::new(Stats::get(value) as i64);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let counters = [
            (
                "received_packets",
                "RTP packets received from publishers",
                &s.received_packets,
            ),
            (
                "received_bytes",
                "RTP payload bytes received from publishers",
                &s.received_bytes,
            ),
            (
                "forwarded_packets",
                "RTP packets forwarded to subscribers",
                &s.forwarded_packets,
            ),
            (
                "forwarded_bytes",
                "RTP payload bytes forwarded to subscribers",
                &s.forwarded_bytes,
            ),
            (
                "duplicate_packets_dropped",
                "Publishers' packets not forwarded because they came before (needless retransmissions, duplicates)",
                &s.duplicates_dropped,
            ),
            (
                "tcp_connections_refused",
                "ICE-TCP connections closed at once: over a limit, silent, oversized frames, or not ICE",
                &s.tcp_refused,
            ),
            (
                "red_unwrapped_packets",
                "RED audio packets forwarded as their primary block alone, to subscribers without RED",
                &s.red_unwrapped,
            ),
            (
                "red_recovered_packets",
                "Audio packets lost before the server, recovered from RED redundancy for subscribers without RED",
                &s.red_recovered,
            ),
            (
                "refused_offers",
                "Publish offers refused for their rate or number of media sections",
                &s.refused_offers,
            ),
            (
                "keyframe_requests",
                "Keyframe requests (PLI) sent to publishers",
                &s.keyframe_requests,
            ),
            (
                "dominant_speaker_changes",
                "Times a room's dominant speaker changed",
                &s.speaker_changes,
            ),
            (
                "last_n_video_pauses",
                "Cameras paused toward a subscriber because last-N left them out",
                &s.video_pauses,
            ),
            (
                "video_layer_changes",
                "Times the allocator changed the video layer a subscriber receives of a track",
                &s.layer_changes,
            ),
            (
                "bandwidth_video_pauses",
                "Video tracks paused toward a subscriber because its downlink had no room for them",
                &s.bandwidth_pauses,
            ),
            (
                "bandwidth_probes",
                "Times a subscriber with a receiver-side estimate (REMB) was lent one more layer step to learn whether its link carries it",
                &s.bandwidth_probes,
            ),
            (
                "bandwidth_probe_failures",
                "Bandwidth probes the subscriber's link did not carry (it reported loss, or its estimate fell)",
                &s.bandwidth_probe_failures,
            ),
            (
                "ice_restarts",
                "Subscribe connections the server offered an ICE restart after hearing nothing from them",
                &s.ice_restarts,
            ),
            (
                "dynacast_updates",
                "Times a publisher was told to switch simulcast layers off or on",
                &s.dynacast_updates,
            ),
            ("media_errors", "Media send and forwarding errors", &s.errors),
            (
                "forward_delay_nanoseconds",
                "Sum over forwarded packets of the time from socket read to forwarding",
                &s.forward_delay_nanos,
            ),
        ];
        for (name, help, value) in counters {
            let metric = ConstCounter::new(Stats::get(value));
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        Ok(())
    }
}
