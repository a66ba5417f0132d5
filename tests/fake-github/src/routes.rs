//! Maps a method and path to one of GitHub's operations, with the route
//! template (`GET /orgs/{org}/actions/runners`) used to name it in counters.

use axum::http::Method;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Ent,
    Org,
    Repo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    ListRunners,
    Downloads,
    GenerateJit,
    RegistrationToken,
    RemoveToken,
    GetRunner,
    DeleteRunner,
    ListLabels,
    AddLabels,
    SetLabels,
    RemoveAllLabels,
    RemoveLabel,
    ListGroups,
    CreateGroup,
    GetGroup,
    UpdateGroup,
    DeleteGroup,
    ListGroupAccess,
    SetGroupAccess,
    AddGroupAccess,
    RemoveGroupAccess,
    ListGroupRunners,
    SetGroupRunners,
    AddGroupRunner,
    RemoveGroupRunner,
    ListGroupHostedRunners,
    CreateInstallationToken,
    RateLimit,
    /// `GET /repos/{owner}/{repo}`: a repository (its id for runner-group access).
    GetRepo,
    /// `GET /orgs/{org}`: an organization (its id for enterprise runner-group access).
    GetOrg,
    /// A webhook's delivery log (see [`crate::deliveries`]).
    ListDeliveries,
    GetDelivery,
    Redeliver,
    /// `GET /repos/{owner}/{repo}/actions/jobs/{job_id}`.
    GetJob,
}

impl Op {
    /// Whether the operation only reads.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Op::ListRunners
                | Op::Downloads
                | Op::GetRunner
                | Op::ListLabels
                | Op::ListGroups
                | Op::GetGroup
                | Op::ListGroupAccess
                | Op::ListGroupRunners
                | Op::ListGroupHostedRunners
                | Op::RateLimit
                | Op::GetRepo
                | Op::GetOrg
                | Op::ListDeliveries
                | Op::GetDelivery
                | Op::GetJob
        )
    }
}

#[derive(Debug)]
pub(crate) struct Route {
    pub op: Op,
    pub kind: Kind,
    pub method: &'static str,
    pub template: &'static str,
    /// Enterprise slug, organization or repository owner.
    pub owner: String,
    /// Repository name (repository scope only).
    pub repo: String,
    /// Runner id, group id or installation id.
    pub id: Option<u64>,
    /// Second id (runner, repository or organization in a group).
    pub id2: Option<u64>,
    /// Label name.
    pub name: Option<String>,
}

impl Route {
    /// A route of `op` with nothing filled in yet.
    pub(crate) fn new(op: Op, method: &'static str) -> Self {
        Route {
            op,
            kind: Kind::Org,
            method,
            template: "",
            owner: String::new(),
            repo: String::new(),
            id: None,
            id2: None,
            name: None,
        }
    }
}

macro_rules! tpl {
    ($kind:expr, $suffix:literal) => {
        match $kind {
            Kind::Ent => concat!("/enterprises/{enterprise}", $suffix),
            Kind::Org => concat!("/orgs/{org}", $suffix),
            Kind::Repo => concat!("/repos/{owner}/{repo}", $suffix),
        }
    };
}

