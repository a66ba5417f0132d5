//! The organization and enterprise runner-group endpoints (a `RunnerGroup`
//! is managed with them), the lookups that turn `owner/name` and
//! organization logins into the ids group access takes, and the runner
//! downloads.
//!
//! Every change to a group drops the cached group listing of its scope, so
//! a pool that names the group sees it at once.

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use url::Url;

use super::endpoints;
use super::requests::GitHubClient;
use super::wire::{Call, PER_PAGE, RunnerPage, decode};
use crate::github::{
    GitHubError, Result, Runner, RunnerDownload, RunnerGroupApi, RunnerGroupInfo,
    RunnerGroupSettings, Scope,
};
use crate::mutex::lock;

#[derive(Deserialize)]
struct GroupPage {
    runner_groups: Vec<RunnerGroupInfo>,
}

/// A group's access list: repositories (organization) or organizations
/// (enterprise), each with its id.
#[derive(Deserialize)]
struct AccessPage {
    #[serde(default)]
    repositories: Vec<WithId>,
    #[serde(default)]
    organizations: Vec<WithId>,
}

#[derive(Deserialize)]
struct WithId {
    id: u64,
}

/// The access list's path segment and body field in `scope`.
fn access(scope: &Scope) -> (&'static str, &'static str) {
    match scope {
        Scope::Enterprise(_) => ("organizations", "selected_organization_ids"),
        _ => ("repositories", "selected_repository_ids"),
    }
}

impl GitHubClient {
    fn group_url(&self, scope: &Scope, id: u64, rest: &[&str]) -> Url {
        let id = id.to_string();
        let mut segments = vec!["actions", "runner-groups", id.as_str()];
        segments.extend_from_slice(rest);
        self.scope_url(scope, &segments)
    }

    /// A write whose answer body, if any, is returned.
    async fn send(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
        subject: String,
    ) -> Result<std::sync::Arc<[u8]>> {
        let body = body
            .map(|b| serde_json::to_vec(&b))
            .transpose()
            .map_err(|_| GitHubError::Invalid(format!("{endpoint}: body cannot be encoded")))?;
        let answer = self
            .execute(Call {
                endpoint,
                method,
                url,
                body,
                subject,
            })
            .await?;
        Ok(answer.body)
    }

    /// Adds (`PUT`) or removes (`DELETE`) one repository or runner of a group.
    async fn change_member(
        &self,
        endpoint: &'static str,
        method: Method,
        (scope, id): (&Scope, u64),
        collection: &str,
        member: u64,
    ) -> Result<()> {
        let subject = format!("{member} in the {collection} of runner group {id} in {scope}");
        let url = self.group_url(scope, id, &[collection, &member.to_string()]);
        self.send(endpoint, method, url, None, subject)
            .await
            .map(drop)
    }

    /// The scope's groups changed: the next lookup by name asks GitHub.
    fn forget_groups(&self, scope: &Scope) {
        lock(&self.runner_groups).remove(scope);
    }

    fn paged(mut url: Url) -> Url {
        url.query_pairs_mut().append_pair("per_page", PER_PAGE);
        url
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|_| GitHubError::Invalid("the request cannot be encoded as JSON".into()))
}

