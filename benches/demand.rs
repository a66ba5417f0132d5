//! Demand and scale benchmark, against the local control plane and the
//! GitHub fake; prints Markdown tables (for the README):
//!
//! 1. **burst**: `BURST_JOBS` (500) jobs queued at once, delivered as
//!    signed webhooks, for one autoscaling pool (`min 0 / idle 0 / max` the
//!    same): time to that many runner pods, the queued → pod latency
//!    distribution, and GitHub requests per job.
//! 2. **pools**: `POOLS` (1,000) fixed pools of `RUNNERS` (5) in one
//!    organization: time until every runner is online, runner-list requests
//!    per sync interval, reconcile duration p99 and the operator's RSS; then
//!    the same pools changed to `SCALED_RUNNERS` (10) each, and the
//!    operator's RSS at start, at both sizes, and from them the bytes a
//!    runner and a pool cost.
//!
//! `cargo bench --bench demand [-- burst|pools]`; the sizes can be lowered
//! with `RUNNERPOOL_BENCH_BURST_JOBS`, `RUNNERPOOL_BENCH_POOLS`,
//! `RUNNERPOOL_BENCH_RUNNERS` and `RUNNERPOOL_BENCH_SCALED_RUNNERS` (0 skips
//! the second size). Under `cargo test` it does nothing: it
//! measures, it does not assert.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::bench::load;
use support::cluster::wait_for;
use support::operator::{Base, Env, autoscaling, pool_yaml, staying_offline};

const SECRET: &str = "bench-webhook-secret";
const LIST: &str = "GET /orgs/{org}/actions/runners";

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The upper bound of the histogram bucket holding the `p` quantile.
fn histogram_quantile(metrics: &str, name: &str, p: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.split_whitespace().next()?.parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    buckets
        .iter()
        .find(|(_, count)| *count >= total * p)
        .map(|(le, _)| *le)
}

fn requests(env: &Env) -> BTreeMap<String, u64> {
    env.calls_by_endpoint()
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let only = |what: &str| {
        let picked: Vec<&String> = args
            .iter()
            .filter(|a| *a == "burst" || *a == "pools")
            .collect();
        picked.is_empty() || picked.iter().any(|a| *a == what)
    };
    if only("burst") {
        burst(size("RUNNERPOOL_BENCH_BURST_JOBS", 500)).await;
    }
    if only("pools") {
        many_pools(
            size("RUNNERPOOL_BENCH_POOLS", 1000),
            size("RUNNERPOOL_BENCH_RUNNERS", 5),
            size("RUNNERPOOL_BENCH_SCALED_RUNNERS", 10),
        )
        .await;
    }
}

async fn burst(jobs: usize) {
    let (env, _) = Env::start_with_webhooks("burst", SECRET, "120", &["--log", "info"]).await;
    let max = jobs as u32;
    // Runners stay offline: the burst measures demand → pods, not job runs.
    let yaml = staying_offline(&autoscaling(
        &pool_yaml(
            "burst",
            "organization: acme",
            &env.api_url(Base::Root),
            0,
            &["self-hosted", "linux"],
            "",
        ),
        0,
        max,
        0,
    ));
    env.apply_pool(&yaml).await;
    wait_for(
        "the pool to be reconciled",
        Duration::from_secs(60),
        || async { env.pools().get("burst").await.ok()?.status.map(|_| ()) },
    )
    .await;

    let mut added = env.pod_additions();
    tokio::time::sleep(Duration::from_secs(2)).await;
    while added.try_recv().is_ok() {}

    let before = requests(&env);
    let queued = Instant::now();
    for _ in 0..jobs {
        env.fake
            .queue_job("acme/app", &["self-hosted", "linux"])
            .unwrap();
    }
    let mut latencies = Vec::with_capacity(jobs);
    while latencies.len() < jobs {
        match tokio::time::timeout(Duration::from_secs(120), added.recv()).await {
            Ok(Some(at)) => latencies.push(at.duration_since(queued)),
            _ => break,
        }
    }
    let all = queued.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = delta(&before, &requests(&env));
    let total: u64 = spent.values().sum();
    latencies.sort();
    println!(
        "\nburst: {jobs} jobs queued at once for one min 0 / idle 0 / max {max} pool, webhooks, 120 s sync ({}, load {})",
        support::operator::operator_build(),
        load()
    );
    println!("| what | measured |");
    println!("| --- | --- |");
    println!(
        "| runner pods created | {} of {jobs} in {:.1} s ({:.0} pods/s) |",
        latencies.len(),
        all.as_secs_f64(),
        latencies.len() as f64 / all.as_secs_f64()
    );
    if !latencies.is_empty() {
        println!(
            "| queued → pod seen, p50 / p99 / max | {} / {} / {} |",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies[latencies.len() - 1])
        );
    }
    println!(
        "| GitHub requests per job | {:.3} ({}) |",
        total as f64 / jobs as f64,
        spent
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| operator RSS after the burst | {:.1} MiB |",
        env.operator.rss_kib().unwrap_or(0) as f64 / 1024.0
    );
}

