//! `docker commit`: the container's upper directory becomes a layer on top of its image.
//!
//! The layer is a plain tar of what `docker diff` reports (overlay whiteouts written as `.wh.`
//! files, opaque directories with `.wh..wh..opq`), stored through image-store's blob ingest
//! like any pulled layer; the image config is the parent's with the new diff ID and history row,
//! and the container's config (with `--change` applied and merged as dockerd's `merge` does).
//!
//! `--change` is applied here with a small parser of the instructions dockerd allows for commit
//! (image-store's parser is not reachable over the bus; HEALTHCHECK is not supported).

use crate::userns::IdMap;
use std::collections::HashSet;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use nix::fcntl::AtFlags;
use nix::sys::stat::{self, FileStat, SFlag};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use wharf_bus::container::CommitRequest;
use wharf_bus::image::{
    BlobIngest, BlobIngested, ImageCommit, ImageRecord, ImageResolve, LayerInfo, LayerRef,
};
use wharf_bus::stream::Sender;
use wharf_bus::subjects::{group, image_store, subject};
use wharf_bus::BusError;

use super::archive::{self, TarOut};
use super::record::Status;
use super::{internal, stop, Container, Node};

/// Media type of the committed layer: an uncompressed tar, as dockerd stores it.
const LAYER_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";

/// A `Write` to a file that hashes and counts what passes.
struct HashingFile {
    file: io::BufWriter<std::fs::File>,
    hasher: Sha256,
    size: u64,
}

