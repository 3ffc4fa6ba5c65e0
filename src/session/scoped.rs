//! Per-session backends (`scope: session`): servers that keep per-user state (a browser, a
//! shell, a login) get one connection per client session. The view's shared connection
//! still answers the catalog, health and reloads; a session's calls to such a backend go
//! to the session's own connection, started on its first call and stopped when the
//! session closes. The router-wide cap is `router.max_session_backends`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Out, Session};
use crate::backend::Backend;
use crate::config::Scope;
use crate::core::View;
use crate::jsonrpc;

/// A session's own connections, by the id of the view's (template) backend they copy.
#[derive(Default)]
pub(super) struct Instances {
    by_template: Mutex<HashMap<usize, Arc<Backend>>>,
}

impl Session {
    /// The connection this session's call to `template` goes to: the template itself for a
    /// shared backend, else this session's own (started now when there is none, or when
    /// the last one went down, since nobody else restarts it).
    pub(super) fn connection_for(&self, v: &View, template: &Arc<Backend>) -> Result<Arc<Backend>, Out> {
        if template.config.scope != Scope::Session {
            return Ok(Arc::clone(template));
        }
        let mut mine = self.instances.by_template.lock();
        if let Some(b) = mine.get(&template.id) {
            if b.is_ready() {
                return Ok(Arc::clone(b));
            }
            if let Some(dead) = mine.remove(&template.id) {
                self.router.core.stop_session_backend(dead);
            }
        }
        // Under the session's lock: two calls of one session must not start two.
        let Some(b) = self.router.core.start_session_backend(template, &v.config.router, self.shared.id) else {
            return Err(Out::error(
                jsonrpc::BACKEND_UNAVAILABLE,
                &format!(
                    "backend {:?}: no per-session connection available (router.max_session_backends = {})",
                    template.name(),
                    v.config.router.max_session_backends
                ),
            ));
        };
        mine.insert(template.id, Arc::clone(&b));
        Ok(b)
    }

    /// Stops every connection of this (closing) session.
    pub(super) fn stop_instances(&self) {
        let all: Vec<Arc<Backend>> = self.instances.by_template.lock().drain().map(|(_, b)| b).collect();
        for b in all {
            self.router.core.stop_session_backend(b);
        }
    }
}
