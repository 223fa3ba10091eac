//! C exports for sessions: datagram send/receive (blocking, poll and batch), callbacks, close,
//! metadata and counters.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;
use std::time::Duration;

use super::handle::{arc_ref, borrow, new_arc, take_arc, ArcOwned, CallbackTarget, Handle};
use super::{
    arg_buffer, arg_bytes, arg_opt_str, arg_slice_mut, copy_str_out, guard,
    read_options_or_default, wait_of, write_out, write_sized,
};
use crate::datagram::batch;
use crate::error::{wtd_result, Error, Result};
use crate::h3::wtd_draft;
use crate::session::{Session, SessionCallbacks};

/// A WebTransport session (opaque). Obtained from `wtd_server_accept`, the server's
/// `on_session` callback or `wtd_client_connect`; release with `wtd_session_free`.
pub struct wtd_session {
    pub(crate) inner: Session,
    /// Client sessions: the options they were opened with (sibling sessions inherit them).
    pub(crate) client_config: Option<crate::endpoint::client::ClientConfig>,
}

/// Wraps a session in a new C handle (one strong reference owned by the caller).
pub(crate) fn new_handle(session: Session) -> *mut wtd_session {
    new_client_handle(session, None)
}

/// [`new_handle`] for a client session, remembering its options.
pub(crate) fn new_client_handle(
    session: Session,
    client_config: Option<crate::endpoint::client::ClientConfig>,
) -> *mut wtd_session {
    new_arc(wtd_session {
        inner: session,
        client_config,
    })
}

impl Handle for wtd_session {
    type Ownership = ArcOwned;
    const NAME: &'static str = "session";
}

/// Borrows the session behind a handle; NULL → invalid argument.
pub(crate) fn session<'a>(p: *const wtd_session) -> Result<&'a Session> {
    Ok(&borrow(p)?.inner)
}

/// A strong reference to the handle for the length of a call that may block, so that
/// `wtd_session_free` from another thread while the call waits does not free it under the
/// call (the call then wakes with WTD_ERR_CLOSED and the handle goes when it returns).
pub(crate) fn session_ref(p: *const wtd_session) -> Result<Arc<wtd_session>> {
    arc_ref(p)
}

/// One caller-owned buffer of a batch receive (`wtd_session_receive_batch`,
/// `wtd_transport_receive_batch`). Frozen layout: it will never grow (a new field would need a
/// new function), so arrays of it need no element size.
#[repr(C)]
pub struct wtd_datagram_buffer {
    /// Where the payload is written (caller-owned, `capacity` bytes).
    pub data: *mut u8,
    /// Size of `data`.
    pub capacity: usize,
    /// Output: payload length written.
    pub len: usize,
}

/// Session counters, as returned by `wtd_session_get_stats`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_session_stats {
    /// Size of this struct as the library filled it (append-only; check before reading new fields).
    pub struct_size: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Datagrams accepted for sending (handed to QUIC, or queued in the connection's outbox on
    /// their way to it; see `send_dropped_unsent`).
    pub datagrams_sent: u64,
    /// Payload bytes of those.
    pub bytes_sent: u64,
    /// Datagrams that arrived for this session.
    pub datagrams_received: u64,
    /// Payload bytes that arrived for this session.
    pub bytes_received: u64,
    /// Datagrams the application took (receive calls or the datagram callback).
    pub datagrams_read: u64,
    /// Arrived datagrams evicted because the receive queue was full (oldest first).
    pub dropped_queue_full: u64,
    /// Datagrams waiting in the receive queue now.
    pub queued: u64,
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: u64,
    /// Current payload capacity of one datagram.
    pub max_datagram_size: u64,
    /// Connection-wide (shared by every session on the QUIC connection): packets QUIC declared
    /// lost. Datagrams are never retransmitted, so losses below wtd (network, kernel socket
    /// buffers) show here rather than in wtd's own drop counters.
    pub connection_lost_packets: u64,
    /// Connection-wide: DATAGRAM frames QUIC received (all sessions); compare with the sum of
    /// `datagrams_received` to see datagrams quinn dropped before wtd read them.
    pub connection_datagram_frames_received: u64,
    /// Connection-wide: datagrams that named no open session (late ones of closed sessions, or
    /// a misbehaving peer) — dropped and counted here.
    pub connection_datagrams_unknown_session: u64,
    /// Datagrams `wtd_session_send` accepted that never reached QUIC: the connection closed
    /// while they waited in the connection's outbox, or the path's datagram limit shrank below
    /// their size. (Struct size ≥ 112.)
    pub send_dropped_unsent: u64,
    /// Connection-wide: wake-ups of the receive driver that took datagrams from QUIC, and the
    /// datagrams they took (`connection_receive_drained / connection_receive_drains` = mean
    /// batch). `connection_datagram_frames_received - connection_receive_drained` = datagrams
    /// QUIC received that wtd has not taken (still buffered, or dropped by QUIC's full buffer:
    /// `connection_receive_overflow`).
    pub connection_receive_drains: u64,
    /// Connection-wide: datagrams taken from QUIC by those drains.
    pub connection_receive_drained: u64,
    /// Connection-wide: wake-ups of the send flush task, and the datagrams it handed to QUIC
    /// (sends made inside a callback with nothing queued go to QUIC directly, not counted here).
    pub connection_send_flushes: u64,
    /// Connection-wide: datagrams handed to QUIC by those flushes.
    pub connection_send_flushed: u64,
    /// Connection-wide: datagrams QUIC received but dropped from its full receive buffer
    /// before wtd's driver took them (the driver fell behind: a slow callback, a starved
    /// runtime thread). Exact once the connection is closed; while it runs a lower bound,
    /// brought up to date each time the driver catches up. (Struct size ≥ 152.)
    pub connection_receive_overflow: u64,
}

