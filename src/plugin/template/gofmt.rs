//! Go's `fmt`, as `text/template` prints with it (`print`, `println`, `printf`, an action's value, and the
//! arguments of `html`, `js` and `urlquery`), over template values. `gotmpl` 0.6 prints its own way in too many
//! places for cache keys to stay identical (structs as maps, floats as Rust prints them, flags and verbs on the
//! wrong type, `%T`, `%x` of floats, `% x`, `%+q`, `%!(EXTRA …)`, `%!(NOVERB)`), so this module follows Go's
//! `fmt/print.go`, `fmt/format.go` and `strconv`'s float and quote formatting instead; the template corpus in
//! `tests/support/template_corpus.txt` checks it against Go's own.
//!
//! Go's types of template values: `int` ([`Value::Int`]), `uint8` ([`Value::Uint`], a byte that `index`
//! takes from a string), `float64`, `string`, `bool`, drone-cache's metadata structs ([`Value::Map`], named
//! and ordered by [`drone::go_struct_type`]) and the nil interface ([`Value::Nil`]).

use gotmpl::Value;

use super::drone;

/// `fmt.Sprint`: the operands in their default format, with a space between two that are not strings.
pub(super) fn sprint(args: &[Value]) -> String {
    let mut printer = Printer::default();
    for (index, arg) in args.iter().enumerate() {
        let is_string = |value: &Value| matches!(value, Value::String(_));
        if index > 0 && !is_string(arg) && !is_string(&args[index - 1]) {
            printer.out.push(' ');
        }
        printer.print(arg, 'v');
    }
    printer.out
}

/// `fmt.Sprintln`: the operands in their default format, with spaces between and a newline after.
pub(super) fn sprintln(args: &[Value]) -> String {
    let mut printer = Printer::default();
    for (index, arg) in args.iter().enumerate() {
        if index > 0 {
            printer.out.push(' ');
        }
        printer.print(arg, 'v');
    }
    printer.out.push('\n');
    printer.out
}

/// `fmt.Sprintf`, with Go's reports of what is wrong in the output (`%!d(string=x)`, `%!s(MISSING)`,
/// `%!(EXTRA int=1)`, `%!(BADINDEX)`, `%!(NOVERB)`) rather than errors.
pub(super) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut printer = Printer::default();
    let bytes = format.as_bytes();
    let end = bytes.len();
    let mut arg_num = 0;
    let mut reordered = false;
    let mut i = 0;
    while i < end {
        let literal = i;
        while i < end && bytes[i] != b'%' {
            i += 1;
        }
        printer.out.push_str(&format[literal..i]);
        if i >= end {
            break;
        }
        i += 1;
        printer.flags = Flags::default();
        let flags = &mut printer.flags;
        while i < end {
            match bytes[i] {
                b'#' => flags.sharp = true,
                b'0' => flags.zero = !flags.minus,
                b'+' => flags.plus = true,
                b'-' => (flags.minus, flags.zero) = (true, false),
                b' ' => flags.space = true,
                _ => break,
            }
            i += 1;
        }
        let mut good_arg_num = true;
        let mut after_index;
        (arg_num, i, after_index) = arg_number(format, i, arg_num, args.len(), &mut reordered, &mut good_arg_num);
        if i < end && bytes[i] == b'*' {
            i += 1;
            let (width, ok, next) = int_from_arg(args, arg_num);
            arg_num = next;
            if !ok {
                printer.out.push_str("%!(BADWIDTH)");
            }
            printer.flags.minus |= width < 0;
            printer.flags.zero &= width >= 0;
            printer.flags.wid = usize::try_from(width.unsigned_abs()).ok().filter(|_| ok);
            after_index = false;
        } else {
            let (width, next) = parse_num(bytes, i);
            i = next;
            printer.flags.wid = width;
            good_arg_num &= !(after_index && width.is_some());
        }
        if i + 1 < end && bytes[i] == b'.' {
            i += 1;
            good_arg_num &= !after_index;
            (arg_num, i, after_index) = arg_number(format, i, arg_num, args.len(), &mut reordered, &mut good_arg_num);
            if i < end && bytes[i] == b'*' {
                i += 1;
                let (precision, ok, next) = int_from_arg(args, arg_num);
                arg_num = next;
                let ok = ok && precision >= 0;
                if !ok {
                    printer.out.push_str("%!(BADPREC)");
                }
                printer.flags.prec = usize::try_from(precision.unsigned_abs()).ok().filter(|_| ok);
                after_index = false;
            } else {
                let (precision, next) = parse_num(bytes, i);
                i = next;
                printer.flags.prec = Some(precision.unwrap_or(0));
            }
        }
        if !after_index {
            (arg_num, i, _) = arg_number(format, i, arg_num, args.len(), &mut reordered, &mut good_arg_num);
        }
        let Some(verb) = format[i..].chars().next() else {
            printer.out.push_str("%!(NOVERB)");
            break;
        };
        i += verb.len_utf8();
        match verb {
            '%' => printer.out.push('%'),
            _ if !good_arg_num => printer.out.push_str(&format!("%!{verb}(BADINDEX)")),
            _ if arg_num >= args.len() => printer.out.push_str(&format!("%!{verb}(MISSING)")),
            _ => {
                if verb == 'v' {
                    // `%#v` is Go syntax and `%+v` names struct fields.
                    let flags = &mut printer.flags;
                    (flags.sharp_v, flags.sharp) = (flags.sharp, false);
                    (flags.plus_v, flags.plus) = (flags.plus, false);
                }
                printer.print(&args[arg_num], verb);
                arg_num += 1;
            }
        }
    }
    if !reordered && arg_num < args.len() {
        printer.flags = Flags::default();
        printer.out.push_str("%!(EXTRA ");
        for (index, arg) in args[arg_num..].iter().enumerate() {
            if index > 0 {
                printer.out.push_str(", ");
            }
            if !matches!(arg, Value::Nil) {
                printer.out.push_str(type_name(arg));
                printer.out.push('=');
            }
            printer.print(arg, 'v');
        }
        printer.out.push(')');
    }
    printer.out
}

