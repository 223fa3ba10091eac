//! One HTTP/3 connection carrying WebTransport sessions: control and QPACK streams, SETTINGS
//! exchange, GOAWAY, and the driver task that routes datagrams by quarter stream id and delivers
//! every session event (so events for one connection are never delivered in parallel).

use crate::lock::lock;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use once_cell::sync::Lazy;
use tokio::sync::{mpsc, watch, Notify};

use super::errors::*;
use super::frame;
pub use super::outbox::SendCounters;
use super::outbox::{Outbox, Ready, Staged};
use super::qpack::EncoderStreamReader;
use super::session_core::{CloseCause, CloseInfo, SessionCore};
use super::settings::Settings;
use super::stream_reader::{StreamEnd, StreamReader};
use super::varint;
use crate::error::{wtd_result, Error, Result};

/// Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2, WebTransport).
const STREAM_CONTROL: u64 = 0x00;
const STREAM_PUSH: u64 = 0x01;
const STREAM_QPACK_ENCODER: u64 = 0x02;
const STREAM_QPACK_DECODER: u64 = 0x03;
const STREAM_WEBTRANSPORT_UNI: u64 = 0x54;

/// Which side of the connection wtd is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// wtd opened the connection.
    Client,
    /// wtd accepted it.
    Server,
}

/// Server-side hook that turns CONNECT requests into sessions.
pub trait RequestHandler: Send + Sync + 'static {
    /// Handles a bidirectional stream opened by the client (a request).
    fn handle(&self, conn: Arc<Connection>, send: quinn::SendStream, recv: quinn::RecvStream);
}

enum DriverEvent {
    Closed(Arc<SessionCore>),
    Draining(Arc<SessionCore>),
    Run(Box<dyn FnOnce() + Send>),
}

/// Connection-level counters.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    /// Datagrams whose quarter stream id matched no open session (dropped).
    pub datagrams_unknown_session: AtomicU64,
    /// Times the flush task woke up to hand queued datagrams to quinn.
    pub send_flushes: AtomicU64,
    /// Datagrams handed to quinn by the flush task (not directly by the sender).
    pub send_flushed: AtomicU64,
    /// Receive drains (wake-ups of the driver that took datagrams from quinn).
    pub receive_drains: AtomicU64,
    /// Datagrams taken from quinn by those drains.
    pub receive_drained: AtomicU64,
    /// DATAGRAM frames quinn received but dropped from its full receive buffer before the
    /// driver took them (the driver fell behind: a slow callback, a starved runtime thread).
    /// Exact once the connection is over; while it runs, a lower bound updated after the driver
    /// catches up (see [`Connection::note_overflow`]).
    pub receive_overflow: AtomicU64,
}

/// Bytes of datagrams quinn buffers for sending (set on every wtd connection). wtd's outbox and
/// quinn's buffer together hold at most this much: a sender that outruns the network sees
/// WTD_ERR_WOULD_BLOCK (and a transport keeps its datagrams in its own priority/TTL queue)
/// instead of a FIFO growing behind congestion or quinn silently evicting older datagrams.
pub const DATAGRAM_SEND_BUFFER: usize = 1024 * 1024;

/// An HTTP/3 connection with WebTransport enabled.
pub struct Connection {
    /// The QUIC connection.
    pub quic: quinn::Connection,
    role: Role,
    sessions: Mutex<HashMap<u64, Arc<SessionCore>>>,
    /// Places taken by requests between the session-count check and registration
    /// ([`SessionSlot`]); changed only under the `sessions` lock.
    reserved: AtomicUsize,
    peer_settings: watch::Sender<Option<Arc<Settings>>>,
    control: tokio::sync::Mutex<Option<quinn::SendStream>>,
    goaway: AtomicBool,
    /// The id of the last GOAWAY the peer sent (ids may only stay or shrink).
    goaway_id: Mutex<Option<u64>>,
    /// Draining notices queued for the driver (GOAWAY and DRAIN capsules).
    draining_notices: AtomicU64,
    events: mpsc::UnboundedSender<DriverEvent>,
    /// Connection-level counters.
    pub counters: ConnectionCounters,
    close_when_idle: AtomicBool,
    /// Local session closes whose capsule is still on its way.
    local_closes: AtomicUsize,
    outbox: Mutex<Outbox>,
    outbox_work: Notify,
    /// quinn's max_datagram_size (0: not known yet), refreshed once per drain/flush and by
    /// `max_datagram_size`, so a send does not take quinn's connection lock for it.
    max_datagram: AtomicUsize,
    _endpoint: Option<quinn::Endpoint>,
}

static CLOSING: Lazy<(AtomicUsize, Notify)> = Lazy::new(|| (AtomicUsize::new(0), Notify::new()));

