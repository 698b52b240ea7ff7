//! No process of an agent's tree outlives a server killed with SIGKILL, or a killed shim.

use std::time::Duration;

use serde_json::{Value, json};
use spectask_testkit::{TREE_VAR, agent_tree, process_state, wait_for_agent_tree};

use crate::support::{on_both_databases, start};

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

on_both_databases! {
    #[cfg(target_os = "linux")]
    agent_trees_die_with_a_server_killed_by_sigkill:
        sqlite_agent_trees_die_with_a_server_killed_by_sigkill,
        postgres_agent_trees_die_with_a_server_killed_by_sigkill
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

on_both_databases! {
    #[cfg(target_os = "linux")]
    the_next_server_reaps_what_a_killed_shim_left:
        sqlite_the_next_server_reaps_what_a_killed_shim_left,
        postgres_the_next_server_reaps_what_a_killed_shim_left
}
