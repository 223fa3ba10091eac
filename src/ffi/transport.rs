//! C exports for the datagram transport of a session (the seed's WebTransportDatagramTransport):
//! prioritized, TTL-aware queues with drop policies, blocking / poll / batch receive, JSON,
//! metadata, statistics, diagnostics, heartbeat, throughput test and event callbacks.

#![allow(non_camel_case_types)]

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::handle::{borrow, new_arc, take_arc, ArcOwned, CallbackTarget, Handle};
use super::session::{batch_slots, session, wtd_datagram_buffer, wtd_session, CSlots};
use super::{
    arg_buffer, arg_bytes, arg_slice, arg_slice_mut, check_sized, copy_bytes_out, copy_str_out,
    guard, guard_value, ms_of_opt, opt_ms, read_options_or_default, wait_of, write_out,
    write_sized,
};
use crate::datagram::batch;
use crate::datagram::json;
use crate::datagram::report::{self, wtd_issue};
use crate::datagram::transport::{
    heartbeat_datagram, is_heartbeat, DatagramTransport, Received, TransportCallbacks,
    TransportConfig,
};
use crate::datagram::wtd_drop_policy;
use crate::error::{wtd_result, Error, Result};

/// The datagram transport of one session (opaque). Create with `wtd_transport_new`, release with
/// `wtd_transport_free`. All functions may be called from any thread; the handle must not be
/// freed while another call on it is running.
pub struct wtd_transport {
    inner: DatagramTransport,
}

impl Handle for wtd_transport {
    type Ownership = ArcOwned;
    const NAME: &'static str = "transport";
}

/// Transport options. Fill with `wtd_transport_options_default`, then change fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_transport_options {
    /// `sizeof(wtd_transport_options)` (set by `wtd_transport_options_default`).
    pub struct_size: u32,
    /// Outgoing queue capacity in datagrams (> 0). Default 100 (pywebtransport's `high_water_mark`).
    pub outgoing_high_water_mark: u32,
    /// Incoming queue capacity in datagrams; 0 = same as `outgoing_high_water_mark` (default).
    /// A full incoming queue always evicts its oldest datagram (counted in `evicted_incoming`).
    pub incoming_high_water_mark: u32,
    /// A `wtd_drop_policy` value: what a send into a full outgoing queue does.
    /// Default WTD_DROP_OLDEST.
    pub drop_policy: u32,
    /// How long a WTD_DROP_BLOCK send waits for room when it passes `timeout_ms < 0`, in ms
    /// (pywebtransport's `sender_get_timeout`). Default 1000.
    pub sender_timeout_ms: u32,
    /// Incoming datagrams older than this (ms) are dropped when read and counted; 0 = no limit
    /// (default).
    pub incoming_max_age_ms: u32,
    /// Outgoing datagrams older than this (ms) are dropped before sending and counted; 0 = no
    /// limit (default).
    pub outgoing_max_age_ms: u32,
    /// 1 = keep heartbeat datagrams out of the receive path (counted in `heartbeats_filtered`;
    /// their arrival time is recorded either way), 0 = deliver them like any datagram (default).
    pub filter_heartbeats: u32,
}

const TRANSPORT_OPTIONS_V1: usize = std::mem::size_of::<wtd_transport_options>();

fn transport_defaults() -> wtd_transport_options {
    wtd_transport_options {
        struct_size: TRANSPORT_OPTIONS_V1 as u32,
        outgoing_high_water_mark: 100,
        incoming_high_water_mark: 0,
        drop_policy: wtd_drop_policy::WTD_DROP_OLDEST as u32,
        sender_timeout_ms: 1000,
        incoming_max_age_ms: 0,
        outgoing_max_age_ms: 0,
        filter_heartbeats: 0,
    }
}

fn config_from(o: &wtd_transport_options) -> Result<TransportConfig> {
    let drop_policy = match o.drop_policy {
        0 => wtd_drop_policy::WTD_DROP_OLDEST,
        1 => wtd_drop_policy::WTD_DROP_REJECT_NEW,
        2 => wtd_drop_policy::WTD_DROP_BLOCK,
        v => return Err(Error::invalid(format!("unknown drop_policy {v}"))),
    };
    if o.outgoing_high_water_mark == 0 {
        return Err(Error::invalid("outgoing_high_water_mark must be > 0"));
    }
    let filter_heartbeats = match o.filter_heartbeats {
        0 => false,
        1 => true,
        v => {
            return Err(Error::invalid(format!(
                "filter_heartbeats must be 0 or 1, not {v}"
            )))
        }
    };
    let incoming = match o.incoming_high_water_mark {
        0 => o.outgoing_high_water_mark,
        n => n,
    };
    Ok(TransportConfig {
        outgoing_high_water_mark: o.outgoing_high_water_mark as usize,
        incoming_high_water_mark: incoming as usize,
        drop_policy,
        sender_timeout: Duration::from_millis(o.sender_timeout_ms.into()),
        incoming_max_age: opt_ms(o.incoming_max_age_ms),
        outgoing_max_age: opt_ms(o.outgoing_max_age_ms),
        filter_heartbeats,
    })
}

/// Borrows the transport behind a handle; NULL → invalid argument.
pub(crate) fn transport<'a>(p: *const wtd_transport) -> Result<&'a DatagramTransport> {
    Ok(&borrow(p)?.inner)
}

/// Receives into `buf`, writing the length, or the needed size on WTD_ERR_BUFFER_TOO_SMALL.
fn receive_into(
    t: &DatagramTransport,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    timeout: Option<Duration>,
) -> Result<Received> {
    if out_len.is_null() {
        return Err(Error::invalid("out_len is NULL"));
    }
    let slice = arg_buffer(buf, cap, "buf")?;
    let needed = Cell::new(0);
    match t.receive_where(timeout, batch::fits(cap, &needed)) {
        Ok(r) => {
            slice[..r.data.len()].copy_from_slice(&r.data);
            write_out(out_len, r.data.len(), "out_len")?;
            Ok(r)
        }
        Err(e) => {
            if e.code == wtd_result::WTD_ERR_BUFFER_TOO_SMALL {
                write_out(out_len, needed.get(), "out_len")?;
            }
            Err(e)
        }
    }
}

// ----- lifecycle ---------------------------------------------------------------------------

/// Fills `*options` with the defaults (and its `struct_size`).
///
/// Ownership: `*options` is the caller's; the library only writes it.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT when `options` is NULL.
#[no_mangle]
pub extern "C" fn wtd_transport_options_default(options: *mut wtd_transport_options) -> wtd_result {
    guard(|| {
        write_sized(
            options,
            transport_defaults(),
            TRANSPORT_OPTIONS_V1,
            "options",
        )
    })
}

