package wtd

// Every call into the C library is in this file (bindings-common: one cgo file, so adapting to
// a new header is mechanical). The rest of the package sees only the Go wrappers below.
//
// Errors: wtd_last_error_message() is per OS thread. Each wrapper runs the failing call and the
// message read on one locked OS thread (runtime.LockOSThread, a few ns; no allocation), so a
// goroutine that migrates between threads never reads another call's message.
//
// Memory: Go 1.19 has no runtime.Pinner, so nothing here stores a Go pointer in C memory.
// Single-buffer calls pass the Go slice directly (allowed by the cgo rules: the memory holds no
// Go pointers); batch calls go through a C-owned slab (cSlab) and copy.

/*
#include <stdlib.h>
#include <string.h>
#include <wtd.h>

// Hot paths take handles as uintptr_t: cgo boxes a pointer to an incomplete C struct into an
// interface for its pointer check (an 8-byte allocation per call); an integer is not checked.
// Receives return code and length by value (no out-parameter escapes to the Go heap).
typedef struct { int32_t code; size_t n; } wtdgo_rn;

static int32_t wtdgo_session_send(uintptr_t s, const uint8_t *data, size_t len) {
	return (int32_t)wtd_session_send((wtd_session *)s, data, len);
}
static int32_t wtdgo_transport_send(uintptr_t t, const uint8_t *data, size_t len, int32_t prio,
                                    uint32_t ttl, int wait) {
	return wait ? (int32_t)wtd_transport_send((wtd_transport *)t, data, len, prio, ttl, -1)
	            : (int32_t)wtd_transport_try_send((wtd_transport *)t, data, len, prio, ttl);
}

static wtdgo_rn wtdgo_session_try_receive(uintptr_t s, void *buf, size_t cap) {
	wtdgo_rn r = {0, 0};
	r.code = (int32_t)wtd_session_receive((wtd_session *)s, (uint8_t *)buf, cap, &r.n, 0);
	return r;
}
static wtdgo_rn wtdgo_session_receive_batch(uintptr_t s, wtd_datagram_buffer *b, size_t count) {
	wtdgo_rn r = {0, 0};
	r.code = (int32_t)wtd_session_receive_batch((wtd_session *)s, b, count, &r.n, 0);
	return r;
}
static wtdgo_rn wtdgo_transport_try_receive(uintptr_t t, void *buf, size_t cap) {
	wtdgo_rn r = {0, 0};
	r.code = (int32_t)wtd_transport_try_receive((wtd_transport *)t, (uint8_t *)buf, cap, &r.n);
	return r;
}
static wtdgo_rn wtdgo_transport_receive_batch(uintptr_t t, wtd_datagram_buffer *b, size_t count) {
	wtdgo_rn r = {0, 0};
	r.code = (int32_t)wtd_transport_receive_batch((wtd_transport *)t, b, count, &r.n, 0);
	return r;
}
static wtdgo_rn wtdgo_transport_send_batch(uintptr_t t, const wtd_datagram_view *v, size_t count,
                                           int32_t prio, uint32_t ttl) {
	wtdgo_rn r = {0, 0};
	r.code = (int32_t)wtd_transport_send_multiple((wtd_transport *)t, v, count, prio, ttl, &r.n);
	return r;
}
// The request hook: wtdgoOnRequest is exported by callbacks.go (cgo generates it with a
// non-const parameter; the cast only drops the const the library promises to honour).
extern uint16_t wtdgoOnRequest(void *ud, struct wtd_session_request *req);
static void wtdgo_set_on_request(wtd_server_options *o, uintptr_t handle) {
	o->on_request = (wtd_server_request_cb)wtdgoOnRequest;
	o->user_data = (void *)handle;
}
// Options structs hold pointers, so they are filled in C memory (a Go struct holding C
// pointers would be fine too, but this keeps the strings' lifetime in one place).
static void wtdgo_set_hash(uint8_t *dst, size_t i, const void *src) { memcpy(dst + 32 * i, src, 32); }
// wtd_poll with the event count returned by value (called once per frame: no allocation).
typedef struct { int32_t code; uint64_t events; } wtdgo_poll_result;
static wtdgo_poll_result wtdgo_poll(int32_t timeout_ms) {
	wtdgo_poll_result r = {0, 0};
	r.code = (int32_t)wtd_poll(&r.events, timeout_ms);
	return r;
}
*/
import "C"

import (
	"math"
	"runtime"
	"time"
	"unsafe"
)

type (
	cServer    = *C.wtd_server
	cSession   = *C.wtd_session
	cTransport = *C.wtd_transport
)

// fail builds the *Error of a failed call. The caller holds runtime.LockOSThread since the call.
func fail(op string, r C.wtd_result) error {
	return &Error{Op: op, Code: Code(r), Message: C.GoString(C.wtd_last_error_message())}
}

