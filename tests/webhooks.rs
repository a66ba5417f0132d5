//! `workflow_job` webhooks end to end: the fake GitHub sends signed deliveries
//! to the operator's listener, and pools follow demand. The demand tests run
//! with the default 120 s GitHub sync interval, so whatever they see within
//! seconds came from webhooks, not from listing runners.

mod support;

use std::time::Duration;

use fake_github::signature_256;
use support::cluster::wait_for;
use support::metrics::sample;
use support::operator::{Base, Env, autoscaling, pool_yaml, staying_offline};

const T: Duration = Duration::from_secs(40);
const SECRET: &str = "webhook-test-secret";
const LIST: &str = "GET /orgs/{org}/actions/runners";

async fn start(prefix: &str, sync_interval: &str) -> (Env, String) {
    Env::start_with_webhooks(prefix, SECRET, sync_interval, &[]).await
}

/// An autoscaling pool of organization `acme` (max 10, no scale-down delay).
fn autoscaling_pool(env: &Env, name: &str, labels: &[&str], min: u32, idle: u32) -> String {
    autoscaling(
        &pool_yaml(
            name,
            "organization: acme",
            &env.api_url(Base::Root),
            0,
            labels,
            "",
        ),
        min,
        10,
        idle,
    )
}

async fn queued_jobs_status(env: &Env, pool: &str) -> i32 {
    env.pools()
        .get(pool)
        .await
        .unwrap()
        .status
        .map_or(0, |s| s.queued_jobs)
}

async fn wait_for_ready(env: &Env, pool: &str) {
    env.wait_for_ready(pool, T).await;
}

