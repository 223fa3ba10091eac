// Monitor.cs — the transport monitor (periodic samples and alerts) and transport diagnostics.
using System;
using System.Threading;

namespace Wtd
{
    /// <summary>The monitor's alert kinds (wtd_alert_kind).</summary>
    public enum MonitorAlertKind
    {
        /// <summary>Outgoing queue above the threshold.</summary>
        HighQueueSize = 0,
        /// <summary>Send success rate below the threshold.</summary>
        LowSuccessRate = 1,
        /// <summary>Send time trending up.</summary>
        IncreasingSendTime = 2,
    }

    /// <summary>Problems WtdTransport.DiagnoseIssues finds (wtd_issue).</summary>
    public enum TransportIssue
    {
        /// <summary>Send success rate below 0.9.</summary>
        LowSendSuccessRate = 1,
        /// <summary>Drop rate above 0.1.</summary>
        HighDropRate = 2,
        /// <summary>Outgoing queue above 90 %.</summary>
        OutgoingQueueNearlyFull = 3,
        /// <summary>Incoming queue above 90 %.</summary>
        IncomingQueueNearlyFull = 4,
        /// <summary>Average send time above 100 ms.</summary>
        HighSendLatency = 5,
        /// <summary>The transport is closed.</summary>
        Closed = 6,
        /// <summary>The session is not open.</summary>
        SessionNotReady = 7,
    }

    /// <summary>Monitor options; unset (0) fields keep wtd's defaults.</summary>
    public sealed class MonitorOptions
    {
        /// <summary>Sampling period, ms (0 = default 5000).</summary>
        public uint IntervalMs;
        /// <summary>Samples kept (0 = default 100).</summary>
        public uint SamplesMaxlen;
        /// <summary>Alerts kept (0 = default 50).</summary>
        public uint AlertsMaxlen;
        /// <summary>High-queue alert threshold as a fraction of the high water mark (null = 0.9).</summary>
        public double? QueueThreshold;
        /// <summary>Low-success-rate alert threshold (null = 0.8).</summary>
        public double? SuccessRateThreshold;
        /// <summary>Samples compared by the send-time trend (0 = default 10).</summary>
        public uint TrendWindow;
    }

    /// <summary>An alert raised by a monitor (runs on the sampling thread).</summary>
    public delegate void MonitorAlertHandler(WtdMonitor monitor, MonitorAlert alert);

    /// <summary>A transport monitor (wtd_monitor). Thread-safe.</summary>
    public sealed unsafe class WtdMonitor : IDisposable
    {
        private readonly MonitorHandle handle = new MonitorHandle();
        private MonitorAlertHandler onAlert;
        private int disposed;

        /// <summary>Creates a monitor of `transport` (not sampling until Start or SampleNow).</summary>
        public WtdMonitor(WtdTransport transport, MonitorOptions options = null)
        {
            if (transport == null) throw new ArgumentNullException("transport");
            options = options ?? new MonitorOptions();
            NativeMonitorOptions n = new NativeMonitorOptions(); n.StructSize = (uint)sizeof(NativeMonitorOptions);
            WtdException.Check(NativeMethods.wtd_monitor_options_default(ref n));
            if (options.IntervalMs != 0) n.IntervalMs = options.IntervalMs;
            if (options.SamplesMaxlen != 0) n.SamplesMaxlen = options.SamplesMaxlen;
            if (options.AlertsMaxlen != 0) n.AlertsMaxlen = options.AlertsMaxlen;
            if (options.QueueThreshold.HasValue) n.QueueThreshold = options.QueueThreshold.Value;
            if (options.SuccessRateThreshold.HasValue) n.SuccessRateThreshold = options.SuccessRateThreshold.Value;
            if (options.TrendWindow != 0) n.TrendWindow = options.TrendWindow;
            IntPtr m;
            WtdException.Check(NativeMethods.wtd_monitor_new(transport.Handle, ref n, out m));
            handle.Attach(m);
        }

        /// <summary>Starts periodic sampling on a wtd thread.</summary>
        public void Start() { WtdException.Check(NativeMethods.wtd_monitor_start(handle)); }

