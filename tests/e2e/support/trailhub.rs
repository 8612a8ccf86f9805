//! Running the `trailhub` binary as a user would, against one emulator, with a state
//! directory, an inventory, and an AWS config whose profiles act as each member account.

use super::{ARCHIVE, Emulator};
use std::path::PathBuf;
use std::process::Output;

/// One user's workplace: state directory, inventory file, AWS profiles.
pub struct Trailhub {
    /// The temporary directory holding everything.
    pub dir: tempfile::TempDir,
    /// The emulator's URL (or a proxy's).
    pub endpoint: String,
    /// A shared state URL (`s3://…`) used instead of the state directory.
    pub shared: Option<String>,
}

/// An inventory for `sources`, each reached through profile `acct-<id>` (so that the
/// recorder can tell accounts apart), with `extra` appended to `[source_defaults]`.
pub fn inventory(sources: &[String], extra: &str) -> String {
    let mut text = format!(
        "region = \"ap-northeast-1\"\n\n[archive]\naccount_id = \"{ARCHIVE}\"\n\n[source_defaults]\ntrail = \"Members\"\nprofile = \"acct-{{account_id}}\"\n{extra}\n"
    );
    for s in sources {
        text.push_str(&format!("\n[[source]]\naccount_id = \"{s}\"\n"));
    }
    text
}

impl Trailhub {
    /// A workplace against `emulator`, with profiles for `accounts` (and for any other
    /// 12-digit account named later through `profile_for`).
    pub fn new(emulator: &Emulator) -> Trailhub {
        Self::with_endpoint(&emulator.url)
    }

    /// A workplace against any endpoint (a proxy in front of the emulator).
    pub fn with_endpoint(endpoint: &str) -> Trailhub {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("aws-config"),
            "[default]\nregion = ap-northeast-1\n",
        )
        .expect("aws config");
        std::fs::write(dir.path().join("aws-credentials"), "").expect("aws credentials");
        Trailhub {
            dir,
            endpoint: endpoint.to_string(),
            shared: None,
        }
    }

    /// This workplace with `--state URL` (a shared state) instead of its state directory; its
    /// working copy is in its own HOME's cache, as another machine's would be.
    pub fn sharing(mut self, url: &str) -> Trailhub {
        self.shared = Some(url.to_string());
        self
    }

    /// Adds profiles `acct-<id>` acting as account `acts_as` (normally the same id).
    pub fn profile(&self, name_id: &str, acts_as: &str) {
        let path = self.dir.path().join("aws-credentials");
        let mut text = std::fs::read_to_string(&path).expect("read credentials");
        text.push_str(&format!(
            "[acct-{name_id}]\naws_access_key_id = {acts_as}\naws_secret_access_key = emulator\n\n"
        ));
        std::fs::write(path, text).expect("write credentials");
    }

    /// Profiles for every account of `accounts`, each acting as itself.
    pub fn profiles(&self, accounts: &[String]) {
        for a in accounts {
            self.profile(a, a);
        }
    }

    /// Writes the inventory file and returns its path.
    pub fn write_inventory(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("inventory.toml");
        std::fs::write(&path, text).expect("write inventory");
        path
    }

    /// The state directory.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A `trailhub` command with this workplace's environment.
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trailhub"));
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", ARCHIVE)
            .env("AWS_SECRET_ACCESS_KEY", "emulator")
            .env("AWS_REGION", "ap-northeast-1")
            .env("AWS_CONFIG_FILE", self.dir.path().join("aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env(
                "TRAILHUB_STATE",
                self.shared
                    .clone()
                    .unwrap_or_else(|| self.state().display().to_string()),
            )
            .env("TRAILHUB_RETRY_INITIAL_MS", "20")
            .env("TRAILHUB_CONSISTENCY_MS", "20")
            .env("CI", "1");
        cmd
    }

    /// Runs `trailhub ARGS` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run trailhub")
    }

    /// Runs `trailhub ARGS` and asserts its exit code; returns stdout and stderr.
    pub fn expect(&self, args: &[&str], code: i32) -> (String, String) {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "trailhub {args:?} exited {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status.code()
        );
        (stdout, stderr)
    }

    /// The JSON lines of `trailhub --output json ARGS` (exit code as given).
    pub fn json(&self, args: &[&str], code: i32) -> Vec<serde_json::Value> {
        let mut full = vec!["--output", "json"];
        full.extend_from_slice(args);
        let (stdout, _) = self.expect(&full, code);
        stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}
