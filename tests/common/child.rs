//! A child process of a multi-process test: the test binary run again on
//! one entry test, speaking lines on stdin and stdout. It is killed when
//! dropped, so none outlives a failed test.

#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// A child process and its line protocol.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Run this test binary's test `entry` alone, with `vars` set.
    pub fn spawn(entry: &str, vars: &[(&str, &OsStr)]) -> Self {
        let mut command = Command::new(std::env::current_exe().expect("the test binary"));
        command
            .args([entry, "--exact", "--nocapture", "--test-threads=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (key, value) in vars {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the child starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// The rest of the next line that contains `tag`, after it; panics if
    /// the child ends first.
    pub fn expect(&mut self, tag: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).expect("reading the child");
            assert!(n > 0, "the child exited before saying {tag:?}");
            // libtest may print "test <entry> ... " before it.
            if let Some(at) = line.find(tag) {
                return line[at + tag.len()..].trim().to_owned();
            }
        }
    }

    /// Send the child one line.
    pub fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("writing to the child");
        self.stdin.flush().expect("flushing");
    }

    /// Kill the child with SIGKILL and reap it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
