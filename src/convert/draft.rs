//! What one ARC object becomes: a [`Draft`] (the pool and the [`Notes`]
//! printed above it), and [`Fields`], the reader that takes an ARC object's
//! settings one by one so that whatever is left over is named in a note.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Map, Value, json};

use crate::RunnerPool;
use crate::crd::GitHubSpec;

/// A converted pool, before it is checked against the CRD's limits.
pub struct Draft {
    /// Where it came from, e.g. `arc.yaml: AutoscalingRunnerSet arc-runners/linux`.
    pub source: String,
    pub pool: RunnerPool,
    pub notes: Notes,
}

/// A pool with what every pool has; the rest of its spec is left at its
/// defaults (built through serde so fields added later keep theirs).
pub fn new_pool(
    name: &str,
    namespace: Option<&str>,
    github: GitHubSpec,
    labels: Vec<String>,
    template: PodTemplateSpec,
) -> Result<RunnerPool, String> {
    let pool = json!({
        "apiVersion": "actions.runnerpool.dev/v1alpha1",
        "kind": "RunnerPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"github": github, "labels": labels, "template": template},
    });
    serde_json::from_value(pool).map_err(|e| format!("building RunnerPool {name}: {e}"))
}

/// The comments printed above a pool: settings without an equivalent and
/// what to do by hand.
#[derive(Default, Debug)]
pub struct Notes {
    lines: Vec<String>,
}

impl Notes {
    /// `# not converted: <path>: <why>`.
    pub fn not_converted(&mut self, path: &str, why: &str) {
        self.lines.push(format!("not converted: {path}: {why}"));
    }

    /// A remark printed as it is (one comment line per line).
    pub fn note(&mut self, text: impl Into<String>) {
        self.lines.push(text.into());
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// The settings of one JSON object, taken one at a time. Settings never
/// taken are what the converter does not know: [`Fields::finish`] names each.
pub struct Fields {
    path: String,
    map: Map<String, Value>,
}

impl Fields {
    /// The object at `path`; absent or `null` reads as empty.
    pub fn new(path: &str, value: Option<Value>) -> Result<Fields, String> {
        let map = match value {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(other) => return Err(format!("{path} must be a mapping, not {}", kind(&other))),
        };
        Ok(Fields {
            path: path.to_string(),
            map,
        })
    }

    /// The path of one of its settings, e.g. `spec.template`.
    pub fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// A setting as it is; `null` reads as absent.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(format!(
                "{} must be a string, not {}",
                self.path(key),
                kind(&other)
            )),
        }
    }

    /// A whole number, also written as a string (`"5"`), as Helm values often are.
    pub fn int(&mut self, key: &str) -> Result<Option<i64>, String> {
        let path = self.path(key);
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| format!("{path} must be a whole number, not {n}")),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("{path} must be a whole number, not {s:?}")),
            Some(other) => Err(format!("{path} must be a number, not {}", kind(&other))),
        }
    }

    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(other) => Err(format!(
                "{} must be true or false, not {}",
                self.path(key),
                kind(&other)
            )),
        }
    }

    /// A nested object, read with its own leftovers.
    pub fn object(&mut self, key: &str) -> Result<Fields, String> {
        let path = self.path(key);
        Fields::new(&path, self.take(key))
    }

    /// A setting deserialized into a Kubernetes type, e.g. `Vec<EnvVar>`.
    pub fn typed<T: serde::de::DeserializeOwned>(
        &mut self,
        key: &str,
    ) -> Result<Option<T>, String> {
        let path = self.path(key);
        self.take(key)
            .map(|v| serde_json::from_value(v).map_err(|e| format!("{path}: {e}")))
            .transpose()
    }

    /// Takes `key` if set, noting why it has no equivalent.
    pub fn not_converted(&mut self, key: &str, why: &str, notes: &mut Notes) {
        if self.take(key).is_some() {
            notes.not_converted(&self.path(key), why);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Notes every setting not taken.
    pub fn finish(self, notes: &mut Notes) {
        for key in self.map.keys() {
            notes.not_converted(
                &self.path(key),
                "unknown to this converter; RunnerPool has no such setting",
            );
        }
    }
}

/// What a JSON value is, for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_left_over_are_named_with_their_path() {
        let mut spec = Fields::new("spec", Some(json!({"a": 1, "b": "2", "c": true}))).unwrap();
        assert_eq!(spec.int("a").unwrap(), Some(1));
        assert_eq!(spec.int("b").unwrap(), Some(2));
        let mut notes = Notes::default();
        spec.finish(&mut notes);
        assert_eq!(notes.lines().len(), 1);
        assert!(notes.lines()[0].starts_with("not converted: spec.c: "));
    }

    #[test]
    fn wrong_types_are_errors_naming_the_path() {
        let mut spec = Fields::new("spec", Some(json!({"n": "many", "s": [1]}))).unwrap();
        assert_eq!(
            spec.int("n").unwrap_err(),
            "spec.n must be a whole number, not \"many\""
        );
        assert_eq!(
            spec.string("s").unwrap_err(),
            "spec.s must be a string, not a list"
        );
        assert!(Fields::new("spec", Some(json!(3))).is_err());
    }
}