/// Runs a session-closing task on the runtime and tracks it, so shutdown can wait for closes
/// in flight (`wait_closing`).
pub(crate) fn spawn_closing<F: Future<Output = ()> + Send + 'static>(f: F) {
    CLOSING.0.fetch_add(1, Ordering::SeqCst);
    let task = async move {
        f.await;
        if CLOSING.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            CLOSING.1.notify_waiters();
        }
    };
    match crate::runtime::handle() {
        Ok(h) => {
            h.spawn(task);
        }
        Err(_) => {
            CLOSING.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Waits until every close in flight has finished, at most `timeout`.
pub async fn wait_closing(timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        loop {
            let notified = CLOSING.1.notified();
            if CLOSING.0.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    })
    .await;
}

impl Connection {
    /// Starts HTTP/3 on an established QUIC connection: opens the control stream with our
    /// SETTINGS and spawns the stream acceptors and the datagram driver. Must run on the runtime.
    pub async fn start(
        quic: quinn::Connection,
        role: Role,
        handler: Option<Arc<dyn RequestHandler>>,
        endpoint: Option<quinn::Endpoint>,
    ) -> Result<Arc<Connection>> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Connection {
            quic,
            role,
            sessions: Mutex::new(HashMap::new()),
            reserved: AtomicUsize::new(0),
            peer_settings: watch::channel(None).0,
            control: tokio::sync::Mutex::new(None),
            goaway: AtomicBool::new(false),
            goaway_id: Mutex::new(None),
            draining_notices: AtomicU64::new(0),
            events: events_tx,
            counters: ConnectionCounters::default(),
            close_when_idle: AtomicBool::new(role == Role::Client),
            local_closes: AtomicUsize::new(0),
            outbox: Mutex::new(Outbox::default()),
            outbox_work: Notify::new(),
            max_datagram: AtomicUsize::new(0),
            _endpoint: endpoint,
        });
        let mut control = conn.quic.open_uni().await.map_err(conn_error)?;
        let mut out = Vec::new();
        varint::encode(STREAM_CONTROL, &mut out);
        frame::encode(
            frame::SETTINGS,
            &Settings::wtd_local().encode_payload(),
            &mut out,
        );
        control
            .write_all(&out)
            .await
            .map_err(|e| Error::new(wtd_result::WTD_ERR_CONNECTION, e.to_string()))?;
        *conn.control.lock().await = Some(control);

        tokio::spawn(accept_uni_loop(conn.clone()));
        tokio::spawn(accept_bi_loop(conn.clone(), handler));
        tokio::spawn(drive(conn.clone(), events_rx));
        tokio::spawn(flush_outbox(conn.clone()));
        Ok(conn)
    }

    /// Updates `receive_overflow` from `frames`, quinn's DATAGRAM frame count read before a
    /// drain that then emptied quinn's buffer: each of those frames was taken by a drain or
    /// dropped by quinn, so `frames - drained` is at most what quinn dropped (frames that
    /// arrived during the drain make it smaller, never larger), and exact when none did.
    fn note_overflow(&self, frames: u64) {
        let drained = self.counters.receive_drained.load(Ordering::Relaxed);
        self.counters
            .receive_overflow
            .fetch_max(frames.saturating_sub(drained), Ordering::Relaxed);
    }

    /// quinn's current datagram limit (with the quarter-stream-id prefix); 0 when the peer does
    /// not accept datagrams. Reads quinn and refreshes the cached value.
    pub fn max_datagram_size(&self) -> usize {
        let m = self.quic.max_datagram_size().unwrap_or(0);
        self.max_datagram.store(m, Ordering::Relaxed);
        m
    }

    /// The cached datagram limit (read from quinn on first use).
    pub(crate) fn max_datagram_size_cached(&self) -> usize {
        match self.max_datagram.load(Ordering::Relaxed) {
            0 => self.max_datagram_size(),
            m => m,
        }
    }

    /// Accepts one datagram (prefix included) for sending. On a wtd runtime thread with nothing
    /// queued it goes to quinn at once; otherwise it joins the outbox, and the connection is
    /// handed to the shared flusher (`super::flusher`) once per batch — an application thread
    /// that sends to many connections in a row wakes one runtime task, not one per connection. WTD_ERR_WOULD_BLOCK when the outbox (or, on
    /// the direct path, quinn's buffer) has no room.
    pub(crate) fn send_datagram(
        self: &Arc<Self>,
        prefix: &[u8],
        payload: &[u8],
        counters: &Arc<SendCounters>,
    ) -> Result<()> {
        let len = prefix.len() + payload.len();
        let mut ob = lock(&self.outbox);
        if ob.closed {
            return Err(Error::closed("connection is closed"));
        }
        if ob.bytes == 0 && crate::runtime::on_runtime_thread() {
            // Nobody else hands datagrams to quinn while we hold the outbox lock: the room
            // check and the send are atomic, so quinn never evicts one we counted.
            if self.quic.datagram_send_buffer_space() >= len {
                let wire = ob.copy_in(prefix, payload);
                self.quic.send_datagram(wire).map_err(map_send_error)?;
                return Ok(());
            }
        }
        if !self.has_room(&mut ob, len) {
            return Err(Error::would_block("datagram send buffer is full"));
        }
        ob.bytes += len;
        ob.staged.push_one(prefix, payload, counters);
        self.flush_soon(ob);
        Ok(())
    }

    /// [`Connection::send_datagram`] for a batch (always through the outbox): accepts them in
    /// order under one lock until the outbox is full, and wakes the flusher at most once.
    /// Returns how many were accepted and why the rest were not.
    pub(crate) fn send_datagrams(
        self: &Arc<Self>,
        prefix: &[u8],
        payloads: &[&[u8]],
        counters: &Arc<SendCounters>,
    ) -> (usize, Option<Error>) {
        let ob = lock(&self.outbox);
        if ob.closed {
            return (0, Some(Error::closed("connection is closed")));
        }
        self.enqueue(ob, prefix, payloads, counters)
    }

    /// Appends `prefix` + each payload to the (locked, open) outbox while there is room, then
    /// releases the lock and schedules the connection on the shared flusher if its outbox was
    /// idle.
    fn enqueue(
        self: &Arc<Self>,
        mut ob: std::sync::MutexGuard<'_, Outbox>,
        prefix: &[u8],
        payloads: &[&[u8]],
        counters: &Arc<SendCounters>,
    ) -> (usize, Option<Error>) {
        let wire = |p: &&[u8]| prefix.len() + p.len();
        let total: usize = payloads.iter().map(wire).sum();
        // Usually all of them fit: one room check; else as many as fit, in order.
        let n = if self.has_room(&mut ob, total) {
            payloads.len()
        } else {
            let mut room = DATAGRAM_SEND_BUFFER.saturating_sub(ob.quinn_used + ob.bytes);
            payloads
                .iter()
                .take_while(|p| room.checked_sub(wire(p)).map(|r| room = r).is_some())
                .count()
        };
        let (err, bytes) = if n == payloads.len() {
            (None, total)
        } else {
            let e = Error::would_block("datagram send buffer is full");
            (Some(e), payloads[..n].iter().map(wire).sum())
        };
        if n > 0 {
            ob.bytes += bytes;
            ob.staged.push_all(prefix, &payloads[..n], bytes, counters);
            self.flush_soon(ob);
        }
        (n, err)
    }

    /// Releases the outbox, which has just taken datagrams, and schedules the connection on the
    /// shared flusher unless it is already being flushed.
    fn flush_soon(self: &Arc<Self>, mut ob: std::sync::MutexGuard<'_, Outbox>) {
        let wake = !ob.flushing;
        ob.flushing = true;
        drop(ob);
        if wake {
            super::flusher::schedule(self.clone());
        }
    }

    /// The shared flusher's part: hands what the outbox holds to quinn without waiting. What
    /// quinn has no room for goes back to the front of the outbox and the connection's own flush
    /// task takes over (it waits for room); datagrams that arrive meanwhile get the connection
    /// scheduled again. Returns how many datagrams it handed over.
    pub(crate) fn flush_ready(self: &Arc<Self>) -> usize {
        let mut batch = std::collections::VecDeque::new();
        let staged = self.take_outbox(lock(&self.outbox), &mut batch);
        if !batch.is_empty() {
            self.counters.send_flushes.fetch_add(1, Ordering::Relaxed);
        }
        let mut space = self.quic.datagram_send_buffer_space();
        let (mut handed, mut handed_bytes, mut lost) = (0usize, 0usize, false);
        while let Some((wire, _)) = batch.front() {
            let len = wire.len();
            if len > space {
                break; // quinn is full: the connection's task waits for room
            }
            space = space.saturating_sub(len + QUINN_DATAGRAM_OVERHEAD);
            let (wire, counters) = batch.pop_front().expect("front exists");
            handed += 1;
            handed_bytes += len;
            match self.quic.send_datagram(wire) {
                Ok(()) => {}
                Err(e) => {
                    counters.dropped_unsent.fetch_add(1, Ordering::Relaxed);
                    if matches!(e, quinn::SendDatagramError::ConnectionLost(_)) {
                        lost = true;
                        break;
                    }
                    log_debug!("queued datagram not sent: {e}");
                }
            }
        }
        self.counters
            .send_flushed
            .fetch_add(handed as u64, Ordering::Relaxed);
        let mut ob = lock(&self.outbox);
        ob.give_back(staged);
        ob.bytes -= handed_bytes;
        ob.quinn_used = self.quinn_used();
        if lost || !batch.is_empty() {
            // quinn is full (the connection's task waits for room) or the connection is over
            // (its task counts what is left as dropped): back to the front, in order.
            ob.put_back(batch);
            drop(ob);
            self.outbox_work.notify_one();
        } else if ob.is_empty() {
            ob.flushing = false;
        } else {
            drop(ob);
            super::flusher::schedule(self.clone());
        }
        self.max_datagram_size();
        handed
    }

    /// Bytes quinn's datagram send buffer holds now, by its own accounting (takes its lock).
    fn quinn_used(&self) -> usize {
        DATAGRAM_SEND_BUFFER.saturating_sub(self.quic.datagram_send_buffer_space())
    }

    /// Takes everything the (locked) outbox holds into `batch`, in order, cutting the staged
    /// datagrams after releasing the lock. Give the returned arrays back
    /// ([`Outbox::give_back`]) at the next lock.
    fn take_outbox(
        &self,
        mut ob: std::sync::MutexGuard<'_, Outbox>,
        batch: &mut std::collections::VecDeque<Ready>,
    ) -> Staged {
        let mut staged = ob.take(batch);
        drop(ob);
        staged.cut_into(batch);
        staged
    }

    /// Whether `len` more bytes fit in the outbox + quinn's buffer; looks at quinn again (its
    /// lock) only when the last known state says no.
    fn has_room(&self, ob: &mut Outbox, len: usize) -> bool {
        let fits = |ob: &Outbox| ob.quinn_used + ob.bytes + len <= DATAGRAM_SEND_BUFFER;
        if fits(ob) {
            return true;
        }
        ob.quinn_used = self.quinn_used();
        fits(ob)
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Waits for the peer's SETTINGS (at most `timeout`).
    pub async fn peer_settings(&self, timeout: Duration) -> Result<Arc<Settings>> {
        let mut rx = self.peer_settings.subscribe();
        let wait = async { rx.wait_for(|s| s.is_some()).await.map(|s| s.clone()) };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(Some(s))) => Ok(s),
            Ok(Ok(None)) => Err(Error::internal("settings vanished")),
            Ok(Err(_)) => Err(Error::new(
                wtd_result::WTD_ERR_CONNECTION,
                "connection closed before SETTINGS",
            )),
            Err(_) => Err(Error::timeout("peer did not send HTTP/3 SETTINGS in time")),
        }
    }

    /// True once the peer sent GOAWAY.
    pub fn goaway_received(&self) -> bool {
        self.goaway.load(Ordering::Relaxed)
    }

    /// Number of open sessions on this connection.
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Registers a session so its datagrams are routed to it.
    pub(crate) fn register(&self, session: &Arc<SessionCore>) {
        lock(&self.sessions).insert(session.quarter_stream_id(), session.clone());
    }

    /// Takes one of `max` session places, counting the open sessions and the places other
    /// requests hold until they register or give up; `None` when all are taken. The check and
    /// the reservation are one step under the sessions lock, so requests handled at once on
    /// several runtime threads cannot together exceed `max`.
    pub(crate) fn reserve_session(&self, max: usize) -> Option<SessionSlot<'_>> {
        let sessions = lock(&self.sessions);
        if sessions.len() + self.reserved.load(Ordering::Relaxed) >= max {
            return None;
        }
        self.reserved.fetch_add(1, Ordering::Relaxed);
        Some(SessionSlot { conn: self })
    }

    /// Unregisters a closed session and queues its close notice for the driver.
    pub(crate) fn unregister(&self, session: &Arc<SessionCore>) {
        lock(&self.sessions).remove(&session.quarter_stream_id());
        if self
            .events
            .send(DriverEvent::Closed(session.clone()))
            .is_err()
        {
            // The driver is gone (connection over): deliver the notice here.
            if let Some(info) = session.close_info() {
                session.events.on_closed(&info);
            }
        }
    }

    /// How many draining notices were queued for sessions of this connection (at most one per
    /// session: the first GOAWAY or DRAIN capsule that reaches it).
    pub fn draining_notices(&self) -> u64 {
        self.draining_notices.load(Ordering::Relaxed)
    }

    /// Marks `session` draining and queues its draining notice — once per session: a peer
    /// repeating DRAIN capsules costs neither queued events nor callbacks.
    pub(crate) fn notify_draining(&self, session: &Arc<SessionCore>) {
        if session.set_draining() {
            self.draining_notices.fetch_add(1, Ordering::Relaxed);
            let _ = self.events.send(DriverEvent::Draining(session.clone()));
        }
    }

    /// Runs `f` on the driver task (after the connection ended: right here).
    pub(crate) fn post(&self, f: Box<dyn FnOnce() + Send>) {
        if let Err(mpsc::error::SendError(DriverEvent::Run(f))) =
            self.events.send(DriverEvent::Run(f))
        {
            f();
        }
    }

    /// A local session close started (its capsule is on its way; see `local_close_done`).
    pub(crate) fn local_close_started(&self) {
        self.local_closes.fetch_add(1, Ordering::AcqRel);
    }

    /// A local close finished: a client closes its connection once no session is left and no
    /// other session's close is still on its way (closing under it would turn that session's
    /// code and reason into a connection close at the peer).
    pub(crate) fn local_close_done(&self) {
        self.local_closes.fetch_sub(1, Ordering::AcqRel);
        self.session_gone();
    }

    /// A session ended: a client closes its connection once no session is left and no local
    /// close is still on its way.
    pub(crate) fn session_gone(&self) {
        if self.close_when_idle.load(Ordering::Relaxed)
            && self.local_closes.load(Ordering::Acquire) == 0
            && self.session_count() == 0
        {
            self.quic.close(varint_of(H3_NO_ERROR), b"");
        }
    }

    /// Closes the connection with an HTTP/3 error.
    pub fn close_with(&self, err: &H3Error) {
        crate::logging::log(
            if err.code == H3_NO_ERROR {
                crate::logging::wtd_log_level::WTD_LOG_DEBUG
            } else {
                crate::logging::wtd_log_level::WTD_LOG_WARN
            },
            format_args!(
                "closing connection to {}: {}",
                self.quic.remote_address(),
                err
            ),
        );
        self.quic.close(varint_of(err.code), err.reason.as_bytes());
    }

    /// Sends GOAWAY (server: no request streams past those already accepted).
    pub async fn send_goaway(&self) {
        let mut payload = Vec::new();
        let next = if self.role == Role::Server {
            lock(&self.sessions).keys().max().map_or(0, |q| (q + 1) * 4)
        } else {
            0
        };
        varint::encode(next, &mut payload);
        let mut out = Vec::new();
        frame::encode(frame::GOAWAY, &payload, &mut out);
        if let Some(control) = self.control.lock().await.as_mut() {
            let _ = control.write_all(&out).await;
        }
    }

    /// Every open session (for shutdown).
    pub fn sessions(&self) -> Vec<Arc<SessionCore>> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// Closes the connection on a protocol error seen while reading a stream.
    pub(crate) fn fail(&self, end: &StreamEnd) {
        if let StreamEnd::Protocol(e) = end {
            self.close_with(e);
        }
    }

    /// Routes a batch of datagrams (quarter stream id + payload) to their sessions: one lookup
    /// per run of datagrams for the same session and one `on_datagrams` call per session, in
    /// arrival order within each session. Empties `batch`.
    async fn dispatch_datagrams(
        &self,
        batch: &mut Vec<Bytes>,
        groups: &mut Vec<(Arc<SessionCore>, Vec<Bytes>)>,
    ) -> std::result::Result<(), H3Error> {
        let mut unknown = 0u64;
        let mut result = Ok(());
        {
            let sessions = lock(&self.sessions);
            let mut last: Option<(u64, usize)> = None;
            for mut data in batch.drain(..) {
                let Some((qsid, n)) = varint::decode(&data) else {
                    result = Err(H3Error::new(
                        H3_DATAGRAM_ERROR,
                        "datagram without a quarter stream id",
                    ));
                    break;
                };
                // Past the quarter stream id (no reference-count traffic, unlike `split_to`).
                data.advance(n);
                let slot = match last {
                    Some((q, i)) if q == qsid => Some(i),
                    _ => match groups
                        .iter()
                        .position(|(s, _)| s.quarter_stream_id() == qsid)
                    {
                        Some(i) => Some(i),
                        None => sessions.get(&qsid).map(|s| {
                            groups.push((s.clone(), Vec::new()));
                            groups.len() - 1
                        }),
                    },
                };
                match slot {
                    Some(i) => {
                        last = Some((qsid, i));
                        groups[i].1.push(data);
                    }
                    None => unknown += 1,
                }
            }
            batch.clear();
        }
        if unknown > 0 {
            self.counters
                .datagrams_unknown_session
                .fetch_add(unknown, Ordering::Relaxed);
        }
        for (session, mut payloads) in groups.drain(..) {
            let deadline = tokio::time::Instant::now() + BACKPRESSURE_WAIT;
            while let Some(room) = session
                .events
                .on_datagrams(&mut payloads, tokio::time::Instant::now() < deadline)
            {
                // The reader may share this CPU: let it run now rather than after our slice.
                crate::runtime::give_way();
                let _ = tokio::time::timeout_at(deadline, room.notified()).await;
            }
        }
        result
    }
}

