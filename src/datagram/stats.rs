//! Transport statistics: the seed's DatagramStats plus the reason for every drop.

/// Counters of one datagram transport. "Sent" means handed to QUIC; "received" means arrived
/// for this session; "read" means taken by the application.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatagramStats {
    /// Session id (CONNECT stream id).
    pub session_id: u64,
    /// Unix time (s) the transport was created.
    pub created_at: f64,
    /// Datagrams handed to QUIC.
    pub datagrams_sent: u64,
    /// Payload bytes handed to QUIC.
    pub bytes_sent: u64,
    /// Send calls that returned an error (queue full, too large, closed) plus QUIC send errors.
    pub send_failures: u64,
    /// Accepted outgoing datagrams dropped before reaching QUIC (sum of the reasons below).
    pub send_drops: u64,
    /// Datagrams that arrived for this session.
    pub datagrams_received: u64,
    /// Payload bytes that arrived.
    pub bytes_received: u64,
    /// Arrived datagrams dropped before the application read them (sum of the reasons below).
    pub receive_drops: u64,
    /// Receive-side processing errors (e.g. invalid JSON in receive_json).
    pub receive_errors: u64,
    /// Sum of queueing times (enqueue → handed to QUIC), seconds.
    pub total_send_time: f64,
    /// Longest queueing time, seconds.
    pub max_send_time: f64,
    /// Sum of time receive calls waited, seconds.
    pub total_receive_time: f64,
    /// Longest receive wait, seconds.
    pub max_receive_time: f64,
    /// Smallest datagram sent or received (0 before the first).
    pub min_datagram_size: u64,
    /// Largest datagram sent or received.
    pub max_datagram_size: u64,
    /// Bytes of all datagrams sent and received.
    pub total_datagram_size: u64,
    /// Number of datagrams in `total_datagram_size`.
    pub sized_datagrams: u64,
    /// Outgoing datagrams evicted by DROP_OLDEST.
    pub dropped_full: u64,
    /// Outgoing datagrams whose TTL ran out while queued.
    pub dropped_expired: u64,
    /// Outgoing datagrams older than `outgoing_max_age` at dequeue.
    pub dropped_too_old: u64,
    /// Sends refused because the payload exceeded `max_datagram_size` (also in send_failures).
    pub dropped_too_large: u64,
    /// Sends refused because the queue was full (REJECT_NEW, BLOCK timeout, or DROP_OLDEST with
    /// only higher priorities queued; also in send_failures).
    pub rejected_full: u64,
    /// Outgoing datagrams removed by clear_send_buffer.
    pub cleared_outgoing: u64,
    /// Incoming datagrams evicted because the receive queue was full.
    pub evicted_incoming: u64,
    /// Incoming datagrams older than `incoming_max_age` at dequeue.
    pub expired_incoming: u64,
    /// Incoming datagrams removed by clear_receive_buffer.
    pub cleared_incoming: u64,
    /// Incoming heartbeats filtered out of the receive path (when filtering is on).
    pub heartbeats_filtered: u64,
    /// Datagrams the application read.
    pub datagrams_read: u64,
    /// Number of send operations timed (for `avg_send_time`).
    pub timed_sends: u64,
    /// Number of receive operations timed (for `avg_receive_time`).
    pub timed_receives: u64,
}

