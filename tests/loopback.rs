//! wtd client ↔ wtd server over loopback: sessions, datagrams, close, refusals, TLS modes.

use std::time::Duration;

use wtd::endpoint::tls::{hex, Verification};
use wtd::h3::session_core::CloseCause;
use wtd::h3::wtd_draft;
use wtd::{connect, ClientConfig, Server, ServerConfig};

fn server() -> Server {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.filter = Some(Box::new(|req, _draft| {
        if req.path.starts_with("/forbidden") {
            403
        } else {
            200
        }
    }));
    Server::bind(cfg).unwrap()
}

fn url(s: &Server, path: &str) -> String {
    format!(
        "https://127.0.0.1:{}{}",
        s.local_addr().unwrap().port(),
        path
    )
}

fn pinned(s: &Server) -> ClientConfig {
    ClientConfig {
        verification: Verification::PinnedSha256(vec![s.cert_sha256()]),
        ..Default::default()
    }
}

const T: Option<Duration> = Some(Duration::from_secs(5));

/// Waits (≤ 5 s) until `count` stops changing for 100 ms: nothing is in flight any more.
fn settle(count: impl Fn() -> u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut last = count();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = count();
        if now == last {
            return;
        }
        last = now;
    }
}

#[test]
fn echo_datagrams_and_close_from_client() {
    let srv = server();
    let client = connect(&url(&srv, "/game?room=1"), &pinned(&srv)).unwrap();
    let session = srv.accept(T).unwrap();
    assert_eq!(session.request().path, "/game?room=1");
    assert_eq!(
        client.draft(),
        wtd_draft::WTD_DRAFT_15,
        "wtd advertises draft-15, the newest"
    );
    assert_eq!(session.draft(), client.draft());
    assert_eq!(client.id(), session.id());
    let max = client.max_datagram_size();
    assert!((1000..1500).contains(&max), "max {max}");
    for size in [1usize, 100, max] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        client.send_datagram(&payload).unwrap();
        let got = session.recv_datagram(T).unwrap();
        assert_eq!(&got[..], &payload[..]);
        session.send_datagram(&got).unwrap();
        assert_eq!(&client.recv_datagram(T).unwrap()[..], &payload[..]);
    }
    let too_big = vec![0u8; 65_536];
    assert_eq!(
        client.send_datagram(&too_big).unwrap_err().code,
        wtd::wtd_result::WTD_ERR_TOO_LARGE
    );
    assert_eq!(
        session
            .recv_datagram(Some(Duration::ZERO))
            .unwrap_err()
            .code,
        wtd::wtd_result::WTD_ERR_WOULD_BLOCK
    );

    client.close(42, "bye");
    let info = session.wait_closed(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (info.code, info.reason.as_str(), info.cause),
        (42, "bye", CloseCause::PeerCapsule)
    );
    assert_eq!(
        session.recv_datagram(T).unwrap_err().code,
        wtd::wtd_result::WTD_ERR_CLOSED
    );
    assert_eq!(
        client.send_datagram(b"x").unwrap_err().code,
        wtd::wtd_result::WTD_ERR_CLOSED
    );
    let st = session.stats();
    assert_eq!(
        (st.datagrams_received, st.datagrams_sent, st.datagrams_read),
        (3, 3, 3)
    );
    client.close(1, "again"); // idempotent
    assert_eq!(client.close_info().unwrap().code, 42);
}

#[test]
fn close_from_server_wakes_blocked_receiver() {
    let srv = server();
    let client = connect(&url(&srv, "/x"), &pinned(&srv)).unwrap();
    let session = srv.accept(T).unwrap();
    let c2 = client.clone();
    let waiter = std::thread::spawn(move || c2.recv_datagram(None));
    std::thread::sleep(Duration::from_millis(100));
    session.close(7, "server says bye");
    assert_eq!(
        waiter.join().unwrap().unwrap_err().code,
        wtd::wtd_result::WTD_ERR_CLOSED
    );
    let info = client.wait_closed(Duration::from_secs(5)).unwrap();
    assert_eq!((info.code, info.reason.as_str()), (7, "server says bye"));
}

