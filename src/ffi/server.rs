//! C exports for the server: options, listen, accept (poll or callback), certificate hash, close.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void, CString};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::handle::{borrow, free_box, new_box, BoxOwned, Handle};
use super::session::{new_handle, wtd_session};
use super::{
    arg_buffer, arg_opt_str, copy_str_out, guard, read_options_or_default, wait_of, write_out,
    write_sized, UserData,
};
use crate::endpoint::server::{
    Identity, Server, ServerConfig, DEFAULT_ACCEPT_QUEUE_CAPACITY, DEFAULT_DEADLINE,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP,
};
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

impl Handle for wtd_server {
    type Ownership = BoxOwned;
    const NAME: &'static str = "server";
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
pub type wtd_server_request_cb = Option<
    unsafe extern "C" fn(user_data: *mut c_void, request: *const wtd_session_request) -> u16,
>;
/// Receives each new session; the callee owns the handle (free it with `wtd_session_free`).
/// Called on a wtd runtime thread. When NULL, sessions wait for `wtd_server_accept`.
pub type wtd_server_session_cb =
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
    pub on_request: wtd_server_request_cb,
    /// Optional new-session hook (NULL: use `wtd_server_accept`).
    pub on_session: wtd_server_session_cb,
    /// Passed to `on_request` and `on_session`.
    pub user_data: *mut c_void,
    // ---- Appended in version 2 (hardening; see docs/SECURITY.md). Callers built against the
    // older, shorter struct get the defaults below.
    /// Most sessions waiting for `wtd_server_accept` (including requests being answered);
    /// more are refused with HTTP 503. Default 128. Must be > 0.
    pub accept_queue_capacity: u32,
    /// Most connections at once; more are refused during the handshake. Default 4096.
    pub max_connections: u32,
    /// Most connections at once from one IP address. Default 64.
    pub max_connections_per_ip: u32,
    /// A connection whose peer sends no HTTP/3 SETTINGS within this many ms of the handshake is
    /// closed. Default 10000.
    pub settings_timeout_ms: u32,
    /// A connection with no open session for this many ms (after the handshake or its last
    /// session) is closed; keep-alives do not count. Default 10000.
    pub session_timeout_ms: u32,
    /// A request stream whose HEADERS are not complete within this many ms is reset.
    /// Default 10000.
    pub header_timeout_ms: u32,
}

/// Server protection counters, as returned by `wtd_server_get_stats` (see docs/SECURITY.md).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct wtd_server_stats {
    /// Size of this struct as the library filled it (append-only; check before reading new fields).
    pub struct_size: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Requests answered 431: header block over 16 KiB or over 64 fields.
    pub refused_headers_too_large: u64,
    /// Requests answered 400: malformed (bad pseudo-headers, NUL/CR/LF, uppercase names...).
    pub refused_malformed: u64,
    /// CONNECT streams reset (H3_REQUEST_REJECTED): the connection already had 16 sessions.
    pub refused_too_many_sessions: u64,
    /// Requests answered 503: the accept queue was full.
    pub refused_queue_full: u64,
    /// Sessions removed from the accept queue because they closed before being accepted.
    pub queue_closed_dropped: u64,
    /// Request streams reset because their HEADERS did not arrive within `header_timeout_ms`.
    pub refused_header_timeout: u64,
    /// Connections refused: `max_connections` reached.
    pub refused_connections_global: u64,
    /// Connections refused: `max_connections_per_ip` reached for that address.
    pub refused_connections_per_ip: u64,
    /// Connections closed: no SETTINGS within `settings_timeout_ms`.
    pub closed_settings_timeout: u64,
    /// Connections closed: no session for `session_timeout_ms`.
    pub closed_session_timeout: u64,
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
        accept_queue_capacity: DEFAULT_ACCEPT_QUEUE_CAPACITY as u32,
        max_connections: DEFAULT_MAX_CONNECTIONS as u32,
        max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP as u32,
        settings_timeout_ms: DEFAULT_DEADLINE.as_millis() as u32,
        session_timeout_ms: DEFAULT_DEADLINE.as_millis() as u32,
        header_timeout_ms: DEFAULT_DEADLINE.as_millis() as u32,
    }
}

/// Size of the first published `wtd_server_options` (up to `user_data`); the smallest accepted.
const SERVER_OPTIONS_V1: usize = std::mem::offset_of!(wtd_server_options, accept_queue_capacity);

