//! Typed instructions: nodes checked and converted the way Docker's `instructions.Parse` does
//! (argument counts, allowed flags, HEALTHCHECK options, ONBUILD triggers, build stages).

use std::time::Duration;

use super::expand::{expand_word, expand_words, ExpandError};
use super::parser::{Dockerfile, Flag, Heredoc, Node};
use super::{go_quote, ParseError};

/// Docker's default health check interval, used when `--interval` is not given (stored as zero).
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
/// Docker's default health check timeout (stored as zero when not given).
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Docker's default number of retries (stored as zero when not given).
pub const DEFAULT_HEALTH_RETRIES: u32 = 3;
/// The shortest duration HEALTHCHECK accepts for its interval options.
pub const MIN_HEALTH_DURATION: Duration = Duration::from_millis(1);

/// Meta ARGs (those before the first FROM) and the build stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// ARG instructions before the first FROM; every command is [`Command::Arg`].
    pub meta_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    /// The escape character to expand with.
    pub escape: char,
}

/// One `FROM` and the commands after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The `AS` name, lowercased (stage names match case-insensitively).
    pub name: Option<String>,
    /// The image or stage name as written; expand it with the meta ARGs only.
    pub base_name: String,
    /// `--platform`, as written (expanded with the meta ARGs too).
    pub platform: Option<String>,
    /// The FROM line, trimmed.
    pub original: String,
    pub start_line: usize,
    pub end_line: usize,
    pub commands: Vec<Instruction>,
}

impl Stage {
    /// The base name with meta ARGs substituted, refusing an empty result with Docker's message.
    pub fn expanded_base_name(
        &self,
        meta_args: &dyn Fn(&str) -> Option<String>,
        escape: char,
    ) -> Result<String, String> {
        let name = expand_word(&self.base_name, meta_args, escape).map_err(|e| e.to_string())?;
        if name.is_empty() {
            return Err(format!(
                "base name ({}) should not be blank",
                self.base_name
            ));
        }
        Ok(name)
    }
}

/// A typed command with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Lowercased keyword.
    pub keyword: String,
    pub command: Command,
    /// The instruction text, trimmed, continuations joined: what Docker prints in `Step n/m : ...`
    /// and uses for history.
    pub original: String,
    pub start_line: usize,
    pub end_line: usize,
}

/// How RUN / CMD / ENTRYPOINT were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// Shell form: run through the stage's SHELL.
    Shell(String),
    /// JSON (exec) form, possibly `[]`.
    Exec(Vec<String>),
    /// No arguments at all (Docker keeps an empty shell-form command line).
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub cmd: CommandLine,
    pub heredocs: Vec<Heredoc>,
    /// Raw `--mount=` values (Docker 20.10 parses the flag, then its classic builder refuses it:
    /// "the --mount option requires BuildKit").
    pub mounts: Vec<String>,
}

