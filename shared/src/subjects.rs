//! Subjects, versioned and namespaced as `wharf.v1.<service>.<operation>`.
//!
//! Every endpoint is registered with the NATS service API under the service name below, so
//! `nats micro ls` shows each service and `nats micro stats` counts its requests and errors.

/// Prefix of every Wharf subject.
pub const PREFIX: &str = "wharf.v1";

/// Names under which the services register with the NATS service API.
pub mod service_name {
    pub const GATEWAY: &str = "wharf-gateway";
    pub const IMAGE_STORE: &str = "wharf-image-store";
    pub const REGISTRY_SYNC: &str = "wharf-registry-sync";
    pub const BUILDER: &str = "wharf-builder";
    pub const RUNTIME: &str = "wharf-runtime";
}

/// The queue group shared by all instances of one service.
pub const QUEUE_GROUP: &str = "wharf";

/// Endpoint groups (subject prefixes) per service.
pub mod group {
    pub const GATEWAY: &str = "wharf.v1.gateway";
    pub const IMAGE_STORE: &str = "wharf.v1.image-store";
    pub const REGISTRY_SYNC: &str = "wharf.v1.registry-sync";
    pub const BUILDER: &str = "wharf.v1.builder";
    pub const RUNTIME: &str = "wharf.v1.runtime";
}

/// image-store endpoints (suffixes under [`group::IMAGE_STORE`]).
pub mod image_store {
    pub const BLOB_STAT: &str = "blob.stat";
    pub const BLOB_READ: &str = "blob.read";
    pub const BLOB_INGEST: &str = "blob.ingest";
    /// Same-host shortcut: where a blob's file is ([`crate::image::BlobLocation`]).
    pub const BLOB_LOCATE: &str = "blob.locate";
    /// Same-host shortcut: where a writer may stage a blob ([`crate::image::StagingArea`]).
    pub const BLOB_STAGING: &str = "blob.staging";
    /// Same-host shortcut: ingest a staged file ([`crate::image::BlobAdopt`]).
    pub const BLOB_ADOPT: &str = "blob.adopt";
    pub const IMAGE_COMMIT: &str = "image.commit";
    pub const IMAGE_RESOLVE: &str = "image.resolve";
    pub const IMAGE_LIST: &str = "image.list";
    pub const IMAGE_TAG: &str = "image.tag";
    pub const IMAGE_DELETE: &str = "image.delete";
    pub const IMAGE_PRUNE: &str = "image.prune";
    pub const IMAGE_EXPORT: &str = "image.export";
    pub const IMAGE_LOAD: &str = "image.load";
    pub const IMAGE_IMPORT: &str = "image.import";
    pub const HEALTH: &str = "health";
}

/// registry-sync endpoints (suffixes under [`group::REGISTRY_SYNC`]).
pub mod registry_sync {
    pub const PULL: &str = "pull";
    pub const PUSH: &str = "push";
    /// Registry-to-registry copy ([`crate::registry::SyncRequest`]), a progress stream.
    pub const SYNC: &str = "sync";
    /// `docker login`: checks [`crate::registry::RegistryAuth`] against its registry
    /// ([`crate::registry::LoginReply`]).
    pub const LOGIN: &str = "login";
    /// `GET /distribution/{name}/json`: a reference's descriptor and platforms, read from its
    /// registry ([`crate::registry::DistributionInspect`]).
    pub const MANIFEST_INSPECT: &str = "manifest.inspect";
    pub const INFO: &str = "info";
    pub const HEALTH: &str = "health";
}

/// builder endpoints.
pub mod builder {
    pub const BUILD: &str = "build";
    pub const HEALTH: &str = "health";
    /// The shared build cache index as Docker's `BuildCache` records
    /// ([`crate::build::CacheRecord`]).
    pub const CACHE_LIST: &str = "cache.list";
    /// `docker builder prune` ([`crate::build::CachePrune`]).
    pub const CACHE_PRUNE: &str = "cache.prune";
}

/// runtime endpoints; runtime nodes also answer on `wharf.v1.runtime.node.<node>.<op>`.
pub mod runtime {
    pub const HEALTH: &str = "health";
}

/// gateway endpoints.
pub mod gateway {
    pub const HEALTH: &str = "health";
}

/// Full subject of an endpoint: `group` + `.` + `endpoint`.
pub fn subject(group: &str, endpoint: &str) -> String {
    format!("{group}.{endpoint}")
}

/// Events: `wharf.v1.events.<type>.<action>`; subscribe to [`EVENTS_ALL`] to see all of them.
pub const EVENTS_ALL: &str = "wharf.v1.events.>";

/// Subject an event of `kind` (image, container, ...) and `action` (pull, tag, ...) is published on.
/// Actions like `exec_start: sh` keep only the verb so the subject stays a valid token.
pub fn event(kind: &str, action: &str) -> String {
    let verb: String = action
        .split(':')
        .next()
        .unwrap_or(action)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{PREFIX}.events.{kind}.{verb}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_subject_keeps_only_a_valid_token() {
        assert_eq!(event("image", "pull"), "wharf.v1.events.image.pull");
        assert_eq!(
            event("container", "exec_start: sh -c x"),
            "wharf.v1.events.container.exec_start"
        );
    }

    #[test]
    fn endpoint_subjects_are_versioned_and_namespaced() {
        assert_eq!(
            subject(group::IMAGE_STORE, image_store::BLOB_INGEST),
            "wharf.v1.image-store.blob.ingest"
        );
    }
}
