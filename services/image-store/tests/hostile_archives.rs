//! Property tests of `docker load` (`archive_load.rs`), image-store's reader of manifests and
//! indexes (`manifest.json`, OCI `index.json`, nested indexes, image manifests) and of the
//! archive around them: whatever an archive holds, a load records images or is refused with a
//! client error, quickly and without a panic, and what it records is whole.
//!
//! `PROPTEST_CASES=N` runs longer (docs/security.md, "Fuzzing").

mod common;

use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use wharf_bus::digest::sha256_of;
use wharf_bus::image::ImageList;
use wharf_bus::testkit::hostile_tar::{self, Entry, Kind};
use wharf_bus::testkit::proptest_cases;
use wharf_bus::ErrorKind;
use wharf_image_store::archive_load;
use wharf_image_store::store::Events;

const QUICK: Duration = Duration::from_secs(10);

/// The pieces an archive is made of: one real layer, a config naming it, manifests and
/// indexes naming those by digest, each stored under `blobs/sha256/`.
struct Pieces {
    layer: Vec<u8>,
    config: Vec<u8>,
}

impl Pieces {
    fn new() -> Pieces {
        let layer = tar_of(&[("hello", b"hello\n")]);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256_of(&layer)]},
        }))
        .unwrap();
        Pieces { layer, config }
    }
}

fn blob_path(data: &[u8]) -> String {
    format!("blobs/sha256/{}", &sha256_of(data)[7..])
}

/// Paths an archive's JSON may name, `preferred` (what a good archive names) first, then other
/// members and hostile paths.
fn path_choice(pieces: &Pieces, preferred: &str, pick: u16) -> String {
    let options = [
        preferred.to_string(),
        blob_path(&pieces.layer),
        blob_path(&pieces.config),
        "layer.tar".to_string(),
        "config.json".to_string(),
        "link".to_string(),
        "loop".to_string(),
        "../escape".to_string(),
        "/etc/passwd".to_string(),
        "missing".to_string(),
        String::new(),
        "blobs/sha256/zz".to_string(),
        "manifest.json".to_string(),
    ];
    options[usize::from(pick) % options.len()].clone()
}

/// Digests an archive's JSON may name, `preferred` first.
fn digest_choice(pieces: &Pieces, manifests: &[Vec<u8>], preferred: String, pick: u16) -> String {
    let mut options = vec![
        preferred,
        sha256_of(&pieces.config),
        sha256_of(&pieces.layer),
        format!("sha256:{}", "0".repeat(64)),
        "sha256:../../x".to_string(),
        "md5:abc".to_string(),
        String::new(),
    ];
    options.extend(manifests.iter().map(|m| sha256_of(m)));
    options[usize::from(pick) % options.len()].clone()
}

