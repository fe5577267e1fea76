//! An outside oracle for Kommo's API v4: the third-party OpenAPI description of amoCRM/Kommo in the steering
//! repository (`shared/vendor/amocrm-openapi/openapi.yaml`, its README lists its gaps). It checks request
//! bodies a Kommo client sends and responses the stand-in answers, operation by operation.
//!
//! - A concrete path (`/api/v4/leads/123/notes?x=1`) finds its operation by template: literal segments
//!   first, path parameters checked against their schemas (an integer id must be digits, an entity type one
//!   of the enum), so `/api/v4/leads/unsorted` is not `/api/v4/leads/{id}`.
//! - The file models each answer as `anyOf: [<entity>, Problem]`, and `Problem` alone accepts any object, so
//!   a 2xx body is checked against the entity branch only. A 204 must have no body. Errors (4xx, 5xx) are
//!   not modelled by the file; they are checked against its `Problem` with all four fields required.
//! - OpenAPI 3.0's `nullable` is read as a `"null"` type. "Closed" checks also refuse any property the
//!   description does not name (a misspelt field), which "as written" ones let through.
//!
//! The file is read from `$KOMMO_OPENAPI`, else from `../shared/vendor/amocrm-openapi/openapi.yaml` beside
//! the workspace root.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::{Value, json};

/// Where the vendor file sits relative to this crate (`sandbox/`).
const VENDOR_PATH: &str = "../../shared/vendor/amocrm-openapi/openapi.yaml";

/// The vendor file's path: `$KOMMO_OPENAPI`, else the steering repository's copy beside the workspace.
pub fn openapi_path() -> PathBuf {
    match std::env::var_os("KOMMO_OPENAPI") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(VENDOR_PATH),
    }
}

/// OpenAPI 3.0's `nullable: true` becomes a `"null"` type; 3.1 files pass through unchanged.
pub fn to_json_schema(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get("type").cloned() {
                    Some(Value::String(kind)) => {
                        map.insert("type".into(), json!([kind, "null"]));
                    }
                    Some(Value::Array(mut kinds)) => {
                        kinds.push(json!("null"));
                        map.insert("type".into(), Value::Array(kinds));
                    }
                    _ => {
                        let schema = Value::Object(std::mem::take(map));
                        map.insert("anyOf".into(), json!([schema, { "type": "null" }]));
                    }
                }
            }
            map.values_mut().for_each(to_json_schema);
        }
        Value::Array(items) => items.iter_mut().for_each(to_json_schema),
        _ => {}
    }
}

/// Every object schema that lists properties and says nothing about others refuses others.
pub fn closed(node: &mut Value) {
    match node {
        Value::Object(map) => {
            let open = map.contains_key("additionalProperties") || map.contains_key("unevaluatedProperties");
            if map.contains_key("properties") && !open {
                map.insert("unevaluatedProperties".into(), json!(false));
            }
            map.values_mut().for_each(closed);
        }
        Value::Array(items) => items.iter_mut().for_each(closed),
        _ => {}
    }
}

/// The branch of `anyOf: [<entity>, Problem]` that is not `Problem` (the schema itself when it has none).
pub fn success_branch(schema: &Value) -> Value {
    let Some(branches) = schema["anyOf"].as_array() else { return schema.clone() };
    let entity: Vec<&Value> =
        branches.iter().filter(|branch| !branch["$ref"].as_str().is_some_and(|r| r.ends_with("/Problem"))).collect();
    match entity.as_slice() {
        [one] => (*one).clone(),
        _ => schema.clone(),
    }
}

/// An operation of the description: its path template and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub template: String,
    /// Lowercase, as OpenAPI spells it.
    pub method: String,
}

/// The vendor description, loaded once, with compiled validators cached.
pub struct Oracle {
    document: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl std::fmt::Debug for Oracle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Oracle").field("paths", &self.document["paths"].as_object().map(|p| p.len())).finish()
    }
}

