//! Test images made by the tests: OCI image layouts built by hand (layers from busybox-static's
//! /bin/busybox, with hardlinks, symlinks and a whiteout; a config with history rows, Cmd, Env and
//! Labels) and pushed to a test registry with `skopeo copy`.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::{RngCore, SeedableRng};

use super::{find_program, run, sha256, Registry};

pub const CREATED: &str = "2024-05-01T12:00:00Z";
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One entry of a layer tar.
#[derive(Clone)]
pub enum Entry {
    Dir(&'static str, u32),
    File(String, u32, Vec<u8>),
    Hardlink(String, String),
    Symlink(String, String),
    /// `.wh.<name>` in the directory of `path`: deletes `path` from the layers below.
    Whiteout(String),
}

/// A layer: its uncompressed tar and what Docker derives from it.
#[derive(Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    /// Size as dockerd (overlay2) reports it: regular files once per inode plus symlink target
    /// lengths; directories and whiteouts count nothing.
    pub size: u64,
}

impl Layer {
    pub fn new(entries: &[Entry]) -> Layer {
        let mut b = tar::Builder::new(Vec::new());
        let mut size = 0u64;
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_714_564_800);
            h.set_uid(0);
            h.set_gid(0);
            match e {
                Entry::Dir(path, mode) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_size(0);
                    b.append_data(&mut h, format!("{}/", path.trim_end_matches('/')), &[][..])
                        .unwrap();
                }
                Entry::File(path, mode, data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, &data[..]).unwrap();
                    size += data.len() as u64;
                }
                Entry::Hardlink(path, target) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).unwrap();
                }
                Entry::Symlink(path, target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).unwrap();
                    size += target.len() as u64;
                }
                Entry::Whiteout(path) => {
                    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                    let wh = if dir.is_empty() {
                        format!(".wh.{name}")
                    } else {
                        format!("{dir}/.wh.{name}")
                    };
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o600);
                    h.set_size(0);
                    b.append_data(&mut h, wh, &[][..]).unwrap();
                }
            }
        }
        let tar = b.into_inner().unwrap();
        Layer {
            diff_id: sha256(&tar),
            tar,
            size,
        }
    }
}

/// /bin/busybox of busybox-static.
pub fn busybox() -> Vec<u8> {
    std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static) is not installed")
}

/// Deterministic pseudo-random bytes; `compressible_pct` percent of them are zeros (in blocks) so
/// gzip gets a predictable ratio.
pub fn noise(seed: u64, len: usize, compressible_pct: u8) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; len];
    const BLOCK: usize = 4096;
    for (i, chunk) in out.chunks_mut(BLOCK).enumerate() {
        if (i % 100) as u8 >= compressible_pct {
            rng.fill_bytes(chunk);
        }
    }
    out
}

/// The base layer of every fixture: busybox, applets as hardlinks, a symlink, a few files.
pub fn base_layer() -> Layer {
    let mut entries = vec![
        Entry::Dir("bin", 0o755),
        Entry::Dir("etc", 0o755),
        Entry::Dir("root", 0o700),
        Entry::Dir("tmp", 0o1777),
        Entry::Dir("usr", 0o755),
        Entry::Dir("usr/bin", 0o755),
        Entry::File("bin/busybox".into(), 0o755, busybox()),
    ];
    for applet in ["sh", "ls", "cat", "echo", "env", "sleep", "true", "false"] {
        entries.push(Entry::Hardlink(
            format!("bin/{applet}"),
            "bin/busybox".into(),
        ));
    }
    entries.extend([
        Entry::Symlink("usr/bin/wget".into(), "/bin/busybox".into()),
        Entry::File(
            "etc/passwd".into(),
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                .to_vec(),
        ),
        Entry::File(
            "etc/group".into(),
            0o644,
            b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
        ),
        Entry::File(
            "etc/obsolete.conf".into(),
            0o644,
            b"removed by the next layer\n".to_vec(),
        ),
    ]);
    Layer::new(&entries)
}

