package wtd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Context cancellation and deadlines on every call that can wait.
func TestContextCancellation(t *testing.T) {
	g := startGoServer(t, true)
	c := g.dial(t, "/ctx")

	// Already cancelled: returns at once, nothing consumed.
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Receive(dead); !errors.Is(err, context.Canceled) {
		t.Errorf("Receive(cancelled) = %v", err)
	}

	// Cancel while parked.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	start := time.Now()
	go func() { _, err := c.Receive(ctx); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Receive after cancel = %v", err)
		}
		t.Logf("cancel → Receive returned after %v (cancelled at 50 ms)", time.Since(start))
	case <-time.After(2 * time.Second):
		t.Fatal("cancel did not wake Receive")
	}

	// Deadline while parked.
	start = time.Now()
	dctx, dcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := c.Receive(dctx)
	dcancel()
	el := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || el < 90*time.Millisecond || el > 2*time.Second {
		t.Errorf("Receive(100 ms deadline) = %v after %v", err, el)
	}

	// The session still works afterwards (the cancelled waits left no stale deadline).
	for i := 0; i < 5; i++ {
		echoRound(t, c, []byte(fmt.Sprintf("after cancel %d", i)))
	}

	// Many goroutines waiting on one session with different contexts: each ends on its own.
	const n = 8
	errs := make(chan error, n)
	cancels := make([]context.CancelFunc, n)
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		go func() { _, err := c.Receive(ctx); errs <- err }()
	}
	time.Sleep(30 * time.Millisecond)
	for i := 0; i < n; i++ {
		cancels[i]()
		select {
		case err := <-errs:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("waiter %d: %v", i, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("waiter %d not woken by its cancel", i)
		}
	}
	echoRound(t, c, []byte("still alive"))

	// Batch receive honours the context too.
	bctx, bcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if _, err := c.ReceiveBatch(bctx, [][]byte{make([]byte, 0, 100)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReceiveBatch(deadline) = %v", err)
	}
	bcancel()

	// Accept with a deadline and with a cancel.
	start = time.Now()
	actx, acancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if _, err := g.Accept(actx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Accept(deadline) = %v", err)
	}
	acancel()
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Accept(100 ms deadline) took %v", el)
	}

	// Dial: cancelled context, and a deadline against a port where nobody answers.
	if _, err := Dial(dead, g.URL("/x"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Dial(cancelled) = %v", err)
	}
	silent := startGoServer(t, false)
	port := silent.Port()
	silent.Close() // the port is free again: nobody answers there
	start = time.Now()
	dctx, dcancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = Dial(dctx, fmt.Sprintf("https://127.0.0.1:%d/x", port), &DialOptions{InsecureSkipVerify: true})
	dcancel()
	if el := time.Since(start); err == nil || el > 3*time.Second {
		t.Errorf("Dial to a silent port = %v after %v", err, el)
	} else {
		t.Logf("Dial to a silent port with a 300 ms deadline: %v after %v", err, el)
	}
}

// Close wakes a receiver that waits without a deadline.
func TestCloseWakesReceiver(t *testing.T) {
	g := startGoServer(t, false)
	c := g.dial(t, "/close")
	errc := make(chan error, 1)
	go func() { _, err := c.Receive(context.Background()); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	if err := c.CloseWithError(3, "local"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Receive after Close = %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not wake Receive")
	}
}

// Server.Close ends an Accept that waits without a deadline.
func TestCloseEndsAccept(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := srv.Accept(context.Background()); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Accept after Close = %v", err)
		}
		t.Logf("Close → Accept returned after %v", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end Accept")
	}
}

// Waiting receives and accepts park on Go's poller: 16 sessions each with a goroutine blocked
// in Receive and 8 servers each with one blocked in Accept must not cost an OS thread each (a
// wait inside the library would).
func TestWaitingHoldsNoOSThread(t *testing.T) {
	g := startGoServer(t, false)
	var sess []*Session
	for i := 0; i < 16; i++ {
		sess = append(sess, g.dial(t, fmt.Sprintf("/idle%d", i)))
	}
	var servers []*Server
	for i := 0; i < 8; i++ {
		srv, err := Listen("127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		servers = append(servers, srv)
	}
	time.Sleep(100 * time.Millisecond)
	before := osThreads(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, len(sess)+len(servers))
	for _, s := range sess {
		s := s
		go func() { _, err := s.Receive(ctx); errc <- err }()
	}
	for _, srv := range servers {
		srv := srv
		go func() { _, err := srv.Accept(ctx); errc <- err }()
	}
	time.Sleep(300 * time.Millisecond)
	during := osThreads(t)
	cancel()
	for i := 0; i < len(sess)+len(servers); i++ {
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("waiter: %v", err)
		}
	}
	t.Logf("OS threads: %d before, %d with 16 receives and 8 accepts waiting", before, during)
	if during-before > 3 {
		t.Errorf("24 waiting calls added %d OS threads", during-before)
	}
}

func osThreads(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status on this OS")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Threads:") {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(l, "Threads:")))
			return n
		}
	}
	t.Fatal("no Threads line")
	return 0
}
