//! YAML text that means the same to every reader: the one YAML writer of the tool.
//!
//! Owns: turning a `serde_yaml::Value` into block-style YAML whose every scalar reads back as the
//! same type and value in a YAML 1.1 reader (kubectl's and istioctl's go-yaml, PyYAML) and in a
//! YAML 1.2 reader (serde_yaml, that is `yaml_serde`, see `Cargo.toml`). The layout is
//! serde_yaml 0.9's (libyaml's emitter with unlimited width), byte for byte, so that output
//! changes only where serde_yaml would have written a value that some reader misreads: `on`,
//! `yes`, `1:20`, `1_000`, `0x_1F`, `2001-12-14`, `<<`, `=`, … are quoted, floats get a dot and
//! a signed exponent (`1.0e+16`), and strings with NEL, LS, PS or CR are double-quoted with
//! escapes. Keys follow the same rules.
//! Must not: read YAML, decide content, or fall back silently: a value it cannot write (a
//! non-scalar key, a tagged value) is an error naming where it is.

use serde_yaml::{Mapping, Number, Value};

use crate::error::{Error, Result};

/// One YAML document (no leading `---`) for a value.
pub fn to_string(value: &Value) -> Result<String> {
    let mut e = Emitter::new();
    e.node(value, Ctx::ROOT, &mut Vec::new())?;
    e.write_indent();
    Ok(e.out)
}

/// One YAML document (no leading `---`) for a mapping.
pub fn mapping_to_string(map: &Mapping) -> Result<String> {
    let mut e = Emitter::new();
    if map.is_empty() {
        e.empty_flow("{", "}");
    } else {
        e.block_mapping(map, &mut Vec::new())?;
    }
    e.write_indent();
    Ok(e.out)
}

