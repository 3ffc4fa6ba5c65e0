//! Always-on redaction of credentials in anything we log.
//!
//! The router sees bearer tokens, API keys and backend environment secrets;
//! any of them can end up in an error message, a backend's stderr, or a
//! logged request. [`Redactor::redact`] masks them with `[REDACTED]` before a
//! line is written. It is a hand-written byte scanner (no regex crate):
//! one pass over the input that only stops at `:`, `=` and `b`/`B`, plus one
//! substring search per registered secret value. When nothing matches it
//! returns the input borrowed, without allocating.
//!
//! What is masked:
//! - header values: `Authorization: …`, `Proxy-Authorization: …`,
//!   `Cookie: …`, `X-Api-Key: …` and similar, up to the end of the line;
//! - `Bearer <token>` anywhere;
//! - `key=value` pairs whose key is sensitive (`token=`, `api_key=`,
//!   `password=`, `GITHUB_TOKEN=`, `--secret=`…), e.g. in query strings and
//!   environment dumps;
//! - JSON (and Python-repr) fields whose key is sensitive, including JSON
//!   that is itself embedded, escaped, inside a JSON string;
//! - URL userinfo: `https://user:pass@host` → `https://[REDACTED]@host`;
//! - every registered secret value (at least 4 characters) wherever it
//!   appears.
//!
//! The scanner errs on the side of masking too much: a masked word in an
//! error message costs a little debuggability, a leaked token costs a
//! rotation and an incident.

use std::borrow::Cow;

/// The replacement text for every masked value.
pub const REDACTED: &str = "[REDACTED]";

/// Registered secret values shorter than this are ignored: masking every
/// occurrence of a 1–3 character string would shred ordinary text, and such
/// values are not credentials anyway.
pub const MIN_SECRET_LEN: usize = 4;

/// Key names are compared after lowercasing and dropping `-`, `_` and `.`,
/// so `api_key`, `API-KEY`, `apiKey` and `x-api-key` compare as `apikey`
/// and `xapikey`. Only the last this-many normalized bytes are kept, which
/// is enough for every suffix check and keeps the check allocation-free.
const NORM_CAP: usize = 64;

/// Field / parameter names that are sensitive exactly as written
/// (normalized).
const EXACT_FIELDS: &[&[u8]] = &[
    b"authorization",
    b"proxyauthorization",
    b"auth",
    b"pwd",
    b"cookie",
    b"setcookie",
    b"credential",
    b"credentials",
    b"bearer",
    b"sig",
];

/// Name endings that make a field sensitive (normalized), so
/// `access_token`, `client_secret`, `GITHUB_TOKEN` and `x-amz-signature` are
/// all caught without listing them. `tokens` (plural) is deliberately not a
/// suffix: `max_tokens` and usage counts are not secrets.
const SUFFIX_FIELDS: &[&[u8]] =
    &[b"token", b"secret", b"password", b"passwd", b"apikey", b"privatekey", b"secretkey", b"accesskey", b"signature"];

/// Names that are masked in the `Name: value` (header, or YAML-ish
/// `password: x`) form. Narrower than the field list on purpose: prose such
/// as "failed to refresh token: connection refused" must keep its error text.
const HEADER_NAMES: &[&[u8]] = &[
    b"password",
    b"passwd",
    b"secret",
    b"clientsecret",
    b"privatekey",
    b"authorization",
    b"proxyauthorization",
    b"cookie",
    b"setcookie",
    b"apikey",
    b"xapikey",
    b"authtoken",
    b"xauthtoken",
    b"accesstoken",
    b"xaccesstoken",
];

/// Bytes at which [`Redactor::scan`] has to look closer.
const TRIGGER: [bool; 256] = {
    let mut t = [false; 256];
    t[b':' as usize] = true;
    t[b'=' as usize] = true;
    t[b'b' as usize] = true;
    t[b'B' as usize] = true;
    t
};

