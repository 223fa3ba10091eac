//! Real wtd client ↔ server sessions through a userspace impairment relay (loss, reordering,
//! duplication, delay, jitter, outage, MTU drop; see tests/common/relay.rs). Issue 9 item 15.

#[path = "common/relay.rs"]
mod relay;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use relay::Relay;
use wtd::datagram::reliability::{wtd_reliable_outcome, ReliabilityConfig, ReliabilityLayer};
use wtd::datagram::{DatagramTransport, TransportConfig};
use wtd::endpoint::tls::Verification;
use wtd::session::Session;
use wtd::wtd_result::*;
use wtd::{connect, ClientConfig, Server, ServerConfig};

/// A server, a relay in front of it and a client session through the relay (set up unimpaired).
struct Path {
    server: Server,
    relay: Relay,
    client: Session,
    served: Session,
}

fn path() -> Path {
    let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let relay = Relay::start(server.local_addr().unwrap());
    let cfg = ClientConfig {
        verification: Verification::PinnedSha256(vec![server.cert_sha256()]),
        ..Default::default()
    };
    let url = format!("https://127.0.0.1:{}/impaired", relay.addr().port());
    let client = connect(&url, &cfg).unwrap();
    let served = server.accept(Some(Duration::from_secs(5))).unwrap();
    Path {
        server,
        relay,
        client,
        served,
    }
}

/// Echoes every datagram `s` receives until stopped.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<u32>>>,
}

impl Echo {
    fn start(s: &Session) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (s.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut order = Vec::new();
            while !st.load(Ordering::SeqCst) {
                if let Ok(d) = s.recv_datagram(Some(Duration::from_millis(50))) {
                    if d.len() >= 4 {
                        order.push(u32::from_be_bytes(d[..4].try_into().unwrap()));
                    }
                    let _ = s.send_datagram(&d);
                }
            }
            order
        });
        Echo {
            stop,
            thread: Some(thread),
        }
    }
    /// Stops and returns the sequence numbers in arrival order.
    fn finish(mut self) -> Vec<u32> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Sends `payload` until an echo of it comes back within `within`; returns the time it took.
fn round_trip(client: &Session, payload: &[u8], within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        let _ = client.send_datagram(payload);
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            match client.recv_datagram(Some(Duration::from_millis(50))) {
                Ok(d) if &d[..] == payload => return Some(start.elapsed()),
                _ => {}
            }
        }
    }
    None
}

fn lossy(relay: &Relay) {
    relay.set(|i| {
        i.loss = 0.2;
        i.reorder = 0.1;
        i.reorder_delay = Duration::from_millis(15);
        i.delay = Duration::from_millis(2);
        i.jitter = Duration::from_millis(3);
        i.duplicate = 0.02;
    });
}

#[test]
fn sessions_survive_20_percent_loss_and_reordering() {
    let p = path();
    let echo = Echo::start(&p.served);
    lossy(&p.relay);
    const N: u32 = 2000;
    let mut echoed = 0u64;
    let start = Instant::now();
    for i in 0..N {
        let mut d = i.to_be_bytes().to_vec();
        d.resize(200, 0xab);
        p.client.send_datagram(&d).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        while p.client.recv_datagram(Some(Duration::ZERO)).is_ok() {
            echoed += 1;
        }
    }
    while let Ok(_d) = p.client.recv_datagram(Some(Duration::from_millis(300))) {
        echoed += 1;
    }
    let order = echo.finish();
    let arrived = order.len() as f64 / N as f64;
    let back = echoed as f64 / N as f64;
    let inversions = order.windows(2).filter(|w| w[1] < w[0]).count();
    println!(
        "{N} datagrams in {:?}: {:.1} % reached the server ({inversions} out of order), \
         {:.1} % came back; relay: {}",
        start.elapsed(),
        arrived * 100.0,
        back * 100.0,
        p.relay.stats().summary()
    );
    assert!(
        (0.70..=0.90).contains(&arrived),
        "one-way delivery {arrived}"
    );
    assert!((0.55..=0.75).contains(&back), "round trip {back}");
    assert!(
        inversions > 10,
        "the relay must have reordered: {inversions}"
    );
    assert!(!p.client.is_closed() && !p.served.is_closed());
    // Still a working session once the network heals.
    p.relay.clear();
    let _echo = Echo::start(&p.served);
    assert!(round_trip(&p.client, b"healed", Duration::from_secs(5)).is_some());
    let _ = &p.server;
}

