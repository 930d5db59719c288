//! dockerd's JSON views of an image record: the list summary, inspect and history.

use serde_json::{json, Map, Value};
use wharf_bus::image::ImageRecord;
use wharf_bus::reference::familiarize;

use crate::version::ApiVersion;

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Go's RFC 3339 with nanoseconds, trailing zeros trimmed, as dockerd prints times.
pub fn go_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        format!("{base}Z")
    } else {
        let frac = format!("{nanos:09}");
        format!("{base}.{}Z", frac.trim_end_matches('0'))
    }
}

fn parse_time(s: Option<&str>) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn created(record: &ImageRecord) -> Option<chrono::DateTime<chrono::Utc>> {
    parse_time(record.config.get("created").and_then(Value::as_str))
}

fn unix(t: Option<chrono::DateTime<chrono::Utc>>) -> i64 {
    t.map(|t| t.timestamp()).unwrap_or(-62135596800)
}

pub fn repo_tags(record: &ImageRecord) -> Vec<String> {
    record.repo_tags.iter().map(|t| familiarize(t)).collect()
}

pub fn repo_digests(record: &ImageRecord) -> Vec<String> {
    record.repo_digests.iter().map(|t| familiarize(t)).collect()
}

/// The keys of an image's own config (`Config` of image inspect from API 1.50), in dockerd's
/// order.
const IMAGE_CONFIG_KEYS: [&str; 13] = [
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// An image's `Config` from API 1.50: only the image config's own keys, each left out when
/// empty.
pub fn image_config(config: Option<&Value>) -> Value {
    let src = config.and_then(Value::as_object);
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    };
    let mut out = Map::new();
    for key in IMAGE_CONFIG_KEYS {
        if let Some(v) = src.and_then(|c| c.get(key)).filter(|v| !empty(v)) {
            out.insert(key.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// The image config's `config` as dockerd shows it before API 1.50: every field of Go's
/// `container.Config`, with the `omitempty` ones left out when empty, the stored values as
/// they are (dockerd 20.10 shows an image's `Image` and `Hostname` as stored).
pub fn container_config(config: Option<&Value>) -> Value {
    let src = config
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let get = |k: &str| src.get(k).cloned().filter(|v| !v.is_null());
    let mut out = Map::new();
    let text = |k: &str| get(k).unwrap_or_else(|| json!(""));
    let flag = |k: &str| get(k).unwrap_or_else(|| json!(false));
    let null = |k: &str| get(k).unwrap_or(Value::Null);
    out.insert("Hostname".into(), text("Hostname"));
    out.insert("Domainname".into(), text("Domainname"));
    out.insert("User".into(), text("User"));
    out.insert("AttachStdin".into(), flag("AttachStdin"));
    out.insert("AttachStdout".into(), flag("AttachStdout"));
    out.insert("AttachStderr".into(), flag("AttachStderr"));
    if let Some(p) =
        get("ExposedPorts").filter(|v| v.as_object().map(|o| !o.is_empty()).unwrap_or(false))
    {
        out.insert("ExposedPorts".into(), p);
    }
    out.insert("Tty".into(), flag("Tty"));
    out.insert("OpenStdin".into(), flag("OpenStdin"));
    out.insert("StdinOnce".into(), flag("StdinOnce"));
    out.insert("Env".into(), null("Env"));
    out.insert("Cmd".into(), null("Cmd"));
    if let Some(h) = get("Healthcheck") {
        out.insert("Healthcheck".into(), h);
    }
    if get("ArgsEscaped")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
    {
        out.insert("ArgsEscaped".into(), json!(true));
    }
    out.insert("Image".into(), text("Image"));
    out.insert("Volumes".into(), null("Volumes"));
    out.insert("WorkingDir".into(), text("WorkingDir"));
    out.insert("Entrypoint".into(), null("Entrypoint"));
    if get("NetworkDisabled")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
    {
        out.insert("NetworkDisabled".into(), json!(true));
    }
    if let Some(m) =
        get("MacAddress").filter(|v| v.as_str().map(|s| !s.is_empty()).unwrap_or(false))
    {
        out.insert("MacAddress".into(), m);
    }
    out.insert("OnBuild".into(), null("OnBuild"));
    out.insert("Labels".into(), null("Labels"));
    if let Some(s) =
        get("StopSignal").filter(|v| v.as_str().map(|s| !s.is_empty()).unwrap_or(false))
    {
        out.insert("StopSignal".into(), s);
    }
    if let Some(s) = get("StopTimeout") {
        out.insert("StopTimeout".into(), s);
    }
    if let Some(s) = get("Shell") {
        out.insert("Shell".into(), s);
    }
    Value::Object(out)
}

/// `GET /images/json` entry.
pub fn summary(record: &ImageRecord, version: ApiVersion) -> Value {
    let (tags, digests) = match (repo_tags(record), repo_digests(record)) {
        // dockerd shows placeholders only for an image with neither tags nor digests.
        (t, d) if t.is_empty() && d.is_empty() => (
            vec!["<none>:<none>".to_string()],
            vec!["<none>@<none>".to_string()],
        ),
        other => other,
    };
    let labels = record
        .config
        .get("config")
        .and_then(|c| c.get("Labels"))
        .cloned()
        .filter(|l| !l.is_null());
    let mut v = json!({
        "Containers": -1,
        "Created": unix(created(record)),
        "Id": record.id,
        "Labels": labels.unwrap_or_else(|| json!({})),
        "ParentId": record.parent.as_deref().unwrap_or(""),
        "RepoDigests": digests,
        "RepoTags": tags,
        "SharedSize": -1,
        "Size": record.size,
    });
    if !version.at_least(1, 44) {
        v["VirtualSize"] = json!(record.size);
    }
    v
}

/// `GET /images/{name}/json`.
pub fn inspect(record: &ImageRecord, version: ApiVersion) -> Value {
    let c = &record.config;
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let created = created(record)
        .map(|t| go_time(&t))
        .unwrap_or_else(|| ZERO_TIME.to_string());
    let mut out = Map::new();
    out.insert("Id".into(), json!(record.id));
    out.insert("RepoTags".into(), json!(repo_tags(record)));
    out.insert("RepoDigests".into(), json!(repo_digests(record)));
    out.insert(
        "Parent".into(),
        json!(record.parent.as_deref().unwrap_or("")),
    );
    out.insert("Comment".into(), json!(s("comment")));
    out.insert("Created".into(), json!(created));
    if !version.at_least(1, 45) {
        out.insert("Container".into(), json!(s("container")));
        out.insert(
            "ContainerConfig".into(),
            container_config(c.get("container_config")),
        );
    }
    out.insert("DockerVersion".into(), json!(s("docker_version")));
    out.insert("Author".into(), json!(s("author")));
    let config = match version.at_least(1, 50) {
        true => image_config(c.get("config")),
        false => container_config(c.get("config")),
    };
    out.insert("Config".into(), config);
    out.insert("Architecture".into(), json!(s("architecture")));
    if !s("variant").is_empty() {
        out.insert("Variant".into(), json!(s("variant")));
    }
    out.insert("Os".into(), json!(s("os")));
    if !s("os.version").is_empty() {
        out.insert("OsVersion".into(), json!(s("os.version")));
    }
    out.insert("Size".into(), json!(record.size));
    if !version.at_least(1, 44) {
        out.insert("VirtualSize".into(), json!(record.size));
    }
    out.insert(
        "GraphDriver".into(),
        json!({"Data": null, "Name": "overlay2"}),
    );
    let layers: Vec<&str> = record.layers.iter().map(|l| l.diff_id.as_str()).collect();
    out.insert("RootFS".into(), json!({"Type": "layers", "Layers": layers}));
    out.insert(
        "Metadata".into(),
        json!({"LastTagTime": record.last_tag_time.as_deref().and_then(|t| parse_time(Some(t))).map(|t| go_time(&t)).unwrap_or_else(|| ZERO_TIME.to_string())}),
    );
    Value::Object(out)
}

/// The image config's history entries, oldest first.
fn history_entries(record: &ImageRecord) -> Vec<Value> {
    record
        .config
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// How many images of `record`'s lineage its history shows: one per row, at most.
pub fn history_depth(record: &ImageRecord) -> usize {
    history_entries(record).len()
}

/// `GET /images/{name}/history`, as dockerd's `ImageHistory`: newest first; `lineage` is the
/// image, then its parent, grandparent, ... as far as known. Row `n` gets the ID and tags of
/// the `n`-th image of the lineage; the rows past its end show `<missing>` (as for any image
/// pulled from a registry, which has no parent).
pub fn history(lineage: &[ImageRecord]) -> Value {
    let Some(record) = lineage.first() else {
        return Value::Array(vec![]);
    };
    let mut layer_sizes = record.layers.iter().map(|l| l.unpacked_size);
    let mut rows: Vec<Value> = history_entries(record)
        .iter()
        .map(|h| {
            let empty = h
                .get("empty_layer")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let size = if empty {
                0
            } else {
                layer_sizes.next().unwrap_or(0)
            };
            json!({
                "Comment": h.get("comment").and_then(Value::as_str).unwrap_or(""),
                "Created": unix(parse_time(h.get("created").and_then(Value::as_str))),
                "CreatedBy": h.get("created_by").and_then(Value::as_str).unwrap_or(""),
                "Id": "<missing>",
                "Size": size,
                "Tags": null,
            })
        })
        .collect();
    rows.reverse();
    for (row, image) in rows.iter_mut().zip(lineage) {
        row["Id"] = json!(image.id);
        let tags = repo_tags(image);
        if !tags.is_empty() {
            row["Tags"] = json!(tags);
        }
    }
    Value::Array(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_bus::image::LayerInfo;

    fn record() -> ImageRecord {
        ImageRecord {
            id: "sha256:1111".into(),
            repo_tags: vec!["docker.io/library/busybox:latest".into()],
            repo_digests: vec![format!(
                "docker.io/library/busybox@sha256:{}",
                "2".repeat(64)
            )],
            layers: vec![LayerInfo {
                digest: "sha256:aa".into(),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                size: 10,
                diff_id: "sha256:bb".into(),
                unpacked_size: 4000,
            }],
            manifest: None,
            config: json!({
                "architecture": "amd64", "os": "linux", "created": "2024-05-01T10:00:00.123000Z",
                "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
                "history": [
                    {"created": "2024-05-01T10:00:00Z", "created_by": "ADD rootfs"},
                    {"created": "2024-05-01T10:00:00Z", "created_by": "CMD [\"sh\"]", "empty_layer": true}
                ]
            }),
            config_size: 100,
            size: 4000,
            stored_at: "2024-05-02T00:00:00Z".into(),
            last_tag_time: None,
            parent: None,
        }
    }

    #[test]
    fn inspect_shows_familiar_names_and_full_config() {
        let v = inspect(&record(), ApiVersion::CURRENT);
        assert_eq!(v["RepoTags"], json!(["busybox:latest"]));
        assert_eq!(
            v["RepoDigests"],
            json!([format!("busybox@sha256:{}", "2".repeat(64))])
        );
        assert_eq!(v["Created"], "2024-05-01T10:00:00.123Z");
        // From 1.50: the image config's own keys, the empty ones left out.
        assert_eq!(v["Config"]["Cmd"], json!(["sh"]));
        assert!(v["Config"].get("Entrypoint").is_none());
        assert!(v["Config"].get("User").is_none());
        assert!(v["Config"].get("Hostname").is_none());
        assert!(v.get("ContainerConfig").is_none());
        // Before: Go's container.Config, every key there, as stored.
        let mut stored = record();
        stored.config["config"]["Image"] = json!("sha256:0000");
        let old = inspect(&stored, ApiVersion(1, 49));
        assert_eq!(old["Config"]["Entrypoint"], Value::Null);
        assert_eq!(old["Config"]["User"], "");
        assert_eq!(old["Config"]["Hostname"], "");
        assert_eq!(old["Config"]["Image"], "sha256:0000");
        assert_eq!(old["Config"]["Cmd"], json!(["sh"]));
        assert_eq!(v["RootFS"]["Layers"], json!(["sha256:bb"]));
        assert!(inspect(&record(), ApiVersion(1, 41))
            .get("VirtualSize")
            .is_some());
    }

    #[test]
    fn history_is_newest_first_with_layer_sizes() {
        let h = history(&[record()]);
        assert_eq!(h[0]["CreatedBy"], "CMD [\"sh\"]");
        assert_eq!(h[0]["Size"], 0);
        assert_eq!(h[0]["Id"], "sha256:1111");
        assert_eq!(h[0]["Tags"], json!(["busybox:latest"]));
        assert_eq!(h[1]["Size"], 4000);
        assert_eq!(h[1]["Id"], "<missing>");
    }

    #[test]
    fn history_names_each_row_after_the_next_image_of_the_lineage() {
        // A build's last step: its parent made the row before, the base image the one before.
        let base = record();
        let mut step1 = record();
        step1.id = "sha256:2222".into();
        step1.repo_tags.clear();
        step1.repo_digests.clear();
        step1.parent = Some(base.id.clone());
        let mut top = record();
        top.id = "sha256:3333".into();
        top.repo_tags = vec!["docker.io/library/app:v1".into()];
        top.parent = Some(step1.id.clone());
        let mut config = top.config.clone();
        let entries = config["history"].as_array_mut().unwrap();
        entries.push(json!({"created": "2024-05-03T10:00:00Z", "created_by": "/bin/sh -c #(nop)  ENV A=b", "empty_layer": true}));
        entries.push(json!({"created": "2024-05-03T10:00:01Z", "created_by": "/bin/sh -c #(nop)  LABEL x=y", "empty_layer": true}));
        top.config = config;
        assert_eq!(history_depth(&top), 4);

        let h = history(&[top.clone(), step1.clone(), base.clone()]);
        let ids: Vec<&str> = h
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["sha256:3333", "sha256:2222", "sha256:1111", "<missing>"]
        );
        assert_eq!(h[0]["Tags"], json!(["app:v1"]));
        assert_eq!(h[1]["Tags"], Value::Null);
        assert_eq!(h[2]["Tags"], json!(["busybox:latest"]));
        assert_eq!(h[3]["Tags"], Value::Null);
        assert_eq!(h[0]["CreatedBy"], "/bin/sh -c #(nop)  LABEL x=y");
    }

    #[test]
    fn inspect_and_summary_show_the_parent() {
        let mut r = record();
        assert_eq!(inspect(&r, ApiVersion::CURRENT)["Parent"], "");
        assert_eq!(summary(&r, ApiVersion::CURRENT)["ParentId"], "");
        let parent = format!("sha256:{}", "3".repeat(64));
        r.parent = Some(parent.clone());
        assert_eq!(inspect(&r, ApiVersion::CURRENT)["Parent"], json!(parent));
        assert_eq!(summary(&r, ApiVersion::CURRENT)["ParentId"], json!(parent));
    }

    #[test]
    fn dangling_images_list_as_none() {
        let mut r = record();
        r.repo_tags.clear();
        r.repo_digests.clear();
        let s = summary(&r, ApiVersion::CURRENT);
        assert_eq!(s["RepoTags"], json!(["<none>:<none>"]));
        assert_eq!(s["RepoDigests"], json!(["<none>@<none>"]));
    }
}
