//! The template engine: Go's `text/template` as the maintained Rust port [`gotmpl`] implements it (its
//! printing of values, `printf` verbs, builtins, variables, `range`, `define`, trim markers, comments), run
//! over drone-cache's metadata with drone-cache's functions ([`super::drone`]). This file is only the glue:
//! the context a render reads, the checks Go makes at parse time that `gotmpl` makes at execution time, and
//! the errors, which say where in the template they are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use gotmpl::parse::{Expr, ListNode, Node, PipeNode};
use gotmpl::{FuncMap, MissingKey, Value, ValueFunc};

use super::drone::{self, Metadata, Platform, TemplateFiles};

/// The name drone-cache gives the template (`template.New("cacheKey")`).
const NAME: &str = "cacheKey";
/// The name of the partial template that renders a fallback prefix.
const PREFIX_NAME: &str = "cacheKeyPrefix";

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

    /// drone-cache's functions over this context, and Go's escapers.
    fn functions(&self) -> FuncMap {
        let mut functions = drone::functions(&self.files, self.now, &self.platform);
        functions.extend(escapers());
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
        parse_with(&self.source, context.functions())?
            .execute_to_string(&context.metadata.to_value())
            .map_err(TemplateError::Execution)
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
        let rendered = parse_with(&self.source, context.functions())?
            .add_parse_tree(PREFIX_NAME, prefix)
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
                args => escape(&go_sprint(args)),
            }))
        })
    };
    FuncMap::from([
        ("html".to_owned(), escaper(gotmpl::html_escape)),
        ("js".to_owned(), escaper(gotmpl::js_escape)),
        ("urlquery".to_owned(), escaper(gotmpl::url_encode)),
    ])
}

/// Go's `fmt.Sprint`: the operands printed one after another, with a space between two that are not strings.
fn go_sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (index, arg) in args.iter().enumerate() {
        let is_string = |value: &Value| matches!(value, Value::String(_));
        if index > 0 && !is_string(arg) && !is_string(&args[index - 1]) {
            out.push(' ');
        }
        out.push_str(&arg.to_string());
    }
    out
}

/// A function that only lets the parser know the name exists.
fn stub() -> ValueFunc {
    Arc::new(|_: &[Value]| Ok(Value::Nil))
}

/// Parses `source` as drone-cache does: its functions, and a missing field is an error (Go's structs have no
/// "no value").
fn parse_with(source: &str, functions: FuncMap) -> Result<gotmpl::Template, TemplateError> {
    gotmpl::Template::new(NAME).funcs(functions).missing_key(MissingKey::Error).parse(source).map_err(|error| {
        match error {
            gotmpl::TemplateError::Parse { line, col, message, .. }
            | gotmpl::TemplateError::Lex { line, col, message, .. } => {
                TemplateError::Syntax { line, column: col, message }
            }
            other => TemplateError::Syntax { line: 1, column: 1, message: other.to_string() },
        }
    })
}

/// The structure Go's parser checks and `gotmpl` 0.6 lets through: every `if`, `range`, `with`, `define` and
/// `block` has its `{{end}}` and every `{{end}}` its block, `{{else}}` is inside `if`, `range` or `with`,
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
        for command in &pipe.commands {
            for argument in &command.args {
                self.expression(argument);
            }
        }
        if !pipe.is_assign {
            let declared = pipe.decl.iter().map(ToString::to_string);
            self.scopes.last_mut().expect("a scope is open").extend(declared);
        } else {
            for name in &pipe.decl {
                self.variable(pipe.pos.offset, name);
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

/// A Go struct as a template value: its fields by name.
pub(super) fn go_struct<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::from(fields.into_iter().map(|(name, value)| (name.to_owned(), value)).collect::<BTreeMap<_, _>>())
}
