//! Property tests of the Dockerfile front end (`dockerfile::parse`, `instructions`, the variable
//! expander) and of `.dockerignore` matching (`ignore.rs`), which read what a client sends:
//! arbitrary input never panics and is handled within a bounded time; where a round trip exists
//! (JSON arrays, quoted and escaped words, variables, heredocs, literal patterns) it holds.
//!
//! `PROPTEST_CASES=N` runs longer (docs/security.md, "Fuzzing").

use std::time::{Duration, Instant};

use proptest::prelude::*;
use wharf_builder::dockerfile::{
    expand_word, expand_words, instructions, parse, parse_command, Command, Plan,
};
use wharf_builder::ignore::{path_match, Matcher};
use wharf_bus::testkit::proptest_cases;

/// Longest one Dockerfile or word may take to parse and expand, on a loaded 2-core machine
/// (inputs here are at most a few KiB; a debug build parses them in milliseconds).
const QUICK: Duration = Duration::from_secs(2);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: proptest_cases(256),
        failure_persistence: None,
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    }
}

fn timed<T>(what: &str, input: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < QUICK, "{what} took {took:?} on {input:?}");
    out
}

/// Pieces that matter to the lexer and the line parser.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9_./:=-]{1,8}",
        2 => Just(" ".to_string()),
        1 => prop::sample::select(vec![
            "$X", "${X}", "${X:-d}", "${X:+a}", "${X:?m}", "${X-d}", "${X?}", "${", "${X",
            "${:-}", "${X:=y}", "${X:-${Y:-$Z}}", "$1", "$@", "$$", "\\", "`", "\\\n", "\"",
            "'", "\"a b\"", "'a b'", "\\$X", "[", "]", "[\"a\",\"b\"]", "[1]", "{", "}",
            "<<EOF", "<<-'EOF'", "3<<\"E\"", "<<", "--from=a", "--chown=1:1", "--platform=$P",
            "--mount=type=cache", "--interval=5s", "--", "=", "a=b", "a=\"b c\"", "#", "\t",
            "\r", "é", "𝄞", "\u{feff}", "\0", "AS", "as b",
        ])
        .prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ]
}

fn words() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..12).prop_map(|v| v.concat())
}

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "LABEL",
    "ARG",
    "COPY",
    "ADD",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "VOLUME",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "ONBUILD",
    "MAINTAINER",
    "from",
    "Run",
    "FOO",
    "ONBUILD RUN",
    "ONBUILD ONBUILD",
    "ONBUILD FROM",
    "HEALTHCHECK CMD",
    "HEALTHCHECK NONE",
    "# escape=`",
    "# escape=\\",
    "# syntax=x",
    "#",
    "",
];

fn line() -> impl Strategy<Value = String> {
    (prop::sample::select(KEYWORDS), words()).prop_map(|(k, w)| {
        if w.is_empty() {
            k.to_string()
        } else {
            format!("{k} {w}")
        }
    })
}

fn dockerfile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (
            prop::collection::vec(line(), 0..12),
            prop::sample::select(vec!["\n", "\r\n"]),
            any::<bool>(),
        )
            .prop_map(|(lines, end, from_first)| {
                let mut text = String::new();
                if from_first {
                    text.push_str("FROM scratch");
                    text.push_str(end);
                }
                for l in lines {
                    text.push_str(&l);
                    text.push_str(end);
                }
                text
            }),
        1 => any::<String>(),
    ]
}

fn env(name: &str) -> Option<String> {
    match name {
        "X" => Some("x value".into()),
        "Y" => Some(String::new()),
        "P" => Some("linux/amd64".into()),
        "1" => Some("$X".into()),
        _ => None,
    }
}

/// Parses, types and expands everything the builder would, as far as it gets.
fn read_all(text: &str) -> Option<Plan> {
    let df = parse(text).ok()?;
    let plan = instructions(&df).ok()?;
    for stage in &plan.stages {
        let _ = stage.expanded_base_name(&env, plan.escape);
        for c in &stage.commands {
            let _ = c.expand(&env, plan.escape);
        }
    }
    for node in &df.nodes {
        if let Some(trigger) = &node.trigger {
            if let Ok(c) = parse_command(trigger) {
                let _ = c.expand(&env, plan.escape);
            }
        }
    }
    Some(plan)
}

