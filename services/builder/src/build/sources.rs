//! Sources that are not in the context: `COPY --from` (exported from an image on the build's
//! node) and `ADD <url>` (downloaded).

use std::path::Path;

use wharf_bus::api;
use wharf_bus::build::StepExport;
use wharf_bus::container::PathStat;
use wharf_bus::endpoint::{self, Empty};
use wharf_bus::progress::JsonMessage;
use wharf_bus::{BusError, ErrorKind};

use super::output::{Failure, Output};
use super::{copy, download, internal, invalid, rand_u64, Build};
use crate::context;

impl Build<'_> {
    /// `COPY --from=<stage|index|image>`: the source paths, exported from that image on the
    /// build's node (`build.export`: the node makes a container, never started, for
    /// `docker cp`'s export, and removes it).
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
        let root = self.dir.join(format!("from-{:016x}", rand_u64()));
        self.export_paths(&image, paths, &root).await
    }

    async fn export_paths(
        &self,
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
            let (mut rx, Empty) = endpoint::download_from_node::<api::BuildExport>(
                self.client(),
                &self.node,
                &StepExport {
                    image: image.to_string(),
                    path: if path.starts_with('/') {
                        path.clone()
                    } else {
                        format!("/{path}")
                    },
                },
            )
            .await?;
            let stat: PathStat = match rx.next_json().await {
                Some(Ok(stat)) => stat,
                Some(Err(e)) if e.kind == ErrorKind::NotFound => {
                    return Err(invalid(format!(
                        "COPY failed: stat {path}: file does not exist"
                    )))
                }
                Some(Err(e)) => return Err(Failure::Bus(e)),
                None => {
                    return Err(Failure::Bus(BusError::unavailable(format!(
                        "runtime node {} ended the export of {path} without its stat",
                        self.node
                    ))))
                }
            };
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
    /// the URL or the response's Content-Disposition, with the Last-Modified time; within the
    /// builder's download limits (`download.rs`).
    pub(super) async fn download(
        &mut self,
        out: &mut Output,
        url: &str,
        dest: &str,
    ) -> Result<copy::Source, Failure> {
        let dir = self.dir.join(format!("download-{:016x}", rand_u64()));
        std::fs::create_dir_all(&dir).map_err(|e| internal("ADD", e))?;
        let limits = self.builder.download_limits;
        let got = download::fetch(&self.builder.http, url, dest, &dir, &limits)
            .await
            .map_err(|e| match e {
                download::DownloadError::Invalid(m) => invalid(m),
                download::DownloadError::Internal(m) => Failure::Bus(BusError::internal(m)),
            })?;
        out.send(JsonMessage::progress(
            "Downloading",
            "",
            got.size,
            got.total,
        ))
        .await?;
        out.line("\n").await?;
        let hash = context::checksum(&dir, &got.name).map_err(|e| internal("ADD", e))?;
        Ok(copy::Source {
            root: dir,
            rel: got.name,
            hash,
            no_decompress: true,
        })
    }
}
