//! Images with parents, as the classic builder commits them (each step's image has the previous
//! step's image as parent), served over a real nats-server: intermediate images are hidden from
//! lists, protect their parents from deletion, and go with the last image that needs them, as in
//! dockerd.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use wharf_bus::digest::short_id;
use wharf_bus::image::{
    DeleteItem, ImageCommit, ImageDelete, ImageList, ImagePrune, ImageRecord, ImageResolve,
    ImageTag, LayerRef, PruneReport,
};
use wharf_bus::subjects::{group, image_store as ep, subject};
use wharf_bus::testkit::NatsServer as Nats;
use wharf_bus::{BusError, ErrorKind};
use wharf_image_store::{bus, store::ImageStore};

fn subj(endpoint: &str) -> String {
    subject(group::IMAGE_STORE, endpoint)
}

/// An image-store served on a real nats-server, and a client to call it.
struct Served {
    dir: tempfile::TempDir,
    store: Arc<ImageStore>,
    service: async_nats::Client,
    client: async_nats::Client,
    _running: wharf_bus::service::Running,
}

/// A store (with no garbage-collection grace period, so freed space shows at once) on `dir`.
async fn serve(nats: &Nats, dir: tempfile::TempDir) -> Served {
    let store = Arc::new(
        ImageStore::open(dir.path())
            .unwrap()
            .with_gc_grace(std::time::Duration::ZERO),
    );
    let service = async_nats::connect(&nats.url).await.unwrap();
    let running = bus::serve(service.clone(), store.clone()).await.unwrap();
    let client = async_nats::connect(&nats.url).await.unwrap();
    Served {
        dir,
        store,
        service,
        client,
        _running: running,
    }
}

async fn start(nats: &Nats) -> Served {
    serve(nats, tempfile::tempdir().unwrap()).await
}

impl Served {
    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        req: &Req,
    ) -> Result<Resp, BusError> {
        wharf_bus::call(&self.client, &subj(endpoint), req).await
    }

    /// Stores a layer holding `content`; returns it with its diff ID.
    fn layer(&self, content: &[u8]) -> (LayerRef, String) {
        let (digest, diff_id) =
            common::put_layer(&self.store, &common::tar_of(&[("file", content)]));
        let layer = LayerRef {
            digest,
            media_type: common::GZ.into(),
        };
        (layer, diff_id)
    }

    /// Commits an image of `layers` over the bus, created at `created`, tagged and with the
    /// parent given.
    async fn commit(
        &self,
        layers: &[(LayerRef, String)],
        created: &str,
        tags: &[&str],
        parent: Option<&ImageRecord>,
    ) -> Result<ImageRecord, BusError> {
        let diff_ids: Vec<String> = layers.iter().map(|(_, d)| d.clone()).collect();
        let config = common::config_json(&diff_ids, created, json!(null));
        let config = self.store.blobs.put(&config, None).unwrap().blob.digest;
        self.call(
            ep::IMAGE_COMMIT,
            &ImageCommit {
                config,
                layers: layers.iter().map(|(l, _)| l.clone()).collect(),
                manifest: None,
                tags: tags
                    .iter()
                    .map(|t| format!("docker.io/library/{t}"))
                    .collect(),
                repo_digests: vec![],
                parent: parent.map(|p| p.id.clone()),
            },
        )
        .await
    }

    async fn resolve(&self, name: &str) -> Result<ImageRecord, BusError> {
        self.call(
            ep::IMAGE_RESOLVE,
            &ImageResolve {
                name: name.to_string(),
            },
        )
        .await
    }

    /// IDs listed for `all` and the filters.
    async fn list(&self, all: bool, filters: &[(&str, &str)]) -> Vec<String> {
        let mut f: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in filters {
            f.entry(k.to_string()).or_default().push(v.to_string());
        }
        let records: Vec<ImageRecord> = self
            .call(ep::IMAGE_LIST, &ImageList { all, filters: f })
            .await
            .unwrap();
        records.into_iter().map(|r| r.id).collect()
    }

    async fn delete(
        &self,
        name: &str,
        force: bool,
        no_prune: bool,
    ) -> Result<Vec<DeleteItem>, BusError> {
        self.delete_in_use(name, force, no_prune, BTreeMap::new())
            .await
    }

    async fn delete_in_use(
        &self,
        name: &str,
        force: bool,
        no_prune: bool,
        in_use: BTreeMap<String, String>,
    ) -> Result<Vec<DeleteItem>, BusError> {
        self.call(
            ep::IMAGE_DELETE,
            &ImageDelete {
                name: name.to_string(),
                force,
                no_prune,
                in_use,
            },
        )
        .await
    }
}