/// Creates the datagram transport of `session` (`options` NULL = defaults). From now on the
/// session's datagrams arrive through the transport: don't use `wtd_session_receive*` or the
/// session's datagram callback on that session any more (the transport replaces them; a second
/// transport on the same session takes the path over from the first). Datagrams already queued
/// on the session move into the transport.
///
/// Ownership: `*out` owns the new transport; free it with `wtd_transport_free`. The transport
/// keeps its own reference to the session, so freeing the session handle first is allowed (it
/// closes the session, which closes the transport). Thread: any.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL session/out, bad options: unknown drop_policy,
/// outgoing_high_water_mark 0, filter_heartbeats not 0/1, struct_size too small),
/// WTD_ERR_CLOSED (the session is already closed).
#[no_mangle]
pub extern "C" fn wtd_transport_new(
    session: *mut wtd_session,
    options: *const wtd_transport_options,
    out: *mut *mut wtd_transport,
) -> wtd_result {
    guard(|| {
        let s = self::session(session)?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let o = read_options_or_default(
            options,
            transport_defaults(),
            TRANSPORT_OPTIONS_V1,
            "options",
        )?;
        let cfg = config_from(&o)?;
        let t = DatagramTransport::for_session(s, cfg)?;
        let handle = new_arc(wtd_transport { inner: t });
        write_out(out, handle, "out")
    })
}

/// Writes the transport's current configuration to `*options` (max ages reflect
/// `wtd_transport_set_*_max_age`; `incoming_high_water_mark` is the effective value).
///
/// Ownership: `*options` is the caller's; the library only writes it.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT for NULL arguments.
#[no_mangle]
pub extern "C" fn wtd_transport_get_options(
    transport: *const wtd_transport,
    options: *mut wtd_transport_options,
) -> wtd_result {
    guard(|| {
        let c = self::transport(transport)?.config();
        let o = wtd_transport_options {
            struct_size: TRANSPORT_OPTIONS_V1 as u32,
            outgoing_high_water_mark: u32::try_from(c.outgoing_high_water_mark).unwrap_or(u32::MAX),
            incoming_high_water_mark: u32::try_from(c.incoming_high_water_mark).unwrap_or(u32::MAX),
            drop_policy: c.drop_policy as u32,
            sender_timeout_ms: u32::try_from(c.sender_timeout.as_millis()).unwrap_or(u32::MAX),
            incoming_max_age_ms: ms_of_opt(c.incoming_max_age),
            outgoing_max_age_ms: ms_of_opt(c.outgoing_max_age),
            filter_heartbeats: c.filter_heartbeats as u32,
        };
        write_sized(options, o, TRANSPORT_OPTIONS_V1, "options")
    })
}

/// Closes the transport (idempotent). `flush_timeout_ms` > 0 first waits up to that long for the
/// outgoing queue to drain into QUIC; 0 = no flush. Whatever is still queued is then dropped and
/// counted (`cleared_outgoing`). Every blocked sender and receiver wakes with WTD_ERR_CLOSED;
/// later sends fail with WTD_ERR_CLOSED; datagrams already received stay readable. The session
/// stays open. The handle stays valid until `wtd_transport_free`.
///
/// Ownership: nothing is handed over.
/// Thread: any; a flush from a callback thread is refused (WTD_ERR_INVALID_STATE) — use 0 there.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL), WTD_ERR_INVALID_STATE (see above).
#[no_mangle]
pub extern "C" fn wtd_transport_close(
    transport: *mut wtd_transport,
    flush_timeout_ms: u32,
) -> wtd_result {
    guard(|| self::transport(transport)?.close(opt_ms(flush_timeout_ms)))
}

/// Closes the transport without flushing (see `wtd_transport_close`), stops its callbacks and
/// releases the handle. NULL is a no-op. No other call on this handle may be running or start.
/// Callbacks already running finish normally; none starts afterwards.
///
/// Ownership: releases the handle; it must not be used afterwards.
/// Thread: any.
/// Errors: none (a caught panic is logged and recorded as the last error).
#[no_mangle]
pub extern "C" fn wtd_transport_free(transport: *mut wtd_transport) {
    super::guard_void(|| {
        let Some(handle) = take_arc(transport) else {
            return;
        };
        handle.inner.set_callbacks(None);
        let _ = handle.inner.close(None);
        drop(handle);
    })
}

// ----- sending -----------------------------------------------------------------------------

/// Queues one datagram of `len` bytes (copied) for sending: higher `priority` first (any int32),
/// FIFO among equals; `ttl_ms` > 0 drops it (counted in `dropped_expired`) if still queued when
/// it runs out, 0 = no TTL. When QUIC has room and nothing is queued it is handed over at once.
/// A full queue applies the drop policy: WTD_DROP_OLDEST evicts (counted in `dropped_full`),
/// WTD_DROP_REJECT_NEW fails with WTD_ERR_WOULD_BLOCK, WTD_DROP_BLOCK waits for room:
/// `timeout_ms` < 0 = the transport's `sender_timeout_ms`, 0 = don't wait (WTD_ERR_WOULD_BLOCK),
/// > 0 = that many ms (then WTD_ERR_TIMEOUT). `timeout_ms` only matters for WTD_DROP_BLOCK.
///
/// Ownership: `data` is only read during the call. Thread: any; a BLOCK wait from a callback
/// thread is refused with WTD_ERR_INVALID_STATE.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL transport, NULL data with len > 0, `len == 0`),
/// WTD_ERR_TOO_LARGE (above `wtd_transport_max_datagram_size`; counted in `dropped_too_large`),
/// WTD_ERR_WOULD_BLOCK / WTD_ERR_TIMEOUT (queue full, counted in `rejected_full`),
/// WTD_ERR_CLOSED (transport closed). Every failure is counted in `send_failures`.
#[no_mangle]
pub extern "C" fn wtd_transport_send(
    transport: *mut wtd_transport,
    data: *const u8,
    len: usize,
    priority: i32,
    ttl_ms: u32,
    timeout_ms: i32,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        let d = arg_bytes(data, len, "data")?;
        t.send(d, priority, opt_ms(ttl_ms), wait_of(timeout_ms))
    })
}

