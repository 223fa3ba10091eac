package wtd

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// readiness waits on a wtd readiness descriptor (an eventfd, level-triggered: readable while a
// queue holds something or the handle is closed) through Go's network poller, so a waiting
// goroutine parks without holding an OS thread. wtd owns the descriptor, so we wait on our
// own duplicate (same open file description, already O_NONBLOCK, which makes os.NewFile
// register it with the poller).
type readiness struct {
	f   *os.File
	rc  syscall.RawConn
	sem chan struct{} // one waiter at a time owns the file's read deadline
}

func newReadiness(fd int) (*readiness, error) {
	nfd, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if e != 0 {
		return nil, &Error{Op: "readiness", Code: ErrIO, Message: "dup of the readiness descriptor: " + e.Error()}
	}
	f := os.NewFile(nfd, "wtd-readiness")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, &Error{Op: "readiness", Code: ErrIO, Message: err.Error()}
	}
	return &readiness{f: f, rc: rc, sem: make(chan struct{}, 1)}, nil
}

func (r *readiness) close() { r.f.Close() }

// aLongTimeAgo is a deadline in the past: setting it wakes a parked waiter.
var aLongTimeAgo = time.Unix(1, 0)

// wait calls try (a non-blocking attempt that reports whether it is done) and parks on the
// poller between attempts until try is done or ctx ends (then ctx.Err()).
//
// No wake-up is lost: RawConn.Read resets the poller's ready flag before calling try, so a
// datagram that arrives between a failed try and the park makes the park return at once.
func (r *readiness) wait(ctx context.Context, try func() bool) error {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.sem }()

	if dl, ok := ctx.Deadline(); ok {
		r.f.SetReadDeadline(dl)
	} else {
		r.f.SetReadDeadline(time.Time{})
	}
	var stop, done chan struct{}
	if ctx.Done() != nil {
		stop, done = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			select {
			case <-ctx.Done():
				r.f.SetReadDeadline(aLongTimeAgo)
			case <-stop:
			}
		}()
	}
	err := r.rc.Read(func(uintptr) bool { return try() })
	if stop != nil {
		close(stop)
		<-done // the canceller has finished touching the deadline before the next waiter sets it
	}
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return &Error{Op: "readiness", Code: ErrIO, Message: err.Error()}
}