/// What a classic build of three steps leaves: `base:latest`, an untagged intermediate image
/// (`step`, one more layer) and `app:v1` (an empty-layer step on top), each the parent of the
/// next.
struct Chain {
    base: ImageRecord,
    step: ImageRecord,
    app: ImageRecord,
}

async fn build_chain(s: &Served) -> Chain {
    let l0 = s.layer(b"base");
    let l1 = s.layer(b"step");
    let base = s
        .commit(
            std::slice::from_ref(&l0),
            "2024-01-01T00:00:00Z",
            &["base:latest"],
            None,
        )
        .await
        .unwrap();
    let step = s
        .commit(
            &[l0.clone(), l1.clone()],
            "2024-01-02T00:00:00Z",
            &[],
            Some(&base),
        )
        .await
        .unwrap();
    let app = s
        .commit(&[l0, l1], "2024-01-03T00:00:00Z", &["app:v1"], Some(&step))
        .await
        .unwrap();
    assert_eq!(step.parent.as_deref(), Some(base.id.as_str()));
    assert_eq!(app.parent.as_deref(), Some(step.id.as_str()));
    assert_eq!(base.parent, None);
    Chain { base, step, app }
}

fn deleted(id: &str) -> DeleteItem {
    DeleteItem::Deleted(id.to_string())
}

fn untagged(name: &str) -> DeleteItem {
    DeleteItem::Untagged(name.to_string())
}

