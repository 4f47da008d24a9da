//! The catalog of model files Samtal knows by name: where each is downloaded from (official sources only),
//! its local file name, approximate size and the checksums that could be sourced reliably.
//!
//! Checksums come from whisper.cpp's `models/README.md` (SHA-1 of its converted models) and, for the Silero VAD
//! files, from SHA-256 digests computed over copies taken from whisper.cpp's own repository. Everything else is
//! "not pinned": `fetch` then checks only the file structure. This module must never hold an unverified
//! checksum or a mirror URL; add an entry only with a source for it in models/README.md.

/// Which family a catalog entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// whisper.cpp's conversions of OpenAI Whisper, hosted at huggingface.co/ggerganov/whisper.cpp.
    WhisperCpp,
    /// KBLab's (National Library of Sweden) Swedish fine-tunes, ggml files in huggingface.co/KBLab/kb-whisper-*.
    KbWhisper,
    /// Silero voice activity detection in whisper.cpp's ggml format, huggingface.co/ggml-org/whisper-vad.
    SileroVad,
}

/// One downloadable model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The name users type: `samtal models fetch NAME`.
    pub name: &'static str,
    pub family: Family,
    /// File name `fetch` stores it under.
    pub file_name: &'static str,
    /// Official download URL.
    pub url: &'static str,
    /// Language coverage: "multilingual", "en" or "sv".
    pub languages: &'static str,
    /// Approximate size as published (MiB), for display; `None` when no source gives one.
    pub approx_size_mib: Option<u32>,
    /// Exact size in bytes, when known.
    pub exact_size: Option<u64>,
    /// Pinned SHA-1 (hex), when sourced.
    pub sha1: Option<&'static str>,
    /// Pinned SHA-256 (hex), when sourced.
    pub sha256: Option<&'static str>,
}

impl CatalogEntry {
    /// True when a download of this entry can be checked against a pinned digest.
    pub fn is_pinned(&self) -> bool {
        self.sha1.is_some() || self.sha256.is_some()
    }
}

#[cfg(test)]
const HF_WHISPER_CPP: &str = "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/";

macro_rules! whisper_cpp {
    ($name:literal, $lang:literal, $mib:expr, $sha1:expr) => {
        CatalogEntry {
            name: $name,
            family: Family::WhisperCpp,
            file_name: concat!("ggml-", $name, ".bin"),
            url: concat!(
                "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-",
                $name,
                ".bin"
            ),
            languages: $lang,
            approx_size_mib: $mib,
            exact_size: None,
            sha1: $sha1,
            sha256: None,
        }
    };
}

macro_rules! kb_whisper {
    ($size:literal, q5_0) => {
        CatalogEntry {
            name: concat!("kb-whisper-", $size, "-q5_0"),
            family: Family::KbWhisper,
            file_name: concat!("kb-whisper-", $size, "-q5_0.bin"),
            url: concat!(
                "https://huggingface.co/KBLab/kb-whisper-",
                $size,
                "/resolve/main/ggml-model-q5_0.bin"
            ),
            languages: "sv",
            approx_size_mib: None,
            exact_size: None,
            sha1: None,
            sha256: None,
        }
    };
    ($size:literal, $mib:expr) => {
        CatalogEntry {
            name: concat!("kb-whisper-", $size),
            family: Family::KbWhisper,
            file_name: concat!("kb-whisper-", $size, ".bin"),
            url: concat!(
                "https://huggingface.co/KBLab/kb-whisper-",
                $size,
                "/resolve/main/ggml-model.bin"
            ),
            languages: "sv",
            approx_size_mib: $mib,
            exact_size: None,
            sha1: None,
            sha256: None,
        }
    };
}

macro_rules! silero {
    ($version:literal, $sha256:literal) => {
        CatalogEntry {
            name: concat!("silero-", $version),
            family: Family::SileroVad,
            file_name: concat!("ggml-silero-", $version, ".bin"),
            url: concat!(
                "https://huggingface.co/ggml-org/whisper-vad/resolve/main/ggml-silero-",
                $version,
                ".bin"
            ),
            languages: "multilingual",
            approx_size_mib: Some(1),
            exact_size: Some(885_098),
            sha1: None,
            sha256: Some($sha256),
        }
    };
}

