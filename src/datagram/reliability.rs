//! Reliability over datagrams, wire-compatible with pywebtransport's DatagramReliabilityLayer —
//! and working end to end: frames are intercepted from the transport (not left in the plain
//! receive queue), ACKs are matched, retransmits follow an RTT-derived RTO with exponential
//! backoff, duplicates are suppressed, give-ups are reported, in-order delivery is optional.
//!
//! Wire: each frame is `u8 type_len || type || body`.
//! DATA = `0x04 "DATA" || u32 BE sequence || payload`; ACK = `0x03 "ACK" || ASCII decimal sequence`.

use crate::lock::lock;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::transport::DatagramTransport;
use crate::error::{wtd_result, Error, Result};
use crate::gate::CallbackSlot;
use crate::runtime;

/// Bytes a DATA frame adds to the payload.
pub const DATA_OVERHEAD: usize = 1 + 4 + 4;

/// A parsed reliability frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// DATA with its sequence number and payload.
    Data {
        /// Sequence number.
        seq: u32,
        /// Payload.
        payload: &'a [u8],
    },
    /// ACK of a sequence number.
    Ack {
        /// Acknowledged sequence number.
        seq: u32,
    },
}

/// What a datagram is to the reliability layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a reliability frame: leave it to the plain receive path.
    NotOurs,
    /// A well-formed frame.
    Frame(Frame<'a>),
    /// Starts like a reliability frame but is malformed (dropped and counted).
    Malformed(&'static str),
}

/// Encodes DATA.
pub fn encode_data(seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DATA_OVERHEAD + payload.len());
    out.push(4);
    out.extend_from_slice(b"DATA");
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Encodes ACK.
pub fn encode_ack(seq: u32) -> Vec<u8> {
    let mut out = vec![3];
    out.extend_from_slice(b"ACK");
    out.extend_from_slice(seq.to_string().as_bytes());
    out
}

/// Classifies a datagram.
pub fn parse(d: &[u8]) -> Parsed<'_> {
    match d {
        [4, b'D', b'A', b'T', b'A', rest @ ..] => match rest {
            [a, b, c, e, payload @ ..] => Parsed::Frame(Frame::Data {
                seq: u32::from_be_bytes([*a, *b, *c, *e]),
                payload,
            }),
            _ => Parsed::Malformed("DATA frame shorter than its 4-byte sequence"),
        },
        [3, b'A', b'C', b'K', digits @ ..] => {
            if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
                return Parsed::Malformed("ACK sequence is not 1–10 ASCII digits");
            }
            match std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
            {
                Some(seq) => Parsed::Frame(Frame::Ack { seq }),
                None => Parsed::Malformed("ACK sequence exceeds u32"),
            }
        }
        _ => Parsed::NotOurs,
    }
}

/// Reliability settings.
#[derive(Debug, Clone)]
pub struct ReliabilityConfig {
    /// Retransmit timeout before any RTT sample (pywebtransport's `ack_timeout`).
    pub ack_timeout: Duration,
    /// Retransmissions before giving up (pywebtransport's `max_retries`).
    pub max_retries: u32,
    /// Deliver in sequence order (a gap waits up to `gap_timeout`).
    pub in_order: bool,
    /// Unacknowledged messages allowed at once; `send` returns WTD_ERR_WOULD_BLOCK beyond.
    pub max_in_flight: usize,
    /// Lower bound of the RTT-derived retransmit timeout.
    pub min_rto: Duration,
    /// Upper bound of the retransmit timeout (backoff included).
    pub max_rto: Duration,
    /// A missing sequence number older than this is skipped by the receiver (the sender
    /// gave up on it); later messages are then delivered. `Duration::ZERO` (the default) derives
    /// it from the other settings, see [`ReliabilityConfig::effective_gap_timeout`]. A copy that
    /// arrives after its number was skipped is never acknowledged in in-order mode (so the sender
    /// reports it given up, not delivered) and is delivered late in unordered mode.
    pub gap_timeout: Duration,
    /// Transport priority of DATA frames (ACKs go one above).
    pub priority: i32,
    /// Test knob (0 = off): the fraction (0..=1) of arriving DATA and ACK frames this layer drops
    /// before processing, chosen by a deterministic xorshift generator. Simulates datagram loss
    /// on a real link (the C demo's `--loss`); counted in `injected_drops`.
    pub inbound_loss: f64,
    /// Receive window W (0 = 4 × `max_in_flight`): a DATA frame with a sequence number at or
    /// beyond the oldest missing one + W is refused (not acknowledged; counted in
    /// `out_of_window`). Also the most messages held for in-order delivery plus those waiting to
    /// be received; beyond it DATA is refused too (`refused_full`). So a peer cannot grow this
    /// layer's state beyond about 2 × W entries. At most 2^30. The window starts at sequence
    /// number 0, except when the layer's first DATA frame carries a number ≥ W (the peer's layer
    /// was already sending, e.g. this layer took over a transport): the window then starts at
    /// that number, and older ones are refused unacknowledged (`late_after_skip`).
    pub receive_window: usize,
}

