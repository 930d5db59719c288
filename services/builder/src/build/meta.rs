//! Details of the metadata instructions dockerd checks or records in its own words: the
//! HEALTHCHECK history comment (Go's `%q` of the struct), EXPOSE port specs, STOPSIGNAL names.

use wharf_bus::container::HealthConfig;
use wharf_bus::error::go_quote;

/// Go's `time.Duration.String()` (`0s`, `1.5s`, `5m0s`, `1h0m0s`, `100ms`).
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let neg = nanos < 0;
    let n = nanos.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if n < 1_000_000_000 {
        // Below a second: ns, µs or ms with a fraction.
        let (unit, div) = if n < 1_000 {
            ("ns", 1)
        } else if n < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fraction(n, div));
    }
    let secs_total = n / 1_000_000_000;
    let frac = n % 1_000_000_000;
    let h = secs_total / 3600;
    let m = (secs_total % 3600) / 60;
    let s = secs_total % 60;
    let secs = fraction(s * 1_000_000_000 + frac, 1_000_000_000);
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{sign}{m}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

/// `n / div` with its fraction, trailing zeros dropped.
fn fraction(n: u64, div: u64) -> String {
    let whole = n / div;
    let rest = n % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Go's `strconv.QuoteRune` of a small integer (how `%q` prints `Retries`).
fn quote_rune(n: i32) -> String {
    let c = char::from_u32(n as u32).unwrap_or('\u{fffd}');
    let body = match c {
        '\'' => "\\'".to_string(),
        '\\' => "\\\\".to_string(),
        '\u{7}' => "\\a".to_string(),
        '\u{8}' => "\\b".to_string(),
        '\u{c}' => "\\f".to_string(),
        '\n' => "\\n".to_string(),
        '\r' => "\\r".to_string(),
        '\t' => "\\t".to_string(),
        '\u{b}' => "\\v".to_string(),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("\\x{:02x}", c as u32),
        c => c.to_string(),
    };
    format!("'{body}'")
}

/// dockerd's history comment for HEALTHCHECK: `HEALTHCHECK &{["CMD-SHELL" "x"] "5s" "3s" "0s" '\x03'}`.
pub fn healthcheck_comment(h: &HealthConfig) -> String {
    let test: Vec<String> = h
        .test
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|s| go_quote(s))
        .collect();
    format!(
        "HEALTHCHECK &{{[{}] {} {} {} {}}}",
        test.join(" "),
        go_quote(&go_duration(h.interval)),
        go_quote(&go_duration(h.timeout)),
        go_quote(&go_duration(h.start_period)),
        quote_rune(h.retries)
    )
}

/// `nat.ParsePortSpecs` for EXPOSE: `80`, `80/udp`, `8000-8002/tcp`, `ip:host:container/proto`
/// (only the container port counts). Returns the `port/proto` keys.
pub fn parse_ports(specs: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for spec in specs {
        let (rest, proto) = match spec.rsplit_once('/') {
            Some((r, p)) => (r, p.to_ascii_lowercase()),
            None => (spec.as_str(), "tcp".to_string()),
        };
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(format!("invalid proto: {proto}"));
        }
        let container = rest.rsplit(':').next().unwrap_or(rest);
        let keys = wharf_bus::changes::expand_port(&format!("{container}/{proto}"))
            .map_err(|e| e.message)?;
        out.extend(keys);
    }
    Ok(out)
}

/// Signal names and numbers dockerd's `signal.ParseSignal` accepts.
const SIGNALS: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// STOPSIGNAL's check: a number 1-64, a name with or without `SIG`, or `RTMIN+n`/`RTMAX-n`.
pub fn check_signal(s: &str) -> Result<(), String> {
    if let Ok(n) = s.parse::<u32>() {
        return if (1..=64).contains(&n) {
            Ok(())
        } else {
            Err(format!("Invalid signal: {s}"))
        };
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let rt = |prefix: &str, max: u32| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n <= max)
    };
    if SIGNALS.contains(&name)
        || matches!(name, "IOT" | "POLL" | "RTMIN" | "RTMAX")
        || rt("RTMIN+", 15)
        || rt("RTMAX-", 14)
    {
        Ok(())
    } else {
        Err(format!("Invalid signal: {s}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(5_000_000_000), "5s");
        assert_eq!(go_duration(300_000_000_000), "5m0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(100_000_000), "100ms");
    }

    #[test]
    fn healthcheck_comment_is_gos_struct_quote() {
        let h = HealthConfig {
            test: Some(vec![
                "CMD-SHELL".into(),
                "curl -f http://x/ || exit 1".into(),
            ]),
            interval: 300_000_000_000,
            timeout: 3_000_000_000,
            start_period: 0,
            start_interval: 0,
            retries: 3,
        };
        assert_eq!(
            healthcheck_comment(&h),
            r#"HEALTHCHECK &{["CMD-SHELL" "curl -f http://x/ || exit 1"] "5m0s" "3s" "0s" '\x03'}"#
        );
    }

    #[test]
    fn ports_expand_ranges_and_keep_protocols() {
        assert_eq!(
            parse_ports(&["80".into(), "53/udp".into(), "8000-8001".into()]).unwrap(),
            vec!["80/tcp", "53/udp", "8000/tcp", "8001/tcp"]
        );
        assert!(parse_ports(&["abc".into()]).is_err());
    }

    #[test]
    fn signals_by_name_or_number() {
        assert!(check_signal("SIGTERM").is_ok());
        assert!(check_signal("quit").is_ok());
        assert!(check_signal("9").is_ok());
        assert_eq!(check_signal("NOPE").unwrap_err(), "Invalid signal: NOPE");
    }
}
