//! The C ABI: every `extern "C"` export lives under this module (a thin layer: argument checks,
//! conversions and error mapping; the logic lives in `datagram/`, `session` and `endpoint/`).
//!
//! Conventions, implemented by the helpers here and used by every export:
//!
//! * Every export is `#[no_mangle] pub extern "C"` and runs its body inside [`guard`] (or
//!   [`guard_void`] / [`guard_value`]), so no panic crosses the boundary (→ `WTD_ERR_PANIC`) and an
//!   `Err` becomes its `wtd_result` with the message stored for `wtd_last_error_message()`.
//! * Pointer arguments are checked with [`arg_ref`], [`arg_bytes`], [`arg_slice`], [`arg_buffer`],
//!   [`arg_str`], [`arg_opt_str`]; lengths with [`checked_len`]; outputs are written with
//!   [`write_out`], [`copy_str_out`], [`copy_bytes_out`], [`write_sized`] (growable structs) and
//!   [`write_elements`] (arrays with an element size) only after everything else succeeded.
//! * Opaque handles are typed ([`handle`]): Box-backed or Arc-backed, each with its own
//!   constructor and free, so the wrong free does not compile.
//! * Versioned input structs start with `uint32_t struct_size`: read them with
//!   [`read_options`] / [`read_options_or_default`].

// Every export is a safe `extern "C" fn` (as in rustls-ffi): the raw pointers it takes are
// checked by the helpers below, and the contract the C caller keeps (what may be NULL, what must
// stay valid) is in each export's `///` text, which cbindgen copies into wtd.h. `unsafe` stays in
// small blocks inside the helpers and at the few direct calls of C function pointers.
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{wtd_result, Error, Result};

// The header follows this order (cbindgen, `sort_by = "None"`), so it reads by object:
// results/log → server → client → session → transport → layers. Blank lines keep rustfmt from
// sorting the declarations.
pub(crate) mod handle;

pub mod result;

pub mod log;

pub mod server;

pub mod client;

pub mod session;

pub mod transport;

pub mod layers;

thread_local! {
    /// Message of the last failed wtd call on this thread, NUL-terminated; empty = no error. The
    /// buffer is kept between calls, so recording an error allocates only when its message is
    /// longer than any before on this thread (a game loop polling empty queues gets a
    /// WOULD_BLOCK message per call).
    static LAST_ERROR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Records `msg` as this thread's last error message (a NUL inside becomes U+FFFD).
pub(crate) fn set_last_error(msg: &str) {
    LAST_ERROR.with(|e| {
        let Ok(mut b) = e.try_borrow_mut() else {
            return;
        };
        b.clear();
        if msg.contains('\0') {
            b.extend_from_slice(msg.replace('\0', "\u{FFFD}").as_bytes());
        } else {
            b.extend_from_slice(msg.as_bytes());
        }
        b.push(0);
    });
}

/// Clears this thread's last error (done at the start of every guarded call).
pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| {
        if let Ok(mut b) = e.try_borrow_mut() {
            b.clear();
        }
    });
}

/// Pointer to this thread's last error message (static "" when none). Valid until the next guarded
/// wtd call on this thread.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| {
        let b = e.borrow();
        if b.is_empty() {
            c"".as_ptr()
        } else {
            b.as_ptr().cast()
        }
    })
}

/// This thread's last error message as an owned string ("" when none). For tests and Rust callers.
#[cfg(test)]
pub(crate) fn last_error_string() -> String {
    LAST_ERROR.with(|e| {
        let b = e.borrow();
        String::from_utf8_lossy(b.strip_suffix(&[0]).unwrap_or(&b)).into_owned()
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

#[inline]
fn check_aligned<T>(p: *const T, what: &str) -> Result<()> {
    if (p as usize) % std::mem::align_of::<T>() != 0 {
        return Err(Error::invalid(format!("{what} is misaligned")));
    }
    Ok(())
}

// The helpers below take raw pointers from C and are safe functions, like rustls-ffi's
// `try_ref_from_ptr!`: the contract they rely on (a non-NULL pointer is valid for what it
// claims) is the C caller's, stated on every export in the header. Each keeps its `unsafe` to
// one small block after the checks that Rust can make (NULL, alignment, length limits).

/// A byte slice from pointer + length. `len == 0` → empty slice (any pointer); NULL with
/// `len > 0` or `len > isize::MAX` → `WTD_ERR_INVALID_ARGUMENT`. Contract: a non-NULL `p`
/// points to `len` readable bytes that stay valid and unmodified for `'a`.
#[inline]
pub(crate) fn arg_bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    arg_slice(p, len, what)
}

/// A `&str` from a NUL-terminated C string; NULL or invalid UTF-8 → `WTD_ERR_INVALID_ARGUMENT`.
/// Contract: a non-NULL `p` points to a NUL-terminated string valid for `'a`.
pub(crate) fn arg_str<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(null_err(what));
    }
    // SAFETY: non-NULL; NUL termination and lifetime are the C caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|e| Error::invalid(format!("{what} is not valid UTF-8: {e}")))
}

