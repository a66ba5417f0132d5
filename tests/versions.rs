//! Runner versions end to end: a runner GitHub refuses as deprecated (exit
//! code 7) degrades its pool, names the image to upgrade, and the pool backs
//! off instead of registering runners in a loop.

mod support;

use std::time::Duration;

use support::cluster::{kubectl, wait_for};
use support::operator::{Base, Env, pool_yaml, staying_offline};

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
            let pool = env.pools().get("old").await.ok()?;
            let c = pool
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Degraded" && c.status == "True")?;
            (c.reason == "RunnerVersionDeprecated").then_some(c.message)
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
