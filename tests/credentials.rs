//! A job runs untrusted code: nothing a runner pod is given reaches the
//! pool's GitHub credentials or another runner's JIT configuration. In
//! kubernetes container mode every job holds a token that may read the
//! namespace's Secrets, so the credentials live in a GitHubConnection's
//! namespace, a kubernetes-mode pool keeping them beside its runners is
//! refused, and a runner's JIT Secret goes once the runner is online.
//! Checked with the API server's own authorizer (`kubectl auth can-i` and
//! reads impersonating the hooks' ServiceAccount).

mod support;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use runnerpool::runner::JIT_CONFIG_KEY;
use support::cluster::{kubectl, wait_for};
use support::operator::{
    Base, Env, TOKEN, apply_connection, connected, create_pvs, delete_pvs, kubernetes_mode,
    pool_yaml,
};

const T: Duration = Duration::from_secs(60);

/// A pool `name` of `replicas` runners for organization `acme`, `extra` more of its spec.
fn org_pool(env: &Env, name: &str, replicas: u32, extra: &str) -> String {
    let url = env.api_url(Base::Root);
    pool_yaml(
        name,
        "organization: acme",
        &url,
        replicas,
        &["linux"],
        extra,
    )
}

/// Waits until pool `name` is Stalled; returns the reason and message.
async fn stalled(env: &Env, name: &str) -> (String, String) {
    wait_for(&format!("{name} Stalled"), T, || async {
        env.true_condition(name, "Stalled").await
    })
    .await
}

/// The identity the jobs of kubernetes-mode pool `pool` hold.
fn hooks_identity(env: &Env, pool: &str) -> String {
    format!(
        "--as=system:serviceaccount:{}:{pool}-container-hooks",
        env.ns
    )
}

/// What the API server's authorizer answers for `identity` doing `verb` on
/// `what` in `namespace`.
fn can_i(identity: &str, verb: &str, what: &str, namespace: &str) -> bool {
    let out = kubectl(&["auth", "can-i", verb, what, "-n", namespace, identity]);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// The keys of every Secret `identity` can read in `namespace`, by Secret name.
fn readable_secret_keys(identity: &str, namespace: &str) -> Vec<(String, Vec<String>)> {
    let out = kubectl(&["get", "secrets", "-n", namespace, identity, "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let keys = s["data"]
                .as_object()
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default();
            (
                s["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                keys,
            )
        })
        .collect()
}

/// The guarantee: a job of a kubernetes-mode pool whose credentials are a
/// GitHubConnection's can read neither them nor the JIT configuration of
/// any online runner (its own included: consumed, it is gone), while its
/// token still does what the container hooks need. Runners whose Secret is
/// gone run their jobs, are replaced, and vanished pods are still
/// deregistered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_mode_job_reads_neither_the_credentials_nor_a_runners_jit_config() {
    let (env, connections) = Env::start_connected("isolation", &[]).await;
    let class = format!("isolation-{}", env.ns);
    create_pvs(&env.client, &class, 6).await;
    let yaml = org_pool(&env, "ci", 2, &kubernetes_mode(&class));
    env.apply_pool(&connected(&yaml, &env.ns)).await;
    let first = env.wait_for_online_runners("ci", 2, T).await;
    let jobs = hooks_identity(&env, "ci");

    // What the hooks need, they have; the credentials are out of reach.
    assert!(can_i(&jobs, "create", "pods", &env.ns));
    assert!(
        can_i(&jobs, "get", "secrets", &env.ns),
        "the hooks read Secrets of their namespace"
    );
    assert!(!can_i(&jobs, "get", "secret/gh", &connections));
    assert!(!can_i(&jobs, "list", "secrets", &connections));
    assert!(!can_i(&jobs, "create", "pods", &connections));

    // The JIT Secrets of the online runners are gone: nothing a job may read
    // in its namespace holds a JIT configuration or a credential.
    wait_for("the online runners' JIT Secrets to go", T, || async {
        let readable = readable_secret_keys(&jobs, &env.ns);
        let sensitive = |k: &String| [JIT_CONFIG_KEY, "token", "privateKey"].contains(&k.as_str());
        readable
            .iter()
            .all(|(_, keys)| !keys.iter().any(sensitive))
            .then_some(())
    })
    .await;
    for pod in env.live_pods("ci").await {
        let out = kubectl(&["get", "secret", &pod.name_any(), "-n", &env.ns, &jobs]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("NotFound"),
            "runner {} still has its JIT Secret",
            pod.name_any()
        );
    }
    // Without their Secrets the runners stay: no replacement, no removal.
    env.wait_for_a_fresh_pass("ci").await;
    assert_eq!(env.wait_for_online_runners("ci", 2, T).await, first);

    // A job runs on such a runner and ends: it is replaced by a new runner.
    let job = env.fake.queue_job("acme/app", &["linux"]).unwrap();
    let ran_on = wait_for("the job to start", T, || async {
        env.fake.job(job)?.runner_id
    })
    .await;
    env.fake.finish_job(job).unwrap();
    // (A finished runner is gone from GitHub: it no longer counts as online.)
    let now = env.wait_for_online_runners("ci", 2, T).await;
    assert!(!now.contains(&ran_on), "{now:?}");

    // A pod deleted by hand: its registration is removed (no Secret tells
    // of it any more, its pod did) and a new runner comes.
    let pod = env.live_pods("ci").await.remove(0);
    let id = support::operator::runner_id(&pod).unwrap();
    env.pods()
        .delete(&pod.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the vanished runner's registration to go", T, || async {
        env.fake.runner(id).is_none().then_some(())
    })
    .await;
    env.wait_for_online_runners("ci", 2, T).await;

    // Another pool in the namespace is within the jobs' reach: a Warning.
    env.apply_pool(&connected(&org_pool(&env, "other", 0, ""), &env.ns))
        .await;
    let (_, note) = wait_for("a SharedNamespace warning", T, || async {
        env.events_about("ci", "SharedNamespace").pop()
    })
    .await;
    assert!(note.contains("RunnerPool \"other\""), "{note}");
    env.assert_no_secret_leaked().await;
    env.pools()
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_for_pool_gone("ci", T).await;
    delete_pvs(&env.client, &class).await;
}

