//! `subscriptions/listen` (2026-07-28 `basic/patterns/subscriptions.mdx`) for a modern
//! client, over what the router already does for legacy ones: merged `list_changed`
//! notifications, and `resources/subscribe` on the legacy backend serving a URI (shared with
//! other subscribers as usual). The listen request stays open until the client cancels it;
//! meanwhile the session's events are tagged with its subscription id, and a modern client
//! gets no change notification it did not ask for.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{Done, Out, Session, invalid};
use crate::core::View;
use crate::era::MODERN;
use crate::jsonrpc;

/// Listens one session may hold open at once.
const MAX_LISTENS: usize = 16;
const KEY_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";

/// One open `subscriptions/listen`.
pub(super) struct Listener {
    /// The listen request's id, raw: the subscription id.
    id: String,
    tools: bool,
    prompts: bool,
    resources: bool,
    uris: Vec<String>,
    /// Dropped (or sent to) when the client cancels the listen.
    stop: crossbeam_channel::Sender<()>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Wanted {
    tools_list_changed: bool,
    prompts_list_changed: bool,
    resources_list_changed: bool,
    resource_subscriptions: Vec<String>,
}

impl Session {
    /// Opens a listen and holds it until the client cancels it or the session closes.
    pub(super) fn listen(&self, v: &View, id: &RawValue, params: Option<&RawValue>) -> Done {
        #[derive(Deserialize)]
        struct Params {
            #[serde(default)]
            notifications: Wanted,
        }
        let wanted = match params.map(|p| serde_json::from_str::<Params>(p.get())) {
            Some(Ok(p)) => p.notifications,
            Some(Err(e)) => return (invalid(format!("bad params for subscriptions/listen: {e}")), None),
            None => Wanted::default(),
        };
        if self.listeners.lock().len() >= MAX_LISTENS {
            return (invalid(format!("at most {MAX_LISTENS} subscriptions/listen may be open at once")), None);
        }
        // Each URI is subscribed to as a legacy client's would be (shared with other
        // subscribers; a modern backend gets a listen of its own): honoured when that worked.
        let mut uris = Vec::new();
        for (n, uri) in wanted.resource_subscriptions.iter().take(256).enumerate() {
            let sub_id = RawValue::from_string(format!("\"mcprouter-listen-{}-{n}\"", self.shared.id));
            let raw = RawValue::from_string(json!({"uri": uri}).to_string());
            let (Ok(sub_id), Ok(raw)) = (sub_id, raw) else { continue };
            if let (Out::Ok(_), _) = self.route_uri(v, &sub_id, "resources/subscribe", Some(&raw)) {
                uris.push(uri.clone());
            }
        }
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let listener = Listener {
            id: id.get().to_owned(),
            tools: wanted.tools_list_changed,
            prompts: wanted.prompts_list_changed,
            resources: wanted.resources_list_changed,
            uris: uris.clone(),
            stop,
        };
        let honoured = json!({
            "toolsListChanged": listener.tools,
            "promptsListChanged": listener.prompts,
            "resourcesListChanged": listener.resources,
            "resourceSubscriptions": uris,
        });
        self.listeners.lock().push(listener);
        let sub: Value = serde_json::from_str(id.get()).unwrap_or(Value::Null);
        let ack = json!({"notifications": honoured, "_meta": {KEY_SUBSCRIPTION: sub}});
        self.shared.push(jsonrpc::notification("notifications/subscriptions/acknowledged", Some(&ack.to_string())));
        // Held open: only a cancellation or the session's end closes it.
        while !self.is_closed() {
            match stopped.recv_timeout(std::time::Duration::from_millis(200)) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        }
        self.listeners.lock().retain(|l| l.id != id.get());
        for uri in &uris {
            let Ok(raw) = RawValue::from_string(json!({"uri": uri}).to_string()) else { continue };
            let Ok(unsub) = RawValue::from_string(format!("\"mcprouter-unlisten-{}\"", self.shared.id)) else {
                continue;
            };
            let _ = self.route_uri(v, &unsub, "resources/unsubscribe", Some(&raw));
        }
        // The client cancelled: no answer is due (and none is sent once closed).
        (Out::Nothing, None)
    }

    /// A cancellation naming an open listen ends it; false when it names none.
    pub(super) fn stop_listen(&self, request_id: &str) -> bool {
        let listeners = self.listeners.lock();
        let Some(l) = listeners.iter().find(|l| l.id == request_id) else { return false };
        let _ = l.stop.try_send(());
        true
    }

    /// What the client gets of an event. A client that speaks only 2026-07-28 gets change
    /// notifications only through a listen that asked for them, tagged with its id, and log
    /// messages only while its requests carry a `logLevel` (the level itself is the
    /// backend's to apply: a modern one gets it per request, a legacy one keeps its own);
    /// the rest (progress, cancellations) as it came.
    pub(super) fn for_client(&self, event: String) -> Option<String> {
        let (modern_only, logs) = {
            let c = self.shared.client.lock();
            (!c.initialized && c.protocol_version.as_deref() == Some(MODERN), c.log_level.is_some())
        };
        if !modern_only {
            return Some(event);
        }
        // A request without `logLevel` opts out of log messages (2026-07-28).
        if !logs && event.contains("\"notifications/message\"") {
            return None;
        }
        if !(event.contains("list_changed") || event.contains("resources/updated")) {
            return Some(event);
        }
        let mut v: Value = serde_json::from_str(&event).ok()?;
        let method = v.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
        let uri = v.pointer("/params/uri").and_then(Value::as_str).map(str::to_owned);
        let listeners = self.listeners.lock();
        let l = listeners.iter().find(|l| match method.as_str() {
            "notifications/tools/list_changed" => l.tools,
            "notifications/prompts/list_changed" => l.prompts,
            "notifications/resources/list_changed" => l.resources,
            "notifications/resources/updated" => uri.as_ref().is_some_and(|u| l.uris.contains(u)),
            _ => false,
        })?;
        let sub: Value = serde_json::from_str(&l.id).unwrap_or(Value::Null);
        let obj = v.as_object_mut()?;
        let params = obj.entry("params").or_insert_with(|| json!({}));
        let params = params.as_object_mut()?;
        let meta = params.entry("_meta").or_insert_with(|| json!({}));
        meta.as_object_mut()?.insert(KEY_SUBSCRIPTION.into(), sub);
        Some(v.to_string())
    }
}
