//! A paced microphone: sends one 20 ms Opus frame every 20 ms on a participant's audio track —
//! silence, or speech that was queued with [`Microphone::say`] — like a real capture device whose
//! packets leave on a fixed clock whatever happens to one of them. Tests and benchmarks use it to
//! speak recorded audio into a meeting and to know, on the wall clock, when each utterance went out.

use crate::Participant;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// 48 kHz samples in one 20 ms frame.
const FRAME_SAMPLES: u32 = 960;
const FRAME: Duration = Duration::from_millis(20);

type Speech = (Vec<Bytes>, oneshot::Sender<i64>);

/// Handle to a running microphone; dropping it (or [`Microphone::stop`]) stops sending.
pub struct Microphone {
    say: mpsc::UnboundedSender<Speech>,
    task: tokio::task::JoinHandle<()>,
}

impl Microphone {
    /// Starts sending `silence` (one encoded 20 ms frame) on `participant`'s audio track, from now on.
    pub fn start(participant: Arc<Participant>, silence: Bytes) -> Microphone {
        let (say, said) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(participant, silence, said));
        Microphone { say, task }
    }

    /// Queues `frames` (20 ms Opus frames) after whatever is queued. Returns the wall-clock time, in
    /// milliseconds since the Unix epoch, at which the first of them went out on the 20 ms schedule
    /// (which the RTP timestamps follow); `None` if the microphone has stopped.
    pub async fn say(&self, frames: Vec<Bytes>) -> Option<i64> {
        let (tx, rx) = oneshot::channel();
        self.say.send((frames, tx)).ok()?;
        rx.await.ok()
    }

    /// Stops sending (and waits until the last packet is out).
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Microphone {
    fn drop(&mut self) {
        self.task.abort();
    }
}

use samtal_protocol::unix_ms;

/// Frame k goes out at start + 20k ms (a late frame catches up rather than shifting the schedule).
async fn run(participant: Arc<Participant>, silence: Bytes, mut said: mpsc::UnboundedReceiver<Speech>) {
    let (start, start_ms) = (tokio::time::Instant::now(), unix_ms());
    let mut queue: VecDeque<(Bytes, Option<oneshot::Sender<i64>>)> = VecDeque::new();
    for k in 0u32.. {
        tokio::time::sleep_until(start + FRAME * k).await;
        while let Ok((frames, report)) = said.try_recv() {
            let mut report = Some(report);
            for frame in frames {
                queue.push_back((frame, report.take()));
            }
        }
        let (frame, report) = queue.pop_front().unwrap_or_else(|| (silence.clone(), None));
        if let Some(report) = report {
            let _ = report.send(start_ms + 20 * i64::from(k));
        }
        // Like a real microphone, keep going whatever happened to one packet.
        let _ = participant.send_audio_payload(frame, FRAME_SAMPLES, None).await;
    }
}
