//! The priority queue behind both directions of a datagram transport: higher priority first,
//! FIFO among equals, per-datagram TTL, a maximum age, a high water mark with a drop policy —
//! and every drop reported with its reason so the caller can count it.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

/// What a full queue does with a new datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(non_camel_case_types)]
pub enum wtd_drop_policy {
    /// Evict the oldest datagram of the lowest priority that is ≤ the new one's; if every queued
    /// datagram has a higher priority, reject the new one. (Default; pywebtransport's behaviour, but
    /// counted.)
    WTD_DROP_OLDEST = 0,
    /// Reject the new datagram (`WTD_ERR_WOULD_BLOCK`).
    WTD_DROP_REJECT_NEW = 1,
    /// Make the sender wait for room, up to its timeout (back-pressure).
    WTD_DROP_BLOCK = 2,
}

crate::error::c_enum!(wtd_drop_policy {
    WTD_DROP_OLDEST => c"oldest",
    WTD_DROP_REJECT_NEW => c"reject_new",
    WTD_DROP_BLOCK => c"block",
});

/// A queued datagram.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Payload.
    pub data: Bytes,
    /// Priority (higher leaves first).
    pub priority: i32,
    /// Time-to-live in microseconds from `enqueued_us` (0 = none).
    pub ttl_us: u64,
    /// When it entered the queue (transport clock, µs).
    pub enqueued_us: u64,
    /// Local sequence number.
    pub sequence: u64,
}

impl Entry {
    fn expired(&self, now_us: u64) -> bool {
        self.ttl_us > 0 && now_us.saturating_sub(self.enqueued_us) >= self.ttl_us
    }
    fn too_old(&self, now_us: u64, max_age_us: u64) -> bool {
        max_age_us > 0 && now_us.saturating_sub(self.enqueued_us) > max_age_us
    }
}

/// Why a datagram left the queue without being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Evicted to make room (DROP_OLDEST).
    Evicted,
    /// Its TTL ran out while queued.
    Expired,
    /// Older than the queue's maximum age.
    TooOld,
    /// Removed by a clear call.
    Cleared,
}

/// Result of [`DatagramQueue::push`].
#[derive(Debug)]
pub enum Push {
    /// Queued; `evicted` holds the datagram removed to make room, if any.
    Queued {
        /// The evicted entry (DROP_OLDEST only).
        evicted: Option<Entry>,
    },
    /// The queue is full and the policy refused the datagram (returned to the caller).
    Full(Entry),
}

/// Priority queue with a high water mark.
///
/// One FIFO bucket per priority present. A bucket that empties is removed, but its storage is
/// kept as `spare` for the next new bucket: a reader that drains the queue after every batch
/// does not make it free and re-grow its buffer each time.
#[derive(Debug)]
pub struct DatagramQueue {
    /// Non-empty buckets by priority.
    buckets: BTreeMap<i32, VecDeque<Entry>>,
    /// Storage of the last bucket that emptied (empty, capacity kept).
    spare: VecDeque<Entry>,
    len: usize,
    high_water_mark: usize,
    policy: wtd_drop_policy,
    max_age_us: u64,
    /// Entries with a TTL: with none and no max age, `purge` has nothing to do (O(1)).
    with_ttl: usize,
}

