//! `docker exec`: an extra process in a running container, run by its own exec-mode shim
//! (bundle `<container>/exec/<exec-id>`). Exec records live in memory, as dockerd keeps them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wharf_bus::api;
use wharf_bus::container::{
    ExecConfig, ExecCreateRequest, ExecCreated, ExecInspectResponse, ExecProcessConfig,
    ExecStartRequest, StreamInfo,
};
use wharf_bus::endpoint::StreamRequest;
use wharf_bus::BusError;

use crate::cgroups;
use crate::shim::{ExecInto, ShimClient, ShimLaunch, ShimState, StartingShim};

use super::streams;
use super::{internal, runtime_spec, start, user, Container, Node};

/// One exec instance.
pub struct Exec {
    /// Becomes true once the exit code is recorded (an attached start ends its stream only
    /// then: the CLI reads the exit code right after the stream ends).
    pub exited: tokio::sync::watch::Sender<bool>,
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub dir: PathBuf,
    pub state: Mutex<ExecState>,
}

#[derive(Debug, Clone, Default)]
pub struct ExecState {
    pub started: bool,
    pub running: bool,
    pub pid: i32,
    pub exit_code: Option<i64>,
}

#[derive(Default)]
pub struct Execs(pub Mutex<HashMap<String, Arc<Exec>>>);

impl Execs {
    pub fn get(&self, id: &str) -> Option<Arc<Exec>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}

fn no_such_exec(id: &str) -> BusError {
    BusError::not_found(format!("No such exec instance: {id}"))
}

fn check_running(c: &Container) -> Result<(), BusError> {
    match wharf_bus::container::exec_refusal(&c.id, c.status().as_str()) {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

/// `POST /containers/{id}/exec`.
pub async fn create(node: &Arc<Node>, req: ExecCreateRequest) -> Result<ExecCreated, BusError> {
    let c = node.get(&req.id)?;
    if req.config.cmd.is_empty() {
        return Err(BusError::invalid("No exec command specified"));
    }
    check_running(&c)?;
    let id = hex::encode(rand::random::<[u8; 32]>());
    let exec = Arc::new(Exec {
        exited: tokio::sync::watch::channel(false).0,
        dir: c.paths.dir.join("exec").join(&id),
        id: id.clone(),
        container_id: c.id.clone(),
        config: req.config.clone(),
        state: Mutex::new(ExecState::default()),
    });
    node.execs
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), exec);
    let rec = c.snapshot();
    let action = format!("exec_create: {}", req.config.cmd.join(" "));
    node.publish_event(&rec, &action, &[("execID", id.clone())])
        .await;
    Ok(ExecCreated { id })
}

