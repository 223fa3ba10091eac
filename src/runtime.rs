//! The library-owned tokio runtime.
//!
//! Callers of the C API never see async: every blocking export runs its future here with
//! [`block_on`], and every background task (sender loops, connection drivers, timers) is spawned on
//! [`handle`]. The runtime is created lazily on first use with [`set_threads`] worker threads
//! (default: [`default_threads`] — 2, or 1 when the process may run on one CPU only), all named
//! `wtd-rt`. [`shutdown`] stops it (bounded wait) so that the next use
//! creates a fresh one.
//!
//! Callbacks into the application run on these worker threads, so [`on_runtime_thread`] is how
//! blocking functions detect that they were called from a callback and refuse instead of
//! deadlocking the worker they would need.
//!
//! In [`Mode::Poll`] (chosen with [`set_mode`] before the runtime starts) the runtime is a tokio
//! current-thread runtime that has no threads of its own: it runs only inside [`poll`] (the
//! game's `wtd_poll`, see [`poll`](mod@poll)) and inside blocking calls, which drive it while they
//! wait ([`block_on`], and [`Signal`] for condition waits).

mod deadline;
mod poll;
mod signal;

pub(crate) use deadline::Deadline;
pub(crate) use poll::note_events;
pub use poll::poll;
pub(crate) use signal::Signal;

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};

use crate::error::{wtd_result, Error, Result};

/// Most worker threads the runtime starts by default.
pub(crate) const DEFAULT_THREADS: usize = 2;

/// The default worker count: [`DEFAULT_THREADS`], but never more than the CPUs this process may
/// run on (its affinity mask and cgroup CPU quota, as `std::thread::available_parallelism` reads
/// them). Two workers confined to one CPU only hand work to each other through wake-ups and
/// context switches: at 1000 B one-way, a receiver pinned to one CPU spent 3.1 µs per datagram
/// with two workers and 2.3 µs with one.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(DEFAULT_THREADS, |n| n.get().min(DEFAULT_THREADS))
}
/// How long [`shutdown`] waits for running tasks to finish.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// Name of every runtime thread (workers and blocking-pool threads).
pub(crate) const THREAD_NAME: &str = "wtd-rt";

/// Who runs wtd's I/O, timers and callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// wtd's own worker threads (the default).
    Threads,
    /// The application's threads: inside [`poll`] and inside blocking calls (engine-owned).
    Poll,
}

struct State {
    /// Worker threads; 0 = [`default_threads`] when the runtime starts.
    threads: usize,
    mode: Mode,
    /// Shared so that a poll-mode `block_on` can use it without holding the lock.
    rt: Option<Arc<Runtime>>,
}

/// A lazily started runtime plus its configuration. The library uses one global instance through
/// the free functions below; tests make private ones so they cannot disturb each other.
pub(crate) struct RuntimeCell {
    state: Mutex<State>,
    /// `mode == Poll`, readable without the lock (it only changes while the runtime is stopped).
    poll: AtomicBool,
}

static GLOBAL: RuntimeCell = RuntimeCell::new();
/// Threads inside a poll-mode `block_on` (driving the runtime, or waiting to).
static DRIVERS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ON_RUNTIME: Cell<bool> = const { Cell::new(false) };
}

