//! Chaos aimed at the operator's most fragile moment: a runner registered on
//! GitHub (its JIT config minted) whose Secret and pod do not exist yet. The
//! operator is SIGKILLed right there, again and again, while GitHub loses
//! answers after applying the request (502s and dropped connections), and
//! two runners are busy throughout.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fake_github::{DROP_CONNECTION, Fault, Scope};
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams};
use runnerpool::runner::RUNNER_ID_LABEL;
use support::cluster::wait_for;
use support::operator::{Env, runner_id};

const JIT: &str = "POST /orgs/{org}/actions/runners/generate-jitconfig";
const DELETE: &str = "DELETE /orgs/{org}/actions/runners/{runner_id}";
const ROUNDS: usize = 6;

/// Runner ids of the namespace's pods that are not being deleted.
async fn pod_runner_ids(env: &Env) -> BTreeSet<u64> {
    env.pods()
        .list(&ListParams::default().labels(RUNNER_ID_LABEL))
        .await
        .expect("list pods")
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(runner_id)
        .collect()
}

fn registered(env: &Env) -> BTreeSet<u64> {
    env.fake
        .runners(&Scope::org("acme"))
        .iter()
        .map(|r| r.id)
        .collect()
}

/// The sequence number of the last successful generate-jitconfig answer.
fn last_mint(env: &Env) -> Option<u64> {
    env.fake
        .request_log()
        .iter()
        .rev()
        .find(|r| r.endpoint == JIT && r.status == 201)
        .map(|r| r.seq)
}

/// Issue 10, "Tests to strengthen": SIGKILL inside the mint → Secret → pod
/// window, combined with answers lost after apply. Invariant 5: after
/// convergence runners == pods == Secrets with no registration left over;
/// invariant 3: no busy runner deleted (read from the fake's request log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_mint_and_pod_leaks_nothing_and_spares_busy_runners() {
    let mut env = Env::start("killwindow").await;
    env.apply_org_pool("ci", 4).await;
    env.wait_for_online_runners("ci", 4, Duration::from_secs(90))
        .await;
    // Two runners take jobs that run for the whole test.
    let jobs = [
        env.fake.queue_job("acme/app", &["linux"]).unwrap(),
        env.fake.queue_job("acme/app", &["linux"]).unwrap(),
    ];
    let busy: BTreeSet<u64> = jobs
        .iter()
        .map(|j| env.fake.job(*j).unwrap().runner_id.expect("job started"))
        .collect();
    assert_eq!(busy.len(), 2);

    let mut kills_in_window = 0;
    for round in 0..ROUNDS {
        // Every other mint and DELETE of this round is applied by GitHub
        // and its answer lost: a 502 or a connection closed with no answer.
        let lost = if round % 2 == 0 { 502 } else { DROP_CONNECTION };
        env.fake
            .inject_fault(Fault::lost_answers(Some(JIT), lost, 1));
        env.fake
            .inject_fault(Fault::lost_answers(Some(DELETE), lost, 1));
        let before = last_mint(&env);
        let known = registered(&env);
        // The idle runners' pods go: the operator deregisters and replaces them.
        for pod in env.live_pods("ci").await {
            if runner_id(&pod).is_some_and(|id| !busy.contains(&id)) {
                delete_pod(&env, &pod.name_any()).await;
            }
        }
        // SIGKILL as soon as a new runner is registered on GitHub.
        let deadline = Instant::now() + Duration::from_secs(60);
        while last_mint(&env) == before {
            assert!(
                Instant::now() < deadline,
                "round {round}: no runner was registered within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        env.operator.kill();
        // Registered in this round and without a pod: the kill landed
        // between the mint and the pod.
        let new: BTreeSet<u64> = registered(&env).difference(&known).copied().collect();
        let pods = pod_runner_ids(&env).await;
        if new.iter().any(|id| !pods.contains(id)) {
            kills_in_window += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        env.operator.restart();
        env.wait_for_online_runners("ci", 4, Duration::from_secs(90))
            .await;
    }
    assert!(
        kills_in_window >= 1,
        "no SIGKILL landed between a mint and its pod in {ROUNDS} rounds"
    );

    // Convergence: GitHub holds exactly the pods' runners, one Secret each.
    wait_for(
        "registrations == pods == Secrets",
        Duration::from_secs(90),
        || async {
            let pods = env.live_pods("ci").await;
            let ids: BTreeSet<u64> = pods.iter().filter_map(runner_id).collect();
            let names: BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
            let secrets = env.runner_secret_names().await?;
            (pods.len() == 4 && registered(&env) == ids && secrets == names).then_some(())
        },
    )
    .await;
    let counters = env.fake.counters();
    assert!(
        counters.answers_lost >= ROUNDS as u64,
        "the lost answers happened ({} of at least {ROUNDS})",
        counters.answers_lost
    );
    // The busy runners kept their registrations and pods, and the operator
    // never asked GitHub to delete them.
    let pods = pod_runner_ids(&env).await;
    for id in &busy {
        assert!(
            env.fake.runner(*id).is_some(),
            "busy runner {id} deregistered"
        );
        assert!(pods.contains(id), "busy runner {id} lost its pod");
        let suffix = format!("/actions/runners/{id}");
        let deletes = env
            .fake
            .request_log()
            .iter()
            .filter(|r| r.method == "DELETE" && r.path.ends_with(&suffix))
            .count();
        assert_eq!(deletes, 0, "a DELETE was sent for busy runner {id}");
    }
    assert_eq!(counters.busy_delete_attempts, 0);
    env.assert_no_secret_leaked().await;
}

/// Deletes pod `name`, again while the API server refuses (a loaded one
/// may): a deletion that silently did not happen would leave nothing to
/// replace.
async fn delete_pod(env: &Env, name: &str) {
    for _ in 0..50 {
        match env.pods().delete(name, &DeleteParams::default()).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            Err(e) => eprintln!("deleting pod {name}: {e}; trying again"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("pod {name} could not be deleted");
}
