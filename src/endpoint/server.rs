//! The WebTransport server: a QUIC endpoint that accepts sessions of every supported draft.

use crate::lock::lock;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use super::tls::ServerIdentity;
use super::QuicSettings;
use crate::error::{wtd_result, Error, Result};
use crate::h3::connection::{wait_closing, Connection, RequestHandler, Role};
use crate::h3::errors::H3_NO_ERROR;
use crate::h3::request::{serve_request, Acceptor};
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
}

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
        }
    }
}

struct Shared {
    filter: Option<RequestFilter>,
    on_session: Option<SessionCallback>,
    incoming_capacity: usize,
    queue: Mutex<VecDeque<Session>>,
    ready: Condvar,
    closed: AtomicBool,
    connections: Mutex<Vec<Weak<Connection>>>,
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
            log_info!("refused session request for {} with {status}", request.path);
            return Err(status);
        }
        Ok(Incoming::new(self.incoming_capacity))
    }

    fn established(&self, core: Arc<SessionCore>, sink: Arc<Incoming>) {
        let session = Session::new(core, sink);
        log_debug!(
            "session {} opened on {} ({})",
            session.id(),
            session.request().path,
            session.draft().as_str()
        );
        match &self.on_session {
            Some(cb) => cb(session),
            None => {
                lock(&self.queue).push_back(session);
                self.ready.notify_one();
            }
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
        server_config.transport_config(Arc::new(config.quic.transport()));
        let shared = Arc::new(Shared {
            filter: config.filter,
            on_session: config.on_session,
            incoming_capacity: config.incoming_capacity,
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            closed: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
        });
        let handle = runtime::handle()?;
        let endpoint = {
            let _guard = handle.enter();
            quinn::Endpoint::server(server_config, config.bind).map_err(|e| {
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
        if timeout != Some(Duration::ZERO) {
            runtime::check_may_block()?;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut q = lock(&self.shared.queue);
        loop {
            if let Some(s) = q.pop_front() {
                return Ok(s);
            }
            if self.shared.closed.load(Ordering::Relaxed) {
                return Err(Error::closed("server is closed"));
            }
            match deadline {
                None => q = self.shared.ready.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(if timeout == Some(Duration::ZERO) {
                            Error::would_block("no new session")
                        } else {
                            Error::timeout("no new session in time")
                        });
                    }
                    q = self
                        .shared
                        .ready
                        .wait_timeout(q, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.live_connections().len()
    }

    fn live_connections(&self) -> Vec<Arc<Connection>> {
        let mut conns = lock(&self.shared.connections);
        conns.retain(|w| w.strong_count() > 0);
        conns.iter().filter_map(Weak::upgrade).collect()
    }

    /// Stops accepting, sends GOAWAY, closes every session (code 0, "server shutting down"),
    /// waits up to 1 s for the closes to reach the peers, then closes the endpoint. Idempotent.
    pub fn close(&self) {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.ready.notify_all();
        let conns = self.live_connections();
        let endpoint = self.endpoint.clone();
        let work = async move {
            for c in &conns {
                c.send_goaway().await;
                for s in c.sessions() {
                    s.close(0, "server shutting down");
                }
            }
            wait_closing(Duration::from_secs(1)).await;
            endpoint.close(
                quinn::VarInt::from_u32(H3_NO_ERROR as u32),
                b"server shutting down",
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
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
        let handler = handler.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let quic = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    log_debug!("handshake failed: {e}");
                    return;
                }
            };
            match Connection::start(quic, Role::Server, Some(handler), None).await {
                Ok(conn) => lock(&shared.connections).push(Arc::downgrade(&conn)),
                Err(e) => log_debug!("HTTP/3 setup failed: {e}"),
            }
        });
    }
}
