//! Acceptance test 1: the whole whisper-rs path — verify, context, state, inference on jfk.wav — with
//! whisper.cpp's weightless `for-tests-ggml-tiny.bin`. It must be refused in normal use and, through the
//! explicit test escape hatch, run to an empty result.

mod common;

use common::{read_wav_16k, test_data};
use samtal_transcriber::Error;
use samtal_transcriber::recognize::{Language, Options, Recognizer, WhisperConfig, WhisperModel};

#[test]
fn samtal_models_rejects_the_dummy_as_test_only() {
    let err = samtal_models::verify(&test_data("models/for-tests/for-tests-ggml-tiny.bin")).unwrap_err();
    assert!(matches!(err, samtal_models::Error::TestOnly { .. }), "{err}");
}

#[test]
fn normal_use_refuses_the_dummy_with_a_clear_message() {
    let cfg = WhisperConfig::new(test_data("models/for-tests/for-tests-ggml-tiny.bin"));
    let err = WhisperModel::load(&cfg)
        .err()
        .expect("a test-only model must not load by default");
    assert!(
        matches!(err, Error::Model(samtal_models::Error::TestOnly { .. })),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("test-only model, has no weights") && msg.contains("for-tests-ggml-tiny.bin"),
        "{msg}"
    );
}

#[test]
fn escape_hatch_runs_context_state_and_inference_to_an_empty_result() {
    let cfg = WhisperConfig {
        allow_test_model: true,
        n_threads: 2,
        ..WhisperConfig::new(test_data("models/for-tests/for-tests-ggml-tiny.bin"))
    };
    let model = WhisperModel::load(&cfg).expect("loads through the escape hatch");
    assert!(model.is_test_only());
    assert!(model.is_multilingual());
    let mut recognizer = model.recognizer().expect("create_state succeeds even without weights");

    let pcm = read_wav_16k("audio/jfk.wav");
    let english = Options {
        language: Language::Code("en".into()),
        initial_prompt: Some("Kennedy".into()),
    };
    let segments = recognizer.transcribe(&pcm, &english).expect("inference runs");
    assert!(segments.is_empty(), "a weightless model produced text: {segments:?}");

    // Auto-detection, a short clip (padded internally) and empty input take the same path.
    assert!(
        recognizer
            .transcribe(&pcm[..4_000], &Options::default())
            .unwrap()
            .is_empty()
    );
    assert!(recognizer.transcribe(&[], &Options::default()).unwrap().is_empty());
    // A language Whisper does not know is a configuration error, not a crash.
    let bad = Options {
        language: Language::Code("xx-nope".into()),
        ..Options::default()
    };
    assert!(matches!(recognizer.transcribe(&pcm, &bad), Err(Error::Config(_))));
}

#[test]
fn english_only_dummy_refuses_swedish() {
    let cfg = WhisperConfig {
        allow_test_model: true,
        ..WhisperConfig::new(test_data("models/for-tests/for-tests-ggml-tiny.en.bin"))
    };
    let model = WhisperModel::load(&cfg).unwrap();
    assert!(!model.is_multilingual());
    let mut r = model.recognizer().unwrap();
    let sv = Options {
        language: Language::Code("sv".into()),
        ..Options::default()
    };
    let err = r.transcribe(&[0.0; 16_000], &sv).unwrap_err();
    assert!(err.to_string().contains("English-only"), "{err}");
}

#[test]
fn wrong_or_missing_files_are_named() {
    let vad = WhisperConfig::new(test_data("models/ggml-silero-v6.2.0-for-tests.bin"));
    let err = WhisperModel::load(&vad).err().unwrap();
    assert!(matches!(err, Error::WrongModelKind { .. }), "{err}");

    let missing = WhisperConfig::new(std::env::temp_dir().join("samtal-no-such-model.bin"));
    let err = WhisperModel::load(&missing).err().unwrap();
    assert!(
        err.to_string()
            .contains("samtal-no-such-model.bin: model file is missing"),
        "{err}"
    );
}
