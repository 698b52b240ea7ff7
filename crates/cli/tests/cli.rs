//! The `spectask` binary as a user runs it: help text, zero-configuration start, and durability
//! across a SIGKILL on both databases, and no agent process outliving a killed server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use spectask_testkit::{
    FakeOpenAi, FakeReply, TREE_VAR, TestDatabase, agent_tree, process_state, wait_for_agent_tree,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_spectask");

fn command(cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("SPECTASK_BIND")
        .env_remove("SPECTASK_DATA_DIR")
        .env_remove("SPECTASK_WORKSPACE_ROOT")
        .env_remove("SPECTASK_API_TOKEN")
        .env_remove("SPECTASK_ALLOWED_HOSTS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts `spectask serve` on a free port; returns the process and its base URL.
async fn start(cwd: &Path, extra: &[&str]) -> (Child, String) {
    start_on(cwd, "127.0.0.1:0", extra).await
}

/// Starts `spectask serve` on `bind`; returns the process and its base URL (on loopback).
async fn start_on(cwd: &Path, bind: &str, extra: &[&str]) -> (Child, String) {
    let mut cmd = command(cwd);
    cmd.args(["--log-json", "serve", "--bind", bind])
        .args(extra);
    let mut child = cmd.spawn().expect("spawn spectask");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut tx = Some(tx);
        // Keep draining so the child never blocks on a full pipe.
        while let Ok(Some(line)) = lines.next_line().await {
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
    let addr = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("server did not start in time")
        .expect("server exited before listening");
    let port = addr.rsplit(':').next().unwrap_or_default();
    (child, format!("http://127.0.0.1:{port}"))
}

fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_explains_every_option() {
    let top = help(&["--help"]);
    assert!(top.contains("serve") && top.contains("--log"), "{top}");
    let serve = help(&["serve", "--help"]);
    for needle in [
        "--bind",
        "SPECTASK_BIND",
        "127.0.0.1:8080",
        "--data-dir",
        "SPECTASK_DATA_DIR",
        ".spectask",
        "--database-url",
        "DATABASE_URL",
        "postgres://",
        "--workspace-root",
        "--db-max-connections",
        "--api-token",
        "SPECTASK_API_TOKEN",
        "--allowed-host",
        "SPECTASK_ALLOWED_HOSTS",
    ] {
        assert!(
            serve.contains(needle),
            "serve --help lacks {needle}:\n{serve}"
        );
    }
}

#[tokio::test]
async fn zero_configuration_start_creates_a_sqlite_database() {
    let cwd = tempfile::tempdir().unwrap();
    let (mut child, base) = start(cwd.path(), &[]).await;
    let health: Value = reqwest::get(format!("{base}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["database"], "sqlite");
    assert!(cwd.path().join(".spectask/spectask.db").is_file());
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_wildcard_bind_without_a_token_does_not_start() {
    let cwd = tempfile::tempdir().unwrap();
    for bind in ["0.0.0.0:0", "[::]:0"] {
        let out = command(cwd.path())
            .args(["serve", "--bind", bind, "--data-dir", "data"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{bind}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("without an API token") && stderr.contains("--api-token"),
            "{stderr}"
        );
        assert!(!stderr.contains("spectask listening"), "{stderr}");
        // It stopped before anything was opened: no database, no generated token.
        assert!(!cwd.path().join("data/spectask.db").exists());
        assert!(!cwd.path().join("data/api-token").exists());
    }
}

#[tokio::test]
async fn a_wildcard_bind_with_a_token_serves_and_requires_it() {
    let cwd = tempfile::tempdir().unwrap();
    let token = "a-token-for-this-test-0123456789";
    let (mut child, base) = start_on(cwd.path(), "0.0.0.0:0", &["--api-token", token]).await;
    let client = reqwest::Client::new();
    let list = format!("{base}/api/v1/spec-tasks");
    let refused = client.get(&list).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    let wrong = client.get(&list).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    let served = client.get(&list).bearer_auth(token).send().await.unwrap();
    assert_eq!(served.status(), reqwest::StatusCode::OK);
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_generated_token_is_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let cwd = tempfile::tempdir().unwrap();
    let file = cwd.path().join(".spectask/api-token");
    let (mut child, base) = start(cwd.path(), &[]).await;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64, "256 bits as hex");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let client = reqwest::Client::new();
    let list = format!("{base}/api/v1/spec-tasks");
    // Optional on loopback, but a wrong one is refused.
    assert_eq!(
        client.get(&list).send().await.unwrap().status(),
        reqwest::StatusCode::OK
    );
    let wrong = client
        .get(&list)
        .bearer_auth("f".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    child.kill().await.unwrap();
    child.wait().await.unwrap();

    let (mut child, base) = start(cwd.path(), &[]).await;
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        token,
        "the token changed"
    );
    let served = client
        .get(format!("{base}/api/v1/spec-tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), reqwest::StatusCode::OK);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn bad_database_url_fails_with_a_clear_message() {
    let cwd = tempfile::tempdir().unwrap();
    let out = command(cwd.path())
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            "mysql://root@localhost/x",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unsupported database url"), "{stderr}");
}

/// Writes a mix of state, SIGKILLs the server, restarts it and compares everything.
async fn survives_sigkill(db: &TestDatabase, cwd: &Path, extra: &[&str]) {
    let client = reqwest::Client::new();
    let (mut child, base) = start(cwd, extra).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let task: Value = client
            .post(format!("{base}/api/v1/spec-tasks/from-prompt"))
            .json(&json!({"prompt": format!("task {i}"), "priority": if i % 2 == 0 { "high" } else { "low" }}))
            .send().await.unwrap().json().await.unwrap();
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    client
        .patch(format!("{base}/api/v1/spec-tasks/{}", ids[3]))
        .json(&json!({"name": "renamed"}))
        .send()
        .await
        .unwrap();
    client
        .post(format!("{base}/api/v1/spec-tasks/{}/archive", ids[4]))
        .send()
        .await
        .unwrap();
    client
        .delete(format!("{base}/api/v1/spec-tasks/{}", ids[5]))
        .send()
        .await
        .unwrap();
    let before: Value = client
        .get(format!("{base}/api/v1/spec-tasks?archived=all&limit=200"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events_before = db.store().await.last_event_id().await.unwrap();

    child.start_kill().unwrap(); // SIGKILL: no shutdown code runs.
    let status = child.wait().await.unwrap();
    assert!(!status.success());

    let (mut child, base) = start(cwd, extra).await;
    let after: Value = client
        .get(format!("{base}/api/v1/spec-tasks?archived=all&limit=200"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after, before);
    assert_eq!(after["total"], 19);
    let renamed: Value = client
        .get(format!("{base}/api/v1/spec-tasks/{}", ids[3]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "renamed");
    let deleted = client
        .get(format!("{base}/api/v1/spec-tasks/{}", ids[5]))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(
        db.store().await.last_event_id().await.unwrap(),
        events_before
    );
    // And it keeps working after the restart.
    let created = client
        .post(format!("{base}/api/v1/spec-tasks/from-prompt"))
        .json(&json!({"prompt": "after restart"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn sqlite_data_survives_sigkill_and_restart() {
    let db = TestDatabase::sqlite().await;
    let cwd = tempfile::tempdir().unwrap();
    let dir = db.sqlite_dir().unwrap();
    survives_sigkill(&db, cwd.path(), &["--data-dir", dir.to_str().unwrap()]).await;
}

#[tokio::test]
async fn postgres_data_survives_sigkill_and_restart() {
    let Some(db) = TestDatabase::postgres().await else {
        spectask_testkit::skip_postgres("cli::postgres_data_survives_sigkill_and_restart");
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let url = db.url().to_owned();
    survives_sigkill(&db, cwd.path(), &["--database-url", &url]).await;
}

fn planning_reply(title: &str) -> String {
    format!(
        "# Requirements: {title}\n\n1. WHEN asked THE SYSTEM SHALL answer.\n\n## Open Questions\n\n- None.\n\n\
         # Design: {title}\n\nSimple.\n\n# Implementation Plan: {title}\n\n- [ ] 1. Build it\n  - _Requirements: 1_\n"
    )
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Kills the server while the planner is streaming, restarts it, and expects the same turn to be
/// re-run in the same session: no second session, no lost task.
async fn planning_survives_sigkill(extra: &[&str]) {
    let fake = FakeOpenAi::start().await;
    fake.push(FakeReply::StreamThenHang {
        chunks: vec!["# Requirements: Partial\n\n".into(), "half of it".into()],
    });
    let base_url = fake.base_url();
    let mut args = vec![
        "--llm-base-url",
        base_url.as_str(),
        "--llm-model",
        "fake",
        "--llm-api-key",
        "k",
        "--turn-lease-secs",
        "2",
    ];
    args.extend_from_slice(extra);
    let cwd = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();

    let (mut child, base) = start(cwd.path(), &args).await;
    let task: Value = client
        .post(format!("{base}/api/v1/spec-tasks/from-prompt"))
        .json(&json!({"prompt": "Survive a crash while planning"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    let session = task["spec_session_id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let body = get_json(&client, format!("{base}/api/v1/sessions/{session}")).await;
        if body["interactions"][0]["response_message"]
            .as_str()
            .is_some_and(|t| t.contains("half of it"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "planner output never appeared: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    fake.push_text_reply(&planning_reply("Recovered"));
    let (mut child, base) = start(cwd.path(), &args).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let task = loop {
        let task = get_json(&client, format!("{base}/api/v1/spec-tasks/{id}")).await;
        if task["status"] == "spec_review" {
            break task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "planning did not resume: {task}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(task["spec_session_id"], session.as_str());
    assert_eq!(task["name"], "Recovered");
    let sessions = get_json(&client, format!("{base}/api/v1/spec-tasks/{id}/sessions")).await;
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        1,
        "exactly one planning session"
    );
    let session = get_json(&client, format!("{base}/api/v1/sessions/{session}")).await;
    let interactions = session["interactions"].as_array().unwrap();
    assert_eq!(interactions.len(), 1, "the same interaction was re-run");
    assert_eq!(
        interactions[0]["response_message"],
        planning_reply("Recovered"),
        "the partial output was discarded"
    );
    let turns = get_json(&client, format!("{base}/api/v1/spec-tasks/{id}/turns")).await;
    let turns = turns["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(
        (turns[0]["status"].clone(), turns[0]["attempts"].clone()),
        (json!("completed"), json!(2))
    );
    assert_eq!(fake.requests().len(), 2);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn sqlite_planning_resumes_after_sigkill() {
    planning_survives_sigkill(&[]).await;
}

#[tokio::test]
async fn postgres_planning_resumes_after_sigkill() {
    let Some(db) = TestDatabase::postgres().await else {
        spectask_testkit::skip_postgres("cli::postgres_planning_resumes_after_sigkill");
        return;
    };
    let url = db.url().to_owned();
    planning_survives_sigkill(&["--database-url", &url]).await;
}

/// A command the agent runs in the background that leaves three sleepers behind: one in a session
/// of its own (`setsid`), one immune to hangups (`nohup`), one plain, all orphaned at once.
const ESCAPEES: &str = "setsid sleep 600 >/dev/null 2>&1 & nohup sleep 600 >/dev/null 2>&1 & sleep 600 >/dev/null 2>&1 &";

/// How long a test waits for an agent tree to reach the state it expects.
const TREE_WAIT: Duration = Duration::from_secs(30);

/// How many of `processes` are the escapees' sleepers.
fn sleepers(processes: &[(u32, String)]) -> usize {
    processes.iter().filter(|(_, comm)| comm == "sleep").count()
}

/// A data directory whose `spectask.toml` names our test agent as profile `tree`: its planning
/// turn leaves the escapees running and then hangs. Every process of its tree carries `TREE_VAR`
/// set to the returned marker.
struct TreeSetup {
    cwd: tempfile::TempDir,
    workspace: tempfile::TempDir,
    marker: String,
}

impl TreeSetup {
    fn new() -> Option<Self> {
        let agent = spectask_testkit::require_test_agent()?;
        let cwd = tempfile::tempdir().unwrap();
        let workspace = tempfile::tempdir().unwrap();
        let data_dir = cwd.path().join(".spectask");
        std::fs::create_dir_all(&data_dir).unwrap();
        let script = cwd.path().join("script.json");
        let steps = json!({"steps": [
            {"kind": "run_command", "command": ESCAPEES, "ask_permission": false, "background": true},
            {"kind": "chunks", "count": 1},
            {"kind": "hang"},
        ]});
        std::fs::write(&script, steps.to_string()).unwrap();
        let marker = cwd.path().to_string_lossy().into_owned();
        let config = format!(
            "[agents.tree]\ncommand = '{agent}'\nenv = {{ SPECTASK_TEST_AGENT_SCRIPT_FILE = '{script}', {TREE_VAR} = '{marker}' }}\n",
            agent = agent.display(),
            script = script.display(),
        );
        std::fs::write(data_dir.join("spectask.toml"), config).unwrap();
        Some(Self {
            cwd,
            workspace,
            marker,
        })
    }

    fn run_dir(&self) -> std::path::PathBuf {
        self.cwd.path().join(".spectask/run/agents")
    }

    /// Starts planning with the agent and waits until the escapees run.
    async fn start_planning(&self, base: &str) {
        let client = reqwest::Client::new();
        let created = client
            .post(format!("{base}/api/v1/spec-tasks/from-prompt"))
            .json(&json!({
                "prompt": "Plan with an agent that leaves processes behind",
                "spec_agent": "tree",
                "project_path": self.workspace.path().to_str().unwrap(),
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), reqwest::StatusCode::CREATED);
        wait_for_agent_tree(&self.marker, "the escapees never ran", TREE_WAIT, |tree| {
            sleepers(tree) == 3
        })
        .await;
    }
}

/// No process of an agent's tree outlives a server killed with SIGKILL (no teardown code runs):
/// not the agent, not its children that left its process group and session.
async fn agent_trees_die_with_a_server_killed_by_sigkill(extra: &[&str]) {
    let Some(setup) = TreeSetup::new() else {
        return;
    };
    let (mut child, base) = start(setup.cwd.path(), extra).await;
    setup.start_planning(&base).await;

    child.start_kill().unwrap(); // SIGKILL: no shutdown code runs.
    child.wait().await.unwrap();
    wait_for_agent_tree(
        &setup.marker,
        "processes of the agent's tree outlived the killed server",
        TREE_WAIT,
        <[_]>::is_empty,
    )
    .await;
    let records = std::fs::read_dir(setup.run_dir()).unwrap().count();
    assert_eq!(records, 0, "the shim cleaned up and removed its record");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn sqlite_agent_trees_die_with_a_server_killed_by_sigkill() {
    agent_trees_die_with_a_server_killed_by_sigkill(&[]).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn postgres_agent_trees_die_with_a_server_killed_by_sigkill() {
    let Some(db) = TestDatabase::postgres().await else {
        spectask_testkit::skip_postgres(
            "cli::postgres_agent_trees_die_with_a_server_killed_by_sigkill",
        );
        return;
    };
    let url = db.url().to_owned();
    agent_trees_die_with_a_server_killed_by_sigkill(&["--database-url", &url]).await;
}

/// A shim killed with SIGKILL cannot clean up: what its agent started stays. The next `serve` on
/// the same data directory kills it at start-up, from the shim's record.
async fn the_next_server_reaps_what_a_killed_shim_left(extra: &[&str]) {
    let Some(setup) = TreeSetup::new() else {
        return;
    };
    let (mut child, base) = start(setup.cwd.path(), extra).await;
    setup.start_planning(&base).await;
    let records: Vec<_> = std::fs::read_dir(setup.run_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let record: Value = serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    let shim = record["shim_pid"].as_i64().unwrap().to_string();
    assert!(
        process_state(shim.parse().unwrap()).is_some(),
        "shim {shim} is not running"
    );

    // The shim first, then the server, so nothing is left to clean up after either.
    std::process::Command::new("kill")
        .args(["-KILL", &shim])
        .status()
        .unwrap();
    wait_for_agent_tree(
        &setup.marker,
        "the agent outlived its killed shim",
        TREE_WAIT,
        |tree| tree.iter().all(|(_, comm)| comm == "sleep"),
    )
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert_eq!(
        sleepers(&agent_tree(&setup.marker)),
        3,
        "nothing else killed the escapees"
    );

    let (mut child, _) = start(setup.cwd.path(), extra).await;
    wait_for_agent_tree(
        &setup.marker,
        "the restarted server did not reap the killed shim's processes",
        TREE_WAIT,
        <[_]>::is_empty,
    )
    .await;
    assert!(!records[0].exists(), "the reaped record was removed");
    child.kill().await.unwrap();
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn sqlite_the_next_server_reaps_what_a_killed_shim_left() {
    the_next_server_reaps_what_a_killed_shim_left(&[]).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn postgres_the_next_server_reaps_what_a_killed_shim_left() {
    let Some(db) = TestDatabase::postgres().await else {
        spectask_testkit::skip_postgres(
            "cli::postgres_the_next_server_reaps_what_a_killed_shim_left",
        );
        return;
    };
    let url = db.url().to_owned();
    the_next_server_reaps_what_a_killed_shim_left(&["--database-url", &url]).await;
}

/// Polls `check` until it yields a value (see [`spectask_testkit::wait_until`]).
async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    spectask_testkit::wait_until(what, check).await
}

/// An implementation turn interrupted by a SIGKILL of the server is re-run, and our test agent
/// repeats what it did through spectask's tools (a spawn, a progress report): the repeats change
/// nothing, one spawned session exists, and the re-run prompt names what the first attempt did.
async fn agent_side_effects_happen_once_across_a_sigkill(extra: &[&str]) {
    let Some(agent) = spectask_testkit::require_test_agent() else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let data_dir = cwd.path().join(".spectask");
    std::fs::create_dir_all(&data_dir).unwrap();
    // The agent's state and request log are its state directory: writable in its sandbox.
    let agent_state = cwd.path().join("agent-state");
    std::fs::create_dir_all(&agent_state).unwrap();
    let agent_log = agent_state.join("agent.jsonl");
    let tool = |name: &str, arguments: Value| json!({"kind": "call_mcp_tool", "server": "spectask", "tool": name, "arguments": arguments});
    let spawn = tool(
        "spawn_work_session",
        json!({"name": "Security audit", "description": "Audit what was written."}),
    );
    let report = tool(
        "report_progress",
        json!({"task_key": "1", "status": "in_progress", "note": "started"}),
    );
    let script = json!({
        "steps": [{"kind": "chunks", "count": 1}],
        "rules": [
            // The first attempt (counted in the agent's state directory, across restarts) acts,
            // then works on until the server is killed; the re-run repeats it all and ends.
            {"prompt_contains": "Task 1:", "times": 1, "steps": [spawn, report, {"kind": "hang"}]},
            {"prompt_contains": "Task 1:", "steps": [spawn, report, {"kind": "chunks", "count": 1}]},
        ],
    });
    let config = format!(
        "default_agent = \"test\"\n\n[agents.test]\ncommand = '{agent}'\n\
         env = {{ SPECTASK_TEST_AGENT_SCRIPT = '{script}', SPECTASK_TEST_AGENT_STATE = '{state}', \
         SPECTASK_TEST_AGENT_LOG = '{log}' }}\nstate_dirs = ['{state}']\n",
        agent = agent.display(),
        state = agent_state.display(),
        log = agent_log.display(),
    );
    std::fs::write(data_dir.join("spectask.toml"), config).unwrap();
    let fake = FakeOpenAi::start().await;
    fake.push_text_reply(
        "# Requirements: Once\n\n1.1 WHEN re-run THE SYSTEM SHALL act once.\n\n## Open Questions\n\n- None.\n\n\
         # Design: Once\n\nIdempotent tools.\n\n# Implementation Plan: Once\n\n- [ ] 1. Write the first file\n",
    );
    let base_url = fake.base_url();
    let mut args = vec![
        "--llm-base-url",
        base_url.as_str(),
        "--llm-model",
        "fake",
        "--llm-api-key",
        "k",
        "--turn-lease-secs",
        "2",
    ];
    args.extend_from_slice(extra);
    let client = reqwest::Client::new();

    let (mut child, base) = start(cwd.path(), &args).await;
    let created: Value = client
        .post(format!("{base}/api/v1/spec-tasks/from-prompt"))
        .json(&json!({"prompt": "Act once", "project_path": workspace.path().to_str().unwrap()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    wait_for("the specs", || {
        let (client, url) = (client.clone(), format!("{base}/api/v1/spec-tasks/{id}"));
        async move { (get_json(&client, url).await["status"] == "spec_review").then_some(()) }
    })
    .await;
    let approved = client
        .post(format!("{base}/api/v1/spec-tasks/{id}/approve-specs"))
        .json(&json!({"approved": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), reqwest::StatusCode::OK);
    // The first attempt spawned and reported, and is still at work.
    wait_for("the first attempt's spawn and report", || {
        let client = client.clone();
        let (sessions, events) = (
            format!("{base}/api/v1/spec-tasks/{id}/work-sessions"),
            format!("{base}/api/v1/spec-tasks/{id}/events?limit=1000"),
        );
        async move {
            let sessions = get_json(&client, sessions).await;
            let spawned = sessions["work_sessions"]
                .as_array()?
                .iter()
                .any(|s| s["name"] == "Security audit");
            let reported = get_json(&client, events).await["events"]
                .as_array()?
                .iter()
                .any(|e| e["kind"] == "agent.progress_reported");
            (spawned && reported).then_some(())
        }
    })
    .await;
    child.start_kill().unwrap(); // SIGKILL: no shutdown code runs.
    child.wait().await.unwrap();

    let (mut child, base) = start(cwd.path(), &args).await;
    let sessions = wait_for("the re-run turn to complete its session", || {
        let (client, url) = (
            client.clone(),
            format!("{base}/api/v1/spec-tasks/{id}/work-sessions"),
        );
        async move {
            let sessions = get_json(&client, url).await["work_sessions"]
                .as_array()?
                .clone();
            sessions
                .iter()
                .any(|s| s["parent_work_session_id"].is_null() && s["status"] == "completed")
                .then_some(sessions)
        }
    })
    .await;
    let audits = sessions
        .iter()
        .filter(|s| s["name"] == "Security audit")
        .count();
    assert_eq!(
        audits, 1,
        "the repeated spawn found the first one: {sessions:?}"
    );
    let events = get_json(
        &client,
        format!("{base}/api/v1/spec-tasks/{id}/events?limit=1000"),
    )
    .await;
    let events = events["events"].as_array().unwrap();
    let count = |kind: &str| events.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(
        count("agent.progress_reported"),
        1,
        "the repeated report wrote nothing"
    );

    // The agent was told what its first attempt had done, read from the store.
    let log = std::fs::read_to_string(&agent_log).unwrap();
    let prompts: Vec<String> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["method"] == "session/prompt")
        .filter_map(|record| record["prompt"].as_str().map(str::to_owned))
        .filter(|prompt| prompt.contains("Task 1:"))
        .collect();
    assert_eq!(
        prompts.len(),
        2,
        "one first attempt, one re-run: {prompts:?}"
    );
    let rerun = &prompts[1];
    assert!(rerun.contains("was interrupted"), "{rerun}");
    assert!(
        rerun.contains("- spawned the work session \"Security audit\""),
        "{rerun}"
    );
    assert!(
        rerun.contains("- reported task 1 as in_progress"),
        "{rerun}"
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn sqlite_agent_side_effects_happen_once_across_a_sigkill() {
    agent_side_effects_happen_once_across_a_sigkill(&[]).await;
}

#[tokio::test]
async fn postgres_agent_side_effects_happen_once_across_a_sigkill() {
    let Some(db) = TestDatabase::postgres().await else {
        spectask_testkit::skip_postgres(
            "cli::postgres_agent_side_effects_happen_once_across_a_sigkill",
        );
        return;
    };
    let url = db.url().to_owned();
    agent_side_effects_happen_once_across_a_sigkill(&["--database-url", &url]).await;
}

/// One `serve` per data directory: a second one refuses to start with a clear message, and the
/// first keeps serving.
#[tokio::test]
async fn a_second_serve_on_the_same_data_directory_refuses_to_start() {
    let cwd = tempfile::tempdir().unwrap();
    let (mut first, base) = start(cwd.path(), &[]).await;
    let second = command(cwd.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("is in use by process"), "{stderr}");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert!(
        health.status().is_success(),
        "the first server goes on serving"
    );
    first.kill().await.unwrap();
}
