//! ShoutBox: a terminal chat over Plexus (Tribler's "shoutbox" widget).
//!
//! Every peer holds a copy of one replicated [`ShoutBox`], a list of
//! shouts `{ name, text }`. A line typed at any peer is *shouted*: `say`
//! runs on every copy. Plexus applies an object's ops in one total
//! (Lamport) order at every replica, so every copy holds the same shouts in
//! the same order, with no server. The box keeps the last 1,000 shouts.
//!
//! Two peers, in two terminals opened in the same directory:
//!
//! ```text
//! cargo run --example shoutbox -- --name amy --dir /tmp/amy --listen 127.0.0.1:7001
//! cargo run --example shoutbox -- --name bob --dir /tmp/bob --listen 127.0.0.1:7002 --peer 127.0.0.1:7001
//! ```
//!
//! Type a line in either terminal and it shows up in the other. Your own
//! lines are not echoed back (your terminal already shows them); every
//! shout from another peer is printed as `name: text` when it arrives.
//! `/who` lists the linked peers, `/history` the last 10 shouts, `/help`
//! the commands; `/quit`, end of input (Ctrl-D) or Ctrl-C leave cleanly.
//! A line starting with `//` is shouted with one `/` less.
//!
//! **Trust.** Peers are authenticated with mutual TLS against a cluster CA
//! (see `plexus::tls`). `--ca` names its directory, `./shoutbox-ca` by
//! default: the first peer makes it, and every peer gets a certificate
//! issued by it on its first start. So peers on one machine only need to
//! start in the same directory; peers on several machines need a copy of
//! that directory (or only its `ca.crt`, once their `--dir` holds an
//! identity the CA issued). Start the first peer before the others: two
//! peers making a CA at the same moment would make two. The first peer
//! (started without `--peer`) also makes the box; the others get it from
//! the cluster, so every copy shares one history. A `--dir` whose
//! certificate is from another CA gets a new one from this CA, for the same
//! key (so the same node id), with a note on standard error.
//!
//! **What persists.** `--dir` is the node's data directory: its key and
//! certificate, and its store (`plexus.redb`). `node.create` resumes the
//! stored box, so the `last 10 shouts` a peer prints on start include
//! those from before a restart, its own and the ones it received, even
//! with no peer up. Every shout shown is on disk once the peer has left
//! cleanly (`/quit`, end of input, Ctrl-C).
//!
//! **Output.** Standard output carries one line per event, in this order
//! at start: `listening on ADDR`, then `last 10 shouts:`, the shouts as
//! `name: text` (or `(no shouts yet)`), `---` and a hint. Then shouts from
//! others, and `* linked to ID at ADDR` / `* lost link to ID` as peers come
//! and go. Errors and warnings go to standard error; logs too (`RUST_LOG`,
//! `warn` by default).
//!
//! **Scripts.** `--say TEXT` (repeatable) shouts lines at start, once
//! linked to a `--peer` (waiting up to 10 s for one); `--exit-after-say`
//! then waits up to 10 s for them to be stable (held by every member of the
//! box that this peer knows of) and exits instead of reading standard
//! input. `--short` is the CI run: one node in a temporary directory with
//! its own CA shouts 3 lines, prints the last 10 and exits.
//!
//! Bad input (a bad address, a damaged key file, a CA that cannot be read)
//! prints what is wrong and exits with status 1 (2 for command-line
//! mistakes); a line that cannot be sent says why and the chat goes on.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Display;
use std::io::{BufRead, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use parking_lot::Mutex;
use plexus::tls::{
    self, ClusterCa, Identity, IdentityError, Trust, CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE,
};
use plexus::{
    replicated, Delivery, Leaf, MembershipEvent, Node, NodeId, NodeState, OpId, OpenError,
    Replicated, ShoutError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};

/// How many shouts a box keeps: the oldest go first.
pub const KEEP: usize = 1_000;

/// The longest line that is shouted, in bytes. With [`MAX_NAME`] this keeps
/// a full box (1,000 shouts) under the 1 MiB frame a state transfer takes.
const MAX_TEXT: usize = 512;
/// The longest name, in bytes.
const MAX_NAME: usize = 64;
/// How many shouts are shown on start and by `/history`.
const SHOWN: usize = 10;
/// The object every peer shares.
const BOX: &str = "shoutbox";
/// How long `--say` waits for a link to a `--peer`, and `--exit-after-say`
/// for its shouts to be stable.
const WAIT: Duration = Duration::from_secs(10);

/// One line of the chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shout {
    /// Who shouted it (as they called themselves).
    pub name: String,
    /// What they said.
    pub text: String,
}

