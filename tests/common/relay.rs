//! A userspace UDP impairment relay for tests (this machine's kernel has no netem).
//!
//! The relay listens on 127.0.0.1; a client sends to [`Relay::addr`] instead of the server. For
//! every client address it opens one upstream socket towards the server and forwards both ways,
//! applying the current [`Impairment`] to each packet in both directions, in this order:
//! outage (drop all), MTU (drop packets larger than `mtu`), loss, then delay + jitter, reordering
//! (an extra delay for a fraction of packets, so later ones overtake them) and duplication.
//! The impairment can be changed at any time with [`Relay::set`]; every drop is counted by reason
//! in [`RelayStats`].
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the relay does to packets (both directions).
#[derive(Debug, Clone, Default)]
pub struct Impairment {
    /// Fraction (0..=1) of packets dropped at random.
    pub loss: f64,
    /// Fraction of packets held back by `reorder_delay` extra, so later packets overtake them.
    pub reorder: f64,
    /// Extra delay of a reordered packet.
    pub reorder_delay: Duration,
    /// Fraction of packets sent twice.
    pub duplicate: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Uniform random extra delay in 0..jitter (this alone reorders packets too).
    pub jitter: Duration,
    /// Packets with a UDP payload larger than this are dropped (a path MTU drop / black hole).
    pub mtu: Option<usize>,
    /// Every packet is dropped until this instant (a burst outage).
    pub outage_until: Option<Instant>,
}

/// Counters of a relay.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Packets that arrived at the relay (both directions).
    pub received: AtomicU64,
    /// Packets sent on (duplicates included).
    pub forwarded: AtomicU64,
    /// Dropped at random (`loss`).
    pub dropped_loss: AtomicU64,
    /// Dropped for being larger than `mtu`.
    pub dropped_mtu: AtomicU64,
    /// Dropped during an outage.
    pub dropped_outage: AtomicU64,
    /// Extra copies sent (`duplicate`).
    pub duplicated: AtomicU64,
    /// Packets held back for reordering.
    pub reordered: AtomicU64,
    /// Largest packet seen from the client / from the server (bytes of UDP payload).
    pub largest_from_client: AtomicU64,
    /// Largest packet seen from the server.
    pub largest_from_server: AtomicU64,
}

impl RelayStats {
    /// A one-line summary.
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "received {} forwarded {} lost {} mtu {} outage {} duplicated {} reordered {} \
             largest c->s {} s->c {}",
            g(&self.received),
            g(&self.forwarded),
            g(&self.dropped_loss),
            g(&self.dropped_mtu),
            g(&self.dropped_outage),
            g(&self.duplicated),
            g(&self.reordered),
            g(&self.largest_from_client),
            g(&self.largest_from_server),
        )
    }
}

struct Scheduled {
    at: Instant,
    order: u64,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(o.at, o.order))
    }
}

struct Shared {
    server: SocketAddr,
    front: Arc<UdpSocket>,
    impairment: Mutex<Impairment>,
    rng: Mutex<u64>,
    queue: Mutex<(BinaryHeap<Reverse<Scheduled>>, u64)>,
    queued: Condvar,
    stop: AtomicBool,
    stats: RelayStats,
    /// Client address → upstream socket towards the server.
    upstream: Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running relay; stops (threads joined) when dropped.
pub struct Relay {
    shared: Arc<Shared>,
}

const POLL: Duration = Duration::from_millis(20);

impl Relay {
    /// Starts a relay on 127.0.0.1 in front of `server`, forwarding unimpaired.
    pub fn start(server: SocketAddr) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind relay");
        front.set_read_timeout(Some(POLL)).unwrap();
        let shared = Arc::new(Shared {
            server,
            front: Arc::new(front),
            impairment: Mutex::new(Impairment::default()),
            rng: Mutex::new(0x2545_f491_4f6c_dd1d),
            queue: Mutex::new((BinaryHeap::new(), 0)),
            queued: Condvar::new(),
            stop: AtomicBool::new(false),
            stats: RelayStats::default(),
            upstream: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        });
        let (s1, s2) = (shared.clone(), shared.clone());
        let mut threads = shared.threads.lock().unwrap();
        threads.push(std::thread::spawn(move || front_loop(s1)));
        threads.push(std::thread::spawn(move || scheduler_loop(s2)));
        drop(threads);
        Relay { shared }
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.shared.front.local_addr().unwrap()
    }

