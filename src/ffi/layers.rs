//! C exports for the layers above the datagram transport (SPEC §4): structured datagrams
//! (`wtd_structured_*`, the seed's StructuredDatagramTransport), the reliability layer
//! (`wtd_reliability_*`, DatagramReliabilityLayer), the broadcaster (`wtd_broadcaster_*`,
//! DatagramBroadcaster) and the monitor (`wtd_monitor_*`, DatagramMonitor).
//!
//! Every layer takes a `wtd_transport` handle and keeps its own reference to the transport, so the
//! transport handle may be freed first: the layer then reports WTD_ERR_CLOSED (freeing a transport
//! closes it).

#![allow(non_camel_case_types)]

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::handle::{
    borrow, free_box, new_arc, new_box, take_arc, take_box, ArcOwned, BoxOwned, CallbackTarget,
    Handle,
};
use super::transport::{transport, wtd_transport};
use super::{
    arg_buffer, arg_bytes, check_elements, check_sized, guard, guard_void, ms_of, opt_ms,
    read_options, read_options_or_default, wait_of, write_elements, write_out, write_sized,
    UserData,
};
use crate::datagram::batch;
use crate::datagram::broadcaster::Broadcaster;
use crate::datagram::monitor::{wtd_alert_kind, Alert, Monitor, MonitorConfig, Sample};
use crate::datagram::reliability::{
    wtd_reliable_outcome, ReliabilityCallbacks, ReliabilityConfig, ReliabilityLayer,
    MAX_RECEIVE_WINDOW,
};
use crate::datagram::structured::StructuredTransport;
use crate::error::{wtd_result, Error, Result};

fn serialization(msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(wtd_result::WTD_ERR_SERIALIZATION, msg)
}

// =================================================================================================
// Structured datagrams
// =================================================================================================

/// Serializer callback: writes the bytes of object `obj` of type `type_id` into `buf` (capacity
/// `cap` = the largest body that fits one datagram) and their count to `*out_len`. Returns 0 on
/// success, anything else on failure (the send then fails with WTD_ERR_SERIALIZATION and nothing
/// is sent). Called on the thread that calls `wtd_structured_send_obj`.
pub type wtd_structured_serialize_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        type_id: u16,
        obj: *const c_void,
        buf: *mut u8,
        cap: usize,
        out_len: *mut usize,
    ) -> c_int,
>;

/// Deserializer callback: builds the object of type `type_id` from `data[0..len]` (valid only
/// during the call) and stores it in `*out_obj` (the caller of `wtd_structured_receive_obj` then
/// owns it). Returns 0 on success, anything else on failure (→ WTD_ERR_SERIALIZATION). Called on
/// the thread that calls `wtd_structured_receive_obj`.
pub type wtd_structured_deserialize_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        type_id: u16,
        data: *const u8,
        len: usize,
        out_obj: *mut *mut c_void,
    ) -> c_int,
>;

/// Options of a structured transport: the serializer (both callbacks are required). Fill with
/// `wtd_structured_options_default`, then set the callbacks.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_structured_options {
    /// `sizeof(wtd_structured_options)` (set by `wtd_structured_options_default`).
    pub struct_size: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Object → bytes (required).
    pub serialize: wtd_structured_serialize_cb,
    /// Bytes → object (required).
    pub deserialize: wtd_structured_deserialize_cb,
    /// Passed to both callbacks; must stay valid until `wtd_structured_free`.
    pub user_data: *mut c_void,
}

const STRUCTURED_OPTIONS_V1: usize = std::mem::size_of::<wtd_structured_options>();

fn structured_defaults() -> wtd_structured_options {
    wtd_structured_options {
        struct_size: STRUCTURED_OPTIONS_V1 as u32,
        reserved: 0,
        serialize: None,
        deserialize: None,
        user_data: std::ptr::null_mut(),
    }
}

/// A structured datagram transport (opaque): `u16 big-endian type id || serializer output` per
/// datagram, byte-compatible with pywebtransport's StructuredDatagramTransport. Create with
/// `wtd_structured_new`, release with `wtd_structured_free`. Functions may be called from any
/// thread; the handle must not be freed while another call on it is running.
pub struct wtd_structured {
    inner: StructuredTransport,
    serialize:
        unsafe extern "C" fn(*mut c_void, u16, *const c_void, *mut u8, usize, *mut usize) -> c_int,
    deserialize:
        unsafe extern "C" fn(*mut c_void, u16, *const u8, usize, *mut *mut c_void) -> c_int,
    user_data: UserData,
}

impl Handle for wtd_structured {
    type Ownership = BoxOwned;
    const NAME: &'static str = "structured";
}

fn structured<'a>(p: *const wtd_structured) -> Result<&'a wtd_structured> {
    borrow(p)
}

/// Fills `*options` with the defaults: `struct_size` set, no callbacks, `user_data` NULL.
///
/// Ownership: `*options` is the caller's; the library only writes it.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT when `options` is NULL.
#[no_mangle]
pub extern "C" fn wtd_structured_options_default(
    options: *mut wtd_structured_options,
) -> wtd_result {
    guard(|| {
        write_sized(
            options,
            structured_defaults(),
            STRUCTURED_OPTIONS_V1,
            "options",
        )
    })
}

/// Creates a structured transport over `transport` with the serializer in `options` and an empty
/// registry (register type ids with `wtd_structured_register`). It reads and sends through the
/// transport's queues: don't also read plain datagrams from that transport (a structured receive
/// consumes whatever comes first).
///
/// Ownership: `*out` owns the new handle; free it with `wtd_structured_free`. It keeps its own
/// reference to the transport (freeing the transport handle first closes it: calls then fail
/// with WTD_ERR_CLOSED). Thread: any.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL transport/options/out, a NULL callback, struct_size too
/// small).
#[no_mangle]
pub extern "C" fn wtd_structured_new(
    transport: *mut wtd_transport,
    options: *const wtd_structured_options,
    out: *mut *mut wtd_structured,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let o = read_options(
            options,
            structured_defaults(),
            STRUCTURED_OPTIONS_V1,
            "options",
        )?;
        let (Some(serialize), Some(deserialize)) = (o.serialize, o.deserialize) else {
            return Err(Error::invalid(
                "options.serialize and options.deserialize are both required",
            ));
        };
        let handle = new_box(wtd_structured {
            inner: StructuredTransport::new(t),
            serialize,
            deserialize,
            user_data: UserData(o.user_data),
        });
        write_out(out, handle, "out")
    })
}

/// Registers `type_id` (pywebtransport's registry entry): objects of this type may be sent and
/// received.
/// Ownership: nothing is handed over.
/// Thread: any.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL handle, `type_id` already registered).
#[no_mangle]
pub extern "C" fn wtd_structured_register(
    structured: *mut wtd_structured,
    type_id: u16,
) -> wtd_result {
    guard(|| self::structured(structured)?.inner.register(type_id))
}

