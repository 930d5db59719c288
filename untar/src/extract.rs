//! The walk over a tar stream's entries, each made inside the root.
//!
//! For every entry: the caller reads it ([`Hooks::read`]); its name is cleaned
//! ([`Options::names`], strict names, a rename); the root entry makes nothing; the caller may
//! take the entry over ([`Hooks::place`]); then its directory is opened inside the root
//! ([`Root::dir`], missing parents made), what has its name is replaced (directories merge),
//! and the entry is made with its owner, mode, xattrs and times. Hard links may only point to
//! something already in the root, found the same way, and never to a directory. Directory
//! times (and with [`Options::dir_modes_last`], modes) are set last, deepest first, once
//! nothing more is written into them.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{self, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd;

use crate::attrs::{self, mode_of};
use crate::error::{Error, LinkProblem, Op, Problem};
use crate::names::{EntryPath, NameError, Names};
use crate::root::{file_type, lstat_at, remove_at, Root, WalkError, DIR_FLAGS};
use crate::{Item, Kind};

/// Size of the copy buffer for file contents.
const COPY_BUFFER: usize = 256 * 1024;

/// How entries are named and made, besides what the hooks decide.
#[derive(Debug, Clone)]
pub struct Options {
    /// How entry names and hard link targets are cleaned.
    pub names: Names,
    /// Entry names with a leading `/` or any `..` are refused ([`NameError::Outside`]) instead
    /// of cleaned (a build's COPY, whose tar the builder made). Hard link targets are cleaned
    /// as [`Options::names`] says.
    pub strict: bool,
    /// The name every entry gets, right below the root (a COPY of one file to a new name).
    pub rename: Option<OsString>,
    /// A directory never replaces a non-directory, nor the other way round
    /// ([`Problem::Overwrite`]): `docker cp`'s `noOverwriteDirNonDir`.
    pub no_overwrite_dir_non_dir: bool,
    /// Directory modes are set last too, with their times (a read-only directory still
    /// receives its contents without privileges), and implied parents get exactly 0755 then.
    /// Otherwise a directory's mode is set when its entry comes.
    pub dir_modes_last: bool,
}

impl Options {
    pub fn new(names: Names) -> Options {
        Options {
            names,
            strict: false,
            rename: None,
            no_overwrite_dir_non_dir: false,
            dir_modes_last: false,
        }
    }
}

/// What the core does with an entry after [`Hooks::place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Make it.
    Make,
    /// Make nothing (its data still goes to [`Hooks::data`]).
    Skip,
    /// The hook made what the entry stands for.
    Done,
}

/// What each extractor decides: how it reads a header, what it makes of some entries, what it
/// does with the data going by, and how it words a failure.
pub trait Hooks {
    type Error;

    /// What the entry is, as this extractor reads headers. `None` passes over it entirely
    /// (a global PAX header, say).
    fn read<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>)
        -> Result<Option<Item>, Self::Error>;

    /// Called before anything is written for the entry at `path` (never the root): the hook
    /// may make the entry itself (a layer's whiteouts) or skip it.
    fn place(
        &mut self,
        _root: &Root,
        _path: &EntryPath,
        _item: &Item,
    ) -> Result<Place, Self::Error> {
        Ok(Place::Make)
    }

    /// The data of a file (or of the root or a skipped entry), as it goes by.
    fn data(&mut self, _chunk: &[u8]) {}

    /// The entry is handled (made, skipped, or the root's).
    fn done(&mut self, _path: &EntryPath, _item: &Item) -> Result<(), Self::Error> {
        Ok(())
    }

    /// This extractor's error for a failure of the core.
    fn error(&self, error: Error) -> Self::Error;
}

/// Extracts the tar read from `reader` into `root`; returns the reader, positioned after the
/// end-of-archive marker (callers that hash the whole stream read the rest).
pub fn extract<R: Read, H: Hooks>(
    reader: R,
    root: &Root,
    options: &Options,
    hooks: &mut H,
) -> Result<R, H::Error> {
    let mut x = Extraction {
        root,
        options,
        dirs: HashMap::new(),
        buffer: vec![0; COPY_BUFFER],
    };
    let mut archive = tar::Archive::new(reader);
    {
        let entries = archive
            .entries()
            .map_err(|e| hooks.error(Error::Archive(e)))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| hooks.error(Error::Archive(e)))?;
            x.entry(&mut entry, hooks)?;
        }
    }
    x.finish(hooks)?;
    Ok(archive.into_inner())
}

/// A directory's attributes set at the end.
#[derive(Debug, Clone, Copy, Default)]
struct DirMeta {
    mode: Option<u32>,
    mtime: Option<TimeSpec>,
}

struct Extraction<'a> {
    root: &'a Root,
    options: &'a Options,
    /// Directories to finish (the last entry for a directory wins).
    dirs: HashMap<EntryPath, DirMeta>,
    buffer: Vec<u8>,
}

