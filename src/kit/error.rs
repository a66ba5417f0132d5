//! The error a reconcile returns, shared by every controller. Problems a
//! person must see (bad credentials, a refused pod) are not errors: they are
//! written into status (see [`super::problem`]); an error is what the
//! controller retries by itself.

use std::time::Duration;

use crate::github::GitHubError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[source] kube::Error),
    #[error("GitHub API error: {0}")]
    GitHub(#[source] GitHubError),
    /// The object's kind, which must be namespaced.
    #[error("{0} has no namespace")]
    NotNamespaced(&'static str),
    #[error("the watch caches did not sync")]
    CachesNotReady,
    /// A deleted pool still has busy runners (or GitHub cannot be asked yet).
    #[error("still removing {0} runner(s) of the deleted pool")]
    CleanupPending(usize),
    /// A deleted RunnerGroup's group still has runners (or GitHub cannot be asked yet).
    #[error("waiting to delete the runner group: {0}")]
    DeletionPending(String),
    #[error("the reconcile did not finish within {0:?}; abandoned, to be retried")]
    ReconcileTimeout(Duration),
    #[error("a runner's creation task failed: {0}")]
    CreateTask(String),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A bounded name for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kubernetes",
            Error::GitHub(e) => e.category(),
            Error::NotNamespaced(_) => "not_namespaced",
            Error::CachesNotReady => "caches_not_ready",
            Error::CleanupPending(_) => "cleanup_pending",
            Error::DeletionPending(_) => "deletion_pending",
            Error::ReconcileTimeout(_) => "reconcile_timeout",
            Error::CreateTask(_) => "create_task",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.category(),
                _ => "finalizer",
            },
        }
    }

    /// The object's own error inside a finalizer error (the apply or cleanup
    /// that failed); any other error as it is.
    pub fn unwrapped(&self) -> &Error {
        match self {
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.unwrapped(),
                _ => self,
            },
            other => other,
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

impl From<GitHubError> for Error {
    fn from(e: GitHubError) -> Self {
        Error::GitHub(e)
    }
}

/// The successful results of a batch of GitHub-facing work. The first GitHub
/// error is kept for status (the rest of the batch still counts); a Kubernetes
/// error ends the reconcile, to be retried with backoff.
pub fn successes<T>(
    results: impl IntoIterator<Item = Result<T, Error>>,
    first_error: &mut Option<GitHubError>,
) -> Result<Vec<T>, Error> {
    let mut done = Vec::new();
    for result in results {
        match result {
            Ok(value) => done.push(value),
            Err(Error::GitHub(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