/// Serializes `obj` with the serialize callback and queues `type_id (u16 BE) || bytes` on the
/// transport with `priority` (any int32, higher first) and `ttl_ms` (0 = none), like
/// `wtd_transport_send` with `timeout_ms` -1.
///
/// Ownership: `obj` is only passed to the serializer during the call. Thread: any (the
/// serializer runs on this thread; calls from several threads may run it concurrently).
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL handle), WTD_ERR_SERIALIZATION (type id not
/// registered, serializer returned non-zero or claimed more than `cap` bytes — nothing is sent),
/// and the send errors of `wtd_transport_send` (WTD_ERR_TOO_LARGE, WTD_ERR_WOULD_BLOCK,
/// WTD_ERR_TIMEOUT, WTD_ERR_CLOSED).
#[no_mangle]
pub extern "C" fn wtd_structured_send_obj(
    structured: *mut wtd_structured,
    type_id: u16,
    obj: *const c_void,
    priority: i32,
    ttl_ms: u32,
) -> wtd_result {
    guard(|| {
        let s = self::structured(structured)?;
        s.inner
            .send_with(type_id, priority, opt_ms(ttl_ms), None, |body| {
                let mut len = 0usize;
                // SAFETY: the application's callback, called as its registration documents.
                let rc = unsafe {
                    (s.serialize)(
                        s.user_data.get(),
                        type_id,
                        obj,
                        body.as_mut_ptr(),
                        body.len(),
                        &mut len,
                    )
                };
                if rc != 0 {
                    return Err(serialization(format!(
                        "serializer failed ({rc}) for type id {type_id}"
                    )));
                }
                Ok(len)
            })
    })
}

/// Receives the next structured datagram, waiting up to `timeout_ms` (-1 = forever, 0 = don't
/// wait → WTD_ERR_WOULD_BLOCK), and turns it into an object with the deserialize callback:
/// `*out_type` = its type id, `*out_obj` = what the deserializer produced.
///
/// A datagram shorter than 2 bytes, of an unregistered type id, or that the deserializer refuses
/// is consumed (it can never become valid), counted in the transport's `receive_errors` and
/// reported as WTD_ERR_SERIALIZATION; the next call moves on to the next datagram.
///
/// Ownership: the caller owns `*out_obj` (as the deserializer defines). Thread: any; a waiting
/// receive from a callback thread is refused (WTD_ERR_INVALID_STATE).
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments), WTD_ERR_SERIALIZATION (see above),
/// WTD_ERR_WOULD_BLOCK, WTD_ERR_TIMEOUT, WTD_ERR_CLOSED (closed and drained).
#[no_mangle]
pub extern "C" fn wtd_structured_receive_obj(
    structured: *mut wtd_structured,
    out_type: *mut u16,
    out_obj: *mut *mut c_void,
    timeout_ms: i32,
) -> wtd_result {
    guard(|| {
        let s = self::structured(structured)?;
        if out_type.is_null() || out_obj.is_null() {
            return Err(Error::invalid("out_type and out_obj must not be NULL"));
        }
        let (id, obj) = s.inner.receive_with(wait_of(timeout_ms), |id, body| {
            let mut obj: *mut c_void = std::ptr::null_mut();
            // SAFETY: the application's callback, called as its registration documents.
            let rc = unsafe {
                (s.deserialize)(s.user_data.get(), id, body.as_ptr(), body.len(), &mut obj)
            };
            if rc != 0 {
                return Err(serialization(format!(
                    "deserializer failed ({rc}) for type id {id} ({} bytes)",
                    body.len()
                )));
            }
            Ok((id, obj))
        })?;
        write_out(out_type, id, "out_type")?;
        write_out(out_obj, obj, "out_obj")
    })
}

/// Writes to `*out` whether the underlying transport is closed (pywebtransport's `is_closed`).
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments).
#[no_mangle]
pub extern "C" fn wtd_structured_is_closed(
    structured: *const wtd_structured,
    out: *mut bool,
) -> wtd_result {
    guard(|| {
        let s = self::structured(structured)?;
        write_out(out, s.inner.transport().is_closed(), "out")
    })
}

/// Closes the underlying transport without flushing (pywebtransport's `close`; same as
/// `wtd_transport_close(transport, 0)`). Idempotent. The handle stays valid until
/// `wtd_structured_free`.
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL).
#[no_mangle]
pub extern "C" fn wtd_structured_close(structured: *mut wtd_structured) -> wtd_result {
    guard(|| self::structured(structured)?.inner.transport().close(None))
}

/// Releases the handle (the transport stays open: it belongs to its own handle). NULL is a
/// no-op. No other call on this handle may be running or start.
/// Ownership: releases the handle; it must not be used afterwards.
/// Thread: any.
/// Errors: none (a caught panic is logged and recorded as the last error).
#[no_mangle]
pub extern "C" fn wtd_structured_free(structured: *mut wtd_structured) {
    guard_void(|| free_box(structured))
}

// =================================================================================================
// Reliability layer
// =================================================================================================

/// Reliability options. Fill with `wtd_reliability_options_default` (pywebtransport's constructor
/// defaults: ack_timeout 2 s, 5 retries) or `wtd_reliability_options_low_latency` (pywebtransport's /// `create`: 1 s, 3 retries), then change fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_reliability_options {
    /// `sizeof(wtd_reliability_options)` (set by the `_default` / `_factory` functions).
    pub struct_size: u32,
    /// Retransmit timeout in ms before the first RTT sample (> 0); afterwards the timeout is
    /// derived from the measured RTT (srtt + 4·rttvar, clamped to min/max_rto_ms) and doubles
    /// with every retransmission of a message.
    pub ack_timeout_ms: u32,
    /// Retransmissions of one message before it is given up (reported as
    /// WTD_RELIABLE_GAVE_UP).
    pub max_retries: u32,
    /// 1 = deliver messages in sequence order (a gap waits up to `gap_timeout_ms`), 0 = as they
    /// arrive (default). Either way each message is delivered at most once.
    pub in_order: u32,
    /// Messages awaiting an ACK at once (> 0); beyond it `wtd_reliability_send` fails with
    /// WTD_ERR_WOULD_BLOCK. Default 256.
    pub max_in_flight: u32,
    /// Lower bound of the RTT-derived retransmit timeout, ms. Default 20.
    pub min_rto_ms: u32,
    /// Upper bound of the retransmit timeout (backoff included), ms. Default 10000.
    pub max_rto_ms: u32,
    /// A missing sequence number older than this (ms) is skipped by the receiver (the sender gave
    /// up on it) so later messages flow again; 0 (default) = derived from the sender's backoff:
    /// the sum of its `max_retries + 1` retransmit timeouts (ack_timeout doubling up to
    /// max_rto) + 100 ms, i.e. 44.1 s for `_default` and 15.1 s for `_factory`. A copy that
    /// arrives after its number was skipped is not acknowledged in in-order mode (the sender
    /// reports WTD_RELIABLE_GAVE_UP) and delivered late in unordered mode.
    pub gap_timeout_ms: u32,
    /// Transport priority of DATA frames; ACKs go one above. Default 0.
    pub priority: i32,
    /// Receive window W, 0 (default) = 4 × max_in_flight (1024), at most 2^30: DATA with a
    /// sequence number at or beyond the oldest missing one + W is refused unacknowledged
    /// (`out_of_window`), and at most W messages are held for order or wait to be received
    /// (beyond: `refused_full`). Bounds what a peer can make this layer store.
    pub receive_window: u32,
}

/// First published size of `wtd_reliability_options` (API 0.2).
const RELIABILITY_OPTIONS_V1: usize = std::mem::size_of::<wtd_reliability_options>();

