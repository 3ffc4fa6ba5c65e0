//! From YAML text to a `Config`: parse, expand `${VAR}` inside string values, deserialize.
//!
//! Expansion runs on the parsed tree, never on the text, so a variable's value can neither
//! add keys (a newline), cut itself short (`#`), nor be looked up inside a comment. Because
//! an expanded value is always a string, the deserializer lets a string stand for a number
//! or a boolean (`timeout_ms: ${TIMEOUT}`) and a number or boolean for a string, as YAML
//! text itself would; that coercion only ever yields a scalar, so it cannot inject structure.
//!
//! Errors name the field path and, where the text can be followed, the line. They never
//! repeat a scalar from the file: a value in the wrong place may be a secret.

use std::cell::RefCell;
use std::fmt::Write as _;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_norway::{Mapping, Value};

use crate::error::{Error, Result};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// Splits `backends[1].env.TOKEN` into its steps.
pub(super) fn parse_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Seg::Key(key.to_owned()));
        }
        while let Some((n, r)) = rest.split_once(']') {
            if let Ok(i) = n.parse() {
                out.push(Seg::Index(i));
            }
            rest = r.strip_prefix('[').unwrap_or(r);
        }
    }
    out
}

pub(super) fn show_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    s
}

/// ` (line N)` for `path`, or nothing when the text cannot be followed there.
pub(super) fn line_suffix(src: Option<&str>, path: &[Seg]) -> String {
    src.and_then(|s| line_of_path(s, path)).map(|l| format!(" (line {l})")).unwrap_or_default()
}

/// A non-blank, non-comment line: its number, indentation and text.
struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

impl Line<'_> {
    /// The column and text of the mapping key on this line, past any `- ` item markers.
    fn key_part(&self) -> (usize, &str) {
        let mut col = self.indent;
        let mut text = self.text;
        while let Some(rest) = text.strip_prefix('-').filter(|r| r.starts_with(' ')) {
            let trimmed = rest.trim_start();
            col += 1 + rest.len() - trimmed.len();
            text = trimmed;
        }
        (col, text)
    }

    fn is_item(&self) -> bool {
        self.text == "-" || self.text.starts_with("- ")
    }
}

fn has_key(text: &str, key: &str) -> bool {
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_prefix(key)?.strip_prefix('"'))
        .or_else(|| text.strip_prefix('\'').and_then(|t| t.strip_prefix(key)?.strip_prefix('\'')))
        .or_else(|| text.strip_prefix(key));
    unquoted.is_some_and(|r| r.trim_start().starts_with(':'))
}

/// 1-based line where `path` is written, for block-style YAML. Where the text cannot be
/// followed (flow style, a key left out), the deepest step found answers.
pub(super) fn line_of_path(src: &str, path: &[Seg]) -> Option<usize> {
    let lines: Vec<Line<'_>> = src
        .lines()
        .enumerate()
        .filter_map(|(n, l)| {
            let text = l.trim_start();
            let skip = text.is_empty() || text.starts_with('#') || text.starts_with("---");
            (!skip).then(|| Line { number: n + 1, indent: l.len() - text.len(), text: text.trim_end() })
        })
        .collect();
    // Where the enclosing node was found: its line (as an index into `lines`), its column,
    // and whether its first key sits on that same line (`- name: a`).
    let mut at: Option<(usize, usize, bool)> = None;
    let mut found = None;
    for seg in path {
        let hit = match seg {
            Seg::Key(k) => find_key(&lines, at, k),
            Seg::Index(i) => find_item(&lines, at, *i),
        };
        let Some(hit) = hit else { break };
        found = Some(hit.0);
        at = Some(hit);
    }
    found.and_then(|i| lines.get(i)).map(|l| l.number)
}

