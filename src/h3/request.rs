//! The CONNECT exchange: a server answering extended CONNECT requests and a client making them,
//! then both reading capsules on the CONNECT stream until the session ends.

use std::sync::Arc;
use std::time::Duration;

use super::capsule::{Capsule, ConnectStreamParser};
use super::connection::{close_info_for, varint_of, Connection};
use super::draft::{self, wtd_draft};
use super::errors::*;
use super::frame;
use super::qpack;
use super::session_core::{CloseCause, CloseInfo, RequestInfo, SessionCore, SessionEvents};
use super::stream_reader::{StreamEnd, StreamReader};
use crate::error::{wtd_result, Error, Result};

/// How long a server waits for a client's SETTINGS before answering its CONNECT.
const SETTINGS_WAIT: Duration = Duration::from_secs(5);

/// Server-side decisions about incoming session requests.
pub trait Acceptor: Send + Sync + 'static {
    /// The sink type created for each accepted session.
    type Sink: SessionEvents;
    /// Accept (return the new session's sink) or refuse with an HTTP status.
    fn accept(
        &self,
        request: &RequestInfo,
        draft: wtd_draft,
    ) -> std::result::Result<Arc<Self::Sink>, u16>;
    /// The session is registered and its 200 response is on the way.
    fn established(&self, session: Arc<SessionCore>, sink: Arc<Self::Sink>);
}

/// Encodes a HEADERS frame.
fn headers_frame(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode(
        frame::HEADERS,
        &qpack::encode_field_section(fields),
        &mut out,
    );
    out
}

