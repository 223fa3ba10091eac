//! The datagram transport of one session (the seed's WebTransportDatagramTransport, corrected):
//! a prioritized, TTL-aware outgoing queue drained into QUIC only while QUIC has room, a bounded
//! incoming queue, and exact statistics with a reason for every drop.

use crate::gate::CallbackSlot;
use crate::lock::lock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::clock::{Clock, SystemClock};
use super::link::{Link, LinkSink};
use super::queue::{wtd_drop_policy, DatagramQueue, Entry};
use super::stats::DatagramStats;
use crate::error::{wtd_result, Error, Result};
use crate::pace::{ReaderPace, Room};
use crate::ready::Readiness;
use crate::runtime;

mod send;
use send::Payloads;

/// The result of a one-datagram [`DatagramTransport::send_items`].
fn one((_, err): (usize, Option<Error>)) -> Result<()> {
    err.map_or(Ok(()), Err)
}

/// Prefix of heartbeat datagrams.
pub const HEARTBEAT_PREFIX: &[u8] = b"HEARTBEAT:";

/// True when `data` is a heartbeat datagram (`HEARTBEAT:` prefix).
pub fn is_heartbeat(data: &[u8]) -> bool {
    data.starts_with(HEARTBEAT_PREFIX)
}

/// `HEARTBEAT:<unix seconds>` in ASCII.
pub fn heartbeat_datagram(unix_s: u64) -> Vec<u8> {
    format!("HEARTBEAT:{unix_s}").into_bytes()
}

/// Transport settings.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Outgoing queue capacity (default 100).
    pub outgoing_high_water_mark: usize,
    /// Incoming queue capacity (default: same as outgoing).
    pub incoming_high_water_mark: usize,
    /// What a full outgoing queue does (the incoming queue always evicts its oldest).
    pub drop_policy: wtd_drop_policy,
    /// Default wait of a BLOCK-policy send (the seed's `sender_get_timeout`, default 1 s).
    pub sender_timeout: Duration,
    /// Incoming datagrams older than this are dropped when read (None: no limit).
    pub incoming_max_age: Option<Duration>,
    /// Outgoing datagrams older than this are dropped before sending (None: no limit).
    pub outgoing_max_age: Option<Duration>,
    /// Keep heartbeats out of the receive path (their arrival time is recorded either way).
    pub filter_heartbeats: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            outgoing_high_water_mark: 100,
            incoming_high_water_mark: 100,
            drop_policy: wtd_drop_policy::WTD_DROP_OLDEST,
            sender_timeout: Duration::from_secs(1),
            incoming_max_age: None,
            outgoing_max_age: None,
            filter_heartbeats: false,
        }
    }
}

/// A received datagram with what the transport knows about it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Payload.
    pub data: Bytes,
    /// Receive sequence number (local, 1-based).
    pub sequence: u64,
    /// Unix time (s) it arrived.
    pub timestamp: f64,
    /// Seconds between arrival and this read.
    pub age: f64,
    /// Seconds the receive call waited.
    pub receive_time: f64,
}

/// One queue's (size, high water mark, (priority, count) per priority present, highest first).
pub type QueueSnapshot = (usize, usize, Vec<(i32, usize)>);

/// Takes arriving datagrams meant for a layer above (returns true when it consumed one).
pub type Interceptor = Arc<dyn Fn(&Bytes) -> bool + Send + Sync>;

/// What `throughput_test` measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThroughputResult {
    /// Seconds the test ran (sending plus draining the queue).
    pub duration: f64,
    /// Send calls made.
    pub attempts: u64,
    /// Datagrams that reached QUIC.
    pub datagrams_sent: u64,
    /// Datagrams that arrived from the peer meanwhile (an echoing peer sends them back).
    pub datagrams_received: u64,
    /// Send calls refused plus datagrams dropped from the queue.
    pub errors: u64,
    /// datagrams_sent per second.
    pub throughput_dps: f64,
    /// Payload bits per second that reached QUIC.
    pub throughput_bps: f64,
    /// errors / attempts.
    pub error_rate: f64,
}

/// Event callbacks of a transport; both run on a wtd runtime thread, never in parallel for one
/// connection. With `on_received` set, datagrams go to it instead of the incoming queue.
#[derive(Default)]
pub struct TransportCallbacks {
    /// A datagram arrived.
    pub on_received: Option<Box<dyn Fn(Bytes) + Send + Sync>>,
    /// A datagram was handed to QUIC (its size).
    pub on_sent: Option<Box<dyn Fn(usize) + Send + Sync>>,
}