/// Called for each datagram of a session. `data` is valid only during the call.
pub type wtd_session_datagram_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        session: *mut wtd_session,
        data: *const u8,
        len: usize,
    ),
>;
/// Called once when a session closes. `reason` (UTF-8, NUL-terminated) is valid only during the call.
pub type wtd_session_closed_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        session: *mut wtd_session,
        code: u32,
        reason: *const c_char,
    ),
>;

/// Session callbacks (versioned: set `struct_size = sizeof(wtd_session_callbacks)`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_session_callbacks {
    /// `sizeof(wtd_session_callbacks)`.
    pub struct_size: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Datagram arrived (NULL: datagrams are queued for the receive functions).
    pub on_datagram: wtd_session_datagram_cb,
    /// Session closed (NULL: poll `wtd_session_is_closed`).
    pub on_closed: wtd_session_closed_cb,
    /// Passed to both callbacks.
    pub user_data: *mut c_void,
}

/// First published size of `wtd_session_stats` (API 0.2): every field before
/// `connection_receive_overflow`, which was appended later.
const SESSION_STATS_V1: usize =
    std::mem::offset_of!(wtd_session_stats, connection_receive_overflow);

const CALLBACKS_V1: usize = std::mem::size_of::<wtd_session_callbacks>();

/// Sends one datagram of `len` bytes now, without blocking or queueing in wtd.
///
/// Ownership: `data` is only read during the call. Thread: any, including callbacks.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL session, NULL data, `len` 0), WTD_ERR_TOO_LARGE (above
/// `wtd_session_max_datagram_size`), WTD_ERR_WOULD_BLOCK (QUIC's send buffer is full; nothing is
/// dropped silently), WTD_ERR_CLOSED (after close), WTD_ERR_NOT_SUPPORTED (the peer takes no
/// datagrams).
#[no_mangle]
pub extern "C" fn wtd_session_send(
    session: *mut wtd_session,
    data: *const u8,
    len: usize,
) -> wtd_result {
    guard(|| {
        let s = self::session(session)?;
        if len == 0 {
            return Err(Error::invalid("empty datagram (len 0)"));
        }
        s.send_datagram(arg_bytes(data, len, "data")?)
    })
}