fn find_key(lines: &[Line<'_>], at: Option<(usize, usize, bool)>, key: &str) -> Option<(usize, usize, bool)> {
    let (start, parent_col) = match at {
        None => (0, None),
        Some((i, col, true)) => (i, Some(col)),
        Some((i, col, false)) => (i + 1, Some(col)),
    };
    let mut block_col = None;
    for (idx, line) in lines.iter().enumerate().skip(start) {
        let first_of_item = at.is_some_and(|(i, _, inline)| inline && i == idx);
        if !first_of_item && parent_col.is_some_and(|c| line.indent <= c) {
            return None;
        }
        let (col, text) = if first_of_item || line.is_item() { line.key_part() } else { (line.indent, line.text) };
        if line.is_item() && !first_of_item {
            // An item of a list nested under some key of this block: not a key here.
            continue;
        }
        let block = *block_col.get_or_insert(col);
        if col == block && has_key(text, key) {
            return Some((idx, col, false));
        }
    }
    None
}

fn find_item(lines: &[Line<'_>], at: Option<(usize, usize, bool)>, nth: usize) -> Option<(usize, usize, bool)> {
    let (i, parent_col, _) = at?;
    let mut dash_col = None;
    let mut seen = 0;
    for (idx, line) in lines.iter().enumerate().skip(i + 1) {
        // A list may sit at its key's own indentation (`backends:` then `- name: a`).
        if line.indent < parent_col || (line.indent == parent_col && !line.is_item()) {
            return None;
        }
        if !line.is_item() || *dash_col.get_or_insert(line.indent) != line.indent {
            continue;
        }
        if seen == nth {
            return Some((idx, line.indent, true));
        }
        seen += 1;
    }
    None
}

/// Expands `${VAR}` and `${VAR:-default}` in one string value; `$$` is a literal `$`. The
/// error names the variable, never a value.
pub(super) fn expand_str(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err("unterminated ${".into());
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err("bad variable reference (want ${NAME} or ${NAME:-default})".into());
            }
            match (lookup(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!("environment variable {name} is not set (use ${{{name}:-default}})"));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands every string value under `value` (mapping keys are left alone).
pub(super) fn expand_tree(
    value: &mut Value,
    path: &mut Vec<Seg>,
    src: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<()> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = expand_str(s, lookup)
                .map_err(|why| Error::Config(format!("{}: {why}{}", show_path(path), line_suffix(Some(src), path))))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                expand_tree(item, path, src, lookup)?;
                path.pop();
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                path.push(Seg::Key(key_text(k)));
                expand_tree(v, path, src, lookup)?;
                path.pop();
            }
        }
        Value::Tagged(t) => expand_tree(&mut t.value, path, src, lookup)?,
        _ => {}
    }
    Ok(())
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "?".into(),
    }
}

/// Deserializes `value` into `T`; an error names the path (and the line in `src`).
pub(super) fn from_tree<T: de::DeserializeOwned>(value: Value, src: &str) -> Result<T> {
    let failed = RefCell::new(None);
    let root = Lenient { value, path: Vec::new(), failed: &failed };
    T::deserialize(root).map_err(|e| {
        let path = failed.take().unwrap_or_default();
        let msg = scrub(&e.to_string());
        let line = line_suffix(Some(src), &path);
        if path.is_empty() {
            Error::Config(format!("{msg}{line}"))
        } else {
            Error::Config(format!("{}: {msg}{line}", show_path(&path)))
        }
    })
}

/// Drops the scalar serde quotes in a message (`invalid type: string "sk-…"`, `invalid
/// value: integer `5``, `unknown variant `x``), keeping what kind of value it was.
pub(super) fn scrub(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    loop {
        let next = ["invalid type: ", "invalid value: ", "unknown variant "]
            .iter()
            .filter_map(|p| rest.find(p).map(|at| (at, *p)))
            .min_by_key(|(at, _)| *at);
        let Some((at, prefix)) = next else { break };
        out.push_str(&rest[..at + prefix.len()]);
        rest = &rest[at + prefix.len()..];
        if prefix == "unknown variant " {
            out.push_str("(value not shown)");
            rest = rest.strip_prefix('`').map_or(rest, |r| r.find('`').map_or("", |end| &r[end + 1..]));
            continue;
        }
        // The kind words (`string`, `floating point`…) run up to the quoted value.
        let kind_end = rest.find(['"', '`', ',']).unwrap_or(rest.len());
        out.push_str(rest[..kind_end].trim_end());
        rest = &rest[kind_end..];
        rest = match rest.chars().next() {
            Some('"') => skip_debug_string(rest),
            Some('`') => rest[1..].find('`').map_or("", |end| &rest[end + 2..]),
            _ => rest,
        };
    }
    out.push_str(rest);
    out
}

