// Session.cs — a WebTransport session (client or server side) and the client options.
using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace Wtd
{
    /// <summary>How the client checks the server certificate (wtd_verify_mode).</summary>
    public enum VerifyMode
    {
        /// <summary>The operating system's roots (default).</summary>
        SystemRoots = 0,
        /// <summary>Only the CAs in CaFile.</summary>
        CaFile = 1,
        /// <summary>Only certificates whose SHA-256 is in CertificateHashes.</summary>
        CertificateHashes = 2,
        /// <summary>No verification at all: tests only.</summary>
        NoneDangerous = 3,
    }

    /// <summary>Client options; unset fields keep wtd's defaults.</summary>
    public sealed class ClientOptions
    {
        /// <summary>Certificate verification.</summary>
        public VerifyMode Verify = VerifyMode.SystemRoots;
        /// <summary>PEM CA file for VerifyMode.CaFile.</summary>
        public string CaFile;
        /// <summary>32-byte SHA-256 hashes for VerifyMode.CertificateHashes.</summary>
        public readonly List<byte[]> CertificateHashes = new List<byte[]>();
        /// <summary>Handshake + session setup limit, ms (0 = default 10000).</summary>
        public uint ConnectTimeoutMs;
        /// <summary>QUIC idle timeout, ms (0 = default 30000).</summary>
        public uint IdleTimeoutMs;
        /// <summary>Keep-alive interval, ms (null = default 5000; 0 = off).</summary>
        public uint? KeepAliveMs;
        /// <summary>Receive-queue capacity in datagrams (0 = default 1024).</summary>
        public uint IncomingQueueCapacity;
        /// <summary>origin header, or null.</summary>
        public string Origin;

        /// <summary>Options pinning one certificate hash given as 64 hex characters (what
        /// wtd_echo_server prints and browsers pass in serverCertificateHashes).</summary>
        public static ClientOptions PinnedHash(string hex)
        {
            var o = new ClientOptions { Verify = VerifyMode.CertificateHashes };
            o.CertificateHashes.Add(ParseHex(hex));
            return o;
        }

        /// <summary>Parses 64 hex characters into 32 bytes.</summary>
        public static byte[] ParseHex(string hex)
        {
            if (hex == null || hex.Length != 64) throw new ArgumentException("a SHA-256 hash is 64 hex characters");
            var b = new byte[32];
            for (int i = 0; i < 32; i++) b[i] = Convert.ToByte(hex.Substring(2 * i, 2), 16);
            return b;
        }

        internal unsafe NativeClientOptions ToNative(NativeStrings strings)
        {
            NativeClientOptions n = new NativeClientOptions(); n.StructSize = (uint)sizeof(NativeClientOptions);
            WtdException.Check(NativeMethods.wtd_client_options_default(ref n));
            n.Verify = (uint)Verify;
            n.CaFile = strings.Add(CaFile);
            if (CertificateHashes.Count > 0)
            {
                var all = new byte[32 * CertificateHashes.Count];
                for (int i = 0; i < CertificateHashes.Count; i++)
                {
                    byte[] h = CertificateHashes[i];
                    if (h == null || h.Length != 32) throw new ArgumentException("each certificate hash must be 32 bytes");
                    Array.Copy(h, 0, all, 32 * i, 32);
                }
                n.CertHashes = strings.AddBytes(all, false);
                n.CertHashCount = (UIntPtr)CertificateHashes.Count;
            }
            if (ConnectTimeoutMs != 0) n.ConnectTimeoutMs = ConnectTimeoutMs;
            if (IdleTimeoutMs != 0) n.IdleTimeoutMs = IdleTimeoutMs;
            if (KeepAliveMs.HasValue) n.KeepAliveMs = KeepAliveMs.Value;
            if (IncomingQueueCapacity != 0) n.IncomingQueueCapacity = IncomingQueueCapacity;
            n.Origin = strings.Add(Origin);
            return n;
        }
    }

    /// <summary>A datagram delivered to a callback: buffer[0..length] is valid only during the
    /// call (the buffer is reused for the next datagram: copy what you keep).</summary>
    public delegate void SessionDatagramHandler(WtdSession session, byte[] buffer, int length);

    /// <summary>The session closed with `code` and `reason`.</summary>
    public delegate void SessionClosedHandler(WtdSession session, uint code, string reason);

    /// <summary>A WebTransport session. Thread-safe; Dispose closes (code 0) and frees it.
    /// Receive into caller buffers: Receive/TryReceive/ReceiveAsync/ReceiveBatch never allocate
    /// per datagram (ReceiveAsync allocates its Task only when it has to wait).</summary>
    public sealed unsafe partial class WtdSession : IDisposable
    {
        private readonly SessionHandle handle;
        private int readinessFd = -1;
        private SessionDatagramHandler onDatagram;
        private SessionClosedHandler onClosed;
        private byte[] scratch = new byte[0];
        private int disposed;

        internal WtdSession(IntPtr native)
        {
            handle = new SessionHandle();
            handle.Attach(native);
        }

        /// <summary>The SafeHandle (for advanced interop).</summary>
        public SessionHandle Handle { get { return handle; } }

        /// <summary>Connects to `url` (https://host:port/path), blocking up to the connect
        /// timeout. Not from a wtd callback thread (WtdResult.InvalidState).</summary>
        public static WtdSession Connect(string url, ClientOptions options = null)
        {
            if (url == null) throw new ArgumentNullException("url");
            using (var strings = new NativeStrings())
            {
                NativeClientOptions n = (options ?? new ClientOptions()).ToNative(strings);
                IntPtr u = strings.Add(url);
                IntPtr s;
                WtdException.Check(NativeMethods.wtd_client_connect(u, ref n, out s));
                return new WtdSession(s);
            }
        }

        /// <summary>Connect on a thread-pool thread (the native connect blocks; the thread is
        /// held for the handshake only).</summary>
        public static Task<WtdSession> ConnectAsync(string url, ClientOptions options = null)
        {
            return Task.Run(() => Connect(url, options));
        }

        /// <summary>Opens another session to `path` on the same connection (blocking).</summary>
        public WtdSession OpenSibling(string path)
        {
            using (var strings = new NativeStrings())
            {
                IntPtr s;
                WtdException.Check(NativeMethods.wtd_session_open_sibling(handle, strings.Add(path), out s));
                return new WtdSession(s);
            }
        }

        // ---- send ----

        /// <summary>Sends data[offset..offset+count] now, without blocking; throws on failure
        /// (WouldBlock when QUIC's buffer is full, TooLarge, Closed, ...).</summary>
        public void Send(byte[] data, int offset, int count)
        {
            WtdResult r = TrySend(data, offset, count);
            if (r != WtdResult.Ok) throw WtdException.FromCode((int)r, -1);
        }

        /// <summary>Sends the whole array.</summary>
        public void Send(byte[] data)
        {
            if (data == null) throw new ArgumentNullException("data");
            Send(data, 0, data.Length);
        }

        /// <summary>Send without exceptions: returns the result code (the message is in
        /// wtd_last_error_message on this thread until the next wtd call).</summary>
        public WtdResult TrySend(byte[] data, int offset, int count)
        {
            Buffers.CheckRange(data, offset, count);
            fixed (byte* p = data)
                return (WtdResult)NativeMethods.wtd_session_send(handle, p + offset, (UIntPtr)count);
        }

#if !WTD_NO_SPAN
        /// <summary>Sends a span now (throws on failure).</summary>
        public void Send(ReadOnlySpan<byte> data)
        {
            WtdResult r = TrySend(data);
            if (r != WtdResult.Ok) throw WtdException.FromCode((int)r, -1);
        }

        /// <summary>Sends a span; returns the result code.</summary>
        public WtdResult TrySend(ReadOnlySpan<byte> data)
        {
            fixed (byte* p = &System.Runtime.InteropServices.MemoryMarshal.GetReference(data))
                return (WtdResult)NativeMethods.wtd_session_send(handle, p, (UIntPtr)data.Length);
        }
#endif

        // ---- receive ----

        /// <summary>Receives the next datagram into buffer[offset..offset+count], waiting up to
        /// timeoutMs (-1 = forever, 0 = not at all); returns its length. Throws WtdException:
        /// Timeout / WouldBlock when nothing came, Closed when closed and drained,
        /// BufferTooSmall (RequiredLength set; the datagram stays queued).</summary>
        public int Receive(byte[] buffer, int offset, int count, int timeoutMs)
        {
            Buffers.CheckRange(buffer, offset, count);
            UIntPtr len;
            int rc;
            fixed (byte* p = buffer)
                rc = NativeMethods.wtd_session_receive(handle, p + offset, (UIntPtr)count, out len, timeoutMs);
            WtdException.Check(rc, (long)(ulong)len);
            return (int)len;
        }

        /// <summary>Non-blocking receive: false when nothing is queued; throws on other errors.</summary>
        public bool TryReceive(byte[] buffer, int offset, int count, out int length)
        {
            Buffers.CheckRange(buffer, offset, count);
            UIntPtr len;
            int rc;
            fixed (byte* p = buffer)
                rc = NativeMethods.wtd_session_receive(handle, p + offset, (UIntPtr)count, out len, 0);
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
                rc = NativeMethods.wtd_session_receive(handle, p, (UIntPtr)buffer.Length, out len, timeoutMs);
            WtdException.Check(rc, (long)(ulong)len);
            return (int)len;
        }

        /// <summary>Non-blocking receive into a span.</summary>
        public bool TryReceive(Span<byte> buffer, out int length)
        {
            UIntPtr len;
            int rc;
            fixed (byte* p = &System.Runtime.InteropServices.MemoryMarshal.GetReference(buffer))
                rc = NativeMethods.wtd_session_receive(handle, p, (UIntPtr)buffer.Length, out len, 0);
            length = 0;
            if (rc == (int)WtdResult.WouldBlock) return false;
            WtdException.Check(rc, (long)(ulong)len);
            length = (int)len;
            return true;
        }
#endif

        /// <summary>Batch receive: waits up to timeoutMs (0 = not at all, -1 = forever) for the
        /// first datagram, then takes what is queued, up to batch.Slots; returns the count (0
        /// when nothing came). Throws Closed once closed and drained, BufferTooSmall
        /// (RequiredLength) when the first datagram does not fit a slot.</summary>
        public int ReceiveBatch(DatagramBatch batch, int timeoutMs = 0)
        {
            if (batch == null) throw new ArgumentNullException("batch");
            UIntPtr n;
            int rc = NativeMethods.wtd_session_receive_batch(handle, batch.Native, (UIntPtr)batch.Slots, out n, timeoutMs);
            batch.SetCount(0);
            if (rc == (int)WtdResult.WouldBlock || rc == (int)WtdResult.Timeout) return 0;
            WtdException.Check(rc, rc == (int)WtdResult.BufferTooSmall ? (long)(ulong)batch.Native[0].Len : -1);
            batch.SetCount((int)n);
            return (int)n;
        }

        /// <summary>The readiness descriptor (readable while a datagram is queued or the session
        /// is closed). Owned by wtd: do not read or close it.</summary>
        public int ReadinessFd
        {
            get
            {
                if (readinessFd >= 0) return readinessFd;
                int fd;
                WtdException.Check(NativeMethods.wtd_session_readiness_fd(handle, out fd));
                readinessFd = fd;
                return fd;
            }
        }

        // ---- callbacks ----

        /// <summary>Installs datagram / close callbacks (both null removes them). With a
        /// datagram callback, datagrams go to it instead of the receive queue. They run on a
        /// wtd thread, never two at once per connection; blocking wtd calls inside them fail
        /// with InvalidState. Exceptions they throw go to WtdLibrary.CallbackException. The
        /// session stays reachable (not collected) while callbacks are set: Dispose it.</summary>
        public void SetCallbacks(SessionDatagramHandler onDatagram, SessionClosedHandler onClosed)
        {
            // The managed lock is not held across the native call: replacing callbacks waits
            // for a running callback, which may itself call into this object.
            lock (handle)
            {
                this.onDatagram = onDatagram;
                this.onClosed = onClosed;
                if (handle.CallbackState == IntPtr.Zero && (onDatagram != null || onClosed != null))
                    handle.CallbackState = Callbacks.NewState(this);
            }
            NativeSessionCallbacks cb = new NativeSessionCallbacks();
            cb.StructSize = (uint)sizeof(NativeSessionCallbacks);
            cb.OnDatagram = onDatagram != null ? Callbacks.SessionDatagramPtr : IntPtr.Zero;
            cb.OnClosed = onClosed != null ? Callbacks.SessionClosedPtr : IntPtr.Zero;
            cb.UserData = handle.CallbackState;
            bool none = onDatagram == null && onClosed == null;
            WtdException.Check(NativeMethods.wtd_session_set_callbacks(handle, none ? null : &cb));
        }

        internal void DeliverDatagram(IntPtr data, int len)
        {
            SessionDatagramHandler h = onDatagram;
            if (h == null) return;
            if (scratch.Length < len) scratch = new byte[Math.Max(len, 1500)];
            if (len > 0) System.Runtime.InteropServices.Marshal.Copy(data, scratch, 0, len);
            h(this, scratch, len);
        }

        internal void DeliverClosed(uint code, string reason)
        {
            SessionClosedHandler h = onClosed;
            if (h != null) h(this, code, reason);
        }

        // ---- state ----

        /// <summary>Closes with an application code and reason (never blocks; idempotent; wakes
        /// blocked receivers).</summary>
        public void Close(uint code = 0, string reason = null)
        {
            using (var strings = new NativeStrings())
                WtdException.Check(NativeMethods.wtd_session_close(handle, code, strings.Add(reason)));
        }

        /// <summary>True once closed by either side.</summary>
        public bool IsClosed
        {
            get
            {
                byte b;
                WtdException.Check(NativeMethods.wtd_session_is_closed(handle, out b));
                return b != 0;
            }
        }

        /// <summary>True when the peer asked to wind the session down.</summary>
        public bool IsDraining
        {
            get
            {
                byte b;
                WtdException.Check(NativeMethods.wtd_session_is_draining(handle, out b));
                return b != 0;
            }
        }

        /// <summary>After close: the close code and reason; false while open.</summary>
        public bool TryGetCloseInfo(out uint code, out string reason)
        {
            UIntPtr need;
            int rc = NativeMethods.wtd_session_close_info(handle, out code, null, UIntPtr.Zero, out need);
            reason = null;
            if (rc == (int)WtdResult.InvalidState) return false;
            if (rc != 0 && rc != (int)WtdResult.BufferTooSmall) throw WtdException.FromCode(rc, -1);
            var buf = new byte[(int)need + 1];
            UIntPtr len;
            fixed (byte* p = buf)
            {
                WtdException.Check(NativeMethods.wtd_session_close_info(handle, out code, p, (UIntPtr)buf.Length, out len));
                reason = Utf8.FromNative(p, (int)len);
            }
            return true;
        }

        /// <summary>Waits until closed (close notice delivered), up to timeoutMs (-1 forever);
        /// false on timeout.</summary>
        public bool WaitClosed(int timeoutMs)
        {
            int rc = NativeMethods.wtd_session_wait_closed(handle, timeoutMs);
            if (rc == (int)WtdResult.Timeout) return false;
            WtdException.Check(rc);
            return true;
        }

        /// <summary>Session id (equal on both ends).</summary>
        public ulong Id
        {
            get
            {
                ulong id;
                WtdException.Check(NativeMethods.wtd_session_id(handle, out id));
                return id;
            }
        }

        /// <summary>The negotiated draft.</summary>
        public WtdDraft Draft
        {
            get
            {
                uint d;
                WtdException.Check(NativeMethods.wtd_session_draft(handle, out d));
                return (WtdDraft)d;
            }
        }

        /// <summary>The request path (with query).</summary>
        public string Path { get { return CopyString(false); } }

        /// <summary>The request origin ("" when none).</summary>
        public string Origin { get { return CopyString(true); } }

        private string CopyString(bool origin)
        {
            byte[] buf = new byte[256];
            while (true)
            {
                UIntPtr len;
                int rc;
                fixed (byte* p = buf)
                {
                    rc = origin ? NativeMethods.wtd_session_origin(handle, p, (UIntPtr)buf.Length, out len)
                                : NativeMethods.wtd_session_path(handle, p, (UIntPtr)buf.Length, out len);
                    if (rc == 0) return Utf8.FromNative(p, (int)len);
                }
                if (rc != (int)WtdResult.BufferTooSmall) throw WtdException.FromCode(rc, -1);
                buf = new byte[(int)len + 1];
            }
        }

        /// <summary>Largest payload one datagram can carry now.</summary>
        public int MaxDatagramSize
        {
            get
            {
                UIntPtr n;
                WtdException.Check(NativeMethods.wtd_session_max_datagram_size(handle, out n));
                return (int)n;
            }
        }

        /// <summary>The session's counters.</summary>
        public SessionStats Stats
        {
            get
            {
                SessionStats s = new SessionStats(); s.StructSize = (uint)sizeof(SessionStats);
                WtdException.Check(NativeMethods.wtd_session_get_stats(handle, ref s));
                return s;
            }
        }

        /// <summary>Closes (code 0 unless closed before), wakes blocked calls, frees the
        /// handle once no call is using it. Safe to call twice.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref disposed, 1) != 0) return;
            // Close first: blocked receivers and ReceiveAsync waiters wake and see Closed; then
            // stop watching the descriptor; then free (after the last running call returns).
            if (!handle.IsClosed && !handle.IsInvalid)
                NativeMethods.wtd_session_close(handle, 0, IntPtr.Zero);
            if (readinessFd >= 0) ReadinessWaiter.Release(readinessFd);
            handle.Dispose();
        }
    }

    // The async waits live in a part without `unsafe` (await is not allowed in unsafe code).
    public sealed partial class WtdSession
    {
        /// <summary>Receives the next datagram without blocking a thread: waits on the
        /// session's readiness descriptor (one shared poll thread for all sessions). Throws
        /// WtdException(Closed) when the session closed and is drained, OperationCanceledException
        /// on cancellation.</summary>
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

        /// <summary>Waits (readiness, no thread) until at least one datagram is queued, then
        /// ReceiveBatch.</summary>
        public async Task<int> ReceiveBatchAsync(DatagramBatch batch, CancellationToken ct = default(CancellationToken))
        {
            int fd = ReadinessFd;
            while (true)
            {
                int n;
                try { n = ReceiveBatch(batch); }
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
