//! A hand-driven raw HTTP/3 peer on quinn (it writes exactly the bytes a test chooses), and a wtd
//! echo server to point it at.
//!
//! The raw peer is async and runs in its own tokio runtime ([`runtime`]); wtd's blocking API must
//! be used from plain std threads, so [`EchoServer`] runs its accept and echo loops on std threads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::QuicClientConfig;
use wtd::endpoint::tls::{client_config, Verification};
use wtd::h3::session_core::CloseInfo;
use wtd::h3::settings::Settings;
use wtd::h3::{frame, qpack, varint, wtd_draft};
use wtd::{Server, ServerConfig};

/// How long any single wait in these helpers lasts.
pub const T: Duration = Duration::from_secs(5);

/// Unidirectional stream types.
pub const UNI_CONTROL: u64 = 0x00;
pub const UNI_PUSH: u64 = 0x01;
pub const UNI_QPACK_ENCODER: u64 = 0x02;
pub const UNI_QPACK_DECODER: u64 = 0x03;

/// Chromium 156's SETTINGS payload (WIRE-FACTS §1.1) without its GREASE pair.
pub const CHROMIUM_SETTINGS: &str = "01 80010000 06 80004000 07 4064 33 01 80ffd277 01 ab603742 01";
/// pywebtransport 0.6.1's client SETTINGS payload (WIRE-FACTS §1.1).
pub const PYWT061_SETTINGS: &str = "0801330107100150006b61006b65006b640094e9cd2901";
/// pywebtransport 0.21.1's SETTINGS payload (WIRE-FACTS §1.1).
pub const PYWT021_SETTINGS: &str = "010006800100000700080133016b61804000006b640a6b650aac7cf00001";
/// CLOSE_WEBTRANSPORT_SESSION(42, "bye") inside a DATA frame (Chromium, pywt021, wtq).
pub const CLOSE_42_BYE_FRAMED: &str = "00 0a 68 43 07 0000002a 627965";
/// CLOSE_WEBTRANSPORT_SESSION(42, "bye") raw on the stream (pywt061).
pub const CLOSE_42_BYE_RAW: &str = "68 43 07 0000002a 627965";
/// The first datagram every peer sent in WIRE-FACTS §1.5 (quarter stream id 0 + `00 'wirecap'`).
pub const WIRECAP_DATAGRAM: &str = "00 00 77 69 72 65 63 61 70";

/// Hex (whitespace allowed) to bytes.
pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(s.len() % 2 == 0, "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// One varint.
pub fn vi(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint::encode(v, &mut out);
    out
}

/// One HTTP/3 frame (or capsule: same layout).
pub fn frame_bytes(ty: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode(ty, payload, &mut out);
    out
}

/// A SETTINGS payload from id/value pairs (no validation: duplicates etc. go out as given).
pub fn settings_payload(pairs: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(k, v) in pairs {
        varint::encode(k, &mut out);
        varint::encode(v, &mut out);
    }
    out
}

/// A HEADERS frame with a static/literal-only QPACK field section.
pub fn headers_frame(fields: &[(&str, &str)]) -> Vec<u8> {
    frame_bytes(frame::HEADERS, &qpack::encode_field_section(fields))
}

/// The CONNECT request headers Chromium sends (WIRE-FACTS §1.3), for `path` and `protocol`.
pub fn chromium_connect<'a>(path: &'a str, protocol: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":scheme", "https"),
        (":method", "CONNECT"),
        (":authority", "127.0.0.1:4433"),
        (":path", path),
        (":protocol", protocol),
        ("sec-webtransport-http3-draft02", "1"),
        ("origin", "http://localhost:8000"),
    ]
}

/// A multi-thread runtime with one worker, so quinn keeps running between `block_on` calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// The `:status` of a response.
pub fn status(fields: &[(String, String)]) -> Option<u16> {
    fields
        .iter()
        .find(|(n, _)| n == ":status")
        .and_then(|(_, v)| v.parse().ok())
}

/// Reads frames from `recv` until a HEADERS frame and decodes it (unknown frames are skipped).
/// `None` when the stream ends (or is reset) first.
pub async fn read_response(recv: &mut quinn::RecvStream) -> Option<Vec<(String, String)>> {
    let mut reader = FrameReader::default();
    loop {
        let (ty, payload) = reader.next(recv).await?;
        if ty == frame::HEADERS {
            return Some(qpack::decode_field_section(&payload).expect("server's QPACK decodes"));
        }
    }
}

