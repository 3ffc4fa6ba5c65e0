//! A validating scanner for the one shape the hot path reads: the top-level members of a
//! JSON object, each value kept as raw text.
//!
//! Through serde_json, classifying a message cost about 2,700 instructions: field names go
//! through its identifier visitors, every string through a word-at-a-time search whose setup
//! outweighs the few bytes of a key, and each nested raw value through a heap-allocated
//! stack. This scanner reads the same grammar byte by byte with no allocation. It takes only
//! what it is sure of, and answers `None` for the rest (invalid JSON, a key with escapes,
//! nesting deeper than [`MAX_DEPTH`]): the caller then asks serde_json, whose answer and
//! error message stay the reference. So anything accepted here is valid JSON that serde_json
//! reads the same way, and hostile input still gets serde_json's own error.

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Deeper than this the scanner gives up (serde_json takes up to 128 levels): a recursion
/// bound far below what a backend thread's stack allows.
const MAX_DEPTH: u32 = 64;

/// Walks the members of the JSON object that is the whole of `text` (whitespace aside),
/// calling `each(key, raw value)` in order. `None` when the text is not an object this
/// scanner takes, or when `each` says `None`.
pub(super) fn members<'a>(text: &'a str, mut each: impl FnMut(&'a str, &'a str) -> Option<()>) -> Option<()> {
    members_at(text, |key, at| {
        let end = value(text.as_bytes(), at, 1)?;
        each(key, text.get(at..end)?)?;
        Some(end)
    })
}

/// [`members`] where `each(key, at)` reads the value starting at byte `at` itself (with
/// [`value_at`] or [`object_at`]) and returns where it ends: a caller can look inside one
/// value while it is validated, instead of walking it twice.
pub(super) fn members_at<'a>(text: &'a str, each: impl FnMut(&'a str, usize) -> Option<usize>) -> Option<()> {
    let b = text.as_bytes();
    let end = object_at(text, ws(b, 0), 0, each)?;
    (ws(b, end) == b.len()).then_some(())
}

/// The value starting at byte `at` of `text`, a member of an object at nesting `depth`:
/// where it ends.
pub(super) fn value_at(text: &str, at: usize, depth: u32) -> Option<usize> {
    value(text.as_bytes(), at, depth + 1)
}

/// The object starting at byte `at` of `text` (at nesting `depth`), member by member as in
/// [`members_at`] (`each` is told the member's key and where its value starts, at nesting
/// `depth + 1`); where the object ends.
pub(super) fn object_at<'a>(
    text: &'a str,
    at: usize,
    depth: u32,
    mut each: impl FnMut(&'a str, usize) -> Option<usize>,
) -> Option<usize> {
    let b = text.as_bytes();
    if b.get(at) != Some(&b'{') || depth >= MAX_DEPTH {
        return None;
    }
    let mut i = ws(b, at + 1);
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    loop {
        let (end, escaped) = string(b, i)?;
        if escaped {
            return None;
        }
        let key = text.get(i + 1..end - 1)?;
        i = ws(b, each(key, colon(b, end)?)?);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => return Some(i + 1),
            _ => return None,
        }
    }
}

/// The text of a JSON string with no escapes, without its quotes.
pub(super) fn plain_string(raw: &str) -> Option<&str> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// `raw`, already validated, as serde_json's borrowed raw value. serde_json builds one only
/// while deserializing; this hands it the text through the same private protocol its own
/// `RawValue` deserializers use (a one-entry map under its token), so no byte is scanned
/// again. Should a serde_json release change that protocol, the text is parsed instead
/// (slower, same result); a unit test notices the change.
pub(super) fn raw_value(raw: &str) -> Option<&RawValue> {
    <&RawValue>::deserialize(Handover(raw)).ok().or_else(|| serde_json::from_str(raw).ok())
}

/// The name serde_json's raw values are asked for under.
const RAW_TOKEN: &str = "$serde_json::private::RawValue";

struct Handover<'a>(&'a str);

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a raw value request")
    }
}

impl std::error::Error for Refused {}

impl de::Error for Refused {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Refused
    }
}

impl<'de> Deserializer<'de> for Handover<'de> {
    type Error = Refused;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, v: V) -> Result<V::Value, Refused> {
        if name != RAW_TOKEN {
            return Err(Refused);
        }
        v.visit_map(OneEntry(Some(self.0)))
    }

    serde::forward_to_deserialize_any! {
        bool u8 u16 u32 u64 u128 i8 i16 i32 i64 i128 f32 f64 char str string seq
        bytes byte_buf map struct option unit ignored_any unit_struct tuple_struct tuple enum identifier
    }
}

/// The map `{TOKEN: raw}` serde_json's raw value visitor expects.
struct OneEntry<'a>(Option<&'a str>);

impl<'de> MapAccess<'de> for OneEntry<'de> {
    type Error = Refused;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Refused> {
        if self.0.is_none() {
            return Ok(None);
        }
        seed.deserialize(de::value::BorrowedStrDeserializer::new(RAW_TOKEN)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Refused> {
        let raw = self.0.take().ok_or(Refused)?;
        seed.deserialize(de::value::BorrowedStrDeserializer::new(raw))
    }
}

#[inline(always)]
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// After a key ending at `i`: the `:` and the whitespace around it; where the value starts.
#[inline(always)]
fn colon(b: &[u8], i: usize) -> Option<usize> {
    let i = ws(b, i);
    (b.get(i) == Some(&b':')).then(|| ws(b, i + 1))
}

/// The string starting at `i`: where it ends (past its closing quote) and whether it holds
/// escapes. Control characters are refused, as JSON requires.
#[inline(always)]
fn string(b: &[u8], i: usize) -> Option<(usize, bool)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut i = i + 1;
    let mut escaped = false;
    loop {
        i += plain_run(b.get(i..)?);
        match *b.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i += match *b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                    b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => 6,
                    _ => return None,
                };
            }
            0..=0x1f => return None,
            _ => i += 1,
        }
    }
}