struct Outgoing {
    queue: DatagramQueue,
    sequence: u64,
    /// The send side's counters, kept under this lock (the send path holds it anyway); merged
    /// into [`DatagramTransport::stats`].
    stats: DatagramStats,
    /// Scratch list of the heads being handed to the link (kept to reuse its allocation).
    heads: Vec<Entry>,
}

struct Incoming {
    queue: DatagramQueue,
    sequence: u64,
    /// The receive side's counters, kept under this lock (arrivals and reads hold it anyway);
    /// merged into [`DatagramTransport::stats`].
    stats: DatagramStats,
    /// Receivers blocked now (an arrival wakes one only if there is one).
    waiters: usize,
    /// Back-pressure toward the connection's driver (crate::pace).
    pace: ReaderPace,
}

impl Incoming {
    /// Records a take by the application; true when the waiting driver should be woken.
    fn took(&mut self) -> bool {
        self.pace
            .took(self.queue.len(), self.queue.high_water_mark())
    }
}

struct Inner {
    link: Arc<dyn Link>,
    clock: Arc<dyn Clock>,
    config: Mutex<TransportConfig>,
    out: Mutex<Outgoing>,
    /// Signalled when the outgoing queue shrinks (BLOCK senders, flush).
    out_room: runtime::Signal,
    /// Wakes the sender task.
    out_work: Notify,
    inc: Mutex<Incoming>,
    inc_ready: runtime::Signal,
    /// What the connection's driver waits on while the incoming queue is full.
    room: Room,
    /// Readable while the incoming queue holds a datagram or the transport is closed (updated
    /// under `inc`'s lock).
    readiness: Readiness,
    /// Counters not kept under a queue's lock (see [`Outgoing::stats`], [`Incoming::stats`]).
    stats: Mutex<DatagramStats>,
    closed: AtomicBool,
    callbacks: Arc<CallbackSlot<TransportCallbacks>>,
    /// `callbacks` has an `on_sent` (so a send without one skips that lock).
    wants_sent: AtomicBool,
    interceptor: Mutex<Option<Interceptor>>,
    last_heartbeat_us: AtomicU64,
    heartbeat_epoch: AtomicU64,
}

/// The datagram transport of one session. Cheap to clone.
#[derive(Clone)]
pub struct DatagramTransport {
    inner: Arc<Inner>,
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

fn max_age_us(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| d.as_micros().max(1) as u64)
}

impl DatagramTransport {
    /// Attaches a transport to a link (taking over its receive path) with the system clock.
    pub fn new(link: Arc<dyn Link>, config: TransportConfig) -> Result<Self> {
        Self::with_clock(link, config, SystemClock::shared())
    }

    /// Attaches a transport to a session: from now on the session's datagrams arrive through the
    /// transport (the session's own receive queue and callbacks are no longer used).
    pub fn for_session(session: &crate::session::Session, config: TransportConfig) -> Result<Self> {
        Self::new(super::link::SessionLink::new(session.clone()), config)
    }

    /// As [`DatagramTransport::new`] with an explicit clock (tests).
    pub fn with_clock(
        link: Arc<dyn Link>,
        config: TransportConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        if config.outgoing_high_water_mark == 0 || config.incoming_high_water_mark == 0 {
            return Err(Error::invalid("high water marks must be > 0"));
        }
        let mut out_q = DatagramQueue::new(config.outgoing_high_water_mark, config.drop_policy);
        out_q.set_max_age_us(max_age_us(config.outgoing_max_age));
        let mut in_q = DatagramQueue::new(
            config.incoming_high_water_mark,
            wtd_drop_policy::WTD_DROP_OLDEST,
        );
        in_q.set_max_age_us(max_age_us(config.incoming_max_age));
        let stats = DatagramStats {
            session_id: link.session_id(),
            created_at: clock.unix_at(clock.now_us()),
            ..Default::default()
        };
        let inner = Arc::new(Inner {
            link: link.clone(),
            clock,
            config: Mutex::new(config),
            out: Mutex::new(Outgoing {
                queue: out_q,
                sequence: 0,
                stats: DatagramStats::default(),
                heads: Vec::new(),
            }),
            out_room: runtime::Signal::new(),
            out_work: Notify::new(),
            inc: Mutex::new(Incoming {
                queue: in_q,
                sequence: 0,
                stats: DatagramStats::default(),
                waiters: 0,
                pace: ReaderPace::default(),
            }),
            inc_ready: runtime::Signal::new(),
            room: Room::default(),
            readiness: Readiness::default(),
            stats: Mutex::new(stats),
            closed: AtomicBool::new(false),
            callbacks: Arc::default(),
            wants_sent: AtomicBool::new(false),
            interceptor: Mutex::new(None),
            last_heartbeat_us: AtomicU64::new(0),
            heartbeat_epoch: AtomicU64::new(0),
        });
        let sink: Arc<dyn LinkSink> = inner.clone();
        link.attach(Arc::downgrade(&sink))?;
        runtime::handle()?.spawn(sender_task(Arc::downgrade(&inner)));
        Ok(DatagramTransport { inner })
    }