/// A session place held from the limit check until the session is registered
/// ([`SessionSlot::register`]) or the request gives up (drop).
pub(crate) struct SessionSlot<'a> {
    conn: &'a Connection,
}

impl SessionSlot<'_> {
    /// Registers `session` in the place (one step: it never counts twice or not at all).
    pub(crate) fn register(self, session: &Arc<SessionCore>) {
        let mut sessions = lock(&self.conn.sessions);
        sessions.insert(session.quarter_stream_id(), session.clone());
        self.conn.reserved.fetch_sub(1, Ordering::Relaxed);
        drop(sessions);
        std::mem::forget(self);
    }
}

impl Drop for SessionSlot<'_> {
    fn drop(&mut self) {
        let _sessions = lock(&self.conn.sessions);
        self.conn.reserved.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Longest the driver waits for an application that reads a session's queue but is momentarily
/// behind, before evicting (counted) from that full queue. Datagrams not yet taken from quinn
/// wait in quinn's receive buffer meanwhile.
pub const BACKPRESSURE_WAIT: Duration = Duration::from_millis(5);

/// Most datagrams taken from quinn per wake-up of the driver (the rest wait for the next round,
/// after pending session events): a session's default receive queue, so one batch fits in it.
/// 256 made the driver take more rounds than quinn at 64 B, and quinn's buffer overflowed
/// (bench/README.md: delivered 96 → 99 % at 64 B).
const MAX_DATAGRAM_BATCH: usize = crate::session::DEFAULT_INCOMING_CAPACITY;

/// Takes every datagram quinn has already buffered (up to `max` in `batch`) without waiting.
fn drain_buffered(quic: &quinn::Connection, batch: &mut Vec<Bytes>, max: usize) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    while batch.len() < max {
        let read = std::pin::pin!(quic.read_datagram());
        match read.poll(&mut cx) {
            std::task::Poll::Ready(Ok(d)) => batch.push(d),
            // An error stays with the connection: the next `read_datagram` reports it.
            _ => return,
        }
    }
}

