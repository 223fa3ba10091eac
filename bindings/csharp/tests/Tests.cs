// Tests.cs — the C# binding's test program (a console exe; Mono or .NET).
//
//   mono WtdTests.exe            (LD_LIBRARY_PATH must reach libwtd.so)
//
// Environment: WTD_ECHO_SERVER = path of examples-c/wtd_echo_server (the C echo server process
// the client tests talk to; required), WTD_LAYOUT = file of "struct size N" / "struct.field off N"
// lines printed by the C compiler (scripts/test-csharp.sh generates it from include/wtd.h;
// required), WTD_TEST_FILTER = run only tests whose name contains it.
// Every test is bounded in time. The last line is "N passed, M failed"; exit code 1 on failure.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Wtd;

namespace Wtd.Tests
{
    internal sealed class CheckFailed : Exception
    {
        public CheckFailed(string m) : base(m) { }
    }

    internal static class Program
    {
        private static int passed, failed;
        private static readonly List<string> failures = new List<string>();

        private static void Check(bool cond, string what)
        {
            if (!cond) throw new CheckFailed(what);
        }

        private static T Throws<T>(Action a, string what) where T : Exception
        {
            try { a(); }
            catch (T e) { return e; }
            catch (Exception e) { throw new CheckFailed(what + ": expected " + typeof(T).Name + ", got " + e.GetType().Name + ": " + e.Message); }
            throw new CheckFailed(what + ": expected " + typeof(T).Name + ", nothing thrown");
        }

        private static WtdException ThrowsWtd(WtdResult r, Action a, string what)
        {
            WtdException e = Throws<WtdException>(a, what);
            Check(e.Result == r, what + ": expected " + r + ", got " + e.Result + " (" + e.Message + ")");
            return e;
        }

        private static void Run(string name, int timeoutSec, Action body)
        {
            string filter = Environment.GetEnvironmentVariable("WTD_TEST_FILTER");
            if (!string.IsNullOrEmpty(filter) && name.IndexOf(filter, StringComparison.Ordinal) < 0) return;
            var sw = Stopwatch.StartNew();
            Exception error = null;
            var t = new Thread(() =>
            {
                try { body(); }
                catch (Exception e) { error = e; }
            }) { IsBackground = true, Name = "test " + name };
            t.Start();
            if (!t.Join(timeoutSec * 1000)) error = new TimeoutException("did not finish within " + timeoutSec + " s");
            if (error == null)
            {
                passed++;
                Console.WriteLine("PASS " + name + " (" + sw.ElapsedMilliseconds + " ms)");
            }
            else
            {
                failed++;
                failures.Add(name);
                Console.WriteLine("FAIL " + name + " (" + sw.ElapsedMilliseconds + " ms): " + error);
            }
        }

        private static int Main(string[] args)
        {
            Console.WriteLine("wtd C# binding tests; native library " + WtdLibrary.Version + "; runtime " +
                              (Type.GetType("Mono.Runtime") != null ? "Mono" : ".NET") + " " + Environment.Version);
            if (args.Length == 1 && args[0] == PollChildArg)
            {
                Run("poll_mode_child", 60, PollModeChild);
                Run("transport_priority_order", 60, TransportPriorityPollMode);
                Run("transport_ttl_expiry_counted", 60, TransportTtlPollMode);
                return Finish();
            }
            Run("poll_mode_in_child_process", 120, PollModeInChildProcess);
            Run("layout_matches_c", 30, LayoutMatchesC);
            Run("version_and_errors", 30, VersionAndErrors);
            Run("echo_against_c_server_process", 60, EchoAgainstCServer);
            Run("csharp_server_csharp_client_async_echo", 60, CSharpServerClientAsyncEcho);
            Run("session_callbacks_echo_and_close", 60, SessionCallbacks);
            Run("set_callbacks_while_a_callback_replaces_them", 30, SetCallbacksRace);
            Run("dispose_inside_callbacks", 60, DisposeInsideCallbacks);
            Run("log_handler", 30, LogHandler);
            Run("on_request_refuses", 60, OnRequestRefuses);
            Run("receive_async_cancel_and_dispose", 60, ReceiveAsyncCancelAndDispose);
            Run("many_async_receivers_no_thread_each", 90, ManyAsyncReceivers);
            Run("receive_path_allocates_nothing", 60, ReceivePathAllocatesNothing);
            Run("transport_basics", 60, TransportBasics);
            Run("structured_wire_and_objects", 60, Structured);
            Run("reliability_over_lossy_layer", 120, Reliability);
            Run("broadcaster", 60, Broadcaster);
            Run("perf_figures", 120, PerfFigures);
            Run("shutdown_and_restart", 60, ShutdownAndRestart);
            return Finish();
        }

        /// <summary>Shuts wtd down and prints the summary; exits 1 on any failure.</summary>
        private static int Finish()
        {
            WtdLibrary.Shutdown();
            if (failures.Count > 0) Console.WriteLine("failed: " + string.Join(", ", failures));
            Console.WriteLine(passed + " passed, " + failed + " failed");
            Console.Out.Flush();
            // Exit hard: a timed-out test may still hold a thread.
            Environment.Exit(failed == 0 && passed > 0 ? 0 : 1);
            return 0;
        }

        // ------------------------------------------------------------------------------------
        // Fixtures

        private static readonly object serverLock = new object();
        private static WtdServer sharedServer;

        /// <summary>One C# server on 127.0.0.1 for the in-process tests.</summary>
        private static WtdServer Server
        {
            get
            {
                lock (serverLock)
                {
                    if (sharedServer == null)
                        sharedServer = WtdServer.Listen(new ServerOptions { Host = "127.0.0.1", Port = 0 });
                    return sharedServer;
                }
            }
        }

        private static string Url(WtdServer s, string path) { return "https://127.0.0.1:" + s.Port + path; }

        /// <summary>Connects a client to the shared server and accepts the server side.</summary>
        private static void Pair(string path, out WtdSession client, out WtdSession server)
        {
            WtdServer srv = Server;
            Task<WtdSession> accept = srv.AcceptAsync();
            client = WtdSession.Connect(Url(srv, path), ClientOptions.PinnedHash(srv.CertificateHashHex));
            Check(accept.Wait(10000), "server accepted within 10 s");
            server = accept.Result;
            Check(server.Path == path, "server sees path " + path + ", got " + server.Path);
        }

        private static byte[] Payload(int tag, int size)
        {
            var b = new byte[size];
            BitConverter.GetBytes(tag).CopyTo(b, 0);
            for (int i = 4; i < size; i++) b[i] = (byte)(tag + i);
            return b;
        }

        private static bool SameBytes(byte[] a, int aOff, byte[] b, int bOff, int n)
        {
            for (int i = 0; i < n; i++) if (a[aOff + i] != b[bOff + i]) return false;
            return true;
        }

        // ------------------------------------------------------------------------------------
        // Tests

        /// <summary>Every bound struct has the C compiler's size, and every field its offset
        /// (names: C snake_case → C# PascalCase). The layout file comes from include/wtd.h.</summary>
        private static void LayoutMatchesC()
        {
            string path = Environment.GetEnvironmentVariable("WTD_LAYOUT");
            Check(!string.IsNullOrEmpty(path) && File.Exists(path), "WTD_LAYOUT names the layout file (got '" + path + "')");
            var map = new Dictionary<string, Type>
            {
                { "wtd_client_options", typeof(NativeClientOptions) },
                { "wtd_server_options", typeof(NativeServerOptions) },
                { "wtd_session_request", typeof(NativeSessionRequest) },
                { "wtd_session_callbacks", typeof(NativeSessionCallbacks) },
                { "wtd_transport_options", typeof(NativeTransportOptions) },
                { "wtd_transport_callbacks", typeof(NativeTransportCallbacks) },
                { "wtd_reliability_options", typeof(NativeReliabilityOptions) },
                { "wtd_structured_options", typeof(NativeStructuredOptions) },
                { "wtd_datagram_buffer", typeof(NativeDatagramBuffer) },
                { "wtd_broadcast_result", typeof(NativeBroadcastResult) },
                { "wtd_session_stats", typeof(SessionStats) },
                { "wtd_server_stats", typeof(ServerStats) },
                { "wtd_datagram_stats", typeof(DatagramStats) },
                { "wtd_throughput_result", typeof(ThroughputResult) },
                { "wtd_datagram_metadata", typeof(DatagramMetadata) },
                { "wtd_reliability_stats", typeof(ReliabilityStats) },
                { "wtd_reliable_result", typeof(ReliableResult) },
                { "wtd_priority_count", typeof(NativePriorityCount) },
                { "wtd_queue_direction_stats", typeof(NativeQueueDirectionStats) },
                { "wtd_queue_stats", typeof(NativeQueueStats) },
                { "wtd_datagram_view", typeof(NativeDatagramView) },
                { "wtd_monitor_options", typeof(NativeMonitorOptions) },
                { "wtd_monitor_sample", typeof(MonitorSample) },
                { "wtd_monitor_alert", typeof(MonitorAlert) },
                { "wtd_log_callbacks", typeof(NativeLogCallbacks) },
                { "wtd_reliability_callbacks", typeof(NativeReliabilityCallbacks) },
                { "wtd_monitor_callbacks", typeof(NativeMonitorCallbacks) },
            };
            int checkedFields = 0, structs = 0;
            var problems = new List<string>();
            var seen = new HashSet<string>();
            foreach (string line in File.ReadAllLines(path))
            {
                string[] f = line.Split(' ');
                if (f.Length != 3) continue;
                string name = f[0];
                long value = long.Parse(f[2]);
                int dot = name.IndexOf('.');
                string st = dot < 0 ? name : name.Substring(0, dot);
                Type t;
                if (!map.TryGetValue(st, out t))
                {
                    // A struct the header has and the binding lacks (e.g. new in the next API).
                    if (f[1] == "size") problems.Add(st + ": in the header, not bound in C#");
                    continue;
                }
                seen.Add(st);
                if (f[1] == "size")
                {
                    structs++;
                    int size = Marshal.SizeOf(t);
                    if (size != value) problems.Add(st + ": C size " + value + ", C# " + size);
                }
                else
                {
                    string field = Pascal(name.Substring(dot + 1));
                    long off;
                    try { off = (long)Marshal.OffsetOf(t, field); }
                    catch (ArgumentException) { problems.Add(st + "." + field + ": missing in C#"); continue; }
                    checkedFields++;
                    if (off != value) problems.Add(st + "." + field + ": C offset " + value + ", C# " + off);
                }
            }
            foreach (string st in map.Keys) if (!seen.Contains(st)) problems.Add(st + ": not in the header's layout file");
            Check(problems.Count == 0, "layout mismatches: " + string.Join("; ", problems));
            Check(structs >= 27 && checkedFields > 200, "checked " + structs + " structs, " + checkedFields + " fields");
            Console.WriteLine("  layout: " + structs + " structs, " + checkedFields + " fields match the C compiler");
        }

