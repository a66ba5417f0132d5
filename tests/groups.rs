//! RunnerGroups end to end: the real operator against the local control
//! plane and the GitHub fake. Groups are created, kept as declared (settings
//! and repository access put back after changes by hand), adopted only when
//! asked, and deleted only once no runner is in them.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use runnerpool::RunnerGroup;
use runnerpool::github::client::{ClientOptions, GitHubClient};
use runnerpool::github::{
    Credentials, Endpoint, GroupVisibility, RunnerGroupApi, RunnerGroupSettings, Scope,
};
use support::cluster::wait_for;
use support::operator::{Base, Env, TOKEN, pool_yaml};

const T: Duration = Duration::from_secs(40);

fn acme() -> fake_github::Scope {
    fake_github::Scope::org("acme")
}

fn org() -> Scope {
    Scope::Organization("acme".into())
}

fn groups(env: &Env) -> Api<RunnerGroup> {
    Api::namespaced(env.client.clone(), &env.ns)
}

/// A RunnerGroup manifest for organization `acme` on the fake; `extra` is
/// more of its spec, indented by two spaces.
fn group_yaml(env: &Env, name: &str, extra: &str) -> serde_json::Value {
    let yaml = format!(
        r#"
apiVersion: actions.runnerpool.dev/v1alpha1
kind: RunnerGroup
metadata:
  name: {name}
  namespace: {ns}
spec:
  github:
    organization: acme
    apiUrl: "{url}"
    credentialsSecret: {{ name: gh }}
{extra}
"#,
        ns = env.ns,
        url = env.api_url(Base::Root)
    );
    serde_yaml::from_str(&yaml).expect("RunnerGroup YAML")
}

async fn apply_group(env: &Env, name: &str, extra: &str) -> Result<RunnerGroup, kube::Error> {
    groups(env)
        .patch(
            name,
            &PatchParams::apply("integration-test").force(),
            &Patch::Apply(&group_yaml(env, name, extra)),
        )
        .await
}