/// Maps quinn's datagram send error to a wtd error.
pub(crate) fn map_send_error(e: quinn::SendDatagramError) -> Error {
    match e {
        quinn::SendDatagramError::TooLarge => Error::new(
            wtd_result::WTD_ERR_TOO_LARGE,
            "datagram exceeds the path's current limit",
        ),
        quinn::SendDatagramError::ConnectionLost(e) => {
            Error::closed(format!("connection lost: {e}"))
        }
        e => Error::new(wtd_result::WTD_ERR_NOT_SUPPORTED, e.to_string()),
    }
}

/// What quinn adds to a datagram's length when it accounts its send buffer (its `Datagram`
/// struct, a `Bytes`), rounded up.
pub(crate) const QUINN_DATAGRAM_OVERHEAD: usize = 64;

/// The connection's own flush task: takes over from the shared flusher when quinn's send buffer
/// is full, and hands the outbox to quinn batch by batch, waiting (without evicting anything)
/// for room. What is left when the connection ends
/// is counted as dropped on its session.
async fn flush_outbox(conn: Arc<Connection>) {
    let mut batch = std::collections::VecDeque::new();
    loop {
        {
            let mut ob = lock(&conn.outbox);
            if ob.is_empty() {
                ob.flushing = false;
            } else {
                let staged = conn.take_outbox(ob, &mut batch);
                lock(&conn.outbox).give_back(staged);
            }
        }
        if batch.is_empty() {
            tokio::select! {
                _ = conn.outbox_work.notified() => continue,
                _ = conn.quic.closed() => break,
            }
        }
        let flushed = batch.len();
        conn.counters.send_flushes.fetch_add(1, Ordering::Relaxed);
        conn.counters
            .send_flushed
            .fetch_add(flushed as u64, Ordering::Relaxed);
        let mut space = conn.quic.datagram_send_buffer_space();
        let mut handed = 0usize;
        while let Some((wire, counters)) = batch.pop_front() {
            let len = wire.len();
            let sent = if len <= space {
                // quinn charges each queued datagram its length plus its own bookkeeping
                // (one `Bytes`); count that conservatively so quinn never has to evict.
                space = space.saturating_sub(len + QUINN_DATAGRAM_OVERHEAD);
                conn.quic.send_datagram(wire)
            } else {
                // What went to quinn so far moves from the outbox's account to quinn's
                // before we wait for quinn (the total stays bounded).
                {
                    let mut ob = lock(&conn.outbox);
                    let moved = std::mem::take(&mut handed);
                    ob.bytes -= moved;
                    ob.quinn_used = conn.quinn_used().max(moved);
                }
                let r = conn.quic.send_datagram_wait(wire).await;
                space = conn.quic.datagram_send_buffer_space();
                r
            };
            handed += len;
            match sent {
                Ok(()) => {}
                Err(quinn::SendDatagramError::ConnectionLost(_)) => {
                    counters.dropped_unsent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    counters.dropped_unsent.fetch_add(1, Ordering::Relaxed);
                    log_debug!("queued datagram not sent: {e}");
                }
            }
        }
        {
            let mut ob = lock(&conn.outbox);
            ob.bytes -= handed;
            ob.quinn_used = conn.quinn_used();
        }
        conn.max_datagram_size();
        if conn.quic.close_reason().is_some() {
            break;
        }
    }
    // The connection is over: whatever is still queued will never be sent.
    let mut ob = lock(&conn.outbox);
    ob.put_back(batch);
    ob.close();
}

