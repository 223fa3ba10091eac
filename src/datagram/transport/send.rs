//! The send path of a datagram transport: one routine for single sends and batches. Under one
//! lock of the outgoing queue a batch first hands up to as many queued datagrams to the link as
//! it brings (older datagrams go first, in priority order; the sender task drains the rest);
//! then the new datagrams go straight to the link while nothing is queued, and the rest are
//! queued (priority, TTL, drop policy, BLOCK waits). The statistics are updated once per call, and the
//! sender task is woken only when the queue stops being empty (or a BLOCK send waits for it).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{secs, DatagramTransport, Inner, Outgoing, SENDER_BATCH};
use crate::datagram::queue::{wtd_drop_policy, DropReason, Entry, Push};
use crate::error::{wtd_result, Error};
use crate::lock::lock;
use crate::runtime;

/// How often a BLOCK send that finds the queue full and QUIC without room yields its thread and
/// looks again before it sleeps. Sleeping until the sender task's next look (a millisecond tick)
/// let QUIC's 1 MiB buffer run dry at 1000 B (it drains in about 2 ms): wtd_tr 1000 B one-way
/// 360-420 k/s sleeping at once, 430-540 k/s after 16 yields (pinned sender core, A/B).
const BLOCKED_YIELDS: u32 = 16;

/// The payloads of one send call.
#[derive(Clone, Copy)]
pub(super) enum Payloads<'a> {
    /// Caller-owned bytes, copied only when they have to wait in the queue.
    Slices(&'a [&'a [u8]]),
    /// One shared buffer, queued without a copy (the broadcaster's single encoding).
    Shared(&'a Bytes),
}

impl<'a> Payloads<'a> {
    fn len(&self) -> usize {
        match self {
            Payloads::Slices(s) => s.len(),
            Payloads::Shared(_) => 1,
        }
    }

    fn get(&self, i: usize) -> &'a [u8] {
        match self {
            Payloads::Slices(s) => s[i],
            Payloads::Shared(b) => b,
        }
    }

    /// Items `from..to` as owned buffers for the queue: slices are copied into one allocation
    /// that the entries share.
    fn owned(self, from: usize, to: usize) -> impl Iterator<Item = Bytes> + 'a {
        let this = self;
        let mut block = match this {
            Payloads::Slices(s) => {
                BytesMut::with_capacity(s[from..to].iter().map(|d| d.len()).sum())
            }
            Payloads::Shared(_) => BytesMut::new(),
        };
        (from..to).map(move |i| match this {
            Payloads::Slices(s) => {
                block.extend_from_slice(s[i]);
                block.split().freeze()
            }
            Payloads::Shared(b) => b.clone(),
        })
    }
}

/// Why an item cannot be sent at all (checked in order when the send reaches it).
fn refusal(data: &[u8], max: usize) -> Option<Error> {
    if data.is_empty() {
        return Some(Error::invalid("empty datagram"));
    }
    if data.len() > max {
        return Some(Error::new(
            wtd_result::WTD_ERR_TOO_LARGE,
            format!(
                "datagram of {} bytes exceeds max_datagram_size {max}",
                data.len()
            ),
        ));
    }
    None
}

/// What a hand-over of queued datagrams to the link did.
#[derive(Default, Clone, Copy)]
pub(super) struct HandOver {
    /// Datagrams that left the queue (sent or dropped): room for waiting senders.
    pub(super) freed: bool,
    /// The link had no room for the next one.
    pub(super) blocked: bool,
}

