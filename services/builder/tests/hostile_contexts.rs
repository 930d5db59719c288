//! Property tests of the build-context receiver (`context::receive`) with hostile archives:
//! whatever the entries, the Dockerfile name and the `.dockerignore`, nothing outside the
//! context directory is written, and nothing panics. Errors are fine.
//!
//! `PROPTEST_CASES=N` runs longer (docs/security.md, "Fuzzing").

use proptest::prelude::*;
use wharf_bus::testkit::hostile_tar::{self, Entry, Kind};
use wharf_bus::testkit::proptest_cases;

/// Dockerfile names as `docker build -f` (the `dockerfile` query parameter) may send them.
const DOCKERFILE_NAMES: &[&str] = &[
    "",
    "Dockerfile",
    "a",
    "a/Dockerfile",
    "../outside/marker",
    "/a",
    "@OUTSIDE@/marker",
    "..",
    ".",
    "a/../../outside/marker",
    "evil",
];

/// `.dockerignore` texts: some exclude the build files (which the builder then deletes).
const IGNORES: &[&str] = &[
    "*\n",
    "Dockerfile\n.dockerignore\n",
    "a\n!a/b\n",
    "**\n!Dockerfile\n",
    "[\n",
    "!\n",
    "evil\n..\n/\n",
];

fn extras(pick: u8, ignore: usize) -> Vec<Entry> {
    let mut out = Vec::new();
    if pick & 1 == 1 {
        out.push(Entry::new(
            "Dockerfile",
            Kind::File(b"FROM scratch\nCOPY . /\n".to_vec()),
        ));
    }
    match pick >> 1 & 3 {
        1 => out.push(Entry::new(
            ".dockerignore",
            Kind::File(IGNORES[ignore % IGNORES.len()].as_bytes().to_vec()),
        )),
        2 => out.push(Entry::new(
            ".dockerignore",
            Kind::Symlink(b"@OUTSIDE@/marker".to_vec()),
        )),
        3 => out.push(Entry::new(
            "Dockerfile",
            Kind::Symlink(b"../outside".to_vec()),
        )),
        _ => {}
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: proptest_cases(192),
        failure_persistence: None,
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    })]

    /// Any sequence of tar entries (see `hostile_tar::entries`), with any Dockerfile name and
    /// `.dockerignore`, is received or refused, and nothing outside the context directory is
    /// written, linked, chmodded or removed.
    #[test]
    fn no_build_context_writes_outside_its_directory(
        picks in prop::collection::vec(any::<u16>(), 0..96),
        dockerfile in 0..DOCKERFILE_NAMES.len(),
        extra in 0u8..8,
        ignore in 0..IGNORES.len(),
        first in any::<bool>(),
    ) {
        let mut entries = hostile_tar::entries(&picks);
        let extra = extras(extra, ignore);
        if first {
            entries.splice(0..0, extra);
        } else {
            entries.extend(extra);
        }
        let arena = hostile_tar::Arena::new();
        let tar = hostile_tar::build(&entries, arena.outside());
        let name = DOCKERFILE_NAMES[dockerfile]
            .replace("@OUTSIDE@", &arena.outside().to_string_lossy());
        let result = wharf_builder::context::receive(&tar[..], arena.root(), &name);
        prop_assert_eq!(
            arena.check(),
            Ok(()),
            "entries {:#?} with Dockerfile {:?} gave {:?}",
            entries,
            name,
            result.map(|c| c.dockerfile_name)
        );
    }
}
