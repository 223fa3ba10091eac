// ReadinessWaiter.cs — async waiting on wtd readiness descriptors without a thread per session:
// ONE background thread poll()s every descriptor someone awaits (plus a wake-up pipe) and
// completes the waiting tasks; the awaiting code then retries its non-blocking call. Readiness
// descriptors are level-triggered, so a spurious wake-up only costs one retry.
// Off Unix, or where libc cannot be loaded, waits fall back to a 1 ms timer (documented).
using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace Wtd
{
    internal static unsafe class ReadinessWaiter
    {
        private const short POLLIN = 0x1;

        private static readonly object gate = new object();
        private static readonly Dictionary<int, List<TaskCompletionSource<bool>>> waiters =
            new Dictionary<int, List<TaskCompletionSource<bool>>>();
        private static Thread thread;
        private static int wakeRead = -1, wakeWrite = -1;
        private static int wakePending;
        private static bool unavailable;
        private static volatile bool stopping;

        /// <summary>Completes when `fd` is readable (or at once if it already is), when
        /// <see cref="Release"/> is called for it, or is cancelled by `ct`.</summary>
        internal static Task WaitAsync(int fd, CancellationToken ct)
        {
            if (ct.IsCancellationRequested) return Canceled();
            if (!EnsureThread()) return Task.Delay(1, ct);
            var tcs = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (gate)
            {
                List<TaskCompletionSource<bool>> list;
                if (!waiters.TryGetValue(fd, out list))
                {
                    list = new List<TaskCompletionSource<bool>>(1);
                    waiters.Add(fd, list);
                }
                list.Add(tcs);
            }
            Wake();
            if (ct.CanBeCanceled)
            {
                CancellationTokenRegistration reg = ct.Register(() =>
                {
                    lock (gate)
                    {
                        List<TaskCompletionSource<bool>> list;
                        if (waiters.TryGetValue(fd, out list))
                        {
                            list.Remove(tcs);
                            if (list.Count == 0) waiters.Remove(fd);
                        }
                    }
                    tcs.TrySetCanceled();
                });
                tcs.Task.ContinueWith(_ => reg.Dispose(), TaskContinuationOptions.ExecuteSynchronously);
            }
            return tcs.Task;
        }

        /// <summary>Wakes every waiter of `fd` (they retry and see the handle closed) and stops
        /// watching it; called before the handle owning `fd` is freed.</summary>
        internal static void Release(int fd)
        {
            List<TaskCompletionSource<bool>> list;
            lock (gate)
            {
                if (!waiters.TryGetValue(fd, out list)) return;
                waiters.Remove(fd);
            }
            foreach (var t in list) t.TrySetResult(true);
            Wake();
        }

        /// <summary>Stops the poll thread (waking every waiter so it retries) and closes the
        /// wake-up pipe; the next wait starts a new thread. Called by WtdLibrary.Shutdown so a
        /// Unity Editor domain reload finds no thread blocked in poll().</summary>
        internal static void Stop()
        {
            Thread th;
            lock (gate)
            {
                th = thread;
                if (th == null) return;
                stopping = true;
            }
            Interlocked.Exchange(ref wakePending, 0);
            Wake();
            th.Join(2000);
            List<TaskCompletionSource<bool>> all = new List<TaskCompletionSource<bool>>();
            lock (gate)
            {
                foreach (var list in waiters.Values) all.AddRange(list);
                waiters.Clear();
                NativeMethods.close(wakeRead);
                NativeMethods.close(wakeWrite);
                wakeRead = wakeWrite = -1;
                wakePending = 0;
                stopping = false;
                thread = null;
            }
            foreach (var t in all) t.TrySetResult(true);
        }

        private static Task Canceled()
        {
            var t = new TaskCompletionSource<bool>();
            t.SetCanceled();
            return t.Task;
        }

        private static bool EnsureThread()
        {
            if (thread != null) return true;
            lock (gate)
            {
                if (thread != null) return true;
                if (unavailable) return false;
                PlatformID p = Environment.OSVersion.Platform;
                if (p != PlatformID.Unix && p != PlatformID.MacOSX) { unavailable = true; return false; }
                try
                {
                    int* fds = stackalloc int[2];
                    if (NativeMethods.pipe(fds) != 0) { unavailable = true; return false; }
                    wakeRead = fds[0];
                    wakeWrite = fds[1];
                }
                catch (Exception) // DllNotFoundException, EntryPointNotFoundException
                {
                    unavailable = true;
                    return false;
                }
                var th = new Thread(Loop) { IsBackground = true, Name = "wtd-readiness" };
                th.Start();
                thread = th;
                return true;
            }
        }

        private static void Wake()
        {
            if (Interlocked.Exchange(ref wakePending, 1) == 1) return;
            byte b = 1;
            lock (gate) // Stop closes the pipe under the lock: never write to a reused fd
            {
                if (wakeWrite >= 0) NativeMethods.write(wakeWrite, &b, (UIntPtr)1);
            }
        }

        private static void Loop()
        {
            PollFd[] fds = new PollFd[16];
            byte* drain = stackalloc byte[64];
            var ready = new List<TaskCompletionSource<bool>>();
            while (!stopping)
            {
                int n = 1;
                lock (gate)
                {
                    if (fds.Length < waiters.Count + 1) fds = new PollFd[(waiters.Count + 1) * 2];
                    fds[0].Fd = wakeRead; fds[0].Events = POLLIN; fds[0].Revents = 0;
                    foreach (int fd in waiters.Keys)
                    {
                        fds[n].Fd = fd; fds[n].Events = POLLIN; fds[n].Revents = 0;
                        n++;
                    }
                }
                int rc;
                fixed (PollFd* p = fds) rc = NativeMethods.poll(p, (UIntPtr)n, -1);
                if (rc < 0) { Thread.Sleep(1); continue; } // EINTR and the like: rebuild, retry
                if (fds[0].Revents != 0)
                {
                    // Read first, then re-arm: a Wake() after the re-arm writes a new byte, and
                    // one before it registered its waiter before this rebuild.
                    NativeMethods.read(wakeRead, drain, (UIntPtr)64);
                    Interlocked.Exchange(ref wakePending, 0);
                }
                lock (gate)
                {
                    for (int i = 1; i < n; i++)
                    {
                        if (fds[i].Revents == 0) continue;
                        List<TaskCompletionSource<bool>> list;
                        if (!waiters.TryGetValue(fds[i].Fd, out list)) continue;
                        waiters.Remove(fds[i].Fd);
                        ready.AddRange(list);
                    }
                }
                foreach (var t in ready) t.TrySetResult(true);
                ready.Clear();
            }
        }
    }
}
