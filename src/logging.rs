//! Library logging, forwarded to an application callback (`wtd_set_log_callback`).
//!
//! Cheap when off: [`log`] first compares the level with an atomic maximum (0 = no callback) and
//! only then formats. The callback is serialized by a mutex (never runs concurrently with itself),
//! a panic while formatting is swallowed, and a log call made from inside the callback (e.g. the
//! callback calls a wtd function that logs) is dropped instead of deadlocking.
//!
//! Inside the crate use the macros: `log_error!`, `log_warn!`, `log_info!`, `log_debug!`,
//! `log_trace!` (format-style, like `println!`). They are in textual scope for every module
//! declared after `logging` in `lib.rs`, and importable by path:
//! `use crate::logging::{log_debug, log_warn};`.

use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

/// Severity of a log message; a callback registered with a maximum level receives every message
/// whose level is numerically less than or equal to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
#[allow(non_camel_case_types)]
pub enum wtd_log_level {
    /// Something failed and was not recovered (a connection lost, a task crashed).
    WTD_LOG_ERROR = 1,
    /// Something unexpected that wtd recovered from (a peer's malformed frame, a dropped datagram
    /// burst).
    WTD_LOG_WARN = 2,
    /// Lifecycle events: server listening, session opened/closed.
    WTD_LOG_INFO = 3,
    /// Protocol details useful when debugging interop (settings, negotiated draft).
    WTD_LOG_DEBUG = 4,
    /// Very chatty per-packet detail.
    WTD_LOG_TRACE = 5,
}

crate::error::c_enum!(wtd_log_level {
    WTD_LOG_ERROR => c"ERROR",
    WTD_LOG_WARN => c"WARN",
    WTD_LOG_INFO => c"INFO",
    WTD_LOG_DEBUG => c"DEBUG",
    WTD_LOG_TRACE => c"TRACE",
});

impl wtd_log_level {
    /// The level for a raw value from C; `None` when out of range.
    pub fn from_raw(v: u32) -> Option<Self> {
        Self::from_u32(v)
    }

    /// Short upper-case name, e.g. `"WARN"`.
    pub fn as_str(self) -> &'static str {
        self.name()
    }
}

/// Log callback: `user_data` (from `wtd_log_callbacks`), the message's `level` (a
/// `wtd_log_level` value) and `message`, a NUL-terminated UTF-8 string without a trailing newline,
/// valid only during the call (copy it to keep it). Called from any thread that logs (usually a
/// wtd runtime thread, sometimes the caller's own thread inside a wtd call), never concurrently
/// with itself. It must not block for long and must not unwind (throw a C++ exception) into wtd.
#[allow(non_camel_case_types)]
pub type wtd_log_cb = Option<
    unsafe extern "C" fn(user_data: *mut c_void, level: wtd_log_level, message: *const c_char),
>;

struct Sink {
    cb: unsafe extern "C" fn(*mut c_void, wtd_log_level, *const c_char),
    user_data: *mut c_void,
}

// SAFETY: the application promises (documented on wtd_log_set_callbacks) that the callback and
// user_data may be used from any thread; wtd never uses them concurrently (SINK's mutex).
unsafe impl Send for Sink {}

/// Highest level delivered; 0 = logging off. Checked before any formatting.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);
static SINK: Mutex<Option<Sink>> = Mutex::new(None);