/// The replicated chat: the shouts, in the agreed order.
#[derive(Replicated, Clone, Debug, Default, Serialize, Deserialize)]
#[plexus(tag = "example.ShoutBox")]
pub struct ShoutBox {
    /// The last [`KEEP`] shouts, oldest first.
    pub shouts: Vec<Shout>,
}

#[replicated]
impl ShoutBox {
    /// Say something: runs on every copy, in the same order everywhere.
    #[shout]
    pub fn say(&mut self, name: String, text: String) {
        self.shouts.push(Shout { name, text });
        if self.shouts.len() > KEEP {
            let extra = self.shouts.len() - KEEP;
            self.shouts.drain(..extra);
        }
    }

    /// The last `n` shouts, oldest first (local: never leaves this peer).
    pub fn last(&self, n: usize) -> &[Shout] {
        &self.shouts[self.shouts.len().saturating_sub(n)..]
    }
}

/// A terminal chat over Plexus.
#[derive(Debug, Parser)]
#[command(
    name = "shoutbox",
    about = "A terminal chat over Plexus: every line typed is shouted to every peer.",
    after_help = "Two peers:\n  \
        shoutbox --name amy --dir /tmp/amy --listen 127.0.0.1:7001\n  \
        shoutbox --name bob --dir /tmp/bob --listen 127.0.0.1:7002 --peer 127.0.0.1:7001"
)]
struct Args {
    /// Your name, shown with your shouts (1 to 64 bytes).
    #[arg(long, required_unless_present = "short")]
    name: Option<String>,
    /// The node's data directory: its identity and its shouts persist
    /// there. Created if missing.
    #[arg(long, value_name = "PATH", required_unless_present = "short")]
    dir: Option<PathBuf>,
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0", value_parser = socket_addr)]
    listen: SocketAddr,
    /// A peer to join through (repeatable); any single live one is enough.
    #[arg(long = "peer", value_name = "ADDR", value_parser = socket_addr)]
    peers: Vec<SocketAddr>,
    /// The cluster CA directory shared by all peers (made if absent).
    #[arg(long, value_name = "DIR", default_value = "shoutbox-ca")]
    ca: PathBuf,
    /// Shout this line at start (repeatable), then go on as usual.
    #[arg(long = "say", value_name = "TEXT")]
    say: Vec<String>,
    /// Exit after the --say lines instead of reading standard input.
    #[arg(long)]
    exit_after_say: bool,
    /// CI: one node in a temporary directory with its own CA shouts 3
    /// lines (or the --say lines), prints the last 10 and exits.
    #[arg(long, conflicts_with_all = ["dir", "peers", "exit_after_say"])]
    short: bool,
}

