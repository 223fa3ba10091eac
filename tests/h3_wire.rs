//! A hand-driven raw HTTP/3 peer against wtd's server: real peers' bytes (WIRE-FACTS) must work,
//! malformed input must close the connection with the exact RFC 9114 / 9204 / 9297 code, and
//! refused or odd-but-legal input must leave the connection usable.

mod common;

use std::future::Future;
use std::time::Duration;

use common::raw_peer::*;
use wtd::h3::errors::*;
use wtd::h3::session_core::CloseCause;
use wtd::h3::settings::{self as st};
use wtd::h3::{frame, wtd_draft};
use wtd::ServerConfig;

/// Runs one raw-peer scenario in its own tokio runtime (wtd's blocking API stays off it).
fn wire<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// A minimal client SETTINGS payload (H3_DATAGRAM and draft-02 WebTransport).
fn basic_settings() -> Vec<u8> {
    settings_payload(&[(st::H3_DATAGRAM, 1), (st::ENABLE_WEBTRANSPORT, 1)])
}

/// Connects with [`basic_settings`] and opens a Chromium-style session on `path`; returns the
/// peer, its control stream (kept open) and the CONNECT stream.
async fn session(
    addr: std::net::SocketAddr,
    path: &str,
) -> (
    RawPeer,
    quinn::SendStream,
    quinn::SendStream,
    quinn::RecvStream,
) {
    let (peer, control) = RawPeer::with_settings(addr, &basic_settings()).await;
    let (send, recv, resp) = peer.request(&chromium_connect(path, "webtransport")).await;
    assert_eq!(status(&resp), Some(200), "{resp:?}");
    (peer, control, send, recv)
}

/// Connects, opens a control stream with `settings`, then runs `then`; returns wtd's close code.
async fn close_code_for<Fut: Future<Output = ()>>(
    addr: std::net::SocketAddr,
    settings: &[u8],
    then: impl FnOnce(RawPeer, quinn::SendStream) -> Fut,
) -> u64 {
    let (peer, control) = RawPeer::with_settings(addr, settings).await;
    let conn = peer.conn.clone();
    then(peer, control).await;
    match tokio::time::timeout(T, conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => c.error_code.into_inner(),
        other => panic!("expected an application close, got {other:?}"),
    }
}

/// Keeps streams open until the connection closes (dropping a quinn SendStream finishes it,
/// which on a critical stream would itself be an error).
async fn hold(peer: RawPeer, streams: Vec<quinn::SendStream>) {
    let _ = tokio::time::timeout(T, peer.conn.closed()).await;
    drop(streams);
}

// ------------------------------------------------------------------------------------------------
// Real peers' bytes

#[test]
fn chromium_like_peer() {
    let srv = EchoServer::start();
    wire(async {
        // SETTINGS byte for byte as Chromium 156 sends them, plus its GREASE pair.
        let mut settings = hex(CHROMIUM_SETTINGS);
        settings.extend(vi(0x5_69cc_8f05));
        settings.extend(vi(2_328_412_238));
        let (peer, mut control) = RawPeer::with_settings(srv.addr, &settings).await;
        // GREASE frame on the control stream, QPACK streams (encoder: Set Dynamic Table
        // Capacity 0), a GREASE unidirectional stream with junk.
        control
            .write_all(&frame_bytes(0x21, b"grease"))
            .await
            .unwrap();
        let encoder = peer.open_uni(UNI_QPACK_ENCODER, &[0x20]).await;
        let decoder = peer.open_uni(UNI_QPACK_DECODER, &[]).await;
        let mut grease = peer.open_uni(0x1f * 7 + 0x21, b"junk junk").await;
        let _ = grease.finish();

        let server = peer.server_settings().await;
        assert_eq!(server.get(st::QPACK_MAX_TABLE_CAPACITY), Some(0));
        assert!(
            server.is_set(st::ENABLE_WEBTRANSPORT),
            "Chromium needs 0x2b603742"
        );
        assert!(server.supports_datagrams());
        assert!(
            peer.conn.max_datagram_size().is_some(),
            "datagram TP from wtd"
        );

        let (mut send, mut recv, resp) = peer
            .request(&chromium_connect("/echo", "webtransport"))
            .await;
        assert_eq!(status(&resp), Some(200));
        assert!(resp
            .iter()
            .any(|(n, v)| n == "sec-webtransport-http3-draft" && v == "draft02"));
        assert!(peer.echo(&hex(WIRECAP_DATAGRAM)).await, "datagram echo");

        // Close capsule inside a DATA frame + FIN, as Chromium does.
        send.write_all(&hex(CLOSE_42_BYE_FRAMED)).await.unwrap();
        send.finish().unwrap();
        let end = srv.next_end();
        assert_eq!(end.path, "/echo");
        assert_eq!(end.draft, wtd_draft::WTD_DRAFT_02);
        assert_eq!(
            (end.info.code, end.info.reason.as_str(), end.info.cause),
            (42, "bye", CloseCause::PeerCapsule)
        );
        // wtd answers with FIN on the CONNECT stream and keeps the connection (Chromium does).
        let rest = tokio::time::timeout(T, recv.read_to_end(1024))
            .await
            .unwrap()
            .unwrap();
        assert!(rest.is_empty(), "{rest:?}");
        assert!(peer.alive_after(Duration::from_millis(300)).await);
        drop((control, encoder, decoder));
    });
}

#[test]
fn pywt061_like_peer_raw_close_capsule() {
    let srv = EchoServer::start();
    wire(async {
        let (peer, control) = RawPeer::with_settings(srv.addr, &hex(PYWT061_SETTINGS)).await;
        // pywt061 sets capacity 4096 on its encoder stream only once it saw our SETTINGS (0), so
        // it sends nothing there; header order and `:authority` without port as it sends them.
        let fields = [
            (":method", "CONNECT"),
            (":protocol", "webtransport"),
            (":scheme", "https"),
            (":path", "/echo"),
            (":authority", "localhost"),
        ];
        let (mut send, _recv, resp) = peer.request(&fields).await;
        assert_eq!(status(&resp), Some(200));
        assert!(peer.echo(&hex(WIRECAP_DATAGRAM)).await);
        send.write_all(&hex(CLOSE_42_BYE_RAW)).await.unwrap();
        send.finish().unwrap();
        let end = srv.next_end();
        assert_eq!(end.draft, wtd_draft::WTD_DRAFT_13);
        assert_eq!(
            (end.info.code, end.info.reason.as_str(), end.info.cause),
            (42, "bye", CloseCause::PeerCapsule)
        );
        drop(control);
    });
}

#[test]
fn pywt021_like_peer_webtransport_h3() {
    let srv = EchoServer::start();
    wire(async {
        let (peer, control) = RawPeer::with_settings(srv.addr, &hex(PYWT021_SETTINGS)).await;
        let fields = [
            (":method", "CONNECT"),
            (":scheme", "https"),
            (":authority", "127.0.0.1:4433"),
            (":path", "/echo"),
            (":protocol", "webtransport-h3"),
            ("user-agent", "PyWebTransport/0.21.1"),
        ];
        let (mut send, _recv, resp) = peer.request(&fields).await;
        assert_eq!(status(&resp), Some(200));
        assert!(peer.echo(&hex(WIRECAP_DATAGRAM)).await);
        send.write_all(&hex(CLOSE_42_BYE_FRAMED)).await.unwrap();
        send.finish().unwrap();
        let end = srv.next_end();
        assert_eq!(end.draft, wtd_draft::WTD_DRAFT_15);
        assert_eq!((end.info.code, end.info.reason.as_str()), (42, "bye"));
        drop(control);
    });
}

// ------------------------------------------------------------------------------------------------
// Control stream and SETTINGS

