// Transport.cs — the datagram transport of a session: prioritized outgoing queue with TTLs and
// drop policies, incoming queue with max age, statistics with a counter per drop reason.
using System;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Wtd
{
    /// <summary>What a full outgoing queue does with a new datagram (wtd_drop_policy).</summary>
    public enum DropPolicy
    {
        /// <summary>Evict the oldest datagram of the lowest priority ≤ the new one's (default).</summary>
        DropOldest = 0,
        /// <summary>Refuse the new datagram (WouldBlock).</summary>
        RejectNew = 1,
        /// <summary>Make the sender wait for room, up to its timeout.</summary>
        Block = 2,
    }

    /// <summary>Transport options; unset (0) fields keep wtd's defaults.</summary>
    public sealed class TransportOptions
    {
        /// <summary>Outgoing queue capacity (0 = default 100).</summary>
        public uint OutgoingHighWaterMark;
        /// <summary>Incoming queue capacity (0 = same as outgoing).</summary>
        public uint IncomingHighWaterMark;
        /// <summary>Full-queue behaviour.</summary>
        public DropPolicy DropPolicy = DropPolicy.DropOldest;
        /// <summary>Block policy wait when a send passes timeout -1, ms (0 = default 1000).</summary>
        public uint SenderTimeoutMs;
        /// <summary>Incoming datagrams older than this are dropped when read (0 = no limit).</summary>
        public uint IncomingMaxAgeMs;
        /// <summary>Outgoing datagrams older than this are dropped before sending (0 = no limit).</summary>
        public uint OutgoingMaxAgeMs;
        /// <summary>Keep heartbeat datagrams out of the receive path.</summary>
        public bool FilterHeartbeats;
    }

    /// <summary>Per-priority counts of one queue.</summary>
    public struct PriorityCount
    {
        /// <summary>The priority.</summary>
        public int Priority;
        /// <summary>Datagrams queued at it.</summary>
        public int Count;
    }

    /// <summary>Snapshot of one queue.</summary>
    public sealed class QueueDirectionStats
    {
        /// <summary>Datagrams queued now.</summary>
        public int Size;
        /// <summary>Capacity.</summary>
        public int MaxSize;
        /// <summary>Per-priority counts, highest first (at most 8).</summary>
        public PriorityCount[] Classes;
        /// <summary>Datagrams in classes beyond the first 8.</summary>
        public int OtherCount;
    }

    /// <summary>A datagram arrived at a transport callback: buffer[0..length] valid only during the call.</summary>
    public delegate void TransportReceivedHandler(WtdTransport transport, byte[] buffer, int length);

    /// <summary>A datagram of `size` bytes was handed to QUIC.</summary>
    public delegate void TransportSentHandler(WtdTransport transport, int size);

    /// <summary>The datagram transport of a session (wtd_transport). Thread-safe. Creating it
    /// takes the session's datagram path over (do not receive on the session any more).</summary>
    public sealed unsafe partial class WtdTransport : IDisposable
    {
        private readonly TransportHandle handle = new TransportHandle();
        private int readinessFd = -1;
        private TransportReceivedHandler onReceived;
        private TransportSentHandler onSent;
        private byte[] scratch = new byte[0];
        private int disposed;

        /// <summary>Creates the transport of `session`.</summary>
        public WtdTransport(WtdSession session, TransportOptions options = null)
        {
            if (session == null) throw new ArgumentNullException("session");
            options = options ?? new TransportOptions();
            NativeTransportOptions n = new NativeTransportOptions(); n.StructSize = (uint)sizeof(NativeTransportOptions);
            WtdException.Check(NativeMethods.wtd_transport_options_default(ref n));
            if (options.OutgoingHighWaterMark != 0) n.OutgoingHighWaterMark = options.OutgoingHighWaterMark;
            n.IncomingHighWaterMark = options.IncomingHighWaterMark;
            n.DropPolicy = (uint)options.DropPolicy;
            if (options.SenderTimeoutMs != 0) n.SenderTimeoutMs = options.SenderTimeoutMs;
            n.IncomingMaxAgeMs = options.IncomingMaxAgeMs;
            n.OutgoingMaxAgeMs = options.OutgoingMaxAgeMs;
            n.FilterHeartbeats = options.FilterHeartbeats ? 1u : 0u;
            IntPtr t;
            WtdException.Check(NativeMethods.wtd_transport_new(session.Handle, ref n, out t));
            handle.Attach(t);
        }

        /// <summary>The SafeHandle (for advanced interop).</summary>
        public TransportHandle Handle { get { return handle; } }

        // ---- send ----

        /// <summary>Queues data[offset..offset+count]: higher priority first, FIFO among equals;
        /// ttlMs &gt; 0 drops it (counted) if still queued when it runs out. timeoutMs only
        /// matters for DropPolicy.Block (-1 = SenderTimeoutMs, 0 = don't wait). Throws on
        /// failure (TooLarge, WouldBlock, Timeout, Closed, ...).</summary>
        public void Send(byte[] data, int offset, int count, int priority = 0, uint ttlMs = 0, int timeoutMs = -1)
        {
            Buffers.CheckRange(data, offset, count);
            int rc;
            fixed (byte* p = data)
                rc = NativeMethods.wtd_transport_send(handle, p + offset, (UIntPtr)count, priority, ttlMs, timeoutMs);
            WtdException.Check(rc);
        }

        /// <summary>Queues the whole array (see the full overload).</summary>
        public void Send(byte[] data, int priority = 0, uint ttlMs = 0)
        {
            if (data == null) throw new ArgumentNullException("data");
            Send(data, 0, data.Length, priority, ttlMs, -1);
        }

        /// <summary>Never waits; returns the result code instead of throwing.</summary>
        public WtdResult TrySend(byte[] data, int offset, int count, int priority = 0, uint ttlMs = 0)
        {
            Buffers.CheckRange(data, offset, count);
            fixed (byte* p = data)
                return (WtdResult)NativeMethods.wtd_transport_try_send(handle, p + offset, (UIntPtr)count, priority, ttlMs);
        }

#if !WTD_NO_SPAN
        /// <summary>Queues a span (see the byte[] overload).</summary>
        public void Send(ReadOnlySpan<byte> data, int priority = 0, uint ttlMs = 0, int timeoutMs = -1)
        {
            int rc;
            fixed (byte* p = &System.Runtime.InteropServices.MemoryMarshal.GetReference(data))
                rc = NativeMethods.wtd_transport_send(handle, p, (UIntPtr)data.Length, priority, ttlMs, timeoutMs);
            WtdException.Check(rc);
        }

        /// <summary>Never waits; returns the result code.</summary>
        public WtdResult TrySend(ReadOnlySpan<byte> data, int priority = 0, uint ttlMs = 0)
        {
            fixed (byte* p = &System.Runtime.InteropServices.MemoryMarshal.GetReference(data))
                return (WtdResult)NativeMethods.wtd_transport_try_send(handle, p, (UIntPtr)data.Length, priority, ttlMs);
        }
#endif

        /// <summary>Sends `items` in order with one priority and TTL, each like Send; stops at the
        /// first failure. Returns the result code; `accepted` = how many were accepted.</summary>
        public WtdResult TrySendMultiple(System.Collections.Generic.IList<ArraySegment<byte>> items, int priority, uint ttlMs, out int accepted)
        {
            if (items == null) throw new ArgumentNullException("items");
            int count = items.Count;
            var pins = new System.Runtime.InteropServices.GCHandle[count];
            IntPtr views = System.Runtime.InteropServices.Marshal.AllocHGlobal(Math.Max(1, count) * sizeof(NativeDatagramView));
            try
            {
                NativeDatagramView* v = (NativeDatagramView*)views;
                for (int i = 0; i < count; i++)
                {
                    ArraySegment<byte> seg = items[i];
                    if (seg.Array == null) throw new ArgumentException("item " + i + " has no array");
                    pins[i] = System.Runtime.InteropServices.GCHandle.Alloc(seg.Array, System.Runtime.InteropServices.GCHandleType.Pinned);
                    v[i].Data = pins[i].AddrOfPinnedObject() + seg.Offset;
                    v[i].Len = (UIntPtr)seg.Count;
                }
                UIntPtr acc;
                int rc = NativeMethods.wtd_transport_send_multiple(handle, v, (UIntPtr)count, priority, ttlMs, out acc);
                accepted = (int)acc;
                return (WtdResult)rc;
            }
            finally
            {
                for (int i = 0; i < count; i++) if (pins[i].IsAllocated) pins[i].Free();
                System.Runtime.InteropServices.Marshal.FreeHGlobal(views);
            }
        }

        /// <summary>TrySendMultiple that throws on failure (after `accepted` items went out).</summary>
        public int SendMultiple(System.Collections.Generic.IList<ArraySegment<byte>> items, int priority = 0, uint ttlMs = 0)
        {
            int accepted;
            WtdResult r = TrySendMultiple(items, priority, ttlMs, out accepted);
            if (r != WtdResult.Ok) throw WtdException.FromCode((int)r, -1);
            return accepted;
        }

        /// <summary>Validates and compacts JSON text, then sends it (Serialization when invalid).</summary>
        public void SendJson(string json, int priority = 0, uint ttlMs = 0, int timeoutMs = -1)
        {
            if (json == null) throw new ArgumentNullException("json");
            byte[] b = Encoding.UTF8.GetBytes(json);
            int rc;
            fixed (byte* p = b)
                rc = NativeMethods.wtd_transport_send_json(handle, p, (UIntPtr)b.Length, priority, ttlMs, timeoutMs);
            WtdException.Check(rc);
        }

        // ---- receive ----

        /// <summary>Receives the next datagram into buffer[offset..offset+count] waiting up to
        /// timeoutMs (-1 forever, 0 not at all); returns its length. Throws Timeout /
        /// WouldBlock, Closed (closed and drained), BufferTooSmall (RequiredLength set; stays queued).</summary>
        public int Receive(byte[] buffer, int offset, int count, int timeoutMs)
        {
            Buffers.CheckRange(buffer, offset, count);
            UIntPtr len;
            int rc;
            fixed (byte* p = buffer)
                rc = NativeMethods.wtd_transport_receive(handle, p + offset, (UIntPtr)count, out len, timeoutMs);
            WtdException.Check(rc, (long)(ulong)len);
            return (int)len;
        }

        /// <summary>Non-blocking receive: false when nothing is queued.</summary>
        public bool TryReceive(byte[] buffer, int offset, int count, out int length)
        {
            Buffers.CheckRange(buffer, offset, count);
            UIntPtr len;
            int rc;
            fixed (byte* p = buffer)
                rc = NativeMethods.wtd_transport_receive(handle, p + offset, (UIntPtr)count, out len, 0);
            length = 0;
            if (rc == (int)WtdResult.WouldBlock) return false;
            WtdException.Check(rc, (long)(ulong)len);
            length = (int)len;
            return true;
        }

#if !WTD_NO_SPAN
        /// <summary>Receive into a span (see the byte[] overload).</summary>
        public int Receive(Span<byte> buffer, int timeoutMs)
        {
            UIntPtr len;
            int rc;
            fixed (byte* p = &System.Runtime.InteropServices.MemoryMarshal.GetReference(buffer))
                rc = NativeMethods.wtd_transport_receive(handle, p, (UIntPtr)buffer.Length, out len, timeoutMs);
            WtdException.Check(rc, (long)(ulong)len);
            return (int)len;
        }

        /// <summary>Non-blocking receive into a span.</summary>
        public bool TryReceive(Span<byte> buffer, out int length)
        {
            UIntPtr len;
            int rc;
            fixed (byte* p = &System.Runtime.InteropServices.MemoryMarshal.GetReference(buffer))
                rc = NativeMethods.wtd_transport_receive(handle, p, (UIntPtr)buffer.Length, out len, 0);
            length = 0;
            if (rc == (int)WtdResult.WouldBlock) return false;
            WtdException.Check(rc, (long)(ulong)len);
            length = (int)len;
            return true;
        }
#endif

        /// <summary>Batch receive: waits up to timeoutMs for the first datagram, then takes what
        /// is queued, up to batch.Slots. Returns the count (0 on WouldBlock/Timeout).</summary>
        public int ReceiveBatch(DatagramBatch batch, int timeoutMs = 0)
        {
            if (batch == null) throw new ArgumentNullException("batch");
            UIntPtr n;
            int rc = NativeMethods.wtd_transport_receive_batch(handle, batch.Native, (UIntPtr)batch.Slots, out n, timeoutMs);
            batch.SetCount(0);
            if (rc == (int)WtdResult.WouldBlock || rc == (int)WtdResult.Timeout) return 0;
            WtdException.Check(rc, rc == (int)WtdResult.BufferTooSmall ? (long)(ulong)batch.Native[0].Len : -1);
            batch.SetCount((int)n);
            return (int)n;
        }

        /// <summary>Receive that also fills the metadata (sequence, age, checksum).</summary>
        public int ReceiveWithMetadata(byte[] buffer, int offset, int count, int timeoutMs, out DatagramMetadata meta)
        {
            Buffers.CheckRange(buffer, offset, count);
            UIntPtr len;
            int rc;
            meta = new DatagramMetadata();
            meta.StructSize = (uint)sizeof(DatagramMetadata);
            fixed (byte* p = buffer)
                rc = NativeMethods.wtd_transport_receive_with_metadata(handle, p + offset, (UIntPtr)count, out len, ref meta, timeoutMs);
            WtdException.Check(rc, (long)(ulong)len);
            return (int)len;
        }

        /// <summary>Receives the next datagram as compact JSON text (allocates the string).</summary>
        public string ReceiveJson(int timeoutMs)
        {
            byte[] buf = new byte[1024];
            while (true)
            {
                UIntPtr len;
                int rc;
                fixed (byte* p = buf)
                {
                    rc = NativeMethods.wtd_transport_receive_json(handle, p, (UIntPtr)buf.Length, out len, timeoutMs);
                    if (rc == 0) return Utf8.FromNative(p, (int)len);
                }
                if (rc != (int)WtdResult.BufferTooSmall) throw WtdException.FromCode(rc, -1);
                buf = new byte[(int)len + 1];
            }
        }

        /// <summary>The readiness descriptor (readable while a datagram is queued or closed).</summary>
        public int ReadinessFd
        {
            get
            {
                if (readinessFd >= 0) return readinessFd;
                int fd;
                WtdException.Check(NativeMethods.wtd_transport_readiness_fd(handle, out fd));
                readinessFd = fd;
                return fd;
            }
        }

        // ---- callbacks ----

        /// <summary>Installs callbacks (both null removes them). With onReceived set, datagrams
        /// go to it instead of the incoming queue. Runs on a wtd thread; see WtdSession.SetCallbacks.</summary>
        public void SetCallbacks(TransportReceivedHandler onReceived, TransportSentHandler onSent)
        {
            // The managed lock is not held across the native call: replacing callbacks waits
            // for a running callback, which may itself call into this object.
            lock (handle)
            {
                this.onReceived = onReceived;
                this.onSent = onSent;
                if (handle.CallbackState == IntPtr.Zero && (onReceived != null || onSent != null))
                    handle.CallbackState = Callbacks.NewState(this);
            }
            NativeTransportCallbacks cb = new NativeTransportCallbacks();
            cb.StructSize = (uint)sizeof(NativeTransportCallbacks);
            cb.OnReceived = onReceived != null ? Callbacks.TransportReceivedPtr : IntPtr.Zero;
            cb.OnSent = onSent != null ? Callbacks.TransportSentPtr : IntPtr.Zero;
            cb.UserData = handle.CallbackState;
            bool none = onReceived == null && onSent == null;
            WtdException.Check(NativeMethods.wtd_transport_set_callbacks(handle, none ? null : &cb));
        }

        internal void DeliverReceived(IntPtr data, int len)
        {
            TransportReceivedHandler h = onReceived;
            if (h == null) return;
            if (scratch.Length < len) scratch = new byte[Math.Max(len, 1500)];
            if (len > 0) System.Runtime.InteropServices.Marshal.Copy(data, scratch, 0, len);
            h(this, scratch, len);
        }

        internal void DeliverSent(int size)
        {
            TransportSentHandler h = onSent;
            if (h != null) h(this, size);
        }

        // ---- queues, stats ----

        /// <summary>Empties the incoming queue; returns how many were dropped (counted).</summary>
        public int ClearReceiveBuffer()
        {
            UIntPtr n;
            WtdException.Check(NativeMethods.wtd_transport_clear_receive_buffer(handle, out n));
            return (int)n;
        }

        /// <summary>Empties the outgoing queue; returns how many were dropped (counted).</summary>
        public int ClearSendBuffer()
        {
            UIntPtr n;
            WtdException.Check(NativeMethods.wtd_transport_clear_send_buffer(handle, out n));
            return (int)n;
        }

        /// <summary>Datagrams in the incoming queue.</summary>
        public int ReceiveBufferSize
        {
            get
            {
                UIntPtr n;
                WtdException.Check(NativeMethods.wtd_transport_get_receive_buffer_size(handle, out n));
                return (int)n;
            }
        }

        /// <summary>Datagrams in the outgoing queue.</summary>
        public int SendBufferSize
        {
            get
            {
                UIntPtr n;
                WtdException.Check(NativeMethods.wtd_transport_get_send_buffer_size(handle, out n));
                return (int)n;
            }
        }

        /// <summary>Both queues with per-priority counts: [0] outgoing, [1] incoming.</summary>
        public QueueDirectionStats[] GetQueueStats()
        {
            NativeQueueStats q = new NativeQueueStats(); q.StructSize = (uint)sizeof(NativeQueueStats);
            WtdException.Check(NativeMethods.wtd_transport_get_queue_stats(handle, ref q));
            return new[] { Convert(ref q.Outgoing), Convert(ref q.Incoming) };
        }

        private static QueueDirectionStats Convert(ref NativeQueueDirectionStats d)
        {
            int n = (int)Math.Min(d.ClassCount, 8u);
            var r = new QueueDirectionStats { Size = (int)d.Size, MaxSize = (int)d.MaxSize, OtherCount = (int)d.OtherCount, Classes = new PriorityCount[n] };
            fixed (int* c = d.Classes)
                for (int i = 0; i < n; i++) r.Classes[i] = new PriorityCount { Priority = c[2 * i], Count = c[2 * i + 1] };
            return r;
        }

        /// <summary>Statistics with a counter per drop reason.</summary>
        public DatagramStats Stats
        {
            get
            {
                DatagramStats s = new DatagramStats(); s.StructSize = (uint)sizeof(DatagramStats);
                WtdException.Check(NativeMethods.wtd_transport_get_stats(handle, ref s));
                return s;
            }
        }

        /// <summary>JSON snapshot of the transport's state.</summary>
        public string DebugState()
        {
            UIntPtr need;
            int rc = NativeMethods.wtd_transport_debug_state(handle, null, UIntPtr.Zero, out need);
            if (rc != 0 && rc != (int)WtdResult.BufferTooSmall) throw WtdException.FromCode(rc, -1);
            while (true)
            {
                byte[] buf = new byte[(int)need + 256];
                UIntPtr len;
                fixed (byte* p = buf)
                {
                    rc = NativeMethods.wtd_transport_debug_state(handle, p, (UIntPtr)buf.Length, out len);
                    if (rc == 0) return Utf8.FromNative(p, (int)len);
                }
                if (rc != (int)WtdResult.BufferTooSmall) throw WtdException.FromCode(rc, -1);
                need = len;
            }
        }

        /// <summary>Largest payload one datagram can carry now.</summary>
        public int MaxDatagramSize
        {
            get
            {
                UIntPtr n;
                WtdException.Check(NativeMethods.wtd_transport_max_datagram_size(handle, out n));
                return (int)n;
            }
        }

        /// <summary>True once closed.</summary>
        public bool IsClosed
        {
            get
            {
                byte b;
                WtdException.Check(NativeMethods.wtd_transport_is_closed(handle, out b));
                return b != 0;
            }
        }

        /// <summary>True while sends are possible.</summary>
        public bool IsWritable
        {
            get
            {
                byte b;
                WtdException.Check(NativeMethods.wtd_transport_is_writable(handle, out b));
                return b != 0;
            }
        }

        /// <summary>The session id.</summary>
        public ulong SessionId
        {
            get
            {
                return Stats.SessionId;
            }
        }

        /// <summary>Sets the incoming max age in ms (0 = none).</summary>
        public void SetIncomingMaxAge(uint ms) { WtdException.Check(NativeMethods.wtd_transport_set_incoming_max_age(handle, ms)); }

        /// <summary>Sets the outgoing max age in ms (0 = none).</summary>
        public void SetOutgoingMaxAge(uint ms) { WtdException.Check(NativeMethods.wtd_transport_set_outgoing_max_age(handle, ms)); }

        /// <summary>Starts sending HEARTBEAT datagrams every intervalMs.</summary>
        public void StartHeartbeat(uint intervalMs) { WtdException.Check(NativeMethods.wtd_transport_start_heartbeat(handle, intervalMs)); }

        /// <summary>Stops the heartbeat.</summary>
        public void StopHeartbeat() { WtdException.Check(NativeMethods.wtd_transport_stop_heartbeat(handle)); }

        /// <summary>Unix time (s) of the last heartbeat from the peer, 0 when none.</summary>
        public double LastHeartbeatReceived
        {
            get
            {
                double d;
                WtdException.Check(NativeMethods.wtd_transport_last_heartbeat_received(handle, out d));
                return d;
            }
        }

        /// <summary>Floods `size`-byte datagrams for durationMs and reports what left (blocks).</summary>
        public ThroughputResult ThroughputTest(uint durationMs, int size)
        {
            ThroughputResult r = new ThroughputResult(); r.StructSize = (uint)sizeof(ThroughputResult);
            WtdException.Check(NativeMethods.wtd_transport_throughput_test(handle, durationMs, (UIntPtr)size, ref r));
            return r;
        }

        /// <summary>Closes (flushing up to flushTimeoutMs; 0 from callbacks). Idempotent.</summary>
        public void Close(uint flushTimeoutMs = 0)
        {
            WtdException.Check(NativeMethods.wtd_transport_close(handle, flushTimeoutMs));
        }

        /// <summary>Closes without flushing and frees the handle. Safe to call twice.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref disposed, 1) != 0) return;
            if (!handle.IsClosed && !handle.IsInvalid) NativeMethods.wtd_transport_close(handle, 0);
            if (readinessFd >= 0) ReadinessWaiter.Release(readinessFd);
            handle.Dispose();
        }
    }

    // The async waits live in a part without `unsafe` (await is not allowed in unsafe code).
    public sealed partial class WtdTransport
    {
        /// <summary>Receives without blocking a thread (readiness descriptor).</summary>
        public async Task<int> ReceiveAsync(byte[] buffer, int offset, int count, CancellationToken ct = default(CancellationToken))
        {
            Buffers.CheckRange(buffer, offset, count);
            int fd = ReadinessFd;
            while (true)
            {
                int n;
                try { if (TryReceive(buffer, offset, count, out n)) return n; }
                catch (ObjectDisposedException) when (Volatile.Read(ref disposed) != 0) { throw DisposedWhileWaiting(); }
                await ReadinessWaiter.WaitAsync(fd, ct).ConfigureAwait(false);
                ct.ThrowIfCancellationRequested();
                if (Volatile.Read(ref disposed) != 0) throw DisposedWhileWaiting();
            }
        }

        /// <summary>Waits (readiness, no thread) for at least one datagram, then ReceiveBatch.</summary>
        public async Task<int> ReceiveBatchAsync(DatagramBatch batch, CancellationToken ct = default(CancellationToken))
        {
            int fd = ReadinessFd;
            while (true)
            {
                int n;
                try { n = ReceiveBatch(batch, 0); }
                catch (ObjectDisposedException) when (Volatile.Read(ref disposed) != 0) { throw DisposedWhileWaiting(); }
                if (n > 0) return n;
                await ReadinessWaiter.WaitAsync(fd, ct).ConfigureAwait(false);
                ct.ThrowIfCancellationRequested();
                if (Volatile.Read(ref disposed) != 0) throw DisposedWhileWaiting();
            }
        }

        /// <summary>A wait that Dispose ended reports Closed, like a blocked Receive does.</summary>
        private static WtdException DisposedWhileWaiting()
        {
            return new WtdException(WtdResult.Closed, "disposed while waiting");
        }
    }
}
