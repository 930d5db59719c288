//! `sha256:<hex>` digests: the one place that checks, computes and shortens them.

use sha2::{Digest as _, Sha256};

use crate::error::BusError;

/// True for `sha256:` followed by 64 lowercase hex digits.
pub fn is_sha256(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .map(is_hex64)
        .unwrap_or(false)
}

/// True for 64 lowercase hex digits.
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The hex part of a valid digest, or an `invalid` error naming it.
pub fn sha256_hex(digest: &str) -> Result<&str, BusError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_hex64(hex) => Ok(hex),
        _ => Err(BusError::invalid(format!(
            "invalid digest {digest:?}: expected sha256:<64 hex digits>"
        ))),
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_of(data: &[u8]) -> String {
    finish(Sha256::new_with_prefix(data))
}

/// `sha256:<hex>` of a finished hasher.
pub fn finish(hasher: Sha256) -> String {
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Docker's short ID: the first 12 hex digits, without the algorithm.
pub fn short_id(id: &str) -> String {
    let hex = id.rsplit(':').next().unwrap_or(id);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_computed_and_shortened() {
        let d = sha256_of(b"");
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_sha256(&d));
        assert!(!is_sha256("sha256:E3B0"));
        assert!(sha256_hex("md5:00").is_err());
        assert_eq!(short_id(&d), "e3b0c44298fc");
    }
}
