//! The runner pod features of `spec.containerMode`, `spec.cacheVolumes` and
//! scheduled capacity, end to end: the API server must accept the pods the
//! operator builds, kwok runs them, and their runners come online on the
//! GitHub fake.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use runnerpool::pod::container_mode::{DIND_CONTAINER, DIND_HOST, WORK_VOLUME};
use runnerpool::runner::RUNNER_CONTAINER;
use support::cluster::wait_for;
use support::operator::{Base, Env, connected, kubernetes_mode, pool_yaml};

const T: Duration = Duration::from_secs(60);

fn org_pool(env: &Env, replicas: u32, extra: &str) -> String {
    pool_yaml(
        "ci",
        "organization: acme",
        &env.api_url(Base::Root),
        replicas,
        &["linux"],
        extra,
    )
}

fn container<'a>(list: Option<&'a Vec<Container>>, name: &str) -> &'a Container {
    list.into_iter()
        .flatten()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

/// Waits until the pool's single pod shows every container (init and
/// regular) in the state kwok gives a started pod.
async fn wait_for_running_pod(env: &Env) -> Pod {
    wait_for("the runner pod Running", T, || async {
        let pod = env.live_pods("ci").await.into_iter().next()?;
        let status = pod.status.as_ref()?;
        (status.phase.as_deref() == Some("Running")).then_some(pod)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dind_runner_pod_is_accepted_started_and_comes_online() {
    let env = Env::start("dind").await;
    env.apply_pool(&org_pool(&env, 1, "  containerMode: dind"))
        .await;
    let ids = env.wait_for_online_runners("ci", 1, T).await;
    let pod = wait_for_running_pod(&env).await;
    let spec = pod.spec.as_ref().unwrap();

    let dind = container(spec.init_containers.as_ref(), DIND_CONTAINER);
    assert_eq!(dind.restart_policy.as_deref(), Some("Always"));
    assert!(dind.startup_probe.is_some());
    let runner = container(Some(&spec.containers), RUNNER_CONTAINER);
    let docker_host = runner
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "DOCKER_HOST")
        .and_then(|e| e.value.as_deref());
    assert_eq!(docker_host, Some(DIND_HOST));
    assert!(
        runner
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == WORK_VOLUME)
    );
    // The sidecar runs next to the runner (kwok reports it as a started
    // native sidecar).
    let sidecar = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|s| s.iter().find(|c| c.name == DIND_CONTAINER))
        .expect("dind status");
    assert!(
        sidecar
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .is_some()
    );

    // A job runs, the runner exits and is replaced by a fresh one.
    let job = env.fake.queue_job("acme/app", &["linux"]).unwrap();
    wait_for("the job to start", T, || async {
        (env.fake.job(job)?.runner_id == Some(ids[0])).then_some(())
    })
    .await;
    env.fake.finish_job(job).unwrap();
    wait_for("a replacement runner", T, || async {
        let now = env
            .wait_for_online_runners("ci", 1, Duration::from_secs(10))
            .await;
        (now[0] != ids[0]).then_some(())
    })
    .await;
    support::cluster::wait_for_gone("the finished pod to go", &env.pods(), &pod.name_any(), T)
        .await;
    env.assert_no_secret_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_mode_runner_gets_its_claim_account_and_role() {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::{Api, DeleteParams};

    let (env, _) = Env::start_connected("kube-mode", &[]).await;
    let class = format!("hooks-{}", env.ns);
    support::operator::create_pvs(&env.client, &class, 3).await;
    let pool = env
        .apply_pool(&connected(
            &org_pool(&env, 1, &kubernetes_mode(&class)),
            &env.ns,
        ))
        .await;
    env.wait_for_online_runners("ci", 1, T).await;
    let pod = wait_for_running_pod(&env).await;
    let spec = pod.spec.as_ref().unwrap();
    let account = "ci-container-hooks";
    assert_eq!(spec.service_account_name.as_deref(), Some(account));
    assert_eq!(spec.automount_service_account_token, Some(true));

    // The claim the hooks look for, made from the template and bound.
    let claim = Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), &env.ns)
        .get(&format!("{}-{WORK_VOLUME}", pod.name_any()))
        .await
        .expect("the work claim");
    assert_eq!(claim.spec.unwrap().storage_class_name, Some(class.clone()));

    let marked_as_pools = |meta: &kube::api::ObjectMeta| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(runnerpool::runner::POOL_UID_LABEL))
            == pool.metadata.uid.as_ref()
    };
    let sa = Api::<ServiceAccount>::namespaced(env.client.clone(), &env.ns)
        .get(account)
        .await
        .expect("the hooks ServiceAccount");
    let role = Api::<Role>::namespaced(env.client.clone(), &env.ns)
        .get(account)
        .await
        .expect("the hooks Role");
    let binding = Api::<RoleBinding>::namespaced(env.client.clone(), &env.ns)
        .get(account)
        .await
        .expect("the hooks RoleBinding");
    assert!(
        marked_as_pools(&sa.metadata)
            && marked_as_pools(&role.metadata)
            && marked_as_pools(&binding.metadata)
    );
    assert_eq!(role.rules, Some(runnerpool::pod::hooks::hooks_rules()));

    // They go with the pool.
    env.pools()
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_for_pool_gone("ci", T).await;
    wait_for("the hooks objects to be collected", T, || async {
        let roles = Api::<Role>::namespaced(env.client.clone(), &env.ns);
        let accounts = Api::<ServiceAccount>::namespaced(env.client.clone(), &env.ns);
        let gone = roles.get_opt(account).await.ok()?.is_none()
            && accounts.get_opt(account).await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    support::operator::delete_pvs(&env.client, &class).await;
}

/// Issue 21, item 5: a pool's hooks objects are put back when deleted by
/// hand, stay (with its job pod template) while a released pool's runner still runs (the garbage
/// collector, which processed the pool's deletion, does not take them), and
/// go with its last runner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hooks_account_is_put_back_and_outlives_a_released_pool_while_its_runner_runs() {
    use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::{Api, DeleteParams, PostParams};

    let (env, _) = Env::start_connected(
        "hooks-life",
        &[
            "--cleanup-timeout-seconds",
            "3",
            "--github-sync-interval-seconds",
            "3",
        ],
    )
    .await;
    let class = format!("hooks-life-{}", env.ns);
    support::operator::create_pvs(&env.client, &class, 2).await;
    let pool = env
        .apply_pool(&connected(
            &org_pool(
                &env,
                1,
                &format!("{}{}", kubernetes_mode(&class), job_pod_template("1")),
            ),
            &env.ns,
        ))
        .await;
    env.wait_for_online_runners("ci", 1, T).await;
    let account = "ci-container-hooks";
    let roles = Api::<Role>::namespaced(env.client.clone(), &env.ns);
    let bindings = Api::<RoleBinding>::namespaced(env.client.clone(), &env.ns);
    let accounts = Api::<ServiceAccount>::namespaced(env.client.clone(), &env.ns);

    // Deleted by hand: put back.
    roles
        .delete(account, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the hooks Role to be put back", T, || async {
        roles.get_opt(account).await.ok()?.map(|_| ())
    })
    .await;

    // A job runs; GitHub goes away; the pool is deleted and released after
    // the cleanup timeout with its runner still running.
    let job = env.fake.queue_job("acme/app", &["linux"]).unwrap();
    wait_for("the job to start", T, || async {
        env.fake.job(job)?.runner_id
    })
    .await;
    // Owned by the pool: gone once the garbage collector processed its deletion.
    let canary: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "canary", "ownerReferences": [{
            "apiVersion": "actions.runnerpool.dev/v1alpha1", "kind": "RunnerPool",
            "name": "ci", "uid": pool.metadata.uid, "controller": true }] }
    }))
    .unwrap();
    let configmaps = Api::<ConfigMap>::namespaced(env.client.clone(), &env.ns);
    configmaps
        .create(&PostParams::default(), &canary)
        .await
        .unwrap();
    env.fake.set_unavailable(true);
    env.pools()
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_for_pool_released("ci", T).await;
    support::cluster::wait_for_gone("the pool's canary", &configmaps, "canary", T).await;
    assert_eq!(
        env.live_pods("ci").await.len(),
        1,
        "the busy runner runs on"
    );
    assert!(
        accounts.get_opt(account).await.unwrap().is_some()
            && roles.get_opt(account).await.unwrap().is_some()
            && bindings.get_opt(account).await.unwrap().is_some(),
        "the hooks objects were taken from a runner that still runs"
    );
    // So is the job pod template the busy runner reads.
    let template =
        env.live_pods("ci").await[0].annotations()["actions.runnerpool.dev/job-pod-template"]
            .clone();
    assert!(
        configmaps.get_opt(&template).await.unwrap().is_some(),
        "the job pod template was taken from a runner that still runs"
    );

    // GitHub is back and the job ends: the sweep removes the runner, then them.
    env.fake.set_unavailable(false);
    env.fake.finish_job(job).unwrap();
    wait_for(
        "the hooks objects to go with the last runner",
        T,
        || async {
            let gone = accounts.get_opt(account).await.ok()?.is_none()
                && roles.get_opt(account).await.ok()?.is_none()
                && bindings.get_opt(account).await.ok()?.is_none()
                && configmaps.get_opt(&template).await.ok()?.is_none();
            gone.then_some(())
        },
    )
    .await;
    wait_for("the runner's pod to go too", T, || async {
        env.live_pods("ci").await.is_empty().then_some(())
    })
    .await;
    support::operator::delete_pvs(&env.client, &class).await;
}

