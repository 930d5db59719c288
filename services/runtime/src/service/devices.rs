//! The devices a container gets, as dockerd gives them: runc's default nodes and cgroup rules,
//! `--device` (a node of the host, or every node under a directory) with its permissions,
//! `--device-cgroup-rule`, and for `--privileged` every device of the host, all allowed.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType};
use wharf_bus::container::HostConfig;
use wharf_bus::BusError;

use crate::cgroups::{default_device_rules, DeviceRule};

/// A device node of the host, and the cgroup rule that lets the container use it.
fn node(
    host: &Path,
    in_container: &Path,
    access: &str,
) -> Result<Option<(LinuxDevice, DeviceRule)>, String> {
    let meta = std::fs::metadata(host).map_err(|e| e.to_string())?;
    let file_type = meta.file_type();
    let (typ, kind) = if file_type.is_char_device() {
        (LinuxDeviceType::C, 'c')
    } else if file_type.is_block_device() {
        (LinuxDeviceType::B, 'b')
    } else {
        return Ok(None);
    };
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let device = LinuxDeviceBuilder::default()
        .path(in_container.to_path_buf())
        .typ(typ)
        .major(major as i64)
        .minor(minor as i64)
        .file_mode(meta.mode() & 0o7777)
        .uid(meta.uid())
        .gid(meta.gid())
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Some((
        device,
        DeviceRule::allow(kind, Some(major), Some(minor), access),
    )))
}

/// Every device node under `dir` (not in /dev/pts, /dev/shm, /dev/mqueue...), as runc's
/// `HostDevices` walks /dev, with `dir` replaced by `in_container`.
fn walk(dir: &Path, in_container: &Path, access: &str, out: &mut Vec<(LinuxDevice, DeviceRule)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            let skip = [".lxc", ".lxd-mounts", ".udev", "fd", "mqueue", "pts", "shm"];
            if !skip.iter().any(|s| name == *s) {
                walk(&entry.path(), &in_container.join(&name), access, out);
            }
        } else if !file_type.is_symlink() && name != "console" {
            if let Ok(Some(found)) = node(&entry.path(), &in_container.join(&name), access) {
                out.push(found);
            }
        }
    }
}

/// The device nodes (beyond the spec's defaults) and the cgroup rules of a container.
pub(crate) fn plan(h: &HostConfig) -> Result<(Vec<LinuxDevice>, Vec<DeviceRule>), BusError> {
    let mut nodes = Vec::new();
    if h.privileged {
        let mut found = Vec::new();
        walk(Path::new("/dev"), Path::new("/dev"), "rwm", &mut found);
        nodes.extend(found.into_iter().map(|(d, _)| d));
        return Ok((nodes, vec![DeviceRule::all(true)]));
    }
    let mut rules = default_device_rules();
    for d in h.devices.iter().flatten() {
        let access = if d.cgroup_permissions.is_empty() {
            "rwm"
        } else {
            d.cgroup_permissions.as_str()
        };
        if !access.chars().all(|c| "rwm".contains(c)) {
            return Err(BusError::invalid(format!(
                "invalid device mode: {}",
                d.cgroup_permissions
            )));
        }
        let host = PathBuf::from(&d.path_on_host);
        let target = match d.path_in_container.as_str() {
            "" => host.clone(),
            p => PathBuf::from(p),
        };
        let failed = |reason: String| {
            BusError::invalid(format!(
                "error gathering device information while adding custom device {:?}: {reason}",
                d.path_on_host
            ))
        };
        let mut found = Vec::new();
        match node(&host, &target, access).map_err(failed)? {
            Some(one) => found.push(one),
            None if host.is_dir() => walk(&host, &target, access, &mut found),
            None => return Err(failed("not a device node".into())),
        }
        for (device, rule) in found {
            nodes.push(device);
            rules.push(rule);
        }
    }
    for rule in h.device_cgroup_rules.iter().flatten() {
        rules.push(DeviceRule::parse(rule).map_err(BusError::invalid)?);
    }
    Ok((nodes, rules))
}
