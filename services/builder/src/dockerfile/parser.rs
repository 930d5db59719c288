//! Lines to nodes: parser directives, comments, continuations, heredocs, builder flags and the
//! per-instruction argument rules (JSON arrays, words, `key=value` lists), the way Docker's
//! Dockerfile parser reads them.

use super::expand::{lex_with_mode, LexMode};
use super::{go_quote, ParseError};

/// The longest physical line Docker's line scanner accepts (bufio's 64 KiB token limit minus one).
pub const MAX_LINE_LEN: usize = 64 * 1024 - 1;

/// A parsed Dockerfile: directives and one node per instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives that were recognised at the top (`syntax`, `escape`), in order.
    pub directives: Vec<Directive>,
    /// The escape character in effect: `\` unless `# escape=` said otherwise.
    pub escape: char,
    /// The instructions, in order.
    pub nodes: Vec<Node>,
    /// Parser warnings, worded as Docker prints them (empty continuation lines).
    pub warnings: Vec<String>,
}

impl Dockerfile {
    /// The value of a directive (`syntax`, `escape`), if it was given.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
            .map(|d| d.value.as_str())
    }
}

/// One `# name=value` parser directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lowercased name.
    pub name: String,
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// A builder flag as written: `--name=value` or `--name` (value `None`). Quotes and `\` escapes
/// inside the flag word are already removed, as Docker does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: Option<String>,
}

/// A heredoc attached to RUN / COPY / ADD (BuildKit syntax; the 20.10 classic builder had none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminator word, quotes removed.
    pub name: String,
    /// File descriptor written before `<<` (`3<<EOF`); 0 when absent.
    pub fd: u32,
    /// False when any part of the marker was quoted (`<<'EOF'`, `<<"EOF"`): the body is literal.
    pub expand: bool,
    /// `<<-`: leading tabs were stripped from the body and the terminator line.
    pub chomp: bool,
    /// The body, line endings kept, leading tabs already removed when `chomp`.
    pub content: String,
}

/// One instruction as parsed, before typing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword, lowercased (`run`, `copy`, ... or an unknown word).
    pub keyword: String,
    /// Builder flags in order of appearance.
    pub flags: Vec<Flag>,
    /// Arguments after the instruction's own line rule (JSON elements, words, `k, v` pairs...).
    /// For ONBUILD: the trigger keyword followed by the trigger's arguments.
    pub args: Vec<String>,
    /// The arguments were a JSON array.
    pub json: bool,
    /// Heredoc bodies, in the order of their markers.
    pub heredocs: Vec<Heredoc>,
    /// 1-based first physical line.
    pub start_line: usize,
    /// 1-based last physical line (continuations and heredoc bodies included).
    pub end_line: usize,
    /// The instruction as written with continuations joined (escape characters and the line
    /// breaks removed, indentation of continued lines kept); Docker's `Original`.
    pub original: String,
    /// ONBUILD's trigger instruction.
    pub trigger: Option<Box<Node>>,
}

/// Reads parser directives until the first line that is not one.
struct Directives {
    escape: char,
    done: bool,
    found: Vec<Directive>,
}

impl Directives {
    /// Docker checks every line, but only the leading run of `# key=value` comments with a known
    /// key counts; anything else (an instruction, a blank line, a plain or unknown-key comment)
    /// ends the run and later directive-looking comments are just comments.
    fn check(&mut self, line: &str, number: usize) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if key != "escape" && key != "syntax" {
            self.done = true;
            return Ok(());
        }
        if self.found.iter().any(|d| d.name == key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        if key == "escape" {
            self.escape = match value {
                "`" => '`',
                "\\" => '\\',
                other => {
                    return Err(format!(
                        "invalid escape token '{other}' does not match ` or \\"
                    ))
                }
            };
        }
        self.found.push(Directive {
            name: key,
            value: value.to_string(),
            line: number,
        });
        Ok(())
    }
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_re_space);
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    if key_len == 0 {
        return None;
    }
    let key = &rest[..key_len];
    let rest = rest[key_len..].trim_start_matches(is_re_space);
    let after_eq = rest.strip_prefix('=')?;
    let value = after_eq.trim_matches(is_re_space);
    if value.is_empty() {
        // `(.+?)` needs one character: with only blanks after `=`, the regex takes the last one.
        return after_eq.len().checked_sub(1).map(|i| (key, &after_eq[i..]));
    }
    Some((key, value))
}