/// Receives the oldest queued datagram into `buf` (capacity `cap`) and writes its length to
/// `*out_len`. `timeout_ms`: 0 = don't wait, negative = forever, n > 0 = at most n ms. A datagram
/// larger than `cap` stays queued (`buf` NULL with `cap` 0 is a size query).
///
/// Ownership: `buf` is only written during the call. Thread: any; waiting on a wtd callback thread
/// is refused (WTD_ERR_INVALID_STATE). A `wtd_session_free` from another thread wakes the call
/// (WTD_ERR_CLOSED) and the handle stays valid until it returns.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL session/out_len, NULL buf with cap > 0),
/// WTD_ERR_WOULD_BLOCK (empty, timeout 0), WTD_ERR_TIMEOUT, WTD_ERR_CLOSED (closed and empty; also
/// wakes a waiting call), WTD_ERR_BUFFER_TOO_SMALL (its size is written to `*out_len`).
#[no_mangle]
pub extern "C" fn wtd_session_receive(
    session: *mut wtd_session,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    timeout_ms: i32,
) -> wtd_result {
    guard(|| {
        let handle = session_ref(session)?;
        let s = &handle.inner;
        if out_len.is_null() {
            return Err(Error::invalid("out_len is NULL"));
        }
        let slice = arg_buffer(buf, cap, "buf")?;
        let mut needed = 0;
        match s.recv_datagram_into(slice, wait_of(timeout_ms), &mut needed) {
            Ok(n) => write_out(out_len, n, "out_len"),
            Err(e) => {
                if e.code == wtd_result::WTD_ERR_BUFFER_TOO_SMALL {
                    write_out(out_len, needed, "out_len")?;
                }
                Err(e)
            }
        }
    })
}

/// Batch receive (the same shape as `wtd_transport_receive_batch`): waits up to `timeout_ms` for
/// the first datagram (0 = don't wait, negative = forever), then takes what is already queued,
/// up to `count` in all, each into the next of `buffers[0..count]` (its `len` set), in order.
/// Stops early at a datagram larger than the next buffer (it stays queued). On success
/// `*out_count` = buffers filled, at least 1. The game-loop poll: `timeout_ms` 0 drains everything
/// queued in one call.
///
/// Ownership: the buffers stay the caller's; only `data[0..len]` of the filled ones is written.
/// Thread: any; waiting (`timeout_ms` ≠ 0) on a wtd callback thread is refused
/// (WTD_ERR_INVALID_STATE). Errors: WTD_ERR_WOULD_BLOCK (nothing queued, `timeout_ms` 0),
/// WTD_ERR_TIMEOUT, WTD_ERR_CLOSED (closed and nothing queued; also wakes a waiting call),
/// WTD_ERR_BUFFER_TOO_SMALL (the first datagram does not fit `buffers[0]`: its size is written
/// to `buffers[0].len` and it stays queued — the one output written on failure),
/// WTD_ERR_INVALID_ARGUMENT (NULL pointers, `count` 0, a buffer with NULL data and capacity > 0).
#[no_mangle]
pub extern "C" fn wtd_session_receive_batch(
    session: *mut wtd_session,
    buffers: *mut wtd_datagram_buffer,
    count: usize,
    out_count: *mut usize,
    timeout_ms: i32,
) -> wtd_result {
    guard(|| {
        let handle = session_ref(session)?;
        let slots = batch_slots(buffers, count, out_count)?;
        let n = batch::receive_into(&handle.inner, &mut CSlots(slots), wait_of(timeout_ms))?;
        write_out(out_count, n, "out_count")
    })
}

/// Checks the arguments of a batch receive and returns the slots (at least one).
///
/// # Safety
/// A non-NULL `buffers` must point to `count` writable `wtd_datagram_buffer`s.
pub(crate) fn batch_slots<'a>(
    buffers: *mut wtd_datagram_buffer,
    count: usize,
    out_count: *const usize,
) -> Result<&'a mut [wtd_datagram_buffer]> {
    if out_count.is_null() {
        return Err(Error::invalid("out_count is NULL"));
    }
    if count == 0 {
        return Err(Error::invalid("count must be > 0"));
    }
    let slots = arg_slice_mut(buffers, count, "buffers")?;
    if let Some(i) = slots
        .iter()
        .position(|b| b.data.is_null() && b.capacity > 0)
    {
        return Err(Error::invalid(format!(
            "buffers[{i}].data is NULL but its capacity is {}",
            slots[i].capacity
        )));
    }
    if let Some(i) = slots.iter().position(|b| b.capacity > isize::MAX as usize) {
        return Err(Error::invalid(format!(
            "buffers[{i}].capacity is too large"
        )));
    }
    Ok(slots)
}

/// Checked `wtd_datagram_buffer`s (from [`batch_slots`]) as the batch loop's slots.
pub(crate) struct CSlots<'a>(pub(crate) &'a mut [wtd_datagram_buffer]);

