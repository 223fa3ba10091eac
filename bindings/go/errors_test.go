package wtd

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// tooLarge is a datagram size no QUIC path allows. Tests of the "too large" error use it rather
// than MaxDatagramSize()+1, which path MTU discovery may make valid a moment later.
const tooLarge = 70000

// Each wtd_result code is a sentinel; *Error carries op, code and message.
func TestErrorsAreSentinels(t *testing.T) {
	g := startGoServer(t, false)
	c := g.dial(t, "/err")

	err := c.Send(nil)
	var we *Error
	if !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &we) || we.Op != "Session.Send" || we.Message == "" {
		t.Errorf("empty Send: %#v", err)
	}
	if errors.Is(err, ErrClosed) {
		t.Errorf("InvalidArgument matched ErrClosed")
	}
	t.Logf("empty Send: %v", err)
	err = c.Send(make([]byte, tooLarge)) // max+1 could become valid meanwhile (path MTU discovery)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "too large") {
		t.Errorf("oversized Send: %v", err)
	}
	t.Logf("oversized Send: %v", err)

	// A datagram too big for the caller's buffer stays queued.
	if err := c.Send(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	ss := <-g.sessions
	n, err := ss.ReceiveInto(ctxT(t, 5*time.Second), make([]byte, 10))
	if !errors.Is(err, ErrBufferTooSmall) {
		t.Errorf("ReceiveInto(10-byte buffer) = %d, %v", n, err)
	}
	if d, err := ss.Receive(ctxT(t, 5*time.Second)); err != nil || len(d) != 100 {
		t.Errorf("Receive after BUFFER_TOO_SMALL = %d bytes, %v", len(d), err)
	}

	// Wrong pinned hash: TLS error.
	var wrong [32]byte
	_, err = Dial(ctxT(t, 10*time.Second), g.URL("/x"), &DialOptions{CertHashes: [][32]byte{wrong}})
	if !errors.Is(err, ErrTLS) {
		t.Errorf("Dial with a wrong hash: %v", err)
	}
	t.Logf("wrong hash: %v", err)
	// Contradictory options.
	_, err = Dial(ctxT(t, 10*time.Second), g.URL("/x"), &DialOptions{CertHashes: [][32]byte{wrong}, InsecureSkipVerify: true})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Dial with hash + insecure: %v", err)
	}
	// Bad URL.
	if _, err = Dial(ctxT(t, 10*time.Second), "ftp://nowhere", nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Dial(bad url): %v", err)
	}
	// Port in use.
	if _, err = Listen(fmt.Sprintf("127.0.0.1:%d", g.Port()), nil); !errors.Is(err, ErrIO) {
		t.Errorf("Listen on a used port: %v", err)
	}
	if _, err = Listen("127.0.0.1", nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Listen without port: %v", err)
	}
	if _, err = Listen("127.0.0.1:0", &ServerOptions{CertFile: "/nonexistent.pem", KeyFile: "/nonexistent.key"}); !errors.Is(err, ErrTLS) && !errors.Is(err, ErrIO) {
		t.Errorf("Listen with a missing certificate: %v", err)
	}
	if _, err := ParseCertHash("abc"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ParseCertHash: %v", err)
	}

	// After Close: ErrClosed everywhere, Close twice is fine.
	c.Close()
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Receive(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Receive after Close: %v", err)
	}
	if _, err := c.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats after Close: %v", err)
	}
	if _, err := NewTransport(c, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("NewTransport after Close: %v", err)
	}
	g.Close()
	if _, err := g.Accept(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
}

