//! The `fake-github` binary: flags, the printed address and the `/_fake`
//! control API.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use fake_github::decode_jit_config;
use reqwest::Method;
use serde_json::{Value, json};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-github"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn fake-github");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (Proc(child), url)
}

async fn control(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = c.request(method, url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    json_of(r.send().await.unwrap()).await
}

#[tokio::test]
async fn binary_serves_the_api_and_the_control_api() {
    let dir = std::env::temp_dir().join(format!("fake-github-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem_path = dir.join("app.pem");
    std::fs::write(&pem_path, app_private_key()).unwrap();
    let app_flag = format!("12/Iv1.abc:34@acme:{}", pem_path.display());
    let (_p, url) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--token",
        "ghp_cli:admin:org,repo",
        "--token",
        "ghp_ent:manage_runners:enterprise",
        "--org",
        "acme",
        "--repo",
        "acme/app",
        "--enterprise",
        "bigcorp",
        "--enterprise-org",
        "bigcorp/acme",
        "--app",
        &app_flag,
        "--rate-limit",
        "1000",
        "--jit-offline-expiry",
        "3600",
        "--app-token-ttl",
        "600",
    ]);
    let c = client();
    // API, both styles.
    let (s, v) = json_of(
        call(
            &c,
            Method::POST,
            &format!("{url}/api/v3/orgs/acme/actions/runners/generate-jitconfig"),
            Some("ghp_cli"),
            Some(
                &json!({"name": "cli-1", "runner_group_id": 1, "labels": ["self-hosted", "linux"]}),
            ),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let info = decode_jit_config(v["encoded_jit_config"].as_str().unwrap()).unwrap();
    let r = call(
        &c,
        Method::GET,
        &format!("{url}/orgs/acme/actions/runners"),
        Some("ghp_cli"),
        None,
    )
    .await;
    assert_eq!(r.headers()["x-ratelimit-limit"], "1000");
    assert_eq!(
        call(
            &c,
            Method::GET,
            &format!("{url}/enterprises/bigcorp/actions/runners"),
            Some("ghp_ent"),
            None
        )
        .await
        .status(),
        200
    );
    // The app from --app (client id as iss).
    let t = now();
    let jwt = jwt(
        app_private_key(),
        &json!({"iat": t - 30, "exp": t + 300, "iss": "Iv1.abc"}),
    );
    let (s, v) = json_of(
        call(
            &c,
            Method::POST,
            &format!("{url}/app/installations/34/access_tokens"),
            Some(&jwt),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // Control API: runner side and jobs.
    let (s, r) = control(
        &c,
        Method::POST,
        &format!("{url}/_fake/runners/{}/online", info.id),
        None,
    )
    .await;
    assert_eq!((s, r["status"].as_str()), (200, Some("online")));
    let (s, j) = control(
        &c,
        Method::POST,
        &format!("{url}/_fake/jobs"),
        Some(json!({"repository": "acme/app", "labels": ["self-hosted", "linux"]})),
    )
    .await;
    assert_eq!(s, 201, "{j}");
    assert_eq!(j["runner_id"], info.id);
    assert_eq!(j["status"], "in_progress");
    let (s, runners) = control(
        &c,
        Method::GET,
        &format!("{url}/_fake/runners?scope=orgs/acme"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(runners[0]["busy"], true);
    let (s, _) = json_of(
        call(
            &c,
            Method::DELETE,
            &format!("{url}/orgs/acme/actions/runners/{}", info.id),
            Some("ghp_cli"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 422);
    let (s, done) = control(
        &c,
        Method::POST,
        &format!("{url}/_fake/jobs/{}/finish", j["id"]),
        Some(json!({"conclusion": "success"})),
    )
    .await;
    assert_eq!((s, done["status"].as_str()), (200, Some("completed")));
    let (_, runners) = control(
        &c,
        Method::GET,
        &format!("{url}/_fake/runners?scope=orgs/acme"),
        None,
    )
    .await;
    assert_eq!(runners, json!([]), "the JIT runner is gone after its job");
    let (s, reg) = control(&c, Method::POST, &format!("{url}/_fake/runners"), Some(json!({"scope": "repos/acme/app", "name": "classic", "labels": ["big"], "online": true}))).await;
    assert_eq!((s, reg["status"].as_str()), (201, Some("online")));
    // Accounts and tokens at run time.
    control(
        &c,
        Method::POST,
        &format!("{url}/_fake/orgs"),
        Some(json!({"name": "later"})),
    )
    .await;
    control(
        &c,
        Method::POST,
        &format!("{url}/_fake/tokens"),
        Some(json!({"token": "ghp_late", "scopes": ["admin:org"]})),
    )
    .await;
    assert_eq!(
        call(
            &c,
            Method::GET,
            &format!("{url}/orgs/later/actions/runners"),
            Some("ghp_late"),
            None
        )
        .await
        .status(),
        200
    );
    // Faults.
    control(
        &c,
        Method::POST,
        &format!("{url}/_fake/faults"),
        Some(json!({"endpoint": "GET /orgs/{org}/actions/runners", "status": 502, "count": 1})),
    )
    .await;
    assert_eq!(
        call(
            &c,
            Method::GET,
            &format!("{url}/orgs/acme/actions/runners"),
            Some("ghp_cli"),
            None
        )
        .await
        .status(),
        502
    );
    assert_eq!(
        call(
            &c,
            Method::GET,
            &format!("{url}/orgs/acme/actions/runners"),
            Some("ghp_cli"),
            None
        )
        .await
        .status(),
        200
    );
    control(
        &c,
        Method::PUT,
        &format!("{url}/_fake/unavailable"),
        Some(json!({"unavailable": true})),
    )
    .await;
    assert_eq!(
        call(
            &c,
            Method::GET,
            &format!("{url}/orgs/acme/actions/runners"),
            Some("ghp_cli"),
            None
        )
        .await
        .status(),
        503
    );
    control(
        &c,
        Method::PUT,
        &format!("{url}/_fake/unavailable"),
        Some(json!({"unavailable": false})),
    )
    .await;
    control(
        &c,
        Method::POST,
        &format!("{url}/_fake/rate-limit/exhaust"),
        Some(json!({"token": "ghp_cli"})),
    )
    .await;
    let r = call(
        &c,
        Method::GET,
        &format!("{url}/orgs/acme/actions/runners"),
        Some("ghp_cli"),
        None,
    )
    .await;
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["x-ratelimit-remaining"].to_str().unwrap()
        ),
        (403, "0")
    );
    control(
        &c,
        Method::POST,
        &format!("{url}/_fake/rate-limit/reset"),
        Some(json!({"token": "ghp_cli"})),
    )
    .await;
    control(
        &c,
        Method::POST,
        &format!("{url}/_fake/secondary-limits"),
        Some(json!({"requests": 1, "retry_after_secs": 7})),
    )
    .await;
    let r = call(
        &c,
        Method::GET,
        &format!("{url}/orgs/acme/actions/runners"),
        Some("ghp_cli"),
        None,
    )
    .await;
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["retry-after"].to_str().unwrap()
        ),
        (403, "7")
    );
    // Accounting.
    let (_, counters) = control(&c, Method::GET, &format!("{url}/_fake/counters"), None).await;
    assert_eq!(counters["busy_delete_attempts"], 1);
    assert!(
        counters["by_endpoint"]["GET /orgs/{org}/actions/runners"]
            .as_u64()
            .unwrap()
            >= 5
    );
    let (_, log) = control(
        &c,
        Method::GET,
        &format!("{url}/_fake/requests?limit=2"),
        None,
    )
    .await;
    assert_eq!(log.as_array().unwrap().len(), 2);
    assert!(!log.to_string().contains("ghp_cli"));
    let (s, decoded) = control(
        &c,
        Method::POST,
        &format!("{url}/_fake/decode-jit"),
        Some(json!({"encoded_jit_config": v["token"]})),
    )
    .await;
    assert_eq!(s, 422, "{decoded}");
    let (s, _) = control(&c, Method::GET, &format!("{url}/_fake/nothing-here"), None).await;
    assert_eq!(s, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn binary_serves_scale_sets_with_its_flags() {
    use common::scaleset::*;
    let (_p, url) = spawn(&[
        "--token",
        "ghp_cli:admin:org,repo",
        "--org",
        "acme",
        "--repo",
        "acme/app",
        "--acquire-mode",
        "--long-poll",
        "0.3",
        "--service-bom",
        "never",
        "--admin-token-ttl",
        "120",
    ]);
    let svc = Service::connect_to(&url, "orgs/acme", "acme", "ghp_cli").await;
    let payload = svc.admin.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert!(claims["exp"].as_u64().unwrap().abs_diff(now() + 120) <= 5);
    let id = svc.create_scale_set("cli-set", 1).await["id"]
        .as_u64()
        .unwrap();
    let session = svc.session(id).await;
    let started = std::time::Instant::now();
    assert_eq!(session.poll(&svc.c, None).await.0, 202);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));

    let c = client();
    let (s, _) = control(
        &c,
        Method::POST,
        &format!("{url}/_fake/jobs"),
        Some(json!({"repository": "acme/app", "labels": ["cli-set"]})),
    )
    .await;
    assert_eq!(s, 201);
    let r = c
        .get(&session.queue_url)
        .header("authorization", format!("Bearer {}", session.queue_token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    assert!(!bytes.starts_with(BOM), "--service-bom never");
    let envelope: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(kinds(&envelope), ["JobAvailable"], "--acquire-mode");
    let (_, sets) = control(&c, Method::GET, &format!("{url}/_fake/scale-sets"), None).await;
    assert_eq!(sets[0]["name"], "cli-set");
}

#[test]
fn binary_rejects_bad_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-github"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "non-loopback listen must be refused");
    let out = Command::new(env!("CARGO_BIN_EXE_fake-github"))
        .args(["--app", "nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_fake-github"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--token",
        "--org",
        "--repo",
        "--enterprise",
        "--app",
        "--webhook-url",
        "--webhook-secret",
        "--rate-limit",
        "--error-rate",
        "--latency-ms",
        "--jit-offline-expiry",
        "--app-token-ttl",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}
