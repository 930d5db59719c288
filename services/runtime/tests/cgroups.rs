//! The cgroup library against the real kernel (we run as root): limits land in the files the
//! kernel enforces, and the kernel then enforces them (OOM kill, fork failure, freezing).
//! Every group is created as `wharf/wharf-test-*` and removed by a guard even when a test fails.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use wharf_runtime::cgroups::{self, Cgroup, CgroupError, Layout, Resources};

const MIB: u64 = 1024 * 1024;

/// A test group; dropping it kills what is left in it and removes it.
struct Group {
    cgroup: Box<dyn Cgroup>,
}

impl Group {
    fn new(test: &str) -> Self {
        Self::in_layout(&Layout::detect().expect("detect cgroup layout"), test)
    }

    fn in_layout(layout: &Layout, test: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = format!(
            "wharf/wharf-test-{}-{}-{test}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Group {
            cgroup: cgroups::create(layout, &path).expect("create test cgroup"),
        }
    }
}

impl std::ops::Deref for Group {
    type Target = dyn Cgroup;
    fn deref(&self) -> &Self::Target {
        &*self.cgroup
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.cgroup.kill_all(Signal::SIGKILL);
        let _ = self.cgroup.thaw();
        if let Err(e) = self.cgroup.destroy() {
            eprintln!("cleanup of {} failed: {e}", self.cgroup.path());
        }
    }
}

/// A process this test started; dropping it kills it (by its PID) and reaps it.
struct Proc {
    child: Child,
    gate: Option<ChildStdin>,
}

