//! The organization runner-group endpoints (a `RunnerGroup` is managed with
//! them), the repository lookup that turns `owner/name` into the ids group
//! access takes, and the runner downloads.
//!
//! Every change to a group drops the cached group listing of its
//! organization, so a pool that names the group sees it at once.

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

#[derive(Deserialize)]
struct RepositoryPage {
    repositories: Vec<RepositoryId>,
}

#[derive(Deserialize)]
struct RepositoryId {
    id: u64,
}

#[derive(Serialize)]
struct CreateGroup<'a> {
    #[serde(flatten)]
    settings: &'a RunnerGroupSettings,
    #[serde(skip_serializing_if = "<[u64]>::is_empty")]
    selected_repository_ids: &'a [u64],
}

impl GitHubClient {
    fn org_scope(org: &str) -> Scope {
        Scope::Organization(org.to_owned())
    }

    fn group_url(&self, org: &str, id: u64, rest: &[&str]) -> Url {
        let id = id.to_string();
        let mut segments = vec!["actions", "runner-groups", id.as_str()];
        segments.extend_from_slice(rest);
        self.scope_url(&Self::org_scope(org), &segments)
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
        (org, id): (&str, u64),
        collection: &str,
        member: u64,
    ) -> Result<()> {
        let subject = format!("{member} in the {collection} of runner group {id} in orgs/{org}");
        let url = self.group_url(org, id, &[collection, &member.to_string()]);
        self.send(endpoint, method, url, None, subject)
            .await
            .map(drop)
    }