// failQuiet is fail for the non-blocking paths: WTD_ERR_WOULD_BLOCK / WTD_ERR_TIMEOUT are the
// expected outcome there and come back as the bare Code (no message read, no allocation).
func failQuiet(op string, r C.int32_t) error {
	c := Code(r)
	if c == ErrWouldBlock || c == ErrTimeout {
		return c
	}
	return &Error{Op: op, Code: c, Message: C.GoString(C.wtd_last_error_message())}
}

// hs / ht pass a handle to the uintptr_t shims.
func hs(h cSession) C.uintptr_t   { return C.uintptr_t(uintptr(unsafe.Pointer(h))) }
func ht(h cTransport) C.uintptr_t { return C.uintptr_t(uintptr(unsafe.Pointer(h))) }

func bytesPtr(p []byte) *C.uint8_t {
	if len(p) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&p[0]))
}

// ---------------------------------------------------------------------------------- library

// Version returns the library version string, e.g. "0.2.0".
func Version() string { return C.GoString(C.wtd_version()) }

// Shutdown stops wtd's internal runtime (closes still in flight get up to 2 s to reach their
// peers). Close your servers and sessions first; a later call starts a new runtime. Call it at
// program exit if you want a clean shutdown (not required).
func Shutdown() { C.wtd_shutdown() }

