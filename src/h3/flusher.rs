//! The shared flusher: one runtime task that hands every connection's outbox to quinn.
//!
//! An application thread that sends to many connections in a row (a broadcast to thousands of
//! sessions, a game tick) queues into each connection's outbox; the first connection it touches
//! wakes this task, the others only join its list — one cross-thread wake-up per burst instead of
//! one per connection. The task hands over what quinn has room for, without waiting; a connection
//! whose quinn buffer is full is passed to its own flush task, which waits for room.
//!
//! Send coalescing ([`set_send_coalescing`], off by default): with an interval set, the task
//! looks at the outboxes once per interval while there is traffic, so application threads never
//! wake it — a send costs no system call at all (a wake-up is a futex/eventfd write plus, on a
//! shared core, a context switch: 5–10 µs in the VM the benchmark runs on). Datagrams then
//! leave up to one interval later, like GameNetworkingSockets' Nagle time. After
//! [`IDLE_TICKS`] intervals without a send the task stops ticking and the next send wakes it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

use once_cell::sync::Lazy;
use tokio::sync::Notify;

use super::connection::Connection;
use crate::lock::lock;

struct Flusher {
    /// Connections with something in their outbox, in the order they were scheduled.
    pending: Mutex<Vec<Arc<Connection>>>,
    work: Notify,
    /// The task is running on the current runtime (reset when the runtime drops it).
    running: AtomicBool,
    /// Coalescing interval in µs (0: wake the task at once).
    interval_us: AtomicU64,
    /// The task will look at `pending` within one interval without being woken.
    ticking: AtomicBool,
}

static FLUSHER: Lazy<Flusher> = Lazy::new(|| Flusher {
    pending: Mutex::new(Vec::new()),
    work: Notify::new(),
    running: AtomicBool::new(false),
    interval_us: AtomicU64::new(0),
    ticking: AtomicBool::new(false),
});

/// Longest coalescing interval accepted (GameNetworkingSockets' Nagle time defaults to 5 ms).
pub const MAX_SEND_COALESCING: Duration = Duration::from_millis(100);
/// Empty intervals after which the ticking task goes back to waiting for a wake-up.
pub const IDLE_TICKS: u32 = 100;

/// Sets how long datagrams sent from application threads may wait so that they leave together:
/// `Duration::ZERO` (the default) hands every burst to the network at once, at the price of one
/// wake-up of a wtd thread per burst; an interval `d` makes wtd collect sends and hand them over
/// every `d` while traffic lasts, with no wake-up (no system call) on the sending thread. Sends
/// made inside callbacks (on wtd's threads) are not delayed. Applies to every connection, takes
/// effect at once; `WTD_ERR_INVALID_ARGUMENT` above [`MAX_SEND_COALESCING`].
pub fn set_send_coalescing(interval: Duration) -> Result<()> {
    if interval > MAX_SEND_COALESCING {
        return Err(Error::invalid(format!(
            "send coalescing interval {interval:?} is above the maximum {MAX_SEND_COALESCING:?}"
        )));
    }
    FLUSHER
        .interval_us
        .store(interval.as_micros() as u64, Ordering::SeqCst);
    // A task waiting for a wake-up picks the new interval up at its next round.
    FLUSHER.work.notify_one();
    Ok(())
}

/// The current coalescing interval.
pub fn send_coalescing() -> Duration {
    Duration::from_micros(FLUSHER.interval_us.load(Ordering::SeqCst))
}

/// A flush round this small suggests the sender and the flusher alternate on one core...
const SMALL_ROUND: usize = 4;
/// ...when the previous small round was this recent.
const BURST_GAP: std::time::Duration = std::time::Duration::from_micros(50);

/// Asks the flusher to hand `conn`'s outbox to quinn. The caller has just marked the outbox as
/// being flushed, so each connection is in the list at most once.
pub(crate) fn schedule(conn: Arc<Connection>) {
    let first = {
        let mut pending = lock(&FLUSHER.pending);
        pending.push(conn);
        pending.len() == 1
    };
    // SeqCst pairs with the task's `ticking` store before its last look at `pending`: either it
    // sees this connection, or this load sees that it stopped ticking.
    let first = first && !FLUSHER.ticking.load(Ordering::SeqCst);
    if !FLUSHER.running.swap(true, Ordering::AcqRel) {
        match crate::runtime::handle() {
            Ok(h) => {
                h.spawn(run());
            }
            Err(_) => FLUSHER.running.store(false, Ordering::Release),
        }
    }
    // Poll mode with no thread driving the runtime: waking the task would only cost a system
    // call; the next thread that drives it calls `kick` first.
    if first && !crate::runtime::undriven() {
        FLUSHER.work.notify_one();
    }
}

/// Wakes the task if connections wait for it (poll mode: called by each thread that starts to
/// drive the runtime, after it counts as driving; see `schedule`).
pub(crate) fn kick() {
    if !lock(&FLUSHER.pending).is_empty() {
        FLUSHER.work.notify_one();
    }
}

/// Marks the task gone when the runtime drops it (shutdown), so the next runtime starts one.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        FLUSHER.ticking.store(false, Ordering::SeqCst);
        FLUSHER.running.store(false, Ordering::Release);
    }
}

async fn run() {
    let _running = Running;
    let mut round = Vec::new();
    let mut last_small: Option<std::time::Instant> = None;
    let mut idle_ticks = 0u32;
    loop {
        std::mem::swap(&mut *lock(&FLUSHER.pending), &mut round);
        let interval = send_coalescing();
        if round.is_empty() {
            if !interval.is_zero() && idle_ticks < IDLE_TICKS {
                idle_ticks += 1;
                FLUSHER.ticking.store(true, Ordering::SeqCst);
                tokio::time::sleep(interval).await;
                continue;
            }
            FLUSHER.ticking.store(false, Ordering::SeqCst);
            if !lock(&FLUSHER.pending).is_empty() {
                continue; // scheduled while we stopped ticking, without a wake-up
            }
            FLUSHER.work.notified().await; // a permit stored by notify_one is not lost
            continue;
        }
        idle_ticks = 0;
        let mut handed = 0;
        for conn in round.drain(..) {
            handed += conn.flush_ready();
        }
        if !interval.is_zero() {
            // Coalescing: the next round is one interval away; senders meanwhile only queue.
            FLUSHER.ticking.store(true, Ordering::SeqCst);
            tokio::time::sleep(interval).await;
            continue;
        }
        if handed < SMALL_ROUND {
            // A sender on another thread that woke us is often preempted by us on a shared
            // core right after its wake-up call; each round would then carry one datagram and
            // each send cost two context switches. When tiny rounds follow each other closely
            // (a burst being sent one wake-up at a time), give the CPU back once so the sender
            // can queue the rest of its burst. A lone datagram (a ping) is not delayed.
            let now = std::time::Instant::now();
            if last_small.is_some_and(|t| now.duration_since(t) < BURST_GAP) {
                std::thread::yield_now();
            }
            last_small = Some(now);
        }
    }
}
