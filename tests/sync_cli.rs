//! `wharf sync SRC DST` and `POST /wharf/sync` as a user meets them: `docker login` to two
//! password registries through `wharf up`, then `wharf sync` with the CLI's config copies every
//! tag and platform (the destination then serves the source's manifests byte for byte and every
//! blob), a second run copies nothing, and the copy pulls and runs; without logins the
//! registries' refusals are named; `--every` copies a new tag on the next run and stops on
//! SIGTERM; the gateway's endpoint streams progress and a summary that matches the destination,
//! and answers bad requests with HTTP errors; a private dockerd pulls the synced tag from both
//! registries as the same image; with a bearer-token registry, a sync within it mounts every blob
//! (the push token asks `pull` on the source repository too) and a sync into it copies them.
//!
//! What the engine does with hostile registries, mounts and tag lists is checked at library level
//! in services/registry-sync/tests/sync.rs; every expected number here is read from the registries.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use support::dockerd::Dockerd;
use support::fixtures::{self, Compression, ImageSpec, Layout, PushFormat};
use support::{DockerCli, Output, Proc, Registry, Stack};

const SRC_USER: &str = "alice";
const SRC_PASSWORD: &str = "src-secret";
const DST_USER: &str = "bob";
const DST_PASSWORD: &str = "dst-secret";
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// Every manifest type a registry may serve.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

fn name(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// `wharf sync ARGS...` next to `stack` (its private NATS server found through `--data-root`),
/// with the docker CLI configuration in `docker_config`; nothing of this process's environment
/// that could point it elsewhere.
fn sync_command(stack: &Stack, docker_config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("sync")
        .arg("--data-root")
        .arg(&stack.data_root)
        .arg("--config-file")
        .arg(stack.dir.path().join("daemon.json"))
        .arg("--docker-config")
        .arg(docker_config)
        .args(args);
    for var in [
        "DOCKER_CONFIG",
        "WHARF_NATS_URL",
        "WHARF_NATS_USER",
        "WHARF_NATS_PASSWORD",
        "WHARF_NATS_TOKEN",
        "WHARF_NATS_NKEY",
        "WHARF_NATS_CREDS",
        "WHARF_DATA_ROOT",
        "WHARF_CONFIG_FILE",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn wharf_sync(stack: &Stack, docker_config: &Path, args: &[&str]) -> Output {
    support::run(sync_command(stack, docker_config, args), None, SYNC_TIMEOUT)
}

/// `docker login -u USER --password-stdin REGISTRY` through the stack; must succeed.
#[track_caller]
fn docker_login(docker: &DockerCli, registry: &Registry) {
    let (user, password) = registry.credentials().expect("a password registry");
    let out = support::run(
        docker.command(&["login", "-u", &user, "--password-stdin", &registry.host]),
        Some(format!("{password}\n").into_bytes()),
        Duration::from_secs(60),
    )
    .ok();
    assert!(out.stdout.contains("Login Succeeded"), "{out}");
}

/// `wharf sync SOURCE DESTINATION` refused before any output, with exit status 1; its output.
#[track_caller]
fn sync_refused(stack: &Stack, docker_config: &Path, source: &str, destination: &str) -> Output {
    let out = wharf_sync(stack, docker_config, &[source, destination]).failed();
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "", "refused before any output: {out}");
    out
}

// Sizes as registry-sync prints them in the summary: go-units `HumanSize` (its formatting is
// checked where it is defined; what this file checks is the byte count).
use wharf_bus::progress::human_size;

/// The summary line `wharf sync` ends a run with.
fn summary_line(
    copied: usize,
    skipped: usize,
    failed: usize,
    content: &Content,
    mounted: usize,
    present: usize,
) -> String {
    let counted = |n: usize, what: &str| {
        if n == 1 {
            format!("1 {what}")
        } else {
            format!("{n} {what}s")
        }
    };
    format!(
        "Synced {} ({skipped} skipped, {failed} failed): {} copied ({}), \
         {mounted} mounted, {present} already there, {}",
        counted(copied, "tag"),
        counted(content.blobs.len(), "blob"),
        human_size(content.blobs.values().sum()),
        counted(content.manifests.len(), "manifest")
    )
}

/// What a registry holds for some tags: manifests (digest -> media type) and blobs (digest ->
/// size as the manifests give it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Content {
    manifests: BTreeMap<String, String>,
    blobs: BTreeMap<String, u64>,
}

impl Content {
    fn merge(mut self, other: &Content) -> Content {
        self.manifests.extend(other.manifests.clone());
        self.blobs.extend(other.blobs.clone());
        self
    }

    /// What `self` has that `other` has not.
    fn minus(&self, other: &Content) -> Content {
        Content {
            manifests: self
                .manifests
                .iter()
                .filter(|(d, _)| !other.manifests.contains_key(*d))
                .map(|(d, m)| (d.clone(), m.clone()))
                .collect(),
            blobs: self
                .blobs
                .iter()
                .filter(|(d, _)| !other.blobs.contains_key(*d))
                .map(|(d, s)| (d.clone(), *s))
                .collect(),
        }
    }
}

/// A registry seen over plain HTTP, with its credentials if it has some.
struct RegistryHttp {
    host: String,
    authorization: Option<String>,
}

impl RegistryHttp {
    fn of(registry: &Registry) -> RegistryHttp {
        RegistryHttp {
            host: registry.host.clone(),
            authorization: registry.credentials().map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
        }
    }

    #[track_caller]
    fn get(&self, path: &str) -> support::HttpAnswer {
        let mut headers = vec![("Accept", ACCEPT)];
        if let Some(a) = &self.authorization {
            headers.push(("Authorization", a.as_str()));
        }
        support::http_get(&self.host, path, &headers)
            .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", self.host))
    }

    /// The repository's tags, sorted; None when the registry does not know the repository.
    #[track_caller]
    fn tags(&self, repo: &str) -> Option<Vec<String>> {
        let (status, _, body) = self.get(&format!("/v2/{repo}/tags/list"));
        if status == 404 {
            return None;
        }
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut tags: Vec<String> = list["tags"]
            .as_array()
            .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        tags.sort();
        Some(tags)
    }

    /// A manifest: (digest, media type, parsed body). The `Docker-Content-Digest` header must
    /// be the sha256 of the bytes served, and when fetched by digest, that digest.
    #[track_caller]
    fn manifest(&self, repo: &str, reference: &str) -> (String, String, serde_json::Value) {
        let (status, headers, body) = self.get(&format!("/v2/{repo}/manifests/{reference}"));
        assert_eq!(
            status,
            200,
            "{}/{repo}: manifest {reference}: {}",
            self.host,
            String::from_utf8_lossy(&body)
        );
        let digest = support::sha256(&body);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            header("docker-content-digest").as_deref(),
            Some(digest.as_str()),
            "{}/{repo}:{reference}",
            self.host
        );
        if reference.starts_with("sha256:") {
            assert_eq!(digest, reference);
        }
        let media_type = header("content-type").unwrap_or_default();
        (digest, media_type, serde_json::from_slice(&body).unwrap())
    }

    /// The manifests and blobs of `repo:tag`, every platform of an index.
    #[track_caller]
    fn walk(&self, repo: &str, tag: &str) -> Content {
        let mut content = Content::default();
        let (digest, media_type, top) = self.manifest(repo, tag);
        content.manifests.insert(digest, media_type);
        let images = match top["manifests"].as_array() {
            Some(children) => children
                .iter()
                .map(|c| {
                    let (d, m, image) = self.manifest(repo, c["digest"].as_str().unwrap());
                    content.manifests.insert(d, m);
                    image
                })
                .collect(),
            None => vec![top],
        };
        for image in images {
            let config = std::iter::once(&image["config"]);
            for blob in config.chain(image["layers"].as_array().unwrap()) {
                content.blobs.insert(
                    blob["digest"].as_str().unwrap().to_string(),
                    blob["size"].as_u64().unwrap(),
                );
            }
        }
        content
    }

    /// Every tag of `repo` walked.
    #[track_caller]
    fn walk_all(&self, repo: &str) -> BTreeMap<String, Content> {
        self.tags(repo)
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                let c = self.walk(repo, &t);
                (t, c)
            })
            .collect()
    }

    /// Downloads each blob of `content` and checks its bytes against its digest and size.
    #[track_caller]
    fn check_blobs(&self, repo: &str, content: &Content) {
        for (digest, size) in &content.blobs {
            let (status, _, body) = self.get(&format!("/v2/{repo}/blobs/{digest}"));
            assert_eq!(status, 200, "{}/{repo}: blob {digest}", self.host);
            assert_eq!(support::sha256(&body), *digest, "{}/{repo}", self.host);
            assert_eq!(body.len() as u64, *size, "{}/{repo}: {digest}", self.host);
        }
    }
}