/// Parses `host:port`, resolving a host name to its first address.
fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| format!("{text:?} is not an address (like 127.0.0.1:7001): {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

/// Prints one line on standard output, at once. A closed standard output
/// is not an error worth dying for: the chat goes on without it.
fn out(line: impl Display) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// A name or text as it is safe to print: control characters (a remote
/// peer's terminal escapes, say) become U+FFFD.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

fn check_name(name: &str) -> anyhow::Result<String> {
    let name = name.trim();
    if name.is_empty() {
        bail!("--name is empty");
    }
    if name.len() > MAX_NAME {
        bail!("--name is {} bytes long; at most {MAX_NAME}", name.len());
    }
    if name.chars().any(char::is_control) {
        bail!("--name holds a control character");
    }
    Ok(name.to_owned())
}

/// This peer's identity, issued by the cluster CA in `ca_dir` and kept in
/// `dir`, and the trust rule (the CA): makes the CA if `ca_dir` has none,
/// and the identity if `dir` has none.
fn identity(dir: &Path, ca_dir: &Path, name: &str) -> anyhow::Result<(Identity, Trust)> {
    let ca_cert_path = ca_dir.join(CA_CERT_FILE);
    let ca_key_path = ca_dir.join(CA_KEY_FILE);
    let exists = |path: &Path| {
        path.try_exists()
            .with_context(|| format!("cannot look at {}", path.display()))
    };
    if !exists(&ca_cert_path)? && !exists(&ca_key_path)? {
        let ca = ClusterCa::generate("shoutbox").context("making a cluster CA")?;
        match ca.save(ca_dir) {
            Ok(()) => eprintln!("shoutbox: made a cluster CA in {}", ca_dir.display()),
            // Another peer made one in between: use it.
            Err(IdentityError::AlreadyExists { .. }) => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("saving the new cluster CA in {} (--ca)", ca_dir.display())
                })
            }
        }
    }
    let ca_cert = tls::load_ca_certificate(&ca_cert_path).with_context(|| {
        format!(
            "reading the cluster CA certificate (--ca {})",
            ca_dir.display()
        )
    })?;
    let load_ca = |why: &str| {
        ClusterCa::load(ca_dir).with_context(|| {
            format!(
                "{why}, which needs the cluster CA's key: cannot load the CA in {} (--ca)",
                ca_dir.display()
            )
        })
    };
    let identity = if exists(&dir.join(KEY_FILE))? || exists(&dir.join(CERT_FILE))? {
        let existing = Identity::load(dir).with_context(|| {
            format!("reading this node's identity in {} (--dir)", dir.display())
        })?;
        if existing.certificate_chain().get(1) == Some(&ca_cert) {
            existing
        } else {
            let ca = load_ca(&format!(
                "the certificate in {} is not from this cluster CA; re-issuing it",
                dir.display()
            ))?;
            let reissued = ca
                .issue(existing, name)
                .context("re-issuing the certificate")?;
            reissued
                .save(dir)
                .with_context(|| format!("saving the new certificate in {}", dir.display()))?;
            eprintln!(
                "shoutbox: re-issued {}'s certificate from the CA in {} (same key, same node id)",
                dir.display(),
                ca_dir.display()
            );
            reissued
        }
    } else {
        let ca = load_ca("a new node gets its certificate from the cluster CA")?;
        let fresh = Identity::generate().context("making a key")?;
        let issued = ca.issue(fresh, name).context("issuing a certificate")?;
        issued
            .save(dir)
            .with_context(|| format!("saving this node's identity in {} (--dir)", dir.display()))?;
        issued
    };
    Ok((identity, Trust::ca(ca_cert)))
}

/// How this peer reacts to shouts: prints the ones from other peers, and
/// remembers who shouted from which node (for `/who`).
struct Printer {
    names: Arc<Mutex<HashMap<NodeId, String>>>,
    /// With `--exit-after-say`: this peer's ops that became stable.
    stable: Option<watch::Sender<BTreeSet<OpId>>>,
}

impl ShoutBoxObserver for Printer {
    fn say(&mut self, _box: &ShoutBox, name: &String, text: &String, delivery: &Delivery) {
        self.names.lock().insert(delivery.origin, name.clone());
        if !delivery.local {
            out(format_args!("{}: {}", clean(name), clean(text)));
        }
    }

    fn on_stable(&mut self, _box: &ShoutBox, _op: &ShoutBoxOp, delivery: &Delivery) {
        if let (Some(stable), true) = (&self.stable, delivery.local) {
            stable.send_modify(|ids| {
                ids.insert(delivery.op);
            });
        }
    }
}

fn print_history(leaf: &Leaf<ShoutBox>) {
    let shouts = leaf.read(|b| b.last(SHOWN).to_vec());
    out(format_args!("last {SHOWN} shouts:"));
    if shouts.is_empty() {
        out("(no shouts yet)");
    }
    for shout in &shouts {
        out(format_args!(
            "{}: {}",
            clean(&shout.name),
            clean(&shout.text)
        ));
    }
    out("---");
}

fn print_who(node: &Node, name: &str, names: &Mutex<HashMap<NodeId, String>>) {
    out(format_args!(
        "you: {} ({}) at {}",
        node.id(),
        clean(name),
        node.local_addr()
    ));
    let view = node.current_view();
    if view.is_empty() {
        out("no peers linked");
        return;
    }
    out(format_args!("{} peer(s) linked:", view.len()));
    let names = names.lock();
    for peer in view {
        let called = names
            .get(&peer.id)
            .map(|n| format!(" ({})", clean(n)))
            .unwrap_or_default();
        out(format_args!(
            "  {}{called} at {}",
            peer.id,
            peer.addr.as_deref().unwrap_or("?")
        ));
    }
}

fn print_help() {
    out("type a line and press enter to shout it");
    out("  //text    shouts /text (a line starting with / is a command)");
    out("  /who      the peers linked to this one");
    out("  /history  the last 10 shouts");
    out("  /quit     leave (so do Ctrl-D and Ctrl-C)");
}