/// `wtd_transport_send` that never waits (a full WTD_DROP_BLOCK queue fails with
/// WTD_ERR_WOULD_BLOCK at once). Same errors.
/// Ownership: `data` is only read during the call (copied when queued).
/// Thread: any, including callbacks.
/// Errors: as `wtd_transport_send`.
#[no_mangle]
pub extern "C" fn wtd_transport_try_send(
    transport: *mut wtd_transport,
    data: *const u8,
    len: usize,
    priority: i32,
    ttl_ms: u32,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        let d = arg_bytes(data, len, "data")?;
        t.try_send(d, priority, opt_ms(ttl_ms))
    })
}

/// One datagram of a batch for `wtd_transport_send_multiple` (caller-owned, read during the call).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_datagram_view {
    /// Payload.
    pub data: *const u8,
    /// Payload length in bytes.
    pub len: usize,
}

/// Sends `count` datagrams in order, each like `wtd_transport_send` with the same `priority` and
/// `ttl_ms` (a WTD_DROP_BLOCK queue waits up to `sender_timeout_ms` per datagram); stops at the
/// first failure and returns its code. `*out_accepted` is always written (when not NULL), also on
/// failure: how many datagrams were accepted (the first `*out_accepted` items).
///
/// Ownership: `items` and their payloads are only read during the call. Thread: any.
/// Errors: those of `wtd_transport_send`; WTD_ERR_INVALID_ARGUMENT for NULL transport /
/// out_accepted, NULL `items` with `count > 0`, or an item with NULL data and len > 0 (checked
/// before anything is sent).
#[no_mangle]
pub extern "C" fn wtd_transport_send_multiple(
    transport: *mut wtd_transport,
    items: *const wtd_datagram_view,
    count: usize,
    priority: i32,
    ttl_ms: u32,
    out_accepted: *mut usize,
) -> wtd_result {
    guard(|| {
        if !out_accepted.is_null() {
            write_out(out_accepted, 0, "out_accepted")?;
        } else {
            return Err(Error::invalid("out_accepted is NULL"));
        }
        let t = self::transport(transport)?;
        if count == 0 {
            return Ok(());
        }
        let views = arg_slice(items, count, "items")?;
        // Sized up front: collecting through `Result` would grow the vector step by step.
        let mut slices: Vec<&[u8]> = Vec::with_capacity(views.len());
        for (i, v) in views.iter().enumerate() {
            if v.data.is_null() && v.len > 0 {
                return Err(Error::invalid(format!(
                    "items[{i}].data is NULL but its length is {}",
                    v.len
                )));
            }
            slices.push(arg_bytes(v.data, v.len, "an item's data")?);
        }
        let (n, err) = t.send_multiple(&slices, priority, opt_ms(ttl_ms));
        write_out(out_accepted, n, "out_accepted")?;
        err.map_or(Ok(()), Err)
    })
}

/// Validates the JSON text `json[0..len]` (UTF-8, need not be NUL-terminated), compacts it and
/// sends it like `wtd_transport_send`. Invalid JSON or invalid UTF-8 → WTD_ERR_SERIALIZATION and
/// nothing is sent (nor counted as a send failure).
///
/// Ownership: `json` is only read during the call. Thread: as `wtd_transport_send`.
/// Errors: WTD_ERR_SERIALIZATION, plus those of `wtd_transport_send`.
#[no_mangle]
pub extern "C" fn wtd_transport_send_json(
    transport: *mut wtd_transport,
    json: *const c_char,
    len: usize,
    priority: i32,
    ttl_ms: u32,
    timeout_ms: i32,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        let text = arg_bytes(json as *const u8, len, "json")?;
        json::send_json(t, text, priority, opt_ms(ttl_ms), wait_of(timeout_ms))
    })
}

// ----- receiving ---------------------------------------------------------------------------

/// Takes the next datagram into `buf` (capacity `cap`) and writes its length to `*out_len`.
/// `timeout_ms`: 0 = don't wait (WTD_ERR_WOULD_BLOCK when empty), -1 (any negative) = forever,
/// else WTD_ERR_TIMEOUT after that long. A datagram larger than `cap` stays queued:
/// WTD_ERR_BUFFER_TOO_SMALL with its size in `*out_len` (`buf` NULL with `cap` 0 peeks the size).
/// Once the transport is closed, what is queued can still be read, then WTD_ERR_CLOSED; a close
/// wakes every waiting receiver with WTD_ERR_CLOSED.
///
/// Ownership: `buf` is written during the call only. Thread: any; waiting on a callback thread
/// is refused with WTD_ERR_INVALID_STATE (use `timeout_ms` 0 there).
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL transport/out_len, NULL buf with cap > 0), and the
/// ones above.
#[no_mangle]
pub extern "C" fn wtd_transport_receive(
    transport: *mut wtd_transport,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    timeout_ms: i32,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        receive_into(t, buf, cap, out_len, wait_of(timeout_ms)).map(|_| ())
    })
}

/// `wtd_transport_receive` with `timeout_ms` 0: never waits (WTD_ERR_WOULD_BLOCK when empty).
/// Ownership: the buffers stay the caller's and are only written during the call.
/// Thread: any, including callbacks.
/// Errors: as `wtd_transport_receive`.
#[no_mangle]
pub extern "C" fn wtd_transport_try_receive(
    transport: *mut wtd_transport,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        receive_into(t, buf, cap, out_len, Some(Duration::ZERO)).map(|_| ())
    })
}

/// Batch receive (the same shape as `wtd_session_receive_batch`): waits up to `timeout_ms` for
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
pub extern "C" fn wtd_transport_receive_batch(
    transport: *mut wtd_transport,
    buffers: *mut wtd_datagram_buffer,
    count: usize,
    out_count: *mut usize,
    timeout_ms: i32,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        let slots = batch_slots(buffers, count, out_count)?;
        let n = batch::receive_into(t, &mut CSlots(slots), wait_of(timeout_ms))?;
        write_out(out_count, n, "out_count")
    })
}

/// What `wtd_transport_receive_with_metadata` knows about a datagram (pywebtransport's /// DatagramMessage). Filled by the library (`struct_size` set by it).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_datagram_metadata {
    /// Set by the caller to `sizeof` the struct before the call; the library sets it to the
    /// number of bytes it wrote (append-only: check it before reading fields added later).
    pub struct_size: u32,
    /// Priority: always 0 for received datagrams (priorities order the sender's queue and are
    /// not carried on the wire).
    pub priority: i32,
    /// Payload size in bytes.
    pub size: u64,
    /// Receive sequence number (local counter, 1-based, never on the wire).
    pub sequence: u64,
    /// Unix time (s) the datagram arrived.
    pub timestamp: f64,
    /// Seconds between its arrival and this read.
    pub age: f64,
    /// Seconds this receive call waited.
    pub receive_time: f64,
    /// TTL in ms: always 0 (none) for received datagrams (TTLs are sender-local).
    pub ttl_ms: u32,
    /// 1 when the TTL had run out: always 0 here (expired datagrams are dropped, never returned).
    pub is_expired: u8,
    /// First 8 lowercase hex characters of the SHA-256 of the payload, NUL-terminated.
    pub checksum: [c_char; 9],
    /// Reserved, 0.
    pub reserved: [u8; 2],
}

