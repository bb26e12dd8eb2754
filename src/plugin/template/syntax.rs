//! What Go's parser decides that `gotmpl` 0.6 decides otherwise: a trailing pipe ends a pipeline; blocks are
//! closed and `else`, `break` and `continue` stand where they may; operands are separated by spaces; every
//! function called exists and every variable used is declared. Errors name the line and column.

use std::borrow::Cow;

use gotmpl::parse::{Expr, Node, PipeNode};

use super::drone;
use super::engine::TemplateError;

/// The error at byte `offset` of `source`, with its line and column (in characters, from 1).
fn syntax_error(source: &str, offset: usize, message: String) -> TemplateError {
    let before = &source[..offset.min(source.len())];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    TemplateError::Syntax {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        message,
    }
}

/// Checks what Go's parser checks of a template `gotmpl` has parsed: `source` and its trees (the top-level one
/// first, then each `define`). Returns where pipelines assign (`=`) to a variable not declared before: Go's
/// parser lets them through and its execution fails there.
///
/// # Errors
/// [`TemplateError::Syntax`] for the first problem found.
pub(super) fn check<'t>(
    source: &str,
    trees: impl IntoIterator<Item = &'t [Node]>,
) -> Result<Vec<usize>, TemplateError> {
    check_blocks(source)?;
    let mut checker = Checker { source, scopes: Vec::new(), undeclared_assignments: Vec::new(), error: None };
    for nodes in trees {
        // Each tree starts with only `$` declared.
        checker.scopes = vec![vec!["$".to_owned()]];
        checker.list(nodes);
    }
    checker.error.map_or(Ok(checker.undeclared_assignments), Err)
}

/// Go's builtin functions, which `gotmpl` registers itself.
const BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "js", "len", "not", "or", "print", "printf", "println", "slice", "urlquery", "eq",
    "ne", "lt", "le", "gt", "ge",
];

/// An action of a template, as Go's lexer delimits it: where `{{` is, where its body starts (after a trim
/// marker), where it ends (after `}}`, or at the end of an unclosed source), and the offsets of its bytes
/// outside strings, raw strings and character constants.
struct Action {
    start: usize,
    body: usize,
    end: usize,
    code: Vec<usize>,
}

/// The actions of `source`, comments left out. Works on bytes, so any text scans without panicking.
fn actions(source: &str) -> Vec<Action> {
    let bytes = source.as_bytes();
    let find = |from: usize, needle: &[u8]| {
        bytes.get(from..).and_then(|rest| rest.windows(needle.len()).position(|window| window == needle))
    };
    let mut actions = Vec::new();
    let mut at = 0;
    while let Some(found) = find(at, b"{{") {
        let start = at + found;
        at = start + 2;
        if bytes.get(at) == Some(&b'-') && bytes.get(at + 1).is_some_and(u8::is_ascii_whitespace) {
            at += 2;
        }
        if bytes[at..].starts_with(b"/*") {
            // A comment: only its end matters (gotmpl checks how it ends).
            at = find(at, b"*/").map_or(bytes.len(), |end| at + end + 2);
            continue;
        }
        let body = at;
        let mut code = Vec::new();
        while at < bytes.len() && !bytes[at..].starts_with(b"}}") {
            match bytes[at] {
                quote @ (b'"' | b'\'' | b'`') => {
                    at += 1;
                    while at < bytes.len() && bytes[at] != quote {
                        at += if bytes[at] == b'\\' && quote != b'`' { 2 } else { 1 };
                    }
                }
                _ => code.push(at),
            }
            at += 1;
        }
        at = (at + 2).min(bytes.len());
        actions.push(Action { start, body, end: at, code });
    }
    actions
}

/// The source with each `|` that ends a pipeline (nothing but spaces before `)` or the action's end) made a
/// space: Go's parser takes `{{ .Repo.Name | }}` as `{{ .Repo.Name }}`, `gotmpl` finds an empty command.
/// Positions stay where they were.
pub(super) fn trailing_pipes_blanked(source: &str) -> Cow<'_, str> {
    let bytes = source.as_bytes();
    let ends_pipeline = |at: usize| {
        let rest = &bytes[at + 1..];
        let spaces = rest.iter().take_while(|byte| byte.is_ascii_whitespace()).count();
        let rest = &rest[spaces..];
        rest.starts_with(b")") || rest.starts_with(b"}}") || (spaces > 0 && rest.starts_with(b"-}}"))
    };
    let blanks: Vec<usize> = actions(source)
        .into_iter()
        .flat_map(|action| action.code)
        .filter(|&at| bytes[at] == b'|' && ends_pipeline(at))
        .collect();
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
/// is not Go 1.23's `{{else with}}`), `break` and `continue` are inside a `range`, and no `/` stands outside
/// a string (a comment is `{{/* … */}}`, right at the delimiters). Runs after `gotmpl` has parsed the source,
/// so actions are closed and lie on character boundaries.
fn check_blocks(source: &str) -> Result<(), TemplateError> {
    let fail = |offset: usize, message: &str| Err(syntax_error(source, offset, message.to_owned()));
    let mut open: Vec<(&str, usize)> = Vec::new();
    for Action { start, body, end, code } in actions(source) {
        if let Some(&slash) = code.iter().find(|&&at| source.as_bytes()[at] == b'/') {
            return fail(slash, "unexpected \"/\" in command");
        }
        let at = body + (source[body..].len() - source[body..].trim_start().len());
        let word_end =
            source[at..].find(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(source.len(), |length| at + length);
        let word = &source[at..word_end];
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
    /// The offsets of pipelines that assign to a variable not declared before.
    undeclared_assignments: Vec<usize>,
    /// The first error found.
    error: Option<TemplateError>,
}

impl Checker<'_> {
    fn fail(&mut self, offset: usize, message: String) {
        if self.error.is_none() {
            self.error = Some(syntax_error(self.source, offset, message));
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
        // Go's parser declares a pipeline's variables, assigned (`=`) or declared (`:=`), before it parses the
        // commands: `{{ $x := $x }}` and `{{ $y = 1 }}` with no `$y` before both parse, and fail when executed.
        if pipe.is_assign && pipe.decl.iter().any(|name| !self.is_declared(name)) {
            self.undeclared_assignments.push(pipe.pos.offset);
        }
        let declared = pipe.decl.iter().map(ToString::to_string);
        self.scopes.last_mut().expect("a scope is open").extend(declared);
        for command in &pipe.commands {
            for (index, argument) in command.args.iter().enumerate() {
                // Go separates a command's operands by spaces: `"a""b"`, `(1)(2)` and `"s".Field` do not parse.
                let offset = expression_pos(argument).offset.min(self.source.len());
                if index > 0 && !self.source[..offset].ends_with(char::is_whitespace) {
                    let operand = self.source[offset..].split(char::is_whitespace).next().unwrap_or_default();
                    let message = match (&command.args[index - 1], argument) {
                        // `gotmpl` reads Go's imaginary constant `1i` as the number 1 and a function `i`.
                        (Expr::Number(..), Expr::Identifier(_, name)) if name == "i" => {
                            "complex constants such as 1i are Go's, but not supported here".to_owned()
                        }
                        _ => format!("unexpected {operand:?} in operand: separate operands by a space"),
                    };
                    self.fail(offset, message);
                }
                self.expression(argument);
            }
        }
    }

    fn is_declared(&self, name: &str) -> bool {
        self.scopes.iter().any(|scope| scope.iter().any(|declared| declared == name))
    }

    fn variable(&mut self, offset: usize, name: &str) {
        if !self.is_declared(name) {
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
