//! One Actions request, under the state lock: who is calling (registration,
//! admin or queue token), whether it may, and what the model answers.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::ServiceError;
use super::routes::{Op, Route, TENANT_PREFIX};
use super::tokens::{self, Refused};
use crate::api_error::ApiError;
use crate::body;
use crate::model::{Model, Scope};
use crate::server::Query;

/// One request, as `call` needs it.
pub(crate) struct Request<'a> {
    pub route: &'a Route,
    pub query: &'a Query,
    pub authz: Option<&'a str>,
    pub body: &'a [u8],
    /// `http://127.0.0.1:PORT`.
    pub base: &'a str,
    pub now: SystemTime,
}

/// What a request is answered with.
pub(crate) enum Answer {
    Json(u16, Value),
    Empty(u16),
    /// An error of the REST side (registration), GitHub's shape.
    Api(ApiError),
    Service(ServiceError),
}

/// The tenant URL of a scope, ending in `/`.
pub(crate) fn tenant_url(base: &str, scope: &Scope) -> String {
    format!("{base}{TENANT_PREFIX}{}/", tokens::tenant_of(scope))
}

/// The scope of a runner-registration `url` (`http(s)://HOST/<org>`,
/// `/<owner>/<repo>` or `/enterprises/<e>`; any host, as the fake runs on
/// loopback).
pub(crate) fn scope_of_html_url(url: &str) -> Option<Scope> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (_host, path) = rest.split_once('/')?;
    let path = path.split(['?', '#']).next().unwrap_or("");
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [org] => Some(Scope::org(*org)),
        [e, ent] if e.eq_ignore_ascii_case("enterprises") => Some(Scope::enterprise(*ent)),
        [owner, repo] => Some(Scope::repo(*owner, *repo)),
        _ => None,
    }
}

fn u64_list(v: &Value) -> Option<Vec<u64>> {
    v.as_array()?.iter().map(Value::as_u64).collect()
}

/// `POST /actions/runner-registration`, `Authorization: RemoteAuth <token>`.
fn register(m: &mut Model, authz: Option<&str>, raw: &[u8], base: &str, now: SystemTime) -> Answer {
    let Some(secret) = tokens::secret_of(authz, "RemoteAuth") else {
        let msg = if authz.is_some() {
            "Bad credentials"
        } else {
            "Requires authentication"
        };
        return Answer::Api(ApiError::new(401, msg));
    };
    let scope = match m.actions.tokens.registration_scope(secret, now) {
        Ok(s) => s.clone(),
        Err(_) => return Answer::Api(ApiError::new(401, "Bad credentials")),
    };
    let b = match body::object(raw, false) {
        Ok(b) => b,
        Err(e) => return Answer::Api(e),
    };
    let (url, event) = match (body::req_str(&b, "url"), body::req_str(&b, "runner_event")) {
        (Ok(u), Ok(e)) => (u, e),
        (Err(e), _) | (_, Err(e)) => return Answer::Api(e),
    };
    if event != "register" {
        return Answer::Api(ApiError::validation_simple(format!(
            "runner_event {event:?} is not supported"
        )));
    }
    if scope_of_html_url(&url).map(|s| s.key()) != Some(scope.key()) {
        return Answer::Api(ApiError::not_found());
    }
    let ttl = m.actions.settings.admin_token_ttl;
    let token = m
        .actions
        .tokens
        .mint_admin(&scope, &tokens::tenant_of(&scope), ttl, now);
    Answer::Json(
        200,
        json!({"url": tenant_url(base, &scope), "token": token, "token_schema": "OAuthAccessToken"}),
    )
}

