//! The C ABI: every `extern "C"` export lives under this module.
//!
//! Conventions (SPEC §5), implemented by the helpers here and used by every export:
//!
//! * Every export is `#[no_mangle] pub unsafe extern "C"` and runs its body inside [`guard`] (or
//!   [`guard_void`] / [`guard_value`]), so no panic crosses the boundary (→ `WTD_ERR_PANIC`) and an
//!   `Err` becomes its `wtd_result` with the message stored for `wtd_last_error_message()`.
//! * Pointer arguments are checked with [`arg_ref`], [`arg_mut`], [`arg_bytes`], [`arg_str`],
//!   [`arg_opt_str`]; outputs are written with [`write_out`], [`copy_str_out`],
//!   [`copy_bytes_out`] only after everything else succeeded.
//! * Opaque handles are boxes: [`into_handle`] / [`free_handle`] (NULL = no-op).
//! * Versioned options structs start with `uint32_t struct_size`: read them with
//!   [`read_options`] / [`read_options_or_default`].

// Every export documents its pointer contract (what may be NULL, what must stay valid) in its
// `///` text, which cbindgen copies into wtd.h; a separate `# Safety` heading would not reach C.
#![allow(clippy::missing_safety_doc)]

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{wtd_result, Error, Result};

// The header follows this order (cbindgen, `sort_by = "None"`), so it reads by object:
// results/log → server → client → session → transport → layers. Blank lines keep rustfmt from
// sorting the declarations.
pub mod result;

pub mod log;

pub mod server;

pub mod client;

pub mod session;

pub mod transport;

pub mod layers;

thread_local! {
    /// Message of the last failed wtd call on this thread (None = no error).
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Records `msg` as this thread's last error message.
pub(crate) fn set_last_error(msg: &str) {
    let c = match CString::new(msg) {
        Ok(c) => c,
        Err(_) => CString::new(msg.replace('\0', "\u{FFFD}")).unwrap_or_default(),
    };
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(c));
}

/// Clears this thread's last error (done at the start of every guarded call).
pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| {
        if let Ok(mut b) = e.try_borrow_mut() {
            if b.is_some() {
                *b = None;
            }
        }
    });
}

/// Pointer to this thread's last error message (static "" when none). Valid until the next guarded
/// wtd call on this thread.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| match &*e.borrow() {
        Some(c) => c.as_ptr(),
        None => c"".as_ptr(),
    })
}

/// This thread's last error message as an owned string ("" when none). For tests and Rust callers.
#[allow(dead_code)]
pub(crate) fn last_error_string() -> String {
    LAST_ERROR.with(|e| {
        e.borrow()
            .as_ref()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

fn record(e: &Error) -> wtd_result {
    set_last_error(&e.message);
    e.code
}

fn record_panic(p: Box<dyn Any + Send>) -> wtd_result {
    let msg = format!("panic: {}", panic_message(&*p));
    crate::logging::log_error!("caught {msg}");
    set_last_error(&msg);
    // Dropping the payload could itself panic (a payload with a panicking Drop): forget it.
    std::mem::forget(p);
    wtd_result::WTD_ERR_PANIC
}

/// Runs an export's body: clears the last error, catches panics (→ `WTD_ERR_PANIC`, last error
/// "panic: <msg>"), maps `Err(e)` to `e.code` with `e.message` as the last error, `Ok` to `WTD_OK`.
pub(crate) fn guard(f: impl FnOnce() -> Result<()>) -> wtd_result {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => wtd_result::WTD_OK,
        Ok(Err(e)) => record(&e),
        Err(p) => record_panic(p),
    }
}

/// [`guard`] for exports that return nothing (the `_free` functions): a panic is caught, logged
/// and recorded as the last error.
pub(crate) fn guard_void(f: impl FnOnce()) {
    clear_last_error();
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        record_panic(p);
    }
}

/// [`guard`] for exports that return a value directly (getters like `..._is_closed`): on `Err` or
/// panic the message is recorded and `default` is returned.
#[allow(dead_code)]
pub(crate) fn guard_value<T>(default: T, f: impl FnOnce() -> Result<T>) -> T {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            record(&e);
            default
        }
        Err(p) => {
            record_panic(p);
            default
        }
    }
}

