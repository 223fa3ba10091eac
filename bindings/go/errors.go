package wtd

import (
	"strconv"
)

// Code is a wtd_result value: the reason a wtd call failed. Every non-zero code is also an
// error (like syscall.Errno), so the constants below are the sentinels for errors.Is:
//
//	if errors.Is(err, wtd.ErrWouldBlock) { ... }
//
// Values never change; new codes are only appended (see include/wtd.h).
type Code int32

// The wtd_result codes. Each one is a sentinel error usable with errors.Is.
const (
	// ErrInvalidArgument: a bad value was passed in (WTD_ERR_INVALID_ARGUMENT).
	ErrInvalidArgument Code = 1
	// ErrClosed: the session, server or transport is closed (WTD_ERR_CLOSED).
	ErrClosed Code = 2
	// ErrTimeout: the library-side timeout elapsed (WTD_ERR_TIMEOUT).
	ErrTimeout Code = 3
	// ErrWouldBlock: nothing to receive or no room to send right now (WTD_ERR_WOULD_BLOCK).
	ErrWouldBlock Code = 4
	// ErrTooLarge: the datagram exceeds the current maximum size, or is empty (WTD_ERR_TOO_LARGE).
	ErrTooLarge Code = 5
	// ErrBufferTooSmall: the caller's buffer cannot hold the datagram; it stays queued
	// (WTD_ERR_BUFFER_TOO_SMALL).
	ErrBufferTooSmall Code = 6
	// ErrTLS: TLS setup or certificate verification failed (WTD_ERR_TLS).
	ErrTLS Code = 7
	// ErrConnection: the QUIC connection could not be established or was lost (WTD_ERR_CONNECTION).
	ErrConnection Code = 8
	// ErrRejected: the peer refused the WebTransport session (WTD_ERR_REJECTED).
	ErrRejected Code = 9
	// ErrProtocol: the peer violated HTTP/3 or WebTransport (WTD_ERR_PROTOCOL).
	ErrProtocol Code = 10
	// ErrIO: an operating-system I/O error, e.g. the port is in use (WTD_ERR_IO).
	ErrIO Code = 11
	// ErrSerialization: a payload could not be serialized or parsed (WTD_ERR_SERIALIZATION).
	ErrSerialization Code = 12
	// ErrNotSupported: the peer does not support what was asked (WTD_ERR_NOT_SUPPORTED).
	ErrNotSupported Code = 13
	// ErrInvalidState: not allowed in the current state (WTD_ERR_INVALID_STATE).
	ErrInvalidState Code = 14
	// ErrPanic: a panic was caught inside the library (WTD_ERR_PANIC).
	ErrPanic Code = 15
	// ErrInternal: an internal invariant failed (WTD_ERR_INTERNAL).
	ErrInternal Code = 16
)

var codeNames = [...]string{
	0:                  "ok",
	ErrInvalidArgument: "invalid argument",
	ErrClosed:          "closed",
	ErrTimeout:         "timeout",
	ErrWouldBlock:      "would block",
	ErrTooLarge:        "too large",
	ErrBufferTooSmall:  "buffer too small",
	ErrTLS:             "tls error",
	ErrConnection:      "connection error",
	ErrRejected:        "rejected",
	ErrProtocol:        "protocol error",
	ErrIO:              "i/o error",
	ErrSerialization:   "serialization error",
	ErrNotSupported:    "not supported",
	ErrInvalidState:    "invalid state",
	ErrPanic:           "panic in wtd",
	ErrInternal:        "internal error",
}

// String names the code ("would block", "closed", ...).
func (c Code) String() string {
	if c >= 0 && int(c) < len(codeNames) && codeNames[c] != "" {
		return codeNames[c]
	}
	return "wtd_result " + strconv.Itoa(int(c))
}

// Error makes every Code a sentinel error.
func (c Code) Error() string { return "wtd: " + c.String() }

// Timeout reports whether the code is ErrTimeout (the net.Error convention).
func (c Code) Timeout() bool { return c == ErrTimeout }

// Error is a failed wtd call: which method, the wtd_result code and the library's message
// (wtd_last_error_message, read on the same OS thread as the failing call). It unwraps to its
// Code, so errors.Is(err, wtd.ErrClosed) works; errors.As(err, &e) gives the details.
type Error struct {
	// Op is the Go method that failed, e.g. "Session.Send".
	Op string
	// Code is the wtd_result.
	Code Code
	// Message is what the library said (may be empty).
	Message string
}

// Error formats "wtd: <op>: <code>: <message>".
func (e *Error) Error() string {
	s := "wtd: " + e.Op + ": " + e.Code.String()
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the Code, the sentinel errors.Is compares with.
func (e *Error) Unwrap() error { return e.Code }

// Timeout reports whether the call timed out inside the library.
func (e *Error) Timeout() bool { return e.Code == ErrTimeout }

// CloseError is returned by a session's receive calls once the session is closed (by either
// side) and nothing is left to read: it carries the application close code and reason. It
// unwraps to ErrClosed.
type CloseError struct {
	// Op is the Go method that saw the close.
	Op string
	// Code is the application error code of the close (0 for a plain close).
	Code uint32
	// Reason is the close reason text (may be empty).
	Reason string
}

// Error formats "wtd: <op>: session closed (code N: reason)".
func (e *CloseError) Error() string {
	s := "wtd: " + e.Op + ": session closed (code " + strconv.FormatUint(uint64(e.Code), 10)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s + ")"
}

// Unwrap returns ErrClosed.
func (e *CloseError) Unwrap() error { return ErrClosed }

// errReleased is the error of a call on a handle that Close already released.
func errReleased(op string) error {
	return &Error{Op: op, Code: ErrClosed, Message: "handle already released by Close"}
}