/// The scope of the admin token, which must belong to the tenant.
fn admin_scope(
    m: &Model,
    r: &Route,
    authz: Option<&str>,
    now: SystemTime,
) -> Result<Scope, ServiceError> {
    let secret = tokens::secret_of(authz, "Bearer").ok_or_else(ServiceError::unauthorized)?;
    let claims = m
        .actions
        .tokens
        .admin(secret, now)
        .map_err(|_| ServiceError::unauthorized())?;
    if claims.tenant != r.tenant {
        return Err(ServiceError::unauthorized());
    }
    Scope::parse(&claims.scope).ok_or_else(ServiceError::unauthorized)
}

/// Checks a queue token for the route's scale set (and `sessionId`, if
/// given); answers the token's session.
pub(crate) fn queue_auth(
    m: &Model,
    r: &Route,
    authz: Option<&str>,
    now: SystemTime,
) -> Result<String, ServiceError> {
    let secret = tokens::secret_of(authz, "Bearer").ok_or_else(ServiceError::unauthorized)?;
    let claims = m.actions.tokens.queue(secret, now).map_err(|e| match e {
        Refused::Expired => ServiceError::new(
            401,
            "VssUnauthorizedException",
            "The message queue access token has expired.",
        ),
        Refused::Invalid => ServiceError::unauthorized(),
    })?;
    let scale_set = m.actions.scale_sets.get(&claims.scale_set_id);
    let same_session = r
        .session
        .as_deref()
        .is_none_or(|s| s.eq_ignore_ascii_case(&claims.session_id));
    let tenant_ok = scale_set.is_some_and(|s| tokens::tenant_of(&s.scope) == r.tenant);
    if Some(claims.scale_set_id) != r.scale_set || !same_session || !tenant_ok {
        return Err(ServiceError::unauthorized());
    }
    Ok(claims.session_id)
}