async fn many_pools(pools: usize, runners: usize, scaled: usize) {
    const INTERVAL: u64 = 30;
    let env = Env::start_with(
        "pools",
        &[
            "--github-sync-interval-seconds",
            &INTERVAL.to_string(),
            "--log",
            "info",
        ],
    )
    .await;
    let url = env.api_url(Base::Root);
    // The rig's three nodes hold 330 pods: add kwok nodes for the rest
    // (removed at the end), and lift the fake's hourly rate limit, since
    // one credential's 5,000 requests an hour cannot register 5,000 runners.
    let nodes = want_nodes(pools * runners.max(scaled));
    set_bench_nodes(nodes, true);
    env.fake.set_rate_limit(1_000_000);
    // The operator's memory before any pool, once its caches are synced.
    env.wait_for_log("watch caches synced", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = rss_bytes(&env);
    let load_idle = load();

    let first = pools_at(&env, &url, pools, runners, INTERVAL).await;
    println!(
        "\nmany pools: {pools} pools × {runners} runners in one organization, {INTERVAL} s sync ({}, load {})",
        support::operator::operator_build(),
        first.load
    );
    println!("| what | measured |");
    println!("| --- | --- |");
    println!(
        "| pools applied (one server-side apply each, from the bench) | {:.1} s |",
        first.applied.as_secs_f64()
    );
    println!(
        "| first apply → runners online | {} of {} in {:.1} s |",
        first.reached,
        pools * runners,
        first.converged.as_secs_f64()
    );
    println!(
        "| runner-list requests per sync interval (steady) | {:.1} |",
        first.lists_per_interval
    );
    println!(
        "| reconcile duration p99 (histogram bucket) | ≤ {} |",
        first
            .reconcile_p99
            .map_or("?".into(), |s| format!("{:.0} ms", s * 1e3))
    );
    println!("| operator RSS | {} |", mib(first.rss));

    // The same pools with more runners each: the difference is what a
    // runner costs, and the rest of the first figure what a pool costs.
    let more = if scaled > runners {
        Some(pools_at(&env, &url, pools, scaled, INTERVAL).await)
    } else {
        None
    };
    println!(
        "\noperator memory: {pools} pools in one organization ({})",
        support::operator::operator_build()
    );
    println!("| operator | runners online | RSS | load |");
    println!("| --- | --- | --- | --- |");
    println!("| started, no pool | 0 | {} | {load_idle} |", mib(idle));
    println!(
        "| {pools} pools × {runners} runners | {} | {} | {} |",
        first.reached,
        mib(first.rss),
        first.load
    );
    if let Some(more) = &more {
        println!(
            "| {pools} pools × {scaled} runners (the same pools changed, {:.1} s to online) | {} | {} | {} |",
            more.converged.as_secs_f64(),
            more.reached,
            mib(more.rss),
            more.load
        );
        let added = pools * (scaled - runners);
        let per_runner = (more.rss as f64 - first.rss as f64) / added as f64;
        let per_pool =
            (first.rss as f64 - idle as f64 - per_runner * (pools * runners) as f64) / pools as f64;
        println!("| per runner (over the {added} runners added) | {per_runner:.0} bytes | | |");
        println!(
            "| per pool (the rest of the first size, over {pools} pools) | {per_pool:.0} bytes | | |"
        );
    }
    drop(env);
    set_bench_nodes(nodes, false);
}

/// What one size of the many-pools run measured.
struct PoolsRun {
    applied: Duration,
    converged: Duration,
    reached: usize,
    lists_per_interval: f64,
    reconcile_p99: Option<f64>,
    rss: u64,
    load: String,
}

/// Applies `pools` fixed pools of `runners` each (or changes them to that
/// many), waits until every runner is online, then watches three sync
/// intervals of steady state before reading the operator's RSS.
async fn pools_at(env: &Env, url: &str, pools: usize, runners: usize, interval: u64) -> PoolsRun {
    let started = Instant::now();
    for i in 0..pools {
        env.apply_pool(&pool_yaml(
            &format!("p{i:04}"),
            "organization: acme",
            url,
            runners as u32,
            &["linux"],
            "",
        ))
        .await;
    }
    let applied = started.elapsed();
    let want = pools * runners;
    let acme = fake_github::Scope::org("acme");
    let online = || {
        env.fake
            .runners(&acme)
            .iter()
            .filter(|r| r.status == fake_github::RunnerStatus::Online)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(1800);
    while online() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converged = started.elapsed();
    let reached = online();

    // Steady state: list requests over three sync intervals.
    let before = env.calls(LIST);
    tokio::time::sleep(Duration::from_secs(3 * interval)).await;
    let lists = env.calls(LIST) - before;
    let m = env.metrics().await;
    PoolsRun {
        applied,
        converged,
        reached,
        lists_per_interval: lists as f64 / 3.0,
        reconcile_p99: histogram_quantile(&m, "runnerpool_reconcile_duration_seconds", 0.99),
        rss: rss_bytes(env),
        load: load(),
    }
}

fn rss_bytes(env: &Env) -> u64 {
    env.operator.rss_kib().unwrap_or(0) * 1024
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

/// Extra nodes of 1,000 pods each for `runners` runners.
fn want_nodes(runners: usize) -> usize {
    runners.div_ceil(1000)
}

/// Adds (or deletes) the kwok nodes `bench-node-1..=n`.
fn set_bench_nodes(n: usize, present: bool) {
    let names: Vec<String> = (1..=n).map(|i| format!("bench-node-{i}")).collect();
    if !present {
        let mut args = vec!["delete", "node", "--ignore-not-found", "--wait=false"];
        args.extend(names.iter().map(String::as_str));
        support::cluster::kubectl(&args);
        return;
    }
    let manifest: String = names
        .iter()
        .map(|name| {
            format!(
                r#"---
apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    type: kwok
    kubernetes.io/hostname: {name}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
spec: {{}}
status:
  allocatable: {{cpu: "64", memory: 256Gi, pods: "1000"}}
  capacity: {{cpu: "64", memory: 256Gi, pods: "1000"}}
"#
            )
        })
        .collect();
    let file = std::env::temp_dir().join(format!("bench-nodes-{}.yaml", std::process::id()));
    std::fs::write(&file, manifest).expect("node manifest");
    let out = support::cluster::kubectl(&["apply", "-f", file.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(file);
}