/// An archive decoded from the numbers a property test generated (small numbers make a good
/// archive; others break it in one place or another).
fn archive(pieces: &Pieces, picks: &[u16]) -> Vec<Entry> {
    let mut it = picks.iter().copied().chain(std::iter::repeat(0));
    let mut next = move || it.next().unwrap_or(0);
    let config_path = blob_path(&pieces.config);
    let layer_path = blob_path(&pieces.layer);
    let mut entries = Vec::new();
    // Image manifests and indexes, each possibly naming an earlier one (an index of an index)
    // or something that is no manifest at all.
    let mut manifests: Vec<Vec<u8>> = Vec::new();
    for _ in 0..1 + next() % 3 {
        let latest = manifests
            .last()
            .map(|m| sha256_of(m))
            .unwrap_or_else(|| sha256_of(&pieces.config));
        let body = match next() % 6 {
            0..=2 => json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": digest_choice(pieces, &manifests, sha256_of(&pieces.config), next()),
                           "size": 1},
                "layers": (0..1 + next() % 2).map(|_| json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest_choice(pieces, &manifests, sha256_of(&pieces.layer), next()),
                    "size": 1,
                })).collect::<Vec<_>>(),
            }),
            3 | 4 => json!({
                "schemaVersion": 2,
                "manifests": (0..1 + next() % 2).map(|_| json!({
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": digest_choice(pieces, &manifests, latest.clone(), next()),
                    "size": 1,
                    "platform": {"os": "linux", "architecture": (["amd64", "arm64"][usize::from(next() % 2)])},
                })).collect::<Vec<_>>(),
            }),
            _ => json!({"manifests": 1, "config": [], "layers": "x"}),
        };
        manifests.push(serde_json::to_vec(&body).unwrap());
    }
    for m in &manifests {
        entries.push(Entry::new(blob_path(m), Kind::File(m.clone())));
    }
    if next() % 8 != 7 {
        entries.push(Entry::new(
            layer_path.clone(),
            Kind::File(pieces.layer.clone()),
        ));
    }
    if next() % 8 != 7 {
        entries.push(Entry::new(
            config_path.clone(),
            Kind::File(pieces.config.clone()),
        ));
    }
    // Legacy names, links among members (cycles included), hostile names.
    if next() % 2 == 1 {
        for _ in 0..1 + next() % 3 {
            let entry = match next() % 7 {
                0 => Entry::new(
                    "layer.tar",
                    Kind::Symlink(path_choice(pieces, &layer_path, next()).into()),
                ),
                1 => Entry::new(
                    "config.json",
                    Kind::HardLink(path_choice(pieces, &config_path, next()).into()),
                ),
                2 => Entry::new(
                    "link",
                    Kind::Symlink(path_choice(pieces, "loop", next()).into()),
                ),
                3 => Entry::new("loop", Kind::Symlink(b"link".to_vec())),
                4 => Entry::new("a/../../x", Kind::File(b"{}".to_vec())),
                5 => Entry::new("repositories", Kind::Symlink(b"/etc/passwd".to_vec())),
                _ => Entry::new("blobs/sha256/zz", Kind::File(vec![1, 2, 3])),
            };
            entries.push(entry);
        }
    }
    // The top: manifest.json (docker save), index.json (OCI layout), both or neither.
    let top = next() % 6;
    if matches!(top, 0 | 1 | 4) {
        let body = match next() % 6 {
            4 => json!("not a list"),
            5 => json!([{"Config": 5}]),
            _ => Value::from(
                (0..1 + next() % 2)
                    .map(|_| {
                        json!({
                            "Config": path_choice(pieces, &config_path, next()),
                            "RepoTags": match next() % 5 {
                                0 | 1 => json!(["app:latest"]),
                                2 => json!(null),
                                3 => json!(["app:1", "Bad Tag", "app@sha256:1"]),
                                _ => json!([format!("a{}", "/b".repeat(200))]),
                            },
                            "Layers": (0..1 + next() % 2)
                                .map(|_| path_choice(pieces, &layer_path, next()))
                                .collect::<Vec<_>>(),
                        })
                    })
                    .collect::<Vec<_>>(),
            ),
        };
        entries.push(Entry::new(
            "manifest.json",
            Kind::File(serde_json::to_vec(&body).unwrap()),
        ));
    }
    if (2..=4).contains(&top) {
        let first = sha256_of(&manifests[0]);
        let body = json!({
            "schemaVersion": 2,
            "manifests": (0..1 + next() % 2).map(|_| json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest_choice(pieces, &manifests, first.clone(), next()),
                "size": 1,
                "annotations": {"io.containerd.image.name": (["app:oci", "Bad:", "x@sha256:zz", "a:b:c"][usize::from(next() % 4)])},
            })).collect::<Vec<_>>(),
        });
        entries.push(Entry::new(
            "index.json",
            Kind::File(serde_json::to_vec(&body).unwrap()),
        ));
    }
    if next() % 8 == 1 {
        entries.push(Entry::new(
            "index.json",
            Kind::Symlink(b"manifest.json".to_vec()),
        ));
    }
    entries
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: proptest_cases(128),
        failure_persistence: None,
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    })]

    /// Any archive is loaded or refused as the client's fault (never an internal error or a
    /// panic), within a bounded time; every image a load records has its config and layers.
    #[test]
    fn any_archive_loads_whole_images_or_is_refused(
        picks in prop::collection::vec(any::<u16>(), 0..64),
        gzip_it in any::<bool>(),
    ) {
        let pieces = Pieces::new();
        let entries = archive(&pieces, &picks);
        let tar = hostile_tar::build(&entries, std::path::Path::new("/nonexistent"));
        let body = if gzip_it { gzip(&tar) } else { tar };
        let (_dir, store) = open();
        let start = Instant::now();
        let result = archive_load::load(&store, &body[..], &mut Events::new());
        prop_assert!(start.elapsed() < QUICK, "took {:?}", start.elapsed());
        if let Err(e) = &result {
            prop_assert!(
                matches!(e.kind, ErrorKind::Invalid | ErrorKind::NotFound),
                "{:?}: {} for {:#?}",
                e.kind,
                e.message,
                entries.iter().map(|e| (String::from_utf8_lossy(&e.name).into_owned(), &e.kind)).collect::<Vec<_>>()
            );
        }
        let images = store
            .list(&ImageList { all: true, ..Default::default() })
            .unwrap();
        for image in images {
            prop_assert!(store.blobs.read_small(&image.id, 1 << 20).is_ok());
            for layer in &image.layers {
                prop_assert!(store.blobs.read_small(&layer.digest, 1 << 20).is_ok());
            }
        }
    }
}
