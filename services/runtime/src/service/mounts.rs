//! A container's mounts as dockerd plans them at create: binds (`-v /src:/dst:opts`), named and
//! anonymous volumes (`-v name:/dst`, the image's `VOLUME`s), `--mount`, `--tmpfs` and
//! `--volumes-from`. What the request asks for is parsed and checked by pure functions, with
//! dockerd's error texts; [`make`] then makes each mount on the host in the order dockerd
//! does (bind sources, volumes filled from the image).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wharf_bus::container::{ContainerConfig, HostConfig, MountSpec};
use wharf_bus::BusError;

use super::record::MountPoint;
use super::{host, internal, Node};

/// A mount the create request asks for, parsed and checked, before anything is made for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RequestedMount {
    /// Where in the container, without a trailing slash.
    destination: String,
    source: Source,
    rw: bool,
    /// The options of `-v` as given (`ro,nocopy`), which `docker inspect` shows as the mount's
    /// `Mode`; empty for `--mount` and `--tmpfs`.
    mode: String,
}

/// What a [`RequestedMount`] mount puts at its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A host path bound as is. `-v` makes a missing source directory (`create`); `--mount`
    /// refuses a missing source.
    Bind { path: String, create: bool },
    /// A named volume, or an anonymous one (`None`), filled from the image's files at the
    /// destination unless `copy` is false (`nocopy`).
    Volume { name: Option<String>, copy: bool },
    /// A tmpfs with its mount options (`size=65536k,mode=1777`).
    Tmpfs { options: String },
}

/// Refuses a destination dockerd refuses: one that is not absolute, or the root.
fn check_destination(dest: &str, kind: &str) -> Result<(), BusError> {
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
}

/// Refuses a second mount at a destination already in `planned`.
fn check_free(planned: &[MountPoint], dest: &str) -> Result<(), BusError> {
    if planned.iter().any(|m| m.destination == dest) {
        return Err(BusError::invalid(format!("Duplicate mount point: {dest}")));
    }
    Ok(())
}

/// `-v src:dst[:opts]` (`HostConfig.Binds`), after the mounts already `planned`: a source
/// starting with `/` is a host path, anything else names a volume; `opts` is a comma-separated
/// list of dockerd's modes (`ro`, `rw`, `nocopy`, SELinux labels, propagation, consistency).
fn parse_bind(spec: &str, planned: &[MountPoint]) -> Result<RequestedMount, BusError> {
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
    check_destination(dest, kind)?;
    check_free(planned, dest)?;
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
    let source = if kind == "bind" {
        Source::Bind {
            path: src.to_string(),
            create: true,
        }
    } else {
        Source::Volume {
            name: Some(src.to_string()),
            copy: !opt_list.contains(&"nocopy"),
        }
    };
    Ok(RequestedMount {
        destination: dest.to_string(),
        source,
        rw: !opt_list.contains(&"ro"),
        mode: opts.to_string(),
    })
}

/// `--mount` (`HostConfig.Mounts`), after the mounts already `planned`: a bind, a volume
/// (named, or anonymous without a source; `NoCopy` in its volume options) or a tmpfs (its
/// `SizeBytes` and `Mode` become `size=` and `mode=` options).
fn parse_mount(m: &MountSpec, planned: &[MountPoint]) -> Result<RequestedMount, BusError> {
    let dest = m.target.trim_end_matches('/');
    check_destination(dest, &m.r#type)?;
    check_free(planned, dest)?;
    let source = match m.r#type.as_str() {
        "bind" => Source::Bind {
            path: m.source.clone(),
            create: false,
        },
        "volume" => {
            let nocopy = m
                .volume_options
                .as_ref()
                .and_then(|o| o.get("NoCopy"))
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            Source::Volume {
                name: (!m.source.is_empty()).then(|| m.source.clone()),
                copy: !nocopy,
            }
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
                // API 1.46: `Options`, flags as `[name]` lists; dockerd takes exec and noexec.
                for option in o
                    .get("Options")
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                {
                    let words: Vec<&str> = option
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|w| w.as_str())
                        .collect();
                    match words.as_slice() {
                        ["exec"] | ["noexec"] => options.push(words[0].to_string()),
                        _ => {
                            return Err(BusError::invalid(format!(
                                "invalid tmpfs option {option}: only exec and noexec are supported"
                            )))
                        }
                    }
                }
            }
            Source::Tmpfs {
                options: options.join(","),
            }
        }
        other => return Err(BusError::invalid(format!("mount type unknown: {other}"))),
    };
    Ok(RequestedMount {
        destination: dest.to_string(),
        source,
        rw: !m.read_only,
        mode: String::new(),
    })
}

