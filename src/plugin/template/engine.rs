//! The template engine: Go's `text/template` as the maintained Rust port [`gotmpl`] implements it (its
//! parser, variables, `range`, `define`, `block`, trim markers, comments, the builtins it gets right), run over
//! drone-cache's metadata with drone-cache's functions ([`super::drone`]). This file is the glue: the context a
//! render reads, the checks Go makes at parse time that `gotmpl` makes at execution time, the errors (which
//! say where in the template they are), and what `gotmpl` 0.6 does otherwise than Go 1.18, the version
//! drone-cache is built with:
//! - printing (`print`, `println`, `printf`, an action's value, the escapers' arguments) goes through Go's
//!   `fmt` rules in [`super::gofmt`];
//! - `index` and `len` refuse structs and count bytes as Go does, and a string's byte is a `uint8`;
//! - `range` refuses what Go 1.18 cannot range over (a struct, an integer, a string);
//! - `{{template "name"}}` without a pipeline runs the template with nil, not with dot.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use gotmpl::parse::{BranchNode, CommandNode, Expr, ListNode, Node, PipeNode, TemplateNode};
use gotmpl::{FuncMap, MissingKey, Value, ValueFunc};

use super::drone::{self, Metadata, Platform, TemplateFiles};
use super::gofmt;

/// The name drone-cache gives the template (`template.New("cacheKey")`).
const NAME: &str = "cacheKey";
/// The name of the partial template that renders a fallback prefix.
const PREFIX_NAME: &str = "cacheKeyPrefix";

/// Functions the rewritten template calls (see [`go_semantics`]). A template cannot call them itself: they are
/// not among the functions [`Checker`] knows.
const PRINT_ACTION: &str = "chunkcache_print_action";
const RANGE_CHECK: &str = "chunkcache_range_check";
const NIL_DOT: &str = "chunkcache_nil_dot";

/// Go's builtin functions, which `gotmpl` registers itself.
const BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "js", "len", "not", "or", "print", "printf", "println", "slice", "urlquery", "eq",
    "ne", "lt", "le", "gt", "ge",
];

/// Everything a render reads besides the template: the metadata, the files that `checksum` and `hashFiles`
/// read, the clock for `epoch`, and the platform for `arch` and `os`.
#[derive(Debug, Clone)]
pub struct RenderContext<'a> {
    /// The build metadata.
    pub metadata: &'a Metadata,
    /// The files `checksum` and `hashFiles` read; relative paths start from drone-cache's working
    /// directory, as [`crate::fs::workspace::WorkspaceFiles`] does.
    pub files: Arc<dyn TemplateFiles>,
    /// The time `epoch` renders.
    pub now: SystemTime,
    /// The names `arch` and `os` render.
    pub platform: Platform,
}

impl<'a> RenderContext<'a> {
    /// A context with the current time and the host platform.
    pub fn new(metadata: &'a Metadata, files: Arc<dyn TemplateFiles>) -> Self {
        Self { metadata, files, now: SystemTime::now(), platform: Platform::host() }
    }

    /// drone-cache's functions over this context, and Go's builtins where `gotmpl`'s differ.
    fn functions(&self) -> FuncMap {
        let mut functions = drone::functions(&self.files, self.now, &self.platform);
        functions.extend(escapers());
        functions.extend(go_builtins());
        functions
    }
}

/// A cache-key template that does not parse, or does not execute.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template is malformed, or calls a function that does not exist: drone-cache refuses the step.
    #[error("cache key template, line {line}, column {column}: {message}")]
    Syntax {
        /// Line, from 1.
        line: usize,
        /// Column in characters, from 1.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Executing the template failed (a field the metadata lacks, an index out of range, a function given the
    /// wrong arguments, values of different types compared): drone-cache falls back to its default key.
    #[error("cache key template: {0}")]
    Execution(#[source] gotmpl::TemplateError),
}

/// Renders `template` over the metadata, with the files, the clock and the platform of now.
///
/// # Errors
/// [`TemplateError`] when the template does not parse or does not execute.
pub fn render(template: &str, metadata: &Metadata, files: Arc<dyn TemplateFiles>) -> Result<String, TemplateError> {
    Template::parse(template)?.render(&RenderContext::new(metadata, files))
}

/// A parsed cache-key template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    /// The top-level nodes, for the fallback prefix.
    nodes: Vec<Node>,
}

