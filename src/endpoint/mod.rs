//! Endpoints: a server that accepts WebTransport sessions and a client that opens them.

pub mod client;
pub mod server;
pub mod socket;
pub mod tls;
pub mod url;

use std::time::Duration;

/// QUIC settings shared by client and server.
#[derive(Debug, Clone, Copy)]
pub struct QuicSettings {
    /// Close the connection after this long without traffic.
    pub idle_timeout: Duration,
    /// Send keep-alives this often (None: never).
    pub keep_alive: Option<Duration>,
}

impl Default for QuicSettings {
    fn default() -> Self {
        QuicSettings {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(5)),
        }
    }
}

/// Bidirectional streams a client may have open towards a wtd server at once: one CONNECT
/// stream per session (16 advertised) plus as many again for requests being refused and
/// WebTransport streams being rejected (quinn's default would be 100).
pub const SERVER_MAX_BIDI_STREAMS: u32 = 32;
/// Unidirectional streams a peer may have open at once (control + 2 QPACK streams, plus room for
/// GREASE and rejected WebTransport streams; quinn's default would be 100).
pub const MAX_UNI_STREAMS: u32 = 16;
/// Bidirectional streams a server may open towards a wtd client (only WebTransport streams,
/// which wtd rejects).
pub const CLIENT_MAX_BIDI_STREAMS: u32 = 16;

impl QuicSettings {
    /// The quinn transport configuration: datagrams on, with buffers large enough for bursts,
    /// and explicit stream limits for the `server` or client side.
    pub(crate) fn transport(&self, server: bool) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(if server {
            SERVER_MAX_BIDI_STREAMS
        } else {
            CLIENT_MAX_BIDI_STREAMS
        }));
        t.max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_UNI_STREAMS));
        t.max_idle_timeout(quinn::IdleTimeout::try_from(self.idle_timeout).ok());
        t.keep_alive_interval(self.keep_alive);
        t.datagram_receive_buffer_size(Some(2 * 1024 * 1024));
        t.datagram_send_buffer_size(crate::h3::connection::DATAGRAM_SEND_BUFFER);
        t
    }
}
