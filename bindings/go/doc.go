// Package wtd is the Go binding of wtd, a WebTransport datagram library (Rust core, C ABI):
// unreliable, unordered datagrams over QUIC between Go programs, browsers (the JavaScript
// WebTransport API) and any other WebTransport peer.
//
//	srv, _ := wtd.Listen("127.0.0.1:0", nil)           // self-signed certificate
//	sess, _ := srv.Accept(ctx)                         // a client arrived
//	msg, _ := sess.Receive(ctx)                        // parks on Go's poller
//	sess.Send(msg)                                     // never blocks
//
//	c, _ := wtd.Dial(ctx, srv.URL("/game"), &wtd.DialOptions{CertHashes: [][32]byte{srv.CertHash()}})
//
// Errors unwrap to a Code (ErrWouldBlock, ErrClosed, ...) usable with errors.Is; *Error carries
// the library's message and *CloseError a session's close code and reason.
//
// The library runs its own network threads (or none: SetRuntimeMode(RuntimePoll), then Poll from
// the game loop); every method here may be called from any goroutine. Waiting receives and
// accepts park on Go's network poller through wtd's readiness descriptors, so thousands of idle
// sessions cost no OS threads.
package wtd
