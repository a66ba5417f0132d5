//! The operator's own client of GitHub's Actions service for runner scale
//! sets: the service GitHub's listeners talk to instead of the REST API.
//! It owns the admin token of a scope (bought with the scope's registration
//! token and refreshed before it expires), the scale-set, JIT-config,
//! session and runner calls, the message queue (long poll, ack, job
//! acquisition with the session's queue token) and the mapping of the
//! service's answers to [`ScaleSetError`]. It rides on the REST client's HTTP
//! setup (CA bundle, user agent, timeouts, retries, the loopback-only http
//! rule, request observer and write gate), and no token ever reaches an
//! error, a log line or a `Debug` output.
//!
//! Wiring: one [`ActionsService`] per (GitHub connection, scope), built with
//! the scope's REST client, its API URL and [`HttpSettings`] (the REST
//! client's `ClientOptions` and the endpoint's CA bundle); clones share it.
//!
//! This module only declares its parts and re-exports their public names;
//! the parts import from each other, never from here:
//! - `error`: [`ScaleSetError`] and the service's refusals;
//! - `wire`: [`ScaleSet`], [`Session`], [`Statistics`], [`ServiceRunner`] and
//!   the bodies on the wire;
//! - `queue`: [`Message`], [`JobMessage`], [`JobInfo`] and their decoding;
//! - `http`: [`HttpSettings`] and the transport every call goes through;
//! - `admin`: the admin token, the tenant and the scope's html URL;
//! - [`endpoints`]: the labels requests are counted under;
//! - `service`: [`ActionsService`].

mod admin;
pub mod endpoints;
mod error;
mod http;
mod queue;
mod service;
mod wire;

pub use error::ScaleSetError;
pub use http::HttpSettings;
pub use queue::{JobInfo, JobMessage, Message};
pub use service::ActionsService;
pub use wire::{ScaleSet, ServiceRunner, Session, Statistics};

#[cfg(test)]
mod tests;
