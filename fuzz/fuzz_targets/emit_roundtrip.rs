//! The emitter's round trip: a YAML value is written with `yamlout::to_string`, then read back
//! three ways, and each reading must give the value written:
//! - serde_yaml (YAML 1.2 core schema, the tool's own reader);
//! - a YAML 1.1 reading as PyYAML does it: the output's events (saphyr-parser) with every plain
//!   scalar resolved by PyYAML's implicit resolver regexes and constructed as its SafeConstructor
//!   does (bool, null, int with `_`, `0b`, `0x`, leading-`0` octal and base 60, float, and
//!   timestamp, merge `<<` and value `=`, which the written value never holds);
//! - a YAML 1.1 reading as go-yaml v2 (kubectl, istioctl) does it: its resolve table (`y`, `n`,
//!   `on`, …), Go's base-0 integers after dropping `_` (`0o17`, `0B1`), its float pattern and its
//!   timestamp layouts.
//! Quoted scalars are strings in every reader. PyYAML itself is too slow to call per input, so
//! the two 1.1 resolvers are written out here, from PyYAML's `resolver.py`/`constructor.py` and
//! go-yaml v2's `resolve.go`, independently of `yamlout::plain_is_ambiguous`.
//!
//! The value comes from the input in one of two ways, chosen by its first byte: a tree built with
//! `arbitrary` (strings, words that YAML 1.1 gives meaning to, numbers, bools, nulls, sequences,
//! mappings with scalar keys), or the rest of the input read as YAML through `yamlin` (so seeds
//! can be real YAML files; such a value may hold tags, which `to_string` must refuse).
#![no_main]

use std::sync::LazyLock;

use arbitrary::{Arbitrary, Unstructured};
use istio_canary::yamlout;
use libfuzzer_sys::fuzz_target;
use regex::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_yaml::{Mapping, Number, Value};

/// Strings some YAML reader gives a meaning to when plain, or that need care when written.
const WORDS: &[&str] = &[
    "y",
    "Y",
    "n",
    "N",
    "yes",
    "Yes",
    "YES",
    "no",
    "NO",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "true",
    "False",
    "null",
    "Null",
    "~",
    "",
    "<<",
    "=",
    ".inf",
    "-.Inf",
    "+.inf",
    ".nan",
    "+.nan",
    ".NaN",
    "1_000",
    "0b1_0",
    "0B1",
    "0o17",
    "0O17",
    "017",
    "08",
    "0x1F",
    "0X1F",
    "0x_1F",
    "+1",
    "-0",
    "1:20",
    "1:20.5",
    "-1:20:30",
    "190:20:30",
    "1:60",
    "1.",
    ".5",
    "._5",
    ".5_0",
    "1e3",
    "1e+3",
    "1.0e+16",
    "1.e5",
    "+.5",
    "-.5e-3",
    "1_0.5",
    "2001-12-14",
    "2001-1-2",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10 -5",
    "2001-1-2 3:04:05",
    "1.14.1",
    "1-14-1",
    "0.0.0",
    "a: b",
    "- x",
    "# c",
    "x #c",
    "'",
    "\"",
    "\\",
    "@x",
    "`x",
    "%x",
    "!x",
    "&x",
    "*x",
    "{",
    "}",
    "[",
    "]",
    ",",
    "?",
    "? x",
    ":",
    "x:",
    "-",
    "--- x",
    "...",
    " x",
    "x ",
    "a\nb",
    "a\n",
    "\n",
    "a\n\n",
    " \n",
    "a\r\nb",
    "\t",
    "x\u{85}y",
    "x\u{2028}y",
    "x\u{2029}",
    "\u{feff}x",
    "\u{0}",
    "\u{7f}",
    "é",
    "\u{10ffff}",
];

#[derive(Arbitrary, Debug)]
enum Gen {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Word(u8),
    Joined(u8, u8),
    Seq(Vec<Gen>),
    Map(Vec<(Key, Gen)>),
}

#[derive(Arbitrary, Debug)]
enum Key {
    Str(String),
    Word(u8),
    Int(i64),
    Bool(bool),
    Null,
}

fn word(i: u8) -> String {
    WORDS[usize::from(i) % WORDS.len()].to_string()
}

