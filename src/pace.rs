//! Back-pressure between a connection's driver and an application that reads a receive queue
//! but is momentarily behind (on a loaded or pinned core the driver can fill a queue within one
//! scheduler slice of the reader).
//!
//! Rule: when a batch does not fit and the queue's reader is active (blocked in a receive, or it
//! took datagrams within [`READER_ACTIVE`]), the queue takes what fits and the driver waits on
//! [`Room`] — woken once the reader has emptied half the queue — for at most
//! [`crate::h3::connection::BACKPRESSURE_WAIT`], then offers the rest again without deferral
//! (the queue's own policy evicts, counted). Datagrams not yet taken from quinn wait in quinn's
//! receive buffer meanwhile. A queue nobody reads never slows the connection down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How recently the application must have taken datagrams to count as reading the queue.
pub(crate) const READER_ACTIVE: Duration = Duration::from_millis(100);

/// Reader-side state, kept under the receive queue's lock.
#[derive(Debug, Default)]
pub(crate) struct ReaderPace {
    last_take: Option<Instant>,
    driver_waiting: bool,
}

impl ReaderPace {
    /// Records a take; true when the waiting driver should be woken (the queue, now holding
    /// `queued` of `capacity`, is at most half full).
    pub(crate) fn took(&mut self, queued: usize, capacity: usize) -> bool {
        self.last_take = Some(Instant::now());
        if self.driver_waiting && queued <= capacity / 2 {
            self.driver_waiting = false;
            return true;
        }
        false
    }

    /// Whether the driver should wait for this queue's reader (see the module rule); when it
    /// returns true the driver is recorded as waiting.
    pub(crate) fn defer(&mut self, waiters: usize) -> bool {
        let active = waiters > 0 || self.last_take.is_some_and(|t| t.elapsed() < READER_ACTIVE);
        if active {
            self.driver_waiting = true;
        }
        active
    }
}

/// What the driver waits on while a queue is full.
#[derive(Debug, Default, Clone)]
pub(crate) struct Room(Arc<Notify>);

impl Room {
    /// Wakes the driver when `wake` (the result of [`ReaderPace::took`]).
    pub(crate) fn wake_driver(&self, wake: bool) {
        if wake {
            self.0.notify_one();
        }
    }

    /// The notifier handed to the driver.
    pub(crate) fn notifier(&self) -> Arc<Notify> {
        self.0.clone()
    }
}
