//! Leader election on the local control plane: the Lease rules of
//! `src/leader.rs` (client-go's), and two operator processes of which only the
//! leader reconciles and reports ready, the other taking over when it dies.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use runnerpool::leader::{Attempt, LeaderElector, LeaseConfig};
use support::cluster::{self, fresh_namespace, wait_for};
use support::operator::{Env, Operator};

fn fast(ns: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
        ..LeaseConfig::new(ns, "election", identity)
    }
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref()?.holder_identity.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_held_renewed_released_and_taken_over_after_expiry() {
    let client = cluster::client().await;
    let ns = fresh_namespace(&client, "lease").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let mut a = LeaderElector::new(client.clone(), fast(&ns, "a"));
    let mut b = LeaderElector::new(client.clone(), fast(&ns, "b"));

    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    assert_eq!(
        b.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy("a".into())
    );
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    let lease = leases.get("election").await.unwrap();
    let spec = lease.spec.clone().unwrap();
    assert_eq!(holder(&lease).as_deref(), Some("a"));
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert_eq!(spec.lease_transitions, Some(0));

    // A released Lease is taken at once.
    a.release().await;
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    let lease = leases.get("election").await.unwrap();
    assert_eq!(holder(&lease).as_deref(), Some("b"));
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));

    // A holder that stops renewing is replaced once the Lease expired, by the
    // candidate's own clock: not before the lease duration.
    assert_eq!(
        a.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy("b".into())
    );
    let since = Instant::now();
    loop {
        if a.try_acquire_or_renew().await.unwrap() == Attempt::Held {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "a never took the expired Lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = since.elapsed();
    assert!(
        waited >= Duration::from_millis(2500),
        "taken after {waited:?}, before the 3 s lease expired"
    );
    assert_eq!(
        holder(&leases.get("election").await.unwrap()).as_deref(),
        Some("a")
    );

    // The leader steps down as soon as it sees someone else's claim.
    let mut lease = leases.get("election").await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    leases
        .replace("election", &PostParams::default(), &lease)
        .await
        .unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(5), a.hold(std::future::pending::<()>()))
        .await
        .expect("hold returns");
    assert!(
        matches!(lost, Err(runnerpool::leader::Error::TakenOver(ref h)) if h == "intruder"),
        "{lost:?}"
    );

    // hold() renews until told to stop.
    let mut c = LeaderElector::new(client.clone(), fast(&ns, "c"));
    let mut lease = leases.get("election").await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = None;
    leases
        .replace("election", &PostParams::default(), &lease)
        .await
        .unwrap();
    assert_eq!(c.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    let before = leases
        .get("election")
        .await
        .unwrap()
        .spec
        .unwrap()
        .renew_time;
    let held = c.hold(tokio::time::sleep(Duration::from_secs(1))).await;
    assert!(held.is_ok(), "{held:?}");
    let after = leases
        .get("election")
        .await
        .unwrap()
        .spec
        .unwrap()
        .renew_time;
    assert_ne!(before, after, "the Lease was renewed while held");
}

/// `/readyz`'s status and body.
async fn readyz(port: u16) -> Option<(u16, String)> {
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
}

/// Whether the replica on `port` acts (leads), by its `/readyz`.
async fn acting(port: u16) -> Option<bool> {
    let (status, body) = readyz(port).await?;
    (status == 200).then(|| body.starts_with("ready, acting"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let mut env = Env::start_with(
        "leader",
        &["--leader-elect", "--leader-election-identity", "first"],
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    wait_for("first to lead", Duration::from_secs(20), || async {
        let lease = leases.get_opt("runnerpool-operator").await.ok()??;
        (holder(&lease)? == "first").then_some(())
    })
    .await;
    let second = Operator::start(
        &env.ns,
        &["--leader-elect", "--leader-election-identity", "second"],
    );
    let ports = wait_for("both admin listeners", Duration::from_secs(20), || async {
        let ports = env.operator.listener_ports("admin");
        (ports.len() == 2).then_some(ports)
    })
    .await;

    env.apply_org_pool("ci", 2).await;
    env.wait_for_online_runners("ci", 2, Duration::from_secs(40))
        .await;
    // Both Ready (a rollout proceeds past a standby); the leader alone acts.
    wait_for(
        "the leader acting, the standby ready",
        Duration::from_secs(20),
        || async {
            let mut s = vec![acting(ports[0]).await?, acting(ports[1]).await?];
            s.sort();
            (s == [false, true]).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.calls("generate-jitconfig"),
        2,
        "one operator registered the runners: {:?}",
        env.calls_by_endpoint()
    );

    // The leader dies without releasing the Lease: the standby takes over
    // once it expired, and reconciles.
    env.operator.kill();
    let victim = env.live_pods("ci").await.remove(0);
    env.pods()
        .delete(&victim.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let took_over = Instant::now();
    wait_for("second to lead", Duration::from_secs(30), || async {
        let lease = leases.get_opt("runnerpool-operator").await.ok()??;
        (holder(&lease)? == "second").then_some(())
    })
    .await;
    assert!(
        took_over.elapsed() >= Duration::from_secs(10),
        "the standby took an unexpired Lease after {:?}",
        took_over.elapsed()
    );
    wait_for(
        "the replacement runner",
        Duration::from_secs(40),
        || async {
            let pods = env.live_pods("ci").await;
            (pods.len() == 2 && pods.iter().all(|p| p.name_any() != victim.name_any()))
                .then_some(())
        },
    )
    .await;
    env.wait_for_online_runners("ci", 2, Duration::from_secs(40))
        .await;
    wait_for(
        "the new leader to be ready",
        Duration::from_secs(20),
        || async {
            for port in &ports {
                if acting(*port).await == Some(true) {
                    return Some(());
                }
            }
            None
        },
    )
    .await;

    // Leave nothing behind: the leader still runs and removes the pool's runners.
    env.pools()
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the pool to be gone", Duration::from_secs(40), || async {
        env.pools()
            .get_opt("ci")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // A leader that sees someone else's claim stops reconciling and exits.
    let mut lease = leases.get("runnerpool-operator").await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    leases
        .replace("runnerpool-operator", &PostParams::default(), &lease)
        .await
        .unwrap();
    wait_for("second to step down", Duration::from_secs(20), || async {
        let logs = env.operator.logs();
        logs.contains("leadership lost: intruder holds the Lease")
            .then_some(())
    })
    .await;
    wait_for("second to exit", Duration::from_secs(20), || async {
        let mut alive = false;
        for port in &ports {
            alive |= readyz(*port).await.is_some();
        }
        (!alive).then_some(())
    })
    .await;
    drop(second);
}

/// Every pod of the namespace ever seen, with the runner id it carried.
fn watch_pod_runner_ids(
    env: &Env,
) -> std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Option<u64>>>> {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let pods = env.pods();
    let record = seen.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(pods, watcher::Config::default()));
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event {
                let id = pod
                    .labels()
                    .get(runnerpool::runner::RUNNER_ID_LABEL)
                    .and_then(|v| v.parse::<u64>().ok());
                record.lock().unwrap().insert(pod.name_any(), id);
            }
        }
    });
    seen
}

/// Sends `signal` (STOP, CONT) to a process.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Client-go's timings scaled down so a takeover happens within seconds.
const QUICK_LEASE: [&str; 6] = [
    "--leader-election-lease-duration-seconds",
    "10",
    "--leader-election-renew-deadline-seconds",
    "6",
    "--leader-election-retry-period-seconds",
    "1",
];

/// The leader is paused (SIGSTOP) while it registers runners, a standby takes
/// over and acts, then the old leader resumes (SIGCONT): it must find out it
/// lost the Lease before it writes anything. Nothing is created twice, no
/// registration is deleted under a pod, and the pool converges to exactly its
/// replicas with runners == pods == Secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_resumed_after_a_takeover_writes_nothing() {
    let mut first_args = vec!["--leader-elect", "--leader-election-identity", "first"];
    first_args.extend(QUICK_LEASE);
    let mut env = Env::start_with("pause", &first_args).await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    let leader = |who: &'static str| {
        let leases = leases.clone();
        move || {
            let leases = leases.clone();
            async move {
                let lease = leases.get_opt("runnerpool-operator").await.ok()??;
                (holder(&lease)? == who).then_some(())
            }
        }
    };
    wait_for("first to lead", Duration::from_secs(20), leader("first")).await;
    let mut second_args = vec!["--leader-elect", "--leader-election-identity", "second"];
    second_args.extend(QUICK_LEASE);
    let second = Operator::start(&env.ns, &second_args);

    env.apply_org_pool("ci", 2).await;
    env.wait_for_online_runners("ci", 2, Duration::from_secs(40))
        .await;
    let pods_seen = watch_pod_runner_ids(&env);

    // Registrations answer slowly (2 s, well within the 5 s reconcile bound
    // a 10 s Lease gives, on a loaded machine too), so the leader is paused with its mints in flight: GitHub creates them while it is stopped, and their answers
    // wait in its sockets for it to resume.
    env.fake.set_endpoint_latency(
        "POST /orgs/{org}/actions/runners/generate-jitconfig",
        Duration::from_secs(2),
    );
    let mints_before = env.calls("generate-jitconfig");
    env.apply_org_pool("ci", 12).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let first_pid = env.operator.pid().expect("first runs");
    signal(first_pid, "STOP");
    let paused = Instant::now();

    wait_for("second to lead", Duration::from_secs(30), leader("second")).await;
    // The standby acts: it registers runners of its own while the old
    // leader's answers wait.
    wait_for(
        "the new leader to mint",
        Duration::from_secs(30),
        || async {
            // The old leader's mints were sent before the pause; any beyond
            // the ten it had in flight are the new leader's.
            (env.calls("generate-jitconfig") > mints_before + 10).then_some(())
        },
    )
    .await;
    let stopped_for = paused.elapsed();
    signal(first_pid, "CONT");

    // Long enough for a resumed leader's writes, and the new leader's
    // answer to them, to show.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let pods_seen = pods_seen.lock().unwrap().clone();
    let runner_pods: std::collections::BTreeSet<u64> =
        pods_seen.values().flatten().copied().collect();
    // Every pod ever created: the 2 before the pause and 10 made by one leader.
    assert_eq!(
        pods_seen.len(),
        12,
        "runner pods created (paused {stopped_for:?}): {pods_seen:?}"
    );
    let deleted_under_a_pod: Vec<_> = env
        .fake
        .request_log()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.endpoint.contains("/actions/runners/{runner_id}"))
        .filter(|r| {
            r.path
                .rsplit('/')
                .next()
                .and_then(|id| id.parse::<u64>().ok())
                .is_some_and(|id| runner_pods.contains(&id))
        })
        .map(|r| r.path)
        .collect();
    assert!(
        deleted_under_a_pod.is_empty(),
        "registrations deleted although a pod was started with them: {deleted_under_a_pod:?}"
    );
    env.wait_for_online_runners("ci", 12, Duration::from_secs(90))
        .await;
    wait_for(
        "runners == pods == Secrets == 12",
        Duration::from_secs(60),
        || async {
            let pods = env.live_pods("ci").await.len();
            let lp = kube::api::ListParams::default()
                .labels(&format!("{}=ci", runnerpool::runner::POOL_LABEL));
            let secrets = env.secrets().list(&lp).await.ok()?.items.len();
            let runners = env.fake.all_runners().len();
            ((pods, secrets, runners) == (12, 12, 12)).then_some(())
        },
    )
    .await;
    // Only the old leader lost the Lease (both replicas log to one file).
    assert!(
        env.operator
            .logs()
            .contains("leadership lost: stopped acting at once"),
        "the old leader did not log that it stopped acting"
    );
    env.operator.kill();
    drop(second);
}