/// RE2's `\s`: `[\t\n\f\r ]`.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// Docker's `reWhitespace`: `[\t\v\f\r ]`, the separator between words of an instruction.
fn is_word_sep(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Removes a trailing escape character (plus trailing blanks) that continues the line. An escape
/// preceded by another escape is literal, as in Docker's continuation regex.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    if let Some(before) = body.strip_suffix(escape) {
        if !before.ends_with(escape) {
            return (before.to_string(), false);
        }
    }
    (line.to_string(), true)
}

/// Parses `text` as a file called `Dockerfile`; see [`parse_named`].
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    parse_named(text, "Dockerfile")
}

/// Parses Dockerfile text. `name` only shapes error messages the way dockerd words them:
/// `the Dockerfile (<name>) cannot be empty` for zero bytes and `failed to parse <name>: ...` for
/// syntax errors. Instruction-level checks (unknown instructions, argument counts, flags) happen
/// in [`super::instructions()`], as in Docker.
pub fn parse_named(text: &str, name: &str) -> Result<Dockerfile, ParseError> {
    if text.is_empty() {
        return Err(ParseError::empty(name));
    }
    let syntax = |msg: String, start: usize, end: usize| ParseError::syntax(name, msg, start, end);

    let mut lines = Lines {
        lines: text.split_inclusive('\n').collect(),
        idx: 0,
        name,
    };
    let mut dirs = Directives {
        escape: '\\',
        done: false,
        found: Vec::new(),
    };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut current = 0usize;

    while let Some(raw) = lines.take(current)? {
        let first = trim_newline(raw).trim_start();
        dirs.check(first, current + 1)
            .map_err(|m| syntax(m, current + 1, current + 1))?;
        current += 1;
        let start_line = current;
        let first = if is_comment(first) { "" } else { first };
        let (mut line, mut end_of_line) = trim_continuation(first, dirs.escape);
        if end_of_line && line.is_empty() {
            continue;
        }

        let mut empty_continuation = false;
        while !end_of_line {
            let Some(raw) = lines.take(current)? else {
                break;
            };
            let content = trim_newline(raw);
            dirs.check(content, current + 1)
                .map_err(|m| syntax(m, current + 1, current + 1))?;
            current += 1;
            // Comment lines and blank lines inside a continued instruction are skipped.
            if is_comment(content) {
                continue;
            }
            if content.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, eol) = trim_continuation(content, dirs.escape);
            line.push_str(&part);
            end_of_line = eol;
        }

        if empty_continuation {
            warnings.push(format!(
                "[WARNING]: Empty continuation line found in:\n    {line}"
            ));
        }

        let mut node =
            node_from_line(&line, dirs.escape).map_err(|m| syntax(m, start_line, current))?;

        if node.can_contain_heredoc() && line.contains("<<") {
            let markers = heredocs_from_line(&line).map_err(|m| syntax(m, start_line, current))?;
            for mut doc in markers {
                let mut content = String::new();
                let mut terminated = false;
                while let Some(raw) = lines.take(current)? {
                    current += 1;
                    let mut candidate = trim_newline(raw);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(raw);
                }
                if !terminated {
                    return Err(syntax("unterminated heredoc".into(), start_line, current));
                }
                if doc.chomp {
                    content = chomp_tabs(&content);
                }
                doc.content = content;
                node.heredocs.push(doc);
            }
        }

        node.start_line = start_line;
        node.end_line = current;
        if let Some(t) = node.trigger.as_mut() {
            t.start_line = start_line;
            t.end_line = current;
        }
        nodes.push(node);
    }

    if !warnings.is_empty() {
        warnings.push(
            "[WARNING]: Empty continuation lines will become errors in a future release.".into(),
        );
    }

    if nodes.is_empty() {
        return Err(syntax("file with no instructions".into(), current, current));
    }

    Ok(Dockerfile {
        directives: dirs.found,
        escape: dirs.escape,
        nodes,
        warnings,
    })
}

