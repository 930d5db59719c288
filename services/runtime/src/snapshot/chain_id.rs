//! OCI chain IDs: the identity of a layer together with everything below it.

use sha2::{Digest as _, Sha256};

use super::error::{Result, SnapshotError};

/// Chain IDs of a stack of layers given their diff IDs, base first:
/// `chain(L0) = diff(L0)`, `chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln))`.
pub fn chain_ids<'a>(diff_ids: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for diff_id in diff_ids {
        if !wharf_bus::digest::is_sha256(diff_id) {
            return Err(SnapshotError::InvalidImage(format!(
                "layer diff ID {diff_id:?} is not a sha256 digest"
            )));
        }
        let chain = match out.last() {
            None => diff_id.to_string(),
            Some(parent) => {
                let hasher = Sha256::new_with_prefix(format!("{parent} {diff_id}"));
                wharf_bus::digest::finish(hasher)
            }
        };
        out.push(chain);
    }
    Ok(out)
}

/// The hex part of a chain ID: the snapshot's directory name.
pub fn chain_hex(chain_id: &str) -> Result<&str> {
    wharf_bus::digest::sha256_hex(chain_id)
        .map_err(|_| SnapshotError::InvalidImage(format!("invalid chain ID {chain_id:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let d0 = wharf_bus::digest::sha256_of(b"layer 0");
        let d1 = wharf_bus::digest::sha256_of(b"layer 1");
        let d2 = wharf_bus::digest::sha256_of(b"layer 2");
        let chains = chain_ids([d0.as_str(), d1.as_str(), d2.as_str()]).unwrap();
        assert_eq!(chains[0], d0);
        let c1 = wharf_bus::digest::sha256_of(format!("{d0} {d1}").as_bytes());
        assert_eq!(chains[1], c1);
        let c2 = wharf_bus::digest::sha256_of(format!("{c1} {d2}").as_bytes());
        assert_eq!(chains[2], c2);
        assert!(chain_ids(["sha256:nothex"]).is_err());
        assert!(chain_ids(std::iter::empty()).unwrap().is_empty());
    }
}