impl ReliabilityConfig {
    /// The seed constructor's defaults: ack_timeout 2 s, 5 retries.
    pub fn constructor_defaults() -> Self {
        Self::with(Duration::from_secs(2), 5)
    }
    /// The seed factory's (`create`) defaults: ack_timeout 1 s, 3 retries.
    pub fn factory_defaults() -> Self {
        Self::with(Duration::from_secs(1), 3)
    }
    fn with(ack_timeout: Duration, max_retries: u32) -> Self {
        ReliabilityConfig {
            ack_timeout,
            max_retries,
            in_order: false,
            max_in_flight: 256,
            min_rto: Duration::from_millis(20),
            max_rto: Duration::from_secs(10),
            gap_timeout: Duration::ZERO,
            priority: 0,
            inbound_loss: 0.0,
            receive_window: 0,
        }
    }

    /// How long a sender with these settings keeps a message alive before giving up when no
    /// RTT was measured yet: the retransmit timeout starts at `ack_timeout` and doubles with every
    /// retransmission (capped at `max_rto`), so this is the sum of the `max_retries + 1`
    /// intervals — e.g. 2+4+8+10+10+10 = 44 s for the constructor defaults, 1+2+4+8 = 15 s for
    /// the factory defaults. Saturates instead of overflowing.
    pub fn sender_give_up_span(&self) -> Duration {
        let mut rto = self.ack_timeout;
        let mut span = rto;
        for _ in 0..self.max_retries {
            rto = rto.saturating_mul(2).min(self.max_rto);
            span = span.saturating_add(rto);
            if span >= MAX_DERIVED_GAP {
                return MAX_DERIVED_GAP;
            }
        }
        span
    }

    /// The gap timeout in effect: `gap_timeout`, or when it is zero the sender's give-up span
    /// ([`ReliabilityConfig::sender_give_up_span`]) plus 100 ms of timer slack. The last
    /// retransmission of a missing message leaves one final timeout before that span ends, so
    /// it arrives before the receiver skips its number (the old default,
    /// 2 × ack_timeout × (max_retries + 2), ignored the backoff: 28 s against a last
    /// retransmission at 34 s with the constructor defaults).
    pub fn effective_gap_timeout(&self) -> Duration {
        if !self.gap_timeout.is_zero() {
            return self.gap_timeout;
        }
        self.sender_give_up_span()
            .saturating_add(Duration::from_millis(100))
            .min(MAX_DERIVED_GAP)
    }

    /// The receive window W in effect: `receive_window`, or 4 × `max_in_flight` when it is 0.
    pub fn effective_receive_window(&self) -> usize {
        match self.receive_window {
            0 => self.max_in_flight.saturating_mul(4).min(MAX_RECEIVE_WINDOW),
            w => w,
        }
    }
}

/// Upper bound of a derived gap timeout (one day).
const MAX_DERIVED_GAP: Duration = Duration::from_secs(86_400);

/// Most skipped sequence numbers remembered (to refuse or late-deliver their copies); older ones
/// are forgotten and a copy older than all remembered ones is refused unacknowledged.
const MAX_SKIPPED_REMEMBERED: usize = 1 << 16;

/// Largest allowed receive window (sequence numbers are compared modulo 2^32).
pub const MAX_RECEIVE_WINDOW: usize = 1 << 30;

/// How a reliable message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(non_camel_case_types)]
pub enum wtd_reliable_outcome {
    /// The peer acknowledged it.
    WTD_RELIABLE_DELIVERED = 0,
    /// No ACK after `max_retries` retransmissions (or the layer closed first).
    WTD_RELIABLE_GAVE_UP = 1,
}

crate::error::c_enum!(wtd_reliable_outcome {
    WTD_RELIABLE_DELIVERED => c"delivered",
    WTD_RELIABLE_GAVE_UP => c"gave_up",
});

