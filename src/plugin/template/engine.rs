//! The generic template engine: Go `text/template` syntax (lexing, parsing, Go's printing of values and its
//! builtins) rendered over a [`RenderContext`]. It reads no file itself: `checksum` and `hashFiles` go through
//! the context's [`TemplateFiles`], and drone-cache's own parts (metadata, file functions, Go's glob, the
//! fallback prefix) live in [`super::drone`].

use std::fmt::{self, Write as _};
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use super::drone::{self, HashFilesError, Metadata, Platform, TemplateFiles};

/// Everything a render reads besides the template: the metadata, the files that `checksum` and `hashFiles`
/// read, the clock for `epoch`, and the platform for `arch` and `os`.
#[derive(Debug, Clone)]
pub struct RenderContext<'a> {
    /// The build metadata.
    pub metadata: &'a Metadata,
    /// The files `checksum` and `hashFiles` read; relative paths start from the workspace (drone-cache uses
    /// its working directory), as [`crate::fs::workspace::WorkspaceFiles`] does.
    pub files: &'a dyn TemplateFiles,
    /// The time `epoch` renders.
    pub now: SystemTime,
    /// The names `arch` and `os` render.
    pub platform: Platform,
}

impl<'a> RenderContext<'a> {
    /// A context with the current time and the host platform.
    pub fn new(metadata: &'a Metadata, files: &'a dyn TemplateFiles) -> Self {
        Self { metadata, files, now: SystemTime::now(), platform: Platform::host() }
    }
}

