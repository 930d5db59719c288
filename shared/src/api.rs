//! Every subject of the bus with its types, in one table (docs/architecture.md shows the same
//! table; a test keeps the two in step). See [`crate::endpoint`] for what the routes and
//! exchanges mean.
//!
//! Replies that are still Docker's JSON (`serde_json::Value`) are rendered by the runtime;
//! a `{}` answer is [`Empty`].

use serde_json::Value;

use crate::build::{
    BuildRequest, CachePrune, CachePruneReport, CacheRecord, StepCopy, StepDone, StepExport,
    StepRun,
};
use crate::container::{
    op, ArchiveRequest, AttachRequest, ById, Changed, CommitRequest, ContainerPruneResponse,
    CreateRequest, CreateResponse, ExecCreateRequest, ExecCreated, ExecInspectResponse,
    ExecLocation, ExecRef, ExecResizeRequest, ExecStartRequest, InspectRequest, InspectResponse,
    KillRequest, ListRequest, ListResponse, LogsRequest, NetworkConnectRequest,
    NetworkCreateRequest, NetworkListResponse, NetworkPruneResponse, NetworkRef, NodeInfo,
    PathStat, RemoveRequest, RenameRequest, ResizeRequest, ResolveRequest, ResolveResponse,
    StatsRequest, StdinRequest, StopRequest, StreamInfo, TopRequest, UpdateRequest,
    VolumeCreateRequest, VolumeListRequest, VolumeListResponse, VolumePruneResponse,
    VolumeRemoveRequest, WaitRequest, WaitResponse,
};
use crate::endpoint::{endpoints, Empty};
use crate::image::{
    BlobAdopt, BlobInfo, BlobIngest, BlobIngested, BlobLocation, BlobRead, BlobRef, DeleteItem,
    ImageCommit, ImageDelete, ImageExport, ImageImport, ImageList, ImageLoad, ImagePrune,
    ImageRecord, ImageResolve, ImageTag, LoadReport, PruneReport, StagingArea,
};
use crate::registry::{
    DistributionInspect, DistributionRequest, LoginReply, PullRequest, PushRequest, RegistryAuth,
    RegistrySettings, SyncRequest,
};
use crate::service::Health;
use crate::subjects::{builder, group, image_store, registry_sync};

