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
use super::settings::MAX_SESSIONS_ADVERTISED;
use super::stream_reader::{StreamEnd, StreamReader};
use crate::error::{wtd_result, Error, Result};

/// How long a server waits for a client's SETTINGS before answering its CONNECT.
const SETTINGS_WAIT: Duration = Duration::from_secs(5);

/// Why a server refused a request before it became a session (each one is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The header block exceeded the field-section size or field-count limit (HTTP 431).
    HeadersTooLarge,
    /// The request was malformed (HTTP 400; see [`validate_request`]).
    Malformed,
    /// The connection already had the advertised number of sessions (stream reset with
    /// H3_REQUEST_REJECTED, as draft-ietf-webtrans-http3 §3.4 requires).
    TooManySessions,
    /// The request's HEADERS did not arrive within the header deadline (stream reset with
    /// H3_REQUEST_INCOMPLETE).
    HeaderTimeout,
}

/// Default deadline for a request stream's first bytes and HEADERS frame.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// A request was refused by the HTTP/3 layer itself (for counters).
    fn refused(&self, _reason: Refusal) {}
    /// An accepted request could not become a session (its response could not be sent):
    /// `established` will not be called for `sink`.
    fn abandoned(&self, _sink: Arc<Self::Sink>) {}
    /// How long a request stream may take to deliver its complete HEADERS.
    fn header_timeout(&self) -> Duration {
        DEFAULT_HEADER_TIMEOUT
    }
}

