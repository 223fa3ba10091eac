// Reliability.cs — the reliability layer (retransmit until ACKed) and the structured
// (type-id + serializer) transport over a WtdTransport, and the broadcaster.
using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace Wtd
{
    /// <summary>How a reliable message ended.</summary>
    public enum ReliableOutcome
    {
        /// <summary>The peer acknowledged it.</summary>
        Delivered = 0,
        /// <summary>No ACK after MaxRetries retransmissions (or closed first).</summary>
        GaveUp = 1,
    }

    /// <summary>Reliability options (defaults: wtd_reliability_options_default).</summary>
    public sealed class ReliabilityOptions
    {
        /// <summary>Retransmit timeout before the first RTT sample, ms (0 = default 2000).</summary>
        public uint AckTimeoutMs;
        /// <summary>Retransmissions before giving up (null = default 5).</summary>
        public uint? MaxRetries;
        /// <summary>Deliver in sequence order.</summary>
        public bool InOrder;
        /// <summary>Messages awaiting an ACK at once (0 = default 256).</summary>
        public uint MaxInFlight;
        /// <summary>Lower RTO bound, ms (0 = default).</summary>
        public uint MinRtoMs;
        /// <summary>Upper RTO bound, ms (0 = default).</summary>
        public uint MaxRtoMs;
        /// <summary>Gap skip timeout, ms (0 = derived).</summary>
        public uint GapTimeoutMs;
        /// <summary>Transport priority of DATA frames.</summary>
        public int Priority;
        /// <summary>Receive window (0 = default 4 × MaxInFlight).</summary>
        public uint ReceiveWindow;
        /// <summary>TEST KNOB: fraction of arriving frames dropped on purpose (0 = off); set
        /// with wtd_reliability_set_test_drop_fraction after creation.</summary>
        public double TestDropFraction;
    }

    /// <summary>A delivered reliable message: buffer[0..length] valid only during the call.</summary>
    public delegate void ReliableMessageHandler(WtdReliability layer, byte[] buffer, int length);

    /// <summary>A sent message finished.</summary>
    public delegate void ReliableOutcomeHandler(WtdReliability layer, uint seq, ReliableOutcome outcome);

    /// <summary>A reliability layer on a transport (pywebtransport's wire format). Thread-safe.</summary>
    public sealed unsafe class WtdReliability : IDisposable
    {
        private readonly ReliabilityHandle handle = new ReliabilityHandle();
        private ReliableMessageHandler onMessage;
        private ReliableOutcomeHandler onOutcome;
        private byte[] scratch = new byte[0];
        private int disposed;

        /// <summary>Attaches a layer to `transport`.</summary>
        public WtdReliability(WtdTransport transport, ReliabilityOptions options = null)
        {
            if (transport == null) throw new ArgumentNullException("transport");
            options = options ?? new ReliabilityOptions();
            NativeReliabilityOptions n = new NativeReliabilityOptions(); n.StructSize = (uint)sizeof(NativeReliabilityOptions);
            WtdException.Check(NativeMethods.wtd_reliability_options_default(ref n));
            if (options.AckTimeoutMs != 0) n.AckTimeoutMs = options.AckTimeoutMs;
            if (options.MaxRetries.HasValue) n.MaxRetries = options.MaxRetries.Value;
            n.InOrder = options.InOrder ? 1u : 0u;
            if (options.MaxInFlight != 0) n.MaxInFlight = options.MaxInFlight;
            if (options.MinRtoMs != 0) n.MinRtoMs = options.MinRtoMs;
            if (options.MaxRtoMs != 0) n.MaxRtoMs = options.MaxRtoMs;
            n.GapTimeoutMs = options.GapTimeoutMs;
            n.Priority = options.Priority;
            if (options.ReceiveWindow != 0) n.ReceiveWindow = options.ReceiveWindow;
            IntPtr r;
            WtdException.Check(NativeMethods.wtd_reliability_new(transport.Handle, ref n, out r));
            handle.Attach(r);
            if (options.TestDropFraction != 0) SetTestDropFraction(options.TestDropFraction);
        }

        /// <summary>TEST KNOB: drop this fraction (0..1) of arriving DATA/ACK frames on purpose
        /// (counted in InjectedDrops). Not for production.</summary>
        public void SetTestDropFraction(double fraction)
        {
            WtdException.Check(NativeMethods.wtd_reliability_set_test_drop_fraction(handle, fraction));
        }

        /// <summary>Sends data[offset..offset+count] reliably; returns its sequence number.
        /// Never blocks (WouldBlock when MaxInFlight messages await ACKs).</summary>
        public uint Send(byte[] data, int offset, int count)
        {
            Buffers.CheckRange(data, offset, count);
            uint seq;
            int rc;
            fixed (byte* p = data) rc = NativeMethods.wtd_reliability_send(handle, p + offset, (UIntPtr)count, out seq);
            WtdException.Check(rc);
            return seq;
        }

        /// <summary>Sends the whole array reliably.</summary>
        public uint Send(byte[] data)
        {
            if (data == null) throw new ArgumentNullException("data");
            return Send(data, 0, data.Length);
        }

        /// <summary>Receives the next delivered message (timeoutMs -1 forever, 0 not at all);
        /// throws Timeout/WouldBlock/Closed/BufferTooSmall like the transport.</summary>
        public int Receive(byte[] buffer, int offset, int count, int timeoutMs)
        {
            Buffers.CheckRange(buffer, offset, count);
            UIntPtr len;
            int rc;
            fixed (byte* p = buffer) rc = NativeMethods.wtd_reliability_receive(handle, p + offset, (UIntPtr)count, out len, timeoutMs);
            WtdException.Check(rc, (long)(ulong)len);
            return (int)len;
        }

        /// <summary>Takes finished sends into `results` (no allocation); returns the count.</summary>
        public int PollOutcomes(ReliableResult[] results)
        {
            if (results == null) throw new ArgumentNullException("results");
            UIntPtr n;
            fixed (ReliableResult* p = results)
                WtdException.Check(NativeMethods.wtd_reliability_poll_outcomes(handle, p, (UIntPtr)sizeof(ReliableResult), (UIntPtr)results.Length, out n));
            return (int)n;
        }

        /// <summary>Installs callbacks (both null removes them); they run on wtd threads.</summary>
        public void SetCallbacks(ReliableMessageHandler onMessage, ReliableOutcomeHandler onOutcome)
        {
            // The managed lock is not held across the native call: replacing callbacks waits
            // for a running callback, which may itself call into this object.
            lock (handle)
            {
                this.onMessage = onMessage;
                this.onOutcome = onOutcome;
                if (handle.CallbackState == IntPtr.Zero && (onMessage != null || onOutcome != null))
                    handle.CallbackState = Callbacks.NewState(this);
            }
            var cb = new NativeReliabilityCallbacks
            {
                StructSize = (uint)sizeof(NativeReliabilityCallbacks),
                OnMessage = onMessage != null ? Callbacks.ReliableMessagePtr : IntPtr.Zero,
                OnOutcome = onOutcome != null ? Callbacks.ReliableOutcomePtr : IntPtr.Zero,
                UserData = handle.CallbackState,
            };
            bool none = onMessage == null && onOutcome == null;
            WtdException.Check(NativeMethods.wtd_reliability_set_callbacks(handle, none ? null : &cb));
        }

        internal void DeliverMessage(IntPtr data, int len)
        {
            ReliableMessageHandler h = onMessage;
            if (h == null) return;
            if (scratch.Length < len) scratch = new byte[Math.Max(len, 1500)];
            if (len > 0) Marshal.Copy(data, scratch, 0, len);
            h(this, scratch, len);
        }

        internal void DeliverOutcome(uint seq, ReliableOutcome outcome)
        {
            ReliableOutcomeHandler h = onOutcome;
            if (h != null) h(this, seq, outcome);
        }

        /// <summary>Counters.</summary>
        public ReliabilityStats Stats
        {
            get
            {
                ReliabilityStats s = new ReliabilityStats(); s.StructSize = (uint)sizeof(ReliabilityStats);
                WtdException.Check(NativeMethods.wtd_reliability_get_stats(handle, ref s));
                return s;
            }
        }

        /// <summary>Detaches the layer (pending messages give up). Idempotent.</summary>
        public void Close() { WtdException.Check(NativeMethods.wtd_reliability_close(handle)); }

        /// <summary>Closes and frees. Safe to call twice.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref disposed, 1) != 0) return;
            handle.Dispose();
        }
    }

    /// <summary>Turns objects into datagram bodies and back for WtdStructured.</summary>
    public interface IStructuredSerializer
    {
        /// <summary>Writes `obj` of `typeId` into buffer[0..buffer.Length] (its length is the
        /// largest body that fits a datagram); returns the byte count, or -1 on failure.</summary>
        int Serialize(ushort typeId, object obj, byte[] buffer);

        /// <summary>Builds the object of `typeId` from data[0..length] (valid only during the
        /// call); null or an exception = failure (the datagram is consumed and counted).</summary>
        object Deserialize(ushort typeId, byte[] data, int length);
    }

    /// <summary>Structured datagrams: u16 big-endian type id || serializer output per datagram
    /// (byte-compatible with pywebtransport's StructuredDatagramTransport).</summary>
    public sealed unsafe class WtdStructured : IDisposable
    {
        private readonly StructuredHandle handle = new StructuredHandle();
        private readonly IStructuredSerializer serializer;
        [ThreadStatic] private static byte[] scratch;
        private int disposed;

        /// <summary>Creates a structured transport over `transport` (do not also read plain
        /// datagrams from it).</summary>
        public WtdStructured(WtdTransport transport, IStructuredSerializer serializer)
        {
            if (transport == null) throw new ArgumentNullException("transport");
            if (serializer == null) throw new ArgumentNullException("serializer");
            this.serializer = serializer;
            NativeStructuredOptions n = new NativeStructuredOptions(); n.StructSize = (uint)sizeof(NativeStructuredOptions);
            WtdException.Check(NativeMethods.wtd_structured_options_default(ref n));
            IntPtr state = Callbacks.NewState(this);
            n.Serialize = Callbacks.SerializePtr;
            n.Deserialize = Callbacks.DeserializePtr;
            n.UserData = state;
            IntPtr s;
            int rc = NativeMethods.wtd_structured_new(transport.Handle, ref n, out s);
            if (rc != 0)
            {
                WtdException e = WtdException.FromCode(rc, -1);
                Callbacks.FreeState(state, true);
                throw e;
            }
            handle.Attach(s);
            handle.CallbackState = state;
        }

        /// <summary>Registers a type id (Serialization errors for unregistered ids).</summary>
        public void Register(ushort typeId) { WtdException.Check(NativeMethods.wtd_structured_register(handle, typeId)); }

        /// <summary>Serializes and queues `obj` (like WtdTransport.Send with timeout -1).</summary>
        public void SendObject(ushort typeId, object obj, int priority = 0, uint ttlMs = 0)
        {
            GCHandle h = GCHandle.Alloc(obj);
            try
            {
                WtdException.Check(NativeMethods.wtd_structured_send_obj(handle, typeId, GCHandle.ToIntPtr(h), priority, ttlMs));
            }
            finally { h.Free(); }
        }

        /// <summary>Receives and deserializes the next object (timeoutMs -1 forever, 0 not at all).</summary>
        public object ReceiveObject(int timeoutMs, out ushort typeId)
        {
            IntPtr obj;
            WtdException.Check(NativeMethods.wtd_structured_receive_obj(handle, out typeId, out obj, timeoutMs));
            GCHandle h = GCHandle.FromIntPtr(obj);
            object o = h.Target;
            h.Free();
            return o;
        }

        internal int NativeSerialize(ushort typeId, IntPtr obj, IntPtr buf, long cap, IntPtr outLen)
        {
            object o = obj == IntPtr.Zero ? null : GCHandle.FromIntPtr(obj).Target;
            int c = (int)Math.Min(cap, 1 << 20);
            byte[] s = scratch;
            if (s == null || s.Length != c) scratch = s = new byte[c];
            int n = serializer.Serialize(typeId, o, s);
            if (n < 0 || n > c) return 1;
            Marshal.Copy(s, 0, buf, n);
            *(UIntPtr*)outLen = (UIntPtr)n;
            return 0;
        }

        internal int NativeDeserialize(ushort typeId, IntPtr data, int len, IntPtr outObj)
        {
            byte[] d = new byte[len];
            if (len > 0) Marshal.Copy(data, d, 0, len);
            object o = serializer.Deserialize(typeId, d, len);
            if (o == null) return 1;
            *(IntPtr*)outObj = GCHandle.ToIntPtr(GCHandle.Alloc(o));
            return 0;
        }

        /// <summary>True once the underlying transport is closed.</summary>
        public bool IsClosed
        {
            get
            {
                byte b;
                WtdException.Check(NativeMethods.wtd_structured_is_closed(handle, out b));
                return b != 0;
            }
        }

        /// <summary>Closes the underlying transport without flushing.</summary>
        public void Close() { WtdException.Check(NativeMethods.wtd_structured_close(handle)); }

        /// <summary>Frees the handle (the transport stays open). Safe to call twice.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref disposed, 1) != 0) return;
            handle.Dispose();
        }
    }

    /// <summary>Sends one datagram to a set of transports (payload copied once).</summary>
    public sealed unsafe class WtdBroadcaster : IDisposable
    {
        private readonly BroadcasterHandle handle = new BroadcasterHandle();

        /// <summary>Creates an empty set.</summary>
        public WtdBroadcaster()
        {
            IntPtr b;
            WtdException.Check(NativeMethods.wtd_broadcaster_new(out b));
            handle.Attach(b);
        }

        /// <summary>Adds a transport (twice is a no-op).</summary>
        public void Add(WtdTransport t) { WtdException.Check(NativeMethods.wtd_broadcaster_add(handle, t.Handle)); }

        /// <summary>Removes a transport.</summary>
        public void Remove(WtdTransport t) { WtdException.Check(NativeMethods.wtd_broadcaster_remove(handle, t.Handle)); }

        /// <summary>Transports in the set (closed ones pruned first).</summary>
        public int Count
        {
            get
            {
                UIntPtr n;
                WtdException.Check(NativeMethods.wtd_broadcaster_count(handle, out n));
                return (int)n;
            }
        }

        /// <summary>Queues data on every transport without waiting; returns how many accepted
        /// it, and the refused / pruned counts in the out parameters.</summary>
        public int Broadcast(byte[] data, int offset, int count, int priority, uint ttlMs, out int failed, out int pruned)
        {
            Buffers.CheckRange(data, offset, count);
            NativeBroadcastResult r = new NativeBroadcastResult(); r.StructSize = (uint)sizeof(NativeBroadcastResult);
            int rc;
            fixed (byte* p = data) rc = NativeMethods.wtd_broadcaster_broadcast(handle, p + offset, (UIntPtr)count, priority, ttlMs, ref r);
            WtdException.Check(rc);
            failed = (int)r.Failed;
            pruned = (int)r.Pruned;
            return (int)r.Accepted;
        }

        /// <summary>Frees the set (transports stay open).</summary>
        public void Dispose() { handle.Dispose(); }
    }
}
