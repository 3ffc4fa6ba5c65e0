//! JSON-RPC 2.0 framing: classify what arrives, build what leaves.
//!
//! Params, results and errors are kept as raw JSON text (`RawValue`) so that what the router
//! does not need to look inside passes through byte for byte: unknown fields and `_meta`
//! survive, and nothing is re-encoded on the hot path. Ids are kept raw as well, so a reply
//! carries exactly the id the caller sent.

mod scan;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Not a valid JSON-RPC request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Bad params, unknown tool, prompt or resource.
pub const INVALID_PARAMS: i64 = -32602;
/// A failure inside the router.
pub const INTERNAL_ERROR: i64 = -32603;
/// The backend is down, crashed mid-call or sent something unusable.
pub const BACKEND_UNAVAILABLE: i64 = -32000;
/// The call's deadline passed.
pub const REQUEST_TIMEOUT: i64 = -32001;
/// The backend's queue is full: try again later.
pub const OVERLOADED: i64 = -32003;
/// The backend's circuit breaker is open: it failed too often recently.
pub const CIRCUIT_OPEN: i64 = -32004;
/// The client's policy does not permit this call (`clients:` and `policy:`).
pub const NOT_PERMITTED: i64 = -32005;
/// A rate limit, concurrency cap or quota refused the call; `data.retryAfterMs` says when
/// to try again. Refused at once, never queued.
pub const RATE_LIMITED: i64 = -32006;

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// Keeps a field that is present but `null` as `Some("null")`, unlike `Option`'s default.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// One classified JSON-RPC message, borrowing from the text it was parsed from.
#[derive(Debug)]
pub enum Message<'a> {
    /// A call that expects exactly one reply.
    Request {
        /// The id, raw.
        id: &'a RawValue,
        /// The method name.
        method: std::borrow::Cow<'a, str>,
        /// Raw params, if any.
        params: Option<&'a RawValue>,
    },
    /// A message that must never be answered.
    Notification {
        /// The method name.
        method: std::borrow::Cow<'a, str>,
        /// Raw params, if any.
        params: Option<&'a RawValue>,
    },
    /// A reply to a request this side sent.
    Response {
        /// The id, raw.
        id: &'a RawValue,
        /// `Ok(result)` or `Err(error object)`, raw.
        outcome: Result<&'a RawValue, &'a RawValue>,
    },
}

/// Why a message could not be classified; carries the JSON-RPC error to answer with.
#[derive(Debug)]
pub struct Invalid<'a> {
    /// -32700 or -32600.
    pub code: i64,
    /// Human-readable reason.
    pub message: String,
    /// The id, when one could be read (the reply must then carry it).
    pub id: Option<&'a RawValue>,
}

/// Classifies one message (not a batch).
pub fn parse(text: &str) -> Result<Message<'_>, Invalid<'_>> {
    parse_peeked(text).map(|(m, _)| m)
}

/// [`parse`], and a request's params peeked at while they were read (`None`: not an
/// object, or read by serde_json; [`peek_params`] then tells).
pub fn parse_peeked(text: &str) -> Result<(Message<'_>, Option<ParamsPeek<'_>>), Invalid<'_>> {
    // serde also reads a struct written as an array (`["2.0",1,"ping"]`); JSON-RPC does not.
    if !text.trim_start().starts_with('{') {
        let valid_json = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
        let (code, message) = if valid_json {
            (INVALID_REQUEST, "Invalid Request: a message must be a JSON object")
        } else {
            (PARSE_ERROR, "Parse error: invalid JSON")
        };
        return Err(Invalid { code, message: message.into(), id: None });
    }
    match scanned(text) {
        Some((wire, peek)) => classify(wire).map(|m| (m, peek)),
        None => parse_by_serde(text).map(|m| (m, None)),
    }
}

/// The reference reading, and the one that words the errors.
fn parse_by_serde(text: &str) -> Result<Message<'_>, Invalid<'_>> {
    let wire: Wire<'_> = match serde_json::from_str(text) {
        Ok(w) => w,
        Err(e) => {
            let code = if e.is_syntax() || e.is_eof() { PARSE_ERROR } else { INVALID_REQUEST };
            let message =
                if code == PARSE_ERROR { format!("Parse error: {e}") } else { format!("Invalid Request: {e}") };
            // Valid JSON with a field of the wrong type: the reply still owes the caller its id.
            let id = if code == INVALID_REQUEST { readable_id(text) } else { None };
            return Err(Invalid { code, message, id });
        }
    };
    classify(wire)
}