impl RuntimeCell {
    pub(crate) const fn new() -> Self {
        RuntimeCell {
            state: Mutex::new(State {
                threads: 0,
                mode: Mode::Threads,
                rt: None,
            }),
            poll: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State inconsistent (plain assignments).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_threads(&self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(Error::invalid("runtime thread count must be at least 1"));
        }
        if n > 1024 {
            return Err(Error::invalid(format!(
                "runtime thread count {n} is unreasonably large (max 1024)"
            )));
        }
        let mut st = self.lock();
        if st.rt.is_some() {
            return Err(Error::new(
                wtd_result::WTD_ERR_INVALID_STATE,
                "the runtime is already running; set the thread count before the first wtd call \
                 that needs it, or after wtd_shutdown()",
            ));
        }
        st.threads = n;
        Ok(())
    }

    pub(crate) fn set_mode(&self, mode: Mode) -> Result<()> {
        let mut st = self.lock();
        if st.rt.is_some() && st.mode != mode {
            return Err(Error::new(
                wtd_result::WTD_ERR_INVALID_STATE,
                "the runtime is already running; choose the runtime mode before the first wtd \
                 call that needs it, or after wtd_shutdown()",
            ));
        }
        st.mode = mode;
        self.poll.store(mode == Mode::Poll, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn is_poll(&self) -> bool {
        self.poll.load(Ordering::Relaxed)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.lock().rt.is_some()
    }

    /// The runtime, started on first use in the configured mode.
    fn runtime(&self) -> Result<Arc<Runtime>> {
        let mut st = self.lock();
        if let Some(rt) = &st.rt {
            return Ok(rt.clone());
        }
        let mut builder = match st.mode {
            Mode::Threads => {
                let mut b = Builder::new_multi_thread();
                b.worker_threads(match st.threads {
                    0 => default_threads(),
                    n => n,
                });
                b
            }
            Mode::Poll => Builder::new_current_thread(),
        };
        // In poll mode these name and mark only blocking-pool threads (wtd starts none itself).
        let rt = builder
            .thread_name(THREAD_NAME)
            .on_thread_start(|| ON_RUNTIME.with(|f| f.set(true)))
            .on_thread_stop(|| ON_RUNTIME.with(|f| f.set(false)))
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(
                    wtd_result::WTD_ERR_INTERNAL,
                    format!("cannot start the runtime: {e}"),
                )
            })?;
        let rt = Arc::new(rt);
        st.rt = Some(rt.clone());
        Ok(rt)
    }

    pub(crate) fn handle(&self) -> Result<Handle> {
        Ok(self.runtime()?.handle().clone())
    }

    pub(crate) fn block_on<F: Future>(&self, f: F) -> Result<F::Output> {
        check_may_block()?;
        if !self.is_poll() {
            return Ok(self.handle()?.block_on(f));
        }
        // A current-thread runtime's I/O and timers advance only under `Runtime::block_on`: this
        // thread drives them while it waits, or (while another thread drives) waits for its
        // future to be woken or for the runtime to be free.
        let rt = self.runtime()?;
        let _driving = Driving::enter();
        Ok(rt.block_on(async {
            // Sends queued while nobody drove did not wake the flusher (`undriven`).
            crate::h3::flusher::kick();
            f.await
        }))
    }

    pub(crate) fn shutdown(&self) {
        let rt = self.lock().rt.take();
        // In poll mode a thread inside `block_on` (wtd_poll or a blocking call) may still hold
        // the runtime: it is dropped, and its tasks with it, when that call returns.
        if let Some(Ok(rt)) = rt.map(Arc::try_unwrap) {
            if on_runtime_thread() || Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(SHUTDOWN_TIMEOUT);
            }
        }
    }
}

/// While alive, the calling thread counts as a runtime thread ([`on_runtime_thread`]): set for
/// the length of a poll-mode `block_on`, where wtd's tasks and callbacks run on this thread.
struct Driving {
    outer: bool,
}