/// A QUIC varint for an error code (codes above 2^62 cannot occur; clamp defensively).
pub(crate) fn varint_of(code: u64) -> quinn::VarInt {
    quinn::VarInt::from_u64(code).unwrap_or(quinn::VarInt::MAX)
}

fn conn_error(e: quinn::ConnectionError) -> Error {
    Error::new(wtd_result::WTD_ERR_CONNECTION, e.to_string())
}

/// The code and reason to report for sessions still open when the connection ended.
pub(crate) fn close_info_for(err: &quinn::ConnectionError) -> CloseInfo {
    let (code, reason) = match err {
        quinn::ConnectionError::ApplicationClosed(c) => {
            let raw = c.error_code.into_inner();
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            // wtq maps the session code into the H3 space; wtr sends it raw (below 0x100).
            let code =
                h3_to_wt_app_error(raw).or(if raw < 0x100 { Some(raw as u32) } else { None });
            (
                code.unwrap_or(0),
                if reason.is_empty() {
                    format!("connection closed (0x{raw:x})")
                } else {
                    reason
                },
            )
        }
        other => (0, other.to_string()),
    };
    CloseInfo {
        code,
        reason,
        cause: CloseCause::ConnectionClosed,
    }
}

async fn drive(conn: Arc<Connection>, mut events: mpsc::UnboundedReceiver<DriverEvent>) {
    // Grows to the largest batch seen (an idle connection keeps none).
    let mut batch = Vec::new();
    let mut groups = Vec::new();
    // The last drain filled a whole batch: quinn may be buffering more than the driver takes.
    let mut behind = false;
    let lost = loop {
        tokio::select! {
            biased;
            ev = events.recv() => match ev {
                Some(ev) => handle_event(ev),
                None => return,
            },
            dg = conn.quic.read_datagram() => match dg {
                Ok(first) => {
                    let frames_before = behind.then(|| conn.quic.stats().frame_rx.datagram);
                    batch.push(first);
                    drain_buffered(&conn.quic, &mut batch, MAX_DATAGRAM_BATCH);
                    behind = batch.len() == MAX_DATAGRAM_BATCH;
                    conn.counters.receive_drains.fetch_add(1, Ordering::Relaxed);
                    conn.counters
                        .receive_drained
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    if let (Some(frames), false) = (frames_before, behind) {
                        conn.note_overflow(frames);
                    }
                    if let Err(e) = conn.dispatch_datagrams(&mut batch, &mut groups).await {
                        conn.close_with(&e);
                    }
                }
                Err(e) => break e,
            },
        }
    };
    // quinn hands out what it buffered before the error: nothing is left, the count is exact.
    conn.note_overflow(conn.quic.stats().frame_rx.datagram);
    let info = close_info_for(&lost);
    for s in conn.sessions() {
        s.mark_closed(info.clone());
    }
    // From here on a send fails and its sender delivers the event itself (`unregister`, `post`):
    // a session that another task (its CONNECT stream reader, seeing the same loss) took out of
    // the map just before the loop above queues its close notice either before this line — the
    // drain below delivers it — or after, into a closed channel. Without the close, a notice
    // queued after the drain and before the receiver is dropped was never delivered.
    events.close();
    while let Ok(ev) = events.try_recv() {
        handle_event(ev);
    }
}

