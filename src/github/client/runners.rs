//! The runner endpoints of [`GitHubApi`] on [`GitHubClient`]: listing and
//! finding runners, registering one with a just-in-time configuration,
//! removing one, its custom labels, and the (cached) runner-group listing
//! pools resolve their group with.

use std::collections::HashSet;
use std::time::Instant;

use async_trait::async_trait;
use reqwest::Method;

use super::endpoints;
use super::requests::GitHubClient;
use super::wire::{Call, JitAnswer, LabelsAnswer, PER_PAGE, RunnerGroupPage, RunnerPage, decode};
use crate::github::{
    GitHubApi, GitHubError, JitConfig, JitRequest, RegistrationToken, Result, Runner, RunnerGroup,
    RunnerLabel, Scope, WorkflowJob,
};
use crate::mutex::lock;

impl GitHubClient {
    /// The scope's runners from every page; with `name`, those GitHub's name
    /// filter matches.
    async fn runners_matching(&self, scope: &Scope, name: Option<&str>) -> Result<Vec<Runner>> {
        let mut url = self.scope_url(scope, &["actions", "runners"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(name) = name {
                query.append_pair("name", name);
            }
            query.append_pair("per_page", PER_PAGE);
        }
        let mut runners = Vec::new();
        let mut seen = HashSet::new();
        let mut last_total = None;
        self.for_each_page(
            endpoints::LIST_RUNNERS,
            url,
            &format!("runners in {scope}"),
            |body| {
                let page: RunnerPage = decode(endpoints::LIST_RUNNERS, body)?;
                last_total = page.total_count.or(last_total);
                // Pages are offsets into a list that may change while we read it;
                // a runner shifted onto the next page must not appear twice.
                runners.extend(page.runners.into_iter().filter(|r| seen.insert(r.id)));
                Ok(())
            },
        )
        .await?;
        if let Some(total) = last_total
            && total != runners.len() as u64
        {
            tracing::debug!(
                total,
                listed = runners.len(),
                "runner list changed while it was being paged"
            );
        }
        Ok(runners)
    }
}

#[async_trait]
impl GitHubApi for GitHubClient {
    /// Every runner in the scope. Pages are separate requests, so the list is
    /// not an atomic snapshot: a runner removed while paging can shift another
    /// one past us. Confirm absence with `get_runner` before acting on it.
    #[tracing::instrument(skip_all, fields(scope = %scope))]
    async fn list_runners(&self, scope: &Scope) -> Result<Vec<Runner>> {
        self.runners_matching(scope, None).await
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner = %name))]
    async fn find_runner_by_name(&self, scope: &Scope, name: &str) -> Result<Option<Runner>> {
        let runners = self.runners_matching(scope, Some(name)).await?;
        // GitHub's filter may match case-insensitively; an exact match wins.
        let exact = runners.iter().position(|runner| runner.name == name);
        let loose = || {
            runners
                .iter()
                .position(|runner| runner.name.eq_ignore_ascii_case(name))
        };
        Ok(exact.or_else(loose).map(|at| runners[at].clone()))
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_id = id))]
    async fn get_runner(&self, scope: &Scope, id: u64) -> Result<Runner> {
        let url = self.scope_url(scope, &["actions", "runners", &id.to_string()]);
        let answer = self
            .execute(Call::get(
                endpoints::GET_RUNNER,
                url,
                format!("runner {id} in {scope}"),
            ))
            .await?;
        decode(endpoints::GET_RUNNER, &answer.body)
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner = %request.name, runner_group_id = request.runner_group_id))]
    async fn generate_jitconfig(&self, scope: &Scope, request: &JitRequest) -> Result<JitConfig> {
        let url = self.scope_url(scope, &["actions", "runners", "generate-jitconfig"]);
        let body = serde_json::to_vec(request).map_err(|_| {
            GitHubError::Invalid("the JIT request cannot be encoded as JSON".into())
        })?;
        let answer = self
            .execute(Call {
                endpoint: endpoints::GENERATE_JITCONFIG,
                method: Method::POST,
                url,
                body: Some(body),
                subject: format!("runner group {} in {scope}", request.runner_group_id),
            })
            .await?;
        let jit: JitAnswer = decode(endpoints::GENERATE_JITCONFIG, &answer.body)?;
        Ok(JitConfig {
            runner: jit.runner,
            encoded_jit_config: jit.encoded_jit_config,
        })
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_id = id))]
    async fn delete_runner(&self, scope: &Scope, id: u64) -> Result<()> {
        let url = self.scope_url(scope, &["actions", "runners", &id.to_string()]);
        let get_url = url.clone();
        self.execute(Call {
            endpoint: endpoints::DELETE_RUNNER,
            method: Method::DELETE,
            url,
            body: None,
            subject: format!("runner {id} in {scope}"),
        })
        .await?;
        // The runner's cached GET answer describes something that no longer exists.
        self.etags.remove(get_url.as_str());
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, runner_id = id, labels = ?labels))]
    async fn set_custom_labels(
        &self,
        scope: &Scope,
        id: u64,
        labels: &[String],
    ) -> Result<Vec<RunnerLabel>> {
        let url = self.scope_url(scope, &["actions", "runners", &id.to_string(), "labels"]);
        let body = serde_json::to_vec(&serde_json::json!({ "labels": labels }))
            .map_err(|_| GitHubError::Invalid("the labels cannot be encoded as JSON".into()))?;
        let answer = self
            .execute(Call {
                endpoint: endpoints::SET_CUSTOM_LABELS,
                method: Method::PUT,
                url,
                body: Some(body),
                subject: format!("runner {id} in {scope}"),
            })
            .await?;
        let labels: LabelsAnswer = decode(endpoints::SET_CUSTOM_LABELS, &answer.body)?;
        Ok(labels.labels)
    }

    /// Never retried (a POST), never cached: each token is fresh.
    #[tracing::instrument(skip_all, fields(scope = %scope))]
    async fn registration_token(&self, scope: &Scope) -> Result<RegistrationToken> {
        let url = self.scope_url(scope, &["actions", "runners", "registration-token"]);
        let answer = self
            .execute(Call {
                endpoint: endpoints::CREATE_REGISTRATION_TOKEN,
                method: Method::POST,
                url,
                body: None,
                subject: format!("registration token of {scope}"),
            })
            .await?;
        decode(endpoints::CREATE_REGISTRATION_TOKEN, &answer.body)
    }

    /// Runner groups, reused for `runner_group_ttl`: group names change rarely and
    /// every pool resolves its group on every reconcile.
    #[tracing::instrument(skip_all, fields(scope = %scope))]
    async fn list_runner_groups(&self, scope: &Scope) -> Result<Vec<RunnerGroup>> {
        if let Scope::Repository { .. } = scope {
            return Err(GitHubError::Invalid(
                "runner groups exist only for organizations and enterprises; repository runners use the default group"
                    .into(),
            ));
        }
        if let Some((fetched, groups)) = lock(&self.runner_groups).get(scope)
            && fetched.elapsed() < self.options.runner_group_ttl
        {
            return Ok(groups.clone());
        }
        let mut url = self.scope_url(scope, &["actions", "runner-groups"]);
        url.query_pairs_mut().append_pair("per_page", PER_PAGE);
        let mut groups = Vec::new();
        self.for_each_page(
            endpoints::LIST_RUNNER_GROUPS,
            url,
            &format!("runner groups of {scope}"),
            |body| {
                let page: RunnerGroupPage = decode(endpoints::LIST_RUNNER_GROUPS, body)?;
                groups.extend(page.runner_groups);
                Ok(())
            },
        )
        .await?;
        lock(&self.runner_groups).insert(scope.clone(), (Instant::now(), groups.clone()));
        Ok(groups)
    }

    #[tracing::instrument(skip_all, fields(repository = %repository, job_id = id))]
    async fn workflow_job(&self, repository: &str, id: u64) -> Result<WorkflowJob> {
        self.read_workflow_job(repository, id).await
    }
}
