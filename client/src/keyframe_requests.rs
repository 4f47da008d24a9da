//! An interceptor that lets keyframe requests (PLI and FIR) reach the application.
//!
//! webrtc-rs 0.21 ends the inbound RTCP path at the last interceptor unless one marks a packet
//! with `Attribute::DeliverToApplication`. Placed application-most in the publish connection's
//! chain, [`KeyframeRequests`] marks PLI and FIR and drops the rest (the interceptors below it
//! have already acted on receiver reports, NACKs and transport feedback), so
//! `TrackLocal::poll` yields exactly the keyframe requests the server sends.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio;
use rtc::shared::error::Error;

/// Slot of [`KeyframeRequests`] in the chain: above every built-in one (the highest is 13 000).
pub const KEYFRAME_REQUESTS_SLOT: usize = 14_000;

/// Whether an RTCP packet asks for a keyframe.
pub fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// The media SSRCs a keyframe request names (a PLI's media SSRC, a FIR's entries); empty for
/// any other packet. With simulcast, each layer has an SSRC of its own and is asked for alone.
pub fn keyframe_request_ssrcs(packet: &dyn rtc::rtcp::Packet) -> Vec<u32> {
    let any = packet.as_any();
    if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
        return vec![pli.media_ssrc];
    }
    if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
        return fir.fir.iter().map(|e| e.ssrc).collect();
    }
    Vec::new()
}

/// Passes inbound PLI/FIR on to the application and nothing else.
#[derive(Default)]
pub struct KeyframeRequests {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl sansio::Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            packets.retain(|p| is_keyframe_request(p.as_ref()));
            if packets.is_empty() {
                return Ok(());
            }
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::payload_feedbacks::full_intra_request::FirEntry;
    use rtc::rtcp::receiver_report::ReceiverReport;

    #[test]
    fn keyframe_requests_name_their_ssrcs() {
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 7,
        };
        assert!(is_keyframe_request(&pli));
        assert_eq!(keyframe_request_ssrcs(&pli), vec![7]);
        let fir = FullIntraRequest {
            sender_ssrc: 1,
            media_ssrc: 0,
            fir: vec![
                FirEntry {
                    ssrc: 8,
                    sequence_number: 1,
                },
                FirEntry {
                    ssrc: 9,
                    sequence_number: 1,
                },
            ],
        };
        assert!(is_keyframe_request(&fir));
        assert_eq!(keyframe_request_ssrcs(&fir), vec![8, 9]);
        let rr = ReceiverReport::default();
        assert!(!is_keyframe_request(&rr));
        assert!(keyframe_request_ssrcs(&rr).is_empty());
    }
}