fn null_err(what: &str) -> Error {
    Error::invalid(format!("{what} is NULL"))
}

fn check_aligned<T>(p: *const T, what: &str) -> Result<()> {
    if (p as usize) % std::mem::align_of::<T>() != 0 {
        return Err(Error::invalid(format!("{what} is misaligned")));
    }
    Ok(())
}

/// A shared reference from a C pointer; NULL or misaligned → `WTD_ERR_INVALID_ARGUMENT`
/// ("<what> is NULL").
///
/// # Safety
/// A non-NULL `p` must point to a live, initialized `T` for `'a`.
#[allow(dead_code)]
pub(crate) unsafe fn arg_ref<'a, T>(p: *const T, what: &str) -> Result<&'a T> {
    if p.is_null() {
        return Err(null_err(what));
    }
    check_aligned(p, what)?;
    Ok(&*p)
}

/// A mutable reference from a C pointer; NULL or misaligned → `WTD_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// A non-NULL `p` must point to a live, initialized `T`, not aliased, for `'a`.
#[allow(dead_code)]
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T> {
    if p.is_null() {
        return Err(null_err(what));
    }
    check_aligned(p, what)?;
    Ok(&mut *p)
}

/// A byte slice from pointer + length. NULL with `len == 0` → empty slice; NULL with `len > 0`
/// or `len > isize::MAX` → `WTD_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// A non-NULL `p` must point to `len` readable bytes that stay valid and unmodified for `'a`.
#[allow(dead_code)]
pub(crate) unsafe fn arg_bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::invalid(format!(
            "{what} is NULL but its length is {len}"
        )));
    }
    if len > isize::MAX as usize {
        return Err(Error::invalid(format!("{what}: length {len} is too large")));
    }
    Ok(std::slice::from_raw_parts(p, len))
}

/// A `&str` from a NUL-terminated C string; NULL or invalid UTF-8 → `WTD_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// A non-NULL `p` must point to a NUL-terminated string valid for `'a`.
#[allow(dead_code)]
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(null_err(what));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|e| Error::invalid(format!("{what} is not valid UTF-8: {e}")))
}

/// Like [`arg_str`] but NULL → `None`.
///
/// # Safety
/// As [`arg_str`].
#[allow(dead_code)]
pub(crate) unsafe fn arg_opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    arg_str(p, what).map(Some)
}

/// Writes an output value; NULL or misaligned → `WTD_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// A non-NULL `p` must be valid for writing a `T`. The old value is not dropped.
#[allow(dead_code)]
pub(crate) unsafe fn write_out<T>(p: *mut T, v: T, what: &str) -> Result<()> {
    if p.is_null() {
        return Err(null_err(what));
    }
    check_aligned(p, what)?;
    p.write(v);
    Ok(())
}

/// Writes an optional output length (NULL → nothing).
unsafe fn write_len(out_len: *mut usize, n: usize) -> Result<()> {
    if out_len.is_null() {
        return Ok(());
    }
    write_out(out_len, n, "out_len")
}

