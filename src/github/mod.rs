//! Everything the operator says to GitHub's REST API for self-hosted runners.
//!
//! The reconciler only sees the [`GitHubApi`] trait and the plain types below;
//! the real implementation lives in [`client`] and owns authentication, base
//! URLs, retries, rate limits, ETags and pagination in one place.

mod app_auth;
pub mod client;
pub mod deliveries;
mod etag_cache;
mod pagination;
mod rate_limit;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Where runners register: GitHub's three runner scopes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Enterprise(String),
    Organization(String),
    Repository { owner: String, repo: String },
}

impl Scope {
    /// The path segment that prefixes `/actions/...` for this scope.
    pub fn path(&self) -> String {
        match self {
            Scope::Enterprise(e) => format!("enterprises/{e}"),
            Scope::Organization(o) => format!("orgs/{o}"),
            Scope::Repository { owner, repo } => format!("repos/{owner}/{repo}"),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerStatus {
    Online,
    Offline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelType {
    ReadOnly,
    Custom,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerLabel {
    #[serde(default)]
    pub id: Option<u64>,
    pub name: String,
    #[serde(rename = "type", default = "custom_label")]
    pub kind: LabelType,
}

fn custom_label() -> LabelType {
    LabelType::Custom
}

/// A self-hosted runner as GitHub reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub os: String,
    pub status: RunnerStatus,
    pub busy: bool,
    #[serde(default)]
    pub ephemeral: bool,
    #[serde(default)]
    pub runner_group_id: Option<u64>,
    #[serde(default)]
    pub labels: Vec<RunnerLabel>,
}

impl Runner {
    /// Names of the labels a person or the operator may change.
    pub fn custom_labels(&self) -> impl Iterator<Item = &str> {
        self.labels
            .iter()
            .filter(|l| l.kind == LabelType::Custom)
            .map(|l| l.name.as_str())
    }

    pub fn has_label(&self, name: &str) -> bool {
        self.labels.iter().any(|l| l.name == name)
    }
}

/// A runner group (organization or enterprise scope).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerGroup {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub default: bool,
}

/// Which repositories may use an organization's runner group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupVisibility {
    All,
    Selected,
    Private,
}

/// The settings of a runner group the operator manages, as GitHub shows them
/// and as create and update take them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerGroupSettings {
    pub name: String,
    pub visibility: GroupVisibility,
    #[serde(default)]
    pub allows_public_repositories: bool,
    #[serde(default)]
    pub restricted_to_workflows: bool,
    #[serde(default)]
    pub selected_workflows: Vec<String>,
}

/// An organization's or enterprise's runner group with its settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RunnerGroupInfo {
    pub id: u64,
    #[serde(default)]
    pub default: bool,
    /// Shared with an organization by its enterprise: the organization can
    /// neither change nor delete it.
    #[serde(default)]
    pub inherited: bool,
    #[serde(flatten)]
    pub settings: RunnerGroupSettings,
}

/// One runner application GitHub serves for download (`…/runners/downloads`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerDownload {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub download_url: String,
    #[serde(default)]
    pub filename: String,
}

/// What `generate-jitconfig` is asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JitRequest {
    pub name: String,
    pub runner_group_id: u64,
    pub labels: Vec<String>,
    pub work_folder: String,
}

/// A just-in-time runner configuration. The encoded config is a credential:
/// it is never formatted by `Debug` and must only ever be written to a Secret.
#[derive(Clone)]
pub struct JitConfig {
    pub runner: Runner,
    pub encoded_jit_config: String,
}

impl fmt::Debug for JitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JitConfig")
            .field("runner", &self.runner)
            .field("encoded_jit_config", &"<redacted>")
            .finish()
    }
}

/// A registration token of a scope (`POST …/actions/runners/registration-token`):
/// what the Actions service's runner registration is asked with. A
/// credential: never formatted by `Debug`.
#[derive(Clone, Deserialize)]
pub struct RegistrationToken {
    pub token: String,
    /// As GitHub wrote it (RFC 3339); about an hour after issue.
    #[serde(default)]
    pub expires_at: String,
}