#[test]
fn first_control_frame_not_settings_is_missing_settings() {
    let srv = EchoServer::start();
    // GOAWAY first, and a GREASE frame first (ignorable anywhere else, but not before SETTINGS).
    for ty in [frame::GOAWAY, 0x21] {
        let code = wire(async {
            let peer = RawPeer::connect(srv.addr).await;
            let s = peer.open_uni(UNI_CONTROL, &frame_bytes(ty, &[0])).await;
            let code = peer.close_code().await;
            drop(s);
            code
        });
        assert_eq!(code, H3_MISSING_SETTINGS, "frame 0x{ty:x}"); // 0x10a
    }
}

#[test]
fn second_settings_is_frame_unexpected() {
    let srv = EchoServer::start();
    let code = wire(close_code_for(
        srv.addr,
        &basic_settings(),
        |peer, mut c| async move {
            c.write_all(&frame_bytes(frame::SETTINGS, &basic_settings()))
                .await
                .unwrap();
            hold(peer, vec![c]).await;
        },
    ));
    assert_eq!(code, H3_FRAME_UNEXPECTED); // 0x105
}

#[test]
fn bad_settings_are_settings_error() {
    let srv = EchoServer::start();
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "duplicate id",
            settings_payload(&[(st::H3_DATAGRAM, 1), (0x7, 0), (st::H3_DATAGRAM, 1)]),
        ),
        ("HTTP/2 id 0x2", settings_payload(&[(0x2, 1)])),
        ("H3_DATAGRAM=2", settings_payload(&[(st::H3_DATAGRAM, 2)])),
        ("truncated pair", hex("33")),
    ];
    for (what, payload) in cases {
        let code = wire(close_code_for(srv.addr, &payload, |peer, c| {
            hold(peer, vec![c])
        }));
        assert_eq!(code, H3_SETTINGS_ERROR, "{what}"); // 0x109
    }
}

#[test]
fn second_control_stream_is_stream_creation_error() {
    let srv = EchoServer::start();
    let code = wire(close_code_for(
        srv.addr,
        &basic_settings(),
        |peer, c| async move {
            let c2 = peer.open_control(&basic_settings()).await;
            hold(peer, vec![c, c2]).await;
        },
    ));
    assert_eq!(code, H3_STREAM_CREATION_ERROR); // 0x103
}

#[test]
fn critical_stream_fin_is_closed_critical_stream() {
    let srv = EchoServer::start();
    let code = wire(close_code_for(
        srv.addr,
        &basic_settings(),
        |peer, mut c| async move {
            c.finish().unwrap();
            hold(peer, vec![]).await;
        },
    ));
    assert_eq!(code, H3_CLOSED_CRITICAL_STREAM, "control FIN"); // 0x104
    let code = wire(close_code_for(
        srv.addr,
        &basic_settings(),
        |peer, c| async move {
            let mut enc = peer.open_uni(UNI_QPACK_ENCODER, &[0x20]).await;
            enc.finish().unwrap();
            hold(peer, vec![c]).await;
        },
    ));
    assert_eq!(code, H3_CLOSED_CRITICAL_STREAM, "encoder FIN");
}

#[test]
fn request_frames_on_control_are_frame_unexpected() {
    let srv = EchoServer::start();
    for ty in [frame::DATA, frame::HEADERS, 0x06 /* HTTP/2 PING */] {
        let code = wire(close_code_for(
            srv.addr,
            &basic_settings(),
            |peer, mut c| async move {
                c.write_all(&frame_bytes(ty, b"xx")).await.unwrap();
                hold(peer, vec![c]).await;
            },
        ));
        assert_eq!(code, H3_FRAME_UNEXPECTED, "frame 0x{ty:x}"); // 0x105
    }
}

#[test]
fn push_stream_from_client_is_stream_creation_error() {
    let srv = EchoServer::start();
    let code = wire(close_code_for(
        srv.addr,
        &basic_settings(),
        |peer, c| async move {
            let push = peer.open_uni(UNI_PUSH, &[0x00]).await;
            hold(peer, vec![c, push]).await;
        },
    ));
    assert_eq!(code, H3_STREAM_CREATION_ERROR); // 0x103
}

// ------------------------------------------------------------------------------------------------
// QPACK

#[test]
fn encoder_stream_beyond_capacity_zero_is_encoder_stream_error() {
    let srv = EchoServer::start();
    let cases: [(&str, &str); 3] = [
        ("Set Dynamic Table Capacity 4096", "3fe11f"),
        // Chromium's first insert: `:authority` name-ref static 0, value "a".
        ("Insert With Name Reference", "20 c0 01 61"),
        ("Insert With Literal Name", "4161 0162"),
    ];
    for (what, bytes) in cases {
        let code = wire(close_code_for(
            srv.addr,
            &basic_settings(),
            |peer, c| async move {
                let enc = peer.open_uni(UNI_QPACK_ENCODER, &hex(bytes)).await;
                hold(peer, vec![c, enc]).await;
            },
        ));
        assert_eq!(code, QPACK_ENCODER_STREAM_ERROR, "{what}"); // 0x201
    }
}

#[test]
fn dynamic_table_reference_is_decompression_failed() {
    let srv = EchoServer::start();
    let blocks = [
        "0600d7cf8483828180", // Chromium's block against a capacity-4096 server (RIC 6)
        "0000d780",           // RIC 0 but an indexed dynamic field line
        "0000d710",           // post-base indexed
        "0000ff",             // truncated static index
    ];
    for block in blocks {
        let code = wire(close_code_for(
            srv.addr,
            &basic_settings(),
            |peer, c| async move {
                let (s, _r) = peer
                    .open_bi(&frame_bytes(frame::HEADERS, &hex(block)))
                    .await;
                hold(peer, vec![c, s]).await;
            },
        ));
        assert_eq!(code, QPACK_DECOMPRESSION_FAILED, "{block}"); // 0x200
    }
}

// ------------------------------------------------------------------------------------------------
// Request streams

#[test]
fn oversized_frame_on_request_stream_is_excessive_load() {
    let srv = EchoServer::start();
    for ty in [
        frame::HEADERS,
        0x21, /* unknown frames are skipped, but not read past the size limit */
    ] {
        let code = wire(close_code_for(
            srv.addr,
            &basic_settings(),
            |peer, c| async move {
                let mut head = vi(ty);
                head.extend(vi(64 * 1024 + 1));
                head.extend([0u8; 100]);
                let (s, _r) = peer.open_bi(&head).await;
                hold(peer, vec![c, s]).await;
            },
        ));
        assert_eq!(code, H3_EXCESSIVE_LOAD, "frame 0x{ty:x}"); // 0x107
    }
}

#[test]
fn data_before_headers_is_frame_unexpected() {
    let srv = EchoServer::start();
    let code = wire(close_code_for(
        srv.addr,
        &basic_settings(),
        |peer, c| async move {
            let (s, _r) = peer.open_bi(&frame_bytes(frame::DATA, b"hi")).await;
            hold(peer, vec![c, s]).await;
        },
    ));
    assert_eq!(code, H3_FRAME_UNEXPECTED); // 0x105
}