/// First published size of `wtd_datagram_metadata` (API 0.2).
const METADATA_V1: usize = std::mem::size_of::<wtd_datagram_metadata>();

/// `wtd_transport_receive` that also fills `*meta` (computing the SHA-256 checksum, which only
/// this function does). Same buffer, timeout and error rules; `*meta` is written on success only.
///
/// Ownership: the buffers stay the caller's and are only written during the call.
/// Thread: as `wtd_transport_receive`. Errors: as `wtd_transport_receive`, plus
/// WTD_ERR_INVALID_ARGUMENT when `meta` is NULL.
#[no_mangle]
pub extern "C" fn wtd_transport_receive_with_metadata(
    transport: *mut wtd_transport,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    meta: *mut wtd_datagram_metadata,
    timeout_ms: i32,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        // Checked before a datagram is taken, so a bad `meta` loses nothing.
        check_sized(meta, METADATA_V1, "meta")?;
        let r = receive_into(t, buf, cap, out_len, wait_of(timeout_ms))?;
        let mut checksum = [0 as c_char; 9];
        for (dst, src) in checksum.iter_mut().zip(batch::checksum8(&r.data)) {
            *dst = src as c_char;
        }
        let m = wtd_datagram_metadata {
            struct_size: std::mem::size_of::<wtd_datagram_metadata>() as u32,
            priority: 0,
            size: r.data.len() as u64,
            sequence: r.sequence,
            timestamp: r.timestamp,
            age: r.age,
            receive_time: r.receive_time,
            ttl_ms: 0,
            is_expired: 0,
            checksum,
            reserved: [0; 2],
        };
        write_sized(meta, m, METADATA_V1, "meta")
    })
}

/// Receives the next datagram as compact JSON text, NUL-terminated, into `buf` (capacity `cap`,
/// NUL included); `*out_len` (optional) = text length without the NUL. Timeout as
/// `wtd_transport_receive`. Nothing is lost on failure: a datagram that is not valid UTF-8 JSON
/// stays queued (WTD_ERR_SERIALIZATION, counted in `receive_errors`; read it with plain receive
/// or drop it with `wtd_transport_clear_receive_buffer`), and one whose compact text does not
/// fit stays queued too (WTD_ERR_BUFFER_TOO_SMALL, the needed length without NUL in `*out_len`;
/// `buf` NULL with `cap` 0 is a size query).
///
/// Ownership: the buffers stay the caller's and are only written during the call.
/// Thread: as `wtd_transport_receive`. Errors: the ones above and those of
/// `wtd_transport_receive`.
#[no_mangle]
pub extern "C" fn wtd_transport_receive_json(
    transport: *mut wtd_transport,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    timeout_ms: i32,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        if buf.is_null() && cap > 0 {
            return Err(Error::invalid(format!(
                "buf is NULL but its capacity is {cap}"
            )));
        }
        let needed = Cell::new(0);
        let r = json::receive_json_where(t, wait_of(timeout_ms), |text| {
            if text.len() + 1 > cap {
                needed.set(text.len());
                return Err(Error::new(
                    wtd_result::WTD_ERR_BUFFER_TOO_SMALL,
                    format!(
                        "JSON text needs {} bytes plus a NUL, capacity {cap}",
                        text.len()
                    ),
                ));
            }
            Ok(())
        });
        match r {
            Ok(text) => copy_str_out(&text, buf, cap, out_len),
            Err(e) => {
                if e.code == wtd_result::WTD_ERR_BUFFER_TOO_SMALL && !out_len.is_null() {
                    write_out(out_len, needed.get(), "out_len")?;
                }
                Err(e)
            }
        }
    })
}

// ----- buffers and queues ------------------------------------------------------------------

/// Empties the incoming queue; `*out_count` (optional) = datagrams dropped (counted in
/// `cleared_incoming` and `receive_drops`).
/// Ownership: nothing is handed over (`*out_count` is only written).
/// Thread: any. Errors: NULL transport.
#[no_mangle]
pub extern "C" fn wtd_transport_clear_receive_buffer(
    transport: *mut wtd_transport,
    out_count: *mut usize,
) -> wtd_result {
    guard(|| {
        let n = self::transport(transport)?.clear_receive_buffer();
        if !out_count.is_null() {
            write_out(out_count, n, "out_count")?;
        }
        Ok(())
    })
}

/// Empties the outgoing queue; `*out_count` (optional) = datagrams dropped (counted in
/// `cleared_outgoing` and `send_drops`). Wakes blocked senders.
/// Ownership: nothing is handed over (`*out_count` is only written).
/// Thread: any.
/// Errors: NULL transport.
#[no_mangle]
pub extern "C" fn wtd_transport_clear_send_buffer(
    transport: *mut wtd_transport,
    out_count: *mut usize,
) -> wtd_result {
    guard(|| {
        let n = self::transport(transport)?.clear_send_buffer();
        if !out_count.is_null() {
            write_out(out_count, n, "out_count")?;
        }
        Ok(())
    })
}

/// Datagrams waiting in the incoming queue.
/// Ownership: nothing is handed over.
/// Thread: any. Errors: NULL arguments.
#[no_mangle]
pub extern "C" fn wtd_transport_get_receive_buffer_size(
    transport: *const wtd_transport,
    out: *mut usize,
) -> wtd_result {
    guard(|| {
        write_out(
            out,
            self::transport(transport)?.receive_buffer_size(),
            "out",
        )
    })
}

/// Datagrams waiting in the outgoing queue.
/// Ownership: nothing is handed over.
/// Thread: any. Errors: NULL arguments.
#[no_mangle]
pub extern "C" fn wtd_transport_get_send_buffer_size(
    transport: *const wtd_transport,
    out: *mut usize,
) -> wtd_result {
    guard(|| write_out(out, self::transport(transport)?.send_buffer_size(), "out"))
}

/// Number of priority classes `wtd_queue_direction_stats` lists one by one.
pub const WTD_QUEUE_STATS_CLASSES: usize = 8;

