//! What every reconcile of a RunnerGroup shares.

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::Recorder;

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
}
