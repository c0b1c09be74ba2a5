//! The real `rampart` binary in tests: run operator commands, start `serve` (optionally under
//! a low open-file limit) and stop it by SIGTERM or SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_rampart");

/// A `rampart serve` process, killed when dropped.
pub struct Server {
    pub child: Child,
    /// The address it listens on, from its "rampart is serving" log line.
    pub addr: String,
    /// Its log file (JSON lines, debug level).
    pub log: PathBuf,
}

/// Runs an operator command with `--json` output and returns what it printed.
pub fn cli(data: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RAMPART_DATA_DIR", data)
        .envs(extra_env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rampart {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed non-JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Starts `rampart serve` on a free loopback port over `data` and waits until it serves.
pub fn start(data: &Path, extra_env: &[(&str, &str)]) -> Server {
    start_limited(data, extra_env, None)
}

/// [`start`] with the open-file limit set first: `Some((soft, hard))`, as `ulimit -Sn` /
/// `ulimit -Hn` would.
pub fn start_limited(
    data: &Path,
    extra_env: &[(&str, &str)],
    open_files: Option<(u64, u64)>,
) -> Server {
    let log = data.with_extension("log");
    let file = std::fs::File::create(&log).unwrap();
    let mut command = match open_files {
        None => Command::new(BIN),
        Some((soft, hard)) => {
            // The shell sets the limits and then becomes the server (same process id).
            let mut sh = Command::new("sh");
            sh.args([
                "-c",
                &format!("ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" \"$@\""),
                BIN,
            ]);
            sh
        }
    };
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RAMPART_DATA_DIR", data)
        .env("RAMPART_LOG_FORMAT", "json")
        .env("RAMPART_LOG", "debug")
        .envs(extra_env.iter().copied())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line)
                && v["fields"]["message"] == "rampart is serving"
            {
                let addr = v["fields"]["listen"].as_str().unwrap().to_owned();
                return Server { child, addr, log };
            }
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not start: {text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's JSON lines whose message contains `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| {
                v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(needle))
            })
            .collect()
    }

    /// Kills the server with SIGKILL, as a crash or the OOM killer would, and reaps it.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An organization on `plan` with its first workspace and an owner API key, made by the
/// operator CLI: (workspace id, key).
pub fn org_with_key(data: &Path, env: &[(&str, &str)], plan: &str) -> (String, String) {
    let org = cli(
        data,
        env,
        &[
            "admin",
            "create-org",
            "--name",
            "Acme",
            "--owner-email",
            "o@acme.example.com",
            "--plan",
            plan,
            "--json",
        ],
    );
    let ws = org["workspace_id"].as_str().unwrap().to_owned();
    let key = cli(
        data,
        env,
        &[
            "admin",
            "create-api-key",
            "--workspace",
            &ws,
            "--role",
            "owner",
            "--name",
            "k",
            "--json",
        ],
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    (ws, key)
}