/// Datagrams queued at one priority.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct wtd_priority_count {
    /// The priority.
    pub priority: i32,
    /// Datagrams queued at it.
    pub count: u32,
}

/// One queue (outgoing or incoming) in `wtd_queue_stats`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct wtd_queue_direction_stats {
    /// Datagrams queued now.
    pub size: u32,
    /// Capacity (the high water mark).
    pub max_size: u32,
    /// Entries used in `classes` (≤ WTD_QUEUE_STATS_CLASSES).
    pub class_count: u32,
    /// Per-priority counts, highest priority first.
    pub classes: [wtd_priority_count; WTD_QUEUE_STATS_CLASSES],
    /// Datagrams in priority classes beyond the first WTD_QUEUE_STATS_CLASSES.
    pub other_count: u32,
}

/// Snapshot of both queues (pywebtransport's `get_queue_stats`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct wtd_queue_stats {
    /// Set by the caller to `sizeof` the struct before the call; the library sets it to the
    /// number of bytes it wrote (append-only: check it before reading fields added later).
    pub struct_size: u32,
    /// The send queue.
    pub outgoing: wtd_queue_direction_stats,
    /// The receive queue.
    pub incoming: wtd_queue_direction_stats,
}

fn queue_direction(q: &(usize, usize, Vec<(i32, usize)>)) -> wtd_queue_direction_stats {
    let u32_of = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let mut d = wtd_queue_direction_stats {
        size: u32_of(q.0),
        max_size: u32_of(q.1),
        ..Default::default()
    };
    for (i, (p, n)) in q.2.iter().enumerate() {
        if i < WTD_QUEUE_STATS_CLASSES {
            d.classes[i] = wtd_priority_count {
                priority: *p,
                count: u32_of(*n),
            };
            d.class_count += 1;
        } else {
            d.other_count = d.other_count.saturating_add(u32_of(*n));
        }
    }
    d
}

/// Fills `*out` with the size, capacity and per-priority counts of both queues.
/// Ownership: `*out` is the caller's; the library only writes it.
/// Thread: any. Errors: NULL arguments.
#[no_mangle]
pub extern "C" fn wtd_transport_get_queue_stats(
    transport: *const wtd_transport,
    out: *mut wtd_queue_stats,
) -> wtd_result {
    guard(|| {
        let [o, i] = self::transport(transport)?.queue_stats();
        let v = wtd_queue_stats {
            struct_size: std::mem::size_of::<wtd_queue_stats>() as u32,
            outgoing: queue_direction(&o),
            incoming: queue_direction(&i),
        };
        write_sized(out, v, std::mem::size_of::<wtd_queue_stats>(), "out")
    })
}

// ----- statistics --------------------------------------------------------------------------

/// Statistics of a transport (pywebtransport's DatagramStats plus the reason for every drop). "Sent" =
/// handed to QUIC, "received" = arrived for this session, "read" = taken by the application.
/// Times are seconds.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_datagram_stats {
    /// Size of this struct as the library filled it (append-only; check before reading new
    /// fields).
    pub struct_size: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Session id (CONNECT stream id).
    pub session_id: u64,
    /// Unix time (s) the transport was created.
    pub created_at: f64,
    /// Datagrams handed to QUIC.
    pub datagrams_sent: u64,
    /// Payload bytes handed to QUIC.
    pub bytes_sent: u64,
    /// Send calls that failed (queue full, too large, closed, invalid) plus QUIC send errors.
    pub send_failures: u64,
    /// Accepted datagrams dropped before reaching QUIC: dropped_full + dropped_expired +
    /// dropped_too_old + cleared_outgoing.
    pub send_drops: u64,
    /// Datagrams that arrived for this session (heartbeats included).
    pub datagrams_received: u64,
    /// Payload bytes that arrived.
    pub bytes_received: u64,
    /// Arrived datagrams dropped before the application read them: evicted_incoming +
    /// expired_incoming + cleared_incoming.
    pub receive_drops: u64,
    /// Receive-side processing errors (e.g. a datagram that is not JSON in receive_json).
    pub receive_errors: u64,
    /// Sum of queueing times (send call → handed to QUIC; 0 for the direct path).
    pub total_send_time: f64,
    /// Longest queueing time.
    pub max_send_time: f64,
    /// Sum of the time receive calls waited.
    pub total_receive_time: f64,
    /// Longest receive wait.
    pub max_receive_time: f64,
    /// Smallest datagram sent or received (0 before the first; pywebtransport used infinity).
    pub min_datagram_size: u64,
    /// Largest datagram sent or received.
    pub max_datagram_size: u64,
    /// Bytes of all datagrams sent and received.
    pub total_datagram_size: u64,
    /// Number of datagrams in `total_datagram_size`.
    pub sized_datagrams: u64,
    /// Outgoing datagrams evicted by WTD_DROP_OLDEST to make room.
    pub dropped_full: u64,
    /// Outgoing datagrams whose TTL ran out while queued.
    pub dropped_expired: u64,
    /// Outgoing datagrams older than `outgoing_max_age` when dequeued.
    pub dropped_too_old: u64,
    /// Sends refused for exceeding `max_datagram_size` (also in send_failures).
    pub dropped_too_large: u64,
    /// Sends refused because the queue was full (REJECT_NEW, BLOCK timeout, or DROP_OLDEST with
    /// only higher priorities queued; also in send_failures).
    pub rejected_full: u64,
    /// Outgoing datagrams removed by clear_send_buffer or by close.
    pub cleared_outgoing: u64,
    /// Incoming datagrams evicted because the receive queue was full.
    pub evicted_incoming: u64,
    /// Incoming datagrams older than `incoming_max_age` when read.
    pub expired_incoming: u64,
    /// Incoming datagrams removed by clear_receive_buffer or arriving after close.
    pub cleared_incoming: u64,
    /// Incoming heartbeats kept out of the receive path (filter_heartbeats = 1).
    pub heartbeats_filtered: u64,
    /// Datagrams the application read (receive calls or the on_received callback).
    pub datagrams_read: u64,
    /// Number of sends timed in `total_send_time`.
    pub timed_sends: u64,
    /// Number of receive calls timed in `total_receive_time`.
    pub timed_receives: u64,
    /// total_datagram_size / sized_datagrams (0 when none).
    pub avg_datagram_size: f64,
    /// total_send_time / timed_sends (0 when none).
    pub avg_send_time: f64,
    /// total_receive_time / timed_receives (0 when none).
    pub avg_receive_time: f64,
    /// datagrams_sent / (datagrams_sent + send_failures + send_drops); 1 before any send.
    pub send_success_rate: f64,
    /// 1 − (receive_drops + receive_errors) / (datagrams_received + receive_errors); 1 before
    /// any.
    pub receive_success_rate: f64,
    /// (send_drops + receive_drops) / max(1, datagrams_sent + datagrams_received) (drops with no
    /// traffic yet still count, as in pywebtransport's `diagnose_issues`).
    pub drop_rate: f64,
}