/// Copies `s` plus a terminating NUL into `buf` (capacity `cap` bytes, NUL included) and writes
/// `s.len()` (without the NUL) to `out_len` when it is not NULL.
///
/// If `cap < s.len() + 1`, nothing is written to `buf`, the required length (without the NUL) is
/// written to `out_len` (when not NULL) and `WTD_ERR_BUFFER_TOO_SMALL` is returned — so
/// `(buf = NULL, cap = 0)` is a size query. `buf == NULL` with `cap > 0` → invalid argument.
///
/// # Safety
/// A non-NULL `buf` must be writable for `cap` bytes; a non-NULL `out_len` writable.
#[allow(dead_code)]
pub(crate) unsafe fn copy_str_out(
    s: &str,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> Result<()> {
    if buf.is_null() && cap > 0 {
        return Err(Error::invalid(format!(
            "buffer is NULL but its capacity is {cap}"
        )));
    }
    let need = s.len();
    if cap < need + 1 {
        write_len(out_len, need)?;
        return Err(Error::new(
            wtd_result::WTD_ERR_BUFFER_TOO_SMALL,
            format!("buffer too small: {need} bytes plus a NUL needed, capacity {cap}"),
        ));
    }
    write_len(out_len, need)?;
    std::ptr::copy_nonoverlapping(s.as_ptr(), buf as *mut u8, need);
    *buf.add(need) = 0;
    Ok(())
}

/// Copies `data` into `buf` (capacity `cap`) and writes `data.len()` to `out_len` when not NULL.
/// If `cap < data.len()`: the required length goes to `out_len`, `WTD_ERR_BUFFER_TOO_SMALL`.
/// `buf == NULL` is allowed only with `cap == 0`.
///
/// # Safety
/// A non-NULL `buf` must be writable for `cap` bytes; a non-NULL `out_len` writable.
#[allow(dead_code)]
pub(crate) unsafe fn copy_bytes_out(
    data: &[u8],
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> Result<()> {
    if buf.is_null() && cap > 0 {
        return Err(Error::invalid(format!(
            "buffer is NULL but its capacity is {cap}"
        )));
    }
    let need = data.len();
    if cap < need {
        write_len(out_len, need)?;
        return Err(Error::new(
            wtd_result::WTD_ERR_BUFFER_TOO_SMALL,
            format!("buffer too small: {need} bytes needed, capacity {cap}"),
        ));
    }
    write_len(out_len, need)?;
    if need > 0 {
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, need);
    }
    Ok(())
}

/// Validates the `struct_size` of a versioned options struct: 0 (uninitialized) or less than
/// `min` (the size of the first published version of the struct) → `WTD_ERR_INVALID_ARGUMENT`
/// telling the caller to use the `_options_default()` function.
#[allow(dead_code)]
pub(crate) fn check_options_size(struct_size: u32, min: usize, what: &str) -> Result<()> {
    if (struct_size as usize) < min || struct_size == 0 {
        return Err(Error::invalid(format!(
            "{what}.struct_size is {struct_size}, expected at least {min}; initialize the struct \
             with its wtd_*_options_default() function"
        )));
    }
    Ok(())
}

/// Reads a versioned options struct from C. `T` must be `#[repr(C)]` and start with
/// `struct_size: u32`. The first `min(struct_size, size_of::<T>())` bytes come from the caller,
/// the rest from `default` (so a caller built against an older, smaller header gets defaults for
/// the fields appended since). The returned value's `struct_size` is set to `size_of::<T>()`.
/// `min` is the size of the first published version of `T` (see [`check_options_size`]).
///
/// Rules for `T` (so that a partial copy is always a valid value): fields are integers, floats,
/// raw pointers or `Option<extern fn>` (no `bool`, no Rust enums — use `u8`/`i32` and validate);
/// new fields are only appended, and never into the previous version's tail padding (add explicit
/// `_reserved` bytes to fill it when appending a field smaller than the padding).
///
/// # Safety
/// `p` must be NULL or point to at least `struct_size` readable bytes (its first field).
#[allow(dead_code)]
pub(crate) unsafe fn read_options<T: Copy>(
    p: *const T,
    default: T,
    min: usize,
    what: &str,
) -> Result<T> {
    if p.is_null() {
        return Err(null_err(what));
    }
    check_aligned(p as *const u32, what)?;
    let struct_size = std::ptr::read(p as *const u32);
    check_options_size(struct_size, min, what)?;
    let n = (struct_size as usize).min(std::mem::size_of::<T>());
    let mut out = default;
    std::ptr::copy_nonoverlapping(p as *const u8, &mut out as *mut T as *mut u8, n);
    let full = u32::try_from(std::mem::size_of::<T>()).unwrap_or(u32::MAX);
    std::ptr::write(&mut out as *mut T as *mut u32, full);
    Ok(out)
}

/// [`read_options`], but a NULL pointer means "all defaults".
///
/// # Safety
/// As [`read_options`].
#[allow(dead_code)]
pub(crate) unsafe fn read_options_or_default<T: Copy>(
    p: *const T,
    default: T,
    min: usize,
    what: &str,
) -> Result<T> {
    if p.is_null() {
        return Ok(default);
    }
    read_options(p, default, min, what)
}

/// The byte length of `count` elements of `elem_size` bytes, refused (WTD_ERR_INVALID_ARGUMENT)
/// when the product overflows or exceeds `isize::MAX` (the most a Rust slice may span).
pub(crate) fn checked_len(count: usize, elem_size: usize, what: &str) -> Result<usize> {
    count
        .checked_mul(elem_size)
        .filter(|n| *n <= isize::MAX as usize)
        .ok_or_else(|| {
            Error::invalid(format!(
                "{what}: {count} elements of {elem_size} bytes are too large"
            ))
        })
}

/// A slice of `count` `T`s from C. `count == 0` → empty (any pointer); NULL with `count > 0`,
/// a misaligned pointer or a byte length above `isize::MAX` → WTD_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// A non-NULL `p` must point to `count` initialized `T`s that stay valid for `'a`.
pub(crate) unsafe fn arg_slice<'a, T>(p: *const T, count: usize, what: &str) -> Result<&'a [T]> {
    if count == 0 {
        return Ok(&[]);
    }
    checked_len(count, std::mem::size_of::<T>(), what)?;
    if p.is_null() {
        return Err(Error::invalid(format!(
            "{what} is NULL but count is {count}"
        )));
    }
    check_aligned(p, what)?;
    // SAFETY: non-NULL, aligned, length checked; validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, count) })
}

/// [`arg_slice`] for a mutable array the library fills.
///
/// # Safety
/// A non-NULL `p` must point to `count` initialized `T`s, writable and not aliased, for `'a`.
pub(crate) unsafe fn arg_slice_mut<'a, T>(
    p: *mut T,
    count: usize,
    what: &str,
) -> Result<&'a mut [T]> {
    if count == 0 {
        return Ok(&mut []);
    }
    checked_len(count, std::mem::size_of::<T>(), what)?;
    if p.is_null() {
        return Err(Error::invalid(format!(
            "{what} is NULL but count is {count}"
        )));
    }
    check_aligned(p, what)?;
    // SAFETY: non-NULL, aligned, length checked; validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, count) })
}

