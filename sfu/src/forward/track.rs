//! One published track and the subscribers it is forwarded to.
//!
//! `route` is the per-packet decision: for each subscriber, forward or not, and with which header.
//! It writes into a caller-owned vector so the packet path allocates nothing once warmed up.
//!
//! A simulcast track arrives as several layers (encodings, lowest first); each subscriber receives
//! one of them as one continuous stream. A subscriber's target layer is set by the allocator; the
//! switch happens at the target layer's next keyframe, and until then the layer it had goes on.

use super::codec::VideoCodec;
use super::dedup::SeqWindow;
use super::keyframe::KeyframeThrottle;
use super::layers::{LayerRates, MAX_LAYERS, layer_for_height};
use super::red;
use super::rewrite::{Rewritten, StreamRewriter};
use super::vp8::{self, PictureNumbering, Vp8Patch};
use samtal_protocol::MediaKind;
use std::time::{Duration, Instant};

/// Least time between two keyframe requests to one publisher.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// The subscriber side of a forwarded track. `S` names the subscriber's sender (the media loop's id).
#[derive(Debug)]
pub struct DownTrack<S> {
    pub sink: S,
    rewriter: StreamRewriter,
    /// VP8 picture numbers, continuous across layer switches like the sequence numbers.
    pictures: PictureNumbering,
    payload_type: Option<u8>,
    /// The subscriber's payload type for RED, when it takes the publisher's RED packets as they
    /// are; otherwise it gets their primary blocks under `payload_type`.
    red_payload_type: Option<u8>,
    /// The subscriber's ids for the header extensions the SFU writes.
    extensions: ExtensionIds,
    /// The layer being forwarded; `None` until the first keyframe of the target (and after a
    /// pause or mute, until the next one).
    current: Option<u8>,
    /// The layer the allocator chose; `None` gives this subscriber nothing (no room in its
    /// bandwidth, or a tile it does not show).
    target: Option<u8>,
    /// Withheld from this subscriber (a participant who opted out of transcription, toward the
    /// transcription service): nothing is forwarded, the stream continues without a gap afterwards.
    withheld: bool,
    /// Paused for this subscriber (a camera outside its last-N): nothing is forwarded; video resumes
    /// at a keyframe, without a sequence gap.
    paused: bool,
}

/// What to send for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward<S> {
    pub sink: S,
    pub header: Rewritten,
    pub payload_type: u8,
    /// Where the forwarded payload starts in the incoming one: 0, or the primary block of a RED
    /// packet for a subscriber that does not take RED.
    pub payload_start: usize,
    /// Where it ends: the payload's end, or the end of a RED packet's redundant block recovered as
    /// a packet of its own.
    pub payload_end: usize,
    /// A packet lost before the server, recovered from the redundancy of the next (RED): sent
    /// without the marker bit.
    pub recovered: bool,
    /// The subscriber's ids for the header extensions to write into the forwarded header.
    pub extensions: ExtensionIds,
    /// New VP8 picture numbers to write into a copy of the payload (`None`: forward it as it is).
    pub vp8: Option<Vp8Patch>,
}

/// A subscriber's ids for the header extensions the SFU writes into forwarded packets (`None`:
/// not negotiated on that subscriber's connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtensionIds {
    /// RFC 6464 audio level: the publisher's, passed on (audio).
    pub audio_level: Option<u8>,
    /// abs-send-time: the SFU's send time, for subscribers that estimate their downlink themselves
    /// and report it by REMB (video).
    pub abs_send_time: Option<u8>,
}

/// One incoming packet, as `route` needs it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The simulcast layer (0 for a plain track).
    pub layer: u8,
    pub seq: u16,
    pub ts: u32,
    pub payload_type: u8,
    pub payload: &'a [u8],
}

/// A publisher's RED format: the payload type of its RED packets, and that of the codec their
/// blocks carry (Opus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedFormat {
    pub red: u8,
    pub primary: u8,
}

impl<S> DownTrack<S> {
    /// Waiting for a keyframe of the target layer before anything more (or other) is forwarded.
    fn switching(&self) -> bool {
        self.target.is_some() && self.current != self.target
    }
}

#[derive(Debug)]
pub struct PublishedTrack<S> {
    kind: MediaKind,
    video_codec: Option<VideoCodec>,
    clock_rate: u32,
    muted: bool,
    /// Simulcast layers (1 for a plain track).
    layers: u8,
    rates: LayerRates,
    /// Each layer's sequence numbers already routed: a packet that comes twice (a retransmission
    /// of one that was not lost after all) is routed once.
    seen: [SeqWindow; MAX_LAYERS],
    /// Height of the top layer's pictures, from its last keyframe (VP8).
    top_height: Option<u32>,
    /// Layer switches made (a subscriber's forwarded layer changed).
    switches: u64,
    keyframes: KeyframeThrottle,
    /// Set when the publisher sends RED (audio).
    red: Option<RedFormat>,
    /// The newest RED packet routed (`None` at the start and after a mute): packets between it and
    /// the next one were lost before the server, and may be recovered from that one's redundancy.
    red_last: Option<u16>,
    down: Vec<DownTrack<S>>,
}