        /// <summary>Stops sampling (samples and alerts stay).</summary>
        public void Stop() { WtdException.Check(NativeMethods.wtd_monitor_stop(handle)); }

        /// <summary>True while sampling.</summary>
        public bool IsMonitoring
        {
            get
            {
                byte b;
                WtdException.Check(NativeMethods.wtd_monitor_is_monitoring(handle, out b));
                return b != 0;
            }
        }

        /// <summary>Takes one sample now; a raised alert's handler runs on this thread first.</summary>
        public void SampleNow() { WtdException.Check(NativeMethods.wtd_monitor_sample_now(handle)); }

        /// <summary>Copies the newest samples, oldest first, into `samples`; returns the count.</summary>
        public int GetSamples(MonitorSample[] samples)
        {
            if (samples == null) throw new ArgumentNullException("samples");
            UIntPtr n;
            fixed (MonitorSample* p = samples)
                WtdException.Check(NativeMethods.wtd_monitor_get_samples(handle, p, (UIntPtr)sizeof(MonitorSample), (UIntPtr)samples.Length, out n));
            return (int)n;
        }

        /// <summary>Copies the newest alerts, oldest first, into `alerts`; returns the count.</summary>
        public int GetAlerts(MonitorAlert[] alerts)
        {
            if (alerts == null) throw new ArgumentNullException("alerts");
            UIntPtr n;
            fixed (MonitorAlert* p = alerts)
                WtdException.Check(NativeMethods.wtd_monitor_get_alerts(handle, p, (UIntPtr)sizeof(MonitorAlert), (UIntPtr)alerts.Length, out n));
            return (int)n;
        }

        /// <summary>Installs (null removes) the alert handler.</summary>
        public void SetAlertHandler(MonitorAlertHandler handler)
        {
            // The managed lock is not held across the native call: replacing callbacks waits
            // for a running callback, which may itself call into this object.
            lock (handle)
            {
                onAlert = handler;
                if (handle.CallbackState == IntPtr.Zero && handler != null) handle.CallbackState = Callbacks.NewState(this);
            }
            var cb = new NativeMonitorCallbacks
            {
                StructSize = (uint)sizeof(NativeMonitorCallbacks),
                OnAlert = Callbacks.MonitorAlertPtr,
                UserData = handle.CallbackState,
            };
            WtdException.Check(NativeMethods.wtd_monitor_set_callbacks(handle, handler != null ? &cb : null));
        }

        internal void DeliverAlert(MonitorAlert alert)
        {
            MonitorAlertHandler h = onAlert;
            if (h != null) h(this, alert);
        }

        /// <summary>"high_queue_size", "low_success_rate" or "increasing_send_time".</summary>
        public static string KindString(MonitorAlertKind kind) { return Utf8.FromNative(NativeMethods.wtd_alert_kind_str((uint)kind)); }

        /// <summary>Stops sampling and frees the monitor. Safe to call twice.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref disposed, 1) != 0) return;
            handle.Dispose();
        }
    }

    public sealed partial class WtdTransport
    {
        /// <summary>Runs the transport's health checks; returns the issues found (allocates).</summary>
        public unsafe TransportIssue[] DiagnoseIssues()
        {
            uint* codes = stackalloc uint[16];
            UIntPtr n;
            WtdException.Check(NativeMethods.wtd_transport_diagnose_issues(Handle, codes, (UIntPtr)16, out n));
            var r = new TransportIssue[(int)n];
            for (int i = 0; i < r.Length; i++) r[i] = (TransportIssue)codes[i];
            return r;
        }

        /// <summary>The issues as JSON: [{"code": n, "message": ".."}, ...].</summary>
        public unsafe string DiagnoseIssuesJson()
        {
            byte[] buf = new byte[1024];
            while (true)
            {
                UIntPtr len;
                int rc;
                fixed (byte* p = buf)
                {
                    rc = NativeMethods.wtd_transport_diagnose_issues_json(Handle, p, (UIntPtr)buf.Length, out len);
                    if (rc == 0) return Utf8.FromNative(p, (int)len);
                }
                if (rc != (int)WtdResult.BufferTooSmall) throw WtdException.FromCode(rc, -1);
                buf = new byte[(int)len + 256];
            }
        }
    }
}
