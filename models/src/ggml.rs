//! Reads the structure of a legacy ggml model file (whisper.cpp's Whisper models and its Silero VAD files)
//! without loading it: header, hyperparameters, mel filters and vocabulary are parsed, tensor data is skipped
//! with seeks, so checking a 3 GB model costs a few thousand small reads.
//!
//! This module must never load weights into memory, call into whisper.cpp, or judge whether a model is fit for
//! use (test-only files, checksums): it only reports what is in the file. `verify` makes the judgements.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `0x67676d6c`, stored little-endian as the bytes "lmgg".
pub const GGML_MAGIC: u32 = 0x6767_6d6c;

/// whisper.cpp keeps the quantization version in `ftype / 1000`, the weight type in `ftype % 1000`.
const QNT_VERSION_FACTOR: i32 = 1000;

/// The eleven hyperparameters at the start of a Whisper ggml file, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhisperHparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    /// Raw value from the file: `weight type + 1000 * quantization version`.
    pub ftype: i32,
}

impl WhisperHparams {
    /// whisper.cpp's own rule: the multilingual vocabularies have 51865 tokens or more, the English-only 51864.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }

    /// The model size, guessed the way whisper.cpp does (audio layers), refined for large-v3 and turbo.
    pub fn size_class(&self) -> SizeClass {
        match (self.n_audio_layer, self.n_text_layer, self.n_vocab) {
            (4, _, _) => SizeClass::Tiny,
            (6, _, _) => SizeClass::Base,
            (12, _, _) => SizeClass::Small,
            (24, _, _) => SizeClass::Medium,
            (32, 4, _) => SizeClass::LargeV3Turbo,
            (32, _, 51866) => SizeClass::LargeV3,
            (32, _, _) => SizeClass::LargeV1V2,
            _ => SizeClass::Unknown,
        }
    }

    /// The weight storage type (`ftype % 1000`).
    pub fn weight_type(&self) -> WeightType {
        WeightType::from_ftype(self.ftype % QNT_VERSION_FACTOR)
    }

    /// The ggml quantization version (`ftype / 1000`), 0 for unquantized files.
    pub fn quantization_version(&self) -> i32 {
        self.ftype / QNT_VERSION_FACTOR
    }

    /// How many tensors whisper.cpp creates for these hparams and insists on loading (see `whisper_model_load`):
    /// 7 encoder globals, 4 decoder globals, 15 per encoder layer, 24 per decoder layer.
    pub fn expected_tensor_count(&self) -> u64 {
        11 + 15 * self.n_audio_layer.max(0) as u64 + 24 * self.n_text_layer.max(0) as u64
    }
}

/// Whisper model sizes, as far as the hparams tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeClass {
    Tiny,
    Base,
    Small,
    Medium,
    /// large-v1 and large-v2 share every hparam.
    LargeV1V2,
    LargeV3,
    LargeV3Turbo,
    Unknown,
}

impl SizeClass {
    pub fn name(self) -> &'static str {
        match self {
            SizeClass::Tiny => "tiny",
            SizeClass::Base => "base",
            SizeClass::Small => "small",
            SizeClass::Medium => "medium",
            SizeClass::LargeV1V2 => "large-v1/v2",
            SizeClass::LargeV3 => "large-v3",
            SizeClass::LargeV3Turbo => "large-v3-turbo",
            SizeClass::Unknown => "unknown-size",
        }
    }
}

/// How the big weight matrices are stored (ggml's `ggml_ftype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q5_0,
    Q5_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Bf16,
    Other(i32),
}