/// Counters of a reliability layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReliabilityStats {
    /// Messages accepted by `send`.
    pub sent: u64,
    /// DATA retransmissions.
    pub retransmits: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages given up.
    pub gave_up: u64,
    /// Messages delivered to the application.
    pub delivered: u64,
    /// DATA frames received again after delivery (suppressed).
    pub duplicates: u64,
    /// ACKs sent.
    pub acks_sent: u64,
    /// ACKs received.
    pub acks_received: u64,
    /// ACKs for nothing pending (late duplicates).
    pub unknown_acks: u64,
    /// Frames that looked like reliability frames but were malformed (dropped).
    pub malformed: u64,
    /// Sequence gaps the receiver skipped after `gap_timeout`.
    pub gaps_skipped: u64,
    /// Outcomes dropped because nobody polled them (the queue holds 65,536).
    pub outcomes_dropped: u64,
    /// Messages awaiting an ACK now.
    pub in_flight: u64,
    /// Smoothed RTT in µs (0 before the first sample).
    pub srtt_us: u64,
    /// Current retransmit timeout in µs for new messages.
    pub rto_us: u64,
    /// Arriving frames dropped on purpose by the `inbound_loss` test knob.
    pub injected_drops: u64,
    /// DATA frames that arrived (before any filtering below).
    pub data_received: u64,
    /// DATA frames refused because their sequence number was at or beyond floor + W (the
    /// oldest missing sequence number plus the receive window); not acknowledged.
    pub out_of_window: u64,
    /// DATA frames refused because W messages were already held or waiting to be received;
    /// not acknowledged (the sender retransmits).
    pub refused_full: u64,
    /// DATA frames for a sequence number the receiver had skipped (gap timeout): delivered late
    /// in unordered mode, refused and not acknowledged in in-order mode (the sender then reports
    /// it given up, never delivered). Also frames too old to tell (neither acknowledged).
    pub late_after_skip: u64,
    /// Gauge: sequence numbers above the floor tracked now (held messages + seen numbers).
    pub recv_buffered: u64,
    /// Gauge: delivered messages waiting in the receive queue now.
    pub recv_ready: u64,
    /// ACKs not sent: the transport's outgoing queue was full (an ACK never evicts an
    /// application datagram) or the send failed. The sender retransmits; the duplicate is
    /// acknowledged when there is room.
    pub acks_not_sent: u64,
}

struct Pending {
    frame: Bytes,
    first_sent: Instant,
    last_sent: Instant,
    retries: u32,
    rto: Duration,
}

enum Event {
    Message(Bytes),
    Outcome(u32, wtd_reliable_outcome),
}

struct State {
    next_seq: u32,
    pending: HashMap<u32, Pending>,
    srtt: Option<(f64, f64)>,
    /// Next sequence number the receiver has not seen (unwrapped).
    floor: u64,
    floor_missing_since: Option<Instant>,
    seen: BTreeSet<u64>,
    held: BTreeMap<u64, Bytes>,
    /// Sequence numbers below the floor that were skipped (never received), newest remembered.
    skipped: BTreeSet<u64>,
    /// Below this every skipped number has been forgotten: a copy there is ambiguous.
    skip_horizon: u64,
    /// A DATA frame has arrived (the window's start is settled).
    synced: bool,
    ready: VecDeque<Bytes>,
    outcomes: VecDeque<(u32, wtd_reliable_outcome)>,
    events: VecDeque<Event>,
    stats: ReliabilityStats,
    closed: bool,
    /// xorshift64 state of the `inbound_loss` test knob.
    loss_rng: u64,
    /// The `inbound_loss` test knob now (starts at `config.inbound_loss`).
    inbound_loss: f64,
}

/// Callbacks of a reliability layer: called one at a time (never in parallel), on the thread
/// that produced the event; calling the layer from inside them is allowed.
#[derive(Default)]
pub struct ReliabilityCallbacks {
    /// A message arrived (instead of the receive queue).
    pub on_message: Option<Box<dyn Fn(Bytes) + Send + Sync>>,
    /// A sent message was delivered or given up (instead of the outcome queue).
    pub on_outcome: Option<Box<dyn Fn(u32, wtd_reliable_outcome) + Send + Sync>>,
}

struct Inner {
    transport: DatagramTransport,
    config: ReliabilityConfig,
    /// `config.effective_receive_window()`.
    window: u64,
    /// `config.effective_gap_timeout()`.
    gap_timeout: Duration,
    state: Mutex<State>,
    ready: runtime::Signal,
    wake: Notify,
    callbacks: CallbackSlot<ReliabilityCallbacks>,
    dispatching: AtomicBool,
}

/// A reliability layer attached to a datagram transport. Cheap to clone.
#[derive(Clone)]
pub struct ReliabilityLayer {
    inner: Arc<Inner>,
}

