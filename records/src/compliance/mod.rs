//! Compliance: what makes the transcript archive trustworthy for a records officer.
//!
//! - [`integrity`]: the hash chain over a meeting's segments (sealed when the meeting ends) and its check;
//! - [`audit`]: the append-only, hash-chained audit trail of who read, searched, exported or deleted what;
//! - [`search`]: the full-text query language and the `<mark>` highlighting shared by both backends;
//! - [`retention`]: the periodic purge of expired meetings, which spares those under legal hold;
//! - [`check`]: `samtal verify`, the same checks from the command line, also of exported files.
//!
//! The formats here are documented in `docs/http-api.md` so that anyone can check an export or the
//! trail without Samtal; changing them breaks every stored chain. The SQL lives in `store/`.

pub mod audit;
pub mod check;
pub mod integrity;
pub mod retention;
pub mod search;

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compact JSON of `value` (UTF-8 as it is, no spaces): the canonical encoding the chains hash.
/// Matches Python's `json.dumps(v, ensure_ascii=False, separators=(",", ":"))` for strings,
/// integers and null.
pub fn canonical_json(value: &serde_json::Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
