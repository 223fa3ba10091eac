package wtd

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"runtime"
	"runtime/cgo"
	"strconv"
	"sync"
)

// Server is a listening WebTransport server. Methods may be called from any goroutine.
type Server struct {
	mu        sync.RWMutex
	h         cServer
	host      string
	port      int
	hash      [32]byte
	hook      cgo.Handle // OnRequest, deleted after the server is freed (0 = none)
	rdyMu     sync.Mutex
	rdy       *readiness
	closeOnce sync.Once
	closeErr  error
}

// Listen starts a WebTransport server on addr ("host:port"; port 0 picks a free one, read it
// back with Port; host "" means 0.0.0.0). opts may be nil. Errors: ErrInvalidArgument (bad
// address/options), ErrTLS (unreadable or mismatched certificate/key), ErrIO (port in use).
func Listen(addr string, opts *ServerOptions) (*Server, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &Error{Op: "Listen", Code: ErrInvalidArgument, Message: err.Error()}
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, &Error{Op: "Listen", Code: ErrInvalidArgument, Message: "bad port " + strconv.Quote(portStr)}
	}
	var hook cgo.Handle
	if opts != nil && opts.OnRequest != nil {
		hook = cgo.NewHandle(opts.OnRequest)
	}
	h, err := cServerNew(host, uint16(port), opts, uintptr(hook))
	if err != nil {
		if hook != 0 {
			hook.Delete()
		}
		return nil, err
	}
	s := &Server{h: h, host: host, hook: hook}
	if s.port, err = cServerPort(h); err == nil {
		s.hash, err = cServerCertHash(h)
	}
	if err != nil {
		s.finalize()
		return nil, err
	}
	runtime.SetFinalizer(s, (*Server).finalize)
	return s, nil
}

// Accept waits for the next session, parked on Go's poller through the server's readiness
// descriptor (no OS thread is held). It returns ctx.Err() when ctx ends first and an error
// matching ErrClosed after Close.
func (s *Server) Accept(ctx context.Context) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.h == nil {
		return nil, errReleased("Server.Accept")
	}
	h, err := cServerAccept(s.h, 0)
	if err == nil {
		return newSession(h), nil
	}
	if err != ErrWouldBlock {
		return nil, err
	}
	rdy, err := s.readiness()
	if err != nil {
		return nil, err
	}
	if werr := rdy.wait(ctx, func() bool {
		h, err = cServerAccept(s.h, 0)
		return err != ErrWouldBlock
	}); werr != nil {
		return nil, werr
	}
	if err != nil {
		return nil, err
	}
	return newSession(h), nil
}

// readiness returns the server's poller waiter, creating it on first use (caller holds mu.R).
func (s *Server) readiness() (*readiness, error) {
	s.rdyMu.Lock()
	defer s.rdyMu.Unlock()
	if s.rdy != nil {
		return s.rdy, nil
	}
	fd, err := cServerReadinessFd(s.h)
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

// Port is the UDP port the server listens on.
func (s *Server) Port() int { return s.port }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr {
	ip := net.ParseIP(s.host)
	if ip == nil {
		ip = net.IPv4zero
	}
	return &net.UDPAddr{IP: ip, Port: s.port}
}

// URL returns "https://<host>:<port><path>" for a client on this machine (an unspecified
// listen address becomes 127.0.0.1).
func (s *Server) URL(path string) string {
	host := s.host
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return fmt.Sprintf("https://%s%s", net.JoinHostPort(host, strconv.Itoa(s.port)), path)
}

// CertHash is the SHA-256 of the server's certificate (what clients pin, and browsers pass
// in serverCertificateHashes).
func (s *Server) CertHash() [32]byte { return s.hash }

// CertHashHex is CertHash as 64 lowercase hex characters.
func (s *Server) CertHashHex() string { return hex.EncodeToString(s.hash[:]) }

// Stats returns the server's protection counters.
func (s *Server) Stats() (ServerStats, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.h == nil {
		return ServerStats{}, errReleased("Server.Stats")
	}
	return cServerStats(s.h)
}

// Close stops accepting, closes every session (code 0, "server shutting down"; waits up to
// ~2 s for that to reach the peers) and releases the server. Session handles stay valid
// (closed) until their own Close. Safe to call twice.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.RLock()
		if s.h != nil {
			s.closeErr = cServerClose(s.h)
		}
		s.mu.RUnlock()
		s.finalize()
		runtime.SetFinalizer(s, nil)
	})
	return s.closeErr
}

func (s *Server) finalize() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h != nil {
		cServerFree(s.h) // no request hook runs after this returns
		s.h = nil
	}
	if s.hook != 0 {
		s.hook.Delete()
		s.hook = 0
	}
	if s.rdy != nil {
		s.rdy.close()
		s.rdy = nil
	}
}
