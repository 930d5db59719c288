//! Which cgroup layout this host has, read from /proc/self/mountinfo: legacy/hybrid (v1
//! controllers, each mounted on its own hierarchy, maybe with a controller-less v2 hierarchy
//! beside them) or unified (one cgroup2 hierarchy with every controller).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{CgroupError, Result};

/// The v1 controllers Wharf places containers in.
pub const V1_CONTROLLERS: [&str; 8] = [
    "memory", "cpu", "cpuacct", "pids", "freezer", "blkio", "cpuset", "devices",
];

/// Whether a v1 mount option names a hierarchy without controllers (`name=systemd`), which
/// runc places containers in too.
pub(crate) fn is_named_hierarchy(option: &str) -> bool {
    option.len() > "name=".len() && option.starts_with("name=")
}

/// The cgroup layout of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1 controllers (hybrid when `unified` is set: v2 exists but holds none of them).
    V1 {
        /// Controller name -> mount point of its hierarchy (co-mounted controllers share one);
        /// named hierarchies such as `name=systemd` are here too, under that name.
        controllers: BTreeMap<String, PathBuf>,
        /// The v2 hierarchy of a hybrid host.
        unified: Option<PathBuf>,
    },
    /// One cgroup2 hierarchy.
    V2 { root: PathBuf },
}

impl Layout {
    /// Detects the layout of this host from /proc/self/mountinfo.
    pub fn detect() -> Result<Self> {
        let file = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(file).map_err(|source| CgroupError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::from_mountinfo(&text)
    }

    /// The layout described by a mountinfo text. v1 wins when any controller Wharf uses is on
    /// a v1 hierarchy: those controllers cannot also be active in v2.
    pub fn from_mountinfo(text: &str) -> Result<Self> {
        let mut controllers = BTreeMap::new();
        let mut unified = None;
        let mut full_mount = BTreeMap::new();
        for mount in text.lines().filter_map(Mount::parse) {
            match mount.fstype {
                "cgroup2" => {
                    unified.get_or_insert(mount.point);
                }
                "cgroup" => {
                    // Bind mounts of a subtree (root other than "/") are not where groups
                    // are created: a full mount of the same hierarchy wins over them.
                    let full = mount.root == "/";
                    for option in mount.super_options.split(',') {
                        if !V1_CONTROLLERS.contains(&option) && !is_named_hierarchy(option) {
                            continue;
                        }
                        match full_mount.get(option) {
                            Some(true) => {}
                            Some(false) if !full => {}
                            _ => {
                                controllers.insert(option.to_string(), mount.point.clone());
                                full_mount.insert(option.to_string(), full);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if controllers
            .keys()
            .any(|c| V1_CONTROLLERS.contains(&c.as_str()))
        {
            return Ok(Layout::V1 {
                controllers,
                unified,
            });
        }
        match unified {
            Some(root) => Ok(Layout::V2 { root }),
            None => Err(CgroupError::NoHierarchy(
                "neither cgroup v1 controllers nor cgroup2 are mounted".into(),
            )),
        }
    }
}

/// The fields of one mountinfo line that matter here.
struct Mount<'a> {
    root: &'a str,
    point: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

impl<'a> Mount<'a> {
    /// `id parent maj:min root point options [optional...] - fstype source super_options`
    fn parse(line: &'a str) -> Option<Self> {
        let (left, right) = line.split_once(" - ")?;
        let mut left = left.split(' ');
        let root = left.nth(3)?;
        let point = unescape(left.next()?);
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let _source = right.next()?;
        let super_options = right.next().unwrap_or("");
        Some(Mount {
            root,
            point,
            fstype,
            super_options,
        })
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn hybrid_host_uses_v1_and_remembers_the_unified_hierarchy() {
        let Layout::V1 {
            controllers,
            unified,
        } = Layout::from_mountinfo(HYBRID).unwrap()
        else {
            panic!("expected v1");
        };
        assert_eq!(
            controllers["cpu"],
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            controllers["cpuacct"],
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            controllers["memory"],
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert!(!controllers.contains_key("systemd"));
        // runc puts containers in the named systemd hierarchy too.
        assert_eq!(
            controllers["name=systemd"],
            PathBuf::from("/sys/fs/cgroup/systemd")
        );
        assert_eq!(unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn unified_host_uses_v2() {
        let text = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(
            Layout::from_mountinfo(text).unwrap(),
            Layout::V2 {
                root: PathBuf::from("/sys/fs/cgroup")
            }
        );
    }

    #[test]
    fn a_named_v1_hierarchy_beside_cgroup2_is_still_a_unified_host() {
        let text = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate
31 30 0:27 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,name=systemd
";
        assert_eq!(
            Layout::from_mountinfo(text).unwrap(),
            Layout::V2 {
                root: PathBuf::from("/sys/fs/cgroup")
            }
        );
    }

    #[test]
    fn mount_points_are_unescaped_and_missing_cgroups_are_an_error() {
        let text = "30 23 0:26 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            Layout::from_mountinfo(text).unwrap(),
            Layout::V2 {
                root: PathBuf::from("/mnt/cg two")
            }
        );
        assert!(Layout::from_mountinfo("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n").is_err());
    }
}