/// Position of the first byte at or after `from` that may be a trigger
/// (`:`, `=`, `b`, `B`; a few control bytes can be false positives, which
/// the caller simply skips). Checks eight bytes per step with SWAR
/// arithmetic, since this scan is all the work for clean text.
fn next_trigger(b: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // High bit set in each byte of `v` that is zero. Borrows can flag bytes
    // above a real zero byte, but the lowest flag is always exact, and only
    // the lowest is used.
    fn zero_bytes(v: u64) -> u64 {
        v.wrapping_sub(LO) & !v & HI
    }
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // Setting bit 0x20 folds `B` onto `b`; `:` and `=` already have it.
        let x = u64::from_le_bytes(word) | (LO * 0x20);
        let hits = zero_bytes(x ^ (LO * u64::from(b':')))
            | zero_bytes(x ^ (LO * u64::from(b'=')))
            | zero_bytes(x ^ (LO * u64::from(b'b')));
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&c| TRIGGER[usize::from(c)]).map(|off| i + off)
}

/// One region of the input to replace.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    repl: &'static str,
}

/// Masks credentials in text. Cheap to share (`&self` only); build one at
/// startup with the secret values from the backend configuration.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Registered secret values, deduplicated, longest first.
    secrets: Vec<String>,
    /// Extra sensitive field names, normalized.
    extra_fields: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets themselves: a Debug dump of the config
        // would otherwise leak exactly what this type protects.
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .field("extra_fields", &self.extra_fields.len())
            .finish()
    }
}

impl Redactor {
    /// Creates a redactor that, in addition to the built-in rules, masks
    /// every occurrence of each value in `secret_values` (values shorter
    /// than [`MIN_SECRET_LEN`] characters are ignored) and treats each name
    /// in `extra_fields` as a sensitive field/parameter/header name
    /// (compared case-insensitively, ignoring `-`, `_` and `.`).
    pub fn new(secret_values: Vec<String>, extra_fields: Vec<String>) -> Self {
        let mut secrets: Vec<String> =
            secret_values.into_iter().filter(|s| s.chars().count() >= MIN_SECRET_LEN).collect();
        // Longest first, so when one secret contains another the whole
        // longer one is found; overlaps are merged anyway.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let mut extra: Vec<Vec<u8>> = extra_fields
            .iter()
            .map(|f| normalize(f.as_bytes()).as_slice().to_vec())
            .filter(|f| !f.is_empty())
            .collect();
        extra.sort();
        extra.dedup();
        Redactor { secrets, extra_fields: extra }
    }

    /// Returns `s` with every credential masked as `[REDACTED]`. Borrows
    /// (no allocation) when nothing needed masking.
    pub fn redact<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut spans: Vec<Span> = Vec::new();
        self.scan(s, &mut spans);
        for secret in &self.secrets {
            // Building a substring searcher costs more than scanning a short log field, and
            // most fields cannot hold the secret at all: too short, or without its first
            // byte (a memchr). Only then search for real.
            let first = secret.as_bytes().first().copied().unwrap_or(0);
            if s.len() < secret.len() || !s.as_bytes().contains(&first) {
                continue;
            }
            for (pos, m) in s.match_indices(secret.as_str()) {
                spans.push(Span { start: pos, end: pos + m.len(), repl: REDACTED });
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(s);
        }
        Cow::Owned(apply(s, spans))
    }

    /// Whether a field, parameter or header with this name holds a secret
    /// (built-in names plus the configured extra fields). Use it for
    /// structured values whose text alone would not reveal that, such as
    /// log fields.
    pub fn is_sensitive_field(&self, name: &str) -> bool {
        let n = normalize(name.as_bytes());
        let n = n.as_slice();
        if n.is_empty() {
            return false;
        }
        EXACT_FIELDS.contains(&n)
            || SUFFIX_FIELDS.iter().any(|suf| n.ends_with(suf))
            || self.extra_fields.iter().any(|f| f.as_slice() == n)
    }

    fn is_sensitive_header(&self, name: &[u8]) -> bool {
        let n = normalize(name);
        let n = n.as_slice();
        HEADER_NAMES.contains(&n) || self.extra_fields.iter().any(|f| f.as_slice() == n)
    }