/// COPY and ADD arguments. ADD never has `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// Sources as written (unexpanded; heredoc markers like `<<EOF` stay here).
    pub sources: Vec<String>,
    pub dest: String,
    /// `--from` (empty value means unset, as in Docker).
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub heredocs: Vec<Heredoc>,
    /// Arguments were a JSON array.
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check (Docker stores test `["NONE"]`).
    None,
    Check {
        /// `["CMD-SHELL", "cmd"]` for shell form, `["CMD", args...]` for exec form.
        test: Vec<String>,
        /// Zero means "not given": the runtime uses [`DEFAULT_HEALTH_INTERVAL`].
        interval: Duration,
        /// Zero means "not given": [`DEFAULT_HEALTH_TIMEOUT`].
        timeout: Duration,
        /// Zero means "not given" (no start period).
        start_period: Duration,
        /// Zero means "not given": [`DEFAULT_HEALTH_RETRIES`].
        retries: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    /// Keys and values as written (quotes kept until expansion).
    Env(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Label(Vec<(String, String)>),
    /// Ports as written, sorted as Docker sorts them; each may expand to several.
    Expose(Vec<String>),
    Workdir(String),
    User(String),
    Volume(Vec<String>),
    Copy(CopySpec),
    Add(CopySpec),
    Shell(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// The trigger instruction text (without `ONBUILD`), replayed by child builds.
    Onbuild(String),
    Maintainer(String),
}

impl Instruction {
    /// Applies variable substitution where the classic builder does before dispatch (see
    /// [`super::expands`]): ENV/LABEL keys and values, ARG names and defaults, COPY/ADD sources,
    /// destination and `--chown`, WORKDIR, USER, STOPSIGNAL, each VOLUME, and EXPOSE (word-split).
    /// Other instructions are returned unchanged. Quotes and escapes are removed as a side effect.
    pub fn expand(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        escape: char,
    ) -> Result<Instruction, ExpandError> {
        let w = |s: &str| expand_word(s, env, escape);
        let pairs = |kv: &[(String, String)]| -> Result<Vec<(String, String)>, ExpandError> {
            kv.iter()
                .map(|(k, v)| -> Result<(String, String), ExpandError> { Ok((w(k)?, w(v)?)) })
                .collect()
        };
        let copy = |c: &CopySpec| -> Result<CopySpec, ExpandError> {
            Ok(CopySpec {
                sources: c.sources.iter().map(|s| w(s)).collect::<Result<_, _>>()?,
                dest: w(&c.dest)?,
                chown: c.chown.as_deref().map(w).transpose()?,
                ..c.clone()
            })
        };
        let command = match &self.command {
            Command::Env(kv) => Command::Env(pairs(kv)?),
            Command::Label(kv) => Command::Label(pairs(kv)?),
            Command::Arg(args) => Command::Arg(
                args.iter()
                    .map(|(k, v)| -> Result<(String, Option<String>), ExpandError> {
                        Ok((w(k)?, v.as_deref().map(w).transpose()?))
                    })
                    .collect::<Result<_, ExpandError>>()?,
            ),
            Command::Copy(c) => Command::Copy(copy(c)?),
            Command::Add(c) => Command::Add(copy(c)?),
            Command::Workdir(p) => Command::Workdir(w(p)?),
            Command::User(u) => Command::User(w(u)?),
            Command::StopSignal(s) => Command::StopSignal(w(s)?),
            Command::Volume(v) => {
                Command::Volume(v.iter().map(|s| w(s)).collect::<Result<_, _>>()?)
            }
            Command::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    out.extend(expand_words(p, env, escape)?);
                }
                Command::Expose(out)
            }
            other => other.clone(),
        };
        Ok(Instruction {
            command,
            ..self.clone()
        })
    }
}

/// What one node turned into.
enum Parsed {
    Stage(Stage),
    Command(Instruction),
}

/// Types every node: ARGs before the first FROM become meta args, each FROM starts a stage.
/// The first error stops, carrying its line.
pub fn instructions(df: &Dockerfile) -> Result<Plan, ParseError> {
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &df.nodes {
        match parse_node(node)? {
            Parsed::Stage(s) => stages.push(s),
            Parsed::Command(c) => match stages.last_mut() {
                Some(stage) => stage.commands.push(c),
                None if matches!(c.command, Command::Arg(_)) => meta_args.push(c),
                None => {
                    return Err(ParseError::structure(
                        "no build stage in current context".into(),
                        node.start_line,
                        node.end_line,
                    ))
                }
            },
        }
    }
    Ok(Plan {
        meta_args,
        stages,
        escape: df.escape,
    })
}

/// Types a single non-FROM node, e.g. an ONBUILD trigger being replayed.
pub fn parse_command(node: &Node) -> Result<Instruction, ParseError> {
    match parse_node(node)? {
        Parsed::Command(c) => Ok(c),
        // Docker's own (Go-typed) message for this case.
        Parsed::Stage(_) => Err(ParseError::structure(
            "*instructions.Stage is not a command type".into(),
            node.start_line,
            node.end_line,
        )),
    }
}

fn parse_node(node: &Node) -> Result<Parsed, ParseError> {
    parse_node_inner(node)
        .map_err(|msg| ParseError::instruction(msg, node.start_line, node.end_line))
}

fn at_least_one(cmd: &str) -> String {
    format!("{cmd} requires at least one argument")
}

fn exactly_one(cmd: &str) -> String {
    format!("{cmd} requires exactly one argument")
}

fn no_destination(cmd: &str) -> String {
    format!(
        "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
    )
}

/// The flags an instruction accepts; `repeatable` ones may appear several times.
struct FlagSpec<'a> {
    single: &'a [&'a str],
    repeatable: &'a [&'a str],
}

