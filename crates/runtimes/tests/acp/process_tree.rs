//! The agent's process tree: nothing it starts outlives a shutdown, its exit, or a killed shim.

use std::path::PathBuf;

use serde_json::{Value, json};
use spectask_runtimes::agent::AgentError;
use spectask_runtimes::agent::acp::{AcpProfile, AcpRuntime};
use spectask_runtimes::agent::{AgentRuntime, StopReason};
use spectask_test_doubles::ids::instance_id;
use spectask_test_doubles::process_tree::{TREE_VAR, agent_tree, wait_for_agent_tree};

use crate::support::{
    Fixture, LONG, agent_binaries, alive, request, require_agent, started, turn, wait_gone,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_drop_terminate_the_whole_process_group() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({"steps": [{"kind": "chunks", "count": 1}]});
    let mut profile = fixture.profile("sh", &script);
    profile.command = "/bin/sh".to_owned();
    // A launcher that leaves a grandchild behind, as `npx` does.
    profile.args = vec![
        "-c".to_owned(),
        r#"sleep 300 & echo $! >> "$PIDS"; exec "$AGENT_BIN""#.to_owned(),
    ];
    let pids = fixture.root().join("state/pids.txt");
    let profile = profile
        .with_env("PIDS", pids.to_str().unwrap())
        .with_env("AGENT_BIN", fixture.agent.to_str().unwrap());
    let read_pids = || -> Vec<u32> {
        std::fs::read_to_string(&pids)
            .unwrap()
            .lines()
            .map(|line| line.trim().parse().unwrap())
            .collect()
    };

    let runtime = AcpRuntime::new(vec![profile], Some("sh".into()), fixture.shim());
    started(&runtime, &fixture, "i1").await;
    let agent_pid = fixture.requests()[0].2 as u32;
    let sleeper = read_pids()[0];
    assert!(alive(agent_pid) && alive(sleeper));
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
    wait_gone(agent_pid, "the agent to end at shutdown").await;
    wait_gone(sleeper, "the agent's child to end at shutdown").await;

    started(&runtime, &fixture, "i2").await;
    let sleeper = read_pids()[1];
    assert!(alive(sleeper));
    drop(runtime);
    wait_gone(sleeper, "the agent's child to end with the runtime").await;
}

/// A command the agent runs in the background that leaves three sleepers behind: one in a session
/// of its own (`setsid`), one immune to hangups (`nohup`), one plain, all orphaned at once (the
/// shell exits), the way an agent's Bash commands leave processes.
const ESCAPEES: &str = "setsid sleep 600 >/dev/null 2>&1 & nohup sleep 600 >/dev/null 2>&1 & sleep 600 >/dev/null 2>&1 &";

/// Waits (30 s at most) until `done` holds for the tree tagged `marker`.
async fn wait_for_tree(marker: &str, what: &str, done: impl Fn(&[(u32, String)]) -> bool) {
    wait_for_agent_tree(marker, what, LONG, done).await;
}

fn sleepers(processes: &[(u32, String)]) -> usize {
    processes.iter().filter(|(_, comm)| comm == "sleep").count()
}

/// The test agent with `steps`, its tree tagged with a marker unique to the fixture.
fn tree_profile(fixture: &Fixture, steps: &Value) -> (AcpProfile, String) {
    let marker = fixture.root().to_string_lossy().into_owned();
    let profile = fixture
        .profile("test", &json!({ "steps": steps }))
        .with_env(TREE_VAR, &marker);
    (profile, marker)
}

/// Starts an instance whose first turn leaves the escapees running, and waits until they run.
async fn tree_with_escapees(fixture: &Fixture, then: Value) -> (AcpRuntime, String, String) {
    let steps = json!([
        {"kind": "run_command", "command": ESCAPEES, "ask_permission": false, "background": true},
        {"kind": "chunks", "count": 1},
        then,
    ]);
    let (profile, marker) = tree_profile(fixture, &steps);
    let runtime = AcpRuntime::new(vec![profile], Some("test".into()), fixture.shim());
    let thread = started(&runtime, fixture, "i1").await;
    (runtime, thread, marker)
}

