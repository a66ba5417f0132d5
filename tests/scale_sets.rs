//! Scale-set mode end to end: the operator registers a runner scale set on
//! the fake's Actions service, holds one message session to it and sizes the
//! pool from the service's statistics. No webhook is configured: whatever
//! the pools do within seconds came from the session (the GitHub sync
//! interval is the default 120 s).

mod support;

use std::time::Duration;

use fake_github::JobStatus;
use support::cluster::wait_for;
use support::metrics::sum;
use support::operator::{Base, Env, autoscaling, pool_yaml, staying_offline};

const T: Duration = Duration::from_secs(40);

/// An autoscaling scale-set pool of organization `acme` named `name`, whose
/// scale set is `name` too (max `max`, no scale-down delay).
fn scale_set_pool(env: &Env, name: &str, min: u32, max: u32, idle: u32) -> String {
    autoscaling(
        &pool_yaml(
            name,
            "organization: acme",
            &env.api_url(Base::Root),
            0,
            &["linux"],
            "  scaleSet: {}",
        ),
        min,
        max,
        idle,
    )
}

fn jobs_in(env: &Env, status: JobStatus) -> usize {
    env.fake
        .jobs()
        .iter()
        .filter(|j| j.status == status)
        .count()
}

async fn wait_for_jobs_running(env: &Env, n: usize) {
    wait_for(&format!("{n} jobs to run"), T, || async {
        (jobs_in(env, JobStatus::InProgress) == n).then_some(())
    })
    .await;
}

async fn wait_for_session(env: &Env) {
    wait_for("a session with the scale set", T, || async {
        (!env.fake.sessions().is_empty()).then_some(())
    })
    .await;
}

async fn wait_for_pods(env: &Env, pool: &str, n: usize) {
    wait_for(&format!("{n} runner pods of {pool}"), T, || async {
        (env.live_pods(pool).await.len() == n).then_some(())
    })
    .await;
}

