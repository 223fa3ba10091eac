//! Time for the datagram layer: monotonic microseconds plus wall-clock seconds, from the system
//! or from a manual clock that tests advance by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A time source.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time in microseconds.
    fn now_us(&self) -> u64;
    /// Unix time in seconds for monotonic instant `us`.
    fn unix_at(&self, us: u64) -> f64;
}

/// The real clock.
pub struct SystemClock {
    start: Instant,
    start_unix: f64,
}

impl SystemClock {
    /// A clock starting now, ready to share.
    pub fn shared() -> Arc<dyn Clock> {
        let start_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Arc::new(SystemClock {
            start: Instant::now(),
            start_unix,
        })
    }
}

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
    fn unix_at(&self, us: u64) -> f64 {
        self.start_unix + us as f64 / 1e6
    }
}

/// A clock that only moves when told to.
#[derive(Default)]
pub struct ManualClock {
    us: AtomicU64,
}

impl ManualClock {
    /// A manual clock at 0.
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock::default())
    }
    /// Moves time forward.
    pub fn advance_us(&self, us: u64) {
        self.us.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> u64 {
        self.us.load(Ordering::SeqCst)
    }
    fn unix_at(&self, us: u64) -> f64 {
        1_700_000_000.0 + us as f64 / 1e6
    }
}