/// A place in the template source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Byte offset from the start of the template.
    pub offset: usize,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Position {
    fn in_source(source: &str, offset: usize) -> Self {
        let offset = offset.min(source.len());
        let before = &source[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Self { offset, line: before.matches('\n').count() + 1, column: before[line_start..].chars().count() + 1 }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A template that does not parse, or that fails to render.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template is malformed.
    #[error("cache key template, {position}: {message}")]
    Syntax {
        /// Where.
        position: Position,
        /// What was found and what was expected.
        message: String,
    },
    /// Go template syntax that chunkcache does not implement.
    #[error("cache key template, {position}: {construct} is not supported in cache keys; {hint}")]
    Unsupported {
        /// Where.
        position: Position,
        /// The construct, such as "{{range}}".
        construct: String,
        /// What to write instead.
        hint: String,
    },
    /// A field that the value has not.
    #[error("cache key template, {position}: can't evaluate field {field} in type {type_name}; {hint}")]
    MissingField {
        /// Where.
        position: Position,
        /// The field asked for.
        field: String,
        /// Go's name of the type it was asked of, such as `metadata.Commit`.
        type_name: &'static str,
        /// The fields that exist, or a close match.
        hint: String,
    },
    /// A function called with the wrong arguments, or a value used as a function.
    #[error("cache key template, {position}: {function}: {message}")]
    Call {
        /// Where.
        position: Position,
        /// The function or value.
        function: String,
        /// What is wrong.
        message: String,
    },
    /// `checksum` could not read its file.
    #[error(
        "cache key template, {position}: checksum {path:?} cannot read {}: {source}; the path is relative to \
         the workspace, so check the path in cache_key and that this step runs after the file is checked out",
        resolved.display()
    )]
    Checksum {
        /// Where.
        position: Position,
        /// The path as written in the template.
        path: String,
        /// The file that was read.
        resolved: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// `hashFiles` matched a file it could not read.
    #[error("cache key template, {position}: hashFiles {pattern:?} matched {}, which cannot be read: {source}", resolved.display())]
    HashFiles {
        /// Where.
        position: Position,
        /// The pattern.
        pattern: String,
        /// The matched file.
        resolved: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// A malformed `hashFiles` pattern.
    #[error(
        "cache key template, {position}: hashFiles {pattern:?} is not a valid pattern ({reason}); patterns use \
         Go's filepath.Glob syntax: * and ? within one folder, [abc] for a set, \\ to escape"
    )]
    BadPattern {
        /// Where.
        position: Position,
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Renders `template` with the current time and the host platform.
///
/// # Errors
/// [`TemplateError`] when the template does not parse, names a field the metadata lacks, or when `checksum`
/// or `hashFiles` cannot read a file.
pub fn render(template: &str, metadata: &Metadata, files: &dyn TemplateFiles) -> Result<String, TemplateError> {
    Template::parse(template)?.render(&RenderContext::new(metadata, files))
}

/// A parsed cache-key template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    pub(super) nodes: Vec<Node>,
}

impl Template {
    /// Parses a template, checking its syntax and that every function it calls exists.
    ///
    /// # Errors
    /// [`TemplateError::Syntax`] or [`TemplateError::Unsupported`], with the line and column.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let segments = lex(source)?;
        let mut parser = Parser { source, segments: segments.into_iter() };
        let (nodes, stop) = parser.parse_list()?;
        match stop {
            Stop::Eof => Ok(Self { source: source.to_owned(), nodes }),
            Stop::End { offset } => Err(syntax(source, offset, "unexpected {{end}}: no {{if}} or {{with}} is open")),
            Stop::Else { offset, .. } => {
                Err(syntax(source, offset, "unexpected {{else}}: no {{if}} or {{with}} is open"))
            }
        }
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template.
    ///
    /// # Errors
    /// [`TemplateError`] when the template names a field the metadata lacks, calls a function with the wrong
    /// arguments, or when `checksum` or `hashFiles` cannot read a file.
    pub fn render(&self, context: &RenderContext<'_>) -> Result<String, TemplateError> {
        let evaluator = Evaluator::new(self, context);
        let mut out = String::new();
        evaluator.nodes(&self.nodes, &evaluator.root, &mut out)?;
        Ok(out)
    }
}

fn syntax(source: &str, offset: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Syntax { position: Position::in_source(source, offset), message: message.into() }
}

fn unsupported(source: &str, offset: usize, construct: impl Into<String>, hint: impl Into<String>) -> TemplateError {
    TemplateError::Unsupported {
        position: Position::in_source(source, offset),
        construct: construct.into(),
        hint: hint.into(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Lexing: the source is cut into text and actions; each action into tokens.

/// Go's space characters, which trim markers remove and which separate tokens.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `.`
    Dot,
    /// `.Name`
    Field(String),
    /// `$` or `$name`
    Variable(String),
    /// A function name or keyword.
    Identifier(String),
    Str(String),
    Int(i64),
    Bool(bool),
    Nil,
    Pipe,
    LeftParen,
    RightParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    offset: usize,
    /// Whether whitespace (or the action's start) comes right before it: `.A.B` is one chain, `.A .B` two
    /// operands.
    spaced: bool,
}

#[derive(Debug)]
enum Segment {
    Text(String),
    Action { tokens: Vec<Token>, offset: usize },
}

/// Where a right delimiter starts at `at`: the offset after it, and whether it trims (` -}}`).
fn right_delimiter(source: &str, at: usize) -> Option<(usize, bool)> {
    let rest = &source[at..];
    let mut chars = rest.chars();
    if chars.next().is_some_and(is_space) && rest[1..].starts_with("-}}") {
        return Some((at + 4, true));
    }
    rest.starts_with("}}").then_some((at + 2, false))
}

fn lex(source: &str) -> Result<Vec<Segment>, TemplateError> {
    let mut segments = Vec::new();
    let mut at = 0;
    let mut trim_next_text = false;
    loop {
        let Some(found) = source[at..].find("{{") else {
            let mut text = &source[at..];
            if trim_next_text {
                text = text.trim_start_matches(is_space);
            }
            if !text.is_empty() {
                segments.push(Segment::Text(text.to_owned()));
            }
            return Ok(segments);
        };
        let open = at + found;
        let mut text = &source[at..open];
        if trim_next_text {
            text = text.trim_start_matches(is_space);
        }
        let after_open = &source[open + 2..];
        let trim_left = after_open.starts_with('-') && after_open[1..].chars().next().is_some_and(is_space);
        if trim_left {
            text = text.trim_end_matches(is_space);
        }
        if !text.is_empty() {
            segments.push(Segment::Text(text.to_owned()));
        }
        let content = open + 2 + if trim_left { 2 } else { 0 };

        if source[content..].starts_with("/*") {
            let Some(close) = source[content + 2..].find("*/") else {
                return Err(syntax(source, open, "unclosed comment: /* has no matching */"));
            };
            let after_comment = content + 2 + close + 2;
            let Some((end, trim)) = right_delimiter(source, after_comment) else {
                return Err(syntax(
                    source,
                    after_comment,
                    "a comment must fill its action: write {{/* … */}}, with }} right after */",
                ));
            };
            at = end;
            trim_next_text = trim;
            continue;
        }

        let (tokens, end, trim) = lex_action(source, content, open)?;
        segments.push(Segment::Action { tokens, offset: open });
        at = end;
        trim_next_text = trim;
    }
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Lexes one action from `start` (after `{{` and any trim marker) to its `}}`. Returns the tokens, the offset
/// after the delimiter and whether it trims.
fn lex_action(source: &str, start: usize, open: usize) -> Result<(Vec<Token>, usize, bool), TemplateError> {
    let mut tokens = Vec::new();
    let mut at = start;
    let mut spaced = true;
    let mut parens: Vec<usize> = Vec::new();
    loop {
        if let Some((end, trim)) = right_delimiter(source, at) {
            if let Some(&unclosed) = parens.last() {
                return Err(syntax(source, unclosed, "this ( has no matching )"));
            }
            return Ok((tokens, end, trim));
        }
        let Some(c) = source[at..].chars().next() else {
            return Err(syntax(source, open, "unclosed action: this {{ has no matching }}"));
        };
        if is_space(c) {
            at += c.len_utf8();
            spaced = true;
            continue;
        }
        let token_start = at;
        let next = source[at + c.len_utf8()..].chars().next();
        let tok = match c {
            '|' => {
                at += 1;
                Tok::Pipe
            }
            '(' => {
                parens.push(at);
                at += 1;
                Tok::LeftParen
            }
            ')' => {
                if parens.pop().is_none() {
                    return Err(syntax(source, at, "unexpected ): no ( is open"));
                }
                at += 1;
                Tok::RightParen
            }
            ',' => {
                at += 1;
                Tok::Comma
            }
            ':' if next == Some('=') => {
                at += 2;
                Tok::Declare
            }
            '=' => {
                at += 1;
                Tok::Assign
            }
            '"' => {
                let (value, end) = lex_string(source, at)?;
                at = end;
                Tok::Str(value)
            }
            '`' => {
                let Some(close) = source[at + 1..].find('`') else {
                    return Err(syntax(source, at, "unterminated raw string: this ` has no matching `"));
                };
                let value = source[at + 1..at + 1 + close].replace('\r', "");
                at += close + 2;
                Tok::Str(value)
            }
            '\'' => {
                return Err(unsupported(source, at, "a character constant", "write a string in double quotes instead"));
            }
            '$' => {
                let name_len = source[at + 1..].find(|c: char| !is_alphanumeric(c)).unwrap_or(source.len() - at - 1);
                let name = source[at + 1..at + 1 + name_len].to_owned();
                at += 1 + name_len;
                Tok::Variable(name)
            }
            '.' if !next.is_some_and(|c| c.is_ascii_digit()) => {
                let name_len = source[at + 1..].find(|c: char| !is_alphanumeric(c)).unwrap_or(source.len() - at - 1);
                let name = source[at + 1..at + 1 + name_len].to_owned();
                at += 1 + name_len;
                if name.is_empty() { Tok::Dot } else { Tok::Field(name) }
            }
            '+' | '-' | '.' | '0'..='9' => {
                let (value, end) = lex_number(source, at)?;
                at = end;
                Tok::Int(value)
            }
            c if is_alphanumeric(c) => {
                let len = source[at..].find(|c: char| !is_alphanumeric(c)).unwrap_or(source.len() - at);
                let word = &source[at..at + len];
                at += len;
                match word {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    _ => Tok::Identifier(word.to_owned()),
                }
            }
            other => {
                return Err(syntax(source, at, format!("unexpected {other:?} in action")));
            }
        };
        // As in Go, a name must be followed by a space, punctuation or the end of the action.
        if matches!(tok, Tok::Dot | Tok::Field(_) | Tok::Variable(_) | Tok::Identifier(_))
            && let Some(after) = source[at..].chars().next()
            && !is_space(after)
            && !matches!(after, '.' | ',' | '|' | ':' | ')' | '(')
            && !source[at..].starts_with("}}")
        {
            return Err(syntax(source, at, format!("unexpected {after:?} after {:?}", &source[token_start..at])));
        }
        tokens.push(Token { tok, offset: token_start, spaced });
        spaced = false;
    }
}

/// Lexes a double-quoted string with Go's escapes, from the opening quote at `start`.
fn lex_string(source: &str, start: usize) -> Result<(String, usize), TemplateError> {
    let mut value = String::new();
    let mut chars = source[start + 1..].char_indices();
    let unterminated = || syntax(source, start, "unterminated string: this \" has no matching \"");
    while let Some((index, c)) = chars.next() {
        let at = start + 1 + index;
        match c {
            '"' => return Ok((value, at + 1)),
            '\n' => return Err(unterminated()),
            '\\' => {
                let Some((_, escape)) = chars.next() else {
                    return Err(unterminated());
                };
                let simple = match escape {
                    'a' => Some('\u{7}'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\u{b}'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    _ => None,
                };
                if let Some(c) = simple {
                    value.push(c);
                    continue;
                }
                let (digits, radix) = match escape {
                    'x' => (2, 16),
                    'u' => (4, 16),
                    'U' => (8, 16),
                    '0'..='7' => (2, 8),
                    _ => {
                        return Err(syntax(source, at, format!("unknown escape sequence \\{escape} in string")));
                    }
                };
                let mut code = if radix == 8 { escape.to_digit(8).unwrap_or(0) } else { 0 };
                for _ in 0..digits {
                    let digit = chars.next().and_then(|(_, d)| d.to_digit(radix));
                    let Some(digit) = digit else {
                        return Err(syntax(source, at, format!("malformed escape sequence \\{escape} in string")));
                    };
                    code = code * radix + digit;
                }
                if matches!(escape, 'x' | '0'..='7') && code > 0x7f {
                    return Err(unsupported(
                        source,
                        at,
                        "a byte escape above \\x7f",
                        "it would make the key invalid UTF-8; write the character itself or use \\u",
                    ));
                }
                let Some(c) = char::from_u32(code) else {
                    return Err(syntax(source, at, format!("escape sequence \\{escape} is not a valid character")));
                };
                value.push(c);
            }
            c => value.push(c),
        }
    }
    Err(unterminated())
}

/// Lexes a number from `start`. Integers in Go's notations work; floats and complex numbers are refused.
fn lex_number(source: &str, start: usize) -> Result<(i64, usize), TemplateError> {
    let bytes = source.as_bytes();
    let mut end = start;
    if matches!(bytes.get(end), Some(b'+' | b'-')) {
        end += 1;
    }
    while let Some(&b) = bytes.get(end) {
        let exponent_sign = matches!(b, b'+' | b'-') && matches!(bytes[end - 1], b'e' | b'E' | b'p' | b'P');
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || exponent_sign {
            end += 1;
        } else {
            break;
        }
    }
    let text = &source[start..end];
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let body = body.replace('_', "");
    let lower = body.to_ascii_lowercase();
    let parsed = if let Some(hex) = lower.strip_prefix("0x") {
        i64::from_str_radix(hex, 16)
    } else if let Some(binary) = lower.strip_prefix("0b") {
        i64::from_str_radix(binary, 2)
    } else if let Some(octal) = lower.strip_prefix("0o") {
        i64::from_str_radix(octal, 8)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|b| b.is_ascii_digit()) {
        i64::from_str_radix(&lower[1..], 8)
    } else if !lower.is_empty() && lower.bytes().all(|b| b.is_ascii_digit()) {
        lower.parse()
    } else if !lower.is_empty()
        && lower.bytes().any(|b| b.is_ascii_digit())
        && lower.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'p' | b'x' | b'i' | b'+' | b'-'))
    {
        return Err(unsupported(
            source,
            start,
            format!("the number {text}"),
            "only integers are supported; write other numbers as strings",
        ));
    } else {
        return Err(syntax(source, start, format!("bad number syntax: {text:?}")));
    };
    let value = parsed.map_err(|_| syntax(source, start, format!("bad number syntax or out of range: {text:?}")))?;
    Ok((if negative { -value } else { value }, end))
}

// ---------------------------------------------------------------------------------------------------------
// Parsing.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Checksum,
    HashFiles,
    Epoch,
    Arch,
    Os,
    And,
    Or,
    Not,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Len,
    Print,
    Printf,
    Println,
    Html,
    Urlquery,
}

impl Function {
    const ALL: &'static [Self] = &[
        Self::Checksum,
        Self::HashFiles,
        Self::Epoch,
        Self::Arch,
        Self::Os,
        Self::And,
        Self::Or,
        Self::Not,
        Self::Eq,
        Self::Ne,
        Self::Lt,
        Self::Le,
        Self::Gt,
        Self::Ge,
        Self::Len,
        Self::Print,
        Self::Printf,
        Self::Println,
        Self::Html,
        Self::Urlquery,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Checksum => "checksum",
            Self::HashFiles => "hashFiles",
            Self::Epoch => "epoch",
            Self::Arch => "arch",
            Self::Os => "os",
            Self::And => "and",
            Self::Or => "or",
            Self::Not => "not",
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Lt => "lt",
            Self::Le => "le",
            Self::Gt => "gt",
            Self::Ge => "ge",
            Self::Len => "len",
            Self::Print => "print",
            Self::Printf => "printf",
            Self::Println => "println",
            Self::Html => "html",
            Self::Urlquery => "urlquery",
        }
    }

    fn lookup(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|function| function.name() == name)
    }

    /// Whether the result changes while the build's metadata stays the same: the parts a restore prefix stops
    /// before.
    fn is_volatile(self) -> bool {
        matches!(self, Self::Checksum | Self::HashFiles | Self::Epoch)
    }
}