/// A loopback TCP proxy to the API server that can be cut: its connections
/// are dropped, and new ones are accepted but never answered, as when the
/// network to the API server fails.
struct CuttableProxy {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> CuttableProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (is_cut, tasks) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                if is_cut.load(Ordering::SeqCst) {
                    held.push(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                tasks.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        CuttableProxy { port, cut, links }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

/// A leader cut off from the API server stops acting by the renew deadline,
/// by its own clock: its fence closes without any answer, and `hold` returns
/// the loss, before a standby may take the Lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_server_stops_acting_by_the_renew_deadline() {
    let client = cluster::client().await;
    let ns = fresh_namespace(&client, "cutoff").await;
    let mut config = cluster::admin_config().await;
    let upstream = config
        .cluster_url
        .authority()
        .expect("API server address")
        .to_string();
    let proxy = CuttableProxy::start(upstream).await;
    config.cluster_url = format!("https://127.0.0.1:{}", proxy.port).parse().unwrap();
    let cut_off = kube::Client::try_from(config).unwrap();

    let mut a = LeaderElector::new(cut_off, fast(&ns, "a"));
    let fence = a.fence();
    assert!(!fence.may_act(), "no claim before the Lease is held");
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Attempt::Held);
    let held = tokio::spawn(async move { a.hold(std::future::pending::<()>()).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        fence.may_act(),
        "renewals keep the claim past the first deadline"
    );

    proxy.cut();
    let cut = Instant::now();
    wait_for("the fence to close", Duration::from_secs(5), || async {
        (!fence.may_act()).then_some(())
    })
    .await;
    let closed_after = cut.elapsed();
    // Renew deadline 2 s, counted from the last renewal sent before the cut
    // (the margin is for a loaded machine); within the 3 s lease duration.
    assert!(
        closed_after < Duration::from_secs(3),
        "the fence closed {closed_after:?} after the cut"
    );
    let lost = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("hold returns while the API server is unreachable")
        .unwrap();
    assert!(
        matches!(
            lost,
            Err(runnerpool::leader::Error::RenewDeadlineExceeded(_))
        ),
        "{lost:?}"
    );
    assert!(!fence.may_act());

    // A standby with a working connection takes over only after the 3 s
    // lease duration without a renewal, by then the old leader had stopped.
    let mut b = LeaderElector::new(client.clone(), fast(&ns, "b"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.try_acquire_or_renew().await.ok() != Some(Attempt::Held) {
        assert!(Instant::now() < deadline, "b never took the Lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = Instant::now();
    assert!(
        took.duration_since(cut) > closed_after,
        "the standby took over before the old leader stopped acting"
    );
}

/// SIGTERM stays graceful but bounded: a reconcile stuck on a GitHub call
/// that does not answer is given the reconcile bound (half the lease
/// duration) and the process stops, instead of waiting for GitHub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_waits_for_a_stuck_reconcile_only_up_to_its_bound() {
    let mut args = vec!["--leader-elect", "--leader-election-identity", "only"];
    args.extend(QUICK_LEASE);
    let env = Env::start_with("shutdown", &args).await;
    env.apply_org_pool("ci", 1).await;
    env.wait_for_online_runners("ci", 1, Duration::from_secs(40))
        .await;
    // Longer than the operator's 30 s GitHub request timeout.
    env.fake.set_endpoint_latency(
        "POST /orgs/{org}/actions/runners/generate-jitconfig",
        Duration::from_secs(60),
    );
    let mints = env.calls_by_endpoint();
    env.apply_org_pool("ci", 3).await;
    // The new spec is reconciled within milliseconds; its mints then wait
    // on the fake (which logs a request only once it answered).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.calls_by_endpoint(), mints, "no mint has been answered");
    signal(env.operator.pid().expect("running"), "TERM");
    let sent = Instant::now();
    env.wait_for_log("controller stopped", Duration::from_secs(30))
        .await;
    let took = sent.elapsed();
    // A 10 s Lease: reconciles are bounded by 5 s, the shutdown by 7 s.
    assert!(
        took < Duration::from_secs(10),
        "the shutdown took {took:?} waiting for GitHub"
    );
}

/// Issue 21, item 8: SIGTERM finishes the runner creations under way (JIT
/// config → Secret → pod) within the shutdown grace. Mints slower than the
/// reconcile bound outlive the pass that started them; the shutdown comes
/// while they wait on GitHub, when no reconcile is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_finishes_the_runner_creations_under_way() {
    // Reconciles bounded at 2 s, so the shutdown at 4 s; mints of 3 s.
    let env = Env::start_with_slow_mints("shutdown-creations", Duration::from_secs(3)).await;
    env.apply_org_pool("ci", 3).await;
    // A pass cut with its mints under way (on a loaded machine they may
    // start in the next pass instead: under way is what counts).
    env.wait_for_log("reconcile_timeout", Duration::from_secs(30))
        .await;
    wait_for(
        "the mints to be under way",
        Duration::from_secs(30),
        || async { (env.fake.received("generate-jitconfig") >= 3).then_some(()) },
    )
    .await;
    assert_eq!(env.calls("generate-jitconfig"), 0, "no mint answered yet");
    signal(env.operator.pid().expect("running"), "TERM");
    env.wait_for_log("controller stopped", Duration::from_secs(30))
        .await;
    let runners = env.fake.runners(&fake_github::Scope::org("acme"));
    assert_eq!(runners.len(), 3, "every creation under way was minted");
    let pods: std::collections::BTreeSet<String> = env
        .pods()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    let secrets = env.runner_secret_names().await.unwrap_or_default();
    for runner in &runners {
        assert!(
            pods.contains(&runner.name) && secrets.contains(&runner.name),
            "runner {} was registered but left without its pod or Secret",
            runner.name
        );
    }
}
