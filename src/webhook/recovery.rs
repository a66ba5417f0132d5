//! The receiver's twin: takes from GitHub's delivery log the `workflow_job`
//! deliveries that never reached this operator. GitHub does not redeliver a
//! failed delivery by itself, and deliveries fail whenever no leader answers
//! (a restart, a failover, an upgrade, a standby's 503, a network hiccup).
//!
//! Each configured hook's log is read when this replica starts leading (back
//! [`FIRST_LOOKBACK`], GitHub's limit for a job to wait) and then every few
//! seconds (back to a little before the last pass that succeeded). The
//! first page is read conditionally: while nothing was delivered GitHub
//! answers 304, which costs no rate limit. A
//! `workflow_job` delivery whose GUID never got a 2xx answer and that this
//! process has not taken yet is read (`GET …/deliveries/{id}`) and handed to
//! routing as if it had just arrived, oldest first. Duplicates are harmless:
//! routing applies a job's action once.
//!
//! The credentials are read from a directory (a mounted Secret) holding the
//! same keys as a pool's credentials Secret: `token`, or `appId`,
//! `installationId` and `privateKey`.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::mpsc::{Sender, error::TrySendError};
use tracing::{debug, info, warn};

use super::payload::{JobEvent, parse_workflow_job};
use crate::connection::{self, APP_ID_KEY, INSTALLATION_ID_KEY, PRIVATE_KEY_KEY, TOKEN_KEY};
use crate::crd::GitHubSpec;
use crate::github::deliveries::{DeliverySummary, HookRef, WebhookDeliveriesApi};
use crate::github::{Credentials, Endpoint, GitHubError, Scope};
use crate::metrics::Metrics;

/// How far back the first pass reads: GitHub cancels a job queued longer.
pub const FIRST_LOOKBACK: Duration = Duration::from_secs(24 * 3600);
/// Pages (of 100) read per hook in one pass at most.
const MAX_PAGES: usize = 30;
/// GUIDs taken from the log that are remembered.
const TAKEN_CAPACITY: usize = 16_384;

/// Why the delivery log cannot be read as configured.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryLogError {
    #[error(
        "--webhook-delivery-log needs --webhook-listen: the deliveries it recovers go where the receiver's go"
    )]
    NoListener,
    #[error(
        "--webhook-delivery-log needs --webhook-delivery-log-credentials: a directory (a mounted Secret) with the file {TOKEN_KEY}, or {APP_ID_KEY}, {INSTALLATION_ID_KEY} and {PRIVATE_KEY_KEY}"
    )]
    NoCredentials,
    #[error("cannot read the delivery log credentials in {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the delivery log credentials: {0}")]
    Invalid(String),
    #[error("--webhook-delivery-log-api-url: {0}")]
    Endpoint(String),
    #[error(
        "the app hook is read with the GitHub App's JWT: give the App's {APP_ID_KEY}, {INSTALLATION_ID_KEY} and {PRIVATE_KEY_KEY}, not a token"
    )]
    AppHookNeedsApp,
}

impl DeliveryLogError {
    pub fn category(&self) -> &'static str {
        match self {
            DeliveryLogError::NoListener => "no_listener",
            DeliveryLogError::NoCredentials => "no_credentials",
            DeliveryLogError::Unreadable { .. } => "unreadable",
            DeliveryLogError::Invalid(_) => "invalid_credentials",
            DeliveryLogError::Endpoint(_) => "invalid_endpoint",
            DeliveryLogError::AppHookNeedsApp => "app_hook_needs_app",
        }
    }
}

