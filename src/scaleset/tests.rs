//! The call sequence of [`ActionsService`] against a narrow in-test server
//! that plays both GitHub's REST API (the registration token) and the
//! Actions service (runner registration, tenant, message queue): what is
//! sent, with which token, and what each answer becomes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::*;
use crate::github::client::{ClientOptions, GitHubClient};
use crate::github::{Credentials, Endpoint, Scope};

const REST_TOKEN: &str = "ghp_rest_token";
const QUEUE_TOKEN: &str = "QUEUE-TOKEN-1";
const BOM: &str = "\u{feff}";

/// A JWT whose `exp` is `seconds` from now; its id tells tokens apart.
fn admin_jwt(id: &str, seconds: u64) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + seconds;
    let claims = URL_SAFE_NO_PAD.encode(json!({"exp": exp, "jti": id}).to_string());
    format!("eyJhbGciOiJSUzI1NiJ9.{claims}.sig-{id}")
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    query: String,
    authorization: String,
    accept: String,
    capacity: String,
    body: String,
}

struct Scripted {
    status: u16,
    body: String,
    delay: Duration,
}

struct FakeState {
    base: String,
    /// Answers by `METHOD /path`, used up in order before the defaults.
    scripts: Mutex<HashMap<String, VecDeque<Scripted>>>,
    seen: Mutex<Vec<(String, Seen)>>,
    /// Admin tokens handed out in turn; the last one stays.
    admin_tokens: Mutex<VecDeque<String>>,
    registration_tokens: AtomicU32,
}

struct Fake {
    state: Arc<FakeState>,
}

