//! The two protocol eras. Legacy (2025-11-25 and earlier): an `initialize` handshake fixes
//! the client's capabilities for a connection. Modern (2026-07-28): no handshake; every
//! request carries its client's facts in `params._meta`, every result says its `resultType`,
//! and servers reach the client only through `input_required` results (MRTR, `mrtr.rs`).
//!
//! This module holds the facts of one request as the router sees them (`Caller`), what a
//! call to a backend of either era must carry (`params_for`), and what the router adds to
//! a result it gives a modern client (`complete`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::backend::SUPPORTED_VERSIONS;
use crate::hub::SessionShared;
use crate::method::Method;

/// The one modern version the router speaks.
pub(crate) const MODERN: &str = "2026-07-28";
/// `_meta` keys of a modern request (2026-07-28 `basic/index.mdx`).
pub(crate) const KEY_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub(crate) const KEY_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub(crate) const KEY_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub(crate) const KEY_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub(crate) const KEY_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// Modern error codes (2026-07-28 schema).
pub(crate) const HEADER_MISMATCH: i64 = -32020;
pub(crate) const MISSING_CAPABILITY: i64 = -32021;
pub(crate) const UNSUPPORTED_VERSION: i64 = -32022;

/// Which era a backend speaks: learned by the `server/discover` probe, or pinned by config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Era {
    #[default]
    Legacy,
    Modern,
}

impl Era {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Era::Legacy => "legacy",
            Era::Modern => "modern",
        }
    }
}

/// Whether a JSON-RPC error object is one only a 2026-07-28 server gives: a header
/// mismatch, a missing client capability, or an unsupported version whose `supported` list
/// names 2026-07-28 (a legacy server has no such codes; -32601 and -32602 prove nothing).
pub(crate) fn is_modern_error(error: &str) -> bool {
    let Ok(e) = serde_json::from_str::<Value>(error) else { return false };
    match e.get("code").and_then(Value::as_i64) {
        Some(HEADER_MISMATCH | MISSING_CAPABILITY) => true,
        Some(UNSUPPORTED_VERSION) => {
            e.pointer("/data/supported").and_then(Value::as_array).is_some_and(|s| s.iter().any(|v| v == MODERN))
        }
        _ => false,
    }
}

/// Every version the router serves, newest first: the modern one, then those `initialize`
/// negotiates (what `server/discover` and a -32022 name).
pub(crate) fn supported_versions() -> Vec<&'static str> {
    std::iter::once(MODERN).chain(SUPPORTED_VERSIONS).collect()
}

/// What one modern request declares about its client.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub capabilities: Value,
    pub client_info: Option<Value>,
    pub log_level: Option<String>,
}

impl Declared {
    /// Whether the client declared `capability` for this request.
    pub(crate) fn declares(&self, capability: &str) -> bool {
        self.capabilities.get(capability).is_some()
    }
}

/// How a request's params place it in an era.
pub(crate) enum Envelope {
    /// No modern `_meta`: legacy semantics (the session's handshake, if any).
    Legacy,
    Modern(Declared),
    /// Modern keys, but not a usable envelope: the raw error object to answer.
    Bad(String),
}

/// Reads the modern envelope of a request's params. A request is modern when its `_meta`
/// names a protocol version or client capabilities; both are then required (-32602), and
/// the version must be one the router speaks (-32022, naming every version it serves).
pub(crate) fn read(params: Option<&RawValue>) -> Envelope {
    let Some(p) = params.filter(|p| p.get().contains("io.modelcontextprotocol/")) else { return Envelope::Legacy };
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(rename = "_meta")]
        meta: Option<Map<String, Value>>,
    }
    let Some(meta) = serde_json::from_str::<Params>(p.get()).ok().and_then(|p| p.meta) else {
        return Envelope::Legacy;
    };
    if !meta.contains_key(KEY_VERSION) && !meta.contains_key(KEY_CAPABILITIES) {
        return Envelope::Legacy;
    }
    let missing = |what: &str| {
        Envelope::Bad(crate::jsonrpc::error_object(
            crate::jsonrpc::INVALID_PARAMS,
            &format!("Invalid params: a 2026-07-28 request needs params._meta[\"{what}\"]"),
        ))
    };
    let Some(version) = meta.get(KEY_VERSION).and_then(Value::as_str) else { return missing(KEY_VERSION) };
    if version != MODERN {
        let data = json!({"supported": supported_versions(), "requested": version});
        let msg = crate::jsonrpc::quote(&format!("Unsupported protocol version: {}", crate::session::clip(version)));
        return Envelope::Bad(format!("{{\"code\":{UNSUPPORTED_VERSION},\"message\":{msg},\"data\":{data}}}"));
    }
    let Some(capabilities) = meta.get(KEY_CAPABILITIES).filter(|c| c.is_object()).cloned() else {
        return missing(KEY_CAPABILITIES);
    };
    Envelope::Modern(Declared {
        capabilities,
        client_info: meta.get(KEY_CLIENT_INFO).filter(|i| i.is_object()).cloned(),
        log_level: meta.get(KEY_LOG_LEVEL).and_then(Value::as_str).map(str::to_owned),
    })
}

