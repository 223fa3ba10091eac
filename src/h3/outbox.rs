//! A connection's outbox: datagrams its sessions accepted for sending and not yet handed to
//! quinn. One per connection, so the room check and the hand-over are atomic across all of its
//! sessions.
//!
//! An application thread's send only appends: the datagram's bytes go back to back into one
//! buffer, its length and whose it is into two small arrays ([`Staged`]). The runtime thread that
//! flushes cuts the buffer into one `Bytes` per datagram for quinn ([`Staged::cut_into`]). So a
//! send costs a copy and two pushes — no allocation, no reference count — and the buffer is
//! allocated on the runtime thread that also frees it (glibc's malloc takes its slow path when one
//! thread allocates and another frees: 9 % of a 64 B sender's profile, plus 3 % in free).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// Per-session send counters shared with the outbox.
#[derive(Debug, Default)]
pub struct SendCounters {
    /// Datagrams accepted for sending (queued in the outbox or handed to quinn).
    pub datagrams: AtomicU64,
    /// Payload bytes accepted (without the quarter stream id).
    pub bytes: AtomicU64,
    /// Accepted datagrams that never reached quinn: the connection closed first, or the path's
    /// datagram limit shrank below their size while they waited (counted, never silent).
    pub dropped_unsent: AtomicU64,
}

/// A datagram ready for quinn (prefix included) and the counters of the session that sent it.
pub(crate) type Ready = (Bytes, Arc<SendCounters>);

/// Smallest buffer the outbox starts a burst in (≈ 230 datagrams of 64 B, 16 of 1000 B); it grows
/// by doubling within a burst and starts the next one at the last burst's size, capped at
/// [`STAGE_HINT_MAX`].
pub const OUTBOX_CHUNK: usize = 16 * 1024;
/// Largest size a fresh buffer starts at.
const STAGE_HINT_MAX: usize = 256 * 1024;

/// Datagrams appended since the last flush took them: bytes, lengths, owners.
#[derive(Default)]
pub(crate) struct Staged {
    data: Vec<u8>,
    lens: Vec<u32>,
    /// Runs of consecutive datagrams from one session: (its counters, how many).
    owners: Vec<(Arc<SendCounters>, usize)>,
}

impl Staged {
    /// Appends `prefix` + `payload` for the session owning `counters` (a single send).
    pub(crate) fn push_one(&mut self, prefix: &[u8], payload: &[u8], counters: &Arc<SendCounters>) {
        self.append(prefix, payload);
        self.own(counters, 1);
    }

    /// Appends `prefix` + each payload for the session owning `counters`; `bytes` is their
    /// total length, prefixes included (the caller has it: one reservation for the batch).
    pub(crate) fn push_all(
        &mut self,
        prefix: &[u8],
        payloads: &[&[u8]],
        bytes: usize,
        counters: &Arc<SendCounters>,
    ) {
        if payloads.is_empty() {
            return;
        }
        self.data.reserve(bytes);
        self.lens.reserve(payloads.len());
        for p in payloads {
            self.append(prefix, p);
        }
        self.own(counters, payloads.len());
    }

    #[inline(always)]
    fn append(&mut self, prefix: &[u8], payload: &[u8]) {
        // The prefix is a 1–8 byte varint, almost always 1 or 2 bytes: pushing those beats a
        // memcpy call per datagram.
        match *prefix {
            [a] => self.data.push(a),
            [a, b] => self.data.extend_from_slice(&[a, b]),
            _ => self.data.extend_from_slice(prefix),
        }
        self.data.extend_from_slice(payload);
        self.lens.push((prefix.len() + payload.len()) as u32);
    }

    /// Records that the last `n` datagrams belong to the session owning `counters`.
    fn own(&mut self, counters: &Arc<SendCounters>, n: usize) {
        match self.owners.last_mut() {
            Some((c, k)) if Arc::ptr_eq(c, counters) => *k += n,
            _ => self.owners.push((counters.clone(), n)),
        }
    }

    /// Number of datagrams staged.
    pub(crate) fn len(&self) -> usize {
        self.lens.len()
    }