impl Driving {
    fn enter() -> Self {
        // SeqCst, paired with the load in `undriven`: a sender either sees this thread counted
        // (and wakes the flusher) or queued its work before this thread looks for it.
        DRIVERS.fetch_add(1, Ordering::SeqCst);
        Driving {
            outer: ON_RUNTIME.with(|f| f.replace(true)),
        }
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        ON_RUNTIME.with(|f| f.set(self.outer));
        DRIVERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Poll mode and no thread drives the runtime now: waking a task would only cost a system call
/// (tokio signals the idle driver), and the next thread that drives it runs what is queued.
/// Callers queue their work first, then ask (see `Driving::enter`).
pub(crate) fn undriven() -> bool {
    GLOBAL.is_poll() && DRIVERS.load(Ordering::SeqCst) == 0
}

/// A runtime thread is about to wait for an application thread (a reader that is behind): offer
/// it the rest of this CPU slice. Where both share one CPU, the runtime thread would otherwise
/// keep the CPU for a whole scheduler slice (~4 ms here) running quinn's work — which keeps
/// filling quinn's receive buffer — while the reader cannot run. Elsewhere it returns at once
/// (one system call). Not in poll mode: there the reader is the thread driving the runtime.
pub(crate) fn give_way() {
    if !GLOBAL.is_poll() {
        std::thread::yield_now();
    }
}

/// `Ok` when the calling thread may block; `WTD_ERR_INVALID_STATE` on a runtime thread (inside a
/// callback) or inside another async context. Blocking exports that do not go through
/// [`block_on`] (e.g. a condvar wait) should call this first.
pub fn check_may_block() -> Result<()> {
    if on_runtime_thread() {
        return Err(Error::new(
            wtd_result::WTD_ERR_INVALID_STATE,
            "blocking call made from a wtd callback thread; callbacks must not block — use the \
             try_/non-blocking variant or defer the call to your own thread",
        ));
    }
    if Handle::try_current().is_ok() {
        return Err(Error::new(
            wtd_result::WTD_ERR_INVALID_STATE,
            "blocking call made from inside an async runtime; call it from a plain thread",
        ));
    }
    Ok(())
}

/// Sets the number of worker threads of the runtime. Only allowed before the runtime starts (or
/// after [`shutdown`]): `WTD_ERR_INVALID_STATE` otherwise; `n` must be 1..=1024
/// (`WTD_ERR_INVALID_ARGUMENT`).
pub fn set_threads(n: usize) -> Result<()> {
    GLOBAL.set_threads(n)
}

/// Chooses who runs wtd's I/O and callbacks ([`Mode`]). Only allowed before the runtime starts
/// (or after [`shutdown`]); `WTD_ERR_INVALID_STATE` when it runs in the other mode.
pub fn set_mode(mode: Mode) -> Result<()> {
    GLOBAL.set_mode(mode)
}

/// The configured mode.
pub fn mode() -> Mode {
    if GLOBAL.is_poll() {
        Mode::Poll
    } else {
        Mode::Threads
    }
}

/// Whether the runtime is currently running.
pub fn is_running() -> bool {
    GLOBAL.is_running()
}

/// A handle to the runtime, starting it if needed. Use it to spawn background tasks.
pub fn handle() -> Result<Handle> {
    GLOBAL.handle()
}

/// True on a thread of the wtd runtime — in particular inside any callback wtd invokes (in poll
/// mode: on a thread inside [`poll`] or inside a blocking call that drives the runtime).
pub fn on_runtime_thread() -> bool {
    ON_RUNTIME.with(|f| f.get())
}

/// Runs `f` to completion on the calling thread, with the runtime's I/O and timers (in poll mode
/// this thread drives them while it waits, unless another thread is driving).
///
/// Refuses with `WTD_ERR_INVALID_STATE` on a runtime thread (a callback must not block: it would
/// stall the worker the operation needs) and inside any other async context (tokio would panic).
///
/// Build tokio resources inside the future: `block_on(async { sleep(d).await })`, not
/// `block_on(sleep(d))` — `sleep`/`timeout` panic when constructed outside a runtime context.
pub fn block_on<F: Future>(f: F) -> Result<F::Output> {
    GLOBAL.block_on(f)
}

/// Shuts the runtime down: running tasks are cancelled at their next await point and the call
/// waits up to 2 s for the worker threads to exit. The next use starts a new runtime. A no-op when
/// the runtime is not running. Called from a runtime thread (a callback) it does not wait.
pub fn shutdown() {
    GLOBAL.shutdown()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_runs_and_refuses_on_runtime_thread() {
        let cell = RuntimeCell::new();
        assert_eq!(cell.block_on(async { 41 + 1 }).unwrap(), 42);
        assert!(!on_runtime_thread());
        let h = cell.handle().unwrap();
        let (on_rt, inner) = cell
            .block_on(async move {
                h.spawn(async { (on_runtime_thread(), block_on(async { 1 })) })
                    .await
                    .unwrap()
            })
            .unwrap();
        assert!(on_rt);
        let err = inner.unwrap_err();
        assert_eq!(err.code, wtd_result::WTD_ERR_INVALID_STATE);
        assert!(err.message.contains("callback"), "{}", err.message);
        cell.shutdown();
    }

    #[test]
    fn block_on_refuses_inside_foreign_runtime() {
        let cell = RuntimeCell::new();
        let other = Builder::new_current_thread().build().unwrap();
        let r = other.block_on(async { cell.block_on(async { 1 }) });
        assert_eq!(r.unwrap_err().code, wtd_result::WTD_ERR_INVALID_STATE);
        cell.shutdown();
    }

    #[test]
    fn block_on_drives_timers() {
        let cell = RuntimeCell::new();
        let t = std::time::Instant::now();
        // Futures that touch the runtime when *constructed* (sleep, timeout) must be created
        // inside the async block, not before block_on is called.
        cell.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await })
            .unwrap();
        assert!(t.elapsed() >= Duration::from_millis(20));
        cell.shutdown();
    }

