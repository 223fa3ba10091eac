//! Capsules on the CONNECT stream (RFC 9297): CLOSE_WEBTRANSPORT_SESSION and DRAIN, found either
//! inside HTTP/3 DATA frames (Chromium, pywebtransport 0.21, Rust crates) or raw on the stream
//! (pywebtransport 0.6). Frames and capsules share one layout — type varint, length varint,
//! payload — so one parser reads both.

use super::errors::{
    H3Error, H3_EXCESSIVE_LOAD, H3_FRAME_ERROR, H3_FRAME_UNEXPECTED, H3_MESSAGE_ERROR,
};
use super::frame::{self, MAX_FRAME_PAYLOAD};
use super::varint;

/// CLOSE_WEBTRANSPORT_SESSION capsule type.
pub const CLOSE_WEBTRANSPORT_SESSION: u64 = 0x2843;
/// DRAIN_WEBTRANSPORT_SESSION capsule type.
pub const DRAIN_WEBTRANSPORT_SESSION: u64 = 0x78ae;
/// Longest close reason the drafts allow, in bytes.
pub const MAX_CLOSE_REASON: usize = 1024;

/// A capsule wtd acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capsule {
    /// The peer closed the session with an application code and reason.
    Close {
        /// Application error code.
        code: u32,
        /// UTF-8 reason (invalid bytes replaced).
        reason: String,
    },
    /// The peer asks to wind the session down.
    Drain,
}

/// Encodes CLOSE_WEBTRANSPORT_SESSION; the reason is cut to 1024 bytes on a char boundary.
/// `in_data_frame` wraps it in an HTTP/3 DATA frame (every peer but pywebtransport 0.6).
pub fn encode_close(code: u32, reason: &str, in_data_frame: bool) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    let mut capsule = Vec::new();
    frame::encode(CLOSE_WEBTRANSPORT_SESSION, &payload, &mut capsule);
    wrap(capsule, in_data_frame)
}

/// Encodes DRAIN_WEBTRANSPORT_SESSION.
pub fn encode_drain(in_data_frame: bool) -> Vec<u8> {
    let mut capsule = Vec::new();
    frame::encode(DRAIN_WEBTRANSPORT_SESSION, &[], &mut capsule);
    wrap(capsule, in_data_frame)
}

fn wrap(capsule: Vec<u8>, in_data_frame: bool) -> Vec<u8> {
    if !in_data_frame {
        return capsule;
    }
    let mut out = Vec::with_capacity(capsule.len() + 4);
    frame::encode(frame::DATA, &capsule, &mut out);
    out
}

fn decode(ty: u64, payload: &[u8]) -> Result<Option<Capsule>, H3Error> {
    match ty {
        CLOSE_WEBTRANSPORT_SESSION => {
            if payload.len() < 4 || payload.len() > 4 + MAX_CLOSE_REASON {
                return Err(H3Error::new(
                    H3_MESSAGE_ERROR,
                    "malformed CLOSE_WEBTRANSPORT_SESSION",
                ));
            }
            let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
            let reason = String::from_utf8_lossy(&payload[4..]).into_owned();
            Ok(Some(Capsule::Close { code, reason }))
        }
        DRAIN_WEBTRANSPORT_SESSION => Ok(Some(Capsule::Drain)),
        _ => Ok(None), // unknown capsules are skipped (RFC 9297 §3.2)
    }
}

/// Incremental reader for the bytes that follow the response HEADERS on a CONNECT stream.
#[derive(Debug, Default)]
pub struct ConnectStreamParser {
    frames: Vec<u8>,
    capsules: Vec<u8>,
}

impl ConnectStreamParser {
    /// A parser with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds stream bytes; returns the capsules completed by them.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Capsule>, H3Error> {
        self.frames.extend_from_slice(data);
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(h) = frame::parse_header(&self.frames[pos..]) {
            check_len(h.len)?;
            let end = pos + h.header_len + h.len as usize;
            if self.frames.len() < end {
                break;
            }
            let payload = &self.frames[pos + h.header_len..end];
            match h.ty {
                frame::DATA => self.capsules.extend_from_slice(payload),
                frame::HEADERS => {
                    return Err(H3Error::new(
                        H3_FRAME_UNEXPECTED,
                        "HEADERS after the CONNECT response",
                    ))
                }
                ty => {
                    frame::check_not_http2(ty)?;
                    // A raw capsule (pywebtransport 0.6) or an unknown frame to ignore.
                    out.extend(decode(ty, payload)?);
                }
            }
            pos = end;
            if h.ty == frame::DATA {
                // Emit DATA-carried capsules now, so they keep their place relative to raw
                // capsules later in the same chunk (order must not depend on how bytes arrive).
                self.drain_capsules(&mut out)?;
            }
        }
        self.frames.drain(..pos);
        Ok(out)
    }

    /// Bytes of a partial frame or capsule still buffered (non-zero at FIN = truncated stream).
    pub fn pending(&self) -> usize {
        self.frames.len() + self.capsules.len()
    }

    /// Call at FIN: a stream that ends inside a frame is H3_FRAME_ERROR (RFC 9114 §7.1), one that
    /// ends inside a capsule carried by complete DATA frames is H3_MESSAGE_ERROR (RFC 9297 §3.3).
    pub fn finish(&self) -> Result<(), H3Error> {
        if !self.frames.is_empty() {
            return Err(H3Error::new(
                H3_FRAME_ERROR,
                "CONNECT stream ended inside a frame",
            ));
        }
        if !self.capsules.is_empty() {
            return Err(H3Error::new(
                H3_MESSAGE_ERROR,
                "CONNECT stream ended inside a capsule",
            ));
        }
        Ok(())
    }

    fn drain_capsules(&mut self, out: &mut Vec<Capsule>) -> Result<(), H3Error> {
        let mut pos = 0;
        while let Some((ty, a)) = varint::decode(&self.capsules[pos..]) {
            let Some((len, b)) = varint::decode(&self.capsules[pos + a..]) else {
                break;
            };
            check_len(len)?;
            let end = pos + a + b + len as usize;
            if self.capsules.len() < end {
                break;
            }
            out.extend(decode(ty, &self.capsules[pos + a + b..end])?);
            pos = end;
        }
        self.capsules.drain(..pos);
        Ok(())
    }
}

