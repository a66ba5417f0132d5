//! The workflow-job read: whether a job the operator holds as demand still
//! waits for a runner (`GET /repos/{owner}/{repo}/actions/jobs/{job_id}`,
//! conditional, so an unchanged job costs no rate-limit budget).

use super::endpoints;
use super::requests::GitHubClient;
use super::wire::{Call, decode};
use crate::github::{GitHubError, Result, WorkflowJob};

impl GitHubClient {
    /// Job `id` of `repository` (`owner/name`).
    pub(super) async fn read_workflow_job(&self, repository: &str, id: u64) -> Result<WorkflowJob> {
        let Some((owner, repo)) = repository
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
        else {
            return Err(GitHubError::Invalid(format!(
                "{repository:?} is not a repository name (owner/name)"
            )));
        };
        let url = self.url(&["repos", owner, repo, "actions", "jobs", &id.to_string()]);
        let answer = self
            .execute(Call::get(
                endpoints::GET_WORKFLOW_JOB,
                url,
                format!("job {id} of {repository}"),
            ))
            .await?;
        decode(endpoints::GET_WORKFLOW_JOB, &answer.body)
    }
}
