//! The fake's state: accounts, runners, runner groups, jobs, and every rule
//! GitHub applies to them. Everything here is synchronous and runs under the
//! one state lock; the HTTP layer only parses requests and formats answers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::api_error::ApiError;
use crate::jit::{self, JitRunnerInfo};
use crate::util;
use crate::webhook::WebhookEvent;

/// One of GitHub's three runner scopes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Enterprise(String),
    Organization(String),
    Repository { owner: String, repo: String },
}

impl Scope {
    pub fn enterprise(name: impl Into<String>) -> Self {
        Scope::Enterprise(name.into())
    }
    pub fn org(name: impl Into<String>) -> Self {
        Scope::Organization(name.into())
    }
    pub fn repo(owner: impl Into<String>, repo: impl Into<String>) -> Self {
        Scope::Repository {
            owner: owner.into(),
            repo: repo.into(),
        }
    }

    /// Parses `enterprises/E`, `orgs/O` or `repos/O/R` (a leading `/` is allowed).
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            ["enterprises", e] if !e.is_empty() => Some(Scope::enterprise(*e)),
            ["orgs", o] if !o.is_empty() => Some(Scope::org(*o)),
            ["repos", o, r] if !o.is_empty() && !r.is_empty() => Some(Scope::repo(*o, *r)),
            _ => None,
        }
    }

    /// `enterprises/E`, `orgs/O` or `repos/O/R`.
    pub fn path(&self) -> String {
        match self {
            Scope::Enterprise(e) => format!("enterprises/{e}"),
            Scope::Organization(o) => format!("orgs/{o}"),
            Scope::Repository { owner, repo } => format!("repos/{owner}/{repo}"),
        }
    }

    pub(crate) fn key(&self) -> ScopeKey {
        match self {
            Scope::Enterprise(e) => ScopeKey::Ent(e.to_lowercase()),
            Scope::Organization(o) => ScopeKey::Org(o.to_lowercase()),
            Scope::Repository { owner, repo } => {
                ScopeKey::Repo(format!("{}/{}", owner.to_lowercase(), repo.to_lowercase()))
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// Lower-cased scope names: GitHub's account and repository names are not
/// case sensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ScopeKey {
    Ent(String),
    Org(String),
    Repo(String),
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
pub struct Label {
    pub id: u64,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: LabelType,
}

/// A runner as the fake holds it (what `FakeGitHub::runners` returns).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    pub id: u64,
    pub name: String,
    pub os: String,
    pub status: RunnerStatus,
    pub busy: bool,
    pub ephemeral: bool,
    /// Created by `generate-jitconfig`.
    pub jit: bool,
    pub runner_group_id: u64,
    pub labels: Vec<Label>,
    pub scope: Scope,
    /// The job it is running, if busy.
    pub job_id: Option<u64>,
    /// Whether it ever connected (JIT runners that never do expire).
    pub ever_online: bool,
    pub work_folder: String,
    /// The runner scale set it was created for (`generatejitconfig` of the
    /// Actions service); such runners take only that scale set's jobs.
    #[serde(default)]
    pub scale_set_id: Option<u64>,
    #[serde(skip)]
    pub(crate) created: Option<Instant>,
}

impl Runner {
    pub fn online(&self) -> bool {
        self.status == RunnerStatus::Online
    }
    pub fn has_label(&self, name: &str) -> bool {
        self.labels
            .iter()
            .any(|l| l.name.eq_ignore_ascii_case(name))
    }
}

/// The JSON GitHub returns for a runner.
#[derive(Serialize)]
pub(crate) struct RunnerJson<'a> {
    id: u64,
    name: &'a str,
    os: &'a str,
    status: RunnerStatus,
    busy: bool,
    ephemeral: bool,
    runner_group_id: u64,
    labels: &'a [Label],
}

impl<'a> From<&'a Runner> for RunnerJson<'a> {
    fn from(r: &'a Runner) -> Self {
        RunnerJson {
            id: r.id,
            name: &r.name,
            os: &r.os,
            status: r.status,
            busy: r.busy,
            ephemeral: r.ephemeral,
            runner_group_id: r.runner_group_id,
            labels: &r.labels,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    All,
    Selected,
    Private,
}

impl Visibility {
    fn parse(s: &str, allow_private: bool) -> Option<Self> {
        match s {
            "all" => Some(Visibility::All),
            "selected" => Some(Visibility::Selected),
            "private" if allow_private => Some(Visibility::Private),
            _ => None,
        }
    }
}

/// A runner group of an organization or enterprise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerGroup {
    pub id: u64,
    pub name: String,
    pub visibility: Visibility,
    pub default: bool,
    pub allows_public_repositories: bool,
    pub restricted_to_workflows: bool,
    pub selected_workflows: Vec<String>,
    /// Repository ids (organization groups) or organization ids (enterprise
    /// groups) allowed when `visibility` is `selected`.
    pub selected_ids: BTreeSet<u64>,
    pub network_configuration_id: Option<String>,
}

impl RunnerGroup {
    fn default_group() -> Self {
        RunnerGroup {
            id: 1,
            name: "Default".into(),
            visibility: Visibility::All,
            default: true,
            allows_public_repositories: true,
            restricted_to_workflows: false,
            selected_workflows: vec![],
            selected_ids: BTreeSet::new(),
            network_configuration_id: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    InProgress,
    Completed,
}

/// A workflow job the fake has queued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub run_id: u64,
    pub name: String,
    /// `owner/repo` the job belongs to.
    pub repository: String,
    pub labels: Vec<String>,
    pub status: JobStatus,
    /// `success`, `failure`, `cancelled`... once completed.
    pub conclusion: Option<String>,
    pub runner_id: Option<u64>,
    pub runner_name: Option<String>,
    pub runner_group_id: Option<u64>,
    pub runner_group_name: Option<String>,
    /// Workflow reference used for `restricted_to_workflows` groups.
    pub workflow_ref: String,
    /// The runner scale set it went to (its only label names one).
    #[serde(default)]
    pub scale_set_id: Option<u64>,
    /// Its `runnerRequestId` in the scale set's job messages.
    #[serde(default)]
    pub runner_request_id: Option<u64>,
    #[serde(skip)]
    pub(crate) created_at: Option<SystemTime>,
    #[serde(skip)]
    pub(crate) started_at: Option<SystemTime>,
    #[serde(skip)]
    pub(crate) completed_at: Option<SystemTime>,
}

impl Job {
    /// When the job was queued.
    pub fn queued_at(&self) -> Option<SystemTime> {
        self.created_at
    }

    /// When a runner took it.
    pub fn started_at(&self) -> Option<SystemTime> {
        self.started_at
    }
}

#[derive(Default)]
pub(crate) struct RunnerSet {
    pub runners: BTreeMap<u64, Runner>,
    /// Lower-cased name → id: names are unique (case-insensitively) per scope.
    pub by_name: HashMap<String, u64>,
}

pub(crate) struct Account {
    pub id: u64,
    pub login: String,
    pub groups: BTreeMap<u64, RunnerGroup>,
    pub runners: RunnerSet,
    /// Organizations only: the enterprise they belong to (lower-cased slug).
    pub enterprise: Option<String>,
}

impl Account {
    fn new(id: u64, login: &str) -> Self {
        let mut groups = BTreeMap::new();
        groups.insert(1, RunnerGroup::default_group());
        Account {
            id,
            login: login.to_string(),
            groups,
            runners: RunnerSet::default(),
            enterprise: None,
        }
    }
}

pub(crate) struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub owner_id: u64,
    pub private: bool,
    pub runners: RunnerSet,
}

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// The read-only labels GitHub gives a runner from its OS and architecture.
pub fn is_standard_label(name: &str) -> bool {
    const STANDARD: &[&str] = &[
        "self-hosted",
        "linux",
        "windows",
        "macos",
        "x64",
        "arm",
        "arm64",
    ];
    STANDARD.iter().any(|s| s.eq_ignore_ascii_case(name))
}

pub(crate) const MAX_LABELS: usize = 100;
pub(crate) const MAX_LABEL_LEN: usize = 256;
pub(crate) const MAX_RUNNER_NAME_LEN: usize = 64;

/// Settings that can change while the fake runs.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub jit_offline_expiry: Duration,
    pub app_token_ttl: Duration,
    /// The runner release the downloads endpoint serves, `major.minor.patch`.
    pub runner_version: String,
}

