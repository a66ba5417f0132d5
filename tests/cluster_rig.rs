//! Tests of the local control plane itself (tests/cluster/): that it behaves
//! like a real cluster in the ways the operator depends on.
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::cluster::{
    admin_config, client, client_with_token, expect_success, fresh_namespace, helm, kubectl,
    repo_path, run_cluster_sh, test_cluster, wait_for,
};

const COMPLETE: &str = "kwok.runnerpool.dev/complete";
const WAIT: Duration = Duration::from_secs(60);

fn from_json<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("test object")
}

/// A pod shaped like the operator's runner pods: restartPolicy Never, a
/// container named `runner`, env from a Secret.
fn runner_pod(name: &str, annotations: Value) -> Pod {
    from_json(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": "runner", "pod": name }, "annotations": annotations },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": "runner",
                "image": "rig-test/runner:1.0",
                "args": ["--jitconfig", "$(RUNNER_JITCONFIG)"],
                "env": [{
                    "name": "RUNNER_JITCONFIG",
                    "valueFrom": { "secretKeyRef": { "name": "runner-secret", "key": "jitconfig" } }
                }],
                "resources": { "requests": { "cpu": "100m", "memory": "128Mi" } }
            }]
        }
    }))
}

async fn runner_secret(client: &kube::Client, ns: &str) {
    let secret: Secret = from_json(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "runner-secret" },
        "stringData": { "jitconfig": "not-a-real-config" }
    }));
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create runner-secret");
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn running_and_ready(p: &Pod) -> bool {
    phase(p) == "Running" && is_ready(p)
}

/// Exit code and reason of the terminated container `name`.
fn terminated(p: &Pod, name: &str) -> Option<(i32, String)> {
    let cs = p.status.as_ref()?.container_statuses.as_ref()?;
    let c = cs.iter().find(|c| c.name == name)?;
    let t = c.state.as_ref()?.terminated.as_ref()?;
    Some((t.exit_code, t.reason.clone().unwrap_or_default()))
}

async fn wait_pod(pods: &Api<Pod>, name: &str, what: &str, ok: impl Fn(&Pod) -> bool) -> Pod {
    let mut last = String::new();
    let last_ref = &mut last;
    let probe = || {
        let pods = pods.clone();
        let name = name.to_string();
        async move { pods.get_opt(&name).await.ok().flatten() }
    };
    let start = Instant::now();
    loop {
        if let Some(p) = probe().await {
            if ok(&p) {
                return p;
            }
            *last_ref = format!("phase {:?}, status {:?}", phase(&p), p.status);
        }
        if start.elapsed() > WAIT {
            panic!(
                "timed out after {WAIT:?} waiting for pod {name} to be {what}; last seen: {last}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_gone<K>(api: &Api<K>, name: &str, what: &str)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    wait_for(what, WAIT, || async {
        match api.get_opt(name).await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await
}

async fn cleanup(client: &kube::Client, ns: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::default())
        .await;
}

fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error status, got {other:?}"),
    }
}

#[tokio::test]
async fn api_server_reports_the_pinned_kubernetes_version() {
    let client = client().await;
    let v = client.apiserver_version().await.expect("/version");
    assert!(
        v.git_version.starts_with("v1.36."),
        "/version reports {:?}, expected v1.36.x (version ldflags missing?)",
        v.git_version
    );
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "36"));
}

#[tokio::test]
async fn fake_nodes_are_ready_with_realistic_capacity() {
    let client = client().await;
    let nodes = Api::<Node>::all(client)
        .list(&ListParams::default().labels("runnerpool.dev/rig-node=true"))
        .await
        .expect("list nodes");
    assert!(!nodes.items.is_empty(), "the rig created no fake nodes");
    for n in &nodes.items {
        let name = n.metadata.name.as_deref().unwrap_or("?");
        let st = n.status.as_ref().expect("node status");
        let ready = st
            .conditions
            .as_ref()
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        assert!(ready, "node {name} is not Ready: {:?}", st.conditions);
        let alloc = st.allocatable.as_ref().expect("allocatable");
        for key in ["cpu", "memory", "pods"] {
            assert!(
                alloc.contains_key(key),
                "node {name} has no allocatable {key}: {alloc:?}"
            );
        }
        assert_eq!(alloc["pods"].0, "110", "node {name}");
        let taints = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        assert!(taints.is_empty(), "node {name} has taints {taints:?}");
    }
}

