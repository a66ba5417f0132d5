//! [`ScaleSetError`]: why a call to the Actions service failed, told apart
//! the way a scale-set listener acts on it, and [`Fault`], a refusal as the
//! service wrote it (`{typeName, message}`), with the general mapping from
//! one to the other. No error ever holds a token: every message the service
//! sends back is cut short and has the credential of its request scrubbed.

use reqwest::StatusCode;
use serde::Deserialize;

use crate::github::GitHubError;

/// A service message is shown to people; a bounded excerpt is enough.
const MAX_MESSAGE_CHARS: usize = 300;

/// Why a call to the Actions service failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaleSetError {
    /// 409 on session create: another listener holds the scale set's session
    /// (or a crashed one left it until the service times it out).
    #[error("another message session is open on the scale set")]
    SessionConflict,
    /// 404 on session refresh: the service lost the session; create a new one.
    #[error("the Actions service no longer knows the message session")]
    SessionNotFound,
    /// 401 from the message queue or on acquire: refresh the session.
    #[error("the message queue token expired")]
    QueueTokenExpired,
    /// `JobStillRunningException`: a busy runner cannot be removed yet.
    #[error("the runner is still running a job")]
    Busy,
    /// What the call names does not exist (any `…NotFoundException`, a 404).
    #[error("not found in the Actions service")]
    NotFound,
    /// `AgentExistsException`: a runner with the JIT config's name is registered.
    #[error("a runner with that name is already registered: {0}")]
    RunnerExists(String),
    /// 401 or 403 from the registration or the service, after a fresh admin token.
    #[error("the Actions service refused the credentials: {0}")]
    Unauthorized(String),
    /// Any other 4xx: the service refused the request.
    #[error("rejected by the Actions service: {0}")]
    Rejected(String),
    /// 5xx, 408, 429, a failed connection or a timeout.
    #[error("cannot reach the Actions service: {0}")]
    Unavailable(String),
    /// An answer that cannot be read, or a status no caller expects.
    #[error("unexpected answer from the Actions service: {0}")]
    Protocol(String),
    /// The API URL, the tenant URL or the message queue URL is unusable (plain
    /// http to a non-loopback host, a malformed URL, an unreadable CA bundle).
    #[error("invalid Actions service endpoint: {0}")]
    InvalidEndpoint(String),
    /// The scope's registration token could not be had from the REST API.
    #[error("cannot get a registration token: {0}")]
    RegistrationToken(#[source] GitHubError),
    /// Refused locally: this replica lost (or never renewed) the leader Lease.
    #[error("this replica no longer holds the leader Lease: Actions service write refused")]
    NotLeading,
}

impl ScaleSetError {
    /// A bounded name for metrics labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            ScaleSetError::SessionConflict => "session_conflict",
            ScaleSetError::SessionNotFound => "session_not_found",
            ScaleSetError::QueueTokenExpired => "queue_token_expired",
            ScaleSetError::Busy => "busy",
            ScaleSetError::NotFound => "not_found",
            ScaleSetError::RunnerExists(_) => "runner_exists",
            ScaleSetError::Unauthorized(_) => "unauthorized",
            ScaleSetError::Rejected(_) => "rejected",
            ScaleSetError::Unavailable(_) => "unavailable",
            ScaleSetError::Protocol(_) => "protocol",
            ScaleSetError::InvalidEndpoint(_) => "invalid_endpoint",
            ScaleSetError::RegistrationToken(_) => "registration_token",
            ScaleSetError::NotLeading => "not_leader",
        }
    }
}

/// A non-2xx answer of the service, already scrubbed of the credential that
/// was sent with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Fault {
    pub(super) status: StatusCode,
    /// The service's exception name, e.g. `AgentExistsException`.
    pub(super) type_name: Option<String>,
    pub(super) message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FaultBody {
    type_name: Option<String>,
    message: Option<String>,
}

