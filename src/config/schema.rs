//! A JSON Schema of the YAML config (`mcprouter schema`), generated from the config types by
//! schemars, so that it cannot drift from what the loader reads.
//!
//! The types alone would make it stricter than the loader, which expands `${VAR}` in every
//! string before reading the values and lets scalars stand for each other (see `yaml.rs`).
//! [`loosen`] widens the generated schema to match, so that a config that loads is never
//! flagged: a number, boolean or name from a fixed set may also be a string holding a
//! variable reference, a string may be written as a number or boolean, and a section whose
//! every field has a default may be left empty (`router:` alone).

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::Config;

/// A string holding a variable reference: the loader expands it before reading the value.
const REFERENCE: &str = r"\$\{[A-Za-z0-9_]+(:-[^}]*)?\}";

impl Config {
    /// The JSON Schema (draft-07, the draft editors' YAML support speaks) of the YAML
    /// config: every section, field, default and description, with unknown keys refused.
    /// Ranges and cross-references (backend names in pools) are checked by
    /// [`Config::validate`] only.
    pub fn json_schema() -> Value {
        let schema = SchemaSettings::draft07().into_generator().into_root_schema_for::<Config>();
        let mut schema = schema.to_value();
        loosen(&mut schema);
        if let Value::Object(root) = &mut schema {
            root.insert("title".into(), json!("mcprouter config"));
        }
        schema
    }
}

/// Widens `schema` (and everything under it) to what the loader accepts; see the module docs.
fn loosen(schema: &mut Value) {
    let Value::Object(s) = schema else { return };
    if is_choice(s) {
        // `prefix: ${PREFIX}`: the choice is checked once expanded.
        let description = s.remove("description");
        let choice = Value::Object(std::mem::take(s));
        s.insert("anyOf".into(), json!([choice, {"type": "string", "pattern": REFERENCE}]));
        if let Some(d) = description {
            s.insert("description".into(), d);
        }
        return;
    }
    if let Some(types) = s.get("type").map(type_list) {
        let has = |t: &str| types.iter().any(|x| x == t);
        let mut widened = types.clone();
        if has("string") {
            widened.extend(["number", "boolean"].map(String::from));
        } else if has("integer") || has("number") || has("boolean") {
            // The pattern applies to strings only, so numbers keep their own checks.
            widened.push("string".into());
            s.insert("pattern".into(), json!(REFERENCE));
        }
        if has("object") && !s.contains_key("required") && !has("null") {
            widened.push("null".into());
        }
        if widened != types {
            s.insert("type".into(), json!(widened));
        }
    }
    for key in ["properties", "definitions", "$defs"] {
        if let Some(Value::Object(children)) = s.get_mut(key) {
            children.values_mut().for_each(loosen);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = s.get_mut(key) {
            loosen(child);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(branches)) = s.get_mut(key) {
            branches.iter_mut().for_each(loosen);
        }
    }
}

/// Whether a schema is a choice among fixed strings: `enum`, `const`, or alternatives
/// that all are.
fn is_choice(s: &Map<String, Value>) -> bool {
    if s.contains_key("enum") || s.contains_key("const") {
        return true;
    }
    ["oneOf", "anyOf"].iter().any(|k| {
        s.get(*k).and_then(Value::as_array).is_some_and(|branches| {
            !branches.is_empty() && branches.iter().all(|b| b.as_object().is_some_and(is_choice))
        })
    })
}

fn type_list(t: &Value) -> Vec<String> {
    match t {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).map(String::from).collect(),
        _ => Vec::new(),
    }
}