const MAX_OUTCOMES: usize = 65_536;

impl ReliabilityLayer {
    /// Attaches to `transport`: from now on its reliability frames go to this layer.
    pub fn attach(transport: &DatagramTransport, config: ReliabilityConfig) -> Result<Self> {
        if config.max_in_flight == 0 || config.ack_timeout.is_zero() {
            return Err(Error::invalid("max_in_flight and ack_timeout must be > 0"));
        }
        if !(0.0..=1.0).contains(&config.inbound_loss) {
            return Err(Error::invalid("inbound_loss must be within 0..=1"));
        }
        if config.receive_window > MAX_RECEIVE_WINDOW {
            return Err(Error::invalid(format!(
                "receive_window must be at most {MAX_RECEIVE_WINDOW}"
            )));
        }
        let inner = Arc::new(Inner {
            transport: transport.clone(),
            state: Mutex::new(State {
                next_seq: 0,
                pending: HashMap::new(),
                srtt: None,
                floor: 0,
                floor_missing_since: None,
                seen: BTreeSet::new(),
                held: BTreeMap::new(),
                skipped: BTreeSet::new(),
                skip_horizon: 0,
                synced: false,
                ready: VecDeque::new(),
                outcomes: VecDeque::new(),
                events: VecDeque::new(),
                stats: ReliabilityStats {
                    rto_us: config.ack_timeout.as_micros() as u64,
                    ..Default::default()
                },
                closed: false,
                loss_rng: 0x9E37_79B9_7F4A_7C15,
                inbound_loss: config.inbound_loss,
            }),
            window: config.effective_receive_window() as u64,
            gap_timeout: config.effective_gap_timeout(),
            config,
            ready: runtime::Signal::new(),
            wake: Notify::new(),
            callbacks: CallbackSlot::default(),
            dispatching: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        {
            // Registered and installed under one lock, so a concurrent close of an older layer
            // cannot clear this one's interceptor.
            let mut owners = lock(&OWNERS);
            owners.retain(|w| {
                w.upgrade()
                    .is_some_and(|o| !o.transport.same(transport) && !o.transport.is_closed())
            });
            owners.push(weak.clone());
            transport.set_interceptor(Some(Arc::new(move |d: &Bytes| match weak.upgrade() {
                Some(inner) => inner.on_datagram(d),
                None => false,
            })));
        }
        runtime::handle()?.spawn(timer_task(Arc::downgrade(&inner)));
        Ok(ReliabilityLayer { inner })
    }

    /// Sends `payload` reliably; returns its sequence number. WTD_ERR_WOULD_BLOCK when
    /// `max_in_flight` messages await ACKs; WTD_ERR_TOO_LARGE when the framed message does not
    /// fit one datagram.
    pub fn send(&self, payload: &[u8]) -> Result<u32> {
        let inner = &self.inner;
        let max = inner.transport.max_datagram_size();
        if payload.len() + DATA_OVERHEAD > max {
            return Err(Error::new(
                wtd_result::WTD_ERR_TOO_LARGE,
                format!(
                    "{} bytes + {DATA_OVERHEAD} framing exceed max_datagram_size {max}",
                    payload.len()
                ),
            ));
        }
        let (seq, frame) = {
            let mut st = lock(&inner.state);
            if st.closed {
                return Err(Error::closed("reliability layer is closed"));
            }
            if st.pending.len() >= inner.config.max_in_flight {
                return Err(Error::would_block(format!(
                    "{} messages await acknowledgement",
                    st.pending.len()
                )));
            }
            let seq = st.next_seq;
            st.next_seq = seq.wrapping_add(1);
            let frame = Bytes::from(encode_data(seq, payload));
            let now = Instant::now();
            let rto = inner.current_rto(&st);
            st.pending.insert(
                seq,
                Pending {
                    frame: frame.clone(),
                    first_sent: now,
                    last_sent: now,
                    retries: 0,
                    rto,
                },
            );
            st.stats.sent += 1;
            (seq, frame)
        };
        // Sent outside the lock: an in-memory peer may answer synchronously.
        if let Err(e) =
            inner
                .transport
                .send(&frame, inner.config.priority, None, Some(Duration::ZERO))
        {
            if e.code == wtd_result::WTD_ERR_CLOSED {
                lock(&inner.state).pending.remove(&seq);
                return Err(e);
            }
            // Queue full etc.: the retransmit timer sends it again.
        }
        inner.wake.notify_one();
        Ok(seq)
    }

    /// Next delivered message, waiting up to `timeout` (`None`: forever; `Some(ZERO)`: poll).
    pub fn receive(&self, timeout: Option<Duration>) -> Result<Bytes> {
        self.receive_where(timeout, |_| Ok(()))
    }

    /// [`ReliabilityLayer::receive`] that takes the next message only if `accept` approves it; a
    /// refused message stays first in the queue (nothing is lost) and the refusal is returned
    /// (the C API uses it for WTD_ERR_BUFFER_TOO_SMALL).
    pub fn receive_where(
        &self,
        timeout: Option<Duration>,
        accept: impl Fn(&[u8]) -> Result<()>,
    ) -> Result<Bytes> {
        let deadline = runtime::Deadline::start(timeout)?;
        let mut st = lock(&self.inner.state);
        loop {
            if let Some(m) = st.ready.front() {
                accept(m)?;
                return Ok(st.ready.pop_front().expect("peeked"));
            }
            if st.closed {
                return Err(Error::closed("reliability layer is closed"));
            }
            let wait = deadline
                .remaining("no message", "no message in time")?
                .unwrap_or(Duration::from_secs(3600));
            st = self.inner.ready.wait(st, &self.inner.state, Some(wait));
        }
    }

    /// Takes up to `max` finished sends (sequence, outcome), oldest first.
    pub fn poll_outcomes(&self, max: usize) -> Vec<(u32, wtd_reliable_outcome)> {
        let mut st = lock(&self.inner.state);
        let n = max.min(st.outcomes.len());
        st.outcomes.drain(..n).collect()
    }

    /// Changes the `inbound_loss` test knob (the fraction of arriving frames dropped, 0..=1).
    pub fn set_inbound_loss(&self, fraction: f64) -> Result<()> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Error::invalid(format!(
                "the drop fraction must be within 0..1, not {fraction}"
            )));
        }
        lock(&self.inner.state).inbound_loss = fraction;
        Ok(())
    }

    /// Installs (None: removes) callbacks. Returns once no callback of the old set is running
    /// (at once when called from inside one of this layer's callbacks or on a wtd runtime
    /// thread): after it returns, only the new set is called.
    pub fn set_callbacks(&self, callbacks: Option<ReliabilityCallbacks>) {
        self.inner.callbacks.replace(callbacks, |_| {});
    }

    /// Counters.
    pub fn stats(&self) -> ReliabilityStats {
        let st = lock(&self.inner.state);
        let mut s = st.stats.clone();
        s.in_flight = st.pending.len() as u64;
        s.srtt_us = st.srtt.map_or(0, |(srtt, _)| srtt as u64);
        s.rto_us = self.inner.current_rto(&st).as_micros() as u64;
        s.recv_buffered = (st.held.len() + st.seen.len()) as u64;
        s.recv_ready = st.ready.len() as u64;
        s
    }

    /// Detaches from the transport; messages still awaiting ACKs are reported as given up, and
    /// blocked receivers wake with WTD_ERR_CLOSED. Idempotent.
    pub fn close(&self) {
        self.inner.detach();
        let mut st = lock(&self.inner.state);
        if st.closed {
            return;
        }
        st.closed = true;
        let seqs: Vec<u32> = st.pending.drain().map(|(s, _)| s).collect();
        for seq in seqs {
            st.stats.gave_up += 1;
            self.inner
                .record_outcome(&mut st, seq, wtd_reliable_outcome::WTD_RELIABLE_GAVE_UP);
        }
        drop(st);
        self.inner.ready.notify_all();
        self.inner.wake.notify_one();
        self.inner.dispatch();
    }
}

