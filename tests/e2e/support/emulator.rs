//! The patched moto server (emulator/server.py) for one test, and SDK clients that act as a
//! given account (a 12-digit access key id acts as that account: the emulator's patch e).

use super::recorder::{Request, parse_recording};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running emulator; stopped when dropped.
pub struct Emulator {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The server's working directory (where moto writes its recording); removed on drop.
    _dir: tempfile::TempDir,
    /// The runtime the SDK reads run on.
    pub rt: tokio::runtime::Runtime,
}

/// The project's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Emulator {
    /// Starts an emulator on a free port.
    pub fn start() -> Emulator {
        let python = root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "the emulator is not installed: run scripts/setup-emulator (scripts/test does)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(&python)
            .arg(root().join("emulator/server.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the emulator");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the emulator's first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected emulator output: {line:?}"))
            .to_string();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        Emulator {
            child,
            url,
            _dir: dir,
            rt,
        }
    }

    /// The SDK configuration of `account`. Its HTTP client is given: the SDK crates have no
    /// default one (trailhub builds its own, see the root Cargo.toml), and the emulator is plain
    /// HTTP on loopback.
    pub fn config(&self, account: &str) -> SdkConfig {
        self.config_in(account, "ap-northeast-1")
    }

    /// The SDK configuration of `account` in `region`.
    pub fn config_in(&self, account: &str, region: &str) -> SdkConfig {
        let creds =
            aws_credential_types::Credentials::new(account, "emulator", None, None, "tests");
        self.rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(region.to_string()))
                .endpoint_url(&self.url)
                .credentials_provider(creds)
                .http_client(aws_smithy_http_client::Builder::new().build_http())
                .load(),
        )
    }

    /// S3 as `account` in `region` (path-style).
    pub fn s3_in(&self, account: &str, region: &str) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.config_in(account, region))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// KMS as `account` in `region`.
    pub fn kms_in(&self, account: &str, region: &str) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.config_in(account, region))
    }

    /// CloudTrail as `account` in `region`.
    pub fn cloudtrail_in(&self, account: &str, region: &str) -> aws_sdk_cloudtrail::Client {
        aws_sdk_cloudtrail::Client::new(&self.config_in(account, region))
    }

    /// S3 as `account` (path-style).
    pub fn s3(&self, account: &str) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.config(account))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// IAM as `account`.
    pub fn iam(&self, account: &str) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.config(account))
    }

    /// CloudFormation as `account`.
    pub fn cfn(&self, account: &str) -> aws_sdk_cloudformation::Client {
        aws_sdk_cloudformation::Client::new(&self.config(account))
    }

    /// CloudTrail as `account`.
    pub fn cloudtrail(&self, account: &str) -> aws_sdk_cloudtrail::Client {
        aws_sdk_cloudtrail::Client::new(&self.config(account))
    }

    /// Creates a member account as the article presupposes it: its CloudTrail bucket
    /// (SSE-S3) and a logging trail `Members` writing to it.
    pub fn seed_source(&self, account: &str) {
        self.seed_bucket(account);
        let trail = self.cloudtrail(account);
        let bucket = super::source_bucket(account);
        self.rt.block_on(async {
            trail
                .create_trail()
                .name("Members")
                .s3_bucket_name(&bucket)
                .send()
                .await
                .expect("create trail");
            trail
                .start_logging()
                .name("Members")
                .send()
                .await
                .expect("start logging");
        });
    }

    /// Creates only the member account's CloudTrail bucket.
    pub fn seed_bucket(&self, account: &str) {
        let s3 = self.s3(account);
        let bucket = super::source_bucket(account);
        self.rt.block_on(async {
            s3.create_bucket()
                .bucket(&bucket)
                .create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(
                            aws_sdk_s3::types::BucketLocationConstraint::ApNortheast1,
                        )
                        .build(),
                )
                .send()
                .await
                .expect("create source bucket");
        });
    }

    /// Seeds many accounts.
    pub fn seed_sources(&self, accounts: &[String]) {
        for a in accounts {
            self.seed_source(a);
        }
    }

    fn moto_api(&self, path: &str) -> (u16, Vec<u8>) {
        http_get(&self.url, path)
    }

    /// The emulator's replication log (emulator/server.py, patch q) of `bucket` (source or
    /// destination), once every replication queued before the call has its outcome: one event
    /// per (source object version, rule), oldest first.
    pub fn replication_log(&self, bucket: &str) -> Vec<serde_json::Value> {
        let (status, body) = http_get_timeout(
            &self.url,
            &format!("/_emulator/replication?bucket={bucket}&wait=120"),
            Duration::from_secs(150),
        );
        assert_eq!(status, 200, "the replication log");
        let log: serde_json::Value = serde_json::from_slice(&body).expect("the log is JSON");
        assert_eq!(
            log["pending"], 0,
            "every replication has its outcome: {log}"
        );
        log["events"].as_array().cloned().unwrap_or_default()
    }

    /// Starts recording every request (and forgets earlier ones).
    pub fn start_recording(&self) {
        self.moto_api("/moto-api/recorder/reset-recording");
        let (status, _) = self.moto_api("/moto-api/recorder/start-recording");
        assert_eq!(status, 200, "start recording");
    }

    /// Stops recording and returns what was recorded, in order.
    pub fn stop_recording(&self) -> Vec<Request> {
        parse_recording(&self.stop_recording_raw())
    }

    /// Stops recording and returns moto's recording as it is (one JSON object per line).
    pub fn stop_recording_raw(&self) -> String {
        self.moto_api("/moto-api/recorder/stop-recording");
        let (status, body) = self.moto_api("/moto-api/recorder/download-recording");
        assert_eq!(status, 200, "download recording");
        String::from_utf8_lossy(&body).into_owned()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 GET, enough for moto's own API on 127.0.0.1.
pub fn http_get(base: &str, path: &str) -> (u16, Vec<u8>) {
    http_get_timeout(base, path, Duration::from_secs(30))
}

/// [`http_get`], waiting at most `timeout` for the answer.
pub fn http_get_timeout(base: &str, path: &str, timeout: Duration) -> (u16, Vec<u8>) {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host).expect("connect to the emulator");
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, raw[split + 4..].to_vec())
}

#[test]
fn the_recorder_keeps_one_request_per_line_under_concurrent_requests() {
    // moto writes a recorded request in two writes, and one over its 8 KB file buffer goes out
    // at once: without the emulator's lock (patch g in emulator/server.py) two large requests at
    // the same time shared a line (a CreateStack's template is that large), and the recording
    // no longer parsed. Requests with 12 KB bodies from 8 threads at once.
    let emu = Emulator::start();
    let host = emu.url.trim_start_matches("http://").to_string();
    emu.start_recording();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..25 {
                    let body = "a".repeat(12 * 1024);
                    let mut stream = TcpStream::connect(&host).expect("connect");
                    write!(
                        stream,
                        "POST / HTTP/1.0\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .expect("send");
                    let mut raw = Vec::new();
                    stream.read_to_end(&mut raw).expect("read");
                    assert!(raw.starts_with(b"HTTP/1."), "an HTTP response");
                }
            });
        }
    });
    let requests = emu.stop_recording();
    assert_eq!(requests.len(), 8 * 25);
}
