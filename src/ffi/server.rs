//! C exports for the server: options, listen, accept (poll or callback), certificate hash, close.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void, CString};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::session::{new_handle, timeout_of, wtd_session};
use super::{
    arg_opt_str, arg_ref, copy_str_out, free_handle, guard, into_handle, read_options_or_default,
    write_out, UserData,
};
use crate::endpoint::server::{Identity, Server, ServerConfig};
use crate::endpoint::tls::hex;
use crate::endpoint::QuicSettings;
use crate::error::{wtd_result, Error, Result};
use crate::h3::wtd_draft;
use crate::session::DEFAULT_INCOMING_CAPACITY;

/// A listening WebTransport server (opaque). Create with `wtd_server_new`, release with
/// `wtd_server_free`.
pub struct wtd_server {
    inner: Server,
}

/// A session request shown to `on_request`. Strings are NUL-terminated UTF-8, valid only during
/// the callback.
#[repr(C)]
pub struct wtd_session_request {
    /// `:path` with query.
    pub path: *const c_char,
    /// `:authority` (host[:port]).
    pub authority: *const c_char,
    /// `origin` header, or NULL when absent (browsers always send it).
    pub origin: *const c_char,
    /// Draft the client speaks.
    pub draft: wtd_draft,
}

/// Decides on a session request: return 200 to accept, or an HTTP status (e.g. 403, 404) to
/// refuse. Called on a wtd runtime thread; must not block.
pub type wtd_request_cb = Option<
    unsafe extern "C" fn(user_data: *mut c_void, request: *const wtd_session_request) -> u16,
>;
/// Receives each new session; the callee owns the handle (free it with `wtd_session_free`).
/// Called on a wtd runtime thread. When NULL, sessions wait for `wtd_server_accept`.
pub type wtd_session_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, session: *mut wtd_session)>;

/// Server options. Fill with `wtd_server_options_default`, then change fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_server_options {
    /// `sizeof(wtd_server_options)` (set by `wtd_server_options_default`).
    pub struct_size: u32,
    /// UDP port; 0 picks a free one (read it back with `wtd_server_port`). Default 4433.
    pub port: u16,
    /// Reserved, 0.
    pub reserved: u16,
    /// Address to bind, e.g. "0.0.0.0", "::", "127.0.0.1". NULL = "0.0.0.0".
    pub host: *const c_char,
    /// PEM certificate chain file, or NULL to generate a self-signed ECDSA P-256 certificate
    /// valid 13 days (its SHA-256 is what browsers pass in `serverCertificateHashes`).
    pub cert_file: *const c_char,
    /// PEM private key file (required with `cert_file`).
    pub key_file: *const c_char,
    /// QUIC idle timeout in ms. Default 30000.
    pub idle_timeout_ms: u32,
    /// QUIC keep-alive interval in ms, 0 = off. Default 5000.
    pub keep_alive_ms: u32,
    /// Receive-queue capacity of each session, in datagrams (oldest evicted and counted when
    /// full). Default 1024.
    pub incoming_queue_capacity: u32,
    /// Reserved, 0.
    pub reserved2: u32,
    /// Optional accept/refuse hook (NULL: accept every WebTransport request).
    pub on_request: wtd_request_cb,
    /// Optional new-session hook (NULL: use `wtd_server_accept`).
    pub on_session: wtd_session_cb,
    /// Passed to `on_request` and `on_session`.
    pub user_data: *mut c_void,
}

fn server_defaults() -> wtd_server_options {
    wtd_server_options {
        struct_size: std::mem::size_of::<wtd_server_options>() as u32,
        port: 4433,
        reserved: 0,
        host: std::ptr::null(),
        cert_file: std::ptr::null(),
        key_file: std::ptr::null(),
        idle_timeout_ms: 30_000,
        keep_alive_ms: 5_000,
        incoming_queue_capacity: DEFAULT_INCOMING_CAPACITY as u32,
        reserved2: 0,
        on_request: None,
        on_session: None,
        user_data: std::ptr::null_mut(),
    }
}

const SERVER_OPTIONS_V1: usize = std::mem::size_of::<wtd_server_options>();

/// Fills `*options` with the defaults (and its `struct_size`).
#[no_mangle]
pub unsafe extern "C" fn wtd_server_options_default(
    options: *mut wtd_server_options,
) -> wtd_result {
    guard(|| write_out(options, server_defaults(), "options"))
}

pub(crate) fn quic_settings(idle_ms: u32, keep_alive_ms: u32) -> Result<QuicSettings> {
    if idle_ms == 0 {
        return Err(Error::invalid("idle_timeout_ms must be > 0"));
    }
    Ok(QuicSettings {
        idle_timeout: Duration::from_millis(idle_ms.into()),
        keep_alive: (keep_alive_ms > 0).then(|| Duration::from_millis(keep_alive_ms.into())),
    })
}

