//! [`Signal`]: the condition variable of wtd's blocking calls, which also works in poll mode.
//!
//! In threads mode it is a plain `Condvar`: runtime threads change the state and notify. In poll
//! mode nothing runs unless a thread drives the runtime, so a waiter drives it itself while it
//! waits (`Runtime::block_on` on a tokio `Notify`), or — while another thread drives it (a
//! `wtd_poll` in progress) — sleeps until that thread's tasks notify it or the driver is free.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::GLOBAL;
use crate::lock::lock;

/// Longest condvar wait when a poll-mode waiter cannot drive the runtime (it normally can: the
/// blocking calls refuse callback threads first), so a missed notification costs at most this.
const FALLBACK_SLICE: Duration = Duration::from_millis(10);

/// A condition variable for state guarded by a `Mutex` (see the module docs).
#[derive(Default)]
pub(crate) struct Signal {
    cv: Condvar,
    /// Threads in `cv_wait`. Counted under the state's mutex before they wait, so a notifier
    /// that changed the state under that mutex sees them; with none, the condvar is not
    /// touched (std's `notify_*` is a futex system call even when nobody waits — one per
    /// received batch for a poll-mode reader, which waits on `notify` instead).
    cv_waiters: AtomicUsize,
    /// Poll-mode waiters.
    notify: Notify,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Wakes one waiter (in poll mode: every waiter; they re-check their condition). As with
    /// any condvar, change the state under its mutex first (notifying after unlocking is fine).
    pub(crate) fn notify_one(&self) {
        if self.cv_waiters.load(SeqCst) > 0 {
            self.cv.notify_one();
        }
        if GLOBAL.is_poll() {
            self.notify.notify_waiters();
        }
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&self) {
        if self.cv_waiters.load(SeqCst) > 0 {
            self.cv.notify_all();
        }
        if GLOBAL.is_poll() {
            self.notify.notify_waiters();
        }
    }

    /// Releases `guard` (a lock of `mutex`), waits for a notification or `timeout` (`None`: no
    /// limit), and locks `mutex` again. Like a condvar it may return early: re-check the
    /// condition and the deadline in a loop. Call `runtime::check_may_block` first.
    pub(crate) fn wait<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        mutex: &'a Mutex<T>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, T> {
        if !GLOBAL.is_poll() {
            return self.cv_wait(guard, timeout);
        }
        // Registered before the lock is released, so a notification sent after the waiter's
        // check under the lock is not missed.
        let mut notified = pin!(self.notify.notified());
        notified.as_mut().enable();
        drop(guard);
        let waited = GLOBAL.block_on(async move {
            match timeout {
                Some(t) => {
                    let _ = tokio::time::timeout(t, notified).await;
                }
                None => notified.await,
            }
        });
        let guard = lock(mutex);
        match waited {
            Ok(()) => guard,
            Err(_) => self.cv_wait(
                guard,
                Some(timeout.map_or(FALLBACK_SLICE, |t| t.min(FALLBACK_SLICE))),
            ),
        }
    }

    fn cv_wait<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, T> {
        self.cv_waiters.fetch_add(1, SeqCst);
        let guard = match timeout {
            None => self.cv.wait(guard).unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                self.cv
                    .wait_timeout(guard, t)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        self.cv_waiters.fetch_sub(1, SeqCst);
        guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    /// Threads mode: the condvar is skipped only while nobody waits, so no wake-up is lost.
    /// Four consumers block (no timeout would hang a lost one; the 2 s limit turns that into a
    /// failure) while a producer hands out items one at a time, notifying after unlocking.
    #[test]
    fn no_wakeup_is_lost_when_notifiers_skip_an_idle_condvar() {
        const ITEMS: usize = 20_000;
        let state = Arc::new((Mutex::new((0usize, 0usize)), Signal::new())); // (queued, taken)
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let state = state.clone();
                std::thread::spawn(move || {
                    let (m, sig) = &*state;
                    let mut longest = Duration::ZERO;
                    let mut g = lock(m);
                    loop {
                        if g.0 > 0 {
                            g.0 -= 1;
                            g.1 += 1;
                        } else if g.1 == ITEMS {
                            return longest;
                        } else {
                            let t = Instant::now();
                            g = sig.wait(g, m, Some(Duration::from_secs(2)));
                            longest = longest.max(t.elapsed());
                        }
                    }
                })
            })
            .collect();
        let (m, sig) = &*state;
        for i in 0..ITEMS {
            lock(m).0 += 1;
            if i == ITEMS - 1 {
                sig.notify_all(); // the last one also releases the consumers that wait for it
            } else {
                sig.notify_one();
            }
            if i % 64 == 0 {
                std::thread::yield_now();
            }
        }
        for c in consumers {
            let longest = c.join().unwrap();
            assert!(
                longest < Duration::from_secs(1),
                "a consumer waited {longest:?}: a wake-up was lost"
            );
        }
        assert_eq!(*lock(m), (0, ITEMS));
        assert_eq!(sig.cv_waiters.load(SeqCst), 0);
    }
}
