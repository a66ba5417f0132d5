//! Webhook demand that survives the process (issue 20): queued jobs kept in
//! the pools' status and read back by a restarted operator, a queued job
//! leaving demand only when GitHub says so, and deliveries the operator never
//! received recovered from the webhook's delivery log.

mod support;

use std::time::{Duration, Instant};

use fake_github::{Fault, JobStatus};
use support::cluster::wait_for;
use support::operator::{Base, Env, Operator, SHORT_LEASE, autoscaling, pool_yaml};

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

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// Deliveries GitHub could not deliver (dropped on the way: the operator
/// never saw them, GitHub's log lists them as failed) get runners within
/// one read interval of the delivery log, at its production default (5 s)
/// and with GitHub's runner lists at theirs (120 s): the log's own cadence
/// brings them, not the pools' sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_deliveries_get_runners_within_one_delivery_log_interval() {
    const LOG_INTERVAL: Duration = Duration::from_secs(5);
    let (mut env, _) = Env::start_with_webhooks("dropped", SECRET, "120", &[]).await;
    let flags = env.delivery_log_flags("dropped");
    env.operator.restart_with(&strs(&flags));
    follow_the_listener(&env, 2).await;
    env.apply_pool(&pool(&env, "ci", 0, 10, 0)).await;
    wait_for_ready(&env, "ci").await;
    env.fake.drop_next_webhooks(3);
    let queued = Instant::now();
    for _ in 0..3 {
        env.fake.queue_job("acme/app", &["linux"]).unwrap();
    }
    wait_for(
        "a runner pod for each dropped job",
        LOG_INTERVAL + Duration::from_secs(5),
        || async { (env.live_pods("ci").await.len() == 3).then_some(()) },
    )
    .await;
    let took = queued.elapsed();
    println!(
        "runner pods for 3 dropped deliveries {:.1} s after they were queued (delivery log read every {LOG_INTERVAL:?})",
        took.as_secs_f64()
    );
    let dropped = env
        .fake
        .webhook_deliveries()
        .iter()
        .filter(|d| d.error.as_deref() == Some(fake_github::DROPPED))
        .count();
    assert_eq!(dropped, 3, "the deliveries never reached the operator");
    wait_for("every job to run", T, || async {
        (running(&env) == 3).then_some(())
    })
    .await;
    let metrics = env.metrics().await;
    assert!(
        metrics.contains("runnerpool_webhook_deliveries_total{result=\"recovered\"} 3"),
        "{metrics}"
    );
    assert!(
        !env.operator.logs().contains(HOOK_TOKEN_PREFIX),
        "the log-reading token never shows in the log"
    );
}

const HOOK_TOKEN_PREFIX: &str = "ghp_hooklog";

/// Leader failover with jobs arriving during it: the leader dies (SIGKILL)
/// with jobs queued; more jobs arrive while no leader answers (their
/// deliveries fail); the standby takes over and every job gets a runner:
/// the kept ones from the pools' status, the others from the delivery log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_gets_a_runner_across_a_leader_failover() {
    let mut lease = vec!["--leader-elect"];
    lease.extend(SHORT_LEASE);
    let mut first_flags: Vec<&str> = lease.clone();
    first_flags.extend(["--leader-election-identity", "first"]);
    let (mut env, _) = Env::start_with_webhooks("failover", SECRET, "5", &first_flags).await;
    let flags = env.delivery_log_flags("failover");
    env.operator.restart_with(&strs(&flags));
    follow_the_listener(&env, 2).await;
    env.apply_pool(&pool(&env, "ci", 0, 10, 0)).await;
    wait_for_ready(&env, "ci").await;

    // A standby with the same configuration, on its own ports.
    let secret_file = support::cluster::repo_root()
        .join("target/test-logs")
        .join(format!("failover-secret-{}", std::process::id()));
    std::fs::write(&secret_file, SECRET).unwrap();
    let secret_file = secret_file.display().to_string();
    let mut second_flags: Vec<&str> = lease.clone();
    second_flags.extend([
        "--leader-election-identity",
        "second",
        "--webhook-listen",
        "127.0.0.1:0",
        "--webhook-secret-file",
        &secret_file,
        "--github-sync-interval-seconds",
        "5",
    ]);
    second_flags.extend(strs(&flags));
    let second = Operator::start(&env.ns, &second_flags);
    let second_port = wait_for("the standby's webhook listener", T, || async {
        second.listener_ports("webhook").first().copied()
    })
    .await;

    // Jobs queued but not served yet when the leader dies.
    env.fake.inject_fault(Fault::always(Some(JIT), 503));
    for _ in 0..2 {
        env.fake.queue_job("acme/app", &["linux"]).unwrap();
    }
    wait_for("the pool's status to show 2 queued jobs", T, || async {
        let status = env.pools().get("ci").await.ok()?.status?;
        (status.queued_jobs == 2).then_some(())
    })
    .await;
    env.operator.kill();
    env.fake.clear_faults();
    // Jobs arriving while no leader answers: their deliveries fail.
    for _ in 0..3 {
        env.fake.queue_job("acme/app", &["linux"]).unwrap();
    }
    let failed = env.fake.wait_for_webhooks(5, T).await;
    assert!(
        failed.iter().rev().take(3).all(|d| d.status != Some(202)),
        "{failed:?}"
    );
    let killed = Instant::now();
    // The Service now routes to the new leader.
    env.fake.set_webhook(Some(fake_github::WebhookConfig {
        url: format!("http://127.0.0.1:{second_port}/webhook"),
        secret: Some(SECRET.into()),
    }));
    wait_for("a runner pod for each of the 5 jobs", T, || async {
        (env.live_pods("ci").await.len() == 5).then_some(())
    })
    .await;
    println!(
        "5 runner pods {:.1} s after the leader was killed (lease 4 s, sync interval 5 s)",
        killed.elapsed().as_secs_f64()
    );
    wait_for("every job to run", T, || async {
        (running(&env) == 5).then_some(())
    })
    .await;
    drop(second);
}