pub(crate) struct Model {
    pub settings: Settings,
    pub enterprises: HashMap<String, Account>,
    pub orgs: HashMap<String, Account>,
    pub repos: HashMap<String, Repo>,
    /// Runner id → the scope holding it.
    pub runner_scope: HashMap<u64, ScopeKey>,
    pub jobs: BTreeMap<u64, Job>,
    pub queue: VecDeque<u64>,
    label_ids: HashMap<String, u64>,
    next_account_id: u64,
    next_runner_id: u64,
    next_group_id: u64,
    next_label_id: u64,
    next_job_id: u64,
    pub webhook: Option<tokio::sync::mpsc::UnboundedSender<WebhookEvent>>,
    /// Runner id → how many more list answers omit it (a runner shifted off
    /// a page while the list was read: a paged list is not a snapshot).
    pub hidden_from_lists: HashMap<u64, u32>,
    /// Bumped whenever any runner may change (invalidates `list_cache`).
    pub version: u64,
    /// Serialized runner-list pages: (scope, name filter, page, per_page) →
    /// (version, body, ETag). Lists are the hot path of every client.
    pub list_cache: HashMap<ListKey, CachedPage>,
    /// The Actions service side of runner scale sets.
    pub actions: crate::actions::Service,
    /// Names of the runners that ever came online, removed ones included
    /// (a benchmark's record; a runner online for a moment is in it too).
    pub came_online: HashSet<String>,
}

pub(crate) type ListKey = (ScopeKey, Option<String>, usize, usize);

pub(crate) struct CachedPage {
    pub version: u64,
    pub total: usize,
    pub body: axum::body::Bytes,
    pub etag: String,
}

/// Everything a handler needs to know about where the request came in.
pub(crate) struct Ctx<'a> {
    /// API base URL as the client used it: `http://HOST` or `http://HOST/api/v3`.
    pub api_base: &'a str,
    /// Web base URL (where `github.com/acme` would be).
    pub web_base: &'a str,
}

fn not_found() -> ApiError {
    ApiError::not_found()
}

impl Model {
    pub fn new(settings: Settings, actions: crate::actions::ServiceSettings) -> Self {
        Model {
            settings,
            enterprises: HashMap::new(),
            orgs: HashMap::new(),
            repos: HashMap::new(),
            runner_scope: HashMap::new(),
            came_online: HashSet::new(),
            jobs: BTreeMap::new(),
            queue: VecDeque::new(),
            label_ids: HashMap::new(),
            next_account_id: 1000,
            next_runner_id: 1,
            next_group_id: 2,
            next_label_id: 1,
            next_job_id: 1,
            webhook: None,
            hidden_from_lists: HashMap::new(),
            version: 0,
            list_cache: HashMap::new(),
            actions: crate::actions::Service::new(actions),
        }
    }

    // ----- accounts -------------------------------------------------------

    pub fn add_enterprise(&mut self, slug: &str) -> u64 {
        let key = slug.to_lowercase();
        if let Some(a) = self.enterprises.get(&key) {
            return a.id;
        }
        self.next_account_id += 1;
        let id = self.next_account_id;
        self.enterprises.insert(key, Account::new(id, slug));
        id
    }

    pub fn add_org(&mut self, login: &str) -> u64 {
        let key = login.to_lowercase();
        if let Some(a) = self.orgs.get(&key) {
            return a.id;
        }
        self.next_account_id += 1;
        let id = self.next_account_id;
        self.orgs.insert(key, Account::new(id, login));
        id
    }

    /// Makes `org` a member of `enterprise` (both are created if missing).
    pub fn link_org(&mut self, enterprise: &str, org: &str) {
        self.add_enterprise(enterprise);
        self.add_org(org);
        if let Some(o) = self.orgs.get_mut(&org.to_lowercase()) {
            o.enterprise = Some(enterprise.to_lowercase());
        }
    }

    pub fn add_repo(&mut self, owner: &str, name: &str) -> u64 {
        let key = format!("{}/{}", owner.to_lowercase(), name.to_lowercase());
        if let Some(r) = self.repos.get(&key) {
            return r.id;
        }
        let owner_id = match self.orgs.get(&owner.to_lowercase()) {
            Some(o) => o.id,
            None => {
                // A user account: give it a stable id of its own.
                self.next_account_id += 1;
                self.next_account_id
            }
        };
        self.next_account_id += 1;
        let id = self.next_account_id;
        self.repos.insert(
            key,
            Repo {
                id,
                owner: owner.to_string(),
                name: name.to_string(),
                owner_id,
                private: true,
                runners: RunnerSet::default(),
            },
        );
        id
    }

    pub(crate) fn runner_set(&self, key: &ScopeKey) -> Option<&RunnerSet> {
        match key {
            ScopeKey::Ent(e) => self.enterprises.get(e).map(|a| &a.runners),
            ScopeKey::Org(o) => self.orgs.get(o).map(|a| &a.runners),
            ScopeKey::Repo(r) => self.repos.get(r).map(|r| &r.runners),
        }
    }

    fn runner_set_mut(&mut self, key: &ScopeKey) -> Option<&mut RunnerSet> {
        self.version += 1;
        match key {
            ScopeKey::Ent(e) => self.enterprises.get_mut(e).map(|a| &mut a.runners),
            ScopeKey::Org(o) => self.orgs.get_mut(o).map(|a| &mut a.runners),
            ScopeKey::Repo(r) => self.repos.get_mut(r).map(|r| &mut r.runners),
        }
    }

    pub fn scope_exists(&self, key: &ScopeKey) -> bool {
        self.runner_set(key).is_some()
    }

    pub(crate) fn account(&self, key: &ScopeKey) -> Option<&Account> {
        match key {
            ScopeKey::Ent(e) => self.enterprises.get(e),
            ScopeKey::Org(o) => self.orgs.get(o),
            ScopeKey::Repo(_) => None,
        }
    }

    fn account_mut(&mut self, key: &ScopeKey) -> Option<&mut Account> {
        match key {
            ScopeKey::Ent(e) => self.enterprises.get_mut(e),
            ScopeKey::Org(o) => self.orgs.get_mut(o),
            ScopeKey::Repo(_) => None,
        }
    }

