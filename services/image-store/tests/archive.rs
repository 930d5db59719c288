//! `docker save` / `docker load` / `docker import`: round trips, dockerd 20.10's legacy layout,
//! hostile archives.

mod common;

use common::*;
use serde_json::json;
use wharf_bus::digest;
use wharf_bus::image::ImageImport;
use wharf_bus::ErrorKind;
use wharf_image_store::store::{Events, ImageStore};
use wharf_image_store::{archive_export, archive_load, import};

fn save(store: &ImageStore, names: &[&str]) -> Vec<u8> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let plan = archive_export::plan(store, &names).unwrap();
    let mut out = Vec::new();
    archive_export::write(store, &plan, &mut out, &mut Events::new()).unwrap();
    out
}

fn members(archive: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(archive);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn read_member(archive: &[u8], name: &str) -> Vec<u8> {
    let mut a = tar::Archive::new(archive);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            return v;
        }
    }
    panic!("{name} not in archive");
}

struct ArchiveBuilder(tar::Builder<Vec<u8>>);

impl ArchiveBuilder {
    fn new() -> Self {
        ArchiveBuilder(tar::Builder::new(Vec::new()))
    }
    fn file(mut self, path: &str, data: &[u8]) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Bypass the builder's path checks: hostile paths are the point of some tests.
        let name = h.as_gnu_mut().unwrap();
        name.name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_link_name(target).unwrap();
        h.set_path(path).unwrap();
        h.set_cksum();
        self.0.append(&h, std::io::empty()).unwrap();
        self
    }
    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

#[test]
fn save_writes_an_oci_layout_with_manifest_json_and_uncompressed_layers() {
    let (_d, s) = open();
    let rec = image(
        &s,
        b"hello",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/app:1"],
        &mut Events::new(),
    );
    let tar = save(&s, &["app:1"]);
    let names = members(&tar);
    for m in ["oci-layout", "index.json", "manifest.json", "repositories"] {
        assert!(names.contains(&m.to_string()), "{m} in {names:?}");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&read_member(&tar, "manifest.json")).unwrap();
    let hex = &rec.id[7..];
    assert_eq!(manifest[0]["Config"], json!(format!("blobs/sha256/{hex}")));
    assert_eq!(manifest[0]["RepoTags"], json!(["app:1"]));
    let layer_path = manifest[0]["Layers"][0].as_str().unwrap();
    let layer = read_member(&tar, layer_path);
    // Uncompressed: its digest is the diff ID.
    assert_eq!(digest::sha256_of(&layer), rec.layers[0].diff_id);
    let index: serde_json::Value =
        serde_json::from_slice(&read_member(&tar, "index.json")).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        json!("docker.io/library/app:1")
    );
}

#[test]
fn save_then_load_into_another_store_preserves_ids_and_tags() {
    let (_d, s) = open();
    let mut ev = Events::new();
    let a = image(
        &s,
        b"a",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/app:1", "docker.io/library/app:2"],
        &mut ev,
    );
    let b = image(&s, b"b", "2024-01-02T00:00:00Z", &[], &mut ev);
    // A repository name alone saves all its tags; an ID saves the image untagged.
    let tar = save(&s, &["app", &b.id]);
    let (_d2, other) = open();
    let mut ev = Events::new();
    let report = archive_load::load(&other, &gzip(&tar)[..], &mut ev).unwrap();
    assert_eq!(
        report.lines,
        vec![
            "Loaded image: app:1".to_string(),
            "Loaded image: app:2".to_string(),
            format!("Loaded image ID: {}", b.id),
        ]
    );
    let loaded = other.resolve("app:1").unwrap();
    assert_eq!(loaded.id, a.id);
    assert_eq!(loaded.size, a.size);
    assert_eq!(loaded.layers[0].diff_id, a.layers[0].diff_id);
    assert_eq!(other.resolve(&b.id).unwrap().id, b.id);
    assert_eq!(ev.iter().filter(|e| e.action == "load").count(), 2);
    // Nothing but the images' own blobs stays behind (index and manifests were dropped).
    let blobs = std::fs::read_dir(_d2.path().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 4);
}