/// The layer attached to each transport now (at most one entry per transport): `close` only
/// clears a transport's interceptor when that transport is still attached to the closing layer,
/// so closing (or freeing) a layer that another one took over from leaves the newer attached.
static OWNERS: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

impl Inner {
    /// Removes this layer's interceptor from the transport, unless a newer layer replaced it.
    fn detach(self: &Arc<Self>) {
        let mut owners = lock(&OWNERS);
        let me = Arc::as_ptr(self);
        let before = owners.len();
        owners.retain(|w| !std::ptr::eq(w.as_ptr(), me) && w.strong_count() > 0);
        let was_attached = owners.len() < before
            && !owners
                .iter()
                .filter_map(Weak::upgrade)
                .any(|o| o.transport.same(&self.transport));
        if was_attached {
            self.transport.set_interceptor(None);
        }
    }

    fn current_rto(&self, st: &State) -> Duration {
        match st.srtt {
            None => self.config.ack_timeout,
            Some((srtt, rttvar)) => {
                let us = srtt + (4.0 * rttvar).max(1000.0);
                Duration::from_micros(us as u64).clamp(self.config.min_rto, self.config.max_rto)
            }
        }
    }

    fn record_outcome(&self, st: &mut State, seq: u32, outcome: wtd_reliable_outcome) {
        if self.callbacks.get().is_some_and(|c| c.on_outcome.is_some()) {
            st.events.push_back(Event::Outcome(seq, outcome));
            return;
        }
        if st.outcomes.len() >= MAX_OUTCOMES {
            st.outcomes.pop_front();
            st.stats.outcomes_dropped += 1;
        }
        st.outcomes.push_back((seq, outcome));
    }

