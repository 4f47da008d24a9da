//! Silero VAD through whisper.cpp (whisper-rs 0.16 `WhisperVadContext`), checked with samtal-models first.
//!
//! One loaded model is shared by clones (`Arc<Mutex<_>>`): `whisper_vad_detect_speech` resets the LSTM state at
//! every call, so calls from different speakers do not influence each other. Thread count defaults to 1: the
//! whisper.cpp default of 4 spin-waits on small machines (77 s instead of 0.03 s for 11 s of audio on 2 cores).
//! This module must never segment (that is `segmenter`) and never hold the lock across anything but one call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use whisper_rs::{WhisperVadContext, WhisperVadContextParams};

use super::SpeechDetector;
use crate::error::{Error, Result};

/// How to run the VAD model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SileroConfig {
    /// Path to a whisper.cpp Silero VAD file (e.g. `ggml-silero-v6.2.0.bin`).
    pub model_path: PathBuf,
    /// CPU threads per detection call; keep at 1–2.
    pub n_threads: u16,
    /// Run on the GPU when whisper.cpp was built with one. The network is tiny: CPU is usually faster.
    pub use_gpu: bool,
}

impl SileroConfig {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            n_threads: 1,
            use_gpu: false,
        }
    }
}

/// A loaded Silero VAD model; cheap to clone, clones share the model.
#[derive(Clone)]
pub struct SileroVad {
    ctx: Arc<Mutex<WhisperVadContext>>,
    window: usize,
}

impl SileroVad {
    /// Verifies the file (must be a Silero VAD ggml file) and loads it.
    pub fn load(config: &SileroConfig) -> Result<Self> {
        if config.n_threads == 0 {
            return Err(Error::Config("VAD n_threads must be at least 1".into()));
        }
        let path = &config.model_path;
        let info = match samtal_models::verify(path) {
            Ok(info) => info,
            // A weightless Whisper test file: say it is the wrong kind rather than "cannot transcribe".
            Err(samtal_models::Error::TestOnly { .. }) => {
                return Err(Error::WrongModelKind {
                    path: path.clone(),
                    detail: "is a Whisper test model, not a Silero VAD model".into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let samtal_models::Content::SileroVad(vad) = &info.content else {
            return Err(Error::WrongModelKind {
                path: path.clone(),
                detail: "is a Whisper speech-recognition model, not a Silero VAD model".into(),
            });
        };
        let window = usize::try_from(vad.n_window)
            .ok()
            .filter(|&w| w > 0)
            .ok_or_else(|| Error::WrongModelKind {
                path: path.clone(),
                detail: format!("VAD window of {} samples", vad.n_window),
            })?;
        crate::recognize::install_whisper_log_hooks();
        let mut params = WhisperVadContextParams::default();
        params.set_n_threads(config.n_threads as i32);
        params.set_use_gpu(config.use_gpu);
        let ctx = WhisperVadContext::new(&path_str(path)?, params).map_err(|e| Error::WhisperInit {
            path: path.clone(),
            action: "load the VAD model",
            detail: format!("{e:?}"),
        })?;
        Ok(Self {
            ctx: Arc::new(Mutex::new(ctx)),
            window,
        })
    }
}

impl SpeechDetector for SileroVad {
    fn window_samples(&self) -> usize {
        self.window
    }

    fn detect(&mut self, samples: &[f32]) -> Result<Vec<f32>> {
        if samples.is_empty() {
            return Ok(Vec::new());
        }
        let mut ctx = self.ctx.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        ctx.detect_speech(samples).map_err(|e| Error::Vad(format!("{e:?}")))?;
        Ok(ctx.probabilities().to_vec())
    }
}

pub(crate) fn path_str(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::Config(format!("model path {} is not valid UTF-8", path.display())))
}