impl Fake {
    async fn start() -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(FakeState {
            base,
            scripts: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            admin_tokens: Mutex::new(VecDeque::from([admin_jwt("a1", 3600)])),
            registration_tokens: AtomicU32::new(0),
        });
        let app = Router::new().fallback(answer).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake { state }
    }

    fn base(&self) -> &str {
        &self.state.base
    }

    fn script(&self, key: &str, status: u16, body: impl Into<String>) {
        self.script_after(key, Duration::ZERO, status, body);
    }

    fn script_after(&self, key: &str, delay: Duration, status: u16, body: impl Into<String>) {
        self.state
            .scripts
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .push_back(Scripted {
                status,
                body: body.into(),
                delay,
            });
    }

    fn admin_tokens(&self, tokens: &[String]) {
        *self.state.admin_tokens.lock().unwrap() = tokens.iter().cloned().collect();
    }

    fn seen(&self, key: &str) -> Vec<Seen> {
        let seen = self.state.seen.lock().unwrap();
        seen.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn registrations(&self) -> usize {
        self.seen("POST /actions/runner-registration").len()
    }

    fn service(&self, tune: impl FnOnce(&mut HttpSettings)) -> ActionsService {
        let options = ClientOptions {
            retry_backoff: Duration::from_millis(1),
            request_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        };
        let endpoint = Endpoint {
            api_base: self.base().parse().unwrap(),
            ca_bundle: None,
        };
        let rest = GitHubClient::new(
            &endpoint,
            &Credentials::Token(REST_TOKEN.into()),
            options.clone(),
        )
        .unwrap();
        let mut settings = HttpSettings::new(options, None);
        settings.registration_backoff = Duration::from_millis(1);
        settings.poll_timeout = Duration::from_secs(5);
        tune(&mut settings);
        ActionsService::new(
            Arc::new(rest),
            Scope::Organization("acme".into()),
            self.base(),
            settings,
        )
        .unwrap()
    }

    /// A session whose queue lives on this server.
    fn session_body(&self) -> String {
        json!({
            "sessionId": "5e55-1",
            "ownerName": "operator-0",
            "runnerScaleSet": {"id": 7, "name": "linux"},
            "messageQueueUrl": format!("{}/queue/messages?sessionId=5e55-1", self.base()),
            "messageQueueAccessToken": QUEUE_TOKEN,
            "statistics": {"totalAssignedJobs": 3},
        })
        .to_string()
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn answer(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = format!("{method} {}", uri.path());
    state.seen.lock().unwrap().push((
        key.clone(),
        Seen {
            query: uri.query().unwrap_or_default().to_owned(),
            authorization: header(&headers, "authorization"),
            accept: header(&headers, "accept"),
            capacity: header(&headers, "x-scalesetmaxcapacity"),
            body: String::from_utf8_lossy(&body).into_owned(),
        },
    ));
    let scripted = state
        .scripts
        .lock()
        .unwrap()
        .get_mut(&key)
        .and_then(VecDeque::pop_front);
    if let Some(scripted) = scripted {
        tokio::time::sleep(scripted.delay).await;
        return (
            StatusCode::from_u16(scripted.status).unwrap(),
            scripted.body,
        )
            .into_response();
    }
    match key.as_str() {
        "POST /orgs/acme/actions/runners/registration-token" => {
            let n = state.registration_tokens.fetch_add(1, Ordering::SeqCst) + 1;
            let token = json!({"token": format!("REG{n}"), "expires_at": "2030-01-01T00:00:00Z"});
            (StatusCode::CREATED, token.to_string()).into_response()
        }
        "POST /actions/runner-registration" => {
            let mut tokens = state.admin_tokens.lock().unwrap();
            let token = if tokens.len() > 1 {
                tokens.pop_front().unwrap()
            } else {
                tokens[0].clone()
            };
            let tenant = format!("{}/tenant/", state.base);
            let answer = json!({"url": tenant, "token": token});
            (StatusCode::OK, format!("{BOM}{answer}")).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

const GROUPS: &str = "GET /tenant/_apis/runtime/runnergroups/";
const SESSIONS: &str = "POST /tenant/_apis/runtime/runnerscalesets/7/sessions";
const QUEUE: &str = "GET /queue/messages";

fn groups_body() -> String {
    format!(
        "{BOM}{}",
        json!({"count": 1, "value": [{"id": 3, "name": "Default", "size": 0, "isDefaultGroup": true}]})
    )
}

#[tokio::test]
async fn the_admin_token_is_bought_with_a_registration_token_and_cached() {
    let fake = Fake::start().await;
    fake.script(GROUPS, 200, groups_body());
    fake.script(GROUPS, 200, groups_body());
    let service = fake.service(|_| {});

    assert_eq!(service.runner_group_id("default").await.unwrap(), Some(3));
    assert_eq!(service.runner_group_id("default").await.unwrap(), Some(3));

    let minted = fake.seen("POST /orgs/acme/actions/runners/registration-token");
    assert_eq!(minted.len(), 1);
    assert_eq!(minted[0].authorization, format!("Bearer {REST_TOKEN}"));
    let registered = fake.seen("POST /actions/runner-registration");
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].authorization, "RemoteAuth REG1");
    let body: serde_json::Value = serde_json::from_str(&registered[0].body).unwrap();
    assert_eq!(
        body,
        json!({"url": format!("{}/acme", fake.base()), "runner_event": "register"})
    );
    for call in fake.seen(GROUPS) {
        assert!(call.authorization.starts_with("Bearer eyJ"), "{call:?}");
        assert!(call.authorization.ends_with(".sig-a1"), "{call:?}");
        assert_eq!(call.query, "groupName=default&api-version=6.0-preview");
    }
}

#[tokio::test]
async fn an_admin_token_close_to_expiry_is_replaced() {
    let fake = Fake::start().await;
    fake.admin_tokens(&[admin_jwt("short", 30), admin_jwt("long", 3600)]);
    for _ in 0..3 {
        fake.script(GROUPS, 200, groups_body());
    }
    let service = fake.service(|_| {});
    for _ in 0..3 {
        service.runner_group_id("Default").await.unwrap();
    }
    assert_eq!(fake.registrations(), 2);
    let sent: Vec<String> = fake
        .seen(GROUPS)
        .into_iter()
        .map(|s| s.authorization)
        .collect();
    assert!(
        sent[0].ends_with("sig-short") && sent[1].ends_with("sig-long"),
        "{sent:?}"
    );
    assert_eq!(sent[1], sent[2]);
}

#[tokio::test]
async fn a_401_from_the_service_buys_one_new_admin_token() {
    let fake = Fake::start().await;
    fake.admin_tokens(&[admin_jwt("revoked", 3600), admin_jwt("fresh", 3600)]);
    fake.script(GROUPS, 401, "");
    fake.script(GROUPS, 200, groups_body());
    let service = fake.service(|_| {});
    assert_eq!(service.runner_group_id("default").await.unwrap(), Some(3));
    assert_eq!(fake.registrations(), 2);

    // Refused again with the fresh token: the credential is wrong, no loop.
    fake.script(GROUPS, 401, r#"{"message": "no"}"#);
    fake.script(GROUPS, 401, r#"{"message": "no"}"#);
    let err = service.runner_group_id("default").await.unwrap_err();
    assert!(matches!(err, ScaleSetError::Unauthorized(_)), "{err}");
    assert_eq!(fake.registrations(), 3);
}

#[tokio::test]
async fn registration_is_retried_while_a_fresh_token_lags() {
    let fake = Fake::start().await;
    fake.script("POST /actions/runner-registration", 401, "");
    fake.script("POST /actions/runner-registration", 403, "");
    fake.script(GROUPS, 200, groups_body());
    let service = fake.service(|_| {});
    assert_eq!(service.runner_group_id("default").await.unwrap(), Some(3));
    assert_eq!(fake.registrations(), 3);

    let fake = Fake::start().await;
    for _ in 0..4 {
        fake.script(
            "POST /actions/runner-registration",
            401,
            r#"{"message": "bad token REG1"}"#,
        );
    }
    let service = fake.service(|_| {});
    let err = service.runner_group_id("default").await.unwrap_err();
    assert!(matches!(err, ScaleSetError::Unauthorized(_)), "{err}");
    assert!(!err.to_string().contains("REG1"), "{err}");
    assert_eq!(fake.registrations(), 4);
}

#[tokio::test]
async fn sessions_conflict_refresh_and_go_away() {
    let fake = Fake::start().await;
    let conflict = r#"{"typeName": "RunnerScaleSetSessionConflictException", "message": "taken"}"#;
    fake.script(SESSIONS, 409, conflict);
    fake.script(SESSIONS, 200, fake.session_body());
    let service = fake.service(|_| {});

    let err = service.create_session(7, "operator-0").await.unwrap_err();
    assert!(matches!(err, ScaleSetError::SessionConflict), "{err}");
    let session = service.create_session(7, "operator-0").await.unwrap();
    assert_eq!(session.session_id, "5e55-1");
    assert_eq!(session.statistics.unwrap().total_assigned_jobs, 3);
    assert_eq!(fake.seen(SESSIONS)[1].body, r#"{"ownerName":"operator-0"}"#);
    assert!(!format!("{session:?}").contains(QUEUE_TOKEN));

    let refresh = "PATCH /tenant/_apis/runtime/runnerscalesets/7/sessions/5e55-1";
    fake.script(refresh, 404, "");
    let err = service.refresh_session(&session).await.unwrap_err();
    assert!(matches!(err, ScaleSetError::SessionNotFound), "{err}");

    // Deleting what is gone already is fine.
    service.delete_session(7, "5e55-1").await.unwrap();
    assert_eq!(
        fake.seen("DELETE /tenant/_apis/runtime/runnerscalesets/7/sessions/5e55-1")
            .len(),
        1
    );
}

#[tokio::test]
async fn the_message_queue_is_polled_and_acked_with_the_queue_token() {
    let fake = Fake::start().await;
    fake.script(SESSIONS, 200, fake.session_body());
    let jobs = json!([{"messageType": "JobAvailable", "runnerRequestId": 41, "repositoryName": "app", "ownerName": "acme"}]);
    let envelope = json!({"messageId": 12, "messageType": "RunnerScaleSetJobMessages",
        "body": jobs.to_string(), "statistics": {"totalAssignedJobs": 1}});
    fake.script(QUEUE, 202, "");
    fake.script(QUEUE, 200, format!("{BOM}{envelope}"));
    fake.script(QUEUE, 401, "");
    fake.script("DELETE /queue/messages/12", 204, "");
    let service = fake.service(|_| {});
    let session = service.create_session(7, "operator-0").await.unwrap();

    assert_eq!(service.get_message(&session, None, 10).await.unwrap(), None);
    let message = service
        .get_message(&session, Some(11), 9)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.message_id, 12);
    assert_eq!(message.jobs[0].request_id(), 41);
    assert_eq!(message.jobs[0].job().repository, "acme/app");
    let err = service
        .get_message(&session, Some(12), 9)
        .await
        .unwrap_err();
    assert!(matches!(err, ScaleSetError::QueueTokenExpired), "{err}");
    service.delete_message(&session, 12).await.unwrap();

    let polls = fake.seen(QUEUE);
    assert_eq!(polls[0].query, "sessionId=5e55-1");
    assert_eq!(polls[1].query, "sessionId=5e55-1&lastMessageId=11");
    for poll in &polls {
        assert_eq!(poll.authorization, format!("Bearer {QUEUE_TOKEN}"));
        assert_eq!(poll.accept, "application/json; api-version=6.0-preview");
    }
    assert_eq!(
        (polls[0].capacity.as_str(), polls[1].capacity.as_str()),
        ("10", "9")
    );
    let acks = fake.seen("DELETE /queue/messages/12");
    assert_eq!(acks[0].authorization, format!("Bearer {QUEUE_TOKEN}"));
    assert_eq!(acks[0].query, "sessionId=5e55-1");
}

#[tokio::test]
async fn jobs_are_acquired_with_the_queue_token() {
    let fake = Fake::start().await;
    fake.script(SESSIONS, 200, fake.session_body());
    let acquire = "POST /tenant/_apis/runtime/runnerscalesets/7/acquirejobs";
    fake.script(acquire, 200, r#"{"count": 1, "value": [41]}"#);
    fake.script(acquire, 401, "");
    let service = fake.service(|_| {});
    let session = service.create_session(7, "operator-0").await.unwrap();

    assert_eq!(
        service.acquire_jobs(&session, &[]).await.unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(
        service.acquire_jobs(&session, &[41, 42]).await.unwrap(),
        [41]
    );
    let err = service.acquire_jobs(&session, &[43]).await.unwrap_err();
    assert!(matches!(err, ScaleSetError::QueueTokenExpired), "{err}");

    let sent = fake.seen(acquire);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].authorization, format!("Bearer {QUEUE_TOKEN}"));
    assert_eq!(sent[0].query, "api-version=6.0-preview");
    assert_eq!(sent[0].body, "[41,42]");
}

#[tokio::test]
async fn the_long_poll_outlives_the_request_timeout() {
    let fake = Fake::start().await;
    fake.script(SESSIONS, 200, fake.session_body());
    fake.script_after(QUEUE, Duration::from_millis(600), 202, "");
    fake.script_after(GROUPS, Duration::from_millis(600), 200, groups_body());
    let service = fake.service(|settings| {
        settings.options.request_timeout = Duration::from_millis(300);
        settings.options.max_retries = 0;
        settings.poll_timeout = Duration::from_secs(5);
    });
    let session = service.create_session(7, "operator-0").await.unwrap();
    assert_eq!(service.get_message(&session, None, 1).await.unwrap(), None);
    let err = service.runner_group_id("default").await.unwrap_err();
    assert!(matches!(err, ScaleSetError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn scale_sets_runners_and_jit_configs() {
    let fake = Fake::start().await;
    let set = json!({"id": 7, "name": "linux", "runnerGroupId": 3, "runnerGroupName": "Default",
        "labels": [{"name": "linux", "type": "System"}], "statistics": null});
    let scale_sets = "/tenant/_apis/runtime/runnerscalesets";
    fake.script(
        &format!("GET {scale_sets}"),
        200,
        json!({"count": 0, "value": []}).to_string(),
    );
    fake.script(&format!("POST {scale_sets}"), 200, set.to_string());
    fake.script(&format!("GET {scale_sets}/7"), 200, set.to_string());
    fake.script(&format!("GET {scale_sets}/8"), 404, "");
    fake.script(
        &format!("POST {scale_sets}/7/generatejitconfig"),
        200,
        json!({"runner": {"id": 99, "name": "linux-abc", "runnerScaleSetId": 7},
            "encodedJITConfig": "SECRET-JIT"})
        .to_string(),
    );
    let busy = r#"{"typeName": "JobStillRunningException", "message": "busy"}"#;
    let agents = "/tenant/_apis/distributedtask/pools/0/agents";
    fake.script(&format!("DELETE {agents}/99"), 400, busy);
    fake.script(&format!("DELETE {agents}/99"), 204, "");
    let service = fake.service(|_| {});

    assert_eq!(service.find_scale_set(3, "linux").await.unwrap(), None);
    assert_eq!(
        fake.seen(&format!("GET {scale_sets}"))[0].query,
        "runnerGroupId=3&name=linux&api-version=6.0-preview"
    );
    let created = service
        .create_scale_set("linux", 3, &["linux".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        (created.id, created.labels.as_slice()),
        (7, &["linux".to_owned()][..])
    );
    let sent: serde_json::Value =
        serde_json::from_str(&fake.seen(&format!("POST {scale_sets}"))[0].body).unwrap();
    assert_eq!(sent["RunnerSetting"], json!({"disableUpdate": true}));
    assert_eq!(sent["labels"], json!([{"name": "linux", "type": "System"}]));
    assert_eq!(service.get_scale_set(7).await.unwrap(), Some(created));
    assert_eq!(service.get_scale_set(8).await.unwrap(), None);

    let jit = service.generate_jit_config(7, "linux-abc").await.unwrap();
    assert_eq!((jit.runner.id, jit.runner.name.as_str()), (99, "linux-abc"));
    assert_eq!(jit.encoded_jit_config, "SECRET-JIT");
    assert_eq!(
        fake.seen(&format!("POST {scale_sets}/7/generatejitconfig"))[0].body,
        r#"{"name":"linux-abc","workFolder":"_work"}"#
    );

    let err = service.remove_runner(99).await.unwrap_err();
    assert!(matches!(err, ScaleSetError::Busy), "{err}");
    service.remove_runner(99).await.unwrap();
    // Gone already (the default answer is 404).
    service.remove_runner(100).await.unwrap();
    service.delete_scale_set(8).await.unwrap();
}

#[tokio::test]
async fn no_token_reaches_an_error_or_a_debug_output() {
    let fake = Fake::start().await;
    let admin = admin_jwt("echoed", 3600);
    fake.admin_tokens(std::slice::from_ref(&admin));
    let echo =
        json!({"typeName": "ArgumentException", "message": format!("bad header Bearer {admin}")});
    fake.script(GROUPS, 400, echo.to_string());
    let service = fake.service(|_| {});
    let err = service.runner_group_id("default").await.unwrap_err();
    assert!(matches!(err, ScaleSetError::Rejected(_)), "{err}");
    let shown = format!("{err} {err:?} {service:?}");
    assert!(!shown.contains(&admin), "{shown}");
    assert!(
        !shown.contains("REG1") && !shown.contains(REST_TOKEN),
        "{shown}"
    );
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[tokio::test]
async fn writes_wait_for_the_leader_lease_and_urls_are_checked() {
    let fake = Fake::start().await;
    let service = fake.service(|settings| {
        settings.options.may_write = Some(Arc::new(|| false));
    });
    // Buying the admin token is a write too: nothing leaves this replica.
    let err = service.delete_scale_set(7).await.unwrap_err();
    assert!(matches!(err, ScaleSetError::NotLeading), "{err}");
    assert_eq!(fake.registrations(), 0);

    let rest: Arc<dyn crate::github::GitHubApi> = Arc::new(
        GitHubClient::new(
            &Endpoint {
                api_base: "https://api.github.com".parse().unwrap(),
                ca_bundle: None,
            },
            &Credentials::Token(REST_TOKEN.into()),
            ClientOptions::default(),
        )
        .unwrap(),
    );
    let org = Scope::Organization("acme".into());
    for bad in [
        "http://ghe.example/api/v3",
        "https://github.com",
        "not a url",
    ] {
        let err = ActionsService::new(rest.clone(), org.clone(), bad, HttpSettings::default())
            .unwrap_err();
        assert!(
            matches!(err, ScaleSetError::InvalidEndpoint(_)),
            "{bad}: {err}"
        );
    }
    let ghes = ActionsService::new(
        rest,
        org,
        "https://ghe.example/api/v3",
        HttpSettings::default(),
    )
    .unwrap();
    assert_eq!(ghes.html_url().as_str(), "https://ghe.example/acme");
}