/// Buffered frame reader for a quinn receive stream.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// Next whole frame, `None` at FIN/reset/timeout.
    pub async fn next(&mut self, recv: &mut quinn::RecvStream) -> Option<(u64, Vec<u8>)> {
        loop {
            if let Some(h) = frame::parse_header(&self.buf) {
                let end = h.header_len + h.len as usize;
                if self.buf.len() >= end {
                    let payload = self.buf[h.header_len..end].to_vec();
                    self.buf.drain(..end);
                    return Some((h.ty, payload));
                }
            }
            match tokio::time::timeout(T, recv.read_chunk(usize::MAX, true)).await {
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk.bytes),
                _ => return None,
            }
        }
    }
}

/// A raw HTTP/3 client connection to a server.
pub struct RawPeer {
    /// Kept so the endpoint outlives the connection.
    pub endpoint: quinn::Endpoint,
    /// The QUIC connection.
    pub conn: quinn::Connection,
}

impl RawPeer {
    /// Connects like [`RawPeer::connect`], returning the handshake error instead of panicking.
    pub async fn try_connect(addr: SocketAddr) -> Result<RawPeer, quinn::ConnectionError> {
        let tls = client_config(&Verification::DangerousNone).unwrap();
        let crypto = QuicClientConfig::try_from(tls).unwrap();
        let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(Duration::from_secs(20).try_into().unwrap()));
        cfg.transport_config(Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(cfg);
        let conn = endpoint.connect(addr, "localhost").unwrap().await?;
        Ok(RawPeer { endpoint, conn })
    }

    /// Connects with ALPN h3, datagrams enabled, no certificate verification.
    pub async fn connect(addr: SocketAddr) -> RawPeer {
        let tls = client_config(&Verification::DangerousNone).unwrap();
        let crypto = QuicClientConfig::try_from(tls).unwrap();
        let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.datagram_receive_buffer_size(Some(1 << 20));
        transport.max_idle_timeout(Some(Duration::from_secs(20).try_into().unwrap()));
        cfg.transport_config(Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(cfg);
        let conn = endpoint
            .connect(addr, "localhost")
            .unwrap()
            .await
            .expect("QUIC handshake with wtd");
        assert_eq!(
            conn.handshake_data()
                .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|d| d.protocol),
            Some(b"h3".to_vec())
        );
        RawPeer { endpoint, conn }
    }

    /// Connects and opens a control stream carrying `settings` (a SETTINGS payload).
    pub async fn with_settings(addr: SocketAddr, settings: &[u8]) -> (RawPeer, quinn::SendStream) {
        let peer = RawPeer::connect(addr).await;
        let control = peer.open_control(settings).await;
        (peer, control)
    }

    /// Opens a unidirectional stream, writes the type varint then `bytes`; the stream stays open.
    pub async fn open_uni(&self, ty: u64, bytes: &[u8]) -> quinn::SendStream {
        let mut s = self.conn.open_uni().await.unwrap();
        let mut out = vi(ty);
        out.extend_from_slice(bytes);
        s.write_all(&out).await.unwrap();
        s
    }

    /// Opens a control stream whose first frame is SETTINGS with this payload.
    pub async fn open_control(&self, settings: &[u8]) -> quinn::SendStream {
        self.open_uni(UNI_CONTROL, &frame_bytes(frame::SETTINGS, settings))
            .await
    }

    /// Opens a bidirectional stream and writes `bytes` on it (no FIN).
    pub async fn open_bi(&self, bytes: &[u8]) -> (quinn::SendStream, quinn::RecvStream) {
        let (mut send, recv) = self.conn.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        (send, recv)
    }

    /// Sends a request (HEADERS frame with `fields`) and returns the response fields.
    pub async fn request(
        &self,
        fields: &[(&str, &str)],
    ) -> (quinn::SendStream, quinn::RecvStream, Vec<(String, String)>) {
        let (send, mut recv) = self.open_bi(&headers_frame(fields)).await;
        let resp = read_response(&mut recv)
            .await
            .expect("a response HEADERS frame");
        (send, recv, resp)
    }

    /// The application close code the server closed the connection with (waits at most [`T`]).
    pub async fn close_code(&self) -> u64 {
        let err = tokio::time::timeout(T, self.conn.closed())
            .await
            .expect("wtd did not close the connection in time");
        match err {
            quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
            other => panic!("expected an application close, got {other:?}"),
        }
    }

