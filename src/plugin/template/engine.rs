//! The template engine: Go's `text/template` as the maintained Rust port [`gotmpl`] implements it (its
//! parser, variables, `range`, `define`, `block`, trim markers, comments, the builtins it gets right), run over
//! drone-cache's metadata with drone-cache's functions ([`super::drone`]). This file is the glue: the context a
//! render reads, parsing (checked by [`super::syntax`] where Go's parser decides otherwise than `gotmpl`'s),
//! execution (with Go's builtins and semantics from [`super::semantics`]), the fallback prefix, and the
//! errors, which say where in the template they are.

use std::sync::Arc;
use std::time::SystemTime;

use gotmpl::parse::{Expr, ListNode, Node, PipeNode};
use gotmpl::{FuncMap, MissingKey, Value, ValueFunc};

use super::drone::{self, Metadata, Platform, TemplateFiles};
use super::{semantics, syntax};

/// The name drone-cache gives the template (`template.New("cacheKey")`).
const NAME: &str = "cacheKey";
/// The name of the partial template that renders a fallback prefix.
const PREFIX_NAME: &str = "cacheKeyPrefix";

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
        functions.extend(semantics::escapers());
        functions.extend(semantics::go_builtins());
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
    /// Where pipelines assign to a variable never declared (execution fails there, as in Go).
    undeclared_assignments: Vec<usize>,
}

impl Template {
    /// Parses a template, checking its syntax, that every function it calls exists and every variable it uses
    /// is declared, as Go's parser does.
    ///
    /// # Errors
    /// [`TemplateError::Syntax`], with the line and column.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut functions: FuncMap = drone::function_names().map(|name| (name.to_owned(), stub())).collect();
        functions.extend(semantics::escapers());
        let parsed = parse_with(source, functions)?;
        let nodes = parsed.lookup(NAME).map(|tree| tree.nodes.clone()).unwrap_or_default();
        let defines =
            parsed.templates().into_iter().filter(|name| *name != NAME).filter_map(|name| parsed.lookup(name));
        let trees = std::iter::once(nodes.as_slice()).chain(defines.map(|tree| tree.nodes.as_slice()));
        let undeclared_assignments = syntax::check(source, trees)?;
        Ok(Self { source: source.to_owned(), nodes, undeclared_assignments })
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

    /// The template parsed with the context's functions, every tree rewritten by [`semantics::go_semantics`].
    fn executable(&self, context: &RenderContext<'_>) -> Result<gotmpl::Template, TemplateError> {
        let mut template = parse_with(&self.source, context.functions())?;
        let names: Vec<String> = template.templates().into_iter().map(str::to_owned).collect();
        for name in names {
            if let Some(tree) = template.lookup(&name).map(|tree| self.go_semantics(tree)) {
                template = template.add_parse_tree(&name, tree);
            }
        }
        Ok(template)
    }

    fn go_semantics(&self, tree: &ListNode) -> ListNode {
        semantics::go_semantics(tree, &self.undeclared_assignments)
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
            .add_parse_tree(PREFIX_NAME, self.go_semantics(&prefix))
            .execute_template_to_string(PREFIX_NAME, &context.metadata.to_value())
            .map_err(TemplateError::Execution)?;
        Ok(Some(rendered).filter(|prefix| !prefix.is_empty()))
    }
}

/// A function that only lets the parser know the name exists.
fn stub() -> ValueFunc {
    Arc::new(|_: &[Value]| Ok(Value::Nil))
}

/// Parses `source` as drone-cache does: its functions, and a missing field is an error (Go's structs have no
/// "no value").
fn parse_with(source: &str, functions: FuncMap) -> Result<gotmpl::Template, TemplateError> {
    let template = gotmpl::Template::new(NAME).funcs(functions).missing_key(MissingKey::Error);
    template.parse(&syntax::trailing_pipes_blanked(source)).map_err(|error| match error {
        gotmpl::TemplateError::Parse { line, col, message, .. }
        | gotmpl::TemplateError::Lex { line, col, message, .. } => TemplateError::Syntax { line, column: col, message },
        other => TemplateError::Syntax { line: 1, column: 1, message: other.to_string() },
    })
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
