//! Narrow tests of the client against a tiny in-process HTTP server whose
//! answers each test scripts, plus pure-function tests. Whole-flow tests
//! against the stateful GitHub fake live in `fake_tests`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use reqwest::header::HeaderMap;
use url::Url;

use super::connector::CachingConnector;
use super::endpoints;
use super::options::{
    ClientOptions, CredentialFingerprint, RequestObserver, RequestRecord, validate_api_base,
};
use super::requests::GitHubClient;
use crate::github::app_auth::tests::generate_rsa_key_pair;
use crate::github::{
    Credentials, Endpoint, GitHubApi, GitHubConnector, GitHubError, JitRequest, RunnerGroup, Scope,
};
use crate::mutex::lock;

/// A request as the scripted server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn reply(status: u16, body: serde_json::Value) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

impl Reply {
    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

type Script = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

struct ScriptedServer {
    base: Url,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl ScriptedServer {
    async fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_at("", Arc::new(script)).await
    }

    /// `prefix` mimics GHES, whose API lives under `/api/v3`.
    async fn start_at(prefix: &str, script: Script) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let script = script.clone();
            let recorded = recorded.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let seen = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    headers: parts.headers,
                    body: body.to_vec(),
                };
                let reply = script(&seen);
                lock(&recorded).push(seen);
                let mut response = Response::builder().status(reply.status);
                for (name, value) in reply.headers {
                    response = response.header(name, value);
                }
                response.body(Body::from(reply.body)).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let base = Url::parse(&format!("http://{address}{prefix}")).unwrap();
        ScriptedServer { base, seen }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            api_base: self.base.clone(),
            ca_bundle: None,
        }
    }

    fn client(&self, credentials: Credentials, options: ClientOptions) -> GitHubClient {
        GitHubClient::new(&self.endpoint(), &credentials, options).unwrap()
    }

    fn token_client(&self) -> GitHubClient {
        self.client(token(), quick_options())
    }

    fn seen(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }

    fn hits(&self) -> usize {
        lock(&self.seen).len()
    }
}

const TOKEN: &str = "ghp_the-secret-token-value";

fn token() -> Credentials {
    Credentials::Token(TOKEN.into())
}

fn org() -> Scope {
    Scope::Organization("acme".into())
}

/// Production options with retry pauses short enough for tests.
fn quick_options() -> ClientOptions {
    ClientOptions {
        retry_backoff: Duration::from_millis(5),
        ..ClientOptions::default()
    }
}