/// `--tmpfs dst[:options]` (`HostConfig.Tmpfs`), after the mounts already `planned`; `ro`
/// among the options makes it read-only.
fn parse_tmpfs(
    dest: &str,
    options: &str,
    planned: &[MountPoint],
) -> Result<RequestedMount, BusError> {
    check_destination(dest, "tmpfs")?;
    check_free(planned, dest)?;
    Ok(RequestedMount {
        destination: dest.to_string(),
        source: Source::Tmpfs {
            options: options.to_string(),
        },
        rw: !options.split(',').any(|o| o == "ro"),
        mode: String::new(),
    })
}

/// `--volumes-from name[:ro|:rw]`: the container's name or ID, and whether its mounts come in
/// writable (`Some(true)`), read-only (`Some(false)`) or each as it is there (`None`).
fn parse_volumes_from(spec: &str) -> (&str, Option<bool>) {
    let (name, mode) = spec.split_once(':').unwrap_or((spec, ""));
    let rw = match mode {
        "ro" => Some(false),
        "rw" => Some(true),
        _ => None,
    };
    (name, rw)
}

/// What making the mounts of one container needs: the node (its volumes), the container's ID
/// and host config, and its mounted root (what volumes are filled from).
struct Maker<'a> {
    node: &'a Node,
    id: &'a str,
    host: &'a HostConfig,
    rootfs: &'a Path,
}

impl Maker<'_> {
    /// Creates (or finds) the volume `name` (anonymous: a new one), marks it used by the
    /// container and, when `copy`, fills it from the image's files at `dest`.
    fn volume(
        &self,
        name: Option<&str>,
        dest: &str,
        rw: bool,
        copy: bool,
        mode: &str,
    ) -> Result<MountPoint, BusError> {
        let node = self.node;
        let v = node
            .volumes
            .create(name, BTreeMap::new(), BTreeMap::new())
            .map_err(super::volumes::error)?;
        node.volumes
            .acquire(&v.name, self.id)
            .map_err(super::volumes::error)?;
        if copy {
            if let Err(e) = node
                .volumes
                .populate_from(&v.name, self.rootfs, Path::new(dest))
            {
                tracing::warn!(volume = %v.name, "copy-up: {e}");
            }
        }
        if let Some((_, map)) = host::remap(node, self.host) {
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
    }

    /// Makes what `wanted` needs on the host: a missing bind source made (`-v`) or refused
    /// (`--mount`), a volume created and filled; a tmpfs needs nothing until start.
    fn make(&self, wanted: RequestedMount) -> Result<MountPoint, BusError> {
        let RequestedMount {
            destination,
            source,
            rw,
            mode,
        } = wanted;
        match source {
            Source::Bind { path, create } => {
                if create {
                    let source = PathBuf::from(&path);
                    if !source.exists() {
                        std::fs::create_dir_all(&source).map_err(|e| {
                            internal(format!("cannot create bind source {path}"), e)
                        })?;
                    }
                } else if !Path::new(&path).exists() {
                    return Err(BusError::invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {path}"
                    )));
                }
                Ok(MountPoint {
                    kind: "bind".into(),
                    name: String::new(),
                    source: path,
                    destination,
                    mode,
                    rw,
                    propagation: "rprivate".into(),
                    anonymous: false,
                    options: String::new(),
                })
            }
            Source::Volume { name, copy } => {
                self.volume(name.as_deref(), &destination, rw, copy, &mode)
            }
            Source::Tmpfs { options } => Ok(MountPoint {
                kind: "tmpfs".into(),
                name: String::new(),
                source: String::new(),
                destination,
                mode,
                rw,
                propagation: String::new(),
                anonymous: false,
                options,
            }),
        }
    }
}