    /// The single pass over the input for the structural rules.
    fn scan(&self, s: &str, spans: &mut Vec<Span>) {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            // Skip to the next byte that can start a rule; this tight loop
            // is the whole cost for text with nothing to redact.
            match next_trigger(b, i) {
                Some(next) => i = next,
                None => break,
            }
            let found = match b.get(i).copied().unwrap_or(0) {
                b':' => self.at_colon(b, i),
                b'=' => self.at_equals(b, i),
                b'b' | b'B' => at_bearer(b, i),
                _ => None,
            };
            match found {
                Some(span) => {
                    spans.push(span);
                    // Resume after the masked value: nothing inside it needs
                    // a second look, and it keeps the scan linear.
                    i = span.end.max(i + 1);
                }
                None => i += 1,
            }
        }
    }

    /// `scheme://userinfo@`, `"key": value`, `'key': value` or
    /// `Header: value`.
    fn at_colon(&self, b: &[u8], colon: usize) -> Option<Span> {
        if b.get(colon + 1) == Some(&b'/') && b.get(colon + 2) == Some(&b'/') {
            return url_userinfo(b, colon);
        }
        // Look back over whitespace for the closing quote of a key.
        let mut j = colon;
        while j > 0 && matches!(b.get(j - 1), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            j -= 1;
        }
        match b.get(j.wrapping_sub(1)) {
            Some(b'"') if j > 0 => return self.json_field(b, j - 1, colon, b'"'),
            Some(b'\'') if j > 0 => return self.json_field(b, j - 1, colon, b'\''),
            _ => {}
        }
        if j != colon {
            // `Name : value` is not a header; keep prose like "note : x".
            return None;
        }
        let start = ident_start(b, colon, is_header_char);
        if start == colon || !self.is_sensitive_header(b.get(start..colon)?) {
            return None;
        }
        // Header value: skip leading blanks, stop at the end of the line.
        // A `"` or `\` also ends it: a header quoted inside JSON
        // (`"Authorization: Bearer x"`, or `\r\n` escapes) must not take
        // the rest of the document with it. Credentials in these headers
        // (bearer tokens, base64 basic auth, API keys) never contain them.
        let mut v = colon + 1;
        while matches!(b.get(v), Some(b' ' | b'\t')) {
            v += 1;
        }
        let mut e = v;
        while let Some(&c) = b.get(e) {
            if matches!(c, b'\r' | b'\n' | b'"' | b'\\') {
                break;
            }
            e += 1;
        }
        while e > v && matches!(b.get(e - 1), Some(b' ' | b'\t')) {
            e -= 1;
        }
        (e > v).then_some(Span { start: v, end: e, repl: REDACTED })
    }

    /// `close_quote` is the key's closing quote, `colon` the separator.
    fn json_field(&self, b: &[u8], close_quote: usize, colon: usize, quote: u8) -> Option<Span> {
        // How deeply escaped is this JSON? A key in plain JSON is `"k"`; in
        // JSON embedded in a JSON string it is `\"k\"`, one level deeper
        // `\\\"k\\\"`. The backslash run before the quote tells the level.
        let run = backslash_run(b, close_quote);
        let depth = match (quote, run) {
            (_, 0) => 0,
            (b'"', 1) => 1,
            (b'"', 3) => 2,
            (b'"', 7) => 3,
            _ => return None,
        };
        let key_end = close_quote - run;
        let key_start = ident_start(b, key_end, is_key_char);
        if key_start == key_end || key_start == 0 {
            return None;
        }
        let open_quote = key_start - 1;
        if b.get(open_quote) != Some(&quote) || !is_delimiter(b, open_quote, depth) {
            return None;
        }
        if !self.is_sensitive_field(std::str::from_utf8(b.get(key_start..key_end)?).ok()?) {
            return None;
        }
        let mut v = colon + 1;
        while matches!(b.get(v), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            v += 1;
        }
        json_value(b, v, depth, quote)
    }

    /// `key=value` with a sensitive key.
    fn at_equals(&self, b: &[u8], eq: usize) -> Option<Span> {
        if b.get(eq + 1) == Some(&b'=') {
            return None; // `==` is a comparison, not an assignment
        }
        let start = ident_start(b, eq, is_key_char);
        let key = std::str::from_utf8(b.get(start..eq)?).ok()?;
        // Plain `key=` counts only here: in query strings it is usually an
        // API key (`?key=AIza…`), while a JSON `"key"` field is usually not.
        if start == eq || !(self.is_sensitive_field(key) || key.eq_ignore_ascii_case("key")) {
            return None;
        }
        let v = eq + 1;
        match b.get(v) {
            Some(&q @ (b'"' | b'\'')) => {
                // Quoted value (`PASSWORD="a b"`): mask up to the matching
                // quote; if it never closes, up to the end of the line.
                let mut e = v + 1;
                while let Some(&c) = b.get(e) {
                    if (c == q && backslash_run(b, e).is_multiple_of(2)) || c == b'\n' {
                        break;
                    }
                    e += 1;
                }
                (e > v + 1).then_some(Span { start: v + 1, end: e, repl: REDACTED })
            }
            Some(b'\\') if b.get(v + 1) == Some(&b'"') => {
                // `key=\"value\"` inside a JSON string.
                let (s, e) = string_body(b, v + 1, 1)?;
                (e > s).then_some(Span { start: s, end: e, repl: REDACTED })
            }
            _ => {
                // Bare value: up to whitespace, `&` (next query parameter),
                // a quote or backslash (end of the enclosing string) or `<`
                // `>` (markup). `,` `;` `#` are kept in the value since they
                // are legal in passwords; over-masking them is harmless.
                let mut e = v;
                while let Some(&c) = b.get(e) {
                    if c.is_ascii_whitespace() || matches!(c, b'&' | b'"' | b'\'' | b'\\' | b'<' | b'>') {
                        break;
                    }
                    e += 1;
                }
                (e > v).then_some(Span { start: v, end: e, repl: REDACTED })
            }
        }
    }
}

