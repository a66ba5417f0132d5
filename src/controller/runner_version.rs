//! A pool's runner version against the newest release GitHub serves to its
//! scope: `status.runnerVersion`, the `RunnerVersionOutdated` condition, the
//! `runnerpool_runner_version_outdated` gauge and one Warning event when the
//! runners become outdated. The releases come from the scope's shared cache
//! ([`crate::versions::LatestReleases`]); a failed read never stops a pass.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::reconcile::Target;
use super::{Context, uid};
use crate::RunnerPool;
use crate::versions::{self, Assessment};

/// How long a pass waits for a downloads read under way before it goes on
/// with the last known release (the read still lands in the cache, for the
/// next pass). Short: a pass is bounded as a whole (`reconcile_timeout`).
pub const READ_WAIT: Duration = Duration::from_secs(1);

/// Compares the pool's runner version with its scope's newest release,
/// updates the gauge and announces a pool that just became outdated.
pub async fn assess(pool: &RunnerPool, ctx: &Context, target: &Target) -> Assessment {
    let previous = pool.status.as_ref();
    // Releases are per GitHub host and scope, whatever the credential.
    let host = crate::connection::endpoint(&pool.spec.github)
        .map(|e| e.api_base.to_string())
        .unwrap_or_default();
    let recalled = versions::recalled(previous.and_then(|s| s.runner_version.as_ref()));
    let releases = ctx
        .releases
        .releases(&target.api, &host, &target.scope, recalled, READ_WAIT)
        .await;
    let image = pool.runner_image();
    let version = versions::pool_version(image, pool.spec.runner_version.as_deref());
    let assessment = versions::assess(version, image, &releases, &target.scope);

    let namespace = pool.namespace().unwrap_or_default();
    ctx.metrics
        .set_runner_version_outdated(&namespace, &pool.name_any(), assessment.outdated());
    let outdated = assessment.outdated() == Some(true);
    let was_outdated = previous
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == versions::OUTDATED && c.status == "True");
    // The memory keeps a pass that read a stale pool from announcing twice.
    let announce = ctx.memory.with(&uid(pool), |m| {
        let announce = outdated && !was_outdated && !m.outdated_announced;
        m.outdated_announced = outdated;
        announce
    });
    if announce {
        ctx.event(
            pool,
            EventType::Warning,
            versions::OUTDATED,
            "CheckRunnerVersion",
            assessment.condition.message.clone(),
        )
        .await;
    }
    assessment
}
