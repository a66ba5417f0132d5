//! The chaos soak of issue 11 (`make soak`): `RUNNERPOOL_SOAK_MINUTES`
//! (default 30) of jobs — 2,000 per 30 minutes — through webhook-driven
//! pools, with GitHub faults, lost answers and webhooks, rate-limit windows,
//! operator SIGKILLs, evictions and an API server restart, on a cluster of
//! its own (`target/soak-cluster`, stopped at the end). Prints its figures as
//! a Markdown table and exits 1 when an invariant broke
//! (`tests/support/soak.rs` says what is checked).
//!
//! Under `cargo test` (no `--bench` argument) it does nothing; the one-minute
//! form that runs in the test suite is `tests/soak.rs`.

#[path = "../tests/support/mod.rs"]
mod support;

use support::soak::{self, Soak};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let minutes: f64 = std::env::var("RUNNERPOOL_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30.0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "soak: {minutes} minutes, {build} build of the soak, operator {}, load at start {}",
        std::env::var("RUNNERPOOL_OPERATOR_BIN")
            .unwrap_or_else(|_| format!("the soak's {build} build")),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let report = soak::run(&Soak::for_minutes(minutes)).await;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load at end {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    report.print();
    support::cluster::stop_own_cluster();
    if !report.failures().is_empty() {
        std::process::exit(1);
    }
}
