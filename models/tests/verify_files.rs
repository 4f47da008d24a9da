//! `verify`/`inspect` on real files: whisper.cpp's weightless test models, the Silero VAD files, and damaged
//! copies (truncated, garbage, HTML) made in a temporary directory.

use std::fs;

use samtal_models::test_data::test_data;
use samtal_models::{Content, Error, SizeClass, inspect, verify};

#[test]
fn dummy_tiny_is_rejected_as_test_only_with_its_hparams() {
    let path = test_data("models/for-tests/for-tests-ggml-tiny.bin");
    let err = verify(&path).expect_err("a weightless file must not verify");
    let Error::TestOnly { hparams, path: p } = &err else {
        panic!("expected TestOnly, got {err}");
    };
    assert_eq!(p, &path);
    assert_eq!(
        (
            hparams.n_vocab,
            hparams.n_audio_ctx,
            hparams.n_audio_state,
            hparams.n_audio_head,
            hparams.n_audio_layer
        ),
        (51865, 1500, 384, 6, 4)
    );
    assert_eq!(
        (
            hparams.n_text_ctx,
            hparams.n_text_state,
            hparams.n_text_head,
            hparams.n_text_layer,
            hparams.n_mels,
            hparams.ftype
        ),
        (448, 384, 6, 4, 80, 1)
    );
    assert_eq!(hparams.size_class(), SizeClass::Tiny);
    assert!(hparams.is_multilingual());
    assert_eq!(hparams.expected_tensor_count(), 167);
    let msg = err.to_string();
    assert!(
        msg.contains("for-tests-ggml-tiny.bin") && msg.contains("test-only"),
        "{msg}"
    );
}

#[test]
fn dummy_tiny_en_is_english_only_and_fully_parsed() {
    let path = test_data("models/for-tests/for-tests-ggml-tiny.en.bin");
    let inspection = inspect(&path).expect("structure parses");
    assert_eq!(inspection.file_size, 586_836);
    let Content::Whisper(w) = inspection.content else {
        panic!("not a Whisper file")
    };
    assert_eq!(w.hparams.n_vocab, 51864);
    assert!(!w.hparams.is_multilingual());
    assert_eq!(w.mel_filters, (80, 201));
    assert_eq!(w.vocab_strings, 50257);
    assert_eq!(w.tensors.count, 0);
    assert!(matches!(verify(&path), Err(Error::TestOnly { .. })));
}

#[test]
fn silero_files_are_recognised_with_version_and_checksum() {
    for (file, version, sha256) in [
        (
            "models/ggml-silero-v6.2.0-for-tests.bin",
            (6, 2, 0),
            "2aa269b785eeb53a82983a20501ddf7c1d9c48e33ab63a41391ac6c9f7fb6987",
        ),
        (
            "models/ggml-silero-v5.1.2-for-tests.bin",
            (5, 1, 2),
            "29940d98d42b91fbd05ce489f3ecf7c72f0a42f027e4875919a28fb4c04ea2cf",
        ),
    ] {
        let info = verify(&test_data(file)).expect("real VAD file verifies");
        let Content::SileroVad(v) = &info.content else {
            panic!("{file}: not recognised as VAD")
        };
        assert_eq!(v.model_type, "silero-16k");
        assert_eq!(v.version, version);
        assert_eq!((v.n_window, v.n_context), (512, 64));
        assert_eq!(v.tensors.count, 15);
        assert!(v.tensors.fully_checked);
        assert_eq!(info.file_size, 885_098);
        assert_eq!(info.checksums.sha256, sha256);
        let name = format!("silero-v{}.{}.{}", version.0, version.1, version.2);
        assert_eq!(info.catalog_entry.map(|e| e.name), Some(name.as_str()));
        assert_eq!(info.size_class(), None);
    }
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ggml-nothing.bin");
    let err = verify(&path).unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err}");
    assert!(err.to_string().contains("ggml-nothing.bin") && err.to_string().contains("missing"));
}

