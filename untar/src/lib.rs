//! Wharf's one tar extractor confined to its target directory. The runtime unpacks image
//! layers and `docker cp` uploads (and build COPY/ADD) with it, the builder its build contexts;
//! every entry is treated as hostile.
//!
//! One core, three callers: the walk over the entries, name cleaning and the refusal of names
//! that climb out ([`Names`]), every parent opened from the root's descriptor without following
//! a symlink out of it ([`Root`], [`Confine`]), each entry type made (directory, file, symlink,
//! hard link, device, fifo) with its owner, mode, xattrs and times, and directory times set at
//! the end ([`extract`]). What differs between the callers is said by [`Options`] (strict names,
//! a rename, `noOverwriteDirNonDir`, directory modes last) and by their [`Hooks`]: how a header
//! is read (owners overridden or mapped, PAX records kept or not), entries a caller makes
//! itself (a layer's whiteouts) or skips (a context's devices), the data going by (a context's
//! checksums), and the words of each failure (each caller keeps its clients' error texts).
//!
//! A crate of its own so that the runtime and the builder share it without the builder
//! depending on the runtime, and the bus contract (`wharf-bus`) stays free of file system code.
//! Files:
//!
//! - `extract.rs`: the walk, [`Options`], [`Hooks`], [`Place`].
//! - `root.rs`: [`Root`] and the lookups confined to it; [`lstat_at`], [`remove_at`].
//! - `names.rs`: [`EntryPath`] and the ways of cleaning names.
//! - `item.rs`: [`Item`] and [`Kind`], an entry as its caller read it.
//! - `header.rs`: header fields as the tar crate reads them, with Go's leniency.
//! - `attrs.rs`: owners, modes, xattrs and times applied without following links.
//! - `error.rs`: [`Error`], what went wrong as facts for the callers to word.

#![forbid(unsafe_code)]

mod attrs;
mod error;
mod extract;
pub mod header;
mod item;
mod names;
mod root;

pub use error::{Error, LinkProblem, Op, Problem};
pub use extract::{extract, Hooks, Options, Place};
pub use item::{Item, Kind};
pub use names::{EntryPath, NameError, Names};
pub use root::{file_type, lstat_at, remove_at, Blocked, Confine, Root, WalkError};

#[cfg(test)]
mod tests;
