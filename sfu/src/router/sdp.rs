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

/// M-sections that send media. Port 0 rejects a section, except with `a=bundle-only` (RFC 8843),
/// which Firefox puts on a transceiver it offers before it has a track: that one shares the
/// bundle's transport and sends once it gets its track.
fn sending_sections(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.split("\nm=").skip(1).filter(|section| {
        let has = |attribute: &str| section.lines().any(|l| l.trim() == attribute);
        let rejected = section.split_whitespace().nth(1) == Some("0") && !has("a=bundle-only");
        !rejected && !has("a=inactive") && !has("a=recvonly")
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

/// What the SFU asks of publishers' audio, in its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AudioPreferences {
    /// RED first among the audio formats (a browser sends the first format of the answer it
    /// supports), where the offer has RED over the same Opus.
    pub red: bool,
    /// `usedtx=1` on Opus: the publisher sends almost nothing while it is silent.
    pub dtx: bool,
}

/// The answer with `prefs` applied to its audio sections: the payload types stay those the
/// offer chose, only their order and Opus's format parameters change.
pub(crate) fn prefer_audio(answer: &str, prefs: AudioPreferences) -> String {
    let mut out = String::with_capacity(answer.len() + 64);
    // The session part, then each media section (`m=` to the next).
    let sections = answer.split_inclusive('\n').fold(vec![Vec::new()], |mut all, line| {
        if line.starts_with("m=") {
            all.push(Vec::new());
        }
        all.last_mut().expect("never empty").push(line);
        all
    });
    for section in &sections {
        if section.first().is_some_and(|m| m.starts_with("m=audio ")) {
            out.push_str(&audio_section(section, prefs));
        } else {
            section.iter().for_each(|line| out.push_str(line));
        }
    }
    out
}

/// A line `<prefix><payload type> <value>` (`a=rtpmap:`, `a=fmtp:`) as (payload type, value).
fn attribute<'a>(line: &'a str, prefix: &str) -> Option<(u8, &'a str)> {
    let (pt, value) = line.trim_end().strip_prefix(prefix)?.split_once(' ')?;
    Some((pt.parse().ok()?, value))
}

fn audio_section(lines: &[&str], prefs: AudioPreferences) -> String {
    let rtpmap = |name: &str| {
        lines.iter().find_map(|&l| {
            let (pt, codec) = attribute(l, "a=rtpmap:")?;
            codec.split('/').next()?.eq_ignore_ascii_case(name).then_some(pt)
        })
    };
    let fmtp = |pt: u8| {
        lines
            .iter()
            .find_map(|&l| attribute(l, "a=fmtp:").filter(|&(p, _)| p == pt))
    };
    let opus = rtpmap("opus");
    // RED goes first only where its blocks are this section's Opus.
    let red = rtpmap("red").filter(|&red| {
        prefs.red && opus.is_some() && fmtp(red).and_then(|(_, f)| crate::forward::red::block_payload_type(f)) == opus
    });
    let dtx_opus = opus.filter(|_| prefs.dtx);
    let has_opus_fmtp = opus.and_then(fmtp).is_some();
    let mut out = String::new();
    for &line in lines {
        let (body, end) = line.split_at(line.trim_end().len());
        if let (Some(red), true) = (red, body.starts_with("m=audio ")) {
            // `m=audio <port> <proto> <formats...>`: RED to the front.
            let mut words: Vec<&str> = body.split(' ').collect();
            if let Some(at) = words.iter().skip(3).position(|w| w.parse() == Ok(red)) {
                let moved = words.remove(at + 3);
                words.insert(3, moved);
            }
            out.push_str(&words.join(" "));
            out.push_str(end);
            continue;
        }
        out.push_str(body);
        let Some(opus) = dtx_opus else {
            out.push_str(end);
            continue;
        };
        let names = |prefix| attribute(line, prefix).is_some_and(|(pt, _)| pt == opus);
        if names("a=fmtp:") && !body.contains("usedtx=") {
            out.push_str(";usedtx=1");
        }
        out.push_str(end);
        if !has_opus_fmtp && names("a=rtpmap:") {
            out.push_str(&format!("a=fmtp:{opus} usedtx=1{end}"));
        }
    }
    out
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
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=bundle-only\r\na=sendonly\r\na=msid:s share\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n";
        let ids = sending_track_ids(sdp);
        assert_eq!(
            ids,
            ["mic", "cam", "share"]
                .into_iter()
                .map(String::from)
                .collect::<HashSet<_>>(),
            "port 0 rejects, but not with a=bundle-only"
        );
        assert_eq!(media_sections(sdp), 6);
        assert_eq!(
            media_sections("v=0\r\na=x:m=audio\r\n"),
            0,
            "only lines that start with m= count"
        );
    }

    const BOTH: AudioPreferences = AudioPreferences { red: true, dtx: true };

    #[test]
    fn red_goes_first_and_opus_gets_dtx_in_audio_sections_only() {
        let answer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111 63 0\r\na=rtpmap:111 opus/48000/2\r\n\
            a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
            a=rtpmap:0 PCMU/8000\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 63\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:63 red/90000\r\n";
        let munged = prefer_audio(answer, BOTH);
        assert_eq!(
            munged,
            "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 63 111 0\r\na=rtpmap:111 opus/48000/2\r\n\
            a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
            a=rtpmap:0 PCMU/8000\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 63\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:63 red/90000\r\n"
        );
        assert_eq!(prefer_audio(&munged, BOTH), munged, "applying it twice changes nothing");
        let off = AudioPreferences { red: false, dtx: false };
        assert_eq!(prefer_audio(answer, off), answer);
    }

    #[test]
    fn red_over_another_codec_stays_behind_and_opus_without_fmtp_gets_one() {
        let answer = "v=0\nm=audio 9 RTP/SAVPF 109 63\na=rtpmap:109 opus/48000/2\na=rtpmap:63 red/48000/2\n\
            a=fmtp:63 0/0\n";
        assert_eq!(
            prefer_audio(answer, BOTH),
            "v=0\nm=audio 9 RTP/SAVPF 109 63\na=rtpmap:109 opus/48000/2\na=fmtp:109 usedtx=1\n\
            a=rtpmap:63 red/48000/2\na=fmtp:63 0/0\n"
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
