//! Routing an unknown remote address to its peer connection by the USERNAME of its first STUN
//! binding request (`<our ufrag>:<their ufrag>`): every peer connection has its own ufrag.

use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::message::Message;

/// True when the datagram looks like STUN (RFC 7983 demultiplexing: first byte 0..=3).
pub(crate) fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] < 4
}

/// Our ufrag from a STUN binding request's USERNAME, or None if it is not one.
pub(crate) fn local_ufrag(data: &[u8]) -> Option<String> {
    if !is_stun(data) {
        return None;
    }
    let mut msg = Message::new();
    msg.unmarshal_binary(data).ok()?;
    let username = msg.get(ATTR_USERNAME).ok()?;
    let username = std::str::from_utf8(&username).ok()?;
    Some(username.split(':').next()?.to_owned())
}

/// The ICE ufrag of a description (`a=ice-ufrag:`; the first, all sections share it when bundled).
pub(crate) fn description_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|line| line.trim_end().strip_prefix("a=ice-ufrag:"))
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
}
