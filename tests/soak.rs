//! A bounded soak (issue 9 item 17): in rounds, 200 client sessions (25 QUIC connections × 8
//! sessions, within the server's per-address connection cap) are open at once, exchange
//! datagrams with an echoing server and close, for
//! `WTD_SOAK_SECS` seconds (default 120; CI keeps the default, a longer soak sets it higher).
//! Resident memory and open file descriptors are printed after a warm-up and after every round,
//! and must stay flat within a margin. Each measurement waits until the round's connections are
//! gone (fd count back to the baseline) and returns freed heap to the OS first (glibc
//! `malloc_trim`), so allocator caching is not mistaken for growth.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wtd::endpoint::client::open_sibling;
use wtd::endpoint::tls::Verification;
use wtd::session::SessionCallbacks;
use wtd::{connect, ClientConfig, Server, ServerConfig};

const WORKERS: usize = 5;
const CONNECTIONS_PER_WORKER: usize = 5;
const SESSIONS_PER_CONNECTION: usize = 8;
const SESSIONS_PER_ROUND: usize = WORKERS * CONNECTIONS_PER_WORKER * SESSIONS_PER_CONNECTION;
const DATAGRAMS_PER_SESSION: usize = 10;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// One round: WORKERS threads together open SESSIONS_PER_ROUND sessions and keep them all open
/// while each sends datagrams and waits for their echoes; then all close and wait until
/// closed. Returns echoes received.
fn round(url: &str, cfg: &ClientConfig) -> u64 {
    let echoes = Arc::new(AtomicU64::new(0));
    let all_open = std::sync::Barrier::new(WORKERS);
    std::thread::scope(|scope| {
        for w in 0..WORKERS {
            let (echoes, all_open) = (echoes.clone(), &all_open);
            scope.spawn(move || {
                let t0 = Instant::now();
                let mut sessions = Vec::new();
                for _ in 0..CONNECTIONS_PER_WORKER {
                    let first = connect(url, cfg).expect("connect");
                    for _ in 1..SESSIONS_PER_CONNECTION {
                        sessions.push(open_sibling(&first, "/soak", cfg).expect("open_sibling"));
                    }
                    sessions.push(first);
                }
                let t1 = Instant::now();
                all_open.wait();
                // Ping-pong on every open session: a burst from 200 connections at once would
                // overflow the server's socket buffer, and this test is about leaks.
                for s in &sessions {
                    let mut got = 0;
                    for i in 0..DATAGRAMS_PER_SESSION {
                        if s.send_datagram(&[i as u8; 64]).is_ok()
                            && s.recv_datagram(Some(Duration::from_secs(1))).is_ok()
                        {
                            got += 1;
                        }
                    }
                    echoes.fetch_add(got, Ordering::Relaxed);
                }
                let t2 = Instant::now();
                for s in &sessions {
                    s.close(0, "soak");
                }
                for s in &sessions {
                    let _ = s.wait_closed(Duration::from_secs(5));
                }
                if w == 0 && std::env::var("WTD_SOAK_VERBOSE").is_ok() {
                    println!(
                        "  worker 0: open {:?}, traffic {:?}, close {:?}",
                        t1 - t0,
                        t2 - t1,
                        t2.elapsed()
                    );
                }
            });
        }
    });
    echoes.load(Ordering::Relaxed)
}

/// Waits (≤ 10 s) until at most `fds` descriptors are open, returns freed heap to the OS, then
/// measures (RSS KiB, open fds).
fn quiesced(fds: usize) -> (u64, usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds() > fds && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    (rss_kib(), open_fds())
}

#[test]
fn sessions_open_and_close_in_a_loop_without_growing_memory_or_fds() {
    let secs: u64 = std::env::var("WTD_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let mut scfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    scfg.on_session = Some(Box::new(|s| {
        // Echo through a weak reference: the callback must not keep its session alive.
        let core = Arc::downgrade(s.core());
        s.set_callbacks(Some(SessionCallbacks {
            on_datagram: Some(Box::new(move |d| {
                if let Some(c) = core.upgrade() {
                    let _ = c.send_datagram(&d);
                }
            })),
            ..Default::default()
        }));
    }));
    let server = Server::bind(scfg).unwrap();
    let url = format!(
        "https://127.0.0.1:{}/soak",
        server.local_addr().unwrap().port()
    );
    let cfg = ClientConfig {
        verification: Verification::PinnedSha256(vec![server.cert_sha256()]),
        ..Default::default()
    };

    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    // Warm-up: two rounds (allocator arenas, runtime threads, caches).
    let mut sessions = 0usize;
    let mut echoes = 0u64;
    for _ in 0..2 {
        echoes += round(&url, &cfg);
        sessions += SESSIONS_PER_ROUND;
    }
    let idle_fds = open_fds();
    let (rss0, fds0) = quiesced(idle_fds);
    println!(
        "after warm-up ({sessions} sessions, {:?}): RSS {rss0} KiB, {fds0} open fds",
        start.elapsed()
    );
    let mut rounds = 0;
    let mut peak_rss = rss0;
    let mut samples = Vec::new();
    while Instant::now() < deadline || rounds < 2 {
        echoes += round(&url, &cfg);
        sessions += SESSIONS_PER_ROUND;
        rounds += 1;
        let (rss, fds) = quiesced(fds0);
        peak_rss = peak_rss.max(rss);
        samples.push(rss);
        println!(
            "round {rounds}: {sessions} sessions, {:?}: RSS {rss} KiB, {fds} open fds",
            start.elapsed()
        );
    }
    let (rss1, fds1) = quiesced(fds0);
    println!(
        "end ({sessions} sessions, {echoes} echoes, {:?}): RSS {rss1} KiB (peak {peak_rss}), \
         {fds1} open fds; warm-up RSS {rss0} KiB, {fds0} fds",
        start.elapsed()
    );
    assert!(
        echoes as f64 >= 0.9 * (sessions * DATAGRAMS_PER_SESSION) as f64,
        "traffic flowed: {echoes} echoes for {sessions} sessions"
    );
    assert!(
        fds1 <= fds0 + 8,
        "open file descriptors grew from {fds0} to {fds1}"
    );
    // Median of the first and of the last five rounds: single samples are noisy (allocator),
    // a leak grows steadily.
    let median = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let k = samples.len().min(5);
    let (early, late) = (median(&samples[..k]), median(&samples[samples.len() - k..]));
    let margin = (early / 4).max(8 * 1024);
    println!("RSS median of the first {k} rounds {early} KiB, of the last {k} {late} KiB");
    assert!(
        late <= early + margin,
        "RSS grew from {early} KiB to {late} KiB over {rounds} rounds (margin {margin} KiB)"
    );
}
