//! `.dockerignore`: which files of a build context a build sees.
//!
//! Mirrors Docker 20.10's classic build path:
//! - reading: buildkit's `dockerignore.ReadAll` (vendored by moby 20.10), then the per-entry
//!   cleaning of moby's `fileutils.NewPatternMatcher`;
//! - matching: Go `filepath.Match` syntax plus Docker's `**`, with the semantics of the regexp
//!   Docker compiles each pattern to, and "the path or one of its parents matches" as in
//!   `MatchesOrParentMatches`; the last matching pattern decides;
//! - walking: the docker CLI's context tar (`archive.TarWithOptions`), which prunes excluded
//!   directories unless an exception pattern names something beneath them.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

/// Why a `.dockerignore` pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// Go's `filepath.ErrBadPattern`; Docker reports it with exactly this text.
    #[error("syntax error in pattern")]
    BadPattern {
        /// The offending entry, after cleaning.
        pattern: String,
    },
    /// A line that is only `!` (or becomes only `!` after cleaning, such as `!/`).
    #[error("illegal exclusion pattern: \"!\"")]
    IllegalExclusion,
    /// `Pattern::new` was given nothing but whitespace.
    #[error("empty pattern")]
    Empty,
}

/// One compiled piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` followed by more pattern: nothing, or anything that ends with `/`.
    DirStar,
    /// `**` at the end of the pattern: anything at all.
    Rest,
    /// `[...]`: unlike `?` and `*` it may match `/`, as in Go.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Go's `filepath.Match` of a whole `/`-separated path: what COPY and ADD sources with
/// wildcards select from the context (`*` and `?` never cross a `/`).
pub fn path_match(pattern: &str, path: &str) -> bool {
    let path: Vec<char> = path.chars().collect();
    Pattern::new(pattern).is_ok_and(|p| !p.exception && p.matches_exact(&path))
}

/// One `.dockerignore` entry: a cleaned glob, possibly an exception (`!`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Cleaned pattern text without the `!`.
    text: String,
    exception: bool,
    tokens: Vec<Token>,
    /// Number of leading / trailing literal tokens, used to reject most paths cheaply.
    lead: usize,
    trail: usize,
    /// What the walker compares against a directory to decide whether to descend: the text for
    /// parsed patterns, the plain name for literal ones built by `keeping`.
    descend_key: String,
}

impl Pattern {
    /// Parses one entry as a `.dockerignore` line would be (without the comment rule): trimmed,
    /// `!` for an exception, cleaned like Go's `filepath.Clean`, a leading `/` dropped.
    pub fn new(entry: &str) -> Result<Pattern, IgnoreError> {
        let normalized = read_entry(entry).ok_or(IgnoreError::Empty)?;
        compile_entry(&normalized)
    }

    /// A pattern matching exactly `name` (no wildcards), used for files that must be kept.
    fn literal(name: &str, exception: bool) -> Pattern {
        let mut text = String::with_capacity(name.len());
        for c in name.chars() {
            if matches!(c, '*' | '?' | '[' | '\\') {
                text.push('\\');
            }
            text.push(c);
        }
        let tokens: Vec<Token> = name.chars().map(Token::Lit).collect();
        let n = tokens.len();
        Pattern {
            text,
            exception,
            tokens,
            lead: n,
            trail: 0,
            descend_key: name.to_string(),
        }
    }

    /// The cleaned pattern, without a leading `!`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is a `!` exception, which takes matching paths back into the context.
    pub fn is_exception(&self) -> bool {
        self.exception
    }

    /// Whether the pattern matches the whole of `path` (no parent-directory rule).
    fn matches_exact(&self, path: &[char]) -> bool {
        let n = path.len();
        let t = self.tokens.len();
        if self.lead == t {
            return n == t && lits_equal(&self.tokens, path);
        }
        if n < self.lead + self.trail {
            return false;
        }
        if !lits_equal(&self.tokens[..self.lead], &path[..self.lead])
            || !lits_equal(&self.tokens[t - self.trail..], &path[n - self.trail..])
        {
            return false;
        }
        match_tokens(
            &self.tokens[self.lead..t - self.trail],
            &path[self.lead..n - self.trail],
        )
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exception {
            f.write_str("!")?;
        }
        f.write_str(&self.text)
    }
}

