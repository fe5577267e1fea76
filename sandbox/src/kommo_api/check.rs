//! Kommo's request validation: a batch is an array of objects, each checked field by field; every refusal
//! names the item by its `request_id` (or its index as a string) and the field by its dotted path, and the
//! whole batch is refused with 400 `validation-errors` (KOMMO.md §2.1).

use serde::Serialize;
use serde_json::{Map, Value};

use super::ledger::Account;

/// Kommo's limit of entities in one add request.
pub const MAX_BATCH: usize = 250;
/// Kommo's limit of leads in one `POST /api/v4/leads/complex`.
pub const MAX_COMPLEX: usize = 50;

/// One refused field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub code: &'static str,
    pub path: String,
    pub detail: String,
}

/// The refusals of one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemErrors {
    pub request_id: String,
    pub errors: Vec<FieldError>,
}

/// Missing or empty.
pub const NOT_BLANK: &str = "NotBlank";
/// Present with the wrong JSON type.
pub const INVALID_TYPE: &str = "InvalidType";
/// A value outside the allowed set (a user of another account, an unknown enum).
pub const NOT_SUPPORTED_CHOICE: &str = "NotSupportedChoice";
/// Too many values (more than one contact in a complex lead).
pub const COUNT_EXCEEDED: &str = "CountExceeded";

/// The `request_id` Kommo echoes for an item: its own (a string or a number), else its index.
pub fn request_id(item: &Value, index: usize) -> String {
    match item.get("request_id") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => index.to_string(),
    }
}

/// Checks the fields of one object, collecting every refusal.
pub struct Checker<'a> {
    object: &'a Map<String, Value>,
    prefix: String,
    errors: Vec<FieldError>,
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'a> Checker<'a> {
    /// A checker of `value`; a value that is not an object is refused at once.
    pub fn new(value: &'a Value) -> Checker<'a> {
        Checker::within(value, String::new())
    }

    /// A checker of `value` whose paths start with `prefix` (`custom_fields_values.0.`).
    pub fn within(value: &'a Value, prefix: String) -> Checker<'a> {
        let mut checker = Checker { object: &EMPTY, prefix, errors: Vec::new() };
        match value.as_object() {
            Some(object) => checker.object = object,
            None => checker.refuse(INVALID_TYPE, "", "each item must be a JSON object".to_owned()),
        }
        checker
    }

    /// A checker of the object at `key`, when it is one (else `None`, and the refusal is recorded here when
    /// `required` or when present with another type).
    pub fn nested(&mut self, key: &str, required: bool) -> Option<Checker<'a>> {
        let object: &'a Map<String, Value> = self.object;
        match object.get(key) {
            Some(Value::Object(object)) => {
                Some(Checker { object, prefix: format!("{}.", self.path(key)), errors: Vec::new() })
            }
            None | Some(Value::Null) if !required => None,
            None | Some(Value::Null) => {
                self.refuse(NOT_BLANK, key, "This value should not be blank.".to_owned());
                None
            }
            Some(_) => {
                self.refuse(INVALID_TYPE, key, "This value should be of type object.".to_owned());
                None
            }
        }
    }

    /// Takes over the refusals of a nested checker.
    pub fn absorb(&mut self, nested: Checker<'_>) {
        self.errors.extend(nested.errors);
    }

    pub fn object(&self) -> &'a Map<String, Value> {
        self.object
    }

    /// The dotted path of `key` in this object (the object's own path for an empty key).
    pub fn path(&self, key: &str) -> String {
        if key.is_empty() {
            return self.prefix.trim_end_matches('.').to_owned();
        }
        format!("{}{key}", self.prefix)
    }

    pub fn refuse(&mut self, code: &'static str, key: &str, detail: String) {
        let path = self.path(key);
        self.errors.push(FieldError { code, path, detail });
    }

    fn missing(&mut self, key: &str, required: bool) -> bool {
        let absent = matches!(self.object.get(key), None | Some(Value::Null));
        if absent && required {
            self.refuse(NOT_BLANK, key, "This value should not be blank.".to_owned());
        }
        absent
    }

    fn wrong_type(&mut self, key: &str, kind: &str) {
        self.refuse(INVALID_TYPE, key, format!("This value should be of type {kind}."));
    }

    /// A string; a required one must not be empty.
    pub fn string(&mut self, key: &str, required: bool) -> Option<String> {
        if self.missing(key, required) {
            return None;
        }
        let object: &'a Map<String, Value> = self.object;
        match &object[key] {
            Value::String(text) if required && text.trim().is_empty() => {
                self.refuse(NOT_BLANK, key, "This value should not be blank.".to_owned());
                None
            }
            Value::String(text) => Some(text.clone()),
            _ => {
                self.wrong_type(key, "string");
                None
            }
        }
    }

    /// An integer (a JSON number without a fraction; strings are refused).
    pub fn int(&mut self, key: &str, required: bool) -> Option<i64> {
        if self.missing(key, required) {
            return None;
        }
        match self.object[key].as_i64() {
            Some(value) => Some(value),
            None => {
                self.wrong_type(key, "int");
                None
            }
        }
    }

    /// A non-negative integer.
    pub fn count(&mut self, key: &str, required: bool) -> Option<u64> {
        let value = self.int(key, required)?;
        match u64::try_from(value) {
            Ok(value) => Some(value),
            Err(_) => {
                self.refuse(NOT_SUPPORTED_CHOICE, key, "This value should be 0 or more.".to_owned());
                None
            }
        }
    }

    /// A positive id.
    pub fn id(&mut self, key: &str, required: bool) -> Option<u64> {
        let value = self.int(key, required)?;
        match u64::try_from(value) {
            Ok(value) if value > 0 => Some(value),
            _ => {
                self.refuse(NOT_SUPPORTED_CHOICE, key, "This value should be a positive id.".to_owned());
                None
            }
        }
    }

    pub fn bool(&mut self, key: &str) -> Option<bool> {
        if self.missing(key, false) {
            return None;
        }
        match self.object[key] {
            Value::Bool(value) => Some(value),
            _ => {
                self.wrong_type(key, "bool");
                None
            }
        }
    }

    /// An array (`None` when absent).
    pub fn array(&mut self, key: &str, required: bool) -> Option<&'a Vec<Value>> {
        if self.missing(key, required) {
            return None;
        }
        let object: &'a Map<String, Value> = self.object;
        match &object[key] {
            Value::Array(items) => Some(items),
            _ => {
                self.wrong_type(key, "array");
                None
            }
        }
    }

    /// One of `allowed`.
    pub fn choice(&mut self, key: &str, required: bool, allowed: &[&str]) -> Option<String> {
        let value = self.string(key, required)?;
        if allowed.contains(&value.as_str()) {
            Some(value)
        } else {
            self.refuse(NOT_SUPPORTED_CHOICE, key, format!("The value you selected is not a valid choice: {value}."));
            None
        }
    }

    /// The id of a user of the account (a user of another account or an unknown id is refused).
    pub fn user(&mut self, key: &str, account: &Account) -> Option<u64> {
        let id = self.id(key, false)?;
        if account.users.iter().any(|user| user.id == id) {
            Some(id)
        } else {
            self.refuse(NOT_SUPPORTED_CHOICE, key, format!("User {id} is not a user of this account."));
            None
        }
    }

    /// `created_by`: 0 (a robot) or a user of the account.
    pub fn author(&mut self, key: &str, account: &Account) -> Option<u64> {
        if self.object.get(key).and_then(Value::as_i64) == Some(0) {
            return Some(0);
        }
        self.user(key, account)
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn into_errors(self) -> Vec<FieldError> {
        self.errors
    }
}

