//! The WebTransport server: a QUIC endpoint that accepts sessions of every supported draft.

use crate::lock::lock;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::tls::ServerIdentity;
use super::QuicSettings;
use crate::error::{wtd_result, Error, Result};
use crate::h3::connection::{wait_closing, Connection, RequestHandler, Role};
use crate::h3::errors::{H3Error, H3_EXCESSIVE_LOAD, H3_MISSING_SETTINGS, H3_NO_ERROR};
use crate::h3::request::{serve_request, Acceptor, Refusal};
use crate::h3::session_core::{RequestInfo, SessionCore};
use crate::h3::wtd_draft;
use crate::runtime;
use crate::session::{Incoming, Session, DEFAULT_INCOMING_CAPACITY};

/// Decides on a session request: return 200 to accept, another HTTP status to refuse.
/// Runs on a wtd runtime thread; must be quick and must not block.
pub type RequestFilter = Box<dyn Fn(&RequestInfo, wtd_draft) -> u16 + Send + Sync>;
/// Receives each new session (instead of the accept queue). Runs on a wtd runtime thread.
pub type SessionCallback = Box<dyn Fn(Session) + Send + Sync>;

/// Where the server's certificate comes from.
pub enum Identity {
    /// PEM files: certificate chain and private key.
    PemFiles {
        /// Certificate chain file.
        cert: String,
        /// Private key file.
        key: String,
    },
    /// A generated ECDSA P-256 certificate for these names, valid 13 days (browsers accept
    /// such a certificate through `serverCertificateHashes`).
    SelfSigned(Vec<String>),
}

/// Server settings.
pub struct ServerConfig {
    /// Address to listen on (port 0 picks one).
    pub bind: SocketAddr,
    /// Certificate source.
    pub identity: Identity,
    /// QUIC idle timeout and keep-alive.
    pub quic: QuicSettings,
    /// Receive-queue capacity of each session.
    pub incoming_capacity: usize,
    /// Accept/refuse hook (None: accept every WebTransport request).
    pub filter: Option<RequestFilter>,
    /// New-session hook (None: sessions wait in the accept queue).
    pub on_session: Option<SessionCallback>,
    /// Most sessions waiting in the accept queue (counting requests being answered); more are
    /// refused with 503. Unused with `on_session`.
    pub accept_queue_capacity: usize,
    /// Most connections at once; more are refused during the handshake (CONNECTION_REFUSED).
    pub max_connections: usize,
    /// Most connections at once from one IP address; more are refused the same way.
    pub max_connections_per_ip: usize,
    /// A connection whose peer sent no HTTP/3 SETTINGS this long after the handshake is closed
    /// (H3_MISSING_SETTINGS). Also bounds setting up our own control stream.
    pub settings_timeout: Duration,
    /// A connection with no open session for this long (after the handshake, or after its last
    /// session ended) is closed (H3_NO_ERROR). Keep-alives do not count as activity.
    pub session_timeout: Duration,
    /// A request stream must deliver its complete HEADERS within this long; otherwise it is
    /// reset with H3_REQUEST_INCOMPLETE.
    pub header_timeout: Duration,
}

/// How long `Server::close` waits for GOAWAY to be written to every connection.
const CLOSE_GOAWAY_WAIT: Duration = Duration::from_millis(500);
/// How long `Server::close` waits for the endpoint to go idle after closing it.
const CLOSE_IDLE_WAIT: Duration = Duration::from_millis(500);

/// Default [`ServerConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default [`ServerConfig::max_connections_per_ip`].
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;
/// Default [`ServerConfig::settings_timeout`], [`ServerConfig::session_timeout`] and
/// [`ServerConfig::header_timeout`].
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Default [`ServerConfig::accept_queue_capacity`].
pub const DEFAULT_ACCEPT_QUEUE_CAPACITY: usize = 128;

impl ServerConfig {
    /// Listen on `bind` with a generated certificate for localhost/127.0.0.1/::1.
    pub fn new(bind: SocketAddr) -> Self {
        ServerConfig {
            bind,
            identity: Identity::SelfSigned(vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "::1".into(),
            ]),
            quic: QuicSettings::default(),
            incoming_capacity: DEFAULT_INCOMING_CAPACITY,
            filter: None,
            on_session: None,
            accept_queue_capacity: DEFAULT_ACCEPT_QUEUE_CAPACITY,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            settings_timeout: DEFAULT_DEADLINE,
            session_timeout: DEFAULT_DEADLINE,
            header_timeout: DEFAULT_DEADLINE,
        }
    }
}