impl batch::Slots for CSlots<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn buf(&mut self, i: usize) -> &mut [u8] {
        let slot = &self.0[i];
        // `batch_slots` checked data/capacity up front, so this cannot fail (the inlined checks
        // cost a few instructions per datagram); validity is the C caller's contract.
        arg_buffer(slot.data, slot.capacity, "buffer").unwrap_or_default()
    }
    fn set_len(&mut self, i: usize, len: usize) {
        self.0[i].len = len;
    }
}

/// Installs the session's callbacks (`callbacks` NULL removes them; the struct is copied). They
/// run on a wtd runtime thread, never two at once for one connection; inside them any
/// non-blocking wtd call is allowed (send, close, receive with timeout 0); waiting calls return
/// WTD_ERR_INVALID_STATE. With `on_datagram` set, arriving datagrams go to it instead of the
/// receive queue; datagrams already queued stay queued for the receive calls. The `session`
/// pointer passed to callbacks is this handle; callbacks stop once it is freed.
///
/// Replacing: events not yet dispatched (queued behind a running callback) go to the new set;
/// none is replayed or dropped. Called outside a callback it returns only after an old callback
/// that is running has returned, so afterwards no old callback runs and the old `user_data` may
/// be freed. Called from inside a callback it does not wait (the change applies from the next
/// event). A transport made from the session receives regardless.
///
/// Ownership: the struct is copied; `user_data` stays the caller's and must stay valid while the
/// callbacks may run.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL session, `struct_size` below the first
/// published size).
#[no_mangle]
pub extern "C" fn wtd_session_set_callbacks(
    session: *mut wtd_session,
    callbacks: *const wtd_session_callbacks,
) -> wtd_result {
    guard(|| {
        let handle = borrow(session as *const wtd_session)?;
        if callbacks.is_null() {
            handle.inner.set_callbacks(None);
            return Ok(());
        }
        let zero = wtd_session_callbacks {
            struct_size: 0,
            reserved: 0,
            on_datagram: None,
            on_closed: None,
            user_data: std::ptr::null_mut(),
        };
        let cbs = read_options_or_default(callbacks, zero, CALLBACKS_V1, "callbacks")?;
        let target = CallbackTarget::new(session as *const wtd_session, cbs.user_data)?;
        let mut rust = SessionCallbacks::default();
        if let Some(f) = cbs.on_datagram {
            let t = target.clone();
            rust.on_datagram = Some(Box::new(move |data: bytes::Bytes| {
                t.call(|ud, h| {
                    // SAFETY: the application's callback, called as its registration documents.
                    unsafe { f(ud, h, data.as_ptr(), data.len()) };
                });
            }));
        }
        if let Some(f) = cbs.on_closed {
            let t = target.clone();
            rust.on_closed = Some(Box::new(move |info| {
                t.call(|ud, h| {
                    let reason = CString::new(info.reason.replace('\0', " ")).unwrap_or_default();
                    // SAFETY: the application's callback, called as its registration documents.
                    unsafe { f(ud, h, info.code, reason.as_ptr()) };
                });
            }));
        }
        handle.inner.set_callbacks(Some(rust));
        Ok(())
    })
}

/// Closes the session with an application `code` and UTF-8 `reason` (NULL = ""; cut to 1024
/// bytes). Never blocks; idempotent (later calls keep the first code). Blocked receivers wake with
/// WTD_ERR_CLOSED. The handle stays valid until `wtd_session_free`.
///
/// Ownership: nothing is handed over.
/// Thread: any, including callbacks. Errors: WTD_ERR_INVALID_ARGUMENT (NULL session, `reason` not
/// UTF-8).
#[no_mangle]
pub extern "C" fn wtd_session_close(
    session: *mut wtd_session,
    code: u32,
    reason: *const c_char,
) -> wtd_result {
    guard(|| {
        let s = self::session(session)?;
        s.close(code, arg_opt_str(reason, "reason")?.unwrap_or(""));
        Ok(())
    })
}

/// Writes to `*out` whether the peer asked to wind the session down (DRAIN_WEBTRANSPORT_SESSION
/// capsule or HTTP/3 GOAWAY): finish what you are doing and close.
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments).
#[no_mangle]
pub extern "C" fn wtd_session_is_draining(
    session: *const wtd_session,
    out: *mut bool,
) -> wtd_result {
    guard(|| write_out(out, self::session(session)?.is_draining(), "out"))
}

