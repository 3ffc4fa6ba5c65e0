//! Who may talk to the gateway: `Host` and `Origin` against allow-lists (DNS-rebinding
//! protection), bearer tokens compared in constant time, and which origins get CORS
//! headers.

use crate::config::{ClientConfig, GatewaySettings};
use crate::error::{Error, Result};

const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The checks of one gateway, with its tokens read.
pub(crate) struct Checks {
    hosts: Vec<String>,
    origins: Vec<String>,
    cors: Vec<String>,
    tokens: Vec<Vec<u8>>,
    /// Each configured client's credential, and its name: the identity a token stands for.
    clients: Vec<(Vec<u8>, String)>,
}

impl Checks {
    /// The checks of `s`, with the tokens and the `clients`' credentials read.
    pub fn new(s: &GatewaySettings, clients: &[ClientConfig]) -> Result<Checks> {
        let lower = |v: &Vec<String>| v.iter().map(|h| h.to_ascii_lowercase()).collect::<Vec<_>>();
        let tokens = s.tokens.iter().map(|t| t.resolve().map(String::into_bytes)).collect::<Result<Vec<_>>>()?;
        let mut known: Vec<(Vec<u8>, String)> = Vec::new();
        for c in clients {
            let Some(r) = &c.credential else { continue };
            let v = r.resolve().map_err(|e| Error::Config(format!("clients ({}): {e}", c.name)))?.into_bytes();
            // One token, one identity: a shared one could not say which client it is.
            if tokens.contains(&v) || known.iter().any(|(k, _)| *k == v) {
                return Err(Error::Config(format!(
                    "clients ({}): its credential is also another client's or a gateway token",
                    c.name
                )));
            }
            known.push((v, c.name.clone()));
        }
        Ok(Checks {
            hosts: lower(&s.allowed_hosts),
            origins: lower(&s.allowed_origins),
            cors: lower(&s.cors_origins),
            tokens,
            clients: known,
        })
    }

    pub fn has_tokens(&self) -> bool {
        !self.tokens.is_empty() || !self.clients.is_empty()
    }

    /// The `Host` header is one the gateway serves. A request without one (HTTP/1.0) is
    /// refused too: the check is what stops DNS rebinding.
    pub fn host_ok(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return false };
        let host = host.to_ascii_lowercase();
        let name = strip_port(&host);
        if self.hosts.is_empty() {
            return LOOPBACK_NAMES.contains(&name);
        }
        self.hosts.iter().any(|h| h == "*" || *h == host || h == name)
    }

    /// The `Origin` header, when present, is allowed. `null` (a sandboxed page) is not.
    pub fn origin_ok(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        let origin = origin.to_ascii_lowercase();
        if self.cors.iter().any(|c| c == "*" || *c == origin) {
            return true;
        }
        let Some(name) = origin_host(&origin) else { return false };
        if self.origins.is_empty() {
            return LOOPBACK_NAMES.contains(&name);
        }
        self.origins.iter().any(|o| o == "*" || *o == origin || o == name)
    }

    /// Whether `origin` gets CORS headers.
    pub fn cors_for(&self, origin: Option<&str>) -> Option<String> {
        let origin = origin?;
        let lower = origin.to_ascii_lowercase();
        self.cors.iter().any(|c| c == "*" || *c == lower).then(|| origin.to_owned())
    }

    /// Who the `Authorization` header says the caller is: `None` refused, `Some(None)` a
    /// caller with no client identity (a `gateway.tokens` token, or no tokens at all),
    /// `Some(Some(name))` the configured client whose credential it carries. Every token
    /// and credential is compared in full, whatever matched before.
    pub fn authorize(&self, authorization: Option<&str>) -> Option<Option<&str>> {
        if !self.has_tokens() {
            return Some(None);
        }
        let given = authorization
            .and_then(|a| a.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().as_bytes())
            .unwrap_or_default();
        let mut who = None;
        for (t, name) in &self.clients {
            if constant_time_eq(given, t) {
                who = Some(name.as_str());
            }
        }
        let anonymous = self.anonymous(given);
        if given.is_empty() {
            return None;
        }
        match (who, anonymous) {
            (Some(name), _) => Some(Some(name)),
            (None, true) => Some(None),
            (None, false) => None,
        }
    }

    fn anonymous(&self, given: &[u8]) -> bool {
        let mut ok = false;
        for t in &self.tokens {
            ok |= constant_time_eq(given, t);
        }
        ok
    }
}

/// `host:port` → `host`; `[::1]:port` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h)
}

/// The host name of an origin (`scheme://host[:port]`).
fn origin_host(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    let authority = rest.split('/').next()?;
    Some(strip_port(authority))
}

/// Equal bytes, in time that depends only on the lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(std::hint::black_box(x ^ y));
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(yaml: &str) -> Checks {
        Checks::new(&GatewaySettings::from_yaml(yaml).unwrap(), &[]).unwrap()
    }

    #[test]
    fn loopback_by_default() {
        let c = checks("");
        for ok in ["localhost:8080", "127.0.0.1", "[::1]:1", "LOCALHOST"] {
            assert!(c.host_ok(Some(ok)), "{ok}");
        }
        for bad in ["evil.example.com", "evil.example.com:8080", "localhost.evil.com", "[::2]:1"] {
            assert!(!c.host_ok(Some(bad)), "{bad}");
        }
        assert!(!c.host_ok(None));
        assert!(c.origin_ok(None) && c.origin_ok(Some("http://localhost:3000")));
        assert!(!c.origin_ok(Some("http://evil.example.com")) && !c.origin_ok(Some("null")));
        assert!(c.cors_for(Some("http://localhost:3000")).is_none());
    }

    #[test]
    fn configured_lists() {
        let c = checks(
            "allowed_hosts: [mcp.internal]\nallowed_origins: [https://app.example.com]\ncors_origins: [https://ui.example.com]\n",
        );
        assert!(c.host_ok(Some("mcp.internal:443")) && !c.host_ok(Some("localhost")));
        assert!(c.origin_ok(Some("https://app.example.com")) && c.origin_ok(Some("https://ui.example.com")));
        assert!(!c.origin_ok(Some("http://app.example.com")));
        assert_eq!(c.cors_for(Some("https://ui.example.com")).as_deref(), Some("https://ui.example.com"));
    }

    #[test]
    fn tokens() {
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"ab", b"abc")
        );
        let mut c = checks("");
        assert_eq!(c.authorize(None), Some(None));
        c.tokens = vec![b"t0k".to_vec()];
        assert!(c.authorize(Some("Bearer t0k")).is_some() && c.authorize(Some("bearer t0k")).is_some());
        assert!(
            c.authorize(Some("Bearer t0")).is_none()
                && c.authorize(Some("Basic t0k")).is_none()
                && c.authorize(None).is_none()
        );
        c.clients = vec![(b"alice-t".to_vec(), "alice".into())];
        assert_eq!(c.authorize(Some("Bearer alice-t")), Some(Some("alice")));
        assert_eq!(c.authorize(Some("Bearer t0k")), Some(None), "a gateway token has no identity");
        assert_eq!(c.authorize(Some("Bearer alice")), None);
        c.tokens.clear();
        assert_eq!(c.authorize(None), None, "credentials alone still require a token");
    }
}