impl<S: Copy + PartialEq> PublishedTrack<S> {
    /// For a well-formed RED packet: its redundant blocks, and for each, how many packets back its
    /// own packet was (`Some` only for packets that never reached the server since the last RED
    /// packet routed, each now marked routed).
    fn lost_in_red(
        &mut self,
        packet: Incoming<'_>,
        is_red: bool,
    ) -> ([red::Block; red::MAX_REDUNDANT], [Option<u16>; red::MAX_REDUNDANT]) {
        let empty = red::Block {
            payload_type: 0,
            timestamp_offset: 0,
            start: 0,
            end: 0,
        };
        let (mut blocks, mut recover) = ([empty; red::MAX_REDUNDANT], [None; red::MAX_REDUNDANT]);
        let (Some(format), true) = (self.red, is_red) else {
            return (blocks, recover);
        };
        let last = self.red_last.replace(packet.seq);
        let Some(last) = last else {
            return (blocks, recover);
        };
        let n = red::redundant(packet.payload, &mut blocks);
        for (j, block) in blocks[..n].iter().enumerate() {
            // Browsers repeat the packets right before, one frame each: block j of n is n - j back.
            let distance = (n - j) as u16;
            let lost = packet.seq.wrapping_sub(distance);
            let after_last = lost.wrapping_sub(last) as i16 > 0;
            if block.payload_type == format.primary
                && block.end > block.start
                && after_last
                && self.seen.get_mut(packet.layer as usize).is_some_and(|w| w.insert(lost))
            {
                recover[j] = Some(distance);
            }
        }
        (blocks, recover)
    }

    pub fn new(kind: MediaKind, mime_type: &str, clock_rate: u32) -> Self {
        let video_codec = (kind == MediaKind::Video).then(|| VideoCodec::from_mime(mime_type));
        Self {
            kind,
            video_codec,
            clock_rate,
            muted: false,
            layers: 1,
            rates: LayerRates::default(),
            seen: Default::default(),
            top_height: None,
            switches: 0,
            keyframes: KeyframeThrottle::new(KEYFRAME_INTERVAL),
            red: None,
            red_last: None,
            down: Vec::new(),
        }
    }

    pub fn kind(&self) -> MediaKind {
        self.kind
    }

    /// Declares a simulcast track of `layers` encodings (lowest first, at most [`MAX_LAYERS`]).
    /// Subscribers start on the highest until the allocator says otherwise.
    pub fn set_layers(&mut self, layers: u8) {
        self.layers = layers.clamp(1, MAX_LAYERS as u8);
        for d in &mut self.down {
            d.target = d.target.map(|t| t.min(self.layers - 1));
        }
    }

    /// The publisher's RED format, when it negotiated RED.
    pub fn set_red(&mut self, red: Option<RedFormat>) {
        self.red = red;
    }

    pub fn red(&self) -> Option<RedFormat> {
        self.red
    }

    pub fn layers(&self) -> u8 {
        self.layers
    }

    /// Incoming bitrate per layer, measured.
    pub fn rates(&self) -> &LayerRates {
        &self.rates
    }

    pub fn rates_mut(&mut self) -> &mut LayerRates {
        &mut self.rates
    }

    /// Layer switches made so far, over all subscribers.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// The layer that covers a tile `height` device pixels high (`None` for 0: not shown), from
    /// the top layer's height as its keyframes tell (720 until one was seen).
    pub fn layer_for_tile(&self, height: u32) -> Option<u8> {
        layer_for_height(height, self.top_height.unwrap_or(720), self.layers)
    }

    /// Codecs whose keyframes are recognised: subscribers start and switch layers only at one.
    fn waits_for_keyframes(&self) -> bool {
        self.video_codec.is_some_and(|c| c != VideoCodec::Other)
    }