fn handle_event(ev: DriverEvent) {
    match ev {
        DriverEvent::Closed(s) => {
            if let Some(info) = s.close_info() {
                s.events.on_closed(&info);
            }
        }
        DriverEvent::Draining(s) => s.events.on_draining(),
        DriverEvent::Run(f) => {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                log_error!("a posted callback panicked");
            }
        }
    }
}

async fn accept_bi_loop(conn: Arc<Connection>, handler: Option<Arc<dyn RequestHandler>>) {
    while let Ok((mut send, recv)) = conn.quic.accept_bi().await {
        match (&handler, conn.role) {
            (Some(h), Role::Server) => h.handle(conn.clone(), send, recv),
            _ => {
                // Server-initiated bidirectional streams are WebTransport streams; wtd carries
                // datagrams only.
                let _ = send.reset(varint_of(WT_BUFFERED_STREAM_REJECTED));
                let mut r = StreamReader::new(recv);
                r.stop(WT_BUFFERED_STREAM_REJECTED);
            }
        }
    }
}

async fn accept_uni_loop(conn: Arc<Connection>) {
    let seen = Arc::new(Mutex::new([false; 4]));
    while let Ok(recv) = conn.quic.accept_uni().await {
        tokio::spawn(handle_uni(conn.clone(), recv, seen.clone()));
    }
}

