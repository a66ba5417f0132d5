//! The webhook's delivery log, as GitHub keeps one for each webhook, and the
//! workflow-job read.
//!
//! The fake has one webhook (its target is [`crate::FakeGitHub::set_webhook`]).
//! It answers as hook [`HOOK_ID`] of every organization (listing the
//! deliveries about that organization's repositories), of every repository
//! (that repository's), and as the GitHub App's hook (all of them, with an
//! App JWT):
//! - `GET /orgs/{org}/hooks/{hook_id}/deliveries`, `…/deliveries/{delivery_id}`,
//!   `POST …/deliveries/{delivery_id}/attempts`, the same under
//!   `/repos/{owner}/{repo}/hooks/{hook_id}` and `/app/hook`;
//! - `GET /repos/{owner}/{repo}/actions/jobs/{job_id}`.
//!
//! Lists are newest first, `per_page` (default 30, at most 100) with GitHub's
//! opaque `cursor` in the `Link` header, and `status=success|failure`. A
//! delivery that got no 2xx answer (refused, failed to connect, dropped by
//! [`crate::FakeGitHub::drop_next_webhooks`]) is listed as failed. A
//! redelivery is sent at once as a new delivery of the same GUID with
//! `redelivery: true`.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::auth::{self, Credential};
use crate::routes::{Kind, Op, Route, percent_decode};
use crate::server::State;
use crate::util;

/// The id of the fake's one webhook, wherever it is listed.
pub const HOOK_ID: u64 = 1;
/// Deliveries kept (GitHub keeps them for 3 days); the oldest go first.
const CAPACITY: usize = 20_000;

/// One attempt to deliver, as the log keeps it.
#[derive(Clone, Debug)]
pub(crate) struct Logged {
    pub id: u64,
    pub guid: String,
    pub delivered_at: SystemTime,
    pub redelivery: bool,
    pub duration: f64,
    /// 0 when no answer came (not sent, connection failed).
    pub status_code: u16,
    pub status: String,
    pub event: String,
    pub action: String,
    pub url: String,
    /// Lower-cased owner and `owner/name` of the repository the event is about.
    pub owner: String,
    pub repository: String,
    pub repository_id: Option<u64>,
    pub payload: Value,
    pub response: String,
}

impl Logged {
    fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }

    fn summary(&self) -> Value {
        json!({
            "id": self.id,
            "guid": self.guid,
            "delivered_at": util::rfc3339(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": self.duration,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": null,
            "repository_id": self.repository_id,
        })
    }

    fn full(&self) -> Value {
        let mut v = self.summary();
        v["url"] = json!(self.url);
        v["request"] = json!({
            "headers": {
                "Accept": "*/*",
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/fake",
                "X-GitHub-Delivery": self.guid,
                "X-GitHub-Event": self.event,
                "X-GitHub-Hook-ID": HOOK_ID.to_string(),
                "X-Hub-Signature-256": "sha256=********",
            },
            "payload": self.payload,
        });
        v["response"] = json!({
            "headers": { "Content-Type": "text/plain" },
            "payload": self.response,
        });
        v
    }
}

/// What an attempt to deliver came to, for [`Log::record`].
pub(crate) struct Attempt<'a> {
    pub guid: &'a str,
    pub redelivery: bool,
    pub event: &'a str,
    pub action: &'a str,
    pub url: Option<&'a str>,
    pub payload: &'a [u8],
    pub status_code: Option<u16>,
    pub error: Option<&'a str>,
    pub duration: f64,
}

#[derive(Default)]
pub(crate) struct Log {
    entries: Vec<Logged>,
    next_id: u64,
}

