//! `plexus lab` end to end: real peer processes over QUIC on 127.0.0.1,
//! the page in real headless Chromium, no orphan processes.
//!
//! The browser test needs Debian's `chromium` (`.ci/run` installs it). On
//! a machine without it the test says so and passes, except under CI
//! (`CI` set), where a missing browser fails it.

#![cfg(all(unix, feature = "lab"))]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

const PLEXUS: &str = env!("CARGO_BIN_EXE_plexus");

/// Starts `plexus lab` with `args`, its output to `out`; standard input is
/// a pipe, so the lab does not wait for Ctrl-C at the end unless told.
fn lab(out: &Path, args: &[&str]) -> (Child, BufReader<ChildStderr>) {
    let mut child = Command::new(PLEXUS)
        .arg("lab")
        .args(args)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start plexus lab");
    let stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
    (child, stderr)
}

/// Reads the lab's output until the line giving the page's address.
fn page_url(stderr: &mut BufReader<ChildStderr>) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = stderr.read_line(&mut line).expect("read the lab's output");
        assert!(n > 0, "the lab ended before printing its page address");
        if let Some(url) = line.trim().strip_prefix("lab: page ") {
            return url.to_owned();
        }
    }
}

/// Waits for `done` to hold, checking every 50 ms, up to `within`.
fn wait_for(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// Whether `pid` is a live process (a zombie is not: it has exited).
fn alive(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let state = status.lines().find_map(|l| l.strip_prefix("State:"));
    state.is_some_and(|s| !s.trim_start().starts_with('Z'))
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill {sig} {pid}");
}

fn chromium() -> Option<PathBuf> {
    let named = std::env::var_os("PLEXUS_CHROMIUM").map(PathBuf::from);
    let candidates = named.into_iter().chain(
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .map(PathBuf::from),
    );
    candidates.into_iter().find(|p| p.exists())
}

/// Headless Chromium with the flags this closed, root machine needs.
fn browser(exe: &Path, profile: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    cmd
}

/// Runs `cmd`, killing it past `within`; its standard output.
fn output_within(mut cmd: Command, within: Duration) -> String {
    let mut child = cmd.spawn().expect("start chromium");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + within;
    while child.try_wait().expect("poll chromium").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().expect("chromium's output")
}

/// The last lines of every peer's log in a run directory.
fn peer_logs(run: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(run.join("peers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        out += &format!("--- {}\n{tail}\n", entry.path().display());
    }
    out
}

/// The page of an 8-peer run, loaded while it runs in real headless
/// Chromium: the graph shows 8 peers, the targets table reaches "done".
/// A screenshot goes to `target/lab-e2e/lab.png` (a CI artefact).
#[test]
fn the_page_shows_eight_peers_and_every_target_done() {
    let Some(exe) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have chromium (.ci/run installs it)"
        );
        eprintln!("SKIPPED: no chromium here (apt-get install chromium)");
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let (mut lab, mut stderr) = lab(
        tmp.path(),
        &[
            "frog",
            "--peers",
            "8",
            "--messages",
            "4",
            "--interval",
            "250",
            "--linger",
            "300",
        ],
    );
    let url = page_url(&mut stderr);
    // The lab's own output, kept for the failure message.
    let log = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    // Loaded while the run goes on: the page follows the live stream,
    // which ends after the final snapshot, and then the DOM is dumped.
    let mut dump = browser(&exe, &tmp.path().join("profile-dom"));
    dump.args(["--virtual-time-budget=60000", "--dump-dom", &url]);
    let dom = output_within(dump, Duration::from_secs(120));
    let peers = dom.matches("<g class=\"peer").count();
    let done_cells = dom.matches("<td class=\"ok\">done</td>").count();
    let state_done = dom.contains("class=\"state done\"");
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-e2e");
    std::fs::create_dir_all(&artefacts).expect("artefact dir");
    std::fs::write(artefacts.join("lab.html"), &dom).expect("save the DOM");
    let mut shot = browser(&exe, &tmp.path().join("profile-shot"));
    let png = artefacts.join("lab.png");
    shot.arg("--window-size=1400,900")
        .arg(format!("--screenshot={}", png.display()))
        .args(["--virtual-time-budget=5000", &url]);
    output_within(shot, Duration::from_secs(60));
    signal(lab.id(), "-INT");
    let status = lab.wait().expect("wait for the lab");
    let output = log.join().expect("the lab's output");
    assert_eq!(peers, 8, "peers drawn in the graph\n{output}");
    assert!(dom.contains("data-peers=\"8\""), "{output}");
    assert_eq!(done_cells, 8, "targets shown done\n{output}");
    assert!(state_done, "the run state shows done\n{output}");
    assert!(status.success(), "the lab ended with {status}\n{output}");
    let shot = std::fs::metadata(&png).expect("the screenshot exists");
    assert!(shot.len() > 10_000, "a real picture: {} bytes", shot.len());
    eprintln!("screenshot: {}", png.display());
}

/// SIGKILL to the lab mid-run: every peer process ends by itself (its
/// lifeline, standard input, closes), none is left behind.
#[test]
fn killing_the_lab_leaves_no_peer_behind() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (mut lab, _stderr) = lab(
        tmp.path(),
        &[
            "frog",
            "--peers",
            "4",
            "--messages",
            "1000",
            "--interval",
            "100",
        ],
    );
    let pid = lab.id();
    let mut peers = Vec::new();
    wait_for(Duration::from_secs(60), "4 peer processes", || {
        peers = children_of(pid);
        peers.len() == 4
    });
    lab.kill().expect("SIGKILL the lab");
    lab.wait().expect("reap the lab");
    wait_for(Duration::from_secs(30), "every peer to exit", || {
        peers.iter().all(|p| !alive(*p))
    });
}

