//! Engine-owned mode: [`poll`] runs wtd's I/O, timers and callbacks on the calling thread.
//!
//! The poll-mode runtime is a tokio current-thread runtime; `poll` drives it with
//! `Runtime::block_on`:
//!
//! * without a timeout it runs one bounded *drain*. A round is one `yield_now`: the scheduler
//!   runs every task that is ready, then checks the sockets and timers without blocking (tokio
//!   polls its driver before it resumes a task that yielded), and only then resumes `poll`. The
//!   drain runs at least two rounds (what was ready, then what the socket check woke), and more
//!   while the last round delivered something to the application, at most [`MAX_ROUNDS`];
//! * with a timeout it waits until something reaches the application, or the timeout passes.
//!   Meanwhile the scheduler runs every task as it becomes ready and blocks in the driver when
//!   none is (quinn's ACKs, timers and keep-alives are handled without ending the wait). It
//!   resumes `poll` only after the tasks that were ready have run and the sockets were checked
//!   once more, so returning at once loses nothing; what arrives later waits for the next call.
//!   Each round of a drain costs a socket check (a system call), so a waiting call does none.
//!
//! "Something reached the application" is counted by [`note_events`]: datagrams handed to a
//! session (queued or given to its callbacks), sessions accepted, sessions closed.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use tokio::sync::Notify;

use super::{on_runtime_thread, GLOBAL};
use crate::error::{wtd_result, Error, Result};

/// Application events so far (counted in poll mode only).
static EVENTS: AtomicU64 = AtomicU64::new(0);
/// `poll` calls waiting for an event (the counter wakes them only when there are some).
static WAITING: AtomicUsize = AtomicUsize::new(0);
/// Wakes waiting `poll` calls.
static EVENT: Notify = Notify::const_new();

/// Most scheduler rounds one drain runs. Under a flood every round delivers something, so this
/// bounds the time one `poll` takes (each round runs at most every task that was ready plus
/// one socket read burst per endpoint); what is left waits for the next call.
pub(crate) const MAX_ROUNDS: u32 = 64;

/// Records `n` events that reached the application and wakes `poll` calls waiting for one.
/// Costs one relaxed load in threads mode.
pub(crate) fn note_events(n: u64) {
    if n == 0 || !GLOBAL.is_poll() {
        return;
    }
    EVENTS.fetch_add(n, SeqCst);
    if WAITING.load(SeqCst) > 0 {
        EVENT.notify_waiters();
    }
}

/// Runs wtd on the calling thread (poll mode). With `timeout` zero: everything ready now —
/// socket reads and writes, timers, callbacks — and what that causes, in bounded rounds. Else
/// (`None`: no limit) everything as it becomes ready until something reaches the application
/// or the timeout passes. Returns how many events reached the application during the call
/// (datagrams, accepted and closed sessions).
///
/// `WTD_ERR_INVALID_STATE` in threads mode, from inside a wtd callback or inside an async
/// runtime. While another thread drives the runtime (a blocking wtd call in progress) it only
/// waits for events, which that thread processes.
pub fn poll(timeout: Option<Duration>) -> Result<u64> {
    if !GLOBAL.is_poll() {
        return Err(Error::new(
            wtd_result::WTD_ERR_INVALID_STATE,
            "wtd_poll needs the poll runtime mode: call wtd_set_runtime_mode(WTD_RUNTIME_POLL) \
             before the first wtd call that starts the runtime (wtd runs on its own threads now)",
        ));
    }
    if on_runtime_thread() {
        return Err(Error::new(
            wtd_result::WTD_ERR_INVALID_STATE,
            "wtd_poll called from inside a wtd callback (or a blocking wtd call); return from \
             the callback and poll again from your loop",
        ));
    }
    let start = EVENTS.load(SeqCst);
    GLOBAL.block_on(run(start, timeout))?;
    Ok(EVENTS.load(SeqCst).wrapping_sub(start))
}

/// One `poll`: a drain without a timeout, else a wait for the next application event.
async fn run(start: u64, timeout: Option<Duration>) {
    match timeout {
        Some(Duration::ZERO) => drain().await,
        Some(t) => {
            let _ = tokio::time::timeout(t, wait_event(start)).await;
        }
        None => wait_event(start).await,
    }
}

/// Lets every ready task run and checks the sockets, round after round, until a round (after
/// the first socket check) delivers nothing to the application, at most [`MAX_ROUNDS`].
async fn drain() {
    let mut seen = EVENTS.load(SeqCst);
    for round in 1..=MAX_ROUNDS {
        tokio::task::yield_now().await;
        let now = EVENTS.load(SeqCst);
        if round >= 2 && now == seen {
            return;
        }
        seen = now;
    }
}

/// Returns once the event count differs from `start`.
async fn wait_event(start: u64) {
    loop {
        let mut notified = pin!(EVENT.notified());
        notified.as_mut().enable();
        let _waiting = Waiting::enter();
        if EVENTS.load(SeqCst) != start {
            return;
        }
        notified.await;
    }
}

/// Counts a waiting `poll` while alive (also when its wait is cancelled by the timeout).
struct Waiting;

impl Waiting {
    fn enter() -> Self {
        WAITING.fetch_add(1, SeqCst);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, SeqCst);
    }
}