/// Go builtins that exist but that nothing in the metadata can use.
const UNSUPPORTED_BUILTINS: &[&str] = &["index", "slice", "call", "js"];

const FUNCTION_LIST: &str = "checksum, hashFiles, epoch, arch, os, and Go's print, printf, println, len, eq, ne, \
                             lt, le, gt, ge, and, or, not, html and urlquery";

#[derive(Debug, Clone)]
pub(super) enum Node {
    Text(String),
    Action(Pipeline),
    /// `{{if}}`/`{{with}}` with any `{{else if}}`/`{{else with}}` branches, then the `{{else}}` part.
    Branches {
        branches: Vec<Branch>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BranchKind {
    If,
    With,
}

#[derive(Debug, Clone)]
pub(super) struct Branch {
    kind: BranchKind,
    pipeline: Pipeline,
    body: Vec<Node>,
}

#[derive(Debug, Clone)]
pub(super) struct Pipeline {
    commands: Vec<Command>,
}

#[derive(Debug, Clone)]
struct Command {
    offset: usize,
    operands: Vec<Operand>,
}

#[derive(Debug, Clone)]
struct Operand {
    offset: usize,
    term: Term,
    /// Fields looked up on the term, in order: `.Commit.Author.Name` is `Dot` with three fields.
    fields: Vec<String>,
}

#[derive(Debug, Clone)]
enum Term {
    Dot,
    Root,
    Function(Function),
    Str(String),
    Int(i64),
    Bool(bool),
    Pipeline(Box<Pipeline>),
}

impl Node {
    pub(super) fn is_volatile(&self) -> bool {
        match self {
            Self::Text(_) => false,
            Self::Action(pipeline) => pipeline.is_volatile(),
            Self::Branches { branches, otherwise } => {
                branches.iter().any(|branch| branch.pipeline.is_volatile() || branch.body.iter().any(Self::is_volatile))
                    || otherwise.iter().any(Self::is_volatile)
            }
        }
    }
}

impl Pipeline {
    fn is_volatile(&self) -> bool {
        self.commands.iter().flat_map(|command| &command.operands).any(|operand| match &operand.term {
            Term::Function(function) => function.is_volatile(),
            Term::Pipeline(inner) => inner.is_volatile(),
            _ => false,
        })
    }
}

/// What ended a list of nodes.
enum Stop {
    Eof,
    End { offset: usize },
    Else { offset: usize, chained: Option<(BranchKind, Pipeline)> },
}

/// What one action is.
enum ActionKind {
    Pipeline(Pipeline),
    Open(BranchKind, Pipeline),
    Else(Option<(BranchKind, Pipeline)>),
    End,
}

struct Parser<'s> {
    source: &'s str,
    segments: std::vec::IntoIter<Segment>,
}

/// A cursor over the tokens of one action.
struct Cursor<'t> {
    tokens: &'t [Token],
    index: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.index)
    }

    fn next(&mut self) -> Option<&Token> {
        let token = self.tokens.get(self.index);
        self.index += 1;
        token
    }
}

