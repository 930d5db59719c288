//! `--security-opt`, read as dockerd reads it at create (`no-new-privileges`, `seccomp=`,
//! `apparmor=`, `label=`), and the seccomp filter a container gets at start.
//!
//! This host enforces seccomp; it has neither AppArmor nor SELinux, so a profile or label that
//! asks for them is refused instead of being ignored as dockerd would (only the options that
//! ask for nothing, `apparmor=unconfined` and `label=disable`, are taken).

use std::collections::HashSet;

use oci_spec::runtime::{Capability, LinuxSeccomp};
use wharf_bus::BusError;

use crate::seccomp::{self, Profile};

/// Which seccomp profile a container asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// moby's default profile (`seccomp=builtin`, or no option).
    Builtin,
    /// No filter (`seccomp=unconfined`).
    Unconfined,
    /// A profile in moby's JSON format, sent inline by the CLI.
    Custom(String),
}

/// What a container's `--security-opt` list asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityOptions {
    pub no_new_privileges: bool,
    pub seccomp: SeccompChoice,
}

/// Whether the kernel has AppArmor or SELinux enabled.
fn lsm_enabled(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .map(|l| l.trim().split(',').any(|m| m == name))
        .unwrap_or(false)
}

/// Reads `options` as dockerd's `parseSecurityOpt` does, with its error texts.
pub fn parse(options: &[String]) -> Result<SecurityOptions, BusError> {
    let mut out = SecurityOptions {
        no_new_privileges: false,
        seccomp: SeccompChoice::Builtin,
    };
    for opt in options {
        if opt == "no-new-privileges" {
            out.no_new_privileges = true;
            continue;
        }
        if opt == "disable" {
            continue;
        }
        let split = opt.split_once('=').or_else(|| opt.split_once(':'));
        let Some((key, value)) = split else {
            return Err(BusError::invalid(format!(
                "invalid --security-opt 1: {opt:?}"
            )));
        };
        match key {
            "no-new-privileges" => {
                out.no_new_privileges = parse_bool(value).ok_or_else(|| {
                    BusError::invalid(format!("invalid --security-opt 2: {opt:?}"))
                })?;
            }
            "seccomp" => {
                out.seccomp = match value {
                    "" | "builtin" => SeccompChoice::Builtin,
                    "unconfined" => SeccompChoice::Unconfined,
                    json => SeccompChoice::Custom(json.to_string()),
                };
            }
            "apparmor" if value == "unconfined" || lsm_enabled("apparmor") => {
                if value != "unconfined" {
                    return Err(BusError::invalid(format!(
                        "invalid --security-opt {opt:?}: AppArmor profiles are not supported by Wharf"
                    )));
                }
            }
            "apparmor" => {
                return Err(BusError::invalid(format!(
                    "invalid --security-opt {opt:?}: AppArmor is not enabled on this host"
                )))
            }
            "label" if value == "disable" => {}
            "label" if lsm_enabled("selinux") => {
                return Err(BusError::invalid(format!(
                    "invalid --security-opt {opt:?}: SELinux labels are not supported by Wharf"
                )))
            }
            "label" => {
                return Err(BusError::invalid(format!(
                    "invalid --security-opt {opt:?}: SELinux is not enabled on this host"
                )))
            }
            _ => {
                return Err(BusError::invalid(format!(
                    "invalid --security-opt 2: {opt:?}"
                )))
            }
        }
    }
    Ok(out)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The seccomp filter of a container with the capability set `caps` (its bounding set), as
/// dockerd decides it: none when privileged or unconfined, otherwise the chosen profile with
/// the rules that apply to `caps`.
pub fn seccomp_for(
    options: &SecurityOptions,
    privileged: bool,
    caps: &HashSet<Capability>,
) -> Result<Option<LinuxSeccomp>, BusError> {
    let profile = match (&options.seccomp, privileged) {
        (SeccompChoice::Unconfined, _) | (_, true) => return Ok(None),
        (SeccompChoice::Builtin, _) => seccomp::builtin(),
        (SeccompChoice::Custom(json), _) => Profile::parse(json).map_err(BusError::invalid)?,
    };
    profile
        .to_oci(caps)
        .map(Some)
        .map_err(|e| BusError::invalid(format!("seccomp profile: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<SecurityOptions, BusError> {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn security_options_read_as_dockerd_reads_them() {
        let o = opts(&["no-new-privileges", "seccomp=unconfined"]).unwrap();
        assert!(o.no_new_privileges);
        assert_eq!(o.seccomp, SeccompChoice::Unconfined);
        let o = opts(&[
            "no-new-privileges:false",
            "seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}",
        ])
        .unwrap();
        assert!(!o.no_new_privileges);
        assert!(matches!(o.seccomp, SeccompChoice::Custom(_)));
        assert_eq!(opts(&[]).unwrap().seccomp, SeccompChoice::Builtin);
        assert!(opts(&["label=disable", "apparmor=unconfined"]).is_ok());
        for (bad, text) in [
            ("nonsense", "invalid --security-opt 1: \"nonsense\""),
            ("foo=bar", "invalid --security-opt 2: \"foo=bar\""),
            (
                "no-new-privileges=maybe",
                "invalid --security-opt 2: \"no-new-privileges=maybe\"",
            ),
        ] {
            assert_eq!(opts(&[bad]).unwrap_err().message, text);
        }
    }

    #[test]
    fn apparmor_and_selinux_are_refused_where_the_kernel_has_neither() {
        if !lsm_enabled("apparmor") {
            let e = opts(&["apparmor=docker-default"]).unwrap_err();
            assert!(
                e.message.contains("AppArmor is not enabled"),
                "{}",
                e.message
            );
        }
        if !lsm_enabled("selinux") {
            let e = opts(&["label=type:svirt_apache_t"]).unwrap_err();
            assert!(
                e.message.contains("SELinux is not enabled"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn privileged_and_unconfined_containers_have_no_filter() {
        let caps = HashSet::new();
        let builtin = opts(&[]).unwrap();
        assert!(seccomp_for(&builtin, false, &caps).unwrap().is_some());
        assert!(seccomp_for(&builtin, true, &caps).unwrap().is_none());
        let unconfined = opts(&["seccomp=unconfined"]).unwrap();
        assert!(seccomp_for(&unconfined, false, &caps).unwrap().is_none());
        let broken = opts(&["seccomp={"]).unwrap();
        let e = seccomp_for(&broken, false, &caps).unwrap_err();
        assert!(
            e.message.starts_with("Decoding seccomp profile failed"),
            "{}",
            e.message
        );
    }
}
