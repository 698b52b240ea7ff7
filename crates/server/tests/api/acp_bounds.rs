//! Bounded agents through the whole server, with our scripted test agent as a real ACP process:
//! a single 100 MiB line from the agent ends that agent (the turn fails saying the line limit was
//! exceeded) while the server's memory stays bounded and it goes on serving; the agent of a
//! deleted or archived task is stopped; an idle instance is stopped and comes back on the next
//! dispatch. Runs on SQLite and PostgreSQL.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use spectask_engine::EngineSettings;
use spectask_runtimes::agent::acp::AgentLimits;
use spectask_testkit::{FakeOpenAi, TestApp, backend_tests, fast_engine, test_agent_profile};

use crate::support::{acp_runtime, app_with_runtime, approved_task, log_in, requests};

const MIB: u64 = 1024 * 1024;

fn plan(tasks: &[&str]) -> String {
    let items: String = tasks
        .iter()
        .enumerate()
        .map(|(i, title)| format!("- [ ] {}. {title}\n", i + 1))
        .collect();
    format!(
        "# Requirements: Bounds\n\n1.1 WHEN the agent misbehaves THE SYSTEM SHALL stay bounded.\n\n## Open Questions\n\n- None.\n\n\
         # Design: Bounds\n\nBound it.\n\n# Implementation Plan: Bounds\n\n{items}"
    )
}

/// A server whose ACP runtime runs the test agent with `script` under `limits`, and the fake
/// planner it plans with (kept alive by the caller).
async fn app_with_agent(
    db: spectask_testkit::TestDatabase,
    script: &Value,
    state: &Path,
    limits: AgentLimits,
    engine: EngineSettings,
    plan: &str,
) -> Option<(TestApp, FakeOpenAi)> {
    let profile = test_agent_profile("test-agent", script, state)?
        .with_env("SPECTASK_TEST_AGENT_LOG", log_in(state).to_str().unwrap());
    let runtime = Arc::new(acp_runtime(profile, state).with_limits(limits));
    Some(app_with_runtime(db, runtime, engine, plan).await)
}