/// Parses the text of a `.dockerignore` file.
///
/// As Docker does: a UTF-8 BOM is dropped; a line whose *first character* is `#` is a comment
/// (an indented `#` is a pattern); lines are trimmed and blank ones skipped; `!` marks an
/// exception (space after it allowed); each pattern is cleaned like `filepath.Clean` (`./`,
/// `//`, `..` and a trailing `/` go) and a leading `/` is dropped, since the context root is
/// `/`. A lone `!` is an error, a lone `/` is kept but matches nothing, and a malformed glob
/// (e.g. unterminated `[`) is `syntax error in pattern`.
pub fn parse_dockerignore(text: &str) -> Result<Vec<Pattern>, IgnoreError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut patterns = Vec::new();
    for line in text.lines() {
        // The comment check runs before trimming, as in ReadAll.
        if line.starts_with('#') {
            continue;
        }
        if let Some(entry) = read_entry(line) {
            patterns.push(compile_entry(&entry)?);
        }
    }
    Ok(patterns)
}

/// ReadAll's per-line normalisation; `None` for a blank line.
fn read_entry(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let (invert, rest) = match line.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, line),
    };
    let mut rest = if rest.is_empty() {
        String::new()
    } else {
        go_clean(rest)
    };
    if rest.len() > 1 && rest.starts_with('/') {
        rest.remove(0);
    }
    Some(if invert { format!("!{rest}") } else { rest })
}

/// NewPatternMatcher's per-entry step: trim and clean again, split off `!`, check the syntax.
fn compile_entry(entry: &str) -> Result<Pattern, IgnoreError> {
    let trimmed = entry.trim();
    if trimmed.is_empty() {
        return Err(IgnoreError::Empty);
    }
    let cleaned = go_clean(trimmed);
    let (exception, text) = match cleaned.strip_prefix('!') {
        Some("") => return Err(IgnoreError::IllegalExclusion),
        Some(rest) => (true, rest),
        None => (false, cleaned.as_str()),
    };
    let tokens = compile(text).ok_or_else(|| IgnoreError::BadPattern {
        pattern: cleaned.clone(),
    })?;
    let lead = tokens
        .iter()
        .take_while(|t| matches!(t, Token::Lit(_)))
        .count();
    let trail = if lead == tokens.len() {
        0
    } else {
        tokens
            .iter()
            .rev()
            .take_while(|t| matches!(t, Token::Lit(_)))
            .count()
    };
    Ok(Pattern {
        text: text.to_string(),
        exception,
        tokens,
        lead,
        trail,
        descend_key: text.to_string(),
    })
}

/// Go's `path.Clean` for slash-separated paths.
fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
                // `..` above the root of a rooted path is dropped.
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// Compiles pattern text into tokens; `None` when Go's `filepath.Match` would report
/// `ErrBadPattern` (bad class, trailing `\`) or Docker's regexp would not compile (a reversed
/// class range such as `[z-a]`).
fn compile(text: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                // Docker treats `**/` as `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i == chars.len() {
                    Token::Rest
                } else {
                    Token::DirStar
                });
            }
            '*' => {
                tokens.push(Token::Star);
                i += 1;
            }
            '?' => {
                tokens.push(Token::One);
                i += 1;
            }
            '\\' => {
                tokens.push(Token::Lit(*chars.get(i + 1)?));
                i += 2;
            }
            '[' => {
                let (token, next) = compile_class(&chars, i + 1)?;
                tokens.push(token);
                i = next;
            }
            c => {
                tokens.push(Token::Lit(c));
                i += 1;
            }
        }
    }
    Some(tokens)
}

/// Parses a class body starting just after `[`, with Go's rules: optional `^` negation (`!` is
/// an ordinary member), at least one member, `-` and `]` only when escaped, `\` escapes.
fn compile_class(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut i = start;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            i += 1;
            break;
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars[i] == '-' {
            let (h, next) = class_char(chars, i + 1)?;
            hi = h;
            i = next;
        }
        if lo > hi {
            return None;
        }
        ranges.push((lo, hi));
    }
    Some((Token::Class { negated, ranges }, i))
}

/// Go's `getEsc`: one possibly escaped class member, which something must follow.
fn class_char(chars: &[char], mut i: usize) -> Option<(char, usize)> {
    match chars.get(i) {
        None | Some('-') | Some(']') => return None,
        Some('\\') => i += 1,
        Some(_) => {}
    }
    let c = *chars.get(i)?;
    i += 1;
    if i >= chars.len() {
        return None;
    }
    Some((c, i))
}

fn lits_equal(tokens: &[Token], path: &[char]) -> bool {
    tokens
        .iter()
        .zip(path)
        .all(|(t, c)| matches!(t, Token::Lit(l) if l == c))
}