impl WeightType {
    fn from_ftype(v: i32) -> Self {
        match v {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            7 => Self::Q8_0,
            8 => Self::Q5_0,
            9 => Self::Q5_1,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            24 => Self::Bf16,
            other => Self::Other(other),
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::F32 => "f32".into(),
            Self::F16 => "f16".into(),
            Self::Q4_0 => "q4_0".into(),
            Self::Q4_1 => "q4_1".into(),
            Self::Q8_0 => "q8_0".into(),
            Self::Q5_0 => "q5_0".into(),
            Self::Q5_1 => "q5_1".into(),
            Self::Q2K => "q2_k".into(),
            Self::Q3K => "q3_k".into(),
            Self::Q4K => "q4_k".into(),
            Self::Q5K => "q5_k".into(),
            Self::Q6K => "q6_k".into(),
            Self::Bf16 => "bf16".into(),
            Self::Other(v) => format!("ftype {v}"),
        }
    }
}

/// What the tensor walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSummary {
    /// Tensors whose header and data lie inside the file.
    pub count: u64,
    /// Bytes of tensor data among them.
    pub data_bytes: u64,
    /// False when the walk stopped at a tensor of a ggml type this crate cannot size: the rest was not checked.
    pub fully_checked: bool,
}

/// A Whisper speech-recognition model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhisperFile {
    pub hparams: WhisperHparams,
    /// Mel filter bank shape stored in the file.
    pub mel_filters: (i32, i32),
    /// Number of vocabulary strings stored in the file (50257 for the OpenAI models; the rest are special tokens).
    pub vocab_strings: i32,
    pub tensors: TensorSummary,
}

/// A Silero voice-activity model converted by whisper.cpp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SileroVadFile {
    /// The model-type string after the magic, e.g. "silero-16k".
    pub model_type: String,
    /// e.g. (6, 2, 0).
    pub version: (i32, i32, i32),
    pub n_window: i32,
    pub n_context: i32,
    pub tensors: TensorSummary,
}

/// What a ggml file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Whisper(WhisperFile),
    SileroVad(SileroVadFile),
}

/// The structure of one file, as read by [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub path: PathBuf,
    pub file_size: u64,
    pub content: Content,
}

/// Reads the structure of `path`. Succeeds for any well-formed file, including weightless test files.
pub fn inspect(path: &Path) -> Result<Inspection> {
    let mut r = Reader::open(path)?;
    let magic = r.read_magic()?;
    if magic != GGML_MAGIC {
        return Err(Error::NotGgml {
            path: path.to_owned(),
            found: describe_magic(magic),
        });
    }
    // Whisper files continue with n_vocab (~51865); whisper.cpp's other ggml files with a short type string.
    let first = r.read_i32("the first header field")?;
    let content = if (1..=64).contains(&first) {
        let name = r.read_string(first as u64, "the model type string")?;
        if name.starts_with("silero") {
            Content::SileroVad(read_silero(&mut r, name)?)
        } else {
            return Err(r.malformed(format!("ggml file of an unsupported model type {name:?}")));
        }
    } else {
        Content::Whisper(read_whisper(&mut r, first)?)
    };
    Ok(Inspection {
        path: path.to_owned(),
        file_size: r.len,
        content,
    })
}

