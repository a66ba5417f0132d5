//! The API side: every request goes through authentication, rate limits,
//! injected faults and accounting, then to the model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};

use crate::accounting::{Accounting, Record};
use crate::api_error::ApiError;
use crate::auth::{self, Auth, Credential};
use crate::body;
use crate::deliveries;
use crate::faults::{self, Faults, Limits};
use crate::model::{Ctx, Model, RunnerJson, ScopeKey};
use crate::routes::{self, Kind, Op, Route};
use crate::util;
use crate::webhook::Webhooks;

pub(crate) struct State {
    pub model: Model,
    pub auth: Auth,
    pub limits: Limits,
    pub faults: Faults,
    pub acct: Accounting,
    /// The webhook and its delivery log.
    pub hooks: Arc<Webhooks>,
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub unavailable: AtomicBool,
    /// Set by `shutdown`: waiting long polls answer at once.
    pub stopping: AtomicBool,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    pub hooks: Arc<Webhooks>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock must not wedge every later test step.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the locked part of a request decided.
struct Outcome {
    status: u16,
    body: Option<Bytes>,
    headers: Vec<(&'static str, String)>,
    etag_value: Option<String>,
    credential: String,
    /// Rate-limit budget: (key, per-credential limit) when the credential has one.
    budget: Option<(String, Option<u32>)>,
    /// One request was charged to the budget.
    charged: bool,
    oauth_scopes: Option<String>,
    etag: bool,
    injected: bool,
}

impl Outcome {
    fn error(e: ApiError) -> Self {
        let body = serde_json::to_vec(&e.body()).expect("json");
        Outcome {
            status: e.status,
            body: Some(Bytes::from(body)),
            headers: e.headers,
            etag_value: None,
            credential: "anonymous".into(),
            budget: None,
            charged: false,
            oauth_scopes: None,
            etag: false,
            injected: false,
        }
    }
}

struct Reply {
    status: u16,
    body: Option<Bytes>,
    headers: Vec<(&'static str, String)>,
    /// Precomputed ETag (cached list pages).
    etag: Option<String>,
}

impl Reply {
    fn json<T: Serialize>(status: u16, v: &T) -> Self {
        Reply {
            status,
            body: Some(Bytes::from(serde_json::to_vec(v).expect("json"))),
            headers: vec![],
            etag: None,
        }
    }
    fn empty(status: u16) -> Self {
        Reply {
            status,
            body: None,
            headers: vec![],
            etag: None,
        }
    }
}

/// Query string pairs, decoded.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(q: Option<&str>) -> Self {
        Query(
            q.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (
                        routes::percent_decode(k, true),
                        routes::percent_decode(v, true),
                    )
                })
                .collect(),
        )
    }
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    /// GitHub's `page` and `per_page` (default 30, at most 100).
    fn paging(&self) -> (usize, usize) {
        let page = self
            .get("page")
            .and_then(|p| p.parse::<usize>().ok())
            .filter(|p| *p > 0)
            .unwrap_or(1);
        let per_page = self
            .get("per_page")
            .and_then(|p| p.parse::<usize>().ok())
            .filter(|p| *p > 0)
            .unwrap_or(30)
            .min(100);
        (page, per_page)
    }
}

fn encode_query_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A runner-list page with its ETag and `Link` header.
fn list_reply(body: Bytes, etag: String, link: Option<String>) -> Reply {
    Reply {
        status: 200,
        body: Some(body),
        headers: link.map(|l| ("link", l)).into_iter().collect(),
        etag: Some(etag),
    }
}

/// The `Link` header of a page, as GitHub builds it.
fn link_header(
    api_base: &str,
    path: &str,
    q: &Query,
    page: usize,
    per_page: usize,
    total: usize,
) -> Option<String> {
    let last = total.div_ceil(per_page).max(1);
    if last <= 1 && page <= 1 {
        return None;
    }
    let url = |p: usize| {
        let mut pairs: Vec<String> =
            q.0.iter()
                .filter(|(k, _)| k != "page")
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        encode_query_component(k),
                        encode_query_component(v)
                    )
                })
                .collect();
        pairs.push(format!("page={p}"));
        format!("<{api_base}{path}?{}>", pairs.join("&"))
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", url((page - 1).min(last))));
    }
    if page < last {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
        links.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", url(1)));
    }
    Some(links.join(", "))
}