        private static string Pascal(string snake)
        {
            var sb = new StringBuilder();
            foreach (string part in snake.Split('_'))
                if (part.Length > 0) sb.Append(char.ToUpperInvariant(part[0])).Append(part.Substring(1));
            return sb.ToString();
        }

        private static void VersionAndErrors()
        {
            uint v = WtdLibrary.VersionNumber;
            string expect = (v >> 16) + "." + ((v >> 8) & 0xff) + "." + (v & 0xff);
            Check(WtdLibrary.Version == expect, "version string " + WtdLibrary.Version + " matches number " + expect);
            Check(WtdLibrary.ResultString(WtdResult.Closed) == "closed", "result string of Closed");
            Check(WtdLibrary.DraftString(WtdDraft.Draft02) == "draft-02", "draft string");
            Check(WtdLibrary.LogLevelString(WtdLogLevel.Warn) != WtdLibrary.LogLevelString((WtdLogLevel)77), "log level strings");
            Check(WtdLibrary.ResultString((WtdResult)999) == WtdLibrary.ResultString((WtdResult)1000), "unknown codes share one string");
            ThrowsWtd(WtdResult.InvalidArgument, () => WtdLibrary.SetSendCoalescing(100001), "coalescing above 100 ms");
            WtdLibrary.SetSendCoalescing(1000);
            WtdLibrary.SetSendCoalescing(0);
            // A bad URL: the exception carries the code and the native message of this thread.
            WtdException e = ThrowsWtd(WtdResult.InvalidArgument, () => WtdSession.Connect("not a url"), "bad url");
            Check(e.Message.Length > "wtd: ".Length + 20 && e.Message.Contains("InvalidArgument"), "message carries details: " + e.Message);
            // The message is per thread: a failure on another thread meanwhile does not change ours.
            string mine = null, other = null;
            var t1 = new Thread(() =>
            {
                for (int i = 0; i < 200; i++)
                {
                    try { WtdSession.Connect("not a url"); }
                    catch (WtdException x) { mine = x.Message; }
                }
            });
            var t2 = new Thread(() =>
            {
                for (int i = 0; i < 200; i++)
                {
                    try { WtdServer.Listen(new ServerOptions { Host = "127.0.0.1", Port = 0, CertFile = "/nonexistent.pem", KeyFile = "/nonexistent.key" }); }
                    catch (WtdException x) { other = x.Message; }
                }
            });
            t1.Start(); t2.Start(); t1.Join(); t2.Join();
            Check(mine == e.Message, "same URL message on another thread: " + mine);
            Check(other != null && other != mine && (other.Contains("Tls") || other.Contains("Io")), "cert failure message: " + other);
            // Argument checks before native code; a heartbeat helper; an embedded NUL refused.
            Throws<ArgumentOutOfRangeException>(() => WtdLibrary.IsHeartbeat(new byte[4], 2, 3), "range check");
            Check(WtdLibrary.IsHeartbeat(Encoding.ASCII.GetBytes("HEARTBEAT:1"), 0, 11), "heartbeat recognised");
            Throws<ArgumentException>(() => WtdSession.Connect("https://a\0b/"), "NUL in a string");
        }

        /// <summary>C# client ↔ the C wtd_echo_server process: sync, Span, async and batch
        /// receives; the close code reaches the server.</summary>
        private static void EchoAgainstCServer()
        {
            string exe = Environment.GetEnvironmentVariable("WTD_ECHO_SERVER");
            Check(!string.IsNullOrEmpty(exe) && File.Exists(exe), "WTD_ECHO_SERVER names the echo server (got '" + exe + "')");
            var psi = new ProcessStartInfo(exe, "--host 127.0.0.1 --port 0")
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using (Process p = Process.Start(psi))
            {
                var lines = new System.Collections.Concurrent.BlockingCollection<string>();
                var reader = new Thread(() =>
                {
                    string l;
                    while ((l = p.StandardOutput.ReadLine()) != null) lines.Add(l);
                    lines.CompleteAdding();
                }) { IsBackground = true };
                reader.Start();
                try
                {
                    string ready;
                    Check(lines.TryTake(out ready, 20000), "READY line within 20 s");
                    string[] f = ready.Split(' ');
                    Check(f.Length == 3 && f[0] == "READY", "READY <port> <hash>: " + ready);
                    string url = "https://127.0.0.1:" + f[1] + "/echo?from=csharp";
                    using (WtdSession s = WtdSession.Connect(url, ClientOptions.PinnedHash(f[2])))
                    {
                        string open;
                        Check(lines.TryTake(out open, 10000) && open.StartsWith("SESSION_OPEN") && open.Contains("path=/echo?from=csharp"), "server saw the session: " + open);
                        int max = s.MaxDatagramSize;
                        Check(max >= 1000, "max datagram size " + max);
                        var buf = new byte[2048];
                        // Sync send/receive, sizes 1..max.
                        for (int i = 0; i < 100; i++)
                        {
                            int size = 1 + (i * 37) % max;
                            byte[] d = Payload(i, Math.Max(size, 4));
                            s.Send(d);
                            int n = s.Receive(buf, 0, buf.Length, 5000);
                            Check(n == d.Length && SameBytes(buf, 0, d, 0, n), "echo " + i + " intact");
                        }
                        // Span overloads.
                        byte[] sp = Payload(777, 300);
                        s.Send(new ReadOnlySpan<byte>(sp, 0, 300));
                        int m = s.Receive(new Span<byte>(buf, 100, 500), 5000);
                        Check(m == 300 && SameBytes(buf, 100, sp, 0, 300), "span echo intact at offset 100");
                        // Async.
                        for (int i = 0; i < 50; i++)
                        {
                            byte[] d = Payload(1000 + i, 64);
                            Task<int> r = s.ReceiveAsync(buf, 0, buf.Length);
                            s.Send(d);
                            Check(r.Wait(5000) && r.Result == 64 && SameBytes(buf, 0, d, 0, 64), "async echo " + i);
                        }
                        // Batch: 40 out, then drain into a reusable batch.
                        using (var batch = new DatagramBatch(16, 1500))
                        {
                            for (int i = 0; i < 40; i++) s.Send(Payload(2000 + i, 100));
                            var got = new List<int>();
                            var until = DateTime.UtcNow.AddSeconds(5);
                            while (got.Count < 40 && DateTime.UtcNow < until)
                            {
                                Task<int> bt = s.ReceiveBatchAsync(batch);
                                Check(bt.Wait(5000), "batch arrives");
                                for (int k = 0; k < batch.Count; k++)
                                {
                                    ArraySegment<byte> seg = batch[k];
                                    Check(seg.Count == 100, "batch item size");
                                    got.Add(BitConverter.ToInt32(seg.Array, seg.Offset));
                                }
                            }
                            Check(got.SequenceEqual(Enumerable.Range(2000, 40)), "batch echoes in order: " + string.Join(",", got));
                            // The blocking form with a timeout; a too-small slot reports the size.
                            s.Send(Payload(3000, 100));
                            Check(s.ReceiveBatch(batch, 5000) == 1 && batch.Length(0) == 100, "batch with a timeout");
                            Check(s.ReceiveBatch(batch, 50) == 0, "timeout: 0");
                            using (var tiny = new DatagramBatch(2, 10))
                            {
                                s.Send(Payload(3001, 100));
                                WtdException small = ThrowsWtd(WtdResult.BufferTooSmall, () => s.ReceiveBatch(tiny, 5000), "slot too small");
                                Check(small.RequiredLength == 100, "needed size reported: " + small.RequiredLength);
                                Check(s.ReceiveBatch(batch, 1000) == 1, "the datagram stayed queued");
                            }
                        }
                        // Too large is refused with its code (no QUIC datagram has 70,000 bytes;
                        // max + 1 could be valid by now: path MTU discovery raises the limit);
                        // stats count what went through.
                        ThrowsWtd(WtdResult.TooLarge, () => s.Send(new byte[70000]), "oversize send");
                        SessionStats st = s.Stats;
                        Check(st.DatagramsSent == 193 && st.DatagramsReceived == 193 && st.DatagramsRead == 193, "stats 193/193/193: " + st.DatagramsSent + "/" + st.DatagramsReceived + "/" + st.DatagramsRead);
                        Check(st.RttUs > 0 && st.StructSize == Marshal.SizeOf(typeof(SessionStats)), "rtt and struct size");
                        s.Close(7, "bye from C#");
                        string closed;
                        Check(lines.TryTake(out closed, 10000) && closed.Contains("code=7") && closed.Contains("reason=bye from C#"), "server saw the close code: " + closed);
                        uint code; string reason;
                        Check(s.TryGetCloseInfo(out code, out reason) && code == 7 && reason == "bye from C#", "close info " + code + " " + reason);
                        ThrowsWtd(WtdResult.Closed, () => s.Send(new byte[1]), "send after close");
                    }
                }
                finally
                {
                    try { p.Kill(); } catch (InvalidOperationException) { }
                    p.WaitForExit(5000);
                }
            }
        }