#[test]
fn several_sessions_on_one_connection_route_separately() {
    let srv = server();
    let cfg = pinned(&srv);
    let a = connect(&url(&srv, "/a"), &cfg).unwrap();
    let b = wtd::endpoint::client::open_sibling(&a, "/b", &cfg).unwrap();
    let c = wtd::endpoint::client::open_sibling(&a, "/c", &cfg).unwrap();
    assert_eq!(srv.connection_count(), 1);
    let mut server_sessions: Vec<_> = (0..3).map(|_| srv.accept(T).unwrap()).collect();
    server_sessions.sort_by_key(|s| s.request().path.clone());
    for (client, server) in [
        (&a, &server_sessions[0]),
        (&b, &server_sessions[1]),
        (&c, &server_sessions[2]),
    ] {
        assert_eq!(client.id(), server.id());
        client
            .send_datagram(server.request().path.as_bytes())
            .unwrap();
        server
            .send_datagram(format!("to {}", server.request().path).as_bytes())
            .unwrap();
    }
    for (client, server) in [
        (&a, &server_sessions[0]),
        (&b, &server_sessions[1]),
        (&c, &server_sessions[2]),
    ] {
        assert_eq!(
            &server.recv_datagram(T).unwrap()[..],
            server.request().path.as_bytes()
        );
        assert_eq!(
            &client.recv_datagram(T).unwrap()[..],
            format!("to {}", server.request().path).as_bytes()
        );
    }
    // Closing one leaves the others working.
    b.close(0, "");
    server_sessions[1]
        .wait_closed(Duration::from_secs(5))
        .unwrap();
    c.send_datagram(b"still here").unwrap();
    assert_eq!(
        &server_sessions[2].recv_datagram(T).unwrap()[..],
        b"still here"
    );
}

#[test]
fn refusals_and_tls_failures() {
    let srv = server();
    let err = connect(&url(&srv, "/forbidden"), &pinned(&srv))
        .err()
        .unwrap();
    assert_eq!(err.code, wtd::wtd_result::WTD_ERR_REJECTED, "{err}");
    assert!(err.message.contains("403"), "{err}");

    let wrong = ClientConfig {
        verification: Verification::PinnedSha256(vec![[0u8; 32]]),
        ..Default::default()
    };
    let err = connect(&url(&srv, "/x"), &wrong).err().unwrap();
    assert_eq!(err.code, wtd::wtd_result::WTD_ERR_TLS, "{err}");

    let roots = ClientConfig::default();
    let err = connect(&url(&srv, "/x"), &roots).err().unwrap();
    assert_eq!(
        err.code,
        wtd::wtd_result::WTD_ERR_TLS,
        "self-signed must fail against system roots: {err}"
    );

    let insecure = ClientConfig {
        verification: Verification::DangerousNone,
        ..Default::default()
    };
    assert!(connect(&url(&srv, "/ok"), &insecure).is_ok());
    assert_eq!(
        connect("http://127.0.0.1:1/", &insecure)
            .err()
            .unwrap()
            .code,
        wtd::wtd_result::WTD_ERR_INVALID_ARGUMENT
    );
    assert!(hex(&srv.cert_sha256()).len() == 64);
}

#[test]
fn server_close_reaches_clients() {
    let srv = server();
    let client = connect(&url(&srv, "/x"), &pinned(&srv)).unwrap();
    let _s = srv.accept(T).unwrap();
    srv.close();
    let info = client.wait_closed(Duration::from_secs(5)).unwrap();
    assert_eq!(info.reason, "server shutting down");
    assert_eq!(
        srv.accept(T).err().unwrap().code,
        wtd::wtd_result::WTD_ERR_CLOSED
    );
}

#[test]
fn flood_is_bounded_and_counted() {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.incoming_capacity = 16;
    let srv = Server::bind(cfg).unwrap();
    let client = connect(&url(&srv, "/flood"), &pinned(&srv)).unwrap();
    let session = srv.accept(T).unwrap();
    let mut sent = 0u64;
    for i in 0..2000u32 {
        match client.send_datagram(&i.to_be_bytes()) {
            Ok(()) => sent += 1,
            Err(e) => assert_eq!(e.code, wtd::wtd_result::WTD_ERR_WOULD_BLOCK),
        }
    }
    settle(|| session.stats().datagrams_received);
    let st = session.stats();
    assert!(st.queued <= 16);
    assert_eq!(st.queued + st.dropped_queue_full, st.datagrams_received);
    assert!(st.datagrams_received <= sent);
    assert_eq!(client.stats().datagrams_sent, sent);
}

