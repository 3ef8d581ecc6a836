//! Crash test with real processes: a node shouting in a loop is killed with
//! SIGKILL at random moments and restarted on its data directory, 20 times;
//! afterwards every shout that resolved `Ok` is on every replica, and the
//! replicas' states and stable snapshots are equal.
//!
//! Three processes over QUIC on 127.0.0.1, each with its own data
//! directory (its store and its CA-issued identity): B creates the object,
//! C opens it, and both shout slowly in the background for the whole run;
//! A opens it (fetched on its first start, resumed from its store on every
//! later one) and shouts in a loop, a few shouts in flight at once, printing
//! `ok <incarnation> <i>` once each resolves. The parent kills A with
//! SIGKILL at a random moment — mostly 100-600 ms after it started
//! shouting, sometimes 0-150 ms after it was spawned (mid-start-up, mid
//! resume) — and restarts it. After the 20th kill A comes back once more
//! without shouting, and the parent polls the three for their states until
//! they agree.
//!
//! Checked: each start of A resumes with every shout its earlier
//! incarnations acknowledged (read from its own disk, before any peer could
//! send them back); at the end every acknowledged shout (A's, B's, C's) is
//! on all three, their states are equal, then every op is stable and the
//! stable snapshots are equal; no op is there twice; and what survives of
//! each incarnation of A is a prefix of what it shouted (no hole).
//!
//! The kill moments come from an RNG seeded with `PLEXUS_SEED` (default 1;
//! printed). Each process logs to a file (`RUST_LOG`, default
//! `plexus=info`); on a failure the last lines of every log are printed
//! and the directory is kept (`PLEXUS_CRASH_KEEP=1` keeps it anyway).
//!
//! The peers are this test binary run again (`crash_child_entry`, which does
//! nothing unless `PLEXUS_CRASH_ROLE` is set). They speak lines on stdin and
//! stdout (prefixed with `@@ `), and exit as soon as their stdin closes, so
//! none outlives the test; the parent also kills them when it drops them.
#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use plexus::tls::{load_ca_certificate, ClusterCa, Identity, Trust};
use plexus::{replicated, Leaf, Node, NodeConfig, QuicConfig, Replicated, Transport};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One entry: who shouted it, A's incarnation (0 for B and C), and the
/// shouter's counter in that incarnation.
type Entry = (String, u32, u32);

#[derive(Replicated, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[plexus(tag = "test.CrashLog")]
pub struct CrashLog {
    pub entries: Vec<Entry>,
}

#[replicated]
impl CrashLog {
    #[shout]
    pub fn record(&mut self, who: String, incarnation: u32, n: u32) {
        self.entries.push((who, incarnation, n));
    }
}

/// What a child answers to `state`.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    entries: Vec<Entry>,
    stable: Vec<Entry>,
    tentative: usize,
}

const OBJECT: &str = "crash";
const ENTRY: &str = "crash_child_entry";
/// How many times A is killed.
const KILLS: u32 = 20;
/// A's shouts in flight at once (so group commit batches several).
const WINDOW: usize = 4;
/// B's and C's pause between two background shouts.
const PULSE: Duration = Duration::from_millis(25);
/// The share of kills that land anywhere in A's start-up instead of
/// 100-600 ms into its shouting.
const EARLY_KILLS: f64 = 0.2;
/// The bound on a child's start-up and on any one answer.
const ANSWER: Duration = Duration::from_secs(30);
/// The bound on convergence after the last restart.
const CONVERGE: Duration = Duration::from_secs(60);

/// A child process: its stdin, its stdout lines (read by a thread), its log.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
}