#[test]
fn truncated_copies_report_the_byte_where_they_end() {
    let dir = tempfile::tempdir().unwrap();
    let whisper = fs::read(test_data("models/for-tests/for-tests-ggml-tiny.bin")).unwrap();
    let vad = fs::read(test_data("models/ggml-silero-v6.2.0-for-tests.bin")).unwrap();
    // (source, cut length, words expected in `what`)
    let cases: [(&[u8], usize, &str); 6] = [
        (&whisper, 2, "magic"),
        (&whisper, 30, "hyperparameters"),
        (&whisper, 48 + 8 + 1000, "mel filters"),
        (&whisper, whisper.len() - 3, "vocabulary"),
        (&vad, 100, "VAD"),
        (&vad, vad.len() - 1000, "data of tensor"),
    ];
    for (i, (bytes, len, what)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("cut-{i}.bin"));
        fs::write(&path, &bytes[..len]).unwrap();
        match verify(&path) {
            Err(Error::Truncated {
                at, what: w, needed, ..
            }) => {
                assert_eq!(at, len as u64, "case {i}");
                assert!(needed > at, "case {i}");
                assert!(w.contains(what), "case {i}: {w}");
            }
            other => panic!("case {i}: expected Truncated, got {other:?}"),
        }
    }
    let msg = verify(&dir.path().join("cut-5.bin")).unwrap_err().to_string();
    assert!(
        msg.contains("cut-5.bin") && msg.contains(&format!("truncated at byte {}", vad.len() - 1000)),
        "{msg}"
    );
}

#[test]
fn garbage_and_html_are_not_ggml() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("ggml-tiny.bin");
    fs::write(&html, b"<!DOCTYPE html><html>Not Found</html>").unwrap();
    let err = verify(&html).unwrap_err();
    let Error::NotGgml { found, .. } = &err else {
        panic!("{err}")
    };
    assert!(found.contains("0x4f44213c") && found.contains("<!DO"), "{found}");

    let gguf = dir.path().join("model.gguf");
    fs::write(&gguf, b"GGUF\x03\0\0\0rest").unwrap();
    assert!(verify(&gguf).unwrap_err().to_string().contains("\"GGUF\""));

    // The right magic followed by nonsense hparams.
    let nonsense = dir.path().join("nonsense.bin");
    let mut bytes = 0x6767_6d6cu32.to_le_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(0xffu8, 200));
    fs::write(&nonsense, &bytes).unwrap();
    assert!(matches!(verify(&nonsense), Err(Error::Malformed { .. })));
}

#[test]
fn extra_tensor_data_missing_is_caught() {
    // A header that promises one f32 tensor of 1000 elements but carries only 10 bytes of data.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = fs::read(test_data("models/for-tests/for-tests-ggml-tiny.bin")).unwrap();
    let name = b"encoder.positional_embedding";
    for v in [1i32, name.len() as i32, 0, 1000] {
        bytes.extend(v.to_le_bytes());
    }
    bytes.extend(name);
    bytes.extend([0u8; 10]);
    let path = dir.path().join("short-tensor.bin");
    fs::write(&path, &bytes).unwrap();
    match verify(&path) {
        Err(Error::Truncated { needed, at, what, .. }) => {
            assert_eq!(at, bytes.len() as u64);
            assert_eq!(needed, (bytes.len() - 10 + 4000) as u64);
            assert!(what.contains("encoder.positional_embedding"), "{what}");
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    // The same with complete data: structurally fine, but 1 of 167 tensors.
    let mut whole = bytes[..bytes.len() - 10].to_vec();
    whole.extend(vec![0u8; 4000]);
    fs::write(&path, &whole).unwrap();
    assert!(matches!(
        verify(&path),
        Err(Error::MissingTensors {
            found: 1,
            expected: 167,
            ..
        })
    ));
}

#[test]
fn pinned_file_name_with_other_content_is_a_checksum_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    // v5.1.2's bytes under v6.2.0's catalog file name.
    let path = dir.path().join("ggml-silero-v6.2.0.bin");
    fs::copy(test_data("models/ggml-silero-v5.1.2-for-tests.bin"), &path).unwrap();
    match verify(&path) {
        Err(Error::ChecksumMismatch {
            algorithm,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(algorithm, "sha256");
            assert_eq!(
                expected,
                "2aa269b785eeb53a82983a20501ddf7c1d9c48e33ab63a41391ac6c9f7fb6987"
            );
            assert_eq!(
                actual,
                "29940d98d42b91fbd05ce489f3ecf7c72f0a42f027e4875919a28fb4c04ea2cf"
            );
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
}