/// How long a response HEADERS frame may take to leave (a peer withholding flow-control credit
/// must not pin the request task).
const RESPONSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers a request with a bare `:status` and FIN, giving up after [`RESPONSE_WRITE_TIMEOUT`].
async fn respond(send: &mut quinn::SendStream, status: u16) {
    let frame = headers_frame(&[(":status", &status.to_string())]);
    match tokio::time::timeout(RESPONSE_WRITE_TIMEOUT, send.write_all(&frame)).await {
        Ok(Ok(())) => {
            let _ = send.finish();
        }
        _ => {
            let _ = send.reset(varint_of(H3_REQUEST_REJECTED));
        }
    }
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

/// What reading a header block produced.
enum Head {
    /// The decoded fields (within [`qpack::FieldLimits::WTD`]).
    Fields(Vec<(String, String)>),
    /// The block exceeded the limits; decoding stopped there.
    TooLarge(String),
    /// The stream ended cleanly before any HEADERS frame.
    Fin,
    /// The stream is a WebTransport bidirectional stream (server side only).
    WebTransportStream,
}

/// Reads frames until HEADERS, skipping unknown ones, and decodes the block within wtd's limits.
async fn read_headers(
    reader: &mut StreamReader,
    first_type: Option<u64>,
) -> std::result::Result<Head, StreamEnd> {
    let mut ty = first_type;
    loop {
        let t = match ty.take() {
            Some(t) => t,
            None => match reader.read_varint().await? {
                Some(t) => t,
                None => return Ok(Head::Fin),
            },
        };
        frame::check_not_http2(t)?;
        let payload = reader.read_frame_payload().await?;
        match t {
            frame::HEADERS => {
                return match qpack::decode_field_section_limited(&payload, qpack::FieldLimits::WTD)
                {
                    Ok(fields) => Ok(Head::Fields(fields)),
                    Err(qpack::QpackError::TooLarge(m)) => Ok(Head::TooLarge(m)),
                    Err(e) => Err(StreamEnd::Protocol(H3Error::new(
                        e.h3_code(),
                        e.to_string(),
                    ))),
                };
            }
            frame::DATA => {
                return Err(H3Error::new(H3_FRAME_UNEXPECTED, "DATA before HEADERS").into())
            }
            _ => {} // unknown / GREASE frames are skipped
        }
    }
}

/// Request pseudo-header fields wtd accepts (RFC 9114 §4.3.1, RFC 9220 §3).
const REQUEST_PSEUDO_HEADERS: [&str; 5] =
    [":method", ":scheme", ":authority", ":path", ":protocol"];

/// Checks a request's header section for what RFC 9114 §4.1.2 and §4.3.1 call malformed: a NUL,
/// CR or LF in any name or value, an uppercase name, an unknown or repeated pseudo-header, a
/// pseudo-header after a regular field, a `:scheme` other than "https", or a `:path` that does
/// not start with "/". Returns why, for the log; the request is then answered 400. Field values
/// that pass reach the application (and the C request filter) byte for byte.
pub fn validate_request(fields: &[(String, String)]) -> std::result::Result<(), String> {
    let mut seen = [false; REQUEST_PSEUDO_HEADERS.len()];
    let mut regular = false;
    for (name, value) in fields {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("uppercase field name {name:?}"));
        }
        if name
            .bytes()
            .chain(value.bytes())
            .any(|b| matches!(b, 0 | b'\r' | b'\n'))
        {
            return Err(format!("NUL, CR or LF in field {name:?}"));
        }
        if name.starts_with(':') {
            if regular {
                return Err(format!("pseudo-header {name:?} after a regular field"));
            }
            let Some(i) = REQUEST_PSEUDO_HEADERS.iter().position(|p| p == name) else {
                return Err(format!("unknown pseudo-header {name:?}"));
            };
            if seen[i] {
                return Err(format!("duplicate pseudo-header {name:?}"));
            }
            seen[i] = true;
        } else {
            regular = true;
        }
    }
    if let Some(scheme) = field(fields, ":scheme") {
        if scheme != "https" {
            return Err(format!(":scheme {scheme:?} is not \"https\""));
        }
    }
    if let Some(path) = field(fields, ":path") {
        if !path.starts_with('/') {
            return Err(format!(":path {path:?} does not start with \"/\""));
        }
    }
    Ok(())
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
    let head = tokio::time::timeout(acceptor.header_timeout(), async {
        let first = match reader.read_varint().await {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(Head::Fin),
            Err(e) => return Err(e),
        };
        if first == frame::WEBTRANSPORT_STREAM {
            return Ok(Head::WebTransportStream);
        }
        read_headers(&mut reader, Some(first)).await
    })
    .await;
    let Ok(head) = head else {
        log_debug!(
            "request stream from {} reset: no complete HEADERS in {:?}",
            conn.quic.remote_address(),
            acceptor.header_timeout()
        );
        acceptor.refused(Refusal::HeaderTimeout);
        reader.stop(H3_REQUEST_INCOMPLETE);
        let _ = send.reset(varint_of(H3_REQUEST_INCOMPLETE));
        return;
    };
    let fields = match head {
        Ok(Head::WebTransportStream) => {
            // A WebTransport bidirectional stream: wtd carries datagrams only.
            reader.stop(WT_BUFFERED_STREAM_REJECTED);
            let _ = send.reset(varint_of(WT_BUFFERED_STREAM_REJECTED));
            return;
        }
        Ok(Head::Fields(f)) => f,
        Ok(Head::TooLarge(why)) => {
            log_debug!(
                "request from {} refused with 431: {why}",
                conn.quic.remote_address()
            );
            acceptor.refused(Refusal::HeadersTooLarge);
            reader.stop(H3_REQUEST_REJECTED);
            return respond(&mut send, 431).await;
        }
        Ok(Head::Fin) => return,
        Err(StreamEnd::Reset(_)) | Err(StreamEnd::ConnectionLost(_)) => return,
        Err(end) => return conn.fail(&end),
    };
    let refuse_malformed = |why: &str| {
        log_debug!(
            "malformed request from {} answered 400: {why}",
            conn.quic.remote_address()
        );
        acceptor.refused(Refusal::Malformed);
    };
    if let Err(why) = validate_request(&fields) {
        refuse_malformed(&why);
        return respond(&mut send, 400).await;
    }
    let method = field(&fields, ":method").unwrap_or("");
    let protocol = field(&fields, ":protocol");
    let (Some(path), Some(authority), Some(_scheme)) = (
        field(&fields, ":path"),
        field(&fields, ":authority"),
        field(&fields, ":scheme"),
    ) else {
        refuse_malformed("missing :path, :authority or :scheme");
        return respond(&mut send, 400).await;
    };
    if method != "CONNECT" || protocol.is_none() {
        // wtd serves WebTransport only; plain HTTP/3 requests get 404.
        return respond(&mut send, 404).await;
    }
    let settings = match conn.peer_settings(SETTINGS_WAIT).await {
        Ok(s) => s,
        Err(_) => return respond(&mut send, 400).await,
    };
    let Some(draft) = draft::server_pick(&settings, protocol.unwrap_or("")) else {
        return respond(&mut send, 501).await;
    };
    let request = RequestInfo {
        path: path.to_owned(),
        authority: authority.to_owned(),
        origin: field(&fields, "origin").map(str::to_owned),
    };
    // The decoded block is not needed any more: do not hold it for the session's lifetime.
    drop(fields);
    // The place is reserved at the check (requests handled at once on other runtime threads
    // see it) and becomes the session at `register` below, or is given back on any return.
    let Some(slot) = conn.reserve_session(MAX_SESSIONS_ADVERTISED as usize) else {
        log_debug!(
            "request from {} rejected: {} sessions already open",
            conn.quic.remote_address(),
            MAX_SESSIONS_ADVERTISED
        );
        acceptor.refused(Refusal::TooManySessions);
        reader.stop(H3_REQUEST_REJECTED);
        let _ = send.reset(varint_of(H3_REQUEST_REJECTED));
        return;
    };
    let sink = match acceptor.accept(&request, draft) {
        Ok(sink) => sink,
        Err(status) => return respond(&mut send, status).await,
    };
    let mut response = vec![(":status", "200")];
    if draft == wtd_draft::WTD_DRAFT_02 {
        response.push(("sec-webtransport-http3-draft", "draft02"));
    }
    let id = u64::from(send.id());
    let core = SessionCore::new(conn.clone(), id, draft, request, send, sink.clone());
    // Registered before the 200 leaves, so the client's first datagrams find the session.
    slot.register(&core);
    let sent = tokio::time::timeout(
        RESPONSE_WRITE_TIMEOUT,
        core.write_stream(&headers_frame(&response)),
    )
    .await;
    if sent != Ok(true) {
        core.mark_closed(CloseInfo {
            code: 0,
            reason: "could not send the response".into(),
            cause: CloseCause::PeerReset,
        });
        acceptor.abandoned(sink);
        return;
    }
    acceptor.established(core.clone(), sink);
    read_capsules(core, reader).await;
}