/// The message read by the scanner exactly as serde_json would read it into [`Wire`], with
/// its params peeked at on the way; `None` when serde_json must decide (invalid JSON, a
/// duplicate field, a method that is not a plain string, and the rarer shapes the scanner
/// leaves to it).
fn scanned(text: &str) -> Option<(Wire<'_>, Option<ParamsPeek<'_>>)> {
    let mut w = Wire { jsonrpc: None, id: None, method: None, params: None, result: None, error: None };
    let mut peek = None;
    let mut seen = 0u8;
    scan::members_at(text, |key, at| {
        let bit = match key {
            "jsonrpc" => 1,
            "id" => 2,
            "method" => 4,
            "params" => 8,
            "result" => 16,
            "error" => 32,
            _ => return scan::value_at(text, at, 0),
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        let end = if bit == 8 && text.as_bytes().get(at) == Some(&b'{') {
            // The params' top level is read while they are validated: one walk, not two.
            let mut p = Peeking::default();
            let end = scan::object_at(text, at, 1, |k, value| {
                let end = scan::value_at(text, value, 1)?;
                p.see(k, text.get(value..end)?);
                Some(end)
            })?;
            peek = Some(p.done());
            end
        } else {
            scan::value_at(text, at, 0)?
        };
        let raw = text.get(at..end)?;
        // `jsonrpc` and `method` are plain `Option`s to serde: `null` reads as absent.
        match bit {
            1 if raw == "null" => {}
            1 => w.jsonrpc = Some(scan::raw_value(raw)?),
            2 => w.id = Some(scan::raw_value(raw)?),
            4 if raw == "null" => {}
            4 => w.method = Some(std::borrow::Cow::Borrowed(scan::plain_string(raw)?)),
            8 => w.params = Some(scan::raw_value(raw)?),
            16 => w.result = Some(scan::raw_value(raw)?),
            _ => w.error = Some(scan::raw_value(raw)?),
        }
        Some(end)
    })?;
    Some((w, peek))
}

/// What the router reads at the top level of a request's params, in one walk.
#[derive(Debug, PartialEq)]
pub struct ParamsPeek<'a> {
    /// `params.name` as serde_json reads it into an `Option<&str>` field: `Some(None)` when
    /// absent or `null`, `Some(Some(text))` for a string without escapes; `None` when
    /// serde_json must decide (another type, escapes, a duplicate key).
    pub name: Option<Option<&'a str>>,
    /// Whether there is a `_meta` member, where the 2026-07-28 envelope and progress tokens
    /// live: without one, neither needs looking for.
    pub meta: bool,
}

/// Peeks at the members of the params object `obj`; `None` when it is not one the scanner
/// reads (serde_json then decides everything, as before).
pub fn peek_params(obj: &str) -> Option<ParamsPeek<'_>> {
    let mut p = Peeking::default();
    scan::members(obj, |key, raw| {
        p.see(key, raw);
        Some(())
    })?;
    Some(p.done())
}

/// A [`ParamsPeek`] being gathered, member by member.
#[derive(Default)]
struct Peeking<'a> {
    /// Not seen yet; seen once (with what it read as).
    name: Option<Option<Option<&'a str>>>,
    twice: bool,
    meta: bool,
}

impl<'a> Peeking<'a> {
    fn see(&mut self, key: &str, raw: &'a str) {
        match key {
            "name" => {
                self.twice |= self.name.is_some();
                self.name = Some(if raw == "null" { Some(None) } else { scan::plain_string(raw).map(Some) });
            }
            "_meta" => self.meta = true,
            _ => {}
        }
    }

    fn done(self) -> ParamsPeek<'a> {
        let name = if self.twice { None } else { self.name.unwrap_or(Some(None)) };
        ParamsPeek { name, meta: self.meta }
    }
}

