// Server.cs — a listening WebTransport server: sessions are taken with Accept / TryAccept /
// AcceptAsync from wtd's accept queue; AcceptAsync waits on the server's readiness descriptor.
using System;
using System.Threading;
using System.Threading.Tasks;

namespace Wtd
{
    /// <summary>A session request shown to ServerOptions.OnRequest.</summary>
    public sealed class SessionRequest
    {
        /// <summary>:path with query.</summary>
        public string Path { get; internal set; }
        /// <summary>:authority.</summary>
        public string Authority { get; internal set; }
        /// <summary>origin header, or null.</summary>
        public string Origin { get; internal set; }
        /// <summary>Draft the client speaks.</summary>
        public WtdDraft Draft { get; internal set; }
    }

    /// <summary>Server options; unset fields keep wtd's defaults.</summary>
    public sealed class ServerOptions
    {
        /// <summary>UDP port; 0 picks a free one (read WtdServer.Port). Default 4433.</summary>
        public ushort Port = 4433;
        /// <summary>Address to bind ("0.0.0.0", "::", "127.0.0.1"); null = 0.0.0.0.</summary>
        public string Host;
        /// <summary>PEM certificate chain; null = a generated 13-day self-signed certificate.</summary>
        public string CertFile;
        /// <summary>PEM private key (with CertFile).</summary>
        public string KeyFile;
        /// <summary>QUIC idle timeout, ms (0 = default).</summary>
        public uint IdleTimeoutMs;
        /// <summary>Keep-alive, ms (null = default; 0 = off).</summary>
        public uint? KeepAliveMs;
        /// <summary>Per-session receive queue in datagrams (0 = default).</summary>
        public uint IncomingQueueCapacity;
        /// <summary>Sessions waiting for Accept before 503s (0 = default 128).</summary>
        public uint AcceptQueueCapacity;
        /// <summary>Connections at once (0 = default).</summary>
        public uint MaxConnections;
        /// <summary>Connections per IP (0 = default).</summary>
        public uint MaxConnectionsPerIp;
        /// <summary>Accept/refuse hook: return 200 to accept, or an HTTP status. Runs on a wtd
        /// thread; must not block. An exception refuses with 500.</summary>
        public Func<SessionRequest, int> OnRequest;
    }

    /// <summary>A listening WebTransport server. Dispose closes it (GOAWAY, sessions closed).</summary>
    public sealed unsafe partial class WtdServer : IDisposable
    {
        private readonly ServerHandle handle = new ServerHandle();
        private Func<SessionRequest, int> onRequest;
        private int readinessFd = -1;
        private int disposed;

        private WtdServer() { }

        /// <summary>The SafeHandle (for advanced interop).</summary>
        public ServerHandle Handle { get { return handle; } }

        /// <summary>Creates a server and starts listening.</summary>
        public static WtdServer Listen(ServerOptions options = null)
        {
            options = options ?? new ServerOptions();
            var server = new WtdServer();
            server.onRequest = options.OnRequest;
            using (var strings = new NativeStrings())
            {
                NativeServerOptions n = new NativeServerOptions(); n.StructSize = (uint)sizeof(NativeServerOptions);
                WtdException.Check(NativeMethods.wtd_server_options_default(ref n));
                n.Port = options.Port;
                n.Host = strings.Add(options.Host);
                n.CertFile = strings.Add(options.CertFile);
                n.KeyFile = strings.Add(options.KeyFile);
                if (options.IdleTimeoutMs != 0) n.IdleTimeoutMs = options.IdleTimeoutMs;
                if (options.KeepAliveMs.HasValue) n.KeepAliveMs = options.KeepAliveMs.Value;
                if (options.IncomingQueueCapacity != 0) n.IncomingQueueCapacity = options.IncomingQueueCapacity;
                if (options.AcceptQueueCapacity != 0) n.AcceptQueueCapacity = options.AcceptQueueCapacity;
                if (options.MaxConnections != 0) n.MaxConnections = options.MaxConnections;
                if (options.MaxConnectionsPerIp != 0) n.MaxConnectionsPerIp = options.MaxConnectionsPerIp;
                IntPtr state = IntPtr.Zero;
                if (options.OnRequest != null)
                {
                    state = Callbacks.NewState(server);
                    n.OnRequest = Callbacks.RequestPtr;
                    n.UserData = state;
                }
                IntPtr s;
                int rc = NativeMethods.wtd_server_new(ref n, out s);
                if (rc != 0)
                {
                    WtdException e = WtdException.FromCode(rc, -1);
                    if (state != IntPtr.Zero) Callbacks.FreeState(state, true);
                    throw e;
                }
                server.handle.Attach(s);
                server.handle.CallbackState = state;
            }
            return server;
        }