fn union(walks: &BTreeMap<String, Content>) -> Content {
    walks
        .values()
        .fold(Content::default(), |acc, c| acc.merge(c))
}

/// The top manifest digest of each tag.
fn tag_digests(http: &RegistryHttp, repo: &str) -> BTreeMap<String, String> {
    http.tags(repo)
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let d = http.manifest(repo, &t).0;
            (t, d)
        })
        .collect()
}

/// A busybox-like image of the base layer alone (it shares that layer with every fixture).
fn small(name: &str) -> ImageSpec {
    ImageSpec::busybox_like(name, fixtures::host_arch(), vec![])
}

/// Pushes to team/app of `registry` the two platforms of `name` as the index `multi` (in
/// `format`), then `plain` as the Docker v2.2 image `plain`; the index as pushed.
fn push_multi_and_plain(
    registry: &Registry,
    name: &str,
    format: PushFormat,
    plain: &ImageSpec,
) -> fixtures::Pushed {
    let (index, _) = fixtures::push_index(
        registry,
        &fixtures::multi_platform(name),
        "team/app",
        "multi",
        format,
    );
    fixtures::push_image(registry, plain, "team/app", "plain", PushFormat::DockerV2S2);
    index
}

/// What a source repository holds before a sync: each tag walked, each tag's top manifest
/// digest, and all of it together.
struct Holdings {
    walks: BTreeMap<String, Content>,
    digests: BTreeMap<String, String>,
    everything: Content,
}

