//! `mcprouter test-server --conformance`: the tools, resources and prompts that the
//! official conformance suite (`@modelcontextprotocol/conformance` 0.1.16) calls by name,
//! with the behaviour its scenarios describe, so the router can be held to every server
//! scenario. Written from the scenarios' descriptions; the static data lives here and the
//! tools that talk to the client run in `test_server.rs`.

use serde_json::{Value, json};

/// A 1x1 PNG.
pub const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
/// A WAV file with no samples.
pub const WAV: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=";

/// `name|description` of the fixture tools taking no arguments; the others are listed
/// in [`tools`] with their schemas.
const PLAIN_TOOLS: &str = "test_simple_text|Returns simple text content
test_image_content|Returns image content
test_audio_content|Returns audio content
test_embedded_resource|Returns an embedded resource
test_multiple_content_types|Returns text, image and resource content
test_tool_with_logging|Sends three log messages while it runs
test_error_handling|Always fails with isError
test_tool_with_progress|Reports progress 0, 50 and 100 of 100
test_elicitation_sep1034_defaults|Elicits with defaults for every primitive type
test_elicitation_sep1330_enums|Elicits with every enum variant
test_reconnection|Answers after a short pause";

pub fn tools() -> Vec<Value> {
    let empty = json!({"type": "object", "properties": {}});
    let mut out: Vec<Value> = PLAIN_TOOLS
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(n, d)| json!({"name": n, "description": d, "inputSchema": empty}))
        .collect();
    let one = |arg: &str, what: &str| json!({"type": "object", "properties": {arg: {"type": "string", "description": what}}, "required": [arg]});
    out.push(json!({"name": "test_sampling", "description": "Asks the client for a completion", "inputSchema": one("prompt", "The prompt")}));
    out.push(json!({"name": "test_elicitation", "description": "Asks the user for input", "inputSchema": one("message", "The message")}));
    out.push(json!({
        "name": "json_schema_2020_12_tool",
        "description": "Tool with JSON Schema 2020-12 features",
        "inputSchema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": false
        }
    }));
    out
}

fn text(s: &str) -> Value {
    json!({"content": [{"type": "text", "text": s}]})
}

/// The result of a fixture tool that needs nothing from the client; None for the others
/// (and for names that are not fixtures).
pub fn simple_call(name: &str) -> Option<Value> {
    Some(match name {
        "test_simple_text" => text("This is a simple text response for testing."),
        "test_image_content" => json!({"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]}),
        "test_audio_content" => json!({"content": [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]}),
        "test_embedded_resource" => json!({"content": [{"type": "resource", "resource": {
            "uri": "test://embedded-resource", "mimeType": "text/plain", "text": "This is an embedded resource content."}}]}),
        "test_multiple_content_types" => json!({"content": [
            {"type": "text", "text": "Multiple content types test:"},
            {"type": "image", "data": PNG, "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json",
                "text": "{\"test\":\"data\",\"value\":123}"}}
        ]}),
        "test_error_handling" => json!({"isError": true, "content": [{"type": "text",
            "text": "This tool intentionally returns an error for testing"}]}),
        "json_schema_2020_12_tool" => text("ok"),
        _ => return None,
    })
}

/// The `elicitation/create` params of the elicitation fixtures.
pub fn elicitation(name: &str, message: Option<&str>) -> Option<Value> {
    let schema = match name {
        "test_elicitation" => json!({"type": "object", "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"}},
            "required": ["username", "email"]}),
        "test_elicitation_sep1034_defaults" => json!({"type": "object", "properties": {
            "name": {"type": "string", "default": "John Doe"},
            "age": {"type": "integer", "default": 30},
            "score": {"type": "number", "default": 95.5},
            "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "default": true}}}),
        "test_elicitation_sep1330_enums" => json!({"type": "object", "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "oneOf": [
                {"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"}]},
            "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "items": {"anyOf": [
                {"const": "value1", "title": "First Choice"}, {"const": "value2", "title": "Second Choice"},
                {"const": "value3", "title": "Third Choice"}]}}}}),
        _ => return None,
    };
    let message = message.unwrap_or("Please fill in the form");
    Some(json!({"message": message, "requestedSchema": schema}))
}

