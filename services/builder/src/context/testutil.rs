//! Test helpers shared by the context's unit tests: a tar writer that says exactly what a
//! client sends, a scratch destination with host files beside it, and the compressors.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::header::BLOCK;
use super::{receive, Context, ContextError};

pub(super) const MTIME: u64 = 1_600_000_000;

/// A tar archive written header by header, so a test says exactly what a client (hostile or
/// not) sends: raw names, any type flag, any link target, any owner.
#[derive(Default)]
pub(super) struct Tar(Vec<u8>);

impl Tar {
    pub(super) fn raw(
        mut self,
        kind: u8,
        name: &str,
        mode: u32,
        link: &str,
        data: &[u8],
        tweak: impl FnOnce(&mut tar::Header),
    ) -> Tar {
        let mut h = tar::Header::new_ustar();
        let field = &mut h.as_old_mut().name;
        assert!(name.len() <= field.len(), "name too long for a raw header");
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_mtime(MTIME);
        h.set_entry_type(tar::EntryType::new(kind));
        if !link.is_empty() {
            h.set_link_name_literal(link).unwrap();
        }
        tweak(&mut h);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub(super) fn file(self, name: &str, mode: u32, data: &[u8]) -> Tar {
        self.raw(b'0', name, mode, "", data, |_| {})
    }

    pub(super) fn dir(self, name: &str, mode: u32) -> Tar {
        self.raw(b'5', name, mode, "", b"", |_| {})
    }

    pub(super) fn symlink(self, name: &str, target: &str) -> Tar {
        self.raw(b'2', name, 0o777, target, b"", |_| {})
    }

    pub(super) fn hardlink(self, name: &str, target: &str) -> Tar {
        self.raw(b'1', name, 0o644, target, b"", |_| {})
    }

    /// A PAX extended header (`x`) for the next entry.
    pub(super) fn pax(self, records: &[(&str, &[u8])]) -> Tar {
        let mut data = Vec::new();
        for (key, value) in records {
            let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = body_len + 1;
            while len != body_len + len.to_string().len() {
                len = body_len + len.to_string().len();
            }
            data.extend(format!("{len} {key}=").as_bytes());
            data.extend(*value);
            data.push(b'\n');
        }
        self.raw(b'x', "PaxHeaders/next", 0o644, "", &data, |_| {})
    }

    pub(super) fn dockerfile(self) -> Tar {
        self.file("Dockerfile", 0o644, b"FROM scratch\n")
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        self.0.extend([0u8; 2 * BLOCK]);
        self.0
    }
}

/// A scratch area: `ctx` is the (empty) destination, `outside` a sibling holding `secret`,
/// standing in for host files that no archive may touch.
pub(super) struct Scratch {
    _tmp: tempfile::TempDir,
    pub(super) ctx: PathBuf,
    pub(super) outside: PathBuf,
}

impl Scratch {
    pub(super) fn new() -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = tmp.path().join("ctx");
        let outside = tmp.path().join("outside");
        fs::create_dir(&ctx).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "host secret").unwrap();
        Scratch {
            _tmp: tmp,
            ctx,
            outside,
        }
    }

    pub(super) fn receive(&self, body: &[u8], dockerfile: &str) -> Result<Context, ContextError> {
        receive(body, &self.ctx, dockerfile)
    }

    pub(super) fn outside_abs(&self) -> String {
        self.outside.to_str().unwrap().to_string()
    }

    /// The outside directory holds exactly what it started with.
    pub(super) fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["secret"],
            "something was written outside the context"
        );
        let secret = self.outside.join("secret");
        assert_eq!(fs::read_to_string(&secret).unwrap(), "host secret");
        assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1);
        let parent_names: Vec<_> = fs::read_dir(self.ctx.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(parent_names, ["ctx", "outside"]);
    }
}

pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub(super) fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub(super) fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub(super) fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

pub(super) fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(super) fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

pub(super) fn mtime_of(p: &Path) -> i64 {
    fs::symlink_metadata(p).unwrap().mtime()
}
