//! Limits that keep slow or idle clients from starving the API: a deadline for the TLS handshake,
//! a deadline for each request's header, and a cap on the connections one listener holds at once.
//! None of them bounds a request once its header is in, so long-lived streams (attach, `logs -f`,
//! `events`, pulls) are not cut.
//!
//! The cap must stay below the process's open-file limit (each connection holds one descriptor),
//! so the gateway first raises its soft `RLIMIT_NOFILE` to the hard limit (never above it).

use std::time::Duration;

/// How long a TLS client has to finish its handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's whole header, from the moment the gateway waits for
/// it: a new connection, or a kept-alive one after its last response.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections one listener serves at once, when the open-file limit allows it. The docker CLI
/// uses one or two; this leaves room for many busy SDK clients.
pub const MAX_CONNECTIONS: usize = 4096;
/// Descriptors kept out of the connection budget: the bus connection, the runtime's own, files.
const RESERVED_FILES: u64 = 256;
/// The cap never goes below this, even with a tiny open-file limit (the accept loop then backs
/// off on `EMFILE` rather than refusing to serve at all).
const MIN_CONNECTIONS: usize = 16;

/// Environment variables that override the defaults (tests use them to avoid waiting 30 s).
pub const ENV_HEADER_TIMEOUT_MS: &str = "WHARF_HEADER_TIMEOUT_MS";
pub const ENV_TLS_HANDSHAKE_TIMEOUT_MS: &str = "WHARF_TLS_HANDSHAKE_TIMEOUT_MS";
pub const ENV_MAX_CONNECTIONS: &str = "WHARF_MAX_CONNECTIONS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    /// Per listener: further connections wait in the kernel's accept queue until one ends.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

impl Limits {
    /// The limits for `listeners` listeners in a process that may open `open_files` descriptors,
    /// with the environment's overrides.
    pub fn new(open_files: u64, listeners: usize) -> Limits {
        Limits::with(open_files, listeners, |name| std::env::var(name).ok())
    }

    fn with(open_files: u64, listeners: usize, env: impl Fn(&str) -> Option<String>) -> Limits {
        let number = |name: &str| -> Option<u64> {
            let value = env(name)?;
            match value.trim().parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    tracing::warn!("ignoring {name}={value:?}: not a positive integer");
                    None
                }
            }
        };
        let millis = |name: &str, default: Duration| {
            number(name).map(Duration::from_millis).unwrap_or(default)
        };
        let wanted = number(ENV_MAX_CONNECTIONS)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .unwrap_or(MAX_CONNECTIONS);
        let budget =
            usize::try_from(open_files.saturating_sub(RESERVED_FILES) / listeners.max(1) as u64)
                .unwrap_or(usize::MAX)
                .max(MIN_CONNECTIONS);
        if wanted > budget {
            tracing::warn!(
                "serving at most {budget} connections per listener, not {wanted}: the open-file limit is {open_files}"
            );
        }
        Limits {
            tls_handshake_timeout: millis(ENV_TLS_HANDSHAKE_TIMEOUT_MS, TLS_HANDSHAKE_TIMEOUT),
            header_read_timeout: millis(ENV_HEADER_TIMEOUT_MS, HEADER_READ_TIMEOUT),
            max_connections: wanted.min(budget),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit in force
/// afterwards. Never asks for more than the hard limit (which only root could raise).
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the rlimit struct it is given, which lives on this stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut target = limit.rlim_max;
    if target == libc::RLIM_INFINITY {
        // Linux refuses a soft limit above fs.nr_open even when the hard one is "unlimited".
        target = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20);
    }
    let target = target.min(limit.rlim_max);
    if limit.rlim_cur >= target {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct it is given; the soft limit asked for is at most
    // the current hard limit, which is left as it is.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(
            "cannot raise the open-file limit from {} to {target}: {e}",
            limit.rlim_cur
        );
        return Ok(limit.rlim_cur);
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_apply_when_the_descriptors_allow_them() {
        assert_eq!(Limits::with(20_000, 1, env(&[])), Limits::default());
        assert_eq!(Limits::with(20_000, 2, env(&[])).max_connections, 4096);
    }

    #[test]
    fn the_cap_shares_the_open_file_limit_between_listeners() {
        assert_eq!(Limits::with(1024, 1, env(&[])).max_connections, 768);
        assert_eq!(Limits::with(1024, 2, env(&[])).max_connections, 384);
        assert_eq!(Limits::with(100, 1, env(&[])).max_connections, 16);
        let asked = env(&[(ENV_MAX_CONNECTIONS, "100000")]);
        assert_eq!(Limits::with(20_000, 1, asked).max_connections, 19_744);
    }

    #[test]
    fn the_environment_overrides_the_defaults() {
        let l = Limits::with(
            20_000,
            1,
            env(&[
                (ENV_HEADER_TIMEOUT_MS, "1500"),
                (ENV_TLS_HANDSHAKE_TIMEOUT_MS, "250"),
                (ENV_MAX_CONNECTIONS, "20"),
            ]),
        );
        assert_eq!(l.header_read_timeout, Duration::from_millis(1500));
        assert_eq!(l.tls_handshake_timeout, Duration::from_millis(250));
        assert_eq!(l.max_connections, 20);
        let bad = env(&[(ENV_HEADER_TIMEOUT_MS, "0"), (ENV_MAX_CONNECTIONS, "x")]);
        assert_eq!(Limits::with(20_000, 1, bad), Limits::default());
    }

    #[test]
    fn the_soft_open_file_limit_reaches_the_hard_one() {
        let soft = raise_open_file_limit().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the rlimit struct it is given, which lives on this stack.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        assert_eq!(rc, 0);
        assert_eq!(soft, limit.rlim_cur);
        assert!(limit.rlim_cur <= limit.rlim_max);
        if limit.rlim_max != libc::RLIM_INFINITY {
            assert_eq!(limit.rlim_cur, limit.rlim_max);
        }
    }
}