// SetRuntimeThreads sets the number of wtd's network threads (default 2; 1 when the process may
// use only one CPU). Call it before the first Listen or Dial (or after Shutdown).
func SetRuntimeThreads(n int) error {
	if n <= 0 || n > 1024 {
		return &Error{Op: "SetRuntimeThreads", Code: ErrInvalidArgument, Message: "threads must be 1..1024"}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_set_runtime_threads(C.uint32_t(n)); r != 0 {
		return fail("SetRuntimeThreads", r)
	}
	return nil
}

// SetSendCoalescing lets datagrams sent from Go wait up to d (at most 100 ms) so that wtd hands
// them to the network together, once per interval while traffic lasts: a send then wakes no wtd
// thread (no system call). 0, the default, hands each burst over at once. Like
// GameNetworkingSockets' Nagle time, for every connection; takes effect at once.
func SetSendCoalescing(d time.Duration) error {
	if d < 0 || d > 100*time.Millisecond {
		return &Error{Op: "SetSendCoalescing", Code: ErrInvalidArgument, Message: "interval must be 0..100ms"}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_set_send_coalescing(C.uint32_t(d / time.Microsecond)); r != 0 {
		return fail("SetSendCoalescing", r)
	}
	return nil
}

// RuntimeMode says who runs wtd's network I/O, timers and callbacks (wtd_runtime_mode).
type RuntimeMode uint32

const (
	// RuntimeThreads: wtd's own threads ("wtd-rt", see SetRuntimeThreads) run everything. The
	// default.
	RuntimeThreads RuntimeMode = C.WTD_RUNTIME_THREADS
	// RuntimePoll is engine-owned mode: wtd starts no threads; everything runs inside Poll on
	// the goroutine that calls it (and inside blocking calls such as Dial while they wait).
	RuntimePoll RuntimeMode = C.WTD_RUNTIME_POLL
)

// SetRuntimeMode chooses who runs wtd (RuntimeThreads, the default, or RuntimePoll). Call it
// before the first Listen or Dial (or after Shutdown): once the runtime runs in one mode,
// choosing the other fails with ErrInvalidState (choosing the same one is a no-op). An unknown
// mode is ErrInvalidArgument. The mode is process-wide.
//
// In RuntimePoll mode nothing happens — no datagram is read or sent, no timer fires, no
// callback runs, no waiting Receive or Accept returns — until some goroutine calls Poll (or a
// blocking call drives wtd while it waits: Dial, OpenSibling, Server.Close, a Transport.Send
// that waits). Poll at least every ~25 ms while connections are open; see Poll.
func SetRuntimeMode(mode RuntimeMode) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_set_runtime_mode(C.uint32_t(mode)); r != 0 {
		return fail("SetRuntimeMode", r)
	}
	return nil
}

// Poll runs wtd on the calling goroutine's OS thread (RuntimePoll mode only): it reads what
// arrived on the sockets, fires due timers, runs the callbacks that result and sends what is
// queued. It returns how many application events happened during the call: datagrams that
// reached a session (its queue or callback), sessions accepted and sessions closed (0: nothing
// new to read).
//
// timeout 0 (once per frame) does what is ready now and returns. A timeout > 0 (a network
// loop, or the rest of a frame) returns as soon as something reached the application, or when
// the timeout has passed (rounded up to whole milliseconds, at most math.MaxInt32 ms); < 0
// waits without limit. Work that delivers nothing to the application (ACKs, retransmissions,
// keep-alives) is done meanwhile without ending the wait. Sends are queued and leave during
// the next Poll, so call it after the frame's sends; call it at least every ~25 ms while
// connections are open (a longer gap shows up as round-trip time, above the idle timeout the
// connection closes).
//
// Goroutines and threads: wtd runs inside this cgo call, so ServerOptions.OnRequest runs on the
// calling goroutine (the binding's trampoline needs no particular thread). Between two calls
// Go may move the goroutine to another OS thread; call runtime.LockOSThread in the game-loop
// goroutine if your own code needs every wtd callback on one OS thread (for example C code
// with thread affinity). Receives and accepts waiting on other goroutines park on Go's poller
// and are woken by the Poll that delivers their datagram or session. One goroutine at a time
// drives wtd: a second concurrent Poll, or one while a blocking call runs elsewhere, only
// waits for the events that other caller processes.
//
// Errors: ErrInvalidState in RuntimeThreads mode (wtd's threads need no polling) or from
// inside OnRequest.
func Poll(timeout time.Duration) (events uint64, err error) {
	runtime.LockOSThread()
	r := C.wtdgo_poll(waitMs(timeout))
	if r.code != 0 {
		err = fail("Poll", C.wtd_result(r.code))
	}
	runtime.UnlockOSThread()
	return uint64(r.events), err
}

// waitMs converts a wait to the C API's int32 timeout_ms: < 0 → -1 (no limit), 0 → 0 (no
// wait), else whole milliseconds rounded up, at most math.MaxInt32.
func waitMs(d time.Duration) C.int32_t {
	switch {
	case d < 0:
		return -1
	case d == 0:
		return 0
	case d >= math.MaxInt32*time.Millisecond:
		return math.MaxInt32
	}
	return C.int32_t((d + time.Millisecond - 1) / time.Millisecond)
}

// cstr allocates a C string ("" → NULL); free with C.free (NULL is fine).
func cstr(s string) *C.char {
	if s == "" {
		return nil
	}
	return C.CString(s)
}

// ---------------------------------------------------------------------------------- server

// cServerNew creates the server; hook (0 = none) is a cgo.Handle of the OnRequest function,
// which must stay valid until cServerFree.
func cServerNew(host string, port uint16, o *ServerOptions, hook uintptr) (cServer, error) {
	var opt C.wtd_server_options
	opt.struct_size = C.uint32_t(unsafe.Sizeof(opt)) // API 0.2: the caller sets it first
	if r := C.wtd_server_options_default(&opt); r != 0 {
		return nil, &Error{Op: "Listen", Code: Code(r), Message: "wtd_server_options_default failed"}
	}
	opt.port = C.uint16_t(port)
	if hook != 0 {
		C.wtdgo_set_on_request(&opt, C.uintptr_t(hook))
	}
	opt.host = cstr(host)
	defer C.free(unsafe.Pointer(opt.host))
	if o != nil {
		opt.cert_file = cstr(o.CertFile)
		defer C.free(unsafe.Pointer(opt.cert_file))
		opt.key_file = cstr(o.KeyFile)
		defer C.free(unsafe.Pointer(opt.key_file))
		if o.IdleTimeout > 0 {
			opt.idle_timeout_ms = C.uint32_t(ms(o.IdleTimeout))
		}
		if o.KeepAlive > 0 {
			opt.keep_alive_ms = C.uint32_t(ms(o.KeepAlive))
		} else if o.KeepAlive < 0 {
			opt.keep_alive_ms = 0
		}
		if o.IncomingQueueCapacity > 0 {
			opt.incoming_queue_capacity = C.uint32_t(o.IncomingQueueCapacity)
		}
		if o.AcceptQueueCapacity > 0 {
			opt.accept_queue_capacity = C.uint32_t(o.AcceptQueueCapacity)
		}
		if o.MaxConnections > 0 {
			opt.max_connections = C.uint32_t(o.MaxConnections)
		}
		if o.MaxConnectionsPerIP > 0 {
			opt.max_connections_per_ip = C.uint32_t(o.MaxConnectionsPerIP)
		}
		if o.SettingsTimeout > 0 {
			opt.settings_timeout_ms = C.uint32_t(ms(o.SettingsTimeout))
		}
		if o.SessionTimeout > 0 {
			opt.session_timeout_ms = C.uint32_t(ms(o.SessionTimeout))
		}
		if o.HeaderTimeout > 0 {
			opt.header_timeout_ms = C.uint32_t(ms(o.HeaderTimeout))
		}
	}
	var h cServer
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_server_new(&opt, &h); r != 0 {
		return nil, fail("Listen", r)
	}
	return h, nil
}

func cServerPort(h cServer) (int, error) {
	var p C.uint16_t
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_server_port(h, &p); r != 0 {
		return 0, fail("Server.Port", r)
	}
	return int(p), nil
}

func cServerCertHash(h cServer) ([32]byte, error) {
	var out [32]C.uint8_t
	var hash [32]byte
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_server_cert_hash(h, &out[0]); r != 0 {
		return hash, fail("Server.CertHash", r)
	}
	for i := range out {
		hash[i] = byte(out[i])
	}
	return hash, nil
}

func cServerStats(h cServer) (ServerStats, error) {
	var st C.wtd_server_stats
	st.struct_size = C.uint32_t(unsafe.Sizeof(st))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_server_get_stats(h, &st); r != 0 {
		return ServerStats{}, fail("Server.Stats", r)
	}
	return ServerStats{
		RefusedHeadersTooLarge:   uint64(st.refused_headers_too_large),
		RefusedMalformed:         uint64(st.refused_malformed),
		RefusedTooManySessions:   uint64(st.refused_too_many_sessions),
		RefusedQueueFull:         uint64(st.refused_queue_full),
		QueueClosedDropped:       uint64(st.queue_closed_dropped),
		RefusedHeaderTimeout:     uint64(st.refused_header_timeout),
		RefusedConnectionsGlobal: uint64(st.refused_connections_global),
		RefusedConnectionsPerIP:  uint64(st.refused_connections_per_ip),
		ClosedSettingsTimeout:    uint64(st.closed_settings_timeout),
		ClosedSessionTimeout:     uint64(st.closed_session_timeout),
	}, nil
}

// cServerAccept waits up to timeoutMs inside the library (0 = poll). Timeout / would-block
// come back as the bare Code.
func cServerAccept(h cServer, timeoutMs int32) (cSession, error) {
	var s cSession
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_server_accept(h, &s, C.int32_t(timeoutMs)); r != 0 {
		return nil, failQuiet("Server.Accept", C.int32_t(r))
	}
	return s, nil
}

func cServerReadinessFd(h cServer) (int, error) {
	var fd C.int32_t
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_server_readiness_fd(h, &fd); r != 0 {
		return -1, fail("Server.readiness", r)
	}
	return int(fd), nil
}

func cServerClose(h cServer) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_server_close(h); r != 0 {
		return fail("Server.Close", r)
	}
	return nil
}

