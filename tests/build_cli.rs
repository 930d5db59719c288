//! `docker build` with the classic builder (`DOCKER_BUILDKIT=0`), tried as a user does: the real
//! docker CLI against `wharf up`, base images pulled from a test registry, and a private dockerd
//! 20.10 building the same contexts for comparison. Expected texts and exit codes are dockerd's.
//!
//! `WHARF_E2E_REFERENCE_HOST=unix:///path/docker.sock cargo test --test build_cli` runs the tests
//! that need no Wharf processes against that engine instead (see tests/README.md).

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::dockerd::Dockerd;
use support::fixtures::{self, Entry, ImageSpec, Layer, PushFormat};
use support::{children_of, cmdline, DockerCli, Output, Proc, Registry, Stack, StackOptions};

const BUILD_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// The base image

/// Applets linked besides those of the fixtures' base layer (sh, ls, cat, echo, env, sleep, true,
/// false), so RUN steps can do what Dockerfiles on busybox do.
const APPLETS: &[&str] = &[
    "chmod", "chown", "cp", "cut", "find", "grep", "head", "id", "ip", "ln", "mkdir", "mv", "nc",
    "pwd", "rm", "sed", "sort", "stat", "touch", "tr", "wc", "xargs",
];

/// A busybox image: the fixtures' base layer and a layer of applet symlinks.
fn busybox_spec() -> ImageSpec {
    let mut entries = vec![Entry::Dir("bin", 0o755)];
    for applet in APPLETS {
        entries.push(Entry::Symlink(format!("bin/{applet}"), "busybox".into()));
    }
    ImageSpec::busybox_like(
        "busybox",
        fixtures::host_arch(),
        vec![(
            Layer::new(&entries),
            "/bin/sh -c #(nop) ADD file:applets in /bin ",
        )],
    )
}

/// A registry holding that busybox as `library/busybox:latest`; returns it and the reference.
fn registry_with_busybox() -> (Registry, String) {
    let registry = Registry::start();
    let pushed = fixtures::push_image(
        &registry,
        &busybox_spec(),
        "library/busybox",
        "latest",
        PushFormat::DockerV2S2,
    );
    (registry, pushed.reference())
}

// ---------------------------------------------------------------------------------------------
// The CLI

/// The docker CLI of one engine, with the classic builder.
struct Engine {
    name: &'static str,
    docker: DockerCli,
    /// `DOCKER_API_VERSION`, so both engines of a comparison answer in the same API version.
    api: Option<&'static str>,
}

impl Engine {
    fn new(name: &'static str, host: &str) -> Engine {
        Engine {
            name,
            docker: DockerCli::new(host),
            api: None,
        }
    }

    /// Pinned to API 1.41 (dockerd 20.10's).
    fn pinned(name: &'static str, host: &str) -> Engine {
        Engine {
            api: Some("1.41"),
            ..Engine::new(name, host)
        }
    }

    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut cmd = self.docker.command(args);
        cmd.current_dir(cwd).env("DOCKER_BUILDKIT", "0");
        if let Some(api) = self.api {
            cmd.env("DOCKER_API_VERSION", api);
        }
        cmd
    }

    /// `docker ARGS` in `cwd`.
    fn run_in(&self, cwd: &Path, args: &[&str]) -> Output {
        support::run(self.command(cwd, args), None, BUILD_TIMEOUT)
    }

    /// `docker ARGS` in `cwd` with `stdin`.
    fn run_stdin(&self, cwd: &Path, args: &[&str], stdin: Vec<u8>) -> Output {
        support::run(self.command(cwd, args), Some(stdin), BUILD_TIMEOUT)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_in(Path::new("/"), args)
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.success(),
            "{}: docker {} failed: {out}",
            self.name,
            args.join(" ")
        );
        out
    }

    /// `docker build ARGS` in `cwd`, which must succeed.
    #[track_caller]
    fn build(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut all = vec!["build"];
        all.extend_from_slice(args);
        let out = self.run_in(cwd, &all);
        assert!(
            out.success(),
            "{}: docker {} failed: {out}",
            self.name,
            all.join(" ")
        );
        out
    }

    #[track_caller]
    fn inspect(&self, image: &str) -> Value {
        let out = self.ok(&["image", "inspect", image]);
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!("{}: image inspect printed no JSON ({e}): {out}", self.name)
        });
        v[0].clone()
    }

    #[track_caller]
    fn image_id(&self, image: &str) -> String {
        self.inspect(image)["Id"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no Id for {image}", self.name))
            .to_string()
    }

    /// Pulls `reference` and tags it `busybox:latest`, the base the Dockerfiles name.
    #[track_caller]
    fn provide_busybox(&self, reference: &str) {
        self.ok(&["pull", "-q", reference]);
        self.ok(&["tag", reference, "busybox:latest"]);
    }

    /// `docker ps -a` rows: (full ID, status).
    fn containers(&self) -> Vec<(String, String)> {
        self.ok(&["ps", "-a", "--no-trunc", "--format", "{{.ID}}\t{{.Status}}"])
            .lines()
            .into_iter()
            .filter_map(|l| {
                l.split_once('\t')
                    .map(|(id, status)| (id.to_string(), status.to_string()))
            })
            .collect()
    }

    /// `CreatedBy` of each history row, newest first.
    fn history(&self, image: &str) -> Vec<String> {
        self.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", image])
            .lines()
    }
}

// ---------------------------------------------------------------------------------------------
// Contexts and output

/// Writes `files` (path, content) under `dir`; paths ending in `.sh` are executable.
fn write_context(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        if path.ends_with(".sh") {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    dir.to_path_buf()
}

/// A gzip'd tar of `files`, each with a fixed mtime (as a vendored release would come).
fn targz(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, path, &[][..]).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(content.len() as u64);
            b.append_data(&mut h, path, content.as_bytes()).unwrap();
        }
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// `text` without ANSI colour sequences (dockerd wraps a RUN's stderr in red) and carriage
/// returns (the CLI's "Sending build context" progress).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// One `Step N/M : ...` of a build's output and the lines after it.
#[derive(Debug)]
struct Step {
    text: String,
    lines: Vec<String>,
}

impl Step {
    fn cached(&self) -> bool {
        self.lines.iter().any(|l| l == " ---> Using cache")
    }

    fn ran(&self) -> bool {
        self.lines
            .iter()
            .any(|l| l.starts_with(" ---> Running in "))
    }
}

fn steps(out: &Output) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in plain(&out.stdout).lines() {
        if let Some(text) = line.strip_prefix("Step ") {
            steps.push(Step {
                text: text.to_string(),
                lines: Vec::new(),
            });
        } else if let Some(step) = steps.last_mut() {
            step.lines.push(line.to_string());
        }
    }
    steps
}

