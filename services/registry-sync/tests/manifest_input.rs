//! Property tests of manifest and index parsing (`manifest.rs`): whatever a registry serves,
//! parsing, validation and platform selection never panic and finish quickly, and a manifest
//! reads back as the descriptors it was written with.
//!
//! `PROPTEST_CASES=N` runs longer (docs/security.md, "Fuzzing").

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{json, Value};
use wharf_bus::registry::Platform;
use wharf_bus::testkit::proptest_cases;
use wharf_registry_sync::manifest::{
    self, check_config_platform, select_platform, Manifest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
    LAYER_TYPES, OCI_INDEX, OCI_MANIFEST,
};

const QUICK: Duration = Duration::from_secs(1);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: proptest_cases(256),
        failure_persistence: None,
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    }
}

const MEDIA_TYPES: &[&str] = &[
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.cncf.helm.config.v1+json",
    "",
    "text/html; charset=utf-8",
];

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn digest() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[0-9a-f]{64}".prop_map(|h| Value::from(format!("sha256:{h}"))),
        1 => "(sha256|sha512|md5)?:?[0-9a-fA-F]{0,70}".prop_map(Value::from),
        1 => any_json(),
    ]
}

fn size() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0i64..1 << 40).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any_json(),
    ]
}

fn platform_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (
            prop::sample::select(vec!["linux", "Linux", "windows", ""]),
            prop::sample::select(vec!["amd64", "arm64", "arm", "386", "x86_64", ""]),
            prop::option::of(prop::sample::select(vec!["v5", "v6", "v7", "v8", "v", "v99999999999", ""])),
        )
            .prop_map(|(os, arch, variant)| {
                let mut p = json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = json!(v);
                }
                p
            }),
        1 => any_json(),
    ]
}

fn descriptor() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (
            prop::sample::select(MEDIA_TYPES),
            digest(),
            size(),
            prop::option::of(platform_json()),
        )
            .prop_map(|(media_type, digest, size, platform)| {
                let mut d = json!({"mediaType": media_type, "digest": digest, "size": size});
                if let Some(p) = platform {
                    d["platform"] = p;
                }
                d
            }),
        1 => any_json(),
    ]
}

/// Bodies shaped like manifests and indexes, with any field possibly wrong.
fn manifest_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => (
            prop_oneof![Just(json!(2)), Just(json!(1)), Just(json!("2")), any_json()],
            prop::option::of(prop::sample::select(MEDIA_TYPES)),
            prop::option::of(descriptor()),
            prop::option::of(prop::collection::vec(descriptor(), 0..5)),
            prop::option::of(prop::collection::vec(descriptor(), 0..5)),
        )
            .prop_map(|(version, media_type, config, layers, manifests)| {
                let mut m = json!({"schemaVersion": version});
                if let Some(t) = media_type {
                    m["mediaType"] = json!(t);
                }
                if let Some(c) = config {
                    m["config"] = c;
                }
                if let Some(l) = layers {
                    m["layers"] = json!(l);
                }
                if let Some(x) = manifests {
                    m["manifests"] = json!(x);
                }
                serde_json::to_vec(&m).unwrap()
            }),
        1 => any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}

fn wanted_platform() -> impl Strategy<Value = Platform> {
    (
        prop::sample::select(vec!["linux", "windows"]),
        prop::sample::select(vec!["amd64", "arm64", "arm", "386"]),
        prop::option::of(prop::sample::select(vec![
            "v6",
            "v7",
            "v8",
            "vx",
            "v4294967296",
        ])),
    )
        .prop_map(|(os, arch, variant)| Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
        })
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < QUICK, "{what} took {:?}", start.elapsed());
    out
}

proptest! {
    #![proptest_config(config())]

    /// Any body with any Content-Type is a manifest, an index or an error, quickly; what
    /// parses validates, and any platform is selected from an index, without a panic; a
    /// selected entry is for the platform asked.
    #[test]
    fn any_registry_body_parses_or_is_refused(
        body in manifest_body(),
        content_type in prop::sample::select(MEDIA_TYPES),
        platform in wanted_platform(),
    ) {
        match timed("parse", || manifest::parse(&body, content_type, "registry.example/a:1")) {
            Ok(Manifest::Image(m)) => {
                prop_assert!(wharf_bus::digest::is_sha256(&m.config.digest));
                let _ = m.validate();
            }
            Ok(Manifest::Index(i)) => {
                if let Ok(d) = timed("select_platform", || select_platform(&i, &platform)) {
                    let p = d.platform.as_ref().unwrap();
                    prop_assert!(p.os.eq_ignore_ascii_case(&platform.os));
                    prop_assert_eq!(&p.architecture, &platform.architecture);
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        let _ = timed("check_config_platform", || {
            check_config_platform(&body, &platform, "registry.example/a:1")
        });
    }

    /// A manifest written with valid descriptors reads back as exactly those descriptors,
    /// whatever the Content-Type says when the body names its own media type.
    #[test]
    fn a_written_manifest_reads_back_as_its_descriptors(
        oci in any::<bool>(),
        config in ("[0-9a-f]{64}", 0i64..=manifest::MAX_CONFIG_SIZE as i64),
        layers in prop::collection::vec(("[0-9a-f]{64}", 0i64..i64::MAX, 0..LAYER_TYPES.len()), 0..6),
        content_type in prop::sample::select(MEDIA_TYPES),
    ) {
        let media_type = if oci { OCI_MANIFEST } else { DOCKER_MANIFEST };
        let body = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{}", config.0), "size": config.1},
            "layers": layers.iter().map(|(h, size, t)| json!({
                "mediaType": LAYER_TYPES[*t], "digest": format!("sha256:{h}"), "size": size,
            })).collect::<Vec<_>>(),
        });
        let parsed = manifest::parse(&serde_json::to_vec(&body).unwrap(), content_type, "x");
        // A schema 1 Content-Type is refused before the body is read, as dockerd does.
        if content_type.starts_with("application/vnd.docker.distribution.manifest.v1") {
            prop_assert!(parsed.is_err());
            return Ok(());
        }
        let Ok(Manifest::Image(m)) = parsed else {
            return Err(TestCaseError::fail(format!("{parsed:?}")));
        };
        prop_assert_eq!(m.media_type.as_str(), media_type);
        prop_assert_eq!(&m.config.digest, &format!("sha256:{}", config.0));
        prop_assert_eq!(m.config.size, config.1 as u64);
        let got: Vec<(String, u64, String)> = m
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.size, l.media_type.clone()))
            .collect();
        let want: Vec<(String, u64, String)> = layers
            .iter()
            .map(|(h, s, t)| (format!("sha256:{h}"), *s as u64, LAYER_TYPES[*t].to_string()))
            .collect();
        prop_assert_eq!(got, want);
        prop_assert!(m.validate().is_ok());
    }
}