impl Fault {
    /// Reads `{typeName, message}` (or plain text) from `body`, which has no
    /// byte-order mark any more, and scrubs every one of `secrets` from it.
    pub(super) fn read(status: StatusCode, body: &[u8], secrets: &[&str]) -> Fault {
        let (type_name, message) = match serde_json::from_slice::<FaultBody>(body) {
            Ok(fault) => (fault.type_name, fault.message),
            Err(_) => (None, Some(String::from_utf8_lossy(body).trim().to_owned())),
        };
        let mut message = message
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "no message".to_owned());
        // Scrubbed before it is cut: half a token is still half a token.
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            message = message.replace(secret, "<redacted>");
        }
        let message = message.chars().take(MAX_MESSAGE_CHARS).collect();
        Fault {
            status,
            type_name,
            message,
        }
    }

    /// Whether the service named this exception (matched by its short name:
    /// some versions prefix the .NET namespace).
    pub(super) fn is(&self, exception: &str) -> bool {
        self.type_name
            .as_deref()
            .is_some_and(|name| name.contains(exception))
    }

    fn described(&self) -> String {
        match &self.type_name {
            Some(name) => format!("{} {name}: {}", self.status.as_u16(), self.message),
            None => format!("{}: {}", self.status.as_u16(), self.message),
        }
    }
}

/// The general mapping; calls with a meaning of their own for a status
/// (409 on session create, 404 on refresh, 401 from the queue) check first.
impl From<Fault> for ScaleSetError {
    fn from(fault: Fault) -> Self {
        if fault.is("JobStillRunningException") {
            return ScaleSetError::Busy;
        }
        if fault.is("RunnerScaleSetSessionConflictException") {
            return ScaleSetError::SessionConflict;
        }
        if fault.is("AgentExistsException") {
            return ScaleSetError::RunnerExists(fault.message);
        }
        if fault.is("NotFoundException") {
            return ScaleSetError::NotFound;
        }
        match fault.status.as_u16() {
            401 | 403 => ScaleSetError::Unauthorized(fault.described()),
            404 => ScaleSetError::NotFound,
            408 | 429 | 500..=599 => ScaleSetError::Unavailable(fault.described()),
            400..=499 => ScaleSetError::Rejected(fault.described()),
            _ => ScaleSetError::Protocol(format!("unexpected status {}", fault.described())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(status: u16, body: &str) -> ScaleSetError {
        Fault::read(StatusCode::from_u16(status).unwrap(), body.as_bytes(), &[]).into()
    }

    #[test]
    fn exceptions_win_over_statuses() {
        let busy = r#"{"typeName":"JobStillRunningException","message":"busy"}"#;
        assert!(matches!(fault(400, busy), ScaleSetError::Busy));
        let conflict = r#"{"typeName":"RunnerScaleSetSessionConflictException","message":"x"}"#;
        assert!(matches!(
            fault(409, conflict),
            ScaleSetError::SessionConflict
        ));
        let exists = r#"{"typeName":"GitHub.DistributedTask.WebApi.AgentExistsException, x","message":"taken"}"#;
        assert!(matches!(fault(409, exists), ScaleSetError::RunnerExists(m) if m == "taken"));
        let gone = r#"{"typeName":"AgentNotFoundException","message":"gone"}"#;
        assert!(matches!(fault(400, gone), ScaleSetError::NotFound));
    }

    #[test]
    fn statuses_without_a_known_exception() {
        assert!(matches!(fault(404, ""), ScaleSetError::NotFound));
        assert!(matches!(fault(401, "{}"), ScaleSetError::Unauthorized(_)));
        assert!(matches!(fault(403, "no"), ScaleSetError::Unauthorized(_)));
        assert!(matches!(
            fault(503, "<html>"),
            ScaleSetError::Unavailable(_)
        ));
        assert!(matches!(fault(429, ""), ScaleSetError::Unavailable(_)));
        let rejected = fault(
            400,
            r#"{"typeName":"ArgumentException","message":"bad name"}"#,
        );
        assert_eq!(
            rejected.to_string(),
            "rejected by the Actions service: 400 ArgumentException: bad name"
        );
        assert!(matches!(fault(302, ""), ScaleSetError::Protocol(_)));
    }

    #[test]
    fn messages_are_scrubbed_and_cut_short() {
        let body = format!(
            r#"{{"message":"token eyJsecret refused {}"}}"#,
            "x".repeat(500)
        );
        let fault = Fault::read(
            StatusCode::UNAUTHORIZED,
            body.as_bytes(),
            &["eyJsecret", ""],
        );
        assert!(!fault.message.contains("eyJsecret"));
        assert!(fault.message.starts_with("token <redacted> refused"));
        assert_eq!(fault.message.chars().count(), MAX_MESSAGE_CHARS);
        let plain = Fault::read(StatusCode::BAD_GATEWAY, b"  upstream down \n", &[]);
        assert_eq!(plain.message, "upstream down");
        assert_eq!(plain.type_name, None);
    }
}