fn reliability_options_from(c: &ReliabilityConfig) -> wtd_reliability_options {
    wtd_reliability_options {
        struct_size: std::mem::size_of::<wtd_reliability_options>() as u32,
        ack_timeout_ms: ms_of(c.ack_timeout),
        max_retries: c.max_retries,
        in_order: c.in_order as u32,
        max_in_flight: u32::try_from(c.max_in_flight).unwrap_or(u32::MAX),
        min_rto_ms: ms_of(c.min_rto),
        max_rto_ms: ms_of(c.max_rto),
        gap_timeout_ms: 0,
        priority: c.priority,
        receive_window: u32::try_from(c.receive_window).unwrap_or(u32::MAX),
    }
}

fn reliability_config(o: &wtd_reliability_options) -> Result<ReliabilityConfig> {
    if o.ack_timeout_ms == 0 || o.max_in_flight == 0 {
        return Err(Error::invalid(
            "ack_timeout_ms and max_in_flight must be > 0",
        ));
    }
    let in_order = match o.in_order {
        0 => false,
        1 => true,
        v => return Err(Error::invalid(format!("in_order must be 0 or 1, not {v}"))),
    };
    if o.min_rto_ms > o.max_rto_ms {
        return Err(Error::invalid("min_rto_ms must not exceed max_rto_ms"));
    }
    let ack_timeout = Duration::from_millis(u64::from(o.ack_timeout_ms));
    let base = ReliabilityConfig {
        ack_timeout,
        max_retries: o.max_retries,
        ..ReliabilityConfig::constructor_defaults()
    };
    if o.receive_window as usize > MAX_RECEIVE_WINDOW {
        return Err(Error::invalid(format!(
            "receive_window must be at most {MAX_RECEIVE_WINDOW}, not {}",
            o.receive_window
        )));
    }
    // 0 stays 0: the layer derives it from the backoff schedule.
    let gap_timeout = Duration::from_millis(u64::from(o.gap_timeout_ms));
    Ok(ReliabilityConfig {
        in_order,
        max_in_flight: o.max_in_flight as usize,
        min_rto: Duration::from_millis(u64::from(o.min_rto_ms)),
        max_rto: Duration::from_millis(u64::from(o.max_rto_ms)),
        gap_timeout,
        priority: o.priority,
        receive_window: o.receive_window as usize,
        ..base
    })
}

/// One finished reliable send (an element of the array `wtd_reliability_poll_outcomes` fills;
/// the caller passes `sizeof(wtd_reliable_result)` as the element size, so fields can be appended).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_reliable_result {
    /// The sequence number `wtd_reliability_send` returned.
    pub seq: u32,
    /// A `wtd_reliable_outcome` value: delivered (ACKed) or given up.
    pub outcome: wtd_reliable_outcome,
}

/// First published size of `wtd_reliable_result` (API 0.2).
const RELIABLE_RESULT_V1: usize = std::mem::size_of::<wtd_reliable_result>();

/// A message was delivered to this end. `data` is valid only during the call.
pub type wtd_reliability_message_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        reliability: *mut wtd_reliability,
        data: *const u8,
        len: usize,
    ),
>;

/// A message sent from this end finished: acknowledged or given up (`outcome` a
/// `wtd_reliable_outcome` value).
pub type wtd_reliability_outcome_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        reliability: *mut wtd_reliability,
        seq: u32,
        outcome: wtd_reliable_outcome,
    ),
>;

/// Reliability callbacks (versioned: set `struct_size = sizeof(wtd_reliability_callbacks)`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_reliability_callbacks {
    /// `sizeof(wtd_reliability_callbacks)`.
    pub struct_size: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Message delivered (NULL: messages queue for `wtd_reliability_receive`).
    pub on_message: wtd_reliability_message_cb,
    /// Send finished (NULL: outcomes queue for `wtd_reliability_poll_outcomes`).
    pub on_outcome: wtd_reliability_outcome_cb,
    /// Passed to both callbacks.
    pub user_data: *mut c_void,
}

const RELIABILITY_CALLBACKS_V1: usize = std::mem::size_of::<wtd_reliability_callbacks>();

/// Counters of a reliability layer (`wtd_reliability_get_stats`). Append-only: check
/// `struct_size` before reading fields added later.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_reliability_stats {
    /// Size of this struct as the library filled it.
    pub struct_size: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Messages accepted by `wtd_reliability_send`.
    pub sent: u64,
    /// DATA retransmissions (each RTO expiry of an unacknowledged message).
    pub retransmits: u64,
    /// Sent messages the peer acknowledged (outcome WTD_RELIABLE_DELIVERED).
    pub acked: u64,
    /// Sent messages given up after `max_retries` retransmissions, or still pending at close
    /// (outcome WTD_RELIABLE_GAVE_UP).
    pub gave_up: u64,
    /// Messages delivered to the application on this end (each at most once).
    pub delivered: u64,
    /// DATA frames that arrived again after their message was delivered or held; suppressed
    /// (never delivered twice) and acknowledged again.
    pub duplicates: u64,
    /// ACK frames sent.
    pub acks_sent: u64,
    /// ACK frames received.
    pub acks_received: u64,
    /// ACKs for no pending message (late duplicates after a retransmission).
    pub unknown_acks: u64,
    /// Arriving frames that started like DATA/ACK but were malformed (dropped).
    pub malformed: u64,
    /// Sequence gaps the receiver skipped after `gap_timeout_ms`.
    pub gaps_skipped: u64,
    /// Outcomes dropped because nobody polled them (the queue holds 65,536; oldest dropped).
    pub outcomes_dropped: u64,
    /// Messages awaiting an ACK now.
    pub in_flight: u64,
    /// Smoothed round-trip time in µs (0 before the first sample; only unambiguous samples —
    /// messages acknowledged without a retransmission — are used).
    pub srtt_us: u64,
    /// Retransmit timeout in µs for a new message now.
    pub rto_us: u64,
    /// Arriving frames dropped on purpose by `wtd_reliability_set_test_drop_fraction`.
    pub injected_drops: u64,
    /// DATA frames that arrived.
    pub data_received: u64,
    /// DATA frames refused (not acknowledged) because their sequence number was at or beyond the
    /// oldest missing one + `receive_window`.
    pub out_of_window: u64,
    /// DATA frames refused (not acknowledged) because `receive_window` messages were already
    /// held for order or waiting to be received.
    pub refused_full: u64,
    /// DATA frames for a sequence number the receiver had skipped after the gap timeout:
    /// delivered late in unordered mode, refused unacknowledged in in-order mode.
    pub late_after_skip: u64,
    /// Now: sequence numbers tracked above the oldest missing one (held messages + seen
    /// numbers); at most `receive_window`.
    pub recv_buffered: u64,
    /// Now: messages waiting for `wtd_reliability_receive`; at most `receive_window`.
    pub recv_ready: u64,
    /// ACKs not sent because the transport's outgoing queue was full (an ACK never evicts an
    /// application datagram) or the send failed; the sender retransmits and the duplicate is
    /// acknowledged when there is room.
    pub acks_not_sent: u64,
}

/// A reliability layer on a transport (opaque). Create with `wtd_reliability_new`, release with
/// `wtd_reliability_free`. Functions may be called from any thread; the handle must not be freed
/// while another call on it is running.
pub struct wtd_reliability {
    inner: ReliabilityLayer,
}

