//! Image references, normalized as Docker normalizes them: `busybox` is
//! `docker.io/library/busybox:latest`, and users see the short ("familiar") form back.

use std::fmt;

use crate::error::BusError;

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (`docker.io`, `localhost:5000`).
    pub domain: String,
    /// Repository path within the registry (`library/busybox`).
    pub path: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

fn invalid() -> BusError {
    BusError::invalid("invalid reference format")
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(x: u8) -> bool {
    x.is_ascii_lowercase() || x.is_ascii_digit()
}

fn valid_domain(d: &str) -> bool {
    // host[:port], host made of dot-separated labels of [a-zA-Z0-9-], or a bracketed IPv6.
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    if d.starts_with('[') {
        return !host.is_empty()
            && host
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.');
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.' || *c == b'-')
}

pub use crate::digest::is_sha256 as valid_digest;

impl Reference {
    /// Parses a reference the way `docker pull NAME` does.
    pub fn parse(input: &str) -> Result<Reference, BusError> {
        if input.is_empty() || input.len() > 4096 {
            return Err(invalid());
        }
        if crate::digest::is_hex64(input) {
            // A bare 64-hex string is an image ID, never a repository.
            return Err(BusError::invalid(format!(
                "invalid repository name ({input}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(invalid());
                }
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !valid_tag(t) {
                    return Err(invalid());
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(invalid());
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(BusError::invalid(
                "invalid reference format: repository name must be lowercase",
            ));
        }
        if !valid_domain(&domain) || !path.split('/').all(valid_component) {
            return Err(invalid());
        }
        if domain.len() + 1 + path.len() > 255 {
            return Err(BusError::invalid(
                "invalid reference format: repository name must not be more than 255 characters",
            ));
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// Parses and adds `:latest` when neither tag nor digest is given.
    pub fn parse_tagged(input: &str) -> Result<Reference, BusError> {
        Ok(Reference::parse(input)?.with_default_tag())
    }

    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// `docker.io/library/busybox`
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `busybox`, `user/app`, `localhost:5000/app`. As distribution's `FamiliarName`, only an
    /// official repository (`library/<name>`, one level) loses its prefix: `library/a/b`
    /// stays, or it would read back as `docker.io/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(name) if !name.contains('/') => name.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The short form users see: `busybox:latest`, `busybox@sha256:...`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The same repository with only a tag.
    pub fn tagged(&self, tag: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// The same repository with only a digest.
    pub fn digested(&self, digest: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }
}

impl fmt::Display for Reference {
    /// The full normalized form: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Familiar form of a full reference string; returns the input when it does not parse.
pub fn familiarize(full: &str) -> String {
    Reference::parse(full)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| full.to_string())
}

/// True when `s` looks like an image ID or a prefix of one (`sha256:` optional).
pub fn is_id_prefix(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    !hex.is_empty()
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_normalize_to_docker_hub_library() {
        let r = Reference::parse_tagged("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
    }

    #[test]
    fn user_repos_and_registries_keep_their_path() {
        assert_eq!(
            Reference::parse_tagged("user/app:1").unwrap().to_string(),
            "docker.io/user/app:1"
        );
        let r = Reference::parse("localhost:5000/a/b:v2").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("localhost:5000", "a/b", Some("v2"))
        );
        assert_eq!(r.familiar(), "localhost:5000/a/b:v2");
        assert_eq!(
            Reference::parse("index.docker.io/busybox").unwrap().name(),
            "docker.io/library/busybox"
        );
        assert_eq!(Reference::parse("localhost/x").unwrap().domain, "localhost");
    }

    #[test]
    fn digests_and_tags_parse_together() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox:1.36@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.36"));
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert!(Reference::parse("busybox@sha256:abc").is_err());
    }

    #[test]
    fn bad_references_get_dockers_error() {
        assert_eq!(
            Reference::parse("Busybox").unwrap_err().message,
            "invalid reference format: repository name must be lowercase"
        );
        for bad in [
            "", "a//b", "-a", "a:", "a:b:c/d:", "busy box", "a@b", ":tag", "a/.b",
        ] {
            assert_eq!(
                Reference::parse(bad).unwrap_err().kind,
                crate::ErrorKind::Invalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_full_image_id_is_not_a_repository_name() {
        let id = "a".repeat(64);
        assert!(Reference::parse(&id)
            .unwrap_err()
            .message
            .contains("cannot specify 64-byte hexadecimal strings"));
        assert!(Reference::parse(&format!("{id}:tag")).is_ok());
    }

    #[test]
    fn id_prefixes_are_hex() {
        assert!(is_id_prefix("3f57d9401f8d"));
        assert!(is_id_prefix("sha256:3f57"));
        assert!(!is_id_prefix("busybox"));
    }
}
