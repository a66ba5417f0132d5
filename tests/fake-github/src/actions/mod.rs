//! The Actions service side of runner scale sets, as
//! `shared/reference/scaleset-protocol.md` describes it: the admin-token
//! exchange (`POST …/actions/runner-registration`), the service calls under a
//! tenant URL (`/_services/pipelines/{tenant}/_apis/…`), sessions and their
//! message queue, and the job life cycle a scale set sees.
//!
//! Its state lives in the model (`Model::actions`) so that jobs, runners and
//! scale sets change together under the one state lock:
//! * `tokens` mints and reads the admin and queue JWTs and remembers the
//!   registration tokens the REST API issued;
//! * `scale_sets` holds scale-set CRUD, runner groups, JIT and agents;
//! * `jobs` routes jobs to scale sets, starts them on the scale set's
//!   runners and derives the statistics;
//! * `queue` holds sessions, job messages, envelopes and acks;
//! * `routes` names the endpoints, `http` serves them.

mod control;
mod dispatch;
mod handle;
mod http;
mod jobs;
mod queue;
mod routes;
mod scale_sets;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::model::Scope;

pub(crate) use control::router as control_router;
pub(crate) use http::serve;
pub(crate) use routes::route;

/// A runner scale set as the fake holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleSet {
    pub id: u64,
    pub name: String,
    /// The scope whose admin token created it (and may see it).
    pub scope: Scope,
    pub runner_group_id: u64,
    pub runner_group_name: String,
    /// Label names, as given at creation (a PATCH does not change them).
    pub labels: Vec<String>,
    pub disable_update: bool,
    /// RFC 3339.
    pub created_on: String,
}

/// An open message session of a scale set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleSetSession {
    pub scale_set_id: u64,
    /// A UUID.
    pub session_id: String,
    /// `ownerName` the client sent (its host name).
    pub owner_name: String,
    /// The last `X-ScaleSetMaxCapacity` the client polled with.
    pub max_capacity: Option<u64>,
}

/// A scale set's statistics, derived from the fake's jobs and runners.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    /// Offered (`JobAvailable`, acquire mode) and not acquired yet.
    pub total_available_jobs: u64,
    /// Assigned to the scale set and waiting for one of its runners.
    pub total_acquired_jobs: u64,
    /// Assigned to the scale set, running ones included.
    pub total_assigned_jobs: u64,
    pub total_running_jobs: u64,
    pub total_registered_runners: u64,
    pub total_busy_runners: u64,
    /// Online and not busy.
    pub total_idle_runners: u64,
}

/// Which Actions service answers start with a UTF-8 byte-order mark (as the
/// real service's sometimes do; clients must strip it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceBom {
    Never,
    /// Every answer with a body (the default: the strictest).
    #[default]
    Always,
    /// Each answer with chance one half.
    Random,
}

/// Timings and modes of the Actions service (see the README).
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    /// GHES style: jobs are offered (`JobAvailable`) and must be acquired.
    pub acquire_mode: bool,
    /// How long a message poll waits before answering 202.
    pub long_poll: Duration,
    /// A session nobody polled for this long is gone.
    pub session_timeout: Duration,
    pub queue_token_ttl: Duration,
    pub admin_token_ttl: Duration,
    /// An assigned job no runner started within this is re-offered
    /// (`JobCompleted` canceled, then `JobAssigned`), up to 3 times, the
    /// n-th time after n × this.
    pub reassign_after: Option<Duration>,
    pub bom: ServiceBom,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            acquire_mode: false,
            long_poll: Duration::from_secs(50),
            session_timeout: Duration::from_secs(120),
            queue_token_ttl: Duration::from_secs(50 * 60),
            admin_token_ttl: Duration::from_secs(3600),
            reassign_after: None,
            bom: ServiceBom::Always,
        }
    }
}

/// Sessions expire and unstarted jobs are re-offered on time even when
/// nobody calls the service.
pub(crate) fn spawn_clock(
    shared: std::sync::Arc<crate::server::Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            shared.lock().model.actions_tick(std::time::Instant::now());
        }
    })
}

/// How many times an unstarted job is re-offered.
pub(crate) const MAX_REASSIGNMENTS: u32 = 3;
/// Job messages in one envelope at most.
pub(crate) const MAX_JOB_MESSAGES: usize = 50;

/// The service's state (inside the model).
pub(crate) struct Service {
    pub settings: ServiceSettings,
    pub tokens: tokens::Tokens,
    pub scale_sets: BTreeMap<u64, ScaleSet>,
    /// Scale set id → its open session.
    pub sessions: HashMap<u64, queue::Session>,
    /// Job id → how a scale set sees the job.
    pub jobs: BTreeMap<u64, jobs::ScaleSetJob>,
    /// `http://127.0.0.1:PORT`: tenant URLs are under it.
    pub base_url: String,
    next_scale_set_id: u64,
    next_request_id: u64,
    next_message_id: u64,
}

impl Service {
    pub fn new(settings: ServiceSettings) -> Self {
        Service {
            settings,
            tokens: tokens::Tokens::new(),
            scale_sets: BTreeMap::new(),
            sessions: HashMap::new(),
            jobs: BTreeMap::new(),
            base_url: String::new(),
            next_scale_set_id: 1,
            next_request_id: 1_000_001,
            next_message_id: 1,
        }
    }

    /// Remembers a registration token the REST API issued for a scope.
    pub fn issue_registration_token(
        &mut self,
        scope: &Scope,
        now: SystemTime,
    ) -> (String, SystemTime) {
        self.tokens.issue_registration(scope, now)
    }

    pub fn sessions(&self) -> Vec<ScaleSetSession> {
        let mut v: Vec<ScaleSetSession> = self.sessions.values().map(|s| s.public()).collect();
        v.sort_by_key(|s| s.scale_set_id);
        v
    }

    /// The service lost every session (clients must create them again).
    pub fn drop_sessions(&mut self) {
        self.sessions.clear();
    }

    /// Every queue token issued so far stops working.
    pub fn expire_queue_tokens(&mut self) {
        self.tokens.expire_queue_tokens();
    }

    /// Every admin token issued so far stops working.
    pub fn expire_admin_tokens(&mut self) {
        self.tokens.expire_admin_tokens();
    }
}

/// An error answer of the Actions service:
/// `{"typeName": "…Exception", "message": "…"}` (and the fields the real
/// service adds around them).
#[derive(Clone, Debug)]
pub(crate) struct ServiceError {
    pub status: u16,
    pub type_name: &'static str,
    pub message: String,
    /// A removal of a busy runner (counted in `busy_delete_attempts`).
    pub busy: bool,
}

impl ServiceError {
    pub fn new(status: u16, type_name: &'static str, message: impl Into<String>) -> Self {
        ServiceError {
            status,
            type_name,
            message: message.into(),
            busy: false,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            401,
            "VssUnauthorizedException",
            "TF400813: The user is not authorized to access this resource.",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "ArgumentException", message)
    }

    pub fn scale_set_not_found(id: u64) -> Self {
        Self::new(
            404,
            "RunnerScaleSetNotFoundException",
            format!("Runner scale set {id} not found."),
        )
    }

    /// `typeName` is assembly-qualified, as the real service sends it:
    /// clients match it by containment (`…AgentExistsException, …`).
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "$id": "1",
            "innerException": null,
            "message": self.message,
            "typeName": format!(
                "GitHub.DistributedTask.WebApi.{}, GitHub.DistributedTask.WebApi",
                self.type_name
            ),
            "typeKey": self.type_name.trim_end_matches("Exception"),
            "errorCode": 0,
            "eventId": 3000,
        })
    }
}
