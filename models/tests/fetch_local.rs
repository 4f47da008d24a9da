//! `fetch_from` against a tiny HTTP server on 127.0.0.1: pinned checksums, HTTP errors, bodies cut short,
//! the atomic rename, and that no temporary file is ever left behind. No real URL is contacted.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use samtal_models::test_data::test_data;
use samtal_models::{Content, Error, catalog, fetch_from};

/// What the test server answers for one path.
#[derive(Clone)]
enum Reply {
    Ok(Vec<u8>),
    /// Announces the full length, sends only `cut` bytes, closes.
    CutShort(Vec<u8>, usize),
    NotFound,
}

/// Serves `reply` for every request; returns the base URL and a request counter.
fn serve(reply: Reply) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                line.clear();
            }
            let _ = match &reply {
                Reply::Ok(body) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(body)),
                Reply::CutShort(body, cut) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&body[..*cut])),
                Reply::NotFound => stream
                    .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"),
            };
        }
    });
    (url, hits)
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".part"))
        .collect()
}

#[test]
fn pinned_download_is_verified_and_renamed_into_place_then_reused() {
    let entry = catalog::find("silero-v6.2.0").unwrap();
    let bytes = fs::read(test_data("models/ggml-silero-v6.2.0-for-tests.bin")).unwrap();
    let (base, hits) = serve(Reply::Ok(bytes.clone()));
    let dir = tempfile::tempdir().unwrap();
    let dest_dir = dir.path().join("models");

    let mut last = (0, None);
    let info = fetch_from(
        entry,
        &format!("{base}/ggml-silero-v6.2.0.bin"),
        &dest_dir,
        &mut |done, total| last = (done, total),
    )
    .expect("download succeeds");
    assert_eq!(last, (885_098, Some(885_098)));
    assert_eq!(info.path, dest_dir.join("ggml-silero-v6.2.0.bin"));
    assert_eq!(fs::read(&info.path).unwrap(), bytes);
    assert_eq!(info.checksums.sha256, entry.sha256.unwrap());
    assert_eq!(info.catalog_entry, Some(entry));
    assert!(matches!(info.content, Content::SileroVad(_)));
    assert!(leftovers(&dest_dir).is_empty());
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Present and valid: no second request.
    let again = fetch_from(entry, &format!("{base}/x"), &dest_dir, &mut |_, _| {}).unwrap();
    assert_eq!(again.path, info.path);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn checksum_mismatch_leaves_nothing_behind() {
    let entry = catalog::find("silero-v6.2.0").unwrap();
    let wrong = fs::read(test_data("models/ggml-silero-v5.1.2-for-tests.bin")).unwrap();
    let (base, _) = serve(Reply::Ok(wrong));
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_from(entry, &format!("{base}/m.bin"), dir.path(), &mut |_, _| {}).unwrap_err();
    match &err {
        Error::ChecksumMismatch { expected, actual, .. } => {
            assert_eq!(
                expected,
                "2aa269b785eeb53a82983a20501ddf7c1d9c48e33ab63a41391ac6c9f7fb6987"
            );
            assert_eq!(
                actual,
                "29940d98d42b91fbd05ce489f3ecf7c72f0a42f027e4875919a28fb4c04ea2cf"
            );
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    assert!(!dir.path().join(entry.file_name).exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn http_errors_and_short_bodies_fail_cleanly() {
    let entry = catalog::find("silero-v6.2.0").unwrap();
    let dir = tempfile::tempdir().unwrap();

    let (base, _) = serve(Reply::NotFound);
    let err = fetch_from(entry, &format!("{base}/missing.bin"), dir.path(), &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(&err, Error::Download { detail, .. } if detail.contains("404")),
        "{err}"
    );

    let bytes = fs::read(test_data("models/ggml-silero-v6.2.0-for-tests.bin")).unwrap();
    let (base, _) = serve(Reply::CutShort(bytes, 100_000));
    let err = fetch_from(entry, &format!("{base}/cut.bin"), dir.path(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, Error::Download { .. }), "{err}");

    assert!(!dir.path().join(entry.file_name).exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn unpinned_entry_still_gets_a_structure_check() {
    // kb-whisper files have no pinned digest: an HTML error page must still be refused.
    let entry = catalog::find("kb-whisper-tiny").unwrap();
    assert!(!entry.is_pinned());
    let (base, _) = serve(Reply::Ok(b"<!DOCTYPE html><title>rate limited</title>".to_vec()));
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_from(entry, &format!("{base}/ggml-model.bin"), dir.path(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, Error::NotGgml { .. }), "{err}");
    assert!(!dir.path().join(entry.file_name).exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn unknown_name_lists_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let err = samtal_models::fetch("tiny.english", dir.path()).unwrap_err();
    assert!(matches!(err, Error::UnknownModel { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("tiny.english") && msg.contains("tiny.en,") && msg.contains("kb-whisper-large"),
        "{msg}"
    );
}
