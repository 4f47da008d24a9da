//! The recognition pool with the ScriptedRecognizer test double: finals are never dropped (backpressure),
//! interims are, finals go first, metrics add up, and recognition never blocks the async runtime.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use samtal_transcriber::pool::{Job, PoolConfig, Priority, RecognitionPool, Recognized};
use samtal_transcriber::recognize::{Options, Recognizer, ScriptedRecognizer};
use tokio::sync::mpsc;

fn job(speaker: &str, utterance: u64, seconds: f64) -> Job {
    Job {
        speaker: speaker.into(),
        utterance,
        start_sample: utterance * 16_000,
        pcm: vec![0.0; (seconds * 16_000.0) as usize],
        options: Options::default(),
    }
}

fn pool(config: PoolConfig, delay: Duration, results: usize) -> (RecognitionPool, mpsc::Receiver<Recognized>) {
    let (tx, rx) = mpsc::channel(results);
    let pool = RecognitionPool::start(config, tx, move |_| {
        Ok(Box::new(ScriptedRecognizer::always("text").with_delay(delay)) as Box<dyn Recognizer>)
    })
    .unwrap();
    (pool, rx)
}

#[tokio::test(flavor = "current_thread")]
async fn finals_are_never_dropped_and_submitters_wait_for_room() {
    let config = PoolConfig {
        workers: 1,
        final_capacity: 2,
        interim_capacity: 1,
    };
    let (pool, mut rx) = pool(config, Duration::from_millis(20), 1);
    let collector = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(r) = rx.recv().await {
            got.push((r.utterance, r.priority, r.result.unwrap()[0].text.clone()));
            if got.len() == 20 {
                break;
            }
        }
        got
    });
    let began = Instant::now();
    let mut max_queued = 0;
    for i in 0..20 {
        pool.submit_final(job("anna", i, 1.0)).await.unwrap();
        max_queued = max_queued.max(pool.stats().queued_finals);
    }
    // 20 jobs × 20 ms on one worker: submitting had to wait for the worker.
    assert!(
        began.elapsed() >= Duration::from_millis(300),
        "no backpressure: {:?}",
        began.elapsed()
    );
    assert!(max_queued <= 2, "queue grew to {max_queued}");
    let got = collector.await.unwrap();
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        (0..20).collect::<Vec<_>>(),
        "all finals, in order"
    );
    assert!(got.iter().all(|g| g.1 == Priority::Final && g.2 == "text"));
    pool.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn interims_are_dropped_under_load_and_finals_go_first() {
    let config = PoolConfig {
        workers: 1,
        final_capacity: 8,
        interim_capacity: 2,
    };
    let (pool, mut rx) = pool(config, Duration::from_millis(150), 16);
    // Occupy the worker.
    pool.submit_final(job("anna", 0, 1.0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(pool.stats().busy_workers, 1);
    // Five interims of anna: each replaces the previous one. Two of bo and cem: the queue holds two.
    for u in 1..=5 {
        assert!(pool.submit_interim(job("anna", u, 0.5)).unwrap());
    }
    pool.submit_interim(job("bo", 1, 0.5)).unwrap();
    pool.submit_interim(job("cem", 1, 0.5)).unwrap();
    // A final submitted after them still runs before them.
    pool.submit_final(job("bo", 2, 1.0)).await.unwrap();
    let stats = pool.stats();
    assert_eq!((stats.queued_finals, stats.queued_interims), (1, 2));
    assert_eq!(
        stats.dropped_interims, 5,
        "4 replaced anna interims + anna's last one pushed out by cem"
    );
    assert!(stats.oldest_wait > Duration::ZERO);
    assert_eq!(stats.queued_audio, Duration::from_secs(2));

    let mut order = Vec::new();
    for _ in 0..4 {
        let r = rx.recv().await.unwrap();
        order.push((r.speaker, r.utterance, r.priority));
    }
    assert_eq!(
        order,
        [
            ("anna".to_string(), 0, Priority::Final),
            ("bo".to_string(), 2, Priority::Final),
            ("bo".to_string(), 1, Priority::Interim),
            ("cem".to_string(), 1, Priority::Interim),
        ]
    );
    let stats = pool.stats();
    assert_eq!((stats.completed_finals, stats.completed_interims), (2, 2));
    pool.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn slow_recognition_does_not_block_the_runtime() {
    let config = PoolConfig {
        workers: 2,
        final_capacity: 4,
        interim_capacity: 0,
    };
    let (pool, mut rx) = pool(config, Duration::from_millis(400), 4);
    pool.submit_final(job("anna", 0, 1.0)).await.unwrap();
    pool.submit_final(job("bo", 0, 1.0)).await.unwrap();
    // On this single-threaded runtime a 10 ms ticker keeps ticking while both workers are busy.
    let mut ticks = 0;
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        interval.tick().await;
        ticks += 1;
    }
    assert!(ticks >= 20, "runtime starved: {ticks} ticks in 300 ms");
    assert_eq!(pool.stats().busy_workers, 2, "two workers recognise in parallel");
    let a = rx.recv().await.unwrap();
    let b = rx.recv().await.unwrap();
    assert!(a.took >= Duration::from_millis(400) && b.took >= Duration::from_millis(400));
    assert_eq!(a.audio, Duration::from_secs(1));
    // Interim capacity 0: interims are refused at once.
    assert!(!pool.submit_interim(job("anna", 1, 0.5)).unwrap());
    pool.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_finishes_queued_finals_and_closes_the_results() {
    let recognizer = ScriptedRecognizer::always("x").with_delay(Duration::from_millis(30));
    let calls = recognizer.calls();
    let (tx, mut rx) = mpsc::channel(16);
    let pool = RecognitionPool::start(PoolConfig::default(), tx, move |_| {
        Ok(Box::new(recognizer.clone()) as Box<dyn Recognizer>)
    })
    .unwrap();
    for i in 0..5 {
        pool.submit_final(job("anna", i, 1.0)).await.unwrap();
    }
    pool.shutdown().await;
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let mut n = 0;
    while rx.recv().await.is_some() {
        n += 1;
    }
    assert_eq!(n, 5, "every final delivered, then the channel closes");
}

#[test]
fn a_failing_recognizer_fails_start() {
    let (tx, _rx) = mpsc::channel(1);
    let err = RecognitionPool::start(PoolConfig::default(), tx, |_| {
        Err(samtal_transcriber::Error::Config("no model".into()))
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("no model"));
}
