//! Git isolation end to end: a SpecTask on a real repository (`TestRepo`) implemented by our test
//! agent as a real process under the ACP runtime, with worktrees on. Each work session (four from
//! the plan, on two dependency levels, and one spawned by the first over MCP) runs its ACP session
//! in its own worktree, writes its own file there, is committed once and merged into the task
//! branch in dependency order; a dependant reads its dependencies' files in its own worktree. The
//! user's working tree, HEAD and branch are never touched, and approving the implementation
//! leaves no worktree and no session branch behind (the task branch stays). Runs on SQLite and
//! PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use spectask_testkit::{TestRepo, backend_tests, fast_engine, test_agent_profile};

use crate::support::{
    acp_runtime, app_with_runtime, approved_task, is_named, log_in, requests, with_method,
    work_sessions,
};

/// Plan: 1 and 2 independent, 3 depends on 1, 4 on 2 and 3.
fn plan() -> String {
    let tasks = [
        ("1", "Write one", ""),
        ("2", "Write two", ""),
        ("3", "Write three", "1"),
        ("4", "Write four", "2, 3"),
    ];
    let mut plan = String::new();
    for (key, title, deps) in tasks {
        plan.push_str(&format!("- [ ] {key}. {title}\n  - _Requirements: 1.1_\n"));
        if !deps.is_empty() {
            plan.push_str(&format!("  - Depends on: {deps}\n"));
        }
    }
    format!(
        "# Requirements: Files\n\n1.1 WHEN asked THE SYSTEM SHALL write files.\n\n## Open Questions\n\n- None.\n\n\
         # Design: Files\n\nOne file per task.\n\n# Implementation Plan: Files\n\n{plan}"
    )
}

fn write(path: &str, content: &str) -> Value {
    json!({"kind": "write_file", "path": path, "content": content})
}

fn read(path: &str) -> Value {
    json!({"kind": "read_file", "path": path})
}

/// Each session writes its own file; 1 also spawns the audit; dependants read their
/// dependencies' files first (the agent echoes each file's first line as a chunk).
fn script() -> Value {
    json!({
        "steps": [{"kind": "chunks", "count": 1}],
        "rules": [
            // First: a spawned session's prompt has no `Task N:` line of its own.
            {"prompt_contains": "Spawned during implementation", "steps": [
                write("audit.txt", "audit by the spawned session\n"),
                {"kind": "chunks", "count": 1},
            ]},
            {"prompt_contains": "Task 1:", "steps": [
                write("one.txt", "one from task 1\n"),
                {"kind": "call_mcp_tool", "server": "spectask", "tool": "spawn_work_session",
                 "arguments": {"name": "Audit", "description": "Audit what task 1 wrote."}},
                {"kind": "chunks", "count": 1},
            ]},
            {"prompt_contains": "Task 2:", "steps": [
                write("two.txt", "two from task 2\n"),
                {"kind": "chunks", "count": 1},
            ]},
            {"prompt_contains": "Task 3:", "steps": [
                read("one.txt"),
                write("three.txt", "three from task 3\n"),
                {"kind": "chunks", "count": 1},
            ]},
            {"prompt_contains": "Task 4:", "steps": [
                read("two.txt"),
                read("three.txt"),
                write("four.txt", "four from task 4\n"),
                {"kind": "chunks", "count": 1},
            ]},
        ],
    })
}

/// The payloads of the task's events of `kind`, in the order they were committed, each with the
/// entity it is about.
fn of_kind(events: &Value, kind: &str) -> Vec<(String, Value)> {
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| {
            (
                e["entity_id"].as_str().unwrap().to_owned(),
                e["payload"].clone(),
            )
        })
        .collect()
}

/// Where in `merged` (work session ids, in merge order) `ws` was merged.
fn merge_position(merged: &[String], ws: &str) -> usize {
    merged
        .iter()
        .position(|m| m == ws)
        .unwrap_or_else(|| panic!("{ws} was never merged: {merged:?}"))
}

fn canonical(path: &str) -> PathBuf {
    Path::new(path)
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(path))
}