/// Writes to `*out` whether the session is closed (by either side). Cheap: meant to be called
/// every frame.
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments).
#[no_mangle]
pub extern "C" fn wtd_session_is_closed(session: *const wtd_session, out: *mut bool) -> wtd_result {
    guard(|| write_out(out, self::session(session)?.is_closed(), "out"))
}

/// After close: writes the close code to `*out_code` and copies the reason NUL-terminated into `buf` (capacity `cap`, NUL included); `*out_len` (optional) = its length
/// without the NUL. `buf` NULL with `cap` 0 queries the length.
///
/// Ownership: the buffers stay the caller's and are only written during the call.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL session/out_code, NULL reason_buf with
/// cap > 0), WTD_ERR_INVALID_STATE (still open), WTD_ERR_BUFFER_TOO_SMALL (the needed length is
/// written to `*out_len`).
#[no_mangle]
pub extern "C" fn wtd_session_close_info(
    session: *const wtd_session,
    out_code: *mut u32,
    reason_buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> wtd_result {
    guard(|| {
        let s = self::session(session)?;
        let info = s.close_info().ok_or_else(|| {
            Error::new(wtd_result::WTD_ERR_INVALID_STATE, "session is still open")
        })?;
        if out_code.is_null() {
            return Err(Error::invalid("out_code is NULL"));
        }
        copy_str_out(&info.reason, reason_buf, cap, out_len)?;
        write_out(out_code, info.code, "out_code")
    })
}

/// Blocks until the session has closed and its close notice was delivered (callbacks
/// included), at most `timeout_ms` (negative = forever, 0 = check only).
///
/// Ownership: nothing is handed over.
/// Thread: any but a wtd callback thread when waiting (WTD_ERR_INVALID_STATE).
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL), WTD_ERR_TIMEOUT (still open).
#[no_mangle]
pub extern "C" fn wtd_session_wait_closed(
    session: *const wtd_session,
    timeout_ms: i32,
) -> wtd_result {
    guard(|| {
        let handle = session_ref(session)?;
        handle
            .inner
            .wait_closed(wait_of(timeout_ms).unwrap_or(Duration::from_secs(u64::MAX / 4)))
            .map(|_| ())
    })
}

/// Writes the session id (its CONNECT stream id; equal on both ends) to `*out`.
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments).
#[no_mangle]
pub extern "C" fn wtd_session_id(session: *const wtd_session, out: *mut u64) -> wtd_result {
    guard(|| write_out(out, self::session(session)?.id(), "out"))
}

/// Writes the negotiated WebTransport draft (a `wtd_draft` value) to `*out`.
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments).
#[no_mangle]
pub extern "C" fn wtd_session_draft(
    session: *const wtd_session,
    out: *mut wtd_draft,
) -> wtd_result {
    guard(|| write_out(out, self::session(session)?.draft(), "out"))
}

/// "draft-02", "draft-07", "draft-13", "draft-15", or "unknown" for any other value (a plain
/// integer, so any value is safe to pass).
///
/// Ownership: static; never free it. Thread: any. Errors: none.
#[no_mangle]
pub extern "C" fn wtd_draft_str(draft: u32) -> *const c_char {
    wtd_draft::c_name_of(draft)
}