/// The exec's launch settings: the container's spec with the exec's process.
async fn launch_settings(
    node: &Arc<Node>,
    c: &Arc<Container>,
    exec: &Exec,
    tty: bool,
    console_size: Option<[u32; 2]>,
) -> Result<ShimLaunch, BusError> {
    let rec = c.snapshot();
    let paths = c.paths.clone();
    let config = exec.config.clone();
    let layout = node.cgroups.clone();
    let exec_dir = exec.dir.clone();
    let id = exec.id.clone();
    let node = node.clone();
    tokio::task::spawn_blocking(move || -> Result<ShimLaunch, BusError> {
        let user_spec = if config.user.is_empty() {
            rec.config.user.clone()
        } else {
            config.user.clone()
        };
        let resolved = user::resolve(
            &paths.rootfs(),
            &user_spec,
            rec.host_config.group_add.as_deref().unwrap_or_default(),
        )
        .map_err(|m| BusError::invalid(format!("unable to find user {user_spec}: {m}")))?;
        // The container's spec with the exec's process (its mounts and namespaces are unused).
        let mut exec_rec = rec.clone();
        exec_rec.path = config.cmd[0].clone();
        exec_rec.args = config.cmd[1..].to_vec();
        exec_rec.config.tty = tty;
        exec_rec.config.env.extend(config.env.iter().cloned());
        if !config.working_dir.is_empty() {
            exec_rec.config.working_dir = config.working_dir.clone();
        }
        if config.privileged {
            exec_rec.host_config.privileged = true;
        }
        // (The exec joins the container's user namespace, if any, with the others.)
        let spec = runtime_spec::spec(&exec_rec, &paths, &resolved, None, None)?;
        let seccomp = start::compiled_seccomp(&node, &spec)?;
        std::fs::create_dir_all(&exec_dir).map_err(|e| internal("cannot create the exec", e))?;
        let cgroup_dirs = match &layout {
            Some(l) => cgroups::open(l, &rec.cgroup_path())
                .map(|g| g.dirs())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(ShimLaunch {
            id,
            spec,
            rootfs: paths.rootfs(),
            log_path: exec_dir.join("unused-json.log"),
            log_max_size: None,
            log_max_files: 1,
            tty,
            open_stdin: config.attach_stdin,
            stdin_once: false,
            console_size: console_size.map(|[h, w]| (h as u16, w as u16)),
            cgroup_dirs,
            no_log: true,
            exec: Some(ExecInto { pid: rec.state.pid }),
            seccomp,
        })
    })
    .await
    .map_err(|e| internal("exec", e))?
}

async fn spawn_and_start(
    node: &Arc<Node>,
    c: &Arc<Container>,
    exec: &Arc<Exec>,
    req: &ExecStartRequest,
    attach: Option<(bool, bool, bool)>,
) -> Result<Option<tokio::net::UnixStream>, BusError> {
    check_running(c)?;
    {
        let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.started {
            return Err(BusError::conflict(format!(
                "Error: Exec command {} has already run",
                exec.id
            )));
        }
        st.started = true;
    }
    // The process gets a terminal when the exec was created with one, as in dockerd; the
    // start's Tty only says how the gateway frames the output.
    let tty = exec.config.tty;
    // The shim process starts while the launch is put together.
    let starting = StartingShim::start(&node.options.shim_binary, &exec.dir)
        .map_err(|e| internal("cannot start the exec's shim", e))?;
    let launch = launch_settings(
        node,
        c,
        exec,
        tty,
        req.console_size.or(exec.config.console_size),
    )
    .await?;
    let shim = starting
        .launch(&launch)
        .await
        .map_err(|e| internal("cannot start the exec's shim", e))?;
    let stream = match attach {
        Some((i, o, e)) => Some(
            shim.attach(i, o, e)
                .await
                .map_err(|e| internal("cannot attach to the exec", e))?,
        ),
        None => None,
    };
    match shim.start().await {
        Ok(state) => {
            let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
            st.running = true;
            st.pid = state.pid;
        }
        Err(e) => {
            let message = format!("OCI runtime exec failed: exec failed: unable to start container process: {e}: unknown");
            // dockerd records 126 for any exec that could not start.
            let code = 126;
            exec.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .exit_code = Some(code);
            let _ = std::fs::remove_dir_all(&exec.dir);
            return Err(BusError::invalid(message));
        }
    }
    let rec = c.snapshot();
    let action = format!("exec_start: {}", exec.config.cmd.join(" "));
    node.publish_event(&rec, &action, &[("execID", exec.id.clone())])
        .await;
    tokio::spawn(monitor(node.clone(), c.clone(), exec.clone(), shim));
    Ok(stream)
}

async fn monitor(node: Arc<Node>, c: Arc<Container>, exec: Arc<Exec>, shim: ShimClient) {
    let state: Option<ShimState> = match shim.wait().await {
        Ok(s) => Some(s),
        Err(_) => shim.read_state_file().ok(),
    };
    let code = state.and_then(|s| s.exit_code).unwrap_or(137) as i64;
    {
        let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
        st.running = false;
        st.exit_code = Some(code);
    }
    exec.exited.send_replace(true);
    let dir = exec.dir.clone();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    let rec = c.snapshot();
    node.publish_event(
        &rec,
        "exec_die",
        &[("execID", exec.id.clone()), ("exitCode", code.to_string())],
    )
    .await;
}

fn find(node: &Node, exec_id: &str) -> Result<(Arc<Exec>, Arc<Container>), BusError> {
    let exec = node
        .execs
        .get(exec_id)
        .ok_or_else(|| no_such_exec(exec_id))?;
    let c = node.get(&exec.container_id)?;
    Ok((exec, c))
}

/// `POST /exec/{id}/start` with `Detach`.
pub async fn start_detached(node: &Arc<Node>, req: ExecStartRequest) -> Result<(), BusError> {
    let (exec, c) = find(node, &req.exec_id)?;
    spawn_and_start(node, &c, &exec, &req, None).await.map(drop)
}

/// `POST /exec/{id}/start` attached: the exec's output as a stream, stdin through the
/// matching upload.
pub async fn start_attached(
    node: &Arc<Node>,
    req: ExecStartRequest,
    request: &StreamRequest<api::ExecStart>,
) -> Result<(), BusError> {
    let (exec, c) = find(node, &req.exec_id)?;
    let cfg = &exec.config;
    let tty = cfg.tty;
    let want_stdin = cfg.attach_stdin && !req.attach_id.is_empty();
    let slot = want_stdin.then(|| streams::slot_for(node, &req.attach_id, &cfg.detach_keys));
    let stream = spawn_and_start(
        node,
        &c,
        &exec,
        &req,
        Some((want_stdin, cfg.attach_stdout, cfg.attach_stderr)),
    )
    .await?
    .expect("attached");
    let sender = request
        .accept_download(&node.client, &StreamInfo { tty })
        .await?;
    streams::pump(
        node.clone(),
        stream,
        sender,
        slot,
        req.attach_id.clone(),
        Some(exec.exited.subscribe()),
    );
    Ok(())
}

/// Whether `id` is an exec of this node (for the stdin upload), with its shim bundle.
pub fn stdin_target(node: &Node, id: &str) -> Option<PathBuf> {
    node.execs.get(id).map(|e| e.dir.clone())
}

/// `GET /exec/{id}/json`.
pub fn inspect(node: &Node, exec_id: &str) -> Result<ExecInspectResponse, BusError> {
    let (exec, _c) = find(node, exec_id)?;
    let st = exec.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let cfg = &exec.config;
    Ok(ExecInspectResponse {
        id: exec.id.clone(),
        running: st.running,
        exit_code: st.exit_code,
        process_config: ExecProcessConfig {
            tty: cfg.tty,
            entrypoint: cfg.cmd.first().cloned().unwrap_or_default(),
            arguments: cfg.cmd.iter().skip(1).cloned().collect(),
            privileged: cfg.privileged,
            user: cfg.user.clone(),
        },
        open_stdin: cfg.attach_stdin,
        open_stderr: cfg.attach_stderr,
        open_stdout: cfg.attach_stdout,
        can_remove: false,
        container_id: exec.container_id.clone(),
        detach_keys: cfg.detach_keys.clone(),
        pid: st.pid.into(),
    })
}

/// `POST /exec/{id}/resize`. An exec without a TTY has nothing to resize: dockerd answers 200
/// and does nothing, and so do we.
pub async fn resize(
    node: &Arc<Node>,
    exec_id: &str,
    height: u16,
    width: u16,
) -> Result<(), BusError> {
    let (exec, _c) = find(node, exec_id)?;
    if !exec.config.tty {
        return Ok(());
    }
    ShimClient::open(&exec.dir)
        .resize(height, width)
        .await
        .map_err(|e| internal("cannot resize the exec's TTY", e))
}

/// Forgets the execs of a removed container.
pub fn forget_container(node: &Node, container_id: &str) {
    node.execs
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|_, e| e.container_id != container_id);
}

