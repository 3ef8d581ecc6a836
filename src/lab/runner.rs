//! The lab itself: starts the peers, follows them, ends the run, writes
//! `lab-out/<run>/`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::expr::Expr;
use super::out::{self, Metrics};
use super::peer::{own_usage, read_line};
use super::spawn::{self, Launch, PeerProcess};
use super::view::{RunState, Snapshot, View};
use super::web::{self, Frame};
use super::wire::{self, RosterEntry, ToLab, ToPeer};
use super::{Experiments, LabError};

/// `plexus lab <experiment>`: the settings of a run.
#[derive(Clone, Debug, clap::Args)]
pub struct LabArgs {
    /// The experiment to run (`--list` names them).
    #[arg(required_unless_present = "list")]
    pub experiment: Option<String>,
    /// List the experiments and exit.
    #[arg(long)]
    pub list: bool,
    /// How many peer processes to start.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub peers: u32,
    /// Each peer's message budget, an expression of `peer` (from 1) and
    /// `peers`: `5`, `"10 if peer == 1 else 0"`, `"peer % 3"`. See
    /// `plexus::lab::Expr` for the grammar.
    #[arg(long, default_value = "5")]
    pub messages: String,
    /// Milliseconds between two messages of one peer (0: no pause).
    #[arg(long, default_value_t = 200)]
    pub interval: u64,
    /// End the run after this many seconds, done or not.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// The port of the web page on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Where runs are written: `<out>/<experiment>-<time>/`.
    #[arg(long, default_value = "lab-out")]
    pub out: PathBuf,
    /// Keep serving the page this many seconds after the end. Default:
    /// until Ctrl-C when standard input is a terminal, else not at all.
    #[arg(long)]
    pub linger: Option<u64>,
    /// Seed of the random choices (which peers link to which, faults).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// How a run ended, and where its files are.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How it ended: [`RunState::Done`] when every peer met its targets.
    pub state: RunState,
    /// `lab-out/<run>/`.
    pub dir: PathBuf,
    /// Its figures.
    pub metrics: Metrics,
}

/// What a control connection brought: each is numbered, so that only the
/// one a peer's number was first claimed on is heard.
enum Event {
    Connected(u64, u32, OwnedWriteHalf),
    Line(u64, u32, ToLab),
    Closed(u64, u32),
}

/// How often the lab refreshes the page, the bar and the layout.
const TICK: Duration = Duration::from_millis(250);
/// How long peers have to start and say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(60);
/// How long peers have to stop once told the run ended.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// Runs `plexus lab`: see [`LabArgs`].
pub async fn run_lab(args: LabArgs, experiments: &Experiments) -> Result<Outcome, LabError> {
    let name = args.experiment.clone().unwrap_or_default();
    if experiments.get(&name).is_none() {
        return Err(LabError::UnknownExperiment {
            name,
            known: experiments.names().join(", "),
        });
    }
    let budgets = budgets(&args.messages, args.peers)?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = run_dir(&args.out, &name)?;
    let logs = dir.join("peers");
    std::fs::create_dir_all(&logs).map_err(|e| LabError::Output {
        path: logs.display().to_string(),
        error: e.to_string(),
    })?;
    let scratch = tempfile::Builder::new()
        .prefix("plexus-lab-")
        .tempdir()
        .map_err(|e| LabError::Setup(format!("making a temporary directory: {e}")))?;
    spawn::identities(scratch.path(), args.peers)?;

    let control = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(LabError::Control)?;
    let control_addr = control.local_addr().map_err(LabError::Control)?;
    let web_listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| LabError::Setup(format!("binding the page to port {}: {e}", args.port)))?;
    let web_addr = web_listener.local_addr().map_err(LabError::Control)?;
    let (feed_tx, feed) = watch::channel(Frame::default());
    let server = tokio::spawn(web::serve(web_listener, feed));
    eprintln!(
        "lab: {} peers of {name:?}, messages {:?} (seed {seed})\nlab: page http://{web_addr}/\nlab: writing {}",
        args.peers,
        args.messages,
        dir.display()
    );

    let launch = Launch {
        experiment: &name,
        budgets: &budgets,
        interval_ms: args.interval,
        seed,
        control: control_addr,
        scratch: scratch.path(),
        logs: &logs,
    };
    let mut procs = Vec::new();
    for peer in 1..=args.peers {
        procs.push(spawn::spawn(&launch, peer)?);
    }
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let acceptor = tokio::spawn(accept(control, events_tx));
    let seeds = spawn::seeds(args.peers, &mut rng);

    let mut run = Run {
        view: View::new(&name, args.peers),
        procs,
        writers: BTreeMap::new(),
        conns: BTreeMap::new(),
        addrs: BTreeMap::new(),
        feed: feed_tx,
        bar: progress_bar(),
        started: None,
        ended: None,
    };
    let launched = Instant::now();
    let outcome = run
        .follow(
            &mut events,
            &seeds,
            launched,
            Duration::from_secs(args.timeout),
        )
        .await;
    run.stop(&mut events).await;
    acceptor.abort();

    let snap = run.final_snapshot();
    let metrics = run.metrics(&args, &budgets, &snap);
    out::write_all(&dir, &snap, &metrics)?;
    run.bar.finish_and_clear();
    print_summary(&metrics, &dir);
    if snap.state != RunState::Done {
        print_unfinished(&snap);
    }
    let _ = run.feed.send(Frame {
        json: json(&snap),
        last: true,
    });
    outcome?;
    linger(args.linger, web_addr).await;
    server.abort();
    drop(scratch);
    Ok(Outcome {
        state: snap.state,
        dir,
        metrics,
    })
}