/// The pids of the agent processes that received requests, in order of first appearance.
fn agent_pids(log: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for record in requests(log) {
        let pid = i32::try_from(record["pid"].as_i64().unwrap()).unwrap();
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether `pid` names a live process (a zombie counts as gone: it runs nothing).
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

async fn wait_until_gone(pid: i32, why: &str) {
    let what = format!("agent {pid} to stop after {why}");
    spectask_testkit::wait_until(&what, || async move { (!is_alive(pid)).then_some(()) }).await;
}

async fn wait_for_pids(log: &Path, count: usize) -> Vec<i32> {
    let what = format!("{count} agent processes");
    spectask_testkit::wait_until(&what, || async move {
        let pids = agent_pids(log);
        if pids.len() >= count {
            Ok(pids)
        } else {
            Err(format!("{pids:?}"))
        }
    })
    .await
}

/// `VmRSS` or `VmHWM` of this process (the one running the server), in bytes.
fn memory(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

backend_tests! {
    async fn a_hundred_mib_line_fails_the_turn_and_leaves_memory_and_the_server_intact(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let script = json!({
            "steps": [{"kind": "chunks", "count": 1}],
            "rules": [{"prompt_contains": "Task 1:", "times": 1,
                       "steps": [{"kind": "chunks", "count": 1}, {"kind": "long_line", "bytes": 100 * MIB}]}],
        });
        let limits = AgentLimits { max_line_bytes: usize::try_from(MIB).unwrap(), idle_timeout: None };
        let engine = EngineSettings { max_turn_retries: 0, ..fast_engine() };
        let Some((app, _planner)) = app_with_agent(db, &script, state.path(), limits, engine, &plan(&["Shout"])).await else {
            return;
        };
        let id = approved_task(&app, "stay bounded", workspace.path()).await;
        let rss_before = memory("VmRSS:");
        app.wait_for_task_status(&id, "implementation_failed").await;
        let peak = memory("VmHWM:");
        // Without the limit the line alone would be held whole (100 MiB, more with the buffer's
        // doubling); with it, the reader stops after 1 MiB. The margin covers the other backend's
        // test running in the same process.
        assert!(
            peak < rss_before + 48 * MIB,
            "peak RSS {} MiB, {} MiB before the line",
            peak / MIB,
            rss_before / MIB
        );

        let sessions = app.get(&format!("/api/v1/spec-tasks/{id}/work-sessions")).await.body;
        let ws = &sessions["work_sessions"][0];
        assert_eq!(ws["status"], "failed");
        let error = ws["error"].as_str().unwrap();
        assert!(error.contains("line longer than the limit of 1048576 bytes"), "{error}");
        let pids = agent_pids(&log_in(state.path()));
        wait_until_gone(pids[0], "its oversized line").await;

        // The server goes on serving: a read, then a new turn on a restarted agent.
        assert_eq!(app.get(&format!("/api/v1/spec-tasks/{id}")).await.status, 200);
        let sid = ws["id"].as_str().unwrap();
        let retried = app.post(&format!("/api/v1/work-sessions/{sid}/retry"), &json!({})).await;
        assert_eq!(retried.status, 200, "{:?}", retried.body);
        app.wait_for_task_status(&id, "implementation_review").await;
        let pids = agent_pids(&log_in(state.path()));
        assert_eq!(pids.len(), 2, "the retry ran on a new agent process: {pids:?}");
    }

    async fn the_agent_of_a_deleted_or_archived_task_is_stopped(db) {
        let workspace = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let log = log_in(state.path());
        // Every turn runs until cancelled: the agents are busy when their tasks go away.
        let script = json!({"steps": [{"kind": "hang"}]});
        let limits = AgentLimits { idle_timeout: None, ..AgentLimits::default() };
        let Some((app, planner)) = app_with_agent(db, &script, state.path(), limits, fast_engine(), &plan(&["Work"])).await else {
            return;
        };
        let deleted = approved_task(&app, "stay bounded", workspace.path()).await;
        let first = wait_for_pids(&log, 1).await[0];
        planner.push_text_reply(&plan(&["Work"]));
        let archived = approved_task(&app, "stay bounded", other.path()).await;
        let second = wait_for_pids(&log, 2).await[1];

        assert_eq!(app.delete(&format!("/api/v1/spec-tasks/{deleted}")).await.status, 204);
        wait_until_gone(first, "its task was deleted").await;
        assert!(is_alive(second), "the other task's agent keeps running");

        let response = app.post(&format!("/api/v1/spec-tasks/{archived}/archive"), &json!({})).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        wait_until_gone(second, "its task was archived").await;
    }

    async fn an_idle_instance_is_stopped_and_restarts_on_the_next_dispatch(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let log = log_in(state.path());
        let script = json!({"steps": [{"kind": "chunks", "count": 1}]});
        let limits = AgentLimits { idle_timeout: Some(Duration::from_millis(300)), ..AgentLimits::default() };
        let Some((app, _planner)) = app_with_agent(db, &script, state.path(), limits, fast_engine(), &plan(&["Idle"])).await else {
            return;
        };
        let id = approved_task(&app, "stay bounded", workspace.path()).await;
        app.wait_for_task_status(&id, "implementation_review").await;
        let first = wait_for_pids(&log, 1).await[0];
        wait_until_gone(first, "being idle").await;

        // Requested changes are a new turn on the same thread: the instance starts again and
        // resumes it.
        let sent = app.post(&format!("/api/v1/spec-tasks/{id}/request-changes"), &json!({"comment": "once more"})).await;
        assert_eq!(sent.status, 200, "{:?}", sent.body);
        app.wait_for_task_status(&id, "implementation_review").await;
        let pids = wait_for_pids(&log, 2).await;
        assert_ne!(pids[0], pids[1]);
        let requests = std::fs::read_to_string(&log).unwrap();
        assert!(requests.contains("session/load"), "the thread was resumed: {requests}");
    }
}
