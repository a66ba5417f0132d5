//! Names the Actions service's endpoints. Templates are what counters,
//! faults and latency patterns use, e.g.
//! `POST /_apis/runtime/runnerscalesets/{id}/generatejitconfig`; the tenant
//! prefix (`/_services/pipelines/{tenant}`) is left out of them.
//!
//! Empty path segments are ignored under the tenant: the tenant URL ends in
//! `/` and clients join paths onto it with another (`…/{tenant}//_apis/…`),
//! as actions-runner-controller does for `acquirejobs`.

use axum::http::Method;

use crate::routes::{method_name, percent_decode};

/// Where tenant URLs live on the fake.
pub(crate) const TENANT_PREFIX: &str = "/_services/pipelines/";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `POST /actions/runner-registration` (REST side): the admin token.
    Register,
    RunnerGroups,
    FindScaleSets,
    CreateScaleSet,
    GetScaleSet,
    UpdateScaleSet,
    DeleteScaleSet,
    GenerateJit,
    CreateSession,
    RefreshSession,
    DeleteSession,
    /// The long poll of the message queue.
    Poll,
    /// `DELETE` of one message.
    Ack,
    AcquireJobs,
    AcquirableJobs,
    ListAgents,
    GetAgent,
    DeleteAgent,
    /// Anything else under the tenant prefix: 404.
    Unknown,
}

impl Op {
    /// Authenticated with the session's queue token instead of the admin token.
    pub fn uses_queue_token(self) -> bool {
        matches!(self, Op::Poll | Op::Ack | Op::AcquireJobs)
    }

    /// Whether `api-version` must be in the query (the message queue takes
    /// it in `Accept`, and its `DELETE` carries none).
    pub fn needs_api_version(self) -> bool {
        !matches!(self, Op::Register | Op::Poll | Op::Ack | Op::Unknown)
    }
}

