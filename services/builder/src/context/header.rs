//! One tar header as Go's `archive/tar` reader presents it, which is what dockerd extracts and
//! `tarsum` hashes: legacy type flags promoted, numeric fields parsed as Go's `parseNumeric`
//! does, PAX `mtime` and `SCHILY.xattr.*` records applied.

use std::collections::BTreeMap;
use std::io::{self, Read};

/// The tar block size: headers, and entry data padded to a multiple of it.
pub(super) const BLOCK: usize = 512;

/// One header as Go's `archive/tar` reader presents it, which is what `tarsum` hashes.
pub(super) struct HeaderInfo {
    pub(super) name: Vec<u8>,
    pub(super) linkname: Vec<u8>,
    pub(super) typeflag: u8,
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) size: u64,
    pub(super) mtime: (i64, u32),
    pub(super) devmajor: u64,
    pub(super) devminor: u64,
    pub(super) xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl HeaderInfo {
    pub(super) fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<HeaderInfo> {
        let name = entry.path_bytes().into_owned();
        let linkname = entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        let header = entry.header();
        let raw = header.as_bytes();
        let raw_type = raw[156];
        // Go's reader: "Legacy archives use trailing slash for directories".
        let typeflag = match raw_type {
            0 if name.ends_with(b"/") => b'5',
            0 => b'0',
            t => t,
        };
        let global = typeflag == b'g';
        // Numbers are parsed as Go's `parseNumeric` does (the tar crate rejects the empty
        // fields some writers leave); the tar crate has already written PAX uid/gid back.
        let number = |range: std::ops::Range<usize>, what: &str| {
            go_numeric(&raw[range]).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("invalid tar header: bad {what} field"),
                )
            })
        };
        let unsigned = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("invalid tar header: negative {what}"),
                )
            })
        };
        // Device numbers exist from the USTAR format on; V7 headers have none.
        let has_devices = header.as_ustar().is_some() || header.as_gnu().is_some();
        let mut info = if global {
            // Go returns only name, type and PAX data for a global header.
            HeaderInfo {
                name,
                linkname: Vec::new(),
                typeflag,
                mode: 0,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: (0, 0),
                devmajor: 0,
                devminor: 0,
                xattrs: BTreeMap::new(),
            }
        } else {
            HeaderInfo {
                name,
                linkname,
                typeflag,
                mode: u32::try_from(number(100..108, "mode")?).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "invalid tar header: bad mode")
                })?,
                uid: unsigned(number(108..116, "uid")?, "uid")?,
                gid: unsigned(number(116..124, "gid")?, "gid")?,
                size: entry.size(),
                mtime: (number(136..148, "mtime")?, 0),
                devmajor: if has_devices {
                    unsigned(number(329..337, "devmajor")?, "devmajor")?
                } else {
                    0
                },
                devminor: if has_devices {
                    unsigned(number(337..345, "devminor")?, "devminor")?
                } else {
                    0
                },
                xattrs: BTreeMap::new(),
            }
        };
        if let Some(extensions) = entry.pax_extensions()? {
            for ext in extensions {
                let ext = ext?;
                let key = ext.key_bytes();
                if let Some(attr) = key.strip_prefix(b"SCHILY.xattr.".as_slice()) {
                    info.xattrs
                        .insert(attr.to_vec(), ext.value_bytes().to_vec());
                } else if key == b"mtime" && !global {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        info.mtime = t;
                    }
                }
            }
        }
        Ok(info)
    }
}

/// Go's `parseNumeric`: base-256 when the top bit is set, else octal with NULs and spaces
/// trimmed (an empty field is 0). `None` where Go reports `ErrHeader`.
fn go_numeric(field: &[u8]) -> Option<i64> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            // Two's complement, big-endian; bit 0x40 of the first byte is the sign.
            let invert = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &byte) in field.iter().enumerate() {
                let mut byte = byte ^ invert;
                if i == 0 {
                    byte &= 0x7f;
                }
                if x >> 56 != 0 {
                    return None;
                }
                x = (x << 8) | u64::from(byte);
            }
            if x >> 63 != 0 {
                return None;
            }
            let x = x as i64;
            return Some(if invert == 0xff { !x } else { x });
        }
    }
    let start = field.iter().position(|&b| b != b' ' && b != 0);
    let Some(start) = start else {
        return Some(0);
    };
    let end = field.iter().rposition(|&b| b != b' ' && b != 0)? + 1;
    let digits = std::str::from_utf8(&field[start..end]).ok()?;
    u64::from_str_radix(digits, 8)
        .ok()
        .and_then(|v| i64::try_from(v).ok())
}

