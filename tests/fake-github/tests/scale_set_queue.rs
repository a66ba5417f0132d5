//! The message queue of a scale-set session and the job life cycle it
//! reports: long polls, envelopes, acks and redelivery, statistics, the
//! acquire mode, re-offers, token expiry and faults.

mod common;

use std::time::{Duration, Instant};

use common::scaleset::*;
use common::*;
use fake_github::{Config, Fault, JobStatus, ServiceSettings};
use reqwest::Method;
use serde_json::{Value, json};

/// A fake with short polls, a scale set `set` of `acme` and its session.
async fn setup(settings: ServiceSettings) -> (fake_github::FakeGitHub, Service, u64, Session) {
    let fake = start_with(Config {
        actions: ServiceSettings {
            long_poll: Duration::from_millis(500),
            ..settings
        },
        ..Config::default()
    })
    .await;
    let svc = Service::connect(&fake).await;
    let id = svc.create_scale_set("set", 1).await["id"].as_u64().unwrap();
    let session = svc.session(id).await;
    (fake, svc, id, session)
}

async fn control_get(c: &reqwest::Client, url: &str) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// Polls until a message comes (at most `tries` long polls).
async fn next_message(session: &Session, c: &reqwest::Client, last: Option<u64>) -> Value {
    for _ in 0..10 {
        let (s, v) = session.poll(c, last).await;
        match s {
            200 => return v,
            202 => continue,
            other => panic!("poll answered {other}: {v}"),
        }
    }
    panic!("no message came")
}