        /// <summary>C# server ↔ C# client: AcceptAsync, an async echo loop on the server side,
        /// close codes both ways.</summary>
        private static void CSharpServerClientAsyncEcho()
        {
            WtdSession client, server;
            Pair("/async", out client, out server);
            using (client)
            using (server)
            {
                Check(client.Id == server.Id, "same session id both ends");
                Check(client.Draft != WtdDraft.Unknown && client.Draft == server.Draft, "draft negotiated: " + client.Draft);
                Task echo = Task.Run(async () =>
                {
                    var b = new byte[2048];
                    while (true)
                    {
                        int n;
                        try { n = await server.ReceiveAsync(b, 0, b.Length); }
                        catch (WtdException e) when (e.Result == WtdResult.Closed) { return; }
                        server.Send(b, 0, n);
                    }
                });
                var buf = new byte[2048];
                for (int i = 0; i < 200; i++)
                {
                    byte[] d = Payload(i, 16 + i);
                    client.Send(d);
                    Task<int> r = client.ReceiveAsync(buf, 0, buf.Length);
                    Check(r.Wait(5000) && r.Result == d.Length && SameBytes(buf, 0, d, 0, d.Length), "async echo " + i);
                }
                // A sibling session on the same connection (kept open across the main session's
                // close: when the last session of a connection closes right after a sibling did,
                // the server sometimes sees the connection close (code 0) instead of the session's
                // close code — a native-library race reported separately).
                Task<WtdSession> acc = Server.AcceptAsync();
                WtdSession sib = client.OpenSibling("/sibling");
                Check(acc.Wait(5000), "sibling accepted");
                WtdSession ssib = acc.Result;
                Check(ssib.Path == "/sibling" && ssib.Id == sib.Id && sib.Id != client.Id, "sibling ids/paths");
                sib.Send(new byte[] { 9, 9 });
                Check(ssib.Receive(buf, 0, buf.Length, 5000) == 2, "datagram routed to the sibling");
                client.Close(42, "done");
                Check(echo.Wait(5000), "server loop ended with Closed");
                Check(server.WaitClosed(5000), "server side closed");
                uint code; string reason;
                Check(server.TryGetCloseInfo(out code, out reason) && code == 42 && reason == "done", "server got code 42: " + code + " " + reason);
                ThrowsWtd(WtdResult.Closed, () => client.Receive(buf, 0, buf.Length, 100), "receive after close");
                Check(!sib.IsClosed, "the sibling outlives the main session");
                sib.Dispose();
                Check(ssib.WaitClosed(5000), "sibling closed at the server");
                ssib.Dispose();
            }
        }

        private static void SessionCallbacks()
        {
            WtdSession client, server;
            Pair("/callbacks", out client, out server);
            using (client)
            using (server)
            {
                int echoed = 0, throwsLeft = 3;
                WtdResult blocking = WtdResult.Ok;
                var closedCode = new TaskCompletionSource<uint>();
                long exceptionsBefore = WtdLibrary.CallbackExceptionCount;
                server.SetCallbacks((s, b, n) =>
                {
                    if (b[0] == 0xEE && Interlocked.Decrement(ref throwsLeft) >= 0) throw new InvalidOperationException("thrown in a callback");
                    if (b[0] == 0xBB)
                    {
                        // A blocking call from a wtd callback thread is refused, not a deadlock.
                        try { s.Receive(new byte[8], 0, 8, 1000); } catch (WtdException e) { blocking = e.Result; }
                    }
                    s.Send(b, 0, n); // non-blocking calls are allowed
                    Interlocked.Increment(ref echoed);
                }, (s, code, reason) => closedCode.TrySetResult(code));
                var buf = new byte[2048];
                for (int i = 0; i < 3; i++) client.Send(new byte[] { 0xEE, 1, 2 });
                client.Send(new byte[] { 0xBB, 1 });
                for (int i = 0; i < 50; i++)
                {
                    byte[] d = Payload(i, 200);
                    d[0] = 1;
                    client.Send(d);
                }
                int got = 0;
                bool sawBlockingEcho = false;
                while (got < 51)
                {
                    client.Receive(buf, 0, buf.Length, 5000);
                    if (buf[0] == 0xBB) sawBlockingEcho = true;
                    got++;
                }
                Check(sawBlockingEcho && blocking == WtdResult.InvalidState, "blocking call in a callback: " + blocking);
                Check(WtdLibrary.CallbackExceptionCount - exceptionsBefore == 3, "3 callback exceptions reported and survived: " + (WtdLibrary.CallbackExceptionCount - exceptionsBefore));
                Check(echoed == 51, "51 echoed from the callback: " + echoed);
                client.Close(9, "cb");
                Check(closedCode.Task.Wait(5000) && closedCode.Task.Result == 9, "closed callback got code 9");
                server.SetCallbacks(null, null);
            }
        }

        /// <summary>A callback replaces its session's callbacks while another thread does the same
        /// (the native call waits for the running callback): no deadlock.</summary>
        private static void SetCallbacksRace()
        {
            WtdSession client, server;
            Pair("/setcb-race", out client, out server);
            using (client)
            using (server)
            {
                var inCallback = new ManualResetEventSlim();
                var replaced = new ManualResetEventSlim();
                SessionDatagramHandler second = (s, b, n) => { };
                server.SetCallbacks((s, b, n) =>
                {
                    inCallback.Set();
                    Thread.Sleep(300); // the test thread calls SetCallbacks meanwhile
                    s.SetCallbacks(second, null);
                    replaced.Set();
                }, null);
                client.Send(new byte[] { 1 });
                Check(inCallback.Wait(5000), "callback running");
                server.SetCallbacks(second, null); // waits for the running callback to return
                Check(replaced.Wait(5000), "the callback's own SetCallbacks returned");
                server.SetCallbacks(null, null);
            }
        }

