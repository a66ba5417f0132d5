//! Least privilege: the operator runs with nothing but the ServiceAccount and
//! RBAC objects of the Helm chart, authenticated by a token from the
//! TokenRequest API, and still carries a pool through its whole life; in
//! namespaced mode that ServiceAccount sees nothing outside its namespace.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use runnerpool::RunnerPool;
use runnerpool::runner::{
    LABELS_HASH_ANNOTATION, RUNNER_ID_LABEL, desired_custom_labels, labels_hash, ownership_label,
};
use support::cluster::{self, client_with_token, expect_success, helm, kubectl, wait_for};
use support::operator::{
    Base, Env, INSTALL_ID, connected, connections_namespace, create_secret, kubernetes_mode,
    pool_yaml,
};

const T: Duration = Duration::from_secs(40);

/// The chart's RBAC, installed for one test: removes its cluster-scoped
/// objects on drop (namespaced ones go with the test namespace).
struct ChartRbac {
    release: String,
    token: String,
    kubeconfig: PathBuf,
}

impl ChartRbac {
    /// Renders the ServiceAccount and RBAC templates of the chart for a
    /// release in `ns` (`watchNamespace=ns` when `namespaced`, and the chart
    /// values `sets`), applies them and mints a token for the ServiceAccount.
    async fn install(
        client: &kube::Client,
        ns: &str,
        namespaced: bool,
        sets: &[&str],
    ) -> ChartRbac {
        let release = format!("rbac-{:08x}", rand::random::<u32>());
        let chart = cluster::repo_path("charts/runnerpool-operator");
        let watch = format!("watchNamespace={}", if namespaced { ns } else { "" });
        let mut args = vec![
            "template",
            &release,
            chart.to_str().unwrap(),
            "--namespace",
            ns,
            "--set",
            &watch,
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
            "--show-only",
            "templates/connections-rbac.yaml",
            "--show-only",
            "templates/leader-election-rbac.yaml",
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        let rendered = expect_success("helm template (RBAC only)", &helm(&args));
        let dir = cluster::repo_root().join("target/test-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = dir.join(format!("{release}-rbac.yaml"));
        std::fs::write(&manifest, &rendered).unwrap();
        expect_success(
            "kubectl apply (chart RBAC)",
            &kubectl(&["apply", "-f", manifest.to_str().unwrap()]),
        );
        let sa_name = format!("{release}-runnerpool-operator");
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token = Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .create_token_request(&sa_name, &PostParams::default(), &request)
            .await
            .expect("a ServiceAccount token")
            .status
            .expect("TokenRequest status")
            .token
            .expect("a token in the TokenRequest status");
        let (server, ca) = cluster::server_and_ca();
        let kubeconfig = dir.join(format!("{release}-kubeconfig"));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {sa_name}\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: {sa_name}\n    namespace: {ns}\ncurrent-context: c\n"
            ),
        )
        .unwrap();
        ChartRbac {
            release,
            token,
            kubeconfig,
        }
    }
}

impl Drop for ChartRbac {
    fn drop(&mut self) {
        let name = format!("{}-runnerpool-operator", self.release);
        let connections = format!("{name}-connections");
        let _ = kubectl(&[
            "delete",
            "--ignore-not-found",
            "clusterrole,clusterrolebinding",
            &name,
            &connections,
        ]);
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

/// Starts the usual test environment with the operator running as the chart's
/// ServiceAccount (chart values `sets`, and a connections namespace of its
/// own, see [`Env::use_connection`]); returns it with that ServiceAccount's RBAC.
async fn env_with_chart_rbac(prefix: &str, namespaced: bool, sets: &[&str]) -> (Env, ChartRbac) {
    support::operator::install_crd();
    let connections = connections_namespace(&cluster::client().await).await;
    let rbac = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = rbac.clone();
    let mut sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    sets.push(format!("connectionsNamespace={connections}"));
    let args = ["--leader-elect", "--connections-namespace", &connections];
    let env = Env::start_with_kubeconfig(prefix, &args, |client, ns| async move {
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let installed = ChartRbac::install(&client, &ns, namespaced, &sets).await;
        let kubeconfig = installed.kubeconfig.clone();
        *slot.lock().unwrap() = Some(installed);
        kubeconfig
    })
    .await;
    let rbac = rbac.lock().unwrap().take().expect("RBAC installed");
    (env, rbac)
}

/// Whether the API server answered 403 Forbidden.
fn is_forbidden(answer: Result<(), kube::Error>) -> bool {
    matches!(answer, Err(kube::Error::Api(ref s)) if s.code == 403)
}

fn assert_nothing_was_forbidden(env: &Env) {
    let logs = env.operator.logs();
    let forbidden: Vec<&str> = logs
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("forbidden"))
        .collect();
    assert!(
        forbidden.is_empty(),
        "the operator hit RBAC denials:\n{}",
        forbidden.join("\n")
    );
}

/// A pool of two comes up, a finished job's runner is replaced, deleting the
/// pool cleans up: all with the ClusterRole of the chart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_cluster_role_is_enough_for_the_whole_lifecycle() {
    let (env, rbac) = env_with_chart_rbac("rbac", false, &[]).await;
    env.apply_org_pool("ci", 2).await;
    let ids = env.wait_for_online_runners("ci", 2, T).await;

