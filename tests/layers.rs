//! Structured datagrams, the broadcaster and the monitor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wtd::datagram::broadcaster::Broadcaster;
use wtd::datagram::clock::ManualClock;
use wtd::datagram::link::MemoryLink;
use wtd::datagram::monitor::{wtd_alert_kind, Monitor, MonitorConfig};
use wtd::datagram::structured::StructuredTransport;
use wtd::datagram::{wtd_drop_policy, DatagramTransport, TransportConfig};
use wtd::endpoint::tls::Verification;
use wtd::wtd_result::*;
use wtd::{connect, ClientConfig, Server, ServerConfig};

const T: Option<Duration> = Some(Duration::from_secs(5));

/// Waits (≤ 5 s, so a loaded CI machine is fine) until `cond` holds.
fn wait_until(cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cond() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn memory_pair(
    cfg: TransportConfig,
    clock: Option<Arc<ManualClock>>,
) -> (DatagramTransport, DatagramTransport, Arc<MemoryLink>) {
    let (la, lb) = MemoryLink::pair(1200).unwrap();
    let make = |l: Arc<MemoryLink>| match &clock {
        Some(c) => DatagramTransport::with_clock(l, cfg.clone(), c.clone()).unwrap(),
        None => DatagramTransport::new(l, cfg.clone()).unwrap(),
    };
    (make(la.clone()), make(lb), la)
}

#[test]
fn structured_registry_and_errors() {
    let (a, b, _) = memory_pair(TransportConfig::default(), None);
    let (sa, sb) = (StructuredTransport::new(&a), StructuredTransport::new(&b));
    sa.register(1).unwrap();
    assert_eq!(sa.register(1).unwrap_err().code, WTD_ERR_INVALID_ARGUMENT);
    sb.register(1).unwrap();
    assert_eq!(
        sa.send_obj(9, b"{}", 0, None, None).unwrap_err().code,
        WTD_ERR_SERIALIZATION
    );
    assert_eq!(
        a.stats().datagrams_sent,
        0,
        "nothing sent for an unregistered type"
    );
    sa.send_obj(1, br#"{"x":1}"#, 0, None, None).unwrap();
    let (id, body) = sb.receive_obj(T).unwrap();
    assert_eq!((id, &body[..]), (1, &br#"{"x":1}"#[..]));
    // Short datagram and unknown type id: a clear error, counted, and the queue moves on.
    a.send(b"\x07", 0, None, None).unwrap();
    a.send(b"\x00\x02{}", 0, None, None).unwrap();
    sa.send_obj(1, b"[]", 0, None, None).unwrap();
    assert_eq!(sb.receive_obj(T).unwrap_err().code, WTD_ERR_SERIALIZATION);
    assert_eq!(sb.receive_obj(T).unwrap_err().code, WTD_ERR_SERIALIZATION);
    assert_eq!(
        sb.receive_obj(T).unwrap(),
        (1, bytes::Bytes::from_static(b"[]"))
    );
    assert_eq!(b.stats().receive_errors, 2);
}

#[test]
fn broadcaster_keeps_transports_on_transient_failure_and_prunes_closed() {
    let cfg = TransportConfig {
        outgoing_high_water_mark: 1,
        drop_policy: wtd_drop_policy::WTD_DROP_REJECT_NEW,
        ..Default::default()
    };
    let (a, _b, la) = memory_pair(cfg.clone(), None);
    let (c, _d, _) = memory_pair(cfg, None);
    let bc = Broadcaster::new();
    bc.add(&a).unwrap();
    bc.add(&a).unwrap();
    bc.add(&c).unwrap();
    assert_eq!(bc.count(), 2);
    la.set_blocked(true);
    assert_eq!(bc.broadcast(b"1", 0, None).accepted, 2); // a queues it (QUIC "full")
    let r = bc.broadcast(b"2", 0, None);
    assert_eq!(
        (r.accepted, r.failed, r.pruned),
        (1, 1, 0),
        "a's queue is full: a transient failure"
    );
    assert_eq!(bc.count(), 2, "a full queue never removes a transport");
    c.close(None).unwrap();
    let r = bc.broadcast(b"3", 0, None);
    assert_eq!((r.pruned, bc.count()), (1, 1));
    assert!(bc.remove(&a));
    assert_eq!(bc.count(), 0);
}

#[test]
fn broadcast_to_1000_real_sessions() {
    let mut srv_cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    srv_cfg.accept_queue_capacity = 1000; // all 1000 sessions wait for `accept` below
    let srv = Server::bind(srv_cfg).unwrap();
    let url = format!(
        "https://127.0.0.1:{}/room",
        srv.local_addr().unwrap().port()
    );
    let cfg = ClientConfig {
        verification: Verification::PinnedSha256(vec![srv.cert_sha256()]),
        ..Default::default()
    };
    let mut clients = Vec::new();
    // 16 sessions per connection: the number a wtd server advertises and enforces.
    while clients.len() < 1000 {
        let first = connect(&url, &cfg).unwrap();
        for _ in 1..(1000 - clients.len()).min(16) {
            clients.push(wtd::endpoint::client::open_sibling(&first, "/room", &cfg).unwrap());
        }
        clients.push(first);
    }
    let bc = Broadcaster::new();
    let mut server_transports = Vec::new();
    for _ in 0..1000 {
        let s = srv.accept(T).unwrap();
        let t = DatagramTransport::for_session(&s, TransportConfig::default()).unwrap();
        bc.add(&t).unwrap();
        server_transports.push((s, t));
    }
    assert_eq!(bc.count(), 1000);
    let started = std::time::Instant::now();
    let r = bc.broadcast(b"tick 1: world state", 0, Some(Duration::from_secs(2)));
    let took = started.elapsed();
    assert_eq!(r.accepted, 1000, "{r:?}");
    for c in &clients {
        assert_eq!(&c.recv_datagram(T).unwrap()[..], b"tick 1: world state");
    }
    println!("broadcast to 1000 sessions took {took:?}");
}

#[test]
fn monitor_alerts_fire_once_per_episode() {
    let clock = ManualClock::new();
    let (a, _b, la) = memory_pair(
        TransportConfig {
            outgoing_high_water_mark: 10,
            ..Default::default()
        },
        Some(clock.clone()),
    );
    let m = Monitor::with_clock(
        &a,
        MonitorConfig {
            trend_window: 4,
            ..Default::default()
        },
        clock.clone(),
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    m.set_alert_callback(Some(Arc::new(move |al| s2.lock().unwrap().push(al.kind))));
    m.sample_now();
    assert!(m.alerts().is_empty());
    // Episode 1 of a high queue: raised once however long it lasts.
    la.set_blocked(true);
    for _ in 0..10 {
        a.send(b"x", 0, None, None).unwrap();
    }
    m.sample_now();
    m.sample_now();
    m.sample_now();
    assert_eq!(
        m.alerts()
            .iter()
            .filter(|x| x.kind == wtd_alert_kind::WTD_ALERT_HIGH_QUEUE_SIZE)
            .count(),
        1
    );
    // Drained (each datagram waited 100 ms → rising send time), then a second episode.
    clock.advance_us(100_000);
    // Wait out a send attempt that read the clock before the advance (it holds the queue lock
    // for the whole attempt), so the sends below are timed with the new clock.
    let _ = a.send_buffer_size();
    la.set_blocked(false);
    wait_until(|| a.send_buffer_size() == 0);
    m.sample_now();
    la.set_blocked(true);
    for _ in 0..10 {
        a.send(b"y", 0, None, None).unwrap();
    }
    m.sample_now();
    let kinds: Vec<_> = m.alerts().iter().map(|x| x.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == wtd_alert_kind::WTD_ALERT_HIGH_QUEUE_SIZE)
            .count(),
        2,
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&wtd_alert_kind::WTD_ALERT_INCREASING_SEND_TIME),
        "{kinds:?}"
    );
    // Low success: evictions make sends fail.
    for _ in 0..100 {
        a.send(b"z", 0, None, None).unwrap();
    }
    m.sample_now();
    m.sample_now();
    let kinds: Vec<_> = m.alerts().iter().map(|x| x.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == wtd_alert_kind::WTD_ALERT_LOW_SUCCESS_RATE)
            .count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        kinds,
        "the callback saw exactly the recorded alerts"
    );
    let samples = m.samples(Some(2));
    assert_eq!(samples.len(), 2);
    assert_eq!(m.samples(None).len(), 8);
    assert!(samples[1].timestamp >= samples[0].timestamp);
    assert_eq!(m.alerts()[0].kind.as_str(), "high_queue_size");
}

#[test]
fn monitor_samples_on_its_own() {
    let (a, _b, _) = memory_pair(TransportConfig::default(), None);
    let m = Monitor::new(
        &a,
        MonitorConfig {
            interval: Duration::from_millis(20),
            samples_maxlen: 3,
            ..Default::default()
        },
    )
    .unwrap();
    m.start().unwrap();
    assert!(m.is_monitoring());
    wait_until(|| m.samples(None).len() == 3);
    std::thread::sleep(Duration::from_millis(100)); // more samples: the ring stays at 3
    m.stop();
    assert!(!m.is_monitoring());
    assert_eq!(m.samples(None).len(), 3, "ring keeps samples_maxlen");
}