impl Proc {
    /// Run this test binary's child entry with `vars`, stderr to `log`.
    fn spawn(name: &str, log: &Path, vars: &[(&str, OsString)]) -> Self {
        let mut command = Command::new(std::env::current_exe().expect("the test binary"));
        command
            .args([ENTRY, "--exact", "--nocapture", "--test-threads=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(log).expect("a log file"));
        for (key, value) in vars {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the child starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match out.read_line(&mut line) {
                    // A line cut off by the kill is not a line.
                    Ok(0) | Err(_) => return,
                    Ok(_) if !line.ends_with('\n') => return,
                    Ok(_) => {}
                }
                // libtest may print "test <entry> ... " before the first one.
                if let Some(at) = line.find("@@ ") {
                    if tx.send(line[at + 3..].trim().to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            log: log.to_owned(),
        }
    }

    /// The next line, or `None` at `deadline`; panics if the child is gone.
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                if line.starts_with("panic") || line.starts_with("shout-failed") {
                    panic!("{}: {line}", self.name);
                }
                Some(line)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().expect("reaped");
                panic!(
                    "{} exited by itself ({status}); its log: {}",
                    self.name,
                    self.log.display()
                );
            }
        }
    }

    /// The rest of the next line starting with `tag`; other lines go to
    /// `other`. Panics after `wait`.
    fn expect_with(&mut self, tag: &str, wait: Duration, mut other: impl FnMut(&str)) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let Some(line) = self.next_line(deadline) else {
                panic!("{} did not say {tag:?} within {wait:?}", self.name);
            };
            match line.strip_prefix(tag) {
                Some(rest) if rest.is_empty() || rest.starts_with(' ') => {
                    return rest.trim().to_owned()
                }
                _ => other(&line),
            }
        }
    }

    fn expect(&mut self, tag: &str) -> String {
        let name = self.name.clone();
        self.expect_with(tag, ANSWER, |line| {
            panic!("{name}: {line:?} while waiting for {tag:?}")
        })
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("writing to the child");
        stdin.flush().expect("flushing");
    }

    /// Panics if the child has exited.
    fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "{} exited by itself ({status}); its log: {}",
                self.name,
                self.log.display()
            );
        }
    }

    /// SIGKILL, reap, and hand every complete line it printed to `each`.
    fn kill(mut self, mut each: impl FnMut(&str)) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
        loop {
            match self.lines.recv_timeout(ANSWER) {
                Ok(line) => {
                    if line.starts_with("panic") || line.starts_with("shout-failed") {
                        panic!("{}: {line}", self.name);
                    }
                    each(&line);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{}: stdout never closed", self.name)
                }
            }
        }
    }

    fn report(&mut self) -> Report {
        self.say("state");
        let json = self.expect("state");
        serde_json::from_str(&json).expect("a state report")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's directory. On a panic it prints the end of the latest logs
/// and is kept for a post-mortem.
struct Workdir(Option<tempfile::TempDir>);

impl Workdir {
    fn path(&self) -> &Path {
        self.0.as_ref().expect("the dir").path()
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let keep = std::env::var_os("PLEXUS_CRASH_KEEP").is_some();
        if !std::thread::panicking() {
            if let (true, Some(dir)) = (keep, self.0.take()) {
                eprintln!(
                    "the data dirs and logs are kept in {}",
                    dir.keep().display()
                );
            }
            return;
        }
        let Some(dir) = self.0.take() else { return };
        let path = dir.keep();
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        // B's, C's, and those of A's last two incarnations.
        let a_logs = logs
            .iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('a'))
            })
            .count();
        let mut seen_a = 0;
        logs.retain(|p| {
            let is_a = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('a'));
            seen_a += usize::from(is_a);
            !is_a || seen_a + 2 > a_logs
        });
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(30);
            eprintln!(
                "----- {} (last {} lines)",
                log.display(),
                lines.len() - from
            );
            for line in &lines[from..] {
                eprintln!("{line}");
            }
        }
        eprintln!(
            "----- the data dirs and logs are kept in {}",
            path.display()
        );
    }
}

/// Runs of consecutive counters per incarnation: `(incarnation, first, last)`.
fn runs(entries: impl IntoIterator<Item = (u32, u32)>) -> Vec<(u32, u32, u32)> {
    let set: BTreeSet<(u32, u32)> = entries.into_iter().collect();
    let mut out: Vec<(u32, u32, u32)> = Vec::new();
    for (inc, n) in set {
        match out.last_mut() {
            Some((i, _, last)) if *i == inc && *last + 1 == n => *last = n,
            _ => out.push((inc, n, n)),
        }
    }
    out
}