impl Handle for wtd_reliability {
    type Ownership = ArcOwned;
    const NAME: &'static str = "reliability";
}

fn reliability<'a>(p: *const wtd_reliability) -> Result<&'a ReliabilityLayer> {
    Ok(&borrow(p)?.inner)
}

/// Fills `*options` with the defaults: ack_timeout_ms 2000, max_retries 5,
/// in_order 0, max_in_flight 256, min_rto_ms 20, max_rto_ms 10000, gap_timeout_ms 0 (derived),
/// priority 0, receive_window 0 (4 × max_in_flight). Set `options->struct_size =
/// sizeof(wtd_reliability_options)` first (the library writes at most that many bytes and sets it
/// to what it wrote).
///
/// Ownership: `*options` is the caller's; the library only writes it.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT when `options` is NULL.
#[no_mangle]
pub extern "C" fn wtd_reliability_options_default(
    options: *mut wtd_reliability_options,
) -> wtd_result {
    guard(|| {
        let o = reliability_options_from(&ReliabilityConfig::constructor_defaults());
        write_sized(options, o, RELIABILITY_OPTIONS_V1, "options")
    })
}

/// Fills `*options` with defaults that give up sooner: ack_timeout_ms 1000, max_retries 3, the
/// rest as `wtd_reliability_options_default` (pywebtransport's `DatagramReliabilityLayer.create`).
/// `struct_size` as for `wtd_reliability_options_default`.
///
/// Ownership: `*options` is the caller's; the library only writes it.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT when `options` is NULL.
#[no_mangle]
pub extern "C" fn wtd_reliability_options_low_latency(
    options: *mut wtd_reliability_options,
) -> wtd_result {
    guard(|| {
        let o = reliability_options_from(&ReliabilityConfig::factory_defaults());
        write_sized(options, o, RELIABILITY_OPTIONS_V1, "options")
    })
}

/// Attaches a reliability layer to `transport` (`options` NULL = `wtd_reliability_options_default`).
/// From now on the transport's arriving reliability frames (DATA `0x04 "DATA" u32-BE-seq payload`,
/// ACK `0x03 "ACK" decimal-seq` — pywebtransport's wire format) go to the layer, not to the plain
/// receive queue; other datagrams still reach the transport's receive functions. One layer per
/// transport (a second one takes the frames over).
///
/// Ownership: `*out` owns the new handle; free it with `wtd_reliability_free`. The layer keeps its
/// own reference to the transport. Thread: any.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL transport/out, bad options: ack_timeout_ms or
/// max_in_flight 0, in_order not 0/1, min_rto_ms > max_rto_ms, receive_window above 2^30,
/// struct_size too small).
#[no_mangle]
pub extern "C" fn wtd_reliability_new(
    transport: *mut wtd_transport,
    options: *const wtd_reliability_options,
    out: *mut *mut wtd_reliability,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let defaults = reliability_options_from(&ReliabilityConfig::constructor_defaults());
        let o = read_options_or_default(options, defaults, RELIABILITY_OPTIONS_V1, "options")?;
        let cfg = reliability_config(&o)?;
        let layer = ReliabilityLayer::attach(t, cfg)?;
        let handle = new_arc(wtd_reliability { inner: layer });
        write_out(out, handle, "out")
    })
}

/// Sends `data[0..len]` (copied) reliably: it is retransmitted until the peer's layer
/// acknowledges it or `max_retries` retransmissions went unanswered. `*out_seq` (optional)
/// receives its sequence number, which `wtd_reliability_poll_outcomes` / the outcome callback
/// report later. Never blocks.
///
/// Ownership: `data` is only read during the call (copied when queued).
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL handle, NULL data with len > 0),
/// WTD_ERR_TOO_LARGE (len + 9 framing bytes above the transport's max_datagram_size),
/// WTD_ERR_WOULD_BLOCK (`max_in_flight` messages await ACKs), WTD_ERR_CLOSED (layer or transport
/// closed).
#[no_mangle]
pub extern "C" fn wtd_reliability_send(
    reliability: *mut wtd_reliability,
    data: *const u8,
    len: usize,
    out_seq: *mut u32,
) -> wtd_result {
    guard(|| {
        let r = self::reliability(reliability)?;
        let data = arg_bytes(data, len, "data")?;
        let seq = r.send(data)?;
        if !out_seq.is_null() {
            write_out(out_seq, seq, "out_seq")?;
        }
        Ok(())
    })
}

/// Receives the next delivered message into `buf` (capacity `cap`), its length to `*out_len`,
/// waiting up to `timeout_ms` (-1 = forever, 0 = don't wait → WTD_ERR_WOULD_BLOCK). Messages
/// come here only while no `on_message` callback is set.
///
/// If the message is larger than `cap`: WTD_ERR_BUFFER_TOO_SMALL, its size in `*out_len`, and the
/// message stays first in line (nothing is lost; `buf` NULL with `cap` 0 is a size query).
///
/// Ownership: the buffers stay the caller's and are only written during the call.
/// Thread: any; a waiting receive from a callback thread is refused (WTD_ERR_INVALID_STATE).
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL handle/out_len, NULL buf with cap > 0),
/// WTD_ERR_BUFFER_TOO_SMALL, WTD_ERR_WOULD_BLOCK, WTD_ERR_TIMEOUT, WTD_ERR_CLOSED (layer closed
/// and drained; a close wakes blocked receivers).
#[no_mangle]
pub extern "C" fn wtd_reliability_receive(
    reliability: *mut wtd_reliability,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
    timeout_ms: i32,
) -> wtd_result {
    guard(|| {
        let r = self::reliability(reliability)?;
        if out_len.is_null() {
            return Err(Error::invalid("out_len is NULL"));
        }
        let slice = arg_buffer(buf, cap, "buf")?;
        let needed = Cell::new(0usize);
        let res = r.receive_where(wait_of(timeout_ms), batch::fits(cap, &needed));
        match res {
            Ok(m) => {
                slice[..m.len()].copy_from_slice(&m);
                write_out(out_len, m.len(), "out_len")
            }
            Err(e) => {
                if e.code == wtd_result::WTD_ERR_BUFFER_TOO_SMALL {
                    write_out(out_len, needed.get(), "out_len")?;
                }
                Err(e)
            }
        }
    })
}

/// Takes up to `count` finished sends, oldest first, into `results` (an array of `count`
/// elements of `result_size` bytes — pass `sizeof(wtd_reliable_result)`); `*out_count` = how
/// many (0 when none: not an error). Outcomes come here only while no `on_outcome` callback is
/// set (the queue keeps the newest 65,536; older ones are counted in `outcomes_dropped`). Never
/// blocks.
///
/// Ownership: the array stays the caller's and is only written during the call.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL handle/out_count, NULL results with
/// count > 0, `result_size` below the first published size, `count × result_size` overflowing).
#[no_mangle]
pub extern "C" fn wtd_reliability_poll_outcomes(
    reliability: *mut wtd_reliability,
    results: *mut wtd_reliable_result,
    result_size: usize,
    count: usize,
    out_count: *mut usize,
) -> wtd_result {
    guard(|| {
        let r = self::reliability(reliability)?;
        if out_count.is_null() {
            return Err(Error::invalid("out_count is NULL"));
        }
        check_elements(results, result_size, count, RELIABLE_RESULT_V1, "results")?;
        let got = r.poll_outcomes(count);
        let items = got
            .iter()
            .map(|&(seq, outcome)| wtd_reliable_result { seq, outcome });
        let n = write_elements(
            results,
            result_size,
            count,
            RELIABLE_RESULT_V1,
            items,
            "results",
        )?;
        write_out(out_count, n, "out_count")
    })
}