/// A kubernetes-mode pool whose credentials Secret is in its own namespace
/// (where every job may read it) is refused, pointing to GitHubConnection:
/// nothing is minted, no pod is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_mode_pool_with_credentials_beside_its_runners_is_refused() {
    // The connections namespace elsewhere: only the Secret beside the runners is wrong.
    let env = Env::start_with(
        "beside",
        &["--connections-namespace", "runnerpool-connections"],
    )
    .await;
    let class = format!("beside-{}", env.ns);
    env.apply_pool(&org_pool(&env, "ci", 1, &kubernetes_mode(&class)))
        .await;
    let (reason, message) = stalled(&env, "ci").await;
    assert_eq!(reason, "InvalidSpec", "{message}");
    assert!(
        message.contains("GitHubConnection") && message.contains("\"gh\""),
        "{message}"
    );
    wait_for("an InvalidSpec event", T, || async {
        (!env.events_about("ci", "InvalidSpec").is_empty()).then_some(())
    })
    .await;
    env.wait_for_a_fresh_pass("ci").await;
    assert_eq!(env.calls("generate-jitconfig"), 0);
    assert!(env.live_pods("ci").await.is_empty());
}

/// A GitHubConnection serves the namespaces it allows, by name or by
/// labels, and sends its credentials to its own apiUrl only; a pool of
/// another namespace gets a clear condition and nothing else. The API
/// server refuses ambiguous references.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_serves_only_the_namespaces_it_allows() {
    let (env, _connections) = Env::start_connected("allowed", &[]).await;
    let url = env.api_url(Base::Root);
    apply_connection(&env.client, &env.ns, &url, &["elsewhere"], None).await;
    env.apply_pool(&connected(&org_pool(&env, "ci", 1, ""), &env.ns))
        .await;
    let (reason, message) = stalled(&env, "ci").await;
    assert_eq!(reason, "CredentialsInvalid", "{message}");
    assert!(
        message.contains("does not allow namespace") && !message.contains(TOKEN),
        "{message}"
    );
    wait_for("a CredentialsInvalid event", T, || async {
        (!env.events_about("ci", "CredentialsInvalid").is_empty()).then_some(())
    })
    .await;
    assert_eq!(env.calls("generate-jitconfig"), 0);
    assert!(env.live_pods("ci").await.is_empty());

    // Allowed through its labels: the pool comes up.
    let label = serde_json::json!({ "metadata": { "labels": { "ci.example/runners": "yes" } } });
    Api::<k8s_openapi::api::core::v1::Namespace>::all(env.client.clone())
        .patch(&env.ns, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let selector = serde_json::json!({ "matchLabels": { "ci.example/runners": "yes" } });
    apply_connection(&env.client, &env.ns, &url, &["elsewhere"], Some(selector)).await;
    env.wait_for_online_runners("ci", 1, T).await;

    // Another apiUrl than the connection's: the credentials are not sent there.
    let ghes = org_pool(&env, "ghes", 1, "").replace(&url, &env.api_url(Base::Ghes));
    env.apply_pool(&connected(&ghes, &env.ns)).await;
    let (reason, message) = stalled(&env, "ghes").await;
    assert_eq!(reason, "InvalidSpec", "{message}");
    assert!(message.contains("apiUrl"), "{message}");
    assert!(env.live_pods("ghes").await.is_empty());

    // Exactly one of credentialsSecret and connectionRef; a connection says
    // whom it serves.
    let refused = |manifest: String, expected: &str| {
        let path = support::cluster::repo_root()
            .join("target/test-logs")
            .join(format!("refused-{}-{}.yaml", env.ns, rand::random::<u32>()));
        std::fs::write(&path, manifest).unwrap();
        let out = kubectl(&[
            "apply",
            "--dry-run=server",
            "-n",
            &env.ns,
            "-f",
            path.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{stderr}"
        );
    };
    let pool = org_pool(&env, "both", 1, "");
    refused(
        pool.replace(
            "      name: gh",
            "      name: gh\n    connectionRef: { name: x }",
        ),
        "set exactly one of credentialsSecret",
    );
    refused(
        connected(&pool, "x").replace(
            "    connectionRef:",
            "    caBundle: pem\n    connectionRef:",
        ),
        "caBundle comes from the GitHubConnection",
    );
    refused(
        "apiVersion: actions.runnerpool.dev/v1alpha1\nkind: GitHubConnection\nmetadata: { name: nobody }\nspec: { credentialsSecret: { name: gh } }\n".to_string(),
        "set namespaces and/or namespaceSelector",
    );
}

/// A RunnerGroup takes its credentials from a GitHubConnection too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_group_uses_a_connection() {
    let (env, _connections) = Env::start_connected("group-conn", &[]).await;
    let group = serde_json::json!({
        "apiVersion": "actions.runnerpool.dev/v1alpha1",
        "kind": "RunnerGroup",
        "metadata": { "name": "team-a", "namespace": env.ns },
        "spec": { "github": {
            "organization": "acme",
            "apiUrl": env.api_url(Base::Root),
            "connectionRef": { "name": env.ns },
        } },
    });
    let groups: Api<runnerpool::RunnerGroup> = Api::namespaced(env.client.clone(), &env.ns);
    groups
        .patch(
            "team-a",
            &PatchParams::apply("integration-test").force(),
            &Patch::Apply(&group),
        )
        .await
        .unwrap();
    let id = wait_for("RunnerGroup team-a to have a group", T, || async {
        groups.get("team-a").await.ok()?.status?.group_id
    })
    .await;
    assert!(
        env.fake
            .groups(&fake_github::Scope::org("acme"))
            .iter()
            .any(|g| g.id == id as u64 && g.name == "team-a")
    );
    groups
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    support::cluster::wait_for_gone("RunnerGroup team-a", &groups, "team-a", T).await;
}