    fn deliver(&self, st: &mut State, payload: Bytes) {
        st.stats.delivered += 1;
        if self.callbacks.get().is_some_and(|c| c.on_message.is_some()) {
            st.events.push_back(Event::Message(payload));
        } else {
            st.ready.push_back(payload);
            self.ready.notify_one();
        }
    }

    /// Runs queued callbacks; a call made while another thread (or an outer frame on this one)
    /// is dispatching just leaves its events for that dispatcher, so callbacks never overlap.
    fn dispatch(&self) {
        loop {
            if self.dispatching.swap(true, Ordering::AcqRel) {
                return;
            }
            loop {
                let ev = lock(&self.state).events.pop_front();
                let Some(ev) = ev else { break };
                // Looked up per event under the gate: once set_callbacks returned, the old set
                // is never called again.
                let _running = self.callbacks.enter();
                let cbs = self.callbacks.get();
                let Some(cbs) = &cbs else { continue };
                let run = std::panic::AssertUnwindSafe(|| match ev {
                    Event::Message(m) => {
                        if let Some(f) = &cbs.on_message {
                            f(m)
                        }
                    }
                    Event::Outcome(seq, o) => {
                        if let Some(f) = &cbs.on_outcome {
                            f(seq, o)
                        }
                    }
                });
                if std::panic::catch_unwind(run).is_err() {
                    log_error!("a reliability callback panicked");
                }
            }
            self.dispatching.store(false, Ordering::Release);
            if lock(&self.state).events.is_empty() {
                return;
            }
        }
    }

    /// The `inbound_loss` test knob: true when this arriving frame is to be dropped.
    fn inject_loss(&self) -> bool {
        let mut st = lock(&self.state);
        let p = st.inbound_loss;
        if p <= 0.0 {
            return false;
        }
        let mut x = st.loss_rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        st.loss_rng = x;
        let drop = ((x >> 11) as f64 / (1u64 << 53) as f64) < p;
        if drop {
            st.stats.injected_drops += 1;
        }
        drop
    }

    /// Interceptor: consumes reliability frames arriving on the transport.
    fn on_datagram(&self, d: &Bytes) -> bool {
        let parsed = parse(d);
        if matches!(parsed, Parsed::Frame(_)) && self.inject_loss() {
            return true;
        }
        match parsed {
            Parsed::NotOurs => false,
            Parsed::Malformed(why) => {
                log_debug!("malformed reliability frame dropped: {why}");
                lock(&self.state).stats.malformed += 1;
                true
            }
            Parsed::Frame(Frame::Ack { seq }) => {
                let mut st = lock(&self.state);
                st.stats.acks_received += 1;
                match st.pending.remove(&seq) {
                    Some(p) => {
                        if p.retries == 0 {
                            // Karn: only unambiguous samples.
                            let sample = p.first_sent.elapsed().as_micros() as f64;
                            st.srtt = Some(match st.srtt {
                                None => (sample, sample / 2.0),
                                Some((srtt, rttvar)) => (
                                    0.875 * srtt + 0.125 * sample,
                                    0.75 * rttvar + 0.25 * (srtt - sample).abs(),
                                ),
                            });
                        }
                        st.stats.acked += 1;
                        self.record_outcome(
                            &mut st,
                            seq,
                            wtd_reliable_outcome::WTD_RELIABLE_DELIVERED,
                        );
                    }
                    None => st.stats.unknown_acks += 1,
                }
                drop(st);
                self.dispatch();
                true
            }
            Parsed::Frame(Frame::Data { seq, payload }) => {
                let payload = d.slice_ref(payload);
                let ack = {
                    let mut st = lock(&self.state);
                    st.stats.data_received += 1;
                    // A closed layer acknowledges nothing: it could not deliver the message.
                    !st.closed && self.accept_data(&mut st, seq, payload)
                };
                if ack {
                    self.send_ack(seq);
                }
                self.dispatch();
                true
            }
        }
    }