    /// Moves every staged datagram, in order, to the back of `into` as its own `Bytes` (slices
    /// of one buffer, which leaves with them). Keeps the arrays' capacity.
    pub(crate) fn cut_into(&mut self, into: &mut VecDeque<Ready>) {
        if self.lens.is_empty() {
            return;
        }
        let mut whole = Bytes::from(std::mem::take(&mut self.data));
        let mut lens = self.lens.drain(..);
        for (counters, n) in self.owners.drain(..) {
            for len in lens.by_ref().take(n) {
                into.push_back((whole.split_to(len as usize), counters.clone()));
            }
        }
    }

    /// Drops everything staged, counting each datagram as never sent on its session.
    pub(crate) fn drop_unsent(&mut self) {
        for (counters, n) in self.owners.drain(..) {
            counters
                .dropped_unsent
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        self.lens.clear();
        self.data = Vec::new();
    }
}

/// The outbox proper (kept under the connection's lock).
#[derive(Default)]
pub(crate) struct Outbox {
    /// Datagrams already cut, older than everything staged: what a flush could not hand over.
    pub(crate) ready: VecDeque<Ready>,
    /// Datagrams appended since the last flush, newer than `ready`.
    pub(crate) staged: Staged,
    /// Emptied arrays a flush hands back, swapped in when it takes `staged`.
    spare: Staged,
    /// Wire bytes (prefix included) accepted and not yet handed to quinn.
    pub(crate) bytes: usize,
    /// What quinn's datagram send buffer held at the last look (its own accounting), so the
    /// room check needs quinn's lock only when the outbox looks full.
    pub(crate) quinn_used: usize,
    /// The flush task has been woken and has not yet found the outbox empty.
    pub(crate) flushing: bool,
    /// The connection is over: nothing more is accepted.
    pub(crate) closed: bool,
    /// Where a runtime thread's direct sends are copied (see [`Outbox::copy_in`]).
    arena: BytesMut,
}

impl Outbox {
    /// Nothing waits to be handed to quinn.
    pub(crate) fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.staged.len() == 0
    }

    /// Takes everything waiting: `ready` is swapped into `batch` (which must be empty) and the
    /// staged datagrams are returned, to be cut outside the lock (after `batch`). Give the
    /// returned arrays back with [`Outbox::give_back`] once cut.
    /// The senders get the spare arrays and a fresh buffer sized after the one taken, allocated
    /// here, on the flushing runtime thread (one per connection at a time).
    pub(crate) fn take(&mut self, batch: &mut VecDeque<Ready>) -> Staged {
        debug_assert!(batch.is_empty());
        std::mem::swap(&mut self.ready, batch);
        if self.staged.len() == 0 {
            return Staged::default();
        }
        let hint = self.staged.data.len().clamp(OUTBOX_CHUNK, STAGE_HINT_MAX);
        let mut next = std::mem::take(&mut self.spare);
        next.data = Vec::with_capacity(hint);
        std::mem::replace(&mut self.staged, next)
    }

    /// Returns the (cut, empty) arrays of a [`Outbox::take`] for the next one.
    pub(crate) fn give_back(&mut self, staged: Staged) {
        debug_assert!(staged.len() == 0);
        if self.spare.lens.capacity() == 0 {
            self.spare = staged;
        }
    }

    /// Puts what a flush could not hand over back in front of everything newer, in order.
    pub(crate) fn put_back(&mut self, mut batch: VecDeque<Ready>) {
        batch.append(&mut self.ready);
        self.ready = batch;
    }

    /// `prefix` + `payload` as one `Bytes` carved out of a shared chunk: a runtime thread's
    /// direct send to quinn (no allocation per datagram).
    pub(crate) fn copy_in(&mut self, prefix: &[u8], payload: &[u8]) -> Bytes {
        let len = prefix.len() + payload.len();
        if self.arena.capacity() < len {
            self.arena = BytesMut::with_capacity(OUTBOX_CHUNK.max(len));
        }
        self.arena.extend_from_slice(prefix);
        self.arena.extend_from_slice(payload);
        self.arena.split().freeze()
    }

