//! Mutex locking that survives poisoning: a panic caught in a user callback must not turn every
//! later call on the same handle into a panic across the C boundary.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the data even if a previous holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
