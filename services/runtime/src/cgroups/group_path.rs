//! The name of a group relative to a hierarchy root: `wharf/<container-id>`. Wharf only ever
//! creates groups under its own parent, so a dockerd on the same host keeps its `docker` groups.

use std::fmt;
use std::path::{Path, PathBuf};

use super::error::{CgroupError, Result};

/// Wharf's parent group in every hierarchy.
pub const PARENT: &str = "wharf";

/// A validated relative group path whose first component is [`PARENT`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupPath(String);

impl GroupPath {
    /// Checks `path` (e.g. `wharf/3f2a…`): relative, plain names only (no `.`/`..`, no empty
    /// components, nothing that could be mistaken for an interface file), under `wharf/`, or
    /// ending in a container's ID (64 lowercase hex digits) below the parent a create named
    /// (`--cgroup-parent`): never a group Wharf did not make for a container.
    pub fn new(path: &str) -> Result<Self> {
        let invalid = |reason: &str| CgroupError::InvalidPath {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let components: Vec<&str> = path.split('/').collect();
        for name in &components {
            if name.is_empty() || name.len() > 255 {
                return Err(invalid("empty or over-long component"));
            }
            if name.starts_with('.') || name.contains('.') && name.starts_with("cgroup") {
                return Err(invalid(
                    "component looks like a dot file or an interface file",
                ));
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                return Err(invalid("components may hold only [A-Za-z0-9._-]"));
            }
        }
        let container = |name: &str| {
            name.len() == 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let under_wharf = components[0] == PARENT;
        let under_parent = components.len() >= 2 && container(components[components.len() - 1]);
        if !under_wharf && !under_parent {
            return Err(invalid(
                "must start with \"wharf/\" or end in a container's ID (--cgroup-parent)",
            ));
        }
        if components.len() < 2 {
            return Err(invalid("needs a group below \"wharf\""));
        }
        Ok(GroupPath(path.to_string()))
    }

    /// The group of one container: `wharf/<id>`.
    pub fn for_container(id: &str) -> Result<Self> {
        Self::new(&format!("{PARENT}/{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The group's directory under a hierarchy root.
    pub(crate) fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }

    /// The directories from the parent down to the group itself (`wharf`, `wharf/<id>`).
    pub(crate) fn levels(&self, root: &Path) -> Vec<PathBuf> {
        let mut dir = root.to_path_buf();
        self.0
            .split('/')
            .map(|name| {
                dir.push(name);
                dir.clone()
            })
            .collect()
    }
}

impl fmt::Display for GroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_cgroup_parent_holds_only_container_groups() {
        let id = "a".repeat(64);
        assert!(GroupPath::new(&format!("mygroup/{id}")).is_ok());
        assert!(GroupPath::new(&format!("a/b/{id}")).is_ok());
        for bad in [
            "mygroup/notanid".to_string(),
            id.clone(),
            format!("../{id}"),
            format!("mygroup/../{id}"),
            format!("mygroup/{}", "A".repeat(64)),
            "system.slice/x".to_string(),
        ] {
            assert!(GroupPath::new(&bad).is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn accepts_groups_under_wharf_only() {
        assert!(GroupPath::new("wharf/abc123").is_ok());
        assert!(GroupPath::for_container("0123abcd").is_ok());
        for bad in [
            "wharf",
            "docker/abc",
            "/wharf/abc",
            "wharf/../docker",
            "wharf/./x",
            "wharf//x",
            "wharf/x/",
            "wharf/cgroup.procs",
            "wharf/a b",
        ] {
            assert!(GroupPath::new(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn levels_go_from_parent_to_group() {
        let p = GroupPath::new("wharf/c1").unwrap();
        assert_eq!(
            p.levels(Path::new("/cg")),
            vec![PathBuf::from("/cg/wharf"), PathBuf::from("/cg/wharf/c1")]
        );
    }
}
