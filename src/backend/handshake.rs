//! A backend's handshake and catalog: the era probe (`server/discover`, else `initialize`),
//! the router's own `subscriptions/listen` on a modern backend, and fetching its lists.
//! Split from `mod.rs`, which keeps the calls and the lifecycle.

use super::*;

/// Why the `server/discover` probe did not settle on the modern era.
enum Discovery {
    /// Not a modern answer: the backend is taken for legacy (`initialize` follows).
    Legacy(String),
    /// A modern server refused (a recognised 2026-07-28 error): no fallback.
    Refused(String),
}

impl Discovery {
    fn why(&self) -> &str {
        match self {
            Discovery::Legacy(w) | Discovery::Refused(w) => w,
        }
    }
}

impl Backend {
    /// Settles the backend's era and learns its facts. `era: auto` probes `server/discover`
    /// first, as a dual-era client should (2026-07-28 `versioning.mdx`), on stdio and on
    /// Streamable HTTP (where the probe is a modern POST: `http.rs` gives it the modern
    /// headers and hands a 4xx's JSON-RPC error back as the answer). A result naming
    /// 2026-07-28 means modern; a recognised modern error (`era::is_modern_error`) means a
    /// modern server that refused, so the start fails rather than falling back; any other
    /// error, an unusable answer or silence within half the time left means legacy, so the
    /// fallback never keys on one error code and `initialize` keeps time to answer. Legacy
    /// HTTP+SSE and WebSocket have no modern shape: never probed.
    pub(super) fn handshake(&self, deadline: Instant, transport: Transport) -> Result<(), String> {
        let setting = self.config.era;
        let probe = match setting {
            EraSetting::Modern => true,
            EraSetting::Legacy => false,
            _ => matches!(transport, Transport::Stdio | Transport::StreamableHttp | Transport::Auto),
        };
        if probe {
            let now = Instant::now();
            let until = if setting == EraSetting::Modern {
                deadline
            } else {
                now + deadline.saturating_duration_since(now) / 2
            };
            match self.discover(until) {
                Ok(()) => return Ok(()),
                Err(Discovery::Legacy(e)) if setting != EraSetting::Modern => {
                    log::debug!(target: "mcprouter::backend", "[{}] legacy era: {e}", self.name());
                }
                Err(Discovery::Legacy(e) | Discovery::Refused(e)) => return Err(e),
            }
        }
        match self.initialize(deadline) {
            // A server that answered the probe after it timed out here may have settled on
            // the modern era, and says so with -32022: ask once more.
            Err(e) if probe && setting == EraSetting::Auto && e.contains(&era::UNSUPPORTED_VERSION.to_string()) => {
                self.discover(deadline).map_err(|d| format!("{e}; {}", d.why()))
            }
            other => other,
        }
    }

