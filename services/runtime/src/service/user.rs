//! `-u user[:group]` resolved as Docker does, in the image's own /etc/passwd and /etc/group
//! (read inside the root file system, never following a symlink out of it).

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{self, OFlag, OpenHow, ResolveFlag};

/// A resolved user: uid, primary gid and supplementary gids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The home directory from /etc/passwd (`HOME=` when the image sets none).
    pub home: String,
}

/// Reads a small file at `path` inside `rootfs`, resolving symlinks as if `rootfs` were `/`.
pub fn read_in_root(rootfs: &Path, path: &str) -> Option<String> {
    let root: OwnedFd = fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = fcntl::openat2(&root, path.trim_start_matches('/'), how).ok()?;
    let mut file = std::fs::File::from(fd);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.by_ref().take(4 << 20).read_to_string(&mut text).ok()?;
    Some(text)
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(Passwd {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(Group {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) and `group_add`
/// (`--group-add`) against the image's files. Errors are dockerd's (runc's) texts.
pub fn resolve(rootfs: &Path, spec: &str, group_add: &[String]) -> Result<ResolvedUser, String> {
    let passwd = read_in_root(rootfs, "/etc/passwd")
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let groups = read_in_root(rootfs, "/etc/group")
        .map(|t| parse_group(&t))
        .unwrap_or_default();
    resolve_with(&passwd, &groups, spec, group_add)
}

/// A build's `--chown=user[:group]` as dockerd resolves it: numbers as they are, names in the
/// root's /etc/passwd and /etc/group; a lone `user` is also the group's name (not the user's
/// primary group). Errors are dockerd's texts.
pub fn chown_identity(rootfs: &Path, chown: &str) -> Result<(u32, u32), String> {
    let parts: Vec<&str> = chown.split(':').collect();
    let (user, group) = match parts[..] {
        [user] => (user, user),
        [user, group] => (user, group),
        _ => return Err(format!("invalid chown string format: {chown}")),
    };
    let number = |s: &str| s.parse::<u32>().ok();
    let read = |path: &str| {
        read_in_root(rootfs, path).ok_or_else(|| format!("open {path}: no such file or directory"))
    };
    let uid = match number(user) {
        Some(uid) => uid,
        None => parse_passwd(&read("/etc/passwd").map_err(|e| can_t("uid for user", user, e))?)
            .iter()
            .find(|p| p.name == user)
            .map(|p| p.uid)
            .ok_or_else(|| can_t("uid for user", user, format!("no such user: {user}")))?,
    };
    let gid = match number(group) {
        Some(gid) => gid,
        None => parse_group(&read("/etc/group").map_err(|e| can_t("gid for group", group, e))?)
            .iter()
            .find(|g| g.name == group)
            .map(|g| g.gid)
            .ok_or_else(|| can_t("gid for group", group, format!("no such group: {group}")))?,
    };
    Ok((uid, gid))
}

fn can_t(what: &str, name: &str, why: String) -> String {
    format!("can't find {what} {name}: {why}")
}

fn resolve_with(
    passwd: &[Passwd],
    groups: &[Group],
    spec: &str,
    group_add: &[String],
) -> Result<ResolvedUser, String> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = passwd.iter().find(|p| p.name == user_part).or_else(|| {
        user_part
            .parse::<u32>()
            .ok()
            .and_then(|uid| passwd.iter().find(|p| p.uid == uid))
    });
    let (uid, mut gid, name, home) = match (entry, user_part.parse::<u32>()) {
        (Some(p), _) => (p.uid, p.gid, Some(p.name.clone()), p.home.clone()),
        (None, Ok(uid)) => (uid, 0, None, "/".to_string()),
        (None, Err(_)) => {
            return Err(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            ))
        }
    };
    if let Some(group) = group_part.filter(|g| !g.is_empty()) {
        gid = match groups.iter().find(|g| g.name == group) {
            Some(g) => g.gid,
            None => group.parse::<u32>().map_err(|_| {
                format!("unable to find group {group}: no matching entries in group file")
            })?,
        };
    }
    // runc keeps the primary group among the supplementary ones.
    let mut additional = vec![gid];
    // Supplementary groups from /etc/group only when no group was given explicitly (runc).
    if group_part.is_none() {
        if let Some(name) = &name {
            for g in groups
                .iter()
                .filter(|g| g.members.iter().any(|m| m == name))
            {
                if !additional.contains(&g.gid) {
                    additional.push(g.gid);
                }
            }
        }
    }
    for extra in group_add {
        let g = match groups.iter().find(|g| &g.name == extra) {
            Some(g) => g.gid,
            None => extra.parse::<u32>().map_err(|_| {
                format!("Unable to find group {extra}: no matching entries in group file")
            })?,
        };
        if !additional.contains(&g) {
            additional.push(g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nwww:x:33:33::/var/www:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\naudio:x:29:www,nobody\nstaff:x:50:www\n";

    fn r(spec: &str, add: &[&str]) -> Result<ResolvedUser, String> {
        let add: Vec<String> = add.iter().map(|s| s.to_string()).collect();
        resolve_with(&parse_passwd(PASSWD), &parse_group(GROUP), spec, &add)
    }

    #[test]
    fn names_and_numbers_resolve_with_supplementary_groups() {
        let u = r("www", &[]).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (33, 33, vec![33, 29, 50])
        );
        assert_eq!(u.home, "/var/www");
        let u = r("33:staff", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (33, 50));
        assert_eq!(u.additional_gids, [50]);
        let u = r("1234:4321", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1234, 4321));
        let u = r("", &["audio", "77"]).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (0, 0, vec![0, 29, 77]));
    }

    #[test]
    fn unknown_names_fail_in_runc_words() {
        assert_eq!(
            r("ghost", &[]).unwrap_err(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(
            r("www:ghosts", &[]).unwrap_err(),
            "unable to find group ghosts: no matching entries in group file"
        );
    }
}
