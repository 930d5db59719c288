//! What went wrong, said as facts a caller turns into its own words: each extractor keeps the
//! error texts its clients know (dockerd's for `docker cp` and builds, the snapshotter's for
//! layers), so the core has no texts of its own beyond [`NameError`] and
//! [`WalkError::reason`](crate::WalkError::reason).

use std::io;

use nix::errno::Errno;

use crate::names::{EntryPath, NameError};
use crate::root::WalkError;

/// A file system call that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Looking at what already has the entry's name.
    Stat,
    /// Removing what had the entry's name.
    Replace,
    MakeDir,
    /// Opening a directory just made (or kept) to set its attributes.
    OpenDir,
    MakeFile,
    MakeSymlink,
    /// `mknod` of a device or a fifo.
    MakeNode,
    Owner,
    Mode,
    Xattr,
    Times,
}

/// Why a hard link was not made.
#[derive(Debug)]
pub enum LinkProblem {
    /// Its target's name is refused.
    Name(NameError),
    /// Its target is the root.
    Root,
    /// Its target's directory cannot be reached.
    Parent(WalkError),
    /// Looking at the target failed.
    Stat(Errno),
    /// Nothing has the target's name (it is not extracted yet).
    Missing,
    /// The target is a directory.
    Directory,
    /// `linkat` failed.
    Os(Errno),
}

/// Why one entry was not extracted.
#[derive(Debug)]
pub enum Problem {
    /// Its data could not be read from the archive.
    Read(io::Error),
    /// Its data could not be written.
    Write(io::Error),
    /// Its name is refused.
    Name(NameError),
    /// Its directory cannot be reached or made.
    Parent(WalkError),
    /// A directory and a non-directory would replace each other, which the caller forbids
    /// ([`Options::no_overwrite_dir_non_dir`](crate::Options::no_overwrite_dir_non_dir));
    /// `existing_dir` says which one is there.
    Overwrite {
        existing_dir: bool,
    },
    /// A hard link; `target` as the archive names it, `path` once cleaned.
    Link {
        target: Vec<u8>,
        path: Option<EntryPath>,
        problem: LinkProblem,
    },
    /// A type flag nothing makes ([`Kind::Other`](crate::Kind::Other)).
    Unsupported(u8),
    Os(Op, Errno),
}

/// Why an extraction failed.
#[derive(Debug)]
pub enum Error {
    /// The archive could not be read: a header, its extensions, the stream itself.
    Archive(io::Error),
    /// One entry: `entry` is its name as the archive has it, `path` where it goes (the root
    /// when its name was refused).
    Entry {
        entry: Vec<u8>,
        path: EntryPath,
        problem: Problem,
    },
    /// A directory's mode or times, set once everything else was extracted.
    Finish {
        path: EntryPath,
        op: Op,
        errno: Errno,
    },
}