// The library's message is per OS thread. Many goroutines failing in different ways at once,
// migrating between threads, must each get the message of their own failure.
func TestErrorMessagesUnderConcurrency(t *testing.T) {
	prev := runtime.GOMAXPROCS(8)
	defer runtime.GOMAXPROCS(prev)
	g := startGoServer(t, false)
	c := g.dial(t, "/conc")
	tooBig := make([]byte, tooLarge)

	// What each failure says when alone.
	msgOf := func(err error) string {
		var we *Error
		if !errors.As(err, &we) {
			t.Fatalf("not an *Error: %v", err)
		}
		return we.Message
	}
	emptyMsg, bigMsg := msgOf(c.Send(nil)), msgOf(c.Send(tooBig))
	if emptyMsg == "" || bigMsg == "" || emptyMsg == bigMsg {
		t.Fatalf("messages not distinguishable: %q / %q", emptyMsg, bigMsg)
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	wrong := 0
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				var err error
				var want string
				if (i+w)%2 == 0 {
					err, want = c.Send(nil), emptyMsg
				} else {
					err, want = c.Send(tooBig), bigMsg
				}
				if msgOf(err) != want {
					mu.Lock()
					wrong++
					mu.Unlock()
				}
				if i%100 == 0 {
					runtime.Gosched()
				}
			}
		}(w)
	}
	wg.Wait()
	if wrong != 0 {
		t.Errorf("%d of 32000 errors carried another call's message", wrong)
	}
}

// The send and receive fast paths allocate nothing per datagram (a cgo pointer check on the
// handle once cost 8 B per call; captured variables of the waiting path 3 allocations).
func TestFastPathsDoNotAllocate(t *testing.T) {
	g := startGoServer(t, false)
	c := g.dial(t, "/alloc")
	ss := <-g.sessions
	p := make([]byte, 32)
	if a := testing.AllocsPerRun(200, func() { c.Send(p) }); a != 0 {
		t.Errorf("Session.Send: %v allocations per call", a)
	}
	// Queue datagrams on the server session, then read them.
	for i := 0; i < 400; i++ {
		c.Send(p)
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if st, _ := ss.Stats(); st.Queued >= 300 {
			break
		}
	}
	buf := make([]byte, 2048)
	ctx := ctxT(t, 20*time.Second) // bounds every call should a datagram be missing
	if a := testing.AllocsPerRun(100, func() { ss.ReceiveInto(ctx, buf) }); a != 0 {
		t.Errorf("Session.ReceiveInto: %v allocations per call", a)
	}
	bufs := [][]byte{make([]byte, 0, 2048), make([]byte, 0, 2048)}
	if a := testing.AllocsPerRun(50, func() { ss.ReceiveBatch(ctx, bufs) }); a != 0 {
		t.Errorf("Session.ReceiveBatch: %v allocations per call", a)
	}

	// The same on transports.
	ct, err := NewTransport(c, &TransportOptions{OutgoingHighWaterMark: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	st, err := NewTransport(ss, &TransportOptions{IncomingHighWaterMark: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if a := testing.AllocsPerRun(200, func() { ct.TrySend(p, 1, time.Second) }); a != 0 {
		t.Errorf("Transport.TrySend: %v allocations per call", a)
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && st.ReceiveBufferSize() < 150; {
		time.Sleep(10 * time.Millisecond)
	}
	if a := testing.AllocsPerRun(50, func() { st.ReceiveInto(ctx, buf) }); a != 0 {
		t.Errorf("Transport.ReceiveInto: %v allocations per call", a)
	}
	if a := testing.AllocsPerRun(20, func() { st.ReceiveBatch(ctx, bufs) }); a != 0 {
		t.Errorf("Transport.ReceiveBatch: %v allocations per call", a)
	}
}

// The library loaded at run time is the one the header was compiled for.
func TestVersionMatchesHeader(t *testing.T) {
	ma, mi, pa := headerVersion()
	if want := fmt.Sprintf("%d.%d.%d", ma, mi, pa); Version() != want {
		t.Errorf("library %s, header %s", Version(), want)
	}
}

// SetSendCoalescing range-checks in Go and reaches the library (which accepts 0..100 ms).
func TestSetSendCoalescing(t *testing.T) {
	if err := SetSendCoalescing(101 * time.Millisecond); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("101 ms: %v", err)
	}
	if err := SetSendCoalescing(2 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := SetSendCoalescing(0); err != nil {
		t.Fatal(err)
	}
}
