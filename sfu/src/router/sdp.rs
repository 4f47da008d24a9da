//! What a publish offer says is still being sent. A client that stops a track (screen share ends)
//! re-offers with that m-section `inactive`/`recvonly`, rejected, or without its `a=msid`; the SFU
//! then unpublishes the track instead of waiting for media that will never come.

use std::collections::HashSet;

/// Media sections (`m=` lines) of an SDP, counted without parsing it: what bounds the cost of
/// applying it, checked before it reaches the media thread.
pub(crate) fn media_sections(sdp: &str) -> usize {
    sdp.lines().filter(|l| l.starts_with("m=")).count()
}

/// Track ids (second token of `a=msid:`) of m-sections that send media.
pub(crate) fn sending_track_ids(sdp: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    for section in sdp.split("\nm=").skip(1) {
        let port_zero = section.split_whitespace().nth(1) == Some("0");
        let not_sending = section.lines().any(|l| matches!(l.trim(), "a=inactive" | "a=recvonly"));
        if port_zero || not_sending {
            continue;
        }
        for line in section.lines() {
            if let Some(rest) = line.trim().strip_prefix("a=msid:")
                && let Some(track) = rest.split_whitespace().nth(1)
            {
                ids.insert(track.to_owned());
            }
        }
    }
    ids
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
}