/// The physical lines of the file, handed out one by one with their line endings.
struct Lines<'a> {
    lines: Vec<&'a str>,
    idx: usize,
    name: &'a str,
}

impl<'a> Lines<'a> {
    /// The next line (BOM removed from the first), or Docker's scanner error for an overlong one.
    /// `current` is the number of lines consumed so far, for the error's location.
    fn take(&mut self, current: usize) -> Result<Option<&'a str>, ParseError> {
        let Some(raw) = self.lines.get(self.idx).copied() else {
            return Ok(None);
        };
        self.idx += 1;
        let raw = if self.idx == 1 {
            raw.strip_prefix('\u{feff}').unwrap_or(raw)
        } else {
            raw
        };
        if raw.strip_suffix('\n').unwrap_or(raw).len() > MAX_LINE_LEN {
            return Err(ParseError::syntax(
                self.name,
                format!("dockerfile line greater than max allowed size of {MAX_LINE_LEN}"),
                current + 1,
                current + 1,
            ));
        }
        Ok(Some(raw))
    }
}

fn chomp_tabs(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

impl Node {
    fn can_contain_heredoc(&self) -> bool {
        let node = match (&self.keyword[..], &self.trigger) {
            ("onbuild", Some(t)) => t.as_ref(),
            _ => self,
        };
        matches!(&node.keyword[..], "run" | "copy" | "add") && !node.json
    }
}

/// Finds `<<WORD` markers in an instruction line the way BuildKit does: the line is split into
/// shell words (quotes and escapes kept) and each word of the form `[fd]<<[-]name` is a marker.
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let none = |_: &str| -> Option<String> { None };
    let mode = LexMode {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        heredoc_markers: true,
    };
    // Lexing errors (an unbalanced quote) just mean "no heredocs", as in BuildKit.
    let words = match lex_with_mode(line, &none, '\\', mode) {
        Ok((_, words)) => words,
        Err(_) => return Ok(Vec::new()),
    };
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = heredoc_from_word(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// `^(\d*)<<(-?)\s*([^<]*)$` plus BuildKit's quote check on the name.
fn heredoc_from_word(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(is_re_space);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = if digits == 0 {
        0
    } else {
        word[..digits].parse::<u32>().unwrap_or(0)
    };
    let none = |_: &str| -> Option<String> { None };
    let plain = LexMode {
        skip_unset: true,
        ..LexMode::default()
    };
    let words = lex_with_mode(rest, &none, '\\', plain)
        .map_err(|e| e.to_string())?
        .1;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = LexMode {
        raw_quotes: true,
        ..plain
    };
    let raw_words = lex_with_mode(rest, &none, '\\', raw)
        .map_err(|e| e.to_string())?
        .1;
    if raw_words.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    // Quotes that the raw lexing keeps but the plain one drops mean the name was quoted.
    let expand = quotes(&words[0]) == quotes(&raw_words[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        fd,
        expand,
        chomp,
        content: String::new(),
    }))
}

/// Splits an instruction line into keyword, flags and arguments, then applies the keyword's
/// argument rule. Unknown keywords keep no arguments (they are rejected when typed).
pub(crate) fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    let trimmed = line.trim();
    let (cmd, rest) = match trimmed.find(is_word_sep) {
        Some(i) => (&trimmed[..i], trimmed[i..].trim_start_matches(is_word_sep)),
        None => (trimmed, ""),
    };
    let keyword = cmd.to_lowercase();
    let (args_text, flag_words) = extract_builder_flags(rest);
    let rest = args_text.trim();
    let flags = flag_words
        .into_iter()
        .map(|w| {
            let w = w.strip_prefix("--").unwrap_or(&w);
            match w.split_once('=') {
                Some((n, v)) => Flag {
                    name: n.to_string(),
                    value: Some(v.to_string()),
                },
                None => Flag {
                    name: w.to_string(),
                    value: None,
                },
            }
        })
        .collect();

    let mut json = false;
    let mut trigger = None;
    let args = match &keyword[..] {
        "add" | "copy" | "volume" => {
            let (a, j) = parse_maybe_json_to_list(rest)?;
            json = j;
            a
        }
        "cmd" | "entrypoint" | "run" | "shell" => {
            let (a, j) = parse_maybe_json(rest)?;
            json = j;
            a
        }
        "arg" => parse_words(rest, escape),
        "env" => parse_name_val(rest, "ENV", escape)?,
        "label" => parse_name_val(rest, "LABEL", escape)?,
        "expose" | "from" => split_words(rest),
        "healthcheck" => {
            let (a, j) = parse_health_config(rest)?;
            json = j;
            a
        }
        "maintainer" | "stopsignal" | "user" | "workdir" => parse_string(rest),
        "onbuild" => {
            if rest.is_empty() {
                Vec::new()
            } else {
                let child = node_from_line(rest, escape)?;
                let mut a = vec![child.keyword.clone()];
                a.extend(child.args.iter().cloned());
                trigger = Some(Box::new(child));
                a
            }
        }
        _ => Vec::new(),
    };

    Ok(Node {
        keyword,
        flags,
        args,
        json,
        heredocs: Vec::new(),
        start_line: 0,
        end_line: 0,
        original: line.to_string(),
        trigger,
    })
}

