//! Property tests of the bus contract's parsers of client input: image references
//! (`reference.rs`), `X-Registry-Auth` and `X-Registry-Config` (`registry.rs`) and platforms.
//! Arbitrary input never panics and is parsed quickly; what parses reads back the same.
//!
//! `PROPTEST_CASES=N` runs longer (docs/security.md, "Fuzzing").

use std::time::{Duration, Instant};

use base64::Engine;
use proptest::prelude::*;
use wharf_bus::reference::{familiarize, Reference};
use wharf_bus::registry::{
    auth_configs_from_header, auth_for_domain, auth_key_domain, AuthConfigs, Platform, RegistryAuth,
};
use wharf_bus::testkit::proptest_cases;
use wharf_bus::ErrorKind;

/// Longest a single parse of a short input may take, even on a loaded 2-core machine.
const QUICK: Duration = Duration::from_millis(250);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: proptest_cases(256),
        failure_persistence: None,
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    }
}

/// Text shaped like references, with the characters that matter to the parser.
fn reference_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._:/@-]{0,40}",
        (
            prop::option::of(
                "docker\\.io|index\\.docker\\.io|localhost|[a-zA-Z0-9.-]{1,12}(:[0-9]{1,5})?"
            ),
            prop::collection::vec("library|[a-z0-9]{1,6}([._-]{1,2}[a-z0-9]{1,4})?", 1..4),
            prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}"),
            prop::option::of("[0-9a-f]{64}"),
        )
            .prop_map(|(domain, path, tag, digest)| {
                let mut s = String::new();
                if let Some(d) = domain {
                    s.push_str(&d);
                    s.push('/');
                }
                s.push_str(&path.join("/"));
                if let Some(t) = tag {
                    s.push(':');
                    s.push_str(&t);
                }
                if let Some(d) = digest {
                    s.push_str("@sha256:");
                    s.push_str(&d);
                }
                s
            }),
        any::<String>(),
        // Non-ASCII next to the separators, where byte offsets could split a character.
        "[a:/@é€𝄞]{0,12}",
    ]
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < QUICK, "{what} took {took:?}");
    out
}