fn runner_json(id: u64) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "name": format!("runner-{id}"),
        "os": "linux",
        "status": "online",
        "busy": false,
        "ephemeral": true,
        "runner_group_id": 1,
        "labels": [
            {"id": 1, "name": "self-hosted", "type": "read-only"},
            {"id": 2, "name": "gpu", "type": "custom"}
        ]
    })
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rate_limited_for(error: &GitHubError) -> (Duration, bool) {
    match error {
        GitHubError::RateLimited {
            retry_after,
            secondary,
        } => (*retry_after, *secondary),
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[tokio::test]
async fn sends_github_headers_and_the_bearer_token() {
    let server = ScriptedServer::start(|_| reply(200, runner_json(7))).await;
    let runner = server.token_client().get_runner(&org(), 7).await.unwrap();
    assert_eq!(runner.name, "runner-7");
    let seen = &server.seen()[0];
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/orgs/acme/actions/runners/7")
    );
    assert_eq!(seen.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(seen.header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let user_agent = seen.header("user-agent").unwrap();
    assert!(
        user_agent.starts_with("runnerpool-operator/"),
        "{user_agent}"
    );
}

#[tokio::test]
async fn ghes_base_path_prefixes_every_request() {
    let server = ScriptedServer::start_at(
        "/api/v3",
        Arc::new(|_| {
            reply(
                200,
                serde_json::json!({"total_count": 1, "runners": [runner_json(1)]}),
            )
        }),
    )
    .await;
    let scope = Scope::Repository {
        owner: "octo".into(),
        repo: "hello".into(),
    };
    let runners = server.token_client().list_runners(&scope).await.unwrap();
    assert_eq!(runners.len(), 1);
    let seen = &server.seen()[0];
    assert_eq!(seen.path, "/api/v3/repos/octo/hello/actions/runners");
    assert_eq!(seen.query_param("per_page").as_deref(), Some("100"));
}

/// Serves `total` runners 100 a page, with an ETag per page and 304 when it matches.
fn paged_runners(total: u64) -> impl Fn(&Seen) -> Reply + Send + Sync {
    move |seen| {
        let page: u64 = seen
            .query_param("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        let etag = format!("\"runners-{total}-page-{page}\"");
        let host = seen.header("host").unwrap().to_owned();
        let next = (page * 100 < total).then(|| {
            format!(
                "<http://{host}{}?per_page=100&page={}>; rel=\"next\"",
                seen.path,
                page + 1
            )
        });
        let with_link = |reply: Reply| match &next {
            Some(link) => reply.header("link", link.clone()),
            None => reply,
        };
        if seen.header("if-none-match") == Some(etag.as_str()) {
            // Like GitHub, a 304 repeats neither body nor Link.
            return Reply {
                status: 304,
                headers: Vec::new(),
                body: String::new(),
            }
            .header("etag", etag);
        }
        let runners: Vec<_> = ((page - 1) * 100 + 1..=(page * 100).min(total))
            .map(runner_json)
            .collect();
        with_link(
            reply(
                200,
                serde_json::json!({"total_count": total, "runners": runners}),
            )
            .header("etag", etag),
        )
    }
}

#[tokio::test]
async fn lists_every_page_and_replays_unchanged_pages_from_the_etag_cache() {
    let server = ScriptedServer::start(paged_runners(250)).await;
    let client = server.token_client();

    let first = client.list_runners(&org()).await.unwrap();
    assert_eq!(first.len(), 250);
    assert_eq!(
        first.iter().map(|r| r.id).collect::<Vec<_>>(),
        (1..=250).collect::<Vec<_>>()
    );
    assert!(
        server
            .seen()
            .iter()
            .all(|s| s.header("if-none-match").is_none())
    );

    let second = client.list_runners(&org()).await.unwrap();
    assert_eq!(second, first);
    let seen = server.seen();
    assert_eq!(seen.len(), 6);
    assert!(
        seen[3..]
            .iter()
            .all(|s| s.header("if-none-match").is_some())
    );
    let counts = client.request_counts();
    assert_eq!(counts.get(&(endpoints::LIST_RUNNERS, Some(200))), Some(&3));
    assert_eq!(counts.get(&(endpoints::LIST_RUNNERS, Some(304))), Some(&3));
}

#[tokio::test]
async fn a_next_link_to_another_host_is_not_followed() {
    let server = ScriptedServer::start(|_| {
        reply(
            200,
            serde_json::json!({"total_count": 200, "runners": [runner_json(1)]}),
        )
        .header(
            "link",
            "<https://elsewhere.example/orgs/acme/actions/runners?page=2>; rel=\"next\"",
        )
    })
    .await;
    let error = server
        .token_client()
        .list_runners(&org())
        .await
        .unwrap_err();
    assert!(matches!(error, GitHubError::Protocol(_)), "{error:?}");
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn find_runner_by_name_filters_by_name() {
    let server = ScriptedServer::start(|seen| {
        let runners: Vec<_> = match seen.query_param("name").as_deref() {
            Some("runner-2") => vec![runner_json(2)],
            _ => Vec::new(),
        };
        reply(
            200,
            serde_json::json!({"total_count": runners.len(), "runners": runners}),
        )
    })
    .await;
    let client = server.token_client();
    assert_eq!(
        client
            .find_runner_by_name(&org(), "runner-2")
            .await
            .unwrap()
            .map(|r| r.id),
        Some(2)
    );
    assert_eq!(
        client
            .find_runner_by_name(&org(), "runner 9&x")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        server.seen()[1].query_param("name").as_deref(),
        Some("runner 9&x")
    );
}

#[tokio::test]
async fn generate_jitconfig_posts_the_request_and_returns_the_config() {
    let server = ScriptedServer::start(|_| {
        reply(201, serde_json::json!({"runner": runner_json(42), "encoded_jit_config": "SECRET-JIT-CONFIG"}))
    })
    .await;
    let request = JitRequest {
        name: "runner-42".into(),
        runner_group_id: 3,
        labels: vec!["self-hosted".into(), "gpu".into()],
        work_folder: "_work".into(),
    };
    let jit = server
        .token_client()
        .generate_jitconfig(&org(), &request)
        .await
        .unwrap();
    assert_eq!(jit.runner.id, 42);
    assert_eq!(jit.encoded_jit_config, "SECRET-JIT-CONFIG");
    assert!(!format!("{jit:?}").contains("SECRET-JIT-CONFIG"));
    let seen = &server.seen()[0];
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/orgs/acme/actions/runners/generate-jitconfig")
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"name": "runner-42", "runner_group_id": 3, "labels": ["self-hosted", "gpu"], "work_folder": "_work"})
    );
}

#[tokio::test]
async fn set_custom_labels_replaces_the_whole_set() {
    let server = ScriptedServer::start(|seen| {
        let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        let mut labels =
            vec![serde_json::json!({"id": 1, "name": "self-hosted", "type": "read-only"})];
        for name in body["labels"].as_array().unwrap() {
            labels.push(serde_json::json!({"id": 9, "name": name, "type": "custom"}));
        }
        reply(
            200,
            serde_json::json!({"total_count": labels.len(), "labels": labels}),
        )
    })
    .await;
    let labels = server
        .token_client()
        .set_custom_labels(&org(), 5, &["a".into(), "b".into()])
        .await
        .unwrap();
    assert_eq!(
        labels.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["self-hosted", "a", "b"]
    );
    let seen = &server.seen()[0];
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("PUT", "/orgs/acme/actions/runners/5/labels")
    );
}