/// Collects the item refusals of a batch.
#[derive(Debug, Default)]
pub struct Report {
    pub items: Vec<ItemErrors>,
}

impl Report {
    pub fn add(&mut self, request_id: &str, errors: Vec<FieldError>) {
        if !errors.is_empty() {
            self.items.push(ItemErrors { request_id: request_id.to_owned(), errors });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_refusal_names_its_path_and_code() {
        let item = json!({ "direction": 5, "duration": -1, "metadata": { "uniq": "" }, "flag": "yes" });
        let mut checker = Checker::new(&item);
        assert_eq!(checker.string("direction", true), None);
        assert_eq!(checker.count("duration", true), None);
        assert_eq!(checker.string("source", true), None);
        assert_eq!(checker.bool("flag"), None);
        let mut metadata = checker.nested("metadata", true).unwrap();
        assert_eq!(metadata.string("uniq", true), None);
        checker.absorb(metadata);
        let errors: Vec<(&str, String)> =
            checker.into_errors().into_iter().map(|error| (error.code, error.path)).collect();
        assert_eq!(
            errors,
            [
                (INVALID_TYPE, "direction".to_owned()),
                (NOT_SUPPORTED_CHOICE, "duration".to_owned()),
                (NOT_BLANK, "source".to_owned()),
                (INVALID_TYPE, "flag".to_owned()),
                (NOT_BLANK, "metadata.uniq".to_owned()),
            ]
        );
    }

    #[test]
    fn request_ids_are_echoed_or_the_index() {
        assert_eq!(request_id(&json!({ "request_id": "call-1" }), 3), "call-1");
        assert_eq!(request_id(&json!({ "request_id": 17 }), 3), "17");
        assert_eq!(request_id(&json!({}), 3), "3");
    }
}