    // ----- sending -------------------------------------------------------------------------

    /// Queues a datagram (higher `priority` first, FIFO among equals; `ttl` drops it if still
    /// queued when it runs out). When the queue is full the drop policy decides; a BLOCK-policy
    /// send waits up to `timeout` (`None`: the configured sender timeout; `Some(ZERO)`: don't).
    /// While nothing is queued and QUIC has room, the datagram goes to QUIC at once.
    pub fn send(
        &self,
        data: &[u8],
        priority: i32,
        ttl: Option<Duration>,
        timeout: Option<Duration>,
    ) -> Result<()> {
        one(self.send_items(Payloads::Slices(&[data]), priority, ttl, timeout))
    }

    /// [`DatagramTransport::send`] of a shared buffer: when it has to wait in the queue the
    /// buffer itself is queued, not a copy (the broadcaster encodes once for every session).
    pub fn send_shared(
        &self,
        data: &Bytes,
        priority: i32,
        ttl: Option<Duration>,
        timeout: Option<Duration>,
    ) -> Result<()> {
        one(self.send_items(Payloads::Shared(data), priority, ttl, timeout))
    }

    /// True when both handles are the same transport.
    pub fn same(&self, other: &DatagramTransport) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Counts a receive-side processing error found by a layer above (e.g. a structured
    /// datagram with an unknown type id).
    pub fn record_receive_error(&self) {
        lock(&self.inner.stats).receive_errors += 1;
    }

    /// [`DatagramTransport::send`] that never waits.
    pub fn try_send(&self, data: &[u8], priority: i32, ttl: Option<Duration>) -> Result<()> {
        self.send(data, priority, ttl, Some(Duration::ZERO))
    }

    /// Sends each datagram in order like [`DatagramTransport::send`] (a BLOCK-policy queue waits
    /// up to the configured sender timeout per datagram); stops at the first failure. Returns how
    /// many were accepted, and the first failure if any. One call is one lock of the queue, one
    /// statistics update and at most one wake-up of the sender task: a batch first hands up to
    /// as many already-queued datagrams to QUIC as it brings; then, while nothing is queued, the
    /// datagrams QUIC has room for go to it in one hand-over, and the rest are queued together.
    pub fn send_multiple(
        &self,
        items: &[&[u8]],
        priority: i32,
        ttl: Option<Duration>,
    ) -> (usize, Option<Error>) {
        self.send_items(Payloads::Slices(items), priority, ttl, None)
    }

    // ----- receiving -----------------------------------------------------------------------

    /// Next datagram, waiting up to `timeout` (`None`: forever, `Some(ZERO)`: don't wait →
    /// WTD_ERR_WOULD_BLOCK). WTD_ERR_CLOSED once closed and drained (wakes waiters).
    pub fn receive(&self, timeout: Option<Duration>) -> Result<Received> {
        self.receive_where(timeout, |_| Ok(()))
    }

    /// [`DatagramTransport::receive`] that never waits.
    pub fn try_receive(&self) -> Result<Received> {
        self.receive(Some(Duration::ZERO))
    }

    /// Waits for the first datagram (up to `timeout`), then takes whatever else is already
    /// queued, up to `max_count` in all — under one lock.
    pub fn receive_multiple(
        &self,
        max_count: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<Received>> {
        if max_count == 0 {
            return Err(Error::invalid("max_count must be > 0"));
        }
        let mut out = Vec::new();
        let (_, waited) = self.take_incoming(
            max_count,
            timeout,
            |_, _| Ok(()),
            |e, now| out.push(self.received(e, now, 0.0)),
        )?;
        if let Some(first) = out.first_mut() {
            first.receive_time = waited;
        }
        Ok(out)
    }

    /// Receives the next datagram only if `accept` approves it; a refused datagram stays queued
    /// (nothing is lost) and the refusal is returned.
    pub fn receive_where(
        &self,
        timeout: Option<Duration>,
        accept: impl Fn(&[u8]) -> Result<()>,
    ) -> Result<Received> {
        let mut got = None;
        // A refusal leaves the datagram queued; the caller decides whether it was the
        // datagram's fault (and counts it with `record_receive_error`).
        let (_, waited) =
            self.take_incoming(1, timeout, |_, d| accept(d), |e, now| got = Some((e, now)))?;
        let (e, now) = got.expect("take_incoming took one");
        Ok(self.received(e, now, waited))
    }

    /// The receive loop behind every receive call: waits up to `timeout` for the first
    /// datagram, then, under that one lock, offers the queued datagrams in order to
    /// `accept(index, payload)` and hands each accepted one to `take(entry, clock reading)`, up
    /// to `max` (≥ 1). A refused datagram stays queued: a refusal of the first is returned, a
    /// later one ends the batch. Returns how many were taken (≥ 1) and the seconds the call
    /// waited. Per call, not per datagram: one lock, one purge, one readiness update, one
    /// update of the read counters.
    pub(crate) fn take_incoming(
        &self,
        max: usize,
        timeout: Option<Duration>,
        mut accept: impl FnMut(usize, &[u8]) -> Result<()>,
        mut take: impl FnMut(Entry, u64),
    ) -> Result<(usize, f64)> {
        let (mut inc, started, now) = self.wait_incoming(timeout)?;
        let mut n = 0;
        while n < max {
            let Some(next) = inc.queue.peek() else { break };
            if let Err(e) = accept(n, &next.data) {
                if n == 0 {
                    return Err(e);
                }
                break;
            }
            // The purge at `now` left nothing that popping at `now` would drop.
            let e = inc.queue.pop(now, |_, _| {}).expect("peeked");
            take(e, now);
            n += 1;
        }
        let waited = self.took(inc, started, n);
        Ok((n, waited))
    }

    /// After the application took `n` datagrams in one call: readiness, the driver's
    /// back-pressure wake-up and the read counters (one timed receive). Releases the queue lock;
    /// returns the seconds the call waited.
    fn took(
        &self,
        mut inc: std::sync::MutexGuard<'_, Incoming>,
        started: Option<Instant>,
        n: usize,
    ) -> f64 {
        let inner = &self.inner;
        inner
            .readiness
            .update(!inc.queue.is_empty() || self.is_closed());
        let wake = inc.took();
        let waited = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        inc.stats.datagrams_read += n as u64;
        inc.stats.record_receive_wait(waited);
        drop(inc);
        inner.room.wake_driver(wake);
        waited
    }

    fn received(&self, e: Entry, now: u64, waited: f64) -> Received {
        Received {
            timestamp: self.inner.clock.unix_at(e.enqueued_us),
            age: secs(now.saturating_sub(e.enqueued_us)),
            sequence: e.sequence,
            data: e.data,
            receive_time: waited,
        }
    }

    /// Locks the incoming queue once it holds a datagram, dropping expired and too-old ones on
    /// the way (counted), waiting up to `timeout` (`Some(ZERO)`: WTD_ERR_WOULD_BLOCK when
    /// empty). Returns the guard, when the wait started (`None` for a poll, which reads no
    /// clock when the queue is empty and counts as no wait) and the clock reading of the purge
    /// (popping at that time drops nothing).
    fn wait_incoming(
        &self,
        timeout: Option<Duration>,
    ) -> Result<(std::sync::MutexGuard<'_, Incoming>, Option<Instant>, u64)> {
        let inner = &self.inner;
        let deadline = runtime::Deadline::start(timeout)?;
        let started = (!deadline.is_poll()).then(Instant::now);
        let mut inc = lock(&inner.inc);
        loop {
            if !inc.queue.is_empty() {
                let now = inner.clock.now_us();
                let mut expired = 0u64;
                inc.queue.purge(now, |_, _| expired += 1);
                inc.stats.expired_incoming += expired;
                inc.stats.receive_drops += expired;
                if !inc.queue.is_empty() {
                    return Ok((inc, started, now));
                }
            }
            // Expiry may have emptied it.
            inner.readiness.update(self.is_closed());
            if self.is_closed() {
                return Err(Error::closed("transport is closed"));
            }
            let wait = deadline
                .remaining("no datagram queued", "no datagram arrived in time")?
                .map_or(Duration::from_millis(100), |w| {
                    w.min(Duration::from_millis(100))
                });
            // Bounded waits so that max-age expiry by a (manual) clock is noticed.
            inc.waiters += 1;
            inc = inner.inc_ready.wait(inc, &inner.inc, Some(wait));
            inc.waiters -= 1;
        }
    }

    // ----- buffers, config, properties -----------------------------------------------------

    /// A descriptor that is readable while a datagram is queued or the transport is closed
    /// (`crate::ready`); created on first call, owned by the transport.
    pub fn readiness_fd(&self) -> Result<i32> {
        let _inc = lock(&self.inner.inc);
        self.inner.readiness.fd()
    }

    /// Empties the incoming queue; returns how many were dropped (counted).
    pub fn clear_receive_buffer(&self) -> usize {
        let n = {
            let mut inc = lock(&self.inner.inc);
            let n = inc.queue.clear();
            inc.stats.cleared_incoming += n as u64;
            inc.stats.receive_drops += n as u64;
            self.inner.readiness.update(self.is_closed());
            n
        };
        n
    }

    /// Empties the outgoing queue; returns how many were dropped (counted).
    pub fn clear_send_buffer(&self) -> usize {
        let n = self.inner.clear_outgoing();
        self.inner.out_room.notify_all();
        n
    }

    /// Datagrams waiting in the incoming queue.
    pub fn receive_buffer_size(&self) -> usize {
        lock(&self.inner.inc).queue.len()
    }
    /// Datagrams waiting in the outgoing queue.
    pub fn send_buffer_size(&self) -> usize {
        lock(&self.inner.out).queue.len()
    }
    /// (size, high water mark, (priority, count)…) of the outgoing and incoming queues.
    pub fn queue_stats(&self) -> [QueueSnapshot; 2] {
        let o = lock(&self.inner.out);
        let out = (
            o.queue.len(),
            o.queue.high_water_mark(),
            o.queue.priority_counts(),
        );
        drop(o);
        let i = lock(&self.inner.inc);
        [
            out,
            (
                i.queue.len(),
                i.queue.high_water_mark(),
                i.queue.priority_counts(),
            ),
        ]
    }
    /// A copy of the statistics.
    pub fn stats(&self) -> DatagramStats {
        let mut st = lock(&self.inner.stats).clone();
        st.merge(&lock(&self.inner.out).stats);
        st.merge(&lock(&self.inner.inc).stats);
        st
    }
    /// A copy of the configuration.
    pub fn config(&self) -> TransportConfig {
        lock(&self.inner.config).clone()
    }
    /// Sets the incoming max age (None: no limit).
    pub fn set_incoming_max_age(&self, age: Option<Duration>) {
        lock(&self.inner.config).incoming_max_age = age;
        lock(&self.inner.inc).queue.set_max_age_us(max_age_us(age));
    }
    /// Sets the outgoing max age (None: no limit).
    pub fn set_outgoing_max_age(&self, age: Option<Duration>) {
        lock(&self.inner.config).outgoing_max_age = age;
        lock(&self.inner.out).queue.set_max_age_us(max_age_us(age));
    }
    /// Real payload capacity of one datagram now.
    pub fn max_datagram_size(&self) -> usize {
        self.inner.link.max_datagram_size()
    }
    /// Session id.
    pub fn session_id(&self) -> u64 {
        self.inner.link.session_id()
    }
    /// Datagrams accepted for sending so far (local counter, never on the wire).
    pub fn send_sequence(&self) -> u64 {
        lock(&self.inner.out).sequence
    }
    /// Datagrams that arrived so far (local counter).
    pub fn receive_sequence(&self) -> u64 {
        lock(&self.inner.inc).sequence
    }
    /// True once closed (by `close` or because the session ended).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }
    /// True while the session is open (the seed's "session ready").
    pub fn is_session_ready(&self) -> bool {
        self.inner.link.is_open()
    }
    /// True while datagrams can still be read (open, or closed with some still queued).
    pub fn is_readable(&self) -> bool {
        !self.is_closed() || self.receive_buffer_size() > 0
    }
    /// True while datagrams can be sent.
    pub fn is_writable(&self) -> bool {
        !self.is_closed() && self.inner.link.is_open()
    }
    /// Unix time (s) the last heartbeat arrived, if any.
    pub fn last_heartbeat_received(&self) -> Option<f64> {
        match self.inner.last_heartbeat_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(self.inner.clock.unix_at(us - 1)),
        }
    }
    /// Installs (None: removes) the interceptor of a layer above (the reliability layer): every
    /// arriving datagram is offered to it first, and what it consumes skips the receive queue.
    pub fn set_interceptor(&self, interceptor: Option<Interceptor>) {
        *lock(&self.inner.interceptor) = interceptor;
    }

    /// Installs (None: removes) event callbacks. Returns once no callback of the old set is
    /// running (at once when called from inside one of this transport's callbacks or on a wtd
    /// runtime thread); after it returns only the new set is called.
    pub fn set_callbacks(&self, callbacks: Option<TransportCallbacks>) {
        self.inner.callbacks.replace(callbacks, |set| {
            let wants = set.is_some_and(|c| c.on_sent.is_some());
            self.inner.wants_sent.store(wants, Ordering::Release);
        });
    }

    // ----- heartbeat -----------------------------------------------------------------------

    /// Sends `HEARTBEAT:<unix seconds>` at priority 1 every `interval`, the first one now,
    /// until stopped, replaced by another heartbeat, or the transport closes.
    pub fn start_heartbeat(&self, interval: Duration) -> Result<()> {
        if interval.is_zero() {
            return Err(Error::invalid("heartbeat interval must be > 0"));
        }
        if self.is_closed() {
            return Err(Error::closed("transport is closed"));
        }
        let epoch = self.inner.heartbeat_epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let weak = Arc::downgrade(&self.inner);
        runtime::handle()?.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.heartbeat_epoch.load(Ordering::SeqCst) != epoch
                    || inner.closed.load(Ordering::SeqCst)
                {
                    return;
                }
                let t = DatagramTransport { inner };
                let unix = t.inner.clock.unix_at(t.inner.clock.now_us()) as u64;
                if let Err(e) = t.try_send(&heartbeat_datagram(unix), 1, None) {
                    log_debug!("heartbeat not sent: {e}");
                }
            }
        });
        Ok(())
    }

    /// Stops the heartbeat (no-op when none runs).
    pub fn stop_heartbeat(&self) {
        self.inner.heartbeat_epoch.fetch_add(1, Ordering::SeqCst);
    }

    // ----- throughput test -----------------------------------------------------------------

    /// Sends `size`-byte datagrams as fast as the queue has room for `duration`, then
    /// waits (≤ 1 s) for the queue to drain, and reports what really reached QUIC — and, when the
    /// peer echoes, what came back during the test.
    pub fn throughput_test(&self, duration: Duration, size: usize) -> Result<ThroughputResult> {
        if size == 0 || size > self.max_datagram_size() {
            return Err(Error::new(
                wtd_result::WTD_ERR_TOO_LARGE,
                format!("size {size} is 0 or above max_datagram_size"),
            ));
        }
        if duration.is_zero() {
            return Err(Error::invalid("duration must be > 0"));
        }
        runtime::check_may_block()?;
        let before = self.stats();
        let payload = vec![0x5a_u8; size];
        let start = Instant::now();
        let mut attempts = 0u64;
        let hwm = self.config().outgoing_high_water_mark;
        while start.elapsed() < duration {
            // Pace on queue room so the drop policy does not turn the test into evictions.
            if self.send_buffer_size() >= hwm {
                std::thread::yield_now();
                continue;
            }
            attempts += 1;
            match self.send(&payload, 0, None, Some(Duration::from_millis(10))) {
                Ok(()) => {}
                Err(e) if e.code == wtd_result::WTD_ERR_CLOSED => return Err(e),
                Err(_) => std::thread::yield_now(),
            }
        }
        let drain_until = Instant::now() + Duration::from_secs(1);
        while self.send_buffer_size() > 0 && Instant::now() < drain_until {
            std::thread::sleep(Duration::from_millis(1));
        }
        let elapsed = start.elapsed().as_secs_f64();
        let after = self.stats();
        let sent = after.datagrams_sent - before.datagrams_sent;
        let errors =
            (after.send_failures - before.send_failures) + (after.send_drops - before.send_drops);
        Ok(ThroughputResult {
            duration: elapsed,
            attempts,
            datagrams_sent: sent,
            datagrams_received: after.datagrams_received - before.datagrams_received,
            errors,
            throughput_dps: sent as f64 / elapsed,
            throughput_bps: (sent * size as u64 * 8) as f64 / elapsed,
            error_rate: if attempts > 0 {
                errors as f64 / attempts as f64
            } else {
                0.0
            },
        })
    }

    // ----- close ---------------------------------------------------------------------------

    /// Closes the transport (idempotent). With `flush`, first waits up to that long for the
    /// outgoing queue to drain into QUIC; whatever is still queued then is dropped and counted
    /// (`cleared_outgoing`). Wakes every blocked sender and receiver with WTD_ERR_CLOSED. The
    /// session stays open.
    pub fn close(&self, flush: Option<Duration>) -> Result<()> {
        if let Some(limit) = flush.filter(|d| !d.is_zero()) {
            if !self.is_closed() {
                runtime::check_may_block()?;
                let deadline = Instant::now() + limit;
                let mut out = lock(&self.inner.out);
                while !out.queue.is_empty() && self.inner.link.is_open() {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    out = self
                        .inner
                        .out_room
                        .wait(out, &self.inner.out, Some(deadline - now));
                }
            }
        }
        self.inner.shut();
        Ok(())
    }
}

