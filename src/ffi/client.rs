//! C exports for the client: options and connect.

#![allow(non_camel_case_types)]

use std::ffi::c_char;
use std::time::Duration;

use super::server::quic_settings;
use super::session::{new_client_handle, wtd_session};
use super::{
    arg_opt_str, arg_slice, arg_str, guard, read_options_or_default, write_out, write_sized,
};
use crate::endpoint::client::{self, ClientConfig};
use crate::endpoint::tls::Verification;
use crate::error::{wtd_result, Error, Result};
use crate::session::DEFAULT_INCOMING_CAPACITY;

/// How the client checks the server's certificate (`wtd_client_options.verify`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wtd_verify_mode {
    /// Trust the operating system's root certificates (default).
    WTD_VERIFY_SYSTEM_ROOTS = 0,
    /// Trust only the CAs in `ca_file` (PEM).
    WTD_VERIFY_CA_FILE = 1,
    /// Accept only a certificate whose SHA-256 is in `cert_hashes` (like the browser's
    /// `serverCertificateHashes`).
    WTD_VERIFY_CERT_HASHES = 2,
    /// No verification at all. Anyone on the path can impersonate the server: tests only.
    WTD_VERIFY_NONE_DANGEROUS = 3,
}

crate::error::c_enum!(wtd_verify_mode {
    WTD_VERIFY_SYSTEM_ROOTS => c"system_roots",
    WTD_VERIFY_CA_FILE => c"ca_file",
    WTD_VERIFY_CERT_HASHES => c"cert_hashes",
    WTD_VERIFY_NONE_DANGEROUS => c"none_dangerous",
});

/// Client options. Fill with `wtd_client_options_default`, then change fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_client_options {
    /// `sizeof(wtd_client_options)` (set by `wtd_client_options_default`).
    pub struct_size: u32,
    /// A `wtd_verify_mode` value. Default WTD_VERIFY_SYSTEM_ROOTS.
    pub verify: u32,
    /// PEM CA file for WTD_VERIFY_CA_FILE.
    pub ca_file: *const c_char,
    /// `cert_hash_count` × 32-byte SHA-256 hashes for WTD_VERIFY_CERT_HASHES.
    pub cert_hashes: *const u8,
    /// Number of hashes in `cert_hashes`.
    pub cert_hash_count: usize,
    /// Limit for handshake + session setup, ms. Default 10000.
    pub connect_timeout_ms: u32,
    /// QUIC idle timeout, ms. Default 30000.
    pub idle_timeout_ms: u32,
    /// QUIC keep-alive interval, ms, 0 = off. Default 5000.
    pub keep_alive_ms: u32,
    /// Receive-queue capacity in datagrams. Default 1024.
    pub incoming_queue_capacity: u32,
    /// `origin` header to send, or NULL for none.
    pub origin: *const c_char,
}

fn client_defaults() -> wtd_client_options {
    wtd_client_options {
        struct_size: std::mem::size_of::<wtd_client_options>() as u32,
        verify: wtd_verify_mode::WTD_VERIFY_SYSTEM_ROOTS as u32,
        ca_file: std::ptr::null(),
        cert_hashes: std::ptr::null(),
        cert_hash_count: 0,
        connect_timeout_ms: 10_000,
        idle_timeout_ms: 30_000,
        keep_alive_ms: 5_000,
        incoming_queue_capacity: DEFAULT_INCOMING_CAPACITY as u32,
        origin: std::ptr::null(),
    }
}

const CLIENT_OPTIONS_V1: usize = std::mem::size_of::<wtd_client_options>();

/// Fills `*options` with the defaults. Set `options->struct_size = sizeof(wtd_client_options)`
/// first: the library writes at most that many bytes and sets it to what it wrote.
///
/// Ownership: `*options` is the caller's; the library only writes it.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL, `struct_size` too small).
#[no_mangle]
pub extern "C" fn wtd_client_options_default(options: *mut wtd_client_options) -> wtd_result {
    guard(|| write_sized(options, client_defaults(), CLIENT_OPTIONS_V1, "options"))
}