impl Template {
    /// Parses a template, checking its syntax, that every function it calls exists and every variable it uses
    /// is declared, as Go's parser does.
    ///
    /// # Errors
    /// [`TemplateError::Syntax`], with the line and column.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut functions: FuncMap = drone::function_names().map(|name| (name.to_owned(), stub())).collect();
        functions.extend(escapers());
        let parsed = parse_with(source, functions)?;
        check_blocks(source)?;
        let nodes = parsed.lookup(NAME).map(|tree| tree.nodes.clone()).unwrap_or_default();
        let mut checker = Checker { source, scopes: vec![vec!["$".to_owned()]], error: None };
        checker.list(&nodes);
        for name in parsed.templates() {
            if name != NAME
                && let Some(body) = parsed.lookup(name)
            {
                // A `define` body starts with only `$` declared.
                checker.scopes = vec![vec!["$".to_owned()]];
                checker.list(&body.nodes);
            }
        }
        match checker.error {
            Some(error) => Err(error),
            None => Ok(Self { source: source.to_owned(), nodes }),
        }
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template.
    ///
    /// # Errors
    /// [`TemplateError::Execution`] when executing the template fails.
    pub fn render(&self, context: &RenderContext<'_>) -> Result<String, TemplateError> {
        let template = self.executable(context)?;
        let data = context.metadata.to_value();
        // The top-level tree is among the named ones (and so rewritten) unless it is empty.
        match template.lookup(NAME) {
            Some(_) => template.execute_template_to_string(NAME, &data),
            None => template.execute_to_string(&data),
        }
        .map_err(TemplateError::Execution)
    }

    /// The template parsed with the context's functions, every tree rewritten by [`go_semantics`].
    fn executable(&self, context: &RenderContext<'_>) -> Result<gotmpl::Template, TemplateError> {
        let mut template = parse_with(&self.source, context.functions())?;
        let names: Vec<String> = template.templates().into_iter().map(str::to_owned).collect();
        for name in names {
            if let Some(tree) = template.lookup(&name).map(go_semantics) {
                template = template.add_parse_tree(&name, tree);
            }
        }
        Ok(template)
    }

    /// Renders the top-level nodes before the first one that calls `checksum`, `hashFiles` or `epoch` (or
    /// runs a named template, which might); `None` when every node is rendered, or when the prefix is empty.
    ///
    /// # Errors
    /// [`TemplateError::Execution`] when executing that part fails.
    pub fn render_fallback_prefix(&self, context: &RenderContext<'_>) -> Result<Option<String>, TemplateError> {
        let Some(volatile) = self.nodes.iter().position(is_volatile) else { return Ok(None) };
        let Some(first) = self.nodes.first() else { return Ok(None) };
        let prefix = ListNode { pos: node_pos(first), nodes: self.nodes[..volatile].to_vec() };
        let rendered = self
            .executable(context)?
            .add_parse_tree(PREFIX_NAME, go_semantics(&prefix))
            .execute_template_to_string(PREFIX_NAME, &context.metadata.to_value())
            .map_err(TemplateError::Execution)?;
        Ok(Some(rendered).filter(|prefix| !prefix.is_empty()))
    }
}

/// Go's `html`, `js` and `urlquery`, which take any number of arguments: one string is escaped as it is,
/// anything else is first printed as `fmt.Sprint` prints it (Go's `evalArgs`). `gotmpl` takes exactly one.
fn escapers() -> FuncMap {
    let escaper = |escape: fn(&str) -> String| -> ValueFunc {
        Arc::new(move |args: &[Value]| {
            Ok(Value::from(match args {
                [Value::String(text)] => escape(text),
                args => escape(&gofmt::sprint(args)),
            }))
        })
    };
    FuncMap::from([
        ("html".to_owned(), escaper(gotmpl::html_escape)),
        ("js".to_owned(), escaper(gotmpl::js_escape)),
        ("urlquery".to_owned(), escaper(gotmpl::url_encode)),
    ])
}