    /// Changes the impairment (takes effect for the next packet).
    pub fn set(&self, f: impl FnOnce(&mut Impairment)) {
        f(&mut self.shared.impairment.lock().unwrap());
    }

    /// Drops every packet for `d` from now.
    pub fn outage(&self, d: Duration) {
        self.set(|i| i.outage_until = Some(Instant::now() + d));
    }

    /// Back to forwarding everything unchanged.
    pub fn clear(&self) {
        self.set(|i| *i = Impairment::default());
    }

    /// Counters.
    pub fn stats(&self) -> &RelayStats {
        &self.shared.stats
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.queued.notify_all();
        let threads: Vec<_> = std::mem::take(&mut *self.shared.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn random(&self) -> f64 {
        let mut x = self.rng.lock().unwrap();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Applies the impairment to one packet and schedules what survives.
    fn offer(&self, data: &[u8], socket: &Arc<UdpSocket>, to: SocketAddr, from_client: bool) {
        let st = &self.stats;
        st.received.fetch_add(1, Ordering::Relaxed);
        let largest = if from_client {
            &st.largest_from_client
        } else {
            &st.largest_from_server
        };
        largest.fetch_max(data.len() as u64, Ordering::Relaxed);
        let imp = self.impairment.lock().unwrap().clone();
        let now = Instant::now();
        if imp.outage_until.is_some_and(|t| now < t) {
            st.dropped_outage.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if imp.mtu.is_some_and(|m| data.len() > m) {
            st.dropped_mtu.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if imp.loss > 0.0 && self.random() < imp.loss {
            st.dropped_loss.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let copies = if imp.duplicate > 0.0 && self.random() < imp.duplicate {
            st.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = imp.delay + imp.jitter.mul_f64(self.random());
            if imp.reorder > 0.0 && self.random() < imp.reorder {
                st.reordered.fetch_add(1, Ordering::Relaxed);
                delay += imp.reorder_delay;
            }
            if delay.is_zero() {
                let _ = socket.send_to(data, to);
                st.forwarded.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut q = self.queue.lock().unwrap();
            q.1 += 1;
            let order = q.1;
            q.0.push(Reverse(Scheduled {
                at: now + delay,
                order,
                socket: socket.clone(),
                to,
                data: data.to_vec(),
            }));
            drop(q);
            self.queued.notify_one();
        }
    }
}

/// Reads from clients; opens an upstream socket (and its reader thread) per new client.
fn front_loop(sh: Arc<Shared>) {
    let mut buf = vec![0u8; 65_536];
    while !sh.stop.load(Ordering::SeqCst) {
        let (n, client) = match sh.front.recv_from(&mut buf) {
            Ok(v) => v,
            Err(_) => continue, // timeout: check `stop`
        };
        let up = {
            let mut map = sh.upstream.lock().unwrap();
            match map.get(&client) {
                Some(u) => u.clone(),
                None => {
                    let u = UdpSocket::bind("127.0.0.1:0").expect("bind upstream");
                    u.set_read_timeout(Some(POLL)).unwrap();
                    let u = Arc::new(u);
                    map.insert(client, u.clone());
                    let (sh2, u2) = (sh.clone(), u.clone());
                    sh.threads
                        .lock()
                        .unwrap()
                        .push(std::thread::spawn(move || upstream_loop(sh2, u2, client)));
                    u
                }
            }
        };
        sh.offer(&buf[..n], &up, sh.server, true);
    }
}

/// Reads the server's answers for one client and sends them back through the front socket.
fn upstream_loop(sh: Arc<Shared>, up: Arc<UdpSocket>, client: SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    while !sh.stop.load(Ordering::SeqCst) {
        if let Ok((n, _)) = up.recv_from(&mut buf) {
            let front = sh.front.clone();
            sh.offer(&buf[..n], &front, client, false);
        }
    }
}

/// Sends delayed packets when they are due.
fn scheduler_loop(sh: Arc<Shared>) {
    let mut q = sh.queue.lock().unwrap();
    while !sh.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let wait = match q.0.peek() {
            Some(Reverse(p)) if p.at <= now => {
                let Reverse(p) = q.0.pop().unwrap();
                drop(q);
                let _ = p.socket.send_to(&p.data, p.to);
                sh.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                q = sh.queue.lock().unwrap();
                continue;
            }
            Some(Reverse(p)) => p.at - now,
            None => POLL,
        };
        q = sh.queued.wait_timeout(q, wait).unwrap().0;
    }
}