#[tokio::test]
async fn an_empty_queue_answers_202_after_the_long_poll() {
    let (fake, svc, _, session) = setup(ServiceSettings::default()).await;
    let t = Instant::now();
    let (s, v) = session.poll(&svc.c, None).await;
    assert_eq!((s, v), (202, Value::Null));
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(fake.sessions()[0].max_capacity, Some(10));
    // A poll keeps the session alive past its timeout.
    fake.set_session_timeout(Duration::from_millis(300));
    fake.set_long_poll(Duration::from_millis(800));
    assert_eq!(session.poll(&svc.c, None).await.0, 202);
    assert_eq!(fake.sessions().len(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_job_for_the_scale_set_goes_through_its_life_cycle() {
    let (fake, svc, id, session) = setup(ServiceSettings::default()).await;
    assert_eq!(session.statistics["totalAssignedJobs"], 0);
    let job = fake.queue_job("acme/app", &["set"]).unwrap();

    // Assigned at once (github.com style): JobAssigned, double-encoded.
    let env = next_message(&session, &svc.c, None).await;
    assert_eq!(env["messageType"], "RunnerScaleSetJobMessages");
    assert!(env["body"].is_string());
    let msgs = job_messages(&env);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m["messageType"], "JobAssigned");
    assert_eq!(
        (m["repositoryName"].as_str(), m["ownerName"].as_str()),
        (Some("app"), Some("acme"))
    );
    assert_eq!(m["jobId"], job.to_string());
    assert_eq!(m["requestLabels"], json!(["set"]));
    assert!(m["runnerRequestId"].as_u64().unwrap() > 0);
    assert_eq!(env["statistics"]["totalAssignedJobs"], 1);
    assert_eq!(env["statistics"]["totalAcquiredJobs"], 1);
    assert_eq!(fake.job(job).unwrap().status, JobStatus::Queued);

    // Not acknowledged: the same message again. Acknowledged: gone.
    let again = next_message(&session, &svc.c, None).await;
    assert_eq!(again["messageId"], env["messageId"]);
    let mid = env["messageId"].as_u64().unwrap();
    assert_eq!(session.ack(&svc.c, mid).await, 204);
    assert_eq!(session.ack(&svc.c, mid).await, 204, "acks are idempotent");
    assert_eq!(session.ack(&svc.c, 999_999).await, 404);
    // The queue URL has a query: a client that glues `/{id}` onto it misses.
    let glued = svc
        .c
        .delete(format!("{}/{mid}", session.queue_url))
        .header("authorization", format!("Bearer {}", session.queue_token))
        .send()
        .await
        .unwrap();
    assert_eq!(glued.status(), 404, "DELETE …/messages is no route");
    // Another session's id in the query: refused.
    let other = session
        .queue_url
        .replace(&session.id, "00000000-0000-4000-8000-000000000000");
    let r = svc
        .c
        .get(other)
        .header("authorization", format!("Bearer {}", session.queue_token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(session.poll(&svc.c, Some(mid)).await.0, 202);

    // A runner of the scale set comes online: the job starts on it.
    let (runner_id, encoded) = svc.jit(id, "set-runner-1").await;
    let info = fake_github::decode_jit_config(&encoded).unwrap();
    fake.set_online(info.id, true).unwrap();
    let env = next_message(&session, &svc.c, Some(mid)).await;
    let started = &job_messages(&env)[0];
    assert_eq!(started["messageType"], "JobStarted");
    assert_eq!(
        (started["runnerId"].as_u64(), started["runnerName"].as_str()),
        (Some(runner_id), Some("set-runner-1"))
    );
    assert_eq!(env["statistics"]["totalRunningJobs"], 1);
    assert_eq!(env["statistics"]["totalBusyRunners"], 1);
    assert_eq!(fake.job(job).unwrap().runner_id, Some(runner_id));
    let mid = env["messageId"].as_u64().unwrap();
    assert_eq!(session.ack(&svc.c, mid).await, 204);

    // It completes: JobCompleted, and the ephemeral runner is gone.
    fake.finish_job(job).unwrap();
    let env = next_message(&session, &svc.c, Some(mid)).await;
    let done = &job_messages(&env)[0];
    assert_eq!(done["messageType"], "JobCompleted");
    assert_eq!(done["result"], "succeeded");
    assert_eq!(done["runnerId"], runner_id);
    assert!(fake.runner(runner_id).is_none());
    // workflow_job webhooks fire as for any job.
    let hooks = fake.wait_for_webhooks(3, Duration::from_secs(5)).await;
    let actions: Vec<&str> = hooks
        .iter()
        .filter(|d| d.job_id == job)
        .map(|d| d.action.as_str())
        .collect();
    assert_eq!(actions, ["queued", "in_progress", "completed"]);
    let stats = fake.scale_set_statistics(id);
    assert_eq!(
        (stats.total_assigned_jobs, stats.total_registered_runners),
        (0, 0)
    );

    // A poll with lastMessageId acknowledges up to it.
    let job2 = fake.queue_job("acme/app", &["set"]).unwrap();
    let env2 = next_message(&session, &svc.c, Some(env["messageId"].as_u64().unwrap())).await;
    assert_ne!(env2["messageId"], env["messageId"]);
    fake.finish_job(job2).unwrap();
    let env3 = next_message(&session, &svc.c, Some(env2["messageId"].as_u64().unwrap())).await;
    assert_eq!(kinds(&env3), ["JobCompleted"]);
    assert_eq!(job_messages(&env3)[0]["result"], "canceled");
    fake.shutdown().await;
}

#[tokio::test]
async fn jobs_go_to_the_scale_set_their_repository_reaches() {
    let fake = start().await;
    let org = Service::connect(&fake).await;
    let repo = Service::connect_as(&fake, "repos/acme/app", "acme/app", ORG_TOKEN).await;
    let ent = Service::connect_as(
        &fake,
        "enterprises/bigcorp",
        "enterprises/bigcorp",
        ENT_TOKEN,
    )
    .await;
    let repo_set = repo.create_scale_set("shared", 1).await["id"]
        .as_u64()
        .unwrap();
    let org_set = org.create_scale_set("shared", 1).await["id"]
        .as_u64()
        .unwrap();
    let ent_set = ent.create_scale_set("ent-only", 1).await["id"]
        .as_u64()
        .unwrap();
    // The repository's own scale set first, then the organization's.
    let on_app = fake.queue_job("acme/app", &["shared"]).unwrap();
    let on_lib = fake.queue_job("acme/lib", &["shared"]).unwrap();
    let on_ent = fake.queue_job("acme/lib", &["ent-only"]).unwrap();
    assert_eq!(fake.job(on_app).unwrap().scale_set_id, Some(repo_set));
    assert_eq!(fake.job(on_lib).unwrap().scale_set_id, Some(org_set));
    assert_eq!(fake.job(on_ent).unwrap().scale_set_id, Some(ent_set));
    assert!(fake.job(on_ent).unwrap().runner_request_id.is_some());

    // A group that does not grant the repository access: not routed.
    let c = client();
    let (s, g) = json_of(
        call(
            &c,
            Method::POST,
            &format!("{}/orgs/acme/actions/runner-groups", fake.base_url()),
            Some(ORG_TOKEN),
            Some(&json!({"name": "private-group", "visibility": "selected"})),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{g}");
    let hidden = org
        .create_scale_set("hidden", g["id"].as_u64().unwrap())
        .await;
    let job = fake.queue_job("acme/app", &["hidden"]).unwrap();
    assert_eq!(fake.job(job).unwrap().scale_set_id, None);
    assert_eq!(
        fake.scale_set_statistics(hidden["id"].as_u64().unwrap())
            .total_assigned_jobs,
        0
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn jobs_of_other_labels_or_unreachable_scale_sets_are_not_routed() {
    let fake = start().await;
    fake.add_org("other");
    fake.add_repo("other", "x");
    let svc = Service::connect(&fake).await;
    let id = svc.create_scale_set("set", 1).await["id"].as_u64().unwrap();
    let not_only = fake.queue_job("acme/app", &["self-hosted", "set"]).unwrap();
    let other_org = fake.queue_job("other/x", &["set"]).unwrap();
    let routed = fake.queue_job("acme/lib", &["SET"]).unwrap();
    assert_eq!(fake.scale_set_statistics(id).total_assigned_jobs, 1);
    // A classic runner with the label does not take the scale set's job,
    // and scale-set runners take no other jobs.
    let classic = fake
        .register_runner(&fake_github::Scope::org("acme"), "classic", &["set"], false)
        .unwrap();
    fake.set_online(classic.id, true).unwrap();
    assert_eq!(fake.job(not_only).unwrap().runner_id, Some(classic.id));
    assert_eq!(fake.job(routed).unwrap().status, JobStatus::Queued);
    assert_eq!(fake.job(other_org).unwrap().status, JobStatus::Queued);
    fake.shutdown().await;
}

#[tokio::test]
async fn statistics_of_a_new_session_tell_what_it_missed() {
    let fake = start().await;
    let svc = Service::connect(&fake).await;
    let id = svc.create_scale_set("set", 1).await["id"].as_u64().unwrap();
    fake.queue_job("acme/app", &["set"]).unwrap();
    fake.queue_job("acme/app", &["set"]).unwrap();
    let session = svc.session(id).await;
    assert_eq!(session.statistics["totalAssignedJobs"], 2);
    assert_eq!(session.statistics["totalAvailableJobs"], 0);
    fake.set_long_poll(Duration::from_millis(200));
    assert_eq!(
        session.poll(&svc.c, None).await.0,
        202,
        "messages before the session are lost"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn at_most_fifty_job_messages_an_envelope() {
    let (fake, svc, _, session) = setup(ServiceSettings::default()).await;
    for _ in 0..60 {
        fake.queue_job("acme/app", &["set"]).unwrap();
    }
    let first = next_message(&session, &svc.c, None).await;
    assert_eq!(job_messages(&first).len(), 50);
    assert_eq!(first["statistics"]["totalAssignedJobs"], 60);
    let second = next_message(&session, &svc.c, first["messageId"].as_u64()).await;
    assert_eq!(job_messages(&second).len(), 10);
    fake.shutdown().await;
}

#[tokio::test]
async fn acquire_mode_offers_jobs_until_acquired() {
    let (fake, svc, id, session) = setup(ServiceSettings {
        acquire_mode: true,
        ..Default::default()
    })
    .await;
    let job = fake.queue_job("acme/app", &["set"]).unwrap();
    let env = next_message(&session, &svc.c, None).await;
    let offer = &job_messages(&env)[0];
    assert_eq!(offer["messageType"], "JobAvailable");
    let acquire_url = offer["acquireJobUrl"].as_str().unwrap();
    assert!(acquire_url.starts_with(&svc.tenant), "{acquire_url}");
    assert_eq!(env["statistics"]["totalAvailableJobs"], 1);
    assert_eq!(env["statistics"]["totalAssignedJobs"], 0);
    let request_id = offer["runnerRequestId"].as_u64().unwrap();
    session
        .ack(&svc.c, env["messageId"].as_u64().unwrap())
        .await;

    // What a new listener would find.
    let (s, v) = svc
        .get(&format!(
            "_apis/runtime/runnerscalesets/{id}/acquirablejobs"
        ))
        .await;
    assert_eq!((s, v["count"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(v["value"][0]["runnerRequestId"], request_id);

    // acquirejobs takes the queue token, not the admin token; the URL is
    // the tenant joined with another `/`, as ARC builds it.
    let url = format!(
        "{}/_apis/runtime/runnerscalesets/{id}/acquirejobs?api-version=6.0-preview",
        svc.tenant.trim_end_matches('/')
    );
    let url = url.replacen("/_apis", "//_apis", 1);
    let with = |token: &str| {
        svc.c
            .post(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(json!([request_id, 123]).to_string())
    };
    assert_eq!(with(&svc.admin).send().await.unwrap().status(), 401);
    let (s, _, v) = service_json(with(&session.queue_token).send().await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"count": 1, "value": [request_id]}));
    let env = next_message(&session, &svc.c, None).await;
    assert_eq!(kinds(&env), ["JobAssigned"]);
    assert_eq!(env["statistics"]["totalAssignedJobs"], 1);
    assert_eq!(env["statistics"]["totalAvailableJobs"], 0);
    assert_eq!(fake.job(job).unwrap().status, JobStatus::Queued);
    fake.shutdown().await;
}

#[tokio::test]
async fn an_unstarted_job_is_reoffered_up_to_three_times() {
    let (fake, svc, id, session) = setup(ServiceSettings {
        reassign_after: Some(Duration::from_millis(150)),
        ..Default::default()
    })
    .await;
    fake.queue_job("acme/app", &["set"]).unwrap();
    let mut seen = Vec::new();
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline && seen.len() < 7 {
        let (s, env) = session.poll(&svc.c, last).await;
        if s == 200 {
            seen.extend(kinds(&env));
            last = env["messageId"].as_u64();
        }
    }
    assert_eq!(
        seen,
        [
            "JobAssigned",
            "JobCompleted",
            "JobAssigned",
            "JobCompleted",
            "JobAssigned",
            "JobCompleted",
            "JobAssigned"
        ]
    );
    // Then it waits for a runner.
    fake.set_long_poll(Duration::from_millis(800));
    assert_eq!(session.poll(&svc.c, last).await.0, 202);
    assert_eq!(fake.scale_set_statistics(id).total_assigned_jobs, 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn an_expired_queue_token_is_refused_until_the_session_is_refreshed() {
    let (fake, svc, id, session) = setup(ServiceSettings::default()).await;
    fake.expire_queue_tokens();
    let (s, _) = session.poll(&svc.c, None).await;
    assert_eq!(s, 401);
    assert_eq!(session.ack(&svc.c, 1).await, 401);
    let (s, v) = svc
        .json(
            Method::PATCH,
            &format!("_apis/runtime/runnerscalesets/{id}/sessions/{}", session.id),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let refreshed = Session::from_json(&v);
    assert_eq!(refreshed.poll(&svc.c, None).await.0, 202);

    // Tokens also expire with time.
    fake.set_queue_token_ttl(Duration::from_secs(1));
    let (_, v) = svc
        .json(
            Method::PATCH,
            &format!("_apis/runtime/runnerscalesets/{id}/sessions/{}", session.id),
            None,
        )
        .await;
    let short = Session::from_json(&v);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(short.poll(&svc.c, None).await.0, 401);
    fake.shutdown().await;
}

#[tokio::test]
async fn faults_reach_the_service_endpoints() {
    let (fake, svc, id, session) = setup(ServiceSettings::default()).await;
    const POLL: &str = "GET /_apis/runtime/runnerscalesets/{id}/messages";
    const JIT: &str = "POST /_apis/runtime/runnerscalesets/{id}/generatejitconfig";

    fake.inject_fault(Fault::times(Some(POLL), 502, 1));
    let (s, _) = session.poll(&svc.c, None).await;
    assert_eq!(s, 502);
    assert_eq!(fake.counters().endpoint_status(POLL, 502), 1);

    // A lost answer: the runner exists though the client saw a 502.
    fake.inject_fault(Fault::lost_answers(Some(JIT), 502, 1));
    let (s, _) = svc
        .json(
            Method::POST,
            &format!("_apis/runtime/runnerscalesets/{id}/generatejitconfig"),
            Some(&json!({"name": "lost"})),
        )
        .await;
    assert_eq!(s, 502);
    assert_eq!(fake.counters().answers_lost, 1);
    let (_, v) = svc
        .get("_apis/distributedtask/pools/0/agents?agentName=lost")
        .await;
    assert_eq!(v["count"], 1);

    // A lost poll answer: the message comes again.
    fake.queue_job("acme/app", &["set"]).unwrap();
    fake.inject_fault(Fault::lost_answers(Some(POLL), 504, 1));
    let (s, _) = session.poll(&svc.c, None).await;
    assert_eq!(s, 504);
    assert_eq!(
        kinds(&next_message(&session, &svc.c, None).await),
        ["JobAssigned"]
    );

    // A dropped connection.
    fake.inject_fault(Fault::times(
        Some("POST /_apis/runtime/runnerscalesets/{id}/sessions"),
        fake_github::DROP_CONNECTION,
        1,
    ));
    let r = svc
        .c
        .post(svc.url(&format!("_apis/runtime/runnerscalesets/{id}/sessions")))
        .header("authorization", format!("Bearer {}", svc.admin))
        .json(&json!({"ownerName": "x"}))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");

    // GitHub down; registration too.
    fake.set_unavailable(true);
    assert_eq!(svc.get("_apis/runtime/runnerscalesets").await.0, 503);
    fake.set_unavailable(false);

    // Counted and logged under template names, never with a token.
    assert!(fake.received("generatejitconfig") >= 1);
    assert!(
        fake.counters()
            .endpoint("POST /actions/runner-registration")
            >= 1
    );
    let log = fake.request_log();
    assert!(
        log.iter()
            .any(|l| l.endpoint == POLL && l.credential == format!("actions-queue:{id}"))
    );
    assert!(log.iter().any(|l| l.credential == "actions:orgs/acme"));
    let dump = serde_json::to_string(&log).unwrap();
    assert!(!dump.contains(&svc.admin) && !dump.contains(&session.queue_token));
    fake.shutdown().await;
}

#[tokio::test]
async fn control_endpoints_mirror_the_handle() {
    let fake = start().await;
    let c = client();
    let base = fake.base_url();
    let r = c
        .put(format!("{base}/_fake/settings"))
        .json(
            &json!({"acquire_mode": true, "long_poll_secs": 1.5, "session_timeout_secs": 30,
                      "queue_token_ttl_secs": 60, "admin_token_ttl_secs": 90,
                      "reassign_after_secs": 2, "service_bom": "never"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let s = fake.actions_settings();
    assert!(s.acquire_mode);
    assert_eq!(s.long_poll, Duration::from_millis(1500));
    assert_eq!(s.reassign_after, Some(Duration::from_secs(2)));
    assert_eq!(s.bom, fake_github::ServiceBom::Never);

    let svc = Service::connect(&fake).await;
    let r = svc
        .send(Method::GET, "_apis/runtime/runnerscalesets", None)
        .await;
    assert!(!r.bytes().await.unwrap().starts_with(BOM));
    let id = svc.create_scale_set("set", 1).await["id"].as_u64().unwrap();
    svc.session(id).await;
    let v = control_get(&c, &format!("{base}/_fake/scale-sets")).await;
    assert_eq!(v[0]["name"], "set");
    let v = control_get(&c, &format!("{base}/_fake/scale-sets/{id}")).await;
    assert_eq!(v["statistics"]["totalAssignedJobs"], 0);
    let v = control_get(&c, &format!("{base}/_fake/sessions")).await;
    assert_eq!(v[0]["scale_set_id"], id);
    for path in ["queue-tokens/expire", "admin-tokens/expire"] {
        assert_eq!(
            c.post(format!("{base}/_fake/{path}"))
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
    }
    assert_eq!(svc.get("_apis/runtime/runnerscalesets").await.0, 401);
    assert_eq!(
        c.delete(format!("{base}/_fake/sessions"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert!(fake.sessions().is_empty());
    fake.shutdown().await;
}
