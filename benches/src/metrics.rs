//! The server's `/metrics` (Prometheus text exposition), fetched with a bare HTTP/1.1 GET on
//! loopback so the load generator needs no HTTP client library.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counters and gauges by name (`samtal_forwarded_packets_total`, ...); label sets are kept in the
/// name as written (`samtal_signaling_errors_total{code="x"}`).
pub type Samples = HashMap<String, f64>;

/// Parses Prometheus text: every non-comment line is `name[{labels}] value [timestamp]`.
pub fn parse(text: &str) -> Samples {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            // Label values may hold spaces; the name ends at the closing brace when there is one.
            let split = match l.find('{') {
                Some(_) => l.rfind('}')? + 1,
                None => l.find(char::is_whitespace)?,
            };
            let (name, rest) = l.split_at(split);
            let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((name.to_owned(), value))
        })
        .collect()
}

/// GET `path` from `addr` and return the body of a 200 answer.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .with_context(|| format!("GET {path} timed out"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("GET {path}: {status}");
    }
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked"))
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_owned())
}

/// Joins the chunks of a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// The server's metrics now.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Samples> {
    Ok(parse(&http_get(addr, "/metrics").await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_gauges_and_labels() {
        let text = "# HELP samtal_forwarded_packets RTP packets forwarded\n\
                    # TYPE samtal_forwarded_packets counter\n\
                    samtal_forwarded_packets_total 12345\n\
                    samtal_participants 22\n\
                    samtal_signaling_errors_total{code=\"rate limited\"} 3\n\
                    # EOF\n";
        let s = parse(text);
        assert_eq!(s["samtal_forwarded_packets_total"], 12345.0);
        assert_eq!(s["samtal_participants"], 22.0);
        assert_eq!(s["samtal_signaling_errors_total{code=\"rate limited\"}"], 3.0);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world");
    }
}