/// Go's builtins where `gotmpl`'s behave otherwise (printing, `index` and `len`), and the functions the
/// rewritten template calls.
fn go_builtins() -> FuncMap {
    fn function(f: impl Fn(&[Value]) -> gotmpl::Result<Value> + Send + Sync + 'static) -> ValueFunc {
        Arc::new(f)
    }
    let exec = |message: String| gotmpl::TemplateError::Exec(message);
    FuncMap::from([
        ("print".to_owned(), function(|args| Ok(Value::from(gofmt::sprint(args))))),
        ("println".to_owned(), function(|args| Ok(Value::from(gofmt::sprintln(args))))),
        (
            "printf".to_owned(),
            function(move |args| match args {
                [Value::String(format), rest @ ..] => Ok(Value::from(gofmt::sprintf(format, rest))),
                [other, ..] => {
                    Err(exec(format!("printf: wrong type for value; expected string; got {}", gofmt::type_name(other))))
                }
                [] => Err(exec("wrong number of args for printf: want at least 1 got 0".to_owned())),
            }),
        ),
        ("index".to_owned(), function(go_index)),
        (
            "eq".to_owned(),
            function(move |args| match args {
                [first, others @ ..] if !others.is_empty() => {
                    for other in others {
                        if go_equal(first, other)? {
                            return Ok(Value::Bool(true));
                        }
                    }
                    Ok(Value::Bool(false))
                }
                _ => Err(exec("error calling eq: missing argument for comparison".to_owned())),
            }),
        ),
        (
            "ne".to_owned(),
            function(move |args| match args {
                [first, second] => Ok(Value::Bool(!go_equal(first, second)?)),
                _ => Err(exec(format!("wrong number of args for ne: want 2 got {}", args.len()))),
            }),
        ),
        (
            "len".to_owned(),
            function(move |args| match args {
                [Value::String(text)] => Ok(Value::Int(text.len() as i64)),
                [Value::List(items)] => Ok(Value::Int(items.len() as i64)),
                [Value::Nil] => Err(exec("len of nil pointer".to_owned())),
                [other] => Err(exec(format!("error calling len: len of type {}", gofmt::type_name(other)))),
                _ => Err(exec(format!("wrong number of args for len: want 1 got {}", args.len()))),
            }),
        ),
        (
            // Go prints a missing value as "<no value>", anything else as `fmt.Sprint` does.
            PRINT_ACTION.to_owned(),
            function(|args| match args {
                [Value::Nil] => Ok(Value::from("<no value>")),
                args => Ok(Value::from(gofmt::sprint(args))),
            }),
        ),
        (
            // Go 1.18 ranges over slices, maps and channels, and over nil as over nothing.
            RANGE_CHECK.to_owned(),
            function(move |args| match args {
                [value @ (Value::List(_) | Value::Nil)] => Ok(value.clone()),
                _ => Err(exec(format!("range can't iterate over {}", gofmt::sprint(args)))),
            }),
        ),
        (NIL_DOT.to_owned(), function(|_| Ok(Value::Nil))),
    ])
}

/// Go's `eq` of two values: basic values of one kind compare by value (integers whatever their sign), structs
/// as Go's `==` compares them, nil equals only nil; other pairs cannot be compared.
fn go_equal(first: &Value, second: &Value) -> gotmpl::Result<bool> {
    Ok(match (first, second) {
        (Value::Int(signed), Value::Uint(unsigned)) | (Value::Uint(unsigned), Value::Int(signed)) => {
            u64::try_from(*signed).is_ok_and(|signed| signed == *unsigned)
        }
        (Value::Nil, _) | (_, Value::Nil) => matches!((first, second), (Value::Nil, Value::Nil)),
        (Value::Bool(_), Value::Bool(_))
        | (Value::Int(_), Value::Int(_))
        | (Value::Uint(_), Value::Uint(_))
        | (Value::Float(_), Value::Float(_))
        | (Value::String(_), Value::String(_))
        | (Value::Map(_), Value::Map(_)) => first == second,
        _ => return Err(gotmpl::TemplateError::Exec("error calling eq: incompatible types for comparison".to_owned())),
    })
}