func cServerFree(h cServer) { C.wtd_server_free(h) }

// ---------------------------------------------------------------------------------- client

func cConnect(url string, o *DialOptions, timeout time.Duration) (cSession, error) {
	var opt C.wtd_client_options
	opt.struct_size = C.uint32_t(unsafe.Sizeof(opt)) // API 0.2: the caller sets it first
	if r := C.wtd_client_options_default(&opt); r != 0 {
		return nil, &Error{Op: "Dial", Code: Code(r), Message: "wtd_client_options_default failed"}
	}
	if o != nil {
		n := 0
		if len(o.CertHashes) > 0 {
			n++
		}
		if o.CAFile != "" {
			n++
		}
		if o.InsecureSkipVerify {
			n++
		}
		if n > 1 {
			return nil, &Error{Op: "Dial", Code: ErrInvalidArgument,
				Message: "set only one of CertHashes, CAFile and InsecureSkipVerify"}
		}
		switch {
		case len(o.CertHashes) > 0:
			opt.verify = C.WTD_VERIFY_CERT_HASHES
			buf := (*C.uint8_t)(C.malloc(C.size_t(32 * len(o.CertHashes))))
			defer C.free(unsafe.Pointer(buf))
			for i := range o.CertHashes {
				C.wtdgo_set_hash(buf, C.size_t(i), unsafe.Pointer(&o.CertHashes[i][0]))
			}
			opt.cert_hashes = buf
			opt.cert_hash_count = C.size_t(len(o.CertHashes))
		case o.CAFile != "":
			opt.verify = C.WTD_VERIFY_CA_FILE
			opt.ca_file = cstr(o.CAFile)
			defer C.free(unsafe.Pointer(opt.ca_file))
		case o.InsecureSkipVerify:
			opt.verify = C.WTD_VERIFY_NONE_DANGEROUS
		}
		if o.IdleTimeout > 0 {
			opt.idle_timeout_ms = C.uint32_t(ms(o.IdleTimeout))
		}
		if o.KeepAlive > 0 {
			opt.keep_alive_ms = C.uint32_t(ms(o.KeepAlive))
		} else if o.KeepAlive < 0 {
			opt.keep_alive_ms = 0
		}
		if o.IncomingQueueCapacity > 0 {
			opt.incoming_queue_capacity = C.uint32_t(o.IncomingQueueCapacity)
		}
		opt.origin = cstr(o.Origin)
		defer C.free(unsafe.Pointer(opt.origin))
	}
	if timeout > 0 {
		opt.connect_timeout_ms = C.uint32_t(ms(timeout))
	}
	curl := C.CString(url)
	defer C.free(unsafe.Pointer(curl))
	var s cSession
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_client_connect(curl, &opt, &s); r != 0 {
		return nil, fail("Dial", r)
	}
	return s, nil
}

// ---------------------------------------------------------------------------------- session

func cSessionOpenSibling(h cSession, path string) (cSession, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var out cSession
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_session_open_sibling(h, cp, &out); r != 0 {
		return nil, fail("Session.OpenSibling", r)
	}
	return out, nil
}

func cSessionSend(h cSession, p []byte) error {
	runtime.LockOSThread()
	r := C.wtdgo_session_send(hs(h), bytesPtr(p), C.size_t(len(p)))
	var err error
	if r != 0 {
		err = fail("Session.Send", C.wtd_result(r))
	}
	runtime.UnlockOSThread()
	return err
}

