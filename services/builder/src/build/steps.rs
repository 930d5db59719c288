//! The steps that need a runtime node: RUN (`build.run`), and COPY/ADD and WORKDIR
//! (`build.copy`).

use std::path::Path;

use wharf_bus::api;
use wharf_bus::build::{StepCopy, StepDone, StepEvent, StepRun};
use wharf_bus::container::HealthConfig;
use wharf_bus::endpoint::{self, Empty};
use wharf_bus::{BusError, ErrorKind};

use super::output::{Failure, Output};
use super::{
    cache, copy, internal, invalid, rand_u64, resolve_cmd_line, shell_of, short, Build, State,
};
use crate::dockerfile::{self, CommandLine, CopySpec};

impl Build<'_> {
    pub(super) async fn run_step(
        &mut self,
        out: &mut Output,
        state: &mut State,
        run: &dockerfile::Run,
    ) -> Result<(), Failure> {
        if !run.mounts.is_empty() {
            return Err(invalid(
                "the --mount option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled",
            ));
        }
        let rc = state.run_config.clone();
        let cl = match (&run.cmd, run.heredocs.as_slice()) {
            // `RUN <<EOF` alone: the heredoc is the script (as BuildKit runs it).
            (CommandLine::Shell(s), [doc]) if s.trim_start().starts_with("<<") => {
                CommandLine::Shell(doc.content.clone())
            }
            (cl, _) => cl.clone(),
        };
        let cmd = resolve_cmd_line(&cl, &rc).unwrap_or_default();
        let build_env = state.args.filter_allowed(&rc.env);
        let mut save_cmd = cmd.clone();
        if !build_env.is_empty() {
            let mut kept: Vec<String> = build_env
                .iter()
                .filter(|e| {
                    state
                        .args
                        .referenced_or_not_builtin(e.split('=').next().unwrap_or(""))
                })
                .cloned()
                .collect();
            kept.sort();
            let mut prefixed = vec![format!("|{}", kept.len())];
            prefixed.extend(kept);
            prefixed.extend(cmd.iter().cloned());
            save_cmd = prefixed;
        }
        let mut probe_config = rc.clone();
        probe_config.cmd = Some(save_cmd.clone());
        probe_config.args_escaped = None;
        if !save_cmd.is_empty() {
            probe_config.entrypoint = None;
        }
        let key = cache::key(&state.image_id, &probe_config);
        if self.probe(out, state, &key, &probe_config).await? {
            return Ok(());
        }
        let mut run_config = rc.clone();
        run_config.cmd = Some(cmd.clone());
        run_config.args_escaped = None;
        run_config.env.extend(build_env);
        if !save_cmd.is_empty() {
            run_config.entrypoint = Some(vec![String::new()]);
        }
        run_config.healthcheck = Some(HealthConfig {
            test: Some(vec!["NONE".to_string()]),
            ..Default::default()
        });
        let mut host_config = self.req.host_config.clone();
        if !self.req.network_mode.is_empty() {
            host_config.network_mode = self.req.network_mode.clone();
        }
        let request = StepRun {
            image: state.image_id.clone(),
            config: run_config,
            host_config,
            remove: self.req.rm || self.req.force_rm,
            force_remove: self.req.force_rm,
        };
        let (mut rx, Empty) =
            endpoint::download_from_node::<api::BuildRun>(self.client(), &self.node, &request)
                .await?;
        let mut done: Option<StepDone> = None;
        loop {
            // A quiet command may run for long: stop (and so cancel the step, whose node then
            // removes its container) as soon as the client is gone.
            let event = tokio::select! {
                event = rx.next_json::<StepEvent>() => event,
                why = out.gone() => return Err(Failure::Bus(why)),
            };
            let Some(event) = event else { break };
            match event? {
                StepEvent::Started { id } => {
                    out.line(format!(" ---> Running in {}\n", short(&id)))
                        .await?
                }
                // dockerd's stderr writer wraps what a step writes to stderr in red.
                StepEvent::Output { text, stderr: true } => {
                    out.line(format!("\u{1b}[91m{text}\u{1b}[0m")).await?
                }
                StepEvent::Output { text, .. } => out.line(text).await?,
                StepEvent::Done(d) => done = Some(d),
            }
        }
        let done = done.ok_or_else(|| {
            Failure::Bus(BusError::unavailable(format!(
                "runtime node {} ended the RUN step without a result",
                self.node
            )))
        })?;
        if done.exit_code != 0 {
            if done.removed {
                // `--force-rm`: dockerd says so before the error.
                out.line(format!(
                    "Removing intermediate container {}\n",
                    short(&done.id)
                ))
                .await?;
            }
            return Err(Failure::Code {
                message: format!(
                    "The command '{}' returned a non-zero code: {}",
                    cmd.join(" "),
                    done.exit_code
                ),
                code: done.exit_code,
            });
        }
        self.finish_step(out, state, done, &probe_config, &key)
            .await
    }

    /// WORKDIR: the directory is created in the image (a layer when it did not exist).
    pub(super) async fn workdir(
        &mut self,
        out: &mut Output,
        state: &mut State,
    ) -> Result<(), Failure> {
        let dir = state.run_config.working_dir.clone();
        let mut probe_config = state.run_config.clone();
        let mut cmd = shell_of(&probe_config);
        cmd.push(format!("#(nop) WORKDIR {dir}"));
        probe_config.cmd = Some(cmd);
        let key = cache::key(&state.image_id, &probe_config);
        if self.probe(out, state, &key, &probe_config).await? {
            return Ok(());
        }
        let empty = self.dir.join(format!("workdir-{:016x}.tar", rand_u64()));
        let done = {
            let f = std::fs::File::create(&empty).map_err(|e| internal("workdir", e))?;
            let mut b = tar::Builder::new(f);
            b.finish().map_err(|e| internal("workdir", e))?;
            drop(b);
            let r = self.upload_copy(state, &empty, &dir, None, "").await;
            let _ = std::fs::remove_file(&empty);
            r?
        };
        out.line(format!(" ---> Running in {}\n", short(&done.id)))
            .await?;
        self.finish_step(out, state, done, &probe_config, &key)
            .await
    }

    /// A step that ran in a container: says the container went (when it did) and commits.
    async fn finish_step(
        &mut self,
        out: &mut Output,
        state: &mut State,
        done: StepDone,
        probe_config: &wharf_bus::container::ContainerConfig,
        key: &str,
    ) -> Result<(), Failure> {
        if done.removed {
            out.line(format!(
                "Removing intermediate container {}\n",
                short(&done.id)
            ))
            .await?;
        }
        self.commit(state, &done.id, probe_config, done.layer, key)
            .await
    }

    /// Sends a step tar to the node (`build.copy`).
    async fn upload_copy(
        &self,
        state: &State,
        tar_path: &Path,
        dest: &str,
        file_name: Option<String>,
        chown: &str,
    ) -> Result<StepDone, Failure> {
        let request = StepCopy {
            image: state.image_id.clone(),
            config: state.run_config.clone(),
            dest: dest.to_string(),
            working_dir: state.run_config.working_dir.clone(),
            file_name,
            chown: chown.to_string(),
            remove: self.req.rm || self.req.force_rm,
        };
        let (mut tx, Empty) =
            endpoint::upload_to_node::<api::BuildCopy>(self.client(), &self.node, &request).await?;
        tx.send_file(tar_path).await?;
        Ok(tx.finish_json::<StepDone>().await?)
    }

    pub(super) async fn copy_step(
        &mut self,
        out: &mut Output,
        state: &mut State,
        spec: &CopySpec,
        add: bool,
    ) -> Result<(), Failure> {
        let name = if add { "ADD" } else { "COPY" };
        let chmod = match spec.chmod.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(copy::parse_chmod(c).map_err(invalid)?),
            None => None,
        };
        let dest = spec.dest.clone();
        let from = spec.from.clone().filter(|f| !f.is_empty());
        // Where the sources are read: the context, or a tree exported from an image.
        let sources = match &from {
            None => {
                let mut sources = Vec::new();
                let mut local = Vec::new();
                for s in &spec.sources {
                    if add && (s.starts_with("http://") || s.starts_with("https://")) {
                        sources.push(self.download(out, s, &dest).await?);
                    } else if !add && (s.starts_with("http://") || s.starts_with("https://")) {
                        return Err(invalid(format!(
                            "{name} failed: source can't be a URL for COPY"
                        )));
                    } else {
                        local.push(s.clone());
                    }
                }
                if !local.is_empty() {
                    let found = copy::context_sources(&self.ctx, &local)
                        .map_err(|e| invalid(format!("{name} failed: {e}")))?;
                    sources.extend(found);
                }
                sources
            }
            Some(f) => self.export_from(out, f, &spec.sources).await?,
        };
        if sources.len() > 1 && !dest.ends_with('/') {
            return Err(invalid(format!(
                "When using {name} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        let chown = spec.chown.clone().unwrap_or_default();
        let chown_comment = if chown.is_empty() {
            String::new()
        } else {
            format!("--chown={chown}")
        };
        let hash = copy::sources_hash(&sources);
        let comment = format!("{name} {chown_comment}{hash} in {dest} ");
        let mut probe_config = state.run_config.clone();
        let mut cmd = shell_of(&probe_config);
        cmd.push(format!("#(nop) {comment}"));
        probe_config.cmd = Some(cmd);
        let key = cache::key(&state.image_id, &probe_config);
        if self.probe(out, state, &key, &probe_config).await? {
            return Ok(());
        }
        let tar_path = self.dir.join(format!("copy-{:016x}.tar", rand_u64()));
        let dest_is_dir = dest.ends_with('/') || sources.len() > 1;
        let preserve_owner = from.is_some() && chown.is_empty();
        let tp = tar_path.clone();
        let srcs = sources.clone();
        let written = tokio::task::spawn_blocking(move || {
            copy::write_step_tar(&srcs, add, dest_is_dir, chmod, &tp, preserve_owner)
        })
        .await
        .map_err(|e| internal("copy", e))?
        .map_err(|e| internal(&format!("{name} failed"), e));
        let done = match written {
            Ok(st) => {
                self.upload_copy(state, &tar_path, &dest, st.file_name, &chown)
                    .await
            }
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&tar_path).await;
        let done = done.map_err(|f| match f {
            Failure::Bus(e) if e.kind == ErrorKind::Invalid || e.kind == ErrorKind::NotFound => {
                Failure::Bus(BusError::new(e.kind, e.message))
            }
            other => other,
        })?;
        self.commit(state, "", &probe_config, done.layer, &key)
            .await
    }
}
