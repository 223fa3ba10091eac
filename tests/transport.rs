//! Semantics of the datagram transport (SPEC §3), over an in-memory link with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use wtd::datagram::clock::ManualClock;
use wtd::datagram::link::MemoryLink;
use wtd::datagram::report::{diagnose_issues, wtd_issue};
use wtd::datagram::transport::is_heartbeat;
use wtd::datagram::{json, wtd_drop_policy, DatagramTransport, TransportConfig};
use wtd::wtd_result::*;

const T: Option<Duration> = Some(Duration::from_secs(2));

struct Pair {
    a: DatagramTransport,
    b: DatagramTransport,
    link_a: Arc<MemoryLink>,
    clock: Arc<ManualClock>,
}

fn pair(cfg: TransportConfig) -> Pair {
    let (la, lb) = MemoryLink::pair(1200).unwrap();
    let clock = ManualClock::new();
    let a = DatagramTransport::with_clock(la.clone(), cfg.clone(), clock.clone()).unwrap();
    let b = DatagramTransport::with_clock(lb, cfg, clock.clone()).unwrap();
    Pair {
        a,
        b,
        link_a: la,
        clock,
    }
}

/// Waits (≤ 5 s, so a loaded CI machine is fine) until `cond` holds.
fn wait_until(cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cond() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn drain(t: &DatagramTransport) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| {
        t.receive(Some(Duration::from_millis(300)))
            .ok()
            .map(|r| r.data.to_vec())
    })
    .collect()
}

#[test]
fn priority_order_and_fifo_among_equals() {
    let p = pair(TransportConfig::default());
    p.link_a.set_blocked(true);
    for (d, prio) in [(b"a", 0), (b"b", 5), (b"c", 0), (b"d", 5), (b"e", -7)] {
        p.a.send(d, prio, None, None).unwrap();
    }
    assert_eq!(p.a.send_buffer_size(), 5);
    let [out, _] = p.a.queue_stats();
    assert_eq!(out.2, vec![(5, 2), (0, 2), (-7, 1)]);
    p.link_a.set_blocked(false);
    assert_eq!(
        drain(&p.b),
        vec![
            b"b".to_vec(),
            b"d".to_vec(),
            b"a".to_vec(),
            b"c".to_vec(),
            b"e".to_vec()
        ]
    );
    assert_eq!(p.a.stats().datagrams_sent, 5);
}

#[test]
fn ttl_runs_out_while_queued_and_is_counted() {
    let p = pair(TransportConfig::default());
    p.link_a.set_blocked(true);
    p.a.send(b"short", 0, Some(Duration::from_millis(10)), None)
        .unwrap();
    p.a.send(b"long", 0, Some(Duration::from_secs(60)), None)
        .unwrap();
    p.a.send(b"none", 0, None, None).unwrap();
    p.clock.advance_us(20_000);
    let _ = p.a.send_buffer_size(); // wait out an attempt timed before the advance
    p.link_a.set_blocked(false);
    assert_eq!(drain(&p.b), vec![b"long".to_vec(), b"none".to_vec()]);
    let s = p.a.stats();
    assert_eq!(
        (s.dropped_expired, s.send_drops, s.datagrams_sent),
        (1, 1, 2)
    );
}

#[test]
fn each_drop_policy_at_the_high_water_mark() {
    let cfg = |policy| TransportConfig {
        outgoing_high_water_mark: 2,
        drop_policy: policy,
        ..Default::default()
    };
    // DROP_OLDEST: the oldest of the lowest priority ≤ the new one goes, counted.
    let p = pair(cfg(wtd_drop_policy::WTD_DROP_OLDEST));
    p.link_a.set_blocked(true);
    p.a.send(b"1", 0, None, None).unwrap();
    p.a.send(b"2", 1, None, None).unwrap();
    p.a.send(b"3", 0, None, None).unwrap(); // evicts "1"
    assert_eq!(
        p.a.send(b"4", -1, None, None).unwrap_err().code,
        WTD_ERR_WOULD_BLOCK
    ); // all queued are higher
    let s = p.a.stats();
    assert_eq!(
        (
            s.dropped_full,
            s.send_drops,
            s.rejected_full,
            s.send_failures
        ),
        (1, 1, 1, 1)
    );
    p.link_a.set_blocked(false);
    assert_eq!(drain(&p.b), vec![b"2".to_vec(), b"3".to_vec()]);

    // REJECT_NEW: the new one is refused.
    let p = pair(cfg(wtd_drop_policy::WTD_DROP_REJECT_NEW));
    p.link_a.set_blocked(true);
    p.a.send(b"1", 0, None, None).unwrap();
    p.a.send(b"2", 0, None, None).unwrap();
    assert_eq!(
        p.a.send(b"3", 9, None, None).unwrap_err().code,
        WTD_ERR_WOULD_BLOCK
    );
    assert_eq!(p.a.stats().rejected_full, 1);

    // BLOCK: waits for room up to the timeout, then succeeds once room appears.
    let p = pair(cfg(wtd_drop_policy::WTD_DROP_BLOCK));
    p.link_a.set_blocked(true);
    p.a.send(b"1", 0, None, None).unwrap();
    p.a.send(b"2", 0, None, None).unwrap();
    assert_eq!(
        p.a.send(b"3", 0, None, Some(Duration::from_millis(50)))
            .unwrap_err()
            .code,
        WTD_ERR_TIMEOUT
    );
    assert_eq!(
        p.a.try_send(b"3", 0, None).unwrap_err().code,
        WTD_ERR_WOULD_BLOCK
    );
    let link = p.link_a.clone();
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        link.set_blocked(false);
    });
    p.a.send(b"3", 0, None, Some(Duration::from_secs(5)))
        .unwrap();
    opener.join().unwrap();
    assert_eq!(drain(&p.b).len(), 3);
    assert_eq!(p.a.stats().send_drops, 0);
}