    pub fn subscribers(&self) -> impl Iterator<Item = S> + '_ {
        self.down.iter().map(|d| d.sink)
    }

    /// Adds a subscriber that will receive this track as `out_ssrc`. Video subscribers wait for a
    /// keyframe; returns true when a keyframe request should go to the publisher now.
    pub fn add_subscriber(&mut self, sink: S, out_ssrc: u32, now: Instant) -> bool {
        let waits = self.waits_for_keyframes();
        let top = self.layers - 1;
        self.down.push(DownTrack {
            sink,
            rewriter: StreamRewriter::new(out_ssrc, self.clock_rate),
            pictures: PictureNumbering::default(),
            payload_type: None,
            red_payload_type: None,
            extensions: ExtensionIds::default(),
            current: (!waits).then_some(top),
            target: Some(top),
            withheld: false,
            paused: false,
        });
        waits && self.keyframes.request(now)
    }

    /// The layer the allocator chose for one subscriber (`None`: nothing). Returns true when a
    /// keyframe request should go to the publisher now (the switch waits for one).
    pub fn set_target(&mut self, sink: S, target: Option<u8>, now: Instant) -> bool {
        let top = self.layers - 1;
        let waits = self.waits_for_keyframes();
        let Some(d) = self.down.iter_mut().find(|d| d.sink == sink) else {
            return false;
        };
        let target = target.map(|t| t.min(top));
        if d.target == target {
            return false;
        }
        d.target = target;
        if target.is_none() && waits {
            // Stopped: whatever layer comes back starts at a keyframe.
            d.current = None;
        }
        if !waits {
            // Nothing to wait for: the next packet of the target layer continues the stream.
            return false;
        }
        d.switching() && !self.muted && !d.paused && self.keyframes.request(now)
    }

    /// The layer chosen for a subscriber, and the one it receives now.
    pub fn target(&self, sink: S) -> Option<(Option<u8>, Option<u8>)> {
        self.down.iter().find(|d| d.sink == sink).map(|d| (d.target, d.current))
    }

    /// Layers some subscriber receives or waits for, as a bit set (bit `i`: layer `i`). The rest
    /// need not be sent by the publisher at all.
    pub fn wanted_layers(&self) -> u8 {
        self.down
            .iter()
            .filter(|d| !d.paused && !d.withheld)
            .flat_map(|d| [d.target, d.current.filter(|_| d.target.is_some())])
            .flatten()
            .fold(0, |mask, layer| mask | 1 << layer)
    }

    /// Layers a keyframe is needed on now: the targets of subscribers waiting to start or switch.
    pub fn keyframe_layers(&self) -> u8 {
        self.down
            .iter()
            .filter(|d| !d.paused && !d.withheld && d.switching())
            .filter_map(|d| d.target)
            .fold(0, |mask, layer| mask | 1 << layer)
    }

    pub fn remove_subscriber(&mut self, sink: S) {
        self.down.retain(|d| d.sink != sink);
    }

    /// The payload type this codec has on the subscriber's connection, once negotiated and
    /// connected; `None` holds the subscriber back (video keeps waiting for a keyframe).
    pub fn set_payload_type(&mut self, sink: S, payload_type: Option<u8>) {
        if let Some(d) = self.down.iter_mut().find(|d| d.sink == sink) {
            d.payload_type = payload_type;
        }
    }

    /// The subscriber's payload type for RED when it takes the publisher's RED packets as they are
    /// (`None`: it gets their primary blocks).
    pub fn set_red_payload_type(&mut self, sink: S, payload_type: Option<u8>) {
        if let Some(d) = self.down.iter_mut().find(|d| d.sink == sink) {
            d.red_payload_type = payload_type;
        }
    }

    /// The subscriber's ids for the header extensions the SFU writes.
    pub fn set_extension_ids(&mut self, sink: S, ids: ExtensionIds) {
        if let Some(d) = self.down.iter_mut().find(|d| d.sink == sink) {
            d.extensions = ids;
        }
    }

    /// Withholds the track from one subscriber (or forwards it again).
    pub fn set_withheld(&mut self, sink: S, withheld: bool) {
        if let Some(d) = self.down.iter_mut().find(|d| d.sink == sink) {
            d.withheld = withheld;
        }
    }

    /// Pauses the track toward one subscriber or resumes it. Resumed video waits for a keyframe;
    /// returns true when a keyframe request should go to the publisher now.
    pub fn set_paused(&mut self, sink: S, paused: bool, now: Instant) -> bool {
        let is_video = self.waits_for_keyframes();
        let Some(d) = self.down.iter_mut().find(|d| d.sink == sink) else {
            return false;
        };
        if d.paused == paused {
            return false;
        }
        d.paused = paused;
        if paused || !is_video {
            return false;
        }
        d.current = None;
        !self.muted && d.target.is_some() && self.keyframes.request(now)
    }

    pub fn is_paused(&self, sink: S) -> bool {
        self.down.iter().any(|d| d.sink == sink && d.paused)
    }

    pub fn payload_type(&self, sink: S) -> Option<u8> {
        self.down.iter().find(|d| d.sink == sink).and_then(|d| d.payload_type)
    }

    pub fn is_muted(&self) -> bool {
        self.muted
    }

    /// A muted track is not forwarded. Unmuting video waits for a fresh keyframe; returns true when
    /// a keyframe request should go out now.
    pub fn set_muted(&mut self, muted: bool, now: Instant) -> bool {
        if self.muted == muted {
            return false;
        }
        self.muted = muted;
        // Redundancy after an unmute may hold audio from while muted: never recovered.
        self.red_last = None;
        let is_video = self.waits_for_keyframes();
        for d in &mut self.down {
            d.rewriter.skip();
            if !muted && is_video {
                d.current = None;
            }
        }
        !muted && is_video && self.keyframes.request(now)
    }

    /// A subscriber lost picture (PLI or FIR). Returns true when a request should go out now.
    pub fn keyframe_requested(&mut self, now: Instant) -> bool {
        self.kind == MediaKind::Video && self.keyframes.request(now)
    }

    /// Timer: a folded keyframe request became due, or subscribers still wait for a keyframe.
    pub fn poll_keyframe(&mut self, now: Instant) -> bool {
        if self.keyframes.poll(now) {
            return true;
        }
        !self.muted && self.keyframe_layers() != 0 && self.keyframes.request(now)
    }

    pub fn keyframe_deadline(&self) -> Option<Instant> {
        self.keyframes.deadline()
    }

    /// Decides, for one incoming packet, what each subscriber gets. Appends to `out`; returns
    /// true when the packet was routed before (a duplicate or a needless retransmission) and goes
    /// to nobody. A subscriber that started after the first copy could not use it either: its
    /// stream began at a later keyframe.
    pub fn route(&mut self, packet: Incoming<'_>, now: Instant, out: &mut Vec<Forward<S>>) -> bool {
        let Incoming {
            layer,
            seq,
            ts,
            payload,
            ..
        } = packet;
        self.rates.add(layer, payload.len(), now);
        if self.muted {
            return false;
        }
        if self.seen.get_mut(layer as usize).is_some_and(|w| !w.insert(seq)) {
            return true;
        }
        let keyframe = self.video_codec.and_then(|c| c.starts_keyframe(payload));
        let pictures = (self.video_codec == Some(VideoCodec::Vp8)).then(|| vp8::numbers(payload));
        if keyframe == Some(true)
            && layer + 1 == self.layers
            && let Some((_, height)) = self.video_codec.and_then(|c| c.keyframe_size(payload))
        {
            self.top_height = Some(u32::from(height));
        }
        // A RED packet: `Some(start of its primary block)`, `Some(None)` when it has no usable one.
        let red_primary = self.red.filter(|f| f.red == packet.payload_type).map(|f| {
            red::primary(payload)
                .filter(|&(pt, _)| pt == f.primary)
                .map(|(_, start)| start)
        });
        let (blocks, recover) = self.lost_in_red(packet, red_primary.is_some());
        for d in &mut self.down {
            // No payload type: not negotiated or not connected yet; a keyframe now would be lost.
            let Some(payload_type) = d
                .payload_type
                .filter(|_| !d.withheld && !d.paused && d.target.is_some())
            else {
                d.rewriter.skip();
                continue;
            };
            if d.target == Some(layer) && d.current != d.target && keyframe != Some(false) {
                // Start, or switch to the target layer: at its keyframe (or at once for codecs
                // whose keyframes are not recognised), continuing the subscriber's numbering.
                if d.current.is_some() {
                    d.rewriter.skip();
                    self.switches += 1;
                }
                d.current = Some(layer);
            }
            if d.current != Some(layer) {
                continue;
            }
            let (payload_type, payload_start) = match (red_primary, d.red_payload_type) {
                (None, _) => (payload_type, 0),
                (Some(_), Some(red)) => (red, 0),
                (Some(Some(start)), None) => (payload_type, start),
                // Nothing this subscriber can decode: a lost packet to it.
                (Some(None), None) => continue,
            };
            if payload_start > 0 {
                // Plain Opus to this subscriber: first what the redundancy recovers, oldest first.
                for (distance, block) in recover.iter().zip(&blocks).filter_map(|(r, b)| Some(((*r)?, b))) {
                    let ts = ts.wrapping_sub(block.timestamp_offset);
                    if let Some(header) = d.rewriter.rewrite(seq.wrapping_sub(distance), ts, now) {
                        out.push(Forward {
                            sink: d.sink,
                            header,
                            payload_type,
                            payload_start: block.start,
                            payload_end: block.end,
                            recovered: true,
                            extensions: ExtensionIds::default(),
                            vp8: None,
                        });
                    }
                }
            }
            if let Some(header) = d.rewriter.rewrite(seq, ts, now) {
                out.push(Forward {
                    sink: d.sink,
                    header,
                    payload_type,
                    payload_start,
                    payload_end: payload.len(),
                    recovered: false,
                    extensions: d.extensions,
                    vp8: pictures.and_then(|n| d.pictures.rewrite(layer, n)),
                });
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An incoming packet of payload type 96.
    fn pkt(layer: u8, seq: u16, ts: u32, payload: &[u8]) -> Incoming<'_> {
        Incoming {
            layer,
            seq,
            ts,
            payload_type: 96,
            payload,
        }
    }

    const KEY: &[u8] = &[0x10, 0x00, 0x9d];
    const DELTA: &[u8] = &[0x10, 0x01, 0x9d];
    const MIDDLE: &[u8] = &[0x00, 0xff];

    fn routed(t: &mut PublishedTrack<u32>, seq: u16, payload: &[u8], now: Instant) -> Vec<Forward<u32>> {
        let mut out = Vec::new();
        t.route(pkt(0, seq, seq as u32 * 3000, payload), now, &mut out);
        out
    }

    /// An Opus track sent as RED, with subscriber 1 taking RED as it comes and 2 plain Opus.
    fn red_track(now: Instant) -> PublishedTrack<u32> {
        let mut t = PublishedTrack::new(MediaKind::Audio, "audio/opus", 48_000);
        t.set_red(Some(RedFormat { red: 63, primary: 111 }));
        for sink in [1, 2] {
            t.add_subscriber(sink, 1000 + sink, now);
            t.set_payload_type(sink, Some(111));
        }
        t.set_red_payload_type(1, Some(63));
        t
    }

    #[test]
    fn red_goes_whole_to_subscribers_that_take_it_and_as_its_primary_block_to_the_others() {
        let now = Instant::now();
        let mut t = red_track(now);
        // One redundant block (3 bytes, 15 ticks old) and the primary.
        let red = [0x80 | 111, 0x00, 0x3c, 0x03, 111, b'o', b'l', b'd', b'n', b'e', b'w'];
        let mut out = Vec::new();
        let packet = |seq, payload_type, payload| Incoming {
            layer: 0,
            seq,
            ts: u32::from(seq) * 960,
            payload_type,
            payload,
        };
        t.route(packet(1, 63, &red), now, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|f| (f.sink, f.payload_type, &red[f.payload_start..]))
            .collect();
        assert_eq!(got, [(1, 63, &red[..]), (2, 111, &b"new"[..])]);
        // Plain Opus from the same publisher goes to both as Opus.
        out.clear();
        t.route(packet(2, 111, b"opus"), now, &mut out);
        assert!(
            out.iter().all(|f| (f.payload_type, f.payload_start) == (111, 0)),
            "{out:?}"
        );
        // A RED packet whose primary is not Opus (or is malformed) reaches only the RED subscriber;
        // the other sees a lost packet, not a gap-free stream.
        out.clear();
        t.route(packet(3, 63, &[13, 0]), now, &mut out);
        assert_eq!(out.iter().map(|f| f.sink).collect::<Vec<_>>(), [1]);
        out.clear();
        t.route(packet(4, 63, &red), now, &mut out);
        let seqs: Vec<_> = out.iter().map(|f| (f.sink, f.header.sequence_number)).collect();
        assert_eq!(seqs, [(1, 4), (2, 4)], "subscriber 2 sees packet 3 as lost");
    }

    #[test]
    fn a_packet_lost_before_the_server_is_recovered_from_red_for_subscribers_without_it() {
        let now = Instant::now();
        let mut t = red_track(now);
        // Packet `seq` repeats packet seq - 1 (960 ticks before) as its redundant block.
        let red = |seq: u16| {
            let (old, new) = (seq.wrapping_sub(1) as u8, seq as u8);
            // F=1, Opus, timestamp offset 960 and length 1 (14 + 10 bits), then the primary's header.
            vec![0x80 | 111, 0x0f, 0x00, 0x01, 111, old, new]
        };
        let mut out = Vec::new();
        let route = |t: &mut PublishedTrack<u32>, seq: u16, out: &mut Vec<Forward<u32>>| {
            let payload = red(seq);
            out.clear();
            let incoming = Incoming {
                layer: 0,
                seq,
                ts: u32::from(seq) * 960,
                payload_type: 63,
                payload: &payload,
            };
            t.route(incoming, now, out);
            out.iter()
                .map(|f| {
                    let data = payload[f.payload_start..f.payload_end].to_vec();
                    (f.sink, f.header.sequence_number, f.header.timestamp, data, f.recovered)
                })
                .collect::<Vec<_>>()
        };
        let first = route(&mut t, 10, &mut out);
        assert_eq!(first.len(), 2, "the first packet recovers nothing: {first:?}");
        let (seq10, ts10) = (first[1].1, first[1].2);
        route(&mut t, 11, &mut out);
        // Packet 12 never arrives; 13 carries it.
        let got = route(&mut t, 13, &mut out);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!((got[0].0, got[0].1), (1, 13), "the RED subscriber gets the RED packet");
        assert_eq!(
            got[1],
            (2, seq10.wrapping_add(2), ts10 + 2 * 960, vec![12], true),
            "packet 12 from the redundancy, in its place"
        );
        assert_eq!(got[2], (2, seq10.wrapping_add(3), ts10 + 3 * 960, vec![13], false));
        // Packet 12 arriving late after all is not sent twice.
        let late = route(&mut t, 12, &mut out);
        assert!(late.is_empty(), "{late:?}");
        // After a mute, the redundancy may hold audio from while muted: nothing is recovered.
        t.set_muted(true, now);
        t.set_muted(false, now);
        route(&mut t, 20, &mut out);
        let after = route(&mut t, 22, &mut out);
        assert_eq!(
            after.iter().filter(|f| f.4).count(),
            1,
            "21 is a gap after the unmute: {after:?}"
        );
        t.set_muted(true, now);
        t.set_muted(false, now);
        let unmuted = route(&mut t, 30, &mut out);
        assert!(unmuted.iter().all(|f| !f.4), "{unmuted:?}");
    }

    #[test]
    fn audio_goes_to_every_subscriber_with_their_own_ssrc_and_payload_type() {
        let now = Instant::now();
        let mut t = PublishedTrack::new(MediaKind::Audio, "audio/opus", 48_000);
        assert!(!t.add_subscriber(1, 1111, now), "audio needs no keyframe");
        t.add_subscriber(2, 2222, now);
        t.set_payload_type(1, Some(111));
        t.set_payload_type(2, Some(109));
        let out = routed(&mut t, 7, b"opus", now);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].sink, out[0].header.ssrc, out[0].payload_type), (1, 1111, 111));
        assert_eq!((out[1].sink, out[1].header.ssrc, out[1].payload_type), (2, 2222, 109));
    }

    #[test]
    fn video_subscriber_starts_at_a_keyframe_and_asks_for_one() {
        let now = Instant::now();
        let mut t = PublishedTrack::new(MediaKind::Video, "video/VP8", 90_000);
        assert!(
            t.add_subscriber(1, 10, now),
            "a new video subscriber triggers a keyframe request"
        );
        t.set_payload_type(1, Some(96));
        assert!(routed(&mut t, 1, DELTA, now).is_empty());
        assert!(routed(&mut t, 2, MIDDLE, now).is_empty());
        let first = routed(&mut t, 3, KEY, now);
        assert_eq!(first.len(), 1);
        let next = routed(&mut t, 4, MIDDLE, now);
        assert_eq!(
            next[0].header.sequence_number,
            first[0].header.sequence_number.wrapping_add(1)
        );
        assert_eq!(routed(&mut t, 5, DELTA, now).len(), 1);
    }

    #[test]
    fn a_keyframe_before_the_subscriber_can_receive_is_not_taken_as_its_start() {
        let now = Instant::now();
        let mut t = PublishedTrack::new(MediaKind::Video, "video/VP8", 90_000);
        t.add_subscriber(1, 10, now);
        assert!(routed(&mut t, 1, KEY, now).is_empty(), "not connected yet");
        t.set_payload_type(1, Some(96));
        assert!(routed(&mut t, 2, DELTA, now).is_empty(), "still waiting for a keyframe");
        assert_eq!(routed(&mut t, 3, KEY, now).len(), 1);
    }

    #[test]
    fn keyframe_requests_are_throttled_and_repeated_while_waiting() {
        let now = Instant::now();
        let mut t = PublishedTrack::<u32>::new(MediaKind::Video, "video/VP8", 90_000);
        assert!(t.add_subscriber(1, 10, now));
        assert!(!t.add_subscriber(2, 20, now + Duration::from_millis(100)), "folded");
        assert!(!t.keyframe_requested(now + Duration::from_millis(200)), "folded");
        assert!(t.poll_keyframe(now + KEYFRAME_INTERVAL), "folded request fires");
        // Still no keyframe arrived: ask again after another interval.
        assert!(!t.poll_keyframe(now + KEYFRAME_INTERVAL + Duration::from_millis(1)));
        assert!(t.poll_keyframe(now + 2 * KEYFRAME_INTERVAL + Duration::from_millis(1)));
    }

    #[test]
    fn muted_track_forwards_nothing_and_resumes_without_sequence_gap() {
        let now = Instant::now();
        let mut t = PublishedTrack::new(MediaKind::Audio, "audio/opus", 48_000);
        t.add_subscriber(1, 10, now);
        t.set_payload_type(1, Some(111));
        let before = routed(&mut t, 1, b"a", now)[0];
        t.set_muted(true, now);
        assert!(routed(&mut t, 2, b"a", now).is_empty());
        assert!(routed(&mut t, 3, b"a", now).is_empty());
        t.set_muted(false, now + Duration::from_millis(60));
        let after = routed(&mut t, 4, b"a", now + Duration::from_millis(60))[0];
        assert_eq!(
            after.header.sequence_number,
            before.header.sequence_number.wrapping_add(1)
        );
    }

    #[test]
    fn removed_subscriber_gets_nothing_and_unknown_payload_type_is_held_back() {
        let now = Instant::now();
        let mut t = PublishedTrack::new(MediaKind::Audio, "audio/opus", 48_000);
        t.add_subscriber(1, 10, now);
        t.add_subscriber(2, 20, now);
        t.set_payload_type(2, Some(111));
        let out = routed(&mut t, 1, b"a", now);
        assert_eq!(
            out.iter().map(|f| f.sink).collect::<Vec<_>>(),
            vec![2],
            "1 has no payload type yet"
        );
        t.remove_subscriber(2);
        assert!(routed(&mut t, 2, b"a", now).is_empty());
        assert_eq!(t.subscribers().count(), 1);
    }

    #[test]
    fn a_paused_video_subscriber_resumes_at_a_keyframe_without_a_gap() {
        let now = Instant::now();
        let mut t = PublishedTrack::new(MediaKind::Video, "video/VP8", 90_000);
        t.add_subscriber(1, 10, now);
        t.add_subscriber(2, 20, now);
        t.set_payload_type(1, Some(96));
        t.set_payload_type(2, Some(96));
        let first = routed(&mut t, 1, KEY, now);
        assert_eq!(first.len(), 2);
        assert!(!t.set_paused(2, true, now), "pausing asks for nothing");
        assert!(t.is_paused(2) && !t.is_paused(1));
        for seq in 2..10 {
            let sinks: Vec<u32> = routed(&mut t, seq, DELTA, now).iter().map(|f| f.sink).collect();
            assert_eq!(sinks, vec![1], "seq {seq}");
        }
        let later = now + KEYFRAME_INTERVAL;
        assert!(
            t.set_paused(2, false, later),
            "resuming video asks the publisher for a keyframe"
        );
        assert!(!t.set_paused(2, false, later), "no change, no request");
        assert_eq!(routed(&mut t, 10, DELTA, later).len(), 1, "2 waits for the keyframe");
        let out = routed(&mut t, 11, KEY, later);
        let two = out.iter().find(|f| f.sink == 2).expect("2 resumes at the keyframe");
        let before = first.iter().find(|f| f.sink == 2).unwrap();
        assert_eq!(
            two.header.sequence_number,
            before.header.sequence_number.wrapping_add(1),
            "no sequence gap across the pause"
        );
    }

    #[test]
    fn a_withheld_subscriber_gets_nothing_and_then_continues_without_a_gap() {
        let now = Instant::now();
        let mut t = PublishedTrack::new(MediaKind::Audio, "audio/opus", 48_000);
        t.add_subscriber(1, 1111, now);
        t.add_subscriber(2, 2222, now);
        t.set_payload_type(1, Some(111));
        t.set_payload_type(2, Some(111));
        let first = routed(&mut t, 10, b"opus", now);
        t.set_withheld(2, true);
        for seq in 11..20 {
            let out = routed(&mut t, seq, b"opus", now);
            assert_eq!(out.iter().map(|f| f.sink).collect::<Vec<_>>(), vec![1], "seq {seq}");
        }
        t.set_withheld(2, false);
        let out = routed(&mut t, 20, b"opus", now);
        let seq_of = |out: &[Forward<u32>], sink| out.iter().find(|f| f.sink == sink).unwrap().header.sequence_number;
        assert_eq!(
            seq_of(&out, 2),
            seq_of(&first, 2).wrapping_add(1),
            "no sequence gap for the withheld subscriber"
        );
        assert_eq!(seq_of(&out, 1), seq_of(&first, 1).wrapping_add(10));
    }

    fn layered(t: &mut PublishedTrack<u32>, layer: u8, seq: u16, payload: &[u8], now: Instant) -> Vec<Forward<u32>> {
        let mut out = Vec::new();
        t.route(pkt(layer, seq, seq as u32 * 3000, payload), now, &mut out);
        out
    }

    #[test]
    fn simulcast_layers_switch_only_at_a_keyframe_of_the_target_without_a_gap() {
        let now = Instant::now();
        let mut t = PublishedTrack::new(MediaKind::Video, "video/VP8", 90_000);
        t.set_layers(3);
        t.add_subscriber(1, 10, now);
        t.set_payload_type(1, Some(96));
        assert_eq!(t.target(1), Some((Some(2), None)), "starts on the top layer");
        // Keyframes of lower layers do not start it; the top layer's does.
        assert!(layered(&mut t, 0, 100, KEY, now).is_empty());
        let first = layered(&mut t, 2, 5000, KEY, now);
        assert_eq!(first.len(), 1);
        assert!(
            layered(&mut t, 0, 101, DELTA, now).is_empty(),
            "other layers are not forwarded"
        );
        assert_eq!(layered(&mut t, 2, 5001, DELTA, now).len(), 1);
        // The allocator lowers it: the top layer goes on until layer 0's keyframe.
        let later = now + KEYFRAME_INTERVAL;
        assert!(t.set_target(1, Some(0), later), "a switch asks for a keyframe");
        assert_eq!(t.keyframe_layers(), 0b001);
        assert_eq!(t.wanted_layers(), 0b101, "both layers are needed until the switch");
        assert!(layered(&mut t, 0, 102, DELTA, later).is_empty());
        let old = layered(&mut t, 2, 5002, DELTA, later);
        assert_eq!(old.len(), 1, "the old layer continues meanwhile");
        let switched = layered(&mut t, 0, 103, KEY, later);
        assert_eq!(switched.len(), 1);
        assert_eq!(
            switched[0].header.sequence_number,
            old[0].header.sequence_number.wrapping_add(1),
            "no sequence gap across the switch"
        );
        assert_eq!(switched[0].header.ssrc, 10);
        assert!(layered(&mut t, 2, 5003, KEY, later).is_empty(), "the old layer stops");
        assert_eq!(
            layered(&mut t, 0, 104, DELTA, later)[0].header.sequence_number,
            switched[0].header.sequence_number.wrapping_add(1)
        );
        assert_eq!(t.switches(), 1);
        assert_eq!((t.wanted_layers(), t.keyframe_layers()), (0b001, 0));
    }

    /// A VP8 packet starting a picture, with a 15-bit PictureID and a TL0PICIDX.
    fn vp8(picture_id: u16, tl0: u8, key: bool) -> Vec<u8> {
        let tag = if key { 0x00 } else { 0x01 };
        vec![
            0x90,
            0xc0,
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
            tl0,
            tag,
            0x9d,
        ]
    }

    /// The picture numbers a subscriber reads in a forwarded packet.
    fn pictures_out(f: &Forward<u32>, payload: &[u8]) -> (u16, u8) {
        let mut p = payload.to_vec();
        if let Some(patch) = f.vp8 {
            patch.apply(&mut p);
        }
        let n = vp8::numbers(&p);
        (n.picture_id.unwrap().0, n.tl0_pic_idx.unwrap().0)
    }

    #[test]
    fn vp8_picture_numbers_continue_across_a_layer_switch() {
        let now = Instant::now();
        let mut t = PublishedTrack::new(MediaKind::Video, "video/VP8", 90_000);
        t.set_layers(2);
        t.add_subscriber(1, 10, now);
        t.set_payload_type(1, Some(96));
        let (key, delta) = (vp8(7000, 40, true), vp8(7001, 41, false));
        let first = layered(&mut t, 1, 10, &key, now);
        assert_eq!(first[0].vp8, None, "numbers go out unchanged before any switch");
        assert_eq!(pictures_out(&first[0], &key), (7000, 40));
        assert_eq!(
            pictures_out(&layered(&mut t, 1, 11, &delta, now)[0], &delta),
            (7001, 41)
        );
        t.set_target(1, Some(0), now + KEYFRAME_INTERVAL);
        // Layer 0 numbers its pictures from elsewhere entirely.
        let low_key = vp8(123, 200, true);
        let switched = layered(&mut t, 0, 900, &low_key, now);
        assert_eq!(
            pictures_out(&switched[0], &low_key),
            (7002, 42),
            "continues after the last picture sent"
        );
        let low_delta = vp8(124, 200, false);
        assert_eq!(
            pictures_out(&layered(&mut t, 0, 901, &low_delta, now)[0], &low_delta),
            (7003, 42)
        );
    }

    #[test]
    fn a_subscriber_without_a_layer_gets_nothing_and_resumes_at_a_keyframe() {
        let now = Instant::now();
        let mut t = PublishedTrack::new(MediaKind::Video, "video/VP8", 90_000);
        t.set_layers(2);
        t.add_subscriber(1, 10, now);
        t.add_subscriber(2, 20, now);
        t.set_payload_type(1, Some(96));
        t.set_payload_type(2, Some(96));
        assert_eq!(layered(&mut t, 1, 1, KEY, now).len(), 2);
        assert!(!t.set_target(2, None, now), "pausing asks for nothing");
        assert_eq!(
            layered(&mut t, 1, 2, DELTA, now)
                .iter()
                .map(|f| f.sink)
                .collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(t.wanted_layers(), 0b10);
        let later = now + KEYFRAME_INTERVAL;
        assert!(t.set_target(2, Some(0), later));
        assert!(layered(&mut t, 0, 50, DELTA, later).is_empty());
        let out = layered(&mut t, 0, 51, KEY, later);
        assert_eq!(out.iter().map(|f| f.sink).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn layer_rates_are_measured_from_routed_packets() {
        let now = Instant::now();
        let mut t = PublishedTrack::<u32>::new(MediaKind::Video, "video/VP8", 90_000);
        t.set_layers(2);
        for i in 0..50u16 {
            layered(
                &mut t,
                1,
                i,
                &[0u8; 1000],
                now + Duration::from_millis(u64::from(i) * 10),
            );
        }
        t.rates_mut().roll(now + Duration::from_millis(500));
        assert_eq!(t.rates().measured(1), Some(800_000));
        assert_eq!(t.rates().measured(0), Some(0));
    }

    #[test]
    fn a_repair_goes_to_whoever_lacks_the_packet_and_a_duplicate_to_nobody() {
        let now = Instant::now();
        let mut t = PublishedTrack::new(MediaKind::Audio, "audio/opus", 48_000);
        t.add_subscriber(1, 10, now);
        t.set_payload_type(1, Some(111));
        let mut out = Vec::new();
        assert!(!t.route(pkt(0, 1, 0, b"a"), now, &mut out));
        assert!(!t.route(pkt(0, 3, 1920, b"c"), now, &mut out));
        // 2 was lost on the way to us; the publisher's retransmission of it is forwarded.
        assert!(!t.route(pkt(0, 2, 960, b"b"), now, &mut out));
        assert_eq!(out.len(), 3);
        // A second retransmission of 2, and a copy of 3, are not.
        assert!(t.route(pkt(0, 2, 960, b"b"), now, &mut out));
        assert!(t.route(pkt(0, 3, 1920, b"c"), now, &mut out));
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[2].header.sequence_number,
            out[0].header.sequence_number.wrapping_add(1)
        );
    }
}