/// PAX time: decimal seconds, optionally negative, optionally with a fraction.
fn parse_pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(value).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().ok()?;
    if s.starts_with('-') && nanos > 0 {
        Some((secs - 1, 1_000_000_000 - nanos))
    } else {
        Some((secs, nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testutil::{Scratch, Tar};
    use crate::context::ContextError;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn legacy_nul_type_is_a_file_or_with_a_slash_a_directory() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .raw(b'0', "olddir/", 0o755, "", b"", |h| {
                h.as_mut_bytes()[156] = 0
            })
            .raw(b'0', "olddir/oldfile", 0o644, "", b"v7", |h| {
                h.as_mut_bytes()[156] = 0
            })
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert!(s.ctx.join("olddir").is_dir());
        assert_eq!(
            fs::read_to_string(s.ctx.join("olddir/oldfile")).unwrap(),
            "v7"
        );
        assert_eq!(ctx.entries["olddir"].typeflag, b'5');
        assert_eq!(ctx.entries["olddir/oldfile"].typeflag, b'0');
    }

    #[test]
    fn numeric_fields_are_read_like_go() {
        assert_eq!(go_numeric(b"0000644\0"), Some(0o644));
        assert_eq!(go_numeric(b"  644 \0"), Some(0o644));
        assert_eq!(go_numeric(b"\0\0\0\0\0\0\0\0"), Some(0), "empty is zero");
        assert_eq!(go_numeric(b"0000008\0"), None, "not octal");
        // Base-256: positive and negative.
        assert_eq!(go_numeric(&[0x80, 0, 0, 0, 0, 0, 0x01, 0x00]), Some(256));
        assert_eq!(go_numeric(&[0xff; 8]), Some(-1));
    }

    #[test]
    fn pax_mtime_overrides_the_header_with_sub_second_precision() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .pax(&[("mtime", b"1234567890.5")])
            .file("precise", 0o644, b"x")
            .finish();
        s.receive(&body, "").unwrap();
        let meta = fs::metadata(s.ctx.join("precise")).unwrap();
        assert_eq!(meta.mtime(), 1_234_567_890);
        assert_eq!(meta.mtime_nsec(), 500_000_000);
        assert_eq!(parse_pax_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
        assert_eq!(parse_pax_time(b"x"), None);
    }

    #[test]
    fn pax_owner_overrides_the_header() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .pax(&[("uid", b"3000000"), ("gid", b"3000001")])
            .file("big-ids", 0o644, b"x")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(ctx.entries["big-ids"].uid, 3_000_000);
        assert_eq!(ctx.entries["big-ids"].gid, 3_000_001);
    }

    #[test]
    fn long_names_from_gnu_and_pax_headers() {
        let s = Scratch::new();
        let long = format!("{}/file.txt", "d".repeat(150));
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(3);
        builder.append_data(&mut h, &long, &b"gnu"[..]).unwrap();
        let mut body = builder.into_inner().unwrap();
        body.truncate(body.len() - 2 * BLOCK); // drop the end-of-archive blocks
        let pax_name = format!("{}/pax.txt", "p".repeat(150));
        let rest = Tar::default()
            .pax(&[("path", pax_name.as_bytes())])
            .file("short", 0o644, b"pax")
            .dockerfile()
            .finish();
        body.extend(rest);
        let ctx = s.receive(&body, "").unwrap();
        assert_eq!(fs::read_to_string(s.ctx.join(&long)).unwrap(), "gnu");
        assert_eq!(fs::read_to_string(s.ctx.join(&pax_name)).unwrap(), "pax");
        assert!(!s.ctx.join("short").exists());
        assert!(ctx.entries.contains_key(&pax_name));
    }

    #[test]
    fn corrupt_header_is_malformed() {
        let s = Scratch::new();
        let mut body = Tar::default()
            .dockerfile()
            .file("second", 0o644, b"x")
            .finish();
        body[2 * BLOCK + 10] ^= 0x55; // inside the second header's name
        let err = s.receive(&body, "").unwrap_err();
        assert!(matches!(err, ContextError::Malformed(_)), "{err}");
        assert!(err.to_string().starts_with("Error processing tar file: "));
    }
}