endpoints! {
    // image-store.
    /// Whether a blob is stored (and a renewal of its lease).
    [service(group::IMAGE_STORE) BlobStat "blob.stat": BlobRef => BlobInfo]
    /// A blob's bytes from an offset; the accept tells its size.
    [service(group::IMAGE_STORE) download BlobReadStream "blob.read": BlobRead => BlobInfo]
    /// A blob to store, checked against its digest.
    [service(group::IMAGE_STORE) upload BlobIngestStream "blob.ingest": BlobIngest => Empty, BlobIngested]
    /// Same host only: where a blob's file is.
    [service(group::IMAGE_STORE) BlobLocate "blob.locate": BlobRef => BlobLocation]
    /// Same host only: where a writer may stage a blob.
    [service(group::IMAGE_STORE) BlobStaging "blob.staging": Empty => StagingArea]
    /// Same host only: ingest a staged file.
    [service(group::IMAGE_STORE) BlobAdoptFile "blob.adopt": BlobAdopt => BlobIngested]
    [service(group::IMAGE_STORE) ImageCommitRecord "image.commit": ImageCommit => ImageRecord]
    [service(group::IMAGE_STORE) ImageResolveName "image.resolve": ImageResolve => ImageRecord]
    [service(group::IMAGE_STORE) ImageListAll "image.list": ImageList => Vec<ImageRecord>]
    [service(group::IMAGE_STORE) ImageTagName "image.tag": ImageTag => Empty]
    [service(group::IMAGE_STORE) ImageDeleteName "image.delete": ImageDelete => Vec<DeleteItem>]
    [service(group::IMAGE_STORE) ImagePruneUnused "image.prune": ImagePrune => PruneReport]
    /// `docker save`: a tar.
    [service(group::IMAGE_STORE) download ImageExportTar "image.export": ImageExport => Empty]
    /// `docker load`: a tar in, what was loaded out.
    [service(group::IMAGE_STORE) upload ImageLoadTar "image.load": ImageLoad => Empty, LoadReport]
    /// `docker import`: a root file system tar in, the new image out.
    [service(group::IMAGE_STORE) upload ImageImportTar "image.import": ImageImport => Empty, ImageRecord]
    [service(group::IMAGE_STORE) ImageStoreHealth "health": Empty => Health]

    // registry-sync.
    /// `docker pull`: progress messages, one JSON message per frame.
    [service(group::REGISTRY_SYNC) download Pull "pull": PullRequest => Empty]
    /// `docker push`: progress messages.
    [service(group::REGISTRY_SYNC) download Push "push": PushRequest => Empty]
    /// Registry to registry: progress messages, the last with the summary.
    [service(group::REGISTRY_SYNC) download RegistrySync "sync": SyncRequest => Empty]
    /// `docker login`.
    [service(group::REGISTRY_SYNC) Login "login": RegistryAuth => LoginReply]
    /// `GET /distribution/{name}/json`: the descriptor and platforms a registry serves for a
    /// reference; nothing is pulled.
    [service(group::REGISTRY_SYNC) ManifestInspect "manifest.inspect": DistributionRequest => DistributionInspect]
    /// Mirrors and insecure registries, for `docker info`.
    [service(group::REGISTRY_SYNC) RegistryInfo "info": Empty => RegistrySettings]
    [service(group::REGISTRY_SYNC) RegistrySyncHealth "health": Empty => Health]

    // builder.
    /// `docker build`: progress messages, the last with the image ID.
    [service(group::BUILDER) download Build "build": BuildRequest => Empty]
    [service(group::BUILDER) CacheList "cache.list": Empty => Vec<CacheRecord>]
    [service(group::BUILDER) CachePruneUnused "cache.prune": CachePrune => CachePruneReport]
    [service(group::BUILDER) BuilderHealth "health": Empty => Health]

    // Runtime nodes.
    [service(group::RUNTIME) RuntimeHealth "health": Empty => Health]
    [service(group::GATEWAY) GatewayHealth "health": Empty => Health]
    [node ContainerCreate "container.create": CreateRequest => CreateResponse]
    [node ContainerStart "container.start": ById => Changed]
    [node ContainerStop "container.stop": StopRequest => Changed]
    [node ContainerRestart "container.restart": StopRequest => Changed]
    [node ContainerKill "container.kill": KillRequest => Empty]
    [node ContainerWait "container.wait": WaitRequest => WaitResponse]
    [node ContainerRemove "container.remove": RemoveRequest => Empty]
    /// Docker's inspect JSON.
    [node ContainerInspect "container.inspect": InspectRequest => InspectResponse]
    /// The log, framed as `docker logs` frames it.
    [node download ContainerLogs "container.logs": LogsRequest => StreamInfo]
    /// The live output (`docker attach`).
    [node download ContainerAttach "container.attach": AttachRequest => StreamInfo]
    /// Bytes for a container's or an exec's stdin, paired with an attach by its ID.
    [node upload ContainerStdin "container.stdin": StdinRequest => Empty, Empty]
    [node ContainerResize "container.resize": ResizeRequest => Empty]
    [node ContainerPause "container.pause": ById => Empty]
    [node ContainerUnpause "container.unpause": ById => Empty]
    [node ContainerRename "container.rename": RenameRequest => Empty]
    /// Docker's volume JSON.
    [node VolumeCreate "volume.create": VolumeCreateRequest => Value]
    [node VolumeRemove "volume.remove": VolumeRemoveRequest => Empty]
    [node ExecCreate "exec.create": ExecCreateRequest => ExecCreated]
    /// An exec attached: its output as for attach.
    [node download ExecStart "exec.start": ExecStartRequest => StreamInfo]
    [node ExecStartDetached "exec.start-detached": ExecStartRequest => Empty]
    /// Docker's exec inspect JSON.
    [node ExecInspect "exec.inspect": ExecRef => ExecInspectResponse]
    [node ExecResize "exec.resize": ExecResizeRequest => Empty]
    /// `docker stats`: one JSON object per frame.
    [node download ContainerStats "container.stats": StatsRequest => Empty]
    /// `{"Titles":[..],"Processes":[[..]]}`.
    [node ContainerTop "container.top": TopRequest => Value]
    /// `{"Warnings":[..]}`.
    [node ContainerUpdate "container.update": UpdateRequest => Value]
    /// `{"Id","Warning"}`.
    [node NetworkCreate "network.create": NetworkCreateRequest => Value]
    [node NetworkRemove "network.remove": NetworkRef => Empty]
    [node NetworkConnect "network.connect": NetworkConnectRequest => Empty]
    [node NetworkDisconnect "network.disconnect": NetworkConnectRequest => Empty]
    [node ArchiveStat "container.archive.stat": ArchiveRequest => PathStat]
    /// A tar of a path in a container.
    [node download ArchiveGet "container.archive.get": ArchiveRequest => PathStat]
    /// A tar to extract at a directory in a container.
    [node upload ArchivePut "container.archive.put": ArchiveRequest => Empty, Empty]
    /// `docker export`: a tar of the container's file system.
    [node download ContainerExport "container.export": ById => Empty]
    /// `docker diff`: `[{"Path","Kind"}]`.
    [node ContainerChanges "container.changes": ById => Value]
    /// `docker commit`: `{"Id"}`.
    [node ContainerCommit "container.commit": CommitRequest => Value]
    /// A build's RUN step: one StepEvent per frame, the last one `done`.
    [node download BuildRun "build.run": StepRun => Empty]
    /// A build's COPY/ADD step: a tar in, the step's layer out.
    [node upload BuildCopy "build.copy": StepCopy => Empty, StepDone]
    /// A build's `COPY --from` source: a JSON PathStat frame, then a tar.
    [node download BuildExport "build.export": StepExport => Empty]

    // Every node answers.
    [broadcast NodePing "node.ping": Empty => NodeInfo]
    [broadcast ContainerList "container.list": ListRequest => ListResponse]
    /// The containers a name or an ID prefix may mean.
    [broadcast ContainerResolve "container.resolve": ResolveRequest => ResolveResponse]
    /// Which node holds an exec.
    [broadcast ExecLocate "exec.locate": ExecRef => ExecLocation]
    [broadcast ContainerPrune "container.prune": ListRequest => ContainerPruneResponse]
    [broadcast NetworkList "network.list": VolumeListRequest => NetworkListResponse]
    [broadcast NetworkPrune "network.prune": VolumeListRequest => NetworkPruneResponse]
    [broadcast VolumeList "volume.list": VolumeListRequest => VolumeListResponse]
    [broadcast VolumePrune "volume.prune": VolumeListRequest => VolumePruneResponse]
}