        /// <summary>Disposing a session from its own close callback and a transport from its own
        /// receive callback (wtd_*_free from a callback does not wait; the binding frees the
        /// GCHandle when the callback returns).</summary>
        private static void DisposeInsideCallbacks()
        {
            long exBefore = WtdLibrary.CallbackExceptionCount;
            WtdSession client, server;
            Pair("/dispose-in-cb", out client, out server);
            var closed = new ManualResetEventSlim();
            server.SetCallbacks(null, (s, code, reason) => { s.Dispose(); closed.Set(); });
            client.Close(3, "x");
            Check(closed.Wait(5000), "close callback ran");
            Throws<ObjectDisposedException>(() => { var unused = server.Id; }, "disposed inside its callback");
            client.Dispose();

            Pair("/dispose-in-cb2", out client, out server);
            using (client)
            using (server)
            {
                var t = new WtdTransport(server);
                var got = new ManualResetEventSlim();
                t.SetCallbacks((tr, b, n) => { tr.Dispose(); got.Set(); }, null);
                client.Send(new byte[] { 1, 2, 3 });
                Check(got.Wait(5000), "receive callback ran");
                client.Send(new byte[] { 4 }); // nothing may call the freed transport's callback
                Thread.Sleep(200);
                Throws<ObjectDisposedException>(() => t.Send(new byte[1]), "transport disposed inside its callback");
            }
            // Transports freed while their receive callbacks fire (wtd_transport_free does not
            // wait for a running callback): the binding empties the user_data box at once and
            // frees its GCHandle after a grace period, so a late callback is a no-op.
            Pair("/dispose-while-flooding", out client, out server);
            using (client)
            using (server)
            {
                int delivered = 0;
                var stop = new ManualResetEventSlim();
                var flood = new Thread(() => { var d = new byte[32]; while (!stop.IsSet) { client.TrySend(d, 0, d.Length); Thread.Sleep(0); } });
                flood.Start();
                int retiredBefore = Callbacks.RetiredCount;
                int transportsHit = 0;
                for (int i = 0; i < 20; i++)
                {
                    var t = new WtdTransport(server);
                    int mine = 0;
                    t.SetCallbacks((tr, b, n) => { Interlocked.Increment(ref mine); Interlocked.Increment(ref delivered); }, null);
                    if (WaitFor(() => Volatile.Read(ref mine) > 0, 5000)) transportsHit++; // callbacks are firing now
                    t.Dispose();
                }
                stop.Set();
                flood.Join();
                Check(transportsHit == 20, "each transport was disposed while its callback fired: " + transportsHit + " (" + delivered + " callbacks)");
                Check(Callbacks.RetiredCount >= retiredBefore + 20, "20 GCHandles wait out their grace period: " + (Callbacks.RetiredCount - retiredBefore));
            }
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Check(WtdLibrary.CallbackExceptionCount == exBefore, "no callback exception: " + (WtdLibrary.CallbackExceptionCount - exBefore));
        }

        private static void LogHandler()
        {
            var messages = new List<string>();
            WtdLibrary.SetLogHandler((level, msg) => { lock (messages) messages.Add(level + " " + msg); }, WtdLogLevel.Info);
            try
            {
                using (var srv = WtdServer.Listen(new ServerOptions { Host = "127.0.0.1", Port = 0 }))
                {
                    int port = srv.Port;
                    Check(WaitFor(() => { lock (messages) return messages.Any(m => m.Contains(port.ToString())); }, 5000),
                          "a log line names the new server's port " + port + ": " + string.Join(" | ", messages.Take(5)));
                }
                ThrowsWtd(WtdResult.InvalidArgument, () => WtdLibrary.SetLogHandler((l, m) => { }, (WtdLogLevel)9), "bad level");
            }
            finally { WtdLibrary.SetLogHandler(null); }
            int count;
            lock (messages) count = messages.Count;
            using (WtdServer.Listen(new ServerOptions { Host = "127.0.0.1", Port = 0 })) { }
            Thread.Sleep(100);
            lock (messages) Check(messages.Count == count, "no log after the handler was removed");
        }

        private static void OnRequestRefuses()
        {
            var seen = new List<string>();
            using (var srv = WtdServer.Listen(new ServerOptions
            {
                Host = "127.0.0.1",
                Port = 0,
                OnRequest = r =>
                {
                    lock (seen) seen.Add(r.Path + "|" + r.Origin);
                    if (r.Path == "/boom") throw new Exception("request hook throws");
                    return r.Path == "/forbidden" ? 403 : 200;
                },
            }))
            {
                var opts = ClientOptions.PinnedHash(srv.CertificateHashHex);
                opts.Origin = "https://game.example";
                ThrowsWtd(WtdResult.Rejected, () => WtdSession.Connect(Url(srv, "/forbidden"), opts), "403 from the hook");
                ThrowsWtd(WtdResult.Rejected, () => WtdSession.Connect(Url(srv, "/boom"), opts), "500 when the hook throws");
                using (WtdSession c = WtdSession.Connect(Url(srv, "/ok"), opts))
                using (WtdSession s = srv.Accept(5000))
                {
                    Check(s.Path == "/ok" && s.Origin == "https://game.example", "accepted /ok with origin " + s.Origin);
                    Check(srv.TryAccept() == null, "nothing else waits");
                }
                lock (seen) Check(seen.Contains("/forbidden|https://game.example") && seen.Contains("/ok|https://game.example"), "hook saw paths: " + string.Join(",", seen));
                // Wrong pinned hash: TLS error.
                var bad = ClientOptions.PinnedHash(new string('0', 64));
                ThrowsWtd(WtdResult.Tls, () => WtdSession.Connect(Url(srv, "/ok"), bad), "wrong pinned hash");
                srv.Close();
                Task<WtdSession> a = srv.AcceptAsync();
                try { a.Wait(5000); } catch (AggregateException) { }
                Check(a.IsFaulted && a.Exception.InnerException is WtdException && ((WtdException)a.Exception.InnerException).Result == WtdResult.Closed, "AcceptAsync after Close: Closed");
            }
        }

        private static void ReceiveAsyncCancelAndDispose()
        {
            WtdSession client, server;
            Pair("/cancel", out client, out server);
            var buf = new byte[1500];
            // Cancellation.
            using (var cts = new CancellationTokenSource(150))
            {
                var sw = Stopwatch.StartNew();
                Task<int> r = client.ReceiveAsync(buf, 0, buf.Length, cts.Token);
                try { r.Wait(5000); } catch (AggregateException) { }
                Check(r.IsCanceled, "cancelled (status " + r.Status + ")");
                Check(sw.ElapsedMilliseconds < 3000, "cancelled promptly: " + sw.ElapsedMilliseconds + " ms");
            }
            // The waiter still works after a cancelled wait.
            Task<int> r2 = client.ReceiveAsync(buf, 0, buf.Length);
            server.Send(new byte[] { 5, 6, 7 });
            Check(r2.Wait(5000) && r2.Result == 3, "receive after a cancelled one");
            // A pending ReceiveAsync and a blocked Receive wake when the session is disposed.
            Task<int> pending = client.ReceiveAsync(buf, 0, buf.Length);
            WtdResult blocked = WtdResult.Ok;
            var th = new Thread(() =>
            {
                try { client.Receive(new byte[100], 0, 100, -1); }
                catch (WtdException e) { blocked = e.Result; }
                catch (ObjectDisposedException) { blocked = WtdResult.InvalidState; }
            });
            th.Start();
            Thread.Sleep(200);
            client.Dispose();
            client.Dispose(); // twice is fine
            Check(th.Join(5000) && blocked == WtdResult.Closed, "blocked Receive woke with Closed: " + blocked);
            try { pending.Wait(5000); } catch (AggregateException) { }
            Check(pending.IsFaulted && pending.Exception.InnerException is WtdException &&
                  ((WtdException)pending.Exception.InnerException).Result == WtdResult.Closed, "pending ReceiveAsync faulted with Closed: " + pending.Status);
            Throws<ObjectDisposedException>(() => client.Send(new byte[1]), "use after Dispose");
            Check(server.WaitClosed(5000), "peer saw the close");
            server.Dispose();
        }

        /// <summary>40 sessions each with a pending ReceiveAsync: all complete, and the process
        /// did not grow a thread per session (one poll thread serves them).</summary>
        private static void ManyAsyncReceivers()
        {
            const int N = 40;
            var clients = new WtdSession[N];
            var servers = new WtdSession[N];
            for (int i = 0; i < N; i++) Pair("/many" + i, out clients[i], out servers[i]);
            try
            {
                Thread.Sleep(300);
                int threadsBefore = Process.GetCurrentProcess().Threads.Count;
                var bufs = new byte[N][];
                var tasks = new Task<int>[N];
                for (int i = 0; i < N; i++)
                {
                    bufs[i] = new byte[64];
                    tasks[i] = clients[i].ReceiveAsync(bufs[i], 0, 64);
                }
                Thread.Sleep(300);
                int threadsWaiting = Process.GetCurrentProcess().Threads.Count;
                Check(tasks.All(t => !t.IsCompleted), "nothing completed before sending");
                for (int i = 0; i < N; i++) servers[i].Send(Payload(i, 8));
                Check(Task.WaitAll(tasks, 10000), "all 40 completed");
                for (int i = 0; i < N; i++) Check(tasks[i].Result == 8 && BitConverter.ToInt32(bufs[i], 0) == i, "right datagram for " + i);
                Console.WriteLine("  threads: " + threadsBefore + " before, " + threadsWaiting + " while 40 receives waited");
                Check(threadsWaiting - threadsBefore < 8, "no thread per waiting session: " + threadsBefore + " -> " + threadsWaiting);
            }
            finally
            {
                for (int i = 0; i < N; i++) { clients[i].Dispose(); servers[i].Dispose(); }
            }
        }