#[tokio::test]
async fn maps_github_errors_to_what_the_reconciler_needs() {
    let server = ScriptedServer::start(|seen| match (seen.method.as_str(), seen.path.as_str()) {
        ("DELETE", "/orgs/acme/actions/runners/1") => {
            reply(422, serde_json::json!({"message": "Bad request - Runner \"runner-1\" is still running a job\""}))
        }
        ("DELETE", "/orgs/acme/actions/runners/2") => reply(404, serde_json::json!({"message": "Not Found"})),
        ("DELETE", "/orgs/acme/actions/runners/3") => {
            reply(422, serde_json::json!({"message": "Validation Failed"}))
        }
        ("DELETE", _) => Reply { status: 204, headers: Vec::new(), body: String::new() },
        ("POST", _) => reply(409, serde_json::json!({"message": "Already exists - A runner with the name already exists."})),
        ("GET", "/orgs/acme/actions/runners/5") => reply(401, serde_json::json!({"message": "Bad credentials"})),
        ("GET", "/orgs/acme/actions/runners/6") => {
            reply(403, serde_json::json!({"message": "Resource not accessible by integration"}))
                .header("x-ratelimit-remaining", "4000")
        }
        ("GET", "/orgs/acme/actions/runners/8") => reply(200, serde_json::json!({"id": "not a number"})),
        _ => reply(418, serde_json::json!({"message": "teapot"})),
    })
    .await;
    let client = server.token_client();
    let scope = org();
    assert!(matches!(
        client.delete_runner(&scope, 1).await,
        Err(GitHubError::Busy)
    ));
    assert!(matches!(
        client.delete_runner(&scope, 2).await,
        Err(GitHubError::NotFound(_))
    ));
    assert!(
        matches!(client.delete_runner(&scope, 3).await, Err(GitHubError::Invalid(m)) if m == "Validation Failed")
    );
    assert!(client.delete_runner(&scope, 4).await.is_ok());
    let request = JitRequest {
        name: "x".into(),
        runner_group_id: 1,
        labels: vec!["a".into()],
        work_folder: "_work".into(),
    };
    assert!(matches!(
        client.generate_jitconfig(&scope, &request).await,
        Err(GitHubError::Conflict(_))
    ));
    assert!(matches!(
        client.get_runner(&scope, 5).await,
        Err(GitHubError::Unauthorized { status: 401, .. })
    ));
    assert!(matches!(
        client.get_runner(&scope, 6).await,
        Err(GitHubError::Unauthorized { status: 403, .. })
    ));
    assert!(matches!(
        client.get_runner(&scope, 8).await,
        Err(GitHubError::Protocol(_))
    ));
    assert!(matches!(
        client.get_runner(&scope, 9).await,
        Err(GitHubError::Protocol(_))
    ));
    // A 403 that is not about rate limits must not block the credential.
    assert!(client.delete_runner(&scope, 4).await.is_ok());
}

