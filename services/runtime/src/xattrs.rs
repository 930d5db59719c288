//! Extended attributes, the one way the runtime reads and writes them: on open descriptors
//! (volume copy-up, overlay's opaque marker, `docker diff`'s opaque directories). Built on the
//! `xattr` crate; a file system without extended attributes answers `EOPNOTSUPP`, which callers
//! decide about. (Layers' PAX xattrs are set by the tar core, `wharf_untar`.)

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};

use xattr::FileExt;

/// Runs `f` with `fd` seen as a `File` that never closes it.
fn with_file<T>(fd: &impl AsFd, f: impl FnOnce(&File) -> T) -> T {
    // SAFETY: the descriptor is open for as long as the borrow of `fd`, and the `File` is never
    // dropped (ManuallyDrop), so it is not closed here and stays the caller's.
    let file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd.as_fd().as_raw_fd()) });
    f(&file)
}

/// The value of attribute `name` of an open file; `None` when it has none.
pub fn get(fd: &impl AsFd, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    with_file(fd, |f| f.get_xattr(name))
}

/// Sets attribute `name` of an open file.
pub fn set(fd: &impl AsFd, name: &OsStr, value: &[u8]) -> io::Result<()> {
    with_file(fd, |f| f.set_xattr(name, value))
}

/// The names of an open file's attributes.
pub fn list(fd: &impl AsFd) -> io::Result<Vec<OsString>> {
    with_file(fd, |f| f.list_xattr().map(|names| names.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_on_descriptors() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = File::open(&path).unwrap();
        let name = OsStr::new("user.wharf.test");
        match set(&file, name, b"one") {
            // A file system without user attributes (tmpfs on old kernels): nothing to test.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return,
            r => r.unwrap(),
        }
        assert_eq!(get(&file, name).unwrap(), Some(b"one".to_vec()));
        assert!(list(&file).unwrap().iter().any(|n| n == name));
        assert_eq!(get(&file, OsStr::new("user.wharf.none")).unwrap(), None);
        set(&file, name, b"two").unwrap();
        // The descriptor is still open and still the caller's.
        assert_eq!(get(&file, name).unwrap(), Some(b"two".to_vec()));
    }
}