        /// <summary>TryReceive / ReceiveBatch into caller buffers allocate no managed memory per
        /// datagram (GC.GetAllocatedBytesForCurrentThread over 400 datagrams).</summary>
        private static void ReceivePathAllocatesNothing()
        {
            WtdSession client, server;
            Pair("/alloc", out client, out server);
            using (client)
            using (server)
            using (var ct = new WtdTransport(client, new TransportOptions { IncomingHighWaterMark = 1024 }))
            using (var batch = new DatagramBatch(32, 1500))
            {
                var buf = new byte[1500];
                var span = new byte[1500];
                // Warm up every path once (JIT), on the session and the transport.
                for (int round = 0; round < 2; round++)
                {
                    int count = round == 0 ? 4 : 400;
                    for (int i = 0; i < count; i++) server.Send(Payload(i, 100));
                    Check(WaitFor(() => ct.ReceiveBufferSize >= count, 5000), "queued on the transport: " + ct.ReceiveBufferSize);
                    long before = GC.GetAllocatedBytesForCurrentThread();
                    int got = 0, n;
                    for (int i = 0; i < count / 4; i++) { if (ct.TryReceive(buf, 0, buf.Length, out n)) got++; }
                    for (int i = 0; i < count / 4; i++) { if (ct.TryReceive(new Span<byte>(span), out n)) got++; }
                    while (got < count)
                    {
                        int k = ct.ReceiveBatch(batch, 0);
                        if (k == 0) break;
                        for (int j = 0; j < k; j++) if (batch.Length(j) != 100) got = -1000000;
                        got += k;
                    }
                    long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                    Check(got == count, "received " + got + " of " + count);
                    if (round == 1)
                    {
                        Console.WriteLine("  allocated " + allocated + " bytes receiving " + count + " datagrams");
                        Check(allocated < count, "less than one byte per datagram: " + allocated);
                    }
                }
            }
        }

        private static bool WaitFor(Func<bool> cond, int ms)
        {
            var sw = Stopwatch.StartNew();
            while (sw.ElapsedMilliseconds < ms) { if (cond()) return true; Thread.Sleep(2); }
            return cond();
        }

        private static void TransportBasics()
        {
            WtdSession client, server;
            Pair("/transport", out client, out server);
            using (client)
            using (server)
            using (var ct = new WtdTransport(client))
            using (var st = new WtdTransport(server, new TransportOptions { IncomingHighWaterMark = 256 }))
            {
                var buf = new byte[2048];
                Check(ct.SessionId == client.Id && ct.IsWritable && !ct.IsClosed, "transport properties");
                ct.Send(Encoding.ASCII.GetBytes("hello"));
                DatagramMetadata meta;
                int n = st.ReceiveWithMetadata(buf, 0, buf.Length, 5000, out meta);
                Check(n == 5 && meta.Size == 5 && meta.Sequence == 1 && meta.ChecksumString.Length == 8, "metadata: size " + meta.Size + " seq " + meta.Sequence + " checksum " + meta.ChecksumString);
                // Buffer too small: RequiredLength, and the datagram stays queued.
                ct.Send(Payload(1, 300));
                WtdException e = ThrowsWtd(WtdResult.BufferTooSmall, () => st.Receive(buf, 0, 10, 5000), "small buffer");
                Check(e.RequiredLength == 300, "required length 300: " + e.RequiredLength);
                Check(st.Receive(buf, 0, buf.Length, 1000) == 300, "still queued after BufferTooSmall");
                // Too large: refused and counted.
                ThrowsWtd(WtdResult.TooLarge, () => ct.Send(new byte[ct.MaxDatagramSize + 1]), "too large");
                Check(ct.Stats.DroppedTooLarge == 1 && ct.Stats.SendFailures == 1, "too-large counted");
                // JSON.
                ct.SendJson("{ \"a\" : [1, 2] }");
                Check(st.ReceiveJson(5000) == "{\"a\":[1,2]}", "compact JSON");
                ThrowsWtd(WtdResult.Serialization, () => ct.SendJson("{oops"), "invalid JSON");
                // Async and callbacks on the transport.
                Task<int> r = st.ReceiveAsync(buf, 0, buf.Length);
                ct.Send(Payload(9, 50));
                Check(r.Wait(5000) && r.Result == 50, "transport ReceiveAsync");
                var received = new List<int>();
                int sent = 0;
                st.SetCallbacks((t, b, len) => { lock (received) received.Add(BitConverter.ToInt32(b, 0)); }, null);
                ct.SetCallbacks(null, (t, size) => Interlocked.Add(ref sent, size));
                for (int i = 0; i < 20; i++) ct.Send(Payload(100 + i, 64));
                Check(WaitFor(() => { lock (received) return received.Count == 20; }, 5000), "20 via the received callback");
                lock (received) Check(received.SequenceEqual(Enumerable.Range(100, 20)), "in order");
                Check(WaitFor(() => Volatile.Read(ref sent) == 20 * 64, 5000), "sent callback counted 1280 bytes: " + sent);
                st.SetCallbacks(null, null);
                ct.SetCallbacks(null, null);
                // Queues and the debug snapshot.
                Check(st.DebugState().Contains("\"statistics\""), "debug state JSON");
                DatagramStats s = st.Stats;
                Check(s.DatagramsReceived == 24 && s.DatagramsRead == 24 && s.ReceiveDrops == 0, "receiver stats " + s.DatagramsReceived + "/" + s.DatagramsRead);
                // A batch send; then the monitor and diagnostics see failed sends.
                var items = new List<ArraySegment<byte>> { new ArraySegment<byte>(Payload(300, 40), 0, 40), new ArraySegment<byte>(Payload(301, 40), 10, 20) };
                Check(ct.SendMultiple(items) == 2, "two accepted");
                Check(st.Receive(buf, 0, buf.Length, 5000) == 40 && st.Receive(buf, 0, buf.Length, 5000) == 20 && buf[0] == Payload(301, 40)[10], "batch send arrived with its offsets");
                items.Add(new ArraySegment<byte>(new byte[ct.MaxDatagramSize + 1]));
                items.Add(new ArraySegment<byte>(new byte[8]));
                int acc;
                Check(ct.TrySendMultiple(items, 0, 0, out acc) == WtdResult.TooLarge && acc == 2, "stops at the too-large item: " + acc);
                using (var mon = new WtdMonitor(ct, new MonitorOptions { SuccessRateThreshold = 0.99 }))
                {
                    var alerts = new List<MonitorAlertKind>();
                    int alertThread = -1;
                    mon.SetAlertHandler((m, a) => { alerts.Add((MonitorAlertKind)a.Kind); alertThread = Thread.CurrentThread.ManagedThreadId; });
                    Check(!mon.IsMonitoring, "not sampling before Start");
                    mon.SampleNow();
                    Check(alerts.Contains(MonitorAlertKind.LowSuccessRate) && alertThread == Thread.CurrentThread.ManagedThreadId, "low success rate alert on this thread");
                    var samples = new MonitorSample[4];
                    Check(mon.GetSamples(samples) == 1 && samples[0].SendSuccessRate < 0.99 && samples[0].DatagramsSent == ct.Stats.DatagramsSent, "one sample");
                    var kept = new MonitorAlert[4];
                    Check(mon.GetAlerts(kept) == 1 && kept[0].MessageString.Length > 0, "alert kept with a message: " + kept[0].MessageString);
                    Check(WtdMonitor.KindString(MonitorAlertKind.LowSuccessRate) == "low_success_rate", "kind string");
                    mon.Start();
                    Check(mon.IsMonitoring, "sampling after Start");
                    mon.Stop();
                }
                Check(ct.DiagnoseIssues().Length == 0 || ct.DiagnoseIssuesJson().StartsWith("["), "diagnostics callable");
                // Close: sends then fail with Closed; the session stays open.
                ct.Close();
                ThrowsWtd(WtdResult.Closed, () => ct.Send(new byte[1]), "send after transport close");
                Check(!client.IsClosed, "session stays open");
            }
        }

        /// <summary>A higher-priority datagram overtakes the lower ones already queued.</summary>
        private sealed class Point
        {
            public int X, Y;
        }

        private sealed class PointSerializer : IStructuredSerializer
        {
            public int Serialize(ushort typeId, object obj, byte[] buffer)
            {
                if (typeId == 1)
                {
                    var p = (Point)obj;
                    BitConverter.GetBytes(p.X).CopyTo(buffer, 0);
                    BitConverter.GetBytes(p.Y).CopyTo(buffer, 4);
                    return 8;
                }
                if (typeId == 2)
                {
                    byte[] b = Encoding.UTF8.GetBytes((string)obj);
                    if (b.Length > buffer.Length) return -1;
                    b.CopyTo(buffer, 0);
                    return b.Length;
                }
                if (typeId == 3) throw new InvalidOperationException("serializer throws");
                return -1;
            }

            public object Deserialize(ushort typeId, byte[] data, int length)
            {
                if (typeId == 1) return length == 8 ? new Point { X = BitConverter.ToInt32(data, 0), Y = BitConverter.ToInt32(data, 4) } : null;
                if (typeId == 2) return Encoding.UTF8.GetString(data, 0, length);
                return null;
            }
        }

