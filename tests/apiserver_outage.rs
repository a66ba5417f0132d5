//! The operator after an API server outage of about a minute (kube-apiserver
//! restarted on a cluster of its own, `target/outage-cluster`: the restart
//! would disturb tests sharing one), restarted itself while the API server is
//! down, so its first lists fail all that time. A job queued once the API
//! server answers again must get its runner pod within seconds, not after the
//! watches' backoff has grown (kube's default waits up to 30 s between
//! attempts, and a controller's trigger stream, demand included, waits with
//! it).

mod support;

use std::time::{Duration, Instant};

use kube::api::ListParams;

use support::cluster;
use support::cluster::wait_for;
use support::operator::{Base, Env, autoscaling, pool_yaml};

const POOL: &str = "outage";
const SECRET: &str = "outage-webhook-secret";
/// From the job queued to its runner pod created, the API server answering.
const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_after_an_api_server_outage_gets_its_pod_within_seconds() {
    let dir = cluster::use_own_cluster("outage-cluster");
    let _stop = cluster::StopOwnClusterOnDrop;
    let (mut env, _) = Env::start_with_webhooks("outage", SECRET, "120", &[]).await;
    let yaml = pool_yaml(
        POOL,
        "organization: acme",
        &env.api_url(Base::Root),
        0,
        &["linux"],
        "",
    );
    env.apply_pool(&autoscaling(&yaml, 0, 5, 0)).await;
    // The pipeline works before the outage: a job gets a pod.
    queue_and_wait_for_pod(&env, 1, Duration::from_secs(60)).await;

    let started = Instant::now();
    let restart = tokio::task::spawn_blocking(move || {
        cluster::run_cluster_sh(&["restart-apiserver", &dir.display().to_string()]);
    });
    // A process that starts during the outage (a crash, an upgrade, a node
    // drain) finds no API server for its first lists.
    wait_for(
        "the API server to refuse",
        Duration::from_secs(30),
        || async {
            env.pods()
                .list(&ListParams::default().limit(1))
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    env.restart_operator_with_webhooks(SECRET).await;
    restart.await.expect("restarting kube-apiserver");
    let down = started.elapsed();
    eprintln!("kube-apiserver answered again after {down:?}");
    assert!(
        down > Duration::from_secs(20),
        "the outage ({down:?}) was too short for a backoff to grow"
    );

    let waited = queue_and_wait_for_pod(&env, 2, Duration::from_secs(60)).await;
    eprintln!("queued after the outage -> runner pod: {waited:?}");
    assert!(
        waited <= WITHIN,
        "the job queued after the API server came back waited {waited:?} for its pod (at most {WITHIN:?})"
    );
}

/// Queues a job for the pool and waits for its `n`-th runner pod (pods are
/// never removed here: the jobs keep running); returns how long it took.
async fn queue_and_wait_for_pod(env: &Env, n: usize, timeout: Duration) -> Duration {
    let queued = Instant::now();
    env.fake
        .queue_job("acme/app", &["self-hosted", "linux"])
        .expect("queueing a job");
    while env.live_pods(POOL).await.len() < n {
        if queued.elapsed() >= timeout {
            panic!(
                "timed out after {timeout:?} waiting for runner pod {n}; {}",
                env.story(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    queued.elapsed()
}