/// A layer that deletes etc/obsolete.conf (whiteout) and adds `payload` bytes of noise.
pub fn app_layer(name: &str, seed: u64, payload: usize) -> Layer {
    Layer::new(&[
        Entry::Dir("etc", 0o755),
        Entry::Whiteout("etc/obsolete.conf".into()),
        Entry::File(
            "etc/motd".into(),
            0o644,
            format!("Wharf fixture {name}\n").into_bytes(),
        ),
        Entry::Dir("opt", 0o755),
        Entry::Dir("opt/app", 0o755),
        Entry::File("opt/app/data.bin".into(), 0o644, noise(seed, payload, 50)),
        Entry::Hardlink("opt/app/data.link".into(), "opt/app/data.bin".into()),
        Entry::Symlink("opt/app/current".into(), "data.bin".into()),
    ])
}

/// One row of the config's history.
#[derive(Clone, Debug)]
pub struct History {
    pub created_by: String,
    pub empty_layer: bool,
}

/// What an image is made of, before it is written out.
#[derive(Clone)]
pub struct ImageSpec {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub layers: Vec<Layer>,
    pub history: Vec<History>,
    /// More keys of the config's `config` object (Entrypoint, ExposedPorts, Volumes, User...).
    pub extra_config: serde_json::Map<String, serde_json::Value>,
}

impl ImageSpec {
    /// A busybox-like image: base layer, `extra` layers after it, ENV/LABEL/CMD history rows.
    pub fn busybox_like(name: &str, arch: &str, extra: Vec<(Layer, &str)>) -> ImageSpec {
        let mut history = vec![History {
            created_by: "/bin/sh -c #(nop) ADD file:busybox-static in / ".into(),
            empty_layer: false,
        }];
        let mut layers = vec![base_layer()];
        history.push(History {
            created_by: format!("/bin/sh -c #(nop)  ENV WHARF_FIXTURE={name}"),
            empty_layer: true,
        });
        for (layer, created_by) in extra {
            layers.push(layer);
            history.push(History {
                created_by: created_by.to_string(),
                empty_layer: false,
            });
        }
        history.push(History {
            created_by: format!("/bin/sh -c #(nop)  LABEL org.wharf.fixture={name}"),
            empty_layer: true,
        });
        history.push(History {
            created_by: "/bin/sh -c #(nop)  CMD [\"sh\"]".into(),
            empty_layer: true,
        });
        let mut labels = BTreeMap::new();
        labels.insert("org.wharf.fixture".to_string(), name.to_string());
        labels.insert("org.wharf.arch".to_string(), arch.to_string());
        ImageSpec {
            architecture: arch.to_string(),
            os: "linux".to_string(),
            variant: (arch == "arm64").then(|| "v8".to_string()),
            env: vec![PATH_ENV.to_string(), format!("WHARF_FIXTURE={name}")],
            cmd: vec!["sh".to_string()],
            labels,
            layers,
            history,
            extra_config: serde_json::Map::new(),
        }
    }

    /// The image config JSON, as written (its sha256 is the image ID).
    pub fn config(&self) -> Vec<u8> {
        let history: Vec<serde_json::Value> = self
            .history
            .iter()
            .map(|h| {
                let mut row = serde_json::json!({"created": CREATED, "created_by": h.created_by});
                if h.empty_layer {
                    row["empty_layer"] = true.into();
                }
                row
            })
            .collect();
        let mut config = serde_json::json!({
            "architecture": self.architecture,
            "os": self.os,
            "created": CREATED,
            "config": {
                "Env": self.env,
                "Cmd": self.cmd,
                "Labels": self.labels,
                "WorkingDir": "/",
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": history,
        });
        if let Some(v) = &self.variant {
            config["variant"] = v.clone().into();
        }
        for (k, v) in &self.extra_config {
            config["config"][k] = v.clone();
        }
        serde_json::to_vec(&config).unwrap()
    }

    pub fn id(&self) -> String {
        sha256(&self.config())
    }

    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// Layer compression in the OCI layout written for skopeo.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Compression {
    Gzip,
    Zstd,
}

fn compress(data: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
    }
}

