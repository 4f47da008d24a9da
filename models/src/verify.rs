//! Decides whether a file is a usable model: structure (via `ggml::inspect`), weights present, the tensor count
//! whisper.cpp will demand, and checksums against the catalog.
//!
//! This module must never load the model into whisper.cpp and never download anything.

use std::path::{Path, PathBuf};

use crate::catalog::{self, CatalogEntry};
use crate::checksum::{self, Checksums};
use crate::error::{Error, Result};
use crate::ggml::{self, Content, Inspection, SizeClass};

/// What `verify` found out about a usable model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub file_size: u64,
    pub content: Content,
    pub checksums: Checksums,
    /// The catalog entry whose pinned digest this file matches, if any: proof it is that official file.
    pub catalog_entry: Option<&'static CatalogEntry>,
}

impl ModelInfo {
    /// The Whisper size guessed from the hparams; `None` for a VAD model.
    pub fn size_class(&self) -> Option<SizeClass> {
        match &self.content {
            Content::Whisper(w) => Some(w.hparams.size_class()),
            Content::SileroVad(_) => None,
        }
    }

    /// Multilingual (true) or English-only ".en" (false); `None` for a VAD model.
    pub fn multilingual(&self) -> Option<bool> {
        match &self.content {
            Content::Whisper(w) => Some(w.hparams.is_multilingual()),
            Content::SileroVad(_) => None,
        }
    }

    /// One line for humans, e.g. `Whisper base.en (f16, 245 tensors, 147 MB), sha1 137c…, catalog: base.en`.
    pub fn summary(&self) -> String {
        let what = match &self.content {
            Content::Whisper(w) => format!(
                "Whisper {}{} ({}, {} tensors)",
                w.hparams.size_class().name(),
                if w.hparams.is_multilingual() { "" } else { ".en" },
                w.hparams.weight_type().name(),
                w.tensors.count
            ),
            Content::SileroVad(v) => format!(
                "Silero VAD {} v{}.{}.{} ({} tensors)",
                v.model_type, v.version.0, v.version.1, v.version.2, v.tensors.count
            ),
        };
        let origin = match self.catalog_entry {
            Some(e) => format!("matches catalog entry {}", e.name),
            None => "not a pinned catalog file".to_owned(),
        };
        format!(
            "{}: {what}, {} bytes, sha1 {}, sha256 {}, {origin}",
            self.path.display(),
            self.file_size,
            self.checksums.sha1,
            self.checksums.sha256
        )
    }
}

/// Checks `path` without loading it into whisper.
///
/// Fails with: `Missing`, `Unreadable`, `NotGgml`, `Truncated`, `Malformed`, `TestOnly` (no weights),
/// `MissingTensors`, and `ChecksumMismatch`/`SizeMismatch` when the file carries the file name of a pinned
/// catalog entry (e.g. `ggml-base.en.bin`) but not its content.
pub fn verify(path: &Path) -> Result<ModelInfo> {
    let inspection = check_structure(path)?;
    let checksums = checksum::file_checksums(path)?;
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(catalog::find_by_file_name);
    if let Some(entry) = named {
        compare_pinned(path, entry, &checksums)?;
    }
    Ok(info(inspection, checksums))
}

/// Like [`verify`], but the file must be `entry`'s (pinned size and digests), whatever its name.
pub fn verify_as(path: &Path, entry: &CatalogEntry) -> Result<ModelInfo> {
    let inspection = check_structure(path)?;
    let checksums = checksum::file_checksums(path)?;
    compare_pinned(path, entry, &checksums)?;
    Ok(info(inspection, checksums))
}

/// The structural half of [`verify`]: parses the file and refuses weightless or incomplete models. No hashing.
pub fn check_structure(path: &Path) -> Result<Inspection> {
    let inspection = ggml::inspect(path)?;
    match &inspection.content {
        Content::Whisper(w) => {
            if w.tensors.count == 0 {
                return Err(Error::TestOnly {
                    path: path.to_owned(),
                    hparams: w.hparams,
                });
            }
            let expected = w.hparams.expected_tensor_count();
            if w.tensors.fully_checked && w.tensors.count != expected {
                return Err(Error::MissingTensors {
                    path: path.to_owned(),
                    found: w.tensors.count,
                    expected,
                });
            }
        }
        Content::SileroVad(v) => {
            if v.tensors.count == 0 {
                return Err(Error::Malformed {
                    path: path.to_owned(),
                    detail: "Silero VAD file without tensors".to_owned(),
                });
            }
        }
    }
    Ok(inspection)
}

/// Compares size and digests with what `entry` pins; entries without pins accept anything.
pub fn compare_pinned(path: &Path, entry: &CatalogEntry, sums: &Checksums) -> Result<()> {
    if let Some(expected) = entry.exact_size
        && expected != sums.bytes
    {
        return Err(Error::SizeMismatch {
            path: path.to_owned(),
            expected,
            actual: sums.bytes,
        });
    }
    let pins = [("sha256", entry.sha256, &sums.sha256), ("sha1", entry.sha1, &sums.sha1)];
    for (algorithm, pinned, actual) in pins {
        if let Some(expected) = pinned
            && !expected.eq_ignore_ascii_case(actual)
        {
            return Err(Error::ChecksumMismatch {
                path: path.to_owned(),
                algorithm,
                expected: expected.to_owned(),
                actual: actual.clone(),
            });
        }
    }
    Ok(())
}

pub(crate) fn info(inspection: Inspection, checksums: Checksums) -> ModelInfo {
    let catalog_entry = catalog::find_by_digest(&checksums.sha1, &checksums.sha256);
    ModelInfo {
        path: inspection.path,
        file_size: inspection.file_size,
        content: inspection.content,
        checksums,
        catalog_entry,
    }
}