/// A caller-owned receive buffer: `buf[0..cap]`, where NULL is allowed only with `cap == 0`.
///
/// # Safety
/// A non-NULL `buf` must be writable for `cap` bytes and not aliased during the call.
pub(crate) unsafe fn arg_buffer<'a>(buf: *mut u8, cap: usize, what: &str) -> Result<&'a mut [u8]> {
    if buf.is_null() {
        if cap > 0 {
            return Err(Error::invalid(format!(
                "{what} is NULL but its capacity is {cap}"
            )));
        }
        return Ok(&mut []);
    }
    if cap > isize::MAX as usize {
        return Err(Error::invalid(format!(
            "{what}: capacity {cap} is too large"
        )));
    }
    // SAFETY: non-NULL, length checked; validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf, cap) })
}

/// Checks a growable output struct before any work is done (see [`write_sized`]).
///
/// # Safety
/// A non-NULL `out` must be readable for 4 bytes.
pub(crate) unsafe fn check_sized<T>(out: *mut T, min: usize, what: &str) -> Result<()> {
    if out.is_null() {
        return Err(null_err(what));
    }
    check_aligned(out as *const u32, what)?;
    // SAFETY: non-NULL and aligned; the caller's contract makes the first 4 bytes readable.
    let size = unsafe { std::ptr::read(out as *const u32) } as usize;
    if size < min {
        return Err(Error::invalid(format!(
            "{what}->struct_size is {size}, expected at least {min}: set it to sizeof the struct \
             before the call"
        )));
    }
    Ok(())
}

/// Writes a growable output struct (`T` is `#[repr(C)]` and starts with `struct_size: u32`):
/// the caller has set `out->struct_size` to the size it allocated; the library writes
/// `min(that, sizeof T)` bytes of `v` and sets `out->struct_size` to the number written. A
/// `struct_size` below `min` (the struct's first published size; 0 = forgotten) →
/// WTD_ERR_INVALID_ARGUMENT and nothing is written.
///
/// # Safety
/// A non-NULL `out` must be writable for the `struct_size` bytes its first field states.
pub(crate) unsafe fn write_sized<T: Copy>(out: *mut T, v: T, min: usize, what: &str) -> Result<()> {
    // SAFETY: the caller's contract.
    unsafe { check_sized(out, min, what)? };
    // SAFETY: checked just above.
    let size = unsafe { std::ptr::read(out as *const u32) } as usize;
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: `n` ≤ both the caller's stated size and `size_of::<T>()`.
    unsafe {
        std::ptr::copy_nonoverlapping(&v as *const T as *const u8, out as *mut u8, n);
        std::ptr::write(out as *mut u32, n as u32);
    }
    Ok(())
}

