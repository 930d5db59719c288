//! One build, as dockerd's classic builder runs it: stages of instructions, each step committed
//! as an image whose parent is the previous step's, RUN steps in containers on a runtime node,
//! COPY/ADD files carried to that node in a tar, and a shared cache index keyed as dockerd keys
//! its local cache.

pub mod args;
pub mod cache;
pub mod copy;
pub mod download;
pub mod meta;
pub mod output;
mod sources;
mod steps;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use serde_json::{json, Value};
use wharf_bus::api;
use wharf_bus::build::{BuildRequest, ContextAccept, ContextPull, FifoOffer};
use wharf_bus::container::{ContainerConfig, HealthConfig};
use wharf_bus::endpoint::{self, accept_download, Empty, Incoming};
use wharf_bus::image::{
    BlobIngest, ImageCommit, ImageRecord, ImageResolve, ImageTag, LayerInfo, LayerRef,
};
use wharf_bus::nodes::Roster;
use wharf_bus::progress::JsonMessage;
use wharf_bus::reference::{familiarize, Reference};
use wharf_bus::registry::{Platform, PullRequest, RegistryAuth};
use wharf_bus::stream::Receiver;
use wharf_bus::{BusError, ErrorKind};

use crate::context::{self, Context};
use crate::dockerfile::{
    self, env_list_lookup, expand_word, expands, Command, CommandLine, Healthcheck, Instruction,
    Plan,
};
use args::BuildArgs;
use cache::Cache;
use output::{Failure, Output};

const CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";

/// A builder process: its bus client, the shared cache and where builds keep their contexts.
pub struct Builder {
    pub client: async_nats::Client,
    pub cache: Cache,
    pub work_dir: PathBuf,
    /// Bounds of `ADD <url>` downloads, and the HTTP client that keeps them.
    pub download_limits: download::DownloadLimits,
    http: reqwest::Client,
    roster: tokio::sync::OnceCell<Roster>,
}

impl Builder {
    /// A builder keeping its builds under `<base>/<pid>`; what builders that are gone left
    /// under `base` (their build directories, after a crash) is removed first.
    pub async fn new(
        client: async_nats::Client,
        base: PathBuf,
        download_limits: download::DownloadLimits,
    ) -> anyhow::Result<Builder> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&base)?;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))?;
        remove_leftovers(&base);
        let work_dir = base.join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&work_dir);
        std::fs::create_dir(&work_dir)?;
        Ok(Builder {
            cache: Cache::open(&client).await,
            client,
            work_dir,
            http: download::client(&download_limits),
            download_limits,
            roster: tokio::sync::OnceCell::new(),
        })
    }

    async fn roster(&self) -> Result<&Roster, BusError> {
        self.roster
            .get_or_try_init(|| Roster::start(self.client.clone()))
            .await
    }

    /// The runtime node a build's steps run on: the one with the fewest running containers.
    async fn pick_node(&self) -> Result<String, BusError> {
        let nodes = self.roster().await?.nodes_or_discover().await;
        wharf_bus::nodes::least_loaded(&nodes)
            .map(|n| n.name.clone())
            .ok_or_else(|| BusError::unavailable("no runtime node is connected"))
    }
}

/// Removes the directories of builders (several may share `base`) whose process is gone.
fn remove_leftovers(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!("cannot remove {}: {e}", entry.path().display());
            }
        }
    }
}

/// `wharf.v1.builder.build`: accepts the stream at once, then builds.
pub async fn handle(builder: Arc<Builder>, incoming: Incoming<api::Build>) -> Result<(), BusError> {
    let tx = accept_download(&builder.client, &incoming, &Empty).await?;
    let req = incoming.request;
    tracing::info!(pid = std::process::id(), "build started");
    let mut out = Output::new(tx, req.quiet);
    let dir = builder.work_dir.join(format!("build-{:016x}", rand_u64()));
    let result = match tokio::fs::create_dir(&dir).await {
        Ok(()) => run(&builder, req, &dir, &mut out).await,
        Err(e) => Err(Failure::Bus(BusError::internal(format!(
            "cannot create the build directory: {e}"
        )))),
    };
    let dir2 = dir.clone();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir2)).await;
    match result {
        Ok(id) => {
            tracing::info!(image = %id, pid = std::process::id(), "build finished");
            out.succeed(&id).await
        }
        Err(failure) => {
            tracing::info!("build failed: {}", failure.message());
            out.fail(failure).await
        }
    }
    Ok(())
}

