//! Direct reads that confirm what the shared view says before a write rests
//! on it. A paged list is not a snapshot (ephemeral runners shift pages all
//! the time) and the view ages between lists, so a runner's absence or its
//! owner is read from GitHub itself before a DELETE or a label update.

use super::ScopeInventory;
use crate::github::GitHubError;

impl ScopeInventory {
    /// Whether runner `id` is the runner named `name` (a runner is named after
    /// its pod and Secret), in the view or, when the view lacks it, in a
    /// direct read. A runner GitHub does not know is nobody's to protect (its
    /// DELETE answers 404, which is then confirmed as usual).
    pub async fn is_runner_named(&self, id: u64, name: &str) -> Result<bool, GitHubError> {
        match self.runner(id) {
            Some(runner) => Ok(runner.name == name),
            None => match self.api.get_runner(&self.scope, id).await {
                Ok(runner) => Ok(runner.name == name),
                Err(GitHubError::NotFound(_)) => Ok(true),
                Err(e) => Err(e),
            },
        }
    }

    /// Reads a 404 on DELETE of runner `id` as "already gone" only if the
    /// scope still answers and does not list the runner. After a lost
    /// permission, a renamed organization or a wrong API URL every runner
    /// answers 404, and removing its pod on that say-so would kill jobs and
    /// leak registrations.
    pub async fn confirm_gone(&self, id: u64) -> Result<(), GitHubError> {
        let (api, scope) = (&self.api, &self.scope);
        let runners = api.list_runners(scope).await?;
        // A paged list is not a snapshot: absence from it is confirmed by a
        // read of the runner itself.
        let listed = runners.iter().any(|r| r.id == id)
            || match api.get_runner(scope, id).await {
                Ok(_) => true,
                Err(GitHubError::NotFound(_)) => false,
                Err(e) => return Err(e),
            };
        if listed {
            return Err(GitHubError::Protocol(format!(
                "runner {id} is in {scope} but its DELETE answered 404"
            )));
        }
        Ok(())
    }
}