/// Evaluates `--messages` for every peer.
fn budgets(text: &str, peers: u32) -> Result<Vec<u64>, LabError> {
    let bad = |e: super::expr::ExprError| LabError::Messages {
        expr: text.to_owned(),
        error: e,
    };
    let expr = Expr::parse(text).map_err(bad)?;
    (1..=peers)
        .map(|peer| {
            let value = expr.eval(i64::from(peer), i64::from(peers)).map_err(bad)?;
            u64::try_from(value).map_err(|_| LabError::NegativeBudget {
                expr: text.to_owned(),
                peer,
                value,
            })
        })
        .collect()
}

/// A new directory under `out`, named after the experiment and the time.
fn run_dir(out: &std::path::Path, name: &str) -> Result<PathBuf, LabError> {
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    for n in 0..1000 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let dir = out.join(format!("{name}-{stamp}{suffix}"));
        if !dir.exists() {
            return Ok(dir);
        }
    }
    Err(LabError::Output {
        path: out.display().to_string(),
        error: "no free run directory name".into(),
    })
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40.green/blue} {pos}/{len} targets met · {msg}",
    );
    if let Ok(style) = style {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn json(snap: &Snapshot) -> Arc<str> {
    // A plain struct: it always serializes.
    serde_json::to_string(snap).unwrap_or_default().into()
}

/// Accepts peers' control connections; each one's lines become events.
async fn accept(listener: TcpListener, events: mpsc::UnboundedSender<Event>) {
    let mut conn = 0;
    while let Ok((stream, _)) = listener.accept().await {
        conn += 1;
        tokio::spawn(read_peer(conn, stream, events.clone()));
    }
}

async fn read_peer(conn: u64, stream: TcpStream, events: mpsc::UnboundedSender<Event>) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut buf = Vec::new();
    let Some(first) = read_line(&mut reader, &mut buf).await else {
        return;
    };
    let Ok(hello @ ToLab::Hello { peer, .. }) = serde_json::from_slice::<ToLab>(first) else {
        return;
    };
    let _ = events.send(Event::Connected(conn, peer, write));
    let _ = events.send(Event::Line(conn, peer, hello));
    loop {
        buf.clear();
        let Some(line) = read_line(&mut reader, &mut buf).await else {
            break;
        };
        match serde_json::from_slice::<ToLab>(line) {
            Ok(msg) => {
                let _ = events.send(Event::Line(conn, peer, msg));
            }
            Err(e) => tracing::warn!(peer, error = %e, "bad line from a peer"),
        }
    }
    let _ = events.send(Event::Closed(conn, peer));
}

struct Run {
    view: View,
    procs: Vec<PeerProcess>,
    writers: BTreeMap<u32, OwnedWriteHalf>,
    /// The control connection each peer's number was claimed on.
    conns: BTreeMap<u32, u64>,
    addrs: BTreeMap<u32, (String, SocketAddr)>,
    feed: watch::Sender<Frame>,
    bar: ProgressBar,
    started: Option<Instant>,
    ended: Option<Instant>,
}

impl Run {
    fn elapsed(&self) -> Duration {
        let end = self.ended.unwrap_or_else(Instant::now);
        self.started
            .map_or(Duration::ZERO, |s| end.duration_since(s))
    }