unsafe fn config_from(o: &wtd_server_options) -> Result<ServerConfig> {
    let host = arg_opt_str(o.host, "host")?.unwrap_or("0.0.0.0");
    let ip: IpAddr = host
        .parse()
        .map_err(|_| Error::invalid(format!("host {host:?} is not an IP address")))?;
    let mut cfg = ServerConfig::new(SocketAddr::new(ip, o.port));
    match (
        arg_opt_str(o.cert_file, "cert_file")?,
        arg_opt_str(o.key_file, "key_file")?,
    ) {
        (Some(cert), Some(key)) => {
            cfg.identity = Identity::PemFiles {
                cert: cert.into(),
                key: key.into(),
            }
        }
        (None, None) => {}
        _ => {
            return Err(Error::invalid(
                "cert_file and key_file must be given together",
            ))
        }
    }
    cfg.quic = quic_settings(o.idle_timeout_ms, o.keep_alive_ms)?;
    if o.incoming_queue_capacity == 0 {
        return Err(Error::invalid("incoming_queue_capacity must be > 0"));
    }
    cfg.incoming_capacity = o.incoming_queue_capacity as usize;
    if let Some(f) = o.on_request {
        let ud = UserData(o.user_data);
        cfg.filter = Some(Box::new(move |req, draft| {
            let path = CString::new(req.path.replace('\0', "")).unwrap_or_default();
            let authority = CString::new(req.authority.replace('\0', "")).unwrap_or_default();
            let origin = req
                .origin
                .as_ref()
                .map(|o| CString::new(o.replace('\0', "")).unwrap_or_default());
            let r = wtd_session_request {
                path: path.as_ptr(),
                authority: authority.as_ptr(),
                origin: origin.as_ref().map_or(std::ptr::null(), |o| o.as_ptr()),
                draft,
            };
            f(ud.get(), &r)
        }));
    }
    if let Some(f) = o.on_session {
        let ud = UserData(o.user_data);
        cfg.on_session = Some(Box::new(move |s| f(ud.get(), new_handle(s))));
    }
    Ok(cfg)
}

/// Creates a server and starts listening. `options` NULL = defaults. On success `*out` owns the
/// server. Errors: WTD_ERR_INVALID_ARGUMENT (bad host/options), WTD_ERR_TLS (unreadable or
/// mismatched certificate/key), WTD_ERR_IO (port in use).
#[no_mangle]
pub unsafe extern "C" fn wtd_server_new(
    options: *const wtd_server_options,
    out: *mut *mut wtd_server,
) -> wtd_result {
    guard(|| {
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let o = read_options_or_default(options, server_defaults(), SERVER_OPTIONS_V1, "options")?;
        let server = Server::bind(config_from(&o)?)?;
        write_out(out, into_handle(wtd_server { inner: server }), "out")
    })
}

unsafe fn server<'a>(p: *const wtd_server) -> Result<&'a Server> {
    Ok(&arg_ref(p, "server")?.inner)
}

/// The UDP port the server listens on.
#[no_mangle]
pub unsafe extern "C" fn wtd_server_port(server: *const wtd_server, out: *mut u16) -> wtd_result {
    guard(|| write_out(out, self::server(server)?.local_addr()?.port(), "out"))
}

/// Copies the SHA-256 of the server's certificate (32 bytes) to `out32`.
#[no_mangle]
pub unsafe extern "C" fn wtd_server_cert_hash(
    server: *const wtd_server,
    out32: *mut u8,
) -> wtd_result {
    guard(|| {
        let hash = self::server(server)?.cert_sha256();
        if out32.is_null() {
            return Err(Error::invalid("out32 is NULL"));
        }
        std::ptr::copy_nonoverlapping(hash.as_ptr(), out32, 32);
        Ok(())
    })
}

/// The certificate's SHA-256 as 64 lowercase hex characters + NUL (`cap` ≥ 65).
#[no_mangle]
pub unsafe extern "C" fn wtd_server_cert_hash_hex(
    server: *const wtd_server,
    buf: *mut c_char,
    cap: usize,
) -> wtd_result {
    guard(|| {
        copy_str_out(
            &hex(&self::server(server)?.cert_sha256()),
            buf,
            cap,
            std::ptr::null_mut(),
        )
    })
}

/// Takes the next new session: `timeout_ms` 0 = poll (WTD_ERR_WOULD_BLOCK when none),
/// -1 = wait forever, else WTD_ERR_TIMEOUT. `*out` owns the new session handle.
/// WTD_ERR_CLOSED after `wtd_server_close`. Waiting from a callback thread is refused.
#[no_mangle]
pub unsafe extern "C" fn wtd_server_accept(
    server: *mut wtd_server,
    timeout_ms: i32,
    out: *mut *mut wtd_session,
) -> wtd_result {
    guard(|| {
        let s = self::server(server)?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let session = s.accept(timeout_of(timeout_ms))?;
        write_out(out, new_handle(session), "out")
    })
}

/// Stops accepting, sends GOAWAY, closes every session (code 0, "server shutting down") and
/// waits up to ~2 s for that to reach the peers. Idempotent. Session handles stay valid (closed)
/// until freed.
#[no_mangle]
pub unsafe extern "C" fn wtd_server_close(server: *mut wtd_server) -> wtd_result {
    guard(|| {
        self::server(server)?.close();
        Ok(())
    })
}

/// Closes (as `wtd_server_close`) and releases the server. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn wtd_server_free(server: *mut wtd_server) {
    super::guard_void(|| free_handle(server))
}
