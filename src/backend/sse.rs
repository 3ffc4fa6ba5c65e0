//! A server-sent events reader (the `text/event-stream` format of the HTML standard) with a
//! size cap per event and optionally per stream, so an endless event or an endless body
//! ends in an error instead of memory growth.

use std::io::{self, BufRead};

/// One dispatched event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    /// `event:` field; `message` when absent.
    pub kind: String,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// Why a stream could not be read further.
#[derive(Debug)]
pub(crate) enum SseError {
    /// One event (or the whole stream, when capped) exceeded this many bytes.
    TooLarge(usize),
    /// The bytes are not UTF-8.
    NotUtf8,
    Io(io::Error),
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::TooLarge(n) => write!(f, "an event stream exceeded {n} bytes"),
            SseError::NotUtf8 => f.write_str("an event stream carried bytes that are not UTF-8"),
            SseError::Io(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                write!(f, "the event stream went silent ({e})")
            }
            SseError::Io(e) => write!(f, "the event stream broke: {e}"),
        }
    }
}

pub(crate) struct SseReader<R> {
    input: R,
    max_event: usize,
    /// Bytes the whole stream may carry (None: unlimited, for long-lived streams).
    max_total: Option<usize>,
    total: usize,
    line: Vec<u8>,
    /// The last `id:` seen, for `Last-Event-ID` on reconnect.
    pub last_id: Option<String>,
    /// The last `retry:` seen, in milliseconds.
    pub retry: Option<u64>,
}

impl<R: BufRead> SseReader<R> {
    pub(crate) fn new(input: R, max_event: usize, max_total: Option<usize>) -> SseReader<R> {
        SseReader { input, max_event, max_total, total: 0, line: Vec::new(), last_id: None, retry: None }
    }

    /// Reads one line into `self.line` (without its terminator). False at end of stream.
    fn read_line(&mut self, budget: usize) -> Result<bool, SseError> {
        self.line.clear();
        loop {
            let available = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SseError::Io(e)),
            };
            if available.is_empty() {
                return Ok(!self.line.is_empty());
            }
            let (take, done) = match available.iter().position(|&c| c == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            self.line.extend_from_slice(&available[..take]);
            self.input.consume(take);
            self.total += take;
            if let Some(max) = self.max_total
                && self.total > max
            {
                return Err(SseError::TooLarge(max));
            }
            if self.line.len() > budget {
                return Err(SseError::TooLarge(self.max_event));
            }
            if done {
                self.line.pop();
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                return Ok(true);
            }
        }
    }

    /// The next event with data; `None` at the end of the stream. Events without data
    /// (priming events carrying only an `id`) update `last_id` and are skipped.
    pub(crate) fn next_event(&mut self) -> Result<Option<Event>, SseError> {
        let mut ev = Event::default();
        let mut has_data = false;
        let mut size = 0usize;
        loop {
            let budget = self.max_event.saturating_sub(size) + 2;
            if !self.read_line(budget)? {
                // A half event at the end of the stream is discarded, as the standard says.
                return Ok(None);
            }
            size += self.line.len() + 1;
            if size > self.max_event + 2 {
                return Err(SseError::TooLarge(self.max_event));
            }
            if self.line.is_empty() {
                // An empty data buffer is not dispatched (the standard), e.g. a priming event.
                if has_data && !ev.data.is_empty() {
                    if ev.kind.is_empty() {
                        ev.kind.push_str("message");
                    }
                    return Ok(Some(ev));
                }
                ev = Event::default();
                has_data = false;
                size = 0;
                continue;
            }
            let text = std::str::from_utf8(&self.line).map_err(|_| SseError::NotUtf8)?;
            if text.starts_with(':') {
                continue;
            }
            let (field, value) = match text.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (text, ""),
            };
            match field {
                "data" => {
                    if has_data {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(value);
                    has_data = true;
                }
                "event" => value.clone_into(&mut ev.kind),
                "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
                "retry" => {
                    if let Ok(ms) = value.parse() {
                        self.retry = Some(ms);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str, max: usize) -> (Vec<Event>, Option<SseError>, Option<String>) {
        let mut r = SseReader::new(text.as_bytes(), max, None);
        let mut out = Vec::new();
        loop {
            match r.next_event() {
                Ok(Some(e)) => out.push(e),
                Ok(None) => return (out, None, r.last_id),
                Err(e) => return (out, Some(e), r.last_id),
            }
        }
    }

    #[test]
    fn parses_fields_comments_and_multiline_data() {
        let (evs, err, id) = events(
            ": hi\r\nid: 7\r\ndata:\r\n\r\nevent: endpoint\ndata: /m?s=1\n\nid: 8\nretry: 50\ndata: a\ndata:b\n\n",
            100,
        );
        assert!(err.is_none());
        assert_eq!(
            evs,
            vec![
                Event { kind: "endpoint".into(), data: "/m?s=1".into() },
                Event { kind: "message".into(), data: "a\nb".into() },
            ]
        );
        assert_eq!(id.as_deref(), Some("8"));
    }

    #[test]
    fn caps_endless_events_and_lines() {
        let long = format!("data: {}\n\n", "x".repeat(500));
        assert!(matches!(events(&long, 100).1, Some(SseError::TooLarge(100))));
        let many = "data: x\n".repeat(100);
        assert!(matches!(events(&many, 100).1, Some(SseError::TooLarge(100))));
        let mut capped = SseReader::new("data: 1\n\ndata: 2\n\n".as_bytes(), 100, Some(12));
        assert!(capped.next_event().unwrap().is_some());
        assert!(matches!(capped.next_event(), Err(SseError::TooLarge(12))));
    }
}
