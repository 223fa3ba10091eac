//! Result strings, last error, version, runtime configuration (threads or engine-owned poll
//! mode, `wtd_poll`) and shutdown.

#![allow(non_camel_case_types)]

use std::ffi::c_char;

use super::{guard, guard_void, last_error_ptr};
use crate::error::{wtd_result, Error};

/// Major version of the library this header belongs to.
pub const WTD_VERSION_MAJOR: u32 = 0;
/// Minor version of the library this header belongs to.
pub const WTD_VERSION_MINOR: u32 = 2;
/// Patch version of the library this header belongs to.
pub const WTD_VERSION_PATCH: u32 = 0;

const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut v = 0u32;
    while i < b.len() {
        assert!(b[i].is_ascii_digit());
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

// The literals above are what cbindgen puts in the header; keep them equal to Cargo.toml.
const _: () = assert!(
    WTD_VERSION_MAJOR == parse_u32(env!("CARGO_PKG_VERSION_MAJOR"))
        && WTD_VERSION_MINOR == parse_u32(env!("CARGO_PKG_VERSION_MINOR"))
        && WTD_VERSION_PATCH == parse_u32(env!("CARGO_PKG_VERSION_PATCH")),
    "WTD_VERSION_* constants in src/ffi/result.rs differ from the version in Cargo.toml"
);

static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// Returns a short static description of a result code, e.g. "closed" for `WTD_ERR_CLOSED`, or
/// "unknown" for a value that is not a `wtd_result`. Takes the code as a plain integer so any
/// value is safe to pass.
///
/// Ownership: the string is static; never free it. Thread: any. Errors: none; does not change
/// `wtd_last_error_message()`.
#[no_mangle]
pub extern "C" fn wtd_result_str(result: u32) -> *const c_char {
    wtd_result::c_name_of(result)
}

/// Returns the message of the most recent failed wtd call on the calling thread (NUL-terminated
/// UTF-8), or "" when the most recent call succeeded or there was none.
///
/// Ownership: owned by wtd; valid until the next wtd call on this thread (other than
/// `wtd_last_error_message`, `wtd_result_str` and the version functions); copy it to keep it.
/// Thread: per thread — each thread sees its own last error. Errors: none.
#[no_mangle]
pub extern "C" fn wtd_last_error_message() -> *const c_char {
    last_error_ptr()
}

/// Returns the library version as a static string, e.g. "0.2.0". Compare with the
/// `WTD_VERSION_*` macros to detect a header/library mismatch.
///
/// Ownership: static; never free it. Thread: any. Errors: none.
#[no_mangle]
pub extern "C" fn wtd_version() -> *const c_char {
    VERSION.as_ptr() as *const c_char
}

/// Returns the library version as `(major << 16) | (minor << 8) | patch`.
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: none.
#[no_mangle]
pub extern "C" fn wtd_version_number() -> u32 {
    (WTD_VERSION_MAJOR << 16) | (WTD_VERSION_MINOR << 8) | WTD_VERSION_PATCH
}

/// Sets the number of worker threads of wtd's internal runtime. All network I/O, timers and
/// callbacks run on these threads (named "wtd-rt"). Default: 2, or 1 when the process may run on
/// only one CPU (its affinity mask, e.g. `taskset -c 3`, or a cgroup CPU quota below 2): two
/// workers on one CPU only add wake-ups and context switches between them. In WTD_RUNTIME_POLL
/// mode there are no worker threads; the count is kept for a later WTD_RUNTIME_THREADS runtime.
///
/// Call it before the first wtd call that creates a server, client or session (or after
/// `wtd_shutdown()`).
/// Ownership: nothing is handed over.
/// Thread: any.
/// Errors: `WTD_ERR_INVALID_ARGUMENT` if `threads` is 0 or above 1024; `WTD_ERR_INVALID_STATE` if
/// the runtime is already running.
#[no_mangle]
pub extern "C" fn wtd_set_runtime_threads(threads: u32) -> wtd_result {
    guard(|| crate::runtime::set_threads(threads as usize))
}

/// Lets datagrams sent from application threads wait up to `interval_us` microseconds so that
/// they leave together (like GameNetworkingSockets' Nagle time, for every connection at once).
///
/// 0 (the default): the first send of a burst wakes a wtd thread at once, which hands the
/// burst to the network — lowest latency, one wake-up (a system call, and on a shared core a
/// context switch) per burst on the sending thread. Above 0: while traffic lasts, wtd looks at
/// every connection's queued datagrams once per interval, and sends never wake a wtd thread (no
/// system call on the sending thread); a datagram leaves at most one interval later. Sends made
/// inside wtd callbacks are not delayed. Takes effect at once; may be changed at any time.
/// Ownership: nothing is handed over.
/// Thread: any.
/// Errors: `WTD_ERR_INVALID_ARGUMENT` above 100000 (100 ms).
#[no_mangle]
pub extern "C" fn wtd_set_send_coalescing(interval_us: u32) -> wtd_result {
    guard(|| {
        crate::h3::flusher::set_send_coalescing(std::time::Duration::from_micros(
            interval_us.into(),
        ))
    })
}

/// Who runs wtd's network I/O, timers and callbacks (`wtd_set_runtime_mode`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wtd_runtime_mode {
    /// wtd's own threads ("wtd-rt", see `wtd_set_runtime_threads`) run everything (default).
    WTD_RUNTIME_THREADS = 0,
    /// Engine-owned: wtd starts no threads; everything runs inside `wtd_poll` on the thread that
    /// calls it (and inside blocking wtd calls while they wait).
    WTD_RUNTIME_POLL = 1,
}

