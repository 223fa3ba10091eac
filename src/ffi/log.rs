//! Log callback registration.

use std::ffi::c_void;

use super::guard;
use crate::error::{wtd_result, Error};
use crate::logging::{self, wtd_log_callback, wtd_log_level};

/// Installs the log callback, replacing any previous one; `callback = NULL` turns logging off
/// (the default). Messages whose level is numerically greater than `max_level` (a
/// `wtd_log_level`, passed as an integer) are filtered out before they are even formatted.
///
/// The callback is called from whichever wtd thread logs (usually a "wtd-rt" runtime thread,
/// sometimes your own thread inside a wtd call), never concurrently with itself; `message` is
/// valid only during the call; `user_data` is passed back unchanged and must stay valid until the
/// callback is replaced or removed. Once this function returns, the previous callback is not
/// running and will not be called again. Logging from inside the callback is dropped.
///
/// Thread: any, but not from inside the log callback itself.
/// Errors: `WTD_ERR_INVALID_ARGUMENT` if `max_level` is not `WTD_LOG_ERROR`..`WTD_LOG_TRACE`
/// (ignored when `callback` is NULL); `WTD_ERR_INVALID_STATE` when called from the log callback.
#[no_mangle]
pub unsafe extern "C" fn wtd_set_log_callback(
    callback: wtd_log_callback,
    user_data: *mut c_void,
    max_level: u32,
) -> wtd_result {
    guard(|| {
        let level = match (callback.is_some(), wtd_log_level::from_raw(max_level)) {
            (_, Some(l)) => l,
            (false, None) => wtd_log_level::WTD_LOG_ERROR,
            (true, None) => {
                return Err(Error::invalid(format!(
                    "max_level {max_level} is not a wtd_log_level (1 = WTD_LOG_ERROR .. 5 = \
                     WTD_LOG_TRACE)"
                )))
            }
        };
        logging::set_callback(callback, user_data, level)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_char;

    unsafe extern "C" fn noop(_: wtd_log_level, _: *const c_char, _: *mut c_void) {}

    #[test]
    fn validates_level() {
        let _g = crate::logging::tests::LOG_TEST_LOCK
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        unsafe {
            assert_eq!(
                wtd_set_log_callback(Some(noop), std::ptr::null_mut(), 0),
                wtd_result::WTD_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                wtd_set_log_callback(Some(noop), std::ptr::null_mut(), 6),
                wtd_result::WTD_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                wtd_set_log_callback(Some(noop), std::ptr::null_mut(), 4),
                wtd_result::WTD_OK
            );
            assert!(logging::enabled(wtd_log_level::WTD_LOG_DEBUG));
            assert!(!logging::enabled(wtd_log_level::WTD_LOG_TRACE));
            assert_eq!(
                wtd_set_log_callback(None, std::ptr::null_mut(), 0),
                wtd_result::WTD_OK
            );
            assert!(!logging::enabled(wtd_log_level::WTD_LOG_ERROR));
        }
    }
}