/// The constants services registered with before these declarations: each names its
/// declaration's subject.
const _SAME_NAMES: () = {
    use crate::endpoint::Subject;
    const fn eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
    assert!(eq(BlobStat::NAME, image_store::BLOB_STAT));
    assert!(eq(ImageResolveName::NAME, image_store::IMAGE_RESOLVE));
    assert!(eq(Pull::NAME, registry_sync::PULL));
    assert!(eq(ManifestInspect::NAME, registry_sync::MANIFEST_INSPECT));
    assert!(eq(Build::NAME, builder::BUILD));
    assert!(eq(ContainerCreate::NAME, op::CREATE));
    assert!(eq(ContainerList::NAME, op::LIST));
    assert!(eq(BuildExport::NAME, op::BUILD_EXPORT));
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Route;
    use std::collections::BTreeSet;

    #[test]
    fn every_subject_is_declared_once() {
        let mut seen = BTreeSet::new();
        for e in ENDPOINTS {
            assert!(seen.insert(e.pattern()), "{} declared twice", e.pattern());
        }
    }

    #[test]
    fn every_runtime_operation_has_a_declaration() {
        let declared: BTreeSet<&str> = ENDPOINTS
            .iter()
            .filter(|e| matches!(e.route, Route::Node | Route::Broadcast))
            .map(|e| e.name)
            .collect();
        for name in op::ALL {
            assert!(declared.contains(name), "{name} has no declaration");
        }
    }

    #[test]
    fn the_architecture_document_lists_every_subject() {
        let doc = include_str!("../../docs/architecture.md");
        for e in ENDPOINTS {
            assert!(
                doc.contains(&format!("`{}`", e.pattern())),
                "docs/architecture.md does not list {}",
                e.pattern()
            );
        }
    }
}
