//! Fault injection under QUIC: a UDP socket that loses, delays and
//! partitions datagrams per peer, steered from a test.
//!
//! `tc netem` is not available here, so faults are made one level up: a
//! [`FaultySocket`] wraps the real UDP socket of a quinn [`Endpoint`] and
//! asks a [`Faults`] handle about every datagram. The test keeps a clone of
//! the handle and changes the rules while the endpoint runs:
//!
//! ```text
//! let faults = Faults::with_seed(7);
//! let endpoint = faults::endpoint(EndpointConfig::default(), None, socket, faults.clone())?;
//! faults.set_loss(Target::All, Direction::Both, 0.2); // 20 % loss both ways
//! faults.set_delay(server, Direction::Outbound, ms(20), ms(40)); // with jitter
//! faults.partition([server]); // nothing to or from `server`...
//! faults.heal(); // ...until now
//! ```
//!
//! Rules are keyed by peer address (IPv4-mapped IPv6 counts as IPv4), with a
//! default for all peers; a peer's own setting wins over the default. A
//! dropped datagram is reported to quinn as sent, as on a lossy path. A
//! delayed one is copied to a timer queue and sent (or handed up) by a
//! background task when due: different delays reorder datagrams, equal
//! delays keep their order, and a partition also catches datagrams held.
//!
//! Segmentation offload: the socket tells quinn it takes one datagram per
//! transmit (`max_transmit_segments() == 1`: no GSO), so every outbound
//! decision is per datagram. Receiving keeps the real socket's GRO batches
//! and splits each by its stride, judging every datagram and compacting the
//! survivors in place.
//!
//! Decisions come from one seeded generator per handle
//! ([`Faults::with_seed`]): a seed replays the same sequence of decisions,
//! though which datagram meets which still depends on timing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::poll_fn;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Endpoint, EndpointConfig, ServerConfig, UdpPoller};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The peers a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every peer without a setting of its own.
    All,
    /// The peer at this address.
    Peer(SocketAddr),
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Target::Peer(addr)
    }
}

/// The datagrams a rule applies to, seen from the faulty socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Datagrams this socket sends.
    Outbound,
    /// Datagrams this socket receives.
    Inbound,
    /// Both.
    Both,
}

/// What the faults did so far, in datagrams. See [`Faults::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Handed to the real socket, at once or when their delay ran out.
    pub sent: u64,
    /// Handed up to quinn, at once or when their delay ran out.
    pub received: u64,
    /// Outbound datagrams dropped by a loss rule.
    pub lost_outbound: u64,
    /// Inbound datagrams dropped by a loss rule.
    pub lost_inbound: u64,
    /// Outbound datagrams dropped by a partition.
    pub partitioned_outbound: u64,
    /// Inbound datagrams dropped by a partition.
    pub partitioned_inbound: u64,
    /// Outbound datagrams held back by a delay rule (one that a partition
    /// then catches counts as partitioned too).
    pub delayed_outbound: u64,
    /// Inbound datagrams held back by a delay rule (likewise).
    pub delayed_inbound: u64,
    /// Delayed datagrams the real socket failed to send (logged; errors of
    /// undelayed sends go to quinn as usual).
    pub send_errors: u64,
}

impl FaultStats {
    /// All datagrams dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.lost_outbound
            + self.lost_inbound
            + self.partitioned_outbound
            + self.partitioned_inbound
            + self.send_errors
    }

    fn count(&mut self, way: Way, verdict: Verdict) {
        let counter = match (verdict, way) {
            (Verdict::Pass, _) => return,
            (Verdict::Lose, Way::Out) => &mut self.lost_outbound,
            (Verdict::Lose, Way::In) => &mut self.lost_inbound,
            (Verdict::Partition, Way::Out) => &mut self.partitioned_outbound,
            (Verdict::Partition, Way::In) => &mut self.partitioned_inbound,
            (Verdict::Delay(_), Way::Out) => &mut self.delayed_outbound,
            (Verdict::Delay(_), Way::In) => &mut self.delayed_inbound,
        };
        *counter += 1;
    }
}

/// The control handle: rules, random generator and counters, shared by the
/// test and any number of [`FaultySocket`]s. Clones share the same state.
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

struct State {
    seed: u64,
    rng: StdRng,
    default: Rule,
    peers: HashMap<SocketAddr, Rule>,
    partitioned: HashSet<SocketAddr>,
    stats: FaultStats,
}

/// One direction of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Out = 0,
    In = 1,
}

/// Settings for one peer (or the default), per [`Way`]; `None` defers to
/// the default.
#[derive(Debug, Clone, Copy, Default)]
struct Rule {
    loss: [Option<f64>; 2],
    delay: [Option<(Duration, Duration)>; 2],
}

