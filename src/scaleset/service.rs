//! [`ActionsService`]: the calls of GitHub's Actions service for runner
//! scale sets, for one GitHub connection and one scope. Calls to the tenant
//! carry the admin token (a 401 buys a new one and the call is sent once
//! more); the message queue and job acquisition carry the session's queue
//! token. What a status means for a call (409 on session create, 404 on
//! session refresh, 401 from the queue, absent on delete) is decided here.

use std::fmt;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use super::admin::AdminTokens;
use super::endpoints;
use super::error::{Fault, ScaleSetError};
use super::http::{Answer, HttpSettings, Outgoing, Transport, token_url};
use super::queue::{Message, read_message};
use super::wire::{
    API_VERSION, JitAnswer, JitBody, LabelBody, ListAnswer, NewScaleSet, RunnerGroupAnswer,
    RunnerSetting, ScaleSet, ScaleSetAnswer, ServiceRunner, Session, SessionAnswer, SessionBody,
    WORK_FOLDER, decode,
};
use crate::github::client::validate_api_base;
use crate::github::{GitHubApi, JitConfig, Runner, RunnerStatus, Scope};

const SCALE_SETS: [&str; 3] = ["_apis", "runtime", "runnerscalesets"];
const AGENTS: [&str; 5] = ["_apis", "distributedtask", "pools", "0", "agents"];

/// The Actions service of one (GitHub connection, scope). Cheap to clone:
/// clones share the HTTP client and the cached admin token.
#[derive(Clone)]
pub struct ActionsService {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    admin: AdminTokens,
}

impl fmt::Debug for ActionsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionsService")
            .field("scope", &self.inner.admin.scope)
            .field("html_url", &self.inner.admin.html_url.as_str())
            .finish_non_exhaustive()
    }
}

impl ActionsService {
    /// `github` is the REST client of the scope (it issues the registration
    /// tokens), `api_url` its API base (`https://api.github.com`,
    /// `https://HOST/api/v3`; plain http only to loopback hosts), from which
    /// the scope's html URL is derived. Sends nothing.
    pub fn new(
        github: Arc<dyn GitHubApi>,
        scope: Scope,
        api_url: &str,
        http: HttpSettings,
    ) -> Result<Self, ScaleSetError> {
        let api_base = Url::parse(api_url)
            .map_err(|error| ScaleSetError::InvalidEndpoint(format!("the API URL: {error}")))?;
        validate_api_base(&api_base)
            .map_err(|error| ScaleSetError::InvalidEndpoint(error.to_string()))?;
        let admin = AdminTokens::new(github, scope, &api_base)?;
        let transport = Transport::new(&api_base, http)?;
        Ok(ActionsService {
            inner: Arc::new(Inner { transport, admin }),
        })
    }

    pub fn scope(&self) -> &Scope {
        &self.inner.admin.scope
    }

    /// The scope's web URL the runner registration names.
    pub fn html_url(&self) -> &Url {
        &self.inner.admin.html_url
    }