        internal ushort DecideRequest(IntPtr req)
        {
            Func<SessionRequest, int> f = onRequest;
            if (f == null) return 200;
            NativeSessionRequest* r = (NativeSessionRequest*)req;
            var sr = new SessionRequest
            {
                Path = Utf8.FromNative(r->Path),
                Authority = Utf8.FromNative(r->Authority),
                Origin = Utf8.FromNative(r->Origin),
                Draft = (WtdDraft)r->Draft,
            };
            int status = f(sr);
            return status < 100 || status > 999 ? (ushort)500 : (ushort)status;
        }

        /// <summary>The UDP port.</summary>
        public int Port
        {
            get
            {
                ushort p;
                WtdException.Check(NativeMethods.wtd_server_port(handle, out p));
                return p;
            }
        }

        /// <summary>SHA-256 of the certificate (32 bytes).</summary>
        public byte[] CertificateHash
        {
            get
            {
                var b = new byte[32];
                fixed (byte* p = b) WtdException.Check(NativeMethods.wtd_server_cert_hash(handle, p));
                return b;
            }
        }

        /// <summary>SHA-256 of the certificate as 64 lowercase hex characters.</summary>
        public string CertificateHashHex
        {
            get
            {
                byte* buf = stackalloc byte[65];
                WtdException.Check(NativeMethods.wtd_server_cert_hash_hex(handle, buf, (UIntPtr)65));
                return Utf8.FromNative((IntPtr)buf);
            }
        }

        /// <summary>Protection counters.</summary>
        public ServerStats Stats
        {
            get
            {
                ServerStats s = new ServerStats(); s.StructSize = (uint)sizeof(ServerStats);
                WtdException.Check(NativeMethods.wtd_server_get_stats(handle, ref s));
                return s;
            }
        }

        /// <summary>Takes the next session, waiting up to timeoutMs (-1 forever). Throws
        /// Timeout / WouldBlock when none came, Closed after Close.</summary>
        public WtdSession Accept(int timeoutMs)
        {
            IntPtr s;
            WtdException.Check(NativeMethods.wtd_server_accept(handle, out s, timeoutMs));
            return new WtdSession(s);
        }

        /// <summary>Non-blocking accept: null when no session waits.</summary>
        public WtdSession TryAccept()
        {
            IntPtr s;
            int rc = NativeMethods.wtd_server_accept(handle, out s, 0);
            if (rc == (int)WtdResult.WouldBlock) return null;
            WtdException.Check(rc);
            return new WtdSession(s);
        }

        /// <summary>The readiness descriptor (readable while a session waits or after close).</summary>
        public int ReadinessFd
        {
            get
            {
                if (readinessFd >= 0) return readinessFd;
                int fd;
                WtdException.Check(NativeMethods.wtd_server_readiness_fd(handle, out fd));
                readinessFd = fd;
                return fd;
            }
        }

        /// <summary>Stops accepting, GOAWAY, closes every session (waits up to ~2 s). Idempotent.</summary>
        public void Close()
        {
            WtdException.Check(NativeMethods.wtd_server_close(handle));
        }

        /// <summary>Closes and frees the server. Safe to call twice.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref disposed, 1) != 0) return;
            if (!handle.IsClosed && !handle.IsInvalid) NativeMethods.wtd_server_close(handle);
            if (readinessFd >= 0) ReadinessWaiter.Release(readinessFd);
            handle.Dispose();
        }
    }

    // The async waits live in a part without `unsafe` (await is not allowed in unsafe code).
    public sealed partial class WtdServer
    {
        /// <summary>Accepts without blocking a thread (waits on the readiness descriptor).
        /// Throws WtdException(Closed) after Close/Dispose.</summary>
        public async Task<WtdSession> AcceptAsync(CancellationToken ct = default(CancellationToken))
        {
            int fd = ReadinessFd;
            while (true)
            {
                WtdSession s;
                try { s = TryAccept(); }
                catch (ObjectDisposedException) when (Volatile.Read(ref disposed) != 0) { throw DisposedWhileWaiting(); }
                if (s != null) return s;
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