impl DatagramTransport {
    /// The send routine behind every send call (see the module doc): sends or queues
    /// `items` in order, stopping at the first that fails. A BLOCK-policy queue that is full
    /// waits up to `timeout` per datagram (`None`: the configured sender timeout, `Some(ZERO)`:
    /// no wait). Returns how many were accepted and the failure, counted in `send_failures`.
    pub(super) fn send_items(
        &self,
        items: Payloads<'_>,
        priority: i32,
        ttl: Option<Duration>,
        timeout: Option<Duration>,
    ) -> (usize, Option<Error>) {
        if let Some(done) = self.send_one_direct(items) {
            return done;
        }
        let inner = &self.inner;
        let count = items.len();
        let max = inner.link.max_datagram_size();
        let cbs = inner.sent_callbacks();
        let mut sizes = Vec::new();
        let ttl_us = ttl.map_or(0, |t| t.as_micros().max(1) as u64);
        let (mut i, mut wake_task, mut freed, mut evicted) = (0, false, false, 0u64);
        // The item a BLOCK send waits for, until when, and how often it yielded for it.
        let mut waiting: Option<(usize, Instant, u32)> = None;
        let mut out = lock(&inner.out);
        let err = loop {
            if self.is_closed() {
                break Some(Error::closed(if waiting.is_some() {
                    "transport closed while waiting for room"
                } else {
                    "transport is closed"
                }));
            }
            let valid_end = (i..count)
                .find(|&k| refusal(items.get(k), max).is_some())
                .unwrap_or(count);
            // Bounded work per call: a batch moves at most as many queued datagrams as it
            // brings; a single send joins the queue behind them (no link attempt per call while
            // QUIC is full) and leaves them to the sender task.
            let hand = if out.queue.is_empty() || count == 1 {
                HandOver::default()
            } else {
                inner.hand_heads(&mut out, count - i, cbs.is_some().then_some(&mut sizes))
            };
            freed |= hand.freed;
            if !hand.blocked && out.queue.is_empty() && i < valid_end {
                let (n, e) = self.send_direct(&mut out, items, i, valid_end);
                if cbs.is_some() {
                    sizes.extend((i..i + n).map(|k| items.get(k).len()));
                }
                i += n;
                // No room in QUIC: the rest is queued below.
                if let Some(e) = e.filter(|e| e.code != wtd_result::WTD_ERR_WOULD_BLOCK) {
                    break Some(e);
                }
            }
            // A queue that was not empty already has the sender task's attention.
            wake_task |= out.queue.is_empty() && i < valid_end;
            if i < valid_end {
                let (n, ev) = self.enqueue(&mut out, items, i, valid_end, priority, ttl_us);
                evicted += ev;
                i += n;
            }
            if i == count {
                break None;
            }
            if i == valid_end {
                let e = refusal(items.get(i), max).expect("invalid item");
                if e.code == wtd_result::WTD_ERR_TOO_LARGE {
                    out.stats.dropped_too_large += 1;
                }
                break Some(e);
            }
            // The queue has no room for item i.
            if out.queue.policy() != wtd_drop_policy::WTD_DROP_BLOCK {
                out.stats.rejected_full += 1;
                break Some(Error::would_block("outgoing queue is full"));
            }
            let (deadline, yields) = match &mut waiting {
                Some((k, d, y)) if *k == i => (*d, y),
                _ => {
                    let wait = timeout.unwrap_or_else(|| lock(&inner.config).sender_timeout);
                    let w = waiting.insert((i, Instant::now() + wait, 0));
                    (w.1, &mut w.2)
                }
            };
            let now = Instant::now();
            if now >= deadline {
                out.stats.rejected_full += 1;
                break Some(if timeout == Some(Duration::ZERO) {
                    Error::would_block("outgoing queue is full")
                } else {
                    Error::timeout("outgoing queue stayed full")
                });
            }
            if let Err(e) = runtime::check_may_block() {
                break Some(e);
            }
            // The sender task hands the queue to the link while we wait.
            inner.out_work.notify_one();
            if *yields < BLOCKED_YIELDS {
                // QUIC empties its buffer at wire speed, often on this very core: give the CPU
                // away and look at the link again before sleeping until the sender task (whose
                // timer ticks in milliseconds) frees room.
                *yields += 1;
                drop(out);
                std::thread::yield_now();
                out = lock(&inner.out);
                continue;
            }
            out = inner.out_room.wait(out, &inner.out, Some(deadline - now));
        };
        out.stats.dropped_full += evicted;
        out.stats.send_drops += evicted;
        out.stats.send_failures += u64::from(err.is_some());
        drop(out);
        if wake_task {
            inner.out_work.notify_one();
        }
        if freed {
            inner.out_room.notify_all();
        }
        if cbs.is_some() {
            inner.post_sent(sizes);
        }
        (i, err)
    }

    /// The common single send — valid, nothing queued, the link takes it — without the batch
    /// machinery of [`DatagramTransport::send_items`] (the same checks, [`Self::send_direct`]
    /// for the hand-over and its counting). `None` leaves the datagram to the general path:
    /// several items, invalid, closed, something queued, or the link has no room (then it is
    /// queued there).
    fn send_one_direct(&self, items: Payloads<'_>) -> Option<(usize, Option<Error>)> {
        let inner = &self.inner;
        if items.len() != 1 || refusal(items.get(0), inner.link.max_datagram_size()).is_some() {
            return None;
        }
        let mut out = lock(&inner.out);
        if self.is_closed() || !out.queue.is_empty() {
            return None;
        }
        match self.send_direct(&mut out, items, 0, 1) {
            (1, _) => {
                drop(out);
                if inner.sent_callbacks().is_some() {
                    inner.post_sent(vec![items.get(0).len()]);
                }
                Some((1, None))
            }
            (_, Some(e)) if e.code != wtd_result::WTD_ERR_WOULD_BLOCK => {
                out.stats.send_failures += 1;
                Some((0, Some(e)))
            }
            _ => None,
        }
    }

