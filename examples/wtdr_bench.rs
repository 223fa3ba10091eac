//! wtdr_bench — the "wtd in Rust (no FFI)" column of scripts/bench.sh: the same measurements as
//! bench/c/wtd_bench.c through wtd's Rust API, so the table separates the cost of the C boundary
//! from the cost of wtd's core. Prints the same JSON lines (servers first print
//! "READY <port> <cert-sha256-hex>").
//!
//!   wtdr_bench server count|echo
//!   wtdr_bench client blast URL HASH SIZE SECS
//!   wtdr_bench client ping URL HASH SIZE COUNT
//!   wtdr_bench client ffi URL HASH SIZE BURST ROUNDS     (send cost per call, no FFI)

use std::time::{Duration, Instant};

use wtd::endpoint::tls::Verification;
use wtd::session::SessionCallbacks;
use wtd::{connect, wtd_result, ClientConfig, Server, ServerConfig, Session};

fn cpu_us() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn server() -> Server {
    let srv = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap())).expect("bind");
    let hash: String = srv
        .cert_sha256()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("READY {} {hash}", srv.local_addr().unwrap().port());
    srv
}

fn server_count() {
    let srv = server();
    let s = srv.accept(Some(Duration::from_secs(15))).expect("accept");
    let mut store = vec![[0u8; 2048]; 64];
    let (mut n, mut bytes, mut first, mut last) = (0u64, 0u64, None::<Instant>, Instant::now());
    let cpu0 = cpu_us();
    loop {
        let got = s.recv_batch_with(64, |i, d| {
            store[i][..d.len()].copy_from_slice(d);
            bytes += d.len() as u64;
            true
        });
        let got = if got == 0 {
            let wait = if first.is_some() { 500 } else { 15_000 };
            let mut needed = 0;
            match s.recv_datagram_into(
                &mut store[0],
                Some(Duration::from_millis(wait)),
                &mut needed,
            ) {
                Ok(len) => {
                    bytes += len as u64;
                    1
                }
                Err(_) => break,
            }
        } else {
            got
        };
        n += got as u64;
        last = Instant::now();
        first.get_or_insert(last);
    }
    let cpu = cpu_us() - cpu0;
    let st = s.stats();
    let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
    println!(
        "{{\"received\":{n},\"bytes\":{bytes},\"secs\":{secs:.6},\"cpu_us\":{cpu},\"receiver_queue_drops\":{}}}",
        st.dropped_queue_full
    );
}

/// Echoes from the datagram callback until the process is terminated (SIGTERM's default action).
fn server_echo() {
    let srv = server();
    let mut sessions = Vec::new();
    loop {
        if let Ok(s) = srv.accept(Some(Duration::from_millis(100))) {
            let echo = s.clone();
            s.set_callbacks(Some(SessionCallbacks {
                on_datagram: Some(Box::new(move |d| {
                    let _ = echo.send_datagram(&d);
                })),
                ..Default::default()
            }));
            sessions.push(s);
        }
    }
}

fn client(url: &str, hash_hex: &str) -> Session {
    let hash: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hash_hex[2 * i..2 * i + 2], 16).expect("hash hex"))
        .collect();
    let cfg = ClientConfig {
        verification: Verification::PinnedSha256(vec![hash.try_into().unwrap()]),
        ..Default::default()
    };
    connect(url, &cfg).expect("connect")
}

fn blast(s: &Session, size: usize, secs: f64) {
    let p: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let (mut accepted, mut would_block) = (0u64, 0u64);
    let cpu0 = cpu_us();
    let t0 = Instant::now();
    let end = Duration::from_secs_f64(secs);
    while t0.elapsed() < end {
        for _ in 0..64 {
            loop {
                match s.send_datagram(&p) {
                    Ok(()) => break,
                    Err(e) if e.code == wtd_result::WTD_ERR_WOULD_BLOCK => {
                        // As the C blaster: give the CPU back (wtd's runtime threads share it).
                        would_block += 1;
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("send: {e}"),
                }
            }
            accepted += 1;
        }
    }
    let send_secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "{{\"accepted\":{accepted},\"secs\":{send_secs:.6},\"cpu_us\":{},\"would_block\":{would_block},\"failures\":0}}",
        cpu_us() - cpu0
    );
}

fn ping(s: &Session, size: usize, count: usize) {
    let warm = 100;
    let mut p = vec![0u8; size];
    let mut rtt = Vec::with_capacity(count);
    let mut t_all = Instant::now();
    let mut lost = 0u64;
    for i in 0..count + warm {
        if i == warm {
            t_all = Instant::now();
        }
        p[..4].copy_from_slice(&(i as u32).to_le_bytes());
        let t = Instant::now();
        while s.send_datagram(&p).is_err() {}
        loop {
            match s.recv_datagram(Some(Duration::from_secs(1))) {
                Ok(d) if d[..4] == p[..4] => {
                    if i >= warm {
                        rtt.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    break;
                }
                Ok(_) => continue,
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    let elapsed = t_all.elapsed().as_secs_f64();
    rtt.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |q: f64| rtt[((rtt.len() as f64 * q) as usize).min(rtt.len() - 1)];
    let mean = rtt.iter().sum::<f64>() / rtt.len() as f64;
    println!(
        "{{\"samples\":{},\"lost\":{lost},\"p50_us\":{:.1},\"p99_us\":{:.1},\"mean_us\":{mean:.1},\"rate\":{:.1}}}",
        rtt.len(),
        pct(0.5),
        pct(0.99),
        rtt.len() as f64 / elapsed
    );
}

fn thread_cpu_ns() -> u64 {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime fills the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn send_cost(s: &Session, size: usize, burst: usize, rounds: usize) {
    let p = vec![7u8; size];
    let (mut total_ns, mut cpu_ns, mut ok, mut blocked) = (0u128, 0u64, 0u64, 0u64);
    for _ in 0..rounds {
        // The thread-CPU clock is a system call: read it outside the wall-clock window.
        let c = thread_cpu_ns();
        let t = Instant::now();
        for _ in 0..burst {
            match s.send_datagram(&p) {
                Ok(()) => ok += 1,
                Err(_) => blocked += 1,
            }
        }
        total_ns += t.elapsed().as_nanos();
        cpu_ns += thread_cpu_ns() - c;
        std::thread::sleep(Duration::from_millis(2));
    }
    let calls = (burst * rounds) as f64;
    println!(
        "{{\"session_send_ns\":{:.1},\"thread_cpu_ns\":{:.1},\"ok\":{ok},\"blocked\":{blocked}}}",
        total_ns as f64 / calls,
        cpu_ns as f64 / calls
    );
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize| a.get(i).map(String::as_str).unwrap_or("");
    match (arg(1), arg(2)) {
        ("server", "count") => server_count(),
        ("server", "echo") => server_echo(),
        ("client", mode) => {
            let s = client(arg(3), arg(4));
            let size: usize = arg(5).parse().expect("SIZE");
            match mode {
                "blast" => blast(&s, size, arg(6).parse().expect("SECS")),
                "ping" => ping(&s, size, arg(6).parse().expect("COUNT")),
                "ffi" => send_cost(
                    &s,
                    size,
                    arg(6).parse().expect("BURST"),
                    arg(7).parse().expect("ROUNDS"),
                ),
                _ => panic!("unknown client mode {mode}"),
            }
            s.close(0, "done");
            let _ = s.wait_closed(Duration::from_secs(1));
        }
        _ => {
            eprintln!("usage: see the comment at the top of examples/wtdr_bench.rs");
            std::process::exit(2);
        }
    }
}
