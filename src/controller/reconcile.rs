//! One pass over a live pool: observe → connect → plan → act → status.
//!
//! Observing reads only the watch caches. Connecting reads the credentials
//! Secret and resolves the runner group. GitHub is listed only when the last
//! view is older than the sync interval (or a bootstrap deadline needs a fresh
//! one); on the hot path a new runner costs one generate-jitconfig call.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use serde::Serialize;
use tracing::{debug, info, instrument, warn};

use super::inventory::ScopeInventory;
use super::plan::{self, Inputs, PodPhase, PodView, Removal, RemovalReason, Scaling, SecretView};
use super::schedule;
use super::status::{self, Problem};
use super::{Context, Error, FIELD_MANAGER, backoff, confirm, failures, jittered, uid};
use crate::crd::RunnerPoolStatus;
use crate::github::{GitHubApi, GitHubError, JitRequest, RunnerStatus, Scope};
use crate::runner::{self, POOL_LABEL, POOL_UID_LABEL};
use crate::versions::Assessment;
use crate::{RunnerPool, connection};

/// The GitHub side of a pool, once connected.
#[derive(Clone)]
pub struct Target {
    pub api: Arc<dyn GitHubApi>,
    pub scope: Scope,
    pub runner_group_id: u64,
}

/// Why the pool cannot reach GitHub, for the Degraded condition.
pub struct Unreachable {
    pub problem: Problem,
    pub message: String,
    pub retry_in: Option<Duration>,
}

impl Unreachable {
    pub fn new(problem: Problem, message: impl Into<String>) -> Self {
        Unreachable {
            problem,
            message: message.into(),
            retry_in: None,
        }
    }

    fn from_github(error: &GitHubError, what: &str) -> Self {
        let problem = match error {
            GitHubError::Unauthorized { .. }
            | GitHubError::InvalidCredentials(_)
            | GitHubError::NotFound(_) => Problem::CredentialsInvalid,
            GitHubError::RateLimited { .. } => Problem::RateLimited,
            GitHubError::InvalidEndpoint(_) => Problem::InvalidSpec,
            _ => Problem::GitHubUnavailable,
        };
        match error {
            // The wait is not in the message: a countdown would rewrite status
            // on every pass.
            GitHubError::RateLimited {
                retry_after,
                secondary,
            } => {
                let limit = if *secondary { "secondary" } else { "primary" };
                let mut unreachable = Unreachable::new(
                    problem,
                    format!(
                        "{what}: GitHub's {limit} rate limit is exhausted; nothing is sent until it resets"
                    ),
                );
                unreachable.retry_in = Some(*retry_after);
                unreachable
            }
            _ => Unreachable::new(problem, format!("{what}: {error}")),
        }
    }
}

/// The pool's credentials Secret. `Ok(Err(_))` is a problem of the pool,
/// shown in its status: the Secret is missing, or the operator may not read
/// it. A request that failed (the API server restarting or unreachable, a
/// timeout) says nothing of the credentials: it is an error, retried soon.
pub async fn credentials_secret(
    pool: &RunnerPool,
    ctx: &Context,
) -> Result<Result<Secret, Unreachable>, Error> {
    let namespace = pool.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret_name = &pool.spec.github.credentials_secret.name;
    match secrets.get_opt(secret_name).await {
        Ok(Some(secret)) => Ok(Ok(secret)),
        Ok(None) => Ok(Err(Unreachable::new(
            Problem::CredentialsInvalid,
            format!("credentials Secret {secret_name:?} not found in namespace {namespace:?}"),
        ))),
        Err(e) => match refusal(&e) {
            Some(why) => Ok(Err(Unreachable::new(
                Problem::CredentialsInvalid,
                format!("cannot read credentials Secret {secret_name:?}: {why}"),
            ))),
            None => Err(e.into()),
        },
    }
}

/// The API server's message when it refused a request for good (401, 403:
/// a person must grant access); `None` for a failure worth retrying.
fn refusal(error: &kube::Error) -> Option<&str> {
    match error {
        kube::Error::Api(status) if status.code == 401 || status.code == 403 => {
            Some(&status.message)
        }
        _ => None,
    }
}