impl fmt::Debug for RegistrationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a GitHub call failed, told apart the way the reconciler needs.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// 422 "still running a job" on delete: the runner is busy.
    #[error("runner is still running a job")]
    Busy,
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: e.g. a runner with that name already exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 422 for any other reason: GitHub refused the request body.
    #[error("rejected by GitHub: {0}")]
    Invalid(String),
    /// Primary or secondary rate limit; `retry_after` is how long to wait.
    #[error("rate limited by GitHub, retry in {}s", retry_after.as_secs())]
    RateLimited {
        retry_after: std::time::Duration,
        secondary: bool,
    },
    /// 401, or 403 that is not a rate limit: the credential is wrong or lacks a permission.
    #[error("GitHub refused the credentials ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// The credential material itself is unusable (bad PEM, empty token, ...).
    #[error("invalid credentials: {0}")]
    InvalidCredentials(String),
    /// The endpoint configuration is unusable (plain http to a non-loopback
    /// host, a malformed URL, an unreadable CA bundle, ...).
    #[error("invalid GitHub endpoint: {0}")]
    InvalidEndpoint(String),
    #[error("GitHub server error {status}")]
    Server { status: u16 },
    /// Could not reach GitHub or read its answer.
    #[error("cannot reach GitHub: {0}")]
    Unavailable(String),
    #[error("unexpected answer from GitHub: {0}")]
    Protocol(String),
    /// Refused locally: this replica lost (or never renewed) the leader Lease.
    #[error("this replica no longer holds the leader Lease: GitHub write refused")]
    NotLeading,
}

impl GitHubError {
    /// A bounded name for metrics labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            GitHubError::Busy => "busy",
            GitHubError::NotFound(_) => "not_found",
            GitHubError::Conflict(_) => "conflict",
            GitHubError::Invalid(_) => "invalid",
            GitHubError::RateLimited { .. } => "rate_limited",
            GitHubError::Unauthorized { .. } => "unauthorized",
            GitHubError::InvalidCredentials(_) => "invalid_credentials",
            GitHubError::InvalidEndpoint(_) => "invalid_endpoint",
            GitHubError::Server { .. } => "server_error",
            GitHubError::Unavailable(_) => "unavailable",
            GitHubError::Protocol(_) => "protocol",
            GitHubError::NotLeading => "not_leader",
        }
    }
}

pub type Result<T, E = GitHubError> = std::result::Result<T, E>;

/// The runner-group endpoints of an organization or an enterprise (`scope`)
/// a `RunnerGroup` is managed with, the id lookups its access list needs,
/// and the runner downloads.
#[async_trait]
pub trait RunnerGroupApi: Send + Sync {
    /// The group named `name` (case-insensitively, as GitHub compares group
    /// names), from a fresh listing (conditional requests). An organization's
    /// listing includes the groups its enterprise shares with it
    /// (`inherited`).
    async fn find_runner_group(&self, scope: &Scope, name: &str)
    -> Result<Option<RunnerGroupInfo>>;
    /// `Err(NotFound)` when the group is gone.
    async fn get_runner_group(&self, scope: &Scope, id: u64) -> Result<RunnerGroupInfo>;
    /// Creates a group; `access_ids` is its access list (visibility
    /// `selected`): repository ids in an organization, organization ids in an
    /// enterprise.
    async fn create_runner_group(
        &self,
        scope: &Scope,
        settings: &RunnerGroupSettings,
        access_ids: &[u64],
    ) -> Result<RunnerGroupInfo>;
    async fn update_runner_group(
        &self,
        scope: &Scope,
        id: u64,
        settings: &RunnerGroupSettings,
    ) -> Result<RunnerGroupInfo>;
    async fn delete_runner_group(&self, scope: &Scope, id: u64) -> Result<()>;
    /// Ids allowed to use the group (all pages): repositories of an
    /// organization's group, organizations of an enterprise's.
    async fn list_group_access(&self, scope: &Scope, id: u64) -> Result<Vec<u64>>;
    /// Replaces the whole access list in one call (`selected_repository_ids`
    /// or `selected_organization_ids`).
    async fn set_group_access(&self, scope: &Scope, id: u64, access_ids: &[u64]) -> Result<()>;
    /// Organization groups only.
    async fn add_group_repository(&self, scope: &Scope, id: u64, repository_id: u64) -> Result<()>;
    /// Organization groups only.
    async fn remove_group_repository(
        &self,
        scope: &Scope,
        id: u64,
        repository_id: u64,
    ) -> Result<()>;
    /// Runners in the group (all pages).
    async fn list_group_runners(&self, scope: &Scope, id: u64) -> Result<Vec<Runner>>;
    async fn set_group_runners(&self, scope: &Scope, id: u64, runner_ids: &[u64]) -> Result<()>;
    async fn add_group_runner(&self, scope: &Scope, id: u64, runner_id: u64) -> Result<()>;
    /// The runner goes back to the default group.
    async fn remove_group_runner(&self, scope: &Scope, id: u64, runner_id: u64) -> Result<()>;
    /// The id of repository `owner/name` (`GET /repos/{owner}/{repo}`).
    async fn repository_id(&self, owner: &str, name: &str) -> Result<u64>;
    /// The id of organization `login` (`GET /orgs/{org}`).
    async fn organization_id(&self, login: &str) -> Result<u64>;
    /// The runner applications GitHub serves to the scope (conditional request).
    async fn runner_downloads(&self, scope: &Scope) -> Result<Vec<RunnerDownload>>;
}