/// An OCI image layout on disk.
pub struct Layout {
    pub dir: tempfile::TempDir,
}

fn write_blob(dir: &Path, data: &[u8]) -> (String, u64) {
    let digest = sha256(data);
    let path = dir
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    std::fs::write(path, data).unwrap();
    (digest, data.len() as u64)
}

fn platform_json(spec: &ImageSpec) -> serde_json::Value {
    let mut p = serde_json::json!({"architecture": spec.architecture, "os": spec.os});
    if let Some(v) = &spec.variant {
        p["variant"] = v.clone().into();
    }
    p
}

/// Writes an image manifest for `spec` into the layout at `dir`: (digest, size).
fn write_manifest(dir: &Path, spec: &ImageSpec, c: Compression) -> (String, u64) {
    let (config_digest, config_size) = write_blob(dir, &spec.config());
    let media = match c {
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    };
    let layers: Vec<serde_json::Value> = spec
        .layers
        .iter()
        .map(|l| {
            let (digest, size) = write_blob(dir, &compress(&l.tar, c));
            serde_json::json!({"mediaType": media, "digest": digest, "size": size})
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": layers,
    });
    write_blob(dir, &serde_json::to_vec(&manifest).unwrap())
}

impl Layout {
    fn new() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        Layout { dir }
    }

    fn write_index(&self, media_type: &str, digest: &str, size: u64, tag: &str) {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": media_type,
                "digest": digest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(
            self.dir.path().join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }

    /// A layout holding one image, tagged `tag`.
    pub fn image(spec: &ImageSpec, c: Compression, tag: &str) -> Layout {
        let layout = Layout::new();
        let (digest, size) = write_manifest(layout.dir.path(), spec, c);
        layout.write_index(
            "application/vnd.oci.image.manifest.v1+json",
            &digest,
            size,
            tag,
        );
        layout
    }

    /// A layout holding an index of several platform images, tagged `tag`.
    pub fn index(specs: &[ImageSpec], c: Compression, tag: &str) -> Layout {
        let layout = Layout::new();
        let manifests: Vec<serde_json::Value> = specs
            .iter()
            .map(|s| {
                let (digest, size) = write_manifest(layout.dir.path(), s, c);
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": size,
                    "platform": platform_json(s),
                })
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        let (digest, size) = write_blob(layout.dir.path(), &serde_json::to_vec(&index).unwrap());
        layout.write_index(
            "application/vnd.oci.image.index.v1+json",
            &digest,
            size,
            tag,
        );
        layout
    }
}

/// How `skopeo copy` writes the image to the registry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PushFormat {
    /// Docker schema2 manifest (`--format v2s2`).
    DockerV2S2,
    /// OCI manifest, layers recompressed with zstd (`--dest-compress-format zstd`).
    OciZstd,
    /// OCI manifest as in the layout.
    Oci,
    /// The whole index (`--all`).
    OciIndex,
    /// The whole index as a Docker manifest list of schema2 manifests (`--all --format v2s2`).
    DockerList,
}

/// An image as it sits in the registry after the push.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// `127.0.0.1:PORT/REPO`
    pub repository: String,
    pub tag: String,
    /// Digest of the top manifest (the index for a multi-platform image).
    pub manifest_digest: String,
    pub manifest: serde_json::Value,
    /// The image config digest that Docker shows as the image ID (host platform for an index).
    pub id: String,
    pub diff_ids: Vec<String>,
    /// dockerd's per-layer size (see [`Layer::size`]).
    pub layer_sizes: Vec<u64>,
    pub size: u64,
    pub history: Vec<History>,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub architecture: String,
    /// Blob digests of the layers as pushed (host platform).
    pub layer_blobs: Vec<String>,
}

impl Pushed {
    /// `REPOSITORY:TAG`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// `REPOSITORY@DIGEST`.
    pub fn by_digest(&self) -> String {
        format!("{}@{}", self.repository, self.manifest_digest)
    }
}

