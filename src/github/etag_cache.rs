//! The bounded cache behind conditional requests: for each GET URL, the ETag
//! and body of the last full answer. GitHub answers an unchanged resource with
//! 304 Not Modified, which does not count against the rate limit, so polling
//! runner lists costs nothing while nothing changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::mutex::lock;

/// A remembered answer, replayed when GitHub says 304.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CachedAnswer {
    pub etag: String,
    pub body: Arc<[u8]>,
    /// The `Link: rel="next"` target, which a 304 may not repeat.
    pub next_page: Option<String>,
}

#[derive(Debug)]
struct Entry {
    answer: CachedAnswer,
    last_used: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    bytes: usize,
    clock: u64,
}

/// Least-recently-used eviction bounded by entry count and by body bytes, so
/// memory stays small however many pools share a credential.
#[derive(Debug)]
pub(crate) struct EtagCache {
    state: Mutex<State>,
    max_entries: usize,
    max_bytes: usize,
}

impl EtagCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        EtagCache {
            state: Mutex::new(State::default()),
            max_entries,
            max_bytes,
        }
    }

    pub fn get(&self, url: &str) -> Option<CachedAnswer> {
        let mut state = lock(&self.state);
        state.clock += 1;
        let now = state.clock;
        state.entries.get_mut(url).map(|entry| {
            entry.last_used = now;
            entry.answer.clone()
        })
    }

    pub fn insert(&self, url: &str, answer: CachedAnswer) {
        let size = answer.body.len();
        let mut state = lock(&self.state);
        remove_entry(&mut state, url);
        if size > self.max_bytes || self.max_entries == 0 {
            return;
        }
        while state.entries.len() >= self.max_entries || state.bytes + size > self.max_bytes {
            let Some(oldest) = state
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            remove_entry(&mut state, &oldest);
        }
        state.clock += 1;
        let last_used = state.clock;
        state.bytes += size;
        state
            .entries
            .insert(url.to_owned(), Entry { answer, last_used });
    }

    pub fn remove(&self, url: &str) {
        remove_entry(&mut lock(&self.state), url);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }
}

fn remove_entry(state: &mut State, url: &str) {
    if let Some(old) = state.entries.remove(url) {
        state.bytes -= old.answer.body.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(etag: &str, body: &str) -> CachedAnswer {
        CachedAnswer {
            etag: etag.into(),
            body: Arc::from(body.as_bytes()),
            next_page: None,
        }
    }

    #[test]
    fn replays_what_was_stored() {
        let cache = EtagCache::new(4, 1024);
        cache.insert("u", answer("\"a\"", "{}"));
        assert_eq!(cache.get("u"), Some(answer("\"a\"", "{}")));
        cache.insert("u", answer("\"b\"", "[]"));
        assert_eq!(cache.get("u").map(|a| a.etag), Some("\"b\"".into()));
        cache.remove("u");
        assert_eq!(cache.get("u"), None);
    }

    #[test]
    fn evicts_least_recently_used_when_full() {
        let cache = EtagCache::new(2, 1024);
        cache.insert("a", answer("1", "x"));
        cache.insert("b", answer("2", "x"));
        assert!(cache.get("a").is_some());
        cache.insert("c", answer("3", "x"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a").is_some());
        assert!(cache.get("b").is_none());
        assert!(cache.get("c").is_some());
    }

    #[test]
    fn bounds_total_body_bytes() {
        let cache = EtagCache::new(10, 10);
        cache.insert("a", answer("1", "123456"));
        cache.insert("b", answer("2", "123456"));
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some());
        // A body larger than the whole budget is simply not cached.
        cache.insert("c", answer("3", "12345678901"));
        assert!(cache.get("c").is_none());
        assert!(cache.get("b").is_some());
    }
}
