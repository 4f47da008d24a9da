//! Exported transcripts read by independent parsers: the server's WebVTT through Python's
//! webvtt-py, its SRT through Python's srt, and its transcript digest recomputed in Python from the
//! JSON export exactly as docs/http-api.md describes the chain, against the digest every format names.

use samtal_e2e::{python, repo_root, run_peer, start_server, test_config};
use samtal_protocol::{Role, Segment};
use samtal_signaling::auth::mint;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "export-test-secret-0123456789abcdef";

/// `GET path` with a bearer token: (status, headers, body).
async fn get(addr: std::net::SocketAddr, path: &str, token: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("HTTP timed out")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn segment(id: &str, who: &str, start_ms: i64, end_ms: i64, text: &str) -> Segment {
    Segment {
        utterance_id: id.into(),
        participant_id: who.into(),
        start_ms,
        end_ms,
        text: text.into(),
        language: Some("sv".into()),
        confidence: Some(0.87),
        is_final: true,
    }
}

#[tokio::test]
async fn exports_parse_with_independent_parsers_and_their_digest_verifies() {
    let python = python();
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    let server = start_server(config).await;
    let store = server.state.store.clone();
    let t0 = 1_740_819_600_000;
    let id = store.start_meeting_at("veckomöte", Some("sv"), t0).await.unwrap().id;
    let lines = [
        ("u1", "p-anna", "Anna", 1_000, 3_250, "God morgon allihop."),
        (
            "u2",
            "p-bo",
            "Björn <B>",
            3_500,
            6_000,
            "Budgeten för 2025 & \"framåt\" --> klar.",
        ),
        ("u3", "p-anna", "Anna", 3_661_001, 3_662_500, "Tack, vi ses."),
    ];
    for (u, who, name, start, end, text) in lines {
        store
            .add_segment(&id, &segment(u, who, t0 + start, t0 + end, text), name)
            .await
            .unwrap();
    }
    store
        .set_opted_out(&id, "p-cleo", "Cleo", true, t0 + 2_000)
        .await
        .unwrap();
    store.end_meeting(&id, t0 + 3_700_000).await.unwrap();
    let digest = store.meeting(&id).await.unwrap().unwrap().transcript_digest.unwrap();

    let token = mint(SECRET, "*", Some("Officer"), Role::Compliance, Duration::from_secs(300)).unwrap();
    let dir = std::env::temp_dir().join(format!("samtal-export-{}-{}", std::process::id(), server.addr.port()));
    std::fs::create_dir_all(&dir).unwrap();
    for format in ["vtt", "srt", "txt", "json"] {
        let (status, head, body) = get(
            server.addr,
            &format!("/api/meetings/{id}/export?format={format}"),
            &token,
        )
        .await;
        assert_eq!(status, 200, "{format}: {body}");
        assert!(head.contains(&format!("x-transcript-digest: {digest}")), "{head}");
        std::fs::write(dir.join(format!("export.{format}")), body).unwrap();
    }

    let mut command = tokio::process::Command::new(&python);
    command
        .arg(repo_root().join("tests/peers/check_export.py"))
        .arg(&dir)
        .arg(&digest);
    let out = run_peer(command, Duration::from_secs(60)).await;
    assert_eq!(out.status, Some(0), "check_export.py failed:\n{}", out.tail());
    let found = out.json();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    // Every format names the digest, and Python's own chain over the JSON gives the same.
    for key in [
        "vtt_digest",
        "txt_digest",
        "json_digest",
        "recomputed_digest",
        "header_digest",
    ] {
        assert_eq!(found[key], digest.as_str(), "{key}: {found}");
    }
    let vtt = found["vtt_cues"].as_array().unwrap();
    assert_eq!(vtt.len(), 3, "{found}");
    let cue = |i: usize| {
        (
            vtt[i]["start"].as_str().unwrap(),
            vtt[i]["end"].as_str().unwrap(),
            vtt[i]["voice"].as_str().unwrap(),
            vtt[i]["text"].as_str().unwrap(),
        )
    };
    assert_eq!(cue(0), ("00:00:01.000", "00:00:03.250", "Anna", "God morgon allihop."));
    // webvtt-py gives the cue text without the voice span, entities as written.
    assert_eq!(cue(1).0, "00:00:03.500");
    assert_eq!(cue(1).2, "Björn &lt;B&gt;");
    assert!(cue(1).3.contains("Budgeten för 2025 &amp; \"framåt\""), "{found}");
    assert_eq!(cue(2), ("01:01:01.001", "01:01:02.500", "Anna", "Tack, vi ses."));

    let srt = found["srt_cues"].as_array().unwrap();
    let srt_cue = |i: usize| {
        (
            srt[i]["index"].as_i64().unwrap(),
            srt[i]["start_ms"].as_i64().unwrap(),
            srt[i]["end_ms"].as_i64().unwrap(),
            srt[i]["content"].as_str().unwrap(),
        )
    };
    assert_eq!(srt.len(), 3, "{found}");
    assert_eq!(srt_cue(0), (1, 1_000, 3_250, "Anna: God morgon allihop."));
    assert_eq!(srt_cue(1).3, "Björn <B>: Budgeten för 2025 & \"framåt\" -> klar.");
    assert_eq!(srt_cue(2), (3, 3_661_001, 3_662_500, "Anna: Tack, vi ses."));
}