impl Extraction<'_> {
    fn entry<R: Read, H: Hooks>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        hooks: &mut H,
    ) -> Result<(), H::Error> {
        let Some(item) = hooks.read(entry)? else {
            return Ok(());
        };
        let failed = |path: &EntryPath, problem| Error::Entry {
            entry: item.name.clone(),
            path: path.clone(),
            problem,
        };
        let path = self
            .path_of(&item.name)
            .map_err(|e| hooks.error(failed(&EntryPath::default(), Problem::Name(e))))?;
        let place = if path.is_root() {
            // The root itself (`./`) is the target: it keeps its own attributes.
            Place::Skip
        } else {
            hooks.place(self.root, &path, &item)?
        };
        let made = match place {
            Place::Make => self.make(entry, &item, &path, hooks),
            Place::Skip => self.copy(entry, None, hooks).map(drop),
            Place::Done => Ok(()),
        };
        made.map_err(|problem| hooks.error(failed(&path, problem)))?;
        hooks.done(&path, &item)
    }

    fn path_of(&self, raw: &[u8]) -> Result<EntryPath, NameError> {
        if self.options.strict && EntryPath::strictly_refused(raw) {
            return Err(NameError::Outside);
        }
        let path = EntryPath::parse(raw, self.options.names)?;
        Ok(match &self.options.rename {
            Some(name) => EntryPath::single(name),
            None => path,
        })
    }

    fn make<R: Read, H: Hooks>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        item: &Item,
        path: &EntryPath,
        hooks: &mut H,
    ) -> Result<(), Problem> {
        if let Kind::Other(flag) = item.kind {
            return Err(Problem::Unsupported(flag));
        }
        let name = path.name().expect("not the root");
        let (parent, made) = self
            .root
            .dir_made(path.parent(), true)
            .map_err(Problem::Parent)?;
        if let (true, Some(from)) = (self.options.dir_modes_last, made) {
            for n in from + 1..=path.parent().len() {
                self.dirs.insert(
                    path.prefix(n),
                    DirMeta {
                        mode: Some(0o755),
                        mtime: None,
                    },
                );
            }
        }
        // A hard link's target first: linking a name to what it already is changes nothing.
        let link = match &item.kind {
            Kind::HardLink(target) => Some(self.link_target(target)?),
            _ => None,
        };
        let is_dir = item.kind == Kind::Dir;
        let mut existing_dir = false;
        if let Some(existing) = lstat_at(&parent, name).map_err(|e| Problem::Os(Op::Stat, e))? {
            existing_dir = file_type(&existing) == SFlag::S_IFDIR;
            if self.options.no_overwrite_dir_non_dir && existing_dir != is_dir {
                return Err(Problem::Overwrite { existing_dir });
            }
            if let Some(target) = &link {
                if (existing.st_dev, existing.st_ino) == (target.stat.st_dev, target.stat.st_ino) {
                    return Ok(());
                }
            }
            if !(existing_dir && is_dir) {
                remove_at(&parent, name).map_err(|e| Problem::Os(Op::Replace, e))?;
            }
        }
        let os = |op| move |e| Problem::Os(op, e);
        let attrs = |(op, e)| Problem::Os(op, e);
        match &item.kind {
            Kind::Dir => {
                if !(existing_dir && is_dir) {
                    // Restrictive until the entry's own mode is applied.
                    stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o700))
                        .map_err(os(Op::MakeDir))?;
                }
                let now_mode = !self.options.dir_modes_last;
                if now_mode || item.owner.is_some() || !item.xattrs.is_empty() {
                    let dir = fcntl::openat(&parent, name, DIR_FLAGS, Mode::empty())
                        .map_err(os(Op::OpenDir))?;
                    attrs::apply_to_fd(&dir, item, now_mode, false).map_err(attrs)?;
                }
                self.dirs.insert(
                    path.clone(),
                    DirMeta {
                        mode: self.options.dir_modes_last.then_some(item.mode),
                        mtime: Some(item.mtime),
                    },
                );
            }
            Kind::File => {
                let fd = fcntl::openat(
                    &parent,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(os(Op::MakeFile))?;
                let mut file = File::from(fd);
                self.copy(entry, Some(&mut file), hooks)?;
                attrs::apply_to_fd(&OwnedFd::from(file), item, true, true).map_err(attrs)?;
            }
            Kind::Symlink(target) => {
                // The target is stored, never followed here.
                unistd::symlinkat(OsStr::from_bytes(target), &parent, name)
                    .map_err(os(Op::MakeSymlink))?;
                attrs::apply_at(&parent, name, item, true).map_err(attrs)?;
            }
            Kind::HardLink(target) => {
                let link = link.expect("resolved above");
                let problem = |problem| Problem::Link {
                    target: target.clone(),
                    path: Some(link.path.clone()),
                    problem,
                };
                let target_name = link.path.name().expect("not the root");
                unistd::linkat(&link.parent, target_name, &parent, name, AtFlags::empty())
                    .map_err(|e| problem(LinkProblem::Os(e)))?;
                // Docker gives the link header's attributes to the shared inode, unless it is a
                // symlink.
                if file_type(&link.stat) != SFlag::S_IFLNK {
                    attrs::apply_at(&parent, name, item, false).map_err(attrs)?;
                }
            }
            Kind::Device { .. } | Kind::Fifo => {
                let (kind, dev) = match item.kind {
                    Kind::Device {
                        block,
                        major,
                        minor,
                    } => {
                        let kind = if block {
                            SFlag::S_IFBLK
                        } else {
                            SFlag::S_IFCHR
                        };
                        (kind, stat::makedev(major.into(), minor.into()))
                    }
                    _ => (SFlag::S_IFIFO, 0),
                };
                match stat::mknodat(&parent, name, kind, Mode::empty(), dev) {
                    Ok(()) => {}
                    // Without CAP_MKNOD (rootless, user namespaces) dockerd skips devices too.
                    Err(Errno::EPERM) if kind != SFlag::S_IFIFO => {
                        tracing::warn!(
                            "device {} not created: not permitted here",
                            path.to_slash_string()
                        );
                        return Ok(());
                    }
                    Err(e) => return Err(Problem::Os(Op::MakeNode, e)),
                }
                attrs::apply_at(&parent, name, item, false).map_err(attrs)?;
            }
            Kind::Other(_) => unreachable!("refused above"),
        }
        Ok(())
    }

    /// Finds a hard link's target: inside the root, as entry names are found, and no directory.
    fn link_target(&self, raw: &[u8]) -> Result<LinkTarget, Problem> {
        let refused = |path: Option<EntryPath>, problem| Problem::Link {
            target: raw.to_vec(),
            path,
            problem,
        };
        let path = EntryPath::parse(raw, self.options.names)
            .map_err(|e| refused(None, LinkProblem::Name(e)))?;
        let Some(name) = path.name() else {
            return Err(refused(Some(path), LinkProblem::Root));
        };
        let parent = self
            .root
            .dir(path.parent(), false)
            .map_err(|e: WalkError| refused(Some(path.clone()), LinkProblem::Parent(e)))?;
        let stat = match lstat_at(&parent, name) {
            Ok(Some(stat)) => stat,
            Ok(None) => return Err(refused(Some(path), LinkProblem::Missing)),
            Err(e) => return Err(refused(Some(path), LinkProblem::Stat(e))),
        };
        if file_type(&stat) == SFlag::S_IFDIR {
            return Err(refused(Some(path), LinkProblem::Directory));
        }
        Ok(LinkTarget { path, parent, stat })
    }

    /// Copies the entry's data to `out` (if any) and the data hook.
    fn copy<R: Read, H: Hooks>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        mut out: Option<&mut File>,
        hooks: &mut H,
    ) -> Result<u64, Problem> {
        let mut total = 0;
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Problem::Read(e)),
            };
            hooks.data(&self.buffer[..n]);
            if let Some(out) = out.as_deref_mut() {
                out.write_all(&self.buffer[..n]).map_err(Problem::Write)?;
            }
            total += n as u64;
        }
        Ok(total)
    }

    /// Sets directory times (and modes) now that nothing more is written into them, deepest
    /// first so that a read-only or non-searchable directory never blocks the work below it.
    /// A directory a later entry replaced is no longer there as a directory: skipped.
    fn finish<H: Hooks>(&mut self, hooks: &H) -> Result<(), H::Error> {
        let mut dirs: Vec<(EntryPath, DirMeta)> = self.dirs.drain().collect();
        dirs.sort_by(|a, b| {
            let depth = |p: &EntryPath| p.components().len();
            depth(&b.0).cmp(&depth(&a.0)).then_with(|| a.0.cmp(&b.0))
        });
        for (path, meta) in dirs {
            let Ok(dir) = self.root.dir(path.components(), false) else {
                continue;
            };
            let failed = |op, errno| {
                hooks.error(Error::Finish {
                    path: path.clone(),
                    op,
                    errno,
                })
            };
            if let Some(mode) = meta.mode {
                stat::fchmod(&dir, mode_of(mode)).map_err(|e| failed(Op::Mode, e))?;
            }
            if let Some(mtime) = meta.mtime {
                stat::futimens(&dir, &mtime, &mtime).map_err(|e| failed(Op::Times, e))?;
            }
        }
        Ok(())
    }
}

/// A hard link's target, found.
struct LinkTarget {
    path: EntryPath,
    parent: OwnedFd,
    stat: stat::FileStat,
}
