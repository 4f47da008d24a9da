//! Downloads a catalog model from its official URL into a directory: streams to a hidden temporary file in the
//! same directory while hashing, checks pinned size/digests and the file structure, then renames into place, so
//! a model path never holds a partial or unverified file.
//!
//! This module must never be reached by tests with a real URL, never follow a URL that is not in the catalog
//! unless the caller passes one explicitly (`fetch_from`, for tests and mirrors), and never leave a temp file
//! behind on failure.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::catalog::{self, CatalogEntry};
use crate::checksum::Hasher;
use crate::error::{Error, Result};
use crate::verify::{self, ModelInfo};

/// Progress callback: bytes received so far, total when the server announced it.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>);

/// Downloads catalog model `name` into `dest_dir` (created if needed) as `entry.file_name`.
/// A file already there that passes [`verify::verify_as`] is kept and returned without a download.
pub fn fetch(name: &str, dest_dir: &Path) -> Result<ModelInfo> {
    let entry = catalog::find(name).ok_or_else(|| Error::UnknownModel {
        name: name.to_owned(),
        known: catalog::known_names(),
    })?;
    fetch_from(entry, entry.url, dest_dir, &mut |_, _| {})
}

/// [`fetch`] with a progress callback (bytes so far, total if announced), for a CLI progress bar.
pub fn fetch_with_progress(name: &str, dest_dir: &Path, progress: Progress<'_>) -> Result<ModelInfo> {
    let entry = catalog::find(name).ok_or_else(|| Error::UnknownModel {
        name: name.to_owned(),
        known: catalog::known_names(),
    })?;
    fetch_from(entry, entry.url, dest_dir, progress)
}

/// Downloads `entry` from `url` (its official URL, a mirror, or a local test server) into `dest_dir`.
pub fn fetch_from(entry: &CatalogEntry, url: &str, dest_dir: &Path, progress: Progress<'_>) -> Result<ModelInfo> {
    fs::create_dir_all(dest_dir).map_err(|source| Error::Write {
        path: dest_dir.to_owned(),
        action: "creating the model directory",
        source,
    })?;
    let dest = dest_dir.join(entry.file_name);
    if dest.exists()
        && let Ok(info) = verify::verify_as(&dest, entry)
    {
        return Ok(info);
    }

    let temp = TempFile(dest_dir.join(format!(".{}.part-{}", entry.file_name, std::process::id())));
    let sums = download(url, &temp.0, progress)?;
    verify::compare_pinned(&temp.0, entry, &sums)?;
    let inspection = verify::check_structure(&temp.0)?;
    fs::rename(&temp.0, &dest).map_err(|source| Error::Write {
        path: dest.clone(),
        action: "renaming the download into place",
        source,
    })?;
    temp.disarm();
    let mut info = verify::info(inspection, sums);
    info.path = dest;
    Ok(info)
}

/// GETs `url` into `path`, hashing on the way. Fails on HTTP errors and on bodies cut short.
fn download(url: &str, path: &Path, progress: Progress<'_>) -> Result<crate::checksum::Checksums> {
    let failed = |detail: String| Error::Download {
        url: url.to_owned(),
        detail,
    };
    let agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("samtal-models/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => failed(format!("HTTP status {code}")),
        other => failed(other.to_string()),
    })?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = response.into_body().into_reader();

    let write_err = |source| Error::Write {
        path: path.to_owned(),
        action: "writing the download",
        source,
    };
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(write_err)?);
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| failed(format!("reading the body: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(write_err)?;
        progress(hasher.bytes(), total);
    }
    let file = out.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(write_err)?;
    let sums = hasher.finish();
    if let Some(total) = total
        && total != sums.bytes
    {
        return Err(failed(format!("body ended after {} of {total} bytes", sums.bytes)));
    }
    Ok(sums)
}

/// Removes the temporary download unless it was renamed into place.
struct TempFile(PathBuf);

impl TempFile {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
