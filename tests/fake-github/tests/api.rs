//! The fake's REST behaviour, held to what GitHub documents.

mod common;

use std::time::Duration;

use common::*;
use fake_github::{
    Config, Fault, JobStatus, LabelType, RunnerStatus, Scope, SecondaryLimit, decode_jit_config,
};
use reqwest::Method;
use serde_json::{Value, json};

fn jit_body(name: &str) -> Value {
    json!({"name": name, "runner_group_id": 1, "labels": ["self-hosted", "X64", "linux", "gpu"], "work_folder": "_work"})
}

async fn create_jit(fake: &fake_github::FakeGitHub, scope: &str, name: &str) -> (u64, String) {
    let c = client();
    let token = if scope.starts_with("enterprises") {
        ENT_TOKEN
    } else {
        ORG_TOKEN
    };
    let (s, v) = json_of(
        call(
            &c,
            Method::POST,
            &format!(
                "{}/{scope}/actions/runners/generate-jitconfig",
                fake.base_url()
            ),
            Some(token),
            Some(&jit_body(name)),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    (
        v["runner"]["id"].as_u64().unwrap(),
        v["encoded_jit_config"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn jit_runner_is_created_like_github() {
    let fake = start().await;
    let c = client();
    for (base, scope) in [
        (fake.base_url(), "orgs/acme"),
        (fake.ghes_url(), "repos/acme/app"),
        (fake.base_url(), "enterprises/bigcorp"),
    ] {
        let token = if scope.starts_with("enterprises") {
            ENT_TOKEN
        } else {
            ORG_TOKEN
        };
        let name = format!("runner-{}", scope.len());
        let (s, v) = json_of(
            call(
                &c,
                Method::POST,
                &format!("{base}/{scope}/actions/runners/generate-jitconfig"),
                Some(token),
                Some(&jit_body(&name)),
            )
            .await,
        )
        .await;
        assert_eq!(s, 201, "{scope}: {v}");
        let r = &v["runner"];
        assert_eq!(r["name"], name.as_str());
        assert_eq!(r["status"], "offline");
        assert_eq!(r["os"], "unknown");
        assert_eq!(r["busy"], false);
        assert_eq!(r["ephemeral"], true);
        assert_eq!(r["runner_group_id"], 1);
        let labels: Vec<(String, String)> = r["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["name"].as_str().unwrap().into(),
                    l["type"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            labels,
            [
                ("self-hosted", "read-only"),
                ("X64", "read-only"),
                ("linux", "read-only"),
                ("gpu", "custom")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let info = decode_jit_config(v["encoded_jit_config"].as_str().unwrap()).unwrap();
        assert_eq!(info.id, r["id"].as_u64().unwrap());
        assert_eq!(info.name, name);
        assert!(info.ephemeral);
        assert_eq!(info.runner_group_name, "Default");
        let scope = Scope::parse(scope).unwrap();
        let held = fake.runners(&scope);
        assert_eq!(held.len(), 1);
        assert!(held[0].jit);
        assert_eq!(held[0].status, RunnerStatus::Offline);
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn jit_validation_errors() {
    let fake = start().await;
    let c = client();
    let url = format!(
        "{}/orgs/acme/actions/runners/generate-jitconfig",
        fake.base_url()
    );
    let post = |body: Value| {
        let c = c.clone();
        let url = url.clone();
        async move { json_of(call(&c, Method::POST, &url, Some(ORG_TOKEN), Some(&body)).await).await }
    };
    assert_eq!(post(jit_body("one")).await.0, 201);
    // Same name again, in any case: 409.
    let (s, v) = post(jit_body("ONE")).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("already exists"));
    // The same name in another scope is fine.
    let (s, _) = json_of(
        call(
            &c,
            Method::POST,
            &format!(
                "{}/repos/acme/app/actions/runners/generate-jitconfig",
                fake.base_url()
            ),
            Some(ORG_TOKEN),
            Some(&jit_body("one")),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201);
    // Unknown group: 404.
    let (s, _) = post(json!({"name": "g", "runner_group_id": 99, "labels": ["x"]})).await;
    assert_eq!(s, 404);
    // Missing runner_group_id, no labels, too many, too long: 422.
    let (s, v) = post(json!({"name": "a", "labels": ["x"]})).await;
    assert_eq!(s, 422);
    assert!(
        v["message"].as_str().unwrap().contains("runner_group_id"),
        "{v}"
    );
    assert_eq!(
        post(json!({"name": "a", "runner_group_id": 1})).await.0,
        422
    );
    assert_eq!(
        post(json!({"name": "a", "runner_group_id": 1, "labels": []}))
            .await
            .0,
        422
    );
    let many: Vec<String> = (0..101).map(|i| format!("l{i}")).collect();
    assert_eq!(
        post(json!({"name": "a", "runner_group_id": 1, "labels": many}))
            .await
            .0,
        422
    );
    let hundred: Vec<String> = (0..100).map(|i| format!("l{i}")).collect();
    assert_eq!(
        post(json!({"name": "a100", "runner_group_id": 1, "labels": hundred}))
            .await
            .0,
        201
    );
    let long = "x".repeat(257);
    assert_eq!(
        post(json!({"name": "a", "runner_group_id": 1, "labels": [long]}))
            .await
            .0,
        422
    );
    let ok256 = "x".repeat(256);
    assert_eq!(
        post(json!({"name": "b256", "runner_group_id": 1, "labels": [ok256]}))
            .await
            .0,
        201
    );
    assert_eq!(
        post(json!({"name": "n".repeat(65), "runner_group_id": 1, "labels": ["x"]}))
            .await
            .0,
        422
    );
    assert_eq!(
        post(json!({"name": "n".repeat(64), "runner_group_id": 1, "labels": ["x"]}))
            .await
            .0,
        201
    );
    assert_eq!(
        post(json!({"name": "t", "runner_group_id": "1", "labels": ["x"]}))
            .await
            .0,
        422
    );
    assert_eq!(
        post(json!({"name": "t", "runner_group_id": 1, "labels": "x"}))
            .await
            .0,
        422
    );
    // Not JSON at all: 400.
    let r = c
        .post(&url)
        .header("authorization", format!("Bearer {ORG_TOKEN}"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Unknown org: 404.
    let (s, _) = json_of(
        call(
            &c,
            Method::POST,
            &format!(
                "{}/orgs/nope/actions/runners/generate-jitconfig",
                fake.base_url()
            ),
            Some(ORG_TOKEN),
            Some(&jit_body("x")),
        )
        .await,
    )
    .await;
    assert_eq!(s, 404);
    fake.shutdown().await;
}

#[tokio::test]
async fn list_paginates_with_link_headers_and_filters_by_name() {
    let fake = start().await;
    for i in 0..7 {
        create_jit(&fake, "orgs/acme", &format!("r{i}")).await;
    }
    let c = client();
    let base = fake.ghes_url();
    let r = call(
        &c,
        Method::GET,
        &format!("{base}/orgs/acme/actions/runners?per_page=3&page=2"),
        Some(ORG_TOKEN),
        None,
    )
    .await;
    let link = r.headers()["link"].to_str().unwrap().to_string();
    let (s, v) = json_of(r).await;
    assert_eq!(s, 200);
    assert_eq!(v["total_count"], 7);
    let names: Vec<&str> = v["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["r3", "r4", "r5"]);
    assert!(
        link.contains(&format!(
            "<{base}/orgs/acme/actions/runners?per_page=3&page=1>; rel=\"prev\""
        )),
        "{link}"
    );
    assert!(link.contains("page=3>; rel=\"next\""), "{link}");
    assert!(link.contains("page=3>; rel=\"last\""), "{link}");
    assert!(link.contains("page=1>; rel=\"first\""), "{link}");
    // Following next links visits every runner once.
    let mut url = format!("{}/orgs/acme/actions/runners?per_page=2", fake.base_url());
    let mut seen = vec![];
    loop {
        let r = call(&c, Method::GET, &url, Some(ORG_TOKEN), None).await;
        let next = r.headers().get("link").and_then(|l| {
            l.to_str()
                .unwrap()
                .split(", ")
                .find(|p| p.ends_with("rel=\"next\""))
                .map(|p| {
                    p.split(';')
                        .next()
                        .unwrap()
                        .trim_matches(|c| c == '<' || c == '>')
                        .to_string()
                })
        });
        let (_, v) = json_of(r).await;
        for r in v["runners"].as_array().unwrap() {
            seen.push(r["id"].as_u64().unwrap());
        }
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(seen, (1..=7).collect::<Vec<u64>>());
    // per_page above 100 is capped; name filters exactly.
    let (_, v) = json_of(
        call(
            &c,
            Method::GET,
            &format!(
                "{}/orgs/acme/actions/runners?per_page=500&name=r4",
                fake.base_url()
            ),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(v["total_count"], 1);
    assert_eq!(v["runners"][0]["name"], "r4");
    let r = call(
        &c,
        Method::GET,
        &format!("{}/orgs/acme/actions/runners", fake.base_url()),
        Some(ORG_TOKEN),
        None,
    )
    .await;
    assert!(r.headers().get("link").is_none());
    fake.shutdown().await;
}

#[tokio::test]
async fn etag_changes_with_content_and_304_is_free() {
    let fake = start().await;
    let (id, _) = create_jit(&fake, "orgs/acme", "e1").await;
    let c = client();
    let url = format!("{}/orgs/acme/actions/runners", fake.base_url());
    let get = |etag: Option<String>| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let mut req = c
                .get(&url)
                .header("authorization", format!("Bearer {ORG_TOKEN}"));
            if let Some(e) = etag {
                req = req.header("if-none-match", e);
            }
            req.send().await.unwrap()
        }
    };
    let r = get(None).await;
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let used: u32 = r.headers()["x-ratelimit-used"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let r = get(Some(etag.clone())).await;
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(
        r.headers()["x-ratelimit-used"].to_str().unwrap(),
        used.to_string(),
        "304 must not be charged"
    );
    assert!(r.text().await.unwrap().is_empty());
    // Unchanged content keeps the tag.
    assert_eq!(get(None).await.headers()["etag"].to_str().unwrap(), etag);
    // Status flip changes it.
    fake.set_online(id, true).unwrap();
    let r = get(Some(etag.clone())).await;
    assert_eq!(r.status(), 200);
    let etag2 = r.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(etag, etag2);
    // Busy flip changes it.
    let job = fake
        .queue_job("acme/app", &["self-hosted", "linux"])
        .unwrap();
    assert!(fake.runner(id).unwrap().busy);
    let r = get(Some(etag2.clone())).await;
    assert_eq!(r.status(), 200);
    let etag3 = r.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(etag2, etag3);
    fake.finish_job(job).unwrap();
    let c = fake.counters();
    assert_eq!(c.not_modified, 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn delete_busy_unknown_and_idle_runners() {
    let fake = start().await;
    let (id, _) = create_jit(&fake, "repos/acme/app", "busy-one").await;
    fake.set_online(id, true).unwrap();
    let job = fake.queue_job("acme/app", &["gpu"]).unwrap();
    assert_eq!(fake.job(job).unwrap().runner_id, Some(id));
    let c = client();
    let url = format!("{}/repos/acme/app/actions/runners/{id}", fake.base_url());
    let (s, v) = json_of(call(&c, Method::DELETE, &url, Some(REPO_TOKEN), None).await).await;
    assert_eq!(s, 422);
    assert_eq!(v["message"], "Runner \"busy-one\" is still running a job");
    assert_eq!(fake.busy_delete_attempts(), 1);
    assert_eq!(fake.counters().busy_delete_attempts, 1);
    // Finishing the job removes the ephemeral runner, as GitHub does.
    let done = fake.finish_job(job).unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.conclusion.as_deref(), Some("success"));
    assert!(fake.runner(id).is_none());
    let (s, _) = json_of(call(&c, Method::DELETE, &url, Some(REPO_TOKEN), None).await).await;
    assert_eq!(s, 404);
    let (id2, _) = create_jit(&fake, "repos/acme/app", "idle").await;
    let r = call(
        &c,
        Method::DELETE,
        &format!("{}/repos/acme/app/actions/runners/{id2}", fake.base_url()),
        Some(REPO_TOKEN),
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    assert!(fake.runners(&Scope::repo("acme", "app")).is_empty());
    // A runner of another scope is not found through this one.
    let (id3, _) = create_jit(&fake, "orgs/acme", "elsewhere").await;
    let r = call(
        &c,
        Method::GET,
        &format!("{}/repos/acme/app/actions/runners/{id3}", fake.base_url()),
        Some(REPO_TOKEN),
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    fake.shutdown().await;
}

#[tokio::test]
async fn label_endpoints() {
    let fake = start().await;
    let (id, _) = create_jit(&fake, "orgs/acme", "lab").await;
    let c = client();
    let url = format!("{}/orgs/acme/actions/runners/{id}/labels", fake.base_url());
    let names = |v: &Value| -> Vec<String> {
        v["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, v) = json_of(call(&c, Method::GET, &url, Some(ORG_TOKEN), None).await).await;
    assert_eq!((s, v["total_count"].as_u64()), (200, Some(4)));
    let (s, v) = json_of(
        call(
            &c,
            Method::POST,
            &url,
            Some(ORG_TOKEN),
            Some(&json!({"labels": ["fast", "gpu"]})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(names(&v), ["self-hosted", "X64", "linux", "gpu", "fast"]);
    let (s, _) = json_of(
        call(
            &c,
            Method::POST,
            &url,
            Some(ORG_TOKEN),
            Some(&json!({"labels": []})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 422);
    let (s, v) = json_of(
        call(
            &c,
            Method::PUT,
            &url,
            Some(ORG_TOKEN),
            Some(&json!({"labels": ["a", "b"]})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(names(&v), ["self-hosted", "X64", "linux", "a", "b"]);
    assert_eq!(v["total_count"], 5);
    assert_eq!(
        fake.runner(id)
            .unwrap()
            .labels
            .iter()
            .filter(|l| l.kind == LabelType::Custom)
            .count(),
        2
    );
    let (s, v) = json_of(
        call(
            &c,
            Method::DELETE,
            &format!("{url}/a"),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(names(&v), ["self-hosted", "X64", "linux", "b"]);
    let (s, _) = json_of(
        call(
            &c,
            Method::DELETE,
            &format!("{url}/a"),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 404, "removing a label that is not there");
    let (s, _) = json_of(
        call(
            &c,
            Method::DELETE,
            &format!("{url}/self-hosted"),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 422, "read-only labels cannot be removed");
    let (s, v) = json_of(call(&c, Method::DELETE, &url, Some(ORG_TOKEN), None).await).await;
    assert_eq!(s, 200);
    assert_eq!(names(&v), ["self-hosted", "X64", "linux"]);
    let (s, v) = json_of(
        call(
            &c,
            Method::PUT,
            &url,
            Some(ORG_TOKEN),
            Some(&json!({"labels": []})),
        )
        .await,
    )
    .await;
    assert_eq!((s, v["total_count"].as_u64()), (200, Some(3)));
    let (s, _) =
        json_of(call(&c, Method::PUT, &url, Some(ORG_TOKEN), Some(&json!({}))).await).await;
    assert_eq!(s, 422);
    let (s, _) = json_of(
        call(
            &c,
            Method::GET,
            &format!("{}/orgs/acme/actions/runners/999/labels", fake.base_url()),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 404);
    fake.shutdown().await;
}

#[tokio::test]
async fn classic_token_scopes_are_enforced() {
    let fake = start().await;
    let c = client();
    let b = fake.base_url();
    let status = |url: String, token: Option<&'static str>| {
        let c = c.clone();
        async move {
            call(&c, Method::GET, &url, token, None)
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status(format!("{b}/orgs/acme/actions/runners"), None).await,
        401
    );
    assert_eq!(
        status(
            format!("{b}/orgs/acme/actions/runners"),
            Some("ghp_unknown")
        )
        .await,
        401
    );
    assert_eq!(
        status(format!("{b}/orgs/acme/actions/runners"), Some(WEAK_TOKEN)).await,
        403
    );
    assert_eq!(
        status(format!("{b}/orgs/acme/actions/runners"), Some(REPO_TOKEN)).await,
        403
    );
    assert_eq!(
        status(format!("{b}/orgs/acme/actions/runners"), Some(ORG_TOKEN)).await,
        200
    );
    assert_eq!(
        status(
            format!("{b}/repos/acme/app/actions/runners"),
            Some(REPO_TOKEN)
        )
        .await,
        200
    );
    assert_eq!(
        status(
            format!("{b}/repos/acme/app/actions/runners"),
            Some(WEAK_TOKEN)
        )
        .await,
        403
    );
    // Enterprise endpoints: only manage_runners:enterprise (or admin:enterprise).
    assert_eq!(
        status(
            format!("{b}/enterprises/bigcorp/actions/runners"),
            Some(ORG_TOKEN)
        )
        .await,
        403
    );
    assert_eq!(
        status(
            format!("{b}/enterprises/bigcorp/actions/runners"),
            Some(ENT_TOKEN)
        )
        .await,
        200
    );
    fake.add_token("ghp_old_admin_enterprise", &["admin:enterprise"]);
    assert_eq!(
        status(
            format!("{b}/api/v3/enterprises/bigcorp/actions/runners"),
            Some("ghp_old_admin_enterprise")
        )
        .await,
        200
    );
    assert_eq!(
        status(
            format!("{b}/enterprises/nope/actions/runners"),
            Some(ENT_TOKEN)
        )
        .await,
        404
    );
    let r = call(
        &c,
        Method::GET,
        &format!("{b}/orgs/acme/actions/runners"),
        Some(REPO_TOKEN),
        None,
    )
    .await;
    assert_eq!(r.headers()["x-accepted-oauth-scopes"], "admin:org");
    assert_eq!(r.headers()["x-oauth-scopes"], "repo");
    // Unknown routes and wrong methods are 404, like GitHub.
    assert_eq!(
        status(format!("{b}/orgs/acme/actions/nothing"), Some(ORG_TOKEN)).await,
        404
    );
    let r = call(
        &c,
        Method::PATCH,
        &format!("{b}/orgs/acme/actions/runners"),
        Some(ORG_TOKEN),
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    // Unsupported API version: 400.
    let r = c
        .get(format!("{b}/orgs/acme/actions/runners"))
        .header("authorization", format!("Bearer {ORG_TOKEN}"))
        .header("x-github-api-version", "1999-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    fake.shutdown().await;
}

#[tokio::test]
async fn github_app_installation_tokens() {
    let fake = start_with(Config {
        app_token_ttl: Duration::from_secs(3),
        ..Config::default()
    })
    .await;
    let pem = app_private_key();
    fake.add_app(fake_github::AppSpec {
        app_id: 4242,
        client_id: Some("Iv23liFAKE".into()),
        key_pem: pem.to_string(),
        installations: vec![fake_github::InstallationSpec::new(77, Some("acme"))],
    })
    .unwrap();
    // A public key works as well as the private one.
    fake.add_app(fake_github::AppSpec {
        app_id: 5151,
        client_id: None,
        key_pem: public_key_of(other_private_key()),
        installations: vec![fake_github::InstallationSpec::new(88, None)],
    })
    .unwrap();
    let c = client();
    let b = fake.base_url();
    let t = now();
    let token_url = |inst: u64| format!("{b}/app/installations/{inst}/access_tokens");
    let good = jwt(pem, &json!({"iat": t - 60, "exp": t + 540, "iss": 4242}));
    let (s, v) = json_of(call(&c, Method::POST, &token_url(77), Some(&good), None).await).await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let issued = std::time::Instant::now();
    assert!(token.starts_with("ghs_"));
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));
    // The token works on the installation's organization and repositories.
    let r = call(
        &c,
        Method::GET,
        &format!("{b}/orgs/acme/actions/runners"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit"], "5000");
    let r = call(
        &c,
        Method::POST,
        &format!("{b}/api/v3/repos/acme/app/actions/runners/generate-jitconfig"),
        Some(&token),
        Some(&jit_body("app-made")),
    )
    .await;
    assert_eq!(r.status(), 201);
    // ... not on the enterprise, nor with the JWT itself.
    let r = call(
        &c,
        Method::GET,
        &format!("{b}/enterprises/bigcorp/actions/runners"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = call(
        &c,
        Method::GET,
        &format!("{b}/orgs/acme/actions/runners"),
        Some(&good),
        None,
    )
    .await;
    assert_eq!(r.status(), 403);
    // iss may be the client id.
    let by_client = jwt(
        pem,
        &json!({"iat": t - 30, "exp": t + 300, "iss": "Iv23liFAKE"}),
    );
    assert_eq!(
        call(&c, Method::POST, &token_url(77), Some(&by_client), None)
            .await
            .status(),
        201
    );
    // Failures.
    let too_long = jwt(pem, &json!({"iat": t - 30, "exp": t + 700, "iss": 4242}));
    let (s, v) = json_of(call(&c, Method::POST, &token_url(77), Some(&too_long), None).await).await;
    assert_eq!(s, 401);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("too far in the future"),
        "{v}"
    );
    let expired = jwt(pem, &json!({"iat": t - 700, "exp": t - 100, "iss": 4242}));
    assert_eq!(
        call(&c, Method::POST, &token_url(77), Some(&expired), None)
            .await
            .status(),
        401
    );
    let future_iat = jwt(pem, &json!({"iat": t + 120, "exp": t + 300, "iss": 4242}));
    assert_eq!(
        call(&c, Method::POST, &token_url(77), Some(&future_iat), None)
            .await
            .status(),
        401
    );
    let no_iat = jwt(pem, &json!({"exp": t + 300, "iss": 4242}));
    assert_eq!(
        call(&c, Method::POST, &token_url(77), Some(&no_iat), None)
            .await
            .status(),
        401
    );
    let wrong_key = jwt(
        other_private_key(),
        &json!({"iat": t - 30, "exp": t + 300, "iss": 4242}),
    );
    let (s, v) =
        json_of(call(&c, Method::POST, &token_url(77), Some(&wrong_key), None).await).await;
    assert_eq!(s, 401);
    assert_eq!(v["message"], "A JSON web token could not be decoded");
    let unknown_app = jwt(pem, &json!({"iat": t - 30, "exp": t + 300, "iss": 9999}));
    assert_eq!(
        call(&c, Method::POST, &token_url(77), Some(&unknown_app), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        call(&c, Method::POST, &token_url(88), Some(&good), None)
            .await
            .status(),
        404,
        "installation of another app"
    );
    assert_eq!(
        call(&c, Method::POST, &token_url(77), Some(ORG_TOKEN), None)
            .await
            .status(),
        401,
        "a PAT is not a JWT"
    );
    assert_eq!(
        call(&c, Method::POST, &token_url(77), None, None)
            .await
            .status(),
        401
    );
    // HS256 with the public key as secret is refused.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iat": t - 30, "exp": t + 300, "iss": 4242}),
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    assert_eq!(
        call(&c, Method::POST, &token_url(77), Some(&hs), None)
            .await
            .status(),
        401
    );
    // Narrowed permissions: more than granted is refused.
    let (s, _) = json_of(
        call(
            &c,
            Method::POST,
            &token_url(77),
            Some(&good),
            Some(&json!({"permissions": {"contents": "write"}})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 422);
    let (s, v) = json_of(
        call(
            &c,
            Method::POST,
            &token_url(77),
            Some(&good),
            Some(&json!({"permissions": {"administration": "read"}})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201);
    let read_only = v["token"].as_str().unwrap().to_string();
    assert_eq!(
        call(
            &c,
            Method::GET,
            &format!("{b}/repos/acme/app/actions/runners"),
            Some(&read_only),
            None
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        call(
            &c,
            Method::POST,
            &format!("{b}/repos/acme/app/actions/runners/generate-jitconfig"),
            Some(&read_only),
            Some(&jit_body("nope"))
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        call(
            &c,
            Method::GET,
            &format!("{b}/orgs/acme/actions/runners"),
            Some(&read_only),
            None
        )
        .await
        .status(),
        403
    );
    // The installation's budget is shared by its tokens.
    assert!(fake.counters().credential("installation:77") >= 4);
    // After the TTL the token is refused.
    tokio::time::sleep_until((issued + Duration::from_millis(3100)).into()).await;
    let (s, v) = json_of(
        call(
            &c,
            Method::GET,
            &format!("{b}/orgs/acme/actions/runners"),
            Some(&token),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(v["message"], "Bad credentials");
    // An installation on every account (no owner) covers both orgs.
    let t = now();
    let other = jwt(
        other_private_key(),
        &json!({"iat": t - 30, "exp": t + 300, "iss": "5151"}),
    );
    let (s, v) = json_of(call(&c, Method::POST, &token_url(88), Some(&other), None).await).await;
    assert_eq!(s, 201);
    let all = v["token"].as_str().unwrap();
    assert_eq!(
        call(
            &c,
            Method::GET,
            &format!("{b}/orgs/acme/actions/runner-groups"),
            Some(all),
            None
        )
        .await
        .status(),
        200
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn rate_limits_primary_and_secondary() {
    let fake = start_with(Config {
        rate_limit: 3,
        ..Config::default()
    })
    .await;
    let c = client();
    let url = format!("{}/orgs/acme/actions/runners", fake.base_url());
    for expect_remaining in [2, 1, 0] {
        let r = call(&c, Method::GET, &url, Some(ORG_TOKEN), None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-ratelimit-remaining"],
            expect_remaining.to_string().as_str()
        );
        assert_eq!(r.headers()["x-ratelimit-limit"], "3");
        assert_eq!(r.headers()["x-ratelimit-resource"], "core");
    }
    let r = call(&c, Method::GET, &url, Some(ORG_TOKEN), None).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let reset: u64 = r.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > now() + 3000);
    let (_, v) = json_of(r).await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("rate limit exceeded")
    );
    // Other credentials have their own budget.
    assert_eq!(
        call(
            &c,
            Method::GET,
            &format!("{}/repos/acme/app/actions/runners", fake.base_url()),
            Some(REPO_TOKEN),
            None
        )
        .await
        .status(),
        200
    );
    // /rate_limit is free and reports the budget.
    let (s, v) = json_of(
        call(
            &c,
            Method::GET,
            &format!("{}/rate_limit", fake.base_url()),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["resources"]["core"]["remaining"], 0);
    let key = fake.token_key(ORG_TOKEN);
    fake.reset_rate_limit(&key);
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        200
    );
    fake.exhaust_rate_limit(&key);
    assert_eq!(fake.rate_limit(&key).remaining, 0);
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        403
    );
    assert_eq!(fake.counters().primary_rate_limited, 2);
    fake.shutdown().await;

    // 429 flavour and secondary limits.
    let fake = start_with(Config {
        rate_limit_status: 429,
        rate_limit: 1,
        ..Config::default()
    })
    .await;
    let url = format!("{}/orgs/acme/actions/runners", fake.base_url());
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        429
    );
    fake.reset_rate_limit(&fake.token_key(ORG_TOKEN));
    fake.set_rate_limit(1000);
    fake.reset_rate_limit(&fake.token_key(ORG_TOKEN));
    fake.secondary_limit(SecondaryLimit::next_requests(2, 30));
    for _ in 0..2 {
        let r = call(&c, Method::GET, &url, Some(ORG_TOKEN), None).await;
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["retry-after"], "30");
        let (_, v) = json_of(r).await;
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("secondary rate limit")
        );
    }
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        200
    );
    fake.secondary_limit(SecondaryLimit {
        credential: Some(fake.token_key(ORG_TOKEN)),
        endpoint: Some("POST *".into()),
        requests: None,
        duration_secs: Some(1.5),
        status: 429,
        retry_after_secs: 0,
    });
    let post_url = format!(
        "{}/orgs/acme/actions/runners/generate-jitconfig",
        fake.base_url()
    );
    let r = call(
        &c,
        Method::POST,
        &post_url,
        Some(ORG_TOKEN),
        Some(&jit_body("s")),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        200,
        "GETs are not limited"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        call(
            &c,
            Method::POST,
            &post_url,
            Some(ORG_TOKEN),
            Some(&jit_body("s"))
        )
        .await
        .status(),
        201
    );
    assert_eq!(fake.counters().secondary_rate_limited, 3);
    fake.shutdown().await;
}

#[tokio::test]
async fn faults_latency_and_outage() {
    let fake = start().await;
    let c = client();
    let url = format!("{}/orgs/acme/actions/runners", fake.base_url());
    fake.inject_fault(Fault::times(
        Some("GET /orgs/{org}/actions/runners"),
        502,
        2,
    ));
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        502
    );
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        502
    );
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        200
    );
    // Other endpoints are untouched by an endpoint fault.
    fake.inject_fault(Fault::always(
        Some("/orgs/{org}/actions/runner-groups"),
        500,
    ));
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        call(
            &c,
            Method::GET,
            &format!("{}/orgs/acme/actions/runner-groups", fake.base_url()),
            Some(ORG_TOKEN),
            None
        )
        .await
        .status(),
        500
    );
    fake.clear_faults();
    fake.set_error_rate(1.0, 503);
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        503
    );
    fake.set_error_rate(0.5, 500);
    let mut failures = 0;
    for _ in 0..200 {
        if call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status()
            == 500
        {
            failures += 1;
        }
    }
    assert!(
        (50..150).contains(&failures),
        "error rate 0.5 gave {failures}/200"
    );
    fake.clear_faults();
    fake.set_endpoint_latency(
        "GET /orgs/{org}/actions/runners",
        Duration::from_millis(400),
    );
    let t = std::time::Instant::now();
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        200
    );
    assert!(t.elapsed() >= Duration::from_millis(400));
    let t = std::time::Instant::now();
    call(
        &c,
        Method::GET,
        &format!("{}/orgs/acme/actions/runner-groups", fake.base_url()),
        Some(ORG_TOKEN),
        None,
    )
    .await;
    assert!(t.elapsed() < Duration::from_millis(400));
    fake.set_endpoint_latency("GET /orgs/{org}/actions/runners", Duration::ZERO);
    fake.set_unavailable(true);
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        503
    );
    assert_eq!(
        call(
            &c,
            Method::GET,
            &format!("{}/_fake/health", fake.base_url()),
            None,
            None
        )
        .await
        .status(),
        200
    );
    fake.set_unavailable(false);
    assert_eq!(
        call(&c, Method::GET, &url, Some(ORG_TOKEN), None)
            .await
            .status(),
        200
    );
    let counters = fake.counters();
    assert!(counters.faults_injected >= 5);
    assert_eq!(
        counters.endpoint_status("GET /orgs/{org}/actions/runners", 502),
        2
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn counters_and_log_never_hold_secrets() {
    let fake = start().await;
    let (_, encoded) = create_jit(&fake, "orgs/acme", "secretive").await;
    let c = client();
    call(
        &c,
        Method::GET,
        &format!("{}/api/v3/orgs/acme/actions/runners", fake.base_url()),
        Some(ORG_TOKEN),
        None,
    )
    .await;
    call(
        &c,
        Method::GET,
        &format!("{}/orgs/acme/actions/runners", fake.base_url()),
        Some(REPO_TOKEN),
        None,
    )
    .await;
    let counters = fake.counters();
    assert_eq!(
        counters.endpoint("GET /orgs/{org}/actions/runners"),
        2,
        "GHES and root count together"
    );
    assert_eq!(
        counters.endpoint("POST /orgs/{org}/actions/runners/generate-jitconfig"),
        1
    );
    assert_eq!(counters.credential(&fake.token_key(ORG_TOKEN)), 2);
    assert_eq!(counters.credential(&fake.token_key(REPO_TOKEN)), 1);
    let log = fake.request_log();
    assert_eq!(log.len(), 3);
    assert_eq!(log[1].path, "/api/v3/orgs/acme/actions/runners");
    assert_eq!(log[2].status, 403);
    let dump = serde_json::to_string(&log).unwrap() + &serde_json::to_string(&counters).unwrap();
    assert!(
        !dump.contains(ORG_TOKEN) && !dump.contains(REPO_TOKEN) && !dump.contains(&encoded[..40])
    );
    fake.reset_counters();
    assert_eq!(fake.counters().total, 0);
    assert!(fake.request_log().is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn jobs_go_to_matching_runners_and_webhooks_are_signed() {
    use std::sync::{Arc, Mutex};
    // A webhook receiver on loopback.
    type Received = Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push((headers, body.to_vec()));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let fake = start_with(Config {
        webhook: Some(fake_github::WebhookConfig {
            url: format!("http://{hook_addr}/hook"),
            secret: Some("s3cret".into()),
        }),
        ..Config::default()
    })
    .await;
    let (small, _) = create_jit(&fake, "orgs/acme", "small").await;
    let (gpu, _) = create_jit(&fake, "orgs/acme", "gpu").await;
    // Labels of the first runner: drop gpu.
    let c = client();
    call(
        &c,
        Method::PUT,
        &format!(
            "{}/orgs/acme/actions/runners/{small}/labels",
            fake.base_url()
        ),
        Some(ORG_TOKEN),
        Some(&json!({"labels": []})),
    )
    .await;
    let job = fake
        .queue_job("acme/app", &["self-hosted", "Linux", "gpu"])
        .unwrap();
    assert_eq!(
        fake.job(job).unwrap().status,
        JobStatus::Queued,
        "no runner online yet"
    );
    fake.set_online(small, true).unwrap();
    assert_eq!(
        fake.job(job).unwrap().status,
        JobStatus::Queued,
        "small lacks the gpu label"
    );
    assert!(!fake.runner(small).unwrap().busy);
    fake.set_online(gpu, true).unwrap();
    let j = fake.job(job).unwrap();
    assert_eq!((j.status, j.runner_id), (JobStatus::InProgress, Some(gpu)));
    assert_eq!(j.runner_group_name.as_deref(), Some("Default"));
    let r = fake.runner(gpu).unwrap();
    assert!(r.busy && r.online());
    assert_eq!(r.job_id, Some(job));
    // A second job waits for a free runner, then takes `small`.
    let job2 = fake.queue_job("acme/lib", &["self-hosted"]).unwrap();
    assert_eq!(fake.job(job2).unwrap().runner_id, Some(small));
    let job3 = fake.queue_job("acme/lib", &["self-hosted"]).unwrap();
    assert_eq!(fake.job(job3).unwrap().status, JobStatus::Queued);
    fake.finish_job(job).unwrap();
    assert!(
        fake.runner(gpu).is_none(),
        "ephemeral runner removed after its job"
    );
    fake.finish_job_with(job2, "failure").unwrap();
    fake.finish_job(job3).unwrap();
    assert_eq!(
        fake.job(job3).unwrap().conclusion.as_deref(),
        Some("cancelled")
    );
    assert!(fake.finish_job(job3).is_err());
    assert!(fake.queue_job("acme/unknown", &["x"]).is_err());

    let deliveries = fake.wait_for_webhooks(8, Duration::from_secs(10)).await;
    let actions: Vec<(u64, String)> = deliveries
        .iter()
        .map(|d| (d.job_id, d.action.clone()))
        .collect();
    assert_eq!(
        actions,
        [
            (job, "queued"),
            (job, "in_progress"),
            (job2, "queued"),
            (job2, "in_progress"),
            (job3, "queued"),
            (job, "completed"),
            (job2, "completed"),
            (job3, "completed"),
        ]
        .map(|(j, a)| (j, a.to_string()))
    );
    assert!(deliveries.iter().all(|d| d.status == Some(200)));
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 8);
    for (headers, body) in &got {
        assert_eq!(headers["x-github-event"], "workflow_job");
        assert_eq!(headers["x-github-delivery"].to_str().unwrap().len(), 36);
        assert_eq!(
            headers["x-hub-signature-256"].to_str().unwrap(),
            fake_github::signature_256("s3cret", body)
        );
    }
    let first: Value = serde_json::from_slice(&got[1].1).unwrap();
    assert_eq!(first["action"], "in_progress");
    assert_eq!(first["workflow_job"]["runner_id"], gpu);
    assert_eq!(
        first["workflow_job"]["labels"],
        json!(["self-hosted", "Linux", "gpu"])
    );
    assert_eq!(first["repository"]["full_name"], "acme/app");
    assert_eq!(first["organization"]["login"], "acme");
    fake.shutdown().await;
}

#[tokio::test]
async fn group_visibility_and_enterprise_runners() {
    let fake = start().await;
    let c = client();
    let b = fake.base_url();
    let lib_id = fake.add_repo("acme", "lib");
    let (s, g) = json_of(
        call(&c, Method::POST, &format!("{b}/orgs/acme/actions/runner-groups"), Some(ORG_TOKEN),
            Some(&json!({"name": "lib-only", "visibility": "selected", "selected_repository_ids": [lib_id]}))).await,
    )
    .await;
    assert_eq!(s, 201, "{g}");
    let gid = g["id"].as_u64().unwrap();
    let (s, v) = json_of(
        call(
            &c,
            Method::POST,
            &format!("{b}/orgs/acme/actions/runners/generate-jitconfig"),
            Some(ORG_TOKEN),
            Some(&json!({"name": "grp", "runner_group_id": gid, "labels": ["self-hosted"]})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201);
    let rid = v["runner"]["id"].as_u64().unwrap();
    assert_eq!(
        decode_jit_config(v["encoded_jit_config"].as_str().unwrap())
            .unwrap()
            .runner_group_name,
        "lib-only"
    );
    fake.set_online(rid, true).unwrap();
    let app_job = fake.queue_job("acme/app", &["self-hosted"]).unwrap();
    assert_eq!(
        fake.job(app_job).unwrap().status,
        JobStatus::Queued,
        "group not visible to acme/app"
    );
    let lib_job = fake.queue_job("acme/lib", &["self-hosted"]).unwrap();
    assert_eq!(fake.job(lib_job).unwrap().runner_id, Some(rid));
    // An enterprise runner takes the acme/app job (acme belongs to bigcorp).
    let (eid, _) = create_jit(&fake, "enterprises/bigcorp", "ent-1").await;
    fake.set_online(eid, true).unwrap();
    assert_eq!(fake.job(app_job).unwrap().runner_id, Some(eid));
    // visible_to_repository filters the list.
    let (_, v) = json_of(
        call(
            &c,
            Method::GET,
            &format!("{b}/orgs/acme/actions/runner-groups?visible_to_repository=app"),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    let names: Vec<&str> = v["runner_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Default"]);
    let (_, v) = json_of(
        call(
            &c,
            Method::GET,
            &format!("{b}/orgs/acme/actions/runner-groups?visible_to_repository=lib"),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(v["total_count"], 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn runner_group_endpoints() {
    let fake = start().await;
    let c = client();
    let b = fake.ghes_url();
    let groups = format!("{b}/orgs/acme/actions/runner-groups");
    let (s, v) = json_of(call(&c, Method::GET, &groups, Some(ORG_TOKEN), None).await).await;
    assert_eq!(s, 200);
    assert_eq!(v["runner_groups"][0]["id"], 1);
    assert_eq!(v["runner_groups"][0]["name"], "Default");
    assert_eq!(v["runner_groups"][0]["default"], true);
    let (s, g) = json_of(
        call(
            &c,
            Method::POST,
            &groups,
            Some(ORG_TOKEN),
            Some(&json!({"name": "big"})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(g["visibility"], "all");
    assert_eq!(g["allows_public_repositories"], false);
    let gid = g["id"].as_u64().unwrap();
    assert_eq!(
        json_of(
            call(
                &c,
                Method::POST,
                &groups,
                Some(ORG_TOKEN),
                Some(&json!({"name": "BIG"}))
            )
            .await
        )
        .await
        .0,
        422
    );
    assert_eq!(
        json_of(
            call(
                &c,
                Method::POST,
                &groups,
                Some(ORG_TOKEN),
                Some(&json!({"visibility": "all"}))
            )
            .await
        )
        .await
        .0,
        422
    );
    assert_eq!(
        json_of(
            call(
                &c,
                Method::POST,
                &groups,
                Some(ORG_TOKEN),
                Some(&json!({"name": "v", "visibility": "nobody"}))
            )
            .await
        )
        .await
        .0,
        422
    );
    let one = format!("{groups}/{gid}");
    let (s, g) = json_of(
        call(
            &c,
            Method::PATCH,
            &one,
            Some(ORG_TOKEN),
            Some(&json!({"name": "bigger", "visibility": "selected"})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        (g["name"].as_str(), g["visibility"].as_str()),
        (Some("bigger"), Some("selected"))
    );
    assert!(
        g["selected_repositories_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/runner-groups/{gid}/repositories"))
    );
    assert_eq!(
        json_of(
            call(
                &c,
                Method::GET,
                &format!("{groups}/999"),
                Some(ORG_TOKEN),
                None
            )
            .await
        )
        .await
        .0,
        404
    );
    // Repository access.
    let app_id = fake.add_repo("acme", "app");
    let lib_id = fake.add_repo("acme", "lib");
    assert_eq!(
        call(
            &c,
            Method::PUT,
            &format!("{one}/repositories"),
            Some(ORG_TOKEN),
            Some(&json!({"selected_repository_ids": [app_id]}))
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        call(
            &c,
            Method::PUT,
            &format!("{one}/repositories/{lib_id}"),
            Some(ORG_TOKEN),
            None
        )
        .await
        .status(),
        204
    );
    let (s, v) = json_of(
        call(
            &c,
            Method::GET,
            &format!("{one}/repositories"),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    let full: Vec<&str> = v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["full_name"].as_str().unwrap())
        .collect();
    assert_eq!(full, ["acme/app", "acme/lib"]);
    assert_eq!(
        call(
            &c,
            Method::DELETE,
            &format!("{one}/repositories/{app_id}"),
            Some(ORG_TOKEN),
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        call(
            &c,
            Method::DELETE,
            &format!("{one}/repositories/{app_id}"),
            Some(ORG_TOKEN),
            None
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        call(
            &c,
            Method::PUT,
            &format!("{one}/repositories"),
            Some(ORG_TOKEN),
            Some(&json!({"selected_repository_ids": [123456]}))
        )
        .await
        .status(),
        422
    );
    // Runners in the group.
    let (r1, _) = create_jit(&fake, "orgs/acme", "g1").await;
    let (r2, _) = create_jit(&fake, "orgs/acme", "g2").await;
    assert_eq!(
        call(
            &c,
            Method::PUT,
            &format!("{one}/runners"),
            Some(ORG_TOKEN),
            Some(&json!({"runners": [r1, r2]}))
        )
        .await
        .status(),
        204
    );
    let (_, v) = json_of(
        call(
            &c,
            Method::GET,
            &format!("{one}/runners"),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(v["total_count"], 2);
    assert_eq!(v["runners"][0]["runner_group_id"], gid);
    assert_eq!(
        call(
            &c,
            Method::DELETE,
            &format!("{one}/runners/{r1}"),
            Some(ORG_TOKEN),
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        fake.runner(r1).unwrap().runner_group_id,
        1,
        "removed runners return to Default"
    );
    assert_eq!(
        call(
            &c,
            Method::DELETE,
            &format!("{one}/runners/{r1}"),
            Some(ORG_TOKEN),
            None
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        call(
            &c,
            Method::PUT,
            &format!("{one}/runners/{r1}"),
            Some(ORG_TOKEN),
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        call(
            &c,
            Method::PUT,
            &format!("{one}/runners/4242"),
            Some(ORG_TOKEN),
            None
        )
        .await
        .status(),
        404
    );
    let (s, v) = json_of(
        call(
            &c,
            Method::GET,
            &format!("{one}/hosted-runners"),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((s, v["total_count"].as_u64()), (200, Some(0)));
    // Deleting the group sends its runners back to Default; Default stays.
    assert_eq!(
        call(&c, Method::DELETE, &one, Some(ORG_TOKEN), None)
            .await
            .status(),
        204
    );
    assert_eq!(fake.runner(r2).unwrap().runner_group_id, 1);
    assert_eq!(
        call(
            &c,
            Method::DELETE,
            &format!("{groups}/1"),
            Some(ORG_TOKEN),
            None
        )
        .await
        .status(),
        422
    );
    // Enterprise groups: organization access.
    let eg = format!("{b}/enterprises/bigcorp/actions/runner-groups");
    let acme_id = fake.add_org("acme");
    let (s, g) = json_of(call(&c, Method::POST, &eg, Some(ENT_TOKEN), Some(&json!({"name": "ent", "visibility": "selected", "selected_organization_ids": [acme_id]}))).await).await;
    assert_eq!(s, 201, "{g}");
    let (_, v) = json_of(
        call(
            &c,
            Method::GET,
            &format!("{eg}/{}/organizations", g["id"]),
            Some(ENT_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(v["organizations"][0]["login"], "acme");
    assert_eq!(
        json_of(
            call(
                &c,
                Method::POST,
                &eg,
                Some(ENT_TOKEN),
                Some(&json!({"name": "p", "visibility": "private"}))
            )
            .await
        )
        .await
        .0,
        422
    );
    assert_eq!(
        call(&c, Method::GET, &eg, Some(ORG_TOKEN), None)
            .await
            .status(),
        403
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn jit_runners_that_never_come_online_expire() {
    let fake = start_with(Config {
        jit_offline_expiry: Duration::from_millis(800),
        ..Config::default()
    })
    .await;
    let (never, _) = create_jit(&fake, "orgs/acme", "never").await;
    let (came, _) = create_jit(&fake, "orgs/acme", "came").await;
    fake.set_online(came, true).unwrap();
    fake.set_online(came, false).unwrap();
    let registered = fake
        .register_runner(&Scope::org("acme"), "classic", &["x"], false)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(fake.runner(never).is_none(), "background sweep removed it");
    assert!(fake.runner(came).is_some());
    assert!(fake.runner(registered.id).is_some());
    fake.set_jit_offline_expiry(Duration::from_secs(3600));
    let (later, _) = create_jit(&fake, "orgs/acme", "later").await;
    assert!(fake.sweep_expired_runners().is_empty());
    assert!(fake.runner(later).is_some());
    fake.shutdown().await;
}

#[tokio::test]
async fn registration_tokens_and_downloads() {
    let fake = start().await;
    let c = client();
    for scope in ["orgs/acme", "repos/acme/app"] {
        for kind in ["registration-token", "remove-token"] {
            let (s, v) = json_of(
                call(
                    &c,
                    Method::POST,
                    &format!("{}/{scope}/actions/runners/{kind}", fake.base_url()),
                    Some(ORG_TOKEN),
                    None,
                )
                .await,
            )
            .await;
            assert_eq!(s, 201);
            assert_eq!(v["token"].as_str().unwrap().len(), 29);
        }
        let (s, v) = json_of(
            call(
                &c,
                Method::GET,
                &format!("{}/{scope}/actions/runners/downloads", fake.base_url()),
                Some(ORG_TOKEN),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(s, 200);
        assert!(
            v.as_array()
                .unwrap()
                .iter()
                .any(|a| a["os"] == "linux" && a["architecture"] == "arm64")
        );
    }
    fake.shutdown().await;
}

/// The newest release the downloads endpoint serves is set by the handle or
/// the control API; a changed release changes the ETag, so a conditional
/// request sees it at once.
#[tokio::test]
async fn downloads_serve_the_release_they_are_told() {
    let fake = start().await;
    let c = client();
    let url = format!("{}/orgs/acme/actions/runners/downloads", fake.base_url());
    let files = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a["filename"].as_str().unwrap().to_string())
            .collect()
    };
    let first = call(&c, Method::GET, &url, Some(ORG_TOKEN), None).await;
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let (_, v) = json_of(first).await;
    assert!(
        files(&v).contains(&"actions-runner-linux-x64-2.330.0.tar.gz".to_string()),
        "{v}"
    );
    assert_eq!(fake.runner_version(), fake_github::DEFAULT_RUNNER_VERSION);

    let conditional = |etag: String| {
        let c = c.clone();
        let url = url.clone();
        async move {
            c.get(&url)
                .header("authorization", format!("Bearer {ORG_TOKEN}"))
                .header("if-none-match", etag)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(conditional(etag.clone()).await.status(), 304);

    fake.set_runner_version("2.331.0").unwrap();
    let changed = conditional(etag.clone()).await;
    assert_eq!(changed.status(), 200);
    let (_, v) = json_of(changed).await;
    assert!(files(&v).iter().all(|f| f.contains("-2.331.0.")), "{v}");

    // The control API does the same, and refuses what is not x.y.z.
    let settings = format!("{}/_fake/settings", fake.base_url());
    let (s, _) = json_of(
        call(
            &c,
            Method::PUT,
            &settings,
            None,
            Some(&json!({"runner_version": "2.332.1"})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(fake.runner_version(), "2.332.1");
    let (s, v) = json_of(
        call(
            &c,
            Method::PUT,
            &settings,
            None,
            Some(&json!({"runner_version": "latest"})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("major.minor.patch"),
        "{v}"
    );
    assert!(fake.set_runner_version("2.332").is_err());
    assert_eq!(fake.runner_version(), "2.332.1");
    fake.shutdown().await;
}

#[tokio::test]
async fn handle_is_shareable_across_tasks() {
    let fake = start().await;
    let mut tasks = vec![];
    for i in 0..8 {
        let f = fake.clone();
        tasks.push(tokio::spawn(async move {
            let r = f
                .register_runner(&Scope::org("acme"), &format!("t{i}"), &[], false)
                .unwrap();
            f.set_online(r.id, true).unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(fake.runners(&Scope::org("acme")).len(), 8);
    assert!(fake.runners(&Scope::org("acme")).iter().all(|r| r.online()));
    fake.shutdown().await;
    // After shutdown the port no longer answers.
    let r = client()
        .get(format!("{}/_fake/health", fake.base_url()))
        .send()
        .await;
    assert!(r.is_err());
}

/// A lost answer: the request is applied, then the client sees a failure.
/// Selected through the control API (generate-jitconfig) and the library
/// (DELETE); only requests that succeed use up the count.
#[tokio::test]
async fn lost_answers_apply_the_request_then_fail() {
    let fake = start().await;
    let c = client();
    let org = Scope::org("acme");
    let jit_url = format!(
        "{}/orgs/acme/actions/runners/generate-jitconfig",
        fake.base_url()
    );
    let r = c
        .post(format!("{}/_fake/faults", fake.base_url()))
        .json(&json!({
            "endpoint": "POST /orgs/{org}/actions/runners/generate-jitconfig",
            "status": 502,
            "count": 1,
            "after_apply": true
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let post = |name: &str| {
        let (c, url, body) = (c.clone(), jit_url.clone(), jit_body(name));
        async move { call(&c, Method::POST, &url, Some(ORG_TOKEN), Some(&body)).await }
    };

    // The client sees a 502 and no JIT config, yet the runner is registered.
    let (status, body) = json_of(post("lost").await).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.get("encoded_jit_config").is_none(), "{body}");
    let lost = fake
        .runners(&org)
        .into_iter()
        .find(|r| r.name == "lost")
        .expect("the lost answer's runner is registered");
    assert_eq!(lost.status, RunnerStatus::Offline);
    let counters = fake.counters();
    assert_eq!(counters.answers_lost, 1);
    assert_eq!(counters.faults_injected, 1);
    let logged = fake.request_log().pop().unwrap();
    assert!(logged.injected && logged.status == 502, "{logged:?}");
    // The count is used up: the next request is answered.
    assert_eq!(post("kept").await.status(), 201);
    assert_eq!(fake.runners(&org).len(), 2);

    // A request that fails on its own keeps its answer and leaves the count.
    fake.inject_fault(Fault::lost_answers(
        Some("DELETE /orgs/{org}/actions/runners/{runner_id}"),
        502,
        1,
    ));
    let delete_url = |id: u64| format!("{}/orgs/acme/actions/runners/{id}", fake.base_url());
    assert_eq!(
        call(
            &c,
            Method::DELETE,
            &delete_url(999_999),
            Some(ORG_TOKEN),
            None
        )
        .await
        .status(),
        404
    );
    assert_eq!(fake.counters().answers_lost, 1);
    // DELETE: the runner is removed although the client saw a 502; a retry
    // then finds it gone.
    assert_eq!(
        call(
            &c,
            Method::DELETE,
            &delete_url(lost.id),
            Some(ORG_TOKEN),
            None
        )
        .await
        .status(),
        502
    );
    assert!(fake.runner(lost.id).is_none());
    assert_eq!(fake.counters().answers_lost, 2);
    assert_eq!(
        call(
            &c,
            Method::DELETE,
            &delete_url(lost.id),
            Some(ORG_TOKEN),
            None
        )
        .await
        .status(),
        404
    );
    // Faults that fire before the request is applied are untouched.
    fake.inject_fault(Fault::times(
        Some("POST /orgs/{org}/actions/runners/generate-jitconfig"),
        502,
        1,
    ));
    assert_eq!(post("refused").await.status(), 502);
    assert!(fake.runners(&org).iter().all(|r| r.name != "refused"));
    fake.shutdown().await;
}

/// The delivery log: newest first, paged by GitHub's cursor, a lost
/// delivery listed as failed, and a redelivery sent as a new delivery of the
/// same GUID (which the log then lists as a success when it is taken).
#[tokio::test]
async fn the_delivery_log_pages_lists_failures_and_redelivers() {
    const HOOKS: &str = "ghp_hooklogreader000000000000000000000000";
    let fake = start().await;
    fake.add_token(HOOKS, &["admin:org_hook"]);
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook", receiver.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/webhook",
        axum::routing::post(|| async { axum::http::StatusCode::ACCEPTED }),
    );
    tokio::spawn(async move { axum::serve(receiver, app).await });
    fake.set_webhook(Some(fake_github::WebhookConfig { url, secret: None }));
    fake.drop_next_webhooks(1);
    for _ in 0..3 {
        fake.queue_job("acme/app", &["linux"]).unwrap();
    }
    fake.wait_for_webhooks(3, std::time::Duration::from_secs(10))
        .await;
    let c = client();
    let base = format!("{}/orgs/acme/hooks/1/deliveries", fake.base_url());
    let r = call(
        &c,
        Method::GET,
        &format!("{base}?per_page=2"),
        Some(HOOKS),
        None,
    )
    .await;
    let link = r.headers()["link"].to_str().unwrap().to_string();
    let (s, first) = json_of(r).await;
    assert_eq!(s, 200);
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.split_once(">; rel=\"next\""))
        .map(|(u, _)| u.to_string())
        .expect("a next link");
    let (_, second) = json_of(call(&c, Method::GET, &next, Some(HOOKS), None).await).await;
    let ids: Vec<u64> = first
        .as_array()
        .unwrap()
        .iter()
        .chain(second.as_array().unwrap())
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{first} {second}");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let lost = &second[0];
    assert_eq!(
        (lost["status_code"].as_u64(), lost["action"].as_str()),
        (Some(0), Some("queued"))
    );
    let (_, failed) = json_of(
        call(
            &c,
            Method::GET,
            &format!("{base}?status=failure"),
            Some(HOOKS),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
    let (s, _) = json_of(
        call(
            &c,
            Method::POST,
            &format!("{base}/{}/attempts", lost["id"]),
            Some(HOOKS),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 202);
    fake.wait_for_webhooks(4, std::time::Duration::from_secs(10))
        .await;
    let (_, all) = json_of(call(&c, Method::GET, &base, Some(HOOKS), None).await).await;
    let again = &all[0];
    assert_eq!(again["guid"], lost["guid"]);
    assert_eq!(
        (again["redelivery"].as_bool(), again["status_code"].as_u64()),
        (Some(true), Some(202))
    );
    let (s, _) = json_of(
        call(
            &c,
            Method::GET,
            &format!("{base}?per_page=2"),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 403, "admin:org is not admin:org_hook");
}