impl Holdings {
    /// `repo` of `http`, whose tags must be `tags`.
    #[track_caller]
    fn of(http: &RegistryHttp, repo: &str, tags: &[&str]) -> Holdings {
        let walks = http.walk_all(repo);
        assert_eq!(walks.keys().collect::<Vec<_>>(), tags);
        let digests = tag_digests(http, repo);
        let everything = union(&walks);
        Holdings {
            walks,
            digests,
            everything,
        }
    }
}

/// A line `TAG: digest: DIGEST` followed by `suffix` in `out` for each tag of `digests`.
#[track_caller]
fn assert_digest_lines(out: &Output, digests: &BTreeMap<String, String>, suffix: &str) {
    let lines = out.lines();
    for (tag, digest) in digests {
        assert!(
            lines.contains(&format!("{tag}: digest: {digest}{suffix}")),
            "a digest line for {tag}: {out}"
        );
    }
}

/// `wharf sync SOURCE DESTINATION`, which must succeed, end with `summary` (`why` says what it
/// means), print a digest line for each tag of `digests` and nothing on stderr; its output.
#[track_caller]
fn sync_ok(
    stack: &Stack,
    docker_config: &Path,
    source: &str,
    destination: &str,
    summary: &str,
    why: &str,
    digests: &BTreeMap<String, String>,
) -> Output {
    let out = wharf_sync(stack, docker_config, &[source, destination]).ok();
    assert_eq!(
        out.lines().last().map(String::as_str),
        Some(summary),
        "{why}: {out}"
    );
    assert_digest_lines(&out, digests, "");
    assert_eq!(out.stderr, "", "nothing on stderr: {out}");
    out
}

/// The summary line of a run that copies nothing, its `skipped` tags up to date.
fn nothing_copied(skipped: usize) -> String {
    format!(
        "Synced 0 tags ({skipped} skipped, 0 failed): 0 blobs copied (0B), 0 mounted, \
         0 already there, 0 manifests"
    )
}

/// `wharf sync SOURCE DESTINATION` once more, which must succeed and copy nothing, its
/// `skipped` tags up to date; its output.
#[track_caller]
fn sync_copies_nothing(
    stack: &Stack,
    docker_config: &Path,
    source: &str,
    destination: &str,
    skipped: usize,
) -> Output {
    let again = wharf_sync(stack, docker_config, &[source, destination]).ok();
    assert_eq!(
        again.lines().last().map(String::as_str),
        Some(nothing_copied(skipped).as_str()),
        "{again}"
    );
    again
}

/// `destination` of `to` holds what `source` of `from` held before the sync (`held`): the same
/// tags, each by the same digest, the same manifests and blobs, and it serves every blob's bytes.
#[track_caller]
fn assert_mirrors(
    from: &RegistryHttp,
    source: &str,
    to: &RegistryHttp,
    destination: &str,
    held: &Holdings,
) {
    assert_eq!(to.tags(destination), from.tags(source));
    assert_eq!(tag_digests(to, destination), held.digests);
    let walks = to.walk_all(destination);
    assert_eq!(walks, held.walks);
    to.check_blobs(destination, &union(&walks));
}