fn config_from(o: &wtd_client_options) -> Result<ClientConfig> {
    let verification = match o.verify {
        0 => Verification::SystemRoots,
        1 => Verification::CaFile(
            arg_opt_str(o.ca_file, "ca_file")?
                .ok_or_else(|| Error::invalid("WTD_VERIFY_CA_FILE needs ca_file"))?
                .to_owned(),
        ),
        2 => {
            if o.cert_hashes.is_null() || o.cert_hash_count == 0 {
                return Err(Error::invalid(
                    "WTD_VERIFY_CERT_HASHES needs cert_hashes and cert_hash_count > 0",
                ));
            }
            let hashes: &[[u8; 32]] = arg_slice(
                o.cert_hashes as *const [u8; 32],
                o.cert_hash_count,
                "cert_hashes",
            )?;
            Verification::PinnedSha256(hashes.to_vec())
        }
        3 => Verification::DangerousNone,
        v => return Err(Error::invalid(format!("unknown verify mode {v}"))),
    };
    if o.connect_timeout_ms == 0 || o.incoming_queue_capacity == 0 {
        return Err(Error::invalid(
            "connect_timeout_ms and incoming_queue_capacity must be > 0",
        ));
    }
    Ok(ClientConfig {
        verification,
        connect_timeout: Duration::from_millis(o.connect_timeout_ms.into()),
        quic: quic_settings(o.idle_timeout_ms, o.keep_alive_ms)?,
        incoming_capacity: o.incoming_queue_capacity as usize,
        origin: arg_opt_str(o.origin, "origin")?.map(str::to_owned),
    })
}

/// Connects to `url` (`https://host:port/path`) and opens a WebTransport session, speaking the
/// draft the server announces (`options` NULL = defaults). Blocks up to `connect_timeout_ms`.
///
/// Ownership: on success `*out` owns the session (free it with `wtd_session_free`); the
/// connection closes when its last session closes. The option strings and hashes are copied.
/// Thread: any but a wtd callback thread (WTD_ERR_INVALID_STATE).
/// Errors: WTD_ERR_INVALID_ARGUMENT (bad URL or options, `cert_hash_count × 32` overflowing),
/// WTD_ERR_TLS (certificate rejected), WTD_ERR_TIMEOUT, WTD_ERR_CONNECTION, WTD_ERR_REJECTED
/// (server refused, e.g. 404), WTD_ERR_NOT_SUPPORTED (server has no WebTransport).
#[no_mangle]
pub extern "C" fn wtd_client_connect(
    url: *const c_char,
    options: *const wtd_client_options,
    out: *mut *mut wtd_session,
) -> wtd_result {
    guard(|| {
        let url = arg_str(url, "url")?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let o = read_options_or_default(options, client_defaults(), CLIENT_OPTIONS_V1, "options")?;
        let config = config_from(&o)?;
        let s = client::connect(url, &config)?;
        write_out(out, new_client_handle(s, Some(config)), "out")
    })
}

/// Opens another session to `path` on the same connection as the client session `session`
/// (several sessions share one QUIC connection; datagrams are routed per session). Blocks like
/// `wtd_client_connect` and uses the options `session` was connected with (timeouts, queue
/// capacity, origin).
///
/// Ownership: on success `*out` owns the new session. Thread: as `wtd_client_connect`.
/// Errors: as `wtd_client_connect`; WTD_ERR_CLOSED when the connection is gone.
#[no_mangle]
pub extern "C" fn wtd_session_open_sibling(
    session: *mut wtd_session,
    path: *const c_char,
    out: *mut *mut wtd_session,
) -> wtd_result {
    guard(|| {
        let handle = super::handle::borrow(session as *const wtd_session)?;
        let path = arg_str(path, "path")?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let config = handle.client_config.clone().unwrap_or_default();
        let sibling = client::open_sibling(&handle.inner, path, &config)?;
        write_out(out, new_client_handle(sibling, Some(config)), "out")
    })
}
