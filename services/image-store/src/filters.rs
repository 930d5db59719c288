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

/// Longest `reference` filter pattern accepted.
pub const MAX_PATTERN: usize = 512;

/// A parsed Go `path.Match` pattern: `*` any run of non-`/`, `?` one non-`/`, `[a-z]` classes
/// (negated by `^` or `!`), `\` escapes. Parsed once, matched in O(pattern × name) without
/// recursion: like Go, each starred chunk takes the leftmost place it fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    chunks: Vec<Chunk>,
}

/// A run of non-star items, after any number of stars.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunk {
    star: bool,
    items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Char(char),
    /// `?`
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

fn bad_pattern() -> BusError {
    BusError::invalid("syntax error in pattern")
}

impl Glob {
    /// Parses `pattern`; a malformed or overlong one is an `invalid` error.
    pub fn parse(pattern: &str) -> Result<Glob, BusError> {
        if pattern.len() > MAX_PATTERN {
            return Err(BusError::invalid(format!(
                "invalid reference filter: pattern longer than {MAX_PATTERN} bytes"
            )));
        }
        let mut chunks = Vec::new();
        let mut p = pattern.chars().peekable();
        while p.peek().is_some() {
            let mut star = false;
            while p.next_if_eq(&'*').is_some() {
                star = true;
            }
            let mut items = Vec::new();
            while let Some(c) = p.next_if(|&c| c != '*') {
                items.push(match c {
                    '?' => Item::Any,
                    '\\' => Item::Char(p.next().ok_or_else(bad_pattern)?),
                    '[' => parse_class(&mut p)?,
                    c => Item::Char(c),
                });
            }
            chunks.push(Chunk { star, items });
        }
        Ok(Glob { chunks })
    }

    /// Whether `name` matches, all of it.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let mut rest = &name[..];
        for (i, chunk) in self.chunks.iter().enumerate() {
            let last = i + 1 == self.chunks.len();
            if chunk.star && chunk.items.is_empty() {
                // A trailing star takes the rest, unless it holds a `/`.
                return !rest.contains(&'/');
            }
            // Where the chunk may start: here, or (after a star) any later place the star can
            // reach without crossing a `/`.
            let reach = match chunk.star {
                true => rest.iter().position(|&c| c == '/').unwrap_or(rest.len()),
                false => 0,
            };
            let found = (0..=reach).find_map(|skip| {
                let after = chunk.match_at(&rest[skip..])?;
                (!last || after.is_empty()).then_some(after)
            });
            match found {
                Some(after) => rest = after,
                None => return false,
            }
        }
        rest.is_empty()
    }
}

impl Chunk {
    /// Matches the items at the start of `s`; returns what follows.
    fn match_at<'a>(&self, s: &'a [char]) -> Option<&'a [char]> {
        if s.len() < self.items.len() {
            return None;
        }
        for (item, &c) in self.items.iter().zip(s) {
            let ok = match item {
                Item::Char(x) => *x == c,
                Item::Any => c != '/',
                Item::Class { negated, ranges } => {
                    ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                }
            };
            if !ok {
                return None;
            }
        }
        Some(&s[self.items.len()..])
    }
}

/// Parses a class after its `[`, up to and including its `]`: Go's rules (non-empty, `-` and
/// `]` escaped where they would be ambiguous).
fn parse_class(p: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Item, BusError> {
    let negated = p.next_if(|&c| c == '^' || c == '!').is_some();
    let mut ranges = Vec::new();
    loop {
        if !ranges.is_empty() && p.next_if_eq(&']').is_some() {
            return Ok(Item::Class { negated, ranges });
        }
        let lo = class_char(p)?;
        let hi = match p.next_if_eq(&'-') {
            Some(_) => class_char(p)?,
            None => lo,
        };
        ranges.push((lo, hi));
    }
}

fn class_char(p: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, BusError> {
    match p.next() {
        None | Some('-') | Some(']') => Err(bad_pattern()),
        Some('\\') => p.next().ok_or_else(bad_pattern),
        Some(c) => Ok(c),
    }
}

/// Go's `path.Match` of one pattern against one name (see [`Glob`]).
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, BusError> {
    Ok(Glob::parse(pattern)?.matches(name))
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
        assert!(glob_match("[]a]", "a").is_err());
        assert!(glob_match("a\\", "a").is_err());
        assert!(glob_match("[!a]x", "bx").unwrap());
        assert!(glob_match("[\\]]", "]").unwrap());
        assert!(glob_match("*/b*x", "a/bxyx").unwrap());
        assert!(!glob_match("a*", "ab/c").unwrap());
        assert!(glob_match("*c", "abc").unwrap());
        assert!(glob_match("", "").unwrap());
        assert!(!glob_match("", "a").unwrap());
        assert!(glob_match("**", "ab").unwrap());
    }

    #[test]
    fn pathological_patterns_match_in_linear_time_and_long_ones_are_refused() {
        let name = "a".repeat(400);
        let pattern = format!("{}b", "a*".repeat(200));
        let start = std::time::Instant::now();
        assert!(!glob_match(&pattern, &name).unwrap());
        assert!(glob_match(&"*a".repeat(200), &name).unwrap());
        assert!(start.elapsed() < std::time::Duration::from_millis(500));
        let err = glob_match(&"a".repeat(MAX_PATTERN + 1), "a").unwrap_err();
        assert_eq!(err.kind, wharf_bus::ErrorKind::Invalid);
        // Deep nesting is only ever iterated: no recursion to overflow.
        assert!(!glob_match(&"[a]".repeat(170), &name).unwrap());
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