        /// <summary>Objects round-trip; the wire is u16 BE type id || body (checked on a plain
        /// transport at the other end); failures are Serialization errors.</summary>
        private static void Structured()
        {
            WtdSession client, server;
            Pair("/structured", out client, out server);
            using (client)
            using (server)
            using (var ct = new WtdTransport(client))
            using (var st = new WtdTransport(server))
            using (var cs = new WtdStructured(ct, new PointSerializer()))
            {
                cs.Register(1);
                cs.Register(2);
                cs.Register(3);
                ThrowsWtd(WtdResult.InvalidArgument, () => cs.Register(1), "registering twice");
                cs.SendObject(1, new Point { X = 0x01020304, Y = -5 }, 3, 0);
                var buf = new byte[256];
                int n = st.Receive(buf, 0, buf.Length, 5000);
                Check(n == 10 && buf[0] == 0 && buf[1] == 1, "wire: type 1 big-endian + 8 bytes (" + n + ")");
                Check(BitConverter.ToInt32(buf, 2) == 0x01020304 && BitConverter.ToInt32(buf, 6) == -5, "wire body");
                // The other direction: raw bytes in, object out.
                byte[] hi = { 0x00, 0x02, (byte)'h', (byte)'i', (byte)'!' };
                st.Send(hi);
                ushort type;
                object o = cs.ReceiveObject(5000, out type);
                Check(type == 2 && (string)o == "hi!", "string object from raw wire: " + o);
                st.Send(new byte[] { 0x00, 0x01, 1, 2, 3, 4, 5, 6, 7, 8 });
                Point p = (Point)cs.ReceiveObject(5000, out type);
                Check(type == 1 && p.X == 0x04030201 && p.Y == 0x08070605, "point from raw wire");
                // Unregistered type / refused body: consumed, counted, reported; next one flows.
                st.Send(new byte[] { 0x00, 0x09, 1 });
                st.Send(new byte[] { 0x00, 0x01, 1 }); // deserializer refuses (length 1)
                st.Send(new byte[] { 0x00, 0x02, (byte)'o', (byte)'k' });
                ThrowsWtd(WtdResult.Serialization, () => cs.ReceiveObject(5000, out type), "unregistered type id");
                ThrowsWtd(WtdResult.Serialization, () => cs.ReceiveObject(5000, out type), "deserializer refused");
                Check((string)cs.ReceiveObject(5000, out type) == "ok", "next datagram flows");
                Check(ct.Stats.ReceiveErrors == 2, "two receive errors counted: " + ct.Stats.ReceiveErrors);
                // Send-side failures: unregistered, serializer -1, serializer throws.
                ThrowsWtd(WtdResult.Serialization, () => cs.SendObject(7, "x"), "unregistered send");
                long exBefore = WtdLibrary.CallbackExceptionCount;
                ThrowsWtd(WtdResult.Serialization, () => cs.SendObject(3, "x"), "serializer throws");
                Check(WtdLibrary.CallbackExceptionCount == exBefore + 1, "serializer exception reported");
                ThrowsWtd(WtdResult.WouldBlock, () => cs.ReceiveObject(0, out type), "nothing queued");
                cs.Close();
                Check(cs.IsClosed && ct.IsClosed, "structured close closes the transport");
            }
        }

        /// <summary>Both layers drop 30 % of arriving frames on purpose: every message still
        /// arrives exactly once, every outcome is Delivered, retransmissions happened.</summary>
        private static void Reliability()
        {
            WtdSession client, server;
            Pair("/reliable", out client, out server);
            using (client)
            using (server)
            using (var ct = new WtdTransport(client, new TransportOptions { OutgoingHighWaterMark = 1024 }))
            using (var st = new WtdTransport(server, new TransportOptions { OutgoingHighWaterMark = 1024 }))
            {
                var lossy = new ReliabilityOptions { AckTimeoutMs = 40, MaxRetries = 30, MinRtoMs = 20, MaxRtoMs = 200, TestDropFraction = 0.3 };
                using (var cr = new WtdReliability(ct, lossy))
                using (var sr = new WtdReliability(st, lossy))
                {
                    const int N = 60;
                    var seqs = new HashSet<uint>();
                    for (int i = 0; i < N; i++) seqs.Add(cr.Send(Payload(i, 100 + i)));
                    Check(seqs.Count == N, "distinct sequence numbers");
                    var got = new HashSet<int>();
                    var buf = new byte[2048];
                    var sw = Stopwatch.StartNew();
                    while (got.Count < N && sw.ElapsedMilliseconds < 60000)
                    {
                        int n;
                        try { n = sr.Receive(buf, 0, buf.Length, 1000); }
                        catch (WtdException e) when (e.Result == WtdResult.Timeout) { continue; }
                        int tag = BitConverter.ToInt32(buf, 0);
                        Check(n == 100 + tag && SameBytes(buf, 0, Payload(tag, n), 0, n), "message " + tag + " intact");
                        Check(got.Add(tag), "message " + tag + " delivered once");
                    }
                    Check(got.Count == N, "all " + N + " delivered: " + got.Count);
                    var results = new ReliableResult[16];
                    int delivered = 0, gaveUp = 0;
                    while (delivered + gaveUp < N && sw.ElapsedMilliseconds < 90000)
                    {
                        int k = cr.PollOutcomes(results);
                        for (int j = 0; j < k; j++)
                        {
                            Check(seqs.Contains(results[j].Seq), "outcome for a sent seq");
                            if (results[j].Outcome == (uint)ReliableOutcome.Delivered) delivered++; else gaveUp++;
                        }
                        if (k == 0) Thread.Sleep(10);
                    }
                    ReliabilityStats cs = cr.Stats, ss = sr.Stats;
                    Console.WriteLine("  reliability: " + N + " delivered through 30 % injected loss; " + cs.Retransmits + " retransmits, " +
                                      (cs.InjectedDrops + ss.InjectedDrops) + " injected drops, " + ss.Duplicates + " duplicates suppressed");
                    Check(delivered == N && gaveUp == 0, "outcomes: " + delivered + " delivered, " + gaveUp + " gave up");
                    Check(cs.Retransmits > 0 && cs.InjectedDrops + ss.InjectedDrops > 0, "loss and retransmission happened");
                    Check(ss.Delivered == N && cs.Acked == N, "stats agree");
                    // Callbacks: messages and outcomes pushed.
                    var cbMessages = new List<int>();
                    int cbDelivered = 0;
                    sr.SetCallbacks((l, b, len) => { lock (cbMessages) cbMessages.Add(BitConverter.ToInt32(b, 0)); }, null);
                    cr.SetCallbacks(null, (l, seq, outcome) => { if (outcome == ReliableOutcome.Delivered) Interlocked.Increment(ref cbDelivered); });
                    for (int i = 0; i < 10; i++) cr.Send(Payload(500 + i, 40));
                    Check(WaitFor(() => { lock (cbMessages) return cbMessages.Count == 10; }, 30000), "10 messages via callback");
                    Check(WaitFor(() => Volatile.Read(ref cbDelivered) == 10, 30000), "10 outcomes via callback: " + cbDelivered);
                    lock (cbMessages) Check(new HashSet<int>(cbMessages).SetEquals(Enumerable.Range(500, 10)), "callback messages");
                }
            }
        }

        /// <summary>Prints the binding's costs (informational; the bounds only catch gross
        /// regressions): a trivial P/Invoke, a non-blocking receive on an empty queue, batch
        /// receive per datagram, and the echo round trip through a C# callback server.</summary>
        private static void PerfFigures()
        {
            const int calls = 1000000;
            uint sink = 0;
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < calls; i++) sink += WtdLibrary.VersionNumber;
            double pinvokeNs = sw.Elapsed.TotalMilliseconds * 1e6 / calls;
            Check(sink != 0, "calls ran");
            WtdSession client, server;
            Pair("/perf", out client, out server);
            using (client)
            using (server)
            {
                var buf = new byte[1500];
                int n;
                sw.Restart();
                for (int i = 0; i < calls / 10; i++) client.TryReceive(buf, 0, buf.Length, out n);
                double emptyNs = sw.Elapsed.TotalMilliseconds * 1e6 / (calls / 10);
                // Echo round trip: the server echoes from its datagram callback.
                server.SetCallbacks((s, b, len) => s.TrySend(b, 0, len), null);
                var rtts = new List<double>();
                byte[] ping = Payload(1, 64);
                for (int i = 0; i < 2000; i++)
                {
                    sw.Restart();
                    client.Send(ping);
                    client.Receive(buf, 0, buf.Length, 5000);
                    rtts.Add(sw.Elapsed.TotalMilliseconds * 1000);
                }
                server.SetCallbacks(null, null);
                rtts.Sort();
                // Batch receive on a transport: 1000 queued 100-byte datagrams.
                using (var ct = new WtdTransport(client, new TransportOptions { IncomingHighWaterMark = 4096 }))
                using (var batch = new DatagramBatch(64, 1500))
                {
                    byte[] d = Payload(2, 100);
                    for (int i = 0; i < 1000; i++) server.Send(d);
                    Check(WaitFor(() => ct.ReceiveBufferSize >= 1000, 5000), "1000 queued: " + ct.ReceiveBufferSize);
                    sw.Restart();
                    int got = 0;
                    while (got < 1000) { int k = ct.ReceiveBatch(batch, 0); if (k == 0) break; got += k; }
                    double batchNs = sw.Elapsed.TotalMilliseconds * 1e6 / Math.Max(got, 1);
                    Check(got == 1000, "drained 1000: " + got);
                    Console.WriteLine(string.Format(System.Globalization.CultureInfo.InvariantCulture,
                        "  perf: trivial P/Invoke {0:F0} ns; TryReceive on an empty queue {1:F0} ns; batch receive {2:F0} ns/datagram (64-slot batches); " +
                        "echo round trip through a C# callback server p50 {3:F0} us, p99 {4:F0} us (2000 pings, 64 B, loopback)",
                        pinvokeNs, emptyNs, batchNs, rtts[rtts.Count / 2], rtts[rtts.Count * 99 / 100]));
                    Check(pinvokeNs < 20000 && emptyNs < 50000 && batchNs < 100000, "no gross regression");
                }
            }
        }

