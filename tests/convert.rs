//! `runnerpool-operator convert` end to end: the RunnerPools it prints for
//! the ARC manifests and chart values of `tests/data/convert/` (written after
//! ARC's documented examples) are accepted by the real API server, schema and
//! CEL rules included.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::cluster::{self, expect_success, kubectl};
use support::operator::install_crd;

/// Runs `convert ARGS`, with `stdin` on its standard input; returns its stdout.
fn convert(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runnerpool-operator"))
        .arg("convert")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running runnerpool-operator convert");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("writing stdin");
    drop(input);
    let out = child.wait_with_output().expect("convert's output");
    expect_success(&format!("convert {}", args.join(" ")), &out)
}

/// `kubectl apply --dry-run=server` of `yaml` in `ns`; returns kubectl's lines.
fn dry_run(ns: &str, what: &str, yaml: &str) -> Vec<String> {
    let dir = cluster::target_dir().join("test-convert");
    std::fs::create_dir_all(&dir).expect("output directory");
    let file = dir.join(format!("{ns}-{what}.yaml"));
    std::fs::write(&file, yaml).expect("writing the converted pools");
    let file = file.to_str().expect("UTF-8 path");
    let out = kubectl(&["apply", "--dry-run=server", "-n", ns, "-f", file]);
    let printed = expect_success(
        &format!("kubectl apply --dry-run=server of {what}:\n{yaml}"),
        &out,
    );
    printed.lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converted_arc_manifests_are_accepted_by_the_api_server() {
    install_crd();
    let client = cluster::client().await;
    let ns = cluster::fresh_namespace(&client, "convert").await;
    let dir = cluster::repo_path("tests/data/convert");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/data/convert")
        .map(|e| e.expect("entry").path().display().to_string())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");

    let mut args = vec!["--namespace", ns.as_str()];
    args.extend(files.iter().map(String::as_str));
    let yaml = convert(&args, "");
    let created = dry_run(&ns, "all", &yaml);
    assert_eq!(created.len(), 6, "{created:?}");
    for line in &created {
        assert!(
            line.starts_with("runnerpool.actions.runnerpool.dev/")
                && line.ends_with("created (server dry run)"),
            "{line}"
        );
    }

    // A values file on standard input, renamed for a side-by-side switch.
    let values = std::fs::read_to_string(dir.join("arc-runner-set.yaml")).expect("values file");
    let yaml = convert(
        &["--release", "linux-ci", "--scale-set-suffix", "-v2", "-"],
        &values,
    );
    assert!(yaml.contains("name: linux-ci-v2"), "{yaml}");
    let created = dry_run(&ns, "stdin", &yaml);
    assert_eq!(
        created,
        ["runnerpool.actions.runnerpool.dev/linux-ci created (server dry run)"]
    );
}
