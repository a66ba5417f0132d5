//! Registering new runners: each with its own JIT configuration, Secret and
//! pod, started as a task of its own so that a pass cut by the reconcile
//! bound never abandons a registration between the mint and the pod.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use tracing::{debug, info, instrument, warn};

use super::context::{Context, uid};
use super::observe::inventory_of;
use super::scale_set;
use crate::RunnerPool;
use crate::connection::Target;
use crate::github::{GitHubError, JitRequest};
use crate::kit::error::{Error, successes};
use crate::pod::build::{runner_pod, runner_secret, secret_owner_patch};
use crate::runner;

/// Registers `count` new runners, each with its own JIT config, Secret and pod.
/// New registrations start only during the first half of the reconcile bound
/// (the pass requeues at once for the rest): a large burst is cut between
/// runners, not by the bound in the middle of a mint → Secret → pod.
///
/// Each runner's creation runs as its own task, so a pass cut by the bound
/// (a loaded API server, a slow GitHub) leaves the creations it started to
/// finish instead of abandoning registrations between the mint and the pod;
/// the next pass counts them as being created. Their writes go through the
/// same leadership fence as every other write.
pub async fn create_runners(
    pool: &Arc<RunnerPool>,
    target: &Target,
    ctx: &Arc<Context>,
    count: u32,
    ownership: &str,
    labels_hash: &str,
    first_error: &mut Option<GitHubError>,
) -> Result<u32, Error> {
    let stop_starting = Instant::now() + ctx.settings.reconcile_timeout / 2;
    let results: Vec<Result<(), Error>> = futures::stream::iter(0..count)
        .take_while(|_| futures::future::ready(Instant::now() < stop_starting))
        .map(|_| {
            let (pool, target, ctx) = (pool.clone(), target.clone(), ctx.clone());
            let (ownership, labels_hash) = (ownership.to_string(), labels_hash.to_string());
            // Counted before the task exists, so a deletion of the pool never
            // misses a creation that has not started yet (see cleanup).
            let in_flight = CreationInFlight::start(&ctx, &uid(&pool));
            let task = tokio::spawn(async move {
                let _in_flight = in_flight;
                create_runner(&pool, &target, &ctx, &ownership, &labels_hash).await
            });
            async move {
                task.await
                    .unwrap_or_else(|e| Err(Error::CreateTask(e.to_string())))
            }
        })
        .buffer_unordered(ctx.settings.create_concurrency.max(1))
        .collect()
        .await;
    Ok(successes(results, first_error)?.len() as u32)
}

/// One runner creation under way, counted in the pool's memory until the
/// task running it ends (or is dropped).
struct CreationInFlight {
    ctx: Arc<Context>,
    pool_uid: String,
}

impl CreationInFlight {
    fn start(ctx: &Arc<Context>, pool_uid: &str) -> Self {
        ctx.creations.started();
        ctx.memory.with(pool_uid, |m| m.creation_started());
        CreationInFlight {
            ctx: ctx.clone(),
            pool_uid: pool_uid.to_string(),
        }
    }
}

impl Drop for CreationInFlight {
    fn drop(&mut self) {
        self.ctx
            .memory
            .with_existing(&self.pool_uid, |m| m.creation_ended());
        self.ctx.creations.ended();
    }
}

#[instrument(skip_all, fields(pool = %pool.name_any(), scope = %target.scope))]
async fn create_runner(
    pool: &RunnerPool,
    target: &Target,
    ctx: &Context,
    ownership: &str,
    labels_hash: &str,
) -> Result<(), Error> {
    let pool_uid = uid(pool);
    let mut attempts = 0;
    let jit = loop {
        attempts += 1;
        let request = JitRequest {
            name: runner::new_runner_name(pool.runner_name_prefix()),
            runner_group_id: target.runner_group_id,
            labels: runner::registration_labels(pool, ownership),
            work_folder: pool.work_folder().to_string(),
        };
        // Counted as being created before the call, so a concurrent list never
        // sees the new registration as an orphan.
        ctx.memory
            .with(&pool_uid, |m| m.expect_created(&request.name));
        let started = Instant::now();
        let minted = match pool.spec.scale_set {
            Some(_) => scale_set::mint(pool, ctx, &request.name).await,
            None => target.api.generate_jitconfig(&target.scope, &request).await,
        };
        match minted {
            Ok(jit) => {
                ctx.metrics
                    .jit_mint_duration
                    .observe(started.elapsed().as_secs_f64());
                break jit;
            }
            Err(GitHubError::Conflict(_)) if attempts < 3 => {
                // Every attempt draws a new random name, so a 409 is a clash
                // with some other runner's name (a lost answer to an earlier
                // attempt had a different name). That runner is not ours to
                // judge, whoever owns it: nothing is removed, another name is tried.
                ctx.memory
                    .with(&pool_uid, |m| m.forget_created(&request.name));
                debug!(runner = %request.name, "runner name taken on GitHub; trying another");
            }
            Err(e) => {
                ctx.memory
                    .with(&pool_uid, |m| m.forget_created(&request.name));
                return Err(e.into());
            }
        }
    };
    let name = jit.runner.name.clone();
    let runner_id = jit.runner.id;
    let namespace = pool.namespace().unwrap_or_default();

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    // Created, never updated: a runner's Secret and pod are immutable once
    // made. The Secret is then tied to the pod, so the two go together.
    let made = async {
        secrets
            .create(&PostParams::default(), &runner_secret(pool, &jit))
            .await?;
        pods.create(
            &PostParams::default(),
            &runner_pod(pool, &name, runner_id, labels_hash),
        )
        .await
    }
    .await;
    let pod = match made {
        Ok(pod) => pod,
        Err(e) => {
            // Don't leave a registration nobody will use; the GitHub view's garbage
            // collection catches it should this fail too.
            warn!(runner = %name, error = %e, "could not create the runner's Secret or pod; removing its registration");
            let _ = target.api.delete_runner(&target.scope, runner_id).await;
            let _ = secrets.delete(&name, &DeleteParams::default()).await;
            ctx.memory.with(&pool_uid, |m| m.forget_created(&name));
            return Err(e.into());
        }
    };
    // The pod exists: the oldest job waiting for this pool is served.
    if let Some(waited) = ctx.demand.serve_oldest(&pool_uid, Instant::now()) {
        ctx.metrics
            .queued_to_pod_duration
            .observe(waited.as_secs_f64());
    }
    // Without the tie the Secret is still removed with its runner by the
    // operator; only the garbage collector's shortcut is missing.
    let tie = Patch::Merge(secret_owner_patch(&pod));
    if let Err(e) = secrets.patch(&name, &PatchParams::default(), &tie).await {
        warn!(runner = %name, error = %e, "could not make the runner's Secret a dependent of its pod");
    }
    ctx.metrics.runners_created.inc();
    {
        let mut runner = jit.runner.clone();
        if runner.labels.is_empty() {
            runner.labels = runner::registration_labels(pool, ownership)
                .into_iter()
                .map(|name| crate::github::RunnerLabel {
                    id: None,
                    kind: if runner::is_read_only_label(&name) {
                        crate::github::LabelType::ReadOnly
                    } else {
                        crate::github::LabelType::Custom
                    },
                    name,
                })
                .collect();
        }
        inventory_of(ctx, target).added(runner);
    }
    info!(runner = %name, runner_id, "runner registered");
    Ok(())
}
