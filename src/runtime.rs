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

use std::cell::Cell;
use std::future::Future;
use std::sync::Mutex;
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
    std::thread::available_parallelism()
        .map_or(DEFAULT_THREADS, |n| n.get().min(DEFAULT_THREADS))
}
/// How long [`shutdown`] waits for running tasks to finish.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// Name of every runtime thread (workers and blocking-pool threads).
pub(crate) const THREAD_NAME: &str = "wtd-rt";

struct State {
    /// Worker threads; 0 = [`default_threads`] when the runtime starts.
    threads: usize,
    rt: Option<Runtime>,
}

/// A lazily started runtime plus its configuration. The library uses one global instance through
/// the free functions below; tests make private ones so they cannot disturb each other.
pub(crate) struct RuntimeCell {
    state: Mutex<State>,
}

static GLOBAL: RuntimeCell = RuntimeCell::new();

thread_local! {
    static ON_RUNTIME: Cell<bool> = const { Cell::new(false) };
}

impl RuntimeCell {
    pub(crate) const fn new() -> Self {
        RuntimeCell {
            state: Mutex::new(State {
                threads: 0,
                rt: None,
            }),
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

    pub(crate) fn is_running(&self) -> bool {
        self.lock().rt.is_some()
    }

    pub(crate) fn handle(&self) -> Result<Handle> {
        let mut st = self.lock();
        if let Some(rt) = &st.rt {
            return Ok(rt.handle().clone());
        }
        let threads = match st.threads {
            0 => default_threads(),
            n => n,
        };
        let rt = Builder::new_multi_thread()
            .worker_threads(threads)
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
        let h = rt.handle().clone();
        st.rt = Some(rt);
        Ok(h)
    }

    pub(crate) fn block_on<F: Future>(&self, f: F) -> Result<F::Output> {
        check_may_block()?;
        let h = self.handle()?;
        Ok(h.block_on(f))
    }

    pub(crate) fn shutdown(&self) {
        let rt = self.lock().rt.take();
        if let Some(rt) = rt {
            if on_runtime_thread() || Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(SHUTDOWN_TIMEOUT);
            }
        }
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

/// Whether the runtime is currently running.
pub fn is_running() -> bool {
    GLOBAL.is_running()
}

/// A handle to the runtime, starting it if needed. Use it to spawn background tasks.
pub fn handle() -> Result<Handle> {
    GLOBAL.handle()
}

/// True on a thread of the wtd runtime — in particular inside any callback wtd invokes.
pub fn on_runtime_thread() -> bool {
    ON_RUNTIME.with(|f| f.get())
}

/// Runs `f` to completion on the calling thread, with the runtime's I/O and timers.
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
    fn default_workers_follow_the_cpus_the_process_may_use() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(default_threads(), cpus.min(DEFAULT_THREADS));
        let cell = RuntimeCell::new();
        let h = cell.handle().unwrap();
        assert_eq!(h.metrics().num_workers(), default_threads());
        cell.shutdown();
    }
}