/// Go's `parsenum`: the decimal number at `start`, if any, and where it ends; `None` for a number too large.
fn parse_num(bytes: &[u8], start: usize) -> (Option<usize>, usize) {
    let mut number: usize = 0;
    let mut i = start;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        if number > 1_000_000 {
            return (None, bytes.len());
        }
        number = number * 10 + usize::from(bytes[i] - b'0');
        i += 1;
    }
    ((i > start).then_some(number), i)
}

/// Go's `argNumber`: an explicit `[n]` at `i` picks the argument; returns the argument, where the format goes
/// on, and whether there was an index. A bad index clears `good`.
fn arg_number(
    format: &str,
    i: usize,
    arg_num: usize,
    count: usize,
    reordered: &mut bool,
    good: &mut bool,
) -> (usize, usize, bool) {
    let bytes = format.as_bytes();
    if bytes.get(i) != Some(&b'[') {
        return (arg_num, i, false);
    }
    *reordered = true;
    // Go's parseArgNumber: a number, one-indexed, up to the closing bracket.
    let rest = &bytes[i..];
    let parsed = rest.iter().position(|&b| b == b']').map(|close| match parse_num(rest, 1) {
        (Some(number), end) if end == close => (number.checked_sub(1), close + 1, true),
        _ => (None, close + 1, false),
    });
    match parsed {
        Some((Some(index), width, true)) if index < count => (index, i + width, true),
        Some((_, width, ok)) => {
            *good = false;
            (arg_num, i + width, ok)
        }
        None => {
            *good = false;
            (arg_num, i + 1, false)
        }
    }
}

/// Go's `intFromArg`: the argument as a width or precision, whether it is an integer, and the next argument.
fn int_from_arg(args: &[Value], arg_num: usize) -> (i64, bool, usize) {
    let Some(arg) = args.get(arg_num) else { return (0, false, arg_num) };
    let number = match arg {
        Value::Int(number) => Some(*number),
        Value::Uint(number) => i64::try_from(*number).ok(),
        _ => None,
    };
    match number {
        Some(number) if number.unsigned_abs() <= 1_000_000 => (number, true, arg_num + 1),
        _ => (0, false, arg_num + 1),
    }
}

/// The Go type of a value, as `%T` prints it.
pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Uint(_) => "uint8",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::Map(fields) => drone::go_struct_type(fields).map_or("map[string]interface {}", |(name, _)| name),
        Value::List(_) => "[]interface {}",
        Value::Function(_) => "func",
    }
}

