//! From a parsed (and expanded, see `env`) YAML tree to a `Config`.
//!
//! Because an expanded value is always a string, the deserializer lets a string stand for a number
//! or a boolean (`timeout_ms: ${TIMEOUT}`) and a number or boolean for a string, as YAML
//! text itself would; that coercion only ever yields a scalar, so it cannot inject structure.
//!
//! Errors name the field path and, where the text can be followed, the line. They never
//! repeat a scalar from the file: a value in the wrong place may be a secret.

use std::cell::RefCell;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_norway::{Mapping, Value};

use super::lines::line_suffix;
use super::path::{Seg, key_seg, show_path};
use crate::error::{Error, Result};

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
        let seg = key_seg(&k);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_keeps_kind_and_expectation() {
        assert_eq!(
            scrub("invalid type: string \"a\\\"b, expected u64\", expected usize"),
            "invalid type: string, expected usize"
        );
        assert_eq!(scrub("invalid value: integer `-5`, expected u32"), "invalid value: integer, expected u32");
        assert_eq!(
            scrub("unknown variant `secret`, expected `open` or `closed`"),
            "unknown variant (value not shown), expected `open` or `closed`"
        );
        assert_eq!(
            scrub("unknown field `comand`, expected one of `name`"),
            "unknown field `comand`, expected one of `name`"
        );
    }
}