/// Pulls leading `--flag[=value]` words off the arguments. Quotes and `\` escapes inside a flag
/// word are removed; `--` alone ends the flags. Returns the remaining text and the flag words.
fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let n = chars.len();
    let at = |pos: usize| chars.get(pos).map(|&(b, _)| b).unwrap_or(line.len());
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= n {
        let ch = chars.get(pos).map(|&(_, c)| c).unwrap_or('\0');
        if phase == Phase::Spaces {
            if pos == n {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            let dash2 = ch == '-' && chars.get(pos + 1).map(|&(_, c)| c) == Some('-');
            if !dash2 {
                return (line[at(pos)..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if pos == n {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (line[at(pos)..].to_string(), words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    quote = ch;
                    blank_ok = true;
                    phase = Phase::Quote;
                } else if ch == '\\' {
                    if pos + 1 < n {
                        pos += 1;
                        word.push(chars[pos].1);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    if pos + 1 == n {
                        phase = Phase::Word;
                    } else {
                        pos += 1;
                        word.push(chars[pos].1);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Spaces => unreachable!("handled above"),
        }
        pos += 1;
    }
    (String::new(), words)
}

/// Splits into words on blanks, keeping quotes and escapes in the words (they are removed later by
/// variable substitution). Used by ARG, ENV and LABEL.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= n {
        let mut ch = chars.get(pos).copied().unwrap_or('\0');
        if phase == Phase::Spaces {
            if pos == n {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if pos == n {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == n {
                    // A lone escape at the end is dropped.
                    pos += 1;
                    continue;
                }
                // Outside quotes the escape and the next character are both kept.
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == n {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(ch);
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

/// ENV / LABEL: `KEY value with spaces` (one pair, the rest of the line is the value) when the
/// first word has no `=`, else a list of `k=v` words. Returns flattened `[k1, v1, k2, v2...]`,
/// values still quoted as written.
fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(Vec::new());
    }
    if !words[0].contains('=') {
        let Some(i) = rest.find(is_word_sep) else {
            return Err(format!("{key} must have two arguments"));
        };
        let value = rest[i..].trim_start_matches(is_word_sep);
        return Ok(vec![rest[..i].to_string(), value.to_string()]);
    }
    let mut out = Vec::with_capacity(words.len() * 2);
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                go_quote(&word)
            ));
        };
        out.push(k.to_string());
        out.push(v.to_string());
    }
    Ok(out)
}

/// Words separated by blanks, nothing else interpreted (EXPOSE, FROM, shell-form COPY/ADD/VOLUME).
fn split_words(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_word_sep)
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

fn parse_string(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        Vec::new()
    } else {
        vec![rest.to_string()]
    }
}

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

enum JsonOutcome {
    Array(Vec<String>),
    NotJson,
}

/// A JSON array of strings at the start of `rest`. As in Docker 20.10 (which used a streaming
/// decoder), text after the closing bracket is ignored. Anything that is not a valid array means
/// "not JSON" (the shell form applies); a valid array with a non-string element is an error.
fn parse_json(rest: &str) -> Result<JsonOutcome, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(JsonOutcome::NotJson);
    }
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    let Some(Ok(serde_json::Value::Array(items))) = stream.next() else {
        return Ok(JsonOutcome::NotJson);
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            serde_json::Value::String(s) => out.push(s),
            _ => return Err(NOT_STRING_ARRAY.into()),
        }
    }
    Ok(JsonOutcome::Array(out))
}

/// RUN / CMD / ENTRYPOINT / SHELL: a JSON array, or the whole text as one argument.
fn parse_maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json(rest)? {
        JsonOutcome::Array(a) => Ok((a, true)),
        JsonOutcome::NotJson => Ok((vec![rest.to_string()], false)),
    }
}

