package wtd

import (
	"encoding/hex"
	"fmt"
	"time"
)

// ServerOptions configure Listen. The zero value (or nil) means the library defaults; the
// durations and counts below use 0 for "default".
type ServerOptions struct {
	// CertFile and KeyFile are a PEM certificate chain and private key. Empty: wtd generates a
	// self-signed ECDSA P-256 certificate valid 13 days (what browsers accept through
	// serverCertificateHashes); read its hash with Server.CertHash.
	CertFile, KeyFile string
	// IdleTimeout is the QUIC idle timeout (default 30 s).
	IdleTimeout time.Duration
	// KeepAlive is the QUIC keep-alive interval (default 5 s; negative turns it off).
	KeepAlive time.Duration
	// IncomingQueueCapacity is each session's receive queue in datagrams (default 1024; the
	// oldest is evicted and counted when full).
	IncomingQueueCapacity int
	// AcceptQueueCapacity is how many sessions may wait for Accept (default 128; more are
	// refused with HTTP 503).
	AcceptQueueCapacity int
	// MaxConnections caps connections at once (default 4096).
	MaxConnections int
	// MaxConnectionsPerIP caps connections from one address (default 64).
	MaxConnectionsPerIP int
	// SettingsTimeout closes a connection whose peer sends no HTTP/3 SETTINGS (default 10 s).
	SettingsTimeout time.Duration
	// SessionTimeout closes a connection without an open session (default 10 s).
	SessionTimeout time.Duration
	// HeaderTimeout resets a request stream whose HEADERS are incomplete (default 10 s).
	HeaderTimeout time.Duration
	// OnRequest, when set, decides on every session request before it is accepted: return 200
	// to accept or an HTTP status (403, 404, ...) to refuse (the client's Dial fails with
	// ErrRejected). It runs on a wtd network thread: keep it short and never block. A panic
	// or a status outside 100..599 refuses with 500. nil accepts every request.
	OnRequest func(*Request) int
}

// DialOptions configure Dial. The zero value (or nil) verifies the server against the system's
// root certificates with the library's default timeouts.
type DialOptions struct {
	// CertHashes pins the server certificate: only a certificate whose SHA-256 is listed is
	// accepted (like the browser's serverCertificateHashes). Parse hex with ParseCertHash.
	CertHashes [][32]byte
	// CAFile trusts only the CAs in this PEM file (used when CertHashes is empty).
	CAFile string
	// InsecureSkipVerify accepts any certificate. Anyone on the path can impersonate the
	// server: tests only. Cannot be combined with CertHashes or CAFile.
	InsecureSkipVerify bool
	// ConnectTimeout limits handshake + session setup (default 10 s). A context deadline that
	// comes sooner wins.
	ConnectTimeout time.Duration
	// IdleTimeout is the QUIC idle timeout (default 30 s).
	IdleTimeout time.Duration
	// KeepAlive is the QUIC keep-alive interval (default 5 s; negative turns it off).
	KeepAlive time.Duration
	// IncomingQueueCapacity is the session's receive queue in datagrams (default 1024).
	IncomingQueueCapacity int
	// Origin is the origin header to send ("" sends none).
	Origin string
}

// DropPolicy says what a full transport send queue does with a new datagram.
type DropPolicy uint32

const (
	// DropOldest evicts the oldest datagram of the lowest priority that is <= the new one's
	// (counted in TransportStats.DroppedFull); if all queued ones have a higher priority the
	// new one is refused. The default.
	DropOldest DropPolicy = 0
	// DropRejectNew refuses the new datagram with ErrWouldBlock.
	DropRejectNew DropPolicy = 1
	// DropBlock makes Send wait for room up to SenderTimeout (back-pressure; the wait blocks
	// the calling OS thread inside the library).
	DropBlock DropPolicy = 2
)

// TransportOptions configure NewTransport; zero fields mean the library defaults.
type TransportOptions struct {
	// OutgoingHighWaterMark is the send queue capacity in datagrams (default 100).
	OutgoingHighWaterMark int
	// IncomingHighWaterMark is the receive queue capacity (default: OutgoingHighWaterMark).
	// A full receive queue evicts its oldest datagram (TransportStats.EvictedIncoming).
	IncomingHighWaterMark int
	// DropPolicy applies when the send queue is full (default DropOldest).
	DropPolicy DropPolicy
	// SenderTimeout is how long a DropBlock Send waits for room (default 1 s).
	SenderTimeout time.Duration
	// IncomingMaxAge drops received datagrams older than this when read (0 = no limit).
	IncomingMaxAge time.Duration
	// OutgoingMaxAge drops queued datagrams older than this before sending (0 = no limit).
	OutgoingMaxAge time.Duration
	// FilterHeartbeats keeps heartbeat datagrams out of the receive path.
	FilterHeartbeats bool
}

// ParseCertHash parses a SHA-256 certificate hash written as 64 hex characters (the form
// wtd_echo_server prints and Server.CertHashHex returns).
func ParseCertHash(s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != 64 {
		return h, &Error{Op: "ParseCertHash", Code: ErrInvalidArgument,
			Message: fmt.Sprintf("want 64 hex characters, got %d", len(s))}
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, &Error{Op: "ParseCertHash", Code: ErrInvalidArgument, Message: err.Error()}
	}
	return h, nil
}

// ms converts a duration to the library's uint32 milliseconds (rounded up so that 1 ns is not
// "no limit", clamped to the uint32 range).
func ms(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	m := (d + time.Millisecond - 1) / time.Millisecond
	if m > 0xFFFFFFFF {
		return 0xFFFFFFFF
	}
	return uint32(m)
}
