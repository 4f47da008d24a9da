//! `samtal-transcribe-bench`: what transcription costs, in three measurements (see `benches/README.md`).
//!
//! * `pipeline`: the per-speaker work before recognition — Opus decode to 16 kHz, Silero VAD,
//!   utterance cutting — as CPU share of one core per concurrently talking speaker.
//! * `latency`: end of speech → caption at another participant, through the real server, SFU and
//!   worker, with recognition taken out (the worker uses the instant `ScriptedRecognizer`, a test
//!   double, so what is measured is everything but Whisper).
//! * `whisper`: whisper-rs real-time factor of any ggml model file on a WAV file.
//!
//! ```text
//! cargo run --release -p samtal-bench --bin samtal-transcribe-bench -- pipeline --speakers 8
//! cargo run --release -p samtal-bench --bin samtal-transcribe-bench -- latency --rounds 3
//! cargo run --release -p samtal-bench --bin samtal-transcribe-bench -- whisper --model models/ggml-base.bin
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use samtal_bench::stats::Summary;
use samtal_client::microphone::Microphone;
use samtal_client::samtal_protocol::{ClientMessage, MediaKind, ServerMessage};
use samtal_client::{JoinOptions, Participant, ParticipantEvent, ParticipantOptions, Received};
use samtal_transcriber::fixtures::{opus_20ms, read_wav_16k};
use samtal_transcriber::recognize::{Language, Options, Recognizer, ScriptedRecognizer, WhisperConfig, WhisperModel};
use samtal_transcriber::vad::{SileroConfig, SileroVad};
use samtal_transcriber::worker::{SpeakerConfig, SpeakerPipeline, WallClock, Worker, WorkerConfig};

/// Default test data: `$SAMTAL_TEST_DATA`, or the repository's sibling `shared/` folder.
fn data(relative: &str) -> PathBuf {
    samtal_models::test_data::test_data_dir().join(relative)
}