fn covered(runs: &[(u32, u32, u32)], inc: u32, n: u32) -> bool {
    runs.iter()
        .any(|&(i, first, last)| i == inc && (first..=last).contains(&n))
}

/// What the parent knows of A's shouts.
#[derive(Default)]
struct Shouts {
    acked: BTreeSet<(u32, u32)>,
    per_incarnation: BTreeMap<u32, usize>,
}

impl Shouts {
    /// One line of A's, incarnation `inc`.
    fn line(&mut self, inc: u32, line: &str) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("ok") => {
                let mut num = || -> u32 {
                    words
                        .next()
                        .and_then(|w| w.parse().ok())
                        .unwrap_or_else(|| panic!("a malformed line from A: {line:?}"))
                };
                let (i, n) = (num(), num());
                assert_eq!(i, inc, "A{inc} acknowledged a shout of incarnation {i}");
                assert!(
                    self.acked.insert((i, n)),
                    "A{inc} acknowledged ({i}, {n}) twice"
                );
                *self.per_incarnation.entry(inc).or_default() += 1;
            }
            Some("ready") => {
                // What A resumed with: every shout acknowledged by an
                // earlier incarnation must be there, read from its own disk.
                let json = line.split_once(' ').map_or("", |(_, j)| j);
                let (entries, own): (usize, Vec<(u32, u32, u32)>) =
                    serde_json::from_str(json).expect("a ready line");
                let lost: Vec<&(u32, u32)> = self
                    .acked
                    .iter()
                    .filter(|(i, n)| *i < inc && !covered(&own, *i, *n))
                    .collect();
                assert!(
                    lost.is_empty(),
                    "A{inc} resumed with {entries} entries but without {} shouts earlier \
                     incarnations acknowledged, e.g. {:?}; it holds of its own: {own:?}",
                    lost.len(),
                    &lost[..lost.len().min(10)]
                );
            }
            Some("listening" | "shouting") => {}
            _ => panic!("an unexpected line from A{inc}: {line:?}"),
        }
    }
}

