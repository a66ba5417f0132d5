//! The operator end to end: the real binary against the local control plane
//! and the GitHub fake, asserting the invariants of PRODUCT.md.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, EvictParams, ListParams};
use runnerpool::runner::{JIT_CONFIG_ENV, JIT_CONFIG_KEY, RUNNER_ID_LABEL, ownership_label};
use support::cluster::{kubectl, wait_for};
use support::operator::{Base, Env, INSTALL_ID, create_secret, pool_yaml};

const T: Duration = Duration::from_secs(40);

const ORG_LIST: &str = "GET /orgs/{org}/actions/runners";

/// Waits until the operator listed the organization's runners `n` more
/// times: that many passes in which it could have acted on what it saw, a
/// bound for negative checks that does not depend on the machine's speed.
async fn wait_for_more_lists(env: &Env, n: usize) {
    let after = env.fake.request_log().last().map_or(0, |r| r.seq);
    wait_for(&format!("{n} more runner lists"), T, || async {
        let lists = env
            .fake
            .request_log()
            .iter()
            .filter(|r| r.seq > after && r.endpoint == ORG_LIST)
            .count();
        (lists >= n).then_some(())
    })
    .await;
}

fn runner_id(pod: &Pod) -> u64 {
    pod.labels()[RUNNER_ID_LABEL].parse().unwrap()
}

