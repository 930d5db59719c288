//! User namespaces for containers (dockerd's `--userns-remap`): the subordinate IDs a node maps
//! container root to, read from /etc/subuid and /etc/subgid, and idmapped mounts, through which
//! the image's layers (owned by host root) look owned by that range, so a container's root owns
//! its files without a copy of any layer being made.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Container IDs `0..size` are host IDs `uid..uid+size` (users) and `gid..gid+size` (groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

/// The ID an unmapped owner shows as inside a user namespace (the kernel's overflowuid).
const OVERFLOW_ID: u32 = 65_534;

/// The user `--userns-remap=default` uses, as dockerd.
pub const DEFAULT_USER: &str = "dockremap";

/// The first range of `name` in a subordinate ID file's text (`name:start:count` lines; the
/// name or its numeric ID may be used).
fn subordinate(text: &str, names: &[&str]) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut parts = line.trim().split(':');
        let (who, start, count) = (parts.next()?, parts.next()?, parts.next()?);
        if !names.contains(&who) {
            return None;
        }
        Some((start.parse().ok()?, count.parse().ok()?))
    })
}

/// Where a new range of 65536 IDs can go: after every range in `text`, from 100000 on.
fn free_start(text: &str) -> u32 {
    text.lines()
        .filter_map(|l| {
            let mut p = l.trim().split(':').skip(1);
            let start: u64 = p.next()?.parse().ok()?;
            let count: u64 = p.next()?.parse().ok()?;
            Some(start + count)
        })
        .max()
        .map_or(100_000, |end| end.max(100_000) as u32)
}

fn id_of(db: &str, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(db).ok()?;
    text.lines().find_map(|l| {
        let mut p = l.split(':');
        (p.next()? == name).then(|| p.nth(1).map(str::to_string))?
    })
}

impl IdMap {
    /// The map `--userns-remap=SPEC` asks for: `default` (the user `dockremap`, made with a
    /// range of its own when missing, as dockerd does) or `USER[:GROUP]` with ranges in
    /// /etc/subuid and /etc/subgid.
    pub fn from_remap(spec: &str) -> Result<IdMap, String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u.to_string(), g.to_string()),
            None => (spec.to_string(), spec.to_string()),
        };
        let default = user == "default";
        let (user, group) = match default {
            true => (DEFAULT_USER.to_string(), DEFAULT_USER.to_string()),
            false => (user, group),
        };
        if default {
            ensure_default_user()?;
        }
        let uid = id_of("/etc/passwd", &user)
            .ok_or_else(|| format!("--userns-remap: no such user {user:?}"))?;
        let gid = id_of("/etc/group", &group)
            .ok_or_else(|| format!("--userns-remap: no such group {group:?}"))?;
        let read = |file: &str| std::fs::read_to_string(file).unwrap_or_default();
        let (uid_start, uid_count) =
            subordinate(&read("/etc/subuid"), &[&user, &uid]).ok_or_else(|| {
                format!("--userns-remap: no subordinate user IDs for {user:?} in /etc/subuid")
            })?;
        let (gid_start, gid_count) = subordinate(&read("/etc/subgid"), &[&group, &gid])
            .ok_or_else(|| {
                format!("--userns-remap: no subordinate group IDs for {group:?} in /etc/subgid")
            })?;
        let size = uid_count.min(gid_count);
        if size < 65_536 {
            return Err(format!(
                "--userns-remap: {user:?} has {size} subordinate IDs; a container needs 65536"
            ));
        }
        Ok(IdMap {
            uid: uid_start,
            gid: gid_start,
            size: 65_536,
        })
    }

    /// Whether host `uid` is one of the container's.
    pub fn contains_uid(&self, uid: u32) -> bool {
        uid >= self.uid && uid - self.uid < self.size
    }

    /// The owner a file of host owner `(uid, gid)` has inside the container: its range shifted
    /// back to 0 and up; any other ID is the kernel's overflow ID (65534), as the container
    /// sees it.
    pub fn to_container(&self, (uid, gid): (u32, u32)) -> (u32, u32) {
        let shift = |id: u32, start: u32| match id.checked_sub(start) {
            Some(n) if n < self.size => n,
            _ => OVERFLOW_ID,
        };
        (shift(uid, self.uid), shift(gid, self.gid))
    }

    /// The host owner of container owner `(uid, gid)`; an ID outside the range is refused in
    /// dockerd's words.
    pub fn to_host(&self, (uid, gid): (u32, u32)) -> Result<(u32, u32), String> {
        let shift = |id: u32, start: u32| match id < self.size {
            true => Ok(start + id),
            false => Err(format!("Container ID {id} cannot be mapped to a host ID")),
        };
        Ok((shift(uid, self.uid)?, shift(gid, self.gid)?))
    }

    /// A user namespace with this map, open (a short-lived child makes it; the namespace
    /// stays as long as the descriptor).
    pub fn user_namespace(&self) -> std::io::Result<OwnedFd> {
        let mut go = [0; 2];
        // SAFETY: pipe fills the array we own.
        if unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the child makes three system calls and leaves with _exit (no allocation: we
        // may be one thread of many).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: system calls on integers and our own buffer, then _exit.
            unsafe {
                libc::close(go[1]);
                let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
                let mut byte = 0u8;
                // Waits until the parent has what it needs (or is gone).
                libc::read(go[0], (&mut byte as *mut u8).cast(), 1);
                libc::_exit(if ok { 0 } else { 1 })
            }
        }
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(go[0]) };
        // SAFETY: `go[1]` is ours from here; dropping it lets the child leave.
        let release = unsafe { OwnedFd::from_raw_fd(go[1]) };
        let result = self.adopt(pid);
        drop(release);
        let mut status = 0;
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        result
    }

    /// Writes the maps of `pid`'s new user namespace and opens it.
    fn adopt(&self, pid: i32) -> std::io::Result<OwnedFd> {
        let ns = format!("/proc/{pid}/ns/user");
        let ours = std::fs::metadata("/proc/self/ns/user")?;
        // The child may not have unshared yet.
        use std::os::unix::fs::MetadataExt;
        for _ in 0..1000 {
            if std::fs::metadata(&ns)?.ino() != ours.ino() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        for (file, start) in [("uid_map", self.uid), ("gid_map", self.gid)] {
            std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/proc/{pid}/{file}"))?
                .write_all(format!("0 {start} {}\n", self.size).as_bytes())?;
        }
        Ok(std::fs::File::open(&ns)?.into())
    }
}