static CATALOG: &[CatalogEntry] = &[
    // SHA-1 and sizes from whisper.cpp models/README.md ("Available models").
    whisper_cpp!(
        "tiny",
        "multilingual",
        Some(75),
        Some("bd577a113a864445d4c299885e0cb97d4ba92b5f")
    ),
    whisper_cpp!(
        "tiny.en",
        "en",
        Some(75),
        Some("c78c86eb1a8faa21b369bcd33207cc90d64ae9df")
    ),
    whisper_cpp!(
        "base",
        "multilingual",
        Some(142),
        Some("465707469ff3a37a2b9b8d8f89f2f99de7299dac")
    ),
    whisper_cpp!(
        "base.en",
        "en",
        Some(142),
        Some("137c40403d78fd54d454da0f9bd998f78703390c")
    ),
    whisper_cpp!(
        "small",
        "multilingual",
        Some(466),
        Some("55356645c2b361a969dfd0ef2c5a50d530afd8d5")
    ),
    whisper_cpp!(
        "small.en",
        "en",
        Some(466),
        Some("db8a495a91d927739e50b3fc1cc4c6b8f6c2d022")
    ),
    whisper_cpp!(
        "medium",
        "multilingual",
        Some(1536),
        Some("fd9727b6e1217c2f614f9b698455c4ffd82463b4")
    ),
    whisper_cpp!(
        "medium.en",
        "en",
        Some(1536),
        Some("8c30f0e44ce9560643ebd10bbe50cd20eafd3723")
    ),
    whisper_cpp!(
        "large-v1",
        "multilingual",
        Some(2970),
        Some("b1caaf735c4cc1429223d5a74f0f4d0b9b59a299")
    ),
    whisper_cpp!(
        "large-v2",
        "multilingual",
        Some(2970),
        Some("0f4c8e34f21cf1a914c59d8b3ce882345ad349d6")
    ),
    whisper_cpp!(
        "large-v2-q5_0",
        "multilingual",
        Some(1126),
        Some("00e39f2196344e901b3a2bd5814807a769bd1630")
    ),
    whisper_cpp!(
        "large-v3",
        "multilingual",
        Some(2970),
        Some("ad82bf6a9043ceed055076d0fd39f5f186ff8062")
    ),
    whisper_cpp!(
        "large-v3-q5_0",
        "multilingual",
        Some(1126),
        Some("e6e2ed78495d403bef4b7cff42ef4aaadcfea8de")
    ),
    whisper_cpp!(
        "large-v3-turbo",
        "multilingual",
        Some(1536),
        Some("4af2b29d7ec73d781377bfd1758ca957a807e941")
    ),
    whisper_cpp!(
        "large-v3-turbo-q5_0",
        "multilingual",
        Some(547),
        Some("e050f7970618a659205450ad97eb95a18d69c9ee")
    ),
    // Quantized variants offered by whisper.cpp's download-ggml-model.sh; no checksum published for them.
    whisper_cpp!("tiny-q5_1", "multilingual", None, None),
    whisper_cpp!("tiny.en-q5_1", "en", None, None),
    whisper_cpp!("tiny-q8_0", "multilingual", None, None),
    whisper_cpp!("base-q5_1", "multilingual", None, None),
    whisper_cpp!("base.en-q5_1", "en", None, None),
    whisper_cpp!("base-q8_0", "multilingual", None, None),
    whisper_cpp!("small-q5_1", "multilingual", None, None),
    whisper_cpp!("small.en-q5_1", "en", None, None),
    whisper_cpp!("small-q8_0", "multilingual", None, None),
    whisper_cpp!("medium-q5_0", "multilingual", None, None),
    whisper_cpp!("medium.en-q5_0", "en", None, None),
    whisper_cpp!("medium-q8_0", "multilingual", None, None),
    whisper_cpp!("large-v2-q8_0", "multilingual", None, None),
    whisper_cpp!("large-v3-turbo-q8_0", "multilingual", None, None),
    // KBLab's Swedish models: same architectures as OpenAI's (large = large-v3), sizes approximate, not pinned.
    kb_whisper!("tiny", Some(75)),
    kb_whisper!("base", Some(142)),
    kb_whisper!("small", Some(466)),
    kb_whisper!("medium", Some(1536)),
    kb_whisper!("large", Some(2970)),
    kb_whisper!("tiny", q5_0),
    kb_whisper!("base", q5_0),
    kb_whisper!("small", q5_0),
    kb_whisper!("medium", q5_0),
    kb_whisper!("large", q5_0),
    // Silero VAD: SHA-256 of the files whisper.cpp commits as models/for-tests-silero-*-ggml.bin (identical bytes).
    silero!(
        "v6.2.0",
        "2aa269b785eeb53a82983a20501ddf7c1d9c48e33ab63a41391ac6c9f7fb6987"
    ),
    silero!(
        "v5.1.2",
        "29940d98d42b91fbd05ce489f3ecf7c72f0a42f027e4875919a28fb4c04ea2cf"
    ),
];

