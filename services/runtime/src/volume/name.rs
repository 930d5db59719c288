//! Volume names as dockerd's local driver accepts them, and anonymous names.

use crate::volume::{Result, VolumeError};
use wharf_bus::error::go_quote;

/// The label dockerd (≥ 23) puts on anonymous volumes; prune removes only those by default.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Checks `name` against `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, with dockerd's error texts.
pub fn validate_name(name: &str) -> Result<()> {
    if name.chars().count() == 1 {
        return Err(VolumeError::InvalidParameter(
            "volume name is too short, names should be at least two alphanumeric characters".into(),
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok {
        return Err(VolumeError::InvalidParameter(format!(
            "{} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path",
            go_quote(name)
        )));
    }
    Ok(())
}

/// A fresh anonymous name: 32 random bytes in hex, as dockerd's `stringid.GenerateRandomID`.
pub(crate) fn anonymous_name() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dockerd_names_and_refuses_the_rest() {
        for ok in ["ab", "my_vol.1-x", "0a", "A.B"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["-ab", ".a", "a/b", "a b", "/abs", "é1", "a:b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn anonymous_names_are_64_lowercase_hex() {
        let a = anonymous_name();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(a, anonymous_name());
    }
}
