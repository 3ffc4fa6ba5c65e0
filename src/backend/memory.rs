//! The in-memory transport, for tests: the server is a function in this process, so a
//! backend's lifecycle and call path run with no process, socket or sleep. Compiled for the
//! crate's unit tests only.

use std::sync::Arc;

use crossbeam_channel::bounded;

use super::life::{Connection, Link};

/// The server: given each message the router sends (a whole line), the messages it
/// answers with, in order; `None` when it goes away (the connection then ends, as a
/// process's EOF would end a stdio one).
pub(crate) type Server = Arc<dyn Fn(&str) -> Option<Vec<String>> + Send + Sync>;

pub(super) fn spawn(link: &Link, server: Server) -> Result<Connection, String> {
    let (tx, rx) = bounded(link.queue_capacity);
    let mut conn = Connection::new(tx);
    conn.threads.push(link.spawn_thread("-mem", move |b| {
        while let Ok(cmd) = rx.recv() {
            let Some(line) = cmd.into_line() else { return };
            match server(&line) {
                Some(replies) => {
                    for r in replies {
                        b.dispatch(&r);
                    }
                }
                None => {
                    b.on_exit("the in-memory server went away".into());
                    return;
                }
            }
        }
    })?);
    Ok(conn)
}
