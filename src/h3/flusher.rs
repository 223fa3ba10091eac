//! The shared flusher: one runtime task that hands every connection's outbox to quinn.
//!
//! An application thread that sends to many connections in a row (a broadcast to thousands of
//! sessions, a game tick) queues into each connection's outbox; the first connection it touches
//! wakes this task, the others only join its list — one cross-thread wake-up per burst instead of
//! one per connection. The task hands over what quinn has room for, without waiting; a connection
//! whose quinn buffer is full is passed to its own flush task, which waits for room.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
}

static FLUSHER: Lazy<Flusher> = Lazy::new(|| Flusher {
    pending: Mutex::new(Vec::new()),
    work: Notify::new(),
    running: AtomicBool::new(false),
});

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
        FLUSHER.running.store(false, Ordering::Release);
    }
}

async fn run() {
    let _running = Running;
    let mut round = Vec::new();
    let mut last_small: Option<std::time::Instant> = None;
    loop {
        std::mem::swap(&mut *lock(&FLUSHER.pending), &mut round);
        if round.is_empty() {
            FLUSHER.work.notified().await; // a permit stored by notify_one is not lost
            continue;
        }
        let mut handed = 0;
        for conn in round.drain(..) {
            handed += conn.flush_ready();
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