    /// Sends the ACK of `seq`, unless the transport's outgoing queue is full: there an ACK
    /// (one priority above DATA) would evict an application datagram under DROP_OLDEST. A
    /// skipped or failed ACK is counted in `acks_not_sent`; the sender retransmits and the
    /// duplicate is acknowledged once there is room.
    fn send_ack(&self, seq: u32) {
        let full =
            self.transport.send_buffer_size() >= self.transport.config().outgoing_high_water_mark;
        let sent = !full
            && self
                .transport
                .send(
                    &encode_ack(seq),
                    self.config.priority.saturating_add(1),
                    None,
                    Some(Duration::ZERO),
                )
                .is_ok();
        let mut st = lock(&self.state);
        if sent {
            st.stats.acks_sent += 1;
        } else {
            st.stats.acks_not_sent += 1;
        }
    }

    /// Takes an arriving DATA frame; returns whether to acknowledge it. Only a message this
    /// layer has (delivered, held or queued) is acknowledged, so an ACK always means delivered.
    fn accept_data(&self, st: &mut State, seq: u32, payload: Bytes) -> bool {
        if !st.synced {
            st.synced = true;
            if u64::from(seq) >= st.floor + self.window {
                // The peer was already sending before this layer attached: start there.
                st.floor = u64::from(seq);
                st.skip_horizon = st.floor;
            }
        }
        let diff = seq.wrapping_sub(st.floor as u32) as i32;
        let u = st.floor as i64 + diff as i64;
        if u < st.floor as i64 {
            if u < 0 {
                // Below sequence number 0 of this session: never sent; a peer's bug.
                st.stats.out_of_window += 1;
                return false;
            }
            let u = u as u64;
            if st.skipped.contains(&u) {
                st.stats.late_after_skip += 1;
                if self.config.in_order || self.receive_full(st) {
                    return false;
                }
                st.skipped.remove(&u);
                self.deliver(st, payload);
                return true;
            }
            if u < st.skip_horizon {
                st.stats.late_after_skip += 1;
                return false;
            }
            st.stats.duplicates += 1;
            return true;
        }
        let u = u as u64;
        if u >= st.floor + self.window {
            st.stats.out_of_window += 1;
            return false;
        }
        if st.seen.contains(&u) || st.held.contains_key(&u) {
            st.stats.duplicates += 1;
            return true;
        }
        if self.receive_full(st) {
            st.stats.refused_full += 1;
            return false;
        }
        if self.config.in_order {
            st.held.insert(u, payload);
        } else {
            st.seen.insert(u);
            self.deliver(st, payload);
        }
        self.advance(st);
        true
    }

    /// True when W messages are already held for order or waiting to be received.
    fn receive_full(&self, st: &State) -> bool {
        (st.held.len() + st.ready.len()) as u64 >= self.window
    }

    /// Moves the floor over every sequence number now complete, releasing held messages.
    fn advance(&self, st: &mut State) {
        loop {
            let f = st.floor;
            if st.seen.remove(&f) {
            } else if let Some(m) = st.held.remove(&f) {
                self.deliver(st, m);
            } else {
                break;
            }
            st.floor += 1;
            st.floor_missing_since = None;
        }
        if st.floor_missing_since.is_none() && (!st.seen.is_empty() || !st.held.is_empty()) {
            st.floor_missing_since = Some(Instant::now());
        }
    }

