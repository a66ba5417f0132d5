//! The Helm chart (`charts/runnerpool-operator`) and the plain manifests
//! rendered from it (`deploy/`): the CRD they ship is the generated one, the
//! chart lints, installs, upgrades and uninstalls on the local control plane,
//! and bad values are refused at install time by `values.schema.json`;
//! kube-score finds nothing in the rendered chart but the documented exceptions.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::Api;
use serde::Deserialize;
use support::cluster::{
    self, expect_success, fresh_namespace, helm, kubectl, lint_tool, repo_path, wait_for,
};
use support::operator::install_crd;

const CHART: &str = "charts/runnerpool-operator";

fn chart() -> String {
    repo_path(CHART).display().to_string()
}

/// The chart rendered as release `runnerpool-operator` in `runnerpool-system`
/// (what deploy/ holds with no extra arguments).
fn render_release(extra: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        "runnerpool-operator",
        chart.as_str(),
        "--namespace",
        "runnerpool-system",
    ];
    args.extend_from_slice(extra);
    expect_success("helm template", &helm(&args))
}

/// A release name unique to this test run: cluster-scoped objects carry it.
fn release(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

#[test]
fn the_chart_ships_the_generated_crd() {
    let root = std::fs::read_to_string(repo_path("crds/runnerpool.yaml")).unwrap();
    let chart = std::fs::read_to_string(repo_path(format!("{CHART}/files/crds.yaml")))
        .expect("the chart's files/crds.yaml");
    assert!(
        root == chart,
        "{CHART}/files/crds.yaml differs from crds/runnerpool.yaml: \
         run `cp crds/runnerpool.yaml {CHART}/files/crds.yaml` and commit the result"
    );
    // Rendered as templates (so `helm upgrade` upgrades them), kept on
    // uninstall, the generated file otherwise untouched.
    let rendered = render_release(&["--show-only", "templates/crds.yaml"]);
    let crds: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&rendered)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .collect();
    let generated: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&root)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .collect();
    assert_eq!(crds.len(), generated.len());
    for (crd, generated) in crds.iter().zip(&generated) {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{:?}",
            crd["metadata"]
        );
        assert_eq!(crd["spec"], generated["spec"]);
        assert_eq!(crd["metadata"]["name"], generated["metadata"]["name"]);
    }
    let off = render_release(&["--set", "crds.install=false"]);
    assert!(!off.contains("kind: CustomResourceDefinition"));
    assert_eq!(
        chart,
        runnerpool::crd_yaml(),
        "the CRD is stale: run `make crd`"
    );
}

#[test]
fn deploy_manifests_are_the_rendered_chart() {
    let rendered = render_release(&[]);
    let expected = format!(
        "# Rendered by scripts/render-manifests.sh from charts/runnerpool-operator. Do not edit.\n{rendered}"
    );
    let committed = std::fs::read_to_string(repo_path("deploy/runnerpool-operator.yaml"))
        .expect("deploy/runnerpool-operator.yaml");
    assert!(
        committed == expected,
        "deploy/runnerpool-operator.yaml is stale: run scripts/render-manifests.sh and commit the result"
    );
    // The kustomization builds, and holds the namespace and every rendered object.
    let built = expect_success(
        "kubectl kustomize deploy",
        &kubectl(&["kustomize", &repo_path("deploy").display().to_string()]),
    );
    for kind in [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
    ] {
        assert!(
            built.contains(&format!("\nkind: {kind}\n")),
            "no {kind} in deploy/"
        );
    }
}

#[test]
fn helm_lint_passes() {
    expect_success("helm lint", &helm(&["lint", "--strict", &chart()]));
    expect_success(
        "helm lint (namespaced, three replicas, ServiceMonitor)",
        &helm(&[
            "lint",
            "--strict",
            &chart(),
            "--set",
            "watchNamespace=team-a,replicaCount=3,leaderElection.enabled=true",
            "--set",
            "metrics.serviceMonitor.enabled=true,metrics.dashboard.enabled=true,metrics.prometheusRule.enabled=true",
        ]),
    );
}