/// Ctrl-C (SIGINT) to the lab mid-run: it stops its peers, writes the run
/// as interrupted, exits non-zero, and leaves no peer behind.
#[test]
fn ctrl_c_stops_every_peer_and_writes_the_run() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (mut lab, mut stderr) = lab(
        tmp.path(),
        &[
            "counter-race",
            "--peers",
            "3",
            "--messages",
            "1000",
            "--interval",
            "100",
        ],
    );
    let pid = lab.id();
    let _ = page_url(&mut stderr);
    let mut peers = Vec::new();
    wait_for(Duration::from_secs(60), "3 peer processes", || {
        peers = children_of(pid);
        peers.len() == 3
    });
    signal(pid, "-INT");
    let status = lab.wait().expect("wait for the lab");
    assert!(!status.success(), "an interrupted run is not a success");
    assert!(peers.iter().all(|p| !alive(*p)), "peers left: {peers:?}");
    let runs: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("out dir")
        .flatten()
        .collect();
    assert_eq!(runs.len(), 1);
    let metrics = std::fs::read_to_string(runs[0].path().join("metrics.json")).expect("metrics");
    assert!(metrics.contains("\"state\": \"interrupted\""), "{metrics}");
}

/// Every shipped experiment runs to its end on 4 peers, and the run's
/// files are written.
#[test]
fn every_experiment_reaches_its_targets() {
    for experiment in ["frog", "shoutbox", "counter-race", "partition-drill"] {
        let tmp = tempfile::tempdir().expect("temp dir");
        let (mut lab, mut stderr) = lab(
            tmp.path(),
            &[
                experiment,
                "--peers",
                "4",
                "--messages",
                "3 if peer % 2 == 1 else 1",
                "--interval",
                "20",
                "--timeout",
                "90",
            ],
        );
        let mut output = String::new();
        let _ = stderr.read_to_string(&mut output);
        let status = lab.wait().expect("wait for the lab");
        let run = std::fs::read_dir(tmp.path())
            .expect("out")
            .flatten()
            .next()
            .expect("a run dir");
        assert!(
            status.success(),
            "{experiment}: {status}\n{output}\n{}",
            peer_logs(&run.path())
        );
        for file in ["graph.dot", "graph.svg", "graph.json", "metrics.json"] {
            let path = run.path().join(file);
            assert!(path.exists(), "{experiment}: {file} missing");
        }
        let metrics = std::fs::read_to_string(run.path().join("metrics.json")).expect("metrics");
        assert!(
            metrics.contains("\"state\": \"done\""),
            "{experiment}: {metrics}"
        );
        assert!(
            metrics.contains("\"messages_budget\": 8"),
            "{experiment}: {metrics}"
        );
        let dot = std::fs::read_to_string(run.path().join("graph.dot")).expect("dot");
        assert_eq!(dot.matches("[label=").count(), 4, "{experiment}: {dot}");
    }
}

/// A bad `--messages` is refused before anything starts, naming the
/// column; so is an unknown experiment, with the list of known ones.
#[test]
fn bad_input_gets_a_clear_error_and_starts_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| {
        let out = Command::new(PLEXUS)
            .arg("lab")
            .args(args)
            .arg("--out")
            .arg(tmp.path())
            .output()
            .expect("run plexus lab");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, err) = run(&["frog", "--messages", "10 if peer == else 0"]);
    assert!(!status.success());
    assert!(err.contains("column 15"), "{err}");
    let (status, err) = run(&["frog", "--messages", "peer - 3"]);
    assert!(!status.success());
    assert!(err.contains("gives peer 1 the budget -2"), "{err}");
    let (status, err) = run(&["toad"]);
    assert!(!status.success());
    assert!(
        err.contains("no experiment named \"toad\"") && err.contains("frog"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).expect("out").count(),
        0,
        "nothing written"
    );
}
