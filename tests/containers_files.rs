//! A container's files through the real docker CLI: `docker cp` both ways (symlinks kept,
//! hostile symlinks staying inside the container; into and out of volumes, bind mounts and
//! tmpfs mounts, running or stopped), `docker export`, `docker diff` and `docker commit`.
//! Expected texts are dockerd's.

mod support;

use support::fixtures::{self, Entry, ImageSpec, Layer, PushFormat};
use support::{DockerCli, Registry, Stack};

const APPLETS: &[&str] = &["cat", "ls", "mkdir", "rm", "ln", "echo", "sleep", "test"];

fn image_spec(name: &str) -> ImageSpec {
    let mut entries = vec![
        Entry::Dir("bin", 0o755),
        Entry::Dir("etc", 0o755),
        Entry::File(
            "etc/passwd".into(),
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\ncontainer-user:x:1000:1000::/:/bin/sh\n".to_vec(),
        ),
        Entry::Dir("data", 0o755),
        Entry::File("data/old".into(), 0o644, b"old\n".to_vec()),
        Entry::File("data/gone".into(), 0o644, b"gone\n".to_vec()),
    ];
    for applet in APPLETS {
        entries.push(Entry::Symlink(format!("bin/{applet}"), "busybox".into()));
    }
    ImageSpec::busybox_like(
        name,
        fixtures::host_arch(),
        vec![(
            Layer::new(&entries),
            "/bin/sh -c #(nop) COPY dir:data in / ",
        )],
    )
}

struct World {
    stack: Stack,
    docker: DockerCli,
    _registry: Registry,
    image: String,
    names: Vec<String>,
    volumes: Vec<String>,
}

impl Drop for World {
    fn drop(&mut self) {
        // A reference engine keeps what the test made otherwise.
        for n in &self.names {
            let _ = self.docker.run(&["rm", "-f", "-v", n]);
        }
        for v in &self.volumes {
            let _ = self.docker.run(&["volume", "rm", "-f", v]);
        }
    }
}

fn world(name: &str) -> World {
    let stack = Stack::start();
    let docker = stack.docker();
    let registry = Registry::start();
    let pushed = fixtures::push_image(
        &registry,
        &image_spec(name),
        "files",
        "v1",
        PushFormat::DockerV2S2,
    );
    let image = pushed.reference();
    docker.ok(&["pull", &image]);
    World {
        stack,
        docker,
        _registry: registry,
        image,
        names: vec![],
        volumes: vec![],
    }
}

impl World {
    fn run(&mut self, name: &str, script: &str) {
        self.run_with(name, &[], script);
    }
    /// `docker run -d` with more options (mounts) before the image.
    fn run_with(&mut self, name: &str, options: &[&str], script: &str) {
        let full = format!("files-{}-{name}", std::process::id());
        self.names.push(full.clone());
        let mut args = vec!["run", "-d", "--network", "none", "--name", &full];
        args.extend_from_slice(options);
        args.extend_from_slice(&[&self.image, "sh", "-c", script]);
        self.docker.ok(&args);
    }
    /// A named volume removed with the world.
    fn volume(&mut self, name: &str) -> String {
        let full = format!("files-{}-{name}", std::process::id());
        self.volumes.push(full.clone());
        self.docker.ok(&["volume", "create", &full]);
        full
    }
    /// The `X-Docker-Container-Path-Stat` header of `HEAD /containers/{c}/archive?path=`.
    fn path_stat(&self, c: &str, path: &str) -> serde_json::Value {
        use base64::Engine;
        let (status, headers, body) = support::unix_request(
            &self.stack.socket,
            "HEAD",
            &format!("/containers/{c}/archive?path={path}"),
            &[],
            None,
        )
        .unwrap();
        assert_eq!(
            status,
            200,
            "HEAD {path}: {}",
            String::from_utf8_lossy(&body)
        );
        let (_, value) = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("X-Docker-Container-Path-Stat"))
            .unwrap_or_else(|| panic!("no stat header for {path}: {headers:?}"));
        let json = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .unwrap();
        serde_json::from_slice(&json).unwrap()
    }
    fn name(&self, i: usize) -> &str {
        &self.names[i]
    }
}