/// `spec.jobPodTemplate` with `$job`'s cpu request `cpu`.
fn job_pod_template(cpu: &str) -> String {
    format!(
        r#"
  jobPodTemplate:
    metadata: {{ labels: {{ team: builds }} }}
    spec:
      nodeSelector: {{ pool: jobs }}
      containers:
        - name: $job
          resources: {{ requests: {{ cpu: "{cpu}" }} }}
          volumeMounts: [{{ name: cache, mountPath: /cache }}]
      volumes: [{{ name: cache, emptyDir: {{}} }}]"#
    )
}

/// The job pod template ConfigMap a runner pod mounts, checked against what
/// the hooks are told: the variable names the mounted file, whose content
/// parses as the pool's template.
async fn job_pod_template_of(
    env: &Env,
    pod: &Pod,
    pool: &runnerpool::RunnerPool,
) -> k8s_openapi::api::core::v1::ConfigMap {
    use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec};
    let name = pod.annotations()["actions.runnerpool.dev/job-pod-template"].clone();
    let spec = pod.spec.as_ref().unwrap();
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.config_map.as_ref().is_some_and(|c| c.name == name))
        .expect("the ConfigMap as a volume");
    let runner = container(Some(&spec.containers), RUNNER_CONTAINER);
    let mount = runner
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == volume.name)
        .expect("mounted into the runner");
    let file = runner
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE")
        .and_then(|e| e.value.clone())
        .expect("the hooks' variable");
    let key = file
        .strip_prefix(&format!("{}/", mount.mount_path))
        .expect("a file in the mounted directory");
    let map = kube::Api::<ConfigMap>::namespaced(env.client.clone(), &env.ns)
        .get(&name)
        .await
        .expect("the job pod template ConfigMap");
    assert_eq!(map.immutable, Some(true));
    let labels = map.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels.get(runnerpool::runner::POOL_UID_LABEL),
        pool.metadata.uid.as_ref()
    );
    assert!(map.metadata.owner_references.is_none());
    let parsed: PodTemplateSpec =
        serde_yaml::from_str(&map.data.as_ref().unwrap()[key]).expect("a pod template");
    assert_eq!(Some(&parsed), pool.spec.job_pod_template.as_ref());
    map
}