const NO_FLAGS: FlagSpec<'static> = FlagSpec {
    single: &[],
    repeatable: &[],
};

/// Checks flags like Docker's BFlags: unknown, duplicate and value-less flags are errors, in the
/// order they were written. Returns each flag's values.
fn check_flags<'n>(
    flags: &'n [Flag],
    spec: &FlagSpec<'_>,
) -> Result<Vec<(&'n str, &'n str)>, String> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for f in flags {
        let name = f.name.as_str();
        let single = spec.single.contains(&name);
        if !single && !spec.repeatable.contains(&name) {
            return Err(format!("Unknown flag: {name}"));
        }
        if single && seen.contains(&name) {
            return Err(format!("Duplicate flag specified: {name}"));
        }
        seen.push(name);
        let Some(value) = f.value.as_deref() else {
            return Err(format!("Missing a value on flag: {name}"));
        };
        out.push((name, value));
    }
    Ok(out)
}

/// The last value of a single-valued flag, `None` when absent or empty (Docker's "unset").
fn flag_value(values: &[(&str, &str)], name: &str) -> Option<String> {
    values
        .iter()
        .rev()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

fn command_line(node: &Node) -> CommandLine {
    if node.json {
        CommandLine::Exec(node.args.clone())
    } else if node.args.is_empty() {
        CommandLine::Empty
    } else {
        CommandLine::Shell(node.args.join(" "))
    }
}

fn key_values(args: &[String], cmd: &str) -> Result<Vec<(String, String)>, String> {
    if args.is_empty() {
        return Err(at_least_one(cmd));
    }
    if !args.len().is_multiple_of(2) {
        return Err(format!("Bad input to {cmd}, too many arguments"));
    }
    args.chunks(2)
        .map(|kv| {
            if kv[0].is_empty() {
                Err(format!("{cmd} names can not be blank"))
            } else {
                Ok((kv[0].clone(), kv[1].clone()))
            }
        })
        .collect()
}

fn copy_spec(node: &Node, cmd: &str, allow_from: bool) -> Result<CopySpec, String> {
    if node.args.len() < 2 {
        return Err(no_destination(cmd));
    }
    let spec = if allow_from {
        FlagSpec {
            single: &["chown", "from", "chmod"],
            repeatable: &[],
        }
    } else {
        FlagSpec {
            single: &["chown", "chmod"],
            repeatable: &[],
        }
    };
    let flags = check_flags(&node.flags, &spec)?;
    let (dest, sources) = node.args.split_last().expect("at least two arguments");
    Ok(CopySpec {
        sources: sources.to_vec(),
        dest: dest.clone(),
        from: if allow_from {
            flag_value(&flags, "from")
        } else {
            None
        },
        chown: flag_value(&flags, "chown"),
        chmod: flag_value(&flags, "chmod"),
        heredocs: node.heredocs.clone(),
        json: node.json,
    })
}

/// `^[a-z][a-z0-9-_.]*$` on the lowercased name.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
}

fn parse_from(node: &Node) -> Result<Stage, String> {
    let args = &node.args;
    let name = if args.len() == 3 && args[1].eq_ignore_ascii_case("as") {
        let name = args[2].to_lowercase();
        if !valid_stage_name(&name) {
            return Err(format!(
                "invalid name for build stage: {}, name can't start with a number or contain symbols",
                go_quote(&args[2])
            ));
        }
        Some(name)
    } else if args.len() != 1 {
        return Err("FROM requires either one or three arguments".into());
    } else {
        None
    };
    let flags = check_flags(
        &node.flags,
        &FlagSpec {
            single: &["platform"],
            repeatable: &[],
        },
    )?;
    Ok(Stage {
        name,
        base_name: args[0].clone(),
        platform: flag_value(&flags, "platform"),
        original: node.original.trim().to_string(),
        start_line: node.start_line,
        end_line: node.end_line,
        commands: Vec::new(),
    })
}