/// `6.0-preview` or `6.0-preview.N`.
fn valid_api_version(v: &str) -> bool {
    match v.strip_prefix("6.0-preview") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('.')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// The message queue needs no `api-version`, but one it is given must be valid.
pub(crate) fn check_optional_api_version(q: &Query) -> Result<(), ServiceError> {
    match q.get("api-version") {
        None => Ok(()),
        Some(_) => check_api_version(q),
    }
}

fn check_api_version(q: &Query) -> Result<(), ServiceError> {
    match q.get("api-version") {
        None => Err(ServiceError::new(
            400,
            "VssVersionNotSpecifiedException",
            "The API version of the request must be given: api-version=6.0-preview.",
        )),
        Some(v) if valid_api_version(v) => Ok(()),
        Some(v) => Err(ServiceError::new(
            400,
            "VssVersionOutOfRangeException",
            format!("The requested REST API version of {v} is out of range for this server."),
        )),
    }
}

/// Everything but the long poll (see `http`).
pub(crate) fn call(m: &mut Model, req: &Request<'_>) -> Answer {
    if req.route.op == Op::Register {
        return register(m, req.authz, req.body, req.base, req.now);
    }
    match service_call(m, req) {
        Ok(a) => a,
        Err(e) => Answer::Service(e),
    }
}

fn service_call(m: &mut Model, req: &Request<'_>) -> Result<Answer, ServiceError> {
    let Request {
        route: r,
        query: q,
        authz,
        body: raw,
        base,
        now,
    } = *req;
    if r.op == Op::Unknown {
        return Err(ServiceError::new(
            404,
            "NotFoundException",
            "The resource cannot be found.",
        ));
    }
    let (scope, session) = if r.op.uses_queue_token() {
        (None, queue_auth(m, r, authz, now)?)
    } else {
        (Some(admin_scope(m, r, authz, now)?), String::new())
    };
    if r.op.needs_api_version() {
        check_api_version(q)?;
    } else {
        check_optional_api_version(q)?;
    }
    let id = r.scale_set.unwrap_or(0);
    let session_in_path = r.session.as_deref().unwrap_or("");
    let tenant = |s: &Scope| tenant_url(base, s);
    let Some(scope) = scope else {
        return match r.op {
            Op::AcquireJobs => {
                let ids = serde_json::from_slice::<Value>(raw)
                    .ok()
                    .as_ref()
                    .and_then(u64_list)
                    .ok_or_else(|| {
                        ServiceError::bad_request("The body must be a JSON array of request ids.")
                    })?;
                let acquired = m.acquire_jobs(id, &ids);
                Ok(Answer::Json(
                    200,
                    json!({"count": acquired.len(), "value": acquired}),
                ))
            }
            Op::Ack => {
                m.ack(id, &session, r.id.unwrap_or(0))?;
                Ok(Answer::Empty(204))
            }
            _ => unreachable!("the poll is served by http"),
        };
    };
    let answer = match r.op {
        Op::RunnerGroups => Answer::Json(200, m.service_runner_groups(&scope, q.get("groupName"))),
        Op::FindScaleSets => {
            let group =
                match q.get("runnerGroupId") {
                    None | Some("") => None,
                    Some(g) => Some(g.parse::<u64>().map_err(|_| {
                        ServiceError::bad_request("runnerGroupId must be an integer.")
                    })?),
                };
            let found: Vec<Value> = m
                .find_scale_sets(&scope, group, q.get("name").filter(|n| !n.is_empty()))
                .into_iter()
                .map(|s| m.scale_set_json(s, &tenant(&scope)))
                .collect();
            Answer::Json(200, json!({"count": found.len(), "value": found}))
        }
        Op::CreateScaleSet => {
            let s = m.create_scale_set(&scope, raw)?;
            Answer::Json(200, m.scale_set_json(&s, &tenant(&scope)))
        }
        Op::GetScaleSet => {
            let s = m.scale_set_in(&scope, id)?;
            Answer::Json(200, m.scale_set_json(s, &tenant(&scope)))
        }
        Op::UpdateScaleSet => {
            let s = m.update_scale_set(&scope, id, raw)?;
            Answer::Json(200, m.scale_set_json(&s, &tenant(&scope)))
        }
        Op::DeleteScaleSet => {
            m.delete_scale_set(&scope, id)?;
            Answer::Empty(204)
        }
        Op::GenerateJit => Answer::Json(200, m.scale_set_jit(&scope, id, raw, base)?),
        Op::CreateSession => Answer::Json(
            200,
            m.create_session(&scope, id, raw, &tenant(&scope), now)?,
        ),
        Op::RefreshSession => Answer::Json(
            200,
            m.refresh_session(&scope, id, session_in_path, &tenant(&scope), now)?,
        ),
        Op::DeleteSession => {
            m.delete_session(&scope, id, session_in_path)?;
            Answer::Empty(204)
        }
        Op::AcquirableJobs => {
            m.scale_set_in(&scope, id)?;
            Answer::Json(200, m.acquirable_jobs(id))
        }
        Op::ListAgents => Answer::Json(200, m.agents(&scope, q.get("agentName"))),
        Op::GetAgent => Answer::Json(200, m.agent(&scope, r.id.unwrap_or(0))?),
        Op::DeleteAgent => {
            m.delete_agent(&scope, r.id.unwrap_or(0))?;
            Answer::Empty(204)
        }
        Op::Register | Op::Unknown | Op::Poll | Op::Ack | Op::AcquireJobs => {
            unreachable!("handled above")
        }
    };
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_urls_name_scopes() {
        assert_eq!(
            scope_of_html_url("http://127.0.0.1:9/acme"),
            Some(Scope::org("acme"))
        );
        assert_eq!(
            scope_of_html_url("https://github.com/acme/app/"),
            Some(Scope::repo("acme", "app"))
        );
        assert_eq!(
            scope_of_html_url("https://ghes.example/enterprises/big"),
            Some(Scope::enterprise("big"))
        );
        assert_eq!(scope_of_html_url("https://github.com/"), None);
        assert_eq!(scope_of_html_url("ftp://x/acme"), None);
    }
}