/// Client: opens a session on `conn` (which must be a client connection), giving up with
/// WTD_ERR_TIMEOUT at `deadline` (waiting for SETTINGS, for stream credit, for flow-control
/// credit to send the request, or for the response).
pub async fn open_session(
    conn: &Arc<Connection>,
    request: RequestInfo,
    sink: Arc<dyn SessionEvents>,
    deadline: tokio::time::Instant,
) -> Result<Arc<SessionCore>> {
    let settings = conn
        .peer_settings(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await?;
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
    let (mut send, recv) = tokio::time::timeout_at(deadline, conn.quic.open_bi())
        .await
        .map_err(|_| Error::timeout("the server granted no stream for the CONNECT request"))?
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
    match tokio::time::timeout_at(deadline, send.write_all(&headers_frame(&fields))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Error::new(wtd_result::WTD_ERR_CONNECTION, e.to_string())),
        Err(_) => {
            let _ = send.reset(varint_of(H3_REQUEST_CANCELLED));
            return Err(Error::timeout(
                "the server granted no flow-control credit for the CONNECT request",
            ));
        }
    }
    let id = u64::from(send.id());
    let core = SessionCore::new(conn.clone(), id, draft, request, send, sink);
    // Registered before the response so datagrams that overtake it are not lost.
    conn.register(&core);
    let mut reader = StreamReader::new(recv);
    let status = match tokio::time::timeout_at(deadline, read_headers(&mut reader, None)).await {
        Err(_) => Err(Error::timeout("no response to the CONNECT request")),
        Ok(Ok(Head::Fields(fields))) => field(&fields, ":status")
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| Error::protocol("response without a valid :status")),
        Ok(Ok(Head::TooLarge(why))) => {
            let e = H3Error::new(H3_EXCESSIVE_LOAD, format!("response headers: {why}"));
            conn.close_with(&e);
            Err(Error::protocol(e.to_string()))
        }
        Ok(Ok(Head::WebTransportStream)) => Err(Error::protocol("unexpected stream signal")),
        Ok(Ok(Head::Fin)) => Err(Error::new(
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
                reason: err.message.to_string(),
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
