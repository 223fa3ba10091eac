//! The library's error type and the fixed result codes it maps to at the C boundary.

use std::fmt;

/// Fixed result codes shared by the Rust API and the C ABI (`wtd_result`). Values never change;
/// new codes are only appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub enum wtd_result {
    /// Success.
    WTD_OK = 0,
    /// A NULL pointer, an out-of-range value or a malformed string was passed in.
    WTD_ERR_INVALID_ARGUMENT = 1,
    /// The handle (session, server, client, transport) is closed.
    WTD_ERR_CLOSED = 2,
    /// The operation did not complete within its timeout.
    WTD_ERR_TIMEOUT = 3,
    /// The operation would block: nothing to receive, or no room to send right now.
    WTD_ERR_WOULD_BLOCK = 4,
    /// The datagram is larger than `max_datagram_size` (or is empty where that is not allowed).
    WTD_ERR_TOO_LARGE = 5,
    /// The caller's output buffer is too small; the required size is reported where possible.
    WTD_ERR_BUFFER_TOO_SMALL = 6,
    /// TLS setup or certificate verification failed (bad file, wrong pinned hash, untrusted).
    WTD_ERR_TLS = 7,
    /// The QUIC connection could not be established or was lost.
    WTD_ERR_CONNECTION = 8,
    /// The peer refused the WebTransport session (non-2xx status) or the path/origin was refused.
    WTD_ERR_REJECTED = 9,
    /// The peer violated HTTP/3 or WebTransport (malformed frame, settings, QPACK, capsule).
    WTD_ERR_PROTOCOL = 10,
    /// An operating-system I/O error (bind, socket, file).
    WTD_ERR_IO = 11,
    /// A payload could not be serialized or parsed (JSON, structured, reliability frames).
    WTD_ERR_SERIALIZATION = 12,
    /// The peer does not support what was asked (no WebTransport, no datagrams).
    WTD_ERR_NOT_SUPPORTED = 13,
    /// The call is not allowed in the current state (e.g. a blocking call from a callback thread,
    /// runtime configuration after the runtime started).
    WTD_ERR_INVALID_STATE = 14,
    /// A panic was caught inside the library; the operation did not complete.
    WTD_ERR_PANIC = 15,
    /// An internal invariant failed; please report it.
    WTD_ERR_INTERNAL = 16,
}

/// The library error: a result code plus a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The fixed code.
    pub code: wtd_result,
    /// What went wrong, for `wtd_last_error_message()` and logs.
    pub message: String,
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Builds an error with a code and a message.
    pub fn new(code: wtd_result, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
    /// `WTD_ERR_INVALID_ARGUMENT`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(wtd_result::WTD_ERR_INVALID_ARGUMENT, message)
    }
    /// `WTD_ERR_CLOSED`.
    pub fn closed(message: impl Into<String>) -> Self {
        Self::new(wtd_result::WTD_ERR_CLOSED, message)
    }
    /// `WTD_ERR_PROTOCOL`.
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(wtd_result::WTD_ERR_PROTOCOL, message)
    }
    /// `WTD_ERR_TIMEOUT`.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(wtd_result::WTD_ERR_TIMEOUT, message)
    }
    /// `WTD_ERR_INTERNAL`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(wtd_result::WTD_ERR_INTERNAL, message)
    }
    /// `WTD_ERR_WOULD_BLOCK`.
    pub fn would_block(message: impl Into<String>) -> Self {
        Self::new(wtd_result::WTD_ERR_WOULD_BLOCK, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

impl wtd_result {
    /// The constant's name, e.g. `"WTD_ERR_CLOSED"`.
    pub fn as_str(self) -> &'static str {
        use wtd_result::*;
        match self {
            WTD_OK => "WTD_OK",
            WTD_ERR_INVALID_ARGUMENT => "WTD_ERR_INVALID_ARGUMENT",
            WTD_ERR_CLOSED => "WTD_ERR_CLOSED",
            WTD_ERR_TIMEOUT => "WTD_ERR_TIMEOUT",
            WTD_ERR_WOULD_BLOCK => "WTD_ERR_WOULD_BLOCK",
            WTD_ERR_TOO_LARGE => "WTD_ERR_TOO_LARGE",
            WTD_ERR_BUFFER_TOO_SMALL => "WTD_ERR_BUFFER_TOO_SMALL",
            WTD_ERR_TLS => "WTD_ERR_TLS",
            WTD_ERR_CONNECTION => "WTD_ERR_CONNECTION",
            WTD_ERR_REJECTED => "WTD_ERR_REJECTED",
            WTD_ERR_PROTOCOL => "WTD_ERR_PROTOCOL",
            WTD_ERR_IO => "WTD_ERR_IO",
            WTD_ERR_SERIALIZATION => "WTD_ERR_SERIALIZATION",
            WTD_ERR_NOT_SUPPORTED => "WTD_ERR_NOT_SUPPORTED",
            WTD_ERR_INVALID_STATE => "WTD_ERR_INVALID_STATE",
            WTD_ERR_PANIC => "WTD_ERR_PANIC",
            WTD_ERR_INTERNAL => "WTD_ERR_INTERNAL",
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(wtd_result::WTD_ERR_IO, e.to_string())
    }
}