    #[test]
    fn set_threads_only_before_start() {
        let cell = RuntimeCell::new();
        assert_eq!(
            cell.set_threads(0).unwrap_err().code,
            wtd_result::WTD_ERR_INVALID_ARGUMENT
        );
        cell.set_threads(3).unwrap();
        let h = cell.handle().unwrap();
        assert_eq!(h.metrics().num_workers(), 3);
        assert_eq!(
            cell.set_threads(2).unwrap_err().code,
            wtd_result::WTD_ERR_INVALID_STATE
        );
        let name = cell
            .block_on(async move {
                h.spawn(async { std::thread::current().name().map(str::to_owned) })
                    .await
                    .unwrap()
            })
            .unwrap();
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        cell.shutdown();
        cell.shutdown();
        assert!(!cell.is_running());
        cell.set_threads(DEFAULT_THREADS).unwrap();
        assert_eq!(cell.block_on(async { 7 }).unwrap(), 7);
        assert!(cell.is_running());
        cell.shutdown();
    }

    #[test]
    fn poll_mode_runs_only_while_a_thread_drives_it() {
        let cell = RuntimeCell::new();
        cell.set_mode(Mode::Poll).unwrap();
        let h = cell.handle().unwrap();
        assert_eq!(h.metrics().num_workers(), 1, "a current-thread runtime");
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        h.spawn(async move { flag.store(true, Ordering::SeqCst) });
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !ran.load(Ordering::SeqCst),
            "nothing runs while no thread drives it"
        );
        let me = std::thread::current().id();
        let (on_rt, thread) = cell
            .block_on(async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                (on_runtime_thread(), std::thread::current().id())
            })
            .unwrap();
        assert!(
            ran.load(Ordering::SeqCst),
            "the spawned task ran inside block_on"
        );
        assert!(
            on_rt && thread == me,
            "driven on the calling thread, marked as a runtime thread"
        );
        assert!(!on_runtime_thread());
        // Nested blocking is refused; the mode cannot change while the runtime runs.
        let inner = cell.block_on(async { block_on(async { 1 }) }).unwrap();
        assert_eq!(inner.unwrap_err().code, wtd_result::WTD_ERR_INVALID_STATE);
        cell.set_mode(Mode::Poll).unwrap();
        assert_eq!(
            cell.set_mode(Mode::Threads).unwrap_err().code,
            wtd_result::WTD_ERR_INVALID_STATE
        );
        cell.shutdown();
        cell.set_mode(Mode::Threads).unwrap();
        assert!(!cell.is_poll());
    }

    #[test]
    fn default_workers_follow_the_cpus_the_process_may_use() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(default_threads(), cpus.min(DEFAULT_THREADS));
        let cell = RuntimeCell::new();
        let h = cell.handle().unwrap();
        assert_eq!(h.metrics().num_workers(), default_threads());
        cell.shutdown();
    }
}