/// Installs the layer's callbacks (`callbacks` NULL removes them; the struct is copied). With
/// `on_message` set, delivered messages go to it instead of `wtd_reliability_receive`; with
/// `on_outcome` set, outcomes go to it instead of `wtd_reliability_poll_outcomes`. What is already
/// queued (messages, outcomes) stays queued for the poll calls; events not yet dispatched go to
/// the new set. Callbacks run on a wtd runtime thread (the connection task or the layer's timer;
/// give-ups reported by `wtd_reliability_close` run on the closing thread), one at a time —
/// never in parallel for one layer. Inside them non-blocking wtd calls are allowed (e.g.
/// `wtd_reliability_send`); waiting ones return WTD_ERR_INVALID_STATE. The `reliability` pointer
/// passed is this handle; callbacks stop once it is freed (a callback never sees a freed handle).
/// Replacing waits until a callback of the old set that is already running has returned, and the
/// old set is never called afterwards, so its `user_data` may be freed when this returns (called
/// from inside one of this layer's callbacks, or from any wtd callback thread, it does not wait:
/// the change applies from the next event).
///
/// Ownership: the struct is copied; `user_data` stays the caller's and must stay valid while the
/// callbacks may run.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL handle, `struct_size` too small).
#[no_mangle]
pub extern "C" fn wtd_reliability_set_callbacks(
    reliability: *mut wtd_reliability,
    callbacks: *const wtd_reliability_callbacks,
) -> wtd_result {
    guard(|| {
        let handle = borrow(reliability as *const wtd_reliability)?;
        if callbacks.is_null() {
            handle.inner.set_callbacks(None);
            return Ok(());
        }
        let zero = wtd_reliability_callbacks {
            struct_size: 0,
            reserved: 0,
            on_message: None,
            on_outcome: None,
            user_data: std::ptr::null_mut(),
        };
        let cbs = read_options(callbacks, zero, RELIABILITY_CALLBACKS_V1, "callbacks")?;
        let target = CallbackTarget::new(reliability as *const wtd_reliability, cbs.user_data)?;
        let mut rust = ReliabilityCallbacks::default();
        if let Some(f) = cbs.on_message {
            let t = target.clone();
            rust.on_message = Some(Box::new(move |data: bytes::Bytes| {
                t.call(|ud, h| {
                    // SAFETY: the application's callback, called as its registration documents.
                    unsafe { f(ud, h, data.as_ptr(), data.len()) };
                });
            }));
        }
        if let Some(f) = cbs.on_outcome {
            let t = target.clone();
            rust.on_outcome = Some(Box::new(move |seq: u32, o: wtd_reliable_outcome| {
                t.call(|ud, h| {
                    // SAFETY: the application's callback, called as its registration documents.
                    unsafe { f(ud, h, seq, o) };
                });
            }));
        }
        handle.inner.set_callbacks(Some(rust));
        Ok(())
    })
}

/// TEST KNOB (not for production): from now on this layer drops the fraction `fraction` (0..1,
/// 0 = off, the default) of arriving DATA and ACK frames before processing them (deterministic
/// pseudo-random), to simulate loss on a real link. Counted in `injected_drops`.
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL handle, `fraction` outside 0..1 or NaN).
#[no_mangle]
pub extern "C" fn wtd_reliability_set_test_drop_fraction(
    reliability: *mut wtd_reliability,
    fraction: f64,
) -> wtd_result {
    guard(|| self::reliability(reliability)?.set_inbound_loss(fraction))
}

/// Fills `*out` with the layer's counters (see `wtd_reliability_stats`).
///
/// Ownership: `*out` is the caller's; the library only writes it.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments).
#[no_mangle]
pub extern "C" fn wtd_reliability_get_stats(
    reliability: *const wtd_reliability,
    out: *mut wtd_reliability_stats,
) -> wtd_result {
    guard(|| {
        let s = self::reliability(reliability)?.stats();
        let v = wtd_reliability_stats {
            struct_size: std::mem::size_of::<wtd_reliability_stats>() as u32,
            reserved: 0,
            sent: s.sent,
            retransmits: s.retransmits,
            acked: s.acked,
            gave_up: s.gave_up,
            delivered: s.delivered,
            duplicates: s.duplicates,
            acks_sent: s.acks_sent,
            acks_received: s.acks_received,
            unknown_acks: s.unknown_acks,
            malformed: s.malformed,
            gaps_skipped: s.gaps_skipped,
            outcomes_dropped: s.outcomes_dropped,
            in_flight: s.in_flight,
            srtt_us: s.srtt_us,
            rto_us: s.rto_us,
            injected_drops: s.injected_drops,
            data_received: s.data_received,
            out_of_window: s.out_of_window,
            refused_full: s.refused_full,
            late_after_skip: s.late_after_skip,
            recv_buffered: s.recv_buffered,
            recv_ready: s.recv_ready,
            acks_not_sent: s.acks_not_sent,
        };
        write_sized(out, v, std::mem::size_of::<wtd_reliability_stats>(), "out")
    })
}

/// Detaches the layer from its transport (reliability frames then reach the plain receive queue
/// again); messages still awaiting an ACK are reported as WTD_RELIABLE_GAVE_UP (outcome queue or
/// callback), blocked receivers wake with WTD_ERR_CLOSED, later sends fail with WTD_ERR_CLOSED;
/// messages already delivered stay readable. The transport stays open. Idempotent; the handle
/// stays valid until `wtd_reliability_free`.
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL).
#[no_mangle]
pub extern "C" fn wtd_reliability_close(reliability: *mut wtd_reliability) -> wtd_result {
    guard(|| {
        self::reliability(reliability)?.close();
        Ok(())
    })
}

/// Removes the callbacks, closes the layer (see `wtd_reliability_close`; give-ups then only go to
/// the outcome queue, which is freed too) and releases the handle. NULL is a no-op. No other call
/// on this handle may be running or start; callbacks already running finish normally and none
/// starts afterwards.
/// Ownership: releases the handle; it must not be used afterwards.
/// Thread: any.
/// Errors: none (a caught panic is logged and recorded as the last error).
#[no_mangle]
pub extern "C" fn wtd_reliability_free(reliability: *mut wtd_reliability) {
    guard_void(|| {
        let Some(handle) = take_arc(reliability) else {
            return;
        };
        handle.inner.set_callbacks(None);
        handle.inner.close();
        drop(handle);
    })
}

// =================================================================================================
// Broadcaster
// =================================================================================================

/// A set of transports to send one datagram to (opaque). Create with `wtd_broadcaster_new`,
/// release with `wtd_broadcaster_free`. Functions may be called from any thread, concurrently.
pub struct wtd_broadcaster {
    inner: Broadcaster,
}

impl Handle for wtd_broadcaster {
    type Ownership = BoxOwned;
    const NAME: &'static str = "broadcaster";
}

fn broadcaster<'a>(p: *const wtd_broadcaster) -> Result<&'a Broadcaster> {
    Ok(&borrow(p)?.inner)
}