/// Fills `*out` with the transport's statistics (pywebtransport's `stats` property; named `get_stats`
/// because C cannot have a function and a struct of the same name).
/// Ownership: `*out` is the caller's; the library only writes it.
/// Thread: any.
/// Errors: NULL arguments.
#[no_mangle]
pub extern "C" fn wtd_transport_get_stats(
    transport: *const wtd_transport,
    out: *mut wtd_datagram_stats,
) -> wtd_result {
    guard(|| {
        let s = self::transport(transport)?.stats();
        let v = wtd_datagram_stats {
            struct_size: std::mem::size_of::<wtd_datagram_stats>() as u32,
            reserved: 0,
            session_id: s.session_id,
            created_at: s.created_at,
            datagrams_sent: s.datagrams_sent,
            bytes_sent: s.bytes_sent,
            send_failures: s.send_failures,
            send_drops: s.send_drops,
            datagrams_received: s.datagrams_received,
            bytes_received: s.bytes_received,
            receive_drops: s.receive_drops,
            receive_errors: s.receive_errors,
            total_send_time: s.total_send_time,
            max_send_time: s.max_send_time,
            total_receive_time: s.total_receive_time,
            max_receive_time: s.max_receive_time,
            min_datagram_size: s.min_datagram_size,
            max_datagram_size: s.max_datagram_size,
            total_datagram_size: s.total_datagram_size,
            sized_datagrams: s.sized_datagrams,
            dropped_full: s.dropped_full,
            dropped_expired: s.dropped_expired,
            dropped_too_old: s.dropped_too_old,
            dropped_too_large: s.dropped_too_large,
            rejected_full: s.rejected_full,
            cleared_outgoing: s.cleared_outgoing,
            evicted_incoming: s.evicted_incoming,
            expired_incoming: s.expired_incoming,
            cleared_incoming: s.cleared_incoming,
            heartbeats_filtered: s.heartbeats_filtered,
            datagrams_read: s.datagrams_read,
            timed_sends: s.timed_sends,
            timed_receives: s.timed_receives,
            avg_datagram_size: s.avg_datagram_size(),
            avg_send_time: s.avg_send_time(),
            avg_receive_time: s.avg_receive_time(),
            send_success_rate: s.send_success_rate(),
            receive_success_rate: s.receive_success_rate(),
            drop_rate: s.drop_rate(),
        };
        write_sized(out, v, std::mem::size_of::<wtd_datagram_stats>(), "out")
    })
}

/// Copies a JSON snapshot (keys "transport", "statistics", "queues", "configuration",
/// "sequences" — pywebtransport's) NUL-terminated into `buf` (capacity `cap`, NUL included);
/// `*out_len` (optional) = length without NUL. Too small: WTD_ERR_BUFFER_TOO_SMALL with the
/// needed length in `*out_len` (`buf` NULL, `cap` 0 queries it; the snapshot may grow slightly
/// between calls, so leave headroom).
/// Ownership: the buffers stay the caller's and are only written during the call.
/// Thread: any.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL transport, NULL buf with cap > 0),
/// WTD_ERR_BUFFER_TOO_SMALL (the needed length is written to `*out_len`).
#[no_mangle]
pub extern "C" fn wtd_transport_debug_state(
    transport: *const wtd_transport,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        copy_str_out(&report::debug_state(t), buf, cap, out_len)
    })
}

/// Runs pywebtransport's checks (send success < 0.9, drop rate > 0.1, a queue > 90 % full, average
/// send time > 100 ms, closed, session not open) and writes the codes found to
/// `out[0..*out_count]`. `count` = room in `out`; when more issues than that were found:
/// WTD_ERR_BUFFER_TOO_SMALL with the count in `*out_count` (written on that failure too) and
/// nothing written to `out` (`out` NULL with `count` 0 queries the count). Messages: `wtd_transport_diagnose_issues_json`.
/// Ownership: the array stays the caller's and is only written during the call.
/// Thread: any. Errors: NULL transport/out_count.
#[no_mangle]
pub extern "C" fn wtd_transport_diagnose_issues(
    transport: *const wtd_transport,
    out: *mut wtd_issue,
    count: usize,
    out_count: *mut usize,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        if out_count.is_null() {
            return Err(Error::invalid("out_count is NULL"));
        }
        let slots = arg_slice_mut(out, count, "out")?;
        let issues = report::diagnose_issues(t);
        write_out(out_count, issues.len(), "out_count")?;
        if issues.len() > count {
            return Err(Error::new(
                wtd_result::WTD_ERR_BUFFER_TOO_SMALL,
                format!("{} issues found, room for {count}", issues.len()),
            ));
        }
        for (slot, (code, _)) in slots.iter_mut().zip(&issues) {
            *slot = *code;
        }
        Ok(())
    })
}

/// `wtd_transport_diagnose_issues` as a JSON array `[{"code": n, "message": ".."}, ...]`
/// (`code` a `wtd_issue` value), copied like `wtd_transport_debug_state`.
/// Ownership: the buffers stay the caller's and are only written during the call.
/// Thread: any.
/// Errors: as `wtd_transport_debug_state`.
#[no_mangle]
pub extern "C" fn wtd_transport_diagnose_issues_json(
    transport: *const wtd_transport,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        copy_str_out(&report::diagnose_json(t), buf, cap, out_len)
    })
}

// ----- heartbeat, size, throughput ---------------------------------------------------------

/// Sends `HEARTBEAT:<unix seconds>` (ASCII) at priority 1 every `interval_ms`, the first one at
/// once (not waiting; a full queue skips that beat), until `wtd_transport_stop_heartbeat`,
/// another `start_heartbeat` (which replaces it) or close. Runs on a wtd runtime thread.
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL, interval 0), WTD_ERR_CLOSED.
#[no_mangle]
pub extern "C" fn wtd_transport_start_heartbeat(
    transport: *mut wtd_transport,
    interval_ms: u32,
) -> wtd_result {
    guard(|| self::transport(transport)?.start_heartbeat(Duration::from_millis(interval_ms.into())))
}