/// What happens to one datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Pass,
    Lose,
    Partition,
    Delay(Duration),
}

impl Default for Faults {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Faults")
            .field("seed", &state.seed)
            .field("partitioned", &state.partitioned)
            .field("stats", &state.stats)
            .finish_non_exhaustive()
    }
}

impl Faults {
    /// No faults yet, with a random seed (see [`Faults::seed`] to replay).
    pub fn new() -> Self {
        Self::with_seed(rand::random())
    }

    /// No faults yet; random decisions drawn from a generator seeded with
    /// `seed`, so that a run can be replayed.
    pub fn with_seed(seed: u64) -> Self {
        let state = State {
            seed,
            rng: StdRng::seed_from_u64(seed),
            default: Rule::default(),
            peers: HashMap::new(),
            partitioned: HashSet::new(),
            stats: FaultStats::default(),
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The seed of the random generator.
    pub fn seed(&self) -> u64 {
        self.state.lock().seed
    }

    /// Drop each datagram to or from `target` with `probability` (clamped to
    /// 0..=1; NaN acts as 0). A probability of 0 for one peer exempts it
    /// from the default.
    pub fn set_loss(&self, target: impl Into<Target>, direction: Direction, probability: f64) {
        let p = probability.clamp(0.0, 1.0);
        self.edit(target.into(), direction, |rule, w| rule.loss[w] = Some(p));
    }

    /// Hold each datagram to or from `target` for a time drawn uniformly
    /// from `min..=max` (swapped if `max < min`). Zero for both removes the
    /// delay (for one peer: exempts it from the default). Each crossing of
    /// this socket is delayed: `Direction::Both` on one end of a connection
    /// adds the delay twice to its round trip.
    pub fn set_delay(
        &self,
        target: impl Into<Target>,
        direction: Direction,
        min: Duration,
        max: Duration,
    ) {
        let range = (min.min(max), min.max(max));
        self.edit(target.into(), direction, |rule, w| {
            rule.delay[w] = Some(range)
        });
    }

    /// Drop every datagram to or from these peers, including those already
    /// held by a delay, until [`Faults::heal`] or [`Faults::clear`].
    pub fn partition(&self, peers: impl IntoIterator<Item = SocketAddr>) {
        let mut state = self.state.lock();
        state.partitioned.extend(peers.into_iter().map(canonical));
    }

    /// End all partitions. Loss and delay rules stay.
    pub fn heal(&self) {
        self.state.lock().partitioned.clear();
    }

    /// Remove every rule and partition. The counters and the random
    /// generator go on.
    pub fn clear(&self) {
        let mut state = self.state.lock();
        state.default = Rule::default();
        state.peers.clear();
        state.partitioned.clear();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> FaultStats {
        self.state.lock().stats
    }

    fn edit(&self, target: Target, direction: Direction, set: impl Fn(&mut Rule, usize)) {
        let mut state = self.state.lock();
        let rule = match target {
            Target::All => &mut state.default,
            Target::Peer(addr) => state.peers.entry(canonical(addr)).or_default(),
        };
        if direction != Direction::Inbound {
            set(rule, Way::Out as usize);
        }
        if direction != Direction::Outbound {
            set(rule, Way::In as usize);
        }
    }

    /// Decide the fate of one datagram to (`Out`) or from (`In`) `peer`,
    /// and count a drop or delay.
    fn judge(&self, way: Way, peer: SocketAddr) -> Verdict {
        let peer = canonical(peer);
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let own = state.peers.get(&peer);
        let w = way as usize;
        let loss = own.and_then(|r| r.loss[w]).or(state.default.loss[w]);
        let delay = own.and_then(|r| r.delay[w]).or(state.default.delay[w]);
        let verdict = match (loss, delay) {
            _ if state.partitioned.contains(&peer) => Verdict::Partition,
            (Some(p), _) if p > 0.0 && state.rng.random::<f64>() < p => Verdict::Lose,
            (_, Some((min, max))) if min == max && !max.is_zero() => Verdict::Delay(min),
            (_, Some((min, max))) if min < max => Verdict::Delay(state.rng.random_range(min..=max)),
            _ => Verdict::Pass,
        };
        state.stats.count(way, verdict);
        if verdict != Verdict::Pass {
            tracing::trace!(?way, %peer, ?verdict, "fault injected");
        }
        verdict
    }

    /// Whether a held datagram to or from `peer` must now be dropped; counts
    /// the drop.
    fn cut_off(&self, way: Way, peer: SocketAddr) -> bool {
        let mut state = self.state.lock();
        let cut = state.partitioned.contains(&canonical(peer));
        if cut {
            state.stats.count(way, Verdict::Partition);
        }
        cut
    }

    fn tally(&self, update: impl FnOnce(&mut FaultStats)) {
        update(&mut self.state.lock().stats);
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so a rule matches either spelling.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// A datagram held back by a delay rule.
#[derive(Debug)]
struct Held {
    due: Instant,
    way: Way,
    /// The destination (outbound) or source (inbound).
    peer: SocketAddr,
    ecn: Option<EcnCodepoint>,
    /// The source IP (outbound) or destination IP (inbound), if known.
    local_ip: Option<IpAddr>,
    data: Box<[u8]>,
}

/// Inbound datagrams whose delay ran out, waiting for quinn to read them.
#[derive(Debug, Default)]
struct Ready {
    queue: VecDeque<Held>,
    waker: Option<Waker>,
}

/// A [`quinn::AsyncUdpSocket`] that passes datagrams through a real socket,
/// applying the rules of a [`Faults`] handle on the way.
///
/// Build one with [`FaultySocket::new`], or a whole endpoint with
/// [`endpoint`]. Dropping it ends its delay task and the datagrams held.
#[derive(Debug)]
pub struct FaultySocket {
    inner: Arc<dyn AsyncUdpSocket>,
    faults: Faults,
    hold: mpsc::UnboundedSender<Held>,
    ready: Arc<Mutex<Ready>>,
}

impl FaultySocket {
    /// Wrap `inner` (e.g. from `Runtime::wrap_udp_socket`) under `faults`.
    /// Spawns the delay task, so fails outside a Tokio runtime.
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, faults: Faults) -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("FaultySocket needs a Tokio runtime: {e}")))?;
        let (hold, held) = mpsc::unbounded_channel();
        let ready = Arc::new(Mutex::new(Ready::default()));
        let task = release_held(held, inner.clone(), faults.clone(), ready.clone());
        runtime.spawn(task);
        Ok(Self {
            inner,
            faults,
            hold,
            ready,
        })
    }

    /// Queue a copy of a datagram for the delay task. `peer` is the
    /// destination (outbound) or source (inbound); `local_ip` the other end.
    fn delay(
        &self,
        way: Way,
        d: Duration,
        peer: SocketAddr,
        ecn: Option<EcnCodepoint>,
        local_ip: Option<IpAddr>,
        data: &[u8],
    ) {
        let (due, data) = (Instant::now() + d, data.into());
        if self
            .hold
            .send(Held {
                due,
                way,
                peer,
                ecn,
                local_ip,
                data,
            })
            .is_err()
        {
            tracing::debug!(%peer, "delay task gone; delayed datagram dropped");
        }
    }

    /// Hand due delayed datagrams to quinn, or register to be woken when
    /// one is due. `None` if nothing was due.
    fn deliver_ready(
        &self,
        cx: &Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Option<usize> {
        let mut ready = self.ready.lock();
        let mut n = 0;
        while n < bufs.len().min(meta.len()) {
            let Some(held) = ready.queue.pop_front() else {
                break;
            };
            let len = held.data.len();
            if len > bufs[n].len() {
                tracing::warn!(len, "delayed datagram too big for quinn's buffer; dropped");
                continue;
            }
            bufs[n][..len].copy_from_slice(&held.data);
            let (addr, ecn, dst_ip) = (held.peer, held.ecn, held.local_ip);
            meta[n] = RecvMeta {
                addr,
                len,
                stride: len,
                ecn,
                dst_ip,
            };
            n += 1;
        }
        if n > 0 {
            self.faults.tally(|s| s.received += n as u64);
            return Some(n);
        }
        match &ready.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => ready.waker = Some(cx.waker().clone()),
        }
        None
    }
}

impl AsyncUdpSocket for FaultySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, t: &Transmit<'_>) -> io::Result<()> {
        // With `max_transmit_segments() == 1` quinn sends one datagram per
        // transmit; a segmented one would meet a single verdict.
        match self.faults.judge(Way::Out, t.destination) {
            Verdict::Lose | Verdict::Partition => {}
            Verdict::Delay(d) => {
                self.delay(Way::Out, d, t.destination, t.ecn, t.src_ip, t.contents);
            }
            Verdict::Pass => {
                self.inner.try_send(t)?;
                self.faults.tally(|s| s.sent += 1);
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        if let Some(n) = self.deliver_ready(cx, bufs, meta) {
            return Poll::Ready(Ok(n));
        }
        loop {
            let n = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            let mut kept = 0;
            let metas = filter_batch(bufs, meta, n, |m, data| {
                match self.faults.judge(Way::In, m.addr) {
                    Verdict::Pass => kept += 1,
                    Verdict::Lose | Verdict::Partition => return false,
                    Verdict::Delay(d) => {
                        self.delay(Way::In, d, m.addr, m.ecn, m.dst_ip, data);
                        return false;
                    }
                }
                true
            });
            self.faults.tally(|s| s.received += kept);
            if metas > 0 {
                return Poll::Ready(Ok(metas));
            }
            // All dropped or held: read on, so that the real socket
            // registers the waker when it runs dry.
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// Keep the datagrams of the first `n` received buffers that `keep`
/// accepts, splitting GRO batches by stride. Survivors are compacted within
/// a buffer (only a batch's last datagram may be shorter than the stride,
/// and it stays last) and across buffers (an emptied buffer's slot goes to
/// the next kept one). Returns the number of buffers kept.
fn filter_batch(
    bufs: &mut [IoSliceMut<'_>],
    meta: &mut [RecvMeta],
    n: usize,
    mut keep: impl FnMut(&RecvMeta, &[u8]) -> bool,
) -> usize {
    let mut out = 0;
    for i in 0..n.min(bufs.len()).min(meta.len()) {
        let m = meta[i];
        let len = m.len.min(bufs[i].len());
        let stride = if m.stride == 0 { len.max(1) } else { m.stride };
        let (mut read, mut write) = (0, 0);
        while read < len {
            let end = (read + stride).min(len);
            if keep(&m, &bufs[i][read..end]) {
                bufs[i].copy_within(read..end, write);
                write += end - read;
            }
            read = end;
        }
        if write == 0 {
            continue;
        }
        if out != i {
            let (front, back) = bufs.split_at_mut(i);
            if front[out].len() < write {
                tracing::warn!(write, "receive buffers of unequal size; datagrams dropped");
                continue;
            }
            front[out][..write].copy_from_slice(&back[0][..write]);
        }
        meta[out] = RecvMeta { len: write, ..m };
        out += 1;
    }
    out
}

/// The delay task: holds datagrams until due, then sends them (outbound)
/// or queues them for quinn and wakes its reader (inbound). Ends when the
/// socket is dropped.
async fn release_held(
    mut held: mpsc::UnboundedReceiver<Held>,
    socket: Arc<dyn AsyncUdpSocket>,
    faults: Faults,
    ready: Arc<Mutex<Ready>>,
) {
    let mut queue: BTreeMap<(Instant, u64), Held> = BTreeMap::new();
    let mut seq = 0u64;
    let mut poller = socket.clone().create_io_poller();
    loop {
        let now = Instant::now();
        while let Some(entry) = queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let h = entry.remove();
            if faults.cut_off(h.way, h.peer) {
                continue;
            }
            match h.way {
                Way::Out => send_held(&*socket, &mut poller, &faults, &h).await,
                Way::In => {
                    let waker = {
                        let mut r = ready.lock();
                        r.queue.push_back(h);
                        r.waker.take()
                    };
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
            }
        }
        let next = queue.first_key_value().map(|((due, _), _)| *due);
        tokio::select! {
            msg = held.recv() => match msg {
                Some(h) => {
                    queue.insert((h.due, seq), h);
                    seq += 1;
                }
                None => break,
            },
            () = tokio::time::sleep_until(next.unwrap_or(now)), if next.is_some() => {}
        }
    }
    tracing::trace!(dropped = queue.len(), "delay task ends");
}

/// Send one delayed datagram with the real socket, waiting while it is not
/// writable. Errors are logged and counted, never raised.
async fn send_held(
    socket: &dyn AsyncUdpSocket,
    poller: &mut Pin<Box<dyn UdpPoller>>,
    faults: &Faults,
    h: &Held,
) {
    let transmit = Transmit {
        destination: h.peer,
        ecn: h.ecn,
        contents: &h.data,
        segment_size: None,
        src_ip: h.local_ip,
    };
    let error = loop {
        match socket.try_send(&transmit) {
            Ok(()) => return faults.tally(|s| s.sent += 1),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = poll_fn(|cx| poller.as_mut().poll_writable(cx)).await {
                    break e;
                }
            }
            Err(e) => break e,
        }
    };
    tracing::debug!(peer = %h.peer, %error, "delayed datagram not sent");
    faults.tally(|s| s.send_errors += 1);
}

/// A quinn endpoint over `socket` with `faults` applied to its traffic (a
/// server too if `server` is given). Call within a Tokio runtime.
pub fn endpoint(
    config: EndpointConfig,
    server: Option<ServerConfig>,
    socket: std::net::UdpSocket,
    faults: Faults,
) -> io::Result<Endpoint> {
    let runtime = quinn::default_runtime()
        .ok_or_else(|| io::Error::other("no async runtime for the faulty endpoint"))?;
    let inner = runtime.wrap_udp_socket(socket)?;
    let socket = Arc::new(FaultySocket::new(inner, faults)?);
    Endpoint::new_with_abstract_socket(config, server, socket, runtime)
}

#[cfg(test)]
mod tests;
