// NativeMethods.cs — every call into the native library (libwtd, and libc's poll/pipe for the
// readiness waiter) lives in this one file, together with the blittable structs and the
// callback signatures of include/wtd.h. Adapting to a new C API version is a change here plus
// the call sites that use the changed functions.
//
// Conventions: CallingConvention.Cdecl everywhere; size_t = UIntPtr; C bool = byte (never the
// marshalled `bool`); C enums = int/uint; strings in = NUL-terminated UTF-8 in unmanaged memory
// (IntPtr / byte*), strings out = IntPtr decoded by Utf8.FromNative. Every struct here is
// blittable and matches the header's layout (the test program checks sizes and offsets against
// the C compiler's).
using System;
using System.Runtime.InteropServices;
using System.Security;

namespace Wtd
{
    /// <summary>SafeHandle of a wtd_server; ReleaseHandle calls wtd_server_free.</summary>
    public sealed class ServerHandle : WtdHandle
    {
        /// <inheritdoc/>
        protected override void Free(IntPtr h) { NativeMethods.wtd_server_free(h); }
    }

    /// <summary>SafeHandle of a wtd_session; ReleaseHandle calls wtd_session_free.</summary>
    public sealed class SessionHandle : WtdHandle
    {
        /// <inheritdoc/>
        protected override void Free(IntPtr h) { NativeMethods.wtd_session_free(h); }

        /// <summary>wtd_session_free waits for a running callback (outside callbacks).</summary>
        internal override bool FreeWaitsForCallbacks { get { return true; } }
    }

    /// <summary>SafeHandle of a wtd_transport; ReleaseHandle calls wtd_transport_free.</summary>
    public sealed class TransportHandle : WtdHandle
    {
        /// <inheritdoc/>
        protected override void Free(IntPtr h) { NativeMethods.wtd_transport_free(h); }
    }

    /// <summary>SafeHandle of a wtd_reliability; ReleaseHandle calls wtd_reliability_free.</summary>
    public sealed class ReliabilityHandle : WtdHandle
    {
        /// <inheritdoc/>
        protected override void Free(IntPtr h) { NativeMethods.wtd_reliability_free(h); }
    }

    /// <summary>SafeHandle of a wtd_structured; ReleaseHandle calls wtd_structured_free.</summary>
    public sealed class StructuredHandle : WtdHandle
    {
        /// <inheritdoc/>
        protected override void Free(IntPtr h) { NativeMethods.wtd_structured_free(h); }

        /// <summary>The serializer callbacks run only inside our own calls on the handle.</summary>
        internal override bool FreeWaitsForCallbacks { get { return true; } }
    }

    /// <summary>SafeHandle of a wtd_monitor; ReleaseHandle calls wtd_monitor_free.</summary>
    public sealed class MonitorHandle : WtdHandle
    {
        /// <inheritdoc/>
        protected override void Free(IntPtr h) { NativeMethods.wtd_monitor_free(h); }
    }

    /// <summary>SafeHandle of a wtd_broadcaster; ReleaseHandle calls wtd_broadcaster_free.</summary>
    public sealed class BroadcasterHandle : WtdHandle
    {
        /// <inheritdoc/>
        protected override void Free(IntPtr h) { NativeMethods.wtd_broadcaster_free(h); }
    }

    // ---------------------------------------------------------------------------------------
    // Callback signatures (all Cdecl; the static trampolines in Callbacks.cs implement them).

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void SessionDatagramFn(IntPtr user, IntPtr session, IntPtr data, UIntPtr len);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void SessionClosedFn(IntPtr user, IntPtr session, uint code, IntPtr reason);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate ushort RequestFn(IntPtr user, IntPtr request);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void TransportReceivedFn(IntPtr user, IntPtr transport, IntPtr data, UIntPtr len);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void TransportSentFn(IntPtr user, IntPtr transport, UIntPtr size);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void ReliableMessageFn(IntPtr user, IntPtr reliability, IntPtr data, UIntPtr len);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void ReliableOutcomeFn(IntPtr user, IntPtr reliability, uint seq, uint outcome);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int SerializeFn(IntPtr user, ushort typeId, IntPtr obj, IntPtr buf, UIntPtr cap, IntPtr outLen);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int DeserializeFn(IntPtr user, ushort typeId, IntPtr data, UIntPtr len, IntPtr outObj);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void LogFn(IntPtr user, uint level, IntPtr message);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void MonitorAlertFn(IntPtr user, IntPtr alert);

