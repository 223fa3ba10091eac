package wtd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

// Benchmarks of the cgo boundary. The library should be a release build for meaningful figures
// (scripts/test-go.sh --bench links against one); the peer is an in-process Go server.

// benchEngineOwned: WTD_GO_BENCH_RUNTIME=poll runs this process in engine-owned mode
// (RuntimePoll, set in TestMain before wtd starts), for the send benchmarks only
// (scripts/test-go.sh --bench selects them): no wtd thread to wake per burst, and the pauses
// between bursts run Poll, which hands the queued sends to QUIC.
var benchEngineOwned = os.Getenv("WTD_GO_BENCH_RUNTIME") == "poll"

func TestMain(m *testing.M) {
	if benchEngineOwned {
		if err := SetRuntimeMode(RuntimePoll); err != nil {
			fmt.Fprintln(os.Stderr, "SetRuntimeMode(RuntimePoll):", err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

// pauseBetweenBursts waits 2 ms (timer stopped by the caller); engine-owned, inside Poll.
func pauseBetweenBursts() {
	if !benchEngineOwned {
		time.Sleep(2 * time.Millisecond)
		return
	}
	end := time.Now().Add(2 * time.Millisecond)
	for d := time.Until(end); d > 0; d = time.Until(end) {
		if _, err := Poll(d); err != nil {
			panic(err)
		}
	}
}

// The bare cost of one cgo call into libwtd (wtd_version_number).
func BenchmarkCgoCall(b *testing.B) {
	for i := 0; i < b.N; i++ {
		cNoop()
	}
}

// The same call inside the LockOSThread/UnlockOSThread pair every fallible wrapper uses (so the
// per-thread error message is read on the thread that failed).
func BenchmarkCgoCallLocked(b *testing.B) {
	for i := 0; i < b.N; i++ {
		cNoopLocked()
	}
}

// benchPair: a Go server (not reading) and a connected client, plus the server-side session.
func benchPair(b *testing.B) (*Server, *Session, *Session) {
	srv, err := Listen("127.0.0.1:0", &ServerOptions{IncomingQueueCapacity: 65536})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *Session, 1)
	go func() { s, _ := srv.Accept(ctx); accepted <- s }()
	c, err := Dial(ctx, srv.URL("/bench"), &DialOptions{CertHashes: [][32]byte{srv.CertHash()}, IncomingQueueCapacity: 65536})
	if err != nil {
		b.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		b.Fatal("no session accepted")
	}
	b.Cleanup(func() { c.Close(); s.Close(); srv.Close() })
	return srv, c, s
}

// sendBursts times bursts of 64 calls with a 2 ms pause between bursts (timer stopped), the
// shape bench/README.md uses for the C figure, so QUIC's buffer drains between bursts.
func sendBursts(b *testing.B, send func() error) {
	blocked := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := send(); err != nil {
			if !errors.Is(err, ErrWouldBlock) {
				b.Fatal(err)
			}
			blocked++
		}
		if i%64 == 63 {
			b.StopTimer()
			pauseBetweenBursts()
			b.StartTimer()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(blocked)/float64(b.N), "wouldblock/op")
}

// Session.Send of a 64-byte datagram (wtd_session_send through cgo).
func BenchmarkSessionSend(b *testing.B) {
	_, c, _ := benchPair(b)
	p := make([]byte, 64)
	b.ReportAllocs()
	sendBursts(b, func() error { return c.Send(p) })
}

// Transport.TrySend of a 64-byte datagram (wtd_transport_try_send through cgo).
func BenchmarkTransportTrySend(b *testing.B) {
	_, c, _ := benchPair(b)
	t, err := NewTransport(c, &TransportOptions{OutgoingHighWaterMark: 4096})
	if err != nil {
		b.Fatal(err)
	}
	defer t.Close()
	p := make([]byte, 64)
	b.ReportAllocs()
	sendBursts(b, func() error { return t.TrySend(p, 0, 0) })
}

// Transport.SendBatch: 32 datagrams of 64 bytes per call (copied into a C slab, one cgo call),
// two calls per 64-datagram burst; ns/op is per datagram.
func BenchmarkTransportSendBatch32(b *testing.B) {
	_, c, _ := benchPair(b)
	t, err := NewTransport(c, &TransportOptions{OutgoingHighWaterMark: 4096})
	if err != nil {
		b.Fatal(err)
	}
	defer t.Close()
	batch := make([][]byte, 32)
	for i := range batch {
		batch[i] = make([]byte, 64)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 32 {
		if _, err := t.SendBatch(batch, 0, 0); err != nil && !errors.Is(err, ErrWouldBlock) {
			b.Fatal(err)
		}
		if i%64 == 32 { // bursts of 64 datagrams, as in sendBursts
			b.StopTimer()
			pauseBetweenBursts()
			b.StartTimer()
		}
	}
}

// fill makes the server session hold n queued datagrams (timer stopped by the caller).
func fill(b *testing.B, c, s *Session, p []byte, n int) int {
	for i := 0; i < n; i++ {
		c.Send(p)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		st, _ := s.Stats()
		if int(st.Queued) >= n || time.Now().After(deadline) {
			return int(st.Queued)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// Receive cost per datagram, one cgo call each (ReceiveInto, datagrams already queued).
func BenchmarkSessionReceiveInto(b *testing.B) {
	_, c, s := benchPair(b)
	p := make([]byte, 64)
	buf := make([]byte, 2048)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		b.StopTimer()
		q := fill(b, c, s, p, 64)
		b.StartTimer()
		for j := 0; j < q && i < b.N; j++ {
			if _, err := s.ReceiveInto(ctx, buf); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
}

// Receive cost per datagram with ReceiveBatch: 64 buffers, one cgo call per batch plus a copy
// out of the C slab.
func BenchmarkSessionReceiveBatch64(b *testing.B) {
	_, c, s := benchPair(b)
	p := make([]byte, 64)
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 0, 2048)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	calls := 0
	for i := 0; i < b.N; {
		b.StopTimer()
		q := fill(b, c, s, p, 64)
		b.StartTimer()
		for got := 0; got < q; {
			n, err := s.ReceiveBatch(ctx, bufs)
			if err != nil {
				b.Fatal(err)
			}
			got += n
			i += n
			calls++
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/float64(calls), "dgrams/call")
}

// Echo round trip with the receiver parked on Go's poller (the package's Receive).
func BenchmarkEchoRTTPoller(b *testing.B) {
	benchEcho(b, func(s *Session, buf []byte) error {
		_, err := s.ReceiveInto(context.Background(), buf)
		return err
	})
}

// Echo round trip with both receivers blocked inside the library instead (an OS thread each):
// what the poller's wake-up costs against the library's own condition-variable wait.
func BenchmarkEchoRTTBlockingC(b *testing.B) {
	benchEcho(b, func(s *Session, buf []byte) error {
		var err error
		s.with(func(h cSession) { _, err = cSessionReceiveBlocking(h, buf, 5000) })
		return err
	})
}

func benchEcho(b *testing.B, recv func(*Session, []byte) error) {
	_, c, s := benchPair(b)
	stop := make(chan struct{})
	go func() {
		buf := make([]byte, 2048)
		for {
			if err := recv(s, buf[:cap(buf)]); err != nil {
				return
			}
			select {
			case <-stop:
				return
			default:
			}
			s.Send(buf[:64])
		}
	}()
	p := make([]byte, 64)
	buf := make([]byte, 2048)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Send(p); err != nil {
			b.Fatal(err)
		}
		if err := recv(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(stop)
	c.Send(p) // release the echo goroutine
}