/// True when a string written plain (unquoted) would read back as something else (a bool, a
/// null, a number, a timestamp, a merge or value key) in a YAML 1.1 or a YAML 1.2 reader.
pub fn plain_is_ambiguous(s: &str) -> bool {
    core_schema_non_string(s) || yaml11_non_string(s)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// Where a node sits (libyaml's `mapping_context` and `simple_key_context`).
#[derive(Clone, Copy)]
struct Ctx {
    mapping: bool,
    simple_key: bool,
}

impl Ctx {
    const ROOT: Ctx = Ctx {
        mapping: false,
        simple_key: false,
    };
}

/// A step of the path to a value, for error messages.
enum Seg {
    Key(String),
    Index(usize),
}

fn path_text(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    if s.is_empty() {
        "the top level".to_string()
    } else {
        format!("`{s}`")
    }
}

/// The subset of libyaml's emitter state that block output depends on.
struct Emitter {
    out: String,
    column: usize,
    indent: Option<usize>,
    indents: Vec<Option<usize>>,
    whitespace: bool,
    indention: bool,
}

const BEST_INDENT: usize = 2;
/// libyaml writes a key longer than this (in bytes) as an explicit `? key` entry.
const MAX_SIMPLE_KEY: usize = 128;

impl Emitter {
    fn new() -> Self {
        Emitter {
            out: String::new(),
            column: 0,
            indent: None,
            indents: Vec::new(),
            whitespace: true,
            indention: true,
        }
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        self.indent = match self.indent {
            None => Some(if flow { BEST_INDENT } else { 0 }),
            Some(i) if !indentless => Some(i + BEST_INDENT),
            same => same,
        };
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().flatten();
    }

    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn write_indent(&mut self) {
        let indent = self.indent.unwrap_or(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(
        &mut self,
        indicator: &str,
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        for c in indicator.chars() {
            self.put(c);
        }
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    fn node(&mut self, value: &Value, ctx: Ctx, path: &mut Vec<Seg>) -> Result<()> {
        match value {
            Value::Null => self.scalar("null", Style::Plain, ctx),
            Value::Bool(b) => self.scalar(if *b { "true" } else { "false" }, Style::Plain, ctx),
            Value::Number(n) => self.scalar(&number_text(n), Style::Plain, ctx),
            Value::String(s) => self.scalar(s, string_style(s), ctx),
            Value::Sequence(seq) if seq.is_empty() => self.empty_flow("[", "]"),
            Value::Sequence(seq) => {
                self.increase_indent(false, ctx.mapping && !self.indention);
                for (i, item) in seq.iter().enumerate() {
                    self.write_indent();
                    self.write_indicator("-", true, false, true);
                    path.push(Seg::Index(i));
                    self.node(item, Ctx::ROOT, path)?;
                    path.pop();
                }
                self.pop_indent();
            }
            Value::Mapping(map) if map.is_empty() => self.empty_flow("{", "}"),
            Value::Mapping(map) => self.block_mapping(map, path)?,
            Value::Tagged(tagged) => {
                return Err(Error::new(format!(
                    "cannot write YAML: the value at {} has the tag `{}`, and istio-canary writes no tags",
                    path_text(path),
                    tagged.tag
                ))
                .with_help("give the value without a tag: a plain string, number, boolean, list or map"))
            }
        }
        Ok(())
    }

    fn block_mapping(&mut self, map: &Mapping, path: &mut Vec<Seg>) -> Result<()> {
        self.increase_indent(false, false);
        for (key, value) in map {
            let (text, style) = match key {
                Value::Null => ("null".to_string(), Style::Plain),
                Value::Bool(b) => (b.to_string(), Style::Plain),
                Value::Number(n) => (number_text(n), Style::Plain),
                Value::String(s) => (s.clone(), string_style(s)),
                other => {
                    return Err(Error::new(format!(
                        "cannot write YAML: a key at {} is a {}; only scalar keys can be written",
                        path_text(path),
                        kind_name(other)
                    ))
                    .with_help("use a string as the key"))
                }
            };
            self.write_indent();
            let simple = text.len() <= MAX_SIMPLE_KEY && !analyze(&text).multiline;
            let key_ctx = Ctx {
                mapping: true,
                simple_key: simple,
            };
            if simple {
                self.scalar(&text, style, key_ctx);
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, true);
                self.scalar(&text, style, key_ctx);
                self.write_indent();
                self.write_indicator(":", true, false, true);
            }
            path.push(Seg::Key(text));
            let value_ctx = Ctx {
                mapping: true,
                simple_key: false,
            };
            self.node(value, value_ctx, path)?;
            path.pop();
        }
        self.pop_indent();
        Ok(())
    }

    fn empty_flow(&mut self, open: &str, close: &str) {
        self.write_indicator(open, true, true, false);
        self.write_indicator(close, false, false, false);
    }

    fn scalar(&mut self, text: &str, requested: Style, ctx: Ctx) {
        let a = analyze(text);
        let mut style = requested;
        if ctx.simple_key && a.multiline {
            style = Style::Double;
        }
        if style == Style::Plain && (!a.block_plain_allowed || (text.is_empty() && ctx.simple_key))
        {
            style = Style::Single;
        }
        if style == Style::Single && !a.single_quoted_allowed {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block_allowed || ctx.simple_key) {
            style = Style::Double;
        }
        self.increase_indent(true, false);
        match style {
            Style::Plain => self.write_plain(text),
            Style::Single => self.write_single(text),
            Style::Double => self.write_double(text),
            Style::Literal => self.write_literal(text),
        }
        self.pop_indent();
    }

    fn write_plain(&mut self, text: &str) {
        if !self.whitespace && !text.is_empty() {
            self.put(' ');
        }
        for c in text.chars() {
            self.put(c);
        }
        self.whitespace = false;
        self.indention = false;
    }

    /// Single-quoted, never multi-line: `string_style` sends every string with a line break to
    /// a literal block or to double quotes.
    fn write_single(&mut self, text: &str) {
        self.write_indicator("'", true, false, false);
        for c in text.chars() {
            if c == '\'' {
                self.put('\'');
            }
            self.put(c);
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double(&mut self, text: &str) {
        self.write_indicator("\"", true, false, false);
        for c in text.chars() {
            if !is_printable(c) || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                match c {
                    '\0' => self.put('0'),
                    '\u{7}' => self.put('a'),
                    '\u{8}' => self.put('b'),
                    '\t' => self.put('t'),
                    '\n' => self.put('n'),
                    '\u{b}' => self.put('v'),
                    '\u{c}' => self.put('f'),
                    '\r' => self.put('r'),
                    '\u{1b}' => self.put('e'),
                    '"' => self.put('"'),
                    '\\' => self.put('\\'),
                    '\u{85}' => self.put('N'),
                    '\u{a0}' => self.put('_'),
                    '\u{2028}' => self.put('L'),
                    '\u{2029}' => self.put('P'),
                    _ => {
                        let code = u32::from(c);
                        let escaped = if code <= 0xFF {
                            format!("x{code:02X}")
                        } else if code <= 0xFFFF {
                            format!("u{code:04X}")
                        } else {
                            format!("U{code:08X}")
                        };
                        for d in escaped.chars() {
                            self.put(d);
                        }
                    }
                }
            } else {
                self.put(c);
            }
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_literal(&mut self, text: &str) {
        self.write_indicator("|", true, false, false);
        if text.starts_with(' ') || text.starts_with(is_break) {
            self.write_indicator(&BEST_INDENT.to_string(), false, false, false);
        }
        let chomp = if !text.ends_with(is_break) {
            Some("-")
        } else {
            let mut rest = text.chars().rev().skip(1);
            match rest.next() {
                None => Some("+"),
                Some(c) if is_break(c) => Some("+"),
                Some(_) => None,
            }
        };
        if let Some(chomp) = chomp {
            self.write_indicator(chomp, false, false, false);
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for c in text.chars() {
            if is_break(c) {
                self.put_break();
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Sequence(_) => "sequence",
        Value::Mapping(_) => "mapping",
        Value::Tagged(_) => "tagged value",
        _ => "scalar",
    }
}

/// libyaml's printable set (`IS_PRINTABLE`).
fn is_printable(c: char) -> bool {
    matches!(u32::from(c),
        0x0A | 0x20..=0x7E | 0xA0..=0xD7FF | 0x10000..=0x10FFFF)
        || (0xE000..=0xFFFD).contains(&u32::from(c)) && c != '\u{FEFF}'
}

/// Line breaks to a YAML 1.1 reader (libyaml `IS_BREAK`, PyYAML).
fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// What libyaml's `yaml_emitter_analyze_scalar` finds (block context only).
struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

fn analyze(text: &str) -> Analysis {
    if text.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let mut block_indicators = text.starts_with("---") || text.starts_with("...");
    let (mut line_breaks, mut special) = (false, false);
    let (mut leading_space, mut leading_break) = (false, false);
    let (mut trailing_space, mut trailing_break) = (false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let blankz = |c: Option<char>| match c {
        None => true,
        Some(c) => c == ' ' || c == '\t' || is_break(c),
    };
    let mut preceded_by_whitespace = true;
    let mut chars = text.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let followed_by_whitespace = blankz(next);
        let last = next.is_none();
        if i == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(c)
                || ((c == '?' || c == ':' || c == '-') && followed_by_whitespace)
            {
                block_indicators = true;
            }
        } else if (c == ':' && followed_by_whitespace) || (c == '#' && preceded_by_whitespace) {
            block_indicators = true;
        }
        if !is_printable(c) {
            special = true;
        }
        if is_break(c) {
            line_breaks = true;
        }
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            leading_break |= i == 0;
            trailing_break |= last;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = blankz(Some(c));
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// The style asked of the emitter for a string: serde_yaml 0.9's choice, plus quoting for what
/// only a YAML 1.1 reader misreads.
fn string_style(s: &str) -> Style {
    // CR, NEL, LS and PS are line breaks to YAML 1.1 readers and (except CR) not to YAML 1.2
    // ones; escapes are the only form both read alike.
    if s.contains(['\r', '\u{85}', '\u{2028}', '\u{2029}']) {
        return Style::Double;
    }
    if s.contains('\n') {
        return Style::Literal;
    }
    if plain_is_ambiguous(s) {
        return Style::Single;
    }
    Style::Plain
}

/// A number as text both YAML versions read as the same number. Integers are decimal; floats are
/// serde_yaml's shortest round-trip form, with `.0` added to a bare mantissa and a sign to the
/// exponent (`1e16` is a string to PyYAML, `1.0e+16` a float to everyone).
fn number_text(n: &Number) -> String {
    let text = n.to_string();
    if !n.is_f64() {
        return text;
    }
    match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => {
            let dot = if mantissa.contains('.') { "" } else { ".0" };
            let sign = if exponent.starts_with(['-', '+']) {
                ""
            } else {
                "+"
            };
            format!("{mantissa}{dot}e{sign}{exponent}")
        }
        None => text,
    }
}

// ---------------------------------------------------------------------------------------------
// What a plain scalar resolves to.
// ---------------------------------------------------------------------------------------------

/// serde_yaml 0.9's own resolution of a plain scalar (its `visit_untagged_scalar`), under which
/// it quotes: null, bool, int (decimal, `0x`, `0o`, `0b`, `+`), float, and `0`-led digits.
fn core_schema_non_string(s: &str) -> bool {
    if matches!(
        s,
        "" | "~"
            | "null"
            | "Null"
            | "NULL"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
    ) {
        return true;
    }
    if digits_but_not_number(s) || serde_int(s) {
        return true;
    }
    serde_float(s)
}

fn digits_but_not_number(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    s.len() > 1 && s.starts_with('0') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

fn serde_int(s: &str) -> bool {
    const PREFIXES: [(&str, u32); 3] = [("0x", 16), ("0o", 8), ("0b", 2)];
    // parse_unsigned_int
    let unpositive = s.strip_prefix('+').unwrap_or(s);
    let mut unsigned = None;
    for (prefix, radix) in PREFIXES {
        if let Some(rest) = unpositive.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                unsigned = Some(false);
                break;
            }
            if u128::from_str_radix(rest, radix).is_ok() {
                unsigned = Some(true);
                break;
            }
        }
    }
    let unsigned = unsigned.unwrap_or_else(|| {
        !unpositive.starts_with(['+', '-']) && unpositive.parse::<u128>().is_ok()
    });
    // parse_negative_int
    let negative = PREFIXES.iter().any(|(prefix, radix)| {
        s.strip_prefix('-')
            .and_then(|n| n.strip_prefix(prefix))
            .is_some_and(|rest| i128::from_str_radix(&format!("-{rest}"), *radix).is_ok())
    }) || s.parse::<i128>().is_ok();
    unsigned || negative
}

fn serde_float(s: &str) -> bool {
    let unsigned = match s.strip_prefix('+') {
        Some(u) if u.starts_with(['+', '-']) => return false,
        Some(u) => u,
        None => s,
    };
    matches!(unsigned, ".inf" | ".Inf" | ".INF")
        || matches!(s, "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN" | ".NAN")
        || unsigned.parse::<f64>().is_ok_and(f64::is_finite)
}

/// What YAML 1.1 readers resolve to a non-string: the 1.1 type repository (bool, null, int,
/// float, timestamp, merge, value) as PyYAML and go-yaml v2 implement it. A superset where they
/// differ: quoting a string that did not need it changes nothing a reader sees.
fn yaml11_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "~", "null", "Null", "NULL", "",
        "<<", "=", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
        ".nan", ".NaN", ".NAN", "+.nan", "+.NaN", "+.NAN", "-.nan", "-.NaN", "-.NAN",
    ];
    WORDS.contains(&s) || yaml11_number(s) || yaml11_timestamp(s)
}

/// Ints and floats of YAML 1.1 (PyYAML) and go-yaml v2, which both allow `_` between digits:
/// `0b1_0`, `017`, `0x_1F`, `0X1F`, `1_000`, `1:20`, `1:20.5`, `1.`, `.5`, `1e3`, `+1`.
fn yaml11_number(s: &str) -> bool {
    if !s.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-' || c == '.') {
        return false;
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    let body = plain.strip_prefix(['+', '-']).unwrap_or(&plain);
    let all = |t: &str, f: fn(&u8) -> bool| t.as_bytes().iter().all(f);
    let digits = |t: &str| !t.is_empty() && all(t, u8::is_ascii_digit);
    if let Some(p) = body.get(..2) {
        let rest = &body[2..];
        match p {
            "0b" | "0B" => return all(rest, |b| *b == b'0' || *b == b'1'),
            "0o" | "0O" => return all(rest, |b| (b'0'..=b'7').contains(b)),
            "0x" | "0X" => return all(rest, u8::is_ascii_hexdigit),
            _ => {}
        }
    }
    // Base 60: `1:20`, `-1:20:30.5`.
    if let Some((head, tail)) = body.split_once(':') {
        let (sexa, frac) = match tail.split_once('.') {
            Some((sexa, frac)) => (sexa, Some(frac)),
            None => (tail, None),
        };
        return digits(head)
            && sexa.split(':').all(|part| digits(part) && part.len() <= 2)
            && frac.is_none_or(|f| all(f, u8::is_ascii_digit));
    }
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (body, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (digits(int) || int.is_empty())
                && (frac.is_empty() || digits(frac))
                && !(int.is_empty() && frac.is_empty())
        }
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// `2001-12-14`, `2001-12-14t21:59:43.10-05:00`, `2001-1-2 3:04:05`: four digits, `-`, one or
/// two, `-`, one or two, then the end or a time separator.
fn yaml11_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| {
        b.len() >= from + n && b[from..from + n].iter().all(u8::is_ascii_digit)
    };
    if !(digits(0, 4) && b.get(4) == Some(&b'-')) {
        return false;
    }
    let mut i = 5;
    for part in 0..2 {
        let n = if digits(i, 2) {
            2
        } else if digits(i, 1) {
            1
        } else {
            return false;
        };
        i += n;
        if part == 0 {
            if b.get(i) != Some(&b'-') {
                return false;
            }
            i += 1;
        }
    }
    matches!(b.get(i), None | Some(b'T' | b't' | b' ' | b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    fn map_of(pairs: &[(&str, Value)]) -> Value {
        let mut m = Mapping::new();
        for (k, v) in pairs {
            m.insert(Value::String((*k).to_string()), v.clone());
        }
        Value::Mapping(m)
    }

    /// Writes `s` as a value and as a key, reads both back with serde_yaml (YAML 1.2) and
    /// returns the value line.
    fn write_string(s: &str) -> String {
        let doc = map_of(&[("k", Value::String(s.to_string()))]);
        let text = to_string(&doc).unwrap();
        assert_eq!(serde_yaml::from_str::<Value>(&text).unwrap(), doc, "{text}");
        let mut as_key = Mapping::new();
        as_key.insert(Value::String(s.to_string()), Value::Bool(true));
        let key_text = mapping_to_string(&as_key).unwrap();
        assert_eq!(
            serde_yaml::from_str::<Value>(&key_text).unwrap(),
            Value::Mapping(as_key),
            "{key_text}"
        );
        text
    }

    fn assert_quoted(cases: &[&str]) {
        for s in cases {
            let text = write_string(s);
            assert!(
                text.starts_with("k: '") || text.starts_with("k: \""),
                "{s:?} was written plain: {text}"
            );
        }
    }

    #[test]
    fn yaml11_booleans_are_quoted() {
        assert_quoted(&[
            "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off",
            "Off", "OFF", "true", "True", "TRUE", "false", "False", "FALSE",
        ]);
        assert_eq!(write_string("on"), "k: 'on'\n");
    }

    #[test]
    fn nulls_are_quoted() {
        assert_quoted(&["~", "null", "Null", "NULL", ""]);
        assert_eq!(write_string(""), "k: ''\n");
    }

    #[test]
    fn integers_of_either_version_are_quoted() {
        assert_quoted(&[
            "0o17",
            "017",
            "0x1F",
            "0X1F",
            "0x_1F",
            "0b101",
            "0b1_0",
            "-0b101",
            "1_000",
            "+1",
            "-1",
            "1:20",
            "-1:20:30",
            "190:20:30",
            "12",
            "0",
            "1_",
        ]);
        assert_eq!(write_string("1_000"), "k: '1_000'\n");
        assert_eq!(write_string("1:20"), "k: '1:20'\n");
    }

    #[test]
    fn floats_of_either_version_are_quoted() {
        assert_quoted(&[
            "1e3",
            "1E3",
            "1.5e-3",
            ".5",
            "1.",
            "-.5",
            ".inf",
            "-.Inf",
            "+.INF",
            ".nan",
            ".NaN",
            "1_0.5",
            "1:20.5",
            "6.8523015e+5",
            "685.230_15e+03",
        ]);
    }

    #[test]
    fn timestamps_merge_and_value_keys_are_quoted() {
        assert_quoted(&[
            "2001-12-14",
            "2001-12-14t21:59:43.10-05:00",
            "2001-12-14 21:59:43.10 -5",
            "2002-1-2",
            "<<",
            "=",
        ]);
    }

    #[test]
    fn indicators_spaces_and_control_characters_are_quoted() {
        assert_quoted(&[
            "- a",
            "?",
            "? a",
            ":",
            ": a",
            ",a",
            "[a",
            "]a",
            "{a",
            "}a",
            "#a",
            "&a",
            "*a",
            "!a",
            "|a",
            ">a",
            "'a",
            "\"a",
            "%a",
            "@a",
            "`a",
            "a: b",
            "a #b",
            "a:",
            " a",
            "a ",
            "a\tb",
            "\u{1}",
            "\u{7f}",
            "\u{feff}a",
            "a\u{85}b",
            "a\u{2028}b",
            "a\u{2029}b",
            "a\rb",
            "---",
            "...",
            "--- a",
        ]);
        assert_eq!(write_string("a\u{2028}b"), "k: \"a\\Lb\"\n");
        assert_eq!(write_string("a\tb"), "k: \"a\\tb\"\n");
    }

    #[test]
    fn ordinary_strings_stay_plain() {
        for s in [
            "istio-system",
            "1.14.1",
            "1-14-1",
            "v1",
            "a:b",
            "a#b",
            "-a",
            ":a",
            "?a",
            "1.0.0",
            "docker.io/istio/pilot:1.14.1",
            "yess",
            "onn",
            "0xg",
            "_1",
            "2001-12-14x",
            "a'b",
            "a\"b",
            "ü",
            "😀",
        ] {
            let text = write_string(s);
            assert_eq!(text, format!("k: {s}\n"));
        }
    }

    #[test]
    fn multi_line_strings_are_literal_blocks_like_serde_yaml() {
        for (s, want) in [
            ("a\nb", "k: |-\n  a\n  b\n"),
            ("a\nb\n", "k: |\n  a\n  b\n"),
            ("a\nb\n\n", "k: |+\n  a\n  b\n\n"),
            (" a\nb", "k: |2-\n   a\n  b\n"),
            ("\na", "k: |2-\n\n  a\n"),
            ("a \nb", "k: \"a \\nb\"\n"),
        ] {
            assert_eq!(write_string(s), want, "{s:?}");
        }
    }

    #[test]
    fn numbers_bools_and_nulls_read_alike() {
        let doc = map_of(&[
            ("int", yaml("15012")),
            ("neg", yaml("-3")),
            ("big", yaml("18446744073709551615")),
            ("float", yaml("1.5")),
            ("exp", Value::Number(1e16.into())),
            ("small", Value::Number(1.5e-7.into())),
            ("bool", Value::Bool(false)),
            ("null", Value::Null),
        ]);
        let text = to_string(&doc).unwrap();
        assert_eq!(
            text,
            "int: 15012\nneg: -3\nbig: 18446744073709551615\nfloat: 1.5\nexp: 1.0e+16\nsmall: 1.5e-7\nbool: false\n'null': null\n"
        );
        assert_eq!(serde_yaml::from_str::<Value>(&text).unwrap(), doc);
    }

    #[test]
    fn non_scalar_keys_and_tags_are_errors() {
        let mut inner = Mapping::new();
        inner.insert(yaml("[a]"), Value::Null);
        let doc = map_of(&[("metadata", Value::Mapping(inner))]);
        assert_eq!(
            to_string(&doc).unwrap_err().message,
            "cannot write YAML: a key at `metadata` is a sequence; only scalar keys can be written"
        );
        let tagged = map_of(&[("spec", yaml("{x: [1, !thing 2]}"))]);
        assert_eq!(
            to_string(&tagged).unwrap_err().message,
            "cannot write YAML: the value at `spec.x[1]` has the tag `!thing`, and istio-canary writes no tags"
        );
    }

    #[test]
    fn long_and_multi_line_keys_are_explicit_like_serde_yaml() {
        let long = "k".repeat(129);
        for key in [long.as_str(), "a\nb", "x"] {
            let mut m = Mapping::new();
            m.insert(Value::String(key.to_string()), yaml("[1, {a: b}]"));
            let doc = Value::Mapping(m);
            assert_eq!(
                to_string(&doc).unwrap(),
                serde_yaml::to_string(&doc).unwrap()
            );
        }
    }

    /// A small deterministic generator of YAML values, for comparing with serde_yaml.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[(self.next() % items.len() as u64) as usize]
        }

        fn string(&mut self) -> String {
            const PARTS: &[&str] = &[
                "a",
                "b",
                "istio",
                "-",
                "?",
                ":",
                " ",
                "  ",
                "#",
                "'",
                "\"",
                "\n",
                "\n\n",
                "\t",
                ",",
                "[",
                "]",
                "{",
                "}",
                "&",
                "*",
                "!",
                "|",
                ">",
                "%",
                "@",
                "`",
                "1",
                "0",
                "0x",
                "0o",
                "e",
                ".",
                "_",
                "~",
                "null",
                "true",
                "on",
                "yes",
                "<<",
                "=",
                "2001-12-14",
                "ü",
                "😀",
                "\u{85}",
                "\u{2028}",
                "\u{feff}",
                "\u{1}",
                "---",
                "...",
                "\\",
                "+",
            ];
            let n = self.next() % 5;
            (0..n).map(|_| *self.pick(PARTS)).collect()
        }

        fn value(&mut self, depth: u32) -> Value {
            let pick = if depth > 3 {
                self.next() % 5
            } else {
                self.next() % 8
            };
            match pick {
                0 => Value::Null,
                1 => Value::Bool(self.next() % 2 == 0),
                2 => Value::Number(((self.next() % 2000) as i64 - 1000).into()),
                3 => Value::Number((((self.next() % 20000) as f64) / 64.0 - 100.0).into()),
                4 => Value::String(self.string()),
                5 => Value::Sequence(
                    (0..self.next() % 4)
                        .map(|_| self.value(depth + 1))
                        .collect(),
                ),
                _ => {
                    let mut m = Mapping::new();
                    for _ in 0..self.next() % 4 {
                        let key = if self.next() % 6 == 0 {
                            self.value(5)
                        } else {
                            Value::String(self.string())
                        };
                        m.insert(key, self.value(depth + 1));
                    }
                    Value::Mapping(m)
                }
            }
        }
    }

    /// True if the value holds a scalar serde_yaml writes so that some reader misreads it.
    fn holds_unsafe_scalar(v: &Value) -> bool {
        match v {
            Value::String(s) => {
                (yaml11_non_string(s) && !core_schema_non_string(s))
                    || s.contains(['\r', '\u{85}', '\u{2028}', '\u{2029}'])
            }
            Value::Sequence(seq) => seq.iter().any(holds_unsafe_scalar),
            Value::Mapping(m) => m
                .iter()
                .any(|(k, v)| holds_unsafe_scalar(k) || holds_unsafe_scalar(v)),
            _ => false,
        }
    }

    #[test]
    fn same_bytes_as_serde_yaml_except_for_unsafe_scalars() {
        let mut gen = Gen(0x9E37_79B9_7F4A_7C15);
        let (mut same, mut differ) = (0, 0);
        for _ in 0..20_000 {
            let value = gen.value(0);
            let ours = to_string(&value).unwrap();
            let theirs = serde_yaml::to_string(&value).unwrap();
            if holds_unsafe_scalar(&value) {
                differ += 1;
            } else {
                same += 1;
                assert_eq!(ours, theirs, "{value:?}");
            }
            assert_eq!(
                serde_yaml::from_str::<Value>(&ours).unwrap(),
                value,
                "{ours}"
            );
        }
        assert!(same > 5_000 && differ > 1_000, "{same} {differ}");
    }
}
