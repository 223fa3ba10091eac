//! The library's error type and the fixed result codes it maps to at the C boundary.

use std::borrow::Cow;
use std::fmt;

/// Generates everything a C enum needs from ONE list of `Variant => c"name"` pairs, placed right
/// under the enum (cbindgen does not expand macros, so the `#[repr(u32)]` enum itself stays plain
/// Rust for the header): `ALL`, `TryFrom<u32>`, [`from_u32`](Self), the name string (`c_name`,
/// `name`) and the constant's identifier (`ident`). The `match` in `c_name` is exhaustive, so a
/// variant missing from the list does not compile, and the conversions cannot disagree with it.
///
/// Values cross the C boundary as plain `uint32_t`: a value from C goes through `TryFrom<u32>`
/// (never transmuted), and `c_name_of` map an unknown value to "unknown".
macro_rules! c_enum {
    ($ty:ident { $($v:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$v),+];

            /// The value's name string (static, NUL-terminated for C).
            pub const fn c_name(self) -> &'static std::ffi::CStr {
                match self {
                    $($ty::$v => $name),+
                }
            }

            /// The value's name string.
            pub fn name(self) -> &'static str {
                self.c_name().to_str().unwrap_or("unknown")
            }

            /// The C identifier of the value, e.g. `"WTD_ERR_CLOSED"`.
            pub const fn ident(self) -> &'static str {
                match self {
                    $($ty::$v => stringify!($v)),+
                }
            }

            /// The value for a raw integer from C; `None` when out of range.
            pub fn from_u32(v: u32) -> Option<Self> {
                Self::try_from(v).ok()
            }

            /// The name string of a raw integer from C, or "unknown" (both static, for C).
            pub fn c_name_of(v: u32) -> *const std::ffi::c_char {
                match Self::from_u32(v) {
                    Some(e) => e.c_name().as_ptr(),
                    None => c"unknown".as_ptr(),
                }
            }
        }

        impl TryFrom<u32> for $ty {
            type Error = u32;
            fn try_from(v: u32) -> std::result::Result<Self, u32> {
                $(if v == $ty::$v as u32 {
                    return Ok($ty::$v);
                })+
                Err(v)
            }
        }
    };
}
pub(crate) use c_enum;

/// Fixed result codes shared by the Rust API and the C ABI (`wtd_result`). Values never change;
/// new codes are only appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
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

c_enum!(wtd_result {
    WTD_OK => c"ok",
    WTD_ERR_INVALID_ARGUMENT => c"invalid argument",
    WTD_ERR_CLOSED => c"closed",
    WTD_ERR_TIMEOUT => c"timed out",
    WTD_ERR_WOULD_BLOCK => c"would block",
    WTD_ERR_TOO_LARGE => c"datagram too large",
    WTD_ERR_BUFFER_TOO_SMALL => c"buffer too small",
    WTD_ERR_TLS => c"TLS error",
    WTD_ERR_CONNECTION => c"connection error",
    WTD_ERR_REJECTED => c"session rejected",
    WTD_ERR_PROTOCOL => c"protocol violation",
    WTD_ERR_IO => c"I/O error",
    WTD_ERR_SERIALIZATION => c"serialization error",
    WTD_ERR_NOT_SUPPORTED => c"not supported",
    WTD_ERR_INVALID_STATE => c"invalid state",
    WTD_ERR_PANIC => c"internal panic",
    WTD_ERR_INTERNAL => c"internal error",
});

/// The library error: a result code plus a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The fixed code.
    pub code: wtd_result,
    /// What went wrong, for `wtd_last_error_message()` and logs. Borrowed when it is a fixed
    /// text, so the frequent errors (WOULD_BLOCK from a poll) allocate nothing.
    pub message: Cow<'static, str>,
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Builds an error with a code and a message.
    pub fn new(code: wtd_result, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
    /// `WTD_ERR_INVALID_ARGUMENT`.
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(wtd_result::WTD_ERR_INVALID_ARGUMENT, message)
    }
    /// `WTD_ERR_CLOSED`.
    pub fn closed(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(wtd_result::WTD_ERR_CLOSED, message)
    }
    /// `WTD_ERR_PROTOCOL`.
    pub fn protocol(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(wtd_result::WTD_ERR_PROTOCOL, message)
    }
    /// `WTD_ERR_TIMEOUT`.
    pub fn timeout(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(wtd_result::WTD_ERR_TIMEOUT, message)
    }
    /// `WTD_ERR_INTERNAL`.
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(wtd_result::WTD_ERR_INTERNAL, message)
    }
    /// `WTD_ERR_WOULD_BLOCK`.
    pub fn would_block(message: impl Into<Cow<'static, str>>) -> Self {
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
        self.ident()
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(wtd_result::WTD_ERR_IO, e.to_string())
    }
}