/// A verb's flags, width and precision (Go's `fmtFlags`, `wid` and `prec`).
#[derive(Debug, Default, Clone, Copy)]
struct Flags {
    sharp: bool,
    zero: bool,
    plus: bool,
    minus: bool,
    space: bool,
    /// `%#v`.
    sharp_v: bool,
    /// `%+v`.
    plus_v: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

/// Go's `pp` and `fmt`: the output so far and the flags of the verb being printed.
#[derive(Debug, Default)]
struct Printer {
    out: String,
    flags: Flags,
}

impl Printer {
    /// Go's `printArg` and `printValue`.
    fn print(&mut self, value: &Value, verb: char) {
        match (value, verb) {
            (Value::Nil, 'T' | 'v') => self.pad("<nil>"),
            (_, 'T') => self.fmt_s(type_name(value)),
            (_, 'p') | (Value::Nil, _) => self.bad_verb(value, verb),
            (Value::Bool(value), 't' | 'v') => self.pad(if *value { "true" } else { "false" }),
            (Value::Bool(_), _) => self.bad_verb(value, verb),
            (Value::Int(number), _) => self.fmt_integer(value, *number as u64, true, verb),
            (Value::Uint(number), _) => self.fmt_integer(value, *number, false, verb),
            (Value::Float(number), _) => self.fmt_float_verb(value, *number, verb),
            (Value::String(text), _) => self.fmt_string(value, text, verb),
            (Value::Map(fields), _) => match drone::go_struct_type(fields) {
                Some(go_type) => self.fmt_struct(fields, go_type, verb),
                None => self.pad(&value.to_string()),
            },
            // No template here makes a list, a function or another map; `gotmpl`'s printing is enough.
            (Value::List(_) | Value::Function(_), _) => self.pad(&value.to_string()),
        }
    }

    /// A struct: its fields in Go's order, each with the verb; `%+v` and `%#v` name them.
    fn fmt_struct(
        &mut self,
        fields: &std::collections::BTreeMap<std::sync::Arc<str>, Value>,
        (type_name, names): (&str, &[&str]),
        verb: char,
    ) {
        if self.flags.sharp_v {
            self.out.push_str(type_name);
        }
        self.out.push('{');
        for (index, &name) in names.iter().enumerate() {
            if index > 0 {
                self.out.push_str(if self.flags.sharp_v { ", " } else { " " });
            }
            if self.flags.plus_v || self.flags.sharp_v {
                self.out.push_str(name);
                self.out.push(':');
            }
            if let Some(field) = fields.get(name) {
                self.print(field, verb);
            }
        }
        self.out.push('}');
    }

    /// `%!verb(type=value)`: a verb the value's type has no meaning for.
    fn bad_verb(&mut self, value: &Value, verb: char) {
        self.out.push_str("%!");
        self.out.push(verb);
        self.out.push('(');
        if matches!(value, Value::Nil) {
            self.out.push_str("<nil>");
        } else {
            self.out.push_str(type_name(value));
            self.out.push('=');
            self.print(value, 'v');
        }
        self.out.push(')');
    }

    /// Go's `writePadding`: `n` spaces, or zeros with the `0` flag.
    fn write_padding(&mut self, n: usize) {
        let pad = if self.flags.zero { '0' } else { ' ' };
        self.out.extend(std::iter::repeat_n(pad, n));
    }

    /// Go's `pad`: `text` padded to the width (counted in runes), on the left unless `-`.
    fn pad(&mut self, text: &str) {
        let padding = self.flags.wid.unwrap_or(0).saturating_sub(text.chars().count());
        if self.flags.minus {
            self.out.push_str(text);
            self.write_padding(padding);
        } else {
            self.write_padding(padding);
            self.out.push_str(text);
        }
    }

    /// `pad` without zeros (Go keeps zero padding off for numbers that pad themselves).
    fn pad_spaces(&mut self, text: &str) {
        let zero = std::mem::take(&mut self.flags.zero);
        self.pad(text);
        self.flags.zero = zero;
    }