#[tokio::test]
async fn idempotent_calls_retry_server_errors_but_posts_do_not() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let server = ScriptedServer::start(move |seen| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        match seen.method.as_str() {
            // The GET succeeds on its third attempt.
            "GET" if n < 2 => reply(502, serde_json::json!({"message": "bad gateway"})),
            "GET" => reply(200, runner_json(1)),
            _ => reply(500, serde_json::json!({"message": "oops"})),
        }
    })
    .await;
    let client = server.token_client();
    assert_eq!(client.get_runner(&org(), 1).await.unwrap().id, 1);
    assert_eq!(server.hits(), 3);

    let request = JitRequest {
        name: "x".into(),
        runner_group_id: 1,
        labels: vec!["a".into()],
        work_folder: "_work".into(),
    };
    assert!(matches!(
        client.generate_jitconfig(&org(), &request).await,
        Err(GitHubError::Server { status: 500 })
    ));
    assert_eq!(server.hits(), 4, "a POST must never be retried");
}

#[tokio::test]
async fn retries_give_up_with_a_server_error() {
    let server = ScriptedServer::start(|_| reply(503, serde_json::json!({}))).await;
    let client = server.token_client();
    assert!(matches!(
        client.get_runner(&org(), 1).await,
        Err(GitHubError::Server { status: 503 })
    ));
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn error_messages_never_contain_the_token() {
    // A misbehaving proxy that echoes the Authorization header back.
    let server = ScriptedServer::start(|seen| {
        let echoed = seen.header("authorization").unwrap_or_default().to_owned();
        let status = match seen.path.as_str() {
            "/orgs/acme/actions/runners/1" => 401,
            "/orgs/acme/actions/runners/2" => 403,
            _ => 422,
        };
        reply(
            status,
            serde_json::json!({"message": format!("you sent {echoed}")}),
        )
    })
    .await;
    let client = server.token_client();
    for id in [1, 2, 3] {
        let error = client.get_runner(&org(), id).await.unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains(TOKEN), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
    assert!(!format!("{client:?}").contains(TOKEN));
}

#[tokio::test]
async fn exhausted_rate_limit_fails_fast_without_sending() {
    let reset = epoch_now() + 120;
    let server = ScriptedServer::start(move |_| {
        reply(
            403,
            serde_json::json!({"message": "API rate limit exceeded for installation ID 1."}),
        )
        .header("x-ratelimit-limit", "5000")
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-used", "5000")
        .header("x-ratelimit-reset", reset.to_string())
        .header("x-ratelimit-resource", "core")
    })
    .await;
    let client = server.token_client();
    let (wait, secondary) = rate_limited_for(&client.list_runners(&org()).await.unwrap_err());
    assert!(!secondary);
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(121),
        "{wait:?}"
    );
    assert_eq!(server.hits(), 1);

    for _ in 0..3 {
        let (wait, secondary) = rate_limited_for(&client.get_runner(&org(), 1).await.unwrap_err());
        assert!(!secondary && wait > Duration::from_secs(100));
    }
    assert_eq!(
        server.hits(),
        1,
        "no request may be sent while the credential is blocked"
    );
    let snapshot = client.rate_limit().unwrap();
    assert_eq!(
        (snapshot.limit, snapshot.remaining, snapshot.used),
        (5000, 0, 5000)
    );
    assert_eq!(snapshot.reset, UNIX_EPOCH + Duration::from_secs(reset));
}

#[tokio::test]
async fn secondary_limit_with_retry_after_is_honoured() {
    let server = ScriptedServer::start(|_| {
        reply(
            429,
            serde_json::json!({"message": "You have exceeded a secondary rate limit."}),
        )
        .header("retry-after", "30")
        .header("x-ratelimit-remaining", "4000")
    })
    .await;
    let client = server.token_client();
    assert_eq!(
        rate_limited_for(&client.get_runner(&org(), 1).await.unwrap_err()),
        (Duration::from_secs(30), true)
    );
    let (wait, secondary) = rate_limited_for(&client.get_runner(&org(), 1).await.unwrap_err());
    assert!(secondary && wait <= Duration::from_secs(30) && wait > Duration::from_secs(25));
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn secondary_limit_without_retry_after_waits_at_least_a_minute() {
    let server = ScriptedServer::start(|_| {
        reply(403, serde_json::json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}))
    })
    .await;
    let client = server.token_client();
    let (wait, secondary) = rate_limited_for(&client.delete_runner(&org(), 1).await.unwrap_err());
    assert!(secondary);
    assert!(
        wait >= Duration::from_secs(60) && wait <= Duration::from_secs(72),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_spent_budget_blocks_before_github_has_to_refuse() {
    let reset = epoch_now() + 300;
    let server = ScriptedServer::start(move |_| {
        reply(200, runner_json(1))
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", reset.to_string())
    })
    .await;
    let client = server.token_client();
    assert!(client.get_runner(&org(), 1).await.is_ok());
    let (wait, secondary) = rate_limited_for(&client.get_runner(&org(), 1).await.unwrap_err());
    assert!(!secondary && wait > Duration::from_secs(290));
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn unreachable_github_is_unavailable() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = Endpoint {
        api_base: Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        ca_bundle: None,
    };
    let client = GitHubClient::new(&endpoint, &token(), quick_options()).unwrap();
    let error = client.get_runner(&org(), 1).await.unwrap_err();
    assert!(matches!(error, GitHubError::Unavailable(_)), "{error:?}");
    assert_eq!(
        client.request_counts().get(&(endpoints::GET_RUNNER, None)),
        Some(&3)
    );
}

// Two workers: the scripted server blocks one while the client's timer runs on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_time_out_as_unavailable() {
    let server = ScriptedServer::start(|_| {
        std::thread::sleep(Duration::from_millis(300));
        reply(200, runner_json(1))
    })
    .await;
    let options = ClientOptions {
        request_timeout: Duration::from_millis(100),
        ..quick_options()
    };
    let client = server.client(token(), options);
    let error = client.get_runner(&org(), 1).await.unwrap_err();
    assert!(
        matches!(&error, GitHubError::Unavailable(m) if m.contains("timed out")),
        "{error:?}"
    );
}

#[tokio::test]
async fn runner_groups_are_reused_for_their_ttl() {
    let server = ScriptedServer::start(|_| {
        reply(
            200,
            serde_json::json!({"total_count": 2, "runner_groups": [
                {"id": 1, "name": "Default", "default": true, "visibility": "all"},
                {"id": 4, "name": "gpu", "default": false, "visibility": "selected"}
            ]}),
        )
    })
    .await;
    let client = server.token_client();
    let groups = client.list_runner_groups(&org()).await.unwrap();
    assert_eq!(
        groups[1],
        RunnerGroup {
            id: 4,
            name: "gpu".into(),
            default: false
        }
    );
    assert_eq!(client.list_runner_groups(&org()).await.unwrap(), groups);
    assert_eq!(server.hits(), 1);
    assert_eq!(server.seen()[0].path, "/orgs/acme/actions/runner-groups");
    client
        .list_runner_groups(&Scope::Enterprise("big".into()))
        .await
        .unwrap();
    assert_eq!(
        server.seen()[1].path,
        "/enterprises/big/actions/runner-groups"
    );

    let expiring = server.client(
        token(),
        ClientOptions {
            runner_group_ttl: Duration::ZERO,
            ..quick_options()
        },
    );
    expiring.list_runner_groups(&org()).await.unwrap();
    expiring.list_runner_groups(&org()).await.unwrap();
    assert_eq!(server.hits(), 4);

    let repo = Scope::Repository {
        owner: "o".into(),
        repo: "r".into(),
    };
    assert!(matches!(
        client.list_runner_groups(&repo).await,
        Err(GitHubError::Invalid(_))
    ));
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn observer_sees_every_request_sent() {
    let records = Arc::new(Mutex::new(Vec::new()));
    let sink = records.clone();
    let observer: RequestObserver =
        Arc::new(move |record: &RequestRecord| lock(&sink).push(record.clone()));
    let server =
        ScriptedServer::start(|_| reply(404, serde_json::json!({"message": "Not Found"}))).await;
    let client = server.client(
        token(),
        ClientOptions {
            observer: Some(observer),
            ..quick_options()
        },
    );
    assert!(client.get_runner(&org(), 1).await.is_err());
    let records = lock(&records).clone();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].endpoint, records[0].status),
        (endpoints::GET_RUNNER, Some(404))
    );
}