#[derive(Debug)]
pub(crate) struct Route {
    pub op: Op,
    pub method: &'static str,
    pub template: &'static str,
    pub tenant: String,
    pub scale_set: Option<u64>,
    pub session: Option<String>,
    /// Message id (ack) or agent id.
    pub id: Option<u64>,
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

const RSS: &str = "/_apis/runtime/runnerscalesets";

/// The Actions route for `method path` (the full path), or `None` when the
/// request is for the REST API.
pub(crate) fn route(method: &Method, path: &str) -> Option<Route> {
    let m = method_name(method);
    let mut r = Route {
        op: Op::Unknown,
        method: m,
        template: "unknown",
        tenant: String::new(),
        scale_set: None,
        session: None,
        id: None,
    };
    if matches!(
        path,
        "/actions/runner-registration" | "/api/v3/actions/runner-registration"
    ) {
        if m != "POST" {
            return None;
        }
        r.op = Op::Register;
        r.template = "/actions/runner-registration";
        return Some(r);
    }
    let rest = path.strip_prefix(TENANT_PREFIX)?;
    let segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let Some((tenant, segs)) = segs.split_first() else {
        return Some(r);
    };
    r.tenant = tenant.clone();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (op, template): (Op, &'static str) = match (segs.as_slice(), m) {
        (["_apis", "runtime", "runnergroups"], "GET") => {
            (Op::RunnerGroups, "/_apis/runtime/runnergroups")
        }
        (["_apis", "runtime", "runnerscalesets"], "GET") => (Op::FindScaleSets, RSS),
        (["_apis", "runtime", "runnerscalesets"], "POST") => (Op::CreateScaleSet, RSS),
        (["_apis", "runtime", "runnerscalesets", id, tail @ ..], _) => {
            let Some(id) = number(id) else {
                return Some(r);
            };
            r.scale_set = Some(id);
            match (tail, m) {
                ([], "GET") => (Op::GetScaleSet, "/_apis/runtime/runnerscalesets/{id}"),
                ([], "PATCH") => (Op::UpdateScaleSet, "/_apis/runtime/runnerscalesets/{id}"),
                ([], "DELETE") => (Op::DeleteScaleSet, "/_apis/runtime/runnerscalesets/{id}"),
                (["generatejitconfig"], "POST") => (
                    Op::GenerateJit,
                    "/_apis/runtime/runnerscalesets/{id}/generatejitconfig",
                ),
                (["acquirejobs"], "POST") => (
                    Op::AcquireJobs,
                    "/_apis/runtime/runnerscalesets/{id}/acquirejobs",
                ),
                (["acquirablejobs"], "GET") => (
                    Op::AcquirableJobs,
                    "/_apis/runtime/runnerscalesets/{id}/acquirablejobs",
                ),
                (["sessions"], "POST") => (
                    Op::CreateSession,
                    "/_apis/runtime/runnerscalesets/{id}/sessions",
                ),
                (["sessions", sid], "PATCH" | "DELETE") => {
                    r.session = Some(sid.to_string());
                    let op = if m == "PATCH" {
                        Op::RefreshSession
                    } else {
                        Op::DeleteSession
                    };
                    (
                        op,
                        "/_apis/runtime/runnerscalesets/{id}/sessions/{sessionId}",
                    )
                }
                // The message queue; its session is in the query (`sessionId`).
                (["messages"], "GET") => (Op::Poll, "/_apis/runtime/runnerscalesets/{id}/messages"),
                (["messages", mid], "DELETE") => {
                    let Some(mid) = number(mid) else {
                        return Some(r);
                    };
                    r.id = Some(mid);
                    (
                        Op::Ack,
                        "/_apis/runtime/runnerscalesets/{id}/messages/{messageId}",
                    )
                }
                _ => return Some(r),
            }
        }
        (["_apis", "distributedtask", "pools", pool, tail @ ..], _) if number(pool).is_some() => {
            match (tail, m) {
                (["agents"], "GET") => (
                    Op::ListAgents,
                    "/_apis/distributedtask/pools/{poolId}/agents",
                ),
                (["agents", aid], "GET" | "DELETE") => {
                    let Some(aid) = number(aid) else {
                        return Some(r);
                    };
                    r.id = Some(aid);
                    let op = if m == "GET" {
                        Op::GetAgent
                    } else {
                        Op::DeleteAgent
                    };
                    (op, "/_apis/distributedtask/pools/{poolId}/agents/{agentId}")
                }
                _ => return Some(r),
            }
        }
        _ => return Some(r),
    };
    r.op = op;
    r.template = template;
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_service_routes() {
        let r = route(&Method::POST, "/api/v3/actions/runner-registration").unwrap();
        assert_eq!(
            (r.op, r.template),
            (Op::Register, "/actions/runner-registration")
        );
        assert!(route(&Method::GET, "/actions/runner-registration").is_none());
        assert!(route(&Method::GET, "/orgs/acme/actions/runners").is_none());
        let r = route(
            &Method::POST,
            "/_services/pipelines/tX//_apis/runtime/runnerscalesets/7/acquirejobs",
        )
        .unwrap();
        assert_eq!(
            (r.op, r.tenant.as_str(), r.scale_set),
            (Op::AcquireJobs, "tX", Some(7))
        );
        let r = route(
            &Method::GET,
            "/_services/pipelines/tX/_apis/runtime/runnergroups/",
        )
        .unwrap();
        assert_eq!(r.op, Op::RunnerGroups);
        let r = route(
            &Method::DELETE,
            "/_services/pipelines/tX/_apis/runtime/runnerscalesets/7/messages/12",
        )
        .unwrap();
        assert_eq!((r.op, r.scale_set, r.id), (Op::Ack, Some(7), Some(12)));
        let r = route(
            &Method::GET,
            "/_services/pipelines/tX/_apis/runtime/nothing",
        )
        .unwrap();
        assert_eq!((r.op, r.template), (Op::Unknown, "unknown"));
    }
}