/// The scale set's id as the pool's status records it.
async fn scale_set_id(env: &Env, pool: &str) -> u64 {
    wait_for("the scale set in status", T, || async {
        let status = env.pools().get(pool).await.ok()?.status?;
        status.scale_set?.id.map(|id| id as u64)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_get_runners_from_the_scale_set_and_the_pool_scales_back() {
    let env = Env::start("ss-flow").await;
    env.apply_pool(&scale_set_pool(&env, "ci", 0, 10, 0)).await;
    let id = scale_set_id(&env, "ci").await;
    let scale_set = env
        .fake
        .scale_set(id)
        .expect("the scale set exists on the service");
    assert_eq!(scale_set.name, "ci");
    wait_for_session(&env).await;
    assert!(env.live_pods("ci").await.is_empty(), "no demand, no runner");

    let jobs: Vec<u64> = (0..5)
        .map(|_| env.fake.queue_job("acme/app", &["ci"]).unwrap())
        .collect();
    wait_for_jobs_running(&env, jobs.len()).await;
    assert_eq!(
        env.live_pods("ci").await.len(),
        jobs.len(),
        "one runner per job"
    );
    assert_eq!(
        env.calls("generatejitconfig"),
        jobs.len() as u64,
        "one JIT config per job, from the scale set"
    );
    assert_eq!(env.calls("generate-jitconfig"), 0, "no REST-mode mint");
    wait_for("status to show 5 assigned jobs", T, || async {
        let s = env.pools().get("ci").await.ok()?.status?;
        let stats = s.scale_set?.statistics?;
        (stats.assigned_jobs == 5 && stats.running_jobs == 5).then_some(())
    })
    .await;

    for (n, job) in jobs.iter().enumerate() {
        let conclusion = if n < 3 { "success" } else { "failure" };
        env.fake.finish_job_with(*job, conclusion).unwrap();
    }
    wait_for_pods(&env, "ci", 0).await;
    env.wait_for_a_fresh_pass("ci").await;
    assert!(env.live_pods("ci").await.is_empty(), "and it stays there");
    let pool = [("namespace", env.ns.as_str()), ("pool", "ci")];
    let m = wait_for("the 5 jobs counted", T, || async {
        let m = env.metrics().await;
        (sum(&m, "runnerpool_jobs_completed_total", &pool) >= 5.0).then_some(m)
    })
    .await;
    assert!(
        m.contains("runnerpool_scale_set_session_up{namespace=")
            && m.contains("runnerpool_scale_set_jobs{"),
        "{m}"
    );
    // Each job once, from the JobStarted and JobCompleted messages.
    for (name, n) in [
        ("runnerpool_job_queue_wait_seconds_count", 5.0),
        ("runnerpool_job_duration_seconds_count", 5.0),
    ] {
        assert_eq!(sum(&m, name, &pool), n, "{name}\n{m}");
    }
    for (result, n) in [("success", 3.0), ("failure", 2.0)] {
        let with = [pool[0], pool[1], ("result", result)];
        assert_eq!(sum(&m, "runnerpool_jobs_completed_total", &with), n, "{m}");
    }
    env.assert_no_secret_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_mode_jobs_are_acquired_and_run() {
    let env = Env::start("ss-acquire").await;
    env.fake.set_acquire_mode(true);
    env.apply_pool(&scale_set_pool(&env, "ghes", 0, 10, 0))
        .await;
    wait_for_session(&env).await;
    let jobs: Vec<u64> = (0..3)
        .map(|_| env.fake.queue_job("acme/app", &["ghes"]).unwrap())
        .collect();
    wait_for_jobs_running(&env, jobs.len()).await;
    assert!(env.calls("acquirejobs") >= 1, "offered jobs were acquired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runners_bounds_the_pool_and_idle_runners_are_kept() {
    let env = Env::start("ss-bounds").await;
    env.apply_pool(&staying_offline(&scale_set_pool(&env, "small", 0, 3, 0)))
        .await;
    wait_for_session(&env).await;
    for _ in 0..8 {
        env.fake.queue_job("acme/app", &["small"]).unwrap();
    }
    wait_for("8 jobs assigned in status", T, || async {
        let s = env.pools().get("small").await.ok()?.status?;
        (s.scale_set?.statistics?.assigned_jobs == 8).then_some(())
    })
    .await;
    wait_for_pods(&env, "small", 3).await;
    env.wait_for_a_fresh_pass("small").await;
    assert_eq!(env.live_pods("small").await.len(), 3, "maxRunners holds");

    env.apply_pool(&scale_set_pool(&env, "warm", 0, 5, 2)).await;
    wait_for_pods(&env, "warm", 2).await;
    env.wait_for_a_fresh_pass("warm").await;
    assert_eq!(
        env.live_pods("warm").await.len(),
        2,
        "idleRunners kept, no more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_queue_token_is_refreshed() {
    let env = Env::start("ss-token").await;
    env.apply_pool(&scale_set_pool(&env, "ci", 0, 10, 0)).await;
    wait_for_session(&env).await;
    let sessions = env.fake.sessions();
    env.fake.expire_queue_tokens();
    let job = env.fake.queue_job("acme/app", &["ci"]).unwrap();
    wait_for_jobs_running(&env, 1).await;
    assert!(env.calls("PATCH") >= 1, "the session was refreshed");
    assert_eq!(
        env.fake.sessions().len(),
        sessions.len(),
        "the same session, refreshed, not a second one"
    );
    env.fake.finish_job(job).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_operator_does_not_wait_out_its_session() {
    let mut env = Env::start("ss-kill").await;
    // Far longer than the test: only closing the old session opens a new one.
    env.fake.set_session_timeout(Duration::from_secs(600));
    env.apply_pool(&scale_set_pool(&env, "ci", 0, 10, 0)).await;
    wait_for_session(&env).await;
    let before = env.fake.sessions();
    assert_eq!(before.len(), 1);
    wait_for("the session recorded in status", T, || async {
        let s = env.pools().get("ci").await.ok()?.status?;
        (s.scale_set?.session_id? == before[0].session_id).then_some(())
    })
    .await;

    env.operator.kill();
    let job = env.fake.queue_job("acme/app", &["ci"]).unwrap();
    let restarted = std::time::Instant::now();
    env.operator.restart();
    wait_for(
        "a runner for the job queued while the operator was down",
        T,
        || async { (env.fake.job(job)?.status == JobStatus::InProgress).then_some(()) },
    )
    .await;
    let took = restarted.elapsed();
    let after = env.fake.sessions();
    assert_eq!(after.len(), 1, "one session: {after:?}");
    assert_ne!(after[0].session_id, before[0].session_id, "a new session");
    assert!(
        took < Duration::from_secs(30),
        "served {took:?} after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_runner_survives_pool_deletion_then_scale_set_and_session_go() {
    let env = Env::start("ss-delete").await;
    env.apply_pool(&scale_set_pool(&env, "ci", 0, 10, 1)).await;
    let id = scale_set_id(&env, "ci").await;
    wait_for_session(&env).await;
    let job = env.fake.queue_job("acme/app", &["ci"]).unwrap();
    wait_for_jobs_running(&env, 1).await;
    let runner = env
        .fake
        .job(job)
        .unwrap()
        .runner_id
        .expect("a runner took it");

    env.pools()
        .delete("ci", &kube::api::DeleteParams::foreground())
        .await
        .unwrap();
    wait_for("the idle runner to go", T, || async {
        (env.live_pods("ci").await.len() == 1).then_some(())
    })
    .await;
    wait_for("the pool to say it waits for the job", T, || async {
        (!env.events_about("ci", "WaitingForJobs").is_empty()).then_some(())
    })
    .await;
    assert!(env.fake.runner(runner).is_some(), "the busy runner is kept");
    assert_eq!(env.live_pods("ci").await.len(), 1, "and its pod");

    env.fake.finish_job(job).unwrap();
    env.wait_for_pool_gone("ci", T).await;
    assert!(env.fake.scale_set(id).is_none(), "the scale set is deleted");
    assert!(env.fake.sessions().is_empty(), "and its session");
    assert!(
        env.fake
            .runners(&fake_github::Scope::org("acme"))
            .is_empty(),
        "no registration left"
    );
}

/// Client-go's timings scaled down so a takeover happens within seconds.
const QUICK_LEASE: [&str; 6] = [
    "--leader-election-lease-duration-seconds",
    "6",
    "--leader-election-renew-deadline-seconds",
    "4",
    "--leader-election-retry-period-seconds",
    "1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_alone_holds_the_session_and_a_successor_takes_it_over() {
    let first = [
        &["--leader-elect", "--leader-election-identity", "first"][..],
        &QUICK_LEASE,
    ]
    .concat();
    let mut env = Env::start_with("ss-failover", &first).await;
    env.fake.set_session_timeout(Duration::from_secs(600));
    env.apply_pool(&scale_set_pool(&env, "ci", 0, 10, 0)).await;
    wait_for_session(&env).await;
    let second = [
        &["--leader-elect", "--leader-election-identity", "second"][..],
        &QUICK_LEASE,
    ]
    .concat();
    let _second = support::operator::Operator::start(&env.ns, &second);
    wait_for("both replicas up", T, || async {
        (env.operator.listener_ports("admin").len() == 2).then_some(())
    })
    .await;
    let job = env.fake.queue_job("acme/app", &["ci"]).unwrap();
    wait_for_jobs_running(&env, 1).await;
    let sessions = env.fake.sessions();
    assert_eq!(
        sessions.len(),
        1,
        "the standby holds no session: {sessions:?}"
    );
    assert_eq!(sessions[0].owner_name, "first");

    // The leader dies without closing anything; jobs arrive meanwhile.
    env.operator.kill();
    let during: Vec<u64> = (0..3)
        .map(|_| env.fake.queue_job("acme/app", &["ci"]).unwrap())
        .collect();
    wait_for("the successor's session", T, || async {
        let s = env.fake.sessions();
        (s.len() == 1 && s[0].owner_name == "second").then_some(())
    })
    .await;
    let after: Vec<u64> = (0..2)
        .map(|_| env.fake.queue_job("acme/app", &["ci"]).unwrap())
        .collect();
    wait_for("every job to run", T, || async {
        during
            .iter()
            .chain(&after)
            .chain([&job])
            .all(|j| {
                env.fake
                    .job(*j)
                    .is_some_and(|j| j.status == JobStatus::InProgress)
            })
            .then_some(())
    })
    .await;
    assert_eq!(
        env.live_pods("ci").await.len(),
        6,
        "one runner per job, none twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghes_with_app_credentials_and_a_named_group() {
    let env = Env::start("ss-ghes").await;
    env.fake.set_acquire_mode(true);
    support::operator::app_credentials(&env, "app", 4343, 78).await;
    let group = env
        .fake
        .create_group(&fake_github::Scope::org("acme"), "builders")
        .unwrap();
    let yaml = autoscaling(
        &pool_yaml(
            "ghes",
            "organization: acme",
            &env.api_url(Base::Ghes),
            0,
            &["linux"],
            "  scaleSet: { name: ghes-builders }\n  runnerGroup: builders",
        ),
        0,
        5,
        0,
    )
    .replace("name: gh\n", "name: app\n");
    env.apply_pool(&yaml).await;
    let id = scale_set_id(&env, "ghes").await;
    let scale_set = env.fake.scale_set(id).unwrap();
    assert_eq!(scale_set.name, "ghes-builders");
    assert_eq!(scale_set.runner_group_id, group.id);
    wait_for_session(&env).await;
    let job = env.fake.queue_job("acme/app", &["ghes-builders"]).unwrap();
    wait_for_jobs_running(&env, 1).await;
    let runner = env.fake.job(job).unwrap().runner_id.unwrap();
    assert_eq!(env.fake.runner(runner).unwrap().runner_group_id, group.id);
    assert!(
        env.calls("access_tokens") >= 1,
        "an installation token was minted"
    );
    assert!(!env.operator.logs().contains("PRIVATE KEY"));
    env.assert_no_secret_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_and_enterprise_scale_sets() {
    let env = Env::start("ss-scopes").await;
    for (name, scope) in [
        ("repo-set", "repository: acme/app"),
        ("ent-set", "enterprise: bigcorp"),
    ] {
        env.apply_pool(&autoscaling(
            &pool_yaml(
                name,
                scope,
                &env.api_url(Base::Root),
                0,
                &["linux"],
                "  scaleSet: {}",
            ),
            0,
            5,
            0,
        ))
        .await;
        scale_set_id(&env, name).await;
    }
    wait_for("two sessions", T, || async {
        (env.fake.sessions().len() == 2).then_some(())
    })
    .await;
    env.fake.queue_job("acme/app", &["repo-set"]).unwrap();
    env.fake.queue_job("acme/app", &["ent-set"]).unwrap();
    wait_for_jobs_running(&env, 2).await;
    assert_eq!(env.live_pods("repo-set").await.len(), 1);
    assert_eq!(env.live_pods("ent-set").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_service_lost_is_opened_again() {
    let env = Env::start("ss-lost").await;
    env.apply_pool(&scale_set_pool(&env, "ci", 0, 10, 0)).await;
    wait_for_session(&env).await;
    let first = env.fake.sessions()[0].session_id.clone();
    env.fake.drop_sessions();
    env.fake.queue_job("acme/app", &["ci"]).unwrap();
    wait_for_jobs_running(&env, 1).await;
    let now = env.fake.sessions();
    assert_eq!(now.len(), 1);
    assert_ne!(now[0].session_id, first, "a new session");
    wait_for("the lost session to be announced", T, || async {
        (!env.events_about("ci", "ScaleSetSessionLost").is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_and_server_errors_leak_nothing() {
    let env = Env::start("ss-faults").await;
    env.apply_pool(&scale_set_pool(&env, "ci", 0, 10, 0)).await;
    wait_for_session(&env).await;
    // Two mints register their runner and answer 502; two more fail outright.
    env.fake.inject_fault(fake_github::Fault::lost_answers(
        Some("POST /_apis/runtime/runnerscalesets/{id}/generatejitconfig"),
        502,
        2,
    ));
    env.fake.inject_fault(fake_github::Fault::times(
        Some("POST /_apis/runtime/runnerscalesets/{id}/generatejitconfig"),
        503,
        2,
    ));
    let jobs: Vec<u64> = (0..4)
        .map(|_| env.fake.queue_job("acme/app", &["ci"]).unwrap())
        .collect();
    wait_for_jobs_running(&env, jobs.len()).await;
    let mints = env
        .fake
        .received("POST /_apis/runtime/runnerscalesets/{id}/generatejitconfig");
    assert!(mints >= 8, "the faults were hit: {mints} mints");
    for job in &jobs {
        env.fake.finish_job(*job).unwrap();
    }
    // The lost answers left registrations no pod uses: the pool's list
    // collects them (they carry its ownership label and never come online).
    wait_for(
        "registrations == pods == Secrets == 0",
        Duration::from_secs(60),
        || async {
            let registrations = env.fake.runners(&fake_github::Scope::org("acme")).len();
            let pods = env.live_pods("ci").await.len();
            let secrets = env.runner_secret_names().await?.len();
            (registrations == 0 && pods == 0 && secrets == 0).then_some(())
        },
    )
    .await;
}

/// What a scale set fixes at creation cannot change on a live pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mode_name_and_labels_of_a_scale_set_pool_cannot_change() {
    let env = Env::start("ss-immutable").await;
    let pool = |extra: &str, labels: &[&str]| {
        autoscaling(
            &pool_yaml(
                "ci",
                "organization: acme",
                &env.api_url(Base::Root),
                0,
                labels,
                extra,
            ),
            0,
            5,
            0,
        )
    };
    env.apply_pool(&pool("  scaleSet: {}", &["linux"])).await;
    // Removing it (a merge patch: an apply by another field manager would
    // leave the field of the first).
    let out = support::cluster::kubectl(&[
        "patch",
        "runnerpool",
        "ci",
        "-n",
        &env.ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"scaleSet":null}}"#,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "scaleSet was removed");
    assert!(
        stderr.contains("scaleSet cannot be added to or removed from a live pool"),
        "{stderr}"
    );
    let cases = [
        (
            pool("  scaleSet: { name: other }", &["linux"]),
            "scaleSet.name cannot change on a live pool",
        ),
        (
            pool("  scaleSet: {}", &["linux", "gpu"]),
            "labels cannot change on a scale-set pool",
        ),
    ];
    for (yaml, expected) in cases {
        let stderr = env.apply_refused(&yaml);
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
    // Bounds may change.
    env.apply_pool(&autoscaling(
        &pool_yaml(
            "ci",
            "organization: acme",
            &env.api_url(Base::Root),
            0,
            &["linux"],
            "  scaleSet: {}",
        ),
        0,
        8,
        1,
    ))
    .await;
    // And a webhook pool cannot become a scale set.
    env.apply_pool(&pool("", &["linux"]).replace("name: ci\n", "name: plain\n"))
        .await;
    let stderr = env
        .apply_refused(&pool("  scaleSet: {}", &["linux"]).replace("name: ci\n", "name: plain\n"));
    assert!(
        stderr.contains("scaleSet cannot be added to or removed from a live pool"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_closes_its_session() {
    let mut env = Env::start("ss-shutdown").await;
    env.apply_pool(&scale_set_pool(&env, "ci", 0, 10, 0)).await;
    wait_for_session(&env).await;
    let pid = env.operator.pid().expect("the operator runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    wait_for("the session to be closed", T, || async {
        env.fake.sessions().is_empty().then_some(())
    })
    .await;
    env.operator.kill();
}
