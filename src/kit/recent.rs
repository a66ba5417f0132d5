//! A set that remembers a bounded number of keys, forgetting the oldest
//! first: how duplicate deliveries and messages are told apart without
//! memory that grows with the number of jobs.

use std::borrow::Borrow;
use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

pub struct Recent<K> {
    capacity: usize,
    order: VecDeque<K>,
    seen: HashSet<K>,
}

impl<K: Hash + Eq + Clone> Recent<K> {
    pub fn new(capacity: usize) -> Self {
        Recent {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.seen.contains(key)
    }

    /// True when `key` was not seen recently (and remembers it).
    pub fn insert(&mut self, key: K) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_its_capacity() {
        let mut recent = Recent::new(100);
        assert!(recent.insert("a".to_string()));
        assert!(!recent.insert("a".to_string()));
        for i in 0..100 {
            recent.insert(i.to_string());
        }
        assert_eq!(recent.len(), 100);
        assert_eq!(recent.seen.len(), 100);
        assert!(!recent.contains("a"));
        assert!(recent.insert("a".to_string()), "a was forgotten");
    }
}
