//! The webhook delivery log on [`GitHubClient`]: listing a hook's
//! deliveries (newest first, GitHub's cursor pages) and reading one
//! delivery's payload. The App's own hook is read with the App's JWT
//! (see [`endpoints::is_app_endpoint`]).

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use super::endpoints;
use super::requests::GitHubClient;
use super::wire::{Call, PER_PAGE, decode};
use crate::github::deliveries::{DeliverySummary, HookRef, WebhookDeliveriesApi};
use crate::github::{GitHubError, Result};

#[derive(Deserialize)]
struct DeliveryAnswer {
    request: DeliveryRequest,
}

#[derive(Deserialize)]
struct DeliveryRequest {
    #[serde(default)]
    payload: serde_json::Value,
}

fn list_endpoint(hook: &HookRef) -> &'static str {
    match hook {
        HookRef::Organization { .. } => endpoints::LIST_ORG_HOOK_DELIVERIES,
        HookRef::Repository { .. } => endpoints::LIST_REPO_HOOK_DELIVERIES,
        HookRef::App => endpoints::LIST_APP_HOOK_DELIVERIES,
    }
}

fn get_endpoint(hook: &HookRef) -> &'static str {
    match hook {
        HookRef::Organization { .. } => endpoints::GET_ORG_HOOK_DELIVERY,
        HookRef::Repository { .. } => endpoints::GET_REPO_HOOK_DELIVERY,
        HookRef::App => endpoints::GET_APP_HOOK_DELIVERY,
    }
}

#[async_trait]
impl WebhookDeliveriesApi for GitHubClient {
    #[tracing::instrument(skip_all, fields(hook = %hook))]
    async fn list_deliveries(
        &self,
        hook: &HookRef,
        since: Timestamp,
        max_pages: usize,
    ) -> Result<Vec<DeliverySummary>> {
        let endpoint = list_endpoint(hook);
        let segments = hook.deliveries_path();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let mut url = self.url(&segments);
        url.query_pairs_mut().append_pair("per_page", PER_PAGE);
        let mut next = Some(url);
        let mut deliveries = Vec::new();
        for _ in 0..max_pages.max(1) {
            let Some(url) = next.take() else { break };
            let answer = self
                .execute(Call::get(
                    endpoint,
                    url,
                    format!("the deliveries of {hook}"),
                ))
                .await?;
            let page: Vec<DeliverySummary> = decode(endpoint, &answer.body)?;
            let reached = page
                .iter()
                .any(|d| d.delivered().is_some_and(|at| at < since));
            deliveries.extend(page);
            if reached {
                break;
            }
            next = answer.next_page;
        }
        Ok(deliveries)
    }

    #[tracing::instrument(skip_all, fields(hook = %hook, delivery_id = id))]
    async fn delivery_payload(&self, hook: &HookRef, id: u64) -> Result<serde_json::Value> {
        let endpoint = get_endpoint(hook);
        let mut segments = hook.deliveries_path();
        segments.push(id.to_string());
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let answer = self
            .execute(Call::get(
                endpoint,
                self.url(&segments),
                format!("delivery {id} of {hook}"),
            ))
            .await?;
        let delivery: DeliveryAnswer = decode(endpoint, &answer.body)?;
        if delivery.request.payload.is_null() {
            return Err(GitHubError::Protocol(format!(
                "{endpoint} answered without the delivery's payload"
            )));
        }
        Ok(delivery.request.payload)
    }
}