fn page_of<T>(items: &[T], page: usize, per_page: usize) -> &[T] {
    let start = (page - 1).saturating_mul(per_page).min(items.len());
    let end = start.saturating_add(per_page).min(items.len());
    &items[start..end]
}

fn scope_key(r: &Route) -> ScopeKey {
    match r.kind {
        Kind::Ent => ScopeKey::Ent(r.owner.to_lowercase()),
        Kind::Org => ScopeKey::Org(r.owner.to_lowercase()),
        Kind::Repo => ScopeKey::Repo(format!(
            "{}/{}",
            r.owner.to_lowercase(),
            r.repo.to_lowercase()
        )),
    }
}

const RUNNER_APPS: &[(&str, &str, &str)] = &[
    ("osx", "x64", "tar.gz"),
    ("osx", "arm64", "tar.gz"),
    ("linux", "x64", "tar.gz"),
    ("linux", "arm", "tar.gz"),
    ("linux", "arm64", "tar.gz"),
    ("win", "x64", "zip"),
    ("win", "arm64", "zip"),
];
/// The runner applications of release `version`, as GitHub lists them.
fn downloads(version: &str) -> Value {
    Value::Array(
        RUNNER_APPS
            .iter()
            .map(|(os, arch, ext)| {
                let file = format!("actions-runner-{os}-{arch}-{version}.{ext}");
                json!({
                    "os": os,
                    "architecture": arch,
                    "download_url": format!("https://github.com/actions/runner/releases/download/v{version}/{file}"),
                    "filename": file,
                    "sha256_checksum": util::sha256_hex(file.as_bytes()),
                })
            })
            .collect(),
    )
}

impl State {
    /// Checks that `cred` may call `r`; returns headers to add.
    fn authorize(
        &self,
        cred: &Credential,
        r: &Route,
    ) -> Result<Vec<(&'static str, String)>, ApiError> {
        if r.op == Op::RateLimit {
            return Ok(vec![]);
        }
        if let Some(allowed) = deliveries::authorize(cred, r) {
            return allowed.map(|()| vec![]);
        }
        if r.op == Op::CreateInstallationToken {
            return match cred {
                Credential::AppJwt { .. } => Ok(vec![]),
                Credential::Anonymous => Err(ApiError::new(401, "Requires authentication")),
                _ => Err(ApiError::new(401, "A JSON web token could not be decoded")),
            };
        }
        if r.op == Op::GetRepo {
            return self.authorize_repository_read(cred, r);
        }
        if r.op == Op::GetOrg {
            return match cred {
                Credential::Anonymous => Err(ApiError::new(401, "Requires authentication")),
                Credential::AppJwt { .. } => {
                    Err(ApiError::new(403, "Resource not accessible by integration"))
                }
                _ => Ok(vec![]),
            };
        }
        let write = !r.op.is_read();
        match cred {
            Credential::Anonymous => Err(ApiError::new(401, "Requires authentication")),
            Credential::AppJwt { .. } => {
                Err(ApiError::new(403, "Resource not accessible by integration"))
            }
            Credential::Token { scopes, .. } => {
                let (needed, msg) = match r.kind {
                    Kind::Ent => (
                        "manage_runners:enterprise",
                        "Must have admin rights to the enterprise and the manage_runners:enterprise scope.",
                    ),
                    Kind::Org => ("admin:org", "Must have admin rights to Organization."),
                    Kind::Repo => ("repo", "Must have admin rights to Repository."),
                };
                let accepted = vec![("x-accepted-oauth-scopes", needed.to_string())];
                if auth::has_scope(scopes, needed) {
                    Ok(accepted)
                } else {
                    let mut e = ApiError::new(403, msg);
                    e.headers = accepted;
                    Err(e)
                }
            }
            Credential::Installation(t) => {
                let denied = || ApiError::new(403, "Resource not accessible by integration");
                let owner_ok = t
                    .owner
                    .as_deref()
                    .is_none_or(|o| o.eq_ignore_ascii_case(&r.owner));
                let perm = |name: &str| -> bool {
                    match t.permissions.get(name).map(String::as_str) {
                        Some("write") => true,
                        Some("read") => !write,
                        _ => false,
                    }
                };
                match r.kind {
                    Kind::Ent => Err(denied()),
                    Kind::Org if owner_ok && perm("organization_self_hosted_runners") => Ok(vec![]),
                    Kind::Repo
                        if owner_ok
                            && perm("administration")
                            && t.repositories.as_ref().is_none_or(|repos| {
                                repos.iter().any(|n| n.eq_ignore_ascii_case(&r.repo))
                            }) =>
                    {
                        Ok(vec![])
                    }
                    _ => Err(denied()),
                }
            }
        }
    }