/// Makes the mounts of a container being created, in dockerd's order: binds, `--mount`,
/// `--tmpfs`, then the mounts of `--volumes-from` containers and the image's `VOLUME`s at
/// destinations nothing else took. Each is checked just before it is made, so the first
/// refusal is the one dockerd would give.
pub(super) fn make(
    node: &Node,
    id: &str,
    config: &ContainerConfig,
    host: &HostConfig,
    rootfs: &Path,
) -> Result<Vec<MountPoint>, BusError> {
    let maker = Maker {
        node,
        id,
        host,
        rootfs,
    };
    let mut mounts: Vec<MountPoint> = Vec::new();
    for spec in host.binds.iter().flatten() {
        let wanted = parse_bind(spec, &mounts)?;
        mounts.push(maker.make(wanted)?);
    }
    for m in &host.mounts {
        let wanted = parse_mount(m, &mounts)?;
        mounts.push(maker.make(wanted)?);
    }
    for (dest, options) in &host.tmpfs {
        let wanted = parse_tmpfs(dest, options, &mounts)?;
        mounts.push(maker.make(wanted)?);
    }
    // `--volumes-from name[:ro|:rw]`: the other container's volumes and binds, same places.
    for spec in host.volumes_from.iter().flatten() {
        let (name, rw) = parse_volumes_from(spec);
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
            mounts.push(MountPoint {
                rw: rw.unwrap_or(m.rw),
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
            check_destination(dest, "volume")?;
            let mp = maker.volume(None, dest, true, true, "")?;
            mounts.push(mp);
        }
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bind(src: &str, dest: &str) -> MountPoint {
        MountPoint {
            kind: "bind".into(),
            name: String::new(),
            source: src.into(),
            destination: dest.into(),
            mode: String::new(),
            rw: true,
            propagation: "rprivate".into(),
            anonymous: false,
            options: String::new(),
        }
    }

    fn message(r: Result<RequestedMount, BusError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind, wharf_bus::ErrorKind::Invalid);
        e.message
    }

    #[test]
    fn a_bind_of_a_host_path_with_or_without_options() {
        assert_eq!(
            parse_bind("/srv/data:/data/", &[]).unwrap(),
            RequestedMount {
                destination: "/data".into(),
                source: Source::Bind {
                    path: "/srv/data".into(),
                    create: true
                },
                rw: true,
                mode: String::new(),
            }
        );
        let ro = parse_bind("/srv/data:/data:ro,Z,rshared", &[]).unwrap();
        assert!(!ro.rw);
        assert_eq!(ro.mode, "ro,Z,rshared");
        let rw = parse_bind("/srv:/srv:rw", &[]).unwrap();
        assert!(rw.rw);
        assert_eq!(rw.mode, "rw");
    }

    #[test]
    fn a_source_without_a_slash_names_a_volume() {
        let v = parse_bind("cache:/var/cache:nocopy", &[]).unwrap();
        assert_eq!(
            v.source,
            Source::Volume {
                name: Some("cache".into()),
                copy: false
            }
        );
        assert!(v.rw);
        assert_eq!(v.mode, "nocopy");
        let v = parse_bind("cache:/var/cache:ro", &[]).unwrap();
        assert_eq!(
            v.source,
            Source::Volume {
                name: Some("cache".into()),
                copy: true
            }
        );
        assert!(!v.rw);
    }

    #[test]
    fn binds_are_refused_with_dockerds_texts() {
        assert_eq!(
            message(parse_bind("/only-one-part", &[])),
            "invalid volume specification: '/only-one-part'"
        );
        assert_eq!(
            message(parse_bind("/a:/b:ro:extra", &[])),
            "invalid volume specification: '/a:/b:ro:extra'"
        );
        assert_eq!(
            message(parse_bind("/srv:relative", &[])),
            "invalid mount config for type \"bind\": invalid mount path: 'relative' mount path must be absolute"
        );
        assert_eq!(
            message(parse_bind("data:relative", &[])),
            "invalid mount config for type \"volume\": invalid mount path: 'relative' mount path must be absolute"
        );
        assert_eq!(
            message(parse_bind("/srv:/data:ro,bogus", &[])),
            "invalid mode: bogus"
        );
        assert_eq!(
            message(parse_bind("/other:/data/", &[bind("/srv", "/data")])),
            "Duplicate mount point: /data"
        );
    }

    #[test]
    fn mount_specs_of_each_type() {
        let spec = |json: serde_json::Value| -> MountSpec { serde_json::from_value(json).unwrap() };
        let b = parse_mount(
            &spec(json!({"Type": "bind", "Source": "/srv", "Target": "/srv/", "ReadOnly": true})),
            &[],
        )
        .unwrap();
        assert_eq!(
            b,
            RequestedMount {
                destination: "/srv".into(),
                source: Source::Bind {
                    path: "/srv".into(),
                    create: false
                },
                rw: false,
                mode: String::new(),
            }
        );
        let v = parse_mount(
            &spec(json!({"Type": "volume", "Source": "db", "Target": "/db",
                "VolumeOptions": {"NoCopy": true}})),
            &[],
        )
        .unwrap();
        assert_eq!(
            v.source,
            Source::Volume {
                name: Some("db".into()),
                copy: false
            }
        );
        assert!(v.rw);
        let anonymous =
            parse_mount(&spec(json!({"Type": "volume", "Target": "/db"})), &[]).unwrap();
        assert_eq!(
            anonymous.source,
            Source::Volume {
                name: None,
                copy: true
            }
        );
        let t = parse_mount(
            &spec(json!({"Type": "tmpfs", "Target": "/run",
                "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 1023}})),
            &[],
        )
        .unwrap();
        assert_eq!(
            t.source,
            Source::Tmpfs {
                options: "size=1048576,mode=1777".into()
            }
        );
        let plain = parse_mount(&spec(json!({"Type": "tmpfs", "Target": "/run"})), &[]).unwrap();
        assert_eq!(
            plain.source,
            Source::Tmpfs {
                options: String::new()
            }
        );
    }

    #[test]
    fn mount_specs_are_refused_with_dockerds_texts() {
        let spec = |json: serde_json::Value| -> MountSpec { serde_json::from_value(json).unwrap() };
        assert_eq!(
            message(parse_mount(
                &spec(json!({"Type": "npipe", "Source": "x", "Target": "/x"})),
                &[]
            )),
            "mount type unknown: npipe"
        );
        assert_eq!(
            message(parse_mount(
                &spec(json!({"Type": "tmpfs", "Target": "run"})),
                &[]
            )),
            "invalid mount config for type \"tmpfs\": invalid mount path: 'run' mount path must be absolute"
        );
        // The destination is checked before the type, as dockerd does.
        assert_eq!(
            message(parse_mount(
                &spec(json!({"Type": "npipe", "Target": "/srv"})),
                &[bind("/srv", "/srv")]
            )),
            "Duplicate mount point: /srv"
        );
    }

    #[test]
    fn tmpfs_options_and_refusals() {
        let t = parse_tmpfs("/scratch", "size=1m,ro", &[]).unwrap();
        assert_eq!(
            t,
            RequestedMount {
                destination: "/scratch".into(),
                source: Source::Tmpfs {
                    options: "size=1m,ro".into()
                },
                rw: false,
                mode: String::new(),
            }
        );
        assert!(parse_tmpfs("/scratch", "", &[]).unwrap().rw);
        assert_eq!(
            message(parse_tmpfs("/", "", &[])),
            "invalid mount config for type \"tmpfs\": invalid specification: destination can't be '/'"
        );
        assert_eq!(
            message(parse_tmpfs("/data", "", &[bind("/srv", "/data")])),
            "Duplicate mount point: /data"
        );
    }

    #[test]
    fn volumes_from_with_and_without_a_mode() {
        assert_eq!(parse_volumes_from("data"), ("data", None));
        assert_eq!(parse_volumes_from("/data:ro"), ("/data", Some(false)));
        assert_eq!(parse_volumes_from("data:rw"), ("data", Some(true)));
        assert_eq!(parse_volumes_from("data:z"), ("data", None));
    }
}