/// COPY / ADD / VOLUME: a JSON array, or blank-separated words.
fn parse_maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    match parse_json(rest)? {
        JsonOutcome::Array(a) => Ok((a, true)),
        JsonOutcome::NotJson => Ok((split_words(rest), false)),
    }
}

/// HEALTHCHECK: a type word (`CMD`, `NONE`) then a RUN-like command.
fn parse_health_config(rest: &str) -> Result<(Vec<String>, bool), String> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let typ = &rest[..sep];
    let cmd = rest[sep..].trim_start();
    let (args, json) = parse_maybe_json(cmd)?;
    let mut out = vec![typ.to_string()];
    out.extend(args);
    Ok((out, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_pulled_off_with_quotes_removed() {
        let (rest, flags) = extract_builder_flags("--from=build --chown=\"a b\":c  src dst");
        assert_eq!(flags, vec!["--from=build", "--chown=a b:c"]);
        assert_eq!(rest.trim(), "src dst");
        let (rest, flags) = extract_builder_flags("-- --notaflag x");
        assert!(flags.is_empty());
        assert_eq!(rest.trim(), "--notaflag x");
        let (rest, flags) = extract_builder_flags("--link");
        assert_eq!(flags, vec!["--link"]);
        assert_eq!(rest, "");
        let (rest, flags) = extract_builder_flags("-x y");
        assert!(flags.is_empty());
        assert_eq!(rest, "-x y");
    }

    #[test]
    fn words_keep_quotes_and_escapes_for_later_substitution() {
        assert_eq!(
            parse_words(r#"a="b c" d=e\ f 'g h'"#, '\\'),
            vec![r#"a="b c""#, r"d=e\ f", "'g h'"]
        );
        assert_eq!(parse_words(r#"x="" y"#, '\\'), vec![r#"x="""#, "y"]);
    }

    #[test]
    fn continuation_escape_rules() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ".to_string(), false));
        assert_eq!(trim_continuation("a\\  \t", '\\'), ("a".to_string(), false));
        assert_eq!(trim_continuation("\\", '\\'), (String::new(), false));
        assert_eq!(
            trim_continuation("a\\\\", '\\'),
            ("a\\\\".to_string(), true)
        );
        assert_eq!(trim_continuation("C:\\", '`'), ("C:\\".to_string(), true));
        assert_eq!(trim_continuation("a `", '`'), ("a ".to_string(), false));
    }

    #[test]
    fn directive_syntax() {
        assert_eq!(match_directive("# escape = `"), Some(("escape", "`")));
        assert_eq!(
            match_directive("#syntax=docker/dockerfile:1 "),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(match_directive("# just a comment"), None);
        assert_eq!(match_directive("# 1x=y"), None);
        assert_eq!(match_directive("# x="), None);
        assert_eq!(match_directive("# escape= "), Some(("escape", " ")));
    }
}