/// Reads frames until HEADERS, skipping unknown ones; returns the decoded fields, or `None` at FIN.
async fn read_headers(
    reader: &mut StreamReader,
    first_type: Option<u64>,
) -> std::result::Result<Option<Vec<(String, String)>>, StreamEnd> {
    let mut ty = first_type;
    loop {
        let t = match ty.take() {
            Some(t) => t,
            None => match reader.read_varint().await? {
                Some(t) => t,
                None => return Ok(None),
            },
        };
        frame::check_not_http2(t)?;
        let payload = reader.read_frame_payload().await?;
        match t {
            frame::HEADERS => {
                return qpack::decode_field_section(&payload)
                    .map(Some)
                    .map_err(|e| StreamEnd::Protocol(H3Error::new(e.h3_code(), e.to_string())))
            }
            frame::DATA => {
                return Err(H3Error::new(H3_FRAME_UNEXPECTED, "DATA before HEADERS").into())
            }
            _ => {} // unknown / GREASE frames are skipped
        }
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Serves one client-initiated bidirectional stream (spawned per stream).
pub async fn serve_request<A: Acceptor>(
    conn: Arc<Connection>,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    acceptor: Arc<A>,
) {
    let mut reader = StreamReader::new(recv);
    let first = match reader.read_varint().await {
        Ok(Some(t)) => t,
        _ => return,
    };
    if first == frame::WEBTRANSPORT_STREAM {
        // A WebTransport bidirectional stream: wtd carries datagrams only.
        reader.stop(WT_BUFFERED_STREAM_REJECTED);
        let _ = send.reset(varint_of(WT_BUFFERED_STREAM_REJECTED));
        return;
    }
    let fields = match read_headers(&mut reader, Some(first)).await {
        Ok(Some(f)) => f,
        Ok(None) => return,
        Err(end) => return conn.fail(&end),
    };
    let reply = |status: u16| headers_frame(&[(":status", &status.to_string())]);
    let method = field(&fields, ":method").unwrap_or("");
    let protocol = field(&fields, ":protocol");
    let (Some(path), Some(authority), Some(_scheme)) = (
        field(&fields, ":path"),
        field(&fields, ":authority"),
        field(&fields, ":scheme"),
    ) else {
        let _ = send.write_all(&reply(400)).await;
        let _ = send.finish();
        return;
    };
    if method != "CONNECT" || protocol.is_none() {
        // wtd serves WebTransport only; plain HTTP/3 requests get 404.
        let _ = send.write_all(&reply(404)).await;
        let _ = send.finish();
        return;
    }
    let settings = match conn.peer_settings(SETTINGS_WAIT).await {
        Ok(s) => s,
        Err(_) => {
            let _ = send.write_all(&reply(400)).await;
            let _ = send.finish();
            return;
        }
    };
    let Some(draft) = draft::server_pick(&settings, protocol.unwrap_or("")) else {
        let _ = send.write_all(&reply(501)).await;
        let _ = send.finish();
        return;
    };
    let request = RequestInfo {
        path: path.to_owned(),
        authority: authority.to_owned(),
        origin: field(&fields, "origin").map(str::to_owned),
    };
    let sink = match acceptor.accept(&request, draft) {
        Ok(sink) => sink,
        Err(status) => {
            let _ = send.write_all(&reply(status)).await;
            let _ = send.finish();
            return;
        }
    };
    let mut response = vec![(":status", "200")];
    if draft == wtd_draft::WTD_DRAFT_02 {
        response.push(("sec-webtransport-http3-draft", "draft02"));
    }
    let id = u64::from(send.id());
    let core = SessionCore::new(conn.clone(), id, draft, request, send, sink.clone());
    // Registered before the 200 leaves, so the client's first datagrams find the session.
    conn.register(&core);
    if !core.write_stream(&headers_frame(&response)).await {
        core.mark_closed(CloseInfo {
            code: 0,
            reason: "could not send the response".into(),
            cause: CloseCause::PeerReset,
        });
        return;
    }
    acceptor.established(core.clone(), sink);
    read_capsules(core, reader).await;
}

/// Client: opens a session on `conn` (which must be a client connection).
pub async fn open_session(
    conn: &Arc<Connection>,
    request: RequestInfo,
    sink: Arc<dyn SessionEvents>,
    timeout: Duration,
) -> Result<Arc<SessionCore>> {
    let settings = conn.peer_settings(timeout).await?;
    let draft = draft::client_pick(&settings).ok_or_else(|| {
        Error::new(
            wtd_result::WTD_ERR_NOT_SUPPORTED,
            "server's SETTINGS announce no WebTransport support",
        )
    })?;
    if conn.goaway_received() {
        return Err(Error::new(
            wtd_result::WTD_ERR_CONNECTION,
            "server sent GOAWAY",
        ));
    }
    let (mut send, recv) = conn
        .quic
        .open_bi()
        .await
        .map_err(|e| Error::new(wtd_result::WTD_ERR_CONNECTION, e.to_string()))?;
    let mut fields: Vec<(&str, &str)> = vec![
        (":method", "CONNECT"),
        (":scheme", "https"),
        (":authority", &request.authority),
        (":path", &request.path),
        (":protocol", draft.protocol()),
    ];
    if let Some(origin) = &request.origin {
        fields.push(("origin", origin));
    }
    if draft == wtd_draft::WTD_DRAFT_02 {
        fields.push(("sec-webtransport-http3-draft02", "1"));
    }
    send.write_all(&headers_frame(&fields))
        .await
        .map_err(|e| Error::new(wtd_result::WTD_ERR_CONNECTION, e.to_string()))?;
    let id = u64::from(send.id());
    let core = SessionCore::new(conn.clone(), id, draft, request, send, sink);
    // Registered before the response so datagrams that overtake it are not lost.
    conn.register(&core);
    let mut reader = StreamReader::new(recv);
    let status = match tokio::time::timeout(timeout, read_headers(&mut reader, None)).await {
        Err(_) => Err(Error::timeout("no response to the CONNECT request")),
        Ok(Ok(Some(fields))) => field(&fields, ":status")
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| Error::protocol("response without a valid :status")),
        Ok(Ok(None)) => Err(Error::new(
            wtd_result::WTD_ERR_REJECTED,
            "server closed the request without a response",
        )),
        Ok(Err(StreamEnd::Reset(code))) => Err(Error::new(
            wtd_result::WTD_ERR_REJECTED,
            format!("server reset the request (code 0x{code:x})"),
        )),
        Ok(Err(StreamEnd::ConnectionLost(e))) => {
            Err(Error::new(wtd_result::WTD_ERR_CONNECTION, e.to_string()))
        }
        Ok(Err(end @ StreamEnd::Protocol(_))) => {
            conn.fail(&end);
            Err(Error::protocol(format!("{end:?}")))
        }
    };
    match status {
        Ok(s) if (200..300).contains(&s) => {
            tokio::spawn(read_capsules(core.clone(), reader));
            Ok(core)
        }
        other => {
            let err = match other {
                Ok(s) => Error::new(
                    wtd_result::WTD_ERR_REJECTED,
                    format!("server answered :status {s}"),
                ),
                Err(e) => e,
            };
            core.mark_closed(CloseInfo {
                code: 0,
                reason: err.message.clone(),
                cause: CloseCause::PeerReset,
            });
            core.finish_send().await;
            conn.session_gone();
            Err(err)
        }
    }
}

/// Reads the CONNECT stream after the response until the session ends.
async fn read_capsules(core: Arc<SessionCore>, mut reader: StreamReader) {
    let mut parser = ConnectStreamParser::new();
    let end = loop {
        match reader.next_bytes().await {
            Ok(Some(bytes)) => match parser.feed(&bytes) {
                Ok(capsules) => {
                    for c in capsules {
                        match c {
                            Capsule::Close { code, reason } => {
                                if core.mark_closed(CloseInfo {
                                    code,
                                    reason,
                                    cause: CloseCause::PeerCapsule,
                                }) {
                                    core.finish_send().await;
                                }
                            }
                            Capsule::Drain => core.conn.notify_draining(&core),
                        }
                    }
                }
                Err(e) => break Err(StreamEnd::Protocol(e)),
            },
            // A FIN inside a frame or capsule is malformed, not a clean close.
            Ok(None) => break parser.finish().map_err(StreamEnd::Protocol),
            Err(e) => break Err(e),
        }
    };
    let info = match &end {
        Ok(()) => CloseInfo {
            code: 0,
            reason: String::new(),
            cause: CloseCause::PeerFin,
        },
        Err(StreamEnd::Reset(code)) => CloseInfo {
            code: 0,
            reason: format!("CONNECT stream reset (0x{code:x})"),
            cause: CloseCause::PeerReset,
        },
        Err(StreamEnd::ConnectionLost(e)) => close_info_for(e),
        Err(end @ StreamEnd::Protocol(e)) => {
            core.conn.fail(end);
            CloseInfo {
                code: 0,
                reason: e.to_string(),
                cause: CloseCause::ConnectionClosed,
            }
        }
    };
    core.set_peer_ended();
    if core.mark_closed(info) {
        core.finish_send().await;
        core.conn.session_gone();
    }
}