    /// The id of the runner group `name` (`default` for the default group).
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), runner_group = %name))]
    pub async fn runner_group_id(&self, name: &str) -> Result<Option<u64>, ScaleSetError> {
        let path = ["_apis", "runtime", "runnergroups", ""];
        let groups: Vec<RunnerGroupAnswer> = self
            .list(endpoints::RUNNER_GROUPS, &path, &[("groupName", name)])
            .await?;
        Ok(groups
            .into_iter()
            .find(|group| group.name.eq_ignore_ascii_case(name))
            .map(|group| group.id))
    }

    #[tracing::instrument(skip_all, fields(scope = %self.scope(), runner_group_id = runner_group_id, scale_set = %name))]
    pub async fn find_scale_set(
        &self,
        runner_group_id: u64,
        name: &str,
    ) -> Result<Option<ScaleSet>, ScaleSetError> {
        let group = runner_group_id.to_string();
        let query = [("runnerGroupId", group.as_str()), ("name", name)];
        let sets: Vec<ScaleSetAnswer> = self
            .list(endpoints::FIND_SCALE_SET, &SCALE_SETS, &query)
            .await?;
        Ok(sets
            .into_iter()
            .map(ScaleSet::from)
            .find(|set| set.name.eq_ignore_ascii_case(name)))
    }

    /// `None` when the scale set is gone.
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), scale_set_id = id))]
    pub async fn get_scale_set(&self, id: u64) -> Result<Option<ScaleSet>, ScaleSetError> {
        let id = id.to_string();
        let answer = self
            .tenant_call(
                endpoints::GET_SCALE_SET,
                Method::GET,
                &scale_set(&id, &[]),
                &[],
                None,
            )
            .await?;
        let Some(body) = found(answer)? else {
            return Ok(None);
        };
        let set: Option<ScaleSetAnswer> = decode(endpoints::GET_SCALE_SET, &body)?;
        Ok(set.map(ScaleSet::from))
    }

    /// Creates a scale set with these labels (type `System`); workflows on
    /// github.com target it by its name. Updates are off: runner versions
    /// come with the pod image.
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), scale_set = %name, runner_group_id = runner_group_id))]
    pub async fn create_scale_set(
        &self,
        name: &str,
        runner_group_id: u64,
        labels: &[String],
    ) -> Result<ScaleSet, ScaleSetError> {
        let body = encode(&NewScaleSet {
            name,
            runner_group_id,
            labels: labels
                .iter()
                .map(|label| LabelBody {
                    name: label.clone(),
                    kind: "System".into(),
                })
                .collect(),
            runner_setting: RunnerSetting {
                disable_update: true,
            },
        })?;
        let answer = self
            .tenant_call(
                endpoints::CREATE_SCALE_SET,
                Method::POST,
                &SCALE_SETS,
                &[],
                Some(body),
            )
            .await?;
        let set: ScaleSetAnswer = decode(endpoints::CREATE_SCALE_SET, &answer?.body)?;
        Ok(set.into())
    }

    /// `Ok` when it is gone already.
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), scale_set_id = id))]
    pub async fn delete_scale_set(&self, id: u64) -> Result<(), ScaleSetError> {
        let id = id.to_string();
        let path = scale_set(&id, &[]);
        let answer = self
            .tenant_call(
                endpoints::DELETE_SCALE_SET,
                Method::DELETE,
                &path,
                &[],
                None,
            )
            .await?;
        found(answer).map(drop)
    }

    /// A JIT config for a new runner of the scale set (work folder `_work`).
    /// `Err(RunnerExists)` when a runner of that name is registered.
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), scale_set_id = scale_set_id, runner = %runner_name))]
    pub async fn generate_jit_config(
        &self,
        scale_set_id: u64,
        runner_name: &str,
    ) -> Result<JitConfig, ScaleSetError> {
        let id = scale_set_id.to_string();
        let body = encode(&JitBody {
            name: runner_name,
            work_folder: WORK_FOLDER,
        })?;
        let path = scale_set(&id, &["generatejitconfig"]);
        let answer = self
            .tenant_call(
                endpoints::GENERATE_JITCONFIG,
                Method::POST,
                &path,
                &[],
                Some(body),
            )
            .await?;
        let jit: JitAnswer = decode(endpoints::GENERATE_JITCONFIG, &answer?.body)?;
        Ok(JitConfig {
            runner: Runner {
                id: jit.runner.id,
                name: jit.runner.name,
                os: String::new(),
                status: RunnerStatus::Offline,
                busy: false,
                ephemeral: true,
                runner_group_id: None,
                labels: Vec::new(),
            },
            encoded_jit_config: jit.encoded_jit_config,
        })
    }

    /// Opens the scale set's message session; `owner` names this listener
    /// (a host or pod name). `Err(SessionConflict)` while another is open.
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), scale_set_id = scale_set_id, owner = %owner))]
    pub async fn create_session(
        &self,
        scale_set_id: u64,
        owner: &str,
    ) -> Result<Session, ScaleSetError> {
        let id = scale_set_id.to_string();
        let body = encode(&SessionBody { owner_name: owner })?;
        let path = scale_set(&id, &["sessions"]);
        let answer = self
            .tenant_call(
                endpoints::CREATE_SESSION,
                Method::POST,
                &path,
                &[],
                Some(body),
            )
            .await?;
        match answer {
            Ok(success) => read_session(endpoints::CREATE_SESSION, &success.body, scale_set_id),
            Err(fault) if fault.status == StatusCode::CONFLICT => {
                Err(ScaleSetError::SessionConflict)
            }
            Err(fault) => Err(fault.into()),
        }
    }

    /// The session with a new queue token. `Err(SessionNotFound)` when the
    /// service lost it: create a new one.
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), scale_set_id = session.scale_set_id))]
    pub async fn refresh_session(&self, session: &Session) -> Result<Session, ScaleSetError> {
        let id = session.scale_set_id.to_string();
        let path = scale_set(&id, &["sessions", &session.session_id]);
        let answer = self
            .tenant_call(endpoints::REFRESH_SESSION, Method::PATCH, &path, &[], None)
            .await?;
        match answer {
            Ok(success) => read_session(
                endpoints::REFRESH_SESSION,
                &success.body,
                session.scale_set_id,
            ),
            Err(fault) if fault.status == StatusCode::NOT_FOUND => {
                Err(ScaleSetError::SessionNotFound)
            }
            Err(fault) => Err(fault.into()),
        }
    }

    /// `Ok` when it is gone already.
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), scale_set_id = scale_set_id))]
    pub async fn delete_session(
        &self,
        scale_set_id: u64,
        session_id: &str,
    ) -> Result<(), ScaleSetError> {
        let id = scale_set_id.to_string();
        let path = scale_set(&id, &["sessions", session_id]);
        let answer = self
            .tenant_call(endpoints::DELETE_SESSION, Method::DELETE, &path, &[], None)
            .await?;
        found(answer).map(drop)
    }

    /// One long poll of the session's queue (the service answers within
    /// about 50 s): `Ok(None)` when nothing came. `max_capacity` is how many
    /// runners this listener may still start. `Err(QueueTokenExpired)`:
    /// refresh the session and poll again.
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), scale_set_id = session.scale_set_id, last_message_id = ?last_message_id))]
    pub async fn get_message(
        &self,
        session: &Session,
        last_message_id: Option<u64>,
        max_capacity: u32,
    ) -> Result<Option<Message>, ScaleSetError> {
        let mut url = token_url(&session.message_queue_url, "message queue URL")?;
        if let Some(last) = last_message_id.filter(|&id| id > 0) {
            url.query_pairs_mut()
                .append_pair("lastMessageId", &last.to_string());
        }
        let answer = self
            .queue_call(
                endpoints::GET_MESSAGE,
                Method::GET,
                url,
                session,
                None,
                Some(max_capacity),
            )
            .await?;
        match answer {
            Ok(success) if success.status == StatusCode::OK => {
                read_message(endpoints::GET_MESSAGE, &success.body).map(Some)
            }
            Ok(_) => Ok(None),
            Err(fault) => Err(queue_fault(fault)),
        }
    }

    /// Acks a message, which is otherwise delivered again. `Ok` when it is
    /// gone already.
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), scale_set_id = session.scale_set_id, message_id = message_id))]
    pub async fn delete_message(
        &self,
        session: &Session,
        message_id: u64,
    ) -> Result<(), ScaleSetError> {
        let mut url = token_url(&session.message_queue_url, "message queue URL")?;
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push(&message_id.to_string());
        }
        let answer = self
            .queue_call(
                endpoints::DELETE_MESSAGE,
                Method::DELETE,
                url,
                session,
                None,
                None,
            )
            .await?;
        match answer {
            Err(fault) if fault.status == StatusCode::UNAUTHORIZED => Err(queue_fault(fault)),
            answer => found(answer).map(drop),
        }
    }

    /// Takes the jobs of these runner requests for the scale set (needed on
    /// GHES; github.com assigns without it) and returns the ids it got.
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), scale_set_id = session.scale_set_id, jobs = request_ids.len()))]
    pub async fn acquire_jobs(
        &self,
        session: &Session,
        request_ids: &[i64],
    ) -> Result<Vec<i64>, ScaleSetError> {
        if request_ids.is_empty() {
            return Ok(Vec::new());
        }
        let admin = self.inner.admin.current(&self.inner.transport).await?;
        let id = session.scale_set_id.to_string();
        let url = tenant_url(&admin.tenant, &scale_set(&id, &["acquirejobs"]), &[]);
        let body = encode(&request_ids)?;
        let answer = self
            .queue_call(
                endpoints::ACQUIRE_JOBS,
                Method::POST,
                url,
                session,
                Some(body),
                None,
            )
            .await?;
        let acquired: ListAnswer<i64> =
            decode(endpoints::ACQUIRE_JOBS, &answer.map_err(queue_fault)?.body)?;
        Ok(acquired.value)
    }

    /// The registered runner named `name`, in any scale set of the scope.
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), runner = %name))]
    pub async fn find_runner_by_name(
        &self,
        name: &str,
    ) -> Result<Option<ServiceRunner>, ScaleSetError> {
        let runners: Vec<ServiceRunner> = self
            .list(endpoints::FIND_RUNNER, &AGENTS, &[("agentName", name)])
            .await?;
        Ok(runners.into_iter().find(|runner| runner.name == name))
    }

    /// Removes a runner registration. `Err(Busy)` while it runs a job; `Ok`
    /// when it is gone already.
    #[tracing::instrument(skip_all, fields(scope = %self.scope(), runner_id = runner_id))]
    pub async fn remove_runner(&self, runner_id: u64) -> Result<(), ScaleSetError> {
        let id = runner_id.to_string();
        let mut path = AGENTS.to_vec();
        path.push(&id);
        let answer = self
            .tenant_call(endpoints::REMOVE_RUNNER, Method::DELETE, &path, &[], None)
            .await?;
        found(answer).map(drop)
    }

    /// The `value` of a `{count, value}` list the tenant answers; empty when
    /// what it lists does not exist.
    async fn list<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, ScaleSetError> {
        let answer = self
            .tenant_call(endpoint, Method::GET, path, query, None)
            .await?;
        match found(answer)? {
            Some(body) => Ok(decode::<ListAnswer<T>>(endpoint, &body)?.value),
            None => Ok(Vec::new()),
        }
    }

    /// A call to the tenant with the admin token; a 401 buys a new admin
    /// token and sends the call once more.
    async fn tenant_call(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ScaleSetError> {
        let Inner { transport, admin } = &*self.inner;
        let mut refreshed = false;
        loop {
            let token = admin.current(transport).await?;
            let answer = transport
                .send(Outgoing {
                    endpoint,
                    method: method.clone(),
                    url: tenant_url(&token.tenant, path, query),
                    scheme: "Bearer",
                    token: &token.token,
                    body: body.clone(),
                    poll_capacity: None,
                })
                .await?;
            match answer {
                Err(fault) if fault.status == StatusCode::UNAUTHORIZED && !refreshed => {
                    refreshed = true;
                    admin.forget(&token.token).await;
                }
                answer => return Ok(answer),
            }
        }
    }

    /// A call with the session's queue token.
    async fn queue_call(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        session: &Session,
        body: Option<Vec<u8>>,
        poll_capacity: Option<u32>,
    ) -> Result<Answer, ScaleSetError> {
        self.inner
            .transport
            .send(Outgoing {
                endpoint,
                method,
                url,
                scheme: "Bearer",
                token: &session.message_queue_token,
                body,
                poll_capacity,
            })
            .await
    }
}