#[test]
fn plain_requests_get_http_errors_and_connection_survives() {
    let srv = EchoServer::start();
    wire(async {
        let (peer, control) = RawPeer::with_settings(srv.addr, &basic_settings()).await;
        let get = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", "/"),
        ];
        let (_s, mut r, resp) = peer.request(&get).await;
        assert_eq!(status(&resp), Some(404), "GET");
        assert!(
            tokio::time::timeout(T, r.read_to_end(1024))
                .await
                .unwrap()
                .is_ok(),
            "FIN after 404"
        );

        let (_s, _r, resp) = peer.request(&chromium_connect("/echo", "websocket")).await;
        assert_eq!(status(&resp), Some(501), "unknown :protocol");

        let no_path: Vec<_> = chromium_connect("/echo", "webtransport")
            .into_iter()
            .filter(|(n, _)| *n != ":path")
            .collect();
        let (_s, _r, resp) = peer.request(&no_path).await;
        assert_eq!(status(&resp), Some(400), "missing :path");

        // Still usable: a real session on the same connection works (its quarter stream id is
        // not 0: three requests came first).
        let (s, _r, resp) = peer
            .request(&chromium_connect("/echo", "webtransport"))
            .await;
        assert_eq!(status(&resp), Some(200));
        let mut dg = vi(u64::from(s.id()) / 4);
        assert_eq!(dg, [3]);
        dg.extend_from_slice(b"still here");
        assert!(peer.echo(&dg).await);
        assert!(peer.alive_after(Duration::from_millis(200)).await);
        drop(control);
    });
}

#[test]
fn filter_refusal_is_seen_as_status() {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.filter = Some(Box::new(
        |req, _| if req.path == "/forbidden" { 403 } else { 200 },
    ));
    let srv = EchoServer::with_config(cfg);
    wire(async {
        let (peer, control) = RawPeer::with_settings(srv.addr, &basic_settings()).await;
        let (_s, _r, resp) = peer
            .request(&chromium_connect("/forbidden", "webtransport"))
            .await;
        assert_eq!(status(&resp), Some(403));
        let (_s, _r, resp) = peer.request(&chromium_connect("/ok", "webtransport")).await;
        assert_eq!(status(&resp), Some(200));
        assert!(peer.alive_after(Duration::from_millis(100)).await);
        drop(control);
    });
}

// ------------------------------------------------------------------------------------------------
// Datagrams and WebTransport streams

#[test]
fn datagram_without_quarter_stream_id_is_datagram_error() {
    let srv = EchoServer::start();
    // Empty, and a 2-byte varint cut after its first byte.
    for bytes in [&[][..], &[0x40][..]] {
        let code = wire(close_code_for(
            srv.addr,
            &basic_settings(),
            |peer, c| async move {
                peer.send_datagram(bytes);
                hold(peer, vec![c]).await;
            },
        ));
        assert_eq!(code, H3_DATAGRAM_ERROR, "{bytes:02x?}"); // 0x33
    }
}

#[test]
fn datagram_for_unknown_session_is_dropped() {
    let srv = EchoServer::start();
    wire(async {
        let (peer, control, mut send, _recv) = session(srv.addr, "/echo").await;
        // Quarter stream ids 1 (stream 4, not open) and 2^20 (as a 4-byte varint).
        for bytes in [&hex("01 6c6f7374")[..], &hex("80100000 6c6f7374")] {
            peer.send_datagram(bytes);
        }
        // No echo of those; the session still echoes and the connection lives.
        assert!(peer.echo(&hex(WIRECAP_DATAGRAM)).await);
        assert!(peer.alive_after(Duration::from_millis(200)).await);
        send.write_all(&hex("000a 6843 07 0000002a 627965"))
            .await
            .unwrap();
        send.finish().unwrap();
        // Keep the connection until the server has the close capsule.
        let _ = tokio::time::timeout(T, send.stopped()).await;
        drop(control);
    });
    // Both were dropped and counted on the connection.
    assert_eq!(srv.next_end().unknown_session_drops, 2);
}

#[test]
fn webtransport_bidi_stream_is_rejected_connection_survives() {
    let srv = EchoServer::start();
    wire(async {
        let (peer, control, _send, _recv) = session(srv.addr, "/echo").await;
        // WEBTRANSPORT_STREAM 0x41 (a 2-byte varint: 40 41), session id 0, then stream data.
        let (s, mut r) = peer.open_bi(&hex("4041 00 68656c6c6f")).await;
        let stopped = tokio::time::timeout(T, s.stopped()).await.unwrap();
        assert_eq!(
            stopped.unwrap().map(|c| c.into_inner()),
            Some(WT_BUFFERED_STREAM_REJECTED)
        );
        match tokio::time::timeout(T, r.read_chunk(16, true))
            .await
            .unwrap()
        {
            Err(quinn::ReadError::Reset(c)) => {
                assert_eq!(c.into_inner(), WT_BUFFERED_STREAM_REJECTED)
            }
            other => panic!("expected a reset, got {other:?}"),
        }
        assert!(peer.echo(&hex(WIRECAP_DATAGRAM)).await);
        assert!(peer.alive_after(Duration::from_millis(200)).await);
        drop(control);
    });
}

#[test]
fn two_sessions_on_one_connection_route_datagrams() {
    let srv = EchoServer::start();
    wire(async {
        let (peer, control, _s0, _r0) = session(srv.addr, "/a").await;
        let (s1, _r1, resp) = peer.request(&chromium_connect("/b", "webtransport")).await;
        assert_eq!(status(&resp), Some(200));
        assert_eq!(u64::from(s1.id()), 4);
        assert!(peer.echo(&hex("00 61")).await, "session 0");
        assert!(
            peer.echo(&hex("01 62")).await,
            "session 1 (quarter stream id 1)"
        );
        drop(control);
    });
}

// ------------------------------------------------------------------------------------------------
// The CONNECT stream after the 200

#[test]
fn connect_stream_ends_map_to_close_causes() {
    let srv = EchoServer::start();
    wire(async {
        // FIN without a capsule.
        let (peer, control, mut send, _recv) = session(srv.addr, "/fin").await;
        send.finish().unwrap();
        let end = srv.next_end();
        assert_eq!(
            (end.path.as_str(), end.info.code, end.info.cause),
            ("/fin", 0, CloseCause::PeerFin)
        );
        // RESET_STREAM.
        let (mut send, _recv, resp) = peer
            .request(&chromium_connect("/reset", "webtransport"))
            .await;
        assert_eq!(status(&resp), Some(200));
        send.reset(quinn::VarInt::from_u32(0x10c)).unwrap();
        let end = srv.next_end();
        assert_eq!(
            (end.path.as_str(), end.info.cause),
            ("/reset", CloseCause::PeerReset)
        );
        // DRAIN then CLOSE, both DATA-framed, then an unknown capsule and a GREASE frame.
        let (mut send, _recv, resp) = peer
            .request(&chromium_connect("/drain", "webtransport"))
            .await;
        assert_eq!(status(&resp), Some(200));
        let mut bytes = frame_bytes(frame::DATA, &hex("80 0078ae 00"));
        bytes.extend(frame_bytes(
            frame::DATA,
            &frame_bytes(0x29, b"unknown capsule"),
        ));
        bytes.extend(frame_bytes(0x21, b"grease"));
        bytes.extend(hex("00 0d 68 43 0a 00000007 6472616e6564")); // close(7, "draned")
        send.write_all(&bytes).await.unwrap();
        let end = srv.next_end();
        assert_eq!(
            (end.info.code, end.info.reason.as_str(), end.info.cause),
            (7, "draned", CloseCause::PeerCapsule)
        );
        assert!(peer.alive_after(Duration::from_millis(200)).await);
        drop(control);
    });
}

#[test]
fn malformed_connect_stream_closes_connection() {
    let srv = EchoServer::start();
    let cases: [(&str, Vec<u8>, u64); 4] = [
        (
            "HEADERS after the 200",
            headers_frame(&[("x", "y")]),
            H3_FRAME_UNEXPECTED,
        ),
        (
            "close capsule shorter than its code",
            hex("00 04 684301 00"),
            H3_MESSAGE_ERROR,
        ),
        (
            "64 KiB + 1 DATA frame",
            [vi(0), vi(64 * 1024 + 1), vec![0; 64]].concat(),
            H3_EXCESSIVE_LOAD,
        ),
        (
            "64 KiB + 1 raw capsule",
            [vi(0x2843), vi(64 * 1024 + 1), vec![0; 64]].concat(),
            H3_EXCESSIVE_LOAD,
        ),
    ];
    for (what, bytes, want) in cases {
        let code = wire(async {
            let (peer, control, mut send, _recv) = session(srv.addr, "/bad").await;
            send.write_all(&bytes).await.unwrap();
            let code = peer.close_code().await;
            drop((control, send));
            code
        });
        assert_eq!(code, want, "{what}");
    }
}