/// Stops the heartbeat (no-op when none runs).
/// Ownership: nothing is handed over.
/// Thread: any. Errors: NULL transport.
#[no_mangle]
pub extern "C" fn wtd_transport_stop_heartbeat(transport: *mut wtd_transport) -> wtd_result {
    guard(|| {
        self::transport(transport)?.stop_heartbeat();
        Ok(())
    })
}

/// Unix time (s) the last heartbeat from the peer arrived, or 0.0 when none has.
/// Ownership: nothing is handed over.
/// Thread: any.
/// Errors: NULL arguments.
#[no_mangle]
pub extern "C" fn wtd_transport_last_heartbeat_received(
    transport: *const wtd_transport,
    out: *mut f64,
) -> wtd_result {
    guard(|| {
        let v = self::transport(transport)?
            .last_heartbeat_received()
            .unwrap_or(0.0);
        write_out(out, v, "out")
    })
}

/// Largest payload one datagram can carry now (grows with path MTU discovery; 0 when the peer
/// takes no datagrams).
/// Ownership: nothing is handed over.
/// Thread: any. Errors: NULL arguments.
#[no_mangle]
pub extern "C" fn wtd_transport_max_datagram_size(
    transport: *const wtd_transport,
    out: *mut usize,
) -> wtd_result {
    guard(|| write_out(out, self::transport(transport)?.max_datagram_size(), "out"))
}

/// A file descriptor for `poll`/`epoll`/`select` that is readable (POLLIN) while the transport's
/// incoming queue holds a datagram or the transport is closed — level-triggered: it stays
/// readable until receives have emptied the queue (wtd clears it then; do not read from it or
/// close it). With an `on_received` callback set, datagrams go to the callback and the
/// descriptor only reports the close. Created on first call (an eventfd on Linux, a pipe
/// elsewhere); the same descriptor every time; valid until `wtd_transport_free`.
/// Ownership: the descriptor stays wtd's (do not read from it or close it).
/// Thread: any. Errors: NULL arguments; WTD_ERR_INTERNAL if the OS refuses a descriptor.
#[no_mangle]
pub extern "C" fn wtd_transport_readiness_fd(
    transport: *const wtd_transport,
    out_fd: *mut i32,
) -> wtd_result {
    guard(|| {
        write_out(
            out_fd,
            self::transport(transport)?.readiness_fd()?,
            "out_fd",
        )
    })
}

/// Result of `wtd_transport_throughput_test` (pywebtransport's keys plus what it could not measure).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_throughput_result {
    /// Set by the caller to `sizeof` the struct before the call; the library sets it to the
    /// number of bytes it wrote (append-only: check it before reading fields added later).
    pub struct_size: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Seconds the test ran (sending, then up to 1 s for the queue to drain).
    pub duration: f64,
    /// Datagrams that really reached QUIC during the test.
    pub datagrams_sent: u64,
    /// Send calls refused plus datagrams dropped from the queue.
    pub errors: u64,
    /// datagrams_sent / duration.
    pub throughput_dps: f64,
    /// Payload bits that reached QUIC per second.
    pub throughput_bps: f64,
    /// errors / attempts (0 when no attempt).
    pub error_rate: f64,
    /// Datagrams that arrived from the peer during the test (an echoing peer sends them back).
    pub datagrams_received: u64,
    /// Send calls made.
    pub attempts: u64,
}

/// Sends `size`-byte datagrams as fast as the outgoing queue has room for `duration_ms`, waits
/// (≤ 1 s) for the queue to drain, and reports what really left (pywebtransport counted enqueue
/// attempts). Blocks for about `duration_ms`; traffic counts in the normal statistics too.
///
/// Ownership: `*out` is the caller's; the library only writes it.
/// Thread: not a callback thread (WTD_ERR_INVALID_STATE). Errors: WTD_ERR_INVALID_ARGUMENT
/// (NULL, duration 0), WTD_ERR_TOO_LARGE (size 0 or above max_datagram_size), WTD_ERR_CLOSED.
#[no_mangle]
pub extern "C" fn wtd_transport_throughput_test(
    transport: *mut wtd_transport,
    duration_ms: u32,
    size: usize,
    out: *mut wtd_throughput_result,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        check_sized(out, std::mem::size_of::<wtd_throughput_result>(), "out")?;
        let r = t.throughput_test(Duration::from_millis(duration_ms.into()), size)?;
        let v = wtd_throughput_result {
            struct_size: std::mem::size_of::<wtd_throughput_result>() as u32,
            reserved: 0,
            duration: r.duration,
            datagrams_sent: r.datagrams_sent,
            errors: r.errors,
            throughput_dps: r.throughput_dps,
            throughput_bps: r.throughput_bps,
            error_rate: r.error_rate,
            datagrams_received: r.datagrams_received,
            attempts: r.attempts,
        };
        write_sized(out, v, std::mem::size_of::<wtd_throughput_result>(), "out")
    })
}

// ----- callbacks ---------------------------------------------------------------------------

/// A datagram arrived. `data` is valid only during the call.
pub type wtd_transport_received_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        transport: *mut wtd_transport,
        data: *const u8,
        len: usize,
    ),
>;
/// A datagram of `size` bytes was handed to QUIC.
pub type wtd_transport_sent_cb = Option<
    unsafe extern "C" fn(user_data: *mut c_void, transport: *mut wtd_transport, size: usize),
>;

/// Transport callbacks (versioned: set `struct_size = sizeof(wtd_transport_callbacks)`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_transport_callbacks {
    /// `sizeof(wtd_transport_callbacks)`.
    pub struct_size: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Datagram arrived (NULL: datagrams are queued for the receive functions). While set,
    /// arriving datagrams go to it instead of the incoming queue (counted as read).
    pub on_received: wtd_transport_received_cb,
    /// Datagram sent (NULL: none).
    pub on_sent: wtd_transport_sent_cb,
    /// Passed to both callbacks.
    pub user_data: *mut c_void,
}

const CALLBACKS_V1: usize = std::mem::size_of::<wtd_transport_callbacks>();