fn wait_file(d: &DockerCli, c: &str, path: &str) {
    for _ in 0..100 {
        if d.run(&["exec", c, "test", "-e", path]).success() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{path} never appeared in {c}");
}

#[test]
fn cp_copies_files_dirs_and_symlinks_both_ways() {
    let mut w = world("cp");
    w.run("box", "sleep 300");
    let c = w.name(0).to_string();
    let d = &w.docker;
    let host = tempfile::tempdir().unwrap();
    let src = host.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/file.txt"), b"hello from the host\n").unwrap();
    std::os::unix::fs::symlink("sub/file.txt", src.join("link")).unwrap();
    std::fs::write(host.path().join("single"), b"single\n").unwrap();

    d.ok(&["cp", src.to_str().unwrap(), &format!("{c}:/copied")]);
    d.ok(&[
        "cp",
        host.path().join("single").to_str().unwrap(),
        &format!("{c}:/data/"),
    ]);
    assert_eq!(
        d.ok(&["exec", &c, "cat", "/copied/sub/file.txt"]).stdout,
        "hello from the host\n"
    );
    assert_eq!(
        d.ok(&["exec", &c, "cat", "/data/single"]).stdout,
        "single\n"
    );
    let ls = d.ok(&["exec", &c, "ls", "-l", "/copied/link"]).stdout;
    assert!(ls.contains("link -> sub/file.txt"), "{ls}");

    let back = host.path().join("back");
    d.ok(&["cp", &format!("{c}:/copied"), back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(back.join("sub/file.txt")).unwrap(),
        b"hello from the host\n"
    );
    assert_eq!(
        std::fs::read_link(back.join("link")).unwrap(),
        std::path::PathBuf::from("sub/file.txt")
    );
    d.ok(&[
        "cp",
        &format!("{c}:/data/old"),
        host.path().join("old").to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(host.path().join("old")).unwrap(), b"old\n");

    // A stopped container too.
    d.ok(&["kill", &c]);
    d.ok(&[
        "cp",
        host.path().join("single").to_str().unwrap(),
        &format!("{c}:/data/again"),
    ]);
    d.ok(&[
        "cp",
        &format!("{c}:/data/again"),
        host.path().join("again").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(host.path().join("again")).unwrap(),
        b"single\n"
    );

    let missing = d.run(&[
        "cp",
        &format!("{c}:/no/such/file"),
        host.path().to_str().unwrap(),
    ]);
    assert!(!missing.success());
    assert!(
        missing
            .stderr
            .contains(&format!("No such container:path: {c}:/no/such/file"))
            || missing.stderr.contains(&format!(
                "Could not find the file /no/such/file in container {c}"
            )),
        "{}",
        missing.stderr
    );
}

#[test]
fn cp_through_hostile_symlinks_stays_inside_the_container() {
    let mut w = world("hostile");
    let outside = tempfile::tempdir().unwrap();
    let outside_path = outside.path().to_str().unwrap().to_string();
    let marker = format!("wharf-cp-escape-{}", std::process::id());
    w.run(
        "box",
        &format!("ln -s / /escape; ln -s {outside_path} /etc2; echo ready > /ready; sleep 300"),
    );
    let c = w.name(0).to_string();
    let d = &w.docker;
    wait_file(d, &c, "/ready");
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join(&marker);
    std::fs::write(&file, b"inside\n").unwrap();

    // Into `/escape/` (-> /): the container's root, not the host's.
    d.ok(&["cp", file.to_str().unwrap(), &format!("{c}:/escape/")]);
    assert_eq!(
        d.ok(&["exec", &c, "cat", &format!("/{marker}")]).stdout,
        "inside\n"
    );
    assert!(!std::path::Path::new("/").join(&marker).exists());

    // Into `/etc2/` (-> a host directory's path): not there in the container, so refused...
    let refused = d.run(&["cp", file.to_str().unwrap(), &format!("{c}:/etc2/")]);
    assert!(!refused.success());
    // ...and once the container has that directory, it lands in the container's.
    d.ok(&["exec", &c, "mkdir", "-p", &outside_path]);
    d.ok(&["cp", file.to_str().unwrap(), &format!("{c}:/etc2/")]);
    assert_eq!(
        d.ok(&["exec", &c, "cat", &format!("{outside_path}/{marker}")])
            .stdout,
        "inside\n"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

    // Out of `/escape/etc/passwd`: the container's file.
    let out = host.path().join("passwd");
    d.ok(&[
        "cp",
        &format!("{c}:/escape/etc/passwd"),
        out.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("container-user"));
    // The symlink itself comes out as a symlink.
    let link = host.path().join("escape");
    d.ok(&["cp", &format!("{c}:/escape"), link.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::path::PathBuf::from("/")
    );
}

#[test]
fn export_diff_and_commit_show_the_containers_changes() {
    let mut w = world("commit");
    w.run(
        "box",
        "echo committed > /hello; echo new > /data/old; rm /data/gone; mkdir /made; echo ready > /made/ready; sleep 300",
    );
    let c = w.name(0).to_string();
    let d = &w.docker;
    wait_file(d, &c, "/made/ready");

    let diff = d.ok(&["diff", &c]).lines();
    for line in [
        "A /hello",
        "C /data",
        "C /data/old",
        "D /data/gone",
        "A /made",
        "A /made/ready",
    ] {
        assert!(diff.iter().any(|l| l == line), "{line} missing in {diff:?}");
    }
    assert!(
        !diff
            .iter()
            .any(|l| l.contains("/etc/hosts") || l.contains("/proc")),
        "{diff:?}"
    );

    let host = tempfile::tempdir().unwrap();
    let tar = host.path().join("export.tar");
    d.ok(&["export", "-o", tar.to_str().unwrap(), &c]);
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    for name in ["hello", "data/old", "made/ready", "bin/busybox"] {
        assert!(
            listing.lines().any(|l| l == name),
            "{name} not in export:\n{listing}"
        );
    }
    assert!(!listing.lines().any(|l| l == "data/gone"));

    let image = format!("files-committed-{}:v2", std::process::id());
    let id = d
        .ok(&[
            "commit",
            "--change",
            r#"CMD ["cat","/hello"]"#,
            "-m",
            "my change",
            &c,
            &image,
        ])
        .stdout
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let run = d.ok(&["run", "--rm", "--network", "none", &image]);
    assert_eq!(run.stdout, "committed\n");
    let gone = d.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        &image,
        "cat",
        "/data/gone",
    ]);
    assert!(!gone.success());
    let history = d.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}|{{.Comment}}",
        &image,
    ]);
    let first = history.lines().first().cloned().unwrap_or_default();
    assert!(first.ends_with("|my change"), "{:?}", history.lines());
    assert!(first.starts_with("sh -c echo committed"), "{first}");
    let layers = d.inspect(&image)["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    let base = d.inspect(&w.image)["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(layers, base + 1);
    let _ = d.run(&["rmi", "-f", &image]);
}

#[test]
fn cp_reaches_volumes_binds_and_tmpfs_of_running_and_stopped_containers() {
    let mut w = world("mounts");
    let host = tempfile::tempdir().unwrap();
    let bind = host.path().join("bind");
    let ro = host.path().join("ro");
    std::fs::create_dir_all(&bind).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(bind.join("in"), b"bind\n").unwrap();
    std::fs::write(ro.join("in"), b"ro\n").unwrap();
    let named = w.volume("named");
    w.run_with(
        "box",
        &[
            "-v",
            &format!("{named}:/named"),
            "-v",
            "/anon",
            "-v",
            &format!("{}:/bind", bind.display()),
            "-v",
            &format!("{}:/ro:ro", ro.display()),
            "--tmpfs",
            "/scratch",
        ],
        "echo named > /named/in; echo anon > /anon/in; echo scratch > /scratch/in; \
         echo ready > /ready; sleep 300",
    );
    let c = w.name(0).to_string();
    let d = &w.docker;
    wait_file(d, &c, "/ready");
    // dockerd 20.10 resolves a tmpfs path in the rootfs beneath it (moby#22020): Wharf copies
    // into and out of the running container's tmpfs.
    let tmpfs = support::reference_host().is_none();
    let mut places = vec![
        ("/named", "named\n"),
        ("/anon", "anon\n"),
        ("/bind", "bind\n"),
        ("/ro", "ro\n"),
    ];
    if tmpfs {
        places.push(("/scratch", "scratch\n"));
    }
    let copy_out = |tag: &str, places: &[(&str, &str)]| {
        for (dir, content) in places {
            let file = host.path().join(format!("{tag}{}", dir.replace('/', "-")));
            d.ok(&["cp", &format!("{c}:{dir}/in"), file.to_str().unwrap()]);
            assert_eq!(std::fs::read_to_string(&file).unwrap(), *content, "{dir}");
            let tree = host
                .path()
                .join(format!("{tag}-tree{}", dir.replace('/', "-")));
            d.ok(&["cp", &format!("{c}:{dir}"), tree.to_str().unwrap()]);
            assert_eq!(
                std::fs::read_to_string(tree.join("in")).unwrap(),
                *content,
                "{dir}"
            );
            // The stat header describes the file in the mount, as dockerd's does.
            let stat = w.path_stat(&c, &format!("{dir}/in"));
            assert_eq!(stat["name"], "in", "{dir}: {stat}");
            assert_eq!(stat["size"], content.len(), "{dir}: {stat}");
            assert_eq!(stat["mode"], 0o644, "{dir}: {stat}");
            assert_eq!(stat["linkTarget"], "", "{dir}: {stat}");
        }
    };
    copy_out("running", &places);
    assert_eq!(w.path_stat(&c, "/named")["mode"], (1u64 << 31) | 0o755);

    // In: where the container sees it.
    let single = host.path().join("single");
    std::fs::write(&single, b"single\n").unwrap();
    let mut writable = vec!["/named", "/anon", "/bind"];
    if tmpfs {
        writable.push("/scratch");
    }
    for dir in &writable {
        d.ok(&["cp", single.to_str().unwrap(), &format!("{c}:{dir}/")]);
        assert_eq!(
            d.ok(&["exec", &c, "cat", &format!("{dir}/single")]).stdout,
            "single\n",
            "{dir}"
        );
    }
    assert_eq!(std::fs::read(bind.join("single")).unwrap(), b"single\n");
    // A read-only bind refuses, in dockerd's words, and stays as it was.
    let refuse_ro = || {
        for target in ["/ro", "/ro/"] {
            let refused = d.run(&["cp", single.to_str().unwrap(), &format!("{c}:{target}")]);
            assert!(!refused.success(), "{refused}");
            assert!(
                refused
                    .stderr
                    .contains("Error response from daemon: mounted volume is marked read-only"),
                "{refused}"
            );
        }
        assert!(!ro.join("single").exists());
    };
    refuse_ro();

    // Stopped: the volumes and binds are still there both ways (dockerd mounts them for the
    // copy); a tmpfs's content is gone with the container, as in dockerd.
    d.ok(&["stop", "-t", "0", &c]);
    copy_out("stopped", &places[..4]);
    let gone = d.run(&["cp", &format!("{c}:/scratch/in"), "-"]);
    assert!(
        gone.stderr.contains(&format!(
            "Could not find the file /scratch/in in container {c}"
        )),
        "{gone}"
    );
    let again = host.path().join("again");
    std::fs::write(&again, b"again\n").unwrap();
    for dir in ["/named", "/anon", "/bind"] {
        d.ok(&["cp", again.to_str().unwrap(), &format!("{c}:{dir}/")]);
    }
    refuse_ro();
    assert_eq!(std::fs::read(bind.join("again")).unwrap(), b"again\n");
    d.ok(&["start", &c]);
    for dir in ["/named", "/anon", "/bind"] {
        assert_eq!(
            d.ok(&["exec", &c, "cat", &format!("{dir}/again")]).stdout,
            "again\n",
            "{dir}"
        );
    }
}

#[test]
fn cp_through_symlinks_in_volumes_and_binds_never_reaches_the_host() {
    let mut w = world("mount-links");
    let pid = std::process::id();
    let host = tempfile::tempdir().unwrap();
    // A bind's source three levels down: `../../..` from it on the host is `host`.
    let bind = host.path().join("a/b/src");
    std::fs::create_dir_all(&bind).unwrap();
    let volume = w.volume("links");
    let mountpoint = w
        .docker
        .ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", &volume])
        .stdout
        .trim()
        .to_string();
    let above_volume = std::path::Path::new(&mountpoint)
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf();
    // The host's files the links would reach if they escaped.
    let secret = format!("host-secret-{pid}");
    let marker = format!("marker-{pid}");
    struct Removed(Vec<std::path::PathBuf>);
    impl Drop for Removed {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let dropped = format!("dropped-{pid}");
    let _cleanup = Removed(vec![
        above_volume.join(&marker),
        above_volume.join(&dropped),
        above_volume.join(format!("escaped-{pid}")),
    ]);
    for dir in [host.path(), above_volume.as_path()] {
        std::fs::write(dir.join(&marker), &secret).unwrap();
    }
    w.run_with(
        "box",
        &[
            "-v",
            &format!("{volume}:/named"),
            "-v",
            &format!("{}:/bind", bind.display()),
        ],
        "ln -s ../../.. /named/up; ln -s / /named/root; ln -s ../../.. /bind/up; \
         ln -s / /bind/root; echo ready > /ready; sleep 300",
    );
    let c = w.name(0).to_string();
    let d = &w.docker;
    wait_file(d, &c, "/ready");

    // Each link leads to the container's root, as dockerd resolves it.
    for link in ["/named/up", "/named/root", "/bind/up", "/bind/root"] {
        assert_eq!(w.path_stat(&c, link)["linkTarget"], "/", "{link}");
    }
    let never_out = |when: &str| {
        for path in [
            format!("/named/up/{marker}"),
            format!("/named/root{}/{marker}", above_volume.display()),
            format!("/bind/up/{marker}"),
            format!("/bind/root{}/{marker}", host.path().display()),
        ] {
            let out = d.run(&["cp", &format!("{c}:{path}"), "-"]);
            assert!(!out.success(), "{when} {path}: {out}");
            assert!(
                !out.stdout.contains(&secret),
                "{when} {path}: the host's file came out"
            );
            assert!(
                out.stderr
                    .contains(&format!("Could not find the file {path} in container {c}")),
                "{when} {path}: {out}"
            );
        }
        // A whole tree through a link: the container's root, never the host's.
        for path in ["/named/up/.", "/bind/up/."] {
            let out = d.run(&["cp", &format!("{c}:{path}"), "-"]);
            assert!(out.success(), "{when} {path}: {}", out.stderr);
            assert!(
                !out.stdout.contains(&secret),
                "{when} {path}: the host's file came out"
            );
            assert!(out.stdout.contains("bin/busybox"), "{when} {path}");
        }
    };
    never_out("running");

    // In through the links: the container's root, never the host's directories.
    let file = host.path().join("src-files").join(&dropped);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"dropped\n").unwrap();
    for target in ["/named/up/", "/bind/up/"] {
        d.ok(&["cp", file.to_str().unwrap(), &format!("{c}:{target}")]);
        assert_eq!(
            d.ok(&["exec", &c, "cat", &format!("/{dropped}")]).stdout,
            "dropped\n",
            "{target}"
        );
        d.ok(&["exec", &c, "rm", &format!("/{dropped}")]);
    }
    for target in [
        format!("/named/root{}/", above_volume.display()),
        format!("/bind/root{}/", host.path().display()),
    ] {
        let refused = d.run(&["cp", file.to_str().unwrap(), &format!("{c}:{target}")]);
        assert!(!refused.success(), "{target}: {refused}");
    }
    // A tar whose entries go through the link: inside the container either way. dockerd 20.10
    // resolves the link in the container's root (`/escaped-…`); Wharf's upload resolves it with
    // the target directory as the root (`<target>/escaped-…`), the stricter confinement.
    let reference = support::reference_host().is_some();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(8);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, format!("up/escaped-{pid}"), &b"escaped\n"[..])
        .unwrap();
    let upload = b.into_inner().unwrap();
    for target in ["/named", "/bind"] {
        d.run_stdin(&["cp", "-", &format!("{c}:{target}")], upload.clone())
            .ok();
        let landed = if reference {
            format!("/escaped-{pid}")
        } else {
            format!("{target}/escaped-{pid}")
        };
        assert_eq!(d.ok(&["exec", &c, "cat", &landed]).stdout, "escaped\n");
    }
    for dir in [host.path(), above_volume.as_path()] {
        assert!(!dir.join(&dropped).exists(), "{}", dir.display());
        assert!(
            !dir.join(format!("escaped-{pid}")).exists(),
            "{}",
            dir.display()
        );
        assert_eq!(std::fs::read_to_string(dir.join(&marker)).unwrap(), secret);
    }
    if !reference {
        assert_eq!(
            std::fs::read(bind.join(format!("escaped-{pid}"))).unwrap(),
            b"escaped\n"
        );
    }

    d.ok(&["stop", "-t", "0", &c]);
    never_out("stopped");
}

/// API 1.46's `TmpfsOptions.Options` (SDKs send it; the CLI has no flag): `exec` lets programs
/// run from a `--mount type=tmpfs`, which is `noexec` by default, as with dockerd; any other
/// option is refused.
#[test]
fn tmpfs_mount_options_of_api_1_46_make_it_executable() {
    let w = world("tmpfsexec");
    let create = |name: &str, options: &str| {
        let body = format!(
            r#"{{"Image":"{}","Cmd":["sh","-c","busybox cp /bin/busybox /t/busybox && /t/busybox echo ran-from-tmpfs"],
                "HostConfig":{{"Mounts":[{{"Type":"tmpfs","Target":"/t","TmpfsOptions":{{"Options":{options}}}}}]}}}}"#,
            w.image
        );
        support::unix_request(
            &w.stack.socket,
            "POST",
            &format!("/v1.50/containers/create?name={name}"),
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
        .unwrap()
    };
    let (status, _, body) = create("tmpfs-exec", r#"[["exec"]]"#);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let out = w.docker.run(&["start", "-a", "tmpfs-exec"]);
    assert_eq!(out.stdout, "ran-from-tmpfs\n", "{out}");
    let (status, _, _) = create("tmpfs-default", "null");
    assert_eq!(status, 201);
    let out = w.docker.run(&["start", "-a", "tmpfs-default"]);
    assert!(
        !out.stdout.contains("ran-from-tmpfs"),
        "noexec by default: {out}"
    );
    let (status, _, body) = create("tmpfs-bad", r#"[["nosuid"]]"#);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("only exec and noexec"));
    w.docker.ok(&["rm", "-f", "tmpfs-exec", "tmpfs-default"]);
}