/// Whether a single-character token accepts `ch`.
fn accepts(token: &Token, ch: char) -> bool {
    match token {
        Token::Lit(c) => *c == ch,
        Token::One => ch != '/',
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= ch && ch <= hi) != *negated
        }
        Token::Star | Token::DirStar | Token::Rest => false,
    }
}

/// Whole-string match of `tokens` against `s`, by dynamic programming from the end so that
/// stars never backtrack exponentially. `next[p]` says whether the remaining tokens match
/// `s[p..]`.
fn match_tokens(tokens: &[Token], s: &[char]) -> bool {
    let n = s.len();
    let mut next = vec![false; n + 1];
    next[n] = true;
    for token in tokens.iter().rev() {
        let mut cur = vec![false; n + 1];
        match token {
            Token::Star => {
                cur[n] = next[n];
                for (p, &ch) in s.iter().enumerate().rev() {
                    cur[p] = next[p] || (ch != '/' && cur[p + 1]);
                }
            }
            Token::DirStar => {
                // Either skip, or consume up to and including some later `/`.
                let mut through_slash = false;
                cur[n] = next[n];
                for (p, &ch) in s.iter().enumerate().rev() {
                    through_slash = through_slash || (ch == '/' && next[p + 1]);
                    cur[p] = next[p] || through_slash;
                }
            }
            Token::Rest => {
                let mut any = false;
                for (slot, &rest_matches) in cur.iter_mut().zip(next.iter()).rev() {
                    any = any || rest_matches;
                    *slot = any;
                }
            }
            single => {
                for (p, &ch) in s.iter().enumerate() {
                    cur[p] = accepts(single, ch) && next[p + 1];
                }
            }
        }
        next = cur;
    }
    next[0]
}

/// What a context walker should do with a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirDecision {
    /// The directory is in the context; list it and walk into it.
    Include,
    /// The directory is excluded and nothing beneath it can come back: skip the whole tree.
    Prune,
    /// The directory is excluded (do not list it) but an exception pattern names something
    /// beneath it, so walk into it and judge each entry.
    DescendExcluded,
}

/// The patterns of one `.dockerignore`, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

impl Matcher {
    pub fn new(patterns: Vec<Pattern>) -> Matcher {
        Matcher { patterns }
    }