#[derive(Parser, Debug)]
#[command(
    name = "samtal-transcribe-bench",
    version,
    about = "Measures the transcription pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// 16 kHz mono 16-bit WAV to speak (default: jfk.wav of the test data).
    #[arg(long, global = true)]
    audio: Option<PathBuf>,
    /// Silero VAD in whisper.cpp's ggml format (default: the test data's v6.2.0).
    #[arg(long, global = true)]
    vad_model: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode + VAD + segmentation per speaker, no recognition.
    Pipeline {
        /// Speakers processed together (interleaved packet by packet, as in one room's audio thread).
        #[arg(long, default_value_t = 4)]
        speakers: usize,
        /// Times each speaker says the audio.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// End of speech → caption at a listener, through the real server and worker, recognition excluded.
    Latency {
        /// Times the speaker says the audio.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Silence that ends an utterance (the worker's default), in ms.
        #[arg(long, default_value_t = 300)]
        min_silence_ms: u64,
    },
    /// whisper-rs real-time factor of a model on the audio.
    Whisper {
        /// A whisper.cpp ggml model file.
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 2)]
        threads: u16,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Language code, or `auto`.
        #[arg(long, default_value = "en")]
        language: String,
        /// Accept whisper.cpp's weightless test models (they run and return no text).
        #[arg(long)]
        allow_test_model: bool,
        #[arg(long)]
        use_gpu: bool,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("SAMTAL_LOG"))
        .init();
    let cli = Cli::parse();
    let audio = cli.audio.clone().unwrap_or_else(|| data("audio/jfk.wav"));
    let vad_model = cli
        .vad_model
        .clone()
        .unwrap_or_else(|| data("models/ggml-silero-v6.2.0-for-tests.bin"));
    let pcm = read_wav_16k(&audio).with_context(|| format!("reading {}", audio.display()))?;
    let seconds = pcm.len() as f64 / 16_000.0;
    println!("audio: {} ({seconds:.2} s)", audio.display());
    match cli.command {
        Command::Pipeline { speakers, repeat } => pipeline(&pcm, &vad_model, speakers, repeat),
        Command::Latency { rounds, min_silence_ms } => latency(&pcm, &vad_model, rounds, min_silence_ms).await,
        Command::Whisper {
            model,
            threads,
            runs,
            language,
            allow_test_model,
            use_gpu,
        } => {
            let mut config = WhisperConfig::new(model);
            config.n_threads = threads;
            config.allow_test_model = allow_test_model;
            config.use_gpu = use_gpu;
            whisper(&pcm, &config, runs, &language)
        }
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

use samtal_client::samtal_protocol::unix_ms;

fn pipeline(pcm: &[f32], vad_model: &std::path::Path, speakers: usize, repeat: usize) -> anyhow::Result<()> {
    let frames: Vec<Bytes> = opus_20ms(pcm)?.into_iter().map(Bytes::from).collect();
    let vad = SileroVad::load(&SileroConfig::new(vad_model))?;
    let t0 = Instant::now();
    let mut pipelines = (0..speakers)
        .map(|i| {
            SpeakerPipeline::new(
                format!("p{i}"),
                vad.clone(),
                WallClock::at(t0, 0.0),
                SpeakerConfig::default(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let mut utterances = 0usize;
    for k in 0..frames.len() * repeat {
        let payload = &frames[k % frames.len()];
        for (i, p) in pipelines.iter_mut().enumerate() {
            let packet = Received {
                participant_id: format!("p{i}"),
                track_id: format!("p{i}-mic"),
                kind: MediaKind::Audio,
                ssrc: i as u32 + 1,
                payload_type: 111,
                sequence_number: k as u16,
                timestamp: (960 * k) as u32,
                marker: false,
                payload: payload.clone(),
                arrival: t0 + Duration::from_millis(20 * k as u64),
            };
            utterances += p.push(&packet)?.len();
        }
    }
    for p in &mut pipelines {
        utterances += p.flush()?.len();
    }
    let (cpu, wall) = (thread_cpu() - cpu0, wall0.elapsed());
    let audio_per_speaker = frames.len() as f64 * 0.02 * repeat as f64;
    let per_speaker = cpu.as_secs_f64() / speakers as f64;
    println!("speakers: {speakers}, audio per speaker: {audio_per_speaker:.1} s, utterances cut: {utterances}");
    println!(
        "CPU: {:.3} s (wall {:.3} s) for {:.1} s of speech",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        audio_per_speaker * speakers as f64
    );
    println!(
        "per speaker: {:.1} ms CPU per second of speech = {:.2} % of one core per concurrently talking speaker",
        1000.0 * per_speaker / audio_per_speaker,
        100.0 * per_speaker / audio_per_speaker
    );
    Ok(())
}

async fn latency(pcm: &[f32], vad_model: &std::path::Path, rounds: usize, min_silence_ms: u64) -> anyhow::Result<()> {
    let frames: Vec<Bytes> = opus_20ms(pcm)?.into_iter().map(Bytes::from).collect();
    let silence = Bytes::from(opus_20ms(&[0.0; 320])?.remove(0));
    // The utterances' ends on the speaker's clock: the offline cut of the same audio.
    let ends = reference_ends(&frames, vad_model, min_silence_ms)?;
    println!("utterance ends in the audio (s): {ends:.2?}");

    let dir = std::env::temp_dir().join(format!("samtal-latency-bench-{}", std::process::id()));
    let mut config = samtal_signaling::Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.clone(),
        ..Default::default()
    };
    config.media.udp_port = 0;
    config.media.tcp_port = 0;
    config.media.ips = vec!["127.0.0.1".parse()?];
    let server = samtal_signaling::start(config).await?;
    let ws = server.ws_url();
    let mut worker_config = WorkerConfig::new(&ws, vad_model);
    worker_config.stats_interval = None;
    worker_config.speaker.segmenter.min_silence = Duration::from_millis(min_silence_ms);
    let worker = Worker::spawn(worker_config, |_| {
        Ok(Box::new(ScriptedRecognizer::always("…")) as Box<dyn Recognizer>)
    })?;

    let speaker = Arc::new(
        Participant::join(
            &ws,
            ParticipantOptions::from_join(JoinOptions::new("bench", "Speaker")).with_audio(),
        )
        .await?,
    );
    let mut listener = Participant::join(
        &ws,
        ParticipantOptions::from_join(JoinOptions::new("bench", "Listener")),
    )
    .await?;
    let captions: Arc<Mutex<Vec<(i64, i64)>>> = Arc::default();
    let mut events = listener.take_events().context("listener events")?;
    let seen = captions.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let ParticipantEvent::Server(ServerMessage::Caption { segment, .. }) = event
                && segment.is_final
            {
                seen.lock().unwrap().push((unix_ms(), segment.end_ms));
            }
        }
    });
    let microphone = Microphone::start(speaker.clone(), silence);
    speaker.signal().send(ClientMessage::Transcription {
        enabled: true,
        language: None,
        prompt: None,
    })?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while worker.stats().packets_received < 50 {
        if Instant::now() > deadline {
            bail!("the worker received no audio within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut latencies = Vec::new();
    for round in 0..rounds {
        captions.lock().unwrap().clear();
        let t0 = microphone.say(frames.clone()).await.context("microphone stopped")?;
        let spoken_ms = t0 + (frames.len() as i64) * 20;
        tokio::time::sleep(Duration::from_millis((spoken_ms - unix_ms()).max(0) as u64 + 2_000)).await;
        let got = captions.lock().unwrap().clone();
        if got.len() != ends.len() {
            bail!("round {round}: {} captions for {} utterances", got.len(), ends.len());
        }
        for ((arrived, _), end) in got.iter().zip(&ends) {
            latencies.push((*arrived - t0) as f64 / 1000.0 - end);
        }
    }
    let s = Summary::of(&mut latencies);
    let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    println!(
        "end of speech → final caption at a listener, recognition excluded ({} captions, VAD pause {min_silence_ms} ms): mean {:.0} ms, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        s.count,
        mean * 1000.0,
        s.p50 * 1000.0,
        s.p99 * 1000.0,
        s.max * 1000.0
    );
    let stats = worker.stats();
    println!(
        "worker: lag (end of speech → text ready) mean {:?}, max {:?}",
        stats.mean_lag, stats.max_lag
    );
    microphone.stop().await;
    worker.shutdown().await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Where each utterance of the audio ends (seconds from its start), by the same VAD offline.
fn reference_ends(frames: &[Bytes], vad_model: &std::path::Path, min_silence_ms: u64) -> anyhow::Result<Vec<f64>> {
    let t0 = Instant::now();
    let vad = SileroVad::load(&SileroConfig::new(vad_model))?;
    let mut config = SpeakerConfig::default();
    config.segmenter.min_silence = Duration::from_millis(min_silence_ms);
    let mut pipeline = SpeakerPipeline::new("ref", vad, WallClock::at(t0, 0.0), config)?;
    let mut done = Vec::new();
    for (k, payload) in frames.iter().enumerate() {
        let packet = Received {
            participant_id: "ref".into(),
            track_id: "ref".into(),
            kind: MediaKind::Audio,
            ssrc: 1,
            payload_type: 111,
            sequence_number: k as u16,
            timestamp: (960 * k) as u32,
            marker: false,
            payload: payload.clone(),
            arrival: t0 + Duration::from_millis(20 * (k as u64 + 1)),
        };
        done.extend(pipeline.push(&packet)?);
    }
    done.extend(pipeline.flush()?);
    // The cut keeps `padding` of audio after the speech: the speech itself ended that much earlier.
    let padding = SpeakerConfig::default().segmenter.padding.as_secs_f64();
    Ok(done.iter().map(|u| u.end_ms as f64 / 1000.0 - padding).collect())
}

fn whisper(pcm: &[f32], config: &WhisperConfig, runs: usize, language: &str) -> anyhow::Result<()> {
    let seconds = pcm.len() as f64 / 16_000.0;
    let loading = Instant::now();
    let model = WhisperModel::load(config)?;
    let load = loading.elapsed();
    let mut recognizer = model.recognizer()?;
    let language = if language == "auto" {
        Language::Auto
    } else {
        Language::Code(language.to_owned())
    };
    let options = Options {
        language,
        initial_prompt: None,
    };
    println!(
        "model: {} (load {:.2} s, {} threads, gpu {})",
        config.model_path.display(),
        load.as_secs_f64(),
        config.n_threads,
        config.use_gpu
    );
    if model.is_test_only() {
        println!(
            "NOTE: a weightless test model: it runs the whole path but its figures say nothing about a real model"
        );
    }
    let mut rtf = Vec::new();
    for run in 0..runs.max(1) {
        let started = Instant::now();
        let segments = recognizer.transcribe(pcm, &options)?;
        let took = started.elapsed().as_secs_f64();
        rtf.push(took / seconds);
        let text: String = segments.iter().map(|s| s.text.as_str()).collect();
        println!(
            "run {run}: {took:.3} s for {seconds:.2} s of audio (RTF {:.3}): {:?}",
            took / seconds,
            text.trim()
        );
    }
    let s = Summary::of(&mut rtf);
    println!(
        "real-time factor over {} runs: median {:.3}, max {:.3} (below 1: faster than real time)",
        s.count, s.p50, s.max
    );
    Ok(())
}
