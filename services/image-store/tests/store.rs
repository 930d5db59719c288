//! The image store's rules, checked against dockerd's behaviour: commit, resolve, list, tag,
//! delete with garbage collection, and prune.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::json;
use wharf_bus::image::{
    DeleteItem, ImageCommit, ImageDelete, ImageList, ImagePrune, ImageTag, LayerRef,
};
use wharf_bus::ErrorKind;
use wharf_image_store::store::{Events, ImageStore};

fn del(name: &str, force: bool) -> ImageDelete {
    ImageDelete {
        name: name.into(),
        force,
        no_prune: false,
        in_use: BTreeMap::new(),
    }
}

fn list(store: &ImageStore, filters: &[(&str, &str)]) -> Result<Vec<String>, wharf_bus::BusError> {
    let mut f: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in filters {
        f.entry(k.to_string()).or_default().push(v.to_string());
    }
    Ok(store
        .list(&ImageList {
            all: false,
            filters: f,
        })?
        .into_iter()
        .map(|r| r.id)
        .collect())
}

#[test]
fn commit_records_image_with_dockerds_size_and_tags_it() {
    let (_d, s) = open();
    let mut ev = Events::new();
    let rec = image(
        &s,
        &[1u8; 1234],
        "2024-01-01T00:00:00Z",
        &["docker.io/library/a:1"],
        &mut ev,
    );
    assert_eq!(rec.size, 1234);
    assert_eq!(rec.repo_tags, vec!["docker.io/library/a:1"]);
    assert!(rec.id.starts_with("sha256:"));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].action, "tag");
    assert_eq!(ev[0].id, rec.id);
    assert_eq!(ev[0].attributes["name"], "a:1");
}