    /// Follows the run until it ends: every peer done, the timeout, a
    /// failure, or Ctrl-C.
    async fn follow(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        seeds: &[Vec<u32>],
        launched: Instant,
        timeout: Duration,
    ) -> Result<(), LabError> {
        let mut tick = tokio::time::interval(TICK);
        let interrupt = tokio::signal::ctrl_c();
        tokio::pin!(interrupt);
        loop {
            tokio::select! {
                Some(event) = events.recv() => self.take(event, seeds).await,
                _ = tick.tick() => self.refresh(),
                _ = &mut interrupt => {
                    self.view.state = RunState::Interrupted;
                    self.ended = Some(Instant::now());
                    self.view.freeze();
                    // No End: dropping the lifelines stops every peer now.
                    self.procs.iter_mut().for_each(|p| p.lifeline = None);
                    return Ok(());
                }
            }
            self.reap();
            let state = self.view.state;
            if state == RunState::Starting && launched.elapsed() > HELLO_WITHIN {
                self.view.fail(format!(
                    "only {} of {} peers started within {HELLO_WITHIN:?} (see their logs)",
                    self.addrs.len(),
                    self.procs.len()
                ));
            } else if state == RunState::Running && self.view.all_done() {
                self.view.state = RunState::Done;
            } else if state == RunState::Running && self.elapsed() > timeout {
                self.view.state = RunState::TimedOut;
            }
            if !matches!(self.view.state, RunState::Starting | RunState::Running) {
                self.ended = Some(Instant::now());
                self.view.freeze();
                self.broadcast(&ToPeer::End).await;
                self.refresh();
                return Ok(());
            }
        }
    }

    async fn take(&mut self, event: Event, seeds: &[Vec<u32>]) {
        match event {
            Event::Connected(conn, peer, write) => {
                // One connection per peer of this run: a second hello for
                // a number, or a number out of range, is not a peer of it.
                let known = (1..=self.procs.len() as u32).contains(&peer);
                if known && !self.conns.contains_key(&peer) {
                    self.conns.insert(peer, conn);
                    self.writers.insert(peer, write);
                } else {
                    tracing::warn!(peer, "refused a control connection");
                }
            }
            Event::Line(conn, peer, msg) => {
                if self.conns.get(&peer) != Some(&conn) {
                    return;
                }
                if let ToLab::Hello { id, addr, .. } = &msg {
                    self.addrs.insert(peer, (id.clone(), *addr));
                }
                let at = self.elapsed();
                self.view.apply(peer, at, msg);
                if self.view.state == RunState::Starting && self.addrs.len() == self.procs.len() {
                    self.start(seeds).await;
                }
            }
            Event::Closed(conn, peer) => {
                if self.conns.get(&peer) != Some(&conn) {
                    return;
                }
                self.writers.remove(&peer);
                if self.view.state == RunState::Running && !self.view.finished(peer) {
                    self.view
                        .fail(format!("peer {peer} dropped its control connection"));
                }
            }
        }
    }

    /// A line from a stopping peer (its last measurements, its usage).
    fn last_words(&mut self, event: Event) {
        if let Event::Line(conn, peer, msg) = event {
            if self.conns.get(&peer) == Some(&conn) {
                let at = self.elapsed();
                self.view.apply(peer, at, msg);
            }
        }
    }

    /// Every peer said hello: tell each who is where and whom to link to.
    async fn start(&mut self, seeds: &[Vec<u32>]) {
        let roster: Vec<RosterEntry> = self
            .addrs
            .iter()
            .map(|(&peer, (id, addr))| RosterEntry {
                peer,
                id: id.clone(),
                addr: *addr,
            })
            .collect();
        self.view.state = RunState::Running;
        self.started = Some(Instant::now());
        for (peer, picks) in (1u32..).zip(seeds) {
            let seeds = picks.iter().filter_map(|p| self.addrs.get(p)).map(|a| a.1);
            let msg = ToPeer::Start {
                roster: roster.clone(),
                seeds: seeds.collect(),
            };
            self.send(peer, &msg).await;
        }
    }

    async fn send(&mut self, peer: u32, msg: &ToPeer) {
        if let Some(w) = self.writers.get_mut(&peer) {
            if w.write_all(&wire::line(msg)).await.is_err() {
                self.writers.remove(&peer);
            }
        }
    }

    async fn broadcast(&mut self, msg: &ToPeer) {
        let peers: Vec<u32> = self.writers.keys().copied().collect();
        for peer in peers {
            self.send(peer, msg).await;
        }
    }

    /// Notes peers whose process exited.
    fn reap(&mut self) {
        for p in &mut self.procs {
            if p.exited.is_some() {
                continue;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                p.exited = Some(status);
                self.view.gone(p.peer);
                if matches!(self.view.state, RunState::Starting | RunState::Running) {
                    self.view.fail(format!(
                        "peer {} exited early ({status}); see its log",
                        p.peer
                    ));
                }
            }
        }
    }