impl DatagramStats {
    /// Adds the counters of `o` (a part of the same transport's counters kept elsewhere, e.g.
    /// under a queue's lock) to these; `session_id` and `created_at` stay as they are.
    pub fn merge(&mut self, o: &DatagramStats) {
        // Destructured in full, so a new field cannot be forgotten here.
        let DatagramStats {
            session_id: _,
            created_at: _,
            datagrams_sent,
            bytes_sent,
            send_failures,
            send_drops,
            datagrams_received,
            bytes_received,
            receive_drops,
            receive_errors,
            total_send_time,
            max_send_time,
            total_receive_time,
            max_receive_time,
            min_datagram_size,
            max_datagram_size,
            total_datagram_size,
            sized_datagrams,
            dropped_full,
            dropped_expired,
            dropped_too_old,
            dropped_too_large,
            rejected_full,
            cleared_outgoing,
            evicted_incoming,
            expired_incoming,
            cleared_incoming,
            heartbeats_filtered,
            datagrams_read,
            timed_sends,
            timed_receives,
        } = o;
        if *sized_datagrams > 0
            && (self.sized_datagrams == 0 || *min_datagram_size < self.min_datagram_size)
        {
            self.min_datagram_size = *min_datagram_size;
        }
        self.max_datagram_size = self.max_datagram_size.max(*max_datagram_size);
        self.max_send_time = self.max_send_time.max(*max_send_time);
        self.max_receive_time = self.max_receive_time.max(*max_receive_time);
        self.total_send_time += total_send_time;
        self.total_receive_time += total_receive_time;
        for (dst, src) in [
            (&mut self.datagrams_sent, datagrams_sent),
            (&mut self.bytes_sent, bytes_sent),
            (&mut self.send_failures, send_failures),
            (&mut self.send_drops, send_drops),
            (&mut self.datagrams_received, datagrams_received),
            (&mut self.bytes_received, bytes_received),
            (&mut self.receive_drops, receive_drops),
            (&mut self.receive_errors, receive_errors),
            (&mut self.total_datagram_size, total_datagram_size),
            (&mut self.sized_datagrams, sized_datagrams),
            (&mut self.dropped_full, dropped_full),
            (&mut self.dropped_expired, dropped_expired),
            (&mut self.dropped_too_old, dropped_too_old),
            (&mut self.dropped_too_large, dropped_too_large),
            (&mut self.rejected_full, rejected_full),
            (&mut self.cleared_outgoing, cleared_outgoing),
            (&mut self.evicted_incoming, evicted_incoming),
            (&mut self.expired_incoming, expired_incoming),
            (&mut self.cleared_incoming, cleared_incoming),
            (&mut self.heartbeats_filtered, heartbeats_filtered),
            (&mut self.datagrams_read, datagrams_read),
            (&mut self.timed_sends, timed_sends),
            (&mut self.timed_receives, timed_receives),
        ] {
            *dst += src;
        }
    }

    /// Records a datagram's size.
    pub fn record_size(&mut self, size: usize) {
        let s = size as u64;
        self.record_sizes(1, s, s, s);
    }

    /// Records `n` datagram sizes summing to `total`, the smallest `min`, the largest `max`.
    fn record_sizes(&mut self, n: u64, total: u64, min: u64, max: u64) {
        if self.sized_datagrams == 0 || min < self.min_datagram_size {
            self.min_datagram_size = min;
        }
        self.max_datagram_size = self.max_datagram_size.max(max);
        self.total_datagram_size += total;
        self.sized_datagrams += n;
    }

    /// Records datagrams handed to QUIC without waiting in the queue, by size: the same as
    /// `record_sent(size, 0.0)` for each, in one update (a batch send's hot loop).
    pub fn record_sent_direct(&mut self, sizes: impl Iterator<Item = usize>) {
        let (n, total, min, max) = size_summary(sizes);
        if n == 0 {
            return;
        }
        self.datagrams_sent += n;
        self.bytes_sent += total;
        self.max_send_time = self.max_send_time.max(0.0);
        self.timed_sends += n;
        self.record_sizes(n, total, min, max);
    }

    /// Records one datagram handed to QUIC after `queued_s` seconds in the queue.
    pub fn record_sent(&mut self, size: usize, queued_s: f64) {
        self.datagrams_sent += 1;
        self.bytes_sent += size as u64;
        self.total_send_time += queued_s;
        self.max_send_time = self.max_send_time.max(queued_s);
        self.timed_sends += 1;
        self.record_size(size);
    }

    /// Records arrived datagrams by size: the same as `record_received(size)` for each.
    pub fn record_received_all(&mut self, sizes: impl Iterator<Item = usize>) {
        let (n, total, min, max) = size_summary(sizes);
        if n == 0 {
            return;
        }
        self.datagrams_received += n;
        self.bytes_received += total;
        self.record_sizes(n, total, min, max);
    }

    /// Records one arrived datagram.
    pub fn record_received(&mut self, size: usize) {
        self.datagrams_received += 1;
        self.bytes_received += size as u64;
        self.record_size(size);
    }

    /// Records a receive call that waited `waited_s` seconds.
    pub fn record_receive_wait(&mut self, waited_s: f64) {
        self.total_receive_time += waited_s;
        self.max_receive_time = self.max_receive_time.max(waited_s);
        self.timed_receives += 1;
    }

