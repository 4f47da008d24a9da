//! Hand-made publish offers, as a browser would make them, for tests that drive the server over a
//! raw websocket (no candidates: a client's are trickled or, in these tests, never sent).

/// A publish offer for one Opus track.
pub fn opus_offer(track_id: &str, stream_id: &str) -> String {
    offer(&[&audio_section("0", track_id, stream_id)])
}

/// A publish offer with `sections` audio m-sections (one Opus track each): what a hostile client
/// sends to make the server parse and answer as much as it can.
pub fn offer_with_sections(sections: usize, stream_id: &str) -> String {
    let bodies: Vec<String> = (0..sections)
        .map(|i| audio_section(&i.to_string(), &format!("t{i}"), stream_id))
        .collect();
    offer(&bodies.iter().map(String::as_str).collect::<Vec<_>>())
}

fn offer(sections: &[&str]) -> String {
    let mids: Vec<String> = (0..sections.len()).map(|i| i.to_string()).collect();
    let fingerprint = (0..32)
        .map(|i| format!("{:02X}", (i * 37 + 11) % 256))
        .collect::<Vec<_>>()
        .join(":");
    let mut lines = vec![
        "v=0".to_owned(),
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1".to_owned(),
        "s=-".to_owned(),
        "t=0 0".to_owned(),
        format!("a=group:BUNDLE {}", mids.join(" ")),
        "a=extmap-allow-mixed".to_owned(),
        "a=ice-ufrag:handUfrag1".to_owned(),
        "a=ice-pwd:handPasswordhandPassword".to_owned(),
        "a=ice-options:trickle".to_owned(),
        format!("a=fingerprint:sha-256 {fingerprint}"),
        "a=setup:actpass".to_owned(),
    ];
    lines.extend(sections.iter().map(|s| s.to_string()));
    lines.join("\r\n") + "\r\n"
}

fn audio_section(mid: &str, track_id: &str, stream_id: &str) -> String {
    let ssrc = 1_000_000 + mid.parse::<u32>().unwrap_or(0);
    [
        "m=audio 9 UDP/TLS/RTP/SAVPF 111".to_owned(),
        "c=IN IP4 0.0.0.0".to_owned(),
        format!("a=mid:{mid}"),
        "a=sendonly".to_owned(),
        format!("a=msid:{stream_id} {track_id}"),
        "a=rtcp-mux".to_owned(),
        "a=rtpmap:111 opus/48000/2".to_owned(),
        format!("a=ssrc:{ssrc} cname:hand"),
    ]
    .join("\r\n")
}
