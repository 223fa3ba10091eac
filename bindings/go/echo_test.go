package wtd

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Go client ↔ the C echo server process (examples-c/wtd_echo_server): pinned certificate,
// echo, stats, and the close code/reason the server reports.
func TestEchoGoClientToWtdServer(t *testing.T) {
	bin := filepath.Join(buildDir(t), "examples-c", "wtd_echo_server")
	p := startPeer(t, bin, "--host", "127.0.0.1", "--port", "0")
	hash, err := ParseCertHash(p.hash)
	if err != nil {
		t.Fatalf("READY hash %q: %v", p.hash, err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/go-echo", p.port)
	s, err := Dial(ctxT(t, 10*time.Second), url, &DialOptions{CertHashes: [][32]byte{hash}})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer s.Close()
	if s.Draft() == DraftUnknown {
		t.Errorf("draft unknown")
	}
	if s.MaxDatagramSize() < 1000 {
		t.Errorf("MaxDatagramSize %d", s.MaxDatagramSize())
	}
	// wtd_echo_server echoes only from its datagram callback, which it installs in on_session;
	// the library registers the session before its 200 leaves and calls on_session after, so a
	// datagram sent the moment Dial returns can land in the session's receive queue before the
	// callback exists and is never echoed (src/h3/request.rs register → write 200 →
	// established; set_callbacks does not hand over what is queued). Seen once in ~60 runs
	// under -race. The first datagram is therefore resent once, visibly; every later one must
	// come back on the first try.
	sent := 1
	if err := s.Send([]byte("hello first")); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(context.Background(), time.Second)
	got, err := s.Receive(rctx)
	cancel()
	if errors.Is(err, context.DeadlineExceeded) {
		t.Logf("first datagram not echoed within 1 s (the server-side race above): resending")
		sent++
		echoRound(t, s, []byte("hello first"))
	} else if err != nil || string(got) != "hello first" {
		t.Fatalf("first echo = %q, %v", got, err)
	}
	for i := 0; i < 50; i++ {
		echoRound(t, s, []byte(fmt.Sprintf("hello %d", i)))
	}
	sent += 50
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.DatagramsSent != uint64(sent) || st.DatagramsReceived != 51 || st.DatagramsRead != 51 || st.RTT <= 0 {
		t.Errorf("stats after %d sends, 51 echoes: %+v", sent, st)
	}
	if _, ok := p.waitLine("SESSION_OPEN", 5*time.Second); !ok {
		t.Errorf("server printed no SESSION_OPEN")
	}
	if err := s.CloseWithError(42, "bye from go"); err != nil {
		t.Fatalf("CloseWithError: %v", err)
	}
	if l, ok := p.waitLine("SESSION_CLOSED", 5*time.Second); !ok {
		t.Errorf("server printed no SESSION_CLOSED")
	} else if want := "code=42 reason=bye from go"; !strings.Contains(l, want) {
		t.Errorf("server saw %q, want %q", l, want)
	}
	if err := s.Send([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Go server ↔ Go client in one process: echo, batch receive into reused buffers, stats on both
// ends, and close codes in both directions.
func TestEchoGoServerGoClient(t *testing.T) {
	g := startGoServer(t, true)
	c := g.dial(t, "/room?x=1")
	for i := 0; i < 20; i++ {
		echoRound(t, c, []byte(fmt.Sprintf("ping %d", i)))
	}
	ss := <-g.sessions
	if ss.Path() != "/room?x=1" {
		t.Errorf("server Path %q", ss.Path())
	}
	if ss.ID() != c.ID() {
		t.Errorf("session ids differ: server %d client %d", ss.ID(), c.ID())
	}
	if ss.Draft() != c.Draft() {
		t.Errorf("drafts differ: %v %v", ss.Draft(), c.Draft())
	}

	// Batch: 30 datagrams echoed, read 8 at a time into the same buffers.
	bufs := make([][]byte, 8)
	backing := make([]*byte, len(bufs))
	for i := range bufs {
		bufs[i] = make([]byte, 0, 2048)
		backing[i] = &bufs[i][:1][0]
	}
	for i := 0; i < 30; i++ {
		if err := c.Send([]byte(fmt.Sprintf("batch %02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]bool{}
	calls := 0
	for len(got) < 30 {
		n, err := c.ReceiveBatch(ctxT(t, 5*time.Second), bufs)
		if err != nil {
			t.Fatalf("ReceiveBatch after %d datagrams: %v", len(got), err)
		}
		calls++
		if n < 1 || n > len(bufs) {
			t.Fatalf("ReceiveBatch n=%d", n)
		}
		for i := 0; i < n; i++ {
			got[string(bufs[i])] = true
			if &bufs[i][:1][0] != backing[i] {
				t.Fatalf("buffer %d was reallocated", i)
			}
		}
	}
	for i := 0; i < 30; i++ {
		if !got[fmt.Sprintf("batch %02d", i)] {
			t.Errorf("batch %02d missing", i)
		}
	}
	t.Logf("30 datagrams in %d ReceiveBatch calls", calls)

	cst, _ := c.Stats()
	sst, _ := ss.Stats()
	if cst.DatagramsSent != 50 || cst.DatagramsRead != 50 || sst.DatagramsReceived != 50 || sst.DatagramsSent != 50 {
		t.Errorf("stats: client %+v server %+v", cst, sst)
	}
	if sst.BytesReceived != cst.BytesSent {
		t.Errorf("bytes: server received %d, client sent %d", sst.BytesReceived, cst.BytesSent)
	}

	// Client closes with a code: the server's receive loop ends with it.
	if err := c.CloseWithError(7, "done here"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-g.closed:
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != 7 || ce.Reason != "done here" || !errors.Is(err, ErrClosed) {
			t.Errorf("server receive ended with %v, want CloseError{7, done here}", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not see the close")
	}
	code, reason, err := ss.CloseInfo()
	if err != nil || code != 7 || reason != "done here" {
		t.Errorf("server CloseInfo = %d %q %v", code, reason, err)
	}
	if !ss.IsClosed() {
		t.Errorf("server session not closed")
	}

	// Server closes a second session with a code: the client's receive sees it.
	g2 := startGoServer(t, false)
	c2 := g2.dial(t, "/kick")
	s2 := <-g2.sessions
	if err := s2.CloseWithError(4242, "kicked"); err != nil {
		t.Fatal(err)
	}
	_, err = c2.Receive(ctxT(t, 5*time.Second))
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 4242 || ce.Reason != "kicked" {
		t.Errorf("client receive after server close: %v", err)
	}
}

// Two sessions on one connection (OpenSibling): each has its own id, path and datagrams.
func TestOpenSibling(t *testing.T) {
	g := startGoServer(t, true)
	a := g.dial(t, "/a")
	b, err := a.OpenSibling(ctxT(t, 10*time.Second), "/b")
	if err != nil {
		t.Fatalf("OpenSibling: %v", err)
	}
	defer b.Close()
	if a.ID() == b.ID() {
		t.Errorf("siblings share id %d", a.ID())
	}
	echoRound(t, a, []byte("to a"))
	echoRound(t, b, []byte("to b"))
	// Both sessions were accepted before their echoes came back.
	paths := map[string]bool{}
	var got []*Session
	for i := 0; i < 2; i++ {
		s := <-g.sessions
		paths[s.Path()] = true
		got = append(got, s)
	}
	for _, s := range got {
		g.sessions <- s // closed by the server's cleanup
	}
	if !paths["/a"] || !paths["/b"] {
		t.Errorf("server paths %v", paths)
	}
	if st, _ := b.Stats(); st.DatagramsSent != 1 || st.DatagramsRead != 1 {
		t.Errorf("sibling stats %+v", st)
	}
}

// ServerOptions.OnRequest accepts or refuses session requests (a Go callback called from a
// wtd network thread); a refused Dial fails with ErrRejected, a panicking hook refuses with 500.
func TestServerOnRequest(t *testing.T) {
	seen := make(chan Request, 16)
	srv, err := Listen("127.0.0.1:0", &ServerOptions{OnRequest: func(r *Request) int {
		seen <- *r
		switch r.Path {
		case "/ok":
			return 200
		case "/panic":
			panic("hook panics")
		}
		return 403
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	opts := &DialOptions{CertHashes: [][32]byte{srv.CertHash()}, Origin: "https://game.example"}

	_, err = Dial(ctxT(t, 10*time.Second), srv.URL("/forbidden"), opts)
	if !errors.Is(err, ErrRejected) {
		t.Errorf("Dial /forbidden: %v, want ErrRejected", err)
	} else {
		t.Logf("refused: %v", err)
	}
	if _, err = Dial(ctxT(t, 10*time.Second), srv.URL("/panic"), opts); !errors.Is(err, ErrRejected) {
		t.Errorf("Dial /panic: %v, want ErrRejected", err)
	}
	c, err := Dial(ctxT(t, 10*time.Second), srv.URL("/ok"), opts)
	if err != nil {
		t.Fatalf("Dial /ok: %v", err)
	}
	defer c.Close()
	s, err := srv.Accept(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	defer s.Close()
	if s.Path() != "/ok" || s.Origin() != "https://game.example" {
		t.Errorf("accepted session path %q origin %q", s.Path(), s.Origin())
	}
	var reqs []Request
	for len(seen) > 0 {
		reqs = append(reqs, <-seen)
	}
	if len(reqs) != 3 || reqs[2].Path != "/ok" || reqs[2].Origin != "https://game.example" ||
		reqs[2].Draft == DraftUnknown || reqs[2].Authority == "" {
		t.Errorf("hook saw %+v", reqs)
	}
	// Only the accepted request reached the accept queue.
	actx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := srv.Accept(actx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a refused request was queued: %v", err)
	}
}