/// Checks a caller-allocated array for [`write_elements`] before any work is done: `elem_size`
/// at least `min` (when `count > 0`), `count × elem_size` within `isize::MAX`, `base` non-NULL
/// when `count > 0` and aligned for `T`.
pub(crate) fn check_elements<T>(
    base: *mut T,
    elem_size: usize,
    count: usize,
    min: usize,
    what: &str,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    if elem_size < min {
        return Err(Error::invalid(format!(
            "{what}: element size {elem_size} is below {min}: pass sizeof the element struct"
        )));
    }
    checked_len(count, elem_size, what)?;
    if base.is_null() {
        return Err(Error::invalid(format!(
            "{what} is NULL but count is {count}"
        )));
    }
    check_aligned(base, what)?;
    if elem_size % std::mem::align_of::<T>() != 0 {
        return Err(Error::invalid(format!(
            "{what}: element size {elem_size} is not a multiple of the element alignment"
        )));
    }
    Ok(())
}

/// Writes `items` into a caller-allocated array of elements `elem_size` bytes apart (the
/// caller's `sizeof` of the element struct, which may be older and smaller, or newer and larger,
/// than `T`): each element gets `min(elem_size, sizeof T)` bytes. `elem_size` below `min` (the
/// struct's first published size), or `count × elem_size` overflowing → WTD_ERR_INVALID_ARGUMENT.
/// Returns how many were written (at most `count`).
///
/// # Safety
/// A non-NULL `base` must be writable for `count × elem_size` bytes.
pub(crate) unsafe fn write_elements<T: Copy>(
    base: *mut T,
    elem_size: usize,
    count: usize,
    min: usize,
    items: impl IntoIterator<Item = T>,
    what: &str,
) -> Result<usize> {
    check_elements(base, elem_size, count, min, what)?;
    let n = elem_size.min(std::mem::size_of::<T>());
    let mut written = 0;
    for item in items.into_iter().take(count) {
        // SAFETY: element `written` < count lies inside the caller's `count × elem_size` bytes.
        unsafe {
            let dst = (base as *mut u8).add(written * elem_size);
            std::ptr::copy_nonoverlapping(&item as *const T as *const u8, dst, n);
        }
        written += 1;
    }
    Ok(written)
}

/// Converts a C timeout in milliseconds for a wait: negative = forever (`None`), 0 = don't wait,
/// else that many milliseconds.
pub(crate) fn wait_of(ms: i32) -> Option<std::time::Duration> {
    u64::try_from(ms).ok().map(std::time::Duration::from_millis)
}

/// Converts an optional duration in milliseconds (TTL, max age, flush): 0 = none.
pub(crate) fn opt_ms(ms: u32) -> Option<std::time::Duration> {
    (ms > 0).then(|| std::time::Duration::from_millis(ms.into()))
}

/// The inverse of [`opt_ms`]: `None` → 0; a set duration is at least 1 ms (so it never reads as
/// "none") and saturates at `u32::MAX`.
pub(crate) fn ms_of_opt(d: Option<std::time::Duration>) -> u32 {
    d.map_or(0, |d| {
        u32::try_from(d.as_millis().max(1)).unwrap_or(u32::MAX)
    })
}

