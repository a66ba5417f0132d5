//! Which job a runner runs, on its pod: when GitHub says a job started on a
//! runner (or ended), the runner's pod gets annotations naming the
//! repository, workflow, run, job and a link to it, with when it started and
//! how it ended, so `kubectl get pods` answers "what is this runner doing"
//! without GitHub's UI. Best effort: a pod already gone is not an error.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use tracing::debug;

use super::cached::CachedPod;
use crate::runner::{self, POOL_LABEL};
use crate::scaleset::JobInfo;
use crate::webhook::payload::{JobAction, JobEvent};

/// The annotations' common prefix.
pub const PREFIX: &str = "actions.runnerpool.dev/job-";

/// The annotations an event puts on its runner's pod: the job's identity
/// when it starts, its end and conclusion when it completes.
pub fn job_annotations(event: &JobEvent, now: Timestamp) -> BTreeMap<String, String> {
    let details = &event.details;
    match event.action {
        JobAction::InProgress => started(
            Started {
                repository: Some(event.repository.clone()),
                workflow: details.workflow.clone(),
                run_id: details.run_id.map(|id| id.to_string()),
                id: event.job_id.to_string(),
                name: details.name.clone(),
                url: details.url.clone(),
            },
            now,
        ),
        JobAction::Completed => {
            completed(&event.job_id.to_string(), details.conclusion.clone(), now)
        }
        JobAction::Queued | JobAction::Waiting => BTreeMap::new(),
    }
}

/// The annotations of a job a scale set's runner started (`JobStarted`).
pub fn started_annotations(job: &JobInfo) -> BTreeMap<String, String> {
    started(
        Started {
            repository: Some(job.repository.clone()).filter(|r| !r.is_empty()),
            workflow: Some(job.workflow_ref.clone()).filter(|w| !w.is_empty()),
            run_id: Some(job.workflow_run_id)
                .filter(|id| *id != 0)
                .map(|id| id.to_string()),
            id: job.job_id.clone(),
            name: Some(job.display_name.clone()).filter(|n| !n.is_empty()),
            url: None,
        },
        Timestamp::now(),
    )
}

/// The annotations of a job a scale set's runner completed (`JobCompleted`).
pub fn completed_annotations(job: &JobInfo, result: &str) -> BTreeMap<String, String> {
    completed(&job.job_id, Some(result.to_string()), Timestamp::now())
}

/// A started job as a person knows it.
struct Started {
    repository: Option<String>,
    workflow: Option<String>,
    run_id: Option<String>,
    id: String,
    name: Option<String>,
    url: Option<String>,
}

fn started(job: Started, now: Timestamp) -> BTreeMap<String, String> {
    annotations([
        ("repository", job.repository),
        ("workflow", job.workflow),
        ("run-id", job.run_id),
        ("id", Some(job.id)),
        ("name", job.name),
        ("url", job.url),
        ("started-at", Some(now.to_string())),
    ])
}

fn completed(id: &str, conclusion: Option<String>, now: Timestamp) -> BTreeMap<String, String> {
    annotations([
        ("id", Some(id.to_string())),
        ("completed-at", Some(now.to_string())),
        ("conclusion", conclusion),
    ])
}

/// The prefixed annotations of the values present.
fn annotations<const N: usize>(values: [(&str, Option<String>); N]) -> BTreeMap<String, String> {
    values
        .into_iter()
        .filter_map(|(key, value)| Some((format!("{PREFIX}{key}"), value?)))
        .collect()
}

/// The pod of runner `id` (named `name`, when known), from the pod cache.
pub fn runner_pod(pods: &Store<CachedPod>, id: u64, name: Option<&str>) -> Option<Arc<CachedPod>> {
    pods.state().into_iter().find(|p| {
        runner::runner_id_of(p.as_ref()) == Some(id)
            && name.is_none_or(|n| p.name_any() == n)
            && p.labels().contains_key(POOL_LABEL)
    })
}

/// Records `annotations` on the pod of runner `id` (named `name`), on a task
/// of its own: whoever learnt of the job never waits for the API server.
pub fn record_on_pod(
    client: &kube::Client,
    pods: &Store<CachedPod>,
    id: u64,
    name: Option<&str>,
    annotations: BTreeMap<String, String>,
) {
    let Some(pod) = runner_pod(pods, id, name) else {
        return;
    };
    let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(e) = annotate(&client, &namespace, &name, &annotations).await {
            debug!(pod = %name, error = %e, "could not record the job on its runner's pod");
        }
    });
}

/// Merges `annotations` into pod `name`'s; a pod already gone is fine.
pub async fn annotate(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    if annotations.is_empty() {
        return Ok(());
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({ "metadata": { "annotations": annotations } });
    match pods
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            debug!(
                pod = name,
                "the runner's pod is gone; its job is not recorded on it"
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::payload::{JobDetails, parse_workflow_job};

    fn event(action: JobAction) -> JobEvent {
        let sample = crate::webhook::payload::tests::sample("in_progress");
        JobEvent {
            action,
            details: JobDetails {
                conclusion: Some("success".into()),
                ..parse_workflow_job(&serde_json::to_vec(&sample).unwrap())
                    .unwrap()
                    .details
            },
            ..parse_workflow_job(&serde_json::to_vec(&sample).unwrap()).unwrap()
        }
    }

    #[test]
    fn a_started_job_names_itself_on_its_runners_pod() {
        let at: Timestamp = "2026-12-07T00:00:00Z".parse().unwrap();
        let started = job_annotations(&event(JobAction::InProgress), at);
        let get = |key: &str| started.get(&format!("{PREFIX}{key}")).map(String::as_str);
        assert_eq!(get("repository"), Some("acme/app"));
        assert_eq!(get("workflow"), Some("CI"));
        assert_eq!(get("run-id"), Some("7"));
        assert_eq!(get("id"), Some("42"));
        assert_eq!(get("name"), Some("build"));
        assert_eq!(
            get("url"),
            Some("https://github.com/acme/app/actions/runs/7/job/42")
        );
        assert_eq!(get("started-at"), Some("2026-12-07T00:00:00Z"));
        assert_eq!(get("conclusion"), None, "not before it ends");

        let ended = job_annotations(&event(JobAction::Completed), at);
        assert_eq!(
            ended
                .get(&format!("{PREFIX}conclusion"))
                .map(String::as_str),
            Some("success")
        );
        assert!(ended.contains_key(&format!("{PREFIX}completed-at")));
        assert!(job_annotations(&event(JobAction::Queued), at).is_empty());
    }
}
