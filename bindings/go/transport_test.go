package wtd

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
	"time"
)

// Priorities and TTL on a real connection. The client floods max-size priority-0 datagrams
// until its transport queue holds 2000 (QUIC's own buffer is full by then), then
// sends one priority-10 datagram, one priority -5 datagram with a 1 ms TTL and one priority -5
// datagram with a 30 s TTL. The high-priority one must overtake the queued priority-0 ones,
// the 1 ms one must expire in the queue (counted, never delivered) and the 30 s one must come
// after every priority-0 datagram.
func TestTransportPriorityAndTTL(t *testing.T) {
	g := startGoServer(t, false)
	c := g.dial(t, "/prio")
	ss := <-g.sessions

	st, err := NewTransport(ss, &TransportOptions{OutgoingHighWaterMark: 16, IncomingHighWaterMark: 100000})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ct, err := NewTransport(c, &TransportOptions{OutgoingHighWaterMark: 4000, DropPolicy: DropRejectNew})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()

	// Receiver: record the order of arrival (tag = first byte, index = next 4 bytes).
	type arrival struct {
		tag byte
		idx uint32
	}
	arrivals := make(chan arrival, 200000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	recvDone := make(chan error, 1)
	go func() {
		bufs := make([][]byte, 32)
		for i := range bufs {
			bufs[i] = make([]byte, 0, 1500)
		}
		for {
			n, err := st.ReceiveBatch(ctx, bufs)
			if err != nil {
				recvDone <- err
				return
			}
			for _, b := range bufs[:n] {
				arrivals <- arrival{b[0], binary.BigEndian.Uint32(b[1:5])}
			}
		}
	}()

	max := ct.MaxDatagramSize()
	if max < 100 {
		t.Fatalf("MaxDatagramSize %d", max)
	}
	payload := make([]byte, max)
	mk := func(tag byte, idx uint32) []byte {
		payload[0] = tag
		binary.BigEndian.PutUint32(payload[1:5], idx)
		return payload
	}
	var low uint32
	deadline := time.Now().Add(10 * time.Second)
	for ct.SendBufferSize() < 2000 && time.Now().Before(deadline) {
		err := ct.TrySend(mk('L', low), 0, 0)
		if errors.Is(err, ErrWouldBlock) {
			break // REJECT_NEW at the high water mark: the queue is full
		}
		if err != nil {
			t.Fatalf("TrySend %d: %v", low, err)
		}
		low++
	}
	queued := ct.SendBufferSize()
	if queued < 1000 {
		t.Fatalf("only %d datagrams queued after %d sends: cannot observe priorities", queued, low)
	}
	qs, err := ct.QueueStats()
	if err != nil || len(qs.Outgoing.Classes) == 0 || qs.Outgoing.Classes[0].Priority != 0 {
		t.Fatalf("QueueStats %+v %v", qs, err)
	}
	lastLow := low - 1
	if err := ct.Send(mk('H', 0), 10, 0); err != nil {
		t.Fatal(err)
	}
	if err := ct.Send(mk('T', 0), -5, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := ct.Send(mk('K', 0), -5, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	sentAt := time.Now()
	t.Logf("%d priority-0 datagrams sent, %d of them queued when H/T/K were sent", low, queued)

	// Collect until K arrives (it is last in the queue), then a little longer.
	var order []arrival
	gotK := false
	timeout := time.After(20 * time.Second)
	for !gotK {
		select {
		case a := <-arrivals:
			order = append(order, a)
			gotK = a.tag == 'K'
			if gotK {
				t.Logf("K arrived %v after it was sent (the queue's drain time)", time.Since(sentAt))
			}
		case err := <-recvDone:
			t.Fatalf("receiver: %v", err)
		case <-timeout:
			t.Fatalf("K never arrived (%d arrivals)", len(order))
		}
	}
	time.Sleep(200 * time.Millisecond)
	for len(arrivals) > 0 {
		order = append(order, <-arrivals)
	}

	hPos, lowAfterH, lowAfterK, gotT := -1, 0, 0, false
	for i, a := range order {
		switch a.tag {
		case 'H':
			hPos = i
		case 'T':
			gotT = true
		case 'L':
			if hPos >= 0 && a.idx <= lastLow {
				lowAfterH++
			}
		}
	}
	for i := len(order) - 1; i >= 0 && order[i].tag != 'K'; i-- {
		if order[i].tag == 'L' {
			lowAfterK++
		}
	}
	t.Logf("%d arrivals; H at %d; %d priority-0 datagrams sent before H arrived after it", len(order), hPos, lowAfterH)
	if hPos < 0 {
		t.Fatalf("H never arrived")
	}
	if lowAfterH < 500 {
		t.Errorf("only %d earlier priority-0 datagrams arrived after the priority-10 one (queued: %d)", lowAfterH, queued)
	}
	if gotT {
		t.Errorf("the 1 ms TTL datagram was delivered")
	}
	if lowAfterK != 0 {
		t.Errorf("%d priority-0 datagrams arrived after the priority -5 one", lowAfterK)
	}

	// The expired datagram is counted with its reason.
	var cs TransportStats
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cs, err = ct.Stats(); err != nil {
			t.Fatal(err)
		}
		if cs.DroppedExpired >= 1 && ct.SendBufferSize() == 0 {
			break
		}
	}
	if cs.DroppedExpired != 1 || cs.SendDrops != 1 {
		t.Errorf("client stats: DroppedExpired %d SendDrops %d, want 1 and 1", cs.DroppedExpired, cs.SendDrops)
	}
	if want := uint64(low) + 2; cs.DatagramsSent != want {
		t.Errorf("client DatagramsSent %d, want %d", cs.DatagramsSent, want)
	}
	ss2, _ := st.Stats()
	if ss2.DatagramsReceived+ss2.ReceiveDrops < uint64(len(order)) || ss2.DatagramsRead != uint64(len(order)) {
		t.Errorf("server stats %+v vs %d arrivals", ss2, len(order))
	}
	t.Logf("client: sent %d, expired %d, send success %.3f; server: received %d, read %d, lost on the way %d",
		cs.DatagramsSent, cs.DroppedExpired, cs.SendSuccessRate, ss2.DatagramsReceived, ss2.DatagramsRead,
		cs.DatagramsSent-ss2.DatagramsReceived)

	// Close wakes the receiver with ErrClosed.
	st.Close()
	select {
	case err := <-recvDone:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("receiver after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("Close did not wake the receiver")
	}
}

// Transport basics: send/receive both ways, SendBatch, max age setters, clear, stats fields.
func TestTransportSendBatchAndStats(t *testing.T) {
	g := startGoServer(t, false)
	c := g.dial(t, "/tr")
	ss := <-g.sessions
	st, err := NewTransport(ss, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ct, err := NewTransport(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()

	batch := [][]byte{[]byte("one"), []byte("two"), []byte("three")}
	n, err := ct.SendBatch(batch, 3, 0)
	if err != nil || n != 3 {
		t.Fatalf("SendBatch = %d, %v", n, err)
	}
	for _, want := range batch {
		got, err := st.Receive(ctxT(t, 5*time.Second))
		if err != nil || string(got) != string(want) {
			t.Fatalf("Receive = %q, %v; want %q", got, err, want)
		}
	}
	if err := st.Send([]byte("back"), 0, 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	// Too small: stays queued, then fits.
	var rn int
	for end := time.Now().Add(5 * time.Second); ; {
		rn, err = ct.ReceiveInto(ctxT(t, 5*time.Second), buf)
		if !errors.Is(err, ErrWouldBlock) || time.Now().After(end) {
			break
		}
	}
	if !errors.Is(err, ErrBufferTooSmall) {
		t.Fatalf("ReceiveInto small buffer: %d, %v", rn, err)
	}
	got, err := ct.Receive(ctxT(t, 5*time.Second))
	if err != nil || string(got) != "back" {
		t.Fatalf("Receive after BUFFER_TOO_SMALL = %q, %v", got, err)
	}

	// Oversized and empty sends fail with the right sentinel and a message; both are counted.
	big := make([]byte, ct.MaxDatagramSize()+1)
	err = ct.Send(big, 0, 0)
	var we *Error
	if !errors.Is(err, ErrTooLarge) || !errors.As(err, &we) || we.Message == "" {
		t.Errorf("oversized Send: %v", err)
	}
	if err := ct.Send(nil, 0, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty Send: %v", err)
	}
	cs, err := ct.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if cs.DatagramsSent != 3 || cs.DroppedTooLarge != 1 || cs.SendFailures != 2 || cs.DatagramsRead != 1 {
		t.Errorf("client stats %+v", cs)
	}
	if cs.SessionID != c.ID() || cs.CreatedAt.Before(time.Now().Add(-time.Minute)) {
		t.Errorf("SessionID %d (session %d), CreatedAt %v", cs.SessionID, c.ID(), cs.CreatedAt)
	}
	if err := ct.SetOutgoingMaxAge(50 * time.Millisecond); err != nil {
		t.Error(err)
	}
	if err := ct.SetIncomingMaxAge(0); err != nil {
		t.Error(err)
	}
	if n, err := ct.ClearSendBuffer(); err != nil || n != 0 {
		t.Errorf("ClearSendBuffer = %d, %v", n, err)
	}
	if err := ct.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := ct.Send([]byte("x"), 0, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	if _, err := ct.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats after Close: %v", err)
	}
}

// A transport keeps its Go Session reachable: dropping the session variable must not let the
// session's finalizer free (and so close) it while the transport is in use. (Found when the
// priority flood above triggered a GC: "Transport.Send: closed: session is closed".)
func TestTransportKeepsSessionAlive(t *testing.T) {
	g := startGoServer(t, false)
	tr := func() *Transport {
		s, err := Dial(ctxT(t, 10*time.Second), g.URL("/gc"), &DialOptions{CertHashes: [][32]byte{g.CertHash()}})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := NewTransport(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}()
	defer func() { tr.session.Close(); tr.Close() }()
	for i := 0; i < 3; i++ {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	if err := tr.Send([]byte("still open"), 0, 0); err != nil {
		t.Fatalf("Send after GC: %v", err)
	}
}