/// Every catalog entry, Whisper models first, then KBLab's, then the VAD files.
pub fn catalog() -> &'static [CatalogEntry] {
    CATALOG
}

/// The entry called `name` (exact match, e.g. "base.en", "kb-whisper-small", "silero-v6.2.0").
pub fn find(name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.name == name)
}

/// The entry whose local file name is `file_name` (e.g. "ggml-base.en.bin").
pub fn find_by_file_name(file_name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.file_name == file_name)
}

/// The entry whose pinned SHA-1 or SHA-256 equals one of these digests (lower-case hex).
pub fn find_by_digest(sha1: &str, sha256: &str) -> Option<&'static CatalogEntry> {
    CATALOG
        .iter()
        .find(|e| e.sha1 == Some(sha1) || e.sha256 == Some(sha256))
}

/// Catalog names joined with ", ", for error messages and help text.
pub fn known_names() -> String {
    CATALOG.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_file_names_are_unique() {
        for (i, a) in CATALOG.iter().enumerate() {
            for b in &CATALOG[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.file_name, b.file_name);
            }
        }
    }

    #[test]
    fn urls_are_official_https_and_digests_are_hex() {
        for e in CATALOG {
            let official = match e.family {
                Family::WhisperCpp => e.url.starts_with(HF_WHISPER_CPP),
                Family::KbWhisper => e.url.starts_with("https://huggingface.co/KBLab/kb-whisper-"),
                Family::SileroVad => e
                    .url
                    .starts_with("https://huggingface.co/ggml-org/whisper-vad/resolve/main/"),
            };
            assert!(official, "{} has an unofficial url {}", e.name, e.url);
            if let Some(s) = e.sha1 {
                assert!(
                    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                    "{}",
                    e.name
                );
            }
            if let Some(s) = e.sha256 {
                assert!(
                    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                    "{}",
                    e.name
                );
            }
        }
    }

    #[test]
    fn lookup_by_name_file_and_digest() {
        let e = find("base.en").expect("base.en in catalog");
        assert_eq!(
            e.url,
            "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-base.en.bin"
        );
        assert_eq!(e.sha1, Some("137c40403d78fd54d454da0f9bd998f78703390c"));
        assert_eq!(find_by_file_name("ggml-base.en.bin"), Some(e));
        assert_eq!(
            find("kb-whisper-large-q5_0").map(|e| e.url),
            Some("https://huggingface.co/KBLab/kb-whisper-large/resolve/main/ggml-model-q5_0.bin")
        );
        let vad = find_by_digest("", "2aa269b785eeb53a82983a20501ddf7c1d9c48e33ab63a41391ac6c9f7fb6987");
        assert_eq!(vad.map(|e| e.name), Some("silero-v6.2.0"));
        assert!(find("tiny.english").is_none());
        assert!(known_names().contains("large-v3-turbo"));
    }
}
