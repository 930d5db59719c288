//! An OCI Distribution client: which endpoints serve a registry, authenticated GETs of manifests
//! and blobs, and registry errors in the words dockerd uses.
//!
//! One concern per file:
//!
//! - `registries.rs`: which endpoints serve a registry (mirrors, insecure registries) and
//!   the HTTP clients.
//! - `session.rs`: a session with one endpoint about one repository, and its requests.
//! - `authorization.rs`: answering a registry's authentication challenge.
//! - `manifests.rs`: manifest requests and the tag list.
//! - `blobs.rs`: blob downloads and existence checks.
//! - `upload.rs`: blob uploads (mounts, monolithic and chunked) for pushes.
//! - `error.rs`: registry failures in dockerd's words.

mod authorization;
mod blobs;
mod error;
mod manifests;
mod registries;
mod session;
mod upload;

pub(crate) use authorization::{challenges_of, REDACTED};
pub(crate) use error::{code_words, read_capped, ErrorDocument};
pub use error::{describe_http_error, RegistryError, MAX_ERROR_BODY};
pub use manifests::FetchedManifest;
pub use registries::{Endpoint, Registries};
pub use session::Session;
pub use upload::{ByteStream, MemorySource, ProgressFn, UploadSource, UPLOAD_CHUNK};