impl Log {
    pub fn record(&mut self, a: Attempt<'_>) {
        let payload: Value = serde_json::from_slice(a.payload).unwrap_or(Value::Null);
        let repository = payload["repository"]["full_name"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        let owner = repository.split('/').next().unwrap_or_default().to_string();
        let status = match (a.status_code, a.error) {
            (Some(code), _) if (200..300).contains(&code) => "OK".to_string(),
            (Some(code), _) => format!("Invalid HTTP Response: {code}"),
            (None, _) => "failed to connect to host".to_string(),
        };
        self.next_id += 1;
        self.entries.push(Logged {
            id: 100_000 + self.next_id,
            guid: a.guid.to_string(),
            delivered_at: SystemTime::now(),
            redelivery: a.redelivery,
            duration: a.duration,
            status_code: a.status_code.unwrap_or(0),
            status,
            event: a.event.to_string(),
            action: a.action.to_string(),
            url: a.url.unwrap_or_default().to_string(),
            owner,
            repository,
            repository_id: payload["repository"]["id"].as_u64(),
            payload,
            response: a.error.unwrap_or_default().to_string(),
        });
        if self.entries.len() > CAPACITY {
            let extra = self.entries.len() - CAPACITY;
            self.entries.drain(..extra);
        }
    }

    /// The entries a hook route may see, newest first.
    fn visible<'a>(&'a self, r: &'a Route) -> impl Iterator<Item = &'a Logged> + 'a {
        self.entries.iter().rev().filter(move |d| sees(r, d))
    }
}

fn sees(r: &Route, d: &Logged) -> bool {
    if r.template.starts_with("/app/") {
        return true;
    }
    match r.kind {
        Kind::Repo => d.repository == format!("{}/{}", r.owner, r.repo).to_lowercase(),
        _ => d.owner == r.owner.to_lowercase(),
    }
}

