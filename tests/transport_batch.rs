//! The transport's batch paths stay batched: a send call hands each run of datagrams to the
//! link in one call (and first moves as many queued datagrams to the link itself as it brings,
//! without a hop to the sender task), a batch receive takes everything queued in one call, and
//! every datagram of a batch is counted, in order, under each drop policy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use wtd::datagram::batch;
use wtd::datagram::link::{Link, LinkSink, MemoryLink};
use wtd::datagram::{wtd_drop_policy, DatagramTransport, TransportConfig};
use wtd::wtd_result::*;
use wtd::{Error, Result};

/// A link that records what each call handed over (one entry per call that took datagrams) and
/// has no room while blocked — or, while `only` names a thread, room for that thread alone.
/// Delivers nothing.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Vec<Vec<u8>>>>,
    blocked: AtomicBool,
    only: Mutex<Option<std::thread::ThreadId>>,
}

impl Recorder {
    fn calls(&self) -> Vec<Vec<Vec<u8>>> {
        self.calls.lock().unwrap().clone()
    }
    fn all(&self) -> Vec<Vec<u8>> {
        self.calls().concat()
    }
}

impl Link for Recorder {
    fn session_id(&self) -> u64 {
        0
    }
    fn max_datagram_size(&self) -> usize {
        1200
    }
    fn is_open(&self) -> bool {
        true
    }
    fn try_send(&self, data: &[u8]) -> Result<()> {
        match self.try_send_batch(&[data]) {
            (_, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }
    fn try_send_batch(&self, items: &[&[u8]]) -> (usize, Option<Error>) {
        let only = *self.only.lock().unwrap();
        let other_thread = only.is_some_and(|id| id != std::thread::current().id());
        if self.blocked.load(Ordering::SeqCst) || other_thread {
            return (0, Some(Error::would_block("recorder blocked")));
        }
        let call = items.iter().map(|d| d.to_vec()).collect();
        self.calls.lock().unwrap().push(call);
        (items.len(), None)
    }
    fn attach(&self, _sink: Weak<dyn LinkSink>) -> Result<()> {
        Ok(())
    }
    fn post(&self, f: Box<dyn FnOnce() + Send>) {
        f();
    }
}

fn recorded(cfg: TransportConfig) -> (DatagramTransport, Arc<Recorder>) {
    let link = Arc::new(Recorder::default());
    let t = DatagramTransport::new(link.clone(), cfg).unwrap();
    (t, link)
}

/// `n` distinct payloads starting at `first`.
fn payloads(first: u16, n: u16) -> Vec<Vec<u8>> {
    (first..first + n)
        .map(|i| i.to_be_bytes().to_vec())
        .collect()
}

fn views(p: &[Vec<u8>]) -> Vec<&[u8]> {
    p.iter().map(Vec::as_slice).collect()
}

/// Waits (≤ 5 s) until `cond` holds.
fn wait_until(cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cond() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn send_multiple_hands_each_run_to_the_link_in_one_call() {
    let (t, link) = recorded(TransportConfig::default());
    let first = payloads(0, 32);
    let (n, err) = t.send_multiple(&views(&first), 0, None);
    assert_eq!((n, err.map(|e| e.code)), (32, None));
    assert_eq!(link.calls(), vec![first.clone()], "one call for the batch");

    // No room: the whole batch is queued by the one call.
    link.blocked.store(true, Ordering::SeqCst);
    let queued = payloads(32, 20);
    let (n, err) = t.send_multiple(&views(&queued), 0, None);
    assert_eq!((n, err.map(|e| e.code)), (20, None));
    assert_eq!(t.send_buffer_size(), 20);

    // Room again, but only for this thread (not the sender task): the next send first hands
    // as many queued datagrams to the link as it brings (oldest first, one call), and queues
    // its own behind the rest.
    *link.only.lock().unwrap() = Some(std::thread::current().id());
    link.blocked.store(false, Ordering::SeqCst);
    let last = payloads(52, 5);
    let (n, err) = t.send_multiple(&views(&last), 0, None);
    assert_eq!((n, err.map(|e| e.code)), (5, None));
    assert_eq!(link.calls(), vec![first.clone(), payloads(32, 5)]);
    assert_eq!(t.send_buffer_size(), 20);
    // A single send joins the queue behind them without a link attempt of its own.
    t.try_send(&[0xff, 0xff], 0, None).unwrap();
    assert_eq!(link.calls().len(), 2);
    assert_eq!(t.send_buffer_size(), 21);

    // Room for everyone: the sender task hands the rest over in one call, in order.
    *link.only.lock().unwrap() = None;
    wait_until(|| t.send_buffer_size() == 0);
    let mut rest = payloads(37, 20);
    rest.push(vec![0xff, 0xff]);
    assert_eq!(link.calls(), vec![first, payloads(32, 5), rest]);
    let s = t.stats();
    assert_eq!(
        (s.datagrams_sent, s.bytes_sent, t.send_sequence()),
        (58, 116, 58)
    );
    assert_eq!((s.send_failures, s.send_drops), (0, 0));

    // Nothing queued: a batch goes straight to the link in one call.
    let direct = payloads(100, 10);
    assert!(t.send_multiple(&views(&direct), 0, None).1.is_none());
    assert_eq!(link.calls().last(), Some(&direct));
    assert_eq!(t.send_buffer_size(), 0);
}

#[test]
fn a_batch_meets_each_drop_policy_at_the_high_water_mark_counted() {
    let cfg = |policy| TransportConfig {
        outgoing_high_water_mark: 8,
        drop_policy: policy,
        sender_timeout: Duration::from_millis(50),
        ..Default::default()
    };
    let batch = payloads(0, 30);

    // DROP_OLDEST: all accepted; the 22 oldest evicted and counted; the newest 8 go out.
    let (t, link) = recorded(cfg(wtd_drop_policy::WTD_DROP_OLDEST));
    link.blocked.store(true, Ordering::SeqCst);
    let (n, err) = t.send_multiple(&views(&batch), 0, None);
    assert_eq!((n, err.map(|e| e.code)), (30, None));
    let s = t.stats();
    assert_eq!((s.dropped_full, s.send_drops, s.send_failures), (22, 22, 0));
    link.blocked.store(false, Ordering::SeqCst);
    wait_until(|| t.send_buffer_size() == 0);
    assert_eq!(link.all(), payloads(22, 8));

    // REJECT_NEW: the first 8 accepted, the 9th refused (counted once), nothing after it tried.
    let (t, link) = recorded(cfg(wtd_drop_policy::WTD_DROP_REJECT_NEW));
    link.blocked.store(true, Ordering::SeqCst);
    let (n, err) = t.send_multiple(&views(&batch), 0, None);
    assert_eq!((n, err.map(|e| e.code)), (8, Some(WTD_ERR_WOULD_BLOCK)));
    let s = t.stats();
    assert_eq!((s.rejected_full, s.send_failures, s.send_drops), (1, 1, 0));
    assert_eq!(t.send_sequence(), 8);

    // BLOCK, link stays blocked: 8 accepted, then the configured timeout.
    let (t, link) = recorded(cfg(wtd_drop_policy::WTD_DROP_BLOCK));
    link.blocked.store(true, Ordering::SeqCst);
    let (n, err) = t.send_multiple(&views(&batch), 0, None);
    assert_eq!((n, err.map(|e| e.code)), (8, Some(WTD_ERR_TIMEOUT)));
    assert_eq!(t.stats().rejected_full, 1);

    // BLOCK, room appears while the call waits: everything accepted and sent, in order.
    let (t, link) = recorded(TransportConfig {
        sender_timeout: Duration::from_secs(5),
        ..cfg(wtd_drop_policy::WTD_DROP_BLOCK)
    });
    link.blocked.store(true, Ordering::SeqCst);
    let opener = {
        let link = link.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            link.blocked.store(false, Ordering::SeqCst);
        })
    };
    let (n, err) = t.send_multiple(&views(&batch), 0, None);
    opener.join().unwrap();
    assert_eq!((n, err.map(|e| e.code)), (30, None));
    wait_until(|| t.send_buffer_size() == 0);
    assert_eq!(link.all(), batch);
    let s = t.stats();
    assert_eq!(
        (s.datagrams_sent, s.send_drops, s.send_failures),
        (30, 0, 0)
    );
}

#[test]
fn a_batch_receive_takes_everything_queued_in_one_call() {
    let (la, lb) = MemoryLink::pair(1200).unwrap();
    let cfg = TransportConfig {
        incoming_high_water_mark: 1024,
        ..Default::default()
    };
    let a = DatagramTransport::new(la, cfg.clone()).unwrap();
    let b = DatagramTransport::new(lb, cfg).unwrap();
    let sent = payloads(0, 90);
    for chunk in sent.chunks(30) {
        assert!(a.send_multiple(&views(chunk), 0, None).1.is_none());
    }
    wait_until(|| b.receive_buffer_size() == 90);
    assert_eq!(b.receive_buffer_size(), 90);

    // 64 buffers: one call fills all 64, in order — one receive, not 64.
    let mut slots: Vec<(Vec<u8>, usize)> = (0..64).map(|_| (vec![0u8; 16], 0)).collect();
    assert_eq!(
        batch::receive_into(&b, &mut slots, Some(Duration::ZERO)).unwrap(),
        64
    );
    let got: Vec<Vec<u8>> = slots.iter().map(|(buf, n)| buf[..*n].to_vec()).collect();
    assert_eq!(got, sent[..64]);
    let s = b.stats();
    assert_eq!((s.datagrams_read, s.timed_receives), (64, 1));

    // A buffer too small ends the batch there; that datagram stays queued for the next call.
    let mut slots: Vec<(Vec<u8>, usize)> = vec![(vec![0u8; 16], 0), (vec![0u8; 1], 0)];
    assert_eq!(
        batch::receive_into(&b, &mut slots, Some(Duration::ZERO)).unwrap(),
        1
    );
    assert_eq!(&slots[0].0[..slots[0].1], &sent[64][..]);
    let mut tiny = vec![(vec![0u8; 1], 0)];
    let e = batch::receive_into(&b, &mut tiny, Some(Duration::ZERO)).unwrap_err();
    assert_eq!((e.code, tiny[0].1), (WTD_ERR_BUFFER_TOO_SMALL, 2));
    assert_eq!(
        b.receive_buffer_size(),
        25,
        "a refused datagram is not taken"
    );

    // receive_multiple: the same single pass.
    let rest = b.receive_multiple(100, Some(Duration::ZERO)).unwrap();
    let data: Vec<Vec<u8>> = rest.iter().map(|r| r.data.to_vec()).collect();
    assert_eq!(data, sent[65..]);
    let seqs: Vec<u64> = rest.iter().map(|r| r.sequence).collect();
    assert_eq!(seqs, (66..=90).collect::<Vec<u64>>());
    let s = b.stats();
    assert_eq!(
        (s.datagrams_received, s.datagrams_read, s.timed_receives),
        (90, 90, 3)
    );
    assert_eq!(s.receive_drops, 0);
    assert_eq!(
        b.try_receive().unwrap_err().code,
        WTD_ERR_WOULD_BLOCK,
        "all taken"
    );
}
