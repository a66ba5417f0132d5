//! Error answers in GitHub's shapes (`basic-error`, `validation-error`,
//! `validation-error-simple` in the OpenAPI description).

use serde_json::{Value, json};

pub(crate) const DOCS: &str = "https://docs.github.com/rest";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorShape {
    /// `{message, documentation_url, status}`.
    Basic,
    /// 422 with `errors` as an array of strings.
    ValidationSimple,
    /// 422 with `errors` as an array of objects.
    Validation,
}

#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub message: String,
    pub shape: ErrorShape,
    pub errors: Vec<Value>,
    pub headers: Vec<(&'static str, String)>,
    /// A `DELETE` of a busy runner (counted apart).
    pub busy_delete: bool,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            shape: ErrorShape::Basic,
            errors: vec![],
            headers: vec![],
            busy_delete: false,
        }
    }

    pub fn not_found() -> Self {
        Self::new(404, "Not Found")
    }

    /// 422 in the `validation-error-simple` shape.
    pub fn validation_simple(message: String) -> Self {
        ApiError {
            shape: ErrorShape::ValidationSimple,
            errors: vec![Value::String(message.clone())],
            ..Self::new(422, message)
        }
    }

    /// 422 in the `validation-error` shape (errors are objects).
    pub fn validation(message: String) -> Self {
        ApiError {
            shape: ErrorShape::Validation,
            errors: vec![json!({"resource": "Runner", "code": "invalid", "message": message})],
            ..Self::new(422, message)
        }
    }

    pub fn busy(mut self) -> Self {
        self.busy_delete = true;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(&self) -> Value {
        let mut v = json!({
            "message": self.message,
            "documentation_url": DOCS,
            "status": self.status.to_string(),
        });
        if self.shape != ErrorShape::Basic {
            v["errors"] = Value::Array(self.errors.clone());
        }
        v
    }
}