impl Proc {
    /// `sh -c script` that waits for [`Proc::release`] before running `script`, so it can be
    /// put in a group first and everything it starts is born inside the group.
    fn gated(script: &str) -> Self {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("read _gate; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let mut p = Proc { child, gate: None };
        p.gate = p.child.stdin.take();
        p
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn release(&mut self) {
        let mut gate = self.gate.take().expect("released once");
        gate.write_all(b"go\n").expect("release gated process");
    }

    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn in_layout_file(group: &dyn Cgroup, name: &str) -> PathBuf {
    group
        .dirs()
        .into_iter()
        .map(|d| d.join(name))
        .find(|f| f.exists())
        .unwrap_or_else(|| panic!("no {name} in {:?}", group.dirs()))
}

fn read(file: &Path) -> String {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
        .trim()
        .to_string()
}

fn is_v1(layout: &Layout) -> bool {
    matches!(layout, Layout::V1 { .. })
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: Pid) -> u64 {
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn detection_finds_this_hosts_layout() {
    let layout = Layout::detect().unwrap();
    match &layout {
        Layout::V1 {
            controllers,
            unified,
        } => {
            for (name, mount) in controllers {
                assert!(
                    mount.join("cgroup.procs").exists(),
                    "{name} at {}",
                    mount.display()
                );
            }
            let memory = &controllers["memory"];
            assert!(memory.join("memory.limit_in_bytes").exists());
            if let Some(unified) = unified {
                assert!(unified.join("cgroup.controllers").exists());
            }
        }
        Layout::V2 { root } => assert!(root.join("cgroup.controllers").exists()),
    }
    // This development host is hybrid; say so when the suite runs elsewhere.
    if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        assert!(is_v1(&layout), "a v1 memory hierarchy means the v1 layout");
    }
}

#[test]
fn groups_must_live_under_wharf() {
    let layout = Layout::detect().unwrap();
    for bad in ["docker/x", "wharf", "wharf/../docker", "/wharf/x"] {
        assert!(matches!(
            cgroups::create(&layout, bad),
            Err(CgroupError::InvalidPath { .. })
        ));
    }
}

#[test]
fn added_process_shows_up_in_pids() {
    let group = Group::new("pids-list");
    let mut sleeper = Proc::gated("exec sleep 30");
    group.add_process(sleeper.pid()).unwrap();
    sleeper.release();
    assert_eq!(group.pids().unwrap(), vec![sleeper.pid()]);
    let membership = read(Path::new(&format!("/proc/{}/cgroup", sleeper.pid())));
    assert!(membership.contains(group.path().as_str()), "{membership}");
}

/// As runc does on a hybrid host, a v1 group is made in the named hierarchies (`name=systemd`)
/// and the controller-less cgroup2 hierarchy too, so the launcher moves the container into its
/// own group there and binds that, never the host's whole hierarchy, at /sys/fs/cgroup. A group
/// made before (live restore) without those directories still opens.
#[test]
fn v1_groups_include_the_named_and_cgroup2_hierarchies_as_runcs_do() {
    let layout = Layout::detect().unwrap();
    let Layout::V1 {
        controllers,
        unified,
    } = &layout
    else {
        return eprintln!("not cgroup v1; skipped");
    };
    let mut extra: Vec<PathBuf> = controllers
        .iter()
        .filter(|(name, _)| name.starts_with("name="))
        .map(|(_, root)| root.clone())
        .collect();
    extra.extend(unified.clone());
    if extra.is_empty() {
        return eprintln!("no named or cgroup2 hierarchy; skipped");
    }
    let group = Group::in_layout(&layout, "hybrid");
    let dirs = group.dirs();
    for root in &extra {
        let dir = root.join(group.path().as_str());
        assert!(
            dirs.contains(&dir) && dir.is_dir(),
            "{} in {dirs:?}",
            dir.display()
        );
    }
    let mut sleeper = Proc::gated("exec sleep 30");
    group.add_process(sleeper.pid()).unwrap();
    sleeper.release();
    let membership = read(Path::new(&format!("/proc/{}/cgroup", sleeper.pid())));
    let expected = format!(":/{}", group.path());
    for line in membership.lines() {
        assert!(line.ends_with(&expected), "{line} in\n{membership}");
    }
    group.kill_all(Signal::SIGKILL).unwrap();
    sleeper.wait(Duration::from_secs(5));

    // An older group: only the controllers' directories.
    for root in &extra {
        std::fs::remove_dir(root.join(group.path().as_str())).unwrap();
    }
    let reopened = cgroups::open(&layout, group.path().as_str()).unwrap();
    let reopened_dirs = reopened.dirs();
    assert!(!reopened_dirs.is_empty());
    assert!(
        reopened_dirs
            .iter()
            .all(|d| !extra.iter().any(|r| d.starts_with(r))),
        "{reopened_dirs:?}"
    );
}

#[test]
fn memory_limit_of_32_mib_is_applied_and_read_back() {
    let layout = Layout::detect().unwrap();
    let group = Group::in_layout(&layout, "memory");
    let resources = Resources {
        memory: Some(32 * MIB),
        ..Default::default()
    };
    group.apply(&resources).unwrap();
    let stats = group.stats().unwrap();
    assert_eq!(stats.memory.unwrap().limit, Some(32 * MIB));
    if is_v1(&layout) {
        assert_eq!(
            read(&in_layout_file(&*group, "memory.limit_in_bytes")),
            "33554432"
        );
        // --memory-swap unset: as much swap as memory, so memory+swap is twice the limit.
        let memsw = group
            .dirs()
            .into_iter()
            .map(|d| d.join("memory.memsw.limit_in_bytes"))
            .find(|f| f.exists());
        if let Some(memsw) = memsw {
            assert_eq!(read(&memsw), (64 * MIB).to_string());
        }
    } else {
        assert_eq!(read(&in_layout_file(&*group, "memory.max")), "33554432");
        let swap = group.dirs()[0].join("memory.swap.max");
        if swap.exists() {
            assert_eq!(read(&swap), "33554432");
        }
    }
    // Raising and lowering again works whatever order the kernel needs.
    group
        .apply(&Resources {
            memory: Some(128 * MIB),
            ..Default::default()
        })
        .unwrap();
    group.apply(&resources).unwrap();
    assert_eq!(group.stats().unwrap().memory.unwrap().limit, Some(32 * MIB));
}

#[test]
fn process_allocating_200_mb_in_32_mib_group_is_oom_killed() {
    let group = Group::new("oom");
    group
        .apply(&Resources {
            memory: Some(32 * MIB),
            ..Default::default()
        })
        .unwrap();
    assert!(!group.oom_killed().unwrap());
    // dd fills a 200 MB buffer from /dev/zero: every page is touched, so charged.
    let mut hog = Proc::gated("exec dd if=/dev/zero of=/dev/null bs=200M count=1");
    group.add_process(hog.pid()).unwrap();
    hog.release();
    let status = hog.wait(Duration::from_secs(30));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "dd ended with {status:?}"
    );
    assert!(group.oom_killed().unwrap());
}

#[test]
fn cpus_and_shares_are_written_as_quota_period_and_shares() {
    let layout = Layout::detect().unwrap();
    let group = Group::in_layout(&layout, "cpu");
    let cpus = if cgroups::host_cpus() >= 2 { 1.5 } else { 0.5 };
    let quota = (cpus * 100_000.0) as u64;
    group
        .apply(&Resources {
            cpu_shares: Some(512),
            ..Resources::default().with_cpus(cpus)
        })
        .unwrap();
    if is_v1(&layout) {
        assert_eq!(
            read(&in_layout_file(&*group, "cpu.cfs_quota_us")),
            quota.to_string()
        );
        assert_eq!(
            read(&in_layout_file(&*group, "cpu.cfs_period_us")),
            "100000"
        );
        assert_eq!(read(&in_layout_file(&*group, "cpu.shares")), "512");
    } else {
        assert_eq!(
            read(&in_layout_file(&*group, "cpu.max")),
            format!("{quota} 100000")
        );
        assert_eq!(
            read(&in_layout_file(&*group, "cpu.weight")),
            cgroups::shares_to_weight(512).to_string()
        );
    }
    // More CPUs than the host has is refused before anything is written.
    let too_many = Resources::default().with_cpus((cgroups::host_cpus() + 1) as f64);
    assert!(matches!(
        group.apply(&too_many),
        Err(CgroupError::InvalidResources(_))
    ));
}

#[test]
fn pids_limit_of_5_makes_the_sixth_task_fail_to_fork() {
    let group = Group::new("pids-limit");
    group
        .apply(&Resources {
            pids_limit: Some(5),
            ..Default::default()
        })
        .unwrap();
    // The shell is task 1; it reports each background sleep it manages to start.
    let mut shell = Proc::gated(
        "for i in 1 2 3 4 5 6; do sleep 30 >/dev/null 2>&1 & echo started $i; done; wait",
    );
    group.add_process(shell.pid()).unwrap();
    shell.release();
    shell.wait(Duration::from_secs(20));
    let out = shell.child.stdout.take().unwrap();
    let started = BufReader::new(out)
        .lines()
        .map_while(|l| l.ok())
        .filter(|l| l.starts_with("started"))
        .count();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut shell.child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(started, 4, "shell + 4 sleeps = 5 tasks; stderr: {err}");
    assert!(
        err.to_lowercase().contains("fork"),
        "fork failure reported: {err}"
    );
    let pids = group.stats().unwrap().pids.unwrap();
    assert_eq!(pids.limit, Some(5));
}

#[test]
fn freeze_stops_a_busy_process_and_thaw_resumes_it() {
    let group = Group::new("freeze");
    let mut spinner = Proc::gated("while :; do :; done");
    group.add_process(spinner.pid()).unwrap();
    spinner.release();
    std::thread::sleep(Duration::from_millis(200));

    group.freeze().unwrap();
    let frozen_at = cpu_ticks(spinner.pid());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        cpu_ticks(spinner.pid()),
        frozen_at,
        "a frozen process used CPU"
    );

    group.thaw().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        cpu_ticks(spinner.pid()) > frozen_at,
        "a thawed process did not run"
    );
}