impl Inner {
    /// The callbacks, when a sent event is wanted.
    fn sent_callbacks(&self) -> Option<Arc<TransportCallbacks>> {
        if !self.wants_sent.load(Ordering::Acquire) {
            return None;
        }
        self.callbacks.get().filter(|c| c.on_sent.is_some())
    }

    /// Emits the sent events of `sizes`, serialized with the link's callbacks, to the callbacks
    /// installed when they run (replaced callbacks are never called after `set_callbacks`).
    fn post_sent(&self, sizes: Vec<usize>) {
        if sizes.is_empty() {
            return;
        }
        let slot = self.callbacks.clone();
        self.link.post(Box::new(move || {
            let _running = slot.enter();
            if let Some(f) = slot.get().as_ref().and_then(|c| c.on_sent.as_ref()) {
                for size in sizes {
                    f(size);
                }
            }
        }));
    }

    /// The sender task's round: hands the queue to the link as far as it has room, wakes
    /// senders waiting for queue room, emits the sent events. Returns true when the link had no
    /// room for the rest.
    fn send_queued(&self) -> bool {
        let cbs = self.sent_callbacks();
        let mut sizes = Vec::new();
        let hand = self.hand_heads(
            &mut lock(&self.out),
            usize::MAX,
            cbs.is_some().then_some(&mut sizes),
        );
        if hand.freed {
            self.out_room.notify_all();
        }
        if cbs.is_some() {
            self.post_sent(sizes);
        }
        hand.blocked
    }

