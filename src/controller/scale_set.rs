//! Scale-set mode of a pool: its scale set on GitHub's Actions service
//! (found by name, or created in the pool's runner group with the pool's
//! labels and ownership mark), the listener that keeps its session open
//! while this replica leads, the runners minted from it, and its removal
//! with the pool.
//!
//! Everything else is as in webhook mode: a scale set's runners are
//! registrations of the pool's scope, listed, confirmed and removed through
//! the REST API with the same ownership checks.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use tracing::info;

use super::context::{Context, uid};
use crate::RunnerPool;
use crate::connection::Target;
use crate::demand::listener::{Listener, write_status};
use crate::demand::scale_set::{Observed, Served};
use crate::github::{GitHubError, JitConfig};
use crate::kit::error::Error;
use crate::kit::problem::{Blocked, Problem};
use crate::runner;
use crate::scaleset::{ActionsService, HttpSettings, ScaleSet, ScaleSetError};

/// How long a shutdown or a released pool waits for its session to close.
pub const SESSION_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The pool's scale set, served by a listener of this replica: found or
/// created on the first pass, then taken from memory.
pub async fn ensure(
    pool: &Arc<RunnerPool>,
    target: &Target,
    ctx: &Arc<Context>,
) -> Result<Result<Served, Blocked>, Error> {
    let pool_uid = uid(pool);
    let mut stale_session = None;
    if let Some(served) = ctx.scale_sets.served(&pool_uid) {
        if Arc::ptr_eq(&served.github, &target.api) && ctx.scale_sets.listening(&pool_uid) {
            return Ok(Ok(served));
        }
        // The credentials changed (a rotated Secret): a new service and
        // listener take over, closing the old session first.
        if let Some((_, observed)) = ctx.scale_sets.stop(&pool_uid) {
            stale_session = observed.session_id;
        }
    }
    let Some(name) = pool.scale_set_name() else {
        return Ok(Err(Blocked::new(
            Problem::InvalidSpec,
            "not a scale-set pool",
        )));
    };
    let service = service_of(ctx, target)?;
    let ownership = runner::ownership_label(&ctx.settings.install_id, &pool_uid);
    let scale_set = match find_or_create(pool, &service, target, name, &ownership).await {
        Ok(Ok(scale_set)) => scale_set,
        Ok(Err(blocked)) => return Ok(Err(blocked)),
        Err(e) => return Ok(Err(Blocked::github(&e.into(), "scale set not reachable"))),
    };
    let recorded = pool.status.as_ref().and_then(|s| s.scale_set.as_ref());
    let observed = Observed {
        scale_set_id: scale_set.id,
        scale_set_name: scale_set.name.clone(),
        statistics: scale_set.statistics,
        ..Observed::default()
    };
    write_status(&ctx.client, pool, &observed.status()).await?;
    let listener = Listener {
        service: service.clone(),
        observed: Default::default(),
        client: ctx.client.clone(),
        pool: pool.clone(),
        wake: ctx.wake.clone(),
        pods: ctx.pods.clone(),
        inventory: ctx.inventory.of(&target.api, &target.scope),
        metrics: ctx.metrics.clone(),
        recorder: ctx.recorder.clone(),
        max_capacity: max_capacity(pool),
        owner: ctx.settings.identity.clone(),
        stale_session: stale_session.or_else(|| recorded.and_then(|s| s.session_id.clone())),
    };
    let served = ctx.scale_sets.serve(
        &pool_uid,
        target.api.clone(),
        service,
        observed,
        move |observed| {
            tokio::spawn(
                Listener {
                    observed,
                    ..listener
                }
                .run(),
            )
            .abort_handle()
        },
    );
    Ok(Ok(served))
}

/// The Actions service of the pool's scope, reached with the pool's
/// credentials on the pool's host.
fn service_of(ctx: &Context, target: &Target) -> Result<ActionsService, Error> {
    let http = HttpSettings {
        ca_bundle: target.endpoint.ca_bundle.clone(),
        ..ctx.scale_set_http.clone()
    };
    let api_url = target.endpoint.api_base.as_str();
    ActionsService::new(target.api.clone(), target.scope.clone(), api_url, http)
        .map_err(|e| Error::GitHub(GitHubError::from(e)))
}

