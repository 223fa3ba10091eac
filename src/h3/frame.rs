//! HTTP/3 frames (RFC 9114 §7): type and length varints followed by the payload.

use super::errors::{H3Error, H3_FRAME_ERROR, H3_FRAME_UNEXPECTED};
use super::varint;

/// DATA frame.
pub const DATA: u64 = 0x0;
/// HEADERS frame.
pub const HEADERS: u64 = 0x1;
/// CANCEL_PUSH frame.
pub const CANCEL_PUSH: u64 = 0x3;
/// SETTINGS frame.
pub const SETTINGS: u64 = 0x4;
/// PUSH_PROMISE frame.
pub const PUSH_PROMISE: u64 = 0x5;
/// GOAWAY frame.
pub const GOAWAY: u64 = 0x7;
/// MAX_PUSH_ID frame.
pub const MAX_PUSH_ID: u64 = 0xd;
/// First bytes of a WebTransport bidirectional stream (draft-02..15: WEBTRANSPORT_STREAM 0x41).
pub const WEBTRANSPORT_STREAM: u64 = 0x41;

/// Largest frame payload wtd accepts on control and request streams (settings, headers,
/// capsules); larger ones close the connection with H3_EXCESSIVE_LOAD.
pub const MAX_FRAME_PAYLOAD: u64 = 64 * 1024;

/// Appends one frame.
pub fn encode(ty: u64, payload: &[u8], out: &mut Vec<u8>) {
    varint::encode(ty, out);
    varint::encode(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// A frame header parsed from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Frame type.
    pub ty: u64,
    /// Payload length.
    pub len: u64,
    /// Bytes the header itself took.
    pub header_len: usize,
}

/// Parses a frame header; `None` if `buf` holds only part of it.
pub fn parse_header(buf: &[u8]) -> Option<Header> {
    let (ty, a) = varint::decode(buf)?;
    let (len, b) = varint::decode(&buf[a..])?;
    Some(Header {
        ty,
        len,
        header_len: a + b,
    })
}

/// Frame types reserved by HTTP/2 that must not appear in HTTP/3 (RFC 9114 §7.2.8).
pub fn is_http2_reserved(ty: u64) -> bool {
    matches!(ty, 0x2 | 0x6 | 0x8 | 0x9)
}

/// Rejects HTTP/2-reserved frame types anywhere (H3_FRAME_UNEXPECTED).
pub fn check_not_http2(ty: u64) -> Result<(), H3Error> {
    if is_http2_reserved(ty) {
        return Err(H3Error::new(
            H3_FRAME_UNEXPECTED,
            format!("HTTP/2 frame type 0x{ty:x}"),
        ));
    }
    Ok(())
}

/// Parses a GOAWAY payload (one varint id).
pub fn parse_goaway(payload: &[u8]) -> Result<u64, H3Error> {
    match varint::decode(payload) {
        Some((id, n)) if n == payload.len() => Ok(id),
        _ => Err(H3Error::new(H3_FRAME_ERROR, "malformed GOAWAY")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_parse() {
        let mut out = Vec::new();
        encode(
            DATA,
            &[0x68, 0x43, 0x07, 0, 0, 0, 0x2a, b'b', b'y', b'e'],
            &mut out,
        );
        // Chromium's close: DATA frame of length 10 around the capsule (WIRE-FACTS §1.6).
        assert_eq!(out[..2], [0x00, 0x0a]);
        let h = parse_header(&out).unwrap();
        assert_eq!(
            h,
            Header {
                ty: DATA,
                len: 10,
                header_len: 2
            }
        );
        assert_eq!(parse_header(&[0x41]), None);
        assert_eq!(parse_header(&[0x40]), None);
    }

    #[test]
    fn goaway_and_reserved() {
        assert_eq!(parse_goaway(&[0x04]), Ok(4));
        assert_eq!(parse_goaway(&[]).unwrap_err().code, H3_FRAME_ERROR);
        assert_eq!(
            parse_goaway(&[0x04, 0x00]).unwrap_err().code,
            H3_FRAME_ERROR
        );
        for ty in [2, 6, 8, 9] {
            assert_eq!(check_not_http2(ty).unwrap_err().code, H3_FRAME_UNEXPECTED);
        }
        assert!(check_not_http2(0x21).is_ok());
    }
}
