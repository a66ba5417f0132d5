//! The control API under `/_fake/…`: the handle's methods over HTTP (JSON),
//! for the binary, scripts and tests in other languages.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    AppSpec, FakeError, FakeGitHub, Fault, InstallationSpec, Scope, SecondaryLimit, TokenSpec,
    WebhookConfig, decode_jit_config,
};

type Res = Result<Response, (StatusCode, Json<Value>)>;

fn bad(status: StatusCode, msg: impl std::fmt::Display) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": msg.to_string() })))
}

fn fake_err(e: FakeError) -> (StatusCode, Json<Value>) {
    let status = match e {
        FakeError::NotFound(_) => StatusCode::NOT_FOUND,
        FakeError::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    bad(status, e)
}

fn ok<T: serde::Serialize>(v: T) -> Res {
    Ok(Json(v).into_response())
}

fn no_content() -> Res {
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) fn router() -> Router<FakeGitHub> {
    Router::new()
        .route("/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/state", get(state))
        .route("/runners", get(list_runners).post(register_runner))
        .route("/runners/{id}", get(get_runner).delete(remove_runner))
        .route("/runners/{id}/online", post(online))
        .route("/runners/{id}/offline", post(offline))
        .route("/sweep", post(sweep))
        .route("/jobs", get(jobs).post(queue_job))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/finish", post(finish_job))
        .route("/enterprises", post(add_enterprise))
        .route("/orgs", post(add_org))
        .route("/repos", post(add_repo))
        .route("/tokens", post(add_token))
        .route("/apps", post(add_app))
        .route("/unavailable", put(unavailable))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/error-rate", put(error_rate))
        .route("/latency", put(latency).delete(clear_latency))
        .route("/rate-limit/exhaust", post(exhaust))
        .route("/rate-limit/reset", post(reset_limit))
        .route("/rate-limit", get(rate_limit).put(set_rate_limit))
        .route(
            "/secondary-limits",
            post(add_secondary).delete(clear_secondary),
        )
        .route("/counters", get(counters).delete(reset_counters))
        .route("/requests", get(requests))
        .route("/webhooks", get(webhooks))
        .route("/webhook", put(set_webhook).delete(clear_webhook))
        .route("/webhook/drop", post(drop_webhooks))
        .route("/settings", put(settings))
        .route("/decode-jit", post(decode_jit))
        .route("/groups", get(groups))
        .merge(crate::actions::control_router())
        .route(
            "/{*rest}",
            delete(not_found)
                .get(not_found)
                .post(not_found)
                .put(not_found),
        )
}

async fn not_found() -> Res {
    Err(bad(StatusCode::NOT_FOUND, "no such control endpoint"))
}

#[derive(Deserialize)]
struct ScopeQuery {
    scope: Option<String>,
}

fn parse_scope(s: &str) -> Result<Scope, (StatusCode, Json<Value>)> {
    Scope::parse(s).ok_or_else(|| {
        bad(
            StatusCode::BAD_REQUEST,
            format!("bad scope {s:?}: use enterprises/E, orgs/O or repos/O/R"),
        )
    })
}

async fn state(State(f): State<FakeGitHub>) -> Res {
    ok(json!({
        "runners": f.all_runners(),
        "jobs": f.jobs(),
        "scale_sets": f.scale_sets(),
        "sessions": f.sessions(),
        "unavailable": f.shared.unavailable.load(std::sync::atomic::Ordering::SeqCst),
    }))
}

async fn list_runners(State(f): State<FakeGitHub>, Query(q): Query<ScopeQuery>) -> Res {
    match q.scope {
        Some(s) => ok(f.runners(&parse_scope(&s)?)),
        None => ok(f.all_runners()),
    }
}

async fn groups(State(f): State<FakeGitHub>, Query(q): Query<ScopeQuery>) -> Res {
    let s = q
        .scope
        .ok_or_else(|| bad(StatusCode::BAD_REQUEST, "scope is required"))?;
    ok(f.groups(&parse_scope(&s)?))
}

#[derive(Deserialize)]
struct RegisterRunner {
    scope: String,
    name: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    ephemeral: bool,
    #[serde(default)]
    online: bool,
}

async fn register_runner(State(f): State<FakeGitHub>, Json(b): Json<RegisterRunner>) -> Res {
    let scope = parse_scope(&b.scope)?;
    let labels: Vec<&str> = b.labels.iter().map(String::as_str).collect();
    let r = f
        .register_runner(&scope, &b.name, &labels, b.ephemeral)
        .map_err(fake_err)?;
    let r = if b.online {
        f.set_online(r.id, true).map_err(fake_err)?
    } else {
        r
    };
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

async fn get_runner(State(f): State<FakeGitHub>, Path(id): Path<u64>) -> Res {
    match f.runner(id) {
        Some(r) => ok(r),
        None => Err(bad(StatusCode::NOT_FOUND, format!("runner {id}"))),
    }
}

async fn remove_runner(State(f): State<FakeGitHub>, Path(id): Path<u64>) -> Res {
    f.remove_runner(id).map_err(fake_err)?;
    no_content()
}

async fn online(State(f): State<FakeGitHub>, Path(id): Path<u64>) -> Res {
    ok(f.set_online(id, true).map_err(fake_err)?)
}

async fn offline(State(f): State<FakeGitHub>, Path(id): Path<u64>) -> Res {
    ok(f.set_online(id, false).map_err(fake_err)?)
}

async fn sweep(State(f): State<FakeGitHub>) -> Res {
    ok(json!({ "removed": f.sweep_expired_runners() }))
}

async fn jobs(State(f): State<FakeGitHub>) -> Res {
    ok(f.jobs())
}

async fn job(State(f): State<FakeGitHub>, Path(id): Path<u64>) -> Res {
    match f.job(id) {
        Some(j) => ok(j),
        None => Err(bad(StatusCode::NOT_FOUND, format!("job {id}"))),
    }
}

#[derive(Deserialize)]
struct QueueJob {
    repository: String,
    labels: Vec<String>,
}

async fn queue_job(State(f): State<FakeGitHub>, Json(b): Json<QueueJob>) -> Res {
    let labels: Vec<&str> = b.labels.iter().map(String::as_str).collect();
    let id = f.queue_job(&b.repository, &labels).map_err(fake_err)?;
    Ok((StatusCode::CREATED, Json(f.job(id))).into_response())
}

#[derive(Deserialize, Default)]
struct Finish {
    conclusion: Option<String>,
}

async fn finish_job(
    State(f): State<FakeGitHub>,
    Path(id): Path<u64>,
    body: Option<Json<Finish>>,
) -> Res {
    let c = body
        .and_then(|b| b.0.conclusion)
        .unwrap_or_else(|| "success".into());
    ok(f.finish_job_with(id, &c).map_err(fake_err)?)
}

#[derive(Deserialize)]
struct Named {
    name: String,
    #[serde(default)]
    enterprise: Option<String>,
}

async fn add_enterprise(State(f): State<FakeGitHub>, Json(b): Json<Named>) -> Res {
    ok(json!({ "id": f.add_enterprise(&b.name) }))
}

async fn add_org(State(f): State<FakeGitHub>, Json(b): Json<Named>) -> Res {
    let id = f.add_org(&b.name);
    if let Some(e) = b.enterprise {
        f.add_org_to_enterprise(&e, &b.name);
    }
    ok(json!({ "id": id }))
}

#[derive(Deserialize)]
struct AddRepo {
    owner: String,
    name: String,
}

async fn add_repo(State(f): State<FakeGitHub>, Json(b): Json<AddRepo>) -> Res {
    ok(json!({ "id": f.add_repo(&b.owner, &b.name) }))
}

async fn add_token(State(f): State<FakeGitHub>, Json(b): Json<TokenSpec>) -> Res {
    ok(json!({ "credential": f.add_token_spec(b) }))
}

#[derive(Deserialize)]
struct AddApp {
    app_id: u64,
    #[serde(default)]
    client_id: Option<String>,
    key_pem: String,
    installations: Vec<InstallationSpec>,
}

async fn add_app(State(f): State<FakeGitHub>, Json(b): Json<AddApp>) -> Res {
    f.add_app(AppSpec {
        app_id: b.app_id,
        client_id: b.client_id,
        key_pem: b.key_pem,
        installations: b.installations,
    })
    .map_err(fake_err)?;
    no_content()
}

#[derive(Deserialize)]
struct Unavailable {
    unavailable: bool,
}

async fn unavailable(State(f): State<FakeGitHub>, Json(b): Json<Unavailable>) -> Res {
    f.set_unavailable(b.unavailable);
    no_content()
}

async fn add_fault(State(f): State<FakeGitHub>, Json(b): Json<Fault>) -> Res {
    f.inject_fault(b);
    no_content()
}

async fn clear_faults(State(f): State<FakeGitHub>) -> Res {
    f.clear_faults();
    no_content()
}

#[derive(Deserialize)]
struct ErrorRate {
    rate: f64,
    #[serde(default)]
    status: Option<u16>,
}

async fn error_rate(State(f): State<FakeGitHub>, Json(b): Json<ErrorRate>) -> Res {
    f.set_error_rate(b.rate, b.status.unwrap_or(500));
    no_content()
}

#[derive(Deserialize)]
struct Latency {
    ms: u64,
    #[serde(default)]
    endpoint: Option<String>,
}

async fn latency(State(f): State<FakeGitHub>, Json(b): Json<Latency>) -> Res {
    let d = Duration::from_millis(b.ms);
    match b.endpoint {
        Some(p) => f.set_endpoint_latency(&p, d),
        None => f.set_latency(d),
    }
    no_content()
}

async fn clear_latency(State(f): State<FakeGitHub>) -> Res {
    f.set_latency(Duration::ZERO);
    f.lock().faults.endpoint_latency.clear();
    no_content()
}

#[derive(Deserialize)]
struct Credential {
    credential: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

impl Credential {
    fn key(&self, f: &FakeGitHub) -> Result<String, (StatusCode, Json<Value>)> {
        match (&self.credential, &self.token) {
            (Some(c), _) => Ok(c.clone()),
            (None, Some(t)) => Ok(f.token_key(t)),
            (None, None) => Err(bad(
                StatusCode::BAD_REQUEST,
                "credential or token is required",
            )),
        }
    }
}

async fn exhaust(State(f): State<FakeGitHub>, Json(b): Json<Credential>) -> Res {
    f.exhaust_rate_limit(&b.key(&f)?);
    no_content()
}

async fn reset_limit(State(f): State<FakeGitHub>, Json(b): Json<Credential>) -> Res {
    f.reset_rate_limit(&b.key(&f)?);
    no_content()
}

async fn rate_limit(State(f): State<FakeGitHub>, Query(b): Query<Credential>) -> Res {
    ok(f.rate_limit(&b.key(&f)?))
}

#[derive(Deserialize)]
struct SetLimit {
    limit: u32,
}

async fn set_rate_limit(State(f): State<FakeGitHub>, Json(b): Json<SetLimit>) -> Res {
    f.set_rate_limit(b.limit);
    no_content()
}

async fn add_secondary(State(f): State<FakeGitHub>, Json(b): Json<SecondaryLimit>) -> Res {
    f.secondary_limit(b);
    no_content()
}

async fn clear_secondary(State(f): State<FakeGitHub>) -> Res {
    f.clear_secondary_limits();
    no_content()
}

async fn counters(State(f): State<FakeGitHub>) -> Res {
    ok(f.counters())
}

async fn reset_counters(State(f): State<FakeGitHub>) -> Res {
    f.reset_counters();
    no_content()
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn requests(State(f): State<FakeGitHub>, Query(q): Query<Limit>) -> Res {
    let log = f.request_log();
    let n = q.limit.unwrap_or(log.len()).min(log.len());
    ok(&log[log.len() - n..])
}

async fn webhooks(State(f): State<FakeGitHub>) -> Res {
    ok(f.webhook_deliveries())
}

async fn set_webhook(State(f): State<FakeGitHub>, Json(b): Json<WebhookConfig>) -> Res {
    f.set_webhook(Some(b));
    no_content()
}

async fn clear_webhook(State(f): State<FakeGitHub>) -> Res {
    f.set_webhook(None);
    no_content()
}

#[derive(Deserialize)]
struct DropWebhooks {
    count: u32,
}

async fn drop_webhooks(State(f): State<FakeGitHub>, Json(b): Json<DropWebhooks>) -> Res {
    f.drop_next_webhooks(b.count);
    no_content()
}

#[derive(Deserialize)]
struct Settings {
    jit_offline_expiry_secs: Option<f64>,
    app_token_ttl_secs: Option<f64>,
    runner_version: Option<String>,
    // The Actions service of scale sets.
    acquire_mode: Option<bool>,
    long_poll_secs: Option<f64>,
    session_timeout_secs: Option<f64>,
    queue_token_ttl_secs: Option<f64>,
    admin_token_ttl_secs: Option<f64>,
    /// 0 turns re-offering off.
    reassign_after_secs: Option<f64>,
    service_bom: Option<crate::ServiceBom>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

async fn settings(State(f): State<FakeGitHub>, Json(b): Json<Settings>) -> Res {
    if let Some(s) = b.jit_offline_expiry_secs {
        f.set_jit_offline_expiry(Duration::from_secs_f64(s.max(0.0)));
    }
    if let Some(s) = b.app_token_ttl_secs {
        f.set_app_token_ttl(Duration::from_secs_f64(s.max(0.0)));
    }
    if let Some(version) = b.runner_version {
        f.set_runner_version(&version).map_err(fake_err)?;
    }
    if let Some(a) = b.acquire_mode {
        f.set_acquire_mode(a);
    }
    if let Some(s) = b.long_poll_secs {
        f.set_long_poll(secs(s));
    }
    if let Some(s) = b.session_timeout_secs {
        f.set_session_timeout(secs(s));
    }
    if let Some(s) = b.queue_token_ttl_secs {
        f.set_queue_token_ttl(secs(s));
    }
    if let Some(s) = b.admin_token_ttl_secs {
        f.set_admin_token_ttl(secs(s));
    }
    if let Some(s) = b.reassign_after_secs {
        f.set_reassign_after((s > 0.0).then(|| secs(s)));
    }
    if let Some(bom) = b.service_bom {
        f.set_service_bom(bom);
    }
    no_content()
}

#[derive(Deserialize)]
struct DecodeJit {
    encoded_jit_config: String,
}

async fn decode_jit(Json(b): Json<DecodeJit>) -> Res {
    ok(decode_jit_config(&b.encoded_jit_config)
        .map_err(|e| bad(StatusCode::UNPROCESSABLE_ENTITY, e))?)
}
