//! The outbound proxy end to end. The operator runs with `HTTPS_PROXY`,
//! `HTTP_PROXY` and `NO_PROXY`; its pools name GitHub at `127.0.0.2:PORT`,
//! where nothing listens: only the forward proxy on loopback knows that this
//! is the fake. The fake serves plain http, so the calls go through
//! `HTTP_PROXY` as absolute-form requests (the `CONNECT` tunnels that
//! `HTTPS_PROXY` gives https URLs are checked by the unit tests of
//! `src/github/client/proxy.rs`); `HTTPS_PROXY` is set too, and the
//! Kubernetes API (https, reached with a kubeconfig here) must ignore it.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use fake_github::{JobStatus, Scope};
use support::cluster::wait_for;
use support::operator::{Env, Operator, autoscaling, pool_yaml};
use support::proxy::TestProxy;

const T: Duration = Duration::from_secs(60);
/// The proxy's credentials; the password must never show in the operator's log.
const PROXY_CREDENTIALS: &str = "operator:pr0xy-s3cret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_and_actions_service_calls_go_through_the_proxy_and_no_proxy_hosts_go_direct() {
    let mut env = Env::start("proxy").await;
    let fake = env.fake.addr();
    let hidden = format!("127.0.0.2:{}", fake.port());
    let proxy = TestProxy::start(PROXY_CREDENTIALS, &[(hidden.clone(), fake)]).await;
    let url = proxy.url();
    env.operator.restart_with_env(&[
        ("HTTPS_PROXY", &url),
        ("http_proxy", &url),
        ("NO_PROXY", "example.test, localhost"),
    ]);
    let via_proxy = format!("http://{hidden}");
    // A REST-mode pool and a scale-set pool behind the proxy; a pool of
    // another scope at `localhost`, which NO_PROXY lists.
    let rest_pool = |replicas| {
        pool_yaml(
            "rest",
            "organization: acme",
            &via_proxy,
            replicas,
            &["linux"],
            "",
        )
    };
    env.apply_pool(&rest_pool(2)).await;
    env.apply_pool(&autoscaling(
        &pool_yaml(
            "ss",
            "organization: acme",
            &via_proxy,
            0,
            &["linux"],
            "  scaleSet: {}",
        ),
        0,
        5,
        0,
    ))
    .await;
    env.apply_pool(&pool_yaml(
        "direct",
        "repository: acme/app",
        &format!("http://localhost:{}", fake.port()),
        1,
        &["linux"],
        "",
    ))
    .await;
    env.wait_for_ready("rest", T).await;
    env.wait_for_ready("direct", T).await;
    wait_for("a session with the scale set", T, || async {
        (!env.fake.sessions().is_empty()).then_some(())
    })
    .await;
    let job = env.fake.queue_job("acme/app", &["ss"]).unwrap();
    wait_for("the scale set's job to run", T, || async {
        (env.fake.job(job)?.status == JobStatus::InProgress).then_some(())
    })
    .await;
    // Removal goes through the proxy too.
    env.apply_pool(&rest_pool(0)).await;
    wait_for("the REST pool's runners to be deleted", T, || async {
        let carried = proxy.carried();
        let deletes = carried
            .iter()
            .filter(|c| c.method == "DELETE" && c.path.contains("/actions/runners/"))
            .count();
        (deletes >= 2 && env.live_pods("rest").await.is_empty()).then_some(())
    })
    .await;

    let carried = proxy.carried();
    let through = |method: &str, path: &str| {
        carried
            .iter()
            .filter(|c| c.authority == hidden && c.method == method && c.path.contains(path))
            .count()
    };
    assert!(
        through("POST", "/orgs/acme/actions/runners/generate-jitconfig") >= 2,
        "{carried:#?}"
    );
    assert!(
        through("GET", "/orgs/acme/actions/runners") >= 1,
        "{carried:#?}"
    );
    assert!(
        through("POST", "/actions/runner-registration") >= 1,
        "{carried:#?}"
    );
    // The Actions service is at the tenant URL the registration returned (the fake's own address).
    let actions = carried
        .iter()
        .filter(|c| c.authority == fake.to_string() && c.path.contains("/_services/pipelines/"))
        .count();
    assert!(actions >= 2, "session and messages: {carried:#?}");
    let authorities: BTreeSet<&str> = carried.iter().map(|c| c.authority.as_str()).collect();
    assert_eq!(
        authorities,
        BTreeSet::from([hidden.as_str(), fake.to_string().as_str()]),
        "only GitHub and the Actions service: not the NO_PROXY pool, not the Kubernetes API"
    );
    assert_eq!(
        proxy.refused(),
        0,
        "every call carried the proxy's credentials"
    );
    let direct = env.fake.runners(&Scope::repo("acme", "app"));
    assert_eq!(direct.len(), 1, "the NO_PROXY pool registered directly");

    let logs = env.operator.logs();
    assert!(
        logs.contains(&format!("via http://***@{}", proxy.addr)),
        "the proxy in use is logged without its credentials"
    );
    assert!(
        !logs.contains("pr0xy-s3cret"),
        "the proxy's password is never logged"
    );
    env.assert_no_secret_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_proxy_url_stops_the_operator_at_startup() {
    // A namespace name of its own, so the log file is this run's alone.
    let ns = format!("proxy-malformed-{:08x}", rand::random::<u32>());
    let mut operator = Operator::start(&ns, &[]);
    operator.restart_with_env(&[(
        "https_proxy",
        "http://operator:pr0xy-s3cret@proxy corp:3128",
    )]);
    let status = operator
        .exit_status(T)
        .await
        .expect("the operator stops rather than going direct");
    assert!(!status.success());
    let logs = operator.logs();
    assert!(
        logs.contains("https_proxy is not a usable proxy URL"),
        "{logs}"
    );
    assert!(!logs.contains("pr0xy-s3cret"), "{logs}");
}
