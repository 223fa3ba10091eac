package wtd

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// Session is one WebTransport session (from Dial or Server.Accept). Its methods may be called
// from any goroutine, concurrently. Close releases it; a finalizer releases a forgotten one as a
// safety net only (do not rely on it: the peer sees the close only when the GC runs).
type Session struct {
	mu    sync.RWMutex // R: a call is using h; W: Close frees h
	h     cSession     // nil once released
	rdyMu sync.Mutex
	rdy   *readiness // created on the first receive that has to wait

	rxMu sync.Mutex // guards rx (batch receives)
	rx   cSlab

	closeOnce sync.Once
	closeErr  error
}

// pool of receive buffers for Receive (which returns an exact-size copy).
var rxPool = sync.Pool{New: func() any { b := make([]byte, 65536); return &b }}

func newSession(h cSession) *Session {
	s := &Session{h: h}
	runtime.SetFinalizer(s, (*Session).finalize)
	return s
}

// Dial connects to url ("https://host:port/path") and opens a WebTransport session, speaking
// the draft the server announces. opts may be nil. The context bounds the whole setup: its
// deadline (if sooner than ConnectTimeout) is passed to the library, and a cancelled context
// returns ctx.Err() at once (the attempt still running is released when it finishes).
func Dial(ctx context.Context, url string, opts *DialOptions) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	timeout := time.Duration(0)
	if opts != nil {
		timeout = opts.ConnectTimeout
	}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, context.DeadlineExceeded
		}
		if timeout <= 0 || left < timeout {
			timeout = left
		}
	}
	if ctx.Done() == nil {
		h, err := cConnect(url, opts, timeout)
		if err != nil {
			return nil, err
		}
		return newSession(h), nil
	}
	type result struct {
		h   cSession
		err error
	}
	ch := make(chan result, 1)
	go func() {
		h, err := cConnect(url, opts, timeout)
		ch <- result{h, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			return nil, r.err
		}
		return newSession(r.h), nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.h != nil {
				cSessionFree(r.h)
			}
		}()
		return nil, ctx.Err()
	}
}

// OpenSibling opens another session to path on this client session's QUIC connection (several
// sessions share one connection; datagrams are routed per session), with the options this
// session was dialled with. Like Dial, a cancelled ctx returns at once; the attempt still
// running keeps this session's handle in use (a Close waits for it) and is released when it
// ends.
func (s *Session) OpenSibling(ctx context.Context, path string) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type result struct {
		h   cSession
		err error
	}
	ch := make(chan result, 1)
	s.mu.RLock()
	if s.h == nil {
		s.mu.RUnlock()
		return nil, errReleased("Session.OpenSibling")
	}
	go func() {
		defer s.mu.RUnlock()
		h, err := cSessionOpenSibling(s.h, path)
		ch <- result{h, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return newSession(r.h), nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.h != nil {
				cSessionFree(r.h)
			}
		}()
		return nil, ctx.Err()
	}
}

// Send sends one datagram now without blocking. Errors: ErrTooLarge above MaxDatagramSize,
// ErrWouldBlock when QUIC's send buffer is full (nothing was queued or dropped), ErrClosed,
// ErrInvalidArgument for an empty datagram, ErrNotSupported when the peer takes no datagrams.
// p is only read during the call.
func (s *Session) Send(p []byte) error {
	s.mu.RLock()
	h := s.h
	if h == nil {
		s.mu.RUnlock()
		return errReleased("Session.Send")
	}
	err := cSessionSend(h, p)
	s.mu.RUnlock()
	return err
}

// Receive waits for the next datagram and returns it in a new slice. It returns ctx.Err()
// when ctx ends first, and a *CloseError (errors.Is ErrClosed) once the session is closed and
// nothing is left to read. Waiting parks the goroutine on Go's poller (no OS thread is held).
func (s *Session) Receive(ctx context.Context) ([]byte, error) {
	bp := rxPool.Get().(*[]byte)
	n, err := s.ReceiveInto(ctx, *bp)
	var out []byte
	if err == nil {
		out = make([]byte, n)
		copy(out, (*bp)[:n])
	}
	rxPool.Put(bp)
	return out, err
}

// ReceiveInto is Receive into the caller's buffer: it returns the datagram's length. A
// datagram larger than buf stays queued and the call fails with ErrBufferTooSmall.
func (s *Session) ReceiveInto(ctx context.Context, buf []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := s.h
	if h == nil {
		return 0, errReleased("Session.Receive")
	}
	n, err := cSessionTryReceive(h, buf)
	if err != ErrWouldBlock {
		return n, s.closed(h, "Session.Receive", err)
	}
	return s.waitReceive(ctx, h, buf)
}

// waitReceive is ReceiveInto's slow path: park on the poller. (Kept apart so the variables its
// closure captures are not heap-allocated on the fast path.)
func (s *Session) waitReceive(ctx context.Context, h cSession, buf []byte) (int, error) {
	rdy, rerr := s.readiness(h)
	if rerr != nil {
		return 0, rerr
	}
	var n int
	var err error
	werr := rdy.wait(ctx, func() bool {
		n, err = cSessionTryReceive(h, buf)
		return err != ErrWouldBlock
	})
	if werr != nil {
		return 0, werr
	}
	return n, s.closed(h, "Session.Receive", err)
}