/// How many bytes at the start of `b` need no attention inside a string (not a quote, a
/// backslash or a control character). Eight at a time while eight remain: a string's bytes
/// are most of a message's.
#[inline(always)]
fn plain_run(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `x` below `n` (exact for the lowest such byte, which is
    // the only one read: a borrow can only flag bytes above it).
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let special = below(w ^ (ONES * u64::from(b'"')), 1) | below(w ^ (ONES * u64::from(b'\\')), 1) | below(w, 0x20);
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + b[i..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).unwrap_or(b.len() - i)
}

/// The value starting at `i` (no whitespace before it): where it ends.
fn value(b: &[u8], i: usize, depth: u32) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string(b, i).map(|(end, _)| end),
        b'{' if depth < MAX_DEPTH => {
            let mut i = ws(b, i + 1);
            if b.get(i) == Some(&b'}') {
                return Some(i + 1);
            }
            loop {
                let (end, _) = string(b, i)?;
                i = ws(b, value(b, colon(b, end)?, depth + 1)?);
                match *b.get(i)? {
                    b',' => i = ws(b, i + 1),
                    b'}' => return Some(i + 1),
                    _ => return None,
                }
            }
        }
        b'[' if depth < MAX_DEPTH => {
            let mut i = ws(b, i + 1);
            if b.get(i) == Some(&b']') {
                return Some(i + 1);
            }
            loop {
                i = ws(b, value(b, i, depth + 1)?);
                match *b.get(i)? {
                    b',' => i = ws(b, i + 1),
                    b']' => return Some(i + 1),
                    _ => return None,
                }
            }
        }
        b't' => literal(b, i, b"true"),
        b'f' => literal(b, i, b"false"),
        b'n' => literal(b, i, b"null"),
        b'-' | b'0'..=b'9' => number(b, i),
        _ => None,
    }
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    (b.get(i..i + word.len())? == word).then_some(i + word.len())
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match b.get(i)? {
        b'0' => i + 1,
        _ => digits(i)?,
    };
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = digits(i)?;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Option<Vec<(&str, &str)>> {
        let mut out = Vec::new();
        members(text, |k, v| {
            out.push((k, v));
            Some(())
        })?;
        Some(out)
    }

    #[test]
    fn reads_the_members_of_an_object_as_raw_text() {
        let got = all(r#" { "a" : 1 , "b":[true,false,null,{"x":"y\n"}], "c":-0.5e+3,"d":{}} "#);
        assert_eq!(
            got.expect("valid"),
            [("a", "1"), ("b", r#"[true,false,null,{"x":"y\n"}]"#), ("c", "-0.5e+3"), ("d", "{}")]
        );
        assert_eq!(all("{}").expect("empty"), []);
    }

    #[test]
    fn takes_only_what_serde_json_reads_the_same_way() {
        for bad in [
            "", "{", "{}x", "[]", r#"{"a":}"#, r#"{"a":1,}"#, r#"{"a" 1}"#, r#"{"a":01}"#, r#"{"a":1.}"#,
            r#"{"a":-}"#, r#"{"a":1e}"#, r#"{"a":tru}"#, "{\"a\":\"\u{1}\"}", r#"{"a":"\x"}"#,
            r#"{"a":"\u12G4"}"#, r#"{"\u0061":1}"#, r#"{"a":[1,]}"#, r#"{"a":{"b"}}"#, r#"{"a":"open}"#,
        ] {
            assert!(all(bad).is_none(), "{bad:?}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(70), "]".repeat(70));
        assert!(all(&deep).is_none(), "deeper than the bound: serde_json decides");
        let fine = format!("{{\"a\":{}{}}}", "[".repeat(60), "]".repeat(60));
        assert!(all(&fine).is_some());
    }

    #[test]
    fn a_plain_run_stops_at_the_first_byte_that_needs_attention() {
        let text = "abcdefghijklmnopqrstu\u{e9}\u{1F600}xyz";
        for stop in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
            for at in 0..text.len() {
                if !text.is_char_boundary(at) {
                    continue;
                }
                let s = format!("{}{stop}{}", &text[..at], &text[at..]);
                assert_eq!(plain_run(s.as_bytes()), at, "{s:?}");
            }
        }
        assert_eq!(plain_run(text.as_bytes()), text.len());
        assert_eq!(plain_run(b""), 0);
    }

    #[test]
    fn raw_values_are_handed_over_without_a_second_parse() {
        // Goes through the handover itself, not the fallback: the protocol still holds.
        let raw = <&RawValue>::deserialize(Handover(r#"{"a": [1, 2]}"#)).expect("serde_json's raw value protocol");
        assert_eq!(raw.get(), r#"{"a": [1, 2]}"#);
        assert_eq!(raw_value("7").map(RawValue::get), Some("7"));
    }
}