/// Go's `index`: each index applied in turn to a string (giving its byte, a `uint8`) or a slice; structs
/// cannot be indexed, and no index gives the item itself.
fn go_index(args: &[Value]) -> gotmpl::Result<Value> {
    let exec = |message: String| gotmpl::TemplateError::Exec(message);
    let Some((item, indices)) = args.split_first() else {
        return Err(exec("wrong number of args for index: want at least 1 got 0".to_owned()));
    };
    let mut item = item.clone();
    for index in indices {
        item = match (&item, index) {
            (Value::Nil, _) => return Err(exec("error calling index: index of untyped nil".to_owned())),
            (Value::String(text), Value::Int(_) | Value::Uint(_)) => {
                let offset = match index {
                    Value::Int(offset) => usize::try_from(*offset).ok(),
                    Value::Uint(offset) => usize::try_from(*offset).ok(),
                    _ => None,
                };
                match offset.and_then(|offset| text.as_bytes().get(offset)) {
                    Some(byte) => Value::Uint(u64::from(*byte)),
                    None => return Err(exec(format!("error calling index: index out of range: {index}"))),
                }
            }
            (Value::String(_), _) => {
                return Err(exec(format!("cannot index slice/array with type {}", gofmt::type_name(index))));
            }
            (Value::List(_), _) => item.index(index)?,
            (other, _) => return Err(exec(format!("can't index item of type {}", gofmt::type_name(other)))),
        };
    }
    Ok(item)
}

/// The tree with Go's semantics where `gotmpl`'s differ: an action prints its value through
/// [`PRINT_ACTION`], a `range` pipeline ends in [`RANGE_CHECK`], and `{{template "name"}}` gets
/// [`NIL_DOT`] for its pipeline.
fn go_semantics(list: &ListNode) -> ListNode {
    fn call(pos: gotmpl::parse::Pos, name: &str) -> CommandNode {
        CommandNode { pos, args: vec![Expr::Identifier(pos, name.into())] }
    }
    fn branch(branch: &BranchNode) -> BranchNode {
        BranchNode {
            body: go_semantics(&branch.body),
            else_body: branch.else_body.as_ref().map(go_semantics),
            ..branch.clone()
        }
    }
    let node = |node: &Node| match node {
        Node::List(inner) => Node::List(go_semantics(inner)),
        Node::Action(action) if action.pipe.decl.is_empty() => {
            let mut action = action.clone();
            action.pipe.commands.push(call(action.pos, PRINT_ACTION));
            Node::Action(action)
        }
        Node::If(inner) => Node::If(branch(inner)),
        Node::With(inner) => Node::With(branch(inner)),
        Node::Range(inner) => {
            let mut range = branch(inner);
            range.pipe.commands.push(call(range.pos, RANGE_CHECK));
            Node::Range(range)
        }
        Node::Template(template) if template.pipe.is_none() => {
            let pos = template.pos;
            let pipe = PipeNode { pos, decl: Vec::new(), commands: vec![call(pos, NIL_DOT)], is_assign: false };
            Node::Template(TemplateNode { pipe: Some(pipe), ..template.clone() })
        }
        other => other.clone(),
    };
    ListNode { pos: list.pos, nodes: list.nodes.iter().map(node).collect() }
}

/// A function that only lets the parser know the name exists.
fn stub() -> ValueFunc {
    Arc::new(|_: &[Value]| Ok(Value::Nil))
}

/// Parses `source` as drone-cache does: its functions, and a missing field is an error (Go's structs have no
/// "no value").
fn parse_with(source: &str, functions: FuncMap) -> Result<gotmpl::Template, TemplateError> {
    let template = gotmpl::Template::new(NAME).funcs(functions).missing_key(MissingKey::Error);
    template.parse(&trailing_pipes_blanked(source)).map_err(|error| match error {
        gotmpl::TemplateError::Parse { line, col, message, .. }
        | gotmpl::TemplateError::Lex { line, col, message, .. } => TemplateError::Syntax { line, column: col, message },
        other => TemplateError::Syntax { line: 1, column: 1, message: other.to_string() },
    })
}