#[test]
fn truncated_frame_at_fin_is_frame_error() {
    let srv = EchoServer::start();
    // A request stream that ends inside its HEADERS frame.
    let code = wire(close_code_for(
        srv.addr,
        &basic_settings(),
        |peer, c| async move {
            let mut head = headers_frame(&chromium_connect("/t", "webtransport"));
            head.truncate(head.len() - 3);
            let (mut s, _r) = peer.open_bi(&head).await;
            s.finish().unwrap();
            hold(peer, vec![c]).await;
        },
    ));
    assert_eq!(code, H3_FRAME_ERROR, "request stream"); // 0x106
                                                        // A CONNECT stream that ends inside a DATA frame.
    let code = wire(async {
        let (peer, control, mut send, _recv) = session(srv.addr, "/t").await;
        send.write_all(&hex("00 0a 68 43 07 0000")).await.unwrap();
        send.finish().unwrap();
        let code = peer.close_code().await;
        drop(control);
        code
    });
    assert_eq!(code, H3_FRAME_ERROR, "CONNECT stream");
}

#[test]
fn connect_before_settings_waits_for_them() {
    let srv = EchoServer::start();
    wire(async {
        let peer = RawPeer::connect(srv.addr).await;
        let (_s, mut r) = peer
            .open_bi(&headers_frame(&chromium_connect("/early", "webtransport")))
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let control = peer.open_control(&basic_settings()).await;
        let resp = read_response(&mut r).await.unwrap();
        assert_eq!(status(&resp), Some(200));
        assert!(peer.echo(&hex("00 65")).await);
        drop(control);
    });
}

#[test]
fn malformed_goaway_is_frame_error() {
    let srv = EchoServer::start();
    let code = wire(close_code_for(
        srv.addr,
        &basic_settings(),
        |peer, mut c| async move {
            c.write_all(&frame_bytes(frame::GOAWAY, &hex("00 00")))
                .await
                .unwrap();
            hold(peer, vec![c]).await;
        },
    ));
    assert_eq!(code, H3_FRAME_ERROR); // 0x106
}

// ------------------------------------------------------------------------------------------------
// Hardening (issue 9)

/// A CONNECT header block followed by `extra` raw field-line bytes (same QPACK section).
fn connect_block_with(extra: &[u8]) -> Vec<u8> {
    let mut block = wtd::h3::qpack::encode_field_section(&chromium_connect("/big", "webtransport"));
    block.extend_from_slice(extra);
    frame_bytes(frame::HEADERS, &block)
}

#[test]
fn server_advertises_max_field_section_size() {
    let srv = EchoServer::start();
    wire(async {
        let (peer, control) = RawPeer::with_settings(srv.addr, &basic_settings()).await;
        let s = peer.server_settings().await;
        assert_eq!(s.get(st::MAX_FIELD_SECTION_SIZE), Some(16 * 1024));
        drop(control);
    });
}

#[test]
fn oversized_header_block_is_refused_with_431_and_counted() {
    let srv = EchoServer::start();
    wire(async {
        let (peer, control) = RawPeer::with_settings(srv.addr, &basic_settings()).await;
        // 60 000 one-byte indexed field lines (static 58): ~4 MB decoded before the fix.
        let (_s, mut r) = peer.open_bi(&connect_block_with(&[0xfa; 60_000])).await;
        let resp = read_response(&mut r).await.expect("a response");
        assert_eq!(status(&resp), Some(431), "{resp:?}");
        // Under the size limit but over the 64-field cap: 60 × "x-a: " literal lines.
        let mut extra = Vec::new();
        for _ in 0..60 {
            extra.extend([0x23, b'x', b'-', b'a', 0x00]); // literal name "x-a", empty value
        }
        let (_s, mut r) = peer.open_bi(&connect_block_with(&extra)).await;
        let resp = read_response(&mut r).await.expect("a response");
        assert_eq!(status(&resp), Some(431), "{resp:?}");
        // A request within the limits still opens a session on the same connection.
        let (_s, _r, resp) = peer.request(&chromium_connect("/ok", "webtransport")).await;
        assert_eq!(status(&resp), Some(200));
        assert!(peer.alive_after(Duration::from_millis(100)).await);
        drop(control);
    });
    assert_eq!(srv.server.stats().refused_headers_too_large, 2);
}

/// Reads a request stream until its end: `Ok(status)` for a response, `Err(code)` for a reset.
async fn status_or_reset(recv: &mut quinn::RecvStream) -> Result<Option<u16>, u64> {
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout(T, recv.read_chunk(usize::MAX, true)).await {
            Ok(Ok(Some(c))) => buf.extend_from_slice(&c.bytes),
            Ok(Err(quinn::ReadError::Reset(code))) => return Err(code.into_inner()),
            other => panic!("no response and no reset: {other:?}"),
        }
        if let Some(h) = frame::parse_header(&buf) {
            if h.ty == frame::HEADERS && buf.len() >= h.header_len + h.len as usize {
                let block = &buf[h.header_len..h.header_len + h.len as usize];
                return Ok(status(
                    &wtd::h3::qpack::decode_field_section(block).unwrap(),
                ));
            }
        }
    }
}

/// Sends a WebTransport CONNECT for `path` on a new stream and reads what comes back (see
/// [`status_or_reset`]).
async fn connect_status(peer: &RawPeer, path: &str) -> Result<Option<u16>, u64> {
    let (_s, mut r) = peer
        .open_bi(&headers_frame(&chromium_connect(path, "webtransport")))
        .await;
    status_or_reset(&mut r).await
}

/// Opens `n` sessions on `peer`'s connection (paths /s0, /s1, …), each answered 200; keep the
/// streams to keep them open.
async fn open_sessions(peer: &RawPeer, n: usize) -> Vec<(quinn::SendStream, quinn::RecvStream)> {
    let mut open = Vec::new();
    for i in 0..n {
        let (s, r, resp) = peer
            .request(&chromium_connect(&format!("/s{i}"), "webtransport"))
            .await;
        assert_eq!(status(&resp), Some(200), "session {i}");
        open.push((s, r));
    }
    open
}

#[test]
fn seventeenth_session_is_rejected_and_counted() {
    let srv = EchoServer::start();
    wire(async {
        let (peer, control) = RawPeer::with_settings(srv.addr, &basic_settings()).await;
        let mut open = open_sessions(&peer, 16).await;
        assert_eq!(
            connect_status(&peer, "/s16").await,
            Err(H3_REQUEST_REJECTED),
            "the 17th CONNECT is reset with H3_REQUEST_REJECTED"
        );
        // The connection is not closed (draft §3.4), and a slot freed by a close is usable.
        let (mut s0, _r0) = open.remove(0);
        s0.finish().unwrap();
        let _ = srv.next_end();
        let (_s, _r, resp) = peer
            .request(&chromium_connect("/again", "webtransport"))
            .await;
        assert_eq!(status(&resp), Some(200));
        assert!(peer.alive_after(Duration::from_millis(100)).await);
        drop((control, open));
    });
    assert_eq!(srv.server.stats().refused_too_many_sessions, 1);
}

