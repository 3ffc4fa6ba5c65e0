//! `${VAR}` and `${VAR:-default}` in string values, from the environment (or any lookup).
//!
//! Expansion runs on the parsed tree, never on the text, so a variable's value can neither
//! add keys (a newline), cut itself short (`#`), nor be looked up inside a comment. Mapping
//! keys are never expanded.

use serde_norway::Value;

use super::lines::line_suffix;
use super::path::{Seg, key_seg, show_path};
use crate::error::{Error, Result};

/// Expands `${VAR}` and `${VAR:-default}` in one string value; `$$` is a literal `$`. The
/// error names the variable, never a value.
pub(super) fn expand_str(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err("unterminated ${".into());
            };
            let Some((name, default)) = reference(&body[..end]) else {
                return Err("bad variable reference (want ${NAME} or ${NAME:-default})".into());
            };
            out.push_str(&value(name, default, lookup)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The name and default of a `${...}` body (`NAME` or `NAME:-default`); `None` when the name
/// is not a variable name.
pub(super) fn reference(expr: &str) -> Option<(&str, Option<&str>)> {
    let (name, default) = match expr.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (expr, None),
    };
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    valid.then_some((name, default))
}

/// A reference's value: the variable when it is set (and not empty, when there is a
/// default), else the default. An unset variable without one is an error naming it, never
/// a value.
pub(super) fn value(
    name: &str,
    default: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    match (lookup(name).filter(|v| !v.is_empty() || default.is_none()), default) {
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_owned()),
        (None, None) => Err(format!("environment variable {name} is not set (use ${{{name}:-default}})")),
    }
}

/// Expands every string value under `value` (mapping keys are left alone).
pub(super) fn expand_tree(
    value: &mut Value,
    path: &mut Vec<Seg>,
    src: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<()> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = expand_str(s, lookup)
                .map_err(|why| Error::Config(format!("{}: {why}{}", show_path(path), line_suffix(Some(src), path))))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                expand_tree(item, path, src, lookup)?;
                path.pop();
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                path.push(key_seg(k));
                expand_tree(v, path, src, lookup)?;
                path.pop();
            }
        }
        Value::Tagged(t) => expand_tree(&mut t.value, path, src, lookup)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME_DIR" => Some("/home/x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_defaults_and_dollars() {
        let out = expand_str("${HOME_DIR}/b ${NOPE:-dflt} $$x ${EMPTY:-e}", &env).unwrap();
        assert_eq!(out, "/home/x/b dflt $x e");
        assert_eq!(expand_str("${EMPTY}|$x|$", &env).unwrap(), "|$x|$");
        assert_eq!(expand_str("${NOPE:-}", &env).unwrap(), "");
    }

    #[test]
    fn bad_references_name_the_variable_never_a_value() {
        let e = expand_str("a ${MISSING} b", &env).unwrap_err();
        assert!(e.contains("MISSING") && e.contains(":-default"), "{e}");
        assert!(expand_str("${HOME_DIR", &env).unwrap_err().contains("unterminated"));
        assert!(expand_str("${BAD-NAME}", &env).unwrap_err().contains("bad variable reference"));
        assert!(expand_str("${}", &env).unwrap_err().contains("bad variable reference"));
    }

    #[test]
    fn trees_expand_values_not_keys_and_errors_carry_path_and_line() {
        let src = "a:\n  ${HOME_DIR}: ${HOME_DIR}\n  list: [x, \"${NOPE:-d}\"]\n";
        let mut tree: Value = serde_norway::from_str(src).unwrap();
        expand_tree(&mut tree, &mut Vec::new(), src, &env).unwrap();
        let a = &tree["a"];
        assert_eq!(a["${HOME_DIR}"].as_str(), Some("/home/x"));
        assert_eq!(a["list"][1].as_str(), Some("d"));
        let src = "a:\n  b:\n    - ok\n    - ${MISSING}\n";
        let mut tree: Value = serde_norway::from_str(src).unwrap();
        let e = expand_tree(&mut tree, &mut Vec::new(), src, &env).unwrap_err().to_string();
        assert!(e.contains("a.b[1]") && e.contains("MISSING") && e.contains("line 4"), "{e}");
    }
}