/// `{tenant}{path}?{query}&api-version=6.0-preview`.
fn tenant_url(tenant: &Url, path: &[&str], query: &[(&str, &str)]) -> Url {
    let mut url = tenant.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(path);
    }
    let mut pairs = url.query_pairs_mut();
    pairs
        .extend_pairs(query)
        .append_pair(API_VERSION.0, API_VERSION.1);
    drop(pairs);
    url
}

/// `_apis/runtime/runnerscalesets/{id}/{rest…}`.
fn scale_set<'a>(id: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut path = SCALE_SETS.to_vec();
    path.push(id);
    path.extend_from_slice(rest);
    path
}

/// The body of a 2xx, `None` when what the call names does not exist.
fn found(answer: Answer) -> Result<Option<Vec<u8>>, ScaleSetError> {
    match answer {
        Ok(success) => Ok(Some(success.body)),
        Err(fault) => match ScaleSetError::from(fault) {
            ScaleSetError::NotFound => Ok(None),
            error => Err(error),
        },
    }
}

/// A refusal on the queue token: a 401 means it expired.
fn queue_fault(fault: Fault) -> ScaleSetError {
    if fault.status == StatusCode::UNAUTHORIZED {
        ScaleSetError::QueueTokenExpired
    } else {
        fault.into()
    }
}

