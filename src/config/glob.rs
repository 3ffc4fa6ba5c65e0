//! The glob patterns of allow and deny lists: `*` matches any run, `?` one character,
//! everything else itself. No classes or escapes: tool names need none, and a smaller
//! language leaves less to get wrong in a security filter.

/// Whether `text` matches `pattern` as a whole. It backtracks only to the last `*`, so the
/// time is at most pattern length times text length, never exponential.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("*", ""));
        assert!(glob_match("get_*", "get_user"));
        assert!(!glob_match("get_*", "set_user"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*x*y", "axbxy"));
        assert!(!glob_match("get", "get_user"), "a pattern matches the whole name");
        assert!(glob_match("é?", "éü"), "? is one character, not one byte");
    }

    #[test]
    fn many_stars_stay_fast() {
        let text = "a".repeat(10_000);
        assert!(!glob_match(&format!("{}b", "*a".repeat(50)), &text));
    }
}
