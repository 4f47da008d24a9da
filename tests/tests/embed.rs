//! Embedding through real browsers: tests/browser/embed.mjs drives headless Chromium (playwright-core)
//! against a server started here with `[embed] allowed_origins` naming one of two local host sites
//! served here too (tests/browser/embed/: host.html for the iframe API, element.html playing Element's
//! side of the Matrix widget API). The two sites differ in port, so they are different origins:
//!  1. the allowed site embeds a meeting: commands change the meeting (another participant sees the
//!     mute) and events reach the site with the right data; transcription shows a banner to everyone,
//!     captions from a stand-in worker appear live and in the transcript panel;
//!  2. the other site cannot embed (frame-ancestors) and its commands are ignored;
//!  3. the widget answers the widget API handshake and joins the room derived from the Matrix room id
//!     under the Matrix display name.

use samtal_e2e::*;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves the files of `dir` (flat, GET only) until the test ends.
async fn serve_dir(listener: TcpListener, dir: PathBuf) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let dir = dir.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let target = head.split_whitespace().nth(1).unwrap_or("/");
            let name = target.split(['?', '#']).next().unwrap_or("").trim_start_matches('/');
            let safe = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && !name.starts_with('.');
            let (status, body, kind) = match safe.then(|| std::fs::read(dir.join(name))) {
                Some(Ok(body)) => (
                    "200 OK",
                    body,
                    if name.ends_with(".html") {
                        "text/html; charset=utf-8"
                    } else {
                        "application/octet-stream"
                    },
                ),
                _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
            };
            let header = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(header.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// The status line and headers of `GET path`.
async fn response_head(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(head, _)| format!("{head}\r\n"))
        .unwrap_or(text)
}

/// A host site on its own loopback port: its origin.
async fn host_site(dir: &std::path::Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a host site");
    let origin = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(serve_dir(listener, dir.to_path_buf()));
    origin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_iframe_api_origins_and_matrix_widget() {
    let pages = browser_driver().0.join("embed");
    let allowed = host_site(&pages).await;
    let other = host_site(&pages).await;
    let mut config = test_config();
    config.embed.allowed_origins = vec![allowed.clone()];
    let server = start_server(config).await;

    // The server's side of the origin rules, seen directly: the CSP and what the page is told.
    let head = response_head(server.addr, "/").await;
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("; frame-ancestors 'self' {allowed}; "))
            && head
                .to_ascii_lowercase()
                .contains("content-security-policy: default-src 'self';"),
        "the meeting page's CSP does not name exactly the allowed origin:\n{head}"
    );
    let (status, body) = ws::http_get(server.addr, "/client-config.json").await;
    let client_config: serde_json::Value = serde_json::from_str(&body).expect("client-config.json is JSON");
    assert_eq!(
        (status, &client_config["allowed_origins"]),
        (200, &serde_json::json!([allowed])),
        "{body}"
    );

    let url = server.http_url();
    let args = [
        "--url",
        &url,
        "--host",
        &allowed,
        "--other",
        &other,
        "--room",
        "embedded",
        "--timeout",
        "45",
        "--worker-key",
        WORKER_KEY,
    ];
    let summary = run_browser_script("embed.mjs", &args, Duration::from_secs(400)).await;
    assert_eq!(summary["ok"], true, "{summary}");
    server.shutdown().await;
}