#[test]
fn the_deployment_is_locked_down_and_probed_on_the_admin_port() {
    let out = expect_success(
        "helm template",
        &helm(&[
            "template",
            "rp",
            &chart(),
            "--show-only",
            "templates/deployment.yaml",
            "--set",
            "installId=prod-eu,watchNamespace=ci,reconcileConcurrency=64",
            "--set",
            "leaderElection.leaseDurationSeconds=30,leaderElection.renewDeadlineSeconds=20",
        ]),
    );
    let deployment: Deployment = serde_yaml::from_str(&out).expect("a Deployment");
    let spec = deployment.spec.unwrap();
    let strategy = spec.strategy.unwrap();
    assert_eq!(
        strategy.type_.as_deref(),
        Some("RollingUpdate"),
        "new replicas start (as standbys) before the old ones go"
    );
    let rolling = strategy.rolling_update.unwrap();
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
    assert_eq!(spec.replicas, Some(2), "a standby by default");
    let pod = spec.template.spec.unwrap();
    let pod_security = pod.security_context.unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(
        pod_security.seccomp_profile.unwrap().type_,
        "RuntimeDefault"
    );
    let container = &pod.containers[0];
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.unwrap().drop,
        Some(vec!["ALL".into()])
    );
    let resources = container.resources.clone().unwrap();
    for (what, list) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        let list = list.as_ref().unwrap_or_else(|| panic!("no {what}"));
        for resource in ["cpu", "memory", "ephemeral-storage"] {
            assert!(list.contains_key(resource), "no {resource} in {what}");
        }
    }
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/runnerpool/runnerpool-operator:0.1.0"),
        "the tag defaults to the chart's appVersion"
    );
    let args = container.args.clone().unwrap();
    for want in [
        "run",
        "--install-id=prod-eu",
        "--watch-namespace=ci",
        "--log-format=json",
        "--leader-elect",
        "--leader-election-lease=rp-runnerpool-operator",
        "--leader-election-lease-duration-seconds=30",
        "--leader-election-renew-deadline-seconds=20",
        "--leader-election-retry-period-seconds=2",
        "--reconcile-concurrency=64",
        "--create-concurrency=16",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
    }
    let env = container.env.clone().unwrap();
    let pod_name = env.iter().find(|e| e.name == "POD_NAME").expect("POD_NAME");
    assert_eq!(
        pod_name
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.name"
    );
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone()
    };
    assert_eq!(
        probe_path(&container.liveness_probe).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        probe_path(&container.readiness_probe).as_deref(),
        Some("/readyz")
    );
    let port = &container.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("admin"), 8080)
    );
}

/// The webhook listener: off by default; on, its own port, Service and
/// (optionally) Ingress for `/webhook` only, the secret mounted from an
/// existing Secret as a file.
#[test]
fn the_webhook_listener_is_exposed_on_its_own_port_when_enabled() {
    let template = |values: &str, only: &str| {
        helm(&[
            "template",
            "rp",
            &chart(),
            "--show-only",
            only,
            "--set",
            values,
        ])
    };
    let off = template("installId=x", "templates/webhook-service.yaml");
    assert!(!off.status.success(), "no webhook Service by default");
    let on = "webhook.enabled=true,webhook.secret.name=gh-webhook,webhook.ingress.enabled=true,webhook.ingress.host=runners.example.com";
    let out = expect_success("helm template", &template(on, "templates/deployment.yaml"));
    let deployment: Deployment = serde_yaml::from_str(&out).expect("a Deployment");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap();
    for want in [
        "--webhook-listen=0.0.0.0:9090",
        "--webhook-secret-file=/etc/runnerpool/webhook/secret",
        "--queued-job-check-seconds=600",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
    }
    let ports: Vec<_> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    assert_eq!(ports, [("admin".into(), 8080), ("webhook".into(), 9090)]);
    let volume = &pod.volumes.unwrap()[0];
    assert_eq!(
        volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("gh-webhook")
    );
    let out = expect_success(
        "helm template",
        &template(on, "templates/webhook-service.yaml"),
    );
    let service: Service = serde_yaml::from_str(&out).expect("a Service");
    let spec = service.spec.unwrap();
    let port = &spec.ports.unwrap()[0];
    assert_eq!(
        port.target_port,
        Some(IntOrString::String("webhook".into()))
    );
    // The leader only: the label the leader puts on its own pod, valued
    // with its Lease's name.
    assert_eq!(
        spec.selector.unwrap()[runnerpool::operator::leader_pod::LEADER_LABEL],
        "rp-runnerpool-operator"
    );
    let out = expect_success(
        "helm template",
        &template(on, "templates/webhook-ingress.yaml"),
    );
    let ingress: k8s_openapi::api::networking::v1::Ingress =
        serde_yaml::from_str(&out).expect("an Ingress");
    let rule = &ingress.spec.unwrap().rules.unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("runners.example.com"));
    let paths = &rule.http.as_ref().unwrap().paths;
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0].path.as_deref(), Some("/webhook"));
}