// ReceiveBatch waits for at least one datagram, then takes as many queued ones as fit into
// bufs in one library call: bufs[i] is resliced to the i-th datagram (its capacity is the
// room; the backing arrays are reused, nothing is allocated). It returns how many were filled.
// Same errors as ReceiveInto; a first datagram larger than cap(bufs[0]) is ErrBufferTooSmall.
func (s *Session) ReceiveBatch(ctx context.Context, bufs [][]byte) (int, error) {
	if len(bufs) == 0 {
		return 0, &Error{Op: "Session.ReceiveBatch", Code: ErrInvalidArgument, Message: "no buffers"}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := s.h
	if h == nil {
		return 0, errReleased("Session.ReceiveBatch")
	}
	n, err := s.tryBatch(h, bufs)
	if err != ErrWouldBlock {
		return n, s.closed(h, "Session.ReceiveBatch", err)
	}
	rdy, rerr := s.readiness(h)
	if rerr != nil {
		return 0, rerr
	}
	return s.waitBatch(ctx, rdy, h, bufs)
}

func (s *Session) tryBatch(h cSession, bufs [][]byte) (int, error) {
	s.rxMu.Lock()
	s.rx.prepareReceive(bufs)
	n, err := cSessionReceiveBatch(h, &s.rx)
	if err == nil {
		s.rx.finishReceive(bufs, n)
	}
	s.rxMu.Unlock()
	return n, err
}

func (s *Session) waitBatch(ctx context.Context, rdy *readiness, h cSession, bufs [][]byte) (int, error) {
	var n int
	var err error
	if werr := rdy.wait(ctx, func() bool {
		n, err = s.tryBatch(h, bufs)
		return err != ErrWouldBlock
	}); werr != nil {
		return 0, werr
	}
	return n, s.closed(h, "Session.ReceiveBatch", err)
}

// closed turns a WTD_ERR_CLOSED from a receive into a *CloseError with the close code/reason.
func (s *Session) closed(h cSession, op string, err error) error {
	if e, ok := err.(*Error); ok && e.Code == ErrClosed {
		if code, reason, ierr := cSessionCloseInfo(h); ierr == nil {
			return &CloseError{Op: op, Code: code, Reason: reason}
		}
	}
	return err
}

// readiness returns the session's poller waiter, creating it on first use.
func (s *Session) readiness(h cSession) (*readiness, error) {
	s.rdyMu.Lock()
	defer s.rdyMu.Unlock()
	if s.rdy != nil {
		return s.rdy, nil
	}
	fd, err := cSessionReadinessFd(h)
	if err != nil {
		return nil, err
	}
	r, err := newReadiness(fd)
	if err != nil {
		return nil, err
	}
	s.rdy = r
	return r, nil
}

// with runs f with the live handle (false when released).
func (s *Session) with(f func(h cSession)) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.h == nil {
		return false
	}
	f(s.h)
	return true
}

// ID is the session id (its CONNECT stream id; equal on both ends); 0 after Close.
func (s *Session) ID() uint64 {
	var id uint64
	s.with(func(h cSession) { id, _ = cSessionID(h) })
	return id
}

// Draft is the negotiated WebTransport draft.
func (s *Session) Draft() Draft {
	d := DraftUnknown
	s.with(func(h cSession) { d = cSessionDraft(h) })
	return d
}

// Path is the request :path (with query).
func (s *Session) Path() string {
	var p string
	s.with(func(h cSession) { p, _ = cSessionString(h, 0) })
	return p
}

// Origin is the request's origin header ("" when none was sent).
func (s *Session) Origin() string {
	var p string
	s.with(func(h cSession) { p, _ = cSessionString(h, 1) })
	return p
}

// MaxDatagramSize is the largest payload one datagram can carry now (it grows with path MTU
// discovery; 0 when the peer takes no datagrams or after Close).
func (s *Session) MaxDatagramSize() int {
	n := 0
	s.with(func(h cSession) { n = cSessionMaxDatagramSize(h) })
	return n
}

// IsDraining reports whether the peer asked to wind the session down (GOAWAY / DRAIN).
func (s *Session) IsDraining() bool {
	b := false
	s.with(func(h cSession) { b = cSessionIsDraining(h) })
	return b
}

// IsClosed reports whether the session is closed (by either side, or released by Close).
func (s *Session) IsClosed() bool {
	b := true
	s.with(func(h cSession) { b = cSessionIsClosed(h) })
	return b
}

// CloseInfo returns the close code and reason once the session is closed (ErrInvalidState
// while it is open).
func (s *Session) CloseInfo() (code uint32, reason string, err error) {
	if !s.with(func(h cSession) { code, reason, err = cSessionCloseInfo(h) }) {
		return 0, "", errReleased("Session.CloseInfo")
	}
	return
}

// Stats returns the session's counters.
func (s *Session) Stats() (SessionStats, error) {
	var st SessionStats
	var err error
	if !s.with(func(h cSession) { st, err = cSessionStats(h) }) {
		return st, errReleased("Session.Stats")
	}
	return st, err
}

// Close closes the session with code 0 and releases it (io.Closer). Safe to call twice; later
// calls on the session fail with ErrClosed.
func (s *Session) Close() error { return s.CloseWithError(0, "") }

// CloseWithError closes the session with an application code and reason (cut to 1024 bytes;
// the peer sees both) and releases it. Blocked receivers return. Only the first Close counts.
func (s *Session) CloseWithError(code uint32, reason string) error {
	s.closeOnce.Do(func() {
		s.mu.RLock()
		if s.h != nil {
			s.closeErr = cSessionClose(s.h, code, reason) // wakes waiters (readiness turns readable)
		}
		s.mu.RUnlock()
		s.release()
		runtime.SetFinalizer(s, nil)
	})
	return s.closeErr
}

// release frees the handle once no call is using it.
func (s *Session) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h != nil {
		cSessionFree(s.h)
		s.h = nil
	}
	if s.rdy != nil {
		s.rdy.close()
		s.rdy = nil
	}
	s.rxMu.Lock()
	s.rx.free()
	s.rxMu.Unlock()
}

func (s *Session) finalize() { s.release() }