/// Who the request being handled on this thread is for: a modern request's declarations, or
/// the legacy session whose handshake speaks for it. Set for the length of one request, so
/// the call to a modern backend deep below can carry its client's facts without every layer
/// between passing them on.
#[derive(Clone)]
pub(crate) enum Caller {
    Modern(Arc<Declared>),
    Session(Arc<SessionShared>),
}

thread_local! {
    static CURRENT: RefCell<Option<Caller>> = const { RefCell::new(None) };
}

/// Restores the thread's previous caller when dropped.
pub(crate) struct Scope(Option<Caller>);

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Makes `caller` the current one on this thread until the scope drops.
pub(crate) fn enter(caller: Caller) -> Scope {
    Scope(CURRENT.with(|c| c.borrow_mut().replace(caller)))
}

pub(crate) fn current() -> Option<Caller> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The router's own identity towards backends.
pub(crate) fn router_info() -> Value {
    json!({"name": "mcprouter", "version": env!("CARGO_PKG_VERSION")})
}

/// The params of a call to a backend of `era`. A modern backend gets the per-request
/// envelope: a modern client's own (already in the params), else the calling legacy
/// session's handshake facts, else (the router's own calls) the router's. A legacy backend
/// never sees the envelope: a dual-era server would otherwise answer that one request
/// statelessly, outside the session the router opened with it.
pub(crate) fn params_for<'a>(era: Era, params: Option<&'a str>, router_caps: &Value) -> Option<Cow<'a, str>> {
    let modern_keys = params.is_some_and(|p| p.contains(KEY_VERSION));
    match era {
        Era::Legacy if !modern_keys => params.map(Cow::Borrowed),
        Era::Legacy => {
            let Some(mut v) = params.and_then(|p| serde_json::from_str::<Value>(p).ok()) else {
                return params.map(Cow::Borrowed);
            };
            if let Some(meta) = v.get_mut("_meta").and_then(Value::as_object_mut) {
                for k in [KEY_VERSION, KEY_CAPABILITIES, KEY_CLIENT_INFO, KEY_LOG_LEVEL] {
                    meta.remove(k);
                }
                if meta.is_empty() {
                    v.as_object_mut().map(|o| o.remove("_meta"));
                }
            }
            Some(Cow::Owned(v.to_string()))
        }
        Era::Modern if modern_keys => params.map(Cow::Borrowed),
        Era::Modern => {
            let mut v = params.and_then(|p| serde_json::from_str::<Value>(p).ok()).unwrap_or_else(|| json!({}));
            let Some(obj) = v.as_object_mut() else { return params.map(Cow::Borrowed) };
            let meta = obj.entry("_meta").or_insert_with(|| json!({}));
            let Some(meta) = meta.as_object_mut() else { return params.map(Cow::Borrowed) };
            let (caps, info, level) = match current() {
                Some(Caller::Modern(d)) => (d.capabilities.clone(), d.client_info.clone(), d.log_level.clone()),
                Some(Caller::Session(s)) => {
                    let c = s.client.lock();
                    (c.capabilities.clone(), c.client_info.clone(), c.log_level.clone())
                }
                None => (router_caps.clone(), None, None),
            };
            meta.insert(KEY_VERSION.into(), Value::String(MODERN.into()));
            meta.insert(KEY_CAPABILITIES.into(), if caps.is_object() { caps } else { json!({}) });
            meta.insert(KEY_CLIENT_INFO.into(), info.unwrap_or_else(router_info));
            if let Some(l) = level {
                meta.insert(KEY_LOG_LEVEL.into(), Value::String(l));
            }
            Some(Cow::Owned(v.to_string()))
        }
    }
}