fn classify(w: Wire<'_>) -> Result<Message<'_>, Invalid<'_>> {
    let id = match w.id {
        Some(raw) if is_valid_id(raw) => Some(raw),
        Some(raw) if raw.get() == "null" && w.method.is_none() => Some(raw),
        Some(_) => {
            return Err(Invalid {
                code: INVALID_REQUEST,
                message: "Invalid Request: id must be a string or an integer".into(),
                id: None,
            });
        }
        None => None,
    };
    if w.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
        return Err(Invalid { code: INVALID_REQUEST, message: "Invalid Request: jsonrpc must be \"2.0\"".into(), id });
    }
    if let Some(p) = w.params {
        let first = p.get().as_bytes().first().copied();
        if !matches!(first, Some(b'{') | Some(b'[')) {
            return Err(Invalid {
                code: INVALID_REQUEST,
                message: "Invalid Request: params must be an object or an array".into(),
                id,
            });
        }
    }
    match (w.method, id, w.result, w.error) {
        (Some(method), Some(id), None, None) => Ok(Message::Request { id, method, params: w.params }),
        (Some(method), None, None, None) => Ok(Message::Notification { method, params: w.params }),
        (None, Some(id), Some(r), None) => Ok(Message::Response { id, outcome: Ok(r) }),
        (None, Some(id), None, Some(e)) => Ok(Message::Response { id, outcome: Err(e) }),
        (_, id, _, _) => Err(Invalid {
            code: INVALID_REQUEST,
            message: "Invalid Request: not a request, notification or response".into(),
            id,
        }),
    }
}

/// The id of a message whose other fields are malformed, when the id itself is valid.
fn readable_id(text: &str) -> Option<&RawValue> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(default, borrow)]
        id: Option<&'a RawValue>,
    }
    serde_json::from_str::<IdOnly<'_>>(text).ok()?.id.filter(|raw| is_valid_id(raw))
}

/// The id near the start of a message too large to parse (a kept prefix), as raw JSON text:
/// an integer or a plain string. Only a top-level `"id"` before any nested value counts, so a
/// payload cannot plant one.
pub fn id_in_prefix(prefix: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(prefix).unwrap_or_else(|e| {
        // A prefix cut inside a multi-byte character is still readable up to the cut.
        std::str::from_utf8(&prefix[..e.valid_up_to()]).unwrap_or_default()
    });
    let body = text.trim_start().strip_prefix('{')?;
    let mut rest = body;
    loop {
        rest = rest.trim_start();
        // A key, then ':', then a scalar value; stop at the first object or array value.
        let key_end = rest.strip_prefix('"')?.find('"')? + 1;
        let key = &rest[1..key_end];
        rest = rest[key_end + 1..].trim_start().strip_prefix(':')?.trim_start();
        let value_len = scalar_len(rest)?;
        if key == "id" {
            let raw = &rest[..value_len];
            let ok = raw.starts_with('"') && !raw[1..raw.len() - 1].contains('\\')
                || raw.bytes().all(|b| b.is_ascii_digit() || b == b'-') && !raw.is_empty();
            return ok.then(|| raw.to_owned());
        }
        rest = rest[value_len..].trim_start().strip_prefix(',')?;
    }
}

/// The length of a JSON string, number, boolean or null at the start of `s`.
fn scalar_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    match bytes.first()? {
        b'"' => {
            let mut i = 1;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => return Some(i + 1),
                    _ => i += 1,
                }
            }
            None
        }
        b'{' | b'[' => None,
        _ => {
            let n = s.find(|c: char| c == ',' || c == '}' || c.is_whitespace()).unwrap_or(s.len());
            (n > 0).then_some(n)
        }
    }
}

fn is_valid_id(raw: &RawValue) -> bool {
    let s = raw.get();
    match s.as_bytes().first() {
        Some(b'"') => true,
        Some(b'-' | b'0'..=b'9') => !s.contains(['.', 'e', 'E']),
        _ => false,
    }
}

/// Whether `text` is a batch (a JSON array), judged by its first significant byte.
pub fn is_batch(text: &str) -> bool {
    text.trim_start().starts_with('[')
}