impl Oracle {
    /// The vendor description at [`openapi_path`], loaded once per process. Panics, saying how to get the
    /// file, when it cannot be read: tests that use the oracle fail rather than skip.
    pub fn load() -> &'static Oracle {
        static ORACLE: OnceLock<Oracle> = OnceLock::new();
        ORACLE.get_or_init(|| {
            let path = openapi_path();
            Oracle::from_path(&path).unwrap_or_else(|error| {
                panic!(
                    "the outside oracle {} cannot be used ({error}): clone the steering repository so that shared/ \
                     sits beside this repository, or point KOMMO_OPENAPI at openapi.yaml",
                    path.display()
                )
            })
        })
    }

    /// An OpenAPI 3 description in YAML or JSON.
    pub fn from_path(path: &std::path::Path) -> Result<Oracle, String> {
        let text = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
        Oracle::from_yaml(&text)
    }

    pub fn from_yaml(text: &str) -> Result<Oracle, String> {
        let mut document: Value = serde_norway::from_str(text).map_err(|error| format!("not YAML: {error}"))?;
        if !document["openapi"].as_str().is_some_and(|version| version.starts_with('3')) {
            return Err("not an OpenAPI 3 description".into());
        }
        to_json_schema(&mut document);
        Ok(Oracle { document, validators: Mutex::default() })
    }

    /// The description as JSON (after the `nullable` conversion).
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// `{"$ref": "#/components/schemas/<name>"}`, if the description has that schema.
    pub fn component(&self, name: &str) -> Option<Value> {
        self.document["components"]["schemas"][name]
            .is_object()
            .then(|| json!({ "$ref": format!("#/components/schemas/{name}") }))
    }

    /// The operation a concrete `METHOD path` (a query is ignored) falls under, if the description has one.
    pub fn operation(&self, method: &str, path: &str) -> Option<Operation> {
        let method = method.to_ascii_lowercase();
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let segments: Vec<&str> = path.split('/').collect();
        let paths = self.document["paths"].as_object()?;
        paths
            .iter()
            .filter(|(_, item)| item.get(&method).is_some())
            .filter_map(|(template, item)| {
                let pattern: Vec<&str> = template.split('/').collect();
                if pattern.len() != segments.len() {
                    return None;
                }
                let mut literals = 0;
                for (expected, actual) in pattern.iter().zip(&segments) {
                    match expected.strip_prefix('{').and_then(|name| name.strip_suffix('}')) {
                        Some(name) => {
                            if !self.parameter_accepts(&item[&method], name, actual) {
                                return None;
                            }
                        }
                        None if expected == actual => literals += 1,
                        None => return None,
                    }
                }
                Some((literals, template))
            })
            .max_by_key(|(literals, _)| *literals)
            .map(|(_, template)| Operation { template: template.clone(), method })
    }

    /// Whether the description has an operation for `METHOD path`.
    pub fn covers(&self, method: &str, path: &str) -> bool {
        self.operation(method, path).is_some()
    }

    /// Whether a path segment fits the path parameter's schema (integers are digits, enums one of theirs).
    fn parameter_accepts(&self, operation: &Value, name: &str, segment: &str) -> bool {
        if segment.is_empty() {
            return false;
        }
        let parameter = operation["parameters"].as_array().and_then(|parameters| {
            parameters.iter().find(|parameter| parameter["name"] == name && parameter["in"] == "path")
        });
        let Some(parameter) = parameter else { return true };
        let mut schema = &parameter["schema"];
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.rsplit('/').next().unwrap_or_default();
            schema = &self.document["components"]["schemas"][name];
        }
        if let Some(values) = schema["enum"].as_array() {
            return values.iter().any(|value| value == segment);
        }
        match schema["type"].as_str() {
            Some("integer") => segment.bytes().all(|byte| byte.is_ascii_digit()),
            _ => true,
        }
    }

    fn operation_node(&self, operation: &Operation) -> &Value {
        &self.document["paths"][&operation.template][&operation.method]
    }

    /// The schema of a request body for `METHOD path`: `Ok(None)` when the operation takes none.
    pub fn request_schema(&self, method: &str, path: &str) -> Result<Option<(Value, bool)>, String> {
        let operation = self.operation(method, path).ok_or_else(|| not_covered(method, path))?;
        let body = &self.operation_node(&operation)["requestBody"];
        if body.is_null() {
            return Ok(None);
        }
        let schema = &body["content"]["application/json"]["schema"];
        if !schema.is_object() {
            return Err(format!("{} {} has no application/json request body", operation.method, operation.template));
        }
        Ok(Some((schema.clone(), body["required"].as_bool().unwrap_or(false))))
    }

    /// The schema a `status` answer of `METHOD path` must match: the entity branch of a 2xx, the vendor's
    /// `Problem` with its four fields required for an error; `Ok(None)` for a 204 (no body).
    pub fn response_schema(&self, method: &str, path: &str, status: u16) -> Result<Option<Value>, String> {
        let operation = self.operation(method, path).ok_or_else(|| not_covered(method, path))?;
        if status == 204 {
            return Ok(None);
        }
        if status >= 400 {
            let mut problem = self.component("Problem").ok_or("the description has no Problem schema")?;
            problem["required"] = json!(["title", "type", "status", "detail"]);
            return Ok(Some(problem));
        }
        let responses = &self.operation_node(&operation)["responses"];
        let content = &responses[status.to_string()]["content"];
        let schema = if content["application/json"].is_object() {
            &content["application/json"]["schema"]
        } else {
            &content["application/hal+json"]["schema"]
        };
        if !schema.is_object() {
            return Err(format!(
                "the description has no {status} JSON answer for {} {}",
                operation.method.to_uppercase(),
                operation.template
            ));
        }
        Ok(Some(success_branch(schema)))
    }

    /// Checks a request body (`Value::Null` for none) against the operation, as written.
    pub fn validate_request(&self, method: &str, path: &str, body: &Value) -> Result<(), Vec<String>> {
        self.check_request(method, path, body, false)
    }

    /// [`Oracle::validate_request`], also refusing properties the description does not name.
    pub fn validate_request_closed(&self, method: &str, path: &str, body: &Value) -> Result<(), Vec<String>> {
        self.check_request(method, path, body, true)
    }

    /// Checks an answer's body (`Value::Null` for none) against the operation, as written.
    pub fn validate_response(&self, method: &str, path: &str, status: u16, body: &Value) -> Result<(), Vec<String>> {
        self.check_response(method, path, status, body, false)
    }

    /// [`Oracle::validate_response`], also refusing properties the description does not name.
    pub fn validate_response_closed(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), Vec<String>> {
        self.check_response(method, path, status, body, true)
    }

    fn check_request(&self, method: &str, path: &str, body: &Value, strict: bool) -> Result<(), Vec<String>> {
        match self.request_schema(method, path).map_err(|error| vec![error])? {
            None if body.is_null() => Ok(()),
            None => Err(vec![format!("{method} {path} takes no request body")]),
            Some((_, false)) if body.is_null() => Ok(()),
            Some((_, true)) if body.is_null() => Err(vec![format!("{method} {path} needs a request body")]),
            Some((schema, _)) => self.check(&schema, body, strict),
        }
    }

    fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
        strict: bool,
    ) -> Result<(), Vec<String>> {
        match self.response_schema(method, path, status).map_err(|error| vec![error])? {
            None if body.is_null() => Ok(()),
            None => Err(vec![format!("a {status} answer has no body, got {body}")]),
            Some(schema) => self.check(&schema, body, strict),
        }
    }

    /// Checks `instance` against `schema`, whose `$ref`s point into the description's components.
    pub fn check(&self, schema: &Value, instance: &Value, strict: bool) -> Result<(), Vec<String>> {
        let errors = self.errors(schema, instance, strict);
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Every validation error of `instance` against `schema`, each as `<instance path>: <message>`.
    pub fn errors(&self, schema: &Value, instance: &Value, strict: bool) -> Vec<String> {
        match self.validator(schema, strict) {
            Ok(validator) => {
                validator.iter_errors(instance).map(|error| format!("{}: {error}", error.instance_path())).collect()
            }
            Err(error) => vec![error],
        }
    }

    fn validator(&self, schema: &Value, strict: bool) -> Result<Arc<jsonschema::Validator>, String> {
        let key = format!("{strict}:{schema}");
        let mut cache = self.validators.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(validator) = cache.get(&key) {
            return Ok(validator.clone());
        }
        let mut components = self.document["components"].clone();
        let mut schema = schema.clone();
        if strict {
            closed(&mut components);
            closed(&mut schema);
        }
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": components,
            "allOf": [schema],
        });
        let validator = Arc::new(
            jsonschema::draft202012::new(&root)
                .map_err(|error| format!("the vendor schema does not compile: {error}"))?,
        );
        cache.insert(key, validator.clone());
        Ok(validator)
    }
}

