//! Paths into a YAML document (`backends[1].env.TOKEN`): how errors name a place, and how
//! `lines` finds it in the text.

use std::fmt::Write as _;

use serde_norway::Value;

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// Splits `backends[1].env.TOKEN` into its steps.
pub(super) fn parse_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Seg::Key(key.to_owned()));
        }
        while let Some((n, r)) = rest.split_once(']') {
            if let Ok(i) = n.parse() {
                out.push(Seg::Index(i));
            }
            rest = r.strip_prefix('[').unwrap_or(r);
        }
    }
    out
}

pub(super) fn show_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    s
}

/// The path step for a mapping key; keys that are not scalars are never looked up by name.
pub(super) fn key_seg(k: &Value) -> Seg {
    Seg::Key(match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => "?".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_and_show_round_trip() {
        let p = parse_path("backends[1].env.TOKEN");
        assert_eq!(
            p,
            vec![Seg::Key("backends".into()), Seg::Index(1), Seg::Key("env".into()), Seg::Key("TOKEN".into())]
        );
        assert_eq!(show_path(&p), "backends[1].env.TOKEN");
        assert_eq!(parse_path("m[0][2]"), vec![Seg::Key("m".into()), Seg::Index(0), Seg::Index(2)]);
        assert_eq!(show_path(&[]), "");
    }
}