fn condition(pool: &runnerpool::RunnerPool, type_: &str) -> Option<(String, String, String)> {
    pool.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The pool's `Ready`, `Reconciling` and `Stalled` conditions.
/// Each as "status reason".
fn kstatus(pool: &runnerpool::RunnerPool) -> [String; 3] {
    ["Ready", "Reconciling", "Stalled"].map(|t| {
        condition(pool, t)
            .map(|(status, reason, _)| format!("{status} {reason}"))
            .unwrap_or_default()
    })
}

/// Waits until pool `name` is Degraded; returns (status, reason, message).
async fn wait_for_degraded(env: &Env, name: &str) -> (String, String, String) {
    wait_for(&format!("pool {name} Degraded"), T, || async {
        let pool = env.pools().get(name).await.ok()?;
        condition(&pool, "Degraded").filter(|c| c.0 == "True")
    })
    .await
}

/// N runners come up with the right labels, group, Secrets and pods, with one
/// generate-jitconfig call each and nothing else beyond listing.
async fn runners_come_up(scope: &str, base: Base, fake_scope: fake_github::Scope) {
    let env = Env::start("up").await;
    let yaml = pool_yaml(
        "ci",
        scope,
        &env.api_url(base),
        3,
        &["self-hosted", "linux", "gpu"],
        "",
    );
    let pool = env.apply_pool(&yaml).await;
    let ids = env.wait_for_online_runners("ci", 3, T).await;

    let owner = ownership_label(INSTALL_ID, &pool.uid().unwrap());
    let runners = env.fake.runners(&fake_scope);
    assert_eq!(
        runners.len(),
        3,
        "exactly the pool's runners are registered"
    );
    for runner in &runners {
        assert!(ids.contains(&runner.id));
        assert!(runner.name.starts_with("ci-"));
        assert_eq!(runner.runner_group_id, 1, "default group");
        let mut labels: Vec<_> = runner.labels.iter().map(|l| l.name.clone()).collect();
        labels.sort();
        let mut want = vec![
            "gpu".to_string(),
            "linux".into(),
            "self-hosted".into(),
            owner.clone(),
        ];
        want.sort();
        assert_eq!(labels, want);
    }
    for pod in env.live_pods("ci").await {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            spec.automount_service_account_token,
            Some(false),
            "jobs get no Kubernetes API token by default"
        );
        let env_var = spec.containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == JIT_CONFIG_ENV)
            .expect("JIT variable");
        assert!(env_var.value.is_none(), "never a literal");
        let secret = env
            .secrets()
            .get(&pod.name_any())
            .await
            .expect("runner Secret");
        assert_eq!(secret.immutable, Some(true));
        let jit = String::from_utf8(secret.data.unwrap()[JIT_CONFIG_KEY].0.clone()).unwrap();
        let info = fake_github::decode_jit_config(&jit).unwrap();
        assert_eq!(
            info.id,
            runner_id(&pod),
            "the Secret holds this pod's own runner"
        );
    }

    let ready = wait_for("Ready condition", T, || async {
        let pool = env.pools().get("ci").await.ok()?;
        let c = condition(&pool, "Ready")?;
        (c.0 == "True").then_some(pool)
    })
    .await;
    let status = ready.status.unwrap();
    assert_eq!(status.desired_runners, 3);
    assert_eq!(status.runner_group_id, Some(1));
    assert_eq!(status.observed_generation, ready.metadata.generation);

    let calls = env.calls_by_endpoint();
    let jit_calls = env.calls("generate-jitconfig");
    assert_eq!(jit_calls, 3, "one JIT call per runner: {calls:?}");
    assert_eq!(env.calls("DELETE"), 0, "{calls:?}");
    assert_eq!(env.calls("labels"), 0, "{calls:?}");
    env.assert_no_secret_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_runners_come_up_with_labels_group_and_secrets() {
    runners_come_up(
        "organization: acme",
        Base::Root,
        fake_github::Scope::org("acme"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_runners_come_up_on_a_ghes_base() {
    runners_come_up(
        "repository: acme/app",
        Base::Ghes,
        fake_github::Scope::repo("acme", "app"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enterprise_runners_come_up() {
    runners_come_up(
        "enterprise: bigcorp",
        Base::Root,
        fake_github::Scope::enterprise("bigcorp"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_app_credentials_and_named_runner_group() {
    let env = Env::start("app").await;
    support::operator::app_credentials(&env, "app", 4242, 77).await;
    let group = env
        .fake
        .create_group(&fake_github::Scope::org("acme"), "linux-builders")
        .unwrap();
    let yaml = pool_yaml(
        "ci",
        "organization: acme",
        &env.api_url(Base::Ghes),
        2,
        &["linux"],
        "  runnerGroup: linux-builders",
    )
    .replace("name: gh", "name: app");
    env.apply_pool(&yaml).await;
    env.wait_for_online_runners("ci", 2, T).await;
    for runner in env.fake.runners(&fake_github::Scope::org("acme")) {
        assert_eq!(runner.runner_group_id, group.id);
    }
    assert!(
        env.calls("access_tokens") >= 1,
        "an installation token was minted"
    );
    let logs = env.operator.logs();
    assert!(
        !logs.contains("PRIVATE KEY"),
        "the App key appears in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_job_replaces_the_runner_with_a_new_jit_config() {
    let env = Env::start("job").await;
    env.apply_org_pool("ci", 1).await;
    let first = env.wait_for_online_runners("ci", 1, T).await[0];
    let old_pod = env.live_pods("ci").await.remove(0).name_any();

    let job = env.fake.queue_job("acme/app", &["linux"]).unwrap();
    wait_for("the job to start", T, || async {
        (env.fake.job(job)?.runner_id == Some(first)).then_some(())
    })
    .await;
    env.fake.finish_job(job).unwrap();

    let second = wait_for("a replacement runner", T, || async {
        let ids = env
            .wait_for_online_runners("ci", 1, Duration::from_secs(5))
            .await;
        (ids[0] != first).then_some(ids[0])
    })
    .await;
    assert_ne!(second, first);
    wait_for("the finished pod and its Secret to go", T, || async {
        let pod_gone = env.pods().get_opt(&old_pod).await.ok()?.is_none();
        let secret_gone = env.secrets().get_opt(&old_pod).await.ok()?.is_none();
        (pod_gone && secret_gone).then_some(())
    })
    .await;
    // The happy path costs one JIT call per runner; GitHub removed the finished runner itself.
    assert_eq!(env.calls("generate-jitconfig"), 2);
    assert_eq!(env.calls("DELETE"), 0, "{:?}", env.calls_by_endpoint());
    env.assert_no_secret_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_evicted_pods_are_deregistered_and_replaced() {
    let env = Env::start("vanish").await;
    env.apply_org_pool("ci", 2).await;
    let before = env.wait_for_online_runners("ci", 2, T).await;
    let pods = env.live_pods("ci").await;

    env.pods()
        .delete(&pods[0].name_any(), &DeleteParams::default())
        .await
        .unwrap();
    env.pods()
        .evict(&pods[1].name_any(), &EvictParams::default())
        .await
        .unwrap();

    let after = wait_for("two new runners", Duration::from_secs(60), || async {
        let ids = env
            .wait_for_online_runners("ci", 2, Duration::from_secs(10))
            .await;
        ids.iter().all(|id| !before.contains(id)).then_some(ids)
    })
    .await;
    for id in &before {
        wait_for("the old registration to be deleted", T, || async {
            env.fake.runner(*id).is_none().then_some(())
        })
        .await;
    }
    assert_eq!(
        env.fake.runners(&fake_github::Scope::org("acme")).len(),
        2,
        "runners == pods: {after:?}"
    );
    for pod in &pods {
        wait_for("the old Secret to go", T, || async {
            env.secrets()
                .get_opt(&pod.name_any())
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
    }
}

/// Pool `ci` with two online runners, one of them running a job: returns the
/// job and the busy runner's id.
async fn pool_with_a_busy_runner(env: &Env) -> (u64, u64) {
    env.apply_org_pool("ci", 2).await;
    env.wait_for_online_runners("ci", 2, T).await;
    let job = env.fake.queue_job("acme/app", &["linux"]).unwrap();
    let busy = wait_for("the job to start", T, || async {
        env.fake.job(job)?.runner_id
    })
    .await;
    (job, busy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_runner_is_never_deleted_on_scale_down() {
    let env = Env::start("busy").await;
    let (job, busy) = pool_with_a_busy_runner(&env).await;
    // Let a GitHub list show the busy flag, then scale to zero.
    wait_for_more_lists(&env, 1).await;
    env.apply_org_pool("ci", 0).await;

    wait_for("the idle runner to go", T, || async {
        let runners = env.fake.runners(&fake_github::Scope::org("acme"));
        (runners.len() == 1 && runners[0].id == busy).then_some(())
    })
    .await;
    // Passes in which the operator could try something it should not.
    wait_for_more_lists(&env, 2).await;
    assert_eq!(
        deletes_of(&env, busy),
        0,
        "a DELETE was sent for the busy runner"
    );
    assert!(
        env.fake.runner(busy).is_some_and(|r| r.busy),
        "the busy runner is still registered"
    );
    let pods = env.live_pods("ci").await;
    assert_eq!(pods.len(), 1);
    assert_eq!(runner_id(&pods[0]), busy, "the busy runner's pod is kept");

    env.fake.finish_job(job).unwrap();
    wait_for("the pool to be empty after the job", T, || async {
        (env.live_pods("ci").await.is_empty()
            && env
                .fake
                .runners(&fake_github::Scope::org("acme"))
                .is_empty())
        .then_some(())
    })
    .await;
}

/// A 409 on generate-jitconfig means the random name is taken: the operator
/// tries another name and neither looks up nor removes the runner holding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_clash_on_generate_jitconfig_removes_nothing() {
    let env = Env::start("conflict").await;
    env.apply_org_pool("ci", 2).await;
    let before = env.wait_for_online_runners("ci", 2, T).await;
    env.fake.reset_counters();
    env.fake.inject_fault(fake_github::Fault::times(
        Some("POST /orgs/{org}/actions/runners/generate-jitconfig"),
        409,
        2,
    ));
    env.apply_org_pool("ci", 3).await;
    let after = env.wait_for_online_runners("ci", 3, T).await;
    assert!(
        before.iter().all(|id| after.contains(id)),
        "existing runners were kept: {before:?} -> {after:?}"
    );
    let log = env.fake.request_log();
    let mints: Vec<_> = log
        .iter()
        .filter(|r| r.endpoint.contains("generate-jitconfig"))
        .map(|r| r.status)
        .collect();
    assert_eq!(mints, [409, 409, 201], "two clashes, then a new name");
    let deletes: Vec<_> = log.iter().filter(|r| r.method == "DELETE").collect();
    assert!(deletes.is_empty(), "a DELETE followed a 409: {deletes:?}");
    let lookups: Vec<_> = log
        .iter()
        .filter(|r| r.query.as_deref().is_some_and(|q| q.contains("name=")))
        .collect();
    assert!(
        lookups.is_empty(),
        "the clashing name was looked up: {lookups:?}"
    );
}

/// A 404 on DELETE means "already gone" only while the runner's scope still
/// answers: when the scope itself answers 404 (lost permission, renamed
/// organization), the runner's pod is kept and nothing is taken for gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_on_delete_is_not_gone_while_the_scope_does_not_answer() {
    let env = Env::start("gone").await;
    env.apply_org_pool("ci", 2).await;
    let before = env.wait_for_online_runners("ci", 2, T).await;
    env.fake.reset_counters();
    for endpoint in [
        "DELETE /orgs/{org}/actions/runners/{runner_id}",
        "GET /orgs/{org}/actions/runners",
    ] {
        env.fake
            .inject_fault(fake_github::Fault::always(Some(endpoint), 404));
    }
    env.apply_org_pool("ci", 1).await;
    // Wait for a DELETE answered 404 and a later list of the scope.
    wait_for("a DELETE answered 404, then a list", T, || async {
        let log = env.fake.request_log();
        let delete = log
            .iter()
            .find(|r| r.method == "DELETE" && r.status == 404)?
            .seq;
        log.iter()
            .any(|r| r.seq > delete && r.endpoint == "GET /orgs/{org}/actions/runners")
            .then_some(())
    })
    .await;
    let pods: Vec<u64> = env.live_pods("ci").await.iter().map(runner_id).collect();
    assert_eq!(pods.len(), 2, "a pod was removed on a 404 nobody confirmed");
    for id in &before {
        assert!(env.fake.runner(*id).is_some(), "runner {id} was removed");
    }
    // Once the scope answers again, the scale-down completes.
    env.fake.clear_faults();
    env.wait_for_online_runners("ci", 1, T).await;
}

/// Pools of one organization read one shared list: GitHub is listed about
/// once per sync interval, not once per pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_of_one_organization_share_one_runner_list() {
    const POOLS: usize = 12;
    let env = Env::start_with("shared", &["--github-sync-interval-seconds", "3"]).await;
    for i in 0..POOLS {
        env.apply_org_pool(&format!("p{i}"), 1).await;
    }
    for i in 0..POOLS {
        env.wait_for_online_runners(&format!("p{i}"), 1, Duration::from_secs(60))
            .await;
    }
    let before = env.calls(ORG_LIST);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let lists = env.calls(ORG_LIST) - before;
    // 4 intervals: 4 to 5 lists (a pool refreshes at 80 % of the interval),
    // where one list per pool would be 48.
    assert!(
        (3..=7).contains(&lists),
        "{lists} lists of the organization in 4 sync intervals for {POOLS} pools"
    );
    // Every pool still sees the one view: one runner each, online.
    for i in 0..POOLS {
        env.wait_for_online_runners(&format!("p{i}"), 1, Duration::from_secs(10))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_edits_reach_live_runners_and_drift_is_corrected() {
    let env = Env::start("labels").await;
    let url = env.api_url(Base::Root);
    env.apply_pool(&pool_yaml(
        "ci",
        "organization: acme",
        &url,
        2,
        &["self-hosted", "linux", "small"],
        "",
    ))
    .await;
    let ids = env.wait_for_online_runners("ci", 2, T).await;

    env.apply_pool(&pool_yaml(
        "ci",
        "organization: acme",
        &url,
        2,
        &["self-hosted", "linux", "large", "fast"],
        "",
    ))
    .await;
    let has = |id: u64, label: &str| {
        env.fake
            .runner(id)
            .is_some_and(|r| r.labels.iter().any(|l| l.name == label))
    };
    wait_for("new labels on live runners", T, || async {
        ids.iter()
            .all(|id| {
                has(*id, "large") && has(*id, "fast") && !has(*id, "small") && has(*id, "linux")
            })
            .then_some(())
    })
    .await;
    let ids_now = env.wait_for_online_runners("ci", 2, T).await;
    assert_eq!(
        ids, ids_now,
        "the same runners were relabelled, not replaced"
    );

    // Someone edits a runner's labels by hand on GitHub.
    label_by_hand(&env, ids[0], &["hand-made"]).await;
    assert!(has(ids[0], "hand-made"));
    wait_for("the drift to be corrected", T, || async {
        (has(ids[0], "large") && !has(ids[0], "hand-made")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_registrations_are_collected_and_foreign_ones_are_not() {
    let env = Env::start("gc").await;
    let pool = env.apply_org_pool("ci", 1).await;
    env.wait_for_online_runners("ci", 1, T).await;
    let org = fake_github::Scope::org("acme");
    let owner = ownership_label(INSTALL_ID, &pool.uid().unwrap());
    let orphan = env
        .fake
        .register_runner(&org, "ci-orphan", &["linux", &owner], true)
        .unwrap();
    let foreign = env
        .fake
        .register_runner(&org, "someone-else", &["linux"], true)
        .unwrap();
    let other_install = ownership_label("another-cluster", &pool.uid().unwrap());
    let neighbour = env
        .fake
        .register_runner(&org, "ci-neighbour", &["linux", &other_install], true)
        .unwrap();

    wait_for("the orphan to be collected", T, || async {
        env.fake.runner(orphan.id).is_none().then_some(())
    })
    .await;
    wait_for_more_lists(&env, 2).await;
    for id in [foreign.id, neighbour.id] {
        assert_eq!(deletes_of(&env, id), 0, "a DELETE was sent for {id}");
    }
    assert!(
        env.fake.runner(foreign.id).is_some(),
        "a runner without the mark is never touched"
    );
    assert!(
        env.fake.runner(neighbour.id).is_some(),
        "another installation's runner is never touched"
    );
    assert_eq!(env.live_pods("ci").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_pool_cleans_up_everything() {
    let env = Env::start("delete").await;
    env.apply_org_pool("ci", 3).await;
    env.wait_for_online_runners("ci", 3, T).await;
    env.pools()
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_for_pool_gone("ci", T).await;
    assert!(
        env.fake
            .runners(&fake_github::Scope::org("acme"))
            .is_empty(),
        "no registration is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_show_in_status_and_events() {
    let env = Env::start("creds").await;
    create_secret(&env.client, &env.ns, "bad", &[("token", "ghp_wrong")]).await;
    let url = env.api_url(Base::Root);
    env.apply_pool(
        &pool_yaml("ci", "organization: acme", &url, 1, &["linux"], "")
            .replace("name: gh", "name: bad"),
    )
    .await;
    let (status, reason, message) = wait_for("Degraded", T, || async {
        let pool = env.pools().get("ci").await.ok()?;
        condition(&pool, "Degraded").filter(|c| c.0 == "True")
    })
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "CredentialsInvalid"),
        "{message}"
    );
    assert!(!message.contains("ghp_wrong"));
    let pool = env.pools().get("ci").await.unwrap();
    assert_eq!(
        kstatus(&pool),
        [
            "False CredentialsInvalid",
            "False Stalled",
            "True CredentialsInvalid"
        ],
        "wrong credentials need a person: Stalled, not Reconciling"
    );

    env.apply_pool(
        &pool_yaml("missing", "organization: acme", &url, 1, &["linux"], "")
            .replace("name: gh", "name: nope"),
    )
    .await;
    let (_, reason, message) = wait_for("Degraded for a missing Secret", T, || async {
        let pool = env.pools().get("missing").await.ok()?;
        condition(&pool, "Degraded").filter(|c| c.0 == "True")
    })
    .await;
    assert_eq!(reason, "CredentialsInvalid");
    assert!(message.contains("\"nope\" not found"), "{message}");
    let events =
        String::from_utf8_lossy(&kubectl(&["get", "events", "-n", &env.ns, "-o", "yaml"]).stdout)
            .into_owned();
    assert!(events.contains("CredentialsInvalid"));
    assert!(!events.contains("ghp_wrong"));
    assert!(env.live_pods("ci").await.is_empty());
}

/// A GitHub Enterprise Server URL without `/api/v3` is named as such, with the
/// URL to use, not reported as wrong credentials (and nothing is sent there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ghes_url_without_api_v3_is_an_invalid_spec_with_a_hint() {
    let env = Env::start("ghes").await;
    env.apply_pool(&pool_yaml(
        "ci",
        "organization: acme",
        "https://ghe.example.invalid",
        1,
        &["linux"],
        "",
    ))
    .await;
    let (_, reason, message) = wait_for_degraded(&env, "ci").await;
    assert_eq!(reason, "InvalidSpec", "{message}");
    assert!(
        message.contains("https://ghe.example.invalid/api/v3"),
        "{message}"
    );
}

/// A template that hands the credentials Secret to the runner pod is refused
/// in status, before any runner is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_using_the_credentials_secret_creates_no_runner() {
    let env = Env::start("exposed").await;
    let yaml = pool_yaml(
        "ci",
        "organization: acme",
        &env.api_url(Base::Root),
        1,
        &["linux"],
        "",
    )
    .replace(
        "          image: ghcr.io/actions/actions-runner:latest\n",
        "          image: ghcr.io/actions/actions-runner:latest\n          envFrom: [{ secretRef: { name: gh } }]\n",
    );
    env.apply_pool(&yaml).await;
    let (_, reason, message) = wait_for_degraded(&env, "ci").await;
    assert_eq!(reason, "InvalidSpec", "{message}");
    assert!(
        message.contains("credentials Secret \"gh\" (envFrom of container \"runner\")"),
        "{message}"
    );
    assert!(env.live_pods("ci").await.is_empty());
    assert_eq!(
        env.calls("generate-jitconfig"),
        0,
        "a runner was registered"
    );
}

/// A finished runner's pod and Secret go even while the pool cannot reach
/// GitHub: their removal needs no GitHub call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_pods_are_cleaned_up_while_github_is_unreachable() {
    let env = Env::start("offline").await;
    env.apply_org_pool("ci", 1).await;
    let id = env.wait_for_online_runners("ci", 1, T).await[0];
    let pod = env.live_pods("ci").await.remove(0).name_any();
    let job = env.fake.queue_job("acme/app", &["linux"]).unwrap();
    wait_for("the job to start", T, || async {
        (env.fake.job(job)?.runner_id == Some(id)).then_some(())
    })
    .await;
    // GitHub goes away, and so do the credentials to reach it.
    env.fake.set_unavailable(true);
    env.secrets()
        .delete("gh", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_degraded(&env, "ci").await;
    env.fake.finish_job(job).unwrap();
    wait_for("the finished pod and its Secret to go", T, || async {
        let gone = env.pods().get_opt(&pod).await.ok()?.is_none()
            && env.secrets().get_opt(&pod).await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    assert!(
        env.live_pods("ci").await.is_empty(),
        "no runner is created without GitHub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_rejected_by_the_api_server() {
    let env = Env::start("invalid").await;
    let url = env.api_url(Base::Root);
    let cases: Vec<(String, &str)> = vec![
        (
            pool_yaml(
                "a",
                "organization: acme\n    enterprise: bigcorp",
                &url,
                1,
                &["linux"],
                "",
            ),
            "exactly one of enterprise, organization or repository",
        ),
        (
            pool_yaml("b", "organization: acme", &url, 1, &[], ""),
            "spec.labels",
        ),
        (
            pool_yaml("c", "organization: acme", &url, 1, &["linux", "linux"], ""),
            "duplicate entries",
        ),
        (
            pool_yaml("d", "organization: acme", &url, 1, &[&"x".repeat(257)], ""),
            "spec.labels[0]",
        ),
        (
            pool_yaml(
                "e",
                "organization: acme",
                &url,
                1,
                &["linux"],
                "  autoscaling: {minRunners: 5, maxRunners: 2}",
            )
            .replace("  replicas: 1\n", ""),
            "minRunners must not exceed maxRunners",
        ),
        (
            pool_yaml("f", "organization: acme", &url, 1, &["linux"], "")
                .replace("name: runner", "name: main"),
            "container named 'runner'",
        ),
        (
            pool_yaml(
                &"g".repeat(60),
                "organization: acme",
                &url,
                1,
                &["linux"],
                "",
            ),
            "set spec.runnerNamePrefix",
        ),
        (
            pool_yaml("h", "repository: not-a-repo", &url, 1, &["linux"], ""),
            "spec.github.repository",
        ),
        (
            pool_yaml("i", "organization: acme", &url, 1, &["linux"], "")
                .replace("name: gh", "name: Not_A_Name"),
            "spec.github.credentialsSecret.name",
        ),
        (
            pool_yaml("j", "organization: acme", &url, 1, &["linux"], "").replace(
                "          image: ghcr.io/actions/actions-runner:latest\n",
                "",
            ),
            "the 'runner' container of template.spec.containers needs an image",
        ),
        (
            pool_yaml(
                "k",
                "organization: acme",
                "http://ghe.example.com/api/v3",
                1,
                &["linux"],
                "",
            ),
            "plain http:// is allowed only for a loopback host",
        ),
        (
            pool_yaml(
                "l",
                "organization: acme",
                "http://127.0.0.1.example.com/api/v3",
                1,
                &["linux"],
                "",
            ),
            "plain http:// is allowed only for a loopback host",
        ),
        (
            pool_yaml(
                "m",
                "repository: acme/app",
                &url,
                1,
                &["linux"],
                "  runnerGroup: builders",
            ),
            "repository runners have no runner groups",
        ),
        (
            pool_yaml(
                "m2",
                "repository: acme/app",
                &url,
                1,
                &["linux"],
                "  runnerGroupId: 2",
            ),
            "repository runners have no runner groups",
        ),
    ];
    for (yaml, expected) in cases {
        let stderr = env.apply_refused(&yaml);
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
    let list = env.pools().list(&ListParams::default()).await.unwrap();
    assert!(list.items.is_empty());
    // Plain http stays allowed for loopback hosts (the fake, a local proxy).
    for (name, loopback) in [("o", "http://localhost:1/api/v3"), ("p", "http://[::1]:1")] {
        env.apply_pool(&pool_yaml(
            name,
            "organization: acme",
            loopback,
            0,
            &["linux"],
            "",
        ))
        .await;
    }
}

/// Runners live in the scope and on the host they registered with: changing
/// either on a live pool would strand them, so the API server refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scope_and_api_url_of_a_live_pool_cannot_change() {
    let env = Env::start("immutable").await;
    let url = env.api_url(Base::Root);
    let pool = |scope: &str, url: &str, replicas: u32| {
        pool_yaml("ci", scope, url, replicas, &["linux"], "")
    };
    env.apply_pool(&pool("organization: acme", &url, 0)).await;
    let scope_message = "enterprise, organization and repository cannot change on a live pool";
    let cases = [
        (pool("organization: other", &url, 0), scope_message),
        (pool("repository: acme/app", &url, 0), scope_message),
        (pool("enterprise: bigcorp", &url, 0), scope_message),
        (
            pool("organization: acme", &env.api_url(Base::Ghes), 0),
            "apiUrl cannot change on a live pool",
        ),
    ];
    for (yaml, expected) in cases {
        let stderr = env.apply_refused(&yaml);
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
    // Dropping apiUrl means https://api.github.com: a change too.
    let out = kubectl(&[
        "patch",
        "runnerpool",
        "ci",
        "-n",
        &env.ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"github":{"apiUrl":null}}}"#,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "apiUrl was removed");
    assert!(
        stderr.contains("apiUrl cannot change on a live pool"),
        "{stderr}"
    );
    // Everything else may still change.
    let changed = env.apply_pool(&pool("organization: acme", &url, 1)).await;
    assert_eq!(changed.spec.replicas, Some(1));
    assert_eq!(changed.spec.github.organization.as_deref(), Some("acme"));
    assert_eq!(changed.spec.github.api_url.as_deref(), Some(url.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_restart_neither_leaks_nor_duplicates() {
    let mut env = Env::start("restart").await;
    env.apply_org_pool("ci", 3).await;
    let before = env.wait_for_online_runners("ci", 3, T).await;
    env.operator.kill();
    // While it is down, a pod vanishes and a registration is orphaned.
    let victim = env.live_pods("ci").await.remove(0);
    env.pods()
        .delete(
            &victim.name_any(),
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.operator.restart();
    let after = wait_for("three runners again", Duration::from_secs(60), || async {
        let ids = env
            .wait_for_online_runners("ci", 3, Duration::from_secs(10))
            .await;
        (!ids.contains(&runner_id(&victim))).then_some(ids)
    })
    .await;
    let kept = before.iter().filter(|id| after.contains(id)).count();
    assert_eq!(kept, 2, "the two surviving runners were kept, not replaced");
    wait_for("runners == pods on GitHub", T, || async {
        (env.fake.runners(&fake_github::Scope::org("acme")).len() == 3).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_pools_are_accepted_by_the_api_server() {
    let env = Env::start("examples").await;
    let dir = support::cluster::repo_path("examples/pools");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let out = kubectl(&[
            "apply",
            "--dry-run=server",
            "-n",
            &env.ns,
            "-f",
            path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pods_are_deregistered_and_replaced() {
    let env = Env::start("failed").await;
    env.apply_org_pool("ci", 1).await;
    let first = env.wait_for_online_runners("ci", 1, T).await[0];
    let pod = env.live_pods("ci").await.remove(0).name_any();
    // The runner process crashes: the pod fails with a non-zero exit code.
    let patch = serde_json::json!({"metadata": {"annotations": {support::simulator::COMPLETE_ANNOTATION: "failed"}}});
    env.merge_patch_pod(&pod, patch).await;
    assert_replaced(&env, first, &pod).await;
}

/// The pool's only runner `first` (pod `pod`) is replaced by a new one: its
/// registration is deleted, its pod and Secret go.
async fn assert_replaced(env: &Env, first: u64, pod: &str) {
    let second = wait_for("a replacement runner", T, || async {
        let ids = env
            .wait_for_online_runners("ci", 1, Duration::from_secs(10))
            .await;
        (ids[0] != first).then_some(ids[0])
    })
    .await;
    assert!(
        env.fake.runner(first).is_none(),
        "the old runner's registration was deleted"
    );
    assert!(env.fake.runner(second).is_some());
    wait_for("the old pod and its Secret to go", T, || async {
        let gone = env.pods().get_opt(pod).await.ok()?.is_none()
            && env.secrets().get_opt(pod).await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
}

/// A sidecar (docker:dind) keeps the pod Running after the runner process
/// exits: the runner's end is read from its container, and it is replaced at
/// once, not after the 600 s bootstrap timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_exits_beside_a_running_sidecar_is_replaced_at_once() {
    let env = Env::start("sidecar").await;
    env.apply_org_pool("ci", 1).await;
    let first = env.wait_for_online_runners("ci", 1, T).await[0];
    let pod = env.live_pods("ci").await.remove(0).name_any();
    // The runner crashes and goes offline; the dind sidecar keeps running.
    env.fake.set_online(first, false).unwrap();
    let status = serde_json::json!({"status": {"phase": "Running", "containerStatuses": [
        {"name": "dind", "image": "docker:dind", "imageID": "", "ready": true,
         "restartCount": 0, "started": true, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}},
        {"name": "runner", "image": "ghcr.io/actions/actions-runner:latest", "imageID": "",
         "ready": false, "restartCount": 0, "started": false,
         "state": {"terminated": {"exitCode": 1, "reason": "Error",
                   "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:01Z"}}}
    ]}});
    env.pods()
        .patch_status(
            &pod,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .unwrap();
    let phase = env.pods().get(&pod).await.unwrap().status.unwrap().phase;
    assert_eq!(
        phase.as_deref(),
        Some("Running"),
        "the pod itself still runs"
    );
    assert_replaced(&env, first, &pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_that_never_come_online_are_replaced_after_the_bootstrap_timeout() {
    let env = Env::start("bootstrap").await;
    let yaml = pool_yaml(
        "ci",
        "organization: acme",
        &env.api_url(Base::Root),
        1,
        &["linux"],
        "  bootstrapTimeoutSeconds: 30",
    );
    let yaml = support::operator::staying_offline(&yaml);
    env.apply_pool(&yaml).await;
    let first = wait_for("a runner pod", T, || async {
        let pods = env.live_pods("ci").await;
        pods.first().map(runner_id)
    })
    .await;
    let replaced = wait_for(
        "the stuck runner to be replaced",
        Duration::from_secs(75),
        || async {
            let pods = env.live_pods("ci").await;
            let id = pods.first().map(runner_id)?;
            (pods.len() == 1 && id != first).then_some(id)
        },
    )
    .await;
    assert!(
        env.fake.runner(first).is_none(),
        "the stuck registration was deleted"
    );
    assert!(env.fake.runner(replaced).is_some());
    let pool = env.pools().get("ci").await.unwrap();
    assert!(pool.status.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_rate_limit_shows_in_status_and_sends_nothing() {
    let env = Env::start("ratelimit").await;
    let url = env.api_url(Base::Root);
    env.apply_pool(&pool_yaml(
        "ci",
        "organization: acme",
        &url,
        1,
        &["linux"],
        "",
    ))
    .await;
    env.wait_for_online_runners("ci", 1, T).await;
    env.fake
        .exhaust_rate_limit(&env.fake.token_key(support::operator::TOKEN));
    env.apply_pool(&pool_yaml(
        "ci",
        "organization: acme",
        &url,
        3,
        &["linux"],
        "",
    ))
    .await;
    let (_, reason, message) = wait_for("Degraded RateLimited", T, || async {
        let pool = env.pools().get("ci").await.ok()?;
        condition(&pool, "Degraded").filter(|c| c.0 == "True")
    })
    .await;
    assert_eq!(reason, "RateLimited", "{message}");
    // Blocked until the reset: the operator must not keep hammering GitHub.
    let before = env.fake.counters().total;
    env.wait_for_a_fresh_pass("ci").await;
    env.wait_for_a_fresh_pass("ci").await;
    let after = env.fake.counters().total;
    assert!(
        after - before <= 1,
        "{} requests sent while rate limited",
        after - before
    );
    env.fake
        .reset_rate_limit(&env.fake.token_key(support::operator::TOKEN));
}

/// Invariant 5: after GitHub errors, lost generate-jitconfig answers (the
/// runner registered, the operator told 502), pod deletions and a controller
/// restart, the pool converges to runners == pods == Secrets, with no
/// registration left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_to_runners_equal_pods_after_chaos() {
    const LOST: u32 = 3;
    let mut env = Env::start("chaos").await;
    env.fake.set_error_rate(0.3, 502);
    env.fake.inject_fault(fake_github::Fault::lost_answers(
        Some("POST /orgs/{org}/actions/runners/generate-jitconfig"),
        502,
        LOST,
    ));
    env.apply_org_pool("ci", 5).await;
    for round in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if let Some(pod) = env.live_pods("ci").await.first() {
            let _ = env
                .pods()
                .delete(&pod.name_any(), &DeleteParams::default())
                .await;
        }
        if round == 1 {
            env.operator.restart();
        }
    }
    env.fake.set_error_rate(0.0, 502);

    let ids = env
        .wait_for_online_runners("ci", 5, Duration::from_secs(90))
        .await;
    wait_for(
        "GitHub to hold exactly the pods' runners",
        Duration::from_secs(60),
        || async {
            let mut registered: Vec<u64> = env
                .fake
                .runners(&fake_github::Scope::org("acme"))
                .iter()
                .map(|r| r.id)
                .collect();
            registered.sort();
            let mut live = env
                .wait_for_online_runners("ci", 5, Duration::from_secs(10))
                .await;
            live.sort();
            (registered == live).then_some(())
        },
    )
    .await;
    wait_for(
        "a Secret for every pod and no other",
        Duration::from_secs(30),
        || async {
            let pods: BTreeSet<String> = env
                .live_pods("ci")
                .await
                .iter()
                .map(|p| p.name_any())
                .collect();
            let secrets = env.runner_secret_names().await?;
            (pods == secrets).then_some(())
        },
    )
    .await;
    assert_eq!(ids.len(), 5);
    // The lost answers happened (each left a registration the operator never
    // heard of); the checks above show they were collected.
    assert_eq!(env.fake.counters().answers_lost, u64::from(LOST));
}

/// The DELETE requests the fake saw for runner `id`, from its request log.
fn deletes_of(env: &Env, id: u64) -> usize {
    let suffix = format!("/actions/runners/{id}");
    env.fake
        .request_log()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with(&suffix))
        .count()
}

/// Sets runner `id`'s custom labels on GitHub as a person would, through
/// the REST API (replacing the pool's, ownership label included).
async fn label_by_hand(env: &Env, id: u64, labels: &[&str]) {
    let resp = reqwest::Client::new()
        .put(format!(
            "{}/orgs/acme/actions/runners/{id}/labels",
            env.api_url(Base::Root)
        ))
        .bearer_auth(support::operator::TOKEN)
        .header("accept", "application/vnd.github+json")
        .header("user-agent", "test")
        .json(&serde_json::json!({ "labels": labels }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Waits until no registration, runner pod or runner Secret is left.
async fn wait_for_nothing_left(env: &Env) {
    let org = fake_github::Scope::org("acme");
    wait_for("registrations == pods == Secrets == 0", T, || async {
        let pods = env.pods().list(&ListParams::default()).await.ok()?.items;
        let secrets = env
            .secrets()
            .list(&ListParams::default().labels(RUNNER_ID_LABEL))
            .await
            .ok()?
            .items;
        (env.fake.runners(&org).is_empty() && pods.is_empty() && secrets.is_empty()).then_some(())
    })
    .await;
}

/// Item 1 of issue 10: a busy runner's pod and registration survive the
/// deletion of its pool, in every propagation mode and for longer than the
/// cleanup timeout, while the pool shows it is waiting; once the job ends,
/// nothing is left: registrations == pods == Secrets == 0.
async fn a_busy_runner_survives_pool_deletion(prefix: &str, propagation: Option<&str>) {
    let env = Env::start(prefix).await;
    let (job, busy) = pool_with_a_busy_runner(&env).await;
    let busy_pod = env
        .live_pods("ci")
        .await
        .into_iter()
        .find(|p| runner_id(p) == busy)
        .unwrap()
        .name_any();

    let mut args = vec!["delete", "runnerpool", "ci", "-n", &env.ns, "--wait=false"];
    let cascade = propagation.map(|p| format!("--cascade={p}"));
    args.extend(cascade.as_deref());
    support::cluster::expect_success("kubectl delete", &kubectl(&args));

    let org = fake_github::Scope::org("acme");
    wait_for("the idle runner to be removed", T, || async {
        let runners = env.fake.runners(&org);
        let pods = env.pods().list(&ListParams::default()).await.ok()?.items;
        (runners.len() == 1 && pods.len() == 1).then_some(())
    })
    .await;
    // The job outlasts the operator's 15 s cleanup timeout: GitHub answers,
    // so the timeout does not apply.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < until {
        let pod = env.pods().get_opt(&busy_pod).await.unwrap();
        assert!(
            pod.is_some_and(|p| p.metadata.deletion_timestamp.is_none()),
            "the busy runner's pod was deleted mid-job"
        );
        assert!(
            env.secrets().get_opt(&busy_pod).await.unwrap().is_some(),
            "the busy runner's Secret was deleted mid-job"
        );
        assert!(env.fake.runner(busy).is_some_and(|r| r.busy));
        assert!(
            env.pools().get_opt("ci").await.unwrap().is_some(),
            "the pool was released while a runner was busy"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let (_, reason, message) = wait_for("the pool to show it waits", T, || async {
        let pool = env.pools().get("ci").await.ok()?;
        condition(&pool, "Ready").filter(|c| c.1 == "WaitingForJobs")
    })
    .await;
    assert!(message.contains("1 running job"), "{reason}: {message}");
    let events =
        String::from_utf8_lossy(&kubectl(&["get", "events", "-n", &env.ns, "-o", "yaml"]).stdout)
            .into_owned();
    assert!(
        events.contains("Waiting for 1 running job(s)"),
        "an event names the jobs still running"
    );

    env.fake.finish_job(job).unwrap();
    gone_without_deleting_busy_runners(&env, &[busy]).await;
}

/// Once the jobs ended: the pool and everything of it is gone, and no
/// DELETE was ever sent for the runners that were busy.
async fn gone_without_deleting_busy_runners(env: &Env, busy: &[u64]) {
    env.wait_for_pool_gone("ci", T).await;
    wait_for_nothing_left(env).await;
    for id in busy {
        assert_eq!(
            deletes_of(env, *id),
            0,
            "a DELETE was sent for busy runner {id}"
        );
    }
    assert_eq!(env.fake.busy_delete_attempts(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_runner_survives_background_pool_deletion() {
    a_busy_runner_survives_pool_deletion("del-background", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_runner_survives_foreground_pool_deletion() {
    a_busy_runner_survives_pool_deletion("del-foreground", Some("foreground")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_runner_survives_orphan_pool_deletion() {
    a_busy_runner_survives_pool_deletion("del-orphan", Some("orphan")).await;
}

/// Issue 21, item 1: during a pool's deletion, a busy runner that one list
/// omits (a paged list shifted under it) or that lost the pool's ownership
/// label (edited by hand on GitHub) is read directly before anything of it
/// goes: its pod survives until its job ends, and no DELETE is sent for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_runner_a_list_does_not_show_as_the_pools_survives_pool_deletion() {
    let env = Env::start("del-unlisted").await;
    env.apply_org_pool("ci", 3).await;
    env.wait_for_online_runners("ci", 3, T).await;
    let jobs = [
        env.fake.queue_job("acme/app", &["linux"]).unwrap(),
        env.fake.queue_job("acme/app", &["linux"]).unwrap(),
    ];
    let busy: Vec<u64> = wait_for("both jobs to start", T, || async {
        jobs.iter().map(|j| env.fake.job(*j)?.runner_id).collect()
    })
    .await;
    let busy_pods: Vec<String> = env
        .live_pods("ci")
        .await
        .into_iter()
        .filter(|p| busy.contains(&runner_id(p)))
        .map(|p| p.name_any())
        .collect();
    assert_eq!(busy_pods.len(), 2);

    support::cluster::expect_success(
        "kubectl delete",
        &kubectl(&["delete", "runnerpool", "ci", "-n", &env.ns, "--wait=false"]),
    );
    let org = fake_github::Scope::org("acme");
    wait_for("the idle runner to be removed", T, || async {
        (env.fake.runners(&org).len() == 2).then_some(())
    })
    .await;
    // Now the lists stop showing one busy runner, and the other loses the
    // pool's ownership label by hand.
    env.fake.hide_from_lists(busy[0], 1000);
    label_by_hand(&env, busy[1], &["hand-made"]).await;
    // Cleanup passes that saw the runners so (each lists the scope), or the
    // pool released by a pass that took them for gone.
    let after = env.fake.request_log().last().map_or(0, |r| r.seq);
    wait_for("3 more cleanup passes, or the pool released", T, || async {
        let lists = env
            .fake
            .request_log()
            .iter()
            .filter(|r| r.seq > after && r.endpoint == ORG_LIST)
            .count();
        let released = env.pools().get_opt("ci").await.ok()?.is_none();
        (lists >= 3 || released).then_some(())
    })
    .await;
    for pod in &busy_pods {
        let live = env.pods().get_opt(pod).await.unwrap();
        assert!(
            live.is_some_and(|p| p.metadata.deletion_timestamp.is_none()),
            "the busy runner's pod {pod} was deleted mid-job"
        );
    }
    assert!(env.pools().get_opt("ci").await.unwrap().is_some());

    env.fake.hide_from_lists(busy[0], 0);
    for job in jobs {
        env.fake.finish_job(job).unwrap();
    }
    gone_without_deleting_busy_runners(&env, &busy).await;
}

/// Issue 21, item 2: a pool deleted while its runners are being registered
/// (slow JIT mints) waits for those creations, then removes what they made:
/// no pod, Secret or registration outlives the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_deleted_mid_burst_leaves_nothing() {
    let env = Env::start_with_slow_mints("del-burst", Duration::from_secs(4)).await;
    env.apply_org_pool("ci", 6).await;
    // A pass cut by the bound with its mints under way (on a loaded machine
    // they may start in the next pass instead: under way is what counts).
    env.wait_for_log("reconcile_timeout", T).await;
    wait_for("the mints to be under way", T, || async {
        (env.fake.received("generate-jitconfig") >= 6).then_some(())
    })
    .await;
    assert_eq!(env.calls("generate-jitconfig"), 0, "no mint finished yet");
    support::cluster::expect_success(
        "kubectl delete",
        &kubectl(&["delete", "runnerpool", "ci", "-n", &env.ns, "--wait=false"]),
    );
    env.wait_for_pool_gone("ci", T).await;
    wait_for("the mints under way to finish", T, || async {
        (env.calls("generate-jitconfig") >= 6).then_some(())
    })
    .await;
    wait_for_nothing_left(&env).await;
}

/// Item 2 of issue 10: the credentials Secret deleted together with the pool
/// (`kubectl delete -f dir/`, a GitOps prune) still lets the operator remove
/// every registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_credentials_with_the_pool_still_removes_the_registrations() {
    let env = Env::start("del-creds").await;
    env.apply_org_pool("ci", 2).await;
    env.wait_for_online_runners("ci", 2, T).await;
    let args = [
        "delete",
        "-n",
        &env.ns,
        "secret/gh",
        "runnerpool/ci",
        "--wait=false",
    ];
    support::cluster::expect_success("kubectl delete", &kubectl(&args));
    env.wait_for_pool_gone("ci", T).await;
    assert!(
        env.fake
            .runners(&fake_github::Scope::org("acme"))
            .is_empty(),
        "registrations were left on GitHub"
    );
    let events =
        String::from_utf8_lossy(&kubectl(&["get", "events", "-n", &env.ns, "-o", "yaml"]).stdout)
            .into_owned();
    assert!(!events.contains("CleanupIncomplete"), "{events}");
}

/// Deleting the pool's namespace takes the pool, its credentials Secret and
/// its pods together (Kubernetes' namespace controller deletes the pods,
/// whatever the operator says): the registrations still leave GitHub, and
/// the namespace is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_namespace_still_removes_the_registrations() {
    let env = Env::start("del-ns").await;
    env.apply_org_pool("ci", 2).await;
    let ids = env.wait_for_online_runners("ci", 2, T).await;
    support::cluster::expect_success(
        "kubectl delete namespace",
        &kubectl(&["delete", "namespace", &env.ns, "--wait=false"]),
    );
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(env.client.clone());
    support::cluster::wait_for_gone("the namespace to go", &namespaces, &env.ns, T).await;
    assert!(
        env.fake
            .runners(&fake_github::Scope::org("acme"))
            .is_empty(),
        "registrations were left on GitHub"
    );
    for id in ids {
        assert!(
            deletes_of(&env, id) >= 1,
            "runner {id} was not deregistered"
        );
    }
}

/// Item 5 of issue 10: a 2-replica pool whose pods fail at once mints a
/// bounded number of JIT configurations (679 in 45 s without backoff) and
/// says why in status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_runners_are_replaced_with_backoff() {
    let env = Env::start("failing").await;
    let yaml = pool_yaml(
        "ci",
        "organization: acme",
        &env.api_url(Base::Root),
        2,
        &["linux"],
        "",
    )
    .replace(
        "  template:\n    spec:",
        &format!(
            "  template:\n    metadata:\n      annotations: {{ {}: failed }}\n    spec:",
            support::simulator::COMPLETE_ANNOTATION
        ),
    );
    env.apply_pool(&yaml).await;
    tokio::time::sleep(Duration::from_secs(45)).await;
    let minted = env.calls("generate-jitconfig");
    eprintln!("{minted} JIT configurations minted in 45 s");
    assert!(
        (3..=12).contains(&minted),
        "{minted} JIT configurations minted in 45 s"
    );
    let (_, _, message) = wait_for(
        "Degraded RunnersFailing",
        Duration::from_secs(5),
        || async {
            let pool = env.pools().get("ci").await.ok()?;
            condition(&pool, "Degraded").filter(|c| c.0 == "True" && c.1 == "RunnersFailing")
        },
    )
    .await;
    assert!(message.contains("failed before coming online"), "{message}");
    let pool = env.pools().get("ci").await.unwrap();
    assert_eq!(
        kstatus(&pool),
        [
            "False RunnersFailing",
            "True RunnersFailing",
            "False AsExpected"
        ],
        "crash-looping runners: not Ready, retried with backoff"
    );
    env.pools()
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_for_pool_gone("ci", T).await;
}

/// Item 5 of issue 10: a pod the API server refuses (here a ResourceQuota)
/// mints no JIT configuration, and the refusal shows in status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pod_mints_no_jit_config_and_shows_in_status() {
    let env = Env::start("quota").await;
    let quota: k8s_openapi::api::core::v1::ResourceQuota = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}),
    )
    .unwrap();
    kube::Api::<k8s_openapi::api::core::v1::ResourceQuota>::namespaced(env.client.clone(), &env.ns)
        .create(&Default::default(), &quota)
        .await
        .unwrap();
    env.apply_org_pool("ci", 1).await;
    let (_, _, message) = wait_for("Degraded PodRejected", T, || async {
        let pool = env.pools().get("ci").await.ok()?;
        condition(&pool, "Degraded").filter(|c| c.0 == "True" && c.1 == "PodRejected")
    })
    .await;
    assert!(message.contains("quota"), "{message}");
    assert_eq!(
        env.calls("generate-jitconfig"),
        0,
        "{:?}",
        env.calls_by_endpoint()
    );
    let secrets = env
        .secrets()
        .list(&ListParams::default().labels(RUNNER_ID_LABEL))
        .await
        .unwrap();
    assert!(secrets.items.is_empty());
}

/// A pool released while GitHub was down leaves its runner pods running (no
/// busy runner is killed); once GitHub answers, the sweep removes the idle
/// ones at once and the busy one after its job: nothing is left forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_pool_released_while_github_was_down_left_is_swept() {
    let env = Env::start("sweep").await;
    let (job, busy) = pool_with_a_busy_runner(&env).await;
    env.fake.set_unavailable(true);
    env.pools()
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    // The operator runs with a 15 s cleanup timeout.
    env.wait_for_pool_released("ci", Duration::from_secs(60))
        .await;
    let events =
        String::from_utf8_lossy(&kubectl(&["get", "events", "-n", &env.ns, "-o", "yaml"]).stdout)
            .into_owned();
    assert!(events.contains("CleanupIncomplete"));
    assert_eq!(
        env.pods()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2,
        "no pod is deleted while GitHub cannot say whether its runner is busy"
    );

    env.fake.set_unavailable(false);
    let org = fake_github::Scope::org("acme");
    wait_for("the idle runner to be swept", T, || async {
        let runners = env.fake.runners(&org);
        let pods = env.pods().list(&ListParams::default()).await.ok()?.items;
        (runners.len() == 1 && runners[0].id == busy && pods.len() == 1).then_some(())
    })
    .await;
    env.fake.finish_job(job).unwrap();
    wait_for_nothing_left(&env).await;
    assert_eq!(
        deletes_of(&env, busy),
        0,
        "a DELETE was sent for the busy runner"
    );
}

/// Item 9 of issue 10: `Ready` means the desired runners are online on
/// GitHub, not that their pods exist; a converged pool shows the kstatus
/// conditions GitOps tools read, and its status is not rewritten while
/// nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_when_the_runners_are_online() {
    let env = Env::start("truth").await;
    let yaml = support::operator::staying_offline(&env.org_pool_yaml("ci", 2));
    env.apply_pool(&yaml).await;
    // Both pods run (their runner processes never register) and the status
    // counts them.
    let pool = wait_for("2 running pods counted as pending", T, || async {
        let pods = env.live_pods("ci").await;
        let running = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        let pool = env.pools().get("ci").await.ok()?;
        (running == 2 && pool.status.as_ref()?.pending_runners == 2).then_some(pool)
    })
    .await;
    assert_eq!(
        kstatus(&pool),
        [
            "False RunnersStarting",
            "True ScalingUp",
            "False AsExpected"
        ],
        "pods exist but no runner is online"
    );

    // The runner processes come online.
    for pod in env.live_pods("ci").await {
        let patch = serde_json::json!({"metadata": {"annotations": {
            support::simulator::STAY_OFFLINE_ANNOTATION: null
        }}});
        env.merge_patch_pod(&pod.name_any(), patch).await;
    }
    env.wait_for_online_runners("ci", 2, T).await;
    let pool = wait_for("Ready", T, || async {
        let pool = env.pools().get("ci").await.ok()?;
        (condition(&pool, "Ready")?.0 == "True").then_some(pool)
    })
    .await;
    assert_eq!(
        kstatus(&pool),
        ["True RunnersOnline", "False Converged", "False AsExpected"]
    );
    let status = pool.status.as_ref().unwrap();
    assert_eq!((status.idle_runners, status.pending_runners), (2, 0));

    // Several passes (2 s sync interval) later, nothing was written.
    let version = pool.resource_version();
    wait_for_more_lists(&env, 3).await;
    let pool = env.pools().get("ci").await.unwrap();
    assert_eq!(
        pool.resource_version(),
        version,
        "status rewritten while nothing changed: {:?}",
        pool.status
    );
}

/// How many runner lists the fake has answered so far.
fn lists(env: &Env) -> usize {
    env.fake
        .request_log()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/actions/runners"))
        .count()
}

/// Waits until the operator has listed the runners `n` more times (so the
/// passes before the last of them have acted).
async fn wait_for_lists(env: &Env, n: usize) {
    let start = lists(env);
    wait_for(&format!("{n} more runner lists"), T, || async {
        (lists(env) >= start + n).then_some(())
    })
    .await;
}

/// Item 7 of issue 10: a paged list is not a snapshot. A runner that one list
/// missed (shifted off a page) past its bootstrap deadline is read directly
/// (`GET …/runners/{id}`) before it is removed: online, it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_missing_from_one_list_is_read_before_it_is_removed() {
    let env = Env::start("paged").await;
    let yaml = env.org_pool_yaml("ci", 1).replace(
        "  replicas: 1\n",
        "  replicas: 1\n  bootstrapTimeoutSeconds: 30\n",
    );
    env.apply_pool(&yaml).await;
    let id = env.wait_for_online_runners("ci", 1, T).await[0];
    let pod = env.live_pods("ci").await.remove(0);
    let created = pod.creation_timestamp().unwrap().0;
    let past_deadline = created + Duration::from_secs(33);
    let wait =
        Duration::try_from(past_deadline.duration_since(k8s_openapi::jiff::Timestamp::now()))
            .unwrap_or_default();
    tokio::time::sleep(wait).await;

    env.fake.hide_from_lists(id, 1);
    wait_for("the list that misses the runner", T, || async {
        (env.fake.hidden_from_lists(id) == 0).then_some(())
    })
    .await;
    wait_for_lists(&env, 2).await;
    assert_eq!(
        deletes_of(&env, id),
        0,
        "a DELETE was sent for the online runner"
    );
    assert!(env.fake.runner(id).is_some());
    assert_eq!(env.live_pods("ci").await[0].name_any(), pod.name_any());
    assert!(
        env.calls("GET /orgs/{org}/actions/runners/{runner_id}") >= 1,
        "{:?}",
        env.calls_by_endpoint()
    );
}

/// Item 7 of issue 10: a runner pod missing from the operator's cache (here
/// it lost the label the watch selects on, as a lagging watch would hide it)
/// is read from the API server before its runner is removed: it exists, so
/// neither its registration nor its Secret goes, and no replacement is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_missing_from_the_cache_is_read_before_its_runner_is_removed() {
    let env = Env::start("lagging").await;
    env.apply_org_pool("ci", 1).await;
    let id = env.wait_for_online_runners("ci", 1, T).await[0];
    let pod = env.live_pods("ci").await.remove(0).name_any();
    let patch = serde_json::json!({"metadata": {"labels": {
        runnerpool::runner::MANAGED_BY_LABEL: null
    }}});
    env.merge_patch_pod(&pod, patch).await;
    wait_for_lists(&env, 3).await;
    assert_eq!(
        deletes_of(&env, id),
        0,
        "a DELETE was sent for a runner whose pod runs"
    );
    assert!(env.fake.runner(id).is_some());
    assert!(
        env.secrets().get_opt(&pod).await.unwrap().is_some(),
        "the runner's Secret was deleted"
    );
    assert_eq!(
        env.calls("generate-jitconfig"),
        1,
        "a replacement was registered"
    );
}

/// Item 10 of issue 10: before any DELETE the runner id is checked against
/// the pool's ownership-marked runners. A failed pod whose runner-id label
/// names someone else's runner (edited by hand or by a job) goes, but no
/// DELETE is sent for that runner; the pod's own registration, now without a
/// pod, is collected as an orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_delete_is_sent_for_a_foreign_runner_named_by_a_pod() {
    let env = Env::start("foreign").await;
    let org = fake_github::Scope::org("acme");
    let foreign = env
        .fake
        .register_runner(&org, "someone-elses", &["linux"], false)
        .unwrap()
        .id;
    env.apply_org_pool("ci", 1).await;
    let own = env.wait_for_online_runners("ci", 1, T).await[0];
    let pod = env.live_pods("ci").await.remove(0).name_any();
    let patch = serde_json::json!({"metadata": {
        "labels": { RUNNER_ID_LABEL: foreign.to_string() },
        "annotations": { support::simulator::COMPLETE_ANNOTATION: "failed" }
    }});
    env.merge_patch_pod(&pod, patch).await;
    wait_for(
        "the failed pod replaced and its registration collected",
        T,
        || async {
            let pods = env.live_pods("ci").await;
            let replaced = pods.len() == 1 && pods[0].name_any() != pod;
            (replaced && env.fake.runner(own).is_none()).then_some(())
        },
    )
    .await;
    assert_eq!(
        deletes_of(&env, foreign),
        0,
        "a DELETE was sent for a runner without the pool's mark"
    );
    let relabels = env
        .fake
        .request_log()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with(&format!("/runners/{foreign}/labels")))
        .count();
    assert_eq!(relabels, 0, "the foreign runner was relabelled");
    assert!(env.fake.runner(foreign).is_some());
}

/// A registration slower than the reconcile bound (a loaded API server, a
/// slow GitHub) is finished, not abandoned: the pass is cut, but each
/// runner's mint → Secret → pod goes on, so one JIT config is minted per
/// runner and the pool comes up. Before, every pass was cut between the mint
/// and the pod: the pool never got a runner and minted on every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_slower_than_the_reconcile_bound_is_finished() {
    // Reconciles bounded at 2 s (no leader election here: the bound applies
    // to every replica), mints of 3 s.
    let env = Env::start_with_slow_mints("slowmint", Duration::from_secs(3)).await;
    env.apply_org_pool("ci", 3).await;
    env.wait_for_online_runners("ci", 3, Duration::from_secs(60))
        .await;
    assert!(
        env.operator.logs().contains("reconcile_timeout"),
        "the passes were not cut by the bound; the test shows nothing"
    );
    assert_eq!(
        env.calls("generate-jitconfig"),
        3,
        "one JIT config per runner, none abandoned"
    );
    let registered = env.fake.runners(&fake_github::Scope::org("acme")).len();
    assert_eq!(registered, 3, "no registration left over");
}
