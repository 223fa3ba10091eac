//! Engine-owned mode (`wtd_poll`, issue 8): wtd's I/O and callbacks run on the thread that
//! polls, nothing runs without it, and blocking calls still make progress. The runtime mode is
//! process-global, so these tests live in their own binary and run one at a time.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use wtd::endpoint::tls::Verification;
use wtd::runtime::{self, Mode};
use wtd::session::SessionCallbacks;
use wtd::{connect, wtd_result, ClientConfig, Server, ServerConfig, Session};

const T: Option<Duration> = Some(Duration::from_secs(5));

/// Serialises the tests: each one puts the process in poll mode and polls.
static SERIAL: Mutex<()> = Mutex::new(());

fn poll_mode() -> MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    runtime::set_mode(Mode::Poll).unwrap();
    g
}

fn pair() -> (Server, ClientConfig, String) {
    let srv = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let cfg = ClientConfig {
        verification: Verification::PinnedSha256(vec![srv.cert_sha256()]),
        ..Default::default()
    };
    let url = format!(
        "https://127.0.0.1:{}/poll",
        srv.local_addr().unwrap().port()
    );
    (srv, cfg, url)
}

/// A server with one client session connected to it: (server, client side, server side).
fn connected() -> (Server, Session, Session) {
    let (srv, cfg, url) = pair();
    let client = connect(&url, &cfg).unwrap();
    let server = srv.accept(T).unwrap();
    (srv, client, server)
}

/// Polls (10 ms at a time) until `cond` holds, at most 10 s; returns the events polled.
fn poll_until(what: &str, mut cond: impl FnMut() -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = 0;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out polling for {what}");
        events += runtime::poll(Some(Duration::from_millis(10))).unwrap();
    }
    events
}

/// Threads of this process named like wtd's runtime threads.
fn wtd_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|n| n.trim() == "wtd-rt")
        })
        .count()
}

#[test]
fn poll_is_refused_in_threads_mode() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    runtime::shutdown();
    runtime::set_mode(Mode::Threads).unwrap();
    let e = runtime::poll(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(e.code, wtd_result::WTD_ERR_INVALID_STATE);
    assert!(e.message.contains("WTD_RUNTIME_POLL"), "{}", e.message);
    // Switching modes is refused while the runtime runs in the other one.
    runtime::handle().unwrap();
    let e = runtime::set_mode(Mode::Poll).unwrap_err();
    assert_eq!(e.code, wtd_result::WTD_ERR_INVALID_STATE);
    runtime::shutdown();
    runtime::set_mode(Mode::Poll).unwrap();
    assert_eq!(runtime::mode(), Mode::Poll);
}

/// One thread runs server and client: connect and accept drive the runtime while they block,
/// datagrams are echoed by a server callback that runs inside `poll` on this thread, and
/// nothing moves while nobody polls.
#[test]
fn one_thread_echoes_through_callbacks_run_inside_poll() {
    let _g = poll_mode();
    let (srv, client, server) = connected();
    assert_eq!(wtd_threads(), 0, "poll mode starts no wtd threads");

    let me = std::thread::current().id();
    let threads = Arc::new(Mutex::new(Vec::<(ThreadId, bool)>::new()));
    let refusals = Arc::new(Mutex::new(Vec::<wtd_result>::new()));
    let echoed = Arc::new(AtomicUsize::new(0));
    let (seen, refused, count) = (threads.clone(), refusals.clone(), echoed.clone());
    let (echo_to, peer) = (server.clone(), client.clone());
    server.set_callbacks(Some(SessionCallbacks {
        on_datagrams: Some(Box::new(move |batch, _| {
            seen.lock()
                .unwrap()
                .push((std::thread::current().id(), runtime::on_runtime_thread()));
            if refused.lock().unwrap().is_empty() {
                // Blocking calls and a nested poll are refused inside a callback.
                let mut r = refused.lock().unwrap();
                r.push(
                    peer.recv_datagram(Some(Duration::from_millis(100)))
                        .unwrap_err()
                        .code,
                );
                r.push(runtime::poll(Some(Duration::ZERO)).unwrap_err().code);
            }
            for d in batch.drain(..) {
                echo_to.send_datagram(&d).unwrap();
                count.fetch_add(1, Ordering::SeqCst);
            }
            None
        })),
        ..Default::default()
    }));

    const N: usize = 50;
    for i in 0..N as u32 {
        client.send_datagram(&i.to_le_bytes()).unwrap();
    }
    // Nobody polls: nothing is sent, received or called back.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(echoed.load(Ordering::SeqCst), 0);
    assert_eq!(client.stats().datagrams_received, 0);

    let mut back = Vec::new();
    let events = poll_until("the echoes", || {
        let mut got = Vec::new();
        client.recv_batch_with(64, |_, d| {
            got.push(u32::from_le_bytes(d.try_into().unwrap()));
            true
        });
        back.extend(got);
        back.len() == N
    });
    // Each datagram counts once where it reached a session: the server's callback and the
    // client's queue.
    assert!(events >= 2 * N as u64, "{events} events");
    assert_eq!(
        back,
        (0..N as u32).collect::<Vec<_>>(),
        "in order, none lost"
    );
    assert_eq!(echoed.load(Ordering::SeqCst), N);
    let threads = threads.lock().unwrap();
    assert!(!threads.is_empty());
    assert!(
        threads.iter().all(|&(t, on_rt)| t == me && on_rt),
        "every callback ran inside poll on the polling thread: {threads:?}"
    );
    assert_eq!(
        *refusals.lock().unwrap(),
        [wtd_result::WTD_ERR_INVALID_STATE; 2]
    );
    assert_eq!(wtd_threads(), 0);

    // Close codes travel, and the server's close notice runs inside poll too.
    let closed_on = Arc::new(Mutex::new(None));
    let c = closed_on.clone();
    server.set_callbacks(Some(SessionCallbacks {
        on_closed: Some(Box::new(move |info| {
            *c.lock().unwrap() =
                Some((info.code, info.reason.clone(), std::thread::current().id()));
        })),
        ..Default::default()
    }));
    client.close(4242, "bye");
    poll_until("the close", || closed_on.lock().unwrap().is_some());
    let (code, reason, thread) = closed_on.lock().unwrap().clone().unwrap();
    assert_eq!((code, reason.as_str(), thread), (4242, "bye", me));
    assert_eq!(server.close_info().unwrap().code, 4242);
    srv.close();
}

