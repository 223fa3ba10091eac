// Core.cs — result codes, WtdException, the SafeHandle base, UTF-8 helpers and the library-wide
// calls (version, runtime threads and mode, polling, shutdown, logging).
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Wtd
{
    /// <summary>wtd_result: the same integer values on every OS.</summary>
    public enum WtdResult
    {
        /// <summary>Success.</summary>
        Ok = 0,
        /// <summary>A NULL pointer, an out-of-range value or a malformed string.</summary>
        InvalidArgument = 1,
        /// <summary>The handle is closed.</summary>
        Closed = 2,
        /// <summary>The operation did not complete within its timeout.</summary>
        Timeout = 3,
        /// <summary>Nothing to receive, or no room to send right now.</summary>
        WouldBlock = 4,
        /// <summary>The datagram is larger than the maximum datagram size.</summary>
        TooLarge = 5,
        /// <summary>The caller's buffer is too small (see WtdException.RequiredLength).</summary>
        BufferTooSmall = 6,
        /// <summary>TLS setup or certificate verification failed.</summary>
        Tls = 7,
        /// <summary>The QUIC connection could not be established or was lost.</summary>
        Connection = 8,
        /// <summary>The peer refused the WebTransport session.</summary>
        Rejected = 9,
        /// <summary>The peer violated HTTP/3 or WebTransport.</summary>
        Protocol = 10,
        /// <summary>An operating-system I/O error.</summary>
        Io = 11,
        /// <summary>A payload could not be serialized or parsed.</summary>
        Serialization = 12,
        /// <summary>The peer does not support what was asked.</summary>
        NotSupported = 13,
        /// <summary>Not allowed now (e.g. a blocking call from a callback thread).</summary>
        InvalidState = 14,
        /// <summary>A panic was caught inside the library.</summary>
        Panic = 15,
        /// <summary>An internal invariant failed.</summary>
        Internal = 16,
    }

    /// <summary>The WebTransport draft a session speaks (wtd_draft).</summary>
    public enum WtdDraft
    {
        /// <summary>Not known.</summary>
        Unknown = 0,
        /// <summary>draft-02 (Chromium's default).</summary>
        Draft02 = 2,
        /// <summary>draft-07.</summary>
        Draft07 = 7,
        /// <summary>draft-13.</summary>
        Draft13 = 13,
        /// <summary>draft-15.</summary>
        Draft15 = 15,
    }

    /// <summary>A failed wtd call: the result code and wtd_last_error_message, read on the
    /// calling thread right after the call.</summary>
    public class WtdException : Exception
    {
        /// <summary>The result code.</summary>
        public WtdResult Result { get; private set; }

        /// <summary>For BufferTooSmall: the size the call needed (else -1).</summary>
        public long RequiredLength { get; private set; }

        /// <summary>Creates the exception.</summary>
        public WtdException(WtdResult result, string message, long requiredLength = -1)
            : base(Compose(result, message))
        {
            Result = result;
            RequiredLength = requiredLength;
        }

        private static string Compose(WtdResult result, string message)
        {
            string name = WtdLibrary.ResultString(result);
            return string.IsNullOrEmpty(message) ? "wtd: " + name + " (" + result + ")"
                                                 : "wtd: " + name + " (" + result + "): " + message;
        }

        /// <summary>Throws for anything but Ok; the message is read now, on this thread.</summary>
        internal static void Check(int rc)
        {
            if (rc != 0) throw FromCode(rc, -1);
        }

        /// <summary>Throws for anything but Ok, carrying `required` for BufferTooSmall.</summary>
        internal static void Check(int rc, long required)
        {
            if (rc != 0) throw FromCode(rc, rc == (int)WtdResult.BufferTooSmall ? required : -1);
        }

        /// <summary>Builds the exception for `rc`, reading the per-thread message first.</summary>
        internal static WtdException FromCode(int rc, long required)
        {
            string msg = Utf8.FromNative(NativeMethods.wtd_last_error_message());
            return new WtdException((WtdResult)rc, msg, required);
        }
    }

    /// <summary>Marks a static method the native library calls back. IL2CPP (Unity) needs it on
    /// every method whose delegate is passed to native code; it matches by name, so this
    /// definition serves Unity, Mono and .NET alike.</summary>
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        /// <summary>The delegate type the method implements.</summary>
        public Type DelegateType { get; private set; }

        /// <summary>Creates the attribute.</summary>
        public MonoPInvokeCallbackAttribute(Type delegateType) { DelegateType = delegateType; }
    }

    /// <summary>UTF-8 conversions for the C API (never the platform's ANSI code page).</summary>
    internal static unsafe class Utf8
    {
        /// <summary>Decodes a NUL-terminated UTF-8 string; IntPtr.Zero gives null.</summary>
        internal static string FromNative(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            byte* b = (byte*)p;
            int n = 0;
            while (b[n] != 0) n++;
            return n == 0 ? string.Empty : Encoding.UTF8.GetString(b, n);
        }

        /// <summary>Decodes `len` UTF-8 bytes.</summary>
        internal static string FromNative(byte* p, int len)
        {
            return len <= 0 ? string.Empty : Encoding.UTF8.GetString(p, len);
        }
    }

    /// <summary>NUL-terminated UTF-8 copies of strings in unmanaged memory, freed together on
    /// Dispose (for option structs and string arguments).</summary>
    internal sealed class NativeStrings : IDisposable
    {
        private readonly List<IntPtr> blocks = new List<IntPtr>();

        /// <summary>Copies `s` (null gives IntPtr.Zero). Rejects embedded NULs.</summary>
        internal IntPtr Add(string s)
        {
            if (s == null) return IntPtr.Zero;
            if (s.IndexOf('\0') >= 0) throw new ArgumentException("string contains a NUL character");
            byte[] bytes = Encoding.UTF8.GetBytes(s);
            return AddBytes(bytes, true);
        }

        /// <summary>Copies raw bytes, optionally NUL-terminated.</summary>
        internal IntPtr AddBytes(byte[] bytes, bool nulTerminate)
        {
            IntPtr p = Marshal.AllocHGlobal(bytes.Length + (nulTerminate ? 1 : 0));
            blocks.Add(p);
            Marshal.Copy(bytes, 0, p, bytes.Length);
            if (nulTerminate) Marshal.WriteByte(p, bytes.Length, 0);
            return p;
        }

        /// <summary>Frees every copy.</summary>
        public void Dispose()
        {
            foreach (IntPtr p in blocks) Marshal.FreeHGlobal(p);
            blocks.Clear();
        }
    }

    /// <summary>Base of the wtd SafeHandles: ReleaseHandle calls the type's wtd_*_free, then
    /// releases the GCHandle the handle's callbacks use as user_data (see Callbacks: emptied at
    /// once, freed at once or after a grace period).</summary>
    public abstract class WtdHandle : SafeHandle
    {
        private IntPtr callbackState;

        /// <summary>Creates an invalid handle; the owner sets it with SetHandle.</summary>
        protected WtdHandle() : base(IntPtr.Zero, true) { }

        /// <inheritdoc/>
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        /// <summary>The type's wtd_*_free.</summary>
        protected abstract void Free(IntPtr h);

        /// <summary>True when the type's wtd_*_free returns only after any running callback of
        /// the handle has returned (when called outside a callback).</summary>
        internal virtual bool FreeWaitsForCallbacks { get { return false; } }

        /// <summary>Takes ownership of a native pointer.</summary>
        internal void Attach(IntPtr native) { SetHandle(native); }

        /// <summary>The GCHandle (as IntPtr) passed as user_data, released with the handle.</summary>
        internal IntPtr CallbackState
        {
            get { return callbackState; }
            set { callbackState = value; }
        }

        /// <inheritdoc/>
        protected override bool ReleaseHandle()
        {
            Free(handle);
            IntPtr state = Interlocked.Exchange(ref callbackState, IntPtr.Zero);
            if (state != IntPtr.Zero) Callbacks.FreeState(state, FreeWaitsForCallbacks);
            return true;
        }
    }

    /// <summary>Severity of a wtd log message.</summary>
    public enum WtdLogLevel
    {
        /// <summary>Failures.</summary>
        Error = 1,
        /// <summary>Recovered surprises.</summary>
        Warn = 2,
        /// <summary>Lifecycle events.</summary>
        Info = 3,
        /// <summary>Protocol details.</summary>
        Debug = 4,
        /// <summary>Per-packet detail.</summary>
        Trace = 5,
    }

    /// <summary>Who runs wtd's network I/O, timers and callbacks (wtd_runtime_mode).</summary>
    public enum WtdRuntimeMode
    {
        /// <summary>wtd's own threads ("wtd-rt", see SetRuntimeThreads) run everything (default).</summary>
        Threads = 0,
        /// <summary>Engine-owned: wtd starts no threads; everything runs inside
        /// <see cref="WtdLibrary.Poll"/> on the thread that calls it (and inside blocking calls
        /// while they wait).</summary>
        Poll = 1,
    }

    /// <summary>Library-wide calls.</summary>
    public static class WtdLibrary
    {
        private static Action<WtdLogLevel, string> logHandler;

        /// <summary>The native library's version string, e.g. "0.2.0".</summary>
        public static string Version { get { return Utf8.FromNative(NativeMethods.wtd_version()); } }

        /// <summary>(major &lt;&lt; 16) | (minor &lt;&lt; 8) | patch.</summary>
        public static uint VersionNumber { get { return NativeMethods.wtd_version_number(); } }

        /// <summary>Short description of a result code ("closed", ...).</summary>
        public static string ResultString(WtdResult r)
        {
            return Utf8.FromNative(NativeMethods.wtd_result_str((uint)r));
        }

        /// <summary>Worker threads of wtd's runtime (before the first server/client).</summary>
        public static void SetRuntimeThreads(uint threads)
        {
            WtdException.Check(NativeMethods.wtd_set_runtime_threads(threads));
        }

        /// <summary>Lets datagrams sent from your threads wait up to <paramref name="intervalUs"/>
        /// µs (at most 100000) so that wtd hands them to the network together, once per interval
        /// while traffic lasts, with no wake-up of a wtd thread per send. 0 (default): at once.</summary>
        public static void SetSendCoalescing(uint intervalUs)
        {
            WtdException.Check(NativeMethods.wtd_set_send_coalescing(intervalUs));
        }

        /// <summary>Chooses who runs wtd (process-wide): <see cref="WtdRuntimeMode.Threads"/>
        /// (default) or <see cref="WtdRuntimeMode.Poll"/> (engine-owned, like msquic's
        /// ExecutionPoll or GameNetworkingSockets' RunCallbacks). Call it before the first server
        /// or client is created (or after <see cref="Shutdown"/>): once the runtime runs in one
        /// mode, choosing the other throws WtdException(InvalidState); the same mode is a no-op.
        /// An unknown value throws WtdException(InvalidArgument).
        /// In Poll mode nothing happens — no datagram is read or sent, no timer fires, no
        /// callback runs, no ReceiveAsync/AcceptAsync completes — until a thread calls
        /// <see cref="Poll"/> (or a blocking call such as Connect, Accept or Receive with a
        /// timeout drives wtd while it waits).</summary>
        public static void SetRuntimeMode(WtdRuntimeMode mode)
        {
            WtdException.Check(NativeMethods.wtd_set_runtime_mode((uint)mode));
        }

        /// <summary>Runs wtd on the calling thread (<see cref="WtdRuntimeMode.Poll"/> mode):
        /// reads what arrived on the sockets, fires due timers, runs every callback that results
        /// (session, transport, reliability, request and log callbacks run here, on this thread)
        /// and sends what is queued. Returns how many application events happened during the
        /// call: datagrams that reached a session (queue or callback), sessions accepted, sessions
        /// closed (0: nothing new to read).
        /// <paramref name="timeoutMs"/> 0 (once per frame, e.g. from Unity's Update): does what is
        /// ready now and returns. &gt; 0 (a network loop, or the rest of a frame): returns as soon
        /// as something reached the application, or after the timeout; negative: no limit.
        /// Sends are queued and leave during the next Poll, so call it after the frame's sends,
        /// and at least every ~25 ms while connections are open (a longer gap shows up as
        /// round-trip time; above the idle timeout the connection closes).
        /// Throws WtdException(InvalidState) in Threads mode or from inside a wtd callback. One
        /// thread at a time drives wtd: a second concurrent Poll, or one while a blocking call
        /// runs on another thread, only waits for the events that thread processes.</summary>
        public static unsafe ulong Poll(int timeoutMs)
        {
            ulong events = 0;
            WtdException.Check(NativeMethods.wtd_poll(&events, timeoutMs));
            return events;
        }

        /// <summary>Stops wtd's runtime and the binding's readiness thread (close and dispose
        /// handles first). Idempotent; a later call starts a new runtime, so a Unity Editor can
        /// call it before every domain reload.</summary>
        public static void Shutdown()
        {
            ReadinessWaiter.Stop();
            NativeMethods.wtd_shutdown();
            Callbacks.SweepGraveyard(true);
        }

        /// <summary>Invoked with every exception a user callback threw on a wtd thread (it is
        /// caught there: nothing unwinds into native code). Handlers must not throw.</summary>
        public static event Action<Exception> CallbackException;

        private static long callbackExceptions;

        /// <summary>Exceptions user callbacks threw so far (caught and reported).</summary>
        public static long CallbackExceptionCount { get { return Interlocked.Read(ref callbackExceptions); } }

        internal static void ReportCallbackException(Exception e)
        {
            Interlocked.Increment(ref callbackExceptions);
            Action<Exception> h = CallbackException;
            if (h == null) return;
            try { h(e); } catch { /* a throwing handler must not reach native code */ }
        }

        /// <summary>Routes wtd's log to `handler` (null turns logging off). Called on wtd
        /// threads, never concurrently; must not block.</summary>
        public static unsafe void SetLogHandler(Action<WtdLogLevel, string> handler, WtdLogLevel maxLevel = WtdLogLevel.Info)
        {
            if (handler == null)
            {
                WtdException.Check(NativeMethods.wtd_log_set_callbacks(null));
                logHandler = null;
                return;
            }
            var cb = new NativeLogCallbacks
            {
                StructSize = (uint)sizeof(NativeLogCallbacks),
                MaxLevel = (uint)maxLevel,
                OnLog = Callbacks.LogPtr,
            };
            Action<WtdLogLevel, string> previous = logHandler;
            logHandler = handler;
            int rc = NativeMethods.wtd_log_set_callbacks(&cb);
            if (rc != 0)
            {
                WtdException e = WtdException.FromCode(rc, -1);
                logHandler = previous;
                throw e;
            }
        }

        /// <summary>"error", "warn", ... for a log level.</summary>
        public static string LogLevelString(WtdLogLevel level) { return Utf8.FromNative(NativeMethods.wtd_log_level_str((uint)level)); }

        internal static void DeliverLog(int level, string message)
        {
            Action<WtdLogLevel, string> h = logHandler;
            if (h != null) h((WtdLogLevel)level, message);
        }

        /// <summary>"draft-02" etc.</summary>
        public static string DraftString(WtdDraft d) { return Utf8.FromNative(NativeMethods.wtd_draft_str((uint)d)); }

        /// <summary>True when data[offset..offset+count] is a heartbeat datagram.</summary>
        public static unsafe bool IsHeartbeat(byte[] data, int offset, int count)
        {
            Buffers.CheckRange(data, offset, count);
            fixed (byte* p = data) { return NativeMethods.wtd_is_heartbeat_datagram(p + offset, (UIntPtr)count) != 0; }
        }
    }

    /// <summary>Argument checks shared by the byte[] overloads.</summary>
    internal static class Buffers
    {
        internal static void CheckRange(byte[] data, int offset, int count)
        {
            if (data == null) throw new ArgumentNullException("data");
            if (offset < 0 || count < 0 || offset > data.Length || count > data.Length - offset)
                throw new ArgumentOutOfRangeException("offset/count", "offset and count must lie inside the array");
        }
    }
}