#[test]
fn max_ages_drop_on_dequeue() {
    let p = pair(TransportConfig::default());
    p.a.set_outgoing_max_age(Some(Duration::from_millis(5)));
    p.link_a.set_blocked(true);
    p.a.send(b"old", 0, None, None).unwrap();
    p.clock.advance_us(10_000);
    // The sender task may be inside an attempt that read the clock before the advance (it
    // holds the outgoing queue's lock for the whole attempt, which fails while the link is
    // blocked): taking that lock once waits it out, so the next attempt sees the new time.
    let _ = p.a.send_buffer_size();
    p.link_a.set_blocked(false);
    wait_until(|| p.a.stats().dropped_too_old == 1);
    assert_eq!(p.b.stats().datagrams_received, 0);

    p.b.set_incoming_max_age(Some(Duration::from_millis(5)));
    p.a.send(b"stale", 0, None, None).unwrap();
    p.a.send(b"fresh", 0, None, None).unwrap();
    wait_until(|| p.b.stats().datagrams_received == 2);
    p.clock.advance_us(10_000);
    assert_eq!(p.b.try_receive().unwrap_err().code, WTD_ERR_WOULD_BLOCK);
    let s = p.b.stats();
    assert_eq!(
        (s.datagrams_received, s.expired_incoming, s.receive_drops),
        (2, 2, 2)
    );
}

#[test]
fn close_wakes_blocked_receivers_and_senders() {
    let p = pair(TransportConfig {
        outgoing_high_water_mark: 1,
        drop_policy: wtd_drop_policy::WTD_DROP_BLOCK,
        ..Default::default()
    });
    let b = p.b.clone();
    let reader = std::thread::spawn(move || b.receive(None));
    p.link_a.set_blocked(true);
    p.a.send(b"x", 0, None, None).unwrap();
    let a = p.a.clone();
    let writer = std::thread::spawn(move || a.send(b"y", 0, None, Some(Duration::from_secs(30))));
    std::thread::sleep(Duration::from_millis(100));
    p.b.close(None).unwrap();
    p.a.close(None).unwrap();
    assert_eq!(reader.join().unwrap().unwrap_err().code, WTD_ERR_CLOSED);
    assert_eq!(writer.join().unwrap().unwrap_err().code, WTD_ERR_CLOSED);
    // The queued "x" was dropped by the close and counted.
    assert_eq!(p.a.stats().cleared_outgoing, 1);
    assert!(p.a.close(None).is_ok(), "close is idempotent");
    assert_eq!(
        p.a.send(b"z", 0, None, None).unwrap_err().code,
        WTD_ERR_CLOSED
    );
    assert!(!p.b.is_readable() && !p.a.is_writable());
}

#[test]
fn flush_on_close_sends_what_is_queued() {
    let p = pair(TransportConfig::default());
    p.link_a.set_blocked(true);
    for i in 0..10u8 {
        p.a.send(&[i], 0, None, None).unwrap();
    }
    let link = p.link_a.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        link.set_blocked(false);
    });
    p.a.close(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(p.a.stats().datagrams_sent, 10);
    assert_eq!(drain(&p.b).len(), 10);
}