fn child_conflict(id: &str) -> String {
    format!(
        "conflict: unable to delete {} (cannot be forced) - image has dependent child images",
        short_id(id)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_names_a_stored_parent_or_is_refused() {
    let nats = Nats::start();
    let s = start(&nats).await;
    let l0 = s.layer(b"base");
    let base = s
        .commit(std::slice::from_ref(&l0), "2024-01-01T00:00:00Z", &[], None)
        .await
        .unwrap();
    let mut ghost = base.clone();
    ghost.id = format!("sha256:{}", "9".repeat(64));
    let err = s
        .commit(
            std::slice::from_ref(&l0),
            "2024-01-02T00:00:00Z",
            &["x:1"],
            Some(&ghost),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(err.message, format!("unknown parent image ID {}", ghost.id));
    ghost.id = "busybox".into();
    let err = s
        .commit(
            std::slice::from_ref(&l0),
            "2024-01-02T00:00:00Z",
            &["x:1"],
            Some(&ghost),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(
        s.resolve("x:1").await.is_err(),
        "a refused commit tags nothing"
    );

    // Committing an image again keeps its parent unless another is named; a loop is refused.
    let child = s
        .commit(
            std::slice::from_ref(&l0),
            "2024-01-02T00:00:00Z",
            &[],
            Some(&base),
        )
        .await
        .unwrap();
    let again = s
        .commit(
            std::slice::from_ref(&l0),
            "2024-01-02T00:00:00Z",
            &["x:1"],
            None,
        )
        .await
        .unwrap();
    assert_eq!(again.id, child.id);
    assert_eq!(again.parent.as_deref(), Some(base.id.as_str()));
    let err = s
        .commit(&[l0], "2024-01-01T00:00:00Z", &[], Some(&child))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(s.resolve(&base.id).await.unwrap().parent, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intermediate_images_are_listed_only_with_all_and_never_as_dangling() {
    let nats = Nats::start();
    let s = start(&nats).await;
    let c = build_chain(&s).await;
    // A dangling image of its own (no children).
    let loose = s.layer(b"loose");
    let loose = s
        .commit(&[loose], "2024-01-04T00:00:00Z", &[], None)
        .await
        .unwrap();

    assert_eq!(
        s.list(false, &[]).await,
        [loose.id.as_str(), c.app.id.as_str(), c.base.id.as_str()]
    );
    assert_eq!(
        s.list(true, &[]).await,
        [
            loose.id.as_str(),
            c.app.id.as_str(),
            c.step.id.as_str(),
            c.base.id.as_str()
        ]
    );
    // dockerd looks for dangling images among those without children only, `-a` or not.
    assert_eq!(
        s.list(false, &[("dangling", "true")]).await,
        [loose.id.as_str()]
    );
    assert_eq!(
        s.list(true, &[("dangling", "true")]).await,
        [loose.id.as_str()]
    );
    assert_eq!(
        s.list(true, &[("dangling", "false")]).await,
        [c.app.id.as_str(), c.base.id.as_str()]
    );
    // Untagging the base leaves an untagged image with a child: an intermediate one now.
    assert_eq!(
        s.delete("base", false, false).await.unwrap(),
        [untagged("base:latest")]
    );
    assert_eq!(
        s.list(false, &[]).await,
        [loose.id.as_str(), c.app.id.as_str()]
    );
    assert_eq!(s.list(true, &[]).await.len(), 4);
    let step = s.resolve(&c.step.id).await.unwrap();
    assert!(step.repo_tags.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_with_children_cannot_be_deleted_even_forced() {
    let nats = Nats::start();
    let s = start(&nats).await;
    let c = build_chain(&s).await;
    for force in [false, true] {
        let err = s.delete(&c.step.id, force, false).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert_eq!(err.message, child_conflict(&c.step.id));
        // By ID, a tagged parent keeps its tag: the conflict comes before any untag.
        let err = s.delete(&c.base.id[7..19], force, false).await.unwrap_err();
        assert_eq!(err.message, child_conflict(&c.base.id));
        assert_eq!(
            s.resolve("base").await.unwrap().repo_tags,
            ["docker.io/library/base:latest"]
        );
    }
    // A second tag: by ID, dockerd's child conflict still comes first.
    let _: serde_json::Value = s
        .call(
            ep::IMAGE_TAG,
            &ImageTag {
                source: "base".into(),
                target: "docker.io/library/base:2".into(),
            },
        )
        .await
        .unwrap();
    let err = s.delete(&c.base.id, false, false).await.unwrap_err();
    assert_eq!(err.message, child_conflict(&c.base.id));
    // By reference the tag goes; the image stays for its child.
    assert_eq!(
        s.delete("base:2", true, false).await.unwrap(),
        [untagged("base:2")]
    );
    assert!(s.resolve(&c.base.id).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_image_deletes_its_untagged_unused_parents_in_dockerds_order() {
    let nats = Nats::start();
    let s = start(&nats).await;
    let c = build_chain(&s).await;
    // The tagged base stops the chain; the intermediate step goes with the image.
    assert_eq!(
        s.delete("app:v1", false, false).await.unwrap(),
        [untagged("app:v1"), deleted(&c.app.id), deleted(&c.step.id)]
    );
    assert_eq!(
        s.resolve(&c.step.id).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    // Now childless, the base goes by its tag, with nothing left to cascade.
    assert_eq!(
        s.delete("base", false, false).await.unwrap(),
        [untagged("base:latest"), deleted(&c.base.id)]
    );
    assert!(s.list(true, &[]).await.is_empty());
    assert!(
        s.store.blobs.digests().unwrap().is_empty(),
        "every blob is freed"
    );

    // The parent chain goes as far as nothing holds it: an untagged base goes too.
    let c = build_chain(&s).await;
    s.delete("base", false, false).await.unwrap();
    assert_eq!(
        s.delete(&c.app.id, false, false).await.unwrap(),
        [
            untagged("app:v1"),
            deleted(&c.app.id),
            deleted(&c.step.id),
            deleted(&c.base.id)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_prune_or_a_container_keeps_the_parents() {
    let nats = Nats::start();
    let s = start(&nats).await;
    let c = build_chain(&s).await;
    // A container uses the intermediate image: it stays, quietly.
    let in_use = BTreeMap::from([(c.step.id.clone(), "f".repeat(64))]);
    assert_eq!(
        s.delete_in_use("app:v1", false, false, in_use.clone())
            .await
            .unwrap(),
        [untagged("app:v1"), deleted(&c.app.id)]
    );
    // Childless and untagged, it is dangling now: listed as such.
    assert_eq!(
        s.list(false, &[("dangling", "true")]).await,
        [c.step.id.as_str()]
    );
    // `no_prune` keeps the parent even when nothing holds it.
    let app = s
        .commit(
            &[s.layer(b"base"), s.layer(b"step")],
            "2024-01-03T00:00:00Z",
            &["app:v1"],
            Some(&c.step),
        )
        .await
        .unwrap();
    assert_eq!(app.id, c.app.id);
    assert_eq!(
        s.delete("app:v1", false, true).await.unwrap(),
        [untagged("app:v1"), deleted(&c.app.id)]
    );
    assert!(s.resolve(&c.step.id).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_takes_a_dangling_image_with_its_untagged_parents() {
    let nats = Nats::start();
    let s = start(&nats).await;
    let c = build_chain(&s).await;
    // Nothing dangles yet: the intermediate image has a child.
    let report: PruneReport = s
        .call(ep::IMAGE_PRUNE, &ImagePrune::default())
        .await
        .unwrap();
    assert!(report.deleted.is_empty());
    assert_eq!(report.space_reclaimed, 0);

    // A rebuild moves the tag: the old top dangles, and its intermediate parent goes with it.
    let rebuilt = s.layer(b"rebuilt");
    let new_app = s
        .commit(&[rebuilt], "2024-02-01T00:00:00Z", &["app:v1"], None)
        .await
        .unwrap();
    let report: PruneReport = s
        .call(ep::IMAGE_PRUNE, &ImagePrune::default())
        .await
        .unwrap();
    assert_eq!(report.deleted, [deleted(&c.app.id), deleted(&c.step.id)]);
    // Freed: both configs and the step's own layer (the base's layer stays with the base).
    let step_layer = &c.step.layers[1];
    assert_eq!(
        report.space_reclaimed,
        c.app.config_size + c.step.config_size + step_layer.size
    );
    assert!(s.store.blobs.stat(&step_layer.digest).is_err());
    assert_eq!(
        s.list(true, &[]).await,
        [new_app.id.as_str(), c.base.id.as_str()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_and_children_survive_a_restart() {
    let nats = Nats::start();
    let s = start(&nats).await;
    let c = build_chain(&s).await;
    let Served {
        dir,
        service,
        _running,
        ..
    } = s;
    service.drain().await.unwrap();
    drop(_running);

    let s = serve(&nats, dir).await;
    let app = s.resolve("app:v1").await.unwrap();
    assert_eq!(app.parent.as_deref(), Some(c.step.id.as_str()));
    assert_eq!(
        s.list(false, &[]).await,
        [c.app.id.as_str(), c.base.id.as_str()]
    );
    let err = s.delete(&c.step.id, true, false).await.unwrap_err();
    assert_eq!(err.message, child_conflict(&c.step.id));
    assert_eq!(
        s.delete("app:v1", false, false).await.unwrap(),
        [untagged("app:v1"), deleted(&c.app.id), deleted(&c.step.id)]
    );
}
