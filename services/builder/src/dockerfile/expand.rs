//! Variable substitution and word splitting, following the shell-like lexer the classic builder
//! uses (`shell.Lex` in the Dockerfile front end vendored by Docker 20.10).
//!
//! Rules, as Docker applies them:
//! - `$name` and `${name}`; names are letters, digits and `_`, or one special parameter
//!   (`@ * # ? - $ ! 0`), or a run of digits. A `$` not followed by a name stays literal.
//! - `${name:-word}` / `${name:+word}` / `${name:?word}` test "unset or empty";
//!   `${name-word}` / `${name+word}` / `${name?word}` test "unset" only. `word` is itself
//!   processed (quotes, nested `$`). Docker 20.10 itself only knew the colon forms plus `${name?}`;
//!   the other two are BuildKit's and are accepted here as a superset.
//! - The escape character (`\` or the `# escape=` one) makes the next character literal and is
//!   removed; a trailing lone escape is dropped.
//! - Single quotes keep everything literal; double quotes expand `$` and let the escape character
//!   escape only `"`, `$` and itself. Quotes themselves are removed.
//! - Unset variables expand to the empty string.
//!
//! Errors are reported as Docker does: `failed to process "<word>": <reason>`.

use std::fmt;

use wharf_bus::error::go_quote;

/// An error from [`expand_word`] / [`expand_words`], worded like dockerd's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    /// The word being processed, as written.
    pub word: String,
    /// The reason, e.g. `syntax error: missing '}'`.
    pub reason: String,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "failed to process {}: {}",
            go_quote(&self.word),
            self.reason
        )
    }
}

impl std::error::Error for ExpandError {}

/// Instructions whose arguments the classic builder passes through variable substitution before
/// dispatch: ADD, COPY (sources, destination, `--chown`), ENV and LABEL (keys and values), ARG
/// (names and defaults), EXPOSE (each port, which may split into several), FROM (image name and
/// `--platform`, against the meta ARGs only), STOPSIGNAL, USER, VOLUME and WORKDIR.
///
/// RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and MAINTAINER are never expanded (the shell does it at
/// run time for shell forms). ONBUILD is not expanded when recorded: its trigger is expanded like
/// any other instruction when a child build replays it, so this returns `false` for `onbuild`.
/// `keyword` is matched case-insensitively.
pub fn expands(keyword: &str) -> bool {
    matches!(
        keyword.to_ascii_lowercase().as_str(),
        "add"
            | "copy"
            | "env"
            | "label"
            | "arg"
            | "expose"
            | "from"
            | "stopsignal"
            | "user"
            | "volume"
            | "workdir"
    )
}

/// Expands `word` to a single string: variables substituted, quotes and escapes removed, inner
/// whitespace kept (Docker's `ProcessWord`).
pub fn expand_word(
    word: &str,
    env: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    Lexer::new(word, env, escape).run().map(|(w, _)| w)
}

/// Expands `word` and splits the result on unquoted whitespace (Docker's `ProcessWords`). Text
/// produced by a variable is split too, so `EXPOSE $PORTS` with `PORTS="80 443"` gives two words;
/// quoted or escaped whitespace does not split.
pub fn expand_words(
    word: &str,
    env: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    Lexer::new(word, env, escape).run().map(|(_, ws)| ws)
}

/// A lookup over a `KEY=VALUE` list (the form Docker keeps environments in). A later entry for the
/// same key wins; an entry without `=` defines the key as empty. Keys compare case-sensitively, as
/// on Linux.
pub fn env_list_lookup(list: &[String]) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        list.iter().rev().find_map(|e| match e.split_once('=') {
            Some((k, v)) if k == name => Some(v.to_string()),
            None if e == name => Some(String::new()),
            _ => None,
        })
    }
}

/// Options the parser needs when it lexes a heredoc marker (BuildKit keeps quotes and escapes and
/// leaves unset variables untouched there).
#[derive(Clone, Copy, Default)]
pub(crate) struct LexMode {
    pub raw_quotes: bool,
    pub raw_escapes: bool,
    pub skip_unset: bool,
    /// Keep `<<` plus following blanks glued to the next word, as BuildKit does when it looks
    /// for heredoc markers (`<< EOF` is one marker).
    pub heredoc_markers: bool,
}

/// Runs the lexer with the given mode; used by the heredoc detection in the parser.
pub(crate) fn lex_with_mode(
    word: &str,
    env: &dyn Fn(&str) -> Option<String>,
    escape: char,
    mode: LexMode,
) -> Result<(String, Vec<String>), ExpandError> {
    let mut lx = Lexer::new(word, env, escape);
    lx.mode = mode;
    lx.run()
}