/// A scripted GitHub App installation: hands out `inst-N` tokens for valid
/// JWTs and accepts only the newest one (or, with `revoke_first`, refuses the first).
struct AppServer {
    server: ScriptedServer,
    exchanges: Arc<AtomicUsize>,
    private_key_pem: String,
}

impl AppServer {
    async fn start(expires_at: &'static str, revoke_first: bool) -> Self {
        let (private_key_pem, public_key_pem) = generate_rsa_key_pair();
        let decoding_key =
            jsonwebtoken::DecodingKey::from_rsa_pem(public_key_pem.as_bytes()).unwrap();
        let exchanges = Arc::new(AtomicUsize::new(0));
        let issued = exchanges.clone();
        let server = ScriptedServer::start(move |seen| {
            let bearer = seen
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            if seen.path == "/app/installations/77/access_tokens" {
                let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                let claims =
                    jsonwebtoken::decode::<serde_json::Value>(bearer, &decoding_key, &validation)
                        .map(|jwt| jwt.claims);
                if seen.method != "POST"
                    || claims.map_or(true, |claims| claims["iss"] != serde_json::json!(1234))
                {
                    return reply(
                        401,
                        serde_json::json!({"message": "A JSON web token could not be decoded"}),
                    );
                }
                let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                return reply(
                    201,
                    serde_json::json!({"token": format!("inst-{n}"), "expires_at": expires_at}),
                );
            }
            let newest = format!("inst-{}", issued.load(Ordering::SeqCst));
            if bearer != newest || (revoke_first && bearer == "inst-1") {
                return reply(401, serde_json::json!({"message": "Bad credentials"}));
            }
            reply(200, runner_json(1))
        })
        .await;
        AppServer {
            server,
            exchanges,
            private_key_pem,
        }
    }