    /// Go's `truncateString`: `text` cut to the precision, counted in runes.
    fn truncated<'t>(&self, text: &'t str) -> &'t str {
        match self.flags.prec {
            Some(precision) => text.char_indices().nth(precision).map_or(text, |(cut, _)| &text[..cut]),
            None => text,
        }
    }

    /// Go's `fmtS`: the string cut to the precision, padded.
    fn fmt_s(&mut self, text: &str) {
        self.pad(self.truncated(text));
    }

    fn fmt_string(&mut self, value: &Value, text: &str, verb: char) {
        match verb {
            'v' if self.flags.sharp_v => self.fmt_q(text),
            'v' | 's' => self.fmt_s(text),
            'x' => self.fmt_sx(text, false),
            'X' => self.fmt_sx(text, true),
            'q' => self.fmt_q(text),
            _ => self.bad_verb(value, verb),
        }
    }

    /// Go's `fmtSbx`: the bytes in hex, `% x` spaced, `%#x` with `0x`.
    fn fmt_sx(&mut self, text: &str, upper: bool) {
        let bytes = &text.as_bytes()[..self.flags.prec.map_or(text.len(), |precision| precision.min(text.len()))];
        let digits = hex_digits(upper);
        let prefix = if upper { "0X" } else { "0x" };
        let Flags { sharp, space, minus, wid, .. } = self.flags;
        let mut width = 2 * bytes.len();
        if width == 0 {
            self.write_padding(wid.unwrap_or(0));
            return;
        }
        if space {
            width = if sharp { 2 * width } else { width } + bytes.len() - 1;
        } else if sharp {
            width += 2;
        }
        let padding = wid.unwrap_or(0).saturating_sub(width);
        if !minus {
            self.write_padding(padding);
        }
        if sharp {
            self.out.push_str(prefix);
        }
        for (index, byte) in bytes.iter().enumerate() {
            if space && index > 0 {
                self.out.push(' ');
                if sharp {
                    self.out.push_str(prefix);
                }
            }
            self.out.push(char::from(digits[usize::from(byte >> 4)]));
            self.out.push(char::from(digits[usize::from(byte & 0xF)]));
        }
        if minus {
            self.write_padding(padding);
        }
    }

    /// Go's `fmtQ`: a double-quoted Go string (`%+q` ASCII only), or back-quoted with `#` when it can be.
    fn fmt_q(&mut self, text: &str) {
        let text = self.truncated(text);
        if self.flags.sharp && can_backquote(text) {
            self.pad(&format!("`{text}`"));
        } else {
            let mut quoted = String::from('"');
            for c in text.chars() {
                escape_rune(&mut quoted, c, '"', self.flags.plus);
            }
            quoted.push('"');
            self.pad(&quoted);
        }
    }

    /// Go's `fmtInteger` by verb; `bits` is the value as Go's `uint64(v)`.
    fn fmt_integer(&mut self, value: &Value, bits: u64, signed: bool, verb: char) {
        match verb {
            'v' if self.flags.sharp_v && !signed => {
                let sharp = std::mem::replace(&mut self.flags.sharp, true);
                self.integer(bits, 16, signed, verb, false);
                self.flags.sharp = sharp;
            }
            'v' | 'd' => self.integer(bits, 10, signed, verb, false),
            'b' => self.integer(bits, 2, signed, verb, false),
            'o' | 'O' => self.integer(bits, 8, signed, verb, false),
            'x' => self.integer(bits, 16, signed, verb, false),
            'X' => self.integer(bits, 16, signed, verb, true),
            'c' => self.pad(&rune_of(bits).to_string()),
            'q' => {
                let mut quoted = String::from('\'');
                escape_rune(&mut quoted, rune_of(bits), '\'', self.flags.plus);
                quoted.push('\'');
                self.pad(&quoted);
            }
            'U' => self.fmt_unicode(bits),
            _ => self.bad_verb(value, verb),
        }
    }

    /// Go's `fmt.fmtInteger`: digits in `base`, zero-extended to the precision (or to the width with `0`),
    /// with `#`'s prefix and the sign.
    fn integer(&mut self, bits: u64, base: u64, signed: bool, verb: char, upper: bool) {
        let negative = signed && (bits as i64) < 0;
        let mut magnitude = if negative { bits.wrapping_neg() } else { bits };
        let Flags { sharp, zero, plus, space, wid, prec, .. } = self.flags;
        let precision = match prec {
            Some(0) if magnitude == 0 => {
                let zero = std::mem::take(&mut self.flags.zero);
                self.write_padding(wid.unwrap_or(0));
                self.flags.zero = zero;
                return;
            }
            Some(precision) => precision,
            None if zero && wid.is_some() => wid.unwrap_or(0).saturating_sub(usize::from(negative || plus || space)),
            None => 0,
        };
        let digits = hex_digits(upper);
        let mut reversed = Vec::new();
        loop {
            reversed.push(digits[(magnitude % base) as usize]);
            magnitude /= base;
            if magnitude == 0 {
                break;
            }
        }
        while reversed.len() < precision {
            reversed.push(b'0');
        }
        if sharp {
            match base {
                2 => reversed.extend_from_slice(b"b0"),
                8 if reversed.last() != Some(&b'0') => reversed.push(b'0'),
                16 => reversed.extend_from_slice(if upper { b"X0" } else { b"x0" }),
                _ => {}
            }
        }
        if verb == 'O' {
            reversed.extend_from_slice(b"o0");
        }
        if negative {
            reversed.push(b'-');
        } else if plus {
            reversed.push(b'+');
        } else if space {
            reversed.push(b' ');
        }
        reversed.reverse();
        self.pad_spaces(&String::from_utf8(reversed).unwrap_or_default());
    }

    /// Go's `fmtUnicode`: `U+0041`, with `#` the character too.
    fn fmt_unicode(&mut self, bits: u64) {
        let precision = self.flags.prec.filter(|&precision| precision > 4).unwrap_or(4);
        let mut text = format!("U+{bits:0precision$X}");
        if self.flags.sharp
            && let Some(c) = u32::try_from(bits).ok().and_then(char::from_u32).filter(|&c| is_print(c))
        {
            text.push_str(&format!(" '{c}'"));
        }
        self.pad_spaces(&text);
    }

    fn fmt_float_verb(&mut self, value: &Value, number: f64, verb: char) {
        match verb {
            'v' => self.fmt_float(number, 'g', -1),
            'b' | 'g' | 'G' | 'x' | 'X' => self.fmt_float(number, verb, -1),
            'f' | 'e' | 'E' | 'F' => self.fmt_float(number, verb, 6),
            _ => self.bad_verb(value, verb),
        }
    }

    /// Go's `fmt.fmtFloat`: `strconv.FormatFloat` with the precision, then the sign, `#` and padding.
    fn fmt_float(&mut self, number: f64, verb: char, precision: i64) {
        let Flags { sharp, zero, plus, space, wid, prec, .. } = self.flags;
        let precision = prec.map_or(precision, |precision| precision as i64);
        let formatted = format_float(number, verb, precision);
        let mut num = if formatted.starts_with(['-', '+']) { formatted } else { format!("+{formatted}") };
        if space && num.starts_with('+') && !plus {
            num.replace_range(..1, " ");
        }
        if num[1..].starts_with(['I', 'N']) {
            if num[1..].starts_with('N') && !space && !plus {
                num.remove(0);
            }
            self.pad_spaces(&num);
            return;
        }
        if sharp && verb != 'b' {
            let mut digits = match verb {
                'g' | 'G' | 'x' if precision < 0 => 6,
                'g' | 'G' | 'x' => precision,
                _ => 0,
            };
            let mut tail = String::new();
            let mut has_point = false;
            let mut saw_nonzero = false;
            for (index, c) in num.char_indices().skip(1) {
                match c {
                    '.' => has_point = true,
                    'p' | 'P' => {
                        tail = num[index..].to_owned();
                        break;
                    }
                    'e' | 'E' if verb != 'x' && verb != 'X' => {
                        tail = num[index..].to_owned();
                        break;
                    }
                    _ => {
                        saw_nonzero |= c != '0';
                        if saw_nonzero {
                            digits -= 1;
                        }
                    }
                }
            }
            num.truncate(num.len() - tail.len());
            if !has_point {
                if num.len() == 2 && num.ends_with('0') {
                    digits -= 1;
                }
                num.push('.');
            }
            num.extend(std::iter::repeat_n('0', usize::try_from(digits).unwrap_or(0)));
            num.push_str(&tail);
        }
        if plus || !num.starts_with('+') {
            let length = num.chars().count();
            match wid {
                Some(width) if zero && width > length => {
                    self.out.push_str(&num[..1]);
                    self.write_padding(width - length);
                    self.out.push_str(&num[1..]);
                }
                _ => self.pad(&num),
            }
        } else {
            self.pad(&num[1..]);
        }
    }
}