#[test]
fn commit_rejects_layers_that_do_not_match_the_config() {
    let (_d, s) = open();
    let (layer, _) = put_layer(&s, &tar_of(&[("x", b"1")]));
    let config = config_json(
        &[format!("sha256:{}", "0".repeat(64))],
        "2024-01-01T00:00:00Z",
        json!(null),
    );
    let c = s.blobs.put(&config, None).unwrap().blob.digest;
    let err = s
        .commit(
            &ImageCommit {
                config: c.clone(),
                layers: vec![LayerRef {
                    digest: layer,
                    media_type: GZ.into(),
                }],
                manifest: None,
                tags: vec!["docker.io/library/bad:latest".into()],
                repo_digests: vec![],
                parent: None,
            },
            &mut Events::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(
        err.message,
        "layers from manifest don't match image configuration"
    );
    assert_eq!(s.resolve(&c).unwrap_err().kind, ErrorKind::NotFound);
}

#[test]
fn commit_of_missing_blobs_is_not_found() {
    let (_d, s) = open();
    let err = s
        .commit(
            &ImageCommit {
                config: format!("sha256:{}", "1".repeat(64)),
                layers: vec![],
                manifest: None,
                tags: vec![],
                repo_digests: vec![],
                parent: None,
            },
            &mut Events::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[test]
fn resolve_takes_ids_then_references_then_unique_prefixes() {
    let (_d, s) = open();
    let mut ev = Events::new();
    let a = image(
        &s,
        b"a",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/busybox:latest"],
        &mut ev,
    );
    let b = image(
        &s,
        b"b",
        "2024-01-02T00:00:00Z",
        &["docker.io/user/app:v1"],
        &mut ev,
    );
    assert_eq!(s.resolve(&a.id).unwrap().id, a.id);
    assert_eq!(
        s.resolve(a.id.strip_prefix("sha256:").unwrap()).unwrap().id,
        a.id
    );
    assert_eq!(s.resolve("busybox").unwrap().id, a.id);
    assert_eq!(
        s.resolve("docker.io/library/busybox:latest").unwrap().id,
        a.id
    );
    assert_eq!(s.resolve("user/app:v1").unwrap().id, b.id);
    assert_eq!(s.resolve(&a.id[7..19]).unwrap().id, a.id);
    // A digest reference matches the repo digests.
    s.commit(
        &ImageCommit {
            config: a.id.clone(),
            layers: a.layer_refs(),
            manifest: None,
            tags: vec![],
            repo_digests: vec![format!(
                "docker.io/library/busybox@sha256:{}",
                "e".repeat(64)
            )],
            parent: None,
        },
        &mut ev,
    )
    .unwrap();
    assert_eq!(
        s.resolve(&format!("busybox@sha256:{}", "e".repeat(64)))
            .unwrap()
            .id,
        a.id
    );
    let err = s.resolve("nothere").unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::NotFound, "No such image: nothere:latest")
    );
    assert_eq!(
        s.resolve("user/app").unwrap_err().message,
        "No such image: user/app:latest"
    );
}

#[test]
fn an_ambiguous_id_prefix_resolves_to_nothing() {
    let (_d, s) = open();
    let mut ev = Events::new();
    // Make images until two IDs share a first hex digit.
    let mut seen: BTreeMap<char, String> = BTreeMap::new();
    let mut i = 0u32;
    let shared = loop {
        let r = image(&s, &i.to_be_bytes(), "2024-01-01T00:00:00Z", &[], &mut ev);
        let c = r.id.chars().nth(7).unwrap();
        if seen.insert(c, r.id.clone()).is_some() {
            break c;
        }
        i += 1;
    };
    let err = s.resolve(&shared.to_string()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[test]
fn a_moved_tag_leaves_the_old_image_dangling() {
    let (_d, s) = open();
    let mut ev = Events::new();
    let old = image(
        &s,
        b"old",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/app:latest"],
        &mut ev,
    );
    let new = image(
        &s,
        b"new",
        "2024-01-02T00:00:00Z",
        &["docker.io/library/app:latest"],
        &mut ev,
    );
    assert!(s.get(&old.id).unwrap().repo_tags.is_empty());
    assert_eq!(
        list(&s, &[("dangling", "true")]).unwrap(),
        vec![old.id.clone()]
    );
    assert_eq!(
        list(&s, &[("dangling", "false")]).unwrap(),
        vec![new.id.clone()]
    );
    assert_eq!(list(&s, &[]).unwrap(), vec![new.id, old.id]);
}

#[test]
fn list_filters_like_dockerd() {
    let (_d, s) = open();
    let mut ev = Events::new();
    let a = image_with_labels(
        &s,
        b"a",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/busybox:1"],
        json!({"team": "x"}),
        &mut ev,
    );
    let b = image_with_labels(
        &s,
        b"b",
        "2024-01-02T00:00:00Z",
        &["docker.io/user/app:v1", "docker.io/library/busybox:2"],
        json!({"team": "y", "tier": "web"}),
        &mut ev,
    );
    let c = image(
        &s,
        b"c",
        "2024-01-03T00:00:00Z",
        &["localhost:5000/app:dev"],
        &mut ev,
    );
    assert_eq!(
        list(&s, &[("reference", "busybox")]).unwrap(),
        vec![b.id.clone(), a.id.clone()]
    );
    let ids = [("a", &a.id), ("b", &b.id), ("c", &c.id)];
    let got = list(&s, &[("reference", "busybox:1")]).unwrap();
    assert_eq!(got, vec![a.id.clone()], "{ids:?}");
    // `*` stops at `/`: `*/app*` matches `user/app:v1` and `localhost:5000/app:dev`.
    assert_eq!(
        list(&s, &[("reference", "*/app*")]).unwrap(),
        vec![c.id.clone(), b.id.clone()]
    );
    assert_eq!(
        list(&s, &[("reference", "app*")]).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        list(&s, &[("reference", "localhost:5000/*")]).unwrap(),
        vec![c.id.clone()]
    );
    // Only the matching tags are listed.
    let only = s
        .list(&ImageList {
            all: false,
            filters: [("reference".to_string(), vec!["busybox".to_string()])].into(),
        })
        .unwrap();
    assert_eq!(only[0].repo_tags, vec!["docker.io/library/busybox:2"]);
    assert_eq!(
        list(&s, &[("label", "team")]).unwrap(),
        vec![b.id.clone(), a.id.clone()]
    );
    assert_eq!(
        list(&s, &[("label", "team=y")]).unwrap(),
        vec![b.id.clone()]
    );
    assert_eq!(
        list(&s, &[("label", "team"), ("label", "tier=web")]).unwrap(),
        vec![b.id.clone()]
    );
    assert_eq!(
        list(&s, &[("before", "localhost:5000/app:dev")]).unwrap(),
        vec![b.id.clone(), a.id.clone()]
    );
    assert_eq!(
        list(&s, &[("since", "busybox:1")]).unwrap(),
        vec![c.id.clone(), b.id.clone()]
    );
    assert_eq!(
        list(&s, &[("until", "2024-01-02T12:00:00Z")]).unwrap(),
        vec![b.id.clone(), a.id.clone()]
    );
    assert_eq!(
        list(&s, &[("color", "red")]).unwrap_err().message,
        "invalid filter 'color'"
    );
    assert_eq!(
        list(&s, &[("before", "nope")]).unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[test]
fn tag_points_a_new_reference_and_logs_a_tag_event() {
    let (_d, s) = open();
    let mut ev = Events::new();
    let a = image(
        &s,
        b"a",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/a:latest"],
        &mut ev,
    );
    let mut ev = Events::new();
    s.tag(
        &ImageTag {
            source: "a".into(),
            target: "docker.io/me/a:v2".into(),
        },
        &mut ev,
    )
    .unwrap();
    assert_eq!(s.resolve("me/a:v2").unwrap().id, a.id);
    assert_eq!(ev[0].action, "tag");
    assert_eq!(ev[0].attributes["name"], "me/a:v2");
    assert!(s.get(&a.id).unwrap().last_tag_time.is_some());
    let err = s
        .tag(
            &ImageTag {
                source: "a".into(),
                target: format!("a@sha256:{}", "1".repeat(64)),
            },
            &mut ev,
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
}

#[test]
fn delete_by_reference_untags_and_deletes_the_last_reference_with_its_blobs() {
    let (_d, s) = open();
    let mut ev = Events::new();
    let a = image(
        &s,
        b"a",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/a:1", "docker.io/library/a:2"],
        &mut ev,
    );
    let mut ev = Events::new();
    assert_eq!(
        s.delete(&del("a:1", false), &mut ev).unwrap(),
        vec![DeleteItem::Untagged("a:1".into())]
    );
    assert!(s.blobs.exists(&a.id));
    let items = s.delete(&del("a:2", false), &mut ev).unwrap();
    assert_eq!(
        items,
        vec![
            DeleteItem::Untagged("a:2".into()),
            DeleteItem::Deleted(a.id.clone())
        ]
    );
    let actions: Vec<&str> = ev.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["untag", "untag", "delete"]);
    assert_eq!(ev[2].attributes["name"], a.id);
    assert!(!s.blobs.exists(&a.id));
    assert!(!s.blobs.exists(&a.layers[0].digest));
    assert_eq!(s.resolve(&a.id).unwrap_err().kind, ErrorKind::NotFound);
}

#[test]
fn delete_by_id_of_a_multiply_tagged_image_needs_force() {
    let (_d, s) = open();
    let mut ev = Events::new();
    let a = image(
        &s,
        b"a",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/a:1", "docker.io/library/b:1"],
        &mut ev,
    );
    let short = &a.id[7..19];
    let err = s.delete(&del(short, false), &mut ev).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert_eq!(
        err.message,
        format!("conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories")
    );
    let items = s.delete(&del(short, true), &mut ev).unwrap();
    assert_eq!(
        items,
        vec![
            DeleteItem::Untagged("a:1".into()),
            DeleteItem::Untagged("b:1".into()),
            DeleteItem::Deleted(a.id.clone())
        ]
    );
}

#[test]
fn delete_refuses_images_containers_use_with_dockerds_texts() {
    let (_d, s) = open();
    let mut ev = Events::new();
    let a = image(
        &s,
        b"a",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/a:1"],
        &mut ev,
    );
    let mut req = del("a:1", false);
    req.in_use
        .insert(a.id.clone(), "c0ffee0123456789abcdef".into());
    let err = s.delete(&req, &mut ev).unwrap_err();
    assert_eq!(
        err.message,
        format!("conflict: unable to remove repository reference \"a:1\" (must force) - container c0ffee012345 is using its referenced image {}", &a.id[7..19])
    );
    req.name = a.id.clone();
    let err = s.delete(&req, &mut ev).unwrap_err();
    assert_eq!(
        err.message,
        format!("conflict: unable to delete {} (must be forced) - image is being used by stopped container c0ffee012345", &a.id[7..19])
    );
    // As with a stopped container in dockerd, force removes the image anyway.
    req.name = "a:1".into();
    req.force = true;
    assert_eq!(
        s.delete(&req, &mut ev).unwrap(),
        vec![
            DeleteItem::Untagged("a:1".into()),
            DeleteItem::Deleted(a.id.clone())
        ]
    );
}

#[test]
fn deleting_an_image_keeps_blobs_other_images_still_use() {
    let (_d, s) = open();
    let mut ev = Events::new();
    // Two images sharing one layer, with different configs.
    let (layer, diff) = put_layer(&s, &tar_of(&[("f", b"shared")]));
    let mut ids = vec![];
    for (i, tag) in ["docker.io/library/x:1", "docker.io/library/y:1"]
        .iter()
        .enumerate()
    {
        let cfg = config_json(
            std::slice::from_ref(&diff),
            &format!("2024-01-0{}T00:00:00Z", i + 1),
            json!(null),
        );
        let c = s.blobs.put(&cfg, None).unwrap().blob.digest;
        let r = s
            .commit(
                &ImageCommit {
                    config: c,
                    layers: vec![LayerRef {
                        digest: layer.clone(),
                        media_type: GZ.into(),
                    }],
                    manifest: None,
                    tags: vec![tag.to_string()],
                    repo_digests: vec![],
                    parent: None,
                },
                &mut ev,
            )
            .unwrap();
        ids.push(r.id);
    }
    s.delete(&del("x:1", false), &mut ev).unwrap();
    assert!(!s.blobs.exists(&ids[0]));
    assert!(s.blobs.exists(&layer), "the shared layer stays");
    s.delete(&del("y:1", false), &mut ev).unwrap();
    assert!(!s.blobs.exists(&layer));
}

#[test]
fn prune_removes_dangling_images_or_all_unused_ones() {
    let (_d, s) = open();
    let mut ev = Events::new();
    let old = image(
        &s,
        b"old",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/app:latest"],
        &mut ev,
    );
    let new = image(
        &s,
        b"new",
        "2024-01-02T00:00:00Z",
        &["docker.io/library/app:latest"],
        &mut ev,
    );
    let used = image(
        &s,
        b"used",
        "2024-01-03T00:00:00Z",
        &["docker.io/library/used:1"],
        &mut ev,
    );
    let blob_size =
        s.blobs.stat(&old.id).unwrap().size + s.blobs.stat(&old.layers[0].digest).unwrap().size;
    let mut ev = Events::new();
    let report = s.prune(&ImagePrune::default(), &mut ev).unwrap();
    assert_eq!(report.deleted, vec![DeleteItem::Deleted(old.id.clone())]);
    assert_eq!(report.space_reclaimed, blob_size);
    assert_eq!(ev.last().unwrap().action, "prune");
    assert_eq!(
        ev.last().unwrap().attributes["reclaimed"],
        blob_size.to_string()
    );

    let mut all = ImagePrune::default();
    all.filters.insert("dangling".into(), vec!["false".into()]);
    all.in_use.insert(used.id.clone(), "abc".into());
    let report = s.prune(&all, &mut ev).unwrap();
    assert_eq!(
        report.deleted,
        vec![
            DeleteItem::Untagged("app:latest".into()),
            DeleteItem::Deleted(new.id.clone())
        ]
    );
    assert!(s.get(&used.id).is_some());

    let mut bad = ImagePrune::default();
    bad.filters.insert("reference".into(), vec!["x".into()]);
    assert_eq!(
        s.prune(&bad, &mut ev).unwrap_err().message,
        "invalid filter 'reference'"
    );
}

#[test]
fn prune_honours_until_and_label_filters() {
    let (_d, s) = open();
    let mut ev = Events::new();
    let a = image_with_labels(
        &s,
        b"a",
        "2020-01-01T00:00:00Z",
        &[],
        json!({"keep": "1"}),
        &mut ev,
    );
    let b = image(&s, b"b", "2020-01-01T00:00:00Z", &[], &mut ev);
    let c = image(&s, b"c", "2099-01-01T00:00:00Z", &[], &mut ev);
    let mut p = ImagePrune::default();
    p.filters.insert("until".into(), vec!["2021-01-01".into()]);
    p.filters.insert("label!".into(), vec!["keep".into()]);
    let report = s.prune(&p, &mut ev).unwrap();
    assert_eq!(report.deleted, vec![DeleteItem::Deleted(b.id.clone())]);
    assert!(s.get(&a.id).is_some() && s.get(&c.id).is_some());
}

#[test]
fn metadata_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let s = ImageStore::open(dir.path()).unwrap();
        image(
            &s,
            b"a",
            "2024-01-01T00:00:00Z",
            &["docker.io/library/keep:me"],
            &mut Events::new(),
        )
        .id
    };
    let s = ImageStore::open(dir.path()).unwrap();
    let rec = s.resolve("keep:me").unwrap();
    assert_eq!(rec.id, id);
    assert_eq!(rec.size, 1);
    assert_eq!(rec.layers.len(), 1);
}

#[test]
fn a_commit_racing_prune_always_ends_tagged_and_intact() {
    // Prune runs in a loop while images are committed with a tag: no commit may see its new
    // (briefly untagged) image pruned, nor leave a tag pointing at a removed image. (The
    // default grace period keeps the blobs of each commit-to-be.)
    let dir = tempfile::tempdir().unwrap();
    let s = ImageStore::open(dir.path()).unwrap();
    let s = std::sync::Arc::new(s);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.prune(&ImagePrune::default(), &mut Events::new()).unwrap();
            }
        })
    };
    for i in 0..60 {
        let tag = format!("docker.io/library/race:{i}");
        let (layer, diff_id) = put_layer(&s, &tar_of(&[("file", format!("{i}").as_bytes())]));
        let config = config_json(&[diff_id], "2024-01-01T00:00:00Z", json!(null));
        let c = s.blobs.put(&config, None).unwrap().blob.digest;
        let rec = s
            .commit(
                &ImageCommit {
                    config: c,
                    layers: vec![LayerRef {
                        digest: layer.clone(),
                        media_type: GZ.into(),
                    }],
                    manifest: None,
                    tags: vec![tag.clone()],
                    repo_digests: vec![],
                    parent: None,
                },
                &mut Events::new(),
            )
            .unwrap_or_else(|e| panic!("commit {i}: {}", e.message));
        assert_eq!(rec.repo_tags, vec![tag.clone()]);
        assert_eq!(s.resolve(&tag).unwrap().id, rec.id);
        assert!(s.blobs.exists(&layer), "commit {i} lost its layer");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    pruner.join().unwrap();
}

