//! The whisper.cpp recognizer (whisper-rs 0.16): one [`WhisperModel`] per process holds the weights,
//! each worker thread gets its own [`WhisperRecognizer`] (a whisper state) from it.
//!
//! Models are checked with `samtal_models::verify` before whisper.cpp sees them. whisper.cpp's weightless
//! `for-tests-ggml-*.bin` files are refused as "test-only" unless [`WhisperConfig::allow_test_model`] is set.
//! What really happens with such a file (whisper.cpp 1.8.3 in whisper-rs-sys 0.15): the context loads with a
//! warning, `create_state` succeeds, and `full` returns Ok with zero segments after trying every fallback
//! temperature — so with the escape hatch the whole path runs and yields no text.
//!
//! This module must never run on an async task (inference takes seconds), never download models, and never
//! print to stderr (whisper.cpp logs go to `tracing`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use samtal_models::{Content, ModelInfo};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState};

use super::{Language, Options, Recognizer, Segment, install_whisper_log_hooks};
use crate::audio::SAMPLE_RATE;
use crate::error::{Error, Result};

/// How to load and run a Whisper model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhisperConfig {
    /// A whisper.cpp ggml model file (e.g. `ggml-base.bin`, `kb-whisper-small.bin`).
    pub model_path: PathBuf,
    /// CPU threads per inference (per worker). Workers × threads should not exceed the free cores.
    pub n_threads: u16,
    /// Use the GPU back-end whisper.cpp was built with (features `cuda`, `vulkan`); ignored on CPU builds.
    pub use_gpu: bool,
    pub gpu_device: i32,
    pub flash_attn: bool,
    /// TEST ESCAPE HATCH: accept weightless test models (they load, run and return no text).
    pub allow_test_model: bool,
}

impl WhisperConfig {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            n_threads: 2,
            use_gpu: cfg!(any(feature = "cuda", feature = "vulkan")),
            gpu_device: 0,
            flash_attn: false,
            allow_test_model: false,
        }
    }
}

/// A loaded, verified Whisper model, shared by all recognizers made from it.
pub struct WhisperModel {
    ctx: Arc<WhisperContext>,
    config: WhisperConfig,
    multilingual: bool,
    /// `None` for an accepted test-only file (no weights, no checksum computed).
    info: Option<ModelInfo>,
}

impl WhisperModel {
    /// Verifies the file with samtal-models, then loads it into whisper.cpp.
    pub fn load(config: &WhisperConfig) -> Result<Self> {
        if config.n_threads == 0 {
            return Err(Error::Config("whisper n_threads must be at least 1".into()));
        }
        let path = &config.model_path;
        let (multilingual, info) = match samtal_models::verify(path) {
            Ok(info) => match &info.content {
                Content::Whisper(w) => (w.hparams.is_multilingual(), Some(info)),
                Content::SileroVad(_) => {
                    return Err(Error::WrongModelKind {
                        path: path.clone(),
                        detail: "is a Silero VAD model, not a Whisper speech-recognition model".into(),
                    });
                }
            },
            Err(samtal_models::Error::TestOnly { hparams, .. }) if config.allow_test_model => {
                tracing::warn!(path = %path.display(), "loading a test-only Whisper model: it will produce no text");
                (hparams.is_multilingual(), None)
            }
            Err(e) => return Err(e.into()),
        };
        install_whisper_log_hooks();
        let mut params = WhisperContextParameters::default();
        params
            .use_gpu(config.use_gpu)
            .gpu_device(config.gpu_device)
            .flash_attn(config.flash_attn);
        let ctx = WhisperContext::new_with_params(path, params).map_err(|e| Error::WhisperInit {
            path: path.clone(),
            action: "load the model",
            detail: format!("{e:?}"),
        })?;
        Ok(Self {
            ctx: Arc::new(ctx),
            config: config.clone(),
            multilingual,
            info,
        })
    }

    /// A recognizer with its own decoding state (one per worker thread).
    pub fn recognizer(&self) -> Result<WhisperRecognizer> {
        let state = self.ctx.create_state().map_err(|e| Error::WhisperInit {
            path: self.config.model_path.clone(),
            action: "create a decoding state",
            detail: format!("{e:?}"),
        })?;
        Ok(WhisperRecognizer {
            state,
            eot: self.ctx.token_eot(),
            multilingual: self.multilingual,
            n_threads: self.config.n_threads,
        })
    }

    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    /// True when this is an accepted weightless test file.
    pub fn is_test_only(&self) -> bool {
        self.info.is_none()
    }

    /// What samtal-models found (size class, checksums, catalog entry); `None` for a test-only file.
    pub fn info(&self) -> Option<&ModelInfo> {
        self.info.as_ref()
    }
}

/// One whisper decoding state; not shareable between threads at the same time.
pub struct WhisperRecognizer {
    state: WhisperState,
    eot: i32,
    multilingual: bool,
    n_threads: u16,
}

/// Whisper handles anything from 100 ms, but decodes short clips poorly: pad them with silence to 1 s.
const MIN_INPUT: usize = SAMPLE_RATE as usize;

impl Recognizer for WhisperRecognizer {
    fn transcribe(&mut self, pcm: &[f32], opts: &Options) -> Result<Vec<Segment>> {
        if pcm.is_empty() {
            return Ok(Vec::new());
        }
        let language = match &opts.language {
            Language::Code(code) => {
                if whisper_rs::get_lang_id(code).is_none() {
                    return Err(Error::Config(format!(
                        "Whisper does not know the language code {code:?}"
                    )));
                }
                if !self.multilingual && code != "en" {
                    return Err(Error::Config(format!(
                        "language {code:?} requested from an English-only (.en) model"
                    )));
                }
                code.as_str()
            }
            Language::Auto if self.multilingual => "auto",
            Language::Auto => "en",
        };
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.n_threads as i32);
        params.set_language(Some(language));
        params.set_translate(false);
        params.set_no_context(true);
        params.set_suppress_blank(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        if let Some(prompt) = &opts.initial_prompt {
            params.set_initial_prompt(&prompt.replace('\0', " "));
        }

        let padded;
        let input = if pcm.len() < MIN_INPUT {
            padded = [pcm, &vec![0.0; MIN_INPUT - pcm.len()]].concat();
            &padded[..]
        } else {
            pcm
        };
        self.state
            .full(params, input)
            .map_err(|e| Error::Inference(format!("{e:?}")))?;

        let detected = whisper_rs::get_lang_str(self.state.full_lang_id_from_state()).map(str::to_owned);
        let mut segments = Vec::new();
        for segment in self.state.as_iter() {
            let text = segment
                .to_str_lossy()
                .map_err(|e| Error::Inference(format!("segment text: {e:?}")))?
                .trim()
                .to_owned();
            if text.is_empty() {
                continue;
            }
            let probabilities: Vec<f32> = (0..segment.n_tokens())
                .filter_map(|i| segment.get_token(i))
                .filter(|t| t.token_id() < self.eot)
                .map(|t| t.token_probability())
                .collect();
            let confidence = if probabilities.is_empty() {
                0.0
            } else {
                probabilities.iter().sum::<f32>() / probabilities.len() as f32
            };
            let centis = |cs: i64| Duration::from_millis(cs.max(0) as u64 * 10);
            let audio_end = Duration::from_secs_f64(pcm.len() as f64 / SAMPLE_RATE as f64);
            segments.push(Segment {
                text,
                start: centis(segment.start_timestamp()).min(audio_end),
                end: centis(segment.end_timestamp()).min(audio_end),
                language: detected.clone(),
                confidence,
            });
        }
        Ok(segments)
    }
}