    /// The public scope of a key (with names as they were added).
    pub(crate) fn scope_of(&self, key: &ScopeKey) -> Scope {
        match key {
            ScopeKey::Ent(e) => Scope::Enterprise(
                self.enterprises
                    .get(e)
                    .map(|a| a.login.clone())
                    .unwrap_or_else(|| e.clone()),
            ),
            ScopeKey::Org(o) => Scope::Organization(
                self.orgs
                    .get(o)
                    .map(|a| a.login.clone())
                    .unwrap_or_else(|| o.clone()),
            ),
            ScopeKey::Repo(r) => match self.repos.get(r) {
                Some(repo) => Scope::repo(&repo.owner, &repo.name),
                None => {
                    let (o, n) = r.split_once('/').unwrap_or((r, ""));
                    Scope::repo(o, n)
                }
            },
        }
    }

    /// The web URL of a scope (`gitHubUrl` of a runner).
    pub(crate) fn web_url(&self, key: &ScopeKey, web_base: &str) -> String {
        match self.scope_of(key) {
            Scope::Enterprise(e) => format!("{web_base}/enterprises/{e}"),
            Scope::Organization(o) => format!("{web_base}/{o}"),
            Scope::Repository { owner, repo } => format!("{web_base}/{owner}/{repo}"),
        }
    }

    // ----- labels ---------------------------------------------------------

    fn label(&mut self, name: &str) -> Label {
        let lc = name.to_lowercase();
        let id = match self.label_ids.get(&lc) {
            Some(id) => *id,
            None => {
                let id = self.next_label_id;
                self.next_label_id += 1;
                self.label_ids.insert(lc, id);
                id
            }
        };
        Label {
            id,
            name: name.to_string(),
            kind: if is_standard_label(name) {
                LabelType::ReadOnly
            } else {
                LabelType::Custom
            },
        }
    }

    /// Checks label names the way GitHub does; returns them de-duplicated
    /// (case-insensitively), in order.
    fn check_labels(labels: &[String]) -> Result<Vec<String>, ApiError> {
        if labels.len() > MAX_LABELS {
            return Err(ApiError::validation_simple(format!(
                "Invalid request.\n\nFor 'properties/labels', the array has {} items, more than the maximum of {MAX_LABELS}.",
                labels.len()
            )));
        }
        let mut out: Vec<String> = Vec::with_capacity(labels.len());
        for l in labels {
            if l.trim().is_empty() {
                return Err(ApiError::validation_simple(
                    "Validation Failed: a label name cannot be empty.".to_string(),
                ));
            }
            if l.chars().count() > MAX_LABEL_LEN {
                return Err(ApiError::validation_simple(format!(
                    "Validation Failed: label names must be at most {MAX_LABEL_LEN} characters long."
                )));
            }
            if l.contains(',') {
                return Err(ApiError::validation_simple(format!(
                    "Validation Failed: label name '{l}' cannot contain a comma."
                )));
            }
            if !out.iter().any(|o| o.eq_ignore_ascii_case(l)) {
                out.push(l.clone());
            }
        }
        Ok(out)
    }

    // ----- runners --------------------------------------------------------

    /// Runners of a scope, by id, optionally only those named exactly `name`.
    pub fn list_runners(
        &self,
        key: &ScopeKey,
        name: Option<&str>,
    ) -> Result<Vec<&Runner>, ApiError> {
        let set = self.runner_set(key).ok_or_else(not_found)?;
        Ok(match name {
            Some(n) => set.runners.values().filter(|r| r.name == n).collect(),
            None => set.runners.values().collect(),
        })
    }

    pub fn runner(&self, key: &ScopeKey, id: u64) -> Result<&Runner, ApiError> {
        self.runner_set(key)
            .ok_or_else(not_found)?
            .runners
            .get(&id)
            .ok_or_else(not_found)
    }

    pub(crate) fn runner_mut(&mut self, key: &ScopeKey, id: u64) -> Result<&mut Runner, ApiError> {
        self.runner_set_mut(key)
            .ok_or_else(not_found)?
            .runners
            .get_mut(&id)
            .ok_or_else(not_found)
    }