    /// Empties the outgoing queue, counting what it held as cleared; returns how many.
    fn clear_outgoing(&self) -> usize {
        let mut out = lock(&self.out);
        let n = out.queue.clear();
        out.stats.cleared_outgoing += n as u64;
        out.stats.send_drops += n as u64;
        n
    }

    /// Marks closed, drops what is queued to send, wakes everyone.
    fn shut(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.heartbeat_epoch.fetch_add(1, Ordering::SeqCst);
        self.clear_outgoing();
        self.out_room.notify_all();
        self.out_work.notify_one();
        {
            let _g = lock(&self.inc);
            self.readiness.update(true);
            self.inc_ready.notify_all();
        }
        // Arrivals go back to the session's own queue/callbacks (counted there), not to a
        // closed transport that would drop them.
        self.link.detach();
    }
}

impl LinkSink for Inner {
    fn deliver_batch(
        &self,
        batch: &mut Vec<Bytes>,
        may_defer: bool,
    ) -> Option<Arc<tokio::sync::Notify>> {
        if batch.is_empty() {
            return None;
        }
        // Back-pressure (crate::pace): what does not fit waits with the driver while the
        // application is reading; decided before anything is counted.
        let mut rest = Vec::new();
        if may_defer
            && self
                .callbacks
                .get()
                .as_ref()
                .is_none_or(|c| c.on_received.is_none())
        {
            let mut inc = lock(&self.inc);
            let free = inc.queue.high_water_mark().saturating_sub(inc.queue.len());
            let waiters = inc.waiters;
            if batch.len() > free && inc.pace.defer(waiters) {
                rest = batch.split_off(free);
            }
        }
        self.accept_batch(batch);
        if rest.is_empty() {
            return None;
        }
        *batch = rest;
        Some(self.room.notifier())
    }