fn value(g: Gen, depth: usize) -> Value {
    match g {
        Gen::Null => Value::Null,
        Gen::Bool(b) => Value::Bool(b),
        Gen::Int(i) => Value::Number(i.into()),
        Gen::UInt(u) => Value::Number(u.into()),
        Gen::Float(f) => Value::Number(f.into()),
        Gen::Str(s) => Value::String(s),
        Gen::Word(i) => Value::String(word(i)),
        Gen::Joined(a, b) => Value::String(word(a) + &word(b)),
        Gen::Seq(_) | Gen::Map(_) if depth > 24 => Value::Null,
        Gen::Seq(items) => {
            Value::Sequence(items.into_iter().map(|g| value(g, depth + 1)).collect())
        }
        Gen::Map(entries) => {
            let mut m = Mapping::new();
            for (k, v) in entries {
                let k = match k {
                    Key::Str(s) => Value::String(s),
                    Key::Word(i) => Value::String(word(i)),
                    Key::Int(i) => Value::Number(i.into()),
                    Key::Bool(b) => Value::Bool(b),
                    Key::Null => Value::Null,
                };
                m.insert(k, value(v, depth + 1));
            }
            Value::Mapping(m)
        }
    }
}

/// A value as a YAML 1.1 reader builds it.
#[derive(Debug, Clone)]
enum Read {
    Str(String),
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// A type the written value never holds (timestamp, merge, value), or a scalar the reader
    /// fails on.
    Other(&'static str, String),
    Seq(Vec<Read>),
    Map(Vec<(Read, Read)>),
}

type Resolve = fn(&str) -> Read;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap()
}

// PyYAML 6 `resolver.py`, verbatim but for the anchors (`\A…\z`).
static PY_BOOL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?x)\A(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)\z")
});
static PY_FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?x)\A(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))\z")
});
static PY_INT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?x)\A(?:[-+]?0b[0-1_]+
        |[-+]?0[0-7_]+
        |[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+
        |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)\z")
});
static PY_NULL: LazyLock<Regex> = LazyLock::new(|| re(r"(?x)\A(?: ~ |null|Null|NULL | )\z"));
static PY_TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?x)\A(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
        |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
         (?:[Tt]|[\ \t]+)[0-9][0-9]?
         :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
         (?:[\ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)\z")
});

/// PyYAML's resolution of a plain scalar, constructed as SafeConstructor does.
fn pyyaml(s: &str) -> Read {
    let first = s.chars().next();
    let starts = |set: &str| first.is_some_and(|c| set.contains(c));
    if starts("yYnNtTfFoO") && PY_BOOL.is_match(s) {
        return Read::Bool(
            matches!(&s[..1], "y" | "Y" | "t" | "T") || s.eq_ignore_ascii_case("on"),
        );
    }
    if starts("-+0123456789.") && PY_FLOAT.is_match(s) {
        return py_float(s).map_or_else(|| Read::Other("unreadable float", s.into()), Read::Float);
    }
    if starts("-+0123456789") && PY_INT.is_match(s) {
        return py_int(s).map_or_else(|| Read::Other("unreadable int", s.into()), Read::Int);
    }
    if s == "<<" {
        return Read::Other("merge", s.into());
    }
    if (s.is_empty() || starts("~nN")) && PY_NULL.is_match(s) {
        return Read::Null;
    }
    if starts("0123456789") && PY_TIMESTAMP.is_match(s) {
        return Read::Other("timestamp", s.into());
    }
    if s == "=" {
        return Read::Other("value", s.into());
    }
    Read::Str(s.into())
}

fn split_sign(value: &str) -> (i128, &str) {
    match value.as_bytes().first() {
        Some(b'-') => (-1, &value[1..]),
        Some(b'+') => (1, &value[1..]),
        _ => (1, value),
    }
}

fn py_int(s: &str) -> Option<i128> {
    let value = s.replace('_', "");
    let (sign, value) = split_sign(&value);
    let n = if value == "0" {
        0
    } else if let Some(b) = value.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()?
    } else if let Some(h) = value.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if value.starts_with('0') {
        i128::from_str_radix(value, 8).ok()?
    } else if value.contains(':') {
        let mut n: i128 = 0;
        for part in value.split(':') {
            n = n.checked_mul(60)?.checked_add(part.parse().ok()?)?;
        }
        n
    } else {
        value.parse().ok()?
    };
    Some(sign * n)
}

