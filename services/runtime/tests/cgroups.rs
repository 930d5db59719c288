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
