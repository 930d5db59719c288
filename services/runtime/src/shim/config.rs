//! What the runtime hands a shim.

use std::path::PathBuf;

use oci_spec::runtime::Spec;

use crate::cgroups::Cgroup;

/// One container's shim settings.
#[derive(Debug)]
pub struct ShimConfig {
    /// The container's ID.
    pub id: String,
    /// The directory the runtime keeps the container's files in (its OCI bundle).
    pub bundle_dir: PathBuf,
    /// The container's OCI runtime spec.
    pub spec: Spec,
    /// The prepared root file system.
    pub rootfs: PathBuf,
    /// The json-file log.
    pub log_path: PathBuf,
    /// `max-size` in bytes (`None`: never rotate).
    pub log_max_size: Option<u64>,
    /// `max-file`, at least 1.
    pub log_max_files: u32,
    /// Where the shim records the container's state (JSON).
    pub state_path: PathBuf,
    /// The container's cgroup, if it has one: asked whether the OOM killer struck at exit.
    pub cgroup: Option<Box<dyn Cgroup>>,
}
