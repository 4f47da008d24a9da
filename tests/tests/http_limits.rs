//! The HTTP face under hostile connections, against the whole server in-process on loopback:
//! half-sent requests, idle kept-alive connections, more connections than the cap, a stop while
//! such connections are open, the security headers of the pages, and websockets from foreign
//! origins on an open server.

use samtal_e2e::ws::{WAIT, http_get};
use samtal_e2e::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` on a new connection and reads the whole response (until the server closes).
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until the server closes the connection; how long that took, or `None` within `limit`.
async fn closed_after(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|_| started.elapsed())
}

/// A connection that sent half a request and stops there.
async fn half_request(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: samtal\r\nX-Slow: ")
        .await
        .unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_and_idle_connections_are_closed_after_the_header_timeout() {
    let mut config = test_config();
    config.limits.http_header_timeout_secs = 1;
    let server = start_server(config).await;
    let mut slow = half_request(server.addr).await;
    let closed = closed_after(&mut slow, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "a half-sent request was still open after 5 s (header timeout 1 s)"
    );

    // A kept-alive connection that answered one request and then sits idle is closed too.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: samtal\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(WAIT, idle.read(&mut buf)).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "the first request is answered"
    );
    assert!(
        closed_after(&mut idle, Duration::from_secs(5)).await.is_some(),
        "an idle kept-alive connection stayed open"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_and_the_server_recovers() {
    let mut config = test_config();
    config.limits.max_http_connections = 20;
    config.limits.http_header_timeout_secs = 60;
    let server = start_server(config).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(half_request(server.addr).await);
    }
    // Accepting is asynchronous: wait until the cap is reached.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let full = raw(
        server.addr,
        "GET /healthz HTTP/1.1\r\nHost: samtal\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(full.starts_with("HTTP/1.1 503"), "over the cap: {full}");
    assert!(full.to_ascii_lowercase().contains("retry-after:"), "{full}");
    assert!(full.contains("too many open connections"), "{full}");
    drop(held);
    let recovered =
        samtal_e2e::ws::eventually(WAIT, || async { http_get(server.addr, "/healthz").await.0 == 200 }).await;
    assert!(recovered, "/healthz answers again once the held connections are gone");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_finishes_within_the_grace_period_while_a_request_hangs() {
    let mut config = test_config();
    config.limits.http_header_timeout_secs = 600;
    config.limits.shutdown_grace_secs = 1;
    let server = start_server(config).await;
    let mut slow = half_request(server.addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await;
    assert!(
        stopped.is_ok(),
        "shutdown did not finish while a half-sent request was open"
    );
    assert!(
        closed_after(&mut slow, Duration::from_secs(5)).await.is_some(),
        "the hanging connection was closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers() {
    let server = start_server(test_config()).await;
    let response = raw(
        server.addr,
        "GET /index.html HTTP/1.1\r\nHost: samtal\r\nConnection: close\r\n\r\n",
    )
    .await;
    let head = response.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header("referrer-policy").as_deref(), Some("no-referrer"));
    let permissions = header("permissions-policy").expect("Permissions-Policy");
    assert!(
        permissions.contains("camera=(self)") && permissions.contains("microphone=(self)"),
        "{permissions}"
    );
    let csp = header("content-security-policy").expect("Content-Security-Policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'self'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    server.shutdown().await;
}

/// Opens the websocket with `origin` (if any); the HTTP status of the handshake.
async fn ws_status(url: &str, origin: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_server_refuses_websockets_from_foreign_origins() {
    let mut config = test_config();
    config.embed.allowed_origins = vec!["https://intranet.example.org".into()];
    let server = start_server(config).await;
    let url = server.ws_url();
    let own = format!("http://{}", server.addr);
    assert_eq!(
        ws_status(&url, Some("https://evil.example")).await,
        403,
        "a foreign page's websocket"
    );
    assert_eq!(ws_status(&url, Some(&own)).await, 101, "the server's own pages");
    assert_eq!(
        ws_status(&url, Some("https://intranet.example.org")).await,
        101,
        "a configured embedding origin"
    );
    assert_eq!(
        ws_status(&url, None).await,
        101,
        "a client that is not a browser sends no Origin"
    );
    server.shutdown().await;

    // With tokens, the token decides, whatever page the browser is on.
    let mut config = test_config();
    config.auth.secret = Some("http-limits-secret-0123456789abcdef-012".into());
    let server = start_server(config).await;
    assert_eq!(ws_status(&server.ws_url(), Some("https://evil.example")).await, 101);
    server.shutdown().await;
}