/// A request for the last of the 16 places is held inside the server's `filter` (past the
/// session-count check, not yet registered) while a second request arrives on the same
/// connection, handled on another runtime thread: the second must be refused — the held request
/// owns the place from the check on.
#[test]
fn a_request_between_check_and_registration_holds_its_place() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    let (inside, release) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    {
        let (inside, release) = (inside.clone(), release.clone());
        cfg.filter = Some(Box::new(move |req, _| {
            if req.path == "/held" {
                inside.store(true, SeqCst);
                let until = std::time::Instant::now() + Duration::from_secs(10);
                while !release.load(SeqCst) && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            200
        }));
    }
    let srv = EchoServer::with_config(cfg);
    wire(async {
        let (peer, control) = RawPeer::with_settings(srv.addr, &basic_settings()).await;
        let open = open_sessions(&peer, 15).await;
        let (_held_s, mut held_r) = peer
            .open_bi(&headers_frame(&chromium_connect("/held", "webtransport")))
            .await;
        while !inside.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            connect_status(&peer, "/second").await,
            Err(H3_REQUEST_REJECTED),
            "a request arriving while the 16th place is held is reset"
        );
        release.store(true, SeqCst);
        assert_eq!(
            status_or_reset(&mut held_r).await,
            Ok(Some(200)),
            "the held request gets its place"
        );
        drop((control, open));
    });
    assert_eq!(srv.server.stats().refused_too_many_sessions, 1);
}

#[test]
fn quic_stream_limits_are_explicit() {
    let srv = EchoServer::start();
    wire(async {
        let peer = RawPeer::connect(srv.addr).await;
        let mut bidi = Vec::new();
        for _ in 0..wtd::endpoint::SERVER_MAX_BIDI_STREAMS {
            let s = tokio::time::timeout(T, peer.conn.open_bi()).await;
            bidi.push(s.expect("within the limit").unwrap());
        }
        let more = tokio::time::timeout(Duration::from_millis(300), peer.conn.open_bi()).await;
        assert!(more.is_err(), "bidi stream beyond the server's limit");
        let mut uni = Vec::new();
        for _ in 0..wtd::endpoint::MAX_UNI_STREAMS {
            let s = tokio::time::timeout(T, peer.conn.open_uni()).await;
            uni.push(s.expect("within the limit").unwrap());
        }
        let more = tokio::time::timeout(Duration::from_millis(300), peer.conn.open_uni()).await;
        assert!(more.is_err(), "uni stream beyond the server's limit");
    });
}

#[test]
fn accept_queue_is_bounded_and_drops_closed_sessions() {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.accept_queue_capacity = 4;
    let server = wtd::Server::bind(cfg).unwrap();
    let addr = server.local_addr().unwrap();
    wire(async {
        let (peer, control) = RawPeer::with_settings(addr, &basic_settings()).await;
        let mut open = Vec::new();
        for i in 0..4 {
            let (s, r, resp) = peer
                .request(&chromium_connect(&format!("/q{i}"), "webtransport"))
                .await;
            assert_eq!(status(&resp), Some(200), "queued session {i}");
            open.push((s, r));
        }
        let (_s, _r, resp) = peer
            .request(&chromium_connect("/full", "webtransport"))
            .await;
        assert_eq!(status(&resp), Some(503), "accept queue full");
        // Sessions that close before the application accepts them leave the queue: many
        // open/close rounds never fill it.
        for (mut s, mut r) in open.drain(..) {
            s.finish().unwrap();
            let _ = tokio::time::timeout(T, r.read_to_end(64)).await;
        }
        for round in 0..40 {
            let (mut s, mut r) = peer
                .open_bi(&headers_frame(&chromium_connect("/round", "webtransport")))
                .await;
            let resp = read_response(&mut r).await.expect("a response");
            assert_eq!(status(&resp), Some(200), "round {round}");
            s.finish().unwrap();
            // Wait until the server saw the FIN (its FIN back), so the session is closed.
            let _ = tokio::time::timeout(T, r.read_to_end(64)).await;
        }
        drop(control);
    });
    let stats = server.stats();
    assert_eq!(stats.refused_queue_full, 1);
    assert!(stats.queue_closed_dropped >= 40, "{stats:?}");
}

/// A server config on 127.0.0.1 with short deadlines for the tests below.
fn quick_deadlines(settings: u64, session: u64, header: u64) -> ServerConfig {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.settings_timeout = Duration::from_millis(settings);
    cfg.session_timeout = Duration::from_millis(session);
    cfg.header_timeout = Duration::from_millis(header);
    // Frequent keep-alives: they must not keep a useless connection open.
    cfg.quic.keep_alive = Some(Duration::from_millis(100));
    cfg
}

#[test]
fn deadlines_default_to_ten_seconds() {
    let cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    let ten = Duration::from_secs(10);
    assert_eq!(
        (
            cfg.settings_timeout,
            cfg.session_timeout,
            cfg.header_timeout
        ),
        (ten, ten, ten)
    );
    assert_eq!(
        (
            cfg.max_connections,
            cfg.max_connections_per_ip,
            cfg.accept_queue_capacity
        ),
        (4096, 64, 128)
    );
}

#[test]
fn silent_peer_is_closed_at_the_settings_deadline() {
    let srv = EchoServer::with_config(quick_deadlines(500, 60_000, 60_000));
    let (code, elapsed) = wire(async {
        let t0 = std::time::Instant::now();
        let peer = RawPeer::connect(srv.addr).await; // handshake, then nothing at all
        (peer.close_code().await, t0.elapsed())
    });
    assert_eq!(code, H3_MISSING_SETTINGS);
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(srv.server.stats().closed_settings_timeout, 1);
}

#[test]
fn peer_granting_no_credit_is_closed_at_the_settings_deadline() {
    // The peer gives wtd no flow-control credit at all, so wtd cannot even write its own
    // SETTINGS: the connection is still closed at the deadline (it used to stay forever).
    let srv = EchoServer::with_config(quick_deadlines(500, 60_000, 60_000));
    let (code, elapsed) = wire(async {
        let tls = wtd::endpoint::tls::client_config(&wtd::Verification::DangerousNone).unwrap();
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut cfg = quinn::ClientConfig::new(std::sync::Arc::new(crypto));
        let mut t = quinn::TransportConfig::default();
        t.stream_receive_window(0u32.into());
        t.receive_window(0u32.into());
        cfg.transport_config(std::sync::Arc::new(t));
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(cfg);
        let t0 = std::time::Instant::now();
        let conn = ep.connect(srv.addr, "localhost").unwrap().await.unwrap();
        let peer = RawPeer { endpoint: ep, conn };
        let control = peer.open_control(&basic_settings()).await;
        let code = peer.close_code().await;
        drop(control);
        (code, t0.elapsed())
    });
    assert_eq!(code, H3_EXCESSIVE_LOAD);
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(srv.server.stats().closed_settings_timeout, 1);
}

#[test]
fn peer_without_a_session_is_closed_at_the_session_deadline() {
    let srv = EchoServer::with_config(quick_deadlines(5_000, 600, 60_000));
    wire(async {
        // SETTINGS but never a CONNECT.
        let (peer, control) = RawPeer::with_settings(srv.addr, &basic_settings()).await;
        assert_eq!(peer.close_code().await, H3_NO_ERROR);
        drop(control);
        // With a session open the connection stays; once it ends the clock starts again.
        let (peer, control, mut send, mut recv) = session(srv.addr, "/stay").await;
        assert!(peer.alive_after(Duration::from_millis(1500)).await);
        send.finish().unwrap();
        let _ = tokio::time::timeout(T, recv.read_to_end(64)).await;
        assert_eq!(peer.close_code().await, H3_NO_ERROR);
        drop(control);
    });
    assert_eq!(srv.server.stats().closed_session_timeout, 2);
}