/// The source with each `|` that ends a pipeline (nothing but spaces before `)` or the action's end) made a
/// space: Go's parser takes `{{ .Repo.Name | }}` as `{{ .Repo.Name }}`, `gotmpl` finds an empty command.
/// Positions stay where they were.
fn trailing_pipes_blanked(source: &str) -> Cow<'_, str> {
    let bytes = source.as_bytes();
    let find = |from: usize, needle: &[u8]| {
        bytes.get(from..).and_then(|rest| rest.windows(needle.len()).position(|window| window == needle))
    };
    let mut blanks = Vec::new();
    let mut at = 0;
    while let Some(found) = find(at, b"{{") {
        at += found + 2;
        if bytes.get(at) == Some(&b'-') && bytes.get(at + 1).is_some_and(u8::is_ascii_whitespace) {
            at += 2;
        }
        if bytes[at..].starts_with(b"/*") {
            // A comment: only its end matters.
            at = find(at, b"*/").map_or(bytes.len(), |end| at + end + 2);
            continue;
        }
        while at < bytes.len() && !bytes[at..].starts_with(b"}}") {
            match bytes[at] {
                quote @ (b'"' | b'\'' | b'`') => {
                    at += 1;
                    while at < bytes.len() && bytes[at] != quote {
                        at += if bytes[at] == b'\\' && quote != b'`' { 2 } else { 1 };
                    }
                }
                b'|' => {
                    let rest = &bytes[at + 1..];
                    let spaces = rest.iter().take_while(|byte| byte.is_ascii_whitespace()).count();
                    let rest = &rest[spaces..];
                    if rest.starts_with(b")") || rest.starts_with(b"}}") || (spaces > 0 && rest.starts_with(b"-}}")) {
                        blanks.push(at);
                    }
                }
                _ => {}
            }
            at += 1;
        }
    }
    if blanks.is_empty() {
        return Cow::Borrowed(source);
    }
    let mut blanked = bytes.to_vec();
    for at in blanks {
        blanked[at] = b' ';
    }
    // Only ASCII `|` bytes became spaces, so the text is still UTF-8.
    Cow::Owned(String::from_utf8(blanked).unwrap_or_else(|_| source.to_owned()))
}