/// Docker's name for the architecture of this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn skopeo() -> PathBuf {
    find_program("skopeo", &[]).expect("skopeo is not installed")
}

/// `skopeo inspect --raw` of `reference` in `registry`.
pub fn raw_manifest(registry: &Registry, reference: &str) -> Vec<u8> {
    let mut cmd = Command::new(skopeo());
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some((u, p)) = registry.credentials() {
        cmd.arg("--creds").arg(format!("{u}:{p}"));
    }
    cmd.arg(format!("docker://{reference}"));
    run(cmd, None, Duration::from_secs(120))
        .ok()
        .stdout
        .into_bytes()
}

/// Pushes `layout` (tag `tag`) to `registry` as `repo:tag`, in `format`.
pub fn push_layout(
    registry: &Registry,
    layout: &Layout,
    repo: &str,
    tag: &str,
    format: PushFormat,
) -> String {
    let digestfile = layout.dir.path().join("pushed.digest");
    let mut cmd = Command::new(skopeo());
    cmd.args(["--insecure-policy", "copy", "--dest-tls-verify=false"]);
    match format {
        PushFormat::DockerV2S2 => {
            cmd.args(["--format", "v2s2"]);
        }
        PushFormat::OciZstd => {
            cmd.args(["--format", "oci", "--dest-compress-format", "zstd"]);
        }
        PushFormat::Oci => {
            cmd.args(["--format", "oci"]);
        }
        PushFormat::OciIndex => {
            cmd.args(["--all"]);
        }
        PushFormat::DockerList => {
            cmd.args(["--all", "--format", "v2s2"]);
        }
    }
    if let Some((u, p)) = registry.credentials() {
        cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
    }
    cmd.arg("--digestfile").arg(&digestfile);
    cmd.arg(format!("oci:{}:{tag}", layout.dir.path().display()));
    cmd.arg(format!("docker://{}/{repo}:{tag}", registry.host));
    run(cmd, None, Duration::from_secs(300)).ok();
    std::fs::read_to_string(digestfile)
        .unwrap()
        .trim()
        .to_string()
}

/// Builds `spec` and pushes it as `repo:tag`; returns what the registry now holds.
pub fn push_image(
    registry: &Registry,
    spec: &ImageSpec,
    repo: &str,
    tag: &str,
    format: PushFormat,
) -> Pushed {
    let c = if format == PushFormat::OciZstd {
        Compression::Zstd
    } else {
        Compression::Gzip
    };
    let layout = Layout::image(spec, c, tag);
    let digest = push_layout(registry, &layout, repo, tag, format);
    describe(registry, repo, tag, &digest, spec)
}

/// Builds the platform images `specs` as one index and pushes it as `repo:tag`.
pub fn push_index(
    registry: &Registry,
    specs: &[ImageSpec],
    repo: &str,
    tag: &str,
    format: PushFormat,
) -> (Pushed, Vec<Pushed>) {
    let layout = Layout::index(specs, Compression::Gzip, tag);
    let digest = push_layout(registry, &layout, repo, tag, format);
    let index: serde_json::Value = serde_json::from_slice(&raw_manifest(
        registry,
        &format!("{}/{repo}:{tag}", registry.host),
    ))
    .unwrap();
    let mut platforms = Vec::new();
    for spec in specs {
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == spec.architecture.as_str())
            .expect("platform in the pushed index");
        let d = entry["digest"].as_str().unwrap().to_string();
        platforms.push(describe(registry, repo, &d, &d, spec));
    }
    let host = specs
        .iter()
        .position(|s| s.architecture == host_arch())
        .expect("a fixture for this machine's architecture");
    let mut top = platforms[host].clone();
    top.tag = tag.to_string();
    top.manifest_digest = digest;
    top.manifest = index;
    (top, platforms)
}