/// Reads the credentials directory into [`Credentials`], by the rules of a
/// pool's credentials Secret (its files are the Secret's keys).
pub fn read_credentials(dir: &Path, hooks: &[HookRef]) -> Result<Credentials, DeliveryLogError> {
    let mut data = std::collections::BTreeMap::new();
    for key in [TOKEN_KEY, APP_ID_KEY, INSTALLATION_ID_KEY, PRIVATE_KEY_KEY] {
        let path = dir.join(key);
        match std::fs::read(&path) {
            Ok(bytes) => {
                data.insert(key.to_string(), ByteString(bytes));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DeliveryLogError::Unreadable {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
    }
    if !dir.is_dir() {
        return Err(DeliveryLogError::Unreadable {
            path: dir.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(dir.display().to_string()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    // Any non-enterprise scope: hooks are never an enterprise's here.
    let scope = Scope::Organization(String::new());
    let credentials = connection::credentials(&secret, &scope)
        .map_err(|e| DeliveryLogError::Invalid(e.to_string()))?;
    if hooks.contains(&HookRef::App) && matches!(credentials, Credentials::Token(_)) {
        return Err(DeliveryLogError::AppHookNeedsApp);
    }
    Ok(credentials)
}

/// The GitHub API the hooks live on (`https://api.github.com`, or a GHES
/// host's `https://HOST/api/v3`).
pub fn endpoint(api_url: &str) -> Result<Endpoint, DeliveryLogError> {
    let spec = GitHubSpec {
        api_url: Some(api_url.to_string()),
        ..Default::default()
    };
    connection::endpoint(&spec).map_err(|e| DeliveryLogError::Endpoint(e.to_string()))
}

/// Which hooks to read, and the client to read them with.
pub struct DeliveryLog {
    pub api: Arc<dyn WebhookDeliveriesApi>,
    pub hooks: Vec<HookRef>,
    pub credentials_dir: PathBuf,
    /// How often the log is read (--webhook-delivery-log-interval-seconds).
    pub every: Duration,
}

/// The GUIDs already taken from the log, bounded (oldest forgotten first).
#[derive(Default)]
struct Taken {
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl Taken {
    fn contains(&self, guid: &str) -> bool {
        self.seen.contains(guid)
    }

    fn insert(&mut self, guid: &str) {
        if !self.seen.insert(guid.to_string()) {
            return;
        }
        self.order.push_back(guid.to_string());
        if self.order.len() > TAKEN_CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
    }
}

/// The deliveries of one listing to take, oldest first: `workflow_job`
/// actions routing acts on, whose GUID never got a 2xx and was not taken.
fn to_take<'a>(listed: &'a [DeliverySummary], taken: &Taken) -> Vec<&'a DeliverySummary> {
    let answered: HashSet<&str> = listed
        .iter()
        .filter(|d| d.succeeded())
        .map(|d| d.guid.as_str())
        .collect();
    let mut take: Vec<&DeliverySummary> = listed
        .iter()
        .filter(|d| d.event == "workflow_job")
        .filter(|d| {
            matches!(
                d.action.as_deref(),
                Some("queued" | "in_progress" | "completed")
            )
        })
        .filter(|d| !answered.contains(d.guid.as_str()) && !taken.contains(&d.guid))
        .collect();
    take.sort_by_key(|d| d.id);
    let mut guids = HashSet::new();
    take.retain(|d| guids.insert(d.guid.as_str()));
    take
}

/// Reads the log every `log.every` until the task ends (with the controller).
pub async fn run(log: DeliveryLog, events: Sender<JobEvent>, metrics: Arc<Metrics>) {
    let every = log.every;
    let mut taken = Taken::default();
    let mut last_read: Vec<Option<Timestamp>> = vec![None; log.hooks.len()];
    info!(hooks = ?log.hooks.iter().map(ToString::to_string).collect::<Vec<_>>(), credentials = %log.credentials_dir.display(), "reading the webhook delivery log for deliveries that did not arrive");
    loop {
        for (hook, last) in log.hooks.iter().zip(last_read.iter_mut()) {
            let started = Timestamp::now();
            // A little before the last pass that read the log, so nothing
            // delivered while it ran is missed.
            let margin = SignedDuration::try_from(every + Duration::from_secs(60))
                .unwrap_or(SignedDuration::from_secs(180));
            let since = match *last {
                Some(at) => at.checked_sub(margin).unwrap_or(at),
                None => started
                    .checked_sub(SignedDuration::from_secs(FIRST_LOOKBACK.as_secs() as i64))
                    .unwrap_or(started),
            };
            match read_hook(&log, hook, since, &events, &mut taken, &metrics).await {
                Ok(()) => *last = Some(started),
                Err(e) => {
                    warn!(hook = %hook, category = e.category(), error = %e, "could not read the webhook delivery log");
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

async fn read_hook(
    log: &DeliveryLog,
    hook: &HookRef,
    since: Timestamp,
    events: &Sender<JobEvent>,
    taken: &mut Taken,
    metrics: &Metrics,
) -> Result<(), GitHubError> {
    let listed = log.api.list_deliveries(hook, since, MAX_PAGES).await?;
    let take = to_take(&listed, taken);
    if take.is_empty() {
        return Ok(());
    }
    info!(hook = %hook, deliveries = take.len(), "taking workflow_job deliveries that did not arrive from the delivery log");
    for delivery in take {
        let payload = log.api.delivery_payload(hook, delivery.id).await?;
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let mut event = match parse_workflow_job(&body) {
            Ok(event) => event,
            Err(e) => {
                debug!(hook = %hook, delivery = delivery.id, reason = e.category(), "a logged delivery is not a workflow_job routing reads");
                taken.insert(&delivery.guid);
                continue;
            }
        };
        event.recovered = true;
        match events.try_send(event) {
            Ok(()) => {
                taken.insert(&delivery.guid);
                metrics.observe_webhook_delivery("recovered");
            }
            // Taken at the next pass, once the queue has room.
            Err(TrySendError::Full(_)) => break,
            Err(TrySendError::Closed(_)) => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: u64, guid: &str, action: &str, status_code: u16) -> DeliverySummary {
        DeliverySummary {
            id,
            guid: guid.into(),
            delivered_at: "2026-01-01T00:00:00Z".into(),
            status_code,
            event: "workflow_job".into(),
            action: Some(action.into()),
        }
    }

    #[test]
    fn only_deliveries_that_never_arrived_are_taken_once_oldest_first() {
        let mut listed = vec![
            delivery(9, "c", "in_progress", 503),
            delivery(8, "b", "queued", 202),
            delivery(7, "b", "queued", 503),
            delivery(6, "a", "queued", 0),
            delivery(5, "a", "queued", 503),
            delivery(4, "d", "waiting", 503),
        ];
        listed.push(DeliverySummary {
            event: "ping".into(),
            ..delivery(3, "e", "queued", 503)
        });
        let mut taken = Taken::default();
        let take: Vec<u64> = to_take(&listed, &taken).iter().map(|d| d.id).collect();
        assert_eq!(take, vec![5, 9], "b was redelivered and taken; one a");
        taken.insert("a");
        let take: Vec<u64> = to_take(&listed, &taken).iter().map(|d| d.id).collect();
        assert_eq!(take, vec![9]);
    }

    #[test]
    fn the_credentials_come_from_a_directory_like_a_pools_secret() {
        let dir = std::env::temp_dir().join(format!("rp-delivery-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let org = [HookRef::Organization {
            org: "acme".into(),
            id: 1,
        }];
        let missing = read_credentials(&dir, &org).unwrap_err();
        assert!(missing.to_string().contains("token"), "{missing}");
        std::fs::write(dir.join(TOKEN_KEY), "ghp_abc\n").unwrap();
        assert_eq!(
            read_credentials(&dir, &org).unwrap(),
            Credentials::Token("ghp_abc".into())
        );
        assert!(matches!(
            read_credentials(&dir, &[HookRef::App]),
            Err(DeliveryLogError::AppHookNeedsApp)
        ));
        let absent = read_credentials(&dir.join("nothing"), &org).unwrap_err();
        assert!(absent.to_string().contains("nothing"), "{absent}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(endpoint("ftp://x").is_err());
        assert!(endpoint("https://api.github.com").is_ok());
    }
}
