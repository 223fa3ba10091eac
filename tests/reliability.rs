//! The reliability layer end to end over an in-memory link with injected loss.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wtd::datagram::link::{Link, MemoryLink};
use wtd::datagram::reliability::{
    encode_data, wtd_reliable_outcome, ReliabilityCallbacks, ReliabilityConfig, ReliabilityLayer,
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
    // Close while still blocked: unblocking first would let a retransmission and its ACK race
    // the close on a loaded machine (then fewer than 4 are in flight).
    e.a.close();
    e.la.set_blocked(false);
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

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Issue 9 item 8 (review H3): a peer that sends only odd sequence numbers, never the floor,
/// must not grow the receiver's state; frames beyond floor + W are refused (not acknowledged)
/// and counted.
#[test]
fn a_peer_sending_only_odd_sequence_numbers_cannot_grow_receiver_state() {
    for in_order in [false, true] {
        let (la, lb) = MemoryLink::pair(1200).unwrap();
        let tb = DatagramTransport::new(lb.clone(), TransportConfig::default()).unwrap();
        let cfg = ReliabilityConfig {
            in_order,
            ..ReliabilityConfig::constructor_defaults()
        };
        let w = cfg.effective_receive_window() as u64;
        assert_eq!(w, 4 * 256, "default W = 4 × max_in_flight");
        let b = ReliabilityLayer::attach(&tb, cfg).unwrap();
        const FRAMES: u64 = 100_000;
        for seq in (1..200_000u32).step_by(2) {
            la.try_send(&encode_data(seq, b"odd")).unwrap();
        }
        wait_until(
            "the receiver to see every frame",
            Duration::from_secs(60),
            || b.stats().data_received == FRAMES,
        );
        let s = b.stats();
        println!("in_order={in_order}: {s:?}");
        assert!(
            s.recv_buffered <= w && s.recv_ready <= w,
            "receiver state must stay within W = {w}: {s:?}"
        );
        assert!(s.delivered <= w, "{s:?}");
        assert_eq!(
            s.out_of_window,
            FRAMES - w / 2,
            "every odd number at or beyond floor + W is refused and counted: {s:?}"
        );
        assert_eq!(
            s.acks_sent + s.acks_not_sent,
            FRAMES - s.out_of_window,
            "refused frames are not acknowledged: {s:?}"
        );
        drop(b);
        drop(tb);
    }
}

/// Copies of one DATA sequence number as they leave `link`, with their send times.
fn record_and_drop_copies(
    link: &MemoryLink,
    seq: u32,
    drop_first: usize,
) -> Arc<Mutex<Vec<Instant>>> {
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    link.set_drop_filter(Some(Box::new(move |d: &[u8]| {
        if d.len() >= 9 && &d[..5] == b"\x04DATA" && d[5..9] == seq.to_be_bytes() {
            let mut t = t.lock().unwrap();
            t.push(Instant::now());
            return t.len() <= drop_first;
        }
        false
    })));
    times
}

/// Issue 9 item 9 (seed-conformance §2.9 bug A). The constructor defaults scaled down 10×
/// (ack_timeout : max_rto = 2 s : 10 s, 5 retries): the sender retransmits at 0.2, 0.6, 1.4,
/// 2.4 and 3.4 s. The first five copies of message 0 are lost, the last one arrives. With the
/// derived gap timeout the receiver still waits for it and delivers it in order; with a gap
/// timeout that is too short (the old default 2·ack_timeout·(retries+2) = 2.8 s, which ignores
/// the backoff) the late copy must not be acknowledged: whatever is reported DELIVERED was
/// delivered. In unordered mode that late copy is delivered (and then acknowledged).
#[test]
fn a_message_reported_delivered_is_never_lost() {
    let t = Duration::from_millis(200);
    for (in_order, old_gap) in [(true, false), (true, true), (false, true)] {
        let cfg = ReliabilityConfig {
            ack_timeout: t,
            max_rto: t * 5,
            max_retries: 5,
            in_order,
            gap_timeout: if old_gap {
                t * (5 + 2) * 2
            } else {
                ReliabilityConfig::constructor_defaults().gap_timeout
            },
            ..ReliabilityConfig::constructor_defaults()
        };
        let e = ends(cfg);
        let copies = record_and_drop_copies(&e.la, 0, 5);
        let s0 = e.a.send(b"zero").unwrap();
        let s1 = e.a.send(b"one").unwrap();
        wait_until("message 0's fate", Duration::from_secs(15), || {
            e.a.stats().in_flight == 0
        });
        let outcomes = e.a.poll_outcomes(10);
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| {
            e.b.receive(Some(Duration::from_millis(300)))
                .ok()
                .map(|m| m.to_vec())
        })
        .collect();
        let (sa, sb) = (e.a.stats(), e.b.stats());
        println!("in_order={in_order} old_gap={old_gap}: {outcomes:?} {got:?}\n{sa:?}\n{sb:?}");
        assert_eq!(copies.lock().unwrap().len(), 6, "sent once + 5 retransmits");
        assert!(outcomes.contains(&(s1, wtd_reliable_outcome::WTD_RELIABLE_DELIVERED)));
        let zero = outcomes
            .iter()
            .find(|(s, _)| *s == s0)
            .expect("outcome of 0")
            .1;
        if zero == wtd_reliable_outcome::WTD_RELIABLE_DELIVERED {
            assert!(
                got.contains(&b"zero".to_vec()),
                "message 0 was reported DELIVERED but never delivered: {sb:?}"
            );
        }
        if old_gap && in_order {
            assert_eq!(sb.gaps_skipped, 1, "{sb:?}");
            assert_eq!(zero, wtd_reliable_outcome::WTD_RELIABLE_GAVE_UP);
            assert_eq!(got, vec![b"one".to_vec()]);
            assert_eq!(sb.late_after_skip, 1, "{sb:?}");
        } else if old_gap {
            assert_eq!((sb.gaps_skipped, sb.late_after_skip), (1, 1), "{sb:?}");
            assert_eq!(zero, wtd_reliable_outcome::WTD_RELIABLE_DELIVERED);
            assert_eq!(got, vec![b"one".to_vec(), b"zero".to_vec()], "late, once");
        } else {
            assert_eq!(sb.gaps_skipped, 0, "{sb:?}");
            assert_eq!(zero, wtd_reliable_outcome::WTD_RELIABLE_DELIVERED);
            assert_eq!(got, vec![b"zero".to_vec(), b"one".to_vec()], "in order");
        }
    }
}

