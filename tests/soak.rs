//! The chaos soak of `make soak` in its one-minute form, so that it cannot
//! rot: 67 jobs through two webhook-driven pools with GitHub 5xx, lost
//! answers and webhooks, a rate-limit window, an operator SIGKILL, evictions
//! and a kube-apiserver restart, on a cluster of its own
//! (`target/soak-cluster`: the restart would disturb tests sharing one).
//! Every job served, no busy runner deleted, nothing leaked.

mod support;

use support::soak::{self, Soak};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_minute_chaos_soak_serves_every_job_and_leaks_nothing() {
    let _stop = support::cluster::StopOwnClusterOnDrop;
    let report = soak::run(&Soak::for_minutes(1.0)).await;
    report.print();
    let failures = report.failures();
    assert!(failures.is_empty(), "invariants broken: {failures:#?}");
    // The chaos happened.
    assert!(report.kills >= 1, "no operator SIGKILL");
    assert_eq!(report.apiserver_restarts, 1, "no API server restart");
    assert!(report.rate_limit_windows >= 1, "no rate-limit window");
}
