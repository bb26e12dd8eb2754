//! What `gotmpl` 0.6 executes otherwise than Go 1.18, the version drone-cache is built with, made Go's:
//! - printing (`print`, `println`, `printf`, an action's value, the escapers' arguments) goes through Go's
//!   `fmt` rules in [`super::gofmt`];
//! - `index`, `len`, `eq` and `ne` are Go's: structs cannot be indexed or measured but compare, lengths count
//!   bytes, and a string's byte is a `uint8`;
//! - `range` refuses what Go 1.18 cannot range over (a struct, an integer, a string);
//! - `{{template "name"}}` without a pipeline runs the template with nil, not with dot.
//!
//! The builtins are functions that replace `gotmpl`'s; the rest is a rewrite of the parsed tree
//! ([`go_semantics`]) into calls of functions a template cannot name itself.

use std::sync::Arc;

use gotmpl::parse::{ActionNode, BranchNode, CommandNode, Expr, ListNode, Node, PipeNode, TemplateNode};
use gotmpl::{FuncMap, Value, ValueFunc};

use super::gofmt;

/// Functions the rewritten template calls (see [`go_semantics`]). A template cannot call them itself: they are
/// not among the functions [`super::syntax`] lets a template call.
const PRINT_ACTION: &str = "chunkcache_print_action";
const RANGE_CHECK: &str = "chunkcache_range_check";
const NIL_DOT: &str = "chunkcache_nil_dot";
const UNDEFINED_VARIABLE: &str = "chunkcache_undefined_variable";

/// Go's `html`, `js` and `urlquery`, which take any number of arguments: one string is escaped as it is,
/// anything else is first printed as `fmt.Sprint` prints it (Go's `evalArgs`). `gotmpl` takes exactly one.
pub(super) fn escapers() -> FuncMap {
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

/// An execution error: the key falls back to drone-cache's default key.
fn exec(message: impl Into<String>) -> gotmpl::TemplateError {
    gotmpl::TemplateError::Exec(message.into())
}

/// Go's builtins where `gotmpl`'s behave otherwise (printing, `index`, `len`, `eq` and `ne`), and the
/// functions the rewritten template calls.
pub(super) fn go_builtins() -> FuncMap {
    fn function(f: impl Fn(&[Value]) -> gotmpl::Result<Value> + Send + Sync + 'static) -> ValueFunc {
        Arc::new(f)
    }
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
                [] => Err(exec("wrong number of args for printf: want at least 1 got 0")),
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
                _ => Err(exec("error calling eq: missing argument for comparison")),
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
                [Value::Nil] => Err(exec("len of nil pointer")),
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
        (
            UNDEFINED_VARIABLE.to_owned(),
            function(|args| Err(exec(format!("undefined variable: {}", gofmt::sprint(args))))),
        ),
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
        _ => return Err(exec("error calling eq: incompatible types for comparison")),
    })
}

/// Go's `index`: each index applied in turn to a string (giving its byte, a `uint8`) or a slice; structs
/// cannot be indexed, and no index gives the item itself.
fn go_index(args: &[Value]) -> gotmpl::Result<Value> {
    let Some((item, indices)) = args.split_first() else {
        return Err(exec("wrong number of args for index: want at least 1 got 0"));
    };
    let mut item = item.clone();
    for index in indices {
        item = match &item {
            Value::String(text) => {
                let offset = match index {
                    Value::Int(offset) => usize::try_from(*offset).ok(),
                    Value::Uint(offset) => usize::try_from(*offset).ok(),
                    other => {
                        return Err(exec(format!("cannot index slice/array with type {}", gofmt::type_name(other))));
                    }
                };
                match offset.and_then(|offset| text.as_bytes().get(offset)) {
                    Some(byte) => Value::Uint(u64::from(*byte)),
                    None => return Err(exec(format!("error calling index: index out of range: {index}"))),
                }
            }
            Value::List(_) => item.index(index)?,
            Value::Nil => return Err(exec("error calling index: index of untyped nil")),
            other => return Err(exec(format!("can't index item of type {}", gofmt::type_name(other)))),
        };
    }
    Ok(item)
}

/// The tree with Go's semantics where `gotmpl`'s differ: an action prints its value through
/// [`PRINT_ACTION`], a `range` pipeline ends in [`RANGE_CHECK`], `{{template "name"}}` gets [`NIL_DOT`] for its
/// pipeline, and a pipeline at one of the `undeclared_assignments` (which assigns to a variable never declared,
/// see [`super::syntax::check`]) is [`UNDEFINED_VARIABLE`].
pub(super) fn go_semantics(tree: &ListNode, undeclared_assignments: &[usize]) -> ListNode {
    fn call(pos: gotmpl::parse::Pos, name: &str) -> CommandNode {
        CommandNode { pos, args: vec![Expr::Identifier(pos, name.into())] }
    }
    let pipe = |pipe: &PipeNode| {
        let mut pipe = pipe.clone();
        if pipe.is_assign && undeclared_assignments.contains(&pipe.pos.offset) {
            let names = pipe.decl.iter().map(|name| Value::from(name.as_str())).collect::<Vec<_>>();
            let mut command = call(pipe.pos, UNDEFINED_VARIABLE);
            command.args.push(Expr::String(pipe.pos, gofmt::sprint(&names).into()));
            pipe.commands = vec![command];
        }
        pipe
    };
    let list = |list: &ListNode| go_semantics(list, undeclared_assignments);
    let branch = |branch: &BranchNode| BranchNode {
        pos: branch.pos,
        pipe: pipe(&branch.pipe),
        body: list(&branch.body),
        else_body: branch.else_body.as_ref().map(list),
    };
    let node = |node: &Node| match node {
        Node::List(inner) => Node::List(list(inner)),
        Node::Action(action) if action.pipe.decl.is_empty() => {
            let mut action = action.clone();
            action.pipe.commands.push(call(action.pos, PRINT_ACTION));
            Node::Action(action)
        }
        Node::Action(action) => Node::Action(ActionNode { pos: action.pos, pipe: pipe(&action.pipe) }),
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
            Node::Template(TemplateNode { pos, name: template.name.clone(), pipe: Some(pipe) })
        }
        other => other.clone(),
    };
    ListNode { pos: tree.pos, nodes: tree.nodes.iter().map(node).collect() }
}
