//! Three sites, three OS processes, chained A – B – C over QUIC.
//!
//! A and C hold a frog; B is a pure repeater (what `plexus node --config`
//! runs): it knows no application type and relays every op, opaque. Croaks
//! made at C reach A through B, and A's reach C. Every site prints its final
//! state; the example exits non-zero if A and C differ.
//!
//! ```text
//! cargo run --example sites                  # 20 croaks per frog site
//! cargo run --example sites -- --croaks 500
//! ```
//!
//! The parent makes a throwaway cluster CA, a site file per site, and
//! starts each site as a child process of this same binary. Children exit
//! when their standard input closes, so none outlives the parent.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use plexus::site::SiteConfig;
use plexus::tls::{ClusterCa, Identity, CA_CERT_FILE};
use plexus::{replicated, Leaf, Replicated};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader as AsyncBufReader};

/// The replicated frog.
#[derive(Replicated, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[plexus(tag = "demo.SiteFrog")]
pub struct Frog {
    /// Who croaked, in the agreed order.
    pub chorus: Vec<String>,
}

#[replicated]
impl Frog {
    /// Croak: runs at every site that holds the frog.
    #[shout]
    pub fn croak(&mut self, by: String) {
        self.chorus.push(by);
    }
}

/// One line per site of what a child saw, and a digest of its state.
fn digest(frog: &Frog) -> u64 {
    // FNV-1a over the chorus: equal states give equal digests.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for by in &frog.chorus {
        for b in by.bytes().chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

struct Site {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Site {
    fn spawn(name: &'static str, role: &str, config: &Path, croaks: u32) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "--role",
                role,
                "--name",
                name,
                "--croaks",
                &croaks.to_string(),
            ])
            .arg("--config")
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting site {name}"))?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?);
        Ok(Self {
            name,
            child,
            stdin,
            stdout,
        })
    }

    /// The next line the site prints that starts with `tag`.
    fn expect(&mut self, tag: &str) -> anyhow::Result<String> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("site {} exited before saying {tag:?}", self.name);
            }
            if let Some(rest) = line.trim_end().strip_prefix(tag) {
                return Ok(rest.trim().to_owned());
            }
            print!("[{}] {line}", self.name);
        }
    }

    fn say(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{line}")?;
        Ok(self.stdin.flush()?)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // "stop" asks the child to shut its node down cleanly. std has no
        // wait-with-timeout, so poll its exit for up to a second, then kill.
        let _ = self.say("stop");
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_site(dir: &Path, name: &str, ca: &ClusterCa, links: &[String]) -> anyhow::Result<PathBuf> {
    let data = dir.join(name);
    ca.issue(Identity::generate()?, name)?.save(&data)?;
    let links: Vec<String> = links.iter().map(|l| format!("\"{l}\"")).collect();
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{name}\"\nca = \"{CA_CERT_FILE}\"\nlinks = [{}]\n",
        links.join(", ")
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml)?;
    Ok(path)
}

fn parent(croaks: u32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = ClusterCa::generate("sites example")?;
    ca.save(dir.path())?; // ca.crt for the sites to trust (and the key, thrown away with the dir)

    let a_cfg = write_site(dir.path(), "a", &ca, &[])?;
    let mut a = Site::spawn("a", "frog", &a_cfg, croaks)?;
    let a_addr = a.expect("listening")?;
    let b_cfg = write_site(dir.path(), "b", &ca, &[a_addr])?;
    let mut b = Site::spawn("b", "relay", &b_cfg, croaks)?;
    let b_addr = b.expect("listening")?;
    let c_cfg = write_site(dir.path(), "c", &ca, &[b_addr])?;
    let mut c = Site::spawn("c", "frog", &c_cfg, croaks)?;
    c.expect("listening")?;

    a.expect("ready")?;
    c.expect("ready")?;
    a.say("go")?;
    c.say("go")?;
    let fa = a.expect("final")?;
    let fc = c.expect("final")?;
    println!("site a: {fa}");
    println!("site c: {fc}");
    b.say("report")?;
    println!("site b (relay): relayed {}", b.expect("relayed")?);
    if fa != fc {
        bail!("sites a and c differ");
    }
    println!("sites a and c are identical; every croak crossed the relay");
    Ok(())
}

/// A child: run a site until standard input closes.
async fn child(role: &str, name: &str, config: &Path, croaks: u32) -> anyhow::Result<()> {
    let site = SiteConfig::load(config)?;
    let node = site.start().await?;
    println!("listening {}", node.local_addr());
    let mut lines = AsyncBufReader::new(tokio::io::stdin()).lines();
    if role == "relay" {
        while let Some(line) = lines.next_line().await? {
            if line == "report" {
                let s = node.stats().await;
                println!(
                    "relayed {} ops ({} duplicates dropped, {} sends)",
                    s.ops_seen, s.duplicates, s.ops_sent
                );
            }
            if line == "stop" {
                break;
            }
        }
        return Ok(());
    }
    let frog: Leaf<Frog> = if site.links.is_empty() {
        node.create("kermit", Frog::default()).await?
    } else {
        node.open("kermit").await?
    };
    println!("ready");
    while let Some(line) = lines.next_line().await? {
        match line.as_str() {
            "go" => {
                for _ in 0..croaks {
                    frog.shout_croak(name.to_owned()).await?;
                }
                let total = 2 * croaks as usize;
                tokio::time::timeout(
                    Duration::from_secs(30),
                    frog.wait_until_admitted(|f| f.chorus.len() == total),
                )
                .await
                .context("not every croak arrived")?;
                let state = frog.read(Frog::clone);
                let from_a = state.chorus.iter().filter(|b| *b == "a").count();
                println!(
                    "final digest {:016x}: {} croaks ({from_a} from a, {} from c)",
                    digest(&state),
                    state.chorus.len(),
                    state.chorus.len() - from_a
                );
            }
            "stop" => break,
            _ => {}
        }
    }
    node.shutdown();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut role, mut name, mut config, mut croaks) = (None, String::new(), None, 20u32);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--role" => role = args.next(),
            "--name" => name = args.next().context("--name needs a value")?,
            "--config" => config = args.next().map(PathBuf::from),
            "--croaks" => croaks = args.next().context("--croaks needs a number")?.parse()?,
            "--help" | "-h" => {
                println!("usage: sites [--croaks N]   (croaks per frog site, default 20)");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    match role {
        None => parent(croaks),
        Some(role) => {
            let config = config.context("a child needs --config")?;
            tokio::runtime::Runtime::new()?.block_on(child(&role, &name, &config, croaks))
        }
    }
}
