package wtd

import "time"

// Draft is the WebTransport-over-HTTP/3 draft a session negotiated.
type Draft int

// The drafts wtd speaks.
const (
	DraftUnknown Draft = 0
	Draft02      Draft = 2
	Draft07      Draft = 7
	Draft13      Draft = 13
	Draft15      Draft = 15
)

// String returns "draft-02", "draft-07", "draft-13", "draft-15" or "unknown".
func (d Draft) String() string {
	switch d {
	case Draft02:
		return "draft-02"
	case Draft07:
		return "draft-07"
	case Draft13:
		return "draft-13"
	case Draft15:
		return "draft-15"
	}
	return "unknown"
}

// SessionStats are a session's counters (wtd_session_stats). Connection-wide fields are
// shared by every session on the same QUIC connection.
type SessionStats struct {
	DatagramsSent     uint64 // accepted for sending (handed to QUIC or queued on the way)
	BytesSent         uint64 // payload bytes of those
	DatagramsReceived uint64 // arrived for this session
	BytesReceived     uint64 // payload bytes that arrived
	DatagramsRead     uint64 // taken by the application
	DroppedQueueFull  uint64 // evicted because the receive queue was full (oldest first)
	Queued            uint64 // waiting in the receive queue now
	RTT               time.Duration
	MaxDatagramSize   int    // current payload capacity of one datagram
	SendDroppedUnsent uint64 // accepted sends that never reached QUIC

	ConnectionLostPackets             uint64 // packets QUIC declared lost
	ConnectionDatagramFramesReceived  uint64 // DATAGRAM frames QUIC received
	ConnectionDatagramsUnknownSession uint64 // datagrams for no open session (dropped)
	ConnectionReceiveDrains           uint64 // receive-driver wake-ups that took datagrams
	ConnectionReceiveDrained          uint64 // datagrams those took
	ConnectionSendFlushes             uint64 // send-flush wake-ups
	ConnectionSendFlushed             uint64 // datagrams those handed to QUIC
	ConnectionReceiveOverflow         uint64 // dropped by QUIC's full receive buffer before wtd took them
}

// ServerStats are the server's protection counters (wtd_server_stats): what it refused or
// closed, by reason.
type ServerStats struct {
	RefusedHeadersTooLarge   uint64
	RefusedMalformed         uint64
	RefusedTooManySessions   uint64
	RefusedQueueFull         uint64
	QueueClosedDropped       uint64
	RefusedHeaderTimeout     uint64
	RefusedConnectionsGlobal uint64
	RefusedConnectionsPerIP  uint64
	ClosedSettingsTimeout    uint64
	ClosedSessionTimeout     uint64
}

// TransportStats are a transport's counters (wtd_datagram_stats): "sent" = handed to QUIC,
// "received" = arrived, "read" = taken by the application; every drop has its reason.
type TransportStats struct {
	SessionID          uint64
	CreatedAt          time.Time
	DatagramsSent      uint64
	BytesSent          uint64
	SendFailures       uint64 // refused sends (queue full, too large, closed) + QUIC send errors
	SendDrops          uint64 // DroppedFull + DroppedExpired + DroppedTooOld + ClearedOutgoing
	DatagramsReceived  uint64
	BytesReceived      uint64
	ReceiveDrops       uint64 // EvictedIncoming + ExpiredIncoming + ClearedIncoming
	ReceiveErrors      uint64
	TotalSendTime      time.Duration
	MaxSendTime        time.Duration
	TotalReceiveTime   time.Duration
	MaxReceiveTime     time.Duration
	MinDatagramSize    uint64
	MaxDatagramSize    uint64
	TotalDatagramSize  uint64
	SizedDatagrams     uint64
	DroppedFull        uint64 // evicted by DropOldest
	DroppedExpired     uint64 // TTL ran out while queued
	DroppedTooOld      uint64 // older than OutgoingMaxAge
	DroppedTooLarge    uint64 // above the maximum size (also in SendFailures)
	RejectedFull       uint64 // refused: queue full (also in SendFailures)
	ClearedOutgoing    uint64
	EvictedIncoming    uint64
	ExpiredIncoming    uint64
	ClearedIncoming    uint64
	HeartbeatsFiltered uint64
	DatagramsRead      uint64
	TimedSends         uint64
	TimedReceives      uint64
	AvgDatagramSize    float64
	AvgSendTime        time.Duration
	AvgReceiveTime     time.Duration
	SendSuccessRate    float64
	ReceiveSuccessRate float64
	DropRate           float64
}

// PriorityCount is how many datagrams wait at one priority.
type PriorityCount struct {
	Priority int32
	Count    int
}

// QueueDirectionStats describe one transport queue.
type QueueDirectionStats struct {
	Size    int             // datagrams queued now
	MaxSize int             // capacity (high water mark)
	Classes []PriorityCount // per priority, highest first (at most 8)
	Other   int             // datagrams in classes beyond the first 8
}

// QueueStats are both queues of a transport.
type QueueStats struct {
	Outgoing QueueDirectionStats
	Incoming QueueDirectionStats
}

// seconds converts the library's float seconds to a Duration.
func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
