//! Host-side preparation of a container: its overlayfs root and its network namespace.
//! Blocking; async callers use `spawn_blocking`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use wharf_bus::container::HostConfig;

use super::Node;

/// The node's user namespace (`--userns-remap`) and its map, for a container that has one.
pub type Remap<'a> = Option<(&'a std::os::fd::OwnedFd, crate::userns::IdMap)>;

/// The node's user namespace and map, for a container that has one (`--userns-remap`, not
/// `--userns=host`).
pub(crate) fn remap<'a>(node: &'a Node, host: &HostConfig) -> Remap<'a> {
    match (&node.userns, node.options.userns) {
        (Some(fd), Some(map)) if host.userns_mode != "host" => Some((fd, map)),
        _ => None,
    }
}

/// Directory (beside `upper`) of a remapped container's layers, mounted idmapped.
pub fn layers_dir(upper: &Path) -> PathBuf {
    upper.parent().unwrap_or(upper).join("layers")
}

/// Mounts the overlay `lower` (top first) + `upper` at `target`, unless already mounted.
/// An image without layers gets `empty` as its only lower directory. With `remap`, each layer
/// is first mounted idmapped into the container's ID range (so host root's files are its
/// root's, and no layer is copied) and the upper directory, the root's own, belongs to it.
pub fn mount_rootfs(
    lower: &[PathBuf],
    empty: &Path,
    upper: &Path,
    work: &Path,
    target: &Path,
    remap: Remap,
) -> std::io::Result<()> {
    for dir in [upper, work, target, empty] {
        std::fs::create_dir_all(dir)?;
    }
    if is_mountpoint(target)? {
        return Ok(());
    }
    let mut lowers: Vec<PathBuf> = if lower.is_empty() {
        vec![empty.to_path_buf()]
    } else {
        lower.to_vec()
    };
    if let Some((userns, map)) = remap {
        let dir = layers_dir(upper);
        for (i, layer) in lowers.iter_mut().enumerate() {
            let at = dir.join(i.to_string());
            std::fs::create_dir_all(&at)?;
            if !is_mountpoint(&at)? {
                crate::userns::idmapped_bind(layer, &at, userns).map_err(|e| {
                    std::io::Error::other(format!("idmapped mount of {}: {e}", layer.display()))
                })?;
            }
            *layer = at;
        }
        let (uid, gid) = (
            nix::unistd::Uid::from_raw(map.uid),
            nix::unistd::Gid::from_raw(map.gid),
        );
        nix::unistd::chown(upper, Some(uid), Some(gid))?;
    }
    let lowers: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    if options.len() >= 4096 {
        return Err(std::io::Error::other(format!(
            "image has too many layers for one overlay mount ({} layers)",
            lower.len()
        )));
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| std::io::Error::other(format!("mount overlay on {}: {e}", target.display())))
}

/// Unmounts the overlay at `target` and the idmapped layers under `layers` (if any).
pub fn unmount_rootfs(target: &Path, layers: &Path) -> std::io::Result<()> {
    unmount(target)?;
    if let Ok(entries) = std::fs::read_dir(layers) {
        for entry in entries.flatten() {
            unmount(&entry.path())?;
        }
    }
    Ok(())
}

/// Unmounts `target` if something is mounted there.
pub fn unmount(target: &Path) -> std::io::Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(std::io::Error::other(format!(
            "unmount {}: {e}",
            target.display()
        ))),
    }
}

/// Whether `path` is the root of a mount (its device differs from its parent's).
pub fn is_mountpoint(path: &Path) -> std::io::Result<bool> {
    let meta = std::fs::metadata(path)?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    let parent_meta = std::fs::metadata(parent)?;
    Ok(meta.dev() != parent_meta.dev() || meta.ino() == parent_meta.ino())
}

/// Creates a network namespace held by a bind mount on `path` (an empty file), so the network
/// can be set up before the container's init joins it, and outlives its processes until
/// [`remove_netns`]. The namespace is made on a short-lived thread (unshare affects only it).
pub fn create_netns(path: &Path) -> std::io::Result<()> {
    if path.exists() && is_nsfs(path) {
        return Ok(());
    }
    std::fs::File::create(path)?;
    let target = path.to_path_buf();
    let outcome = std::thread::spawn(move || -> std::io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| std::io::Error::other(format!("unshare net: {e}")))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| std::io::Error::other(format!("bind netns on {}: {e}", target.display())))?;
        // Bring up the loopback interface inside.
        loopback_up()
    })
    .join()
    .map_err(|_| std::io::Error::other("netns thread panicked"))?;
    if outcome.is_err() {
        let _ = umount2(path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(path);
    }
    outcome
}