#[test]
fn stats_report_memory_and_cpu_of_a_busy_process() {
    let layout = Layout::detect().unwrap();
    let group = Group::in_layout(&layout, "stats");
    // An 8 MiB buffer refilled over and over: resident memory and CPU time in the group.
    let mut busy = Proc::gated("exec dd if=/dev/zero of=/dev/null bs=8M count=100000");
    group.add_process(busy.pid()).unwrap();
    busy.release();
    std::thread::sleep(Duration::from_millis(700));
    let stats = group.stats().unwrap();
    let memory = stats.memory.expect("memory stats");
    assert!(memory.usage >= 4 * MIB, "memory usage {}", memory.usage);
    let cpu = stats.cpu.expect("cpu stats");
    assert!(
        cpu.usage_total_ns > 100_000_000,
        "cpu usage {}",
        cpu.usage_total_ns
    );
    if is_v1(&layout) {
        assert!(!cpu.usage_per_cpu_ns.is_empty());
        assert!(cpu.usage_per_cpu_ns.iter().sum::<u64>() > 0);
    }
    assert_eq!(stats.pids.expect("pids stats").current, 1);
}

#[test]
fn kill_all_kills_every_process_including_forked_ones() {
    let group = Group::new("kill");
    let mut shell = Proc::gated("sleep 30 & sleep 30 & wait");
    group.add_process(shell.pid()).unwrap();
    shell.release();
    let deadline = Instant::now() + Duration::from_secs(5);
    while group.pids().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "children did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    group.kill_all(Signal::SIGKILL).unwrap();
    shell.wait(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !group.pids().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes left: {:?}",
            group.pids()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn destroy_removes_the_group_directories() {
    let layout = Layout::detect().unwrap();
    let group = Group::in_layout(&layout, "destroy");
    let mut sleeper = Proc::gated("exec sleep 30");
    group.add_process(sleeper.pid()).unwrap();
    sleeper.release();
    let dirs = group.dirs();
    assert!(dirs.iter().all(|d| d.is_dir()));
    group.kill_all(Signal::SIGKILL).unwrap();
    // Removal waits while the killed process is still exiting.
    group.destroy().unwrap();
    for dir in &dirs {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
    group.destroy().unwrap();
    assert!(matches!(
        cgroups::open(&layout, group.path().as_str()),
        Err(CgroupError::NotFound(_))
    ));
}

/// A hybrid host's v2 hierarchy has no memory/cpu/pids controllers, but freezing, killing,
/// membership and removal work there: the v2 implementation runs for real here too.
#[test]
fn v2_group_on_the_unified_hierarchy_freezes_lists_kills_and_is_removed() {
    let root = match Layout::detect().unwrap() {
        Layout::V1 {
            unified: Some(root),
            ..
        } => root,
        Layout::V2 { root } => root,
        Layout::V1 { unified: None, .. } => return eprintln!("no cgroup2 hierarchy; skipped"),
    };
    let layout = Layout::V2 { root };
    let group = Group::in_layout(&layout, "v2");
    let mut spinner = Proc::gated("while :; do :; done");
    group.add_process(spinner.pid()).unwrap();
    spinner.release();
    assert_eq!(group.pids().unwrap(), vec![spinner.pid()]);

    group.freeze().unwrap();
    let frozen_at = cpu_ticks(spinner.pid());
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(cpu_ticks(spinner.pid()), frozen_at);
    group.thaw().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert!(cpu_ticks(spinner.pid()) > frozen_at);

    if !group.dirs()[0].join("memory.max").exists() {
        let err = group
            .apply(&Resources {
                memory: Some(32 * MIB),
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            matches!(err, CgroupError::ControllerUnavailable("memory")),
            "{err}"
        );
    }
    assert!(group.stats().unwrap().cpu.unwrap().usage_total_ns > 0);

    group.kill_all(Signal::SIGKILL).unwrap();
    spinner.wait(Duration::from_secs(5));
    let dir = group.dirs()[0].clone();
    group.destroy().unwrap();
    assert!(!dir.exists());
}

// ---------------------------------------------------------------------------------------------
// Device rules. On v1 the `devices` controller enforces them; on v2 a BPF program attached to
// the group does (`src/cgroups/device_program.rs`). A hybrid host's cgroup2 hierarchy has no
// controllers, but device programs work on any cgroup2 directory, so both run for real here.

/// The cgroup2 hierarchy of this host (a hybrid host's `unified` mount, or the only one).
fn unified_root() -> Option<PathBuf> {
    match Layout::detect().unwrap() {
        Layout::V1 { unified, .. } => unified,
        Layout::V2 { root } => Some(root),
    }
}

/// A loop device of the host over a file holding a marker; detached when dropped.
struct LoopDisk {
    device: String,
    major: u32,
    minor: u32,
    _backing: tempfile::NamedTempFile,
}

impl LoopDisk {
    fn new() -> Self {
        let backing = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut content = b"wharf-device-marker".to_vec();
        content.resize(1 << 20, 0);
        std::fs::write(backing.path(), content).unwrap();
        let out = Command::new(losetup())
            .args(["-f", "--show"])
            .arg(backing.path())
            .output()
            .expect("run losetup");
        assert!(out.status.success(), "losetup: {out:?}");
        let device = String::from_utf8(out.stdout).unwrap().trim().to_string();
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata(&device).unwrap().rdev();
        LoopDisk {
            major: libc::major(rdev),
            minor: libc::minor(rdev),
            device,
            _backing: backing,
        }
    }

    fn node(&self) -> Dev {
        Dev::block(self.major, self.minor)
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let status = Command::new(losetup()).arg("-d").arg(&self.device).status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("detaching {} failed: {status:?}", self.device);
        }
    }
}

fn losetup() -> &'static str {
    ["/usr/sbin/losetup", "/sbin/losetup"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("losetup")
}

/// A device number of either type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dev {
    block: bool,
    major: u32,
    minor: u32,
}

impl Dev {
    fn char(major: u32, minor: u32) -> Self {
        Dev {
            block: false,
            major,
            minor,
        }
    }

    fn block(major: u32, minor: u32) -> Self {
        Dev {
            block: true,
            major,
            minor,
        }
    }

    fn file_type(&self) -> libc::mode_t {
        if self.block {
            libc::S_IFBLK
        } else {
            libc::S_IFCHR
        }
    }
}

/// What a probe tries: create a node of the device (`m`), or open one for reading (`r`),
/// writing (`w`) or both (`rw`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Mknod,
    Open(libc::c_int),
}

const READ: Op = Op::Open(libc::O_RDONLY);
const WRITE: Op = Op::Open(libc::O_WRONLY);
const READ_WRITE: Op = Op::Open(libc::O_RDWR);

/// Device probes run by a forked child inside a group: each gives the errno of its `mknod`
/// or `open` (0 when it worked). The nodes opened are made beforehand by this (unconfined)
/// process in a directory of its own; the device check comes before the driver's open, so a
/// device without a driver still tells allowed (ENXIO, ENODEV) from refused (EPERM).
struct Probes {
    _dir: tempfile::TempDir,
    list: Vec<(Dev, Op, std::ffi::CString)>,
}

impl Probes {
    fn new(probes: &[(Dev, Op)]) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut list = Vec::new();
        for (i, &(dev, op)) in probes.iter().enumerate() {
            let path = match op {
                Op::Mknod => dir.path().join(format!("made-{i}")),
                Op::Open(_) => {
                    let kind = if dev.block { 'b' } else { 'c' };
                    let node = dir
                        .path()
                        .join(format!("{kind}-{}-{}", dev.major, dev.minor));
                    if !node.exists() {
                        nix::sys::stat::mknod(
                            &node,
                            nix::sys::stat::SFlag::from_bits_truncate(dev.file_type()),
                            nix::sys::stat::Mode::from_bits_truncate(0o600),
                            libc::makedev(dev.major, dev.minor),
                        )
                        .unwrap_or_else(|e| panic!("mknod {}: {e}", node.display()));
                    }
                    node
                }
            };
            let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
            list.push((dev, op, path));
        }
        Probes { _dir: dir, list }
    }

    /// Runs every probe in a child moved into `group` before it starts.
    fn run_in(&self, group: &dyn Cgroup) -> Vec<i32> {
        use nix::unistd::{fork, pipe2, ForkResult};
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (go_r, go_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (results_r, results_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let devs: Vec<libc::dev_t> = self
            .list
            .iter()
            .map(|(dev, _, _)| libc::makedev(dev.major, dev.minor))
            .collect();
        // SAFETY: the child calls only async-signal-safe functions (read, mknod, unlink, open,
        // close, write, _exit) on data prepared before the fork, and never returns.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let (go, out) = (go_r.as_raw_fd(), results_w.as_raw_fd());
                let mut byte = 0u8;
                // SAFETY: async-signal-safe calls on descriptors and buffers this child owns;
                // it goes on only once it has been moved into the group.
                unsafe {
                    libc::close(go_w.as_raw_fd());
                    libc::close(results_r.as_raw_fd());
                    if libc::read(go, (&mut byte as *mut u8).cast(), 1) != 1 {
                        libc::_exit(2);
                    }
                    for ((dev, op, path), &number) in self.list.iter().zip(&devs) {
                        let ok = match op {
                            Op::Mknod => {
                                let made =
                                    libc::mknod(path.as_ptr(), dev.file_type() | 0o600, number);
                                made == 0 && libc::unlink(path.as_ptr()) == 0
                            }
                            Op::Open(flags) => {
                                let flags =
                                    flags | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
                                let fd = libc::open(path.as_ptr(), flags);
                                fd >= 0 && libc::close(fd) == 0
                            }
                        };
                        let errno = if ok { 0 } else { *libc::__errno_location() };
                        libc::write(out, (&errno as *const i32).cast(), 4);
                    }
                    libc::_exit(0);
                }
            }
            ForkResult::Parent { child } => {
                drop(go_r);
                drop(results_w);
                let mut go = std::fs::File::from(go_w);
                if let Err(e) = group.add_process(child) {
                    drop(go); // the child exits without probing
                    let _ = nix::sys::wait::waitpid(child, None);
                    panic!("moving the probe into {}: {e}", group.path());
                }
                go.write_all(b"g").unwrap();
                let mut bytes = Vec::new();
                std::fs::File::from(results_r)
                    .read_to_end(&mut bytes)
                    .unwrap();
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
                let errnos: Vec<i32> = bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
                    .collect();
                assert_eq!(errnos.len(), self.list.len());
                errnos
            }
        }
    }

    /// Which probes the kernel's device check let through.
    fn allowed_in(&self, group: &dyn Cgroup) -> Vec<bool> {
        let errnos = self.run_in(group);
        for (errno, (dev, op, _)) in errnos.iter().zip(&self.list) {
            assert!(
                [0, libc::EPERM, libc::ENXIO, libc::ENODEV, libc::EIO].contains(errno),
                "{dev:?} {op:?}: unexpected {}",
                std::io::Error::from_raw_os_error(*errno)
            );
        }
        errnos.into_iter().map(|e| e != libc::EPERM).collect()
    }
}

