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
    Credentials, Endpoint, GroupVisibility, RunnerGroupApi, RunnerGroupSettings,
};
use support::cluster::wait_for;
use support::operator::{Base, Env, TOKEN, pool_yaml};

const T: Duration = Duration::from_secs(40);

fn acme() -> fake_github::Scope {
    fake_github::Scope::org("acme")
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
    // One repository at a time, through the repository-access endpoints.
    let add =
        "PUT /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories/{repository_id}";
    let remove =
        "DELETE /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories/{repository_id}";
    assert!(env.calls(add) >= 1, "{:?}", env.calls_by_endpoint());
    assert!(env.calls(remove) >= 1, "{:?}", env.calls_by_endpoint());

    // Drift by hand: settings and repository access changed on GitHub.
    let hand = by_hand(&env);
    hand.update_runner_group(
        "acme",
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
    hand.set_group_repositories("acme", id, &[app])
        .await
        .unwrap();
    assert!(fake_group(&env, id).unwrap().allows_public_repositories);
    wait_for_fake_group(&env, "the drift put back", id, |g| {
        !g.allows_public_repositories && g.selected_ids == BTreeSet::from([lib])
    })
    .await;

    // Deleted by hand: created again.
    hand.delete_runner_group("acme", id).await.unwrap();
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
        let env = &env;
        async move {
            // Untyped, so values the Rust types cannot hold reach the API server too.
            let resource = kube::api::ApiResource::erase::<RunnerGroup>(&());
            let api: Api<kube::api::DynamicObject> =
                Api::namespaced_with(env.client.clone(), &env.ns, &resource);
            let object = serde_json::from_value(group_yaml(env, name, extra)).unwrap();
            let err = api
                .create(&PostParams::default(), &object)
                .await
                .expect_err(extra);
            let text = err.to_string();
            assert!(text.contains(expected), "{extra}: {text}");
        }
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
    let err = groups(&env)
        .patch(
            "fixed",
            &PatchParams::apply("integration-test").force(),
            &Patch::Apply(&moved),
        )
        .await
        .expect_err("organization change");
    assert!(
        err.to_string().contains("organization cannot change"),
        "{err}"
    );

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
