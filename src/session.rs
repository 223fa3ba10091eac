//! A WebTransport session as the application sees it: datagram send, a bounded receive queue
//! (poll or blocking), optional callbacks, close, and counters.

use crate::lock::lock;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::gate::{Entered, Gate};
use crate::h3::session_core::{CloseInfo, RequestInfo, SessionCore, SessionEvents};
use crate::h3::wtd_draft;
use crate::pace::{ReaderPace, Room};
use crate::ready::Readiness;
use crate::runtime::{note_events, Signal};

/// Default capacity of a session's receive queue (datagrams).
pub const DEFAULT_INCOMING_CAPACITY: usize = 1024;

/// Called with each datagram, on a wtd runtime thread.
pub type DatagramCallback = Box<dyn Fn(Bytes) + Send + Sync>;
/// Called once when the session closes, on a wtd runtime thread.
pub type ClosedCallback = Box<dyn Fn(&CloseInfo) + Send + Sync>;

/// Called with every datagram that arrived in one drain of the connection, in order, on a wtd
/// runtime thread, with the same contract as [`SessionEvents::on_datagrams`]: it takes them out
/// of the vector, or (when the flag allows deferral) only some and returns what to wait on.
pub type DatagramBatchCallback =
    Box<dyn Fn(&mut Vec<Bytes>, bool) -> Option<Arc<tokio::sync::Notify>> + Send + Sync>;

/// Callbacks of a session. With `on_datagrams` or `on_datagram` set, datagrams go to it
/// (the batch form wins) instead of the queue.
#[derive(Default)]
pub struct SessionCallbacks {
    /// Datagram arrived.
    pub on_datagram: Option<DatagramCallback>,
    /// Datagrams arrived (one call per drain of the connection).
    pub on_datagrams: Option<DatagramBatchCallback>,
    /// Session closed.
    pub on_closed: Option<ClosedCallback>,
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Datagrams accepted for sending (handed to QUIC or queued in the connection's outbox).
    pub datagrams_sent: u64,
    /// Payload bytes handed to QUIC.
    pub bytes_sent: u64,
    /// Datagrams that arrived for this session.
    pub datagrams_received: u64,
    /// Payload bytes that arrived for this session.
    pub bytes_received: u64,
    /// Datagrams the application took from the queue (or got through the callback).
    pub datagrams_read: u64,
    /// Arrived datagrams evicted because the receive queue was full (oldest first).
    pub dropped_queue_full: u64,
    /// Datagrams waiting in the receive queue now.
    pub queued: u64,
    /// Accepted datagrams that never reached QUIC: the connection closed first, or the path's
    /// datagram limit shrank below their size while they waited in the outbox.
    pub send_dropped_unsent: u64,
}

/// How the connection's data path batched its work: a drain takes every datagram quinn has
/// buffered in one wake-up of the driver; a flush hands every queued send to quinn in one
/// wake-up of the flush task (sends made on a wtd thread with nothing queued go directly).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatapathCounters {
    /// Wake-ups of the driver that took datagrams from quinn.
    pub receive_drains: u64,
    /// Datagrams those drains took.
    pub receive_drained: u64,
    /// Datagrams quinn dropped from its full receive buffer before a drain took them (exact
    /// once the connection is over, a lower bound while it runs).
    pub receive_overflow: u64,
    /// Wake-ups of the flush task that handed datagrams to quinn.
    pub send_flushes: u64,
    /// Datagrams those flushes handed over.
    pub send_flushed: u64,
}

#[derive(Default)]
struct IncomingState {
    queue: VecDeque<Bytes>,
    closed: Option<CloseInfo>,
    /// Threads blocked in a receive: a datagram wakes one only when there is one (a futex
    /// wake per datagram would cost more than everything else on the receive path).
    waiters: usize,
    /// Back-pressure state toward the connection's driver.
    pace: ReaderPace,
}

/// The receive side of a session: queue, waiters, callbacks, counters.
pub(crate) struct Incoming {
    state: Mutex<IncomingState>,
    ready: Signal,
    /// Signalled when a full queue has room again (the driver waits on it).
    room: Room,
    capacity: usize,
    /// The application's callbacks.
    callbacks: Mutex<Option<Arc<SessionCallbacks>>>,
    /// The callbacks of a layer attached above (a datagram transport): they take the
    /// datagrams while set, and both get the close notice. A separate slot, so the
    /// application replacing or clearing its own (e.g. when it frees the session) never
    /// detaches the layer.
    layer: Mutex<Option<Arc<SessionCallbacks>>>,
    /// Entered while callbacks run, so replacing them can wait for one in flight.
    gate: Gate,
    /// Readable while the queue holds a datagram or the session is closed (updated under
    /// `state`'s lock).
    readiness: Readiness,
    received: AtomicU64,
    received_bytes: AtomicU64,
    read: AtomicU64,
    dropped_full: AtomicU64,
}

