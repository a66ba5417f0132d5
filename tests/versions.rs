//! Runner versions end to end: a runner GitHub refuses as deprecated (exit
//! code 7) degrades its pool, names the image to upgrade, and the pool backs
//! off instead of registering runners in a loop; the newest release GitHub
//! serves (read once per scope and interval) shows in every pool's status,
//! and an outdated image is flagged until it is upgraded.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use runnerpool::RunnerPool;
use runnerpool::crd::RunnerVersionStatus;
use support::cluster::{kubectl, wait_for};
use support::operator::{Base, Env, pool_yaml, staying_offline};

const DOWNLOADS: &str = "GET /orgs/{org}/actions/runners/downloads";
const T: Duration = Duration::from_secs(60);

/// A pool of organization `acme` with `replicas` runners from `image`, plus `extra` spec lines.
fn versioned_pool(env: &Env, name: &str, replicas: u32, image: &str, extra: &str) -> String {
    pool_yaml(
        name,
        "organization: acme",
        &env.api_url(Base::Root),
        replicas,
        &["linux"],
        extra,
    )
    .replace("ghcr.io/actions/actions-runner:latest", image)
}

fn condition(pool: &RunnerPool, type_: &str) -> Option<Condition> {
    pool.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// Waits until pool `name`'s status shows `check` true; returns the pool.
async fn wait_for_pool(
    env: &Env,
    name: &str,
    what: &str,
    check: impl Fn(&RunnerPool) -> bool,
) -> RunnerPool {
    wait_for(&format!("pool {name}: {what}"), T, || async {
        let pool = env.pools().get(name).await.ok()?;
        check(&pool).then_some(pool)
    })
    .await
}

fn outdated_is(pool: &RunnerPool, status: &str) -> bool {
    condition(pool, "RunnerVersionOutdated").is_some_and(|c| c.status == status)
}

fn version_status(pool: &RunnerPool) -> RunnerVersionStatus {
    pool.status
        .as_ref()
        .and_then(|s| s.runner_version.clone())
        .unwrap_or_default()
}

/// The line of the `runnerpool_runner_version_outdated` gauge for a pool.
fn outdated_metric(metrics: &str, ns: &str, pool: &str) -> Option<String> {
    let series =
        format!("runnerpool_runner_version_outdated{{namespace=\"{ns}\",pool=\"{pool}\"}}");
    metrics
        .lines()
        .find(|l| l.starts_with(&series))
        .map(|l| l[series.len()..].trim().to_string())
}

/// Downloads reads the fake logged, as milliseconds since the epoch.
fn downloads_reads(env: &Env) -> Vec<u64> {
    env.fake
        .request_log()
        .iter()
        .filter(|r| r.endpoint == DOWNLOADS)
        .map(|r| r.at_ms)
        .collect()
}

/// An image older than the newest release is flagged (condition True naming
/// both versions and the latest date jobs stop, a Warning event once, the
/// gauge at 1) without making the pool not Ready; upgrading the image clears
/// it. An image whose tag tells no version is compared through
/// spec.runnerVersion, and without one the condition is Unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outdated_image_is_flagged_until_it_is_upgraded() {
    let mut env = Env::start("outdated").await;
    let old = "ghcr.io/actions/actions-runner:2.329.0";
    env.apply_pool(&versioned_pool(&env, "old", 1, old, ""))
        .await;
    let custom = "registry.example.com/ci/runner:tools";
    env.apply_pool(&versioned_pool(
        &env,
        "pinned",
        0,
        custom,
        "  runnerVersion: \"2.328.0\"",
    ))
    .await;
    env.apply_pool(&versioned_pool(&env, "untagged", 0, custom, ""))
        .await;

    let pool = wait_for_pool(&env, "old", "outdated and Ready", |p| {
        outdated_is(p, "True") && condition(p, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    let flagged = condition(&pool, "RunnerVersionOutdated").unwrap();
    assert_eq!(flagged.reason, "NewerReleaseAvailable");
    for part in [
        "2.329.0",
        "older than 2.330.0",
        "at the latest",
        "first saw 2.330.0 on",
    ] {
        assert!(
            flagged.message.contains(part),
            "{part:?} not in {:?}",
            flagged.message
        );
    }
    let version = version_status(&pool);
    assert_eq!(
        (
            version.latest.as_deref(),
            version.image.as_deref(),
            version.outdated
        ),
        (Some("2.330.0"), Some("2.329.0"), Some(true))
    );
    assert!(version.latest_first_seen.is_some());
    // A warning only: the pool is not Degraded for it.
    assert_eq!(condition(&pool, "Degraded").unwrap().status, "False");

    let pinned = wait_for_pool(&env, "pinned", "outdated", |p| outdated_is(p, "True")).await;
    assert_eq!(version_status(&pinned).image.as_deref(), Some("2.328.0"));
    let message = condition(&pinned, "RunnerVersionOutdated").unwrap().message;
    assert!(message.contains("from spec.runnerVersion"), "{message}");
    let untagged = wait_for_pool(&env, "untagged", "version unknown", |p| {
        outdated_is(p, "Unknown")
    })
    .await;
    assert_eq!(
        condition(&untagged, "RunnerVersionOutdated")
            .unwrap()
            .reason,
        "VersionUnknown"
    );
    let version = version_status(&untagged);
    assert_eq!(
        (version.latest.as_deref(), version.image, version.outdated),
        (Some("2.330.0"), None, None)
    );

    let metrics = env.metrics().await;
    assert_eq!(
        outdated_metric(&metrics, &env.ns, "old").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(
        outdated_metric(&metrics, &env.ns, "pinned").as_deref(),
        Some("1")
    );
    assert_eq!(
        outdated_metric(&metrics, &env.ns, "untagged"),
        None,
        "no series while unknown"
    );

    // Several passes later (sync interval 2 s): one Warning event, and the
    // status of a pool whose state does not change is not rewritten.
    let resource_version = || async {
        let pool = env.pools().get("pinned").await.unwrap();
        pool.metadata.resource_version
    };
    let before = resource_version().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = resource_version().await;
    assert_eq!(
        before, after,
        "the status of an unchanged pool was rewritten"
    );
    let events = env.events_about("old", "RunnerVersionOutdated");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, 1, "{events:?}");
    assert!(events[0].1.contains("older than 2.330.0"), "{events:?}");

    // The upgrade clears it.
    env.apply_pool(&versioned_pool(
        &env,
        "old",
        1,
        "ghcr.io/actions/actions-runner:2.330.0",
        "",
    ))
    .await;
    let pool = wait_for_pool(&env, "old", "up to date", |p| outdated_is(p, "False")).await;
    assert_eq!(
        condition(&pool, "RunnerVersionOutdated").unwrap().reason,
        "UpToDate"
    );
    assert_eq!(version_status(&pool).outdated, Some(false));
    let metrics = env.metrics().await;
    assert_eq!(
        outdated_metric(&metrics, &env.ns, "old").as_deref(),
        Some("0")
    );
    // With the default interval (an hour) all of this took one downloads read.
    assert_eq!(downloads_reads(&env).len(), 1);

    // A restarted operator reads the release again, keeps the first-seen
    // date (from status, so the deadline does not move) and does not
    // announce an outdated pool a second time.
    let pinned = env.pools().get("pinned").await.unwrap();
    let first_seen = version_status(&pinned).latest_first_seen;
    assert!(first_seen.is_some());
    env.operator.restart();
    wait_for("the restarted operator's downloads read", T, || async {
        (downloads_reads(&env).len() == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let pinned = env.pools().get("pinned").await.unwrap();
    assert!(outdated_is(&pinned, "True"));
    assert_eq!(version_status(&pinned).latest_first_seen, first_seen);
    let events = env.events_about("pinned", "RunnerVersionOutdated");
    assert_eq!(events.len(), 1, "{events:?}");
}

/// Ten pools of one scope share one downloads read per interval: reads are
/// at least the interval apart, and a new release reaches every pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pools_of_one_scope_read_the_downloads_once_per_interval() {
    let interval = 6;
    let env = Env::start_with(
        "downloads",
        &["--runner-version-refresh-seconds", &interval.to_string()],
    )
    .await;
    let pools: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    for name in &pools {
        env.apply_pool(&versioned_pool(
            &env,
            name,
            0,
            "ghcr.io/actions/actions-runner:2.330.0",
            "",
        ))
        .await;
    }
    let started = Instant::now();
    for name in &pools {
        wait_for_pool(&env, name, "up to date", |p| outdated_is(p, "False")).await;
    }
    env.fake.set_runner_version("2.331.0").unwrap();
    for name in &pools {
        let pool = wait_for_pool(&env, name, "the new release", |p| {
            version_status(p).latest.as_deref() == Some("2.331.0")
        })
        .await;
        assert!(outdated_is(&pool, "True"), "{name}");
    }
    // Let every pool come back a few more times (sync interval 2 s).
    tokio::time::sleep(Duration::from_secs(14)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let reads = downloads_reads(&env);
    let gaps: Vec<u64> = reads.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "{} downloads reads in {elapsed:.0} s for 10 pools, {gaps:?} ms apart",
        reads.len()
    );
    assert!(
        reads.len() >= 2,
        "the release was read again after the interval"
    );
    assert!(
        gaps.iter().all(|g| *g >= interval * 1000 - 500),
        "reads closer than the {interval} s interval: {gaps:?}"
    );
    assert!(
        reads.len() as f64 <= elapsed / interval as f64 + 1.0,
        "{} reads in {elapsed:.0} s",
        reads.len()
    );
}

/// spec.runnerVersion is a plain release: the API server refuses anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_runner_version_is_refused_by_the_api_server() {
    support::operator::install_crd();
    let client = support::cluster::client().await;
    let ns = support::cluster::fresh_namespace(&client, "runner-version").await;
    let apply = |version: &str| {
        let yaml = pool_yaml(
            "v",
            "organization: acme",
            "https://api.github.com",
            0,
            &["linux"],
            &format!("  runnerVersion: \"{version}\""),
        );
        let path = std::env::temp_dir().join(format!("{ns}-{}.yaml", rand::random::<u32>()));
        std::fs::write(&path, yaml).unwrap();
        let out = kubectl(&[
            "apply",
            "--dry-run=server",
            "-n",
            &ns,
            "-f",
            path.to_str().unwrap(),
        ]);
        let _ = std::fs::remove_file(&path);
        out
    };
    for bad in [
        "v2.330.0",
        "2.330",
        "latest",
        "2.330.0-beta",
        "2.330.0.1",
        "2..0",
    ] {
        let out = apply(bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(
            stderr.contains(
                "runnerVersion must be a runner release as major.minor.patch, such as 2.330.0"
            ),
            "{bad}: {stderr}"
        );
    }
    assert!(apply("2.330.0").status.success());
    let _ = kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[tokio::test]
async fn a_runner_exiting_7_degrades_the_pool_with_a_bounded_number_of_mints() {
    let env = Env::start("deprecated").await;
    let image = "ghcr.io/actions/actions-runner:2.300.0";
    let yaml = staying_offline(&pool_yaml(
        "old",
        "organization: acme",
        &env.api_url(Base::Root),
        2,
        &["linux"],
        "",
    ))
    .replace("ghcr.io/actions/actions-runner:latest", image)
    .replace(
        "    metadata:\n      annotations: {",
        "    metadata:\n      annotations: { kwok.runnerpool.dev/complete: deprecated, ",
    );
    assert!(yaml.contains("complete: deprecated"), "{yaml}");
    env.apply_pool(&yaml).await;
    let started = std::time::Instant::now();
    let message = wait_for(
        "Degraded RunnerVersionDeprecated",
        Duration::from_secs(40),
        || async {
            let (reason, message) = env.true_condition("old", "Degraded").await?;
            (reason == "RunnerVersionDeprecated").then_some(message)
        },
    )
    .await;
    assert!(message.contains(image), "{message}");
    // A Warning event names the image to upgrade.
    let events = wait_for("the Warning event", Duration::from_secs(20), || async {
        let out = kubectl(&["get", "events", "-n", &env.ns, "-o", "yaml"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains("RunnerVersionDeprecated") && text.contains(image)).then_some(text)
    })
    .await;
    assert!(events.contains("Warning"));

    // Keep failing for a while: the exponential backoff bounds the mints
    // (1 s, 2 s, 4 s, 8 s ... after each failure, two runners at a time).
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(started.elapsed())).await;
    let elapsed = started.elapsed().as_secs();
    let mints = env.calls("POST /orgs/{org}/actions/runners/generate-jitconfig");
    println!("{mints} JIT configs minted in {elapsed} s");
    assert!(mints >= 2, "{mints}");
    assert!(
        mints <= 12,
        "{mints} JIT configs in {elapsed} s: the pool does not back off"
    );
}
