//! Raw quinn 0.11 datagram baseline for scripts/bench.sh (the "raw quinn" column).
//!
//! No HTTP/3, no WebTransport: one QUIC connection, `send_datagram*` / `read_datagram` directly,
//! the same quinn TransportConfig as wtd (idle 30 s, keep-alive 5 s, datagram receive buffer
//! 2 MiB, send buffer 1 MiB). Runtime: tokio current-thread (one thread per process), the best
//! case for one pinned core. Every mode prints one JSON line on stdout.
//!
//!   rawq_bench server count          accept one connection, count datagrams until 500 ms idle
//!   rawq_bench server echo           echo every datagram on every connection (until killed)
//!   rawq_bench client blast   PORT SIZE SECS         send_datagram_wait loop for SECS (one
//!                                                    `Bytes` resent: a reference count each)
//!   rawq_bench client blastcopy PORT SIZE SECS       the same, each datagram a fresh copy
//!                                                    (`Bytes::copy_from_slice`), as an
//!                                                    application building fresh state does
//!   rawq_bench client ping    PORT SIZE COUNT        ping-pong, one in flight
//!   rawq_bench client echorate PORT SIZE SECS WINDOW windowed echo (WINDOW in flight)
//!   rawq_bench client ffi     PORT SIZE BURST ROUNDS cost of one space check + send_datagram
//!   rawq_bench cert CERT.pem KEY.pem                 write a self-signed ECDSA P-256 pair (for
//!                                                    the pywebtransport server)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

fn cpu_us() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(30)).ok());
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    t.datagram_receive_buffer_size(Some(2 * 1024 * 1024));
    t.datagram_send_buffer_size(1024 * 1024);
    Arc::new(t)
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn server_endpoint() -> quinn::Endpoint {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let mut sc = quinn::ServerConfig::with_single_cert(vec![cert], key).unwrap();
    sc.transport_config(transport());
    endpoint(Some(sc))
}

/// Kernel socket buffers as wtd asks for them (src/endpoint/socket.rs: 4 MiB each way), so the
/// two columns differ only in what wtd does per datagram — with the 208 KiB default, a loaded
/// machine makes quinn lose packets and back off, and raw quinn would look slower than it is.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

fn endpoint(server: Option<quinn::ServerConfig>) -> quinn::Endpoint {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let state = quinn::udp::UdpSocketState::new((&socket).into()).unwrap();
    let _ = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER);
    let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER);
    let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime).unwrap()
}

async fn connect(port: u16) -> (quinn::Endpoint, quinn::Connection) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut cc = quinn::ClientConfig::new(Arc::new(qc));
    cc.transport_config(transport());
    let mut ep = endpoint(None);
    ep.set_default_client_config(cc);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let conn = ep.connect(addr, "localhost").unwrap().await.unwrap();
    (ep, conn)
}

async fn finish(ep: quinn::Endpoint, conn: quinn::Connection) {
    conn.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(1), ep.wait_idle()).await;
}

fn payload(size: usize) -> Bytes {
    Bytes::from((0..size).map(|i| i as u8).collect::<Vec<u8>>())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i]
}

async fn server(mode: &str) {
    let ep = server_endpoint();
    println!("READY {}", ep.local_addr().unwrap().port());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    if mode == "echo" {
        while let Some(inc) = ep.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = inc.await else { return };
                while let Ok(d) = conn.read_datagram().await {
                    if conn.datagram_send_buffer_space() >= d.len() {
                        let _ = conn.send_datagram(d);
                    }
                }
            });
        }
        return;
    }
    let conn = ep.accept().await.unwrap().await.unwrap();
    let cpu0 = cpu_us();
    let (mut n, mut bytes) = (0u64, 0u64);
    let (mut first, mut last) = (None::<Instant>, Instant::now());
    loop {
        let wait = if first.is_some() { 500 } else { 15_000 };
        match tokio::time::timeout(Duration::from_millis(wait), conn.read_datagram()).await {
            Ok(Ok(d)) => {
                n += 1;
                bytes += d.len() as u64;
                last = Instant::now();
                first.get_or_insert(last);
            }
            _ => break,
        }
    }
    let cpu = cpu_us() - cpu0;
    let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
    println!("{{\"received\":{n},\"bytes\":{bytes},\"secs\":{secs:.6},\"cpu_us\":{cpu}}}");
}

