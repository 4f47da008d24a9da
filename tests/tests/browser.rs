//! Real browsers: three headless Chromium participants join through the real web page
//! (tests/browser/three_party.mjs drives them with playwright-core and checks getStats()).
//! Each must decode video and receive audio from both others, see a screen share, and see a
//! participant who leaves disappear.

use samtal_e2e::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_chromium_participants_meet_share_screen_and_leave() {
    let server = start_server(test_config()).await;
    let url = server.http_url();
    let summary = run_browser_script(
        "three_party.mjs",
        &["--url", &url, "--room", "browsers", "--timeout", "60"],
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(summary["ok"], true, "{summary}");
    server.shutdown().await;
}
