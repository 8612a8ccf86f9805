//! The latency- and fault-adding proxy (emulator/proxy.py) in front of an emulator, on
//! 127.0.0.1; stopped when dropped.

use super::emulator::root;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running proxy.
pub struct Proxy {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Proxy {
    /// Starts a proxy to `upstream` with extra arguments (`--delay-ms 30`, `--fail-rate 0.2`…).
    pub fn start(upstream: &str, args: &[&str]) -> Proxy {
        let mut child = Command::new(root().join(".venv/bin/python"))
            .arg(root().join("emulator/proxy.py"))
            .args(["--upstream", upstream, "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the proxy");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the proxy's first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected proxy output: {line:?}"))
            .to_string();
        Proxy { child, url }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