/// Results a modern client may cache, which must say for how long and for whom
/// (2026-07-28 `server/utilities/caching.mdx`).
pub(crate) fn cacheable(method: Method) -> bool {
    matches!(
        method,
        Method::ToolsList
            | Method::PromptsList
            | Method::ResourcesList
            | Method::ResourcesTemplatesList
            | Method::ResourcesRead
            | Method::ServerDiscover
    )
}

/// A result as a modern client must get it: a `resultType` (a legacy backend's result is
/// `complete`), the router's `serverInfo` stamp, and for cacheable results `ttlMs` and
/// `cacheScope` (a modern backend's own values are kept; otherwise 0 ms, as the router's
/// merged lists may change whenever a backend's do, and `scope`).
pub(crate) fn complete(result: &str, method: Method, scope: &str, server_info: &Value) -> String {
    let Ok(Value::Object(mut o)) = serde_json::from_str::<Value>(result) else { return result.to_owned() };
    let kind = o.entry("resultType").or_insert_with(|| Value::String("complete".into())).clone();
    if kind == "complete" && cacheable(method) {
        o.entry("ttlMs").or_insert(json!(0));
        o.entry("cacheScope").or_insert_with(|| Value::String(scope.into()));
    }
    let meta = o.entry("_meta").or_insert_with(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.insert(KEY_SERVER_INFO.into(), server_info.clone());
    }
    Value::Object(o).to_string()
}

/// `Mcp-Name` and the other modern headers carry a value as it is when it is header-safe
/// (visible ASCII and inner spaces), else as `=?base64?<UTF-8 in base64>?=` (2026-07-28
/// `transports/streamable-http.mdx`); a plain value that looks like the sentinel is encoded
/// too, so the receiver never misreads it. The gateway decodes, backend calls encode.
pub(crate) fn encode_header(value: &str) -> String {
    let sentinel = value.starts_with("=?base64?") && value.ends_with("?=");
    let safe = !value.is_empty()
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !sentinel;
    if safe {
        return value.to_owned();
    }
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(12 + value.len().div_ceil(3) * 4);
    out.push_str("=?base64?");
    for chunk in value.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out.push_str("?=");
    out
}

/// A header value: as it is, or the UTF-8 inside `=?base64?…?=` (how a value outside the
/// header-safe characters travels).
pub(crate) fn decode_header(value: &str) -> Result<String, String> {
    let Some(inner) = value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) else {
        return Ok(value.to_owned());
    };
    let bytes = base64(inner).ok_or("invalid base64 in =?base64?…?=")?;
    String::from_utf8(bytes).map_err(|_| "the =?base64?…?= value is not UTF-8".into())
}