fn loopback_up() -> std::io::Result<()> {
    // SIOCSIFFLAGS on "lo" with IFF_UP, in the calling thread's network namespace.
    // SAFETY: socket takes no pointers; the descriptor is closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data, valid all zero.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo\0".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: plain ioctls on a socket we own with a zeroed, named ifreq.
    let rc = unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) };
    if rc == 0 {
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union we read and write back.
        unsafe {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(sock, libc::SIOCSIFFLAGS, &mut req);
        }
    }
    // SAFETY: `sock` is ours and closed once.
    unsafe { libc::close(sock) };
    Ok(())
}

// The magic's integer type differs between targets.
#[allow(clippy::unnecessary_cast)]
fn is_nsfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 as i64 == 0x6e736673)
        .unwrap_or(false)
}

/// Releases the namespace held at `path` (the kernel frees it with its last user).
pub fn remove_netns(path: &Path) -> std::io::Result<()> {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The host's resolver files: `/etc/resolv.conf`, and systemd-resolved's list of its real
/// upstream servers when it runs.
pub struct HostResolvers {
    pub resolv_conf: String,
    pub resolved: Option<String>,
}

impl HostResolvers {
    pub fn read() -> HostResolvers {
        HostResolvers {
            resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            resolved: std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok(),
        }
    }

    /// Where a container's names go: see [`crate::dns::upstreams`].
    pub fn upstreams(&self, dns: &[String]) -> Vec<std::net::SocketAddr> {
        crate::dns::upstreams(&self.resolv_conf, self.resolved.as_deref(), dns)
    }
}

/// `/etc/resolv.conf` for a container. On the default bridge: the host's servers (see
/// [`crate::dns::upstreams`]: no loopback ones, systemd-resolved's real ones, Google's when
/// none is left) or `--dns`. On a user network (`embedded`): only the embedded server,
/// 127.0.0.11, with `ndots:0` as dockerd writes it. `--dns-search` and `--dns-option` replace
/// the host's values.
pub fn resolv_conf(
    host: &HostResolvers,
    dns: &[String],
    search: &[String],
    options: &[String],
    embedded: bool,
) -> String {
    let mut host_search = Vec::new();
    let mut host_options = Vec::new();
    for line in host.resolv_conf.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("search") | Some("domain") => host_search = words.map(str::to_string).collect(),
            Some("options") => host_options = words.map(str::to_string).collect(),
            _ => {}
        }
    }
    let servers: Vec<String> = match embedded {
        true => vec![crate::dns::ADDRESS.to_string()],
        false if !dns.is_empty() => dns.to_vec(),
        false => host
            .upstreams(&[])
            .iter()
            .map(|a| a.ip().to_string())
            .collect(),
    };
    let search = if search.is_empty() {
        host_search
    } else {
        search.to_vec()
    };
    let mut options = if options.is_empty() {
        host_options
    } else {
        options.to_vec()
    };
    if embedded && !options.iter().any(|o| o.starts_with("ndots:")) {
        options.push("ndots:0".into());
    }
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// `/etc/hosts` for a container as Docker writes it, with the `--add-host` entries as the host
/// config holds them (`ExtraHosts`, none when `null`), then `links` (lines for legacy links).
pub fn hosts_file(
    address: Option<&str>,
    hostname: &str,
    extra: &Option<Vec<String>>,
    links: &str,
) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for e in extra.iter().flatten() {
        if let Some((host, ip)) = e.split_once(':') {
            out.push_str(&format!("{ip}\t{host}\n"));
        }
    }
    out.push_str(links);
    if let Some(address) = address {
        out.push_str(&format!("{address}\t{hostname}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> HostResolvers {
        HostResolvers {
            resolv_conf: text.into(),
            resolved: None,
        }
    }

    #[test]
    fn resolv_conf_drops_loopback_servers_like_docker() {
        let h = host("nameserver 127.0.0.53\nsearch corp.example\noptions edns0\n");
        assert_eq!(
            resolv_conf(&h, &[], &[], &[], false),
            "search corp.example\nnameserver 8.8.8.8\nnameserver 8.8.4.4\noptions edns0\n"
        );
        let h = host("nameserver 10.0.0.2\n");
        assert_eq!(
            resolv_conf(&h, &["1.1.1.1".into()], &[], &[], false),
            "nameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn on_user_networks_resolv_conf_names_only_the_embedded_server() {
        let h = host("nameserver 10.0.0.2\nsearch corp.example\n");
        assert_eq!(
            resolv_conf(&h, &["1.1.1.1".into()], &[], &[], true),
            "search corp.example\nnameserver 127.0.0.11\noptions ndots:0\n"
        );
        assert_eq!(
            resolv_conf(&h, &[], &["a.test".into()], &["ndots:2".into()], true),
            "search a.test\nnameserver 127.0.0.11\noptions ndots:2\n"
        );
    }

    #[test]
    fn hosts_file_names_the_container() {
        let text = hosts_file(
            Some("172.30.0.2"),
            "abc123",
            &Some(vec!["db:10.0.0.9".into()]),
            "172.30.0.3\tal def456 web\n",
        );
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.ends_with("10.0.0.9\tdb\n172.30.0.3\tal def456 web\n172.30.0.2\tabc123\n"));
    }
}