fn not_covered(method: &str, path: &str) -> String {
    format!("the vendor description does not cover {} {path}", method.to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESCRIPTION: &str = r#"
openapi: 3.1.0
paths:
  /api/v4/leads/{id}:
    get:
      parameters:
        - { name: id, in: path, required: true, schema: { type: integer } }
      responses:
        '200':
          content:
            application/json:
              schema:
                anyOf: [{ $ref: '#/components/schemas/Lead' }, { $ref: '#/components/schemas/Problem' }]
  /api/v4/leads/unsorted:
    get:
      responses: { '200': { content: { application/json: { schema: { type: object } } } } }
  /api/v4/{entity_type}/notes:
    post:
      parameters:
        - { name: entity_type, in: path, required: true, schema: { $ref: '#/components/schemas/Kind' } }
      requestBody:
        required: true
        content:
          application/json:
            schema: { type: array, items: { type: object, required: [note_type], properties: { note_type: { type: string } } } }
      responses: { '200': { content: { application/json: { schema: { type: object } } } } }
components:
  schemas:
    Kind: { type: string, enum: [leads, contacts] }
    Lead: { type: object, properties: { id: { type: integer }, closed_at: { type: integer, nullable: true } } }
    Problem: { type: object, properties: { title: { type: string } } }
"#;

    fn oracle() -> Oracle {
        Oracle::from_yaml(DESCRIPTION).unwrap()
    }

    #[test]
    fn concrete_paths_find_their_template_by_literals_and_parameter_types() {
        let oracle = oracle();
        assert_eq!(oracle.operation("GET", "/api/v4/leads/12?with=contacts").unwrap().template, "/api/v4/leads/{id}");
        assert_eq!(oracle.operation("get", "/api/v4/leads/unsorted").unwrap().template, "/api/v4/leads/unsorted");
        assert!(!oracle.covers("GET", "/api/v4/leads/abc"));
        assert!(oracle.covers("POST", "/api/v4/contacts/notes"));
        assert!(!oracle.covers("POST", "/api/v4/tasks/notes"));
        assert!(!oracle.covers("DELETE", "/api/v4/leads/12"));
    }

    #[test]
    fn bodies_are_checked_against_the_entity_branch() {
        let oracle = oracle();
        assert_eq!(
            oracle.validate_response("GET", "/api/v4/leads/1", 200, &json!({ "id": 1, "closed_at": null })),
            Ok(())
        );
        assert!(oracle.validate_response("GET", "/api/v4/leads/1", 200, &json!({ "id": "1" })).is_err());
        assert_eq!(oracle.validate_response("GET", "/api/v4/leads/1", 200, &json!({ "id": 1, "x": 1 })), Ok(()));
        assert!(oracle.validate_response_closed("GET", "/api/v4/leads/1", 200, &json!({ "id": 1, "x": 1 })).is_err());
        assert_eq!(oracle.validate_response("GET", "/api/v4/leads/1", 204, &Value::Null), Ok(()));
        assert!(oracle.validate_response("GET", "/api/v4/leads/1", 404, &json!({ "title": "Not Found" })).is_err());
        assert!(oracle.validate_request("POST", "/api/v4/leads/notes", &json!([{ "params": {} }])).is_err());
        assert_eq!(oracle.validate_request("POST", "/api/v4/leads/notes", &json!([{ "note_type": "common" }])), Ok(()));
        assert!(oracle.validate_request("POST", "/api/v4/leads/notes", &Value::Null).is_err());
        assert!(oracle.validate_request("GET", "/api/v4/leads/1", &json!({})).is_err());
        let uncovered = oracle.validate_request("POST", "/api/v4/leads/unsorted/sip", &json!([])).unwrap_err();
        assert_eq!(uncovered, ["the vendor description does not cover POST /api/v4/leads/unsorted/sip"]);
    }

    #[test]
    fn nullable_from_openapi_3_0_becomes_a_null_type() {
        let mut schema = json!({ "type": "object", "properties": { "a": { "type": "integer", "nullable": true } } });
        to_json_schema(&mut schema);
        assert_eq!(schema["properties"]["a"]["type"], json!(["integer", "null"]));
    }
}
