//! Watches a transport (the seed's DatagramMonitor, corrected): samples its counters every
//! interval, keeps the last `samples_maxlen`, and raises alerts once per episode (the seed
//! repeated them every interval) — `high_queue_size`, `low_success_rate`,
//! `increasing_send_time`.

use crate::lock::lock;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::clock::{Clock, SystemClock};
use super::transport::DatagramTransport;
use crate::error::{Error, Result};
use crate::runtime;

/// The alert kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(non_camel_case_types)]
pub enum wtd_alert_kind {
    /// Outgoing queue above `queue_threshold` × high water mark.
    WTD_ALERT_HIGH_QUEUE_SIZE = 0,
    /// Send success rate below `success_rate_threshold`.
    WTD_ALERT_LOW_SUCCESS_RATE = 1,
    /// Mean send time of the newer half of the trend window > 1.25 × the older half's (and ≥ 1 ms).
    WTD_ALERT_INCREASING_SEND_TIME = 2,
}

crate::error::c_enum!(wtd_alert_kind {
    WTD_ALERT_HIGH_QUEUE_SIZE => c"high_queue_size",
    WTD_ALERT_LOW_SUCCESS_RATE => c"low_success_rate",
    WTD_ALERT_INCREASING_SEND_TIME => c"increasing_send_time",
});

impl wtd_alert_kind {
    /// pywebtransport's alert type string.
    pub fn as_str(self) -> &'static str {
        self.name()
    }
}

/// Monitor settings (defaults: pywebtransport's).
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Sampling period (5 s).
    pub interval: Duration,
    /// Samples kept (100).
    pub samples_maxlen: usize,
    /// Alerts kept (50; oldest dropped).
    pub alerts_maxlen: usize,
    /// Fraction of the high water mark that counts as a high queue (0.9).
    pub queue_threshold: f64,
    /// Success rate below which to alert (0.8).
    pub success_rate_threshold: f64,
    /// Samples compared for the send-time trend (10).
    pub trend_window: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: Duration::from_secs(5),
            samples_maxlen: 100,
            alerts_maxlen: 50,
            queue_threshold: 0.9,
            success_rate_threshold: 0.8,
            trend_window: 10,
        }
    }
}

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix time (s).
    pub timestamp: f64,
    /// Cumulative datagrams sent.
    pub datagrams_sent: u64,
    /// Cumulative datagrams received.
    pub datagrams_received: u64,
    /// Cumulative send success rate.
    pub send_success_rate: f64,
    /// Mean queueing time (s) of the datagrams sent since the previous sample.
    pub avg_send_time: f64,
    /// Outgoing queue size now.
    pub queue_size: u64,
}

/// One alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Kind.
    pub kind: wtd_alert_kind,
    /// Human-readable message.
    pub message: String,
    /// Unix time (s).
    pub timestamp: f64,
}

struct State {
    samples: VecDeque<Sample>,
    alerts: VecDeque<Alert>,
    active: [bool; 3],
    last: Option<(u64, f64)>,
}

type AlertCallback = Arc<dyn Fn(&Alert) + Send + Sync>;

struct Inner {
    transport: DatagramTransport,
    config: MonitorConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    callback: Mutex<Option<AlertCallback>>,
    epoch: AtomicU64,
    running: AtomicBool,
}

/// A transport monitor. Cheap to clone.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

impl Monitor {
    /// A monitor of `transport` (not sampling until `start`).
    pub fn new(transport: &DatagramTransport, config: MonitorConfig) -> Result<Self> {
        Self::with_clock(transport, config, SystemClock::shared())
    }

    /// As `new` with an explicit clock (tests).
    pub fn with_clock(
        transport: &DatagramTransport,
        config: MonitorConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        if config.interval.is_zero() || config.samples_maxlen == 0 || config.trend_window < 2 {
            return Err(Error::invalid(
                "interval and samples_maxlen must be > 0, trend_window ≥ 2",
            ));
        }
        Ok(Monitor {
            inner: Arc::new(Inner {
                transport: transport.clone(),
                config,
                clock,
                state: Mutex::new(State {
                    samples: VecDeque::new(),
                    alerts: VecDeque::new(),
                    active: [false; 3],
                    last: None,
                }),
                callback: Mutex::new(None),
                epoch: AtomicU64::new(0),
                running: AtomicBool::new(false),
            }),
        })
    }