// cSessionTryReceive takes one queued datagram into buf without waiting.
func cSessionTryReceive(h cSession, buf []byte) (int, error) {
	runtime.LockOSThread()
	r := C.wtdgo_session_try_receive(hs(h), unsafe.Pointer(bytesPtr(buf)), C.size_t(len(buf)))
	var err error
	if r.code != 0 {
		err = failQuiet("Session.Receive", r.code)
	}
	runtime.UnlockOSThread()
	return int(r.n), err
}

// cSessionReceiveBatch fills the slab's buffers without waiting; no datagram is ErrWouldBlock.
func cSessionReceiveBatch(h cSession, s *cSlab) (int, error) {
	runtime.LockOSThread()
	r := C.wtdgo_session_receive_batch(hs(h), s.bufs, C.size_t(s.count))
	var err error
	if r.code != 0 {
		err = failQuiet("Session.ReceiveBatch", r.code)
	} else if r.n == 0 {
		err = ErrWouldBlock
	}
	runtime.UnlockOSThread()
	return int(r.n), err
}

func cSessionClose(h cSession, code uint32, reason string) error {
	cr := cstr(reason)
	defer C.free(unsafe.Pointer(cr))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_session_close(h, C.uint32_t(code), cr); r != 0 {
		return fail("Session.Close", r)
	}
	return nil
}

func cSessionFree(h cSession) { C.wtd_session_free(h) }

// cSessionCloseInfo returns the close code and reason (ErrInvalidState while open).
func cSessionCloseInfo(h cSession) (uint32, string, error) {
	var code C.uint32_t
	var n C.size_t
	var buf [1100]C.char // reasons are cut to 1024 bytes
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_session_close_info(h, &code, &buf[0], C.size_t(len(buf)), &n); r != 0 {
		return 0, "", fail("Session.CloseInfo", r)
	}
	return uint32(code), C.GoStringN(&buf[0], C.int(n)), nil
}

func cSessionID(h cSession) (uint64, error) {
	var v C.uint64_t
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_session_id(h, &v); r != 0 {
		return 0, fail("Session.ID", r)
	}
	return uint64(v), nil
}

func cSessionDraft(h cSession) Draft {
	var d C.wtd_draft
	if C.wtd_session_draft(h, &d) != 0 {
		return DraftUnknown
	}
	return Draft(d)
}

// cSessionString reads path or origin (which = 0 / 1).
func cSessionString(h cSession, which int) (string, error) {
	var n C.size_t
	buf := make([]C.char, 512)
	for attempt := 0; attempt < 3; attempt++ {
		runtime.LockOSThread()
		var r C.wtd_result
		if which == 0 {
			r = C.wtd_session_path(h, &buf[0], C.size_t(len(buf)), &n)
		} else {
			r = C.wtd_session_origin(h, &buf[0], C.size_t(len(buf)), &n)
		}
		if r == 0 {
			runtime.UnlockOSThread()
			return C.GoStringN(&buf[0], C.int(n)), nil
		}
		if Code(r) != ErrBufferTooSmall {
			op := "Session.Path"
			if which != 0 {
				op = "Session.Origin"
			}
			err := fail(op, r)
			runtime.UnlockOSThread()
			return "", err
		}
		runtime.UnlockOSThread()
		buf = make([]C.char, int(n)+1)
	}
	return "", &Error{Op: "Session.Path", Code: ErrBufferTooSmall, Message: "the string kept growing"}
}

func cSessionMaxDatagramSize(h cSession) int {
	var v C.size_t
	if C.wtd_session_max_datagram_size(h, &v) != 0 {
		return 0
	}
	return int(v)
}

func cSessionIsDraining(h cSession) bool {
	var b C.bool
	return C.wtd_session_is_draining(h, &b) == 0 && bool(b)
}

func cSessionIsClosed(h cSession) bool {
	var b C.bool
	if C.wtd_session_is_closed(h, &b) != 0 {
		return true
	}
	return bool(b)
}

func cSessionReadinessFd(h cSession) (int, error) {
	var fd C.int32_t
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_session_readiness_fd(h, &fd); r != 0 {
		return -1, fail("Session.readiness", r)
	}
	return int(fd), nil
}

func cSessionStats(h cSession) (SessionStats, error) {
	var st C.wtd_session_stats
	st.struct_size = C.uint32_t(unsafe.Sizeof(st))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_session_get_stats(h, &st); r != 0 {
		return SessionStats{}, fail("Session.Stats", r)
	}
	return SessionStats{
		DatagramsSent:                     uint64(st.datagrams_sent),
		BytesSent:                         uint64(st.bytes_sent),
		DatagramsReceived:                 uint64(st.datagrams_received),
		BytesReceived:                     uint64(st.bytes_received),
		DatagramsRead:                     uint64(st.datagrams_read),
		DroppedQueueFull:                  uint64(st.dropped_queue_full),
		Queued:                            uint64(st.queued),
		RTT:                               time.Duration(st.rtt_us) * time.Microsecond,
		MaxDatagramSize:                   int(st.max_datagram_size),
		SendDroppedUnsent:                 uint64(st.send_dropped_unsent),
		ConnectionLostPackets:             uint64(st.connection_lost_packets),
		ConnectionDatagramFramesReceived:  uint64(st.connection_datagram_frames_received),
		ConnectionDatagramsUnknownSession: uint64(st.connection_datagrams_unknown_session),
		ConnectionReceiveDrains:           uint64(st.connection_receive_drains),
		ConnectionReceiveDrained:          uint64(st.connection_receive_drained),
		ConnectionSendFlushes:             uint64(st.connection_send_flushes),
		ConnectionSendFlushed:             uint64(st.connection_send_flushed),
		ConnectionReceiveOverflow:         uint64(st.connection_receive_overflow),
	}, nil
}