impl Parser<'_> {
    fn parse_list(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(segment) = self.segments.next() {
            let (tokens, offset) = match segment {
                Segment::Text(text) => {
                    nodes.push(Node::Text(text));
                    continue;
                }
                Segment::Action { tokens, offset } => (tokens, offset),
            };
            match self.parse_action(&tokens, offset)? {
                ActionKind::Pipeline(pipeline) => nodes.push(Node::Action(pipeline)),
                ActionKind::Open(kind, pipeline) => nodes.push(self.parse_branches(kind, pipeline, offset)?),
                ActionKind::Else(chained) => return Ok((nodes, Stop::Else { offset, chained })),
                ActionKind::End => return Ok((nodes, Stop::End { offset })),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    fn parse_branches(&mut self, kind: BranchKind, pipeline: Pipeline, open: usize) -> Result<Node, TemplateError> {
        let keyword = |kind| if kind == BranchKind::If { "{{if}}" } else { "{{with}}" };
        let mut branches = Vec::new();
        let mut current = (kind, pipeline);
        loop {
            let (body, stop) = self.parse_list()?;
            branches.push(Branch { kind: current.0, pipeline: current.1, body });
            match stop {
                Stop::End { .. } => {
                    return Ok(Node::Branches { branches, otherwise: Vec::new() });
                }
                Stop::Eof => {
                    return Err(syntax(
                        self.source,
                        open,
                        format!("this {} has no matching {{{{end}}}}", keyword(kind)),
                    ));
                }
                Stop::Else { chained: Some(next), .. } => current = next,
                Stop::Else { chained: None, .. } => {
                    let (otherwise, stop) = self.parse_list()?;
                    return match stop {
                        Stop::End { .. } => Ok(Node::Branches { branches, otherwise }),
                        Stop::Else { offset, .. } => {
                            Err(syntax(self.source, offset, "unexpected {{else}} after the final {{else}}"))
                        }
                        Stop::Eof => Err(syntax(
                            self.source,
                            open,
                            format!("this {} has no matching {{{{end}}}}", keyword(kind)),
                        )),
                    };
                }
            }
        }
    }

    fn parse_action(&self, tokens: &[Token], offset: usize) -> Result<ActionKind, TemplateError> {
        let source = self.source;
        let Some(first) = tokens.first() else {
            return Err(syntax(source, offset, "empty action: {{ }} needs a value, such as {{ .Commit.Branch }}"));
        };
        let rest = &tokens[1..];
        if let Tok::Identifier(word) = &first.tok {
            match word.as_str() {
                "if" | "with" => {
                    let kind = if word == "if" { BranchKind::If } else { BranchKind::With };
                    if rest.is_empty() {
                        return Err(syntax(source, first.offset, format!("missing value for {word}")));
                    }
                    return Ok(ActionKind::Open(kind, self.parse_pipeline_tokens(rest)?));
                }
                "else" => {
                    let Some(second) = rest.first() else {
                        return Ok(ActionKind::Else(None));
                    };
                    let kind = match &second.tok {
                        Tok::Identifier(word) if word == "if" => BranchKind::If,
                        Tok::Identifier(word) if word == "with" => BranchKind::With,
                        _ => {
                            return Err(syntax(
                                source,
                                second.offset,
                                "expected {{else}}, {{else if …}} or {{else with …}}",
                            ));
                        }
                    };
                    if rest.len() < 2 {
                        return Err(syntax(source, second.offset, "missing value after else"));
                    }
                    return Ok(ActionKind::Else(Some((kind, self.parse_pipeline_tokens(&rest[1..])?))));
                }
                "end" => {
                    if let Some(extra) = rest.first() {
                        return Err(syntax(source, extra.offset, "unexpected text in {{end}}"));
                    }
                    return Ok(ActionKind::End);
                }
                "range" | "define" | "template" | "block" | "break" | "continue" => {
                    return Err(unsupported(
                        source,
                        first.offset,
                        format!("{{{{{word}}}}}"),
                        "cache keys can use fields, functions, pipelines, {{if}} and {{with}}",
                    ));
                }
                _ => {}
            }
        }
        if matches!(first.tok, Tok::Variable(_))
            && rest.first().is_some_and(|token| matches!(token.tok, Tok::Declare | Tok::Assign))
        {
            return Err(unsupported(
                source,
                first.offset,
                "declaring a variable",
                "write the expression where it is needed",
            ));
        }
        Ok(ActionKind::Pipeline(self.parse_pipeline_tokens(tokens)?))
    }

    fn parse_pipeline_tokens(&self, tokens: &[Token]) -> Result<Pipeline, TemplateError> {
        let mut cursor = Cursor { tokens, index: 0 };
        let offset = tokens.first().map_or(0, |token| token.offset);
        let pipeline = self.parse_pipeline(&mut cursor, offset)?;
        if let Some(token) = cursor.peek() {
            return Err(syntax(self.source, token.offset, "unexpected token after the pipeline"));
        }
        Ok(pipeline)
    }

    /// Parses commands separated by `|`, up to the end of the tokens or an unmatched `)`.
    fn parse_pipeline(&self, cursor: &mut Cursor<'_>, offset: usize) -> Result<Pipeline, TemplateError> {
        let mut commands = Vec::new();
        let mut command_offset = offset;
        loop {
            let command = self.parse_command(cursor, command_offset)?;
            commands.push(command);
            match cursor.peek().map(|token| (&token.tok, token.offset)) {
                Some((Tok::Pipe, pipe)) => {
                    cursor.next();
                    command_offset = cursor.peek().map_or(pipe, |token| token.offset);
                }
                _ => return Ok(Pipeline { commands }),
            }
        }
    }

    fn parse_command(&self, cursor: &mut Cursor<'_>, offset: usize) -> Result<Command, TemplateError> {
        let mut operands = Vec::new();
        while let Some(token) = cursor.peek() {
            match token.tok {
                Tok::Pipe | Tok::RightParen => break,
                _ => operands.push(self.parse_operand(cursor)?),
            }
        }
        if operands.is_empty() {
            return Err(syntax(
                self.source,
                offset,
                "missing value for command: a | or ( must be followed by a value or function",
            ));
        }
        Ok(Command { offset, operands })
    }

    fn parse_operand(&self, cursor: &mut Cursor<'_>) -> Result<Operand, TemplateError> {
        let source = self.source;
        let Some(token) = cursor.next() else {
            return Err(syntax(source, source.len(), "expected a value"));
        };
        let offset = token.offset;
        let mut fields = Vec::new();
        let term = match &token.tok {
            Tok::Dot => Term::Dot,
            Tok::Field(name) => {
                fields.push(name.clone());
                Term::Dot
            }
            Tok::Variable(name) if name.is_empty() => Term::Root,
            Tok::Variable(name) => {
                return Err(syntax(
                    source,
                    offset,
                    format!("undefined variable \"${name}\": only $, the whole metadata, exists"),
                ));
            }
            Tok::Identifier(name) => match Function::lookup(name) {
                Some(function) => Term::Function(function),
                None if UNSUPPORTED_BUILTINS.contains(&name.as_str()) => {
                    return Err(unsupported(
                        source,
                        offset,
                        format!("the function {name:?}"),
                        format!("cache keys have {FUNCTION_LIST}"),
                    ));
                }
                None if matches!(
                    name.as_str(),
                    "if" | "else" | "end" | "with" | "range" | "define" | "template" | "block" | "break" | "continue"
                ) =>
                {
                    return Err(syntax(
                        source,
                        offset,
                        format!("unexpected {{{{{name}}}}} inside an action: it must start its own {{{{ }}}}"),
                    ));
                }
                None => {
                    return Err(syntax(
                        source,
                        offset,
                        format!("function {name:?} not defined; cache keys have {FUNCTION_LIST}"),
                    ));
                }
            },
            Tok::Str(value) => Term::Str(value.clone()),
            Tok::Int(value) => Term::Int(*value),
            Tok::Bool(value) => Term::Bool(*value),
            Tok::Nil => {
                return Err(unsupported(source, offset, "nil", "nothing in a cache key takes nil"));
            }
            Tok::LeftParen => {
                let inner_offset = cursor.peek().map_or(offset, |token| token.offset);
                let inner = self.parse_pipeline(cursor, inner_offset)?;
                match cursor.next() {
                    Some(Token { tok: Tok::RightParen, .. }) => Term::Pipeline(Box::new(inner)),
                    _ => return Err(syntax(source, offset, "this ( has no matching )")),
                }
            }
            Tok::Declare | Tok::Assign | Tok::Comma | Tok::Pipe | Tok::RightParen => {
                return Err(syntax(source, offset, format!("unexpected {:?}", &source[offset..=offset])));
            }
        };
        // Fields written right after the term chain onto it: `.Commit.Branch`, `$.Repo.Name`, `(…).Name`.
        while let Some(Token { tok: Tok::Field(name), spaced: false, .. }) = cursor.peek() {
            fields.push(name.clone());
            cursor.next();
        }
        Ok(Operand { offset, term, fields })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Values and evaluation.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Str(String),
    /// An integer and its Go type (`int`, `int64`), for messages.
    Int {
        value: i64,
        type_name: &'static str,
    },
    Bool(bool),
    Struct {
        type_name: &'static str,
        fields: Vec<(&'static str, Value)>,
    },
}

impl Value {
    fn int(value: i64) -> Self {
        Self::Int { value, type_name: "int" }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Self::Str(_) => "string",
            Self::Int { type_name, .. } | Self::Struct { type_name, .. } => type_name,
            Self::Bool(_) => "bool",
        }
    }

    /// Go's truth: empty strings, zero and false are false; structs are true.
    fn is_true(&self) -> bool {
        match self {
            Self::Str(value) => !value.is_empty(),
            Self::Int { value, .. } => *value != 0,
            Self::Bool(value) => *value,
            Self::Struct { .. } => true,
        }
    }

    /// Writes the value as Go's `fmt.Print` does: structs as `{field field …}`.
    fn print(&self, out: &mut String) {
        match self {
            Self::Str(value) => out.push_str(value),
            Self::Int { value, .. } => {
                let _ = write!(out, "{value}");
            }
            Self::Bool(value) => {
                let _ = write!(out, "{value}");
            }
            Self::Struct { fields, .. } => {
                out.push('{');
                for (index, (_, field)) in fields.iter().enumerate() {
                    if index > 0 {
                        out.push(' ');
                    }
                    field.print(out);
                }
                out.push('}');
            }
        }
    }
}

/// Go's `fmt.Sprint`: operands printed one after another, with a space between two when neither is a string.
fn sprint(values: &[Value]) -> String {
    let mut out = String::new();
    for (index, value) in values.iter().enumerate() {
        if index > 0 && !matches!(values[index - 1], Value::Str(_)) && !matches!(value, Value::Str(_)) {
            out.push(' ');
        }
        value.print(&mut out);
    }
    out
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

pub(super) struct Evaluator<'a> {
    template: &'a Template,
    context: &'a RenderContext<'a>,
    pub(super) root: Value,
}

impl<'a> Evaluator<'a> {
    pub(super) fn new(template: &'a Template, context: &'a RenderContext<'a>) -> Self {
        Self { template, context, root: context.metadata.to_value() }
    }

    fn position(&self, offset: usize) -> Position {
        Position::in_source(&self.template.source, offset)
    }

    fn call_error(&self, offset: usize, function: &str, message: impl Into<String>) -> TemplateError {
        TemplateError::Call { position: self.position(offset), function: function.to_owned(), message: message.into() }
    }

    fn nodes(&self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), TemplateError> {
        nodes.iter().try_for_each(|node| self.node(node, dot, out))
    }

    pub(super) fn node(&self, node: &Node, dot: &Value, out: &mut String) -> Result<(), TemplateError> {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Action(pipeline) => self.pipeline(pipeline, dot)?.print(out),
            Node::Branches { branches, otherwise } => {
                for branch in branches {
                    let value = self.pipeline(&branch.pipeline, dot)?;
                    if value.is_true() {
                        return match branch.kind {
                            BranchKind::If => self.nodes(&branch.body, dot, out),
                            BranchKind::With => self.nodes(&branch.body, &value, out),
                        };
                    }
                }
                self.nodes(otherwise, dot, out)?;
            }
        }
        Ok(())
    }

    fn pipeline(&self, pipeline: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
        let mut piped = None;
        for command in &pipeline.commands {
            piped = Some(self.command(command, dot, piped)?);
        }
        // The parser never builds an empty pipeline.
        piped.ok_or_else(|| self.call_error(0, "pipeline", "empty pipeline"))
    }

    /// Evaluates a command; `piped` is the value of the command before `|`, passed as the last argument.
    fn command(&self, command: &Command, dot: &Value, piped: Option<Value>) -> Result<Value, TemplateError> {
        let (first, arguments) = command
            .operands
            .split_first()
            .ok_or_else(|| self.call_error(command.offset, "command", "empty command"))?;
        if let (Term::Function(function), true) = (&first.term, first.fields.is_empty()) {
            return self.call(*function, first.offset, arguments, piped, dot);
        }
        if !arguments.is_empty() || piped.is_some() {
            let name = describe_operand(&self.template.source, first);
            return Err(self.call_error(
                first.offset,
                &name,
                "can't give argument to non-function; only functions such as checksum take arguments",
            ));
        }
        self.operand(first, dot)
    }

    fn operand(&self, operand: &Operand, dot: &Value) -> Result<Value, TemplateError> {
        let mut value = match &operand.term {
            Term::Dot => dot.clone(),
            Term::Root => self.root.clone(),
            Term::Str(value) => Value::Str(value.clone()),
            Term::Int(value) => Value::int(*value),
            Term::Bool(value) => Value::Bool(*value),
            Term::Function(function) => self.call(*function, operand.offset, &[], None, dot)?,
            Term::Pipeline(pipeline) => self.pipeline(pipeline, dot)?,
        };
        for field in &operand.fields {
            value = self.field(value, field, operand.offset)?;
        }
        Ok(value)
    }

    fn field(&self, value: Value, name: &str, offset: usize) -> Result<Value, TemplateError> {
        let type_name = value.type_name();
        let Value::Struct { fields, .. } = value else {
            return Err(TemplateError::MissingField {
                position: self.position(offset),
                field: name.to_owned(),
                type_name,
                hint: format!("a {type_name} has no fields"),
            });
        };
        if let Some((_, found)) = fields.iter().find(|(field, _)| *field == name) {
            return Ok(found.clone());
        }
        let names: Vec<&str> = fields.iter().map(|(field, _)| *field).collect();
        let hint = match names.iter().find(|field| field.eq_ignore_ascii_case(name)) {
            Some(close) => format!("did you mean {close}? Field names are case-sensitive"),
            None if type_name == "metadata.Metadata" => format!(
                "drone-cache's metadata has only {}; for example {{{{ .Commit.Branch }}}} or {{{{ .Repo.Name }}}}",
                names.join(", ")
            ),
            None => format!("{type_name} has the fields {}", names.join(", ")),
        };
        Err(TemplateError::MissingField { position: self.position(offset), field: name.to_owned(), type_name, hint })
    }

    fn call(
        &self,
        function: Function,
        offset: usize,
        operands: &[Operand],
        piped: Option<Value>,
        dot: &Value,
    ) -> Result<Value, TemplateError> {
        let name = function.name();
        // `and` and `or` stop at the first operand that decides, as Go does since 1.18.
        if matches!(function, Function::And | Function::Or) {
            let count = operands.len() + usize::from(piped.is_some());
            if count == 0 {
                return Err(self.call_error(offset, name, "wrong number of args: want at least 1 got 0"));
            }
            let mut last = None;
            for operand in operands {
                let value = self.operand(operand, dot)?;
                if value.is_true() == (function == Function::Or) {
                    return Ok(value);
                }
                last = Some(value);
            }
            if let Some(value) = piped {
                return Ok(value);
            }
            return last.ok_or_else(|| self.call_error(offset, name, "no arguments"));
        }

        let mut args = operands.iter().map(|operand| self.operand(operand, dot)).collect::<Result<Vec<_>, _>>()?;
        args.extend(piped);
        let arity = |want: usize| {
            if args.len() == want {
                Ok(())
            } else {
                Err(self.call_error(offset, name, format!("wrong number of args: want {want} got {}", args.len())))
            }
        };
        let string_arg = |index: usize, value: &Value| match value {
            Value::Str(text) => Ok(text.clone()),
            other => Err(self.call_error(
                offset,
                name,
                format!(
                    "argument {} must be a string, got {} (put file names in double quotes)",
                    index + 1,
                    other.type_name()
                ),
            )),
        };

        match function {
            Function::Checksum => {
                arity(1)?;
                let path = string_arg(0, &args[0])?;
                self.checksum(&path, offset)
            }
            Function::HashFiles => {
                let patterns = args
                    .iter()
                    .enumerate()
                    .map(|(index, value)| string_arg(index, value))
                    .collect::<Result<Vec<_>, _>>()?;
                self.hash_files(&patterns, offset)
            }
            Function::Epoch => {
                arity(0)?;
                Ok(Value::Str(drone::epoch(self.context.now).to_string()))
            }
            Function::Arch => {
                arity(0)?;
                Ok(Value::Str(self.context.platform.arch.clone()))
            }
            Function::Os => {
                arity(0)?;
                Ok(Value::Str(self.context.platform.os.clone()))
            }
            Function::Not => {
                arity(1)?;
                Ok(Value::Bool(!args[0].is_true()))
            }
            Function::Len => {
                arity(1)?;
                match &args[0] {
                    Value::Str(text) => Ok(Value::int(i64::try_from(text.len()).unwrap_or(i64::MAX))),
                    other => Err(self.call_error(offset, name, format!("len of type {}", other.type_name()))),
                }
            }
            Function::Eq => {
                if args.len() < 2 {
                    return Err(self.call_error(offset, name, "missing argument for comparison"));
                }
                let mut equal = false;
                for other in &args[1..] {
                    equal |= self.compare(&args[0], other, offset, name)? == std::cmp::Ordering::Equal;
                }
                Ok(Value::Bool(equal))
            }
            Function::Ne | Function::Lt | Function::Le | Function::Gt | Function::Ge => {
                arity(2)?;
                if function != Function::Ne && matches!(args[0], Value::Bool(_)) {
                    return Err(self.call_error(offset, name, "invalid type for comparison: bool"));
                }
                let ordering = self.compare(&args[0], &args[1], offset, name)?;
                Ok(Value::Bool(match function {
                    Function::Ne => ordering.is_ne(),
                    Function::Lt => ordering.is_lt(),
                    Function::Le => ordering.is_le(),
                    Function::Gt => ordering.is_gt(),
                    _ => ordering.is_ge(),
                }))
            }
            Function::Print => Ok(Value::Str(sprint(&args))),
            Function::Println => {
                let mut out = String::new();
                for (index, value) in args.iter().enumerate() {
                    if index > 0 {
                        out.push(' ');
                    }
                    value.print(&mut out);
                }
                out.push('\n');
                Ok(Value::Str(out))
            }
            Function::Printf => {
                let Some((format, rest)) = args.split_first() else {
                    return Err(self.call_error(offset, name, "wrong number of args: want at least 1 got 0"));
                };
                let format = string_arg(0, format)?;
                self.printf(&format, rest, offset).map(Value::Str)
            }
            Function::Html => Ok(Value::Str(html_escape(&sprint(&args)))),
            Function::Urlquery => Ok(Value::Str(query_escape(&sprint(&args)))),
            // Reached only through the lazy path above; this is the same rule on evaluated arguments.
            Function::And => {
                Ok(args.iter().find(|value| !value.is_true()).or(args.last()).cloned().unwrap_or(Value::Bool(true)))
            }
            Function::Or => {
                Ok(args.iter().find(|value| value.is_true()).or(args.last()).cloned().unwrap_or(Value::Bool(false)))
            }
        }
    }

    fn compare(
        &self,
        left: &Value,
        right: &Value,
        offset: usize,
        name: &str,
    ) -> Result<std::cmp::Ordering, TemplateError> {
        match (left, right) {
            (Value::Str(a), Value::Str(b)) => Ok(a.cmp(b)),
            (Value::Int { value: a, .. }, Value::Int { value: b, .. }) => Ok(a.cmp(b)),
            (Value::Bool(a), Value::Bool(b)) => Ok(a.cmp(b)),
            (Value::Struct { type_name, .. }, _) | (_, Value::Struct { type_name, .. }) => {
                Err(self.call_error(offset, name, format!("invalid type for comparison: {type_name}")))
            }
            _ => Err(self.call_error(
                offset,
                name,
                format!("incompatible types for comparison: {} and {}", left.type_name(), right.type_name()),
            )),
        }
    }

    /// Go's `fmt.Sprintf` for the verbs `%v %s %d %q %t %x %X %%`, without flags or widths.
    fn printf(&self, format: &str, args: &[Value], offset: usize) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut args = args.iter();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(verb) = chars.next() else {
                return Err(self.call_error(offset, "printf", "the format ends with a lone %"));
            };
            if verb == '%' {
                out.push('%');
                continue;
            }
            if !matches!(verb, 'v' | 's' | 'd' | 'q' | 't' | 'x' | 'X') {
                return Err(self.call_error(
                    offset,
                    "printf",
                    format!("the verb %{verb} is not supported in cache keys; use %s, %d, %v, %q, %t or %x, without flags or widths"),
                ));
            }
            let Some(arg) = args.next() else {
                return Err(self.call_error(
                    offset,
                    "printf",
                    format!("the format {format:?} has more verbs than arguments"),
                ));
            };
            let mismatch = || self.call_error(offset, "printf", format!("%{verb} cannot print a {}", arg.type_name()));
            match (verb, arg) {
                ('v', _) | ('s', Value::Str(_)) | ('d', Value::Int { .. }) | ('t', Value::Bool(_)) => {
                    arg.print(&mut out)
                }
                ('q', Value::Str(text)) => out.push_str(&go_quote(text)),
                ('x', Value::Str(text)) => out.push_str(&hex(text.as_bytes())),
                ('X', Value::Str(text)) => out.push_str(&hex(text.as_bytes()).to_ascii_uppercase()),
                ('x' | 'X', Value::Int { value, .. }) => {
                    let digits = if verb == 'x' {
                        format!("{:x}", value.unsigned_abs())
                    } else {
                        format!("{:X}", value.unsigned_abs())
                    };
                    if *value < 0 {
                        out.push('-');
                    }
                    out.push_str(&digits);
                }
                _ => return Err(mismatch()),
            }
        }
        if args.next().is_some() {
            return Err(self.call_error(
                offset,
                "printf",
                format!("the format {format:?} has more arguments than verbs"),
            ));
        }
        Ok(out)
    }

    fn checksum(&self, path: &str, offset: usize) -> Result<Value, TemplateError> {
        let files = self.context.files;
        let digest = drone::checksum(files, path).map_err(|source| TemplateError::Checksum {
            position: self.position(offset),
            path: path.to_owned(),
            resolved: files.resolve(path),
            source,
        })?;
        Ok(Value::Str(digest))
    }

    fn hash_files(&self, patterns: &[String], offset: usize) -> Result<Value, TemplateError> {
        let position = self.position(offset);
        match drone::hash_files(self.context.files, patterns) {
            Ok(digest) => Ok(Value::Str(digest)),
            Err(HashFilesError::BadPattern { pattern, reason }) => {
                Err(TemplateError::BadPattern { position, pattern, reason })
            }
            Err(HashFilesError::Unreadable { pattern, resolved, source }) => {
                Err(TemplateError::HashFiles { position, pattern, resolved, source })
            }
        }
    }
}

fn describe_operand(source: &str, operand: &Operand) -> String {
    let start = operand.offset;
    let end = source[start..]
        .find(|c: char| is_space(c) || c == '|' || c == '}')
        .map_or(source.len(), |length| start + length);
    source[start..end].to_owned()
}

/// Go's `strconv.Quote`, for printable text and the usual escapes.
fn go_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `html` builtin (`template.HTMLEscapeString`).
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `urlquery` builtin (`url.QueryEscape`).
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            other => {
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
    out
}
