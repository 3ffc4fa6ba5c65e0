//! Every log record of a test process, for tests that count what the router logged. Tests
//! run in parallel: each looks only at records naming its own backends.

use std::sync::{Mutex, Once};

/// One record: level, target, message.
pub type Record = (log::Level, String, String);

static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        RECORDS.lock().unwrap().push((record.level(), record.target().to_owned(), record.args().to_string()));
    }
    fn flush(&self) {}
}

/// Installs the capture (once per test binary) at level info.
pub fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// The records captured so far that `keep` accepts.
pub fn records(keep: impl Fn(&Record) -> bool) -> Vec<Record> {
    RECORDS.lock().unwrap().iter().filter(|r| keep(r)).cloned().collect()
}