fn rand_u64() -> u64 {
    rand::random()
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::Bus(BusError::invalid(message))
}

fn internal(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Bus(BusError::internal(format!("{what}: {e}")))
}

/// The first 12 hex digits of an ID, as dockerd prints IDs.
pub fn short(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// Receives the context blob into `dir/context`.
async fn fetch_context(
    client: &async_nats::Client,
    req: &BuildRequest,
    dir: &Path,
) -> Result<Context, Failure> {
    let lost = |e: BusError| {
        Failure::Bus(BusError::new(
            e.kind,
            format!("build context: {}", e.message),
        ))
    };
    let root = dir.join("context");
    std::fs::create_dir(&root).map_err(|e| internal("cannot create the context directory", e))?;
    let dockerfile = req.dockerfile.clone();
    let received = |r: Result<Result<Context, context::ContextError>, tokio::task::JoinError>| {
        r.map_err(|e| internal("build context", e))?
            .map_err(|e| match e {
                context::ContextError::Io { .. } => internal("build context", e),
                other => invalid(other.to_string()),
            })
    };
    // From the gateway as the client sends it: through a FIFO on the gateway's host, over the
    // bus otherwise.
    let stream = {
        let fifo = fifo_offer(dir);
        let pull = ContextPull {
            fifo: fifo.as_ref().map(|(offer, _)| offer.clone()),
        };
        let (mut rx, accept) =
            Receiver::open(client, &req.context_source, wharf_bus::rpc::encode(&pull)?)
                .await
                .map_err(lost)?;
        let accept: ContextAccept = wharf_bus::rpc::decode(&accept).unwrap_or_default();
        if let (true, Some((_, pipe))) = (accept.fifo, fifo) {
            let r = tokio::task::spawn_blocking(move || {
                // The gateway has its end open (it said so): reads may wait from now on.
                let pipe_error = |e: nix::Error| context::ContextError::Io {
                    what: "the build context pipe".into(),
                    source: e.into(),
                };
                let flags = nix::fcntl::OFlag::from_bits_truncate(
                    nix::fcntl::fcntl(&pipe, nix::fcntl::FcntlArg::F_GETFL).map_err(pipe_error)?,
                );
                nix::fcntl::fcntl(
                    &pipe,
                    nix::fcntl::FcntlArg::F_SETFL(flags - nix::fcntl::OFlag::O_NONBLOCK),
                )
                .map_err(pipe_error)?;
                context::receive(
                    std::io::BufReader::with_capacity(1 << 20, pipe),
                    &root,
                    &dockerfile,
                )
            })
            .await;
            // The gateway ends the stream once the body is all written, or fails it (the
            // client went away mid-upload): that error explains a cut archive best.
            let end = tokio::time::timeout(std::time::Duration::from_secs(10), rx.next()).await;
            return match (received(r), end) {
                (_, Ok(Some(Err(e)))) => Err(lost(e)),
                (Ok(ctx), Ok(None)) => Ok(ctx),
                (Ok(_), _) => Err(lost(BusError::unavailable(
                    "the gateway did not confirm the end of the build context",
                ))),
                (Err(e), _) => Err(e),
            };
        }
        Box::pin(rx.into_stream())
    };
    let reader =
        tokio_util::io::StreamReader::new(stream.map_err(|e| std::io::Error::other(e.message)));
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    received(
        tokio::task::spawn_blocking(move || context::receive(bridge, &root, &dockerfile)).await,
    )
}

/// A FIFO in the build directory for the gateway to write the context into, when the
/// same-host shortcuts are on (`wharf_bus::image::host_id`), with its read end already open
/// (without waiting): the pipe then exists for the gateway to open, and what it writes stays
/// readable after it closes its end.
fn fifo_offer(dir: &Path) -> Option<(FifoOffer, std::fs::File)> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let host = wharf_bus::image::host_id()?;
    let path = dir.join("context.fifo");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).ok()?;
    let pipe = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .ok()?;
    let meta = pipe.metadata().ok()?;
    Some((
        FifoOffer {
            host,
            path,
            dev: meta.dev(),
            ino: meta.ino(),
        },
        pipe,
    ))
}

/// What an earlier stage left: its name and final image.
struct StageResult {
    name: Option<String>,
    image: String,
}

