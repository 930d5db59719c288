//! Named and anonymous volumes of this node, kept by the `local` driver as dockerd keeps them:
//! `<root>/<name>/_data` holds the content, `<root>/<name>/volume.json` the record.
//!
//! - [`VolumeStore`] (in `store`): create, get, list, remove, prune, reference counting.
//! - `name`: dockerd's name rules and anonymous names; `filter`: list and prune filters.
//! - `record`: the persisted record, written atomically; `size`: disk usage of a volume.
//! - `copy_up`: filling an empty volume from the image directory it is mounted over, never
//!   following a link out of either tree.

mod copy_up;
mod error;
mod filter;
mod name;
mod record;
mod size;
mod store;

pub use error::{Result, VolumeError};
pub use filter::VolumeFilters;
pub use name::{validate_name, ANONYMOUS_LABEL};
pub use record::Volume;
pub use store::{PruneReport, VolumeStore};

/// The only driver this store implements.
pub const LOCAL_DRIVER: &str = "local";