fn py_float(s: &str) -> Option<f64> {
    let value = s.replace('_', "").to_lowercase();
    let (sign, value) = split_sign(&value);
    let sign = sign as f64;
    if value == ".inf" {
        return Some(sign * f64::INFINITY);
    }
    if value == ".nan" {
        return Some(f64::NAN);
    }
    if value.contains(':') {
        let mut n = 0.0;
        for part in value.split(':') {
            n = n * 60.0 + part.parse::<f64>().ok()?;
        }
        return Some(sign * n);
    }
    Some(sign * value.parse::<f64>().ok()?)
}

static GO_FLOAT: LazyLock<Regex> =
    LazyLock::new(|| re(r"\A[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\z"));
static GO_DOT_FLOAT: LazyLock<Regex> =
    LazyLock::new(|| re(r"\A\.[0-9](_?[0-9])*([eE][-+]?[0-9](_?[0-9])*)?\z"));
/// go-yaml v2's timestamp layouts (`2006-1-2T15:4:5.999999999Z07:00`, `2006-1-2t…`,
/// `2006-1-2 15:4:5.999999999`, `2006-1-2`), as a superset: a date, then the end or a time.
static GO_TIMESTAMP: LazyLock<Regex> =
    LazyLock::new(|| re(r"\A[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(\z|[Tt ][0-9])"));

