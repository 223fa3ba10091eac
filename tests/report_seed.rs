//! pywebtransport 0.6.1 parity of `debug_state` and `diagnose_issues` (seed-conformance review
//! §1): the statistics keys, the texts of every issue, and the drop rate over max(1, traffic).

use std::sync::Arc;

use wtd::datagram::clock::ManualClock;
use wtd::datagram::link::MemoryLink;
use wtd::datagram::report::{debug_state, diagnose_issues, wtd_issue};
use wtd::datagram::{DatagramTransport, TransportConfig};

fn transport(cfg: TransportConfig) -> (DatagramTransport, DatagramTransport, Arc<MemoryLink>) {
    let (la, lb) = MemoryLink::pair(1200).unwrap();
    let clock = ManualClock::new();
    let a = DatagramTransport::with_clock(la.clone(), cfg.clone(), clock.clone()).unwrap();
    let b = DatagramTransport::with_clock(lb, cfg, clock).unwrap();
    (a, b, la)
}

fn message(t: &DatagramTransport, code: wtd_issue) -> Option<String> {
    diagnose_issues(t)
        .into_iter()
        .find(|(c, _)| *c == code)
        .map(|(_, m)| m)
}

#[test]
fn statistics_have_the_seed_keys() {
    let (a, _b, _l) = transport(TransportConfig::default());
    a.send(b"hello", 0, None, None).unwrap();
    let state: serde_json::Value = serde_json::from_str(&debug_state(&a)).unwrap();
    let st = &state["statistics"];
    for key in [
        "session_id",
        "created_at",
        "datagrams_sent",
        "bytes_sent",
        "send_failures",
        "send_drops",
        "datagrams_received",
        "bytes_received",
        "receive_drops",
        "receive_errors",
        "avg_send_time",
        "avg_receive_time",
        "max_send_time",
        "max_receive_time",
        "avg_datagram_size",
        "min_datagram_size",
        "max_datagram_size",
        "send_success_rate",
        "receive_success_rate",
    ] {
        assert!(st.get(key).is_some(), "statistics.{key} missing: {st}");
    }
    assert!(st["created_at"].as_f64().unwrap() > 0.0);
    assert_eq!(st["min_datagram_size"], 5);
    assert_eq!(st["max_datagram_size"], 5);
}

#[test]
fn drop_rate_counts_drops_with_no_traffic_and_texts_match_the_seed() {
    // Outgoing queue of 2 on a blocked link: the third send evicts one (a send drop) while
    // nothing has been sent yet. pywebtransport divides by max(1, sent + received): 1/1 > 0.1.
    let (a, _b, link) = transport(TransportConfig {
        outgoing_high_water_mark: 2,
        ..Default::default()
    });
    link.set_blocked(true);
    for _ in 0..3 {
        a.send(b"x", 0, None, None).unwrap();
    }
    let s = a.stats();
    assert_eq!(s.datagrams_sent + s.datagrams_received, 0);
    assert_eq!(s.send_drops, 1);
    assert_eq!(
        message(&a, wtd_issue::WTD_ISSUE_HIGH_DROP_RATE).as_deref(),
        Some("High drop rate: 1/0")
    );
    // 2 of 2: usage 100 %.
    assert_eq!(
        message(&a, wtd_issue::WTD_ISSUE_OUTGOING_QUEUE_NEARLY_FULL).as_deref(),
        Some("Outgoing queue nearly full: 100.0%")
    );
}