    let job = env.fake.queue_job("acme/app", &["linux"]).unwrap();
    let busy = wait_for("the job to start", T, || async {
        env.fake.job(job)?.runner_id
    })
    .await;
    env.fake.finish_job(job).unwrap();
    wait_for("a replacement runner", T, || async {
        let now = env
            .wait_for_online_runners("ci", 2, Duration::from_secs(10))
            .await;
        (!now.contains(&busy) && ids.iter().any(|id| now.contains(id))).then_some(())
    })
    .await;

    // A label edit reaches the runners on GitHub and marks their pods.
    relabel_and_wait(&env, T).await;

    // The operator published its events (events.k8s.io/v1) as the ServiceAccount.
    let events = expect_success(
        "kubectl get events",
        &kubectl(&[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            &env.ns,
            "-o",
            "yaml",
        ]),
    );
    assert!(events.contains("RunnersCreated"), "no RunnersCreated event");

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
    assert_nothing_was_forbidden(&env);
    assert!(
        env.operator.logs().contains("acquired the leader Lease"),
        "the operator led through the chart's leader-election Role"
    );

    // In cluster mode the ServiceAccount may watch across namespaces...
    let sa = client_with_token(&rbac.token).await;
    Api::<RunnerPool>::all(sa.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("listing RunnerPools in all namespaces");
    Api::<Pod>::all(sa.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("listing pods in all namespaces");
    // ...but gets nothing it does not use.
    assert!(is_forbidden(
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(sa.clone(), &env.ns)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(is_forbidden(
        Api::<k8s_openapi::api::core::v1::Namespace>::all(sa.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(is_forbidden(
        Api::<RunnerPool>::namespaced(sa.clone(), &env.ns)
            .delete("ci", &DeleteParams::default())
            .await
            .map(|_| ())
    ));
    assert!(is_forbidden(
        Api::<Pod>::namespaced(sa, &env.ns)
            .evict("any", &Default::default())
            .await
            .map(|_| ())
    ));
}

/// Applies pool `ci` with labels `linux, gpu` and waits until every runner has
/// them on GitHub; returns the hash the pods should carry.
async fn relabel(env: &Env) -> String {
    let url = env.api_url(Base::Root);
    let pool = env
        .apply_pool(&pool_yaml(
            "ci",
            "organization: acme",
            &url,
            2,
            &["linux", "gpu"],
            "",
        ))
        .await;
    let owner = ownership_label(INSTALL_ID, &pool.uid().unwrap());
    labels_hash(&desired_custom_labels(&pool, &owner))
}

async fn runners_have_gpu(env: &Env) -> bool {
    let runners = env.fake.runners(&fake_github::Scope::org("acme"));
    !runners.is_empty()
        && runners
            .iter()
            .all(|r| r.labels.iter().any(|l| l.name == "gpu"))
}

/// Relabels pool `ci` and waits until GitHub and the pods show it.
async fn relabel_and_wait(env: &Env, timeout: Duration) {
    let hash = relabel(env).await;
    wait_for("labels on GitHub and the pods marked", timeout, || async {
        let pods = env.live_pods("ci").await;
        let marked = !pods.is_empty()
            && pods
                .iter()
                .all(|p| p.annotations().get(LABELS_HASH_ANNOTATION) == Some(&hash));
        (marked && runners_have_gpu(env).await).then_some(())
    })
    .await;
}

fn without_pod_patch(rules: &mut Option<Vec<k8s_openapi::api::rbac::v1::PolicyRule>>) {
    for rule in rules.iter_mut().flatten() {
        if rule.resources.iter().flatten().any(|r| r == "pods") {
            rule.verbs.retain(|v| v != "patch");
        }
    }
}

/// An API server that refuses the relabelled pods' annotation (a role without
/// pods/patch) is reported as a Warning event, not swallowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pod_patch_is_reported() {
    let (env, rbac) = env_with_chart_rbac("rbac-patch", false, &[]).await;
    env.apply_org_pool("ci", 2).await;
    env.wait_for_online_runners("ci", 2, T).await;
    let roles: Api<ClusterRole> = Api::all(env.client.clone());
    let name = format!("{}-runnerpool-operator", rbac.release);
    let mut role = roles.get(&name).await.unwrap();
    without_pod_patch(&mut role.rules);
    roles
        .replace(&name, &PostParams::default(), &role)
        .await
        .unwrap();
    // The release namespace is the pool's here: the leader-election Role
    // grants pods/patch there too (for the leader's own pod).
    let roles: Api<Role> = Api::namespaced(env.client.clone(), &env.ns);
    let election = format!("{name}-leader-election");
    let mut role = roles.get(&election).await.unwrap();
    without_pod_patch(&mut role.rules);
    roles
        .replace(&election, &PostParams::default(), &role)
        .await
        .unwrap();
    relabel(&env).await;
    wait_for("a PodPatchRefused event", T, || async {
        let events = kubectl(&["get", "events", "-n", &env.ns, "-o", "yaml"]);
        let events = String::from_utf8_lossy(&events.stdout).into_owned();
        events.contains("PodPatchRefused").then_some(())
    })
    .await;
    assert!(
        runners_have_gpu(&env).await,
        "GitHub got the labels all the same"
    );
}

/// With `watchNamespace` the chart grants a Role in that namespace only: the
/// operator works there and its ServiceAccount reads nothing elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_mode_cannot_read_other_namespaces() {
    let (env, rbac) = env_with_chart_rbac("rbac-ns", true, &[]).await;
    env.apply_org_pool("ci", 1).await;
    env.wait_for_online_runners("ci", 1, T).await;
    assert_nothing_was_forbidden(&env);

    let elsewhere = cluster::fresh_namespace(&env.client, "rbac-other").await;
    create_secret(&env.client, &elsewhere, "gh", &[("token", "ghp_other")]).await;
    let sa = client_with_token(&rbac.token).await;
    let forbidden = |what: &str, r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    };
    forbidden(
        "get a Secret in another namespace",
        Api::<Secret>::namespaced(sa.clone(), &elsewhere)
            .get("gh")
            .await
            .map(|_| ()),
    );
    forbidden(
        "list Secrets in another namespace",
        Api::<Secret>::namespaced(sa.clone(), &elsewhere)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
    );
    forbidden(
        "list pods in another namespace",
        Api::<Pod>::namespaced(sa.clone(), &elsewhere)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
    );
    forbidden(
        "list pods in all namespaces",
        Api::<Pod>::all(sa.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ()),
    );
    forbidden(
        "list RunnerPools in all namespaces",
        Api::<RunnerPool>::all(sa.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ()),
    );
    // In its own namespace it reads what it needs.
    let pods = Api::<Pod>::namespaced(sa.clone(), &env.ns)
        .list(&ListParams::default())
        .await
        .expect("listing pods in the watched namespace");
    assert!(
        pods.items
            .iter()
            .any(|p| p.labels().contains_key(RUNNER_ID_LABEL))
    );
    Api::<Secret>::namespaced(sa, &env.ns)
        .get("gh")
        .await
        .expect("reading the credentials Secret in the watched namespace");

    // Leave nothing behind: the operator removes the pool's runners.
    env.pools()
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the pool to be gone", T, || async {
        env.pools()
            .get_opt("ci")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

/// A kubernetes-mode pool of `name`, its work claims of StorageClass
/// `class`, its credentials the namespace's GitHubConnection (see
/// [`Env::use_connection`]).
fn kube_pool(env: &Env, name: &str, class: &str) -> String {
    let yaml = pool_yaml(
        name,
        "organization: acme",
        &env.api_url(Base::Root),
        1,
        &["linux"],
        &kubernetes_mode(class),
    );
    connected(&yaml, &env.ns)
}

/// Issue 21, item 4: by default the chart grants none of the rights only
/// containerMode kubernetes needs. A kubernetes-mode pool then says which
/// chart value to set (Stalled, one Warning event) and mints nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_mode_is_not_permitted_without_the_chart_value() {
    let (env, rbac) = env_with_chart_rbac("rbac-nokube", false, &[]).await;
    env.use_connection().await;
    env.apply_pool(&kube_pool(&env, "ci", "unused")).await;
    let (reason, message) = wait_for("ci Stalled", T, || async {
        env.true_condition("ci", "Stalled").await
    })
    .await;
    assert_eq!(reason, "ContainerModeNotPermitted", "{message}");
    assert!(
        message.contains("containerModes.kubernetes.enabled=true"),
        "{message}"
    );
    assert_eq!(
        env.true_condition("ci", "Degraded").await.map(|c| c.0),
        Some(reason.clone())
    );
    // Several passes later: one Warning event, nothing minted, no pod.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let events = env.events_about("ci", &reason);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, 1, "{events:?}");
    assert_eq!(
        env.calls("generate-jitconfig"),
        0,
        "{:?}",
        env.calls_by_endpoint()
    );
    assert!(env.live_pods("ci").await.is_empty());
    // The ServiceAccount holds none of the hooks' rights.
    let sa = client_with_token(&rbac.token).await;
    assert!(is_forbidden(
        Api::<k8s_openapi::api::batch::v1::Job>::namespaced(sa.clone(), &env.ns)
            .list(&ListParams::default())
            .await
            .map(|_| ())
    ));
    assert!(is_forbidden(
        Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(sa, &env.ns)
            .create(&PostParams::default(), &Default::default())
            .await
            .map(|_| ())
    ));
}

/// containerMode kubernetes with `containerModes.kubernetes.enabled`: the
/// chart's rules let the operator make each pool's ServiceAccount, Role and
/// RoleBinding (it holds every right it grants: no escalate, no bind).
/// Without one of them, the pool says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_role_can_set_up_kubernetes_mode() {
    use k8s_openapi::api::rbac::v1::Role;
    let (env, rbac) = env_with_chart_rbac(
        "rbac-kube",
        true,
        &["containerModes.kubernetes.enabled=true"],
    )
    .await;
    env.use_connection().await;
    let class = format!("rbac-{}", env.ns);
    support::operator::create_pvs(&env.client, &class, 2).await;
    // With a job pod template: its ConfigMap is applied (and the pool's
    // listed for unused ones) with the chart's rights too.
    let with_template = kube_pool(&env, "ci", &class).replace(
        "\n  template:\n",
        "\n  jobPodTemplate: { spec: { nodeSelector: { pool: jobs } } }\n  template:\n",
    );
    env.apply_pool(&with_template).await;
    env.wait_for_online_runners("ci", 1, T).await;
    assert_nothing_was_forbidden(&env);
    Api::<Role>::namespaced(env.client.clone(), &env.ns)
        .get("ci-container-hooks")
        .await
        .expect("the pool's hooks Role");
    let pod = env.live_pods("ci").await.remove(0);
    let template = &pod.annotations()["actions.runnerpool.dev/job-pod-template"];
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(env.client.clone(), &env.ns)
        .get(template)
        .await
        .expect("the job pod template's ConfigMap");

    // Without pods/exec the operator may not grant it: the API server refuses
    // the Role and the pool shows why, with no runner created.
    let roles: Api<Role> = Api::namespaced(env.client.clone(), &env.ns);
    let name = format!("{}-runnerpool-operator", rbac.release);
    let mut role = roles.get(&name).await.unwrap();
    role.rules
        .get_or_insert_with(Vec::new)
        .retain(|r| !r.resources.iter().flatten().any(|r| r == "pods/exec"));
    roles
        .replace(&name, &PostParams::default(), &role)
        .await
        .unwrap();
    env.apply_pool(&kube_pool(&env, "ci2", &class)).await;
    let (reason, message) = wait_for("ci2 Degraded", T, || async {
        env.true_condition("ci2", "Degraded").await
    })
    .await;
    assert_eq!(reason, "ContainerModeNotPermitted", "{message}");
    assert!(
        message.contains("Role") && message.contains("ci2-container-hooks"),
        "{message}"
    );
    assert!(env.live_pods("ci2").await.is_empty());
    support::operator::delete_pvs(&env.client, &class).await;
}