    fn credentials(&self) -> Credentials {
        Credentials::App {
            app_id: "1234".into(),
            installation_id: 77,
            private_key_pem: self.private_key_pem.clone(),
        }
    }
}

#[tokio::test]
async fn app_credentials_buy_an_installation_token_and_reuse_it() {
    let app = AppServer::start("2099-01-01T00:00:00Z", false).await;
    let client = app.server.client(app.credentials(), quick_options());
    for _ in 0..3 {
        assert_eq!(client.get_runner(&org(), 1).await.unwrap().id, 1);
    }
    assert_eq!(app.exchanges.load(Ordering::SeqCst), 1);
    let counts = client.request_counts();
    assert_eq!(
        counts.get(&(endpoints::CREATE_INSTALLATION_TOKEN, Some(201))),
        Some(&1)
    );
    assert_eq!(counts.get(&(endpoints::GET_RUNNER, Some(200))), Some(&3));
}

#[tokio::test]
async fn installation_token_is_refreshed_before_it_runs_out() {
    let app = AppServer::start("2099-01-01T00:00:00Z", false).await;
    // Tokens count as an hour long; a margin of an hour less 300 ms makes them
    // due for refresh 300 ms after they were bought.
    let options = ClientOptions {
        token_refresh_margin: Duration::from_secs(3600) - Duration::from_millis(300),
        ..quick_options()
    };
    let client = app.server.client(app.credentials(), options);
    client.get_runner(&org(), 1).await.unwrap();
    client.get_runner(&org(), 1).await.unwrap();
    assert_eq!(app.exchanges.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    client.get_runner(&org(), 1).await.unwrap();
    assert_eq!(app.exchanges.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_installation_token_is_replaced_once() {
    let app = AppServer::start("2099-01-01T00:00:00Z", true).await;
    let client = app.server.client(app.credentials(), quick_options());
    assert_eq!(client.get_runner(&org(), 1).await.unwrap().id, 1);
    assert_eq!(app.exchanges.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_wrong_app_key_is_unauthorized_and_never_leaks() {
    let app = AppServer::start("2099-01-01T00:00:00Z", false).await;
    let (other_key, _) = generate_rsa_key_pair();
    let credentials = Credentials::App {
        app_id: "1234".into(),
        installation_id: 77,
        private_key_pem: other_key.clone(),
    };
    let client = app.server.client(credentials, quick_options());
    let error = client.get_runner(&org(), 1).await.unwrap_err();
    assert!(
        matches!(&error, GitHubError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    let text = format!("{error} {error:?} {client:?}");
    let key_body: String = other_key.lines().nth(1).unwrap().to_owned();
    assert!(!text.contains(&key_body), "{text}");
    assert_eq!(app.exchanges.load(Ordering::SeqCst), 0);
}

#[test]
fn api_base_must_be_https_unless_loopback() {
    let check = |url: &str| validate_api_base(&Url::parse(url).unwrap());
    for ok in [
        "https://api.github.com",
        "https://ghes.example.com/api/v3",
        "http://127.0.0.1:8080",
        "http://127.5.6.7/api/v3",
        "http://[::1]:9000",
        "http://localhost:3000/api/v3",
        "http://LOCALHOST",
    ] {
        assert!(check(ok).is_ok(), "{ok} should be accepted");
    }
    for bad in [
        "http://api.github.com",
        "http://10.0.0.1",
        "http://localhost.evil.example",
        "http://[::2]",
        "ftp://127.0.0.1",
        "https://github.com",
        "https://ghes.example.com/api/v3?x=1",
        "https://user:hunter2@ghes.example.com",
    ] {
        let error = check(bad).unwrap_err();
        assert!(
            matches!(&error, GitHubError::InvalidEndpoint(_)),
            "{bad}: {error:?}"
        );
        assert!(!error.to_string().contains("hunter2"));
    }
}

#[test]
fn unusable_credentials_and_ca_bundles_are_refused_up_front() {
    let endpoint = Endpoint {
        api_base: Url::parse("https://api.github.com").unwrap(),
        ca_bundle: None,
    };
    for credentials in [
        Credentials::Token("  \n".into()),
        Credentials::Token("a\nb".into()),
    ] {
        assert!(matches!(
            GitHubClient::new(&endpoint, &credentials, ClientOptions::default()),
            Err(GitHubError::InvalidCredentials(_))
        ));
    }
    let bad_ca = Endpoint {
        ca_bundle: Some("not a certificate".into()),
        ..endpoint
    };
    assert!(matches!(
        GitHubClient::new(&bad_ca, &token(), ClientOptions::default()),
        Err(GitHubError::InvalidEndpoint(_))
    ));
}

#[test]
fn a_token_with_a_trailing_newline_is_used_trimmed() {
    let endpoint = Endpoint {
        api_base: Url::parse("https://api.github.com").unwrap(),
        ca_bundle: None,
    };
    let padded = Credentials::Token(format!("{TOKEN}\n"));
    assert!(GitHubClient::new(&endpoint, &padded, ClientOptions::default()).is_ok());
    assert_eq!(
        CredentialFingerprint::of(&padded),
        CredentialFingerprint::of(&token())
    );
}

#[test]
fn fingerprints_tell_credentials_apart_without_revealing_them() {
    let a = CredentialFingerprint::of(&token());
    let b = CredentialFingerprint::of(&Credentials::Token("ghp_another".into()));
    let app = |installation_id| Credentials::App {
        app_id: "1".into(),
        installation_id,
        private_key_pem: "k".into(),
    };
    assert_eq!(a, CredentialFingerprint::of(&token()));
    assert_ne!(a, b);
    assert_ne!(
        CredentialFingerprint::of(&app(1)),
        CredentialFingerprint::of(&app(2))
    );
    assert_eq!(a.short().len(), 12);
    let shown = format!("{a} {a:?}");
    assert!(!shown.contains("ghp_"), "{shown}");
}

#[tokio::test]
async fn connector_shares_one_client_per_endpoint_and_credential() {
    let connector = CachingConnector::new(quick_options());
    let github = Endpoint {
        api_base: Url::parse("https://api.github.com").unwrap(),
        ca_bundle: None,
    };
    let ghes = Endpoint {
        api_base: Url::parse("https://ghes.example.com/api/v3").unwrap(),
        ca_bundle: None,
    };
    let first = connector.client(&github, &token()).unwrap();
    let again = connector.client(&github, &token()).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    let other_token = connector
        .client(&github, &Credentials::Token("ghp_other".into()))
        .unwrap();
    assert!(!Arc::ptr_eq(&first, &other_token));
    let other_host = connector.client(&ghes, &token()).unwrap();
    assert!(!Arc::ptr_eq(&first, &other_host));
    assert_eq!(connector.clients().len(), 3);
    assert!(connector.connect(&github, &token()).is_ok());

    let insecure = Endpoint {
        api_base: Url::parse("http://ghes.example.com/api/v3").unwrap(),
        ca_bundle: None,
    };
    assert!(matches!(
        connector.connect(&insecure, &token()),
        Err(GitHubError::InvalidEndpoint(_))
    ));
    assert_eq!(connector.clients().len(), 3);
}

#[tokio::test]
async fn connector_drops_idle_clients_nobody_holds() {
    let connector = CachingConnector::new(ClientOptions {
        idle_client_ttl: Duration::ZERO,
        ..quick_options()
    });
    let github = Endpoint {
        api_base: Url::parse("https://api.github.com").unwrap(),
        ca_bundle: None,
    };
    let held = connector.client(&github, &token()).unwrap();
    drop(
        connector
            .client(&github, &Credentials::Token("ghp_rotated_away".into()))
            .unwrap(),
    );
    // The next connect sweeps: the rotated-away client goes, the held one stays.
    let again = connector.client(&github, &token()).unwrap();
    assert!(Arc::ptr_eq(&held, &again));
    assert_eq!(connector.clients().len(), 1);
}

#[tokio::test]
async fn clients_sharing_a_credential_share_its_rate_limit() {
    let server = ScriptedServer::start(|_| {
        reply(429, serde_json::json!({"message": "slow down"})).header("retry-after", "60")
    })
    .await;
    let connector = CachingConnector::new(quick_options());
    let pool_a = connector.connect(&server.endpoint(), &token()).unwrap();
    let pool_b = connector.connect(&server.endpoint(), &token()).unwrap();
    assert!(pool_a.get_runner(&org(), 1).await.is_err());
    assert!(matches!(
        pool_b.list_runners(&org()).await,
        Err(GitHubError::RateLimited {
            secondary: true,
            ..
        })
    ));
    assert_eq!(server.hits(), 1);
}

#[test]
fn request_urls_keep_the_base_path_with_or_without_a_trailing_slash() {
    for base in [
        "https://ghes.example.com/api/v3",
        "https://ghes.example.com/api/v3/",
    ] {
        let endpoint = Endpoint {
            api_base: Url::parse(base).unwrap(),
            ca_bundle: None,
        };
        let client = GitHubClient::new(&endpoint, &token(), ClientOptions::default()).unwrap();
        let url = client.scope_url(&org(), &["actions", "runners", "7"]);
        assert_eq!(
            url.as_str(),
            "https://ghes.example.com/api/v3/orgs/acme/actions/runners/7"
        );
    }
    let github = Endpoint {
        api_base: Url::parse("https://api.github.com").unwrap(),
        ca_bundle: None,
    };
    let client = GitHubClient::new(&github, &token(), ClientOptions::default()).unwrap();
    let odd = Scope::Repository {
        owner: "o".into(),
        repo: "r/../../x".into(),
    };
    // A name can never climb out of its path segment.
    assert_eq!(
        client.scope_url(&odd, &["actions", "runners"]).as_str(),
        "https://api.github.com/repos/o/r%2F..%2F..%2Fx/actions/runners"
    );
}

#[tokio::test]
async fn find_runner_by_name_prefers_an_exact_match() {
    let server = ScriptedServer::start(|_| {
        let mut upper = runner_json(1);
        upper["name"] = "RUNNER-1".into();
        reply(
            200,
            serde_json::json!({"total_count": 2, "runners": [upper, runner_json(2)]}),
        )
    })
    .await;
    let client = server.token_client();
    let by_case = client
        .find_runner_by_name(&org(), "runner-1")
        .await
        .unwrap();
    assert_eq!(by_case.map(|r| r.id), Some(1));
    let exact = client
        .find_runner_by_name(&org(), "runner-2")
        .await
        .unwrap();
    assert_eq!(exact.map(|r| r.id), Some(2));
}

#[tokio::test]
async fn writes_are_refused_without_a_request_while_the_gate_is_shut() {
    let server = ScriptedServer::start(|seen| match seen.method.as_str() {
        "DELETE" => reply(204, serde_json::Value::Null),
        _ => reply(200, runner_json(7)),
    })
    .await;
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = open.clone();
    let client = server.client(
        token(),
        ClientOptions {
            may_write: Some(Arc::new(move || {
                gate.load(std::sync::atomic::Ordering::SeqCst)
            })),
            ..quick_options()
        },
    );
    assert!(matches!(
        client.delete_runner(&org(), 7).await,
        Err(GitHubError::NotLeading)
    ));
    assert_eq!(server.hits(), 0, "a refused write sends nothing");
    // Reads pass whatever the gate says.
    assert_eq!(client.get_runner(&org(), 7).await.unwrap().id, 7);
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    client.delete_runner(&org(), 7).await.unwrap();
    assert_eq!(server.hits(), 2);
}
