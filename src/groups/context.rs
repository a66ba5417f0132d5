//! What every reconcile of a RunnerGroup shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::kit::events::Recorder;
use kube::Client;

use super::access::IdCache;
use crate::controller::Settings;
use crate::github::GitHubConnector;
use crate::kit::retry::Attempts;

/// What every reconcile of a RunnerGroup shares.
pub struct Context {
    pub client: Client,
    pub github: Arc<dyn GitHubConnector>,
    pub settings: Settings,
    pub recorder: Recorder,
    /// Each group's failures in a row and the problem last announced.
    pub attempts: Attempts,
    /// Repository and organization ids of the access lists, by name.
    pub ids: IdCache,
    /// Deleted groups: since when GitHub could not be asked, in a row
    /// (cleared whenever it answers). Only this counts toward
    /// `--cleanup-timeout-seconds`.
    pub unreachable_since: Mutex<HashMap<String, Instant>>,
}