#[test]
fn garbage_collection_keeps_blobs_younger_than_the_grace_period() {
    // A pull may have found a layer "Already exists" (or just ingested it) and not committed
    // yet: deleting the only image using it must not take the blob away.
    let dir = tempfile::tempdir().unwrap();
    let s = ImageStore::open(dir.path()).unwrap();
    let mut ev = Events::new();
    let a = image(
        &s,
        b"a",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/a:1"],
        &mut ev,
    );
    let items = s.delete(&del("a:1", false), &mut ev).unwrap();
    assert!(items.contains(&DeleteItem::Deleted(a.id.clone())));
    assert_eq!(s.resolve(&a.id).unwrap_err().kind, ErrorKind::NotFound);
    assert!(s.blobs.exists(&a.layers[0].digest), "a young layer stays");
    assert!(s.blobs.exists(&a.id), "a young config stays");
}

#[test]
fn reference_filters_with_pathological_patterns_answer_fast_or_are_refused() {
    let (_d, s) = open();
    let mut ev = Events::new();
    let name = format!("docker.io/library/{}:1", "a".repeat(100));
    image(&s, b"a", "2024-01-01T00:00:00Z", &[&name], &mut ev);
    let start = std::time::Instant::now();
    let pattern = format!("{}b", "a*".repeat(60));
    assert!(list(&s, &[("reference", &pattern)]).unwrap().is_empty());
    assert!(
        start.elapsed() < std::time::Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    let long = "a".repeat(513);
    let err = list(&s, &[("reference", &long)]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
}

#[test]
fn a_sweep_takes_unreferenced_blobs_and_keeps_the_images() {
    // A build context (a blob no image names) goes at the next sweep; images keep theirs.
    let (_d, s) = open();
    let mut ev = Events::new();
    let a = image(
        &s,
        b"a",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/a:1"],
        &mut ev,
    );
    let context = tar_of(&[("Dockerfile", b"FROM scratch\n")]);
    let (ctx_digest, _) = put_layer(&s, &context);
    assert!(s.blobs.exists(&ctx_digest));
    let freed = s.sweep().unwrap();
    assert!(freed > 0, "the context's bytes are freed");
    assert!(
        !s.blobs.exists(&ctx_digest),
        "the unreferenced blob is gone"
    );
    assert!(s.blobs.exists(&a.layers[0].digest) && s.blobs.exists(&a.id));
    assert_eq!(s.resolve("a:1").unwrap().id, a.id);
    assert_eq!(s.sweep().unwrap(), 0, "nothing left to sweep");
}