async fn handle_uni(conn: Arc<Connection>, recv: quinn::RecvStream, seen: Arc<Mutex<[bool; 4]>>) {
    let mut reader = StreamReader::new(recv);
    let ty = match reader.read_varint().await {
        Ok(Some(ty)) => ty,
        Ok(None) | Err(_) => return,
    };
    let critical = match ty {
        STREAM_CONTROL | STREAM_QPACK_ENCODER | STREAM_QPACK_DECODER => ty as usize,
        STREAM_PUSH => {
            // wtd never sends MAX_PUSH_ID, so a push stream is an error (RFC 9114 §4.6).
            let code = if conn.role == Role::Client {
                H3_ID_ERROR
            } else {
                H3_STREAM_CREATION_ERROR
            };
            conn.close_with(&H3Error::new(code, "unexpected push stream"));
            return;
        }
        STREAM_WEBTRANSPORT_UNI => {
            reader.stop(WT_BUFFERED_STREAM_REJECTED);
            return;
        }
        _ => {
            reader.stop(H3_STREAM_CREATION_ERROR); // unknown or GREASE stream type: ignore
            return;
        }
    };
    {
        let mut seen = lock(&seen);
        if seen[critical] {
            drop(seen);
            conn.close_with(&H3Error::new(
                H3_STREAM_CREATION_ERROR,
                format!("second stream of type 0x{ty:x}"),
            ));
            return;
        }
        seen[critical] = true;
    }
    let result = match ty {
        STREAM_CONTROL => read_control(&conn, &mut reader).await,
        STREAM_QPACK_ENCODER => read_encoder(&mut reader).await,
        _ => read_decoder(&mut reader).await,
    };
    match result {
        Err(end @ StreamEnd::Protocol(_)) => conn.fail(&end),
        Err(StreamEnd::ConnectionLost(_)) => {}
        Ok(()) | Err(StreamEnd::Reset(_)) => conn.close_with(&H3Error::new(
            H3_CLOSED_CRITICAL_STREAM,
            format!("critical stream 0x{ty:x} closed"),
        )),
    }
}

