//! One view of GitHub's runners per scope, shared by every pool that
//! registers there.
//!
//! Pools of one organization (or enterprise, or repository) reached with the
//! same credential read the same list: listing it once per pool would cost
//! pools × pages requests per sync interval and keep pools × runners in
//! memory. An inventory is keyed by the connection (one API client per host
//! and credential) and the scope. One refresh runs at a time; pools that
//! wanted a fresh list while it ran take its result, and a failed refresh is
//! reported to them without asking GitHub again.
//!
//! A pool reads its own runners from it: those its pods and Secrets name (by
//! runner id, whatever their labels now are) and those carrying its ownership
//! label (orphans). That costs O(the pool's runners), never a copy of the
//! scope. What the operator learns between lists (a runner registered,
//! removed, relabelled, or a job started on it) is written into the shared
//! view at once, so every pool sees it before the next list.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use crate::github::{GitHubApi, GitHubError, Runner, RunnerLabel, Scope};
use crate::mutex::lock;

pub mod confirm;

/// An inventory no pool read for this long is dropped (rotated credentials,
/// deleted pools), with the API client it holds.
const IDLE_TTL: Duration = Duration::from_secs(3600);

/// A pool's part of its scope's view: its runners, and when the list
/// they come from was asked for.
#[derive(Clone, Debug)]
pub struct GitHubView {
    pub runners: Vec<Runner>,
    pub taken: Timestamp,
}

/// Every scope's inventory.
#[derive(Default)]
pub struct Inventories {
    scopes: Mutex<HashMap<(usize, Scope), Arc<ScopeInventory>>>,
}

impl Inventories {
    /// The inventory of `scope` as seen through `api`. The same API client
    /// (the connector hands out one per host and credential) and scope give
    /// the same inventory.
    pub fn of(&self, api: &Arc<dyn GitHubApi>, scope: &Scope) -> Arc<ScopeInventory> {
        // The inventory holds the client, so its address is not reused while
        // the entry lives.
        let key = (Arc::as_ptr(api) as *const () as usize, scope.clone());
        let now = Instant::now();
        let mut scopes = lock(&self.scopes);
        scopes.retain(|k, inv| *k == key || now.duration_since(inv.last_read()) < IDLE_TTL);
        let inventory = scopes
            .entry(key)
            .or_insert_with(|| Arc::new(ScopeInventory::new(api.clone(), scope.clone())));
        inventory.touch(now);
        inventory.clone()
    }

    /// How many scopes have an inventory (for tests and metrics).
    pub fn len(&self) -> usize {
        lock(&self.scopes).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The runners of one scope.
pub struct ScopeInventory {
    api: Arc<dyn GitHubApi>,
    scope: Scope,
    /// Held while a list runs: one refresh at a time. Remembers the last
    /// failed attempt, so pools queued behind it share its error.
    refresh: tokio::sync::Mutex<Option<(Instant, Arc<GitHubError>)>>,
    view: Mutex<View>,
    last_read: Mutex<Instant>,
}

#[derive(Default)]
struct View {
    /// When the list in `runners` was asked for (monotonic, and wall clock
    /// for the planner's deadlines).
    taken: Option<(Instant, Timestamp)>,
    runners: HashMap<u64, Runner>,
    /// Runner ids by label name, for the ownership labels.
    by_label: HashMap<String, BTreeSet<u64>>,
}

impl View {
    fn insert(&mut self, runner: Runner) {
        self.remove(runner.id);
        for label in &runner.labels {
            if is_ownership_label(&label.name) {
                self.by_label
                    .entry(label.name.clone())
                    .or_default()
                    .insert(runner.id);
            }
        }
        self.runners.insert(runner.id, runner);
    }

    fn remove(&mut self, id: u64) -> Option<Runner> {
        let runner = self.runners.remove(&id)?;
        for label in &runner.labels {
            if let Some(ids) = self.by_label.get_mut(&label.name) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_label.remove(&label.name);
                }
            }
        }
        Some(runner)
    }
}

