//! Shared set-up for the binary tests: the `spectask` command with a clean environment, a
//! server started on a free port, and each SIGKILL scenario run on both databases.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_spectask");

pub fn command(cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    without_spectask_env(&mut cmd);
    cmd.current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Removes the variables a developer's shell may set that would change how `spectask` runs.
pub fn without_spectask_env(cmd: &mut Command) {
    for var in [
        "DATABASE_URL",
        "SPECTASK_BIND",
        "SPECTASK_DATA_DIR",
        "SPECTASK_WORKSPACE_ROOT",
        "SPECTASK_API_TOKEN",
        "SPECTASK_ALLOWED_HOSTS",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
}

/// Makes `<cwd>/.spectask/spectask.toml` name our scripted ACP test agent (`agent`) as profile
/// `test`, the default agent, under the `ask` permission policy, running `script` (written to
/// `<cwd>/script.json`, which the agent re-reads every turn).
pub fn configure_test_agent(cwd: &Path, agent: &Path, script: &Value) {
    let data_dir = cwd.join(".spectask");
    std::fs::create_dir_all(&data_dir).unwrap();
    let script_file = cwd.join("script.json");
    std::fs::write(&script_file, script.to_string()).unwrap();
    std::fs::write(
        data_dir.join("spectask.toml"),
        format!(
            "default_agent = 'test'\n[agents.test]\ncommand = '{agent}'\npermission_policy = 'ask'\n\
             env = {{ SPECTASK_TEST_AGENT_SCRIPT_FILE = '{script}' }}\n",
            agent = agent.display(),
            script = script_file.display(),
        ),
    )
    .unwrap();
}

/// Starts `spectask serve` on a free port; returns the process and its base URL.
pub async fn start(cwd: &Path, extra: &[&str]) -> (Child, String) {
    start_on(cwd, "127.0.0.1:0", extra).await
}

/// Starts `spectask serve` on `bind`; returns the process and its base URL (on loopback).
pub async fn start_on(cwd: &Path, bind: &str, extra: &[&str]) -> (Child, String) {
    start_command(command(cwd), bind, extra).await
}

/// Starts `spectask serve` on `bind` from `cmd` (see [`command`]); returns the process and its
/// base URL (on loopback).
pub async fn start_command(mut cmd: Command, bind: &str, extra: &[&str]) -> (Child, String) {
    cmd.args(["--log-json", "serve", "--bind", bind])
        .args(extra);
    let mut child = cmd.spawn().expect("spawn spectask");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // What the server said before listening, for the failure message if it never does.
    let early = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let early_lines = early.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut tx = Some(tx);
        // Keep draining so the child never blocks on a full pipe.
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.is_some()
                && let Ok(mut early) = early_lines.lock()
                && early.len() < 200
            {
                early.push(line.clone());
            }
            if let Ok(log) = serde_json::from_str::<Value>(&line)
                && log["fields"]["message"] == "spectask listening"
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(
                    log["fields"]["addr"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            } else if std::env::var_os("TEST_LOG").is_some() {
                eprintln!("{line}");
            }
        }
    });
    let said = || early.lock().map(|l| l.join("\n")).unwrap_or_default();
    let addr = match tokio::time::timeout(Duration::from_secs(30), rx).await {
        Ok(Ok(addr)) => addr,
        Ok(Err(_)) => panic!("server exited before listening; it said:\n{}", said()),
        Err(_) => panic!("server did not start in time; it said:\n{}", said()),
    };
    let port = addr.rsplit(':').next().unwrap_or_default();
    (child, format!("http://127.0.0.1:{port}"))
}

/// Posts `body` as JSON to `url` and returns the JSON answer.
pub async fn post_json(client: &reqwest::Client, url: String, body: &Value) -> Value {
    client
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The JSON answer to a GET of `url`.
pub async fn get_json(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Polls `check` until it yields a value (see [`spectask_testkit::wait_until`]).
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    spectask_testkit::wait_until(what, check).await
}

/// Defines the `sqlite_…` and `postgres_…` tests of one scenario, an `async fn(extra: &[&str])`
/// given the server's extra arguments: none on SQLite (the default in the data directory), and
/// `--database-url` of a fresh PostgreSQL database, skipped (saying so) without
/// `SPECTASK_TEST_DATABASE_URL`.
macro_rules! on_both_databases {
    ($(#[$meta:meta])* $scenario:ident: $sqlite:ident, $postgres:ident) => {
        $(#[$meta])*
        #[tokio::test]
        async fn $sqlite() {
            $scenario(&[]).await;
        }

        $(#[$meta])*
        #[tokio::test]
        async fn $postgres() {
            let Some(db) = spectask_testkit::TestDatabase::postgres().await else {
                spectask_testkit::skip_postgres(concat!(module_path!(), "::", stringify!($postgres)));
                return;
            };
            let url = db.url().to_owned();
            $scenario(&["--database-url", &url]).await;
        }
    };
}
pub(crate) use on_both_databases;
