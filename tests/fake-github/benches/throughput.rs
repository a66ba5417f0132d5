//! Requests per second the fake serves on loopback, with concurrent
//! keep-alive clients in the same process (so client and fake share the
//! machine's cores, as in the operator's benchmarks).
//!
//!     cargo bench -p fake-github --bench throughput -- --bench [--seconds 5] [--clients 32]
//!
//! Without `--bench` (e.g. under `cargo test --all-targets`) it exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fake_github::{Config, FakeGitHub};

const TOKEN: &str = "ghp_benchmark000000000000000000000000000";

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy)]
enum Kind {
    List { per_page: usize },
    ListNotModified,
    GenerateJit,
}

async fn run(fake: &FakeGitHub, kind: Kind, clients: usize, seconds: f64) -> (f64, u64) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let base = fake.base_url();
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    // The ETag of the list, for conditional requests.
    let etag = client
        .get(format!("{base}/orgs/acme/actions/runners?per_page=100"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = vec![];
    for _ in 0..clients {
        let (client, base, ok, bad, counter, etag) = (
            client.clone(),
            base.clone(),
            ok.clone(),
            bad.clone(),
            counter.clone(),
            etag.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let resp = match kind {
                    Kind::List { per_page } => {
                        client
                            .get(format!(
                                "{base}/orgs/acme/actions/runners?per_page={per_page}"
                            ))
                            .bearer_auth(TOKEN)
                            .send()
                            .await
                    }
                    Kind::ListNotModified => {
                        client
                            .get(format!("{base}/orgs/acme/actions/runners?per_page=100"))
                            .bearer_auth(TOKEN)
                            .header("if-none-match", &etag)
                            .send()
                            .await
                    }
                    Kind::GenerateJit => {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        client
                            .post(format!(
                                "{base}/repos/acme/app/actions/runners/generate-jitconfig"
                            ))
                            .bearer_auth(TOKEN)
                            .json(&serde_json::json!({
                                "name": format!("bench-{n}"),
                                "runner_group_id": 1,
                                "labels": ["self-hosted", "linux", "x64"],
                            }))
                            .send()
                            .await
                    }
                };
                match resp {
                    Ok(r) if r.status().is_success() || r.status() == 304 => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    (
        ok.load(Ordering::Relaxed) as f64 / elapsed,
        bad.load(Ordering::Relaxed),
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let seconds: f64 = arg("--seconds", 5.0);
    let clients: usize = arg("--clients", 32);
    // The fake on its own runtime, the clients on another: both share the cores.
    let fake_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = fake_rt.block_on(async {
        let fake = FakeGitHub::start(Config {
            rate_limit: u32::MAX,
            orgs: vec!["acme".into()],
            repos: vec![("acme".into(), "app".into())],
            ..Config::default()
        })
        .await
        .unwrap();
        fake.add_token(TOKEN, &["admin:org", "repo"]);
        for i in 0..100 {
            let r = fake
                .register_runner(
                    &fake_github::Scope::org("acme"),
                    &format!("r{i}"),
                    &["gpu"],
                    false,
                )
                .unwrap();
            fake.set_online(r.id, i % 2 == 0).unwrap();
        }
        fake
    });
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "fake-github throughput: {clients} keep-alive clients, {seconds}s per case, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    for (name, kind) in [
        (
            "list runners (per_page=100, 100 runners)",
            Kind::List { per_page: 100 },
        ),
        ("list runners (per_page=30)", Kind::List { per_page: 30 }),
        ("list runners, If-None-Match -> 304", Kind::ListNotModified),
        ("generate-jitconfig", Kind::GenerateJit),
    ] {
        let (rps, errors) = client_rt.block_on(run(&fake, kind, clients, seconds));
        println!("{name:<45} {rps:>10.0} req/s  ({errors} errors)");
    }
    let c = fake.counters();
    println!("requests served: {}", c.total);
    fake_rt.block_on(fake.shutdown());
}