/// Checks whether an environment-variable name looks like it holds a
/// secret: it contains `TOKEN`, `SECRET`, `KEY`, `PASSWORD`, `PASSWD` or
/// `CREDENTIAL`, case-insensitively. Used to decide which backend env values
/// to register with [`Redactor::new`] and to mask in config dumps.
pub fn is_secret_name(name: &str) -> bool {
    const MARKERS: [&[u8]; 6] = [b"token", b"secret", b"key", b"password", b"passwd", b"credential"];
    let n = name.as_bytes();
    MARKERS.iter().any(|m| n.windows(m.len()).any(|w| w.eq_ignore_ascii_case(m)))
}

/// The values of the variables whose names pass [`is_secret_name`], ready
/// for [`Redactor::new`]; e.g. `secrets_from_env(std::env::vars())` or a
/// backend's configured `env` map.
pub fn secrets_from_env<I, K, V>(vars: I) -> Vec<String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: Into<String>,
{
    vars.into_iter().filter(|(k, _)| is_secret_name(k.as_ref())).map(|(_, v)| v.into()).collect()
}

/// Builds the output from merged spans.
fn apply(s: &str, mut spans: Vec<Span>) -> String {
    spans.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut out = String::with_capacity(s.len() + spans.len() * REDACTED.len());
    let mut pos = 0;
    let mut iter = spans.into_iter().peekable();
    while let Some(mut cur) = iter.next() {
        // Overlapping or touching spans become one mask, so the output
        // never shows `[REDACTED][REDACTED]` or half of a value between two.
        while let Some(next) = iter.peek() {
            if next.start > cur.end {
                break;
            }
            cur.end = cur.end.max(next.end);
            iter.next();
        }
        if cur.start < pos {
            cur.start = pos;
        }
        out.push_str(s.get(pos..cur.start).unwrap_or(""));
        out.push_str(cur.repl);
        pos = cur.end;
    }
    out.push_str(s.get(pos..).unwrap_or(""));
    out
}

/// The lowercase, separator-free tail of a name (see [`NORM_CAP`]).
struct Norm {
    buf: [u8; NORM_CAP],
    len: usize,
}

impl Norm {
    fn as_slice(&self) -> &[u8] {
        self.buf.get(NORM_CAP - self.len..).unwrap_or(&[])
    }
}

fn normalize(name: &[u8]) -> Norm {
    let mut n = Norm { buf: [0; NORM_CAP], len: 0 };
    // Filled from the back so an over-long name keeps its suffix, which is
    // what the suffix rules look at.
    for &c in name.iter().rev() {
        if matches!(c, b'-' | b'_' | b'.') {
            continue;
        }
        if n.len == NORM_CAP {
            break;
        }
        n.len += 1;
        if let Some(slot) = n.buf.get_mut(NORM_CAP - n.len) {
            *slot = c.to_ascii_lowercase();
        }
    }
    n
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

fn is_header_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-')
}

/// Start of the run of `pred` bytes that ends at `end` (exclusive).
fn ident_start(b: &[u8], end: usize, pred: fn(u8) -> bool) -> usize {
    let mut s = end;
    while s > 0 && b.get(s - 1).is_some_and(|&c| pred(c)) {
        s -= 1;
    }
    s
}

