//! One WebTransport session at the HTTP/3 level: its CONNECT stream, its quarter stream id,
//! datagram send, close, and the sink that receives its datagrams and close notice.

use crate::lock::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::capsule;
use super::connection::{Connection, SendCounters};
use super::draft::wtd_draft;
use super::varint;
use crate::error::{wtd_result, Error, Result};

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// This side called close.
    Local,
    /// The peer sent CLOSE_WEBTRANSPORT_SESSION.
    PeerCapsule,
    /// The peer finished the CONNECT stream without a capsule.
    PeerFin,
    /// The peer reset the CONNECT stream.
    PeerReset,
    /// The QUIC connection closed (either side, or idle timeout).
    ConnectionClosed,
}

/// The code and reason a session closed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// Application close code (0 when the peer gave none).
    pub code: u32,
    /// Close reason (may be empty).
    pub reason: String,
    /// What ended it.
    pub cause: CloseCause,
}

/// Receives a session's datagrams and its close notice. Called on the connection's driver task,
/// never concurrently for one connection.
pub trait SessionEvents: Send + Sync + 'static {
    /// Datagrams for this session, in arrival order (payloads without the quarter stream id).
    /// Takes them out of `batch`; the caller reuses the vector. With `may_defer`, a sink whose
    /// reader is momentarily behind may take only some and return a notifier: the caller waits
    /// on it (bounded) and offers the rest again. Without it, the sink takes them all.
    fn on_datagrams(
        &self,
        batch: &mut Vec<Bytes>,
        may_defer: bool,
    ) -> Option<Arc<tokio::sync::Notify>>;
    /// The session closed; called exactly once.
    fn on_closed(&self, info: &CloseInfo);
    /// The peer sent DRAIN_WEBTRANSPORT_SESSION or GOAWAY.
    fn on_draining(&self) {}
}

/// Request metadata of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// `:path` (with query).
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// `origin` header, when sent (browsers always send it).
    pub origin: Option<String>,
}

/// A session at the HTTP/3 level.
pub struct SessionCore {
    pub(crate) conn: Arc<Connection>,
    stream_id: u64,
    draft: wtd_draft,
    request: RequestInfo,
    prefix: Vec<u8>,
    send: tokio::sync::Mutex<Option<quinn::SendStream>>,
    closed: Mutex<Option<CloseInfo>>,
    /// Set with `closed` (a lock-free check for the send path).
    closed_flag: AtomicBool,
    draining: AtomicBool,
    /// Set once the peer's side of the CONNECT stream has ended (FIN, reset, connection loss).
    peer_ended: tokio::sync::watch::Sender<bool>,
    pub(crate) events: Arc<dyn SessionEvents>,
    /// What this session handed to QUIC.
    pub sent: Arc<SendCounters>,
}

impl SessionCore {
    pub(crate) fn new(
        conn: Arc<Connection>,
        stream_id: u64,
        draft: wtd_draft,
        request: RequestInfo,
        send: quinn::SendStream,
        events: Arc<dyn SessionEvents>,
    ) -> Arc<Self> {
        let mut prefix = Vec::with_capacity(8);
        varint::encode(stream_id / 4, &mut prefix);
        Arc::new(SessionCore {
            conn,
            stream_id,
            draft,
            request,
            prefix,
            send: tokio::sync::Mutex::new(Some(send)),
            closed: Mutex::new(None),
            closed_flag: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            peer_ended: tokio::sync::watch::channel(false).0,
            events,
            sent: Arc::new(SendCounters::default()),
        })
    }