/// Like [`arg_str`] but NULL → `None`.
pub(crate) fn arg_opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    arg_str(p, what).map(Some)
}

/// Writes an output value; NULL or misaligned → `WTD_ERR_INVALID_ARGUMENT`. The old value is not
/// dropped. Contract: a non-NULL `p` is valid for writing a `T`.
pub(crate) fn write_out<T>(p: *mut T, v: T, what: &str) -> Result<()> {
    if p.is_null() {
        return Err(null_err(what));
    }
    check_aligned(p, what)?;
    // SAFETY: non-NULL and aligned; writability is the C caller's contract.
    unsafe { p.write(v) };
    Ok(())
}

/// Writes an optional output (NULL → nothing).
pub(crate) fn write_opt<T>(p: *mut T, v: T, what: &str) -> Result<()> {
    if p.is_null() {
        return Ok(());
    }
    write_out(p, v, what)
}

/// Copies `s` plus a terminating NUL into `buf` (capacity `cap` bytes, NUL included) and writes
/// `s.len()` (without the NUL) to `out_len` when it is not NULL.
///
/// If `cap < s.len() + 1`, nothing is written to `buf`, the required length (without the NUL) is
/// written to `out_len` (when not NULL) and `WTD_ERR_BUFFER_TOO_SMALL` is returned — so
/// `(buf = NULL, cap = 0)` is a size query. `buf == NULL` with `cap > 0` → invalid argument.
/// Contract: a non-NULL `buf` is writable for `cap` bytes; a non-NULL `out_len` writable.
pub(crate) fn copy_str_out(
    s: &str,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> Result<()> {
    let need = s.len();
    if cap < need + 1 {
        arg_buffer(buf as *mut u8, cap, "buf")?;
        write_opt(out_len, need, "out_len")?;
        return Err(Error::new(
            wtd_result::WTD_ERR_BUFFER_TOO_SMALL,
            format!("buffer too small: {need} bytes plus a NUL needed, capacity {cap}"),
        ));
    }
    let dst = arg_buffer(buf as *mut u8, cap, "buf")?;
    write_opt(out_len, need, "out_len")?;
    dst[..need].copy_from_slice(s.as_bytes());
    dst[need] = 0;
    Ok(())
}

/// Copies `data` into `buf` (capacity `cap`) and writes `data.len()` to `out_len` when not NULL.
/// If `cap < data.len()`: the required length goes to `out_len`, `WTD_ERR_BUFFER_TOO_SMALL`.
/// `buf == NULL` is allowed only with `cap == 0`. Contract: as [`copy_str_out`].
pub(crate) fn copy_bytes_out(
    data: &[u8],
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> Result<()> {
    let dst = arg_buffer(buf, cap, "buf")?;
    let need = data.len();
    write_opt(out_len, need, "out_len")?;
    if cap < need {
        return Err(Error::new(
            wtd_result::WTD_ERR_BUFFER_TOO_SMALL,
            format!("buffer too small: {need} bytes needed, capacity {cap}"),
        ));
    }
    dst[..need].copy_from_slice(data);
    Ok(())
}

/// Validates the `struct_size` of a versioned input struct: below `min` (the size of the first
/// published version; 0 = uninitialized) → `WTD_ERR_INVALID_ARGUMENT` telling the caller to set
/// it.
pub(crate) fn check_options_size(struct_size: u32, min: usize, what: &str) -> Result<()> {
    if (struct_size as usize) < min || struct_size == 0 {
        return Err(Error::invalid(format!(
            "{what}.struct_size is {struct_size}, expected at least {min}: set it to sizeof the \
             struct (the wtd_*_options_default functions fill options structs)"
        )));
    }
    Ok(())
}

/// Reads a versioned input struct from C. `T` must be `#[repr(C)]` and start with
/// `struct_size: u32`. The first `min(struct_size, size_of::<T>())` bytes come from the caller,
/// the rest from `default` (so a caller built against an older, smaller header gets defaults for
/// the fields appended since). The returned value's `struct_size` is set to `size_of::<T>()`.
/// `min` is the size of the first published version of `T` (see [`check_options_size`]).
///
/// Rules for `T` (so that a partial copy is always a valid value): fields are integers, floats,
/// raw pointers or `Option<extern fn>` (no `bool`, no Rust enums — use `u32` and validate);
/// new fields are only appended, and never into the previous version's tail padding (add explicit
/// `_reserved` bytes to fill it when appending a field smaller than the padding).
/// Contract: a non-NULL `p` points to at least `struct_size` readable bytes.
pub(crate) fn read_options<T: Copy>(p: *const T, default: T, min: usize, what: &str) -> Result<T> {
    if p.is_null() {
        return Err(null_err(what));
    }
    check_aligned(p as *const u32, what)?;
    // SAFETY: non-NULL, aligned; the first field is readable by the C caller's contract.
    let struct_size = unsafe { std::ptr::read(p as *const u32) };
    check_options_size(struct_size, min, what)?;
    let n = (struct_size as usize).min(std::mem::size_of::<T>());
    let mut out = default;
    // SAFETY: `n` bytes are readable (contract) and fit in `out`; `T` is plain data (rules above).
    unsafe { std::ptr::copy_nonoverlapping(p as *const u8, &mut out as *mut T as *mut u8, n) };
    let full = u32::try_from(std::mem::size_of::<T>()).unwrap_or(u32::MAX);
    // SAFETY: `T` starts with `struct_size: u32` (rules above).
    unsafe { std::ptr::write(&mut out as *mut T as *mut u32, full) };
    Ok(out)
}

/// [`read_options`], but a NULL pointer means "all defaults".
pub(crate) fn read_options_or_default<T: Copy>(
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
#[inline]
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
/// Contract: a non-NULL `p` points to `count` initialized `T`s that stay valid for `'a`.
#[inline]
pub(crate) fn arg_slice<'a, T>(p: *const T, count: usize, what: &str) -> Result<&'a [T]> {
    if count == 0 {
        return Ok(&[]);
    }
    checked_len(count, std::mem::size_of::<T>(), what)?;
    if p.is_null() {
        return Err(Error::invalid(format!(
            "{what} is NULL but its length is {count}"
        )));
    }
    check_aligned(p, what)?;
    // SAFETY: non-NULL, aligned, length checked; validity is the C caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, count) })
}

/// [`arg_slice`] for a mutable array the library fills. Contract: a non-NULL `p` points to
/// `count` initialized `T`s, writable and not aliased, for `'a`.
#[inline]
pub(crate) fn arg_slice_mut<'a, T>(p: *mut T, count: usize, what: &str) -> Result<&'a mut [T]> {
    if count == 0 {
        return Ok(&mut []);
    }
    checked_len(count, std::mem::size_of::<T>(), what)?;
    if p.is_null() {
        return Err(Error::invalid(format!(
            "{what} is NULL but its length is {count}"
        )));
    }
    check_aligned(p, what)?;
    // SAFETY: non-NULL, aligned, length checked; validity is the C caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, count) })
}

/// A caller-owned output buffer `buf[0..cap]`, where NULL is allowed only with `cap == 0`.
/// Contract: a non-NULL `buf` is writable for `cap` bytes and not aliased during the call.
#[inline]
pub(crate) fn arg_buffer<'a>(buf: *mut u8, cap: usize, what: &str) -> Result<&'a mut [u8]> {
    if buf.is_null() && cap > 0 {
        return Err(Error::invalid(format!(
            "{what} is NULL but its capacity is {cap}"
        )));
    }
    arg_slice_mut(buf, cap, what)
}

/// Checks a growable output struct before any work is done (see [`write_sized`]).
/// Contract: a non-NULL `out` is readable for 4 bytes.
pub(crate) fn check_sized<T>(out: *mut T, min: usize, what: &str) -> Result<usize> {
    if out.is_null() {
        return Err(null_err(what));
    }
    check_aligned(out as *const u32, what)?;
    // SAFETY: non-NULL and aligned; the first 4 bytes are readable by the C caller's contract.
    let size = unsafe { std::ptr::read(out as *const u32) } as usize;
    if size < min {
        return Err(Error::invalid(format!(
            "{what}->struct_size is {size}, expected at least {min}: set it to sizeof the struct \
             before the call"
        )));
    }
    Ok(size)
}

/// Writes a growable output struct (`T` is `#[repr(C)]` and starts with `struct_size: u32`):
/// the caller has set `out->struct_size` to the size it allocated; the library writes
/// `min(that, sizeof T)` bytes of `v` and sets `out->struct_size` to the number written. A
/// `struct_size` below `min` (the struct's first published size; 0 = forgotten) →
/// WTD_ERR_INVALID_ARGUMENT and nothing is written.
/// Contract: a non-NULL `out` is writable for the `struct_size` bytes its first field states.
pub(crate) fn write_sized<T: Copy>(out: *mut T, v: T, min: usize, what: &str) -> Result<()> {
    let size = check_sized(out, min, what)?;
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: `n` ≤ both the caller's stated size and `size_of::<T>()`; `out` is aligned.
    unsafe {
        std::ptr::copy_nonoverlapping(&v as *const T as *const u8, out as *mut u8, n);
        std::ptr::write(out as *mut u32, n as u32);
    }
    Ok(())
}

/// Checks a caller-allocated array for [`write_elements`] before any work is done: `elem_size`
/// at least `min` (when `count > 0`), `count × elem_size` within `isize::MAX`, `base` non-NULL
/// when `count > 0`, aligned for `T`, and `elem_size` a multiple of `T`'s alignment.
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
/// than `T`): each element gets `min(elem_size, sizeof T)` bytes. Refused as
/// [`check_elements`] says. Returns how many were written (at most `count`).
/// Contract: a non-NULL `base` is writable for `count × elem_size` bytes.
pub(crate) fn write_elements<T: Copy>(
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
        // SAFETY: element `written` < count lies inside the caller's `count × elem_size` bytes
        // (checked not to overflow); `n` ≤ both sizes.
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
        // The buffer is reused: a shorter message after a longer one ends at its own NUL, and
        // a successful call reads as "".
        set_last_error("a much longer message than the next one");
        set_last_error("short");
        let c = unsafe { CStr::from_ptr(last_error_ptr()) };
        assert_eq!(c.to_str().unwrap(), "short");
        guard(|| Ok(()));
        let c = unsafe { CStr::from_ptr(last_error_ptr()) };
        assert_eq!(c.to_str().unwrap(), "");
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
        {
            let e = arg_slice::<u32>(null(), 1, "session").unwrap_err();
            assert_eq!(e.code, wtd_result::WTD_ERR_INVALID_ARGUMENT);
            assert_eq!(e.message, "session is NULL but its length is 1");
            let x = [5u32];
            assert_eq!(arg_slice(x.as_ptr(), 1, "x").unwrap(), &[5]);
            let misaligned = (&[0u64; 2] as *const u64 as *const u8).wrapping_add(1) as *const u64;
            assert!(arg_slice(misaligned, 1, "m")
                .unwrap_err()
                .message
                .contains("misaligned"));
            // Issue 9 item 13: length × count overflow and > isize::MAX are refused.
            assert!(
                arg_slice::<[u8; 32]>(x.as_ptr() as *const [u8; 32], usize::MAX / 16, "h")
                    .unwrap_err()
                    .message
                    .contains("too large")
            );
            assert!(arg_bytes(x.as_ptr() as *const u8, isize::MAX as usize + 1, "d").is_err());
            assert!(checked_len(usize::MAX / 2, 3, "c").is_err());
            assert_eq!(checked_len(4, 8, "c").unwrap(), 32);
            assert!(arg_buffer(null_mut(), 3, "buf").is_err());
            assert!(arg_buffer(null_mut(), 0, "buf").unwrap().is_empty());
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
        let got =
            { read_options(&old as *const OptsV1 as *const OptsV2, def, 16, "opts").unwrap() };
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
        assert_eq!(read_options(&newer, def, 16, "opts").unwrap().c, 9);
        let zero = OptsV2 {
            struct_size: 0,
            ..newer
        };
        let e = read_options(&zero, def, 16, "opts").unwrap_err();
        assert!(e.message.contains("opts.struct_size is 0"), "{}", e.message);
        assert!(read_options::<OptsV2>(null(), def, 16, "opts").is_err());
        assert_eq!(
            read_options_or_default::<OptsV2>(null(), def, 16, "o").unwrap(),
            def
        );
        assert!(check_options_size(8, 16, "o").is_err());
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