#[async_trait]
impl RunnerGroupApi for GitHubClient {
    #[tracing::instrument(skip_all, fields(scope = %scope, group = %name))]
    async fn find_runner_group(
        &self,
        scope: &Scope,
        name: &str,
    ) -> Result<Option<RunnerGroupInfo>> {
        let url = Self::paged(self.scope_url(scope, &["actions", "runner-groups"]));
        let mut found = None;
        self.for_each_page(
            endpoints::LIST_RUNNER_GROUPS,
            url,
            &format!("runner groups of {scope}"),
            |body| {
                let page: GroupPage = decode(endpoints::LIST_RUNNER_GROUPS, body)?;
                if found.is_none() {
                    found = page
                        .runner_groups
                        .into_iter()
                        .find(|g| g.settings.name.eq_ignore_ascii_case(name));
                }
                Ok(())
            },
        )
        .await?;
        Ok(found)
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_group_id = id))]
    async fn get_runner_group(&self, scope: &Scope, id: u64) -> Result<RunnerGroupInfo> {
        let answer = self
            .execute(Call::get(
                endpoints::RUNNER_GROUP,
                self.group_url(scope, id, &[]),
                format!("runner group {id} in {scope}"),
            ))
            .await?;
        decode(endpoints::RUNNER_GROUP, &answer.body)
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, group = %settings.name))]
    async fn create_runner_group(
        &self,
        scope: &Scope,
        settings: &RunnerGroupSettings,
        access_ids: &[u64],
    ) -> Result<RunnerGroupInfo> {
        let mut body = to_json(settings)?;
        if !access_ids.is_empty() {
            body[access(scope).1] = serde_json::json!(access_ids);
        }
        let url = self.scope_url(scope, &["actions", "runner-groups"]);
        let answer = self
            .send(
                endpoints::CREATE_RUNNER_GROUP,
                Method::POST,
                url,
                Some(body),
                format!("runner groups of {scope}"),
            )
            .await;
        self.forget_groups(scope);
        decode(endpoints::CREATE_RUNNER_GROUP, &answer?)
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_group_id = id))]
    async fn update_runner_group(
        &self,
        scope: &Scope,
        id: u64,
        settings: &RunnerGroupSettings,
    ) -> Result<RunnerGroupInfo> {
        let answer = self
            .send(
                endpoints::UPDATE_RUNNER_GROUP,
                Method::PATCH,
                self.group_url(scope, id, &[]),
                Some(to_json(settings)?),
                format!("runner group {id} in {scope}"),
            )
            .await;
        self.forget_groups(scope);
        decode(endpoints::UPDATE_RUNNER_GROUP, &answer?)
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_group_id = id))]
    async fn delete_runner_group(&self, scope: &Scope, id: u64) -> Result<()> {
        let answer = self
            .send(
                endpoints::DELETE_RUNNER_GROUP,
                Method::DELETE,
                self.group_url(scope, id, &[]),
                None,
                format!("runner group {id} in {scope}"),
            )
            .await;
        self.forget_groups(scope);
        answer.map(drop)
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_group_id = id))]
    async fn list_group_access(&self, scope: &Scope, id: u64) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        self.for_each_page(
            endpoints::GROUP_ACCESS,
            Self::paged(self.group_url(scope, id, &[access(scope).0])),
            &format!("runner group {id} in {scope}"),
            |body| {
                let page: AccessPage = decode(endpoints::GROUP_ACCESS, body)?;
                let members = page.repositories.into_iter().chain(page.organizations);
                ids.extend(members.map(|m| m.id));
                Ok(())
            },
        )
        .await?;
        Ok(ids)
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_group_id = id))]
    async fn set_group_access(&self, scope: &Scope, id: u64, access_ids: &[u64]) -> Result<()> {
        let (collection, field) = access(scope);
        self.send(
            endpoints::SET_GROUP_ACCESS,
            Method::PUT,
            self.group_url(scope, id, &[collection]),
            Some(serde_json::json!({ field: access_ids })),
            format!("runner group {id} in {scope}"),
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_group_id = id, repository_id))]
    async fn add_group_repository(&self, scope: &Scope, id: u64, repository_id: u64) -> Result<()> {
        self.change_member(
            endpoints::ADD_GROUP_REPOSITORY,
            Method::PUT,
            (scope, id),
            "repositories",
            repository_id,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_group_id = id, repository_id))]
    async fn remove_group_repository(
        &self,
        scope: &Scope,
        id: u64,
        repository_id: u64,
    ) -> Result<()> {
        self.change_member(
            endpoints::REMOVE_GROUP_REPOSITORY,
            Method::DELETE,
            (scope, id),
            "repositories",
            repository_id,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_group_id = id))]
    async fn list_group_runners(&self, scope: &Scope, id: u64) -> Result<Vec<Runner>> {
        let mut runners = Vec::new();
        self.for_each_page(
            endpoints::GROUP_RUNNERS,
            Self::paged(self.group_url(scope, id, &["runners"])),
            &format!("runner group {id} in {scope}"),
            |body| {
                let page: RunnerPage = decode(endpoints::GROUP_RUNNERS, body)?;
                runners.extend(page.runners);
                Ok(())
            },
        )
        .await?;
        Ok(runners)
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_group_id = id))]
    async fn set_group_runners(&self, scope: &Scope, id: u64, runner_ids: &[u64]) -> Result<()> {
        self.send(
            endpoints::SET_GROUP_RUNNERS,
            Method::PUT,
            self.group_url(scope, id, &["runners"]),
            Some(serde_json::json!({ "runners": runner_ids })),
            format!("runner group {id} in {scope}"),
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_group_id = id, runner_id))]
    async fn add_group_runner(&self, scope: &Scope, id: u64, runner_id: u64) -> Result<()> {
        self.change_member(
            endpoints::ADD_GROUP_RUNNER,
            Method::PUT,
            (scope, id),
            "runners",
            runner_id,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_group_id = id, runner_id))]
    async fn remove_group_runner(&self, scope: &Scope, id: u64, runner_id: u64) -> Result<()> {
        self.change_member(
            endpoints::REMOVE_GROUP_RUNNER,
            Method::DELETE,
            (scope, id),
            "runners",
            runner_id,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(repository = %format!("{owner}/{name}")))]
    async fn repository_id(&self, owner: &str, name: &str) -> Result<u64> {
        let answer = self
            .execute(Call::get(
                endpoints::GET_REPOSITORY,
                self.url(&["repos", owner, name]),
                format!("repository {owner}/{name}"),
            ))
            .await?;
        let repository: WithId = decode(endpoints::GET_REPOSITORY, &answer.body)?;
        Ok(repository.id)
    }

    #[tracing::instrument(skip_all, fields(org = %login))]
    async fn organization_id(&self, login: &str) -> Result<u64> {
        let answer = self
            .execute(Call::get(
                endpoints::GET_ORGANIZATION,
                self.url(&["orgs", login]),
                format!("organization {login}"),
            ))
            .await?;
        let organization: WithId = decode(endpoints::GET_ORGANIZATION, &answer.body)?;
        Ok(organization.id)
    }

    #[tracing::instrument(skip_all, fields(scope = %scope))]
    async fn runner_downloads(&self, scope: &Scope) -> Result<Vec<RunnerDownload>> {
        let answer = self
            .execute(Call::get(
                endpoints::RUNNER_DOWNLOADS,
                self.scope_url(scope, &["actions", "runners", "downloads"]),
                format!("runner downloads of {scope}"),
            ))
            .await?;
        decode(endpoints::RUNNER_DOWNLOADS, &answer.body)
    }
}