    /// Hands `items[from..to]` (valid, nothing queued) to the link in one call and counts what
    /// it took. Returns how many it took and why it stopped.
    fn send_direct(
        &self,
        out: &mut Outgoing,
        items: Payloads<'_>,
        from: usize,
        to: usize,
    ) -> (usize, Option<Error>) {
        let inner = &self.inner;
        // One datagram takes the link's single send (a batch hand-over costs an extra
        // allocation for the buffer the batch shares).
        let (n, e) = match items {
            Payloads::Slices(s) if to - from > 1 => inner.link.try_send_batch(&s[from..to]),
            _ => match inner.link.try_send(items.get(from)) {
                Ok(()) => (1, None),
                Err(e) => (0, Some(e)),
            },
        };
        if n > 0 {
            out.sequence += n as u64;
            // Counted before the queue lock is released, so a flush never sees a gap.
            match items {
                Payloads::Slices(s) => out
                    .stats
                    .record_sent_direct(s[from..from + n].iter().map(|d| d.len())),
                Payloads::Shared(b) => out.stats.record_sent(b.len(), 0.0),
            }
        }
        (n, e)
    }

    /// Queues valid `items[from..to]` while the policy lets them in. Returns how many were
    /// queued and how many older datagrams DROP_OLDEST evicted for them.
    fn enqueue(
        &self,
        out: &mut Outgoing,
        items: Payloads<'_>,
        from: usize,
        to: usize,
        priority: i32,
        ttl_us: u64,
    ) -> (usize, u64) {
        if from == to {
            return (0, 0);
        }
        let fit = if out.queue.policy() == wtd_drop_policy::WTD_DROP_OLDEST {
            to - from
        } else {
            (to - from).min(out.queue.high_water_mark().saturating_sub(out.queue.len()))
        };
        let now = self.inner.clock.now_us();
        let (mut n, mut evicted) = (0, 0);
        for data in items.owned(from, from + fit) {
            let entry = Entry {
                data,
                priority,
                ttl_us,
                enqueued_us: now,
                sequence: out.sequence + 1,
            };
            match out.queue.push(entry) {
                Push::Queued { evicted: e } => {
                    out.sequence += 1;
                    evicted += u64::from(e.is_some());
                    n += 1;
                }
                // DROP_OLDEST with only higher priorities queued.
                Push::Full(_) => break,
            }
        }
        (n, evicted)
    }
}

impl Inner {
    /// Hands the queue's heads (highest priority first) to the link, up to [`SENDER_BATCH`] per
    /// link call, until `limit` were handed over, the queue is empty or the link has no room;
    /// drops expired or too-old ones on the way (counted). What the link has no room for goes
    /// back to the front, in order. With `sizes`, records the size of each datagram sent (for
    /// the sent event).
    pub(super) fn hand_heads(
        &self,
        out: &mut Outgoing,
        limit: usize,
        mut sizes: Option<&mut Vec<usize>>,
    ) -> HandOver {
        let mut hand = HandOver::default();
        if out.queue.is_empty() || limit == 0 {
            return hand;
        }
        let mut handed = 0;
        let now = self.clock.now_us();
        let (mut expired, mut too_old, mut failed) = (0u64, 0u64, 0u64);
        let mut heads = std::mem::take(&mut out.heads);
        while !hand.blocked && !out.queue.is_empty() && handed < limit {
            while heads.len() < SENDER_BATCH.min(limit - handed) {
                let popped = out.queue.pop(now, |_, r| {
                    if r == DropReason::Expired {
                        expired += 1
                    } else {
                        too_old += 1
                    }
                });
                match popped {
                    Some(e) => heads.push(e),
                    None => break,
                }
            }
            if heads.is_empty() {
                break;
            }
            let mut views: [&[u8]; SENDER_BATCH] = [&[]; SENDER_BATCH];
            for (v, e) in views.iter_mut().zip(&heads) {
                *v = &e.data[..];
            }
            let (n, err) = self.link.try_send_batch(&views[..heads.len()]);
            if n > 0 {
                // Counted before the lock is released, so a flush never sees a gap.
                for e in &heads[..n] {
                    let queued = secs(now.saturating_sub(e.enqueued_us));
                    out.stats.record_sent(e.data.len(), queued);
                }
                if let Some(sizes) = sizes.as_deref_mut() {
                    sizes.extend(heads[..n].iter().map(|e| e.data.len()));
                }
            }
            let mut skip = n;
            match err {
                Some(e) if e.code == wtd_result::WTD_ERR_WOULD_BLOCK => hand.blocked = true,
                Some(e) => {
                    // This one cannot be sent at all (e.g. the path limit shrank below it):
                    // dropped and counted; the ones after it are tried again.
                    log_debug!("datagram not sent: {e}");
                    failed += 1;
                    skip += 1;
                }
                // Fewer taken without a reason: treated as no room (never spin on the link).
                None if n < heads.len() => hand.blocked = true,
                None => {}
            }
            for e in heads.drain(skip..).rev() {
                out.queue.unpop(e);
            }
            hand.freed |= skip > 0;
            handed += skip;
            heads.clear();
        }
        out.heads = heads;
        if expired + too_old + failed > 0 {
            hand.freed = true;
            let st = &mut out.stats;
            st.dropped_expired += expired;
            st.dropped_too_old += too_old;
            st.send_drops += expired + too_old;
            st.send_failures += failed;
        }
        hand
    }
}