/// Go's `strconv.FormatFloat(number, verb, precision, 64)`; a negative precision is the shortest that reads
/// back as the same number.
fn format_float(number: f64, verb: char, precision: i64) -> String {
    if number.is_nan() {
        return "NaN".to_owned();
    }
    if number.is_infinite() {
        return if number > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let sign = if number.is_sign_negative() { "-" } else { "" };
    match verb {
        'b' => {
            let (mantissa, exponent) = binary_parts(number);
            format!("{sign}{mantissa}p{:+}", exponent - 52)
        }
        'x' | 'X' => format!("{sign}{}", hex_float(number, verb, precision)),
        'f' | 'F' if precision >= 0 => format!("{sign}{:.*}", precision as usize, number.abs()),
        _ => {
            let shortest = precision < 0;
            let digits = match (verb, shortest) {
                (_, true) => Decimal::shortest(number),
                ('e' | 'E', false) => Decimal::rounded(number, precision as usize + 1),
                (_, false) => Decimal::rounded(number, (precision as usize).max(1)),
            };
            let precision = match (verb, shortest) {
                ('e' | 'E', true) => digits.len() as i64 - 1,
                ('f' | 'F', true) => (digits.len() as i64 - digits.point).max(0),
                ('g' | 'G', true) => digits.len() as i64,
                ('g' | 'G', false) => precision.max(1),
                _ => precision,
            };
            let body = match verb {
                'e' | 'E' => digits.exponent_form(precision, verb),
                'f' | 'F' => digits.fixed_form(precision),
                _ => {
                    let mut exponent_precision = precision;
                    if exponent_precision > digits.len() as i64 && digits.len() as i64 >= digits.point {
                        exponent_precision = digits.len() as i64;
                    }
                    if shortest {
                        exponent_precision = 6;
                    }
                    let exponent = digits.point - 1;
                    if exponent < -4 || exponent >= exponent_precision {
                        let precision = precision.min(digits.len() as i64);
                        digits.exponent_form(precision - 1, if verb == 'g' { 'e' } else { 'E' })
                    } else {
                        let precision = if precision > digits.point { digits.len() as i64 } else { precision };
                        digits.fixed_form((precision - digits.point).max(0))
                    }
                }
            };
            format!("{sign}{body}")
        }
    }
}

/// A float's mantissa, with the implicit bit, and its binary exponent (Go's `mant` and `exp` in `ftoa`).
fn binary_parts(number: f64) -> (u64, i64) {
    let bits = number.to_bits();
    let exponent = ((bits >> 52) & 0x7FF) as i64;
    let mantissa = bits & ((1 << 52) - 1);
    match exponent {
        0 => (mantissa, 1 - 1023),
        _ => (mantissa | (1 << 52), exponent - 1023),
    }
}

/// Go's `fmtX`: `0x1.8p+01`, rounded to `precision` hex digits when it is 0 to 14.
fn hex_float(number: f64, verb: char, precision: i64) -> String {
    let (mut mantissa, mut exponent) = binary_parts(number);
    if mantissa == 0 {
        exponent = 0;
    }
    mantissa <<= 60 - 52;
    while mantissa != 0 && mantissa & (1 << 60) == 0 {
        mantissa <<= 1;
        exponent -= 1;
    }
    if (0..15).contains(&precision) {
        let shift = precision as u32 * 4;
        let extra = (mantissa << shift) & ((1 << 60) - 1);
        mantissa >>= 60 - shift;
        if extra | (mantissa & 1) > 1 << 59 {
            mantissa += 1;
        }
        mantissa <<= 60 - shift;
        if mantissa & (1 << 61) != 0 {
            mantissa >>= 1;
            exponent += 1;
        }
    }
    let digits = hex_digits(verb == 'X');
    let mut out = format!("0{verb}{}", (mantissa >> 60) & 1);
    mantissa <<= 4;
    let fraction_digits = match precision {
        precision if precision < 0 && mantissa != 0 => Some(None),
        precision if precision > 0 => Some(Some(precision)),
        _ => None,
    };
    if let Some(count) = fraction_digits {
        out.push('.');
        let mut written = 0;
        while count.map_or(mantissa != 0, |count| written < count) {
            out.push(char::from(digits[((mantissa >> 60) & 15) as usize]));
            mantissa <<= 4;
            written += 1;
        }
    }
    out.push(if verb == 'X' { 'P' } else { 'p' });
    out.push(if exponent < 0 { '-' } else { '+' });
    out.push_str(&format!("{:02}", exponent.abs()));
    out
}

/// A float's significant decimal digits (no trailing zeros) and where the point goes: `digits[..point]` is
/// the integer part (Go's `decimalSlice`). Zero has no digits.
struct Decimal {
    digits: Vec<u8>,
    point: i64,
}

impl Decimal {
    /// The shortest digits that read back as `number`.
    fn shortest(number: f64) -> Self {
        Self::from_scientific(&format!("{:e}", number.abs()))
    }

    /// `number` rounded to `significant` digits.
    fn rounded(number: f64, significant: usize) -> Self {
        Self::from_scientific(&format!("{:.*e}", significant - 1, number.abs()))
    }

    /// From Rust's `{:e}` form (`1.25e-7`).
    fn from_scientific(text: &str) -> Self {
        let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
        let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        let point = if digits.is_empty() { 0 } else { exponent.parse::<i64>().unwrap_or(0) + 1 };
        Self { digits, point }
    }

    fn len(&self) -> usize {
        self.digits.len()
    }

    fn digit(&self, index: i64) -> char {
        usize::try_from(index).ok().and_then(|index| self.digits.get(index)).map_or('0', |&digit| char::from(digit))
    }

    /// Go's `fmtE`: `d.ddde±dd` with `precision` digits after the point.
    fn exponent_form(&self, precision: i64, verb: char) -> String {
        let mut out = String::from(self.digit(0));
        if precision > 0 {
            out.push('.');
            out.extend((1..=precision).map(|index| self.digit(index)));
        }
        let exponent = if self.digits.is_empty() { 0 } else { self.point - 1 };
        out.push(verb);
        out.push(if exponent < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exponent.abs()));
        out
    }

    /// Go's `fmtF`: `ddd.ddd` with `precision` digits after the point.
    fn fixed_form(&self, precision: i64) -> String {
        let mut out = String::new();
        if self.point > 0 {
            out.extend((0..self.point).map(|index| self.digit(index)));
        } else {
            out.push('0');
        }
        if precision > 0 {
            out.push('.');
            out.extend((0..precision).map(|index| self.digit(self.point + index)));
        }
        out
    }
}