/// `docker pull IMAGE`, which must succeed and name `digest`.
#[track_caller]
fn pull_names_digest(docker: &DockerCli, image: &str, digest: &str) {
    let pulled = docker.ok(&["pull", image]);
    assert!(
        pulled
            .stdout
            .lines()
            .any(|l| l == format!("Digest: {digest}")),
        "{pulled}"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. The user's flow

/// Two password registries, `docker login` to both through Wharf; `wharf sync` copies a
/// multi-platform index and two plain images with every blob, the destination serving each
/// manifest byte for byte; the summary's numbers are the source's; a second run copies nothing;
/// the synced index then pulls and runs through Wharf.
#[test]
fn sync_after_docker_login_copies_every_tag_and_platform_then_nothing_and_the_copy_runs() {
    if support::skip_on_reference("wharf sync is Wharf's own command") {
        return;
    }
    let src = Registry::start_basic(SRC_USER, SRC_PASSWORD);
    let dst = Registry::start_basic(DST_USER, DST_PASSWORD);
    let n = name("flow");
    let (stack, index) = std::thread::scope(|s| {
        let stack = s.spawn(Stack::start);
        let index = push_multi_and_plain(&src, &n, PushFormat::OciIndex, &fixtures::schema2(&n));
        fixtures::push_image(&src, &fixtures::oci(&n), "team/app", "oci", PushFormat::Oci);
        (stack.join().unwrap(), index)
    });
    let docker = stack.docker();
    docker_login(&docker, &src);
    docker_login(&docker, &dst);

    let from = RegistryHttp::of(&src);
    let to = RegistryHttp::of(&dst);
    let source = Holdings::of(&from, "team/app", &["multi", "oci", "plain"]);
    assert_eq!(
        source.everything.manifests.len(),
        5,
        "an index of two and two images"
    );

    let source_repo = format!("{}/team/app", src.host);
    let destination_repo = format!("{}/backup/app", dst.host);
    sync_ok(
        &stack,
        docker.config.path(),
        &source_repo,
        &destination_repo,
        &summary_line(3, 0, 0, &source.everything, 0, 0),
        "the source's numbers",
        &source.digests,
    );

    // The destination holds what the source holds, byte for byte.
    assert_mirrors(&from, "team/app", &to, "backup/app", &source);

    // Again: every tag up to date, nothing copied.
    let again = sync_copies_nothing(
        &stack,
        docker.config.path(),
        &source_repo,
        &destination_repo,
        3,
    );
    assert_digest_lines(&again, &source.digests, " (already up to date)");
    assert_eq!(tag_digests(&to, "backup/app"), source.digests);

    // The copy pulls (the index, this machine's platform) and runs through Wharf.
    let image = format!("{destination_repo}:multi");
    pull_names_digest(&docker, &image, &source.digests["multi"]);
    assert_eq!(docker.inspect(&image)["Id"], index.id.as_str());
    let run = docker.ok(&["run", "--rm", &image, "cat", "/etc/motd"]);
    assert_eq!(
        run.stdout,
        format!("Wharf fixture {n}-{}\n", fixtures::host_arch()),
        "{run}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Refusals and failed tags

/// Without logins the source's refusal is named, before any output; logged in to the source
/// only, the destination's; nothing is written. Logged in to both, a tag the source lacks fails
/// alone: the summary counts it, the other tag is copied, and the command exits 1.
#[test]
fn sync_without_logins_names_the_refusal_and_a_missing_tag_fails_alone_with_exit_1() {
    if support::skip_on_reference("wharf sync is Wharf's own command") {
        return;
    }
    let src = Registry::start_basic(SRC_USER, SRC_PASSWORD);
    let dst = Registry::start_basic(DST_USER, DST_PASSWORD);
    let stack = std::thread::scope(|s| {
        let stack = s.spawn(Stack::start);
        fixtures::push_image(
            &src,
            &small(&name("refused")),
            "team/app",
            "plain",
            PushFormat::DockerV2S2,
        );
        stack.join().unwrap()
    });
    let from = RegistryHttp::of(&src);
    let to = RegistryHttp::of(&dst);
    let source_repo = format!("{}/team/app", src.host);
    let destination_repo = format!("{}/backup/app", dst.host);

    let docker = stack.docker();
    let out = sync_refused(
        &stack,
        docker.config.path(),
        &source_repo,
        &destination_repo,
    );
    assert_eq!(
        out.stderr.trim(),
        format!(
            "wharf: source {source_repo}: Get \"http://{}/v2/team/app/tags/list?n=1000\": \
             no basic auth credentials",
            src.host
        ),
        "{out}"
    );
    assert_eq!(to.tags("backup/app"), None, "nothing written");

    docker_login(&docker, &src);
    let out = sync_refused(
        &stack,
        docker.config.path(),
        &source_repo,
        &destination_repo,
    );
    let stderr = out.stderr.trim();
    assert!(
        stderr.starts_with(&format!("wharf: destination {destination_repo}: "))
            && stderr.ends_with("no basic auth credentials")
            && stderr.lines().count() == 1,
        "{out}"
    );
    assert_eq!(to.tags("backup/app"), None, "nothing written");

    docker_login(&docker, &dst);
    let out = wharf_sync(
        &stack,
        docker.config.path(),
        &[
            &source_repo,
            &destination_repo,
            "--tag",
            "plain",
            "--tag",
            "nosuch",
        ],
    )
    .failed();
    assert_eq!(out.code, Some(1), "{out}");
    let plain = from.walk("team/app", "plain");
    let lines = out.lines();
    assert_eq!(
        lines.last().map(String::as_str),
        Some(summary_line(1, 0, 1, &plain, 0, 0).as_str()),
        "the summary, then the failure: {out}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("nosuch: failed: ")),
        "{out}"
    );
    let stderr = out.stderr.trim();
    assert!(
        stderr.starts_with(&format!(
            "wharf: sync of {source_repo} to {destination_repo} failed for 1 of 2 tags (nosuch): "
        )) && stderr.lines().count() == 1,
        "{out}"
    );
    assert_eq!(to.tags("backup/app"), Some(vec!["plain".to_string()]));
    assert_eq!(to.walk("backup/app", "plain"), plain);
}

// ---------------------------------------------------------------------------------------------
// 3. --every

/// The runs of an `--every` log: each run's lines up to its `Next sync at` line.
fn runs(log: &str) -> Vec<Vec<String>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for line in log.lines() {
        if let Some(when) = line.strip_prefix("Next sync at ") {
            let shape_ok = when.len() == 19
                && when.bytes().enumerate().all(|(i, b)| match i {
                    4 | 7 => b == b'-',
                    10 => b == b' ',
                    13 | 16 => b == b':',
                    _ => b.is_ascii_digit(),
                });
            assert!(shape_ok, "Next sync at YYYY-MM-DD HH:MM:SS: {line:?}");
            runs.push(std::mem::take(&mut current));
        } else {
            current.push(line.to_string());
        }
    }
    runs
}

/// `wharf sync SOURCE DESTINATION --every EVERY` in the background (`what` names it), its output
/// appended to `log`; SIGTERM ends it.
fn start_every(
    what: &str,
    stack: &Stack,
    docker_config: &Path,
    source: &str,
    destination: &str,
    every: &str,
    log: &Path,
) -> Proc {
    let cmd = sync_command(
        stack,
        docker_config,
        &[source, destination, "--every", every],
    );
    Proc::start(
        what,
        cmd,
        Some(log),
        libc::SIGTERM,
        Duration::from_secs(10),
        false,
    )
}

/// The runs of the `--every` log at `log` once it has `count` or more and `done` accepts them;
/// panics when that takes longer than `within`.
#[track_caller]
fn wait_runs(
    log: &Path,
    count: usize,
    within: Duration,
    done: &dyn Fn(&[Vec<String>]) -> bool,
) -> Vec<Vec<String>> {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let r = runs(&text);
        if r.len() >= count && done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no {count} runs within {within:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `wharf sync --every 2s`: the first run copies the tag there is, a tag pushed meanwhile is
/// copied by the next run that sees it (and the other tag skipped), runs in between copy
/// nothing; SIGTERM ends it promptly with status 0. Runs to a registry that is down fail on
/// stderr, one after the other.
#[test]
fn sync_every_copies_a_new_tag_on_the_next_run_and_ends_on_sigterm() {
    if support::skip_on_reference("wharf sync is Wharf's own command") {
        return;
    }
    let src = Registry::start();
    let dst = Registry::start();
    let n = name("every");
    let (stack, v2_layout) = std::thread::scope(|s| {
        let stack = s.spawn(Stack::start);
        fixtures::push_image(
            &src,
            &small(&format!("{n}-v1")),
            "team/app",
            "v1",
            PushFormat::DockerV2S2,
        );
        // Ready before the runs start, so the push between two runs is quick.
        let layout = Layout::image(&small(&format!("{n}-v2")), Compression::Gzip, "v2");
        (stack.join().unwrap(), layout)
    });
    let from = RegistryHttp::of(&src);
    let to = RegistryHttp::of(&dst);
    let v1 = from.walk("team/app", "v1");
    let v1_digest = from.manifest("team/app", "v1").0;

    let config = tempfile::tempdir().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("sync.log");
    let source_repo = format!("{}/team/app", src.host);
    let destination_repo = format!("{}/backup/app", dst.host);
    let mut every = start_every(
        "wharf sync --every",
        &stack,
        config.path(),
        &source_repo,
        &destination_repo,
        "2s",
        &log,
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let within = Duration::from_secs(40);

    let first = wait_runs(&log, 1, within, &|_| true);
    assert_eq!(
        first[0].last().map(String::as_str),
        Some(summary_line(1, 0, 0, &v1, 0, 0).as_str()),
        "{}",
        read_log()
    );
    assert!(
        first[0].contains(&format!("v1: digest: {v1_digest}")),
        "{first:?}"
    );
    let v2_digest =
        fixtures::push_layout(&src, &v2_layout, "team/app", "v2", PushFormat::DockerV2S2);
    let v2 = from.walk("team/app", "v2");
    let copied_v2 = |r: &[Vec<String>]| {
        r.iter()
            .any(|run| run.contains(&format!("v2: digest: {v2_digest}")))
    };
    // Normally the second run; a third at most if the push straddled the second.
    let all = wait_runs(&log, 2, within, &|r| copied_v2(r) || r.len() >= 3);
    let at = all
        .iter()
        .position(|run| run.contains(&format!("v2: digest: {v2_digest}")))
        .unwrap_or_else(|| panic!("no run copied v2:\n{}", read_log()));
    assert!(at <= 2, "{}", read_log());
    for run in &all[1..at] {
        assert_eq!(
            run.last().map(String::as_str),
            Some(nothing_copied(1).as_str()),
            "{}",
            read_log()
        );
    }
    let new = v2.minus(&v1);
    let shared = v2
        .blobs
        .keys()
        .filter(|d| v1.blobs.contains_key(*d))
        .count();
    assert!(shared >= 1, "v1 and v2 share the base layer");
    assert_eq!(
        all[at].last().map(String::as_str),
        Some(summary_line(1, 1, 0, &new, 0, shared).as_str()),
        "{}",
        read_log()
    );
    assert!(
        all[at].contains(&format!("v1: digest: {v1_digest} (already up to date)")),
        "{}",
        read_log()
    );
    assert!(
        !read_log().lines().any(|l| l.starts_with("wharf:")),
        "no failed run: {}",
        read_log()
    );

    let asked = Instant::now();
    let status = every.stop();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM ended it after {took:?}"
    );
    let status = status.expect("an exit status");
    assert_eq!(status.code(), Some(0), "{status:?}: {}", read_log());
    assert_eq!(
        to.tags("backup/app"),
        Some(vec!["v1".to_string(), "v2".to_string()])
    );
    assert_eq!(to.walk("backup/app", "v2"), v2);

    // A run that fails is reported on stderr, and the next one still comes.
    let dead = format!("127.0.0.1:{}", support::free_port());
    let log = log_dir.path().join("dead.log");
    let mut failing = start_every(
        "wharf sync --every (dead destination)",
        &stack,
        config.path(),
        &source_repo,
        &format!("{dead}/backup/app"),
        "1s",
        &log,
    );
    let refusal = format!(
        "wharf: destination {dead}/backup/app: Get \"http://{dead}/v2/\": dial tcp {dead}: \
         connect: connection refused"
    );
    let failed_runs = wait_runs(&log, 2, Duration::from_secs(20), &|_| true);
    for run in &failed_runs {
        assert_eq!(run, std::slice::from_ref(&refusal), "{failed_runs:?}");
    }
    let status = failing.stop().expect("an exit status");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

// ---------------------------------------------------------------------------------------------
// 4. POST /wharf/sync

/// `X-Registry-Config` as `docker build` sends it: base64url of a JSON map host -> login.
fn registry_config(registries: &[&Registry]) -> String {
    let mut map = serde_json::Map::new();
    for r in registries {
        let (user, password) = r.credentials().unwrap();
        map.insert(
            r.host.clone(),
            serde_json::json!({"username": user, "password": password}),
        );
    }
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&map).unwrap())
}

/// `POST /wharf/sync` over the gateway's socket: (status, content type, body).
fn post_sync(stack: &Stack, config: Option<&str>, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(c) = config {
        headers.push(("X-Registry-Config", c));
    }
    let (status, headers, body) =
        support::unix_request(&stack.socket, "POST", "/wharf/sync", &headers, Some(body))
            .expect("POST /wharf/sync");
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    (status, content_type, body)
}

/// An HTTP error's `message`, which must be the body's only key.
#[track_caller]
fn error_message(status: u16, body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "HTTP {status}: no JSON error ({e}): {}",
            String::from_utf8_lossy(body)
        )
    });
    assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{v}");
    v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

/// `POST /wharf/sync` of `body`, which must be refused with HTTP `status`; the error's message.
#[track_caller]
fn post_sync_refused(stack: &Stack, config: Option<&str>, body: &[u8], status: u16) -> String {
    let (answered, _, body) = post_sync(stack, config, body);
    assert_eq!(answered, status, "{}", String::from_utf8_lossy(&body));
    error_message(answered, &body)
}

/// The endpoint streams JSON lines whose last carries a summary that is what the destination
/// now holds; a destination with a tag is a 400, an unknown source repository a 404, a body
/// that is not the request a 400, no credentials a 500 naming the refusal; none writes anything.
#[test]
fn post_wharf_sync_streams_a_summary_that_matches_the_destination_and_refuses_bad_requests() {
    if support::skip_on_reference("POST /wharf/sync is Wharf's own endpoint") {
        return;
    }
    let src = Registry::start_basic(SRC_USER, SRC_PASSWORD);
    let dst = Registry::start_basic(DST_USER, DST_PASSWORD);
    let n = name("http");
    let stack = std::thread::scope(|s| {
        let stack = s.spawn(Stack::start);
        push_multi_and_plain(&src, &n, PushFormat::DockerList, &small(&n));
        stack.join().unwrap()
    });
    let from = RegistryHttp::of(&src);
    let to = RegistryHttp::of(&dst);
    let config = registry_config(&[&src, &dst]);
    let source_repo = format!("{}/team/app", src.host);
    let destination_repo = format!("{}/backup/app", dst.host);

    // Refusals first, while the destination is empty.
    let request = |source: &str, destination: &str| {
        serde_json::to_vec(&serde_json::json!({"Source": source, "Destination": destination}))
            .unwrap()
    };
    let message = post_sync_refused(
        &stack,
        Some(&config),
        &request(&source_repo, &format!("{destination_repo}:v1")),
        400,
    );
    assert!(
        message.contains(&format!("{destination_repo}:v1"))
            && message.contains("must be a repository without tag or digest"),
        "{message}"
    );

    let message = post_sync_refused(
        &stack,
        Some(&config),
        &request(&format!("{}/team/nothing", src.host), &destination_repo),
        404,
    );
    assert!(
        message.contains(&format!("{}/team/nothing", src.host)),
        "{message}"
    );

    for bad in [
        &b"{\"Source\": "[..],
        &b"[]"[..],
        &br#"{"Source": "a/b"}"#[..],
    ] {
        let message = post_sync_refused(&stack, Some(&config), bad, 400);
        assert!(message.starts_with("invalid sync request: "), "{message}");
    }

    let message = post_sync_refused(&stack, None, &request(&source_repo, &destination_repo), 500);
    assert!(
        message.starts_with(&format!("source {source_repo}: "))
            && message.ends_with("no basic auth credentials"),
        "{message}"
    );
    assert_eq!(to.tags("backup/app"), None, "nothing written");

    // The sync.
    let (status, content_type, body) = post_sync(
        &stack,
        Some(&config),
        &request(&source_repo, &destination_repo),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "application/json");
    let text = String::from_utf8(body).unwrap();
    let messages: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(messages.iter().all(|m| m.get("error").is_none()), "{text}");
    let last = messages.last().expect("messages");
    let summary = &last["aux"]["Summary"];
    assert!(
        summary.is_object(),
        "the last message has the summary: {text}"
    );

    let source_walks = from.walk_all("team/app");
    let destination_walks = to.walk_all("backup/app");
    assert_eq!(destination_walks, source_walks);
    let held = union(&destination_walks);
    to.check_blobs("backup/app", &held);
    let tags: Vec<&str> = destination_walks.keys().map(String::as_str).collect();
    assert_eq!(tags, ["multi", "plain"]);
    let mut copied: Vec<String> = serde_json::from_value(summary["copied"].clone()).unwrap();
    copied.sort();
    assert_eq!(copied, tags, "{summary}");
    assert_eq!(summary["source"], source_repo.as_str(), "{summary}");
    assert_eq!(
        summary["destination"],
        destination_repo.as_str(),
        "{summary}"
    );
    assert_eq!(summary["skipped"], serde_json::json!([]), "{summary}");
    assert_eq!(summary["failed"], serde_json::json!([]), "{summary}");
    assert_eq!(
        summary["manifests"],
        held.manifests.len() as u64,
        "{summary}"
    );
    assert_eq!(
        summary["blobs_copied"],
        held.blobs.len() as u64,
        "{summary}"
    );
    assert_eq!(summary["blobs_mounted"], 0, "{summary}");
    assert_eq!(summary["blobs_present"], 0, "{summary}");
    assert_eq!(
        summary["bytes_copied"],
        held.blobs.values().sum::<u64>(),
        "{summary}"
    );
    // The human summary is the line before, as the CLI prints it.
    assert_eq!(
        messages[messages.len() - 2]["status"],
        summary_line(2, 0, 0, &held, 0, 0).as_str(),
        "{text}"
    );
    for tag in destination_walks.keys() {
        let digest = from.manifest("team/app", tag).0;
        assert!(
            messages
                .iter()
                .any(|m| m["status"] == format!("{tag}: digest: {digest}").as_str()),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. dockerd pulls the copy

/// `wharf sync -q SRC:multi DST` copies that tag alone and prints the summary alone; a private
/// dockerd 20.10 pulls the tag from both registries as the same image, by the same digest.
#[test]
fn dockerd_pulls_the_synced_tag_as_the_same_image_as_at_the_source() {
    if support::skip_on_reference("compares Wharf with a dockerd of its own") {
        return;
    }
    let src = Registry::start();
    let dst = Registry::start();
    let n = name("dockerd");
    let (stack, dockerd) = std::thread::scope(|s| {
        let stack = s.spawn(Stack::start);
        let dockerd = s.spawn(Dockerd::start);
        push_multi_and_plain(&src, &n, PushFormat::OciIndex, &small(&n));
        (stack.join().unwrap(), dockerd.join().unwrap())
    });
    let from = RegistryHttp::of(&src);
    let to = RegistryHttp::of(&dst);
    let source_repo = format!("{}/team/app", src.host);
    let destination_repo = format!("{}/mirror/app", dst.host);
    let config = tempfile::tempdir().unwrap();

    let out = wharf_sync(
        &stack,
        config.path(),
        &["-q", &format!("{source_repo}:multi"), &destination_repo],
    )
    .ok();
    let multi = from.walk("team/app", "multi");
    assert_eq!(
        out.stdout,
        format!("{}\n", summary_line(1, 0, 0, &multi, 0, 0)),
        "{out}"
    );
    assert_eq!(to.tags("mirror/app"), Some(vec!["multi".to_string()]));

    let docker = DockerCli::new(&dockerd.host);
    let digest = from.manifest("team/app", "multi").0;
    let mut ids = Vec::new();
    for image in [
        format!("{source_repo}:multi"),
        format!("{destination_repo}:multi"),
    ] {
        pull_names_digest(&docker, &image, &digest);
        ids.push(docker.inspect(&image)["Id"].clone());
    }
    assert_eq!(ids[0], ids[1]);
    let repo_digests: BTreeSet<String> = serde_json::from_value(
        docker.inspect(&format!("{destination_repo}:multi"))["RepoDigests"].clone(),
    )
    .unwrap();
    assert!(
        repo_digests.contains(&format!("{destination_repo}@{digest}")),
        "{repo_digests:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Bearer-token registries

/// A token registry seen over plain HTTP with a bearer token that grants `pull` on `repos`,
/// asked of its token server with the registry's credentials as a client would.
#[track_caller]
fn token_http(registry: &Registry, repos: &[&str]) -> RegistryHttp {
    let support::RegistryAuth::Token(server) = &registry.auth else {
        panic!("{} is not a token registry", registry.host)
    };
    let (addr, path) = server
        .realm
        .strip_prefix("http://")
        .and_then(|r| r.split_once('/'))
        .expect("an http:// realm");
    let mut query = format!("/{path}?service={}", support::token::SERVICE);
    for repo in repos {
        query.push_str(&format!("&scope=repository:{repo}:pull"));
    }
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", server.user, server.password));
    let (status, _, body) = support::http_get(
        addr,
        &query,
        &[("Authorization", &format!("Basic {basic}"))],
    )
    .unwrap_or_else(|e| panic!("GET {query} on {addr}: {e}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let token = answer["token"].as_str().expect("a token").to_string();
    RegistryHttp {
        host: registry.host.clone(),
        authorization: Some(format!("Bearer {token}")),
    }
}

/// Content with its blobs left out: what a run that copies no blob counts.
fn manifests_only(content: &Content) -> Content {
    Content {
        manifests: content.manifests.clone(),
        blobs: BTreeMap::new(),
    }
}

/// A bearer-token registry, `docker login` to it (and to a password registry) through Wharf.
/// Within the token registry, `wharf sync team/app mirror/app` mounts every blob (the push
/// token must also ask `pull` on team/app: the token server grants exactly what is asked, so a
/// token without it would refuse the mounts and the blobs would be copied), copies none, and
/// the mirror serves the same tags, manifests and blobs; a second run copies nothing; the
/// mirror pulls through Wharf by the source's digest. From the password registry into another
/// repository of the token registry every blob is copied, the digests are the source's, and a
/// second run copies nothing.
#[test]
fn sync_with_a_token_registry_mounts_within_it_and_copies_into_it_with_the_same_digests() {
    if support::skip_on_reference("wharf sync is Wharf's own command") {
        return;
    }
    let tokened = Registry::start_token(DST_USER, DST_PASSWORD);
    let password = Registry::start_basic(SRC_USER, SRC_PASSWORD);
    let n = name("token");
    let stack = std::thread::scope(|s| {
        let stack = s.spawn(Stack::start);
        // skopeo goes through the token server with the registry's credentials.
        push_multi_and_plain(&tokened, &n, PushFormat::OciIndex, &fixtures::schema2(&n));
        let other = format!("{n}-password");
        push_multi_and_plain(&password, &other, PushFormat::DockerList, &small(&other));
        stack.join().unwrap()
    });
    let support::RegistryAuth::Token(server) = &tokened.auth else {
        unreachable!()
    };
    let docker = stack.docker();
    docker_login(&docker, &tokened);
    docker_login(&docker, &password);

    // Case A: within the token registry, every blob mounted.
    let tokened_http = token_http(&tokened, &["team/app", "mirror/app", "backup/app"]);
    let source = Holdings::of(&tokened_http, "team/app", &["multi", "plain"]);
    let everything = &source.everything;
    assert_eq!(
        everything.manifests.len(),
        4,
        "an index of two and an image"
    );
    assert_eq!(tokened_http.tags("mirror/app"), None, "an empty mirror");

    let source_repo = format!("{}/team/app", tokened.host);
    let mirror_repo = format!("{}/mirror/app", tokened.host);
    let issued = server.issued();
    let refused = server.refused();
    let out = sync_ok(
        &stack,
        docker.config.path(),
        &source_repo,
        &mirror_repo,
        &summary_line(
            2,
            0,
            0,
            &manifests_only(everything),
            everything.blobs.len(),
            0,
        ),
        "every blob mounted, none copied",
        &source.digests,
    );
    let lines = out.lines();
    for digest in everything.blobs.keys() {
        let id = &digest.trim_start_matches("sha256:")[..12];
        assert!(
            lines.contains(&format!("{id}: Mounted from team/app")),
            "{id} mounted: {out}"
        );
    }
    assert!(
        server.issued() > issued,
        "wharf sync asked the token server"
    );
    assert_eq!(server.refused(), refused, "with the right credentials");

    assert_mirrors(
        &tokened_http,
        "team/app",
        &tokened_http,
        "mirror/app",
        &source,
    );

    sync_copies_nothing(&stack, docker.config.path(), &source_repo, &mirror_repo, 2);

    // The mirror pulls through Wharf, logged in to the token registry, as the source's index.
    let image = format!("{mirror_repo}:multi");
    pull_names_digest(&docker, &image, &source.digests["multi"]);

    // Case B: from the password registry into the token registry, every blob copied.
    let password_http = RegistryHttp::of(&password);
    let other = Holdings::of(&password_http, "team/app", &["multi", "plain"]);
    // The base layer is in the token registry already (team/app, mirror/app), but not in
    // backup/app, and a mount needs the same registry: it is copied like the rest.
    assert!(
        other
            .everything
            .blobs
            .keys()
            .any(|d| everything.blobs.contains_key(d)),
        "the fixtures share the base layer"
    );
    let from_repo = format!("{}/team/app", password.host);
    let backup_repo = format!("{}/backup/app", tokened.host);
    sync_ok(
        &stack,
        docker.config.path(),
        &from_repo,
        &backup_repo,
        &summary_line(2, 0, 0, &other.everything, 0, 0),
        "every blob copied",
        &other.digests,
    );
    assert_mirrors(
        &password_http,
        "team/app",
        &tokened_http,
        "backup/app",
        &other,
    );

    let again = sync_copies_nothing(&stack, docker.config.path(), &from_repo, &backup_repo, 2);
    assert_digest_lines(&again, &other.digests, " (already up to date)");
    assert_eq!(tag_digests(&tokened_http, "backup/app"), other.digests);
    assert_eq!(tag_digests(&tokened_http, "mirror/app"), source.digests);
}
