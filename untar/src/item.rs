//! What one entry is, once its caller has read its header: the name as the archive has it, what
//! to make, and the attributes to give it.

use std::ffi::OsString;

use nix::sys::time::TimeSpec;

/// What to make of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// A regular file, its content the entry's data.
    File,
    /// A symlink and its target, stored as it is (never followed here).
    Symlink(Vec<u8>),
    /// A hard link to an entry already extracted, named as the archive names it.
    HardLink(Vec<u8>),
    /// A character or block device.
    Device {
        block: bool,
        major: u32,
        minor: u32,
    },
    Fifo,
    /// A type flag this caller does not extract: refused (unless a hook takes the entry).
    Other(u8),
}

/// One entry as its caller read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The name as the archive has it (PAX and GNU long names applied).
    pub name: Vec<u8>,
    pub kind: Kind,
    /// Owner to give it; `None` leaves the extracting process's.
    pub owner: Option<(u32, u32)>,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Access and modification time.
    pub mtime: TimeSpec,
    /// Extended attributes to set (a file system that takes none is not an error).
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}