    pub fn all_runners(&self) -> Vec<Runner> {
        let mut ids: Vec<u64> = self.runner_scope.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.runner_by_id(id).cloned())
            .collect()
    }

    pub fn runner_by_id(&self, id: u64) -> Option<&Runner> {
        let key = self.runner_scope.get(&id)?;
        self.runner_set(key)?.runners.get(&id)
    }

    pub(crate) fn group_name(&self, key: &ScopeKey, group_id: u64) -> String {
        self.account(key)
            .and_then(|a| a.groups.get(&group_id))
            .map(|g| g.name.clone())
            .unwrap_or_else(|| "Default".into())
    }

    /// `POST .../actions/runners/generate-jitconfig` after the body was parsed.
    pub fn generate_jit(
        &mut self,
        key: &ScopeKey,
        ctx: &Ctx<'_>,
        name: &str,
        group_id: u64,
        labels: &[String],
        work_folder: &str,
    ) -> Result<(Runner, String), ApiError> {
        if !self.scope_exists(key) {
            return Err(not_found());
        }
        if name.trim().is_empty() {
            return Err(ApiError::validation_simple(
                "Validation Failed: the runner name cannot be empty.".to_string(),
            ));
        }
        if name.chars().count() > MAX_RUNNER_NAME_LEN {
            return Err(ApiError::validation_simple(format!(
                "Validation Failed: runner names must be at most {MAX_RUNNER_NAME_LEN} characters long."
            )));
        }
        if labels.is_empty() {
            return Err(ApiError::validation_simple(
                "Invalid request.\n\nFor 'properties/labels', [] should have at least 1 item(s)."
                    .to_string(),
            ));
        }
        let labels = Self::check_labels(labels)?;
        let group_ok = match key {
            ScopeKey::Repo(_) => group_id == 1,
            _ => self
                .account(key)
                .is_some_and(|a| a.groups.contains_key(&group_id)),
        };
        if !group_ok {
            return Err(ApiError::new(404, "Runner group not found"));
        }
        let set = self.runner_set(key).expect("scope exists");
        if set.by_name.contains_key(&name.to_lowercase()) {
            return Err(ApiError::new(
                409,
                format!("Already exists - A runner with the name {name} already exists."),
            ));
        }
        let labels: Vec<Label> = labels.iter().map(|l| self.label(l)).collect();
        let id = self.next_runner_id;
        self.next_runner_id += 1;
        let scope = self.scope_of(key);
        let runner = Runner {
            id,
            name: name.to_string(),
            os: "unknown".into(),
            status: RunnerStatus::Offline,
            busy: false,
            ephemeral: true,
            jit: true,
            runner_group_id: group_id,
            labels,
            scope,
            job_id: None,
            ever_online: false,
            work_folder: work_folder.to_string(),
            scale_set_id: None,
            created: Some(Instant::now()),
        };
        let info = JitRunnerInfo {
            id,
            name: runner.name.clone(),
            runner_group_id: group_id,
            runner_group_name: self.group_name(key, group_id),
            github_url: self.web_url(key, ctx.web_base),
            server_url: format!("{}/_fake/pipelines/{id}", ctx.web_base),
            work_folder: work_folder.to_string(),
            ephemeral: true,
        };
        let encoded = jit::encode_jit_config(&info);
        self.insert_runner(key, runner.clone());
        Ok((runner, encoded))
    }

    fn insert_runner(&mut self, key: &ScopeKey, runner: Runner) {
        let id = runner.id;
        let set = self.runner_set_mut(key).expect("scope exists");
        set.by_name.insert(runner.name.to_lowercase(), id);
        set.runners.insert(id, runner);
        self.runner_scope.insert(id, key.clone());
    }

    /// Registers a runner the way `config.sh` would (not through JIT).
    pub fn register_runner(
        &mut self,
        scope: &Scope,
        name: &str,
        labels: &[String],
        ephemeral: bool,
        group_id: Option<u64>,
    ) -> Result<Runner, ApiError> {
        let key = scope.key();
        if !self.scope_exists(&key) {
            return Err(not_found());
        }
        if name.is_empty() || name.chars().count() > MAX_RUNNER_NAME_LEN {
            return Err(ApiError::validation_simple("invalid runner name".into()));
        }
        let labels = Self::check_labels(labels)?;
        let group_id = group_id.unwrap_or(1);
        let group_ok = match &key {
            ScopeKey::Repo(_) => group_id == 1,
            _ => self
                .account(&key)
                .is_some_and(|a| a.groups.contains_key(&group_id)),
        };
        if !group_ok {
            return Err(ApiError::new(404, "Runner group not found"));
        }
        if self
            .runner_set(&key)
            .expect("exists")
            .by_name
            .contains_key(&name.to_lowercase())
        {
            return Err(ApiError::new(
                409,
                format!("Already exists - A runner with the name {name} already exists."),
            ));
        }
        // config.sh always adds self-hosted plus the machine's OS and arch.
        let mut all: Vec<String> = vec!["self-hosted".into(), "Linux".into(), "X64".into()];
        for l in labels {
            if !all.iter().any(|a| a.eq_ignore_ascii_case(&l)) {
                all.push(l);
            }
        }
        let labels: Vec<Label> = all.iter().map(|l| self.label(l)).collect();
        let id = self.next_runner_id;
        self.next_runner_id += 1;
        let runner = Runner {
            id,
            name: name.to_string(),
            os: "Linux".into(),
            status: RunnerStatus::Offline,
            busy: false,
            ephemeral,
            jit: false,
            runner_group_id: group_id,
            labels,
            scope: self.scope_of(&key),
            job_id: None,
            ever_online: false,
            work_folder: "_work".into(),
            scale_set_id: None,
            created: Some(Instant::now()),
        };
        self.insert_runner(&key, runner.clone());
        Ok(runner)
    }

    /// `DELETE .../actions/runners/{id}`. `Err` 422 if busy.
    pub fn delete_runner(&mut self, key: &ScopeKey, id: u64) -> Result<(), ApiError> {
        let r = self.runner(key, id)?;
        if r.busy {
            return Err(ApiError::validation_simple(format!(
                "Runner \"{}\" is still running a job",
                r.name
            ))
            .busy());
        }
        self.remove_runner(id);
        Ok(())
    }

    /// Removes a runner wherever it is (no checks).
    pub fn remove_runner(&mut self, id: u64) -> Option<Runner> {
        let key = self.runner_scope.remove(&id)?;
        let set = self.runner_set_mut(&key)?;
        let r = set.runners.remove(&id)?;
        set.by_name.remove(&r.name.to_lowercase());
        Some(r)
    }

    pub fn labels_of(&self, key: &ScopeKey, id: u64) -> Result<Vec<Label>, ApiError> {
        Ok(self.runner(key, id)?.labels.clone())
    }

    /// POST (add) or PUT (replace) custom labels.
    pub fn change_labels(
        &mut self,
        key: &ScopeKey,
        id: u64,
        labels: &[String],
        replace: bool,
    ) -> Result<Vec<Label>, ApiError> {
        self.runner(key, id)?;
        if !replace && labels.is_empty() {
            return Err(ApiError::validation_simple(
                "Invalid request.\n\nFor 'properties/labels', [] should have at least 1 item(s)."
                    .into(),
            ));
        }
        let labels = Self::check_labels(labels)?;
        let new: Vec<Label> = labels.iter().map(|l| self.label(l)).collect();
        let r = self.runner_mut(key, id)?;
        if replace {
            r.labels.retain(|l| l.kind == LabelType::ReadOnly);
        }
        for l in new {
            if !r.has_label(&l.name) {
                r.labels.push(l);
            }
        }
        if r.labels.len() > MAX_LABELS {
            return Err(ApiError::validation_simple(format!(
                "Validation Failed: a runner can have at most {MAX_LABELS} labels."
            )));
        }
        let out = r.labels.clone();
        self.assign_jobs();
        Ok(out)
    }

    pub fn remove_all_custom_labels(
        &mut self,
        key: &ScopeKey,
        id: u64,
    ) -> Result<Vec<Label>, ApiError> {
        let r = self.runner_mut(key, id)?;
        r.labels.retain(|l| l.kind == LabelType::ReadOnly);
        Ok(r.labels.clone())
    }

    pub fn remove_label(
        &mut self,
        key: &ScopeKey,
        id: u64,
        name: &str,
    ) -> Result<Vec<Label>, ApiError> {
        let r = self.runner_mut(key, id)?;
        let Some(pos) = r
            .labels
            .iter()
            .position(|l| l.name.eq_ignore_ascii_case(name))
        else {
            return Err(ApiError::new(
                404,
                format!("Label {name} not found on the runner"),
            ));
        };
        if r.labels[pos].kind == LabelType::ReadOnly {
            return Err(ApiError::validation_simple(format!(
                "Validation Failed: cannot remove the read-only label {name}."
            )));
        }
        r.labels.remove(pos);
        Ok(r.labels.clone())
    }

    // ----- runner groups --------------------------------------------------

    pub fn groups(&self, key: &ScopeKey) -> Result<Vec<&RunnerGroup>, ApiError> {
        Ok(self
            .account(key)
            .ok_or_else(not_found)?
            .groups
            .values()
            .collect())
    }

    pub fn group(&self, key: &ScopeKey, gid: u64) -> Result<&RunnerGroup, ApiError> {
        self.account(key)
            .ok_or_else(not_found)?
            .groups
            .get(&gid)
            .ok_or_else(not_found)
    }

    /// The groups an organization's enterprise shares with it (every
    /// non-default enterprise group visible to the organization), listed
    /// with the organization's own as `inherited`.
    pub fn inherited_groups(&self, key: &ScopeKey) -> Vec<(ScopeKey, &RunnerGroup)> {
        let ScopeKey::Org(o) = key else {
            return Vec::new();
        };
        let Some(enterprise) = self.orgs.get(o).and_then(|a| a.enterprise.clone()) else {
            return Vec::new();
        };
        let from = ScopeKey::Ent(enterprise);
        let Ok(groups) = self.groups(&from) else {
            return Vec::new();
        };
        groups
            .into_iter()
            .filter(|g| !g.default && self.group_visible_to(&from, g, o).unwrap_or(false))
            .map(|g| (from.clone(), g))
            .collect()
    }

    /// Groups a repository (organization groups) or an organization
    /// (enterprise groups) may use.
    pub fn group_visible_to(
        &self,
        key: &ScopeKey,
        g: &RunnerGroup,
        target: &str,
    ) -> Result<bool, ApiError> {
        match key {
            ScopeKey::Org(o) => {
                let repo = self
                    .repos
                    .get(&format!("{o}/{}", target.to_lowercase()))
                    .ok_or_else(not_found)?;
                Ok(match g.visibility {
                    Visibility::All => true,
                    Visibility::Selected => g.selected_ids.contains(&repo.id),
                    Visibility::Private => repo.private,
                })
            }
            ScopeKey::Ent(_) => {
                let org = self
                    .orgs
                    .get(&target.to_lowercase())
                    .ok_or_else(not_found)?;
                Ok(match g.visibility {
                    Visibility::All | Visibility::Private => true,
                    Visibility::Selected => g.selected_ids.contains(&org.id),
                })
            }
            ScopeKey::Repo(_) => Err(not_found()),
        }
    }

    fn check_selected_ids(&self, key: &ScopeKey, ids: &[u64]) -> Result<(), ApiError> {
        for id in ids {
            let ok = match key {
                ScopeKey::Org(o) => self
                    .repos
                    .values()
                    .any(|r| r.id == *id && r.owner.eq_ignore_ascii_case(o)),
                ScopeKey::Ent(e) => self
                    .orgs
                    .values()
                    .any(|org| org.id == *id && org.enterprise.as_deref() == Some(e.as_str())),
                ScopeKey::Repo(_) => false,
            };
            if !ok {
                return Err(ApiError::validation(format!(
                    "Validation Failed: {} {id} does not exist or is not accessible.",
                    if matches!(key, ScopeKey::Ent(_)) {
                        "organization"
                    } else {
                        "repository"
                    }
                )));
            }
        }
        Ok(())
    }

    fn check_runner_ids(&self, key: &ScopeKey, ids: &[u64]) -> Result<(), ApiError> {
        let set = self.runner_set(key).ok_or_else(not_found)?;
        for id in ids {
            if !set.runners.contains_key(id) {
                return Err(ApiError::validation(format!(
                    "Validation Failed: runner {id} does not exist in this scope."
                )));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn create_group(
        &mut self,
        key: &ScopeKey,
        name: &str,
        visibility: Option<&str>,
        selected_ids: &[u64],
        runners: &[u64],
        allows_public_repositories: bool,
        restricted_to_workflows: bool,
        selected_workflows: Vec<String>,
        network_configuration_id: Option<String>,
    ) -> Result<RunnerGroup, ApiError> {
        let account = self.account(key).ok_or_else(not_found)?;
        let allow_private = matches!(key, ScopeKey::Org(_));
        let visibility = match visibility {
            None => Visibility::All,
            Some(v) => Visibility::parse(v, allow_private).ok_or_else(|| {
                ApiError::validation(format!(
                    "Invalid request.\n\nFor 'properties/visibility', \"{v}\" is not a valid value."
                ))
            })?,
        };
        if name.trim().is_empty() {
            return Err(ApiError::validation(
                "Validation Failed: name cannot be blank.".into(),
            ));
        }
        if account
            .groups
            .values()
            .any(|g| g.name.eq_ignore_ascii_case(name))
        {
            return Err(ApiError::validation(format!(
                "Validation Failed: a runner group named {name} already exists."
            )));
        }
        self.check_selected_ids(key, selected_ids)?;
        self.check_runner_ids(key, runners)?;
        let id = self.next_group_id;
        self.next_group_id += 1;
        let g = RunnerGroup {
            id,
            name: name.to_string(),
            visibility,
            default: false,
            allows_public_repositories,
            restricted_to_workflows,
            selected_workflows,
            selected_ids: selected_ids.iter().copied().collect(),
            network_configuration_id,
        };
        self.account_mut(key)
            .expect("exists")
            .groups
            .insert(id, g.clone());
        let set = self.runner_set_mut(key).expect("exists");
        for r in runners {
            if let Some(r) = set.runners.get_mut(r) {
                r.runner_group_id = id;
            }
        }
        Ok(g)
    }

    pub fn update_group(
        &mut self,
        key: &ScopeKey,
        gid: u64,
        body: &Map<String, Value>,
    ) -> Result<RunnerGroup, ApiError> {
        let allow_private = matches!(key, ScopeKey::Org(_));
        let account = self.account(key).ok_or_else(not_found)?;
        if !account.groups.contains_key(&gid) {
            return Err(not_found());
        }
        let name = crate::body::opt_str(body, "name")?;
        if let Some(n) = &name {
            if n.trim().is_empty() {
                return Err(ApiError::validation(
                    "Validation Failed: name cannot be blank.".into(),
                ));
            }
            if account
                .groups
                .values()
                .any(|g| g.id != gid && g.name.eq_ignore_ascii_case(n))
            {
                return Err(ApiError::validation(format!(
                    "Validation Failed: a runner group named {n} already exists."
                )));
            }
        }
        let visibility = match crate::body::opt_str(body, "visibility")? {
            None => None,
            Some(v) => Some(Visibility::parse(&v, allow_private).ok_or_else(|| {
                ApiError::validation(format!(
                    "Invalid request.\n\nFor 'properties/visibility', \"{v}\" is not a valid value."
                ))
            })?),
        };
        let public = crate::body::opt_bool(body, "allows_public_repositories")?;
        let restricted = crate::body::opt_bool(body, "restricted_to_workflows")?;
        let workflows = crate::body::opt_str_array(body, "selected_workflows")?;
        let network = match body.get("network_configuration_id") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(other) => {
                return Err(ApiError::validation(format!(
                    "Invalid request.\n\nFor 'properties/network_configuration_id', {other} is not a string or null."
                )));
            }
        };
        let g = self
            .account_mut(key)
            .expect("exists")
            .groups
            .get_mut(&gid)
            .expect("exists");
        if let Some(n) = name {
            g.name = n;
        }
        if let Some(v) = visibility {
            g.visibility = v;
        }
        if let Some(p) = public {
            g.allows_public_repositories = p;
        }
        if let Some(r) = restricted {
            g.restricted_to_workflows = r;
        }
        if let Some(w) = workflows {
            g.selected_workflows = w;
        }
        if let Some(n) = network {
            g.network_configuration_id = n;
        }
        let out = g.clone();
        self.assign_jobs();
        Ok(out)
    }

    pub fn delete_group(&mut self, key: &ScopeKey, gid: u64) -> Result<(), ApiError> {
        let g = self.group(key, gid)?;
        if g.default {
            return Err(ApiError::validation(
                "Validation Failed: the default runner group cannot be deleted.".into(),
            ));
        }
        self.account_mut(key).expect("exists").groups.remove(&gid);
        // Its runners go back to the default group.
        let set = self.runner_set_mut(key).expect("exists");
        for r in set.runners.values_mut() {
            if r.runner_group_id == gid {
                r.runner_group_id = 1;
            }
        }
        self.assign_jobs();
        Ok(())
    }

    pub fn set_group_access(
        &mut self,
        key: &ScopeKey,
        gid: u64,
        ids: &[u64],
    ) -> Result<(), ApiError> {
        self.group(key, gid)?;
        self.check_selected_ids(key, ids)?;
        let g = self
            .account_mut(key)
            .expect("exists")
            .groups
            .get_mut(&gid)
            .expect("exists");
        g.selected_ids = ids.iter().copied().collect();
        self.assign_jobs();
        Ok(())
    }

    pub fn change_group_access(
        &mut self,
        key: &ScopeKey,
        gid: u64,
        id: u64,
        add: bool,
    ) -> Result<(), ApiError> {
        let g = self.group(key, gid)?;
        if g.visibility != Visibility::Selected {
            return Err(ApiError::validation(
                "Validation Failed: the runner group's visibility must be set to selected.".into(),
            ));
        }
        if add {
            self.check_selected_ids(key, &[id])
                .map_err(|_| not_found())?;
        }
        let g = self
            .account_mut(key)
            .expect("exists")
            .groups
            .get_mut(&gid)
            .expect("exists");
        if add {
            g.selected_ids.insert(id);
        } else if !g.selected_ids.remove(&id) {
            return Err(not_found());
        }
        self.assign_jobs();
        Ok(())
    }

    /// Repositories (or organizations) a group gives access to.
    pub fn group_access(&self, key: &ScopeKey, gid: u64) -> Result<Vec<u64>, ApiError> {
        Ok(self.group(key, gid)?.selected_ids.iter().copied().collect())
    }

    pub fn group_runners(&self, key: &ScopeKey, gid: u64) -> Result<Vec<&Runner>, ApiError> {
        self.group(key, gid)?;
        Ok(self
            .runner_set(key)
            .expect("exists")
            .runners
            .values()
            .filter(|r| r.runner_group_id == gid)
            .collect())
    }

    pub fn set_group_runners(
        &mut self,
        key: &ScopeKey,
        gid: u64,
        ids: &[u64],
    ) -> Result<(), ApiError> {
        self.group(key, gid)?;
        self.check_runner_ids(key, ids)?;
        let set = self.runner_set_mut(key).expect("exists");
        for r in set.runners.values_mut() {
            if ids.contains(&r.id) {
                r.runner_group_id = gid;
            } else if r.runner_group_id == gid && gid != 1 {
                r.runner_group_id = 1;
            }
        }
        self.assign_jobs();
        Ok(())
    }

    pub fn move_runner(
        &mut self,
        key: &ScopeKey,
        gid: u64,
        rid: u64,
        add: bool,
    ) -> Result<(), ApiError> {
        self.group(key, gid)?;
        let r = self.runner_mut(key, rid)?;
        if add {
            r.runner_group_id = gid;
        } else {
            if r.runner_group_id != gid {
                return Err(not_found());
            }
            r.runner_group_id = 1;
        }
        self.assign_jobs();
        Ok(())
    }

    // ----- the runner side -------------------------------------------------

    /// A runner connects (`true`) or disconnects (`false`).
    pub fn set_online(&mut self, id: u64, online: bool) -> Result<Runner, ApiError> {
        let key = self.runner_scope.get(&id).cloned().ok_or_else(not_found)?;
        let r = self.runner_mut(&key, id)?;
        r.status = if online {
            RunnerStatus::Online
        } else {
            RunnerStatus::Offline
        };
        if online {
            r.ever_online = true;
            if r.os == "unknown" {
                // The runner reports its OS when it connects.
                r.os = if r.has_label("windows") {
                    "Windows"
                } else if r.has_label("macos") {
                    "macOS"
                } else {
                    "Linux"
                }
                .into();
            }
        }
        let out = r.clone();
        if online {
            self.came_online.insert(out.name.clone());
            self.assign_jobs();
        }
        Ok(self.runner_by_id(id).cloned().unwrap_or(out))
    }

    pub fn queue_job(
        &mut self,
        repo: &str,
        labels: &[String],
        name: Option<&str>,
    ) -> Result<u64, ApiError> {
        let key = repo.to_lowercase();
        let r = self.repos.get(&key).ok_or_else(not_found)?;
        let id = self.next_job_id;
        self.next_job_id += 1;
        let job = Job {
            id,
            run_id: 10_000 + id,
            name: name.unwrap_or("build").to_string(),
            repository: r.full_name(),
            labels: labels.to_vec(),
            status: JobStatus::Queued,
            conclusion: None,
            runner_id: None,
            runner_name: None,
            runner_group_id: None,
            runner_group_name: None,
            workflow_ref: format!("{}/.github/workflows/ci.yml@refs/heads/main", r.full_name()),
            scale_set_id: None,
            runner_request_id: None,
            created_at: Some(SystemTime::now()),
            started_at: None,
            completed_at: None,
        };
        self.jobs.insert(id, job);
        self.emit(id, "queued");
        // A job whose only label names a reachable scale set goes to it,
        // not to label matching.
        match self.scale_set_for_job(id) {
            Some(scale_set) => self.offer_to_scale_set(id, scale_set),
            None => self.queue.push_back(id),
        }
        self.assign_jobs();
        Ok(id)
    }

    /// Completes a job. A queued job is cancelled; a running one ends with
    /// `conclusion`, and an ephemeral runner is then removed, as GitHub does.
    pub fn finish_job(&mut self, id: u64, conclusion: &str) -> Result<Job, ApiError> {
        let job = self.jobs.get_mut(&id).ok_or_else(not_found)?;
        match job.status {
            JobStatus::Completed => {
                return Err(ApiError::validation(format!(
                    "job {id} is already completed"
                )));
            }
            JobStatus::Queued => {
                job.status = JobStatus::Completed;
                job.conclusion = Some("cancelled".into());
                job.completed_at = Some(SystemTime::now());
                self.queue.retain(|j| *j != id);
            }
            JobStatus::InProgress => {
                job.status = JobStatus::Completed;
                job.conclusion = Some(conclusion.to_string());
                job.completed_at = Some(SystemTime::now());
                if let Some(rid) = job.runner_id {
                    let ephemeral = match self.runner_by_id(rid) {
                        Some(r) => r.ephemeral,
                        None => false,
                    };
                    if ephemeral {
                        self.remove_runner(rid);
                    } else if let Some(key) = self.runner_scope.get(&rid).cloned()
                        && let Ok(r) = self.runner_mut(&key, rid)
                    {
                        r.busy = false;
                        r.job_id = None;
                    }
                }
            }
        }
        self.emit(id, "completed");
        self.scale_set_job_finished(id);
        self.assign_jobs();
        Ok(self.jobs[&id].clone())
    }

    /// Whether runner `r` (in scope `key`) may run a job of `repo`.
    fn runner_can_take(&self, key: &ScopeKey, r: &Runner, repo: &Repo, job: &Job) -> bool {
        if !r.online() || r.busy || r.scale_set_id.is_some() {
            return false;
        }
        if !job.labels.iter().all(|l| r.has_label(l)) {
            return false;
        }
        let group_allows = |g: &RunnerGroup, target_id: u64, private: bool| -> bool {
            let vis = match g.visibility {
                Visibility::All => true,
                Visibility::Selected => g.selected_ids.contains(&target_id),
                Visibility::Private => private,
            };
            let wf = !g.restricted_to_workflows
                || g.selected_workflows.iter().any(|w| w == &job.workflow_ref);
            vis && wf && (repo.private || g.allows_public_repositories)
        };
        match key {
            ScopeKey::Repo(k) => *k == repo_key(repo),
            ScopeKey::Org(o) => {
                if !repo.owner.eq_ignore_ascii_case(o) {
                    return false;
                }
                match self
                    .orgs
                    .get(o)
                    .and_then(|a| a.groups.get(&r.runner_group_id))
                {
                    Some(g) => group_allows(g, repo.id, repo.private),
                    None => false,
                }
            }
            ScopeKey::Ent(e) => {
                let Some(org) = self.orgs.get(&repo.owner.to_lowercase()) else {
                    return false;
                };
                if org.enterprise.as_deref() != Some(e.as_str()) {
                    return false;
                }
                match self
                    .enterprises
                    .get(e)
                    .and_then(|a| a.groups.get(&r.runner_group_id))
                {
                    Some(g) => group_allows(g, org.id, true),
                    None => false,
                }
            }
        }
    }

    /// Hands queued jobs, oldest first, to idle online runners whose labels
    /// include all of the job's labels.
    pub fn assign_jobs(&mut self) {
        self.start_scale_set_jobs();
        if self.queue.is_empty() {
            return;
        }
        let mut assigned: Vec<(u64, u64, ScopeKey)> = Vec::new();
        let mut taken: BTreeSet<u64> = BTreeSet::new();
        for jid in self.queue.iter() {
            let job = &self.jobs[jid];
            let Some(repo) = self.repos.get(&job.repository.to_lowercase()) else {
                continue;
            };
            // Repository runners first, then organization, then enterprise.
            let mut keys = vec![ScopeKey::Repo(repo_key(repo))];
            if self.orgs.contains_key(&repo.owner.to_lowercase()) {
                let o = repo.owner.to_lowercase();
                if let Some(e) = self.orgs[&o].enterprise.clone() {
                    keys.push(ScopeKey::Org(o));
                    keys.push(ScopeKey::Ent(e));
                } else {
                    keys.push(ScopeKey::Org(o));
                }
            }
            'scopes: for key in keys {
                let Some(set) = self.runner_set(&key) else {
                    continue;
                };
                for r in set.runners.values() {
                    if !taken.contains(&r.id) && self.runner_can_take(&key, r, repo, job) {
                        taken.insert(r.id);
                        assigned.push((*jid, r.id, key.clone()));
                        break 'scopes;
                    }
                }
            }
        }
        for (jid, rid, key) in assigned {
            self.queue.retain(|j| *j != jid);
            self.start_job(jid, rid, &key);
        }
    }

    /// Job `jid` starts on runner `rid` of scope `key`: the runner is busy.
    pub(crate) fn start_job(&mut self, jid: u64, rid: u64, key: &ScopeKey) {
        let (rname, gid) = {
            let r = self.runner_mut(key, rid).expect("runner exists");
            r.busy = true;
            r.job_id = Some(jid);
            (r.name.clone(), r.runner_group_id)
        };
        let group_name = match key {
            ScopeKey::Repo(_) => "Default".to_string(),
            _ => self.group_name(key, gid),
        };
        let job = self.jobs.get_mut(&jid).expect("job exists");
        job.status = JobStatus::InProgress;
        job.runner_id = Some(rid);
        job.runner_name = Some(rname);
        job.runner_group_id = Some(gid);
        job.runner_group_name = Some(group_name);
        job.started_at = Some(SystemTime::now());
        self.emit(jid, "in_progress");
    }

    /// Removes JIT runners that never came online within the expiry.
    pub fn sweep(&mut self, now: Instant) -> Vec<u64> {
        let expiry = self.settings.jit_offline_expiry;
        let expired: Vec<u64> = self
            .runner_scope
            .keys()
            .filter_map(|id| self.runner_by_id(*id))
            .filter(|r| {
                r.jit
                    && !r.ever_online
                    && r.created
                        .is_some_and(|c| now.saturating_duration_since(c) >= expiry)
            })
            .map(|r| r.id)
            .collect();
        for id in &expired {
            self.remove_runner(*id);
        }
        expired
    }

    // ----- webhooks ---------------------------------------------------------

    pub(crate) fn emit(&self, job_id: u64, action: &'static str) {
        let Some(tx) = &self.webhook else { return };
        let job = &self.jobs[&job_id];
        let Some(repo) = self.repos.get(&job.repository.to_lowercase()) else {
            return;
        };
        let payload = self.workflow_job_payload(job, repo, action);
        let _ = tx.send(WebhookEvent {
            event: "workflow_job",
            action,
            job_id,
            payload: serde_json::to_vec(&payload).expect("json"),
        });
    }

    pub(crate) fn workflow_job_payload(&self, job: &Job, repo: &Repo, action: &str) -> Value {
        let base = "https://api.github.invalid";
        let web = "https://github.invalid";
        let ts = |t: Option<SystemTime>| t.map(util::rfc3339);
        let status = match job.status {
            JobStatus::Queued => "queued",
            JobStatus::InProgress => "in_progress",
            JobStatus::Completed => "completed",
        };
        let full = repo.full_name();
        let mut payload = json!({
            "action": action,
            "workflow_job": {
                "id": job.id,
                "run_id": job.run_id,
                "workflow_name": "CI",
                "head_branch": "main",
                "run_url": format!("{base}/repos/{full}/actions/runs/{}", job.run_id),
                "run_attempt": 1,
                "node_id": format!("CR_fake{}", job.id),
                "head_sha": "0000000000000000000000000000000000000000",
                "url": format!("{base}/repos/{full}/actions/jobs/{}", job.id),
                "html_url": format!("{web}/{full}/actions/runs/{}/job/{}", job.run_id, job.id),
                "status": status,
                "conclusion": job.conclusion,
                "created_at": ts(job.created_at),
                "started_at": ts(job.started_at.or(job.created_at)),
                "completed_at": ts(job.completed_at),
                "name": job.name,
                "steps": [],
                "check_run_url": format!("{base}/repos/{full}/check-runs/{}", job.id),
                "labels": job.labels,
                "runner_id": job.runner_id,
                "runner_name": job.runner_name,
                "runner_group_id": job.runner_group_id,
                "runner_group_name": job.runner_group_name,
            },
            "repository": {
                "id": repo.id,
                "node_id": format!("R_fake{}", repo.id),
                "name": repo.name,
                "full_name": full,
                "private": repo.private,
                "owner": { "login": repo.owner, "id": repo.owner_id, "type": if self.orgs.contains_key(&repo.owner.to_lowercase()) { "Organization" } else { "User" } },
            },
            "sender": { "login": "octocat", "id": 1, "type": "User" },
        });
        if let Some(org) = self.orgs.get(&repo.owner.to_lowercase()) {
            payload["organization"] = json!({ "login": org.login, "id": org.id });
            if let Some(e) = org
                .enterprise
                .as_ref()
                .and_then(|e| self.enterprises.get(e))
            {
                payload["enterprise"] = json!({ "slug": e.login, "id": e.id, "name": e.login });
            }
        }
        payload
    }

    // ----- JSON for accounts and repositories --------------------------------

    pub fn repo_by_id(&self, id: u64) -> Option<&Repo> {
        self.repos.values().find(|r| r.id == id)
    }

    pub fn org_by_id(&self, id: u64) -> Option<&Account> {
        self.orgs.values().find(|o| o.id == id)
    }

    /// The repository a scope key names (`ScopeKey::Repo` only).
    pub fn repo_by_key(&self, key: &ScopeKey) -> Option<&Repo> {
        match key {
            ScopeKey::Repo(k) => self.repos.get(k),
            _ => None,
        }
    }

    /// `GET /repos/{owner}/{repo}`'s answer: the minimal repository plus the
    /// fields GitHub's `full-repository` schema adds and requires.
    pub fn full_repository_json(&self, repo: &Repo, ctx: &Ctx<'_>) -> Value {
        let mut v = self.minimal_repository_json(repo, ctx);
        if let Value::Object(o) = &mut v {
            o.insert("mirror_url".into(), Value::Null);
            o.insert("license".into(), Value::Null);
            o.insert("network_count".into(), json!(0));
            o.insert("subscribers_count".into(), json!(0));
        }
        v
    }

    pub fn minimal_repository_json(&self, repo: &Repo, ctx: &Ctx<'_>) -> Value {
        let api = ctx.api_base;
        let web = ctx.web_base;
        let full = repo.full_name();
        let r = format!("{api}/repos/{full}");
        let owner_is_org = self.orgs.contains_key(&repo.owner.to_lowercase());
        json!({
            "id": repo.id,
            "node_id": util::node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": full,
            "owner": self.simple_user_json(&repo.owner, repo.owner_id, owner_is_org, ctx),
            "private": repo.private,
            "html_url": format!("{web}/{full}"),
            "description": null,
            "fork": false,
            "url": r,
            "archive_url": format!("{r}/{{archive_format}}{{/ref}}"),
            "assignees_url": format!("{r}/assignees{{/user}}"),
            "blobs_url": format!("{r}/git/blobs{{/sha}}"),
            "branches_url": format!("{r}/branches{{/branch}}"),
            "collaborators_url": format!("{r}/collaborators{{/collaborator}}"),
            "comments_url": format!("{r}/comments{{/number}}"),
            "commits_url": format!("{r}/commits{{/sha}}"),
            "compare_url": format!("{r}/compare/{{base}}...{{head}}"),
            "contents_url": format!("{r}/contents/{{+path}}"),
            "contributors_url": format!("{r}/contributors"),
            "deployments_url": format!("{r}/deployments"),
            "downloads_url": format!("{r}/downloads"),
            "events_url": format!("{r}/events"),
            "forks_url": format!("{r}/forks"),
            "git_commits_url": format!("{r}/git/commits{{/sha}}"),
            "git_refs_url": format!("{r}/git/refs{{/sha}}"),
            "git_tags_url": format!("{r}/git/tags{{/sha}}"),
            "git_url": format!("git://127.0.0.1/{full}.git"),
            "issue_comment_url": format!("{r}/issues/comments{{/number}}"),
            "issue_events_url": format!("{r}/issues/events{{/number}}"),
            "issues_url": format!("{r}/issues{{/number}}"),
            "keys_url": format!("{r}/keys{{/key_id}}"),
            "labels_url": format!("{r}/labels{{/name}}"),
            "languages_url": format!("{r}/languages"),
            "merges_url": format!("{r}/merges"),
            "milestones_url": format!("{r}/milestones{{/number}}"),
            "notifications_url": format!("{r}/notifications{{?since,all,participating}}"),
            "pulls_url": format!("{r}/pulls{{/number}}"),
            "releases_url": format!("{r}/releases{{/id}}"),
            "ssh_url": format!("git@127.0.0.1:{full}.git"),
            "stargazers_url": format!("{r}/stargazers"),
            "statuses_url": format!("{r}/statuses/{{sha}}"),
            "subscribers_url": format!("{r}/subscribers"),
            "subscription_url": format!("{r}/subscription"),
            "tags_url": format!("{r}/tags"),
            "teams_url": format!("{r}/teams"),
            "trees_url": format!("{r}/git/trees{{/sha}}"),
            "clone_url": format!("{web}/{full}.git"),
            "hooks_url": format!("{r}/hooks"),
            "svn_url": format!("{web}/{full}"),
            "homepage": null,
            "language": null,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "size": 0,
            "default_branch": "main",
            "open_issues_count": 0,
            "is_template": false,
            "topics": [],
            "has_issues": true,
            "has_projects": true,
            "has_wiki": true,
            "has_pages": false,
            "has_downloads": true,
            "has_discussions": false,
            "archived": false,
            "disabled": false,
            "visibility": if repo.private { "private" } else { "public" },
            "pushed_at": "2024-01-01T00:00:00Z",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "allow_forking": false,
            "forks": 0,
            "open_issues": 0,
            "watchers": 0,
        })
    }

    fn simple_user_json(&self, login: &str, id: u64, org: bool, ctx: &Ctx<'_>) -> Value {
        let u = format!("{}/users/{login}", ctx.api_base);
        json!({
            "login": login,
            "id": id,
            "node_id": util::node_id(if org { "Organization" } else { "User" }, id),
            "avatar_url": format!("{}/avatars/{login}", ctx.web_base),
            "gravatar_id": "",
            "url": u,
            "html_url": format!("{}/{login}", ctx.web_base),
            "followers_url": format!("{u}/followers"),
            "following_url": format!("{u}/following{{/other_user}}"),
            "gists_url": format!("{u}/gists{{/gist_id}}"),
            "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{u}/subscriptions"),
            "organizations_url": format!("{u}/orgs"),
            "repos_url": format!("{u}/repos"),
            "events_url": format!("{u}/events{{/privacy}}"),
            "received_events_url": format!("{u}/received_events"),
            "type": if org { "Organization" } else { "User" },
            "site_admin": false,
        })
    }

    pub fn organization_simple_json(&self, org: &Account, ctx: &Ctx<'_>) -> Value {
        let o = format!("{}/orgs/{}", ctx.api_base, org.login);
        json!({
            "login": org.login,
            "id": org.id,
            "node_id": util::node_id("Organization", org.id),
            "url": o,
            "repos_url": format!("{o}/repos"),
            "events_url": format!("{o}/events"),
            "hooks_url": format!("{o}/hooks"),
            "issues_url": format!("{o}/issues"),
            "members_url": format!("{o}/members{{/member}}"),
            "public_members_url": format!("{o}/public_members{{/member}}"),
            "avatar_url": format!("{}/avatars/{}", ctx.web_base, org.login),
            "description": null,
        })
    }

    pub fn group_json(&self, key: &ScopeKey, g: &RunnerGroup, ctx: &Ctx<'_>) -> Value {
        let scope = self.scope_of(key);
        let base = format!(
            "{}/{}/actions/runner-groups/{}",
            ctx.api_base,
            scope.path(),
            g.id
        );
        let mut v = json!({
            "id": g.id,
            "name": g.name,
            "visibility": g.visibility,
            "default": g.default,
            "runners_url": format!("{base}/runners"),
            "hosted_runners_url": format!("{base}/hosted-runners"),
            "allows_public_repositories": g.allows_public_repositories,
            "restricted_to_workflows": g.restricted_to_workflows,
            "selected_workflows": g.selected_workflows,
            "workflow_restrictions_read_only": false,
        });
        match key {
            ScopeKey::Org(_) => {
                v["inherited"] = json!(false);
                if g.visibility == Visibility::Selected {
                    v["selected_repositories_url"] = json!(format!("{base}/repositories"));
                }
            }
            _ => {
                if g.visibility == Visibility::Selected {
                    v["selected_organizations_url"] = json!(format!("{base}/organizations"));
                }
            }
        }
        if let Some(n) = &g.network_configuration_id {
            v["network_configuration_id"] = json!(n);
        }
        v
    }
}

fn repo_key(repo: &Repo) -> String {
    format!("{}/{}", repo.owner.to_lowercase(), repo.name.to_lowercase())
}