/// Reads the peer's control stream; returns only when it ends (which is an error).
async fn read_control(
    conn: &Arc<Connection>,
    reader: &mut StreamReader,
) -> std::result::Result<(), StreamEnd> {
    match reader.next_frame().await? {
        Some((frame::SETTINGS, payload)) => {
            let settings = Settings::decode_payload(&payload)?;
            if settings
                .get(super::settings::QPACK_MAX_TABLE_CAPACITY)
                .is_some_and(|v| v > 0)
            {
                // Fine: we simply never use the peer's dynamic table.
            }
            conn.peer_settings.send_replace(Some(Arc::new(settings)));
        }
        Some((ty, _)) => {
            return Err(H3Error::new(
                H3_MISSING_SETTINGS,
                format!("control stream began with frame 0x{ty:x}"),
            )
            .into())
        }
        None => return Ok(()),
    }
    while let Some((ty, payload)) = reader.next_frame().await? {
        match ty {
            frame::SETTINGS => {
                return Err(H3Error::new(H3_FRAME_UNEXPECTED, "second SETTINGS frame").into())
            }
            frame::DATA | frame::HEADERS | frame::PUSH_PROMISE => {
                return Err(H3Error::new(
                    H3_FRAME_UNEXPECTED,
                    format!("frame 0x{ty:x} on control stream"),
                )
                .into())
            }
            frame::GOAWAY => {
                let id = frame::parse_goaway(&payload)?;
                if conn.role == Role::Client && id % 4 != 0 {
                    // From a server the id must be a client-initiated bidirectional stream id.
                    return Err(H3Error::new(
                        H3_ID_ERROR,
                        format!("GOAWAY id {id} is not a request stream id"),
                    )
                    .into());
                }
                let previous = lock(&conn.goaway_id).replace(id);
                match previous {
                    Some(prev) if id > prev => {
                        return Err(H3Error::new(
                            H3_ID_ERROR,
                            format!("GOAWAY id grew from {prev} to {id}"),
                        )
                        .into())
                    }
                    // Only the first GOAWAY is acted on: later ones (same or lower id) would
                    // only repeat the draining notices.
                    Some(_) => {}
                    None => {
                        conn.goaway.store(true, Ordering::Relaxed);
                        for s in conn.sessions() {
                            conn.notify_draining(&s);
                        }
                    }
                }
            }
            frame::MAX_PUSH_ID if conn.role == Role::Client => {
                return Err(H3Error::new(H3_FRAME_UNEXPECTED, "MAX_PUSH_ID from a server").into())
            }
            _ => {} // CANCEL_PUSH, MAX_PUSH_ID, unknown and GREASE frames are ignored
        }
    }
    Ok(())
}

async fn read_encoder(reader: &mut StreamReader) -> std::result::Result<(), StreamEnd> {
    let mut decoder = EncoderStreamReader::new();
    while let Some(bytes) = reader.next_bytes().await? {
        decoder
            .feed(&bytes)
            .map_err(|e| StreamEnd::Protocol(H3Error::new(e.h3_code(), e.to_string())))?;
    }
    Ok(())
}

async fn read_decoder(reader: &mut StreamReader) -> std::result::Result<(), StreamEnd> {
    // With no dynamic table in use there is nothing for the peer's decoder to tell us.
    while reader.next_bytes().await?.is_some() {}
    Ok(())
}