/// Number of consecutive backslashes immediately before `pos`.
fn backslash_run(b: &[u8], pos: usize) -> usize {
    let mut n = 0;
    while pos > n && b.get(pos - n - 1) == Some(&b'\\') {
        n += 1;
    }
    n
}

/// Whether the quote at `pos` is a string delimiter at escape `depth`
/// (rather than an escaped quote inside a string). At depth d a delimiter
/// is preceded by a backslash run r with r mod 2^(d+1) == 2^d - 1: depth 0
/// wants an even run, depth 1 (`\"`) wants 1, 5, 9… (3 is an escaped quote
/// inside the embedded string), and so on.
fn is_delimiter(b: &[u8], pos: usize, depth: u32) -> bool {
    let run = backslash_run(b, pos);
    let m = 1usize << (depth + 1);
    run % m == (1usize << depth) - 1
}

/// For a string whose opening quote is at `open` (at `depth`), the byte
/// range of its contents. An unterminated string (a truncated log line)
/// extends to the end of the input so its tail is still masked.
fn string_body(b: &[u8], open: usize, depth: u32) -> Option<(usize, usize)> {
    let prefix = (1usize << depth) - 1; // backslashes that belong to the closing delimiter
    let start = open + 1;
    let mut e = start;
    while let Some(&c) = b.get(e) {
        if c == b'"' && is_delimiter(b, e, depth) {
            return Some((start, e.checked_sub(prefix)?.max(start)));
        }
        e += 1;
    }
    Some((start, b.len()))
}

/// The masked span for a JSON value starting at `v`.
fn json_value(b: &[u8], v: usize, depth: u32, quote: u8) -> Option<Span> {
    // A non-string value is replaced by a string, quoted for its depth, so
    // plain and once-embedded JSON stay parseable after masking.
    let quoted = match depth {
        0 => "\"[REDACTED]\"",
        1 => "\\\"[REDACTED]\\\"",
        _ => REDACTED,
    };
    if quote == b'\'' {
        // Python repr: `'key': 'value'`.
        if b.get(v) != Some(&b'\'') {
            return bare_value(b, v, REDACTED);
        }
        let mut e = v + 1;
        while let Some(&c) = b.get(e) {
            if c == b'\'' && backslash_run(b, e).is_multiple_of(2) {
                break;
            }
            e += 1;
        }
        return (e > v + 1).then_some(Span { start: v + 1, end: e, repl: REDACTED });
    }
    let prefix = (1usize << depth) - 1;
    // Does a string open here? At depth d it is `prefix` backslashes + `"`.
    let q = v + prefix;
    if b.get(q) == Some(&b'"') && (v..q).all(|k| b.get(k) == Some(&b'\\')) {
        let (s, e) = string_body(b, q, depth)?;
        return (e > s).then_some(Span { start: s, end: e, repl: REDACTED });
    }
    match b.get(v) {
        Some(b'{' | b'[') => {
            // Mask the whole object/array: a nested `{"value": "…"}` under a
            // sensitive key is just as secret. Brackets inside strings at
            // this depth are skipped.
            let mut nest = 0usize;
            let mut in_str = false;
            let mut e = v;
            while let Some(&c) = b.get(e) {
                match c {
                    b'"' if is_delimiter(b, e, depth) => in_str = !in_str,
                    b'{' | b'[' if !in_str => nest += 1,
                    b'}' | b']' if !in_str => {
                        nest = nest.saturating_sub(1);
                        if nest == 0 {
                            return Some(Span { start: v, end: e + 1, repl: quoted });
                        }
                    }
                    _ => {}
                }
                e += 1;
            }
            Some(Span { start: v, end: b.len(), repl: quoted })
        }
        _ => bare_value(b, v, quoted),
    }
}

/// A number or other bare token; `null`, `true` and `false` carry no secret
/// and are left alone so "password": null stays readable.
fn bare_value(b: &[u8], v: usize, repl: &'static str) -> Option<Span> {
    let mut e = v;
    while let Some(&c) = b.get(e) {
        if c.is_ascii_whitespace() || matches!(c, b',' | b'}' | b']' | b'"' | b'\'' | b'\\' | b')') {
            break;
        }
        e += 1;
    }
    let tok = b.get(v..e)?;
    if tok.is_empty() || tok == b"null" || tok == b"true" || tok == b"false" || tok == b"None" {
        return None;
    }
    Some(Span { start: v, end: e, repl })
}