/// Issue 23, item 6: a kubernetes-mode pool's job pod template reaches its
/// runners as the file the container hooks read; a changed template reaches
/// new runners while a busy runner keeps the one it started with; one no
/// runner uses any more is deleted, and the rest go with the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_pod_template_reaches_new_runners_and_leaves_a_busy_one_alone() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, DeleteParams, ListParams, PostParams};

    let (env, _) = Env::start_connected("job-pod", &["--github-sync-interval-seconds", "3"]).await;
    let class = format!("job-pod-{}", env.ns);
    support::operator::create_pvs(&env.client, &class, 4).await;
    let manifest = |replicas: u32, cpu: &str| {
        let extra = format!("{}{}", kubernetes_mode(&class), job_pod_template(cpu));
        connected(&org_pool(&env, replicas, &extra), &env.ns)
    };
    let pool = env.apply_pool(&manifest(1, "2")).await;
    env.wait_for_online_runners("ci", 1, T).await;
    let first = wait_for_running_pod(&env).await;
    let first_template = job_pod_template_of(&env, &first, &pool).await;

    // The runner takes a job; the template changes and a second runner is
    // wanted: it gets the new template, the busy one keeps its own.
    let job = env.fake.queue_job("acme/app", &["linux"]).unwrap();
    wait_for("the job to start", T, || async {
        env.fake.job(job)?.runner_id
    })
    .await;
    let changed = env.apply_pool(&manifest(2, "3")).await;
    let second = wait_for("a second runner pod", T, || async {
        env.live_pods("ci").await.into_iter().find(|p| {
            p.metadata.uid != first.metadata.uid
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
    })
    .await;
    let second_template = job_pod_template_of(&env, &second, &changed).await;
    assert_ne!(second_template.metadata.name, first_template.metadata.name);

    // A ConfigMap of the pool's that no runner names is deleted (proof that
    // the operator looked); the busy runner's stays, unchanged, as its pod.
    let configmaps = Api::<ConfigMap>::namespaced(env.client.clone(), &env.ns);
    let mut unused = first_template.clone();
    unused.metadata = kube::api::ObjectMeta {
        name: Some("ci-job-pod-unused".to_string()),
        labels: first_template.metadata.labels.clone(),
        ..Default::default()
    };
    configmaps
        .create(&PostParams::default(), &unused)
        .await
        .unwrap();
    support::cluster::wait_for_gone("the unused ConfigMap", &configmaps, "ci-job-pod-unused", T)
        .await;
    let kept = configmaps
        .get(&first_template.name_any())
        .await
        .expect("the busy runner's template");
    assert_eq!(kept.data, first_template.data);
    let busy = env
        .pods()
        .get(&first.name_any())
        .await
        .expect("the busy runner's pod");
    assert_eq!(busy.metadata.uid, first.metadata.uid);
    assert!(busy.metadata.deletion_timestamp.is_none());

    // The job ends: its runner is replaced, and its template goes.
    env.fake.finish_job(job).unwrap();
    support::cluster::wait_for_gone(
        "the finished runner's template",
        &configmaps,
        &first_template.name_any(),
        T,
    )
    .await;

    // The rest goes with the pool.
    env.pools()
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_for_pool_gone("ci", T).await;
    let selector = format!(
        "{}={}",
        runnerpool::runner::POOL_UID_LABEL,
        pool.metadata.uid.clone().unwrap()
    );
    wait_for("the pool's template ConfigMaps to go", T, || async {
        let left = configmaps
            .list(&ListParams::default().labels(&selector))
            .await
            .ok()?;
        left.items.is_empty().then_some(())
    })
    .await;

    // A runner container naming a template file of its own would hide the
    // pool's from the hooks: refused, with no runner.
    let own = manifest(1, "2").replacen(
        "image: ghcr.io/actions/actions-runner:latest",
        "image: ghcr.io/actions/actions-runner:latest\n          env: [{ name: ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE, value: /mine.yaml }]",
        1,
    );
    env.apply_pool(&own).await;
    let (reason, message) = wait_for("the pool Stalled", T, || async {
        env.true_condition("ci", "Stalled").await
    })
    .await;
    assert_eq!(reason, "InvalidSpec", "{message}");
    assert!(
        message.contains("ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE"),
        "{message}"
    );
    assert!(env.live_pods("ci").await.is_empty());
    support::operator::delete_pvs(&env.client, &class).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_volumes_are_mounted_and_the_runner_comes_online() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use kube::api::{Api, PostParams};

    let env = Env::start("caches").await;
    let class = format!("cache-{}", env.ns);
    support::operator::create_pvs(&env.client, &class, 3).await;
    let shared: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "toolcache" },
        "spec": { "storageClassName": class, "accessModes": ["ReadWriteOnce"],
                  "resources": { "requests": { "storage": "1Gi" } } }
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), &env.ns)
        .create(&PostParams::default(), &shared)
        .await
        .unwrap();
    let extra = format!(
        r#"  cacheVolumes:
    - {{ name: tools, mountPath: /opt/hostedtoolcache, readOnly: true, source: {{ persistentVolumeClaim: {{ claimName: toolcache }} }} }}
    - {{ name: deps, mountPath: /home/runner/.cache, source: {{ ephemeral: {{ storageClassName: {class}, size: 1Gi }} }} }}"#
    );
    env.apply_pool(&org_pool(&env, 1, &extra)).await;
    env.wait_for_online_runners("ci", 1, T).await;
    let pod = wait_for_running_pod(&env).await;
    let runner = container(
        Some(&pod.spec.as_ref().unwrap().containers),
        RUNNER_CONTAINER,
    );
    let mounts: Vec<&str> = runner
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(mounts.contains(&"/opt/hostedtoolcache") && mounts.contains(&"/home/runner/.cache"));
    Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), &env.ns)
        .get(&format!("{}-deps", pod.name_any()))
        .await
        .expect("the runner's own cache claim");
    support::operator::delete_pvs(&env.client, &class).await;
}