    /// Steps the layout, publishes a snapshot, moves the bar.
    fn refresh(&mut self) {
        self.view.tick(self.elapsed());
        let snap = self.view.snapshot();
        self.bar.set_length(snap.targets as u64);
        self.bar.set_position(snap.targets_met as u64);
        self.bar.set_message(format!(
            "{}/{} peers done",
            snap.peers_done,
            snap.peers.len()
        ));
        let _ = self.feed.send(Frame {
            json: json(&snap),
            last: false,
        });
    }

    /// Waits for every peer to exit (they were told the run ended, or their
    /// lifeline was cut), kills those still there after [`STOP_WITHIN`],
    /// and cuts every lifeline.
    async fn stop(&mut self, events: &mut mpsc::UnboundedReceiver<Event>) {
        let deadline = tokio::time::Instant::now() + STOP_WITHIN;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        while self.procs.iter().any(|p| p.exited.is_none()) {
            tokio::select! {
                // Their last words: final measurements, CPU and memory.
                Some(event) = events.recv() => self.last_words(event),
                _ = tick.tick() => self.reap(),
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        // Lines sent just before an exit may still be queued.
        while let Ok(event) = events.try_recv() {
            self.last_words(event);
        }
        for p in &mut self.procs {
            p.lifeline = None;
            if p.exited.is_none() {
                tracing::warn!(peer = p.peer, "peer did not stop in time; killing it");
                let _ = p.child.start_kill();
                p.exited = p.child.wait().await.ok();
            }
        }
        self.writers.clear();
    }

    fn final_snapshot(&mut self) -> Snapshot {
        self.view.tick(self.elapsed());
        self.view.settle();
        self.view.snapshot()
    }

    fn metrics(&self, args: &LabArgs, budgets: &[u64], snap: &Snapshot) -> Metrics {
        let (cpu, rss, reports) = self.view.usage();
        let (lab_cpu, lab_rss) = own_usage();
        Metrics {
            experiment: snap.experiment.clone(),
            peers: args.peers,
            state: snap.state,
            messages_expr: args.messages.clone(),
            messages_budget: budgets.iter().fold(0, |a, b| a.saturating_add(*b)),
            converged_ms: self.view.converged().map(|d| d.as_millis() as u64),
            elapsed_ms: snap.elapsed_ms,
            ops_seen: sum(snap.peers.iter().map(|p| p.ops)),
            link_messages: sum(snap.edges.iter().map(|e| e.messages)),
            link_bytes: sum(snap.edges.iter().map(|e| e.bytes)),
            cpu_ms: cpu.saturating_add(lab_cpu.unwrap_or(0)),
            max_rss_kib: rss.saturating_add(lab_rss.unwrap_or(0)),
            usage_reports: reports,
            links: snap.edges.clone(),
        }
    }
}

fn sum(values: impl Iterator<Item = u64>) -> u64 {
    values.fold(0, u64::saturating_add)
}

fn print_summary(m: &Metrics, dir: &std::path::Path) {
    let converged = m.converged_ms.map_or("never".to_owned(), |ms| {
        format!("{:.2} s", ms as f64 / 1000.0)
    });
    eprintln!(
        "lab: {:?} after {:.2} s · {} peers · converged {converged}\n\
         lab: {} ops seen · {} messages, {:.1} KiB over {} links\n\
         lab: CPU {:.2} s · peak memory {:.1} MiB (peers and lab added up; {} of {} peers reported)\n\
         lab: wrote {}",
        m.state,
        m.elapsed_ms as f64 / 1000.0,
        m.peers,
        m.ops_seen,
        m.link_messages,
        m.link_bytes as f64 / 1024.0,
        m.links.len(),
        m.cpu_ms as f64 / 1000.0,
        m.max_rss_kib as f64 / 1024.0,
        m.usage_reports,
        m.peers,
        dir.display()
    );
}

/// Names the peers that were not done, with their targets.
fn print_unfinished(snap: &Snapshot) {
    if let Some(why) = &snap.failure {
        eprintln!("lab: {why}");
    }
    for p in snap.peers.iter().filter(|p| !p.done) {
        let targets: Vec<String> = p
            .targets
            .iter()
            .map(|(name, current, goal)| format!("{name} {current}/{goal}"))
            .collect();
        let targets = if targets.is_empty() {
            "no target reported".to_owned()
        } else {
            targets.join(", ")
        };
        eprintln!("lab: peer {} not done ({}): {targets}", p.peer, p.status);
    }
}

/// Keeps the page up after the end, as `--linger` (or the terminal) asks.
async fn linger(linger: Option<u64>, web: SocketAddr) {
    let wait = match linger {
        Some(0) => return,
        Some(secs) => Some(Duration::from_secs(secs)),
        None if std::io::stdin().is_terminal() => None,
        None => return,
    };
    eprintln!("lab: the page stays up at http://{web}/ · Ctrl-C to quit");
    match wait {
        Some(d) => {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