/// Resolves scope, endpoint and runner group with the pool's credentials.
pub async fn connect(
    pool: &RunnerPool,
    ctx: &Context,
    secret: &Secret,
) -> Result<Target, Unreachable> {
    let spec = &pool.spec.github;
    let invalid =
        |e: connection::ConnectionError| Unreachable::new(Problem::InvalidSpec, e.to_string());
    let scope = connection::scope(spec).map_err(invalid)?;
    let endpoint = connection::endpoint(spec).map_err(invalid)?;

    let credentials = connection::credentials(secret, &scope)
        .map_err(|e| Unreachable::new(Problem::CredentialsInvalid, e.to_string()))?;
    let api = ctx
        .github
        .connect(&endpoint, &credentials)
        .map_err(|e| Unreachable::from_github(&e, "cannot use the credentials"))?;

    if let Some(reference) = &pool.spec.runner_group_ref {
        let runner_group_id = referenced_group_id(pool, &reference.name, ctx).await?;
        return Ok(Target {
            api,
            scope,
            runner_group_id,
        });
    }
    let runner_group_id = match (&pool.spec.runner_group_id, &pool.spec.runner_group, &scope) {
        (Some(id), _, _) => *id as u64,
        (None, None, _) | (None, Some(_), Scope::Repository { .. }) => DEFAULT_RUNNER_GROUP,
        (None, Some(name), _) => {
            let groups = api
                .list_runner_groups(&scope)
                .await
                .map_err(|e| Unreachable::from_github(&e, "cannot list runner groups"))?;
            match groups.iter().find(|g| g.name == *name) {
                Some(group) => group.id,
                None => {
                    return Err(Unreachable::new(
                        Problem::RunnerGroupNotFound,
                        format!("runner group {name:?} does not exist in {scope}"),
                    ));
                }
            }
        }
    };
    Ok(Target {
        api,
        scope,
        runner_group_id,
    })
}

/// The id of the group a `RunnerGroup` of the pool's namespace manages; no
/// runner is registered before that group exists.
async fn referenced_group_id(
    pool: &RunnerPool,
    name: &str,
    ctx: &Context,
) -> Result<u64, Unreachable> {
    let namespace = pool.namespace().unwrap_or_default();
    let group = Api::<crate::crd::RunnerGroup>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(name)
        .await
        .map_err(|e| Unreachable::new(Problem::RunnerGroupNotFound, format!("cannot read RunnerGroup {name:?}: {e}")))?
        .ok_or_else(|| {
            Unreachable::new(
                Problem::RunnerGroupNotFound,
                format!("RunnerGroup {name:?} (spec.runnerGroupRef) not found in namespace {namespace:?}"),
            )
        })?;
    let organization = &group.spec.github.organization;
    if !pool
        .spec
        .github
        .organization
        .as_deref()
        .is_some_and(|o| o.eq_ignore_ascii_case(organization))
    {
        return Err(Unreachable::new(
            Problem::InvalidSpec,
            format!(
                "RunnerGroup {name:?} belongs to organization {organization:?}, not to the pool's"
            ),
        ));
    }
    group
        .status
        .and_then(|s| s.group_id)
        .map(|id| id as u64)
        .ok_or_else(|| {
            Unreachable::new(
                Problem::RunnerGroupNotFound,
                format!("RunnerGroup {name:?} has no group on GitHub yet (see its status)"),
            )
        })
}

/// GitHub's default runner group.
pub const DEFAULT_RUNNER_GROUP: u64 = 1;

/// The pool's pods and Secrets, from the watch caches.
pub fn observe(pool: &RunnerPool, ctx: &Context) -> (Vec<PodView>, Vec<SecretView>) {
    let namespace = pool.namespace();
    let name = pool.name_any();
    let pool_uid = uid(pool);
    // By the pool-UID label: a new pool of the same name never adopts the
    // runners of a deleted one. Pods made before that label existed are
    // recognised by their ownerReference.
    let mine = |meta: &kube::api::ObjectMeta| {
        let labels = meta.labels.as_ref();
        meta.namespace == namespace
            && match labels.and_then(|l| l.get(POOL_UID_LABEL)) {
                Some(owner) => *owner == pool_uid,
                None => {
                    labels.and_then(|l| l.get(POOL_LABEL)) == Some(&name)
                        && meta
                            .owner_references
                            .iter()
                            .flatten()
                            .any(|o| o.uid == pool_uid && o.controller == Some(true))
                }
            }
    };
    // Through the per-pool indexes: O(the pool's objects), not the cache's.
    let ns = namespace.clone().unwrap_or_default();
    let pods = ctx
        .pod_index
        .names(&ns, &name)
        .into_iter()
        .filter_map(|n| ctx.pods.get(&ObjectRef::new(&n).within(&ns)))
        .filter(|p| mine(&p.metadata))
        .map(|p| pod_view(&p))
        .collect();
    let secrets = ctx
        .secret_index
        .names(&ns, &name)
        .into_iter()
        .filter_map(|n| ctx.secrets.get(&ObjectRef::new(&n).within(&ns)))
        .filter(|s| mine(&s.metadata))
        .map(|s| secret_view(&s))
        .collect();
    (pods, secrets)
}