fn read_session(
    endpoint: &'static str,
    body: &[u8],
    scale_set_id: u64,
) -> Result<Session, ScaleSetError> {
    let answer: SessionAnswer = decode(endpoint, body)?;
    token_url(&answer.message_queue_url, "message queue URL")?;
    Ok(answer.into_session(scale_set_id))
}

fn encode(body: &impl serde::Serialize) -> Result<Vec<u8>, ScaleSetError> {
    serde_json::to_vec(body)
        .map_err(|_| ScaleSetError::Protocol("a request body cannot be encoded as JSON".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_urls_keep_the_tenant_path_and_pin_the_api_version() {
        let tenant = Url::parse("https://pipelines.example/abc123/").unwrap();
        let url = tenant_url(&tenant, &scale_set("7", &["sessions", "s-1"]), &[]);
        assert_eq!(
            url.as_str(),
            "https://pipelines.example/abc123/_apis/runtime/runnerscalesets/7/sessions/s-1?api-version=6.0-preview"
        );
        let groups = tenant_url(
            &Url::parse("http://127.0.0.1:1").unwrap(),
            &["_apis", "runtime", "runnergroups", ""],
            &[("groupName", "my group")],
        );
        assert_eq!(
            groups.as_str(),
            "http://127.0.0.1:1/_apis/runtime/runnergroups/?groupName=my+group&api-version=6.0-preview"
        );
    }
}