impl Write for HashingFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.file.write(data)?;
        self.hasher.update(&data[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes the layer entries below `dir` (container path `prefix`) that `keep` lists.
fn append_layer<W: Write>(
    tar: &mut TarOut<W>,
    dir: &OwnedFd,
    prefix: &str,
    keep: &HashSet<String>,
) -> io::Result<()> {
    for name in archive::names_in(dir)? {
        let path = format!("{prefix}/{}", name.to_string_lossy());
        if !keep.contains(&path) {
            continue;
        }
        let Ok(st) = stat::fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        let tar_name = path.trim_start_matches('/').as_bytes().to_vec();
        if archive::is_whiteout(&st) {
            let parent = tar_name[..tar_name.len() - name.len()].to_vec();
            let mut wh = parent;
            wh.extend_from_slice(b".wh.");
            wh.extend_from_slice(name.as_bytes());
            tar.append(marker(tar.owner(&st), &st, 0o600), &wh, None, None)?;
            continue;
        }
        tar.append_file(dir, &name, &tar_name, &st)?;
        if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFDIR {
            let child = archive::open_dir(dir, &name)?;
            if archive::is_opaque(&child) {
                let opq = archive::join_name(&tar_name, b".wh..wh..opq");
                let owner = tar.owner(&st);
                tar.append(marker(owner, &st, st.st_mode & 0o777), &opq, None, None)?;
            }
            append_layer(tar, &child, &path, keep)?;
        }
    }
    Ok(())
}

/// An empty regular file owned by `(uid, gid)`, with `st`'s time (whiteout markers).
fn marker((uid, gid): (u32, u32), st: &FileStat, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_uid(uid as u64);
    h.set_gid(gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Writes the layer tar of the container's changes to `out`; `None` when nothing changed.
fn write_layer(
    upper: &Path,
    lowers: &[PathBuf],
    out: &Path,
    map: Option<IdMap>,
) -> io::Result<Option<(String, u64)>> {
    let changes = archive::changed_paths(upper, lowers)?;
    if changes.is_empty() {
        return Ok(None);
    }
    let keep: HashSet<String> = changes.into_iter().map(|(p, _)| p).collect();
    let file = std::fs::File::create(out)?;
    let mut tar = TarOut::new(HashingFile {
        file: io::BufWriter::new(file),
        hasher: Sha256::new(),
        size: 0,
    })
    .with_map(map);
    let dir = nix::fcntl::open(
        upper,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io::Error::from)?;
    append_layer(&mut tar, &dir, "", &keep)?;
    let mut w = tar.finish()?;
    w.file.flush()?;
    w.file.get_ref().sync_all()?;
    let digest = format!("sha256:{}", hex::encode(w.hasher.finalize()));
    Ok(Some((digest, w.size)))
}

/// Stores `data` (read from `file` or given) as a blob in image-store.
async fn ingest(
    client: &async_nats::Client,
    digest: &str,
    size: u64,
    media_type: &str,
    source: Source<'_>,
) -> Result<BlobIngested, BusError> {
    let request = BlobIngest {
        digest: digest.to_string(),
        size: Some(size),
        media_type: Some(media_type.to_string()),
    };
    let (mut tx, _) = Sender::open(
        client,
        &subject(group::IMAGE_STORE, image_store::BLOB_INGEST),
        wharf_bus::rpc::encode(&request)?,
    )
    .await?;
    match source {
        Source::Bytes(data) => tx.send(Bytes::copy_from_slice(data)).await?,
        Source::File(path) => {
            tx.send_file(path).await?;
        }
    }
    tx.finish_json().await
}

enum Source<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// A layer tar of a container's changes, written in the container's directory.
pub(super) struct DiffFile {
    path: PathBuf,
    digest: String,
    size: u64,
}

/// Writes the container's changes (its upper directory against its image's layers) as a
/// layer tar; `None` when nothing changed.
pub(super) async fn write_diff(node: &Node, c: &Container) -> Result<Option<DiffFile>, BusError> {
    let upper = c.paths.upper();
    let lowers = archive::lower_dirs(node, c)?;
    let path = c
        .paths
        .dir
        .join(format!("layer-{:016x}.tar", rand::random::<u64>()));
    let out = path.clone();
    let map = archive::id_map(node, c);
    let written = tokio::task::spawn_blocking(move || write_layer(&upper, &lowers, &out, map))
        .await
        .map_err(|e| internal("cannot write the layer", e))?;
    match written {
        Ok(Some((digest, size))) => Ok(Some(DiffFile { path, digest, size })),
        Ok(None) => Ok(None),
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            Err(internal("cannot write the layer", e))
        }
    }
}

/// Stores a written diff in image-store as a layer blob and removes the file.
pub(super) async fn store_diff(
    client: &async_nats::Client,
    diff: DiffFile,
) -> Result<LayerInfo, BusError> {
    let stored = ingest(
        client,
        &diff.digest,
        diff.size,
        LAYER_MEDIA_TYPE,
        Source::File(&diff.path),
    )
    .await;
    let _ = tokio::fs::remove_file(&diff.path).await;
    stored?
        .layer
        .ok_or_else(|| BusError::internal("image-store did not scan the layer"))
}

/// The container's changes stored in image-store as a layer; `None` when nothing changed.
pub(super) async fn store_layer(node: &Node, c: &Container) -> Result<Option<LayerInfo>, BusError> {
    match write_diff(node, c).await? {
        Some(diff) => store_diff(&node.client, diff).await.map(Some),
        None => Ok(None),
    }
}

/// `POST /commit`.
pub async fn commit(
    node: &Arc<Node>,
    c: Arc<Container>,
    req: CommitRequest,
) -> Result<Value, BusError> {
    let rec = c.snapshot();
    match rec.state.status {
        Status::Dead => {
            return Err(BusError::conflict(format!(
                "You cannot commit container {} which is Dead",
                c.id
            )))
        }
        Status::Removing => {
            return Err(BusError::conflict(format!(
                "You cannot commit container {} which is being removed",
                c.id
            )))
        }
        _ => {}
    }
    // The config first: a bad `--change` fails before any work.
    let container_config =
        serde_json::to_value(&rec.config).map_err(|e| internal("container config", e))?;
    let base = match &req.config {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        _ => container_config.clone(),
    };
    let mut config = match base {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    wharf_bus::changes::apply(&req.changes, &mut config)?;
    merge(
        &mut config,
        container_config.as_object().cloned().unwrap_or_default(),
    );

    let paused = req.pause && rec.state.status == Status::Running;
    if paused {
        stop::pause(node, &c, true).await?;
    }
    let written = write_diff(node, &c).await;
    if paused {
        if let Err(e) = stop::pause(node, &c, false).await {
            tracing::warn!(container = %c.id, "unpause after commit: {}", e.message);
        }
    }
    let layer = match written? {
        Some(diff) => Some(store_diff(&node.client, diff).await?),
        None => None,
    };

    let parent: ImageRecord = wharf_bus::rpc::call(
        &node.client,
        &subject(group::IMAGE_STORE, image_store::IMAGE_RESOLVE),
        &ImageResolve {
            name: rec.image_id.clone(),
        },
    )
    .await?;
    let mut layers = parent.layer_refs();
    if let Some(info) = &layer {
        layers.push(LayerRef {
            digest: info.digest.clone(),
            media_type: info.media_type.clone(),
        });
    }
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let created_by = rec.config.cmd.clone().unwrap_or_default().join(" ");
    let image = wharf_bus::image::ChildImage {
        parent: &parent.config,
        diff_id: layer.as_ref().map(|l| l.diff_id.as_str()),
        created: &created,
        author: &req.author,
        comment: &req.comment,
        created_by: &created_by,
        config: Value::Object(config),
        container: &c.id,
        container_config,
    }
    .document();
    let raw = serde_json::to_vec(&image).map_err(|e| internal("image config", e))?;
    let digest = wharf_bus::digest::sha256_of(&raw);
    ingest(
        &node.client,
        &digest,
        raw.len() as u64,
        CONFIG_MEDIA_TYPE,
        Source::Bytes(&raw),
    )
    .await?;
    let tags: Vec<String> = if req.reference.is_empty() {
        vec![]
    } else {
        vec![req.reference.clone()]
    };
    let committed: ImageRecord = wharf_bus::rpc::call(
        &node.client,
        &subject(group::IMAGE_STORE, image_store::IMAGE_COMMIT),
        &ImageCommit {
            config: digest,
            layers,
            manifest: None,
            tags,
            repo_digests: vec![],
            // dockerd records the container's image as the parent (none for scratch).
            parent: (!rec.image_id.is_empty()).then(|| rec.image_id.clone()),
        },
    )
    .await?;
    let image_ref = if req.reference.is_empty() {
        String::new()
    } else {
        wharf_bus::reference::familiarize(&req.reference)
    };
    node.publish_event(
        &c.snapshot(),
        "commit",
        &[
            ("comment", req.comment.clone()),
            ("imageID", committed.id.clone()),
            ("imageRef", image_ref),
        ],
    )
    .await;
    Ok(json!({ "Id": committed.id }))
}

/// dockerd's `merge`: what the user's config leaves unset comes from the container's.
fn merge(user: &mut Map<String, Value>, image: Map<String, Value>) {
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    };
    for key in ["User", "WorkingDir", "StopSignal"] {
        if empty(user.get(key)) && !empty(image.get(key)) {
            user.insert(key.into(), image[key].clone());
        }
    }
    for key in ["ExposedPorts", "Volumes", "Labels"] {
        if let Some(Value::Object(from)) = image.get(key) {
            let to = user.entry(key.to_string()).or_insert(Value::Null);
            if !to.is_object() {
                *to = json!({});
            }
            let to = to.as_object_mut().expect("object");
            for (k, v) in from {
                to.entry(k.clone()).or_insert(v.clone());
            }
        }
    }
    if let Some(Value::Array(image_env)) = image.get("Env") {
        if empty(user.get("Env")) {
            user.insert("Env".into(), Value::Array(image_env.clone()));
        } else if let Some(Value::Array(env)) = user.get_mut("Env") {
            let key = |v: &Value| {
                v.as_str()
                    .unwrap_or("")
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .to_string()
            };
            let keys: HashSet<String> = env.iter().map(key).collect();
            for e in image_env {
                if !keys.contains(&key(e)) {
                    env.push(e.clone());
                }
            }
        }
    }
    if empty(user.get("Entrypoint")) {
        if empty(user.get("Cmd")) {
            user.insert(
                "Cmd".into(),
                image.get("Cmd").cloned().unwrap_or(Value::Null),
            );
        }
        if matches!(user.get("Entrypoint"), None | Some(Value::Null)) {
            user.insert(
                "Entrypoint".into(),
                image.get("Entrypoint").cloned().unwrap_or(Value::Null),
            );
        }
    }
    if empty(user.get("Healthcheck")) {
        if let Some(h) = image.get("Healthcheck") {
            user.insert("Healthcheck".into(), h.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_as_dockerd_applies_them() {
        let mut c = Map::new();
        c.insert("Cmd".into(), json!(["sh"]));
        wharf_bus::changes::apply(
            &[
                r#"CMD ["cat","/hello"]"#.to_string(),
                "ENV A=1 B=\"two words\"".to_string(),
                "EXPOSE 80".to_string(),
                "WORKDIR data".to_string(),
            ],
            &mut c,
        )
        .unwrap();
        assert_eq!(c["Cmd"], json!(["cat", "/hello"]));
        assert_eq!(c["Env"], json!(["A=1", "B=two words"]));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(c["WorkingDir"], json!("/data"));
        let err = wharf_bus::changes::apply(&["RUN true".to_string()], &mut c).unwrap_err();
        assert_eq!(err.message, "run is not a valid change command");
    }

    #[test]
    fn merge_keeps_the_container_config_under_the_changes() {
        let mut user = Map::new();
        user.insert("Entrypoint".into(), json!(["/bin/app"]));
        user.insert("Env".into(), json!(["A=2"]));
        let image = json!({"Cmd": ["sh"], "Env": ["A=1", "PATH=/bin"], "User": "app"});
        merge(&mut user, image.as_object().cloned().unwrap());
        assert_eq!(user["Env"], json!(["A=2", "PATH=/bin"]));
        assert_eq!(user["User"], json!("app"));
        assert!(user.get("Cmd").is_none());
    }
}