#[test]
fn loading_over_an_existing_tag_renames_the_old_image_like_dockerd() {
    let (_d, s) = open();
    let a = image(
        &s,
        b"a",
        "2024-01-01T00:00:00Z",
        &["docker.io/library/app:latest"],
        &mut Events::new(),
    );
    let tar = save(&s, &["app"]);
    let (_d2, other) = open();
    let old = image(
        &other,
        b"old",
        "2020-01-01T00:00:00Z",
        &["docker.io/library/app:latest"],
        &mut Events::new(),
    );
    let report = archive_load::load(&other, &tar[..], &mut Events::new()).unwrap();
    assert_eq!(
        report.lines,
        vec![
            format!("The image app:latest already exists, renaming the old one with ID {} to empty string", old.id),
            "Loaded image: app:latest".to_string(),
        ]
    );
    assert_eq!(other.resolve("app").unwrap().id, a.id);
    assert!(other.get(&old.id).unwrap().repo_tags.is_empty());
}

/// dockerd 20.10's `docker save`: `<v1 id>/layer.tar`, `<v1 id>/json`, `<config hex>.json`,
/// `manifest.json`, `repositories`, with a repeated layer stored as a symlink.
fn legacy_archive(layer_tar: &[u8], config: &[u8], tag: &str) -> Vec<u8> {
    let config_hex = &digest::sha256_of(config)[7..];
    let v1a = "a".repeat(64);
    let v1b = "b".repeat(64);
    let manifest = json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [tag],
        "Layers": [format!("{v1a}/layer.tar"), format!("{v1b}/layer.tar")],
    }]);
    ArchiveBuilder::new()
        .file(&format!("{v1a}/VERSION"), b"1.0")
        .file(&format!("{v1a}/json"), b"{}")
        .file(&format!("{v1a}/layer.tar"), layer_tar)
        .file(&format!("{v1b}/VERSION"), b"1.0")
        .file(&format!("{v1b}/json"), b"{}")
        .symlink(&format!("{v1b}/layer.tar"), &format!("../{v1a}/layer.tar"))
        .file(&format!("{config_hex}.json"), config)
        .file("manifest.json", &serde_json::to_vec(&manifest).unwrap())
        .file("repositories", b"{}")
        .finish()
}

#[test]
fn load_accepts_dockerd_20_10_legacy_archives_with_symlinked_layers() {
    let layer = tar_of(&[("bin/tool", &[5u8; 3000])]);
    let diff = digest::sha256_of(&layer);
    let config = config_json(
        &[diff.clone(), diff.clone()],
        "2023-01-01T00:00:00Z",
        json!(null),
    );
    let archive = legacy_archive(&layer, &config, "old:tag");
    let (_d, s) = open();
    let report = archive_load::load(&s, &archive[..], &mut Events::new()).unwrap();
    assert_eq!(report.lines, vec!["Loaded image: old:tag"]);
    let rec = s.resolve("old:tag").unwrap();
    assert_eq!(rec.id, digest::sha256_of(&config));
    assert_eq!(rec.layers.len(), 2);
    assert_eq!(
        rec.layers[0].digest, diff,
        "uncompressed layers are stored as they came"
    );
    assert_eq!(rec.size, 6000);
}

#[test]
fn load_accepts_a_plain_oci_layout_with_gzip_layers() {
    let layer = gzip(&tar_of(&[("f", b"oci")]));
    let layer_d = digest::sha256_of(&layer);
    let diff = digest::sha256_of(&tar_of(&[("f", b"oci")]));
    let config = config_json(&[diff], "2023-01-01T00:00:00Z", json!(null));
    let config_d = digest::sha256_of(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_d, "size": layer.len()}],
    }))
    .unwrap();
    let manifest_d = digest::sha256_of(&manifest);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest.len(),
        "annotations": {"io.containerd.image.name": "docker.io/library/oci:1"}}]});
    let archive = ArchiveBuilder::new()
        .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .file(&format!("blobs/sha256/{}", &layer_d[7..]), &layer)
        .file(&format!("blobs/sha256/{}", &config_d[7..]), &config)
        .file(&format!("blobs/sha256/{}", &manifest_d[7..]), &manifest)
        .file("index.json", &serde_json::to_vec(&index).unwrap())
        .finish();
    let (_d, s) = open();
    let report = archive_load::load(&s, &archive[..], &mut Events::new()).unwrap();
    assert_eq!(report.lines, vec!["Loaded image: oci:1"]);
    let rec = s.resolve("oci:1").unwrap();
    assert_eq!(rec.id, config_d);
    assert_eq!(rec.layers[0].digest, layer_d);
    assert_eq!(rec.manifest.unwrap().digest, manifest_d);
}