/// What follows a Debug-quoted string (`"a\"b"`) at the start of `s`.
fn skip_debug_string(s: &str) -> &str {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return &s[i + 1..],
            _ => {}
        }
    }
    ""
}

/// A `Value` deserializer that records where an error happened and coerces scalars the
/// way YAML text would (see the module comment).
struct Lenient<'a> {
    value: Value,
    path: Vec<Seg>,
    failed: &'a RefCell<Option<Vec<Seg>>>,
}

/// Keeps the innermost place an error came from; outer levels only pass it on.
fn note(failed: &RefCell<Option<Vec<Seg>>>, path: &[Seg]) {
    let mut f = failed.borrow_mut();
    if f.is_none() {
        *f = Some(path.to_vec());
    }
}

/// A string that reads as a YAML number or boolean becomes one; anything else is left as is.
fn as_scalar(value: Value, want_bool: bool) -> Value {
    let Value::String(s) = &value else { return value };
    match serde_norway::from_str::<Value>(s) {
        Ok(v @ Value::Number(_)) if !want_bool => v,
        Ok(v @ Value::Bool(_)) if want_bool => v,
        _ => value,
    }
}

fn as_string(value: Value) -> Value {
    match value {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        other => other,
    }
}

macro_rules! numbers {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            as_scalar(self.value, false).$method(visitor)
        }
    )*};
}

macro_rules! strings {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            as_string(self.value).$method(visitor)
        }
    )*};
}

macro_rules! delegated {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.value.$method(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for Lenient<'_> {
    type Error = serde_norway::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Mapping(m) => {
                visitor.visit_map(LenientMap { iter: m.into_iter(), next: None, path: self.path, failed: self.failed })
            }
            Value::Sequence(s) => {
                visitor.visit_seq(LenientSeq { iter: s.into_iter().enumerate(), path: self.path, failed: self.failed })
            }
            other => other.deserialize_any(visitor),
        }
    }

    numbers!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64);
    strings!(deserialize_char deserialize_str deserialize_string deserialize_identifier);
    delegated!(deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_ignored_any);

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        as_scalar(self.value, true).deserialize_bool(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Self::Error> {
        self.value.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Sequence(_) => self.deserialize_any(visitor),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Mapping(_) => self.deserialize_any(visitor),
            // An empty section (`router:` alone) reads as null; YAML text allowed it as a
            // mapping with every default.
            Value::Null => Lenient { value: Value::Mapping(Mapping::new()), ..self }.deserialize_any(visitor),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.value.deserialize_enum(name, variants, visitor)
    }
}

struct LenientMap<'a> {
    iter: serde_norway::mapping::IntoIter,
    next: Option<(Seg, Value)>,
    path: Vec<Seg>,
    failed: &'a RefCell<Option<Vec<Seg>>>,
}

impl<'de> MapAccess<'de> for LenientMap<'_> {
    type Error = serde_norway::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let Some((k, v)) = self.iter.next() else { return Ok(None) };
        let seg = Seg::Key(key_text(&k));
        let mut at = self.path.clone();
        at.push(seg.clone());
        self.next = Some((seg, v));
        // A key error (an unknown field) is reported at the key itself.
        seed.deserialize(Lenient { value: k, path: at.clone(), failed: self.failed })
            .map(Some)
            .inspect_err(|_| note(self.failed, &at))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        let Some((seg, value)) = self.next.take() else {
            return Err(de::Error::custom("value without a key"));
        };
        let mut path = self.path.clone();
        path.push(seg);
        seed.deserialize(Lenient { value, path: path.clone(), failed: self.failed })
            .inspect_err(|_| note(self.failed, &path))
    }
}

struct LenientSeq<'a> {
    iter: std::iter::Enumerate<std::vec::IntoIter<Value>>,
    path: Vec<Seg>,
    failed: &'a RefCell<Option<Vec<Seg>>>,
}

impl<'de> SeqAccess<'de> for LenientSeq<'_> {
    type Error = serde_norway::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error> {
        let Some((i, value)) = self.iter.next() else { return Ok(None) };
        let mut path = self.path.clone();
        path.push(Seg::Index(i));
        seed.deserialize(Lenient { value, path: path.clone(), failed: self.failed })
            .map(Some)
            .inspect_err(|_| note(self.failed, &path))
    }
}
