//! Names of layer entries made safe to join under a layer root: relative, one name per
//! component, never `..`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// A layer entry's path as components below the layer root. Leading `/` and `.` components are
/// dropped (as Docker does); a `..` component refuses the entry, whatever follows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct EntryPath {
    components: Vec<OsString>,
}

impl EntryPath {
    pub(crate) fn parse(raw: &[u8]) -> Result<EntryPath, &'static str> {
        if raw.contains(&0) {
            return Err("the name contains a NUL byte");
        }
        let mut components = Vec::new();
        for part in raw.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => return Err("the name climbs out with '..'"),
                name => components.push(OsStr::from_bytes(name).to_os_string()),
            }
        }
        Ok(EntryPath { components })
    }

    pub(crate) fn components(&self) -> &[OsString] {
        &self.components
    }

    /// The directories above the entry.
    pub(crate) fn parent(&self) -> &[OsString] {
        &self.components[..self.components.len().saturating_sub(1)]
    }

    /// The entry's own name (None for the root).
    pub(crate) fn name(&self) -> Option<&OsStr> {
        self.components.last().map(|c| c.as_os_str())
    }

    /// The same directory with another last name (whiteouts name their target this way).
    pub(crate) fn with_name(&self, name: &OsStr) -> EntryPath {
        let mut components = self.parent().to_vec();
        components.push(name.to_os_string());
        EntryPath { components }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(raw: &str) -> Vec<String> {
        EntryPath::parse(raw.as_bytes())
            .unwrap()
            .components()
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn names_are_made_relative_and_dot_dot_is_refused() {
        assert_eq!(parts("/abs/path"), ["abs", "path"]);
        assert_eq!(parts("./a//b/./c/"), ["a", "b", "c"]);
        assert!(EntryPath::parse(b"./").unwrap().components().is_empty());
        assert!(EntryPath::parse(b"../escape").is_err());
        assert!(EntryPath::parse(b"a/../../b").is_err());
        assert!(EntryPath::parse(b"a/..").is_err());
        assert!(EntryPath::parse(b"a\0b").is_err());
        assert_eq!(parts("..a/b.."), ["..a", "b.."]);
    }
}