fn escaped(s: &str, escape: char) -> String {
    s.chars().flat_map(|c| [escape, c]).collect()
}

proptest! {
    #![proptest_config(config())]

    /// Any text is a Dockerfile or an error, parsed, typed and expanded quickly, and never a
    /// panic.
    #[test]
    fn any_dockerfile_text_parses_or_fails_quickly(text in dockerfile_text()) {
        timed("reading the Dockerfile", &text, || read_all(&text));
    }

    /// Any word expands or fails quickly with either escape character, never a panic.
    #[test]
    fn any_word_expands_or_fails_quickly(word in prop_oneof![words(), any::<String>()]) {
        for escape in ['\\', '`'] {
            timed("expand_word", &word, || expand_word(&word, &env, escape).ok());
            timed("expand_words", &word, || expand_words(&word, &env, escape).ok());
        }
    }

    /// Escaping every character makes any text literal: it expands to itself, as one word.
    #[test]
    fn escaped_text_expands_to_itself(text in any::<String>()) {
        for escape in ['\\', '`'] {
            prop_assert_eq!(expand_word(&escaped(&text, escape), &env, escape), Ok(text.clone()));
        }
    }

    /// Single quotes keep anything but a single quote as it is.
    #[test]
    fn single_quoted_text_is_literal(text in "[^']{0,40}") {
        prop_assert_eq!(expand_word(&format!("'{text}'"), &env, '\\'), Ok(text.clone()));
        let words = expand_words(&format!("'{text}'"), &env, '\\').unwrap();
        prop_assert_eq!(words, if text.is_empty() { vec![] } else { vec![text] });
    }

    /// A variable expands to its value, and splits into words on whitespace only outside
    /// quotes.
    #[test]
    fn variables_expand_to_their_values(
        name in "[A-Za-z_][A-Za-z0-9_]{0,8}",
        value in any::<String>(),
    ) {
        let lookup = |n: &str| (n == name).then(|| value.clone());
        prop_assert_eq!(expand_word(&format!("${{{name}}}"), &lookup, '\\'), Ok(value.clone()));
        prop_assert_eq!(expand_word(&format!("${name}"), &lookup, '\\'), Ok(value.clone()));
        prop_assert_eq!(expand_word(&format!("${{{name}:-unused}}"), &lookup, '\\'),
            Ok(if value.is_empty() { "unused".to_string() } else { value.clone() }));
        let split: Vec<String> = value.split_whitespace().map(str::to_string).collect();
        prop_assert_eq!(expand_words(&format!("${{{name}}}"), &lookup, '\\'), Ok(split));
    }

    /// `${a:-${a:-...}}` nested to any depth is expanded or refused, never a crash: the
    /// nesting a Dockerfile can ask for is bounded, so the builder's stack is too.
    #[test]
    fn nested_substitutions_of_any_depth_are_expanded_or_refused(depth in 1usize..20_000) {
        let word = format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth));
        let got = timed("nested expansion", "", || expand_word(&word, &env, '\\'));
        if depth <= 64 {
            prop_assert_eq!(got, Ok("x".to_string()));
        }
        let text = format!("FROM scratch\nENV v={word}\nRUN <<{word}\n");
        timed("nested Dockerfile", "", || read_all(&text));
    }

    /// The JSON form of CMD/ENTRYPOINT/RUN gives back exactly the strings it lists.
    #[test]
    fn json_arguments_read_back_as_written(
        keyword in prop::sample::select(vec!["CMD", "ENTRYPOINT", "RUN", "SHELL"]),
        args in prop::collection::vec(any::<String>(), 1..5),
    ) {
        let text = format!("FROM scratch\n{keyword} {}\n", serde_json::to_string(&args).unwrap());
        let df = parse(&text).unwrap();
        prop_assert!(df.nodes[1].json, "{}", text);
        prop_assert_eq!(&df.nodes[1].args, &args);
    }

    /// `ENV k="v"`, with `"`, `$` and the escape character escaped, sets exactly `v`.
    #[test]
    fn quoted_env_values_read_back_as_written(
        key in "[A-Za-z_][A-Za-z0-9_]{0,8}",
        value in "[^\n\r]{0,40}",
    ) {
        let quoted: String = value
            .chars()
            .flat_map(|c| match c {
                '"' | '$' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let text = format!("FROM scratch\nENV {key}=\"{quoted}\"\n");
        let plan = instructions(&parse(&text).unwrap()).unwrap();
        let expanded = plan.stages[0].commands[0].expand(&env, plan.escape).unwrap();
        match expanded.command {
            Command::Env(kv) => prop_assert_eq!(kv, vec![(key, value)]),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    /// A heredoc's body is its lines as written, up to the terminator.
    #[test]
    fn heredoc_bodies_read_back_as_written(
        body in prop::collection::vec("[^\n\r]{0,20}", 0..6),
        chomp in any::<bool>(),
    ) {
        prop_assume!(body.iter().all(|l| l.trim_start_matches('\t') != "EOF"));
        let content: String = body.iter().map(|l| format!("{l}\n")).collect();
        let dash = if chomp { "-" } else { "" };
        let text = format!("FROM scratch\nRUN <<{dash}EOF\n{content}EOF\n");
        let df = parse(&text).unwrap();
        let expected: String = if chomp {
            body.iter().map(|l| format!("{}\n", l.trim_start_matches('\t'))).collect()
        } else {
            content
        };
        prop_assert_eq!(&df.nodes[1].heredocs[0].content, &expected);
    }

    /// Any `.dockerignore` text parses or is refused, and any path is matched against it
    /// quickly, never a panic.
    #[test]
    fn any_dockerignore_matches_any_path_quickly(
        text in prop_oneof![
            prop::collection::vec(
                "!?[a-z*?/.\\[\\]\\\\^-]{0,12}|\\*\\*(/\\*\\*){0,40}|#.*| *",
                0..8,
            )
            .prop_map(|l| l.join("\n")),
            any::<String>(),
        ],
        paths in prop::collection::vec("[a-z*?/.\\\\\\[-]{0,24}|.{0,24}|(a/){0,60}b", 1..6),
    ) {
        let Ok(m) = timed("parsing .dockerignore", &text, || Matcher::parse(&text)) else {
            return Ok(());
        };
        for path in &paths {
            timed("matching", path, || {
                let _ = m.excluded(path);
                let _ = m.dir_decision(path);
                let _ = m.keeping(&[path.as_str(), "Dockerfile"]).excluded(path);
                let _ = m.build_files_to_drop(path);
            });
            for p in m.patterns() {
                timed("path_match", path, || path_match(p.as_str(), path));
            }
        }
    }

    /// A pattern naming a path literally (glob characters escaped) excludes that path and
    /// everything below it, and `path_match` matches it exactly.
    #[test]
    fn literal_patterns_match_their_own_path(
        // No whitespace (lines are trimmed), no byte order mark (dropped at the start of the
        // file, as Docker does), no `.` or `..` (cleaned away).
        parts in prop::collection::vec(
            "[^/\\s#!\u{feff}]{1,6}".prop_filter("cleaned away", |p| p != "." && p != ".."),
            1..4,
        ),
        below in "[a-z]{1,4}",
    ) {
        let path = parts.join("/");
        let pattern: String = path
            .chars()
            .flat_map(|c| match c {
                '*' | '?' | '[' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let m = Matcher::parse(&pattern).unwrap();
        prop_assert!(m.excluded(&path), "{} by {}", path, pattern);
        let child = format!("{path}/{below}");
        prop_assert!(m.excluded(&child));
        prop_assert!(path_match(&pattern, &path));
        let negated = Matcher::parse(&format!("**\n!{pattern}")).unwrap();
        prop_assert!(!negated.excluded(&path));
    }
}
