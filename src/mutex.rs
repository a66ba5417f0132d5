//! One way to take a lock across the crate.
//!
//! Every critical section in the operator is a few plain assignments that
//! leave the data consistent even if a holder panicked, so a poisoned lock is
//! taken over rather than propagated as a panic in every later reconcile.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking over a lock a panicking holder left poisoned.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