/// Only ownership labels are indexed: they are what a pool looks its
/// orphans up by (`runnerpool-` and 16 hex digits, see
/// [`crate::runner::ownership_label`]).
fn is_ownership_label(name: &str) -> bool {
    name.strip_prefix("runnerpool-")
        .is_some_and(|rest| rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl ScopeInventory {
    fn new(api: Arc<dyn GitHubApi>, scope: Scope) -> Self {
        ScopeInventory {
            api,
            scope,
            refresh: tokio::sync::Mutex::new(None),
            view: Mutex::new(View::default()),
            last_read: Mutex::new(Instant::now()),
        }
    }

    fn touch(&self, now: Instant) {
        *lock(&self.last_read) = now;
    }

    fn last_read(&self) -> Instant {
        *lock(&self.last_read)
    }

    /// When the current list was asked for; `None` before the first one.
    pub fn taken(&self) -> Option<Instant> {
        lock(&self.view).taken.map(|(at, _)| at)
    }

    /// True when no list was taken since `max_age` ago.
    pub fn is_older_than(&self, max_age: Duration) -> bool {
        match self.taken() {
            None => true,
            Some(at) => at.elapsed() >= max_age,
        }
    }

    /// Lists the scope unless a list asked for at or after `not_before` is
    /// already there (another pool refreshed meanwhile). A refresh that
    /// failed after `not_before` is answered with its error, not repeated.
    /// Returns whether this call sent the list.
    pub async fn refresh_since(&self, not_before: Instant) -> Result<bool, Arc<GitHubError>> {
        let mut last_failure = self.refresh.lock().await;
        if self.taken().is_some_and(|at| at >= not_before) {
            return Ok(false);
        }
        if let Some((at, error)) = last_failure.as_ref()
            && *at >= not_before
        {
            return Err(error.clone());
        }
        let asked = (Instant::now(), Timestamp::now());
        match self.api.list_runners(&self.scope).await {
            Ok(runners) => {
                let mut view = View {
                    taken: Some(asked),
                    ..View::default()
                };
                for runner in runners {
                    view.insert(runner);
                }
                *lock(&self.view) = view;
                *last_failure = None;
                Ok(true)
            }
            Err(e) => {
                let e = Arc::new(e);
                *last_failure = Some((asked.0, e.clone()));
                Err(e)
            }
        }
    }

    /// Lists the scope if the view is older than `max_age`.
    pub async fn refresh_if_older_than(&self, max_age: Duration) -> Result<bool, Arc<GitHubError>> {
        let now = Instant::now();
        match now.checked_sub(max_age) {
            Some(not_before) => self.refresh_since(not_before).await,
            // The process is younger than `max_age`: only a first list is due.
            None if self.taken().is_none() => self.refresh_since(now).await,
            None => Ok(false),
        }
    }

    /// A pool's part of the view: the runners with one of `ids` (its pods'
    /// and Secrets' runners) or carrying `ownership_label`.
    pub fn pool_view(&self, ids: &BTreeSet<u64>, ownership_label: &str) -> Option<GitHubView> {
        let view = lock(&self.view);
        let (_, taken) = view.taken?;
        let owned = view.by_label.get(ownership_label).into_iter().flatten();
        let wanted: BTreeSet<u64> = ids.iter().chain(owned).copied().collect();
        let runners = wanted
            .iter()
            .filter_map(|id| view.runners.get(id).cloned())
            .collect();
        Some(GitHubView { runners, taken })
    }

    /// Runner `id` as the current view has it.
    pub fn runner(&self, id: u64) -> Option<Runner> {
        lock(&self.view).runners.get(&id).cloned()
    }

    /// How many runners the scope has in the current view.
    pub fn runner_count(&self) -> usize {
        lock(&self.view).runners.len()
    }

    /// A runner just registered (from the JIT answer).
    pub fn added(&self, runner: Runner) {
        let mut view = lock(&self.view);
        if view.taken.is_some() {
            view.insert(runner);
        }
    }

    pub fn removed(&self, id: u64) {
        lock(&self.view).remove(id);
    }

    /// A job started on the runner (webhook, or a DELETE refused as busy).
    pub fn busy(&self, id: u64) {
        if let Some(runner) = lock(&self.view).runners.get_mut(&id) {
            runner.busy = true;
        }
    }

    pub fn labels(&self, id: u64, labels: Vec<RunnerLabel>) {
        let mut view = lock(&self.view);
        if let Some(mut runner) = view.remove(id) {
            runner.labels = labels;
            view.insert(runner);
        }
    }
}

#[cfg(test)]
mod tests {
    use fake_github::{Config, FakeGitHub, Fault};
    use url::Url;

    use super::*;
    use crate::github::client::{ClientOptions, GitHubClient};
    use crate::github::{Credentials, Endpoint};

    const TOKEN: &str = "ghp_inventory_test";
    const LIST: &str = "GET /orgs/{org}/actions/runners";
    const OWNER_A: &str = "runnerpool-00000000000000aa";
    const OWNER_B: &str = "runnerpool-00000000000000bb";

    /// The GitHub fake with organization `acme`, each list taking 50 ms so
    /// that callers pile up behind it.
    async fn fake() -> FakeGitHub {
        let fake = FakeGitHub::start(Config::default()).await.unwrap();
        fake.add_token(TOKEN, &["admin:org"]);
        fake.add_org("acme");
        fake.add_org("other");
        fake.set_endpoint_latency(LIST, Duration::from_millis(50));
        fake
    }

    fn client(fake: &FakeGitHub) -> Arc<dyn GitHubApi> {
        let endpoint = Endpoint {
            api_base: Url::parse(&fake.base_url()).unwrap(),
            ca_bundle: None,
        };
        let options = ClientOptions {
            retry_backoff: Duration::from_millis(5),
            ..ClientOptions::default()
        };
        Arc::new(GitHubClient::new(&endpoint, &Credentials::Token(TOKEN.into()), options).unwrap())
    }

    fn lists(fake: &FakeGitHub) -> u64 {
        fake.counters().by_endpoint.get(LIST).copied().unwrap_or(0)
    }

    fn org() -> Scope {
        Scope::Organization("acme".into())
    }

    fn ids(view: &GitHubView) -> Vec<u64> {
        view.runners.iter().map(|r| r.id).collect()
    }

    #[tokio::test]
    async fn many_pools_wanting_a_fresh_list_at_once_send_one() {
        let fake = fake().await;
        let api = client(&fake);
        let inventories = Inventories::default();
        let calls = (0..100).map(|_| {
            let inventory = inventories.of(&api, &org());
            async move {
                inventory
                    .refresh_if_older_than(Duration::from_secs(120))
                    .await
            }
        });
        let results = futures::future::join_all(calls).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(lists(&fake), 1);
        assert_eq!(inventories.len(), 1, "one scope, one inventory");

        // Fresh enough: no list. Asked for a list newer than now: one more.
        let inventory = inventories.of(&api, &org());
        let fresh = inventory.refresh_if_older_than(Duration::from_secs(120));
        assert!(matches!(fresh.await, Ok(false)));
        assert!(matches!(
            inventory.refresh_since(Instant::now()).await,
            Ok(true)
        ));
        assert_eq!(lists(&fake), 2);
    }

    #[tokio::test]
    async fn a_failed_list_is_shared_not_repeated() {
        let fake = fake().await;
        fake.inject_fault(Fault::always(Some(LIST), 404));
        let api = client(&fake);
        let inventories = Inventories::default();
        let since = Instant::now();
        let calls = (0..20).map(|_| {
            let inventory = inventories.of(&api, &org());
            async move { inventory.refresh_since(since).await }
        });
        let results = futures::future::join_all(calls).await;
        assert!(results.iter().all(Result::is_err));
        assert_eq!(lists(&fake), 1);
        // A later pass tries again.
        fake.clear_faults();
        let inventory = inventories.of(&api, &org());
        assert!(matches!(
            inventory.refresh_since(Instant::now()).await,
            Ok(true)
        ));
        assert_eq!(lists(&fake), 2);
    }

    #[tokio::test]
    async fn scopes_and_credentials_get_inventories_of_their_own() {
        let fake = fake().await;
        let (a, b) = (client(&fake), client(&fake));
        let inventories = Inventories::default();
        let first = inventories.of(&a, &org());
        assert!(Arc::ptr_eq(&first, &inventories.of(&a, &org())));
        assert!(!Arc::ptr_eq(&first, &inventories.of(&b, &org())));
        let other = Scope::Organization("other".into());
        assert!(!Arc::ptr_eq(&first, &inventories.of(&a, &other)));
        assert_eq!(inventories.len(), 3);
    }

    #[tokio::test]
    async fn a_pool_reads_its_runners_by_id_and_by_ownership_label() {
        let fake = fake().await;
        let acme = fake_github::Scope::org("acme");
        let mut registered = Vec::new();
        for (name, labels) in [
            ("r1", vec![OWNER_A]),
            ("r2", vec![OWNER_A, "linux"]),
            ("r3", vec![OWNER_B]),
            // A runner of pool A whose labels someone removed by hand: its
            // pod still names it, so it is still seen (not taken for gone).
            ("r4", vec![]),
            ("r5", vec!["someone-elses"]),
        ] {
            registered.push(fake.register_runner(&acme, name, &labels, true).unwrap().id);
        }
        let [r1, r2, r3, r4, _] = registered[..] else {
            unreachable!()
        };
        let api = client(&fake);
        let inventory = Inventories::default().of(&api, &org());
        assert!(inventory.pool_view(&BTreeSet::new(), OWNER_A).is_none());
        inventory.refresh_since(Instant::now()).await.unwrap();
        assert_eq!(inventory.runner_count(), 5);

        let view = inventory.pool_view(&BTreeSet::from([r4]), OWNER_A).unwrap();
        assert_eq!(ids(&view), [r1, r2, r4]);
        let view = inventory.pool_view(&BTreeSet::new(), OWNER_B).unwrap();
        assert_eq!(ids(&view), [r3]);

        // What the operator learns between lists shows at once.
        let mut new = view.runners[0].clone();
        new.id = 9_999;
        inventory.added(new);
        inventory.removed(r3);
        inventory.busy(9_999);
        inventory.labels(r1, vec![]);
        let view = inventory.pool_view(&BTreeSet::new(), OWNER_B).unwrap();
        assert_eq!(ids(&view), [9_999]);
        assert!(view.runners[0].busy);
        let view = inventory.pool_view(&BTreeSet::new(), OWNER_A).unwrap();
        assert_eq!(ids(&view), [r2], "r1 lost its ownership label");
    }

    #[test]
    fn only_ownership_labels_are_indexed() {
        assert!(is_ownership_label(OWNER_A));
        assert!(!is_ownership_label("runnerpool-short"));
        assert!(!is_ownership_label("runnerpool-00000000000000zz"));
        assert!(!is_ownership_label("linux"));
    }
}
