//! Specification tests for the Dockerfile front end. Expected texts come from Docker's own parser
//! fixtures and messages (moby 20.10 and moby/buildkit).

use super::*;

fn nodes(text: &str) -> Vec<Node> {
    parse(text).expect("parses").nodes
}

fn plan(text: &str) -> Plan {
    instructions(&parse(text).expect("parses")).expect("types")
}

fn commands(text: &str) -> Vec<Command> {
    let p = plan(text);
    p.stages
        .into_iter()
        .flat_map(|s| s.commands)
        .map(|i| i.command)
        .collect()
}

/// The message dockerd would send for this Dockerfile.
fn error(text: &str) -> String {
    match parse(text) {
        Err(e) => e.to_string(),
        Ok(df) => instructions(&df).expect_err("should fail").to_string(),
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

// ---------------------------------------------------------------- directives

#[test]
fn escape_directive_backtick_allows_windows_paths() {
    let df = parse("# escape=`\nFROM windowsservercore\nCOPY testfile.txt c:\\\nRUN dir c:\\\nWORKDIR c:\\Users `\n  \\app\n").unwrap();
    assert_eq!(df.escape, '`');
    assert_eq!(df.directive("escape"), Some("`"));
    let n = &df.nodes;
    // A trailing backslash is a path, not a continuation.
    assert_eq!(n[1].args, s(&["testfile.txt", "c:\\"]));
    assert_eq!(n[2].args, s(&["dir c:\\"]));
    assert_eq!(n[3].args, s(&["c:\\Users   \\app"]));
    assert_eq!((n[3].start_line, n[3].end_line), (5, 6));
    // And expansion keeps backslashes when the escape is a backtick.
    let p = instructions(&df).unwrap();
    let wd = p.stages[0].commands[2].expand(&no_env, p.escape).unwrap();
    assert_eq!(wd.command, Command::Workdir("c:\\Users   \\app".into()));
}

#[test]
fn directive_after_a_comment_is_just_a_comment() {
    let text = "# Comment here.\n# escape = `\n\nFROM image\nLABEL maintainer foo@bar.com\nENV GOPATH \\\n\\go";
    let df = parse(text).unwrap();
    assert_eq!(df.escape, '\\');
    assert!(df.directives.is_empty());
    assert_eq!(df.nodes[2].args, s(&["GOPATH", "\\go"]));
    assert_eq!((df.nodes[2].start_line, df.nodes[2].end_line), (6, 7));
}

#[test]
fn directive_after_a_blank_line_or_instruction_is_ignored() {
    assert_eq!(parse("\n# escape=`\nFROM a\n").unwrap().escape, '\\');
    assert_eq!(parse("FROM a\n# escape=`\nRUN x\n").unwrap().escape, '\\');
}

#[test]
fn directives_are_case_insensitive_spaced_and_may_follow_each_other() {
    let df = parse("# SYNTAX = docker/dockerfile:1.4\n#Escape=`\nFROM a\nRUN b `\n c\n").unwrap();
    assert_eq!(df.directive("syntax"), Some("docker/dockerfile:1.4"));
    assert_eq!(df.escape, '`');
    assert_eq!(df.directives[0].name, "syntax");
    assert_eq!(df.directives[1].line, 2);
    assert_eq!(df.nodes[1].args, s(&["b  c"]));
}

#[test]
fn unknown_directive_ends_directive_reading() {
    let df = parse("# foo=bar\n# escape=`\nFROM a\n").unwrap();
    assert!(df.directives.is_empty());
    assert_eq!(df.escape, '\\');
}

#[test]
fn repeated_or_invalid_directive_is_an_error() {
    assert_eq!(
        error("# escape=`\n# escape=\\\nFROM a\n"),
        "failed to parse Dockerfile: only one escape parser directive can be used"
    );
    assert_eq!(
        error("# syntax=a\n# syntax=b\nFROM a\n"),
        "failed to parse Dockerfile: only one syntax parser directive can be used"
    );
    assert_eq!(
        error("# escape=x\nFROM a\n"),
        "failed to parse Dockerfile: invalid escape token 'x' does not match ` or \\"
    );
    let e = parse("# escape=`\n# escape=`\nFROM a\n").unwrap_err();
    assert_eq!((e.kind, e.start_line), (ParseErrorKind::Syntax, 2));
}

// ---------------------------------------------------------------- lines, comments, continuations

#[test]
fn comments_blank_lines_and_leading_whitespace() {
    let n = nodes("  # comment\n\n   FROM busybox   \n\t\tRUN echo hi # not a comment\n");
    assert_eq!(n.len(), 2);
    assert_eq!(n[0].keyword, "from");
    assert_eq!((n[0].start_line, n[0].end_line), (3, 3));
    assert_eq!(n[1].args, s(&["echo hi # not a comment"]));
    assert_eq!(n[1].start_line, 4);
}

#[test]
fn keywords_are_case_insensitive_and_lowercased() {
    let n = nodes("from a\nRuN b\n");
    assert_eq!(n[0].keyword, "from");
    assert_eq!(n[1].keyword, "run");
    assert_eq!(n[1].original, "RuN b");
}

#[test]
fn continuation_lines_join_keep_indentation_and_skip_comments() {
    // From buildkit's continueIndent fixture.
    let text = "FROM ubuntu:14.04\n\nRUN echo hello\\\n  world\\\n  goodnight  \\\n  moon\\\n  light\\\nning\nRUN echo hello  \\  \nworld\nRUN echo hi \\\n \\\n world \\\n\\\n good\\\n\\\nnight\n\nRUN echo hello \\\n# this is a comment\n\n# this is a comment with a blank line surrounding it\n\nthis is some more useful stuff\n";
    let df = parse(text).unwrap();
    let n = &df.nodes;
    assert_eq!(
        n[1].args,
        s(&["echo hello  world  goodnight    moon  lightning"])
    );
    assert_eq!((n[1].start_line, n[1].end_line), (3, 8));
    assert_eq!(n[2].args, s(&["echo hello  world"]));
    assert_eq!(n[3].args, s(&["echo hi   world  goodnight"]));
    assert_eq!(n[4].args, s(&["echo hello this is some more useful stuff"]));
    assert_eq!((n[4].start_line, n[4].end_line), (19, 24));
    assert_eq!(
        n[4].original,
        "RUN echo hello this is some more useful stuff"
    );
    // Blank lines inside a continuation are accepted with Docker's warning.
    assert_eq!(
        df.warnings[0],
        "[WARNING]: Empty continuation line found in:\n    RUN echo hello this is some more useful stuff"
    );
    assert_eq!(
        df.warnings.last().unwrap(),
        "[WARNING]: Empty continuation lines will become errors in a future release."
    );
}

#[test]
fn continuation_at_end_of_file_and_escaped_escape() {
    let n = nodes("FROM a\nRUN echo \\\n");
    assert_eq!(n[1].args, s(&["echo"]));
    // `\\` at the end is an escaped backslash, not a continuation.
    let n = nodes("FROM a\nRUN echo \\\\\nRUN b\n");
    assert_eq!(n[1].args, s(&["echo \\\\"]));
    assert_eq!(n[2].args, s(&["b"]));
}

#[test]
fn crlf_line_endings_and_bom_are_ignored() {
    let n = nodes("\u{feff}FROM a\r\nRUN b \\\r\n c\r\n");
    assert_eq!(n[0].args, s(&["a"]));
    assert_eq!(n[1].args, s(&["b  c"]));
}

#[test]
fn empty_and_instructionless_files_use_dockerds_messages() {
    assert_eq!(error(""), "the Dockerfile (Dockerfile) cannot be empty");
    assert_eq!(
        parse_named("", "dev.Dockerfile").unwrap_err().to_string(),
        "the Dockerfile (dev.Dockerfile) cannot be empty"
    );
    assert_eq!(
        error("# only a comment\n\n"),
        "failed to parse Dockerfile: file with no instructions"
    );
    assert_eq!(
        parse_named("\n", "x/Dockerfile.dev")
            .unwrap_err()
            .to_string(),
        "failed to parse x/Dockerfile.dev: file with no instructions"
    );
}

#[test]
fn overlong_lines_are_refused_like_dockers_scanner() {
    let ok = format!("FROM a\nRUN {}\n", "x".repeat(MAX - 4));
    assert!(parse(&ok).is_ok());
    let long = format!("FROM a\nRUN {}\n", "x".repeat(MAX - 3));
    assert_eq!(
        error(&long),
        "failed to parse Dockerfile: dockerfile line greater than max allowed size of 65535"
    );
}
const MAX: usize = parser::MAX_LINE_LEN;

// ---------------------------------------------------------------- flags

#[test]
fn flags_are_kept_raw_in_order() {
    let n = nodes("FROM --platform=linux/arm64 a AS b\nCOPY --from=b --chown=1:2 --chmod=755 --link src /dst\n");
    assert_eq!(
        n[0].flags,
        vec![Flag {
            name: "platform".into(),
            value: Some("linux/arm64".into())
        }]
    );
    assert_eq!(n[0].args, s(&["a", "AS", "b"]));
    let names: Vec<_> = n[1].flags.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["from", "chown", "chmod", "link"]);
    assert_eq!(n[1].flags[3].value, None);
    assert_eq!(n[1].args, s(&["src", "/dst"]));
}

#[test]
fn flag_errors_use_dockers_wording() {
    assert_eq!(
        error("FROM a\nCOPY --link a b\n"),
        "dockerfile parse error line 2: Unknown flag: link"
    );
    assert_eq!(
        error("FROM a\nRUN --network=host true\n"),
        "dockerfile parse error line 2: Unknown flag: network"
    );
    assert_eq!(
        error("FROM a\nADD --from=x a b\n"),
        "dockerfile parse error line 2: Unknown flag: from"
    );
    assert_eq!(
        error("FROM a\nCOPY --from=x --from=y a b\n"),
        "dockerfile parse error line 2: Duplicate flag specified: from"
    );
    assert_eq!(
        error("FROM a\nCOPY --chown a b\n"),
        "dockerfile parse error line 2: Missing a value on flag: chown"
    );
    assert_eq!(
        error("FROM a\nENV --x=1 a=b\n"),
        "dockerfile parse error line 2: Unknown flag: x"
    );
}

#[test]
fn run_mount_flags_repeat_and_stay_raw() {
    match &commands("FROM a\nRUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t make\n")
        [0]
    {
        Command::Run(r) => {
            assert_eq!(
                r.mounts,
                s(&["type=cache,target=/c", "type=tmpfs,target=/t"])
            );
            assert_eq!(r.cmd, CommandLine::Shell("make".into()));
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- JSON vs shell form

#[test]
fn run_cmd_entrypoint_exec_and_shell_forms() {
    let c = commands(
        "FROM a\nRUN [\"echo\", \"a b\"]\nRUN echo \"a b\"\nCMD [\"/bin/sh\",\"-c\",\"x\"]\nCMD run it\nENTRYPOINT []\nENTRYPOINT\nCMD [\"a\", \"b\"] trailing text\n",
    );
    assert_eq!(
        c[0],
        Command::Run(Run {
            cmd: CommandLine::Exec(s(&["echo", "a b"])),
            heredocs: vec![],
            mounts: vec![]
        })
    );
    assert_eq!(
        c[1],
        Command::Run(Run {
            cmd: CommandLine::Shell("echo \"a b\"".into()),
            heredocs: vec![],
            mounts: vec![]
        })
    );
    assert_eq!(
        c[2],
        Command::Cmd(CommandLine::Exec(s(&["/bin/sh", "-c", "x"])))
    );
    assert_eq!(c[3], Command::Cmd(CommandLine::Shell("run it".into())));
    assert_eq!(c[4], Command::Entrypoint(CommandLine::Exec(vec![])));
    assert_eq!(c[5], Command::Entrypoint(CommandLine::Empty));
    // Docker 20.10 decoded only the first JSON value and ignored what follows.
    assert_eq!(c[6], Command::Cmd(CommandLine::Exec(s(&["a", "b"]))));
}

#[test]
fn invalid_json_falls_back_to_shell_form() {
    // From buildkit's jeztah-invalid-json fixtures.
    let c = commands("FROM a\nCMD ['echo','x']\nCMD [\"echo\", \"x\"\nCMD [\"C:\\path\"]\nCMD \"[\\\"echo\\\"]\"\n");
    assert_eq!(
        c[0],
        Command::Cmd(CommandLine::Shell("['echo','x']".into()))
    );
    assert_eq!(
        c[1],
        Command::Cmd(CommandLine::Shell("[\"echo\", \"x\"".into()))
    );
    // `\p` is not a JSON escape, so this is shell form.
    assert_eq!(
        c[2],
        Command::Cmd(CommandLine::Shell("[\"C:\\path\"]".into()))
    );
    assert_eq!(
        c[3],
        Command::Cmd(CommandLine::Shell("\"[\\\"echo\\\"]\"".into()))
    );
    let n = nodes("FROM a\nRUN [\"echo\\u0041\"]\n");
    assert!(n[1].json);
    assert_eq!(n[1].args, s(&["echoA"]));
}

#[test]
fn json_arrays_must_hold_only_strings() {
    assert_eq!(
        error("FROM a\nCMD [\"echo\", 1]\n"),
        "failed to parse Dockerfile: when using JSON array syntax, arrays must be comprised of strings only"
    );
    assert_eq!(
        error("FROM a\nCOPY [\"a\", [\"b\"]] /x\n"),
        "failed to parse Dockerfile: when using JSON array syntax, arrays must be comprised of strings only"
    );
}

#[test]
fn copy_add_volume_take_json_for_paths_with_spaces() {
    let c = commands(
        "FROM a\nCOPY [\"my file\", \"other\", \"/dest dir/\"]\nADD --chown=app:app a b /c/\nVOLUME [\"/data one\", \"/two\"]\nVOLUME /a   /b\n",
    );
    match &c[0] {
        Command::Copy(cp) => {
            assert_eq!(cp.sources, s(&["my file", "other"]));
            assert_eq!(cp.dest, "/dest dir/");
            assert!(cp.json);
            assert_eq!(cp.from, None);
        }
        other => panic!("{other:?}"),
    }
    match &c[1] {
        Command::Add(a) => {
            assert_eq!(a.sources, s(&["a", "b"]));
            assert_eq!(a.dest, "/c/");
            assert_eq!(a.chown.as_deref(), Some("app:app"));
            assert!(!a.json);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c[2], Command::Volume(s(&["/data one", "/two"])));
    assert_eq!(c[3], Command::Volume(s(&["/a", "/b"])));
}

#[test]
fn shell_requires_json() {
    assert_eq!(
        commands("FROM a\nSHELL [\"pwsh\", \"-c\"]\n")[0],
        Command::Shell(s(&["pwsh", "-c"]))
    );
    assert_eq!(
        error("FROM a\nSHELL /bin/bash -c\n"),
        "dockerfile parse error line 2: SHELL requires the arguments to be in JSON form"
    );
    assert_eq!(
        error("FROM a\nSHELL []\n"),
        "dockerfile parse error line 2: SHELL requires at least one argument"
    );
}

// ---------------------------------------------------------------- heredocs

#[test]
fn heredoc_body_is_attached_and_lines_are_counted() {
    let df = parse("FROM a\nRUN <<EOF\necho $HOME\n  indented\nEOF\nRUN after\n").unwrap();
    let run = &df.nodes[1];
    assert_eq!(run.args, s(&["<<EOF"]));
    assert_eq!(run.heredocs.len(), 1);
    let h = &run.heredocs[0];
    assert_eq!(h.name, "EOF");
    assert!(h.expand);
    assert!(!h.chomp);
    assert_eq!(h.content, "echo $HOME\n  indented\n");
    assert_eq!((run.start_line, run.end_line), (2, 5));
    assert_eq!(df.nodes[2].start_line, 6);
    assert_eq!(run.original, "RUN <<EOF");
}

#[test]
fn several_heredocs_on_one_line_are_read_in_order() {
    let df = parse("FROM a\nCOPY <<one.txt <<two.txt /dest/\nfirst\none.txt\nsecond\ntwo.txt\n")
        .unwrap();
    let p = instructions(&df).unwrap();
    match &p.stages[0].commands[0].command {
        Command::Copy(c) => {
            assert_eq!(c.sources, s(&["<<one.txt", "<<two.txt"]));
            assert_eq!(c.dest, "/dest/");
            let names: Vec<_> = c.heredocs.iter().map(|h| h.name.as_str()).collect();
            assert_eq!(names, ["one.txt", "two.txt"]);
            assert_eq!(c.heredocs[0].content, "first\n");
            assert_eq!(c.heredocs[1].content, "second\n");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.stages[0].commands[0].end_line, 6);
}

#[test]
fn dash_heredoc_strips_leading_tabs_and_quoted_names_do_not_expand() {
    let df = parse(
        "FROM a\nRUN <<-EOT\n\t\techo hi\n\tdone\n\tEOT\nRUN 3<<'X' <<\"Y\" cat\n$a\nX\n$b\nY\n",
    )
    .unwrap();
    let h = &df.nodes[1].heredocs[0];
    assert!(h.chomp);
    assert_eq!(h.content, "echo hi\ndone\n");
    let hs = &df.nodes[2].heredocs;
    assert_eq!(
        (hs[0].name.as_str(), hs[0].fd, hs[0].expand),
        ("X", 3, false)
    );
    assert_eq!((hs[1].name.as_str(), hs[1].expand), ("Y", false));
    assert_eq!(hs[0].content, "$a\n");
    assert_eq!(hs[1].content, "$b\n");
}

#[test]
fn heredoc_markers_are_ignored_where_docker_ignores_them() {
    // Exec form, non-heredoc instructions and `cat<<EOF` (not its own word) have no heredocs.
    let n = nodes("FROM a\nRUN [\"cat\", \"<<EOF\"]\nENV a=<<EOF\nRUN cat<<EOF\n");
    assert!(n.iter().all(|n| n.heredocs.is_empty()));
    assert_eq!(n.len(), 4);
}

#[test]
fn unterminated_heredoc_is_an_error() {
    let e = parse("FROM a\nRUN <<EOF\necho\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to parse Dockerfile: unterminated heredoc"
    );
    assert_eq!((e.start_line, e.end_line), (2, 3));
}

#[test]
fn onbuild_heredoc_is_read_from_the_trigger() {
    let n = nodes("FROM a\nONBUILD RUN <<EOF\nx\nEOF\n");
    assert_eq!(n[1].heredocs[0].content, "x\n");
    assert_eq!(n[1].end_line, 4);
}

// ---------------------------------------------------------------- ENV / LABEL / ARG

#[test]
fn env_legacy_form_takes_the_rest_of_the_line() {
    assert_eq!(
        commands("FROM a\nENV PATH /usr/local/bin:$PATH  more words\n")[0],
        Command::Env(vec![(
            "PATH".into(),
            "/usr/local/bin:$PATH  more words".into()
        )])
    );
}

#[test]
fn env_pairs_keep_quotes_until_expansion() {
    // From buildkit's env fixture.
    let df = parse("FROM a\nENV name=value name2=\"value 2\" name3=value\\ 3 name4='single $x'\nENV name=\"a\\\"b\"\n").unwrap();
    assert_eq!(
        df.nodes[1].args,
        s(&[
            "name",
            "value",
            "name2",
            "\"value 2\"",
            "name3",
            "value\\ 3",
            "name4",
            "'single $x'"
        ])
    );
    let p = instructions(&df).unwrap();
    let env = |k: &str| (k == "x").then(|| "X".to_string());
    let e = p.stages[0].commands[0].expand(&env, '\\').unwrap();
    assert_eq!(
        e.command,
        Command::Env(vec![
            ("name".into(), "value".into()),
            ("name2".into(), "value 2".into()),
            ("name3".into(), "value 3".into()),
            ("name4".into(), "single $x".into()),
        ])
    );
    let e = p.stages[0].commands[1].expand(&no_env, '\\').unwrap();
    assert_eq!(
        e.command,
        Command::Env(vec![("name".into(), "a\"b".into())])
    );
}

#[test]
fn env_multiline_pairs_from_continuations() {
    let c = commands("FROM a\nENV name=value \\\n    name2=\"value2a \\\n           value2b\" \\\n    name3=v3\n");
    assert_eq!(
        c[0],
        Command::Env(vec![
            ("name".into(), "value".into()),
            // One space kept before the escape plus the 11 of the indentation.
            (
                "name2".into(),
                format!("\"value2a {}value2b\"", " ".repeat(11))
            ),
            ("name3".into(), "v3".into()),
        ])
    );
}

#[test]
fn env_and_label_errors() {
    assert_eq!(
        error("FROM a\nENV foo\n"),
        "failed to parse Dockerfile: ENV must have two arguments"
    );
    assert_eq!(
        error("FROM a\nLABEL foo\n"),
        "failed to parse Dockerfile: LABEL must have two arguments"
    );
    assert_eq!(
        error("FROM a\nENV a=b x\n"),
        "failed to parse Dockerfile: Syntax error - can't find = in \"x\". Must be of the form: name=value"
    );
    assert_eq!(
        error("FROM a\nENV =x\n"),
        "dockerfile parse error line 2: ENV names can not be blank"
    );
    assert_eq!(
        error("FROM a\nENV\n"),
        "dockerfile parse error line 2: ENV requires at least one argument"
    );
    assert_eq!(
        error("FROM a\n\nLABEL\n"),
        "dockerfile parse error line 3: LABEL requires at least one argument"
    );
    assert_eq!(
        error("FROM a\nLABEL =x\n"),
        "dockerfile parse error line 2: LABEL names can not be blank"
    );
}

#[test]
fn label_forms_and_expansion() {
    let p = plan("FROM a\nLABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0 desc=\"multi\\\nline\"\nLABEL legacy some value\n");
    let l = p.stages[0].commands[0].expand(&no_env, '\\').unwrap();
    assert_eq!(
        l.command,
        Command::Label(vec![
            ("com.example.vendor".into(), "ACME Inc".into()),
            ("version".into(), "1.0".into()),
            ("desc".into(), "multiline".into()),
        ])
    );
    assert_eq!(
        p.stages[0].commands[1].command,
        Command::Label(vec![("legacy".into(), "some value".into())])
    );
}

#[test]
fn arg_names_with_and_without_defaults() {
    assert_eq!(
        commands("FROM a\nARG a b=2 c= d=\"x y\"\n")[0],
        Command::Arg(vec![
            ("a".into(), None),
            ("b".into(), Some("2".into())),
            ("c".into(), Some("".into())),
            ("d".into(), Some("\"x y\"".into())),
        ])
    );
    assert_eq!(
        error("FROM a\nARG\n"),
        "dockerfile parse error line 2: ARG requires at least one argument"
    );
    assert_eq!(
        error("FROM a\nARG =1\n"),
        "dockerfile parse error line 2: ARG names can not be blank"
    );
}

// ---------------------------------------------------------------- stages

#[test]
fn args_before_from_are_meta_args_and_stages_split_at_from() {
    let p = plan(
        "ARG VERSION=1.0\nARG BASE\nFROM --platform=$BUILDPLATFORM golang:${VERSION} AS Builder\nARG VERSION\nRUN go build\nFROM scratch\nCOPY --from=builder /out /\n",
    );
    assert_eq!(p.meta_args.len(), 2);
    assert_eq!(
        p.meta_args[0].command,
        Command::Arg(vec![("VERSION".into(), Some("1.0".into()))])
    );
    assert_eq!(p.stages.len(), 2);
    let b = &p.stages[0];
    assert_eq!(b.name.as_deref(), Some("builder"));
    assert_eq!(b.base_name, "golang:${VERSION}");
    assert_eq!(b.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(
        b.original,
        "FROM --platform=$BUILDPLATFORM golang:${VERSION} AS Builder"
    );
    assert_eq!(b.commands.len(), 2);
    assert_eq!(b.commands[0].start_line, 4);
    let meta = |k: &str| (k == "VERSION").then(|| "1.0".to_string());
    assert_eq!(b.expanded_base_name(&meta, '\\').unwrap(), "golang:1.0");
    assert_eq!(p.stages[1].name, None);
    match &p.stages[1].commands[0].command {
        Command::Copy(c) => assert_eq!(c.from.as_deref(), Some("builder")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn as_is_case_insensitive_and_stage_names_are_checked() {
    assert_eq!(
        plan("FROM a as Build-1.x_y\n").stages[0].name.as_deref(),
        Some("build-1.x_y")
    );
    assert_eq!(
        error("FROM a AS 1st\n"),
        "dockerfile parse error line 1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
    );
    assert_eq!(
        error("FROM a b\n"),
        "dockerfile parse error line 1: FROM requires either one or three arguments"
    );
    assert_eq!(
        error("FROM\n"),
        "dockerfile parse error line 1: FROM requires either one or three arguments"
    );
    assert_eq!(
        error("FROM a AS b c\n"),
        "dockerfile parse error line 1: FROM requires either one or three arguments"
    );
}

#[test]
fn blank_base_name_after_expansion_is_refused() {
    let p = plan("ARG IMG\nFROM $IMG\n");
    assert_eq!(
        p.stages[0].expanded_base_name(&no_env, '\\').unwrap_err(),
        "base name ($IMG) should not be blank"
    );
}

#[test]
fn commands_before_from_are_refused() {
    assert_eq!(
        error("RUN x\nFROM a\n"),
        "no build stage in current context"
    );
    let e = instructions(&parse("\nENV a=b\n").unwrap()).unwrap_err();
    assert_eq!((e.kind, e.start_line), (ParseErrorKind::Structure, 2));
}

#[test]
fn unknown_instruction_reports_its_line() {
    assert_eq!(
        error("FROM a\nRUN b\nFOO bar\n"),
        "dockerfile parse error line 3: unknown instruction: FOO"
    );
    let e = instructions(&parse("FROM a\nRUN b \\\n c\nfoo \\\n bar\n").unwrap()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "dockerfile parse error line 4: unknown instruction: FOO"
    );
    assert_eq!(
        (e.start_line, e.end_line, e.kind),
        (4, 5, ParseErrorKind::Instruction)
    );
    assert_eq!(e.detail, "unknown instruction: FOO");
}

// ---------------------------------------------------------------- argument counts

#[test]
fn argument_count_errors() {
    let cases = [
        ("FROM a\nCOPY onlyone\n", "dockerfile parse error line 2: COPY requires at least two arguments, but only one was provided. Destination could not be determined"),
        ("FROM a\nADD\n", "dockerfile parse error line 2: ADD requires at least two arguments, but only one was provided. Destination could not be determined"),
        ("FROM a\nWORKDIR\n", "dockerfile parse error line 2: WORKDIR requires exactly one argument"),
        ("FROM a\nUSER\n", "dockerfile parse error line 2: USER requires exactly one argument"),
        ("FROM a\nSTOPSIGNAL\n", "dockerfile parse error line 2: STOPSIGNAL requires exactly one argument"),
        ("FROM a\nMAINTAINER\n", "dockerfile parse error line 2: MAINTAINER requires exactly one argument"),
        ("FROM a\nEXPOSE\n", "dockerfile parse error line 2: EXPOSE requires at least one argument"),
        ("FROM a\nVOLUME\n", "dockerfile parse error line 2: VOLUME requires at least one argument"),
        ("FROM a\nVOLUME []\n", "dockerfile parse error line 2: VOLUME requires at least one argument"),
        ("FROM a\nVOLUME [\"/a\", \" \"]\n", "dockerfile parse error line 2: VOLUME specified can not be an empty string"),
        ("FROM a\nONBUILD\n", "dockerfile parse error line 2: ONBUILD requires at least one argument"),
        ("FROM a\nHEALTHCHECK\n", "dockerfile parse error line 2: HEALTHCHECK requires at least one argument"),
    ];
    for (text, want) in cases {
        assert_eq!(error(text), want, "{text:?}");
    }
}

#[test]
fn single_string_instructions_take_the_whole_rest() {
    let c = commands("FROM a\nWORKDIR /my dir\nUSER app:app\nSTOPSIGNAL SIGTERM\nMAINTAINER Jane Doe <jane@example.com>\n");
    assert_eq!(c[0], Command::Workdir("/my dir".into()));
    assert_eq!(c[1], Command::User("app:app".into()));
    assert_eq!(c[2], Command::StopSignal("SIGTERM".into()));
    assert_eq!(
        c[3],
        Command::Maintainer("Jane Doe <jane@example.com>".into())
    );
}

#[test]
fn expose_is_sorted_and_expands_into_several_ports() {
    let p = plan("FROM a\nEXPOSE 8080 $PORTS 443/tcp\n");
    let i = &p.stages[0].commands[0];
    assert_eq!(
        i.command,
        Command::Expose(s(&["$PORTS", "443/tcp", "8080"]))
    );
    let env = |k: &str| (k == "PORTS").then(|| "80 53/udp".to_string());
    assert_eq!(
        i.expand(&env, '\\').unwrap().command,
        Command::Expose(s(&["80", "53/udp", "443/tcp", "8080"]))
    );
}

// ---------------------------------------------------------------- HEALTHCHECK

#[test]
fn healthcheck_shell_and_exec_forms_with_defaults() {
    let c = commands("FROM a\nHEALTHCHECK CMD curl -f http://localhost/ || exit 1\nHEALTHCHECK cmd [\"curl\", \"-f\", \"x\"]\n");
    assert_eq!(
        c[0],
        Command::Healthcheck(Healthcheck::Check {
            test: s(&["CMD-SHELL", "curl -f http://localhost/ || exit 1"]),
            interval: std::time::Duration::ZERO,
            timeout: std::time::Duration::ZERO,
            start_period: std::time::Duration::ZERO,
            retries: 0,
        })
    );
    match &c[1] {
        Command::Healthcheck(Healthcheck::Check { test, .. }) => {
            assert_eq!(test, &s(&["CMD", "curl", "-f", "x"]))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(DEFAULT_HEALTH_INTERVAL.as_secs(), 30);
    assert_eq!(DEFAULT_HEALTH_RETRIES, 3);
}

#[test]
fn healthcheck_flags() {
    let c = commands("FROM a\nHEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --retries=5 CMD true\n");
    assert_eq!(
        c[0],
        Command::Healthcheck(Healthcheck::Check {
            test: s(&["CMD-SHELL", "true"]),
            interval: std::time::Duration::from_secs(300),
            timeout: std::time::Duration::from_secs(3),
            start_period: std::time::Duration::from_secs(90),
            retries: 5,
        })
    );
}

#[test]
fn healthcheck_none_and_errors() {
    assert_eq!(
        commands("FROM a\nHEALTHCHECK NONE\n")[0],
        Command::Healthcheck(Healthcheck::None)
    );
    // Docker never looks at flags for NONE.
    assert_eq!(
        commands("FROM a\nHEALTHCHECK --bogus=1 none\n")[0],
        Command::Healthcheck(Healthcheck::None)
    );
    let cases = [
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        (
            "HEALTHCHECK foo bar",
            "Unknown type \"FOO\" in HEALTHCHECK (try CMD)",
        ),
        (
            "HEALTHCHECK --retries=0 CMD x",
            "--retries must be at least 1 (not 0)",
        ),
        (
            "HEALTHCHECK --retries=x CMD x",
            "strconv.ParseInt: parsing \"x\": invalid syntax",
        ),
        (
            "HEALTHCHECK --interval=0s CMD x",
            "Interval \"interval\" cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK --timeout=10 CMD x",
            "time: missing unit in duration \"10\"",
        ),
        (
            "HEALTHCHECK --start-period=soon CMD x",
            "time: invalid duration \"soon\"",
        ),
        ("HEALTHCHECK --period=1s CMD x", "Unknown flag: period"),
    ];
    for (line, want) in cases {
        assert_eq!(
            error(&format!("FROM a\n{line}\n")),
            format!("dockerfile parse error line 2: {want}"),
            "{line}"
        );
    }
}

// ---------------------------------------------------------------- ONBUILD

#[test]
fn onbuild_keeps_the_trigger_text() {
    let p = plan("FROM a\nONBUILD ADD . /app/src\n  onbuild   RUN echo \"hi\"  \n");
    assert_eq!(
        p.stages[0].commands[0].command,
        Command::Onbuild("ADD . /app/src".into())
    );
    // Docker only strips the leading `ONBUILD`; trailing blanks of the line stay.
    assert_eq!(
        p.stages[0].commands[1].command,
        Command::Onbuild("RUN echo \"hi\"  ".into())
    );
    let n = nodes("FROM a\nONBUILD RUN [\"x\"]\n");
    assert_eq!(n[1].args, s(&["run", "x"]));
    let t = n[1].trigger.as_ref().unwrap();
    assert_eq!((t.keyword.as_str(), t.json), ("run", true));
    // The trigger parses on its own when replayed.
    let replay = parse_command(&parse("RUN [\"x\"]").unwrap().nodes[0]).unwrap();
    assert_eq!(
        replay.command,
        Command::Run(Run {
            cmd: CommandLine::Exec(s(&["x"])),
            heredocs: vec![],
            mounts: vec![]
        })
    );
}

#[test]
fn onbuild_refuses_onbuild_from_and_maintainer() {
    assert_eq!(
        error("FROM a\nONBUILD ONBUILD RUN x\n"),
        "dockerfile parse error line 2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(
        error("FROM a\nONBUILD FROM b\n"),
        "dockerfile parse error line 2: FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        error("FROM a\nonbuild maintainer me\n"),
        "dockerfile parse error line 2: MAINTAINER isn't allowed as an ONBUILD trigger"
    );
}

// ---------------------------------------------------------------- expansion per instruction

#[test]
fn expansion_applies_only_where_docker_applies_it() {
    let p = plan("FROM a\nENV A=1\nRUN echo $A\nCMD echo $A\nWORKDIR /w/$A\nUSER u$A\nCOPY --chown=$A:$A --from=$A src$A /d$A\nVOLUME /v$A\nSTOPSIGNAL SIG$A\nARG X=$A\n");
    let env = |k: &str| (k == "A").then(|| "1".to_string());
    let got: Vec<Command> = p.stages[0]
        .commands
        .iter()
        .map(|i| i.expand(&env, '\\').unwrap().command)
        .collect();
    assert_eq!(
        got[1],
        Command::Run(Run {
            cmd: CommandLine::Shell("echo $A".into()),
            heredocs: vec![],
            mounts: vec![]
        })
    );
    assert_eq!(got[2], Command::Cmd(CommandLine::Shell("echo $A".into())));
    assert_eq!(got[3], Command::Workdir("/w/1".into()));
    assert_eq!(got[4], Command::User("u1".into()));
    match &got[5] {
        Command::Copy(c) => {
            assert_eq!(c.chown.as_deref(), Some("1:1"));
            // Docker 20.10 did not expand --from.
            assert_eq!(c.from.as_deref(), Some("$A"));
            assert_eq!((c.sources.clone(), c.dest.as_str()), (s(&["src1"]), "/d1"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(got[6], Command::Volume(s(&["/v1"])));
    assert_eq!(got[7], Command::StopSignal("SIG1".into()));
    assert_eq!(got[8], Command::Arg(vec![("X".into(), Some("1".into()))]));
}

#[test]
fn expansion_errors_surface_with_dockers_text() {
    let p = plan("FROM a\nWORKDIR ${dir\n");
    let e = p.stages[0].commands[0].expand(&no_env, '\\').unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to process \"${dir\": missing ':' in substitution"
    );
}

#[test]
fn original_is_trimmed_and_joined_for_history() {
    let p = plan("FROM a\n   RUN apt-get update && \\\n    apt-get install -y curl   \n");
    let i = &p.stages[0].commands[0];
    assert_eq!(
        i.original,
        "RUN apt-get update &&     apt-get install -y curl"
    );
    assert_eq!(i.keyword, "run");
    assert_eq!((i.start_line, i.end_line), (2, 3));
}

// ---------------------------------------------------------------- BuildKit's heredoc fixture

#[test]
fn buildkit_heredoc_fixture() {
    // The Dockerfile of BuildKit's TestParseExtractsHeredoc; `<<-` bodies are already chomped here.
    let text = "
FROM alpine:3.6

ENV NAME=me

RUN ls

USER <<INVALID
INVALID

RUN <<EMPTY
EMPTY

RUN 3<<EMPTY2
EMPTY2

RUN \"<<NOHEREDOC\"

RUN <<INDENT
\tfoo
\tbar
INDENT

RUN <<-UNINDENT
\tbaz
\tquux
UNINDENT

RUN <<-UNINDENT2
\tbaz
\tquux
\tUNINDENT2

RUN <<-EXPAND
\texpand $NAME
EXPAND

RUN <<-'NOEXPAND'
\tdon't expand $NAME
NOEXPAND

RUN <<COPY
echo hello world
echo foo bar
COPY

RUN <<COMMENT
# internal comment
echo hello world
echo foo bar # trailing comment
COMMENT

RUN --mount=type=cache,target=/foo <<MOUNT
echo hello
MOUNT

COPY <<FILE1 <<FILE2 /dest
content 1
FILE1
content 2
FILE2

COPY <<EOF /quotes
\"foo\"
'bar'
EOF

COPY <<X <<Y /dest
Y
X
X
Y

RUN <<COMPLEX python3
print('hello world')
COMPLEX

COPY <<file.txt /dest
hello world
file.txt

RUN <<eo'f'
echo foo
eof

RUN <<eo\\'f
echo foo
eo'f

RUN <<'e'o\\'f
echo foo
eo'f

RUN <<'one two'
echo bar
one two

RUN <<$EOF
$EOF

RUN <<  EOF
EOF

RUN <<  EOF  > foo
EOF
\t";
    type Want = &'static [(&'static str, &'static str, bool, bool, u32)];
    let want: &[Want] = &[
        &[],
        &[],
        &[],
        &[],
        &[("EMPTY", "", true, false, 0)],
        &[("EMPTY2", "", true, false, 3)],
        &[],
        &[("INDENT", "\tfoo\n\tbar\n", true, false, 0)],
        &[("UNINDENT", "baz\nquux\n", true, true, 0)],
        &[("UNINDENT2", "baz\nquux\n", true, true, 0)],
        &[("EXPAND", "expand $NAME\n", true, true, 0)],
        &[("NOEXPAND", "don't expand $NAME\n", false, true, 0)],
        &[("COPY", "echo hello world\necho foo bar\n", true, false, 0)],
        &[(
            "COMMENT",
            "# internal comment\necho hello world\necho foo bar # trailing comment\n",
            true,
            false,
            0,
        )],
        &[("MOUNT", "echo hello\n", true, false, 0)],
        &[
            ("FILE1", "content 1\n", true, false, 0),
            ("FILE2", "content 2\n", true, false, 0),
        ],
        &[("EOF", "\"foo\"\n'bar'\n", true, false, 0)],
        &[("X", "Y\n", true, false, 0), ("Y", "X\n", true, false, 0)],
        &[("COMPLEX", "print('hello world')\n", true, false, 0)],
        &[("file.txt", "hello world\n", true, false, 0)],
        &[("eof", "echo foo\n", false, false, 0)],
        &[("eo'f", "echo foo\n", true, false, 0)],
        &[("eo'f", "echo foo\n", false, false, 0)],
        &[("one two", "echo bar\n", false, false, 0)],
        &[("$EOF", "", true, false, 0)],
        &[("EOF", "", true, false, 0)],
        &[("EOF", "", true, false, 0)],
    ];
    let n = nodes(text);
    assert_eq!(n.len(), want.len() + 1);
    for (i, w) in want.iter().enumerate() {
        let got: Vec<_> = n[i + 1]
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.content.as_str(), h.expand, h.chomp, h.fd))
            .collect();
        assert_eq!(got, w.to_vec(), "node {} ({})", i + 1, n[i + 1].original);
    }
    // `USER <<INVALID` has no heredoc, so its terminator line is an instruction of its own.
    assert_eq!(n[4].keyword, "invalid");
}

#[test]
fn heredoc_marker_with_blanks_before_the_name_counts_but_dash_blank_does_not() {
    let n = nodes("FROM a\nRUN << EOF\nx\nEOF\n");
    assert_eq!(n[1].heredocs[0].name, "EOF");
    // `<<- EOF` lexes as two words in BuildKit, so it is no heredoc.
    let n = nodes("FROM a\nRUN cat <<- EOF\n");
    assert!(n[1].heredocs.is_empty());
}

// ---------------------------------------------------------------- odds and ends

#[test]
fn double_dash_ends_flags() {
    let n = nodes("FROM a\nRUN --mount=type=tmpfs,target=/t -- --version\n");
    assert_eq!(n[1].flags.len(), 1);
    assert_eq!(n[1].args, s(&["--version"]));
}

#[test]
fn onbuild_accepts_unknown_triggers_until_they_are_replayed() {
    let p = plan("FROM a\nONBUILD FOO bar\n");
    assert_eq!(
        p.stages[0].commands[0].command,
        Command::Onbuild("FOO bar".into())
    );
    let trigger = parse("FOO bar").unwrap();
    assert_eq!(
        parse_command(&trigger.nodes[0]).unwrap_err().to_string(),
        "dockerfile parse error line 1: unknown instruction: FOO"
    );
}

#[test]
fn stopsignal_and_arg_ignore_flags_like_docker() {
    let c = commands("FROM a\nSTOPSIGNAL --x=1 SIGKILL\nARG --y=2 A\n");
    assert_eq!(c[0], Command::StopSignal("SIGKILL".into()));
    assert_eq!(c[1], Command::Arg(vec![("A".into(), None)]));
}

#[test]
fn env_quote_fixtures_from_buildkit_expand_like_docker() {
    // Raw words come from BuildKit's env fixture; the expanded values are what the builder stores.
    let cases = [
        (
            "ENV name=\"value'quote space'value2\"",
            "value'quote space'value2",
        ),
        (
            "ENV name='value\"double quote\"value2'",
            "value\"double quote\"value2",
        ),
        ("ENV name=\"a\\'b\"", "a\\'b"),
        ("ENV name=\"''\"", "''"),
        (
            "ENV name=\"value3a\\n\\\"value3b\\\"\"",
            "value3a\\n\"value3b\"",
        ),
        ("ENV name=\"value4a\\\\nvalue4b\"", "value4a\\nvalue4b"),
    ];
    for (line, want) in cases {
        let p = plan(&format!("FROM a\n{line}\n"));
        let e = p.stages[0].commands[0].expand(&no_env, '\\').unwrap();
        assert_eq!(
            e.command,
            Command::Env(vec![("name".into(), want.into())]),
            "{line}"
        );
    }
}

#[test]
fn parse_command_refuses_from() {
    let df = parse("FROM a").unwrap();
    assert!(parse_command(&df.nodes[0]).is_err());
}