/// The scale set recorded in status, else the one of that name in the
/// pool's group if this pool made it, else a new one.
async fn find_or_create(
    pool: &RunnerPool,
    service: &ActionsService,
    target: &Target,
    name: &str,
    ownership: &str,
) -> Result<Result<ScaleSet, Blocked>, ScaleSetError> {
    let recorded = pool
        .status
        .as_ref()
        .and_then(|s| s.scale_set.as_ref())
        .and_then(|s| s.id);
    if let Some(id) = recorded
        && let Some(found) = service.get_scale_set(id as u64).await?
        && found.name == name
    {
        return Ok(Ok(found));
    }
    if let Some(found) = service.find_scale_set(target.runner_group_id, name).await? {
        return Ok(if found.labels.iter().any(|l| l == ownership) {
            Ok(found)
        } else {
            Err(Blocked::new(
                Problem::AlreadyExists,
                format!(
                    "a scale set named {name:?} already exists in runner group {} and this pool did not create it (it lacks label {ownership}); pick another spec.scaleSet.name, or delete that scale set",
                    target.runner_group_id
                ),
            ))
        });
    }
    let labels = runner::registration_labels(pool, ownership);
    let created = service
        .create_scale_set(name, target.runner_group_id, &labels)
        .await?;
    info!(pool = %pool.name_any(), scale_set = created.id, "scale set created");
    Ok(Ok(created))
}

/// `X-ScaleSetMaxCapacity`: the most runners the pool may have.
fn max_capacity(pool: &RunnerPool) -> u32 {
    match &pool.spec.autoscaling {
        Some(auto) => auto.max_runners.max(0) as u32,
        None => pool.spec.replicas.unwrap_or(1).max(0) as u32,
    }
}

/// Jobs assigned to the pool's scale set, running or not: from the
/// listener, else (before its session opened) from the pool's status.
pub fn assigned_jobs(pool: &RunnerPool, ctx: &Context) -> u32 {
    ctx.scale_sets.assigned_for(&uid(pool)).unwrap_or_else(|| {
        pool.status
            .as_ref()
            .and_then(|s| s.scale_set.as_ref())
            .and_then(|s| s.statistics)
            .map(|s| s.assigned_jobs.clamp(0, u32::MAX as i64) as u32)
            .unwrap_or(0)
    })
}

/// A new runner's JIT configuration from the pool's scale set.
pub async fn mint(pool: &RunnerPool, ctx: &Context, name: &str) -> Result<JitConfig, GitHubError> {
    let served = ctx.scale_sets.served(&uid(pool)).ok_or_else(|| {
        GitHubError::Unavailable("the pool's scale set is not served yet".to_string())
    })?;
    let id = crate::mutex::lock(&served.observed).scale_set_id;
    Ok(served.service.generate_jit_config(id, name).await?)
}

/// Removes the released pool's scale set: its listener stops, its session
/// closes, then the scale set goes. `Err` says why GitHub could not be asked.
pub async fn remove(pool: &RunnerPool, ctx: &Context, target: &Target) -> Result<(), String> {
    let pool_uid = uid(pool);
    let stopped = ctx.scale_sets.stop(&pool_uid);
    let recorded = pool
        .status
        .as_ref()
        .and_then(|s| s.scale_set.as_ref())
        .and_then(|s| s.id)
        .map(|id| id as u64);
    let (service, id) = match stopped {
        Some((service, observed)) => {
            let id = observed.scale_set_id;
            crate::demand::scale_set::ScaleSets::close_sessions(
                vec![(service.clone(), observed)],
                SESSION_CLOSE_TIMEOUT,
            )
            .await;
            (service, Some(id))
        }
        None => (
            service_of(ctx, target).map_err(|e| e.to_string())?,
            recorded,
        ),
    };
    let Some(id) = id else { return Ok(()) };
    service
        .delete_scale_set(id)
        .await
        .map_err(|e| format!("cannot delete scale set {id}: {e}"))?;
    info!(pool = %pool.name_any(), scale_set = id, "scale set deleted");
    Ok(())
}

impl From<ScaleSetError> for GitHubError {
    fn from(e: ScaleSetError) -> Self {
        match e {
            ScaleSetError::Busy => GitHubError::Busy,
            ScaleSetError::NotFound => GitHubError::NotFound("scale set".to_string()),
            ScaleSetError::Unauthorized(m) => GitHubError::Unauthorized {
                status: 401,
                message: m,
            },
            ScaleSetError::Rejected(m) => GitHubError::Invalid(m),
            ScaleSetError::RunnerExists(m) => GitHubError::Conflict(m),
            ScaleSetError::Protocol(m) => GitHubError::Protocol(m),
            other => GitHubError::Unavailable(other.to_string()),
        }
    }
}
