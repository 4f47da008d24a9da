//! Accessibility (WCAG 2.1 AA) and the Swedish and English interface of every page, in headless
//! Chromium: tests/browser/accessibility.mjs runs axe-core on the meeting page (before joining and
//! during a meeting), the transcript archive and the Matrix widget in both languages and fails on any
//! serious or critical violation; checks that Chromium started with `--lang=sv-SE` shows the main
//! controls in Swedish and the language switch turns them to English; and joins, mutes (as another
//! participant sees it), opens and closes the shortcuts dialog and leaves with the keyboard alone.
//! The server here has tokens, so that the meeting has a moderator (per-tile mute and remove buttons)
//! and the archive holds a sealed meeting to read.

use samtal_e2e::*;
use samtal_protocol::{Role, Segment};
use samtal_signaling::RunningServer;
use samtal_signaling::auth::mint;
use std::time::Duration;

const SECRET: &str = "accessibility-test-secret-0123456789abcdef";

/// A finished, sealed meeting of two speakers; returns its id and start (ms since the epoch).
async fn seed(server: &RunningServer) -> (String, i64) {
    let store = &server.state.store;
    let t0 = 1_767_000_000_000; // 2025-12-29
    let meeting = store
        .start_meeting_at("styrelse", Some("sv"), t0)
        .await
        .expect("meeting");
    for (id, name) in [("p-anna", "Anna Lind"), ("p-bo", "Bo Ek")] {
        store.add_participant(&meeting.id, id, name).await.expect("participant");
    }
    let lines = [
        ("p-anna", "Anna Lind", "Välkomna till mötet."),
        ("p-bo", "Bo Ek", "Budgeten är klar."),
        ("p-anna", "Anna Lind", "Då beslutar vi att anta den."),
    ];
    for (i, (who, name, text)) in lines.iter().enumerate() {
        let start = t0 + 2_000 + i as i64 * 4_000;
        let segment = Segment {
            utterance_id: format!("{who}-{start}"),
            participant_id: (*who).into(),
            start_ms: start,
            end_ms: start + 3_000,
            text: (*text).into(),
            language: Some("sv".into()),
            confidence: Some(0.9),
            is_final: true,
        };
        assert!(store.add_segment(&meeting.id, &segment, name).await.expect("segment"));
    }
    store.end_meeting(&meeting.id, t0 + 20_000).await.expect("end");
    store.seal(&meeting.id).await.expect("seal");
    (meeting.id, t0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_accessible_in_swedish_and_english_and_work_from_the_keyboard() {
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    let server = start_server(config).await;
    let (meeting, started) = seed(&server).await;
    let ttl = Duration::from_secs(3600);
    // Join tokens for any room and without a name: the name is what the page is given or typed.
    let moderator = mint(SECRET, "*", None, Role::Moderator, ttl).expect("token");
    let participant = mint(SECRET, "*", None, Role::Participant, ttl).expect("token");
    let officer = mint(SECRET, "*", Some("Olga Officer"), Role::Compliance, ttl).expect("token");
    let admin = mint(SECRET, "*", Some("Ada Admin"), Role::Administrator, ttl).expect("token");

    let url = server.http_url();
    let started = started.to_string();
    let screenshots = std::env::var("SAMTAL_A11Y_SCREENSHOTS").ok();
    let mut args = vec![
        "--url",
        &url,
        "--moderator",
        &moderator,
        "--participant",
        &participant,
        "--officer",
        &officer,
        "--admin",
        &admin,
        "--meeting",
        &meeting,
        "--started",
        &started,
        "--timeout",
        "40",
    ];
    if let Some(dir) = screenshots.as_deref() {
        args.extend(["--screenshots", dir]);
    }
    let summary = run_browser_script("accessibility.mjs", &args, Duration::from_secs(540)).await;
    assert_eq!(summary["ok"], true, "{summary}");
    eprintln!("accessibility summary: {summary}");

    // Every page was audited in both languages, and none had a serious or critical violation.
    let audits = summary["audits"].as_array().expect("audits");
    for lang in ["(en)", "(sv)"] {
        for page in [
            "the meeting page before joining",
            "the meeting page during a meeting",
            "the archive's transcript view",
            "the widget's meeting",
        ] {
            let what = format!("{page} {lang}");
            let audit = audits
                .iter()
                .find(|a| a["what"] == what.as_str())
                .unwrap_or_else(|| panic!("no axe-core audit of {what}: {summary}"));
            assert_eq!(audit["serious"], 0, "{what}: {audit}");
        }
    }
    server.shutdown().await;
}