backend_tests! {
    async fn five_sessions_work_in_their_own_worktrees_and_merge_in_dependency_order(db) {
        let repo = TestRepo::new();
        let worktrees = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let log = log_in(state.path());
        let Some(profile) = test_agent_profile("test-agent", &script(), state.path()) else { return };
        let profile = profile.with_env("SPECTASK_TEST_AGENT_LOG", log.to_str().unwrap());
        let runtime = Arc::new(acp_runtime(profile, state.path()));
        let mut engine = fast_engine();
        engine.turn_timeout = Duration::from_secs(60);
        engine.git.worktrees_dir = Some(worktrees.path().to_path_buf());
        let (app, _planner) = app_with_runtime(db, runtime, engine, &plan()).await;
        let user_head = repo.rev("HEAD");
        let id = approved_task(&app, "write five files", &repo.path()).await;
        app.wait_for_task_status(&id, "implementation_review").await;
        // The last merged worktree is removed right after its turn completed.
        let repo = &repo;
        app.wait_until("every merged worktree to be removed", |_| async move {
            let left = repo.linked_worktrees();
            if left.is_empty() { Ok(()) } else { Err(json!(left)) }
        })
        .await;

        // The task branch, made from the user's HEAD.
        let task = app.get(&format!("/api/v1/spec-tasks/{id}")).await.body;
        assert_eq!(task["isolation"], "worktree", "{task}");
        let branch = task["branch_name"].as_str().unwrap().to_owned();
        assert!(branch.starts_with("spectask/"), "{branch}");
        assert_eq!((task["base_branch"].as_str(), task["base_commit"].as_str()), (Some("main"), Some(user_head.as_str())), "{task}");
        assert_eq!(task["head_commit"].as_str(), Some(repo.rev(&branch).as_str()), "{task}");

        // Five sessions: four from the plan and the audit spawned by the first.
        let sessions = work_sessions(&app, &id).await;
        assert_eq!(sessions.len(), 5, "{sessions:?}");
        let mut by_name: BTreeMap<&str, Value> = BTreeMap::new();
        for (name, prefix) in [("1", "1."), ("2", "2."), ("3", "3."), ("4", "4."), ("audit", "Audit")] {
            let ws = sessions.iter().find(|s| is_named(s, prefix)).unwrap_or_else(|| panic!("no session {prefix}: {sessions:?}"));
            let detail = app.get(&format!("/api/v1/work-sessions/{}", ws["id"].as_str().unwrap())).await.body;
            by_name.insert(name, detail);
        }
        let ws_id = |name: &str| by_name[name]["work_session"]["id"].as_str().unwrap().to_owned();
        assert_eq!(by_name["audit"]["work_session"]["spawned_by_session_id"].as_str(), Some(ws_id("1").as_str()));

        // Five worktrees, each its own, one per session, under the task's directory.
        let events = app.get(&format!("/api/v1/spec-tasks/{id}/events?limit=1000")).await.body;
        assert_eq!(of_kind(&events, "spec_task.branch_created").len(), 1);
        let created = of_kind(&events, "work_session.worktree_created");
        assert_eq!(created.len(), 5, "{created:?}");
        let worktree_of: BTreeMap<String, String> = created
            .iter()
            .map(|(ws, payload)| (ws.clone(), payload["worktree_path"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(worktree_of.len(), 5, "one worktree per session: {created:?}");
        assert_eq!(worktree_of.values().collect::<BTreeSet<_>>().len(), 5, "five distinct paths: {created:?}");
        let task_dir = worktrees.path().canonicalize().unwrap().join(&id);
        for (ws, path) in &worktree_of {
            assert_eq!(canonical(path), task_dir.join(ws), "{created:?}");
        }

        // Each session's agent ran in its own worktree: the cwd of its ACP session.
        let logged = requests(&log);
        let cwd_of_acp_session: BTreeMap<String, String> = with_method(&logged, "session/new")
            .iter()
            .map(|r| (r["session_id"].as_str().unwrap().to_owned(), r["cwd"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(cwd_of_acp_session.len(), 5, "one ACP session per work session: {logged:?}");
        let threads = app.get(&format!("/api/v1/spec-tasks/{id}/zed-threads")).await.body;
        for thread in threads["zed_threads"].as_array().unwrap() {
            let ws = thread["work_session_id"].as_str().unwrap();
            let cwd = &cwd_of_acp_session[thread["zed_thread_id"].as_str().unwrap()];
            assert_eq!(canonical(cwd), canonical(&worktree_of[ws]), "the agent of {ws} ran in its own worktree");
        }

        // One commit per session, by spectask, named after its task; every worktree is gone.
        for (name, detail) in &by_name {
            let ws = &detail["work_session"];
            assert_eq!(ws["status"], "completed", "{detail}");
            let commits = ws["commits"].as_array().unwrap();
            assert_eq!(commits.len(), 1, "one commit for {name}: {ws}");
            assert_eq!(commits[0]["author"], "spectask <spectask@localhost>", "{ws}");
            if *name != "audit" {
                assert!(commits[0]["summary"].as_str().unwrap().starts_with(&format!("{name} Write ")), "{ws}");
            }
            let message = repo.git(&["log", "-1", "--format=%B", commits[0]["id"].as_str().unwrap()]);
            assert!(message.contains(&format!("Spectask-Work-Session: {}", ws["id"].as_str().unwrap())), "{message}");
            assert!(ws["branch_name"].as_str().unwrap().starts_with(&format!("{branch}--")), "{ws}");
            assert_eq!(ws["worktree_path"], Value::Null, "a merged worktree is removed: {ws}");
            assert_eq!((ws["merge_attempts"].as_i64(), ws["conflict_files"].as_array().map(Vec::len)), (Some(0), Some(0)), "{ws}");
            let head = ws["head_commit"].as_str().unwrap();
            assert!(repo.is_ancestor(head, &branch), "{name}'s work is on the task branch");
        }
        let commit_of = |name: &str| by_name[name]["work_session"]["commits"][0]["id"].as_str().unwrap().to_owned();

        // Merged in dependency order, each dependant built on its dependencies' commits.
        let merged: Vec<String> = of_kind(&events, "work_session.merged").into_iter().map(|(ws, _)| ws).collect();
        assert_eq!(merged.len(), 5, "{merged:?}");
        let at = |name: &str| merge_position(&merged, &ws_id(name));
        assert!(at("3") > at("1"), "3 merged after 1: {merged:?}");
        assert!(at("4") > at("2") && at("4") > at("3"), "4 merged after 2 and 3: {merged:?}");
        for (dependency, dependant) in [("1", "3"), ("2", "4"), ("3", "4"), ("1", "4")] {
            assert!(repo.is_ancestor(&commit_of(dependency), &commit_of(dependant)), "{dependant} was built on {dependency}'s commit");
        }
        assert_eq!(of_kind(&events, "work_session.committed").len(), 5);
        assert!(of_kind(&events, "work_session.merge_conflict").is_empty());

        // A dependant read its dependencies' files in its own worktree (echoed by the agent).
        let response = |name: &str| by_name[name]["helix_session"]["interactions"][0]["response_message"].as_str().unwrap().to_owned();
        assert!(response("3").starts_with("one from task 1\n"), "{}", response("3"));
        assert!(response("4").starts_with("two from task 2\nthree from task 3\n"), "{}", response("4"));

        // The task branch holds every file; the user's tree, HEAD and branch are untouched
        // (the spec projection, `.spectask/`, is the only thing planning wrote into the project).
        for (file, content) in [("one.txt", "one from task 1\n"), ("two.txt", "two from task 2\n"), ("three.txt", "three from task 3\n"), ("four.txt", "four from task 4\n"), ("audit.txt", "audit by the spawned session\n"), ("README.md", "# Project\n")] {
            assert_eq!(repo.show(&branch, file).as_deref(), Some(content), "{file} on {branch}");
            assert_eq!(repo.show("main", file).is_some(), file == "README.md", "{file} on main");
            assert_eq!(repo.path().join(file).exists(), file == "README.md", "{file} in the user's tree");
        }
        assert_eq!(repo.status(), "?? .spectask/");
        assert_eq!(repo.current_branch(), "main");
        assert_eq!(repo.rev("HEAD"), user_head);
        assert!(repo.linked_worktrees().is_empty(), "{:?}", repo.linked_worktrees());
        assert_eq!(repo.branches(&format!("{branch}--")).len(), 5, "session branches stay until the task is done");

        // Approval ends the task: no worktree and no session branch is left; the task branch stays.
        let done = app.post(&format!("/api/v1/spec-tasks/{id}/approve-implementation"), &json!({})).await;
        assert_eq!((done.status, done.body["status"].clone()), (StatusCode::OK, json!("done")), "{}", done.body);
        let session_branches = format!("{branch}--");
        let (session_branches, task_dir) = (&session_branches, &task_dir);
        app.wait_until("the reaper to remove the session branches and the task's directory", |_| async move {
            let left = (repo.branches(session_branches), repo.linked_worktrees(), task_dir.exists());
            if left == (vec![], vec![], false) { Ok(()) } else { Err(json!(left)) }
        })
        .await;
        assert_eq!(repo.branches("spectask/"), vec![branch.clone()]);
        assert_eq!(repo.rev(&branch), task["head_commit"].as_str().unwrap());
        assert_eq!((repo.current_branch(), repo.rev("HEAD")), ("main".to_owned(), user_head));
    }
}