/// What the planner needs of a runner pod.
pub fn pod_view(p: &Pod) -> PodView {
    PodView {
        name: p.name_any(),
        runner_id: runner::runner_id_of(p),
        phase: PodPhase::of_runner(p.status.as_ref()),
        deleting: p.metadata.deletion_timestamp.is_some(),
        created: p
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now),
        started: p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0),
        labels_hash: p.annotations().get(runner::LABELS_HASH_ANNOTATION).cloned(),
    }
}

/// What the planner needs of a runner Secret.
pub fn secret_view(s: &kube::api::PartialObjectMeta<Secret>) -> SecretView {
    SecretView {
        name: s.name_any(),
        runner_id: runner::runner_id_of(s),
    }
}

/// The pool's bounds now: autoscaling's minRunners and idleRunners as
/// raised by its active schedule windows.
pub fn scaling(pool: &RunnerPool) -> Scaling {
    match &pool.spec.autoscaling {
        Some(auto) => {
            let scheduled = schedule::effective(auto, Timestamp::now());
            Scaling::Auto {
                min: scheduled.min,
                max: auto.max_runners.max(0) as u32,
                idle: scheduled.idle,
                scale_down_delay: Duration::from_secs(
                    auto.scale_down_delay_seconds.unwrap_or(60).max(0) as u64,
                ),
            }
        }
        None => Scaling::Fixed(pool.spec.replicas.unwrap_or(1).max(0) as u32),
    }
}

/// The shared view of the pool's scope on GitHub (see [`inventory`]).
pub fn inventory_of(ctx: &Context, target: &Target) -> Arc<ScopeInventory> {
    ctx.inventory.of(&target.api, &target.scope)
}

/// The inventory the pool last reached GitHub through, if any.
fn last_inventory(pool_uid: &str, ctx: &Context) -> Option<Arc<ScopeInventory>> {
    let target = ctx.memory.with(pool_uid, |m| m.target.clone())?;
    Some(inventory_of(ctx, &target))
}

fn list_problem(error: &GitHubError, target: &Target) -> Unreachable {
    Unreachable::from_github(error, &format!("cannot list runners of {}", target.scope))
}