/// The outbound proxy (issue 23): `proxy.*` become the operator's
/// HTTPS_PROXY, HTTP_PROXY and NO_PROXY, from values or from an existing
/// Secret, and nothing is set without a proxy.
#[test]
fn the_proxy_values_become_the_operator_s_proxy_variables() {
    let env = |values: &[&str]| -> Vec<(String, String)> {
        let mut args = vec!["template", "rp", "--show-only", "templates/deployment.yaml"];
        let chart = chart();
        args.insert(2, &chart);
        args.extend_from_slice(values);
        let out = expect_success("helm template", &helm(&args));
        let deployment: Deployment = serde_yaml::from_str(&out).expect("a Deployment");
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .filter(|e| e.name.ends_with("PROXY"))
            .map(|e| {
                let from = e
                    .value_from
                    .as_ref()
                    .and_then(|f| f.secret_key_ref.as_ref());
                let shown = match (&e.value, from) {
                    (Some(value), _) => value.clone(),
                    (None, Some(key)) => format!("secret {}/{}", key.name, key.key),
                    (None, None) => String::new(),
                };
                (e.name.clone(), shown)
            })
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(env(&[]), pairs(&[]), "no proxy by default");
    let defaults = "localhost,127.0.0.1,::1,.svc,.cluster.local";
    assert_eq!(
        env(&["--set", "proxy.https=http://proxy.corp:3128"]),
        pairs(&[
            ("HTTPS_PROXY", "http://proxy.corp:3128"),
            ("NO_PROXY", defaults)
        ])
    );
    assert_eq!(
        env(&[
            "--set",
            "proxy.https=http://a:3128,proxy.http=http://b:3128",
            "--set-string",
            "proxy.noProxy=ghes.internal\\,10.0.0.0/8",
        ]),
        pairs(&[
            ("HTTPS_PROXY", "http://a:3128"),
            ("HTTP_PROXY", "http://b:3128"),
            ("NO_PROXY", "ghes.internal,10.0.0.0/8"),
        ])
    );
    assert_eq!(
        env(&["--set", "proxy.secretName=corp-proxy"]),
        pairs(&[
            ("HTTPS_PROXY", "secret corp-proxy/HTTPS_PROXY"),
            ("HTTP_PROXY", "secret corp-proxy/HTTP_PROXY"),
            ("NO_PROXY", defaults),
        ])
    );
}

/// The webhook's delivery log (issue 20): its hooks, API and credentials
/// (an existing Secret mounted as files) reach the operator's flags; hooks
/// without a Secret, and a hook that names none, are refused.
#[test]
fn the_delivery_log_is_read_with_its_mounted_credentials() {
    let template = |values: &str| {
        helm(&[
            "template",
            "rp",
            &chart(),
            "--show-only",
            "templates/deployment.yaml",
            "--set",
            values,
        ])
    };
    let webhook = "webhook.enabled=true,webhook.secret.name=gh-webhook";
    let on = format!(
        "{webhook},webhook.deliveryLog.hooks={{orgs/acme/hooks/12,app}},webhook.deliveryLog.secretName=hook-log,webhook.deliveryLog.apiUrl=https://ghe.example.com/api/v3,webhook.deliveryLog.intervalSeconds=3"
    );
    let out = expect_success("helm template", &template(&on));
    let deployment: Deployment = serde_yaml::from_str(&out).expect("a Deployment");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap();
    for want in [
        "--webhook-delivery-log=orgs/acme/hooks/12,app",
        "--webhook-delivery-log-credentials=/etc/runnerpool/delivery-log",
        "--webhook-delivery-log-api-url=https://ghe.example.com/api/v3",
        "--webhook-delivery-log-interval-seconds=3",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
    }
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "delivery-log-credentials")
        .expect("the credentials volume");
    assert_eq!(
        volume.secret.unwrap().secret_name.as_deref(),
        Some("hook-log")
    );
    let off = expect_success("helm template", &template(webhook));
    assert!(!off.contains("delivery-log"), "{off}");
    let no_secret = template(&format!("{webhook},webhook.deliveryLog.hooks={{app}}"));
    assert!(!no_secret.status.success());
    assert!(String::from_utf8_lossy(&no_secret.stderr).contains("webhook.deliveryLog.secretName"));
    let bad = template(&format!(
        "{webhook},webhook.deliveryLog.hooks={{orgs/acme}},webhook.deliveryLog.secretName=x"
    ));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/webhook/deliveryLog/hooks/0"));
}

/// The resources of the rules in the rendered chart's ClusterRole, or its
/// Role with `watchNamespace`.
fn operator_rule_resources(set: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["--show-only", "templates/rbac.yaml"];
    for s in set {
        args.extend(["--set", s]);
    }
    let rendered = render_release(&args);
    let role = serde_yaml::Deserializer::from_str(&rendered)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .find(|doc| doc["kind"] == "ClusterRole" || doc["kind"] == "Role")
        .expect("a ClusterRole or Role");
    let rules: Vec<PolicyRule> = serde_yaml::from_value(role["rules"].clone()).unwrap();
    rules
        .into_iter()
        .flat_map(|r| r.resources.unwrap_or_default())
        .collect()
}

/// Issue 21, item 4: what only containerMode kubernetes needs is granted only
/// with `containerModes.kubernetes.enabled`, cluster-wide and namespaced.
#[test]
fn kubernetes_mode_rights_are_granted_only_when_enabled() {
    let only_kubernetes_mode = [
        "serviceaccounts",
        "roles",
        "rolebindings",
        "pods/exec",
        "pods/log",
        "jobs",
        "configmaps",
    ];
    for watch in ["watchNamespace=", "watchNamespace=ci"] {
        let default = operator_rule_resources(&[watch]);
        let enabled = operator_rule_resources(&[watch, "containerModes.kubernetes.enabled=true"]);
        for resource in only_kubernetes_mode {
            assert!(
                !default.contains(resource),
                "{watch}: {resource} by default"
            );
            assert!(
                enabled.contains(resource),
                "{watch}: no {resource} when enabled"
            );
        }
        for resource in ["runnerpools", "pods", "secrets", "events"] {
            assert!(default.contains(resource), "{watch}: no {resource}");
        }
        assert_eq!(
            enabled.difference(&default).count(),
            only_kubernetes_mode.len(),
            "{watch}: {enabled:?}"
        );
    }
}