/// The retransmit timeout doubles with every retransmission, up to max_rto (would fail if the
/// backoff were removed: the intervals would stay at ack_timeout).
#[test]
fn retransmissions_back_off_exponentially_up_to_max_rto() {
    let t = Duration::from_millis(100);
    let e = ends(ReliabilityConfig {
        ack_timeout: t,
        max_rto: t * 4,
        max_retries: 5,
        ..ReliabilityConfig::constructor_defaults()
    });
    let copies = record_and_drop_copies(&e.la, 0, usize::MAX);
    e.a.send(b"never arrives").unwrap();
    wait_until("the give-up", Duration::from_secs(10), || {
        e.a.stats().gave_up == 1
    });
    let times = copies.lock().unwrap().clone();
    assert_eq!(times.len(), 6);
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!("retransmit intervals: {gaps:?}");
    let expected = [t, t * 2, t * 4, t * 4, t * 4];
    for (got, want) in gaps.iter().zip(expected) {
        // Timers never fire early; a loaded machine may fire them late.
        assert!(
            *got >= want.mul_f64(0.95) && *got < want + Duration::from_millis(400),
            "intervals {gaps:?}, expected {expected:?}"
        );
    }
}

/// Issue 9 item 10 (seed-conformance §2.9 bug B): a second layer takes the transport over;
/// closing (or dropping) the first must not detach the second.
#[test]
fn closing_an_old_layer_does_not_detach_a_newer_one() {
    let e = ends(fast());
    // The first layer has received more than a receive window's worth already.
    const EARLIER: u32 = 1500;
    for i in 0..EARLIER {
        while e.a.send(&i.to_be_bytes()).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
        e.b.receive(Some(Duration::from_secs(5))).unwrap();
    }
    wait_until("the earlier ACKs", Duration::from_secs(10), || {
        e.a.stats().in_flight == 0
    });
    let b2 = ReliabilityLayer::attach(&e.tb, fast()).unwrap();
    e.b.close();
    drop(e.b);
    e.a.send(b"after takeover").unwrap();
    assert_eq!(
        &b2.receive(Some(Duration::from_secs(5))).unwrap()[..],
        b"after takeover"
    );
    assert_eq!(
        e.tb.receive_buffer_size(),
        0,
        "nothing fell into plain receive"
    );
    wait_until("the ACK", Duration::from_secs(5), || {
        e.a.stats().acked == EARLIER as u64 + 1
    });
    // Closing the layer that is attached does detach it.
    b2.close();
    e.a.send(b"plain").unwrap();
    let r = e.tb.receive(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(&r.data[..5], b"\x04DATA");
    let _ = (&e.ta, &e.lb);
}

/// Review L5 (third bullet): ACKs go one priority above DATA; under DROP_OLDEST an ACK pushed
/// into a full outgoing queue would evict an application datagram, so a peer sending DATA could
/// make the receiver drop its own traffic. An ACK is not sent when the queue is full (the
/// sender retransmits and the duplicate is acknowledged later); counted in `acks_not_sent`.
#[test]
fn acks_never_evict_application_datagrams() {
    let (la, lb) = MemoryLink::pair(1200).unwrap();
    let tb = DatagramTransport::new(
        lb.clone(),
        TransportConfig {
            outgoing_high_water_mark: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let b = ReliabilityLayer::attach(&tb, fast()).unwrap();
    lb.set_blocked(true);
    for i in 0..4u8 {
        tb.send(&[i; 10], 0, None, Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(tb.send_buffer_size(), 4);
    for seq in 0..20u32 {
        la.try_send(&encode_data(seq, b"m")).unwrap();
    }
    wait_until("the DATA frames", Duration::from_secs(5), || {
        b.stats().data_received == 20
    });
    assert_eq!(
        tb.stats().dropped_full,
        0,
        "an ACK evicted an application datagram: {:?}",
        b.stats()
    );
    assert_eq!(tb.send_buffer_size(), 4);
    let s = b.stats();
    assert_eq!(
        (s.delivered, s.acks_sent, s.acks_not_sent),
        (20, 0, 20),
        "{s:?}"
    );
    lb.set_blocked(false);
}

/// The receive queue is capped at the receive window: a receiver that does not read refuses
/// further DATA unacknowledged (`refused_full`); once it reads, the sender's retransmissions
/// get through and every message arrives exactly once.
#[test]
fn a_full_receive_queue_refuses_data_until_the_application_reads() {
    let cfg = ReliabilityConfig {
        receive_window: 8,
        ..fast()
    };
    let e = ends(cfg);
    for i in 0..20u32 {
        e.a.send(&i.to_be_bytes()).unwrap();
    }
    wait_until("the queue to fill", Duration::from_secs(5), || {
        e.b.stats().refused_full > 0
    });
    let s = e.b.stats();
    assert!(s.recv_ready <= 8 && s.delivered <= 8, "{s:?}");
    let mut got = HashSet::new();
    while got.len() < 20 {
        let m = e.b.receive(Some(Duration::from_secs(10))).expect("message");
        assert!(got.insert(u32::from_be_bytes(m[..4].try_into().unwrap())));
    }
    wait_until("all ACKs", Duration::from_secs(10), || {
        e.a.stats().acked == 20
    });
    assert_eq!(e.b.stats().delivered, 20);
    assert_eq!(e.a.stats().gave_up, 0);
}

/// Replacing a layer's callbacks returns only after a callback already running has returned,
/// and the old set is never called afterwards (the application may free what it used).
#[test]
fn replacing_callbacks_waits_for_a_running_one_and_the_old_set_stays_silent() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let e = ends(fast());
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let finished = Arc::new(AtomicBool::new(false));
    let replaced = Arc::new(AtomicBool::new(false));
    let old_after_replace = Arc::new(AtomicUsize::new(0));
    let (f, r, late) = (
        finished.clone(),
        replaced.clone(),
        old_after_replace.clone(),
    );
    e.b.set_callbacks(Some(ReliabilityCallbacks {
        on_message: Some(Box::new(move |_| {
            if r.load(Ordering::SeqCst) {
                late.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if !f.load(Ordering::SeqCst) {
                let _ = entered_tx.lock().unwrap().send(());
                std::thread::sleep(Duration::from_millis(200));
                f.store(true, Ordering::SeqCst);
            }
        })),
        ..Default::default()
    }));
    let a = e.a.clone();
    let sender = std::thread::spawn(move || {
        for i in 0..200u32 {
            a.send(&i.to_le_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let news = Arc::new(AtomicUsize::new(0));
    let n = news.clone();
    e.b.set_callbacks(Some(ReliabilityCallbacks {
        on_message: Some(Box::new(move |_| {
            n.fetch_add(1, Ordering::SeqCst);
        })),
        ..Default::default()
    }));
    replaced.store(true, Ordering::SeqCst);
    assert!(
        finished.load(Ordering::SeqCst),
        "set_callbacks returned while the old callback was still running"
    );
    sender.join().unwrap();
    wait_until(
        "the new callbacks get messages",
        Duration::from_secs(10),
        || news.load(Ordering::SeqCst) > 0,
    );
    assert_eq!(old_after_replace.load(Ordering::SeqCst), 0);
}
