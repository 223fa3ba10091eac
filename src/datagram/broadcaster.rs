//! One datagram to many sessions (the seed's DatagramBroadcaster, corrected): the payload is
//! encoded once and shared, a transient failure (queue full) keeps the transport, closed
//! transports are pruned.

use crate::lock::lock;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::transport::DatagramTransport;
use crate::error::{Error, Result};

/// Outcome of one broadcast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastResult {
    /// Transports that accepted the datagram.
    pub accepted: usize,
    /// Transports that refused it this time (queue full, too large) and were kept.
    pub failed: usize,
    /// Closed transports removed.
    pub pruned: usize,
}

/// A set of transports to broadcast to. Cheap to clone.
#[derive(Clone, Default)]
pub struct Broadcaster {
    transports: Arc<Mutex<Vec<DatagramTransport>>>,
}

impl Broadcaster {
    /// An empty broadcaster.
    pub fn new() -> Self {
        Self::default()
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<DatagramTransport>> {
        lock(&self.transports)
    }

    /// Adds a transport (adding the same one twice is a no-op); closed ones are refused.
    pub fn add(&self, t: &DatagramTransport) -> Result<()> {
        if t.is_closed() {
            return Err(Error::closed("transport is closed"));
        }
        let mut list = self.list();
        if !list.iter().any(|x| x.same(t)) {
            list.push(t.clone());
        }
        Ok(())
    }

    /// Removes a transport; returns whether it was there.
    pub fn remove(&self, t: &DatagramTransport) -> bool {
        let mut list = self.list();
        let before = list.len();
        list.retain(|x| !x.same(t));
        list.len() != before
    }

    /// Transports currently registered (closed ones are pruned first).
    pub fn count(&self) -> usize {
        let mut list = self.list();
        list.retain(|t| !t.is_closed());
        list.len()
    }

    /// Sends `data` to every transport without waiting; returns how many accepted it.
    pub fn broadcast(&self, data: &[u8], priority: i32, ttl: Option<Duration>) -> BroadcastResult {
        let shared = Bytes::copy_from_slice(data);
        // Snapshot so sends happen without holding the list lock.
        let targets: Vec<DatagramTransport> = self.list().clone();
        let mut r = BroadcastResult::default();
        let mut closed = Vec::new();
        for t in &targets {
            match t.send_shared(&shared, priority, ttl, Some(Duration::ZERO)) {
                Ok(()) => r.accepted += 1,
                Err(_) if t.is_closed() => closed.push(t.clone()),
                Err(_) => r.failed += 1,
            }
        }
        if !closed.is_empty() {
            let mut list = self.list();
            let before = list.len();
            list.retain(|t| !closed.iter().any(|c| c.same(t)));
            r.pruned = before - list.len();
        }
        r
    }
}
