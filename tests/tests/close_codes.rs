//! How the server ends a websocket: every end it causes carries a close code and reason that say
//! why (docs/protocol.md, "How a connection ends"), against the whole server in-process.

use samtal_e2e::ws::WsClient;
use samtal_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_fatal_errors_and_heartbeat_timeouts_close_with_their_codes() {
    let mut config = test_config();
    config.limits.heartbeat_timeout_secs = 1;
    let server = start_server(config).await;

    let mut ws = WsClient::connect(&server.ws_url()).await;
    ws.join("codes", "Lena", None).await;
    ws.send_text(r#"{"type":"leave"}"#).await;
    assert_eq!(ws.close_frame().await, Some((1000, "left".into())), "after leave");

    let mut ws = WsClient::connect(&server.ws_url()).await;
    ws.send_text(r#"{"type":"join","room":"../etc","name":"Mallory"}"#)
        .await;
    let error = ws.expect_type("error").await;
    assert_eq!(
        (error["code"].as_str(), error["fatal"].as_bool()),
        (Some("bad_room"), Some(true))
    );
    assert_eq!(
        ws.close_frame().await,
        Some((1008, "bad_room".into())),
        "after a fatal error"
    );

    let mut ws = WsClient::connect(&server.ws_url()).await;
    ws.join("codes", "Quiet", None).await;
    assert_eq!(
        ws.close_frame().await,
        Some((4002, "heartbeat timeout".into())),
        "after a second of silence"
    );
    server.shutdown().await;
}