fn check_len(len: u64) -> Result<(), H3Error> {
    if len > MAX_FRAME_PAYLOAD {
        return Err(H3Error::new(
            H3_EXCESSIVE_LOAD,
            format!("{len}-byte frame on CONNECT stream"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAMED: [u8; 12] = [
        0x00, 0x0a, 0x68, 0x43, 0x07, 0, 0, 0, 0x2a, b'b', b'y', b'e',
    ];
    const RAW: [u8; 10] = [0x68, 0x43, 0x07, 0, 0, 0, 0x2a, b'b', b'y', b'e'];

    fn bye() -> Capsule {
        Capsule::Close {
            code: 42,
            reason: "bye".into(),
        }
    }

    #[test]
    fn encodes_like_the_peers() {
        assert_eq!(encode_close(42, "bye", true), FRAMED); // Chromium, pywt021, wtq
        assert_eq!(encode_close(42, "bye", false), RAW); // pywt061
        assert_eq!(encode_drain(false), [0x80, 0x00, 0x78, 0xae, 0x00]);
        let long = "é".repeat(600);
        let enc = encode_close(1, &long, false);
        assert!(enc.len() <= 4 + 4 + MAX_CLOSE_REASON);
    }

    #[test]
    fn decodes_framed_raw_and_split() {
        assert_eq!(
            ConnectStreamParser::new().feed(&FRAMED).unwrap(),
            vec![bye()]
        );
        assert_eq!(ConnectStreamParser::new().feed(&RAW).unwrap(), vec![bye()]);
        for bytes in [&FRAMED[..], &RAW[..]] {
            let mut p = ConnectStreamParser::new();
            let mut got = Vec::new();
            for b in bytes {
                got.extend(p.feed(&[*b]).unwrap());
            }
            assert_eq!(got, vec![bye()]);
            assert_eq!(p.pending(), 0);
        }
        // A capsule split across two DATA frames, after an unknown (GREASE) frame.
        let mut bytes = vec![0x21, 0x01, 0xff];
        frame::encode(frame::DATA, &RAW[..3], &mut bytes);
        frame::encode(frame::DATA, &RAW[3..], &mut bytes);
        assert_eq!(
            ConnectStreamParser::new().feed(&bytes).unwrap(),
            vec![bye()]
        );
        assert_eq!(
            ConnectStreamParser::new()
                .feed(&encode_drain(true))
                .unwrap(),
            vec![Capsule::Drain]
        );
    }

    #[test]
    fn order_does_not_depend_on_chunking() {
        // A DATA-framed DRAIN then a raw CLOSE: fed whole they used to come out CLOSE first,
        // because DATA-carried capsules were only emitted at the end of each feed.
        let mut bytes = encode_drain(true);
        bytes.extend_from_slice(&RAW);
        let want = vec![Capsule::Drain, bye()];
        assert_eq!(ConnectStreamParser::new().feed(&bytes).unwrap(), want);
        let mut p = ConnectStreamParser::new();
        let mut got = Vec::new();
        for b in &bytes {
            got.extend(p.feed(&[*b]).unwrap());
        }
        assert_eq!(got, want);
    }

    #[test]
    fn rejects_malformed() {
        let short = [0x00, 0x04, 0x68, 0x43, 0x01, 0x00];
        assert_eq!(
            ConnectStreamParser::new().feed(&short).unwrap_err().code,
            H3_MESSAGE_ERROR
        );
        let headers = [0x01, 0x01, 0xd9];
        assert_eq!(
            ConnectStreamParser::new().feed(&headers).unwrap_err().code,
            H3_FRAME_UNEXPECTED
        );
        let huge = [0x00, 0x80, 0x10, 0x00, 0x00];
        assert_eq!(
            ConnectStreamParser::new().feed(&huge).unwrap_err().code,
            H3_EXCESSIVE_LOAD
        );
        let h2 = [0x06, 0x00];
        assert_eq!(
            ConnectStreamParser::new().feed(&h2).unwrap_err().code,
            H3_FRAME_UNEXPECTED
        );
        let mut p = ConnectStreamParser::new();
        p.feed(&FRAMED[..5]).unwrap();
        assert!(p.pending() > 0);
    }

    #[test]
    fn finish_rejects_truncation() {
        let mut p = ConnectStreamParser::new();
        p.feed(&FRAMED).unwrap();
        assert_eq!(p.finish(), Ok(()));
        // Cut inside the DATA frame (and inside a raw capsule): a truncated frame.
        for cut in [&FRAMED[..5], &RAW[..4], &[0x00][..]] {
            let mut p = ConnectStreamParser::new();
            p.feed(cut).unwrap();
            assert_eq!(p.finish().unwrap_err().code, H3_FRAME_ERROR, "{cut:02x?}");
        }
        // Complete DATA frame carrying half a capsule: a truncated capsule.
        let mut bytes = Vec::new();
        frame::encode(frame::DATA, &RAW[..4], &mut bytes);
        let mut p = ConnectStreamParser::new();
        assert!(p.feed(&bytes).unwrap().is_empty());
        assert_eq!(p.finish().unwrap_err().code, H3_MESSAGE_ERROR);
    }
}
