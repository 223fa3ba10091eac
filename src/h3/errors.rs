//! HTTP/3, QPACK and WebTransport error codes, and the error that closes a connection.

/// No error (graceful close).
pub const H3_NO_ERROR: u64 = 0x100;
/// Peer violated the protocol in a way no more specific code covers.
pub const H3_GENERAL_PROTOCOL_ERROR: u64 = 0x101;
/// Internal error in the HTTP stack.
pub const H3_INTERNAL_ERROR: u64 = 0x102;
/// A stream of an unknown or forbidden type, or a duplicate critical stream.
pub const H3_STREAM_CREATION_ERROR: u64 = 0x103;
/// A control or QPACK stream was closed.
pub const H3_CLOSED_CRITICAL_STREAM: u64 = 0x104;
/// A frame not permitted on this stream.
pub const H3_FRAME_UNEXPECTED: u64 = 0x105;
/// A frame whose layout or size is wrong.
pub const H3_FRAME_ERROR: u64 = 0x106;
/// The peer generates excessive load (e.g. an oversized header block).
pub const H3_EXCESSIVE_LOAD: u64 = 0x107;
/// A stream or push id was used incorrectly.
pub const H3_ID_ERROR: u64 = 0x108;
/// A SETTINGS frame was invalid.
pub const H3_SETTINGS_ERROR: u64 = 0x109;
/// The control stream did not start with SETTINGS.
pub const H3_MISSING_SETTINGS: u64 = 0x10a;
/// The request was rejected without processing.
pub const H3_REQUEST_REJECTED: u64 = 0x10b;
/// The request was cancelled (or its response is no longer wanted).
pub const H3_REQUEST_CANCELLED: u64 = 0x10c;
/// The request stream ended (or stalled past a deadline) without a complete request.
pub const H3_REQUEST_INCOMPLETE: u64 = 0x10d;
/// The request or response is malformed.
pub const H3_MESSAGE_ERROR: u64 = 0x10e;
/// A malformed HTTP datagram (RFC 9297).
pub const H3_DATAGRAM_ERROR: u64 = 0x33;
/// QPACK: a field section could not be decoded.
pub const QPACK_DECOMPRESSION_FAILED: u64 = 0x200;
/// QPACK: an encoder-stream instruction was invalid.
pub const QPACK_ENCODER_STREAM_ERROR: u64 = 0x201;
/// WebTransport: a stream for a session wtd does not accept (wtd carries datagrams only).
pub const WT_BUFFERED_STREAM_REJECTED: u64 = 0x3994_bd84;
/// WebTransport: the session is gone.
pub const WT_SESSION_GONE: u64 = 0x170d_7b68;
/// Start of the range into which WebTransport application error codes are mapped.
pub const WT_APP_ERROR_FIRST: u64 = 0x52e4_a40f_a8db;

/// Maps a WebTransport application error code into the HTTP/3 error space (skips the reserved
/// GREASE code points, one per 0x1e values).
pub fn wt_app_error_to_h3(code: u32) -> u64 {
    let c = u64::from(code);
    WT_APP_ERROR_FIRST + c + c / 0x1e
}

/// The inverse of [`wt_app_error_to_h3`]; `None` outside the range or on a GREASE code point.
pub fn h3_to_wt_app_error(h3: u64) -> Option<u32> {
    let last = wt_app_error_to_h3(u32::MAX);
    if !(WT_APP_ERROR_FIRST..=last).contains(&h3) || (h3 - 0x21) % 0x1f == 0 {
        return None;
    }
    let shifted = h3 - WT_APP_ERROR_FIRST;
    Some((shifted - shifted / 0x1f) as u32)
}

/// A connection error: the HTTP/3 code to close the connection with and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H3Error {
    /// HTTP/3 application error code for CONNECTION_CLOSE.
    pub code: u64,
    /// Human-readable reason (also sent as the close reason).
    pub reason: String,
}

impl H3Error {
    /// Builds an error.
    pub fn new(code: u64, reason: impl Into<String>) -> Self {
        H3Error {
            code,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for H3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "H3 error 0x{:x}: {}", self.code, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wt_code_mapping_matches_wire_facts() {
        // wtq closed with 42 mapped to 0x52e4a40fa906 (WIRE-FACTS §1.6).
        assert_eq!(wt_app_error_to_h3(42), 0x52e4_a40f_a906);
        assert_eq!(h3_to_wt_app_error(0x52e4_a40f_a906), Some(42));
        for code in [0u32, 1, 29, 30, 31, 59, 60, 1000, u32::MAX] {
            assert_eq!(
                h3_to_wt_app_error(wt_app_error_to_h3(code)),
                Some(code),
                "{code}"
            );
        }
        assert_eq!(h3_to_wt_app_error(H3_NO_ERROR), None);
        assert_eq!(h3_to_wt_app_error(0x2a), None);
    }
}