/// What the server refused or dropped to protect itself, by reason (a snapshot; see
/// [`Server::stats`] and docs/SECURITY.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Requests answered 431: header block over 16 KiB or over 64 fields.
    pub refused_headers_too_large: u64,
    /// Requests answered 400: malformed (see [`crate::h3::request::validate_request`]).
    pub refused_malformed: u64,
    /// CONNECT streams reset with H3_REQUEST_REJECTED: the connection already had 16 sessions.
    pub refused_too_many_sessions: u64,
    /// Requests answered 503 because the accept queue was full.
    pub refused_queue_full: u64,
    /// Sessions removed from the accept queue because they closed before `accept` took them.
    pub queue_closed_dropped: u64,
    /// Request streams reset because their HEADERS did not arrive within `header_timeout`.
    pub refused_header_timeout: u64,
    /// Connections refused because `max_connections` were open.
    pub refused_connections_global: u64,
    /// Connections refused because `max_connections_per_ip` were open from that address.
    pub refused_connections_per_ip: u64,
    /// Connections closed because the peer sent no SETTINGS within `settings_timeout` (or our
    /// own control stream could not be opened in that time).
    pub closed_settings_timeout: u64,
    /// Connections closed because no session was open for `session_timeout`.
    pub closed_session_timeout: u64,
}

#[derive(Default)]
struct Counters {
    headers_too_large: AtomicU64,
    malformed: AtomicU64,
    too_many_sessions: AtomicU64,
    queue_full: AtomicU64,
    queue_closed_dropped: AtomicU64,
    header_timeout: AtomicU64,
    connections_global: AtomicU64,
    connections_per_ip: AtomicU64,
    settings_timeout: AtomicU64,
    session_timeout: AtomicU64,
}

/// Live connections, counted globally and per source address.
#[derive(Default)]
struct ConnTable {
    /// By quinn stable id: the connection and when it last had a session.
    live: HashMap<usize, ConnEntry>,
    per_ip: HashMap<IpAddr, usize>,
    /// Admitted connections (handshaking or live).
    total: usize,
}

struct ConnEntry {
    conn: Weak<Connection>,
    /// Last time a session was established on it.
    last_session: Arc<Mutex<Instant>>,
}

/// One admitted connection's place in the [`ConnTable`]; released on drop.
struct ConnSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
    id: Option<usize>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut t = lock(&self.shared.conns);
        t.total = t.total.saturating_sub(1);
        if let Some(n) = t.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.per_ip.remove(&self.ip);
            }
        }
        if let Some(id) = self.id {
            t.live.remove(&id);
        }
    }
}
/// The accept queue: sessions waiting for `accept`, and slots promised to requests whose 200 is
/// on its way.
#[derive(Default)]
struct Queue {
    sessions: VecDeque<Session>,
    reserved: usize,
}

impl Queue {
    /// Drops sessions that closed while waiting; returns how many.
    fn prune_closed(&mut self) -> u64 {
        let before = self.sessions.len();
        self.sessions.retain(|s| !s.is_closed());
        (before - self.sessions.len()) as u64
    }
}

struct Shared {
    counters: Counters,
    filter: Option<RequestFilter>,
    on_session: Option<SessionCallback>,
    incoming_capacity: usize,
    queue_capacity: usize,
    queue: Mutex<Queue>,
    ready: runtime::Signal,
    /// Readable while a session waits in the queue or the server is closed (updated under
    /// `queue`'s lock).
    readiness: crate::ready::Readiness,
    closed: AtomicBool,
    conns: Mutex<ConnTable>,
    limits: Limits,
}

/// The connection limits and deadlines of [`ServerConfig`].
#[derive(Clone, Copy)]
struct Limits {
    max_connections: usize,
    max_connections_per_ip: usize,
    settings_timeout: Duration,
    session_timeout: Duration,
    header_timeout: Duration,
}

