//! Docker's image filters (`dangling`, `reference`, `label`, `before`, `since`, `until`) and the
//! small matchers they need.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use wharf_bus::BusError;

pub type Filters = BTreeMap<String, Vec<String>>;

/// Refuses filter names outside `accepted`, as dockerd does.
pub fn validate(filters: &Filters, accepted: &[&str]) -> Result<(), BusError> {
    for name in filters.keys() {
        if !accepted.contains(&name.as_str()) {
            return Err(BusError::invalid(format!("invalid filter '{name}'")));
        }
    }
    Ok(())
}

/// A boolean filter (`dangling=true`); `default` when absent.
pub fn bool_or(filters: &Filters, name: &str, default: bool) -> Result<bool, BusError> {
    let Some(values) = filters.get(name) else {
        return Ok(default);
    };
    if values.is_empty() {
        return Ok(default);
    }
    let mut result = None;
    for v in values {
        let b = match v.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(invalid_value(name, values)),
        };
        if result.is_some_and(|r| r != b) {
            return Err(invalid_value(name, values));
        }
        result = Some(b);
    }
    Ok(result.unwrap_or(default))
}

fn invalid_value(name: &str, values: &[String]) -> BusError {
    BusError::invalid(format!("invalid filter '{name}=[{}]'", values.join(" ")))
}

/// Every `label` filter matches: `key` needs the label, `key=value` needs that value.
pub fn labels_match(wanted: &[String], labels: &HashMap<String, String>) -> bool {
    wanted.iter().all(|w| match w.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|l| l == v),
        None => labels.contains_key(w.as_str()),
    })
}

/// The `Labels` of an image config (`config.Labels`).
pub fn config_labels(config: &serde_json::Value) -> HashMap<String, String> {
    config
        .get("config")
        .and_then(|c| c.get("Labels"))
        .and_then(|l| l.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The config's `created` time.
pub fn created(config: &serde_json::Value) -> Option<DateTime<Utc>> {
    config
        .get("created")
        .and_then(|c| c.as_str())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Go's `path.Match`: `*` any run of non-`/`, `?` one non-`/`, `[a-z]` / `[^a-z]` classes,
/// `\` escapes. A malformed pattern is an error.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, BusError> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n).map_err(|_| BusError::invalid("syntax error in pattern"))
}

fn glob_at(p: &[char], n: &[char]) -> Result<bool, ()> {
    let Some((&first, rest)) = p.split_first() else {
        return Ok(n.is_empty());
    };
    match first {
        '*' => {
            // Try every split that does not cross a '/'.
            for i in 0..=n.len() {
                if glob_at(rest, &n[i..])? {
                    return Ok(true);
                }
                if i < n.len() && n[i] == '/' {
                    break;
                }
            }
            // Validate the remainder even when nothing matched.
            Ok(false)
        }
        '?' => match n.split_first() {
            Some((&c, nrest)) if c != '/' => glob_at(rest, nrest),
            _ => Ok(false),
        },
        '[' => {
            let (matched, after) = class(rest, n.first().copied())?;
            match (matched, n.split_first()) {
                (true, Some((_, nrest))) => glob_at(after, nrest),
                _ => Ok(false),
            }
        }
        '\\' => match (rest.split_first(), n.split_first()) {
            (Some((&e, prest)), Some((&c, nrest))) => {
                if e == c {
                    glob_at(prest, nrest)
                } else {
                    Ok(false)
                }
            }
            (None, _) => Err(()),
            _ => Ok(false),
        },
        c => match n.split_first() {
            Some((&x, nrest)) if x == c => glob_at(rest, nrest),
            _ => Ok(false),
        },
    }
}

/// Parses a `[...]` class (after the `[`); returns whether `c` is in it and the pattern after.
fn class(p: &[char], c: Option<char>) -> Result<(bool, &[char]), ()> {
    let mut i = 0;
    let negated = p.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let Some(&ch) = p.get(i) else { return Err(()) };
        if ch == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let mut lo = ch;
        if lo == '\\' {
            i += 1;
            lo = *p.get(i).ok_or(())?;
        }
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&x| x != ']') {
            hi = p[i + 1];
            if hi == '\\' {
                hi = *p.get(i + 2).ok_or(())?;
                i += 1;
            }
            i += 2;
        }
        if let Some(c) = c {
            if lo <= c && c <= hi {
                matched = true;
            }
        }
    }
    let ok = c.is_some_and(|c| c != '/') && (matched != negated);
    Ok((ok, &p[i..]))
}