fn read_whisper(r: &mut Reader, n_vocab: i32) -> Result<WhisperFile> {
    let mut f = [0i32; 10];
    for v in f.iter_mut() {
        *v = r.read_i32("the Whisper hyperparameters")?;
    }
    let hp = WhisperHparams {
        n_vocab,
        n_audio_ctx: f[0],
        n_audio_state: f[1],
        n_audio_head: f[2],
        n_audio_layer: f[3],
        n_text_ctx: f[4],
        n_text_state: f[5],
        n_text_head: f[6],
        n_text_layer: f[7],
        n_mels: f[8],
        ftype: f[9],
    };
    let positive = [
        hp.n_vocab,
        hp.n_audio_ctx,
        hp.n_audio_state,
        hp.n_audio_head,
        hp.n_audio_layer,
        hp.n_text_ctx,
        hp.n_text_state,
        hp.n_text_head,
        hp.n_text_layer,
        hp.n_mels,
    ];
    if positive.iter().any(|&v| v <= 0 || v > 1_000_000) || hp.ftype < 0 {
        return Err(r.malformed(format!("implausible Whisper hyperparameters {hp:?}")));
    }
    if hp.n_audio_state != hp.n_text_state {
        return Err(r.malformed(format!(
            "n_audio_state {} differs from n_text_state {} (whisper.cpp requires them equal)",
            hp.n_audio_state, hp.n_text_state
        )));
    }

    let n_mel = r.read_i32("the mel filter shape")?;
    let n_fft = r.read_i32("the mel filter shape")?;
    if !(1..=1024).contains(&n_mel) || !(1..=4096).contains(&n_fft) {
        return Err(r.malformed(format!("implausible mel filter shape {n_mel}x{n_fft}")));
    }
    r.skip(n_mel as u64 * n_fft as u64 * 4, "the mel filters")?;

    let vocab_strings = r.read_i32("the vocabulary size")?;
    if !(0..=1_000_000).contains(&vocab_strings) {
        return Err(r.malformed(format!("implausible vocabulary size {vocab_strings}")));
    }
    for i in 0..vocab_strings {
        let len = r.read_u32("the vocabulary")?;
        if len > 1 << 16 {
            return Err(r.malformed(format!("vocabulary token {i} claims {len} bytes")));
        }
        r.skip(len as u64, "the vocabulary")?;
    }

    let tensors = walk_tensors(r)?;
    Ok(WhisperFile {
        hparams: hp,
        mel_filters: (n_mel, n_fft),
        vocab_strings,
        tensors,
    })
}

fn read_silero(r: &mut Reader, model_type: String) -> Result<SileroVadFile> {
    let major = r.read_i32("the VAD model version")?;
    let minor = r.read_i32("the VAD model version")?;
    let patch = r.read_i32("the VAD model version")?;
    let n_window = r.read_i32("the VAD window size")?;
    let n_context = r.read_i32("the VAD context size")?;
    let layers = r.read_i32("the VAD encoder layer count")?;
    if !(1..=64).contains(&layers) {
        return Err(r.malformed(format!("implausible VAD encoder layer count {layers}")));
    }
    // in/out channels and kernel size per encoder layer, then lstm in/hidden and final conv in/out.
    for _ in 0..(3 * layers + 4) {
        r.read_i32("the VAD hyperparameters")?;
    }
    let tensors = walk_tensors(r)?;
    Ok(SileroVadFile {
        model_type,
        version: (major, minor, patch),
        n_window,
        n_context,
        tensors,
    })
}

/// Walks the tensor records that fill the rest of the file: `n_dims, name_len, type, ne[n_dims], name, data`.
fn walk_tensors(r: &mut Reader) -> Result<TensorSummary> {
    let mut summary = TensorSummary {
        count: 0,
        data_bytes: 0,
        fully_checked: true,
    };
    while r.pos < r.len {
        let index = summary.count;
        let what = format!("the header of tensor #{index}");
        let n_dims = r.read_i32(&what)?;
        let name_len = r.read_i32(&what)?;
        let ttype = r.read_i32(&what)?;
        if !(0..=4).contains(&n_dims) || !(1..=4096).contains(&name_len) {
            return Err(r.malformed(format!(
                "tensor #{index} has an implausible header (n_dims {n_dims}, name length {name_len})"
            )));
        }
        let mut elements: u64 = 1;
        let mut ne0 = 0u64;
        for d in 0..n_dims {
            let ne = r.read_i32(&what)?;
            if ne <= 0 {
                return Err(r.malformed(format!("tensor #{index} has dimension {d} of size {ne}")));
            }
            if d == 0 {
                ne0 = ne as u64;
            }
            elements = elements
                .checked_mul(ne as u64)
                .ok_or_else(|| r.malformed(format!("tensor #{index} has too many elements")))?;
        }
        let name = r.read_string(name_len as u64, &what)?;
        let Some((block, bytes_per_block)) = ggml_type_size(ttype) else {
            summary.fully_checked = false;
            break;
        };
        if !ne0.is_multiple_of(block) {
            return Err(r.malformed(format!(
                "tensor #{index} {name:?}: row of {ne0} elements is not a whole number of {block}-element blocks"
            )));
        }
        let data = elements / block * bytes_per_block;
        r.skip(data, &format!("the data of tensor #{index} {name:?} ({data} bytes)"))?;
        summary.count += 1;
        summary.data_bytes += data;
    }
    Ok(summary)
}

