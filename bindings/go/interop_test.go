package wtd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// interopPython is the Python 3.12 venv with pywebtransport 0.21.1 that tests/interop/setup.sh
// installs (WTD_INTEROP_CACHE, default <repo>/build/interop-cache). Missing, the test fails
// with how to install it; WTD_GO_NO_PEERS=1 skips it explicitly.
func interopPython(t *testing.T) string {
	cache := os.Getenv("WTD_INTEROP_CACHE")
	if cache == "" {
		cache = filepath.Join(repoRoot(t), "build", "interop-cache")
	}
	py := filepath.Join(cache, "py312", "bin", "python")
	if _, err := os.Stat(py); err != nil {
		if os.Getenv("WTD_GO_NO_PEERS") == "1" {
			t.Skip("WTD_GO_NO_PEERS=1: pywebtransport peer not run")
		}
		t.Fatalf("%s missing: run tests/interop/setup.sh (or scripts/test-go.sh, which does), "+
			"or set WTD_GO_NO_PEERS=1 to skip the real-peer test", py)
	}
	return py
}

// The Go client against a real peer: the pywebtransport 0.21.1 echo server
// (tests/interop/pywt021_server.py, draft-15) with our own certificate pinned by hash.
func TestInteropPywebtransport021Server(t *testing.T) {
	py := interopPython(t)
	certFile, keyFile, hash := genCert(t, t.TempDir())
	p := startPeer(t, py, filepath.Join(repoRoot(t), "tests", "interop", "pywt021_server.py"),
		"--cert", certFile, "--key", keyFile)

	url := fmt.Sprintf("https://127.0.0.1:%d/pywt021-go", p.port)
	s, err := Dial(ctxT(t, 20*time.Second), url, &DialOptions{CertHashes: [][32]byte{hash}})
	if err != nil {
		t.Fatalf("Dial %s: %v", url, err)
	}
	defer s.Close()
	if s.Draft() != Draft15 {
		t.Errorf("draft %v, want draft-15", s.Draft())
	}
	if l, ok := p.waitLine("SESSION_OPEN", 10*time.Second); !ok || !strings.Contains(l, "path=/pywt021-go") {
		t.Errorf("server SESSION_OPEN line: %q", l)
	}
	for i := 0; i < 20; i++ {
		echoRound(t, s, []byte(fmt.Sprintf("go→pywt021 %d", i)))
	}
	// A 1000-byte datagram survives the round trip too. (pywebtransport 0.21 refuses to send
	// echoes much above ~1200 bytes: "wt_datagram validate exceeded", so not the maximum.)
	big := make([]byte, 1000)
	for i := range big {
		big[i] = byte(i)
	}
	echoRound(t, s, big)

	st, err := s.Stats()
	if err != nil || st.DatagramsSent != 21 || st.DatagramsRead != 21 {
		t.Errorf("stats %+v, %v", st, err)
	}
	if err := s.CloseWithError(42, "bye from go"); err != nil {
		t.Fatal(err)
	}
	if l, ok := p.waitLine("SESSION_CLOSED", 10*time.Second); !ok {
		t.Errorf("pywebtransport reported no SESSION_CLOSED")
	} else if !strings.Contains(l, "code=42 reason=bye from go") {
		t.Errorf("pywebtransport saw %q, want code=42 reason=bye from go", l)
	}
	if l, ok := p.waitLine("SESSION_STATS", 10*time.Second); !ok || !strings.Contains(l, "echoed=21") {
		t.Errorf("server stats line %q", l)
	}
	if err := s.Send([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after close: %v", err)
	}
}
