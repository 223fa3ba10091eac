package wtd

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the wtd checkout this package lives in (bindings/go → ../..).
func repoRoot(t testing.TB) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// buildDir is the CMake build directory (WTD_BUILD_DIR, default <repo>/build).
func buildDir(t testing.TB) string {
	if d := os.Getenv("WTD_BUILD_DIR"); d != "" {
		return d
	}
	return filepath.Join(repoRoot(t), "build")
}

// peer is a child process that printed "READY <port> [hash]".
type peer struct {
	cmd   *exec.Cmd
	port  int
	hash  string
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

// startPeer runs a server program and waits (≤ 30 s) for its READY line. The process is
// stopped with SIGTERM (then SIGKILL) when the test ends.
func startPeer(t *testing.T, name string, args ...string) *peer {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &peer{cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			if strings.HasPrefix(line, "READY ") {
				select {
				case ready <- line:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), strings.Join(p.output(), "\n"))
		}
	})
	select {
	case line := <-ready:
		f := strings.Fields(line)
		if p.port, err = strconv.Atoi(f[1]); err != nil {
			t.Fatalf("bad READY line %q", line)
		}
		if len(f) > 2 {
			p.hash = f[2]
		}
	case <-p.done:
		t.Fatalf("%s exited before READY", name)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s printed no READY line within 30 s", name)
	}
	return p
}

func (p *peer) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// waitLine waits (≤ d) for an output line containing substr.
func (p *peer) waitLine(substr string, d time.Duration) (string, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, l := range p.output() {
			if strings.Contains(l, substr) {
				return l, true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", false
}

// genCert writes a self-signed ECDSA P-256 certificate (10 days, SAN localhost/127.0.0.1/::1)
// and key as PEM into dir and returns the paths and the certificate's SHA-256.
func genCert(t *testing.T, dir string) (certFile, keyFile string, hash [32]byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-5 * time.Minute),
		NotAfter:     time.Now().Add(10 * 24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, sha256.Sum256(der)
}

// ctxT is a context bounded to d, cancelled when the test ends.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// goServer is an in-process Go echo server: every accepted session echoes what it receives
// (through Session.Receive/Send) until closed; each session's final receive error goes to
// closed.
type goServer struct {
	*Server
	sessions chan *Session
	closed   chan error
}

func startGoServer(t *testing.T, echo bool) *goServer {
	t.Helper()
	srv, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	g := &goServer{Server: srv, sessions: make(chan *Session, 64), closed: make(chan error, 64)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			s, err := srv.Accept(ctx)
			if err != nil {
				return
			}
			g.sessions <- s
			if !echo {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					d, err := s.Receive(ctx)
					if err != nil {
						g.closed <- err
						return
					}
					s.Send(d)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		srv.Close()
		close(g.sessions)
		for s := range g.sessions {
			s.Close()
		}
	})
	return g
}

func (g *goServer) dial(t *testing.T, path string) *Session {
	t.Helper()
	s, err := Dial(ctxT(t, 10*time.Second), g.URL(path), &DialOptions{CertHashes: [][32]byte{g.CertHash()}})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// echoRound sends msg and waits for it to come back.
func echoRound(t *testing.T, s *Session, msg []byte) {
	t.Helper()
	if err := s.Send(msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got, err := s.Receive(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}