/// The tool result for an elicitation answer.
pub fn elicitation_result(name: &str, answer: &Value) -> Value {
    let action = answer.get("action").and_then(Value::as_str).unwrap_or("unknown");
    let content = answer.get("content").cloned().unwrap_or(Value::Null);
    if name == "test_elicitation" {
        return text(&format!("User response: action={action}, content={content}"));
    }
    text(&format!("Elicitation completed: action={action}, content={content}"))
}

pub fn resources() -> Vec<Value> {
    vec![
        json!({"uri": "test://static-text", "name": "static-text", "description": "A static text resource", "mimeType": "text/plain"}),
        json!({"uri": "test://static-binary", "name": "static-binary", "description": "A static binary resource", "mimeType": "image/png"}),
        json!({"uri": "test://watched-resource", "name": "watched-resource", "description": "A resource to subscribe to", "mimeType": "text/plain"}),
    ]
}

pub fn templates() -> Vec<Value> {
    vec![
        json!({"uriTemplate": "test://template/{id}/data", "name": "template", "description": "Data by id", "mimeType": "application/json"}),
    ]
}

/// `resources/read` of a fixture URI.
pub fn read(uri: &str) -> Option<Value> {
    let content = match uri {
        "test://static-text" => {
            json!({"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."})
        }
        "test://static-binary" => json!({"uri": uri, "mimeType": "image/png", "blob": PNG}),
        "test://watched-resource" => json!({"uri": uri, "mimeType": "text/plain", "text": "Watched resource content."}),
        _ => {
            let id = uri.strip_prefix("test://template/")?.strip_suffix("/data")?;
            if id.is_empty() || id.contains('/') {
                return None;
            }
            let body = json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
            json!({"uri": uri, "mimeType": "application/json", "text": body.to_string()})
        }
    };
    Some(json!({"contents": [content]}))
}

pub fn prompts() -> Vec<Value> {
    let arg = |n: &str, d: &str| json!({"name": n, "description": d, "required": true});
    vec![
        json!({"name": "test_simple_prompt", "description": "A prompt without arguments"}),
        json!({"name": "test_prompt_with_arguments", "description": "A prompt with arguments",
            "arguments": [arg("arg1", "First test argument"), arg("arg2", "Second test argument")]}),
        json!({"name": "test_prompt_with_embedded_resource", "description": "A prompt embedding a resource",
            "arguments": [arg("resourceUri", "URI of the resource to embed")]}),
        json!({"name": "test_prompt_with_image", "description": "A prompt with an image"}),
    ]
}

/// `prompts/get` of a fixture prompt: None when `name` is not one, `Err` for a missing
/// argument.
pub fn prompt(name: &str, args: &Value) -> Option<Result<Value, String>> {
    let arg = |k: &str| args.get(k).and_then(Value::as_str).ok_or_else(|| format!("missing required argument {k}"));
    let user = |content: Value| json!({"role": "user", "content": content});
    let messages = match name {
        "test_simple_prompt" => vec![user(json!({"type": "text", "text": "This is a simple prompt for testing."}))],
        "test_prompt_with_arguments" => {
            let (a1, a2) = match (arg("arg1"), arg("arg2")) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
            };
            vec![user(json!({"type": "text", "text": format!("Prompt with arguments: arg1='{a1}', arg2='{a2}'")}))]
        }
        "test_prompt_with_embedded_resource" => {
            let uri = match arg("resourceUri") {
                Ok(u) => u,
                Err(e) => return Some(Err(e)),
            };
            vec![
                user(json!({"type": "resource", "resource": {"uri": uri, "mimeType": "text/plain",
                    "text": "Embedded resource content for testing."}})),
                user(json!({"type": "text", "text": "Please process the embedded resource above."})),
            ]
        }
        "test_prompt_with_image" => vec![
            user(json!({"type": "image", "data": PNG, "mimeType": "image/png"})),
            user(json!({"type": "text", "text": "Please analyze the image above."})),
        ],
        _ => return None,
    };
    Some(Ok(json!({"messages": messages})))
}

/// `completion/complete` for the fixture prompt's arguments.
pub fn complete(p: &Value) -> Option<Value> {
    if p.pointer("/ref/name").and_then(Value::as_str) != Some("test_prompt_with_arguments") {
        return None;
    }
    let typed = p.pointer("/argument/value").and_then(Value::as_str).unwrap_or("");
    let values: Vec<&str> = ["paris", "park", "party"].into_iter().filter(|v| v.starts_with(typed)).collect();
    Some(json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
}