/// Standard base64 (RFC 4648 §4), padding optional; `None` on any other character.
fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("json")
    }

    #[test]
    fn an_envelope_is_modern_legacy_or_refused() {
        assert!(matches!(read(None), Envelope::Legacy));
        assert!(matches!(read(Some(&raw(r#"{"_meta":{"progressToken":1}}"#))), Envelope::Legacy));
        let ok = raw(
            r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}},"io.modelcontextprotocol/logLevel":"info"}}"#,
        );
        let Envelope::Modern(d) = read(Some(&ok)) else { panic!("modern") };
        assert!(d.declares("sampling") && !d.declares("roots"));
        assert_eq!(d.log_level.as_deref(), Some("info"));
        let no_caps = raw(r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#);
        let Envelope::Bad(e) = read(Some(&no_caps)) else { panic!("bad") };
        assert!(e.contains("-32602") && e.contains("clientCapabilities"), "{e}");
        let old = raw(
            r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2030-01-01","io.modelcontextprotocol/clientCapabilities":{}}}"#,
        );
        let Envelope::Bad(e) = read(Some(&old)) else { panic!("bad") };
        let v: Value = serde_json::from_str(&e).expect("json");
        assert_eq!(v["code"], -32022);
        assert_eq!(v["data"]["requested"], "2030-01-01");
        assert_eq!(v["data"]["supported"][0], MODERN);
        assert!(v["data"]["supported"].as_array().is_some_and(|s| s.iter().any(|x| x == "2025-11-25")));
    }

    #[test]
    fn a_legacy_backend_never_sees_the_envelope_and_a_modern_one_always_does() {
        let modern = r#"{"name":"t","_meta":{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}"#;
        let out = params_for(Era::Legacy, Some(modern), &json!({})).expect("params");
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v, json!({"name":"t","_meta":{"progressToken":7}}));
        assert!(matches!(params_for(Era::Legacy, Some(r#"{"a":1}"#), &json!({})), Some(Cow::Borrowed(_))));
        let out = params_for(Era::Modern, Some(r#"{"name":"t"}"#), &json!({"roots":{}})).expect("params");
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["_meta"][KEY_VERSION], MODERN);
        assert_eq!(v["_meta"][KEY_CAPABILITIES], json!({"roots":{}}));
        assert_eq!(v["_meta"][KEY_CLIENT_INFO]["name"], "mcprouter");
        let out = params_for(Era::Modern, None, &json!({})).expect("params");
        assert!(out.contains(KEY_VERSION));
    }

    #[test]
    fn modern_results_say_their_type_and_cacheability() {
        let info = json!({"name":"r","version":"1"});
        let v: Value =
            serde_json::from_str(&complete(r#"{"tools":[]}"#, Method::ToolsList, "public", &info)).expect("json");
        assert_eq!(
            (v["resultType"].as_str(), v["ttlMs"].as_i64(), v["cacheScope"].as_str()),
            (Some("complete"), Some(0), Some("public"))
        );
        assert_eq!(v["_meta"][KEY_SERVER_INFO], info);
        let v: Value =
            serde_json::from_str(&complete(r#"{"content":[],"ttlMs":5}"#, Method::ToolsCall, "private", &info))
                .expect("json");
        assert!(v.get("cacheScope").is_none());
        let kept = r#"{"contents":[],"ttlMs":5000,"cacheScope":"public","resultType":"complete"}"#;
        let v: Value = serde_json::from_str(&complete(kept, Method::ResourcesRead, "private", &info)).expect("json");
        assert_eq!((v["ttlMs"].as_i64(), v["cacheScope"].as_str()), (Some(5000), Some("public")));
        let asks = r#"{"resultType":"input_required","requestState":"x"}"#;
        let v: Value = serde_json::from_str(&complete(asks, Method::ResourcesRead, "private", &info)).expect("json");
        assert!(v.get("ttlMs").is_none());
    }
    #[test]
    fn header_values_round_trip_through_the_base64_sentinel() {
        assert_eq!(decode_header("tools/call"), Ok("tools/call".into()));
        // "héllo wörld" in UTF-8.
        assert_eq!(decode_header("=?base64?aMOpbGxvIHfDtnJsZA==?="), Ok("héllo wörld".into()));
        assert_eq!(decode_header("=?base64?aMOpbGxvIHfDtnJsZA?="), Ok("héllo wörld".into()));
        assert!(decode_header("=?base64?@@?=").is_err());
        assert!(decode_header("=?base64?/w==?=").is_err(), "not UTF-8");
        assert_eq!(encode_header("era-echo"), "era-echo");
        assert_eq!(encode_header("héllo wörld"), "=?base64?aMOpbGxvIHfDtnJsZA==?=");
        for v in ["héllo wörld", "é", "éé", "ééé", " lead", "tab\there", "=?base64?x?=", "", "工具"] {
            let e = encode_header(v);
            assert_ne!(e, v, "{v:?} is not header-safe");
            assert_eq!(decode_header(&e).as_deref(), Ok(v));
        }
        assert_eq!(encode_header("file:///a b.txt"), "file:///a b.txt");
    }

    #[test]
    fn only_errors_a_legacy_server_never_gives_prove_the_modern_era() {
        assert!(is_modern_error(r#"{"code":-32020,"message":"header mismatch"}"#));
        assert!(is_modern_error(r#"{"code":-32021,"message":"m","data":{"requiredCapabilities":{}}}"#));
        assert!(is_modern_error(
            r#"{"code":-32022,"message":"v","data":{"supported":["2026-07-28"],"requested":"x"}}"#
        ));
        // A -32022 that does not name the modern version, and the codes legacy servers use.
        assert!(!is_modern_error(r#"{"code":-32022,"message":"v","data":{"supported":["2025-11-25"]}}"#));
        for legacy in [-32601, -32602, -32600, -32000] {
            assert!(!is_modern_error(&format!(r#"{{"code":{legacy},"message":"no"}}"#)), "{legacy}");
        }
        assert!(!is_modern_error("not json"));
    }
}