#[test]
fn bad_values_are_refused_by_the_schema() {
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "replicaCount=0"], "/replicaCount"),
        (&["--set", "logFormat=xml"], "/logFormat"),
        (
            &["--set", "watchNamespace=Not_A_Namespace"],
            "/watchNamespace",
        ),
        (&["--set", "installId="], "/installId"),
        (
            &["--set", "reconcileConcurrency=0"],
            "/reconcileConcurrency",
        ),
        (&["--set", "createConcurrency=0"], "/createConcurrency"),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            "/image/pullPolicy",
        ),
        (
            &["--set", "metrics.service.port=70000"],
            "/metrics/service/port",
        ),
        (&["--set", "replicas=2"], "'replicas' not allowed"),
        (
            &["--set", "replicaCount=2,leaderElection.enabled=false"],
            "replicaCount > 1 needs leaderElection.enabled=true",
        ),
        (
            &["--set", "updateStrategy.type=Surge"],
            "/updateStrategy/type",
        ),
        (
            &["--set", "webhook.enabled=true"],
            "webhook.enabled needs webhook.secret.name",
        ),
        (
            &[
                "--set",
                "webhook.enabled=true,webhook.secret.name=s,webhook.port=8080",
            ],
            "webhook.port must differ from the admin port",
        ),
        (&["--set", "webhook.port=0"], "/webhook/port"),
        (
            &["--set", "webhook.service.type=Mesh"],
            "/webhook/service/type",
        ),
        (
            &["--set", "networkPolicy.ingress.webhookPort=0"],
            "/networkPolicy/ingress/webhookPort",
        ),
        (
            &["--set", "containerModes.kubernetes.enabled=sometimes"],
            "/containerModes/kubernetes/enabled",
        ),
        (
            &["--set", "containerModes.docker.enabled=true"],
            "'docker' not allowed",
        ),
        (&["--set", "proxy.https=proxy corp:3128"], "/proxy/https"),
        (
            &["--set", "proxy.secretName=px,proxy.http=http://p:3128"],
            "proxy.secretName replaces proxy.https and proxy.http",
        ),
        (
            &["--set", "metrics.prometheusRule.jobsWaitingMinutes=0"],
            "/metrics/prometheusRule/jobsWaitingMinutes",
        ),
        (
            &[
                "--set-json",
                "metrics.prometheusRule.rateLimitRemainingRatio=1.5",
            ],
            "/metrics/prometheusRule/rateLimitRemainingRatio",
        ),
        (
            &["--set", "metrics.prometheusRule.stalledFor=ten minutes"],
            "/metrics/prometheusRule/stalledFor",
        ),
        (
            &["--set", "metrics.dashboard.label=not a label"],
            "/metrics/dashboard/label",
        ),
        (
            &["--set", "metrics.jobs.maxRepositories=0"],
            "/metrics/jobs/maxRepositories",
        ),
    ];
    for (args, expected) in cases {
        let mut cmd = vec!["template", "rp", CHART];
        let chart = chart();
        cmd[2] = &chart;
        cmd.extend_from_slice(args);
        let out = helm(&cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted: {args:?}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} for {args:?} in:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_upgrade_and_uninstall_on_the_cluster() {
    install_crd();
    let client = cluster::client().await;
    let ns = fresh_namespace(&client, "chart").await;
    let watched = fresh_namespace(&client, "chart-watched").await;
    let rel = release("rp");
    let full = format!("{rel}-runnerpool-operator");

    // Bad values never reach the cluster.
    let out = helm(&[
        "install",
        &rel,
        &chart(),
        "--namespace",
        &ns,
        "--set",
        "logFormat=xml",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/logFormat"));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert!(deployments.get_opt(&full).await.unwrap().is_none());

    expect_success(
        "helm install",
        &helm(&[
            "install",
            &rel,
            &chart(),
            "--namespace",
            &ns,
            "--set",
            "installId=chart-test,replicaCount=1",
            // The CRDs exist already (the other tests apply them): the
            // release takes them over, as one upgraded from a release that
            // shipped them in crds/ does.
            "--take-ownership",
        ]),
    );
    expect_success(
        "the CRD is established",
        &kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/runnerpools.actions.runnerpool.dev",
        ]),
    );
    let deployment = deployments.get(&full).await.expect("the Deployment");
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(full.as_str()));
    let args = pod.containers[0].args.clone().unwrap();
    assert!(
        args.contains(&"--install-id=chart-test".to_string()),
        "{args:?}"
    );
    assert!(!args.iter().any(|a| a.starts_with("--watch-namespace")));
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get(&full)
        .await
        .expect("the ServiceAccount");
    let service = Api::<Service>::namespaced(client.clone(), &ns)
        .get(&format!("{full}-metrics"))
        .await
        .expect("the metrics Service");
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 8080);
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let role = cluster_roles.get(&full).await.expect("the ClusterRole");
    assert!(
        role.rules
            .unwrap()
            .iter()
            .any(|r| r.resources.as_deref() == Some(&["runnerpools".to_string()][..]))
    );
    let binding = Api::<ClusterRoleBinding>::all(client.clone())
        .get(&full)
        .await
        .expect("the ClusterRoleBinding");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        (full.as_str(), Some(ns.as_str()))
    );
    let lease_role = Api::<Role>::namespaced(client.clone(), &ns)
        .get(&format!("{full}-leader-election"))
        .await
        .expect("the leader-election Role in the release namespace");
    let lease_rules = lease_role.rules.unwrap();
    assert_eq!(
        lease_rules[0].resources.as_deref(),
        Some(&["leases".to_string()][..])
    );
    assert_eq!(
        (
            lease_rules[1].resources.clone(),
            lease_rules[1].verbs.clone()
        ),
        (
            Some(vec!["pods".to_string()]),
            vec!["list".to_string(), "patch".to_string()]
        ),
        "the leader labels its own pod"
    );
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get("runnerpools.actions.runnerpool.dev")
        .await
        .unwrap();
    assert_eq!(
        crd.annotations().get("meta.helm.sh/release-name"),
        Some(&rel),
        "the release manages the CRDs"
    );
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    assert!(
        pdbs.get_opt(&full).await.unwrap().is_none(),
        "no PDB for one replica"
    );

    // Upgrade: namespaced, two replicas with leader election.
    expect_success(
        "helm upgrade",
        &helm(&[
            "upgrade",
            &rel,
            &chart(),
            "--namespace",
            &ns,
            "--reuse-values",
            "--set",
            &format!("watchNamespace={watched},replicaCount=2,networkPolicy.enabled=true"),
        ]),
    );
    Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
        .get(&full)
        .await
        .expect("the NetworkPolicy, accepted by the API server");
    let spec = deployments.get(&full).await.unwrap().spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let args = spec.template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.contains(&format!("--watch-namespace={watched}")),
        "{args:?}"
    );
    assert!(args.contains(&"--install-id=chart-test".to_string()));
    let pdb = pdbs.get(&full).await.expect("a PDB for two replicas");
    let pdb = pdb.spec.unwrap();
    assert_eq!(
        pdb.unhealthy_pod_eviction_policy.as_deref(),
        Some("AlwaysAllow")
    );
    assert!(pdb.min_available.is_none() && pdb.max_unavailable.is_some());
    Api::<Role>::namespaced(client.clone(), &watched)
        .get(&full)
        .await
        .expect("the Role in the watched namespace");
    Api::<RoleBinding>::namespaced(client.clone(), &watched)
        .get(&full)
        .await
        .expect("the RoleBinding in the watched namespace");
    Api::<Role>::namespaced(client.clone(), &ns)
        .get(&format!("{full}-leader-election"))
        .await
        .expect("the leader-election Role in the release namespace");
    wait_for("the ClusterRole to go", Duration::from_secs(30), || async {
        cluster_roles
            .get_opt(&full)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    expect_success(
        "helm uninstall",
        &helm(&["uninstall", &rel, "--namespace", &ns, "--wait"]),
    );
    assert!(deployments.get_opt(&full).await.unwrap().is_none());
    assert!(
        Api::<Role>::namespaced(client.clone(), &watched)
            .get_opt(&full)
            .await
            .unwrap()
            .is_none()
    );
    expect_success(
        "the CRD outlives the release (helm.sh/resource-policy: keep)",
        &kubectl(&["get", "crd", "runnerpools.actions.runnerpool.dev"]),
    );
}

/// kube-score checks the chart fails on purpose, and why (README, "What
/// kube-score reports"). The test fails when any other check fails, and when
/// one of these passes again (then drop it here and in the README).
const KUBE_SCORE_LEFT: &[(&str, &str)] = &[(
    "container-image-pull-policy",
    "IfNotPresent: releases are immutable version tags; Always would make every \
         restart of the operator depend on the registry",
)];

/// Left with the default values only (deploy/); the HA rendering with the
/// NetworkPolicy passes them.
const KUBE_SCORE_LEFT_BY_DEFAULT: &[(&str, &str)] = &[(
    "pod-networkpolicy",
    "the NetworkPolicy is opt-in (networkPolicy.enabled): its egress rules need \
         the cluster's API server address",
)];

/// Left in the HA rendering with the webhook listener.
const KUBE_SCORE_LEFT_WITH_WEBHOOK: &[(&str, &str)] = &[(
    "service-targets-pod",
    "the webhook Service selects the leader's pod by the label the leader puts on \
     it at run time (actions.runnerpool.dev/leader), which no pod template carries",
)];

struct KubeScore {
    failed: BTreeSet<String>,
    passed: BTreeSet<String>,
    report: String,
}

/// Scores manifests with kube-score (built from Go modules by tests/cluster/tools.sh).
fn kube_score(manifests: &str) -> KubeScore {
    let mut child = Command::new(lint_tool("kube-score"))
        .args([
            "score",
            "--kubernetes-version",
            "v1.36",
            "--enable-optional-test",
            "container-seccomp-profile",
            "--output-format",
            "json",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kube-score");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifests.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let objects: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kube-score printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut score = KubeScore {
        failed: BTreeSet::new(),
        passed: BTreeSet::new(),
        report: String::new(),
    };
    for object in &objects {
        let name = object["object_name"].as_str().unwrap_or_default();
        for check in object["checks"].as_array().into_iter().flatten() {
            if check["skipped"].as_bool() == Some(true) {
                continue;
            }
            let id = check["check"]["id"].as_str().unwrap().to_string();
            // Grades: 10 OK, 5 warning, 1 critical.
            if check["grade"].as_i64() == Some(10) {
                score.passed.insert(id);
            } else {
                score
                    .report
                    .push_str(&format!("{name}: {id}: {}\n", check["comments"]));
                score.failed.insert(id);
            }
        }
    }
    score
}

fn ids(lists: &[&[(&str, &str)]]) -> BTreeSet<String> {
    lists
        .iter()
        .flat_map(|l| l.iter().map(|(id, _)| id.to_string()))
        .collect()
}

#[test]
fn kube_score_finds_nothing_but_the_documented_exceptions() {
    let default = std::fs::read_to_string(repo_path("deploy/runnerpool-operator.yaml")).unwrap();
    let score = kube_score(&default);
    assert_eq!(
        score.failed,
        ids(&[KUBE_SCORE_LEFT, KUBE_SCORE_LEFT_BY_DEFAULT]),
        "kube-score on deploy/ (default values):\n{}",
        score.report
    );
    for id in [
        "container-resources",
        "container-ephemeral-storage-request-and-limit",
        "container-security-context-user-group-id",
        "container-security-context-readonlyrootfilesystem",
        "container-seccomp-profile",
        "pod-probes",
        "pod-probes-identical",
        "container-image-tag",
        "deployment-replicas",
        "deployment-strategy",
        "deployment-has-poddisruptionbudget",
    ] {
        assert!(
            score.passed.contains(id),
            "{id} not checked: {:?}",
            score.passed
        );
    }

    let ha = render_release(&[
        "--set",
        "replicaCount=2,networkPolicy.enabled=true,webhook.enabled=true,webhook.secret.name=hook",
    ]);
    let score = kube_score(&ha);
    assert_eq!(
        score.failed,
        ids(&[KUBE_SCORE_LEFT, KUBE_SCORE_LEFT_WITH_WEBHOOK]),
        "kube-score on the HA rendering with the NetworkPolicy:\n{}",
        score.report
    );
    for id in [
        "pod-networkpolicy",
        "networkpolicy-targets-pod",
        "deployment-replicas",
        "deployment-has-poddisruptionbudget",
        "deployment-has-host-podantiaffinity",
        "container-ephemeral-storage-request-and-limit",
    ] {
        assert!(
            score.passed.contains(id),
            "{id} not checked: {:?}",
            score.passed
        );
    }
}

fn network_policy(set: &[&str]) -> Option<NetworkPolicy> {
    let chart = chart();
    let mut args = vec!["template", "rp", chart.as_str()];
    args.extend_from_slice(set);
    let out = expect_success("helm template", &helm(&args));
    out.split("\n---")
        .find(|doc| doc.contains("\nkind: NetworkPolicy\n"))
        .map(|doc| serde_yaml::from_str(doc).expect("a NetworkPolicy"))
}

#[test]
fn the_network_policy_admits_only_the_admin_and_webhook_ports() {
    assert!(network_policy(&[]).is_none(), "off by default");
    let policy = network_policy(&[
        "--set",
        "networkPolicy.enabled=true,networkPolicy.ingress.webhookPort=9443",
        "--set-json",
        r#"networkPolicy.ingress.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#,
        "--set-json",
        r#"networkPolicy.egress.github.cidrs=["140.82.112.0/20"]"#,
    ])
    .expect("a NetworkPolicy");
    let spec = policy.spec.unwrap();
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".to_string(), "Egress".to_string()])
    );
    assert_eq!(
        spec.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
        "rp"
    );
    let port_numbers =
        |ports: &Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyPort>>| {
            ports
                .iter()
                .flatten()
                .map(|p| {
                    let port = match p.port.as_ref().unwrap() {
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => *n,
                        other => panic!("a named port: {other:?}"),
                    };
                    (port, p.protocol.clone().unwrap())
                })
                .collect::<Vec<_>>()
        };
    let ingress = spec.ingress.unwrap();
    assert_eq!(ingress.len(), 2, "{ingress:?}");
    assert_eq!(port_numbers(&ingress[0].ports), [(8080, "TCP".to_string())]);
    let metrics_from = ingress[0].from.as_ref().expect("scrapers only");
    assert_eq!(
        metrics_from[0]
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(port_numbers(&ingress[1].ports), [(9443, "TCP".to_string())]);
    assert!(
        ingress[1].from.is_none(),
        "webhook deliveries from anywhere by default"
    );

    let egress = spec.egress.unwrap();
    assert_eq!(egress.len(), 3, "API server, DNS, GitHub: {egress:?}");
    let cidrs = |rule: &k8s_openapi::api::networking::v1::NetworkPolicyEgressRule| {
        rule.to
            .iter()
            .flatten()
            .filter_map(|peer| peer.ip_block.as_ref().map(|b| b.cidr.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        port_numbers(&egress[0].ports),
        [(443, "TCP".to_string()), (6443, "TCP".to_string())]
    );
    assert_eq!(cidrs(&egress[0]), ["0.0.0.0/0", "::/0"]);
    assert_eq!(
        port_numbers(&egress[1].ports),
        [(53, "UDP".to_string()), (53, "TCP".to_string())]
    );
    let dns = &egress[1].to.as_ref().unwrap()[0];
    assert!(dns.namespace_selector.is_some() && dns.pod_selector.is_some());
    assert_eq!(port_numbers(&egress[2].ports), [(443, "TCP".to_string())]);
    assert_eq!(cidrs(&egress[2]), ["140.82.112.0/20"]);

    // No webhook port: the admin port alone.
    let policy = network_policy(&["--set", "networkPolicy.enabled=true"]).unwrap();
    assert_eq!(policy.spec.unwrap().ingress.unwrap().len(), 1);
    // The chart's own webhook listener is admitted on its port.
    let policy = network_policy(&[
        "--set",
        "networkPolicy.enabled=true,webhook.enabled=true,webhook.secret.name=hook,webhook.port=9191",
    ])
    .unwrap();
    let ingress = policy.spec.unwrap().ingress.unwrap();
    assert_eq!(port_numbers(&ingress[1].ports), [(9191, "TCP".to_string())]);
    // A CIDR that is not one is refused by the schema.
    let out = helm(&[
        "template",
        "rp",
        &chart(),
        "--set",
        "networkPolicy.enabled=true,networkPolicy.egress.apiServer.cidrs[0]=kubernetes.default",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/networkPolicy/egress/apiServer/cidrs/0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ----- dashboards and alerts -------------------------------------------------

/// Every series name the operator exports, as its registry lists them
/// (tests/metrics.rs checks the live `/metrics` page against the same list).
fn exported_series() -> BTreeSet<String> {
    let names = runnerpool::metrics::Metrics::default().series_names();
    assert!(
        names.contains("runnerpool_jobs_completed_total"),
        "{names:?}"
    );
    names
}

/// The metric names a PromQL expression selects: identifiers outside label
/// matchers, strings and ranges that are not functions, keywords,
/// aggregations or grouping labels.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    // Besides GROUPING.
    const KEYWORDS: &[&str] = &[
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "inf",
        "nan",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Label matchers, ranges and strings name no metric.
    let mut plain = String::new();
    let mut closing: Vec<char> = Vec::new();
    let mut quote: Option<char> = None;
    for c in expr.chars() {
        match (quote, closing.last()) {
            (Some(q), _) => {
                if c == q {
                    quote = None;
                }
                continue;
            }
            (None, _) if c == '"' || c == '\'' || c == '`' => {
                quote = Some(c);
                continue;
            }
            (None, Some(&end)) => {
                if c == end {
                    closing.pop();
                }
                plain.push(' ');
                continue;
            }
            (None, None) => {}
        }
        match c {
            '{' => closing.push('}'),
            '[' => closing.push(']'),
            _ => plain.push(c),
        }
    }
    assert!(quote.is_none() && closing.is_empty(), "unbalanced: {expr}");
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '(' && skip_group {
            // `by (a, b)`: label names.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_group = false;
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let preceded_by_digit = start > 0 && chars[start - 1].is_ascii_digit();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let lower = word.to_ascii_lowercase();
            if GROUPING.contains(&lower.as_str()) {
                skip_group = true;
            } else if !(preceded_by_digit
                || next == Some(&'(')
                || KEYWORDS.contains(&lower.as_str())
                || word.starts_with('$'))
            {
                names.insert(word);
            }
            continue;
        }
        if c == '$' {
            // A Grafana variable outside a matcher.
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    names
}

#[test]
fn promql_names_are_read_as_prometheus_reads_them() {
    assert_eq!(
        promql_metric_names(
            r#"histogram_quantile(0.95, sum by (le) (rate(a_bucket{pool=~"$pool", x="y{z}"}[$__rate_interval])))"#
        ),
        BTreeSet::from(["a_bucket".to_string()])
    );
    assert_eq!(
        promql_metric_names(
            "min_over_time((b{s=\"x\"} - ignoring(s) c)[15m:1m]) > 0 or (time() - d) > 1e3"
        ),
        BTreeSet::from(["b".into(), "c".into(), "d".into()])
    );
}

/// Every PromQL expression of the dashboard: its panels' targets and its
/// variables' queries (`label_values(selector, label)` reads the selector).
fn dashboard_expressions(dashboard: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    fn walk(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => found.push(expr.clone()),
                        ("query", serde_json::Value::String(q))
                            if q.starts_with("label_values(") =>
                        {
                            let inner = &q["label_values(".len()
                                ..q.rfind(',').expect("label_values(selector, label)")];
                            found.push(inner.to_string());
                        }
                        _ => walk(value, found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    walk(dashboard, &mut found);
    found
}

/// Each expression names at least one metric, and only exported ones.
fn assert_names_exported(
    what: &str,
    expressions: &[String],
    exported: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for expr in expressions {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "{what}: no metric in {expr:?}");
        let unknown: Vec<&String> = names.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{what}: {unknown:?} in {expr:?} is not a metric the operator exports"
        );
        used.extend(names);
    }
    used
}

#[test]
fn the_dashboard_queries_only_metrics_the_operator_exports() {
    let file = repo_path(format!("{CHART}/dashboards/runnerpool.json"));
    let text = std::fs::read_to_string(&file).expect("the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "runnerpool-operator");
    let exported = exported_series();
    let expressions = dashboard_expressions(&dashboard);
    let used = assert_names_exported("dashboard", &expressions, &exported);
    // What it is for: demand, runners by state, queue wait, job results,
    // GitHub's rate limit and calls.
    for name in [
        "runnerpool_desired_runners",
        "runnerpool_queued_jobs",
        "runnerpool_runners",
        "runnerpool_job_queue_wait_seconds_bucket",
        "runnerpool_jobs_completed_total",
        "runnerpool_github_rate_limit_remaining",
        "runnerpool_github_requests_total",
    ] {
        assert!(used.contains(name), "the dashboard does not show {name}");
    }
    // Every panel has a title, a unique id and a place on the grid.
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<u64> = panels
        .iter()
        .map(|p| p["id"].as_u64().expect("an id"))
        .collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels {
        assert!(
            panel["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{panel}"
        );
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{panel}");
    }
}

/// The chart rendered with `set`, as YAML documents.
fn rendered_objects(set: &[&str]) -> Vec<serde_yaml::Value> {
    let rendered = render_release(set);
    serde_yaml::Deserializer::from_str(&rendered)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn of_kind<'a>(objects: &'a [serde_yaml::Value], kind: &str) -> Vec<&'a serde_yaml::Value> {
    objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some(kind))
        .collect()
}

#[test]
fn the_dashboard_and_alerts_are_rendered_when_asked_for() {
    let off = rendered_objects(&[]);
    assert!(
        of_kind(&off, "PrometheusRule").is_empty() && of_kind(&off, "ServiceMonitor").is_empty()
    );
    assert!(of_kind(&off, "ConfigMap").is_empty(), "all opt-in");

    let on = rendered_objects(&[
        "--set",
        "metrics.dashboard.enabled=true,metrics.dashboard.label=dashboards,metrics.dashboard.labelValue=grafana",
        "--set",
        "metrics.dashboard.namespace=monitoring,metrics.dashboard.annotations.grafana_folder=CI",
        "--set",
        "metrics.prometheusRule.enabled=true,metrics.prometheusRule.jobsWaitingMinutes=30,metrics.prometheusRule.labels.release=kube-prometheus",
        "--set-json",
        "metrics.prometheusRule.rateLimitRemainingRatio=0.2",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ]);
    let [dashboard] = of_kind(&on, "ConfigMap")[..] else {
        panic!("one dashboard ConfigMap: {on:?}");
    };
    assert_eq!(
        dashboard["metadata"]["namespace"].as_str(),
        Some("monitoring")
    );
    assert_eq!(
        dashboard["metadata"]["labels"]["dashboards"].as_str(),
        Some("grafana")
    );
    assert_eq!(
        dashboard["metadata"]["annotations"]["grafana_folder"].as_str(),
        Some("CI")
    );
    let shipped: serde_json::Value = serde_json::from_str(
        dashboard["data"]["runnerpool.json"]
            .as_str()
            .expect("the dashboard's JSON"),
    )
    .expect("valid JSON in the ConfigMap");
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path(format!("{CHART}/dashboards/runnerpool.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        shipped, file,
        "the ConfigMap holds dashboards/runnerpool.json"
    );
    assert_eq!(of_kind(&on, "ServiceMonitor").len(), 1);

    let [rule] = of_kind(&on, "PrometheusRule")[..] else {
        panic!("one PrometheusRule: {on:?}");
    };
    assert_eq!(
        rule["metadata"]["labels"]["release"].as_str(),
        Some("kube-prometheus")
    );
    let rules: Vec<&serde_yaml::Value> = rule["spec"]["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules"))
        .collect();
    let alerts: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    assert_eq!(
        alerts,
        BTreeSet::from([
            "RunnerPoolStalled",
            "RunnerPoolJobsWaiting",
            "RunnerVersionOutdated",
            "GitHubRateLimitNearlySpent",
        ])
    );
    let expressions: Vec<String> = rules
        .iter()
        .map(|r| r["expr"].as_str().expect("an expr").to_string())
        .collect();
    assert_names_exported("alerts", &expressions, &exported_series());
    let expr = |alert: &str| {
        rules
            .iter()
            .find(|r| r["alert"].as_str() == Some(alert))
            .and_then(|r| r["expr"].as_str())
            .unwrap()
            .to_string()
    };
    let waiting = expr("RunnerPoolJobsWaiting");
    assert!(
        waiting.contains("> 1800") && waiting.contains("[30m:1m]"),
        "{waiting}"
    );
    assert!(expr("GitHubRateLimitNearlySpent").ends_with("< 0.2"));
    for r in &rules {
        assert_eq!(r["labels"]["severity"].as_str(), Some("warning"));
        let summary = r["annotations"]["summary"].as_str().unwrap_or_default();
        assert!(!summary.is_empty(), "{r:?}");
    }
}