    /// Mean datagram size (0 when none).
    pub fn avg_datagram_size(&self) -> f64 {
        ratio(
            self.total_datagram_size as f64,
            self.sized_datagrams as f64,
            0.0,
        )
    }
    /// Mean queueing time of sent datagrams, seconds.
    pub fn avg_send_time(&self) -> f64 {
        ratio(self.total_send_time, self.timed_sends as f64, 0.0)
    }
    /// Mean receive wait, seconds.
    pub fn avg_receive_time(&self) -> f64 {
        ratio(self.total_receive_time, self.timed_receives as f64, 0.0)
    }
    /// sent / (sent + send_failures + send_drops); 1.0 before any send.
    pub fn send_success_rate(&self) -> f64 {
        let total = self.datagrams_sent + self.send_failures + self.send_drops;
        ratio(self.datagrams_sent as f64, total as f64, 1.0)
    }
    /// 1 − (receive_drops + receive_errors) / (received + receive_errors); 1.0 before any.
    pub fn receive_success_rate(&self) -> f64 {
        let total = (self.datagrams_received + self.receive_errors) as f64;
        1.0 - ratio(
            (self.receive_drops + self.receive_errors) as f64,
            total,
            0.0,
        )
    }
    /// (send_drops + receive_drops) / max(1, sent + received), as pywebtransport's
    /// `diagnose_issues` computes it: drops with no traffic yet still count.
    pub fn drop_rate(&self) -> f64 {
        let total = (self.datagrams_sent + self.datagrams_received).max(1) as f64;
        (self.send_drops + self.receive_drops) as f64 / total
    }
}

fn ratio(a: f64, b: f64, empty: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        empty
    }
}

/// Count, sum, smallest and largest of `sizes` (smallest `u64::MAX` when empty).
fn size_summary(sizes: impl Iterator<Item = usize>) -> (u64, u64, u64, u64) {
    sizes.fold((0, 0, u64::MAX, 0), |(n, total, min, max), s| {
        let s = s as u64;
        (n + 1, total + s, min.min(s), max.max(s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch's one update records exactly what one `record_sent(size, 0.0)` (or
    /// `record_received(size)`) per datagram does.
    #[test]
    fn batch_records_equal_one_record_per_datagram() {
        let sizes = [64usize, 1, 1200, 64, 7];
        let mut one_by_one = DatagramStats::default();
        one_by_one.record_sent(500, 0.25);
        let mut batched = one_by_one.clone();
        for s in sizes {
            one_by_one.record_sent(s, 0.0);
        }
        batched.record_sent_direct(sizes.into_iter());
        assert_eq!(batched, one_by_one);
        for s in sizes {
            one_by_one.record_received(s);
        }
        batched.record_received_all(sizes.into_iter());
        assert_eq!(batched, one_by_one);
        batched.record_sent_direct(std::iter::empty());
        assert_eq!(batched, one_by_one);
        let (mut a, mut b) = (DatagramStats::default(), DatagramStats::default());
        a.record_sent_direct([9usize, 3].into_iter());
        b.record_sent(9, 0.0);
        b.record_sent(3, 0.0);
        assert_eq!(a, b, "from empty stats, the minimum is the batch's");
    }

    #[test]
    fn derived_values() {
        let mut s = DatagramStats::default();
        assert_eq!(
            (
                s.send_success_rate(),
                s.receive_success_rate(),
                s.drop_rate()
            ),
            (1.0, 1.0, 0.0)
        );
        s.record_sent(100, 0.002);
        s.record_sent(300, 0.004);
        s.record_received(50);
        s.send_failures = 1;
        s.send_drops = 1;
        s.receive_drops = 1;
        assert_eq!(
            (
                s.min_datagram_size,
                s.max_datagram_size,
                s.total_datagram_size
            ),
            (50, 300, 450)
        );
        assert_eq!(s.avg_datagram_size(), 150.0);
        assert!((s.avg_send_time() - 0.003).abs() < 1e-12);
        assert_eq!(s.max_send_time, 0.004);
        assert_eq!(s.send_success_rate(), 0.5);
        assert_eq!(s.receive_success_rate(), 0.0);
        assert!((s.drop_rate() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn merged_parts_equal_one_record() {
        // The same events recorded in one place, or split over two parts and merged.
        let mut whole = DatagramStats {
            session_id: 4,
            created_at: 1.5,
            ..Default::default()
        };
        let mut a = whole.clone();
        let mut b = DatagramStats::default();
        for (i, size) in [300usize, 20, 700, 5].into_iter().enumerate() {
            let t = i as f64 * 0.25; // exact in binary: sums in any order agree
            whole.record_sent(size, t);
            whole.record_received(size + 1);
            whole.record_receive_wait(t / 2.0);
            let part = if i % 2 == 0 { &mut a } else { &mut b };
            part.record_sent(size, t);
            part.record_received(size + 1);
            part.record_receive_wait(t / 2.0);
        }
        whole.send_failures = 3;
        whole.evicted_incoming = 2;
        whole.datagrams_read = 9;
        a.send_failures = 1;
        b.send_failures = 2;
        b.evicted_incoming = 2;
        b.datagrams_read = 9;
        a.merge(&b);
        assert_eq!(a, whole);
        // Merging an empty part changes nothing (its min size of 0 is not a size).
        a.merge(&DatagramStats::default());
        assert_eq!(a, whole);
    }
}