/// Installs the event callbacks (pywebtransport's datagram sent / received events); NULL `callbacks`
/// removes them. They run on a wtd runtime thread (the session's connection task), never two at
/// once for one connection, so never in parallel for one transport. Inside them non-blocking wtd
/// calls are allowed (try_send, try_receive, send with timeout 0, getters, close with flush 0);
/// blocking ones return WTD_ERR_INVALID_STATE. The `transport` pointer passed is this handle;
/// callbacks stop once it is freed (a callback never sees a freed handle).
///
/// Replacing: events not yet dispatched go to the new set (none is replayed or dropped);
/// datagrams already in the incoming queue stay there for the receive calls. Like
/// `wtd_session_set_callbacks`, the call returns only after a callback of the old set that is
/// already running has returned, and the old set is never called afterwards, so its `user_data`
/// may be freed when this returns (called from inside one of this transport's callbacks, or from
/// any wtd callback thread, it does not wait: the change applies from the next event).
///
/// Ownership: the struct is copied; `user_data` stays the caller's and must stay valid while the
/// callbacks may run.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL transport, struct_size too small).
#[no_mangle]
pub extern "C" fn wtd_transport_set_callbacks(
    transport: *mut wtd_transport,
    callbacks: *const wtd_transport_callbacks,
) -> wtd_result {
    guard(|| {
        let handle = borrow(transport as *const wtd_transport)?;
        if callbacks.is_null() {
            handle.inner.set_callbacks(None);
            return Ok(());
        }
        let zero = wtd_transport_callbacks {
            struct_size: 0,
            reserved: 0,
            on_received: None,
            on_sent: None,
            user_data: std::ptr::null_mut(),
        };
        let cbs = read_options_or_default(callbacks, zero, CALLBACKS_V1, "callbacks")?;
        let target = CallbackTarget::new(transport as *const wtd_transport, cbs.user_data)?;
        let mut rust = TransportCallbacks::default();
        if let Some(f) = cbs.on_received {
            let t = target.clone();
            rust.on_received = Some(Box::new(move |data: bytes::Bytes| {
                t.call(|ud, h| {
                    // SAFETY: the application's callback, called as its registration documents.
                    unsafe { f(ud, h, data.as_ptr(), data.len()) };
                });
            }));
        }
        if let Some(f) = cbs.on_sent {
            let t = target.clone();
            rust.on_sent = Some(Box::new(move |size: usize| {
                t.call(|ud, h| {
                    // SAFETY: the application's callback, called as its registration documents.
                    unsafe { f(ud, h, size) };
                });
            }));
        }
        handle.inner.set_callbacks(Some(rust));
        Ok(())
    })
}

/// Runs a property getter: checks the handle, writes `f(transport)` to `out`.
fn getter<T>(
    transport: *const wtd_transport,
    out: *mut T,
    f: impl FnOnce(&DatagramTransport) -> T,
) -> wtd_result {
    guard(|| write_out(out, f(self::transport(transport)?), "out"))
}

// ----- properties --------------------------------------------------------------------------

/// True once closed (by `wtd_transport_close`/`_free` or because the session ended).
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT for NULL arguments.
#[no_mangle]
pub extern "C" fn wtd_transport_is_closed(
    transport: *const wtd_transport,
    out: *mut bool,
) -> wtd_result {
    getter(transport, out, |t| t.is_closed())
}

/// True while datagrams can be read (open, or closed with some still queued).
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT for NULL arguments.
#[no_mangle]
pub extern "C" fn wtd_transport_is_readable(
    transport: *const wtd_transport,
    out: *mut bool,
) -> wtd_result {
    getter(transport, out, |t| t.is_readable())
}

/// True while datagrams can be sent (transport and session open).
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT for NULL arguments.
#[no_mangle]
pub extern "C" fn wtd_transport_is_writable(
    transport: *const wtd_transport,
    out: *mut bool,
) -> wtd_result {
    getter(transport, out, |t| t.is_writable())
}

/// Datagrams accepted for sending so far: handed to QUIC or queued (local counter, never on the
/// wire); refused sends do not count.
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT for NULL arguments.
#[no_mangle]
pub extern "C" fn wtd_transport_send_sequence(
    transport: *const wtd_transport,
    out: *mut u64,
) -> wtd_result {
    getter(transport, out, |t| t.send_sequence())
}

/// Datagrams that arrived so far (local counter, never on the wire).
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT for NULL arguments.
#[no_mangle]
pub extern "C" fn wtd_transport_receive_sequence(
    transport: *const wtd_transport,
    out: *mut u64,
) -> wtd_result {
    getter(transport, out, |t| t.receive_sequence())
}

/// Sets the incoming max age in ms (0 = no limit): queued datagrams older than this are dropped
/// when read and counted in `expired_incoming`. Applies to what is already queued.
/// Ownership: nothing is handed over.
/// Thread: any. Errors: NULL transport.
#[no_mangle]
pub extern "C" fn wtd_transport_set_incoming_max_age(
    transport: *mut wtd_transport,
    max_age_ms: u32,
) -> wtd_result {
    guard(|| {
        self::transport(transport)?.set_incoming_max_age(opt_ms(max_age_ms));
        Ok(())
    })
}

/// Sets the outgoing max age in ms (0 = no limit): queued datagrams older than this are dropped
/// before sending and counted in `dropped_too_old`.
/// Ownership: nothing is handed over.
/// Thread: any. Errors: NULL transport.
#[no_mangle]
pub extern "C" fn wtd_transport_set_outgoing_max_age(
    transport: *mut wtd_transport,
    max_age_ms: u32,
) -> wtd_result {
    guard(|| {
        self::transport(transport)?.set_outgoing_max_age(opt_ms(max_age_ms));
        Ok(())
    })
}

// ----- utilities ---------------------------------------------------------------------------

/// Writes a heartbeat payload, `HEARTBEAT:<unix seconds>` (ASCII, no NUL), into `buf` (capacity
/// `cap`) and its length to `*out_len` (optional). Too small: WTD_ERR_BUFFER_TOO_SMALL with the
/// needed length in `*out_len` (32 bytes always suffice).
/// Ownership: the buffers stay the caller's and are only written during the call.
/// Thread: any.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL buf with cap > 0), WTD_ERR_BUFFER_TOO_SMALL (the
/// needed length is written to `*out_len`).
#[no_mangle]
pub extern "C" fn wtd_create_heartbeat_datagram(
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> wtd_result {
    guard(|| {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        copy_bytes_out(&heartbeat_datagram(unix), buf, cap, out_len)
    })
}

/// True when `data[0..len]` is a heartbeat datagram (starts with `HEARTBEAT:`); false for NULL.
/// Ownership: `data` is only read during the call.
/// Thread: any. Errors: none.
#[no_mangle]
pub extern "C" fn wtd_is_heartbeat_datagram(data: *const u8, len: usize) -> bool {
    guard_value(false, || Ok(is_heartbeat(arg_bytes(data, len, "data")?)))
}
