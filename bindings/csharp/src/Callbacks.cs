// Callbacks.cs — the static trampolines native code calls. Each is a static method marked
// [MonoPInvokeCallback] (IL2CPP cannot call back into instance methods or closures); the delegate
// objects live in static readonly fields for the whole process, so their function pointers
// never dangle. user_data is a GCHandle to a small box holding the managed owner (session,
// transport, ...). The owner's SafeHandle empties the box after wtd_*_free, so a callback that
// starts late finds no owner and does nothing. The GCHandle itself is freed at once where the
// free guarantees that no callback is running (a session freed outside its callbacks; a
// structured transport, whose callbacks run inside our own calls); otherwise (transport,
// reliability, monitor and server frees return without waiting for a running callback) it is
// freed 10 s later or at WtdLibrary.Shutdown. No exception ever unwinds into native code: each
// trampoline catches and reports it through WtdLibrary.CallbackException.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace Wtd
{
    internal static class Callbacks
    {
        [ThreadStatic] private static int depth;

        /// <summary>What user_data's GCHandle points to: the owner, until it is released.</summary>
        private sealed class Box
        {
            internal volatile object Owner;
        }

        private struct Retired
        {
            internal IntPtr State;
            internal long Ticks;
        }

        private static readonly object graveyardLock = new object();
        private static readonly Queue<Retired> graveyard = new Queue<Retired>();
        private static readonly long GraceTicks = 10L * System.Diagnostics.Stopwatch.Frequency;

        private static readonly SessionDatagramFn sessionDatagram = OnSessionDatagram;
        private static readonly SessionClosedFn sessionClosed = OnSessionClosed;
        private static readonly RequestFn request = OnRequest;
        private static readonly TransportReceivedFn transportReceived = OnTransportReceived;
        private static readonly TransportSentFn transportSent = OnTransportSent;
        private static readonly ReliableMessageFn reliableMessage = OnReliableMessage;
        private static readonly ReliableOutcomeFn reliableOutcome = OnReliableOutcome;
        private static readonly SerializeFn serialize = OnSerialize;
        private static readonly DeserializeFn deserialize = OnDeserialize;
        private static readonly LogFn log = OnLog;
        private static readonly MonitorAlertFn monitorAlert = OnMonitorAlert;

        internal static readonly IntPtr SessionDatagramPtr = Marshal.GetFunctionPointerForDelegate(sessionDatagram);
        internal static readonly IntPtr SessionClosedPtr = Marshal.GetFunctionPointerForDelegate(sessionClosed);
        internal static readonly IntPtr RequestPtr = Marshal.GetFunctionPointerForDelegate(request);
        internal static readonly IntPtr TransportReceivedPtr = Marshal.GetFunctionPointerForDelegate(transportReceived);
        internal static readonly IntPtr TransportSentPtr = Marshal.GetFunctionPointerForDelegate(transportSent);
        internal static readonly IntPtr ReliableMessagePtr = Marshal.GetFunctionPointerForDelegate(reliableMessage);
        internal static readonly IntPtr ReliableOutcomePtr = Marshal.GetFunctionPointerForDelegate(reliableOutcome);
        internal static readonly IntPtr SerializePtr = Marshal.GetFunctionPointerForDelegate(serialize);
        internal static readonly IntPtr DeserializePtr = Marshal.GetFunctionPointerForDelegate(deserialize);
        internal static readonly IntPtr LogPtr = Marshal.GetFunctionPointerForDelegate(log);
        internal static readonly IntPtr MonitorAlertPtr = Marshal.GetFunctionPointerForDelegate(monitorAlert);

        /// <summary>True while this thread runs one of our trampolines (a wtd callback).</summary>
        internal static bool InCallback { get { return depth > 0; } }

        /// <summary>A strong GCHandle to a box holding `owner`, as user_data.</summary>
        internal static IntPtr NewState(object owner)
        {
            SweepGraveyard(false);
            return GCHandle.ToIntPtr(GCHandle.Alloc(new Box { Owner = owner }));
        }

        /// <summary>Releases user_data after wtd_*_free: the box is emptied at once (late
        /// callbacks become no-ops); the GCHandle is freed now when `noCallbackRunning` holds
        /// and this is not a callback thread, else after a grace period.</summary>
        internal static void FreeState(IntPtr state, bool noCallbackRunning)
        {
            GCHandle h = GCHandle.FromIntPtr(state);
            ((Box)h.Target).Owner = null;
            if (noCallbackRunning && depth == 0)
            {
                h.Free();
                return;
            }
            lock (graveyardLock)
                graveyard.Enqueue(new Retired { State = state, Ticks = System.Diagnostics.Stopwatch.GetTimestamp() });
        }

        /// <summary>Frees retired GCHandles older than the grace period (all when `all`, used
        /// after wtd_shutdown, when no callback can run any more).</summary>
        internal static void SweepGraveyard(bool all)
        {
            long now = System.Diagnostics.Stopwatch.GetTimestamp();
            lock (graveyardLock)
            {
                while (graveyard.Count > 0 && (all || now - graveyard.Peek().Ticks > GraceTicks))
                    GCHandle.FromIntPtr(graveyard.Dequeue().State).Free();
            }
        }

        /// <summary>GCHandles waiting out their grace period (for tests).</summary>
        internal static int RetiredCount
        {
            get { lock (graveyardLock) return graveyard.Count; }
        }

        private static void Enter() { depth++; }

        private static void Exit() { depth--; }

        private static T Owner<T>(IntPtr user) where T : class
        {
            if (user == IntPtr.Zero) return null;
            Box b = GCHandle.FromIntPtr(user).Target as Box;
            return b == null ? null : b.Owner as T;
        }

        [MonoPInvokeCallback(typeof(SessionDatagramFn))]
        private static void OnSessionDatagram(IntPtr user, IntPtr session, IntPtr data, UIntPtr len)
        {
            Enter();
            try
            {
                WtdSession s = Owner<WtdSession>(user);
                if (s != null) s.DeliverDatagram(data, (int)len);
            }
            catch (Exception e) { WtdLibrary.ReportCallbackException(e); }
            finally { Exit(); }
        }

        [MonoPInvokeCallback(typeof(SessionClosedFn))]
        private static void OnSessionClosed(IntPtr user, IntPtr session, uint code, IntPtr reason)
        {
            Enter();
            try
            {
                WtdSession s = Owner<WtdSession>(user);
                if (s != null) s.DeliverClosed(code, Utf8.FromNative(reason));
            }
            catch (Exception e) { WtdLibrary.ReportCallbackException(e); }
            finally { Exit(); }
        }

        [MonoPInvokeCallback(typeof(RequestFn))]
        private static ushort OnRequest(IntPtr user, IntPtr req)
        {
            Enter();
            try
            {
                WtdServer s = Owner<WtdServer>(user);
                return s == null ? (ushort)503 : s.DecideRequest(req);
            }
            catch (Exception e)
            {
                WtdLibrary.ReportCallbackException(e);
                return 500;
            }
            finally { Exit(); }
        }

        [MonoPInvokeCallback(typeof(TransportReceivedFn))]
        private static void OnTransportReceived(IntPtr user, IntPtr transport, IntPtr data, UIntPtr len)
        {
            Enter();
            try
            {
                WtdTransport t = Owner<WtdTransport>(user);
                if (t != null) t.DeliverReceived(data, (int)len);
            }
            catch (Exception e) { WtdLibrary.ReportCallbackException(e); }
            finally { Exit(); }
        }

        [MonoPInvokeCallback(typeof(TransportSentFn))]
        private static void OnTransportSent(IntPtr user, IntPtr transport, UIntPtr size)
        {
            Enter();
            try
            {
                WtdTransport t = Owner<WtdTransport>(user);
                if (t != null) t.DeliverSent((int)size);
            }
            catch (Exception e) { WtdLibrary.ReportCallbackException(e); }
            finally { Exit(); }
        }

        [MonoPInvokeCallback(typeof(ReliableMessageFn))]
        private static void OnReliableMessage(IntPtr user, IntPtr reliability, IntPtr data, UIntPtr len)
        {
            Enter();
            try
            {
                WtdReliability r = Owner<WtdReliability>(user);
                if (r != null) r.DeliverMessage(data, (int)len);
            }
            catch (Exception e) { WtdLibrary.ReportCallbackException(e); }
            finally { Exit(); }
        }

        [MonoPInvokeCallback(typeof(ReliableOutcomeFn))]
        private static void OnReliableOutcome(IntPtr user, IntPtr reliability, uint seq, uint outcome)
        {
            Enter();
            try
            {
                WtdReliability r = Owner<WtdReliability>(user);
                if (r != null) r.DeliverOutcome(seq, (ReliableOutcome)outcome);
            }
            catch (Exception e) { WtdLibrary.ReportCallbackException(e); }
            finally { Exit(); }
        }

        [MonoPInvokeCallback(typeof(SerializeFn))]
        private static int OnSerialize(IntPtr user, ushort typeId, IntPtr obj, IntPtr buf, UIntPtr cap, IntPtr outLen)
        {
            // Runs on the thread calling SendObject (not a wtd runtime thread): no Enter/Exit.
            try
            {
                WtdStructured s = Owner<WtdStructured>(user);
                return s == null ? 1 : s.NativeSerialize(typeId, obj, buf, (long)(ulong)cap, outLen);
            }
            catch (Exception e)
            {
                WtdLibrary.ReportCallbackException(e);
                return 1;
            }
        }

        [MonoPInvokeCallback(typeof(DeserializeFn))]
        private static int OnDeserialize(IntPtr user, ushort typeId, IntPtr data, UIntPtr len, IntPtr outObj)
        {
            try
            {
                WtdStructured s = Owner<WtdStructured>(user);
                return s == null ? 1 : s.NativeDeserialize(typeId, data, (int)len, outObj);
            }
            catch (Exception e)
            {
                WtdLibrary.ReportCallbackException(e);
                return 1;
            }
        }

        [MonoPInvokeCallback(typeof(MonitorAlertFn))]
        private static unsafe void OnMonitorAlert(IntPtr user, IntPtr alert)
        {
            Enter();
            try
            {
                WtdMonitor m = Owner<WtdMonitor>(user);
                if (m != null) m.DeliverAlert(*(MonitorAlert*)alert);
            }
            catch (Exception e) { WtdLibrary.ReportCallbackException(e); }
            finally { Exit(); }
        }

        [MonoPInvokeCallback(typeof(LogFn))]
        private static void OnLog(IntPtr user, uint level, IntPtr message)
        {
            Enter();
            try { WtdLibrary.DeliverLog((int)level, Utf8.FromNative(message)); }
            catch (Exception e) { WtdLibrary.ReportCallbackException(e); }
            finally { Exit(); }
        }
    }
}