#[test]
fn a_sigkilled_shouter_loses_no_acknowledged_shout() {
    let started = Instant::now();
    let seed: u64 = std::env::var("PLEXUS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    eprintln!("crash test: PLEXUS_SEED={seed} (set it to replay these kill moments)");
    let mut rng = StdRng::seed_from_u64(seed);

    let work = Workdir(Some(tempfile::tempdir().expect("a temp dir")));
    let root = work.path().to_owned();
    let ca = ClusterCa::generate("crash").expect("a CA");
    ca.save(&root).expect("saved");
    for name in ["a", "b", "c"] {
        ca.issue(Identity::generate().expect("key"), name)
            .expect("cert")
            .save(&root.join(name))
            .expect("saved");
    }
    let vars = |role: &str, seeds: &[&str], inc: u32, shout: bool| {
        vec![
            ("PLEXUS_CRASH_ROLE", OsString::from(role)),
            ("PLEXUS_CRASH_DIR", root.join(role).into_os_string()),
            ("PLEXUS_CRASH_CA", root.join("ca.crt").into_os_string()),
            ("PLEXUS_CRASH_SEEDS", OsString::from(seeds.join(" "))),
            ("PLEXUS_CRASH_INC", OsString::from(inc.to_string())),
            (
                "PLEXUS_CRASH_SHOUT",
                OsString::from(if shout { "1" } else { "0" }),
            ),
        ]
    };

    let mut b = Proc::spawn("B", &root.join("b.log"), &vars("b", &[], 0, false));
    let b_addr = b.expect("listening");
    b.expect("ready");
    let mut c = Proc::spawn("C", &root.join("c.log"), &vars("c", &[&b_addr], 0, false));
    let c_addr = c.expect("listening");
    c.expect("ready");
    for p in [&mut b, &mut c] {
        p.say("pulse");
        p.expect("pulsing");
    }
    let seeds = [b_addr.as_str(), c_addr.as_str()];
    eprintln!("B at {b_addr}, C at {c_addr}; killing A {KILLS} times");

    let mut shouts = Shouts::default();
    let (mut early_kills, mut late_kills, mut silent) = (0, 0, 0);
    let kills_started = Instant::now();
    for inc in 1..=KILLS {
        let log = root.join(format!("a{inc:02}.log"));
        let mut a = Proc::spawn(&format!("A{inc}"), &log, &vars("a", &seeds, inc, true));
        let spawned = Instant::now();
        let early = rng.random_bool(EARLY_KILLS);
        let (delay, what) = if early {
            early_kills += 1;
            let delay = Duration::from_millis(rng.random_range(0..=150));
            // The kill moment is the scenario (during start-up or resume).
            std::thread::sleep(delay.saturating_sub(spawned.elapsed()));
            (delay, "after spawn")
        } else {
            late_kills += 1;
            let delay = Duration::from_millis(rng.random_range(100..=600));
            a.expect_with("shouting", ANSWER, |line| shouts.line(inc, line));
            // The kill moment is the scenario: a sleep is what it is made of.
            std::thread::sleep(delay);
            (delay, "into shouting")
        };
        a.check_alive();
        let up = spawned.elapsed();
        a.kill(|line| shouts.line(inc, line));
        let acked = shouts.per_incarnation.get(&inc).copied().unwrap_or(0);
        if !early && acked == 0 {
            silent += 1;
        }
        eprintln!(
            "kill {inc:2}: {:>3} ms {what:<13} ({:>4} ms after spawn), {acked:>4} shouts acked",
            delay.as_millis(),
            up.as_millis(),
        );
        b.check_alive();
        c.check_alive();
    }
    let kill_phase = kills_started.elapsed();
    // A kill 100 ms or more into shouting normally finds shouts acknowledged;
    // most finding none means the shouts stall (a slow machine may miss a few).
    assert!(
        silent * 2 <= late_kills,
        "seed {seed}: {silent} of {late_kills} incarnations killed while shouting acknowledged \
         no shout"
    );

    let mut pulses = BTreeMap::new();
    for (who, p) in [("b", &mut b), ("c", &mut c)] {
        p.say("stop");
        let n: u32 = p.expect("stopped").parse().expect("a count");
        pulses.insert(who, n);
    }
    let last = KILLS + 1;
    let log = root.join(format!("a{last:02}.log"));
    let mut a = Proc::spawn(&format!("A{last}"), &log, &vars("a", &seeds, last, false));
    a.expect_with("ready", ANSWER, |line| shouts.line(last, line));
    let restarted = Instant::now();

    // Every acknowledged shout: A's, and every background shout of B and C
    // (they never crash, so each one resolved).
    let mut expected: BTreeSet<Entry> = shouts
        .acked
        .iter()
        .map(|&(i, n)| ("a".to_owned(), i, n))
        .collect();
    for (who, n) in &pulses {
        expected.extend((0..*n).map(|i| ((*who).to_owned(), 0, i)));
    }

    // Poll the three until they agree and hold every acknowledged shout,
    // then until every op is stable and the stable snapshots agree.
    let deadline = restarted + CONVERGE;
    let mut converged: Option<Duration> = None;
    let reports = loop {
        let reports: Vec<Report> = [&mut a, &mut b, &mut c]
            .into_iter()
            .map(Proc::report)
            .collect();
        let missing: Vec<Vec<&Entry>> = reports
            .iter()
            .map(|r| {
                let have: BTreeSet<&Entry> = r.entries.iter().collect();
                expected.iter().filter(|e| !have.contains(e)).collect()
            })
            .collect();
        let equal = reports.iter().all(|r| r.entries == reports[0].entries);
        if converged.is_none() && equal && missing.iter().all(Vec::is_empty) {
            converged = Some(restarted.elapsed());
        }
        let stable = reports
            .iter()
            .all(|r| r.tentative == 0 && r.stable == r.entries && r.stable == reports[0].stable);
        if converged.is_some() && stable {
            break reports;
        }
        if Instant::now() > deadline {
            let mut why = String::new();
            for (name, (r, m)) in ["A", "B", "C"].iter().zip(reports.iter().zip(&missing)) {
                why += &format!(
                    "\n  {name}: {} entries, {} stable, {} tentative; {} acknowledged shouts \
                     missing, e.g. {:?}",
                    r.entries.len(),
                    r.stable.len(),
                    r.tentative,
                    m.len(),
                    &m[..m.len().min(8)]
                );
            }
            panic!(
                "seed {seed}: no agreement {CONVERGE:?} after the last restart (states equal: \
                 {equal}, stable and equal: {stable}):{why}"
            );
        }
        // The poll interval of a condition checked against a deadline: the
        // three processes answer `state` over their stdin, with no push.
        std::thread::sleep(Duration::from_millis(200));
    };
    let settled = restarted.elapsed();

    // Each op once; and what survives of each incarnation of A is a prefix
    // of what it shouted (its log is committed in order).
    let end = &reports[0].entries;
    let distinct: BTreeSet<&Entry> = end.iter().collect();
    assert_eq!(
        distinct.len(),
        end.len(),
        "seed {seed}: an op applied twice"
    );
    let own = runs(
        end.iter()
            .filter(|(who, _, _)| who == "a")
            .map(|(_, i, n)| (*i, *n)),
    );
    for w in own.windows(2) {
        assert_ne!(
            w[0].0, w[1].0,
            "seed {seed}: a hole in what survives of incarnation {}: {own:?}",
            w[0].0
        );
    }
    for &(inc, first, _) in &own {
        assert_eq!(
            first, 0,
            "seed {seed}: incarnation {inc} lost its first shouts: {own:?}"
        );
    }
    for (who, n) in &pulses {
        let theirs = end.iter().filter(|(w, _, _)| w == who).count();
        assert_eq!(theirs, *n as usize, "seed {seed}: {who}'s shouts");
    }

    let survived = end.iter().filter(|(who, _, _)| who == "a").count();
    eprintln!(
        "seed {seed}: {KILLS} kills ({late_kills} while shouting, {early_kills} during start-up) \
         in {kill_phase:.1?}; A's shouts: {} acknowledged, {survived} in the end state ({} \
         committed but killed before it could say so); B and C: {:?} shouts",
        shouts.acked.len(),
        survived - shouts.acked.len(),
        pulses,
    );
    eprintln!(
        "seed {seed}: end state {} ops, every acknowledged shout on all three and states equal \
         {:.2?} after the last restart, every op stable and the stable snapshots equal after \
         {settled:.2?}; {:.1?} in all",
        end.len(),
        converged.unwrap_or_default(),
        started.elapsed()
    );
}

/// The child side: a node in its own data directory.
#[test]
fn crash_child_entry() {
    let Ok(role) = std::env::var("PLEXUS_CRASH_ROLE") else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("plexus=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    // Tell the parent of any panic, in any thread or task.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        hook(info);
        println!("@@ panic {}", info.to_string().replace('\n', " "));
    }));
    let env = |key: &str| std::env::var(key).unwrap_or_else(|_| panic!("{key} is set"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run_child(
        role,
        PathBuf::from(env("PLEXUS_CRASH_DIR")),
        PathBuf::from(env("PLEXUS_CRASH_CA")),
        env("PLEXUS_CRASH_SEEDS"),
        env("PLEXUS_CRASH_INC").parse().expect("a number"),
        env("PLEXUS_CRASH_SHOUT") == "1",
    ));
}