fn id(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// The hook and job routes, or `None` for any other path.
pub(crate) fn route(method: &'static str, segs: &[&str]) -> Option<Route> {
    let mut r = Route::new(Op::ListDeliveries, method);
    let (prefix, rest): (&str, &[&str]) = match segs {
        ["repos", o, n, "actions", "jobs", job] if method == "GET" => {
            r.op = Op::GetJob;
            r.kind = Kind::Repo;
            r.owner = percent_decode(o, false);
            r.repo = percent_decode(n, false);
            r.id = Some(id(job)?);
            r.template = "/repos/{owner}/{repo}/actions/jobs/{job_id}";
            return Some(r);
        }
        ["orgs", o, "hooks", hook, "deliveries", rest @ ..] => {
            r.owner = percent_decode(o, false);
            r.id = Some(id(hook)?);
            ("org", rest)
        }
        ["repos", o, n, "hooks", hook, "deliveries", rest @ ..] => {
            r.kind = Kind::Repo;
            r.owner = percent_decode(o, false);
            r.repo = percent_decode(n, false);
            r.id = Some(id(hook)?);
            ("repo", rest)
        }
        ["app", "hook", "deliveries", rest @ ..] => ("app", rest),
        _ => return None,
    };
    let (op, suffix) = match (rest, method) {
        ([], "GET") => (Op::ListDeliveries, ""),
        ([d], "GET") => {
            r.id2 = Some(id(d)?);
            (Op::GetDelivery, "/{delivery_id}")
        }
        ([d, "attempts"], "POST") => {
            r.id2 = Some(id(d)?);
            (Op::Redeliver, "/{delivery_id}/attempts")
        }
        _ => return None,
    };
    r.op = op;
    r.template = match (prefix, suffix) {
        ("org", "") => "/orgs/{org}/hooks/{hook_id}/deliveries",
        ("org", "/{delivery_id}") => "/orgs/{org}/hooks/{hook_id}/deliveries/{delivery_id}",
        ("org", _) => "/orgs/{org}/hooks/{hook_id}/deliveries/{delivery_id}/attempts",
        ("repo", "") => "/repos/{owner}/{repo}/hooks/{hook_id}/deliveries",
        ("repo", "/{delivery_id}") => {
            "/repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}"
        }
        ("repo", _) => "/repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}/attempts",
        (_, "") => "/app/hook/deliveries",
        (_, "/{delivery_id}") => "/app/hook/deliveries/{delivery_id}",
        _ => "/app/hook/deliveries/{delivery_id}/attempts",
    };
    Some(r)
}

/// Who may call a hook or job route: `None` for the other routes.
///
/// - org hooks: a classic token with `admin:org_hook`, or an installation
///   of the organization with `organization_hooks` (read to read);
/// - repository hooks: `admin:repo_hook` (or `read:repo_hook` to read), or
///   an installation with `repository_hooks`;
/// - the App's hook: the App's JWT only;
/// - a job: a classic token with `repo`, or an installation of the owner
///   (with the repository) holding `actions`.
pub(crate) fn authorize(cred: &Credential, r: &Route) -> Option<Result<(), ApiError>> {
    if !matches!(
        r.op,
        Op::ListDeliveries | Op::GetDelivery | Op::Redeliver | Op::GetJob
    ) {
        return None;
    }
    let write = r.op == Op::Redeliver;
    let denied = || ApiError::new(403, "Resource not accessible by integration");
    let app_route = r.template.starts_with("/app/");
    let allowed = match cred {
        Credential::Anonymous => return Some(Err(ApiError::new(401, "Requires authentication"))),
        Credential::AppJwt { .. } if app_route => true,
        Credential::AppJwt { .. } => return Some(Err(denied())),
        _ if app_route => {
            return Some(Err(ApiError::new(
                401,
                "A JSON web token could not be decoded",
            )));
        }
        Credential::Token { scopes, .. } => {
            let needed: &[&str] = match (r.op, r.kind) {
                (Op::GetJob, _) => &["repo"],
                (_, Kind::Repo) if write => &["admin:repo_hook"],
                (_, Kind::Repo) => &["admin:repo_hook", "read:repo_hook"],
                _ => &["admin:org_hook"],
            };
            if !needed.iter().any(|n| auth::has_scope(scopes, n)) {
                let message = match r.op {
                    Op::GetJob => "Not Found",
                    _ => "Must have admin rights to the webhook.",
                };
                let status = if r.op == Op::GetJob { 404 } else { 403 };
                return Some(Err(ApiError::new(status, message)
                    .with_header("x-accepted-oauth-scopes", needed.join(", "))));
            }
            true
        }
        Credential::Installation(t) => {
            let owner_ok = t
                .owner
                .as_deref()
                .is_none_or(|o| o.eq_ignore_ascii_case(&r.owner));
            let repo_ok = r.kind != Kind::Repo
                || t.repositories
                    .as_ref()
                    .is_none_or(|repos| repos.iter().any(|n| n.eq_ignore_ascii_case(&r.repo)));
            let permission = match (r.op, r.kind) {
                (Op::GetJob, _) => "actions",
                (_, Kind::Repo) => "repository_hooks",
                _ => "organization_hooks",
            };
            let granted = match t.permissions.get(permission).map(String::as_str) {
                Some("write") => true,
                Some("read") => !write,
                _ => false,
            };
            owner_ok && repo_ok && granted
        }
    };
    Some(if allowed { Ok(()) } else { Err(denied()) })
}

/// An answer of a hook or job route: status, body and extra headers.
pub(crate) type Answer = (u16, Option<Value>, Vec<(&'static str, String)>);

/// Answers a hook or job route; `None` for the other routes.
pub(crate) fn dispatch(
    st: &mut State,
    r: &Route,
    query: &[(String, String)],
    api_base: &str,
    path: &str,
) -> Option<Result<Answer, ApiError>> {
    if !matches!(
        r.op,
        Op::ListDeliveries | Op::GetDelivery | Op::Redeliver | Op::GetJob
    ) {
        return None;
    }
    let get = |k: &str| {
        query
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let exists = match (r.op, r.kind) {
        (_, _) if r.template.starts_with("/app/") => true,
        (_, Kind::Repo) => st
            .model
            .repos
            .contains_key(&format!("{}/{}", r.owner, r.repo).to_lowercase()),
        _ => st.model.orgs.contains_key(&r.owner.to_lowercase()),
    };
    let hook_ok = r.template.starts_with("/app/") || r.op == Op::GetJob || r.id == Some(HOOK_ID);
    if !exists || !hook_ok {
        return Some(Err(ApiError::not_found()));
    }
    let answer = match r.op {
        Op::GetJob => {
            let full = format!("{}/{}", r.owner, r.repo);
            let job = st
                .model
                .jobs
                .get(&r.id.expect("job id"))
                .filter(|j| j.repository.eq_ignore_ascii_case(&full));
            let repo = st.model.repos.get(&full.to_lowercase());
            match (job, repo) {
                (Some(job), Some(repo)) => {
                    let payload = st.model.workflow_job_payload(job, repo, "queued");
                    Ok((200, Some(payload["workflow_job"].clone()), vec![]))
                }
                _ => Err(ApiError::not_found()),
            }
        }
        Op::ListDeliveries => {
            let per_page = get("per_page")
                .and_then(|p| p.parse::<usize>().ok())
                .filter(|p| *p > 0)
                .unwrap_or(30)
                .min(100);
            let before = match get("cursor") {
                None | Some("") => u64::MAX,
                Some(c) => match c.strip_prefix('v').and_then(id) {
                    Some(c) => c,
                    None => {
                        return Some(Err(ApiError::new(400, "Bad Request: invalid cursor")));
                    }
                },
            };
            let wanted = match get("status") {
                None => None,
                Some("success") => Some(true),
                Some("failure") => Some(false),
                Some(other) => {
                    return Some(Err(ApiError::validation(format!(
                        "status must be success or failure, not {other:?}"
                    ))));
                }
            };
            let hooks = st.hooks.clone();
            let log = hooks.log.lock().expect("lock");
            let mut matching = log
                .visible(r)
                .filter(|d| d.id < before)
                .filter(|d| wanted.is_none_or(|w| d.succeeded() == w));
            let page: Vec<&Logged> = matching.by_ref().take(per_page).collect();
            let more = matching.next().is_some();
            let mut headers = vec![];
            if more && let Some(last) = page.last() {
                let mut pairs = vec![
                    format!("per_page={per_page}"),
                    format!("cursor=v{}", last.id),
                ];
                if let Some(status) = get("status") {
                    pairs.push(format!("status={}", percent_decode(status, false)));
                }
                headers.push((
                    "link",
                    format!("<{api_base}{path}?{}>; rel=\"next\"", pairs.join("&")),
                ));
            }
            let body = Value::Array(page.iter().map(|d| d.summary()).collect());
            Ok((200, Some(body), headers))
        }
        Op::GetDelivery | Op::Redeliver => {
            let hooks = st.hooks.clone();
            let found = {
                let log = hooks.log.lock().expect("lock");
                log.visible(r).find(|d| Some(d.id) == r.id2).cloned()
            };
            let Some(d) = found else {
                return Some(Err(ApiError::not_found()));
            };
            if r.op == Op::GetDelivery {
                Ok((200, Some(d.full()), vec![]))
            } else {
                let payload = serde_json::to_vec(&d.payload).unwrap_or_default();
                crate::webhook::redeliver(hooks, d.guid, d.event, d.action, payload);
                Ok((202, Some(json!({})), vec![]))
            }
        }
        _ => unreachable!("only hook and job routes get here"),
    };
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_hooks_and_jobs() {
        let segs = |p: &str| {
            p.trim_start_matches('/')
                .split('/')
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let r = |m: &'static str, p: &str| {
            let s = segs(p);
            let s: Vec<&str> = s.iter().map(String::as_str).collect();
            route(m, &s)
        };
        let list = r("GET", "/orgs/acme/hooks/1/deliveries").unwrap();
        assert_eq!((list.op, list.id), (Op::ListDeliveries, Some(1)));
        let one = r("GET", "/repos/acme/app/hooks/1/deliveries/7").unwrap();
        assert_eq!(
            (one.op, one.kind, one.id2),
            (Op::GetDelivery, Kind::Repo, Some(7))
        );
        let again = r("POST", "/app/hook/deliveries/7/attempts").unwrap();
        assert_eq!(
            (again.op, again.template),
            (Op::Redeliver, "/app/hook/deliveries/{delivery_id}/attempts")
        );
        let job = r("GET", "/repos/acme/app/actions/jobs/42").unwrap();
        assert_eq!((job.op, job.id), (Op::GetJob, Some(42)));
        assert!(r("DELETE", "/orgs/acme/hooks/1/deliveries").is_none());
        assert!(r("GET", "/orgs/acme/hooks/x/deliveries").is_none());
        assert!(r("GET", "/orgs/acme/actions/runners").is_none());
    }
}
