//! What every controller of the operator is made of, written once: the
//! RunnerPool and RunnerGroup controllers use the same pieces, so they fail,
//! back off, report and read credentials alike.
//!
//! - [`error`]: the reconcile error, its bounded category, and how a batch
//!   of GitHub calls keeps going past one failure;
//! - [`retry`]: backoff with jitter, the delay after each kind of error,
//!   per-object failure streaks and announcements, and the `error_policy`;
//! - [`bound`]: the finalizer as the only top-level action, bounded in time;
//! - [`problem`]: why an object cannot do its work, as a condition reason,
//!   and how a GitHub error maps to one;
//! - [`conditions`], [`events`], [`status`]: Kubernetes-convention
//!   conditions, events, and status written by server-side apply;
//! - [`credentials`]: the credentials Secret read and the GitHub connection
//!   made from an object's `spec.github`.

pub mod bound;
pub mod conditions;
pub mod credentials;
pub mod error;
pub mod events;
pub mod problem;
pub mod recent;
pub mod retry;
pub mod status;

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "runnerpool-operator";
