//! Real browsers: three headless Chromium participants join through the real web page
//! (tests/browser/three_party.mjs drives them with playwright-core and checks getStats()).
//! Each must decode video and receive audio from both others, see a screen share, and see a
//! participant who leaves disappear.

use samtal_e2e::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_chromium_participants_meet_share_screen_and_leave() {
    let (dir, chromium) = browser_driver();
    let server = start_server(test_config()).await;
    let mut c = tokio::process::Command::new("node");
    c.current_dir(&dir)
        .arg("three_party.mjs")
        .args([
            "--url",
            &server.http_url(),
            "--room",
            "browsers",
            "--timeout",
            "60",
        ])
        .arg("--chromium")
        .arg(&chromium);
    let out = run_peer(c, Duration::from_secs(300)).await;
    let summary = out.json();
    assert_eq!(
        out.status,
        Some(0),
        "browser test failed: {summary}\n{}",
        out.tail()
    );
    server.shutdown().await;
}
