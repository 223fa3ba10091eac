//! Send coalescing (`wtd::set_send_coalescing`, `wtd_set_send_coalescing`): application-thread
//! sends are collected and handed to the network once per interval, without a wake-up per burst.
//! The setting is process-wide, so these tests live in their own binary and run one at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wtd::endpoint::tls::Verification;
use wtd::session::{Session, SessionCallbacks};
use wtd::{connect, ClientConfig, Server, ServerConfig};

const T: Option<Duration> = Some(Duration::from_secs(5));

/// The tests change a process-wide setting: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn counting_pair() -> (Server, Session, Session, Arc<AtomicUsize>) {
    let srv = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let cfg = ClientConfig {
        verification: Verification::PinnedSha256(vec![srv.cert_sha256()]),
        ..Default::default()
    };
    let url = format!("https://127.0.0.1:{}/c", srv.local_addr().unwrap().port());
    let client = connect(&url, &cfg).unwrap();
    let server = srv.accept(T).unwrap();
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    server.set_callbacks(Some(SessionCallbacks {
        on_datagrams: Some(Box::new(move |batch, _| {
            g.fetch_add(batch.len(), Ordering::SeqCst);
            batch.clear();
            None
        })),
        ..Default::default()
    }));
    (srv, client, server, got)
}

fn wait_for(got: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} arrived",
            got.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sends `bursts` bursts of 8 datagrams, `gap` apart; returns the connection's flush rounds.
fn send_bursts(client: &Session, got: &AtomicUsize, bursts: usize, gap: Duration) -> u64 {
    let before = client.connection_datapath().send_flushes;
    for _ in 0..bursts {
        for _ in 0..8 {
            client.send_datagram(&[7u8; 64]).unwrap();
        }
        std::thread::sleep(gap);
    }
    wait_for(got, bursts * 8);
    client.connection_datapath().send_flushes - before
}

#[test]
fn bursts_within_one_interval_leave_in_one_flush_and_all_arrive() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (_srv, client, _server, got) = counting_pair();

    // Off (default): every burst is handed over on its own (one flush round each).
    wtd::set_send_coalescing(Duration::ZERO).unwrap();
    let rounds_off = send_bursts(&client, &got, 20, Duration::from_millis(2));
    // Each burst has its own round unless the runtime thread was descheduled for > 2 ms (a
    // loaded CI machine): demand half.
    assert!(
        rounds_off >= 10,
        "without coalescing 20 bursts took {rounds_off} flushes"
    );

    // 50 ms: 20 bursts 1 ms apart fit in very few intervals.
    got.store(0, Ordering::SeqCst);
    wtd::set_send_coalescing(Duration::from_millis(50)).unwrap();
    assert_eq!(wtd::send_coalescing(), Duration::from_millis(50));
    let rounds_on = send_bursts(&client, &got, 20, Duration::from_millis(1));
    assert!(
        rounds_on <= 6,
        "with a 50 ms interval 20 bursts over ~20 ms took {rounds_on} flushes"
    );
    wtd::set_send_coalescing(Duration::ZERO).unwrap();
}

/// After IDLE_TICKS empty intervals the flusher stops ticking; the next send must wake it
/// (no send may be stranded between "stopped ticking" and "waiting for a wake-up").
#[test]
fn a_send_after_the_flusher_went_idle_still_leaves() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (_srv, client, _server, got) = counting_pair();
    wtd::set_send_coalescing(Duration::from_millis(1)).unwrap();
    for round in 1..=5 {
        client.send_datagram(&[1u8; 32]).unwrap();
        wait_for(&got, round);
        // 100 idle intervals of 1 ms, and then some: the flusher waits for a wake-up again.
        std::thread::sleep(Duration::from_millis(150));
    }
    // Many sends racing the flusher's stop: every one arrives.
    for i in 0..200 {
        client.send_datagram(&[2u8; 32]).unwrap();
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(101));
        }
    }
    wait_for(&got, 205);
    wtd::set_send_coalescing(Duration::ZERO).unwrap();
}

#[test]
fn an_interval_above_the_maximum_is_refused() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let e = wtd::set_send_coalescing(Duration::from_millis(101)).unwrap_err();
    assert_eq!(e.code, wtd::wtd_result::WTD_ERR_INVALID_ARGUMENT);
    assert!(e.message.contains("maximum"), "{}", e.message);
    assert_eq!(wtd::send_coalescing(), Duration::ZERO);
}