fn devices(rules: Vec<cgroups::DeviceRule>) -> Resources {
    Resources {
        devices: Some(rules),
        ..Default::default()
    }
}

fn rule(text: &str) -> cgroups::DeviceRule {
    cgroups::DeviceRule::parse(text).unwrap()
}

fn deny(text: &str) -> cgroups::DeviceRule {
    cgroups::DeviceRule {
        allow: false,
        ..rule(text)
    }
}

/// The runtime's own path on a v2 layout (`cgroups::create`, then `apply` with the container's
/// rules, as `start` does): runc's defaults let a process use /dev/null and create nodes, but
/// not open a disk of the host through a node it made; an allow rule for the disk opens it
/// for what it allows; `--privileged`'s allow-all opens everything; each `apply` replaces the
/// group's program rather than adding another.
#[test]
fn v2_groups_enforce_device_rules_with_a_bpf_program() {
    let Some(root) = unified_root() else {
        return eprintln!("no cgroup2 hierarchy; skipped");
    };
    let group = Group::in_layout(&Layout::V2 { root }, "devices-v2");
    let disk = LoopDisk::new();
    let (null, tun) = (Dev::char(1, 3), Dev::char(10, 200));
    let probes = Probes::new(&[
        (null, READ_WRITE),
        (null, Op::Mknod),
        (disk.node(), Op::Mknod),
        (disk.node(), READ),
        (disk.node(), READ_WRITE),
        (tun, READ_WRITE),
    ]);
    // A new group without a program: everything goes.
    assert_eq!(probes.allowed_in(&*group), [true; 6]);

    group
        .apply(&devices(cgroups::default_device_rules()))
        .unwrap();
    let errnos = probes.run_in(&*group);
    assert_eq!(errnos[..3], [0, 0, 0], "null opens, nodes are made");
    assert_eq!(
        errnos[3..],
        [libc::EPERM; 3],
        "the disk {} and tun are refused",
        disk.device
    );

    let numbers = format!("{}:{}", disk.major, disk.minor);
    let mut rules = cgroups::default_device_rules();
    rules.push(rule(&format!("b {numbers} r")));
    group.apply(&devices(rules)).unwrap();
    assert_eq!(
        probes.allowed_in(&*group),
        [true, true, true, true, false, false],
        "b {numbers} r opens the disk read-only"
    );

    group
        .apply(&devices(vec![cgroups::DeviceRule::all(true)]))
        .unwrap();
    assert_eq!(probes.allowed_in(&*group), [true; 6], "privileged");

    group
        .apply(&devices(cgroups::default_device_rules()))
        .unwrap();
    assert_eq!(
        probes.allowed_in(&*group),
        [true, true, true, false, false, false]
    );

    // A rule the kernel cannot take is refused before anything is attached.
    let bad = cgroups::DeviceRule::allow('x', None, None, "rwm");
    assert!(matches!(
        group.apply(&devices(vec![bad])),
        Err(CgroupError::InvalidResources(_))
    ));
}

