//! What a publish offer says is still being sent. A client that stops a track (screen share ends)
//! re-offers with that m-section `inactive`/`recvonly`, rejected, or without its `a=msid`; the SFU
//! then unpublishes the track instead of waiting for media that will never come. And which of
//! those tracks come as simulcast layers, in what order.

use crate::forward::layers::MAX_LAYERS;
use std::collections::{HashMap, HashSet};

/// Media sections (`m=` lines) of an SDP, counted without parsing it: what bounds the cost of
/// applying it, checked before it reaches the media thread.
pub(crate) fn media_sections(sdp: &str) -> usize {
    sdp.lines().filter(|l| l.starts_with("m=")).count()
}

/// M-sections that send media.
fn sending_sections(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.split("\nm=").skip(1).filter(|section| {
        let port_zero = section.split_whitespace().nth(1) == Some("0");
        let not_sending = section.lines().any(|l| matches!(l.trim(), "a=inactive" | "a=recvonly"));
        !port_zero && !not_sending
    })
}

/// The section's track id: the second token of its `a=msid:`.
fn track_id(section: &str) -> Option<&str> {
    section
        .lines()
        .find_map(|line| line.trim().strip_prefix("a=msid:")?.split_whitespace().nth(1))
}

/// Track ids (second token of `a=msid:`) of m-sections that send media.
pub(crate) fn sending_track_ids(sdp: &str) -> HashSet<String> {
    sending_sections(sdp).filter_map(track_id).map(str::to_owned).collect()
}

/// For each sending track sent as simulcast, its rids in the order of `a=simulcast:send` (the
/// encodings, lowest first), at most [`MAX_LAYERS`]; rids must be short and alphanumeric.
pub(crate) fn simulcast_rids(sdp: &str) -> HashMap<String, Vec<String>> {
    let mut tracks = HashMap::new();
    for section in sending_sections(sdp) {
        let Some(id) = track_id(section) else { continue };
        let Some(list) = section.lines().find_map(|line| {
            let mut words = line.trim().strip_prefix("a=simulcast:")?.split_whitespace();
            (words.next()? == "send").then(|| words.next()).flatten()
        }) else {
            continue;
        };
        // `q;h;f`, each possibly with alternatives (`a,b`: the first is taken) or paused (`~q`).
        let rids: Vec<String> = list
            .split(';')
            .filter_map(|choice| choice.split(',').next())
            .map(|rid| rid.trim_start_matches('~'))
            .filter(|rid| !rid.is_empty() && rid.len() <= 16 && rid.bytes().all(|b| b.is_ascii_alphanumeric()))
            .take(MAX_LAYERS)
            .map(str::to_owned)
            .collect();
        if rids.len() > 1 {
            tracks.insert(id.to_owned(), rids);
        }
    }
    tracks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sending_sections_count() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=msid:s mic\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\na=msid:s cam\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\na=msid:s screen\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=msid:s old\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n";
        let ids = sending_track_ids(sdp);
        assert_eq!(
            ids,
            ["mic", "cam"].into_iter().map(String::from).collect::<HashSet<_>>()
        );
        assert_eq!(media_sections(sdp), 5);
        assert_eq!(
            media_sections("v=0\r\na=x:m=audio\r\n"),
            0,
            "only lines that start with m= count"
        );
    }

    #[test]
    fn simulcast_rids_in_the_offers_order() {
        let sdp = "v=0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=msid:s mic\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=msid:s cam\r\na=rid:q send\r\na=rid:h send\r\n\
            a=rid:f send\r\na=simulcast:send q;~h;f,x\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=msid:s many\r\na=simulcast:send a;b;c;d;e\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=msid:s odd\r\na=simulcast:send q;h<script>\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\na=msid:s gone\r\na=simulcast:send q;h\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=msid:s recv\r\na=simulcast:recv q;h\r\n";
        let rids = simulcast_rids(sdp);
        let of = |id: &str| rids.get(id).cloned();
        assert_eq!(of("cam"), Some(vec!["q".into(), "h".into(), "f".into()]));
        assert_eq!(of("many").map(|r| r.len()), Some(MAX_LAYERS), "at most three layers");
        assert_eq!(of("odd"), None, "one valid rid is not simulcast");
        assert_eq!(of("gone"), None, "not sending");
        assert_eq!(of("recv"), None, "receive simulcast is not ours to take");
        assert_eq!(of("mic"), None);
    }
}
