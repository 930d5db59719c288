//! A container's files through the real docker CLI: `docker cp` both ways (symlinks kept,
//! hostile symlinks staying inside the container), `docker export`, `docker diff` and
//! `docker commit`. Expected texts are dockerd's.

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
    _stack: Stack,
    docker: DockerCli,
    _registry: Registry,
    image: String,
    names: Vec<String>,
}

impl Drop for World {
    fn drop(&mut self) {
        // A reference engine keeps what the test made otherwise.
        for n in &self.names {
            let _ = self.docker.run(&["rm", "-f", n]);
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
        _stack: stack,
        docker,
        _registry: registry,
        image,
        names: vec![],
    }
}

impl World {
    fn run(&mut self, name: &str, script: &str) {
        let full = format!("files-{}-{name}", std::process::id());
        self.names.push(full.clone());
        self.docker.ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &full,
            &self.image,
            "sh",
            "-c",
            script,
        ]);
        let _ = name;
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
