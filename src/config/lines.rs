//! From a place in the configuration to the line of the YAML text it was written on, so an
//! error can point there. Best effort: block-style YAML is followed exactly, flow style
//! (`{a: 1}`) answers with the enclosing line, and nothing at all is better than a wrong line.

use super::path::Seg;

/// ` (line N)` for `path`, or nothing when the text cannot be followed there.
pub(super) fn line_suffix(src: Option<&str>, path: &[Seg]) -> String {
    src.and_then(|s| line_of_path(s, path)).map(|l| format!(" (line {l})")).unwrap_or_default()
}

/// A non-blank, non-comment line: its number, indentation and text.
struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

impl Line<'_> {
    /// The column and text of the mapping key on this line, past any `- ` item markers.
    fn key_part(&self) -> (usize, &str) {
        let mut col = self.indent;
        let mut text = self.text;
        while let Some(rest) = text.strip_prefix('-').filter(|r| r.starts_with(' ')) {
            let trimmed = rest.trim_start();
            col += 1 + rest.len() - trimmed.len();
            text = trimmed;
        }
        (col, text)
    }

    fn is_item(&self) -> bool {
        self.text == "-" || self.text.starts_with("- ")
    }
}

fn has_key(text: &str, key: &str) -> bool {
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_prefix(key)?.strip_prefix('"'))
        .or_else(|| text.strip_prefix('\'').and_then(|t| t.strip_prefix(key)?.strip_prefix('\'')))
        .or_else(|| text.strip_prefix(key));
    unquoted.is_some_and(|r| r.trim_start().starts_with(':'))
}

/// 1-based line where `path` is written, for block-style YAML. Where the text cannot be
/// followed (flow style, a key left out), the deepest step found answers.
pub(super) fn line_of_path(src: &str, path: &[Seg]) -> Option<usize> {
    let lines: Vec<Line<'_>> = src
        .lines()
        .enumerate()
        .filter_map(|(n, l)| {
            let text = l.trim_start();
            let skip = text.is_empty() || text.starts_with('#') || text.starts_with("---");
            (!skip).then(|| Line { number: n + 1, indent: l.len() - text.len(), text: text.trim_end() })
        })
        .collect();
    // Where the enclosing node was found: its line (as an index into `lines`), its column,
    // and whether its first key sits on that same line (`- name: a`).
    let mut at: Option<(usize, usize, bool)> = None;
    let mut found = None;
    for seg in path {
        let hit = match seg {
            Seg::Key(k) => find_key(&lines, at, k),
            Seg::Index(i) => find_item(&lines, at, *i),
        };
        let Some(hit) = hit else { break };
        found = Some(hit.0);
        at = Some(hit);
    }
    found.and_then(|i| lines.get(i)).map(|l| l.number)
}

fn find_key(lines: &[Line<'_>], at: Option<(usize, usize, bool)>, key: &str) -> Option<(usize, usize, bool)> {
    let (start, parent_col) = match at {
        None => (0, None),
        Some((i, col, true)) => (i, Some(col)),
        Some((i, col, false)) => (i + 1, Some(col)),
    };
    let mut block_col = None;
    for (idx, line) in lines.iter().enumerate().skip(start) {
        let first_of_item = at.is_some_and(|(i, _, inline)| inline && i == idx);
        if !first_of_item && parent_col.is_some_and(|c| line.indent <= c) {
            return None;
        }
        let (col, text) = if first_of_item || line.is_item() { line.key_part() } else { (line.indent, line.text) };
        if line.is_item() && !first_of_item {
            // An item of a list nested under some key of this block: not a key here.
            continue;
        }
        let block = *block_col.get_or_insert(col);
        if col == block && has_key(text, key) {
            return Some((idx, col, false));
        }
    }
    None
}

fn find_item(lines: &[Line<'_>], at: Option<(usize, usize, bool)>, nth: usize) -> Option<(usize, usize, bool)> {
    let (i, parent_col, _) = at?;
    let mut dash_col = None;
    let mut seen = 0;
    for (idx, line) in lines.iter().enumerate().skip(i + 1) {
        // A list may sit at its key's own indentation (`backends:` then `- name: a`).
        if line.indent < parent_col || (line.indent == parent_col && !line.is_item()) {
            return None;
        }
        if !line.is_item() || *dash_col.get_or_insert(line.indent) != line.indent {
            continue;
        }
        if seen == nth {
            return Some((idx, line.indent, true));
        }
        seen += 1;
    }
    None
}

/// 1-based line of the `nth` line that reads `key: value` (value empty = any value), for
/// errors about a value that has no exact path (an item found by its name).
pub(super) fn line_of(src: &str, key: &str, value: &str, nth: usize) -> Option<usize> {
    src.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            let Some(rest) = t.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
                return false;
            };
            let v = rest.trim().trim_matches(|c| c == '"' || c == '\'');
            value.is_empty() || v == value
        })
        .nth(nth)
        .map(|(i, _)| i + 1)
}

