//! One entry as one line of a json-file log, and back.
//!
//! Written by hand rather than with serde so the bytes are dockerd's: its marshaller escapes
//! `<`, `>`, `&`, U+2028 and U+2029, spells other control bytes `\u00XX` (even tab), and turns
//! each invalid UTF-8 byte into `\ufffd`.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::logs::entry::{format_go_rfc3339_nano, LogEntry, Stream};

/// Appends `{"log":...,"stream":...,"time":...}\n` to `out`.
pub(crate) fn encode_line(out: &mut Vec<u8>, stream: Stream, log: &[u8], time: DateTime<Utc>) {
    out.extend_from_slice(b"{");
    // dockerd omits an empty "log" (never the case for whole lines, which end in '\n').
    if !log.is_empty() {
        out.extend_from_slice(b"\"log\":");
        write_json_string(out, log);
        out.push(b',');
    }
    out.extend_from_slice(b"\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(format_go_rfc3339_nano(time).as_bytes());
    out.extend_from_slice(b"\"}\n");
}

fn write_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, invalid_len) = match std::str::from_utf8(rest) {
            Ok(text) => (text, 0),
            Err(err) => {
                let valid = std::str::from_utf8(&rest[..err.valid_up_to()]).expect("valid prefix");
                // An incomplete sequence at the very end is invalid too: dockerd writes one
                // U+FFFD per byte that does not start a complete rune.
                (valid, err.error_len().unwrap_or(1))
            }
        };
        for ch in valid.chars() {
            match ch {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                    let b = c as u8;
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                }
                '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        let skip = valid.len() + invalid_len;
        for _ in 0..invalid_len {
            out.extend_from_slice(b"\\ufffd");
        }
        rest = &rest[skip..];
    }
    out.push(b'"');
}

#[derive(Deserialize)]
struct JsonLine {
    #[serde(default)]
    log: String,
    stream: String,
    time: String,
}

/// Parses one line (without its `\n`).
pub(crate) fn decode_line(line: &[u8]) -> Result<LogEntry, String> {
    let parsed: JsonLine = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let stream = Stream::parse(&parsed.stream)
        .ok_or_else(|| format!("unknown stream {:?}", parsed.stream))?;
    let time = DateTime::parse_from_rfc3339(&parsed.time)
        .map_err(|e| format!("time {:?}: {e}", parsed.time))?
        .with_timezone(&Utc);
    Ok(LogEntry {
        stream,
        log: parsed.log.into_bytes(),
        time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn encoded(log: &[u8]) -> String {
        let time = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let mut out = Vec::new();
        encode_line(&mut out, Stream::Stdout, log, time);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_as_dockerd_marshaller_does() {
        assert_eq!(
            encoded(b"a\t\"<b>&\\\r\n"),
            "{\"log\":\"a\\u0009\\\"\\u003cb\\u003e\\u0026\\\\\\r\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T00:00:00Z\"}\n"
        );
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        assert_eq!(
            encoded(b"\xff\xfeok\xe2\x80\xa8\xe2"),
            "{\"log\":\"\\ufffd\\ufffdok\\u2028\\ufffd\",\"stream\":\"stdout\",\"time\":\"2024-01-01T00:00:00Z\"}\n"
        );
    }

    #[test]
    fn encoded_line_decodes_to_the_same_entry() {
        let time = Utc.timestamp_nanos(1_704_067_200_123_456_789);
        let mut out = Vec::new();
        encode_line(&mut out, Stream::Stderr, "héllo <&>\n".as_bytes(), time);
        let entry = decode_line(&out[..out.len() - 1]).unwrap();
        assert_eq!(entry.stream, Stream::Stderr);
        assert_eq!(entry.log, "héllo <&>\n".as_bytes());
        assert_eq!(entry.time, time);
    }
}
