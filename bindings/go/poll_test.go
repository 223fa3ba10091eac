package wtd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// pollChildEnv marks the child process TestPollMode starts for TestPollModeChild: the runtime
// mode is process-wide and fixed once the runtime runs, so engine-owned mode gets a fresh
// process (every other test here runs in threads mode).
const pollChildEnv = "WTD_GO_POLL_CHILD"

// wtdThreads counts this process's threads named "wtd-rt" (wtd's runtime threads).
func wtdThreads(t *testing.T) int {
	t.Helper()
	comms, err := filepath.Glob("/proc/self/task/*/comm")
	if err != nil || len(comms) == 0 {
		t.Fatalf("cannot list /proc/self/task: %v", err)
	}
	n := 0
	for _, p := range comms {
		b, err := os.ReadFile(p)
		if err == nil && strings.TrimSpace(string(b)) == "wtd-rt" {
			n++
		}
	}
	return n
}

// In this (threads-mode) process: Poll is refused, an unknown mode is refused, the wtd-rt
// threads exist (so the child's "no wtd-rt thread" check can see them), and the child process
// passes TestPollModeChild.
func TestPollMode(t *testing.T) {
	if os.Getenv(pollChildEnv) != "" {
		t.Skip("the child process runs TestPollModeChild only")
	}
	_, err := Poll(0)
	var e *Error
	if !errors.Is(err, ErrInvalidState) || !errors.As(err, &e) || e.Op != "Poll" || e.Message == "" {
		t.Fatalf("Poll in threads mode = %v, want *Error{Op: Poll, ErrInvalidState, message}", err)
	}
	if err := SetRuntimeMode(RuntimeMode(7)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SetRuntimeMode(7) = %v, want ErrInvalidArgument", err)
	}
	if err := SetRuntimeMode(RuntimeThreads); err != nil {
		t.Fatalf("SetRuntimeMode(RuntimeThreads) in threads mode = %v", err)
	}
	srv, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := wtdThreads(t); n == 0 {
		t.Errorf("threads mode with a server running: no wtd-rt thread in /proc/self/task")
	}
	srv.Close()
	for _, c := range []struct {
		d    time.Duration
		want int32
	}{
		{-time.Nanosecond, -1}, {-time.Hour, -1}, {0, 0}, {time.Nanosecond, 1}, {time.Millisecond, 1},
		{1500 * time.Microsecond, 2}, {time.Duration(math.MaxInt64), math.MaxInt32},
		{math.MaxInt32 * time.Millisecond, math.MaxInt32},
	} {
		if got := int32(waitMs(c.d)); got != c.want {
			t.Errorf("waitMs(%v) = %d, want %d", c.d, got, c.want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestPollModeChild$", "-test.v",
		"-test.count=1", "-test.timeout=100s")
	cmd.Env = append(os.Environ(), pollChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestPollModeChild") {
		t.Fatalf("child process (poll mode): %v\n%s", err, out)
	}
	t.Logf("child process:\n%s", out)
}

// Engine-owned mode in a fresh process (started by TestPollMode): a server and a client in
// this process; the server's accept/echo goroutine and the client's receive goroutine park on
// Go's poller, and only this test's Poll loop (on a locked OS thread) moves datagrams. Checks:
// nothing moves while nobody polls, no wtd-rt thread exists, OnRequest runs on the thread
// driving wtd, Poll counts the events, Poll(0) does not allocate and returns at once, a
// Poll(60ms) with nothing to do waits, close codes arrive, SetRuntimeMode(RuntimeThreads)
// while running is ErrInvalidState, and Poll after going back to threads mode is refused.
func TestPollModeChild(t *testing.T) {
	if os.Getenv(pollChildEnv) != "1" {
		t.Skip("runs in the child process TestPollMode starts")
	}
	runtime.LockOSThread() // the game loop: every Poll from one OS thread
	defer runtime.UnlockOSThread()
	loopTid := syscall.Gettid()

	if err := SetRuntimeMode(RuntimePoll); err != nil {
		t.Fatal(err)
	}
	var hookTid atomic.Int64
	srv, err := Listen("127.0.0.1:0", &ServerOptions{OnRequest: func(r *Request) int {
		hookTid.Store(int64(syscall.Gettid()))
		return 200
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := SetRuntimeMode(RuntimeThreads); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("SetRuntimeMode(RuntimeThreads) while the poll runtime runs = %v, want ErrInvalidState", err)
	}
	if err := SetRuntimeMode(RuntimePoll); err != nil {
		t.Fatalf("SetRuntimeMode(RuntimePoll) again = %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 64
	var echoed atomic.Int64
	serverDone := make(chan error, 1) // the error that ended the server's receive loop
	go func() {
		s, err := srv.Accept(ctx)
		if err != nil {
			serverDone <- err
			return
		}
		defer s.Close()
		buf := make([]byte, 64)
		for {
			k, err := s.ReceiveInto(ctx, buf)
			if err != nil {
				serverDone <- err
				return
			}
			if err := s.Send(buf[:k]); err != nil {
				serverDone <- err
				return
			}
			echoed.Add(1)
		}
	}()

	// A blocking call drives wtd itself: no poller needed, and the request hook runs inside it.
	c, err := Dial(context.Background(), srv.URL("/poll"), &DialOptions{CertHashes: [][32]byte{srv.CertHash()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := hookTid.Load(); got != int64(loopTid) {
		t.Errorf("OnRequest ran on thread %d, want the thread driving wtd (%d)", got, loopTid)
	}

	var mu sync.Mutex
	back := map[uint32]int{}
	var backCount atomic.Int64
	clientDone := make(chan error, 1) // the error that ended the client's receive loop
	go func() {
		buf := make([]byte, 64)
		for {
			k, err := c.ReceiveInto(ctx, buf)
			if err != nil {
				clientDone <- err
				return
			}
			if k != 4 {
				clientDone <- fmt.Errorf("echo of %d bytes", k)
				return
			}
			mu.Lock()
			back[binary.LittleEndian.Uint32(buf)]++
			mu.Unlock()
			backCount.Add(1)
		}
	}()

	for i := 0; i < n; i++ {
		var p [4]byte
		binary.LittleEndian.PutUint32(p[:], uint32(i))
		if err := c.Send(p[:]); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	// Nobody polls: the sends stay queued, nothing is read or echoed.
	time.Sleep(100 * time.Millisecond)
	if e := echoed.Load(); e != 0 {
		t.Fatalf("%d datagrams echoed while nobody called Poll", e)
	}
	if k := wtdThreads(t); k != 0 {
		t.Fatalf("poll mode: %d wtd-rt threads", k)
	}

	var events uint64
	for end := time.Now().Add(10 * time.Second); backCount.Load() < n && time.Now().Before(end); {
		k, err := Poll(10 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		events += k
	}
	mu.Lock()
	if len(back) != n || backCount.Load() != n {
		t.Fatalf("%d of %d echoes back (%d distinct)", backCount.Load(), n, len(back))
	}
	for i := uint32(0); i < n; i++ {
		if back[i] != 1 {
			t.Errorf("datagram %d came back %d times", i, back[i])
		}
	}
	mu.Unlock()
	// Each datagram reached a session twice: the server's queue, then the client's.
	if events < 2*n {
		t.Errorf("Poll counted %d events, want >= %d", events, 2*n)
	}
	if k := wtdThreads(t); k != 0 {
		t.Errorf("poll mode after the exchange: %d wtd-rt threads", k)
	}

	if a := testing.AllocsPerRun(100, func() { Poll(0) }); a != 0 {
		t.Errorf("Poll(0): %v allocations per call", a)
	}
	start := time.Now()
	if k, err := Poll(0); err != nil || k != 0 || time.Since(start) > 50*time.Millisecond {
		t.Errorf("idle Poll(0) = %d, %v after %v", k, err, time.Since(start))
	}
	start = time.Now()
	if k, err := Poll(60 * time.Millisecond); err != nil || k != 0 || time.Since(start) < 55*time.Millisecond {
		t.Errorf("idle Poll(60ms) = %d, %v after %v (want 0 events after >= 55 ms)", k, err, time.Since(start))
	}

	// Closing the client while its receive goroutine is parked and nobody polls: the close
	// must wake that receive itself (a local close makes the readiness descriptor readable at
	// once; before, only the next Poll did, and the receive hung until ctx ended). The close
	// reaches the server's waiting receive only through Poll.
	if err := c.CloseWithError(4242, "bye"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-clientDone:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("client's receive ended with %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("client's receive still waiting 5 s after CloseWithError returned")
	}
	var serverErr error
	for end := time.Now().Add(10 * time.Second); serverErr == nil && time.Now().Before(end); {
		if _, err := Poll(10 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		select {
		case serverErr = <-serverDone:
		default:
		}
	}
	var ce *CloseError
	if !errors.As(serverErr, &ce) || ce.Code != 4242 || ce.Reason != "bye" {
		t.Errorf("server's receive ended with %v, want *CloseError{4242, bye}", serverErr)
	}
	if e := echoed.Load(); e != n {
		t.Errorf("server echoed %d, want %d", e, n)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	Shutdown()
	if err := SetRuntimeMode(RuntimeThreads); err != nil {
		t.Fatalf("SetRuntimeMode(RuntimeThreads) after Shutdown = %v", err)
	}
	if _, err := Poll(0); !errors.Is(err, ErrInvalidState) {
		t.Errorf("Poll back in threads mode = %v, want ErrInvalidState", err)
	}
}