impl Incoming {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Incoming {
            state: Mutex::new(IncomingState::default()),
            ready: Signal::new(),
            room: Room::default(),
            capacity: capacity.max(1),
            callbacks: Mutex::new(None),
            layer: Mutex::new(None),
            gate: Gate::default(),
            readiness: Readiness::default(),
            received: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            read: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IncomingState> {
        lock(&self.state)
    }

    /// Counts `n` datagrams read by the application and wakes the driver when it waits for room.
    fn took(&self, n: usize, wake_driver: bool) {
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        self.room.wake_driver(wake_driver);
    }

    /// Gives each datagram to the application's datagram callback (counted as read; a panic
    /// is logged and the rest are still delivered).
    fn hand_each(&self, f: &DatagramCallback, batch: impl ExactSizeIterator<Item = Bytes>) {
        self.read.fetch_add(batch.len() as u64, Ordering::Relaxed);
        note_events(batch.len() as u64);
        for d in batch {
            if catch_unwind(AssertUnwindSafe(|| f(d))).is_err() {
                log_error!("a datagram callback panicked");
            }
        }
    }

    /// Who takes arriving datagrams: the attached layer, else the application's callbacks.
    fn callbacks(&self) -> Option<Arc<SessionCallbacks>> {
        lock(&self.layer)
            .clone()
            .or_else(|| lock(&self.callbacks).clone())
    }

    /// Marks this thread as delivering this session's events until the guard drops.
    fn deliver(&self) -> Entered<'_> {
        self.gate.enter()
    }

    /// Returns once no callback of this session is running (see `Session::set_callbacks`).
    fn quiesce(&self) {
        self.gate.quiesce();
    }
}

impl SessionEvents for Incoming {
    fn on_datagrams(
        &self,
        batch: &mut Vec<Bytes>,
        may_defer: bool,
    ) -> Option<Arc<tokio::sync::Notify>> {
        let n = batch.len();
        if n == 0 {
            return None;
        }
        let bytes: usize = batch.iter().map(Bytes::len).sum();
        self.received.fetch_add(n as u64, Ordering::Relaxed);
        self.received_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let _delivering = self.deliver();
        if let Some(cbs) = self.callbacks() {
            if let Some(f) = &cbs.on_datagrams {
                // Counted as handed over even if the callback keeps some for later.
                note_events(n as u64);
                match catch_unwind(AssertUnwindSafe(|| f(batch, may_defer))) {
                    Ok(wait) => {
                        let kept = batch.len();
                        let kept_bytes: usize = batch.iter().map(Bytes::len).sum();
                        self.received.fetch_sub(kept as u64, Ordering::Relaxed);
                        self.received_bytes
                            .fetch_sub(kept_bytes as u64, Ordering::Relaxed);
                        self.read.fetch_add((n - kept) as u64, Ordering::Relaxed);
                        if wait.is_some() {
                            return wait;
                        }
                    }
                    Err(_) => log_error!("a datagram batch callback panicked"),
                }
                batch.clear();
                return None;
            }
            if let Some(f) = &cbs.on_datagram {
                self.hand_each(f, batch.drain(..));
                return None;
            }
        }
        let mut st = self.lock();
        let free = self.capacity.saturating_sub(st.queue.len());
        let waiters = st.waiters;
        if may_defer && n > free && st.pace.defer(waiters) {
            // Back-pressure (crate::pace): queue what fits, keep the rest with the driver until
            // the reader makes room (their arrival is counted when they are finally queued).
            st.queue.extend(batch.drain(..free));
            self.readiness.update(true);
            note_events(free as u64);
            let waiters = st.waiters;
            drop(st);
            let kept: usize = batch.iter().map(Bytes::len).sum();
            self.received
                .fetch_sub(batch.len() as u64, Ordering::Relaxed);
            self.received_bytes
                .fetch_sub(kept as u64, Ordering::Relaxed);
            if waiters > 0 {
                self.ready.notify_all();
            }
            return Some(self.room.notifier());
        }
        let mut evicted = 0u64;
        for d in batch.drain(..) {
            if st.queue.len() >= self.capacity {
                st.queue.pop_front();
                evicted += 1;
            }
            st.queue.push_back(d);
        }
        self.readiness.update(true);
        let waiters = st.waiters;
        drop(st);
        if evicted > 0 {
            self.dropped_full.fetch_add(evicted, Ordering::Relaxed);
        }
        note_events(n as u64);
        // One wake per batch, and only when somebody waits.
        if waiters > 1 && n > 1 {
            self.ready.notify_all();
        } else if waiters > 0 {
            self.ready.notify_one();
        }
        None
    }

