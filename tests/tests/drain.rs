//! Draining through the whole server in-process: a drained server keeps its meeting going (a
//! newcomer to it still joins) but starts no new one (`draining`, fatal), its readiness check fails
//! while its health check does not, only administrators start or read a drain (audited), and the
//! drain ends when the last participant has left, or at its deadline with them still there.

use samtal_e2e::ws::{WsClient, http_get, http_request, metric};
use samtal_e2e::*;
use samtal_protocol::Role;
use samtal_signaling::auth::mint;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SECRET: &str = "drain-test-auth-secret-0123456789abcdef-01";

fn token(room: &str, name: &str, role: Role) -> String {
    mint(SECRET, room, Some(name), role, Duration::from_secs(3600)).unwrap()
}

async fn call(addr: SocketAddr, method: &str, token: &str) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let (status, body) = http_request(addr, method, "/api/drain", &[("Authorization", &bearer)]).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_server_keeps_its_meetings_starts_none_and_ends_empty() {
    let mut config = test_config();
    config.auth.secret = Some(SECRET.into());
    let server = start_server(config).await;
    let addr = server.addr;
    let admin = token("*", "root", Role::Administrator);
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    let draining = |metrics: &str| metric(metrics, "samtal_draining");
    assert_eq!(draining(&http_get(addr, "/metrics").await.1), Some(0.0));

    let mut anna = WsClient::connect(&server.ws_url()).await;
    anna.join("weekly", "Anna", Some(&token("weekly", "Anna", Role::Moderator)))
        .await;

    // Only administrators drain.
    assert_eq!(
        call(addr, "POST", &token("weekly", "Anna", Role::Moderator)).await.0,
        403
    );
    assert_eq!(
        http_get(addr, "/readyz").await.0,
        200,
        "a refused drain changes nothing"
    );
    let (status, body) = call(addr, "POST", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["draining"].as_bool(),
            body["rooms"].as_u64(),
            body["participants"].as_u64()
        ),
        (Some(true), Some(1), Some(1))
    );
    let (status, ready) = http_get(addr, "/readyz").await;
    assert_eq!((status, ready.contains("draining")), (503, true), "{ready}");
    assert_eq!(http_get(addr, "/healthz").await.0, 200, "alive all the same");
    assert_eq!(draining(&http_get(addr, "/metrics").await.1), Some(1.0));

    // The meeting in progress takes a newcomer; a new meeting does not start.
    let mut bo = WsClient::connect(&server.ws_url()).await;
    bo.join("weekly", "Bo", Some(&token("weekly", "Bo", Role::Participant)))
        .await;
    anna.expect_type("participant_joined").await;
    let mut cay = WsClient::connect(&server.ws_url()).await;
    cay.send_json(&serde_json::json!({"type": "join", "room": "board", "name": "Cay", "token": token("board", "Cay", Role::Moderator)}))
        .await;
    let refused = cay.expect_error("draining").await;
    assert_eq!(refused["fatal"], true, "{refused}");
    assert!(
        cay.closed_within(Duration::from_secs(5)).await,
        "a refused join is closed"
    );
    let (_, body) = call(addr, "GET", &admin).await;
    assert_eq!(
        (body["rooms"].as_u64(), body["participants"].as_u64()),
        (Some(1), Some(2)),
        "{body}"
    );

    // With people still in it, the drain runs out at its deadline.
    let started = Instant::now();
    assert!(!server.drain(Duration::from_millis(600)).await);
    assert!(started.elapsed() >= Duration::from_millis(600));
    // When they have left, it is over.
    bo.close().await;
    anna.close().await;
    assert!(server.drain(Duration::from_secs(10)).await, "the last one left");
    let (_, body) = call(addr, "GET", &admin).await;
    assert_eq!(
        (body["draining"].as_bool(), body["participants"].as_u64()),
        (Some(true), Some(0)),
        "{body}"
    );

    // The drain is in the audit trail.
    let bearer = format!("Bearer {admin}");
    let (_, audit) = http_request(
        addr,
        "GET",
        "/api/audit?action=node.drain",
        &[("Authorization", &bearer)],
    )
    .await;
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let outcomes: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert!(outcomes.contains(&"ok") && outcomes.contains(&"denied"), "{audit}");
    server.shutdown().await;
}