/// The state of the stage being built (dockerd's `dispatchState`).
struct State {
    name: Option<String>,
    /// The current image (`""` before the first commit of a `FROM scratch` stage).
    image_id: String,
    /// That image's config document (history, rootfs, platform).
    image_config: Value,
    /// That image's layer blobs.
    layers: Vec<LayerRef>,
    run_config: ContainerConfig,
    maintainer: String,
    cmd_set: bool,
    args: BuildArgs,
    /// A miss turns off probing for the rest of the stage.
    cache_busted: bool,
    /// The stage's base was `scratch`.
    scratch: bool,
}

impl State {
    /// Moves the stage onto `rec` (a base image, or a cached step's image).
    fn adopt(&mut self, rec: &ImageRecord) {
        self.image_id = rec.id.clone();
        self.image_config = rec.config.clone();
        self.layers = rec.layer_refs();
    }
}

struct Build<'a> {
    builder: &'a Builder,
    req: BuildRequest,
    ctx: Context,
    dir: PathBuf,
    node: String,
    escape: char,
    step: usize,
    total: usize,
    stages: Vec<StageResult>,
}

async fn run(
    builder: &Builder,
    req: BuildRequest,
    dir: &Path,
    out: &mut Output,
) -> Result<String, Failure> {
    let started = std::time::Instant::now();
    let ctx = fetch_context(&builder.client, &req, dir).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "context received");
    let df = dockerfile::parse_named(&ctx.dockerfile_text, &ctx.dockerfile_name)
        .map_err(|e| invalid(e.to_string()))?;
    let mut plan: Plan = dockerfile::instructions(&df).map_err(|e| invalid(e.to_string()))?;
    if plan.stages.is_empty() {
        return Err(invalid(
            "dockerfile contains no stages to build".to_string(),
        ));
    }
    if !req.target.is_empty() {
        let target = req.target.to_ascii_lowercase();
        match plan
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(target.as_str()))
        {
            Some(i) => plan.stages.truncate(i + 1),
            None => {
                return Err(invalid(format!(
                    "failed to reach build target {} in Dockerfile",
                    req.target
                )))
            }
        }
    }
    // `--label`s become LABEL steps at the end of the last stage, never expanded.
    let mut unexpanded = 0;
    if let Some(last) = plan.stages.last_mut() {
        for (k, v) in &req.labels {
            last.commands.push(Instruction {
                keyword: "label".into(),
                command: Command::Label(vec![(k.clone(), v.clone())]),
                original: format!("LABEL {k}={v}"),
                start_line: 0,
                end_line: 0,
            });
            unexpanded += 1;
        }
    }
    let node = builder.pick_node().await?;
    tracing::debug!(elapsed = ?started.elapsed(), "parsed, node chosen");
    let total = plan.meta_args.len()
        + plan.stages.len()
        + plan.stages.iter().map(|s| s.commands.len()).sum::<usize>();
    let mut b = Build {
        builder,
        ctx,
        dir: dir.to_path_buf(),
        node,
        escape: plan.escape,
        step: 1,
        total,
        stages: Vec::new(),
        req,
    };
    for w in &df.warnings {
        out.line(format!("{w}\n")).await?;
    }
    let mut args = BuildArgs::new(b.req.build_args.clone());
    for meta in &plan.meta_args {
        b.print_step(out, &meta.original).await?;
        let allowed = args.all_allowed();
        let env: Vec<String> = allowed.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let expanded = meta
            .expand(&env_list_lookup(&env), b.escape)
            .map_err(|e| invalid(e.to_string()))?;
        if let Command::Arg(list) = expanded.command {
            for (k, v) in list {
                args.add(&k, v.clone());
                args.add_meta(&k, v);
            }
        }
    }
    let mut last: Option<State> = None;
    let stage_count = plan.stages.len();
    for (si, stage) in plan.stages.iter().enumerate() {
        if let Some(name) = &stage.name {
            if b.stages.iter().any(|s| s.name.as_deref() == Some(name)) {
                return Err(invalid(format!("{name} stage name already used")));
            }
        }
        b.print_step(out, &stage.original).await?;
        let mut state = b.begin_stage(out, stage, &args).await?;
        out.line(format!(" ---> {}\n", short(&state.image_id)))
            .await?;
        let n = stage.commands.len();
        for (ci, cmd) in stage.commands.iter().enumerate() {
            b.print_step(out, &cmd.original).await?;
            let expand = !(si + 1 == stage_count && ci + unexpanded >= n);
            b.dispatch(out, &mut state, cmd, expand).await?;
            tracing::debug!(elapsed = ?started.elapsed(), step = b.step - 1, "step done");
            state.run_config.image = state.image_id.clone();
            out.line(format!(" ---> {}\n", short(&state.image_id)))
                .await?;
        }
        if !state.image_id.is_empty() {
            out.image_id(&state.image_id).await?;
        }
        args.merge_referenced(&state.args);
        b.stages.push(StageResult {
            name: state.name.clone(),
            image: state.image_id.clone(),
        });
        last = Some(state);
    }
    let unused = args.unused();
    if !unused.is_empty() {
        out.line(format!(
            "[Warning] One or more build-args [{}] were not consumed\n",
            unused.join(" ")
        ))
        .await?;
    }
    let id = last.map(|s| s.image_id).unwrap_or_default();
    if id.is_empty() {
        return Err(Failure::Bus(BusError::internal(
            "No image was generated. Is your Dockerfile empty?",
        )));
    }
    out.line(format!("Successfully built {}\n", short(&id)))
        .await?;
    tracing::debug!(elapsed = ?started.elapsed(), "built");
    for tag in &b.req.tags.clone() {
        let Empty = endpoint::call::<api::ImageTagName>(
            &b.builder.client,
            &ImageTag {
                source: id.clone(),
                target: tag.clone(),
            },
        )
        .await?;
        out.line(format!("Successfully tagged {}\n", familiarize(tag)))
            .await?;
    }
    Ok(id)
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub fn quote_slice(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| wharf_bus::error::go_quote(s))
        .collect();
    format!("[{}]", quoted.join(" "))
}