    /// True when the connection is still open after `wait`.
    pub async fn alive_after(&self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.conn.closed())
            .await
            .is_err()
    }

    /// Sends one raw QUIC DATAGRAM frame payload.
    pub fn send_datagram(&self, bytes: &[u8]) {
        self.conn
            .send_datagram(Bytes::copy_from_slice(bytes))
            .unwrap();
    }

    /// Next raw datagram (waits at most [`T`]).
    pub async fn recv_datagram(&self) -> Option<Bytes> {
        tokio::time::timeout(T, self.conn.read_datagram())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Sends `bytes` as a datagram and waits for the same bytes to come back (retrying a few
    /// times: datagrams are unreliable, and the session may be registered a moment after the 200).
    pub async fn echo(&self, bytes: &[u8]) -> bool {
        for _ in 0..10 {
            self.send_datagram(bytes);
            if let Ok(Ok(got)) =
                tokio::time::timeout(Duration::from_millis(500), self.conn.read_datagram()).await
            {
                if got[..] == bytes[..] {
                    return true;
                }
            }
        }
        false
    }

    /// Accepts the server's control stream and returns its SETTINGS.
    pub async fn server_settings(&self) -> Settings {
        tokio::time::timeout(T, async {
            loop {
                let mut recv = self.conn.accept_uni().await.unwrap();
                let mut buf = Vec::new();
                loop {
                    let chunk = recv.read_chunk(usize::MAX, true).await.unwrap().unwrap();
                    buf.extend_from_slice(&chunk.bytes);
                    let Some((ty, n)) = varint::decode(&buf) else {
                        continue;
                    };
                    if ty != UNI_CONTROL {
                        break; // a QPACK stream: not what we are after
                    }
                    if let Some(h) = frame::parse_header(&buf[n..]) {
                        let start = n + h.header_len;
                        if buf.len() >= start + h.len as usize {
                            assert_eq!(
                                h.ty,
                                frame::SETTINGS,
                                "server control stream starts with SETTINGS"
                            );
                            return Settings::decode_payload(&buf[start..start + h.len as usize])
                                .unwrap();
                        }
                    }
                }
            }
        })
        .await
        .expect("server SETTINGS")
    }
}

/// How a server-side session ended, as the echo server saw it.
#[derive(Debug, Clone)]
pub struct SessionEnd {
    /// `:path` of the CONNECT.
    pub path: String,
    /// Negotiated draft.
    pub draft: wtd_draft,
    /// Close code, reason and cause.
    pub info: CloseInfo,
    /// Datagrams the session's connection dropped because they named no open session.
    pub unknown_session_drops: u64,
}

/// A wtd server that accepts every session and echoes its datagrams (std threads), reporting
/// each session's end.
pub struct EchoServer {
    /// The server (for `cert_sha256` etc.).
    pub server: Arc<Server>,
    /// Where it listens.
    pub addr: SocketAddr,
    ends: Mutex<mpsc::Receiver<SessionEnd>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Listens on 127.0.0.1 with a generated certificate.
    pub fn start() -> EchoServer {
        Self::with_config(ServerConfig::new("127.0.0.1:0".parse().unwrap()))
    }

    /// Listens with `cfg` (its `on_session` must be `None`).
    pub fn with_config(cfg: ServerConfig) -> EchoServer {
        let server = Arc::new(Server::bind(cfg).unwrap());
        let addr = server.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let server = server.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(session) = server.accept(Some(Duration::from_millis(50))) else {
                        continue;
                    };
                    let (tx, stop) = (tx.clone(), stop.clone());
                    std::thread::spawn(move || echo(session, tx, stop));
                }
            })
        };
        EchoServer {
            server,
            addr,
            ends: Mutex::new(rx),
            stop,
            thread: Some(thread),
        }
    }

    /// The next session end (waits at most [`T`]).
    pub fn next_end(&self) -> SessionEnd {
        self.ends
            .lock()
            .unwrap()
            .recv_timeout(T)
            .expect("a server session ended")
    }
}

fn echo(session: wtd::Session, tx: mpsc::Sender<SessionEnd>, stop: Arc<AtomicBool>) {
    loop {
        match session.recv_datagram(Some(Duration::from_millis(50))) {
            Ok(d) => {
                let _ = session.send_datagram(&d);
            }
            Err(e) if e.code == wtd::wtd_result::WTD_ERR_TIMEOUT => {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    if let Ok(info) = session.wait_closed(T) {
        let _ = tx.send(SessionEnd {
            path: session.request().path.clone(),
            draft: session.draft(),
            info,
            unknown_session_drops: session.connection_unknown_session_drops(),
        });
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