/// Outcome of one broadcast (`wtd_broadcaster_broadcast`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_broadcast_result {
    /// Size of this struct as the library filled it.
    pub struct_size: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Transports that accepted (queued) the datagram.
    pub accepted: usize,
    /// Transports that refused it this time (queue full, too large) and were kept.
    pub failed: usize,
    /// Closed transports removed from the set by this broadcast.
    pub pruned: usize,
}

/// First published size of `wtd_broadcast_result` (API 0.2).
const BROADCAST_RESULT_V1: usize = std::mem::size_of::<wtd_broadcast_result>();

/// Creates an empty broadcaster (pywebtransport's `DatagramBroadcaster()` / `create()`).
///
/// Ownership: `*out` owns it; free with `wtd_broadcaster_free`. Thread: any.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL out).
#[no_mangle]
pub extern "C" fn wtd_broadcaster_new(out: *mut *mut wtd_broadcaster) -> wtd_result {
    guard(|| {
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        write_out(
            out,
            new_box(wtd_broadcaster {
                inner: Broadcaster::new(),
            }),
            "out",
        )
    })
}

/// Adds `transport` to the set (adding it twice is a no-op). The broadcaster keeps its own
/// reference to the transport, so freeing the transport handle is safe: the closed transport is
/// then pruned by the next broadcast or count.
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL), WTD_ERR_CLOSED (transport closed).
#[no_mangle]
pub extern "C" fn wtd_broadcaster_add(
    broadcaster: *mut wtd_broadcaster,
    transport: *mut wtd_transport,
) -> wtd_result {
    guard(|| self::broadcaster(broadcaster)?.add(self::transport(transport)?))
}

/// Removes `transport` from the set (not in it: a no-op, WTD_OK).
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL).
#[no_mangle]
pub extern "C" fn wtd_broadcaster_remove(
    broadcaster: *mut wtd_broadcaster,
    transport: *mut wtd_transport,
) -> wtd_result {
    guard(|| {
        self::broadcaster(broadcaster)?.remove(self::transport(transport)?);
        Ok(())
    })
}

/// Writes the number of transports in the set to `*out` (closed ones are pruned first; the
/// pywebtransport's `get_transport_count`).
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments).
#[no_mangle]
pub extern "C" fn wtd_broadcaster_count(
    broadcaster: *const wtd_broadcaster,
    out: *mut usize,
) -> wtd_result {
    guard(|| write_out(out, self::broadcaster(broadcaster)?.count(), "out"))
}

fn broadcast(
    b: &Broadcaster,
    data: *const u8,
    len: usize,
    priority: i32,
    ttl_ms: u32,
) -> Result<crate::datagram::broadcaster::BroadcastResult> {
    if len == 0 {
        return Err(Error::invalid("len is 0"));
    }
    let data = arg_bytes(data, len, "data")?;
    Ok(b.broadcast(data, priority, opt_ms(ttl_ms)))
}

/// Queues `data[0..len]` on every transport in the set without waiting (`priority` any int32,
/// `ttl_ms` 0 = none). The payload is copied once and shared by all transports. A transport whose
/// queue refuses it (full, too large) stays in the set; closed transports are removed. `out`
/// (optional, NULL = not wanted) receives how many transports accepted, failed (kept) and were
/// pruned; set `out->struct_size = sizeof(wtd_broadcast_result)` first.
///
/// Ownership: `data` is only read during the call. Thread: any.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL handle, NULL data, len 0, `out->struct_size` too
/// small — checked before anything is sent). Per-transport failures are not errors.
#[no_mangle]
pub extern "C" fn wtd_broadcaster_broadcast(
    broadcaster: *mut wtd_broadcaster,
    data: *const u8,
    len: usize,
    priority: i32,
    ttl_ms: u32,
    out: *mut wtd_broadcast_result,
) -> wtd_result {
    guard(|| {
        let b = self::broadcaster(broadcaster)?;
        if !out.is_null() {
            check_sized(out, BROADCAST_RESULT_V1, "out")?;
        }
        let r = broadcast(b, data, len, priority, ttl_ms)?;
        if out.is_null() {
            return Ok(());
        }
        let v = wtd_broadcast_result {
            struct_size: 0,
            reserved: 0,
            accepted: r.accepted,
            failed: r.failed,
            pruned: r.pruned,
        };
        write_sized(out, v, BROADCAST_RESULT_V1, "out")
    })
}

/// Releases the broadcaster and its references to the transports (they stay open). NULL is a
/// no-op. No other call on this handle may be running or start.
/// Ownership: releases the handle; it must not be used afterwards.
/// Thread: any.
/// Errors: none (a caught panic is logged and recorded as the last error).
#[no_mangle]
pub extern "C" fn wtd_broadcaster_free(broadcaster: *mut wtd_broadcaster) {
    guard_void(|| free_box(broadcaster))
}

// =================================================================================================
// Monitor
// =================================================================================================

/// Monitor options. Fill with `wtd_monitor_options_default` (pywebtransport's values), then change
/// fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_monitor_options {
    /// `sizeof(wtd_monitor_options)` (set by `wtd_monitor_options_default`).
    pub struct_size: u32,
    /// Sampling period in ms (> 0). Default 5000.
    pub interval_ms: u32,
    /// Samples kept, oldest dropped (> 0). Default 100.
    pub samples_maxlen: u32,
    /// Alerts kept, oldest dropped (> 0). Default 50.
    pub alerts_maxlen: u32,
    /// `high_queue_size` fires when the outgoing queue holds more than this fraction of its high
    /// water mark. Default 0.9.
    pub queue_threshold: f64,
    /// `low_success_rate` fires when the send success rate is below this. Default 0.8.
    pub success_rate_threshold: f64,
    /// Samples compared by `increasing_send_time` (≥ 2): fires when the mean send time of the
    /// newer half exceeds the older half's by more than 25 %. Default 10.
    pub trend_window: u32,
    /// Reserved, 0.
    pub reserved: u32,
}

const MONITOR_OPTIONS_V1: usize = std::mem::size_of::<wtd_monitor_options>();

fn monitor_defaults() -> wtd_monitor_options {
    let c = MonitorConfig::default();
    wtd_monitor_options {
        struct_size: MONITOR_OPTIONS_V1 as u32,
        interval_ms: ms_of(c.interval),
        samples_maxlen: u32::try_from(c.samples_maxlen).unwrap_or(u32::MAX),
        alerts_maxlen: u32::try_from(c.alerts_maxlen).unwrap_or(u32::MAX),
        queue_threshold: c.queue_threshold,
        success_rate_threshold: c.success_rate_threshold,
        trend_window: u32::try_from(c.trend_window).unwrap_or(u32::MAX),
        reserved: 0,
    }
}

fn monitor_config(o: &wtd_monitor_options) -> Result<MonitorConfig> {
    if o.interval_ms == 0 || o.samples_maxlen == 0 || o.alerts_maxlen == 0 {
        return Err(Error::invalid(
            "interval_ms, samples_maxlen and alerts_maxlen must be > 0",
        ));
    }
    if o.trend_window < 2 {
        return Err(Error::invalid("trend_window must be ≥ 2"));
    }
    if !o.queue_threshold.is_finite()
        || o.queue_threshold < 0.0
        || !o.success_rate_threshold.is_finite()
        || o.success_rate_threshold < 0.0
    {
        return Err(Error::invalid("thresholds must be finite and ≥ 0"));
    }
    Ok(MonitorConfig {
        interval: Duration::from_millis(u64::from(o.interval_ms)),
        samples_maxlen: o.samples_maxlen as usize,
        alerts_maxlen: o.alerts_maxlen as usize,
        queue_threshold: o.queue_threshold,
        success_rate_threshold: o.success_rate_threshold,
        trend_window: o.trend_window as usize,
    })
}