/// Collects the split words alongside the joined result.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

/// How deeply `${name:-word}` words may nest (`${a:-${b:-...}}`). Each level is a recursion
/// of the lexer; Docker's Go stack grows, a thread's here does not, so a hostile Dockerfile
/// nesting thousands of levels would overflow it and abort the builder. Real Dockerfiles nest
/// two or three.
pub const MAX_SUBSTITUTION_DEPTH: usize = 128;

struct Lexer<'a> {
    source: &'a str,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
    escape: char,
    mode: LexMode,
    /// Substitution words being read, one inside the other.
    depth: usize,
}

type LexResult<T> = Result<T, String>;

impl<'a> Lexer<'a> {
    fn new(source: &'a str, env: &'a dyn Fn(&str) -> Option<String>, escape: char) -> Self {
        Lexer {
            source,
            chars: source.chars().collect(),
            pos: 0,
            env,
            escape,
            mode: LexMode::default(),
            depth: 0,
        }
    }

    fn run(&mut self) -> Result<(String, Vec<String>), ExpandError> {
        self.process_stop_on(None).map_err(|reason| ExpandError {
            word: self.source.to_string(),
            reason,
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn advance(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes until `stop` (consumed) or the end of input; `stop` missing is an error.
    fn process_stop_on(&mut self, stop: Option<char>) -> LexResult<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.advance();
                return Ok((result, words.finish()));
            }
            match ch {
                '\'' | '"' | '$' => {
                    let tmp = match ch {
                        '\'' => self.process_single_quote()?,
                        '"' => self.process_double_quote()?,
                        _ => self.process_dollar()?,
                    };
                    result.push_str(&tmp);
                    // Text from a variable splits into words; quoted text never does.
                    if ch == '$' {
                        words.add_string(&tmp);
                    } else {
                        words.add_raw_string(&tmp);
                    }
                }
                '<' if self.mode.heredoc_markers && self.chars.get(self.pos + 1) == Some(&'<') => {
                    self.pos += 2;
                    let mut tmp = String::from("<<");
                    while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
                        tmp.push(c);
                        self.advance();
                    }
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.advance();
                    let mut ch = ch;
                    if ch == self.escape {
                        if self.mode.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.advance() {
                            // A lone escape at the very end is dropped.
                            None => break,
                            Some(c) => ch = c,
                        }
                        words.add_raw_char(ch);
                    } else {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> LexResult<String> {
        let mut result = String::new();
        let open = self.advance();
        if self.mode.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.advance() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.mode.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> LexResult<String> {
        let mut result = String::new();
        let open = self.advance();
        if self.mode.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.advance();
                    if self.mode.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.advance().unwrap_or_default();
                    if ch == self.escape {
                        if self.mode.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // An escape right before the end is ignored.
                            None => continue,
                            // Only these can be escaped inside double quotes; otherwise the
                            // escape character stays.
                            Some(c) if c == '"' || c == '$' || c == self.escape => {
                                self.advance();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn process_dollar(&mut self) -> LexResult<String> {
        self.advance(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.mode.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.advance(); // '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{') | Some('}') | Some(':') => {
                return Err("syntax error: bad substitution".into())
            }
            _ => {}
        }
        let name = self.process_name();
        let ch = self.advance();
        match ch {
            Some('}') => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.mode.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(op @ ('?' | '-' | '+')) => self.modifier(&name, op, false),
            Some(':') => {
                let op = self.advance();
                match op {
                    Some(op @ ('?' | '-' | '+')) => self.modifier(&name, op, true),
                    other => {
                        // Docker reads the word before rejecting the modifier, so an
                        // unterminated one reports the missing brace first.
                        self.modifier_word()?;
                        Err(format!(
                            "unsupported modifier ({}) in substitution",
                            other.map(String::from).unwrap_or_default()
                        ))
                    }
                }
            }
            _ => Err("missing ':' in substitution".into()),
        }
    }

    fn modifier_word(&mut self) -> LexResult<String> {
        if self.depth >= MAX_SUBSTITUTION_DEPTH {
            return Err(format!(
                "syntax error: substitutions nested more than {MAX_SUBSTITUTION_DEPTH} deep"
            ));
        }
        self.depth += 1;
        let word = self.process_stop_on(Some('}'));
        self.depth -= 1;
        match word {
            Ok((w, _)) => Ok(w),
            Err(e) => {
                if self.peek().is_none() {
                    Err("syntax error: missing '}'".into())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// `${name<op>word}`; `colon` means an empty value counts as unset.
    fn modifier(&mut self, name: &str, op: char, colon: bool) -> LexResult<String> {
        let word = self.modifier_word()?;
        let value = self.lookup(name);
        if value.is_none() && self.mode.skip_unset {
            let c = if colon { ":" } else { "" };
            return Ok(format!("${{{name}{c}{op}{word}}}"));
        }
        let unset = match &value {
            None => true,
            Some(v) => colon && v.is_empty(),
        };
        match op {
            '-' => Ok(if unset {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if unset { String::new() } else { word }),
            _ => {
                if value.is_none() {
                    let msg: &str = if word.is_empty() {
                        "is not allowed to be unset"
                    } else {
                        &word
                    };
                    return Err(format!("{name}: {msg}"));
                }
                if unset {
                    let msg: &str = if word.is_empty() {
                        "is not allowed to be empty"
                    } else {
                        &word
                    };
                    return Err(format!("{name}: {msg}"));
                }
                Ok(value.unwrap_or_default())
            }
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                // Positional parameters: a run of digits.
                while let Some(d) = self.peek() {
                    if !d.is_numeric() {
                        break;
                    }
                    name.push(d);
                    self.advance();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.advance();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.advance();
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn ex(word: &str, e: &dyn Fn(&str) -> Option<String>) -> String {
        expand_word(word, e, '\\').unwrap()
    }

    fn err(word: &str) -> String {
        expand_word(word, &env(&[]), '\\').unwrap_err().to_string()
    }

    #[test]
    fn plain_and_braced_variables_expand_and_unset_is_empty() {
        let e = env(&[("a", "1"), ("b_2", "two")]);
        assert_eq!(ex("$a", &e), "1");
        assert_eq!(ex("${a}x", &e), "1x");
        assert_eq!(ex("$ax", &e), "");
        assert_eq!(ex("pre-$b_2-post", &e), "pre-two-post");
        assert_eq!(ex("$nope|${nope}", &e), "|");
    }

    #[test]
    fn a_dollar_without_a_name_stays_literal() {
        let e = env(&[]);
        assert_eq!(ex("cost: 5$", &e), "cost: 5$");
        assert_eq!(ex("$/x", &e), "$/x");
    }

    #[test]
    fn default_values_with_and_without_colon() {
        let e = env(&[("empty", ""), ("set", "v")]);
        assert_eq!(ex("${unset:-d}", &e), "d");
        assert_eq!(ex("${empty:-d}", &e), "d");
        assert_eq!(ex("${set:-d}", &e), "v");
        assert_eq!(ex("${unset-d}", &e), "d");
        assert_eq!(ex("${empty-d}", &e), "");
    }

    #[test]
    fn alternative_values_distinguish_empty_from_unset() {
        let e = env(&[("empty", ""), ("set", "v")]);
        assert_eq!(ex("${set:+x}", &e), "x");
        assert_eq!(ex("${empty:+x}", &e), "");
        assert_eq!(ex("${unset:+x}", &e), "");
        assert_eq!(ex("${empty+x}", &e), "x");
        assert_eq!(ex("${unset+x}", &e), "");
    }

    #[test]
    fn default_words_nest_and_are_themselves_processed() {
        let e = env(&[("b", "B"), ("c", "C")]);
        assert_eq!(ex("${a:-$b}", &e), "B");
        assert_eq!(ex("${a:-${x:-$c}}", &e), "C");
        assert_eq!(ex("${a:-'$b'}", &e), "$b");
        assert_eq!(ex("${a:-\"$b c\"}", &e), "B c");
    }

    #[test]
    fn required_variables_error_with_dockers_messages() {
        let e = env(&[("empty", "")]);
        let r = |w: &str| expand_word(w, &e, '\\').unwrap_err().to_string();
        assert_eq!(
            r("${x?}"),
            r#"failed to process "${x?}": x: is not allowed to be unset"#
        );
        assert_eq!(
            r("${x:?boom}"),
            r#"failed to process "${x:?boom}": x: boom"#
        );
        assert_eq!(
            r("${empty:?}"),
            r#"failed to process "${empty:?}": empty: is not allowed to be empty"#
        );
        assert_eq!(ex("${empty?}", &e), "");
    }

    #[test]
    fn escaped_dollar_is_literal_and_escape_is_removed() {
        let e = env(&[("a", "1")]);
        assert_eq!(ex("\\${a}", &e), "${a}");
        assert_eq!(ex("\\$a", &e), "$a");
        assert_eq!(ex("a\\ b", &e), "a b");
        assert_eq!(ex("C:\\dir", &e), "C:dir");
        assert_eq!(ex("trailing\\", &e), "trailing");
    }

    #[test]
    fn backtick_escape_leaves_backslashes_alone() {
        let e = env(&[("a", "1")]);
        assert_eq!(expand_word("C:\\dir\\$a", &e, '`').unwrap(), "C:\\dir\\1");
        assert_eq!(expand_word("`$a", &e, '`').unwrap(), "$a");
    }

    #[test]
    fn single_quotes_are_literal_double_quotes_expand() {
        let e = env(&[("a", "1")]);
        assert_eq!(ex("'$a'", &e), "$a");
        assert_eq!(ex("\"$a\"", &e), "1");
        assert_eq!(ex("'a\\b'", &e), "a\\b");
        assert_eq!(ex("\"a\\b\"", &e), "a\\b");
        assert_eq!(ex("\"a\\\"b\\$a\"", &e), "a\"b$a");
        assert_eq!(ex("\"it's\"", &e), "it's");
    }

    #[test]
    fn unterminated_constructs_report_dockers_errors() {
        assert_eq!(
            err("${x"),
            r#"failed to process "${x": missing ':' in substitution"#
        );
        assert_eq!(
            err("${"),
            r#"failed to process "${": syntax error: missing '}'"#
        );
        assert_eq!(
            err("${x:-y"),
            r#"failed to process "${x:-y": syntax error: missing '}'"#
        );
        assert_eq!(
            err("${}"),
            r#"failed to process "${}": syntax error: bad substitution"#
        );
        assert_eq!(
            err("'abc"),
            r#"failed to process "'abc": unexpected end of statement while looking for matching single-quote"#
        );
        assert_eq!(
            err("\"abc"),
            r#"failed to process "\"abc": unexpected end of statement while looking for matching double-quote"#
        );
        assert_eq!(
            err("${x:=y}"),
            r#"failed to process "${x:=y}": unsupported modifier (=) in substitution"#
        );
        assert_eq!(
            err("${x#y}"),
            r#"failed to process "${x#y}": missing ':' in substitution"#
        );
    }

    #[test]
    fn words_split_on_whitespace_including_expanded_text() {
        let e = env(&[("ports", "80 443/udp")]);
        let w = |s: &str| expand_words(s, &e, '\\').unwrap();
        assert_eq!(w("$ports 8080"), vec!["80", "443/udp", "8080"]);
        assert_eq!(w("\"a b\" c\\ d"), vec!["a b", "c d"]);
        assert_eq!(w("  "), Vec::<String>::new());
        assert_eq!(w("\"$ports\""), vec!["80 443/udp"]);
    }

    #[test]
    fn special_and_positional_parameters_are_names() {
        let e = env(&[("1", "one"), ("$", "pid")]);
        assert_eq!(ex("$1x", &e), "onex");
        assert_eq!(ex("$$", &e), "pid");
    }

    #[test]
    fn env_list_lookup_prefers_the_last_entry() {
        let list = vec!["A=1".to_string(), "B".to_string(), "A=2".to_string()];
        let l = env_list_lookup(&list);
        assert_eq!(l("A").as_deref(), Some("2"));
        assert_eq!(l("B").as_deref(), Some(""));
        assert_eq!(l("C"), None);
        assert_eq!(expand_word("$A$B.", &l, '\\').unwrap(), "2.");
    }

    #[test]
    fn expands_lists_the_instructions_docker_substitutes() {
        for k in [
            "ADD",
            "copy",
            "ENV",
            "expose",
            "FROM",
            "label",
            "STOPSIGNAL",
            "user",
            "volume",
            "workdir",
            "arg",
        ] {
            assert!(expands(k), "{k}");
        }
        for k in [
            "run",
            "CMD",
            "entrypoint",
            "shell",
            "healthcheck",
            "maintainer",
            "onbuild",
        ] {
            assert!(!expands(k), "{k}");
        }
    }

    /// Found by `nested_substitutions_of_any_depth_are_expanded_or_refused`
    /// (tests/dockerfile_input.rs): 20,000 nested `${a:-` overflowed the stack and aborted
    /// the process.
    #[test]
    fn substitutions_nested_past_the_limit_are_refused_not_a_crash() {
        let nested = |depth: usize| format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth));
        let e = env(&[]);
        assert_eq!(ex(&nested(MAX_SUBSTITUTION_DEPTH), &e), "x");
        let deep = nested(100_000);
        let err = expand_word(&deep, &e, '\\').unwrap_err();
        assert_eq!(
            err.reason,
            "syntax error: substitutions nested more than 128 deep"
        );
        // Inside double quotes too, and in the words of `expand_words`.
        let quoted = format!("\"{deep}\"");
        assert!(expand_words(&quoted, &e, '\\').is_err());
    }
}