/// The same rule lists in a v1 devices group and in a v2 group with the program decide the
/// same for every probe: merges and removals of access, wildcards, a later `a` resetting
/// everything, and the allow-by-default mode with partly matching denies.
#[test]
fn v2_device_programs_decide_as_the_v1_devices_controller_does() {
    let layout = Layout::detect().unwrap();
    let Layout::V1 {
        controllers,
        unified: Some(root),
    } = &layout
    else {
        return eprintln!("not a hybrid host with a v1 devices controller; skipped");
    };
    if !controllers.contains_key("devices") {
        return eprintln!("no v1 devices controller; skipped");
    }
    let v2 = Layout::V2 { root: root.clone() };
    let disk = LoopDisk::new();
    let mut grid = Vec::new();
    for dev in [
        Dev::char(1, 3),
        Dev::char(1, 5),
        Dev::char(1, 7),
        Dev::char(10, 200),
        Dev::char(200, 0),
        disk.node(),
        Dev::block(200, 1),
    ] {
        for op in [Op::Mknod, READ, WRITE, READ_WRITE] {
            grid.push((dev, op));
        }
    }
    let probes = Probes::new(&grid);
    let disk_rule = |access: &str| rule(&format!("b {}:{} {access}", disk.major, disk.minor));
    let none = cgroups::DeviceRule::all(false);
    let all = cgroups::DeviceRule::all(true);
    let lists = [
        cgroups::default_device_rules(),
        [
            cgroups::default_device_rules(),
            vec![disk_rule("r"), rule("c 10:200 rwm")],
        ]
        .concat(),
        vec![none.clone(), rule("c 1:3 r"), rule("c 1:3 w")],
        vec![
            none.clone(),
            rule("c 1:* r"),
            rule("c 1:3 w"),
            disk_rule("m"),
        ],
        vec![
            none.clone(),
            rule("c 1:* rwm"),
            deny("c 1:* w"),
            rule("b *:* rw"),
        ],
        vec![
            none.clone(),
            rule("c 1:5 rwm"),
            all.clone(),
            none.clone(),
            rule("c 1:3 r"),
        ],
        vec![all.clone(), deny("c 1:3 w"), deny("b *:* m")],
        vec![all.clone(), deny("c *:* r"), disk_rule("w")],
        vec![all],
    ];
    for rules in lists {
        let in_v1 = Group::in_layout(&layout, "devices-v1");
        let in_v2 = Group::in_layout(&v2, "devices-v2");
        in_v1.apply(&devices(rules.clone())).unwrap();
        in_v2.apply(&devices(rules.clone())).unwrap();
        let (v1_allowed, v2_allowed) = (probes.allowed_in(&*in_v1), probes.allowed_in(&*in_v2));
        let differ: Vec<_> = grid
            .iter()
            .zip(v1_allowed.iter().zip(&v2_allowed))
            .filter(|(_, (a, b))| a != b)
            .map(|(probe, (v1, _))| format!("{probe:?}: v1 allows {v1}"))
            .collect();
        assert!(
            differ.is_empty(),
            "rules {:?}:\n{}",
            rules
                .iter()
                .map(|r| (r.allow, r.to_v1()))
                .collect::<Vec<_>>(),
            differ.join("\n")
        );
        // Not a vacuous match: each list refuses or allows something.
        assert!(v1_allowed.contains(&true));
    }
}