    /// `parse_dockerignore` then `new`.
    pub fn parse(text: &str) -> Result<Matcher, IgnoreError> {
        parse_dockerignore(text).map(Matcher::new)
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `path` (slash-separated, relative to the context root) is excluded.
    ///
    /// Patterns were checked when parsed, so this does not fail today; it stays fallible like
    /// Docker's `MatchesOrParentMatches` so that lazily checked patterns can be added later.
    pub fn matches(&self, path: &str) -> Result<bool, IgnoreError> {
        Ok(self.excluded(path))
    }

    /// Whether `path` is excluded: each pattern in turn is tried on the path and on each of its
    /// parent directories, and the last pattern that matches decides (an exception includes).
    /// The context root itself (`.`, or an empty path) is never excluded.
    pub fn excluded(&self, path: &str) -> bool {
        let cleaned = go_clean(path);
        let cleaned = cleaned.trim_start_matches('/');
        if cleaned.is_empty() || cleaned == "." {
            return false;
        }
        let chars: Vec<char> = cleaned.chars().collect();
        let parent_ends: Vec<usize> = chars
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == '/')
            .map(|(i, _)| i)
            .collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // A pattern can only flip the current answer: skip the ones that could not.
            if pattern.exception != excluded {
                continue;
            }
            let hit = pattern.matches_exact(&chars)
                || parent_ends
                    .iter()
                    .any(|&end| pattern.matches_exact(&chars[..end]));
            if hit {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Whether an exception pattern names something strictly beneath `dir`, which is the test
    /// Docker's tar walker uses before pruning an excluded directory: the exception's text must
    /// start with `dir/`. A wildcard before that point (e.g. `!**/keep` or `!*/keep`) does not
    /// count, so such exceptions cannot reach into an excluded directory, as in Docker.
    pub fn may_reinclude_under(&self, dir: &str) -> bool {
        let dir = go_clean(dir);
        let dir_slash = format!("{}/", dir.trim_start_matches('/'));
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| format!("{}/", p.descend_key).starts_with(&dir_slash))
    }

    /// What a walker should do with directory `dir` (relative to the context root).
    pub fn dir_decision(&self, dir: &str) -> DirDecision {
        if !self.excluded(dir) {
            DirDecision::Include
        } else if self.may_reinclude_under(dir) {
            DirDecision::DescendExcluded
        } else {
            DirDecision::Prune
        }
    }

    /// A matcher that also keeps `names`, the way the docker CLI keeps the Dockerfile and
    /// `.dockerignore`: for each name, in order, that is excluded so far, an exception for
    /// exactly that name is appended. Names are matched literally (the CLI would read glob
    /// characters in a Dockerfile name as a pattern); names outside the context are ignored.
    pub fn keeping(&self, names: &[&str]) -> Matcher {
        let mut kept = self.clone();
        for name in names {
            let name = go_clean(name);
            let name = name.trim_start_matches('/');
            if name.is_empty() || name == "." || name == ".." || name.starts_with("../") {
                continue;
            }
            if kept.excluded(name) {
                kept.patterns.push(Pattern::literal(name, true));
            }
        }
        kept
    }

    /// Which of `.dockerignore` and `dockerfile` the builder must delete from a received
    /// context once it has read the Dockerfile: dockerd's classic builder removes each of them
    /// that the context's own `.dockerignore` excludes, so `COPY`/`ADD` never see them even
    /// though the CLI had to send them.
    pub fn build_files_to_drop(&self, dockerfile: &str) -> Vec<String> {
        let mut drop = Vec::new();
        for name in [".dockerignore", dockerfile] {
            let name = go_clean(name);
            if self.excluded(&name) && !drop.contains(&name) {
                drop.push(name);
            }
        }
        drop
    }
}

/// Lists what the docker CLI would put in the build context tar for directory `root`.
///
/// Returns paths relative to `root`, `/`-separated, directories included, in the order of Go's
/// `filepath.Walk` (each directory's entries sorted by name, a directory before its contents).
/// Symlinks are listed as themselves and never followed. An excluded directory is skipped whole
/// unless an exception pattern names something beneath it (see [`Matcher::may_reinclude_under`]);
/// then it is walked but, like in Docker, not listed itself.
///
/// `keep` names files that are sent even when ignored. The docker CLI (`docker build`, 20.10)
/// always sends `.dockerignore` and the Dockerfile: when the ignore file excludes them it
/// appends `!.dockerignore` and `!<dockerfile>` to the patterns (a Dockerfile read from stdin
/// is not kept). Pass the same names, e.g. `&[".dockerignore", "Dockerfile"]`; they are kept
/// through appended exceptions exactly like that, see [`Matcher::keeping`]. The builder then
/// hides them again from `COPY`/`ADD`, see [`Matcher::build_files_to_drop`].
pub fn select_context_files(
    root: &Path,
    matcher: &Matcher,
    keep: &[&str],
) -> io::Result<Vec<String>> {
    let matcher = matcher.keeping(keep);
    let mut out = Vec::new();
    walk(root, "", &matcher, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, rel: &str, matcher: &Matcher, out: &mut Vec<String>) -> io::Result<()> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().into_string().map_err(|name| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file name {name:?} in {} is not UTF-8", dir.display()),
            )
        })?;
        // DirEntry::file_type does not follow symlinks, so a link to a directory is a leaf.
        let is_dir = entry.file_type()?.is_dir();
        entries.push((name, is_dir));
    }
    entries.sort();
    for (name, is_dir) in entries {
        let path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let decision = if is_dir {
            matcher.dir_decision(&path)
        } else if matcher.excluded(&path) {
            DirDecision::Prune
        } else {
            DirDecision::Include
        };
        match decision {
            DirDecision::Include => {
                out.push(path.clone());
                if is_dir {
                    walk(&dir.join(&name), &path, matcher, out)?;
                }
            }
            DirDecision::DescendExcluded => walk(&dir.join(&name), &path, matcher, out)?,
            DirDecision::Prune => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn texts(patterns: &[Pattern]) -> Vec<String> {
        patterns.iter().map(|p| p.to_string()).collect()
    }

    fn matcher(lines: &[&str]) -> Matcher {
        Matcher::parse(&lines.join("\n")).expect("patterns parse")
    }

    /// Asserts which of `paths` the patterns exclude.
    fn check(lines: &[&str], excluded: &[&str], kept: &[&str]) {
        let m = matcher(lines);
        for path in excluded {
            assert!(m.excluded(path), "{lines:?} should exclude {path:?}");
            assert_eq!(m.matches(path), Ok(true));
        }
        for path in kept {
            assert!(!m.excluded(path), "{lines:?} should keep {path:?}");
            assert_eq!(m.matches(path), Ok(false));
        }
    }

    fn bad(pattern: &str) {
        let err = parse_dockerignore(pattern).expect_err(pattern);
        assert!(
            matches!(err, IgnoreError::BadPattern { .. }),
            "{pattern:?}: {err:?}"
        );
        assert_eq!(err.to_string(), "syntax error in pattern");
    }

    // ---- reading the file ----

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let p = parse_dockerignore("# a comment\n\n   \n*.log\n#another\n\ttmp\t\n").unwrap();
        assert_eq!(texts(&p), ["*.log", "tmp"]);
    }

    #[test]
    fn hash_is_a_comment_only_in_column_one() {
        let p = parse_dockerignore("  #notcomment\n").unwrap();
        assert_eq!(texts(&p), ["#notcomment"]);
        check(&["  #notcomment"], &["#notcomment"], &["notcomment"]);
    }

    #[test]
    fn bom_and_crlf_are_tolerated() {
        let p = parse_dockerignore("\u{feff}# comment\r\nfoo\r\n!bar\r\n").unwrap();
        assert_eq!(texts(&p), ["foo", "!bar"]);
    }

    #[test]
    fn leading_slash_and_dot_slash_are_cleaned() {
        let p = parse_dockerignore("/foo/bar\n./baz\n/./qux/\n").unwrap();
        assert_eq!(texts(&p), ["foo/bar", "baz", "qux"]);
        check(
            &["/foo/bar"],
            &["foo/bar", "foo/bar/x"],
            &["foo", "x/foo/bar"],
        );
    }

    #[test]
    fn patterns_are_cleaned_like_go_filepath_clean() {
        let p = parse_dockerignore("a//b/\na/b/../c\n../x\na/./*.txt\n").unwrap();
        assert_eq!(texts(&p), ["a/b", "a/c", "../x", "a/*.txt"]);
    }

    #[test]
    fn exception_marker_allows_spaces_and_is_cleaned() {
        let p = parse_dockerignore("! /inverted/abs/path/\n!./x").unwrap();
        assert_eq!(texts(&p), ["!inverted/abs/path", "!x"]);
        assert!(p[0].is_exception());
        assert_eq!(p[0].as_str(), "inverted/abs/path");
    }

    #[test]
    fn lone_exclamation_mark_is_an_error() {
        for text in ["!", "! ", "foo\n!\n", "!/"] {
            assert_eq!(
                parse_dockerignore(text),
                Err(IgnoreError::IllegalExclusion),
                "{text:?}"
            );
        }
        assert_eq!(
            IgnoreError::IllegalExclusion.to_string(),
            "illegal exclusion pattern: \"!\""
        );
    }

    #[test]
    fn lone_slash_and_dot_exclude_nothing() {
        let p = parse_dockerignore("/\n.\n./\n").unwrap();
        assert_eq!(texts(&p), ["/", ".", "."]);
        check(&["/", ".", "./"], &[], &["foo", "a/b", ".hidden"]);
    }

    #[test]
    fn pattern_new_applies_the_same_normalisation() {
        assert_eq!(Pattern::new("  !/docs/  ").unwrap().to_string(), "!docs");
        assert_eq!(Pattern::new("   "), Err(IgnoreError::Empty));
        assert_eq!(Pattern::new("!"), Err(IgnoreError::IllegalExclusion));
    }

    #[test]
    fn malformed_patterns_are_syntax_errors() {
        for p in [
            "[", "[abc", "a[", "[]", "[]a]", "[^]", "[a-]", "[-a]", "[a-", "abc\\", "[\\", "[z-a]",
            "ok\n*[x",
        ] {
            bad(p);
        }
    }

    #[test]
    fn syntax_error_names_the_pattern() {
        let err = parse_dockerignore("good\n./bad[\n").unwrap_err();
        assert_eq!(
            err,
            IgnoreError::BadPattern {
                pattern: "bad[".to_string()
            }
        );
    }

    // ---- matching ----

    #[test]
    fn star_does_not_cross_directories() {
        check(
            &["*.md"],
            &["README.md", "a.md"],
            &["docs/a.md", "a/b/c.md", "md"],
        );
        check(
            &["*/temp*"],
            &["somedir/temporary.txt", "somedir/temp"],
            &["temp", "a/b/temp"],
        );
        check(&["*/*/temp*"], &["a/b/temporary.txt"], &["a/temp", "temp"]);
    }

    #[test]
    fn double_star_at_start_matches_at_any_depth_including_root() {
        check(
            &["**/*.md"],
            &["README.md", "docs/a.md", "a/b/c/d.md"],
            &["a.txt", "docs/a.mdx"],
        );
        check(
            &["**/foo"],
            &["foo", "a/foo", "a/b/foo", "a/b/foo/inner"],
            &["afoo", "a/xfoo", "foox"],
        );
    }

    #[test]
    fn double_star_in_the_middle_matches_zero_or_more_directories() {
        check(
            &["a/**/b"],
            &["a/b", "a/x/b", "a/x/y/b", "a/x/b/c"],
            &["ab", "a/xb", "b", "x/a/b"],
        );
        check(
            &["**/dir2/*"],
            &["dir/dir2/file", "dir2/file"],
            &["dir/dir2"],
        );
    }

    #[test]
    fn double_star_at_end_matches_everything_below_but_not_the_dir() {
        check(
            &["abc/**"],
            &["abc/def", "abc/def/ghi"],
            &["abc", "abcd", "x/abc/def"],
        );
        check(&["**"], &["file", "dir/file", ".hidden"], &["."]);
    }

    #[test]
    fn double_star_glued_to_a_name_needs_a_directory_boundary() {
        // Docker compiles `**` before more pattern to `(.*/)?`.
        check(
            &["**file"],
            &["file", "dir/file", "dir/dir/file"],
            &["dirfile"],
        );
        check(
            &["a**/*.txt"],
            &["a/file.txt", "a/dir/file.txt", "a/dir/dir/file.txt"],
            &["b/file.txt"],
        );
        check(&["**/.foo"], &[".foo", "x/.foo"], &["bar.foo"]);
    }

    #[test]
    fn a_pattern_excludes_everything_under_a_matching_directory() {
        check(
            &["foo"],
            &["foo", "foo/bar", "foo/bar/baz"],
            &["bar/foo", "food"],
        );
        check(&["foo/*"], &["foo/a", "foo/a/b/c"], &["foo"]);
        check(
            &["**/node_modules"],
            &["node_modules/x", "a/b/node_modules/c/d.js"],
            &["a/node_modules_old/x"],
        );
    }

    #[test]
    fn exception_reincludes_a_file_inside_an_excluded_directory() {
        check(
            &["docs", "!docs/README.md"],
            &["docs", "docs/other.md", "docs/sub/x"],
            &["docs/README.md"],
        );
        check(
            &["docs/", "!docs/README.md"],
            &["docs/a"],
            &["docs/README.md"],
        );
    }

    #[test]
    fn last_matching_line_wins() {
        let a = ["*.md", "!README*.md", "README-secret.md"];
        check(
            &a,
            &["x.md", "README-secret.md"],
            &["README.md", "README-1.md"],
        );
        let b = ["*.md", "README-secret.md", "!README*.md"];
        check(&b, &["x.md"], &["README.md", "README-secret.md"]);
    }

    #[test]
    fn an_exception_before_its_exclusion_has_no_effect() {
        check(&["!keep.go", "*.go"], &["keep.go", "x.go"], &[]);
        check(&["*.go", "!keep.go"], &["x.go"], &["keep.go"]);
    }

    #[test]
    fn star_then_exceptions_acts_as_an_allow_list() {
        check(
            &["*", "!src", "!Cargo.toml"],
            &["target", "target/debug/x", "README.md"],
            &["src", "src/main.rs", "src/a/b.rs", "Cargo.toml"],
        );
    }

    #[test]
    fn question_mark_is_one_non_slash_character() {
        check(
            &["temp?"],
            &["tempa", "tempb", "tempa/x"],
            &["temp", "tempab", "temp/"],
        );
        check(&["a?b"], &["axb"], &["a/b", "ab"]);
    }

    #[test]
    fn character_classes_with_ranges() {
        check(&["a[b-d]e"], &["ace", "abe", "ade"], &["ae", "aae", "aee"]);
        check(&["file[0-9a-f]"], &["file7", "filec"], &["fileg", "file"]);
    }

    #[test]
    fn caret_negates_a_class() {
        check(&["a[^b-d]e"], &["aze", "aae"], &["ace", "ae"]);
    }

    #[test]
    fn exclamation_mark_in_a_class_is_a_member_not_a_negation() {
        // Go's filepath.Match (and Docker's regexp) only know `^` for negation.
        check(&["a[!b]c"], &["a!c", "abc"], &["axc"]);
    }

    #[test]
    fn class_members_can_be_escaped_and_can_match_slash() {
        check(&["a[\\]]b"], &["a]b"], &["ab", "a\\b"]);
        check(&["a[\\-x]b"], &["a-b", "axb"], &["awb"]);
        // As in Go, only `*` and `?` refuse `/`; a class does not.
        check(&["a[/]b"], &["a/b"], &["ab"]);
        check(&["a[*]b"], &["a*b"], &["axb", "ab"]);
    }

    #[test]
    fn backslash_escapes_a_metacharacter() {
        check(&["a\\*b"], &["a*b"], &["axb", "ab"]);
        check(&["a\\?b"], &["a?b"], &["axb"]);
        check(&["a\\[b"], &["a[b"], &["ab"]);
        check(&["a\\\\"], &["a\\"], &["a"]);
    }

    #[test]
    fn regexp_characters_are_literal() {
        check(&["abc.def"], &["abc.def"], &["abcZdef", "abcdef"]);
        check(&["a+b"], &["a+b"], &["ab", "aab"]);
        check(&["(x)|{y}$^"], &["(x)|{y}$^"], &["x"]);
    }

    #[test]
    fn dot_star_matches_hidden_files_only() {
        check(&[".*"], &[".foo", ".git/config"], &["foo", "a/.foo"]);
    }

    #[test]
    fn the_context_root_is_never_excluded() {
        check(&["*", "**", "."], &["x"], &[".", "", "./"]);
    }

    #[test]
    fn paths_are_cleaned_before_matching() {
        check(
            &["foo/bar"],
            &["./foo/bar", "foo//bar/", "/foo/bar", "x/../foo/bar"],
            &[],
        );
    }

    #[test]
    fn unicode_is_matched_by_character() {
        check(
            &["caf?", "[ä-ö]x"],
            &["café", "äx", "öx"],
            &["cafe\u{301}x"],
        );
    }

    #[test]
    fn display_round_trips_through_the_parser() {
        let text = "!docs/README.md\n**/*.o\na\\*b\n[^x]?z\n";
        let first = parse_dockerignore(text).unwrap();
        let again = parse_dockerignore(
            &first
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn many_stars_on_a_deep_path_do_not_blow_up() {
        // A backtracking matcher would take exponential time here.
        let m = matcher(&["**/**/**/**/**/**/*a*a*a*a*a*b"]);
        let deep = vec!["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; 60].join("/");
        assert!(!m.excluded(&deep));
        assert!(m.excluded(&format!("{deep}/aaaaab")));
    }

    // ---- walking decisions ----

    #[test]
    fn directory_without_exceptions_is_pruned() {
        let m = matcher(&["build", "*.o"]);
        assert_eq!(m.dir_decision("build"), DirDecision::Prune);
        assert_eq!(m.dir_decision("src"), DirDecision::Include);
        assert!(!m.has_exceptions());
    }

    #[test]
    fn excluded_directory_with_an_exception_beneath_is_descended() {
        let m = matcher(&["docs", "!docs/sub/README.md"]);
        assert!(m.has_exceptions());
        assert_eq!(m.dir_decision("docs"), DirDecision::DescendExcluded);
        assert_eq!(m.dir_decision("docs/sub"), DirDecision::DescendExcluded);
        assert_eq!(m.dir_decision("docs/other"), DirDecision::Prune);
        assert!(!m.excluded("docs/sub/README.md"));
        assert!(m.excluded("docs/sub/other.md"));
    }

    #[test]
    fn exception_with_wildcard_in_the_directory_part_does_not_force_descent() {
        // Docker compares the exception text literally against `dir/`.
        let m = matcher(&["vendor", "!*/keep", "!vendor/*.txt"]);
        assert_eq!(m.dir_decision("vendor"), DirDecision::DescendExcluded);
        let m = matcher(&["vendor", "!**/keep", "!vend*/x"]);
        assert_eq!(m.dir_decision("vendor"), DirDecision::Prune);
        assert!(!m.may_reinclude_under("vendor"));
        // A sibling whose name merely starts the same way is not "beneath".
        let m = matcher(&["ab", "!abc/x"]);
        assert_eq!(m.dir_decision("ab"), DirDecision::Prune);
    }

    #[test]
    fn keeping_appends_exceptions_only_for_excluded_names() {
        let m = matcher(&["Dockerfile", "*.md"]).keeping(&[".dockerignore", "Dockerfile"]);
        assert_eq!(texts(m.patterns()), ["Dockerfile", "*.md", "!Dockerfile"]);
        let m = matcher(&["*"]).keeping(&[".dockerignore", "dir/Docker[1]file"]);
        assert_eq!(
            texts(m.patterns()),
            ["*", "!.dockerignore", "!dir/Docker\\[1]file"]
        );
        assert!(!m.excluded("dir/Docker[1]file"));
        assert!(m.excluded("dir/Docker1file"));
        assert_eq!(m.dir_decision("dir"), DirDecision::DescendExcluded);
    }

    #[test]
    fn builder_drops_ignored_build_files_after_reading_them() {
        let m = matcher(&["Dockerfile*", ".dockerignore"]);
        assert_eq!(
            m.build_files_to_drop("Dockerfile.dev"),
            [".dockerignore", "Dockerfile.dev"]
        );
        assert!(matcher(&["*.md"])
            .build_files_to_drop("Dockerfile")
            .is_empty());
    }

    // ---- walking a real directory ----

    /// A scratch directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "wharf-ignore-{tag}-{}-{nanos}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, rel: &str) {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, rel).unwrap();
        }

        fn dir(&self, rel: &str) {
            fs::create_dir_all(self.0.join(rel)).unwrap();
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn walk_without_dockerignore_lists_everything_in_walk_order() {
        let s = Scratch::new("all");
        for f in ["b.txt", "a/x", "a-b", "a/c/d", "Dockerfile"] {
            s.file(f);
        }
        s.dir("empty");
        let got = select_context_files(&s.0, &Matcher::default(), &[]).unwrap();
        assert_eq!(
            got,
            [
                "Dockerfile",
                "a",
                "a/c",
                "a/c/d",
                "a/x",
                "a-b",
                "b.txt",
                "empty"
            ]
        );
    }

    #[test]
    fn walk_applies_patterns_and_exceptions() {
        let s = Scratch::new("rules");
        for f in [
            "Dockerfile",
            ".dockerignore",
            "README.md",
            "src/main.rs",
            "src/notes.md",
            "docs/guide.md",
            "docs/README.md",
            "target/debug/app",
            "node_modules/pkg/index.js",
        ] {
            s.file(f);
        }
        let m = matcher(&["*.md", "docs", "!docs/README.md", "target", "node_modules"]);
        let got = select_context_files(&s.0, &m, &[]).unwrap();
        // `docs` is excluded but descended for its exception; it is not listed itself.
        assert_eq!(
            got,
            [
                ".dockerignore",
                "Dockerfile",
                "docs/README.md",
                "src",
                "src/main.rs",
                "src/notes.md"
            ]
        );
    }

    #[test]
    fn walk_always_keeps_the_dockerfile_and_dockerignore() {
        let s = Scratch::new("keep");
        for f in [".dockerignore", "build/Dockerfile", "build/other", "app.py"] {
            s.file(f);
        }
        let m = matcher(&[".dockerignore", "build"]);
        let without = select_context_files(&s.0, &m, &[]).unwrap();
        assert_eq!(without, ["app.py"]);
        let with = select_context_files(&s.0, &m, &[".dockerignore", "build/Dockerfile"]).unwrap();
        assert_eq!(with, [".dockerignore", "app.py", "build/Dockerfile"]);
    }

    #[cfg(unix)]
    #[test]
    fn walk_lists_symlinks_without_following_them() {
        use std::os::unix::fs::symlink;
        let s = Scratch::new("links");
        s.file("real/inside.txt");
        s.file("real/secret.key");
        symlink(s.0.join("real"), s.0.join("link-to-dir")).unwrap();
        symlink("does-not-exist", s.0.join("dangling")).unwrap();
        symlink(s.0.join("real/secret.key"), s.0.join("key-link")).unwrap();
        let m = matcher(&["**/*.key"]);
        let got = select_context_files(&s.0, &m, &[]).unwrap();
        // The link to a directory is a leaf, nothing is listed through it; the link named
        // `key-link` is judged by its own name, not its target's.
        assert_eq!(
            got,
            [
                "dangling",
                "key-link",
                "link-to-dir",
                "real",
                "real/inside.txt"
            ]
        );
    }

    #[test]
    fn walk_of_a_missing_root_is_an_error() {
        let s = Scratch::new("missing");
        let missing = s.0.join("nope");
        let err = select_context_files(&missing, &Matcher::default(), &[]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