    fn on_closed(&self, info: &CloseInfo) {
        // The callbacks run first, so `wait_closed` returning means the notice was delivered.
        {
            let _delivering = self.deliver();
            let layer = lock(&self.layer).clone();
            let app = lock(&self.callbacks).clone();
            for cbs in [layer, app].into_iter().flatten() {
                if let Some(f) = &cbs.on_closed {
                    if catch_unwind(AssertUnwindSafe(|| f(info))).is_err() {
                        log_error!("a close callback panicked");
                    }
                }
            }
        }
        {
            let mut st = self.lock();
            st.closed = Some(info.clone());
            self.readiness.update(true);
        }
        note_events(1);
        self.ready.notify_all();
    }
}

/// A WebTransport session. Cheap to clone; all clones are the same session.
#[derive(Clone)]
pub struct Session {
    core: Arc<SessionCore>,
    incoming: Arc<Incoming>,
}

impl Session {
    pub(crate) fn new(core: Arc<SessionCore>, incoming: Arc<Incoming>) -> Self {
        Session { core, incoming }
    }

    /// The session id (its CONNECT stream id).
    pub fn id(&self) -> u64 {
        self.core.id()
    }
    /// Path, authority and origin of the CONNECT request.
    pub fn request(&self) -> &RequestInfo {
        self.core.request()
    }
    /// The negotiated WebTransport draft.
    pub fn draft(&self) -> wtd_draft {
        self.core.draft()
    }
    /// The peer's address.
    pub fn remote_address(&self) -> std::net::SocketAddr {
        self.core.remote_address()
    }
    /// Current smoothed round-trip time.
    pub fn rtt(&self) -> Duration {
        self.core.rtt()
    }
    /// Real payload capacity of one datagram now (0 if the peer takes no datagrams).
    pub fn max_datagram_size(&self) -> usize {
        self.core.max_datagram_size()
    }
    /// QUIC statistics of the connection this session runs on (shared by its sessions): lost
    /// packets, DATAGRAM frames received, congestion state.
    pub fn connection_stats(&self) -> quinn::ConnectionStats {
        self.core.conn.quic.stats()
    }
    /// The data path's batching counters of this session's connection.
    pub fn connection_datapath(&self) -> DatapathCounters {
        let c = &self.core.conn.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DatapathCounters {
            receive_drains: get(&c.receive_drains),
            receive_drained: get(&c.receive_drained),
            receive_overflow: get(&c.receive_overflow),
            send_flushes: get(&c.send_flushes),
            send_flushed: get(&c.send_flushed),
        }
    }
    /// Datagrams that arrived on this session's connection for no open session (dropped and
    /// counted per connection: late datagrams of closed sessions, or a misbehaving peer).
    pub fn connection_unknown_session_drops(&self) -> u64 {
        self.core
            .conn
            .counters
            .datagrams_unknown_session
            .load(std::sync::atomic::Ordering::Relaxed)
    }
    /// True once the peer asked to wind down (DRAIN capsule or GOAWAY).
    pub fn is_draining(&self) -> bool {
        self.core.is_draining()
    }
    /// The HTTP/3 level session (for the datagram transport layer).
    pub fn core(&self) -> &Arc<SessionCore> {
        &self.core
    }

    /// Sends one datagram now, never blocking: WTD_ERR_WOULD_BLOCK when QUIC has no buffer room,
    /// WTD_ERR_TOO_LARGE above `max_datagram_size`, WTD_ERR_CLOSED after close.
    pub fn send_datagram(&self, payload: &[u8]) -> Result<()> {
        self.core.send_datagram(payload)
    }