/// go-yaml v2's resolution of a plain scalar.
fn goyaml(s: &str) -> Read {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Read::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Read::Bool(false)
        }
        "" | "~" | "null" | "Null" | "NULL" => return Read::Null,
        ".nan" | ".NaN" | ".NAN" => return Read::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Read::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Read::Float(f64::NEG_INFINITY),
        "<<" => return Read::Other("merge", s.into()),
        _ => {}
    }
    match s.as_bytes()[0] {
        b'.' => {
            if GO_DOT_FLOAT.is_match(s) {
                if let Ok(f) = s.replace('_', "").parse::<f64>() {
                    return Read::Float(f);
                }
            }
        }
        b'0'..=b'9' | b'+' | b'-' => {
            if GO_TIMESTAMP.is_match(s) {
                return Read::Other("timestamp", s.into());
            }
            let plain = s.replace('_', "");
            if let Some(n) = go_int(&plain) {
                return Read::Int(n);
            }
            if GO_FLOAT.is_match(&plain) {
                if let Ok(f) = plain.parse::<f64>() {
                    return Read::Float(f);
                }
            }
        }
        _ => {}
    }
    Read::Str(s.into())
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint(s, 0, 64)`.
fn go_int(s: &str) -> Option<i128> {
    let (sign, body) = split_sign(s);
    let signed = s.starts_with(['+', '-']);
    let (radix, digits) = match body.get(..2) {
        Some("0x" | "0X") => (16, &body[2..]),
        Some("0b" | "0B") => (2, &body[2..]),
        Some("0o" | "0O") => (8, &body[2..]),
        _ if body.len() > 1 && body.starts_with('0') => (8, &body[1..]),
        _ => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let n = sign * i128::from_str_radix(digits, radix).ok()?;
    let fits_signed = i64::try_from(n).is_ok();
    let fits_unsigned = !signed && u64::try_from(n).is_ok();
    (fits_signed || fits_unsigned).then_some(n)
}

/// Reads the one document of `text` with `resolve` for plain scalars.
fn read(text: &str, resolve: Resolve) -> Read {
    let mut stack: Vec<Read> = Vec::new();
    let mut done: Option<Read> = None;
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, _) = next.unwrap_or_else(|e| panic!("the output is not YAML: {e}\n{text}"));
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::DocumentStart(_) => {
                assert!(done.is_none(), "more than one document:\n{text}");
                continue;
            }
            Event::Alias(_) => panic!("an alias in the output:\n{text}"),
            Event::Scalar(v, style, _, tag) => {
                assert!(tag.is_none(), "a tag in the output:\n{text}");
                if style == ScalarStyle::Plain {
                    resolve(&v)
                } else {
                    Read::Str(v.into_owned())
                }
            }
            Event::SequenceStart(_, tag) => {
                assert!(tag.is_none(), "a tag in the output:\n{text}");
                stack.push(Read::Seq(Vec::new()));
                continue;
            }
            Event::MappingStart(_, tag) => {
                assert!(tag.is_none(), "a tag in the output:\n{text}");
                stack.push(Read::Map(Vec::new()));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => stack.pop().expect("balanced events"),
            Event::Nothing => continue,
        };
        match stack.last_mut() {
            None => done = Some(node),
            Some(Read::Seq(items)) => items.push(node),
            Some(Read::Map(entries)) => match entries.last_mut() {
                Some((_, v @ Read::Other("pending", _))) => *v = node,
                _ => entries.push((node, Read::Other("pending", String::new()))),
            },
            Some(_) => unreachable!(),
        }
    }
    done.unwrap_or_else(|| panic!("no document in the output:\n{text}"))
}

fn float_eq(a: f64, b: f64) -> bool {
    a == b && a.is_sign_negative() == b.is_sign_negative() || a.is_nan() && b.is_nan()
}

/// Whether a reading equals the value written; `Err` says where it differs.
fn same(written: &Value, read: &Read, at: &str) -> Result<(), String> {
    let ok = match (written, read) {
        (Value::Null, Read::Null) => true,
        (Value::Bool(a), Read::Bool(b)) => a == b,
        (Value::String(a), Read::Str(b)) => a == b,
        (Value::Number(n), Read::Int(i)) if !n.is_f64() => number_int(n) == Some(*i),
        (Value::Number(n), Read::Float(f)) if n.is_f64() => {
            n.as_f64().is_some_and(|a| float_eq(a, *f))
        }
        (Value::Sequence(a), Read::Seq(b)) => {
            if a.len() != b.len() {
                return Err(format!("{at}: {} items written, {} read", a.len(), b.len()));
            }
            for (i, (a, b)) in a.iter().zip(b).enumerate() {
                same(a, b, &format!("{at}[{i}]"))?;
            }
            true
        }
        (Value::Mapping(a), Read::Map(b)) => {
            if a.len() != b.len() {
                return Err(format!(
                    "{at}: {} entries written, {} read",
                    a.len(),
                    b.len()
                ));
            }
            for (i, ((ka, va), (kb, vb))) in a.iter().zip(b).enumerate() {
                same(ka, kb, &format!("{at} key {i}"))?;
                same(va, vb, &format!("{at}.{ka:?}"))?;
            }
            true
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{at}: wrote {written:?}, read {read:?}"))
    }
}

fn number_int(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Whether a value holds something `to_string` refuses: a tag, or a key that is not a scalar.
fn unwritable(v: &Value) -> bool {
    match v {
        Value::Tagged(_) => true,
        Value::Sequence(items) => items.iter().any(unwritable),
        Value::Mapping(m) => m.iter().any(|(k, v)| {
            matches!(k, Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_)) || unwritable(v)
        }),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = if mode & 1 == 0 {
        let Ok(g) = Gen::arbitrary_take_rest(Unstructured::new(rest)) else {
            return;
        };
        value(g, 0)
    } else {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let Ok(v) = istio_canary::yamlin::from_str::<Value>(text, std::path::Path::new("in.yaml"))
        else {
            return;
        };
        v
    };
    let text = match yamlout::to_string(&input) {
        Ok(text) => text,
        Err(e) => {
            assert!(
                unwritable(&input),
                "to_string refused a writable value: {e}\n{input:?}"
            );
            return;
        }
    };
    assert!(
        !unwritable(&input),
        "to_string wrote an unwritable value:\n{text}"
    );
    let back: Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("serde_yaml cannot read the output: {e}\n{text}"));
    assert_eq!(
        back, input,
        "YAML 1.2 (serde_yaml) reads another value:\n{text}"
    );
    for (reader, resolve) in [
        ("PyYAML", pyyaml as Resolve),
        ("go-yaml v2", goyaml as Resolve),
    ] {
        if let Err(why) = same(&input, &read(&text, resolve), "value") {
            panic!("YAML 1.1 ({reader}) reads another value: {why}\n--- written:\n{text}");
        }
    }
});