    /// The modern handshake: `server/discover`, and the facts its result gives.
    fn discover(&self, deadline: Instant) -> Result<(), Discovery> {
        let result = match self.call("server/discover", Some("{}"), 0, deadline) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if era::is_modern_error(e.get()) => {
                return Err(Discovery::Refused(format!(
                    "the server speaks {} but refused server/discover: {}",
                    era::MODERN,
                    e.get()
                )));
            }
            Ok(Err(e)) => return Err(Discovery::Legacy(format!("server/discover was refused: {}", e.get()))),
            Err(CallError::Timeout) => return Err(Discovery::Legacy("no answer to server/discover in time".into())),
            Err(e) => return Err(Discovery::Legacy(format!("server/discover failed: {e:?}"))),
        };
        let v: Value = serde_json::from_str(result.get())
            .map_err(|e| Discovery::Legacy(format!("bad server/discover result: {e}")))?;
        let speaks = |s: &Value| s.as_array().is_some_and(|a| a.iter().any(|x| x == era::MODERN));
        if !v.get("supportedVersions").is_some_and(speaks) {
            return Err(Discovery::Legacy(format!(
                "server/discover names no version the router speaks ({})",
                era::MODERN
            )));
        }
        let mut life = self.life.lock();
        let f = &mut life.facts;
        f.era = Era::Modern;
        f.protocol_version = Some(era::MODERN.to_owned());
        f.server_info = v.pointer("/_meta").and_then(|m| m.get(era::KEY_SERVER_INFO)).cloned();
        f.capabilities = v.get("capabilities").cloned().unwrap_or(Value::Null);
        f.instructions = v.get("instructions").and_then(Value::as_str).map(str::to_owned);
        drop(life);
        self.listen_for_changes(&v);
        Ok(())
    }

    /// 2026-07-28 has no `resources/subscribe`: the router's subscription to `uri` on a
    /// modern server is a `subscriptions/listen` of its own, named after the URI, opened on the
    /// first subscriber and cancelled after the last.
    pub(crate) fn listen_resource(&self, uri: &str, on: bool) -> Result<(), String> {
        let id = jsonrpc::quote(&format!("mcprouter-sub:{uri}"));
        let cmd = if on {
            let wanted = serde_json::json!({"notifications": {"resourceSubscriptions": [uri]}}).to_string();
            let params = era::params_for(Era::Modern, Some(&wanted), &self.client_capabilities);
            Command::Notify {
                method: Method::SubscriptionsListen,
                line: jsonrpc::request(&id, "subscriptions/listen", params.as_deref()),
            }
        } else {
            let params = format!("{{\"requestId\":{id}}}");
            let line = jsonrpc::notification("notifications/cancelled", Some(&params));
            Command::Notify { method: Method::NotificationsCancelled, line }
        };
        self.send(cmd, Some(Instant::now() + Duration::from_millis(500))).map_err(|e| format!("{e:?}"))
    }

    /// A modern server says a list changed only on a `subscriptions/listen` stream: one is
    /// opened for the lists it offers, for the connection's life, so the catalog follows
    /// them as it follows a legacy server's `list_changed`. Its notifications reach the hub
    /// like any others; its final answer (when the connection ends) is dropped.
    fn listen_for_changes(&self, discovered: &Value) {
        let changes =
            |kind: &str| discovered.pointer(&format!("/capabilities/{kind}/listChanged")) == Some(&Value::Bool(true));
        let wanted = serde_json::json!({"notifications": {
            "toolsListChanged": changes("tools"),
            "promptsListChanged": changes("prompts"),
            "resourcesListChanged": changes("resources"),
        }});
        if !(changes("tools") || changes("prompts") || changes("resources")) {
            return;
        }
        let wanted = wanted.to_string();
        let params = era::params_for(Era::Modern, Some(&wanted), &self.client_capabilities);
        let line = jsonrpc::request("\"mcprouter-listen\"", "subscriptions/listen", params.as_deref());
        // Not a pending call (it never completes while the connection lives): written as is.
        let cmd = Command::Notify { method: Method::SubscriptionsListen, line };
        if let Err(e) = self.send(cmd, Some(Instant::now() + Duration::from_millis(500))) {
            log::warn!(target: "mcprouter::backend", "[{}] could not listen for list changes: {e:?}", self.name());
        }
    }

    /// The legacy handshake: `initialize`, then `notifications/initialized`.
    fn initialize(&self, deadline: Instant) -> Result<(), String> {
        let params = serde_json::json!({
            "protocolVersion": SUPPORTED_VERSIONS[0],
            "capabilities": self.client_capabilities,
            "clientInfo": {"name": "mcprouter", "version": env!("CARGO_PKG_VERSION")},
        })
        .to_string();
        let result = match self.call("initialize", Some(&params), 0, deadline) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(format!("initialize was refused: {}", e.get())),
            Err(CallError::Timeout) => return Err("no answer to initialize in time".into()),
            Err(e) => return Err(format!("initialize failed: {e:?}")),
        };
        let v: Value = serde_json::from_str(result.get()).map_err(|e| format!("bad initialize result: {e}"))?;
        let version = v.get("protocolVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
            return Err(format!("backend wants protocol version {version:?}, which the router does not speak"));
        }
        {
            let mut life = self.life.lock();
            let f = &mut life.facts;
            f.era = Era::Legacy;
            f.protocol_version = Some(version);
            f.server_info = v.get("serverInfo").cloned();
            f.capabilities = v.get("capabilities").cloned().unwrap_or(Value::Null);
            f.instructions = v.get("instructions").and_then(Value::as_str).map(str::to_owned);
        }
        self.notify("notifications/initialized", None)
    }

    /// Fetches every list the backend's capabilities offer, following `nextCursor`.
    ///
    /// A listing that crosses a catalog cap is refused as a whole: the backend serves no
    /// items until a later listing fits, and the reason stays visible in its status. A
    /// listing that merely fails (timeout, error) keeps the previous lists.
    pub(crate) fn refresh_lists(&self, deadline: Instant) -> Result<(), String> {
        let caps = self.life.lock().facts.capabilities.clone();
        let (max_items, max_bytes) = self.catalog_caps;
        let mut budget = Budget { max_items, max_bytes, bytes_left: max_bytes };
        let fetched = (|| {
            let mut lists = Lists::default();
            if caps.get("tools").is_some() {
                lists.tools = self.list_all("tools/list", "tools", deadline, &mut budget)?;
            }
            if caps.get("resources").is_some() {
                lists.resources = self.list_all("resources/list", "resources", deadline, &mut budget)?;
                lists.templates =
                    match self.list_all("resources/templates/list", "resourceTemplates", deadline, &mut budget) {
                        Ok(t) => t,
                        Err(e @ ListError::OverCap(_)) => return Err(e),
                        Err(ListError::Failed(_)) => Vec::new(),
                    };
            }
            if caps.get("prompts").is_some() {
                lists.prompts = self.list_all("prompts/list", "prompts", deadline, &mut budget)?;
            }
            Ok(lists)
        })();
        match fetched {
            Ok(mut lists) => {
                self.bound_templates(&mut lists.templates);
                *self.lists.lock() = Some(Arc::new(lists));
                *self.catalog_error.lock() = None;
                Ok(())
            }
            Err(ListError::OverCap(why)) => {
                let why = format!("catalog refused: {why}");
                *self.lists.lock() = None;
                *self.catalog_error.lock() = Some(why.clone());
                self.life.lock().facts.last_error = Some(why.clone());
                Err(why)
            }
            Err(ListError::Failed(why)) => Err(why),
        }
    }

    /// Drops templates over the matcher's bounds, with one log record for all of them.
    fn bound_templates(&self, templates: &mut Vec<Item>) {
        use crate::catalog::{MAX_TEMPLATES_PER_BACKEND, template_out_of_bounds};
        let before = templates.len();
        let mut first: Option<String> = None;
        templates.retain(|t| {
            let raw = catalog::head(t).uri_template.unwrap_or_default();
            let raw: &str = &raw;
            match template_out_of_bounds(raw) {
                None => true,
                Some(why) => {
                    if first.is_none() {
                        let shown: String = raw.chars().take(80).collect();
                        first = Some(format!("{shown:?}…: {why}"));
                    }
                    false
                }
            }
        });
        let oversized = before - templates.len();
        let surplus = templates.len().saturating_sub(MAX_TEMPLATES_PER_BACKEND);
        templates.truncate(MAX_TEMPLATES_PER_BACKEND);
        if oversized + surplus > 0 {
            log::warn!(
                target: "mcprouter::backend",
                "[{}] dropped {oversized} oversized resource template(s){} and {surplus} past the first {MAX_TEMPLATES_PER_BACKEND}",
                self.name(),
                first.map(|f| format!(" (first: {f})")).unwrap_or_default()
            );
        }
    }

    fn list_all(
        &self,
        method: &str,
        field: &str,
        deadline: Instant,
        budget: &mut Budget,
    ) -> Result<Vec<Item>, ListError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        // A backend that hands back the same cursor forever must not hang discovery.
        for _ in 0..10_000 {
            let params = cursor.as_ref().map(|c| format!("{{\"cursor\":{}}}", jsonrpc::quote(c)));
            let raw = match self.call(method, params.as_deref(), 0, deadline) {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(ListError::Failed(format!("{method} failed: {}", e.get()))),
                Err(e) => return Err(ListError::Failed(format!("{method} failed: {e:?}"))),
            };
            // Counted before parsing, so an oversized page costs no more than its text.
            let Some(left) = budget.bytes_left.checked_sub(raw.get().len()) else {
                return Err(ListError::OverCap(format!(
                    "its lists pass {} bytes (max_catalog_bytes) at {method}",
                    budget.max_bytes
                )));
            };
            budget.bytes_left = left;
            // The page is read as raw fields and its items one at a time: a whole page as
            // one tree would be a transient peak per backend, and parallel start-ups leave
            // such peaks behind in the allocator.
            let page: std::collections::HashMap<std::borrow::Cow<'_, str>, &RawValue> = if raw.get().starts_with('{') {
                serde_json::from_str(raw.get()).unwrap_or_default()
            } else {
                Default::default()
            };
            let items = page.get(field).and_then(|r| serde_json::from_str::<Vec<&RawValue>>(r.get()).ok());
            if let Some(items) = items {
                if out.len() + items.len() > budget.max_items {
                    return Err(ListError::OverCap(format!(
                        "{method} lists more than {} items (max_catalog_items)",
                        budget.max_items
                    )));
                }
                for i in items {
                    let v: Value =
                        serde_json::from_str(i.get()).map_err(|e| ListError::Failed(format!("{method}: {e}")))?;
                    out.push(catalog::item(&v));
                }
            }
            let next = page.get("nextCursor").and_then(|c| serde_json::from_str::<String>(c.get()).ok());
            match next {
                Some(next) if cursor.as_deref() != Some(next.as_str()) && !next.is_empty() => cursor = Some(next),
                _ => return Ok(out),
            }
        }
        Err(ListError::Failed(format!("{method}: too many pages")))
    }
}
