//! Release automation: the version in Cargo.toml, the chart (version,
//! appVersion, default image tag), the Dockerfile and `runnerpool-operator
//! --version` agree; the release workflow refuses a tag that differs from
//! them; the workflows pass actionlint; and the chart as the release workflow
//! packages it installs on the local control plane with exactly the image
//! reference that workflow publishes.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use serde_yaml::Value;
use support::cluster::{self, expect_success, helm, lint_tool, repo_path, target_dir};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn yaml(rel: &str) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(repo_path(rel)).unwrap())
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn release_workflow() -> Value {
    yaml(".github/workflows/release.yml")
}

/// The image the release workflow pushes (without the tag).
fn published_image() -> String {
    release_workflow()["env"]["IMAGE"]
        .as_str()
        .unwrap()
        .to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = target_dir().join(format!("release-test/{name}-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn release_check(root: &Path, tag: &str) -> Output {
    Command::new("bash")
        .arg(root.join("scripts/release-check.sh"))
        .arg(tag)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn cargo_chart_dockerfile_and_binary_carry_one_version() {
    let chart = yaml("charts/runnerpool-operator/Chart.yaml");
    assert_eq!(
        chart["version"].as_str(),
        Some(VERSION),
        "Chart.yaml version"
    );
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(VERSION),
        "Chart.yaml appVersion"
    );
    let values = yaml("charts/runnerpool-operator/values.yaml");
    assert_eq!(
        values["image"]["tag"].as_str(),
        Some(""),
        "the image tag defaults to appVersion"
    );
    assert_eq!(
        values["image"]["repository"].as_str(),
        Some(published_image().as_str()),
        "the chart's image is the one the release workflow pushes"
    );
    let dockerfile = std::fs::read_to_string(repo_path("Dockerfile")).unwrap();
    assert!(
        dockerfile
            .lines()
            .any(|l| l == format!("ARG VERSION={VERSION}")),
        "the Dockerfile's default VERSION is {VERSION}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_runnerpool-operator"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("runnerpool-operator {VERSION}")
    );
    let deploy = std::fs::read_to_string(repo_path("deploy/runnerpool-operator.yaml")).unwrap();
    assert!(
        deploy.contains(&format!("image: \"{}:{VERSION}\"", published_image())),
        "deploy/ runs the published image of this version"
    );
}

#[test]
fn the_release_workflow_refuses_a_tag_that_differs_from_the_sources() {
    let root = repo_path("");
    let ok = release_check(&root, &format!("v{VERSION}"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        format!("version={VERSION}")
    );
    for tag in ["v99.0.0", VERSION, "latest", &format!("v{VERSION}.1")] {
        let out = release_check(&root, tag);
        assert!(!out.status.success(), "tag {tag:?} accepted");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
    let out = release_check(&root, "v99.0.0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("Cargo.toml version is '{VERSION}'")),
        "{stderr}"
    );

    // One file out of step is enough to refuse the right tag.
    let files = [
        "scripts/release-check.sh",
        "Cargo.toml",
        "Dockerfile",
        "charts/runnerpool-operator/Chart.yaml",
        "charts/runnerpool-operator/values.yaml",
    ];
    let cases: [(&str, &str, String, &str); 3] = [
        (
            "charts/runnerpool-operator/Chart.yaml",
            "appVersion: \"",
            "appVersion: \"9.9.9-".to_string(),
            "Chart.yaml appVersion",
        ),
        (
            "Dockerfile",
            "ARG VERSION=",
            "ARG VERSION=9.9.9-".to_string(),
            "Dockerfile ARG VERSION",
        ),
        (
            "charts/runnerpool-operator/values.yaml",
            "  tag: \"\"",
            format!("  tag: \"{VERSION}\""),
            "image.tag",
        ),
    ];
    for (file, from, to, named) in cases {
        let copy = scratch("sources");
        for f in files {
            std::fs::create_dir_all(copy.join(f).parent().unwrap()).unwrap();
            std::fs::copy(repo_path(f), copy.join(f)).unwrap();
        }
        let text = std::fs::read_to_string(copy.join(file)).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(copy.join(file), text.replacen(from, &to, 1)).unwrap();
        let out = release_check(&copy, &format!("v{VERSION}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file} out of step, yet accepted");
        assert!(stderr.contains(named), "{named} not named in: {stderr}");
        std::fs::remove_dir_all(&copy).ok();
    }

    // The workflow checks the tag first; nothing is built or pushed without it.
    let workflow = release_workflow();
    assert_eq!(
        workflow["on"]["push"]["tags"],
        serde_yaml::from_str::<Value>("[\"v*\"]").unwrap()
    );
    let jobs = &workflow["jobs"];
    let check_runs: Vec<&str> = jobs["check"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect();
    assert!(
        check_runs
            .iter()
            .any(|r| r.contains("scripts/release-check.sh \"$GITHUB_REF_NAME\"")),
        "{check_runs:?}"
    );
    for (name, job) in jobs.as_mapping().unwrap() {
        if name.as_str() == Some("check") {
            continue;
        }
        let needs = serde_yaml::to_string(&job["needs"]).unwrap();
        assert!(
            needs.contains("check"),
            "job {name:?} does not wait for the tag check"
        );
    }
    let build = jobs["image"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("docker/build-push-action@"))
        })
        .expect("a buildx build-push step");
    let with = &build["with"];
    assert_eq!(with["platforms"].as_str(), Some("linux/amd64,linux/arm64"));
    assert_eq!(with["push"].as_bool(), Some(true));
    assert_eq!(with["sbom"].as_bool(), Some(true));
    assert_eq!(with["provenance"].as_str(), Some("mode=max"));
}

#[test]
fn the_workflows_pass_actionlint() {
    let actionlint = lint_tool("actionlint");
    let workflows: Vec<PathBuf> = std::fs::read_dir(repo_path(".github/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(workflows.len() >= 2, "{workflows:?}");
    // No shellcheck or pyflakes from PATH: the same result on every machine.
    let lint = |files: &[PathBuf]| {
        Command::new(&actionlint)
            .args(["-shellcheck=", "-pyflakes=", "-no-color"])
            .args(files)
            .current_dir(repo_path(""))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = lint(&workflows);
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The linter is live: a broken workflow fails.
    let dir = scratch("actionlint");
    let broken = dir.join("broken.yml");
    std::fs::write(
        &broken,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.no_such_context }}\n",
    )
    .unwrap();
    let out = lint(&[broken]);
    assert!(
        !out.status.success(),
        "actionlint accepted a broken workflow"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packaged_chart_installs_with_the_image_the_release_publishes() {
    support::operator::install_crd();
    let client = cluster::client().await;
    let ns = cluster::fresh_namespace(&client, "release").await;
    // What the release workflow pushes to its chart repository.
    let dist = scratch("dist");
    expect_success(
        "helm package",
        &helm(&[
            "package",
            &repo_path("charts/runnerpool-operator")
                .display()
                .to_string(),
            "--destination",
            &dist.display().to_string(),
        ]),
    );
    let package = dist.join(format!("runnerpool-operator-{VERSION}.tgz"));
    assert!(
        package.is_file(),
        "helm package made no {}",
        package.display()
    );
    let chart_repository = release_workflow()["env"]["CHART_REPOSITORY"]
        .as_str()
        .unwrap()
        .to_string();
    // The README's install command names that artifact and this version.
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let published_chart = format!("{chart_repository}/runnerpool-operator --version {VERSION}");
    assert!(
        readme.contains(&published_chart),
        "README does not install {published_chart}"
    );

    let release = format!("rel-{:08x}", rand::random::<u32>());
    expect_success(
        "helm install",
        &helm(&[
            "install",
            &release,
            &package.display().to_string(),
            "--namespace",
            &ns,
            "--set",
            "installId=release-test",
            // The CRDs exist already (the other tests apply them).
            "--take-ownership",
        ]),
    );
    let full = format!("{release}-runnerpool-operator");
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get(&full)
        .await
        .expect("the Deployment");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some(format!("{}:{VERSION}", published_image()).as_str()),
        "the image reference the release workflow publishes"
    );
    expect_success(
        "helm uninstall",
        &helm(&["uninstall", &release, "--namespace", &ns, "--wait"]),
    );
    std::fs::remove_dir_all(&dist).ok();
}