    /// The connection is over: counts everything still waiting as never sent and frees it.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        for (_, counters) in self.ready.drain(..) {
            counters.dropped_unsent.fetch_add(1, Ordering::Relaxed);
        }
        self.staged.drop_unsent();
        self.bytes = 0;
        self.arena = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct sends one after another are slices of one chunk (no allocation each); a datagram
    /// that does not fit starts a new chunk; bytes are prefix then payload.
    #[test]
    fn direct_sends_share_chunks() {
        let mut ob = Outbox::default();
        let a = ob.copy_in(&[0x80, 0x01], &[7u8; 64]);
        let b = ob.copy_in(&[0x80, 0x01], &[8u8; 64]);
        assert_eq!(&a[..2], &[0x80, 0x01]);
        assert!(a[2..].iter().all(|&x| x == 7) && b[2..].iter().all(|&x| x == 8));
        assert_eq!(
            a.as_ptr() as usize + a.len(),
            b.as_ptr() as usize,
            "same chunk"
        );
        let mut last = b;
        let mut chunks = 1;
        for _ in 0..(2 * OUTBOX_CHUNK / 66) {
            let c = ob.copy_in(&[1], &[2u8; 65]);
            if last.as_ptr() as usize + last.len() != c.as_ptr() as usize {
                chunks += 1;
            }
            last = c;
        }
        assert!(
            (2..=4).contains(&chunks),
            "{chunks} chunks for 2 chunks' worth"
        );
        // Larger than a chunk: a chunk of its own size.
        let big = ob.copy_in(&[1], &vec![3u8; OUTBOX_CHUNK + 10]);
        assert_eq!(big.len(), OUTBOX_CHUNK + 11);
    }

    /// Staged datagrams of two sessions come out in order, each with its own counters, as
    /// slices of one buffer; what is left when the connection ends is counted per session; the
    /// arrays are reused (a send after the first burst allocates nothing).
    #[test]
    fn staged_datagrams_keep_order_owner_and_buffer() {
        let (a, b) = (
            Arc::new(SendCounters::default()),
            Arc::new(SendCounters::default()),
        );
        let mut ob = Outbox::default();
        for i in 0..10u8 {
            let who = if i % 4 < 2 { &a } else { &b };
            ob.staged.push_all(&[0x40 | i], &[&[i; 63]], 64, who);
        }
        assert_eq!(ob.staged.owners.len(), 5, "runs: aa bb aa bb aa");
        let mut batch = VecDeque::new();
        let mut staged = ob.take(&mut batch);
        assert!(ob.is_empty());
        staged.cut_into(&mut batch);
        assert_eq!(batch.len(), 10);
        for (i, (wire, who)) in batch.iter().enumerate() {
            assert_eq!(wire.len(), 64);
            assert_eq!(wire[0], 0x40 | i as u8);
            assert!(wire[1..].iter().all(|&x| x == i as u8));
            assert!(Arc::ptr_eq(who, if i % 4 < 2 { &a } else { &b }));
            if i > 0 {
                let prev = &batch[i - 1].0;
                assert_eq!(
                    prev.as_ptr() as usize + 64,
                    wire.as_ptr() as usize,
                    "one buffer"
                );
            }
        }
        let cap = staged.lens.capacity();
        assert!(
            cap >= 10 && staged.data.capacity() == 0,
            "the buffer left with its datagrams"
        );
        assert!(
            ob.staged.data.capacity() >= OUTBOX_CHUNK,
            "the senders' next buffer is ready"
        );
        ob.give_back(staged);
        // Nothing staged: a take leaves the senders' buffer alone.
        let mut batch2 = VecDeque::new();
        let nothing = ob.take(&mut batch2);
        assert!(nothing.len() == 0 && ob.staged.data.capacity() >= OUTBOX_CHUNK);
        ob.give_back(nothing);
        // The next flush hands the same arrays back to the senders (no growth from empty).
        ob.staged.push_all(&[5], &[&[5; 9]], 10, &a);
        let mut again = ob.take(&mut batch2);
        assert_eq!(ob.staged.lens.capacity(), cap);
        again.cut_into(&mut batch2);
        assert_eq!(batch2.len(), 1);
        ob.give_back(again);
        // Three left unsent: one put back, two staged; closing counts each on its session.
        let first = batch.pop_front().unwrap();
        ob.put_back(VecDeque::from([first]));
        ob.staged.push_all(&[1], &[&[2], &[3]], 4, &b);
        ob.close();
        assert_eq!(a.dropped_unsent.load(Ordering::Relaxed), 1);
        assert_eq!(b.dropped_unsent.load(Ordering::Relaxed), 2);
        assert!(ob.is_empty() && ob.closed);
    }
}
