//! `samtal-transcriber`: the transcription worker process. It loads and verifies the Whisper and Silero VAD
//! models first (and refuses to start without usable ones, naming the file and the fault), then registers
//! with the Samtal server as a worker and transcribes the rooms it is given until Ctrl-C / SIGTERM, when it
//! flushes its last segments and leaves.
//!
//! ```text
//! samtal-transcriber --server ws://127.0.0.1:8080/ws --token "$SERVICE_JWT" \
//!     --model models/ggml-base.bin --vad-model models/ggml-silero-v6.2.0.bin --language sv
//! ```

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use samtal_transcriber::pool::PoolConfig;
use samtal_transcriber::recognize::{Recognizer, WhisperConfig, WhisperModel};
use samtal_transcriber::worker::{Worker, WorkerConfig, metrics};

/// Samtal's transcription worker: joins meetings as a hidden participant and sends captions back.
#[derive(Debug, Parser)]
#[command(name = "samtal-transcriber", version)]
struct Cli {
    /// The server's websocket endpoint.
    #[arg(long, env = "SAMTAL_TRANSCRIBER_SERVER", default_value = "ws://127.0.0.1:8080/ws")]
    server: String,
    /// The server's `transcription.worker_key`, or a service token (JWT with role `service`) where the
    /// server checks tokens. Always needed: no server accepts a worker without one.
    #[arg(long, env = "SAMTAL_TRANSCRIBER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Whisper model in whisper.cpp's ggml format (e.g. ggml-base.bin, or a KBLab kb-whisper file for Swedish).
    #[arg(long, env = "SAMTAL_TRANSCRIBER_MODEL")]
    model: PathBuf,
    /// Silero VAD model in whisper.cpp's ggml format (e.g. ggml-silero-v6.2.0.bin).
    #[arg(long, env = "SAMTAL_TRANSCRIBER_VAD_MODEL")]
    vad_model: PathBuf,
    /// Language when a meeting names none: an ISO 639-1 code (sv, en, …) or `auto`.
    #[arg(long, default_value = "auto")]
    language: String,
    /// CPU threads per Whisper inference.
    #[arg(long, default_value_t = 2)]
    threads: u16,
    /// Recognition workers (each with its own Whisper state); workers × threads ≤ free cores.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Run Whisper on the GPU (needs a build with the `cuda` or `vulkan` feature).
    #[arg(long)]
    use_gpu: bool,
    /// Accept whisper.cpp's weightless test models (they produce no text): for tests only.
    #[arg(long)]
    allow_test_model: bool,
    /// Rooms this worker takes at once.
    #[arg(long, default_value_t = 4)]
    capacity: u32,
    /// Send interim captions of speech in progress every this many milliseconds (0: finals only).
    #[arg(long, default_value_t = 0)]
    interim_ms: u64,
    /// Finals waiting for recognition before new ones wait (backpressure).
    #[arg(long, default_value_t = 32)]
    queue: usize,
    /// Log lag and queue numbers every this many seconds (0: never).
    #[arg(long, default_value_t = 30)]
    stats_secs: u64,
    /// Serve Prometheus metrics (lag, queues, counters) on http://ADDR/metrics, e.g. 127.0.0.1:9187.
    #[arg(long, env = "SAMTAL_TRANSCRIBER_METRICS")]
    metrics: Option<std::net::SocketAddr>,
    /// Local address for the media sockets of the room connections.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
}

impl Cli {
    fn worker_config(&self) -> WorkerConfig {
        let mut config = WorkerConfig::new(self.server.clone(), self.vad_model.clone());
        config.token = self.token.clone().filter(|t| !t.is_empty());
        config.capacity = self.capacity.max(1);
        config.language = Some(self.language.clone()).filter(|l| !l.is_empty() && l != "auto");
        config.pool = PoolConfig {
            workers: self.workers.max(1),
            final_capacity: self.queue.max(1),
            ..PoolConfig::default()
        };
        config.interim_interval = (self.interim_ms > 0).then(|| Duration::from_millis(self.interim_ms));
        config.stats_interval = (self.stats_secs > 0).then(|| Duration::from_secs(self.stats_secs));
        config.bind_ip = self.bind_ip;
        config
    }

    fn whisper_config(&self) -> WhisperConfig {
        let mut config = WhisperConfig::new(self.model.clone());
        config.n_threads = self.threads.max(1);
        config.use_gpu = self.use_gpu || config.use_gpu;
        config.allow_test_model = self.allow_test_model;
        config
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,whisper_rs=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("samtal-transcriber: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.use_gpu && !cfg!(any(feature = "cuda", feature = "vulkan")) {
        tracing::warn!("--use-gpu: this build has no GPU back-end (features cuda, vulkan); running on the CPU");
    }
    // The errors name the file and the fault already.
    let whisper =
        WhisperModel::load(&cli.whisper_config()).map_err(|e| anyhow::anyhow!("Whisper model unusable: {e}"))?;
    let whisper = Arc::new(whisper);
    let config = cli.worker_config();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let make = {
            let whisper = whisper.clone();
            move |_| Ok(Box::new(whisper.recognizer()?) as Box<dyn Recognizer>)
        };
        let mut worker = Worker::spawn(config, make).map_err(|e| match e {
            samtal_transcriber::Error::Model(_) | samtal_transcriber::Error::WrongModelKind { .. } => {
                anyhow::anyhow!("VAD model unusable: {e}")
            }
            other => anyhow::anyhow!("cannot start the worker: {other}"),
        })?;
        let _metrics = match cli.metrics {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--metrics {addr}: cannot listen"))?;
                tracing::info!("metrics on http://{addr}/metrics");
                Some(AbortOnDrop(tokio::spawn(metrics::serve(
                    listener,
                    worker.stats_reader(),
                ))))
            }
            None => None,
        };
        tracing::info!(server = %cli.server, model = %cli.model.display(), "transcriber running");
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = worker.wait() => return Ok(()),
        }
        tracing::info!("stopping: flushing the last segments");
        worker.shutdown().await;
        Ok(())
    })
}

/// Stops a background task (the metrics endpoint) when the worker stops.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