#[test]
fn scripted_sequence_gives_exact_counters() {
    let p = pair(TransportConfig {
        incoming_high_water_mark: 3,
        ..Default::default()
    });
    for i in 0..5u8 {
        p.a.send(&[i; 10], 0, None, None).unwrap();
    }
    assert_eq!(
        p.a.send(&[0u8; 1201], 0, None, None).unwrap_err().code,
        WTD_ERR_TOO_LARGE
    );
    assert_eq!(
        p.a.send(b"", 0, None, None).unwrap_err().code,
        WTD_ERR_INVALID_ARGUMENT
    );
    // Incoming queue holds 3: the two oldest were evicted (wait until all five arrived).
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while p.b.stats().datagrams_received < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        drain(&p.b),
        vec![vec![2u8; 10], vec![3u8; 10], vec![4u8; 10]]
    );
    let a = p.a.stats();
    assert_eq!(
        (
            a.datagrams_sent,
            a.bytes_sent,
            a.send_failures,
            a.dropped_too_large
        ),
        (5, 50, 2, 1)
    );
    let b = p.b.stats();
    assert_eq!(
        (
            b.datagrams_received,
            b.bytes_received,
            b.evicted_incoming,
            b.receive_drops,
            b.datagrams_read
        ),
        (5, 50, 2, 2, 3)
    );
    assert_eq!((p.a.send_sequence(), p.b.receive_sequence()), (5, 5));
    assert_eq!(b.min_datagram_size, 10);
    assert!((b.receive_success_rate() - 0.6).abs() < 1e-9);
}

#[test]
fn send_multiple_stops_at_first_failure_and_receive_multiple_batches() {
    let p = pair(TransportConfig::default());
    let big = vec![1u8; 5000];
    let items: Vec<&[u8]> = vec![b"1", b"2", &big, b"4"];
    let (n, err) = p.a.send_multiple(&items, 0, None);
    assert_eq!((n, err.unwrap().code), (2, WTD_ERR_TOO_LARGE));
    wait_until(|| p.b.receive_buffer_size() == 2);
    let got = p.b.receive_multiple(10, T).unwrap();
    assert_eq!(
        got.iter().map(|r| r.data.to_vec()).collect::<Vec<_>>(),
        vec![b"1".to_vec(), b"2".to_vec()]
    );
    assert_eq!(
        p.b.receive_multiple(10, Some(Duration::from_millis(20)))
            .unwrap_err()
            .code,
        WTD_ERR_TIMEOUT
    );
}

#[test]
fn metadata_fields() {
    let p = pair(TransportConfig::default());
    p.a.send(b"meta", 3, None, None).unwrap();
    wait_until(|| p.b.receive_buffer_size() == 1);
    p.clock.advance_us(250_000);
    let r = p.b.receive(T).unwrap();
    assert_eq!((r.sequence, &r.data[..]), (1, &b"meta"[..]));
    assert!((r.age - 0.25).abs() < 1e-9, "{}", r.age);
    assert!((r.timestamp - 1_700_000_000.0).abs() < 1.0);
}

