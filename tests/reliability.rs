//! The reliability layer end to end over an in-memory link with injected loss.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wtd::datagram::link::MemoryLink;
use wtd::datagram::reliability::{
    wtd_reliable_outcome, ReliabilityCallbacks, ReliabilityConfig, ReliabilityLayer,
};
use wtd::datagram::{DatagramTransport, TransportConfig};
use wtd::wtd_result::*;

struct Ends {
    a: ReliabilityLayer,
    b: ReliabilityLayer,
    ta: DatagramTransport,
    tb: DatagramTransport,
    la: Arc<MemoryLink>,
    lb: Arc<MemoryLink>,
}

fn ends(cfg: ReliabilityConfig) -> Ends {
    let (la, lb) = MemoryLink::pair(1200).unwrap();
    let tc = TransportConfig {
        outgoing_high_water_mark: 4096,
        incoming_high_water_mark: 4096,
        ..Default::default()
    };
    let ta = DatagramTransport::new(la.clone(), tc.clone()).unwrap();
    let tb = DatagramTransport::new(lb.clone(), tc).unwrap();
    let a = ReliabilityLayer::attach(&ta, cfg.clone()).unwrap();
    let b = ReliabilityLayer::attach(&tb, cfg).unwrap();
    Ends {
        a,
        b,
        ta,
        tb,
        la,
        lb,
    }
}

fn fast() -> ReliabilityConfig {
    ReliabilityConfig {
        ack_timeout: Duration::from_millis(30),
        max_retries: 30,
        min_rto: Duration::from_millis(5),
        max_rto: Duration::from_millis(200),
        ..ReliabilityConfig::constructor_defaults()
    }
}

fn run_lossy(in_order: bool) {
    let e = ends(ReliabilityConfig { in_order, ..fast() });
    e.la.set_loss(0.2);
    e.lb.set_loss(0.2);
    const N: u32 = 10_000;
    let receiver = {
        let b = e.b.clone();
        std::thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut order = Vec::new();
            while seen.len() < N as usize {
                let m = b.receive(Some(Duration::from_secs(20))).expect("message");
                let i = u32::from_be_bytes(m[..4].try_into().unwrap());
                assert!(seen.insert(i), "message {i} delivered twice");
                order.push(i);
            }
            order
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0u32;
    while i < N {
        let mut payload = i.to_be_bytes().to_vec();
        payload.extend_from_slice(&[7u8; 60]);
        match e.a.send(&payload) {
            Ok(_) => i += 1,
            Err(err) if err.code == WTD_ERR_WOULD_BLOCK => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(err) => panic!("{err}"),
        }
        assert!(Instant::now() < deadline, "stuck at {i}");
    }
    let order = receiver.join().unwrap();
    while e.a.stats().in_flight > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (sa, sb) = (e.a.stats(), e.b.stats());
    assert_eq!(
        (sa.sent, sa.acked, sa.gave_up),
        (N as u64, N as u64, 0),
        "{sa:?}"
    );
    assert_eq!(sb.delivered, N as u64, "{sb:?}");
    assert!(
        sa.retransmits > 0 && sb.duplicates > 0,
        "loss must have caused retransmits and duplicates: {sa:?} {sb:?}"
    );
    assert!(e.la.lost.load(std::sync::atomic::Ordering::Relaxed) > 1000);
    if in_order {
        assert!(order.windows(2).all(|w| w[0] < w[1]), "in-order delivery");
    }
    let outcomes = e.a.poll_outcomes(usize::MAX);
    assert_eq!(outcomes.len(), N as usize);
    assert!(outcomes
        .iter()
        .all(|(_, o)| *o == wtd_reliable_outcome::WTD_RELIABLE_DELIVERED));
    // Reliability frames never reached the plain receive path.
    assert_eq!(e.tb.receive_buffer_size(), 0);
    assert_eq!(e.ta.receive_buffer_size(), 0);
    println!("loss 20%/20%: {sa:?}\n{sb:?}");
}

#[test]
fn ten_thousand_messages_exactly_once_under_20_percent_loss() {
    run_lossy(false);
}

#[test]
fn in_order_delivery_under_loss() {
    run_lossy(true);
}

#[test]
fn gives_up_when_the_peer_is_gone_and_reports_it() {
    let e = ends(ReliabilityConfig {
        max_retries: 3,
        ..fast()
    });
    e.la.set_loss(1.0);
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    e.a.set_callbacks(Some(ReliabilityCallbacks {
        on_outcome: Some(Box::new(move |seq, o| g.lock().unwrap().push((seq, o)))),
        ..Default::default()
    }));
    let s0 = e.a.send(b"one").unwrap();
    let s1 = e.a.send(b"two").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut got = got.lock().unwrap().clone();
    got.sort_by_key(|(seq, _)| *seq);
    assert_eq!(
        got,
        vec![
            (s0, wtd_reliable_outcome::WTD_RELIABLE_GAVE_UP),
            (s1, wtd_reliable_outcome::WTD_RELIABLE_GAVE_UP)
        ]
    );
    let st = e.a.stats();
    assert_eq!(
        (st.gave_up, st.retransmits, st.in_flight),
        (2, 6, 0),
        "{st:?}"
    );
    assert_eq!(e.b.stats().delivered, 0);
}

#[test]
fn rto_follows_measured_rtt_and_window_limits_sends() {
    let e = ends(ReliabilityConfig {
        max_in_flight: 4,
        ..ReliabilityConfig::factory_defaults()
    });
    for _ in 0..20 {
        e.a.send(b"x").unwrap();
        e.b.receive(Some(Duration::from_secs(2))).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let st = e.a.stats();
    assert!(st.srtt_us > 0, "{st:?}");
    assert!(
        st.rto_us < 1_000_000,
        "RTO must come from the measured RTT, not stay at ack_timeout: {st:?}"
    );
    e.la.set_blocked(true);
    for _ in 0..4 {
        e.a.send(b"y").unwrap();
    }
    assert_eq!(e.a.send(b"z").unwrap_err().code, WTD_ERR_WOULD_BLOCK);
    assert_eq!(e.a.send(&[0u8; 1200]).unwrap_err().code, WTD_ERR_TOO_LARGE);
    e.la.set_blocked(false);
    e.a.close();
    assert_eq!(e.a.send(b"z").unwrap_err().code, WTD_ERR_CLOSED);
    assert_eq!(e.a.stats().gave_up, 4, "closing reports what was in flight");
}

#[test]
fn plain_datagrams_still_reach_the_transport_and_malformed_frames_are_counted() {
    let e = ends(fast());
    e.ta.send(b"plain", 0, None, None).unwrap();
    e.ta.send(b"\x04DATA\x00", 0, None, None).unwrap();
    e.ta.send(b"\x03ACKxyz", 0, None, None).unwrap();
    assert_eq!(
        &e.tb.receive(Some(Duration::from_secs(2))).unwrap().data[..],
        b"plain"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while e.b.stats().malformed < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(e.b.stats().malformed, 2);
    assert_eq!(e.tb.receive_buffer_size(), 0);
    let _ = (&e.lb, &e.tb);
}
