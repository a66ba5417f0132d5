//! Whole flows of the client against the stateful GitHub fake
//! (`tests/fake-github`): what the operator will actually see, including the
//! fake's own accounting of what was sent.

use std::collections::HashSet;
use std::time::Duration;

use fake_github::{AppSpec, Config, FakeGitHub, InstallationSpec, SecondaryLimit};
use url::Url;

use super::connector::CachingConnector;
use super::options::ClientOptions;
use super::requests::GitHubClient;
use crate::github::app_auth::tests::generate_rsa_key_pair;
use crate::github::{
    Credentials, Endpoint, GitHubApi, GitHubConnector, GitHubError, JitRequest, Scope,
};

const TOKEN: &str = "ghp_fake_test_token";

struct Rig {
    fake: FakeGitHub,
    /// The credential key the fake counts and rate limits `TOKEN` under.
    token_key: String,
}

impl Rig {
    /// A fake with organization `acme`, repository `acme/app`, enterprise
    /// `big` and a token allowed to manage runners in all of them.
    async fn start() -> Self {
        let fake = FakeGitHub::start(Config::default()).await.unwrap();
        let token_key = fake.add_token(TOKEN, &["admin:org", "repo", "manage_runners:enterprise"]);
        fake.add_org("acme");
        fake.add_repo("acme", "app");
        fake.add_enterprise("big");
        Rig { fake, token_key }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            api_base: Url::parse(&self.fake.base_url()).unwrap(),
            ca_bundle: None,
        }
    }

    fn client(&self) -> GitHubClient {
        GitHubClient::new(
            &self.endpoint(),
            &Credentials::Token(TOKEN.into()),
            options(),
        )
        .unwrap()
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        retry_backoff: Duration::from_millis(5),
        ..ClientOptions::default()
    }
}

fn acme() -> Scope {
    Scope::Organization("acme".into())
}

fn fake_acme() -> fake_github::Scope {
    fake_github::Scope::org("acme")
}

fn jit_request(name: &str) -> JitRequest {
    JitRequest {
        name: name.into(),
        runner_group_id: 1,
        labels: vec!["self-hosted".into(), "pool-a".into()],
        work_folder: "_work".into(),
    }
}

#[tokio::test]
async fn lists_more_than_a_page_and_polls_for_free_while_unchanged() {
    let rig = Rig::start().await;
    for n in 0..250 {
        rig.fake
            .register_runner(&fake_acme(), &format!("runner-{n:03}"), &[], true)
            .unwrap();
    }
    let client = rig.client();
    let runners = client.list_runners(&acme()).await.unwrap();
    assert_eq!(runners.len(), 250);
    let names: HashSet<_> = runners.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names.len(), 250);

    rig.fake.reset_counters();
    let before = rig.fake.rate_limit(&rig.token_key).used;
    assert_eq!(client.list_runners(&acme()).await.unwrap(), runners);
    let counters = rig.fake.counters();
    assert_eq!(counters.total, 3);
    assert_eq!(
        counters.not_modified, 3,
        "an unchanged list must be answered 304"
    );
    assert_eq!(
        rig.fake.rate_limit(&rig.token_key).used,
        before,
        "304s cost no budget"
    );

    // A change shows up: the page holding it is fetched in full again.
    let gone = runners[0].id;
    rig.fake.remove_runner(gone).unwrap();
    let after = client.list_runners(&acme()).await.unwrap();
    assert_eq!(after.len(), 249);
    assert!(after.iter().all(|r| r.id != gone));
}