    /// Takes the oldest queued datagram, waiting up to `timeout` (`None`: forever,
    /// `Some(ZERO)`: don't wait). WTD_ERR_WOULD_BLOCK when empty and not waiting,
    /// WTD_ERR_TIMEOUT on timeout, WTD_ERR_CLOSED when closed and drained. Waiting is refused
    /// (WTD_ERR_INVALID_STATE) on a wtd callback thread.
    pub fn recv_datagram(&self, timeout: Option<Duration>) -> Result<Bytes> {
        self.recv_with(timeout, |q| Ok(q.pop_front()))
    }

    /// Like [`Session::recv_datagram`] but copies into `buf` and returns the length. A datagram
    /// larger than `buf` stays queued: WTD_ERR_BUFFER_TOO_SMALL, and `needed` gets its size.
    pub fn recv_datagram_into(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        needed: &mut usize,
    ) -> Result<usize> {
        self.recv_with(timeout, |q| {
            let Some(front) = q.front() else {
                return Ok(None);
            };
            *needed = front.len();
            if front.len() > buf.len() {
                return Err(Error::new(
                    crate::error::wtd_result::WTD_ERR_BUFFER_TOO_SMALL,
                    format!(
                        "next datagram has {} bytes, buffer holds {}",
                        front.len(),
                        buf.len()
                    ),
                ));
            }
            let d = q.pop_front().expect("front exists");
            buf[..d.len()].copy_from_slice(&d);
            Ok(Some(d.len()))
        })
    }

    /// Waits for a datagram and lets `take` remove it from the queue (`Ok(None)`: nothing yet).
    fn recv_with<T>(
        &self,
        timeout: Option<Duration>,
        mut take: impl FnMut(&mut VecDeque<Bytes>) -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = crate::runtime::Deadline::start(timeout)?;
        let mut st = self.incoming.lock();
        loop {
            if let Some(v) = take(&mut st.queue)? {
                let queued = st.queue.len();
                self.update_readiness(&st);
                let wake = st.pace.took(queued, self.incoming.capacity);
                drop(st);
                self.incoming.took(1, wake);
                return Ok(v);
            }
            if st.closed.is_some() || self.core.is_closed() {
                return Err(Error::closed("session is closed"));
            }
            let wait = deadline.remaining("no datagram queued", "no datagram arrived in time")?;
            st.waiters += 1;
            st = self.incoming.ready.wait(st, &self.incoming.state, wait);
            st.waiters -= 1;
        }
    }

    /// Non-blocking batch take: offers the queued datagrams in order to `take(slot, payload)`,
    /// which copies one and returns true, or returns false when it does not fit (it stays
    /// queued and the batch ends). Returns how many were taken, at most `slots`.
    pub fn recv_batch_with(
        &self,
        slots: usize,
        mut take: impl FnMut(usize, &[u8]) -> bool,
    ) -> usize {
        let mut st = self.incoming.lock();
        let mut n = 0;
        while n < slots {
            let Some(front) = st.queue.front() else { break };
            if !take(n, front) {
                break;
            }
            st.queue.pop_front();
            n += 1;
        }
        let queued = st.queue.len();
        self.update_readiness(&st);
        let wake = n > 0 && st.pace.took(queued, self.incoming.capacity);
        drop(st);
        self.incoming.took(n, wake);
        n
    }

    /// A descriptor that is readable while a datagram is queued or the session is closed
    /// (`crate::ready`); created on first call, owned by the session.
    pub fn readiness_fd(&self) -> Result<i32> {
        let _st = self.incoming.lock();
        self.incoming.readiness.fd()
    }

    /// Size of the next queued datagram, if any.
    pub fn peek_len(&self) -> Option<usize> {
        self.incoming.lock().queue.front().map(Bytes::len)
    }

    /// Installs (or with `None` removes) the callbacks. They run on a wtd runtime thread, never
    /// two at once for one connection; they may call any non-blocking wtd function.
    ///
    /// Called from a thread that is not running wtd callbacks, it returns only once no old
    /// callback of this session is running, so after it returns none will run (the application
    /// may then free what its callbacks used). Called from inside a callback it does not wait:
    /// the change applies from the next event.
    ///
    /// Datagrams already waiting in the queue when a datagram callback is installed are handed
    /// to it (in order, on the connection's driver, before later arrivals), so a server that
    /// installs its callbacks right after accepting loses none that arrived in between.
    pub fn set_callbacks(&self, callbacks: Option<SessionCallbacks>) {
        let installed = callbacks.map(Arc::new);
        let takes_datagrams = installed.as_ref().is_some_and(|c| c.on_datagram.is_some());
        *lock(&self.incoming.callbacks) = installed;
        self.incoming.quiesce();
        if takes_datagrams {
            self.hand_queued_to_callbacks();
        }
    }