/// Docker's timestamp filter values: a Go duration before `now` (`10m`, `1h30m`), Unix seconds
/// (`1700000000`, `1700000000.5`), RFC 3339, or a date/time without zone (UTC).
pub fn parse_timestamp(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, BusError> {
    let bad = || {
        BusError::invalid(format!(
            "invalid value for 'until' filter: failed to parse value as time or duration: \"{value}\""
        ))
    };
    if let Some(d) = parse_go_duration(value) {
        return Ok(now - d);
    }
    if let Some((secs, frac)) = value.split_once('.').or(Some((value, ""))) {
        if !secs.is_empty()
            && secs.bytes().all(|c| c.is_ascii_digit())
            && frac.bytes().all(|c| c.is_ascii_digit())
        {
            let s: i64 = secs.parse().map_err(|_| bad())?;
            let mut nanos: u32 = 0;
            if !frac.is_empty() {
                let f = format!("{:0<9}", &frac[..frac.len().min(9)]);
                nanos = f.parse().map_err(|_| bad())?;
            }
            return Utc.timestamp_opt(s, nanos).single().ok_or_else(bad);
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, fmt) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).ok_or_else(bad)?));
    }
    Err(bad())
}

fn parse_go_duration(s: &str) -> Option<chrono::Duration> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() || rest == "0" {
        return if rest == "0" {
            Some(chrono::Duration::zero())
        } else {
            None
        };
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * nanos_per;
    }
    let d = chrono::Duration::nanoseconds(total as i64);
    Some(if neg { -d } else { d })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_go_path_match() {
        assert!(glob_match("busy*", "busybox").unwrap());
        assert!(glob_match("busybox:*", "busybox:latest").unwrap());
        assert!(!glob_match("*", "library/busybox").unwrap());
        assert!(glob_match("*/*", "library/busybox").unwrap());
        assert!(glob_match("b?sy[a-z]ox", "busybox").unwrap());
        assert!(!glob_match("b[^u]sybox", "busybox").unwrap());
        assert!(glob_match("a\\*", "a*").unwrap());
        assert!(glob_match("[", "x").is_err());
    }

    #[test]
    fn timestamps_accept_durations_unix_times_and_dates() {
        let now = Utc.with_ymd_and_hms(2024, 1, 2, 3, 0, 0).unwrap();
        assert_eq!(
            parse_timestamp("1h30m", now).unwrap(),
            Utc.with_ymd_and_hms(2024, 1, 2, 1, 30, 0).unwrap()
        );
        assert_eq!(
            parse_timestamp("1700000000", now).unwrap().timestamp(),
            1700000000
        );
        assert_eq!(
            parse_timestamp("2023-05-01", now).unwrap(),
            Utc.with_ymd_and_hms(2023, 5, 1, 0, 0, 0).unwrap()
        );
        assert!(parse_timestamp("2023-05-01T10:00:00Z", now).is_ok());
        assert!(parse_timestamp("yesterday", now).is_err());
    }

    #[test]
    fn unknown_filters_and_bad_booleans_are_refused_with_dockers_text() {
        let mut f = Filters::new();
        f.insert("color".into(), vec!["red".into()]);
        assert_eq!(
            validate(&f, &["dangling"]).unwrap_err().message,
            "invalid filter 'color'"
        );
        let mut f = Filters::new();
        f.insert("dangling".into(), vec!["maybe".into()]);
        assert_eq!(
            bool_or(&f, "dangling", false).unwrap_err().message,
            "invalid filter 'dangling=[maybe]'"
        );
    }
}
