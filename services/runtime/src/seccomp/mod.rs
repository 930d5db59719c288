//! Seccomp: moby's profiles and default profile ([`profile`]), and the filter a container's
//! init and execs load before their program runs ([`filter`]), compiled by libseccomp as runc
//! compiles it.

pub mod filter;
pub mod profile;

pub use filter::{compile, load, Cache, Program};
pub use profile::{builtin, Profile};