#[instrument(skip_all, fields(pool = %pool.name_any()))]
pub async fn apply(pool: Arc<RunnerPool>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let pool_uid = uid(&pool);
    let ownership = runner::ownership_label(&ctx.settings.install_id, &pool_uid);
    let desired_labels = runner::desired_custom_labels(&pool, &ownership);
    let desired_hash = runner::labels_hash(&desired_labels);

    // A template that would hand the credentials to every job is refused
    // before anything is registered.
    let connected = match runner::credentials_exposure(&pool) {
        Some(place) => Err(Unreachable::new(
            Problem::InvalidSpec,
            format!(
                "spec.template uses the credentials Secret {:?} ({place}); runner pods run untrusted jobs and must not see it: no runner is created until it is removed",
                pool.spec.github.credentials_secret.name
            ),
        )),
        None => match credentials_secret(&pool, ctx).await? {
            Ok(secret) => connect(&pool, ctx, &secret).await,
            Err(unreachable) => Err(unreachable),
        },
    };
    let target = match connected {
        Ok(target) => Arc::new(target),
        Err(unreachable) => {
            // Finished runners need no GitHub call (GitHub removed them when
            // their job ended): their pods and Secrets go regardless.
            let plan = make_plan(&pool, ctx, &ownership, &desired_labels, &desired_hash);
            remove_finished_runners(&pool, ctx, &plan.remove).await?;
            return degraded(&pool, ctx, unreachable, None, None).await;
        }
    };
    ctx.memory
        .with(&pool_uid, |m| m.target = Some(target.clone()));

    // About one list per scope and sync interval, whatever the number of
    // pools. Each pool comes back once per interval (jittered); refreshing at
    // 80 % of it keeps every pool's view younger than the interval at the
    // cost of at most 1.25 lists per interval.
    let inventory = inventory_of(ctx, &target);
    let pass_began = Instant::now();
    let mut github_problem = inventory
        .refresh_if_older_than(ctx.settings.github_sync_interval.mul_f64(0.8))
        .await
        .err()
        .map(|e| list_problem(&e, &target));

    let mut plan = make_plan(&pool, ctx, &ownership, &desired_labels, &desired_hash);
    if plan.needs_github_view && github_problem.is_none() {
        // A view asked for during this pass (by any pool) will do.
        match inventory.refresh_since(pass_began).await {
            Ok(_) => plan = make_plan(&pool, ctx, &ownership, &desired_labels, &desired_hash),
            Err(e) => github_problem = Some(list_problem(&e, &target)),
        }
    }
    ctx.memory
        .with(&pool_uid, |m| m.surplus_since = plan.surplus_since);
    confirm::confirm_removals(&pool, &target, ctx, &mut plan).await?;
    // Runner pods of kubernetes mode name the pool's ServiceAccount: it must
    // exist before they are created (and before their dry run).
    let mut hooks_problem = None;
    if plan.create > 0
        && pool.container_mode() == crate::crd::ContainerMode::Kubernetes
        && let Err(refused) = super::container_hooks::ensure(&pool, ctx).await
    {
        plan.create = 0;
        hooks_problem = Some(refused);
    }
    let failing = failures::hold_creations(&pool, ctx, &mut plan, &desired_hash).await?;

    // Removals first: they free capacity and never depend on creations.
    let mut first_error: Option<GitHubError> = None;
    let removed =
        remove_runners(&pool, &target, ctx, plan.remove.clone(), &mut first_error).await?;
    let created = create_runners(
        &pool,
        &target,
        ctx,
        plan.create,
        &ownership,
        &desired_hash,
        &mut first_error,
    )
    .await?;
    relabel_runners(
        &pool,
        &target,
        ctx,
        &plan.relabel,
        &desired_labels,
        &desired_hash,
        &mut first_error,
    )
    .await?;

    if created > 0 {
        ctx.event(
            &pool,
            EventType::Normal,
            "RunnersCreated",
            "Scale",
            format!("Registered {created} runner(s) with new JIT configurations"),
        )
        .await;
    }
    if !removed.is_empty() {
        let summary: Vec<String> = removed
            .iter()
            .map(|(reason, n)| format!("{n} {}", reason.as_str()))
            .collect();
        ctx.event(
            &pool,
            EventType::Normal,
            "RunnersRemoved",
            "Scale",
            format!("Removed runner(s): {}", summary.join(", ")),
        )
        .await;
    }

    // After the runners' work: the hourly downloads read never delays it.
    let version = super::runner_version::assess(&pool, ctx, &target).await;
    let problem = github_problem.or_else(|| {
        first_error
            .as_ref()
            .map(|e| Unreachable::from_github(e, "GitHub call failed"))
            .or(hooks_problem)
            .or(failing)
            .or_else(|| {
                let problem = schedule_now(&pool)?.problem()?;
                Some(Unreachable::new(Problem::InvalidSpec, problem))
            })
    });
    let counts = plan.counts;
    ctx.metrics.set_runner_counts(
        &pool.namespace().unwrap_or_default(),
        &pool.name_any(),
        &counts,
    );
    ctx.metrics.set_queued_jobs(
        &pool.namespace().unwrap_or_default(),
        &pool.name_any(),
        counts.queued,
    );
    match problem {
        Some(unreachable) => {
            degraded(
                &pool,
                ctx,
                unreachable,
                Some((counts, target.runner_group_id)),
                Some(&version),
            )
            .await
        }
        None => {
            ctx.memory.with(&pool_uid, |m| {
                m.error_streak = 0;
                m.announced = None;
            });
            write_status(
                &pool,
                ctx,
                Some(counts),
                Some(target.runner_group_id as i64),
                None,
                Some(&version),
            )
            .await?;
            let mut next = ctx.settings.github_sync_interval;
            if let Some(recheck) = plan.recheck_in {
                next = next.min(recheck);
            }
            if created < plan.create {
                next = next.min(Duration::from_secs(1));
            }
            Ok(requeue(&pool, next))
        }
    }
}

