//! The UDP socket under every wtd endpoint, with kernel buffers sized for bursts.
//!
//! The kernel's default UDP receive buffer (net.core.rmem_default, 208 KiB on Linux) holds about
//! 1 ms of a saturated loopback flow: a receiver that is descheduled for longer loses whole QUIC
//! packets, and with them every datagram they carried (QUIC does not retransmit datagrams). wtd
//! asks for [`SOCKET_BUFFER`] both ways; the kernel caps the request at net.core.rmem_max /
//! wmem_max (raise those sysctls on a server to get the full size).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use quinn::udp::UdpSocketState;

/// Kernel receive and send buffer requested for each endpoint's socket.
pub const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// A quinn endpoint on [`sized_socket`]`(addr)`. Call inside the runtime's context.
pub(crate) fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        sized_socket(addr)?,
        runtime,
    )
}

/// A UDP socket bound to `addr` with [`SOCKET_BUFFER`]-sized kernel buffers, as far as the
/// kernel allows (a smaller buffer only costs loss under bursts, so that is not an error).
pub fn sized_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    let state = UdpSocketState::new((&socket).into())?;
    let _ = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER);
    let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER);
    crate::logging::log_debug!(
        "UDP socket on {addr}: receive buffer {:?}, send buffer {:?}",
        state.recv_buffer_size((&socket).into()).ok(),
        state.send_buffer_size((&socket).into()).ok()
    );
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The socket gets the buffers asked for, up to what the kernel allows, and more than a
    /// plain socket's default.
    #[test]
    #[cfg(target_os = "linux")]
    fn sockets_get_large_kernel_buffers() {
        let max = |name: &str| -> usize {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let sized = sized_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
        let state = UdpSocketState::new((&plain).into()).unwrap();
        let size = |s: &UdpSocket| {
            (
                state.recv_buffer_size(s.into()).unwrap(),
                state.send_buffer_size(s.into()).unwrap(),
            )
        };
        let ((rcv, snd), (rcv0, snd0)) = (size(&sized), size(&plain));
        let (rmax, wmax) = (max("rmem_max"), max("wmem_max"));
        // Linux reports twice the granted size (its bookkeeping included).
        assert!(rcv >= SOCKET_BUFFER.min(rmax), "receive {rcv}, max {rmax}");
        assert!(snd >= SOCKET_BUFFER.min(wmax), "send {snd}, max {wmax}");
        assert!(rcv > rcv0 || rmax * 2 <= rcv0, "{rcv} vs default {rcv0}");
        assert!(snd > snd0 || wmax * 2 <= snd0, "{snd} vs default {snd0}");
    }
}
