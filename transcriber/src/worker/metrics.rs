//! The worker's numbers as Prometheus text, served on `GET /metrics` when the worker is started with
//! `--metrics ADDR`: lag (end of speech → text sent), queues under backpressure, counters of what went
//! through. Values are read from a [`WorkerStats`] snapshot at scrape time; nothing in the audio or
//! recognition path touches the metrics library.

use std::sync::Weak;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::{Shared, WorkerStats};

/// Reads a running worker's stats without keeping it alive (a stopped worker reads as all zeros).
#[derive(Clone)]
pub struct StatsReader(pub(super) Weak<Shared>);

impl StatsReader {
    pub fn get(&self) -> WorkerStats {
        match self.0.upgrade() {
            Some(shared) => shared.counters.snapshot(shared.pool.stats()),
            None => WorkerStats::default(),
        }
    }
}

/// `stats` in the Prometheus text format (names prefixed `samtal_transcriber_`).
pub fn render(stats: &WorkerStats) -> String {
    let mut registry = Registry::with_prefix("samtal_transcriber");
    registry.register_collector(Box::new(Snapshot(stats.clone())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String");
    out
}

/// Serves `GET /metrics` on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, stats: StatsReader) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(scrape)).with_state(stats);
    axum::serve(listener, app).await
}

async fn scrape(State(stats): State<StatsReader>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        render(&stats.get()),
    )
}

#[derive(Debug)]
struct Snapshot(WorkerStats);

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let gauges: [(&str, &str, f64); 13] = [
            (
                "connected",
                "1 while the control connection is registered with the server",
                f64::from(u8::from(s.connected)),
            ),
            ("rooms", "Rooms being transcribed", s.rooms.len() as f64),
            (
                "lag_seconds",
                "End of speech to the final segment being sent, of the last final",
                seconds(s.last_lag),
            ),
            (
                "lag_mean_seconds",
                "End of speech to the final segment being sent, mean over all finals",
                seconds(s.mean_lag),
            ),
            (
                "lag_max_seconds",
                "End of speech to the final segment being sent, the largest seen",
                seconds(s.max_lag),
            ),
            (
                "packet_backlog",
                "Audio packets received but not yet through decode and VAD",
                s.packet_backlog as f64,
            ),
            (
                "recognitions_in_progress",
                "Utterances handed to recognition whose text has not come back",
                s.recognitions_in_progress as f64,
            ),
            (
                "queued_finals",
                "Final utterances waiting for a recognition thread",
                s.pool.queued_finals as f64,
            ),
            (
                "queued_audio_seconds",
                "Audio waiting for recognition",
                seconds(s.pool.queued_audio),
            ),
            (
                "queue_oldest_wait_seconds",
                "How long the oldest queued utterance has waited for recognition",
                seconds(s.pool.oldest_wait),
            ),
            (
                "busy_recognizers",
                "Recognition threads at work",
                s.pool.busy_workers as f64,
            ),
            (
                "unacked_segments",
                "Final segments sent and not yet acknowledged by the server",
                s.unacked_segments as f64,
            ),
            (
                "oldest_unacked_seconds",
                "Age of the oldest unacknowledged final segment",
                seconds(s.oldest_unacked),
            ),
        ];
        for (name, help, value) in gauges {
            let metric = ConstGauge::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let counters: [(&str, &str, u64); 12] = [
            (
                "registrations",
                "Registrations with the server (1 + reconnects)",
                s.registrations,
            ),
            (
                "control_failures",
                "Control connection attempts that failed or ended",
                s.control_failures,
            ),
            (
                "packets_received",
                "Audio packets received over all rooms",
                s.packets_received,
            ),
            ("utterances", "Utterances cut by the VAD", s.utterances),
            (
                "pipeline_errors",
                "Audio packets that could not be decoded or processed",
                s.pipeline_errors,
            ),
            ("finals_recognized", "Final utterances recognised", s.finals_recognized),
            (
                "empty_finals",
                "Final utterances with no text (not sent)",
                s.empty_finals,
            ),
            ("recognition_errors", "Recognitions that failed", s.recognition_errors),
            ("finals_sent", "Final segments sent, resends included", s.finals_sent),
            (
                "finals_acked",
                "Final segments acknowledged (stored) by the server",
                s.finals_acked,
            ),
            (
                "finals_abandoned",
                "Final segments given up on before the server acknowledged them",
                s.finals_abandoned,
            ),
            ("interims_sent", "Interim captions sent", s.interims_sent),
        ];
        for (name, help, value) in counters {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lag_queues_and_counters() {
        let mut stats = WorkerStats {
            connected: true,
            finals_acked: 7,
            last_lag: Duration::from_millis(1_250),
            ..Default::default()
        };
        stats.pool.queued_finals = 3;
        let text = render(&stats);
        assert!(
            text.contains("# TYPE samtal_transcriber_lag_seconds gauge\nsamtal_transcriber_lag_seconds 1.25\n"),
            "{text}"
        );
        assert!(text.contains("samtal_transcriber_queued_finals 3.0\n"), "{text}");
        assert!(text.contains("samtal_transcriber_connected 1.0\n"), "{text}");
        assert!(
            text.contains("# TYPE samtal_transcriber_finals_acked counter\nsamtal_transcriber_finals_acked_total 7\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn serves_the_text_over_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, StatsReader(Weak::new())));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        server.abort();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.contains("content-type: text/plain; version=0.0.4"),
            "{response}"
        );
        assert!(response.contains("samtal_transcriber_lag_seconds 0.0\n"), "{response}");
    }

    #[test]
    fn a_stopped_worker_reads_as_zero() {
        let reader = StatsReader(Weak::new());
        assert_eq!(reader.get(), WorkerStats::default());
        assert!(render(&reader.get()).contains("samtal_transcriber_connected 0.0\n"));
    }
}
