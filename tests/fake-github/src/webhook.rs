//! `workflow_job` webhook deliveries, signed like GitHub's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::deliveries::{Attempt, HOOK_ID, Log};
use crate::util;

/// Where and how webhooks are sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WebhookConfig {
    pub url: String,
    /// HMAC secret; without it no `X-Hub-Signature-256` is sent.
    #[serde(default)]
    pub secret: Option<String>,
}

pub(crate) struct WebhookEvent {
    pub event: &'static str,
    pub action: &'static str,
    pub job_id: u64,
    pub payload: Vec<u8>,
}

/// One webhook the fake sent (or tried to send).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// `X-GitHub-Delivery`.
    pub delivery_id: String,
    /// `X-GitHub-Event` (`workflow_job`).
    pub event: String,
    /// `queued`, `in_progress` or `completed`.
    pub action: String,
    pub job_id: u64,
    /// Where it went (`None`: no webhook URL configured, not sent).
    pub url: Option<String>,
    /// HTTP status the receiver answered.
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// `sha256=` and the hex HMAC-SHA256 of `body` keyed with `secret`.
pub fn signature_256(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", util::hex(&mac.finalize().into_bytes()))
}

/// The `error` of a delivery lost by [`crate::FakeGitHub::set_webhook_drop_rate`].
pub const DROPPED: &str = "dropped (injected)";

#[derive(Default)]
pub(crate) struct Webhooks {
    pub config: Mutex<Option<WebhookConfig>>,
    pub deliveries: Mutex<Vec<WebhookDelivery>>,
    /// Chance that a delivery is lost on the way (never sent), as GitHub's
    /// deliveries sometimes are; recorded with an `error`.
    pub drop_rate: Mutex<f64>,
    /// How many of the next deliveries are lost on the way, whatever the rate.
    pub drop_next: Mutex<u32>,
    /// The delivery log the hook endpoints serve (see [`crate::deliveries`]).
    pub log: Mutex<Log>,
}

/// One delivery to make: a new one, or a redelivery of `guid`.
struct Outgoing {
    event: String,
    action: String,
    job_id: u64,
    payload: Vec<u8>,
    guid: String,
    redelivery: bool,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .expect("http client")
}

/// Sends a redelivery of `guid` at once (on a task of its own), as GitHub
/// does for `POST …/deliveries/{delivery_id}/attempts`.
pub(crate) fn redeliver(
    hooks: Arc<Webhooks>,
    guid: String,
    event: String,
    action: String,
    payload: Vec<u8>,
) {
    let job_id = serde_json::from_slice::<serde_json::Value>(&payload)
        .ok()
        .and_then(|v| v["workflow_job"]["id"].as_u64())
        .unwrap_or(0);
    let out = Outgoing {
        event,
        action,
        job_id,
        payload,
        guid,
        redelivery: true,
    };
    tokio::spawn(async move { deliver(&http_client(), &hooks, out).await });
}

/// Makes one delivery (or loses it), and records it in both logs.
async fn deliver(client: &reqwest::Client, hooks: &Webhooks, out: Outgoing) {
    let config = hooks.config.lock().expect("lock").clone();
    let mut d = WebhookDelivery {
        delivery_id: out.guid.clone(),
        event: out.event.clone(),
        action: out.action.clone(),
        job_id: out.job_id,
        url: None,
        status: None,
        error: None,
    };
    let dropped = {
        let mut next = hooks.drop_next.lock().expect("lock");
        let rate = *hooks.drop_rate.lock().expect("lock");
        if *next > 0 {
            *next -= 1;
            true
        } else {
            rate > 0.0 && rand::random::<f64>() < rate
        }
    };
    let started = std::time::Instant::now();
    if dropped {
        d.url = config.map(|c| c.url);
        d.error = Some(DROPPED.into());
    } else if let Some(cfg) = config {
        d.url = Some(cfg.url.clone());
        let mut req = client
            .post(&cfg.url)
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/fake")
            .header("x-github-event", &out.event)
            .header("x-github-delivery", &d.delivery_id)
            .header("x-github-hook-id", HOOK_ID.to_string())
            .header("x-github-hook-installation-target-type", "organization");
        if let Some(secret) = &cfg.secret {
            req = req.header("x-hub-signature-256", signature_256(secret, &out.payload));
        }
        match req.body(out.payload.clone()).send().await {
            Ok(resp) => d.status = Some(resp.status().as_u16()),
            Err(e) => d.error = Some(e.to_string()),
        }
    }
    hooks.log.lock().expect("lock").record(Attempt {
        guid: &d.delivery_id,
        redelivery: out.redelivery,
        event: &d.event,
        action: &d.action,
        url: d.url.as_deref(),
        payload: &out.payload,
        status_code: d.status,
        error: d.error.as_deref(),
        duration: started.elapsed().as_secs_f64(),
    });
    hooks.deliveries.lock().expect("lock").push(d);
}

/// Sends events one at a time, in order.
pub(crate) async fn run(
    hooks: Arc<Webhooks>,
    mut rx: UnboundedReceiver<WebhookEvent>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let client = http_client();
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let out = Outgoing {
            event: ev.event.to_string(),
            action: ev.action.to_string(),
            job_id: ev.job_id,
            payload: ev.payload,
            guid: util::uuid_v4(),
            redelivery: false,
        };
        deliver(&client, &hooks, out).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_github() {
        // The example from GitHub's "Validating webhook deliveries" page.
        assert_eq!(
            signature_256("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