fn condition(group: &RunnerGroup, type_: &str) -> Option<(String, String, String)> {
    group
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the RunnerGroup is Ready for its current generation; returns its group id.
async fn wait_for_ready(env: &Env, name: &str) -> u64 {
    wait_for(&format!("RunnerGroup {name} Ready"), T, || async {
        let g = groups(env).get(name).await.ok()?;
        let status = g.status.as_ref()?;
        let ready = condition(&g, "Ready").is_some_and(|c| c.0 == "True");
        (ready && status.observed_generation == g.metadata.generation)
            .then_some(status.group_id? as u64)
    })
    .await
}

/// Waits until the group `id` on the fake satisfies `check`.
async fn wait_for_fake_group(
    env: &Env,
    what: &str,
    id: u64,
    check: impl Fn(&fake_github::RunnerGroup) -> bool,
) -> fake_github::RunnerGroup {
    wait_for(what, T, || async {
        env.fake
            .groups(&acme())
            .into_iter()
            .find(|g| g.id == id && check(g))
    })
    .await
}

fn fake_group(env: &Env, id: u64) -> Option<fake_github::RunnerGroup> {
    env.fake.groups(&acme()).into_iter().find(|g| g.id == id)
}

/// A person with the same token, changing things by hand on GitHub.
fn by_hand(env: &Env) -> GitHubClient {
    let endpoint = Endpoint {
        api_base: url::Url::parse(&env.api_url(Base::Root)).unwrap(),
        ca_bundle: None,
    };
    GitHubClient::new(
        &endpoint,
        &Credentials::Token(TOKEN.into()),
        ClientOptions::default(),
    )
    .unwrap()
}

async fn wait_for_gone(env: &Env, name: &str) {
    let what = format!("RunnerGroup {name} gone");
    support::cluster::wait_for_gone(&what, &groups(env), name, T).await;
}

#[tokio::test]
async fn a_runner_group_is_created_edited_and_put_back_after_drift() {
    let env = Env::start("rg-sync").await;
    let app = env.fake.add_repo("acme", "app");
    let lib = env.fake.add_repo("acme", "lib");
    apply_group(
        &env,
        "team-a",
        "  visibility: selected\n  selectedRepositories: [acme/app]\n",
    )
    .await
    .unwrap();
    let id = wait_for_ready(&env, "team-a").await;
    let g = fake_group(&env, id).expect("the group exists on GitHub");
    assert_eq!(g.name, "team-a");
    assert_eq!(g.visibility, fake_github::Visibility::Selected);
    assert_eq!(g.selected_ids, BTreeSet::from([app]));

    // Spec edits: a repository added, settings changed, then a repository removed.
    apply_group(
        &env,
        "team-a",
        "  name: Team A\n  visibility: selected\n  selectedRepositories: [acme/app, acme/lib]\n  allowsPublicRepositories: true\n  restrictedToWorkflows: true\n  selectedWorkflows: [acme/app/.github/workflows/ci.yml@refs/heads/main]\n",
    )
    .await
    .unwrap();
    wait_for_fake_group(&env, "the edits on GitHub", id, |g| {
        g.name == "Team A"
            && g.allows_public_repositories
            && g.restricted_to_workflows
            && g.selected_workflows == ["acme/app/.github/workflows/ci.yml@refs/heads/main"]
            && g.selected_ids == BTreeSet::from([app, lib])
    })
    .await;
    apply_group(
        &env,
        "team-a",
        "  name: Team A\n  visibility: selected\n  selectedRepositories: [acme/lib]\n",
    )
    .await
    .unwrap();
    wait_for_fake_group(&env, "acme/app removed and settings back", id, |g| {
        g.selected_ids == BTreeSet::from([lib])
            && !g.allows_public_repositories
            && !g.restricted_to_workflows
    })
    .await;
    // The whole access list in one call, never one repository at a time.
    let calls = env.calls_by_endpoint();
    let count = |endpoint: &str| calls.get(endpoint).copied().unwrap_or(0);
    assert!(count(SET_ACCESS) >= 2, "{calls:?}");
    assert_eq!(count(ADD_ONE) + count(REMOVE_ONE), 0, "{calls:?}");

    // Drift by hand: settings and repository access changed on GitHub.
    let hand = by_hand(&env);
    hand.update_runner_group(
        &org(),
        id,
        &RunnerGroupSettings {
            name: "Team A".into(),
            visibility: GroupVisibility::Selected,
            allows_public_repositories: true,
            restricted_to_workflows: false,
            selected_workflows: vec![],
        },
    )
    .await
    .unwrap();
    hand.set_group_access(&org(), id, &[app]).await.unwrap();
    assert!(fake_group(&env, id).unwrap().allows_public_repositories);
    wait_for_fake_group(&env, "the drift put back", id, |g| {
        !g.allows_public_repositories && g.selected_ids == BTreeSet::from([lib])
    })
    .await;

    // Deleted by hand: created again.
    hand.delete_runner_group(&org(), id).await.unwrap();
    let again = wait_for("the group created again", T, || async {
        env.fake
            .groups(&acme())
            .into_iter()
            .find(|g| g.name == "Team A" && g.id != id)
    })
    .await;
    assert_eq!(again.selected_ids, BTreeSet::from([lib]));

    // Deleting the RunnerGroup deletes the group it created.
    groups(&env)
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_gone(&env, "team-a").await;
    assert!(
        !env.fake.groups(&acme()).iter().any(|g| g.name == "Team A"),
        "the group is deleted from GitHub"
    );
}

#[tokio::test]
async fn an_existing_group_is_adopted_only_when_asked() {
    let env = Env::start("rg-adopt").await;
    let existing = env.fake.create_group(&acme(), "shared").unwrap();
    apply_group(&env, "shared", "").await.unwrap();
    let message = wait_for("AlreadyExists", T, || async {
        let g = groups(&env).get("shared").await.ok()?;
        condition(&g, "Ready")
            .filter(|c| c.1 == "AlreadyExists")
            .map(|c| c.2)
    })
    .await;
    assert!(message.contains("adopt"), "{message}");
    let g = groups(&env).get("shared").await.unwrap();
    assert_eq!(g.status.unwrap().group_id, None);
    // Deleting a RunnerGroup that never managed the group leaves it alone.
    groups(&env)
        .delete("shared", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_gone(&env, "shared").await;
    assert!(
        fake_group(&env, existing.id).is_some(),
        "a group not ours is never deleted"
    );

    apply_group(&env, "shared", "  adopt: true\n  visibility: private\n")
        .await
        .unwrap();
    assert_eq!(wait_for_ready(&env, "shared").await, existing.id);
    wait_for_fake_group(&env, "the adopted group's settings", existing.id, |g| {
        g.visibility == fake_github::Visibility::Private
    })
    .await;
    groups(&env)
        .delete("shared", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_gone(&env, "shared").await;
    assert!(
        fake_group(&env, existing.id).is_none(),
        "an adopted group is deleted with its RunnerGroup"
    );
}

#[tokio::test]
async fn a_pool_registers_in_its_group_and_deletion_waits_for_its_runners() {
    let env = Env::start("rg-pool").await;
    let url = env.api_url(Base::Root);
    // The pool exists first: it waits for the group instead of using the default one.
    env.apply_pool(&pool_yaml(
        "builders",
        "organization: acme",
        &url,
        2,
        &["linux"],
        "  runnerGroupRef: { name: team-b }\n",
    ))
    .await;
    // The pool says why it waits: a pass decided, and made no runner.
    wait_for("the pool to wait for its group", T, || async {
        let pool = env.pools().get("builders").await.ok()?;
        let degraded = pool
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded")?;
        (degraded.reason == "RunnerGroupNotFound").then_some(())
    })
    .await;
    env.wait_for_a_fresh_pass("builders").await;
    assert!(
        env.live_pods("builders").await.is_empty(),
        "no runner before the group exists"
    );
    apply_group(&env, "team-b", "").await.unwrap();
    let id = wait_for_ready(&env, "team-b").await;
    let runners = env
        .wait_for_online_runners("builders", 2, Duration::from_secs(60))
        .await;
    for r in &runners {
        assert_eq!(env.fake.runner(*r).unwrap().runner_group_id, id);
    }
    wait_for("status.runners = 2", T, || async {
        let g = groups(&env).get("team-b").await.ok()?;
        (g.status?.runners == Some(2)).then_some(())
    })
    .await;

    // Deleting the group waits for the runners, naming the pool.
    groups(&env)
        .delete("team-b", &DeleteParams::default())
        .await
        .unwrap();
    let message = wait_for("WaitingForRunners", T, || async {
        let g = groups(&env).get("team-b").await.ok()?;
        condition(&g, "Ready")
            .filter(|c| c.1 == "WaitingForRunners")
            .map(|c| c.2)
    })
    .await;
    assert!(message.contains("builders"), "{message}");
    // Deletion passes that found runners in the group: each lists them.
    let group_path = format!("/actions/runner-groups/{id}");
    let runners_path = format!("{group_path}/runners");
    let after = env.fake.request_log().last().map_or(0, |r| r.seq);
    wait_for("two more deletion passes", T, || async {
        let passes = env
            .fake
            .request_log()
            .iter()
            .filter(|r| r.seq > after && r.method == "GET" && r.path.ends_with(&runners_path))
            .count();
        (passes >= 2).then_some(())
    })
    .await;
    assert!(
        !env.fake
            .request_log()
            .iter()
            .any(|r| r.method == "DELETE" && r.path.ends_with(&group_path)),
        "a DELETE was sent for the group while runners are in it"
    );
    assert!(
        fake_group(&env, id).is_some(),
        "the group stays while runners are in it"
    );
    assert!(groups(&env).get_opt("team-b").await.unwrap().is_some());

    env.pools()
        .delete("builders", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_for_pool_gone("builders", Duration::from_secs(60))
        .await;
    wait_for_gone(&env, "team-b").await;
    assert!(
        fake_group(&env, id).is_none(),
        "the group is deleted once empty"
    );
}

#[tokio::test]
async fn invalid_runner_groups_are_refused_by_the_api_server() {
    let env = Env::start("rg-invalid").await;
    let refused = |extra: &'static str, name: &'static str, expected: &'static str| {
        refused_group(&env, group_yaml(&env, name, extra), expected)
    };
    refused(
        "  selectedRepositories: [acme/app]\n",
        "a",
        "selectedRepositories applies only with visibility: selected",
    )
    .await;
    refused(
        "  visibility: selected\n  selectedRepositories: [other/app]\n",
        "b",
        "selectedRepositories must be repositories of spec.github.organization",
    )
    .await;
    refused(
        "  visibility: selected\n",
        "c",
        "visibility: selected needs selectedRepositories",
    )
    .await;
    refused(
        "  selectedWorkflows: [acme/app/.github/workflows/ci.yml@refs/heads/main]\n",
        "d",
        "selectedWorkflows applies only with restrictedToWorkflows: true",
    )
    .await;
    refused(
        "  name: Default\n",
        "e",
        "the Default runner group is GitHub's own",
    )
    .await;
    refused("  visibility: everyone\n", "f", "Unsupported value").await;
    refused("", "default", "would manage GitHub's Default group").await;

    // The organization is fixed once the group exists.
    apply_group(&env, "fixed", "").await.unwrap();
    let mut moved = group_yaml(&env, "fixed", "");
    moved["spec"]["github"]["organization"] = "other".into();
    refused_change(&env, "fixed", &moved, "organization cannot change").await;

    // A pool names one group, one way, and only for organization runners.
    refused_pool(
        &env,
        "organization: acme",
        "  runnerGroup: x\n  runnerGroupRef: { name: fixed }\n",
        "set one of runnerGroupRef, runnerGroup or runnerGroupId",
    )
    .await;
    refused_pool(
        &env,
        "repository: acme/app",
        "  runnerGroupRef: { name: fixed }\n",
        "organization runners only",
    )
    .await;
}

/// Asserts the API server refuses a pool with `scope` and `extra`, saying `expected`.
async fn refused_pool(env: &Env, scope: &str, extra: &str, expected: &str) {
    let yaml = pool_yaml(
        "refused",
        scope,
        &env.api_url(Base::Root),
        1,
        &["linux"],
        extra,
    );
    let mut value: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    value["metadata"]["namespace"] = env.ns.clone().into();
    let err = env
        .pools()
        .patch(
            "refused",
            &PatchParams::apply("integration-test"),
            &Patch::Apply(&value),
        )
        .await
        .expect_err(extra);
    assert!(err.to_string().contains(expected), "{extra}: {err}");
}

// ----- issue 21: deletion, many repositories, lost answers, enterprise, retain -----

const SET_ACCESS: &str = "PUT /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories";
const ADD_ONE: &str =
    "PUT /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories/{repository_id}";
const REMOVE_ONE: &str =
    "DELETE /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories/{repository_id}";
const GROUP_READ: &str = "GET /orgs/{org}/actions/runner-groups/{runner_group_id}";
const GROUP_RUNNERS: &str = "GET /orgs/{org}/actions/runner-groups/{runner_group_id}/runners";
const REPOSITORY_READ: &str = "GET /repos/{owner}/{repo}";

/// A RunnerGroup manifest for `scope` (`organization: acme` or
/// `enterprise: bigcorp`) on the fake.
fn scoped_group_yaml(env: &Env, name: &str, scope: &str, extra: &str) -> serde_json::Value {
    let mut value = group_yaml(env, name, extra);
    let github = value["spec"]["github"]
        .as_object_mut()
        .expect("spec.github");
    github.remove("organization");
    let (key, login) = scope.split_once(": ").expect("key: value");
    github.insert(key.into(), login.into());
    value
}

async fn apply_scoped_group(env: &Env, name: &str, scope: &str, extra: &str) -> RunnerGroup {
    groups(env)
        .patch(
            name,
            &PatchParams::apply("integration-test").force(),
            &Patch::Apply(&scoped_group_yaml(env, name, scope, extra)),
        )
        .await
        .expect("RunnerGroup applied")
}

/// A person with the same token, calling GitHub directly; returns the status.
async fn github_by_hand(
    env: &Env,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> u16 {
    reqwest::Client::new()
        .request(method, format!("{}{path}", env.api_url(Base::Root)))
        .bearer_auth(TOKEN)
        .header("accept", "application/vnd.github+json")
        .json(&body)
        .send()
        .await
        .expect("GitHub fake answers")
        .status()
        .as_u16()
}

async fn delete_and_wait(env: &Env, name: &str) {
    groups(env)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    wait_for_gone(env, name).await;
}

/// Asserts the API server refuses `manifest`, saying `expected`. Untyped, so
/// values the Rust types cannot hold reach the API server too.
async fn refused_group(env: &Env, manifest: serde_json::Value, expected: &str) {
    let resource = kube::api::ApiResource::erase::<RunnerGroup>(&());
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(env.client.clone(), &env.ns, &resource);
    let object = serde_json::from_value(manifest).unwrap();
    let err = api
        .create(&PostParams::default(), &object)
        .await
        .expect_err(expected);
    assert!(err.to_string().contains(expected), "{expected}: {err}");
}

/// Asserts the API server refuses `manifest` as a change of RunnerGroup
/// `name`, saying `expected`.
async fn refused_change(env: &Env, name: &str, manifest: &serde_json::Value, expected: &str) {
    let err = groups(env)
        .patch(
            name,
            &PatchParams::apply("integration-test").force(),
            &Patch::Apply(manifest),
        )
        .await
        .expect_err(expected);
    assert!(err.to_string().contains(expected), "{err}");
}

/// Reasons of the events about RunnerGroup `name`.
async fn event_reasons(env: &Env, name: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(env.client.clone(), &env.ns);
    events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

/// Waits until RunnerGroup `name` shows `Ready=False` with `reason`; returns the message.
async fn wait_for_reason(env: &Env, name: &str, reason: &str) -> String {
    wait_for(reason, T, || async {
        let g = groups(env).get(name).await.ok()?;
        condition(&g, "Ready")
            .filter(|c| c.1 == reason)
            .map(|c| c.2)
    })
    .await
}

/// Requests to `endpoint` the fake logged after `seq`, with their status.
fn logged_after(env: &Env, endpoint: &str, seq: u64) -> Vec<(u64, u16)> {
    env.fake
        .request_log()
        .into_iter()
        .filter(|r| r.endpoint == endpoint && r.seq > seq)
        .map(|r| (r.seq, r.status))
        .collect()
}

#[tokio::test]
async fn a_deleted_group_outlasts_a_github_hiccup_after_the_cleanup_timeout() {
    let env = Env::start_with("rg-hiccup", &["--cleanup-timeout-seconds", "3"]).await;
    apply_group(&env, "team-h", "").await.unwrap();
    let id = wait_for_ready(&env, "team-h").await;
    let runner = env
        .fake
        .register_runner(&acme(), "by-hand", &["linux"], false)
        .unwrap();
    let path = format!(
        "/orgs/acme/actions/runner-groups/{id}/runners/{}",
        runner.id
    );
    let status = github_by_hand(&env, reqwest::Method::PUT, &path, serde_json::json!({})).await;
    assert_eq!(status, 204);
    groups(&env)
        .delete("team-h", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_reason(&env, "team-h", "WaitingForRunners").await;
    // Longer than the cleanup timeout, GitHub answering all along.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Then one deletion pass fails: every attempt of its runner list (the
    // client tries an idempotent read three times).
    let start = env.fake.request_log().last().map_or(0, |r| r.seq);
    env.fake
        .inject_fault(fake_github::Fault::times(Some(GROUP_RUNNERS), 502, 3));
    // Two answered passes after the failed one.
    wait_for(
        "two answered deletion passes after the failed one",
        T,
        || async {
            let log = logged_after(&env, GROUP_RUNNERS, start);
            let failed = log.iter().filter(|(_, s)| *s == 502).count();
            // 200, or 304 for an unchanged list (conditional requests).
            let answered = log.iter().filter(|(_, s)| *s < 400).count();
            (failed == 3 && answered >= 2).then_some(())
        },
    )
    .await;
    let reasons = event_reasons(&env, "team-h").await;
    assert!(
        !reasons.iter().any(|r| r == "GroupLeftOnGitHub"),
        "released after one failure: {reasons:?}"
    );
    assert!(
        fake_group(&env, id).is_some(),
        "the group is still on GitHub"
    );
    assert!(groups(&env).get_opt("team-h").await.unwrap().is_some());

    // Once the runner is gone, the group goes with its RunnerGroup.
    env.fake.remove_runner(runner.id).unwrap();
    wait_for_gone(&env, "team-h").await;
    assert!(fake_group(&env, id).is_none());
}

#[tokio::test]
async fn a_group_with_150_repositories_converges_and_reads_their_ids_once() {
    let env = Env::start("rg-many").await;
    let names: Vec<String> = (0..150).map(|i| format!("repo-{i:03}")).collect();
    let ids: Vec<u64> = names.iter().map(|n| env.fake.add_repo("acme", n)).collect();
    let list: Vec<String> = names.iter().map(|n| format!("acme/{n}")).collect();
    let extra = format!(
        "  visibility: selected\n  selectedRepositories: [{}]\n",
        list.join(", ")
    );
    apply_group(&env, "many", &extra).await.unwrap();
    let id = wait_for_ready(&env, "many").await;
    let all: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(fake_group(&env, id).unwrap().selected_ids, all);
    let count = |endpoint: &str| env.calls_by_endpoint().get(endpoint).copied().unwrap_or(0);
    assert_eq!(count(REPOSITORY_READ), 150, "each id read once");

    // Three more passes (each reads the group once): no id is read again,
    // and each costs a handful of calls whatever the number of repositories.
    let start = env.fake.request_log().last().map_or(0, |r| r.seq);
    let passes = wait_for("three more passes", T, || async {
        let reads = logged_after(&env, GROUP_READ, start);
        (reads.len() >= 4).then_some(reads)
    })
    .await;
    let log = env.fake.request_log();
    for pass in passes.windows(2) {
        let calls: Vec<&str> = log
            .iter()
            .filter(|r| r.seq >= pass[0].0 && r.seq < pass[1].0)
            .map(|r| r.endpoint.as_str())
            .collect();
        eprintln!(
            "one pass over 150 repositories: {} calls: {calls:?}",
            calls.len()
        );
        assert!(calls.len() <= 6, "{calls:?}");
    }
    assert_eq!(count(REPOSITORY_READ), 150, "an id was read again");

    // Drift by hand: 100 repositories taken away. One call puts them back.
    let path = format!("/orgs/acme/actions/runner-groups/{id}/repositories");
    let body = serde_json::json!({ "selected_repository_ids": ids[..50] });
    let status = github_by_hand(&env, reqwest::Method::PUT, &path, body).await;
    assert_eq!(status, 204);
    let before = count(SET_ACCESS);
    wait_for_fake_group(&env, "the 100 repositories back", id, |g| {
        g.selected_ids == all
    })
    .await;
    assert_eq!(
        count(SET_ACCESS),
        before + 1,
        "{:?}",
        env.calls_by_endpoint()
    );
    assert_eq!(count(ADD_ONE) + count(REMOVE_ONE), 0);
    assert_eq!(count(REPOSITORY_READ), 150);
}

#[tokio::test]
async fn a_group_whose_creation_answer_was_lost_is_taken_over_not_reported_as_existing() {
    let env = Env::start("rg-lost").await;
    // GitHub creates the group, but its answer never reaches the operator.
    let create = "POST /orgs/{org}/actions/runner-groups";
    env.fake
        .inject_fault(fake_github::Fault::lost_answers(Some(create), 502, 1));
    apply_group(&env, "team-l", "").await.unwrap();
    let id = wait_for_ready(&env, "team-l").await;
    let named: Vec<u64> = env
        .fake
        .groups(&acme())
        .iter()
        .filter(|g| g.name == "team-l")
        .map(|g| g.id)
        .collect();
    assert_eq!(named, [id], "one group, the one created");
    let calls = env.calls_by_endpoint();
    assert_eq!(calls.get(create), Some(&1), "created once: {calls:?}");
    let reasons = event_reasons(&env, "team-l").await;
    assert!(!reasons.iter().any(|r| r == "AlreadyExists"), "{reasons:?}");
    // It is the operator's own: deleted with the RunnerGroup.
    delete_and_wait(&env, "team-l").await;
    assert!(fake_group(&env, id).is_none());
}

#[tokio::test]
async fn a_retained_group_outlives_its_runner_group() {
    let env = Env::start("rg-retain").await;
    let existing = env.fake.create_group(&acme(), "kept").unwrap();
    apply_group(&env, "kept", "  adopt: true\n  deletionPolicy: Retain\n")
        .await
        .unwrap();
    assert_eq!(wait_for_ready(&env, "kept").await, existing.id);
    delete_and_wait(&env, "kept").await;
    assert!(
        fake_group(&env, existing.id).is_some(),
        "a retained group stays on GitHub"
    );
    let reasons = event_reasons(&env, "kept").await;
    assert!(reasons.iter().any(|r| r == "GroupRetained"), "{reasons:?}");
    let deletes = env
        .fake
        .request_log()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 0);
}

#[tokio::test]
async fn an_enterprise_group_is_kept_and_a_shared_group_is_never_touched() {
    let env = Env::start("rg-ent").await;
    let enterprise = fake_github::Scope::enterprise("bigcorp");
    let beta = env.fake.add_org("beta");
    let gamma = env.fake.add_org("gamma");
    env.fake.add_org_to_enterprise("bigcorp", "beta");
    env.fake.add_org_to_enterprise("bigcorp", "gamma");
    let ent_group = |env: &Env, id: u64| {
        env.fake
            .groups(&enterprise)
            .into_iter()
            .find(|g| g.id == id)
    };

    // Selected organizations, by login, set in one call.
    let scope = "enterprise: bigcorp";
    apply_scoped_group(
        &env,
        "ent-a",
        scope,
        "  visibility: selected\n  selectedOrganizations: [beta]\n",
    )
    .await;
    let id = wait_for_ready(&env, "ent-a").await;
    let g = ent_group(&env, id).expect("the enterprise group exists");
    assert_eq!(g.visibility, fake_github::Visibility::Selected);
    assert_eq!(g.selected_ids, BTreeSet::from([beta]));
    apply_scoped_group(
        &env,
        "ent-a",
        scope,
        "  visibility: selected\n  selectedOrganizations: [beta, gamma]\n  allowsPublicRepositories: true\n",
    )
    .await;
    wait_for("the organizations and settings on GitHub", T, || async {
        ent_group(&env, id).filter(|g| {
            g.selected_ids == BTreeSet::from([beta, gamma]) && g.allows_public_repositories
        })
    })
    .await;
    let set = "PUT /enterprises/{enterprise}/actions/runner-groups/{runner_group_id}/organizations";
    assert_eq!(env.calls_by_endpoint().get(set), Some(&1));

    // A group the enterprise shares with acme is never adopted, changed or deleted.
    let shared = env.fake.create_group(&enterprise, "shared").unwrap();
    apply_group(&env, "shared", "  adopt: true\n  visibility: private\n")
        .await
        .unwrap();
    let message = wait_for_reason(&env, "shared", "Inherited").await;
    assert!(message.contains("enterprise"), "{message}");
    delete_and_wait(&env, "shared").await;
    let after = ent_group(&env, shared.id).expect("the shared group is still there");
    assert_eq!(after, shared, "the shared group was changed");
    let writes: Vec<String> = env
        .fake
        .request_log()
        .into_iter()
        .filter(|r| r.method != "GET" && r.path.ends_with(&format!("/{}", shared.id)))
        .map(|r| r.endpoint)
        .collect();
    assert!(writes.is_empty(), "{writes:?}");

    // GitHub App credentials are refused for an enterprise: a classic token only.
    support::operator::create_secret(
        &env.client,
        &env.ns,
        "app",
        &[
            ("appId", "1"),
            ("installationId", "2"),
            ("privateKey", "-----BEGIN RSA PRIVATE KEY-----"),
        ],
    )
    .await;
    let mut app = scoped_group_yaml(&env, "ent-app", scope, "");
    app["spec"]["github"]["credentialsSecret"]["name"] = "app".into();
    groups(&env)
        .patch(
            "ent-app",
            &PatchParams::apply("integration-test"),
            &Patch::Apply(&app),
        )
        .await
        .unwrap();
    let message = wait_for_reason(&env, "ent-app", "CredentialsInvalid").await;
    assert!(
        message.contains("classic personal access token"),
        "{message}"
    );

    // Deleted with its RunnerGroup.
    delete_and_wait(&env, "ent-a").await;
    assert!(ent_group(&env, id).is_none());
}

#[tokio::test]
async fn invalid_enterprise_and_scope_fields_are_refused_by_the_api_server() {
    let env = Env::start("rg-scope").await;
    let refused = |manifest, expected| refused_group(&env, manifest, expected);
    let ent = "enterprise: bigcorp";
    let mut both = scoped_group_yaml(&env, "a", ent, "");
    both["spec"]["github"]["organization"] = "acme".into();
    refused(both, "set exactly one of organization or enterprise").await;
    let mut neither = scoped_group_yaml(&env, "b", ent, "");
    neither["spec"]["github"]
        .as_object_mut()
        .unwrap()
        .remove("enterprise");
    refused(neither, "set exactly one of organization or enterprise").await;
    refused(
        scoped_group_yaml(
            &env,
            "c",
            ent,
            "  visibility: selected\n  selectedRepositories: [acme/app]\n",
        ),
        "selectedRepositories applies only to an organization's group",
    )
    .await;
    refused(
        group_yaml(
            &env,
            "d",
            "  visibility: selected\n  selectedOrganizations: [beta]\n",
        ),
        "selectedOrganizations applies only to an enterprise's group",
    )
    .await;
    refused(
        scoped_group_yaml(&env, "e", ent, "  visibility: private\n"),
        "visibility: private applies only to an organization's group",
    )
    .await;
    refused(
        scoped_group_yaml(&env, "f", ent, "  selectedOrganizations: [beta]\n"),
        "selectedOrganizations applies only with visibility: selected",
    )
    .await;
    refused(
        group_yaml(&env, "g", "  deletionPolicy: Keep\n"),
        "Unsupported value",
    )
    .await;

    // The enterprise is fixed once the group exists.
    apply_scoped_group(&env, "fixed", ent, "").await;
    let moved = scoped_group_yaml(&env, "fixed", "enterprise: other", "");
    refused_change(&env, "fixed", &moved, "enterprise cannot change").await;
}
