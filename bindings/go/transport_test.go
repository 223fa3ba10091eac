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
// until its transport queue holds 3000 (QUIC's own buffer is full by then), then
// sends priority-10 datagrams (H), one priority -5 datagram with a 1 ms TTL (T) and priority -5
// datagrams with a 30 s TTL (K). H must overtake the queued priority-0 ones, T must expire in
// the queue (counted, never delivered) and K must come after every priority-0 datagram.
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
	queued := 0 // the queue depth last seen by the fill loop
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		// 3000 × ~1.2 kB ahead of T take QUIC ~5 ms to send at loopback speed, so T's 1 ms TTL
		// runs out even if this goroutine is descheduled right after sending T (with 1000 ahead
		// that margin was ~1.5 ms; the C# version of this race failed in CI).
		if queued = ct.SendBufferSize(); queued >= 3000 {
			break
		}
		err := ct.TrySend(mk('L', low), 0, 0)
		if errors.Is(err, ErrWouldBlock) {
			queued = ct.SendBufferSize()
			break // REJECT_NEW at the high water mark: the queue is full
		}
		if err != nil {
			t.Fatalf("TrySend %d: %v", low, err)
		}
		low++
	}
	if queued < 2000 {
		t.Fatalf("only %d datagrams queued after %d sends: cannot observe priorities", queued, low)
	}
	if err := ct.Send(mk('T', 0), -5, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d priority-0 datagrams sent, %d of them queued when T was sent", low, queued)

	// For 100 ms keep 300..600 priority-0 datagrams queued and every 10 ms send one H (priority
	// 10) and one K (priority -5, 30 s TTL), remembering the last L index sent before each.
	// Copies spread in time: loopback loses bursts of datagrams under this flood (the receiving
	// socket overflows), and one burst must not take every copy. T starves behind the L traffic,
	// so its 1 ms TTL runs out however fast the link drains.
	const copies = 10
	hBefore := make([]uint32, copies) // H i overtakes L datagrams with idx < hBefore[i]
	kBefore := make([]uint32, copies) // K i must come after L datagrams with idx < kBefore[i]
	next := time.Now()
	snapshots := 0 // QueueStats snapshots that found datagrams queued
	for i := 0; i < copies; {
		if ct.SendBufferSize() < 600 {
			if err := ct.TrySend(mk('L', low), 0, 0); err == nil {
				low++
				continue
			} else if !errors.Is(err, ErrWouldBlock) {
				t.Fatalf("TrySend %d: %v", low, err)
			}
		}
		if time.Now().After(next) && ct.SendBufferSize() >= 300 {
			hBefore[i], kBefore[i] = low, low
			if err := ct.Send(mk('H', uint32(i)), 10, 0); err != nil {
				t.Fatal(err)
			}
			if err := ct.Send(mk('K', uint32(i)), -5, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			// The queue drains into QUIC's own buffer at memory speed whenever QUIC makes room,
			// so a snapshot may find it empty; count the snapshots that show it.
			if qs, err := ct.QueueStats(); err != nil {
				t.Fatal(err)
			} else if len(qs.Outgoing.Classes) > 0 {
				snapshots++
				for j := 1; j < len(qs.Outgoing.Classes); j++ {
					if qs.Outgoing.Classes[j-1].Priority <= qs.Outgoing.Classes[j].Priority {
						t.Errorf("QueueStats classes not highest first: %+v", qs.Outgoing.Classes)
					}
				}
				if qs.Outgoing.Size < qs.Outgoing.Classes[0].Count {
					t.Errorf("QueueStats size %d < first class count: %+v", qs.Outgoing.Size, qs.Outgoing)
				}
			}
			i++
			next = time.Now().Add(10 * time.Millisecond)
		}
	}
	for end := time.Now().Add(10 * time.Second); ct.SendBufferSize() > 0 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if snapshots == 0 {
		t.Errorf("no QueueStats snapshot of %d showed a queued datagram", copies)
	}

	// Collect until nothing arrives for 500 ms.
	var order []arrival
	for quiet := false; !quiet; {
		select {
		case a := <-arrivals:
			order = append(order, a)
		case err := <-recvDone:
			t.Fatalf("receiver: %v", err)
		case <-time.After(500 * time.Millisecond):
			quiet = true
		}
	}

	// For each arrived H: earlier L datagrams arriving after it (overtaken). For each arrived
	// K: earlier L datagrams arriving after it (must be none).
	posL := map[uint32]int{}
	posH, posK := map[uint32]int{}, map[uint32]int{}
	gotT := false
	for i, a := range order {
		switch a.tag {
		case 'L':
			posL[a.idx] = i
		case 'H':
			posH[a.idx] = i
		case 'K':
			posK[a.idx] = i
		case 'T':
			gotT = true
		}
	}
	bestOvertaken := 0
	for c, hp := range posH {
		n := 0
		for idx, lp := range posL {
			if idx < hBefore[c] && lp > hp {
				n++
			}
		}
		if n > bestOvertaken {
			bestOvertaken = n
		}
	}
	lateL := 0
	for c, kp := range posK {
		for idx, lp := range posL {
			if idx < kBefore[c] && lp > kp {
				lateL++
			}
		}
	}
	t.Logf("%d arrivals; %d/%d H and %d/%d K arrived; an H overtook up to %d queued L",
		len(order), len(posH), copies, len(posK), copies, bestOvertaken)
	if len(posH) == 0 || len(posK) == 0 {
		t.Fatalf("no H or no K arrived (%d arrivals)", len(order))
	}
	if bestOvertaken < 200 {
		t.Errorf("priority-10 datagrams overtook at most %d queued priority-0 ones (≥ 300 were queued)", bestOvertaken)
	}
	if gotT {
		t.Errorf("the 1 ms TTL datagram was delivered")
	}
	if lateL != 0 {
		t.Errorf("%d priority-0 datagrams arrived after a priority -5 one sent later", lateL)
	}

	// The expired datagram is counted with its reason.
	var cs TransportStats
	if cs, err = ct.Stats(); err != nil {
		t.Fatal(err)
	}
	if cs.DroppedExpired != 1 || cs.SendDrops != 1 {
		t.Errorf("client stats: DroppedExpired %d SendDrops %d, want 1 and 1", cs.DroppedExpired, cs.SendDrops)
	}
	if want := uint64(low) + 2*copies; cs.DatagramsSent != want {
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
	big := make([]byte, tooLarge) // max+1 could become valid meanwhile (path MTU discovery)
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
