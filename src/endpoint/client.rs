//! The WebTransport client: connects to an `https://` URL and opens sessions of the draft the
//! server speaks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::tls::{client_config, Verification};
use super::url;
use super::QuicSettings;
use crate::error::{wtd_result, Error, Result};
use crate::h3::connection::{varint_of, Connection, Role};
use crate::h3::errors::{H3_NO_ERROR, H3_REQUEST_CANCELLED};
use crate::h3::request::open_session;
use crate::h3::session_core::RequestInfo;
use crate::runtime;
use crate::session::{Incoming, Session, DEFAULT_INCOMING_CAPACITY};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How to check the server certificate (system roots by default).
    pub verification: Verification,
    /// Limit for QUIC handshake + SETTINGS + CONNECT response.
    pub connect_timeout: Duration,
    /// QUIC idle timeout and keep-alive.
    pub quic: QuicSettings,
    /// Receive-queue capacity of each session.
    pub incoming_capacity: usize,
    /// `origin` header to send (browsers always send one; servers may check it).
    pub origin: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            verification: Verification::SystemRoots,
            connect_timeout: Duration::from_secs(10),
            quic: QuicSettings::default(),
            incoming_capacity: DEFAULT_INCOMING_CAPACITY,
            origin: None,
        }
    }
}

fn connection_error(e: &quinn::ConnectionError) -> Error {
    // TLS alerts travel as QUIC CRYPTO_ERROR codes 0x100..=0x1ff.
    if let quinn::ConnectionError::TransportError(t) = e {
        let code = u64::from(t.code);
        if (0x100..=0x1ff).contains(&code) {
            return Error::new(
                wtd_result::WTD_ERR_TLS,
                format!("TLS handshake failed: {e}"),
            );
        }
    }
    if let quinn::ConnectionError::TimedOut = e {
        return Error::timeout("QUIC handshake timed out");
    }
    Error::new(
        wtd_result::WTD_ERR_CONNECTION,
        format!("connection failed: {e}"),
    )
}

async fn connect_async(url: &str, config: &ClientConfig) -> Result<Session> {
    // One deadline for everything: resolve, handshake, HTTP/3 setup, CONNECT and its response.
    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    let u = url::parse(url)?;
    let lookup = tokio::net::lookup_host((u.host.as_str(), u.port));
    let addr: SocketAddr = tokio::time::timeout_at(deadline, lookup)
        .await
        .map_err(|_| Error::timeout(format!("cannot resolve {} in time", u.host)))?
        .map_err(|e| {
            Error::new(
                wtd_result::WTD_ERR_CONNECTION,
                format!("cannot resolve {}: {e}", u.host),
            )
        })?
        .next()
        .ok_or_else(|| {
            Error::new(
                wtd_result::WTD_ERR_CONNECTION,
                format!("no address for {}", u.host),
            )
        })?;
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(client_config(&config.verification)?)
            .map_err(|e| Error::new(wtd_result::WTD_ERR_TLS, e.to_string()))?;
    let mut qc = quinn::ClientConfig::new(Arc::new(crypto));
    qc.transport_config(Arc::new(config.quic.transport(false)));
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let mut endpoint = super::socket::endpoint(bind, None)?;
    endpoint.set_default_client_config(qc);
    let connecting = endpoint
        .connect(addr, &u.host)
        .map_err(|e| Error::new(wtd_result::WTD_ERR_CONNECTION, e.to_string()))?;
    let quic = match tokio::time::timeout_at(deadline, connecting).await {
        Err(_) => {
            return Err(Error::timeout(format!(
                "no QUIC handshake with {addr} in time"
            )))
        }
        Ok(Err(e)) => return Err(connection_error(&e)),
        Ok(Ok(c)) => c,
    };
    let start = Connection::start(quic.clone(), Role::Client, None, Some(endpoint));
    let conn = match tokio::time::timeout_at(deadline, start).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            quic.close(varint_of(H3_REQUEST_CANCELLED), b"connect timed out");
            return Err(Error::timeout(format!(
                "{addr} granted no stream or no flow-control credit for the control stream in time"
            )));
        }
    };
    let request = RequestInfo {
        path: u.path,
        authority: u.authority,
        origin: config.origin.clone(),
    };
    let result = open_on(&conn, request, config, deadline).await;
    if result.is_err() && conn.session_count() == 0 {
        // Nothing else uses this connection: do not leave it (and its tasks) behind.
        conn.quic.close(varint_of(H3_NO_ERROR), b"");
    }
    result
}

async fn open_on(
    conn: &Arc<Connection>,
    request: RequestInfo,
    config: &ClientConfig,
    deadline: tokio::time::Instant,
) -> Result<Session> {
    let incoming = Incoming::new(config.incoming_capacity);
    let core = open_session(conn, request, incoming.clone(), deadline).await?;
    Ok(Session::new(core, incoming))
}

/// Connects to `url` and opens a WebTransport session (blocking up to `connect_timeout`;
/// refused with WTD_ERR_INVALID_STATE on a wtd callback thread). The connection is closed when
/// its last session closes.
pub fn connect(url: &str, config: &ClientConfig) -> Result<Session> {
    runtime::check_may_block()?;
    runtime::block_on(connect_async(url, config))?
}

/// Opens another session to `path` on the same connection as `session` (client side).
pub fn open_sibling(session: &Session, path: &str, config: &ClientConfig) -> Result<Session> {
    runtime::check_may_block()?;
    if !path.starts_with('/') {
        return Err(Error::invalid(format!(
            "path must start with '/': {path:?}"
        )));
    }
    let conn = session.core().conn.clone();
    if conn.role() != Role::Client {
        return Err(Error::invalid(
            "only a client session can open a sibling session",
        ));
    }
    if session.is_closed() {
        return Err(Error::closed("session is closed"));
    }
    let request = RequestInfo {
        path: path.to_owned(),
        authority: session.request().authority.clone(),
        origin: config.origin.clone(),
    };
    runtime::block_on(async move {
        let deadline = tokio::time::Instant::now() + config.connect_timeout;
        open_on(&conn, request, config, deadline).await
    })?
}