/// The ` (line N)` suffixes for errors about one document; without a source (a `Config`
/// built in code), every suffix is empty.
#[derive(Clone, Copy)]
pub(super) struct Locator<'a>(pub(super) Option<&'a str>);

impl Locator<'_> {
    /// The line of the `nth` `key: value` (see [`line_of`]).
    pub(super) fn key(&self, key: &str, value: &str, nth: usize) -> String {
        self.0.and_then(|s| line_of(s, key, value, nth)).map(|l| format!(" (line {l})")).unwrap_or_default()
    }

    /// The line of a dotted path (`router.restart.max_restarts`).
    pub(super) fn path(&self, path: &str) -> String {
        line_suffix(self.0, &super::path::parse_path(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::path::parse_path;

    #[test]
    fn lines_follow_the_path() {
        let src = "router:\n  name: r\n  restart:\n    enabled: true\n    max_restarts: 3\nbackends:\n- name: a\n  command: x\n- name: b\n  # note\n  weight: 2\n  tools:\n    allow: [x]\n  env: {A: b}\n";
        let at = |p: &str| line_of_path(src, &parse_path(p));
        assert_eq!(at("router.restart.max_restarts"), Some(5));
        assert_eq!(at("backends[1].weight"), Some(11));
        assert_eq!(at("backends[1].name"), Some(9));
        assert_eq!(at("backends[1].tools.allow"), Some(13));
        assert_eq!(at("backends[1].env.A"), Some(14));
        assert_eq!(at("backends[0].weight"), Some(7));
    }

    #[test]
    fn lines_of_quoted_keys_nested_lists_and_documents() {
        let src =
            "---\n\"router\":\n  'name': r\npools:\n  - name: p\n    backends:\n      - a\n    strategy: sticky\n";
        let at = |p: &str| line_of_path(src, &parse_path(p));
        assert_eq!(at("router.name"), Some(3));
        assert_eq!(at("pools[0].strategy"), Some(8));
        assert_eq!(at("pools[0].backends[0]"), Some(7));
        // A step that is not written: the deepest step found answers; nothing found, no line.
        assert_eq!(at("pools[0].missing"), Some(5));
        assert_eq!(at("fallbacks[0]"), None);
        assert_eq!(line_suffix(Some(src), &parse_path("pools[0].strategy")), " (line 8)");
        assert_eq!(line_suffix(None, &parse_path("pools[0].strategy")), "");
    }

    #[test]
    fn key_value_lines_count_repeats() {
        let src = "backends:\n  - name: a\n    command: x\n  - name: \"a\"\n    command: y\n";
        assert_eq!(line_of(src, "name", "a", 0), Some(2));
        assert_eq!(line_of(src, "name", "a", 1), Some(4));
        assert_eq!(line_of(src, "command", "", 1), Some(5));
        assert_eq!(line_of(src, "name", "b", 0), None);
        assert_eq!(Locator(Some(src)).key("name", "a", 1), " (line 4)");
        assert_eq!(Locator(None).key("name", "a", 0), "");
        assert_eq!(Locator(Some(src)).path("backends[1].command"), " (line 5)");
    }
}
