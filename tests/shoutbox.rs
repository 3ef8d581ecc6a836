//! End to end: two `shoutbox` example processes chat over QUIC, and a
//! restarted peer finds the earlier shouts in its data directory.
//!
//! The example binary is found next to this test binary
//! (`target/<profile>/examples/shoutbox`); `cargo test` builds it, `cargo
//! test --test shoutbox` alone does not (run `cargo build --examples`
//! first). Every child is killed when dropped, so none outlives a failed
//! test, and every wait has a deadline.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any one expected line (or exit) may take.
const WAIT: Duration = Duration::from_secs(30);

/// `target/<profile>/examples/shoutbox`, beside `target/<profile>/deps/`
/// where this test binary is.
fn example_binary() -> PathBuf {
    let me = std::env::current_exe().expect("the test binary's path");
    let profile = me
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in target/<profile>/deps");
    let binary = profile
        .join("examples")
        .join(format!("shoutbox{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build --examples` (plain `cargo test` builds it too)",
        binary.display()
    );
    binary
}

/// One `shoutbox` process, its stdin, and its stdout as lines.
struct Shoutbox {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line read so far, for failure messages.
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Shoutbox {
    fn start(name: &'static str, dir: &Path, ca: &Path, peer: Option<&str>) -> Self {
        let mut command = Command::new(example_binary());
        command
            .args(["--name", name, "--listen", "127.0.0.1:0"])
            .arg("--dir")
            .arg(dir)
            .arg("--ca")
            .arg(ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(peer) = peer {
            command.args(["--peer", peer]);
        }
        let mut child = command.spawn().expect("the shoutbox example starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                sink.lock().expect("stderr sink").push_str(&text);
            }
        });
        Self {
            name,
            child,
            stdin: Some(stdin),
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Panics with everything the child printed.
    fn fail(&self, why: &str) -> ! {
        panic!(
            "{}: {why}\n--- stdout so far:\n{}\n--- stderr:\n{}",
            self.name,
            self.seen.join("\n"),
            self.stderr.lock().expect("stderr sink")
        );
    }

    /// The next stdout line, within `WAIT`; `None` once stdout is closed.
    fn next_line(&mut self, deadline: Instant, what: &str) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => self.fail(&format!("no {what} within {WAIT:?}")),
        }
    }

    /// Reads lines until one satisfies `matches`, and returns it.
    fn expect(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_line(deadline, what) {
                Some(line) if matches(&line) => return line,
                Some(_) => {}
                None => self.fail(&format!("exited before printing {what}")),
            }
        }
    }

    /// The address from the `listening on ADDR` line.
    fn address(&mut self) -> String {
        let line = self.expect("`listening on`", |l| l.starts_with("listening on "));
        line["listening on ".len()..].trim().to_owned()
    }

    /// The shouts of the `last 10 shouts:` block printed at start.
    fn history(&mut self) -> Vec<String> {
        self.expect("`last 10 shouts:`", |l| l == "last 10 shouts:");
        let deadline = Instant::now() + WAIT;
        let mut shouts = Vec::new();
        loop {
            match self.next_line(deadline, "the end of the history (`---`)") {
                Some(line) if line == "---" => return shouts,
                Some(line) if line == "(no shouts yet)" => {}
                Some(line) => shouts.push(line),
                None => self.fail("exited inside its history"),
            }
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("writing to the shoutbox");
        stdin.flush().expect("flushing");
    }

    /// Closes stdin (end of input: the chat ends) and waits for the exit.
    fn quit(&mut self) -> ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + WAIT;
        // stdout closes when the process ends.
        while self
            .next_line(deadline, "exit after end of input")
            .is_some()
        {}
        self.child.wait().expect("reaped")
    }
}

impl Drop for Shoutbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_peers_chat_and_a_restarted_peer_keeps_the_history() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    // Amy makes the CA (the directory does not exist yet); Bob uses it.
    let ca = tmp.path().join("ca");
    let (amy_dir, bob_dir) = (tmp.path().join("amy"), tmp.path().join("bob"));

    let mut amy = Shoutbox::start("amy", &amy_dir, &ca, None);
    let amy_addr = amy.address();
    assert_eq!(amy.history(), Vec::<String>::new(), "a new box is empty");
    let mut bob = Shoutbox::start("bob", &bob_dir, &ca, Some(&amy_addr));
    bob.address();
    assert_eq!(bob.history(), Vec::<String>::new(), "a new box is empty");
    // Both ends see the link before anyone shouts.
    amy.expect("amy's `* linked to`", |l| l.starts_with("* linked to "));
    bob.expect("bob's `* linked to`", |l| {
        l.starts_with("* linked to ") && l.ends_with(&amy_addr)
    });

    amy.say("hello from amy");
    bob.expect("`amy: hello from amy` at bob", |l| {
        l == "amy: hello from amy"
    });
    bob.say("hi amy, bob here");
    amy.expect("`bob: hi amy, bob here` at amy", |l| {
        l == "bob: hi amy, bob here"
    });

    // End of input ends the chat cleanly.
    let status = amy.quit();
    assert!(status.success(), "amy exited with {status}");
    let status = bob.quit();
    assert!(status.success(), "bob exited with {status}");

    // Amy again, on her data directory, alone: the history can only come
    // from her store.
    let mut amy = Shoutbox::start("amy", &amy_dir, &ca, None);
    amy.address();
    let history = amy.history();
    if history != ["amy: hello from amy", "bob: hi amy, bob here"] {
        amy.fail(&format!(
            "after a restart on her data directory, amy's last shouts are {history:?}, not both \
             earlier shouts (this needs the node's durable store: `create` must resume the box)"
        ));
    }
    let status = amy.quit();
    assert!(status.success(), "amy exited with {status}");
}