/// Copies the request `:path` (with query) NUL-terminated into `buf` (capacity `cap`, NUL included); `*out_len` (optional) = its length
/// without the NUL. `buf` NULL with `cap` 0 queries the length.
///
/// Ownership: the buffers stay the caller's and are only written during the call.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL session, NULL buf with cap > 0),
/// WTD_ERR_BUFFER_TOO_SMALL (the needed length is written to `*out_len`).
#[no_mangle]
pub extern "C" fn wtd_session_path(
    session: *const wtd_session,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> wtd_result {
    guard(|| copy_str_out(&self::session(session)?.request().path, buf, cap, out_len))
}

/// Copies the request's `origin` header ("" when none was sent) NUL-terminated into `buf` (capacity `cap`, NUL included); `*out_len` (optional) = its length
/// without the NUL. `buf` NULL with `cap` 0 queries the length.
///
/// Ownership: the buffers stay the caller's and are only written during the call.
/// Thread: any. Errors: as `wtd_session_path`.
#[no_mangle]
pub extern "C" fn wtd_session_origin(
    session: *const wtd_session,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> wtd_result {
    guard(|| {
        copy_str_out(
            self::session(session)?
                .request()
                .origin
                .as_deref()
                .unwrap_or(""),
            buf,
            cap,
            out_len,
        )
    })
}

/// Writes the largest payload one datagram can carry now to `*out` (grows with path MTU
/// discovery; 0 when the peer takes no datagrams). Cheap: meant to be called every frame.
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments).
#[no_mangle]
pub extern "C" fn wtd_session_max_datagram_size(
    session: *const wtd_session,
    out: *mut usize,
) -> wtd_result {
    guard(|| write_out(out, self::session(session)?.max_datagram_size(), "out"))
}

/// A file descriptor for `poll`/`epoll`/`select` that is readable (POLLIN) while the session's
/// receive queue holds a datagram or the session is closed — level-triggered: it stays readable
/// until receives (`wtd_session_receive`/`_receive_batch`) have emptied the queue; wtd clears it
/// then (do not read from it or close it). With an `on_datagram` callback set (or a transport
/// made from the session), datagrams bypass the queue and the descriptor only reports the close.
/// Created on first call (an eventfd on Linux, a pipe elsewhere); the same descriptor every
/// time; valid until `wtd_session_free`.
/// Ownership: the descriptor stays wtd's (do not read from it or close it).
/// Thread: any. Errors: NULL arguments;
/// WTD_ERR_INTERNAL if the OS refuses a descriptor.
#[no_mangle]
pub extern "C" fn wtd_session_readiness_fd(
    session: *const wtd_session,
    out_fd: *mut i32,
) -> wtd_result {
    guard(|| write_out(out_fd, self::session(session)?.readiness_fd()?, "out_fd"))
}

/// Fills `*out` with the session's counters. Set `out->struct_size = sizeof(wtd_session_stats)`
/// first: the library writes at most that many bytes and sets `struct_size` to what it wrote.
///
/// Ownership: `*out` is the caller's; the library only writes it.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments, `struct_size` too small).
#[no_mangle]
pub extern "C" fn wtd_session_get_stats(
    session: *const wtd_session,
    out: *mut wtd_session_stats,
) -> wtd_result {
    guard(|| {
        let s = self::session(session)?;
        let st = s.stats();
        let q = s.connection_stats();
        let dp = s.connection_datapath();
        let v = wtd_session_stats {
            struct_size: std::mem::size_of::<wtd_session_stats>() as u32,
            reserved: 0,
            datagrams_sent: st.datagrams_sent,
            bytes_sent: st.bytes_sent,
            datagrams_received: st.datagrams_received,
            bytes_received: st.bytes_received,
            datagrams_read: st.datagrams_read,
            dropped_queue_full: st.dropped_queue_full,
            queued: st.queued,
            rtt_us: s.rtt().as_micros() as u64,
            max_datagram_size: s.max_datagram_size() as u64,
            connection_lost_packets: q.path.lost_packets,
            connection_datagram_frames_received: q.frame_rx.datagram,
            connection_datagrams_unknown_session: s.connection_unknown_session_drops(),
            send_dropped_unsent: st.send_dropped_unsent,
            connection_receive_drains: dp.receive_drains,
            connection_receive_drained: dp.receive_drained,
            connection_send_flushes: dp.send_flushes,
            connection_send_flushed: dp.send_flushed,
            connection_receive_overflow: dp.receive_overflow,
        };
        write_sized(out, v, SESSION_STATS_V1, "out")
    })
}

/// Closes the session if still open (code 0, no reason) and releases the handle. NULL is a
/// no-op. Callbacks stop: called outside a wtd callback, it returns only after any callback of
/// this session that is running has returned, and none runs afterwards (so `user_data` may be
/// freed next). Calls already blocked on this handle in other threads (`wtd_session_receive`,
/// `wtd_session_wait_closed`) wake with WTD_ERR_CLOSED / return, and the memory stays valid
/// until they do. No call may *start* on the handle after this. A transport made from the
/// session sees it closed (its receives return WTD_ERR_CLOSED); free the transport as usual.
/// Ownership: releases the handle; it must not be used afterwards.
/// Thread: any.
/// Errors: none (a caught panic is logged and recorded as the last error).
#[no_mangle]
pub extern "C" fn wtd_session_free(session: *mut wtd_session) {
    super::guard_void(|| {
        let Some(handle) = take_arc(session) else {
            return;
        };
        handle.inner.set_callbacks(None);
        handle.inner.close(0, "");
        drop(handle);
    })
}
