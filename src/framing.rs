//! Newline-delimited framing with a size limit, shared by the stdio transport and the
//! `mcprouter serve` front end.

use std::io::BufRead;

/// The outcome of one bounded line read.
pub enum Line {
    /// A complete line is in the buffer.
    Complete,
    /// The stream ended.
    Eof,
    /// The line exceeded the limit and was skipped; its first bytes are kept.
    TooLong(Vec<u8>),
}

/// Reads one `\n`-terminated line into `buf` (without the terminator or a trailing `\r`),
/// never holding more than `max` bytes: an oversized line is consumed and reported.
pub fn read_line_limited(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long: Option<Vec<u8>> = None;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match too_long {
                Some(p) => Line::TooLong(p),
                None if buf.is_empty() => Line::Eof,
                None => Line::Complete,
            });
        }
        let (chunk, done, found) = match memchr(available) {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        if too_long.is_none() {
            if buf.len() + chunk.len() > max {
                let mut prefix = std::mem::take(buf);
                prefix.extend_from_slice(&chunk[..chunk.len().min(256)]);
                prefix.truncate(256);
                too_long = Some(prefix);
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        r.consume(done);
        if found {
            if let Some(p) = too_long {
                return Ok(Line::TooLong(p));
            }
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Line::Complete);
        }
    }
}

fn memchr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn lines_are_limited() {
        let data = b"short\r\n0123456789abcdef\nlast";
        let mut r = BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert!(matches!(read_line_limited(&mut r, &mut buf, 10).unwrap(), Line::Complete));
        assert_eq!(buf, b"short");
        assert!(matches!(read_line_limited(&mut r, &mut buf, 10).unwrap(), Line::TooLong(_)));
        assert!(matches!(read_line_limited(&mut r, &mut buf, 10).unwrap(), Line::Complete));
        assert_eq!(buf, b"last");
        assert!(matches!(read_line_limited(&mut r, &mut buf, 10).unwrap(), Line::Eof));
    }
}
