//! Endpoints: a server that accepts WebTransport sessions and a client that opens them.

pub mod client;
pub mod server;
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

impl QuicSettings {
    /// The quinn transport configuration: datagrams on, with buffers large enough for bursts.
    pub(crate) fn transport(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        t.max_idle_timeout(quinn::IdleTimeout::try_from(self.idle_timeout).ok());
        t.keep_alive_interval(self.keep_alive);
        t.datagram_receive_buffer_size(Some(2 * 1024 * 1024));
        t.datagram_send_buffer_size(crate::h3::connection::DATAGRAM_SEND_BUFFER);
        t
    }
}
