//! SHA-1 and SHA-256 of a file or a byte stream, computed in one pass.
//!
//! whisper.cpp publishes SHA-1 for its models, Hugging Face shows SHA-256: computing both lets one file be
//! compared with either. This module must never read a whole file into memory.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha1::Digest as _;

use crate::error::{Error, Result};

/// Both digests of some bytes, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksums {
    pub sha1: String,
    pub sha256: String,
    /// How many bytes were hashed.
    pub bytes: u64,
}

/// Incremental hasher for data that arrives in pieces (a download).
#[derive(Default)]
pub struct Hasher {
    sha1: sha1::Sha1,
    sha256: sha2::Sha256,
    bytes: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha1.update(data);
        self.sha256.update(data);
        self.bytes += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn finish(self) -> Checksums {
        Checksums {
            sha1: hex(&self.sha1.finalize()),
            sha256: hex(&self.sha256.finalize()),
            bytes: self.bytes,
        }
    }
}

/// Hashes the file at `path` in 1 MiB pieces.
pub fn file_checksums(path: &Path) -> Result<Checksums> {
    let unreadable = |source| Error::Unreadable {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(unreadable)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_of_abc() {
        let mut h = Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        let c = h.finish();
        assert_eq!(c.sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            c.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(c.bytes, 3);
    }
}