// ---------------------------------------------------------------------------------- transport

func cTransportNew(s cSession, o *TransportOptions) (cTransport, error) {
	var opt C.wtd_transport_options
	opt.struct_size = C.uint32_t(unsafe.Sizeof(opt)) // API 0.2: the caller sets it first
	if r := C.wtd_transport_options_default(&opt); r != 0 {
		return nil, &Error{Op: "NewTransport", Code: Code(r), Message: "wtd_transport_options_default failed"}
	}
	if o != nil {
		if o.OutgoingHighWaterMark > 0 {
			opt.outgoing_high_water_mark = C.uint32_t(o.OutgoingHighWaterMark)
		}
		if o.IncomingHighWaterMark > 0 {
			opt.incoming_high_water_mark = C.uint32_t(o.IncomingHighWaterMark)
		}
		opt.drop_policy = C.uint32_t(o.DropPolicy)
		if o.SenderTimeout > 0 {
			opt.sender_timeout_ms = C.uint32_t(ms(o.SenderTimeout))
		}
		opt.incoming_max_age_ms = C.uint32_t(ms(o.IncomingMaxAge))
		opt.outgoing_max_age_ms = C.uint32_t(ms(o.OutgoingMaxAge))
		if o.FilterHeartbeats {
			opt.filter_heartbeats = 1
		}
	}
	var t cTransport
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_transport_new(s, &opt, &t); r != 0 {
		return nil, fail("NewTransport", r)
	}
	return t, nil
}

func cTransportClose(h cTransport, flush time.Duration) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_transport_close(h, C.uint32_t(ms(flush))); r != 0 {
		return fail("Transport.Close", r)
	}
	return nil
}

func cTransportFree(h cTransport) { C.wtd_transport_free(h) }

// cTransportSend queues one datagram; wait = false never waits (try_send), true lets a
// DropBlock queue wait up to its SenderTimeout.
func cTransportSend(h cTransport, p []byte, prio int32, ttl time.Duration, wait bool) error {
	w := C.int(0)
	if wait {
		w = 1
	}
	runtime.LockOSThread()
	r := C.wtdgo_transport_send(ht(h), bytesPtr(p), C.size_t(len(p)), C.int32_t(prio), C.uint32_t(ms(ttl)), w)
	var err error
	if r != 0 {
		err = fail("Transport.Send", C.wtd_result(r))
	}
	runtime.UnlockOSThread()
	return err
}

// cTransportSendBatch sends the slab's first s.count views; returns how many were accepted.
func cTransportSendBatch(h cTransport, s *cSlab, prio int32, ttl time.Duration) (int, error) {
	runtime.LockOSThread()
	r := C.wtdgo_transport_send_batch(ht(h), s.views, C.size_t(s.count), C.int32_t(prio), C.uint32_t(ms(ttl)))
	var err error
	if r.code != 0 {
		err = &Error{Op: "Transport.SendBatch", Code: Code(r.code), Message: C.GoString(C.wtd_last_error_message())}
	}
	runtime.UnlockOSThread()
	return int(r.n), err
}

func cTransportTryReceive(h cTransport, buf []byte) (int, error) {
	runtime.LockOSThread()
	r := C.wtdgo_transport_try_receive(ht(h), unsafe.Pointer(bytesPtr(buf)), C.size_t(len(buf)))
	var err error
	if r.code != 0 {
		err = failQuiet("Transport.Receive", r.code)
	}
	runtime.UnlockOSThread()
	return int(r.n), err
}

func cTransportReceiveBatch(h cTransport, s *cSlab) (int, error) {
	runtime.LockOSThread()
	r := C.wtdgo_transport_receive_batch(ht(h), s.bufs, C.size_t(s.count))
	var err error
	if r.code != 0 {
		err = failQuiet("Transport.ReceiveBatch", r.code)
	}
	runtime.UnlockOSThread()
	return int(r.n), err
}

func cTransportReadinessFd(h cTransport) (int, error) {
	var fd C.int32_t
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_transport_readiness_fd(h, &fd); r != 0 {
		return -1, fail("Transport.readiness", r)
	}
	return int(fd), nil
}

func cTransportMaxDatagramSize(h cTransport) int {
	var v C.size_t
	if C.wtd_transport_max_datagram_size(h, &v) != 0 {
		return 0
	}
	return int(v)
}