/// An instance whose first turn has ended, leaving the escapees running.
async fn escapees_left_running(fixture: &Fixture) -> (AcpRuntime, String) {
    let (runtime, thread, marker) = tree_with_escapees(fixture, json!({"kind": "stop"})).await;
    let (result, _) = turn(&runtime, &request("i1", &thread, "t", "go")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));
    wait_for_tree(&marker, "the escapees never ran", |tree| {
        sleepers(tree) == 3
    })
    .await;
    (runtime, marker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_shutdown_leaves_no_process_of_the_agents_tree() {
    let fixture = Fixture::new(require_agent!());
    let (runtime, marker) = escapees_left_running(&fixture).await;

    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
    wait_for_tree(
        &marker,
        "processes of the agent's tree outlived its shutdown",
        <[_]>::is_empty,
    )
    .await;
    let records: Vec<_> = std::fs::read_dir(fixture.run_dir()).unwrap().collect();
    assert!(records.is_empty(), "the shim left its record: {records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_tree_goes_when_the_agent_exits() {
    let fixture = Fixture::new(require_agent!());
    let (runtime, thread, marker) =
        tree_with_escapees(&fixture, json!({"kind": "crash", "exit_code": 3})).await;
    let (result, _) = turn(&runtime, &request("i1", &thread, "t", "go")).await;
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );
    wait_for_tree(
        &marker,
        "processes of the agent's tree outlived the agent",
        <[_]>::is_empty,
    )
    .await;
    assert_eq!(runtime.take_lost_instances().len(), 1);
}

/// The shim run by hand, as the server runs it: it exits as its agent did (code or signal), and
/// removes its record.
#[test]
fn the_shim_exits_with_its_agents_status() {
    let Some(binaries) = agent_binaries() else {
        spectask_test_doubles::skip(
            spectask_test_doubles::Tier::Agent,
            "build `spectask` (the agent shim) into this target directory",
        );
        return;
    };
    let fixture = Fixture::new(binaries);
    let run = |script: &str| {
        let plan = json!({
            "instance_id": "i1",
            "server_pid": std::process::id(),
            "run_dir": fixture.run_dir(),
            "grace_ms": 2000,
        });
        std::process::Command::new(&fixture.shim)
            .args([
                "agent-shim",
                "--plan",
                &plan.to_string(),
                "--",
                "/bin/sh",
                "-c",
                script,
            ])
            .status()
            .unwrap()
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(run("exit 3").code(), Some(3));
    assert_eq!(run("kill -TERM $$").signal(), Some(15));
    assert_eq!(std::fs::read_dir(fixture.run_dir()).unwrap().count(), 0);
    let bad = std::process::Command::new(&fixture.shim)
        .args(["agent-shim", "--plan", "{}", "--", "/bin/true"])
        .status()
        .unwrap();
    assert_eq!(bad.code(), Some(2), "an unusable plan is a usage error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_kills_what_a_killed_shim_left_behind() {
    let fixture = Fixture::new(require_agent!());
    let (runtime, marker) = escapees_left_running(&fixture).await;

    // The one thing the shim cannot survive to clean up after.
    let records: Vec<PathBuf> = std::fs::read_dir(fixture.run_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let record: Value = serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    let shim = record["shim_pid"].as_i64().unwrap();
    assert!(
        agent_tree(&marker)
            .iter()
            .any(|(pid, _)| i64::from(*pid) == shim)
    );
    std::process::Command::new("kill")
        .args(["-KILL", &shim.to_string()])
        .status()
        .unwrap();
    wait_for_tree(&marker, "the agent outlived its killed shim", |tree| {
        tree.iter().all(|(_, comm)| comm == "sleep")
    })
    .await;
    assert_eq!(
        sleepers(&agent_tree(&marker)),
        3,
        "nothing else killed the escapees"
    );

    let report = spectask_runtimes::agent::shim::reap(&fixture.run_dir()).unwrap();
    assert_eq!(report.records, 1);
    assert!(report.killed >= 3, "{report:?}");
    wait_for_tree(
        &marker,
        "the reaper left processes of the tree",
        <[_]>::is_empty,
    )
    .await;
    assert_eq!(std::fs::read_dir(fixture.run_dir()).unwrap().count(), 0);
    drop(runtime);
}