    /// The organization's groups changed: the next lookup by name asks GitHub.
    fn forget_groups(&self, org: &str) {
        lock(&self.runner_groups).remove(&Self::org_scope(org));
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
    #[tracing::instrument(skip_all, fields(org = %org, group = %name))]
    async fn find_runner_group(&self, org: &str, name: &str) -> Result<Option<RunnerGroupInfo>> {
        let url = Self::paged(self.scope_url(&Self::org_scope(org), &["actions", "runner-groups"]));
        let mut found = None;
        self.for_each_page(
            endpoints::LIST_RUNNER_GROUPS,
            url,
            &format!("runner groups of orgs/{org}"),
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

    #[tracing::instrument(skip_all, fields(org = %org, runner_group_id = id))]
    async fn get_runner_group(&self, org: &str, id: u64) -> Result<RunnerGroupInfo> {
        let answer = self
            .execute(Call::get(
                endpoints::RUNNER_GROUP,
                self.group_url(org, id, &[]),
                format!("runner group {id} in orgs/{org}"),
            ))
            .await?;
        decode(endpoints::RUNNER_GROUP, &answer.body)
    }

    #[tracing::instrument(skip_all, fields(org = %org, group = %settings.name))]
    async fn create_runner_group(
        &self,
        org: &str,
        settings: &RunnerGroupSettings,
        repository_ids: &[u64],
    ) -> Result<RunnerGroupInfo> {
        let body = to_json(&CreateGroup {
            settings,
            selected_repository_ids: repository_ids,
        })?;
        let url = self.scope_url(&Self::org_scope(org), &["actions", "runner-groups"]);
        let answer = self
            .send(
                endpoints::CREATE_RUNNER_GROUP,
                Method::POST,
                url,
                Some(body),
                format!("organization {org}"),
            )
            .await;
        self.forget_groups(org);
        decode(endpoints::CREATE_RUNNER_GROUP, &answer?)
    }

    #[tracing::instrument(skip_all, fields(org = %org, runner_group_id = id))]
    async fn update_runner_group(
        &self,
        org: &str,
        id: u64,
        settings: &RunnerGroupSettings,
    ) -> Result<RunnerGroupInfo> {
        let answer = self
            .send(
                endpoints::UPDATE_RUNNER_GROUP,
                Method::PATCH,
                self.group_url(org, id, &[]),
                Some(to_json(settings)?),
                format!("runner group {id} in orgs/{org}"),
            )
            .await;
        self.forget_groups(org);
        decode(endpoints::UPDATE_RUNNER_GROUP, &answer?)
    }

    #[tracing::instrument(skip_all, fields(org = %org, runner_group_id = id))]
    async fn delete_runner_group(&self, org: &str, id: u64) -> Result<()> {
        let answer = self
            .send(
                endpoints::DELETE_RUNNER_GROUP,
                Method::DELETE,
                self.group_url(org, id, &[]),
                None,
                format!("runner group {id} in orgs/{org}"),
            )
            .await;
        self.forget_groups(org);
        answer.map(drop)
    }

    #[tracing::instrument(skip_all, fields(org = %org, runner_group_id = id))]
    async fn list_group_repositories(&self, org: &str, id: u64) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        self.for_each_page(
            endpoints::GROUP_REPOSITORIES,
            Self::paged(self.group_url(org, id, &["repositories"])),
            &format!("runner group {id} in orgs/{org}"),
            |body| {
                let page: RepositoryPage = decode(endpoints::GROUP_REPOSITORIES, body)?;
                ids.extend(page.repositories.into_iter().map(|r| r.id));
                Ok(())
            },
        )
        .await?;
        Ok(ids)
    }

    #[tracing::instrument(skip_all, fields(org = %org, runner_group_id = id))]
    async fn set_group_repositories(
        &self,
        org: &str,
        id: u64,
        repository_ids: &[u64],
    ) -> Result<()> {
        self.send(
            endpoints::SET_GROUP_REPOSITORIES,
            Method::PUT,
            self.group_url(org, id, &["repositories"]),
            Some(serde_json::json!({ "selected_repository_ids": repository_ids })),
            format!("runner group {id} in orgs/{org}"),
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(skip_all, fields(org = %org, runner_group_id = id, repository_id))]
    async fn add_group_repository(&self, org: &str, id: u64, repository_id: u64) -> Result<()> {
        self.change_member(
            endpoints::ADD_GROUP_REPOSITORY,
            Method::PUT,
            (org, id),
            "repositories",
            repository_id,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(org = %org, runner_group_id = id, repository_id))]
    async fn remove_group_repository(&self, org: &str, id: u64, repository_id: u64) -> Result<()> {
        self.change_member(
            endpoints::REMOVE_GROUP_REPOSITORY,
            Method::DELETE,
            (org, id),
            "repositories",
            repository_id,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(org = %org, runner_group_id = id))]
    async fn list_group_runners(&self, org: &str, id: u64) -> Result<Vec<Runner>> {
        let mut runners = Vec::new();
        self.for_each_page(
            endpoints::GROUP_RUNNERS,
            Self::paged(self.group_url(org, id, &["runners"])),
            &format!("runner group {id} in orgs/{org}"),
            |body| {
                let page: RunnerPage = decode(endpoints::GROUP_RUNNERS, body)?;
                runners.extend(page.runners);
                Ok(())
            },
        )
        .await?;
        Ok(runners)
    }

    #[tracing::instrument(skip_all, fields(org = %org, runner_group_id = id))]
    async fn set_group_runners(&self, org: &str, id: u64, runner_ids: &[u64]) -> Result<()> {
        self.send(
            endpoints::SET_GROUP_RUNNERS,
            Method::PUT,
            self.group_url(org, id, &["runners"]),
            Some(serde_json::json!({ "runners": runner_ids })),
            format!("runner group {id} in orgs/{org}"),
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(skip_all, fields(org = %org, runner_group_id = id, runner_id))]
    async fn add_group_runner(&self, org: &str, id: u64, runner_id: u64) -> Result<()> {
        self.change_member(
            endpoints::ADD_GROUP_RUNNER,
            Method::PUT,
            (org, id),
            "runners",
            runner_id,
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(org = %org, runner_group_id = id, runner_id))]
    async fn remove_group_runner(&self, org: &str, id: u64, runner_id: u64) -> Result<()> {
        self.change_member(
            endpoints::REMOVE_GROUP_RUNNER,
            Method::DELETE,
            (org, id),
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
        let repository: RepositoryId = decode(endpoints::GET_REPOSITORY, &answer.body)?;
        Ok(repository.id)
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