/// Applies `yaml` as a server-side dry run; returns the API server's refusal.
async fn refusal(env: &Env, yaml: &str) -> String {
    use kube::api::{Patch, PatchParams};
    let mut value: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
    value["metadata"]["namespace"] = env.ns.clone().into();
    let name = value["metadata"]["name"].as_str().unwrap().to_string();
    let params = PatchParams::apply("integration-test").force().dry_run();
    match env
        .pools()
        .patch(&name, &params, &Patch::Apply(&value))
        .await
    {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_pod_features_are_refused_with_clear_messages() {
    let env = Env::start("features-cel").await;
    let pvc = "source: { persistentVolumeClaim: { claimName: c } }";
    let cases = [
        (
            "  containerMode: kubernetes".to_string(),
            "containerMode kubernetes needs workVolumeClaimTemplate",
        ),
        (
            "  containerMode: podman".to_string(),
            "spec.containerMode",
        ),
        (
            format!("  cacheVolumes:\n    - {{ name: a, mountPath: /a, {pvc} }}\n    - {{ name: a, mountPath: /b, {pvc} }}"),
            "every name must be unique",
        ),
        (
            format!("  cacheVolumes:\n    - {{ name: a, mountPath: /a, {pvc} }}\n    - {{ name: b, mountPath: /a, {pvc} }}"),
            "every mountPath must be unique",
        ),
        (
            format!("  cacheVolumes:\n    - {{ name: a, mountPath: relative/path, {pvc} }}"),
            "mountPath must be an absolute path",
        ),
        (
            "  cacheVolumes:\n    - { name: a, mountPath: /a, source: {} }".to_string(),
            "set exactly one source",
        ),
        (
            "  cacheVolumes:\n    - { name: a, mountPath: /a, source: { persistentVolumeClaim: { claimName: c }, ephemeral: { size: 1Gi } } }".to_string(),
            "set exactly one source",
        ),
        (
            format!("  cacheVolumes:\n    - {{ name: work, mountPath: /a, {pvc} }}"),
            "are the operator's own volumes",
        ),
        (
            "  workVolumeClaimTemplate: { size: lots }".to_string(),
            "workVolumeClaimTemplate.size",
        ),
        (
            format!("  cacheVolumes:\n    - {{ name: job-pod-template, mountPath: /a, {pvc} }}"),
            "are the operator's own volumes",
        ),
        (
            "  jobPodTemplate: { spec: { nodeSelector: { a: b } } }".to_string(),
            "jobPodTemplate applies to containerMode kubernetes only",
        ),
    ];
    let kube =
        "  containerMode: kubernetes\n  workVolumeClaimTemplate: { size: 1Gi }\n  jobPodTemplate:";
    let job_pod_cases = [
        (
            "{ metadata: { name: mine } }",
            "only labels and annotations reach the job pods",
        ),
        (
            "{ spec: { containers: [{ name: $job }, { name: sidecar }] } }",
            "a container of any other name is added to the job pod as is and needs an image",
        ),
        (
            "{ spec: { volumes: [{ name: work, emptyDir: {} }] } }",
            "the container hooks' own volumes",
        ),
        (
            "{ spec: { restartPolicy: Always } }",
            "restartPolicy must be Never or unset",
        ),
        ("{ spec: { nodeName: node-1 } }", "nodeName cannot be set"),
    ]
    .map(|(template, expected)| (format!("{kube} {template}"), expected));
    let window =
        |w: &str| format!("  autoscaling:\n    maxRunners: 5\n    schedules:\n      - {w}");
    let schedule_cases = [
        (
            window("{ start: \"24:00\", end: \"06:00\", minRunners: 1 }"),
            "start must be a time of day as HH:MM",
        ),
        (
            window("{ start: \"08:00\", end: \"7:30\", minRunners: 1 }"),
            "end must be a time of day as HH:MM",
        ),
        (
            window("{ start: \"08:00\", end: \"08:00\", minRunners: 1 }"),
            "start and end must differ",
        ),
        (
            window("{ start: \"08:00\", end: \"09:00\" }"),
            "set minRunners or idleRunners",
        ),
        (
            window("{ start: \"08:00\", end: \"09:00\", minRunners: 6 }"),
            "minRunners of a window must not exceed maxRunners",
        ),
        (
            window("{ start: \"08:00\", end: \"09:00\", minRunners: 1, days: [Monday] }"),
            "days",
        ),
    ];
    let cases = cases.into_iter().chain(job_pod_cases).chain(schedule_cases);
    for (extra, expected) in cases {
        let yaml = org_pool(&env, 1, &extra);
        let yaml = if extra.contains("autoscaling") {
            yaml.replace("  replicas: 1\n", "")
        } else {
            yaml
        };
        let message = refusal(&env, &yaml).await;
        assert!(
            message.contains(expected),
            "{extra}\nexpected {expected:?} in {message}"
        );
    }
}

/// `HH:MM` in UTC, `minutes` from now.
fn utc_hh_mm(minutes: i64) -> String {
    let t = k8s_openapi::jiff::Timestamp::now()
        .checked_add(k8s_openapi::jiff::SignedDuration::from_mins(minutes))
        .unwrap();
    t.strftime("%H:%M").to_string()
}

fn scheduled_pool(env: &Env, name: &str, windows: &str) -> String {
    pool_yaml(
        name,
        "organization: acme",
        &env.api_url(Base::Root),
        0,
        &["linux"],
        &format!("  autoscaling:\n    minRunners: 0\n    maxRunners: 5\n    idleRunners: 0\n    scaleDownDelaySeconds: 0\n    schedules:\n{windows}"),
    )
    .replace("  replicas: 0\n", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_schedule_window_raises_the_minimum_and_shows_in_status() {
    let env = Env::start("schedule").await;
    // Active now (spanning midnight when now is near it), overlapping a
    // second active window with a lower minimum, plus one that is not active.
    let windows = format!(
        "      - {{ name: now, start: \"{}\", end: \"{}\", minRunners: 2 }}\n      - {{ name: lower, start: \"{}\", end: \"{}\", minRunners: 1, idleRunners: 0 }}\n      - {{ name: later, start: \"{}\", end: \"{}\", minRunners: 4 }}\n",
        utc_hh_mm(-120),
        utc_hh_mm(120),
        utc_hh_mm(-60),
        utc_hh_mm(60),
        utc_hh_mm(180),
        utc_hh_mm(200),
    );
    env.apply_pool(&scheduled_pool(&env, "ci", &windows)).await;
    env.wait_for_online_runners("ci", 2, T).await;
    let schedule = wait_for("the schedule in status", T, || async {
        env.pools().get("ci").await.ok()?.status?.schedule
    })
    .await;
    assert_eq!(schedule.active_windows, ["now", "lower"]);
    assert_eq!(
        (
            schedule.effective_min_runners,
            schedule.effective_idle_runners
        ),
        (2, 0)
    );
    // The next change is when `lower` closes, an hour from now.
    let next: k8s_openapi::jiff::Timestamp = schedule.next_change.unwrap().parse().unwrap();
    let in_secs = next
        .duration_since(k8s_openapi::jiff::Timestamp::now())
        .as_secs();
    assert!((3400..=3600).contains(&in_secs), "{in_secs}");

    // An unknown time zone: the window is ignored and status says why.
    let unknown = "      - { name: mars, start: \"00:00\", end: \"23:59\", timeZone: Mars/Olympus_Mons, minRunners: 1 }\n";
    env.apply_pool(&scheduled_pool(&env, "tz", unknown)).await;
    let (reason, message) = wait_for("pool tz Degraded", T, || async {
        env.true_condition("tz", "Degraded").await
    })
    .await;
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("Mars/Olympus_Mons") && message.contains("mars"),
        "{message}"
    );
    assert!(env.live_pods("tz").await.is_empty());
}

/// A window that opens in a minute or two scales the pool up at its start,
/// with GitHub listed only every 10 minutes: the boundary itself brings the
/// reconcile, no polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_scales_the_pool_up_when_it_opens() {
    let env = Env::start_with("opens", &["--github-sync-interval-seconds", "600"]).await;
    // The next minute but one: 60 to 120 s away.
    let start = utc_hh_mm(2);
    let windows = format!(
        "      - {{ start: \"{start}\", end: \"{}\", minRunners: 1 }}\n",
        utc_hh_mm(30)
    );
    env.apply_pool(&scheduled_pool(&env, "ci", &windows)).await;
    wait_for("the next change in status", T, || async {
        env.pools()
            .get("ci")
            .await
            .ok()?
            .status?
            .schedule?
            .next_change
    })
    .await;
    assert!(
        env.live_pods("ci").await.is_empty(),
        "closed: no runner yet"
    );
    env.wait_for_online_runners("ci", 1, Duration::from_secs(200))
        .await;
    // Status is written at the end of a pass, which on a loaded machine can
    // come after the runner is online: wait for it, as for the runner.
    let schedule = wait_for("the open window in status", T, || async {
        let schedule = env.pools().get("ci").await.ok()?.status?.schedule?;
        (!schedule.active_windows.is_empty()).then_some(schedule)
    })
    .await;
    assert_eq!(schedule.active_windows.len(), 1);
    assert_eq!(schedule.effective_min_runners, 1);
}

/// Issue 21: a template that says nothing about security gives runner pods
/// that pass the "restricted" Pod Security level in modes `none` and
/// `kubernetes` (the operator's dry run runs before any JIT config is
/// minted, so a refused pod would show as `PodRejected`). A dind pool's
/// daemon is privileged: such a namespace refuses it, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_pods_pass_the_restricted_pod_security_level() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, Patch, PatchParams};

    let (env, _) = Env::start_connected("restricted", &[]).await;
    let restricted = serde_json::json!({ "metadata": { "labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    } } });
    Api::<Namespace>::all(env.client.clone())
        .patch(&env.ns, &PatchParams::default(), &Patch::Merge(&restricted))
        .await
        .unwrap();
    let class = format!("restricted-{}", env.ns);
    support::operator::create_pvs(&env.client, &class, 2).await;
    let pool = |name: &str, extra: &str| {
        let yaml = pool_yaml(
            name,
            "organization: acme",
            &env.api_url(Base::Root),
            1,
            &["linux"],
            extra,
        );
        connected(&yaml, &env.ns)
    };
    env.apply_pool(&pool("plain", "")).await;
    env.apply_pool(&pool("kube", &kubernetes_mode(&class)))
        .await;
    env.wait_for_online_runners("plain", 1, T).await;
    env.wait_for_online_runners("kube", 1, T).await;
    let minted = env.calls("generate-jitconfig");

    env.apply_pool(&pool("dind", "  containerMode: dind")).await;
    let (reason, message) = wait_for("pool dind Degraded", T, || async {
        env.true_condition("dind", "Degraded").await
    })
    .await;
    assert_eq!(reason, "PodRejected", "{message}");
    assert!(
        message.contains("PodSecurity") && message.contains("privileged"),
        "{message}"
    );
    assert!(env.live_pods("dind").await.is_empty());
    assert_eq!(
        env.calls("generate-jitconfig"),
        minted,
        "nothing minted for the refused pool"
    );
    support::operator::delete_pvs(&env.client, &class).await;
}
