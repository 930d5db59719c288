//! dockerd's rule for container names, checked before any node is asked.

use crate::error::{ApiError, ApiResult};

/// The characters dockerd allows in a container name, as its error message shows them.
const NAME_CHARS: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]";

/// dockerd's container name rule: `^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`.
pub fn valid_name(name: &str) -> bool {
    let name = name.strip_prefix('/').unwrap_or(name);
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    let rest = chars.as_str();
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// dockerd's refusal of a bad name; `name` as the client gave it.
pub fn check_name(name: &str) -> ApiResult<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid container name ({name}), only {NAME_CHARS} are allowed"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockerds_pattern() {
        for ok in ["ab", "/web-1", "a.b_c-d", "0x", "A9"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "a", "/", "/a", "-ab", "_ab", ".ab", "a b", "a/b", "ä1", "ab:c",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(
            check_name("a b").unwrap_err().message,
            "Invalid container name (a b), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        );
    }
}