/// Splits a batch into its raw elements; `None` when it is not valid JSON.
pub fn split_batch(text: &str) -> Option<Vec<&RawValue>> {
    serde_json::from_str(text).ok()
}

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}`.
pub fn result(id: &str, result: &str) -> String {
    let mut s = String::with_capacity(40 + id.len() + result.len());
    s.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    s.push_str(id);
    s.push_str(",\"result\":");
    s.push_str(result);
    s.push('}');
    s
}

/// `{"jsonrpc":"2.0","id":ID,"error":ERROR}` with a raw error object.
pub fn error_raw(id: &str, error: &str) -> String {
    let mut s = String::with_capacity(40 + id.len() + error.len());
    s.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    s.push_str(id);
    s.push_str(",\"error\":");
    s.push_str(error);
    s.push('}');
    s
}

/// A JSON-RPC error object `{"code":…,"message":…}`.
pub fn error_object(code: i64, message: &str) -> String {
    format!("{{\"code\":{code},\"message\":{}}}", quote(message))
}

/// A complete error reply; `id` None means `null` (the id could not be read).
pub fn error(id: Option<&str>, code: i64, message: &str) -> String {
    error_raw(id.unwrap_or("null"), &error_object(code, message))
}

/// A request with the given raw id and raw params.
pub fn request(id: &str, method: &str, params: Option<&str>) -> String {
    let mut s = String::with_capacity(64 + method.len() + params.map_or(0, str::len));
    s.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    s.push_str(id);
    request_rest(s, method, params)
}

/// [`request`] under a numeric id (the router's own ids towards a backend), written
/// straight into the message.
pub fn request_numbered(id: u64, method: &str, params: Option<&str>) -> String {
    let mut s = String::with_capacity(64 + method.len() + params.map_or(0, str::len));
    s.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    // The digits by hand: `write!` goes through the formatting machinery, a few hundred
    // instructions on every call.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = id;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    s.extend(digits[at..].iter().map(|&d| char::from(d)));
    request_rest(s, method, params)
}

fn request_rest(mut s: String, method: &str, params: Option<&str>) -> String {
    s.push_str(",\"method\":");
    push_quoted(&mut s, method);
    if let Some(p) = params {
        s.push_str(",\"params\":");
        s.push_str(p);
    }
    s.push('}');
    s
}

/// A notification with raw params.
pub fn notification(method: &str, params: Option<&str>) -> String {
    let mut s = String::with_capacity(48 + method.len() + params.map_or(0, str::len));
    s.push_str("{\"jsonrpc\":\"2.0\",\"method\":");
    push_quoted(&mut s, method);
    if let Some(p) = params {
        s.push_str(",\"params\":");
        s.push_str(p);
    }
    s.push('}');
    s
}

/// A JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_quoted(&mut out, s);
    out
}

/// Appends `v` as a JSON string.
fn push_quoted(out: &mut String, v: &str) {
    // Method names and most messages need no escaping: skip the general encoder then.
    if v.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f) {
        out.push('"');
        out.push_str(v);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(v).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_from_a_prefix_only_at_the_top_level() {
        assert_eq!(
            id_in_prefix(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"x":"#).as_deref(),
            Some("7")
        );
        assert_eq!(id_in_prefix(br#" { "id" : "a-1" , "method""#).as_deref(), Some("\"a-1\""));
        assert_eq!(id_in_prefix(br#"{"jsonrpc":"2.0","method":"m","params":{"id":9"#), None);
        assert_eq!(id_in_prefix(br#"{"jsonrpc":"2.0","id":{"#), None);
        assert_eq!(id_in_prefix(b"garbage"), None);
    }

    #[test]
    fn a_wrongly_typed_field_keeps_the_id() {
        let e = parse(r#"{"jsonrpc":"2.0","id":4,"method":5}"#).unwrap_err();
        assert_eq!((e.code, e.id.map(RawValue::get)), (INVALID_REQUEST, Some("4")));
    }

    #[test]
    fn classifies_messages() {
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), Ok(Message::Request { .. })));
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","method":"x"}"#), Ok(Message::Notification { .. })));
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#), Ok(Message::Response { .. })));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#),
            Ok(Message::Response { outcome: Err(_), .. })
        ));
        assert_eq!(parse("{not json").unwrap_err().code, PARSE_ERROR);
        assert_eq!(parse(r#"{"jsonrpc":"2.0","id":1,"method":5}"#).unwrap_err().code, INVALID_REQUEST);
        assert_eq!(parse(r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#).unwrap_err().code, INVALID_REQUEST);
        assert_eq!(parse(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).unwrap_err().code, INVALID_REQUEST);
        assert_eq!(parse(r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#).unwrap_err().code, INVALID_REQUEST);
        assert_eq!(parse(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#).unwrap_err().code, INVALID_REQUEST);
        assert_eq!(parse("[]x").unwrap_err().code, PARSE_ERROR);
    }

    #[test]
    fn quoting_matches_the_general_encoder() {
        for s in ["tools/call", "", "a\"b", "back\\slash", "line\nbreak", "tab\t", "é", "\u{7f}"] {
            assert_eq!(quote(s), serde_json::Value::from(s).to_string(), "{s:?}");
        }
    }

    #[test]
    fn the_scanner_reads_every_message_as_serde_json_does() {
        let samples = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":"a\"b","result":{"content":[{"type":"text","text":"x\u0041"}],"n":-1.5e3}}"#,
            r#" {"id":null,"error":{"code":-32600,"message":"m"},"jsonrpc":"2.0","x":[null,true,false]} "#,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7,"progress":0.5}}"#,
            r#"{"jsonrpc":null,"method":null,"id":[1],"params":[]}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"_meta":{"progressToken":"t"},"name":"p","name":null}}"#,
        ];
        let alphabet = [
            b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'0', b'1', b'-', b'+', b'e', b'.', b' ', b'a', b'n', b'u',
            1,
        ];
        let mut cases: Vec<String> = Vec::new();
        for s in samples {
            let b = s.as_bytes();
            for i in 0..b.len() {
                cases.push(s[..i].to_owned());
                for &c in &alphabet {
                    let mut m = b.to_vec();
                    m[i] = c;
                    cases.push(String::from_utf8(m.clone()).expect("ASCII"));
                    m.insert(i, c);
                    cases.push(String::from_utf8(m).expect("ASCII"));
                }
            }
            cases.push(s.to_owned());
        }
        let mut scanned_ok = 0;
        for text in &cases {
            let Some((wire, peek)) = scanned(text) else { continue };
            scanned_ok += 1;
            let params = wire.params;
            assert_eq!(format!("{:?}", classify(wire)), format!("{:?}", parse_by_serde(text)), "{text}");
            let alone = params.filter(|p| p.get().starts_with('{')).and_then(|p| peek_params(p.get()));
            assert_eq!(peek, alone, "the peek on the way is the peek alone: {text}");
        }
        assert!(scanned_ok > 500, "the scanner takes the ordinary messages ({scanned_ok} of {})", cases.len());
    }

    #[test]
    fn a_peek_reads_a_plain_name_and_notes_meta() {
        let peek = |p| peek_params(p).map(|k| (k.name, k.meta));
        assert_eq!(peek(r#"{"arguments":{"name":1,"_meta":{}},"name":"echo"}"#), Some((Some(Some("echo")), false)));
        assert_eq!(peek(r#"{"name":null,"_meta":{"progressToken":1}}"#), Some((Some(None), true)));
        assert_eq!(peek(r#"{"other":"x"}"#), Some((Some(None), false)));
        for left in [r#"{"name":5}"#, r#"{"name":"a\"b"}"#, r#"{"name":"a","name":"b"}"#] {
            assert_eq!(peek(left), Some((None, false)), "{left}");
        }
        assert_eq!(peek(r#"{"name":"a""#), None);
    }

    #[test]
    fn numbered_requests_carry_their_id() {
        for id in [0, 7, 10, 12_345, u64::MAX] {
            assert_eq!(request_numbered(id, "ping", None), format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
        }
    }

    #[test]
    fn ids_come_back_exactly() {
        let m = parse(r#"{"jsonrpc":"2.0","id":"ab\u0063","method":"ping"}"#).unwrap();
        let Message::Request { id, .. } = m else { panic!() };
        assert_eq!(result(id.get(), "{}"), r#"{"jsonrpc":"2.0","id":"ab\u0063","result":{}}"#);
    }
}