/// The runner endpoints the reconciler uses, for one GitHub host and one credential.
#[async_trait]
pub trait GitHubApi: RunnerGroupApi + Send + Sync {
    /// Every runner in the scope (all pages). Uses conditional requests, so an
    /// unchanged list costs no rate-limit budget.
    async fn list_runners(&self, scope: &Scope) -> Result<Vec<Runner>>;
    /// Runners whose name is exactly `name` (GitHub's `name` filter).
    async fn find_runner_by_name(&self, scope: &Scope, name: &str) -> Result<Option<Runner>>;
    async fn get_runner(&self, scope: &Scope, id: u64) -> Result<Runner>;
    async fn generate_jitconfig(&self, scope: &Scope, request: &JitRequest) -> Result<JitConfig>;
    /// Removes a registration. `Err(Busy)` if it is running a job,
    /// `Err(NotFound)` if it is already gone.
    async fn delete_runner(&self, scope: &Scope, id: u64) -> Result<()>;
    /// Replaces all custom labels of a runner; returns the labels it now has.
    async fn set_custom_labels(
        &self,
        scope: &Scope,
        id: u64,
        labels: &[String],
    ) -> Result<Vec<RunnerLabel>>;
    /// Runner groups of an organization or enterprise (all pages).
    async fn list_runner_groups(&self, scope: &Scope) -> Result<Vec<RunnerGroup>>;
    /// A fresh registration token of the scope, which the Actions service
    /// (runner scale sets) trades for its own admin token. Clients that only
    /// serve the REST runner endpoints refuse it.
    async fn registration_token(&self, scope: &Scope) -> Result<RegistrationToken> {
        Err(GitHubError::Invalid(format!(
            "this GitHub client cannot issue registration tokens for {scope}"
        )))
    }

    /// Workflow job `id` of `repository` (`owner/name`); `Err(NotFound)`
    /// when GitHub no longer knows it.
    async fn workflow_job(&self, repository: &str, id: u64) -> Result<WorkflowJob>;
}

/// A workflow job as `GET /repos/{owner}/{repo}/actions/jobs/{job_id}` tells it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct WorkflowJob {
    pub id: u64,
    /// `queued`, `in_progress`, `completed`, `waiting`, `requested` or `pending`.
    pub status: String,
    #[serde(default)]
    pub runner_id: Option<u64>,
    #[serde(default)]
    pub runner_name: Option<String>,
}

impl WorkflowJob {
    /// Whether the job still waits for a runner.
    pub fn waiting(&self) -> bool {
        !matches!(self.status.as_str(), "in_progress" | "completed")
    }
}

/// The credential a pool's Secret holds. Never formatted by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A classic or fine-grained personal access token.
    Token(String),
    /// A GitHub App installation: a JWT signed with the key buys installation tokens.
    App {
        app_id: String,
        installation_id: u64,
        private_key_pem: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Credentials::Token(<redacted>)"),
            Credentials::App {
                app_id,
                installation_id,
                ..
            } => write!(
                f,
                "Credentials::App {{ app_id: {app_id}, installation_id: {installation_id}, private_key_pem: <redacted> }}"
            ),
        }
    }
}

/// Which GitHub to talk to: `https://api.github.com` or `https://HOST/api/v3`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub api_base: url::Url,
    /// PEM bundle of extra CAs to trust (GHES with a private CA).
    pub ca_bundle: Option<String>,
}

/// Hands out a [`GitHubApi`] for an endpoint and credential. The real one
/// caches clients so installation tokens, ETags and rate-limit state are shared
/// by every pool that uses the same credential.
pub trait GitHubConnector: Send + Sync {
    fn connect(
        &self,
        endpoint: &Endpoint,
        credentials: &Credentials,
    ) -> Result<std::sync::Arc<dyn GitHubApi>>;
}