fn is_short_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Matches `text` line by line against `pattern`, where `{id}` stands for a 12-digit hex ID;
/// returns those IDs in order.
#[track_caller]
fn match_lines(text: &str, pattern: &[&str]) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut ids = Vec::new();
    let ok = lines.len() == pattern.len()
        && lines
            .iter()
            .zip(pattern)
            .all(|(line, pat)| match pat.split_once("{id}") {
                None => line == pat,
                Some((before, after)) => {
                    let matched = line.len() == before.len() + 12 + after.len()
                        && line.starts_with(before)
                        && line.ends_with(after)
                        && is_short_id(&line[before.len()..before.len() + 12]);
                    if matched {
                        ids.push(line[before.len()..before.len() + 12].to_string());
                    }
                    matched
                }
            });
    assert!(
        ok,
        "output differs from dockerd's form:\n--- got ---\n{text}\n--- expected ---\n{}",
        pattern.join("\n")
    );
    ids
}

/// The error a failed build ends with: the last non-empty line of stderr.
fn last_error(out: &Output) -> String {
    plain(&out.stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_string()
}

#[track_caller]
fn assert_fails_with(out: &Output, code: i32, error: &str) {
    assert_eq!(out.code, Some(code), "exit code: {out}");
    assert_eq!(last_error(out), error, "error line: {out}");
}

// ---------------------------------------------------------------------------------------------
// 1. Parity with dockerd

/// A multi-stage "app" build: a deps stage (ARG before FROM picks the base, a build-arg shadowed
/// by ENV, an ADDed vendor tarball), a build stage (a user made by hand, COPY --from by name and
/// by index, COPY --chown, .dockerignore with an exception, files changed, deleted and re-owned
/// across RUN steps) and a runtime stage with the image metadata.
fn app_context(dir: &Path) -> PathBuf {
    let ctx = write_context(
        dir,
        &[
            (
                "Dockerfile",
                r#"# The base comes from a build-arg, as CI pipelines pin it.
ARG BASE=busybox
ARG VERSION=1.0

FROM ${BASE} AS deps
ARG VERSION
ARG APP_VERSION
ENV APP_VERSION=from-env
RUN mkdir -p /out && echo "deps $VERSION $APP_VERSION" > /out/deps.txt
ADD vendor.tar.gz /opt/vendor/

FROM ${BASE}:latest AS build
ARG CHANNEL=stable
RUN echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> /etc/passwd \
 && echo 'app:x:1000:' >> /etc/group \
 && mkdir -p /home/app /srv/data /srv/tmp /srv/src /srv/bin \
 && echo old > /srv/data/old.txt && echo gone > /srv/tmp/gone.txt && echo mine > /srv/tmp/mine.txt
COPY --from=deps /out/deps.txt /srv/
COPY --from=0 /opt/vendor /srv/vendor
COPY src /srv/src
COPY --chown=app:app conf/ /srv/conf/
COPY skip /srv/skip/
RUN chown -R app:app /srv/data && rm /srv/tmp/gone.txt && echo new > /srv/data/old.txt \
 && chown 1000:1000 /srv/tmp/mine.txt && echo "channel=$CHANNEL" > /srv/channel.txt

FROM build
LABEL org.example.app="demo" org.example.tier=backend
EXPOSE 8080/tcp 9090/udp
VOLUME /srv/data
WORKDIR /srv
COPY bin/entrypoint.sh /srv/bin
COPY docs /srv/src
USER app
STOPSIGNAL SIGTERM
ENTRYPOINT ["/srv/bin/entrypoint.sh"]
CMD ["serve", "--port", "8080"]
"#,
            ),
            (".dockerignore", "skip\n!skip/keep.txt\n*.md\n"),
            ("README.md", "# demo app (not sent: *.md)\n"),
            ("src/main.sh", "echo main\n"),
            ("src/lib/util.sh", "echo util\n"),
            ("docs/guide.md", "only top-level *.md is ignored\n"),
            ("skip/keep.txt", "kept by the exception\n"),
            ("skip/drop.txt", "ignored\n"),
            ("conf/app.conf", "port=8080\n"),
            (
                "bin/entrypoint.sh",
                "#!/bin/sh\n\
                 echo \"args: $*\"\n\
                 echo \"id: $(id)\"\n\
                 echo \"pwd: $(pwd)\"\n\
                 cat /srv/deps.txt /srv/channel.txt\n\
                 find /srv | sort | while read f; do stat -c '%n %F %A %u:%g' \"$f\"; done\n\
                 find /srv -type f | sort | xargs stat -c '%n %s'\n\
                 find /srv/src /srv/conf /srv/skip /srv/vendor /srv/bin -type f | sort | xargs stat -c '%n %Y'\n",
            ),
        ],
    );
    std::fs::write(
        ctx.join("vendor.tar.gz"),
        targz(&[
            ("pkg/", ""),
            ("pkg/VERSION", "1.2.3\n"),
            ("pkg/lib/vendored.txt", "vendored\n"),
        ]),
    )
    .unwrap();
    ctx
}

/// The other instructions, as a Dockerfile mixing them would use them: ONBUILD, SHELL,
/// HEALTHCHECK, ENV with ${VAR:-default} and ${VAR:+alt}, relative WORKDIRs, a wildcard COPY,
/// a copied symlink, exec-form RUN, MAINTAINER, a numeric USER, an unused build-arg.
fn kitchen_context(dir: &Path) -> PathBuf {
    let ctx = write_context(
        dir,
        &[
            (
                "Dockerfile",
                r#"FROM busybox AS base
ONBUILD RUN echo onbuild-ran > /onbuild.txt
ENV GREETING="hello world" EMPTY= PATHX=/opt/bin:${PATH}
ENV DEFAULTED=${UNSET:-fallback} ALT=${GREETING:+set}
SHELL ["/bin/sh", "-e", "-c"]
RUN echo "$GREETING|$DEFAULTED|$ALT|$PATHX" > /env.txt
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD cat /env.txt || exit 1
WORKDIR app
WORKDIR sub
RUN pwd > /pwd.txt
COPY src/*/*.sh /wild/
COPY links /links
COPY data.txt .
ADD data.txt /added
RUN ["/bin/sh", "-c", "echo exec-form > /exec.txt"]
MAINTAINER someone@example.com
USER 1234:5678
RUN id > /tmp/id.txt
USER root

FROM base
ARG USED=1
RUN echo "used=$USED"
CMD cat /onbuild.txt /env.txt /pwd.txt /exec.txt /tmp/id.txt /app/sub/data.txt /added; \
    stat -c '%n %F %A %s' /wild/* /links /links/*; readlink /links/top-link; echo "home=$HOME"
"#,
            ),
            (".dockerignore", "Dockerfile\n.dockerignore\n"),
            ("src/a/one.sh", "one\n"),
            ("src/b/two.sh", "two\n"),
            ("src/top.sh", "top\n"),
            ("data.txt", "data\n"),
        ],
    );
    std::fs::create_dir_all(ctx.join("links")).unwrap();
    std::os::unix::fs::symlink("../src/top.sh", ctx.join("links/top-link")).unwrap();
    ctx
}

/// What one engine made of a context.
struct Built {
    /// The build's output without IDs and without the lines about step containers (dockerd
    /// 20.10 makes one for every metadata step too; Docker 23+ and Wharf only for RUN).
    output: Vec<String>,
    run: String,
    config: Value,
    history: Vec<String>,
    layers: usize,
}

fn build_and_describe(e: &Engine, ctx: &Path, build_args: &[&str], tag: &str) -> Built {
    let mut args: Vec<&str> = build_args.to_vec();
    args.extend(["-t", tag, "."]);
    let out = e.build(ctx, &args);
    let run = e.ok(&["run", "--rm", "--network", "none", tag]);
    let inspect = e.inspect(tag);
    Built {
        output: plain(&out.stdout)
            .lines()
            .filter(|l| {
                !l.starts_with(" ---> Running in ")
                    && !l.starts_with("Removing intermediate container ")
            })
            .map(|l| {
                let masked: Vec<String> = l
                    .split(' ')
                    .map(|w| {
                        if is_short_id(w) {
                            "<id>".to_string()
                        } else {
                            w.to_string()
                        }
                    })
                    .collect();
                masked.join(" ")
            })
            .collect(),
        run: run.stdout,
        config: inspect["Config"].clone(),
        history: e.history(tag),
        layers: inspect["RootFS"]["Layers"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0),
    }
}

/// `Config` without `Image` (the parent's ID, which differs with the parents). `Labels` is
/// compared as it is: `null` for an image without labels, in both engines.
fn comparable_config(config: &Value) -> Value {
    let mut c = config.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("Image");
    }
    c
}

/// A `COPY`/`ADD` row with its source hash replaced: `from:<hash>` (Wharf hashes `COPY --from`
/// sources by image and path) or `file:`/`dir:<hash>` (dockerd's content hash).
fn without_source_hash(created_by: &str) -> Option<String> {
    for prefix in ["from:", "file:", "dir:"] {
        let Some(at) = created_by.find(&format!(" {prefix}")) else {
            continue;
        };
        let start = at + 1 + prefix.len();
        let hash = created_by.get(start..start + 64)?;
        if hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(format!(
                "{} SRC{}",
                &created_by[..at],
                &created_by[start + 64..]
            ));
        }
    }
    None
}

#[track_caller]
fn assert_same_build(what: &str, wharf: &Built, dockerd: &Built) {
    assert_eq!(
        wharf.output, dockerd.output,
        "{what}: the same build output (but IDs and step containers)"
    );
    assert_eq!(
        wharf.run, dockerd.run,
        "{what}: docker run --rm prints the same in both engines"
    );
    let (wc, dc) = (
        comparable_config(&wharf.config),
        comparable_config(&dockerd.config),
    );
    assert_eq!(
        wc, dc,
        "{what}: image Config (without Image)\nwharf:   {wc:#}\ndockerd: {dc:#}"
    );
    assert_eq!(
        wharf.history.len(),
        dockerd.history.len(),
        "{what}: history rows\nwharf:   {:#?}\ndockerd: {:#?}",
        wharf.history,
        dockerd.history
    );
    for (w, d) in wharf.history.iter().zip(&dockerd.history) {
        if w.contains(" from:") {
            assert_eq!(
                without_source_hash(w),
                without_source_hash(d),
                "{what}: a COPY --from row, but for its source hash"
            );
        } else {
            assert_eq!(w, d, "{what}: history CreatedBy");
        }
    }
    assert_eq!(wharf.layers, dockerd.layers, "{what}: RootFS layers");
}

#[test]
fn the_same_contexts_build_the_same_images_as_dockerd() {
    if support::skip_on_reference("compares Wharf with a dockerd of its own") {
        return;
    }
    let (registry, busybox) = registry_with_busybox();
    let (dockerd, stack) = std::thread::scope(|s| {
        let dockerd = s.spawn(Dockerd::start);
        let stack = Stack::start();
        (dockerd.join().unwrap(), stack)
    });
    let wharf = Engine::pinned("wharf", &stack.host);
    let docker = Engine::pinned("dockerd", &dockerd.host);
    let tmp = tempfile::tempdir().unwrap();
    let app = app_context(&tmp.path().join("app"));
    let kitchen = kitchen_context(&tmp.path().join("kitchen"));
    let scratch = write_context(
        &tmp.path().join("scratch"),
        &[(
            "Dockerfile",
            "FROM scratch\n\
             COPY --from=busybox /bin/busybox /busybox\n\
             CMD [\"/busybox\",\"echo\",\"scratch ok\"]\n",
        )],
    );
    let missing = write_context(
        &tmp.path().join("missing"),
        &[(
            "Dockerfile",
            &format!("FROM {}/nope/missing:1.0\nRUN true\n", registry.host),
        )],
    );
    let build_args = [
        "--build-arg",
        "VERSION=2.5",
        "--build-arg",
        "APP_VERSION=from-arg",
        "--build-arg",
        "CHANNEL=beta",
    ];

    // Both engines build side by side.
    let results: Vec<(Built, Built, Built, Output)> = std::thread::scope(|s| {
        let jobs: Vec<_> = [&wharf, &docker]
            .into_iter()
            .map(|e| {
                let (app, kitchen, scratch, missing, busybox) =
                    (&app, &kitchen, &scratch, &missing, &busybox);
                s.spawn(move || {
                    e.provide_busybox(busybox);
                    (
                        build_and_describe(e, app, &build_args, "app:parity"),
                        build_and_describe(e, scratch, &[], "scratch:parity"),
                        build_and_describe(
                            e,
                            kitchen,
                            &["--build-arg", "USED=2", "--build-arg", "UNUSED=1"],
                            "kitchen:parity",
                        ),
                        e.run_in(missing, &["build", "-t", "missing", "."]),
                    )
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let (w, d) = (&results[0], &results[1]);

    // What the app image holds, as dockerd built it (so the comparison means something).
    let run = &d.0.run;
    for want in [
        "args: serve --port 8080",
        "id: uid=1000(app) gid=1000(app) groups=1000(app)",
        "pwd: /srv",
        "deps 2.5 from-env",
        "channel=beta",
        "/srv/bin/entrypoint.sh regular file -rwxr-xr-x 0:0",
        "/srv/conf/app.conf regular file -rw-r--r-- 1000:1000",
        "/srv/data directory drwxr-xr-x 1000:1000",
        "/srv/data/old.txt 4",
        "/srv/skip/keep.txt regular file -rw-r--r-- 0:0",
        "/srv/src/guide.md regular file -rw-r--r-- 0:0",
        "/srv/src/lib/util.sh regular file -rwxr-xr-x 0:0",
        "/srv/src/main.sh 10",
        "/srv/tmp/mine.txt regular file -rw-r--r-- 1000:1000",
        "/srv/vendor/pkg/VERSION 1700000000",
        "/srv/vendor/pkg/lib/vendored.txt 9",
    ] {
        assert!(
            run.lines().any(|l| l == want),
            "dockerd's app image shows {want:?}:\n{run}"
        );
    }
    for absent in ["drop.txt", "README.md", "gone.txt", "/srv/vendor.tar.gz"] {
        assert!(
            !run.contains(absent),
            "no {absent} in the app image:\n{run}"
        );
    }
    assert_same_build("app", &w.0, &d.0);
    assert_eq!(
        d.0.config["Labels"]["org.example.tier"], "backend",
        "{}",
        d.0.config
    );

    assert_eq!(d.1.run, "scratch ok\n");
    assert_same_build("FROM scratch", &w.1, &d.1);

    let (run, output) = (&d.2.run, &d.2.output);
    for want in [
        "onbuild-ran",
        "hello world|fallback|set|/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "/app/sub",
        "exec-form",
        "uid=1234 gid=5678 groups=5678",
        "/wild/one.sh regular file -rwxr-xr-x 4",
        "/links/top-link symbolic link lrwxrwxrwx 13",
        "../src/top.sh",
        "home=/root",
    ] {
        assert!(
            run.lines().any(|l| l == want),
            "dockerd's kitchen image shows {want:?}:\n{run}"
        );
    }
    for want in [
        "used=2",
        "[Warning] One or more build-args [UNUSED] were not consumed",
    ] {
        assert!(
            output.iter().any(|l| l == want),
            "dockerd's kitchen build prints {want:?}:\n{output:#?}"
        );
    }
    assert_same_build("kitchen", &w.2, &d.2);

    // A base image the registry does not have.
    let want = format!(
        "manifest for {}/nope/missing:1.0 not found: manifest unknown: manifest unknown",
        registry.host
    );
    assert_fails_with(&d.3, 1, &want);
    assert_fails_with(&w.3, 1, &want);
}

// ---------------------------------------------------------------------------------------------
// 2. Output and errors as dockerd prints them

#[test]
fn build_prints_steps_ids_and_tags_as_dockerd_does() {
    if support::skip_on_reference(
        "dockerd 20.10 runs a container for metadata steps (Docker 23+ and Wharf do not)",
    ) {
        return;
    }
    let (_registry, busybox) = registry_with_busybox();
    let stack = Stack::start();
    let e = Engine::new("wharf", &stack.host);
    e.provide_busybox(&busybox);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = write_context(
        tmp.path(),
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 RUN echo first && echo second && echo third\n\
                 COPY greeting.txt /greeting.txt\n\
                 CMD [\"cat\", \"/greeting.txt\"]\n",
            ),
            ("greeting.txt", "hello from the context\n"),
        ],
    );

    let out = e.build(&ctx, &["-t", "out:one", "-t", "out", "-t", "out:two", "."]);
    let stdout = plain(&out.stdout);
    let (sending, rest) = stdout.split_once('\n').unwrap_or_default();
    assert!(
        sending.starts_with("Sending build context to Docker daemon  "),
        "{out}"
    );
    let ids = match_lines(
        rest,
        &[
            "Step 1/4 : FROM busybox",
            " ---> {id}",
            "Step 2/4 : RUN echo first && echo second && echo third",
            " ---> Running in {id}",
            "first",
            "second",
            "third",
            "Removing intermediate container {id}",
            " ---> {id}",
            "Step 3/4 : COPY greeting.txt /greeting.txt",
            " ---> {id}",
            "Step 4/4 : CMD [\"cat\", \"/greeting.txt\"]",
            " ---> {id}",
            "Successfully built {id}",
            "Successfully tagged out:one",
            "Successfully tagged out:latest",
            "Successfully tagged out:two",
        ],
    );
    let id = e.image_id("out:one");
    assert_eq!(ids[0], e.image_id("busybox")[7..19], "FROM shows the base");
    assert_eq!(ids[1], ids[2], "the RUN container is the one removed");
    assert_eq!(ids[5], ids[6], "the last step's image is the result");
    assert_eq!(ids[6], id[7..19], "Successfully built names the image");
    for tag in ["out:latest", "out:two"] {
        assert_eq!(e.image_id(tag), id, "{tag}");
    }
    let history = e.history("out:one");
    assert_eq!(
        (
            history[0].as_str(),
            without_source_hash(&history[1]).as_deref(),
            history[2].as_str()
        ),
        (
            "/bin/sh -c #(nop)  CMD [\"cat\" \"/greeting.txt\"]",
            Some("/bin/sh -c #(nop) COPY SRC in /greeting.txt "),
            "/bin/sh -c echo first && echo second && echo third",
        ),
        "history rows as dockerd writes them: {history:#?}"
    );
    assert!(history[1].contains(" COPY file:"), "{history:#?}");
    assert!(
        e.containers().is_empty(),
        "the RUN container was removed: {:?}",
        e.containers()
    );
    assert_eq!(
        e.ok(&["run", "--rm", "out:two"]).stdout,
        "hello from the context\n"
    );

    // -q prints the ID alone; --iidfile writes it.
    let iidfile = tmp.path().join("iid");
    let quiet = e.build(
        &ctx,
        &[
            "-q",
            "--iidfile",
            iidfile.to_str().unwrap(),
            "-t",
            "out:quiet",
            ".",
        ],
    );
    let quiet_id = e.image_id("out:quiet");
    assert_eq!(quiet.stdout, format!("{quiet_id}\n"), "{quiet}");
    // With -q the CLI writes what it printed, newline and all (so does it against dockerd).
    assert_eq!(
        std::fs::read_to_string(&iidfile).unwrap(),
        format!("{quiet_id}\n")
    );
    e.build(
        &ctx,
        &["--iidfile", iidfile.to_str().unwrap(), "-t", "out:iid", "."],
    );
    assert_eq!(
        std::fs::read_to_string(&iidfile).unwrap(),
        e.image_id("out:iid")
    );
}

#[test]
fn build_errors_read_as_dockerd_writes_them() {
    let (registry, busybox) = registry_with_busybox();
    let stack = Stack::start();
    let e = Engine::new("wharf", &stack.host);
    e.provide_busybox(&busybox);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = |name: &str, dockerfile: &str, extra: &[(&str, &str)]| {
        let mut files = vec![("Dockerfile", dockerfile)];
        files.extend_from_slice(extra);
        write_context(&tmp.path().join(name), &files)
    };

    let c = ctx("unknown", "FROM busybox\nFOO bar\n", &[]);
    assert_fails_with(
        &e.run_in(&c, &["build", "."]),
        1,
        "Error response from daemon: dockerfile parse error line 2: unknown instruction: FOO",
    );

    let c = ctx("missing", "FROM busybox\nCOPY missing.txt /\n", &[]);
    assert_fails_with(
        &e.run_in(&c, &["build", "."]),
        1,
        "COPY failed: file not found in build context or excluded by .dockerignore: stat missing.txt: file does not exist",
    );
    let c = ctx(
        "ignored",
        "FROM busybox\nCOPY secret.txt /\n",
        &[
            ("secret.txt", "s3cret\n"),
            (".dockerignore", "secret.txt\n"),
        ],
    );
    assert_fails_with(
        &e.run_in(&c, &["build", "."]),
        1,
        "COPY failed: file not found in build context or excluded by .dockerignore: stat secret.txt: file does not exist",
    );

    let c = ctx("exit3", "FROM busybox\nRUN exit 3\n", &[]);
    let out = e.run_in(&c, &["build", "-t", "exit3", "."]);
    assert_fails_with(
        &out,
        3,
        "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
    );
    assert!(
        plain(&out.stdout).contains("Step 2/2 : RUN exit 3\n ---> Running in "),
        "{out}"
    );
    assert!(!e.run(&["image", "inspect", "exit3"]).success());

    let c = ctx(
        "nobase",
        &format!("FROM {}/nope/missing:1.0\nRUN true\n", registry.host),
        &[],
    );
    assert_fails_with(
        &e.run_in(&c, &["build", "."]),
        1,
        &format!(
            "manifest for {}/nope/missing:1.0 not found: manifest unknown: manifest unknown",
            registry.host
        ),
    );

    let c = ctx("target", "FROM busybox AS base\nRUN true\n", &[]);
    assert_fails_with(
        &e.run_in(&c, &["build", "--target", "nope", "."]),
        1,
        "Error response from daemon: failed to reach build target nope in Dockerfile",
    );
}

#[test]
fn build_takes_its_dockerfile_and_context_the_ways_the_cli_sends_them() {
    let (_registry, busybox) = registry_with_busybox();
    let stack = Stack::start();
    let e = Engine::new("wharf", &stack.host);
    e.provide_busybox(&busybox);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = write_context(
        &tmp.path().join("ctx"),
        &[
            ("hello.txt", "hello-ctx\n"),
            (
                "other/Dockerfile.dev",
                "FROM busybox\nCOPY hello.txt /\nRUN cat /hello.txt\n",
            ),
        ],
    );

    // (--no-cache: the RUN steps' output is checked, also against a reused reference engine.)
    // -f names a Dockerfile inside the context, relative to the working directory.
    let out = e.build(
        &ctx,
        &["--no-cache", "-f", "other/Dockerfile.dev", "-t", "dev", "."],
    );
    assert!(out.lines().iter().any(|l| l == "hello-ctx"), "{out}");
    assert_eq!(
        e.ok(&["run", "--rm", "dev", "cat", "/hello.txt"]).stdout,
        "hello-ctx\n"
    );

    // A Dockerfile on stdin, no context.
    let out = e.run_stdin(
        tmp.path(),
        &["build", "--no-cache", "-t", "fromstdin", "-"],
        b"FROM busybox\nRUN echo built from stdin > /stdin.txt && cat /stdin.txt\n".to_vec(),
    );
    assert!(out.success(), "{out}");
    assert!(out.lines().iter().any(|l| l == "built from stdin"), "{out}");
    assert_eq!(
        e.ok(&["run", "--rm", "fromstdin", "cat", "/stdin.txt"])
            .stdout,
        "built from stdin\n"
    );

    // A gzip'd context tar on stdin, its Dockerfile named with -f.
    let tar = targz(&[
        ("hello.txt", "hello-tar\n"),
        (
            "other/Dockerfile.dev",
            "FROM busybox\nCOPY hello.txt /\nRUN cat /hello.txt\n",
        ),
    ]);
    let out = e.run_stdin(
        tmp.path(),
        &[
            "build",
            "--no-cache",
            "-f",
            "other/Dockerfile.dev",
            "-t",
            "fromtar",
            "-",
        ],
        tar,
    );
    assert!(out.success(), "{out}");
    assert!(out.lines().iter().any(|l| l == "hello-tar"), "{out}");
}

#[test]
fn a_dockerfile_outside_the_context_is_sent_along_by_the_cli() {
    let (_registry, busybox) = registry_with_busybox();
    let stack = Stack::start();
    let e = Engine::new("wharf", &stack.host);
    e.provide_busybox(&busybox);
    let tmp = tempfile::tempdir().unwrap();
    write_context(&tmp.path().join("ctx"), &[("hello.txt", "hello-ctx\n")]);
    std::fs::write(
        tmp.path().join("outside.Dockerfile"),
        "FROM busybox\nCOPY hello.txt /from-outside.txt\nCMD [\"cat\", \"/from-outside.txt\"]\n",
    )
    .unwrap();
    // The CLI adds it to the context tar as .dockerfile.<random>, with a .dockerignore naming it.
    e.build(
        tmp.path(),
        &["-f", "outside.Dockerfile", "-t", "outside", "ctx"],
    );
    assert_eq!(e.ok(&["run", "--rm", "outside"]).stdout, "hello-ctx\n");
}

#[test]
fn build_options_label_no_cache_network_and_rm() {
    let (_registry, busybox) = registry_with_busybox();
    let stack = Stack::start();
    let e = Engine::new("wharf", &stack.host);
    e.provide_busybox(&busybox);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = write_context(
        tmp.path(),
        &[
            ("Dockerfile", "FROM busybox\nLABEL org.example.app=demo\n"),
            (
                "Dockerfile.net",
                "FROM busybox\n\
                 RUN ip -o link | cut -d: -f2 | tr -d ' '; nc -w 2 10.231.254.1 80 </dev/null || echo unreachable\n",
            ),
            ("Dockerfile.keep", "FROM busybox\nRUN echo kept > /kept.txt\n"),
            ("Dockerfile.fail", "FROM busybox\nRUN echo failing && exit 3\n"),
        ],
    );

    // --label: LABEL steps at the end, keys sorted, values not expanded.
    let out = e.build(
        &ctx,
        &[
            "--label",
            "team=core",
            "--label",
            "note=a b $HOME",
            "-t",
            "labelled",
            ".",
        ],
    );
    let texts: Vec<String> = steps(&out).into_iter().map(|s| s.text).collect();
    assert_eq!(
        texts,
        [
            "1/4 : FROM busybox",
            "2/4 : LABEL org.example.app=demo",
            "3/4 : LABEL note=a b $HOME",
            "4/4 : LABEL team=core"
        ],
        "{out}"
    );
    let labels = &e.inspect("labelled")["Config"]["Labels"];
    assert_eq!(labels["team"], "core", "{labels}");
    assert_eq!(labels["note"], "a b $HOME", "{labels}");
    assert_eq!(labels["org.example.app"], "demo", "{labels}");
    assert_eq!(
        e.history("labelled")[..2],
        [
            "/bin/sh -c #(nop)  LABEL team=core",
            "/bin/sh -c #(nop)  LABEL note=a b $HOME"
        ]
    );

    // --no-cache: every step made again, under a new ID.
    let again = e.build(&ctx, &["--no-cache", "-t", "labelled:again", "."]);
    assert!(!again.stdout.contains("Using cache"), "--no-cache: {again}");

    // --network none: only lo, and nothing is reachable; the default network has eth0.
    let none = e.build(
        &ctx,
        &[
            "-f",
            "Dockerfile.net",
            "--network",
            "none",
            "--no-cache",
            ".",
        ],
    );
    let run = &steps(&none)[1].lines;
    assert!(run.iter().any(|l| l == "lo"), "{none}");
    assert!(!run.iter().any(|l| l.starts_with("eth0")), "{none}");
    assert!(
        run.iter().any(|l| l == "unreachable")
            && run.iter().any(|l| l.ends_with("Network is unreachable")),
        "{none}"
    );
    if support::reference_host().is_none() {
        // (A reference dockerd for these tests runs with --bridge=none.)
        let bridged = e.build(&ctx, &["-f", "Dockerfile.net", "--no-cache", "."]);
        let run = &steps(&bridged)[1].lines;
        assert!(run.iter().any(|l| l.starts_with("eth0")), "{bridged}");
    }

    // --rm=false keeps the RUN container (exited 0), and says nothing of removing it.
    let kept = e.build(
        &ctx,
        &["-f", "Dockerfile.keep", "--rm=false", "--no-cache", "."],
    );
    assert!(
        !kept.stdout.contains("Removing intermediate container"),
        "{kept}"
    );
    let running = running_in(&kept);
    let ps = e.containers();
    assert!(
        ps.iter()
            .any(|(id, status)| id.starts_with(&running) && status.starts_with("Exited (0)")),
        "--rm=false leaves {running}: {ps:?}"
    );

    // A failed RUN leaves its container (as dockerd does), unless --force-rm.
    let failed = e.run_in(&ctx, &["build", "-f", "Dockerfile.fail", "."]);
    assert_eq!(failed.code, Some(3), "{failed}");
    let left = running_in(&failed);
    let ps = e.containers();
    assert!(
        ps.iter()
            .any(|(id, status)| id.starts_with(&left) && status.starts_with("Exited (3)")),
        "a failed RUN leaves {left}: {ps:?}"
    );
    let forced = e.run_in(&ctx, &["build", "--force-rm", "-f", "Dockerfile.fail", "."]);
    assert_eq!(forced.code, Some(3), "{forced}");
    let gone = running_in(&forced);
    let ps = e.containers();
    assert!(
        !ps.iter().any(|(id, _)| id.starts_with(&gone)),
        "--force-rm removes {gone}: {ps:?}"
    );
}

/// The ID of the (last) ` ---> Running in <id>` line.
#[track_caller]
fn running_in(out: &Output) -> String {
    plain(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(" ---> Running in "))
        .next_back()
        .filter(|id| is_short_id(id))
        .unwrap_or_else(|| panic!("no ' ---> Running in <id>' line: {out}"))
        .to_string()
}

#[test]
fn force_rm_says_it_removes_the_failed_step_container() {
    let (_registry, busybox) = registry_with_busybox();
    let stack = Stack::start();
    let e = Engine::new("wharf", &stack.host);
    e.provide_busybox(&busybox);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = write_context(tmp.path(), &[("Dockerfile", "FROM busybox\nRUN exit 3\n")]);
    let out = e.run_in(&ctx, &["build", "--force-rm", "."]);
    assert_eq!(out.code, Some(3), "{out}");
    let id = running_in(&out);
    // dockerd (20.10 and 28: dispatch's deferred RemoveAll) reports the removal before the error.
    assert!(
        plain(&out.stdout).ends_with(&format!(
            " ---> Running in {id}\nRemoving intermediate container {id}\n"
        )),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Cache

#[test]
fn rebuilds_use_the_cache_until_a_file_or_a_build_arg_changes() {
    // A first file of its own, so a reused reference engine has no cache for it either.
    let a = format!("a1 {:016x}\n", rand::random::<u64>());
    let (_registry, busybox) = registry_with_busybox();
    let stack = Stack::start();
    let e = Engine::new("wharf", &stack.host);
    e.provide_busybox(&busybox);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = write_context(
        tmp.path(),
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 WORKDIR /app\n\
                 COPY a.txt /app/\n\
                 RUN cat /app/a.txt > /app/combined\n\
                 COPY b.txt /app/\n\
                 ARG FLAVOR=plain\n\
                 RUN echo \"flavor=$FLAVOR\" >> /app/combined && cat b.txt >> /app/combined\n\
                 CMD [\"cat\", \"/app/combined\"]\n",
            ),
            ("a.txt", &a),
            ("b.txt", "b1\n"),
        ],
    );
    let build = |flavor: &str| {
        let arg = format!("FLAVOR={flavor}");
        let out = e.build(&ctx, &["--build-arg", &arg, "-t", "cached", "."]);
        let id = e.image_id("cached");
        (steps(&out), id, out)
    };
    let cached_steps = |steps: &[Step]| -> Vec<usize> {
        steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.cached())
            .map(|(i, _)| i + 1)
            .collect()
    };

    let (first, id1, out) = build("x");
    assert_eq!(first.len(), 8, "{out}");
    if support::reference_host().is_none() {
        assert!(
            cached_steps(&first).is_empty(),
            "a fresh stack has no cache: {out}"
        );
    } else {
        // (A reused reference engine may have WORKDIR /app on busybox from an earlier run.)
        assert!(cached_steps(&first).iter().all(|&i| i < 3), "{out}");
    }
    assert_eq!(
        e.ok(&["run", "--rm", "cached"]).stdout,
        format!("{a}flavor=x\nb1\n")
    );

    // The same context again: every step after FROM from the cache, nothing run, the same ID.
    let (again, id2, out) = build("x");
    assert_eq!(cached_steps(&again), (2..=8).collect::<Vec<_>>(), "{out}");
    assert!(!again.iter().any(Step::ran), "{out}");
    assert_eq!(id2, id1, "a full cache hit gives the same image");

    // A changed file: the cache holds up to its COPY.
    std::fs::write(ctx.join("b.txt"), "b2\n").unwrap();
    let (changed, id3, out) = build("x");
    assert_eq!(cached_steps(&changed), vec![2, 3, 4], "{out}");
    assert!(changed[6].ran(), "{out}");
    assert_ne!(id3, id1);
    assert_eq!(
        e.ok(&["run", "--rm", "cached"]).stdout,
        format!("{a}flavor=x\nb2\n")
    );

    // A changed build-arg: the RUN that sees it runs again.
    let (flavored, id4, out) = build("y");
    assert_eq!(cached_steps(&flavored), vec![2, 3, 4, 5, 6], "{out}");
    assert!(flavored[6].ran(), "{out}");
    assert_ne!(id4, id3);
    assert_eq!(
        e.ok(&["run", "--rm", "cached"]).stdout,
        format!("{a}flavor=y\nb2\n")
    );

    // Back to the first context: the older entries are still there.
    std::fs::write(ctx.join("b.txt"), "b1\n").unwrap();
    let (back, id5, out) = build("x");
    assert_eq!(cached_steps(&back), (2..=8).collect::<Vec<_>>(), "{out}");
    assert_eq!(id5, id1);
}

// ---------------------------------------------------------------------------------------------
// 4. A build farm

fn builder_pids(stack: &Stack) -> Vec<u32> {
    let up = stack.proc.as_ref().map(Proc::pid).unwrap_or(0);
    children_of(up)
        .into_iter()
        .filter(|pid| cmdline(*pid).get(1).is_some_and(|a| a == "builder"))
        .collect()
}

/// PIDs of the builders that logged `build finished`.
fn finished_by(stack: &Stack) -> Vec<u32> {
    let mut pids: Vec<u32> = plain(&stack.log())
        .lines()
        .filter(|l| l.contains("build finished"))
        .filter_map(|l| l.split("pid=").nth(1))
        .filter_map(|p| p.split_whitespace().next()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn farm() -> Stack {
    Stack::start_with(StackOptions {
        extra_args: vec!["--builders".into(), "2".into()],
        ..Default::default()
    })
}

#[test]
fn a_build_farm_shares_one_cache() {
    if support::skip_on_reference("starts builders of its own") {
        return;
    }
    let (_registry, busybox) = registry_with_busybox();
    let stack = farm();
    let e = Engine::new("wharf", &stack.host);
    e.provide_busybox(&busybox);
    let builders = builder_pids(&stack);
    assert_eq!(builders.len(), 2, "wharf up --builders 2 runs two builders");
    let tmp = tempfile::tempdir().unwrap();
    let ctx = write_context(
        tmp.path(),
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 COPY app.conf /etc/app.conf\n\
                 RUN echo built > /built.txt\n\
                 ENV MODE=farm\n\
                 CMD [\"cat\", \"/built.txt\"]\n",
            ),
            ("app.conf", "x=1\n"),
        ],
    );
    let first = e.build(&ctx, &["-t", "farm", "."]);
    assert!(!steps(&first).iter().any(Step::cached), "{first}");
    let id = e.image_id("farm");

    // Builds go to either builder; each finds the other's steps.
    let mut rebuilds = 0;
    while rebuilds < 16 && (rebuilds < 6 || finished_by(&stack).len() < 2) {
        let out = e.build(&ctx, &["-t", "farm", "."]);
        let s = steps(&out);
        assert!(
            s[1..].iter().all(Step::cached),
            "rebuild {rebuilds}: every step from the cache: {out}"
        );
        assert_eq!(e.image_id("farm"), id, "rebuild {rebuilds}: the same image");
        rebuilds += 1;
    }
    assert_eq!(
        finished_by(&stack),
        builders,
        "both builders built something in {rebuilds} rebuilds"
    );
}

#[test]
fn killing_the_builders_mid_build_fails_it_cleanly() {
    if support::skip_on_reference("kills Wharf's builders") {
        return;
    }
    let (_registry, busybox) = registry_with_busybox();
    let stack = farm();
    let e = Engine::new("wharf", &stack.host);
    e.provide_busybox(&busybox);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = write_context(
        &tmp.path().join("ctx"),
        &[("Dockerfile", "FROM busybox\nRUN sleep 30\nRUN echo after\n")],
    );
    let log = tmp.path().join("build.log");
    let mut build = build_until_running(&e, &ctx, "killed", &log);
    let output = || plain(&std::fs::read_to_string(&log).unwrap_or_default());

    // One builder at a time; the gateway gives up on a silent builder after 6 s.
    let mut status = None;
    let builders = builder_pids(&stack);
    assert_eq!(builders.len(), 2);
    for pid in &builders {
        // SAFETY: kill(2) on a builder process of this test's own `wharf up`.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until && status.is_none() {
            status = build.exited();
            std::thread::sleep(Duration::from_millis(50));
        }
        if status.is_some() {
            break;
        }
    }
    let status = status.unwrap_or_else(|| {
        panic!(
            "docker build still runs 8 s after both builders died:\n{}",
            output()
        )
    });
    let text = output();
    assert!(!status.success(), "the build fails:\n{text}");
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        last.contains("the builder stopped answering mid-build")
            && last.contains("no image was tagged"),
        "the build ends with an error line that says what happened: {last:?}\n{text}"
    );
    assert!(
        !text.contains("Step 3/3") && !text.lines().any(|l| l == "after"),
        "{text}"
    );
    assert!(
        !e.run(&["image", "inspect", "killed"]).success(),
        "no image is tagged"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = e.containers();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the build's container is removed within 10 s: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The supervisor restarts the builders, and the next build works.
    let deadline = Instant::now() + Duration::from_secs(30);
    while builder_pids(&stack)
        .iter()
        .filter(|p| !builders.contains(p))
        .count()
        == 0
    {
        assert!(Instant::now() < deadline, "no builder was restarted");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo after the restart\n",
    )
    .unwrap();
    // A restarted builder may still be joining the bus: the build is retried for a while.
    let deadline = Instant::now() + Duration::from_secs(15);
    let out = loop {
        let out = e.run_in(&ctx, &["build", "-t", "killed", "."]);
        if out.success() || Instant::now() > deadline {
            break out;
        }
        eprintln!("build after the restart failed, retrying: {out}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        out.success() && out.lines().iter().any(|l| l == "after the restart"),
        "{out}"
    );
    e.image_id("killed");
}

/// A route of [`serve_http`]: path, status, headers, body.
type Route = (
    &'static str,
    u16,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

/// A one-file-per-path HTTP server for `ADD <url>`: path -> (status, headers, body).
fn serve_http(routes: Vec<Route>) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("");
            let (status, headers, body) = routes
                .iter()
                .find(|r| r.0 == path)
                .map(|r| (r.1, r.2.clone(), r.3))
                .unwrap_or((404, vec![], "no such file\n"));
            let mut head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                if status == 200 { "OK" } else { "Not Found" },
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
    port
}

#[test]
fn add_downloads_urls_copy_takes_chmod_and_run_takes_a_heredoc() {
    if support::skip_on_reference("COPY --chmod and RUN heredocs need BuildKit in dockerd 20.10") {
        return;
    }
    let port = serve_http(vec![
        (
            "/files/tool.sh",
            200,
            vec![("Last-Modified", "Tue, 02 Jan 2024 03:04:05 GMT")],
            "echo from url\n",
        ),
        (
            "/dl/",
            200,
            vec![("Content-Disposition", "attachment; filename=\"named.txt\"")],
            "disposition\n",
        ),
    ]);
    let (_registry, busybox) = registry_with_busybox();
    let stack = Stack::start();
    let e = Engine::new("wharf", &stack.host);
    e.provide_busybox(&busybox);
    let tmp = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        "FROM busybox\n\
         ADD http://127.0.0.1:{port}/files/tool.sh /opt/\n\
         ADD http://127.0.0.1:{port}/dl/ /opt/\n\
         COPY --chmod=0750 script.sh /bin/script.sh\n\
         RUN <<EOF\n\
         echo heredoc > /heredoc.txt\n\
         EOF\n\
         CMD stat -c '%a %Y %n' /opt/tool.sh /opt/named.txt /bin/script.sh; cat /opt/tool.sh /opt/named.txt /heredoc.txt\n"
    );
    let ctx = write_context(
        tmp.path(),
        &[
            ("Dockerfile", dockerfile.as_str()),
            ("script.sh", "echo script\n"),
            (
                "Dockerfile.missing",
                &format!("FROM busybox\nADD http://127.0.0.1:{port}/missing /x\n"),
            ),
        ],
    );
    let out = e.build(&ctx, &["-t", "fetched", "."]);
    assert!(out.success(), "{}", plain(&out.stdout));
    let run = e.ok(&["run", "--rm", "fetched"]);
    assert_eq!(
        run.lines(),
        [
            // A download is 0600 with the server's Last-Modified as its time (dockerd's rule);
            // without one, the zero time.
            "600 1704164645 /opt/tool.sh",
            "600 0 /opt/named.txt",
            "750 0 /bin/script.sh"
                .replace(" 0 ", &format!(" {} ", mtime_of(&ctx.join("script.sh"))))
                .as_str(),
            "echo from url",
            "disposition",
            "heredoc",
        ]
    );
    let out = e.run_in(&ctx, &["build", "-f", "Dockerfile.missing", "."]);
    assert_fails_with(
        &out,
        1,
        &format!(
            "ADD failed: failed to GET http://127.0.0.1:{port}/missing with status 404 Not Found: no such file"
        ),
    );
}

#[test]
fn add_of_a_url_beyond_the_size_cap_fails_the_build() {
    if support::skip_on_reference("--add-max-size is Wharf's") {
        return;
    }
    let port = serve_http(vec![
        ("/small", 200, vec![], "0123456789\n"),
        (
            "/big",
            200,
            vec![],
            "this file is longer than the thirty-two bytes the stack allows\n",
        ),
    ]);
    let stack = Stack::start_with(StackOptions {
        extra_args: vec!["--add-max-size".into(), "32".into()],
        ..Default::default()
    });
    let e = Engine::new("wharf", &stack.host);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = write_context(
        tmp.path(),
        &[
            (
                "Dockerfile",
                &format!("FROM scratch\nADD http://127.0.0.1:{port}/small /small\n"),
            ),
            (
                "Dockerfile.big",
                &format!("FROM scratch\nADD http://127.0.0.1:{port}/big /big\n"),
            ),
        ],
    );
    e.build(&ctx, &["-t", "small", "."]);
    let out = e.run_in(&ctx, &["build", "-f", "Dockerfile.big", "."]);
    assert_fails_with(
        &out,
        1,
        &format!(
            "ADD failed: http://127.0.0.1:{port}/big is larger than the 32 bytes a download may be (--add-max-size)"
        ),
    );
}

/// `docker build -t TAG .` in the background (output in `log`), once its first RUN step runs.
fn build_until_running(e: &Engine, ctx: &Path, tag: &str, log: &Path) -> Proc {
    let mut build = Proc::start(
        "docker build",
        e.command(ctx, &["build", "-t", tag, "."]),
        Some(log),
        libc::SIGKILL,
        Duration::from_secs(1),
        false,
    );
    let output = || plain(&std::fs::read_to_string(log).unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !output().contains(" ---> Running in ") {
        assert!(
            Instant::now() < deadline && build.exited().is_none(),
            "the RUN step did not start:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    build
}

fn mtime_of(path: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().mtime()
}

#[test]
fn a_client_that_goes_away_mid_run_stops_the_build_and_its_container() {
    if support::skip_on_reference("reads Wharf's process tree") {
        return;
    }
    let (_registry, busybox) = registry_with_busybox();
    let stack = Stack::start();
    let e = Engine::new("wharf", &stack.host);
    e.provide_busybox(&busybox);
    let tmp = tempfile::tempdir().unwrap();
    let ctx = write_context(
        &tmp.path().join("ctx"),
        &[("Dockerfile", "FROM busybox\nRUN sleep 60\nRUN echo after\n")],
    );
    let log = tmp.path().join("build.log");
    let build = build_until_running(&e, &ctx, "abandoned", &log);
    assert_eq!(e.containers().len(), 1, "the step's container runs");
    // The client goes (Ctrl-C, a dropped connection): the quiet `sleep 60` must not run on.
    // SAFETY: kill(2) on the docker CLI this test started.
    unsafe { libc::kill(build.pid() as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.containers().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the step's container is still there 10 s after its client went: {:?}",
            e.containers()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !e.run(&["image", "inspect", "abandoned"]).success(),
        "nothing is tagged"
    );
}

/// With the same-host shortcuts off (a builder on another host than the gateway), the context
/// goes over the bus instead of through a FIFO; the build is the same.
#[test]
fn a_build_sends_its_context_over_the_bus_without_the_same_host_shortcut() {
    if support::skip_on_reference("sets Wharf's environment") {
        return;
    }
    let (_registry, busybox) = registry_with_busybox();
    let stack = Stack::start_with(StackOptions {
        env: vec![("WHARF_SAME_HOST_SHORTCUTS".into(), "0".into())],
        ..Default::default()
    });
    let e = Engine::new("wharf", &stack.host);
    e.provide_busybox(&busybox);
    let tmp = tempfile::tempdir().unwrap();
    // Over a megabyte, so it takes several frames (and would not fit a pipe's buffer).
    let big: String = (0..40_000).map(|i| format!("{i:>31}\n")).collect();
    let ctx = write_context(
        &tmp.path().join("ctx"),
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY big.txt /big.txt\nCMD wc -l /big.txt\n",
            ),
            ("big.txt", big.as_str()),
        ],
    );
    let out = e.build(&ctx, &["-t", "over-bus", "."]);
    assert!(out.success(), "{}", plain(&out.stdout));
    assert_eq!(
        e.ok(&["run", "--rm", "over-bus"]).lines(),
        ["40000 /big.txt"]
    );
    assert!(
        !std::fs::read_dir(stack.data_root.join("builder"))
            .unwrap()
            .flatten()
            .any(|d| std::fs::read_dir(d.path()).is_ok_and(|mut b| b.next().is_some())),
        "the build directories are gone after the build"
    );
}

/// `docker build --cache-from`: an image built, pushed, removed and pulled back has lost its
/// parent chain, so the cache has nothing; with `--cache-from` the same Dockerfile's steps are
/// taken from its history (every step "Using cache") and the result is that image, as dockerd's
/// classic builder does it.
fn observe_cache_from(
    d: &DockerCli,
    base: &str,
) -> std::collections::BTreeMap<&'static str, String> {
    let registry = Registry::start();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("f"), "file content\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nENV A=1\nRUN echo one > /one\nCOPY f /f\nCMD [\"sh\"]\n"),
    )
    .unwrap();
    let tag = format!("{}/cache/src:v1", registry.host);
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "-t", "local:built"];
        args.extend_from_slice(extra);
        args.push(".");
        let mut cmd = d.command(&args);
        cmd.current_dir(ctx.path()).env("DOCKER_BUILDKIT", "0");
        let out = support::run(cmd, None, Duration::from_secs(120));
        assert!(out.success(), "{out}");
        out
    };
    build(&[]);
    d.ok(&["tag", "local:built", &tag]);
    d.ok(&["push", &tag]);
    // Gone from the engine with its parents; pulled back without them.
    d.ok(&["rmi", "local:built", &tag]);
    d.ok(&["pull", &tag]);
    let pulled = d.ok(&["image", "inspect", "-f", "{{.Id}}", &tag]).stdout;
    let mut seen = std::collections::BTreeMap::new();
    // Only the base and the pulled image are left: no parent for the cache to find.
    let all = d.ok(&["images", "-aq"]).stdout;
    seen.insert("images before", all.lines().count().to_string());
    let cached = |out: &support::Output| {
        out.stdout
            .lines()
            .filter(|l| l.contains("Using cache"))
            .count()
            .to_string()
    };
    let again = build(&["--cache-from", &tag]);
    seen.insert("steps from --cache-from", cached(&again));
    let built = d
        .ok(&["image", "inspect", "-f", "{{.Id}}", "local:built"])
        .stdout;
    seen.insert("result is the pulled image", (built == pulled).to_string());
    let out = d.ok(&[
        "run",
        "--rm",
        "local:built",
        "sh",
        "-c",
        "echo $A; cat /one /f",
    ]);
    seen.insert("result runs", out.stdout);
    d.ok(&["rmi", "-f", "local:built", &tag]);
    seen
}

#[test]
fn cache_from_takes_steps_from_a_pulled_image_as_dockerd_does() {
    let (theirs, ours) = support::dockerd::side_by_side("cachefrom", observe_cache_from);
    assert_eq!(ours, theirs);
    assert_eq!(ours["images before"], "2", "{ours:?}");
    assert_eq!(ours["steps from --cache-from"], "4", "{ours:?}");
    assert_eq!(ours["result is the pulled image"], "true");
}