/// The structure Go's parser checks and `gotmpl` 0.6 lets through: every `if`, `range`, `with`, `define` and
/// `block` has its `{{end}}` and every `{{end}}` its block, `{{else}}` is inside `if`, `range` or `with` (and
/// is not Go 1.23's `{{else with}}`),
/// `break` and `continue` are inside a `range`, and no `/` stands outside a string (a comment is
/// `{{/* … */}}`, right at the delimiters). Runs after `gotmpl` has parsed the source, so actions are closed.
fn check_blocks(source: &str) -> Result<(), TemplateError> {
    let fail = |offset: usize, message: &str| {
        let before = &source[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Err(TemplateError::Syntax {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            message: message.to_owned(),
        })
    };
    let mut open: Vec<(&str, usize)> = Vec::new();
    let mut rest = 0;
    while let Some(found) = source[rest..].find("{{") {
        let start = rest + found;
        let mut at = start + 2;
        let bytes = source.as_bytes();
        if bytes.get(at) == Some(&b'-') && bytes.get(at + 1).is_some_and(u8::is_ascii_whitespace) {
            at += 2;
        }
        let body_start = at;
        if source[at..].starts_with("/*") {
            // A comment; gotmpl checks how it ends.
            rest = source[at..].find("*/").map_or(source.len(), |end| at + end + 2);
            continue;
        }
        at += source[at..].len() - source[at..].trim_start().len();
        let word_end =
            source[at..].find(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(source.len(), |length| at + length);
        let word = &source[at..word_end];
        // Find the end of the action, skipping strings, raw strings and character constants.
        let mut chars = source[body_start..].char_indices();
        let mut end = source.len();
        while let Some((index, c)) = chars.next() {
            match c {
                '"' | '\'' => {
                    while let Some((_, inner)) = chars.next() {
                        if inner == '\\' {
                            chars.next();
                        } else if inner == c {
                            break;
                        }
                    }
                }
                '`' => {
                    for (_, inner) in chars.by_ref() {
                        if inner == '`' {
                            break;
                        }
                    }
                }
                '/' => return fail(body_start + index, "unexpected \"/\" in command"),
                '}' if source[body_start + index..].starts_with("}}") => {
                    end = body_start + index + 2;
                    break;
                }
                _ => {}
            }
        }
        match word {
            "if" | "range" | "with" | "define" | "block" => open.push((word, start)),
            "else" if !matches!(open.last(), Some(("if" | "range" | "with", _))) => {
                return fail(start, "unexpected {{else}}");
            }
            "else"
                if source[word_end..end].trim_start().split(|c: char| !c.is_alphanumeric()).next() == Some("with") =>
            {
                return fail(
                    start,
                    "unexpected <with> in else: {{else with}} is Go 1.23 syntax, which drone-cache (built with Go \
                     1.18) does not parse; write {{else}}{{with …}}…{{end}}",
                );
            }
            "end" if open.pop().is_none() => return fail(start, "unexpected {{end}}"),
            "break" | "continue" => {
                let in_range = open
                    .iter()
                    .rev()
                    .take_while(|(block, _)| !matches!(*block, "define" | "block"))
                    .any(|(block, _)| *block == "range");
                if !in_range {
                    return fail(start, &format!("{{{{{word}}}}} outside {{{{range}}}}"));
                }
            }
            _ => {}
        }
        rest = end;
    }
    match open.last() {
        Some((block, offset)) => fail(*offset, &format!("unexpected EOF: {{{{{block}}}}} has no {{{{end}}}}")),
        None => Ok(()),
    }
}

/// The checks Go's parser makes that `gotmpl` leaves to execution: every function called exists, every
/// variable used is declared in an enclosing scope.
struct Checker<'s> {
    source: &'s str,
    /// The variables declared in each open scope, innermost last.
    scopes: Vec<Vec<String>>,
    /// The first error found.
    error: Option<TemplateError>,
}

impl Checker<'_> {
    fn fail(&mut self, offset: usize, message: String) {
        if self.error.is_none() {
            let offset = offset.min(self.source.len());
            let before = &self.source[..offset];
            let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
            self.error = Some(TemplateError::Syntax {
                line: before.matches('\n').count() + 1,
                column: before[line_start..].chars().count() + 1,
                message,
            });
        }
    }

    fn list(&mut self, nodes: &[Node]) {
        for node in nodes {
            self.node(node);
        }
    }

    fn scoped(&mut self, nodes: &[Node]) {
        self.scopes.push(Vec::new());
        self.list(nodes);
        self.scopes.pop();
    }

    fn node(&mut self, node: &Node) {
        match node {
            Node::List(list) => self.list(&list.nodes),
            Node::Action(action) => self.pipe(&action.pipe),
            Node::If(branch) | Node::Range(branch) | Node::With(branch) => {
                // The pipeline's variables live in the body and the else branch.
                self.scopes.push(Vec::new());
                self.pipe(&branch.pipe);
                self.scoped(&branch.body.nodes);
                if let Some(otherwise) = &branch.else_body {
                    self.scoped(&otherwise.nodes);
                }
                self.scopes.pop();
            }
            Node::Template(call) => {
                if let Some(pipe) = &call.pipe {
                    self.pipe(pipe);
                }
            }
            Node::Text(_) | Node::Define(_) | Node::Break(_) | Node::Continue(_) => {}
        }
    }

    fn pipe(&mut self, pipe: &PipeNode) {
        // Go declares a pipeline's variables before it parses the commands: `{{ $x := $x }}` parses (and fails
        // when executed).
        if !pipe.is_assign {
            let declared = pipe.decl.iter().map(ToString::to_string);
            self.scopes.last_mut().expect("a scope is open").extend(declared);
        } else {
            for name in &pipe.decl {
                self.variable(pipe.pos.offset, name);
            }
        }
        for command in &pipe.commands {
            for (index, argument) in command.args.iter().enumerate() {
                // Go separates a command's operands by spaces: `"a""b"`, `(1)(2)` and `"s".Field` do not parse.
                let offset = expression_pos(argument).offset.min(self.source.len());
                if index > 0 && !self.source[..offset].ends_with(char::is_whitespace) {
                    let operand = self.source[offset..].split(char::is_whitespace).next().unwrap_or_default();
                    self.fail(offset, format!("unexpected {operand:?} in operand: separate operands by a space"));
                }
                self.expression(argument);
            }
        }
    }

    fn variable(&mut self, offset: usize, name: &str) {
        if !self.scopes.iter().any(|scope| scope.iter().any(|declared| declared == name)) {
            self.fail(offset, format!("undefined variable \"{name}\""));
        }
    }

    fn expression(&mut self, expression: &Expr) {
        match expression {
            Expr::Identifier(pos, name) => {
                let known = BUILTINS.contains(&name.as_str()) || drone::function_names().any(|f| f == name.as_str());
                if !known {
                    let functions = drone::function_names().collect::<Vec<_>>().join(", ");
                    self.fail(
                        pos.offset,
                        format!(
                            "function \"{name}\" not defined; cache keys have drone-cache's {functions} and Go's \
                             builtins ({})",
                            BUILTINS.join(", ")
                        ),
                    );
                }
            }
            Expr::Variable(pos, name, _) => self.variable(pos.offset, name),
            Expr::Pipe(_, pipe) => self.pipe(pipe),
            Expr::Chain(_, inner, _) => self.expression(inner),
            Expr::Dot(_) | Expr::Field(..) | Expr::String(..) | Expr::Number(..) | Expr::Bool(..) | Expr::Nil(_) => {}
        }
    }
}

