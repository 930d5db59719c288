//! `sha256:<hex>` digests: validation and hashing helpers.

use sha2::{Digest as _, Sha256};
use wharf_bus::BusError;

/// The lowercase hex part of a valid `sha256:<64 hex>` digest.
pub fn sha256_hex(digest: &str) -> Result<&str, BusError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_hex64(hex) => Ok(hex),
        _ => Err(BusError::invalid(format!(
            "invalid digest {digest:?}: expected sha256:<64 hex digits>"
        ))),
    }
}

pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// `sha256:<hex>` of `data`.
pub fn of_bytes(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// `sha256:<hex>` of a finished hasher.
pub fn finish(hasher: Sha256) -> String {
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Docker's short ID: 12 hex digits without the algorithm.
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}