fn parse_onbuild(node: &Node) -> Result<String, String> {
    if node.args.is_empty() {
        return Err(at_least_one("ONBUILD"));
    }
    check_flags(&node.flags, &NO_FLAGS)?;
    let trigger = node.args[0].trim().to_uppercase();
    match trigger.as_str() {
        "ONBUILD" => {
            return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into());
        }
        "MAINTAINER" | "FROM" => {
            return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"));
        }
        _ => {}
    }
    // Docker strips `(?i)^\s*ONBUILD\s*` from the original line.
    let is_space = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let text = node.original.trim_start_matches(is_space);
    let expr = match text.get(..7) {
        Some(head) if head.eq_ignore_ascii_case("onbuild") => {
            text[7..].trim_start_matches(is_space)
        }
        _ => text,
    };
    Ok(expr.to_string())
}

fn parse_healthcheck(node: &Node) -> Result<Healthcheck, String> {
    let Some(first) = node.args.first() else {
        return Err(at_least_one("HEALTHCHECK"));
    };
    let typ = first.to_uppercase();
    let rest = &node.args[1..];
    if typ == "NONE" {
        // Docker does not look at flags at all for NONE.
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        return Ok(Healthcheck::None);
    }
    let flags = check_flags(
        &node.flags,
        &FlagSpec {
            single: &["interval", "timeout", "start-period", "retries"],
            repeatable: &[],
        },
    )?;
    if typ != "CMD" {
        return Err(format!(
            "Unknown type {} in HEALTHCHECK (try CMD)",
            go_quote(&typ)
        ));
    }
    if rest.is_empty() {
        return Err("Missing command after HEALTHCHECK CMD".into());
    }
    let test = if node.json {
        let mut t = vec!["CMD".to_string()];
        t.extend(rest.iter().cloned());
        t
    } else {
        vec!["CMD-SHELL".to_string(), rest.join(" ")]
    };
    let interval = health_interval(&flags, "interval")?;
    let timeout = health_interval(&flags, "timeout")?;
    let start_period = health_interval(&flags, "start-period")?;
    let retries = match flag_value(&flags, "retries") {
        None => 0,
        Some(v) => {
            let n: i64 = v.parse().map_err(|e: std::num::ParseIntError| {
                let why = match e.kind() {
                    std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                        "value out of range"
                    }
                    _ => "invalid syntax",
                };
                format!("strconv.ParseInt: parsing {}: {why}", go_quote(&v))
            })?;
            // Docker parses it as a 32-bit integer.
            if i32::try_from(n).is_err() {
                return Err(format!(
                    "strconv.ParseInt: parsing {}: value out of range",
                    go_quote(&v)
                ));
            }
            if n < 1 {
                return Err(format!("--retries must be at least 1 (not {n})"));
            }
            n as u32
        }
    };
    Ok(Healthcheck::Check {
        test,
        interval,
        timeout,
        start_period,
        retries,
    })
}

fn health_interval(flags: &[(&str, &str)], name: &str) -> Result<Duration, String> {
    let Some(v) = flag_value(flags, name) else {
        return Ok(Duration::ZERO);
    };
    let nanos = parse_go_duration(&v)?;
    if nanos < MIN_HEALTH_DURATION.as_nanos() as i128 {
        // Docker prints its minimum (1ms) with Go's duration format.
        return Err(format!(
            "Interval {} cannot be less than 1ms",
            go_quote(name)
        ));
    }
    Ok(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

/// Go's `time.ParseDuration`, in nanoseconds, with Go's error texts.
pub(crate) fn parse_go_duration(s: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(s));
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        if !(rest.starts_with('.') || rest.starts_with(|c: char| c.is_ascii_digit())) {
            return Err(invalid());
        }
        let int_len = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let frac_len = r.len() - r.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            frac_part = &r[..frac_len];
            rest = &r[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", go_quote(s)));
        }
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(unit),
                    go_quote(s)
                ))
            }
        };
        let int_val: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = int_val.checked_mul(scale).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            // Only the digits that can matter are used; Go truncates the same way.
            let digits = &frac_part[..frac_part.len().min(18)];
            let f: i128 = digits.parse().map_err(|_| invalid())?;
            value += f * scale / 10i128.pow(digits.len() as u32);
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i128::from(i64::MAX) {
            return Err(invalid());
        }
    }
    Ok(if neg { -total } else { total })
}