#[tokio::test]
async fn jit_happy_path_then_conflict_on_the_same_name() {
    let rig = Rig::start().await;
    let client = rig.client();
    let jit = client
        .generate_jitconfig(&acme(), &jit_request("pool-a-1"))
        .await
        .unwrap();
    assert_eq!(jit.runner.name, "pool-a-1");
    assert!(!jit.encoded_jit_config.is_empty());
    assert!(jit.runner.has_label("pool-a"));
    assert_eq!(
        rig.fake.runner(jit.runner.id).map(|r| r.name),
        Some("pool-a-1".into())
    );

    let error = client
        .generate_jitconfig(&acme(), &jit_request("pool-a-1"))
        .await
        .unwrap_err();
    assert!(matches!(error, GitHubError::Conflict(_)), "{error:?}");
    let found = client
        .find_runner_by_name(&acme(), "pool-a-1")
        .await
        .unwrap();
    assert_eq!(found.map(|r| r.id), Some(jit.runner.id));
    assert_eq!(
        client
            .find_runner_by_name(&acme(), "pool-a-2")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_busy_runner_is_not_deleted_and_an_unknown_one_is_not_found() {
    let rig = Rig::start().await;
    let client = rig.client();
    let jit = client
        .generate_jitconfig(&acme(), &jit_request("busy-1"))
        .await
        .unwrap();
    rig.fake.set_online(jit.runner.id, true).unwrap();
    rig.fake
        .queue_job("acme/app", &["self-hosted", "pool-a"])
        .unwrap();
    assert!(
        client
            .get_runner(&acme(), jit.runner.id)
            .await
            .unwrap()
            .busy
    );

    assert!(matches!(
        client.delete_runner(&acme(), jit.runner.id).await,
        Err(GitHubError::Busy)
    ));
    assert_eq!(rig.fake.busy_delete_attempts(), 1);
    assert!(rig.fake.runner(jit.runner.id).is_some());

    assert!(matches!(
        client.delete_runner(&acme(), 999_999).await,
        Err(GitHubError::NotFound(_))
    ));

    let idle = client
        .generate_jitconfig(&acme(), &jit_request("idle-1"))
        .await
        .unwrap();
    client.delete_runner(&acme(), idle.runner.id).await.unwrap();
    assert!(rig.fake.runner(idle.runner.id).is_none());
    assert!(matches!(
        client.get_runner(&acme(), idle.runner.id).await,
        Err(GitHubError::NotFound(_))
    ));
}

#[tokio::test]
async fn custom_labels_are_replaced() {
    let rig = Rig::start().await;
    let client = rig.client();
    let jit = client
        .generate_jitconfig(&acme(), &jit_request("labels-1"))
        .await
        .unwrap();
    let labels = client
        .set_custom_labels(&acme(), jit.runner.id, &["pool-b".into(), "gpu".into()])
        .await
        .unwrap();
    let custom: HashSet<_> = labels
        .iter()
        .filter(|l| l.kind == crate::github::LabelType::Custom)
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(custom, HashSet::from(["pool-b", "gpu"]));
    let runner = client.get_runner(&acme(), jit.runner.id).await.unwrap();
    assert!(runner.has_label("gpu") && !runner.has_label("pool-a"));
}

#[tokio::test]
async fn runner_groups_of_organizations_and_enterprises() {
    let rig = Rig::start().await;
    rig.fake.create_group(&fake_acme(), "gpu").unwrap();
    let client = rig.client();
    let groups = client.list_runner_groups(&acme()).await.unwrap();
    assert!(groups.iter().any(|g| g.default), "{groups:?}");
    let gpu = groups.iter().find(|g| g.name == "gpu").unwrap();
    let jit = client
        .generate_jitconfig(
            &acme(),
            &JitRequest {
                runner_group_id: gpu.id,
                ..jit_request("in-gpu-group")
            },
        )
        .await
        .unwrap();
    assert_eq!(jit.runner.runner_group_id, Some(gpu.id));

    let enterprise = client
        .list_runner_groups(&Scope::Enterprise("big".into()))
        .await
        .unwrap();
    assert!(enterprise.iter().any(|g| g.default), "{enterprise:?}");
}

#[tokio::test]
async fn ghes_style_base_url_works() {
    let rig = Rig::start().await;
    let endpoint = Endpoint {
        api_base: Url::parse(&rig.fake.ghes_url()).unwrap(),
        ca_bundle: None,
    };
    let client =
        GitHubClient::new(&endpoint, &Credentials::Token(TOKEN.into()), options()).unwrap();
    let repo = Scope::Repository {
        owner: "acme".into(),
        repo: "app".into(),
    };
    let jit = client
        .generate_jitconfig(&repo, &jit_request("ghes-1"))
        .await
        .unwrap();
    let runners = client.list_runners(&repo).await.unwrap();
    assert_eq!(
        runners.iter().map(|r| r.id).collect::<Vec<_>>(),
        [jit.runner.id]
    );
    assert!(
        rig.fake
            .request_log()
            .iter()
            .all(|r| r.path.starts_with("/api/v3/"))
    );
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized() {
    let rig = Rig::start().await;
    let client = GitHubClient::new(
        &rig.endpoint(),
        &Credentials::Token("ghp_not_known_to_github".into()),
        options(),
    )
    .unwrap();
    let error = client.list_runners(&acme()).await.unwrap_err();
    assert!(
        matches!(error, GitHubError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("ghp_not_known_to_github"));
}

#[tokio::test]
async fn an_exhausted_budget_blocks_the_credential_without_sending() {
    let rig = Rig::start().await;
    let client = rig.client();
    client.list_runners(&acme()).await.unwrap();
    rig.fake.exhaust_rate_limit(&rig.token_key);
    rig.fake.reset_counters();

    let error = client
        .generate_jitconfig(&acme(), &jit_request("never"))
        .await
        .unwrap_err();
    let GitHubError::RateLimited {
        retry_after,
        secondary,
    } = error
    else {
        panic!("expected RateLimited, got {error:?}");
    };
    assert!(!secondary);
    assert!(retry_after > Duration::from_secs(60), "{retry_after:?}");
    assert_eq!(rig.fake.counters().primary_rate_limited, 1);

    for _ in 0..5 {
        assert!(matches!(
            client.list_runners(&acme()).await,
            Err(GitHubError::RateLimited {
                secondary: false,
                ..
            })
        ));
    }
    assert_eq!(
        rig.fake.counters().total,
        1,
        "blocked calls must not reach GitHub"
    );
    assert_eq!(client.rate_limit().map(|s| s.remaining), Some(0));
}

#[tokio::test]
async fn a_secondary_limit_with_retry_after_is_honoured() {
    let rig = Rig::start().await;
    let client = rig.client();
    rig.fake
        .secondary_limit(SecondaryLimit::next_requests(1, 30));
    let error = client.list_runners(&acme()).await.unwrap_err();
    assert!(
        matches!(error, GitHubError::RateLimited { secondary: true, retry_after } if retry_after == Duration::from_secs(30)),
        "{error:?}"
    );
    // The fake would answer the next request, but GitHub asked for 30 s of quiet.
    assert!(matches!(
        client.list_runners(&acme()).await,
        Err(GitHubError::RateLimited {
            secondary: true,
            ..
        })
    ));
    assert_eq!(rig.fake.counters().total, 1);
}

#[tokio::test]
async fn server_errors_on_reads_are_retried() {
    let rig = Rig::start().await;
    let client = rig.client();
    rig.fake
        .inject_fault(fake_github::Fault::times(Some("GET *"), 502, 2));
    assert!(client.list_runners(&acme()).await.unwrap().is_empty());
    assert_eq!(rig.fake.counters().faults_injected, 2);

    rig.fake
        .inject_fault(fake_github::Fault::times(Some("POST *"), 500, 1));
    assert!(matches!(
        client
            .generate_jitconfig(&acme(), &jit_request("once"))
            .await,
        Err(GitHubError::Server { status: 500 })
    ));
    assert!(rig.fake.runners(&fake_acme()).is_empty());
}

#[tokio::test]
async fn an_unreachable_fake_is_unavailable() {
    let rig = Rig::start().await;
    let client = rig.client();
    rig.fake.set_unavailable(true);
    assert!(matches!(
        client.list_runners(&acme()).await,
        Err(GitHubError::Server { status: 503 })
    ));
    rig.fake.shutdown().await;
    let error = client.list_runners(&acme()).await.unwrap_err();
    assert!(matches!(error, GitHubError::Unavailable(_)), "{error:?}");
}

struct AppRig {
    rig: Rig,
    credentials: Credentials,
}

impl AppRig {
    async fn start() -> Self {
        let rig = Rig::start().await;
        let (private_key_pem, _) = generate_rsa_key_pair();
        rig.fake
            .add_app(AppSpec {
                app_id: 1234,
                client_id: None,
                key_pem: private_key_pem.clone(),
                installations: vec![InstallationSpec::new(77, Some("acme"))],
            })
            .unwrap();
        let credentials = Credentials::App {
            app_id: "1234".into(),
            installation_id: 77,
            private_key_pem,
        };
        AppRig { rig, credentials }
    }

    fn exchanges(&self) -> u64 {
        self.rig
            .fake
            .counters()
            .endpoint("POST /app/installations/{installation_id}/access_tokens")
    }
}

#[tokio::test]
async fn github_app_credentials_work_end_to_end() {
    let app = AppRig::start().await;
    let client = GitHubClient::new(&app.rig.endpoint(), &app.credentials, options()).unwrap();
    let jit = client
        .generate_jitconfig(&acme(), &jit_request("app-1"))
        .await
        .unwrap();
    assert_eq!(client.list_runners(&acme()).await.unwrap().len(), 1);
    client.delete_runner(&acme(), jit.runner.id).await.unwrap();
    assert_eq!(
        app.exchanges(),
        1,
        "one installation token serves every call"
    );
    assert!(
        app.rig
            .fake
            .request_log()
            .iter()
            .filter(|r| !r.path.starts_with("/app/"))
            .all(|r| r.credential == "installation:77"),
        "{:?}",
        app.rig.fake.request_log()
    );
}

#[tokio::test]
async fn installation_tokens_are_refreshed_before_they_expire() {
    let app = AppRig::start().await;
    // GitHub's expiry has whole seconds, so with a 3 s token and a 1 s margin the
    // token is fresh for at least 1 s and due for refresh 2 s later, while the
    // fake still accepts it.
    app.rig.fake.set_app_token_ttl(Duration::from_secs(3));
    let client = GitHubClient::new(
        &app.rig.endpoint(),
        &app.credentials,
        ClientOptions {
            token_refresh_margin: Duration::from_secs(1),
            ..options()
        },
    )
    .unwrap();
    client.list_runners(&acme()).await.unwrap();
    client.list_runners(&acme()).await.unwrap();
    assert_eq!(app.exchanges(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    client.list_runners(&acme()).await.unwrap();
    assert_eq!(app.exchanges(), 2);
    assert_eq!(
        app.rig.fake.counters().by_status.get(&401),
        None,
        "the token is replaced before GitHub refuses it"
    );
}

#[tokio::test]
async fn an_unknown_installation_is_unauthorized() {
    let app = AppRig::start().await;
    let Credentials::App {
        app_id,
        private_key_pem,
        ..
    } = app.credentials.clone()
    else {
        unreachable!()
    };
    let wrong = Credentials::App {
        app_id,
        installation_id: 78,
        private_key_pem,
    };
    let client = GitHubClient::new(&app.rig.endpoint(), &wrong, options()).unwrap();
    let error = client.list_runners(&acme()).await.unwrap_err();
    assert!(
        matches!(error, GitHubError::Unauthorized { status: 404, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn pools_sharing_a_credential_share_one_client() {
    let app = AppRig::start().await;
    let connector = CachingConnector::new(options());
    let pool_a = connector
        .connect(&app.rig.endpoint(), &app.credentials)
        .unwrap();
    let pool_b = connector
        .connect(&app.rig.endpoint(), &app.credentials)
        .unwrap();
    pool_a.list_runners(&acme()).await.unwrap();
    pool_b.list_runners(&acme()).await.unwrap();
    assert_eq!(app.exchanges(), 1, "one installation token for both pools");
    assert_eq!(
        app.rig.fake.counters().not_modified,
        1,
        "the second pool's list was conditional on the first's ETag"
    );
}

#[tokio::test]
async fn manages_an_organization_runner_group_end_to_end() {
    use crate::github::{GroupVisibility, RunnerGroupApi, RunnerGroupSettings};
    let rig = Rig::start().await;
    let lib = rig.fake.add_repo("acme", "lib");
    let client = rig.client();
    let org = acme();
    let app = client.repository_id("acme", "app").await.unwrap();
    assert_eq!(client.repository_id("acme", "lib").await.unwrap(), lib);
    assert!(matches!(
        client.repository_id("acme", "nothing").await,
        Err(GitHubError::NotFound(_))
    ));

    let mut settings = RunnerGroupSettings {
        name: "team-a".into(),
        visibility: GroupVisibility::Selected,
        allows_public_repositories: false,
        restricted_to_workflows: false,
        selected_workflows: vec![],
    };
    let group = client
        .create_runner_group(&org, &settings, &[app])
        .await
        .unwrap();
    assert_eq!(group.settings, settings);
    // GitHub compares group names case-insensitively, and so does the lookup.
    let found = client.find_runner_group(&org, "TEAM-A").await.unwrap();
    assert_eq!(found.map(|g| g.id), Some(group.id));
    assert!(matches!(
        client.create_runner_group(&org, &settings, &[]).await,
        Err(GitHubError::Invalid(_))
    ));
    // A group created here is visible to the cached name lookup of pools at once.
    let names: Vec<String> = client
        .list_runner_groups(&acme())
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert!(names.contains(&"team-a".to_string()), "{names:?}");

    settings.restricted_to_workflows = true;
    settings.selected_workflows = vec!["acme/app/.github/workflows/ci.yml@refs/heads/main".into()];
    let updated = client
        .update_runner_group(&org, group.id, &settings)
        .await
        .unwrap();
    assert_eq!(updated.settings, settings);
    assert_eq!(
        client.get_runner_group(&org, group.id).await.unwrap(),
        updated
    );

    assert_eq!(
        client.list_group_access(&org, group.id).await.unwrap(),
        [app]
    );
    client
        .add_group_repository(&org, group.id, lib)
        .await
        .unwrap();
    client
        .remove_group_repository(&org, group.id, app)
        .await
        .unwrap();
    assert_eq!(
        client.list_group_access(&org, group.id).await.unwrap(),
        [lib]
    );
    client
        .set_group_access(&org, group.id, &[app, lib])
        .await
        .unwrap();
    let mut both = client.list_group_access(&org, group.id).await.unwrap();
    both.sort();
    assert_eq!(both, [app.min(lib), app.max(lib)]);

    let runner = rig
        .fake
        .register_runner(&fake_acme(), "r1", &[], true)
        .unwrap();
    client
        .add_group_runner(&org, group.id, runner.id)
        .await
        .unwrap();
    let in_group = client.list_group_runners(&org, group.id).await.unwrap();
    assert_eq!(
        in_group.iter().map(|r| r.id).collect::<Vec<_>>(),
        [runner.id]
    );
    client
        .remove_group_runner(&org, group.id, runner.id)
        .await
        .unwrap();
    assert!(
        client
            .list_group_runners(&org, group.id)
            .await
            .unwrap()
            .is_empty()
    );
    client
        .set_group_runners(&org, group.id, &[runner.id])
        .await
        .unwrap();
    assert_eq!(
        client
            .list_group_runners(&org, group.id)
            .await
            .unwrap()
            .len(),
        1
    );

    client.delete_runner_group(&org, group.id).await.unwrap();
    assert!(matches!(
        client.get_runner_group(&org, group.id).await,
        Err(GitHubError::NotFound(_))
    ));
    assert!(
        client
            .find_runner_group(&org, "team-a")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn runner_downloads_are_asked_for_conditionally() {
    use crate::github::RunnerGroupApi;
    let rig = Rig::start().await;
    let client = rig.client();
    let first = client.runner_downloads(&acme()).await.unwrap();
    assert!(
        first
            .iter()
            .any(|d| d.os == "linux" && d.architecture == "x64"),
        "{first:?}"
    );
    let again = client.runner_downloads(&acme()).await.unwrap();
    assert_eq!(first, again);
    // The second answer was a 304, which costs no rate-limit budget.
    assert_eq!(
        rig.fake
            .counters()
            .endpoint_status("GET /orgs/{org}/actions/runners/downloads", 304),
        1
    );
}

#[tokio::test]
async fn manages_an_enterprise_runner_group_shared_with_its_organizations() {
    use crate::github::{GroupVisibility, RunnerGroupApi, RunnerGroupSettings};
    let rig = Rig::start().await;
    rig.fake.add_org_to_enterprise("big", "acme");
    let beta = rig.fake.add_org("beta");
    rig.fake.add_org_to_enterprise("big", "beta");
    let client = rig.client();
    let enterprise = Scope::Enterprise("big".into());
    assert_eq!(client.organization_id("beta").await.unwrap(), beta);
    let settings = RunnerGroupSettings {
        name: "shared".into(),
        visibility: GroupVisibility::Selected,
        allows_public_repositories: false,
        restricted_to_workflows: false,
        selected_workflows: vec![],
    };
    let acme_id = client.organization_id("acme").await.unwrap();
    let group = client
        .create_runner_group(&enterprise, &settings, &[beta])
        .await
        .unwrap();
    assert_eq!(
        client
            .list_group_access(&enterprise, group.id)
            .await
            .unwrap(),
        [beta]
    );
    // Not shared with acme yet, then shared: listed there as inherited.
    assert!(
        client
            .find_runner_group(&acme(), "shared")
            .await
            .unwrap()
            .is_none()
    );
    client
        .set_group_access(&enterprise, group.id, &[acme_id, beta])
        .await
        .unwrap();
    let mut shared = client
        .list_group_access(&enterprise, group.id)
        .await
        .unwrap();
    shared.sort();
    let mut expected = vec![acme_id, beta];
    expected.sort();
    assert_eq!(shared, expected);
    let inherited = client.find_runner_group(&acme(), "shared").await.unwrap();
    assert!(inherited.is_some_and(|g| g.inherited && g.id == group.id));
    let own = client
        .find_runner_group(&enterprise, "shared")
        .await
        .unwrap();
    assert!(own.is_some_and(|g| !g.inherited));
    assert!(matches!(
        client.organization_id("nobody").await,
        Err(GitHubError::NotFound(_))
    ));
}
