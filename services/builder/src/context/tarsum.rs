//! The `tarsum.v1` sum of one archive entry, as dockerd's `pkg/tarsum` computes it: selected
//! header fields in a fixed order, then the entry's content. The classic builder's cache keys
//! are made of these sums (`cache_key.rs`).

use std::collections::BTreeMap;
use std::io::{self, Write};

use sha2::{Digest, Sha256};

use super::header::HeaderInfo;

impl HeaderInfo {
    /// The `tarsum.v1` header fields (`v1TarHeaderSelect`), as the stream `tarSum` encodes
    /// them: `uname`/`gname` blanked (kept "compatible with versions before go 1.10"), no
    /// mtime, then each xattr `key` + `value` sorted by key.
    pub(super) fn write_tarsum_header(&self, h: &mut Sha256) {
        write_v1_header(
            h,
            &V1Fields {
                name: &self.name,
                mode: i64::from(self.mode),
                uid: self.uid,
                gid: self.gid,
                size: self.size,
                typeflag: self.typeflag,
                linkname: &self.linkname,
                uname: b"",
                gname: b"",
                devmajor: self.devmajor,
                devminor: self.devminor,
                xattrs: &self.xattrs,
            },
        );
    }
}

/// The fields `tarsum` version 1 hashes, in order.
pub(super) struct V1Fields<'a> {
    pub(super) name: &'a [u8],
    pub(super) mode: i64,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) size: u64,
    pub(super) typeflag: u8,
    pub(super) linkname: &'a [u8],
    pub(super) uname: &'a [u8],
    pub(super) gname: &'a [u8],
    pub(super) devmajor: u64,
    pub(super) devminor: u64,
    pub(super) xattrs: &'a BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Hashes `f` as `tarsum` version 1 does: each field's name, then its value.
pub(super) fn write_v1_header(h: &mut Sha256, f: &V1Fields<'_>) {
    let mut field = |key: &[u8], value: &[u8]| {
        h.update(key);
        h.update(value);
    };
    field(b"name", f.name);
    field(b"mode", f.mode.to_string().as_bytes());
    field(b"uid", f.uid.to_string().as_bytes());
    field(b"gid", f.gid.to_string().as_bytes());
    field(b"size", f.size.to_string().as_bytes());
    field(b"typeflag", &[f.typeflag]);
    field(b"linkname", f.linkname);
    field(b"uname", f.uname);
    field(b"gname", f.gname);
    field(b"devmajor", f.devmajor.to_string().as_bytes());
    field(b"devminor", f.devminor.to_string().as_bytes());
    for (k, v) in f.xattrs {
        field(k, v);
    }
}

/// Feeds whatever is written to it into a hash.
pub(super) struct HashWriter<'a>(pub(super) &'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::context::testutil::{sha, Scratch, Tar};

    /// The tarsum.v1 header string, in dockerd's order, for a plain entry.
    fn v1_header(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in fields {
            out.extend(k.as_bytes());
            out.extend(v.as_bytes());
        }
        out
    }

    #[test]
    fn file_checksum_is_the_tarsum_v1_of_its_entry() {
        let s = Scratch::new();
        let body = Tar::default()
            .dockerfile()
            .raw(b'0', "hello.txt", 0o100644, "", b"hello", |h| {
                h.set_uid(1000);
                h.set_gid(1001);
                h.set_username("alice").unwrap();
                h.set_groupname("staff").unwrap();
                h.set_mtime(12345);
            })
            .pax(&[("SCHILY.xattr.user.b", b"2"), ("SCHILY.xattr.user.a", b"1")])
            .file("attrs", 0o644, b"")
            .finish();
        let ctx = s.receive(&body, "").unwrap();
        // uname and gname are blanked, mtime is not hashed, the content follows the header.
        let mut expected = v1_header(&[
            ("name", "hello.txt"),
            ("mode", "33188"),
            ("uid", "1000"),
            ("gid", "1001"),
            ("size", "5"),
            ("typeflag", "0"),
            ("linkname", ""),
            ("uname", ""),
            ("gname", ""),
            ("devmajor", "0"),
            ("devminor", "0"),
        ]);
        expected.extend(b"hello");
        assert_eq!(
            ctx.checksum("hello.txt").unwrap(),
            format!("file:{}", sha(&expected))
        );
        // Leading `/` and `./` are trimmed from the source, as calcCopyInfo does.
        assert_eq!(
            ctx.checksum("/hello.txt").unwrap(),
            ctx.checksum("./hello.txt").unwrap()
        );
        // xattrs follow, sorted by key.
        let mut expected = v1_header(&[
            ("name", "attrs"),
            ("mode", "420"),
            ("uid", "0"),
            ("gid", "0"),
            ("size", "0"),
            ("typeflag", "0"),
            ("linkname", ""),
            ("uname", ""),
            ("gname", ""),
            ("devmajor", "0"),
            ("devminor", "0"),
            ("user.a", "1"),
            ("user.b", "2"),
        ]);
        expected.extend(b"");
        assert_eq!(
            ctx.checksum("attrs").unwrap(),
            format!("file:{}", sha(&expected))
        );
    }

    #[test]
    fn checksum_changes_with_one_byte_the_mode_or_the_owner() {
        let sum = |mode: u32, uid: u64, data: &[u8]| {
            let s = Scratch::new();
            let body = Tar::default()
                .dockerfile()
                .raw(b'0', "f", mode, "", data, |h| h.set_uid(uid))
                .finish();
            s.receive(&body, "").unwrap().checksum("f").unwrap()
        };
        let base = sum(0o644, 0, b"content");
        assert_eq!(base, sum(0o644, 0, b"content"), "stable");
        assert_ne!(base, sum(0o644, 0, b"contend"));
        assert_ne!(base, sum(0o755, 0, b"content"));
        assert_ne!(base, sum(0o644, 1, b"content"));
    }
}
