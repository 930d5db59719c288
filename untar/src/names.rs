//! Entry names made safe to join under the root: relative, one name per component, never a
//! `..` that leaves the root. Each extractor cleans names its own way ([`Names`]); whatever
//! the way, the result is a list of plain names below the root.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;

/// How entry names (and hard link targets) are cleaned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Layers: leading `/` and `.` components are dropped (as Docker does); a `..` component
    /// or a NUL byte refuses the entry, whatever follows.
    NoDotDot,
    /// `docker cp`: cleaned as Go's `filepath.Clean`; a `..` that climbs above the root
    /// refuses the entry, one that stays below it removes the name before it.
    NoEscape,
    /// Build contexts: cleaned as Go's `path.Clean("/" + name)`, so `..` stops at the root
    /// (as dockerd's chrooted untar sees it).
    Clamped,
}

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// A NUL byte ([`Names::NoDotDot`]).
    Nul,
    /// A `..` component ([`Names::NoDotDot`]).
    DotDot,
    /// A `..` climbing above the root ([`Names::NoEscape`]), or a leading `/` or any `..` with
    /// strict names (see [`Options::strict`](crate::Options::strict)).
    Outside,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Nul => "the name contains a NUL byte",
            NameError::DotDot => "the name climbs out with '..'",
            NameError::Outside => "the name climbs out of the root",
        })
    }
}

/// An entry's path as components below the root (none for the root itself).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryPath {
    components: Vec<OsString>,
}

impl EntryPath {
    /// `raw` cleaned as `names` says.
    pub fn parse(raw: &[u8], names: Names) -> Result<EntryPath, NameError> {
        if names == Names::NoDotDot && raw.contains(&0) {
            return Err(NameError::Nul);
        }
        let mut components = Vec::new();
        for part in raw.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => match names {
                    Names::NoDotDot => return Err(NameError::DotDot),
                    Names::NoEscape => {
                        components.pop().ok_or(NameError::Outside)?;
                    }
                    Names::Clamped => {
                        components.pop();
                    }
                },
                name => components.push(OsStr::from_bytes(name).to_os_string()),
            }
        }
        Ok(EntryPath { components })
    }

    /// Whether `raw` is refused by strict names: a leading `/` or any `..` component.
    pub fn strictly_refused(raw: &[u8]) -> bool {
        raw.starts_with(b"/") || raw.split(|&b| b == b'/').any(|p| p == b"..")
    }

    /// The path of one name right below the root.
    pub fn single(name: &OsStr) -> EntryPath {
        EntryPath {
            components: vec![name.to_os_string()],
        }
    }

    pub fn components(&self) -> &[OsString] {
        &self.components
    }

    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The directories above the entry.
    pub fn parent(&self) -> &[OsString] {
        &self.components[..self.components.len().saturating_sub(1)]
    }

    /// The entry's own name (`None` for the root).
    pub fn name(&self) -> Option<&OsStr> {
        self.components.last().map(|c| c.as_os_str())
    }

    /// The same directory with another last name (whiteouts name their target this way).
    pub fn with_name(&self, name: &OsStr) -> EntryPath {
        let mut components = self.parent().to_vec();
        components.push(name.to_os_string());
        EntryPath { components }
    }

    /// The first `n` components.
    pub fn prefix(&self, n: usize) -> EntryPath {
        EntryPath {
            components: self.components[..n.min(self.components.len())].to_vec(),
        }
    }

    /// The components joined by `/` (lossy UTF-8), `.` for the root.
    pub fn to_slash_string(&self) -> String {
        if self.components.is_empty() {
            return ".".to_string();
        }
        let joined: Vec<&[u8]> = self.components.iter().map(|c| c.as_bytes()).collect();
        String::from_utf8_lossy(&joined.join(&b'/')).into_owned()
    }
}

impl From<Vec<OsString>> for EntryPath {
    fn from(components: Vec<OsString>) -> Self {
        EntryPath { components }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(raw: &str, names: Names) -> Vec<String> {
        EntryPath::parse(raw.as_bytes(), names)
            .unwrap()
            .components()
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn layer_names_are_made_relative_and_dot_dot_is_refused() {
        let n = Names::NoDotDot;
        assert_eq!(parts("/abs/path", n), ["abs", "path"]);
        assert_eq!(parts("./a//b/./c/", n), ["a", "b", "c"]);
        assert!(EntryPath::parse(b"./", n).unwrap().is_root());
        assert_eq!(EntryPath::parse(b"../escape", n), Err(NameError::DotDot));
        assert_eq!(EntryPath::parse(b"a/../../b", n), Err(NameError::DotDot));
        assert_eq!(EntryPath::parse(b"a/..", n), Err(NameError::DotDot));
        assert_eq!(EntryPath::parse(b"a\0b", n), Err(NameError::Nul));
        assert_eq!(parts("..a/b..", n), ["..a", "b.."]);
    }

    #[test]
    fn cp_names_are_cleaned_and_refused_when_they_climb_out() {
        let n = Names::NoEscape;
        assert_eq!(EntryPath::parse(b"../x", n), Err(NameError::Outside));
        assert_eq!(EntryPath::parse(b"a/../../x", n), Err(NameError::Outside));
        assert_eq!(parts("/abs/./x", n), ["abs", "x"]);
        assert_eq!(parts("a/../b", n), ["b"]);
        assert!(EntryPath::parse(b"./", n).unwrap().is_root());
        assert!(EntryPath::strictly_refused(b"/abs"));
        assert!(EntryPath::strictly_refused(b"a/../b"));
        assert!(!EntryPath::strictly_refused(b"a/..b/./c"));
    }

    #[test]
    fn context_names_stop_at_the_root() {
        let n = Names::Clamped;
        assert_eq!(parts("../outside/x", n), ["outside", "x"]);
        assert_eq!(parts("a/../../../b/", n), ["b"]);
        assert_eq!(parts("/abs", n), ["abs"]);
        let root = EntryPath::parse(b"..", n).unwrap();
        assert!(root.is_root());
        assert_eq!(root.to_slash_string(), ".");
        assert_eq!(
            EntryPath::parse(b"a//b", n).unwrap().to_slash_string(),
            "a/b"
        );
    }
}
