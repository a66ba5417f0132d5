//! `workflow_job` webhooks: GitHub tells the operator the moment a job is
//! queued, starts on a runner or completes, so pools scale on demand instead
//! of waiting for the next runner list.
//!
//! - [`signature`]: the `X-Hub-Signature-256` check, done before anything is parsed;
//! - [`payload`]: the few fields of a `workflow_job` delivery the operator reads;
//! - [`server`]: the HTTP receiver on its own port (`POST /webhook`), which
//!   answers GitHub and hands accepted jobs to the controller through a channel;
//! - [`listener`]: the bounds on what unauthenticated clients can take: a
//!   cap on connections at once, and a lifetime for each;
//! - [`recovery`]: the deliveries that never arrived, taken from GitHub's
//!   delivery log.
//!
//! What the jobs mean for pools is [`crate::demand`]'s.

pub mod listener;
pub mod payload;
pub mod recovery;
pub mod server;
pub mod signature;

pub use payload::{JobAction, JobEvent};

use std::path::Path;

/// Environment variable holding the webhook secret (instead of a file).
pub const SECRET_ENV: &str = "RUNNERPOOL_WEBHOOK_SECRET";

/// Why the webhook secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "--webhook-listen needs a secret: set --webhook-secret-file or {SECRET_ENV} (the secret configured on the GitHub webhook)"
    )]
    Missing,
    #[error("cannot read the webhook secret file {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the webhook secret is empty")]
    Empty,
}

impl SecretError {
    pub fn category(&self) -> &'static str {
        match self {
            SecretError::Missing => "missing",
            SecretError::Unreadable { .. } => "unreadable",
            SecretError::Empty => "empty",
        }
    }
}

/// The webhook secret: the file's content when a file is given (a mounted
/// Secret), else the environment's value; surrounding whitespace and the
/// trailing newline editors add are dropped.
pub fn load_secret(file: Option<&Path>, env: Option<String>) -> Result<Vec<u8>, SecretError> {
    let raw = match (file, env) {
        (Some(path), _) => std::fs::read(path).map_err(|source| SecretError::Unreadable {
            path: path.display().to_string(),
            source,
        })?,
        (None, Some(value)) => value.into_bytes(),
        (None, None) => return Err(SecretError::Missing),
    };
    let secret = raw.trim_ascii().to_vec();
    if secret.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_comes_from_the_file_then_the_environment() {
        let dir = std::env::temp_dir().join(format!("rp-webhook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(
            load_secret(Some(&file), Some("from-env".into())).unwrap(),
            b"from-file"
        );
        assert_eq!(
            load_secret(None, Some("from-env".into())).unwrap(),
            b"from-env"
        );
        assert!(matches!(load_secret(None, None), Err(SecretError::Missing)));
        assert!(matches!(
            load_secret(None, Some(" \n".into())),
            Err(SecretError::Empty)
        ));
        let missing = dir.join("absent");
        let error = load_secret(Some(&missing), None).unwrap_err();
        assert!(error.to_string().contains("absent"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