#[test]
fn transport_over_a_real_session() {
    use wtd::datagram::{DatagramTransport, TransportConfig};
    let srv = server();
    let client = connect(&url(&srv, "/t"), &pinned(&srv)).unwrap();
    let session = srv.accept(T).unwrap();
    let ct = DatagramTransport::for_session(&client, TransportConfig::default()).unwrap();
    let st = DatagramTransport::for_session(&session, TransportConfig::default()).unwrap();
    for i in 0..50u8 {
        ct.send(&[i; 64], (i % 3) as i32, None, None).unwrap();
    }
    let got: Vec<u8> = (0..50).map(|_| st.receive(T).unwrap().data[0]).collect();
    assert_eq!(got.len(), 50);
    assert_eq!(ct.stats().datagrams_sent, 50);
    assert_eq!(st.stats().datagrams_received, 50);
    // The throughput test measures what really left; the echo side counts what arrived.
    let echo = st.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let echoer = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(r) = echo.receive(Some(Duration::from_millis(50))) {
                let _ = echo.try_send(&r.data, 0, None);
            }
        }
    });
    let r = ct.throughput_test(Duration::from_millis(300), 200).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    echoer.join().unwrap();
    assert!(r.datagrams_sent > 100, "{r:?}");
    assert!(
        (r.throughput_bps / (r.throughput_dps * 1600.0) - 1.0).abs() < 1e-9,
        "{r:?}"
    );
    assert_eq!(
        r.errors, 0,
        "paced on queue room: nothing refused or evicted {r:?}"
    );
    // Closing the session closes both transports and wakes receivers.
    client.close(5, "done");
    assert_eq!(
        st.receive(Some(Duration::from_secs(5)))
            .err()
            .map(|e| e.code)
            .unwrap_or(wtd::wtd_result::WTD_ERR_CLOSED),
        wtd::wtd_result::WTD_ERR_CLOSED
    );
}

#[test]
fn transport_flood_keeps_memory_bounded_and_counts_every_drop() {
    use wtd::datagram::{DatagramTransport, TransportConfig};
    let srv = server();
    let client = connect(&url(&srv, "/flood"), &pinned(&srv)).unwrap();
    let session = srv.accept(T).unwrap();
    let sender = DatagramTransport::for_session(
        &client,
        TransportConfig {
            outgoing_high_water_mark: 10_000,
            ..Default::default()
        },
    )
    .unwrap();
    let receiver = DatagramTransport::for_session(
        &session,
        TransportConfig {
            incoming_high_water_mark: 32,
            ..Default::default()
        },
    )
    .unwrap();
    let payload = [0xabu8; 200];
    for _ in 0..5000 {
        sender.send(&payload, 0, None, None).unwrap();
    }
    sender.close(Some(Duration::from_secs(10))).unwrap(); // flush: everything reaches QUIC
    let sent = sender.stats().datagrams_sent;
    assert_eq!(sent + sender.stats().send_drops, 5000);
    settle(|| receiver.stats().datagrams_received);
    let r = receiver.stats();
    assert!(
        receiver.receive_buffer_size() <= 32,
        "bounded by the high water mark"
    );
    assert_eq!(
        r.datagrams_received,
        receiver.receive_buffer_size() as u64 + r.evicted_incoming,
        "{r:?}"
    );
    assert_eq!(r.receive_drops, r.evicted_incoming);
    assert!(r.datagrams_received <= sent);
    // What never arrived was lost below wtd, and QUIC accounts for it: every DATAGRAM frame the
    // server's QUIC took in reached the transport, and a shortfall shows as lost packets.
    assert_eq!(
        session.connection_stats().frame_rx.datagram,
        r.datagrams_received
    );
    let lost = client.connection_stats().path.lost_packets;
    assert!(
        r.datagrams_received == sent || lost > 0,
        "missing datagrams without QUIC loss"
    );
    println!(
        "flood: sent {sent}, arrived {}, queued {}, evicted {}, QUIC lost packets {lost}",
        r.datagrams_received,
        receiver.receive_buffer_size(),
        r.evicted_incoming
    );
}

/// Closing the last session of a client connection right after a sibling: the server sees the
/// last session's own code and reason, not a connection close — the client waits for every close
/// in flight before closing the connection (it used to close under the second capsule when the
/// first close's wait ended: 0–4 of 30 lost their code).
#[test]
fn closing_siblings_back_to_back_keeps_each_sessions_code() {
    let srv = server();
    for round in 0..20u32 {
        let first = connect(&url(&srv, "/a"), &pinned(&srv)).unwrap();
        let sibling = wtd::endpoint::client::open_sibling(&first, "/b", &pinned(&srv)).unwrap();
        let s1 = srv.accept(T).unwrap();
        let s2 = srv.accept(T).unwrap();
        let (sa, sb) = if s1.request().path == "/a" {
            (s1, s2)
        } else {
            (s2, s1)
        };
        sibling.close(7, "sibling");
        first.close(9, "last");
        let a = sa.wait_closed(Duration::from_secs(5)).unwrap();
        let b = sb.wait_closed(Duration::from_secs(5)).unwrap();
        assert_eq!(
            (a.code, a.reason.as_str()),
            (9, "last"),
            "round {round}: {a:?}"
        );
        assert_eq!(
            (b.code, b.reason.as_str()),
            (7, "sibling"),
            "round {round}: {b:?}"
        );
    }
}
