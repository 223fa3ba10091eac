//! What a datagram transport sends through and hears from: a WebTransport session, or an
//! in-memory pipe with injectable loss for tests of the layers above.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::lock::lock;
use crate::session::{Session, SessionCallbacks};

/// Where arriving datagrams and the end of the link are reported.
pub trait LinkSink: Send + Sync + 'static {
    /// Datagrams arrived (in order); takes them out of `batch`. With `may_defer` a sink whose
    /// reader is momentarily behind may take only some and return what the link waits on before
    /// offering the rest again (see `crate::pace`).
    fn deliver_batch(
        &self,
        batch: &mut Vec<Bytes>,
        may_defer: bool,
    ) -> Option<Arc<tokio::sync::Notify>>;
    /// A datagram arrived.
    fn deliver(&self, data: Bytes) {
        self.deliver_batch(&mut vec![data], false);
    }
    /// The link (session) closed.
    fn link_closed(&self);
}

/// A datagram path to one peer.
pub trait Link: Send + Sync + 'static {
    /// Session id to report.
    fn session_id(&self) -> u64;
    /// Largest payload now.
    fn max_datagram_size(&self) -> usize;
    /// True while datagrams can flow.
    fn is_open(&self) -> bool;
    /// Sends now or fails with WTD_ERR_WOULD_BLOCK when there is no room.
    fn try_send(&self, data: &[u8]) -> Result<()>;
    /// Sends the first datagrams of `items` that it can, in order; returns how many, and why
    /// the next one was not sent.
    fn try_send_batch(&self, items: &[&[u8]]) -> (usize, Option<Error>) {
        for (i, d) in items.iter().enumerate() {
            if let Err(e) = self.try_send(d) {
                return (i, Some(e));
            }
        }
        (items.len(), None)
    }
    /// Routes arrivals and the close notice to `sink` from now on.
    fn attach(&self, sink: Weak<dyn LinkSink>) -> Result<()>;
    /// Runs `f` serialized with the delivery callbacks.
    fn post(&self, f: Box<dyn FnOnce() + Send>);
}

/// A link over a WebTransport session.
pub struct SessionLink {
    session: Session,
}

impl SessionLink {
    /// Wraps a session.
    pub fn new(session: Session) -> Arc<Self> {
        Arc::new(SessionLink { session })
    }
}

impl Link for SessionLink {
    fn session_id(&self) -> u64 {
        self.session.id()
    }
    fn max_datagram_size(&self) -> usize {
        // The send-path value (no quinn lock per datagram); see SessionCore.
        self.session.core().max_datagram_size_cached()
    }
    fn is_open(&self) -> bool {
        !self.session.is_closed()
    }
    fn try_send(&self, data: &[u8]) -> Result<()> {
        self.session.send_datagram(data)
    }
    fn try_send_batch(&self, items: &[&[u8]]) -> (usize, Option<Error>) {
        self.session.core().send_datagrams(items)
    }
    fn attach(&self, sink: Weak<dyn LinkSink>) -> Result<()> {
        let (a, b, c) = (sink.clone(), sink.clone(), sink);
        self.session.set_layer_callbacks(Some(SessionCallbacks {
            on_datagrams: Some(Box::new(move |batch, may_defer| match a.upgrade() {
                Some(s) => s.deliver_batch(batch, may_defer),
                None => {
                    batch.clear();
                    None
                }
            })),
            on_closed: Some(Box::new(move |_| {
                if let Some(s) = b.upgrade() {
                    s.link_closed()
                }
            })),
            ..Default::default()
        }));
        // Datagrams that were queued on the session before the transport existed move over.
        if let Some(s) = c.upgrade() {
            while let Ok(d) = self.session.recv_datagram(Some(std::time::Duration::ZERO)) {
                s.deliver(d);
            }
        }
        if self.session.is_closed() {
            return Err(Error::closed("session is closed"));
        }
        Ok(())
    }
    fn post(&self, f: Box<dyn FnOnce() + Send>) {
        self.session.core().post(f);
    }
}

/// One end of an in-memory datagram pipe (for tests and examples without a network): what one
/// end sends is delivered to the other, in order, on a runtime task (like a real connection's
/// driver), minus injected loss.
pub struct MemoryLink {
    peer: Mutex<Weak<MemoryLink>>,
    to_peer: tokio::sync::mpsc::UnboundedSender<Bytes>,
    sink: Mutex<Option<Weak<dyn LinkSink>>>,
    open: AtomicBool,
    max_size: usize,
    /// Loss probability × 2^32 (0 = none).
    loss: AtomicU64,
    rng: AtomicU64,
    /// Datagrams this end's sends lost on purpose.
    pub lost: AtomicU64,
    blocked: AtomicBool,
    drop_filter: Mutex<Option<DropFilter>>,
}