/// Runs `cmd` in the container as an exec nobody sees (health checks): its exit code and the
/// first 4 KiB of its output, or `None` for the code when it ran past `timeout` (then killed).
pub async fn run_captured(
    node: &Arc<Node>,
    c: &Arc<Container>,
    cmd: Vec<String>,
    timeout: std::time::Duration,
) -> Result<(Option<i64>, String), BusError> {
    use tokio::io::AsyncReadExt;
    let id = hex::encode(rand::random::<[u8; 32]>());
    let exec = Arc::new(Exec {
        exited: tokio::sync::watch::channel(false).0,
        dir: c.paths.dir.join("exec").join(&id),
        id,
        container_id: c.id.clone(),
        config: ExecConfig {
            attach_stdout: true,
            attach_stderr: true,
            cmd,
            ..Default::default()
        },
        state: Mutex::new(ExecState::default()),
    });
    let req = ExecStartRequest {
        exec_id: exec.id.clone(),
        attach_id: String::new(),
        tty: false,
        console_size: None,
    };
    let mut stream = spawn_and_start(node, c, &exec, &req, Some((false, true, true)))
        .await?
        .expect("attached");
    let mut raw = Vec::new();
    let read = tokio::time::timeout(timeout, stream.read_to_end(&mut raw)).await;
    if read.is_err() {
        let _ = ShimClient::open(&exec.dir).kill(9).await;
        return Ok((None, String::new()));
    }
    // The exit code follows the end of the output closely.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let code = loop {
        if let Some(code) = exec
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .exit_code
        {
            break code;
        }
        if std::time::Instant::now() > deadline {
            break -1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    // Output arrives framed with Docker's 8-byte headers.
    let mut text = Vec::new();
    let mut rest = &raw[..];
    while rest.len() >= 8 {
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = (8 + len).min(rest.len());
        text.extend_from_slice(&rest[8..end]);
        rest = &rest[end..];
    }
    text.truncate(4096);
    Ok((Some(code), String::from_utf8_lossy(&text).to_string()))
}
