//! A container's mounts as dockerd plans them at create: binds (`-v /src:/dst:opts`), named and
//! anonymous volumes (`-v name:/dst`, the image's `VOLUME`s), `--mount`, `--tmpfs` and
//! `--volumes-from`, made on the host in the order dockerd checks them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wharf_bus::container::{ContainerConfig, HostConfig};
use wharf_bus::BusError;

use super::record::MountPoint;
use super::{host, internal, Node};

/// Binds, named and anonymous volumes, `--mount` and `--tmpfs`, as dockerd plans them.
pub(super) fn make(
    node: &Node,
    id: &str,
    config: &ContainerConfig,
    host: &HostConfig,
    rootfs: &Path,
) -> Result<Vec<MountPoint>, BusError> {
    let mut mounts: Vec<MountPoint> = Vec::new();
    let volume = |name: Option<&str>,
                  dest: &str,
                  rw: bool,
                  copy: bool,
                  mode: &str|
     -> Result<MountPoint, BusError> {
        let v = node
            .volumes
            .create(name, BTreeMap::new(), BTreeMap::new())
            .map_err(super::volumes::error)?;
        node.volumes
            .acquire(&v.name, id)
            .map_err(super::volumes::error)?;
        if copy {
            if let Err(e) = node.volumes.populate_from(&v.name, rootfs, Path::new(dest)) {
                tracing::warn!(volume = %v.name, "copy-up: {e}");
            }
        }
        if let Some((_, map)) = host::remap(node, host) {
            // A volume nothing was copied into is still host root's: it goes to the container's
            // root (what was copied up already has the owners the container sees).
            use std::os::unix::fs::MetadataExt;
            if std::fs::metadata(&v.mountpoint).is_ok_and(|m| m.uid() == 0 && m.gid() == 0) {
                let (uid, gid) = (
                    nix::unistd::Uid::from_raw(map.uid),
                    nix::unistd::Gid::from_raw(map.gid),
                );
                nix::unistd::chown(&v.mountpoint, Some(uid), Some(gid))
                    .map_err(|e| internal("cannot give the volume to the container's root", e))?;
            }
        }
        Ok(MountPoint {
            kind: "volume".into(),
            name: v.name.clone(),
            source: v.mountpoint.display().to_string(),
            destination: dest.to_string(),
            mode: mode.to_string(),
            rw,
            propagation: String::new(),
            anonymous: name.is_none(),
            options: String::new(),
        })
    };
    let check_dest = |dest: &str, kind: &str| -> Result<(), BusError> {
        if !dest.starts_with('/') {
            return Err(BusError::invalid(format!(
                "invalid mount config for type \"{kind}\": invalid mount path: '{dest}' mount path must be absolute"
            )));
        }
        if dest == "/" {
            return Err(BusError::invalid(format!(
                "invalid mount config for type \"{kind}\": invalid specification: destination can't be '/'"
            )));
        }
        Ok(())
    };
    let taken = |mounts: &Vec<MountPoint>, dest: &str| -> Result<(), BusError> {
        if mounts.iter().any(|m| m.destination == dest) {
            return Err(BusError::invalid(format!("Duplicate mount point: {dest}")));
        }
        Ok(())
    };
    for spec in &host.binds {
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dest, opts) = match parts.as_slice() {
            [src, dest] => (*src, *dest, ""),
            [src, dest, opts] => (*src, *dest, *opts),
            _ => {
                return Err(BusError::invalid(format!(
                    "invalid volume specification: '{spec}'"
                )))
            }
        };
        let dest = dest.trim_end_matches('/');
        let kind = if src.starts_with('/') {
            "bind"
        } else {
            "volume"
        };
        check_dest(dest, kind)?;
        taken(&mounts, dest)?;
        let opt_list: Vec<&str> = opts.split(',').filter(|o| !o.is_empty()).collect();
        for o in &opt_list {
            if !matches!(
                *o,
                "ro" | "rw"
                    | "z"
                    | "Z"
                    | "nocopy"
                    | "rprivate"
                    | "private"
                    | "rshared"
                    | "shared"
                    | "rslave"
                    | "slave"
                    | "consistent"
                    | "cached"
                    | "delegated"
            ) {
                return Err(BusError::invalid(format!("invalid mode: {o}")));
            }
        }
        let rw = !opt_list.contains(&"ro");
        if kind == "bind" {
            let source = PathBuf::from(src);
            if !source.exists() {
                std::fs::create_dir_all(&source)
                    .map_err(|e| internal(format!("cannot create bind source {src}"), e))?;
            }
            mounts.push(MountPoint {
                kind: "bind".into(),
                name: String::new(),
                source: src.to_string(),
                destination: dest.to_string(),
                mode: opts.to_string(),
                rw,
                propagation: "rprivate".into(),
                anonymous: false,
                options: String::new(),
            });
        } else {
            let copy = !opt_list.contains(&"nocopy");
            let mp = volume(Some(src), dest, rw, copy, "z")?;
            mounts.push(MountPoint {
                mode: opts.to_string(),
                ..mp
            });
        }
    }
    for m in &host.mounts {
        let dest = m.target.trim_end_matches('/');
        check_dest(dest, &m.r#type)?;
        taken(&mounts, dest)?;
        match m.r#type.as_str() {
            "bind" => {
                if !Path::new(&m.source).exists() {
                    return Err(BusError::invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        m.source
                    )));
                }
                mounts.push(MountPoint {
                    kind: "bind".into(),
                    name: String::new(),
                    source: m.source.clone(),
                    destination: dest.to_string(),
                    mode: String::new(),
                    rw: !m.read_only,
                    propagation: "rprivate".into(),
                    anonymous: false,
                    options: String::new(),
                });
            }
            "volume" => {
                let nocopy = m
                    .volume_options
                    .as_ref()
                    .and_then(|o| o.get("NoCopy"))
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                let name = (!m.source.is_empty()).then_some(m.source.as_str());
                let mp = volume(name, dest, !m.read_only, !nocopy, "z")?;
                mounts.push(MountPoint {
                    mode: String::new(),
                    ..mp
                });
            }
            "tmpfs" => {
                let mut options = Vec::new();
                if let Some(o) = &m.tmpfs_options {
                    if let Some(size) = o.get("SizeBytes").and_then(|v| v.as_i64()) {
                        options.push(format!("size={size}"));
                    }
                    if let Some(mode) = o.get("Mode").and_then(|v| v.as_u64()) {
                        options.push(format!("mode={mode:o}"));
                    }
                }
                mounts.push(MountPoint {
                    kind: "tmpfs".into(),
                    name: String::new(),
                    source: String::new(),
                    destination: dest.to_string(),
                    mode: String::new(),
                    rw: !m.read_only,
                    propagation: String::new(),
                    anonymous: false,
                    options: options.join(","),
                });
            }
            other => return Err(BusError::invalid(format!("mount type unknown: {other}"))),
        }
    }
    for (dest, options) in &host.tmpfs {
        check_dest(dest, "tmpfs")?;
        taken(&mounts, dest)?;
        mounts.push(MountPoint {
            kind: "tmpfs".into(),
            name: String::new(),
            source: String::new(),
            destination: dest.clone(),
            mode: String::new(),
            rw: !options.split(',').any(|o| o == "ro"),
            propagation: String::new(),
            anonymous: false,
            options: options.clone(),
        });
    }
    // `--volumes-from name[:ro|:rw]`: the other container's volumes and binds, same places.
    for spec in &host.volumes_from {
        let (name, mode) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
        let q = name.trim_start_matches('/');
        let other = node
            .all()
            .into_iter()
            .find(|c| c.with(|r| r.id == q || r.short_name() == q))
            .or_else(|| {
                let mut found = node.all().into_iter().filter(|c| c.id.starts_with(q));
                match (found.next(), found.next()) {
                    (Some(c), None) => Some(c),
                    _ => None,
                }
            })
            .ok_or_else(|| BusError::not_found(format!("No such container: {name}")))?;
        for m in other.with(|r| r.mounts.clone()) {
            if m.kind == "tmpfs" || mounts.iter().any(|x| x.destination == m.destination) {
                continue;
            }
            if m.kind == "volume" {
                node.volumes
                    .acquire(&m.name, id)
                    .map_err(super::volumes::error)?;
            }
            let rw = match mode {
                "ro" => false,
                "rw" => true,
                _ => m.rw,
            };
            mounts.push(MountPoint {
                rw,
                anonymous: false,
                ..m
            });
        }
    }
    if let Some(volumes) = &config.volumes {
        for dest in volumes.keys() {
            let dest = dest.trim_end_matches('/');
            if mounts.iter().any(|m| m.destination == dest) {
                continue;
            }
            check_dest(dest, "volume")?;
            let mp = volume(None, dest, true, true, "")?;
            mounts.push(mp);
        }
    }
    Ok(mounts)
}