/// A test hook deciding, per datagram this end sends, whether to drop it (true = drop).
pub type DropFilter = Box<dyn FnMut(&[u8]) -> bool + Send>;

impl MemoryLink {
    /// A connected pair with a maximum payload of `max_size` bytes.
    pub fn pair(max_size: usize) -> Result<(Arc<MemoryLink>, Arc<MemoryLink>)> {
        let handle = crate::runtime::handle()?;
        let (to_b, from_a) = tokio::sync::mpsc::unbounded_channel();
        let (to_a, from_b) = tokio::sync::mpsc::unbounded_channel();
        let make = |seed, to_peer| {
            Arc::new(MemoryLink {
                peer: Mutex::new(Weak::new()),
                to_peer,
                sink: Mutex::new(None),
                open: AtomicBool::new(true),
                max_size,
                loss: AtomicU64::new(0),
                rng: AtomicU64::new(seed),
                lost: AtomicU64::new(0),
                blocked: AtomicBool::new(false),
                drop_filter: Mutex::new(None),
            })
        };
        let (a, b) = (
            make(0x9e37_79b9_7f4a_7c15, to_b),
            make(0xd1b5_4a32_d192_ed03, to_a),
        );
        *a.peer.lock().unwrap() = Arc::downgrade(&b);
        *b.peer.lock().unwrap() = Arc::downgrade(&a);
        handle.spawn(deliver_task(Arc::downgrade(&b), from_a));
        handle.spawn(deliver_task(Arc::downgrade(&a), from_b));
        Ok((a, b))
    }

    /// Drops each datagram this end sends with probability `fraction` (deterministic PRNG).
    pub fn set_loss(&self, fraction: f64) {
        self.loss.store(
            (fraction.clamp(0.0, 1.0) * 4_294_967_296.0) as u64,
            Ordering::Relaxed,
        );
    }

    /// While blocked, this end has no send room: `try_send` fails with WTD_ERR_WOULD_BLOCK
    /// (like a full QUIC send buffer).
    pub fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::SeqCst);
    }

    /// Installs (None: removes) a filter run on every datagram this end sends, before the random
    /// loss: when it returns true the datagram is dropped (counted in `lost`). Lets a test lose
    /// chosen datagrams, e.g. the first five copies of one sequence number.
    pub fn set_drop_filter(&self, filter: Option<DropFilter>) {
        *lock(&self.drop_filter) = filter;
    }

    /// Closes both ends.
    pub fn close(&self) {
        for end in [Some(self), self.peer.lock().unwrap().upgrade().as_deref()]
            .into_iter()
            .flatten()
        {
            if end.open.swap(false, Ordering::SeqCst) {
                if let Some(s) = end.sink.lock().unwrap().as_ref().and_then(Weak::upgrade) {
                    s.link_closed();
                }
            }
        }
    }

    fn lose(&self) -> bool {
        let p = self.loss.load(Ordering::Relaxed);
        if p == 0 {
            return false;
        }
        // xorshift64*
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) < p
    }
}

impl Link for MemoryLink {
    fn session_id(&self) -> u64 {
        0
    }
    fn max_datagram_size(&self) -> usize {
        self.max_size
    }
    fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }
    fn try_send(&self, data: &[u8]) -> Result<()> {
        if !self.is_open() {
            return Err(Error::closed("link closed"));
        }
        if self.blocked.load(Ordering::SeqCst) {
            return Err(Error::would_block("memory link blocked"));
        }
        if data.len() > self.max_size {
            return Err(Error::new(
                crate::error::wtd_result::WTD_ERR_TOO_LARGE,
                "too large",
            ));
        }
        let filtered = lock(&self.drop_filter).as_mut().is_some_and(|f| f(data));
        if filtered || self.lose() {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let _ = self.to_peer.send(Bytes::copy_from_slice(data));
        Ok(())
    }
    fn attach(&self, sink: Weak<dyn LinkSink>) -> Result<()> {
        *self.sink.lock().unwrap() = Some(sink);
        Ok(())
    }
    fn post(&self, f: Box<dyn FnOnce() + Send>) {
        f();
    }
}

async fn deliver_task(end: Weak<MemoryLink>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>) {
    let mut batch = Vec::new();
    while let Some(d) = rx.recv().await {
        batch.push(d);
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let Some(end) = end.upgrade() else { return };
        if !end.is_open() {
            batch.clear();
            continue;
        }
        let sink = end.sink.lock().unwrap().as_ref().and_then(Weak::upgrade);
        match sink {
            Some(sink) => {
                sink.deliver_batch(&mut batch, false);
            }
            None => batch.clear(),
        }
    }
}