    /// Reading a repository needs no admin right, only sight of it: all the
    /// fake's repositories are private, so a classic token needs `repo` and an
    /// installation must include the repository. GitHub answers 404, not 403,
    /// to anyone who may not see a private repository.
    fn authorize_repository_read(
        &self,
        cred: &Credential,
        r: &Route,
    ) -> Result<Vec<(&'static str, String)>, ApiError> {
        let visible = match cred {
            Credential::Anonymous => {
                return Err(ApiError::new(401, "Requires authentication"));
            }
            Credential::AppJwt { .. } => {
                return Err(ApiError::new(403, "Resource not accessible by integration"));
            }
            Credential::Token { scopes, .. } => auth::has_scope(scopes, "repo"),
            Credential::Installation(t) => {
                t.owner
                    .as_deref()
                    .is_none_or(|o| o.eq_ignore_ascii_case(&r.owner))
                    && t.repositories
                        .as_ref()
                        .is_none_or(|repos| repos.iter().any(|n| n.eq_ignore_ascii_case(&r.repo)))
            }
        };
        if visible {
            Ok(vec![])
        } else {
            Err(ApiError::not_found())
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn process(
        &mut self,
        unavailable: bool,
        route: Option<&Route>,
        method: &'static str,
        template: &'static str,
        path: &str,
        query: &Query,
        headers: &HeaderMap,
        body: &[u8],
        ctx: &Ctx<'_>,
        ghes: bool,
    ) -> Outcome {
        let now = SystemTime::now();
        let authz = headers.get("authorization").and_then(|h| h.to_str().ok());
        let identified = self.auth.identify(authz, now);
        if unavailable {
            // GitHub is down: nothing else is looked at.
            self.acct.faults_injected += 1;
            let mut o = Outcome::error(ApiError::new(503, "Service Unavailable"));
            o.credential = identified
                .map(|c| c.key())
                .unwrap_or_else(|_| "invalid".into());
            o.injected = true;
            return o;
        }
        let cred = match identified {
            Ok(c) => c,
            Err(e) => {
                let mut o = Outcome::error(e);
                o.credential = "invalid".into();
                return o;
            }
        };
        let cred_key = cred.key();
        let limit_override = match &cred {
            Credential::Token { rate_limit, .. } => *rate_limit,
            _ => None,
        };
        let oauth_scopes = match &cred {
            Credential::Token { scopes, .. } => Some(scopes.join(", ")),
            _ => None,
        };
        let budget = match cred {
            Credential::Anonymous => None,
            _ => Some((cred_key.clone(), limit_override)),
        };
        let mut out = Outcome {
            status: 200,
            body: None,
            headers: vec![],
            etag_value: None,
            credential: cred_key.clone(),
            budget: budget.clone(),
            charged: false,
            oauth_scopes,
            etag: false,
            injected: false,
        };
        let finish_err = |mut out: Outcome, e: ApiError| -> Outcome {
            let o = Outcome::error(e);
            out.status = o.status;
            out.body = o.body;
            out.headers.extend(o.headers);
            out
        };
        // Primary rate limit (the rate_limit endpoint itself is free).
        let free = route.is_some_and(|r| r.op == Op::RateLimit);
        if let Some((key, limit)) = &budget
            && !free
        {
            let status = self.limits.status;
            let b = self.limits.budget(key, *limit, now);
            if b.used >= b.limit {
                self.acct.primary_rate_limited += 1;
                out.injected = true;
                let secs = util::unix_secs(b.reset);
                let e = ApiError::new(
                    status,
                    format!(
                        "API rate limit exceeded for {key}. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)"
                    ),
                );
                let mut o = finish_err(out, e);
                o.headers.push(("x-ratelimit-reset", secs.to_string()));
                return o;
            }
            b.used += 1;
            out.charged = true;
        }
        if let Some((status, retry)) =
            self.faults
                .secondary_hit(method, template, &cred_key, Instant::now())
        {
            self.acct.secondary_rate_limited += 1;
            out.injected = true;
            let e = ApiError::new(
                status,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
            )
            .with_header("retry-after", retry.to_string());
            return finish_err(out, e);
        }
        let Some(route) = route else {
            return finish_err(out, ApiError::not_found());
        };
        if let Some(status) = self.faults.injected(method, template, &cred_key, false) {
            self.acct.faults_injected += 1;
            out.injected = true;
            if status == faults::DROP_CONNECTION {
                out.status = faults::DROP_CONNECTION;
                return out;
            }
            return finish_err(out, injected_error(status));
        }
        if let Some(v) = headers
            .get("x-github-api-version")
            .and_then(|v| v.to_str().ok())
        {
            let supported: &[&str] = if ghes {
                &["2022-11-28"]
            } else {
                &["2022-11-28", "2026-03-10"]
            };
            if !supported.contains(&v) {
                return finish_err(
                    out,
                    ApiError::new(400, format!("API version '{v}' is not supported.")),
                );
            }
        }
        match self.authorize(&cred, route) {
            Ok(h) => out.headers.extend(h),
            Err(e) => return finish_err(out, e),
        }
        match self.dispatch(route, &cred, path, query, body, ctx, now) {
            Ok(reply)
                if reply.status < 400
                    && let Some(status) =
                        self.faults.injected(method, template, &cred_key, true) =>
            {
                // Applied, but the answer is lost on its way back.
                self.acct.faults_injected += 1;
                self.acct.answers_lost += 1;
                out.injected = true;
                if status == faults::DROP_CONNECTION {
                    out.status = faults::DROP_CONNECTION;
                    return out;
                }
                finish_err(out, injected_error(status))
            }
            Ok(reply) => {
                out.status = reply.status;
                out.body = reply.body;
                out.etag_value = reply.etag;
                out.headers.extend(reply.headers);
                out.etag = method == "GET" && reply.status == 200 && route.op != Op::RateLimit;
                if route.op == Op::RateLimit {
                    out.charged = false;
                }
                out
            }
            Err(e) => {
                if e.busy_delete {
                    self.acct.busy_delete_attempts += 1;
                }
                finish_err(out, e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        r: &Route,
        cred: &Credential,
        path: &str,
        q: &Query,
        raw_body: &[u8],
        ctx: &Ctx<'_>,
        now: SystemTime,
    ) -> Result<Reply, ApiError> {
        if r.op == Op::RateLimit {
            return Ok(self.rate_limit_reply(cred, now));
        }
        if r.op == Op::CreateInstallationToken {
            let Credential::AppJwt { app_id } = cred else {
                return Err(ApiError::new(401, "A JSON web token could not be decoded"));
            };
            let b = body::object(raw_body, true).map_err(|e| {
                if e.status == 422 {
                    ApiError::validation(e.message)
                } else {
                    e
                }
            })?;
            let ttl = self.model.settings.app_token_ttl;
            let (token, t) = self.auth.create_installation_token(
                *app_id,
                r.id.expect("installation id"),
                &b,
                ttl,
                now,
            )?;
            return Ok(Reply::json(
                201,
                &json!({
                    "token": token,
                    "expires_at": util::rfc3339(t.expires),
                    "permissions": t.permissions,
                    "repository_selection": if t.repositories.is_some() { "selected" } else { "all" },
                }),
            ));
        }
        if let Some(answer) = deliveries::dispatch(self, r, &q.0, ctx.api_base, path) {
            let (status, body, headers) = answer?;
            let mut reply = match body {
                Some(body) => Reply::json(status, &body),
                None => Reply::empty(status),
            };
            reply.headers = headers;
            return Ok(reply);
        }
        let key = scope_key(r);
        let m = &mut self.model;
        if !m.scope_exists(&key) {
            return Err(ApiError::not_found());
        }
        let runner_id = || r.id.expect("runner id");
        let labels_reply = |labels: Vec<crate::model::Label>| {
            Reply::json(200, &json!({"total_count": labels.len(), "labels": labels}))
        };
        let reply = match r.op {
            Op::ListRunners => {
                let (page, per_page) = q.paging();
                let name = q.get("name");
                let cache_key = (key.clone(), name.map(str::to_string), page, per_page);
                let hiding = !m.hidden_from_lists.is_empty();
                let (total, body, etag) = match m.list_cache.get(&cache_key) {
                    Some(c) if c.version == m.version && !hiding => {
                        (c.total, c.body.clone(), c.etag.clone())
                    }
                    _ => {
                        let mut all = m.list_runners(&key, name)?;
                        // Runners shifted off the page while it was read.
                        let hidden: Vec<u64> = all
                            .iter()
                            .map(|r| r.id)
                            .filter(|id| m.hidden_from_lists.contains_key(id))
                            .collect();
                        all.retain(|r| !hidden.contains(&r.id));
                        let items: Vec<RunnerJson<'_>> = page_of(&all, page, per_page)
                            .iter()
                            .map(|r| RunnerJson::from(*r))
                            .collect();
                        #[derive(Serialize)]
                        struct Page<'a> {
                            total_count: usize,
                            runners: Vec<RunnerJson<'a>>,
                        }
                        let total = all.len();
                        let body = Bytes::from(
                            serde_json::to_vec(&Page {
                                total_count: total,
                                runners: items,
                            })
                            .expect("json"),
                        );
                        let etag = etag_of(&body);
                        if !hidden.is_empty() {
                            for id in hidden {
                                if let Some(left) = m.hidden_from_lists.get_mut(&id) {
                                    *left = left.saturating_sub(1);
                                }
                            }
                            m.hidden_from_lists.retain(|_, left| *left > 0);
                            // Not cached: the next list shows them again.
                            let link = link_header(ctx.api_base, path, q, page, per_page, total);
                            return Ok(list_reply(body, etag, link));
                        }
                        if m.list_cache.len() > 4096 {
                            m.list_cache.clear();
                        }
                        let version = m.version;
                        m.list_cache.insert(
                            cache_key,
                            crate::model::CachedPage {
                                version,
                                total,
                                body: body.clone(),
                                etag: etag.clone(),
                            },
                        );
                        (total, body, etag)
                    }
                };
                let link = link_header(ctx.api_base, path, q, page, per_page, total);
                list_reply(body, etag, link)
            }
            Op::Downloads => Reply::json(200, &downloads(&m.settings.runner_version)),
            Op::GenerateJit => {
                let b = body::object(raw_body, false)?;
                let name = body::req_str(&b, "name")?;
                let group = body::req_u64(&b, "runner_group_id")?;
                let labels = body::req_str_array(&b, "labels")?;
                let work_folder =
                    body::opt_str(&b, "work_folder")?.unwrap_or_else(|| "_work".to_string());
                let (runner, encoded) =
                    m.generate_jit(&key, ctx, &name, group, &labels, &work_folder)?;
                Reply::json(
                    201,
                    &json!({"runner": RunnerJson::from(&runner), "encoded_jit_config": encoded}),
                )
            }
            Op::RegistrationToken => {
                // Remembered with its scope: it buys an Actions admin token.
                let scope = m.scope_of(&key);
                let (token, expires) = m.actions.issue_registration_token(&scope, now);
                Reply::json(
                    201,
                    &json!({"token": token, "expires_at": util::rfc3339(expires)}),
                )
            }
            Op::RemoveToken => Reply::json(
                201,
                &json!({
                    "token": util::random_string(29, util::UPPER_ALNUM),
                    "expires_at": util::rfc3339(now + Duration::from_secs(3600)),
                }),
            ),
            Op::GetRunner => Reply::json(200, &RunnerJson::from(m.runner(&key, runner_id())?)),
            Op::DeleteRunner => {
                m.delete_runner(&key, runner_id())?;
                Reply::empty(204)
            }
            Op::ListLabels => labels_reply(m.labels_of(&key, runner_id())?),
            Op::AddLabels | Op::SetLabels => {
                m.runner(&key, runner_id())?;
                let b = body::object(raw_body, false)?;
                let labels = body::req_str_array(&b, "labels")?;
                labels_reply(m.change_labels(&key, runner_id(), &labels, r.op == Op::SetLabels)?)
            }
            Op::RemoveAllLabels => labels_reply(m.remove_all_custom_labels(&key, runner_id())?),
            Op::RemoveLabel => {
                labels_reply(m.remove_label(&key, runner_id(), r.name.as_deref().unwrap_or(""))?)
            }
            Op::ListGroups => {
                let (page, per_page) = q.paging();
                let filter = match key {
                    ScopeKey::Org(_) => q.get("visible_to_repository"),
                    _ => q.get("visible_to_organization"),
                };
                let mut groups = Vec::new();
                for g in m.groups(&key)? {
                    if let Some(target) = filter
                        && !m.group_visible_to(&key, g, target)?
                    {
                        continue;
                    }
                    groups.push((key.clone(), g));
                }
                groups.extend(m.inherited_groups(&key));
                let items: Vec<Value> = page_of(&groups, page, per_page)
                    .iter()
                    .map(|(from, g)| {
                        let mut v = m.group_json(from, g, ctx);
                        v["inherited"] = json!(from != &key);
                        v
                    })
                    .collect();
                let mut reply = Reply::json(
                    200,
                    &json!({"total_count": groups.len(), "runner_groups": items}),
                );
                if let Some(l) = link_header(ctx.api_base, path, q, page, per_page, groups.len()) {
                    reply.headers.push(("link", l));
                }
                reply
            }
            Op::CreateGroup => {
                let b = body::object(raw_body, false).map_err(to_validation)?;
                let name = body::req_str(&b, "name").map_err(to_validation)?;
                let ids_field = if r.kind == Kind::Org {
                    "selected_repository_ids"
                } else {
                    "selected_organization_ids"
                };
                let ids = body::opt_u64_array(&b, ids_field)
                    .map_err(to_validation)?
                    .unwrap_or_default();
                let runners = body::opt_u64_array(&b, "runners")
                    .map_err(to_validation)?
                    .unwrap_or_default();
                let g = m.create_group(
                    &key,
                    &name,
                    body::opt_str(&b, "visibility")
                        .map_err(to_validation)?
                        .as_deref(),
                    &ids,
                    &runners,
                    body::opt_bool(&b, "allows_public_repositories")
                        .map_err(to_validation)?
                        .unwrap_or(false),
                    body::opt_bool(&b, "restricted_to_workflows")
                        .map_err(to_validation)?
                        .unwrap_or(false),
                    body::opt_str_array(&b, "selected_workflows")
                        .map_err(to_validation)?
                        .unwrap_or_default(),
                    body::opt_str(&b, "network_configuration_id").map_err(to_validation)?,
                )?;
                Reply::json(201, &m.group_json(&key, &g, ctx))
            }
            Op::GetGroup => {
                let g = m.group(&key, r.id.expect("group id"))?;
                Reply::json(200, &m.group_json(&key, g, ctx))
            }
            Op::UpdateGroup => {
                m.group(&key, r.id.expect("group id"))?;
                let b = body::object(raw_body, r.kind == Kind::Ent).map_err(to_validation)?;
                if r.kind == Kind::Org {
                    body::req_str(&b, "name").map_err(to_validation)?;
                }
                let g = m
                    .update_group(&key, r.id.expect("group id"), &b)
                    .map_err(to_validation)?;
                Reply::json(200, &m.group_json(&key, &g, ctx))
            }
            Op::DeleteGroup => {
                m.delete_group(&key, r.id.expect("group id"))?;
                Reply::empty(204)
            }
            Op::ListGroupAccess => {
                let (page, per_page) = q.paging();
                let ids = m.group_access(&key, r.id.expect("group id"))?;
                let items: Vec<Value> = page_of(&ids, page, per_page)
                    .iter()
                    .filter_map(|id| match r.kind {
                        Kind::Org => m
                            .repo_by_id(*id)
                            .map(|repo| m.minimal_repository_json(repo, ctx)),
                        _ => m.org_by_id(*id).map(|o| m.organization_simple_json(o, ctx)),
                    })
                    .collect();
                let field = if r.kind == Kind::Org {
                    "repositories"
                } else {
                    "organizations"
                };
                let mut reply = Reply::json(200, &json!({"total_count": ids.len(), field: items}));
                if let Some(l) = link_header(ctx.api_base, path, q, page, per_page, ids.len()) {
                    reply.headers.push(("link", l));
                }
                reply
            }
            Op::SetGroupAccess => {
                m.group(&key, r.id.expect("group id"))?;
                let b = body::object(raw_body, false).map_err(to_validation)?;
                let field = if r.kind == Kind::Org {
                    "selected_repository_ids"
                } else {
                    "selected_organization_ids"
                };
                let ids = body::req_u64_array(&b, field).map_err(to_validation)?;
                m.set_group_access(&key, r.id.expect("group id"), &ids)?;
                Reply::empty(204)
            }
            Op::AddGroupAccess | Op::RemoveGroupAccess => {
                m.change_group_access(
                    &key,
                    r.id.expect("group id"),
                    r.id2.expect("target id"),
                    r.op == Op::AddGroupAccess,
                )?;
                Reply::empty(204)
            }
            Op::ListGroupRunners => {
                let (page, per_page) = q.paging();
                let all = m.group_runners(&key, r.id.expect("group id"))?;
                let items: Vec<RunnerJson<'_>> = page_of(&all, page, per_page)
                    .iter()
                    .map(|r| RunnerJson::from(*r))
                    .collect();
                let mut reply =
                    Reply::json(200, &json!({"total_count": all.len(), "runners": items}));
                if let Some(l) = link_header(ctx.api_base, path, q, page, per_page, all.len()) {
                    reply.headers.push(("link", l));
                }
                reply
            }
            Op::SetGroupRunners => {
                m.group(&key, r.id.expect("group id"))?;
                let b = body::object(raw_body, false).map_err(to_validation)?;
                let ids = body::req_u64_array(&b, "runners").map_err(to_validation)?;
                m.set_group_runners(&key, r.id.expect("group id"), &ids)?;
                Reply::empty(204)
            }
            Op::AddGroupRunner | Op::RemoveGroupRunner => {
                m.move_runner(
                    &key,
                    r.id.expect("group id"),
                    r.id2.expect("runner id"),
                    r.op == Op::AddGroupRunner,
                )?;
                Reply::empty(204)
            }
            Op::ListGroupHostedRunners => {
                m.group(&key, r.id.expect("group id"))?;
                Reply::json(200, &json!({"total_count": 0, "runners": []}))
            }
            Op::GetRepo => {
                let repo = m.repo_by_key(&key).ok_or_else(ApiError::not_found)?;
                Reply::json(200, &m.full_repository_json(repo, ctx))
            }
            Op::GetOrg => {
                let org = m.orgs.get(&r.owner.to_lowercase());
                let org = org.ok_or_else(ApiError::not_found)?;
                Reply::json(200, &m.organization_simple_json(org, ctx))
            }
            Op::RateLimit
            | Op::CreateInstallationToken
            | Op::ListDeliveries
            | Op::GetDelivery
            | Op::Redeliver
            | Op::GetJob => unreachable!("handled above"),
        };
        Ok(reply)
    }

    fn rate_limit_reply(&mut self, cred: &Credential, now: SystemTime) -> Reply {
        let (limit, used, reset) = match cred {
            Credential::Anonymous => (60, 0, now + Duration::from_secs(3600)),
            _ => {
                let key = cred.key();
                let lim = match cred {
                    Credential::Token { rate_limit, .. } => *rate_limit,
                    _ => None,
                };
                let b = self.limits.budget(&key, lim, now);
                (b.limit, b.used, b.reset)
            }
        };
        let core = json!({
            "limit": limit,
            "used": used,
            "remaining": limit.saturating_sub(used),
            "reset": util::unix_secs(reset),
        });
        let fresh = |limit: u32, secs: u64| {
            json!({
                "limit": limit,
                "used": 0,
                "remaining": limit,
                "reset": util::unix_secs(now + Duration::from_secs(secs)),
            })
        };
        Reply::json(
            200,
            &json!({
                "resources": {
                    "core": core,
                    "search": fresh(30, 60),
                    "graphql": fresh(5000, 3600),
                    "actions_runner_registration": fresh(10_000, 3600),
                },
                "rate": core,
            }),
        )
    }
}

/// Endpoints whose documented 422 is the full validation-error shape.
fn to_validation(e: ApiError) -> ApiError {
    if e.status == 422 {
        ApiError::validation(e.message)
    } else {
        e
    }
}

/// The answer of an injected failure.
fn injected_error(status: u16) -> ApiError {
    ApiError::new(status, injected_message(status))
}

/// The message of an injected failure's answer.
pub(crate) fn injected_message(status: u16) -> &'static str {
    match status {
        500 => "Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        404 => "Not Found",
        _ => "Injected failure",
    }
}

/// Ends the request's connection without an answer: unwinding out of the
/// handler ends the task serving the connection, which closes its socket
/// (`resume_unwind` runs no panic hook, so nothing is printed).
pub(crate) fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("fake GitHub: connection dropped (injected)"))
}

/// GitHub-style weak ETag of a body.
fn etag_of(body: &[u8]) -> String {
    format!("W/\"{}\"", util::sha256_hex(body))
}

fn if_none_match_hits(headers: &HeaderMap, etag: &str) -> bool {
    let strong = etag.trim_start_matches("W/");
    headers
        .get_all("if-none-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.trim_start_matches("W/") == strong)
}

/// Every request that is not for `/_fake/…`.
pub(crate) async fn api(
    AxState(sh): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = crate::actions::route(&method, uri.path()) {
        return crate::actions::serve(sh, r, &uri, &headers, body).await;
    }
    let started = Instant::now();
    let full_path = uri.path();
    let (ghes, path) = match full_path.strip_prefix("/api/v3") {
        Some("") => (true, "/"),
        Some(rest) if rest.starts_with('/') => (true, rest),
        _ => (false, full_path),
    };
    let route = routes::route(&method, path);
    let (m, template) = match &route {
        Some(r) => (r.method, r.template),
        None => (routes::method_name(&method), "unknown"),
    };
    *sh.lock().acct.received.entry((m, template)).or_default() += 1;
    let unavailable = sh.unavailable.load(Ordering::Relaxed);
    if !unavailable {
        let delay = sh.lock().faults.latency_for(m, template);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    let api_base = if ghes {
        format!("{}/api/v3", sh.base_url)
    } else {
        sh.base_url.clone()
    };
    let ctx = Ctx {
        api_base: &api_base,
        web_base: &sh.base_url,
    };
    let query = Query::parse(uri.query());
    let mut out = sh.lock().process(
        unavailable,
        route.as_ref(),
        m,
        template,
        path,
        &query,
        &headers,
        &body,
        &ctx,
        ghes,
    );
    // ETag and conditional requests, computed outside the lock.
    let mut etag = None;
    if out.etag
        && let Some(b) = &out.body
    {
        let tag = out.etag_value.take().unwrap_or_else(|| etag_of(b));
        if if_none_match_hits(&headers, &tag) {
            out.status = 304;
            out.body = None;
        }
        etag = Some(tag);
    }
    let mut rate_headers = None;
    {
        let mut st = sh.lock();
        if let Some((key, limit)) = &out.budget {
            let b = st.limits.budget(key, *limit, SystemTime::now());
            if out.status == 304 && out.charged {
                // Conditional requests answered 304 are free, as on GitHub.
                b.used = b.used.saturating_sub(1);
            }
            rate_headers = Some(b.clone());
        }
        st.acct.record(Record {
            method: m,
            template,
            path: full_path,
            query: uri.query(),
            status: out.status,
            credential: &out.credential,
            duration_us: started.elapsed().as_micros() as u64,
            injected: out.injected,
        });
    }
    tracing::debug!(
        method = m,
        path = full_path,
        status = out.status,
        credential = %out.credential,
        "api request"
    );
    if out.status == faults::DROP_CONNECTION {
        drop_connection();
    }
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    let h = resp.headers_mut().expect("builder");
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.append(name, v);
        }
    };
    put("server", "GitHub.com");
    put("x-github-media-type", "github.v3; format=json");
    put("x-github-api-version-selected", "2022-11-28");
    put(
        "x-github-request-id",
        &util::random_string(16, util::UPPER_ALNUM),
    );
    if let Some(b) = &rate_headers {
        put("x-ratelimit-limit", &b.limit.to_string());
        put(
            "x-ratelimit-remaining",
            &b.limit.saturating_sub(b.used).to_string(),
        );
        put("x-ratelimit-used", &b.used.min(b.limit).to_string());
        put("x-ratelimit-reset", &util::unix_secs(b.reset).to_string());
        put("x-ratelimit-resource", "core");
    }
    if let Some(s) = &out.oauth_scopes {
        put("x-oauth-scopes", s);
    }
    if let Some(t) = &etag {
        put("etag", t);
        put("cache-control", "private, max-age=60, s-maxage=60");
        put(
            "vary",
            "Accept, Authorization, Cookie, X-GitHub-OTP, Accept-Encoding",
        );
    }
    let mut seen_reset = false;
    for (name, value) in &out.headers {
        if *name == "x-ratelimit-reset" {
            if rate_headers.is_some() || seen_reset {
                continue;
            }
            seen_reset = true;
        }
        put(name, value);
    }
    match out.body {
        Some(b) => {
            put("content-type", "application/json; charset=utf-8");
            resp.body(Body::from(b)).expect("response")
        }
        None => resp.body(Body::empty()).expect("response"),
    }
}
