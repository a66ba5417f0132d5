//! Label sync on live runners: the pool's custom labels set on every runner
//! whose labels differ (idle or busy), and the pod marked with the labels'
//! hash so the same change is not pushed twice.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use tracing::warn;

use super::context::Context;
use super::observe::inventory_of;
use super::plan;
use crate::RunnerPool;
use crate::connection::Target;
use crate::github::GitHubError;
use crate::kit::error::{Error, successes};
use crate::runner;

/// Sets the pool's custom labels on runners whose labels differ.
pub async fn relabel_runners(
    pool: &RunnerPool,
    target: &Target,
    ctx: &Context,
    relabels: &[plan::Relabel],
    desired_labels: &[String],
    desired_hash: &str,
    first_error: &mut Option<GitHubError>,
) -> Result<(), Error> {
    let namespace = pool.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    // Ok(Some(message)): GitHub has the labels, but the API server refused
    // the pod's annotation (e.g. RBAC without pods/patch).
    let results: Vec<Result<Option<String>, Error>> = futures::stream::iter(relabels.to_vec())
        .map(|relabel: plan::Relabel| {
            let pods = pods.clone();
            async move {
                match target.api.set_custom_labels(&target.scope, relabel.runner_id, desired_labels).await {
                    Ok(labels) => inventory_of(ctx, target).labels(relabel.runner_id, labels),
                    // Gone already: the next pass removes what is left of it.
                    Err(GitHubError::NotFound(_)) => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
                if relabel.pod {
                    let patch = serde_json::json!({
                        "metadata": { "annotations": { runner::LABELS_HASH_ANNOTATION: desired_hash } }
                    });
                    match pods.patch(&relabel.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                        Ok(_) => {}
                        // The pod is gone: nothing to mark.
                        Err(kube::Error::Api(status)) if status.code == 404 => {}
                        Err(kube::Error::Api(status)) => {
                            warn!(pod = %relabel.name, code = status.code, message = %status.message, "the API server refused the pod's labels-hash annotation");
                            return Ok(Some(format!("pod {:?}: {}", relabel.name, status.message)));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(None)
            }
        })
        .buffer_unordered(ctx.settings.create_concurrency.max(1))
        .collect()
        .await;
    let outcomes = successes(results, first_error)?;
    let relabelled = outcomes.len();
    let refused: Vec<&String> = outcomes.iter().flatten().collect();
    if let Some(first) = refused.first() {
        ctx.event(
            pool,
            EventType::Warning,
            "PodPatchRefused",
            "SetLabels",
            format!(
                "The API server refused to mark {} runner pod(s) as relabelled, so their labels are set again on every pass; does the operator's role allow patch on pods? First refusal: {first}",
                refused.len()
            ),
        )
        .await;
    }
    if relabelled > 0 {
        ctx.event(
            pool,
            EventType::Normal,
            "LabelsSynced",
            "SetLabels",
            format!("Set labels on {relabelled} runner(s)"),
        )
        .await;
    }
    Ok(())
}