/// Go's `ldigits` and `udigits`.
fn hex_digits(upper: bool) -> &'static [u8; 16] {
    if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" }
}

/// Go's `rune(c)` for `%c`, `%q` and `%U` of an integer: not a valid character gives U+FFFD.
fn rune_of(bits: u64) -> char {
    u32::try_from(bits).ok().and_then(char::from_u32).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Go's `strconv.CanBackquote`.
fn can_backquote(text: &str) -> bool {
    text.chars().all(|c| c != '\u{FEFF}' && c != '`' && c != '\u{7F}' && (c >= ' ' || c == '\t'))
}

/// Go's `appendEscapedRune`: `c` as it appears between `quote`s, escaped when not printable (or not ASCII).
fn escape_rune(out: &mut String, c: char, quote: char, ascii_only: bool) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if if ascii_only { c.is_ascii() && is_print(c) } else { is_print(c) } {
        out.push(c);
        return;
    }
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{C}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{B}' => out.push_str("\\v"),
        c if c < ' ' || c == '\u{7F}' => out.push_str(&format!("\\x{:02x}", u32::from(c))),
        c if u32::from(c) < 0x10000 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
        c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
    }
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space. Without
/// Unicode's category tables, this counts as not printable what Go does among the characters a key can hold:
/// controls, spaces other than U+0020, format characters and private use; unassigned code points count as
/// printable.
fn is_print(c: char) -> bool {
    const FORMAT: &[(u32, u32)] = &[
        (0xAD, 0xAD),
        (0x600, 0x605),
        (0x61C, 0x61C),
        (0x6DD, 0x6DD),
        (0x70F, 0x70F),
        (0x890, 0x891),
        (0x8E2, 0x8E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
        (0xE000, 0xF8FF),
        (0xF0000, 0x10FFFF),
    ];
    let code = u32::from(c);
    c == ' '
        || !(c.is_control()
            || c.is_whitespace()
            || (code & 0xFFFE) == 0xFFFE
            || FORMAT.iter().any(|&(first, last)| (first..=last).contains(&code)))
}
