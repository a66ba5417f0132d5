//! A webhook's delivery log on GitHub: which hook, what its log lists, and
//! the read of one delivery's payload. The operator reads it to take the
//! `workflow_job` deliveries that never reached it (see
//! [`crate::webhook::recovery`]).

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use super::Result;

/// A webhook whose delivery log can be read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HookRef {
    /// `orgs/{org}/hooks/{hook_id}`: needs `admin:org_hook` (classic token)
    /// or an installation with Webhooks (organization_hooks) read.
    Organization { org: String, id: u64 },
    /// `repos/{owner}/{repo}/hooks/{hook_id}`: needs `admin:repo_hook` or
    /// `read:repo_hook`, or an installation with Webhooks (repository_hooks) read.
    Repository {
        owner: String,
        repo: String,
        id: u64,
    },
    /// `app`: the GitHub App's own webhook, read with the App's JWT.
    App,
}

impl HookRef {
    /// The path segments of the hook's delivery log.
    pub fn deliveries_path(&self) -> Vec<String> {
        let mut segments: Vec<String> = match self {
            HookRef::Organization { org, id } => {
                vec!["orgs".into(), org.clone(), "hooks".into(), id.to_string()]
            }
            HookRef::Repository { owner, repo, id } => vec![
                "repos".into(),
                owner.clone(),
                repo.clone(),
                "hooks".into(),
                id.to_string(),
            ],
            HookRef::App => vec!["app".into(), "hook".into()],
        };
        segments.push("deliveries".into());
        segments
    }
}

impl fmt::Display for HookRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookRef::Organization { org, id } => write!(f, "orgs/{org}/hooks/{id}"),
            HookRef::Repository { owner, repo, id } => write!(f, "repos/{owner}/{repo}/hooks/{id}"),
            HookRef::App => f.write_str("app"),
        }
    }
}

impl FromStr for HookRef {
    type Err = String;

    /// `orgs/ORG/hooks/ID`, `repos/OWNER/REPO/hooks/ID` or `app`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().trim_matches('/').split('/').collect();
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let id = |n: &str| n.parse::<u64>().ok().filter(|id| *id > 0);
        match parts.as_slice() {
            ["app"] => Ok(HookRef::App),
            ["orgs", org, "hooks", hook] if name_ok(org) => match id(hook) {
                Some(id) => Ok(HookRef::Organization {
                    org: org.to_string(),
                    id,
                }),
                None => Err(format!("{s:?}: the hook id must be a positive number")),
            },
            ["repos", owner, repo, "hooks", hook] if name_ok(owner) && name_ok(repo) => {
                match id(hook) {
                    Some(id) => Ok(HookRef::Repository {
                        owner: owner.to_string(),
                        repo: repo.to_string(),
                        id,
                    }),
                    None => Err(format!("{s:?}: the hook id must be a positive number")),
                }
            }
            _ => Err(format!(
                "{s:?} names no webhook: use orgs/ORG/hooks/ID, repos/OWNER/REPO/hooks/ID or app"
            )),
        }
    }
}

/// One delivery as the log lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct DeliverySummary {
    pub id: u64,
    /// `X-GitHub-Delivery`: the same for a delivery and its redeliveries.
    pub guid: String,
    /// When it was sent (RFC 3339).
    pub delivered_at: String,
    /// The receiver's HTTP status, 0 when none answered.
    #[serde(default)]
    pub status_code: u16,
    pub event: String,
    #[serde(default)]
    pub action: Option<String>,
}

impl DeliverySummary {
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }

    /// When it was sent; `None` when GitHub's date does not parse.
    pub fn delivered(&self) -> Option<Timestamp> {
        self.delivered_at.parse().ok()
    }
}

/// Reads webhook delivery logs (GET only: nothing is redelivered).
#[async_trait]
pub trait WebhookDeliveriesApi: Send + Sync {
    /// The hook's deliveries, newest first: at most `max_pages` pages of 100,
    /// stopping after the first page holding one delivered before `since`.
    async fn list_deliveries(
        &self,
        hook: &HookRef,
        since: Timestamp,
        max_pages: usize,
    ) -> Result<Vec<DeliverySummary>>;

    /// The payload of delivery `id` (`request.payload`).
    async fn delivery_payload(&self, hook: &HookRef, id: u64) -> Result<serde_json::Value>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_named_by_their_api_path() {
        for (text, hook) in [
            (
                "orgs/acme/hooks/12",
                HookRef::Organization {
                    org: "acme".into(),
                    id: 12,
                },
            ),
            (
                "/repos/acme/app/hooks/7/",
                HookRef::Repository {
                    owner: "acme".into(),
                    repo: "app".into(),
                    id: 7,
                },
            ),
            ("app", HookRef::App),
        ] {
            assert_eq!(text.parse::<HookRef>(), Ok(hook.clone()), "{text}");
            assert_eq!(hook.to_string().parse::<HookRef>(), Ok(hook));
        }
        for bad in [
            "",
            "orgs/acme",
            "orgs/acme/hooks/x",
            "orgs/acme/hooks/0",
            "orgs/a b/hooks/1",
            "repos/acme/hooks/1",
            "apps",
        ] {
            let refused = bad.parse::<HookRef>().unwrap_err();
            assert!(refused.contains("hook"), "{bad}: {refused}");
        }
        assert_eq!(
            HookRef::App.deliveries_path(),
            vec!["app", "hook", "deliveries"]
        );
    }
}