/// `scheme://user:pass@host` → mask `user:pass`.
fn url_userinfo(b: &[u8], colon: usize) -> Option<Span> {
    if colon == 0 || !b.get(colon - 1).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let start = colon + 3;
    let mut e = start;
    let mut at = None;
    while let Some(&c) = b.get(e) {
        if c.is_ascii_whitespace() || matches!(c, b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'\\') {
            break;
        }
        if c == b'@' {
            // The last `@` ends the userinfo; earlier ones belong to an
            // unencoded password.
            at = Some(e);
        }
        e += 1;
    }
    let at = at?;
    (at > start).then_some(Span { start, end: at, repl: REDACTED })
}

/// `Bearer <token>` (case-insensitive), including `Bearer%20<token>`.
fn at_bearer(b: &[u8], i: usize) -> Option<Span> {
    let word = b.get(i..i + 6)?;
    if !word.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    if i > 0 && b.get(i - 1).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
        return None;
    }
    let mut v = i + 6;
    if b.get(v..v + 3) == Some(b"%20") {
        v += 3;
    } else {
        let s = v;
        while matches!(b.get(v), Some(b' ' | b'\t')) {
            v += 1;
        }
        if v == s {
            return None;
        }
    }
    // RFC 6750 b64token characters, then `=` padding.
    let mut e = v;
    while b.get(e).is_some_and(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')) {
        e += 1;
    }
    if e == v {
        return None;
    }
    while b.get(e) == Some(&b'=') {
        e += 1;
    }
    Some(Span { start: v, end: e, repl: REDACTED })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Redactor {
        Redactor::new(vec!["s3cr3t-value".into(), "abc".into()], vec!["x-my-field".into()])
    }

    fn red(s: &str) -> String {
        r().redact(s).into_owned()
    }

    #[test]
    fn clean_input_is_borrowed() {
        let s = "GET /tools/list ok in 12ms; note: fine; a == b; max_tokens=100; https://host/path";
        assert!(matches!(r().redact(s), Cow::Borrowed(_)));
    }

    #[test]
    fn headers() {
        assert_eq!(red("Authorization: Bearer abc.def\nHost: x"), "Authorization: [REDACTED]\nHost: x");
        assert_eq!(red("proxy-authorization:Basic dXNlcjpwYXNz"), "proxy-authorization:[REDACTED]");
        assert_eq!(red("AUTHORIZATION: token xyz  "), "AUTHORIZATION: [REDACTED]  ");
        assert_eq!(red(r#"{"h":"Authorization: Bearer t0k","n":1}"#), r#"{"h":"Authorization: [REDACTED]","n":1}"#);
        assert_eq!(red("X-My-Field: v1"), "X-My-Field: [REDACTED]");
        assert_eq!(red("db:\n  password: hunter2\n  host: h"), "db:\n  password: [REDACTED]\n  host: h");
        assert_eq!(red("failed to refresh token: connection refused"), "failed to refresh token: connection refused");
    }

    #[test]
    fn bearer() {
        assert_eq!(red("sent bearer eyJhbGc.eyJzdWIi.sig_- to x"), "sent bearer [REDACTED] to x");
        assert_eq!(red("Bearer%20abc=="), "Bearer%20[REDACTED]");
        assert_eq!(red("unbearer x"), "unbearer x");
    }

    #[test]
    fn kv() {
        assert_eq!(red("https://h/p?a=1&token=abc&b=2"), "https://h/p?a=1&token=[REDACTED]&b=2");
        assert_eq!(
            red("API_KEY=k1 apikey=k2 Password=p secret=s access_token=t"),
            "API_KEY=[REDACTED] apikey=[REDACTED] Password=[REDACTED] secret=[REDACTED] access_token=[REDACTED]"
        );
        assert_eq!(
            red("GITHUB_TOKEN='ghp 1' --client-secret=\"x y\""),
            "GITHUB_TOKEN='[REDACTED]' --client-secret=\"[REDACTED]\""
        );
        assert_eq!(red("if token==x"), "if token==x");
        assert_eq!(red("maps?key=AIza1&monkey=2"), "maps?key=[REDACTED]&monkey=2");
        assert_eq!(red(r#"{"key":"k"}"#), r#"{"key":"k"}"#);
    }

    #[test]
    fn json_fields() {
        assert_eq!(red(r#"{"password":"x"}"#), r#"{"password":"[REDACTED]"}"#);
        assert_eq!(red(r#"{"Api_Key" : "a\"b\\", "n": 1}"#), r#"{"Api_Key" : "[REDACTED]", "n": 1}"#);
        assert_eq!(
            red(r#"{"token": 12345, "secret": {"a": ["}"]}, "x": null}"#),
            r#"{"token": "[REDACTED]", "secret": "[REDACTED]", "x": null}"#
        );
        assert_eq!(red(r#"{"password": null}"#), r#"{"password": null}"#);
        assert_eq!(red(r#"{"x_my_field":"v"}"#), r#"{"x_my_field":"[REDACTED]"}"#);
        assert_eq!(red(r#"{'password': 'hunter2'}"#), r#"{'password': '[REDACTED]'}"#);
        assert_eq!(red(r#"{"passwords_count": 2, "tokens": 5}"#), r#"{"passwords_count": 2, "tokens": 5}"#);
    }

    #[test]
    fn embedded_json() {
        let inner = r#"{"password":"p\"w","user":"u"}"#;
        let outer = serde_json::json!({ "body": inner }).to_string();
        let out = red(&outer);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let body = v["body"].as_str().unwrap();
        let inner_v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(inner_v["password"], "[REDACTED]");
        assert_eq!(inner_v["user"], "u");
        let inner2 = r#"{"token":{"v":"x"},"n":1}"#;
        let outer2 = serde_json::json!({ "body": inner2 }).to_string();
        let out2 = red(&outer2);
        let v2: serde_json::Value = serde_json::from_str(&out2).unwrap();
        let inner_v2: serde_json::Value = serde_json::from_str(v2["body"].as_str().unwrap()).unwrap();
        assert_eq!(inner_v2["token"], "[REDACTED]");
        assert_eq!(inner_v2["n"], 1);
    }

    #[test]
    fn urls_and_literals() {
        assert_eq!(red("connect https://user:pa@ss@db.example/x"), "connect https://[REDACTED]@db.example/x");
        assert_eq!(red("postgres://u:p@h:5432"), "postgres://[REDACTED]@h:5432");
        assert_eq!(red("value s3cr3t-value here; abc stays"), "value [REDACTED] here; abc stays");
        assert_eq!(red("xs3cr3t-valuey"), "x[REDACTED]y");
    }

    #[test]
    fn truncated_inputs_do_not_panic() {
        for s in [
            "\"password\":",
            "\"password\":\"abc",
            "token=",
            "Authorization:",
            "bearer",
            "https://",
            "\\\"token\\\":\\\"x",
            "\"token\": {\"a\": [",
            "'token': 'x",
            "é\"password\":\"é\"é",
        ] {
            let _ = red(s);
        }
        assert_eq!(red("\"password\":\"abc"), "\"password\":\"[REDACTED]");
    }

    #[test]
    fn secret_names() {
        for n in [
            "GITHUB_TOKEN",
            "aws_secret_access_key",
            "ApiKey",
            "DB_PASSWORD",
            "passwd",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in ["PATH", "HOME", "RUST_LOG", "USER"] {
            assert!(!is_secret_name(n), "{n}");
        }
        let s = secrets_from_env([("PATH", "/bin"), ("MY_TOKEN", "tok-123")]);
        assert_eq!(s, vec!["tok-123".to_string()]);
    }

    #[test]
    fn random_fragments_never_panic_or_leak_registered_secrets() {
        const FRAGS: [&str; 24] = [
            "\"",
            "\\",
            ":",
            "=",
            "'",
            " ",
            "\n",
            "token",
            "Password",
            "Authorization",
            "bearer ",
            "{",
            "}",
            "[",
            "]",
            "://",
            "@",
            "é",
            "null",
            "12",
            "s3cr3t-value",
            "&",
            "\\\"",
            "x",
        ];
        let red = r();
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            let mut s = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            for k in 0..len {
                let idx = ((state >> (k % 8 * 8)) as usize + k * 7) % FRAGS.len();
                s.push_str(FRAGS[idx]);
            }
            let out = red.redact(&s);
            assert!(!out.contains("s3cr3t-value"), "{s:?} -> {out:?}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        assert!(!format!("{:?}", r()).contains("s3cr3t"));
    }
}