crate::error::c_enum!(wtd_runtime_mode {
    WTD_RUNTIME_THREADS => c"threads",
    WTD_RUNTIME_POLL => c"poll",
});

/// Chooses who runs wtd's network I/O, timers and callbacks: a `wtd_runtime_mode` value.
///
/// WTD_RUNTIME_POLL (engine-owned, like msquic's ExecutionPoll or GameNetworkingSockets'
/// RunCallbacks): wtd starts no threads. Nothing happens — no datagram is read or sent, no
/// timer fires, no callback runs — until a thread calls `wtd_poll`, which does all of it on
/// the calling thread. Call `wtd_poll(&n, 0)` once per frame, or `wtd_poll(&n, 10)` in a
/// dedicated network loop; at least every ~25 ms while connections are open (quinn's ACK delay;
/// a longer gap shows up as round-trip time to the peer, and above the idle timeout the
/// connection closes). Sends are queued and leave during the next `wtd_poll` (call it after
/// the frame's sends; sends from a callback leave at once). Datagrams that arrive between two
/// calls wait in the socket's receive buffer; one that overflows it is dropped by the kernel
/// (the peer sees it as loss), so poll often enough for your traffic. Blocking calls (connect,
/// close, accepts and receives with a timeout, wait_closed, shutdown) run wtd while they wait,
/// so they work without a poller; callbacks may then run inside them on their thread. Make
/// blocking calls from the polling thread (or only non-blocking ones elsewhere) if every
/// callback must run on one thread.
///
/// Call it before the first wtd call that creates a server, client or session (or after
/// `wtd_shutdown()`).
/// Ownership: nothing is handed over.
/// Thread: any.
/// Errors: `WTD_ERR_INVALID_ARGUMENT` for an unknown mode; `WTD_ERR_INVALID_STATE` if the runtime
/// is already running in the other mode.
#[no_mangle]
pub extern "C" fn wtd_set_runtime_mode(mode: u32) -> wtd_result {
    guard(|| {
        let mode = match wtd_runtime_mode::from_u32(mode) {
            Some(wtd_runtime_mode::WTD_RUNTIME_THREADS) => crate::runtime::Mode::Threads,
            Some(wtd_runtime_mode::WTD_RUNTIME_POLL) => crate::runtime::Mode::Poll,
            None => return Err(Error::invalid(format!("unknown runtime mode {mode}"))),
        };
        crate::runtime::set_mode(mode)
    })
}

