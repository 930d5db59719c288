//! The Dockerfile front end: parser directives, lines, heredocs, instructions, and variable
//! substitution as Docker's classic builder applies them.
//!
//! Three layers, as in Docker:
//! 1. [`parse`] turns text into [`Node`]s: directives, comments, continuations, heredocs, builder
//!    flags and each keyword's argument rule (JSON array or shell form, words, `k=v` lists).
//!    Errors here read `failed to parse Dockerfile: ...` (dockerd's wording).
//! 2. [`instructions()`] types the nodes into meta ARGs and [`Stage`]s of [`Command`]s, checking
//!    argument counts and flags. Errors read `dockerfile parse error line N: ...`.
//! 3. [`expand`] substitutes variables; which instructions get it is [`expands`], and
//!    [`Instruction::expand`] applies it per instruction exactly where Docker does.

pub mod expand;
pub mod instructions;
pub mod parser;

#[cfg(test)]
mod tests;

use std::fmt;

pub use expand::{env_list_lookup, expand_word, expand_words, expands, ExpandError};
pub use instructions::{
    instructions, parse_command, Command, CommandLine, CopySpec, Healthcheck, Instruction, Plan,
    Run, Stage, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_RETRIES, DEFAULT_HEALTH_TIMEOUT,
    MIN_HEALTH_DURATION,
};
pub use parser::{parse, parse_named, Directive, Dockerfile, Flag, Heredoc, Node};
pub(crate) use wharf_bus::error::go_quote;

/// Which stage of reading produced an error; it decides how dockerd words the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The file has zero bytes.
    Empty,
    /// The line parser rejected the text (directives, JSON with non-strings, ENV/LABEL forms,
    /// unterminated heredoc, no instructions at all).
    Syntax,
    /// An instruction's arguments or flags are wrong, or the keyword is unknown.
    Instruction,
    /// The instructions are valid but out of place (a command before any FROM).
    Structure,
}

/// A Dockerfile error with its location. `Display` gives dockerd's full message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ParseErrorKind,
    /// Docker's bare message, e.g. `unknown instruction: FOO`.
    pub detail: String,
    /// 1-based first line of the offending instruction (0 when not tied to a line).
    pub start_line: usize,
    /// 1-based last line of the offending instruction.
    pub end_line: usize,
    /// The Dockerfile name used in `Empty` and `Syntax` messages.
    pub file_name: String,
}

impl ParseError {
    pub(crate) fn empty(name: &str) -> Self {
        ParseError {
            kind: ParseErrorKind::Empty,
            detail: format!("the Dockerfile ({name}) cannot be empty"),
            start_line: 0,
            end_line: 0,
            file_name: name.to_string(),
        }
    }

    pub(crate) fn syntax(name: &str, detail: String, start: usize, end: usize) -> Self {
        ParseError {
            kind: ParseErrorKind::Syntax,
            detail,
            start_line: start,
            end_line: end.max(start),
            file_name: name.to_string(),
        }
    }

    pub(crate) fn instruction(detail: String, start: usize, end: usize) -> Self {
        ParseError {
            kind: ParseErrorKind::Instruction,
            detail,
            start_line: start,
            end_line: end.max(start),
            file_name: String::new(),
        }
    }

    pub(crate) fn structure(detail: String, start: usize, end: usize) -> Self {
        ParseError {
            kind: ParseErrorKind::Structure,
            detail,
            start_line: start,
            end_line: end.max(start),
            file_name: String::new(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ParseErrorKind::Empty | ParseErrorKind::Structure => f.write_str(&self.detail),
            ParseErrorKind::Syntax => {
                write!(f, "failed to parse {}: {}", self.file_name, self.detail)
            }
            ParseErrorKind::Instruction => {
                write!(
                    f,
                    "dockerfile parse error line {}: {}",
                    self.start_line, self.detail
                )
            }
        }
    }
}

impl std::error::Error for ParseError {}
