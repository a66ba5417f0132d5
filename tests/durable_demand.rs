//! Webhook demand that survives the process (issue 20): queued jobs kept in
//! the pools' status and read back by a restarted operator, a queued job
//! leaving demand only when GitHub says so, and deliveries the operator never
//! received recovered from the webhook's delivery log.

mod support;

use std::time::{Duration, Instant};

use fake_github::{Fault, JobStatus};
use support::cluster::wait_for;
use support::operator::{Base, Env, autoscaling, pool_yaml};

const T: Duration = Duration::from_secs(40);
const SECRET: &str = "durable-demand-secret";
const JIT: &str = "POST /orgs/{org}/actions/runners/generate-jitconfig";

/// An autoscaling pool of organization `acme` (labels `linux`, no scale-down delay).
fn pool(env: &Env, name: &str, min: u32, max: u32, idle: u32) -> String {
    autoscaling(
        &pool_yaml(
            name,
            "organization: acme",
            &env.api_url(Base::Root),
            0,
            &["self-hosted", "linux"],
            "",
        ),
        min,
        max,
        idle,
    )
}

async fn wait_for_ready(env: &Env, pool: &str) {
    env.wait_for_ready(pool, T).await;
}

/// Points the fake's deliveries at the operator's newest webhook listener
/// (each start binds a new loopback port), once there are `listeners` of them.
async fn follow_the_listener(env: &Env, listeners: usize) {
    let port = wait_for("the new webhook listener", T, || async {
        env.operator
            .listener_ports("webhook")
            .get(listeners - 1)
            .copied()
    })
    .await;
    env.fake.set_webhook(Some(fake_github::WebhookConfig {
        url: format!("http://127.0.0.1:{port}/webhook"),
        secret: Some(SECRET.into()),
    }));
}

fn running(env: &Env) -> usize {
    env.fake
        .jobs()
        .iter()
        .filter(|j| j.status == JobStatus::InProgress)
        .count()
}

/// SIGKILL with jobs queued for a `min 0 / idle 0` pool: nothing else would
/// ever grow it, so its runners after the restart can only come from demand
/// the operator kept (the pool's status) and read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_survive_a_sigkill_of_the_operator() {
    let (mut env, _) = Env::start_with_webhooks("sigkill", SECRET, "120", &[]).await;
    env.apply_pool(&pool(&env, "ci", 0, 10, 0)).await;
    wait_for_ready(&env, "ci").await;
    // GitHub refuses registrations for now: the jobs stay demand, unserved.
    env.fake.inject_fault(Fault::always(Some(JIT), 503));
    let jobs: Vec<u64> = (0..3)
        .map(|_| env.fake.queue_job("acme/app", &["linux"]).unwrap())
        .collect();
    wait_for("the pool's status to show 3 queued jobs", T, || async {
        let status = env.pools().get("ci").await.ok()?.status?;
        (status.queued_jobs == 3).then_some(())
    })
    .await;
    env.operator.kill();
    env.fake.clear_faults();
    assert!(env.live_pods("ci").await.is_empty());
    let restarted = Instant::now();
    env.operator.spawn();
    follow_the_listener(&env, 2).await;
    wait_for(
        "a runner pod for each queued job",
        Duration::from_secs(15),
        || async { (env.live_pods("ci").await.len() == jobs.len()).then_some(()) },
    )
    .await;
    println!(
        "runner pods for the {} kept jobs {:.1} s after the restart",
        jobs.len(),
        restarted.elapsed().as_secs_f64()
    );
    wait_for("every job to run", T, || async {
        (running(&env) == jobs.len()).then_some(())
    })
    .await;
    wait_for("the status to forget the started jobs", T, || async {
        let status = env.pools().get("ci").await.ok()?.status?;
        (status.queued_jobs == 0 && status.waiting_jobs.is_empty()).then_some(())
    })
    .await;
    env.assert_no_secret_leaked().await;
}

/// 100 jobs on a pool of at most 10 runners: the tail waits far longer than
/// the queued-job check interval and is still served. Scaled down: each job
/// runs 3 s (finished by the test as soon as it ran that long) and the check
/// interval is 5 s, where GitHub's jobs run minutes and the default interval
/// is 600 s; before, a queued job was dropped from demand at that interval
/// (`--webhook-demand-ttl-seconds`), and the jobs queued behind the first
/// waves never got a runner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_jobs_on_ten_runners_are_all_served() {
    let (env, _) = Env::start_with_webhooks(
        "hundred",
        SECRET,
        "120",
        &["--queued-job-check-seconds", "5"],
    )
    .await;
    env.apply_pool(&pool(&env, "ci", 0, 10, 0)).await;
    wait_for_ready(&env, "ci").await;
    const JOBS: usize = 100;
    const RUNS_FOR: Duration = Duration::from_secs(3);
    let jobs: Vec<u64> = (0..JOBS)
        .map(|_| env.fake.queue_job("acme/app", &["linux"]).unwrap())
        .collect();
    let began = Instant::now();
    let mut started: std::collections::HashMap<u64, Instant> = Default::default();
    let mut most_pods = 0;
    loop {
        let now = Instant::now();
        let mut done = 0;
        for job in env.fake.jobs() {
            match job.status {
                JobStatus::InProgress => {
                    let at = *started.entry(job.id).or_insert(now);
                    if now.duration_since(at) >= RUNS_FOR {
                        let _ = env.fake.finish_job(job.id);
                    }
                }
                JobStatus::Completed => done += 1,
                JobStatus::Queued => {}
            }
        }
        most_pods = most_pods.max(env.live_pods("ci").await.len());
        if done == JOBS {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(240),
            "{done} of {JOBS} jobs done after {:?}; {} started",
            began.elapsed(),
            started.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{JOBS} jobs of {RUNS_FOR:?} on at most 10 runners: all done in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    assert_eq!(started.len(), JOBS, "every job ran");
    assert!(most_pods <= 10, "maxRunners held: {most_pods} pods at once");
    assert!(
        env.calls("GET /repos/{owner}/{repo}/actions/jobs/{job_id}") > 0,
        "jobs queued long were read from GitHub"
    );
    assert_eq!(jobs.len(), JOBS);
}