fn transport(s: &Session) -> DatagramTransport {
    DatagramTransport::for_session(
        s,
        TransportConfig {
            outgoing_high_water_mark: 4096,
            incoming_high_water_mark: 4096,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn reliability_layer_delivers_everything_exactly_once_under_20_percent_loss() {
    let p = path();
    let (tc, ts) = (transport(&p.client), transport(&p.served));
    let cfg = ReliabilityConfig {
        ack_timeout: Duration::from_millis(100),
        max_retries: 30,
        min_rto: Duration::from_millis(20),
        max_rto: Duration::from_millis(500),
        in_order: true,
        ..ReliabilityConfig::constructor_defaults()
    };
    let (a, b) = (
        ReliabilityLayer::attach(&tc, cfg.clone()).unwrap(),
        ReliabilityLayer::attach(&ts, cfg).unwrap(),
    );
    lossy(&p.relay);
    const N: u32 = 3000;
    let receiver = {
        let b = b.clone();
        std::thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut order = Vec::new();
            while seen.len() < N as usize {
                let m = b.receive(Some(Duration::from_secs(15))).expect("a message");
                let i = u32::from_be_bytes(m[..4].try_into().unwrap());
                assert!(seen.insert(i), "message {i} delivered twice");
                order.push(i);
            }
            // Nothing more arrives: exactly once.
            assert_eq!(
                b.receive(Some(Duration::from_millis(500)))
                    .unwrap_err()
                    .code,
                WTD_ERR_TIMEOUT
            );
            order
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0u32;
    while i < N {
        let mut payload = i.to_be_bytes().to_vec();
        payload.resize(100, 0x5a);
        match a.send(&payload) {
            Ok(_) => i += 1,
            Err(e) if e.code == WTD_ERR_WOULD_BLOCK => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "stuck at {i}: {:?}", a.stats());
    }
    let order = receiver.join().unwrap();
    while a.stats().in_flight > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (sa, sb) = (a.stats(), b.stats());
    println!("{sa:?}\n{sb:?}\nrelay: {}", p.relay.stats().summary());
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!((sa.acked, sa.gave_up), (N as u64, 0), "{sa:?}");
    assert_eq!(sb.delivered, N as u64);
    assert!(sa.retransmits > 0 && sb.duplicates > 0, "{sa:?} {sb:?}");
    let outcomes = a.poll_outcomes(usize::MAX);
    assert_eq!(outcomes.len(), N as usize);
    assert!(outcomes
        .iter()
        .all(|(_, o)| *o == wtd_reliable_outcome::WTD_RELIABLE_DELIVERED));
    // QUIC packs several datagrams into one packet, so count packets, not messages.
    let rs = p.relay.stats();
    let (lost, seen) = (
        rs.dropped_loss.load(Ordering::Relaxed),
        rs.received.load(Ordering::Relaxed),
    );
    assert!(lost * 100 >= seen * 15, "the relay lost {lost} of {seen}");
    let _ = &p.server;
}

#[test]
fn a_five_second_outage_shorter_than_the_idle_timeout_does_not_close_the_session() {
    let p = path();
    let _echo = Echo::start(&p.served);
    assert!(round_trip(&p.client, b"before", Duration::from_secs(5)).is_some());
    p.relay.outage(Duration::from_secs(5));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let _ = p.client.send_datagram(b"into the void");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!p.client.is_closed() && !p.served.is_closed());
    let back = round_trip(&p.client, b"after", Duration::from_secs(8));
    println!(
        "after a 5 s outage the first echo took {back:?}; relay: {}",
        p.relay.stats().summary()
    );
    assert!(back.is_some(), "datagrams flow again after the outage");
    assert!(p.relay.stats().dropped_outage.load(Ordering::Relaxed) >= 40);
    assert!(!p.client.is_closed() && !p.served.is_closed());
    let _ = &p.server;
}

#[test]
fn max_datagram_size_follows_an_mtu_drop() {
    let p = path();
    let _echo = Echo::start(&p.served);
    // quinn's PMTUD starts at 1200 bytes and probes upwards (loopback lets every probe through).
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.client.max_datagram_size() < 1300 && Instant::now() < deadline {
        let _ = p.client.send_datagram(b"x");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = p.client.max_datagram_size();
    println!("max_datagram_size after PMTUD: {before}");
    assert!(before >= 1300, "PMTUD should have raised it, got {before}");
    // The path now black-holes UDP payloads above 1250 bytes.
    const MTU: usize = 1250;
    p.relay.set(|i| i.mtu = Some(MTU));
    let start = Instant::now();
    let mut after = before;
    while start.elapsed() < Duration::from_secs(15) {
        let _ = p
            .client
            .send_datagram(&vec![7u8; p.client.max_datagram_size()]);
        let _ = p.client.send_datagram(b"small");
        std::thread::sleep(Duration::from_millis(20));
        after = p.client.max_datagram_size();
        if after < before {
            break;
        }
    }
    let took = start.elapsed();
    println!(
        "after the MTU drop to {MTU}: max_datagram_size {after} after {took:?}; relay: {}",
        p.relay.stats().summary()
    );
    assert!(
        after < before,
        "max_datagram_size stayed at {before} for {took:?} although the path drops > {MTU} bytes"
    );
    // A datagram of the new maximum size gets through.
    let full = vec![9u8; after];
    assert!(
        round_trip(&p.client, &full, Duration::from_secs(5)).is_some(),
        "a max-size datagram ({after} bytes) must cross a {MTU}-byte path"
    );
    let _ = &p.server;
}
