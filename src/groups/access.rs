//! The ids a group's access list is set with: repository ids of an
//! organization's group, organization ids of an enterprise's, resolved from
//! the names in the spec and kept across passes, so a group with hundreds of
//! repositories costs no lookup once they are known.
//!
//! An id is served from memory for at most [`TTL`], and the ids of a group's
//! names are dropped at once when GitHub refuses an access list built from
//! them (404/422: a repository deleted or renamed away, its name reused), so
//! the next pass reads them again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};

use super::plan;
use crate::crd::RunnerGroup;
use crate::github::{GitHubApi, GitHubError, Scope};
use crate::kit::problem::{Blocked, Problem};
use crate::mutex::lock;

/// How long an id read from GitHub is trusted without asking again.
pub const TTL: Duration = Duration::from_secs(3600);
/// At most this many ids are kept (about 100 bytes each).
pub const CAPACITY: usize = 20_000;
/// Lookups of unknown names in flight at once in one pass.
const CONCURRENT_LOOKUPS: usize = 8;

/// Names (per GitHub host) → ids, shared by every RunnerGroup.
#[derive(Default)]
pub struct IdCache {
    entries: Mutex<HashMap<String, (u64, Instant)>>,
}

impl IdCache {
    fn get(&self, key: &str) -> Option<u64> {
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            Some((id, at)) if at.elapsed() < TTL => Some(*id),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: String, id: u64) {
        let mut entries = lock(&self.entries);
        if entries.len() >= CAPACITY {
            entries.retain(|_, (_, at)| at.elapsed() < TTL);
        }
        if entries.len() >= CAPACITY {
            // Still full of fresh ids: start over rather than grow.
            entries.clear();
        }
        entries.insert(key, (id, Instant::now()));
    }

    /// Drops the ids of `group`'s names: the next pass reads them again.
    pub fn forget(&self, group: &RunnerGroup) {
        let keys = names(group);
        let mut entries = lock(&self.entries);
        for (key, _) in keys {
            entries.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a name of the access list is.
#[derive(Clone)]
enum Name {
    Repository { owner: String, name: String },
    Organization(String),
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Repository { owner, name } => write!(f, "repository {owner}/{name}"),
            Name::Organization(login) => write!(f, "organization {login}"),
        }
    }
}

/// The cache key and name of each entry of the group's access list, in order.
fn names(group: &RunnerGroup) -> Vec<(String, Name)> {
    let github = &group.spec.github;
    let host = github
        .api_url
        .as_deref()
        .unwrap_or("https://api.github.com")
        .trim_end_matches('/')
        .to_ascii_lowercase();
    if github.enterprise.is_some() {
        plan::organizations(group)
            .into_iter()
            .map(|login| {
                let key = format!("{host} org {}", login.to_ascii_lowercase());
                (key, Name::Organization(login))
            })
            .collect()
    } else {
        plan::repositories(group)
            .into_iter()
            .map(|(owner, name)| {
                let key = format!("{host} repo {owner}/{name}").to_ascii_lowercase();
                (key, Name::Repository { owner, name })
            })
            .collect()
    }
}

async fn look_up(api: &dyn GitHubApi, name: &Name) -> Result<u64, GitHubError> {
    match name {
        Name::Repository { owner, name } => api.repository_id(owner, name).await,
        Name::Organization(login) => api.organization_id(login).await,
    }
}

/// Reads one id and keeps it at once; a failure is returned.
async fn look_up_and_keep(
    api: &dyn GitHubApi,
    cache: &IdCache,
    key: String,
    name: Name,
) -> Option<(Name, GitHubError)> {
    match look_up(api, &name).await {
        Ok(id) => {
            cache.put(key, id);
            None
        }
        Err(e) => Some((name, e)),
    }
}

/// The ids of the group's access list, in the spec's order. Unknown names
/// are read a few at a time and kept as each answer arrives, so a pass cut
/// by the reconcile bound still leaves the next one less to read.
pub async fn access_ids(
    api: &dyn GitHubApi,
    group: &RunnerGroup,
    scope: &Scope,
    cache: &IdCache,
) -> Result<Vec<u64>, Blocked> {
    let names = names(group);
    let missing: Vec<(String, Name)> = names
        .iter()
        .filter(|(key, _)| cache.get(key).is_none())
        .cloned()
        .collect();
    let failures: Vec<(Name, GitHubError)> = stream::iter(missing)
        .map(|(key, name)| look_up_and_keep(api, cache, key, name))
        .buffer_unordered(CONCURRENT_LOOKUPS)
        .filter_map(futures::future::ready)
        .collect()
        .await;
    if let Some((name, error)) = failures.into_iter().next() {
        return Err(match error {
            GitHubError::NotFound(_) => {
                let problem = match name {
                    Name::Repository { .. } => Problem::RepositoryNotFound,
                    Name::Organization(_) => Problem::OrganizationNotFound,
                };
                Blocked::new(
                    problem,
                    format!(
                        "{name} does not exist in {scope} or the credentials cannot see it; the group's access list is left as it is"
                    ),
                )
            }
            e => Blocked::github(&e, &format!("cannot look up {name}")),
        });
    }
    // A name may have expired from the cache since: read again next pass.
    names
        .iter()
        .map(|(key, name)| {
            cache.get(key).ok_or_else(|| {
                Blocked::new(
                    Problem::GitHubUnavailable,
                    format!("the id of {name} was not kept; it is read again"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_expire_and_the_cache_stays_bounded() {
        let cache = IdCache::default();
        cache.put("a".into(), 1);
        assert_eq!(cache.get("a"), Some(1));
        lock(&cache.entries).insert("old".into(), (2, Instant::now() - TTL));
        assert_eq!(cache.get("old"), None, "an expired id is read again");
        for i in 0..(CAPACITY as u64 + 10) {
            cache.put(format!("k{i}"), i);
        }
        assert!(cache.len() <= CAPACITY);
    }
}