    /// Sets the readiness descriptor after the application took from the queue (`st` locked):
    /// readable while something is queued or the session is closed — also when closed locally,
    /// before the driver's close notice reaches the queue.
    fn update_readiness(&self, st: &IncomingState) {
        let closed = st.closed.is_some() || self.core.is_closed();
        self.incoming
            .readiness
            .update(!st.queue.is_empty() || closed);
    }

    /// Moves what the receive queue holds to the datagram callback (see `set_callbacks`).
    fn hand_queued_to_callbacks(&self) {
        let queued: Vec<Bytes> = {
            let mut st = self.incoming.lock();
            let queued = st.queue.drain(..).collect::<Vec<_>>();
            self.update_readiness(&st);
            queued
        };
        if queued.is_empty() {
            return;
        }
        let incoming = self.incoming.clone();
        self.core.post(Box::new(move || {
            let _delivering = incoming.deliver();
            let cbs = lock(&incoming.callbacks).clone();
            let Some(f) = cbs.as_ref().and_then(|c| c.on_datagram.as_ref()) else {
                // Replaced again meanwhile by callbacks without a datagram callback: back to
                // the queue, in front of anything newer.
                let mut st = incoming.lock();
                for d in queued.into_iter().rev() {
                    st.queue.push_front(d);
                }
                incoming.readiness.update(true);
                drop(st);
                incoming.ready.notify_all();
                return;
            };
            incoming.hand_each(f, queued.into_iter());
        }));
    }

    /// Attaches (or with `None` detaches) the callbacks of a layer above — a datagram transport.
    /// While attached it takes every datagram (the application's `on_datagram` is not called)
    /// and gets the close notice alongside the application. Same waiting rule as
    /// [`Session::set_callbacks`].
    pub fn set_layer_callbacks(
        &self,
        callbacks: Option<SessionCallbacks>,
    ) -> Option<Arc<SessionCallbacks>> {
        let installed = callbacks.map(Arc::new);
        *lock(&self.incoming.layer) = installed.clone();
        self.incoming.quiesce();
        installed
    }

    /// Detaches the layer callbacks `installed` (from [`Session::set_layer_callbacks`]) if they
    /// are still the attached ones — a newer layer attached since stays. Datagrams go to the
    /// application's callbacks or queue again.
    pub fn clear_layer_callbacks(&self, installed: &Arc<SessionCallbacks>) {
        {
            let mut layer = lock(&self.incoming.layer);
            if !layer.as_ref().is_some_and(|l| Arc::ptr_eq(l, installed)) {
                return;
            }
            *layer = None;
        }
        self.incoming.quiesce();
    }

    /// Closes the session with a code and reason (idempotent, does not block). Blocked receivers
    /// wake with WTD_ERR_CLOSED.
    pub fn close(&self, code: u32, reason: &str) {
        self.core.close(code, reason);
        // Closed for the application now; the close notice reaches the queue later, from the
        // driver (in poll mode: at the next poll), so readiness does not wait for it.
        self.incoming.readiness.update(true);
        self.incoming.ready.notify_all();
    }

    /// True once closed (by either side).
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Code, reason and cause once closed.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.core.close_info()
    }

    /// Waits until the session has closed and its close notice was delivered, at most `timeout`.
    pub fn wait_closed(&self, timeout: Duration) -> Result<CloseInfo> {
        crate::runtime::check_may_block()?;
        let deadline = Instant::now() + timeout;
        let mut st = self.incoming.lock();
        loop {
            if let Some(info) = &st.closed {
                return Ok(info.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::timeout("session still open"));
            }
            st = self
                .incoming
                .ready
                .wait(st, &self.incoming.state, Some(deadline - now));
        }
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        let inc = &self.incoming;
        SessionStats {
            datagrams_sent: self.core.sent.datagrams.load(Ordering::Relaxed),
            bytes_sent: self.core.sent.bytes.load(Ordering::Relaxed),
            datagrams_received: inc.received.load(Ordering::Relaxed),
            bytes_received: inc.received_bytes.load(Ordering::Relaxed),
            datagrams_read: inc.read.load(Ordering::Relaxed),
            dropped_queue_full: inc.dropped_full.load(Ordering::Relaxed),
            queued: inc.lock().queue.len() as u64,
            send_dropped_unsent: self.core.sent.dropped_unsent.load(Ordering::Relaxed),
        }
    }
}