/// The pool's scheduled capacity now, if it has schedules.
fn schedule_now(pool: &RunnerPool) -> Option<schedule::Effective> {
    let auto = pool.spec.autoscaling.as_ref()?;
    (!auto.schedules.is_empty()).then(|| schedule::effective(auto, Timestamp::now()))
}

/// Requeue after about `next`, and never after the next opening or closing
/// of a schedule window (one second past it, so the window has changed):
/// boundaries need no polling.
fn requeue(pool: &RunnerPool, next: Duration) -> Action {
    let mut after = jittered(next);
    if let Some(change) = schedule_now(pool).and_then(|s| s.until_next_change(Timestamp::now())) {
        after = after.min(change + Duration::from_secs(1));
    }
    Action::requeue(after)
}

fn make_plan(
    pool: &RunnerPool,
    ctx: &Context,
    ownership: &str,
    desired_labels: &[String],
    desired_hash: &str,
) -> plan::Plan {
    let (pods, secrets) = observe(pool, ctx);
    let pod_names: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
    let secret_names: BTreeSet<String> = secrets.iter().map(|s| s.name.clone()).collect();
    let pool_uid = uid(pool);
    let runner_ids: BTreeSet<u64> = pods.iter().filter_map(|p| p.runner_id).collect();
    // The runners GitHub knows for this pool: those its pods and Secrets
    // name, and those carrying its ownership label.
    let named: BTreeSet<u64> = runner_ids
        .iter()
        .copied()
        .chain(secrets.iter().filter_map(|s| s.runner_id))
        .collect();
    let github = last_inventory(&pool_uid, ctx).and_then(|inv| inv.pool_view(&named, ownership));
    ctx.demand.retain_busy(&pool_uid, &runner_ids);
    let known_busy = ctx.demand.busy_runners(&pool_uid);
    let queued = ctx.demand.queued_for(&pool_uid, Instant::now());
    ctx.memory.with(&pool_uid, |m| {
        m.settle(&pod_names, &secret_names);
        let vanished = m.vanished(&pods, &secrets);
        let online: Vec<u64> = github
            .iter()
            .flat_map(|view| &view.runners)
            .filter(|r| runner_ids.contains(&r.id) && (r.busy || r.status == RunnerStatus::Online))
            .map(|r| r.id)
            .collect();
        m.failures.retain_online(&runner_ids);
        for id in online {
            m.failures.online(id);
        }
        for pod in &pods {
            if let Some(started) = pod.started
                && m.first_seen_started(&pod.name)
            {
                let took = started.duration_since(pod.created).as_secs_f64().max(0.0);
                ctx.metrics.runner_start_duration.observe(took);
            }
        }
        plan::plan(&Inputs {
            now: Timestamp::now(),
            scaling: scaling(pool),
            bootstrap_timeout: pool.bootstrap_timeout(),
            ownership_label: ownership,
            desired_labels,
            desired_labels_hash: desired_hash,
            pods: &pods,
            secrets: &secrets,
            github: github.as_ref(),
            creating: &m.creating(),
            removing: &m.removing(),
            vanished: &vanished,
            surplus_since: m.surplus_since,
            queued,
            known_busy: &known_busy,
        })
    })
}

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
async fn create_runners(
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
            let task = tokio::spawn(async move {
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
        match target.api.generate_jitconfig(&target.scope, &request).await {
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
            .create(&PostParams::default(), &runner::runner_secret(pool, &jit))
            .await?;
        pods.create(
            &PostParams::default(),
            &runner::runner_pod(pool, &name, runner_id, labels_hash),
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
    let tie = Patch::Merge(runner::secret_owner_patch(&pod));
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

/// The successful results of a batch of GitHub-facing work. The first GitHub
/// error is kept for status (the rest of the batch still counts); a Kubernetes
/// error ends the reconcile, to be retried with backoff.
fn successes<T>(
    results: impl IntoIterator<Item = Result<T, Error>>,
    first_error: &mut Option<GitHubError>,
) -> Result<Vec<T>, Error> {
    let mut done = Vec::new();
    for result in results {
        match result {
            Ok(value) => done.push(value),
            Err(Error::GitHub(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Carries out removals. Returns how many were removed, by reason.
async fn remove_runners(
    pool: &RunnerPool,
    target: &Target,
    ctx: &Context,
    removals: Vec<Removal>,
    first_error: &mut Option<GitHubError>,
) -> Result<Vec<(RemovalReason, usize)>, Error> {
    let results: Vec<(RemovalReason, Result<bool, Error>)> = futures::stream::iter(removals)
        .map(|removal| async move {
            let reason = removal.reason;
            (
                reason,
                remove_runner(pool, &target.api, &target.scope, ctx, &removal).await,
            )
        })
        .buffer_unordered(ctx.settings.create_concurrency.max(1))
        .collect()
        .await;
    let outcomes = successes(
        results
            .into_iter()
            .map(|(reason, r)| r.map(|removed| (reason, removed))),
        first_error,
    )?;
    let mut by_reason: std::collections::BTreeMap<RemovalReason, usize> = Default::default();
    for (reason, _) in outcomes.into_iter().filter(|(_, removed)| *removed) {
        *by_reason.entry(reason).or_default() += 1;
    }
    Ok(by_reason.into_iter().collect())
}

/// Removes one runner: its GitHub registration first, then pod and Secret.
/// Returns `Ok(false)` when GitHub says the runner is busy: then nothing is touched.
#[instrument(skip_all, fields(pool = %pool.name_any(), runner = %removal.name, reason = removal.reason.as_str()))]
pub async fn remove_runner(
    pool: &RunnerPool,
    api: &Arc<dyn GitHubApi>,
    scope: &Scope,
    ctx: &Context,
    removal: &Removal,
) -> Result<bool, Error> {
    let pool_uid = uid(pool);
    let inventory = ctx.inventory.of(api, scope);
    ctx.memory
        .with(&pool_uid, |m| m.expect_removed(&removal.name));
    if let (Some(id), false) = (removal.runner_id, removal.deregister) {
        inventory.removed(id);
    }
    let owned = match (removal.runner_id, removal.deregister) {
        (Some(id), true) => confirm::is_the_pools_runner(ctx, api, scope, id, &removal.name).await,
        _ => Ok(true),
    };
    let owned = match owned {
        Ok(owned) => owned,
        Err(e) => {
            ctx.memory
                .with(&pool_uid, |m| m.forget_removed(&removal.name));
            return Err(e.into());
        }
    };
    if !owned {
        // The id on the pod or Secret names a runner without the pool's
        // ownership label (edited by hand, or by a job that could patch
        // pods): it is not ours to delete. A dead pod still goes; a live one
        // is kept, as it may run a job.
        warn!(runner_id = ?removal.runner_id, "the runner id does not name one of the pool's runners; no DELETE is sent");
        if !matches!(
            removal.reason,
            RemovalReason::Failed | RemovalReason::Finished | RemovalReason::Vanished
        ) {
            ctx.memory
                .with(&pool_uid, |m| m.forget_removed(&removal.name));
            return Ok(false);
        }
    }
    if let (Some(id), true, true) = (removal.runner_id, removal.deregister, owned) {
        let deleted = match api.delete_runner(scope, id).await {
            Err(GitHubError::NotFound(_)) => confirm_gone(api, scope, id).await,
            other => other,
        };
        match deleted {
            Ok(()) => inventory.removed(id),
            Err(GitHubError::Busy) => {
                info!(runner_id = id, "runner is running a job; keeping it");
                ctx.metrics.busy_runners_kept.inc();
                ctx.memory
                    .with(&pool_uid, |m| m.forget_removed(&removal.name));
                inventory.busy(id);
                return Ok(false);
            }
            Err(e) => {
                ctx.memory
                    .with(&pool_uid, |m| m.forget_removed(&removal.name));
                return Err(e.into());
            }
        }
    }
    delete_runner_objects(pool, ctx, removal).await?;
    Ok(true)
}

/// Removes the runners of `removals` whose registration needs no DELETE
/// (finished ones): their pods and Secrets only.
async fn remove_finished_runners(
    pool: &RunnerPool,
    ctx: &Context,
    removals: &[Removal],
) -> Result<(), Error> {
    let pool_uid = uid(pool);
    let inventory = last_inventory(&pool_uid, ctx);
    for removal in removals.iter().filter(|r| !r.deregister) {
        ctx.memory
            .with(&pool_uid, |m| m.expect_removed(&removal.name));
        if let (Some(inventory), Some(id)) = (&inventory, removal.runner_id) {
            inventory.removed(id);
        }
        delete_runner_objects(pool, ctx, removal).await?;
    }
    Ok(())
}

/// Deletes a runner's pod and Secret (those the removal names); already gone is fine.
async fn delete_runner_objects(
    pool: &RunnerPool,
    ctx: &Context,
    removal: &Removal,
) -> Result<(), Error> {
    let namespace = pool.namespace().unwrap_or_default();
    delete_pod_and_secret(&ctx.client, &namespace, removal).await?;
    ctx.memory
        .with(&uid(pool), |m| m.forget_known(&removal.name));
    ctx.metrics
        .runners_removed
        .get_or_create(&crate::metrics::ReasonLabels {
            reason: removal.reason.as_str(),
        })
        .inc();
    debug!(runner = %removal.name, "runner removed");
    Ok(())
}

/// Deletes the pod and Secret a removal names; already gone is fine.
pub async fn delete_pod_and_secret(
    client: &kube::Client,
    namespace: &str,
    removal: &Removal,
) -> Result<(), kube::Error> {
    let gone_ok = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other,
    };
    if removal.pod {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        gone_ok(
            pods.delete(&removal.name, &DeleteParams::background())
                .await
                .map(|_| ()),
        )?;
    }
    if removal.secret {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        gone_ok(
            secrets
                .delete(&removal.name, &DeleteParams::background())
                .await
                .map(|_| ()),
        )?;
    }
    Ok(())
}

/// Reads a 404 on DELETE as "already gone" only if the scope still answers
/// and does not list the runner. After a lost permission, a renamed
/// organization or a wrong API URL every runner answers 404, and removing its
/// pod on that say-so would kill jobs and leak registrations.
async fn confirm_gone(api: &Arc<dyn GitHubApi>, scope: &Scope, id: u64) -> Result<(), GitHubError> {
    let runners = api.list_runners(scope).await?;
    // A paged list is not a snapshot: absence from it is confirmed by a read
    // of the runner itself.
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

/// Sets the pool's custom labels on runners whose labels differ.
async fn relabel_runners(
    pool: &RunnerPool,
    target: &Target,
    ctx: &Context,
    relabels: &[plan::Relabel],
    desired_labels: &[String],
    desired_hash: &str,
    first_error: &mut Option<GitHubError>,
) -> Result<(), Error> {
    let namespace = pool.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    // Ok(Some(message)): GitHub has the labels, but the API server refused
    // the pod's annotation (e.g. RBAC without pods/patch).
    let results: Vec<Result<Option<String>, Error>> = futures::stream::iter(relabels.to_vec())
        .map(|relabel: plan::Relabel| {
            let pods = pods.clone();
            async move {
                match target.api.set_custom_labels(&target.scope, relabel.runner_id, desired_labels).await {
                    Ok(labels) => inventory_of(ctx, target).labels(relabel.runner_id, labels),
                    // Gone already: the next pass removes what is left of it.
                    Err(GitHubError::NotFound(_)) => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
                if relabel.pod {
                    let patch = serde_json::json!({
                        "metadata": { "annotations": { runner::LABELS_HASH_ANNOTATION: desired_hash } }
                    });
                    match pods.patch(&relabel.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                        Ok(_) => {}
                        // The pod is gone: nothing to mark.
                        Err(kube::Error::Api(status)) if status.code == 404 => {}
                        Err(kube::Error::Api(status)) => {
                            warn!(pod = %relabel.name, code = status.code, message = %status.message, "the API server refused the pod's labels-hash annotation");
                            return Ok(Some(format!("pod {:?}: {}", relabel.name, status.message)));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(None)
            }
        })
        .buffer_unordered(ctx.settings.create_concurrency.max(1))
        .collect()
        .await;
    let outcomes = successes(results, first_error)?;
    let relabelled = outcomes.len();
    let refused: Vec<&String> = outcomes.iter().flatten().collect();
    if let Some(first) = refused.first() {
        ctx.event(
            pool,
            EventType::Warning,
            "PodPatchRefused",
            "SetLabels",
            format!(
                "The API server refused to mark {} runner pod(s) as relabelled, so their labels are set again on every pass; does the operator's role allow patch on pods? First refusal: {first}",
                refused.len()
            ),
        )
        .await;
    }
    if relabelled > 0 {
        ctx.event(
            pool,
            EventType::Normal,
            "LabelsSynced",
            "SetLabels",
            format!("Set labels on {relabelled} runner(s)"),
        )
        .await;
    }
    Ok(())
}

/// Records a problem in status and as a Warning event (once per problem), and
/// retries later with backoff; returns Ok so the reason shows in status rather
/// than only in the operator's log.
async fn degraded(
    pool: &RunnerPool,
    ctx: &Context,
    unreachable: Unreachable,
    counts: Option<(plan::Counts, u64)>,
    version: Option<&Assessment>,
) -> Result<Action, Error> {
    let reason = unreachable.problem.reason();
    let (streak, announce) = ctx.memory.with(&uid(pool), |m| {
        m.error_streak = m.error_streak.saturating_add(1);
        let announce = m.announced.as_deref() != Some(reason);
        m.announced = Some(reason.to_string());
        (m.error_streak, announce)
    });
    warn!(pool = %pool.name_any(), reason, message = %unreachable.message, "pool degraded");
    if announce {
        ctx.event(
            pool,
            EventType::Warning,
            reason,
            "Reconcile",
            unreachable.message.clone(),
        )
        .await;
    }
    write_status(
        pool,
        ctx,
        counts.map(|(c, _)| c),
        counts.map(|(_, g)| g as i64),
        Some((unreachable.problem, unreachable.message)),
        version,
    )
    .await?;
    let backoff = backoff(streak).max(Duration::from_secs(2));
    Ok(requeue(
        pool,
        unreachable
            .retry_in
            .unwrap_or(backoff)
            .max(Duration::from_secs(1)),
    ))
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StatusPatch<'a> {
    api_version: &'static str,
    kind: &'static str,
    status: &'a RunnerPoolStatus,
}

/// Writes status through server-side apply, only when it changed. Without
/// a runner version assessment, the last one shown stays.
pub async fn write_status(
    pool: &RunnerPool,
    ctx: &Context,
    counts: Option<plan::Counts>,
    runner_group_id: Option<i64>,
    problem: Option<(Problem, String)>,
    version: Option<&Assessment>,
) -> Result<(), Error> {
    let now = Timestamp::now();
    let mut new = status::build(
        pool.status.as_ref(),
        pool.metadata.generation,
        counts,
        runner_group_id,
        problem,
        now,
    );
    if let Some(assessment) = version {
        status::set_runner_version(
            &mut new,
            pool.status.as_ref(),
            assessment,
            pool.metadata.generation,
            now,
        );
    }
    new.schedule = schedule_now(pool).map(|s| s.status());
    apply_status(pool, ctx, &new).await
}

/// Writes `new` as the pool's status through server-side apply, only when it
/// differs from what the pool shows.
pub async fn apply_status(
    pool: &RunnerPool,
    ctx: &Context,
    new: &RunnerPoolStatus,
) -> Result<(), Error> {
    if pool.status.as_ref() == Some(new) {
        return Ok(());
    }
    let api: Api<RunnerPool> =
        Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    let patch = StatusPatch {
        api_version: "actions.runnerpool.dev/v1alpha1",
        kind: "RunnerPool",
        status: new,
    };
    api.patch_status(
        &pool.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::refusal;

    fn answered(code: u16) -> kube::Error {
        let status = serde_json::from_value(serde_json::json!({
            "code": code,
            "message": format!("answer {code}"),
        }))
        .expect("a Status");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn only_a_refusal_reading_the_credentials_is_a_credentials_problem() {
        assert_eq!(refusal(&answered(403)), Some("answer 403"));
        assert_eq!(refusal(&answered(401)), Some("answer 401"));
        // The API server restarting, overloaded or unreachable: retried,
        // never shown as bad credentials.
        for code in [429, 500, 503, 504] {
            assert_eq!(refusal(&answered(code)), None, "{code}");
        }
        let unreachable = kube::Error::Service("connection refused".into());
        assert_eq!(refusal(&unreachable), None);
    }
}