/// A RunnerGroup of organization `acme` admitting only `repository`.
async fn apply_selected_group(env: &Env, name: &str, repository: &str) {
    let yaml = format!(
        r#"
apiVersion: actions.runnerpool.dev/v1alpha1
kind: RunnerGroup
metadata: {{ name: {name}, namespace: {ns} }}
spec:
  github:
    organization: acme
    apiUrl: "{url}"
    credentialsSecret: {{ name: gh }}
  visibility: selected
  selectedRepositories: [{repository}]
"#,
        ns = env.ns,
        url = env.api_url(Base::Root)
    );
    let group: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    kube::Api::<runnerpool::crd::RunnerGroup>::namespaced(env.client.clone(), &env.ns)
        .patch(
            name,
            &kube::api::PatchParams::apply("integration-test").force(),
            &kube::api::Patch::Apply(&group),
        )
        .await
        .unwrap();
}

/// Matching honours runner groups: of two pools with the same labels, a job
/// grows only the one whose group admits the job's repository (a queued
/// delivery does not name a group: GitHub says which runner group ran a job
/// only once it runs). Before, the first pool by name took every job, and a
/// runner its group kept from the job never ran it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_grows_only_a_pool_whose_runner_group_admits_its_repository() {
    let (env, _) = Env::start_with_webhooks("groups", SECRET, "120", &[]).await;
    env.fake.add_repo("acme", "web");
    apply_selected_group(&env, "app-only", "acme/app").await;
    apply_selected_group(&env, "web-only", "acme/web").await;
    for (pool_name, group) in [("a-web", "web-only"), ("b-app", "app-only")] {
        let yaml = autoscaling(
            &pool_yaml(
                pool_name,
                "organization: acme",
                &env.api_url(Base::Root),
                0,
                &["self-hosted", "linux"],
                &format!("  runnerGroupRef: {{ name: {group} }}\n"),
            ),
            0,
            10,
            0,
        );
        env.apply_pool(&yaml).await;
    }
    wait_for_ready(&env, "a-web").await;
    wait_for_ready(&env, "b-app").await;
    let app_job = env.fake.queue_job("acme/app", &["linux"]).unwrap();
    wait_for("the acme/app job to run", T, || async {
        (env.fake.job(app_job)?.status == JobStatus::InProgress).then_some(())
    })
    .await;
    assert_eq!(env.live_pods("b-app").await.len(), 1);
    assert!(
        env.live_pods("a-web").await.is_empty(),
        "the other group's pool did not grow"
    );
    let web_job = env.fake.queue_job("acme/web", &["linux"]).unwrap();
    wait_for("the acme/web job to run", T, || async {
        (env.fake.job(web_job)?.status == JobStatus::InProgress).then_some(())
    })
    .await;
    assert_eq!(env.live_pods("a-web").await.len(), 1);
    assert_eq!(env.live_pods("b-app").await.len(), 1);
}