// cTransportBufferSize: which 0 = send queue, 1 = receive queue.
func cTransportBufferSize(h cTransport, which int) int {
	var v C.size_t
	var r C.wtd_result
	if which == 0 {
		r = C.wtd_transport_get_send_buffer_size(h, &v)
	} else {
		r = C.wtd_transport_get_receive_buffer_size(h, &v)
	}
	if r != 0 {
		return 0
	}
	return int(v)
}

// cTransportClear: which 0 = send queue, 1 = receive queue; returns datagrams dropped.
func cTransportClear(h cTransport, which int) (int, error) {
	var v C.size_t
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var r C.wtd_result
	if which == 0 {
		r = C.wtd_transport_clear_send_buffer(h, &v)
	} else {
		r = C.wtd_transport_clear_receive_buffer(h, &v)
	}
	if r != 0 {
		return 0, fail("Transport.Clear", r)
	}
	return int(v), nil
}

// cTransportSetMaxAge: which 0 = outgoing, 1 = incoming.
func cTransportSetMaxAge(h cTransport, which int, d time.Duration) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var r C.wtd_result
	if which == 0 {
		r = C.wtd_transport_set_outgoing_max_age(h, C.uint32_t(ms(d)))
	} else {
		r = C.wtd_transport_set_incoming_max_age(h, C.uint32_t(ms(d)))
	}
	if r != 0 {
		return fail("Transport.SetMaxAge", r)
	}
	return nil
}

func cTransportStats(h cTransport) (TransportStats, error) {
	var st C.wtd_datagram_stats
	st.struct_size = C.uint32_t(unsafe.Sizeof(st))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_transport_get_stats(h, &st); r != 0 {
		return TransportStats{}, fail("Transport.Stats", r)
	}
	created := float64(st.created_at)
	return TransportStats{
		SessionID:          uint64(st.session_id),
		CreatedAt:          time.Unix(0, int64(created*1e9)),
		DatagramsSent:      uint64(st.datagrams_sent),
		BytesSent:          uint64(st.bytes_sent),
		SendFailures:       uint64(st.send_failures),
		SendDrops:          uint64(st.send_drops),
		DatagramsReceived:  uint64(st.datagrams_received),
		BytesReceived:      uint64(st.bytes_received),
		ReceiveDrops:       uint64(st.receive_drops),
		ReceiveErrors:      uint64(st.receive_errors),
		TotalSendTime:      seconds(float64(st.total_send_time)),
		MaxSendTime:        seconds(float64(st.max_send_time)),
		TotalReceiveTime:   seconds(float64(st.total_receive_time)),
		MaxReceiveTime:     seconds(float64(st.max_receive_time)),
		MinDatagramSize:    uint64(st.min_datagram_size),
		MaxDatagramSize:    uint64(st.max_datagram_size),
		TotalDatagramSize:  uint64(st.total_datagram_size),
		SizedDatagrams:     uint64(st.sized_datagrams),
		DroppedFull:        uint64(st.dropped_full),
		DroppedExpired:     uint64(st.dropped_expired),
		DroppedTooOld:      uint64(st.dropped_too_old),
		DroppedTooLarge:    uint64(st.dropped_too_large),
		RejectedFull:       uint64(st.rejected_full),
		ClearedOutgoing:    uint64(st.cleared_outgoing),
		EvictedIncoming:    uint64(st.evicted_incoming),
		ExpiredIncoming:    uint64(st.expired_incoming),
		ClearedIncoming:    uint64(st.cleared_incoming),
		HeartbeatsFiltered: uint64(st.heartbeats_filtered),
		DatagramsRead:      uint64(st.datagrams_read),
		TimedSends:         uint64(st.timed_sends),
		TimedReceives:      uint64(st.timed_receives),
		AvgDatagramSize:    float64(st.avg_datagram_size),
		AvgSendTime:        seconds(float64(st.avg_send_time)),
		AvgReceiveTime:     seconds(float64(st.avg_receive_time)),
		SendSuccessRate:    float64(st.send_success_rate),
		ReceiveSuccessRate: float64(st.receive_success_rate),
		DropRate:           float64(st.drop_rate),
	}, nil
}

func cTransportQueueStats(h cTransport) (QueueStats, error) {
	var st C.wtd_queue_stats
	st.struct_size = C.uint32_t(unsafe.Sizeof(st))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_transport_get_queue_stats(h, &st); r != 0 {
		return QueueStats{}, fail("Transport.QueueStats", r)
	}
	conv := func(d *C.wtd_queue_direction_stats) QueueDirectionStats {
		q := QueueDirectionStats{Size: int(d.size), MaxSize: int(d.max_size), Other: int(d.other_count)}
		for i := 0; i < int(d.class_count) && i < len(d.classes); i++ {
			q.Classes = append(q.Classes, PriorityCount{Priority: int32(d.classes[i].priority), Count: int(d.classes[i].count)})
		}
		return q
	}
	return QueueStats{Outgoing: conv(&st.outgoing), Incoming: conv(&st.incoming)}, nil
}