/// One monitor sample (an element of the array `wtd_monitor_get_samples` fills; the caller
/// passes `sizeof(wtd_monitor_sample)` as the element size, so fields can be appended).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_monitor_sample {
    /// Unix time (s) of the sample.
    pub timestamp: f64,
    /// Transport's datagrams handed to QUIC so far (cumulative).
    pub datagrams_sent: u64,
    /// Transport's datagrams arrived so far (cumulative).
    pub datagrams_received: u64,
    /// Transport's send success rate so far (cumulative, 0..1).
    pub send_success_rate: f64,
    /// Mean queueing time (s) of the datagrams sent since the previous sample (0 when none).
    pub avg_send_time: f64,
    /// Outgoing queue size at the sample.
    pub queue_size: u64,
}

/// Capacity of `wtd_monitor_alert.message`, NUL included.
pub const WTD_ALERT_MESSAGE_MAX: usize = 128;

/// One monitor alert (an element of the array `wtd_monitor_get_alerts` fills; the caller passes
/// `sizeof(wtd_monitor_alert)` as the element size, so fields can be appended).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_monitor_alert {
    /// What was detected (a `wtd_alert_kind` value).
    pub kind: wtd_alert_kind,
    /// Unix time (s) it was raised.
    pub timestamp: f64,
    /// Human-readable message, NUL-terminated UTF-8 (cut at a character boundary to fit).
    pub message: [c_char; WTD_ALERT_MESSAGE_MAX],
}

/// Called once per raised alert (edge-triggered: once per episode). `alert` is valid only during
/// the call.
pub type wtd_monitor_alert_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, alert: *const wtd_monitor_alert)>;

/// Monitor callbacks (versioned: set `struct_size = sizeof(wtd_monitor_callbacks)`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_monitor_callbacks {
    /// `sizeof(wtd_monitor_callbacks)`.
    pub struct_size: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Alert raised (NULL: alerts are only kept for `wtd_monitor_get_alerts`).
    pub on_alert: wtd_monitor_alert_cb,
    /// Passed to the callback.
    pub user_data: *mut c_void,
}

const MONITOR_CALLBACKS_V1: usize = std::mem::size_of::<wtd_monitor_callbacks>();
const MONITOR_SAMPLE_V1: usize = std::mem::size_of::<wtd_monitor_sample>();
const MONITOR_ALERT_V1: usize = std::mem::size_of::<wtd_monitor_alert>();

fn c_sample(s: &Sample) -> wtd_monitor_sample {
    wtd_monitor_sample {
        timestamp: s.timestamp,
        datagrams_sent: s.datagrams_sent,
        datagrams_received: s.datagrams_received,
        send_success_rate: s.send_success_rate,
        avg_send_time: s.avg_send_time,
        queue_size: s.queue_size,
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn utf8_prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn c_alert(a: &Alert) -> wtd_monitor_alert {
    let mut message = [0 as c_char; WTD_ALERT_MESSAGE_MAX];
    let text = utf8_prefix(&a.message, WTD_ALERT_MESSAGE_MAX - 1);
    for (dst, src) in message.iter_mut().zip(text.bytes()) {
        *dst = src as c_char;
    }
    wtd_monitor_alert {
        kind: a.kind,
        timestamp: a.timestamp,
        message,
    }
}

/// A transport monitor (opaque). Create with `wtd_monitor_new`, release with `wtd_monitor_free`.
/// Functions may be called from any thread; the handle must not be freed while another call on
/// it is running.
pub struct wtd_monitor {
    inner: Monitor,
}

impl Handle for wtd_monitor {
    type Ownership = BoxOwned;
    const NAME: &'static str = "monitor";
}

fn monitor<'a>(p: *const wtd_monitor) -> Result<&'a Monitor> {
    Ok(&borrow(p)?.inner)
}

/// Fills `*options` with pywebtransport's defaults: interval_ms 5000, samples_maxlen 100,
/// alerts_maxlen 50, queue_threshold 0.9, success_rate_threshold 0.8, trend_window 10.
///
/// Ownership: `*options` is the caller's; the library only writes it.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT when `options` is NULL.
#[no_mangle]
pub extern "C" fn wtd_monitor_options_default(options: *mut wtd_monitor_options) -> wtd_result {
    guard(|| write_sized(options, monitor_defaults(), MONITOR_OPTIONS_V1, "options"))
}

/// Creates a monitor of `transport` (`options` NULL = defaults). It does not sample until
/// `wtd_monitor_start` (or `wtd_monitor_sample_now`).
///
/// Ownership: `*out` owns it; free with `wtd_monitor_free`. It keeps its own reference to the
/// transport. Thread: any.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL transport/out, interval_ms / samples_maxlen /
/// alerts_maxlen 0, trend_window < 2, a negative or non-finite threshold, struct_size too small).
#[no_mangle]
pub extern "C" fn wtd_monitor_new(
    transport: *mut wtd_transport,
    options: *const wtd_monitor_options,
    out: *mut *mut wtd_monitor,
) -> wtd_result {
    guard(|| {
        let t = self::transport(transport)?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let o =
            read_options_or_default(options, monitor_defaults(), MONITOR_OPTIONS_V1, "options")?;
        let m = Monitor::new(t, monitor_config(&o)?)?;
        write_out(out, new_box(wtd_monitor { inner: m }), "out")
    })
}

/// Starts sampling every `interval_ms` on a wtd runtime thread (first sample after one interval).
/// Starting again restarts the period.
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL).
#[no_mangle]
pub extern "C" fn wtd_monitor_start(monitor: *mut wtd_monitor) -> wtd_result {
    guard(|| self::monitor(monitor)?.start())
}

/// Stops sampling (samples and alerts stay). Idempotent.
/// Ownership: nothing is handed over.
/// Thread: any.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL).
#[no_mangle]
pub extern "C" fn wtd_monitor_stop(monitor: *mut wtd_monitor) -> wtd_result {
    guard(|| {
        self::monitor(monitor)?.stop();
        Ok(())
    })
}

/// Writes to `*out` whether the monitor is sampling (pywebtransport's `is_monitoring`).
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments).
#[no_mangle]
pub extern "C" fn wtd_monitor_is_monitoring(
    monitor: *const wtd_monitor,
    out: *mut bool,
) -> wtd_result {
    guard(|| write_out(out, self::monitor(monitor)?.is_monitoring(), "out"))
}

/// Takes one sample now and evaluates the alerts — what the timer does every interval; works
/// whether or not the monitor is started. A raised alert's callback runs on this thread before
/// the call returns.
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL).
#[no_mangle]
pub extern "C" fn wtd_monitor_sample_now(monitor: *mut wtd_monitor) -> wtd_result {
    guard(|| {
        self::monitor(monitor)?.sample_now();
        Ok(())
    })
}

