//! The operator's `/metrics` against what people see: a pool's gauges agree
//! with the printer columns of `kubectl get rp` as the pool settles, runs
//! jobs and scales back, and the job metrics count each job the fake GitHub
//! ran once, in its pool, by result, with the repository label capped.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fake_github::JobStatus;
use support::cluster::{expect_success, kubectl, wait_for};
use support::metrics::{samples, sum, values};
use support::operator::{Base, Env, autoscaling, pool_yaml};

const T: Duration = Duration::from_secs(40);

/// The printer columns `kubectl get rp` shows for `pool`, by header.
fn printed(env: &Env, pool: &str) -> BTreeMap<String, String> {
    let out = expect_success(
        "kubectl get rp",
        &kubectl(&["get", "rp", pool, "-n", &env.ns]),
    );
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    let row = lines.next().unwrap_or_default();
    // Columns start where a header word does; cells are cut at those offsets.
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|(i, c)| *c != ' ' && (*i == 0 || header.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let end = starts.get(n + 1).copied().unwrap_or(row.len().max(start));
            let cell = |line: &str| {
                line.get(start..end.min(line.len()))
                    .unwrap_or("")
                    .trim()
                    .to_string()
            };
            (cell(header), cell(row))
        })
        .collect()
}

/// The same columns as the pool's gauges tell them.
fn from_metrics(metrics: &str, ns: &str, pool: &str) -> BTreeMap<String, String> {
    let of = |name: &str, extra: &[(&str, &str)]| {
        let mut with = vec![("namespace", ns), ("pool", pool)];
        with.extend_from_slice(extra);
        values(metrics, name, &with).first().copied()
    };
    let count = |name: &str, extra: &[(&str, &str)]| {
        of(name, extra).map_or("<absent>".to_string(), |v| (v as i64).to_string())
    };
    let ready = match of("runnerpool_pool_condition", &[("condition", "Ready")]) {
        Some(1.0) => "True",
        Some(0.0) => "False",
        Some(_) => "<odd>",
        None => "<absent>",
    };
    BTreeMap::from([
        ("DESIRED".into(), count("runnerpool_desired_runners", &[])),
        ("READY".into(), ready.into()),
        (
            "IDLE".into(),
            count("runnerpool_runners", &[("state", "idle")]),
        ),
        (
            "BUSY".into(),
            count("runnerpool_runners", &[("state", "busy")]),
        ),
        ("QUEUED".into(), count("runnerpool_queued_jobs", &[])),
    ])
}

/// Waits until `kubectl get rp` shows `want` for `pool` and the gauges
/// agree with every column they mirror; panics with both otherwise.
async fn wait_until_they_agree(env: &Env, pool: &str, want: &[(&str, &str)]) {
    let deadline = Instant::now() + T;
    loop {
        let shown = printed(env, pool);
        let told = from_metrics(&env.metrics().await, &env.ns, pool);
        let wanted = want
            .iter()
            .all(|(k, v)| shown.get(*k).map(String::as_str) == Some(*v));
        let agreed = told.iter().all(|(k, v)| shown.get(k) == Some(v));
        if wanted && agreed {
            return;
        }
        if Instant::now() > deadline {
            panic!("wanted {want:?}\nkubectl get rp: {shown:?}\n/metrics:       {told:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_gauges_match_kubectl_and_each_job_is_counted_once() {
    let (env, _) = Env::start_with_webhooks(
        "metrics",
        "metrics-secret",
        "120",
        &[
            "--job-metrics-repository-label",
            "--job-metrics-max-repositories",
            "1",
        ],
    )
    .await;
    env.fake.add_repo("acme", "tools");
    let labels = ["self-hosted", "linux"];
    env.apply_pool(&autoscaling(
        &pool_yaml(
            "ci",
            "organization: acme",
            &env.api_url(Base::Root),
            0,
            &labels,
            "",
        ),
        1,
        10,
        1,
    ))
    .await;
    env.wait_for_ready("ci", T).await;
    let settled = [
        ("DESIRED", "1"),
        ("READY", "True"),
        ("IDLE", "1"),
        ("BUSY", "0"),
        ("QUEUED", "0"),
    ];
    wait_until_they_agree(&env, "ci", &settled).await;

    let app = env.fake.queue_job("acme/app", &labels).unwrap();
    let tools = env.fake.queue_job("acme/tools", &labels).unwrap();
    wait_for("both jobs to run", T, || async {
        let running = env
            .fake
            .jobs()
            .iter()
            .filter(|j| j.status == JobStatus::InProgress)
            .count();
        (running == 2).then_some(())
    })
    .await;
    wait_until_they_agree(&env, "ci", &[("BUSY", "2"), ("QUEUED", "0")]).await;

    env.fake.finish_job_with(app, "success").unwrap();
    env.fake.finish_job_with(tools, "failure").unwrap();
    wait_until_they_agree(&env, "ci", &settled).await;

    let pool = [("namespace", env.ns.as_str()), ("pool", "ci")];
    let m = wait_for("both jobs counted", T, || async {
        let m = env.metrics().await;
        (sum(&m, "runnerpool_jobs_completed_total", &pool) >= 2.0).then_some(m)
    })
    .await;
    for name in [
        "runnerpool_job_queue_wait_seconds_count",
        "runnerpool_job_duration_seconds_count",
        "runnerpool_jobs_completed_total",
    ] {
        let series = samples(&m, name);
        assert_eq!(sum(&m, name, &pool), 2.0, "{name}: {series:?}");
        // One repository has its own label value (the cap is 1), the other is `other`.
        let mut repositories: Vec<&str> = series
            .iter()
            .map(|(labels, _)| labels.get("repository").map_or("<none>", String::as_str))
            .collect();
        repositories.sort();
        assert!(
            repositories == ["acme/app", "other"] || repositories == ["acme/tools", "other"],
            "{name}: {series:?}"
        );
    }
    for result in ["success", "failure"] {
        let with = [pool[0], pool[1], ("result", result)];
        assert_eq!(
            sum(&m, "runnerpool_jobs_completed_total", &with),
            1.0,
            "{m}"
        );
    }
    // Every series on the page is one the registry lists (what the chart's
    // dashboard and alerts are checked against).
    let listed = runnerpool::metrics::Metrics::default().series_names();
    for line in m.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        assert!(listed.contains(name), "{name} is not in {listed:?}");
    }
    // GitHub's created_at → started_at: both jobs started within the test.
    let waited = sum(&m, "runnerpool_job_queue_wait_seconds_sum", &pool);
    assert!((0.0..2.0 * T.as_secs_f64()).contains(&waited), "{m}");
}
