package wtd

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// Transport is the datagram transport of one session: a send queue ordered by priority (higher
// first, FIFO among equals) with per-datagram TTL and a drop policy, a receive queue, and
// statistics with a reason for every drop. Once a session has a transport, receive through the
// transport, not the session. Methods may be called from any goroutine.
type Transport struct {
	mu sync.RWMutex
	h  cTransport
	// session keeps the Go Session reachable while the transport is: otherwise the session's
	// finalizer could free (and so close) a session whose transport is still in use.
	session *Session
	rdyMu   sync.Mutex
	rdy     *readiness

	rxMu sync.Mutex
	rx   cSlab
	txMu sync.Mutex
	tx   cSlab

	closeOnce sync.Once
	closeErr  error
}

// NewTransport creates the transport of session (opts nil = defaults). Datagrams already queued
// on the session move into it. The transport keeps the session alive on the library side; close
// both when done. Errors: ErrInvalidArgument (bad options), ErrClosed (session closed).
func NewTransport(session *Session, opts *TransportOptions) (*Transport, error) {
	var t cTransport
	var err error
	if !session.with(func(h cSession) { t, err = cTransportNew(h, opts) }) {
		return nil, errReleased("NewTransport")
	}
	if err != nil {
		return nil, err
	}
	tr := &Transport{h: t, session: session}
	runtime.SetFinalizer(tr, (*Transport).finalize)
	return tr, nil
}

func (t *Transport) with(f func(h cTransport)) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.h == nil {
		return false
	}
	f(t.h)
	return true
}

// Send queues one datagram (copied) with a priority (any int32, higher first) and a TTL (0 =
// none; a datagram still queued when it runs out is dropped and counted in DroppedExpired).
// When QUIC has room and nothing is queued it goes out at once. A full queue applies the drop
// policy; with DropBlock the call waits up to SenderTimeout inside the library (holding the OS
// thread). Errors: ErrTooLarge, ErrWouldBlock / ErrTimeout (queue full), ErrClosed,
// ErrInvalidArgument (empty datagram).
func (t *Transport) Send(data []byte, priority int32, ttl time.Duration) error {
	return t.send(data, priority, ttl, true)
}

// TrySend is Send that never waits (a full DropBlock queue fails with ErrWouldBlock at once).
func (t *Transport) TrySend(data []byte, priority int32, ttl time.Duration) error {
	return t.send(data, priority, ttl, false)
}

func (t *Transport) send(data []byte, priority int32, ttl time.Duration, wait bool) error {
	t.mu.RLock()
	h := t.h
	if h == nil {
		t.mu.RUnlock()
		return errReleased("Transport.Send")
	}
	err := cTransportSend(h, data, priority, ttl, wait)
	t.mu.RUnlock()
	return err
}

