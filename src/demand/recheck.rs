//! Asks GitHub about queued jobs the operator has held for a while: a queued
//! job leaves demand only when GitHub says so, and its `in_progress` or
//! `completed` delivery may be lost. Jobs queued at least the check interval
//! ago, and jobs learnt from a status or the delivery log after a restart,
//! are read with `GET /repos/{owner}/{repo}/actions/jobs/{job_id}` through
//! their pool's connection: one that started or ended leaves demand, one
//! GitHub no longer knows is dropped, one still queued stays (and is read
//! again one interval later).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::{debug, info};

use super::routing::wake;
use super::store::WebhookDemand;
use crate::RunnerPool;
use crate::controller::context::Context;
use crate::github::GitHubError;

/// Jobs read in one pass at most; the rest wait for the next pass, so a
/// large backlog spreads its reads over time.
const MAX_READS_PER_PASS: usize = 200;

/// Reads due jobs every `min(after, sync interval)` until the task ends.
pub async fn run(
    demand: Arc<WebhookDemand>,
    pools: Store<RunnerPool>,
    ctx: Arc<Context>,
    trigger: UnboundedSender<ObjectRef<RunnerPool>>,
    after: Duration,
) {
    let every = after
        .min(ctx.settings.github_sync_interval)
        .max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let touched = check_due(&demand, &ctx, after).await;
        wake(&pools, &trigger, touched);
    }
}

/// One pass; returns the pools whose demand changed.
async fn check_due(demand: &WebhookDemand, ctx: &Context, after: Duration) -> BTreeSet<String> {
    let mut touched = BTreeSet::new();
    let due = demand.due_for_check(Instant::now(), after);
    for job in due.into_iter().take(MAX_READS_PER_PASS) {
        // A pool not connected yet (its first pass after a restart is under
        // way) is read at the next pass.
        let Some(target) = ctx
            .memory
            .with_existing(&job.pool, |m| m.target.clone())
            .flatten()
        else {
            continue;
        };
        let now = Instant::now();
        match target.api.workflow_job(&job.repository, job.job_id).await {
            Ok(read) if read.waiting() => demand.checked(job.job_id, now),
            Ok(read) => {
                debug!(job_id = job.job_id, status = %read.status, "a queued job started or ended without its delivery");
                let pools = match read.status.as_str() {
                    "in_progress" => demand.started(job.job_id, None, now).into_iter().collect(),
                    _ => demand.completed(job.job_id, None, now),
                };
                touched.extend(pools);
            }
            Err(GitHubError::NotFound(_)) => {
                info!(job_id = job.job_id, repository = %job.repository, "a queued job GitHub no longer knows left demand");
                touched.extend(demand.gone(job.job_id, now));
            }
            Err(e @ GitHubError::RateLimited { .. }) => {
                debug!(error = %e, "queued jobs are read again after the rate limit");
                break;
            }
            Err(e) => {
                // Kept: only GitHub's word removes demand.
                debug!(job_id = job.job_id, category = e.category(), error = %e, "could not read a queued job");
            }
        }
    }
    touched
}
