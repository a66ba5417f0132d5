//! Scale benchmark: prints how fast a pool of 20 comes up, what one runner
//! lifecycle costs in GitHub calls, and the operator's memory idle and with
//! 200 runners. Runs against the local control plane and the GitHub fake:
//! `cargo bench --bench scale` (with a cluster from `tests/cluster/cluster.sh up`
//! exported as RUNNERPOOL_TEST_KUBECONFIG, or one started on demand).
//! Under `cargo test` it does nothing: it measures, it does not assert.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::operator::{Base, Env, pool_yaml};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let env = Env::start("bench").await;
    let url = env.api_url(Base::Root);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = env.operator.rss_kib().unwrap_or(0);

    // 1. Demand to pods: apply a pool of 20 and time until 20 pods exist.
    let started = Instant::now();
    env.apply_pool(&pool_yaml(
        "bench",
        "organization: acme",
        &url,
        20,
        &["linux"],
        "",
    ))
    .await;
    while env.live_pods("bench").await.len() < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pods_created = started.elapsed();
    env.wait_for_online_runners("bench", 20, Duration::from_secs(120))
        .await;
    let all_online = started.elapsed();

    // 2. GitHub calls per runner lifecycle: 20 jobs run and finish, 20 runners replace them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = env.calls_by_endpoint();
    let jobs: Vec<u64> = (0..20)
        .map(|_| env.fake.queue_job("acme/app", &["linux"]).unwrap())
        .collect();
    while jobs
        .iter()
        .any(|j| env.fake.job(*j).and_then(|j| j.runner_id).is_none())
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for job in &jobs {
        env.fake.finish_job(*job).unwrap();
    }
    let replaced = Instant::now();
    loop {
        let fresh = env
            .wait_for_online_runners("bench", 20, Duration::from_secs(120))
            .await;
        let busy_left = jobs
            .iter()
            .filter_map(|j| env.fake.job(*j)?.runner_id)
            .filter(|id| fresh.contains(id))
            .count();
        if busy_left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let replace_time = replaced.elapsed();
    let after = env.calls_by_endpoint();
    let mut per_lifecycle: BTreeMap<String, f64> = BTreeMap::new();
    for (endpoint, n) in &after {
        let delta = n - before.get(endpoint).copied().unwrap_or(0);
        if delta > 0 {
            per_lifecycle.insert(endpoint.clone(), delta as f64 / 20.0);
        }
    }
    let rss_20 = env.operator.rss_kib().unwrap_or(0);

    // 3. Memory with 200 runners.
    let started_200 = Instant::now();
    env.apply_pool(&pool_yaml(
        "bench",
        "organization: acme",
        &url,
        200,
        &["linux"],
        "",
    ))
    .await;
    while env.live_pods("bench").await.len() < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pods_200 = started_200.elapsed();
    env.wait_for_online_runners("bench", 200, Duration::from_secs(300))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_200 = env.operator.rss_kib().unwrap_or(0);

    println!(
        "scale benchmark (operator build: {})",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "  apply pool of 20 -> 20 pods created:   {:>8.0} ms",
        pods_created.as_secs_f64() * 1000.0
    );
    println!(
        "  apply pool of 20 -> 20 runners online: {:>8.0} ms",
        all_online.as_secs_f64() * 1000.0
    );
    println!(
        "  20 jobs finished -> 20 new runners online: {:>4.0} ms",
        replace_time.as_secs_f64() * 1000.0
    );
    println!(
        "  scale 20 -> 200: 200 pods created:     {:>8.0} ms",
        pods_200.as_secs_f64() * 1000.0
    );
    println!("  GitHub calls per runner lifecycle (job finished -> replaced), by endpoint:");
    for (endpoint, n) in &per_lifecycle {
        println!("    {n:>6.2}  {endpoint}");
    }
    println!(
        "  operator RSS idle (no pools):  {:>6.1} MiB",
        idle_rss as f64 / 1024.0
    );
    println!(
        "  operator RSS with 20 runners:  {:>6.1} MiB",
        rss_20 as f64 / 1024.0
    );
    println!(
        "  operator RSS with 200 runners: {:>6.1} MiB",
        rss_200 as f64 / 1024.0
    );
}