/// Whether rendering `node` calls `checksum`, `hashFiles` or `epoch`, or runs a named template.
fn is_volatile(node: &Node) -> bool {
    fn pipe(pipe: &PipeNode) -> bool {
        pipe.commands.iter().flat_map(|command| &command.args).any(calls_volatile)
    }
    fn calls_volatile(expression: &Expr) -> bool {
        match expression {
            Expr::Identifier(_, name) => drone::VOLATILE_FUNCTIONS.contains(&name.as_str()),
            Expr::Pipe(_, inner) => pipe(inner),
            Expr::Chain(_, inner, _) => calls_volatile(inner),
            _ => false,
        }
    }
    match node {
        Node::List(list) => list.nodes.iter().any(is_volatile),
        Node::Action(action) => pipe(&action.pipe),
        Node::If(branch) | Node::Range(branch) | Node::With(branch) => {
            pipe(&branch.pipe)
                || branch.body.nodes.iter().any(is_volatile)
                || branch.else_body.as_ref().is_some_and(|list| list.nodes.iter().any(is_volatile))
        }
        Node::Template(_) => true,
        Node::Text(_) | Node::Define(_) | Node::Break(_) | Node::Continue(_) => false,
    }
}

fn expression_pos(expression: &Expr) -> gotmpl::parse::Pos {
    match expression {
        Expr::Dot(pos)
        | Expr::Field(pos, _)
        | Expr::Variable(pos, ..)
        | Expr::Identifier(pos, _)
        | Expr::String(pos, _)
        | Expr::Number(pos, _)
        | Expr::Bool(pos, _)
        | Expr::Nil(pos)
        | Expr::Pipe(pos, _)
        | Expr::Chain(pos, ..) => *pos,
    }
}

fn node_pos(node: &Node) -> gotmpl::parse::Pos {
    match node {
        Node::List(list) => list.pos,
        Node::Text(text) => text.pos,
        Node::Action(action) => action.pos,
        Node::If(branch) | Node::Range(branch) | Node::With(branch) => branch.pos,
        Node::Template(call) => call.pos,
        Node::Define(define) => define.pos,
        Node::Break(pos) | Node::Continue(pos) => *pos,
    }
}
