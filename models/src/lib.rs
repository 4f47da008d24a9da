//! samtal-models: which Whisper and Silero VAD model files Samtal knows, where they come from, and whether a
//! file on disk is one of them — checked cheaply, without loading it into whisper.cpp.
//!
//! * [`catalog`]: name → official URL, size, pinned checksums.
//! * [`verify`] / [`verify_as`]: structure (ggml magic, hparams, mel filters, vocabulary, tensors), refusal of
//!   weightless test files and truncated files, checksums.
//! * [`inspect`]: the raw structure of a ggml file, test-only files included.
//! * [`test_data`]: where tests and benchmarks find model files and speech outside the repository.
//! * [`fetch`]: download from the catalog URL with checksum verification and an atomic rename.
//!
//! The crate never loads weights and never contacts the network except inside `fetch`.

pub mod catalog;
pub mod checksum;
pub mod error;
pub mod fetch;
pub mod ggml;
pub mod test_data;
pub mod verify;

pub use catalog::{CatalogEntry, Family, catalog, find};
pub use checksum::Checksums;
pub use error::{Error, Result};
pub use fetch::{Progress, fetch, fetch_from, fetch_with_progress};
pub use ggml::{
    Content, Inspection, SileroVadFile, SizeClass, TensorSummary, WeightType, WhisperFile, WhisperHparams, inspect,
};
pub use verify::{ModelInfo, check_structure, verify, verify_as};