    // ---------------------------------------------------------------------------------------
    // Structs. Public ones are returned to users as they are (statistics, metadata); internal
    // ones are option blocks filled from the managed option classes.

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeClientOptions
    {
        public uint StructSize;
        public uint Verify;
        public IntPtr CaFile;
        public IntPtr CertHashes;
        public UIntPtr CertHashCount;
        public uint ConnectTimeoutMs;
        public uint IdleTimeoutMs;
        public uint KeepAliveMs;
        public uint IncomingQueueCapacity;
        public IntPtr Origin;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeServerOptions
    {
        public uint StructSize;
        public ushort Port;
        public ushort Reserved;
        public IntPtr Host;
        public IntPtr CertFile;
        public IntPtr KeyFile;
        public uint IdleTimeoutMs;
        public uint KeepAliveMs;
        public uint IncomingQueueCapacity;
        public uint Reserved2;
        public IntPtr OnRequest;
        public IntPtr OnSession;
        public IntPtr UserData;
        public uint AcceptQueueCapacity;
        public uint MaxConnections;
        public uint MaxConnectionsPerIp;
        public uint SettingsTimeoutMs;
        public uint SessionTimeoutMs;
        public uint HeaderTimeoutMs;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeSessionRequest
    {
        public IntPtr Path;
        public IntPtr Authority;
        public IntPtr Origin;
        public uint Draft;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeSessionCallbacks
    {
        public uint StructSize;
        public uint Reserved;
        public IntPtr OnDatagram;
        public IntPtr OnClosed;
        public IntPtr UserData;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeTransportOptions
    {
        public uint StructSize;
        public uint OutgoingHighWaterMark;
        public uint IncomingHighWaterMark;
        public uint DropPolicy;
        public uint SenderTimeoutMs;
        public uint IncomingMaxAgeMs;
        public uint OutgoingMaxAgeMs;
        public uint FilterHeartbeats;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeTransportCallbacks
    {
        public uint StructSize;
        public uint Reserved;
        public IntPtr OnReceived;
        public IntPtr OnSent;
        public IntPtr UserData;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeReliabilityOptions
    {
        public uint StructSize;
        public uint AckTimeoutMs;
        public uint MaxRetries;
        public uint InOrder;
        public uint MaxInFlight;
        public uint MinRtoMs;
        public uint MaxRtoMs;
        public uint GapTimeoutMs;
        public int Priority;
        public uint ReceiveWindow;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeReliabilityCallbacks
    {
        public uint StructSize;
        public uint Reserved;
        public IntPtr OnMessage;
        public IntPtr OnOutcome;
        public IntPtr UserData;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeMonitorCallbacks
    {
        public uint StructSize;
        public uint Reserved;
        public IntPtr OnAlert;
        public IntPtr UserData;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeLogCallbacks
    {
        public uint StructSize;
        public uint MaxLevel;
        public IntPtr OnLog;
        public IntPtr UserData;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeStructuredOptions
    {
        public uint StructSize;
        public uint Reserved;
        public IntPtr Serialize;
        public IntPtr Deserialize;
        public IntPtr UserData;
    }

    /// <summary>One caller-owned receive buffer of a batch (wtd_datagram_buffer).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeDatagramBuffer
    {
        public IntPtr Data;
        public UIntPtr Capacity;
        public UIntPtr Len;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeBroadcastResult
    {
        public uint StructSize;
        public uint Reserved;
        public UIntPtr Accepted;
        public UIntPtr Failed;
        public UIntPtr Pruned;
    }

    /// <summary>Session counters (wtd_session_stats); see include/wtd.h for each field.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct SessionStats
    {
        /// <summary>Size of the struct as the library filled it.</summary>
        public uint StructSize;
        /// <summary>Reserved.</summary>
        public uint Reserved;
        /// <summary>Datagrams accepted for sending.</summary>
        public ulong DatagramsSent;
        /// <summary>Payload bytes of those.</summary>
        public ulong BytesSent;
        /// <summary>Datagrams that arrived for this session.</summary>
        public ulong DatagramsReceived;
        /// <summary>Payload bytes that arrived.</summary>
        public ulong BytesReceived;
        /// <summary>Datagrams the application took.</summary>
        public ulong DatagramsRead;
        /// <summary>Arrived datagrams evicted because the receive queue was full.</summary>
        public ulong DroppedQueueFull;
        /// <summary>Datagrams waiting in the receive queue now.</summary>
        public ulong Queued;
        /// <summary>Smoothed round-trip time, microseconds.</summary>
        public ulong RttUs;
        /// <summary>Current payload capacity of one datagram.</summary>
        public ulong MaxDatagramSize;
        /// <summary>Connection-wide: packets QUIC declared lost.</summary>
        public ulong ConnectionLostPackets;
        /// <summary>Connection-wide: DATAGRAM frames QUIC received.</summary>
        public ulong ConnectionDatagramFramesReceived;
        /// <summary>Connection-wide: datagrams naming no open session (dropped).</summary>
        public ulong ConnectionDatagramsUnknownSession;
        /// <summary>Accepted sends that never reached QUIC.</summary>
        public ulong SendDroppedUnsent;
        /// <summary>Connection-wide: receive-driver wake-ups that took datagrams.</summary>
        public ulong ConnectionReceiveDrains;
        /// <summary>Connection-wide: datagrams those drains took.</summary>
        public ulong ConnectionReceiveDrained;
        /// <summary>Connection-wide: send flush wake-ups.</summary>
        public ulong ConnectionSendFlushes;
        /// <summary>Connection-wide: datagrams those flushes handed to QUIC.</summary>
        public ulong ConnectionSendFlushed;
        /// <summary>Connection-wide: datagrams QUIC dropped from its full receive buffer before wtd took them
        /// (exact once the connection is closed, a lower bound while it runs).</summary>
        public ulong ConnectionReceiveOverflow;
    }

    /// <summary>Server protection counters (wtd_server_stats).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ServerStats
    {
        /// <summary>Size of the struct as the library filled it.</summary>
        public uint StructSize;
        /// <summary>Reserved.</summary>
        public uint Reserved;
        /// <summary>Requests answered 431.</summary>
        public ulong RefusedHeadersTooLarge;
        /// <summary>Requests answered 400.</summary>
        public ulong RefusedMalformed;
        /// <summary>CONNECT streams reset: too many sessions on the connection.</summary>
        public ulong RefusedTooManySessions;
        /// <summary>Requests answered 503: accept queue full.</summary>
        public ulong RefusedQueueFull;
        /// <summary>Sessions that closed before being accepted.</summary>
        public ulong QueueClosedDropped;
        /// <summary>Request streams reset: HEADERS too slow.</summary>
        public ulong RefusedHeaderTimeout;
        /// <summary>Connections refused: max_connections.</summary>
        public ulong RefusedConnectionsGlobal;
        /// <summary>Connections refused: max_connections_per_ip.</summary>
        public ulong RefusedConnectionsPerIp;
        /// <summary>Connections closed: no SETTINGS in time.</summary>
        public ulong ClosedSettingsTimeout;
        /// <summary>Connections closed: no session in time.</summary>
        public ulong ClosedSessionTimeout;
    }

    /// <summary>Transport statistics (wtd_datagram_stats); every drop has its own counter.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct DatagramStats
    {
        /// <summary>Size of the struct as the library filled it.</summary>
        public uint StructSize;
        /// <summary>Reserved.</summary>
        public uint Reserved;
        /// <summary>Session id.</summary>
        public ulong SessionId;
        /// <summary>Unix time (s) the transport was created.</summary>
        public double CreatedAt;
        /// <summary>Datagrams handed to QUIC.</summary>
        public ulong DatagramsSent;
        /// <summary>Payload bytes handed to QUIC.</summary>
        public ulong BytesSent;
        /// <summary>Send calls that failed plus QUIC send errors.</summary>
        public ulong SendFailures;
        /// <summary>Accepted datagrams dropped before reaching QUIC.</summary>
        public ulong SendDrops;
        /// <summary>Datagrams that arrived.</summary>
        public ulong DatagramsReceived;
        /// <summary>Payload bytes that arrived.</summary>
        public ulong BytesReceived;
        /// <summary>Arrived datagrams dropped before the application read them.</summary>
        public ulong ReceiveDrops;
        /// <summary>Receive-side processing errors.</summary>
        public ulong ReceiveErrors;
        /// <summary>Sum of queueing times (s).</summary>
        public double TotalSendTime;
        /// <summary>Longest queueing time (s).</summary>
        public double MaxSendTime;
        /// <summary>Sum of receive waits (s).</summary>
        public double TotalReceiveTime;
        /// <summary>Longest receive wait (s).</summary>
        public double MaxReceiveTime;
        /// <summary>Smallest datagram.</summary>
        public ulong MinDatagramSize;
        /// <summary>Largest datagram.</summary>
        public ulong MaxDatagramSize;
        /// <summary>Bytes of all datagrams.</summary>
        public ulong TotalDatagramSize;
        /// <summary>Datagrams in TotalDatagramSize.</summary>
        public ulong SizedDatagrams;
        /// <summary>Evicted by DROP_OLDEST.</summary>
        public ulong DroppedFull;
        /// <summary>TTL ran out while queued.</summary>
        public ulong DroppedExpired;
        /// <summary>Older than outgoing max age.</summary>
        public ulong DroppedTooOld;
        /// <summary>Refused: above max datagram size.</summary>
        public ulong DroppedTooLarge;
        /// <summary>Refused: queue full.</summary>
        public ulong RejectedFull;
        /// <summary>Removed by clear/close.</summary>
        public ulong ClearedOutgoing;
        /// <summary>Incoming evicted: receive queue full.</summary>
        public ulong EvictedIncoming;
        /// <summary>Incoming older than max age.</summary>
        public ulong ExpiredIncoming;
        /// <summary>Incoming removed by clear or after close.</summary>
        public ulong ClearedIncoming;
        /// <summary>Heartbeats kept out of the receive path.</summary>
        public ulong HeartbeatsFiltered;
        /// <summary>Datagrams the application read.</summary>
        public ulong DatagramsRead;
        /// <summary>Sends timed.</summary>
        public ulong TimedSends;
        /// <summary>Receive calls timed.</summary>
        public ulong TimedReceives;
        /// <summary>Mean datagram size.</summary>
        public double AvgDatagramSize;
        /// <summary>Mean send time (s).</summary>
        public double AvgSendTime;
        /// <summary>Mean receive wait (s).</summary>
        public double AvgReceiveTime;
        /// <summary>Send success rate 0..1.</summary>
        public double SendSuccessRate;
        /// <summary>Receive success rate 0..1.</summary>
        public double ReceiveSuccessRate;
        /// <summary>Drop rate 0..1.</summary>
        public double DropRate;
    }

    /// <summary>Result of WtdTransport.ThroughputTest (wtd_throughput_result).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ThroughputResult
    {
        /// <summary>Size of the struct as the library filled it.</summary>
        public uint StructSize;
        /// <summary>Reserved.</summary>
        public uint Reserved;
        /// <summary>Seconds the test ran.</summary>
        public double Duration;
        /// <summary>Datagrams that reached QUIC.</summary>
        public ulong DatagramsSent;
        /// <summary>Refused sends plus queue drops.</summary>
        public ulong Errors;
        /// <summary>Datagrams per second.</summary>
        public double ThroughputDps;
        /// <summary>Payload bits per second.</summary>
        public double ThroughputBps;
        /// <summary>errors / attempts.</summary>
        public double ErrorRate;
        /// <summary>Datagrams that arrived during the test.</summary>
        public ulong DatagramsReceived;
        /// <summary>Send calls made.</summary>
        public ulong Attempts;
    }

    /// <summary>What ReceiveWithMetadata knows about a datagram (wtd_datagram_metadata).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct DatagramMetadata
    {
        /// <summary>Size of the struct as the library filled it.</summary>
        public uint StructSize;
        /// <summary>Always 0 for received datagrams.</summary>
        public int Priority;
        /// <summary>Payload size.</summary>
        public ulong Size;
        /// <summary>Receive sequence number (1-based, local).</summary>
        public ulong Sequence;
        /// <summary>Unix time (s) of arrival.</summary>
        public double Timestamp;
        /// <summary>Seconds between arrival and this read.</summary>
        public double Age;
        /// <summary>Seconds the receive call waited.</summary>
        public double ReceiveTime;
        /// <summary>Always 0 for received datagrams.</summary>
        public uint TtlMs;
        /// <summary>Always 0 here.</summary>
        public byte IsExpired;
        /// <summary>First 8 hex chars of the payload's SHA-256, NUL-terminated.</summary>
        public fixed byte Checksum[9];
        /// <summary>Reserved.</summary>
        public fixed byte Reserved[2];

        /// <summary>The checksum as a string (allocates).</summary>
        public string ChecksumString
        {
            get { fixed (byte* p = Checksum) { return Utf8.FromNative((IntPtr)p); } }
        }
    }

    /// <summary>Counters of a reliability layer (wtd_reliability_stats).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ReliabilityStats
    {
        /// <summary>Size of the struct as the library filled it.</summary>
        public uint StructSize;
        /// <summary>Reserved.</summary>
        public uint Reserved;
        /// <summary>Messages accepted by Send.</summary>
        public ulong Sent;
        /// <summary>DATA retransmissions.</summary>
        public ulong Retransmits;
        /// <summary>Messages the peer acknowledged.</summary>
        public ulong Acked;
        /// <summary>Messages given up.</summary>
        public ulong GaveUp;
        /// <summary>Messages delivered to this end's application.</summary>
        public ulong Delivered;
        /// <summary>Duplicate DATA frames suppressed.</summary>
        public ulong Duplicates;
        /// <summary>ACK frames sent.</summary>
        public ulong AcksSent;
        /// <summary>ACK frames received.</summary>
        public ulong AcksReceived;
        /// <summary>ACKs for no pending message.</summary>
        public ulong UnknownAcks;
        /// <summary>Malformed frames dropped.</summary>
        public ulong Malformed;
        /// <summary>Sequence gaps skipped.</summary>
        public ulong GapsSkipped;
        /// <summary>Outcomes dropped because nobody polled them.</summary>
        public ulong OutcomesDropped;
        /// <summary>Messages awaiting an ACK now.</summary>
        public ulong InFlight;
        /// <summary>Smoothed RTT, µs.</summary>
        public ulong SrttUs;
        /// <summary>Retransmit timeout for a new message, µs.</summary>
        public ulong RtoUs;
        /// <summary>Frames dropped by TestDropFraction.</summary>
        public ulong InjectedDrops;
        /// <summary>DATA frames that arrived.</summary>
        public ulong DataReceived;
        /// <summary>DATA refused: beyond the receive window.</summary>
        public ulong OutOfWindow;
        /// <summary>DATA refused: window full.</summary>
        public ulong RefusedFull;
        /// <summary>DATA for a skipped sequence number.</summary>
        public ulong LateAfterSkip;
        /// <summary>Sequence numbers tracked now.</summary>
        public ulong RecvBuffered;
        /// <summary>Messages waiting for Receive now.</summary>
        public ulong RecvReady;
        /// <summary>ACKs not sent (queue full or send failed).</summary>
        public ulong AcksNotSent;
    }

    /// <summary>One finished reliable send (wtd_reliable_result).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ReliableResult
    {
        /// <summary>The sequence number Send returned.</summary>
        public uint Seq;
        /// <summary>Delivered or given up (a ReliableOutcome value).</summary>
        public uint Outcome;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeMonitorOptions
    {
        public uint StructSize;
        public uint IntervalMs;
        public uint SamplesMaxlen;
        public uint AlertsMaxlen;
        public double QueueThreshold;
        public double SuccessRateThreshold;
        public uint TrendWindow;
        public uint Reserved;
    }

    /// <summary>One monitor sample (wtd_monitor_sample).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct MonitorSample
    {
        /// <summary>Unix time (s) of the sample.</summary>
        public double Timestamp;
        /// <summary>Datagrams handed to QUIC so far.</summary>
        public ulong DatagramsSent;
        /// <summary>Datagrams arrived so far.</summary>
        public ulong DatagramsReceived;
        /// <summary>Send success rate so far (0..1).</summary>
        public double SendSuccessRate;
        /// <summary>Mean queueing time (s) since the previous sample.</summary>
        public double AvgSendTime;
        /// <summary>Outgoing queue size at the sample.</summary>
        public ulong QueueSize;
    }

    /// <summary>One monitor alert (wtd_monitor_alert).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct MonitorAlert
    {
        /// <summary>A MonitorAlertKind value.</summary>
        public uint Kind;
        /// <summary>Unix time (s) it was raised.</summary>
        public double Timestamp;
        /// <summary>NUL-terminated UTF-8 message (WTD_ALERT_MESSAGE_MAX bytes).</summary>
        public fixed byte Message[128];

        /// <summary>The message as a string (allocates).</summary>
        public string MessageString
        {
            get { fixed (byte* p = Message) { return Utf8.FromNative((IntPtr)p); } }
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativePriorityCount
    {
        public int Priority;
        public uint Count;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct NativeQueueDirectionStats
    {
        public uint Size;
        public uint MaxSize;
        public uint ClassCount;
        /// <summary>WTD_QUEUE_STATS_CLASSES × {int32 priority, uint32 count}.</summary>
        public fixed int Classes[16];
        public uint OtherCount;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeQueueStats
    {
        public uint StructSize;
        public NativeQueueDirectionStats Outgoing;
        public NativeQueueDirectionStats Incoming;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeDatagramView
    {
        public IntPtr Data;
        public UIntPtr Len;
    }

    /// <summary>pollfd of libc's poll(2).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    /// <summary>The P/Invoke declarations (one file, see the header comment).</summary>
    [SuppressUnmanagedCodeSecurity]
    internal static unsafe class NativeMethods
    {
        /// <summary>The native library name: "wtd" resolves to libwtd.so / wtd.dll / libwtd.dylib;
        /// iOS (static linking) needs "__Internal" — build with WTD_IOS defined.</summary>
#if WTD_IOS || (UNITY_IOS && !UNITY_EDITOR)
        internal const string Lib = "__Internal";
#else
        internal const string Lib = "wtd";
#endif
        private const CallingConvention CC = CallingConvention.Cdecl;

        // --- library ---
        [DllImport(Lib, CallingConvention = CC)] internal static extern IntPtr wtd_last_error_message();
        [DllImport(Lib, CallingConvention = CC)] internal static extern IntPtr wtd_result_str(uint result);
        [DllImport(Lib, CallingConvention = CC)] internal static extern IntPtr wtd_version();
        [DllImport(Lib, CallingConvention = CC)] internal static extern uint wtd_version_number();
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_set_runtime_threads(uint threads);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_set_send_coalescing(uint intervalUs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_set_runtime_mode(uint mode);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_poll(ulong* outEvents, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern void wtd_shutdown();
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_log_set_callbacks(NativeLogCallbacks* callbacks);
        [DllImport(Lib, CallingConvention = CC)] internal static extern IntPtr wtd_log_level_str(uint level);
        [DllImport(Lib, CallingConvention = CC)] internal static extern IntPtr wtd_draft_str(uint draft);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_create_heartbeat_datagram(byte* buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CC)] internal static extern byte wtd_is_heartbeat_datagram(byte* data, UIntPtr len);

        // --- server ---
        // Every struct the library fills (options defaults, stats, results) is passed by ref with
        // StructSize set by the caller first (API 0.2: the library writes at most that much).
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_server_options_default(ref NativeServerOptions o);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_server_new(ref NativeServerOptions o, out IntPtr server);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_server_port(ServerHandle s, out ushort port);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_server_readiness_fd(ServerHandle s, out int fd);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_server_cert_hash(ServerHandle s, byte* out32);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_server_cert_hash_hex(ServerHandle s, byte* buf, UIntPtr cap);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_server_get_stats(ServerHandle s, ref ServerStats stats);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_server_accept(ServerHandle s, out IntPtr session, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_server_close(ServerHandle s);
        [DllImport(Lib, CallingConvention = CC)] internal static extern void wtd_server_free(IntPtr s);

        // --- client / session ---
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_client_options_default(ref NativeClientOptions o);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_client_connect(IntPtr url, ref NativeClientOptions o, out IntPtr session);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_open_sibling(SessionHandle s, IntPtr path, out IntPtr session);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_send(SessionHandle s, byte* data, UIntPtr len);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_receive(SessionHandle s, byte* buf, UIntPtr cap, out UIntPtr outLen, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_receive_batch(SessionHandle s, NativeDatagramBuffer* buffers, UIntPtr count, out UIntPtr outCount, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_set_callbacks(SessionHandle s, NativeSessionCallbacks* callbacks);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_close(SessionHandle s, uint code, IntPtr reason);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_is_draining(SessionHandle s, out byte draining);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_is_closed(SessionHandle s, out byte closed);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_close_info(SessionHandle s, out uint code, byte* reasonBuf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_wait_closed(SessionHandle s, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_id(SessionHandle s, out ulong id);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_draft(SessionHandle s, out uint draft);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_path(SessionHandle s, byte* buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_origin(SessionHandle s, byte* buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_max_datagram_size(SessionHandle s, out UIntPtr size);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_readiness_fd(SessionHandle s, out int fd);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_session_get_stats(SessionHandle s, ref SessionStats stats);
        [DllImport(Lib, CallingConvention = CC)] internal static extern void wtd_session_free(IntPtr s);

        // --- transport ---
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_options_default(ref NativeTransportOptions o);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_new(SessionHandle s, ref NativeTransportOptions o, out IntPtr transport);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_get_options(TransportHandle t, ref NativeTransportOptions o);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_close(TransportHandle t, uint flushTimeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern void wtd_transport_free(IntPtr t);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_send(TransportHandle t, byte* data, UIntPtr len, int priority, uint ttlMs, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_try_send(TransportHandle t, byte* data, UIntPtr len, int priority, uint ttlMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_send_multiple(TransportHandle t, NativeDatagramView* items, UIntPtr count, int priority, uint ttlMs, out UIntPtr accepted);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_send_json(TransportHandle t, byte* json, UIntPtr len, int priority, uint ttlMs, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_receive(TransportHandle t, byte* buf, UIntPtr cap, out UIntPtr outLen, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_receive_batch(TransportHandle t, NativeDatagramBuffer* buffers, UIntPtr count, out UIntPtr outCount, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_receive_with_metadata(TransportHandle t, byte* buf, UIntPtr cap, out UIntPtr outLen, ref DatagramMetadata meta, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_receive_json(TransportHandle t, byte* buf, UIntPtr cap, out UIntPtr outLen, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_clear_receive_buffer(TransportHandle t, out UIntPtr count);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_clear_send_buffer(TransportHandle t, out UIntPtr count);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_get_receive_buffer_size(TransportHandle t, out UIntPtr size);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_get_send_buffer_size(TransportHandle t, out UIntPtr size);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_get_queue_stats(TransportHandle t, ref NativeQueueStats stats);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_get_stats(TransportHandle t, ref DatagramStats stats);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_debug_state(TransportHandle t, byte* buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_diagnose_issues(TransportHandle t, uint* codes, UIntPtr count, out UIntPtr outCount);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_diagnose_issues_json(TransportHandle t, byte* buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_start_heartbeat(TransportHandle t, uint intervalMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_stop_heartbeat(TransportHandle t);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_last_heartbeat_received(TransportHandle t, out double unixSeconds);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_max_datagram_size(TransportHandle t, out UIntPtr size);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_readiness_fd(TransportHandle t, out int fd);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_throughput_test(TransportHandle t, uint durationMs, UIntPtr size, ref ThroughputResult result);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_set_callbacks(TransportHandle t, NativeTransportCallbacks* callbacks);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_is_closed(TransportHandle t, out byte closed);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_is_writable(TransportHandle t, out byte writable);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_set_incoming_max_age(TransportHandle t, uint maxAgeMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_transport_set_outgoing_max_age(TransportHandle t, uint maxAgeMs);

        // --- reliability ---
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_reliability_options_default(ref NativeReliabilityOptions o);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_reliability_options_low_latency(ref NativeReliabilityOptions o);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_reliability_new(TransportHandle t, ref NativeReliabilityOptions o, out IntPtr reliability);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_reliability_send(ReliabilityHandle r, byte* data, UIntPtr len, out uint seq);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_reliability_receive(ReliabilityHandle r, byte* buf, UIntPtr cap, out UIntPtr outLen, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_reliability_poll_outcomes(ReliabilityHandle r, ReliableResult* results, UIntPtr resultSize, UIntPtr count, out UIntPtr outCount);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_reliability_set_callbacks(ReliabilityHandle r, NativeReliabilityCallbacks* callbacks);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_reliability_set_test_drop_fraction(ReliabilityHandle r, double fraction);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_reliability_get_stats(ReliabilityHandle r, ref ReliabilityStats stats);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_reliability_close(ReliabilityHandle r);
        [DllImport(Lib, CallingConvention = CC)] internal static extern void wtd_reliability_free(IntPtr r);

        // --- structured ---
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_structured_options_default(ref NativeStructuredOptions o);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_structured_new(TransportHandle t, ref NativeStructuredOptions o, out IntPtr structured);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_structured_register(StructuredHandle s, ushort typeId);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_structured_send_obj(StructuredHandle s, ushort typeId, IntPtr obj, int priority, uint ttlMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_structured_receive_obj(StructuredHandle s, out ushort typeId, out IntPtr obj, int timeoutMs);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_structured_is_closed(StructuredHandle s, out byte closed);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_structured_close(StructuredHandle s);
        [DllImport(Lib, CallingConvention = CC)] internal static extern void wtd_structured_free(IntPtr s);

        // --- broadcaster ---
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_broadcaster_new(out IntPtr b);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_broadcaster_add(BroadcasterHandle b, TransportHandle t);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_broadcaster_remove(BroadcasterHandle b, TransportHandle t);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_broadcaster_count(BroadcasterHandle b, out UIntPtr count);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_broadcaster_broadcast(BroadcasterHandle b, byte* data, UIntPtr len, int priority, uint ttlMs, ref NativeBroadcastResult result);
        [DllImport(Lib, CallingConvention = CC)] internal static extern void wtd_broadcaster_free(IntPtr b);

        // --- monitor ---
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_monitor_options_default(ref NativeMonitorOptions o);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_monitor_new(TransportHandle t, ref NativeMonitorOptions o, out IntPtr monitor);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_monitor_start(MonitorHandle m);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_monitor_stop(MonitorHandle m);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_monitor_is_monitoring(MonitorHandle m, out byte monitoring);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_monitor_sample_now(MonitorHandle m);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_monitor_get_samples(MonitorHandle m, MonitorSample* samples, UIntPtr sampleSize, UIntPtr count, out UIntPtr outCount);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_monitor_get_alerts(MonitorHandle m, MonitorAlert* alerts, UIntPtr alertSize, UIntPtr count, out UIntPtr outCount);
        [DllImport(Lib, CallingConvention = CC)] internal static extern int wtd_monitor_set_callbacks(MonitorHandle m, NativeMonitorCallbacks* callbacks);
        [DllImport(Lib, CallingConvention = CC)] internal static extern IntPtr wtd_alert_kind_str(uint kind);
        [DllImport(Lib, CallingConvention = CC)] internal static extern void wtd_monitor_free(IntPtr m);

        // --- libc, for the readiness waiter (Unix only; see ReadinessWaiter.cs) ---
        [DllImport("libc", EntryPoint = "poll", SetLastError = true)] internal static extern int poll(PollFd* fds, UIntPtr nfds, int timeout);
        [DllImport("libc", EntryPoint = "pipe", SetLastError = true)] internal static extern int pipe(int* fds);
        [DllImport("libc", EntryPoint = "read", SetLastError = true)] internal static extern IntPtr read(int fd, byte* buf, UIntPtr count);
        [DllImport("libc", EntryPoint = "write", SetLastError = true)] internal static extern IntPtr write(int fd, byte* buf, UIntPtr count);
        [DllImport("libc", EntryPoint = "close", SetLastError = true)] internal static extern int close(int fd);
    }
}
