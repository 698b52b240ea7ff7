//! The OS sandbox end to end: a SpecTask implemented by our test agent, started by the real
//! server through the agent shim, whose granted shell commands try to write beside the workspace
//! (through an interpreter, a redirect, `cd ..`) and into `.git` internals. The policy grants
//! them (`allow_workspace_edits` grants commands while the sandbox is active); the kernel refuses
//! the writes, nothing outside changes, and the turn goes on. Runs on SQLite and PostgreSQL.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use spectask_testkit::{backend_tests, fast_engine, test_agent_profile};

use crate::support::{acp_runtime, app_with_runtime, approved_task, work_sessions};

const PLAN: &str = "# Requirements: Confined\n\n1.1 WHEN the agent runs commands THE SYSTEM SHALL keep \
                    them in the workspace.\n\n## Open Questions\n\n- None.\n\n# Design: Confined\n\n\
                    The sandbox.\n\n# Implementation Plan: Confined\n\n- [ ] 1. Run the commands\n";

/// Each command is granted by the policy; only `inside` may succeed.
const COMMANDS: [(&str, &str); 6] = [
    ("inside", "echo ok > inside.txt"),
    (
        "interpreter",
        "python3 -c \"open('../outside-python.txt','w').write('x')\"",
    ),
    ("redirect", "echo x > ../outside-redirect.txt"),
    ("cd", "cd .. && touch outside-cd.txt"),
    // Worded so that the policy's heuristic for commands naming `.git/hooks` does not refuse it
    // first: this is the kernel's refusal.
    (
        "hook",
        "cd .git && printf '#!/bin/sh\\nexit 0\\n' > hooks/pre-commit",
    ),
    ("git config", "git config core.hooksPath /tmp"),
];

fn script() -> Value {
    let mut steps: Vec<Value> = COMMANDS
        .iter()
        .map(|(_, command)| json!({"kind": "run_command", "command": command}))
        .collect();
    steps.push(json!({"kind": "chunks", "count": 1}));
    json!({
        "steps": [{"kind": "chunks", "count": 1}],
        "rules": [{"prompt_contains": "Task 1:", "steps": steps}],
    })
}

fn git(project: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(project)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

backend_tests! {
    async fn granted_commands_cannot_write_outside_the_workspace_or_into_git_internals(db) {
        // root/ holds the project and is where the escapes would land.
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        git(&project, &["init", "-q"]);
        let config_before = std::fs::read_to_string(project.join(".git/config")).unwrap();
        let state = tempfile::tempdir().unwrap();
        let Some(profile) = test_agent_profile("test-agent", &script(), state.path()) else { return };
        let runtime = Arc::new(acp_runtime(profile, state.path()));
        let (app, _planner) = app_with_runtime(db, runtime, fast_engine(), PLAN).await;
        let id = approved_task(&app, "run commands", &project).await;
        app.wait_for_task_status(&id, "implementation_review").await;

        let instance = app.get(&format!("/api/v1/spec-tasks/{id}/zed-instance")).await.body;
        assert_eq!(instance["sandbox"]["active"], json!(true), "{instance}");

        // The positive control ran: commands were granted and ran in the workspace.
        assert_eq!(std::fs::read_to_string(project.join("inside.txt")).unwrap(), "ok\n");
        // Nothing landed beside the workspace, and git's internals are unchanged.
        let mut beside: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        beside.sort();
        assert_eq!(beside, vec!["project".to_owned()], "nothing beside the workspace");
        assert!(!project.join(".git/hooks/pre-commit").exists(), "no hook planted");
        assert_eq!(std::fs::read_to_string(project.join(".git/config")).unwrap(), config_before);

        // Each escape was a granted command that failed, and the turn went on.
        let sessions = work_sessions(&app, &id).await;
        let ws = &sessions[0];
        assert_eq!(ws["status"], "completed", "{sessions:?}");
        let detail = app.get(&format!("/api/v1/work-sessions/{}", ws["id"].as_str().unwrap())).await.body;
        let session_id = detail["helix_session"]["id"].as_str().unwrap();
        let interaction_id = detail["helix_session"]["interactions"][0]["id"].as_str().unwrap();
        let entries = app
            .get(&format!("/api/v1/sessions/{session_id}/interactions/{interaction_id}/entries"))
            .await
            .body;
        let mut latest = std::collections::BTreeMap::new();
        for entry in entries["entries"].as_array().unwrap() {
            if entry["kind"] == "tool_call" && entry["payload"]["kind"] == "execute" {
                latest.insert(
                    entry["payload"]["title"].as_str().unwrap().to_owned(),
                    entry["payload"]["status"].as_str().unwrap().to_owned(),
                );
            }
        }
        for (what, command) in COMMANDS {
            let expected = if what == "inside" { "completed" } else { "failed" };
            assert_eq!(latest.get(command).map(String::as_str), Some(expected), "{what}: {entries}");
        }
    }
}