    fn link_closed(&self) {
        self.shut();
    }
}

impl Inner {
    /// Counts, filters (heartbeats, interceptor) and queues or hands to the callback every
    /// datagram of `batch`. Per batch: one clock read, one lock of each of interceptor,
    /// callbacks and the incoming queue (the counters are updated under it), and at most one
    /// wake-up.
    fn accept_batch(&self, batch: &mut Vec<Bytes>) {
        if batch.is_empty() {
            return;
        }
        let now = self.clock.now_us();
        // What happens to the batch, counted together once its fate is known.
        let mut got = DatagramStats::default();
        got.record_received_all(batch.iter().map(Bytes::len));
        if batch.iter().any(|d| is_heartbeat(d)) {
            self.last_heartbeat_us.store(now + 1, Ordering::Relaxed);
            if lock(&self.config).filter_heartbeats {
                let before = batch.len();
                batch.retain(|d| !is_heartbeat(d));
                got.heartbeats_filtered += (before - batch.len()) as u64;
            }
        }
        let interceptor = lock(&self.interceptor).clone();
        if let Some(take) = interceptor {
            batch.retain(|d| !take(d));
        }
        let n = batch.len() as u64;
        if n == 0 || self.closed.load(Ordering::SeqCst) {
            got.cleared_incoming += n;
            got.receive_drops += n;
            batch.clear();
            lock(&self.stats).merge(&got);
            return;
        }
        let _running = self.callbacks.enter();
        let cbs = self.callbacks.get();
        if let Some(f) = cbs.as_ref().and_then(|c| c.on_received.as_ref()) {
            got.datagrams_read += n;
            {
                let mut inc = lock(&self.inc);
                inc.sequence += n;
                inc.stats.merge(&got);
            }
            for d in batch.drain(..) {
                f(d);
            }
            return;
        }
        let mut inc = lock(&self.inc);
        let first = inc.sequence + 1;
        inc.sequence += n;
        let entries = batch.drain(..).enumerate().map(|(i, data)| Entry {
            data,
            priority: 0,
            ttl_us: 0,
            enqueued_us: now,
            sequence: first + i as u64,
        });
        let evicted = inc.queue.push_all(0, entries);
        got.evicted_incoming += evicted;
        got.receive_drops += evicted;
        inc.stats.merge(&got);
        self.readiness.update(!inc.queue.is_empty());
        let waiters = inc.waiters;
        drop(inc);
        if waiters > 1 && n > 1 {
            self.inc_ready.notify_all();
        } else if waiters > 0 {
            self.inc_ready.notify_one();
        }
    }
}

/// Most queued datagrams handed to the link in one call.
const SENDER_BATCH: usize = 64;

/// How long an idle sender task waits before checking whether its transport still exists.
const IDLE_SENDER_WAIT: Duration = Duration::from_secs(1);

/// Drains the outgoing queue into the link (senders also do so themselves on each send). The
/// heads are handed to QUIC under the queue lock, so a datagram is either queued (subject to
/// priority, TTL, eviction) or sent — never both. While QUIC has no room the task re-checks
/// every millisecond, or sooner when work arrives.
async fn sender_task(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let blocked = inner.send_queued();
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let notified = inner.out_work.notified();
        // Blocked (the link has no room, the queue holds datagrams): re-check every millisecond,
        // so freed room and TTL expiry of the head are noticed. Empty: nothing can expire, a
        // send wakes us; the long timeout only lets a dropped transport's task end (an idle
        // server with 10,000 transports must not poll 20 times a second each).
        let wait = if blocked {
            Duration::from_millis(1)
        } else {
            IDLE_SENDER_WAIT
        };
        let _ = tokio::time::timeout(wait, notified).await;
    }
}
