//! The `spectask-test-server` binary as a process: it prints its address once, serves `/healthz`
//! on a fresh database, stops cleanly on SIGTERM, and comes back on the same database (and the
//! same dispatch log) after a SIGKILL. Also checks that `test_server_binary` finds it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use spectask_testkit::{TestDatabase, backend_tests, test_server_binary};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Bounds every wait, so a broken binary fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running test server process.
struct Process {
    child: Child,
    stdout: BufReader<ChildStdout>,
    base_url: String,
}

impl Process {
    async fn start(db: &TestDatabase, dispatch_log: &Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spectask-test-server"))
            .arg("--database-url")
            .arg(db.url())
            .arg("--dispatch-log")
            .arg(dispatch_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn spectask-test-server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        tokio::time::timeout(PATIENCE, stdout.read_line(&mut line))
            .await
            .expect("listening line in time")
            .expect("read stdout");
        let base_url = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        assert!(base_url.starts_with("http://127.0.0.1:"), "{base_url}");
        Process {
            child,
            stdout,
            base_url,
        }
    }

    async fn healthz(&self) -> reqwest::StatusCode {
        reqwest::get(format!("{}/healthz", self.base_url))
            .await
            .expect("GET /healthz")
            .status()
    }

    /// SIGTERM, then the exit status and whatever else it printed to stdout.
    async fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().expect("process still running");
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(kill.success());
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("exit in time after SIGTERM")
            .expect("wait");
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).await.unwrap();
        (status, rest)
    }

    /// SIGKILL, and wait until the process is gone.
    async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("exit in time after SIGKILL")
            .expect("wait");
    }
}

backend_tests! {
    async fn serves_healthz_and_stops_on_sigterm(db) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dispatch.jsonl");
        let server = Process::start(&db, &log).await;
        assert_eq!(server.healthz().await, reqwest::StatusCode::OK);
        let (status, rest) = server.terminate().await;
        assert!(status.success(), "{status:?}");
        assert_eq!(rest, "", "stdout carries only the listening line");
        assert!(log.is_file(), "the dispatch log is created on start");
    }

    async fn restarts_on_the_same_database_after_sigkill(db) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dispatch.jsonl");
        for _ in 0..3 {
            let server = Process::start(&db, &log).await;
            assert_eq!(server.healthz().await, reqwest::StatusCode::OK);
            server.kill().await;
        }
        let server = Process::start(&db, &log).await;
        assert_eq!(server.healthz().await, reqwest::StatusCode::OK);
        let (status, _) = server.terminate().await;
        assert!(status.success(), "{status:?}");
    }
}

#[tokio::test]
async fn rejects_a_malformed_script() {
    let db = TestDatabase::sqlite().await;
    let output = tokio::time::timeout(
        PATIENCE,
        Command::new(env!("CARGO_BIN_EXE_spectask-test-server"))
            .args([
                "--database-url",
                db.url(),
                "--script",
                r#"{"default":{"kind":"nope"}}"#,
            ])
            .output(),
    )
    .await
    .expect("exit in time")
    .expect("run spectask-test-server");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--script is not a Script"), "{stderr}");
}

#[test]
fn test_server_binary_finds_the_built_binary() {
    let found = test_server_binary().canonicalize().unwrap();
    let built = Path::new(env!("CARGO_BIN_EXE_spectask-test-server"))
        .canonicalize()
        .unwrap();
    assert_eq!(found, built);
}