// SendBatch queues datagrams in order, each like Send with the same priority and TTL, in one
// library call; it stops at the first failure and returns how many were accepted with that
// failure's error.
func (t *Transport) SendBatch(datagrams [][]byte, priority int32, ttl time.Duration) (int, error) {
	if len(datagrams) == 0 {
		return 0, nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.h == nil {
		return 0, errReleased("Transport.SendBatch")
	}
	t.txMu.Lock()
	defer t.txMu.Unlock()
	t.tx.prepareSend(datagrams)
	return cTransportSendBatch(t.h, &t.tx, priority, ttl)
}

// Receive waits for the next datagram and returns it in a new slice; ctx.Err() when ctx ends
// first; an error matching ErrClosed once the transport is closed and drained.
func (t *Transport) Receive(ctx context.Context) ([]byte, error) {
	bp := rxPool.Get().(*[]byte)
	n, err := t.ReceiveInto(ctx, *bp)
	var out []byte
	if err == nil {
		out = make([]byte, n)
		copy(out, (*bp)[:n])
	}
	rxPool.Put(bp)
	return out, err
}

// ReceiveInto is Receive into the caller's buffer; a datagram larger than buf stays queued
// (ErrBufferTooSmall).
func (t *Transport) ReceiveInto(ctx context.Context, buf []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	h := t.h
	if h == nil {
		return 0, errReleased("Transport.Receive")
	}
	n, err := cTransportTryReceive(h, buf)
	if err != ErrWouldBlock {
		return n, err
	}
	return t.waitReceive(ctx, h, buf)
}

// waitReceive is ReceiveInto's slow path (apart, so the fast path allocates nothing).
func (t *Transport) waitReceive(ctx context.Context, h cTransport, buf []byte) (int, error) {
	rdy, rerr := t.readiness(h)
	if rerr != nil {
		return 0, rerr
	}
	var n int
	var err error
	if werr := rdy.wait(ctx, func() bool {
		n, err = cTransportTryReceive(h, buf)
		return err != ErrWouldBlock
	}); werr != nil {
		return 0, werr
	}
	return n, err
}

// ReceiveBatch waits for at least one datagram, then takes as many queued ones as fit into
// bufs in one library call (bufs[i] resliced to the i-th datagram; backing arrays reused).
func (t *Transport) ReceiveBatch(ctx context.Context, bufs [][]byte) (int, error) {
	if len(bufs) == 0 {
		return 0, &Error{Op: "Transport.ReceiveBatch", Code: ErrInvalidArgument, Message: "no buffers"}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	h := t.h
	if h == nil {
		return 0, errReleased("Transport.ReceiveBatch")
	}
	n, err := t.tryBatch(h, bufs)
	if err != ErrWouldBlock {
		return n, err
	}
	return t.waitBatch(ctx, h, bufs)
}

func (t *Transport) tryBatch(h cTransport, bufs [][]byte) (int, error) {
	t.rxMu.Lock()
	t.rx.prepareReceive(bufs)
	n, err := cTransportReceiveBatch(h, &t.rx)
	if err == nil {
		t.rx.finishReceive(bufs, n)
	}
	t.rxMu.Unlock()
	return n, err
}

func (t *Transport) waitBatch(ctx context.Context, h cTransport, bufs [][]byte) (int, error) {
	rdy, rerr := t.readiness(h)
	if rerr != nil {
		return 0, rerr
	}
	var n int
	var err error
	if werr := rdy.wait(ctx, func() bool {
		n, err = t.tryBatch(h, bufs)
		return err != ErrWouldBlock
	}); werr != nil {
		return 0, werr
	}
	return n, err
}

func (t *Transport) readiness(h cTransport) (*readiness, error) {
	t.rdyMu.Lock()
	defer t.rdyMu.Unlock()
	if t.rdy != nil {
		return t.rdy, nil
	}
	fd, err := cTransportReadinessFd(h)
	if err != nil {
		return nil, err
	}
	r, err := newReadiness(fd)
	if err != nil {
		return nil, err
	}
	t.rdy = r
	return r, nil
}

// Stats returns the transport's counters.
func (t *Transport) Stats() (TransportStats, error) {
	var st TransportStats
	var err error
	if !t.with(func(h cTransport) { st, err = cTransportStats(h) }) {
		return st, errReleased("Transport.Stats")
	}
	return st, err
}

// QueueStats returns the size, capacity and per-priority counts of both queues.
func (t *Transport) QueueStats() (QueueStats, error) {
	var st QueueStats
	var err error
	if !t.with(func(h cTransport) { st, err = cTransportQueueStats(h) }) {
		return st, errReleased("Transport.QueueStats")
	}
	return st, err
}

// SendBufferSize is the number of datagrams waiting in the send queue.
func (t *Transport) SendBufferSize() int {
	n := 0
	t.with(func(h cTransport) { n = cTransportBufferSize(h, 0) })
	return n
}

// ReceiveBufferSize is the number of datagrams waiting in the receive queue.
func (t *Transport) ReceiveBufferSize() int {
	n := 0
	t.with(func(h cTransport) { n = cTransportBufferSize(h, 1) })
	return n
}

// MaxDatagramSize is the largest payload one datagram can carry now.
func (t *Transport) MaxDatagramSize() int {
	n := 0
	t.with(func(h cTransport) { n = cTransportMaxDatagramSize(h) })
	return n
}

// ClearSendBuffer drops every queued outgoing datagram (counted) and returns how many.
func (t *Transport) ClearSendBuffer() (int, error) { return t.clear(0) }

// ClearReceiveBuffer drops every queued incoming datagram (counted) and returns how many.
func (t *Transport) ClearReceiveBuffer() (int, error) { return t.clear(1) }

func (t *Transport) clear(which int) (int, error) {
	var n int
	var err error
	if !t.with(func(h cTransport) { n, err = cTransportClear(h, which) }) {
		return 0, errReleased("Transport.Clear")
	}
	return n, err
}

// SetOutgoingMaxAge drops queued datagrams older than d before sending (0 = no limit).
func (t *Transport) SetOutgoingMaxAge(d time.Duration) error { return t.setMaxAge(0, d) }

// SetIncomingMaxAge drops received datagrams older than d when read (0 = no limit).
func (t *Transport) SetIncomingMaxAge(d time.Duration) error { return t.setMaxAge(1, d) }

func (t *Transport) setMaxAge(which int, d time.Duration) error {
	var err error
	if !t.with(func(h cTransport) { err = cTransportSetMaxAge(h, which, d) }) {
		return errReleased("Transport.SetMaxAge")
	}
	return err
}

// Close closes the transport without flushing (queued datagrams are dropped and counted) and
// releases it (io.Closer). The session stays open. Safe to call twice.
func (t *Transport) Close() error { return t.CloseFlush(0) }

// CloseFlush first waits up to flush for the send queue to drain into QUIC, then closes and
// releases the transport. Only the first Close/CloseFlush counts.
func (t *Transport) CloseFlush(flush time.Duration) error {
	t.closeOnce.Do(func() {
		t.mu.RLock()
		if t.h != nil {
			t.closeErr = cTransportClose(t.h, flush)
		}
		t.mu.RUnlock()
		t.finalize()
		runtime.SetFinalizer(t, nil)
	})
	return t.closeErr
}

func (t *Transport) finalize() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h != nil {
		cTransportFree(t.h)
		t.h = nil
	}
	if t.rdy != nil {
		t.rdy.close()
		t.rdy = nil
	}
	t.rxMu.Lock()
	t.rx.free()
	t.rxMu.Unlock()
	t.txMu.Lock()
	t.tx.free()
	t.txMu.Unlock()
}