/// (elements per block, bytes per block) of the ggml tensor types whisper.cpp files use; from ggml-common.h.
fn ggml_type_size(ttype: i32) -> Option<(u64, u64)> {
    Some(match ttype {
        0 => (1, 4),     // f32
        1 => (1, 2),     // f16
        2 => (32, 18),   // q4_0
        3 => (32, 20),   // q4_1
        6 => (32, 22),   // q5_0
        7 => (32, 24),   // q5_1
        8 => (32, 34),   // q8_0
        9 => (32, 36),   // q8_1
        10 => (256, 84), // q2_K
        11 => (256, 110),
        12 => (256, 144),
        13 => (256, 176),
        14 => (256, 210),
        15 => (256, 292),
        24 => (1, 1), // i8
        25 => (1, 2), // i16
        26 => (1, 4), // i32
        27 => (1, 8), // i64
        28 => (1, 8), // f64
        30 => (1, 2), // bf16
        _ => return None,
    })
}

/// Shows a wrong magic both as a number and as text, so "GGUF" or "<!DO" (an HTML error page) stand out.
fn describe_magic(magic: u32) -> String {
    let bytes = magic.to_le_bytes();
    let text: String = bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!("{magic:#010x} {text:?}")
}

/// A buffered file reader that knows its position and the file length, so every short read becomes a
/// precise "truncated at byte N" error.
struct Reader {
    path: PathBuf,
    inner: BufReader<File>,
    pos: u64,
    len: u64,
}

impl Reader {
    fn open(path: &Path) -> Result<Self> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::Missing { path: path.to_owned() });
            }
            Err(e) => {
                return Err(Error::Unreadable {
                    path: path.to_owned(),
                    source: e,
                });
            }
        };
        let meta = file.metadata().map_err(|e| Error::Unreadable {
            path: path.to_owned(),
            source: e,
        })?;
        if !meta.is_file() {
            return Err(Error::Unreadable {
                path: path.to_owned(),
                source: std::io::Error::other("not a regular file"),
            });
        }
        Ok(Self {
            path: path.to_owned(),
            inner: BufReader::with_capacity(64 * 1024, file),
            pos: 0,
            len: meta.len(),
        })
    }

    fn malformed(&self, detail: String) -> Error {
        Error::Malformed {
            path: self.path.clone(),
            detail: format!("{detail} (at byte {})", self.pos),
        }
    }

    fn ensure(&self, n: u64, what: &str) -> Result<()> {
        let needed = self.pos.saturating_add(n);
        if needed > self.len {
            return Err(Error::Truncated {
                path: self.path.clone(),
                at: self.len,
                what: what.to_owned(),
                needed,
            });
        }
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.ensure(buf.len() as u64, what)?;
        self.inner.read_exact(buf).map_err(|e| Error::Unreadable {
            path: self.path.clone(),
            source: e,
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn read_magic(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b, "the ggml magic")?;
        Ok(u32::from_le_bytes(b))
    }

    fn read_i32(&mut self, what: &str) -> Result<i32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b, what)?;
        Ok(i32::from_le_bytes(b))
    }

    fn read_u32(&mut self, what: &str) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    fn read_string(&mut self, n: u64, what: &str) -> Result<String> {
        let mut b = vec![0u8; n as usize];
        self.read_exact(&mut b, what)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        self.ensure(n, what)?;
        let offset = i64::try_from(n).map_err(|_| self.malformed(format!("{what}: {n} bytes is too large")))?;
        self.inner.seek_relative(offset).map_err(|e| Error::Unreadable {
            path: self.path.clone(),
            source: e,
        })?;
        self.pos += n;
        Ok(())
    }
}