/// `poll` returns at once with nothing to do, waits up to its timeout, and returns early when
/// something arrives (here sent by another thread while this one waits in `poll`).
#[test]
fn poll_waits_for_events_and_returns_when_one_arrives() {
    let _g = poll_mode();
    let (srv, client, server) = connected();
    // Let the handshake's tail (tickets, ACKs) settle.
    runtime::poll(Some(Duration::from_millis(50))).unwrap();

    let t = Instant::now();
    assert_eq!(runtime::poll(Some(Duration::ZERO)).unwrap(), 0);
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
    let t = Instant::now();
    assert_eq!(runtime::poll(Some(Duration::from_millis(60))).unwrap(), 0);
    assert!(
        t.elapsed() >= Duration::from_millis(55),
        "{:?}",
        t.elapsed()
    );

    let sender = client.clone();
    let th = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        sender.send_datagram(b"wake").unwrap();
    });
    let t = Instant::now();
    let events = runtime::poll(Some(Duration::from_secs(5))).unwrap();
    let waited = t.elapsed();
    th.join().unwrap();
    assert!(events >= 1, "woke without an event after {waited:?}");
    assert!(
        waited >= Duration::from_millis(90) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(
        &server.recv_datagram(Some(Duration::ZERO)).unwrap()[..],
        b"wake"
    );
    srv.close();
}

/// Blocking calls on a second thread (connect, accept, receive, close wait) complete while the
/// first thread polls, and also with nobody polling (they drive the runtime themselves).
#[test]
fn blocking_calls_work_beside_a_polling_thread_and_without_one() {
    let _g = poll_mode();
    let (srv, cfg, url) = pair();
    let srv = Arc::new(srv);
    let done = Arc::new(AtomicBool::new(false));
    let (s2, d2) = (srv.clone(), done.clone());
    let worker = std::thread::spawn(move || -> (Session, Session) {
        let client = connect(&url, &cfg).unwrap();
        let server = s2.accept(T).unwrap();
        client.send_datagram(b"one").unwrap();
        assert_eq!(&server.recv_datagram(T).unwrap()[..], b"one");
        server.send_datagram(b"two").unwrap();
        assert_eq!(&client.recv_datagram(T).unwrap()[..], b"two");
        client.close(7, "done");
        assert_eq!(server.wait_closed(Duration::from_secs(5)).unwrap().code, 7);
        d2.store(true, Ordering::SeqCst);
        (client, server)
    });
    poll_until("the second thread", || done.load(Ordering::SeqCst));
    let (_client, _server) = worker.join().unwrap();

    // Nobody polls now: the blocking calls drive the runtime themselves.
    let cfg = ClientConfig {
        verification: Verification::PinnedSha256(vec![srv.cert_sha256()]),
        ..Default::default()
    };
    let url = format!(
        "https://127.0.0.1:{}/alone",
        srv.local_addr().unwrap().port()
    );
    let client = connect(&url, &cfg).unwrap();
    let server = srv.accept(T).unwrap();
    client.send_datagram(b"three").unwrap();
    assert_eq!(&server.recv_datagram(T).unwrap()[..], b"three");
    assert_eq!(
        server
            .recv_datagram(Some(Duration::from_millis(50)))
            .unwrap_err()
            .code,
        wtd_result::WTD_ERR_TIMEOUT
    );
    server.close(9, "");
    assert_eq!(client.wait_closed(Duration::from_secs(5)).unwrap().code, 9);
    srv.close();
}

/// A session closed locally is closed at once for everything that watches it: its readiness
/// descriptor turns readable without a poll (the close notice reaches the queue only at the
/// next poll), and stays readable after the queue is emptied.
#[test]
fn a_local_close_makes_the_readiness_descriptor_readable_without_a_poll() {
    let _g = poll_mode();
    let (srv, client, server) = connected();
    server.send_datagram(b"queued").unwrap();
    poll_until("the datagram", || client.stats().queued == 1);
    let fd = client.readiness_fd().unwrap();
    let readable = || {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    };
    assert_eq!(
        &client.recv_datagram(Some(Duration::ZERO)).unwrap()[..],
        b"queued"
    );
    assert!(!readable(), "nothing queued, open: not readable");
    client.close(0, "bye");
    assert!(readable(), "closed locally: readable before any poll");
    assert_eq!(
        client.recv_datagram(Some(Duration::ZERO)).unwrap_err().code,
        wtd_result::WTD_ERR_CLOSED
    );
    assert!(readable(), "still readable after a receive found it closed");
    poll_until("the server to see the close", || server.is_closed());
    assert!(readable());
    srv.close();
}