/// Copies the newest `min(count, kept)` samples, oldest first, into `samples` (an array of
/// `count` elements of `sample_size` bytes — pass `sizeof(wtd_monitor_sample)`); `*out_count` =
/// how many (pywebtransport's `get_samples(limit)`).
///
/// Ownership: the array stays the caller's and is only written during the call.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL handle/out_count, NULL samples with
/// count > 0, `sample_size` below the first published size, `count × sample_size` overflowing).
#[no_mangle]
pub extern "C" fn wtd_monitor_get_samples(
    monitor: *const wtd_monitor,
    samples: *mut wtd_monitor_sample,
    sample_size: usize,
    count: usize,
    out_count: *mut usize,
) -> wtd_result {
    guard(|| {
        let m = self::monitor(monitor)?;
        if out_count.is_null() {
            return Err(Error::invalid("out_count is NULL"));
        }
        check_elements(samples, sample_size, count, MONITOR_SAMPLE_V1, "samples")?;
        let got = m.samples(Some(count));
        let items = got.iter().map(c_sample);
        let n = write_elements(
            samples,
            sample_size,
            count,
            MONITOR_SAMPLE_V1,
            items,
            "samples",
        )?;
        write_out(out_count, n, "out_count")
    })
}

/// Copies the newest `min(count, kept)` alerts (at most `alerts_maxlen` are kept), oldest first,
/// into `alerts` (an array of `count` elements of `alert_size` bytes — pass
/// `sizeof(wtd_monitor_alert)`); `*out_count` = how many (pywebtransport's `get_alerts`).
///
/// Ownership: the array stays the caller's and is only written during the call.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL handle/out_count, NULL alerts with
/// count > 0, `alert_size` below the first published size, `count × alert_size` overflowing).
#[no_mangle]
pub extern "C" fn wtd_monitor_get_alerts(
    monitor: *const wtd_monitor,
    alerts: *mut wtd_monitor_alert,
    alert_size: usize,
    count: usize,
    out_count: *mut usize,
) -> wtd_result {
    guard(|| {
        let m = self::monitor(monitor)?;
        if out_count.is_null() {
            return Err(Error::invalid("out_count is NULL"));
        }
        check_elements(alerts, alert_size, count, MONITOR_ALERT_V1, "alerts")?;
        let all = m.alerts();
        let newest = &all[all.len() - count.min(all.len())..];
        let items = newest.iter().map(c_alert);
        let n = write_elements(alerts, alert_size, count, MONITOR_ALERT_V1, items, "alerts")?;
        write_out(out_count, n, "out_count")
    })
}

/// Installs the monitor's callbacks (`callbacks` NULL removes them; the struct is copied).
/// `on_alert` is called once per raised alert on the sampling thread (a wtd runtime thread for
/// timer samples, the caller's thread for `wtd_monitor_sample_now`), never in parallel for one
/// monitor unless `wtd_monitor_sample_now` is called from several threads at once. Alerts raised
/// before the callback was set are not replayed (read them with `wtd_monitor_get_alerts`); a
/// callback already running when it is replaced finishes with the old `user_data`. Inside it
/// non-blocking wtd calls are allowed. `user_data` must stay valid until the callbacks are
/// replaced and a running one has returned, or the monitor is freed.
///
/// Ownership: the struct is copied; `user_data` stays the caller's and must stay valid while the
/// callbacks may run.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL monitor, `struct_size` too small).
#[no_mangle]
pub extern "C" fn wtd_monitor_set_callbacks(
    monitor: *mut wtd_monitor,
    callbacks: *const wtd_monitor_callbacks,
) -> wtd_result {
    guard(|| {
        let m = self::monitor(monitor)?;
        if callbacks.is_null() {
            m.set_alert_callback(None);
            return Ok(());
        }
        let zero = wtd_monitor_callbacks {
            struct_size: 0,
            reserved: 0,
            on_alert: None,
            user_data: std::ptr::null_mut(),
        };
        let cbs = read_options(callbacks, zero, MONITOR_CALLBACKS_V1, "callbacks")?;
        match cbs.on_alert {
            None => m.set_alert_callback(None),
            Some(f) => {
                let ud = UserData(cbs.user_data);
                m.set_alert_callback(Some(Arc::new(move |a: &Alert| {
                    let c = c_alert(a);
                    // SAFETY: the application's callback, called as its registration documents.
                    unsafe { f(ud.get(), &c) };
                })));
            }
        }
        Ok(())
    })
}

/// "high_queue_size", "low_success_rate" or "increasing_send_time" (pywebtransport's alert type
/// strings), or "unknown" for any other value (a plain integer, so any value is safe to pass).
///
/// Ownership: static; never free it. Thread: any. Errors: none.
#[no_mangle]
pub extern "C" fn wtd_alert_kind_str(kind: u32) -> *const c_char {
    wtd_alert_kind::c_name_of(kind)
}

/// Stops sampling, removes the callback and releases the monitor (the transport stays open).
/// NULL is a no-op. No other call on this handle may be running or start; a callback already
/// running finishes normally and none starts afterwards.
/// Ownership: releases the handle; it must not be used afterwards.
/// Thread: any.
/// Errors: none (a caught panic is logged and recorded as the last error).
#[no_mangle]
pub extern "C" fn wtd_monitor_free(monitor: *mut wtd_monitor) {
    guard_void(|| {
        let Some(m) = take_box(monitor) else {
            return;
        };
        m.inner.stop();
        m.inner.set_alert_callback(None);
        drop(m);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_message_is_cut_at_a_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let a = Alert {
            kind: wtd_alert_kind::WTD_ALERT_HIGH_QUEUE_SIZE,
            message: long,
            timestamp: 1.0,
        };
        let c = c_alert(&a);
        let bytes: Vec<u8> = c
            .message
            .iter()
            .take_while(|b| **b != 0)
            .map(|b| *b as u8)
            .collect();
        assert_eq!(bytes.len(), 126, "63 two-byte characters fit in 127 bytes");
        assert!(std::str::from_utf8(&bytes).is_ok());
        assert_eq!(utf8_prefix("abc", 10), "abc");
    }

    #[test]
    fn reliability_options_round_trip() {
        let o = reliability_options_from(&ReliabilityConfig::factory_defaults());
        assert_eq!(
            (o.ack_timeout_ms, o.max_retries, o.gap_timeout_ms),
            (1000, 3, 0)
        );
        let c = reliability_config(&o).unwrap();
        // 1 + 2 + 4 + 8 s of backoff + 100 ms slack (the old 10 s ignored the backoff).
        assert_eq!(c.effective_gap_timeout(), Duration::from_millis(15_100));
        let d = reliability_config(&reliability_options_from(
            &ReliabilityConfig::constructor_defaults(),
        ))
        .unwrap();
        assert_eq!(d.effective_gap_timeout(), Duration::from_millis(44_100));
        assert_eq!(d.effective_receive_window(), 1024);
        let bad = wtd_reliability_options {
            receive_window: (1 << 30) + 1,
            ..o
        };
        assert!(reliability_config(&bad).is_err());
        let bad = wtd_reliability_options { in_order: 2, ..o };
        assert!(reliability_config(&bad).is_err());
    }

    #[test]
    fn structured_framing_is_reused() {
        assert_eq!(crate::datagram::structured::encode(2, b"x"), b"\x00\x02x");
    }
}