        /// <summary>WtdLibrary.Shutdown stops the runtime and the readiness thread (what a Unity
        /// Editor does before a domain reload); everything works again afterwards.</summary>
        private static void ShutdownAndRestart()
        {
            lock (serverLock)
            {
                if (sharedServer != null) { sharedServer.Dispose(); sharedServer = null; }
            }
            WtdSession client, server;
            Pair("/before-shutdown", out client, out server);
            var buf = new byte[64];
            Task<int> pending = client.ReceiveAsync(buf, 0, 64);
            client.Dispose();
            server.Dispose();
            try { pending.Wait(5000); } catch (AggregateException) { }
            lock (serverLock) { sharedServer.Dispose(); sharedServer = null; }
            int before = Process.GetCurrentProcess().Threads.Count;
            var sw = Stopwatch.StartNew();
            WtdLibrary.Shutdown();
            WtdLibrary.Shutdown(); // idempotent
            int after = Process.GetCurrentProcess().Threads.Count;
            Console.WriteLine("  shutdown took " + sw.ElapsedMilliseconds + " ms; threads " + before + " -> " + after);
            Check(after < before, "runtime and readiness threads gone: " + before + " -> " + after);
            Check(Callbacks.RetiredCount == 0, "retired GCHandles freed by Shutdown: " + Callbacks.RetiredCount);
            Pair("/after-shutdown", out client, out server);
            using (client)
            using (server)
            {
                Task<int> r = client.ReceiveAsync(buf, 0, 64);
                server.Send(new byte[] { 1, 2 });
                Check(r.Wait(5000) && r.Result == 2, "async receive works after a restart");
            }
        }

        // ------------------------------------------------------------------------------------
        // Engine-owned mode (WtdLibrary.SetRuntimeMode / Poll). The mode is process-wide and
        // fixed once the runtime runs, so its test runs in a child process of this program.

        private const string PollChildArg = "--poll-mode-child";

        /// <summary>This process's threads named "wtd-rt" (/proc/self/task/*/comm; -1 where
        /// there is no /proc).</summary>
        private static int WtdThreads()
        {
            if (!Directory.Exists("/proc/self/task")) return -1;
            int n = 0;
            foreach (string task in Directory.GetDirectories("/proc/self/task"))
            {
                try { if (File.ReadAllText(Path.Combine(task, "comm")).Trim() == "wtd-rt") n++; }
                catch (IOException) { } // the thread ended meanwhile
            }
            return n;
        }

        /// <summary>In this (threads-mode) process: Poll and an unknown mode are refused and the
        /// wtd-rt threads exist (so the child's "none" check can see them); then this program,
        /// started again with --poll-mode-child, passes poll_mode_child.</summary>
        private static void PollModeInChildProcess()
        {
            ThrowsWtd(WtdResult.InvalidState, () => WtdLibrary.Poll(0), "Poll in threads mode");
            ThrowsWtd(WtdResult.InvalidArgument, () => WtdLibrary.SetRuntimeMode((WtdRuntimeMode)7), "unknown runtime mode");
            WtdLibrary.SetRuntimeMode(WtdRuntimeMode.Threads); // the mode already running: a no-op
            Check(Server.Port > 0 && WtdThreads() != 0, "threads mode with a server running has wtd-rt threads: " + WtdThreads());

            // The same runtime and program: mono/dotnet + this assembly, or the apphost alone.
            string host = Process.GetCurrentProcess().MainModule.FileName;
            string exe = System.Reflection.Assembly.GetEntryAssembly().Location;
            bool apphost = Path.GetFileNameWithoutExtension(host) == Path.GetFileNameWithoutExtension(exe);
            var psi = new ProcessStartInfo(host, (apphost ? "" : "\"" + exe + "\" ") + PollChildArg)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            psi.EnvironmentVariables.Remove("WTD_TEST_FILTER"); // the child runs its one test
            using (Process child = Process.Start(psi))
            {
                Task<string> stdout = child.StandardOutput.ReadToEndAsync();
                Task<string> stderr = child.StandardError.ReadToEndAsync();
                if (!child.WaitForExit(100000))
                {
                    child.Kill();
                    throw new CheckFailed("poll-mode child did not finish within 100 s:\n" + stdout.Result + stderr.Result);
                }
                string output = stdout.Result + stderr.Result;
                foreach (string line in output.Split('\n'))
                    if (line.Length > 0) Console.WriteLine("  child: " + line);
                Check(child.ExitCode == 0 && output.Contains("PASS poll_mode_child") &&
                      output.Contains("PASS transport_priority_order") && output.Contains("PASS transport_ttl_expiry_counted") &&
                      output.Contains("3 passed, 0 failed"),
                      "poll-mode child passed (exit " + child.ExitCode + ")");
            }
        }

        /// <summary>Engine-owned mode, in the child process: a server and a client in this
        /// process; the server session echoes from its callback, which must run inside Poll on
        /// this thread; nothing moves while nobody polls; no wtd-rt thread exists; Poll counts
        /// the events; Poll(0) returns at once and Poll(60) waits when idle; the close reaches the
        /// server's closed callback through Poll; SetRuntimeMode(Threads) while the poll runtime
        /// runs is InvalidState, and Poll after going back to threads mode is refused.</summary>
        private static void PollModeChild()
        {
            const int N = 64;
            int loopThread = Thread.CurrentThread.ManagedThreadId;
            ThrowsWtd(WtdResult.InvalidState, () => WtdLibrary.Poll(0), "Poll before choosing poll mode");
            WtdLibrary.SetRuntimeMode(WtdRuntimeMode.Poll);
            int requestThread = 0, offThread = 0, echoed = 0, closedCode = -1;
            string closedReason = null;
            var srv = WtdServer.Listen(new ServerOptions
            {
                Host = "127.0.0.1",
                Port = 0,
                OnRequest = r => { requestThread = Thread.CurrentThread.ManagedThreadId; return 200; },
            });
            ThrowsWtd(WtdResult.InvalidState, () => WtdLibrary.SetRuntimeMode(WtdRuntimeMode.Threads), "switch to threads while the poll runtime runs");
            WtdLibrary.SetRuntimeMode(WtdRuntimeMode.Poll); // the mode already running: a no-op

            // Blocking calls drive wtd themselves: no poller needed; the request hook runs inside.
            WtdSession client = WtdSession.Connect(Url(srv, "/poll"), ClientOptions.PinnedHash(srv.CertificateHashHex));
            WtdSession server = srv.Accept(5000);
            Check(requestThread == loopThread, "OnRequest ran on the thread driving wtd: " + requestThread + " vs " + loopThread);
            server.SetCallbacks((sess, b, n) =>
            {
                if (Thread.CurrentThread.ManagedThreadId != loopThread) Interlocked.Increment(ref offThread);
                sess.Send(b, 0, n);
                Interlocked.Increment(ref echoed);
            }, (sess, code, reason) =>
            {
                if (Thread.CurrentThread.ManagedThreadId != loopThread) Interlocked.Increment(ref offThread);
                closedReason = reason;
                Volatile.Write(ref closedCode, (int)code);
            });

            for (int i = 0; i < N; i++) client.Send(BitConverter.GetBytes(i));
            Thread.Sleep(100);
            Check(Volatile.Read(ref echoed) == 0, "nothing echoed while nobody polls: " + echoed);
            Check(WtdThreads() <= 0, "no wtd-rt thread in poll mode: " + WtdThreads());

            var seen = new int[N];
            var buf = new byte[64];
            int got = 0, len;
            ulong events = 0;
            var sw = Stopwatch.StartNew();
            while (got < N && sw.ElapsedMilliseconds < 10000)
            {
                events += WtdLibrary.Poll(10);
                while (got < N && client.TryReceive(buf, 0, buf.Length, out len))
                {
                    Check(len == 4, "echo of 4 bytes: " + len);
                    seen[BitConverter.ToInt32(buf, 0)]++;
                    got++;
                }
            }
            Check(got == N && seen.All(c => c == 1), "every datagram echoed once: " + got + " of " + N);
            Check(echoed == N && offThread == 0, "echoed " + echoed + " inside Poll on this thread (elsewhere: " + offThread + ")");
            // Each datagram reached a session twice: the server's callback, the client's queue.
            Check(events >= 2 * N, "Poll counted " + events + " events, want >= " + 2 * N);
            Check(WtdThreads() <= 0, "no wtd-rt thread after the exchange: " + WtdThreads());

            sw.Restart();
            ulong idle = WtdLibrary.Poll(0);
            Check(idle == 0 && sw.ElapsedMilliseconds < 50, "idle Poll(0): " + idle + " events after " + sw.ElapsedMilliseconds + " ms");
            sw.Restart();
            idle = WtdLibrary.Poll(60);
            Check(idle == 0 && sw.ElapsedMilliseconds >= 55, "idle Poll(60): " + idle + " events after " + sw.ElapsedMilliseconds + " ms");

            client.Close(4242, "bye");
            sw.Restart();
            while (Volatile.Read(ref closedCode) < 0 && sw.ElapsedMilliseconds < 10000) WtdLibrary.Poll(10);
            Check(closedCode == 4242 && closedReason == "bye", "server's closed callback: " + closedCode + " " + closedReason);
            Check(offThread == 0, "callbacks ran only inside Poll on this thread: " + offThread + " elsewhere");
            server.SetCallbacks(null, null);
            client.Dispose();
            server.Dispose();
            srv.Dispose();
            WtdLibrary.Shutdown();
            WtdLibrary.SetRuntimeMode(WtdRuntimeMode.Threads);
            ThrowsWtd(WtdResult.InvalidState, () => WtdLibrary.Poll(0), "Poll back in threads mode");
        }