/// Makes the user `dockremap` (a system user without a home) and its 65536 subordinate IDs
/// when missing, as dockerd does for `--userns-remap=default`.
fn ensure_default_user() -> Result<(), String> {
    if id_of("/etc/passwd", DEFAULT_USER).is_none() {
        let status = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/bin/false",
                DEFAULT_USER,
            ])
            .status()
            .map_err(|e| format!("--userns-remap=default: useradd: {e}"))?;
        if !status.success() {
            return Err(format!(
                "--userns-remap=default: useradd {DEFAULT_USER} failed"
            ));
        }
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if subordinate(&text, &[DEFAULT_USER]).is_some() {
            continue;
        }
        let line = format!("{DEFAULT_USER}:{}:65536\n", free_start(&text));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| format!("--userns-remap=default: {file}: {e}"))?;
    }
    Ok(())
}

fn cstring(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// Mounts `source` on `target` idmapped through `userns`: a file owned by host ID N there
/// looks owned by the ID N maps to (host root's files look owned by the container's root).
pub fn idmapped_bind(source: &Path, target: &Path, userns: &OwnedFd) -> std::io::Result<()> {
    use crate::mount_api;
    use std::os::fd::AsRawFd;
    let (source, target) = (cstring(source)?, cstring(target)?);
    let tree = mount_api::open_tree(
        libc::AT_FDCWD,
        &source,
        libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
    )?;
    mount_api::set_attr(&tree, libc::MOUNT_ATTR_IDMAP, Some(userns.as_raw_fd()))?;
    mount_api::move_mount(
        tree.as_raw_fd(),
        c"",
        libc::AT_FDCWD,
        &target,
        libc::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_are_read_and_new_ones_go_after_them() {
        let text = "alice:100000:65536\n1001:165536:65536\n";
        assert_eq!(subordinate(text, &["alice"]), Some((100_000, 65_536)));
        assert_eq!(subordinate(text, &["bob", "1001"]), Some((165_536, 65_536)));
        assert_eq!(subordinate(text, &["carol"]), None);
        assert_eq!(free_start(text), 231_072);
        assert_eq!(free_start(""), 100_000);
    }

    #[test]
    fn owners_move_between_the_host_range_and_the_container() {
        let m = IdMap {
            uid: 100_000,
            gid: 200_000,
            size: 65_536,
        };
        assert_eq!(m.to_container((100_000, 200_000)), (0, 0));
        assert_eq!(m.to_container((101_000, 200_007)), (1_000, 7));
        // Host root and IDs past the range are nobody inside.
        assert_eq!(m.to_container((0, 0)), (65_534, 65_534));
        assert_eq!(m.to_container((165_536, 265_536)), (65_534, 65_534));
        assert_eq!(m.to_host((0, 0)), Ok((100_000, 200_000)));
        assert_eq!(m.to_host((1_000, 65_535)), Ok((101_000, 265_535)));
        assert_eq!(
            m.to_host((65_536, 0)),
            Err("Container ID 65536 cannot be mapped to a host ID".to_string())
        );
        assert_eq!(
            m.to_host((0, 70_000)),
            Err("Container ID 70000 cannot be mapped to a host ID".to_string())
        );
    }
}