#[tokio::test]
async fn deployment_pods_are_scheduled_and_run() {
    let client = client().await;
    let ns = fresh_namespace(&client, "rig-deploy").await;
    let deploy: Deployment = from_json(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "rig-test/web:1.0",
                    "resources": { "requests": { "cpu": "250m", "memory": "256Mi" } } }] }
            }
        }
    }));
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deploys
        .create(&PostParams::default(), &deploy)
        .await
        .expect("create deployment");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let running = wait_for(
        "2 Running, Ready pods of deployment web on fake nodes",
        WAIT,
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let good: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| {
                    running_and_ready(p)
                        && p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .is_some_and(|n| n.starts_with("rig-node-"))
                })
                .collect();
            (good.len() == 2).then_some(good)
        },
    )
    .await;
    for p in &running {
        let st = p.status.as_ref().unwrap();
        assert!(st.pod_ip.is_some(), "pod without IP: {st:?}");
        let c = &st.container_statuses.as_ref().expect("container statuses")[0];
        assert!(
            c.ready && c.state.as_ref().unwrap().running.is_some(),
            "container not running: {c:?}"
        );
    }
    wait_for(
        "deployment web to report 2 available replicas",
        WAIT,
        || async {
            let d = deploys.get("web").await.ok()?;
            (d.status?.available_replicas? == 2).then_some(())
        },
    )
    .await;
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn runner_pod_runs_within_seconds() {
    let client = client().await;
    let ns = fresh_namespace(&client, "rig-latency").await;
    runner_secret(&client, &ns).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let start = Instant::now();
    pods.create(&PostParams::default(), &runner_pod("quick", json!({})))
        .await
        .expect("create pod");
    wait_pod(&pods, "quick", "Running and Ready", running_and_ready).await;
    let took = start.elapsed();
    eprintln!("runner pod Running and Ready {took:?} after creation");
    assert!(took < Duration::from_secs(10), "pod took {took:?} to run");
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn completion_annotation_finishes_runner_pods() {
    let client = client().await;
    let ns = fresh_namespace(&client, "rig-complete").await;
    runner_secret(&client, &ns).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    pods.create(&pp, &runner_pod("ok", json!({})))
        .await
        .expect("create ok");
    pods.create(&pp, &runner_pod("bad", json!({})))
        .await
        .expect("create bad");
    // Annotated at creation: finishes without being seen Running first.
    pods.create(&pp, &runner_pod("early", json!({ COMPLETE: "succeeded" })))
        .await
        .expect("create early");
    for name in ["ok", "bad"] {
        wait_pod(&pods, name, "Running", running_and_ready).await;
    }
    for (name, value) in [("ok", "succeeded"), ("bad", "failed")] {
        let patch = json!({ "metadata": { "annotations": { COMPLETE: value } } });
        pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate pod");
    }
    let ok = wait_pod(&pods, "ok", "Succeeded", |p| phase(p) == "Succeeded").await;
    assert_eq!(
        terminated(&ok, "runner"),
        Some((0, "Completed".into())),
        "{:?}",
        ok.status
    );
    assert!(!is_ready(&ok));
    let bad = wait_pod(&pods, "bad", "Failed", |p| phase(p) == "Failed").await;
    assert_eq!(
        terminated(&bad, "runner"),
        Some((1, "Error".into())),
        "{:?}",
        bad.status
    );
    let early = wait_pod(&pods, "early", "Succeeded", |p| phase(p) == "Succeeded").await;
    assert_eq!(terminated(&early, "runner").map(|t| t.0), Some(0));
    // Finished pods stay finished, and can be deleted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(phase(&pods.get("ok").await.unwrap()), "Succeeded");
    assert_eq!(phase(&pods.get("bad").await.unwrap()), "Failed");
    pods.delete("ok", &DeleteParams::default())
        .await
        .expect("delete ok");
    wait_gone(&pods, "ok", "finished pod ok to be deleted").await;
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents() {
    let client = client().await;
    let ns = fresh_namespace(&client, "rig-gc").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    let owner = cms
        .create(&pp, &from_json(json!({ "metadata": { "name": "owner" } })))
        .await
        .expect("create owner");
    let owner_ref = json!([{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
        "uid": owner.metadata.uid.clone().expect("uid")
    }]);
    cms.create(
        &pp,
        &from_json(json!({ "metadata": { "name": "dep-cm", "ownerReferences": owner_ref } })),
    )
    .await
    .expect("create dependent configmap");
    secrets
        .create(
            &pp,
            &from_json(
                json!({ "metadata": { "name": "dep-secret", "ownerReferences": owner_ref } }),
            ),
        )
        .await
        .expect("create dependent secret");
    cms.create(
        &pp,
        &from_json(json!({ "metadata": { "name": "unrelated" } })),
    )
    .await
    .expect("create unrelated");
    cms.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    wait_gone(
        &cms,
        "dep-cm",
        "dependent configmap to be garbage-collected",
    )
    .await;
    wait_gone(
        &secrets,
        "dep-secret",
        "dependent secret to be garbage-collected",
    )
    .await;
    assert!(
        cms.get_opt("unrelated").await.unwrap().is_some(),
        "GC removed an unrelated object"
    );

    // Foreground deletion through a Deployment -> ReplicaSet -> Pod chain:
    // the Deployment goes only after its pods are gone (kwok's delete stage).
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deploys
        .create(
            &pp,
            &from_json(json!({
                "metadata": { "name": "chain" },
                "spec": {
                    "replicas": 2,
                    "selector": { "matchLabels": { "app": "chain" } },
                    "template": { "metadata": { "labels": { "app": "chain" } },
                        "spec": { "containers": [{ "name": "c", "image": "rig-test/c:1" }] } }
                }
            })),
        )
        .await
        .expect("create deployment");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_for("2 running pods of deployment chain", WAIT, || async {
        let l = pods
            .list(&ListParams::default().labels("app=chain"))
            .await
            .ok()?;
        (l.items.iter().filter(|p| running_and_ready(p)).count() == 2).then_some(())
    })
    .await;
    deploys
        .delete("chain", &DeleteParams::foreground())
        .await
        .expect("delete deployment");
    wait_gone(
        &deploys,
        "chain",
        "deployment chain to be deleted in the foreground",
    )
    .await;
    let left = pods
        .list(&ListParams::default().labels("app=chain"))
        .await
        .unwrap();
    assert!(
        left.items.is_empty(),
        "pods outlived their deployment: {}",
        left.items.len()
    );
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn namespace_deletion_completes() {
    let client = client().await;
    let ns = fresh_namespace(&client, "rig-nsdel").await;
    runner_secret(&client, &ns).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &runner_pod("victim", json!({})))
        .await
        .expect("create pod");
    wait_pod(&pods, "victim", "Running", running_and_ready).await;
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &from_json(json!({ "metadata": { "name": "cm" } })),
        )
        .await
        .expect("create configmap");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    wait_gone(&namespaces, &ns, &format!("namespace {ns} to be deleted")).await;
}

#[tokio::test]
async fn rbac_forbids_a_service_account_without_a_role() {
    let client = client().await;
    let ns = fresh_namespace(&client, "rig-rbac").await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    for name in ["nobody", "reader"] {
        sas.create(&pp, &from_json(json!({ "metadata": { "name": name } })))
            .await
            .expect("create service account");
    }
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(
            &pp,
            &from_json(json!({
                "metadata": { "name": "pod-reader" },
                "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"] }]
            })),
        )
        .await
        .expect("create role");
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&pp, &from_json(json!({
            "metadata": { "name": "reader-reads-pods" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader" },
            "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": ns }]
        })))
        .await
        .expect("create role binding");

    async fn token_for(sas: &Api<ServiceAccount>, name: &str) -> String {
        let req = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp: TokenRequest = sas
            .create_subresource("token", name, &PostParams::default(), &req)
            .await
            .expect("TokenRequest");
        resp.status
            .and_then(|s| s.token)
            .expect("a token in the TokenRequest status")
    }

    let nobody = client_with_token(&token_for(&sas, "nobody").await).await;
    let err = Api::<Pod>::namespaced(nobody, &ns)
        .list(&ListParams::default())
        .await
        .expect_err("a service account without a role listed pods");
    let status = api_error(err);
    assert_eq!(status.code, 403, "expected Forbidden, got {status:?}");
    assert!(
        status
            .message
            .contains(&format!("system:serviceaccount:{ns}:nobody")),
        "forbidden for the wrong user: {}",
        status.message
    );

    // The same kind of token works once a role is bound: the 403 above is RBAC.
    let reader = client_with_token(&token_for(&sas, "reader").await).await;
    Api::<Pod>::namespaced(reader.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("a service account with a bound role lists pods");
    let err = Api::<Secret>::namespaced(reader, &ns)
        .list(&ListParams::default())
        .await
        .expect_err("the reader role does not cover secrets");
    assert_eq!(api_error(err).code, 403);
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn kubectl_server_side_apply_tracks_field_managers() {
    let client = client().await;
    let ns = fresh_namespace(&client, "rig-ssa").await;
    let manifest = repo_path("tests/cluster/testdata/ssa-configmap.yaml");
    let manifest = manifest.to_str().unwrap();
    expect_success(
        "kubectl apply --server-side",
        &kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=rig-first",
            "-n",
            &ns,
            "-f",
            manifest,
        ]),
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = cms.get("ssa-check").await.expect("applied configmap");
    assert_eq!(cm.data.as_ref().unwrap()["owner"], "first-manager");
    let managers = cm.metadata.managed_fields.clone().unwrap_or_default();
    assert!(
        managers
            .iter()
            .any(|m| m.manager.as_deref() == Some("rig-first")
                && m.operation.as_deref() == Some("Apply")),
        "no Apply entry for rig-first in managedFields: {managers:?}"
    );

    // A second manager changing the same field conflicts, unless it forces.
    let second = std::env::temp_dir().join(format!("rig-ssa-{ns}.yaml"));
    std::fs::write(
        &second,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa-check\ndata:\n  owner: second-manager\n",
    )
    .unwrap();
    let second_path = second.to_str().unwrap();
    let out = kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=rig-second",
        "-n",
        &ns,
        "-f",
        second_path,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "conflicting apply succeeded");
    assert!(
        stderr.to_lowercase().contains("conflict"),
        "unexpected error: {stderr}"
    );
    expect_success(
        "kubectl apply --server-side --force-conflicts",
        &kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=rig-second",
            "-n",
            &ns,
            "-f",
            second_path,
        ]),
    );
    let _ = std::fs::remove_file(&second);
    let cm = cms.get("ssa-check").await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["owner"], "second-manager");
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn helm_installs_a_chart() {
    let client = client().await;
    let ns = fresh_namespace(&client, "rig-helm").await;
    let chart = repo_path("tests/cluster/testdata/rig-chart");
    expect_success(
        "helm install",
        &helm(&[
            "install",
            "rig",
            chart.to_str().unwrap(),
            "--namespace",
            &ns,
            "--wait",
            "--timeout",
            "90s",
        ]),
    );
    let list = expect_success(
        "helm list",
        &helm(&["list", "--namespace", &ns, "--output", "json"]),
    );
    let releases: Value = serde_json::from_str(&list).expect("helm list json");
    assert_eq!(releases[0]["name"], "rig", "{releases}");
    assert_eq!(releases[0]["status"], "deployed", "{releases}");
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("rig-settings")
        .await
        .expect("the chart's configmap");
    let kube_version = &cm.data.as_ref().unwrap()["kubeVersion"];
    assert!(
        kube_version.starts_with("v1.36."),
        "helm saw Kubernetes {kube_version}"
    );
    let d = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("rig-app")
        .await
        .expect("the chart's deployment");
    assert_eq!(d.status.and_then(|s| s.ready_replicas), Some(1));
    expect_success(
        "helm uninstall",
        &helm(&["uninstall", "rig", "--namespace", &ns, "--wait"]),
    );
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn eviction_api_evicts_and_honours_disruption_budgets() {
    let client = client().await;
    let ns = fresh_namespace(&client, "rig-evict").await;
    runner_secret(&client, &ns).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    pods.create(&pp, &runner_pod("free", json!({})))
        .await
        .expect("create free");
    pods.create(&pp, &runner_pod("guarded", json!({})))
        .await
        .expect("create guarded");
    Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
        .create(
            &pp,
            &from_json(json!({
                "metadata": { "name": "guard" },
                "spec": { "minAvailable": 1, "selector": { "matchLabels": { "pod": "guarded" } } }
            })),
        )
        .await
        .expect("create pdb");
    for name in ["free", "guarded"] {
        wait_pod(&pods, name, "Running", running_and_ready).await;
    }

    pods.evict("free", &EvictParams::default())
        .await
        .expect("evict free");
    wait_gone(&pods, "free", "evicted pod free to be deleted").await;

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "the disruption controller to count the guarded pod",
        WAIT,
        || async {
            let pdb = pdbs.get("guard").await.ok()?;
            let st = pdb.status?;
            (st.observed_generation == pdb.metadata.generation
                && st.current_healthy == Some(1)
                && st.disruptions_allowed == Some(0))
            .then_some(())
        },
    )
    .await;
    // kube's default client would retry the 429 for minutes: ask once.
    let mut config = admin_config().await;
    config.default_retry = false;
    let once = kube::Client::try_from(config).expect("client without retries");
    let err = Api::<Pod>::namespaced(once, &ns)
        .evict("guarded", &EvictParams::default())
        .await
        .expect_err("eviction violating the PDB was allowed");
    assert_eq!(api_error(err).code, 429, "expected 429 Too Many Requests");
    assert!(pods.get_opt("guarded").await.unwrap().is_some());
    cleanup(&client, &ns).await;
}