#[test]
fn stalled_request_headers_are_reset_at_the_header_deadline() {
    let srv = EchoServer::with_config(quick_deadlines(5_000, 60_000, 300));
    wire(async {
        let (peer, control) = RawPeer::with_settings(srv.addr, &basic_settings()).await;
        let mut head = headers_frame(&chromium_connect("/slow", "webtransport"));
        head.truncate(head.len() - 3);
        let (_s, mut r) = peer.open_bi(&head).await;
        assert_eq!(status_or_reset(&mut r).await, Err(H3_REQUEST_INCOMPLETE));
        assert!(peer.alive_after(Duration::from_millis(100)).await);
        drop(control);
    });
    assert_eq!(srv.server.stats().refused_header_timeout, 1);
}

#[test]
fn connection_caps_refuse_count_and_release() {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.max_connections_per_ip = 2;
    let srv = EchoServer::with_config(cfg);
    wire(async {
        let a = RawPeer::connect(srv.addr).await;
        let b = RawPeer::connect(srv.addr).await;
        assert!(
            RawPeer::try_connect(srv.addr).await.is_err(),
            "third from one IP"
        );
        // Slots are released as connections go: many sequential connections all get in.
        b.conn.close(quinn::VarInt::from_u32(0x100), b"");
        for i in 0..10 {
            let mut got = None;
            for _ in 0..50 {
                if let Ok(p) = RawPeer::try_connect(srv.addr).await {
                    got = Some(p);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let p = got.unwrap_or_else(|| panic!("connection {i} never admitted"));
            p.conn.close(quinn::VarInt::from_u32(0x100), b"");
        }
        drop(a);
    });
    let stats = srv.server.stats();
    assert!(stats.refused_connections_per_ip >= 1, "{stats:?}");
    assert_eq!(stats.refused_connections_global, 0);

    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.max_connections = 2;
    let srv = EchoServer::with_config(cfg);
    wire(async {
        let a = RawPeer::connect(srv.addr).await;
        let b = RawPeer::connect(srv.addr).await;
        assert!(
            RawPeer::try_connect(srv.addr).await.is_err(),
            "third overall"
        );
        drop((a, b));
    });
    assert_eq!(srv.server.stats().refused_connections_global, 1);
}

#[test]
fn malformed_requests_get_400_and_are_counted() {
    let srv = EchoServer::start();
    let base = chromium_connect("/ok", "webtransport");
    let with = |name: &'static str, value: &'static str| {
        let mut f: Vec<(&str, &str)> = base.iter().filter(|(n, _)| *n != name).copied().collect();
        f.push((name, value));
        f
    };
    let mut cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("NUL in :path", with(":path", "/admin\0x")),
        ("CR in :path", with(":path", "/a\rb")),
        ("LF in origin", with("origin", "http://a\nb")),
        ("NUL in :authority", with(":authority", "a\0b")),
        (":scheme http", with(":scheme", "http")),
        (":path without /", with(":path", "admin")),
        ("empty :path", with(":path", "")),
        (
            "uppercase name",
            [base.clone(), vec![("X-Token", "1")]].concat(),
        ),
        (
            "unknown pseudo-header",
            [vec![(":foo", "1")], base.clone()].concat(),
        ),
        (
            "duplicate :path",
            [base.clone(), vec![(":path", "/other")]].concat(),
        ),
    ];
    // A pseudo-header after a regular field.
    let mut late = base.clone();
    let i = late.iter().position(|(n, _)| *n == ":path").unwrap();
    let p = late.remove(i);
    late.push(p);
    cases.push(("pseudo-header after origin", late));
    let n = cases.len() as u64;
    wire(async {
        let (peer, control) = RawPeer::with_settings(srv.addr, &basic_settings()).await;
        for (what, fields) in &cases {
            let (_s, _r, resp) = peer.request(fields).await;
            assert_eq!(status(&resp), Some(400), "{what}");
        }
        let (_s, _r, resp) = peer.request(&base).await;
        assert_eq!(status(&resp), Some(200), "a valid request still works");
        assert!(peer.alive_after(Duration::from_millis(100)).await);
        drop(control);
    });
    assert_eq!(srv.server.stats().refused_malformed, n);
}

mod c_filter {
    //! The C request filter sees exactly the bytes `wtd_session_path`/`_origin` return.
    use super::*;
    use std::ffi::{c_char, c_void, CStr};
    use std::sync::Mutex;
    use wtd::ffi::server::*;
    use wtd::ffi::session::*;
    use wtd::wtd_result;

    static SEEN: Mutex<Vec<(Vec<u8>, Vec<u8>)>> = Mutex::new(Vec::new());

    unsafe extern "C" fn on_request(_: *mut c_void, r: *const wtd_session_request) -> u16 {
        let r = &*r;
        let path = CStr::from_ptr(r.path).to_bytes().to_vec();
        let origin = CStr::from_ptr(r.origin).to_bytes().to_vec();
        SEEN.lock().unwrap().push((path, origin));
        200
    }

    unsafe fn text(
        f: unsafe extern "C" fn(*const wtd_session, *mut c_char, usize, *mut usize) -> wtd_result,
        s: *const wtd_session,
    ) -> Vec<u8> {
        let mut buf = [0 as c_char; 256];
        let mut len = 0usize;
        assert_eq!(
            f(s, buf.as_mut_ptr(), buf.len(), &mut len),
            wtd_result::WTD_OK
        );
        CStr::from_ptr(buf.as_ptr()).to_bytes().to_vec()
    }

    #[test]
    fn filter_and_session_path_see_the_same_bytes() {
        unsafe {
            let mut o = std::mem::zeroed::<wtd_server_options>();
            o.struct_size = std::mem::size_of::<wtd_server_options>() as u32;
            assert_eq!(wtd_server_options_default(&mut o), wtd_result::WTD_OK);
            let host = c"127.0.0.1";
            o.host = host.as_ptr();
            o.port = 0;
            o.on_request = Some(on_request);
            let mut server = std::ptr::null_mut();
            assert_eq!(wtd_server_new(&o, &mut server), wtd_result::WTD_OK);
            let mut port = 0u16;
            assert_eq!(wtd_server_port(server, &mut port), wtd_result::WTD_OK);
            let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let path = "/p?q=%00x&u=\u{fc}";
            let origin = "https://game.example";
            wire(async {
                let (peer, control) = RawPeer::with_settings(addr, &basic_settings()).await;
                // NUL in :path never reaches the filter (it used to see "/adminx").
                let mut f = chromium_connect("/admin\0x", "webtransport");
                f.retain(|(n, _)| *n != "origin");
                f.push(("origin", origin));
                let (_s, _r, resp) = peer.request(&f).await;
                assert_eq!(status(&resp), Some(400));
                let mut f = chromium_connect(path, "webtransport");
                f.retain(|(n, _)| *n != "origin");
                f.push(("origin", origin));
                let (_s, _r, resp) = peer.request(&f).await;
                assert_eq!(status(&resp), Some(200));
                // Keep the session open until the application has looked at it.
                let server = server as usize;
                let got = std::thread::spawn(move || {
                    let mut session = std::ptr::null_mut();
                    let r = wtd_server_accept(server as *mut wtd_server, &mut session, 5000);
                    (r, session as usize)
                })
                .join()
                .unwrap();
                assert_eq!(got.0, wtd_result::WTD_OK);
                let s = got.1 as *const wtd_session;
                let seen = SEEN.lock().unwrap().clone();
                assert_eq!(
                    seen.len(),
                    1,
                    "the filter ran once (not for the NUL request)"
                );
                assert_eq!(seen[0].0, text(wtd_session_path, s));
                assert_eq!(seen[0].0, path.as_bytes());
                assert_eq!(seen[0].1, text(wtd_session_origin, s));
                wtd_session_free(s as *mut wtd_session);
                drop(control);
            });
            let mut st = std::mem::zeroed::<wtd_server_stats>();
            st.struct_size = std::mem::size_of::<wtd_server_stats>() as u32;
            assert_eq!(wtd_server_get_stats(server, &mut st), wtd_result::WTD_OK);
            assert_eq!(st.refused_malformed, 1);
            wtd_server_free(server);
        }
    }
}

#[test]
fn settings_with_too_many_pairs_is_excessive_load() {
    let srv = EchoServer::start();
    // 10 000 distinct GREASE ids in one 64 KiB frame (~10^8 comparisons with a quadratic check).
    let pairs: Vec<(u64, u64)> = (0..10_000u64)
        .map(|k| (0x1f * (k + 100) + 0x21, 0))
        .collect();
    let payload = settings_payload(&pairs);
    assert!(payload.len() <= 64 * 1024);
    let code = wire(close_code_for(srv.addr, &payload, |peer, c| {
        hold(peer, vec![c])
    }));
    assert_eq!(code, H3_EXCESSIVE_LOAD);
    // A frame at the cap is fine.
    let pairs: Vec<(u64, u64)> = (0..st::MAX_SETTINGS_PAIRS as u64 - 2)
        .map(|k| (0x1f * (k + 100) + 0x21, 0))
        .chain([(st::H3_DATAGRAM, 1), (st::ENABLE_WEBTRANSPORT, 1)])
        .collect();
    wire(async {
        let (peer, control) = RawPeer::with_settings(srv.addr, &settings_payload(&pairs)).await;
        let (_s, _r, resp) = peer.request(&chromium_connect("/ok", "webtransport")).await;
        assert_eq!(status(&resp), Some(200));
        drop(control);
    });
}

/// A session is draining or not: 1,000 DRAIN capsules (then a GOAWAY) on one session give one
/// draining notice, not one queued event and callback each.
#[test]
fn drain_capsule_flood_gives_one_notice() {
    let server = wtd::Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr = server.local_addr().unwrap();
    wire(async {
        let (peer, mut control) = RawPeer::with_settings(addr, &basic_settings()).await;
        let (mut send, _recv, resp) = peer.request(&chromium_connect("/d", "webtransport")).await;
        assert_eq!(status(&resp), Some(200));
        let session =
            std::thread::scope(|t| t.spawn(|| server.accept(Some(T)).unwrap()).join().unwrap());
        let flood: Vec<u8> = (0..1000)
            .flat_map(|_| wtd::h3::capsule::encode_drain(false))
            .collect();
        send.write_all(&flood).await.unwrap();
        control
            .write_all(&frame_bytes(frame::GOAWAY, &vi(8)))
            .await
            .unwrap();
        let conn = server.connections()[0].clone();
        for _ in 0..100 {
            if session.is_draining() && conn.goaway_received() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(session.is_draining() && conn.goaway_received());
        assert!(peer.alive_after(Duration::from_millis(200)).await);
        assert_eq!(conn.draining_notices(), 1, "one notice for one session");
        drop(control);
    });
}

#[test]
fn goaway_acts_once_and_rejects_increasing_ids() {
    let server = wtd::Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr = server.local_addr().unwrap();
    let code = wire(async {
        let (peer, mut control, _send, _recv) = {
            let (peer, control) = RawPeer::with_settings(addr, &basic_settings()).await;
            let (s, r, resp) = peer.request(&chromium_connect("/g", "webtransport")).await;
            assert_eq!(status(&resp), Some(200));
            (peer, control, s, r)
        };
        let session =
            std::thread::scope(|t| t.spawn(|| server.accept(Some(T)).unwrap()).join().unwrap());
        // A client's GOAWAY carries a push id; 1000 of them with the same id.
        let mut flood = Vec::new();
        for _ in 0..1000 {
            flood.extend(frame_bytes(frame::GOAWAY, &vi(8)));
        }
        control.write_all(&flood).await.unwrap();
        // Then a lower id (allowed), then a higher one (H3_ID_ERROR).
        control
            .write_all(&frame_bytes(frame::GOAWAY, &vi(4)))
            .await
            .unwrap();
        let conns = server.connections();
        assert_eq!(conns.len(), 1);
        let conn = conns[0].clone();
        for _ in 0..100 {
            if session.is_draining() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(session.is_draining());
        assert!(peer.alive_after(Duration::from_millis(200)).await);
        assert_eq!(conn.draining_notices(), 1, "one notice for one session");
        control
            .write_all(&frame_bytes(frame::GOAWAY, &vi(5)))
            .await
            .unwrap();
        let code = peer.close_code().await;
        drop(control);
        code
    });
    assert_eq!(code, H3_ID_ERROR); // 0x108
}

// ------------------------------------------------------------------------------------------------
// Timeouts honoured end to end (item 7)

mod timeouts {
    use super::*;
    use std::ffi::CString;
    use std::sync::Arc;
    use std::time::Instant;
    use wtd::endpoint::tls::ServerIdentity;
    use wtd::ffi::client::*;
    use wtd::ffi::server::*;
    use wtd::wtd_result;

    /// A raw quinn server (ALPN h3) whose transport is shaped by `shape`; it completes handshakes
    /// and then holds the connections without doing anything. Returns its address.
    async fn stingy_server(
        shape: impl FnOnce(&mut quinn::TransportConfig),
        send_settings: bool,
    ) -> (quinn::Endpoint, std::net::SocketAddr) {
        let id =
            ServerIdentity::self_signed(&["localhost".into()], Duration::from_secs(3600)).unwrap();
        let crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(id.server_config().unwrap()).unwrap();
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut t = quinn::TransportConfig::default();
        shape(&mut t);
        cfg.transport_config(Arc::new(t));
        let ep = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = ep.local_addr().unwrap();
        let accept = ep.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(inc) = accept.accept().await {
                if let Ok(c) = inc.await {
                    if send_settings {
                        let mut control = c.open_uni().await.unwrap();
                        let mut bytes = vi(UNI_CONTROL);
                        bytes.extend(frame_bytes(
                            frame::SETTINGS,
                            &wtd::h3::settings::Settings::wtd_local().encode_payload(),
                        ));
                        control.write_all(&bytes).await.unwrap();
                        held.push((c, Some(control)));
                    } else {
                        held.push((c, None));
                    }
                }
            }
        });
        (ep, addr)
    }

    /// `wtd_client_connect` with a 1 s connect timeout: its result and how long it took.
    fn connect(addr: std::net::SocketAddr) -> (wtd_result, Duration) {
        let url = CString::new(format!("https://localhost:{}/x", addr.port())).unwrap();
        unsafe {
            let mut o = std::mem::zeroed::<wtd_client_options>();
            o.struct_size = std::mem::size_of::<wtd_client_options>() as u32;
            assert_eq!(wtd_client_options_default(&mut o), wtd_result::WTD_OK);
            o.verify = wtd_verify_mode::WTD_VERIFY_NONE_DANGEROUS as u32;
            o.connect_timeout_ms = 1000;
            let mut out = std::ptr::null_mut();
            let t0 = Instant::now();
            let r = wtd_client_connect(url.as_ptr(), &o, &mut out);
            let took = t0.elapsed();
            if !out.is_null() {
                wtd::ffi::session::wtd_session_free(out);
            }
            (r, took)
        }
    }

    fn connect_times_out_against(
        shape: impl FnOnce(&mut quinn::TransportConfig) + Send,
        send_settings: bool,
    ) {
        let rt = runtime();
        let (_ep, addr) = rt.block_on(stingy_server(shape, send_settings));
        // The blocking call runs on a plain thread while `rt` keeps the raw server going.
        let (r, took) = std::thread::scope(|s| s.spawn(|| connect(addr)).join().unwrap());
        assert_eq!(r, wtd_result::WTD_ERR_TIMEOUT, "after {took:?}");
        assert!(took < Duration::from_millis(1800), "{took:?}");
    }

    #[test]
    fn client_connect_times_out_when_no_uni_stream_is_granted() {
        connect_times_out_against(
            |t| {
                t.max_concurrent_uni_streams(0u32.into());
            },
            false,
        );
    }

    #[test]
    fn client_connect_times_out_when_no_flow_control_credit_is_granted() {
        connect_times_out_against(
            |t| {
                t.stream_receive_window(0u32.into());
                t.receive_window(0u32.into());
            },
            false,
        );
    }

    #[test]
    fn client_connect_times_out_when_no_bidi_stream_is_granted() {
        // The server sends its SETTINGS but grants no request stream.
        connect_times_out_against(
            |t| {
                t.max_concurrent_bidi_streams(0u32.into());
            },
            true,
        );
    }

    /// A raw server that answers one CONNECT with 200, then sends GOAWAY with each of `ids` on
    /// its control stream; returns the code the wtd client closed the connection with.
    fn client_close_code_after_goaways(ids: &'static [u64]) -> u64 {
        let rt = runtime();
        let (tx, rx) = std::sync::mpsc::channel();
        let (_ep, addr) = rt.block_on(async {
            let id = ServerIdentity::self_signed(&["localhost".into()], Duration::from_secs(3600))
                .unwrap();
            let crypto =
                quinn::crypto::rustls::QuicServerConfig::try_from(id.server_config().unwrap())
                    .unwrap();
            let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
            let mut t = quinn::TransportConfig::default();
            t.datagram_receive_buffer_size(Some(1 << 16));
            cfg.transport_config(Arc::new(t));
            let ep = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = ep.local_addr().unwrap();
            let accept = ep.clone();
            tokio::spawn(async move {
                let c = accept.accept().await.unwrap().await.unwrap();
                let mut control = c.open_uni().await.unwrap();
                let mut bytes = vi(UNI_CONTROL);
                bytes.extend(frame_bytes(
                    frame::SETTINGS,
                    &wtd::h3::settings::Settings::wtd_local().encode_payload(),
                ));
                control.write_all(&bytes).await.unwrap();
                let (mut send, mut recv) = c.accept_bi().await.unwrap();
                read_response(&mut recv).await.expect("the CONNECT request");
                send.write_all(&headers_frame(&[(":status", "200")]))
                    .await
                    .unwrap();
                for &id in ids {
                    control
                        .write_all(&frame_bytes(frame::GOAWAY, &vi(id)))
                        .await
                        .unwrap();
                }
                let code = match tokio::time::timeout(T, c.closed()).await {
                    Ok(quinn::ConnectionError::ApplicationClosed(a)) => a.error_code.into_inner(),
                    other => panic!("expected an application close, got {other:?}"),
                };
                let _ = tx.send(code);
                drop((control, send));
            });
            (ep, addr)
        });
        let url = format!("https://localhost:{}/g", addr.port());
        let cfg = wtd::ClientConfig {
            verification: wtd::Verification::DangerousNone,
            ..Default::default()
        };
        let session = std::thread::spawn(move || wtd::connect(&url, &cfg))
            .join()
            .unwrap()
            .expect("session");
        let code = rx.recv_timeout(T).expect("the raw server saw the close");
        drop(session);
        code
    }

    #[test]
    fn client_rejects_a_goaway_id_that_is_no_request_stream_id() {
        assert_eq!(client_close_code_after_goaways(&[1]), H3_ID_ERROR);
    }

    #[test]
    fn client_rejects_a_growing_goaway_id() {
        assert_eq!(client_close_code_after_goaways(&[8, 4, 12]), H3_ID_ERROR);
    }

    #[test]
    fn server_close_and_free_are_bounded_against_a_peer_withholding_credit() {
        unsafe {
            let mut o = std::mem::zeroed::<wtd_server_options>();
            o.struct_size = std::mem::size_of::<wtd_server_options>() as u32;
            assert_eq!(wtd_server_options_default(&mut o), wtd_result::WTD_OK);
            o.host = c"127.0.0.1".as_ptr();
            o.port = 0;
            let mut server = std::ptr::null_mut();
            assert_eq!(wtd_server_new(&o, &mut server), wtd_result::WTD_OK);
            let mut port = 0u16;
            assert_eq!(wtd_server_port(server, &mut port), wtd_result::WTD_OK);
            let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            // Exactly enough credit per stream for wtd's control-stream prefix (type + SETTINGS):
            // the peer never reads, so a GOAWAY can never be written.
            let prefix = 1 + frame_bytes(
                frame::SETTINGS,
                &wtd::h3::settings::Settings::wtd_local().encode_payload(),
            )
            .len();
            let rt = runtime();
            let (peer, control, send, recv) = rt.block_on(async {
                let tls =
                    wtd::endpoint::tls::client_config(&wtd::Verification::DangerousNone).unwrap();
                let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
                let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
                let mut t = quinn::TransportConfig::default();
                t.stream_receive_window((prefix as u32).into());
                cfg.transport_config(Arc::new(t));
                let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
                ep.set_default_client_config(cfg);
                let conn = ep.connect(addr, "localhost").unwrap().await.unwrap();
                let peer = RawPeer { endpoint: ep, conn };
                let control = peer.open_control(&basic_settings()).await;
                let (send, recv, resp) = peer
                    .request(&chromium_connect("/held", "webtransport"))
                    .await;
                assert_eq!(status(&resp), Some(200));
                (peer, control, send, recv)
            });
            let server_addr = server as usize;
            let t0 = Instant::now();
            let r = std::thread::spawn(move || wtd_server_close(server_addr as *mut wtd_server))
                .join()
                .unwrap();
            let close_took = t0.elapsed();
            assert_eq!(r, wtd_result::WTD_OK);
            let t0 = Instant::now();
            std::thread::spawn(move || wtd_server_free(server_addr as *mut wtd_server))
                .join()
                .unwrap();
            let free_took = t0.elapsed();
            assert!(
                close_took < Duration::from_millis(2500),
                "close took {close_took:?}"
            );
            assert!(
                free_took < Duration::from_millis(500),
                "free took {free_took:?}"
            );
            drop((control, send, recv, peer));
        }
    }
}

/// The issue-9 black-box attack: 60 request streams (4 connections x 15), each a valid CONNECT
/// followed by ~64 KiB of one-byte indexed field lines. Before the fix the server grew from
/// 5 MB to ~610 MB; now every request is refused with 431 and memory stays flat. (The bound is
/// loose because RSS is process-wide and other tests run in parallel.)
#[test]
fn header_flood_keeps_memory_flat() {
    fn rss_kb() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
    let srv = EchoServer::start();
    let before = rss_kb();
    let after = wire(async {
        let mut held = Vec::new();
        for _ in 0..4 {
            let (peer, control) = RawPeer::with_settings(srv.addr, &basic_settings()).await;
            let mut streams = Vec::new();
            for _ in 0..15 {
                let (s, mut r) = peer.open_bi(&connect_block_with(&[0xfa; 65_000])).await;
                let resp = read_response(&mut r).await.expect("a response");
                assert_eq!(status(&resp), Some(431));
                streams.push((s, r));
            }
            held.push((peer, control, streams));
        }
        rss_kb()
    });
    println!("RSS before {before} KB, after 60 flooded requests {after} KB");
    assert!(
        after < before + 100 * 1024,
        "RSS grew from {before} KB to {after} KB"
    );
    assert_eq!(srv.server.stats().refused_headers_too_large, 60);
}
