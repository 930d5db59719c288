//! Reading and writing cgroupfs interface files, and creating and removing group directories.
//! Each write is one `write(2)` of the whole value (cgroupfs parses per write), and every
//! error names the file and the value.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::error::{CgroupError, Result};

/// How long removal waits for exiting processes to leave a group.
const REMOVE_PATIENCE: Duration = Duration::from_secs(5);

pub(crate) fn write(file: &Path, value: &str) -> Result<()> {
    let fail = |source| CgroupError::Write {
        file: file.to_path_buf(),
        value: value.to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(fail)?;
    let n = f.write(value.as_bytes()).map_err(fail)?;
    if n != value.len() {
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write ({n} of {} bytes)", value.len()),
        )));
    }
    Ok(())
}

pub(crate) fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).map_err(|source| CgroupError::Read {
        file: file.to_path_buf(),
        source,
    })
}

pub(crate) fn parse_error(file: &Path, content: &str) -> CgroupError {
    CgroupError::Parse {
        file: file.to_path_buf(),
        content: content.to_string(),
    }
}

/// A file holding one number.
pub(crate) fn read_u64(file: &Path) -> Result<u64> {
    let text = read(file)?;
    text.trim().parse().map_err(|_| parse_error(file, &text))
}

/// A v2 limit file: a number, or `max` for none.
pub(crate) fn read_limit(file: &Path) -> Result<Option<u64>> {
    let text = read(file)?;
    match text.trim() {
        "max" => Ok(None),
        n => n.parse().map(Some).map_err(|_| parse_error(file, &text)),
    }
}

/// A flat-keyed file (`key value` per line: memory.stat, cpu.stat, memory.events, ...).
pub(crate) fn read_keyed(file: &Path) -> Result<Vec<(String, u64)>> {
    let text = read(file)?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (key, value) = line
                .split_once(' ')
                .ok_or_else(|| parse_error(file, line))?;
            let value = value.trim().parse().map_err(|_| parse_error(file, line))?;
            Ok((key.to_string(), value))
        })
        .collect()
}

pub(crate) fn keyed_value(entries: &[(String, u64)], key: &str) -> Option<u64> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// The processes listed in one `cgroup.procs`.
pub(crate) fn read_pids(file: &Path) -> Result<Vec<Pid>> {
    let text = read(file)?;
    text.split_whitespace()
        .map(|p| {
            p.parse()
                .map(Pid::from_raw)
                .map_err(|_| parse_error(file, &text))
        })
        .collect()
}

/// The processes of a group and of every group below it (a container may nest its own).
pub(crate) fn pids_recursive(dir: &Path, out: &mut Vec<Pid>) -> Result<()> {
    out.extend(read_pids(&dir.join("cgroup.procs"))?);
    for child in child_groups(dir)? {
        pids_recursive(&child, out)?;
    }
    Ok(())
}

/// The child groups of a group: in cgroupfs every directory is a group.
fn child_groups(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| CgroupError::Dir {
        op: "read",
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut children = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::Dir {
            op: "read",
            dir: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            children.push(entry.path());
        }
    }
    Ok(children)
}

/// Creates one group directory; returns whether it was new.
pub(crate) fn make_group(dir: &Path) -> Result<bool> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::Dir {
            op: "create",
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

/// Removes a group and its descendants, deepest first. A group whose processes are still
/// exiting refuses removal with EBUSY for a moment; that is retried until [`REMOVE_PATIENCE`].
/// A group that is already gone is fine.
pub(crate) fn remove_group(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + REMOVE_PATIENCE;
    remove_tree(dir, deadline)
}

fn remove_tree(dir: &Path, deadline: Instant) -> Result<()> {
    let children = match child_groups(dir) {
        Ok(children) => children,
        Err(CgroupError::Dir { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    for child in children {
        remove_tree(&child, deadline)?;
    }
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(CgroupError::Dir {
                    op: "remove",
                    dir: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Polls `done` every few milliseconds until it holds or `patience` runs out.
pub(crate) fn wait_until(
    patience: Duration,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let deadline = Instant::now() + patience;
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
