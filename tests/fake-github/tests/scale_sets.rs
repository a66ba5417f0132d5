//! The Actions service of runner scale sets, driven over HTTP as a client
//! would: registration and admin tokens, runner groups, scale-set CRUD, JIT
//! runners, agents and sessions.

mod common;

use std::time::Duration;

use base64::Engine;
use common::scaleset::*;
use common::*;
use fake_github::{Scope, decode_jit_config};
use reqwest::Method;
use serde_json::{Value, json};

/// The claims of a JWT, read without checking its signature (as clients do).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&raw).unwrap()
}

#[tokio::test]
async fn registration_trades_a_registration_token_for_an_admin_token() {
    let fake = start().await;
    let c = client();
    // GHES style: the API under /api/v3, as ARC derives it from
    // http://127.0.0.1:PORT/acme; its registration token request uses Basic.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("github:{ORG_TOKEN}"));
    let r = c
        .post(format!(
            "{}/orgs/acme/actions/runners/registration-token",
            fake.ghes_url()
        ))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let reg = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let html = format!("{}/acme", fake.base_url());
    let (s, bom, v) = service_json(register(&c, &fake.ghes_url(), &reg, &html).await).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        !bom,
        "the registration answer comes from GitHub's API, not the service"
    );
    let tenant = v["url"].as_str().unwrap();
    assert!(
        tenant.starts_with(&format!("{}/_services/pipelines/", fake.base_url())),
        "{tenant}"
    );
    assert!(tenant.ends_with('/'));
    let admin = claims(v["token"].as_str().unwrap());
    let exp = admin["exp"].as_u64().unwrap();
    assert!(exp.abs_diff(now() + 3600) <= 5, "exp {exp}");
    assert_eq!(admin["scope"], "orgs/acme");

    // github.com style, for a repository and an enterprise.
    let reg = registration_token(&fake.base_url(), "repos/acme/app", ORG_TOKEN).await;
    let (s, _, v) =
        service_json(register(&c, &fake.base_url(), &reg, "https://github.com/acme/app").await)
            .await;
    assert_eq!(s, 200, "{v}");
    assert_ne!(
        v["url"].as_str().unwrap(),
        tenant,
        "each scope has its tenant"
    );
    let reg = registration_token(&fake.base_url(), "enterprises/bigcorp", ENT_TOKEN).await;
    let html = format!("{}/enterprises/bigcorp", fake.base_url());
    assert_eq!(
        register(&c, &fake.base_url(), &reg, &html).await.status(),
        200
    );

    // A token the fake never issued, another scope's URL, a bad event.
    let r = register(&c, &fake.base_url(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &html).await;
    assert_eq!(r.status(), 401);
    let reg = registration_token(&fake.base_url(), "orgs/acme", ORG_TOKEN).await;
    let r = register(
        &c,
        &fake.base_url(),
        &reg,
        &format!("{}/other", fake.base_url()),
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = c
        .post(format!("{}/actions/runner-registration", fake.base_url()))
        .header("authorization", format!("RemoteAuth {reg}"))
        .json(&json!({"url": format!("{}/acme", fake.base_url()), "runner_event": "remove"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = c
        .post(format!("{}/actions/runner-registration", fake.base_url()))
        .json(&json!({"url": format!("{}/acme", fake.base_url()), "runner_event": "register"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The admin token's lifetime is a setting.
    fake.set_admin_token_ttl(Duration::from_secs(120));
    let svc = Service::connect(&fake).await;
    assert!(
        claims(&svc.admin)["exp"]
            .as_u64()
            .unwrap()
            .abs_diff(now() + 120)
            <= 5
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn service_calls_need_a_valid_admin_token_and_the_api_version() {
    let fake = start().await;
    let svc = Service::connect(&fake).await;
    let (s, v) = svc.get("_apis/runtime/runnerscalesets").await;
    assert_eq!((s, v["count"].as_u64()), (200, Some(0)), "{v}");

    // Without api-version.
    let r = svc
        .c
        .get(format!("{}_apis/runtime/runnerscalesets", svc.tenant))
        .header("authorization", format!("Bearer {}", svc.admin))
        .send()
        .await
        .unwrap();
    let (s, bom, v) = service_json(r).await;
    assert_eq!(s, 400);
    assert!(bom, "service answers start with a BOM by default");
    assert!(
        v["typeName"]
            .as_str()
            .unwrap()
            .contains("VssVersionNotSpecifiedException"),
        "{v}"
    );

    // Another tenant's token, a garbage token, no token.
    let other = Service::connect_as(&fake, "repos/acme/app", "acme/app", ORG_TOKEN).await;
    for auth in [
        format!("Bearer {}", other.admin),
        "Bearer abc.def.ghi".into(),
        String::new(),
    ] {
        let mut req = svc.c.get(svc.url("_apis/runtime/runnerscalesets"));
        if !auth.is_empty() {
            req = req.header("authorization", auth);
        }
        assert_eq!(req.send().await.unwrap().status(), 401);
    }

    // An expired admin token: 401 until the client registers again.
    fake.expire_admin_tokens();
    let (s, _) = svc.get("_apis/runtime/runnerscalesets").await;
    assert_eq!(s, 401);
    let fresh = Service::connect(&fake).await;
    let (s, _) = fresh.get("_apis/runtime/runnerscalesets").await;
    assert_eq!(s, 200);
    fake.set_admin_token_ttl(Duration::from_secs(1));
    let short = Service::connect(&fake).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, _) = short.get("_apis/runtime/runnerscalesets").await;
    assert_eq!(s, 401);

    // Unknown service paths are 404 in the service's shape.
    let (s, v) = fresh.get("_apis/runtime/nothing").await;
    assert_eq!(s, 404, "{v}");
    fake.shutdown().await;
}

#[tokio::test]
async fn runner_groups_and_scale_set_crud() {
    let fake = start().await;
    let gpu = fake.create_group(&Scope::org("acme"), "gpu").unwrap();
    let svc = Service::connect(&fake).await;

    let (s, v) = svc
        .get("_apis/runtime/runnergroups/?groupName=default")
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["count"], 1);
    assert_eq!(v["value"][0]["id"], 1);
    assert_eq!(v["value"][0]["isDefaultGroup"], true);
    let (_, v) = svc.get("_apis/runtime/runnergroups/?groupName=GPU").await;
    assert_eq!(v["value"][0]["id"], gpu.id);
    let (_, v) = svc.get("_apis/runtime/runnergroups/?groupName=none").await;
    assert_eq!(v["count"], 0);
    let repo = Service::connect_as(&fake, "repos/acme/app", "acme/app", ORG_TOKEN).await;
    let (_, v) = repo.get("_apis/runtime/runnergroups/").await;
    assert_eq!(
        v["count"], 1,
        "a repository has only the default group: {v}"
    );

    let created = svc.create_scale_set("linux-x64", gpu.id).await;
    let id = created["id"].as_u64().unwrap();
    assert_eq!(created["name"], "linux-x64");
    assert_eq!(created["runnerGroupId"], gpu.id);
    assert_eq!(created["runnerGroupName"], "gpu");
    assert_eq!(created["labels"][0]["name"], "linux-x64");
    assert_eq!(created["RunnerSetting"]["disableUpdate"], true);
    assert_eq!(created["statistics"]["totalAssignedJobs"], 0);
    assert!(
        created["runnerJitConfigUrl"]
            .as_str()
            .unwrap()
            .starts_with(&svc.tenant)
    );
    assert_eq!(fake.scale_set(id).unwrap().scope, Scope::org("acme"));

    // Find: by group and name; another group finds nothing.
    let (_, v) = svc
        .json(
            Method::GET,
            &format!(
                "_apis/runtime/runnerscalesets?runnerGroupId={}&name=linux-x64",
                gpu.id
            ),
            None,
        )
        .await;
    assert_eq!(
        (v["count"].as_u64(), v["value"][0]["id"].as_u64()),
        (Some(1), Some(id))
    );
    let (_, v) = svc
        .get("_apis/runtime/runnerscalesets?runnerGroupId=1&name=linux-x64")
        .await;
    assert_eq!(v["count"], 0);
    // The name is unique in the scope; another scope does not see it.
    let body = json!({"name": "linux-x64", "runnerGroupId": 1, "labels": []});
    let (s, v) = svc
        .json(Method::POST, "_apis/runtime/runnerscalesets", Some(&body))
        .await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = repo
        .get(&format!("_apis/runtime/runnerscalesets/{id}"))
        .await;
    assert_eq!(s, 404);
    assert!(
        v["typeName"]
            .as_str()
            .unwrap()
            .contains("RunnerScaleSetNotFoundException")
    );
    // An unknown group.
    let body = json!({"name": "x", "runnerGroupId": 999});
    let (s, _) = svc
        .json(Method::POST, "_apis/runtime/runnerscalesets", Some(&body))
        .await;
    assert_eq!(s, 404);

    // Patch: name and group change, labels stay.
    let body = json!({"name": "renamed", "runnerGroupId": 1, "labels": [{"name": "other", "type": "System"}]});
    let (s, v) = svc
        .json(
            Method::PATCH,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            Some(&body),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["runnerGroupId"].as_u64()),
        (Some("renamed"), Some(1))
    );
    assert_eq!(v["labels"][0]["name"], "linux-x64");
    let (s, v) = svc
        .get(&format!("_apis/runtime/runnerscalesets/{id}"))
        .await;
    assert_eq!((s, v["name"].as_str()), (200, Some("renamed")));

    let (s, _) = svc
        .delete(&format!("_apis/runtime/runnerscalesets/{id}"))
        .await;
    assert_eq!(s, 204);
    let (s, _) = svc
        .get(&format!("_apis/runtime/runnerscalesets/{id}"))
        .await;
    assert_eq!(s, 404);
    assert!(fake.scale_sets().is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn jit_runners_are_runners_of_the_scope() {
    let fake = start().await;
    let gpu = fake.create_group(&Scope::org("acme"), "gpu").unwrap();
    let svc = Service::connect(&fake).await;
    let set = svc.create_scale_set("arc-set", gpu.id).await;
    let id = set["id"].as_u64().unwrap();

    let (runner_id, encoded) = svc.jit(id, "arc-set-runner-1").await;
    let info = decode_jit_config(&encoded).expect("decodes like any JIT config");
    assert_eq!(
        (info.id, info.name.as_str()),
        (runner_id, "arc-set-runner-1")
    );
    assert_eq!(info.runner_group_id, gpu.id);
    let r = fake.runner(runner_id).unwrap();
    assert!(r.ephemeral && r.jit);
    assert_eq!(r.scale_set_id, Some(id));
    assert_eq!(r.runner_group_id, gpu.id);
    assert_eq!(
        r.labels.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["arc-set"]
    );

    // It is in the scope's REST runner list.
    let c = client();
    let (s, v) = json_of(
        call(
            &c,
            Method::GET,
            &format!("{}/orgs/acme/actions/runners", fake.base_url()),
            Some(ORG_TOKEN),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["runners"][0]["id"], runner_id);
    assert_eq!(v["runners"][0]["runner_group_id"], gpu.id);

    // The same name again: AgentExistsException (409); look it up by name.
    let (s, v) = svc
        .json(
            Method::POST,
            &format!("_apis/runtime/runnerscalesets/{id}/generatejitconfig"),
            Some(&json!({"name": "arc-set-runner-1", "workFolder": ""})),
        )
        .await;
    assert_eq!(s, 409);
    assert!(
        v["typeName"]
            .as_str()
            .unwrap()
            .contains("AgentExistsException"),
        "{v}"
    );
    let (s, v) = svc
        .get("_apis/distributedtask/pools/0/agents?agentName=arc-set-runner-1")
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["count"], 1);
    assert_eq!(v["value"][0]["runnerScaleSetId"], id);
    let (s, v) = svc
        .get(&format!("_apis/distributedtask/pools/0/agents/{runner_id}"))
        .await;
    assert_eq!((s, v["name"].as_str()), (200, Some("arc-set-runner-1")));
    let (s, _) = svc
        .json(
            Method::POST,
            "_apis/runtime/runnerscalesets/999/generatejitconfig",
            Some(&json!({"name": "x"})),
        )
        .await;
    assert_eq!(s, 404);

    // Statistics count it; removal is 204, then AgentNotFoundException (a
    // second removal is 204 again: see `removing_a_runner_again_succeeds`).
    assert_eq!(fake.scale_set_statistics(id).total_registered_runners, 1);
    fake.set_online(runner_id, true).unwrap();
    assert_eq!(fake.scale_set_statistics(id).total_idle_runners, 1);
    let path = format!("_apis/distributedtask/pools/0/agents/{runner_id}");
    assert_eq!(svc.delete(&path).await.0, 204);
    let (s, v) = svc.get(&path).await;
    assert_eq!(s, 404);
    assert!(
        v["typeName"]
            .as_str()
            .unwrap()
            .contains("AgentNotFoundException")
    );
    assert!(fake.runner(runner_id).is_none());
    fake.shutdown().await;
}

#[tokio::test]
async fn a_busy_runner_cannot_be_removed() {
    let fake = start().await;
    let svc = Service::connect(&fake).await;
    let id = svc.create_scale_set("busy-set", 1).await["id"]
        .as_u64()
        .unwrap();
    let (runner_id, _) = svc.jit(id, "busy-1").await;
    fake.set_online(runner_id, true).unwrap();
    let job = fake.queue_job("acme/app", &["busy-set"]).unwrap();
    assert_eq!(fake.job(job).unwrap().runner_id, Some(runner_id));

    let path = format!("_apis/distributedtask/pools/0/agents/{runner_id}");
    let (s, v) = svc.delete(&path).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["typeName"]
            .as_str()
            .unwrap()
            .contains("JobStillRunningException"),
        "{v}"
    );
    assert_eq!(fake.busy_delete_attempts(), 1);
    assert!(fake.runner(runner_id).is_some());
    // The job ends: the ephemeral runner is gone, as on GitHub.
    fake.finish_job(job).unwrap();
    assert!(fake.runner(runner_id).is_none());
    assert_eq!(svc.delete(&path).await.0, 204);
    fake.shutdown().await;
}

/// actions-runner-controller v0.27.6 scales down by removing an idle runner
/// (its EphemeralRunnerSet) and then again (the EphemeralRunner's finalizer),
/// and fails on anything but 204: the second removal, and one of a runner
/// the scope never had, succeed without touching any runner.
#[tokio::test]
async fn removing_a_runner_again_succeeds() {
    let fake = start().await;
    let svc = Service::connect(&fake).await;
    let id = svc.create_scale_set("twice-set", 1).await["id"]
        .as_u64()
        .unwrap();
    let (gone, _) = svc.jit(id, "twice-1").await;
    let (kept, _) = svc.jit(id, "twice-2").await;
    let path = |r: u64| format!("_apis/distributedtask/pools/0/agents/{r}");
    assert_eq!(svc.delete(&path(gone)).await.0, 204);
    assert!(fake.runner(gone).is_none());
    assert_eq!(svc.delete(&path(gone)).await.0, 204);
    assert_eq!(svc.delete(&path(999_999)).await.0, 204);
    assert!(fake.runner(kept).is_some());
    assert_eq!(fake.scale_set_statistics(id).total_registered_runners, 1);
    // Looking one up still tells it is gone.
    assert_eq!(svc.get(&path(gone)).await.0, 404);
    fake.shutdown().await;
}

#[tokio::test]
async fn one_session_per_scale_set() {
    let fake = start().await;
    let svc = Service::connect(&fake).await;
    let id = svc.create_scale_set("sessions", 1).await["id"]
        .as_u64()
        .unwrap();
    let first = svc.session(id).await;
    assert!(
        first.queue_url.starts_with(&svc.tenant),
        "{}",
        first.queue_url
    );
    assert_eq!(fake.sessions().len(), 1);
    assert_eq!(fake.sessions()[0].owner_name, "listener-host");
    let sessions = format!("_apis/runtime/runnerscalesets/{id}/sessions");
    let body = json!({"ownerName": "second"});
    let (s, v) = svc.json(Method::POST, &sessions, Some(&body)).await;
    assert_eq!(s, 409);
    assert!(
        v["typeName"]
            .as_str()
            .unwrap()
            .contains("RunnerScaleSetSessionConflictException")
    );

    // Refresh: a new queue token for the same session.
    let (s, v) = svc
        .json(Method::PATCH, &format!("{sessions}/{}", first.id), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let refreshed = Session::from_json(&v);
    assert_eq!(refreshed.id, first.id);
    assert_ne!(refreshed.queue_token, first.queue_token);

    // Delete, then another can be created.
    assert_eq!(
        svc.json(Method::DELETE, &format!("{sessions}/{}", first.id), None)
            .await
            .0,
        204
    );
    assert_eq!(
        svc.json(Method::DELETE, &format!("{sessions}/{}", first.id), None)
            .await
            .0,
        404
    );
    let second = svc.session(id).await;

    // A session nobody polls expires.
    fake.set_session_timeout(Duration::from_millis(300));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fake.sessions().is_empty());
    let (s, _) = svc
        .json(Method::PATCH, &format!("{sessions}/{}", second.id), None)
        .await;
    assert_eq!(s, 404, "the service lost it");
    let third = svc.session(id).await;

    // The service loses sessions: polls 401, refresh 404, create works.
    fake.set_session_timeout(Duration::from_secs(120));
    fake.drop_sessions();
    let (s, _) = third.poll(&svc.c, None).await;
    assert_eq!(s, 401);
    let (s, _) = svc
        .json(Method::PATCH, &format!("{sessions}/{}", third.id), None)
        .await;
    assert_eq!(s, 404);
    svc.session(id).await;
    fake.shutdown().await;
}
