//! Webhook latency benchmark: single jobs, each queued on an empty
//! `minRunners: 0, idleRunners: 0` pool; prints the time from the fake
//! sending the `queued` delivery to the runner pod appearing in a watch, and
//! the operator's own view (delivery received → pod created, from its
//! `runnerpool_queued_to_pod_seconds` histogram). Local control plane and
//! GitHub fake, default 120 s sync interval (so no list helps):
//! `cargo bench --bench webhook_latency`. Under `cargo test` it does nothing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::cluster::wait_for;
use support::operator::{Base, Env, autoscaling, pool_yaml, staying_offline};

const JOBS: usize = 50;
const SECRET: &str = "bench-webhook-secret";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (env, _) = Env::start_with_webhooks("whbench", SECRET, "120", &["--log", "info"]).await;
    // Pods stay offline: no job is ever taken, so cancelling the job takes
    // the pool back to zero and every job starts from an empty pool.
    let yaml = staying_offline(&autoscaling(
        &pool_yaml(
            "zero",
            "organization: acme",
            &env.api_url(Base::Root),
            0,
            &["self-hosted", "linux"],
            "",
        ),
        0,
        10,
        0,
    ));
    env.apply_pool(&yaml).await;
    wait_for(
        "the pool to be reconciled",
        Duration::from_secs(30),
        || async { env.pools().get("zero").await.ok()?.status.map(|_| ()) },
    )
    .await;

    let mut added = env.pod_additions();
    tokio::time::sleep(Duration::from_secs(2)).await;
    while added.try_recv().is_ok() {}

    let mut latencies = Vec::with_capacity(JOBS);
    for _ in 0..JOBS {
        let queued = Instant::now();
        let job = env
            .fake
            .queue_job("acme/app", &["self-hosted", "linux"])
            .unwrap();
        let at = tokio::time::timeout(Duration::from_secs(30), added.recv())
            .await
            .expect("a pod within 30 s")
            .expect("the watch runs");
        latencies.push(at.duration_since(queued));
        env.fake.finish_job(job).unwrap();
        wait_for("the pool back at zero", Duration::from_secs(30), || async {
            env.live_pods("zero").await.is_empty().then_some(())
        })
        .await;
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let metrics = env.metrics().await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let operator_mean = value("runnerpool_queued_to_pod_seconds_sum")
        / value("runnerpool_queued_to_pod_seconds_count").max(1.0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "webhook latency, {JOBS} single jobs on an empty min 0 / idle 0 pool ({}, load {})",
        support::operator::operator_build(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| what | p50 | p99 | max |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| job queued on the fake → runner pod seen in a watch | {:.0} ms | {:.0} ms | {:.0} ms |",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "| operator: delivery received → pod created (mean of {} from its histogram) | {:.0} ms | | |",
        value("runnerpool_queued_to_pod_seconds_count"),
        operator_mean * 1e3
    );
}
