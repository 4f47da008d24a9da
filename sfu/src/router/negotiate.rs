//! Applying a publish offer to a peer connection: set it, answer it, apply the answer, and roll the
//! offer back when any step fails, so that a refused re-offer leaves the connection as it was and
//! the next good offer applies (RFC 9429 §5.7).

use crate::error::{Error, Result};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::sdp::RTCSessionDescription;
use std::time::Instant;

/// The answer's SDP, or why the offer was refused (and rolled back).
pub(crate) fn answer_offer(pc: &mut RTCPeerConnection, sdp: String, now: Instant) -> Result<String> {
    let result = answer(pc, sdp, now);
    if result.is_err()
        && pc.pending_remote_description().is_some()
        && let Err(e) = RTCSessionDescription::rollback(None).and_then(|r| pc.set_remote_description(now, r))
    {
        tracing::warn!("cannot roll back a refused offer: {e}");
    }
    result
}

fn answer(pc: &mut RTCPeerConnection, sdp: String, now: Instant) -> Result<String> {
    let offer = RTCSessionDescription::offer(sdp).map_err(|e| Error::Negotiation(format!("bad offer: {e}")))?;
    pc.set_remote_description(now, offer)
        .map_err(|e| Error::Negotiation(format!("offer rejected: {e}")))?;
    let answer = pc
        .create_answer(None)
        .map_err(|e| Error::Negotiation(format!("cannot answer: {e}")))?;
    pc.set_local_description(now, answer)
        .map_err(|e| Error::Negotiation(format!("cannot apply answer: {e}")))?;
    Ok(pc
        .local_description()
        .ok_or_else(|| Error::Negotiation("no local description".into()))?
        .sdp)
}