/// Waits until `n` jobs run; on timeout, shows what each delivery was
/// answered and the end of the operator's log.
async fn wait_for_jobs_running(env: &Env, n: usize) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let jobs = env.fake.jobs();
        let running = jobs
            .iter()
            .filter(|j| j.status == fake_github::JobStatus::InProgress)
            .count();
        if running == n {
            return;
        }
        if std::time::Instant::now() >= deadline {
            panic!("{running} of {n} jobs run after {T:?}; {}", env.story(20));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every delivery so far was taken (202).
fn assert_every_delivery_taken(env: &Env) {
    for d in env.fake.webhook_deliveries() {
        assert_eq!(d.status, Some(202), "{d:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_jobs_scales_a_pool_from_zero_and_back_to_zero() {
    let (env, _) = start("burst", "120").await;
    env.apply_pool(&autoscaling_pool(
        &env,
        "ci",
        &["self-hosted", "linux"],
        0,
        0,
    ))
    .await;
    wait_for_ready(&env, "ci").await;
    assert!(env.live_pods("ci").await.is_empty(), "no demand, no runner");
    let lists = env.calls(LIST);

    let jobs: Vec<u64> = (0..6)
        .map(|_| {
            env.fake
                .queue_job("acme/app", &["self-hosted", "linux"])
                .unwrap()
        })
        .collect();
    // Every job starts on a runner of its own.
    wait_for_jobs_running(&env, jobs.len()).await;
    assert_eq!(env.live_pods("ci").await.len(), jobs.len());
    assert_eq!(env.calls("generate-jitconfig"), jobs.len() as u64);
    wait_for("status to show 6 busy, 0 queued", T, || async {
        let s = env.pools().get("ci").await.ok()?.status?;
        (s.busy_runners == 6 && s.queued_jobs == 0).then_some(())
    })
    .await;

    for job in &jobs {
        env.fake.finish_job(*job).unwrap();
    }
    wait_for("the pool to be back at zero", T, || async {
        env.live_pods("ci").await.is_empty().then_some(())
    })
    .await;
    env.wait_for_a_fresh_pass("ci").await;
    assert!(env.live_pods("ci").await.is_empty(), "and it stays there");
    assert_eq!(
        env.calls("generate-jitconfig"),
        jobs.len() as u64,
        "one JIT config per job, nothing more"
    );
    assert_eq!(env.calls(LIST), lists, "no runner list was needed");
    assert_every_delivery_taken(&env);
    let m = env.metrics().await;
    assert_eq!(
        sample(&m, "runnerpool_queued_to_pod_seconds_count"),
        6.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "runnerpool_webhook_deliveries_total{result=\"accepted\"}"
        ),
        18.0,
        "queued, in_progress and completed for each job"
    );
    env.assert_no_secret_leaked().await;
}

/// A job whose delivery comes before any pool fits it (queued, then the pool
/// applied; or a pool applied just before, which the operator's cache has not
/// seen yet) gets a runner once a pool that fits is there. A job no pool
/// fits (a GitHub-hosted one) gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_before_its_pool_exists_gets_a_runner_once_the_pool_is_applied() {
    let (env, _) = start("early", "120").await;
    let early = env
        .fake
        .queue_job("acme/app", &["self-hosted", "linux"])
        .unwrap();
    env.fake.queue_job("acme/app", &["ubuntu-latest"]).unwrap();
    wait_for("both jobs to be matched to no pool", T, || async {
        let m = env.metrics().await;
        (sample(&m, "runnerpool_webhook_unmatched_jobs_total") == 2.0).then_some(())
    })
    .await;
    assert_every_delivery_taken(&env);

    env.apply_pool(&autoscaling_pool(
        &env,
        "ci",
        &["self-hosted", "linux"],
        0,
        0,
    ))
    .await;
    wait_for_jobs_running(&env, 1).await;
    let job = env.fake.job(early).unwrap();
    assert_eq!(job.status, fake_github::JobStatus::InProgress, "{job:?}");
    env.wait_for_a_fresh_pass("ci").await;
    assert_eq!(
        env.live_pods("ci").await.len(),
        1,
        "one runner, for the job"
    );
    assert_eq!(env.calls("generate-jitconfig"), 1);
    assert_eq!(queued_jobs_status(&env, "ci").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_go_to_exactly_one_of_two_pools_with_overlapping_labels() {
    let (env, _) = start("routing", "120").await;
    env.apply_pool(&staying_offline(&autoscaling_pool(
        &env,
        "general",
        &["linux"],
        0,
        0,
    )))
    .await;
    env.apply_pool(&staying_offline(&autoscaling_pool(
        &env,
        "gpu",
        &["linux", "GPU"],
        0,
        0,
    )))
    .await;
    // A job is routed among the pools the operator knows when it is queued.
    for pool in ["general", "gpu"] {
        wait_for_ready(&env, pool).await;
    }
    for _ in 0..3 {
        env.fake
            .queue_job("acme/app", &["self-hosted", "linux"])
            .unwrap();
    }
    env.fake
        .queue_job("acme/app", &["self-hosted", "linux", "gpu"])
        .unwrap();
    wait_for("3 general and 1 gpu runner", T, || async {
        let general = env.live_pods("general").await.len();
        let gpu = env.live_pods("gpu").await.len();
        (general == 3 && gpu == 1).then_some(())
    })
    .await;
    wait_for("status to show the demand", T, || async {
        let general = queued_jobs_status(&env, "general").await;
        let gpu = queued_jobs_status(&env, "gpu").await;
        (general == 3 && gpu == 1).then_some(())
    })
    .await;
    env.wait_for_a_fresh_pass("general").await;
    env.wait_for_a_fresh_pass("gpu").await;
    assert_eq!(
        env.live_pods("general").await.len(),
        3,
        "no pool got a job twice"
    );
    assert_eq!(env.live_pods("gpu").await.len(), 1);
    assert_eq!(env.calls("generate-jitconfig"), 4);
    let columns = support::cluster::kubectl(&["get", "rp", "-n", &env.ns]);
    let columns = String::from_utf8_lossy(&columns.stdout).into_owned();
    assert!(
        columns.lines().next().unwrap().contains("QUEUED"),
        "{columns}"
    );
    let general_row = columns.lines().find(|l| l.starts_with("general")).unwrap();
    assert!(
        general_row.split_whitespace().any(|c| c == "3"),
        "{columns}"
    );
}

/// GitHub does not redeliver a refused delivery by itself: what arrives while
/// a restarted operator still syncs its caches is held until it can be routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_during_startup_are_held_not_refused() {
    let (mut env, _) = start("startup", "120").await;
    env.apply_pool(&autoscaling_pool(&env, "ci", &["linux"], 0, 0))
        .await;
    wait_for_ready(&env, "ci").await;
    // Queued the moment the new listener is bound: before its caches sync.
    env.restart_operator_with_webhooks(SECRET).await;
    for _ in 0..3 {
        env.fake.queue_job("acme/app", &["linux"]).unwrap();
    }
    wait_for_jobs_running(&env, 3).await;
    assert_every_delivery_taken(&env);
    assert_eq!(env.calls("generate-jitconfig"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_is_known_busy_from_in_progress_before_any_list() {
    let (env, _) = start("busy", "120").await;
    env.apply_pool(&autoscaling_pool(
        &env,
        "ci",
        &["self-hosted", "linux"],
        1,
        0,
    ))
    .await;
    let id = env.wait_for_online_runners("ci", 1, T).await[0];
    let lists = env.calls(LIST);
    let job = env.fake.queue_job("acme/app", &["linux"]).unwrap();
    wait_for("the job to start", T, || async {
        (env.fake.job(job)?.runner_id == Some(id)).then_some(())
    })
    .await;
    wait_for(
        "status to show the runner busy",
        Duration::from_secs(10),
        || async {
            let s = env.pools().get("ci").await.ok()?.status?;
            (s.busy_runners == 1 && s.idle_runners == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        env.calls(LIST),
        lists,
        "learnt from the webhook, not from a list"
    );
    // The runner's pod names the job it runs (issue 23, item 1).
    let pod = wait_for("the job named on its runner's pod", T, || async {
        env.live_pods("ci").await.into_iter().find(|p| {
            p.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("actions.runnerpool.dev/job-started-at"))
        })
    })
    .await;
    let annotations = pod.metadata.annotations.unwrap_or_default();
    let annotation = |key: &str| annotations[&format!("actions.runnerpool.dev/job-{key}")].clone();
    assert_eq!(annotation("repository"), "acme/app");
    assert_eq!(annotation("id"), job.to_string());
    assert_eq!(annotation("workflow"), "CI");
    assert!(
        annotation("url").ends_with(&format!("/job/{job}")),
        "{}",
        annotation("url")
    );
    assert!(annotation("run-id").parse::<u64>().is_ok());
    // The README's command lists it.
    let readme = std::fs::read_to_string(support::cluster::repo_path("README.md")).unwrap();
    let command = readme
        .lines()
        .find(|l| {
            l.starts_with("kubectl get pods -l actions.runnerpool.dev/pool=ci -o custom-columns=")
        })
        .expect("the README's job columns command");
    let columns = command
        .split_once("custom-columns='")
        .and_then(|(_, rest)| rest.strip_suffix('\''))
        .expect("quoted columns");
    let listed = support::cluster::kubectl(&[
        "get",
        "pods",
        "-n",
        &env.ns,
        "-l",
        "actions.runnerpool.dev/pool=ci",
        "-o",
        &format!("custom-columns={columns}"),
    ]);
    let listed = support::cluster::expect_success("kubectl get pods (README)", &listed);
    assert!(
        listed.contains("acme/app") && listed.contains("CI"),
        "{listed}"
    );
    assert_eq!(
        env.live_pods("ci").await.len(),
        1,
        "min 1, busy 1, idle 0: no extra runner"
    );
    env.fake.finish_job(job).unwrap();
    let replaced = env.wait_for_online_runners("ci", 1, T).await[0];
    assert_ne!(
        replaced, id,
        "the finished runner is replaced to keep minRunners"
    );
}

/// Posts `body` as `event`, signed with `secret` when given.
async fn deliver(
    url: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
    signature: Option<String>,
) -> u16 {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery);
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    request
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn queued_payload(job_id: u64, repository: &str, labels: &[&str]) -> Vec<u8> {
    let (owner, name) = repository.split_once('/').unwrap();
    serde_json::to_vec(&serde_json::json!({
        "action": "queued",
        "workflow_job": { "id": job_id, "run_id": 1, "labels": labels, "status": "queued",
                          "runner_id": null, "runner_name": null },
        "repository": { "id": 1, "name": name, "full_name": repository, "owner": { "login": owner } },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_get_the_right_answers_and_count_once() {
    let (env, url) = start("deliveries", "120").await;
    env.apply_pool(&staying_offline(&autoscaling_pool(
        &env,
        "ci",
        &["self-hosted", "linux"],
        0,
        0,
    )))
    .await;
    wait_for_ready(&env, "ci").await;
    let sign = |body: &[u8]| Some(signature_256(SECRET, body));
    let job = queued_payload(900_001, "acme/app", &["linux"]);

    assert_eq!(
        deliver(&url, "workflow_job", "d-1", &job, None).await,
        401,
        "unsigned"
    );
    let forged = Some(signature_256("not-the-secret", &job));
    assert_eq!(
        deliver(&url, "workflow_job", "d-2", &job, forged).await,
        401,
        "badly signed"
    );
    let mut tampered = job.clone();
    tampered.push(b' ');
    assert_eq!(
        deliver(&url, "workflow_job", "d-3", &tampered, sign(&job)).await,
        401,
        "body changed"
    );
    let huge = vec![b' '; (1 << 20) + 1];
    assert_eq!(
        deliver(&url, "workflow_job", "d-4", &huge, sign(&huge)).await,
        413,
        "over 1 MiB"
    );
    let malformed = b"{\"action\":\"queued\",\"workflow_job\":{}}".to_vec();
    assert_eq!(
        deliver(&url, "workflow_job", "d-5", &malformed, sign(&malformed)).await,
        400
    );
    let ping = b"{\"zen\":\"Design for failure.\",\"hook_id\":1}".to_vec();
    assert_eq!(deliver(&url, "ping", "d-6", &ping, sign(&ping)).await, 200);
    assert_eq!(deliver(&url, "push", "d-7", &ping, sign(&ping)).await, 204);

    assert_eq!(
        deliver(&url, "workflow_job", "d-8", &job, sign(&job)).await,
        202
    );
    assert_eq!(
        deliver(&url, "workflow_job", "d-8", &job, sign(&job)).await,
        202,
        "same delivery again"
    );
    assert_eq!(
        deliver(&url, "workflow_job", "d-9", &job, sign(&job)).await,
        202,
        "same job, new delivery"
    );
    wait_for("one runner for the job", T, || async {
        (env.live_pods("ci").await.len() == 1).then_some(())
    })
    .await;

    let stranger = queued_payload(900_002, "acme/app", &["windows"]);
    assert_eq!(
        deliver(&url, "workflow_job", "d-10", &stranger, sign(&stranger)).await,
        202
    );
    let elsewhere = queued_payload(900_003, "other/app", &["linux"]);
    assert_eq!(
        deliver(&url, "workflow_job", "d-11", &elsewhere, sign(&elsewhere)).await,
        202
    );

    // Every delivery was routed (the strangers matched no pool), then a
    // pass over the pool decided on all of them.
    wait_for("the strangers to be routed", T, || async {
        let m = env.metrics().await;
        (sample(&m, "runnerpool_webhook_unmatched_jobs_total") >= 2.0).then_some(())
    })
    .await;
    env.wait_for_a_fresh_pass("ci").await;
    assert_eq!(
        env.live_pods("ci").await.len(),
        1,
        "the duplicates counted once, the strangers not at all"
    );
    assert_eq!(queued_jobs_status(&env, "ci").await, 1);
    let m = env.metrics().await;
    for (result, n) in [
        ("unauthorized", 3.0),
        ("too_large", 1.0),
        ("malformed", 1.0),
        ("ping", 1.0),
        ("ignored", 1.0),
        ("accepted", 3.0),
        ("duplicate", 2.0),
    ] {
        let series = format!("runnerpool_webhook_deliveries_total{{result=\"{result}\"}}");
        assert_eq!(sample(&m, &series), n, "{series}\n{m}");
    }
    assert_eq!(
        sample(&m, "runnerpool_webhook_unmatched_jobs_total"),
        2.0,
        "{m}"
    );
    let queued = format!(
        "runnerpool_queued_jobs{{namespace=\"{}\",pool=\"ci\"}}",
        env.ns
    );
    assert_eq!(sample(&m, &queued), 1.0, "{m}");
    let admin = env.operator.listener_ports("admin")[0];
    let on_admin = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{admin}/webhook"))
        .body(job.clone())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(on_admin, 404, "the admin port does not serve webhooks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_webhooks_lost_a_pool_still_converges_from_the_list() {
    // The default 2 s sync interval of the tests: the list is all there is.
    let (env, _) = start("lost", "2").await;
    env.fake.set_webhook(None);
    env.apply_pool(&autoscaling_pool(
        &env,
        "ci",
        &["self-hosted", "linux"],
        0,
        1,
    ))
    .await;
    let first = env.wait_for_online_runners("ci", 1, T).await[0];
    let job = env.fake.queue_job("acme/app", &["linux"]).unwrap();
    wait_for("the job to start", T, || async {
        (env.fake.job(job)?.runner_id == Some(first)).then_some(())
    })
    .await;
    // Busy from the list: busy 1 + idle 1.
    let ids = env.wait_for_online_runners("ci", 2, T).await;
    assert!(ids.contains(&first));
    env.fake.finish_job(job).unwrap();
    let ids = env.wait_for_online_runners("ci", 1, T).await;
    assert!(!ids.contains(&first));
    let pool = env.pools().get("ci").await.unwrap();
    assert_eq!(pool.status.unwrap().queued_jobs, 0);
    assert!(
        !env.fake
            .webhook_deliveries()
            .iter()
            .any(|d| d.status.is_some()),
        "nothing was delivered"
    );
}

/// The listener without a secret does not start: the operator stops at once
/// and says what to set.
#[test]
fn the_listener_without_a_secret_is_a_clear_startup_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnerpool-operator"))
        .args([
            "run",
            "--webhook-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env_remove("RUNNERPOOL_WEBHOOK_SECRET")
        .env_remove("RUNNERPOOL_WEBHOOK_SECRET_FILE")
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        output.contains("--webhook-listen needs a secret: set --webhook-secret-file or RUNNERPOOL_WEBHOOK_SECRET"),
        "{output}"
    );
}

/// Issue 21, item 7: unauthenticated clients flooding the webhook port with
/// slow, large bodies hold a bounded number of connections, each for a
/// bounded time: the operator's memory stays bounded, stalled clients are
/// cut off, it keeps reconciling, and deliveries are answered afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_slow_clients_on_the_webhook_port_is_bounded() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CLIENTS: usize = 120;
    let (env, url) = start("flood", "120").await;
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches("/webhook")
        .to_string();
    let rss_before = env.operator.rss_kib().expect("the operator runs");
    // Each client sends 900 KiB of a 1 MiB body and then nothing.
    let sent = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(AtomicUsize::new(0));
    for _ in 0..CLIENTS {
        let (address, sent, cut) = (address.clone(), sent.clone(), cut.clone());
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&address).await.ok()?;
            let head = format!(
                "POST /webhook HTTP/1.1\r\nhost: flood\r\ncontent-type: application/json\r\nx-github-event: workflow_job\r\nx-github-delivery: flood\r\nx-hub-signature-256: sha256=00\r\ncontent-length: {}\r\n\r\n",
                1024 * 1024 - 1
            );
            stream.write_all(head.as_bytes()).await.ok()?;
            stream.write_all(&vec![b'x'; 900 * 1024]).await.ok()?;
            sent.fetch_add(1, Ordering::SeqCst);
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            cut.fetch_add(1, Ordering::SeqCst);
            Some(())
        });
    }
    // The operator keeps reconciling meanwhile.
    env.apply_org_pool("ci", 2).await;
    let peak = std::sync::atomic::AtomicU64::new(rss_before);
    wait_for("the first stalled client to be cut off", T, || async {
        peak.fetch_max(env.operator.rss_kib().unwrap_or(0), Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        (cut.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    // The kernel buffers what a client sends, whether or not the operator
    // reads it: the operator's memory is what tells.
    let grown_mib = peak.load(Ordering::SeqCst).saturating_sub(rss_before) / 1024;
    eprintln!(
        "flood: {} of {CLIENTS} clients sent their 900 KiB; the operator grew {grown_mib} MiB at most",
        sent.load(Ordering::SeqCst)
    );
    assert!(
        grown_mib < 64,
        "the flood grew the operator by {grown_mib} MiB"
    );
    env.wait_for_online_runners("ci", 2, T).await;
    // 32 at a time, each for 10 s.
    let rounds = Duration::from_secs(10 * (CLIENTS as u64).div_ceil(32) + 30);
    wait_for("every stalled client to be cut off", rounds, || async {
        (cut.load(Ordering::SeqCst) == CLIENTS).then_some(())
    })
    .await;
    let ping = serde_json::to_vec(&serde_json::json!({ "zen": "flood over" })).unwrap();
    let signature = signature_256(SECRET, &ping);
    assert_eq!(
        deliver(&url, "ping", "after-flood", &ping, Some(signature)).await,
        200,
        "deliveries are answered after the flood"
    );
}