async fn client(args: &[String]) {
    let mode = args[0].as_str();
    let port: u16 = args[1].parse().unwrap();
    let size: usize = args[2].parse().unwrap();
    let (ep, conn) = connect(port).await;
    let p = payload(size);
    match mode {
        "blast" | "blastcopy" => {
            let copy = mode == "blastcopy";
            let secs: f64 = args[3].parse().unwrap();
            let cpu0 = cpu_us();
            let t0 = Instant::now();
            let end = t0 + Duration::from_secs_f64(secs);
            let mut accepted = 0u64;
            loop {
                let d = if copy {
                    Bytes::copy_from_slice(&p)
                } else {
                    p.clone()
                };
                if conn.send_datagram_wait(d).await.is_err() {
                    break;
                }
                accepted += 1;
                if accepted.is_multiple_of(64) && Instant::now() >= end {
                    break;
                }
            }
            let send_secs = t0.elapsed().as_secs_f64();
            // Let quinn drain its datagram queue before closing (a close discards it).
            tokio::time::sleep(Duration::from_millis(300)).await;
            let cpu = cpu_us() - cpu0;
            println!("{{\"accepted\":{accepted},\"secs\":{send_secs:.6},\"cpu_us\":{cpu}}}");
        }
        "ping" => {
            let count: usize = args[3].parse().unwrap();
            let warm = 100;
            let mut rtts = Vec::with_capacity(count);
            let mut lost = 0u64;
            let mut t_all = Instant::now();
            for i in 0..count + warm {
                if i == warm {
                    t_all = Instant::now();
                }
                let t = Instant::now();
                conn.send_datagram(p.clone()).unwrap();
                match tokio::time::timeout(Duration::from_secs(1), conn.read_datagram()).await {
                    Ok(Ok(_)) if i >= warm => rtts.push(t.elapsed().as_secs_f64() * 1e6),
                    Ok(Ok(_)) => {}
                    _ => lost += 1,
                }
            }
            let total = t_all.elapsed().as_secs_f64();
            let rate = rtts.len() as f64 / total;
            rtts.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let mean = rtts.iter().sum::<f64>() / rtts.len().max(1) as f64;
            println!(
                "{{\"samples\":{},\"lost\":{lost},\"p50_us\":{:.1},\"p99_us\":{:.1},\"mean_us\":{mean:.1},\"rate\":{rate:.1}}}",
                rtts.len(),
                pct(&rtts, 0.5),
                pct(&rtts, 0.99)
            );
        }
        "echorate" => {
            let secs: f64 = args[3].parse().unwrap();
            let window: u64 = args[4].parse().unwrap();
            let t0 = Instant::now();
            let end = t0 + Duration::from_secs_f64(secs);
            let (mut sent, mut recv, mut lost, mut inflight) = (0u64, 0u64, 0u64, 0u64);
            while Instant::now() < end {
                while inflight < window && conn.datagram_send_buffer_space() >= p.len() {
                    conn.send_datagram(p.clone()).unwrap();
                    sent += 1;
                    inflight += 1;
                }
                match tokio::time::timeout(Duration::from_millis(20), conn.read_datagram()).await {
                    Ok(Ok(_)) => {
                        recv += 1;
                        inflight = inflight.saturating_sub(1);
                    }
                    Ok(Err(_)) => break,
                    Err(_) => {
                        lost += inflight;
                        inflight = 0;
                    }
                }
            }
            let el = t0.elapsed().as_secs_f64();
            println!(
                "{{\"sent\":{sent},\"received\":{recv},\"presumed_lost\":{lost},\"secs\":{el:.6},\"rate\":{:.1}}}",
                recv as f64 / el
            );
        }
        "ffi" => {
            let burst: usize = args[3].parse().unwrap();
            let rounds: usize = args[4].parse().unwrap();
            let (mut ok, mut blocked) = (0u64, 0u64);
            let mut total = Duration::ZERO;
            for _ in 0..rounds {
                let t = Instant::now();
                for _ in 0..burst {
                    if conn.datagram_send_buffer_space() >= p.len() {
                        conn.send_datagram(p.clone()).unwrap();
                        ok += 1;
                    } else {
                        blocked += 1;
                    }
                }
                total += t.elapsed();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let ns = total.as_nanos() as f64 / (burst * rounds) as f64;
            println!("{{\"ok\":{ok},\"blocked\":{blocked},\"ns_per_call\":{ns:.1}}}");
        }
        _ => panic!("unknown client mode {mode}"),
    }
    finish(ep, conn).await;
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 3 && args[0] == "cert" {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let ck = rcgen::generate_simple_self_signed(names).unwrap();
        std::fs::write(&args[1], ck.cert.pem()).unwrap();
        std::fs::write(&args[2], ck.key_pair.serialize_pem()).unwrap();
        return;
    }
    if args.len() < 2 {
        eprintln!("usage: rawq_bench server count|echo | rawq_bench client MODE PORT SIZE ...");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match args[0].as_str() {
        "server" => rt.block_on(server(&args[1])),
        "client" => rt.block_on(client(&args[1..])),
        _ => std::process::exit(2),
    }
}