#[test]
fn load_rejects_hostile_archives() {
    let (_d, s) = open();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dot-dot path",
            ArchiveBuilder::new().file("../evil", b"x").finish(),
        ),
        (
            "absolute path",
            ArchiveBuilder::new().file("/etc/evil", b"x").finish(),
        ),
        (
            "symlink escape",
            ArchiveBuilder::new()
                .symlink("manifest.json", "../../etc/passwd")
                .finish(),
        ),
        (
            "blob with the wrong digest",
            ArchiveBuilder::new()
                .file(&format!("blobs/sha256/{}", "0".repeat(64)), b"not that")
                .finish(),
        ),
        (
            "oversized manifest.json",
            ArchiveBuilder::new()
                .file("manifest.json", &vec![b' '; 9 << 20])
                .finish(),
        ),
        (
            "no manifest",
            ArchiveBuilder::new()
                .file("x/layer.tar", &tar_of(&[("f", b"1")]))
                .finish(),
        ),
        ("not a tar", b"garbage garbage garbage".repeat(100)),
    ];
    for (what, archive) in cases {
        let err = archive_load::load(&s, &archive[..], &mut Events::new()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid, "{what}: {}", err.message);
    }
    // A config whose layers do not match is refused too, and leaves no blobs behind.
    let layer = tar_of(&[("f", b"1")]);
    let config = config_json(
        &[format!("sha256:{}", "1".repeat(64))],
        "2023-01-01T00:00:00Z",
        json!(null),
    );
    let err = archive_load::load(
        &s,
        &legacy_archive(&layer, &config, "x:1")[..],
        &mut Events::new(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(
        std::fs::read_dir(_d.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert!(s.list(&Default::default()).unwrap().is_empty());
}

#[test]
fn import_makes_a_one_layer_image_with_changes_applied() {
    let (_d, s) = open();
    let rootfs = gzip(&tar_of(&[
        ("bin/sh", &[1u8; 500]),
        ("etc/hostname", b"x\n"),
    ]));
    let req = ImageImport {
        tag: Some("docker.io/library/imported:v1".into()),
        changes: vec![
            r#"CMD ["sh"]"#.into(),
            "ENV PATH=/bin".into(),
            "EXPOSE 8080".into(),
        ],
        message: None,
        ..Default::default()
    };
    let mut ev = Events::new();
    let rec = import::import(&s, &rootfs[..], &req, &mut ev).unwrap();
    assert_eq!(rec.repo_tags, vec!["docker.io/library/imported:v1"]);
    assert_eq!(rec.size, 502);
    let c = &rec.config;
    assert_eq!(c["config"]["Cmd"], json!(["sh"]));
    assert_eq!(c["config"]["Env"], json!(["PATH=/bin"]));
    assert_eq!(c["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
    assert_eq!(c["os"], json!("linux"));
    assert_eq!(c["architecture"], json!("amd64"));
    assert_eq!(c["history"][0]["comment"], json!("Imported from -"));
    assert_eq!(c["rootfs"]["diff_ids"][0], json!(rec.layers[0].diff_id));
    assert!(c["docker_version"].is_string());
    let actions: Vec<&str> = ev.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["tag", "import"]);
    assert_eq!(ev[1].attributes["name"], rec.id);

    let msg = ImageImport {
        message: Some("from a test".into()),
        ..Default::default()
    };
    let rec = import::import(&s, &tar_of(&[("a", b"1")])[..], &msg, &mut Events::new()).unwrap();
    assert_eq!(rec.config["comment"], json!("from a test"));
    assert!(rec.repo_tags.is_empty());

    let bad = ImageImport {
        changes: vec!["RUN true".into()],
        ..Default::default()
    };
    let err =
        import::import(&s, &tar_of(&[("a", b"1")])[..], &bad, &mut Events::new()).unwrap_err();
    assert_eq!(err.message, "run is not a valid change command");
    let err = import::import(
        &s,
        &b"not a tar at all"[..],
        &Default::default(),
        &mut Events::new(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
}

#[test]
fn load_refuses_archives_whose_metadata_together_exceeds_the_memory_budget() {
    // Each member is under the per-file cap; together they are more than a load keeps in RAM.
    let member = vec![b' '; 7 << 20];
    let mut b = ArchiveBuilder::new();
    for i in 0..6 {
        b = b.file(&format!("{i}.json"), &member);
    }
    let (_d, s) = open();
    let err = archive_load::load(&s, &b.finish()[..], &mut Events::new()).unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::Invalid, "invalid archive: metadata too large")
    );
}
