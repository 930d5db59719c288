//! `/_ping`, `/version`, `/info`, `/events`, `/system/df` and `/build/prune`, one file each:
//! `ping.rs` (`/_ping` and `/version`), `info.rs`, `events.rs`, `disk_usage.rs` and
//! `build_prune.rs`.

mod build_prune;
#[cfg(test)]
mod bus_tests;
mod disk_usage;
mod events;
mod info;
mod ping;

pub use build_prune::build_prune;
pub use disk_usage::disk_usage;
pub use events::events;
pub use info::info;
pub use ping::{ping, version};
