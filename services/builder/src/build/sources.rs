//! Sources that are not in the context: `COPY --from` (exported from an image on the build's
//! node) and `ADD <url>` (downloaded).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use wharf_bus::container::{node_subject, op, ContainerConfig};
use wharf_bus::progress::JsonMessage;
use wharf_bus::stream::Receiver;
use wharf_bus::{BusError, ErrorKind};

use super::output::{Failure, Output};
use super::{copy, internal, invalid, rand_u64, Build, NODE_TIMEOUT};
use crate::context;

impl Build<'_> {
    /// `COPY --from=<stage|index|image>`: the source paths, exported from that image on the
    /// build's node (a container is created, never started, for `docker cp`'s export).
    pub(super) async fn export_from(
        &mut self,
        out: &mut Output,
        from: &str,
        paths: &[String],
    ) -> Result<Vec<copy::Source>, Failure> {
        let lower = from.to_ascii_lowercase();
        let image = if let Some(s) = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            s.image.clone()
        } else if let Ok(i) = from.parse::<usize>() {
            if i == self.stages.len() {
                return Err(invalid(format!(
                    "invalid from flag value {from}: refers to current build stage"
                )));
            }
            match self.stages.get(i) {
                Some(s) => s.image.clone(),
                None => {
                    return Err(invalid(format!(
                        "invalid from flag value {from}: index out of bounds"
                    )))
                }
            }
        } else {
            self.image(out, from, None)
                .await
                .map_err(|f| invalid(format!("invalid from flag value {from}: {}", f.message())))?
                .id
        };
        if image.is_empty() {
            return Err(invalid(format!(
                "invalid from flag value {from}: the stage has no image"
            )));
        }
        let created: wharf_bus::container::CreateResponse = wharf_bus::rpc::call_with_timeout(
            self.client(),
            &node_subject(&self.node, op::CREATE),
            &wharf_bus::container::CreateRequest {
                name: String::new(),
                body: wharf_bus::container::CreateBody {
                    config: ContainerConfig {
                        image: image.clone(),
                        cmd: Some(vec!["/".to_string()]),
                        entrypoint: Some(vec![String::new()]),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                platform: None,
            },
            NODE_TIMEOUT,
        )
        .await?;
        let root = self.dir.join(format!("from-{:016x}", rand_u64()));
        let result = self.export_paths(&created.id, &image, paths, &root).await;
        let _: Result<Value, BusError> = wharf_bus::rpc::call(
            self.client(),
            &node_subject(&self.node, op::REMOVE),
            &wharf_bus::container::RemoveRequest {
                id: created.id.clone(),
                force: true,
                volumes: true,
            },
        )
        .await;
        result
    }

    async fn export_paths(
        &self,
        container: &str,
        image: &str,
        paths: &[String],
        root: &Path,
    ) -> Result<Vec<copy::Source>, Failure> {
        let mut sources = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            if copy::has_wildcards(path) {
                return Err(invalid(format!(
                    "COPY failed: wildcards in COPY --from sources are not supported by Wharf: {path}"
                )));
            }
            let (mut rx, stat) = Receiver::open_json(
                self.client(),
                &node_subject(&self.node, op::ARCHIVE_GET),
                &wharf_bus::container::ArchiveRequest {
                    id: container.to_string(),
                    path: if path.starts_with('/') {
                        path.clone()
                    } else {
                        format!("/{path}")
                    },
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                if e.kind == ErrorKind::NotFound {
                    invalid(format!("COPY failed: stat {path}: file does not exist"))
                } else {
                    Failure::Bus(e)
                }
            })?;
            let stat: wharf_bus::container::PathStat =
                serde_json::from_slice(&stat).unwrap_or_default();
            let dir = root.join(i.to_string());
            std::fs::create_dir_all(&dir).map_err(|e| internal("COPY --from", e))?;
            let tar_path = root.join(format!("{i}.tar"));
            {
                use tokio::io::AsyncWriteExt;
                let mut f = tokio::fs::File::create(&tar_path)
                    .await
                    .map_err(|e| internal("COPY --from", e))?;
                while let Some(chunk) = rx.next().await {
                    f.write_all(&chunk?)
                        .await
                        .map_err(|e| internal("COPY --from", e))?;
                }
                f.flush().await.map_err(|e| internal("COPY --from", e))?;
            }
            let d = dir.clone();
            let tp = tar_path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut a = tar::Archive::new(std::fs::File::open(&tp)?);
                a.set_preserve_permissions(true);
                a.set_preserve_ownerships(true);
                a.set_preserve_mtime(true);
                a.set_unpack_xattrs(false);
                a.unpack(&d)?;
                std::fs::remove_file(&tp)
            })
            .await
            .map_err(|e| internal("COPY --from", e))?
            .map_err(|e| internal("COPY --from", e))?;
            let name = if stat.name.is_empty() || stat.name == "/" {
                ".".to_string()
            } else {
                stat.name.clone()
            };
            sources.push(copy::Source {
                root: dir,
                rel: name,
                hash: context::hash_string_slice("from", &[image.to_string(), path.clone()]),
                no_decompress: true,
            });
        }
        Ok(sources)
    }

    /// `ADD <url>`: the file downloaded into the build directory (never unpacked), named from
    /// the URL or the response's Content-Disposition, with the Last-Modified time.
    pub(super) async fn download(
        &mut self,
        out: &mut Output,
        url: &str,
        dest: &str,
    ) -> Result<copy::Source, Failure> {
        let response = reqwest::get(url)
            .await
            .map_err(|e| invalid(format!("ADD failed: {e}")))?;
        if !response.status().is_success() {
            // dockerd's GetWithStatusError: the status line, then what the server said.
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(1024).collect();
            return Err(invalid(format!(
                "ADD failed: failed to GET {url} with status {status}: {}",
                body.trim_end()
            )));
        }
        let url_path = response.url().path().to_string();
        let mut name = std::path::Path::new(&url_path)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .filter(|_| !url_path.ends_with('/'))
            .unwrap_or_default();
        if name.is_empty() {
            if let Some(cd) = response
                .headers()
                .get(reqwest::header::CONTENT_DISPOSITION)
                .and_then(|v| v.to_str().ok())
            {
                if let Some(f) = cd
                    .split(';')
                    .find_map(|p| p.trim().strip_prefix("filename="))
                {
                    let f = f.trim_matches('"');
                    if !f.ends_with('/') {
                        name = std::path::Path::new(f)
                            .file_name()
                            .map(|n| n.to_string_lossy().to_string())
                            .unwrap_or_default();
                    }
                }
            }
        }
        if name.is_empty() {
            if dest.ends_with('/') {
                return Err(invalid(format!(
                    "ADD failed: cannot determine filename for source {url}"
                )));
            }
            name = "__unnamed__".to_string();
        }
        let mtime = response
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|t| t.timestamp())
            .unwrap_or(0);
        let dir = self.dir.join(format!("download-{:016x}", rand_u64()));
        std::fs::create_dir_all(&dir).map_err(|e| internal("ADD", e))?;
        let file_path = dir.join(&name);
        let total = response.content_length();
        let mut body = response.bytes_stream();
        {
            use std::os::unix::fs::OpenOptionsExt;
            use tokio::io::AsyncWriteExt;
            let std_file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file_path)
                .map_err(|e| internal("ADD", e))?;
            let mut f = tokio::fs::File::from_std(std_file);
            let mut got = 0u64;
            while let Some(chunk) = futures::StreamExt::next(&mut body).await {
                let chunk = chunk.map_err(|e| invalid(format!("ADD failed: {e}")))?;
                got += chunk.len() as u64;
                f.write_all(&chunk).await.map_err(|e| internal("ADD", e))?;
            }
            f.flush().await.map_err(|e| internal("ADD", e))?;
            let modified = std::time::UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64);
            f.into_std()
                .await
                .set_modified(modified)
                .map_err(|e| internal("ADD", e))?;
            out.send(JsonMessage::progress("Downloading", "", got, total))
                .await?;
            out.line("\n").await?;
        }
        let hash = context::checksum(&dir, &name).map_err(|e| internal("ADD", e))?;
        Ok(copy::Source {
            root: dir,
            rel: name,
            hash,
            no_decompress: true,
        })
    }
}