#[test]
fn json_round_trip_and_errors_lose_nothing() {
    let p = pair(TransportConfig::default());
    json::send_json(&p.a, br#"{ "x" : 1 }"#, 0, None, None).unwrap();
    assert_eq!(
        json::send_json(&p.a, b"{oops", 0, None, None)
            .unwrap_err()
            .code,
        WTD_ERR_SERIALIZATION
    );
    assert_eq!(p.a.stats().datagrams_sent, 1);
    assert_eq!(json::receive_json(&p.b, T).unwrap(), r#"{"x":1}"#);
    p.a.send(b"not json", 0, None, None).unwrap();
    assert_eq!(
        json::receive_json(&p.b, T).unwrap_err().code,
        WTD_ERR_SERIALIZATION
    );
    assert_eq!(
        &p.b.receive(T).unwrap().data[..],
        b"not json",
        "the bad datagram stays readable"
    );
    assert_eq!(p.b.stats().receive_errors, 1);
}

#[test]
fn heartbeat_payload_priority_and_filter() {
    let p = pair(TransportConfig::default());
    p.a.start_heartbeat(Duration::from_secs(3600)).unwrap();
    let r = p.b.receive(T).unwrap();
    assert!(is_heartbeat(&r.data));
    let text = std::str::from_utf8(&r.data).unwrap();
    assert!(
        text.strip_prefix("HEARTBEAT:")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1_700_000_000
    );
    assert!(p.b.last_heartbeat_received().is_some());
    // Priority 1: it overtakes queued priority-0 datagrams.
    p.a.stop_heartbeat();
    p.link_a.set_blocked(true);
    p.a.send(b"state", 0, None, None).unwrap();
    p.a.start_heartbeat(Duration::from_secs(3600)).unwrap();
    wait_until(|| p.a.send_buffer_size() == 2);
    assert_eq!(p.a.queue_stats()[0].2, vec![(1, 1), (0, 1)]);
    p.link_a.set_blocked(false);
    assert!(is_heartbeat(&p.b.receive(T).unwrap().data));
    assert_eq!(&p.b.receive(T).unwrap().data[..], b"state");
    // Filtering keeps them out of the receive path but records them.
    let f = pair(TransportConfig {
        filter_heartbeats: true,
        ..Default::default()
    });
    f.a.start_heartbeat(Duration::from_secs(3600)).unwrap();
    wait_until(|| f.b.stats().heartbeats_filtered == 1);
    assert_eq!(f.b.try_receive().unwrap_err().code, WTD_ERR_WOULD_BLOCK);
    assert_eq!(f.b.stats().heartbeats_filtered, 1);
    assert!(f.b.last_heartbeat_received().is_some());
}

#[test]
fn diagnose_reports_the_seed_checks() {
    let p = pair(TransportConfig {
        outgoing_high_water_mark: 10,
        ..Default::default()
    });
    assert!(diagnose_issues(&p.a).is_empty());
    p.link_a.set_blocked(true);
    for _ in 0..10 {
        p.a.send(b"x", 0, None, None).unwrap();
    }
    p.a.send(b"y", 0, None, None).unwrap(); // evicts one: drop rate 1/0 sent … counted
    let codes: Vec<_> = diagnose_issues(&p.a).into_iter().map(|(c, _)| c).collect();
    assert!(
        codes.contains(&wtd_issue::WTD_ISSUE_OUTGOING_QUEUE_NEARLY_FULL),
        "{codes:?}"
    );
    assert!(
        codes.contains(&wtd_issue::WTD_ISSUE_LOW_SEND_SUCCESS_RATE),
        "{codes:?}"
    );
    p.clock.advance_us(200_000);
    let _ = p.a.send_buffer_size(); // wait out an attempt timed before the advance
    p.link_a.set_blocked(false);
    wait_until(|| p.a.send_buffer_size() == 0);
    let issues = diagnose_issues(&p.a);
    let latency = issues
        .iter()
        .find(|(c, _)| *c == wtd_issue::WTD_ISSUE_HIGH_SEND_LATENCY)
        .expect("latency issue");
    assert_eq!(latency.1, "High send latency: 200.0ms");
    p.link_a.close();
    let codes: Vec<_> = diagnose_issues(&p.a).into_iter().map(|(c, _)| c).collect();
    assert!(
        codes.contains(&wtd_issue::WTD_ISSUE_CLOSED)
            && codes.contains(&wtd_issue::WTD_ISSUE_SESSION_NOT_READY)
    );
    let state: serde_json::Value =
        serde_json::from_str(&wtd::datagram::report::debug_state(&p.a)).unwrap();
    for key in [
        "transport",
        "statistics",
        "queues",
        "configuration",
        "sequences",
    ] {
        assert!(state.get(key).is_some(), "{key}");
    }
}

/// Replacing a transport's callbacks returns only after a callback already running returned,
/// and the old set is never called afterwards (received and sent events alike).
#[test]
fn replacing_callbacks_waits_for_a_running_one_and_the_old_set_stays_silent() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use wtd::datagram::transport::TransportCallbacks;
    let p = pair(TransportConfig::default());
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let finished = Arc::new(AtomicBool::new(false));
    let replaced = Arc::new(AtomicBool::new(false));
    let late = Arc::new(AtomicUsize::new(0));
    let (f, r, l, l2, r2) = (
        finished.clone(),
        replaced.clone(),
        late.clone(),
        late.clone(),
        replaced.clone(),
    );
    p.b.set_callbacks(Some(TransportCallbacks {
        on_received: Some(Box::new(move |_| {
            if r.load(Ordering::SeqCst) {
                l.fetch_add(1, Ordering::SeqCst);
            } else if !f.load(Ordering::SeqCst) {
                let _ = entered_tx.lock().unwrap().send(());
                std::thread::sleep(Duration::from_millis(200));
                f.store(true, Ordering::SeqCst);
            }
        })),
        on_sent: Some(Box::new(move |_| {
            if r2.load(Ordering::SeqCst) {
                l2.fetch_add(1, Ordering::SeqCst);
            }
        })),
    }));
    let a = p.a.clone();
    let sender = std::thread::spawn(move || {
        for i in 0..200u32 {
            let _ = a.try_send(&i.to_le_bytes(), 0, None);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let news = Arc::new(AtomicUsize::new(0));
    let n = news.clone();
    p.b.set_callbacks(Some(TransportCallbacks {
        on_received: Some(Box::new(move |_| {
            n.fetch_add(1, Ordering::SeqCst);
        })),
        on_sent: None,
    }));
    replaced.store(true, Ordering::SeqCst);
    assert!(
        finished.load(Ordering::SeqCst),
        "set_callbacks returned while the old callback was still running"
    );
    // b sends too: sent events after the replacement must not reach the old on_sent.
    for _ in 0..20 {
        p.b.try_send(b"x", 0, None).unwrap();
    }
    sender.join().unwrap();
    wait_until(|| news.load(Ordering::SeqCst) > 0);
    assert!(news.load(Ordering::SeqCst) > 0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(late.load(Ordering::SeqCst), 0);
}
