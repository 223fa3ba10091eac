//! Log callback registration.

use std::ffi::c_void;

use super::{guard, read_options};
use crate::error::{wtd_result, Error};
use crate::logging::{self, wtd_log_cb, wtd_log_level};

/// The log callback and its filter (versioned: set `struct_size = sizeof(wtd_log_callbacks)`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_log_callbacks {
    /// `sizeof(wtd_log_callbacks)`.
    pub struct_size: u32,
    /// Highest `wtd_log_level` delivered (`WTD_LOG_ERROR` 1 .. `WTD_LOG_TRACE` 5): messages of a
    /// numerically greater level are filtered out before they are even formatted.
    pub max_level: u32,
    /// Called for each message (NULL: logging off, the default).
    pub on_log: wtd_log_cb,
    /// Passed to `on_log`.
    pub user_data: *mut c_void,
}

const LOG_CALLBACKS_V1: usize = std::mem::size_of::<wtd_log_callbacks>();

/// Installs the process-wide log callback, replacing any previous one (`callbacks` NULL, or
/// `on_log` NULL, turns logging off — the default; the struct is copied).
///
/// The callback is called from whichever wtd thread logs (usually a "wtd-rt" runtime thread,
/// sometimes your own thread inside a wtd call), never concurrently with itself; `message` is
/// valid only during the call; `user_data` is passed back unchanged and must stay valid until the
/// callback is replaced or removed. Messages are not queued: once this function returns, the
/// previous callback is not running and will not be called again. Logging from inside the
/// callback is dropped.
///
/// Ownership: the struct is copied; `user_data` stays the caller's and must stay valid while the
/// callbacks may run.
/// Thread: any, but not from inside the log callback itself.
/// Errors: `WTD_ERR_INVALID_ARGUMENT` (`struct_size` too small, `max_level` outside
/// `WTD_LOG_ERROR`..`WTD_LOG_TRACE` while `on_log` is set); `WTD_ERR_INVALID_STATE` when called
/// from the log callback.
#[no_mangle]
pub extern "C" fn wtd_log_set_callbacks(callbacks: *const wtd_log_callbacks) -> wtd_result {
    guard(|| {
        if callbacks.is_null() {
            return logging::set_callback(None, std::ptr::null_mut(), wtd_log_level::WTD_LOG_ERROR);
        }
        let zero = wtd_log_callbacks {
            struct_size: 0,
            max_level: 0,
            on_log: None,
            user_data: std::ptr::null_mut(),
        };
        let c = read_options(callbacks, zero, LOG_CALLBACKS_V1, "callbacks")?;
        let level = match (c.on_log.is_some(), wtd_log_level::from_u32(c.max_level)) {
            (_, Some(l)) => l,
            (false, None) => wtd_log_level::WTD_LOG_ERROR,
            (true, None) => {
                return Err(Error::invalid(format!(
                    "max_level {} is not a wtd_log_level (1 = WTD_LOG_ERROR .. 5 = \
                     WTD_LOG_TRACE)",
                    c.max_level
                )))
            }
        };
        logging::set_callback(c.on_log, c.user_data, level)
    })
}

/// "ERROR", "WARN", "INFO", "DEBUG", "TRACE", or "unknown" for any other value (a plain integer,
/// so any value is safe to pass).
///
/// Ownership: static; never free it. Thread: any. Errors: none.
#[no_mangle]
pub extern "C" fn wtd_log_level_str(level: u32) -> *const std::ffi::c_char {
    wtd_log_level::c_name_of(level)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_char;

    unsafe extern "C" fn noop(_: *mut c_void, _: wtd_log_level, _: *const c_char) {}

    fn cbs(level: u32, on: bool) -> wtd_log_callbacks {
        wtd_log_callbacks {
            struct_size: LOG_CALLBACKS_V1 as u32,
            max_level: level,
            on_log: if on { Some(noop) } else { None },
            user_data: std::ptr::null_mut(),
        }
    }

    #[test]
    fn validates_level() {
        let _g = crate::logging::tests::LOG_TEST_LOCK
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        {
            assert_eq!(
                wtd_log_set_callbacks(&cbs(0, true)),
                wtd_result::WTD_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                wtd_log_set_callbacks(&cbs(6, true)),
                wtd_result::WTD_ERR_INVALID_ARGUMENT
            );
            let mut short = cbs(4, true);
            short.struct_size = 4;
            assert_eq!(
                wtd_log_set_callbacks(&short),
                wtd_result::WTD_ERR_INVALID_ARGUMENT
            );
            assert_eq!(wtd_log_set_callbacks(&cbs(4, true)), wtd_result::WTD_OK);
            assert!(logging::enabled(wtd_log_level::WTD_LOG_DEBUG));
            assert!(!logging::enabled(wtd_log_level::WTD_LOG_TRACE));
            assert_eq!(wtd_log_set_callbacks(&cbs(0, false)), wtd_result::WTD_OK);
            assert!(!logging::enabled(wtd_log_level::WTD_LOG_ERROR));
            assert_eq!(wtd_log_set_callbacks(&cbs(4, true)), wtd_result::WTD_OK);
            assert_eq!(wtd_log_set_callbacks(std::ptr::null()), wtd_result::WTD_OK);
            assert!(!logging::enabled(wtd_log_level::WTD_LOG_ERROR));
        }
    }
}