    /// Retransmits what timed out, gives up what ran out of retries, skips stale gaps.
    fn tick(&self) -> Duration {
        let now = Instant::now();
        let mut resend = Vec::new();
        let mut next = Duration::from_millis(50);
        {
            let mut st = lock(&self.state);
            if st.closed {
                return next;
            }
            let mut gave_up = Vec::new();
            for (seq, p) in st.pending.iter_mut() {
                let due = p.last_sent + p.rto;
                if due > now {
                    next = next.min(due - now);
                    continue;
                }
                if p.retries >= self.config.max_retries {
                    gave_up.push(*seq);
                    continue;
                }
                p.retries += 1;
                p.rto = (p.rto * 2).min(self.config.max_rto);
                p.last_sent = now;
                next = next.min(p.rto);
                resend.push(p.frame.clone());
            }
            st.stats.retransmits += resend.len() as u64;
            for seq in gave_up {
                st.pending.remove(&seq);
                st.stats.gave_up += 1;
                self.record_outcome(&mut st, seq, wtd_reliable_outcome::WTD_RELIABLE_GAVE_UP);
            }
            if let Some(since) = st.floor_missing_since {
                if now.duration_since(since) >= self.gap_timeout {
                    let first = st
                        .seen
                        .iter()
                        .next()
                        .copied()
                        .into_iter()
                        .chain(st.held.keys().next().copied())
                        .min();
                    if let Some(first) = first {
                        st.stats.gaps_skipped += 1;
                        // Remember what was skipped (first < floor + W): a late copy is then
                        // refused or delivered late, never acknowledged as a duplicate.
                        for u in st.floor..first {
                            st.skipped.insert(u);
                        }
                        while st.skipped.len() > MAX_SKIPPED_REMEMBERED {
                            let oldest = st.skipped.pop_first().expect("non-empty");
                            st.skip_horizon = oldest + 1;
                        }
                        st.floor = first;
                        st.floor_missing_since = None;
                        self.advance(&mut st);
                    }
                }
            }
        }
        for frame in resend {
            let _ = self
                .transport
                .send(&frame, self.config.priority, None, Some(Duration::ZERO));
        }
        self.dispatch();
        next.max(Duration::from_millis(1))
    }
}

async fn timer_task(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if lock(&inner.state).closed {
            return;
        }
        let wait = inner.tick();
        let notified = inner.wake.notified();
        let _ = tokio::time::timeout(wait, notified).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_matches_pywebtransport() {
        assert_eq!(encode_data(7, b"hi"), b"\x04DATA\x00\x00\x00\x07hi");
        assert_eq!(encode_ack(1234), b"\x03ACK1234");
        assert_eq!(
            parse(b"\x04DATA\x00\x00\x01\x00x"),
            Parsed::Frame(Frame::Data {
                seq: 256,
                payload: b"x"
            })
        );
        assert_eq!(
            parse(b"\x03ACK4294967295"),
            Parsed::Frame(Frame::Ack { seq: u32::MAX })
        );
        assert_eq!(parse(b"plain datagram"), Parsed::NotOurs);
        assert_eq!(parse(b""), Parsed::NotOurs);
        assert!(matches!(parse(b"\x04DATA\x00\x00"), Parsed::Malformed(_)));
        assert!(matches!(parse(b"\x03ACK"), Parsed::Malformed(_)));
        assert!(matches!(parse(b"\x03ACK12a"), Parsed::Malformed(_)));
        assert!(matches!(parse(b"\x03ACK4294967296"), Parsed::Malformed(_)));
        assert!(matches!(parse(b"\x03ACK99999999999"), Parsed::Malformed(_)));
    }

    #[test]
    fn inbound_loss_knob_drops_frames_and_everything_still_arrives_once() {
        use crate::datagram::link::MemoryLink;
        use crate::datagram::transport::TransportConfig;
        let (la, lb) = MemoryLink::pair(1200).unwrap();
        let tc = TransportConfig {
            outgoing_high_water_mark: 1024,
            incoming_high_water_mark: 1024,
            ..Default::default()
        };
        let (ta, tb) = (
            DatagramTransport::new(la, tc.clone()).unwrap(),
            DatagramTransport::new(lb, tc).unwrap(),
        );
        let cfg = ReliabilityConfig {
            ack_timeout: Duration::from_millis(30),
            max_retries: 30,
            min_rto: Duration::from_millis(5),
            max_rto: Duration::from_millis(100),
            in_order: true,
            inbound_loss: 0.3,
            ..ReliabilityConfig::constructor_defaults()
        };
        assert!(ReliabilityLayer::attach(
            &ta,
            ReliabilityConfig {
                inbound_loss: 1.5,
                ..cfg.clone()
            }
        )
        .is_err());
        let (a, b) = (
            ReliabilityLayer::attach(&ta, cfg.clone()).unwrap(),
            ReliabilityLayer::attach(&tb, cfg).unwrap(),
        );
        for i in 0..200u32 {
            a.send(&i.to_be_bytes()).unwrap();
        }
        for i in 0..200u32 {
            let m = b.receive(Some(Duration::from_secs(20))).unwrap();
            assert_eq!(&m[..], &i.to_be_bytes(), "in order, exactly once");
        }
        assert_eq!(
            b.receive(Some(Duration::from_millis(50))).unwrap_err().code,
            wtd_result::WTD_ERR_TIMEOUT
        );
        let (sa, sb) = (a.stats(), b.stats());
        assert!(
            sb.injected_drops > 20 && sa.retransmits > 20,
            "{sa:?} {sb:?}"
        );
        assert_eq!(sb.delivered, 200);
    }
}