impl Shared {
    /// Admits a new connection from `ip` unless a cap is reached (then counts the refusal).
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let mut t = lock(&self.conns);
        let from_ip = t.per_ip.get(&ip).copied().unwrap_or(0);
        let refused = if t.total >= self.limits.max_connections {
            &self.counters.connections_global
        } else if from_ip >= self.limits.max_connections_per_ip {
            &self.counters.connections_per_ip
        } else {
            t.total += 1;
            *t.per_ip.entry(ip).or_insert(0) += 1;
            return Some(ConnSlot {
                shared: self.clone(),
                ip,
                id: None,
            });
        };
        drop(t);
        refused.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Acceptor for Shared {
    type Sink = Incoming;

    fn accept(
        &self,
        request: &RequestInfo,
        draft: wtd_draft,
    ) -> std::result::Result<Arc<Incoming>, u16> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(503);
        }
        let status = self.filter.as_ref().map_or(200, |f| f(request, draft));
        if !(200..300).contains(&status) {
            log_info!(
                "refused session request for {:?} with {status}",
                request.path
            );
            return Err(status);
        }
        if self.on_session.is_none() {
            let mut q = lock(&self.queue);
            let pruned = q.prune_closed();
            if pruned > 0 {
                self.readiness.update(!q.sessions.is_empty());
            }
            self.counters
                .queue_closed_dropped
                .fetch_add(pruned, Ordering::Relaxed);
            if q.sessions.len() + q.reserved >= self.queue_capacity {
                drop(q);
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                log_warn!(
                    "accept queue full ({} sessions): refusing {:?} with 503",
                    self.queue_capacity,
                    request.path
                );
                return Err(503);
            }
            q.reserved += 1;
        }
        Ok(Incoming::new(self.incoming_capacity))
    }

    fn refused(&self, reason: Refusal) {
        let c = &self.counters;
        match reason {
            Refusal::HeadersTooLarge => &c.headers_too_large,
            Refusal::Malformed => &c.malformed,
            Refusal::TooManySessions => &c.too_many_sessions,
            Refusal::HeaderTimeout => &c.header_timeout,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn header_timeout(&self) -> Duration {
        self.limits.header_timeout
    }

    fn established(&self, core: Arc<SessionCore>, sink: Arc<Incoming>) {
        if let Some(e) = lock(&self.conns).live.get(&core.conn.quic.stable_id()) {
            *lock(&e.last_session) = Instant::now();
        }
        let session = Session::new(core, sink);
        runtime::note_events(1);
        log_debug!(
            "session {} opened on {:?} ({})",
            session.id(),
            session.request().path,
            session.draft().as_str()
        );
        match &self.on_session {
            Some(cb) => cb(session),
            None => {
                let mut q = lock(&self.queue);
                q.reserved = q.reserved.saturating_sub(1);
                q.sessions.push_back(session);
                self.readiness.update(true);
                drop(q);
                self.ready.notify_one();
            }
        }
    }

    fn abandoned(&self, _sink: Arc<Incoming>) {
        if self.on_session.is_none() {
            let mut q = lock(&self.queue);
            q.reserved = q.reserved.saturating_sub(1);
        }
    }
}

struct Handler(Arc<Shared>);

impl RequestHandler for Handler {
    fn handle(&self, conn: Arc<Connection>, send: quinn::SendStream, recv: quinn::RecvStream) {
        tokio::spawn(serve_request(conn, send, recv, self.0.clone()));
    }
}

/// A listening WebTransport server.
pub struct Server {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    cert_hash: [u8; 32],
}

impl Server {
    /// Binds and starts accepting connections.
    pub fn bind(config: ServerConfig) -> Result<Server> {
        let identity = match &config.identity {
            Identity::PemFiles { cert, key } => ServerIdentity::from_pem_files(cert, key)?,
            Identity::SelfSigned(names) => {
                ServerIdentity::self_signed(names, Duration::from_secs(13 * 24 * 3600))?
            }
        };
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(identity.server_config()?)
            .map_err(|e| Error::new(wtd_result::WTD_ERR_TLS, e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server_config.transport_config(Arc::new(config.quic.transport(true)));
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            filter: config.filter,
            on_session: config.on_session,
            incoming_capacity: config.incoming_capacity,
            queue_capacity: config.accept_queue_capacity.max(1),
            queue: Mutex::new(Queue::default()),
            ready: runtime::Signal::new(),
            readiness: Default::default(),
            closed: AtomicBool::new(false),
            conns: Mutex::new(ConnTable::default()),
            limits: Limits {
                max_connections: config.max_connections.max(1),
                max_connections_per_ip: config.max_connections_per_ip.max(1),
                settings_timeout: config.settings_timeout,
                session_timeout: config.session_timeout,
                header_timeout: config.header_timeout,
            },
        });
        let handle = runtime::handle()?;
        let endpoint = {
            let _guard = handle.enter();
            super::socket::endpoint(config.bind, Some(server_config)).map_err(|e| {
                Error::new(
                    wtd_result::WTD_ERR_IO,
                    format!("cannot listen on {}: {e}", config.bind),
                )
            })?
        };
        handle.spawn(accept_loop(endpoint.clone(), shared.clone()));
        log_info!(
            "listening on {}",
            endpoint
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        Ok(Server {
            endpoint,
            shared,
            cert_hash: identity.leaf_hash(),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// SHA-256 of the server's leaf certificate.
    pub fn cert_sha256(&self) -> [u8; 32] {
        self.cert_hash
    }

    /// Next new session, waiting up to `timeout` (`None`: forever, `Some(ZERO)`: poll).
    /// WTD_ERR_WOULD_BLOCK / WTD_ERR_TIMEOUT when none, WTD_ERR_CLOSED after close.
    pub fn accept(&self, timeout: Option<Duration>) -> Result<Session> {
        let deadline = runtime::Deadline::start(timeout)?;
        let mut q = lock(&self.shared.queue);
        loop {
            if let Some(s) = q.sessions.pop_front() {
                let more = !q.sessions.is_empty() || self.shared.closed.load(Ordering::Relaxed);
                self.shared.readiness.update(more);
                return Ok(s);
            }
            if self.shared.closed.load(Ordering::Relaxed) {
                return Err(Error::closed("server is closed"));
            }
            let wait = deadline.remaining("no new session", "no new session in time")?;
            q = self.shared.ready.wait(q, &self.shared.queue, wait);
        }
    }

    /// A descriptor that is readable while a session waits to be accepted or the server is
    /// closed (`crate::ready`); created on first call, owned by the server.
    pub fn readiness_fd(&self) -> Result<i32> {
        let _q = lock(&self.shared.queue);
        self.shared.readiness.fd()
    }

    /// Counters of what the server refused or dropped to protect itself.
    pub fn stats(&self) -> ServerStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServerStats {
            refused_headers_too_large: get(&c.headers_too_large),
            refused_malformed: get(&c.malformed),
            refused_too_many_sessions: get(&c.too_many_sessions),
            refused_header_timeout: get(&c.header_timeout),
            refused_connections_global: get(&c.connections_global),
            refused_connections_per_ip: get(&c.connections_per_ip),
            closed_settings_timeout: get(&c.settings_timeout),
            closed_session_timeout: get(&c.session_timeout),
            refused_queue_full: get(&c.queue_full),
            queue_closed_dropped: get(&c.queue_closed_dropped),
        }
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.live_connections().len()
    }

    /// The live connections (HTTP/3 set up, not yet closed).
    pub fn connections(&self) -> Vec<Arc<Connection>> {
        self.live_connections()
    }

    fn live_connections(&self) -> Vec<Arc<Connection>> {
        lock(&self.shared.conns)
            .live
            .values()
            .filter_map(|e| e.conn.upgrade())
            .collect()
    }

    /// Stops accepting, sends GOAWAY (waiting at most 0.5 s), closes every session (code 0,
    /// "server shutting down"), waits up to 1 s for the closes to reach the peers, then closes
    /// the endpoint (waiting at most 0.5 s for it to go idle): about 2 s at most even against
    /// peers that withhold flow-control credit. Idempotent.
    pub fn close(&self) {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let _q = lock(&self.shared.queue);
            self.shared.readiness.update(true);
        }
        self.shared.ready.notify_all();
        let conns = self.live_connections();
        let endpoint = self.endpoint.clone();
        // Bounded at ~2 s in all: a peer that withholds flow-control credit (so GOAWAY or a
        // close capsule cannot be written) must not hold up shutdown.
        let work = async move {
            let mut goaways = tokio::task::JoinSet::new();
            for c in &conns {
                let c = c.clone();
                goaways.spawn(async move { c.send_goaway().await });
            }
            let _ = tokio::time::timeout(CLOSE_GOAWAY_WAIT, async {
                while goaways.join_next().await.is_some() {}
            })
            .await;
            drop(goaways); // aborts GOAWAYs still blocked
            for c in &conns {
                for s in c.sessions() {
                    s.close(0, "server shutting down");
                }
            }
            wait_closing(Duration::from_secs(1)).await;
            endpoint.close(
                quinn::VarInt::from_u32(H3_NO_ERROR as u32),
                b"server shutting down",
            );
            let _ = tokio::time::timeout(CLOSE_IDLE_WAIT, endpoint.wait_idle()).await;
        };
        match runtime::check_may_block() {
            Ok(()) => {
                let _ = runtime::block_on(work);
            }
            Err(_) => {
                if let Ok(h) = runtime::handle() {
                    h.spawn(work);
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close();
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    let handler: Arc<dyn RequestHandler> = Arc::new(Handler(shared.clone()));
    while let Some(incoming) = endpoint.accept().await {
        let ip = incoming.remote_address().ip();
        let Some(slot) = shared.admit(ip) else {
            log_debug!("connection from {ip} refused: connection limit reached");
            incoming.refuse();
            continue;
        };
        tokio::spawn(serve_connection(incoming, slot, handler.clone()));
    }
}

/// Runs one admitted connection: handshake, HTTP/3 setup, then the watchdog that enforces the
/// SETTINGS and session deadlines. Returns (releasing the connection's slot) when it is closed.
async fn serve_connection(
    incoming: quinn::Incoming,
    mut slot: ConnSlot,
    handler: Arc<dyn RequestHandler>,
) {
    let shared = slot.shared.clone();
    let limits = shared.limits;
    let quic = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            log_debug!("handshake failed: {e}");
            return;
        }
    };
    let start = Connection::start(quic.clone(), Role::Server, Some(handler), None);
    let conn = match tokio::time::timeout(limits.settings_timeout, start).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            log_debug!("HTTP/3 setup failed: {e}");
            return;
        }
        Err(_) => {
            // The peer grants no stream or no credit for our control stream.
            shared
                .counters
                .settings_timeout
                .fetch_add(1, Ordering::Relaxed);
            quic.close(
                quinn::VarInt::from_u32(H3_EXCESSIVE_LOAD as u32),
                b"could not open the control stream in time",
            );
            return;
        }
    };
    let id = quic.stable_id();
    let last_session = Arc::new(Mutex::new(Instant::now()));
    lock(&shared.conns).live.insert(
        id,
        ConnEntry {
            conn: Arc::downgrade(&conn),
            last_session: last_session.clone(),
        },
    );
    slot.id = Some(id);
    tokio::select! {
        _ = quic.closed() => {}
        _ = watchdog(&conn, &shared, &last_session) => {}
    }
    drop(slot); // prunes the connection from the table as it goes
}

/// Closes `conn` when its peer sends no SETTINGS within `settings_timeout`, or when it has had no
/// session for `session_timeout`. Keep-alives and other traffic do not reset these clocks.
async fn watchdog(conn: &Arc<Connection>, shared: &Arc<Shared>, last_session: &Mutex<Instant>) {
    let limits = shared.limits;
    if conn.peer_settings(limits.settings_timeout).await.is_err() {
        shared
            .counters
            .settings_timeout
            .fetch_add(1, Ordering::Relaxed);
        conn.close_with(&H3Error::new(
            H3_MISSING_SETTINGS,
            format!("no SETTINGS within {:?}", limits.settings_timeout),
        ));
        return;
    }
    let poll =
        (limits.session_timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    loop {
        tokio::time::sleep(poll).await;
        let now = Instant::now();
        let mut last = lock(last_session);
        if conn.session_count() > 0 {
            *last = now;
            continue;
        }
        if now.duration_since(*last) >= limits.session_timeout {
            drop(last);
            shared
                .counters
                .session_timeout
                .fetch_add(1, Ordering::Relaxed);
            conn.close_with(&H3Error::new(
                H3_NO_ERROR,
                format!("no session for {:?}", limits.session_timeout),
            ));
            return;
        }
    }
}
