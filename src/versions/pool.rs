//! A pool's runner version against the newest release GitHub serves to its
//! scope, for `status.runnerVersion` and the `RunnerVersionOutdated`
//! condition. The releases come from the scope's shared cache
//! ([`super::releases::LatestReleases`]); a failed read never stops a pass.

use std::sync::Arc;
use std::time::Duration;

use super::releases::LatestReleases;
use super::{Assessment, assess, pool_version, recalled};
use crate::RunnerPool;
use crate::github::{GitHubApi, Scope};

/// How long a pass waits for a downloads read under way before it goes on
/// with the last known release (the read still lands in the cache, for the
/// next pass). Short: a pass is bounded as a whole (`reconcile_timeout`).
pub const READ_WAIT: Duration = Duration::from_secs(1);

/// Compares the pool's runner version with its scope's newest release.
pub async fn assess_pool(
    pool: &RunnerPool,
    releases: &LatestReleases,
    api: &Arc<dyn GitHubApi>,
    scope: &Scope,
) -> Assessment {
    let previous = pool.status.as_ref();
    // Releases are per GitHub host and scope, whatever the credential.
    let host = crate::connection::endpoint(&pool.spec.github)
        .map(|e| e.api_base.to_string())
        .unwrap_or_default();
    let recalled = recalled(previous.and_then(|s| s.runner_version.as_ref()));
    let releases = releases
        .releases(api, &host, scope, recalled, READ_WAIT)
        .await;
    let image = pool.runner_image();
    let version = pool_version(image, pool.spec.runner_version.as_deref());
    assess(version, image, &releases, scope)
}