/// Runs wtd on the calling thread (WTD_RUNTIME_POLL mode): reads what arrived on the sockets,
/// fires due timers, runs every callback that results, and sends what is queued.
///
/// `timeout_ms` 0 (once per frame): does everything that is ready now and what it causes (a
/// datagram read from the socket goes on to its session's queue or callback in the same call),
/// then returns. Under a flood one call is bounded (64 rounds of "run what is ready, read the
/// sockets"); the rest waits for the next call.
/// `timeout_ms` > 0 or negative (a network loop, or waiting out the rest of a frame): does the
/// same work as it becomes ready and returns as soon as something reached the application, or
/// when `timeout_ms` has passed (negative: no limit). Network work that delivers nothing to the
/// application (ACKs, retransmissions, keep-alives) is done meanwhile without ending the wait.
///
/// `*out_events` (if not NULL) gets how many application events happened during the call:
/// datagrams that reached a session (queued or given to its callbacks), sessions accepted, and
/// sessions closed. 0 means there is nothing new to read.
///
/// There is no "next timer" output: wtd's timers live in quinn and tokio, which do not expose
/// their next deadline; call `wtd_poll` at least every ~25 ms while connections are open (see
/// `wtd_set_runtime_mode`).
///
/// Ownership: nothing is handed over.
/// Thread: any thread that is not inside a wtd callback; one thread at a time drives wtd (a second
/// concurrent caller, or a blocking call in progress on another thread, makes this call wait
/// for events that thread processes). Callbacks run on this thread, inside this call.
/// Errors: WTD_ERR_INVALID_STATE in WTD_RUNTIME_THREADS mode (the default: wtd's threads need no
/// polling), from inside a wtd callback, or from inside an async runtime.
#[no_mangle]
pub extern "C" fn wtd_poll(out_events: *mut u64, timeout_ms: i32) -> wtd_result {
    guard(|| {
        let events = crate::runtime::poll(super::wait_of(timeout_ms))?;
        super::write_opt(out_events, events, "out_events")
    })
}

/// Stops wtd's internal runtime: session closes still in flight get up to 2 s to reach their
/// peers, then background tasks are cancelled and the call waits up to 2
/// seconds for the runtime threads to exit. Close and free your handles first; handles still open
/// become unusable (their calls fail with an error). A later wtd call starts a new runtime, so
/// calling it twice, or before anything was started, is harmless.
///
/// In WTD_RUNTIME_POLL mode the calling thread drives the closes; called while another thread
/// is inside `wtd_poll` (or a blocking call), the runtime stops when that call returns.
///
/// Ownership: nothing is handed over.
/// Thread: any thread not inside a wtd callback; from a callback it does not wait. Errors: none.
#[no_mangle]
pub extern "C" fn wtd_shutdown() {
    guard_void(|| {
        crate::logging::log_debug!("wtd_shutdown: stopping the runtime");
        // Let session closes in flight reach their peers first (bounded).
        if crate::runtime::is_running() && crate::runtime::check_may_block().is_ok() {
            let _ = crate::runtime::block_on(crate::h3::connection::wait_closing(
                std::time::Duration::from_secs(2),
            ));
        }
        crate::runtime::shutdown();
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn strings_for_every_code() {
        assert_eq!(wtd_result::ALL.len(), 17);
        for (i, r) in wtd_result::ALL.iter().enumerate() {
            assert_eq!(*r as u32, i as u32, "codes are dense and in order");
            assert_eq!(wtd_result::try_from(i as u32), Ok(*r));
            let s = unsafe { CStr::from_ptr(wtd_result_str(*r as u32)) }
                .to_str()
                .unwrap();
            assert!(!s.is_empty() && s != "unknown");
        }
        let closed = unsafe { CStr::from_ptr(wtd_result_str(2)) };
        assert_eq!(closed.to_str().unwrap(), "closed");
        for bad in [17, 1000, u32::MAX, -1i32 as u32] {
            let s = unsafe { CStr::from_ptr(wtd_result_str(bad)) };
            assert_eq!(s.to_str().unwrap(), "unknown");
        }
        assert_eq!(wtd_result::WTD_ERR_CLOSED.as_str(), "WTD_ERR_CLOSED");
    }

    #[test]
    fn version() {
        let v = unsafe { CStr::from_ptr(wtd_version()) }.to_str().unwrap();
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            wtd_version_number(),
            WTD_VERSION_MAJOR << 16 | WTD_VERSION_MINOR << 8 | WTD_VERSION_PATCH
        );
    }

    #[test]
    fn set_runtime_threads_rejects_zero() {
        // Zero is refused before the runtime state is consulted; other values are exercised in
        // runtime.rs on a private runtime so this test cannot disturb the global one.
        let r = wtd_set_runtime_threads(0);
        assert_eq!(r, wtd_result::WTD_ERR_INVALID_ARGUMENT);
        let msg = unsafe { CStr::from_ptr(wtd_last_error_message()) };
        assert!(msg.to_str().unwrap().contains("at least 1"));
        assert_eq!(
            wtd_set_runtime_threads(100_000),
            wtd_result::WTD_ERR_INVALID_ARGUMENT
        );
    }
}