/// A second cluster runs beside the shared one (ports chosen free), `up` of a
/// running cluster is a no-op, and `down` stops every process and frees the
/// ports, twice without complaint.
#[tokio::test]
async fn a_second_cluster_runs_alongside_and_down_frees_everything() {
    let main = test_cluster();
    let dir = std::env::temp_dir().join(format!("runnerpool-rig-second-{}", std::process::id()));
    let dir_s = dir.to_str().unwrap().to_string();
    let kubeconfig = tokio::task::spawn_blocking({
        let d = dir_s.clone();
        move || run_cluster_sh(&["up", &d])
    })
    .await
    .unwrap();
    assert_eq!(kubeconfig, dir.join("kubeconfig"));
    assert_ne!(
        std::fs::read_to_string(&kubeconfig).unwrap(),
        std::fs::read_to_string(&main.kubeconfig).unwrap(),
        "the second cluster reuses the first one's kubeconfig"
    );
    let ports: Vec<u16> = std::fs::read_to_string(dir.join("rig/run/ports"))
        .expect("ports of the second cluster")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(ports.len(), 3, "{ports:?}");
    let pids: Vec<u32> = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ]
    .iter()
    .map(|c| {
        std::fs::read_to_string(dir.join(format!("rig/run/{c}.pid")))
            .unwrap_or_else(|e| panic!("pid file of {c}: {e}"))
            .trim()
            .parse()
            .unwrap()
    })
    .collect();
    let kubectl2 = |args: &[&str]| {
        std::process::Command::new(main.bin_dir.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap()
    };
    let nodes = expect_success(
        "kubectl get nodes (second cluster)",
        &kubectl2(&["get", "nodes", "-o", "name"]),
    );
    assert_eq!(nodes.lines().count(), 3, "{nodes}");

    // `up` again: the same cluster, not a new one.
    let started = Instant::now();
    let again = tokio::task::spawn_blocking({
        let d = dir_s.clone();
        move || run_cluster_sh(&["up", &d])
    })
    .await
    .unwrap();
    assert_eq!(again, kubeconfig);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "idempotent up took {:?}",
        started.elapsed()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("rig/run/ports"))
            .unwrap()
            .split_whitespace()
            .count(),
        3
    );

    for _ in 0..2 {
        let d = dir_s.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("bash")
                .arg(repo_path("tests/cluster/cluster.sh"))
                .args(["down", &d])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        expect_success("cluster.sh down", &out);
    }
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "process {pid} still runs after down"
        );
    }
    for port in ports {
        std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("port {port} not freed by down: {e}"));
    }
    // The shared cluster is untouched.
    let v = client()
        .await
        .apiserver_version()
        .await
        .expect("shared cluster still answers");
    assert!(v.git_version.starts_with("v1.36."));
    let _ = std::fs::remove_dir_all(&dir);
}