    /// Starts sampling every interval (first sample after one interval). Restarting is allowed.
    pub fn start(&self) -> Result<()> {
        let epoch = self.inner.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.running.store(true, Ordering::SeqCst);
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.config.interval;
        runtime::handle()?.spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.epoch.load(Ordering::SeqCst) != epoch {
                    return;
                }
                Monitor { inner }.sample_now();
            }
        });
        Ok(())
    }

    /// Stops sampling.
    pub fn stop(&self) {
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        self.inner.running.store(false, Ordering::SeqCst);
    }

    /// True while sampling.
    pub fn is_monitoring(&self) -> bool {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// Installs (None: removes) the alert callback (called on the sampling thread).
    pub fn set_alert_callback(&self, cb: Option<AlertCallback>) {
        *lock(&self.inner.callback) = cb;
    }

    /// Takes one sample now and evaluates the alerts (what the timer does each interval).
    pub fn sample_now(&self) {
        let inner = &self.inner;
        let t = &inner.transport;
        let s = t.stats();
        let now = inner.clock.unix_at(inner.clock.now_us());
        let mut st = lock(&inner.state);
        let (prev_sent, prev_time) = st.last.unwrap_or((0, 0.0));
        let sent_delta = s.timed_sends.saturating_sub(prev_sent);
        let avg_send_time = if sent_delta > 0 {
            (s.total_send_time - prev_time) / sent_delta as f64
        } else {
            0.0
        };
        st.last = Some((s.timed_sends, s.total_send_time));
        let sample = Sample {
            timestamp: now,
            datagrams_sent: s.datagrams_sent,
            datagrams_received: s.datagrams_received,
            send_success_rate: s.send_success_rate(),
            avg_send_time,
            queue_size: t.send_buffer_size() as u64,
        };
        if st.samples.len() >= inner.config.samples_maxlen {
            st.samples.pop_front();
        }
        st.samples.push_back(sample);

        let c = &inner.config;
        let hwm = t.config().outgoing_high_water_mark as f64;
        let conditions = [
            (sample.queue_size as f64 > hwm * c.queue_threshold).then(|| {
                format!(
                    "High queue size: {} (threshold {:.0})",
                    sample.queue_size,
                    hwm * c.queue_threshold
                )
            }),
            (sample.send_success_rate < c.success_rate_threshold)
                .then(|| format!("Low success rate: {:.2}%", sample.send_success_rate * 100.0)),
            trend(&st.samples, c.trend_window).map(|(a, b)| {
                format!(
                    "Send time increasing: {:.1}ms -> {:.1}ms",
                    a * 1000.0,
                    b * 1000.0
                )
            }),
        ];
        let kinds = [
            wtd_alert_kind::WTD_ALERT_HIGH_QUEUE_SIZE,
            wtd_alert_kind::WTD_ALERT_LOW_SUCCESS_RATE,
            wtd_alert_kind::WTD_ALERT_INCREASING_SEND_TIME,
        ];
        let mut raised = Vec::new();
        for (i, cond) in conditions.into_iter().enumerate() {
            match cond {
                Some(message) if !st.active[i] => {
                    st.active[i] = true;
                    raised.push(Alert {
                        kind: kinds[i],
                        message,
                        timestamp: now,
                    });
                }
                Some(_) => {}
                None => st.active[i] = false,
            }
        }
        for a in &raised {
            if st.alerts.len() >= c.alerts_maxlen {
                st.alerts.pop_front();
            }
            st.alerts.push_back(a.clone());
        }
        drop(st);
        if let Some(cb) = lock(&inner.callback).clone() {
            for a in &raised {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(a))).is_err() {
                    log_error!("an alert callback panicked");
                }
            }
        }
    }

    /// The newest `limit` samples (all with None), oldest first.
    pub fn samples(&self, limit: Option<usize>) -> Vec<Sample> {
        let st = lock(&self.inner.state);
        let n = limit.unwrap_or(usize::MAX).min(st.samples.len());
        st.samples
            .iter()
            .skip(st.samples.len() - n)
            .copied()
            .collect()
    }

    /// Alerts raised so far (the last `alerts_maxlen`), oldest first.
    pub fn alerts(&self) -> Vec<Alert> {
        lock(&self.inner.state).alerts.iter().cloned().collect()
    }
}

/// (older half mean, newer half mean) of avg_send_time over the last `window` samples when the
/// newer exceeds the older by more than 25 %.
fn trend(samples: &VecDeque<Sample>, window: usize) -> Option<(f64, f64)> {
    if samples.len() < window {
        return None;
    }
    let recent: Vec<f64> = samples
        .iter()
        .skip(samples.len() - window)
        .map(|s| s.avg_send_time)
        .collect();
    let (a, b) = recent.split_at(window / 2);
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let (ma, mb) = (mean(a), mean(b));
    // A rise below 1 ms is noise on any network, not a trend worth an alert.
    (mb >= 0.001 && mb > ma * 1.25).then_some((ma, mb))
}