proptest! {
    #![proptest_config(config())]

    /// Any text is a reference or `invalid`, quickly, and never a panic.
    #[test]
    fn any_text_is_a_reference_or_refused_as_invalid(input in reference_like()) {
        match timed("parse", || Reference::parse(&input)) {
            Ok(r) => {
                prop_assert!(!r.domain.is_empty() && !r.path.is_empty());
            }
            Err(e) => prop_assert_eq!(e.kind, ErrorKind::Invalid),
        }
        let _ = familiarize(&input);
    }

    /// What parses reads back as the same reference from its full form and from the
    /// familiar form users see.
    #[test]
    fn a_parsed_reference_reads_back_from_its_full_and_familiar_forms(
        input in reference_like()
    ) {
        let Ok(r) = Reference::parse(&input) else {
            return Ok(());
        };
        let full = r.to_string();
        prop_assert_eq!(Reference::parse(&full).ok(), Some(r.clone()), "full form {}", full);
        let familiar = r.familiar();
        // As in Docker, a Docker Hub repository whose first component reads as a registry
        // (`docker.io/0.a/b`) has a familiar form naming that registry (`0.a/b`).
        let first = r.path.split('/').next().unwrap_or_default();
        if r.domain == "docker.io" && (first.contains('.') || first == "localhost") {
            return Ok(());
        }
        prop_assert_eq!(
            Reference::parse(&familiar).ok(),
            Some(r.clone()),
            "familiar form {}",
            familiar
        );
        prop_assert_eq!(familiarize(&full), familiar);
        let tagged = Reference::parse_tagged(&input).unwrap();
        prop_assert!(tagged.tag.is_some() || tagged.digest.is_some());
    }

    /// Any `X-Registry-Auth` value decodes to credentials or to none, never a panic.
    #[test]
    fn any_registry_auth_header_decodes_or_is_ignored(
        value in prop_oneof![any::<String>(), "[A-Za-z0-9+/=_-]{0,64}"]
    ) {
        let _ = timed("from_header", || RegistryAuth::from_header(&value));
        let _ = timed("auth_configs_from_header", || auth_configs_from_header(&value));
        let _ = auth_key_domain(&value);
    }

    /// Credentials the CLI encodes, in any of the four base64 alphabets, decode to themselves.
    #[test]
    fn registry_auth_headers_round_trip(
        auth in registry_auth(),
        engine in 0usize..4,
    ) {
        let json = serde_json::to_vec(&auth).unwrap();
        let header = encode(engine, &json);
        let expected = (auth != RegistryAuth::default()).then(|| auth.clone());
        prop_assert_eq!(RegistryAuth::from_header(&header), expected);
        if let (Some(u), Some(p)) = (&auth.username, &auth.password) {
            if !u.is_empty() {
                prop_assert_eq!(auth.basic(), Some((u.clone(), p.clone())));
            }
        }
    }

    /// `X-Registry-Config` maps of credentials decode to themselves, and each is found again
    /// under its registry's domain.
    #[test]
    fn registry_config_headers_round_trip(
        configs in prop::collection::btree_map(
            "(https?://)?[a-z0-9.-]{1,12}(:[0-9]{1,4})?(/v1/)?",
            registry_auth(),
            0..4,
        ),
        engine in 0usize..4,
    ) {
        let configs: AuthConfigs = configs;
        let header = encode(engine, &serde_json::to_vec(&configs).unwrap());
        prop_assert_eq!(&auth_configs_from_header(&header), &configs);
        for key in configs.keys() {
            let domain = auth_key_domain(key);
            prop_assert!(auth_for_domain(&configs, domain).is_some());
        }
    }

    /// The `user:password` in `auth` comes back as it was (a password may hold `:`).
    #[test]
    fn basic_credentials_come_back_from_auth(
        user in "[^:]{1,12}",
        password in ".{0,16}",
    ) {
        let auth = RegistryAuth {
            auth: Some(
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
            ),
            ..RegistryAuth::default()
        };
        prop_assert_eq!(auth.basic(), Some((user, password)));
    }

    /// Any `--platform` text parses or not, and a parsed platform reads back from its text.
    #[test]
    fn platforms_read_back_from_their_text(input in "[a-zA-Z0-9/_-]{0,24}|.{0,24}") {
        let Some(p) = timed("Platform::parse", || Platform::parse(&input)) else {
            return Ok(());
        };
        let text = p.to_string();
        let again = Platform::parse(&text);
        // `x86_64` and `aarch64` are renamed once; the result names the same platform.
        prop_assert_eq!(again.as_ref(), Some(&p), "{} -> {}", input, text);
    }
}

fn registry_auth() -> impl Strategy<Value = RegistryAuth> {
    let field = || prop::option::of(any::<String>());
    (field(), field(), field(), field(), field(), field()).prop_map(
        |(username, password, auth, server_address, identity_token, registry_token)| RegistryAuth {
            username,
            password,
            auth,
            server_address,
            identity_token,
            registry_token,
        },
    )
}

fn encode(engine: usize, data: &[u8]) -> String {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    match engine {
        0 => URL_SAFE.encode(data),
        1 => URL_SAFE_NO_PAD.encode(data),
        2 => STANDARD.encode(data),
        _ => STANDARD_NO_PAD.encode(data),
    }
}

/// Found by `a_parsed_reference_reads_back_from_its_full_and_familiar_forms`: a Docker Hub
/// repository under `library/` with more than one level below it keeps the prefix in its
/// familiar form (`library/a/b`), as distribution's `FamiliarName` does; dropping it named
/// another repository (`docker.io/a/b`).
#[test]
fn a_nested_library_repository_keeps_its_prefix_in_the_familiar_form() {
    let r = Reference::parse("library/a/b:1").unwrap();
    assert_eq!(r.to_string(), "docker.io/library/a/b:1");
    assert_eq!(r.familiar(), "library/a/b:1");
    assert_eq!(Reference::parse(&r.familiar()).unwrap(), r);
    assert_eq!(
        familiarize("docker.io/library/busybox:latest"),
        "busybox:latest"
    );
}