async fn run_child(role: String, dir: PathBuf, ca: PathBuf, seeds: String, inc: u32, shout: bool) {
    // Commands come from a thread, so a closed stdin ends the process even
    // if the runtime is stuck.
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
        std::process::exit(0);
    });

    let identity = Identity::load(&dir).expect("the identity");
    let trust = Trust::ca(load_ca_certificate(&ca).expect("the CA cert"));
    let mut quic = QuicConfig::new("127.0.0.1:0".parse().expect("addr"), identity, trust);
    // The default idle timeout (30 s): a restarted A's new connection
    // replaces the dead one of its last run at once (the run is named in
    // its dial nonces), so nothing waits for the old one to idle out.
    quic.reconnect_max = Duration::from_millis(500);
    let mut config = NodeConfig::default();
    config.anti_entropy.interval = Duration::from_millis(200);
    // Compact often, so kills land in snapshot writes too.
    config.store.snapshot_every = 64;
    let seeds: Vec<SocketAddr> = seeds
        .split_whitespace()
        .map(|s| s.parse().expect("an address"))
        .collect();
    let node = Node::builder()
        .transport(Transport::quic(quic))
        .config(config)
        .data_dir(&dir)
        .seeds(seeds)
        .start()
        .await
        .expect("the node starts");
    println!("@@ listening {}", node.local_addr());

    let leaf: Leaf<CrashLog> = if role == "b" {
        node.create(OBJECT, CrashLog::default())
            .await
            .expect("created")
    } else {
        // Resumed from the store when it holds the object; otherwise
        // fetched, once a link is up.
        let deadline = Instant::now() + ANSWER;
        loop {
            match node.open::<CrashLog>(OBJECT).await {
                Ok(leaf) => break leaf,
                Err(e) if Instant::now() < deadline => {
                    tracing::info!(error = %e, "open failed; again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("open: {e}"),
            }
        }
    };
    let (entries, own) = leaf.read(|l| {
        let own = runs(
            l.entries
                .iter()
                .filter(|(who, _, _)| who == "a")
                .map(|(_, i, n)| (*i, *n)),
        );
        (l.entries.len(), own)
    });
    println!(
        "@@ ready {}",
        serde_json::to_string(&(entries, own)).expect("json")
    );

    if shout {
        println!("@@ shouting");
        let leaf = leaf.clone();
        tokio::spawn(async move {
            let window = Arc::new(tokio::sync::Semaphore::new(WINDOW));
            for n in 0u32.. {
                let permit = window.clone().acquire_owned().await.expect("open");
                // Applied and logged now, in order; resolves once on disk.
                let done = leaf.shout_record("a".into(), inc, n);
                tokio::spawn(async move {
                    match done.await {
                        Ok(_) => println!("@@ ok {inc} {n}"),
                        Err(e) => println!("@@ shout-failed {inc} {n}: {e}"),
                    }
                    drop(permit);
                });
            }
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut pulse: Option<tokio::task::JoinHandle<u32>> = None;
    while let Some(line) = commands.recv().await {
        match line.as_str() {
            "pulse" => {
                let (leaf, stop) = (leaf.clone(), stop.clone());
                let who = role.clone();
                pulse = Some(tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if let Err(e) = leaf.shout_record(who.clone(), 0, n).await {
                            println!("@@ shout-failed {who} {n}: {e}");
                            break;
                        }
                        n += 1;
                        tokio::time::sleep(PULSE).await;
                    }
                    n
                }));
                println!("@@ pulsing");
            }
            "stop" => {
                stop.store(true, Ordering::Relaxed);
                let n = match pulse.take() {
                    Some(task) => task.await.expect("the pulse task"),
                    None => 0,
                };
                println!("@@ stopped {n}");
            }
            "state" => {
                let report = Report {
                    entries: leaf.read(|l| l.entries.clone()),
                    stable: leaf.read_stable(|l| l.entries.clone()),
                    tentative: leaf.tentative_len(),
                };
                println!("@@ state {}", serde_json::to_string(&report).expect("json"));
            }
            other => panic!("an unknown command {other:?}"),
        }
    }
}