impl Build<'_> {
    async fn print_step(&mut self, out: &mut Output, text: &str) -> Result<(), Failure> {
        out.line(format!("Step {}/{} : {}\n", self.step, self.total, text))
            .await?;
        self.step += 1;
        Ok(())
    }

    fn client(&self) -> &async_nats::Client {
        &self.builder.client
    }

    async fn resolve(&self, name: &str) -> Result<ImageRecord, BusError> {
        endpoint::call::<api::ImageResolveName>(
            self.client(),
            &ImageResolve {
                name: name.to_string(),
            },
        )
        .await
    }

    /// Credentials the client sent for the registry of `reference`.
    fn auth_for(&self, reference: &Reference) -> Option<RegistryAuth> {
        wharf_bus::registry::auth_for_domain(&self.req.auth, &reference.domain)
    }

    /// A base image (or `COPY --from` image) by reference: from the store, or pulled (always
    /// with `--pull`), the pull's progress shown as dockerd shows it.
    async fn image(
        &self,
        out: &mut Output,
        name: &str,
        platform: Option<&str>,
    ) -> Result<ImageRecord, Failure> {
        let reference = Reference::parse(name)
            .map_err(|e| invalid(e.message))?
            .with_default_tag();
        let full = reference.to_string();
        if !self.req.pull {
            match self.resolve(&full).await {
                Ok(rec) => return Ok(rec),
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let platform = match platform.or(self.req.platform.as_deref()) {
            Some(p) => Some(
                Platform::parse(p)
                    .ok_or_else(|| invalid(format!("failed to parse platform {p}")))?,
            ),
            None => None,
        };
        let request = PullRequest {
            reference: full.clone(),
            platform,
            auth: self.auth_for(&reference),
        };
        let (mut rx, Empty) = endpoint::download::<api::Pull>(self.client(), &request).await?;
        while let Some(m) = rx.next_json::<JsonMessage>().await {
            out.send(m?).await?;
        }
        Ok(self.resolve(&full).await?)
    }

    async fn begin_stage(
        &mut self,
        out: &mut Output,
        stage: &dockerfile::Stage,
        args: &BuildArgs,
    ) -> Result<State, Failure> {
        let meta = args.all_meta();
        let lookup = |k: &str| meta.get(k).cloned();
        let name = stage
            .expanded_base_name(&lookup, self.escape)
            .map_err(invalid)?;
        let platform = match &stage.platform {
            Some(p) => Some(expand_word(p, &lookup, self.escape).map_err(|e| {
                invalid(format!("failed to process arguments for platform {p}: {e}"))
            })?),
            None => None,
        };
        let mut state = State {
            name: stage.name.clone(),
            image_id: String::new(),
            image_config: json!({}),
            layers: Vec::new(),
            run_config: ContainerConfig::default(),
            maintainer: String::new(),
            cmd_set: false,
            args: args.for_stage(),
            cache_busted: false,
            scratch: false,
        };
        let lower = name.to_ascii_lowercase();
        let record = if let Some(s) = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            if s.image.is_empty() {
                None
            } else {
                Some(self.resolve(&s.image).await?)
            }
        } else if name == "scratch" {
            None
        } else {
            Some(self.image(out, &name, platform.as_deref()).await?)
        };
        match record {
            Some(rec) => {
                state.adopt(&rec);
                if let Some(c) = rec.config.get("config").filter(|c| c.is_object()) {
                    state.run_config = serde_json::from_value(c.clone()).unwrap_or_default();
                }
            }
            None => state.scratch = true,
        }
        if !state
            .run_config
            .env
            .iter()
            .any(|e| e.split('=').next() == Some("PATH"))
        {
            state.run_config.env.push(format!("PATH={}", DEFAULT_PATH));
        }
        state.run_config.open_stdin = false;
        state.run_config.stdin_once = false;
        if let Some(triggers) = state.run_config.on_build.take().filter(|t| !t.is_empty()) {
            out.line(format!(
                "# Executing {} build trigger{}\n",
                triggers.len(),
                if triggers.len() > 1 { "s" } else { "" }
            ))
            .await?;
            for trigger in triggers {
                state.run_config.image = state.image_id.clone();
                let df = dockerfile::parse(&trigger).map_err(|e| invalid(e.to_string()))?;
                if df.nodes.len() != 1 {
                    return Err(invalid("onbuild trigger should be a single expression"));
                }
                let cmd =
                    dockerfile::parse_command(&df.nodes[0]).map_err(|e| invalid(e.to_string()))?;
                self.dispatch(out, &mut state, &cmd, true).await?;
            }
        }
        state.run_config.image = state.image_id.clone();
        Ok(state)
    }

    /// The environment instructions expand with: the config's, then the ARGs it does not set.
    fn expansion_env(state: &State) -> Vec<String> {
        let mut env = state.run_config.env.clone();
        env.extend(state.args.filter_allowed(&state.run_config.env));
        env
    }

    async fn dispatch(
        &mut self,
        out: &mut Output,
        state: &mut State,
        instruction: &Instruction,
        expand: bool,
    ) -> Result<(), Failure> {
        let instruction = if expand && expands(&instruction.keyword) {
            let env = Self::expansion_env(state);
            let lookup = env_list_lookup(&env);
            let expanded = instruction.expand(&lookup, self.escape);
            expanded.map_err(|e| invalid(e.to_string()))?
        } else {
            instruction.clone()
        };
        let rc = &mut state.run_config;
        match &instruction.command {
            Command::Env(kv) => {
                let mut message = String::from("ENV");
                for (k, v) in kv {
                    let var = format!("{k}={v}");
                    message.push(' ');
                    message.push_str(&var);
                    match rc
                        .env
                        .iter_mut()
                        .find(|e| e.split('=').next() == Some(k.as_str()))
                    {
                        Some(slot) => *slot = var,
                        None => rc.env.push(var),
                    }
                }
                self.commit_meta(out, state, &message).await
            }
            Command::Maintainer(m) => {
                state.maintainer = m.clone();
                self.commit_meta(out, state, &format!("MAINTAINER {m}"))
                    .await
            }
            Command::Label(kv) => {
                let mut message = String::from("LABEL");
                for (k, v) in kv {
                    rc.labels.insert(k.clone(), v.clone());
                    message.push_str(&format!(" {k}={v}"));
                }
                self.commit_meta(out, state, &message).await
            }
            Command::Onbuild(expr) => {
                rc.on_build.get_or_insert_with(Vec::new).push(expr.clone());
                self.commit_meta(out, state, &format!("ONBUILD {expr}"))
                    .await
            }
            Command::Workdir(p) => {
                if p.is_empty() {
                    return Err(invalid("cannot normalize nothing"));
                }
                rc.working_dir = if p.starts_with('/') {
                    p.clone()
                } else {
                    wharf_bus::paths::clean_absolute(&format!("{}/{}", rc.working_dir, p))
                };
                self.workdir(out, state).await
            }
            Command::Run(run) => self.run_step(out, state, run).await,
            Command::Cmd(cl) => {
                let cmd = resolve_cmd_line(cl, rc);
                rc.cmd = cmd.clone();
                rc.args_escaped = None;
                if !matches!(cl, CommandLine::Empty) {
                    state.cmd_set = true;
                }
                let q = quote_slice(&cmd.unwrap_or_default());
                self.commit_meta(out, state, &format!("CMD {q}")).await
            }
            Command::Entrypoint(cl) => {
                let ep = resolve_cmd_line(cl, rc);
                rc.entrypoint = ep.clone();
                rc.args_escaped = None;
                if !state.cmd_set {
                    rc.cmd = None;
                }
                let q = quote_slice(&ep.unwrap_or_default());
                self.commit_meta(out, state, &format!("ENTRYPOINT {q}"))
                    .await
            }
            Command::Healthcheck(h) => {
                if let Some(old) = rc.healthcheck.as_ref().and_then(|h| h.test.clone()) {
                    if old.first().map(String::as_str) != Some("NONE") && !old.is_empty() {
                        out.line(format!(
                            "Note: overriding previous HEALTHCHECK: [{}]\n",
                            old.join(" ")
                        ))
                        .await?;
                    }
                }
                let hc = health_config(h);
                let message = meta::healthcheck_comment(&hc);
                rc.healthcheck = Some(hc);
                self.commit_meta(out, state, &message).await
            }
            Command::Expose(ports) => {
                let keys = meta::parse_ports(ports).map_err(invalid)?;
                let set = rc.exposed_ports.get_or_insert_with(BTreeMap::new);
                for k in keys {
                    set.insert(k, json!({}));
                }
                self.commit_meta(out, state, &format!("EXPOSE {}", ports.join(" ")))
                    .await
            }
            Command::User(u) => {
                rc.user = u.clone();
                self.commit_meta(out, state, &format!("USER {u}")).await
            }
            Command::Volume(vs) => {
                let set = rc.volumes.get_or_insert_with(BTreeMap::new);
                for v in vs {
                    if v.is_empty() {
                        return Err(invalid("VOLUME specified can not be an empty string"));
                    }
                    set.insert(v.clone(), json!({}));
                }
                self.commit_meta(out, state, &format!("VOLUME [{}]", vs.join(" ")))
                    .await
            }
            Command::StopSignal(s) => {
                meta::check_signal(s).map_err(invalid)?;
                rc.stop_signal = Some(s.clone());
                self.commit_meta(out, state, &format!("STOPSIGNAL {s}"))
                    .await
            }
            Command::Arg(list) => {
                let mut message = String::from("ARG ");
                for (i, (k, v)) in list.iter().enumerate() {
                    if i > 0 {
                        message.push(' ');
                    }
                    message.push_str(k);
                    if let Some(v) = v {
                        message.push('=');
                        message.push_str(v);
                    }
                    state.args.add(k, v.clone());
                }
                self.commit_meta(out, state, &message).await
            }
            Command::Shell(sh) => {
                rc.shell = Some(sh.clone());
                self.commit_meta(out, state, &format!("SHELL [{}]", sh.join(" ")))
                    .await
            }
            Command::Copy(spec) => self.copy_step(out, state, spec, false).await,
            Command::Add(spec) => self.copy_step(out, state, spec, true).await,
        }
    }

    /// The config a metadata step is cached and recorded under: the command
    /// `<shell> "#(nop) " "<comment>"`.
    fn comment_config(state: &State, comment: &str) -> ContainerConfig {
        let mut c = state.run_config.clone();
        let mut cmd = shell_of(&c);
        cmd.push("#(nop) ".to_string());
        cmd.push(comment.to_string());
        c.cmd = Some(cmd);
        c
    }

    /// Looks the step up in the cache; on a hit the state moves to the cached image.
    async fn probe(
        &mut self,
        out: &mut Output,
        state: &mut State,
        key: &str,
        probe_config: &ContainerConfig,
    ) -> Result<bool, Failure> {
        if self.req.no_cache {
            return Ok(false);
        }
        if state.cache_busted {
            return self.cache_from(out, state, probe_config, key).await;
        }
        let hit = match self.builder.cache.get(key).await {
            Some(entry) if entry.parent == state.image_id => self.resolve(&entry.image).await.ok(),
            _ => None,
        };
        let Some(rec) = hit else {
            state.cache_busted = true;
            return self.cache_from(out, state, probe_config, key).await;
        };
        out.line(" ---> Using cache\n").await?;
        state.adopt(&rec);
        Ok(true)
    }

    /// `--cache-from`, for a step the build cache has no image for: an image named there whose
    /// history continues the current image's (the same entries, the current layers first) with
    /// this step (`probe_config`'s command) gives the step's result, as in dockerd's classic
    /// builder: that image itself when the step is its last, else an image made of the current
    /// one and that image's layer for the step, with its history entry's time. Images that
    /// are not here are passed over.
    async fn cache_from(
        &mut self,
        out: &mut Output,
        state: &mut State,
        probe_config: &ContainerConfig,
        key: &str,
    ) -> Result<bool, Failure> {
        if self.req.cache_from.is_empty() || self.req.no_cache {
            return Ok(false);
        }
        let step = probe_config.cmd.clone().unwrap_or_default().join(" ");
        let entries = |config: &Value| -> Vec<(String, bool)> {
            config["history"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| {
                    let by = h["created_by"].as_str().unwrap_or("").to_string();
                    (by, h["empty_layer"].as_bool().unwrap_or(false))
                })
                .collect()
        };
        let diff_ids = |config: &Value| -> Vec<String> {
            config["rootfs"]["diff_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        };
        let (have, have_layers) = (entries(&state.image_config), diff_ids(&state.image_config));
        for name in self.req.cache_from.clone() {
            let Ok(target) = self.resolve(&name).await else {
                continue;
            };
            let (theirs, their_layers) = (entries(&target.config), diff_ids(&target.config));
            let at = have.len();
            let continues = theirs.len() > at
                && theirs[..at] == have[..]
                && their_layers.starts_with(&have_layers)
                && theirs[at].0 == step;
            if !continues {
                continue;
            }
            out.line(" ---> Using cache\n").await?;
            if theirs.len() == at + 1 {
                state.adopt(&target);
                return Ok(true);
            }
            let layer = match theirs[at].1 {
                true => None,
                false => {
                    let Some(l) = target.layers.get(have_layers.len()) else {
                        continue;
                    };
                    Some(l.clone())
                }
            };
            let created = target.config["history"][at]["created"]
                .as_str()
                .map(str::to_string);
            self.commit_at(state, "", probe_config, layer, key, created)
                .await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// A step that only changes the config: an image with an empty layer.
    async fn commit_meta(
        &mut self,
        out: &mut Output,
        state: &mut State,
        comment: &str,
    ) -> Result<(), Failure> {
        if state.image_id.is_empty() && !state.scratch {
            return Err(invalid(
                "Please provide a source image with `from` prior to commit",
            ));
        }
        let probe_config = Self::comment_config(state, comment);
        let key = cache::key(&state.image_id, &probe_config);
        if self.probe(out, state, &key, &probe_config).await? {
            return Ok(());
        }
        self.commit(state, "", &probe_config, None, &key).await
    }

    /// Commits the state's next image: `layer` on top of the current one (or an empty layer),
    /// recorded with `container_config` (the step's command) and `container`.
    async fn commit(
        &mut self,
        state: &mut State,
        container: &str,
        container_config: &ContainerConfig,
        layer: Option<LayerInfo>,
        cache_key: &str,
    ) -> Result<(), Failure> {
        self.commit_at(state, container, container_config, layer, cache_key, None)
            .await
    }

    /// [`Self::commit`], dated `created` when given (an image restored from `--cache-from`
    /// keeps its history entry's time).
    async fn commit_at(
        &mut self,
        state: &mut State,
        container: &str,
        container_config: &ContainerConfig,
        layer: Option<LayerInfo>,
        cache_key: &str,
        created: Option<String>,
    ) -> Result<(), Failure> {
        let p = &state.image_config;
        let created = created.unwrap_or_else(|| {
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        });
        let created_by = container_config.cmd.clone().unwrap_or_default().join(" ");
        let mut layers = state.layers.clone();
        if let Some(l) = &layer {
            layers.push(LayerRef {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
            });
        }
        let mut config = state.run_config.clone();
        config.image = state.image_id.clone();
        let image = wharf_bus::image::ChildImage {
            parent: p,
            diff_id: layer.as_ref().map(|l| l.diff_id.as_str()),
            created: &created,
            author: &state.maintainer,
            comment: "",
            created_by: &created_by,
            config: image_config_json(&config)?,
            container,
            container_config: serde_json::to_value(container_config)
                .map_err(|e| internal("image config", e))?,
        }
        .document();
        let raw = serde_json::to_vec(&image).map_err(|e| internal("image config", e))?;
        let digest = wharf_bus::digest::sha256_of(&raw);
        let request = BlobIngest {
            digest: digest.clone(),
            size: Some(raw.len() as u64),
            media_type: Some(CONFIG_MEDIA_TYPE.to_string()),
        };
        let (mut tx, Empty) =
            endpoint::upload::<api::BlobIngestStream>(self.client(), &request).await?;
        tx.send(Bytes::from(raw)).await?;
        let _: <api::BlobIngestStream as endpoint::Upload>::Result = tx.finish_json().await?;
        let rec = endpoint::call::<api::ImageCommitRecord>(
            self.client(),
            &ImageCommit {
                config: digest,
                layers: layers.clone(),
                manifest: None,
                tags: vec![],
                repo_digests: vec![],
                parent: (!state.image_id.is_empty()).then(|| state.image_id.clone()),
            },
        )
        .await?;
        // Stored even by --no-cache builds: a later build may use it.
        let entry = cache::Entry {
            image: rec.id.clone(),
            parent: state.image_id.clone(),
            description: created_by,
            size: layer.as_ref().map_or(0, |l| l.unpacked_size),
            created,
        };
        if let Err(e) = self.builder.cache.put(cache_key, &entry).await {
            tracing::warn!("{}", e.message);
        }
        state.image_id = rec.id;
        state.image_config = image;
        state.layers = layers;
        Ok(())
    }
}

/// An image's config as dockerd's builder writes it: `Labels` stays `null` until a label is set
/// (by the base image, `LABEL` or `--label`), where the typed config would write `{}`. (The
/// step's `container_config` has `{}`, in dockerd too.)
fn image_config_json(config: &ContainerConfig) -> Result<Value, Failure> {
    let mut json = serde_json::to_value(config).map_err(|e| internal("image config", e))?;
    if config.labels.is_empty() {
        json["Labels"] = Value::Null;
    }
    Ok(json)
}

/// Linux's default PATH, which dockerd gives stages whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The stage's SHELL, or `/bin/sh -c`.
fn shell_of(c: &ContainerConfig) -> Vec<String> {
    match &c.shell {
        Some(s) if !s.is_empty() => s.clone(),
        _ => vec!["/bin/sh".to_string(), "-c".to_string()],
    }
}

/// dockerd's `resolveCmdLine`: a shell form runs through the stage's SHELL.
fn resolve_cmd_line(cl: &CommandLine, c: &ContainerConfig) -> Option<Vec<String>> {
    match cl {
        CommandLine::Shell(s) => {
            let mut v = shell_of(c);
            v.push(s.clone());
            Some(v)
        }
        CommandLine::Exec(v) => Some(v.clone()),
        CommandLine::Empty => None,
    }
}

fn health_config(h: &Healthcheck) -> HealthConfig {
    match h {
        Healthcheck::None => HealthConfig {
            test: Some(vec!["NONE".to_string()]),
            ..Default::default()
        },
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            retries,
        } => HealthConfig {
            test: Some(test.clone()),
            interval: interval.as_nanos() as i64,
            timeout: timeout.as_nanos() as i64,
            start_period: start_period.as_nanos() as i64,
            start_interval: 0,
            retries: *retries as i32,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_config_without_labels_has_null_labels_as_dockerds() {
        let plain = image_config_json(&ContainerConfig::default()).unwrap();
        assert_eq!(plain.get("Labels"), Some(&Value::Null));
        let mut labelled = ContainerConfig::default();
        labelled.labels.insert("tier".into(), "web".into());
        assert_eq!(
            image_config_json(&labelled).unwrap()["Labels"],
            json!({"tier": "web"})
        );
    }

    #[test]
    fn leftovers_of_builders_that_are_gone_are_removed() {
        let base = tempfile::tempdir().unwrap();
        // Above any Linux pid_max: no such process.
        let gone = base.path().join("4194305");
        let alive = base.path().join(std::process::id().to_string());
        let other = base.path().join("notes");
        for d in [&gone, &alive, &other] {
            std::fs::create_dir_all(d.join("build-1/context")).unwrap();
        }
        remove_leftovers(base.path());
        assert!(!gone.exists(), "a dead builder's builds go");
        assert!(alive.join("build-1").exists(), "a live builder's stay");
        assert!(other.exists(), "what is not a builder's is left alone");
    }

    #[test]
    fn short_ids_are_twelve_hex_digits() {
        assert_eq!(short("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short(""), "");
    }
}