fn describe(
    registry: &Registry,
    repo: &str,
    reference: &str,
    digest: &str,
    spec: &ImageSpec,
) -> Pushed {
    let sep = if reference.starts_with("sha256:") {
        "@"
    } else {
        ":"
    };
    let raw = raw_manifest(
        registry,
        &format!("{}/{repo}{sep}{reference}", registry.host),
    );
    assert_eq!(
        sha256(&raw),
        digest,
        "skopeo's digest is the registry's manifest digest"
    );
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        manifest["config"]["digest"].as_str(),
        Some(spec.id().as_str()),
        "the push kept the config blob"
    );
    Pushed {
        repository: format!("{}/{repo}", registry.host),
        tag: reference.to_string(),
        manifest_digest: digest.to_string(),
        id: spec.id(),
        diff_ids: spec.layers.iter().map(|l| l.diff_id.clone()).collect(),
        layer_sizes: spec.layers.iter().map(|l| l.size).collect(),
        size: spec.size(),
        history: spec.history.clone(),
        env: spec.env.clone(),
        cmd: spec.cmd.clone(),
        labels: spec.labels.clone(),
        architecture: spec.architecture.clone(),
        layer_blobs: manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect(),
        manifest,
    }
}

// ---------------------------------------------------------------------------------------------
// The fixtures the tests use

/// A Docker schema2 image with three layers (base, app with whiteout, config).
pub fn schema2(name: &str) -> ImageSpec {
    ImageSpec::busybox_like(
        name,
        host_arch(),
        vec![
            (
                app_layer(name, 1, 300 * 1024),
                "/bin/sh -c #(nop) COPY dir:app in /opt/app ",
            ),
            (
                Layer::new(&[
                    Entry::Dir("opt", 0o755),
                    Entry::Dir("opt/app", 0o755),
                    Entry::File(
                        "opt/app/config.json".into(),
                        0o644,
                        format!("{{\"fixture\":\"{name}\"}}\n").into_bytes(),
                    ),
                    Entry::Symlink("opt/app/config.link".into(), "config.json".into()),
                ]),
                "/bin/sh -c echo config > /opt/app/config.json",
            ),
        ],
    )
}

/// A two-layer image for the OCI/zstd push.
pub fn oci(name: &str) -> ImageSpec {
    ImageSpec::busybox_like(
        name,
        host_arch(),
        vec![(
            app_layer(name, 2, 200 * 1024),
            "/bin/sh -c #(nop) COPY dir:app in /opt/app ",
        )],
    )
}

/// The same image for linux/amd64 and linux/arm64 (distinct configs and app layers).
pub fn multi_platform(name: &str) -> Vec<ImageSpec> {
    ["amd64", "arm64"]
        .iter()
        .enumerate()
        .map(|(i, arch)| {
            let tag = format!("{name}-{arch}");
            ImageSpec::busybox_like(
                name,
                arch,
                vec![(
                    app_layer(&tag, 10 + i as u64, 64 * 1024),
                    "/bin/sh -c #(nop) COPY dir:app in /opt/app ",
                )],
            )
        })
        .collect()
}

/// A large image of incompressible layers (`layers` x `mib` MiB), for pulls that take a while.
pub fn large(name: &str, layers: usize, mib: usize) -> ImageSpec {
    let extra = (0..layers)
        .map(|i| {
            (
                Layer::new(&[
                    Entry::Dir("data", 0o755),
                    Entry::File(
                        format!("data/blob{i}.bin"),
                        0o644,
                        noise(100 + i as u64, mib << 20, 0),
                    ),
                ]),
                "/bin/sh -c #(nop) ADD file:random in /data ",
            )
        })
        .collect();
    ImageSpec::busybox_like(name, host_arch(), extra)
}

/// An uncompressed tar for `docker import`: a file and a symlink.
pub fn import_tar(marker: &str) -> Vec<u8> {
    Layer::new(&[
        Entry::Dir("etc", 0o755),
        Entry::File(
            "etc/imported".into(),
            0o644,
            format!("{marker}\n").into_bytes(),
        ),
        Entry::Symlink("etc/imported.link".into(), "imported".into()),
    ])
    .tar
}

/// Distinct digests in `blobs`.
pub fn distinct(blobs: &[String]) -> usize {
    blobs.iter().collect::<HashSet<_>>().len()
}
