// Command echo is the wtd Go binding's echo example.
//
//	go run ./examples/echo                      # server and client in one process
//	go run ./examples/echo -server 127.0.0.1:4433
//	go run ./examples/echo -url https://127.0.0.1:4433/echo -hash <64 hex chars> [-n 5]
//
// The server prints "READY <port> <sha256-hex>" (like examples-c/wtd_echo_server, so either one
// can serve the other's client) and echoes every datagram until Ctrl-C. The client pins the
// server's certificate hash, sends -n datagrams and prints each echo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	wtd "github.com/wtd/wtd/bindings/go"
)

func main() {
	serverAddr := flag.String("server", "", "run only the server, listening on host:port (port 0 = any)")
	url := flag.String("url", "", "run only the client, connecting to this https:// URL")
	hashHex := flag.String("hash", "", "server certificate SHA-256 (hex) for -url")
	n := flag.Int("n", 3, "datagrams the client sends")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer wtd.Shutdown()

	switch {
	case *serverAddr != "":
		srv, err := wtd.Listen(*serverAddr, nil)
		if err != nil {
			log.Fatal(err)
		}
		defer srv.Close()
		fmt.Printf("READY %d %s\n", srv.Port(), srv.CertHashHex())
		serve(ctx, srv)
	case *url != "":
		hash, err := wtd.ParseCertHash(*hashHex)
		if err != nil {
			log.Fatal(err)
		}
		if runClient(ctx, *url, hash, *n) != *n {
			os.Exit(1)
		}
	default: // both halves in one process
		srv, err := wtd.Listen("127.0.0.1:0", nil)
		if err != nil {
			log.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { serve(sctx, srv); close(done) }()
		echoed := runClient(ctx, srv.URL("/echo"), srv.CertHash(), *n)
		cancel()
		<-done
		srv.Close()
		if echoed != *n {
			os.Exit(1)
		}
	}
}

// serve accepts sessions until ctx ends and echoes each one's datagrams.
func serve(ctx context.Context, srv *wtd.Server) {
	for {
		s, err := srv.Accept(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Printf("accept: %v", err)
			}
			return
		}
		fmt.Printf("server: session %d on %s (%s)\n", s.ID(), s.Path(), s.Draft())
		go func() {
			defer s.Close()
			for {
				d, err := s.Receive(ctx)
				var ce *wtd.CloseError
				switch {
				case errors.As(err, &ce):
					fmt.Printf("server: session %d closed by peer: code %d %q\n", s.ID(), ce.Code, ce.Reason)
					return
				case err != nil:
					return
				}
				if err := s.Send(d); err != nil {
					log.Printf("echo: %v", err)
				}
			}
		}()
	}
}

// runClient sends n datagrams and returns how many came back.
func runClient(ctx context.Context, url string, hash [32]byte, n int) int {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := wtd.Dial(dctx, url, &wtd.DialOptions{CertHashes: [][32]byte{hash}})
	if err != nil {
		log.Printf("dial: %v", err)
		return 0
	}
	defer s.CloseWithError(0, "bye")
	echoed := 0
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("hello %d", i)
		if err := s.Send([]byte(msg)); err != nil {
			log.Printf("send: %v", err)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		d, err := s.Receive(rctx)
		cancel()
		if err != nil {
			fmt.Printf("client: no echo: %v\n", err)
			continue
		}
		fmt.Printf("client got echo: %s\n", d)
		echoed++
	}
	st, _ := s.Stats()
	fmt.Printf("client: %d/%d echoed, rtt %v, max datagram %d bytes\n", echoed, n, st.RTT, st.MaxDatagramSize)
	return echoed
}
