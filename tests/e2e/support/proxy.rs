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

/// The requests the proxy has logged so far (`--log FILE`), one JSON object each, in the order
/// their responses ended.
pub fn proxy_log(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until the proxy's log holds at least `count` requests for which `matches` holds
/// (a line is written once its response has been sent), and returns the log then; panics
/// after 60 s naming `what`.
pub fn wait_for_log(
    path: &std::path::Path,
    what: &str,
    count: usize,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let log = proxy_log(path);
        if log.iter().filter(|l| matches(l)).count() >= count {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} in the proxy's log within 60 s: {log:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Waits until the proxy has answered `count` requests whose action is `action`.
pub fn wait_for_action(
    path: &std::path::Path,
    action: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    wait_for_log(path, action, count, |l| l["action"] == action)
}