        /// <summary>In the child process, engine-owned mode: a fresh server and client, a
        /// transport on each (client: 4000 outgoing, RejectNew; server: 16384 incoming). While
        /// nobody polls nothing leaves, so a backlog stays put as long as the test wants — the
        /// priority and TTL tests below cannot race a link that drains in under a millisecond
        /// (the threads-mode versions did, and failed in CI when the test thread was descheduled).
        /// Then shuts wtd down and goes back to threads mode.</summary>
        private static void WithPollModeTransports(string path, Action<WtdTransport, WtdTransport> body)
        {
            WtdLibrary.SetRuntimeMode(WtdRuntimeMode.Poll);
            var srv = WtdServer.Listen(new ServerOptions { Host = "127.0.0.1", Port = 0 });
            WtdSession client = WtdSession.Connect(Url(srv, path), ClientOptions.PinnedHash(srv.CertificateHashHex));
            WtdSession server = srv.Accept(5000);
            using (var ct = new WtdTransport(client, new TransportOptions { OutgoingHighWaterMark = 4000, DropPolicy = DropPolicy.RejectNew }))
            using (var st = new WtdTransport(server, new TransportOptions { IncomingHighWaterMark = 16384 }))
                body(ct, st);
            client.Dispose();
            server.Dispose();
            srv.Dispose();
            WtdLibrary.Shutdown();
            WtdLibrary.SetRuntimeMode(WtdRuntimeMode.Threads);
        }

        /// <summary>Without polling: fills QUIC's send buffer, then 1000 priority-0 datagrams of
        /// the largest size (tagged 0, 1, …) into the transport's queue; returns how many were
        /// accepted.</summary>
        private static int QueueBacklog(WtdTransport ct)
        {
            int max = ct.MaxDatagramSize, tag = 0;
            for (int i = 0; i < 10000 && ct.SendBufferSize < 1000; i++)
            {
                WtdResult r = ct.TrySend(Payload(tag, max), 0, max, 0);
                if (r == WtdResult.Ok) tag++;
                else Check(r == WtdResult.WouldBlock, "only WouldBlock: " + r);
            }
            Check(ct.SendBufferSize == 1000, "1000 queued ahead: " + ct.SendBufferSize);
            return tag;
        }

        /// <summary>Polls until the client's queue is empty, then for another second while
        /// receiving on the server; returns the first 4 bytes (the tag) of each datagram and its
        /// size.</summary>
        private static List<KeyValuePair<int, int>> DrainAndReceive(WtdTransport ct, WtdTransport st)
        {
            var sw = Stopwatch.StartNew();
            var got = new List<KeyValuePair<int, int>>();
            var buf = new byte[2048];
            int n;
            Action receive = () =>
            {
                while (st.TryReceive(buf, 0, buf.Length, out n)) got.Add(new KeyValuePair<int, int>(BitConverter.ToInt32(buf, 0), n));
            };
            while (ct.SendBufferSize > 0 && sw.ElapsedMilliseconds < 20000)
            {
                WtdLibrary.Poll(10);
                receive();
            }
            Check(ct.SendBufferSize == 0, "queue drained: " + ct.SendBufferSize);
            sw.Restart();
            while (sw.ElapsedMilliseconds < 1000) // whatever is still in flight
            {
                WtdLibrary.Poll(10);
                receive();
            }
            return got;
        }

        /// <summary>A priority-5 datagram queued behind 1000 priority-0 ones leaves before all of
        /// them; equal priorities leave in order.</summary>
        private static void TransportPriorityPollMode()
        {
            WithPollModeTransports("/priority", (ct, st) =>
            {
                int lows = QueueBacklog(ct);
                ct.Send(Payload(-1, 8), 0, 8, 5);
                QueueDirectionStats q0 = ct.GetQueueStats()[0];
                Console.WriteLine("  queue after HIGH: " + q0.Size + " queued; classes " + string.Join(",", q0.Classes.Select(c => c.Priority + ":" + c.Count)));
                Check(q0.Classes.Length == 2 && q0.Classes[0].Priority == 5 && q0.Classes[0].Count == 1 &&
                      q0.Classes[1].Priority == 0 && q0.Classes[1].Count == 1000, "classes highest first: 5:1, 0:1000");
                List<int> order = DrainAndReceive(ct, st).Select(kv => kv.Key).ToList();
                int hi = order.IndexOf(-1);
                Check(hi >= 0, "HIGH arrived (" + order.Count + " of " + (lows + 1) + " datagrams)");
                int overtaken = order.Skip(hi + 1).Count(t => t >= 0);
                Console.WriteLine("  HIGH arrived " + hi + "th of " + order.Count + "; overtook " + overtaken + " lows queued before it");
                Check(overtaken >= 1000, "HIGH overtook the 1000 queued lows: " + overtaken);
                var low = order.Where(t => t >= 0).ToList();
                Check(low.SequenceEqual(low.OrderBy(t => t)), "FIFO among equal priorities");
            });
        }

        /// <summary>Datagrams with a 1 ms TTL queued behind the backlog are all older than their
        /// TTL when the transport reaches them: every one is counted as expired, none arrives.</summary>
        private static void TransportTtlPollMode()
        {
            WithPollModeTransports("/ttl", (ct, st) =>
            {
                int lows = QueueBacklog(ct);
                const int N = 20;
                for (int i = 0; i < N; i++) ct.Send(Payload(-100 - i, 16), 0, 16, -1, 1, -1);
                Check(ct.SendBufferSize == 1000 + N, "the TTL datagrams queued behind: " + ct.SendBufferSize);
                Thread.Sleep(20); // every TTL is over before anything moves
                List<KeyValuePair<int, int>> got = DrainAndReceive(ct, st);
                DatagramStats s = ct.Stats;
                int ttlReceived = got.Count(kv => kv.Value == 16);
                Console.WriteLine("  of " + N + " 1-ms-TTL datagrams " + s.DroppedExpired + " expired, " + ttlReceived +
                                  " arrived; " + (got.Count - ttlReceived) + " of " + lows + " big ones arrived");
                Check(s.DroppedExpired == N, "every TTL datagram expired and was counted: " + s.DroppedExpired);
                Check(s.SendDrops >= s.DroppedExpired, "expired are send drops");
                Check(ttlReceived == 0, "an expired datagram never arrives: " + ttlReceived);
                Check(got.Count > 0, "the backlog itself was sent");
            });
        }

        private static void Broadcaster()
        {
            WtdSession c1, s1, c2, s2;
            Pair("/b1", out c1, out s1);
            Pair("/b2", out c2, out s2);
            using (c1) using (s1) using (c2) using (s2)
            using (var t1 = new WtdTransport(s1))
            using (var t2 = new WtdTransport(s2))
            using (var b = new WtdBroadcaster())
            {
                b.Add(t1);
                b.Add(t2);
                b.Add(t1);
                Check(b.Count == 2, "two transports");
                int failedCount, pruned;
                byte[] msg = Encoding.ASCII.GetBytes("to everyone");
                Check(b.Broadcast(msg, 0, msg.Length, 0, 0, out failedCount, out pruned) == 2 && failedCount == 0 && pruned == 0, "accepted by both");
                var buf = new byte[64];
                Check(c1.Receive(buf, 0, 64, 5000) == msg.Length && c2.Receive(buf, 0, 64, 5000) == msg.Length, "both clients got it");
                t2.Close();
                Check(b.Broadcast(msg, 0, msg.Length, 0, 0, out failedCount, out pruned) == 1 && pruned == 1, "closed transport pruned");
                Check(b.Count == 1, "one left");
            }
        }
    }
}