thread_local! {
    /// Set while this thread is inside the log callback (re-entrancy guard).
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// True when a message at `level` would reach the callback.
#[inline]
pub fn enabled(level: wtd_log_level) -> bool {
    (level as u8) <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// True while the calling thread is running the log callback.
pub fn in_log_callback() -> bool {
    IN_CALLBACK.with(|c| c.get())
}

/// Installs (or, with `cb = None`, removes) the callback. When this returns, the previous callback
/// is not running and will not be called again. Refused with `WTD_ERR_INVALID_STATE` from inside
/// the callback itself (it would deadlock).
pub fn set_callback(
    cb: wtd_log_cb,
    user_data: *mut c_void,
    max_level: wtd_log_level,
) -> crate::Result<()> {
    if in_log_callback() {
        return Err(crate::Error::new(
            crate::wtd_result::WTD_ERR_INVALID_STATE,
            "wtd_log_set_callbacks called from inside the log callback",
        ));
    }
    let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
    match cb {
        Some(cb) => {
            *sink = Some(Sink { cb, user_data });
            MAX_LEVEL.store(max_level as u8, Ordering::Relaxed);
        }
        None => {
            MAX_LEVEL.store(0, Ordering::Relaxed);
            *sink = None;
        }
    }
    Ok(())
}

/// Formats and forwards one message to the callback, if one is installed and `level` passes.
pub fn log(level: wtd_log_level, args: fmt::Arguments<'_>) {
    if !enabled(level) || in_log_callback() {
        return;
    }
    // Formatting runs user Display impls; a panic there must not escape.
    let text = match catch_unwind(AssertUnwindSafe(|| fmt::format(args))) {
        Ok(t) => t,
        Err(_) => String::from("<panic while formatting a log message>"),
    };
    let msg = to_cstring(text);
    let sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
    let Some(s) = sink.as_ref() else { return };
    // The level may have been lowered between the check above and taking the lock.
    if !enabled(level) {
        return;
    }
    IN_CALLBACK.with(|c| c.set(true));
    // SAFETY: the application registered this function pointer for exactly this call shape.
    // A C callback cannot unwind into Rust (extern "C" aborts on unwind), so no catch here.
    unsafe { (s.cb)(s.user_data, level, msg.as_ptr()) };
    IN_CALLBACK.with(|c| c.set(false));
    drop(sink);
}

/// A C string from arbitrary text: interior NULs become U+FFFD, a trailing newline is removed.
fn to_cstring(mut text: String) -> CString {
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    if text.contains('\0') {
        text = text.replace('\0', "\u{FFFD}");
    }
    CString::new(text).unwrap_or_default()
}

/// Logs at `WTD_LOG_ERROR`, format-style.
#[allow(unused_macros)]
macro_rules! log_error {
    ($($arg:tt)*) => {
        $crate::logging::log($crate::logging::wtd_log_level::WTD_LOG_ERROR, format_args!($($arg)*))
    };
}
/// Logs at `WTD_LOG_WARN`, format-style.
#[allow(unused_macros)]
macro_rules! log_warn {
    ($($arg:tt)*) => {
        $crate::logging::log($crate::logging::wtd_log_level::WTD_LOG_WARN, format_args!($($arg)*))
    };
}
/// Logs at `WTD_LOG_INFO`, format-style.
#[allow(unused_macros)]
macro_rules! log_info {
    ($($arg:tt)*) => {
        $crate::logging::log($crate::logging::wtd_log_level::WTD_LOG_INFO, format_args!($($arg)*))
    };
}
/// Logs at `WTD_LOG_DEBUG`, format-style.
#[allow(unused_macros)]
macro_rules! log_debug {
    ($($arg:tt)*) => {
        $crate::logging::log($crate::logging::wtd_log_level::WTD_LOG_DEBUG, format_args!($($arg)*))
    };
}
/// Logs at `WTD_LOG_TRACE`, format-style.
#[allow(unused_macros)]
macro_rules! log_trace {
    ($($arg:tt)*) => {
        $crate::logging::log($crate::logging::wtd_log_level::WTD_LOG_TRACE, format_args!($($arg)*))
    };
}

#[allow(unused_imports)]
pub(crate) use {log_debug, log_error, log_info, log_trace, log_warn};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::ffi::CStr;

    /// Serializes tests that install a global log callback.
    pub(crate) static LOG_TEST_LOCK: Mutex<()> = Mutex::new(());

    static CAPTURED: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

    unsafe extern "C" fn capture(ud: *mut c_void, level: wtd_log_level, msg: *const c_char) {
        assert_eq!(ud as usize, 0x1234);
        let s = CStr::from_ptr(msg).to_string_lossy().into_owned();
        // Re-entrant logging from inside the callback is dropped, not deadlocked.
        log_error!("from inside the callback");
        CAPTURED.lock().unwrap().push((level as u32, s));
    }

    struct Bomb;
    impl fmt::Display for Bomb {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            panic!("boom in Display")
        }
    }

    #[test]
    fn callback_levels_reentrancy_and_panics() {
        let _g = LOG_TEST_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        CAPTURED.lock().unwrap().clear();
        set_callback(
            Some(capture),
            0x1234 as *mut c_void,
            wtd_log_level::WTD_LOG_INFO,
        )
        .unwrap();
        log_info!("hello {}", 42);
        log_debug!("filtered out");
        log_warn!("with\0nul\n");
        log_error!("{}", Bomb);
        set_callback(None, std::ptr::null_mut(), wtd_log_level::WTD_LOG_TRACE).unwrap();
        log_error!("after removal");
        let got = CAPTURED.lock().unwrap().clone();
        let mine: Vec<_> = got
            .iter()
            .filter(|(_, m)| {
                m == "hello 42" || m.starts_with("with") || m.starts_with("<panic while")
            })
            .cloned()
            .collect();
        assert_eq!(
            mine,
            vec![
                (3, "hello 42".to_string()),
                (2, "with\u{FFFD}nul".to_string()),
                (1, "<panic while formatting a log message>".to_string()),
            ]
        );
        assert!(!got
            .iter()
            .any(|(_, m)| m.contains("filtered") || m.contains("after removal")));
        assert!(!got.iter().any(|(_, m)| m.contains("inside the callback")));
        assert!(!enabled(wtd_log_level::WTD_LOG_ERROR));
    }

    #[test]
    fn from_raw() {
        assert_eq!(wtd_log_level::from_raw(0), None);
        assert_eq!(
            wtd_log_level::from_raw(4),
            Some(wtd_log_level::WTD_LOG_DEBUG)
        );
        assert_eq!(wtd_log_level::from_raw(6), None);
    }
}