/// Prints `* linked to ..` and `* lost link to ..` as peers come and go.
async fn announce_peers(node: Node, mut events: broadcast::Receiver<MembershipEvent>) {
    let addr_of = |id: &NodeId| {
        node.known_peers()
            .into_iter()
            .find(|p| p.id == *id)
            .and_then(|p| p.addr)
            .unwrap_or_else(|| "?".to_owned())
    };
    // Links that came up before `events` was subscribed.
    let mut up = HashSet::new();
    for peer in node.current_view() {
        if up.insert(peer.id) {
            out(format_args!(
                "* linked to {} at {}",
                peer.id,
                addr_of(&peer.id)
            ));
        }
    }
    loop {
        match events.recv().await {
            Ok(MembershipEvent::PeerUp(id)) => {
                if up.insert(id) {
                    out(format_args!("* linked to {id} at {}", addr_of(&id)));
                }
            }
            Ok(MembershipEvent::PeerDown(id)) => {
                if up.remove(&id) {
                    out(format_args!("* lost link to {id}"));
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// What the standard-input thread reports.
enum Input {
    Line(String),
    /// End of input, or Ctrl-C.
    Quit,
}

/// Reads standard input on a thread of its own (a blocked read must not
/// hold the runtime up at exit); invalid UTF-8 is replaced, not fatal.
fn read_stdin(lines: mpsc::UnboundedSender<Input>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match stdin.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    if lines.send(Input::Line(line)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("shoutbox: cannot read standard input: {e}");
                    break;
                }
            }
        }
        let _ = lines.send(Input::Quit);
    });
}

/// Shouts `text` as `name`; says why on standard error when it cannot.
async fn send(leaf: &Leaf<ShoutBox>, name: &str, text: &str) -> Result<Option<OpId>, ShoutError> {
    if text.len() > MAX_TEXT {
        eprintln!(
            "shoutbox: not sent: the line is {} bytes long; a shout is at most {MAX_TEXT}",
            text.len()
        );
        return Ok(None);
    }
    match leaf.shout_say(name.to_owned(), text.to_owned()).await {
        Ok(id) => Ok(Some(id)),
        Err(ShoutError::Stopped) => Err(ShoutError::Stopped),
        Err(e) => {
            eprintln!("shoutbox: not sent: {e}");
            Ok(None)
        }
    }
}

/// The box: the first peer (no `--peer`) makes it; the others get it from
/// the cluster, so every copy shares one history. A peer whose store holds
/// the box resumes it either way.
async fn shout_box(node: &Node, args: &Args) -> anyhow::Result<Leaf<ShoutBox>> {
    if args.peers.is_empty() {
        return node
            .create(BOX, ShoutBox::default())
            .await
            .context("making the shout box");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match node.open::<ShoutBox>(BOX).await {
            Ok(leaf) => return Ok(leaf),
            // The peer may be linking still, or opening it itself.
            Err(OpenError::NotFound { .. }) if tokio::time::Instant::now() < deadline => {}
            Err(e) => {
                return Err(e).context(
                    "getting the shout box from the cluster (is the first peer, \
                     started without --peer, up?)",
                )
            }
        }
    }
}

/// The chat on a started node, until `/quit`, end of input or Ctrl-C (or
/// after `--say` with `--exit-after-say`).
async fn chat(node: &Node, name: &str, args: &Args) -> anyhow::Result<()> {
    let events = node.events();
    let leaf = shout_box(node, args).await?;
    let names = Arc::new(Mutex::new(HashMap::new()));
    let (stable, stable_ids) = watch::channel(BTreeSet::new());
    leaf.observe(Printer {
        names: names.clone(),
        stable: args.exit_after_say.then_some(stable),
    });
    out(format_args!("listening on {}", node.local_addr()));
    print_history(&leaf);
    tokio::spawn(announce_peers(node.clone(), events));

    let mut said = Vec::new();
    if !args.say.is_empty() {
        if tokio::time::timeout(WAIT, node.wait_for_state(NodeState::Connected))
            .await
            .is_err()
        {
            eprintln!(
                "shoutbox: warning: no peer answered in {WAIT:?}; shouting anyway (peers get \
                 the shouts when they link)"
            );
        }
        for text in &args.say {
            let text = text.trim();
            if !text.is_empty() {
                said.extend(send(&leaf, name, text).await?);
            }
        }
    }
    let result = if args.exit_after_say {
        await_stable(node, &said, stable_ids).await;
        Ok(())
    } else {
        converse(node, &leaf, name, &names).await
    };
    // A peer's shout is logged right after it is applied, under the
    // replica's lock, and the observer may have printed it in between: one
    // read waits for that, so every shout shown here is on disk at exit.
    leaf.read(|_| ());
    node.flush()
        .await
        .context("saving the shouts in the data directory")?;
    result
}

/// `--exit-after-say`: waits (at most [`WAIT`]) until every op in `said`
/// is stable, that is held by every member of the box this peer knows of.
async fn await_stable(node: &Node, said: &[OpId], mut stable: watch::Receiver<BTreeSet<OpId>>) {
    if said.is_empty() || node.current_view().is_empty() {
        // No peer to deliver to (and nothing becomes stable alone).
        return;
    }
    let all_stable = stable.wait_for(|ids| said.iter().all(|id| ids.contains(id)));
    if !matches!(tokio::time::timeout(WAIT, all_stable).await, Ok(Ok(_))) {
        eprintln!(
            "shoutbox: warning: not every shout was confirmed stable in {WAIT:?}; some peers \
             may not have it yet"
        );
    }
}

/// Reads standard input and shouts every line, until `/quit`, end of
/// input or Ctrl-C.
async fn converse(
    node: &Node,
    leaf: &Leaf<ShoutBox>,
    name: &str,
    names: &Mutex<HashMap<NodeId, String>>,
) -> anyhow::Result<()> {
    out("type to shout; /help lists the commands");
    let (input, mut lines) = mpsc::unbounded_channel();
    read_stdin(input.clone());
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = input.send(Input::Quit);
        }
    });
    while let Some(Input::Line(line)) = lines.recv().await {
        let text = line.trim();
        match text {
            "" => {}
            "/quit" => break,
            "/who" => print_who(node, name, names),
            "/history" => print_history(leaf),
            "/help" => print_help(),
            _ if text.starts_with("//") => {
                send(leaf, name, &text[1..]).await?;
            }
            _ if text.starts_with('/') => {
                let command = text.split_whitespace().next().unwrap_or(text);
                eprintln!(
                    "shoutbox: unknown command {}; /help lists them (//text shouts /text)",
                    clean(command)
                );
            }
            _ => {
                send(leaf, name, text).await?;
            }
        }
    }
    Ok(())
}

