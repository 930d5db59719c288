//! Header fields as the tar crate reads them, with Go's leniency where dockerd has it: the
//! parts of an [`Item`](crate::Item) the runtime's extractors (layers, `docker cp`) take from
//! a header. (The builder reads headers exactly as Go's `archive/tar` does, for its checksums,
//! and builds its items from that.)

use std::ffi::OsString;
use std::io::Read;

use nix::sys::time::TimeSpec;
use tar::EntryType;

use crate::Kind;

const PAX_XATTR: &str = "SCHILY.xattr.";
const PAX_MTIME: &str = "mtime";

/// The owner and mode fields of a header as Go's `archive/tar` (so dockerd) reads them: a field
/// of only NULs and spaces is 0, where the tar crate refuses it ("numeric field was not a
/// number"). Archives from tools that leave fields blank extract.
pub fn ids_and_mode(header: &tar::Header) -> std::io::Result<(u64, u64, u32)> {
    let old = header.as_old();
    let blank = |field: &[u8]| field.iter().all(|b| *b == 0 || *b == b' ');
    let uid = header
        .uid()
        .or_else(|e| if blank(&old.uid) { Ok(0) } else { Err(e) })?;
    let gid = header
        .gid()
        .or_else(|e| if blank(&old.gid) { Ok(0) } else { Err(e) })?;
    let mode = header
        .mode()
        .or_else(|e| if blank(&old.mode) { Ok(0) } else { Err(e) })?;
    Ok((uid, gid, mode))
}

/// The header's mtime field in whole seconds (0 when it is no number).
pub fn mtime(header: &tar::Header) -> TimeSpec {
    TimeSpec::new(header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64, 0)
}

/// What an entry's PAX records say besides what the tar crate folds into the header
/// (`uid`, `gid`, `size`, names).
#[derive(Debug, Default)]
pub struct Pax {
    /// `mtime`, with its fraction.
    pub mtime: Option<TimeSpec>,
    /// `SCHILY.xattr.*`, less overlayfs' own (see [`is_kept_xattr`]).
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

/// Reads the entry's PAX `mtime` and extended attributes.
pub fn pax<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::io::Result<Pax> {
    let mut pax = Pax::default();
    let Some(records) = entry.pax_extensions()? else {
        return Ok(pax);
    };
    for record in records {
        let record = record?;
        let Ok(key) = record.key() else { continue };
        if key == PAX_MTIME {
            if let Some(t) = record.value().ok().and_then(parse_pax_time) {
                pax.mtime = Some(t);
            }
        } else if let Some(name) = key.strip_prefix(PAX_XATTR) {
            if is_kept_xattr(name) && !name.contains('\0') {
                pax.xattrs
                    .push((name.into(), record.value_bytes().to_vec()));
            }
        }
    }
    Ok(pax)
}

/// What the tar crate's type flag says to make; `Err` names what is missing (a link
/// without a target). GNU sparse files are [`Kind::Other`]`(b'S')`, as dockerd's
/// `createTarFile` does not take them either.
pub fn kind<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Kind, &'static str> {
    let header = entry.header();
    let device = |block| Kind::Device {
        block,
        major: header.device_major().ok().flatten().unwrap_or(0),
        minor: header.device_minor().ok().flatten().unwrap_or(0),
    };
    Ok(match header.entry_type() {
        EntryType::Directory => Kind::Dir,
        EntryType::Regular | EntryType::Continuous => Kind::File,
        EntryType::Symlink => Kind::Symlink(
            entry
                .link_name_bytes()
                .ok_or("a symlink without a target")?
                .into_owned(),
        ),
        EntryType::Link => Kind::HardLink(
            entry
                .link_name_bytes()
                .ok_or("a hard link without a target")?
                .into_owned(),
        ),
        EntryType::Char => device(false),
        EntryType::Block => device(true),
        EntryType::Fifo => Kind::Fifo,
        other => Kind::Other(other.as_byte()),
    })
}

/// Overlayfs keeps its own bookkeeping in `trusted.overlay.*` (and `user.overlay.*` in userxattr
/// mounts): an archive must not forge redirects, metacopy or opaque markers through them.
/// Opaque directories come only from a layer's `.wh..wh..opq` entries.
pub fn is_kept_xattr(name: &str) -> bool {
    !(name.starts_with("trusted.overlay.") || name.starts_with("user.overlay."))
}

/// `1700000000.123456789` (PAX time: seconds, optional fraction, maybe negative).
fn parse_pax_time(value: &str) -> Option<TimeSpec> {
    let (secs, frac) = match value.split_once('.') {
        Some((s, f)) => (s, f),
        None => (value, ""),
    };
    let negative = secs.starts_with('-');
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut nanos: i64 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    let mut secs = secs;
    if negative && nanos > 0 {
        secs -= 1;
        nanos = 1_000_000_000 - nanos;
    }
    Some(TimeSpec::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_their_fraction() {
        assert_eq!(
            parse_pax_time("1700000000"),
            Some(TimeSpec::new(1700000000, 0))
        );
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some(TimeSpec::new(1700000000, 500_000_000))
        );
        assert_eq!(
            parse_pax_time("-1.25"),
            Some(TimeSpec::new(-2, 750_000_000))
        );
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn overlay_private_xattrs_are_not_taken_from_archives() {
        assert!(!is_kept_xattr("trusted.overlay.redirect"));
        assert!(!is_kept_xattr("user.overlay.opaque"));
        assert!(is_kept_xattr("security.capability"));
        assert!(is_kept_xattr("user.comment"));
    }

    #[test]
    fn blank_numeric_fields_read_as_zero_as_go_does() {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        assert!(h.uid().is_err(), "the tar crate refuses a blank field");
        assert_eq!(ids_and_mode(&h).unwrap(), (0, 0, 0o644));
        h.as_old_mut().uid.copy_from_slice(b"zzzzzzz\0");
        assert!(ids_and_mode(&h).is_err());
    }
}