/// A duration in whole milliseconds, saturating at `u32::MAX`.
pub(crate) fn ms_of(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Moves `v` to the heap and returns it as an opaque handle for C. Free with [`free_handle`].
#[allow(dead_code)]
pub(crate) fn into_handle<T>(v: T) -> *mut T {
    Box::into_raw(Box::new(v))
}

/// Drops a handle made by [`into_handle`]. NULL is a no-op.
///
/// # Safety
/// `p` must be NULL or come from `into_handle::<T>` and not have been freed.
#[allow(dead_code)]
pub(crate) unsafe fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        drop(Box::from_raw(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr::{null, null_mut};

    #[test]
    fn guard_maps_ok_err_and_panic() {
        assert_eq!(guard(|| Ok(())), wtd_result::WTD_OK);
        assert_eq!(last_error_string(), "");
        assert_eq!(
            guard(|| Err(Error::closed("session 4 is closed"))),
            wtd_result::WTD_ERR_CLOSED
        );
        assert_eq!(last_error_string(), "session 4 is closed");
        // A successful call clears it.
        assert_eq!(guard(|| Ok(())), wtd_result::WTD_OK);
        assert_eq!(last_error_string(), "");
        let r = guard(|| panic!("kaboom {}", 7));
        assert_eq!(r, wtd_result::WTD_ERR_PANIC);
        assert_eq!(last_error_string(), "panic: kaboom 7");
        let r = guard(|| std::panic::panic_any(5u32));
        assert_eq!(r, wtd_result::WTD_ERR_PANIC);
        assert_eq!(last_error_string(), "panic: unknown panic payload");
        guard_void(|| panic!("in free"));
        assert_eq!(last_error_string(), "panic: in free");
        assert_eq!(guard_value(-1, || Ok(5)), 5);
        assert_eq!(guard_value(-1, || Err(Error::invalid("x"))), -1);
        assert_eq!(last_error_string(), "x");
        assert_eq!(guard_value(-1, || panic!("p")), -1);
        assert_eq!(last_error_string(), "panic: p");
        // The C pointer view.
        let s = unsafe { CStr::from_ptr(last_error_ptr()) };
        assert_eq!(s.to_str().unwrap(), "panic: p");
    }

    #[test]
    fn last_error_is_per_thread() {
        guard(|| Err(Error::invalid("main thread error")));
        std::thread::spawn(|| {
            assert_eq!(last_error_string(), "");
            guard(|| Err(Error::timeout("other thread error")));
            assert_eq!(last_error_string(), "other thread error");
        })
        .join()
        .unwrap();
        assert_eq!(last_error_string(), "main thread error");
        set_last_error("a\0b");
        assert_eq!(last_error_string(), "a\u{FFFD}b");
    }

    #[test]
    fn copy_str_out_sizes() {
        unsafe {
            let mut len = 99usize;
            // Size query.
            let e = copy_str_out("hello", null_mut(), 0, &mut len).unwrap_err();
            assert_eq!(e.code, wtd_result::WTD_ERR_BUFFER_TOO_SMALL);
            assert_eq!(len, 5);
            // Exactly len bytes is one too few (NUL).
            let mut buf = [0x7f as c_char; 8];
            len = 0;
            let e = copy_str_out("hello", buf.as_mut_ptr(), 5, &mut len).unwrap_err();
            assert_eq!(e.code, wtd_result::WTD_ERR_BUFFER_TOO_SMALL);
            assert_eq!(len, 5);
            assert_eq!(buf[0], 0x7f, "nothing written on failure");
            copy_str_out("hello", buf.as_mut_ptr(), 6, &mut len).unwrap();
            assert_eq!(len, 5);
            assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str().unwrap(), "hello");
            assert_eq!(buf[6], 0x7f);
            // out_len optional.
            copy_str_out("", buf.as_mut_ptr(), 1, null_mut()).unwrap();
            assert_eq!(buf[0], 0);
            let e = copy_str_out("x", null_mut(), 4, null_mut()).unwrap_err();
            assert_eq!(e.code, wtd_result::WTD_ERR_INVALID_ARGUMENT);
            // Bytes.
            let mut b = [0u8; 4];
            let e = copy_bytes_out(b"abcde", b.as_mut_ptr(), 4, &mut len).unwrap_err();
            assert_eq!(e.code, wtd_result::WTD_ERR_BUFFER_TOO_SMALL);
            assert_eq!(len, 5);
            copy_bytes_out(b"abcd", b.as_mut_ptr(), 4, &mut len).unwrap();
            assert_eq!((&b, len), (b"abcd", 4));
            copy_bytes_out(b"", null_mut(), 0, &mut len).unwrap();
            assert_eq!(len, 0);
        }
    }

    #[test]
    fn arg_helpers_reject_null() {
        unsafe {
            let e = arg_ref::<u32>(null(), "session").unwrap_err();
            assert_eq!(e.code, wtd_result::WTD_ERR_INVALID_ARGUMENT);
            assert_eq!(e.message, "session is NULL");
            assert!(arg_mut::<u32>(null_mut(), "t").is_err());
            let x = 5u32;
            assert_eq!(*arg_ref(&x, "x").unwrap(), 5);
            let misaligned = (&[0u64; 2] as *const u64 as *const u8).add(1) as *const u64;
            assert!(arg_ref(misaligned, "m")
                .unwrap_err()
                .message
                .contains("misaligned"));
            assert_eq!(arg_bytes(null(), 0, "data").unwrap(), &[] as &[u8]);
            assert!(arg_bytes(null(), 3, "data").is_err());
            assert_eq!(arg_bytes(b"abc".as_ptr(), 2, "data").unwrap(), b"ab");
            assert!(arg_str(null(), "url").is_err());
            assert_eq!(
                arg_str(c"https://x/".as_ptr(), "url").unwrap(),
                "https://x/"
            );
            let bad = [0xffu8 as c_char, 0];
            assert!(arg_str(bad.as_ptr(), "url")
                .unwrap_err()
                .message
                .contains("UTF-8"));
            assert_eq!(arg_opt_str(null(), "o").unwrap(), None);
            assert_eq!(arg_opt_str(c"a".as_ptr(), "o").unwrap(), Some("a"));
            assert!(write_out::<u32>(null_mut(), 1, "out").is_err());
            let mut o = 0u32;
            write_out(&mut o, 9, "out").unwrap();
            assert_eq!(o, 9);
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    struct OptsV2 {
        struct_size: u32,
        a: u32,
        b: u64,
        c: i32, // appended in "v2"
        _reserved: u32,
    }
    #[repr(C)]
    struct OptsV1 {
        struct_size: u32,
        a: u32,
        b: u64,
    }

    #[test]
    fn versioned_options() {
        let def = OptsV2 {
            struct_size: 24,
            a: 1,
            b: 2,
            c: 3,
            _reserved: 0,
        };
        let old = OptsV1 {
            struct_size: std::mem::size_of::<OptsV1>() as u32,
            a: 10,
            b: 20,
        };
        let got = unsafe {
            read_options(&old as *const OptsV1 as *const OptsV2, def, 16, "opts").unwrap()
        };
        assert_eq!(
            got,
            OptsV2 {
                struct_size: 24,
                a: 10,
                b: 20,
                c: 3,
                _reserved: 0
            }
        );
        let newer = OptsV2 {
            struct_size: 24,
            a: 7,
            b: 8,
            c: 9,
            _reserved: 0,
        };
        assert_eq!(
            unsafe { read_options(&newer, def, 16, "opts").unwrap() }.c,
            9
        );
        let zero = OptsV2 {
            struct_size: 0,
            ..newer
        };
        let e = unsafe { read_options(&zero, def, 16, "opts") }.unwrap_err();
        assert!(e.message.contains("opts.struct_size is 0"), "{}", e.message);
        assert!(unsafe { read_options::<OptsV2>(null(), def, 16, "opts") }.is_err());
        assert_eq!(
            unsafe { read_options_or_default::<OptsV2>(null(), def, 16, "o") }.unwrap(),
            def
        );
        assert!(check_options_size(8, 16, "o").is_err());
    }

    #[test]
    fn handles() {
        let h = into_handle(String::from("x"));
        unsafe {
            assert_eq!(arg_ref(h, "h").unwrap(), "x");
            free_handle(h);
            free_handle::<String>(null_mut());
        }
    }
}

/// A `void *user_data` that callbacks may carry to other threads (the caller promised it may).
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub(crate) *mut std::ffi::c_void);
// SAFETY: the pointer is only handed back to the caller's own callbacks, as documented.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

impl UserData {
    /// The raw pointer (a method, so closures capture the whole Send+Sync wrapper).
    pub(crate) fn get(&self) -> *mut std::ffi::c_void {
        self.0
    }
}

/// A weak reference to an `Arc`-backed handle, for callbacks that must never see it freed.
///
/// # Safety
/// `p` must come from `Arc::into_raw` and still be alive.
pub(crate) unsafe fn weak_handle<T>(p: *const T) -> std::sync::Weak<T> {
    std::sync::Arc::increment_strong_count(p);
    let strong = std::sync::Arc::from_raw(p);
    std::sync::Arc::downgrade(&strong)
}