    /// The session id: the CONNECT stream's id.
    pub fn id(&self) -> u64 {
        self.stream_id
    }
    /// The quarter stream id that prefixes every datagram of this session.
    pub fn quarter_stream_id(&self) -> u64 {
        self.stream_id / 4
    }
    /// The negotiated draft.
    pub fn draft(&self) -> wtd_draft {
        self.draft
    }
    /// Path, authority and origin of the CONNECT request.
    pub fn request(&self) -> &RequestInfo {
        &self.request
    }
    /// The peer's address.
    pub fn remote_address(&self) -> std::net::SocketAddr {
        self.conn.quic.remote_address()
    }
    /// Current round-trip estimate.
    pub fn rtt(&self) -> std::time::Duration {
        self.conn.quic.rtt()
    }
    /// True once the peer asked to drain (capsule or GOAWAY).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed) || self.conn.goaway_received()
    }
    /// The close code/reason once closed.
    pub fn close_info(&self) -> Option<CloseInfo> {
        lock(&self.closed).clone()
    }
    /// True once closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.closed).is_some()
    }

    /// Largest payload one datagram of this session can carry right now: quinn's current limit
    /// (it grows with path MTU discovery) minus the quarter-stream-id prefix; 0 when the peer
    /// does not accept datagrams.
    pub fn max_datagram_size(&self) -> usize {
        self.conn
            .max_datagram_size()
            .saturating_sub(self.prefix.len())
    }

    /// [`SessionCore::max_datagram_size`] as of the connection's last drain or flush (no lock
    /// of quinn's connection state): what the send paths check against. A datagram that fits
    /// this but no longer fits the path when it is flushed is counted in `dropped_unsent`.
    pub(crate) fn max_datagram_size_cached(&self) -> usize {
        self.conn
            .max_datagram_size_cached()
            .saturating_sub(self.prefix.len())
    }

    /// Accepts one datagram for sending without blocking (see [`Connection::send_datagram`]):
    /// WTD_ERR_WOULD_BLOCK when the connection's send buffer is full — never a silent eviction.
    pub fn send_datagram(&self, payload: &[u8]) -> Result<()> {
        self.check_sendable(payload.len())?;
        self.conn.send_datagram(&self.prefix, payload, &self.sent)?;
        self.sent.datagrams.fetch_add(1, Ordering::Relaxed);
        self.sent
            .bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// [`SessionCore::send_datagram`] for a batch: one closed/size check, one outbox lock, at
    /// most one wake-up. Stops at the first datagram that cannot be accepted; returns how many
    /// were accepted (the first ones) and why the next was not.
    pub fn send_datagrams(&self, payloads: &[&[u8]]) -> (usize, Option<Error>) {
        let Some(first) = payloads.first() else {
            return (0, None);
        };
        // The closed flag and the size limit are read once: the first datagram is checked in
        // full, the others only against the limit read for it.
        if let Err(e) = self.check_sendable(first.len()) {
            return (0, Some(e));
        }
        let max = self.max_datagram_size_cached();
        let valid = payloads
            .iter()
            .position(|p| p.len() > max)
            .unwrap_or(payloads.len());
        let err = (valid < payloads.len())
            .then(|| self.check_sendable(payloads[valid].len()).err())
            .flatten();
        let (n, blocked) = self
            .conn
            .send_datagrams(&self.prefix, &payloads[..valid], &self.sent);
        let bytes: usize = payloads[..n].iter().map(|p| p.len()).sum();
        self.sent.datagrams.fetch_add(n as u64, Ordering::Relaxed);
        self.sent.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        (n, blocked.or(err))
    }

    /// Runs `f` on the connection's driver task, in order with this connection's datagram and
    /// close callbacks (so no two callbacks of a connection ever run in parallel).
    pub fn post(&self, f: Box<dyn FnOnce() + Send>) {
        self.conn.post(f);
    }

    fn check_sendable(&self, len: usize) -> Result<()> {
        if self.closed_flag.load(Ordering::Acquire) {
            return Err(Error::closed("session is closed"));
        }
        let max = self.max_datagram_size_cached();
        if max == 0 {
            return Err(Error::new(
                wtd_result::WTD_ERR_NOT_SUPPORTED,
                "peer does not accept datagrams (no max_datagram_frame_size)",
            ));
        }
        if len > max {
            return Err(Error::new(
                wtd_result::WTD_ERR_TOO_LARGE,
                format!("datagram of {len} bytes exceeds max_datagram_size {max}"),
            ));
        }
        Ok(())
    }

    /// Closes the session with `code` and `reason` (idempotent, never blocks): sends
    /// CLOSE_WEBTRANSPORT_SESSION (inside a DATA frame, or raw for draft-13) and FIN.
    pub fn close(self: &Arc<Self>, code: u32, reason: &str) {
        let info = CloseInfo {
            code,
            reason: reason.to_owned(),
            cause: CloseCause::Local,
        };
        // Counted before the session leaves the connection's table: a sibling's close ending in
        // between would otherwise find no session and no close on its way, and close the
        // connection under this session's capsule (its peer would see a connection close
        // instead of this code and reason).
        self.conn.local_close_started();
        if !self.mark_closed(info) {
            self.conn.local_close_done();
            return;
        }
        let capsule = capsule::encode_close(code, reason, !self.draft.raw_capsules());
        let me = self.clone();
        crate::h3::connection::spawn_closing(async move {
            if let Some(mut send) = me.send.lock().await.take() {
                let _ = send.write_all(&capsule).await;
                let _ = send.finish();
            }
            // Wait (bounded) until the peer has processed the capsule — it answers with FIN or
            // closes — before a client closes the connection under it (an acknowledged capsule
            // may still be unread), and so a process exiting right after close delivers it.
            let mut ended = me.peer_ended.subscribe();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ended.wait_for(|e| *e))
                .await;
            me.conn.local_close_done();
        });
    }

    /// Records the close (first caller wins), unregisters the session and queues the close
    /// notice for the driver. Returns false when it was already closed.
    pub(crate) fn mark_closed(self: &Arc<Self>, info: CloseInfo) -> bool {
        {
            let mut closed = lock(&self.closed);
            if closed.is_some() {
                return false;
            }
            *closed = Some(info);
            self.closed_flag.store(true, Ordering::Release);
        }
        self.conn.unregister(self);
        true
    }

    /// Writes bytes on the CONNECT stream (the server's response); false if it failed.
    pub(crate) async fn write_stream(&self, data: &[u8]) -> bool {
        match self.send.lock().await.as_mut() {
            Some(send) => send.write_all(data).await.is_ok(),
            None => false,
        }
    }

    /// Answers the peer's close with our FIN (what aioquic and pywebtransport do).
    pub(crate) async fn finish_send(&self) {
        if let Some(mut send) = self.send.lock().await.take() {
            let _ = send.finish();
        }
    }

    /// Records that the peer's side of the CONNECT stream ended.
    pub(crate) fn set_peer_ended(&self) {
        self.peer_ended.send_replace(true);
    }

    /// Marks the session draining; true only the first time (a session drains once, however
    /// many DRAIN capsules or GOAWAYs say so).
    pub(crate) fn set_draining(&self) -> bool {
        !self.draining.swap(true, Ordering::Relaxed)
    }
}