// ---------------------------------------------------------------------------------- C slab

// cSlab is C-owned memory for batch calls: an array of wtd_datagram_buffer (receive) or
// wtd_datagram_view (send) pointing into one C data block. Reused across calls; not safe for
// concurrent use (its owner serializes with a mutex); freed by free().
type cSlab struct {
	bufs     *C.wtd_datagram_buffer
	views    *C.wtd_datagram_view
	data     *C.uint8_t
	entries  int   // capacity of bufs/views in entries
	dataSize int   // bytes in data
	count    int   // entries used by the current call
	caps     []int // receive layout the bufs were built for
}

func (s *cSlab) ensure(entries, bytes int) {
	if entries > s.entries {
		C.free(unsafe.Pointer(s.bufs))
		C.free(unsafe.Pointer(s.views))
		s.bufs = (*C.wtd_datagram_buffer)(C.calloc(C.size_t(entries), C.sizeof_wtd_datagram_buffer))
		s.views = (*C.wtd_datagram_view)(C.calloc(C.size_t(entries), C.sizeof_wtd_datagram_view))
		s.entries = entries
		s.caps = s.caps[:0]
	}
	if bytes > s.dataSize {
		C.free(unsafe.Pointer(s.data))
		s.data = (*C.uint8_t)(C.malloc(C.size_t(bytes)))
		s.dataSize = bytes
		s.caps = s.caps[:0]
	}
}

// prepareReceive lays the slab out for bufs (one slot of cap(bufs[i]) bytes each).
func (s *cSlab) prepareReceive(bufs [][]byte) {
	same := len(s.caps) == len(bufs)
	total := 0
	for i, b := range bufs {
		total += cap(b)
		if same && s.caps[i] != cap(b) {
			same = false
		}
	}
	s.count = len(bufs)
	if same && s.bufs != nil {
		return
	}
	s.ensure(len(bufs), total)
	arr := unsafe.Slice(s.bufs, s.entries)
	off := 0
	s.caps = s.caps[:0]
	for i, b := range bufs {
		arr[i].data = (*C.uint8_t)(unsafe.Add(unsafe.Pointer(s.data), off))
		arr[i].capacity = C.size_t(cap(b))
		arr[i].len = 0
		off += cap(b)
		s.caps = append(s.caps, cap(b))
	}
}

// finishReceive copies the first n received datagrams into bufs (resliced to their lengths).
func (s *cSlab) finishReceive(bufs [][]byte, n int) {
	arr := unsafe.Slice(s.bufs, s.entries)
	for i := 0; i < n; i++ {
		l := int(arr[i].len)
		src := unsafe.Slice((*byte)(unsafe.Pointer(arr[i].data)), l)
		bufs[i] = bufs[i][:l]
		copy(bufs[i], src)
	}
}

// prepareSend copies datagrams into the slab and points the views at them.
func (s *cSlab) prepareSend(datagrams [][]byte) {
	total := 0
	for _, d := range datagrams {
		total += len(d)
	}
	s.ensure(len(datagrams), total)
	views := unsafe.Slice(s.views, s.entries)
	data := unsafe.Slice((*byte)(unsafe.Pointer(s.data)), s.dataSize)
	off := 0
	for i, d := range datagrams {
		copy(data[off:], d)
		views[i].data = (*C.uint8_t)(unsafe.Add(unsafe.Pointer(s.data), off))
		views[i].len = C.size_t(len(d))
		off += len(d)
	}
	s.count = len(datagrams)
	s.caps = s.caps[:0] // the data block now holds send payloads
}

func (s *cSlab) free() {
	C.free(unsafe.Pointer(s.bufs))
	C.free(unsafe.Pointer(s.views))
	C.free(unsafe.Pointer(s.data))
	*s = cSlab{}
}

// ---------------------------------------------------------------------------------- benchmarks

// headerVersion is the version of the wtd.h this package was compiled against.
func headerVersion() (major, minor, patch int) {
	return int(C.WTD_VERSION_MAJOR), int(C.WTD_VERSION_MINOR), int(C.WTD_VERSION_PATCH)
}

// cNoop is the cheapest library call (wtd_version_number): the bare cgo cost, for benchmarks.
func cNoop() uint32 { return uint32(C.wtd_version_number()) }

// cNoopLocked is cNoop inside the LockOSThread pair every fallible wrapper uses.
func cNoopLocked() uint32 {
	runtime.LockOSThread()
	v := uint32(C.wtd_version_number())
	runtime.UnlockOSThread()
	return v
}

// cSessionReceiveBlocking waits inside the library (holding this OS thread) — the alternative
// to the poller that the benchmarks compare with; not used by the package itself.
func cSessionReceiveBlocking(h cSession, buf []byte, timeoutMs int32) (int, error) {
	var n C.size_t
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.wtd_session_receive(h, bytesPtr(buf), C.size_t(len(buf)), &n, C.int32_t(timeoutMs)); r != 0 {
		return 0, fail("Session.Receive", r)
	}
	return int(n), nil
}