fn parse_node_inner(node: &Node) -> Result<Parsed, String> {
    let cmd = |c: Command| -> Result<Parsed, String> {
        Ok(Parsed::Command(Instruction {
            keyword: node.keyword.clone(),
            command: c,
            original: node.original.trim().to_string(),
            start_line: node.start_line,
            end_line: node.end_line,
        }))
    };
    let args = &node.args;
    match node.keyword.as_str() {
        "from" => Ok(Parsed::Stage(parse_from(node)?)),
        "env" => {
            check_flags(&node.flags, &NO_FLAGS)?;
            cmd(Command::Env(key_values(args, "ENV")?))
        }
        "label" => {
            check_flags(&node.flags, &NO_FLAGS)?;
            cmd(Command::Label(key_values(args, "LABEL")?))
        }
        "maintainer" => {
            if args.len() != 1 {
                return Err(exactly_one("MAINTAINER"));
            }
            check_flags(&node.flags, &NO_FLAGS)?;
            cmd(Command::Maintainer(args[0].clone()))
        }
        "add" => cmd(Command::Add(copy_spec(node, "ADD", false)?)),
        "copy" => cmd(Command::Copy(copy_spec(node, "COPY", true)?)),
        "onbuild" => cmd(Command::Onbuild(parse_onbuild(node)?)),
        "workdir" | "user" => {
            let upper = node.keyword.to_uppercase();
            if args.len() != 1 {
                return Err(exactly_one(&upper));
            }
            check_flags(&node.flags, &NO_FLAGS)?;
            if node.keyword == "user" {
                cmd(Command::User(args[0].clone()))
            } else {
                cmd(Command::Workdir(args[0].clone()))
            }
        }
        "run" => {
            let flags = check_flags(
                &node.flags,
                &FlagSpec {
                    single: &[],
                    repeatable: &["mount"],
                },
            )?;
            cmd(Command::Run(Run {
                cmd: command_line(node),
                heredocs: node.heredocs.clone(),
                mounts: flags.iter().map(|(_, v)| v.to_string()).collect(),
            }))
        }
        "cmd" => {
            check_flags(&node.flags, &NO_FLAGS)?;
            cmd(Command::Cmd(command_line(node)))
        }
        "entrypoint" => {
            check_flags(&node.flags, &NO_FLAGS)?;
            cmd(Command::Entrypoint(command_line(node)))
        }
        "healthcheck" => cmd(Command::Healthcheck(parse_healthcheck(node)?)),
        "expose" => {
            if args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            check_flags(&node.flags, &NO_FLAGS)?;
            let mut ports = args.clone();
            ports.sort();
            cmd(Command::Expose(ports))
        }
        "volume" => {
            if args.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            check_flags(&node.flags, &NO_FLAGS)?;
            let mut vols = Vec::with_capacity(args.len());
            for v in args {
                let v = v.trim();
                if v.is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                vols.push(v.to_string());
            }
            cmd(Command::Volume(vols))
        }
        // Docker checks neither STOPSIGNAL's nor ARG's flags.
        "stopsignal" => {
            if args.len() != 1 {
                return Err(exactly_one("STOPSIGNAL"));
            }
            cmd(Command::StopSignal(args[0].clone()))
        }
        "arg" => {
            if args.is_empty() {
                return Err(at_least_one("ARG"));
            }
            let mut pairs = Vec::with_capacity(args.len());
            for a in args {
                match a.split_once('=') {
                    Some(("", _)) => return Err("ARG names can not be blank".into()),
                    Some((k, v)) => pairs.push((k.to_string(), Some(v.to_string()))),
                    None => pairs.push((a.clone(), None)),
                }
            }
            cmd(Command::Arg(pairs))
        }
        "shell" => {
            check_flags(&node.flags, &NO_FLAGS)?;
            if args.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".into());
            }
            cmd(Command::Shell(args.clone()))
        }
        other => Err(format!("unknown instruction: {}", other.to_uppercase())),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("300ms"), Ok(300_000_000));
        assert_eq!(parse_go_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_go_duration("2\u{b5}s"), Ok(2_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("-1s"), Ok(-1_000_000_000));
        assert_eq!(
            parse_go_duration("abc"),
            Err(r#"time: invalid duration "abc""#.into())
        );
        assert_eq!(
            parse_go_duration("5"),
            Err(r#"time: missing unit in duration "5""#.into())
        );
        assert_eq!(
            parse_go_duration("5x"),
            Err(r#"time: unknown unit "x" in duration "5x""#.into())
        );
        assert_eq!(
            parse_go_duration(""),
            Err(r#"time: invalid duration """#.into())
        );
    }
}