impl DatagramQueue {
    /// An empty queue holding at most `high_water_mark` (≥ 1) datagrams.
    pub fn new(high_water_mark: usize, policy: wtd_drop_policy) -> Self {
        DatagramQueue {
            buckets: BTreeMap::new(),
            spare: VecDeque::new(),
            len: 0,
            high_water_mark: high_water_mark.max(1),
            policy,
            max_age_us: 0,
            with_ttl: 0,
        }
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// True when at the high water mark.
    pub fn is_full(&self) -> bool {
        self.len >= self.high_water_mark
    }
    /// The high water mark.
    pub fn high_water_mark(&self) -> usize {
        self.high_water_mark
    }
    /// The drop policy.
    pub fn policy(&self) -> wtd_drop_policy {
        self.policy
    }
    /// Maximum age in µs (0 = none).
    pub fn max_age_us(&self) -> u64 {
        self.max_age_us
    }
    /// Sets the maximum age (0 = none); checked when datagrams leave.
    pub fn set_max_age_us(&mut self, us: u64) {
        self.max_age_us = us;
    }

    /// Adds a datagram, applying the policy when full. With WTD_DROP_BLOCK a full queue returns
    /// `Full` and the caller waits and retries.
    pub fn push(&mut self, entry: Entry) -> Push {
        if self.is_full() {
            if self.policy != wtd_drop_policy::WTD_DROP_OLDEST {
                return Push::Full(entry);
            }
            let lowest = *self.buckets.keys().next().expect("full queue has a bucket");
            if lowest > entry.priority {
                return Push::Full(entry);
            }
            let evicted = self.pop_bucket_front(lowest);
            self.insert(entry);
            return Push::Queued { evicted };
        }
        self.insert(entry);
        Push::Queued { evicted: None }
    }

    /// Pushes `entries` (all of `priority`, in order) like [`DatagramQueue::push`] one by one;
    /// returns how many older datagrams they evicted. While they fit below the high water mark
    /// the bucket is looked up once for all of them (a received batch).
    pub fn push_all(
        &mut self,
        priority: i32,
        entries: impl ExactSizeIterator<Item = Entry>,
    ) -> u64 {
        if self.len + entries.len() <= self.high_water_mark {
            let n = entries.len();
            let mut with_ttl = 0;
            self.bucket(priority).extend(entries.inspect(|e| {
                debug_assert_eq!(e.priority, priority);
                with_ttl += usize::from(e.ttl_us > 0);
            }));
            self.len += n;
            self.with_ttl += with_ttl;
            return 0;
        }
        let mut evicted = 0;
        for e in entries {
            if let Push::Queued { evicted: Some(_) } = self.push(e) {
                evicted += 1;
            }
        }
        evicted
    }

    fn insert(&mut self, entry: Entry) {
        self.with_ttl += usize::from(entry.ttl_us > 0);
        self.len += 1;
        self.bucket(entry.priority).push_back(entry);
    }

    /// The bucket of `priority`, created (from the spare storage) when missing.
    fn bucket(&mut self, priority: i32) -> &mut VecDeque<Entry> {
        let spare = &mut self.spare;
        self.buckets
            .entry(priority)
            .or_insert_with(|| std::mem::take(spare))
    }

    /// Removes the oldest entry of `priority`'s bucket; an emptied bucket is removed and its
    /// storage kept as the spare.
    fn pop_bucket_front(&mut self, priority: i32) -> Option<Entry> {
        let bucket = self.buckets.get_mut(&priority)?;
        let e = bucket.pop_front();
        if bucket.is_empty() {
            let emptied = self.buckets.remove(&priority).expect("bucket exists");
            if emptied.capacity() > self.spare.capacity() {
                self.spare = emptied;
            }
        }
        if let Some(e) = &e {
            self.len -= 1;
            self.with_ttl -= usize::from(e.ttl_us > 0);
        }
        e
    }

    /// Takes the next datagram to deliver (highest priority, oldest first), dropping expired or
    /// too-old ones on the way and passing each to `dropped`.
    pub fn pop(
        &mut self,
        now_us: u64,
        mut dropped: impl FnMut(Entry, DropReason),
    ) -> Option<Entry> {
        loop {
            let top = *self.buckets.keys().next_back()?;
            let e = self.pop_bucket_front(top)?;
            if e.expired(now_us) {
                dropped(e, DropReason::Expired);
            } else if e.too_old(now_us, self.max_age_us) {
                dropped(e, DropReason::TooOld);
            } else {
                return Some(e);
            }
        }
    }

    /// Puts a datagram just taken by `pop` back at the front of its priority (the high water
    /// mark is not checked: it held that place a moment ago).
    pub fn unpop(&mut self, entry: Entry) {
        self.with_ttl += usize::from(entry.ttl_us > 0);
        self.len += 1;
        self.bucket(entry.priority).push_front(entry);
    }

    /// The next datagram `pop` would consider (it may still turn out expired).
    pub fn peek(&self) -> Option<&Entry> {
        self.buckets.values().next_back().and_then(VecDeque::front)
    }

    /// Removes everything; returns how many were removed.
    pub fn clear(&mut self) -> usize {
        let n = self.len;
        self.buckets.clear();
        self.len = 0;
        self.with_ttl = 0;
        n
    }

    /// Drops every expired or too-old datagram now (not only at the head).
    pub fn purge(&mut self, now_us: u64, mut dropped: impl FnMut(Entry, DropReason)) {
        let max_age = self.max_age_us;
        if max_age == 0 && self.with_ttl == 0 {
            return;
        }
        let mut removed = 0;
        let mut removed_ttl = 0;
        for bucket in self.buckets.values_mut() {
            let mut keep = VecDeque::with_capacity(bucket.len());
            for e in bucket.drain(..) {
                let gone = if e.expired(now_us) {
                    Some(DropReason::Expired)
                } else if e.too_old(now_us, max_age) {
                    Some(DropReason::TooOld)
                } else {
                    None
                };
                if let Some(reason) = gone {
                    removed += 1;
                    removed_ttl += usize::from(e.ttl_us > 0);
                    dropped(e, reason);
                } else {
                    keep.push_back(e);
                }
            }
            *bucket = keep;
        }
        self.buckets.retain(|_, b| !b.is_empty());
        self.len -= removed;
        self.with_ttl -= removed_ttl;
    }

    /// (priority, count) for every priority present, highest first.
    pub fn priority_counts(&self) -> Vec<(i32, usize)> {
        self.buckets
            .iter()
            .rev()
            .map(|(p, b)| (*p, b.len()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wtd_drop_policy::*;

    fn e(tag: u8, priority: i32, ttl_us: u64, at: u64) -> Entry {
        Entry {
            data: Bytes::from(vec![tag]),
            priority,
            ttl_us,
            enqueued_us: at,
            sequence: tag as u64,
        }
    }
    fn tags(q: &mut DatagramQueue, now: u64) -> Vec<u8> {
        std::iter::from_fn(|| q.pop(now, |_, _| {}).map(|e| e.data[0])).collect()
    }

    /// A batch push ends in the same queue, with the same evictions, as one push per entry:
    /// below the high water mark (one bucket lookup) and across it, for both policies.
    #[test]
    fn push_all_equals_one_push_per_entry() {
        for policy in [WTD_DROP_OLDEST, WTD_DROP_REJECT_NEW] {
            for (queued, batch) in [(2u8, 3u8), (2, 6), (0, 9), (5, 1)] {
                let mut one = DatagramQueue::new(5, policy);
                let mut all = DatagramQueue::new(5, policy);
                for t in 0..queued {
                    one.push(e(100 + t, if t % 2 == 0 { 0 } else { 3 }, 0, 0));
                    all.push(e(100 + t, if t % 2 == 0 { 0 } else { 3 }, 0, 0));
                }
                let mut evicted = 0;
                for t in 0..batch {
                    if let Push::Queued { evicted: Some(_) } =
                        one.push(e(t, 0, 7 * (t % 2) as u64, 1))
                    {
                        evicted += 1;
                    }
                }
                let got = all.push_all(0, (0..batch).map(|t| e(t, 0, 7 * (t % 2) as u64, 1)));
                let case = format!("{policy:?}, {queued} queued + {batch}");
                assert_eq!(got, evicted, "{case}");
                assert_eq!(
                    (all.len(), all.with_ttl),
                    (one.len(), one.with_ttl),
                    "{case}"
                );
                assert_eq!(tags(&mut all, 1), tags(&mut one, 1), "{case}");
            }
        }
    }

    #[test]
    fn priority_then_fifo() {
        let mut q = DatagramQueue::new(10, WTD_DROP_OLDEST);
        for (tag, p) in [(1, 0), (2, 5), (3, 0), (4, -3), (5, 5), (6, i32::MAX)] {
            q.push(e(tag, p, 0, 0));
        }
        assert_eq!(
            q.priority_counts(),
            vec![(i32::MAX, 1), (5, 2), (0, 2), (-3, 1)]
        );
        assert_eq!(tags(&mut q, 0), vec![6, 2, 5, 1, 3, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn ttl_and_max_age_drop_at_dequeue_with_reason() {
        let mut q = DatagramQueue::new(10, WTD_DROP_OLDEST);
        q.push(e(1, 1, 100, 0)); // expires at 100
        q.push(e(2, 0, 0, 0));
        q.push(e(3, 0, 0, 50));
        q.set_max_age_us(120);
        let mut drops = Vec::new();
        let got = q.pop(130, |e, r| drops.push((e.data[0], r))).unwrap();
        assert_eq!(got.data[0], 3);
        assert_eq!(
            drops,
            vec![(1, DropReason::Expired), (2, DropReason::TooOld)]
        );
        // An entry exactly at its TTL is expired; one inside it is not.
        q.push(e(4, 0, 10, 200));
        assert!(q.pop(209, |_, _| {}).is_some());
        q.push(e(5, 0, 10, 200));
        assert!(q.pop(210, |_, _| {}).is_none());
    }

    #[test]
    fn drop_oldest_evicts_lowest_priority_oldest() {
        let mut q = DatagramQueue::new(3, WTD_DROP_OLDEST);
        q.push(e(1, 1, 0, 0));
        q.push(e(2, 0, 0, 0));
        q.push(e(3, 0, 0, 0));
        match q.push(e(4, 0, 0, 0)) {
            Push::Queued { evicted: Some(ev) } => assert_eq!(ev.data[0], 2),
            other => panic!("{other:?}"),
        }
        // A new datagram below every queued priority is rejected.
        let mut hi = DatagramQueue::new(1, WTD_DROP_OLDEST);
        hi.push(e(1, 5, 0, 0));
        assert!(matches!(hi.push(e(2, 4, 0, 0)), Push::Full(_)));
        // Equal priority evicts the oldest.
        assert!(matches!(
            hi.push(e(3, 5, 0, 0)),
            Push::Queued { evicted: Some(_) }
        ));
        assert_eq!(tags(&mut q, 0), vec![1, 3, 4]);
    }

    #[test]
    fn reject_new_and_block_refuse_when_full() {
        for policy in [WTD_DROP_REJECT_NEW, WTD_DROP_BLOCK] {
            let mut q = DatagramQueue::new(2, policy);
            q.push(e(1, 0, 0, 0));
            q.push(e(2, 0, 0, 0));
            assert!(matches!(q.push(e(3, 9, 0, 0)), Push::Full(ref x) if x.data[0] == 3));
            assert_eq!(q.len(), 2);
        }
    }

    #[test]
    fn purge_still_finds_ttl_entries_after_pops_evictions_and_unpops() {
        // purge skips its scan when no entry has a TTL and there is no max age; the count of
        // TTL entries must follow every way in and out of the queue.
        let mut q = DatagramQueue::new(3, WTD_DROP_OLDEST);
        q.push(e(1, 0, 10, 0));
        q.push(e(2, 0, 0, 0));
        q.push(e(3, 0, 10, 0));
        let first = q.pop(0, |_, _| {}).unwrap(); // 1 (TTL) out ...
        q.unpop(first); // ... and back
        q.push(e(4, 0, 0, 0)); // evicts 1 (TTL)
        let mut dropped = Vec::new();
        q.purge(100, |x, r| dropped.push((x.data[0], r)));
        assert_eq!(dropped, vec![(3, DropReason::Expired)]);
        q.purge(1000, |_, _| panic!("nothing left with a TTL"));
        assert_eq!(tags(&mut q, 1000), vec![2, 4]);
        q.push(e(5, 0, 10, 0));
        q.clear();
        q.push(e(6, 0, 0, 0));
        q.purge(1000, |_, _| panic!("cleared"));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_drained_bucket_keeps_its_storage_for_the_next_batch() {
        let mut q = DatagramQueue::new(2048, WTD_DROP_OLDEST);
        for round in 0..3u64 {
            for i in 0..1000 {
                q.push(e(i as u8, 0, 0, round));
            }
            if round > 0 {
                // The bucket was created from the spare: no re-growth.
                assert!(q.buckets[&0].capacity() >= 1000);
                assert_eq!(q.spare.capacity(), 0);
            }
            assert_eq!(tags(&mut q, round).len(), 1000);
            assert!(q.buckets.is_empty());
            assert!(q.spare.capacity() >= 1000, "emptied bucket kept as spare");
        }
        // Other priorities still get buckets of their own, in order.
        q.push(e(1, 3, 0, 0));
        q.push(e(2, -1, 0, 0));
        q.push(e(3, 3, 0, 0));
        assert_eq!(q.priority_counts(), vec![(3, 2), (-1, 1)]);
        assert_eq!(tags(&mut q, 0), vec![1, 3, 2]);
    }

    #[test]
    fn purge_and_clear() {
        let mut q = DatagramQueue::new(10, WTD_DROP_OLDEST);
        q.push(e(1, 0, 5, 0));
        q.push(e(2, 0, 0, 0));
        q.push(e(3, 2, 5, 0));
        let mut n = 0;
        q.purge(10, |_, r| {
            assert_eq!(r, DropReason::Expired);
            n += 1;
        });
        assert_eq!((n, q.len()), (2, 1));
        assert_eq!(q.clear(), 1);
        assert!(q.peek().is_none());
    }
}
