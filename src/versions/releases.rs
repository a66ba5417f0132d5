//! The newest runner release GitHub serves, per GitHub host and scope,
//! shared by every pool of that scope: read at most once per refresh
//! interval, conditionally (ETag), by one request that pools asking
//! meanwhile share, and never holding up a pass for long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use jiff::Timestamp;
use tracing::{debug, warn};

use super::{DEFAULT_REFRESH, RETRY_AFTER_FAILURE, ScopeReleases, Sighting, newest_release};
use crate::github::{GitHubApi, Scope};
use crate::mutex::lock;

struct Entry {
    releases: ScopeReleases,
    fetched: Option<Instant>,
    /// No read before this, after a failed one.
    retry_at: Option<Instant>,
    /// The read under way, which later askers wait for instead of sending their own.
    reading: Option<Shared<BoxFuture<'static, ()>>>,
}

type Slot = Arc<Mutex<Entry>>;

/// The newest runner release per (GitHub host, scope), shared by all pools.
pub struct LatestReleases {
    refresh: Duration,
    entries: Mutex<HashMap<(String, Scope), Slot>>,
}

impl Default for LatestReleases {
    fn default() -> Self {
        Self::new(DEFAULT_REFRESH)
    }
}

impl LatestReleases {
    pub fn new(refresh: Duration) -> Self {
        LatestReleases {
            refresh,
            entries: Default::default(),
        }
    }

    /// What is known of the releases GitHub serves to `scope` on `host`.
    /// GitHub is asked only when the last answer is older than the refresh
    /// interval, by one request that pools asking meanwhile share; each
    /// waits for it at most `wait` and otherwise goes on with the last known
    /// answer (the read finishes in the background). A failed read is
    /// logged, keeps the last known answer and is retried after
    /// [`RETRY_AFTER_FAILURE`]. `recalled` is a sighting the pool's status
    /// kept from before a restart: it makes the first-seen date survive one.
    pub async fn releases(
        &self,
        api: &Arc<dyn GitHubApi>,
        host: &str,
        scope: &Scope,
        recalled: Option<Sighting>,
        wait: Duration,
    ) -> ScopeReleases {
        let slot = {
            let mut entries = lock(&self.entries);
            entries
                .entry((host.to_string(), scope.clone()))
                .or_insert_with(|| {
                    Arc::new(Mutex::new(Entry {
                        releases: ScopeReleases::default(),
                        fetched: None,
                        retry_at: None,
                        reading: None,
                    }))
                })
                .clone()
        };
        let reading = {
            let mut entry = lock(&slot);
            if let Some(s) = recalled {
                entry.releases.saw(s.version, s.first_seen);
            }
            let now = Instant::now();
            let stale = entry
                .fetched
                .is_none_or(|at| now.duration_since(at) >= self.refresh);
            let may_ask = entry.retry_at.is_none_or(|at| now >= at);
            if stale && may_ask && entry.reading.is_none() {
                let read = tokio::spawn(read_downloads(
                    api.clone(),
                    scope.clone(),
                    slot.clone(),
                    self.refresh.min(RETRY_AFTER_FAILURE),
                ));
                entry.reading = Some(read.map(|_| ()).boxed().shared());
            }
            entry.reading.clone()
        };
        if let Some(reading) = reading
            && tokio::time::timeout(wait, reading).await.is_err()
        {
            debug!(%scope, "the runner downloads read is still under way; using the last known release");
        }
        lock(&slot).releases.clone()
    }
}

/// One read of the scope's downloads, recorded in its slot.
async fn read_downloads(api: Arc<dyn GitHubApi>, scope: Scope, slot: Slot, retry: Duration) {
    let answer = api.runner_downloads(&scope).await;
    let mut entry = lock(&slot);
    entry.reading = None;
    match answer {
        Ok(downloads) => {
            entry.fetched = Some(Instant::now());
            entry.retry_at = None;
            if let Some(newest) = newest_release(&downloads) {
                entry.releases.newest = Some(newest);
                // Whole seconds: status shows it as RFC 3339.
                let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_default();
                entry.releases.saw(newest, now);
            }
        }
        Err(e) => {
            warn!(%scope, error = %e, retry_in = ?retry, "cannot read the runner releases GitHub serves; keeping the last known one");
            entry.retry_at = Some(Instant::now() + retry);
        }
    }
}