/// Percent-decodes a path segment or query component.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (
                    b.get(i + 1).and_then(|c| hex(*c)),
                    b.get(i + 2).and_then(|c| hex(*c)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub(crate) fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The operation for `method path` (path without `/api/v3`), or `None` (404).
pub(crate) fn route(method: &Method, path: &str) -> Option<Route> {
    let m = method_name(method);
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return None;
    }
    let mut r = Route::new(Op::RateLimit, m);
    if let Some(hooks_or_jobs) = crate::deliveries::route(m, &segs) {
        return Some(hooks_or_jobs);
    }
    match segs.as_slice() {
        ["rate_limit"] if m == "GET" => {
            r.template = "/rate_limit";
            return Some(r);
        }
        ["app", "installations", inst, "access_tokens"] if m == "POST" => {
            r.op = Op::CreateInstallationToken;
            r.template = "/app/installations/{installation_id}/access_tokens";
            r.id = Some(id(inst)?);
            return Some(r);
        }
        ["repos", o, n] if m == "GET" => {
            r.op = Op::GetRepo;
            r.kind = Kind::Repo;
            r.template = "/repos/{owner}/{repo}";
            r.owner = percent_decode(o, false);
            r.repo = percent_decode(n, false);
            return Some(r);
        }
        ["orgs", o] if m == "GET" => {
            r.op = Op::GetOrg;
            r.kind = Kind::Org;
            r.template = "/orgs/{org}";
            r.owner = percent_decode(o, false);
            return Some(r);
        }
        _ => {}
    }
    let rest: &[&str] = match segs.as_slice() {
        ["enterprises", e, "actions", rest @ ..] => {
            r.kind = Kind::Ent;
            r.owner = percent_decode(e, false);
            rest
        }
        ["orgs", o, "actions", rest @ ..] => {
            r.kind = Kind::Org;
            r.owner = percent_decode(o, false);
            rest
        }
        ["repos", o, n, "actions", rest @ ..] => {
            r.kind = Kind::Repo;
            r.owner = percent_decode(o, false);
            r.repo = percent_decode(n, false);
            rest
        }
        _ => return None,
    };
    let k = r.kind;
    let (op, template) = match (rest, m) {
        (["runners"], "GET") => (Op::ListRunners, tpl!(k, "/actions/runners")),
        (["runners", "downloads"], "GET") => (Op::Downloads, tpl!(k, "/actions/runners/downloads")),
        (["runners", "generate-jitconfig"], "POST") => (
            Op::GenerateJit,
            tpl!(k, "/actions/runners/generate-jitconfig"),
        ),
        (["runners", "registration-token"], "POST") => (
            Op::RegistrationToken,
            tpl!(k, "/actions/runners/registration-token"),
        ),
        (["runners", "remove-token"], "POST") => {
            (Op::RemoveToken, tpl!(k, "/actions/runners/remove-token"))
        }
        (["runners", rid], "GET" | "DELETE") => {
            r.id = Some(id(rid)?);
            if m == "GET" {
                (Op::GetRunner, tpl!(k, "/actions/runners/{runner_id}"))
            } else {
                (Op::DeleteRunner, tpl!(k, "/actions/runners/{runner_id}"))
            }
        }
        (["runners", rid, "labels"], _) => {
            r.id = Some(id(rid)?);
            let op = match m {
                "GET" => Op::ListLabels,
                "POST" => Op::AddLabels,
                "PUT" => Op::SetLabels,
                "DELETE" => Op::RemoveAllLabels,
                _ => return None,
            };
            (op, tpl!(k, "/actions/runners/{runner_id}/labels"))
        }
        (["runners", rid, "labels", name], "DELETE") => {
            r.id = Some(id(rid)?);
            r.name = Some(percent_decode(name, false));
            (
                Op::RemoveLabel,
                tpl!(k, "/actions/runners/{runner_id}/labels/{name}"),
            )
        }
        _ if k == Kind::Repo => return None,
        (["runner-groups"], "GET") => (Op::ListGroups, tpl!(k, "/actions/runner-groups")),
        (["runner-groups"], "POST") => (Op::CreateGroup, tpl!(k, "/actions/runner-groups")),
        (["runner-groups", gid], _) => {
            r.id = Some(id(gid)?);
            let op = match m {
                "GET" => Op::GetGroup,
                "PATCH" => Op::UpdateGroup,
                "DELETE" => Op::DeleteGroup,
                _ => return None,
            };
            (op, tpl!(k, "/actions/runner-groups/{runner_group_id}"))
        }
        (["runner-groups", gid, "repositories"], "GET" | "PUT") if k == Kind::Org => {
            r.id = Some(id(gid)?);
            let op = if m == "GET" {
                Op::ListGroupAccess
            } else {
                Op::SetGroupAccess
            };
            (
                op,
                "/orgs/{org}/actions/runner-groups/{runner_group_id}/repositories",
            )
        }
        (["runner-groups", gid, "organizations"], "GET" | "PUT") if k == Kind::Ent => {
            r.id = Some(id(gid)?);
            let op = if m == "GET" {
                Op::ListGroupAccess
            } else {
                Op::SetGroupAccess
            };
            (
                op,
                "/enterprises/{enterprise}/actions/runner-groups/{runner_group_id}/organizations",
            )
        }
        (["runner-groups", gid, "repositories", rid], "PUT" | "DELETE") if k == Kind::Org => {
            r.id = Some(id(gid)?);
            r.id2 = Some(id(rid)?);
            let op = if m == "PUT" {
                Op::AddGroupAccess
            } else {
                Op::RemoveGroupAccess
            };
            (
                op,
                "/orgs/{org}/actions/runner-groups/{runner_group_id}/repositories/{repository_id}",
            )
        }
        (["runner-groups", gid, "organizations", oid], "PUT" | "DELETE") if k == Kind::Ent => {
            r.id = Some(id(gid)?);
            r.id2 = Some(id(oid)?);
            let op = if m == "PUT" {
                Op::AddGroupAccess
            } else {
                Op::RemoveGroupAccess
            };
            (
                op,
                "/enterprises/{enterprise}/actions/runner-groups/{runner_group_id}/organizations/{org_id}",
            )
        }
        (["runner-groups", gid, "runners"], "GET" | "PUT") => {
            r.id = Some(id(gid)?);
            let op = if m == "GET" {
                Op::ListGroupRunners
            } else {
                Op::SetGroupRunners
            };
            (
                op,
                tpl!(k, "/actions/runner-groups/{runner_group_id}/runners"),
            )
        }
        (["runner-groups", gid, "runners", rid], "PUT" | "DELETE") => {
            r.id = Some(id(gid)?);
            r.id2 = Some(id(rid)?);
            let op = if m == "PUT" {
                Op::AddGroupRunner
            } else {
                Op::RemoveGroupRunner
            };
            (
                op,
                tpl!(
                    k,
                    "/actions/runner-groups/{runner_group_id}/runners/{runner_id}"
                ),
            )
        }
        (["runner-groups", gid, "hosted-runners"], "GET") if k == Kind::Org => {
            r.id = Some(id(gid)?);
            (
                Op::ListGroupHostedRunners,
                "/orgs/{org}/actions/runner-groups/{runner_group_id}/hosted-runners",
            )
        }
        _ => return None,
    };
    r.op = op;
    r.template = template;
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_templates() {
        let r = route(&Method::GET, "/orgs/acme/actions/runners").unwrap();
        assert_eq!(
            (r.op, r.template),
            (Op::ListRunners, "/orgs/{org}/actions/runners")
        );
        let r = route(
            &Method::DELETE,
            "/repos/a/b/actions/runners/7/labels/gpu%20x",
        )
        .unwrap();
        assert_eq!(r.op, Op::RemoveLabel);
        assert_eq!(r.name.as_deref(), Some("gpu x"));
        assert_eq!(r.id, Some(7));
        assert!(route(&Method::PATCH, "/orgs/acme/actions/runners").is_none());
        assert!(route(&Method::GET, "/repos/a/b/actions/runner-groups").is_none());
        assert!(route(&Method::GET, "/orgs/acme/actions/runners/abc").is_none());
        assert!(route(&Method::GET, "/orgs/acme/actions/runners/").is_none());
        let r = route(
            &Method::PUT,
            "/enterprises/e/actions/runner-groups/3/organizations/9",
        )
        .unwrap();
        assert_eq!((r.op, r.id, r.id2), (Op::AddGroupAccess, Some(3), Some(9)));
        assert!(
            route(
                &Method::PUT,
                "/orgs/o/actions/runner-groups/3/organizations/9"
            )
            .is_none()
        );
    }

    #[test]
    fn routes_a_repository() {
        let r = route(&Method::GET, "/repos/acme/app").unwrap();
        assert_eq!(
            (r.op, r.kind, r.template, r.owner.as_str(), r.repo.as_str()),
            (
                Op::GetRepo,
                Kind::Repo,
                "/repos/{owner}/{repo}",
                "acme",
                "app"
            )
        );
        assert!(route(&Method::DELETE, "/repos/acme/app").is_none());
    }

    #[test]
    fn decodes_percent() {
        assert_eq!(percent_decode("a%2Fb+c", true), "a/b c");
        assert_eq!(percent_decode("a%2", false), "a%2");
        assert_eq!(percent_decode("100%", false), "100%");
    }
}