/// `--short`: one node, its own CA, three shouts, the last 10, exit.
async fn short(args: &Args) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir().context("making a temporary directory")?;
    let name = check_name(args.name.as_deref().unwrap_or("ci"))?;
    let (identity, trust) = identity(&tmp.path().join("node"), &tmp.path().join("ca"), &name)?;
    let node = Node::builder()
        .listen(args.listen)
        .data_dir(tmp.path().join("node"))
        .identity(identity)
        .trust(trust)
        .start()
        .await
        .context("starting the node")?;
    let result = async {
        let leaf: Leaf<ShoutBox> = node.create(BOX, ShoutBox::default()).await?;
        out(format_args!("listening on {}", node.local_addr()));
        let lines: Vec<String> = if args.say.is_empty() {
            (1..=3)
                .map(|i| format!("short run: shout {i} of 3"))
                .collect()
        } else {
            args.say.clone()
        };
        for text in &lines {
            leaf.shout_say(name.clone(), text.clone()).await?;
        }
        print_history(&leaf);
        let kept = leaf.read(|b| b.last(lines.len()).to_vec());
        let texts: Vec<&String> = kept.iter().map(|s| &s.text).collect();
        if texts != lines.iter().collect::<Vec<_>>() {
            bail!("the box holds {texts:?}, not the lines shouted");
        }
        Ok(())
    }
    .await;
    node.shutdown();
    result
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.short {
        return short(&args).await;
    }
    let (Some(name), Some(dir)) = (args.name.as_deref(), args.dir.as_deref()) else {
        bail!("--name and --dir are required");
    };
    let name = check_name(name)?;
    let (identity, trust) = identity(dir, &args.ca, &name)?;
    let node = Node::builder()
        .listen(args.listen)
        .data_dir(dir)
        .identity(identity)
        .trust(trust)
        .seeds(args.peers.iter().copied())
        .start()
        .await
        .with_context(|| format!("starting the node on {}", args.listen))?;
    let result = chat(&node, &name, &args).await;
    node.shutdown();
    result
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, each once: some errors already quote
            // their source.
            let mut message = e.to_string();
            for cause in e.chain().skip(1).map(ToString::to_string) {
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
            }
            eprintln!("shoutbox: error: {message}");
            ExitCode::FAILURE
        }
    }
}