/// Fills `*options` with the defaults. Set `options->struct_size = sizeof(wtd_server_options)`
/// first: the library writes at most that many bytes and sets it to what it wrote.
///
/// Ownership: `*options` is the caller's; the library only writes it.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL, `struct_size` too small).
#[no_mangle]
pub extern "C" fn wtd_server_options_default(options: *mut wtd_server_options) -> wtd_result {
    guard(|| write_sized(options, server_defaults(), SERVER_OPTIONS_V1, "options"))
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

fn config_from(o: &wtd_server_options) -> Result<ServerConfig> {
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
    let positive = |v: u32, name: &str| {
        if v == 0 {
            Err(Error::invalid(format!("{name} must be > 0")))
        } else {
            Ok(v)
        }
    };
    cfg.accept_queue_capacity =
        positive(o.accept_queue_capacity, "accept_queue_capacity")? as usize;
    cfg.max_connections = positive(o.max_connections, "max_connections")? as usize;
    cfg.max_connections_per_ip =
        positive(o.max_connections_per_ip, "max_connections_per_ip")? as usize;
    let ms = |v: u32, name: &str| positive(v, name).map(|v| Duration::from_millis(v.into()));
    cfg.settings_timeout = ms(o.settings_timeout_ms, "settings_timeout_ms")?;
    cfg.session_timeout = ms(o.session_timeout_ms, "session_timeout_ms")?;
    cfg.header_timeout = ms(o.header_timeout_ms, "header_timeout_ms")?;
    if let Some(f) = o.on_request {
        let ud = UserData(o.user_data);
        cfg.filter = Some(Box::new(move |req, draft| {
            // The HTTP/3 layer refuses NUL in any field (400), so the filter sees exactly the
            // bytes `wtd_session_path` etc. return later; should one ever get here, refuse
            // rather than show the filter a different string.
            let (Ok(path), Ok(authority)) = (
                CString::new(req.path.as_str()),
                CString::new(req.authority.as_str()),
            ) else {
                return 400;
            };
            let origin = match req.origin.as_deref().map(CString::new) {
                None => None,
                Some(Ok(o)) => Some(o),
                Some(Err(_)) => return 400,
            };
            let r = wtd_session_request {
                path: path.as_ptr(),
                authority: authority.as_ptr(),
                origin: origin.as_ref().map_or(std::ptr::null(), |o| o.as_ptr()),
                draft,
            };
            // SAFETY: the application's callback, called as its registration documents.
            unsafe { f(ud.get(), &r) }
        }));
    }
    if let Some(f) = o.on_session {
        let ud = UserData(o.user_data);
        // SAFETY: the application's callback, called as its registration documents.
        cfg.on_session = Some(Box::new(move |s| unsafe { f(ud.get(), new_handle(s)) }));
    }
    Ok(cfg)
}

/// Creates a server and starts listening (`options` NULL = defaults).
///
/// Ownership: on success `*out` owns the server; free it with `wtd_server_free`. The option
/// strings are copied. Thread: any.
/// Errors: WTD_ERR_INVALID_ARGUMENT (NULL `out`, bad host or options, `struct_size` too small),
/// WTD_ERR_TLS (unreadable or mismatched certificate/key), WTD_ERR_IO (port in use).
#[no_mangle]
pub extern "C" fn wtd_server_new(
    options: *const wtd_server_options,
    out: *mut *mut wtd_server,
) -> wtd_result {
    guard(|| {
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let o = read_options_or_default(options, server_defaults(), SERVER_OPTIONS_V1, "options")?;
        let server = Server::bind(config_from(&o)?)?;
        write_out(out, new_box(wtd_server { inner: server }), "out")
    })
}

fn server<'a>(p: *const wtd_server) -> Result<&'a Server> {
    Ok(&borrow(p)?.inner)
}

/// Writes the UDP port the server listens on to `*out`.
///
/// Ownership: nothing is handed over.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments), WTD_ERR_IO.
#[no_mangle]
pub extern "C" fn wtd_server_port(server: *const wtd_server, out: *mut u16) -> wtd_result {
    guard(|| write_out(out, self::server(server)?.local_addr()?.port(), "out"))
}

/// A file descriptor for `poll`/`epoll`/`select` that is readable (POLLIN) while a new session
/// waits for `wtd_server_accept` or the server is closed — level-triggered: it stays readable
/// until accepts have emptied the queue (wtd clears it then; do not read from it or close it).
/// With an `on_session` callback, sessions go to the callback and the descriptor only reports
/// the close. Created on first call (an eventfd on Linux, a pipe elsewhere); the same
/// descriptor every time; valid until `wtd_server_free`.
/// Ownership: the descriptor stays wtd's (do not read from it or close it).
/// Thread: any. Errors: NULL arguments;
/// WTD_ERR_INTERNAL if the OS refuses a descriptor.
#[no_mangle]
pub extern "C" fn wtd_server_readiness_fd(
    server: *const wtd_server,
    out_fd: *mut i32,
) -> wtd_result {
    guard(|| write_out(out_fd, self::server(server)?.readiness_fd()?, "out_fd"))
}

/// Copies the SHA-256 of the server's certificate (32 bytes) to `out32`.
///
/// Ownership: `out32` is the caller's; the library only writes it.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments).
#[no_mangle]
pub extern "C" fn wtd_server_cert_hash(server: *const wtd_server, out32: *mut u8) -> wtd_result {
    guard(|| {
        let hash = self::server(server)?.cert_sha256();
        arg_buffer(out32, 32, "out32")?.copy_from_slice(&hash);
        Ok(())
    })
}

/// Copies the certificate's SHA-256 as 64 lowercase hex characters plus a NUL into `buf`
/// (`cap` ≥ 65).
///
/// Ownership: the buffers stay the caller's and are only written during the call.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL server, NULL buf with cap > 0),
/// WTD_ERR_BUFFER_TOO_SMALL (`cap` < 65; nothing written).
#[no_mangle]
pub extern "C" fn wtd_server_cert_hash_hex(
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

/// Fills `*out` with the server's protection counters: what it refused or closed to protect
/// itself, by reason. Set `out->struct_size = sizeof(wtd_server_stats)` first: the library writes
/// at most that many bytes and sets it to what it wrote.
///
/// Ownership: `*out` is the caller's; the library only writes it.
/// Thread: any. Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments, `struct_size` too small).
#[no_mangle]
pub extern "C" fn wtd_server_get_stats(
    server: *const wtd_server,
    out: *mut wtd_server_stats,
) -> wtd_result {
    guard(|| {
        let st = self::server(server)?.stats();
        let v = wtd_server_stats {
            struct_size: std::mem::size_of::<wtd_server_stats>() as u32,
            reserved: 0,
            refused_headers_too_large: st.refused_headers_too_large,
            refused_malformed: st.refused_malformed,
            refused_too_many_sessions: st.refused_too_many_sessions,
            refused_queue_full: st.refused_queue_full,
            queue_closed_dropped: st.queue_closed_dropped,
            refused_header_timeout: st.refused_header_timeout,
            refused_connections_global: st.refused_connections_global,
            refused_connections_per_ip: st.refused_connections_per_ip,
            closed_settings_timeout: st.closed_settings_timeout,
            closed_session_timeout: st.closed_session_timeout,
        };
        write_sized(out, v, std::mem::size_of::<wtd_server_stats>(), "out")
    })
}

/// Takes the next new session into `*out`: `timeout_ms` 0 = poll, negative = wait forever,
/// n > 0 = at most n ms.
///
/// Ownership: `*out` owns the new session handle; free it with `wtd_session_free`.
/// Thread: any; waiting (`timeout_ms` ≠ 0) on a wtd callback thread is refused
/// (WTD_ERR_INVALID_STATE). Errors: WTD_ERR_INVALID_ARGUMENT (NULL arguments),
/// WTD_ERR_WOULD_BLOCK (none waiting, `timeout_ms` 0), WTD_ERR_TIMEOUT, WTD_ERR_CLOSED (after
/// `wtd_server_close`; also wakes a waiting call).
#[no_mangle]
pub extern "C" fn wtd_server_accept(
    server: *mut wtd_server,
    out: *mut *mut wtd_session,
    timeout_ms: i32,
) -> wtd_result {
    guard(|| {
        let s = self::server(server)?;
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let session = s.accept(wait_of(timeout_ms))?;
        write_out(out, new_handle(session), "out")
    })
}

/// Stops accepting, sends GOAWAY, closes every session (code 0, "server shutting down") and
/// waits up to ~2 s for that to reach the peers. Idempotent. Session handles stay valid (closed)
/// until freed.
///
/// Ownership: nothing is handed over.
/// Thread: any; from a wtd callback it does not wait. Errors: WTD_ERR_INVALID_ARGUMENT (NULL).
#[no_mangle]
pub extern "C" fn wtd_server_close(server: *mut wtd_server) -> wtd_result {
    guard(|| {
        self::server(server)?.close();
        Ok(())
    })
}

/// Closes (as `wtd_server_close`) and releases the server. NULL is a no-op. Sessions it handed
/// out stay valid (closed) until freed. No call may start on the handle afterwards.
///
/// Ownership: releases the handle; it must not be used afterwards.
/// Thread: any. Errors: none (a caught panic is logged and recorded as the last error).
#[no_mangle]
pub extern "C" fn wtd_server_free(server: *mut wtd_server) {
    super::guard_void(|| free_box(server))
}
